"""The sampling loop inside an exported graph, where the settings are tensors (inputs of a signature).

    ids = sample_ids(decoder, prompt (1, time), max_new_tokens, temperature, top_k, top_p, seed, ...)

The engine's greedy and sampling loop (Sampling._run_function) specializes its graph on the settings
(a Python top-k, a Python temperature); a served model takes them per request, so here they are
scalars in the graph: `top_k_filter_tensor`, `top_p_filter_tensor` keep the same tokens as the
engine's filters, and `draw` is the engine's own Gumbel draw keyed by (seed, tokens generated so far).
One prompt is decoded at a time, as `seqtasks sample` decodes one, so a seeded sample is the text
`sample --seed S --no-xla` prints (XLA's random numbers are other ones). Greedy means temperature 0
or top_k 1, as in GenerationConfig.

The state holds prompt + max_new_tokens positions, rounded up as the engine rounds them, and at most
the decoder's `capacity`; past it the window slides as the engine's does.
"""
from __future__ import annotations

import tensorflow as tf

from seqtasks.decoding.base import STATE_ROUNDING, write_tokens
from seqtasks.decoding.filters import is_stop, top_k_filter_tensor, top_p_filter_tensor
from seqtasks.decoding.sampling import draw

__all__ = ["sample_ids", "choose_tensor"]


def choose_tensor(logits, generated, temperature, top_k, top_p, seed):
    """The engine's choice of the next token (sampling._choose without the logit constraints), with
    the settings as scalar tensors: (batch, vocab) logits -> (batch,) int32 tokens."""
    x = tf.cast(logits, tf.float32)
    greedy = (temperature <= 0.0) | tf.equal(top_k, 1)
    argmax = tf.argmax(x, axis=-1, output_type=tf.int32)
    scaled = x / tf.where(greedy, 1.0, temperature)
    sampled = draw(top_p_filter_tensor(top_k_filter_tensor(scaled, top_k), top_p), seed, generated)
    return tf.where(greedy, argmax, sampled)


def sample_ids(decoder, prompt, max_new_tokens, temperature, top_k, top_p, seed, stop_ids=(), context=None,
               capacity: int | None = None, rounding: int = STATE_ROUNDING):
    """New token ids (n,) int32 of one prompt (1, time), up to the first stop id (not included).

    The engine's plan (GeneratorBase._plan): a state of prompt + max_new_tokens positions rounded up,
    or, past the decoder's `capacity`, a full state that is prefilled again with the last capacity // 2
    tokens each time it fills (a sliding window), the same tokens fed at the same positions."""
    length = tf.shape(prompt)[1]
    new_tokens = tf.maximum(tf.cast(max_new_tokens, tf.int32), 0)
    needed = length + new_tokens
    state_size = (needed + rounding - 1) // rounding * rounding
    window_size = state_size
    if capacity is not None:
        sliding = needed > tf.minimum(state_size, capacity)
        state_size = tf.where(sliding, capacity, tf.minimum(state_size, capacity))
        window_size = tf.where(sliding, capacity // 2, capacity)
    history = tf.concat([prompt, tf.zeros((1, new_tokens), tf.int32)], axis=1)
    first = tf.cond(length > state_size, lambda: prompt[:, -window_size:], lambda: prompt)

    def prefill(window):
        if context is None:
            return decoder.prefill(window, state_size)
        return decoder.prefill(window, state_size, tuple(context))

    def fill(window, history, generated):
        """Prefill the window, then choose tokens until the state is full, a stop id, or max_new_tokens."""
        logits, state = prefill(window)
        position = tf.shape(window)[1]
        steps = tf.minimum(state_size - position + 1, new_tokens - generated)  # the last one is chosen, not fed

        def condition(i, logits, state, history, finished):
            return (i < steps) & ~finished

        def body(i, logits, state, history, finished):
            token = choose_tensor(logits, generated + i, temperature, top_k, top_p, seed)
            finished = is_stop(token, stop_ids)[0]
            history = write_tokens(history, length + generated + i, token)
            logits, state = decoder.step(token, tuple(state), tf.minimum(position + i, state_size - 1))
            return i + 1, tf.cast(logits, tf.float32), tuple(state), history, finished

        i, _, _, history, finished = tf.while_loop(
            condition, body, (tf.constant(0), tf.cast(logits, tf.float32), tuple(state), history, tf.constant(False)))
        return history, generated + i, finished

    def more(window, history, generated, finished):
        return (generated < new_tokens) & ~finished

    def again(window, history, generated, finished):
        history, generated, finished = fill(window, history, generated)
        end = length + generated
        return history[:, tf.maximum(end - window_size, 0):end], history, generated, finished

    _, history, generated, finished = tf.while_loop(
        more, again, (first, history, tf.constant(0), tf.constant(False)),
        shape_invariants=(tf.TensorShape([1, None]), history.shape, tf.TensorShape([]), tf.TensorShape([])))
    tokens = history[0, length:length + generated]
    return tokens[:tf.size(tokens) - tf.cast(finished, tf.int32)]  # the stop id is not part of the output
