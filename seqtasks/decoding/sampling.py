"""Greedy and sampled decoding: the Generator's sampling loop, its sliding window, and streaming."""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import tensorflow as tf

from seqtasks.decoding.base import GeneratorBase, DecodePlan, resolve_seed, round_up_state_size, static_config, write_tokens
from seqtasks.decoding.config import GenerationConfig, GenerationError
from seqtasks.decoding.filters import constrain_logits, is_stop, top_k_filter, top_p_filter
from seqtasks.decoding.inputs import Context, context_specs, context_tensors, prefill_decoder, prompt_array
from seqtasks.decoding.stops import strip_stops

_STREAM_CHUNK = 8  # tokens per loop call when streaming: smooth output, little per-call overhead


def _choose(logits, history, length, generated, seed, config: GenerationConfig):
    """Pick one token per row; returns (tokens (batch,) int32, log p of them (batch,) float32)."""
    x = constrain_logits(logits, history, length, generated, config)
    log_probs = tf.nn.log_softmax(x, axis=-1)
    if config.greedy:
        tokens = tf.argmax(x, axis=-1, output_type=tf.int32)
    else:
        x = x / config.temperature
        x = top_k_filter(x, config.top_k)
        x = top_p_filter(x, config.top_p)
        tokens = draw(x, seed, generated)
    return tokens, tf.gather(log_probs, tokens, batch_dims=1)


def draw(x, seed, generated):
    """One token per row from softmax(x), reproducibly by (seed, number of tokens generated so far).

    Gumbel-max: argmax(x + g), g = -log(-log u), u ~ U(0, 1), is a draw from softmax(x); unlike TF's
    categorical sampler it has an XLA kernel, so both compiled loops draw the same tokens (and an
    exported graph, seqtasks.decoding.serving, draws those of the graph loop)."""
    step_seed = tf.stack([tf.cast(seed, tf.int64), tf.cast(generated, tf.int64)])
    uniform = tf.random.stateless_uniform(tf.shape(x), seed=step_seed, minval=1e-20, maxval=1.0, alg="philox")
    return tf.argmax(x - tf.math.log(-tf.math.log(uniform)), axis=-1, output_type=tf.int32)


def _history(prompts: np.ndarray, new_tokens: int) -> np.ndarray:
    """The prompts followed by room for the new tokens, rounded up like the state size: the loop's
    shapes then depend on the prompt's length only through that rounding (one XLA compile serves
    prompts of similar lengths). Positions past the current length are never read."""
    rows, length = prompts.shape
    return np.concatenate([prompts, np.zeros((rows, round_up_state_size(length + new_tokens) - length), np.int32)], axis=1)


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
        length = prompt.shape[1]
        window = prompt[:, -plan.window:] if plan.sliding and prompt.shape[1] > plan.state_size else prompt
        while True:
            logits, state = prefill(tf.constant(window), *(context or ()))
            position = window.shape[1]  # where the next fed token goes
            # the last token of a full state is chosen but not fed: plan.state_size - position + 1 tokens
            room = plan.state_size - position + 1
            while room > 0:
                generated = length - prompt.shape[1]
                chunk = min(_STREAM_CHUNK, room, new_tokens - generated)
                logits, state, history, length_t, finished, scores = run(
                    logits, state, history, tf.constant(length), tf.constant(generated), finished, scores, seed,
                    tf.constant(chunk), tf.constant(position), tf.constant(plan.state_size))
                for token in history.numpy()[0, length:int(length_t)]:
                    if int(token) in config.stop_ids:
                        return
                    yield int(token)
                length, position, room = int(length_t), position + chunk, room - chunk
                if length - prompt.shape[1] >= new_tokens:
                    return
            window = history.numpy()[:, length - plan.window:length]

    # -- greedy and sampling ------------------------------------------------------------------------

    def sample(self, prompts: np.ndarray, config: GenerationConfig, seed: int, context: Context | None = None
               ) -> tuple[list[list[list[int]]], list[list[float]]]:
        """Greedy or sampled continuations of equal-length prompts (batch, time) with their context rows."""
        count = 1 if config.greedy else config.num_return_sequences  # greedy samples are all the same
        batch = np.repeat(prompts, count, axis=0)
        context = context_tensors(context, len(prompts))
        if context is not None:
            context = tuple(tf.repeat(c, count, axis=0) for c in context)  # aligned with the repeated prompts
        rows, prompt_length = batch.shape
        new_tokens = config.max_new_tokens
        if new_tokens == 0:
            return _replicate([[[]] * count] * len(prompts), [[0.0] * count] * len(prompts), config)
        self._prepare(batch)
        plan = self._plan(prompt_length, new_tokens)
        prefill, run = self._functions_for(config, plan, context_specs(context))
        history = tf.constant(_history(batch, new_tokens))
        length = prompt_length
        finished = tf.zeros((rows,), tf.bool)
        scores = tf.zeros((rows,), tf.float32)
        seed_tensor = tf.constant(seed, tf.int64)
        window = batch[:, -plan.window:] if plan.sliding and prompt_length > plan.state_size else batch
        while True:
            generated = length - prompt_length
            # the last token of a full state is chosen but not fed: state_size - window + 1 tokens fit
            steps = min(plan.state_size - window.shape[1] + 1, new_tokens - generated)
            logits, state = prefill(tf.constant(window), *(context or ()))
            _, _, history, length_t, finished, scores = run(
                logits, state, history, tf.constant(length), tf.constant(generated), finished, scores, seed_tensor,
                tf.constant(steps), tf.constant(window.shape[1]), tf.constant(plan.state_size))
            length = int(length_t)
            if length - prompt_length >= new_tokens or bool(tf.reduce_all(finished)):
                break
            window = history.numpy()[:, length - plan.window:length]
        tokens = history.numpy()[:, prompt_length:length]
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
        signature = (tf.TensorSpec((None, None), tf.int32), *(specs or ()))
        return tf.function(lambda window, *context: prefill_decoder(decoder, window, state_size, context, specs),
                           input_signature=signature)

    def _run_function(self, config: GenerationConfig, xla: bool):
        """The sampling loop: from the prefill's logits and state, choose `steps` tokens, feeding each back.

        Its shapes are those of the state (batch, state size), never the prompt's length, so XLA (the
        default for language models) compiles it once per batch size and state size. The token chosen at
        `position == state_size` is the last one this state can take: the caller slides the window.
        """
        decoder = self.decoder

        def run(logits, state, history, length, generated, finished, scores, seed, steps, position, state_size):
            def condition(i, logits, state, history, length, generated, finished, scores):
                return (i < steps) & ~tf.reduce_all(finished)

            def body(i, logits, state, history, length, generated, finished, scores):
                tokens, log_p = _choose(logits, history, length, generated, seed, config)
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
        return tf.function(run, reduce_retracing=True, jit_compile=xla)
