"""Corpora of any shape in bounded pieces, bulk tokenizing, the whitespace tokenizer, the data cache.

Encoding a corpus in small blocks (cut inside lines and words) must give exactly the ids of
encoding it line by line; the bulk char and word encoders must give the ids of their definitions
(a look-up per character; the regex's tokens); the cache must survive damage and stay bounded.
"""
from __future__ import annotations

import errno
import json
import math
import os

import numpy as np
import pytest

import seqtasks
from seqtasks import disk_cache, image_pipeline, pipeline, tokenizers
from seqtasks.errors import UserError
from seqtasks.pipeline import encode_corpus
from seqtasks.readers import open_text_source
from seqtasks.tokenizers import EOS_ID, UNK_ID, safe_pieces, train_tokenizer

# CJK, emoji (astral, with a skin-tone modifier), combining marks, RTL with its mark, odd spaces.
MIXED = ("Straße café naïve résumé. 日本語のテキスト、句読点。😀👍🏽 e\u0301 a\u0308\u0301 "
         "עִברִית العربية \u200f! x\ty\u00a0z \u2028 under_score 42nd <unk> (a,b) ...\n")
SHAKESPEARE_LIKE = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"
MANY_LINES = (MIXED + SHAKESPEARE_LIKE) * 12
ONE_LINE = MANY_LINES.replace("\n", " ")


def reference_ids(tokenizer, text: str) -> list[int]:
    """The old way: the whole text, line by line (lines end at "\\n" only), EOS before and after."""
    lines = [line + "\n" for line in text.split("\n")]
    lines[-1] = lines[-1][:-1]
    ids = [EOS_ID] + [i for line_ids in tokenizer.encode_batch([line for line in lines if line]) for i in line_ids]
    return ids if ids[-1] == EOS_ID else ids + [EOS_ID]  # whitespace: the last line's EOS is the end


@pytest.fixture(scope="module")
def tokenizers_by_kind():
    texts = [MANY_LINES, ONE_LINE]
    return {kind: train_tokenizer(kind, texts, vocab_size=120 if kind == "word" else None) for kind in
            ("char", "word", "whitespace")} | {"spm": train_tokenizer("spm", texts, vocab_size=300)}


@pytest.mark.parametrize("kind", ["char", "word", "whitespace", "spm"])
@pytest.mark.parametrize("shape", ["one line", "many lines"])
def test_blocks_cut_anywhere_give_the_ids_of_whole_lines(kind, shape, tokenizers_by_kind, tmp_path, monkeypatch):
    tokenizer = tokenizers_by_kind[kind]
    text = ONE_LINE if shape == "one line" else MANY_LINES
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setattr(pipeline, "READ_BLOCK_CHARS", 37)  # cuts inside words, characters, lines
    monkeypatch.setattr(pipeline, "ENCODE_BATCH_CHARS", 101)
    encoded = encode_corpus(open_text_source(str(path)), tokenizer, cache_dir=tmp_path / "cache", show_progress=False)
    assert list(encoded.ids) == reference_ids(tokenizer, text)
    assert encoded.characters == len(text)


def test_bulk_encoders_match_their_definitions(tokenizers_by_kind):
    char, word = tokenizers_by_kind["char"], tokenizers_by_kind["word"]
    texts = [MIXED, ONE_LINE, "", " ", "\n\n", "\ue000\ue001 marks", "\ud800 lone surrogate", "_a1 2b\u0301"]
    for text in texts:
        assert char.encode(text) == [char._ids.get(c, UNK_ID) for c in text]
        assert word.encode(text) == [word._ids.get(t, UNK_ID) for t in tokenizers._WORD_PATTERN.findall(text)]
    assert word.encode_batch(texts) == [word.encode(text) for text in texts]
    assert char.encode_batch(texts) == [char.encode(text) for text in texts]
    lower = train_tokenizer("word", [MANY_LINES], lowercase=True)
    assert lower.encode("İSTANBUL Straße") == [lower._ids.get(t, UNK_ID) for t in
                                                 tokenizers._WORD_PATTERN.findall("İSTANBUL Straße".lower())]


def test_character_classes_are_the_regex_classes_on_every_path():
    """Latin-1 blocks (bytes.translate), other BMP blocks (a table), astral code points (one by one)."""
    from seqtasks.bulk_tokens import character_classes, class_of, code_points

    latin1 = "".join(map(chr, range(256)))
    for text in (latin1, latin1 + "\u0161\u2028日", latin1 + "😀\U0001d7ce\U00010000"):
        assert character_classes(code_points(text)).tolist() == [class_of(c) for c in text]
    assert character_classes(code_points("")).tolist() == []


def test_a_run_without_spaces_longer_than_the_limit_is_cut(monkeypatch):
    monkeypatch.setattr(tokenizers, "MAX_UNCUT_CHARS", 10)
    pieces = list(safe_pieces([("abcdefgh", False), ("ijklmnop", False), ("qr st", False), ("u\n", True)], "word"))
    assert "".join(p for p, _ in pieces) == "abcdefghijklmnopqr stu\n"
    assert all(len(p) <= 20 for p, _ in pieces)
    # with a space to cut at, a word is never split
    pieces = list(safe_pieces([("one tw", False), ("o three", False), ("\n", True)], "word"))
    assert [p for p, _ in pieces] == ["one ", "two ", "three\n"]


PTB_TRAIN = (" the cat sat on the mat \n a dog <unk> the cat \n the dog sat \n" * 40)
PTB_TEST = " the cat <unk> on a mat \n a dog sat \n"  # 9 words, 2 sentence ends


def test_whitespace_tokenizer_is_pre_tokenized_text_with_a_sentence_end_per_line():
    tokenizer = train_tokenizer("whitespace", [PTB_TRAIN])
    assert "<unk>" not in tokenizer.tokens[4:]  # the marker is the unknown token, not a word
    ids = tokenizer.encode(PTB_TEST)
    assert len(ids) == 9 + 2
    assert ids[2] == UNK_ID and ids[6] == EOS_ID and ids[-1] == EOS_ID
    assert tokenizer.encode("the zebra") == [tokenizer._ids["the"], UNK_ID]
    assert tokenizer.decode(ids) == "the cat <unk> on a mat\na dog sat\n"
    assert tokenizer.encode_batch([PTB_TEST, "a\tdog  "]) == [ids, [tokenizer._ids["a"], tokenizer._ids["dog"]]]


def test_lm_evaluate_reports_per_word_perplexity_over_words_and_sentence_ends(tmp_path):
    (tmp_path / "train.txt").write_text(PTB_TRAIN)
    (tmp_path / "test.txt").write_text(PTB_TEST)
    run = seqtasks.train("lm", data=str(tmp_path / "train.txt"), tokenizer="whitespace", units=8, layers=1,
                         seq_len=8, batch_size=4, epochs=1, steps_per_epoch=2, sample_tokens=0,
                         precision="fp32", out=str(tmp_path / "run"), verbose=0)
    metrics = run.evaluate(str(tmp_path / "test.txt"))
    assert metrics["tokens"] == 9 + 2  # every word and every sentence end, the first word included
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]))
    assert 1 < metrics["perplexity"] < run.preprocessor.vocab_size * 3


def _encode(tmp_path, text="some text\n" * 50, name="c.txt"):
    path = tmp_path / name
    path.write_text(text)
    tokenizer = train_tokenizer("char", [text])
    return encode_corpus(open_text_source(str(path)), tokenizer, cache_dir=tmp_path / "cache", show_progress=False)


@pytest.mark.parametrize("damage", ["garbage", "half", "empty", "wrong size", "no ids"])
def test_a_damaged_cache_entry_is_rebuilt(tmp_path, damage):
    first = np.array(_encode(tmp_path).ids)
    meta_path = next((tmp_path / "cache").glob("*.json"))
    ids_path = meta_path.with_suffix(".ids")
    text = meta_path.read_text()
    if damage == "garbage":
        meta_path.write_bytes(b"\x00\xff{not json")
    elif damage == "half":
        meta_path.write_text(text[: len(text) // 2])
    elif damage == "empty":
        meta_path.write_text("")
    elif damage == "wrong size":
        ids_path.write_bytes(ids_path.read_bytes()[:-6])
    else:
        ids_path.unlink()
    again = _encode(tmp_path)
    np.testing.assert_array_equal(np.array(again.ids), first)
    assert json.loads(meta_path.read_text())["tokens"] == len(first)


def test_orphan_temporary_files_are_removed_at_next_use(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    dead = cache / "0123abcd.ids.tmp999999999"  # no such process
    dead.write_bytes(bytes(1000))
    alive = cache / f"4567ef.ids.tmp{os.getppid()}"  # a running writer keeps its file
    alive.write_bytes(bytes(10))
    _encode(tmp_path)
    assert not dead.exists() and alive.exists()


def test_least_recently_used_entries_are_evicted_past_the_size_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQTASKS_CACHE_MB", "0.002")  # 2,000 bytes: two entries of about 900
    _encode(tmp_path, "first corpus\n" * 30, "a.txt")
    _encode(tmp_path, "second corpus\n" * 30, "b.txt")
    _encode(tmp_path, "first corpus\n" * 30, "a.txt")  # a hit: used most recently
    _encode(tmp_path, "third corpus\n" * 30, "c.txt")
    kept = {json.loads(p.read_text())["source"].rsplit("/", 1)[-1] for p in (tmp_path / "cache").glob("*.json")}
    assert kept == {"a.txt", "c.txt"}  # b was the least recently used


def test_the_image_cache_on_a_full_disk_is_a_one_line_error(tmp_path, monkeypatch):
    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(UserError, match="no space left"):
        image_pipeline._cached_array(tmp_path, "pixels-x", (2, 4, 4, 3), np.uint8, lambda out: {})
    assert not list(tmp_path.iterdir())  # no temporary file left behind


def test_the_image_cache_rebuilds_a_damaged_entry(tmp_path):
    def make(out):
        out[:] = 7
        return {"failed": []}

    image_pipeline._cached_array(tmp_path, "pixels-y", (2, 4, 4, 3), np.uint8, make)
    (tmp_path / "pixels-y.json").write_text("{")
    pixels, meta = image_pipeline._cached_array(tmp_path, "pixels-y", (2, 4, 4, 3), np.uint8, make)
    assert meta["failed"] == [] and (np.asarray(pixels) == 7).all()


def test_sentencepiece_trains_on_a_sample_of_a_large_corpus(monkeypatch, capsys):
    monkeypatch.setattr(tokenizers, "_SPM_MAX_TRAINING_CHARS", 20_000)
    lines = [f"line {i} of a corpus with some words in it and more words\n" for i in range(2000)]
    tokenizer = train_tokenizer("spm", lines, vocab_size=300)
    assert "trains on" in capsys.readouterr().out
    assert tokenizer.decode(tokenizer.encode("line 7 of a corpus")) == "line 7 of a corpus"
