"""sequence_inputs.InputEncoder in ops: what the shared encoder of classify and tag reads, from strings.

    EncoderInputs(prep)   .text_inputs(texts, max_len)  classification: the text's words (word vocabulary)
                                                        or its SentencePiece pieces, cut to max_len
                          .word_inputs(words)           tagging: one entry per word (its id, or its
                                                        first MAX_WORD_PIECES pieces of " " + word)
    Both give {"tokens": (batch, time[, pieces]) int32, "chars": (batch, time, chars) int32}, 0-padded,
    the ids InputEncoder.encode_text / encode_words give (seqtasks.graph_text has the tokenizers).
"""
from __future__ import annotations

import tensorflow as tf

from seqtasks.graph_text import classes_constant, graph_tokenizer, split_words, word_table
from seqtasks.sequence_inputs import MAX_WORD_CHARS, MAX_WORD_PIECES, InputEncoder
from seqtasks.tokenizers import UNK_ID


def _or_unk(ids: tf.RaggedTensor) -> tf.RaggedTensor:
    """Each empty row of ids becomes [UNK] (`ids or [UNK_ID]`)."""
    return tf.concat([ids, _where_empty(ids, tf.constant(UNK_ID, ids.dtype))], axis=1)


def _where_empty(ragged: tf.RaggedTensor, value) -> tf.RaggedTensor:
    """[value] for each empty row of `ragged`, [] for the others (1-D ops only, which TFLite converts)."""
    empty = tf.cast(ragged.row_lengths() == 0, tf.int64)
    return tf.RaggedTensor.from_row_lengths(tf.fill([tf.reduce_sum(empty)], value), empty)


def dense(ragged: tf.RaggedTensor) -> tf.Tensor:
    """A ragged batch -> 0-padded dense, at least one step long on each ragged axis (a model needs a time step)."""
    tensor = ragged.to_tensor(0)
    paddings = [[0, 0]] + [[0, tf.maximum(1 - tf.shape(tensor)[axis], 0)] for axis in range(1, tensor.shape.rank)]
    return tf.pad(tensor, paddings)


class EncoderInputs(tf.Module):
    def __init__(self, prep: InputEncoder):
        super().__init__()
        self.uses_words, self.lowercase = prep.uses_words, prep.lowercase
        self.classes = classes_constant()
        if prep.uses_words:
            self.words = word_table(prep.tokenizer.tokens)
        else:
            self.tokenizer = graph_tokenizer(prep.tokenizer)
        self.chars = graph_tokenizer(prep.chars) if prep.chars is not None else None

    def split(self, texts) -> tf.RaggedTensor:
        return split_words(texts, self.classes)

    def _word_ids(self, words: tf.RaggedTensor) -> tf.RaggedTensor:
        looked_up = tf.strings.lower(words, encoding="utf-8") if self.lowercase else words
        return tf.ragged.map_flat_values(self.words.lookup, looked_up)

    def _char_ids(self, tokens: tf.RaggedTensor) -> tf.RaggedTensor:
        """(batch, time) strings -> (batch, time, chars): each token's first MAX_WORD_CHARS characters, or [UNK]."""
        cleaned = tf.strings.regex_replace(tokens.flat_values, "\u2581", "")
        cut = tf.strings.substr(cleaned, 0, MAX_WORD_CHARS, unit="UTF8_CHAR")
        ids = _or_unk(self.chars.encode(cut))
        return tokens.with_flat_values(ids)

    def inputs(self, tokens: tf.RaggedTensor, char_source: tf.RaggedTensor) -> dict[str, tf.Tensor]:
        inputs = {"tokens": dense(tokens)}
        if self.chars is not None:
            inputs["chars"] = dense(self._char_ids(char_source))
        return inputs

    def text_inputs(self, texts, max_len: int) -> dict[str, tf.Tensor]:
        """InputEncoder.encode_text of each text, padded."""
        if self.uses_words:
            words = self.split(texts)[:, :max_len]
            question = _where_empty(words, tf.constant("?"))
            return self.inputs(_or_unk(self._word_ids(words)), tf.concat([words, question], axis=1))
        ids = _or_unk(self.tokenizer.encode(texts)[:, :max_len])
        return self.inputs(ids, tf.ragged.map_flat_values(self.tokenizer.pieces, ids))

    def word_inputs(self, words: tf.RaggedTensor) -> dict[str, tf.Tensor]:
        """InputEncoder.encode_words of each sentence of words, padded."""
        if self.uses_words:
            return self.inputs(self._word_ids(words), words)
        spaced = tf.strings.join([" ", words.flat_values])
        pieces = _or_unk(self.tokenizer.encode(spaced)[:, :MAX_WORD_PIECES])
        return self.inputs(words.with_flat_values(pieces), words)
