"""The Generator's plumbing: its compiled-function cache, the weights check, the state-size plan.

Also the small helpers the sampling loop and beam search share (static settings, seeds, history writes).
"""
from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from seqtasks.decoding.config import GenerationConfig, GenerationError

STATE_ROUNDING = 64  # state sizes are rounded up to a multiple of this: fewer distinct traces
_STATE_ROUNDING = STATE_ROUNDING


class GeneratorBase:
    """What every part of the Generator uses: the decoder, its compiled functions, the state-size plan."""

    def __init__(self, decoder):
        self.decoder = decoder
        self._functions: dict[Any, Any] = {}
        self._ready = False

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

    def _plan(self, prompt_length: int, new_tokens: int) -> "DecodePlan":
        needed = prompt_length + new_tokens
        rounded = round_up_state_size(needed)
        capacity = int(self.decoder.capacity(rounded))
        if capacity >= needed:
            return DecodePlan(state_size=min(capacity, rounded), window=capacity, sliding=False)
        if capacity < 2:
            raise GenerationError(f"the model's state holds only {capacity} position(s)", "generation",
                                  "use a model with a longer context")
        return DecodePlan(state_size=capacity, window=capacity // 2, sliding=True)


@dataclass(frozen=True)
class DecodePlan:
    state_size: int  # the max_length given to prefill
    window: int      # tokens kept when the state is prefilled again
    sliding: bool


def static_config(config: GenerationConfig) -> GenerationConfig:
    """The settings a compiled function depends on (the seed and the number of samples are inputs)."""
    return dataclasses.replace(config, seed=None, num_return_sequences=1)


def resolve_seed(config: GenerationConfig) -> int:
    return config.seed if config.seed is not None else secrets.randbelow(2 ** 31)


def round_up_state_size(n: int) -> int:
    return -(-n // _STATE_ROUNDING) * _STATE_ROUNDING


def write_tokens(history, position, tokens):
    """history[:, position] = tokens."""
    return tf.where(tf.range(tf.shape(history)[1])[None] == position, tokens[:, None], history)
