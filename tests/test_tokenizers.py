"""Tests of seqtasks.tokenizers: round trips, specials, save/load, fingerprints, labels."""
from __future__ import annotations

import copy
import json
import pickle

import pytest

from seqtasks.errors import UserError
from seqtasks.tokenizers import (
    BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, UNK_ID, LabelVocabulary, load_tokenizer, train_tokenizer)

# Whole documents with tricky whitespace and non-ASCII letters; the spm tests pass it as a
# generator to check that training streams.
CORPUS = [
    "The quick brown fox jumps over the lazy dog.\nThe dog sleeps.",
    "  leading spaces, trailing spaces  \n\tTabbed\tline\n\nafter a blank line",
    "Straße, café, naïve résumé. 日本 日本語 テキスト",
    "runs   of     spaces\r\nand a CRLF line\n",
] * 4
TRICKY = [
    "The dog jumps.",
    "  two leading and two trailing  ",
    "a\tb\t\tc",
    "line one\nline two\n\n\nline five\n",
    "\n",
    " ",
    "Straße café 日本語",
    "runs   of     spaces\r\n",
    "",
]


@pytest.fixture(scope="module", params=["unigram", "bpe"])
def spm_tokenizer(request):
    return train_tokenizer("spm", (text for text in CORPUS), vocab_size=400, model_type=request.param)


@pytest.fixture(scope="module")
def char_tokenizer():
    return train_tokenizer("char", CORPUS)


@pytest.fixture(scope="module")
def word_tokenizer():
    return train_tokenizer("word", CORPUS, vocab_size=20)


@pytest.mark.parametrize("text", TRICKY)
def test_spm_round_trip(spm_tokenizer, text):
    assert spm_tokenizer.decode(spm_tokenizer.encode(text)) == text


@pytest.mark.parametrize("text", TRICKY)
def test_char_round_trip(char_tokenizer, text):
    assert char_tokenizer.decode(char_tokenizer.encode(text)) == text


def test_spm_newline_is_one_piece(spm_tokenizer):
    ids = spm_tokenizer.encode("\n")
    assert len(ids) == 1 and spm_tokenizer.id_to_token(ids[0]) == "\n"


def test_spm_byte_fallback_round_trips_unseen_characters(spm_tokenizer):
    text = "Zürich € ☃ 한국어"
    assert spm_tokenizer.decode(spm_tokenizer.encode(text)) == text


def test_encode_batch_matches_encode(spm_tokenizer, char_tokenizer, word_tokenizer):
    for tokenizer in (spm_tokenizer, char_tokenizer, word_tokenizer):
        assert tokenizer.encode_batch(TRICKY) == [tokenizer.encode(text) for text in TRICKY]


def test_special_ids_and_decode_drops_pad_bos_eos(spm_tokenizer, char_tokenizer, word_tokenizer):
    for tokenizer in (spm_tokenizer, char_tokenizer, word_tokenizer):
        assert (tokenizer.pad_id, tokenizer.unk_id, tokenizer.bos_id, tokenizer.eos_id) == (0, 1, 2, 3)
        assert (PAD_ID, UNK_ID, BOS_ID, EOS_ID) == (0, 1, 2, 3)
        assert [tokenizer.id_to_token(i) for i in range(4)] == list(SPECIAL_TOKENS)
        ids = tokenizer.encode("The dog")
        assert min(ids) > EOS_ID
        wrapped = [BOS_ID] + ids + [EOS_ID] + ids + [EOS_ID, PAD_ID, PAD_ID]
        # EOS does not stop decoding: both copies come back.
        assert tokenizer.decode(wrapped) == tokenizer.decode(ids + ids)


def test_char_vocabulary_is_ordered_and_capped():
    tokenizer = train_tokenizer("char", ["aab b", "c"])
    # descending frequency, then code point: 'a' and 'b' (2 each), then ' ' (32) before 'c'
    assert [tokenizer.id_to_token(i) for i in range(4, tokenizer.vocab_size)] == ["a", "b", " ", "c"]
    capped = train_tokenizer("char", ["aab b", "c"], vocab_size=6)
    assert capped.vocab_size == 6
    assert capped.encode("abc") == [4, 5, UNK_ID]


def test_char_unseen_character_is_unk(char_tokenizer):
    ids = char_tokenizer.encode("dog☃")
    assert ids[-1] == UNK_ID and UNK_ID not in ids[:-1]


def test_word_tokenizer_round_trip():
    tokenizer = train_tokenizer("word", ["Hello, world!\nHello again."], lowercase=True)
    assert tokenizer.decode(tokenizer.encode("Hello, world!\nHello again.")) == "hello , world !\nhello again ."
    assert tokenizer.decode(tokenizer.encode("hello  world")) == "hello world"
    assert tokenizer.encode("goodbye world")[0] == UNK_ID


def test_word_vocabulary_keeps_most_frequent(word_tokenizer):
    assert word_tokenizer.vocab_size == 20
    tokens = [word_tokenizer.id_to_token(i) for i in range(4, 14)]
    # descending frequency, ties broken by the token itself
    assert tokens == ["\n", ",", ".", "line", "spaces", "The", "a", "dog", "CRLF", "Straße"]


@pytest.mark.parametrize("kind", ["spm", "char", "word"])
def test_save_load_gives_identical_tokenizer(tmp_path, kind, spm_tokenizer, char_tokenizer, word_tokenizer):
    tokenizer = {"spm": spm_tokenizer, "char": char_tokenizer, "word": word_tokenizer}[kind]
    tokenizer.save(tmp_path / "tok")
    config = json.loads((tmp_path / "tok" / "tokenizer.json").read_text())
    assert config["kind"] == kind
    assert not [p for p in (tmp_path / "tok").iterdir() if ".tmp" in p.name]
    loaded = load_tokenizer(tmp_path / "tok")
    assert type(loaded) is type(tokenizer)
    assert loaded.fingerprint() == tokenizer.fingerprint()
    assert loaded.vocab_size == tokenizer.vocab_size
    assert loaded.encode_batch(TRICKY) == tokenizer.encode_batch(TRICKY)


def test_fingerprints_differ(spm_tokenizer, char_tokenizer, word_tokenizer):
    other_char = train_tokenizer("char", CORPUS[:2])
    lowercase_char = train_tokenizer("char", CORPUS, lowercase=True)
    fingerprints = {t.fingerprint() for t in (spm_tokenizer, char_tokenizer, word_tokenizer,
                                              other_char, lowercase_char)}
    assert len(fingerprints) == 5
    assert char_tokenizer.fingerprint() == train_tokenizer("char", CORPUS).fingerprint()


def test_tokenizers_survive_pickle_and_copy(spm_tokenizer, char_tokenizer):
    for tokenizer in (spm_tokenizer, char_tokenizer):
        for clone in (pickle.loads(pickle.dumps(tokenizer)), copy.deepcopy(tokenizer)):
            assert clone.encode("The dog") == tokenizer.encode("The dog")
            assert clone.fingerprint() == tokenizer.fingerprint()


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_spm_tiny_vocab_on_tiny_corpus_still_trains(model_type):
    texts = ["abc abd\nabe", "ab ab  ab"]
    for vocab_size in (8, 8000):
        tokenizer = train_tokenizer("spm", texts, vocab_size=vocab_size, model_type=model_type)
        assert tokenizer.decode(tokenizer.encode("abe ab\nabc")) == "abe ab\nabc"


def test_max_training_lines_caps_the_corpus():
    tokenizer = train_tokenizer("char", ["ab\ncd\nef"], max_training_lines=2)
    assert tokenizer.encode("e")[0] == UNK_ID and UNK_ID not in tokenizer.encode("abcd\n")


@pytest.mark.parametrize("kind", ["spm", "char", "word"])
@pytest.mark.parametrize("texts", [[], ["", "  \n\t", "\n\n"]])
def test_empty_corpus_is_a_user_error(kind, texts):
    with pytest.raises(UserError, match="empty"):
        train_tokenizer(kind, iter(texts))


def test_bad_arguments_are_user_errors():
    with pytest.raises(UserError, match="kind"):
        train_tokenizer("bytes", ["text"])
    with pytest.raises(UserError, match="model type"):
        train_tokenizer("spm", ["text"], model_type="wordpiece")


def test_load_from_folder_without_tokenizer(tmp_path):
    with pytest.raises(UserError, match="no tokenizer") as error:
        load_tokenizer(tmp_path)
    assert str(tmp_path) in str(error.value)
    train_tokenizer("char", ["abc"]).save(tmp_path)
    (tmp_path / "chars.json").unlink()
    with pytest.raises(UserError, match="missing"):
        load_tokenizer(tmp_path)


def test_label_vocabulary(tmp_path):
    labels = LabelVocabulary.from_examples(["pos", "neg", "pos", "neutral"])
    assert labels.names == ["neg", "neutral", "pos"] and len(labels) == 3
    assert [labels.encode(name) for name in ("neg", "neutral", "pos")] == [0, 1, 2]
    assert labels.decode(2) == "pos"
    labels.save(tmp_path)
    assert LabelVocabulary.load(tmp_path).names == labels.names
    labels.save(tmp_path, filename="tags.json")
    assert LabelVocabulary.load(tmp_path, filename="tags.json").names == labels.names


def test_unseen_label_is_a_user_error_naming_it():
    labels = LabelVocabulary.from_examples(["B-PER", "O"])
    with pytest.raises(UserError) as error:
        labels.encode("I-LOC")
    assert "I-LOC" in str(error.value) and "B-PER" in str(error.value)


def test_missing_labels_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError):
        LabelVocabulary.load(tmp_path)
