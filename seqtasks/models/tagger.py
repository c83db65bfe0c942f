"""Sequence labeling: a tag per token from the shared encoder, by softmax or a linear-chain CRF.

    emissions_t = W h_t + b                       (batch, time, tags), float32
    softmax:  y_t = argmax_k emissions_t[k];      loss = mean cross-entropy over real tokens
    CRF:      y = Viterbi(emissions, A);          loss = mean over sentences of -log p(y | x)

Targets are tag ids padded with -1, which the loss and `MaskedAccuracy` skip. With the CRF the
model computes its own loss (`compute_loss`), since the loss needs the transition scores.
"""
from __future__ import annotations

from typing import Any

import keras
from keras import ops

from seqtasks.layers.crf import CRF
from seqtasks.models.encoder import EncoderModel, SequenceEncoder

PAD_TAG = -1


@keras.saving.register_keras_serializable(package="seqtasks")
class MaskedAccuracy(keras.metrics.Metric):
    """Token accuracy over real tokens: targets equal to PAD_TAG (-1) are not counted. y_pred is
    per-tag scores; a CRF tagger passes the one-hot Viterbi path (see compute_metrics)."""

    def __init__(self, name: str = "accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.correct = self.add_variable(shape=(), initializer="zeros", name="correct")
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(y_true, "int32")
        real = ops.cast(y_true != PAD_TAG, "float32")
        hits = ops.cast(ops.cast(ops.argmax(y_pred, axis=-1), "int32") == y_true, "float32") * real
        self.correct.assign_add(ops.sum(hits))
        self.total.assign_add(ops.sum(real))

    def result(self):
        return self.correct / ops.maximum(self.total, 1.0)

    def reset_state(self):
        self.correct.assign(0.0)
        self.total.assign(0.0)


@keras.saving.register_keras_serializable(package="seqtasks")
class SequenceTagger(EncoderModel, keras.Model):
    """Args: num_tags; crf (bool); encoder: the SequenceEncoder's arguments (a dict, saved as given).

    call(inputs) -> emissions (batch, time, tags);  tag_ids(inputs) -> (batch, time) int32, the
    Viterbi path with a CRF, else the per-token argmax."""

    def __init__(self, num_tags: int, crf: bool = False, encoder: dict[str, Any] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.num_tags, self.use_crf, self.encoder_config = num_tags, crf, dict(encoder or {})
        p = self.dtype_policy
        self.encoder = SequenceEncoder(**self.encoder_config, name="encoder", dtype=p)
        self.dropout = keras.layers.Dropout(self.encoder.dropout_rate, dtype=p)
        self.output_layer = keras.layers.Dense(num_tags, name="output", dtype=p)
        self.crf = CRF(num_tags, name="crf") if crf else None   # float32: the forward algorithm sums many terms

    def build(self, input_shape):
        self.encoder.build(input_shape)
        batch, time = input_shape["tokens"][0], input_shape["tokens"][1]
        self.output_layer.build((batch, time, self.encoder.output_dim))
        if self.crf is not None:
            self.crf.build()

    def call(self, inputs, training=None):
        states, _ = self.encoder(inputs, training=training)
        return ops.cast(self.output_layer(self.dropout(states, training=training)), "float32")

    def tag_ids(self, inputs):
        emissions = self(inputs, training=False)
        if self.crf is None:
            return ops.cast(ops.argmax(emissions, axis=-1), "int32")
        return self.crf.decode(emissions, self.encoder.token_mask(inputs["tokens"]))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if self.crf is None:
            return super().compute_loss(x, y, y_pred, sample_weight, training)
        y = ops.cast(y, "int32")
        mask = y != PAD_TAG
        nll = self.crf.negative_log_likelihood(y_pred, ops.maximum(y, 0), mask)
        return ops.mean(nll)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if self.crf is not None:
            # score the decoded path, not the emissions: the transitions take part in every decision
            path = self.crf.decode(y_pred, ops.cast(y, "int32") != PAD_TAG)
            y_pred = ops.one_hot(path, self.num_tags)
        return super().compute_metrics(x, y, y_pred, sample_weight)

    def freezable_parts(self) -> dict[str, list[keras.layers.Layer]]:
        """The encoder's parts (seqtasks.models.freezing), and the CRF's transition scores."""
        parts = super().freezable_parts()
        return {**parts, "crf": [self.crf]} if self.crf is not None else parts

    def get_config(self):
        return {**super().get_config(), "num_tags": self.num_tags, "crf": self.use_crf, "encoder": self.encoder_config}
