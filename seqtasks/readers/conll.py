"""Tagged sentences: CoNLL columns and CoNLL-U (each optionally .gz), for tag.

CoNLL: one token per line, whitespace-separated columns, the token first and the tag in the last
column (or `tag_col`, counted from 0); a blank line ends a sentence; `-DOCSTART-` lines are skipped.
CoNLL-U (by the .conllu extension, or 10 tab-separated columns with a numeric ID): `#` comments
skipped, multiword-token ranges (1-2) and empty nodes (1.1) skipped, the tag from `upos` (default),
`xpos`, or a column index. A token line with a different number of columns from the file's first,
a missing tag column or an empty tag is a UserError naming the file and line.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from seqtasks.errors import UserError
from seqtasks.files import check_text_head, numbered_lines, resolve_paths

CONLLU_COLUMNS = ("id", "form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps", "misc")


@dataclass(frozen=True)
class TaggedSentence:
    tokens: tuple[str, ...]
    tags: tuple[str, ...]
    where: str  # "FILE, line N" of the first token


def read_tagged_sentences(spec: str, tag_col: str = "", role: str = "training data") -> list[TaggedSentence]:
    """Every sentence of `spec` (a file, folder or glob of CoNLL / CoNLL-U files)."""
    if not spec.strip():
        raise UserError(f"no {role} was given", None, "pass --data FILE (CoNLL or CoNLL-U)")
    sentences: list[TaggedSentence] = []
    for path in resolve_paths(spec, role):
        check_text_head(path, role)
        sentences.extend(_file_sentences(path, tag_col, role))
    if not sentences:
        raise UserError(f"the {role} holds no sentences", spec,
                        "give CoNLL lines (token ... tag), with a blank line after each sentence")
    return sentences


def is_conllu(path: Path, first_token_line: str) -> bool:
    if any(suffix.lower() == ".conllu" for suffix in path.suffixes):
        return True
    columns = first_token_line.rstrip("\n").split("\t")
    return len(columns) == 10 and columns[0].split("-")[0].split(".")[0].isdigit()


def _file_sentences(path: Path, tag_col: str, role: str) -> Iterator[TaggedSentence]:
    conllu = True if any(suffix.lower() == ".conllu" for suffix in path.suffixes) else None
    columns = tag_index = None
    tokens: list[str] = []
    tags: list[str] = []
    start = ""
    for number, line in numbered_lines(path, role):
        line = line.rstrip("\n").rstrip("\r")
        where = f"{path}, line {number}"
        if not line.strip():
            if tokens:
                yield TaggedSentence(tuple(tokens), tuple(tags), start)
                tokens, tags = [], []
            continue
        if line.startswith("#") and conllu is not False:
            continue  # a CoNLL-U comment (in CoNLL, "#" is a token once the format is known)
        if conllu is None:
            conllu = is_conllu(path, line)
        parts = line.split("\t") if conllu else line.split()
        if not conllu and parts[0] == "-DOCSTART-":
            continue
        if conllu and ("-" in parts[0] or "." in parts[0]):
            continue  # multiword-token range or empty node: not a syntactic word
        if columns is None:
            columns = len(parts)
            if conllu and columns != len(CONLLU_COLUMNS):
                raise UserError(f"{columns} columns in a CoNLL-U file", where,
                                f"CoNLL-U token lines have {len(CONLLU_COLUMNS)} tab-separated columns")
            tag_index = _tag_index(tag_col, conllu, columns, where)
        if len(parts) != columns:
            raise UserError(f"{len(parts)} columns where the file's first token line has {columns}", where,
                            f"give every token line {columns} {'tab-separated ' if conllu else ''}columns")
        token_index = 1 if conllu else 0
        tag = parts[tag_index].strip()
        if not tag or (conllu and tag == "_"):
            raise UserError(f"the tag (column {tag_index}) is empty", where, "tag every token, or choose --tag-col")
        if not tokens:
            start = where
        tokens.append(parts[token_index])
        tags.append(tag)
    if tokens:
        yield TaggedSentence(tuple(tokens), tuple(tags), start)


def _tag_index(tag_col: str, conllu: bool, columns: int, where: str) -> int:
    if conllu:
        choice = tag_col or "upos"
        if choice in ("upos", "xpos"):
            return CONLLU_COLUMNS.index(choice)
    else:
        choice = tag_col or str(columns - 1)
    if not choice.isdigit():
        raise UserError(f"--tag-col {choice!r} is not a column", where,
                        "use upos or xpos (CoNLL-U), or a column index counted from 0")
    index = int(choice)
    if index >= columns or (not conllu and index == 0):
        raise UserError(f"the tag column {index} is missing (token lines have {columns} columns, counted from 0)",
                        where, f"pass --tag-col between 1 and {columns - 1}")
    return index


def pretokenized_sentences(lines: Iterable[str]) -> Iterator[list[tuple[int, str]]]:
    """Input lines of one token each (CoNLL: first column; CoNLL-U: FORM), blank between
    sentences -> sentences as [(line index, token)]. Comment lines and CoNLL-U ranges are skipped."""
    sentence: list[tuple[int, str]] = []
    for index, line in enumerate(lines):
        line = line.rstrip("\n")
        if not line.strip():
            if sentence:
                yield sentence
                sentence = []
            continue
        if line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) == 10 and parts[0].replace("-", "").replace(".", "").isdigit():
            if "-" in parts[0] or "." in parts[0]:
                continue
            sentence.append((index, parts[1]))
        else:
            sentence.append((index, line.split()[0]))
    if sentence:
        yield sentence
