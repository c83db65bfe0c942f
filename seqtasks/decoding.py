"""The decoding engine: greedy, sampled and beam-searched continuations from any autoregressive decoder.

The engine knows a model only through the decoder interface (language models now; translation and
captioning decoders implement the same three methods):

    prefill(token_ids (batch, time) int32, max_length) -> (logits (batch, vocab) of the last position, state)
    step(token_ids (batch,) int32, state, index)         -> (logits (batch, vocab), state)
    capacity(max_length) -> int                            # positions a state can hold

`state` is a flat tuple of tensors whose shapes never change from step to step. Beam search also
assumes that axis 0 of every state tensor is the batch axis (it reorders beams with tf.gather).

Conditional decoders (translation, captioning) also read a per-prompt `context`: every entry point takes
`context=None` or a tuple of tensors/arrays whose axis 0 is aligned with the prompts (row i belongs to
prompt i), for example (encoder memory (batch, src_time, d_model), source mask (batch, src_time)).
With a context the engine calls

    prefill(token_ids, max_length, context)   # context: the tuple, its rows matching token_ids' rows

and without one exactly `prefill(token_ids, max_length)`, so language models need no third argument.
`step` never receives the context: whatever it needs (encoder memory, precomputed cross-attention keys
and values, masks) the decoder returns from prefill inside its state, batch axis 0 like the rest (beam
search reorders it with the beams). The engine hands each equal-length group of prompts its own context
rows, repeated like the prompts (row i -> rows i*n .. i*n+n-1 for n samples); beam search prefills once
per prompt and repeats the state for the beams. A sliding window prefills again with the same rows.
The context is an input of the compiled functions, never a captured constant: new values with the same
dtypes, ranks and feature sizes reuse the trace (every axis is dynamic except the last axis of a tensor
of rank >= 3, which a decoder's projection layers need static).

Choosing the next token, in this order (sampling and greedy):
    1. constraints on the raw logits: repetition penalty (CTRL: a logit of a token already in the prompt
       or the output is divided by the penalty when positive, multiplied when negative), no-repeat
       n-gram (a token that would complete an n-gram already in prompt + output gets -inf), and while
       fewer than min_new_tokens tokens exist every stop id gets -inf;
    2. temperature (logits / T), 3. top-k (exactly k tokens kept; ties go to the lower id),
    4. top-p (the smallest set of most probable tokens whose mass reaches p; ties go to the lower id),
    5. a draw from tf.random.stateless_categorical with seed (seed, index of the new token).
temperature == 0 or top_k == 1 is greedy: the argmax of the constrained logits (steps 2-5 skipped).

Beam search (beam_width > 1) scores a hypothesis y of length |y| (new tokens, counting its stop id)
by  sum log p(y_t | ...) / |y| ** length_penalty,  p the softmax of the constrained logits (step 1).
Each step keeps the beam_width best unfinished hypotheses; a candidate ending in a stop id is moved to
the finished pool when it ranks among the beam_width best candidates of its step. A prompt is done
when its pool holds beam_width hypotheses and none is worse than the best live hypothesis scored at
the current length (Hugging Face's default heuristic); at max_new_tokens the live hypotheses join the
pool. With beam_width 1 this is exactly greedy decoding.

Scores: `generate_with_scores` returns, per sequence, the sum of log p of its tokens (p as above,
the stop id included) for greedy and sampling, and the normalized beam score for beam search.

Outputs hold the new token ids only; generation of a sequence ends at its first stop id, which is
stripped from the output. Stop strings are text: callers cut the decoded text with `cut_at_stop` (and
hold back a possible start of one while streaming, `held_back`); `stop_string_ids` finds the
one-character stop strings the engine can stop at as ids, exactly.

Long outputs: when prompt + max_new_tokens exceeds decoder.capacity(...), greedy and sampling decode
in windows: when the state is full (or the prompt alone does not fit) the decoder is prefilled again on
the last capacity // 2 tokens of prompt + output (nanoGPT's crop), positions starting again at 0; the
repetition penalty and the n-gram ban still see the whole prompt + output. Beam search does not slide:
it raises a ValueError when prompt + max_new_tokens does not fit.

Compilation: the whole decoding loop (prefill, then a tf.while_loop over steps) is one tf.function per
decoder, static settings and state size; the state size is prompt + max_new_tokens rounded up to a
multiple of 64 (capped by the capacity) so calls with similar lengths share a trace. A `Generator(decoder)`
holds these functions; the module functions reuse one Generator kept on the decoder object itself.
"""
from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import tensorflow as tf

from seqtasks.errors import UserError

__all__ = [
    "GenerationConfig", "GenerationError", "Generator", "generate", "generate_with_scores", "stream",
    "apply_repetition_penalty", "no_repeat_ngram_mask", "seen_token_mask", "top_k_filter", "top_p_filter",
    "stop_string_ids", "cut_at_stop", "held_back",
]

_STATE_ROUNDING = 64  # state sizes are rounded up to a multiple of this: fewer distinct traces
_TOP_P_TOLERANCE = 1e-6  # float32 cumulative sums: a mass within this of p counts as reaching p
_GENERATOR_ATTRIBUTE = "_seqtasks_generator"

Context = Sequence[Any]  # a tuple of tensors/arrays, axis 0 aligned with the prompts


class GenerationError(UserError, ValueError):
    """A generation request that cannot be served (bad setting, empty prompt, beam too long).

    A UserError, so the CLI prints it as one line, and a ValueError, as Python callers expect.
    """


@dataclass(frozen=True)
class GenerationConfig:
    """How to continue a prompt. See the module docstring for the exact order of the transforms."""

    max_new_tokens: int = 100
    min_new_tokens: int = 0          # stop ids are banned until this many new tokens exist
    temperature: float = 1.0         # 0 = greedy
    top_k: int = 0                   # 0 = off; 1 = greedy
    top_p: float = 1.0               # nucleus sampling; 1.0 = off
    repetition_penalty: float = 1.0  # CTRL-style; 1.0 = off
    no_repeat_ngram_size: int = 0    # 0 = off
    beam_width: int = 1              # > 1: beam search (deterministic; ignores temperature, top-k, top-p)
    length_penalty: float = 1.0      # beam score = sum log p / len ** length_penalty (len counts the stop id)
    num_return_sequences: int = 1    # n-best for beam search (<= beam_width); n samples otherwise
    stop_ids: tuple[int, ...] = ()   # a sequence ends at its first stop id, which is not returned
    seed: int | None = None          # same seed -> same samples; None = a fresh random seed per call

    def __post_init__(self):
        object.__setattr__(self, "stop_ids", tuple(int(i) for i in self.stop_ids))
        checks = [
            (self.max_new_tokens >= 0, "max_new_tokens", "must be >= 0"),
            (self.min_new_tokens >= 0, "min_new_tokens", "must be >= 0"),
            (self.temperature >= 0, "temperature", "must be >= 0 (0 = greedy)"),
            (self.top_k >= 0, "top_k", "must be >= 0 (0 = off)"),
            (0 < self.top_p <= 1, "top_p", "must be in (0, 1]"),
            (self.repetition_penalty > 0, "repetition_penalty", "must be > 0 (1 = off)"),
            (self.no_repeat_ngram_size >= 0, "no_repeat_ngram_size", "must be >= 0 (0 = off)"),
            (self.beam_width >= 1, "beam_width", "must be >= 1"),
            (self.num_return_sequences >= 1, "num_return_sequences", "must be >= 1"),
            (self.beam_width == 1 or self.num_return_sequences <= self.beam_width, "num_return_sequences",
             "must be <= beam_width for beam search"),
            (all(i >= 0 for i in self.stop_ids), "stop_ids", "must be token ids (>= 0)"),
        ]
        for ok, name, fix in checks:
            if not ok:
                raise GenerationError(f"invalid generation setting {name}={getattr(self, name)!r}",
                                      "GenerationConfig", fix)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0 or self.top_k == 1

    @property
    def beam(self) -> bool:
        return self.beam_width > 1


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


def seen_token_mask(history, length, vocab: int):
    """(batch, vocab) bool: True for tokens among the first `length` entries of each history row."""
    history = tf.convert_to_tensor(history, tf.int32)
    present = tf.cast(tf.range(tf.shape(history)[1]) < length, tf.int32)
    present = tf.broadcast_to(present[None], tf.shape(history))
    counts = _scatter_rows(tf.zeros((tf.shape(history)[0], vocab), tf.int32), history, present, max_merge=True)
    return counts > 0


def apply_repetition_penalty(logits, seen, penalty: float):
    """CTRL repetition penalty: a seen token's logit is divided by `penalty` if > 0, multiplied if < 0."""
    logits = tf.convert_to_tensor(logits, tf.float32)
    if penalty == 1.0:
        return logits
    penalized = tf.where(logits > 0, logits / penalty, logits * penalty)
    return tf.where(seen, penalized, logits)


def no_repeat_ngram_mask(history, length, n: int, vocab: int):
    """(batch, vocab) bool: True for tokens that would repeat an n-gram of history[:, :length].

    The last n - 1 tokens are the prefix; every earlier occurrence of that prefix bans the token that
    followed it (n = 1 bans every token already present).
    """
    history = tf.convert_to_tensor(history, tf.int32)
    length = tf.convert_to_tensor(length, tf.int32)
    width = tf.shape(history)[1]
    prefix = n - 1
    starts = tf.range(width)
    match = tf.broadcast_to((starts + prefix < length)[None], tf.shape(history))  # complete n-grams only
    for k in range(prefix):
        current = tf.gather(history, tf.maximum(length - prefix + k, 0)[None], axis=1)  # (batch, 1)
        shifted = tf.pad(history[:, k:], [[0, 0], [0, k]], constant_values=-1)
        match &= shifted == current
    following = tf.pad(history[:, prefix:], [[0, 0], [0, prefix]])
    banned = _scatter_rows(tf.zeros((tf.shape(history)[0], vocab), tf.int32), following,
                           tf.cast(match, tf.int32), max_merge=True)
    return banned > 0


def _scatter_rows(base, columns, values, max_merge: bool = False):
    """base[b, columns[b, j]] = values[b, j] (or the max with what is there, when max_merge)."""
    rows = tf.broadcast_to(tf.range(tf.shape(columns)[0])[:, None], tf.shape(columns))
    indices = tf.stack([rows, columns], axis=-1)
    if max_merge:
        return tf.tensor_scatter_nd_max(base, indices, values)
    return tf.tensor_scatter_nd_update(base, indices, values)


def _constrain(logits, history, length, generated, config: GenerationConfig):
    """Step 1: repetition penalty, no-repeat n-grams and min_new_tokens, on the raw logits."""
    logits = tf.cast(logits, tf.float32)
    vocab = logits.shape[-1]
    x = logits
    if config.repetition_penalty != 1.0:
        x = apply_repetition_penalty(x, seen_token_mask(history, length, vocab), config.repetition_penalty)
    if config.no_repeat_ngram_size > 0:
        x = tf.where(no_repeat_ngram_mask(history, length, config.no_repeat_ngram_size, vocab), -np.inf, x)
    if config.min_new_tokens > 0 and config.stop_ids:
        x = tf.where(_stop_mask(vocab, config.stop_ids)[None] & (generated < config.min_new_tokens), -np.inf, x)
    # never leave a row without a candidate: fall back to the model's own logits
    dead = tf.reduce_all(tf.math.is_inf(x) & (x < 0), axis=-1, keepdims=True)
    return tf.where(dead, logits, x)


def _stop_mask(vocab: int, stop_ids):
    ids = [i for i in stop_ids if i < vocab]
    if not ids:
        return tf.zeros((vocab,), tf.bool)
    return tf.reduce_any(tf.one_hot(ids, vocab, on_value=True, off_value=False, dtype=tf.bool), axis=0)


def _is_stop(tokens, stop_ids):
    result = tf.zeros_like(tokens, tf.bool)
    for i in stop_ids:
        result |= tf.equal(tokens, i)
    return result


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
        step_seed = tf.stack([seed, tf.cast(generated, tf.int64)])
        tokens = tf.random.stateless_categorical(x, 1, seed=step_seed, dtype=tf.int32)[:, 0]
    return tokens, tf.gather(log_probs, tokens, batch_dims=1)


def _write(history, position, tokens):
    """history[:, position] = tokens."""
    return tf.where(tf.range(tf.shape(history)[1])[None] == position, tokens[:, None], history)


# ---------------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------------

class Generator:
    """Generation for one decoder; holds the compiled functions, one per static setting and state size."""

    def __init__(self, decoder):
        self.decoder = decoder
        self._functions: dict[Any, Any] = {}
        self._ready = False

    # -- public API ---------------------------------------------------------------------------------

    def generate(self, prompt_ids: Sequence[Sequence[int]], config: GenerationConfig | None = None,
                 context: Context | None = None) -> list[list[list[int]]]:
        return self.generate_with_scores(prompt_ids, config, context)[0]

    def generate_with_scores(self, prompt_ids: Sequence[Sequence[int]], config: GenerationConfig | None = None,
                             context: Context | None = None) -> tuple[list[list[list[int]]], list[list[float]]]:
        """Per prompt, num_return_sequences continuations and their scores (see the module docstring)."""
        config = config or GenerationConfig()
        prompts = [_prompt_array(p, i) for i, p in enumerate(prompt_ids)]
        context = _context_tensors(context, len(prompts))
        sequences: list[list[list[int]]] = [[] for _ in prompts]
        scores: list[list[float]] = [[] for _ in prompts]
        groups: dict[int, list[int]] = {}
        for i, prompt in enumerate(prompts):
            groups.setdefault(len(prompt), []).append(i)
        seed = _resolve_seed(config)
        for members in groups.values():
            batch = np.stack([prompts[i] for i in members])
            rows = _context_rows(context, members)
            if config.beam:
                group_sequences, group_scores = self.beam_search(batch, config, rows)
            else:
                group_sequences, group_scores = self.sample(batch, config, seed, rows)
            for i, seqs, scs in zip(members, group_sequences, group_scores):
                sequences[i], scores[i] = seqs, scs
        return sequences, scores

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
        return tf.function(segment, input_signature=signature)  # one trace for any batch and lengths

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

    # -- beam search --------------------------------------------------------------------------------

    def beam_search(self, prompts: np.ndarray, config: GenerationConfig, context: Context | None = None
                    ) -> tuple[list[list[list[int]]], list[list[float]]]:
        """The num_return_sequences best beams (best first) for equal-length prompts (batch, time).

        Runs with any beam_width, 1 included (which is greedy decoding). `context` has one row per prompt.
        """
        prompts = np.asarray(prompts, np.int32)
        context = _context_tensors(context, len(prompts))
        batch, prompt_length = prompts.shape
        new_tokens, width = config.max_new_tokens, config.beam_width
        count = config.num_return_sequences if config.beam else 1
        if new_tokens == 0:
            return [[[]] * count] * batch, [[0.0] * count] * batch
        self._prepare(prompts)
        needed = prompt_length + new_tokens
        capacity = self.decoder.capacity(_round_up(needed))
        if needed > capacity:
            raise GenerationError(
                f"beam search needs prompt + max_new_tokens = {needed} positions but the model holds {capacity}",
                "beam search", "shorten the prompt or max_new_tokens, or use sampling/greedy (they slide a window)")
        static = _static(config)
        specs = _context_specs(context)
        search = self._compiled(("beam", static, capacity, specs), lambda: self._beam_function(static, capacity, specs))
        sequences, lengths, scores = (t.numpy() for t in search(tf.constant(prompts), *(context or ())))
        outputs, output_scores = [], []
        for b in range(batch):
            outputs.append([_strip(sequences[b, j, :lengths[b, j]], config.stop_ids) for j in range(count)])
            output_scores.append([float(scores[b, j]) for j in range(count)])
        return outputs, output_scores

    def _beam_function(self, config: GenerationConfig, state_size: int, specs: tuple | None):
        decoder = self.decoder
        width, new_tokens = config.beam_width, config.max_new_tokens
        stop_ids, penalty = config.stop_ids, config.length_penalty

        def normalize(log_p, length):
            return log_p / tf.pow(tf.cast(length, tf.float32), penalty)

        def search(prompts, *context):
            batch, prompt_length = tf.shape(prompts)[0], tf.shape(prompts)[1]
            rows = batch * width
            # prefill once per prompt; repeating the state (context included) gives row i -> rows i*W..i*W+W-1
            logits, state = _prefill(decoder, prompts, state_size, context, specs)
            vocab = logits.shape[-1]
            if vocab is None:
                raise ValueError("beam search needs the decoder's vocabulary size to be static")
            candidates = min(width * (1 + len(stop_ids)), width * vocab)
            state = tuple(tf.repeat(s, width, axis=0) for s in state)
            logits = tf.repeat(tf.cast(logits, tf.float32), width, axis=0)
            history = tf.repeat(tf.concat([prompts, tf.zeros((batch, new_tokens), tf.int32)], axis=1), width, axis=0)
            # only the first beam is live at the start, so the first step does not pick duplicates
            first = tf.concat([tf.zeros((1,)), tf.fill((width - 1,), -np.inf)], axis=0)
            alive_log_p = tf.tile(first[None], [batch, 1])
            finished_tokens = tf.zeros((batch, width, new_tokens), tf.int32)
            finished_scores = tf.fill((batch, width), -np.inf)
            finished_lengths = tf.zeros((batch, width), tf.int32)
            done = tf.zeros((batch,), tf.bool)
            beam_offsets = (tf.range(batch) * width)[:, None]
            positions = tf.range(new_tokens)

            def condition(i, logits, state, history, alive_log_p, f_tokens, f_scores, f_lengths, done):
                return (i < new_tokens) & ~tf.reduce_all(done)

            def body(i, logits, state, history, alive_log_p, f_tokens, f_scores, f_lengths, done):
                x = _constrain(logits, history, prompt_length + i, i, config)
                log_p = tf.nn.log_softmax(x, axis=-1)
                total = tf.reshape(alive_log_p, (rows, 1)) + log_p
                top_scores, top_indices = tf.math.top_k(tf.reshape(total, (batch, width * vocab)), candidates)
                parents = top_indices // vocab + beam_offsets  # rows of history / state, (batch, candidates)
                tokens = top_indices % vocab
                generated = tf.gather(history[:, prompt_length:], parents)  # (batch, candidates, new_tokens)
                candidate_tokens = tf.where(positions == i, tokens[..., None], generated)
                stopped = _is_stop(tokens, stop_ids)
                length = i + 1
                # finished pool: candidates ending in a stop id among the `width` best of this step
                eligible = stopped & (tf.range(candidates) < width)[None] & ~done[:, None] & (top_scores > -np.inf)
                new_scores = tf.where(eligible, normalize(top_scores, length), -np.inf)
                pool_scores = tf.concat([f_scores, new_scores], axis=1)
                pool_tokens = tf.concat([f_tokens, candidate_tokens], axis=1)
                pool_lengths = tf.concat([f_lengths, tf.fill(tf.shape(tokens), length)], axis=1)
                f_scores, keep = tf.math.top_k(pool_scores, width)
                f_tokens = tf.gather(pool_tokens, keep, batch_dims=1)
                f_lengths = tf.gather(pool_lengths, keep, batch_dims=1)
                # live beams: the `width` best candidates that did not stop
                alive_log_p, keep = tf.math.top_k(tf.where(stopped, -np.inf, top_scores), width)
                chosen_rows = tf.reshape(tf.gather(parents, keep, batch_dims=1), (rows,))
                chosen_tokens = tf.reshape(tf.gather(tokens, keep, batch_dims=1), (rows,))
                history = _write(tf.gather(history, chosen_rows), prompt_length + i, chosen_tokens)
                state = tuple(tf.gather(s, chosen_rows) for s in state)
                worst_finished = f_scores[:, -1]
                done = done | ((worst_finished > -np.inf) & (worst_finished >= normalize(alive_log_p[:, 0], length)))
                logits, state = decoder.step(chosen_tokens, state, prompt_length + i)
                return (i + 1, tf.cast(logits, tf.float32), tuple(state), history, alive_log_p,
                        f_tokens, f_scores, f_lengths, done)

            loop = tf.while_loop(condition, body, (tf.constant(0), logits, state, history, alive_log_p,
                                                   finished_tokens, finished_scores, finished_lengths, done))
            steps, _, _, history, alive_log_p, f_tokens, f_scores, f_lengths, done = loop
            # prompts still searching at max_new_tokens: their live beams are complete hypotheses too
            live_ok = ~done[:, None] & (alive_log_p > -np.inf)
            live_scores = tf.where(live_ok, normalize(alive_log_p, steps), -np.inf)
            live_tokens = tf.reshape(history[:, prompt_length:], (batch, width, new_tokens))
            pool_scores = tf.concat([f_scores, live_scores], axis=1)
            f_scores, keep = tf.math.top_k(pool_scores, width)
            f_tokens = tf.gather(tf.concat([f_tokens, live_tokens], axis=1), keep, batch_dims=1)
            f_lengths = tf.gather(tf.concat([f_lengths, tf.fill((batch, width), steps)], axis=1), keep, batch_dims=1)
            return f_tokens, f_lengths, f_scores

        return tf.function(search, input_signature=(tf.TensorSpec((None, None), tf.int32), *(specs or ())))

    # -- plumbing -----------------------------------------------------------------------------------

    def _compiled(self, key, build):
        if key not in self._functions:
            self._functions[key] = build()
        return self._functions[key]

    def _prepare(self, prompts: np.ndarray):
        """A Keras decoder must have its weights before decoding (tf.function must not create them)."""
        if self._ready:
            return
        if not getattr(self.decoder, "built", True):
            raise GenerationError(f"{type(self.decoder).__name__} has no weights yet", "generation",
                                  "train or load the model, or call it once on a batch of token ids")
        self._ready = True

    def _plan(self, prompt_length: int, new_tokens: int) -> "_Plan":
        needed = prompt_length + new_tokens
        rounded = _round_up(needed)
        capacity = int(self.decoder.capacity(rounded))
        if capacity >= needed:
            return _Plan(state_size=min(capacity, rounded), window=capacity, sliding=False)
        if capacity < 2:
            raise GenerationError(f"the model's state holds only {capacity} position(s)", "generation",
                                  "use a model with a longer context")
        return _Plan(state_size=capacity, window=capacity // 2, sliding=True)


@dataclass(frozen=True)
class _Plan:
    state_size: int  # the max_length given to prefill
    window: int      # tokens kept when the state is prefilled again
    sliding: bool


# ---------------------------------------------------------------------------------------------------
# Module-level entry points
# ---------------------------------------------------------------------------------------------------

def generator_for(decoder) -> Generator:
    """The Generator of `decoder`, created once and kept on the decoder, so its traces are reused."""
    if isinstance(decoder, Generator):
        return decoder
    generator = getattr(decoder, _GENERATOR_ATTRIBUTE, None)
    if generator is None or generator.decoder is not decoder:
        generator = Generator(decoder)
        # object.__setattr__: plain attribute, not tracked by Keras/TF (never saved with the model)
        object.__setattr__(decoder, _GENERATOR_ATTRIBUTE, generator)
    return generator


def generate(decoder, prompt_ids: Sequence[Sequence[int]], config: GenerationConfig | None = None,
             context: Context | None = None) -> list[list[list[int]]]:
    """For each prompt, num_return_sequences continuations: new token ids only, stop id stripped.

    Prompts may have different lengths (equal lengths are decoded as one batch); each needs >= 1 token.
    `context`: None, or a tuple of tensors with one row per prompt, handed to decoder.prefill.
    """
    return generator_for(decoder).generate(prompt_ids, config, context)


def generate_with_scores(decoder, prompt_ids: Sequence[Sequence[int]], config: GenerationConfig | None = None,
                         context: Context | None = None) -> tuple[list[list[list[int]]], list[list[float]]]:
    """As generate, plus per sequence its score: sum of log p (greedy/sampling) or the beam score."""
    return generator_for(decoder).generate_with_scores(prompt_ids, config, context)


def stream(decoder, prompt_ids: Sequence[int], config: GenerationConfig | None = None,
           context: Context | None = None) -> Iterator[int]:
    """Yield the new token ids of one greedy or sampled continuation as they are produced."""
    return generator_for(decoder).stream(prompt_ids, config, context)


# ---------------------------------------------------------------------------------------------------
# Stop strings: the engine stops at ids; text-level stops are checked on the decoded text
# ---------------------------------------------------------------------------------------------------

def stop_string_ids(tokenizer, stops: Sequence[str]) -> tuple[int, ...]:
    """Ids at which the engine may stop for a stop string, saving the tokens past it.

    Only exact cases: a one-character stop string s whose every containing token decodes to exactly
    s (a char tokenizer's newline, a word tokenizer's "."). Stopping there and cutting the text at s
    give the same result; every stop string is still checked on the text (`cut_at_stop`).
    """
    single = {s for s in stops if len(s) == 1}
    if not single:
        return ()
    texts = [tokenizer.decode([i]) for i in range(tokenizer.vocab_size)]
    ids: list[int] = []
    for stop in sorted(single):
        containing = [i for i, text in enumerate(texts) if stop in text]
        if containing and all(texts[i] == stop for i in containing):
            ids.extend(containing)
    return tuple(ids)


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """The text before the earliest occurrence of any stop string, and whether one occurred."""
    positions = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return (text[:min(positions)], True) if positions else (text, False)


def held_back(text: str, stops: Sequence[str]) -> int:
    """How many final characters of `text` could begin a stop string (a stream must not show them yet)."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest


# ---------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------

def _prompt_array(prompt: Sequence[int], index: int) -> np.ndarray:
    array = np.asarray(prompt)
    if array.ndim != 1 or array.size == 0:
        raise GenerationError(f"prompt {index} is empty" if array.size == 0 else f"prompt {index} is not a list of ids",
                              "generation", "give at least one token id (a language model can start from its EOS id)")
    if not np.issubdtype(array.dtype, np.integer) or array.min() < 0:
        raise GenerationError(f"prompt {index} holds something other than token ids", "generation",
                              "pass non-negative integer ids")
    return array.astype(np.int32)


def _context_tensors(context, rows: int) -> tuple[tf.Tensor, ...] | None:
    """The context as a tuple of tensors with `rows` rows each (None stays None)."""
    if context is None:
        return None
    if isinstance(context, (tf.Tensor, np.ndarray)):
        context = (context,)
    context = tuple(tf.convert_to_tensor(c) for c in context)
    if not context:
        raise GenerationError("the context is an empty tuple", "generation", "pass context=None, or its tensors")
    for i, tensor in enumerate(context):
        if tensor.shape.rank == 0 or tensor.shape[0] != rows:
            raise GenerationError(f"context tensor {i} has shape {tensor.shape.as_list()}", "generation",
                                  f"give every context tensor one row per prompt (axis 0 of size {rows})")
    return context


def _context_rows(context, members: Sequence[int]):
    return None if context is None else tuple(tf.gather(c, members) for c in context)


def _context_specs(context) -> tuple[tf.TensorSpec, ...] | None:
    """Input signatures for the context: every axis dynamic but the last axis of a rank >= 3 tensor."""
    if context is None:
        return None
    specs = []
    for tensor in context:
        rank = tensor.shape.rank
        shape = [None] * rank
        if rank >= 3:
            shape[-1] = tensor.shape[-1]
        specs.append(tf.TensorSpec(shape, tensor.dtype))
    return tuple(specs)


def _prefill(decoder, token_ids, max_length: int, context: tuple, specs: tuple | None):
    """decoder.prefill, with the context as third argument only for conditional decoders."""
    if specs is None:
        return decoder.prefill(token_ids, max_length)
    return decoder.prefill(token_ids, max_length, tuple(context))


def _static(config: GenerationConfig) -> GenerationConfig:
    """The settings a compiled function depends on (the seed and the number of samples are inputs)."""
    return dataclasses.replace(config, seed=None, num_return_sequences=1)


def _resolve_seed(config: GenerationConfig) -> int:
    return config.seed if config.seed is not None else secrets.randbelow(2 ** 31)


def _round_up(n: int) -> int:
    return -(-n // _STATE_ROUNDING) * _STATE_ROUNDING


def _strip(tokens, stop_ids) -> list[int]:
    """Cut a row at its first stop id (not kept)."""
    out = []
    for token in np.asarray(tokens).tolist():
        if token in stop_ids:
            break
        out.append(token)
    return out


def _replicate(sequences, scores, config: GenerationConfig):
    """Greedy rows were decoded once per prompt: copy them num_return_sequences times."""
    n = config.num_return_sequences
    if not config.greedy or n == 1:
        return sequences, scores
    return ([[list(s[0]) for _ in range(n)] for s in sequences], [[sc[0]] * n for sc in scores])
