"""benchmarks/peers.py (seqtasks vs PyTorch and KerasHub) runs end to end in its smoke mode and writes the
ratios the acceptance check reads. Needs the bench extra (torch, keras-hub); skipped without it."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MISSING = [name for name in ("torch", "keras_hub") if importlib.util.find_spec(name) is None]

pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"the bench extra is not installed (no {', '.join(MISSING)}): "
                                                      "pip install -e '.[bench]'")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("peers") / "peers.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "peers.py"), "--smoke", "--json", str(out)],
                          capture_output=True, text=True, timeout=900)  # wall: the shared machine runs 10x over
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text()), done.stdout


def test_smoke_writes_every_comparison_with_its_target(smoke):
    result, _ = smoke
    targets = {"train_transformer_vs_best_pytorch": 1.0, "train_lstm_vs_best_pytorch": 1.5,
               "generate_batch_1_vs_keras_hub": 1.5, "generate_batch_8_vs_keras_hub": 1.5,
               "generate_batch_1_vs_pytorch": 1.0, "generate_batch_8_vs_pytorch": 1.0,
               "mfu_transformer_vs_bf16_peak": 0.6}
    for name, target in targets.items():
        row = result["comparisons"][name]
        assert row["target"] == target
        assert result["targets_met"][name] == (row.get("ratio", row.get("value")) >= target)
    for name, row in result["comparisons"].items():
        if "ratio" in row:
            assert row["ratio"] > 0 and len(row["per_round"]) == result["rounds"] == 1, name


def test_smoke_measures_each_peer_and_the_peaks(smoke):
    result, stdout = smoke
    training = result["training_tokens_per_s"]
    assert set(training["transformer"]) == {"seqtasks_bf16", "pytorch_eager_fp32", "pytorch_eager_bf16"}
    assert set(training["lstm"]) == {"seqtasks_bf16_unrolled", "pytorch_eager_fp32", "pytorch_eager_bf16"}
    assert set(result["generation_tokens_per_s"]["batch_8"]) == {"seqtasks", "keras_hub_default", "pytorch_kv_cache", "pytorch_kv_cache_1thread"}
    peaks = result["matmul_peak_tflops"]["tf"]
    assert peaks["fp32"] > 0 and peaks["bf16"] > 0
    assert "round 1 train lstm pytorch_eager_bf16" in stdout
    assert "--smoke" in result["command"]
