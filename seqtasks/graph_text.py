"""Text <-> ids inside a TensorFlow graph, for exported models: the ids of seqtasks.tokenizers, exactly.

An exported SavedModel takes strings, so its tokenizer is made of TensorFlow ops and constants (no
Python, no seqtasks at load time):

    char        code points (tf.strings.unicode_decode) -> ids through the tokenizer's own lookup table
                (code point -> id, every higher code point clipped to UNK), as CharTokenizer does
    word        the regex \\w+|[^\\w\\s]|\\n, and whitespace (runs of non-space, "\\n" -> EOS): each code
                point is classified through the table of seqtasks.bulk_tokens (exactly Python's \\w and
                \\s, for every code point), tokens are runs of one class or single characters, found with
                tensor ops on the flat code points, and looked up in a static hash table
    spm         the SentencePiece kernels of tensorflow-text (its op library, loaded by path: the
                package itself need not import), fed the run's own model proto

`split_words` is sequence_inputs.split_words in ops (peel punctuation off both ends of each chunk,
one mark at a time; English clitics off the end), for the classification and tagging inputs.
Lowercasing is tf.strings.lower(encoding="utf-8"), which agrees with str.lower except for the few
characters whose lowercase is longer than one code point (such as "İ").
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Sequence

import numpy as np
import tensorflow as tf

from seqtasks.bulk_tokens import NEWLINE, OTHER, SPACE, WORD, class_table
from seqtasks.errors import UserError
from seqtasks.tokenizers import (BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, UNK_ID, CharTokenizer,
                                 SentencePieceTokenizer, Tokenizer, WhitespaceTokenizer, WordTokenizer)

SENTENCEPIECE_LIBRARY = "python/ops/_sentencepiece_tokenizer.so"  # inside the tensorflow_text package
_CLITIC = r"(?i)^(.*\pL)(n't|'s|'re|'ve|'ll|'m|'d)$"  # sequence_inputs._CLITIC, group 1 ending in a letter


@functools.lru_cache(maxsize=1)
def _classes() -> np.ndarray:
    return class_table()


def sentencepiece_library() -> Path:
    """The op library of tensorflow-text's SentencePiece kernels; UserError when it is not installed."""
    spec = importlib.util.find_spec("tensorflow_text")  # finds the package without running it
    path = Path(next(iter(spec.submodule_search_locations))) / SENTENCEPIECE_LIBRARY if spec else None
    if path is None or not path.is_file():
        raise UserError("exporting a SentencePiece tokenizer needs tensorflow-text", fix=(
            'pip install "seqtasks[export]" (tensorflow-text of the same minor version as tensorflow)'))
    return path


@functools.lru_cache(maxsize=1)
def _sentencepiece_ops():
    return tf.load_op_library(str(sentencepiece_library()))


class SentencePieceModel(tf.saved_model.experimental.TrackableResource):
    """The SentencePiece processor as a graph resource, created from the model proto (saved as an
    attribute of the op, so the SavedModel holds the model itself)."""

    def __init__(self, model_proto: bytes):
        super().__init__()
        self._proto = model_proto
        _ = self.resource_handle

    def _create_resource(self):
        return _sentencepiece_ops().sentencepiece_op(model=self._proto)

    def tokenize(self, texts) -> tf.RaggedTensor:
        values, splits = _sentencepiece_ops().sentencepiece_tokenize_op(
            self.resource_handle, texts, nbest_size=0, alpha=1.0, add_bos=False, add_eos=False, reverse=False,
            out_type=tf.int32, return_nbest=False)
        return tf.RaggedTensor.from_row_splits(values, splits, validate=False)

    def detokenize(self, ids: tf.RaggedTensor) -> tf.Tensor:
        return _sentencepiece_ops().sentencepiece_detokenize_op(
            self.resource_handle, ids.flat_values, ids.row_splits, add_bos=False, add_eos=False, reverse=False)

    def pieces(self, ids) -> tf.Tensor:
        return _sentencepiece_ops().sentencepiece_id_to_string_op(self.resource_handle, ids)


# ---- code points and their classes --------------------------------------------------------------

def _code_points(texts) -> tf.RaggedTensor:
    return tf.strings.unicode_decode(texts, "UTF-8", errors="replace")


def _runs(codes: tf.RaggedTensor, classes_table, in_runs: Sequence[int], alone: Sequence[int]) -> tf.RaggedTensor:
    """The tokens of each text (batch, tokens) as strings: maximal runs of characters whose class is in
    `in_runs`, and single characters whose class is in `alone` (bulk_tokens.token_spans, in ops)."""
    flat = codes.flat_values
    rows = codes.value_rowids()
    classes = tf.gather(classes_table, tf.minimum(flat, len(_classes()) - 1))
    run = tf.reduce_any(tf.equal(classes[:, None], tf.constant(list(in_runs), tf.uint8)[None]), axis=1)
    single = tf.reduce_any(tf.equal(classes[:, None], tf.constant(list(alone), tf.uint8)[None]), axis=1)
    first = tf.equal(tf.range(tf.size(flat, out_type=tf.int64)), tf.gather(codes.row_splits, rows))
    run_before = tf.concat([[False], run[:-1]], axis=0) & ~first
    starts = (run & ~run_before) | single
    member = run | single
    token_of_char = tf.cumsum(tf.cast(starts, tf.int64)) - 1
    tokens = tf.RaggedTensor.from_value_rowids(tf.boolean_mask(flat, member), tf.boolean_mask(token_of_char, member),
                                               nrows=tf.reduce_sum(tf.cast(starts, tf.int64)))
    strings = tf.strings.unicode_encode(tokens, "UTF-8")
    return tf.RaggedTensor.from_value_rowids(strings, tf.boolean_mask(rows, starts), nrows=codes.nrows())


def split_words(texts, classes_table) -> tf.RaggedTensor:
    """sequence_inputs.split_words for a batch of texts -> (batch, words) strings.

    A chunk is a run of non-space characters; within it, a punctuation mark (neither \\w nor \\s) is a
    word of its own unless word characters lie on both sides of it in the chunk (the core, such as
    "don't" or "U.S"), and a core ending in a clitic after a letter is cut before the clitic."""
    codes = _code_points(texts)
    flat, rows = codes.flat_values, codes.value_rowids()
    classes = tf.gather(classes_table, tf.minimum(flat, len(_classes()) - 1))
    solid = (classes == WORD) | (classes == OTHER)
    word = classes == WORD
    position = tf.range(tf.size(flat, out_type=tf.int64))
    first = tf.equal(position, tf.gather(codes.row_splits, rows))
    chunk_start = solid & (first | ~tf.concat([[False], solid[:-1]], axis=0))
    chunk = tf.cumsum(tf.cast(chunk_start, tf.int64)) - 1
    chunks = tf.maximum(tf.reduce_max(chunk) + 1, 0)
    big = tf.size(flat, out_type=tf.int64) + 1
    chunk_of = tf.where(solid, chunk, chunks)  # spaces go to a chunk of their own, dropped below
    first_word = tf.math.unsorted_segment_min(tf.where(word, position, big), chunk_of, chunks + 1)
    last_word = tf.math.unsorted_segment_max(tf.where(word, position, -1), chunk_of, chunks + 1)
    inner = (position > tf.gather(first_word, chunk_of)) & (position < tf.gather(last_word, chunk_of))
    alone = solid & ~word & ~inner
    starts = chunk_start | alone | (solid & tf.concat([[False], alone[:-1]], axis=0))
    token_of_char = tf.cumsum(tf.cast(starts, tf.int64)) - 1
    pieces = tf.RaggedTensor.from_value_rowids(tf.boolean_mask(flat, solid), tf.boolean_mask(token_of_char, solid),
                                               nrows=tf.reduce_sum(tf.cast(starts, tf.int64)))
    strings = tf.strings.unicode_encode(pieces, "UTF-8")
    words = tf.RaggedTensor.from_value_rowids(strings, tf.boolean_mask(rows, starts), nrows=codes.nrows())
    # "do" "n't": the clitic split leaves a NUL-separated pair, split again and flattened back
    marked = tf.strings.regex_replace(words.flat_values, _CLITIC, "\\1\x00\\2")
    parts = tf.strings.split(marked, "\x00")
    return words.with_flat_values(parts).merge_dims(1, 2)


# ---- tokenizers ---------------------------------------------------------------------------------

class GraphTokenizer(tf.Module):
    """A seqtasks Tokenizer in ops: encode (batch,) strings -> (batch, tokens) ids; decode back.

    `encode` gives tokenizer.encode(text) for each text (no BOS/EOS); `decode` gives tokenizer.decode(ids)
    (pad, bos and eos dropped; whitespace writes eos as a line end)."""

    def __init__(self, tokenizer: Tokenizer):
        super().__init__()
        self.kind, self.lowercase = tokenizer.kind, tokenizer.lowercase
        self.vocab_size = tokenizer.vocab_size
        if isinstance(tokenizer, SentencePieceTokenizer):
            self.spm = SentencePieceModel(tokenizer.model_proto)
            return
        tokens = list(tokenizer.tokens)
        self.token_strings = tf.constant(tokens)
        if isinstance(tokenizer, CharTokenizer):
            self.char_table = tf.constant(_char_table(tokens))
        else:
            self.classes = tf.constant(_classes())
            self.table = word_table(tokens, unk_literal=isinstance(tokenizer, WhitespaceTokenizer))

    @property
    def uses_tensorflow_text(self) -> bool:
        return self.kind == "spm"

    def prepare(self, texts):
        return tf.strings.lower(texts, encoding="utf-8") if self.lowercase else texts

    def encode(self, texts) -> tf.RaggedTensor:
        texts = self.prepare(texts)
        if self.kind == "spm":
            return self.spm.tokenize(texts)
        codes = _code_points(texts)
        if self.kind == "char":
            table = self.char_table
            return tf.ragged.map_flat_values(lambda c: tf.gather(table, tf.minimum(c, tf.size(table) - 1)), codes)
        if self.kind == "word":
            tokens = _runs(codes, self.classes, (WORD,), (NEWLINE, OTHER))
            return tf.ragged.map_flat_values(self.table.lookup, tokens)
        tokens = _runs(codes, self.classes, (WORD, OTHER), (NEWLINE,))  # whitespace: "\n" is EOS
        return tf.ragged.map_flat_values(
            lambda t: tf.where(tf.equal(t, "\n"), EOS_ID, self.table.lookup(t)), tokens)

    def pieces(self, ids):
        """The token (piece, character or word) of each id."""
        return self.spm.pieces(ids) if self.kind == "spm" else tf.gather(self.token_strings, ids)

    def decode(self, ids: tf.RaggedTensor) -> tf.Tensor:
        dropped = (PAD_ID, BOS_ID) if self.kind == "whitespace" else (PAD_ID, BOS_ID, EOS_ID)
        keep = tf.ragged.map_flat_values(lambda i: ~tf.reduce_any(i[:, None] == tf.constant(dropped)[None], 1), ids)
        ids = tf.ragged.boolean_mask(ids, keep)
        if self.kind == "spm":
            return self.spm.detokenize(ids)
        tokens = tf.ragged.map_flat_values(lambda i: tf.gather(self.token_strings, i), ids)
        if self.kind == "char":
            return tf.strings.reduce_join(tokens, axis=1)
        if self.kind == "word":  # a space between two tokens unless one of them is "\n"
            breaks = tf.ragged.map_flat_values(lambda t: tf.equal(t, "\n"), tokens)
        else:  # whitespace: EOS ends a line, words of a line are joined by spaces
            breaks = tf.ragged.map_flat_values(lambda i: tf.equal(i, EOS_ID), ids)
            tokens = tf.ragged.map_flat_values(lambda t, b: tf.where(b, "\n", t), tokens, breaks)
        previous = tf.concat([tf.ones_like(breaks[:, :1]), breaks[:, :-1]], axis=1)
        spaced = tf.ragged.map_flat_values(lambda t, b, p: tf.where(b | p, t, tf.strings.join([" ", t])),
                                           tokens, breaks, previous)
        return tf.strings.reduce_join(spaced, axis=1)


def _char_table(tokens: Sequence[str]) -> np.ndarray:
    """CharTokenizer's table: code point -> id up to the highest known one, then UNK for the rest."""
    known = {token: i for i, token in enumerate(tokens) if i >= len(SPECIAL_TOKENS)}
    table = np.full(max((ord(c) for c in known), default=0) + 2, UNK_ID, np.int32)
    for char, i in known.items():
        table[ord(char)] = i
    return table


def word_table(tokens: Sequence[str], unk_literal: bool = False) -> tf.lookup.StaticHashTable:
    """Token string -> id (UNK for any other string), specials excluded as in the tokenizers: a text
    "<unk>" is not the UNK id, except for the whitespace tokenizer (`unk_literal`)."""
    keys = {}
    for i, token in enumerate(tokens):
        if i >= len(SPECIAL_TOKENS):
            keys[token] = i  # a repeated token: the last id, as the tokenizers' dictionaries have it
    if unk_literal:
        keys[SPECIAL_TOKENS[UNK_ID]] = UNK_ID
    initializer = tf.lookup.KeyValueTensorInitializer(tf.constant(list(keys) or [""]),
                                                      tf.constant(list(keys.values()) or [UNK_ID], tf.int32))
    return tf.lookup.StaticHashTable(initializer, default_value=UNK_ID)


def graph_tokenizer(tokenizer: Tokenizer) -> GraphTokenizer:
    if not isinstance(tokenizer, (CharTokenizer, WordTokenizer, WhitespaceTokenizer, SentencePieceTokenizer)):
        raise UserError(f"a {type(tokenizer).__name__} cannot be exported", fix="export a run with a built-in tokenizer")
    return GraphTokenizer(tokenizer)


def classes_constant() -> tf.Tensor:
    """The class (bulk_tokens WORD, SPACE, NEWLINE, OTHER) of every code point, as a constant."""
    return tf.constant(_classes())


__all__ = ["GraphTokenizer", "SentencePieceModel", "graph_tokenizer", "split_words", "word_table", "classes_constant",
           "sentencepiece_library", "SPACE"]
