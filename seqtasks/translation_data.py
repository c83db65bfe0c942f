"""Sentence pairs -> token ids -> length-bucketed batches, for translation.

A pair is encoded once: source = ids + [EOS]; target input = [BOS] + ids; target output = ids + [EOS]
(teacher forcing: the decoder reads y_{<t} and predicts y_t). Encoded corpora are cached on disk,
keyed by the corpus' and the tokenizers' fingerprints (disk_cache.cached_entry, as for plain text).
Batches hold sentences of similar length (batching.length_bucketed_batches) and are padded with PAD = 0 to
their own longest sentence only.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
import numpy as np

from seqtasks import disk_cache
from seqtasks.batching import batch_dataset, holdout_split, length_bucketed_batches, pad
from seqtasks.errors import UserError
from seqtasks.tokenizers import BOS_ID, EOS_ID, Tokenizer, load_tokenizer, train_tokenizer

ENCODE_BATCH = 4096
_FORMAT = "seqtasks pairs v1"


class TranslationVocab:
    """The tokenizers of a translation run: one joint tokenizer, or one per side (--separate-vocab).

    Saved as RUN/tokenizer/ (joint) or RUN/tokenizer/source/ and RUN/tokenizer/target/ (separate).
    """

    def __init__(self, source: Tokenizer, target: Tokenizer):
        self.source, self.target = source, target

    @property
    def joint(self) -> bool:
        return self.source is self.target

    @classmethod
    def train(cls, source, cfg) -> "TranslationVocab":
        """Fit cfg.tokenizer on a ParallelSource: both sides together, or each alone (cfg.separate_vocab)."""
        options = dict(vocab_size=cfg.vocab_size or None, model_type=cfg.spm_model_type)
        if not cfg.separate_vocab:
            joint = train_tokenizer(cfg.tokenizer, (text for pair in source.pairs() for text in pair), **options)
            return cls(joint, joint)
        return cls(train_tokenizer(cfg.tokenizer, (s for s, _ in source.pairs()), **options),
                   train_tokenizer(cfg.tokenizer, (t for _, t in source.pairs()), **options))

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        if self.joint:
            self.source.save(directory)
        else:
            self.source.save(directory / "source")
            self.target.save(directory / "target")

    @classmethod
    def load(cls, directory: str | Path) -> "TranslationVocab":
        directory = Path(directory)
        if (directory / "source").is_dir():
            return cls(load_tokenizer(directory / "source"), load_tokenizer(directory / "target"))
        joint = load_tokenizer(directory)
        return cls(joint, joint)

    def fingerprint(self) -> str:
        return hashlib.sha256(f"{self.source.fingerprint()}|{self.target.fingerprint()}".encode()).hexdigest()


@dataclass
class EncodedPairs:
    """Ragged token ids of many pairs: side ids of pair i are flat[offsets[i]:offsets[i + 1]] (no specials)."""

    source_flat: np.ndarray
    source_offsets: np.ndarray
    target_flat: np.ndarray
    target_offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.source_offsets) - 1

    def source_lengths(self) -> np.ndarray:
        return np.diff(self.source_offsets) + 1  # + EOS

    def target_lengths(self) -> np.ndarray:
        return np.diff(self.target_offsets) + 1  # + BOS (input) or EOS (output)

    def lengths(self) -> np.ndarray:
        """What a batch of similar lengths groups by: the longer side of each pair."""
        return np.maximum(self.source_lengths(), self.target_lengths())

    def subset(self, indices: np.ndarray) -> "EncodedPairs":
        def take(flat, offsets):
            pieces = [flat[offsets[i]:offsets[i + 1]] for i in indices]
            lengths = np.array([len(p) for p in pieces], np.int64)
            return (np.concatenate(pieces) if pieces else flat[:0]), np.concatenate([[0], np.cumsum(lengths)])

        return EncodedPairs(*take(self.source_flat, self.source_offsets), *take(self.target_flat, self.target_offsets))

    def within(self, max_source: int, max_target: int) -> tuple["EncodedPairs", int]:
        """The pairs whose source (with EOS) and target (with BOS) fit the limits, and how many were dropped."""
        keep = np.flatnonzero((self.source_lengths() <= max_source) & (self.target_lengths() <= max_target))
        return (self if len(keep) == len(self) else self.subset(keep)), len(self) - len(keep)

    def batch(self, indices: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
        """((source (b, S), target input (b, T)), target output (b, T)) int32, padded with PAD."""
        sources = [np.append(self.source_flat[self.source_offsets[i]:self.source_offsets[i + 1]], EOS_ID)
                   for i in indices]
        targets = [self.target_flat[self.target_offsets[i]:self.target_offsets[i + 1]] for i in indices]
        source = pad(sources)
        target_in = pad([np.insert(t, 0, BOS_ID) for t in targets])
        target_out = pad([np.append(t, EOS_ID) for t in targets])
        return (source, target_in), target_out


def encode_pairs(source, vocab: TranslationVocab, cache_dir: str | Path | None = None) -> EncodedPairs:
    """Encode every pair of a ParallelSource (or reuse the cached ids of an identical earlier call)."""
    key = hashlib.sha256(f"{_FORMAT}|{source.fingerprint()}|{vocab.fingerprint()}".encode()).hexdigest()[:32]

    def whole(meta: dict, path: Path) -> bool:
        return meta["format"] == _FORMAT and path.stat().st_size == meta["bytes"]

    def build(temporary: Path) -> dict:
        arrays = _encoded_arrays(source, vocab)
        with open(temporary, "wb") as out:  # a file object: np.savez would add ".npz" to a name
            np.savez(out, sf=arrays[0], so=arrays[1], tf=arrays[2], to=arrays[3])
        return {"format": _FORMAT, "pairs": len(arrays[1]) - 1, "bytes": temporary.stat().st_size,
                "source": source.spec}

    path, _ = disk_cache.cached_entry(cache_dir, key, ".pairs.npz", build, whole)
    with np.load(path) as stored:
        return EncodedPairs(*(stored[name] for name in ("sf", "so", "tf", "to")))


def _encoded_arrays(source, vocab: TranslationVocab) -> list[np.ndarray]:
    """[source flat, source offsets, target flat, target offsets] of every pair, encoded in batches."""
    sides: tuple[list, list] = ([], [])
    batch: list[tuple[str, str]] = []

    def flush():
        sides[0].extend(vocab.source.encode_batch([s for s, _ in batch]))
        sides[1].extend(vocab.target.encode_batch([t for _, t in batch]))
        batch.clear()

    for pair in source.pairs():
        batch.append(pair)
        if len(batch) >= ENCODE_BATCH:
            flush()
    flush()
    dtype = np.uint16 if max(vocab.source.vocab_size, vocab.target.vocab_size) <= 65535 else np.uint32
    arrays = []
    for rows in sides:
        lengths = np.array([len(r) for r in rows], np.int64)
        if (lengths == 0).any():
            first = int(np.flatnonzero(lengths == 0)[0])
            raise UserError(f"pair {first + 1} encodes to no tokens", source.spec,
                            "remove pairs whose text the tokenizer cannot represent")
        arrays += [np.fromiter((i for r in rows for i in r), dtype, int(lengths.sum())),
                   np.concatenate([[0], np.cumsum(lengths)])]
    return arrays


def training_pairs(train_source, valid_source, vocab: TranslationVocab, valid_fraction: float, seed: int,
                   limits: tuple[int, int]) -> tuple[EncodedPairs, EncodedPairs]:
    """(training pairs, validation pairs) of ParallelSources, encoded (cached): without validation data, a
    seeded valid_fraction of the pairs held out (batching.holdout_split). Pairs longer than `limits`
    (source with EOS, target with BOS) are dropped from both, counted in a note; none left is a UserError."""
    encoded = encode_pairs(train_source, vocab)
    if valid_source is not None:
        valid = encode_pairs(valid_source, vocab)
    else:
        rest, held = holdout_split(len(encoded), valid_fraction, seed, what="sentence pairs", where=train_source.spec,
                                   valid_flag="--valid-src/--valid-tgt or --valid")
        encoded, valid = encoded.subset(rest), encoded.subset(held)
    train, dropped = encoded.within(*limits)
    if dropped:
        print(f"note: dropped {dropped:,} of {len(encoded):,} training pairs longer than "
              f"{limits[0]} source / {limits[1]} target tokens", flush=True)
    if not len(train):
        raise UserError("every training pair is longer than the length limits", train_source.spec,
                        "raise --max-source-len / --max-target-len")
    valid, _ = valid.within(*limits)
    if not len(valid):
        raise UserError("every validation pair is longer than the length limits", (valid_source or train_source).spec,
                        "raise --max-source-len / --max-target-len")
    return train, valid


def pair_signature():
    """((source, target input), target output) batches, each (batch, time) int32."""
    import tensorflow as tf

    ids = tf.TensorSpec((None, None), tf.int32)
    return (ids, ids), ids


def pair_dataset(pairs: EncodedPairs, batch_size: int):
    """Evaluation: every pair once, in length order, as ((source, target input), target output) batches."""
    batches = length_bucketed_batches(pairs.lengths(), batch_size, shuffle=False)
    return batch_dataset(lambda: (pairs.batch(indices) for indices in batches), pair_signature(), len(batches))
