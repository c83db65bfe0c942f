"""Pooling: a sequence of encoder states (batch, time, features) -> one vector (batch, features).

    last       h_n, the state at the last real token. For a bidirectional recurrent encoder the
               backward half of the features is taken at the first token, where the backward pass
               ends, so the vector is [h→_n ; h←_1] (the classic BiRNN sentence vector).
    mean       Σ_t m_t h_t / Σ_t m_t
    max        max_t over real tokens, per feature
    attention  a = softmax_t(vᵀ tanh(W h_t + b)) over real tokens;  Σ_t a_t h_t   (Yang et al. 2016)

Mask convention: `mask` (batch, time) True for real tokens, which come first (right padding);
padding never changes the result.
"""
from __future__ import annotations

import keras
from keras import ops

from seqtasks.choices import POOLING_KINDS  # noqa: E402  (TF-free: the settings list them)
_MASKED = -1e9


@keras.saving.register_keras_serializable(package="seqtasks")
class SequencePooling(keras.layers.Layer):
    """Masked pooling over time.

    Args: kind (one of POOLING_KINDS); backward_features: the trailing features that come from a
    backward recurrent pass (only `last` uses it); attention_units: width of the attention scorer.
    Call arguments: states (batch, time, features); mask (batch, time) boolean.
    Returns (batch, features).
    """

    def __init__(self, kind: str = "max", backward_features: int = 0, attention_units: int = 0, **kwargs):
        super().__init__(**kwargs)
        if kind not in POOLING_KINDS:
            raise ValueError(f"unknown pooling {kind!r}; expected one of {POOLING_KINDS}")
        self.kind, self.backward_features, self.attention_units = kind, backward_features, attention_units
        if kind == "attention":
            p = self.dtype_policy
            self.scorer_hidden = keras.layers.Dense(attention_units or 64, activation="tanh", name="scorer_hidden",
                                                    dtype=p)
            self.scorer = keras.layers.Dense(1, use_bias=False, name="scorer", dtype=p)
        self.supports_masking = True  # the mask is consumed here: the pooled vector has no time axis

    def build(self, input_shape, mask_shape=None):
        if self.kind == "attention":
            self.scorer_hidden.build(input_shape)
            self.scorer.build((*input_shape[:-1], self.scorer_hidden.units))

    def call(self, states, mask):
        real = ops.cast(mask, states.dtype)[..., None]                         # (batch, time, 1)
        if self.kind == "mean":
            return ops.sum(states * real, axis=1) / ops.maximum(ops.sum(real, axis=1), 1.0)
        if self.kind == "max":
            return ops.max(ops.where(real > 0, states, ops.cast(_MASKED, states.dtype)), axis=1)
        if self.kind == "attention":
            scores = ops.cast(self.scorer(self.scorer_hidden(states)), "float32")   # (batch, time, 1)
            scores = ops.where(real > 0, scores, _MASKED)
            weights = ops.cast(ops.softmax(scores, axis=1), states.dtype)
            return ops.sum(weights * states, axis=1)
        lengths = ops.sum(ops.cast(mask, "int32"), axis=1)
        last = ops.take_along_axis(states, ops.maximum(lengths - 1, 0)[:, None, None], axis=1)[:, 0]
        if not self.backward_features:
            return last
        forward_width = states.shape[-1] - self.backward_features
        return ops.concatenate([last[:, :forward_width], states[:, 0, forward_width:]], axis=-1)

    def compute_mask(self, states, mask=None):
        return None

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "backward_features": self.backward_features,
                "attention_units": self.attention_units}
