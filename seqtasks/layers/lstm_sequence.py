"""An LSTM over a whole fixed-length sequence, with backpropagation through time written out.

Forward, for t = 1..T, with the projected inputs z_t = x_t W + b given (gates in the order i, f, g, o):

    a_t = z_t + h_{t-1} U
    i = σ(a_i),  f = σ(a_f),  g = tanh(a_g),  o = σ(a_o)
    c_t = f ⊙ c_{t-1} + i ⊙ g
    h_t = o ⊙ tanh(c_t)

Backward, for t = T..1, given ∂L/∂h_t from the outputs (δh_t) and from step t+1 (carried in dh, dc):

    dh   = δh_t + dh                                   # h_t feeds the output and the next step
    dc   = dc + dh ⊙ o ⊙ (1 - tanh²(c_t))
    δa_i = dc ⊙ g ⊙ i(1 - i)          δa_f = dc ⊙ c_{t-1} ⊙ f(1 - f)
    δa_g = dc ⊙ i ⊙ (1 - g²)          δa_o = dh ⊙ tanh(c_t) ⊙ o(1 - o)
    dc   ← dc ⊙ f,    dh ← δa_t Uᵀ                     # what flows on to step t-1
    ∂L/∂z_t = δa_t,   ∂L/∂U = Σ_t h_{t-1}ᵀ δa_t

Why by hand: differentiating the unrolled loop, autodiff multiplies h_{t-1}ᵀ δa_t at every step, T
small products, then adds T gradients of U's full size. Here ∂L/∂U is one product of the stacked
(T·batch, units)ᵀ and (T·batch, 4·units), as cuDNN does; on a CPU, where a small LSTM's step is bound by
the number of operations, that is the larger part of the backward pass's cost.

Shapes: z (time, batch, 4·units), time-major; U (units, 4·units); h0, c0 (batch, units). No mask: this is
the path for fixed-length windows (language models); padded batches go through keras.layers.RNN.
"""
from __future__ import annotations

from keras import ops


def _forward(z, kernel, h0, c0):
    """The forward equations; returns outputs (time, batch, units), h_T, c_T and what backward needs."""
    units = h0.shape[-1]
    h, c = h0, c0
    saved, outputs = [], []
    for z_t in ops.unstack(z, axis=0):
        a = z_t + ops.matmul(h, kernel)
        input_forget = ops.sigmoid(a[:, :2 * units])  # i and f in one call: fewer ops per step
        i, f = input_forget[:, :units], input_forget[:, units:]
        g = ops.tanh(a[:, 2 * units:3 * units])
        o = ops.sigmoid(a[:, 3 * units:])
        c_prev, h_prev = c, h
        c = f * c + i * g
        tanh_c = ops.tanh(c)
        h = o * tanh_c
        saved.append((i, f, g, o, c_prev, tanh_c, h_prev))
        outputs.append(h)
    return ops.stack(outputs, axis=0), h, c, saved


def lstm_sequence(z, kernel, h0, c0):
    """Run the LSTM over z (time, batch, 4·units) from (h0, c0); returns (outputs (time, batch, units), h_T, c_T).
    Gradients flow to z, kernel, h0 and c0 by the backward equations above."""

    @ops.custom_gradient
    def run(z, kernel, h0, c0):
        outputs, h, c, saved = _forward(z, kernel, h0, c0)
        units = h0.shape[-1]

        def backward(d_outputs, d_h, d_c):
            output_grads = ops.unstack(d_outputs, axis=0)
            dh = d_h if d_h is not None else ops.zeros_like(h)
            dc = d_c if d_c is not None else ops.zeros_like(c)
            kernel_transposed = ops.transpose(kernel)
            d_a = [None] * len(saved)
            for t in reversed(range(len(saved))):
                i, f, g, o, c_prev, tanh_c, _ = saved[t]
                dh = output_grads[t] + dh
                dc = dc + dh * o * (1 - tanh_c * tanh_c)
                d_a[t] = ops.concatenate([dc * g * i * (1 - i), dc * c_prev * f * (1 - f), dc * i * (1 - g * g),
                                          dh * tanh_c * o * (1 - o)], axis=-1)
                dc = dc * f
                dh = ops.matmul(d_a[t], kernel_transposed)
            d_z = ops.stack(d_a, axis=0)
            previous_h = ops.reshape(ops.stack([step[6] for step in saved], axis=0), (-1, units))
            d_kernel = ops.matmul(ops.transpose(previous_h), ops.reshape(d_z, (-1, 4 * units)))
            return d_z, d_kernel, dh, dc

        return (outputs, h, c), backward

    return run(z, kernel, h0, c0)
