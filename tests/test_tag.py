"""Sequence labeling: padding never changes a tag; a tiny BiLSTM-CRF learns entity chunks; the CLI
trains, evaluates (token accuracy, entity F1, per type) and predicts (raw text and CoNLL); bad input
fails cleanly; the bundled treebank sample reads."""
import json
import random

import keras
import numpy as np
import pytest
from click.testing import CliRunner

import seqtasks
from seqtasks.cli import cli
from seqtasks.models.tagger import SequenceTagger

TINY = ["--units", "16", "--layers", "1", "--batch-size", "16", "--lr", "0.01", "--warmup-steps", "5",
        "--dropout", "0", "--word-dropout", "0", "--precision", "fp32", "--char-units", "8", "--char-dim", "8"]
NAMES = {"John": "PER", "Mary": "PER", "Paris": "LOC", "Berlin": "LOC", "Acme": "ORG", "Globex": "ORG"}
SECOND = {"PER": "Smith", "LOC": "City", "ORG": "Inc"}
FILLER = "the a saw went to with and met in from".split()


def sentence(rng):
    tokens, tags = [], []
    for _ in range(rng.randint(3, 8)):
        if rng.random() < 0.3:
            name = rng.choice(sorted(NAMES))
            kind = NAMES[name]
            tokens.append(name)
            tags.append(f"I-{kind}" if not tags or tags[-1][2:] != kind else f"B-{kind}")  # IOB1
            if rng.random() < 0.4:
                tokens.append(SECOND[kind])
                tags.append(f"I-{kind}")
        else:
            tokens.append(rng.choice(FILLER))
            tags.append("O")
    return tokens, tags


def conll(sentences):
    return "-DOCSTART- -X- O\n\n" + "".join("".join(f"{t} X {g}\n" for t, g in zip(*s)) + "\n" for s in sentences)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tag")
    rng = random.Random(0)
    (folder / "train.conll").write_text(conll([sentence(rng) for _ in range(400)]))
    (folder / "test.conll").write_text(conll([sentence(rng) for _ in range(60)]))
    return folder


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def crf_run(data):
    out = data / "crf"
    result = invoke("train", "tag", "--data", data / "train.conll", "--crf", "--epochs", "6", "--out", out, *TINY)
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.graph_mode  # traced training, as users train
def test_tiny_bilstm_crf_learns_entities_in_iob1(crf_run, data):
    result = invoke("evaluate", crf_run, "--data", data / "test.conll", "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)
    assert metrics["accuracy"] >= 0.97 and metrics["f1"] >= 0.9, metrics
    assert set(metrics["per_type"]) == {"PER", "LOC", "ORG"}
    assert json.loads((crf_run / "tokenizer" / "inputs.json").read_text())["scheme"] == "iob1"
    assert "S-PER" in json.loads((crf_run / "tokenizer" / "labels.json").read_text())  # IOBES inside


def test_predict_raw_text_and_pretokenized_conll(crf_run):
    result = invoke("predict", crf_run, "John Smith went to Paris.", "--json")
    assert result.exit_code == 0, result.output
    output = json.loads(result.output)["output"]
    assert output["tokens"] == ["John", "Smith", "went", "to", "Paris", "."]
    assert output["tags"][:2] == ["I-PER", "I-PER"]   # written back in the training data's IOB1
    assert {"start": 0, "end": 2, "type": "PER", "text": "John Smith"} in output["entities"]
    result = invoke("predict", crf_run, "Mary met Acme Inc")
    assert result.output.splitlines()[:2] == ["Mary\tI-PER", "met\tO"]
    lines = CliRunner().invoke(cli, ["predict", str(crf_run), "--input", "-", "--pretokenized"],
                               input="Berlin\nCity\n\nthe\n", catch_exceptions=False).output.splitlines()
    assert lines == ["Berlin\tI-LOC", "City\tI-LOC", "", "the\tO"]


@pytest.mark.parametrize("crf, pieces, chars, arch", [
    (True, False, "cnn", "lstm"), (False, True, "lstm", "gru"), (True, False, "none", "transformer")])
def test_padding_never_changes_a_tag(crf, pieces, chars, arch):
    encoder = {"vocab_size": 30, "arch": arch, "units": 8, "num_layers": 2, "heads": 2, "char_features": chars,
               "char_vocab_size": 20, "char_dim": 4, "char_units": 4, "token_pieces": pieces, "max_length": 16}
    model = SequenceTagger(5, crf=crf, encoder=encoder)
    rng = np.random.default_rng(1)
    tokens = rng.integers(4, 30, (1, 4, 2) if pieces else (1, 4)).astype("int32")
    short = {"tokens": tokens, "chars": rng.integers(1, 20, (1, 4, 3)).astype("int32")}
    long = {"tokens": np.pad(tokens, ((0, 1), (0, 5)) + (((0, 1),) if pieces else ())),
            "chars": np.pad(short["chars"], ((0, 1), (0, 5), (0, 2)))}
    long["tokens"][1] = rng.integers(4, 30, long["tokens"].shape[1:])
    long["chars"][1] = rng.integers(1, 20, long["chars"].shape[1:])
    emissions = keras.ops.convert_to_numpy(model(short))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(long))[:1, :4], emissions, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.tag_ids(long))[:1, :4],
                                  keras.ops.convert_to_numpy(model.tag_ids(short)))


def test_pos_tagging_on_conllu_with_subword_words_and_per_tag_scores(tmp_path):
    rng = random.Random(2)
    rows = []
    for sentence_id in range(100):
        words = [(rng.choice(["the", "a"]), "DET"), (rng.choice(["cat", "dog", "bird"]), "NOUN"),
                 (rng.choice(["runs", "sleeps"]), "VERB"), (".", "PUNCT")]
        rows.append("".join(f"{i}\t{w}\t{w}\t{t}\t_\t_\t0\tdep\t_\t_\n" for i, (w, t) in enumerate(words, 1)) + "\n")
    (tmp_path / "pos.conllu").write_text("".join(rows))
    run = seqtasks.train("tag", data=str(tmp_path / "pos.conllu"), tokenizer="spm", vocab_size=40, arch="gru",
                         char_features="lstm", epochs=3, out=str(tmp_path / "pos"), verbose=0,
                         units=16, layers=1, batch_size=16, lr=0.01, warmup_steps=5, dropout=0.0, precision="fp32")
    metrics = run.evaluate(str(tmp_path / "pos.conllu"))
    assert metrics["accuracy"] >= 0.95 and "f1" not in metrics
    assert set(metrics["per_type"]) == {"DET", "NOUN", "VERB", "PUNCT"}
    assert next(iter(run.predict(["the dog sleeps ."])))["tags"] == ["DET", "NOUN", "VERB", "PUNCT"]


@pytest.mark.parametrize("case", ["columns", "empty-tag", "missing-column"])
def test_bad_inputs_are_one_line_errors_and_make_no_run(case, tmp_path):
    data = tmp_path / "data.conll"
    args = []
    if case == "columns":
        data.write_text("John NNP B-PER\nruns VBZ\n")
        expected = "data.conll, line 2"
    elif case == "empty-tag":
        data.write_text("1\tI\tI\tPRON\t_\t_\t0\troot\t_\t_\n2\tam\tbe\t_\t_\t_\t1\tcop\t_\t_\n")
        expected = "data.conll, line 2"
    else:
        data.write_text("John NNP B-PER\n")
        args, expected = ["--tag-col", "7"], "tag column 7 is missing"
    result = CliRunner().invoke(cli, ["train", "tag", "--data", str(data), "--out", str(tmp_path / "run"), *args])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("seqtasks: error: ") and expected in lines[0]
    assert not (tmp_path / "run").exists()


def test_bundled_demo_data_reads():
    from seqtasks.readers.conll import read_tagged_sentences
    from seqtasks.readers.tables import read_labeled_texts
    from seqtasks.tasks.classify import bundled_examples
    from seqtasks.tasks.tag import bundled_treebank

    sentences = read_tagged_sentences(str(bundled_treebank()))
    assert len(sentences) == 2500 and "PROPN" in {t for s in sentences for t in s.tags}
    records = read_labeled_texts(str(bundled_examples()))
    assert len(records) == 4000 and {r.label for r in records} == {"positive", "negative"}


def test_extend_labels_grows_the_output_and_crf_keeping_old_rows():
    from seqtasks.api import copy_weights

    encoder = {"vocab_size": 20, "units": 8, "num_layers": 1, "char_features": "none"}
    parent, child = SequenceTagger(5, crf=True, encoder=encoder), SequenceTagger(7, crf=True, encoder=encoder)
    inputs = {"tokens": np.array([[4, 5, 6]], "int32")}
    parent(inputs), child(inputs)
    fresh = keras.ops.convert_to_numpy(child.crf.transitions).copy()
    copy_weights(child, parent, grow=True)
    for new, old in ((child.crf.transitions, parent.crf.transitions), (child.output_layer.kernel, parent.output_layer.kernel),
                     (child.crf.end_scores, parent.crf.end_scores)):
        new, old = keras.ops.convert_to_numpy(new), keras.ops.convert_to_numpy(old)
        np.testing.assert_array_equal(new[tuple(slice(0, n) for n in old.shape)], old)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(child.crf.transitions)[5:, :], fresh[5:, :])
    unchanged = SequenceTagger(7, crf=True, encoder=encoder)
    unchanged(inputs)
    with pytest.raises(ValueError, match="cannot take"):
        copy_weights(unchanged, parent)


def test_finetune_tagger_on_a_new_entity_type(crf_run, data):
    (data / "misc.conll").write_text(conll([(["the", "Euro", "rose"], ["O", "I-MISC", "O"])] * 30))
    result = CliRunner().invoke(cli, ["finetune", str(crf_run), "--data", str(data / "misc.conll"),
                                      "--out", str(data / "ft-error")])
    assert result.exit_code == 1 and "'S-MISC'" in result.stderr and "--extend-labels" in result.stderr
    result = invoke("finetune", crf_run, "--data", data / "misc.conll", "--out", data / "ft", "--epochs", "1",
                    "--extend-labels", "--quiet")
    assert result.exit_code == 0, result.output
    labels = seqtasks.load(data / "ft").preprocessor.labels.names
    assert labels[:len(seqtasks.load(crf_run).preprocessor.labels.names)] == seqtasks.load(crf_run).preprocessor.labels.names
    assert labels[-1] == "S-MISC"


def test_checkpoint_reloads_compiled_for_resume(crf_run):
    model = keras.saving.load_model(crf_run / "checkpoints" / "last.keras", compile=True, safe_mode=True)
    assert model.use_crf and model.optimizer.iterations.numpy() > 0
    inputs = {"tokens": np.array([[5, 6, 7]], "int32"), "chars": np.array([[[5, 6], [7, 0], [8, 9]]], "int32")}
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.tag_ids(inputs)),
                                  keras.ops.convert_to_numpy(keras.saving.load_model(
                                      crf_run / "checkpoints" / "last.keras", compile=False).tag_ids(inputs)))
