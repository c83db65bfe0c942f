"""Multi-worker training as a user runs it: two real `seqtasks train lm --strategy multiworker`
processes on free local ports (TF_CONFIG), traced, a tiny model.

1. Both finish; there is one run folder (the chief's), no worker's temporary folder is left, the run
   evaluates, and its weights equal a single-process run with the same global batch.
2. SIGTERM to one worker mid-run: it stops with one line, the other notices within bounded time and
   stops with one line; `seqtasks resume` on both, same TF_CONFIG, ends with the same weights again
   (resume is exact).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from seqtasks.distributed import local_cluster

ROOT = Path(__file__).resolve().parent.parent
EPOCHS, STEPS = 6, 2
MODEL = ["--arch", "gru", "--units", "16", "--layers", "1", "--seq-len", "16", "--batch-size", "8", "--lr", "0.01",
         "--warmup-steps", "2", "--dropout", "0", "--precision", "fp32", "--sample-tokens", "0",
         "--epochs", str(EPOCHS), "--steps-per-epoch", str(STEPS)]
TIMEOUT = 900  # seconds; the acceptance check allows 10 minutes, and a shared machine can be slow


def start_workers(args: list[str], cwd: Path, tmp: Path) -> list[subprocess.Popen]:
    """One `seqtasks ARGS --strategy multiworker` process per worker of a fresh local cluster."""
    cluster = local_cluster(2)
    tmp.mkdir(exist_ok=True)
    processes = []
    for index in range(2):
        env = {**os.environ, "SEQTASKS_RUN_EAGERLY": "0", "TMPDIR": str(tmp),
               "TF_CONFIG": json.dumps({"cluster": {"worker": cluster}, "task": {"type": "worker", "index": index}})}
        env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a user starts it: seqtasks picks the level
        # nor one TensorFlow thread (conftest's setting under xdist): a worker's collectives wait on
        # their peers in threads of their own
        env.pop("TF_NUM_INTEROP_THREADS", None)
        processes.append(subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *args], cwd=cwd, env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return processes


def finish(processes: list[subprocess.Popen]) -> list[tuple[int, str, str]]:
    """(exit status, stdout, stderr) of each process, once all have ended."""
    outputs = [p.communicate(timeout=TIMEOUT) for p in processes]
    return [(p.returncode, *output) for p, output in zip(processes, outputs)]


def weights(path: Path) -> list[np.ndarray]:
    import seqtasks

    return seqtasks.load(path).model.get_weights()


def assert_same_weights(a: Path, b: Path, atol: float = 1e-5) -> None:
    for x, y in zip(weights(a), weights(b), strict=True):
        np.testing.assert_allclose(x, y, atol=atol)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("multiworker")
    rng = np.random.default_rng(0)
    words = "the cat sat on a mat and dog ran far away".split()
    (folder / "text.txt").write_text("".join(" ".join(rng.choice(words, 12)) + "\n" for _ in range(200)))
    return folder


@pytest.fixture(scope="module")
def single_run(corpus) -> Path:
    """The same training in this process (eagerly, the suite's default: cheaper than another process
    that traces, and the same numbers to far below the tolerance): the weights two workers must reach."""
    from click.testing import CliRunner

    from seqtasks.cli import cli

    out = corpus / "single"
    result = CliRunner().invoke(cli, ["train", "lm", "--data", str(corpus / "text.txt"), "--out", str(out), "--quiet",
                                      *MODEL], catch_exceptions=False)
    assert result.exit_code == 0, result.output[-3000:]
    return out


def test_two_workers_train_one_model(corpus, single_run, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "text.txt").write_text((corpus / "text.txt").read_text())
    workers = start_workers(["train", "lm", "--data", "text.txt", "--out", "run", "--quiet", *MODEL,
                             "--strategy", "multiworker"], work, tmp_path / "tmp")
    results = finish(workers)
    for code, out, err in results:
        assert code == 0, err[-3000:]
    assert "run saved in run" in results[0][1]
    assert "the chief (worker 0) saved the run" in results[1][1]
    assert sorted(p.name for p in work.iterdir()) == ["run", "text.txt"]  # one run folder, nothing half-made
    assert list((tmp_path / "tmp").iterdir()) == []  # the other worker's copy is gone
    state = json.loads((work / "run" / "checkpoints" / "train_state.json").read_text())
    assert state["global_step"] == EPOCHS * STEPS and state["finished"]
    assert_same_weights(work / "run", single_run)
    import seqtasks

    assert seqtasks.load(work / "run").evaluate(str(work / "text.txt"))["perplexity"] > 1


def test_a_killed_worker_stops_the_other_and_resume_continues_exactly(corpus, single_run, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "text.txt").write_text((corpus / "text.txt").read_text())
    chief, other = start_workers(["train", "lm", "--data", "text.txt", "--out", "run", "--quiet", *MODEL,
                                  "--strategy", "multiworker"], work, tmp_path / "tmp")
    state_file = work / "run" / "checkpoints" / "train_state.json"
    deadline = time.monotonic() + TIMEOUT
    while not state_file.exists() and chief.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the first epoch's checkpoint: there is something to resume from
    other.send_signal(signal.SIGTERM)
    killed = time.monotonic()
    (chief_code, _, chief_err), (other_code, _, other_err) = finish([chief, other])
    stopped_within = time.monotonic() - killed
    if chief_code == 0:
        pytest.skip("training finished before the kill arrived (a very slow machine)")
    assert other_code == 143, other_err[-3000:]
    assert chief_code == 1, chief_err[-3000:]
    assert stopped_within < 90
    assert other_err.strip().splitlines()[-1].startswith("terminated (SIGTERM)")
    chief_lines = chief_err.strip().splitlines()
    assert len(chief_lines) == 1, chief_err[-3000:]
    assert chief_lines[0].startswith("seqtasks: error: training stopped at epoch")
    assert "another worker stopped" in chief_lines[0] and "seqtasks resume run" in chief_lines[0]
    # both again, same cluster description: the run continues from its last checkpoint
    results = finish(start_workers(["resume", "run", "--quiet"], work, tmp_path / "tmp"))
    for code, out, err in results:
        assert code == 0, err[-3000:]
    assert json.loads(state_file.read_text())["global_step"] == EPOCHS * STEPS
    assert sorted(p.name for p in work.iterdir()) == ["run", "text.txt"]
    assert list((tmp_path / "tmp").iterdir()) == []
    # a resumed run retraces its steps from a loaded model: one process interrupted after epoch 1 and
    # resumed ends 1.9e-5 from its uninterrupted twin too (measured, this model and data)
    assert_same_weights(work / "run", single_run, atol=1e-4)
