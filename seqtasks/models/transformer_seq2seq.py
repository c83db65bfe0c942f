"""Transformer encoder-decoder (Vaswani et al. 2017), pre-LayerNorm.

Encoder:  x_0 = √d · E_src[x] + P;   x_l = Block_l(x_{l-1}, padding mask);   m = LN(x_L)
Decoder:  y_0 = √d · E_tgt[y] + P;   y_L = TransformerDecoder(y_0, cross-attention over m);
          logits = LN(y_L) E_tgtᵀ   (tied output; a separate W_out when tied_output is off)

Embeddings are initialized N(0, 1/d) and scaled by √d, so token vectors and the sinusoidal positions
have the same scale (and the tied output starts with small logits). `shared_embeddings` uses one
table for source and target (a joint vocabulary).

Model call: (source_ids, target_input_ids) -> logits (batch, target_time, vocab) float32; source
padding (id 0) is masked in self- and cross-attention. For decoding (seqtasks.decoding), the context
is `encode(source_ids)` = (memory (batch, source, d_model), mask (batch, source)); prefill computes
each decoder block's cross-attention keys and values once, and the state is the TransformerDecoder's
(self-attention Kᵀ, V per block ..., cross-attention Kᵀ, V per block ..., mask).
"""
from __future__ import annotations

import math

import keras
from keras import ops

from seqtasks.layers import TransformerBlock, TransformerDecoder, make_position_layer
from seqtasks.models.freezing import layer_prefixes, stack_depth

PAD_ID = 0


@keras.saving.register_keras_serializable(package="seqtasks")
class TransformerSeq2Seq(keras.Model):
    """Args: source_vocab, target_vocab; d_model; heads; encoder_layers; decoder_layers; hidden (FFN
    width, default 4 × d_model); dropout; positions ("sinusoidal" | "learned"); max_length (learned
    positions' table size); shared_embeddings; tied_output."""

    # where runs saved before the shared TransformerDecoder keep these weights (seqtasks.saved_layout)
    renamed_parts = {r"^decoder_(\d+)/": r"decoder/block_\1/"}

    def __init__(self, source_vocab: int, target_vocab: int, d_model: int = 256, heads: int = 4,
                 encoder_layers: int = 3, decoder_layers: int = 3, hidden: int | None = None, dropout: float = 0.1,
                 positions: str = "sinusoidal", max_length: int = 256, shared_embeddings: bool = False,
                 tied_output: bool = True, **kwargs):
        super().__init__(**kwargs)
        if shared_embeddings and source_vocab != target_vocab:
            raise ValueError("shared_embeddings needs one vocabulary for both sides")
        self.source_vocab, self.target_vocab, self.d_model, self.heads = source_vocab, target_vocab, d_model, heads
        self.encoder_layers, self.decoder_layers = encoder_layers, decoder_layers
        self.hidden, self.dropout_rate, self.positions = hidden or 4 * d_model, dropout, positions
        self.max_length, self.shared_embeddings, self.tied_output = max_length, shared_embeddings, tied_output
        p = self.dtype_policy
        init = keras.initializers.RandomNormal(stddev=d_model ** -0.5)
        self.source_embedding = keras.layers.Embedding(source_vocab, d_model, embeddings_initializer=init,
                                                       name="source_embedding", dtype=p)
        self.target_embedding = self.source_embedding if shared_embeddings else keras.layers.Embedding(
            target_vocab, d_model, embeddings_initializer=init, name="target_embedding", dtype=p)
        self.position = make_position_layer(positions, max_length, dtype=p)
        self.dropout = keras.layers.Dropout(dropout, dtype=p)
        self.encoder_blocks = [TransformerBlock(d_model, heads, self.hidden, dropout, name=f"encoder_{i}", dtype=p)
                               for i in range(encoder_layers)]
        self.decoder = TransformerDecoder(d_model, heads, decoder_layers, self.hidden, dropout, cross_attention=True,
                                          name="decoder", dtype=p)
        self.encoder_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="encoder_norm", dtype=p)
        self.decoder_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="decoder_norm", dtype=p)
        if not tied_output:
            self.output_layer = keras.layers.Dense(target_vocab, name="output", dtype=p)

    def build(self, input_shape):
        source_shape, target_shape = input_shape
        source_features, target_features = (*source_shape, self.d_model), (*target_shape, self.d_model)
        self.source_embedding.build(source_shape)
        if not self.shared_embeddings:
            self.target_embedding.build(target_shape)
        self.position.build(target_features)
        for block in self.encoder_blocks:
            block.build(source_features)
        self.decoder.build(target_features, source_features)
        self.encoder_norm.build(source_features)
        self.decoder_norm.build(target_features)
        if not self.tied_output:
            self.output_layer.build(target_features)

    def embed(self, embedding, token_ids, start_index=0, training=None):
        x = embedding(token_ids) * ops.cast(math.sqrt(self.d_model), self.compute_dtype)
        return self.dropout(self.position(x, start_index=start_index), training=training)

    def encode(self, source_ids, training=None) -> tuple:
        """-> (memory (batch, source, d_model), mask (batch, source) True = real token)."""
        mask = ops.not_equal(source_ids, PAD_ID)
        x = self.embed(self.source_embedding, source_ids, training=training)
        for block in self.encoder_blocks:
            x, _ = block(x, self_mask=mask[:, None, :], training=training)
        return self.encoder_norm(x), mask

    def logits(self, y):
        y = self.decoder_norm(y)
        if self.tied_output:
            table = ops.cast(self.target_embedding.embeddings, y.dtype)
            return ops.cast(ops.matmul(y, ops.transpose(table)), "float32")
        return ops.cast(self.output_layer(y), "float32")

    def decode(self, target_ids, memory, mask, training=None, return_weights=False):
        y = self.embed(self.target_embedding, target_ids, training=training)
        y, weights = self.decoder(y, memory=memory, memory_mask=mask, training=training, return_weights=True)
        return (self.logits(y), weights) if return_weights else self.logits(y)

    def call(self, inputs, training=None):
        source_ids, target_ids = inputs
        memory, mask = self.encode(source_ids, training=training)
        return self.decode(target_ids, memory, mask, training=training)

    def alignments(self, source_ids, target_ids):
        """Cross-attention weights of the last decoder block, averaged over heads: (batch, target_time, source)."""
        memory, mask = self.encode(source_ids)
        _, weights = self.decode(target_ids, memory, mask, return_weights=True)
        return ops.mean(weights, axis=1)

    # ---- the decoder interface of seqtasks.decoding -----------------------------------------------
    def capacity(self, max_length: int) -> int:
        return min(max_length, self.max_length) if self.positions == "learned" else max_length

    def prefill(self, token_ids, max_length, context):
        memory, mask = context
        y, state = self.decoder.prefill(self.embed(self.target_embedding, token_ids), max_length, memory, mask)
        return self.logits(y[:, -1:])[:, 0], state

    def step(self, token_ids, state, index):
        y = self.embed(self.target_embedding, token_ids[:, None], start_index=index)
        y, state = self.decoder.step(y, state, index)
        return self.logits(y)[:, 0], state

    def token_tables(self) -> dict[str, keras.layers.Embedding]:
        """The token embedding tables by vocabulary ("source", "target"; one table twice when shared):
        what --pretrained-embeddings fills."""
        return {"source": self.source_embedding, "target": self.target_embedding}

    def freezable_parts(self) -> dict[str, list[keras.layers.Layer]]:
        """embeddings (both tables and the position table), layers:N (the first N encoder and decoder
        blocks), encoder and decoder, each with its embeddings (a shared table or a learned position
        table is in both; the tied output is the target table) (seqtasks.models.freezing)."""
        tables = [self.source_embedding] + ([] if self.shared_embeddings else [self.target_embedding])
        output = [] if self.tied_output else [self.output_layer]
        return {"embeddings": [*tables, self.position],
                **layer_prefixes(stack_depth(self.encoder_blocks, self.decoder.blocks)),
                "encoder": [self.source_embedding, self.position, *self.encoder_blocks, self.encoder_norm],
                "decoder": [self.target_embedding, self.position, self.decoder, self.decoder_norm, *output]}

    def get_config(self):
        return {**super().get_config(), "source_vocab": self.source_vocab, "target_vocab": self.target_vocab,
                "d_model": self.d_model, "heads": self.heads, "encoder_layers": self.encoder_layers,
                "decoder_layers": self.decoder_layers, "hidden": self.hidden, "dropout": self.dropout_rate,
                "positions": self.positions, "max_length": self.max_length,
                "shared_embeddings": self.shared_embeddings, "tied_output": self.tied_output}
