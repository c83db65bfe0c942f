"""Prompts and context: validating them, taking a group's context rows, their signatures, the prefill call."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from seqtasks.decoding.config import GenerationError

Context = Sequence[Any]  # a tuple of tensors/arrays, axis 0 aligned with the prompts


def prompt_array(prompt: Sequence[int], index: int) -> np.ndarray:
    array = np.asarray(prompt)
    if array.ndim != 1 or array.size == 0:
        raise GenerationError(f"prompt {index} is empty" if array.size == 0 else f"prompt {index} is not a list of ids",
                              "generation", "give at least one token id (a language model can start from its EOS id)")
    if not np.issubdtype(array.dtype, np.integer) or array.min() < 0:
        raise GenerationError(f"prompt {index} holds something other than token ids", "generation",
                              "pass non-negative integer ids")
    return array.astype(np.int32)


def context_tensors(context, rows: int) -> tuple[tf.Tensor, ...] | None:
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


def context_rows(context, members: Sequence[int]):
    return None if context is None else tuple(tf.gather(c, members) for c in context)


def context_specs(context) -> tuple[tf.TensorSpec, ...] | None:
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


def prefill_decoder(decoder, token_ids, max_length: int, context: tuple, specs: tuple | None, offset=0):
    """decoder.prefill, with the context as third argument only for conditional decoders, and the
    prompts' first state column `offset` only for decoders that align prompts (`aligns_prompts`)."""
    options = {"offset": offset} if aligns_prompts(decoder) else {}
    if specs is None:
        return decoder.prefill(token_ids, max_length, **options)
    return decoder.prefill(token_ids, max_length, tuple(context), **options)


def aligns_prompts(decoder) -> bool:
    """Whether decoder.prefill takes `offset=`, so that prompts of different lengths, right-aligned,
    decode in one loop (see the package docstring)."""
    return bool(getattr(decoder, "aligns_prompts", False))
