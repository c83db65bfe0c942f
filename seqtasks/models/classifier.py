"""Sequence classification: p(label | x) = softmax(W · pool(Encoder(x)) + b).

Inputs: the encoder's dict ("tokens", and "chars" with character features). Output: label logits
(batch, labels) in float32. The encoder's padding mask reaches the pooling, so padding never
changes a prediction.
"""
from __future__ import annotations

from typing import Any

import keras
from keras import ops

from seqtasks.layers.pooling import SequencePooling
from seqtasks.models.encoder import EncoderModel, SequenceEncoder


@keras.saving.register_keras_serializable(package="seqtasks")
class SequenceClassifier(EncoderModel, keras.Model):
    """Args: num_labels; pooling ("last" | "mean" | "max" | "attention"); encoder: the
    SequenceEncoder's arguments (a dict, saved as given)."""

    def __init__(self, num_labels: int, pooling: str = "max", encoder: dict[str, Any] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.num_labels, self.pooling_kind, self.encoder_config = num_labels, pooling, dict(encoder or {})
        p = self.dtype_policy
        self.encoder = SequenceEncoder(**self.encoder_config, name="encoder", dtype=p)
        self.pooling = SequencePooling(pooling, backward_features=self.encoder.backward_features, name="pooling",
                                       dtype=p)
        self.dropout = keras.layers.Dropout(self.encoder.dropout_rate, dtype=p)
        self.output_layer = keras.layers.Dense(num_labels, name="output", dtype=p)

    def build(self, input_shape):
        self.encoder.build(input_shape)
        batch, time = input_shape["tokens"][0], input_shape["tokens"][1]
        self.pooling.build((batch, time, self.encoder.output_dim))
        self.output_layer.build((batch, self.encoder.output_dim))

    def call(self, inputs, training=None):
        states, mask = self.encoder(inputs, training=training)
        pooled = self.pooling(states, mask)
        return ops.cast(self.output_layer(self.dropout(pooled, training=training)), "float32")

    def get_config(self):
        return {**super().get_config(), "num_labels": self.num_labels, "pooling": self.pooling_kind,
                "encoder": self.encoder_config}
