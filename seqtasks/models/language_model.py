"""Language models: p(x_t | x_<t) from token ids, as a recurrent stack or a decoder-only Transformer.

Both map token ids (batch, time) to next-token logits (batch, time, vocab) in float32, and both expose
the decoder interface the decoding engine uses, so generation never re-runs the prefix:

    prefill(token_ids (batch, time), max_length) -> (logits of the last position (batch, vocab), state)
    step(token_ids (batch,), state, index)        -> (logits (batch, vocab), state)

`index` is the position of the token being fed. `state` is a flat tuple of tensors whose shapes do
not change from step to step (the engine's compiled loop needs that): (h, c) per layer for the
recurrent model, a KV cache (Kᵀ, V) per block for the Transformer (seqtasks.layers.transformer_decoder).
`capacity(max_length)` tells how many positions a state can hold (the Transformer's cache is as long
as its position table allows).
"""
from __future__ import annotations

import keras
from keras import ops

from seqtasks.layers import RecurrentStack, TransformerDecoder, make_position_layer
from seqtasks.models.freezing import layer_prefixes, recurrent_depth

_EMBEDDING_INIT = keras.initializers.RandomNormal(stddev=0.02)


@keras.saving.register_keras_serializable(package="seqtasks")
class RecurrentLanguageModel(keras.Model):
    """e_t = E[x_t];  h_t = RecurrentStack(e_t, h_{t-1});  logits_t = h_t W_out + b.

    Args: vocab_size; cell ("rnn" | "gru" | "lstm"); units; num_layers; embedding_dim (defaults to
    units); dropout (on embeddings, between layers and before the output); unroll (write the time loop
    out for fixed-length training windows; see RecurrentLayer).
    """

    aligns_prompts = True  # prefill takes offset= (seqtasks.decoding): prompts of any lengths share a loop

    def __init__(self, vocab_size: int, cell: str = "lstm", units: int = 256, num_layers: int = 2,
                 embedding_dim: int | None = None, dropout: float = 0.0, unroll: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.unroll = unroll
        self.vocab_size, self.cell, self.units, self.num_layers = vocab_size, cell, units, num_layers
        self.embedding_dim = embedding_dim or units
        self.dropout_rate = dropout
        p = self.dtype_policy
        self.embedding = keras.layers.Embedding(vocab_size, self.embedding_dim, name="embedding", dtype=p)
        self.recurrent = RecurrentStack(cell, units, num_layers, dropout, unroll=unroll, name="recurrent", dtype=p)
        self.dropout = keras.layers.Dropout(dropout, dtype=p)
        self.output_layer = keras.layers.Dense(vocab_size, name="output", dtype=p)

    def build(self, input_shape):
        self.embedding.build(input_shape)
        self.recurrent.build((*input_shape, self.embedding_dim))
        self.output_layer.build((*input_shape, self.units))

    def call(self, token_ids, training=None):
        logits, _ = self.forward(token_ids, None, training)
        return logits

    def forward(self, token_ids, initial_state, training=None):
        x = self.dropout(self.embedding(token_ids), training=training)
        hidden, states = self.recurrent(x, initial_state=initial_state, training=training)
        logits = self.output_layer(self.dropout(hidden, training=training))
        return ops.cast(logits, "float32"), states

    def capacity(self, max_length: int) -> int:
        return max_length  # a recurrent state has no length limit

    def prefill(self, token_ids, max_length=None, offset=0):
        """offset: where the prompt starts in the decoding engine's columns; a recurrent state holds no
        positions, so it changes nothing."""
        logits, states = self.forward(token_ids, None)
        return logits[:, -1], _flatten(states)

    def step(self, token_ids, state, index=None):
        h, states = self.recurrent.step(self.embedding(token_ids), _unflatten(state, self.num_layers))
        return ops.cast(self.output_layer(h), "float32"), _flatten(states)

    def token_tables(self) -> dict[str, keras.layers.Embedding]:
        """The token embedding table by vocabulary ("tokens"): what --pretrained-embeddings fills."""
        return {"tokens": self.embedding}

    def freezable_parts(self) -> dict[str, list[keras.layers.Layer]]:
        """embeddings and layers:N (seqtasks.models.freezing)."""
        return {"embeddings": [self.embedding], **layer_prefixes(recurrent_depth(self.recurrent))}

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "cell": self.cell, "units": self.units,
                "num_layers": self.num_layers, "embedding_dim": self.embedding_dim, "dropout": self.dropout_rate,
                "unroll": self.unroll}


def _flatten(states):
    return tuple(tensor for layer in states for tensor in layer)


def _unflatten(state, num_layers):
    per_layer = len(state) // num_layers
    return [list(state[i * per_layer:(i + 1) * per_layer]) for i in range(num_layers)]


@keras.saving.register_keras_serializable(package="seqtasks")
class TransformerLanguageModel(keras.Model):
    """Decoder-only Transformer (GPT):  x_0 = E[ids] + P;  x_L = TransformerDecoder(x_0) (causal, no memory);
    logits = LN(x_L) Eᵀ  (output tied to the input embedding).

    Args: vocab_size; d_model; heads; num_layers; max_length (the longest context; the learned
    position table's size); dropout; positions ("learned" | "sinusoidal"); activation (the FFN's: "gelu" |
    "gelu_tanh" | "relu").
    """

    # where runs saved before the shared TransformerDecoder keep these weights (seqtasks.saved_layout)
    renamed_parts = {r"^block_(\d+)/": r"decoder/block_\1/"}
    aligns_prompts = True  # prefill takes offset= (seqtasks.decoding): prompts of any lengths share a loop

    def __init__(self, vocab_size: int, d_model: int = 256, heads: int = 4, num_layers: int = 4,
                 max_length: int = 256, dropout: float = 0.0, positions: str = "learned", activation: str = "gelu",
                 **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.d_model, self.heads, self.num_layers = vocab_size, d_model, heads, num_layers
        self.max_length, self.dropout_rate, self.positions = max_length, dropout, positions
        self.activation = activation
        p = self.dtype_policy
        self.embedding = keras.layers.Embedding(
            vocab_size, d_model, embeddings_initializer=_EMBEDDING_INIT, name="embedding", dtype=p
        )
        self.position = make_position_layer(positions, max_length, dtype=p)
        self.dropout = keras.layers.Dropout(dropout, dtype=p)
        self.decoder = TransformerDecoder(d_model, heads, num_layers, dropout=dropout, activation=activation,
                                          name="decoder", dtype=p)
        self.final_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="final_norm", dtype=p)

    def build(self, input_shape):
        self.embedding.build(input_shape)
        self.position.build((*input_shape, self.d_model))
        self.decoder.build((*input_shape, self.d_model))
        self.final_norm.build((*input_shape, self.d_model))

    def embed(self, token_ids, start_index=0, training=None):
        return self.dropout(self.position(self.embedding(token_ids), start_index=start_index), training=training)

    def logits(self, x):
        # tied output: the same matrix E embeds tokens and scores them
        table = ops.cast(self.embedding.embeddings, x.dtype)
        return ops.cast(ops.matmul(self.final_norm(x), ops.transpose(table)), "float32")

    def call(self, token_ids, training=None):
        return self.logits(self.decoder(self.embed(token_ids, training=training), training=training))

    def capacity(self, max_length: int) -> int:
        return min(max_length, self.max_length) if self.positions == "learned" else max_length

    def prefill(self, token_ids, max_length, offset=0):
        """The prompt (batch, time) at state columns offset .. offset + time - 1, positions 0 .. time - 1
        (right-aligned prompts of different lengths share the loop's column; TransformerDecoder).
        The state: the decoder's caches, then first (batch,) int32, the column of each row's first token."""
        x, state = self.decoder.prefill(self.embed(token_ids), max_length, offset=offset)
        first = ops.full((ops.shape(token_ids)[0],), offset, "int32")
        return self.logits(x[:, -1:])[:, 0], (*state, first)

    def step(self, token_ids, state, index):
        """token_ids (batch,) at state column `index`: position index - first of each row."""
        *caches, first = state
        x = self.embed(token_ids[:, None], start_index=index - first)
        x, caches = self.decoder.step(x, tuple(caches), index, first_key=first)
        return self.logits(x)[:, 0], (*caches, first)

    def token_tables(self) -> dict[str, keras.layers.Embedding]:
        """The token embedding table by vocabulary ("tokens"): what --pretrained-embeddings fills."""
        return {"tokens": self.embedding}

    def freezable_parts(self) -> dict[str, list[keras.layers.Layer]]:
        """embeddings (token and position tables; the token table also scores the output, which is tied
        to it) and layers:N, the first N blocks (seqtasks.models.freezing)."""
        return {"embeddings": [self.embedding, self.position],
                **layer_prefixes([[block] for block in self.decoder.blocks])}

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "d_model": self.d_model, "heads": self.heads,
                "num_layers": self.num_layers, "max_length": self.max_length, "dropout": self.dropout_rate,
                "positions": self.positions, "activation": self.activation}
