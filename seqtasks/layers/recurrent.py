"""Recurrent layers: simple RNN, GRU and LSTM, stacked, with a single-step call for decoding.

Each cell implements its textbook equations. The input projection `x_t W + b` of every time step is
computed for the whole sequence at once, before the time loop, as one large matrix product; the loop
then only adds the recurrent term `h_{t-1} U`. That halves the sequential work of keras.layers.LSTM's
CPU path, which multiplies by `W` inside the loop, and gives the same function.

Shapes: inputs (batch, time, features); outputs (batch, time, units); states (batch, units) each.
Mask convention: `mask` is (batch, time), True for real tokens; at masked steps the state is carried
unchanged and the output repeats the last one (Keras' RNN semantics), so right padding never changes
the final state.
"""
from __future__ import annotations

import keras
from keras import ops

from seqtasks.choices import RECURRENT_CELLS
from seqtasks.layers.lstm_sequence import lstm_sequence

CELL_KINDS = RECURRENT_CELLS
_GATES = {"rnn": 1, "gru": 3, "lstm": 4, "lstm-peephole": 4}
STATE_COUNTS = {"rnn": 1, "gru": 1, "lstm": 2, "lstm-peephole": 2}  # [h] or [h, c]


@keras.saving.register_keras_serializable(package="seqtasks")
class ForgetGateBias(keras.initializers.Initializer):
    """The LSTM's input-projection bias at initialisation: 1 for the forget gate, 0 for i, g and o
    (gates in the order i, f, g, o). A forget gate that starts near σ(1) ≈ 0.73 instead of 0.5 keeps
    the cell state, and its gradient, for longer from the first step (Jozefowicz et al. 2015;
    keras.layers.LSTM's unit_forget_bias)."""

    def __init__(self, units: int):
        self.units = units

    def __call__(self, shape, dtype=None):
        units = self.units
        return ops.concatenate([ops.zeros((units,), dtype), ops.ones((units,), dtype),
                                ops.zeros((shape[-1] - 2 * units,), dtype)])

    def get_config(self):
        return {"units": self.units}


@keras.saving.register_keras_serializable(package="seqtasks")
class RecurrentCell(keras.layers.Layer):
    """One time step of an RNN, GRU or LSTM, given the projected input `z_t = x_t W + b`.

    rnn:  h_t = tanh(z_t + h_{t-1} U)
    gru:  [z_r, z_u, z_n] = z_t;  r = σ(z_r + h U_r);  u = σ(z_u + h U_u)
          n = tanh(z_n + r ⊙ (h U_n + b_n));  h_t = u ⊙ h_{t-1} + (1 - u) ⊙ n
    lstm: [i, f, g, o] = z_t + h_{t-1} U;  i, f, o = σ(·);  g = tanh(g)
          c_t = f ⊙ c_{t-1} + i ⊙ g;  h_t = o ⊙ tanh(c_t)
    lstm-peephole (Gers & Schmidhuber 2000): the gates also look at the cell, through diagonal
          weights p_i, p_f, p_o (units,), which start at 0 (a plain LSTM at initialisation):
          [a_i, a_f, a_g, a_o] = z_t + h_{t-1} U
          i = σ(a_i + p_i ⊙ c_{t-1});  f = σ(a_f + p_f ⊙ c_{t-1});  g = tanh(a_g)
          c_t = f ⊙ c_{t-1} + i ⊙ g
          o = σ(a_o + p_o ⊙ c_t);  h_t = o ⊙ tanh(c_t)            (the output gate sees the new cell)

    Call arguments: `projected` (batch, gates × units), `states` a list of (batch, units) tensors
    ([h] for rnn and gru, [h, c] for lstm). Returns (h_t, new_states).
    """

    def __init__(self, kind: str, units: int, **kwargs):
        super().__init__(**kwargs)
        if kind not in CELL_KINDS:
            raise ValueError(f"unknown cell kind {kind!r}; expected one of {CELL_KINDS}")
        self.kind = kind
        self.units = units
        self.gates = _GATES[kind]
        self.state_size = [units] * STATE_COUNTS[kind]
        self.output_size = units

    def build(self, input_shape):
        self.recurrent_kernel = self.add_weight(
            name="recurrent_kernel",
            shape=(self.units, self.gates * self.units),
            initializer="orthogonal",
        )
        if self.kind == "gru":
            # reset_after: the reset gate multiplies (h U_n + b_n), as cuDNN's GRU does
            self.recurrent_bias = self.add_weight(
                name="recurrent_bias", shape=(self.gates * self.units,), initializer="zeros"
            )
        if self.kind == "lstm-peephole":
            self.peephole_input, self.peephole_forget, self.peephole_output = (
                self.add_weight(name=f"peephole_{gate}", shape=(self.units,), initializer="zeros")
                for gate in ("input", "forget", "output"))

    def call(self, projected, states):
        h = states[0]
        recurrent = ops.matmul(h, self.recurrent_kernel)
        if self.kind == "rnn":
            h = ops.tanh(projected + recurrent)
            return h, [h]
        if self.kind == "gru":
            recurrent = recurrent + self.recurrent_bias
            z_r, z_u, z_n = ops.split(projected, 3, axis=-1)
            h_r, h_u, h_n = ops.split(recurrent, 3, axis=-1)
            reset = ops.sigmoid(z_r + h_r)
            update = ops.sigmoid(z_u + h_u)
            candidate = ops.tanh(z_n + reset * h_n)
            h = update * h + (1.0 - update) * candidate
            return h, [h]
        c = states[1]
        i, f, g, o = ops.split(projected + recurrent, 4, axis=-1)
        if self.kind == "lstm-peephole":
            i = i + self.peephole_input * c
            f = f + self.peephole_forget * c
        c = ops.sigmoid(f) * c + ops.sigmoid(i) * ops.tanh(g)
        if self.kind == "lstm-peephole":
            o = o + self.peephole_output * c
        h = ops.sigmoid(o) * ops.tanh(c)
        return h, [h, c]

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "units": self.units}


@keras.saving.register_keras_serializable(package="seqtasks")
class RecurrentLayer(keras.layers.Layer):
    """One recurrent layer over a sequence: z = x W + b for all steps at once, then the cell in time.

    Call arguments:
        inputs: (batch, time, features).
        initial_state: optional list of (batch, units) tensors; zeros when omitted.
        mask: optional (batch, time) boolean, True for real steps.
        go_backwards: read the sequence right to left (for the backward half of a BiRNN).
    Returns (outputs (batch, time, units), final states list).

    `unroll=True` writes the time loop out as straight-line code (inputs must have a fixed time
    length): a longer first compile, then faster steps on CPU, where the per-step cost of a
    tf.while_loop is a large share of a small LSTM's step. An unrolled LSTM over an unmasked window
    also computes its gradient by the backward equations of lstm_sequence.
    """

    def __init__(self, kind: str, units: int, go_backwards: bool = False, unroll: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.kind = kind
        self.units = units
        self.go_backwards = go_backwards
        self.unroll = unroll
        self.input_projection = keras.layers.Dense(
            _GATES[kind] * units, name="input_projection", dtype=self.dtype_policy,
            bias_initializer=ForgetGateBias(units) if STATE_COUNTS[kind] == 2 else "zeros",
        )
        self.cell = RecurrentCell(kind, units, name="cell", dtype=self.dtype_policy)
        self.rnn = keras.layers.RNN(
            self.cell, return_sequences=True, return_state=True,
            go_backwards=go_backwards, unroll=unroll, name="rnn", dtype=self.dtype_policy,
        )
        # the same cell in a loop, for inputs whose length is only known at run time (prompts)
        self.looped_rnn = keras.layers.RNN(
            self.cell, return_sequences=True, return_state=True, go_backwards=go_backwards,
            name="looped_rnn", dtype=self.dtype_policy,
        ) if unroll else self.rnn
        self.supports_masking = True

    def build(self, input_shape):
        self.input_projection.build(input_shape)
        projected_shape = (*input_shape[:-1], _GATES[self.kind] * self.units)
        self.rnn.build(projected_shape)
        if self.looped_rnn is not self.rnn:
            self.looped_rnn.build(projected_shape)

    def call(self, inputs, initial_state=None, mask=None, training=None):
        projected = self.input_projection(inputs)
        if self.kind == "lstm" and self.unroll and mask is None and inputs.shape[1] is not None:
            return self._lstm_over_window(projected, initial_state)
        rnn = self.rnn if inputs.shape[1] is not None else self.looped_rnn
        outputs, *states = rnn(projected, initial_state=initial_state, mask=mask, training=training)
        if self.go_backwards:
            # keras returns the backward pass in reversed time order; put it back in input order
            outputs = ops.flip(outputs, axis=1)
        return outputs, list(states)

    def _lstm_over_window(self, projected, initial_state):
        """An unrolled LSTM over an unmasked fixed-length window, with backpropagation through time
        written out (lstm_sequence): the same function as the cell in keras.layers.RNN, fewer operations."""
        z = ops.transpose(projected, (1, 0, 2))  # time-major: one slice per step
        if self.go_backwards:
            z = ops.flip(z, axis=0)
        kernel = ops.cast(self.cell.recurrent_kernel, z.dtype)  # cast once, not at every step
        h0, c0 = initial_state if initial_state is not None else self.zero_state(ops.shape(projected)[0])
        outputs, h, c = lstm_sequence(z, kernel, ops.cast(h0, z.dtype), ops.cast(c0, z.dtype))
        if self.go_backwards:
            outputs = ops.flip(outputs, axis=0)
        return ops.transpose(outputs, (1, 0, 2)), [h, c]

    def step(self, x_t, states):
        """One decoding step: x_t (batch, features), states list -> (h_t, new states)."""
        return self.cell(self.input_projection(x_t), states)

    def zero_state(self, batch_size):
        return [ops.zeros((batch_size, self.units), dtype=self.compute_dtype) for _ in self.cell.state_size]

    def compute_output_spec(self, inputs, initial_state=None, mask=None, training=None):
        batch, time = inputs.shape[0], inputs.shape[1]
        outputs = keras.KerasTensor((batch, time, self.units), dtype=self.compute_dtype)
        states = [keras.KerasTensor((batch, self.units), dtype=self.compute_dtype) for _ in self.cell.state_size]
        return outputs, states

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "units": self.units, "go_backwards": self.go_backwards,
                "unroll": self.unroll}


@keras.saving.register_keras_serializable(package="seqtasks")
class RecurrentStack(keras.layers.Layer):
    """N recurrent layers, dropout between them: h^(l) = Cell^(l)(dropout(h^(l-1))).

    With `bidirectional`, each layer runs a forward and a backward RecurrentLayer and concatenates
    them, so outputs have 2 × units features (encoders only: a backward pass cannot decode).

    Call arguments: inputs (batch, time, features); initial_state: optional list, one entry per layer,
    each a list of state tensors (unidirectional only); mask (batch, time).
    Returns (outputs (batch, time, units or 2 × units), states: one list per layer; for bidirectional
    layers the forward and backward states concatenated on features).
    """

    def __init__(self, kind: str, units: int, num_layers: int = 1, dropout: float = 0.0,
                 bidirectional: bool = False, unroll: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.unroll = unroll
        if kind not in CELL_KINDS:
            raise ValueError(f"unknown cell kind {kind!r}; expected one of {CELL_KINDS}")
        self.kind, self.units, self.num_layers = kind, units, num_layers
        self.dropout_rate, self.bidirectional = dropout, bidirectional
        self.forward_layers = [
            RecurrentLayer(kind, units, unroll=unroll, name=f"forward_{i}", dtype=self.dtype_policy)
            for i in range(num_layers)
        ]
        self.backward_layers = [
            RecurrentLayer(kind, units, go_backwards=True, unroll=unroll, name=f"backward_{i}", dtype=self.dtype_policy)
            for i in range(num_layers)
        ] if bidirectional else []
        self.dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy)
        self.supports_masking = True

    def build(self, input_shape):
        shape = tuple(input_shape)
        width = 2 * self.units if self.bidirectional else self.units
        for i in range(self.num_layers):
            self.forward_layers[i].build(shape)
            if self.bidirectional:
                self.backward_layers[i].build(shape)
            shape = (*shape[:-1], width)

    def call(self, inputs, initial_state=None, mask=None, training=None):
        x = inputs
        states = []
        for i, forward in enumerate(self.forward_layers):
            if i > 0:
                x = self.dropout(x, training=training)
            layer_state = initial_state[i] if initial_state is not None else None
            forward_out, forward_state = forward(x, initial_state=layer_state, mask=mask, training=training)
            if self.bidirectional:
                backward_out, backward_state = self.backward_layers[i](x, mask=mask, training=training)
                x = ops.concatenate([forward_out, backward_out], axis=-1)
                states.append([ops.concatenate([f, b], axis=-1) for f, b in zip(forward_state, backward_state)])
            else:
                x = forward_out
                states.append(forward_state)
        return x, states

    def step(self, x_t, states):
        """One decoding step through every layer (unidirectional): x_t (batch, features)."""
        new_states = []
        h = x_t
        for layer, layer_state in zip(self.forward_layers, states):
            h, layer_state = layer.step(h, layer_state)
            new_states.append(layer_state)
        return h, new_states

    def zero_state(self, batch_size):
        return [layer.zero_state(batch_size) for layer in self.forward_layers]

    def compute_output_spec(self, inputs, initial_state=None, mask=None, training=None):
        width = 2 * self.units if self.bidirectional else self.units
        batch, time = inputs.shape[0], inputs.shape[1]
        outputs = keras.KerasTensor((batch, time, width), dtype=self.compute_dtype)
        n_states = STATE_COUNTS[self.kind]
        states = [[keras.KerasTensor((batch, width), dtype=self.compute_dtype) for _ in range(n_states)]
                  for _ in range(self.num_layers)]
        return outputs, states

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "units": self.units, "num_layers": self.num_layers,
                "dropout": self.dropout_rate, "bidirectional": self.bidirectional, "unroll": self.unroll}
