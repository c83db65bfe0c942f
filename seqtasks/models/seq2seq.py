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

Training is teacher-forced: call((source_ids, target_input_ids)) -> logits (batch, target_time, vocab)
in float32. The none and luong (without input feeding) decoders run the whole target sequence at once;
bahdanau and input feeding depend on the previous step, so they run the same `_step` as decoding,
in a keras.ops.scan over time.

Decoding goes through seqtasks.decoding with the context `encode(source_ids)` =
(memory (batch, source, features), source mask (batch, source), initial decoder states ...);
the decoding state is (decoder states ..., õ_{t-1}, memory, mask, attention keys W_k h_j), the keys
computed once per sentence. Source padding (id 0) is masked everywhere.
"""
from __future__ import annotations

import keras
from keras import ops

from seqtasks.layers import AdditiveAttention, MultiplicativeAttention, RecurrentStack
from seqtasks.models.freezing import layer_prefixes, recurrent_depth

from seqtasks.choices import ATTENTION_KINDS  # noqa: E402  (TF-free: the settings list them)
PAD_ID = 0


@keras.saving.register_keras_serializable(package="seqtasks")
class RecurrentSeq2Seq(keras.Model):
    """LSTM/GRU/RNN encoder-decoder. See the module docstring for the equations.

    Args: source_vocab, target_vocab; cell ("lstm" | "gru" | "rnn"); units; num_layers (encoder and
    decoder each); embedding_dim (default units); attention ("none" | "bahdanau" | "luong");
    attention_units (Bahdanau's score width, default units); bidirectional (encoder); input_feeding
    (luong); shared_embeddings (one table for both sides: needs a joint vocabulary); dropout.
    """

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
        self.state_count = 2 if cell == "lstm" else 1
        p = self.dtype_policy
        self.source_embedding = keras.layers.Embedding(source_vocab, self.embedding_dim, name="source_embedding",
                                                       dtype=p)
        self.target_embedding = self.source_embedding if shared_embeddings else keras.layers.Embedding(
            target_vocab, self.embedding_dim, name="target_embedding", dtype=p)
        self.encoder = RecurrentStack(cell, units, num_layers, dropout, bidirectional, name="encoder", dtype=p)
        self.decoder = RecurrentStack(cell, units, num_layers, dropout, name="decoder", dtype=p)
        # a bidirectional encoder's states are 2 × units wide: project them to the decoder's size
        self.bridges = [keras.layers.Dense(units, activation="tanh", name=f"bridge_{i}", dtype=p)
                        for i in range(num_layers * self.state_count)] if bidirectional else []
        if attention == "bahdanau":
            self.attention_layer = AdditiveAttention(self.attention_units, name="attention", dtype=p)
        elif attention == "luong":
            self.attention_layer = MultiplicativeAttention(units, name="attention", dtype=p)
        if attention != "none":
            self.combine = keras.layers.Dense(units, activation="tanh", name="combine", dtype=p)
        self.dropout = keras.layers.Dropout(dropout, dtype=p)
        self.output_layer = keras.layers.Dense(target_vocab, name="output", dtype=p)

    @property
    def memory_features(self) -> int:
        return 2 * self.units if self.bidirectional else self.units

    @property
    def sequential(self) -> bool:
        """Whether teacher-forced training must run step by step (the step feeds the next one)."""
        return self.attention == "bahdanau" or self.input_feeding

    def decoder_input_features(self) -> int:
        extra = {"bahdanau": self.memory_features, "luong": self.units if self.input_feeding else 0, "none": 0}
        return self.embedding_dim + extra[self.attention]

    def build(self, input_shape):
        source_shape, target_shape = input_shape
        batch = source_shape[0]
        self.source_embedding.build(source_shape)
        if not self.shared_embeddings:
            self.target_embedding.build(target_shape)
        self.encoder.build((*source_shape, self.embedding_dim))
        for bridge in self.bridges:
            bridge.build((batch, self.memory_features))
        self.decoder.build((*target_shape, self.decoder_input_features()))
        memory_shape = (batch, source_shape[1], self.memory_features)
        if self.attention != "none":
            self.attention_layer.build((batch, self.units), memory_shape)
            self.combine.build((batch, self.units + self.memory_features))
        self.output_layer.build((*target_shape, self.units))

    # ---- encoder ----------------------------------------------------------------------------------
    def encode(self, source_ids, training=None) -> tuple:
        """-> (memory (batch, source, features), mask (batch, source), initial decoder states ...)."""
        mask = ops.not_equal(source_ids, PAD_ID)
        x = self.dropout(self.source_embedding(source_ids), training=training)
        memory, states = self.encoder(x, mask=mask, training=training)
        flat = [tensor for layer in states for tensor in layer]
        if self.bidirectional:
            flat = [bridge(tensor) for bridge, tensor in zip(self.bridges, flat)]
        return (memory, mask, *flat)

    # ---- decoder ----------------------------------------------------------------------------------
    def _initial(self, context):
        """Decoder states (one list per layer), õ_0, memory, mask and the precomputed attention keys."""
        memory, mask, *flat = context
        states = self._nest(flat)
        batch = ops.shape(memory)[0]
        feed = ops.zeros((batch, self.units), dtype=self.compute_dtype)
        keys = self.attention_layer.precompute_keys(memory) if self.attention != "none" else memory
        return states, feed, memory, mask, keys

    def _step(self, embedded, states, feed, memory, mask, keys, training=None):
        """One decoder step from E[y_{t-1}] (batch, embedding_dim) -> (o_t, states, õ_t, weights)."""
        if self.attention == "bahdanau":
            context, weights = self.attention_layer(states[-1][0], memory, memory_mask=mask, keys=keys)
            hidden, states = self.decoder.step(ops.concatenate([embedded, context], axis=-1), states)
            output = self.combine(ops.concatenate([hidden, context], axis=-1))
            return output, states, output, weights
        x = ops.concatenate([embedded, feed], axis=-1) if self.input_feeding else embedded
        hidden, states = self.decoder.step(x, states)
        if self.attention == "none":
            return hidden, states, feed, ops.zeros(ops.shape(mask), self.compute_dtype)
        context, weights = self.attention_layer(hidden, memory, memory_mask=mask, keys=keys)
        output = self.combine(ops.concatenate([hidden, context], axis=-1))
        return output, states, output, weights

    def _decode(self, target_ids, states, feed, memory, mask, keys, training=None):
        """Teacher-forced decoding of target_ids (batch, time) -> (o (batch, time, units), weights, last carry)."""
        embedded = self.dropout(self.target_embedding(target_ids), training=training)
        if not self.sequential:
            hidden, states = self.decoder(embedded, initial_state=states, training=training)
            if self.attention == "none":
                weights = ops.zeros((ops.shape(target_ids)[0], ops.shape(target_ids)[1], ops.shape(mask)[1]),
                                    self.compute_dtype)
                return hidden, weights, (states, feed)
            context, weights = self.attention_layer(hidden, memory, memory_mask=mask, keys=keys)
            outputs = self.combine(ops.concatenate([hidden, context], axis=-1))
            return outputs, weights, (states, outputs[:, -1])

        flat_states = [tensor for layer in states for tensor in layer]
        weights0 = ops.zeros(ops.shape(mask), self.compute_dtype)

        def step(carry, embedded_t):
            *flat, feed, _ = carry
            nested = self._nest(flat)
            _, nested, feed, weights = self._step(embedded_t, nested, feed, memory, mask, keys, training)
            carry = (*[t for layer in nested for t in layer], feed, weights)
            return carry, carry  # keras' TF scan emits the carry's structure: o_t is õ_t here

        last, emitted = ops.scan(step, (*flat_states, feed, weights0), ops.transpose(embedded, (1, 0, 2)))
        outputs = ops.transpose(emitted[-2], (1, 0, 2))
        weights = ops.transpose(emitted[-1], (1, 0, 2))
        *flat, feed, _ = last
        nested = self._nest(flat)
        return outputs, weights, (nested, feed)

    def logits(self, outputs, training=None):
        return ops.cast(self.output_layer(self.dropout(outputs, training=training)), "float32")

    def call(self, inputs, training=None):
        source_ids, target_ids = inputs
        states, feed, memory, mask, keys = self._initial(self.encode(source_ids, training=training))
        outputs, _, _ = self._decode(target_ids, states, feed, memory, mask, keys, training=training)
        return self.logits(outputs, training=training)

    def alignments(self, source_ids, target_ids):
        """Attention weights (batch, target_time, source) of teacher-forced decoding of target_ids."""
        states, feed, memory, mask, keys = self._initial(self.encode(source_ids))
        _, weights, _ = self._decode(target_ids, states, feed, memory, mask, keys)
        return weights

    # ---- the decoder interface of seqtasks.decoding -----------------------------------------------
    def capacity(self, max_length: int) -> int:
        return max_length  # recurrent states have no length limit

    def prefill(self, token_ids, max_length, context):
        states, feed, memory, mask, keys = self._initial(context)
        outputs, _, (states, feed) = self._decode(token_ids, states, feed, memory, mask, keys)
        return self.logits(outputs[:, -1]), self._pack(states, feed, memory, mask, keys)

    def step(self, token_ids, state, index=None):
        states, feed, memory, mask, keys = self._unpack(state)
        output, states, feed, _ = self._step(self.target_embedding(token_ids), states, feed, memory, mask, keys)
        return self.logits(output), self._pack(states, feed, memory, mask, keys)

    def _nest(self, flat) -> list[list]:
        """A flat list of state tensors -> one list per layer ([h] or [h, c])."""
        return [list(flat[i * self.state_count:(i + 1) * self.state_count]) for i in range(self.num_layers)]

    def _pack(self, states, feed, memory, mask, keys) -> tuple:
        return (*[t for layer in states for t in layer], feed, memory, mask, keys)

    def _unpack(self, state):
        *flat, feed, memory, mask, keys = state
        return self._nest(flat), feed, memory, mask, keys

    def freezable_parts(self) -> dict[str, list[keras.layers.Layer]]:
        """embeddings (both tables), layers:N (the first N layers of the encoder and of the decoder),
        encoder (what reads the source: its embeddings, the encoder, the bridges) and decoder (the rest;
        a shared table is in both) (seqtasks.models.freezing)."""
        attention = [self.attention_layer, self.combine] if self.attention != "none" else []
        depth = [source + target for source, target in zip(recurrent_depth(self.encoder), recurrent_depth(self.decoder))]
        tables = [self.source_embedding] + ([] if self.shared_embeddings else [self.target_embedding])
        return {"embeddings": tables, **layer_prefixes(depth),
                "encoder": [self.source_embedding, self.encoder, *self.bridges],
                "decoder": [self.target_embedding, self.decoder, *attention, self.output_layer]}

    def get_config(self):
        return {**super().get_config(), "source_vocab": self.source_vocab, "target_vocab": self.target_vocab,
                "cell": self.cell, "units": self.units, "num_layers": self.num_layers,
                "embedding_dim": self.embedding_dim, "attention": self.attention,
                "attention_units": self.attention_units, "bidirectional": self.bidirectional,
                "input_feeding": self.input_feeding, "shared_embeddings": self.shared_embeddings,
                "dropout": self.dropout_rate}

