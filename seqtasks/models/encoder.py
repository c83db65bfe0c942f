"""The shared sequence encoder of classification and tagging: tokens -> one contextual vector per token.

    x_t = dropout([E[w_t] ; CharFeatures(chars of w_t)])            token (+ character) embeddings
    recurrent:    h = BiRNN/BiGRU/BiLSTM stack(x), masked            (batch, time, 2 × units)
    transformer:  h = LN(Block_L(... Block_1(x W_in + P) ...))       pre-LN blocks, padding mask only

Inputs are a dict:
    "tokens"  (batch, time) token ids (words or subwords), 0 = padding; or, with `token_pieces`,
              (batch, time, pieces) the subword ids of each word, embedded as their mean (a word-level
              input for subword tokenizers, so tags stay aligned with words)
    "chars"   (batch, time, chars) character ids of each token (only with char features)
Returns (states (batch, time, output_dim), mask (batch, time) boolean, True for real tokens).

Padding is to the right. Every part is masked (recurrent states carried over padding, attention
never looks at padded keys, per-token layers see only their token), so padding never changes the
states of real tokens. Word dropout (training only) replaces a token by UNK with probability
`word_dropout`, so the UNK embedding learns to stand for words never seen in training.
"""
from __future__ import annotations

import keras
from keras import ops

from seqtasks.layers import RecurrentStack, TransformerBlock, make_position_layer
from seqtasks.layers.char_features import CharFeatures
from seqtasks.models.freezing import layer_prefixes, recurrent_depth
from seqtasks.tokenizers import UNK_ID

from seqtasks.choices import ARCHITECTURES, RECURRENT_CELLS  # noqa: E402  (TF-free: the settings list them)


@keras.saving.register_keras_serializable(package="seqtasks")
class SequenceEncoder(keras.layers.Layer):
    """Args: vocab_size; arch (rnn | gru | lstm | lstm-peephole | transformer); units (per direction, or d_model);
    num_layers; embedding_dim (recurrent only; default units); heads, positions, max_length
    (transformer); dropout; word_dropout; bidirectional (recurrent); token_pieces; char_features
    ("none" | "cnn" | "lstm") with char_vocab_size, char_dim, char_units."""

    def __init__(self, vocab_size: int, arch: str = "lstm", units: int = 128, num_layers: int = 1,
                 embedding_dim: int | None = None, heads: int = 4, positions: str = "learned",
                 max_length: int = 512, dropout: float = 0.0, word_dropout: float = 0.0,
                 bidirectional: bool = True, token_pieces: bool = False, char_features: str = "none",
                 char_vocab_size: int = 0, char_dim: int = 32, char_units: int = 64, seed: int | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        if arch not in ARCHITECTURES + RECURRENT_CELLS:
            raise ValueError(f"unknown architecture {arch!r}; expected one of {ARCHITECTURES + RECURRENT_CELLS}")
        self.vocab_size, self.arch, self.units, self.num_layers = vocab_size, arch, units, num_layers
        self.embedding_dim = units if arch == "transformer" else (embedding_dim or units)
        self.heads, self.positions, self.max_length = heads, positions, max_length
        self.dropout_rate, self.word_dropout, self.bidirectional = dropout, word_dropout, bidirectional
        self.token_pieces, self.char_features = token_pieces, char_features
        self.char_vocab_size, self.char_dim, self.char_units, self.seed = char_vocab_size, char_dim, char_units, seed
        p = self.dtype_policy
        self.embedding = keras.layers.Embedding(vocab_size, self.embedding_dim, name="embedding", dtype=p)
        self.chars = (CharFeatures(char_features, char_vocab_size, char_dim, char_units, name="char_features", dtype=p)
                      if char_features != "none" else None)
        self.dropout = keras.layers.Dropout(dropout, dtype=p)
        self.seed_generator = keras.random.SeedGenerator(seed)
        input_dim = self.embedding_dim + (self.chars.output_dim if self.chars else 0)
        if arch == "transformer":
            self.input_projection = (keras.layers.Dense(units, name="input_projection", dtype=p)
                                     if input_dim != units else None)
            self.position = make_position_layer(positions, max_length, dtype=p)
            self.blocks = [TransformerBlock(units, heads, dropout=dropout, name=f"block_{i}", dtype=p)
                           for i in range(num_layers)]
            self.final_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="final_norm", dtype=p)
            self.recurrent = None
            self.output_dim = units
        else:
            self.blocks = []
            self.recurrent = RecurrentStack(arch, units, num_layers, dropout, bidirectional=bidirectional,
                                            name="recurrent", dtype=p)
            self.output_dim = 2 * units if bidirectional else units
        self.input_dim = input_dim

    def build(self, input_shape):
        tokens_shape = tuple(input_shape["tokens"])
        batch, time = tokens_shape[0], tokens_shape[1]
        self.embedding.build(tokens_shape)
        if self.chars is not None:
            self.chars.build(tuple(input_shape["chars"]))
        if self.recurrent is not None:
            self.recurrent.build((batch, time, self.input_dim))
            return
        if self.input_projection is not None:
            self.input_projection.build((batch, time, self.input_dim))
        shape = (batch, time, self.units)
        self.position.build(shape)
        for block in self.blocks:
            block.build(shape)
        self.final_norm.build(shape)

    def token_mask(self, tokens):
        return ops.any(tokens != 0, axis=-1) if self.token_pieces else tokens != 0

    def embed_tokens(self, tokens, training=None):
        if training and self.word_dropout > 0:
            word_shape = ops.shape(tokens)[:2]
            dropped = keras.random.uniform(word_shape, seed=self.seed_generator) < self.word_dropout
            if self.token_pieces:
                dropped = dropped[..., None]
            tokens = ops.where(dropped & (tokens != 0), ops.cast(UNK_ID, tokens.dtype), tokens)
        embedded = self.embedding(tokens)
        if not self.token_pieces:
            return embedded
        # a word is the mean of its pieces' embeddings
        pieces = ops.cast(tokens != 0, embedded.dtype)[..., None]
        return ops.sum(embedded * pieces, axis=2) / ops.maximum(ops.sum(pieces, axis=2), 1.0)

    def call(self, inputs, training=None):
        tokens = inputs["tokens"]
        mask = self.token_mask(tokens)
        x = self.embed_tokens(tokens, training)
        if self.chars is not None:
            x = ops.concatenate([x, ops.cast(self.chars(inputs["chars"]), x.dtype)], axis=-1)
        x = self.dropout(x, training=training)
        if self.recurrent is not None:
            states, _ = self.recurrent(x, mask=mask, training=training)
            return states, mask
        if self.input_projection is not None:
            x = self.input_projection(x)
        x = self.dropout(self.position(x), training=training)
        key_mask = mask[:, None, :]                 # (batch, 1, time): every query may see every real key
        for block in self.blocks:
            x, _ = block(x, self_mask=key_mask, training=training)
        return self.final_norm(x), mask

    def token_tables(self) -> dict[str, keras.layers.Embedding]:
        """The token embedding table by vocabulary ("tokens"): what --pretrained-embeddings fills."""
        return {"tokens": self.embedding}

    def freezable_parts(self) -> dict[str, list[keras.layers.Layer]]:
        """embeddings (with a learned position table), char_features, layers:N and the whole encoder."""
        parts = {"embeddings": [self.embedding] + ([self.position] if self.recurrent is None else [])}
        if self.chars is not None:
            parts["char_features"] = [self.chars]
        depth = recurrent_depth(self.recurrent) if self.recurrent is not None else [[block] for block in self.blocks]
        return {**parts, **layer_prefixes(depth), "encoder": [self]}

    @property
    def backward_features(self) -> int:
        """How many trailing output features come from a backward recurrent pass."""
        return self.units if self.recurrent is not None and self.bidirectional else 0

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "arch": self.arch, "units": self.units,
                "num_layers": self.num_layers, "embedding_dim": self.embedding_dim, "heads": self.heads,
                "positions": self.positions, "max_length": self.max_length, "dropout": self.dropout_rate,
                "word_dropout": self.word_dropout, "bidirectional": self.bidirectional,
                "token_pieces": self.token_pieces, "char_features": self.char_features,
                "char_vocab_size": self.char_vocab_size, "char_dim": self.char_dim, "char_units": self.char_units,
                "seed": self.seed}


class EncoderModel:
    """Mixin of the models built on a SequenceEncoder (`self.encoder`)."""

    def token_tables(self) -> dict[str, keras.layers.Embedding]:
        """The encoder's token embedding table (--pretrained-embeddings)."""
        return self.encoder.token_tables()

    def freezable_parts(self) -> dict[str, list[keras.layers.Layer]]:
        """What `seqtasks finetune --freeze` can hold fixed (seqtasks.models.freezing)."""
        return self.encoder.freezable_parts()
