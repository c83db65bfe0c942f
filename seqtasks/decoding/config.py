"""Generation settings: GenerationConfig (validated on construction) and GenerationError."""
from __future__ import annotations

import os
from dataclasses import dataclass

from seqtasks.errors import UserError

__all__ = ["GenerationConfig", "GenerationError", "MAX_NEW_TOKENS"]

# The most tokens one call generates. The loop keeps every token it made (the repetition penalty and
# the n-gram ban read them all) in a buffer sized for the request, so a bound keeps a mistyped
# request (1e9 tokens: 4 GB a row) from exhausting memory; longer texts are made piece by piece,
# each piece continuing the text of the last.
MAX_NEW_TOKENS = 100_000


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
    xla: bool | None = None          # compile the decoding loop with XLA: its ops fuse into a few kernels
                                     # per step, 2-4x less time per token on CPU, for a compile of a
                                     # second or a few per shape. None (auto): XLA for the greedy and
                                     # sampling loop of a decoder without context (language models),
                                     # whose shapes are only the batch and the rounded state size; a
                                     # graph for beam search (its loop includes the prefill) and for
                                     # translation and captioning (the state holds the source, whose
                                     # length varies from batch to batch: XLA would compile each one).
                                     # Greedy and beam output do not depend on it; samples do (XLA's
                                     # random numbers are other ones), each reproducible by seed.

    def __post_init__(self):
        object.__setattr__(self, "stop_ids", tuple(int(i) for i in self.stop_ids))
        checks = [
            (self.max_new_tokens >= 0, "max_new_tokens", "must be >= 0"),
            (self.max_new_tokens <= MAX_NEW_TOKENS, "max_new_tokens",
             f"at most {MAX_NEW_TOKENS:,} tokens a call; for a longer text, generate it in pieces, each "
             "prompted with the end of the last"),
            (self.min_new_tokens <= MAX_NEW_TOKENS, "min_new_tokens", f"must be at most {MAX_NEW_TOKENS:,}"),
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

    def uses_xla(self, beam: bool, conditional: bool) -> bool:
        """Whether a decoding loop is XLA-compiled: as `xla` says, or by default (None) the greedy and
        sampling loop of a decoder without context, unless $SEQTASKS_XLA=0 turns the default off (for
        short-lived processes, such as the test suite, where the compile costs more than it saves)."""
        if self.xla is not None:
            return self.xla
        return not (beam or conditional) and os.environ.get("SEQTASKS_XLA", "1") != "0"

    @property
    def beam(self) -> bool:
        return self.beam_width > 1
