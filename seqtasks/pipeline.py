"""Examples -> tf.data: encode a corpus once, cache its ids on disk, stream training windows.

A corpus is encoded by the tokenizer's batch encoder, a batch of lines at a time, and written as a flat
array of token ids (an end-of-document id between documents) to a cache file keyed by the corpus'
checksum and the tokenizer's fingerprint. Training reads windows from that file through a memory map,
so memory stays flat however large the corpus.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from seqtasks.errors import UserError

ENCODE_BATCH_LINES = 4096


def default_cache_dir() -> Path:
    root = os.environ.get("SEQTASKS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "seqtasks")
    return Path(root) / "encoded"


@dataclass(frozen=True)
class EncodedCorpus:
    """Token ids of a whole corpus (a read-only memory map) and the number of characters they encode."""

    ids: np.ndarray
    characters: int

    def __len__(self) -> int:
        return len(self.ids)

    def split(self, fraction: float) -> tuple["EncodedCorpus", "EncodedCorpus"]:
        """The first (1 - fraction) of the ids and the last fraction (characters shared pro rata)."""
        cut = len(self.ids) - int(round(len(self.ids) * fraction))
        head_chars = int(round(self.characters * cut / max(len(self.ids), 1)))
        return EncodedCorpus(self.ids[:cut], head_chars), EncodedCorpus(self.ids[cut:], self.characters - head_chars)


def encode_corpus(source, tokenizer, cache_dir: str | Path | None = None, show_progress: bool = True) -> EncodedCorpus:
    """Encode a TextSource with `tokenizer`, or reuse the cached ids of an earlier identical call.

    Documents are separated by the tokenizer's EOS id. The cache file appears only once complete.
    """
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    key = hashlib.sha256(f"{source.fingerprint()}|{tokenizer.fingerprint()}".encode()).hexdigest()[:32]
    ids_path, meta_path = cache_dir / f"{key}.ids", cache_dir / f"{key}.json"
    if ids_path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        return EncodedCorpus(np.memmap(ids_path, dtype=meta["dtype"], mode="r"), meta["characters"])
    cache_dir.mkdir(parents=True, exist_ok=True)
    dtype = np.uint16 if tokenizer.vocab_size <= np.iinfo(np.uint16).max else np.uint32
    temporary = ids_path.with_suffix(f".tmp{os.getpid()}")
    total_bytes = source.describe().get("bytes") or 0
    progress = _Progress(total_bytes, "tokenizing") if show_progress else None
    characters = tokens = 0
    try:
        with open(temporary, "wb") as out:
            for batch, ends in _line_batches(source):
                encoded = tokenizer.encode_batch(batch)
                flat: list[int] = []
                for ids, end in zip(encoded, ends):
                    flat.extend(ids)
                    if end:
                        flat.append(tokenizer.eos_id)
                np.asarray(flat, dtype=dtype).tofile(out)
                tokens += len(flat)
                batch_chars = sum(len(line) for line in batch)
                characters += batch_chars
                if progress:
                    progress.advance(sum(len(line.encode("utf-8")) for line in batch))
        if progress:
            progress.finish()
        os.replace(temporary, ids_path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    meta_path.write_text(json.dumps({"dtype": np.dtype(dtype).name, "tokens": tokens, "characters": characters,
                                     "source": source.spec}))
    if tokens == 0:
        raise UserError("the text encodes to no tokens", source.spec, "give a corpus with some text in it")
    return EncodedCorpus(np.memmap(ids_path, dtype=dtype, mode="r"), characters)


def _line_batches(source) -> Iterator[tuple[list[str], list[bool]]]:
    lines: list[str] = []
    ends: list[bool] = []
    for line, end in source.lines():
        lines.append(line)
        ends.append(end)
        if len(lines) >= ENCODE_BATCH_LINES:
            yield lines, ends
            lines, ends = [], []
    if lines:
        yield lines, ends


class _Progress:
    """A one-line progress bar on stderr for long preprocessing (bytes done, rate)."""

    def __init__(self, total: int, label: str):
        self.total, self.label, self.done = total, label, 0
        self.start = self.last = time.monotonic()
        self.visible = False

    def advance(self, amount: int) -> None:
        self.done += amount
        now = time.monotonic()
        if now - self.last < 0.5 or now - self.start < 1.0:
            return  # small corpora finish silently
        self.last, self.visible = now, True
        self._draw(now)

    def _draw(self, now: float) -> None:
        rate = self.done / max(now - self.start, 1e-9) / 1e6
        if self.total:
            share = min(self.done / self.total, 1.0)
            bar = "=" * int(share * 30)
            sys.stderr.write(f"\r{self.label} [{bar:<30}] {share:4.0%} {self.done / 1e6:,.1f} MB {rate:.1f} MB/s")
        else:
            sys.stderr.write(f"\r{self.label} {self.done / 1e6:,.1f} MB {rate:.1f} MB/s")
        sys.stderr.flush()

    def finish(self) -> None:
        if self.visible:
            self._draw(time.monotonic())
            sys.stderr.write("\n")


def count_windows(num_tokens: int, seq_len: int) -> int:
    """Training windows every pass holds, whatever its random offset (see _pass_window_starts): with an
    offset of up to seq_len - 1 tokens, one window fewer than tile the ids from the start."""
    if num_tokens > 2 * seq_len + 1:
        return num_tokens // seq_len - 1
    return max((num_tokens - 1) // seq_len, 0)


def fit_batch_size(batch_size: int, available: int, items: str) -> int:
    """The batch size for training data of `available` items (`items`: "examples", "windows of 128
    tokens"): batch_size, or all of them when there are fewer, said in one line, so that a small
    corpus trains (one step per pass) instead of failing on a batch it cannot fill."""
    if available >= batch_size or available < 1:
        return batch_size
    print(f"note: the training data holds {available} {items}: batch size {batch_size} -> {available} "
          "(one step per pass over it)", flush=True)
    return available


def batches_per_pass(corpus: EncodedCorpus, seq_len: int, batch_size: int) -> int:
    """Full training batches in one pass over the corpus."""
    return count_windows(len(corpus.ids), seq_len) // batch_size


def _pass_window_starts(num_tokens: int, seq_len: int, seed: int, pass_index: int) -> np.ndarray:
    """Window starts of one pass: a random offset in [0, seq_len), then every seq_len tokens, shuffled.
    Both depend only on (seed, pass_index)."""
    rng = np.random.default_rng([seed, pass_index])
    offset = int(rng.integers(0, seq_len)) if num_tokens > 2 * seq_len + 1 else 0
    starts = np.arange(offset, num_tokens - seq_len, seq_len, dtype=np.int64)
    rng.shuffle(starts)
    return starts[:count_windows(num_tokens, seq_len)]  # every pass the same size, whatever its offset


def language_model_batches(corpus: EncodedCorpus, seq_len: int, batch_size: int, *, seed: int,
                           first_batch: int, num_batches: int, pad_id: int = 0):
    """Training batches `first_batch .. first_batch + num_batches - 1` of an endless stream of passes.

    Pass p visits every window once in an order set by (seed, p), so any slice of the stream can be
    rebuilt exactly: an epoch is a slice, and a resumed run starts its slice at the next batch.
    Yields (inputs, targets), each (batch, seq_len) int32, targets = inputs shifted by one.
    """
    import tensorflow as tf

    ids = corpus.ids
    per_pass = batches_per_pass(corpus, seq_len, batch_size)
    window = np.arange(seq_len + 1, dtype=np.int64)

    def batches():
        pass_index, starts = -1, None
        for global_batch in range(first_batch, first_batch + num_batches):
            if global_batch // per_pass != pass_index:
                pass_index = global_batch // per_pass
                starts = _pass_window_starts(len(ids), seq_len, seed, pass_index)
            first = (global_batch % per_pass) * batch_size
            tokens = ids[starts[first:first + batch_size, None] + window[None, :]].astype(np.int32)
            yield tokens[:, :-1], tokens[:, 1:]

    spec = tf.TensorSpec((batch_size, seq_len), tf.int32)
    dataset = tf.data.Dataset.from_generator(batches, output_signature=(spec, spec))
    return dataset.apply(tf.data.experimental.assert_cardinality(num_batches)).prefetch(tf.data.AUTOTUNE)


def language_model_windows(corpus: EncodedCorpus, seq_len: int, batch_size: int, pad_id: int = 0):
    """Evaluation batches: windows tile the ids from the start; the last window is padded with pad_id,
    which the loss ignores, so every token is scored exactly once. (inputs, targets) int32."""
    import tensorflow as tf

    ids = corpus.ids
    starts = np.arange(0, max(len(ids) - 1, 0), seq_len, dtype=np.int64)
    window = np.arange(seq_len + 1, dtype=np.int64)

    def batches():
        for first in range(0, len(starts), batch_size):
            positions = starts[first:first + batch_size, None] + window[None, :]
            valid = positions < len(ids)
            tokens = np.where(valid, ids[np.minimum(positions, len(ids) - 1)], pad_id).astype(np.int32)
            yield tokens[:, :-1], tokens[:, 1:]

    spec = tf.TensorSpec((None, seq_len), tf.int32)
    dataset = tf.data.Dataset.from_generator(batches, output_signature=(spec, spec))
    num_batches = -(-len(starts) // batch_size)
    return dataset.apply(tf.data.experimental.assert_cardinality(num_batches)).prefetch(tf.data.AUTOTUNE)


def length_bucketed_batches(lengths, batch_size: int, *, shuffle: bool, seed: int = 0, epoch: int = 0,
                            window_batches: int = 100) -> list[np.ndarray]:
    """Example indices grouped into batches of similar length, so padding stays small.

    Training (shuffle=True): the examples are shuffled, sorted by length within windows of
    window_batches × batch_size consecutive examples, cut into batches, and the batches shuffled; all
    of it depends only on (seed, epoch), so a resumed run rebuilds the same batches and skips the ones
    it has seen. Evaluation: sorted by length, shortest first. Either way every example appears once,
    in ceil(n / batch_size) batches (the last may be smaller).
    """
    lengths = np.asarray(lengths)
    if not shuffle:
        order = np.argsort(lengths, kind="stable")
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    window = batch_size * window_batches
    batches = []
    for start in range(0, len(order), window):
        chunk = order[start:start + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]
