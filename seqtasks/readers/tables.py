"""Labeled text records: TSV, CSV, JSONL (each optionally .gz) and tfds:NAME[:SPLIT], for classify.

Columns are chosen with `text_col` / `label_col`:
    a name      the file has a header line naming its columns (TSV, CSV) or keys (JSONL);
    an index    ("0", "1", ...) the file has no header; columns are counted from 0;
    ""          a header is expected, and the usual names are tried (text, sentence, ...; label, ...).
The format comes from the extension (.tsv, .csv, .jsonl/.json, before .gz), else from the first
line ("{" JSONL, a tab TSV, else CSV). TSV is read without quoting (a quote is text, as in GLUE);
CSV with standard quoting. Every row must have the header's number of columns; a missing column,
an empty text or label, or bad JSON is a UserError naming the file and line.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from seqtasks.errors import UserError
from seqtasks.files import check_text_head, numbered_lines, resolve_paths
from seqtasks.readers.text import TFDS_PREFIX, load_tfds, pick_text_feature

TEXT_NAMES = ("text", "sentence", "content", "review", "document", "question")
LABEL_NAMES = ("label", "labels", "class", "category", "sentiment", "target")


@dataclass(frozen=True)
class LabeledText:
    text: str
    label: str
    where: str  # "FILE, line N" for messages


def read_labeled_texts(spec: str, text_col: str = "", label_col: str = "", role: str = "training data",
                       data_dir: str | None = None) -> list[LabeledText]:
    """Every (text, label) record of `spec` (files, a folder, a glob, or tfds:NAME[:SPLIT])."""
    if not spec.strip():
        raise UserError(f"no {role} was given", None, "pass --data FILE (TSV, CSV or JSONL)")
    if spec.startswith(TFDS_PREFIX):
        return _tfds_records(spec, text_col, label_col, data_dir)
    records: list[LabeledText] = []
    for path in resolve_paths(spec, role):
        check_text_head(path, role)
        records.extend(_file_records(path, text_col, label_col, role))
    if not records:
        raise UserError(f"the {role} holds no records", spec,
                        "give a file with a header line and rows of text and label")
    return records


def table_format(path: Path, first_line: str) -> str:
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    for suffix, kind in ((".tsv", "tsv"), (".csv", "csv"), (".jsonl", "jsonl"), (".json", "jsonl")):
        if suffixes and suffixes[-1] == suffix:
            return kind
    if first_line.lstrip().startswith("{"):
        return "jsonl"
    return "tsv" if "\t" in first_line else "csv"


def _file_records(path: Path, text_col: str, label_col: str, role: str) -> Iterator[LabeledText]:
    lines = ((number, line) for number, line in numbered_lines(path, role) if line.strip())
    first = next(lines, None)
    if first is None:
        return
    kind = table_format(path, first[1])
    rest = _chain(first, lines)
    if kind == "jsonl":
        yield from _jsonl_records(path, rest, text_col or "text", label_col or "label")
    else:
        yield from _delimited_records(path, rest, kind, text_col, label_col)


def _chain(first, rest):
    yield first
    yield from rest


def _jsonl_records(path: Path, lines, text_key: str, label_key: str) -> Iterator[LabeledText]:
    for number, line in lines:
        where = f"{path}, line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise UserError(f"not a JSON object: {error.msg}", where, "write one JSON object per line") from None
        if not isinstance(record, dict):
            raise UserError("not a JSON object", where, 'write one object per line, like {"text": ..., "label": ...}')
        for key in (text_key, label_key):
            if key not in record:
                raise UserError(f"the record has no {key!r} key (its keys: {', '.join(record) or 'none'})", where,
                                "add it, or name the keys with --text-col / --label-col")
        yield _record(str(record[text_key]), record[label_key], where)


def _record(text: str, label, where: str) -> LabeledText:
    label = "" if label is None else str(label).strip()
    if not label:
        raise UserError("the label is empty", where, "give every record a label, or remove the record")
    if not text.strip():
        raise UserError("the text is empty", where, "give every record some text, or remove the record")
    return LabeledText(text.strip(), label, where)


def _column_index(choice: str, header: list[str] | None, usual: tuple[str, ...], what: str, where: str) -> int:
    if header is None:
        return int(choice)
    if choice:
        if choice not in header:
            raise UserError(f"the header has no {what} column {choice!r} (columns: {', '.join(header)})", where,
                            f"pass --{what}-col with one of those names (or an index, for a file without a header)")
        return header.index(choice)
    for name in usual:
        for index, column in enumerate(header):
            if column.strip().lower() == name:
                return index
    raise UserError(f"no {what} column found in the header ({', '.join(header)})", where,
                    f"name it with --{what}-col NAME, or give indices (--text-col 1 --label-col 0) for a file "
                    "without a header")


def _delimited_records(path: Path, lines, kind: str, text_col: str, label_col: str) -> Iterator[LabeledText]:
    by_index = text_col.isdigit() or label_col.isdigit()
    if by_index and not (text_col.isdigit() and label_col.isdigit()):
        raise UserError("give both --text-col and --label-col as indices (a file without a header), or both as "
                        "names", str(path), "for example --text-col 1 --label-col 0")
    numbers: list[int] = []

    def text_lines():
        for number, line in lines:
            numbers.append(number)
            yield line

    options = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if kind == "tsv" else {}
    reader = csv.reader(text_lines(), **options)
    header = None if by_index else next(reader, None)
    columns = None if header is None else len(header)
    text_index = label_index = None
    try:
        for row in reader:
            where = f"{path}, line {numbers[-1]}"
            if text_index is None:
                header_where = f"{path}, line {numbers[0]}"
                text_index = _column_index(text_col, header, TEXT_NAMES, "text", header_where)
                label_index = _column_index(label_col, header, LABEL_NAMES, "label", header_where)
                columns = columns or len(row)
            if len(row) != columns:
                raise UserError(f"{len(row)} columns where the {'header has' if header else 'first row has'} "
                                f"{columns}", where,
                                f"every row needs {columns} {kind.upper()} columns (a stray "
                                f"{'tab' if kind == 'tsv' else 'comma or quote'}?)")
            if max(text_index, label_index) >= len(row):
                raise UserError(f"column {max(text_index, label_index)} is missing (the row has {len(row)})", where,
                                "count columns from 0: --text-col 1 --label-col 0")
            yield _record(row[text_index], row[label_index], where)
    except csv.Error as error:
        raise UserError(f"cannot parse the {kind.upper()} row: {error}", f"{path}, line {numbers[-1]}",
                        "fix the quoting of that row") from None


def _tfds_records(spec: str, text_col: str, label_col: str, data_dir: str | None) -> list[LabeledText]:
    import tensorflow_datasets as tfds

    name, _, split = spec[len(TFDS_PREFIX):].partition(":")
    dataset, info = load_tfds(name, split or "train", data_dir, spec)
    text_key = pick_text_feature(info.features, text_col or None, spec)
    label_key = label_col or "label"
    if label_key not in info.features:
        raise UserError(f"the dataset has no feature {label_key!r} (its features: {', '.join(info.features)})", spec,
                        "name the label feature with --label-col")
    label_feature = info.features[label_key]
    records = []
    for index, example in enumerate(tfds.as_numpy(dataset)):
        value = example[label_key]
        label = label_feature.int2str(int(value)) if hasattr(label_feature, "int2str") else (
            value.decode("utf-8") if isinstance(value, bytes) else str(value))
        text = example[text_key]
        records.append(_record(text.decode("utf-8") if isinstance(text, bytes) else str(text), label,
                               f"{spec}, example {index}"))
    return records
