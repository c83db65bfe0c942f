"""The n-gram language model: interpolated probability tables (Kneser-Ney, Witten-Bell, add-k) as a Keras model.

    p_0(w) = 1/V;   p_k(w | h) = alpha_k(h, w) + gamma_k(h) p_{k-1}(w | h')  if h is a context of level k,
                                 p_{k-1}(w | h')                              otherwise;   p = p_order

h is the last k - 1 tokens, h' the last k - 2. The tables come from seqtasks.ngram_counts (which says
how each smoothing fills them) and are this model's weights, non-trainable: per level, the sorted int64
keys of its n-grams with alpha and of its contexts with gamma, in one table (`merged_table`).
A lookup is a binary search (ops.searchsorted) of those keys, so the model is saved, loaded (safe
mode) and decoded like the neural ones:

    call(token_ids (batch, time)) -> log p of the next token (batch, time, vocab), float32
    prefill(token_ids (batch, time), max_length) -> (log p (batch, vocab) after the last token, state)
    step(token_ids (batch,), state, index)        -> (log p (batch, vocab), state)
    next_log_probs(contexts (n, width), candidates (n, c)) -> log p(candidates | contexts) (n, c)

state = (the last `width` = max(order - 1, 1) tokens (batch, width) int32,), -1 where the text has no
token yet; log-probabilities are logits whose softmax is p itself, so every decoding option applies.
"""
from __future__ import annotations

import keras
import numpy as np
from keras import ops

def _lookup(sorted_keys, values, queries):
    """values[i] where sorted_keys[i] == query, else -1 (queries of any shape)."""
    flat = ops.reshape(queries, (-1,))
    at = ops.minimum(ops.searchsorted(sorted_keys, flat), ops.shape(sorted_keys)[0] - 1)
    found = ops.take(sorted_keys, at) == flat
    return ops.reshape(ops.where(found, ops.take(values, at), -1.0), ops.shape(queries))


def merged_table(level, vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """One sorted table of a level: n-gram hw at key(h) (V + 1) + w with its alpha, context h at
    key(h) (V + 1) + V with its gamma, so that one binary search finds both (one lookup per level)."""
    keys = np.concatenate([level.ngram_keys // vocab_size * (vocab_size + 1) + level.ngram_keys % vocab_size,
                           level.context_keys * (vocab_size + 1) + vocab_size])
    values = np.concatenate([level.alpha, level.gamma])
    order = np.argsort(keys, kind="stable")
    return keys[order], values[order].astype(np.float32)


@keras.saving.register_keras_serializable(package="seqtasks")
class NgramLanguageModel(keras.Model):
    """p(x_t | x_{t-order+1..t-1}) from count tables (see the module docstring).

    Args: vocab_size; order; sizes: the table length of each level 1..order (so that a saved model is
    rebuilt with its weights' shapes); smoothing and discounts: recorded for `seqtasks info` (the
    tables already hold their effect).
    """

    # the decoding loop is binary searches: XLA takes seconds to compile it and barely speeds it up
    xla_by_default = False
    aligns_prompts = True  # prefill takes offset= (seqtasks.decoding): prompts of any lengths share a loop

    def __init__(self, vocab_size: int, order: int, sizes: list[int], smoothing: str = "kneser-ney",
                 discounts: list[list[float]] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.order, self.smoothing = vocab_size, order, smoothing
        self.sizes = [int(size) for size in sizes]
        self.discounts = discounts or []
        self.width = max(order - 1, 1)
        self.tables = [(self.add_weight(shape=(size,), dtype="int64", initializer="zeros", trainable=False,
                                        name=f"keys_{k}"),
                        self.add_weight(shape=(size,), dtype="float32", initializer="zeros", trainable=False,
                                        name=f"values_{k}"))
                       for k, size in enumerate(self.sizes, start=1)]
        self.built = True  # the weights' shapes come from `sizes`, not from an input

    @classmethod
    def from_levels(cls, levels, vocab_size: int, smoothing: str, **kwargs) -> "NgramLanguageModel":
        """The model of seqtasks.ngram_counts Levels (one per level 1..order)."""
        tables = [merged_table(level, vocab_size) for level in levels]
        model = cls(vocab_size, len(levels), [len(keys) for keys, _ in tables], smoothing,
                    [list(level.discounts) for level in levels], **kwargs)
        for (keys, values), (key_weight, value_weight) in zip(tables, model.tables):
            key_weight.assign(keys)
            value_weight.assign(values)
        return model

    def build(self, input_shape=None):
        pass

    def next_log_probs(self, contexts, candidates):
        """log p(candidates[i, j] | contexts[i]): contexts (n, width) int, most recent token last, -1 for
        none; candidates (n, c) int. The recursion runs from the uniform p_0 up to p_order."""
        vocab = self.vocab_size
        contexts, candidates = ops.cast(contexts, "int64"), ops.cast(candidates, "int64")
        # the candidates, then the context's own slot (V: its gamma)
        slots = ops.concatenate([candidates, ops.full((ops.shape(candidates)[0], 1), vocab, dtype="int64")], axis=1)
        p = ops.full(ops.shape(candidates), 1.0 / vocab, dtype="float32")
        for k, (keys, values) in enumerate(self.tables, start=1):
            if self.sizes[k - 1] == 0:
                continue  # an empty level (add-k's lower ones) leaves p as it is
            key = ops.zeros(ops.shape(contexts)[:1], "int64")
            known = ops.ones(ops.shape(contexts)[:1], "bool")
            for j in range(self.width - (k - 1), self.width):  # the last k - 1 tokens, oldest first
                token = contexts[:, j]
                key, known = key * vocab + ops.maximum(token, 0), known & (token >= 0)
            found = _lookup(keys, values, key[:, None] * (vocab + 1) + slots)
            alpha, gamma = ops.maximum(found[:, :-1], 0.0), found[:, -1:]
            p = ops.where(known[:, None] & (gamma >= 0), alpha + gamma * p, p)
        return ops.log(p)

    def _all_tokens(self, rows):
        return ops.broadcast_to(ops.arange(self.vocab_size, dtype="int64")[None], (rows, self.vocab_size))

    def call(self, token_ids, training=None):
        batch, time = ops.shape(token_ids)[0], ops.shape(token_ids)[1]
        padded = ops.pad(ops.cast(token_ids, "int64"), ((0, 0), (self.width, 0)), constant_values=-1)
        # position t's context: the `width` tokens ending at token_ids[:, t]
        contexts = ops.stack([padded[:, 1 + j:1 + j + time] for j in range(self.width)], axis=-1)
        flat = ops.reshape(contexts, (-1, self.width))
        log_p = self.next_log_probs(flat, self._all_tokens(ops.shape(flat)[0]))
        return ops.reshape(log_p, (batch, time, self.vocab_size))

    def capacity(self, max_length: int) -> int:
        return max_length  # the state is the last few tokens: no length limit

    def prefill(self, token_ids, max_length=None, offset=0):  # offset: the state holds no positions
        padded = ops.pad(ops.cast(token_ids, "int32"), ((0, 0), (self.width, 0)), constant_values=-1)
        recent = padded[:, -self.width:]
        return self.next_log_probs(recent, self._all_tokens(ops.shape(recent)[0])), (recent,)

    def step(self, token_ids, state, index=None):
        recent = ops.concatenate([state[0][:, 1:], ops.cast(token_ids, "int32")[:, None]], axis=1)
        return self.next_log_probs(recent, self._all_tokens(ops.shape(recent)[0])), (recent,)

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "order": self.order, "sizes": self.sizes,
                "smoothing": self.smoothing, "discounts": self.discounts}
