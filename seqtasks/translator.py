"""Translate sentences with a trained encoder-decoder: its conditioning, alignments, attention plots.

A Translator is translation's Conditioning for the one text-generation front-end (seqtasks.generation):
a sentence is encoded as source ids + EOS, the prompt of every sentence is [BOS], the context of a
batch is the encoder's output, `model.encode(padded source ids)`, and decoding stops at EOS. The
front-end batches sentences of similar length and returns the outputs in input order.

Alignments are read from the attention of a teacher-forced pass over the chosen translation (the same
numbers the decoder saw, since cached decoding equals full recomputation): for each target word the
source word it attends to most, written `i-j` (source word i, target word j, from 0) like fast_align.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from seqtasks.batching import pad
from seqtasks.errors import UserError
from seqtasks.generation import Generated, Prompt, TextGenerator
from seqtasks.plotting import pyplot, save
from seqtasks.progress import Progress
from seqtasks.tokenizers import BOS_ID, EOS_ID, Tokenizer
from seqtasks.translation_data import TranslationVocab

DECODE_BATCH = 64
_ENCODER_ATTRIBUTE = "_seqtasks_encoder"


@dataclass
class Hypothesis(Generated):
    alignment: str | None = None
    weights: np.ndarray | None = field(default=None, repr=False)


class Translator:
    """model + vocabulary -> translations. `max_source_length` cuts longer inputs (learned positions)."""

    stop_ids = (EOS_ID,)
    batch_size = DECODE_BATCH

    def __init__(self, model, vocab: TranslationVocab, max_new_tokens: int, max_source_length: int | None = None,
                 length_penalty: float = 1.0):
        self.model, self.vocab, self.tokenizer = model, vocab, vocab.target
        self.max_new_tokens, self.max_source_length = max_new_tokens, max_source_length
        self.length_penalty = length_penalty

    @property
    def defaults(self) -> dict[str, Any]:
        """Greedy, at most max_new_tokens, the run's length penalty for a beam (the caller's options win)."""
        return {"max_new_tokens": self.max_new_tokens, "temperature": 0.0, "length_penalty": self.length_penalty}

    def prompt(self, sentence: str) -> Prompt:
        return Prompt([BOS_ID], self.source_ids(sentence))

    def context(self, sources: list[np.ndarray]) -> tuple:
        return self.encode(pad(sources))

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

    def translate(self, sentences: Sequence[str], beam: int = 1, n_best: int = 1,
                  progress: Progress | None = None) -> list[list[Hypothesis]]:
        """The n_best translations of each sentence (best first), greedy when beam == 1."""
        if n_best > max(beam, 1):
            raise UserError(f"--n-best {n_best} needs a beam at least that wide (--beam {beam})",
                            fix=f"pass --beam {n_best} or more")
        generator = TextGenerator(self.model, self)
        config = generator.config(beam_width=max(beam, 1), num_return_sequences=n_best)
        return [[Hypothesis(h.text, h.ids, h.score) for h in hypotheses]
                for hypotheses in generator.generate(sentences, config, progress=progress)]

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


def prediction(hypotheses: list[Hypothesis], n_best: bool, alignments: bool) -> Any:
    """What predict yields for one sentence: its best translation; with n_best every hypothesis with its
    score; with alignments dicts holding each one's word alignment."""
    def row(h: Hypothesis, with_score: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"translation": h.text}
        if with_score:
            out["score"] = h.score
        if alignments:
            out["alignment"] = h.alignment or ""
        return out

    if n_best:
        return [row(h, True) for h in hypotheses]
    return row(hypotheses[0], False) if alignments else hypotheses[0].text


def prediction_lines(result: Any) -> str:
    """A prediction as `seqtasks predict` prints it: one line per translation; n-best:
    `translation<TAB>score`; alignments add `<TAB>i-j ...`."""
    if isinstance(result, str):
        return result
    rows = result if isinstance(result, list) else [result]
    lines = []
    for row in rows:
        columns = [row["translation"]] + ([f"{row['score']:.4f}"] if "score" in row else [])
        lines.append("\t".join(columns + ([row["alignment"]] if "alignment" in row else [])))
    return "\n".join(lines)


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
