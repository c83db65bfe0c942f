"""Prompt/completion pairs for conditional generation: JSONL or a two-column TSV.

    open_pair_source("pairs.jsonl")   # one object per line: {"prompt": "...", "completion": "..."}
    open_pair_source("pairs.tsv")     # prompt<TAB>completion; a first line "prompt<TAB>completion" is a header

A source is a file, a folder or a glob (as for text); files may be .gz. The format follows the file
name (.jsonl / .json -> JSONL, a .gz suffix looked through), else the first line ("{" -> JSONL), as
readers.tables decides it; everything else is read as TSV. TSV fields may hold the escapes \\n, \\t and \\\\
(a completion of several lines). Text is kept exactly as written (no stripping); blank lines are
skipped. A bad line raises UserError naming the file and line.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from seqtasks.errors import UserError
from seqtasks.readers.tables import table_format
from seqtasks.files import check_text_head, file_chunks, numbered_lines, resolve_paths

__all__ = ["PairSource", "open_pair_source", "unescape"]

_TSV_HEADER = ["prompt", "completion"]
_ESCAPE = re.compile(r"\\(.)")
_ESCAPED = {"n": "\n", "t": "\t", "\\": "\\"}
_EXAMPLE = '{"prompt": "...", "completion": "..."}'


@dataclass(frozen=True)
class PairSource:
    """Pairs named by the user: one or more JSONL or TSV files."""

    spec: str
    paths: tuple[Path, ...]
    role: str = "training data"

    def pairs(self) -> Iterator[tuple[str, str]]:
        """Stream (prompt, completion); UserError with the file and line on bad input or no pairs."""
        count = 0
        for path in self.paths:
            read = _jsonl_pairs if _is_jsonl(path, self.role) else _tsv_pairs
            for pair in read(path, self.role):
                count += 1
                yield pair
        if not count:
            raise UserError(f"the {self.role} holds no prompt/completion pairs", self.spec,
                            f"write one pair per line: JSONL {_EXAMPLE} or prompt<TAB>completion")

    def describe(self) -> dict[str, Any]:
        import hashlib

        digest = hashlib.sha256()
        for path in self.paths:
            for chunk in file_chunks(path, self.role):
                digest.update(chunk)
        return {"source": self.spec, "files": [str(p) for p in self.paths],
                "bytes": sum(p.stat().st_size for p in self.paths), "sha256": digest.hexdigest()}


def open_pair_source(spec: str, role: str = "training data") -> PairSource:
    """Resolve and check the files now, so a wrong path or a binary file fails before training."""
    paths = resolve_paths(spec, role)
    for path in paths:
        check_text_head(path, role)
    return PairSource(spec, paths, role)


def _is_jsonl(path: Path, role: str) -> bool:
    """JSONL or TSV, as tables.table_format tells from the name or the first line (CSV is read as TSV)."""
    first_line = next((line for _, line in numbered_lines(path, role) if line.strip()), "")
    return table_format(path, first_line.lstrip("\ufeff")) == "jsonl"


def _jsonl_pairs(path: Path, role: str) -> Iterator[tuple[str, str]]:
    for number, line in numbered_lines(path, role):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            record = json.loads(line.lstrip("\ufeff"))
        except json.JSONDecodeError as error:
            raise UserError(f"the line is not JSON ({error.msg})", where, f"write one object per line: {_EXAMPLE}")
        if not isinstance(record, dict):
            raise UserError("the line is not a JSON object", where, f"write one object per line: {_EXAMPLE}")
        missing = [key for key in ("prompt", "completion") if key not in record]
        if missing:
            raise UserError(f"the object has no {' and no '.join(repr(k) for k in missing)} key", where,
                            f"give every line both keys: {_EXAMPLE}")
        values = record["prompt"], record["completion"]
        if not all(isinstance(v, str) for v in values):
            raise UserError("prompt and completion must be strings", where, "quote the values")
        yield values


def _tsv_pairs(path: Path, role: str) -> Iterator[tuple[str, str]]:
    first = True
    for number, line in numbered_lines(path, role):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        columns = line.lstrip("\ufeff").split("\t")
        if first and [c.strip().lower() for c in columns] == _TSV_HEADER:
            first = False
            continue
        first = False
        if len(columns) != 2:
            raise UserError(f"expected two tab-separated columns (prompt, completion), found {len(columns)}",
                            f"{path}, line {number}", "write prompt<TAB>completion; a tab inside a field is \\t")
        yield unescape(columns[0]), unescape(columns[1])


def unescape(field: str) -> str:
    """\\n, \\t and \\\\ -> newline, tab and backslash (other backslashes stay as written)."""
    return _ESCAPE.sub(lambda m: _ESCAPED.get(m.group(1), m.group(0)), field)
