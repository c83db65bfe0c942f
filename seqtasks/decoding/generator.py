"""The Generator (one per decoder) and the module-level entry points that reuse it."""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from seqtasks.decoding.base import resolve_seed
from seqtasks.decoding.beam import BeamSearch
from seqtasks.decoding.config import GenerationConfig
from seqtasks.decoding.inputs import Context, aligns_prompts, context_rows, context_tensors, prompt_array
from seqtasks.decoding.sampling import Sampling

__all__ = ["Generator", "generator_for", "generate", "generate_with_scores", "stream"]

_GENERATOR_ATTRIBUTE = "_seqtasks_generator"


# ---------------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------------

class Generator(Sampling, BeamSearch):
    """Generation for one decoder; holds the compiled functions, one per static setting and state size."""

    # -- public API (stream() comes from Sampling) --------------------------------------------------

    def generate(self, prompt_ids: Sequence[Sequence[int]], config: GenerationConfig | None = None,
                 context: Context | None = None) -> list[list[list[int]]]:
        return self.generate_with_scores(prompt_ids, config, context)[0]

    def generate_with_scores(self, prompt_ids: Sequence[Sequence[int]], config: GenerationConfig | None = None,
                             context: Context | None = None) -> tuple[list[list[list[int]]], list[list[float]]]:
        """Per prompt, num_return_sequences continuations and their scores (see the module docstring)."""
        config = config or GenerationConfig()
        prompts = [prompt_array(p, i) for i, p in enumerate(prompt_ids)]
        context = context_tensors(context, len(prompts))
        sequences: list[list[list[int]]] = [[] for _ in prompts]
        scores: list[list[float]] = [[] for _ in prompts]
        seed = resolve_seed(config)
        for members in self._loops(prompts, config):
            rows = context_rows(context, members)
            if config.beam:
                group_sequences, group_scores = self.beam_search(np.stack([prompts[i] for i in members]), config, rows)
            else:
                group_sequences, group_scores = self.sample([prompts[i] for i in members], config, seed, rows)
            for i, seqs, scs in zip(members, group_sequences, group_scores):
                sequences[i], scores[i] = seqs, scs
        return sequences, scores


    def _loops(self, prompts: list[np.ndarray], config: GenerationConfig) -> list[list[int]]:
        """The prompts (their indices) each decoding loop takes: all in one for greedy and sampling with a
        decoder that aligns prompts when the longest fits the state; else one loop per prompt length."""
        if not prompts:
            return []
        longest = max(len(p) for p in prompts)
        if (not config.beam and aligns_prompts(self.decoder) and config.max_new_tokens > 0
                and not self._plan(longest, config.max_new_tokens).sliding):
            return [list(range(len(prompts)))]
        groups: dict[int, list[int]] = {}
        for i, prompt in enumerate(prompts):
            groups.setdefault(len(prompt), []).append(i)
        return list(groups.values())


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

    Prompts may have different lengths (greedy and sampling decode them in one loop, right-aligned, when
    the decoder aligns prompts; else one loop per length); each needs >= 1 token.
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
