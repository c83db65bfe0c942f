"""Recurrent encoder-decoder (seq2seq): the context-vector model and its attentional variants.

Encoder:  h_1..h_S = RecurrentStack(E_src[x])  (optionally bidirectional: h_j = [→h_j; ←h_j]);
          its final states, through a tanh bridge when bidirectional, start the decoder.
Decoder, by `attention`:
    none      s_t = RNN(E_tgt[y_{t-1}], s_{t-1});          o_t = s_t
              (Sutskever et al. 2014: the encoder's final state is the only context vector)
    luong     s_t = RNN(E_tgt[y_{t-1}] (; õ_{t-1}), s_{t-1});  c_t = Σ_j α_tj h_j,  e_tj = s_tᵀ W h_j
              o_t = tanh(W_c [s_t; c_t])                  (Luong et al. 2015, "general" score;
              `input_feeding` adds õ_{t-1} = o_{t-1} to the input)
    bahdanau  c_t = Σ_j α_tj h_j,  e_tj = vᵀ tanh(W_q s_{t-1} + W_k h_j)
              s_t = RNN([E_tgt[y_{t-1}]; c_t], s_{t-1});  o_t = tanh(W_c [s_t; c_t])   (Bahdanau et al. 2015)
logits_t = W_out o_t + b.  s_{t-1} in Bahdanau's score is the top decoder layer's hidden state.

The decoder is seqtasks.layers.AttentionalDecoder (with combine, and the bridges).

Training is teacher-forced: call((source_ids, target_input_ids)) -> logits (batch, target_time, vocab)
in float32. The none and luong (without input feeding) decoders run the whole target sequence at once;
bahdanau and input feeding depend on the previous step, so they run the same step as decoding,
in a keras.ops.scan over time.

Decoding goes through seqtasks.decoding with the context `encode(source_ids)` =
(memory (batch, source, features), source mask (batch, source), initial decoder states ...);
the decoding state is the AttentionalDecoder's (decoder states ..., õ_{t-1}, memory, mask, attention
keys W_k h_j; the states only without attention), the keys computed once per sentence. Source padding
(id 0) is masked everywhere.
"""
from __future__ import annotations

import keras
from keras import ops

from seqtasks.choices import ATTENTION_KINDS
from seqtasks.layers import STATE_COUNTS, AttentionalDecoder, RecurrentStack
from seqtasks.models.freezing import layer_prefixes, recurrent_depth

PAD_ID = 0


@keras.saving.register_keras_serializable(package="seqtasks")
class RecurrentSeq2Seq(keras.Model):
    """LSTM/GRU/RNN encoder-decoder. See the module docstring for the equations.

    Args: source_vocab, target_vocab; cell ("lstm" | "lstm-peephole" | "gru" | "rnn"); units; num_layers (encoder and
    decoder each); embedding_dim (default units); attention ("none" | "bahdanau" | "luong");
    attention_units (Bahdanau's score width, default units); bidirectional (encoder); input_feeding
    (luong); shared_embeddings (one table for both sides: needs a joint vocabulary); dropout.
    """

    # where runs saved before the shared AttentionalDecoder keep these weights (seqtasks.saved_layout)
    renamed_parts = {"^decoder/": "decoder/recurrent/", "^(bridge_\\d+|attention|combine)/": r"decoder/\1/"}

    def __init__(self, source_vocab: int, target_vocab: int, cell: str = "lstm", units: int = 256,
                 num_layers: int = 2, embedding_dim: int | None = None, attention: str = "bahdanau",
                 attention_units: int | None = None, bidirectional: bool = True, input_feeding: bool = False,
                 shared_embeddings: bool = False, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if attention not in ATTENTION_KINDS:
            raise ValueError(f"unknown attention {attention!r}; expected one of {ATTENTION_KINDS}")
        if shared_embeddings and source_vocab != target_vocab:
            raise ValueError("shared_embeddings needs one vocabulary for both sides")
        self.source_vocab, self.target_vocab, self.cell, self.units = source_vocab, target_vocab, cell, units
        self.num_layers, self.embedding_dim = num_layers, embedding_dim or units
        self.attention, self.attention_units = attention, attention_units or units
        self.bidirectional, self.input_feeding = bidirectional, input_feeding and attention == "luong"
        self.shared_embeddings, self.dropout_rate = shared_embeddings, dropout
        self.state_count = STATE_COUNTS[cell]
        p = self.dtype_policy
        self.source_embedding = keras.layers.Embedding(source_vocab, self.embedding_dim, name="source_embedding",
                                                       dtype=p)
        self.target_embedding = self.source_embedding if shared_embeddings else keras.layers.Embedding(
            target_vocab, self.embedding_dim, name="target_embedding", dtype=p)
        self.encoder = RecurrentStack(cell, units, num_layers, dropout, bidirectional, name="encoder", dtype=p)
        # a bidirectional encoder's states are 2 × units wide: the decoder's bridges project them to its size
        self.decoder = AttentionalDecoder(cell, units, num_layers, attention, self.attention_units, self.input_feeding,
                                          bridges=num_layers * self.state_count if bidirectional else 0,
                                          dropout=dropout, name="decoder", dtype=p)
        self.dropout = keras.layers.Dropout(dropout, dtype=p)
        self.output_layer = keras.layers.Dense(target_vocab, name="output", dtype=p)

    @property
    def memory_features(self) -> int:
        return 2 * self.units if self.bidirectional else self.units

    def build(self, input_shape):
        source_shape, target_shape = input_shape
        batch = source_shape[0]
        self.source_embedding.build(source_shape)
        if not self.shared_embeddings:
            self.target_embedding.build(target_shape)
        self.encoder.build((*source_shape, self.embedding_dim))
        self.decoder.build((*target_shape, self.embedding_dim), (batch, source_shape[1], self.memory_features),
                           (batch, self.memory_features))
        self.output_layer.build((*target_shape, self.units))

    # ---- encoder ----------------------------------------------------------------------------------
    def encode(self, source_ids, training=None) -> tuple:
        """-> (memory (batch, source, features), mask (batch, source), initial decoder states ...)."""
        mask = ops.not_equal(source_ids, PAD_ID)
        x = self.dropout(self.source_embedding(source_ids), training=training)
        memory, states = self.encoder(x, mask=mask, training=training)
        return (memory, mask, *self.decoder.initial_state([tensor for layer in states for tensor in layer]))

    # ---- decoder ----------------------------------------------------------------------------------
    def _decode(self, target_ids, context, training=None) -> tuple:
        """Teacher-forced decoding -> (o (batch, time, units), α (batch, time, source), the last state)."""
        memory, mask, *states = context
        embedded = self.dropout(self.target_embedding(target_ids), training=training)
        outputs, weights, state = self.decoder(embedded, self.decoder.start(states, memory, mask), training=training)
        if weights is None:  # no attention: no weights, as zeros
            weights = ops.zeros((ops.shape(target_ids)[0], ops.shape(target_ids)[1], ops.shape(mask)[1]),
                                self.compute_dtype)
        return outputs, weights, state

    def logits(self, outputs, training=None):
        return ops.cast(self.output_layer(self.dropout(outputs, training=training)), "float32")

    def call(self, inputs, training=None):
        source_ids, target_ids = inputs
        outputs, _, _ = self._decode(target_ids, self.encode(source_ids, training=training), training=training)
        return self.logits(outputs, training=training)

    def alignments(self, source_ids, target_ids):
        """Attention weights (batch, target_time, source) of teacher-forced decoding of target_ids."""
        _, weights, _ = self._decode(target_ids, self.encode(source_ids))
        return weights

    # ---- the decoder interface of seqtasks.decoding -----------------------------------------------
    def capacity(self, max_length: int) -> int:
        return max_length  # recurrent states have no length limit

    def prefill(self, token_ids, max_length, context):
        outputs, _, state = self._decode(token_ids, context)
        return self.logits(outputs[:, -1]), state

    def step(self, token_ids, state, index=None):
        output, state, _ = self.decoder.step(self.target_embedding(token_ids), state)
        return self.logits(output), state

    def token_tables(self) -> dict[str, keras.layers.Embedding]:
        """The token embedding tables by vocabulary ("source", "target"; one table twice when shared):
        what --pretrained-embeddings fills."""
        return {"source": self.source_embedding, "target": self.target_embedding}

    def freezable_parts(self) -> dict[str, list[keras.layers.Layer]]:
        """embeddings (both tables), layers:N (the first N layers of the encoder and of the decoder),
        encoder (what reads the source: its embeddings, the encoder, the bridges) and decoder (the rest;
        a shared table is in both) (seqtasks.models.freezing)."""
        depth = [source + target for source, target in
                 zip(recurrent_depth(self.encoder), recurrent_depth(self.decoder.recurrent))]
        tables = [self.source_embedding] + ([] if self.shared_embeddings else [self.target_embedding])
        return {"embeddings": tables, **layer_prefixes(depth),
                "encoder": [self.source_embedding, self.encoder, *self.decoder.bridges],
                "decoder": [self.target_embedding, self.decoder.recurrent, *self.decoder.attention_parts(),
                            self.output_layer]}

    def get_config(self):
        return {**super().get_config(), "source_vocab": self.source_vocab, "target_vocab": self.target_vocab,
                "cell": self.cell, "units": self.units, "num_layers": self.num_layers,
                "embedding_dim": self.embedding_dim, "attention": self.attention,
                "attention_units": self.attention_units, "bidirectional": self.bidirectional,
                "input_feeding": self.input_feeding, "shared_embeddings": self.shared_embeddings,
                "dropout": self.dropout_rate}

