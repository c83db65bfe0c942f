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
the decoder's `capacity`: a longer request keeps the last capacity // 2 prompt tokens and stops at a
full state, where the engine would slide its window and go on.
"""
from __future__ import annotations

import tensorflow as tf

from seqtasks.decoding.base import STATE_ROUNDING
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
    """New token ids (n,) int32 of one prompt (1, time), up to the first stop id (not included)."""
    length = tf.shape(prompt)[1]
    if capacity is not None:
        prompt = tf.cond(length > capacity, lambda: prompt[:, -(capacity // 2):], lambda: prompt)
        length = tf.shape(prompt)[1]
    new_tokens = tf.maximum(tf.cast(max_new_tokens, tf.int32), 0)
    state_size = (length + new_tokens + rounding - 1) // rounding * rounding
    if capacity is not None:
        state_size = tf.minimum(state_size, capacity)
        new_tokens = tf.minimum(new_tokens, state_size - length + 1)  # the last token of a full state is not fed
    if context is None:
        logits, state = decoder.prefill(prompt, state_size)
    else:
        logits, state = decoder.prefill(prompt, state_size, tuple(context))
    output = tf.TensorArray(tf.int32, size=0, dynamic_size=True, element_shape=())

    def condition(i, logits, state, output, finished):
        return (i < new_tokens) & ~finished

    def body(i, logits, state, output, finished):
        token = choose_tensor(logits, i, temperature, top_k, top_p, seed)
        finished = is_stop(token, stop_ids)[0]
        output = tf.cond(finished, lambda: output, lambda: output.write(i, token[0]))
        logits, state = decoder.step(token, tuple(state), tf.minimum(length + i, state_size - 1))
        return i + 1, tf.cast(logits, tf.float32), tuple(state), output, finished

    _, _, _, output, _ = tf.while_loop(condition, body, (tf.constant(0), tf.cast(logits, tf.float32), tuple(state),
                                                         output, tf.constant(False)))
    return output.stack()
