"""Logit transforms and masks: top-k, top-p, repetition penalty, no-repeat n-grams, stop ids.

Step 1 of choosing the next token (the constraints on the raw logits, `constrain_logits`) and the filters
of steps 3-4 (see the package docstring for the order).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from seqtasks.decoding.config import GenerationConfig

__all__ = ["apply_repetition_penalty", "no_repeat_ngram_mask", "seen_token_mask", "top_k_filter", "top_p_filter",
           "top_k_filter_tensor", "top_p_filter_tensor"]

_TOP_P_TOLERANCE = 1e-6  # float32 cumulative sums: a mass within this of p counts as reaching p


# ---------------------------------------------------------------------------------------------------
# Logit transforms (pure functions on (batch, vocab) float32 tensors; unit-tested on their own)
# ---------------------------------------------------------------------------------------------------

def top_k_filter(logits, k: int):
    """Keep exactly the k largest logits of each row (ties: the lower token id wins); the rest -> -inf."""
    logits = tf.convert_to_tensor(logits, tf.float32)
    vocab = logits.shape[-1]
    if k <= 0 or k >= vocab:
        return logits
    _, indices = tf.math.top_k(logits, k)  # top_k puts the lower index first among equal values
    return _scatter_rows(tf.fill(tf.shape(logits), -np.inf), indices, tf.gather(logits, indices, batch_dims=1))


def top_p_filter(logits, p: float):
    """Nucleus filter: keep the smallest set of most probable tokens whose probability mass reaches p.

    Tokens are ranked by logit (ties: the lower token id first) and kept while the mass of the tokens
    ranked before them is below p; the most probable token is always kept. p >= 1 keeps every token.
    """
    logits = tf.convert_to_tensor(logits, tf.float32)
    if p >= 1.0:
        return logits
    vocab = logits.shape[-1]
    sorted_logits, indices = tf.math.top_k(logits, vocab)
    mass_before = tf.cumsum(tf.nn.softmax(sorted_logits, axis=-1), axis=-1, exclusive=True)
    keep = mass_before < p - _TOP_P_TOLERANCE
    keep = tf.concat([tf.ones_like(keep[:, :1]), keep[:, 1:]], axis=-1)
    filtered = tf.where(keep, sorted_logits, -np.inf)
    return _scatter_rows(tf.zeros_like(logits), indices, filtered)


def top_k_filter_tensor(logits, k):
    """top_k_filter for a k that is a scalar tensor (an input of an exported graph): the same tokens
    kept, found by sorting each row whole (k <= 0 or k >= vocab keeps every token)."""
    logits = tf.convert_to_tensor(logits, tf.float32)
    vocab = logits.shape[-1]
    k = tf.cast(k, tf.int32)
    k = tf.where((k <= 0) | (k >= vocab), vocab, k)
    sorted_logits, indices = tf.math.top_k(logits, vocab)  # ties: the lower index first, as top_k(logits, k)
    kept = tf.where(tf.range(vocab)[None] < k, sorted_logits, -np.inf)
    return _scatter_rows(tf.fill(tf.shape(logits), -np.inf), indices, kept)


def top_p_filter_tensor(logits, p):
    """top_p_filter for a p that is a scalar tensor (an input of an exported graph); p >= 1 keeps all."""
    logits = tf.convert_to_tensor(logits, tf.float32)
    p = tf.cast(p, tf.float32)
    vocab = logits.shape[-1]
    sorted_logits, indices = tf.math.top_k(logits, vocab)
    mass_before = tf.cumsum(tf.nn.softmax(sorted_logits, axis=-1), axis=-1, exclusive=True)
    keep = mass_before < p - _TOP_P_TOLERANCE
    keep = tf.concat([tf.ones_like(keep[:, :1]), keep[:, 1:]], axis=-1)
    filtered = _scatter_rows(tf.zeros_like(logits), indices, tf.where(keep, sorted_logits, -np.inf))
    return tf.where(p >= 1.0, logits, filtered)


def seen_token_mask(history, length, vocab: int, start=None):
    """(batch, vocab) bool: True for tokens among the first `length` entries of each history row.

    start: None, or (batch,) int: row b's entries before start[b] are padding (right-aligned prompts)."""
    history = tf.convert_to_tensor(history, tf.int32)
    present = tf.cast(_in_row(history, start, length), tf.int32)
    counts = _scatter_rows(tf.zeros((tf.shape(history)[0], vocab), tf.int32), history, present, max_merge=True)
    return counts > 0


def apply_repetition_penalty(logits, seen, penalty: float):
    """CTRL repetition penalty: a seen token's logit is divided by `penalty` if > 0, multiplied if < 0."""
    logits = tf.convert_to_tensor(logits, tf.float32)
    if penalty == 1.0:
        return logits
    penalized = tf.where(logits > 0, logits / penalty, logits * penalty)
    return tf.where(seen, penalized, logits)


def no_repeat_ngram_mask(history, length, n: int, vocab: int, start=None):
    """(batch, vocab) bool: True for tokens that would repeat an n-gram of history[:, :length].

    The last n - 1 tokens are the prefix; every earlier occurrence of that prefix bans the token that
    followed it (n = 1 bans every token already present). start: as in seen_token_mask (n-grams
    begin at start[b] or later).
    """
    history = tf.convert_to_tensor(history, tf.int32)
    length = tf.convert_to_tensor(length, tf.int32)
    prefix = n - 1
    match = _in_row(history, start, length - prefix)  # complete n-grams only
    for k in range(prefix):
        current = tf.gather(history, tf.maximum(length - prefix + k, 0)[None], axis=1)  # (batch, 1)
        shifted = tf.pad(history[:, k:], [[0, 0], [0, k]], constant_values=-1)
        match &= shifted == current
    following = tf.pad(history[:, prefix:], [[0, 0], [0, prefix]])
    banned = _scatter_rows(tf.zeros((tf.shape(history)[0], vocab), tf.int32), following,
                           tf.cast(match, tf.int32), max_merge=True)
    return banned > 0


def _in_row(history, start, end):
    """(batch, width) bool: start[b] <= column < end (start None: 0)."""
    columns = tf.range(tf.shape(history)[1])[None]
    inside = columns < end
    if start is not None:
        inside &= columns >= tf.cast(start, tf.int32)[:, None]
    return tf.broadcast_to(inside, tf.shape(history))


def _scatter_rows(base, columns, values, max_merge: bool = False):
    """base[b, columns[b, j]] = values[b, j] (or the max with what is there, when max_merge)."""
    rows = tf.broadcast_to(tf.range(tf.shape(columns)[0])[:, None], tf.shape(columns))
    indices = tf.stack([rows, columns], axis=-1)
    if max_merge:
        return tf.tensor_scatter_nd_max(base, indices, values)
    return tf.tensor_scatter_nd_update(base, indices, values)


def constrain_logits(logits, history, length, generated, config: GenerationConfig, start=None):
    """Step 1: repetition penalty, no-repeat n-grams and min_new_tokens, on the raw logits. history
    (batch, width) holds row b's prompt and output at columns start[b] .. length - 1 (start None: 0)."""
    logits = tf.cast(logits, tf.float32)
    vocab = logits.shape[-1]
    x = logits
    if config.repetition_penalty != 1.0:
        x = apply_repetition_penalty(x, seen_token_mask(history, length, vocab, start), config.repetition_penalty)
    if config.no_repeat_ngram_size > 0:
        x = tf.where(no_repeat_ngram_mask(history, length, config.no_repeat_ngram_size, vocab, start), -np.inf, x)
    if config.min_new_tokens > 0 and config.stop_ids:
        x = tf.where(_stop_mask(vocab, config.stop_ids)[None] & (generated < config.min_new_tokens), -np.inf, x)
    if x is logits:
        return logits  # the common case, no constraint: no extra ops in the compiled step
    # never leave a row without a candidate: fall back to the model's own logits
    dead = tf.reduce_all(tf.math.is_inf(x) & (x < 0), axis=-1, keepdims=True)
    return tf.where(dead, logits, x)


def _stop_mask(vocab: int, stop_ids):
    ids = [i for i in stop_ids if i < vocab]
    if not ids:
        return tf.zeros((vocab,), tf.bool)
    return tf.reduce_any(tf.one_hot(ids, vocab, on_value=True, off_value=False, dtype=tf.bool), axis=0)


def is_stop(tokens, stop_ids):
    result = tf.zeros_like(tokens, tf.bool)
    for i in stop_ids:
        result |= tf.equal(tokens, i)
    return result
