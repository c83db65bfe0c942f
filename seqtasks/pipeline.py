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
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from seqtasks import disk_cache
from seqtasks.batching import batch_dataset, pad, stream_dataset
from seqtasks.errors import UserError
from seqtasks.tokenizers import safe_pieces

__all__ = ["EncodedCorpus", "Progress", "encode_corpus", "corpus_pieces", "training_corpora"]

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
    key = hashlib.sha256(f"{_FORMAT}|{source.fingerprint()}|{tokenizer.fingerprint()}".encode()).hexdigest()[:32]

    def whole(meta: dict, ids_path: Path) -> bool:
        return (meta["format"] == _FORMAT and ids_path.stat().st_size == meta["tokens"] * np.dtype(meta["dtype"]).itemsize
                and meta["tokens"] > 0)

    def build(temporary: Path) -> dict:
        dtype = np.uint16 if tokenizer.vocab_size <= np.iinfo(np.uint16).max else np.uint32
        total_bytes = sum(path.stat().st_size for path in source.paths)
        progress = Progress(total_bytes, "tokenizing") if show_progress else None
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
        return {"format": _FORMAT, "dtype": np.dtype(dtype).name, "tokens": tokens, "characters": characters,
                "source": source.spec}

    ids_path, meta = disk_cache.cached_entry(cache_dir, key, ".ids", build, whole)
    return EncodedCorpus(np.memmap(ids_path, dtype=meta["dtype"], mode="r"), meta["characters"])


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

    def pass_batches(pass_index: int) -> np.ndarray:
        starts = _pass_window_starts(len(ids), seq_len, seed, pass_index)
        return starts[:per_pass * batch_size].reshape(per_pass, batch_size)

    def batch(_, starts: np.ndarray):
        tokens = ids[starts[:, None] + window[None, :]].astype(np.int32)
        return tokens[:, :-1], tokens[:, 1:]

    spec = tf.TensorSpec((batch_size, seq_len), tf.int32)
    return stream_dataset(pass_batches, per_pass, range(first_batch, first_batch + num_batches), batch, (spec, spec))


def language_model_windows(corpus: EncodedCorpus, seq_len: int, batch_size: int, pad_id: int = 0):
    """Evaluation batches: windows tile the ids from the start; the last window is padded with pad_id,
    which the loss ignores, so every token is scored exactly once. (inputs, targets) int32."""
    import tensorflow as tf

    ids = corpus.ids
    starts = np.arange(0, max(len(ids) - 1, 0), seq_len, dtype=np.int64)

    def batches():
        for first in range(0, len(starts), batch_size):
            windows = [ids[start:start + seq_len + 1] for start in starts[first:first + batch_size]]
            tokens = pad(windows, seq_len + 1, value=pad_id)
            yield tokens[:, :-1], tokens[:, 1:]

    spec = tf.TensorSpec((None, seq_len), tf.int32)
    return batch_dataset(batches, (spec, spec), -(-len(starts) // batch_size))


def training_corpora(train_source, valid_source, tokenizer, seq_len: int, valid_fraction: float
                     ) -> tuple[EncodedCorpus, EncodedCorpus]:
    """(training ids, validation ids) of TextSources, encoded (cached). With no validation source, the
    last valid_fraction of the training ids is held out: the tail of the stream, not random windows,
    since neighbouring windows share text. A corpus of a window or two is too small to hold out: it
    trains and validates on all of it, said in a note. Too short to train on is a UserError."""
    train = encode_corpus(train_source, tokenizer)
    if valid_source is not None:
        valid = encode_corpus(valid_source, tokenizer)
    else:
        whole = valid = train
        if count_windows(len(whole), seq_len) >= 1:  # (else the error below names the whole count)
            train, valid = whole.split(valid_fraction)
        if whole is not train and (len(valid) < 2 or count_windows(len(train), seq_len) < 1):
            print(f"note: {len(whole):,} tokens are too few to hold out --valid-fraction {valid_fraction:g}: "
                  "validation scores the training text (give --valid for a fair score)", flush=True)
            train, valid = whole, whole
    if count_windows(len(train), seq_len) < 1:
        fits = f"use --seq-len {len(train) - 1} or less, or more text" if len(train) > 1 else "give more text"
        raise UserError(f"the training text is shorter than one window: {len(train)} tokens, and a window of "
                        f"--seq-len {seq_len} takes {seq_len + 1}", train_source.spec, fits)
    if len(valid) < 2:
        raise UserError("the validation text is too short to score", (valid_source or train_source).spec,
                        "give a longer --valid text or raise --valid-fraction")
    return train, valid
