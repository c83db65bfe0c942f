"""Small data, as fine-tuning users have it: a corpus of a few windows trains and fine-tunes, the
warmup fits the few steps, resume reads the run's own files from any folder and refuses changed ones."""
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from seqtasks.cli import cli
from seqtasks.config import TrainConfig
from seqtasks.decoding import MAX_NEW_TOKENS, GenerationConfig, GenerationError
from seqtasks.pipeline import count_windows
from seqtasks.training import fitted_warmup, planned_epochs

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--units", "8", "--layers", "1", "--sample-tokens", "0", "--precision", "fp32", "--quiet"]
LR = 0.01


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("seqtasks: error: "), result.output
    return lines[0]


@pytest.fixture(scope="module")
def letters(tmp_path_factory) -> Path:
    """A 6 KB corpus in a folder of its own: 43 windows of 128 characters, fewer than a batch of 64."""
    folder = tmp_path_factory.mktemp("letters")
    (folder / "letters.txt").write_text((ROOT / "data" / "tinyshakespeare.txt").read_text()[:6000])
    return folder


@pytest.fixture(scope="module")
def run(letters) -> Path:
    """Trained from inside the corpus' folder, with the corpus named relatively, as a user types it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(letters)
        result = invoke("train", "lm", "--data", "letters.txt", "--epochs", "2", "--lr", LR, "--out", "run", *TINY)
    assert result.exit_code == 0, result.output
    assert "the training data holds 43 windows of 128 tokens: batch size 64 -> 43" in result.output
    assert "note: 2 training steps: warmup 100 -> 1 step" in result.output
    return letters / "run"


def test_a_corpus_of_fewer_windows_than_a_batch_trains_at_the_full_learning_rate(run):
    history = (run / "history.csv").read_text().splitlines()
    assert len(history) == 3  # header + 2 epochs
    # the last step's rate: lr · cosine half way (0.55 lr); with the 100-step warmup it was 0.011 lr
    last_lr = float(history[-1].split(",")[history[0].split(",").index("lr")])
    assert last_lr == pytest.approx(0.55 * LR, rel=1e-3)


def test_the_run_records_absolute_data_paths_and_their_sha256(run, letters):
    record = json.loads((run / "config.json").read_text())
    assert record["settings"]["data"] == str(letters / "letters.txt")
    assert record["typed"] == {"data": "letters.txt"}
    assert record["data_files"]["data"]["bytes"] == 6000 and len(record["data_files"]["data"]["sha256"]) == 64


def test_finetune_on_a_tiny_set_adapts_its_batch_and_warmup(run, letters, tmp_path):
    result = invoke("finetune", run, "--data", letters / "letters.txt", "--out", tmp_path / "tuned",
                    "--epochs", "3", "--freeze", "embeddings", "--quiet")
    assert result.exit_code == 0, result.output
    assert "batch size 64 -> 43" in result.output and "warmup 100 -> 1 step" in result.output


def test_resume_from_another_folder_reads_the_original_file(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "letters.txt").write_text("too short to train on\n")  # same name, here: must not be read
    state = json.loads((run / "checkpoints" / "train_state.json").read_text())
    result = invoke("resume", run, "--epochs", state["epoch"] + 1, "--quiet")
    assert result.exit_code == 0, result.output  # the short file here would be refused as too short
    assert f"at step {state['global_step'] + 1}" in result.output


def test_changed_data_is_refused_in_one_line_or_accepted_with_the_flag(run, letters, tmp_path, monkeypatch):
    corpus = letters / "letters.txt"
    original = corpus.read_text()
    monkeypatch.chdir(tmp_path)
    try:
        corpus.write_text(original + "more text\n")
        line = one_line_error(invoke("resume", run, "--epochs", "9", "--quiet"))
        assert "the training data changed" in line and str(corpus) in line
        assert "now holds 6,010 bytes (was 6,000)" in line and "--allow-changed-data" in line
        corpus.write_text(original.upper()[:6000])  # same size, other text
        assert "other content" in one_line_error(invoke("resume", run, "--epochs", "9", "--quiet"))
        accepted = invoke("resume", run, "--epochs", "9", "--allow-changed-data", "--quiet")
        assert accepted.exit_code == 0, accepted.output
        assert "continuing on changed data" in accepted.output
        record = json.loads((run / "config.json").read_text())
        assert record["data_files"]["data"]["sha256"] != record["data"]["train"]["sha256"]  # the accepted data
    finally:
        corpus.write_text(original)


def test_resume_range_checks_its_epochs(run):
    line = one_line_error(invoke("resume", run, "--epochs", "0"))
    assert "--epochs 0 is out of range (from the command line)" in line


def test_a_corpus_shorter_than_one_window_names_the_seq_len_that_fits(tmp_path):
    (tmp_path / "tiny.txt").write_text("x" * 60)
    line = one_line_error(invoke("train", "lm", "--data", tmp_path / "tiny.txt", "--out", tmp_path / "r", *TINY))
    tokens = int(re.search(r"shorter than one window: (\d+) tokens", line).group(1))
    assert tokens == 62  # the 60 characters and the document's marks: too few to hold any out
    assert f"use --seq-len {tokens - 1} or less" in line
    assert count_windows(tokens, tokens - 1) == 1 and count_windows(tokens, tokens) == 0  # it fits, one more not
    assert not (tmp_path / "r").exists()


def test_a_corpus_of_one_window_trains_and_validates_on_itself(tmp_path):
    (tmp_path / "one.txt").write_text("abcdefghij" * 2)  # 20 characters + the document's marks: one window of 16
    result = invoke("train", "lm", "--data", tmp_path / "one.txt", "--seq-len", "16", "--epochs", "1",
                    "--out", tmp_path / "r", *TINY)
    assert result.exit_code == 0, result.output
    assert "22 tokens are too few to hold out --valid-fraction 0.05: validation scores the training text" in result.output
    history = (tmp_path / "r" / "history.csv").read_text()
    assert "val_loss" in history.splitlines()[0]


@pytest.mark.parametrize("task, text", [
    ("classify", "text\tlabel\ngood film\tpos\nbad film\tneg\nfine film\tpos\n"),
    ("tag", "the DET\ncat NOUN\n\na DET\ndog NOUN\n\nsome DET\nbirds NOUN\n"),
])
def test_three_examples_and_a_large_batch_train(task, text, tmp_path):
    data = tmp_path / ("data.tsv" if task == "classify" else "data.conll")
    data.write_text(text)
    result = invoke("train", task, "--data", data, "--valid", data, "--batch-size", "512", "--epochs", "1",
                    "--units", "8", "--layers", "1", "--tokenizer", "word", "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.output
    assert "the training data holds 3 examples: batch size 512 -> 3" in result.output


def test_epochs_are_no_hidden_limit_beside_max_time():
    assert planned_epochs(TrainConfig(max_time=30.0)) is None        # until the budget is spent
    assert planned_epochs(TrainConfig(max_time=30.0, epochs=3)) == 3  # unless given
    assert planned_epochs(TrainConfig()) == 10
    assert fitted_warmup(100, 2000) == 100 and fitted_warmup(100, 150) == 15 and fitted_warmup(100, 3) == 1
    assert fitted_warmup(100, float("inf")) == 100


def test_a_generation_longer_than_the_bound_is_refused_in_one_line(run):
    with pytest.raises(GenerationError, match="at most 100,000"):
        GenerationConfig(max_new_tokens=MAX_NEW_TOKENS + 1)
    line = one_line_error(invoke("sample", run, "--max-new-tokens", "1000000000"))
    assert "max_new_tokens=1000000000" in line and "at most 100,000" in line
