"""Parallel text for translation: two line-aligned files, a two-column TSV, or a tfds dataset.

    open_parallel_source(source="train.de.gz", target="train.en.gz")   # line i of one translates line i of the other
    open_parallel_source(table="pairs.tsv")                             # source<TAB>target (more columns are ignored)
    open_parallel_source(table="tfds:wmt14_translate/de-en:train", source_lang="de", target_lang="en")

Pairs are streamed, never loaded whole. Both sides are stripped of surrounding whitespace. A pair with
both sides blank is skipped (a trailing blank line is common); a pair with one side blank, files of
different lengths, a TSV line without a tab: each raises UserError naming the file and line.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from seqtasks.errors import UserError
from seqtasks.files import check_text_head, file_chunks, numbered_lines, resolve_paths
from seqtasks.readers.text import TFDS_PREFIX, load_tfds

__all__ = ["ParallelSource", "open_parallel_source"]


@dataclass(frozen=True)
class ParallelSource:
    """Sentence pairs named by the user: (source file, target file), a TSV, or tfds:NAME[:SPLIT]."""

    spec: str                       # what the user typed, for messages and run records
    source_path: Path | None = None
    target_path: Path | None = None
    table_path: Path | None = None
    tfds_name: str | None = None
    tfds_split: str | None = None
    source_lang: str | None = None
    target_lang: str | None = None
    tfds_data_dir: str | None = None
    role: str = "training data"

    def pairs(self) -> Iterator[tuple[str, str]]:
        """Stream (source sentence, target sentence); UserError with the line number on bad input."""
        if self.tfds_name is not None:
            produced = self._tfds_pairs()
        elif self.table_path is not None:
            produced = self._table_pairs()
        else:
            produced = self._file_pairs()
        count = 0
        for pair in produced:
            count += 1
            yield pair
        if not count:
            raise UserError(f"the {self.role} holds no sentence pairs", self.spec, "name the corpus you meant")

    def _file_pairs(self) -> Iterator[tuple[str, str]]:
        assert self.source_path and self.target_path
        sources = numbered_lines(self.source_path, f"{self.role} (source side)")
        targets = numbered_lines(self.target_path, f"{self.role} (target side)")
        while True:
            source, target = next(sources, None), next(targets, None)
            if source is None and target is None:
                return
            if source is None or target is None:
                longer, shorter = ((self.target_path, self.source_path) if source is None
                                   else (self.source_path, self.target_path))
                line = (target or source)[0]
                raise UserError(f"the parallel files have different numbers of lines: {shorter} ends before "
                                f"line {line}", f"{longer}, line {line}",
                                "give line-aligned files: line i of the source translates line i of the target")
            yield from self._checked(source[1], target[1], source[0], f"{self.source_path} / {self.target_path}")

    def _table_pairs(self) -> Iterator[tuple[str, str]]:
        assert self.table_path
        for number, line in numbered_lines(self.table_path, self.role):
            columns = line.rstrip("\n").split("\t")
            if len(columns) < 2:
                if not line.strip():
                    continue
                raise UserError("the line has no tab: expected source<TAB>target", f"{self.table_path}, line {number}",
                                "separate the two sentences of every pair by a tab")
            yield from self._checked(columns[0], columns[1], number, str(self.table_path))

    @staticmethod
    def _checked(source: str, target: str, number: int, where: str) -> Iterator[tuple[str, str]]:
        source, target = source.strip(), target.strip()
        if not source and not target:
            return
        if not source or not target:
            side = "source" if not source else "target"
            raise UserError(f"the {side} side of a pair is empty", f"{where}, line {number}",
                            "remove the pair or fill in its translation")
        yield source, target

    def _tfds_pairs(self) -> Iterator[tuple[str, str]]:
        import tensorflow_datasets as tfds  # slow to import: only tfds sources pay for it

        dataset, _ = load_tfds(self.tfds_name, self.tfds_split, self.tfds_data_dir, self.spec)
        for index, example in enumerate(tfds.as_numpy(dataset)):
            texts = [example[key].decode("utf-8") if isinstance(example[key], bytes) else str(example[key])
                     for key in (self.source_lang, self.target_lang)]
            yield from self._checked(texts[0], texts[1], index, f"{self.spec}, example")

    def files(self) -> list[Path]:
        return [p for p in (self.source_path, self.target_path, self.table_path) if p is not None]

    def describe(self) -> dict[str, Any]:
        """What was read, for run records: files, bytes and sha256 (or the tfds split and languages)."""
        if self.tfds_name is not None:
            return {"source": self.spec, "name": self.tfds_name, "split": self.tfds_split,
                    "source_lang": self.source_lang, "target_lang": self.target_lang}
        digest = hashlib.sha256()
        for path in self.files():
            for chunk in file_chunks(path, self.role):
                digest.update(chunk)
        return {"source": self.spec, "files": [str(p) for p in self.files()],
                "bytes": sum(p.stat().st_size for p in self.files()), "sha256": digest.hexdigest()}

    def fingerprint(self) -> str:
        """A cache key that changes whenever the pairs read would change (file contents, not paths)."""
        if self.tfds_name is not None:
            _, info = load_tfds(self.tfds_name, self.tfds_split, self.tfds_data_dir, self.spec)
            key = {"tfds": self.tfds_name, "split": self.tfds_split, "langs": [self.source_lang, self.target_lang],
                   "data_dir": str(info.data_dir), "version": str(info.version)}
            return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
        outer = hashlib.sha256(f"seqtasks parallel v1 table={self.table_path is not None}\n".encode())
        for path in self.files():
            inner = hashlib.sha256()
            for chunk in file_chunks(path, self.role):
                inner.update(chunk)
            outer.update(inner.digest())
        return outer.hexdigest()


def open_parallel_source(*, source: str | None = None, target: str | None = None, table: str | None = None,
                         source_lang: str | None = None, target_lang: str | None = None,
                         tfds_dir: str | None = None, role: str = "training data",
                         flags: tuple[str, str, str] = ("--src", "--tgt", "--data")) -> ParallelSource:
    """Check what the user named (files exist, are UTF-8 text; tfds features exist) -> ParallelSource.

    Give either `source` and `target` (two line-aligned files) or `table` (a TSV file or tfds:NAME).
    `flags` are the option names used in messages.
    """
    src_flag, tgt_flag, table_flag = flags
    if table and (source or target):
        raise UserError(f"the {role} is given twice", f"{table_flag} and {src_flag}/{tgt_flag}",
                        f"give either {src_flag} FILE {tgt_flag} FILE or {table_flag} FILE.tsv")
    if table:
        if table.startswith(TFDS_PREFIX):
            return _open_tfds_pairs(table, source_lang, target_lang, tfds_dir, role)
        return ParallelSource(spec=table, table_path=_one_checked_file(table, role), role=role)
    if not source or not target:
        missing = tgt_flag if source else src_flag
        raise UserError(f"the {role} has only one side", f"{missing} is missing",
                        f"give both {src_flag} FILE and {tgt_flag} FILE (or {table_flag} FILE.tsv)")
    source_path = _one_checked_file(source, f"{role} (source side)")
    target_path = _one_checked_file(target, f"{role} (target side)")
    return ParallelSource(spec=f"{source} + {target}", source_path=source_path, target_path=target_path, role=role)


def _one_checked_file(spec: str, role: str) -> Path:
    paths = resolve_paths(spec, role)
    if len(paths) != 1:
        raise UserError(f"the {role} names {len(paths)} files; parallel text needs exactly one", spec,
                        "concatenate the files (keeping the two sides line-aligned) and name the result")
    check_text_head(paths[0], role)
    return paths[0]


def _open_tfds_pairs(spec: str, source_lang: str | None, target_lang: str | None, data_dir: str | None,
                     role: str) -> ParallelSource:
    name, _, split = spec[len(TFDS_PREFIX):].partition(":")
    split = split or "train"
    if not name:
        raise UserError(f"no tfds dataset name in the {role}", spec, "write tfds:NAME[:SPLIT]")
    _, info = load_tfds(name, split, data_dir, spec)
    languages = list(info.features.keys())  # a tfds Translation feature is keyed by language code
    if not source_lang or not target_lang:
        raise UserError("a tfds translation dataset needs the two languages", spec,
                        f"pass --src-lang and --tgt-lang (this dataset has: {', '.join(languages)})")
    for lang, flag in ((source_lang, "--src-lang"), (target_lang, "--tgt-lang")):
        if lang not in languages:
            raise UserError(f"the dataset has no language {lang!r}", spec,
                            f"choose {flag} among: {', '.join(languages)}")
    return ParallelSource(spec=spec, tfds_name=name, tfds_split=split, source_lang=source_lang,
                          target_lang=target_lang, tfds_data_dir=data_dir, role=role)
