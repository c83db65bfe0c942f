"""Greedy and sampled decoding: the Generator's sampling loop, its sliding window, and streaming."""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import tensorflow as tf

from seqtasks.decoding.base import _GeneratorBase, _Plan, _resolve_seed, _static, _write
from seqtasks.decoding.config import GenerationConfig, GenerationError
from seqtasks.decoding.filters import _constrain, _is_stop, top_k_filter, top_p_filter
from seqtasks.decoding.inputs import Context, _context_specs, _context_tensors, _prefill, _prompt_array
from seqtasks.decoding.stops import _strip


def _choose(logits, history, length, generated, seed, config: GenerationConfig):
    """Pick one token per row; returns (tokens (batch,) int32, log p of them (batch,) float32)."""
    x = _constrain(logits, history, length, generated, config)
    log_probs = tf.nn.log_softmax(x, axis=-1)
    if config.greedy:
        tokens = tf.argmax(x, axis=-1, output_type=tf.int32)
    else:
        x = x / config.temperature
        x = top_k_filter(x, config.top_k)
        x = top_p_filter(x, config.top_p)
        # Gumbel-max: argmax(x + g), g = -log(-log u), u ~ U(0, 1), is a draw from softmax(x); unlike
        # TF's categorical sampler it has an XLA kernel, so both compiled loops draw the same tokens
        step_seed = tf.stack([seed, tf.cast(generated, tf.int64)])
        uniform = tf.random.stateless_uniform(tf.shape(x), seed=step_seed, minval=1e-20, maxval=1.0, alg="philox")
        tokens = tf.argmax(x - tf.math.log(-tf.math.log(uniform)), axis=-1, output_type=tf.int32)
    return tokens, tf.gather(log_probs, tokens, batch_dims=1)


def _replicate(sequences, scores, config: GenerationConfig):
    """Greedy rows were decoded once per prompt: copy them num_return_sequences times."""
    n = config.num_return_sequences
    if not config.greedy or n == 1:
        return sequences, scores
    return ([[list(s[0]) for _ in range(n)] for s in sequences], [[sc[0]] * n for sc in scores])


class _Sampling(_GeneratorBase):
    """The Generator's greedy and sampling methods: stream() and sample()."""

    def stream(self, prompt_ids: Sequence[int], config: GenerationConfig | None = None,
               context: Context | None = None) -> Iterator[int]:
        """Yield the new token ids of one greedy or sampled continuation as they are produced.

        `context`, when given, holds one row (axis 0 of size 1) for the one prompt.
        """
        config = config or GenerationConfig()
        if config.beam:
            raise GenerationError("stream() cannot beam search", f"beam_width={config.beam_width}",
                                  "use generate() for beam search, or beam_width=1")
        if config.num_return_sequences != 1:
            raise GenerationError("stream() yields one sequence",
                                  f"num_return_sequences={config.num_return_sequences}", "use generate()")
        prompt = _prompt_array(prompt_ids, 0)[None]
        context = _context_tensors(context, 1)
        self._prepare(prompt)
        plan = self._plan(prompt.shape[1], config.max_new_tokens)
        return self._stream(prompt, config, plan, context)  # errors above are raised now, not at the first next()

    def _stream(self, prompt: np.ndarray, config: GenerationConfig, plan: "_Plan", context: Context | None
                ) -> Iterator[int]:
        new_tokens = config.max_new_tokens
        if new_tokens == 0:
            return
        static = _static(config)
        specs = _context_specs(context)
        prefill = self._compiled(("prefill", plan.state_size, specs),
                                 lambda: self._prefill_function(plan.state_size, specs))
        choose = self._compiled(("choose", static), lambda: self._choose_function(static))
        step = self._compiled(("step",), self._step_function)
        seed = tf.constant(_resolve_seed(config), tf.int64)
        history = tf.constant(np.concatenate([prompt, np.zeros((1, new_tokens), np.int32)], axis=1))
        length, generated = prompt.shape[1], 0
        window = prompt[:, -plan.window:] if plan.sliding and prompt.shape[1] > plan.state_size else prompt
        while True:
            logits, state = prefill(tf.constant(window), *(context or ()))
            position = window.shape[1]  # where the next fed token goes
            while True:
                tokens, history = choose(logits, history, tf.constant(length), tf.constant(generated), seed)
                token = int(tokens[0])
                length, generated = length + 1, generated + 1
                if token in config.stop_ids:
                    return
                yield token
                if generated >= new_tokens:
                    return
                if position >= plan.state_size:
                    break  # the state is full: slide the window
                logits, state = step(tokens, state, tf.constant(position))
                position += 1
            window = history.numpy()[:, length - plan.window:length]

    # -- greedy and sampling ------------------------------------------------------------------------

    def sample(self, prompts: np.ndarray, config: GenerationConfig, seed: int, context: Context | None = None
               ) -> tuple[list[list[list[int]]], list[list[float]]]:
        """Greedy or sampled continuations of equal-length prompts (batch, time) with their context rows."""
        count = 1 if config.greedy else config.num_return_sequences  # greedy samples are all the same
        batch = np.repeat(prompts, count, axis=0)
        context = _context_tensors(context, len(prompts))
        if context is not None:
            context = tuple(tf.repeat(c, count, axis=0) for c in context)  # aligned with the repeated prompts
        rows, prompt_length = batch.shape
        new_tokens = config.max_new_tokens
        if new_tokens == 0:
            return _replicate([[[]] * count] * len(prompts), [[0.0] * count] * len(prompts), config)
        self._prepare(batch)
        plan = self._plan(prompt_length, new_tokens)
        static = _static(config)
        specs = _context_specs(context)
        segment = self._compiled(("segment", static, plan.state_size, specs),
                                 lambda: self._segment_function(static, plan.state_size, specs))
        history = tf.constant(np.concatenate([batch, np.zeros((rows, new_tokens), np.int32)], axis=1))
        length, generated = prompt_length, 0
        finished = tf.zeros((rows,), tf.bool)
        scores = tf.zeros((rows,), tf.float32)
        seed_tensor = tf.constant(seed, tf.int64)
        window = batch[:, -plan.window:] if plan.sliding and prompt_length > plan.state_size else batch
        while True:
            steps = min(plan.state_size - window.shape[1] + 1, new_tokens - generated)
            history, length_t, finished, scores = segment(
                tf.constant(window), history, tf.constant(length), tf.constant(generated), finished, scores,
                seed_tensor, tf.constant(steps), *(context or ()))
            length = int(length_t)
            generated = length - prompt_length
            if generated >= new_tokens or bool(tf.reduce_all(finished)):
                break
            window = history.numpy()[:, length - plan.window:length]
        tokens = history.numpy()[:, prompt_length:length]
        outputs = [_strip(row, config.stop_ids) for row in tokens]
        row_scores = [float(s) for s in scores.numpy()]
        sequences = [outputs[i * count:(i + 1) * count] for i in range(len(prompts))]
        grouped = [row_scores[i * count:(i + 1) * count] for i in range(len(prompts))]
        return _replicate(sequences, grouped, config)

    def _segment_function(self, config: GenerationConfig, state_size: int, specs: tuple | None):
        decoder = self.decoder

        def segment(window, history, length, generated, finished, scores, seed, steps, *context):
            """Prefill on `window`, then produce up to `steps` tokens; all rows advance together."""
            start = tf.shape(window)[1]
            logits, state = _prefill(decoder, window, state_size, context, specs)

            def advance(logits, history, length, generated, finished, scores):
                tokens, log_p = _choose(logits, history, length, generated, seed, config)
                history = _write(history, length, tokens)
                scores = scores + tf.where(finished, 0.0, log_p)
                finished = finished | _is_stop(tokens, config.stop_ids)
                return tokens, history, length + 1, generated + 1, finished, scores

            tokens, history, length, generated, finished, scores = advance(
                logits, history, length, generated, finished, scores)

            def condition(i, tokens, state, history, length, generated, finished, scores):
                return (i < steps) & ~tf.reduce_all(finished)

            def body(i, tokens, state, history, length, generated, finished, scores):
                logits, state = decoder.step(tokens, tuple(state), start + i - 1)
                tokens, history, length, generated, finished, scores = advance(
                    logits, history, length, generated, finished, scores)
                return i + 1, tokens, tuple(state), history, length, generated, finished, scores

            loop = tf.while_loop(
                condition, body, (tf.constant(1), tokens, tuple(state), history, length, generated, finished, scores))
            _, _, _, history, length, _, finished, scores = loop
            return history, length, finished, scores

        ids, scalar = tf.TensorSpec((None, None), tf.int32), tf.TensorSpec((), tf.int32)
        signature = (ids, ids, scalar, scalar, tf.TensorSpec((None,), tf.bool), tf.TensorSpec((None,), tf.float32),
                     tf.TensorSpec((), tf.int64), scalar, *(specs or ()))
        # one trace for any batch and lengths; XLA, when asked for, compiles once per concrete shape
        return tf.function(segment, input_signature=signature, jit_compile=config.xla)

    def _prefill_function(self, state_size: int, specs: tuple | None):
        decoder = self.decoder
        signature = (tf.TensorSpec((None, None), tf.int32), *(specs or ()))
        return tf.function(lambda window, *context: _prefill(decoder, window, state_size, context, specs),
                           input_signature=signature)

    def _choose_function(self, config: GenerationConfig):
        def choose(logits, history, length, generated, seed):
            tokens, _ = _choose(logits, history, length, generated, seed, config)
            return tokens, _write(history, length, tokens)

        return tf.function(choose, reduce_retracing=True)

    def _step_function(self):
        decoder = self.decoder
        return tf.function(lambda tokens, state, index: decoder.step(tokens, state, index))
