"""Linear-chain conditional random field over per-token tag scores (Lafferty et al. 2001).

For emissions E (batch, time, K) from the encoder and a tag path y = y_1..y_n (n real tokens),

    score(y) = s_{y_1} + Σ_{t=1..n} E_t[y_t] + Σ_{t=2..n} A[y_{t-1}, y_t] + e_{y_n}
    p(y | x) = exp(score(y)) / Z,   log Z = logsumexp over every path of score

with A (K, K) the transition scores, s and e (K,) the start and end scores. log Z is the forward
algorithm,  α_1 = s + E_1,  α_t[j] = logsumexp_i(α_{t-1}[i] + A[i, j]) + E_t[j],  log Z = logsumexp(α_n + e);
Viterbi decoding is the same recursion with max in place of logsumexp, plus back-pointers.

Mask convention: `mask` (batch, time) is True for real tokens, which come first (right padding). At
padded steps α (or δ) is carried unchanged and the back-pointer is the identity, so padding changes
neither the likelihood nor the decoded path. Computed in float32 whatever the layer's policy.

Both recursions scan over every step, the first included (it adds s instead of the transitions), so
a batch whose sentences all have one token is a scan of length 1, never an empty one.
"""
from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="seqtasks")
class CRF(keras.layers.Layer):
    """The CRF's parameters (transitions A, start s, end e) and its two algorithms.

    Methods:
        negative_log_likelihood(emissions, tags, mask) -> (batch,)  log Z - score(tags)
        decode(emissions, mask) -> (batch, time) int32, the Viterbi path argmax_y score(y)
    `call(emissions, mask)` is decode.
    """

    def __init__(self, num_tags: int, **kwargs):
        super().__init__(**kwargs)
        self.num_tags = num_tags

    def build(self, input_shape=None):
        init = keras.initializers.RandomUniform(-0.1, 0.1)
        k = self.num_tags
        self.transitions = self.add_weight(name="transitions", shape=(k, k), initializer=init)
        self.start_scores = self.add_weight(name="start_scores", shape=(k,), initializer=init)
        self.end_scores = self.add_weight(name="end_scores", shape=(k,), initializer=init)

    def _parameters(self):
        return (ops.cast(self.transitions, "float32"), ops.cast(self.start_scores, "float32"),
                ops.cast(self.end_scores, "float32"))

    @staticmethod
    def _time_major(emissions, mask):
        """(time, batch, K + 2): the emissions, then the mask, then 1 at the first step. One tensor,
        because keras' TensorFlow scan cannot check the length of several sequences of unknown length."""
        emissions = ops.cast(emissions, "float32")
        first = ops.cast(ops.arange(ops.shape(emissions)[1]) == 0, "float32")
        first = ops.broadcast_to(first[None, :, None], ops.shape(emissions[..., :1]))
        steps = ops.concatenate([emissions, ops.cast(mask, "float32")[..., None], first], axis=-1)
        return ops.transpose(steps, (1, 0, 2))

    @staticmethod
    def _unpack(step):
        # emission (batch, K), real (batch, 1), first step (batch, 1)
        return step[:, :-2], step[:, -2:-1] > 0.5, step[:, -1:] > 0.5

    def path_score(self, emissions, tags, mask):
        """score(tags) for each sequence: (batch,)."""
        transitions, start, end = self._parameters()
        emissions = ops.cast(emissions, "float32")
        tags = ops.cast(tags, "int32")
        real = ops.cast(mask, "float32")
        emitted = ops.take_along_axis(emissions, tags[..., None], axis=-1)[..., 0]
        score = ops.sum(emitted * real, axis=1)
        pair = ops.take(ops.reshape(transitions, (-1,)), tags[:, :-1] * self.num_tags + tags[:, 1:])
        score = score + ops.sum(pair * real[:, 1:], axis=1)
        last = ops.maximum(ops.cast(ops.sum(real, axis=1), "int32") - 1, 0)
        last_tags = ops.take_along_axis(tags, last[:, None], axis=1)[:, 0]
        return score + ops.take(start, tags[:, 0]) + ops.take(end, last_tags)

    def log_partition(self, emissions, mask):
        """log Z by the forward algorithm: (batch,)."""
        transitions, start, end = self._parameters()
        steps = self._time_major(emissions, mask)

        def step(alpha, inputs):
            emission, real, first = self._unpack(inputs)
            # α_1 = s + E_1;  α_t[j] = logsumexp_i(α_{t-1}[i] + A[i, j]) + E_t[j]
            carried = ops.logsumexp(alpha[:, :, None] + transitions[None], axis=1)
            new = ops.where(first, alpha, carried) + emission
            alpha = ops.where(real, new, alpha)
            return alpha, alpha

        initial = ops.broadcast_to(start[None], ops.shape(steps[0, :, :-2]))  # the scan starts from s
        alpha, _ = ops.scan(step, initial, steps)
        return ops.logsumexp(alpha + end[None], axis=-1)

    def negative_log_likelihood(self, emissions, tags, mask):
        """-log p(tags | x) = log Z - score(tags): (batch,)."""
        return self.log_partition(emissions, mask) - self.path_score(emissions, tags, mask)

    def decode(self, emissions, mask):
        """The Viterbi path: δ_t[j] = max_i(δ_{t-1}[i] + A[i, j]) + E_t[j], then follow back-pointers."""
        transitions, start, end = self._parameters()
        steps = self._time_major(emissions, mask)
        identity = ops.arange(self.num_tags, dtype="int32")[None]

        def forward(carry, inputs):
            delta, _ = carry
            emission, real, first = self._unpack(inputs)
            candidates = delta[:, :, None] + transitions[None]          # (batch, from, to)
            keep = ops.broadcast_to(identity, ops.shape(delta))
            best_previous = ops.where(first, keep, ops.cast(ops.argmax(candidates, axis=1), "int32"))
            new = ops.where(first, delta, ops.max(candidates, axis=1)) + emission   # δ_1 = s + E_1
            pointers = ops.where(real, best_previous, keep)
            carry = (ops.where(real, new, delta), pointers)
            return carry, carry  # keras' scan wants outputs shaped like the carry

        initial_delta = ops.broadcast_to(start[None], ops.shape(steps[0, :, :-2]))
        initial = (initial_delta, ops.broadcast_to(identity, ops.shape(initial_delta)))
        (delta, _), (_, pointers) = ops.scan(forward, initial, steps)
        last = ops.cast(ops.argmax(delta + end[None], axis=-1), "int32")

        def backward(tag, pointer):
            previous = ops.take_along_axis(pointer, tag[:, None], axis=1)[:, 0]
            return previous, previous

        # earlier[t] = pointer_t[y_t] = y_{t-1} for t >= 1; the first step's pointer is the identity
        _, earlier = ops.scan(backward, last, pointers, reverse=True)
        path = ops.concatenate([earlier[1:], last[None]], axis=0)   # (time, batch)
        return ops.transpose(path, (1, 0))

    def call(self, emissions, mask):
        return self.decode(emissions, mask)

    def get_config(self):
        return {**super().get_config(), "num_tags": self.num_tags}
