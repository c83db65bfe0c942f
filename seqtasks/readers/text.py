"""Readers for the corpora a user names on the command line.

A corpus is named by one string: a file, a folder (read recursively), a glob, `.gz` files, or
`tfds:NAME[:SPLIT]` for a prepared TensorFlow Datasets dataset. `open_text_source` resolves that
string and checks the start of every file right away, so that a wrong path, a binary file or a
file in the wrong encoding fails before any training starts. Text is always streamed.

The private helpers (`_resolve_paths`, `_check_head`, `_numbered_lines`) are shared building
blocks for the other readers of this module (TSV, CoNLL), so every format reports bad input the
same way.
"""
from __future__ import annotations

import codecs
import glob
import gzip
import hashlib
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterator, TextIO

from seqtasks.errors import UserError

__all__ = ["TextSource", "open_text_source", "open_text_file"]

HEAD_BYTES = 64 * 1024  # how much of each file is checked when a source is opened
CHUNK_BYTES = 1024 * 1024  # read size when hashing whole files
BLOCK_CHARS = 1 << 20  # characters per block when text is streamed in blocks
TFDS_PREFIX = "tfds:"
TEXT_FEATURE_NAMES = ("text", "content", "document", "sentence", "article")
_GLOB_CHARS = "*?["
# Errors that a damaged or mislabelled .gz file raises while it is being read.
_GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error)


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
            # Hold one line back: only the next read tells whether it was the file's last.
            previous: str | None = None
            for _, line in _numbered_lines(path, self.role):
                if previous is not None:
                    yield previous, self.doc_per_line
                previous = line
                saw_text = saw_text or not line.isspace()
            if previous is not None:
                yield previous, True
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
            previous: str | None = None  # held back: only the next read tells whether it was the last
            for block in _text_blocks(path, self.role, max_chars):
                if previous is not None:
                    yield previous, False
                previous = block
                saw_text = saw_text or not block.isspace()
            if previous is not None:
                yield previous, True
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
            _, info = _load_tfds(self.tfds_name, self.tfds_split, self.tfds_data_dir, self.spec)
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
            for chunk in _file_chunks(path, self.role):
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
            _, info = _load_tfds(self.tfds_name, self.tfds_split, self.tfds_data_dir, self.spec)
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
            for chunk in _file_chunks(path, self.role):
                inner.update(chunk)
            outer.update(inner.digest())
        return outer.hexdigest()

    def _tfds_lines(self) -> Iterator[tuple[str, bool]]:
        import tensorflow_datasets as tfds  # slow to import: only tfds sources pay for it

        assert self.tfds_name and self.tfds_split and self.tfds_text_key
        dataset, _ = _load_tfds(self.tfds_name, self.tfds_split, self.tfds_data_dir, self.spec)
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
    paths = _resolve_paths(spec, role)
    # Check every file (not only until text is found): a bad file should fail now, not later.
    may_hold_text = [_check_head(path, role) for path in paths]
    if not any(may_hold_text):
        raise _empty_error(spec, paths, role)
    return TextSource(spec=spec, paths=paths, doc_per_line=doc_per_line, role=role)


def open_text_file(path: Path | str) -> TextIO:
    """Open a text file for reading: UTF-8 (a leading BOM is dropped), .gz decompressed on the fly.

    Universal newlines: "\\r\\n" (and a lone "\\r") are read as "\\n".
    """
    path = Path(path)
    if _is_gzip(path):
        return gzip.open(path, "rt", encoding="utf-8-sig", newline=None)
    return open(path, "r", encoding="utf-8-sig", newline=None)


# --- files ---------------------------------------------------------------------------------


def _is_gzip(path: Path) -> bool:
    return path.suffix.lower() == ".gz"


def _open_binary(path: Path) -> BinaryIO:
    return gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")


def _resolve_paths(spec: str, role: str) -> tuple[Path, ...]:
    """The files a spec names: a file, every visible file below a folder, or a glob's matches."""
    path = Path(os.path.expanduser(spec))
    if path.is_file():
        return (path,)
    if path.is_dir():
        files = _visible_files_below(path)
        if not files:
            raise UserError(
                f"the folder given as {role} holds no files",
                str(path),
                "put the text files in it (hidden .files are skipped) or name another folder",
            )
        return files
    if any(char in spec for char in _GLOB_CHARS):
        matches = glob.glob(os.path.expanduser(spec), recursive=True)
        files = tuple(sorted(Path(match) for match in matches if os.path.isfile(match)))
        if not files:
            raise UserError(
                f"the pattern given as {role} matches no files",
                spec,
                "check the pattern; quote it so the shell leaves it alone, and use ** for subfolders",
            )
        return files
    if path.exists():
        raise UserError(f"the {role} is not a regular file or folder", spec, "name a text file")
    raise UserError(
        f"no such file or folder for the {role}",
        spec,
        f"check the path (relative paths start at {os.getcwd()})",
    )


def _visible_files_below(folder: Path) -> tuple[Path, ...]:
    """All regular files below folder, recursively, without hidden files and folders, sorted."""
    found: list[Path] = []
    for root, dirnames, filenames in os.walk(folder):
        # Pruning in place stops os.walk from entering .git, .cache and the like.
        dirnames[:] = [name for name in dirnames if not name.startswith(".")]
        for name in filenames:
            candidate = Path(root) / name
            if not name.startswith(".") and candidate.is_file():
                found.append(candidate)
    return tuple(sorted(found))


def _check_head(path: Path, role: str) -> bool:
    """Check the first 64 KiB of a file: readable, no NUL byte, valid UTF-8.

    Returns whether the file may hold text: False only when the whole file was read and is blank.
    """
    try:
        with _open_binary(path) as stream:
            head = stream.read(HEAD_BYTES + 1)
    except _GZIP_ERRORS:
        raise _bad_gzip_error(path, role) from None
    except OSError as error:
        raise _unreadable_error(path, role, error) from None
    whole_file = len(head) <= HEAD_BYTES
    head = head[:HEAD_BYTES]
    nul_at = head.find(b"\0")
    if nul_at >= 0:
        raise UserError(
            f"the {role} file looks binary (a NUL byte at byte {nul_at}), not text",
            str(path),
            "name plain UTF-8 text files (.gz is fine); UTF-16 text can be converted with "
            f"iconv -f UTF-16 -t UTF-8 {path} > {path}.utf8",
        )
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        # final only when the file ended: the head may cut a multi-byte character in two.
        text = decoder.decode(head, final=whole_file)
    except UnicodeDecodeError as error:
        raise _not_utf8_error(path, head.count(b"\n", 0, error.start) + 1, role) from None
    return not whole_file or bool(text.lstrip("\ufeff").strip())


def _numbered_lines(path: Path, role: str) -> Iterator[tuple[int, str]]:
    """Stream (line_number, line) from a file; bad bytes raise UserError naming the exact line."""
    line_number = 0
    try:
        with open_text_file(path) as stream:
            for line_number, line in enumerate(stream, 1):
                yield line_number, line
    except UnicodeDecodeError:
        # The text layer decodes ahead in blocks, so its position is not the line: rescan.
        bad_line = _first_non_utf8_line(path) or line_number + 1
        raise _not_utf8_error(path, bad_line, role) from None
    except _GZIP_ERRORS:
        raise _bad_gzip_error(path, role) from None
    except OSError as error:
        raise _unreadable_error(path, role, error) from None


def _text_blocks(path: Path, role: str, max_chars: int) -> Iterator[str]:
    """Stream a file's text in blocks of at most max_chars characters; errors as _numbered_lines."""
    try:
        with open_text_file(path) as stream:
            while block := stream.read(max_chars):
                yield block
    except UnicodeDecodeError:
        raise _not_utf8_error(path, _first_non_utf8_line(path) or 1, role) from None
    except _GZIP_ERRORS:
        raise _bad_gzip_error(path, role) from None
    except OSError as error:
        raise _unreadable_error(path, role, error) from None


def _first_non_utf8_line(path: Path) -> int | None:
    """The 1-based number of the first line holding invalid UTF-8, streaming the raw bytes."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    newlines_before = 0
    with _open_binary(path) as stream:
        while True:
            chunk = stream.read(CHUNK_BYTES)
            pending = decoder.getstate()[0]  # bytes of a character cut at the last chunk's end
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as error:
                return newlines_before + (pending + chunk).count(b"\n", 0, error.start) + 1
            if not chunk:
                return None
            newlines_before += chunk.count(b"\n")


def _file_chunks(path: Path, role: str) -> Iterator[bytes]:
    """The raw bytes of a file (compressed bytes for .gz) in 1 MiB chunks."""
    try:
        with open(path, "rb") as stream:
            while chunk := stream.read(CHUNK_BYTES):
                yield chunk
    except OSError as error:
        raise _unreadable_error(path, role, error) from None


def _split_keep_newlines(text: str) -> list[str]:
    """Split on "\\n" only (str.splitlines also splits on form feeds and the like), keeping it."""
    lines = text.split("\n")
    kept = [line + "\n" for line in lines[:-1]]
    if lines[-1]:
        kept.append(lines[-1])
    return kept


def _not_utf8_error(path: Path, line: int, role: str) -> UserError:
    return UserError(
        f"the {role} file is not valid UTF-8 text",
        f"{path}, line {line}",
        f"convert it to UTF-8, e.g. iconv -f LATIN1 -t UTF-8 {path} > {path}.utf8 "
        "(use the file's real encoding in place of LATIN1 if you know it)",
    )


def _bad_gzip_error(path: Path, role: str) -> UserError:
    return UserError(
        f"the {role} file ends in .gz but is not a complete gzip file",
        str(path),
        "re-create it with gzip, or rename it if it is plain text",
    )


def _unreadable_error(path: Path, role: str, error: OSError) -> UserError:
    reason = error.strerror or str(error)
    return UserError(f"cannot read the {role} file ({reason})", str(path), "check that it exists and is readable")


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
    _, info = _load_tfds(name, split, data_dir, spec)
    chosen = _pick_text_feature(info.features, text_key, spec)
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


def _load_tfds(name: str, split: str | None, data_dir: str | None, spec: str) -> tuple[Any, Any]:
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


def _pick_text_feature(features: Any, text_key: str | None, spec: str) -> str:
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
