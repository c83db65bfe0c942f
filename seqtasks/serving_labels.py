"""The exported graphs of the label tasks: texts in, labels (classify) or tags and entities (tag) out.

    ClassifierServing  serving_default(texts) -> label (batch,), probability (batch,), and every label
                       ranked: labels (batch, labels), probabilities (batch, labels): what
                       `seqtasks predict RUN TEXT --top-labels N` prints, unrounded
    TaggerServing      serving_default(texts) -> tokens, tags (batch, words) ("" past a sentence's end),
                       lengths (batch,), and the entity spans as word offsets (end exclusive), as
                       `predict --json` gives them: entity_starts, entity_ends, entity_types,
                       entity_texts (batch, entities), entity_counts (batch,)

Both read the text as predict does (seqtasks.serving_inputs); the tagger tags a sentence longer than
--max-len words in pieces of max_len words and writes tags in the training data's scheme
(seqtasks.graph_schemes).
"""
from __future__ import annotations

from typing import Any

import tensorflow as tf

from seqtasks.graph_schemes import ChunkTags
from seqtasks.sequence_inputs import InputEncoder
from seqtasks.serving_inputs import EncoderInputs

TEXTS = tf.TensorSpec([None], tf.string, "texts")


class ClassifierServing(tf.Module):
    def __init__(self, model, prep: InputEncoder, max_len: int):
        super().__init__()
        self.model, self.reader, self.max_len = model, EncoderInputs(prep), max_len
        self.names = tf.constant(prep.labels.names)
        self.serving_default = tf.function(self._classify, input_signature=[TEXTS])

    def signatures(self) -> dict[str, Any]:
        return {"serving_default": self.serving_default}

    def _classify(self, texts):
        blank = tf.strings.regex_full_match(texts, r"\s*")
        texts = tf.where(blank, " ", texts)  # as predict reads a blank text
        probabilities = tf.nn.softmax(tf.cast(self.model(self.reader.text_inputs(texts, self.max_len),
                                                         training=False), tf.float32), axis=-1)
        order = tf.argsort(-probabilities, axis=-1, stable=True)
        ranked = tf.gather(probabilities, order, batch_dims=1)
        return {"label": tf.gather(self.names, order[:, 0]), "probability": ranked[:, 0],
                "labels": tf.gather(self.names, order), "probabilities": ranked}


class TaggerServing(tf.Module):
    def __init__(self, model, prep: InputEncoder, max_len: int):
        super().__init__()
        self.model, self.reader, self.max_len = model, EncoderInputs(prep), max_len
        self.chunks = ChunkTags(prep.labels.names, prep.info["internal_scheme"], prep.info["scheme"])
        self.serving_default = tf.function(self._tag, input_signature=[TEXTS])

    def signatures(self) -> dict[str, Any]:
        return {"serving_default": self.serving_default}

    def _tag_ids(self, words: tf.RaggedTensor) -> tf.Tensor:
        """Tag ids (batch, time) of sentences of words, each cut in pieces of at most max_len words."""
        inputs = self.reader.word_inputs(words)
        batch, time = tf.shape(inputs["tokens"])[0], tf.shape(inputs["tokens"])[1]
        width = tf.minimum(time, self.max_len)
        pieces = (time + width - 1) // width
        padded_time = pieces * width

        def cut(x):  # (batch, time, ...) -> (batch * pieces, width, ...): each piece is a sentence of its own
            x = tf.pad(x, [[0, 0], [0, padded_time - time]] + [[0, 0]] * (x.shape.rank - 2))
            return tf.reshape(x, tf.concat([[batch * pieces, width], tf.shape(x)[2:]], 0))

        ids = self.model.tag_ids({key: cut(value) for key, value in inputs.items()})
        return tf.reshape(tf.cast(ids, tf.int32), [batch, padded_time])[:, :time]

    def _tag(self, texts):
        words = self.reader.split(texts)
        lengths = words.row_lengths()
        ids = self._tag_ids(words)
        tokens = words.to_tensor("")
        tags, entities = self.chunks(ids[:, :tf.shape(tokens)[1]], lengths, tokens)
        return {"tokens": tokens, "tags": tags, "lengths": lengths, **entities}
