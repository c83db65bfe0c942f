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

keeps in its state (batch axis 0) whatever a step needs: the AttentionalDecoder's (the LSTM's (h, c)
per layer, plus the last output, the grid, its mask and its precomputed attention keys), or the
TransformerDecoder's KV caches plus each block's cross-attention keys and values of the grid.
"""
from __future__ import annotations

import keras
from keras import ops

from seqtasks.layers import AttentionalDecoder, TransformerDecoder
from seqtasks.layers import make_position_layer
from seqtasks.models.freezing import layer_prefixes, recurrent_depth
from seqtasks.models.image_encoder import ImageEncoder
from seqtasks.tokenizers import BOS_ID, UNK_ID

_EMBEDDING_INIT = keras.initializers.RandomNormal(stddev=0.02)


class _ImageCaptioner(keras.Model):
    """What every captioner shares: the encoder, the (pixels-or-features, ids) input, word dropout,
    serialization.

    Word dropout (Bowman et al. 2016; training only): each input word y_{t-1} of the teacher-forced
    caption, BOS and padding aside, becomes UNK with probability `word_dropout`, so the decoder cannot
    lean on the exact previous words of the captions it has seen and must read the image:
        ỹ_{t-1} = UNK if u_t < p else y_{t-1},   u_t ~ U(0, 1)        ids (batch, time)
    """

    def __init__(self, vocab_size: int, encoder: ImageEncoder | dict, word_dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        if isinstance(encoder, dict):
            encoder = keras.saving.deserialize_keras_object(encoder)
        self.encoder = encoder
        self.word_dropout = word_dropout
        if word_dropout > 0:  # only then: models without it keep the variables runs saved before had
            self.word_seeds = keras.random.SeedGenerator(0, name="word_seeds")

    def drop_words(self, token_ids, training=None):
        """Word dropout of the decoder's input ids (batch, time); the ids unchanged outside training."""
        if not training or self.word_dropout <= 0:
            return token_ids
        dropped = keras.random.uniform(ops.shape(token_ids), seed=self.word_seeds) < self.word_dropout
        keep = (token_ids == 0) | (token_ids == BOS_ID)
        return ops.where(dropped & ~keep, ops.cast(UNK_ID, token_ids.dtype), token_ids)

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
        return {**super().get_config(), "vocab_size": self.vocab_size, "word_dropout": self.word_dropout,
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
    initial_state ("grid" | "mean"); word_dropout (see _ImageCaptioner).
    """

    # where runs saved before the shared AttentionalDecoder keep these weights (seqtasks.saved_layout)
    renamed_parts = {"^(recurrent|attention|gate)/": r"decoder/\1/"}

    def __init__(self, vocab_size: int, encoder, units: int = 256, num_layers: int = 1, attention: bool = False,
                 attention_units: int | None = None, embedding_dim: int | None = None, dropout: float = 0.0,
                 initial_state: str = "grid", word_dropout: float = 0.0, **kwargs):
        super().__init__(vocab_size, encoder, word_dropout, **kwargs)
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
        # Show, Attend and Tell's output is [h_t; z_t] (no W_c), and its context is gated
        self.decoder = AttentionalDecoder("lstm", units, num_layers, "bahdanau" if attention else "none",
                                          self.attention_units, combine=False, gate=True, dropout=dropout,
                                          name="decoder", dtype=p)
        self.dropout = keras.layers.Dropout(dropout, dtype=p)
        self.output_layer = keras.layers.Dense(vocab_size, name="output", dtype=p)

    def build(self, input_shape=None):
        if not self.encoder.built:  # a deserialized encoder arrives built
            self.encoder.build()
        d, cells = self.encoder.features, self.encoder.grid_cells
        self.embedding.build((None, None))
        for dense in (*self.initial_h, *self.initial_c):
            dense.build((None, cells * d if self.initial_state_from == "grid" else d))
        self.decoder.build((None, None, self.embedding_dim), (None, cells, d))
        self.output_layer.build((None, None, self.decoder.output_features(d)))

    def initial_state(self, grid) -> list[list]:
        """[h_0, c_0] of each layer."""
        if self.initial_state_from == "mean":
            v = ops.mean(grid, axis=1)
        else:
            v = ops.reshape(grid, (ops.shape(grid)[0], self.encoder.grid_cells * self.encoder.features))
        return [[h(v), c(v)] for h, c in zip(self.initial_h, self.initial_c)]

    def _run(self, grid, token_ids, training=None):
        """The decoder over whole sequences: (features (batch, time, F), α or None, the last state)."""
        x = self.dropout(self.embedding(self.drop_words(token_ids, training)), training=training)
        states = [tensor for layer in self.initial_state(grid) for tensor in layer]
        return self.decoder(x, self.decoder.start(states, grid), training=training)

    def logits(self, features, training=None):
        return ops.cast(self.output_layer(self.dropout(features, training=training)), "float32")

    def decode(self, grid, token_ids, training=None):
        features, weights, _ = self._run(grid, token_ids, training)
        return self.logits(features, training), weights

    def prefill(self, token_ids, max_length=None, context=None):
        features, _, state = self._run(context[0], token_ids)
        return self.logits(features[:, -1]), state

    def step(self, token_ids, state, index=None):
        features, state, _ = self.decoder.step(self.embedding(token_ids), state)
        return self.logits(features), state

    def freezable_parts(self) -> dict[str, list[keras.layers.Layer]]:
        """embeddings, layers:N (the LSTM's first N), the encoder's backbone and encoder (the image side),
        and decoder (the caption side, the image-to-state layers included) (seqtasks.models.freezing)."""
        decoder = [self.embedding, *self.initial_h, *self.initial_c, self.decoder, self.output_layer]
        return {"embeddings": [self.embedding], **layer_prefixes(recurrent_depth(self.decoder.recurrent)),
                **self.encoder.freezable_parts(), "decoder": decoder}

    def get_config(self):
        return {**super().get_config(), "units": self.units, "num_layers": self.num_layers,
                "attention": self.attention, "attention_units": self.attention_units,
                "embedding_dim": self.embedding_dim, "dropout": self.dropout_rate,
                "initial_state": self.initial_state_from}


@keras.saving.register_keras_serializable(package="seqtasks")
class TransformerCaptioner(_ImageCaptioner):
    """A Transformer decoder over the caption that cross-attends to the image grid:

        x_0 = E[y] + P;   x_L = TransformerDecoder(x_0, cross-attention to g)
        logits = LN(x_L) Eᵀ   (output tied to the input embedding)

    The encoder's grid features must have d_model features. Args: vocab_size; encoder; d_model;
    heads; num_layers; max_length (the learned position table: the longest BOS + caption);
    dropout; positions ("learned" | "sinusoidal"); word_dropout (see _ImageCaptioner).
    """

    # where runs saved before the shared TransformerDecoder keep these weights (seqtasks.saved_layout)
    renamed_parts = {r"^block_(\d+)/": r"decoder/block_\1/"}

    def __init__(self, vocab_size: int, encoder, d_model: int = 256, heads: int = 4, num_layers: int = 2,
                 max_length: int = 64, dropout: float = 0.0, positions: str = "learned", word_dropout: float = 0.0,
                 **kwargs):
        super().__init__(vocab_size, encoder, word_dropout, **kwargs)
        if self.encoder.features != d_model:
            raise ValueError(f"the encoder gives {self.encoder.features} features; the decoder needs d_model {d_model}")
        self.d_model, self.heads, self.num_layers = d_model, heads, num_layers
        self.max_length, self.dropout_rate, self.positions = max_length, dropout, positions
        p = self.dtype_policy
        self.embedding = keras.layers.Embedding(vocab_size, d_model, embeddings_initializer=_EMBEDDING_INIT,
                                                name="embedding", dtype=p)
        self.position = make_position_layer(positions, max_length, dtype=p)
        self.dropout = keras.layers.Dropout(dropout, dtype=p)
        self.decoder = TransformerDecoder(d_model, heads, num_layers, dropout=dropout, cross_attention=True,
                                          name="decoder", dtype=p)
        self.final_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="final_norm", dtype=p)

    def build(self, input_shape=None):
        if not self.encoder.built:  # a deserialized encoder arrives built
            self.encoder.build()
        shape = (None, None, self.d_model)
        self.embedding.build((None, None))
        self.position.build(shape)
        self.decoder.build(shape, (None, self.encoder.grid_cells, self.d_model))
        self.final_norm.build(shape)

    def logits(self, x):
        table = ops.cast(self.embedding.embeddings, x.dtype)
        return ops.cast(ops.matmul(self.final_norm(x), ops.transpose(table)), "float32")

    def embed(self, token_ids, start_index=0, training=None):
        return self.dropout(self.position(self.embedding(token_ids), start_index=start_index), training=training)

    def decode(self, grid, token_ids, training=None):
        x = self.embed(self.drop_words(token_ids, training), training=training)
        x, weights = self.decoder(x, memory=grid, training=training, return_weights=True)
        # where the last block looked, averaged over its heads: (batch, time, cells)
        return self.logits(x), ops.mean(weights, axis=1)

    def capacity(self, max_length: int) -> int:
        return min(max_length, self.max_length) if self.positions == "learned" else max_length

    def prefill(self, token_ids, max_length, context=None):
        """State: the TransformerDecoder's (each block's self-attention KV cache, then each block's
        cross-attention Kᵀ, V of the grid, computed once here rather than at every step, then the
        grid's mask, all True)."""
        x, state = self.decoder.prefill(self.embed(token_ids), max_length, context[0])
        return self.logits(x[:, -1:])[:, 0], state

    def step(self, token_ids, state, index):
        x, state = self.decoder.step(self.embed(token_ids[:, None], start_index=index), state, index)
        return self.logits(x)[:, 0], state

    def freezable_parts(self) -> dict[str, list[keras.layers.Layer]]:
        """embeddings (token and position tables; the output is tied to the token table), layers:N (the
        first N blocks), the encoder's backbone and encoder, and decoder (seqtasks.models.freezing)."""
        return {"embeddings": [self.embedding, self.position],
                **layer_prefixes([[block] for block in self.decoder.blocks]),
                **self.encoder.freezable_parts(), "decoder": [self.embedding, self.position, self.decoder, self.final_norm]}

    def get_config(self):
        return {**super().get_config(), "d_model": self.d_model, "heads": self.heads, "num_layers": self.num_layers,
                "max_length": self.max_length, "dropout": self.dropout_rate, "positions": self.positions}
