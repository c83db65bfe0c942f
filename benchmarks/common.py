"""Shared helpers of the benchmark scripts: splits of the shared data, matmul peaks, result files."""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED_DATA = (ROOT.parent / "shared" / "data").resolve()
WORK = ROOT / "benchmarks" / "runs"
RESULTS = ROOT / "benchmarks" / "results"


def shared_file(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        raise SystemExit(f"benchmark data not found: {path} (the shared data folder sits beside the repository)")
    return path


def tinyshakespeare_splits() -> tuple[Path, Path]:
    """First 90% of the characters to train, last 10% to validate (the nanoGPT split)."""
    text = shared_file("lm", "tinyshakespeare.txt").read_text(encoding="utf-8")
    cut = int(len(text) * 0.9)
    folder = WORK / "data"
    folder.mkdir(parents=True, exist_ok=True)
    train, valid = folder / "tinyshakespeare-train.txt", folder / "tinyshakespeare-valid.txt"
    train.write_text(text[:cut], encoding="utf-8")
    valid.write_text(text[cut:], encoding="utf-8")
    return train, valid


def matmul_peak(dtype_name: str, size: int = 2048, repeats: int = 8) -> float:
    """FLOP/s of tf.matmul on two size² operands, median of `repeats`."""
    import tensorflow as tf

    dtype = {"fp32": tf.float32, "bf16": tf.bfloat16}[dtype_name]
    a = tf.cast(tf.random.normal((size, size)), dtype)
    b = tf.cast(tf.random.normal((size, size)), dtype)
    matmul = tf.function(lambda x, y: tf.matmul(x, y))
    matmul(a, b).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).numpy()
        times.append(time.perf_counter() - start)
    return 2 * size ** 3 / statistics.median(times)


def write_result(name: str, result: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {**result, "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
              "command": " ".join(["python"] + sys.argv)}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return path


def step_timer():
    """A Keras callback timing the seconds from one batch end to the next (`.durations`): fit's own
    start-up and end-of-epoch work are left out (on this VM a fit call can idle seconds after its
    last step). Keras is imported here, so scripts that never train need not load it."""
    import keras

    class StepTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.durations, self.last = [], None

        def on_train_batch_end(self, batch, logs=None):
            now = time.perf_counter()
            if self.last is not None:
                self.durations.append(now - self.last)
            self.last = now

    return StepTimer()
