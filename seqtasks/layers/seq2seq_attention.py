"""Attention of a recurrent decoder over encoder outputs: Bahdanau (additive) and Luong (multiplicative).

At each decoder step the query q (the decoder state) scores every encoder output h_j (the memory),
the scores become weights by a softmax over the real (unpadded) source positions, and the context is
the weighted average of the memory:

    e_j = score(q, h_j);   α = softmax_j(e) over j with mask_j = True;   context = Σ_j α_j h_j

The part of the score that depends only on the memory (W_k h_j, or W h_j) is the same at every
decoder step, so `precompute_keys(memory)` computes it once per sentence and decoders keep it in
their state; `call(..., keys=...)` then costs one small product per step.

Shapes: query (batch, query_features), or (batch, time, query_features) to attend from every
teacher-forced decoder step at once; memory (batch, source, memory_features); memory_mask
(batch, source) boolean, True = real token. Returns context (batch, [time,] memory_features) and
weights (batch, [time,] source); weights at padded positions are exactly 0 and sum to 1 over the rest.
"""
from __future__ import annotations

import keras
from keras import ops

_MASKED = -1e9


class _SourceAttention(keras.layers.Layer):
    """What both scores share: the masked softmax over source positions and the weighted sum."""

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.key_projection = self.make_key_projection()

    def make_key_projection(self) -> keras.layers.Layer:
        raise NotImplementedError

    def scores(self, query, keys):
        """e: (batch, [time,] source) from query (batch, [time,] query_features), keys (batch, source, units)."""
        raise NotImplementedError

    def precompute_keys(self, memory):
        """The memory's half of the score, (batch, source, units): computed once per sentence."""
        return self.key_projection(memory)

    def call(self, query, memory, memory_mask=None, keys=None):
        if keys is None:
            keys = self.precompute_keys(memory)
        has_time = len(query.shape) == 3
        scores = ops.cast(self.scores(query, keys), "float32")
        if memory_mask is not None:
            mask = ops.cast(memory_mask, "bool")
            mask = mask[:, None, :] if has_time else mask
            scores = ops.where(mask, scores, _MASKED)
        # softmax in float32: exp(-1e9 - max) underflows to exactly 0, so padding gets no weight
        weights = ops.cast(ops.softmax(scores, axis=-1), self.compute_dtype)
        equation = "bts,bsf->btf" if has_time else "bs,bsf->bf"
        context = ops.einsum(equation, weights, ops.cast(memory, self.compute_dtype))
        return context, weights

    def compute_output_spec(self, query, memory, memory_mask=None, keys=None):
        leading = tuple(query.shape[:-1])
        context = keras.KerasTensor((*leading, memory.shape[-1]), dtype=self.compute_dtype)
        weights = keras.KerasTensor((*leading, memory.shape[1]), dtype=self.compute_dtype)
        return context, weights

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="seqtasks")
class AdditiveAttention(_SourceAttention):
    """Bahdanau et al. (2015):  e_j = vᵀ tanh(W_q q + W_k h_j + b),  α = softmax(e),  c = Σ_j α_j h_j.

    Args:
        units: width of the hidden layer of the score (the size of v).
    Call arguments:
        query: (batch, query_features) decoder state, or (batch, time, query_features).
        memory: (batch, source, memory_features) encoder outputs.
        memory_mask: optional (batch, source) boolean, True = real token.
        keys: optional `precompute_keys(memory)` = W_k h_j + b, (batch, source, units).
    Returns (context (batch, [time,] memory_features), weights (batch, [time,] source)).
    """

    def __init__(self, units: int, **kwargs):
        super().__init__(units, **kwargs)
        self.query_projection = keras.layers.Dense(units, use_bias=False, name="query", dtype=self.dtype_policy)

    def make_key_projection(self):
        return keras.layers.Dense(self.units, name="key", dtype=self.dtype_policy)

    def build(self, query_shape, memory_shape):
        if not self.query_projection.built:
            self.query_projection.build(query_shape)
        if not self.key_projection.built:
            self.key_projection.build(memory_shape)
        self.score_vector = self.add_weight(name="score_vector", shape=(self.units,), initializer="glorot_uniform")

    def scores(self, query, keys):
        projected = self.query_projection(query)
        if len(query.shape) == 3:
            hidden = ops.tanh(projected[:, :, None, :] + keys[:, None, :, :])  # (batch, time, source, units)
        else:
            hidden = ops.tanh(projected[:, None, :] + keys)  # (batch, source, units)
        return ops.sum(hidden * ops.cast(self.score_vector, hidden.dtype), axis=-1)


@keras.saving.register_keras_serializable(package="seqtasks")
class MultiplicativeAttention(_SourceAttention):
    """Luong et al. (2015), "general" score:  e_j = qᵀ W h_j,  α = softmax(e),  c = Σ_j α_j h_j.

    Args:
        units: the query's feature size (W maps memory_features to it).
    Call arguments and returns as AdditiveAttention; `precompute_keys(memory)` = W h_j,
    (batch, source, units).
    """

    def make_key_projection(self):
        return keras.layers.Dense(self.units, use_bias=False, name="key", dtype=self.dtype_policy)

    def build(self, query_shape, memory_shape):
        if query_shape[-1] != self.units:
            raise ValueError(f"MultiplicativeAttention(units={self.units}) got queries of size {query_shape[-1]}; "
                             "units must equal the query's feature size")
        if not self.key_projection.built:
            self.key_projection.build(memory_shape)

    def scores(self, query, keys):
        if len(query.shape) == 3:
            return ops.einsum("btu,bsu->bts", query, keys)
        return ops.einsum("bu,bsu->bs", query, keys)
