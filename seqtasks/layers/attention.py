"""Multi-head attention with a KV cache, and the pre-LayerNorm Transformer decoder block.

Attention(Q, K, V) = softmax(Q Kᵀ / √d_head + M) V, computed per head, where M is 0 where a query may
look and -∞ (a large negative number) where it may not: the causal mask (key position > query
position) and padding. Shapes: x (batch, time, d_model); heads split d_model into (heads, d_head).

The KV cache holds the keys and values of every position decoded so far, shape
(batch, 2, max_length, heads, d_head) per layer. A decoding step computes K and V for the new tokens
only, writes them at `cache_index`, and attends over the cache: each new token costs O(t), not the
O(t²) of re-running the prefix.
"""
from __future__ import annotations

import keras
from keras import ops

_MASKED = -1e9


def causal_attention_mask(query_length, key_length, start_index=0):
    """(query_length, key_length) boolean: query i (at position start_index + i) may see key j <= it."""
    query_positions = ops.arange(query_length)[:, None] + start_index
    key_positions = ops.arange(key_length)[None, :]
    return key_positions <= query_positions


@keras.saving.register_keras_serializable(package="seqtasks")
class MultiHeadAttention(keras.layers.Layer):
    """Q = x W_q, K = m W_k, V = m W_v (m = x for self-attention);  y = concat_h(softmax(Q_h K_hᵀ/√d) V_h) W_o.

    Call arguments:
        query: (batch, q_time, d_model).
        memory: (batch, k_time, d_model) for cross-attention; None for self-attention.
        attention_mask: boolean, broadcastable to (batch, q_time, k_time); True = may attend.
        cache: (batch, 2, max_length, heads, d_head) self-attention KV cache, or None.
        cache_index: where the new keys and values go in the cache (a scalar).
        memory_keys_values: (batch, 2, k_time, heads, d_head) from `project_memory(memory)`: the
            cross-attention keys and values computed once per source instead of at every call.
    Returns (output (batch, q_time, d_model), updated cache or None). With `return_weights=True` the
    attention weights (batch, heads, q_time, k_time) come third.
    """

    def __init__(self, d_model: int, heads: int, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if d_model % heads:
            raise ValueError(f"d_model {d_model} is not divisible by heads {heads}")
        self.d_model, self.heads, self.dropout_rate = d_model, heads, dropout
        self.d_head = d_model // heads
        p = self.dtype_policy
        self.query_projection = keras.layers.Dense(d_model, name="query", dtype=p)
        self.key_projection = keras.layers.Dense(d_model, name="key", dtype=p)
        self.value_projection = keras.layers.Dense(d_model, name="value", dtype=p)
        self.output_projection = keras.layers.Dense(d_model, name="output", dtype=p)
        self.dropout = keras.layers.Dropout(dropout, dtype=p)

    def build(self, query_shape, memory_shape=None):
        memory_shape = memory_shape or query_shape
        self.query_projection.build(query_shape)
        self.key_projection.build(memory_shape)
        self.value_projection.build(memory_shape)
        self.output_projection.build((*query_shape[:-1], self.d_model))

    def split_heads(self, x):
        batch, time = ops.shape(x)[0], ops.shape(x)[1]
        return ops.reshape(x, (batch, time, self.heads, self.d_head))

    def project_memory(self, memory):
        """K and V of a memory that stays fixed while decoding: (batch, 2, k_time, heads, d_head)."""
        return ops.stack([self.split_heads(self.key_projection(memory)),
                          self.split_heads(self.value_projection(memory))], axis=1)

    def call(self, query, memory=None, attention_mask=None, cache=None, cache_index=None,
             training=None, return_weights=False, memory_keys_values=None):
        q = self.split_heads(self.query_projection(query))
        if memory_keys_values is not None:
            k, v = memory_keys_values[:, 0], memory_keys_values[:, 1]
        else:
            source = query if memory is None else memory
            k = self.split_heads(self.key_projection(source))
            v = self.split_heads(self.value_projection(source))
        if cache is not None:
            # write this step's keys and values at cache_index, then attend over the whole cache
            zero = ops.zeros((), "int32")
            start = (zero, zero, ops.cast(cache_index, "int32"), zero, zero)
            cache = ops.slice_update(cache, start, ops.stack([k, v], axis=1))
            k, v = cache[:, 0], cache[:, 1]
        scores = ops.einsum("bqhd,bkhd->bhqk", q, k) / ops.sqrt(ops.cast(self.d_head, q.dtype))
        if attention_mask is not None:
            mask = ops.cast(attention_mask, "bool")
            if len(mask.shape) == 3:
                mask = mask[:, None]
            scores = ops.where(mask, scores, ops.cast(_MASKED, scores.dtype))
        # softmax in float32: bf16 sums of many exponentials lose too much precision
        weights = ops.cast(ops.softmax(ops.cast(scores, "float32"), axis=-1), q.dtype)
        context = ops.einsum("bhqk,bkhd->bqhd", self.dropout(weights, training=training), v)
        batch, time = ops.shape(context)[0], ops.shape(context)[1]
        output = self.output_projection(ops.reshape(context, (batch, time, self.d_model)))
        if return_weights:
            return output, cache, weights
        return output, cache

    def get_config(self):
        return {**super().get_config(), "d_model": self.d_model, "heads": self.heads, "dropout": self.dropout_rate}


@keras.saving.register_keras_serializable(package="seqtasks")
class FeedForward(keras.layers.Layer):
    """FFN(x) = dropout(GELU(x W_1 + b_1)) W_2 + b_2, with hidden width = 4 × d_model by default."""

    def __init__(self, d_model: int, hidden: int, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.d_model, self.hidden, self.dropout_rate = d_model, hidden, dropout
        self.expand = keras.layers.Dense(hidden, activation="gelu", name="expand", dtype=self.dtype_policy)
        self.contract = keras.layers.Dense(d_model, name="contract", dtype=self.dtype_policy)
        self.dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy)

    def build(self, input_shape):
        self.expand.build(input_shape)
        self.contract.build((*input_shape[:-1], self.hidden))

    def call(self, x, training=None):
        return self.contract(self.dropout(self.expand(x), training=training))

    def get_config(self):
        return {**super().get_config(), "d_model": self.d_model, "hidden": self.hidden, "dropout": self.dropout_rate}


@keras.saving.register_keras_serializable(package="seqtasks")
class TransformerBlock(keras.layers.Layer):
    """Pre-LayerNorm Transformer block (GPT-2 style), optionally with cross-attention:

        x = x + Dropout(SelfAttention(LN(x), causal and padding mask))
        x = x + Dropout(CrossAttention(LN(x), memory))        # encoder-decoder only
        x = x + Dropout(FFN(LN(x)))

    Call arguments: x (batch, time, d_model); self_mask (broadcastable to (batch, time, k_time), True =
    may attend); memory and memory_mask for cross-attention; cache / cache_index as in
    MultiHeadAttention; memory_keys_values = `project_memory(memory)`, to reuse the cross-attention
    keys and values of one source at every decoding step. Returns (x, cache); with
    `return_weights=True` also the cross-attention weights (batch, heads, time, k_time).
    """

    def __init__(self, d_model: int, heads: int, hidden: int | None = None, dropout: float = 0.0,
                 cross_attention: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.d_model, self.heads, self.dropout_rate = d_model, heads, dropout
        self.hidden = hidden or 4 * d_model
        self.cross_attention = cross_attention
        p = self.dtype_policy
        self.self_attention_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="self_attention_norm", dtype=p)
        self.self_attention = MultiHeadAttention(d_model, heads, dropout, name="self_attention", dtype=p)
        if cross_attention:
            self.cross_attention_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="cross_attention_norm", dtype=p)
            self.cross_attention_layer = MultiHeadAttention(d_model, heads, dropout, name="cross_attention", dtype=p)
        self.feed_forward_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="feed_forward_norm", dtype=p)
        self.feed_forward = FeedForward(d_model, self.hidden, dropout, name="feed_forward", dtype=p)
        self.dropout = keras.layers.Dropout(dropout, dtype=p)

    def build(self, input_shape, memory_shape=None):
        self.self_attention_norm.build(input_shape)
        self.self_attention.build(input_shape)
        if self.cross_attention:
            self.cross_attention_norm.build(input_shape)
            self.cross_attention_layer.build(input_shape, memory_shape or input_shape)
        self.feed_forward_norm.build(input_shape)
        self.feed_forward.build(input_shape)

    def project_memory(self, memory):
        """The cross-attention keys and values of `memory` (batch, 2, k_time, heads, d_head)."""
        return self.cross_attention_layer.project_memory(memory)

    def call(self, x, self_mask=None, memory=None, memory_mask=None, cache=None, cache_index=None, training=None,
             memory_keys_values=None, return_weights=False):
        attended, cache = self.self_attention(
            self.self_attention_norm(x), attention_mask=self_mask, cache=cache, cache_index=cache_index,
            training=training,
        )
        x = x + self.dropout(attended, training=training)
        weights = None
        if self.cross_attention:
            attended, _, weights = self.cross_attention_layer(
                self.cross_attention_norm(x), memory=memory, attention_mask=memory_mask, training=training,
                memory_keys_values=memory_keys_values, return_weights=True,
            )
            x = x + self.dropout(attended, training=training)
        x = x + self.dropout(self.feed_forward(self.feed_forward_norm(x), training=training), training=training)
        if return_weights:
            return x, cache, weights
        return x, cache

    def get_config(self):
        return {**super().get_config(), "d_model": self.d_model, "heads": self.heads, "hidden": self.hidden,
                "dropout": self.dropout_rate, "cross_attention": self.cross_attention}
