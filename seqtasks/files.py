"""The checks of every file a user names, in one place, each failing as one UserError.

The readers, the CLI and the loading of run folders all call these, so a missing file, a folder
where a file belongs, an empty, binary or non-UTF-8 file, or an output that cannot be written is
reported the same way wherever it was named, naming the file (and the line of a bad byte):

    inputs    resolve_paths(spec, role)        a file, the visible files below a folder, or a glob
              check_input_file(path, role)     exists, is a file, readable, not empty
              check_text_head(path, role)      the first 64 KiB: no NUL byte, valid UTF-8
              numbered_lines(path, role)       stream (number, line); bad bytes name their line
              text_blocks(path, role, n)       stream blocks of n characters, same checks
              read_json_object(path, role)     a small JSON file that must hold an object
    outputs   check_output_file(path, role)    not a folder; its folder exists and takes new files
              check_output_folder(path, role)  a folder can be made there (a run's --out)
              open_output(path, role)          the file opened for writing, after that check

`role` says what the file is for ("training data", "--output file") and appears in the message.
"""
from __future__ import annotations

import codecs
import glob
import gzip
import json
import os
import tempfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO, Iterator, TextIO

from seqtasks.errors import UserError

HEAD_BYTES = 64 * 1024  # how much of each file is checked when a source is opened
CHUNK_BYTES = 1024 * 1024  # read size when hashing or scanning whole files
_GLOB_CHARS = "*?["
# Errors that a damaged or mislabelled .gz file raises while it is being read.
GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error)


# ---- inputs -------------------------------------------------------------------------------------
def resolve_paths(spec: str, role: str) -> tuple[Path, ...]:
    """The files a spec names: a file, every visible file below a folder, or a glob's matches."""
    path = Path(os.path.expanduser(spec))
    if path.is_file():
        return (path,)
    if path.is_dir():
        files = _visible_files_below(path)
        if not files:
            raise UserError(f"the folder given as {role} holds no files", str(path),
                            "put the text files in it (hidden .files are skipped) or name another folder")
        return files
    if any(char in spec for char in _GLOB_CHARS):
        matches = glob.glob(os.path.expanduser(spec), recursive=True)
        files = tuple(sorted(Path(match) for match in matches if os.path.isfile(match)))
        if not files:
            raise UserError(f"the pattern given as {role} matches no files", spec,
                            "check the pattern; quote it so the shell leaves it alone, and use ** for subfolders")
        return files
    if path.exists():
        raise UserError(f"the {role} is not a regular file or folder", spec, "name a text file")
    raise _missing_error(spec, role)


def check_input_file(path: str | Path, role: str, allow_empty: bool = False) -> Path:
    """`path` as a Path once it is known to be a readable file (and, unless allow_empty, not empty).

    Pipes and devices pass (`--input <(command)`); only a regular file can be known to be empty.
    """
    path = Path(os.path.expanduser(str(path)))
    if path.is_dir():
        raise UserError(f"the {role} file is a folder", str(path), "name a file")
    if not path.exists():
        raise UserError(f"no such {role} file", str(path), f"check the path (relative paths start at {os.getcwd()})")
    try:
        with open(path, "rb"):
            pass
    except OSError as error:
        raise unreadable_error(path, role, error) from None
    if not allow_empty and path.is_file() and path.stat().st_size == 0:
        raise UserError(f"the {role} file is empty", str(path), "name the file you meant")
    return path


def check_text_head(path: Path, role: str) -> bool:
    """Check the first 64 KiB of a file: readable, no NUL byte, valid UTF-8.

    Returns whether the file may hold text: False only when the whole file was read and is blank.
    """
    try:
        with open_binary(path) as stream:
            head = stream.read(HEAD_BYTES + 1)
    except GZIP_ERRORS:
        raise _bad_gzip_error(path, role) from None
    except OSError as error:
        raise unreadable_error(path, role, error) from None
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
        raise not_utf8_error(path, head.count(b"\n", 0, error.start) + 1, role) from None
    return not whole_file or bool(text.lstrip("\ufeff").strip())


def open_text_file(path: Path | str) -> TextIO:
    """Open a text file for reading: UTF-8 (a leading BOM is dropped), .gz decompressed on the fly.

    Universal newlines: "\\r\\n" (and a lone "\\r") are read as "\\n".
    """
    path = Path(path)
    if is_gzip(path):
        return gzip.open(path, "rt", encoding="utf-8-sig", newline=None)
    return open(path, "r", encoding="utf-8-sig", newline=None)


def numbered_lines(path: Path, role: str) -> Iterator[tuple[int, str]]:
    """Stream (line_number, line) from a file; bad bytes raise UserError naming the exact line."""
    line_number = 0
    try:
        with open_text_file(path) as stream:
            for line_number, line in enumerate(stream, 1):
                yield line_number, line
    except UnicodeDecodeError:
        # The text layer decodes ahead in blocks, so its position is not the line: rescan.
        bad_line = first_non_utf8_line(path) or line_number + 1
        raise not_utf8_error(path, bad_line, role) from None
    except GZIP_ERRORS:
        raise _bad_gzip_error(path, role) from None
    except OSError as error:
        raise unreadable_error(path, role, error) from None


def text_blocks(path: Path, role: str, max_chars: int) -> Iterator[str]:
    """Stream a file's text in blocks of at most max_chars characters; errors as numbered_lines."""
    try:
        with open_text_file(path) as stream:
            while block := stream.read(max_chars):
                yield block
    except UnicodeDecodeError:
        raise not_utf8_error(path, first_non_utf8_line(path) or 1, role) from None
    except GZIP_ERRORS:
        raise _bad_gzip_error(path, role) from None
    except OSError as error:
        raise unreadable_error(path, role, error) from None


def checked_lines(path: str | Path, role: str) -> Iterator[str]:
    """The lines of a text file (newlines stripped) once it passed check_input_file and
    check_text_head: what `--input FILE` reads."""
    path = check_input_file(path, role)
    check_text_head(path, role)
    for _, line in numbered_lines(path, role):
        yield line.rstrip("\n")


def first_non_utf8_line(path: Path) -> int | None:
    """The 1-based number of the first line holding invalid UTF-8, streaming the raw bytes."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    newlines_before = 0
    with open_binary(path) as stream:
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


def file_chunks(path: Path, role: str) -> Iterator[bytes]:
    """The raw bytes of a file (compressed bytes for .gz) in 1 MiB chunks."""
    try:
        with open(path, "rb") as stream:
            while chunk := stream.read(CHUNK_BYTES):
                yield chunk
    except OSError as error:
        raise unreadable_error(path, role, error) from None


def read_json_object(path: str | Path, role: str, fix: str) -> dict[str, Any]:
    """A small JSON file that must hold one object (a run's config.json, train_state.json, ...).

    Every way it can be bad (a folder, unreadable, empty, not UTF-8, not JSON, cut short, not an
    object) is one UserError naming the file, with `fix` saying what to do.
    """
    path = check_input_file(path, role, allow_empty=True)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise unreadable_error(path, role, error) from None
    if not raw.strip():
        raise UserError(f"the {role} is empty", str(path), fix)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise UserError(f"the {role} is not valid UTF-8 text", f"{path}, line {line}", fix) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"the {role} is damaged: not valid JSON ({error.msg})", f"{path}, line {error.lineno}",
                        fix) from None
    if not isinstance(data, dict):
        raise UserError(f"the {role} is damaged: it holds a JSON {type(data).__name__}, not an object", str(path), fix)
    return data


# ---- outputs ------------------------------------------------------------------------------------
def check_output_file(path: str | Path, role: str) -> Path:
    """`path` as a Path once a file can be written there: not a folder, its folder exists and takes
    new files. Writability is tried, not looked up: permission bits do not stop root, and a
    read-only file system ignores them."""
    path = Path(os.path.expanduser(str(path)))
    if path.is_dir():
        raise UserError(f"the {role} is a folder", str(path), f"name a file, e.g. {path / 'out.txt'}")
    folder = path.parent
    if not folder.exists():
        raise UserError(f"the folder of the {role} does not exist", str(path), f"create it (mkdir -p {folder}) "
                        "or name a file in an existing folder")
    if not folder.is_dir():
        raise UserError(f"the {role} cannot be made: {_first_file_on(folder)} is a file, not a folder", str(path),
                        "name a file in a folder")
    try:
        if path.exists():
            with open(path, "a"):
                pass
        else:
            descriptor, probe = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.")
            os.close(descriptor)
            os.unlink(probe)
    except OSError as error:
        raise unwritable_error(path, role, error) from None
    return path


def check_output_folder(path: str | Path, role: str) -> Path:
    """`path` as a Path once a folder can be made there: its nearest existing ancestor is a folder
    that takes new entries (missing folders between are made later, as `mkdir -p` would)."""
    path = Path(os.path.expanduser(str(path)))
    ancestor = path.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UserError(f"the {role} folder cannot be made: {ancestor} is a file, not a folder", str(path),
                        "name a folder elsewhere")
    try:
        os.rmdir(tempfile.mkdtemp(dir=ancestor, prefix=f".{path.name}.probe."))
    except OSError as error:
        raise UserError(f"cannot make the {role} folder ({error.strerror or error})", str(path),
                        "choose a folder you can write to") from None
    return path


def open_output(path: str | Path, role: str) -> TextIO:
    """The output file, checked by check_output_file, opened for writing UTF-8 text."""
    path = check_output_file(path, role)
    try:
        return open(path, "w", encoding="utf-8")
    except OSError as error:
        raise unwritable_error(path, role, error) from None


def unwritable_error(path: Path, role: str, error: OSError) -> UserError:
    reason = error.strerror or str(error)
    return UserError(f"cannot write the {role} ({reason})", str(path),
                     "choose a folder you can write to" + (" and free some space" if error.errno == 28 else ""))


# ---- shared pieces ------------------------------------------------------------------------------
def is_gzip(path: Path) -> bool:
    return path.suffix.lower() == ".gz"


def open_binary(path: Path) -> BinaryIO:
    return gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")


def not_utf8_error(path: Path, line: int, role: str) -> UserError:
    return UserError(
        f"the {role} file is not valid UTF-8 text",
        f"{path}, line {line}",
        f"convert it to UTF-8, e.g. iconv -f LATIN1 -t UTF-8 {path} > {path}.utf8 "
        "(use the file's real encoding in place of LATIN1 if you know it)",
    )


def unreadable_error(path: Path, role: str, error: OSError) -> UserError:
    reason = error.strerror or str(error)
    return UserError(f"cannot read the {role} file ({reason})", str(path), "check that it exists and is readable")


def _missing_error(spec: str, role: str) -> UserError:
    return UserError(f"no such file or folder for the {role}", spec,
                     f"check the path (relative paths start at {os.getcwd()})")


def _bad_gzip_error(path: Path, role: str) -> UserError:
    return UserError(f"the {role} file ends in .gz but is not a complete gzip file", str(path),
                     "re-create it with gzip, or rename it if it is plain text")


def _first_file_on(folder: Path) -> Path:
    """The first part of `folder` that exists and is not a folder: what stands in the way."""
    for part in reversed([folder, *folder.parents]):
        if part.exists() and not part.is_dir():
            return part
    return folder


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
