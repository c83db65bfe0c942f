"""Shape fuzzing through the CLI (issue 16, requirement 11): hostile small datasets for every task.

For each of the six tasks hypothesis writes a small dataset in the task's own file format, drawn from
records with hostile shapes: one-token sentences, sentences of only `O` tags, labels seen once, a
class present only in validation, empty lines between records, unicode (CJK, emoji with joiners,
combining marks, right-to-left scripts), very long tokens, a file with no final newline. A tiny model
trains for two steps, then `evaluate` and `predict` (or `sample`) run on it, in process (CliRunner).

Nothing may crash: every command exits 0, or, where the input is truly invalid, exits 1 with one line
`seqtasks: error: ...` and no traceback. The truly invalid inputs here are:
    - a validation file with a label or tag never seen in training (the label set is fixed by the
      training data; `train` refuses it and names the label and line);
    - classification data with only one label (a classifier needs two);
    - a language-model corpus shorter than one training window (nothing to train on).
Everything else (one-token sentences, unicode, empty lines, no final newline, ...) must train.
"""
from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings, strategies as st

from seqtasks.cli import cli
from seqtasks.tokenizers import train_tokenizer

ROOT = Path(__file__).resolve().parent.parent
FUZZ = settings(max_examples=2, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])
TINY = ["--units", "8", "--layers", "1", "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "4",
        "--warmup-steps", "1", "--precision", "fp32", "--dropout", "0"]

# words of hostile shapes: CJK, emoji (with joiners and modifiers), combining marks, RTL, very long
HOSTILE = ["漢字", "東京", "🙂", "👩‍👩‍👧", "👍🏽", "e\u0301", "n\u0303o", "שלום", "مرحبا", "x" * 300,
           "ab" * 90 + "é", "O", "-", "'", '"', "\\", "%s", "{}"]
PLAIN = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran"]
words = st.sampled_from(HOSTILE + PLAIN)
sentences = st.lists(words, min_size=1, max_size=6)          # one-token sentences included
separators = st.sampled_from(["\n", "\n", "\n\n", "\n\n\n"])  # empty lines between records


def invoke(*args, input=None):
    return CliRunner().invoke(cli, [str(a) for a in args], input=input)


def check(result, invalid: str | None = None) -> bool:
    """Exit 0, or (only when the input is `invalid`) exit 1 with one `seqtasks: error:` line. True on 0."""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        trace = "".join(traceback.format_exception(result.exception))
        raise AssertionError(f"crashed ({type(result.exception).__name__}):\n{result.output}\n{trace}")
    assert "Traceback" not in result.output, result.output
    if result.exit_code == 0:
        return True
    errors = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and len(errors) == 1 and errors[0].startswith("seqtasks: error: "), result.output
    assert invalid, f"refused valid input: {errors[0]}"
    assert invalid in errors[0], f"expected an error about {invalid!r}: {errors[0]}"
    return False


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def joined(records, draw_separators) -> str:
    """Records with empty lines between them; no final newline."""
    out = records[0]
    for record, separator in zip(records[1:], draw_separators):
        out += separator + record
    return out


@pytest.fixture
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def fresh(folder: Path, name: str) -> Path:
    path = folder / name
    if path.exists():
        shutil.rmtree(path)
    path.mkdir()
    return path


# --- lm ----------------------------------------------------------------------------------------------

@FUZZ
@given(lines=st.lists(sentences, min_size=1, max_size=12), gaps=st.lists(separators, min_size=12, max_size=12),
       tokenizer=st.sampled_from(["char", "word"]), arch=st.sampled_from(["lstm", "transformer"]))
@example(lines=[["漢字"]], gaps=["\n"] * 12, tokenizer="char", arch="lstm")   # shorter than a window
def test_lm_trains_evaluates_and_samples_on_hostile_text(folder, lines, gaps, tokenizer, arch):
    work = fresh(folder, "lm")
    corpus = write(work / "corpus.txt", joined([" ".join(line) for line in lines], gaps))
    train = invoke("train", "lm", "--data", corpus, "--out", work / "run", "--tokenizer", tokenizer, "--arch", arch,
                   "--seq-len", "8", "--heads", "2", "--sample-tokens", "4", *TINY)
    # a window of --seq-len 8 takes 9 tokens; the margin covers the end-of-document marks the corpus adds
    tokens = len(train_tokenizer(tokenizer, iter([corpus.read_text()])).encode(corpus.read_text()))
    if not check(train, invalid="window" if tokens <= 10 else None):
        return
    check(invoke("evaluate", work / "run", "--data", corpus))
    check(invoke("sample", work / "run", "--prompt", lines[0][0], "--max-new-tokens", "5"))


# --- generate ----------------------------------------------------------------------------------------

pairs = st.lists(st.tuples(sentences, sentences), min_size=2, max_size=10)


@FUZZ
@given(records=pairs, gaps=st.lists(separators, min_size=10, max_size=10), fmt=st.sampled_from(["jsonl", "tsv"]))
@example(records=[([w], [w]) for w in HOSTILE[:6]], gaps=["\n\n"] * 10, fmt="jsonl")
def test_generate_trains_evaluates_and_predicts_on_hostile_pairs(folder, records, gaps, fmt):
    work = fresh(folder, "generate")

    def line(prompt, completion):
        if fmt == "jsonl":
            return json.dumps({"prompt": " ".join(prompt), "completion": " ".join(completion)}, ensure_ascii=False)
        return " ".join(prompt) + "\t" + " ".join(completion)

    data = write(work / f"pairs.{fmt}", joined([line(p, c) for p, c in records], gaps))
    train = invoke("train", "generate", "--data", data, "--valid", data, "--out", work / "run", "--seq-len", "24",
                   "--sample-examples", "1", *TINY)
    check(train)
    check(invoke("evaluate", work / "run", "--data", data))
    check(invoke("predict", work / "run", *[" ".join(p) for p, _ in records[:3]], "--max-new-tokens", "4"))


# --- classify ----------------------------------------------------------------------------------------

labels = st.sampled_from(["pos", "neg", "négatif", "中性", "🙂", "x" * 60])


@FUZZ
@given(train=st.lists(st.tuples(sentences, labels), min_size=2, max_size=10),
       valid=st.lists(st.tuples(sentences, labels), min_size=1, max_size=4),
       gaps=st.lists(separators, min_size=10, max_size=10), arch=st.sampled_from(["lstm", "transformer"]))
@example(train=[(["a"], "pos"), (["漢字"], "neg"), (["x" * 300], "🙂")], valid=[(["b"], "only-in-valid")],
         gaps=["\n\n"] * 10, arch="lstm")   # labels seen once (one held out when there is no --valid), a class
                                              # only in validation
def test_classify_trains_evaluates_and_predicts_on_hostile_records(folder, train, valid, gaps, arch):
    work = fresh(folder, "classify")

    def table(records):
        return "text\tlabel\n" + joined([" ".join(text) + "\t" + label for text, label in records], gaps)

    train_file, valid_file = write(work / "train.tsv", table(train)), write(work / "valid.tsv", table(valid))
    unseen = {label for _, label in valid} - {label for _, label in train}
    if len({label for _, label in train}) < 2:
        check(invoke("train", "classify", "--data", train_file, "--out", work / "run", "--tokenizer", "word", *TINY),
              invalid="only one label")
        return
    trained = check(invoke("train", "classify", "--data", train_file, "--valid", valid_file, "--out", work / "run",
                           "--arch", arch, "--heads", "2", "--tokenizer", "word", *TINY),
                    invalid="not seen in training" if unseen else None)
    if not trained:  # a label seen once may be the one held out: it still belongs to the label set
        check(invoke("train", "classify", "--data", train_file, "--out", work / "run", "--arch", arch,
                     "--heads", "2", "--tokenizer", "word", *TINY))
    check(invoke("evaluate", work / "run", "--data", valid_file), invalid="not seen in training" if unseen else None)
    check(invoke("evaluate", work / "run", "--data", train_file))
    predict = invoke("predict", work / "run", "--input", write(work / "inputs.txt", "漢字 🙂\n\u05e9\u05dc\nx"))
    if check(predict):
        assert len(predict.stdout.strip("\n").splitlines()) == 3


# --- tag ---------------------------------------------------------------------------------------------

chunk_tags = st.sampled_from(["O", "O", "B-PER", "I-PER", "B-LOC", "B-渋谷", "I-MISC"])
tagged = st.lists(st.tuples(words, chunk_tags), min_size=1, max_size=6)


@FUZZ
@given(train=st.lists(tagged, min_size=2, max_size=10), gaps=st.lists(separators, min_size=10, max_size=10),
       crf=st.booleans(), max_len=st.sampled_from(["2", "64"]))
@example(train=[[("-DOCSTART-", "O")], [("漢字", "O")], [("a", "O"), ("b", "O")], [("🙂", "B-PER")]],
         gaps=["\n\n\n"] * 10, crf=True, max_len="2")   # one-token sentences, sentences of only O, tags seen once
def test_tag_trains_evaluates_and_predicts_on_hostile_sentences(folder, train, gaps, crf, max_len):
    work = fresh(folder, "tag")
    conll = write(work / "train.conll", joined(["\n".join(f"{w} {t}" for w, t in s) for s in train],
                                               ["\n" + g for g in gaps]))
    options = ["--char-units", "4", "--char-dim", "4", "--max-len", max_len, *(["--crf"] if crf else [])]
    if not check(invoke("train", "tag", "--data", conll, "--out", work / "run", *options, *TINY)):
        return
    check(invoke("evaluate", work / "run", "--data", conll))
    words_in = [w for s in train for w, _ in s]
    predict = invoke("predict", work / "run", "--json", "--", " ".join(words_in[:7]))  # "--": text may start with -
    if check(predict):
        output = json.loads(predict.stdout.splitlines()[0])["output"]
        assert len(output["tags"]) == len(output["tokens"]) >= len(words_in[:7])
    check(invoke("predict", work / "run", "--input", conll, "--pretokenized"))


# --- translate ---------------------------------------------------------------------------------------

@FUZZ
@given(records=pairs, gaps=st.lists(separators, min_size=10, max_size=10),
       arch=st.sampled_from(["transformer", "seq2seq"]), tokenizer=st.sampled_from(["spm", "word", "char"]))
@example(records=[([w], [w]) for w in HOSTILE[:8]], gaps=["\n\n"] * 10, arch="seq2seq", tokenizer="spm")
def test_translate_trains_evaluates_and_predicts_on_hostile_pairs(folder, records, gaps, arch, tokenizer):
    work = fresh(folder, "translate")
    data = write(work / "pairs.tsv", joined([" ".join(s) + "\t" + " ".join(t) for s, t in records], gaps))
    train = invoke("train", "translate", "--data", data, "--valid", data, "--out", work / "run", "--arch", arch,
                   "--heads", "2", "--tokenizer", tokenizer, "--sample-examples", "1", "--beam", "2",
                   "--max-source-len", "12", "--max-target-len", "12", *TINY)
    check(train)
    check(invoke("evaluate", work / "run", "--data", data))
    check(invoke("predict", work / "run", *[" ".join(s) for s, _ in records[:3]]))


# --- caption -----------------------------------------------------------------------------------------

SHAPES = ROOT / "data" / "shapes" / "images"


@FUZZ
@given(captions=st.lists(st.tuples(st.integers(0, 5), sentences), min_size=2, max_size=12),
       gaps=st.lists(separators, min_size=12, max_size=12), arch=st.sampled_from(["lstm", "transformer"]))
@example(captions=[(0, ["漢字"]), (1, ["🙂", "e\u0301"]), (2, ["x" * 300])], gaps=["\n\n"] * 12, arch="lstm")
def test_caption_trains_evaluates_and_predicts_on_hostile_captions(folder, captions, gaps, arch):
    work = fresh(folder, "caption")
    images = fresh(work, "images")
    for index in {i for i, _ in captions}:
        shutil.copy(SHAPES / f"shape_{index:05d}.png", images / f"{index}.png")
    rows = io.StringIO()
    csv.writer(rows, lineterminator="").writerow(["image", "caption"])
    lines = [rows.getvalue()]
    for index, caption in captions:
        rows = io.StringIO()
        csv.writer(rows, lineterminator="").writerow([f"{index}.png", " ".join(caption)])
        lines.append(rows.getvalue())
    table = write(work / "captions.csv", joined(lines, gaps))
    train = invoke("train", "caption", "--images", images, "--captions", table, "--valid", table, "--out",
                   work / "run", "--arch", arch, "--heads", "2", "--image-size", "16", "--cnn-filters", "4",
                   "--cnn-blocks", "1", "--sample-examples", "1", "--max-len", "8", *TINY)
    check(train)
    check(invoke("evaluate", work / "run", "--images", images, "--captions", table))
    check(invoke("predict", work / "run", *sorted(images.iterdir())[:2]))
