"""Examples -> tf.data: encode a corpus once, cache its ids on disk, stream training windows.

A corpus is read in blocks of 128K characters (whatever its line structure: a file with no
newline takes no more memory than one of short lines), cut where its tokenizer would split anyway,
encoded in bulk, and written as a flat array of token ids to a cache file keyed by the corpus'
checksum and the tokenizer's fingerprint (seqtasks.disk_cache keeps that folder tidy and bounded).
The array starts with the end-of-document id and has one after every document, so every token of
the text, the first included, is predicted from a start of document, as a prompt is. Training reads
windows from that file through a memory map, so memory stays flat however large the corpus.
"""
from __future__ import annotations

import hashlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from seqtasks import disk_cache
from seqtasks.disk_cache import default_cache_dir
from seqtasks.errors import UserError
from seqtasks.tokenizers import safe_pieces

__all__ = ["EncodedCorpus", "Progress", "default_cache_dir", "encode_corpus", "corpus_pieces"]

READ_BLOCK_CHARS = 1 << 17  # characters read at once
ENCODE_BATCH_CHARS = 1 << 17  # characters encoded at once: their arrays stay in the CPU cache
_FORMAT = "seqtasks ids v2"  # v2: a leading end-of-document id


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


def corpus_pieces(source, kind: str) -> Iterator[tuple[str, bool]]:
    """The text of a TextSource as (piece, ends_document), in bounded pieces cut only where a
    `kind` tokenizer splits anyway (with doc_per_line, each line is a piece that ends a document)."""
    blocks = source.blocks(READ_BLOCK_CHARS)
    if source.doc_per_line:
        blocks = _lines_as_documents(blocks)
    return safe_pieces(blocks, kind)


def _lines_as_documents(blocks: Iterator[tuple[str, bool]]) -> Iterator[tuple[str, bool]]:
    for block, ends_document in blocks:
        lines = block.split("\n")
        for line in lines[:-1]:
            yield line + "\n", True
        if lines[-1]:  # the start of a line the next block goes on with, or a file's unterminated last line
            yield lines[-1], ends_document


def encode_corpus(source, tokenizer, cache_dir: str | Path | None = None, show_progress: bool = True) -> EncodedCorpus:
    """Encode a TextSource with `tokenizer`, or reuse the cached ids of an earlier identical call.

    The ids start with the tokenizer's EOS id and have one after every document (a tokenizer whose
    ids already end a line with EOS, the whitespace one, gets no second). The cache entry appears
    only once complete; a damaged one is rebuilt.
    """
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    key = hashlib.sha256(f"{_FORMAT}|{source.fingerprint()}|{tokenizer.fingerprint()}".encode()).hexdigest()[:32]
    ids_path, meta_path = cache_dir / f"{key}.ids", cache_dir / f"{key}.json"

    def whole(meta: dict) -> bool:
        return (meta["format"] == _FORMAT and ids_path.stat().st_size == meta["tokens"] * np.dtype(meta["dtype"]).itemsize
                and meta["tokens"] > 0)

    meta = disk_cache.read_meta(meta_path, whole)
    if meta is not None:
        disk_cache.mark_used(ids_path, meta_path)
        disk_cache.tidy(cache_dir, keep=key)
        return EncodedCorpus(np.memmap(ids_path, dtype=meta["dtype"], mode="r"), meta["characters"])
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise disk_cache.write_error(cache_dir, error) from None
    disk_cache.tidy(cache_dir, keep=key)
    dtype = np.uint16 if tokenizer.vocab_size <= np.iinfo(np.uint16).max else np.uint32
    temporary = disk_cache.temporary_path(ids_path)
    total_bytes = sum(path.stat().st_size for path in source.paths)
    progress = Progress(total_bytes, "tokenizing") if show_progress else None
    try:
        with open(temporary, "wb") as out:
            np.asarray([tokenizer.eos_id], dtype).tofile(out)
            tokens, text_tokens, characters = 1, 0, 0
            for ids, batch_chars, batch_bytes in _encoded_batches(source, tokenizer):
                ids.astype(dtype).tofile(out)
                tokens += len(ids)
                text_tokens += int(np.count_nonzero(ids != tokenizer.eos_id))
                characters += batch_chars
                if progress:
                    progress.advance(batch_bytes)
        if progress:
            progress.finish()
        if text_tokens == 0:
            raise UserError("the text encodes to no tokens", source.spec, "give a corpus with some text in it")
        os.replace(temporary, ids_path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise disk_cache.write_error(cache_dir, error) from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    disk_cache.write_meta(meta_path, {"format": _FORMAT, "dtype": np.dtype(dtype).name, "tokens": tokens,
                                      "characters": characters, "source": source.spec})
    disk_cache.tidy(cache_dir, keep=key)  # now counting the new entry
    return EncodedCorpus(np.memmap(ids_path, dtype=dtype, mode="r"), characters)


def _encoded_batches(source, tokenizer) -> Iterator[tuple[np.ndarray, int, int]]:
    """(ids with the EOS ids of document ends, characters, UTF-8 bytes) of each batch of pieces."""
    texts: list[str] = []
    ends: list[bool] = []
    size = 0
    for text, ends_document in corpus_pieces(source, tokenizer.kind):
        texts.append(text)
        ends.append(ends_document)
        size += len(text)
        if size >= ENCODE_BATCH_CHARS:
            yield _encode_batch(tokenizer, texts, ends)
            texts, ends, size = [], [], 0
    if texts:
        yield _encode_batch(tokenizer, texts, ends)


def _encode_batch(tokenizer, texts: list[str], ends: list[bool]) -> tuple[np.ndarray, int, int]:
    ids, counts = tokenizer.encode_flat(texts)
    stops = np.cumsum(counts)
    document_ends = stops[np.asarray(ends, bool)]
    # no second EOS where the tokenizer's own ids end the document with one (whitespace: each line)
    already = np.zeros(len(document_ends), bool)
    nonempty = document_ends > 0
    already[nonempty] = ids[document_ends[nonempty] - 1] == tokenizer.eos_id
    ids = np.insert(ids, document_ends[~already], tokenizer.eos_id)
    characters = sum(map(len, texts))
    return ids, characters, len("".join(texts).encode("utf-8", "surrogatepass"))


class Progress:
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
