"""One writer per run folder (seqtasks.run_lock): while a process trains a run, a second `resume`,
`train --out` or `finetune --out` of that folder ends with one line naming the holder and touches
nothing; once the holder is gone, even by kill -9, the next writer takes the lock over silently and
the run finishes with each epoch once."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from seqtasks import runs
from seqtasks.cli import cli
from seqtasks.run_lock import LOCK_FILE, RunInUse, RunLock

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--units", "8", "--layers", "1", "--seq-len", "16", "--batch-size", "4", "--lr", "0.01",
        "--warmup-steps", "2", "--dropout", "0", "--precision", "fp32", "--sample-tokens", "0", "--quiet"]
STEPS = 3


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def cli_process(*args):
    return subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *map(str, args)],
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def in_use_line(stderr: str, run: Path, pid: int) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"seqtasks: error: {run} is in use by process {pid} (started "), lines[0]
    return lines[0]


def test_a_second_writer_is_refused_in_one_line_and_a_killed_holder_leaves_no_lock(tmp_path):
    corpus = tmp_path / "text.txt"
    corpus.write_text("the cat sat on the mat.\n" * 60)
    out = tmp_path / "run"
    holder = cli_process("train", "lm", "--data", corpus, "--epochs", 500, "--steps-per-epoch", STEPS,
                         "--out", out, *TINY)
    state_file = out / "checkpoints" / "train_state.json"
    try:
        while not state_file.is_file() and holder.poll() is None:  # training, past its first checkpoint
            time.sleep(0.2)
        assert holder.poll() is None, holder.communicate()
        holder.send_signal(signal.SIGSTOP)  # a writer mid-run that spends no CPU while the others try
        assert json.loads((out / LOCK_FILE).read_text())["pid"] == holder.pid
        second = cli_process("resume", out, "--quiet")  # a real second process, as a user would start it
        stdout, stderr = second.communicate(timeout=300)
        assert second.returncode == 1 and "Traceback" not in stderr + stdout
        line = in_use_line(stderr, out, holder.pid)
        assert f"kill {holder.pid}" in line
        # train --out or finetune --out onto the folder in use name the holder too, not "already exists"
        for command in (["train", "lm", *TINY], ["finetune", out, "--quiet"]):
            again = invoke(*command, "--data", corpus, "--out", out)
            assert again.exit_code == 1
            in_use_line(again.stderr, out, holder.pid)
        with pytest.raises(RunInUse):
            RunLock(out)
    finally:
        holder.send_signal(signal.SIGKILL)  # no cleanup at all: the lock must not outlive it
        holder.communicate(timeout=60)
    epochs = json.loads(state_file.read_text())["epoch"] + 1
    resumed = invoke("resume", out, "--epochs", epochs, "--quiet")
    assert resumed.exit_code == 0, resumed.output
    assert "in use" not in resumed.output + resumed.stderr
    state = json.loads(state_file.read_text())
    assert state["finished"] and state["global_step"] == epochs * STEPS
    assert [row["epoch"] for row in runs.RunDirectory(out).read_history()] == [str(e) for e in range(1, epochs + 1)]
    RunLock(out).release()  # resume let it go when it returned
