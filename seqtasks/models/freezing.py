"""What `seqtasks finetune --freeze` can hold fixed: each model's named parts.

Every model class has `freezable_parts() -> dict[str, list[keras.layers.Layer]]`, the names a user
may pass to --freeze and the layers each one freezes:

    embeddings     the token embedding tables (and a learned position table)
    layers:N       the first N recurrent layers / Transformer blocks, counted from the input; one key
                   per N the model has (an encoder-decoder: the first N of each side)
    others         the task's own parts: encoder, decoder, backbone, char_features, crf, ...

A layer may sit in several parts (a table shared by source and target belongs to the encoder and the
decoder): freezing either part freezes it.
"""
from __future__ import annotations

import itertools

import keras


def stack_depth(*stacks: list[keras.layers.Layer]) -> list[list[keras.layers.Layer]]:
    """The layers at each depth of stacks that run side by side (a bidirectional recurrent layer's
    forward and backward halves, an encoder's and a decoder's blocks): depth i holds the i-th of each,
    as far as the shallowest stack goes."""
    depth = min(len(stack) for stack in stacks) if stacks else 0
    return [[stack[i] for stack in stacks] for i in range(depth)]


def recurrent_depth(stack) -> list[list[keras.layers.Layer]]:
    """A RecurrentStack's layers by depth: forward_i with backward_i when it is bidirectional."""
    return stack_depth(stack.forward_layers, *([stack.backward_layers] if stack.backward_layers else []))


def layer_prefixes(depth: list[list[keras.layers.Layer]]) -> dict[str, list[keras.layers.Layer]]:
    """{"layers:1": the first depth's layers, ..., "layers:D": all of them}."""
    prefixes = itertools.accumulate(depth, lambda done, layers: done + layers, initial=[])
    return {f"layers:{n}": layers for n, layers in enumerate(prefixes) if n > 0}

