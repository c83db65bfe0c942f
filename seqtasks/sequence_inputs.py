"""What the shared encoder reads, for classification and tagging: settings, preprocessor, batches.

    EncoderSettings   the settings both tasks share (seqtasks.encoder_settings, free of TensorFlow)
    InputEncoder      the preprocessor saved in RUN/tokenizer: the token tokenizer (SentencePiece or a
                      word vocabulary), the character vocabulary, the label vocabulary, and a small
                      inputs.json (tokenizer kind, lowercase, tag schemes)
    padded_inputs     encoded examples -> the encoder's input dict of padded numpy arrays
    accuracy_fit_plan batches of similar length (seqtasks.batching), padded per batch

Words are what tags align with: CoNLL tokens as given, or raw text split by `split_words`. A word
tokenizer looks words up whole; a SentencePiece tokenizer gives each word its pieces (tagging) or
encodes the whole text (classification).
"""
from __future__ import annotations

import collections
import json
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from seqtasks.batching import batch_dataset, bucketed_epochs, fit_batch_size, length_bucketed_batches, pad, pad_nested
from seqtasks.choices import recurrent_cell
from seqtasks.progress import Progress
from seqtasks.training import FitPlan
from seqtasks.word_vectors import vector_words
from seqtasks.tokenizers import (SPECIAL_TOKENS, UNK_ID, CharTokenizer, LabelVocabulary, Tokenizer, WordTokenizer,
                                 load_tokenizer, train_tokenizer)

MAX_WORD_CHARS = 24   # longer words keep their first characters for the character features
MAX_WORD_PIECES = 8   # subword pieces kept per word (tagging with SentencePiece)
INPUTS_FILE = "inputs.json"


_CLITIC = re.compile(r"^(.+?)(n't|'s|'re|'ve|'ll|'m|'d)$", re.IGNORECASE)
_EDGE_PUNCTUATION = re.compile(r"^([^\w\s]*)(.*?)([^\w\s]*)$", re.DOTALL)


def split_words(text: str) -> list[str]:
    """Raw text -> words, roughly as treebanks tokenize: split on spaces, then peel punctuation off
    both ends one mark at a time and English clitics off the end ("don't" -> "do n't")."""
    words: list[str] = []
    for chunk in text.split():
        leading, core, trailing = _EDGE_PUNCTUATION.match(chunk).groups()
        words.extend(leading)
        clitic = _CLITIC.match(core)
        if clitic and clitic.group(1)[-1:].isalpha():
            words.extend(part for part in clitic.groups())
        elif core:
            words.append(core)
        words.extend(trailing)
    return words


class InputEncoder:
    """Words or text -> token ids (and character ids); labels -> ids. Saved as RUN/tokenizer/."""

    def __init__(self, tokenizer: Tokenizer, labels: LabelVocabulary, chars: CharTokenizer | None = None,
                 info: dict[str, Any] | None = None):
        self.tokenizer, self.labels, self.chars = tokenizer, labels, chars
        self.info = dict(info or {})
        self.lowercase = bool(self.info.get("lowercase", False))
        self._word_ids = ({token: i for i, token in enumerate(tokenizer.tokens) if i >= len(SPECIAL_TOKENS)}
                          if isinstance(tokenizer, WordTokenizer) else None)

    @property
    def uses_words(self) -> bool:
        return self._word_ids is not None

    # ---- encoding -------------------------------------------------------------------------
    def word_token(self, word: str) -> int | list[int]:
        """A word's id (word vocabulary) or its subword pieces (SentencePiece)."""
        if self._word_ids is not None:
            return self._word_ids.get(word.lower() if self.lowercase else word, UNK_ID)
        return self.tokenizer.encode(" " + word)[:MAX_WORD_PIECES] or [UNK_ID]

    def char_ids(self, tokens: Sequence[str]) -> list[list[int]] | None:
        if self.chars is None:
            return None
        return [self.chars.encode(token.replace("\u2581", "")[:MAX_WORD_CHARS]) or [UNK_ID] for token in tokens]

    def encode_words(self, words: Sequence[str]) -> tuple[list, list | None]:
        """Pre-split words (tagging): one token entry per word."""
        return [self.word_token(word) for word in words], self.char_ids(words)

    def encode_text(self, text: str, max_len: int) -> tuple[list[int], list | None]:
        """Raw text (classification): words looked up whole, or the text's SentencePiece pieces."""
        if self._word_ids is not None:
            words = split_words(text)[:max_len]
            return [self.word_token(word) for word in words] or [UNK_ID], self.char_ids(words or ["?"])
        ids = self.tokenizer.encode(text)[:max_len] or [UNK_ID]
        return ids, self.char_ids([self.tokenizer.id_to_token(i) for i in ids])

    # ---- saving ---------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        self.tokenizer.save(directory)
        if self.chars is not None:
            self.chars.save(directory / "chars")
        self.labels.save(directory)
        (directory / INPUTS_FILE).write_text(json.dumps(self.info, indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> "InputEncoder":
        directory = Path(directory)
        chars = load_tokenizer(directory / "chars") if (directory / "chars").is_dir() else None
        info = json.loads((directory / INPUTS_FILE).read_text(encoding="utf-8"))
        return cls(load_tokenizer(directory), LabelVocabulary.load(directory), chars, info)

    def with_labels(self, labels: LabelVocabulary) -> "InputEncoder":
        return InputEncoder(self.tokenizer, labels, self.chars, self.info)


def build_input_encoder(cfg, words: Iterable[str], texts: Iterable[str] | None, labels: LabelVocabulary,
                        info: dict[str, Any] | None = None) -> InputEncoder:
    """Fit the tokenizer on the training data: a word vocabulary from `words` (most frequent first),
    or SentencePiece on `texts` (default: the words joined); characters from the words."""
    words = list(words)
    info = {**(info or {}), "tokenizer": cfg.tokenizer, "lowercase": cfg.lowercase}
    if cfg.tokenizer == "word":
        counts = collections.Counter(word.lower() if cfg.lowercase else word for word in words)
        for special in SPECIAL_TOKENS:
            counts.pop(special, None)
        keep = (cfg.vocab_size or 20000) - len(SPECIAL_TOKENS)
        ranked = sorted(counts, key=lambda word: (-counts[word], word))[:keep]
        if getattr(cfg, "vectors_vocab", 0) and getattr(cfg, "pretrained_embeddings", ""):
            known = set(ranked)
            ranked += [word for word in vector_words(cfg.pretrained_embeddings, cfg.vectors_vocab)
                       if word not in known and word not in SPECIAL_TOKENS]
        tokenizer: Tokenizer = WordTokenizer(list(SPECIAL_TOKENS) + ranked, lowercase=cfg.lowercase)
    else:
        corpus = list(texts) if texts is not None else [" ".join(words)]
        tokenizer = train_tokenizer("spm", corpus, vocab_size=cfg.vocab_size or None, lowercase=cfg.lowercase)
    chars = None
    if cfg.char_features != "none":
        char_counts = collections.Counter(char for word in words for char in word)
        for special in SPECIAL_TOKENS:
            char_counts.pop(special, None)
        chars = CharTokenizer(list(SPECIAL_TOKENS) + sorted(char_counts, key=lambda c: (-char_counts[c], c)))
    return InputEncoder(tokenizer, labels, chars, info)


def encoder_arguments(cfg, prep: InputEncoder, token_pieces: bool = False) -> dict[str, Any]:
    """The SequenceEncoder's arguments for these settings and this preprocessor."""
    return {"vocab_size": prep.tokenizer.vocab_size, "arch": recurrent_cell(cfg.arch, cfg.cell), "units": cfg.units, "num_layers": cfg.layers,
            "embedding_dim": cfg.embedding_dim or None, "heads": cfg.heads, "positions": cfg.positions,
            "max_length": cfg.max_len, "dropout": cfg.dropout, "word_dropout": cfg.word_dropout,
            "token_pieces": token_pieces, "char_features": cfg.char_features,
            "char_vocab_size": prep.chars.vocab_size if prep.chars else 0, "char_dim": cfg.char_dim,
            "char_units": cfg.char_units, "seed": cfg.seed}


def dummy_inputs(prep: InputEncoder, token_pieces: bool) -> dict[str, np.ndarray]:
    """A one-example input dict, to build a model's weights."""
    return padded_inputs([([[4]] if token_pieces else [4], [[4]] if prep.chars else None)])


def padded_inputs(encoded: Sequence[tuple[list, list | None]]) -> dict[str, np.ndarray]:
    """[(tokens, chars)] -> {"tokens": (batch, time[, pieces]), "chars": (batch, time, chars)}, 0-padded."""
    tokens = [tokens for tokens, _ in encoded]
    inputs = {"tokens": pad_nested(tokens) if isinstance(tokens[0][0], list) else pad(tokens)}
    if encoded[0][1] is not None:  # one character row per token: the same time axis
        inputs["chars"] = pad_nested([chars for _, chars in encoded])
    return inputs


def input_signature(prep: InputEncoder, token_pieces: bool) -> dict[str, Any]:
    import tensorflow as tf

    signature = {"tokens": tf.TensorSpec((None, None, None) if token_pieces else (None, None), tf.int32)}
    if prep.chars is not None:
        signature["chars"] = tf.TensorSpec((None, None, None), tf.int32)
    return signature


def run_batches(function, encoded: Sequence[tuple[list, list | None]], batch_size: int,
                progress: Progress | None = None) -> list[np.ndarray]:
    """function(inputs dict) -> per-example outputs, applied in length-sorted batches; returned in
    the order of `encoded`. `progress` hears of the examples as their batches are done."""
    outputs: list[Any] = [None] * len(encoded)
    if progress is not None:
        progress.expect(len(encoded))
    for indices in length_bucketed_batches([len(tokens) for tokens, _ in encoded], batch_size, shuffle=False):
        results = np.asarray(function(padded_inputs([encoded[i] for i in indices])))
        for row, index in enumerate(indices):
            outputs[index] = results[row]
        if progress is not None:
            progress.advance(len(indices))
    return outputs


def compiled_inference(function, prep: InputEncoder, token_pieces: bool):
    """`function` as one tf.function for every batch shape (no retracing per length)."""
    import tensorflow as tf

    traced = tf.function(function, input_signature=[input_signature(prep, token_pieces)], reduce_retracing=True)
    return lambda inputs: traced(inputs).numpy()


def run_inference(run, name: str, function, prep: InputEncoder, token_pieces: bool):
    """compiled_inference(function) made once per Run and kept in run.compiled[name]: made anew for
    each call, it would trace on every call (a served run answers many)."""
    if name not in run.compiled:
        run.compiled[name] = compiled_inference(function, prep, token_pieces)
    return run.compiled[name]


def accuracy_fit_plan(cfg, train: tuple[list, list], valid: tuple[list, list], input_spec, target_spec,
                      collate) -> FitPlan:
    """The FitPlan of classify and tag: (encoded inputs, targets) batched by length, every batch padded
    to its longest example, `collate(targets)` -> the batch's target array; validation accuracy watched."""
    batch_size = fit_batch_size(cfg.batch_size, len(train[0]), "examples")
    signature = (input_spec, target_spec)

    def batch(examples, targets, indices):
        return padded_inputs([examples[i] for i in indices]), collate([targets[i] for i in indices])

    train_batches, steps = bucketed_epochs([len(tokens) for tokens, _ in train[0]], batch_size, cfg.seed,
                                           cfg.steps_per_epoch, lambda indices: batch(*train, indices), signature)
    valid_batches = length_bucketed_batches([len(tokens) for tokens, _ in valid[0]], batch_size, shuffle=False)
    valid_data = batch_dataset(lambda: (batch(*valid, indices) for indices in valid_batches), signature,
                               len(valid_batches))
    return FitPlan(train_batches, steps, valid_data, monitor="val_accuracy", mode="max")
