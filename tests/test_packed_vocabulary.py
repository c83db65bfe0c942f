"""The bulk look-up of word and whitespace tokens gives exactly a dictionary's ids.

Tokens of up to 16 ASCII characters are their own keys (two 64-bit integers); all others go through
a dictionary. The edges of that split (lengths 7, 8, 9, 15, 16 and 17; NUL; U+007F against U+0080; characters whose low byte
is ASCII) are where a packed key could wrongly equal another token's.
"""
from __future__ import annotations

import re

import numpy as np
from hypothesis import given, settings, strategies as st

from seqtasks.bulk_tokens import PackedVocabulary, code_points
from seqtasks.tokenizers import UNK_ID

EDGE_TOKENS = ["a", "ab", "abcdefg", "abcdefgh", "abcdefghi", "a\x00b", "\x00", "\x7f", "\x80", "a\x80",
               "\u0161", "a\u0161", "\u0141", "\U0001f600", "x" * 8, "x" * 9, "x" * 15, "x" * 16, "x" * 17, "x" * 40,
               "abcdefgh\x00", "abcdefghijklmnop", "abcdefghijklmno\u0161", "ab\x01", "é", "日本"]
# characters whose code point's low byte is an ASCII letter, beside the letters themselves
ALPHABET = "abx\x00\x01\x7f\x80\u0161\u0141\u0178\u0162é日\U0001f600"


def reference(vocabulary: dict[str, int], tokens: list[str]) -> list[int]:
    return [vocabulary.get(token, UNK_ID) for token in tokens]


def lookup(vocabulary: PackedVocabulary, tokens: list[str]) -> list[int]:
    """Tokens joined by spaces, as the tokenizers join texts, looked up in one call."""
    text = " ".join(tokens)
    lengths = np.array([len(token) for token in tokens], np.int64)
    starts = np.cumsum(lengths + 1) - lengths - 1
    return vocabulary.lookup(text, code_points(text), starts, starts + lengths, UNK_ID).tolist()


def test_every_edge_token_finds_its_own_id_and_no_other():
    ids = {token: i + 10 for i, token in enumerate(EDGE_TOKENS)}
    vocabulary = PackedVocabulary(list(ids), list(ids.values()))
    near_misses = ["abcdefgh"[:n] for n in range(1, 9)] + ["abcdefghij", "a\x00", "b", "\x81", "a\x81", "x" * 7,
                                                            "x" * 10, "x" * 18, "abcdefghijklmnoq", "abcdefgh\x80", "ab\x02", "ab\x01\x01", "\u0162", "日"]
    tokens = EDGE_TOKENS + near_misses
    assert lookup(vocabulary, tokens) == reference(ids, tokens)


@settings(max_examples=60, deadline=None)
@given(vocabulary=st.lists(st.text(ALPHABET, min_size=1, max_size=19), max_size=30, unique=True),
       tokens=st.lists(st.text(ALPHABET, min_size=1, max_size=19), min_size=1, max_size=40))
def test_lookup_equals_a_dictionary(vocabulary, tokens):
    tokens = [token for token in tokens if not re.search(r"\s", token)] or ["a"]
    vocabulary = [token for token in vocabulary if not re.search(r"\s", token)]
    ids = {token: i + 10 for i, token in enumerate(vocabulary)}
    packed = PackedVocabulary(list(ids), list(ids.values()))
    # tokens from the vocabulary itself as well as random ones
    mixed = tokens + vocabulary[: len(tokens)]
    assert lookup(packed, mixed) == reference(ids, mixed)


def test_an_empty_vocabulary_finds_nothing():
    assert lookup(PackedVocabulary([], []), ["a", "abcdefgh", "日本"]) == [UNK_ID] * 3
