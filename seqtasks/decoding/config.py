"""Generation settings: GenerationConfig (validated on construction) and GenerationError."""
from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass
from typing import Any, NamedTuple

from seqtasks.errors import UserError

__all__ = ["GenerationConfig", "GenerationError", "MAX_NEW_TOKENS", "GenerationOption", "generation_options"]

# The most tokens one call generates. The loop keeps every token it made (the repetition penalty and
# the n-gram ban read them all) in a buffer sized for the request, so a bound keeps a mistyped
# request (1e9 tokens: 4 GB a row) from exhausting memory; longer texts are made piece by piece,
# each piece continuing the text of the last.
MAX_NEW_TOKENS = 100_000


class GenerationError(UserError, ValueError):
    """A generation request that cannot be served (bad setting, empty prompt, beam too long).

    A UserError, so the CLI prints it as one line, and a ValueError, as Python callers expect.
    """


def _option(default: Any, help: str, flag: str | None = "") -> Any:
    """A GenerationConfig field with its help line and command-line flag ("" = --field-name; None = no flag)."""
    return dataclasses.field(default=default, metadata={"help": help, "flag": flag})


@dataclass(frozen=True)
class GenerationConfig:
    """How to continue a prompt. See the module docstring for the exact order of the transforms."""

    max_new_tokens: int = _option(100, "tokens to generate at most")
    min_new_tokens: int = _option(0, "no stop before this many tokens")  # stop ids are banned until then
    temperature: float = _option(1.0, "softmax temperature; 0 = greedy")
    top_k: int = _option(0, "sample among the k likeliest tokens (0 = all; 1 = greedy)")
    top_p: float = _option(1.0, "nucleus sampling: the likeliest tokens holding this much probability (1 = off)")
    repetition_penalty: float = _option(1.0, "divide the logits of tokens already present by this (1 = off)")
    no_repeat_ngram_size: int = _option(0, "never repeat an n-gram of this size (0 = off)", "--no-repeat-ngram")
    beam_width: int = _option(1, "beam search of this width (deterministic; ignores temperature, top-k and "
                                 "top-p; 1 = greedy)", "--beam")
    length_penalty: float = _option(1.0, "beam score = log p / length ** this (the length counts the stop id)")
    num_return_sequences: int = _option(1, "outputs per prompt: samples, or with --beam the n best (<= the "
                                           "width)", "-n")
    stop_ids: tuple[int, ...] = _option((), "a sequence ends at its first stop id, which is not returned", None)
    seed: int | None = _option(None, "random seed: the same seed gives the same samples (default: a fresh one "
                                     "per call)")
    # xla: compile the decoding loop with XLA: its ops fuse into a few kernels per step, 2-4x less time
    # per token on CPU, for a compile of a second or a few per shape. None (auto): XLA for the greedy
    # and sampling loop of a decoder without context (language models), whose shapes are only the batch
    # and the rounded state size; a graph for beam search (its loop includes the prefill) and for
    # translation and captioning (the state holds the source, whose length varies from batch to batch:
    # XLA would compile each one). Greedy and beam output do not depend on it; samples do (XLA's random
    # numbers are other ones), each reproducible by seed.
    xla: bool | None = _option(None, "compile the decoding loop with XLA (default: on for greedy and sampling "
                                     "of a language model, off for beam search, translation and captioning): "
                                     "2-4x faster per token after a compile of a second or a few",
                               "--xla/--no-xla")

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

    def uses_xla(self, beam: bool, conditional: bool, default: bool = True) -> bool:
        """Whether a decoding loop is XLA-compiled: as `xla` says, or by default (None) the greedy and
        sampling loop of a decoder without context, unless $SEQTASKS_XLA=0 turns the default off (for
        short-lived processes, such as the test suite, where the compile costs more than it saves) or
        the decoder's `xla_by_default` is False (the n-gram model: table lookups, slow to compile)."""
        if self.xla is not None:
            return self.xla
        return default and not (beam or conditional) and os.environ.get("SEQTASKS_XLA", "1") != "0"

    @property
    def beam(self) -> bool:
        return self.beam_width > 1


class GenerationOption(NamedTuple):
    """A GenerationConfig field as a command-line option."""

    flag: str      # "--top-k"; a boolean's is "--xla/--no-xla"; "-n" for num_return_sequences
    field: str     # the GenerationConfig field (and the keyword of Run.sample and Task.generate_batch)
    type: type     # int, float or bool (the field's type without None)
    default: Any
    help: str


def generation_options() -> list[GenerationOption]:
    """Every GenerationConfig field a user sets, as an option row, in field order (stop_ids, which
    tasks set, has no flag). The CLI makes its generation flags from these rows, so a new field is
    written once."""
    hints = typing.get_type_hints(GenerationConfig)
    rows = []
    for field in dataclasses.fields(GenerationConfig):
        flag = field.metadata["flag"]
        if flag is None:
            continue
        kind = next(t for t in typing.get_args(hints[field.name]) or (hints[field.name],) if t is not type(None))
        rows.append(GenerationOption(flag or "--" + field.name.replace("_", "-"), field.name, kind, field.default,
                                     field.metadata["help"]))
    return rows
