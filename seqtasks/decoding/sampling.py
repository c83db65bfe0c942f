"""Greedy and sampled decoding: the Generator's sampling loop, its sliding window, and streaming."""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import tensorflow as tf

from seqtasks.decoding.base import GeneratorBase, DecodePlan, resolve_seed, round_up_state_size, static_config, write_tokens
from seqtasks.decoding.config import GenerationConfig, GenerationError
from seqtasks.decoding.filters import constrain_logits, is_stop, top_k_filter, top_p_filter
from seqtasks.decoding.inputs import (Context, aligns_prompts, context_specs, context_tensors, prefill_decoder,
                                      prompt_array)
from seqtasks.decoding.stops import strip_stops

_STREAM_CHUNK = 8  # tokens per loop call when streaming: smooth output, little per-call overhead


def _choose(logits, history, length, generated, seed, config: GenerationConfig, first, sample):
    """Pick one token per row; returns (tokens (batch,) int32, log p of them (batch,) float32).

    first (batch,): the history column of each row's first prompt token; sample (batch,): the row's
    index among its prompt's samples (see `draw`)."""
    x = constrain_logits(logits, history, length, generated, config, first)
    log_probs = tf.nn.log_softmax(x, axis=-1)
    if config.greedy:
        tokens = tf.argmax(x, axis=-1, output_type=tf.int32)
    else:
        x = x / config.temperature
        x = top_k_filter(x, config.top_k)
        x = top_p_filter(x, config.top_p)
        tokens = draw(x, seed, generated, sample)
    return tokens, tf.gather(log_probs, tokens, batch_dims=1)


def draw(x, seed, generated, sample=None):
    """One token per row from softmax(x), reproducibly by (seed, number of tokens generated so far).

    Gumbel-max: argmax(x + g), g = -log(-log u), u ~ U(0, 1), is a draw from softmax(x); unlike TF's
    categorical sampler it has an XLA kernel, so both compiled loops draw the same tokens (and an
    exported graph, seqtasks.decoding.serving, draws those of the graph loop).

    sample: None (row b takes row b of u), or (batch,) int, the row's index among its prompt's samples:
    row b takes row sample[b] of u. Philox fills u row after row, so that row is the one the prompt's
    sample would get decoded alone: a seeded sample does not depend on the prompts beside it."""
    step_seed = tf.stack([tf.cast(seed, tf.int64), tf.cast(generated, tf.int64)])
    uniform = tf.random.stateless_uniform(tf.shape(x), seed=step_seed, minval=1e-20, maxval=1.0, alg="philox")
    if sample is not None:
        uniform = tf.gather(uniform, sample)
    return tf.argmax(x - tf.math.log(-tf.math.log(uniform)), axis=-1, output_type=tf.int32)


def _history(prompts: np.ndarray, new_tokens: int) -> np.ndarray:
    """The prompts followed by room for the new tokens, rounded up like the state size: the loop's
    shapes then depend on the prompt's length only through that rounding (one XLA compile serves
    prompts of similar lengths). Positions past the current length are never read."""
    rows, length = prompts.shape
    return np.concatenate([prompts, np.zeros((rows, round_up_state_size(length + new_tokens) - length), np.int32)], axis=1)


def _prefill_rows(prefill, window: np.ndarray, first: np.ndarray, context):
    """The prefill of right-aligned rows: each length's rows at its offset (their first column), the
    logits and states put back in row order (the state's axis 0 is the batch axis)."""
    offsets = np.unique(first)
    if len(offsets) == 1:
        offset = int(offsets[0])
        return prefill(tf.constant(window[:, offset:]), tf.constant(offset), *(context or ()))
    parts, order = [], []
    for offset in offsets:
        members = np.flatnonzero(first == offset)
        rows = () if context is None else tuple(tf.gather(c, members) for c in context)
        parts.append(prefill(tf.constant(window[members, int(offset):]), tf.constant(int(offset)), *rows))
        order.append(members)
    back = np.argsort(np.concatenate(order))
    logits = tf.gather(tf.concat([logits for logits, _ in parts], axis=0), back)
    state = tuple(tf.gather(tf.concat(tensors, axis=0), back) for tensors in zip(*(state for _, state in parts)))
    return logits, state


def _replicate(sequences, scores, config: GenerationConfig):
    """Greedy rows were decoded once per prompt: copy them num_return_sequences times."""
    n = config.num_return_sequences
    if not config.greedy or n == 1:
        return sequences, scores
    return ([[list(s[0]) for _ in range(n)] for s in sequences], [[sc[0]] * n for sc in scores])


class Sampling(GeneratorBase):
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
        prompt = prompt_array(prompt_ids, 0)[None]
        context = context_tensors(context, 1)
        self._prepare(prompt)
        plan = self._plan(prompt.shape[1], config.max_new_tokens)
        return self._stream(prompt, config, plan, context)  # errors above are raised now, not at the first next()

    def _stream(self, prompt: np.ndarray, config: GenerationConfig, plan: "DecodePlan", context: Context | None
                ) -> Iterator[int]:
        """The sampling loop of sample(), run in chunks of _STREAM_CHUNK tokens that are yielded as they come."""
        new_tokens = config.max_new_tokens
        if new_tokens == 0:
            return
        prefill, run = self._functions_for(config, plan, context_specs(context))
        seed = tf.constant(resolve_seed(config), tf.int64)
        history = tf.constant(_history(prompt, new_tokens))
        finished, scores = tf.zeros((1,), tf.bool), tf.zeros((1,), tf.float32)
        first = sample = tf.zeros((1,), tf.int32)
        length = prompt.shape[1]
        window = prompt[:, -plan.window:] if plan.sliding and prompt.shape[1] > plan.state_size else prompt
        while True:
            logits, state = prefill(tf.constant(window), tf.constant(0), *(context or ()))
            position = window.shape[1]  # where the next fed token goes
            # the last token of a full state is chosen but not fed: plan.state_size - position + 1 tokens
            room = plan.state_size - position + 1
            while room > 0:
                generated = length - prompt.shape[1]
                chunk = min(_STREAM_CHUNK, room, new_tokens - generated)
                logits, state, history, length_t, finished, scores = run(
                    logits, state, history, tf.constant(length), tf.constant(generated), finished, scores, seed,
                    tf.constant(chunk), tf.constant(position), tf.constant(plan.state_size), first, sample)
                for token in history.numpy()[0, length:int(length_t)]:
                    if int(token) in config.stop_ids:
                        return
                    yield int(token)
                length, position, room = int(length_t), position + chunk, room - chunk
                if length - prompt.shape[1] >= new_tokens:
                    return
            window = history.numpy()[:, length - plan.window:length]

    # -- greedy and sampling ------------------------------------------------------------------------

    def sample(self, prompts: Sequence[np.ndarray], config: GenerationConfig, seed: int,
               context: Context | None = None) -> tuple[list[list[list[int]]], list[list[float]]]:
        """Greedy or sampled continuations of prompts (1-D id arrays) with their context rows, in one loop.

        Prompts of different lengths are right-aligned (the decoder must `aligns_prompts`, and the
        longest prompt + max_new_tokens must fit the state: no sliding window): with T the longest
        prompt's length, row b's prompt fills history and state columns first[b] = T - len .. T - 1,
        each length's rows prefilled at that offset, and every row feeds its next token at the same
        column T, T + 1, ... Columns before first[b] are padding, never attended (the decoder's mask)
        nor counted by the constraints; a row's positions are its column - first[b]. So each row
        decodes as its prompt alone would, greedy or seeded (`draw` keys a row's noise by its sample
        index, not its row), up to float rounding in the products.
        """
        count = 1 if config.greedy else config.num_return_sequences  # greedy samples are all the same
        lengths = np.array([len(p) for p in prompts])
        longest = int(lengths.max())
        aligned = np.zeros((len(prompts), longest), np.int32)
        for i, prompt in enumerate(prompts):
            aligned[i, longest - len(prompt):] = prompt
        batch = np.repeat(aligned, count, axis=0)
        first = np.repeat(longest - lengths, count).astype(np.int32)
        sample = np.tile(np.arange(count, dtype=np.int32), len(prompts))
        context = context_tensors(context, len(prompts))
        if context is not None:
            context = tuple(tf.repeat(c, count, axis=0) for c in context)  # aligned with the repeated prompts
        rows = len(batch)
        new_tokens = config.max_new_tokens
        if new_tokens == 0:
            return _replicate([[[]] * count] * len(prompts), [[0.0] * count] * len(prompts), config)
        self._prepare(batch)
        plan = self._plan(longest, new_tokens)
        if first.any() and (plan.sliding or not aligns_prompts(self.decoder)):
            raise ValueError("prompts of different lengths need a decoder that aligns prompts and no sliding window")
        prefill, run = self._functions_for(config, plan, context_specs(context))
        history = tf.constant(_history(batch, new_tokens))
        length = longest
        finished = tf.zeros((rows,), tf.bool)
        scores = tf.zeros((rows,), tf.float32)
        seed_tensor = tf.constant(seed, tf.int64)
        window = batch[:, -plan.window:] if plan.sliding and longest > plan.state_size else batch
        while True:
            generated = length - longest
            # the last token of a full state is chosen but not fed: state_size - window + 1 tokens fit
            steps = min(plan.state_size - window.shape[1] + 1, new_tokens - generated)
            logits, state = _prefill_rows(prefill, window, first, context)
            _, _, history, length_t, finished, scores = run(
                logits, state, history, tf.constant(length), tf.constant(generated), finished, scores, seed_tensor,
                tf.constant(steps), tf.constant(window.shape[1]), tf.constant(plan.state_size), tf.constant(first),
                tf.constant(sample))
            length = int(length_t)
            if length - longest >= new_tokens or bool(tf.reduce_all(finished)):
                break
            window = history.numpy()[:, length - plan.window:length]  # equal-length prompts only (first == 0)
        tokens = history.numpy()[:, longest:length]
        outputs = [strip_stops(row, config.stop_ids) for row in tokens]
        row_scores = [float(s) for s in scores.numpy()]
        sequences = [outputs[i * count:(i + 1) * count] for i in range(len(prompts))]
        grouped = [row_scores[i * count:(i + 1) * count] for i in range(len(prompts))]
        return _replicate(sequences, grouped, config)

    def _functions_for(self, config: GenerationConfig, plan: "DecodePlan", specs: tuple | None):
        """(prefill, run): the compiled prefill for this state size and the sampling loop for these settings."""
        static = static_config(config)
        prefill = self._compiled(("prefill", plan.state_size, specs),
                                 lambda: self._prefill_function(plan.state_size, specs))
        xla = static.uses_xla(beam=False, conditional=specs is not None,
                              default=getattr(self.decoder, "xla_by_default", True))
        run = self._compiled(("run", static, xla), lambda: self._run_function(static, xla))
        return prefill, run

    def _prefill_function(self, state_size: int, specs: tuple | None):
        """decoder.prefill as a graph: one forward pass over the window, which XLA would compile anew for
        every prompt length and barely speed up."""
        decoder = self.decoder
        signature = (tf.TensorSpec((None, None), tf.int32), tf.TensorSpec((), tf.int32), *(specs or ()))
        return tf.function(lambda window, offset, *context: prefill_decoder(decoder, window, state_size, context,
                                                                            specs, offset),
                           input_signature=signature)

    def _run_function(self, config: GenerationConfig, xla: bool):
        """The sampling loop: from the prefill's logits and state, choose `steps` tokens, feeding each back.

        Its shapes are those of the state (batch, state size), never the prompt's length, so XLA (the
        default for language models) compiles it once per batch size and state size. The token chosen at
        `position == state_size` is the last one this state can take: the caller slides the window.
        """
        decoder = self.decoder

        def run(logits, state, history, length, generated, finished, scores, seed, steps, position, state_size,
                first, sample):
            def condition(i, logits, state, history, length, generated, finished, scores):
                return (i < steps) & ~tf.reduce_all(finished)

            def body(i, logits, state, history, length, generated, finished, scores):
                tokens, log_p = _choose(logits, history, length, generated, seed, config, first, sample)
                history = write_tokens(history, length, tokens)
                scores = scores + tf.where(finished, 0.0, log_p)
                finished = finished | is_stop(tokens, config.stop_ids)
                # a token chosen when the state is full is fed too, at the last slot (the caller slides
                # the window and never uses that state): a branch here would make XLA copy the state
                logits, state = decoder.step(tokens, tuple(state), tf.minimum(position + i, state_size - 1))
                return i + 1, logits, tuple(state), history, length + 1, generated + 1, finished, scores

            loop = tf.while_loop(condition, body,
                                 (tf.constant(0), logits, tuple(state), history, length, generated, finished, scores))
            _, logits, state, history, length, _, finished, scores = loop
            return logits, state, history, length, finished, scores

        # graph mode: one trace for any batch and state size; XLA compiles once per concrete shape
        return RowFreeLoop(tf.function(run, reduce_retracing=True, jit_compile=xla))


class RowFreeLoop:
    """The sampling loop's tf.function, traced at its first call for any number of rows (axis 0 of
    every tensor) and history width: prompts of other lengths, in batches of other sizes, reuse the
    trace (XLA still compiles once per concrete shape)."""

    def __init__(self, function):
        self.function = function
        self.traced: set = set()

    def __call__(self, logits, state, history, *rest):
        args = (logits, tuple(state), history, *rest)
        specs = tf.nest.map_structure(_any_rows, args)
        specs = (*specs[:2], tf.TensorSpec((None, None), history.dtype), *specs[3:])  # any width too
        key = tuple(tf.nest.flatten(specs))
        if key not in self.traced:
            self.function.get_concrete_function(*specs)
            self.traced.add(key)
        return self.function(*args)

    def experimental_get_tracing_count(self) -> int:
        return self.function.experimental_get_tracing_count()


def _any_rows(tensor) -> tf.TensorSpec:
    shape = tensor.shape.as_list()
    return tf.TensorSpec([None, *shape[1:]] if shape else [], tensor.dtype)
