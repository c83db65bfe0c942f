"""A run survives whatever stops it: an error inside training, SIGTERM, a full disk, or kill -9 at any
write of an epoch's end. Each time the user sees one line (or the interrupt message) and `seqtasks
resume` finishes the run with every epoch in its history once and the optimizer's step count exact."""
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import pytest
from click.testing import CliRunner

from seqtasks import runs, training
from seqtasks.cli import cli
from seqtasks.errors import TrainingFailed

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--units", "8", "--layers", "1", "--seq-len", "16", "--batch-size", "4", "--lr", "0.01",
        "--warmup-steps", "2", "--dropout", "0", "--precision", "fp32", "--sample-tokens", "0", "--quiet"]
STEPS = 3  # steps per epoch


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("crash") / "text.txt"
    path.write_text("the cat sat on the mat.\n" * 60)
    return path


def invoke(*args, **kwargs):
    return CliRunner().invoke(cli, [str(a) for a in args], **kwargs)


def train_args(corpus, out, epochs=3):
    return ["train", "lm", "--data", corpus, "--epochs", epochs, "--steps-per-epoch", STEPS, "--out", out, *TINY]


def one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("seqtasks: error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def state_of(out: Path) -> dict:
    return json.loads((out / "checkpoints" / "train_state.json").read_text())


def assert_finished_exactly(out: Path, epochs: int) -> None:
    """Finished, each epoch in history.csv once, and the weights trained for exactly epochs * STEPS steps."""
    state = state_of(out)
    assert state["finished"] and state["global_step"] == epochs * STEPS
    history = runs.RunDirectory(out).read_history()
    assert [row["epoch"] for row in history] == [str(e) for e in range(1, epochs + 1)]
    assert [int(row["step"]) for row in history] == [e * STEPS for e in range(1, epochs + 1)]
    model = keras.saving.load_model(out / "checkpoints" / "last.keras", compile=True, safe_mode=True)
    assert int(model.optimizer.iterations) == epochs * STEPS
    assert not [p.name for p in [*out.iterdir(), *(out / "checkpoints").iterdir()] if p.name.startswith(".")]
    assert not list((out / "checkpoints").glob("last.pending-*"))


def fail_once_at(monkeypatch, step: int, error: Exception) -> None:
    """A callback that raises `error` once, after the optimizer step `step`."""
    original = training.RunKeeper.on_train_batch_end
    fired = []

    def failing(self, batch, logs=None):
        original(self, batch, logs)
        if self.state.global_step == step and not fired:
            fired.append(step)
            raise error

    monkeypatch.setattr(training.RunKeeper, "on_train_batch_end", failing)


def test_an_error_inside_training_is_one_line_keeps_a_checkpoint_and_resumes(corpus, tmp_path, monkeypatch):
    out = tmp_path / "run"
    handler = signal.getsignal(signal.SIGTERM)
    fail_once_at(monkeypatch, 4, RuntimeError("the callback broke\nsecond line of detail"))
    line = one_error_line(invoke(*train_args(corpus, out, epochs=2)))
    assert line.startswith("seqtasks: error: training failed at epoch 2, step 4: RuntimeError: the callback broke")
    assert "second line" not in line
    assert f"seqtasks resume {out}" in line and "--debug" in line
    assert (state_of(out)["epoch"], state_of(out)["step_in_epoch"], state_of(out)["global_step"]) == (1, 1, 4)
    assert signal.getsignal(signal.SIGTERM) == handler  # fit put the old SIGTERM handler back

    # after the epoch's last step, before its end: resume validates and records it without a step more
    fail_once_at(monkeypatch, 6, RuntimeError("again"))
    debug = invoke("--debug", "resume", out, "--quiet")
    assert isinstance(debug.exception, TrainingFailed)  # --debug lets the traceback through
    assert isinstance(debug.exception.__cause__, RuntimeError)
    assert (state_of(out)["epoch"], state_of(out)["step_in_epoch"], state_of(out)["global_step"]) == (1, 3, 6)

    monkeypatch.undo()
    resumed = invoke("resume", out, "--quiet")
    assert resumed.exit_code == 0, resumed.output
    assert_finished_exactly(out, 2)


def test_a_failing_data_pipeline_names_the_tensorflow_cause_in_one_line(corpus, tmp_path, monkeypatch):
    import tensorflow as tf

    from seqtasks.tasks import lm

    original = lm.language_model_batches

    def breaking_at_the_second_batch(*args, **kwargs):
        def check(index, batch):
            tf.debugging.assert_less(index, tf.constant(1, tf.int64), message="corrupt batch")
            return batch

        return original(*args, **kwargs).enumerate().map(check)

    monkeypatch.setattr(lm, "language_model_batches", breaking_at_the_second_batch)
    out = tmp_path / "run"
    line = one_error_line(invoke(*train_args(corpus, out, epochs=1)))
    assert "training failed at epoch 1, step 1: InvalidArgumentError: " in line and "corrupt batch" in line
    assert f"seqtasks resume {out}" in line
    assert state_of(out)["global_step"] == 1


def test_an_unexpected_error_outside_training_is_one_line(corpus, monkeypatch):
    from seqtasks import api

    def broken(path):
        raise ValueError("something nobody expected\nmore")

    monkeypatch.setattr(api, "load", broken)
    line = one_error_line(invoke("info", corpus))
    assert line == "seqtasks: error: ValueError: something nobody expected: rerun with --debug for the traceback"
    assert isinstance(invoke("--debug", "info", corpus).exception, ValueError)


def test_a_full_disk_while_checkpointing_is_one_line_and_keeps_the_last_good_checkpoint(corpus, tmp_path,
                                                                                       monkeypatch):
    out = tmp_path / "run"
    original = keras.Model.save
    saves = []

    def filling_the_disk(self, path, *args, **kwargs):
        saves.append(path)
        if len(saves) < 2:  # epoch 1's checkpoint (model.keras is a second name of it); epoch 2's fails
            return original(self, path, *args, **kwargs)
        Path(path).write_bytes(b"PK\x03\x04 half a zip")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(keras.Model, "save", filling_the_disk)
    line = one_error_line(invoke(*train_args(corpus, out, epochs=2)))
    assert "training stopped at epoch 2" in line and "disk full" in line
    assert f"seqtasks resume {out}" in line and f"checkpoint at step {STEPS} is kept" in line
    assert state_of(out)["global_step"] == STEPS
    model = keras.saving.load_model(out / "checkpoints" / "last.keras", compile=True, safe_mode=True)
    assert int(model.optimizer.iterations) == STEPS
    assert not [p.name for p in [*out.iterdir(), *(out / "checkpoints").iterdir()] if p.name.startswith(".")]
    monkeypatch.undo()
    assert invoke("resume", out, "--quiet").exit_code == 0
    assert_finished_exactly(out, 2)


class Killed(BaseException):
    """kill -9, in-process: nothing in seqtasks catches it."""


# One run, killed once in each session at another write of an epoch's end, then resumed:
# (where the kill falls, the epochs the run has committed afterwards). :after is just after the
# file is in place; without it, its temporary is written and the rename not yet done.
KILLS = [("model.keras:1", 0),             # the first epoch's best model (a second name of its pending
                                           # checkpoint), not yet in place: no weights committed
         ("last.pending.keras:1", 0),      # the first epoch's weights not even written
         ("train_state.json:1:after", 1),  # committed; the checkpoint still under its pending name
         ("last.keras:1", 2),              # epoch 2 committed, its checkpoint not renamed, history short
         ("train_state.json:1", 2),        # epoch 3 written, not committed (history mended at the start)
         ("model.keras:1:after", 2),       # epoch 3's best model in place, nothing else
         ("history.csv:1", 3)]             # epoch 3 committed, history.csv one row short
EPOCHS = 5


def test_killed_at_every_write_of_an_epoch_end_resume_finishes_with_each_epoch_once(corpus, tmp_path,
                                                                                   monkeypatch):
    """The SEQTASKS_CRASH_AT hook, with os._exit replaced by an exception nothing catches (the hook's
    real os._exit is exercised by the subprocess test below)."""
    out = tmp_path / "run"

    def die(status):
        raise Killed(status)

    command = train_args(corpus, out, epochs=EPOCHS)
    for point, committed in KILLS:
        with monkeypatch.context() as patch:
            patch.setenv(runs.CRASH_HOOK_ENV, point)
            patch.setattr(os, "_exit", die)
            with pytest.raises(Killed):
                invoke(*command, catch_exceptions=False)
        state_file = out / "checkpoints" / "train_state.json"
        assert (state_of(out)["epoch"] if state_file.is_file() else 0) == committed, point
        if not (out / "model.keras").is_file():  # no weights at all: every verb says to resume
            for verb in (["info", out], ["sample", out, "--max-new-tokens", "2"], ["evaluate", out, "--data", corpus]):
                result = invoke(*verb)
                assert "no trained weights yet" in result.output and f"seqtasks resume {out}" in result.output
            if command[0] == "train":  # train again refuses the folder and names resume
                assert f"seqtasks resume {out}" in one_error_line(invoke(*command))
        command = ["resume", out, "--quiet"]
    resumed = invoke(*command)
    assert resumed.exit_code == 0, resumed.output
    assert_finished_exactly(out, EPOCHS)


def run_cli(*args, env=None, **kwargs):
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *map(str, args)], env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def test_a_real_kill_leaves_temporaries_that_resume_removes(corpus, tmp_path):
    out = tmp_path / "run"
    # dies with the second epoch's train_state.json written to its temporary, not yet in place
    process = run_cli(*train_args(corpus, out), env={runs.CRASH_HOOK_ENV: "train_state.json:2"})
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 9, stderr
    left = [p.name for p in (out / "checkpoints").iterdir()]
    assert any(name.startswith(".train_state.json.tmp") for name in left), left
    assert f"last.pending-{2 * STEPS}.keras" in left  # written, never committed
    assert state_of(out)["global_step"] == STEPS
    resumed = invoke("resume", out)
    assert resumed.exit_code == 0, resumed.output
    assert "removed 2 temporary file(s)" in resumed.output
    assert f"at epoch 2, batch 0 (step {STEPS})" in resumed.output
    assert_finished_exactly(out, 3)


def test_sigterm_saves_a_checkpoint_like_ctrl_c_and_resume_finishes(corpus, tmp_path):
    out = tmp_path / "run"
    process = run_cli(*train_args(corpus, out, epochs=500))
    state_file = out / "checkpoints" / "train_state.json"
    while not state_file.is_file() and process.poll() is None:  # wait for the first epoch's checkpoint
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 143, stderr
    assert "terminated (SIGTERM)" in stderr and f"seqtasks resume {out}" in stderr and "Traceback" not in stderr
    stopped = state_of(out)
    assert 1 <= stopped["epoch"] < 500 and not stopped["finished"]
    epochs = stopped["epoch"] + 1
    resumed = invoke("resume", out, "--epochs", epochs, "--quiet")
    assert resumed.exit_code == 0, resumed.output
    assert_finished_exactly(out, epochs)


def test_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    run = runs.RunDirectory(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    names = {f".model.tmp{dead.pid}.keras": False, f"checkpoints/.last.pending-6.tmp{dead.pid}.keras": False,
             f".history.csv.tmp{dead.pid}.x1y2": False, ".train_state.json.k3j4": False,  # no PID: old version
             f".metrics.json.tmp{os.getppid()}.ab12": True}  # a live writer (an evaluate, say)
    for name in names:
        (tmp_path / name).write_text("partial")
    run.recover()
    assert {name: (tmp_path / name).exists() for name in names} == names

    half_made = tmp_path / f".new.creating.tmp{dead.pid}.q1w2"  # a `train --out new` killed while creating
    (half_made / "tokenizer").mkdir(parents=True)
    runs.RunDirectory.create(tmp_path / "new", {"task": "lm"}, lambda folder: None)
    assert not half_made.exists() and (tmp_path / "new" / "config.json").is_file()
