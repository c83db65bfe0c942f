"""Position encodings: added to token embeddings so attention can tell positions apart.

Both layers take the embedded tokens x (batch, time, features) and a `start_index`, the position of
x[:, 0] in the whole sequence, so decoding one token at a time with a KV cache gets the position it
would have had in a full forward pass. `start_index` is a scalar, or a (batch,) int tensor giving each
row its own (the decoding engine's rows of prompts of different lengths).
"""
from __future__ import annotations

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="seqtasks")
class SinusoidalPosition(keras.layers.Layer):
    """PE(p, 2i) = sin(p / 10000^(2i/d)),  PE(p, 2i+1) = cos(p / 10000^(2i/d))  (Vaswani et al. 2017).

    Returns x + PE[start_index : start_index + time]. No weights; any length works.
    """

    def call(self, x, start_index=0):
        time, features = ops.shape(x)[1], x.shape[-1]
        positions = ops.cast(_positions(time, start_index), "float32")  # (time,) or (batch, time)
        frequencies = ops.exp(
            ops.cast(ops.arange(0, features, 2), "float32") * (-math.log(10000.0) / features)
        )
        angles = positions[..., None] * frequencies
        # interleave sin and cos as (sin, cos) pairs along features
        encoding = ops.stack([ops.sin(angles), ops.cos(angles)], axis=-1)
        encoding = ops.reshape(encoding, (*ops.shape(angles)[:-1], -1))[..., :features]
        return x + ops.cast(encoding, x.dtype)


@keras.saving.register_keras_serializable(package="seqtasks")
class LearnedPosition(keras.layers.Layer):
    """x + P[start_index : start_index + time], with P a trained (max_length, features) table."""

    def __init__(self, max_length: int, **kwargs):
        super().__init__(**kwargs)
        self.max_length = max_length

    def build(self, input_shape):
        self.table = self.add_weight(
            name="table", shape=(self.max_length, input_shape[-1]),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
        )

    def call(self, x, start_index=0):
        time = ops.shape(x)[1]
        if _per_row(start_index):  # a position per row: (batch, time, features)
            return x + ops.cast(ops.take(self.table, _positions(time, start_index), axis=0), x.dtype)
        rows = ops.slice(self.table, (start_index, 0), (time, self.table.shape[-1]))
        return x + ops.cast(rows, x.dtype)[None]

    def get_config(self):
        return {**super().get_config(), "max_length": self.max_length}


def _per_row(start_index) -> bool:
    return len(getattr(start_index, "shape", ())) == 1


def _positions(time, start_index):
    """start_index + 0 .. time - 1: (time,) for a scalar start, (batch, time) for a (batch,) one."""
    if _per_row(start_index):
        return ops.cast(start_index, "int32")[:, None] + ops.arange(time)[None]
    return ops.arange(time) + start_index


def make_position_layer(kind: str, max_length: int, dtype=None, name: str = "position") -> keras.layers.Layer:
    if kind == "sinusoidal":
        return SinusoidalPosition(dtype=dtype, name=name)
    if kind == "learned":
        return LearnedPosition(max_length, dtype=dtype, name=name)
    raise ValueError(f"unknown position encoding {kind!r}; expected 'sinusoidal' or 'learned'")
