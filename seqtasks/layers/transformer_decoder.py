"""The Transformer decoder stack, with the KV-cached prefill and one-token step every generative
Transformer in seqtasks decodes with (the lm and generate tasks' decoder-only model, translate's
encoder-decoder, caption's image-grid decoder).

    y_0 = x;   y_l = Block_l(y_{l-1}, causal self-attention [, cross-attention to m])   l = 1..L

x (batch, time, d_model) is the embedded target prefix with its positions; y_L goes to the model's
own head (a final LayerNorm and a tied or separate output projection). Without a memory the stack
is decoder-only (GPT); with one, every block also cross-attends to m (batch, source, d_model), the
encoder's output or an image grid, where memory_mask (batch, source) is True at real positions
(None: all of them are).

Decoding never re-runs the prefix: `prefill(x, max_length, memory, memory_mask)` runs the prompt
once, filling each block's self-attention KV cache (seqtasks.layers.attention) and computing each
block's cross-attention keys and values of the memory once; `step(x_t, state, index)` feeds one
token at position `index`, attending over the cache. The state is one flat tuple (batch axis 0,
shapes fixed from step to step, as the decoding engine's compiled loop needs):

    (Kᵀ_1, V_1, ..., Kᵀ_L, V_L)                                       decoder-only
    (Kᵀ_1, V_1, ..., Kᵀ_L, V_L,  Kᵀm_1, Vm_1, ..., Kᵀm_L, Vm_L,  mask)  with a memory

Kᵀ (batch, heads, d_head, max_length), V (batch, heads, max_length, d_head), float32 whatever the
compute dtype (the step's products are float32; see seqtasks.layers.attention); Kᵀm, Vm the same over
the source; mask (batch, source) bool. Stepping after prefill gives what the full causal pass
`call` gives at the same positions.

Right-aligned prompts (prompts of different lengths decoded in one batch): `prefill(..., offset=o)`
writes the prompt's keys and values at cache columns o .. o + time - 1 instead of 0 .. time - 1, and
`step(..., first_key=f)` with f (batch,) the column of each row's first token masks the columns
before it. The mask convention, for query column c of row b: key column j is seen iff f[b] <= j <= c.
The columns before f[b] hold no keys (zeros), so row b attends over exactly its own prompt and
output, as when decoded alone at columns 0, 1, ...; its positions (the model's) are c - f[b].
"""
from __future__ import annotations

import keras
from keras import ops

from seqtasks.layers.attention import TransformerBlock, causal_attention_mask, kv_pairs


@keras.saving.register_keras_serializable(package="seqtasks")
class TransformerDecoder(keras.layers.Layer):
    """L pre-LayerNorm Transformer blocks (TransformerBlock) under a causal mask, with an optional
    cross-attention to a memory. See the module docstring for the equations and the decoding state.

    Args: d_model; heads; num_layers; hidden (FFN width, default 4 × d_model); dropout;
    cross_attention (whether the blocks read a memory); activation (the FFN's, see FeedForward).

    Call arguments: x (batch, time, d_model); memory (batch, source, d_model) when cross_attention;
    memory_mask (batch, source) bool, True = real position (None = all real); return_weights: also
    return the last block's cross-attention weights (batch, heads, time, source).
    """

    def __init__(self, d_model: int, heads: int, num_layers: int, hidden: int | None = None, dropout: float = 0.0,
                 cross_attention: bool = False, activation: str = "gelu", **kwargs):
        super().__init__(**kwargs)
        self.d_model, self.heads, self.num_layers = d_model, heads, num_layers
        self.hidden, self.dropout_rate = hidden or 4 * d_model, dropout
        self.cross_attention, self.activation = cross_attention, activation
        self.blocks = [TransformerBlock(d_model, heads, self.hidden, dropout, cross_attention=cross_attention,
                                        activation=activation, name=f"block_{i}", dtype=self.dtype_policy)
                       for i in range(num_layers)]

    def build(self, input_shape, memory_shape=None):
        for block in self.blocks:
            block.build(input_shape, memory_shape)

    def call(self, x, memory=None, memory_mask=None, training=None, return_weights=False):
        time = ops.shape(x)[1]
        self_mask = causal_attention_mask(time, time)
        memory_mask = None if memory_mask is None else memory_mask[:, None, :]
        weights = None
        for block in self.blocks:
            x, _, weights = block(x, self_mask=self_mask, memory=memory, memory_mask=memory_mask, training=training,
                                  return_weights=True)
        return (x, weights) if return_weights else x

    def prefill(self, x, max_length, memory=None, memory_mask=None, offset=0) -> tuple:
        """x (batch, time, d_model), the embedded prompt -> (y (batch, time, d_model), state) with
        room in the caches for `max_length` columns; the prompt is written at columns offset ..
        offset + time - 1 (a scalar; columns before it are padding, never attended)."""
        batch, time = ops.shape(x)[0], ops.shape(x)[1]
        self_mask = causal_attention_mask(time, max_length, start_index=offset)
        self_mask = self_mask & (ops.arange(max_length)[None, :] >= offset)
        caches, memory_kv = [], []
        if self.cross_attention:
            memory = ops.cast(memory, self.compute_dtype)
            if memory_mask is None:
                memory_mask = ops.ones(ops.shape(memory)[:2], "bool")
            memory_kv = [block.project_memory(memory) for block in self.blocks]  # once, reused at every step
        for block, keys_values in zip(self.blocks, memory_kv or [None] * self.num_layers):
            x, cache = block(x, self_mask=self_mask, cache=block.empty_cache(batch, max_length, "float32"),
                             cache_index=offset,
                             memory_mask=None if memory_mask is None else memory_mask[:, None, :],
                             memory_keys_values=keys_values)
            caches.extend(cache)
        if not self.cross_attention:
            return x, tuple(caches)
        return x, (*caches, *(tensor for pair in memory_kv for tensor in pair), memory_mask)

    def step(self, x, state: tuple, index, first_key=None) -> tuple:
        """x (batch, 1, d_model), the embedded token at cache column `index` -> (y (batch, 1, d_model), state).

        first_key: None (every row's prompt starts at column 0), or (batch,) int, the column of each
        row's first token (see the module docstring)."""
        pairs = 2 * self.num_layers
        caches = kv_pairs(state[:pairs])
        memory_kv = kv_pairs(state[pairs:2 * pairs]) if self.cross_attention else [None] * self.num_layers
        memory_mask = state[-1][:, None, :] if self.cross_attention else None
        self_mask = causal_attention_mask(1, ops.shape(state[0])[-1], start_index=index,  # the cache's length
                                          first_key=first_key)
        new_caches = []
        for block, cache, keys_values in zip(self.blocks, caches, memory_kv):
            x, cache = block(x, self_mask=self_mask, memory_mask=memory_mask, cache=cache, cache_index=index,
                             memory_keys_values=keys_values)
            new_caches.extend(cache)
        return x, (*new_caches, *state[pairs:])

    def get_config(self):
        return {**super().get_config(), "d_model": self.d_model, "heads": self.heads, "num_layers": self.num_layers,
                "hidden": self.hidden, "dropout": self.dropout_rate, "cross_attention": self.cross_attention,
                "activation": self.activation}
