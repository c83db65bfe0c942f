"""Prompt/completion pairs -> token sequences -> length-bucketed batches, for conditional generation.

Each pair becomes one sequence

    prompt ids + [SEP] + completion ids + [EOS]        SEP = the tokenizer's BOS id, "<s>"

and a batch is (inputs, targets) = (sequence[:-1], sequence[1:]) with the targets of the prompt (and
of the separator) set to PAD, which the loss ignores: only the completion and its EOS are learned.
Batches hold pairs of similar length (seqtasks.batching), padded at the end with PAD to a multiple
of PAD_MULTIPLE. Pairs longer than seq_len + 1 tokens lose the start of their prompt (then the end
of their completion).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from seqtasks.batching import batch_dataset, length_bucketed_batches, pad
from seqtasks.tokenizers import PAD_ID, Tokenizer

Pair = tuple[str, str]
PAD_MULTIPLE = 8  # batch lengths are rounded up to this: fewer distinct shapes to trace


@dataclass
class EncodedPairs:
    """Token sequences (prompt + SEP + completion + EOS) and where each one's scored targets begin."""

    sequences: list[np.ndarray]
    scored_from: np.ndarray  # target index of the first completion token (= prompt length)
    truncated: int           # pairs cut to fit seq_len

    def __len__(self) -> int:
        return len(self.sequences)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(s) - 1 for s in self.sequences])  # model inputs per sequence


def separator_id(tokenizer: Tokenizer) -> int:
    return tokenizer.bos_id


def encode_pairs(tokenizer: Tokenizer, pairs: Sequence[Pair], seq_len: int) -> EncodedPairs:
    """prompt + [SEP] + completion + [EOS], at most seq_len + 1 tokens (seq_len model inputs)."""
    prompts = tokenizer.encode_batch([p for p, _ in pairs])
    completions = tokenizer.encode_batch([c for _, c in pairs])
    sequences, scored_from, truncated = [], [], 0
    for prompt, completion in zip(prompts, completions):
        room = seq_len - 1 - min(len(completion), seq_len - 1)  # prompt tokens that fit beside SEP and EOS
        truncated += len(prompt) > room or len(completion) > seq_len - 1
        prompt, completion = prompt[max(len(prompt) - room, 0):] if room else [], completion[:seq_len - 1]
        sequences.append(np.array([*prompt, separator_id(tokenizer), *completion, tokenizer.eos_id], np.int32))
        scored_from.append(len(prompt))
    return EncodedPairs(sequences, np.array(scored_from, np.int64), truncated)


def pair_batch(encoded: EncodedPairs, indices: Sequence[int], seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) (batch, time) int32, padded at the end with PAD; prompt targets are PAD too."""
    longest = max(len(encoded.sequences[i]) - 1 for i in indices)
    width = min(-(-longest // PAD_MULTIPLE) * PAD_MULTIPLE, seq_len)
    tokens = pad([encoded.sequences[i] for i in indices], width + 1)
    inputs, targets = tokens[:, :-1], tokens[:, 1:].copy()
    positions = np.arange(width)[None, :]
    targets[positions < encoded.scored_from[np.asarray(indices)][:, None]] = PAD_ID  # only completions count
    return inputs, targets


def pair_signature():
    import tensorflow as tf

    spec = tf.TensorSpec((None, None), tf.int32)
    return spec, spec


def evaluation_dataset(encoded: EncodedPairs, batch_size: int, seq_len: int):
    """Every pair once, in length order (little padding)."""
    batches = length_bucketed_batches(encoded.lengths, batch_size, shuffle=False)
    return batch_dataset(lambda: (pair_batch(encoded, indices, seq_len) for indices in batches), pair_signature(),
                         len(batches))


