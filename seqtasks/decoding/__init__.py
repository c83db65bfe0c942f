"""The decoding engine: greedy, sampled and beam-searched continuations from any autoregressive decoder.

The engine knows a model only through the decoder interface (language models now; translation and
captioning decoders implement the same three methods):

    prefill(token_ids (batch, time) int32, max_length) -> (logits (batch, vocab) of the last position, state)
    step(token_ids (batch,) int32, state, index)         -> (logits (batch, vocab), state)
    capacity(max_length) -> int                            # positions a state can hold

`state` is a flat tuple of tensors whose shapes never change from step to step. Beam search also
assumes that axis 0 of every state tensor is the batch axis (it reorders beams with tf.gather).

Prompts of different lengths, one loop: a decoder whose class sets `aligns_prompts = True` (the
language models) also takes

    prefill(token_ids, max_length, offset=o)  # the prompt at state columns o .. o + time - 1

Greedy and sampling then right-align a batch's prompts: with T the longest prompt's length, row b's
prompt fills history and state columns first[b] = T - len_b .. T - 1 (each length's rows prefilled
at their offset, the states joined on axis 0), and every row feeds its next token at the same column
T, T + 1, ..., the `index` step receives. The mask convention: a row never attends to, nor counts in
the constraints, the columns before its first[b] (padding); its positions are column - first[b]. A
Transformer keeps first in its state for that; a recurrent or n-gram state holds no positions and
ignores the offset. Seeded sampling draws a row's noise by its index among its prompt's samples
(`draw`), so every prompt decodes as it would alone, greedy or sampled. Beam search, a sliding
window (the longest prompt + max_new_tokens past the capacity) and other decoders decode one loop
per prompt length.

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
    5. a draw from softmax by the Gumbel-max trick, argmax(logits - log(-log u)), u uniform from
       tf.random.stateless_uniform with seed (seed, index of the new token).
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

Length: one call makes at most MAX_NEW_TOKENS (100,000) tokens; a larger max_new_tokens is refused
by GenerationConfig in one line (the loop holds every token made, in a buffer sized for the request).

Long outputs: when prompt + max_new_tokens exceeds decoder.capacity(...), greedy and sampling decode
in windows: when the state is full (or the prompt alone does not fit) the decoder is prefilled again on
the last capacity // 2 tokens of prompt + output (nanoGPT's crop), positions starting again at 0; the
repetition penalty and the n-gram ban still see the whole prompt + output. Beam search does not slide:
it raises a ValueError when prompt + max_new_tokens does not fit.

Compilation: greedy and sampled decoding run as two compiled functions: the prefill (a tf.function
graph per state size) and the loop that chooses tokens and feeds them back through `step` (a
tf.while_loop). The loop's shapes are the state's (batch, state size), never the prompt's length,
and the state size is prompt + max_new_tokens rounded up to a multiple of 64 (capped by the
capacity), so calls of similar lengths share one compiled loop. By default (`GenerationConfig.xla`
None) XLA compiles that loop for decoders without context (language models; not a decoder whose
`xla_by_default` is False, the n-gram model, whose loop of binary searches XLA compiles slowly): the ops of a step fuse
into a few kernels, 2-4x less time per token on CPU (benchmarks/generation_speed.py), for a compile
of a second or a few per batch size and state size. Streaming calls the same loop 8 tokens at a
time. Conditional decoders (translation, captioning) keep the source in their state, and its length
changes from batch to batch, so their loops run as graphs unless `xla=True`; so does beam search, one
tf.function for prefill and loop. A
`Generator(decoder)` holds these functions; the module functions reuse one Generator kept on the
decoder object itself.
"""
from __future__ import annotations

# The package, one job a module: config (GenerationConfig, GenerationError, its fields as option rows),
# filters (the logit transforms of step 1-4), stops (stop ids and stop strings), inputs (prompts and
# context), base (the Generator's compiled-function cache and state-size plan), sampling (greedy,
# sampling and streaming loop), beam (beam search), generator (the Generator and the module-level entry points).
from seqtasks.decoding.config import (MAX_NEW_TOKENS, GenerationConfig, GenerationError, GenerationOption,
                                      generation_options)
from seqtasks.decoding.stops import cut_at_stop, held_back, stop_string_ids

# The engine's modules import TensorFlow; they load on first use, so that the settings (and the
# command-line options made from them) are there before TensorFlow starts.
_ENGINE = {
    "Generator": "generator", "generate": "generator", "generate_with_scores": "generator",
    "generator_for": "generator", "stream": "generator", "Context": "inputs", "context_specs": "inputs",
    "sample_ids": "serving",
    **{name: "filters" for name in ("apply_repetition_penalty", "no_repeat_ngram_mask", "seen_token_mask",
                                    "top_k_filter", "top_p_filter")},
}


def __getattr__(name: str):
    if name not in _ENGINE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{_ENGINE[name]}"), name)


__all__ = [
    "GenerationConfig", "GenerationError", "GenerationOption", "generation_options", "MAX_NEW_TOKENS",
    "Generator", "generate", "generate_with_scores", "stream", "generator_for", "context_specs", "sample_ids",
    "apply_repetition_penalty", "no_repeat_ngram_mask", "seen_token_mask", "top_k_filter", "top_p_filter",
    "stop_string_ids", "cut_at_stop", "held_back",
]
