"""Multi-head attention with a KV cache, and the pre-LayerNorm Transformer decoder block.

Attention(Q, K, V) = softmax(Q Kᵀ / √d_head + M) V, computed per head, where M is 0 where a query may
look and -∞ (a large negative number) where it may not: the causal mask (key position > query
position) and padding. Shapes: x (batch, time, d_model); heads split d_model into (heads, d_head).

The KV cache holds the keys and values of every position decoded so far: a pair (Kᵀ, V) per layer,
Kᵀ (batch, heads, d_head, max_length) and V (batch, heads, max_length, d_head), in the dtype
`empty_cache` is given (TransformerDecoder keeps float32 even for a bf16 model: the step's float32
products then read the cache as it is, where a bf16 cache was converted whole at every step). A decoding step
computes K and V for the new tokens only, writes them at `cache_index`, and attends over the cache:
each new token costs O(t), not the O(t²) of re-running the prefix. The cache is stored in the layout
the two products read, Q Kᵀ as (…, 1, d_head) @ (…, d_head, max_length) and A V as
(…, 1, max_length) @ (…, max_length, d_head), so a step never transposes or copies it (under XLA a
transposed K costs a copy of the whole cache per layer per step, and the write is done in place).
"""
from __future__ import annotations

import keras
from keras import ops

_MASKED = -1e9


def kv_pairs(flat) -> list[tuple]:
    """(Kᵀ_0, V_0, Kᵀ_1, V_1, ...) -> [(Kᵀ_0, V_0), (Kᵀ_1, V_1), ...]: decoder states are flat tuples."""
    return [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]


def _score_mask(attention_mask):
    """A boolean mask (…, k_time) or (batch, q_time, k_time) as one broadcastable to (batch, heads, q_time, k_time)."""
    mask = ops.cast(attention_mask, "bool")
    return mask[:, None] if len(mask.shape) == 3 else mask


def write_cache(cache, keys, values, index):
    """The KV cache (Kᵀ, V) with keys Kᵀ (batch, heads, d_head, time) and values V (batch, heads, time,
    d_head) written at positions index .. index + time - 1."""
    zero, index = ops.zeros((), "int32"), ops.cast(index, "int32")
    return (ops.slice_update(cache[0], (zero, zero, zero, index), ops.cast(keys, cache[0].dtype)),
            ops.slice_update(cache[1], (zero, zero, index, zero), ops.cast(values, cache[1].dtype)))


def causal_attention_mask(query_length, key_length, start_index=0, first_key=None):
    """Boolean: query i (at position start_index + i) may see key j <= it, (query_length, key_length).

    first_key, a (batch,) int tensor: row b also may not see keys j < first_key[b] (the padding before
    a right-aligned prompt); the mask is then (batch, query_length, key_length).
    """
    query_positions = ops.arange(query_length)[:, None] + start_index
    key_positions = ops.arange(key_length)[None, :]
    causal = key_positions <= query_positions
    if first_key is None:
        return causal
    return causal[None] & (key_positions[None] >= ops.cast(first_key, "int32")[:, None, None])


@keras.saving.register_keras_serializable(package="seqtasks")
class MultiHeadAttention(keras.layers.Layer):
    """Q = x W_q, K = m W_k, V = m W_v (m = x for self-attention);  y = concat_h(softmax(Q_h K_hᵀ/√d) V_h) W_o.

    Call arguments:
        query: (batch, q_time, d_model).
        memory: (batch, k_time, d_model) for cross-attention; None for self-attention.
        attention_mask: boolean, broadcastable to (batch, q_time, k_time); True = may attend.
        cache: the self-attention KV cache (Kᵀ, V) from `empty_cache`, or None.
        cache_index: where the new keys and values go in the cache (a scalar).
        memory_keys_values: (Kᵀ, V) of the memory from `project_memory(memory)`: computed once per
            source instead of at every call.
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

    def split_heads(self, x, transposed=False):
        """(batch, time, d_model) -> (batch, heads, time, d_head), or (batch, heads, d_head, time) transposed."""
        batch, time = ops.shape(x)[0], ops.shape(x)[1]
        x = ops.reshape(x, (batch, time, self.heads, self.d_head))
        return ops.transpose(x, (0, 2, 3, 1) if transposed else (0, 2, 1, 3))

    def keys_values(self, source):
        """(Kᵀ (batch, heads, d_head, time), V (batch, heads, time, d_head)) of `source` (batch, time, d_model)."""
        return (self.split_heads(self.key_projection(source), transposed=True),
                self.split_heads(self.value_projection(source)))

    def empty_cache(self, batch, max_length, dtype):
        """A KV cache for `max_length` positions: zeros (Kᵀ, V), laid out as `keys_values` returns them."""
        return (ops.zeros((batch, self.heads, self.d_head, max_length), dtype),
                ops.zeros((batch, self.heads, max_length, self.d_head), dtype))

    def project_memory(self, memory):
        """(Kᵀ, V) of a memory that stays fixed while decoding (see `keys_values`)."""
        return self.keys_values(memory)

    def call(self, query, memory=None, attention_mask=None, cache=None, cache_index=None,
             training=None, return_weights=False, memory_keys_values=None):
        q = self.split_heads(self.query_projection(query))
        if memory_keys_values is not None:
            keys, values = memory_keys_values
        else:
            keys, values = self.keys_values(query if memory is None else memory)
        if cache is not None:
            # write the new keys and values at cache_index, then attend over the whole cache
            keys, values = cache = write_cache(cache, keys, values, cache_index)
            if query.shape[1] == 1:
                return self._attend_one_query(q, keys, values, attention_mask, cache, return_weights)
            keys, values = ops.cast(keys, q.dtype), ops.cast(values, q.dtype)  # a float32 cache, a bf16 model
        scores = ops.matmul(q, keys) / ops.sqrt(ops.cast(self.d_head, q.dtype))  # (batch, heads, q_time, k_time)
        if attention_mask is not None:
            scores = ops.where(_score_mask(attention_mask), scores, ops.cast(_MASKED, scores.dtype))
        # softmax in float32: bf16 sums of many exponentials lose too much precision
        weights = ops.cast(ops.softmax(ops.cast(scores, "float32"), axis=-1), q.dtype)
        context = ops.transpose(ops.matmul(self.dropout(weights, training=training), values), (0, 2, 1, 3))
        batch, time = ops.shape(context)[0], ops.shape(context)[1]
        output = self.output_projection(ops.reshape(context, (batch, time, self.d_model)))
        if return_weights:
            return output, cache, weights
        return output, cache

    def _attend_one_query(self, q, keys, values, attention_mask, cache, return_weights):
        """A decoding step's self-attention over the updated cache, the products of `call` in float32
        (a bf16 model's step keeps float32 sums): s = q Kᵀ / √d_head (batch, heads, 1, max_length),
        y = softmax(s + M) V. q (batch, heads, 1, d_head); Kᵀ, V the cache with this step written in.

        Why dots that read the cache *after* the write: the read then depends on the write, so XLA
        updates the cache in place. Written as multiply-and-sum, XLA fuses the write into the product
        (recomputing it from the old cache) and must keep both: it copied every layer's whole cache
        at every step, twice at batch 8 (64 MB a step for 4 × 256 at context 512, past the 32 MB L3),
        which made batch 8 slower in tokens/s than batch 1. Reading the old cache and writing after
        is no better: nothing orders the read before the write, so XLA copies too.
        """
        q = ops.cast(q, "float32") / ops.sqrt(ops.cast(self.d_head, "float32"))
        scores = ops.matmul(q, ops.cast(keys, "float32"))  # (batch, heads, 1, max_length)
        if attention_mask is not None:
            scores = ops.where(_score_mask(attention_mask), scores, _MASKED)
        weights = ops.softmax(scores, axis=-1)
        context = ops.matmul(weights, ops.cast(values, "float32"))  # (batch, heads, 1, d_head)
        batch = ops.shape(context)[0]
        output = self.output_projection(ops.reshape(ops.cast(context, self.compute_dtype), (batch, 1, self.d_model)))
        if return_weights:
            return output, cache, ops.cast(weights, self.compute_dtype)
        return output, cache

    def get_config(self):
        return {**super().get_config(), "d_model": self.d_model, "heads": self.heads, "dropout": self.dropout_rate}


from seqtasks.choices import ACTIVATIONS  # noqa: E402  (TF-free: the settings list them)


def _activation(name: str):
    """The FFN nonlinearity. gelu is x Φ(x) with the exact erf; gelu_tanh is GPT-2's tanh approximation of it;
    relu is max(0, x), the original Transformer's. On a CPU the erf costs about as much as the FFN's matmuls
    in bf16, so relu trains the most tokens per second."""
    if name == "gelu":
        return lambda x: ops.gelu(x, approximate=False)
    if name == "gelu_tanh":
        return lambda x: ops.gelu(x, approximate=True)
    if name == "relu":
        return ops.relu
    raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")


@keras.saving.register_keras_serializable(package="seqtasks")
class FeedForward(keras.layers.Layer):
    """FFN(x) = dropout(f(x W_1 + b_1)) W_2 + b_2, f = GELU (default), tanh-GELU or ReLU; hidden width =
    4 × d_model by default."""

    def __init__(self, d_model: int, hidden: int, dropout: float = 0.0, activation: str = "gelu", **kwargs):
        super().__init__(**kwargs)
        self.d_model, self.hidden, self.dropout_rate, self.activation = d_model, hidden, dropout, activation
        self.nonlinearity = _activation(activation)
        self.expand = keras.layers.Dense(hidden, name="expand", dtype=self.dtype_policy)
        self.contract = keras.layers.Dense(d_model, name="contract", dtype=self.dtype_policy)
        self.dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy)

    def build(self, input_shape):
        self.expand.build(input_shape)
        self.contract.build((*input_shape[:-1], self.hidden))

    def call(self, x, training=None):
        return self.contract(self.dropout(self.nonlinearity(self.expand(x)), training=training))

    def get_config(self):
        return {**super().get_config(), "d_model": self.d_model, "hidden": self.hidden, "dropout": self.dropout_rate,
                "activation": self.activation}


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
    `return_weights=True` also the cross-attention weights (batch, heads, time, k_time). `activation` is
    the FFN's nonlinearity (see FeedForward).
    """

    def __init__(self, d_model: int, heads: int, hidden: int | None = None, dropout: float = 0.0,
                 cross_attention: bool = False, activation: str = "gelu", **kwargs):
        super().__init__(**kwargs)
        self.d_model, self.heads, self.dropout_rate, self.activation = d_model, heads, dropout, activation
        self.hidden = hidden or 4 * d_model
        self.cross_attention = cross_attention
        p = self.dtype_policy
        self.self_attention_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="self_attention_norm", dtype=p)
        self.self_attention = MultiHeadAttention(d_model, heads, dropout, name="self_attention", dtype=p)
        if cross_attention:
            self.cross_attention_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="cross_attention_norm", dtype=p)
            self.cross_attention_layer = MultiHeadAttention(d_model, heads, dropout, name="cross_attention", dtype=p)
        self.feed_forward_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="feed_forward_norm", dtype=p)
        self.feed_forward = FeedForward(d_model, self.hidden, dropout, activation, name="feed_forward", dtype=p)
        self.dropout = keras.layers.Dropout(dropout, dtype=p)

    def build(self, input_shape, memory_shape=None):
        self.self_attention_norm.build(input_shape)
        self.self_attention.build(input_shape)
        if self.cross_attention:
            self.cross_attention_norm.build(input_shape)
            self.cross_attention_layer.build(input_shape, memory_shape or input_shape)
        self.feed_forward_norm.build(input_shape)
        self.feed_forward.build(input_shape)

    def empty_cache(self, batch, max_length, dtype):
        """The self-attention KV cache (Kᵀ, V) for `max_length` positions (see MultiHeadAttention)."""
        return self.self_attention.empty_cache(batch, max_length, dtype)

    def project_memory(self, memory):
        """The cross-attention (Kᵀ, V) of `memory` (see MultiHeadAttention.keys_values)."""
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
                "dropout": self.dropout_rate, "cross_attention": self.cross_attention, "activation": self.activation}
