"""Readers for the corpora a user names on the command line.

A corpus is named by one string: a file, a folder (read recursively), a glob, `.gz` files, or
`tfds:NAME[:SPLIT]` for a prepared TensorFlow Datasets dataset. `open_text_source` resolves that
string and checks the start of every file right away, so that a wrong path, a binary file or a
file in the wrong encoding fails before any training starts. Text is always streamed.

The file checks themselves (paths, heads, UTF-8 with line numbers) live in seqtasks.files, shared
with the other readers and the CLI, so every format reports bad input the same way.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from seqtasks.errors import UserError
from seqtasks.files import (HEAD_BYTES, check_text_head, file_chunks, numbered_lines, open_text_file, resolve_paths,
                            text_blocks)

__all__ = ["HEAD_BYTES", "TextSource", "open_text_source", "open_text_file"]

BLOCK_CHARS = 1 << 20  # characters per block when text is streamed in blocks
TFDS_PREFIX = "tfds:"
TEXT_FEATURE_NAMES = ("text", "content", "document", "sentence", "article")


@dataclass(frozen=True)
class TextSource:
    """A text corpus named by the user: a file, a folder, a glob, .gz files, or tfds:NAME[:SPLIT]."""

    spec: str  # what the user typed
    paths: tuple[Path, ...]  # resolved files, sorted (empty for tfds)
    doc_per_line: bool = False
    tfds_name: str | None = None
    tfds_split: str | None = None
    tfds_text_key: str | None = None
    tfds_data_dir: str | None = None
    role: str = "training data"  # used in messages: "the validation data is empty"

    def lines(self) -> Iterator[tuple[str, bool]]:
        """Stream the corpus as (line, ends_document).

        Each line keeps its trailing "\\n" (the last line of a file may lack it); "\\r\\n" is read
        as "\\n". One document per file (or per tfds example) by default: ends_document is True on
        its last line. With doc_per_line every line is a document. Files are never loaded whole.
        Raises UserError for bytes that are not UTF-8 (naming the line) and, at the end, when
        nothing but blank lines was read.
        """
        if self.tfds_name is not None:
            yield from self._tfds_lines()
            return
        saw_text = False
        for path in self.paths:
            for line, last in _marking_the_last(line for _, line in numbered_lines(path, self.role)):
                saw_text = saw_text or not line.isspace()
                yield line, last or self.doc_per_line
        if not saw_text:
            raise _empty_error(self.spec, self.paths, self.role)

    def blocks(self, max_chars: int = BLOCK_CHARS) -> Iterator[tuple[str, bool]]:
        """Stream the corpus as (text, ends_document) blocks of at most `max_chars` characters.

        A block is cut wherever `max_chars` falls (inside a line, inside a word), so memory stays
        bounded whatever the line structure, a file with no newline included. ends_document is True
        on the last block of each file (tfds: of each example). doc_per_line is the caller's to
        apply: each line inside the blocks is then a document. Same newline rules and checks as
        lines().
        """
        if self.tfds_name is not None:
            for line, ends_document in self._tfds_lines():
                for start in range(0, len(line), max_chars):
                    yield line[start:start + max_chars], ends_document and start + max_chars >= len(line)
            return
        saw_text = False
        for path in self.paths:
            for block, last in _marking_the_last(text_blocks(path, self.role, max_chars)):
                saw_text = saw_text or not block.isspace()
                yield block, last
        if not saw_text:
            raise _empty_error(self.spec, self.paths, self.role)

    def documents(self) -> Iterator[str]:
        """Stream the corpus one document at a time (its lines joined, newlines kept)."""
        parts: list[str] = []
        for line, ends_document in self.lines():
            parts.append(line)
            if ends_document:
                yield "".join(parts)
                parts = []

    def describe(self) -> dict[str, Any]:
        """What was read, for run records: files, total bytes and sha256 (or the tfds split)."""
        if self.tfds_name is not None:
            _, info = load_tfds(self.tfds_name, self.tfds_split, self.tfds_data_dir, self.spec)
            return {
                "source": self.spec,
                "name": self.tfds_name,
                "split": self.tfds_split,
                "text_key": self.tfds_text_key,
                "num_examples": int(info.splits[self.tfds_split].num_examples),
                "version": str(info.version),
                "data_dir": str(info.data_dir),
            }
        digest = hashlib.sha256()
        for path in self.paths:
            for chunk in file_chunks(path, self.role):
                digest.update(chunk)
        return {
            "source": self.spec,
            "files": [str(path) for path in self.paths],
            "bytes": sum(path.stat().st_size for path in self.paths),
            "sha256": digest.hexdigest(),
        }

    def fingerprint(self) -> str:
        """A cache key that changes whenever the text read would change.

        Files: sha256 over each file's content hash (so file boundaries, which are document
        boundaries, count) plus doc_per_line; paths are left out so a moved corpus still hits the
        cache. tfds: name, split, text feature, resolved data dir and dataset version.
        """
        if self.tfds_name is not None:
            _, info = load_tfds(self.tfds_name, self.tfds_split, self.tfds_data_dir, self.spec)
            key = {
                "tfds": self.tfds_name,
                "split": self.tfds_split,
                "text_key": self.tfds_text_key,
                "data_dir": str(info.data_dir),
                "version": str(info.version),
                "doc_per_line": self.doc_per_line,
            }
            return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
        outer = hashlib.sha256(f"seqtasks text v1 doc_per_line={self.doc_per_line}\n".encode())
        for path in self.paths:
            inner = hashlib.sha256()
            for chunk in file_chunks(path, self.role):
                inner.update(chunk)
            outer.update(inner.digest())
        return outer.hexdigest()

    def _tfds_lines(self) -> Iterator[tuple[str, bool]]:
        import tensorflow_datasets as tfds  # slow to import: only tfds sources pay for it

        assert self.tfds_name and self.tfds_split and self.tfds_text_key
        dataset, _ = load_tfds(self.tfds_name, self.tfds_split, self.tfds_data_dir, self.spec)
        saw_text = False
        for index, example in enumerate(tfds.as_numpy(dataset)):
            value = example[self.tfds_text_key]
            try:
                text = value.decode("utf-8") if isinstance(value, bytes) else str(value)
            except UnicodeDecodeError:
                raise UserError(
                    f"the text feature {self.tfds_text_key!r} is not valid UTF-8",
                    f"{self.spec}, example {index}",
                    "choose another text feature with --text-key",
                ) from None
            # Same newline rules as files read with universal newlines.
            lines = _split_keep_newlines(text.replace("\r\n", "\n").replace("\r", "\n"))
            for position, line in enumerate(lines):
                yield line, self.doc_per_line or position == len(lines) - 1
                saw_text = saw_text or not line.isspace()
        if not saw_text:
            raise _empty_error(self.spec, (), self.role)


def open_text_source(
    spec: str,
    *,
    doc_per_line: bool = False,
    text_key: str | None = None,
    data_dir: str | None = None,
    role: str = "training data",
) -> TextSource:
    """Resolve what the user typed into a checked TextSource.

    `text_key` and `data_dir` only matter for tfds sources (data_dir defaults to $TFDS_DATA_DIR).
    The first 64 KiB of every file are checked now (exists, not binary, UTF-8, not all blank), so
    most mistakes raise UserError here rather than halfway through a run.
    """
    if not spec.strip():
        raise UserError(f"no {role} was given", None, "name a file, a folder, a glob or tfds:NAME")
    if spec.startswith(TFDS_PREFIX):
        return _open_tfds_source(spec, doc_per_line, text_key, data_dir, role)
    paths = resolve_paths(spec, role)
    # Check every file (not only until text is found): a bad file should fail now, not later.
    may_hold_text = [check_text_head(path, role) for path in paths]
    if not any(may_hold_text):
        raise _empty_error(spec, paths, role)
    return TextSource(spec=spec, paths=paths, doc_per_line=doc_per_line, role=role)


def _marking_the_last(items: Iterator[str]) -> Iterator[tuple[str, bool]]:
    """(item, is_last) for each item: one item is held back, as only the next read tells whether
    it was the last of its file."""
    previous: str | None = None
    for item in items:
        if previous is not None:
            yield previous, False
        previous = item
    if previous is not None:
        yield previous, True


def _split_keep_newlines(text: str) -> list[str]:
    """Split on "\\n" only (str.splitlines also splits on form feeds and the like), keeping it."""
    lines = text.split("\n")
    kept = [line + "\n" for line in lines[:-1]]
    if lines[-1]:
        kept.append(lines[-1])
    return kept


def _empty_error(spec: str, paths: tuple[Path, ...], role: str) -> UserError:
    where = str(paths[0]) if len(paths) == 1 else spec
    if len(paths) > 1:
        detail = f"all {len(paths)} files are empty or blank"
    elif paths:
        detail = "the file is empty or blank"
    else:
        detail = "every example's text is empty or blank"
    return UserError(f"the {role} is empty", where, f"{detail}; name the corpus you meant")


# --- tfds ----------------------------------------------------------------------------------


def _open_tfds_source(
    spec: str, doc_per_line: bool, text_key: str | None, data_dir: str | None, role: str
) -> TextSource:
    """tfds:NAME[:SPLIT]: check that the prepared dataset and its text feature exist locally."""
    # Split at the first ":" only: slicing such as train[:90%] contains ":" itself.
    name, _, split = spec[len(TFDS_PREFIX):].partition(":")
    split = split or "train"
    if not name:
        raise UserError(
            f"no tfds dataset name in the {role}", spec, "write tfds:NAME[:SPLIT], e.g. tfds:imdb_reviews:train"
        )
    data_dir = data_dir or os.environ.get("TFDS_DATA_DIR") or None
    if data_dir and "://" not in data_dir and not Path(data_dir).expanduser().is_dir():
        raise UserError(
            "the tfds data folder does not exist",
            data_dir,
            "pass --tfds-dir (or set TFDS_DATA_DIR) to the folder that holds NAME/VERSION/",
        )
    _, info = load_tfds(name, split, data_dir, spec)
    chosen = pick_text_feature(info.features, text_key, spec)
    return TextSource(
        spec=spec,
        paths=(),
        doc_per_line=doc_per_line,
        tfds_name=name,
        tfds_split=split,
        tfds_text_key=chosen,
        tfds_data_dir=data_dir,
        role=role,
    )


def load_tfds(name: str, split: str | None, data_dir: str | None, spec: str) -> tuple[Any, Any]:
    """tfds.load without downloading; tfds' own errors become UserErrors saying what to do."""
    import tensorflow_datasets as tfds  # slow to import: only tfds sources pay for it

    shown_dir = data_dir or str(tfds.core.constants.DATA_DIR)
    # DatasetNotFoundError subclasses ValueError, so it must be caught before the generic branch.
    not_found = getattr(tfds.core.registered, "DatasetNotFoundError", AssertionError)
    try:
        return tfds.load(name, split=split, data_dir=data_dir, download=False, with_info=True)
    except (not_found, AssertionError):
        # Unregistered names raise DatasetNotFoundError; registered but unprepared ones assert.
        raise UserError(
            f"tfds dataset {name!r} was not found in the tfds data folder {shown_dir}",
            spec,
            f"prepare it where there is internet (tfds build {name} --data_dir {shown_dir}, or python -c \"import "
            f"tensorflow_datasets as tfds; tfds.load('{name}')\") and copy it over, "
            "or pass --tfds-dir with the folder that already holds it",
        ) from None
    except ValueError as error:
        # tfds messages can run to pages (lists of every dataset); the first line says what failed.
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0].rstrip(" :")
        if "split" in first_line.lower():
            fix = "name an existing split, e.g. tfds:NAME:train, or a slice such as train[:90%]"
        else:
            fix = "check the name; write tfds:NAME/CONFIG:SPLIT for a dataset config"
        raise UserError(f"cannot load tfds dataset {name!r}: {first_line}", spec, fix) from None


def pick_text_feature(features: Any, text_key: str | None, spec: str) -> str:
    """The feature that holds the text: text_key, else a usual name, else the first string one."""
    import tensorflow as tf

    names = list(features.keys()) if hasattr(features, "keys") else []

    def is_text(feature_name: str) -> bool:
        feature = features[feature_name]
        try:
            return tf.as_dtype(feature.dtype) == tf.string and tuple(feature.shape) == ()
        except (TypeError, AttributeError):  # nested features have no single dtype
            return False

    text_names = [feature_name for feature_name in names if is_text(feature_name)]
    listing = ", ".join(names) or "none"
    if text_key is not None:
        if text_key not in names:
            raise UserError(
                f"the dataset has no feature {text_key!r} (its features: {listing})",
                spec,
                "pass one of those names with --text-key",
            )
        if text_key not in text_names:
            raise UserError(
                f"feature {text_key!r} is not a text feature (text features: {', '.join(text_names) or 'none'})",
                spec,
                "pass a text feature with --text-key",
            )
        return text_key
    for usual in TEXT_FEATURE_NAMES:
        if usual in text_names:
            return usual
    if text_names:
        return text_names[0]
    raise UserError(
        f"the dataset has no text feature (its features: {listing})",
        spec,
        "use a dataset with a string feature, or name one with --text-key",
    )
