"""Sequence classification: padding never changes a prediction; a tiny classifier learns a rule
that needs word order; the CLI trains, evaluates, predicts and fine-tunes; bad input fails cleanly."""
import json
import random

import keras
import numpy as np
import pytest
from click.testing import CliRunner

import seqtasks
from seqtasks.cli import cli
from seqtasks.errors import UserError
from seqtasks.models.classifier import SequenceClassifier

TINY = ["--units", "16", "--layers", "1", "--batch-size", "16", "--lr", "0.01", "--warmup-steps", "5",
        "--dropout", "0", "--precision", "fp32", "--tokenizer", "word"]
POSITIVE, NEGATIVE = ["good", "great", "fine"], ["bad", "awful", "dull"]
FILLER = "the film was a plot and it acting story quite".split()


def review(rng, label):
    """The opinion word decides, unless "not" comes right before it: order matters."""
    negated = rng.random() < 0.3
    word = rng.choice((NEGATIVE if label == "pos" else POSITIVE) if negated else (POSITIVE if label == "pos" else NEGATIVE))
    words = rng.choices(FILLER, k=rng.randint(2, 8))
    words.insert(rng.randrange(len(words) + 1), ("not " if negated else "") + word)
    return " ".join(words)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("classify")
    rng = random.Random(0)
    rows = [(review(rng, label), label) for label in rng.choices(["pos", "neg"], k=700)]
    (folder / "train.tsv").write_text("text\tlabel\n" + "".join(f"{t}\t{l}\n" for t, l in rows))
    (folder / "test.jsonl").write_text("".join(json.dumps({"text": review(rng, l), "label": l}) + "\n"
                                               for l in ["pos", "neg"] * 40))
    return folder


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def run_path(data):
    out = data / "run"
    result = invoke("train", "classify", "--data", data / "train.tsv", "--epochs", "5", "--out", out, *TINY)
    assert result.exit_code == 0, result.output
    assert "val_accuracy" in result.output or "accuracy" in result.output
    return out


@pytest.mark.graph_mode  # traced training, as users train
def test_tiny_classifier_learns_a_rule_with_negation(run_path, data):
    result = invoke("evaluate", run_path, "--data", data / "test.jsonl", "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)
    assert {"accuracy", "macro_f1", "per_class", "confusion"} <= set(metrics)
    assert metrics["accuracy"] >= 0.9, metrics
    assert set(metrics["per_class"]) == {"neg", "pos"} and metrics["confusion"]["labels"] == ["neg", "pos"]
    assert sum(map(sum, metrics["confusion"]["matrix"])) == 80
    assert (run_path / "tokenizer" / "labels.json").is_file() and (run_path / "tokenizer" / "words.json").is_file()


def test_predict_prints_label_and_probability_and_top_labels(run_path):
    result = invoke("predict", run_path, "the film was good", "the plot was not good", "--top-labels", "2")
    assert result.exit_code == 0, result.output
    first, second = [line.split("\t") for line in result.output.strip().splitlines()]
    assert first[0] == "pos" and second[0] == "neg" and len(first) == 4
    assert float(first[1]) + float(first[3]) == pytest.approx(1.0, abs=2e-4)
    # the old spelling still works for one release, with one warning line
    old = CliRunner().invoke(cli, ["predict", str(run_path), "the film was good", "the plot was not good", "--top-k", "2"])
    assert old.exit_code == 0 and old.stdout == result.output
    assert old.stderr.strip().splitlines() == ["seqtasks: warning: --top-k is deprecated for label predictions: it is "
                                               "now --top-labels: use --top-labels (--top-k goes in the next release)"]
    result = invoke("predict", run_path, "awful", "--json")
    output = json.loads(result.output)["output"]
    assert output["label"] == "neg" and 0.5 < output["probability"] <= 1.0


def test_finetune_new_labels_error_or_extend(run_path, data):
    (data / "more.tsv").write_text("text\tlabel\n" + "".join(f"{t}\t{l}\n" for t, l in
                                   [("the plot was fine", "pos"), ("a story so so", "meh")] * 40))
    result = CliRunner().invoke(cli, ["finetune", str(run_path), "--data", str(data / "more.tsv"),
                                      "--out", str(data / "ft-error"), "--epochs", "1"])
    assert result.exit_code == 1 and "'meh'" in result.stderr and "--extend-labels" in result.stderr
    assert "more.tsv, line" in result.stderr and not (data / "ft-error").exists()
    result = invoke("finetune", run_path, "--data", data / "more.tsv", "--out", data / "ft", "--epochs", "2",
                    "--extend-labels", "--quiet")
    assert result.exit_code == 0, result.output
    parent, child = seqtasks.load(run_path), seqtasks.load(data / "ft")
    assert child.preprocessor.labels.names == ["neg", "pos", "meh"]
    old_kernel = keras.ops.convert_to_numpy(parent.model.output_layer.kernel)
    assert keras.ops.convert_to_numpy(child.model.output_layer.kernel).shape == (old_kernel.shape[0], 3)
    assert next(iter(child.predict(["a story so so"])))["label"] == "meh"


@pytest.mark.parametrize("arch, pooling, chars", [
    ("lstm", "last", "none"), ("gru", "mean", "cnn"), ("rnn", "max", "lstm"), ("transformer", "attention", "cnn"),
    ("transformer", "last", "none"), ("lstm", "attention", "none")])
def test_padding_never_changes_a_prediction(arch, pooling, chars):
    encoder = {"vocab_size": 30, "arch": arch, "units": 8, "num_layers": 2, "heads": 2, "char_features": chars,
               "char_vocab_size": 20, "char_dim": 4, "char_units": 4, "max_length": 16}
    model = SequenceClassifier(3, pooling=pooling, encoder=encoder)
    rng = np.random.default_rng(0)
    short = {"tokens": rng.integers(4, 30, (1, 5)).astype("int32"), "chars": rng.integers(1, 20, (1, 5, 3)).astype("int32")}
    if chars == "none":
        del short["chars"]
    alone = keras.ops.convert_to_numpy(model(short))
    padded = {"tokens": np.pad(short["tokens"], ((0, 1), (0, 6)))}
    padded["tokens"][1] = rng.integers(4, 30, 11)  # a longer neighbour in the batch
    if "chars" in short:
        padded["chars"] = np.pad(short["chars"], ((0, 1), (0, 6), (0, 2)))
        padded["chars"][1] = rng.integers(1, 20, (11, 5))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(padded))[:1], alone, rtol=1e-5, atol=1e-6)


def test_saved_classifier_reloads_identically(run_path):
    run = seqtasks.load(run_path)
    model = keras.saving.load_model(run_path / "model.keras", safe_mode=True)
    inputs = {"tokens": np.array([[4, 5, 6, 0]], "int32")}
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(inputs)), keras.ops.convert_to_numpy(run.model(inputs)))


@pytest.mark.parametrize("case", ["columns", "empty-label", "missing-column", "one-label"])
def test_bad_inputs_are_one_line_errors_and_make_no_run(case, tmp_path):
    data = tmp_path / "data.tsv"
    args = []
    if case == "columns":
        data.write_text("text\tlabel\ngood film\tpos\nbad\tfilm\tneg\n")
        expected = "data.tsv, line 3"
    elif case == "empty-label":
        data.write_text("text\tlabel\ngood film\tpos\nbad film\t\n")
        expected = "data.tsv, line 3"
    elif case == "missing-column":
        data.write_text("text\tlabel\ngood film\tpos\n")
        args, expected = ["--label-col", "sentiment"], "no label column 'sentiment'"
    else:
        data.write_text("text\tlabel\n" + "a film\tpos\n" * 20)
        expected = "only one label"
    result = CliRunner().invoke(cli, ["train", "classify", "--data", str(data), "--out", str(tmp_path / "run"), *args])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("seqtasks: error: ") and expected in lines[0]
    assert not (tmp_path / "run").exists()


def test_held_out_validation_and_unseen_evaluation_label(run_path, tmp_path):
    (tmp_path / "odd.tsv").write_text("text\tlabel\nthe film\tweird\nthe film was good\tpos\n")
    metrics = seqtasks.load(run_path).evaluate(str(tmp_path / "odd.tsv"))  # warned of and counted as an error
    assert metrics["unseen_labels"] == {"examples": 1, "labels": {"weird": 1}} and metrics["accuracy"] <= 0.5
    record = json.loads((run_path / "config.json").read_text())
    assert record["data"]["train"]["examples"] + record["data"]["valid"]["examples"] == 700
