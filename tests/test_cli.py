"""The CLI as a user meets it: click's CliRunner in-process, and a few real subprocess runs."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from seqtasks.cli import cli

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--units", "32", "--layers", "1", "--seq-len", "16", "--batch-size", "8", "--lr", "0.01",
        "--warmup-steps", "5", "--dropout", "0", "--precision", "fp32"]


def invoke(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "text.txt"
    path.write_text("the cat sat on the mat.\n" * 120)
    return path


@pytest.fixture(scope="module")
def run_path(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli-runs") / "lm"
    result = invoke("train", "lm", "--data", corpus, "--epochs", "2", "--steps-per-epoch", "10",
                    "--sample-tokens", "20", "--out", out, *TINY)
    assert result.exit_code == 0, result.output
    assert "settings:" in result.output and "seq_len" in result.output
    assert "sample after epoch 1" in result.output
    assert "training finished" in result.output
    return out


def test_evaluate_json_has_the_documented_keys(run_path, corpus):
    result = invoke("evaluate", run_path, "--data", corpus, "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)
    assert set(metrics) == {"loss", "perplexity", "bpc", "tokens", "characters"}
    assert metrics["characters"] == len("the cat sat on the mat.\n" * 120)


def test_sample_is_reproducible_with_a_seed(run_path):
    first = invoke("sample", run_path, "--prompt", "the ", "--max-new-tokens", "30", "--temperature", "1.0",
                   "--seed", "7")
    second = invoke("sample", run_path, "--prompt", "the ", "--max-new-tokens", "30", "--temperature", "1.0",
                    "--seed", "7")
    assert first.exit_code == 0, first.output
    assert first.output == second.output and first.output.startswith("the ")
    several = invoke("sample", run_path, "-n", "3", "--max-new-tokens", "10", "--seed", "1", "--json")
    assert len(json.loads(several.output)["samples"]) == 3


def test_sample_prints_the_same_greedy_text_with_and_without_xla(run_path):
    args = ("sample", run_path, "--prompt", "the ", "--max-new-tokens", "20", "--temperature", "0")
    default, graph, xla_json = invoke(*args), invoke(*args, "--no-xla"), invoke(*args, "--xla", "--json")
    assert graph.exit_code == 0, graph.output
    assert graph.output == default.output and default.output.startswith("the ")
    assert "the " + json.loads(xla_json.output)["samples"][0] == default.output.strip("\n")


def test_info_and_tasks(run_path):
    result = invoke("info", run_path)
    assert result.exit_code == 0 and "task:      lm" in result.output and "finished" in result.output
    details = json.loads(invoke("info", run_path, "--json").output)
    assert details["training"]["global_step"] == 20
    listing = invoke("tasks")
    assert "lm:" in listing.output and "transformer" in listing.output and "seq_len=128" in listing.output


def test_help_shows_defaults_and_an_example():
    result = invoke("train", "lm", "--help")
    assert "--seq-len" in result.output and "[default: 128]" in result.output and "Example" in result.output
    for command in ("resume", "finetune", "evaluate", "predict", "sample", "info"):
        assert "Example" in invoke(command, "--help").output or command == "info"


@pytest.mark.parametrize("case", ["missing", "binary", "latin1", "empty", "not-a-run", "arch", "short"])
def test_bad_input_is_one_line_exit_1_and_no_run(case, tmp_path, corpus):
    out = tmp_path / "run"
    data = tmp_path / "data.txt"
    args = ["train", "lm", "--data", data, "--out", out, *TINY]
    if case == "missing":
        pass
    elif case == "binary":
        data.write_bytes(b"\x00\x01\x02binary" * 50)
    elif case == "latin1":
        data.write_bytes("caf\xe9 au lait\n".encode("latin-1") * 50)
    elif case == "empty":
        data.write_text("")
    elif case == "short":
        data.write_text("tiny\n")
    elif case == "arch":
        args = ["train", "lm", "--data", corpus, "--arch", "cnn", "--out", out]
    if case == "not-a-run":
        args = ["evaluate", tmp_path, "--data", corpus]
    result = CliRunner().invoke(cli, [str(a) for a in args])
    if case == "arch":  # click rejects an unknown choice itself, with its usage line
        assert result.exit_code == 2 and "cnn" in result.output
    else:
        assert result.exit_code == 1, result.output
        lines = result.stderr.strip().splitlines()  # stdout may already show the settings
        assert len(lines) == 1 and lines[0].startswith("seqtasks: error: "), result.output
        assert "Traceback" not in result.output
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run")]


def test_a_run_trained_here_predicts_in_a_new_process_of_the_checkout_command(run_path):
    """`python cli.py predict` from the checkout, in a process of its own, on the run this module trained:
    a run folder is all a later process needs. (`cli.py train` as a real process is run by
    test_crash_safety, test_run_lock and test_multiworker.)"""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    predict = subprocess.run([sys.executable, str(ROOT / "cli.py"), "predict", str(run_path), "the cat",
                              "--max-new-tokens", "5"], capture_output=True, text=True, env=env, timeout=300)
    assert predict.returncode == 0, predict.stderr
    assert len(predict.stdout.strip().splitlines()) == 1
    assert predict.stdout == invoke("predict", run_path, "the cat", "--max-new-tokens", "5").output


@pytest.mark.graph_mode  # traced training, as users train
def test_mirrored_strategy_on_two_logical_cpu_devices_steps_as_one_device_with_clipping(tmp_path, corpus):
    """Two replicas, a clip norm every step exceeds: the batch's gradient is clipped once (not each
    replica's half before the sum), so the weights are one device's."""
    script = f"""
import numpy as np
import seqtasks  # SEQTASKS_CPU_DEVICES=2: two logical CPU devices, made as TensorFlow starts
from seqtasks.training import make_strategy
assert make_strategy("mirrored").num_replicas_in_sync == 2
runs = {{}}
for strategy in ("mirrored", "default"):
    runs[strategy] = seqtasks.train("lm", data={str(corpus)!r}, strategy=strategy, epochs=1, steps_per_epoch=4,
                                    units=16, layers=1, seq_len=16, batch_size=8, sample_tokens=0, precision="fp32",
                                    dropout=0.0, clip_norm=0.05, out={str(tmp_path)!r} + "/" + strategy, verbose=0)
print("steps", runs["mirrored"].directory.read_train_state()["global_step"])
history = runs["mirrored"].directory.read_history()[-1]
print("clipped", history["clipped"])
print("largest difference", max(float(np.max(np.abs(a - b))) for a, b in
      zip(runs["mirrored"].model.get_weights(), runs["default"].model.get_weights(), strict=True)))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "SEQTASKS_CPU_DEVICES": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "steps 4" in result.stdout
    assert "clipped 1.0" in result.stdout  # every step was clipped
    difference = float(result.stdout.split("largest difference")[1])
    assert difference < 1e-5, result.stdout
