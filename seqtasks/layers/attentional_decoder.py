"""The attentional recurrent decoder of translate's seq2seq and caption's Show, Attend and Tell: a
recurrent stack that reads a memory m_1..m_S (encoder outputs or an image grid) through attention.

With x_t the embedded previous token, s_t the stack's states (s_t its top layer's h), c_t the
context Σ_j α_tj m_j (seqtasks.layers.seq2seq_attention) and o_t the output:

    bahdanau  c_t = Attend(s_{t-1}, m)  [gate: c_t = σ(w_β · s_{t-1}) c_t, Xu et al.]
              s_t = RNN([x_t; c_t], s_{t-1})                          (Bahdanau et al. 2015)
    luong     s_t = RNN(x_t [; õ_{t-1}], s_{t-1});   c_t = Attend(s_t, m)   (Luong et al. 2015;
              `input_feeding` adds õ_{t-1} = o_{t-1} to the input)
    none      s_t = RNN(x_t, s_{t-1});   o_t = s_t                    (the context is the initial state)
    o_t = tanh(W_c [s_t; c_t])  with `combine`,  else  o_t = [s_t; c_t]

Shapes: x (batch, time, features); memory (batch, source, memory_features); memory_mask
(batch, source) bool, True = real position (None = all real); states one list per layer ([h] or
[h, c], each (batch, units)); outputs o (batch, time, output_features); attention weights α
(batch, time, source), exactly 0 at padding.

Teacher forcing runs the whole sequence at once where no step feeds the next (none, luong without
input feeding) and the same `step` as decoding in a keras.ops.scan otherwise. For decoding,
`prefill` and `step` carry one flat tuple (batch axis 0, fixed shapes):
(the stack's states ..., õ_{t-1}, memory, memory mask, the attention keys W_k m_j), the keys
computed once per memory; without attention only the stack's states.

`bridges` > 0 adds that many tanh projections, one per state tensor, from an encoder's states to
the decoder's initial ones (a bidirectional encoder's are twice as wide): `initial_state`.
"""
from __future__ import annotations

import keras
from keras import ops

from seqtasks.choices import ATTENTION_KINDS
from seqtasks.layers.recurrent import STATE_COUNTS, RecurrentStack
from seqtasks.layers.seq2seq_attention import AdditiveAttention, MultiplicativeAttention


@keras.saving.register_keras_serializable(package="seqtasks")
class AttentionalDecoder(keras.layers.Layer):
    """A recurrent decoder with Bahdanau or Luong attention over a memory. See the module docstring.

    Args: cell ("lstm" | "lstm-peephole" | "gru" | "rnn"); units; num_layers; attention ("bahdanau" | "luong" |
    "none"); attention_units (Bahdanau's score width, default units); input_feeding (luong); combine
    (o_t = tanh(W_c [s_t; c_t]) rather than [s_t; c_t]); gate (bahdanau: Xu et al.'s σ(w_β · s_{t-1})
    on the context); bridges (how many initial-state projections); dropout (between the stack's layers).
    """

    def __init__(self, cell: str, units: int, num_layers: int = 1, attention: str = "bahdanau",
                 attention_units: int | None = None, input_feeding: bool = False, combine: bool = True,
                 gate: bool = False, bridges: int = 0, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if attention not in ATTENTION_KINDS:
            raise ValueError(f"unknown attention {attention!r}; expected one of {ATTENTION_KINDS}")
        self.cell, self.units, self.num_layers, self.attention = cell, units, num_layers, attention
        self.attention_units = attention_units or units
        self.input_feeding = input_feeding and attention == "luong"
        self.combines, self.gated = combine and attention != "none", gate and attention == "bahdanau"
        self.bridge_count, self.dropout_rate = bridges, dropout
        self.state_count = STATE_COUNTS[cell]
        p = self.dtype_policy
        # created in the order their variables had in the models before this layer was shared
        self.recurrent = RecurrentStack(cell, units, num_layers, dropout, name="recurrent", dtype=p)
        self.bridges = [keras.layers.Dense(units, activation="tanh", name=f"bridge_{i}", dtype=p)
                        for i in range(bridges)]
        if attention == "bahdanau":
            self.attention_layer = AdditiveAttention(self.attention_units, name="attention", dtype=p)
        elif attention == "luong":
            self.attention_layer = MultiplicativeAttention(units, name="attention", dtype=p)
        if self.gated:
            self.gate = keras.layers.Dense(1, activation="sigmoid", name="gate", dtype=p)
        if self.combines:
            self.combine = keras.layers.Dense(units, activation="tanh", name="combine", dtype=p)

    @property
    def sequential(self) -> bool:
        """Whether teacher forcing must run step by step (a step's input needs the one before)."""
        return self.attention == "bahdanau" or self.input_feeding

    def attention_parts(self) -> list[keras.layers.Layer]:
        """The layers besides the recurrent stack and the bridges (a method: Keras saves the layers a
        property returns under the property's name)."""
        return [getattr(self, name) for name in ("attention_layer", "gate", "combine") if hasattr(self, name)]

    def output_features(self, memory_features: int) -> int:
        return self.units if self.combines or self.attention == "none" else self.units + memory_features

    def build(self, input_shape, memory_shape=None, bridge_input_shape=None):
        memory_features = memory_shape[-1] if memory_shape else 0
        extra = {"bahdanau": memory_features, "luong": self.units if self.input_feeding else 0, "none": 0}
        self.recurrent.build((*input_shape[:-1], input_shape[-1] + extra[self.attention]))
        for bridge in self.bridges:
            bridge.build(bridge_input_shape)
        if self.attention != "none":
            self.attention_layer.build((None, self.units), memory_shape)
            if self.gated:
                self.gate.build((None, self.units))
            if self.combines:
                self.combine.build((None, self.units + memory_features))

    def initial_state(self, encoder_states: list) -> list:
        """The decoder's first states (flat, layer by layer) from an encoder's, through the bridges if any."""
        return [bridge(s) for bridge, s in zip(self.bridges, encoder_states)] if self.bridges else list(encoder_states)

    # ---- one step, and the state decoding carries ----------------------------------------------
    def start(self, states: list, memory=None, memory_mask=None) -> tuple:
        """The state before the first step: flat initial states (batch, units) ..., and the memory."""
        if self.attention == "none":
            return tuple(states)
        memory = ops.cast(memory, self.compute_dtype)
        batch = ops.shape(memory)[0]
        if memory_mask is None:
            memory_mask = ops.ones(ops.shape(memory)[:2], "bool")
        feed = ops.zeros((batch, self.output_features(memory.shape[-1])), self.compute_dtype)
        return (*states, feed, memory, memory_mask, self.attention_layer.precompute_keys(memory))

    def step(self, x_t, state: tuple) -> tuple:
        """x_t (batch, features) -> (o_t (batch, output_features), state, α_t (batch, source) or None)."""
        if self.attention == "none":
            h, states = self.recurrent.step(x_t, self._nest(state))
            return h, _flat(states), None
        *flat, feed, memory, mask, keys = state
        states = self._nest(flat)
        if self.attention == "bahdanau":
            query = states[-1][0]
            context, weights = self.attention_layer(query, memory, memory_mask=mask, keys=keys)
            if self.gated:
                context = self.gate(query) * context
            h, states = self.recurrent.step(ops.concatenate([x_t, context], axis=-1), states)
        else:
            h, states = self.recurrent.step(ops.concatenate([x_t, feed], axis=-1) if self.input_feeding else x_t,
                                            states)
            context, weights = self.attention_layer(h, memory, memory_mask=mask, keys=keys)
        output = self._output(h, context)
        return output, (*_flat(states), output, memory, mask, keys), weights

    def _output(self, hidden, context):
        both = ops.concatenate([hidden, context], axis=-1)
        return self.combine(both) if self.combines else both

    # ---- whole sequences -------------------------------------------------------------------------
    def call(self, x, state: tuple, training=None) -> tuple:
        """Teacher-forced decoding of x (batch, time, features) from `start(...)`'s state ->
        (o (batch, time, output_features), α (batch, time, source) or None, the state after the last step)."""
        if not self.sequential:
            size = self.num_layers * self.state_count
            hidden, states = self.recurrent(x, initial_state=self._nest(state[:size]), training=training)
            if self.attention == "none":
                return hidden, None, _flat(states)
            _, memory, mask, keys = state[size:]
            context, weights = self.attention_layer(hidden, memory, memory_mask=mask, keys=keys)
            outputs = self._output(hidden, context)
            return outputs, weights, (*_flat(states), outputs[:, -1], memory, mask, keys)
        memory, mask, keys = state[-3:]
        no_weights = ops.zeros(ops.shape(mask), self.compute_dtype)

        def scan_step(carry, x_t):
            _, new_state, weights = self.step(x_t, (*carry[:-1], memory, mask, keys))
            # keras' TF scan emits its carry's structure: the carry's õ_t is the output o_t
            new_carry = (*new_state[:-3], ops.cast(weights, self.compute_dtype))
            return new_carry, new_carry

        last, emitted = ops.scan(scan_step, (*state[:-3], no_weights), ops.transpose(x, (1, 0, 2)))
        outputs, weights = (ops.transpose(t, (1, 0, 2)) for t in emitted[-2:])
        return outputs, weights, (*last[:-1], memory, mask, keys)

    def _nest(self, flat) -> list[list]:
        """Flat state tensors -> one list per layer ([h] or [h, c])."""
        return [list(flat[i * self.state_count:(i + 1) * self.state_count]) for i in range(self.num_layers)]

    def get_config(self):
        return {**super().get_config(), "cell": self.cell, "units": self.units, "num_layers": self.num_layers,
                "attention": self.attention, "attention_units": self.attention_units,
                "input_feeding": self.input_feeding, "combine": self.combines, "gate": self.gated,
                "bridges": self.bridge_count, "dropout": self.dropout_rate}


def _flat(states) -> tuple:
    return tuple(tensor for layer in states for tensor in layer)
