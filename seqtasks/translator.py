"""Translate sentences with a trained encoder-decoder: batching, decoding, alignments, attention plots.

Sentences are encoded (source ids + EOS), sorted by length and decoded in batches through the one
engine, seqtasks.decoding: the prompt of every sentence is [BOS] and its context is the encoder's
output, `model.encode(source_ids)`; decoding stops at EOS. Outputs come back in input order.

Alignments are read from the attention of a teacher-forced pass over the chosen translation (the same
numbers the decoder saw, since cached decoding equals full recomputation): for each target word the
source word it attends to most, written `i-j` (source word i, target word j, from 0) like fast_align.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from seqtasks import decoding
from seqtasks.batching import pad
from seqtasks.errors import UserError
from seqtasks.plotting import pyplot, save
from seqtasks.tokenizers import BOS_ID, EOS_ID, Tokenizer
from seqtasks.translation_data import TranslationVocab

DECODE_BATCH = 64
_ENCODER_ATTRIBUTE = "_seqtasks_encoder"


@dataclass
class Hypothesis:
    text: str
    ids: list[int]
    score: float
    alignment: str | None = None
    weights: np.ndarray | None = field(default=None, repr=False)


class Translator:
    """model + vocabulary -> translations. `max_source_length` cuts longer inputs (learned positions)."""

    def __init__(self, model, vocab: TranslationVocab, max_new_tokens: int, max_source_length: int | None = None,
                 length_penalty: float = 1.0):
        self.model, self.vocab = model, vocab
        self.max_new_tokens, self.max_source_length = max_new_tokens, max_source_length
        self.length_penalty = length_penalty

    def source_ids(self, sentence: str) -> np.ndarray:
        ids = self.vocab.source.encode(sentence.strip())
        if self.max_source_length:
            ids = ids[:self.max_source_length - 1]
        return np.array(ids + [EOS_ID], np.int32)

    def encode(self, source_ids: np.ndarray) -> tuple:
        """The model's context for a padded batch, by one compiled function kept on the model."""
        import tensorflow as tf

        encoder = getattr(self.model, _ENCODER_ATTRIBUTE, None)
        if encoder is None:
            encoder = tf.function(self.model.encode, input_signature=(tf.TensorSpec((None, None), tf.int32),))
            object.__setattr__(self.model, _ENCODER_ATTRIBUTE, encoder)  # not tracked, never saved
        return tuple(encoder(tf.constant(source_ids)))

    def translate(self, sentences: Sequence[str], beam: int = 1, n_best: int = 1) -> list[list[Hypothesis]]:
        """The n_best translations of each sentence (best first), greedy when beam == 1."""
        if n_best > max(beam, 1):
            raise UserError(f"--n-best {n_best} needs a beam at least that wide (--beam {beam})",
                            fix=f"pass --beam {n_best} or more")
        config = decoding.GenerationConfig(
            max_new_tokens=self.max_new_tokens, temperature=0.0, beam_width=max(beam, 1),
            num_return_sequences=n_best, length_penalty=self.length_penalty, stop_ids=(EOS_ID,))
        sources = [self.source_ids(s) for s in sentences]
        order = np.argsort([len(s) for s in sources], kind="stable")
        results: list[list[Hypothesis]] = [[] for _ in sentences]
        for start in range(0, len(order), DECODE_BATCH):
            members = order[start:start + DECODE_BATCH]
            context = self.encode(pad([sources[i] for i in members]))
            outputs, scores = decoding.generate_with_scores(self.model, [[BOS_ID]] * len(members), config, context)
            for i, ids_list, score_list in zip(members, outputs, scores):
                results[i] = [Hypothesis(self.vocab.target.decode(ids), list(ids), score)
                              for ids, score in zip(ids_list, score_list)]
        return results

    def align(self, sentence: str, hypothesis: Hypothesis) -> Hypothesis:
        """Fill in the attention weights (target tokens + EOS, source tokens + EOS) and word alignments."""
        if getattr(self.model, "attention", "") == "none":
            raise UserError("this model has no attention to show (it was trained with --attention none)",
                            fix="train with --attention bahdanau or luong, or --arch transformer")
        source = self.source_ids(sentence)
        target = np.array([[BOS_ID] + hypothesis.ids], np.int32)
        weights = np.asarray(self.model.alignments(source[None], target))[0].astype(np.float32)
        hypothesis.weights = weights
        hypothesis.alignment = word_alignment(weights[:-1, :-1], word_of_token(self.vocab.source, source[:-1]),
                                              word_of_token(self.vocab.target, hypothesis.ids))
        return hypothesis

    def plot(self, sentence: str, hypothesis: Hypothesis, path: str | Path) -> Path:
        """Draw the attention map of one translation to a PNG (needs matplotlib: seqtasks[plot])."""
        plt = pyplot(path)
        if hypothesis.weights is None:
            self.align(sentence, hypothesis)
        source = self.source_ids(sentence)
        columns = [self.vocab.source.id_to_token(int(i)) for i in source]
        rows = [self.vocab.target.id_to_token(int(i)) for i in hypothesis.ids] + ["</s>"]
        figure, axes = plt.subplots(figsize=(max(4, 0.45 * len(columns) + 2), max(3, 0.4 * len(rows) + 1.5)))
        axes.imshow(hypothesis.weights, cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
        axes.set_xticks(range(len(columns)), columns, rotation=90)
        axes.set_yticks(range(len(rows)), rows)
        axes.set_xlabel("source")
        axes.set_ylabel("translation")
        figure.tight_layout()
        return save(figure, path, dpi=120)


def word_of_token(tokenizer: Tokenizer, ids: Sequence[int]) -> list[int | None]:
    """For each token, the index of the whitespace-separated word of decode(ids) it is part of
    (None for tokens that decode to whitespace only)."""
    words: list[int | None] = []
    previous = ""
    for end in range(1, len(ids) + 1):
        text = tokenizer.decode(ids[:end])
        added = text[len(previous):] if text.startswith(previous) else text
        words.append(len(text.split()) - 1 if added.strip() else None)
        previous = text
    return words


def word_alignment(weights: np.ndarray, source_words: list[int | None], target_words: list[int | None]) -> str:
    """Word alignment `i-j ...` from token attention (target tokens, source tokens): each target word
    is aligned to the source word with the most attention mass, averaged over the word's tokens."""
    source_count = max((w for w in source_words if w is not None), default=-1) + 1
    target_count = max((w for w in target_words if w is not None), default=-1) + 1
    mass = np.zeros((target_count, source_count))
    tokens = np.zeros(target_count)
    for t, target_word in enumerate(target_words):
        if target_word is None:
            continue
        tokens[target_word] += 1
        for s, source_word in enumerate(source_words):
            if source_word is not None:
                mass[target_word, source_word] += weights[t, s]
    if not source_count:
        return ""
    links = [f"{int(np.argmax(mass[j]))}-{j}" for j in range(target_count) if tokens[j]]
    return " ".join(links)
