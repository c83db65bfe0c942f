"""Image captioners: an ImageEncoder's grid g (batch, cells, d) read by a recurrent or Transformer decoder.

    RecurrentCaptioner, attention=False   Show and Tell (Vinyals et al. 2015): the image sets the LSTM's
                                          initial state, then the LSTM is a language model of the caption.
    RecurrentCaptioner, attention=True    Show, Attend and Tell (Xu et al. 2015): at every word the LSTM
                                          also reads a soft-attention average of the grid.
    TransformerCaptioner                  a Transformer decoder whose blocks cross-attend to the grid.

All map (pixels or cached backbone features, caption ids (batch, time)) to next-word logits
(batch, time, vocab) in float32, with teacher forcing: ids = [BOS, w_1, ..., w_n], targets
[w_1, ..., w_n, EOS]. Padding (id 0) needs no mask: a decoder is causal, so positions after a
caption's end never change the positions before it, and the loss ignores padded targets.

Generation goes through seqtasks.decoding with the grid as the context: `encode(pixels)` gives it,
then the decoder interface

    prefill(token_ids (batch, time), max_length, context=(grid,)) -> (logits of the last position, state)
    step(token_ids (batch,), state, index)                        -> (logits (batch, vocab), state)
    capacity(max_length) -> int

keeps in its state (batch axis 0) whatever a step needs: the LSTM's (h, c) per layer, plus the grid
and its precomputed attention keys; or the Transformer's KV caches plus each block's cross-attention
keys and values of the grid.
"""
from __future__ import annotations

import keras
from keras import ops

from seqtasks.layers import AdditiveAttention, RecurrentStack, TransformerBlock, causal_attention_mask, kv_pairs
from seqtasks.layers import make_position_layer
from seqtasks.models.freezing import layer_prefixes, recurrent_depth
from seqtasks.models.image_encoder import ImageEncoder
from seqtasks.models.language_model import _flatten, _unflatten  # (h, c) per layer <-> a flat state tuple

_EMBEDDING_INIT = keras.initializers.RandomNormal(stddev=0.02)


class _ImageCaptioner(keras.Model):
    """What every captioner shares: the encoder, the (pixels-or-features, ids) input, serialization."""

    def __init__(self, vocab_size: int, encoder: ImageEncoder | dict, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        if isinstance(encoder, dict):
            encoder = keras.saving.deserialize_keras_object(encoder)
        self.encoder = encoder

    @property
    def grid_shape(self) -> tuple[int, int]:
        return self.encoder.grid_height, self.encoder.grid_width

    def encode(self, pixels_or_features, training=None):
        """The grid g (batch, cells, d): the context of generation."""
        return self.encoder(pixels_or_features, training=training)

    def call(self, inputs, training=None):
        """(pixels or features, token_ids) -> logits; in training also (..., image_of) (captions,)
        int32: caption k describes image image_of[k], so an image's grid is computed once for all of
        its captions."""
        pixels_or_features, token_ids, *image_of = inputs
        grid = self.encode(pixels_or_features, training=training)
        if image_of:
            grid = ops.take(grid, image_of[0], axis=0)
        logits, _ = self.decode(grid, token_ids, training=training)
        return logits

    def decode(self, grid, token_ids, training=None):
        """(logits (batch, time, vocab) float32, attention weights (batch, time, cells) or None)."""
        raise NotImplementedError

    def capacity(self, max_length: int) -> int:
        return max_length

    # build() needs no input shape (the encoder knows its grid): loading a saved model just builds it
    def get_build_config(self):
        return {"built": True}

    def build_from_config(self, config):
        self.build()

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size,
                "encoder": keras.saving.serialize_keras_object(self.encoder)}


from seqtasks.choices import INITIAL_STATES  # noqa: E402  (TF-free: the settings list them)


@keras.saving.register_keras_serializable(package="seqtasks")
class RecurrentCaptioner(_ImageCaptioner):
    """An LSTM decoder whose initial state comes from the image, optionally attending to the grid.

        v = [g_1; ...; g_J];   h_0^l = tanh(W_h^l v),  c_0^l = tanh(W_c^l v)       for each layer l
        without attention:  h_t = LSTM(E y_{t-1}, h_{t-1});          logits_t = W_o h_t
        with attention:     α_t = softmax_j(wᵀ tanh(W_q h_{t-1} + W_k g_j))      (Bahdanau)
                            z_t = β_t Σ_j α_tj g_j,   β_t = σ(w_β · h_{t-1})     (the gate of Xu et al.)
                            h_t = LSTM([E y_{t-1}; z_t], h_{t-1});   logits_t = W_o [h_t; z_t]
    where h_{t-1} in the attention is the top layer's. By default (`initial_state="grid"`) v is the
    whole grid, flattened: a mean would forget where things are, and Show and Tell has nothing else to
    go on. `initial_state="mean"` takes v = (1/J) Σ_j g_j, as Xu et al. do: with attention the decoder
    finds where things are by itself, and W_h, W_c shrink by the J cells (8.4M of 11.5M parameters
    for an 8×8 grid of 256 features: far too many for a few thousand captions). `decode` also returns
    α (batch, time, cells), what `seqtasks predict --plot` draws.

    Args: vocab_size; encoder (an ImageEncoder); units; num_layers; attention; attention_units
    (defaults to units); embedding_dim (defaults to units); dropout (on embeddings and before the output);
    initial_state ("grid" | "mean").
    """

    def __init__(self, vocab_size: int, encoder, units: int = 256, num_layers: int = 1, attention: bool = False,
                 attention_units: int | None = None, embedding_dim: int | None = None, dropout: float = 0.0,
                 initial_state: str = "grid", **kwargs):
        super().__init__(vocab_size, encoder, **kwargs)
        if initial_state not in INITIAL_STATES:
            raise ValueError(f"unknown initial_state {initial_state!r}; choose one of {', '.join(INITIAL_STATES)}")
        self.units, self.num_layers, self.attention = units, num_layers, attention
        self.initial_state_from = initial_state
        self.attention_units = attention_units or units
        self.embedding_dim = embedding_dim or units
        self.dropout_rate = dropout
        p = self.dtype_policy
        self.embedding = keras.layers.Embedding(vocab_size, self.embedding_dim, name="embedding", dtype=p)
        self.initial_h = [keras.layers.Dense(units, activation="tanh", name=f"initial_h_{i}", dtype=p)
                          for i in range(num_layers)]
        self.initial_c = [keras.layers.Dense(units, activation="tanh", name=f"initial_c_{i}", dtype=p)
                          for i in range(num_layers)]
        self.recurrent = RecurrentStack("lstm", units, num_layers, dropout, name="recurrent", dtype=p)
        if attention:
            self.attention_layer = AdditiveAttention(self.attention_units, name="attention", dtype=p)
            self.gate = keras.layers.Dense(1, activation="sigmoid", name="gate", dtype=p)
        self.dropout = keras.layers.Dropout(dropout, dtype=p)
        self.output_layer = keras.layers.Dense(vocab_size, name="output", dtype=p)

    def build(self, input_shape=None):
        if not self.encoder.built:  # a deserialized encoder arrives built
            self.encoder.build()
        d, cells = self.encoder.features, self.encoder.grid_cells
        self.embedding.build((None, None))
        for dense in (*self.initial_h, *self.initial_c):
            dense.build((None, cells * d if self.initial_state_from == "grid" else d))
        read = d if self.attention else 0  # the attended grid is part of the LSTM input and the output
        self.recurrent.build((None, None, self.embedding_dim + read))
        if self.attention:
            self.attention_layer.build((None, self.units), (None, cells, d))
            self.gate.build((None, self.units))
        self.output_layer.build((None, None, self.units + read))

    def initial_state(self, grid):
        if self.initial_state_from == "mean":
            v = ops.mean(grid, axis=1)
        else:
            v = ops.reshape(grid, (ops.shape(grid)[0], self.encoder.grid_cells * self.encoder.features))
        return [[h(v), c(v)] for h, c in zip(self.initial_h, self.initial_c)]

    def attend(self, x_t, states, grid, keys):
        """One step of Show, Attend and Tell: (LSTM input [x_t; z_t], output features [h_t; z_t]) pieces.

        Returns (features (batch, units + d), new states, α (batch, cells))."""
        query = states[-1][0]
        z, weights = self.attention_layer(query, grid, keys=keys)
        z = self.gate(query) * z
        h, states = self.recurrent.step(ops.concatenate([x_t, z], axis=-1), states)
        return ops.concatenate([h, z], axis=-1), states, weights

    def _run(self, grid, token_ids, states, training=None):
        """The decoder over whole sequences from `states`: (features (batch, time, F), states, α or None)."""
        x = self.dropout(self.embedding(token_ids), training=training)
        if not self.attention:
            hidden, states = self.recurrent(x, initial_state=states, training=training)
            return hidden, states, None
        keys = self.attention_layer.precompute_keys(grid)
        # ops.scan (TensorFlow backend) stacks per-step outputs shaped like its carry, so the carry
        # holds the step's features and weights after the LSTM states, and is also the output
        batch, size = ops.shape(grid)[0], 2 * self.num_layers
        outputs = (ops.zeros((batch, self.units + self.encoder.features), self.compute_dtype),
                   ops.zeros((batch, self.encoder.grid_cells), self.compute_dtype))

        def step(carry, x_t):
            features, new_states, weights = self.attend(x_t, _unflatten(carry[:size], self.num_layers), grid, keys)
            new_carry = (*_flatten(new_states), features, ops.cast(weights, self.compute_dtype))
            return new_carry, new_carry

        carry, stacked = ops.scan(step, (*_flatten(states), *outputs), ops.transpose(x, (1, 0, 2)))
        features, weights = (ops.transpose(t, (1, 0, 2)) for t in stacked[size:])
        return features, _unflatten(carry[:size], self.num_layers), weights

    def logits(self, features, training=None):
        return ops.cast(self.output_layer(self.dropout(features, training=training)), "float32")

    def decode(self, grid, token_ids, training=None):
        features, _, weights = self._run(grid, token_ids, self.initial_state(grid), training)
        return self.logits(features, training), weights

    def prefill(self, token_ids, max_length=None, context=None):
        grid = context[0]
        features, states, _ = self._run(grid, token_ids, self.initial_state(grid))
        state = _flatten(states)
        if self.attention:
            state += (ops.cast(grid, self.compute_dtype), self.attention_layer.precompute_keys(grid))
        return self.logits(features[:, -1]), state

    def step(self, token_ids, state, index=None):
        x_t = self.embedding(token_ids)
        states = _unflatten(state[:2 * self.num_layers], self.num_layers)
        if self.attention:
            grid, keys = state[-2:]
            features, states, _ = self.attend(x_t, states, grid, keys)
            return self.logits(features), _flatten(states) + (grid, keys)
        h, states = self.recurrent.step(x_t, states)
        return self.logits(h), _flatten(states)

    def freezable_parts(self) -> dict[str, list[keras.layers.Layer]]:
        """embeddings, layers:N (the LSTM's first N), the encoder's backbone and encoder (the image side),
        and decoder (the caption side, the image-to-state layers included) (seqtasks.models.freezing)."""
        attention = [self.attention_layer, self.gate] if self.attention else []
        decoder = [self.embedding, *self.initial_h, *self.initial_c, self.recurrent, *attention, self.output_layer]
        return {"embeddings": [self.embedding], **layer_prefixes(recurrent_depth(self.recurrent)),
                **self.encoder.freezable_parts(), "decoder": decoder}

    def get_config(self):
        return {**super().get_config(), "units": self.units, "num_layers": self.num_layers,
                "attention": self.attention, "attention_units": self.attention_units,
                "embedding_dim": self.embedding_dim, "dropout": self.dropout_rate,
                "initial_state": self.initial_state_from}


@keras.saving.register_keras_serializable(package="seqtasks")
class TransformerCaptioner(_ImageCaptioner):
    """A Transformer decoder over the caption that cross-attends to the image grid:

        x_0 = E[y] + P;   x_l = Block_l(x_{l-1}, causal self-attention, cross-attention to g)
        logits = LN(x_L) Eᵀ   (output tied to the input embedding)

    The encoder's grid features must have d_model features. Args: vocab_size; encoder; d_model;
    heads; num_layers; max_length (the learned position table: the longest BOS + caption);
    dropout; positions ("learned" | "sinusoidal").
    """

    def __init__(self, vocab_size: int, encoder, d_model: int = 256, heads: int = 4, num_layers: int = 2,
                 max_length: int = 64, dropout: float = 0.0, positions: str = "learned", **kwargs):
        super().__init__(vocab_size, encoder, **kwargs)
        if self.encoder.features != d_model:
            raise ValueError(f"the encoder gives {self.encoder.features} features; the decoder needs d_model {d_model}")
        self.d_model, self.heads, self.num_layers = d_model, heads, num_layers
        self.max_length, self.dropout_rate, self.positions = max_length, dropout, positions
        p = self.dtype_policy
        self.embedding = keras.layers.Embedding(vocab_size, d_model, embeddings_initializer=_EMBEDDING_INIT,
                                                name="embedding", dtype=p)
        self.position = make_position_layer(positions, max_length, dtype=p)
        self.dropout = keras.layers.Dropout(dropout, dtype=p)
        self.blocks = [TransformerBlock(d_model, heads, dropout=dropout, cross_attention=True, name=f"block_{i}",
                                        dtype=p) for i in range(num_layers)]
        self.final_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="final_norm", dtype=p)

    def build(self, input_shape=None):
        if not self.encoder.built:  # a deserialized encoder arrives built
            self.encoder.build()
        shape = (None, None, self.d_model)
        self.embedding.build((None, None))
        self.position.build(shape)
        for block in self.blocks:
            block.build(shape, (None, self.encoder.grid_cells, self.d_model))
        self.final_norm.build(shape)

    def logits(self, x):
        table = ops.cast(self.embedding.embeddings, x.dtype)
        return ops.cast(ops.matmul(self.final_norm(x), ops.transpose(table)), "float32")

    def decode(self, grid, token_ids, training=None):
        time = ops.shape(token_ids)[1]
        x = self.dropout(self.position(self.embedding(token_ids)), training=training)
        mask = causal_attention_mask(time, time)
        for block in self.blocks:
            x, _, weights = block(x, self_mask=mask, memory=grid, training=training, return_weights=True)
        # where the last block looked, averaged over its heads: (batch, time, cells)
        return self.logits(x), ops.mean(weights, axis=1)

    def capacity(self, max_length: int) -> int:
        return min(max_length, self.max_length) if self.positions == "learned" else max_length

    def prefill(self, token_ids, max_length, context=None):
        """State: each block's self-attention KV cache (Kᵀ, V), then each block's cross-attention
        (Kᵀ, V) of the grid (computed once here rather than at every step)."""
        grid = ops.cast(context[0], self.compute_dtype)
        batch, time = ops.shape(token_ids)[0], ops.shape(token_ids)[1]
        x = self.position(self.embedding(token_ids))
        mask = causal_attention_mask(time, max_length)
        caches, memories = [], [block.project_memory(grid) for block in self.blocks]
        for block, memory in zip(self.blocks, memories):
            x, cache = block(x, self_mask=mask, cache=block.empty_cache(batch, max_length, x.dtype), cache_index=0,
                             memory_keys_values=memory)
            caches.extend(cache)
        return self.logits(x[:, -1:])[:, 0], (*caches, *(tensor for memory in memories for tensor in memory))

    def step(self, token_ids, state, index):
        pairs = 2 * self.num_layers
        caches, memories = kv_pairs(state[:pairs]), kv_pairs(state[pairs:])
        x = self.position(self.embedding(token_ids[:, None]), start_index=index)
        mask = causal_attention_mask(1, ops.shape(state[0])[-1], start_index=index)
        new_caches = []
        for block, cache, memory in zip(self.blocks, caches, memories):
            x, cache = block(x, self_mask=mask, cache=cache, cache_index=index, memory_keys_values=memory)
            new_caches.extend(cache)
        return self.logits(x)[:, 0], (*new_caches, *state[pairs:])

    def freezable_parts(self) -> dict[str, list[keras.layers.Layer]]:
        """embeddings (token and position tables; the output is tied to the token table), layers:N (the
        first N blocks), the encoder's backbone and encoder, and decoder (seqtasks.models.freezing)."""
        return {"embeddings": [self.embedding, self.position], **layer_prefixes([[block] for block in self.blocks]),
                **self.encoder.freezable_parts(), "decoder": [self.embedding, self.position, *self.blocks, self.final_norm]}

    def get_config(self):
        return {**super().get_config(), "d_model": self.d_model, "heads": self.heads, "num_layers": self.num_layers,
                "max_length": self.max_length, "dropout": self.dropout_rate, "positions": self.positions}
