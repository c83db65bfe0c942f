"""Tag schemes for chunks (entities): IOB1, BIO (IOB2) and IOBES; detection, spans, conversion.

A chunk tag is PREFIX-TYPE (B-PER, I-LOC, E-ORG, S-MISC) or O. The schemes differ in where a prefix
is required:

    BIO    every chunk starts with B-, continues with I-                 B-PER I-PER O B-LOC
    IOB1   a chunk starts with I-; B- only right after a chunk of the    I-PER I-PER O I-LOC I-LOC B-LOC
           same type
    IOBES  single-token chunks are S-, longer ones B- I-* E-             B-PER E-PER O S-LOC

Tags are read into spans with CoNLL's conlleval rules (`chunk_start` / `chunk_end` mirror its
startOfChunk / endOfChunk), which accept every scheme and are lenient: an I- after O, or a change of
type, starts a chunk. Converting = reading spans, then writing them in the other scheme; a valid
sequence round-trips exactly. Tag sets without prefixes (POS tags) have the scheme "none" and are
left as they are.
"""
from __future__ import annotations

from typing import Callable, Iterable, Sequence

from seqtasks.errors import UserError

SCHEMES = ("iob1", "bio", "iobes")
INTERNAL_SCHEME = "iobes"  # the most explicit: models predict it, inputs are converted to it
_PREFIXES = ("B", "I", "E", "S")


def split_tag(tag: str) -> tuple[str, str]:
    """'B-PER' -> ('B', 'PER'); 'O' -> ('O', ''); a tag without a dash is its own prefix."""
    prefix, _, kind = tag.partition("-")
    return prefix, kind


def chunk_end(previous: str, previous_type: str, tag: str, kind: str) -> bool:
    """conlleval's endOfChunk: does the chunk holding the previous token end before this one?"""
    if previous in ("E", "S"):
        return True
    if previous in ("B", "I") and tag in ("B", "S", "O"):
        return True
    return previous != "O" and previous_type != kind


def chunk_start(previous: str, previous_type: str, tag: str, kind: str) -> bool:
    """conlleval's startOfChunk: does a chunk start at this token?"""
    if tag in ("B", "S"):
        return True
    if previous in ("E", "S", "O") and tag in ("E", "I"):
        return True
    return tag != "O" and previous_type != kind


def spans(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """Chunks as (start, end exclusive, type), read with conlleval's rules."""
    found: list[tuple[int, int, str]] = []
    previous, previous_type, start = "O", "", None
    for position, tag in enumerate(tags):
        prefix, kind = split_tag(tag)
        if start is not None and chunk_end(previous, previous_type, prefix, kind):
            found.append((start, position, previous_type))
            start = None
        if chunk_start(previous, previous_type, prefix, kind):
            start = position
        previous, previous_type = prefix, kind
    if start is not None:
        found.append((start, len(tags), previous_type))
    return found


def tags_from_spans(length: int, chunks: Iterable[tuple[int, int, str]], scheme: str) -> list[str]:
    """Write chunks (start, end exclusive, type) as `length` tags in `scheme`."""
    tags = ["O"] * length
    previous_end, previous_type = -1, None
    for start, end, kind in sorted(chunks):
        for position in range(start, end):
            tags[position] = f"I-{kind}"
        if scheme == "bio":
            tags[start] = f"B-{kind}"
        elif scheme == "iob1":
            if start == previous_end and kind == previous_type:
                tags[start] = f"B-{kind}"
        elif scheme == "iobes":
            if end - start == 1:
                tags[start] = f"S-{kind}"
            else:
                tags[start], tags[end - 1] = f"B-{kind}", f"E-{kind}"
        else:
            raise ValueError(f"unknown scheme {scheme!r}")
        previous_end, previous_type = end, kind
    return tags


def convert(tags: Sequence[str], source: str, target: str) -> list[str]:
    """Tags in `source` scheme -> the same chunks in `target` scheme ("none" leaves tags alone)."""
    if source == target or "none" in (source, target):
        return list(tags)
    return tags_from_spans(len(tags), spans(tags), target)


def is_chunk_tag(tag: str) -> bool:
    prefix, kind = split_tag(tag)
    return tag == "O" or (prefix in _PREFIXES and bool(kind))


def known_to(trained_tags: Iterable[str], chunked: bool) -> Callable[[str], bool]:
    """Whether an evaluation tag is one a run trained on TRAINED_TAGS can predict. With chunk tags the
    type decides, whatever the scheme (a BIO B-PER is the run's S-PER or B-PER); plain tags must be
    the very tag."""
    trained = set(trained_tags)
    types = {split_tag(tag)[1] for tag in trained if tag != "O" and is_chunk_tag(tag)} if chunked else set()
    return lambda tag: tag in trained or (tag != "O" and is_chunk_tag(tag) and split_tag(tag)[1] in types)


def detect(sentences: Iterable[Sequence[str]]) -> str:
    """The scheme of a corpus' tags: "iobes" (E-/S- seen), "iob1" (a chunk opens with I-), "bio",
    or "none" when some tag is not a chunk tag (POS tags, for example)."""
    saw_end_or_single = saw_i_start = saw_chunk = False
    for tags in sentences:
        previous, previous_type = "O", ""
        for tag in tags:
            if not is_chunk_tag(tag):
                return "none"
            prefix, kind = split_tag(tag)
            saw_chunk = saw_chunk or prefix != "O"
            saw_end_or_single = saw_end_or_single or prefix in ("E", "S")
            if prefix == "I" and (previous in ("O", "E", "S") or previous_type != kind):
                saw_i_start = True
            previous, previous_type = prefix, kind
    if not saw_chunk:
        return "none"
    if saw_end_or_single:
        return "iobes"
    return "iob1" if saw_i_start else "bio"


def resolve_scheme(requested: str, sentences: Sequence[Sequence[str]], where: str) -> str:
    """The scheme to use: `requested` ("auto" = detect), checked against the tags."""
    detected = detect(sentences)
    if requested == "auto":
        return detected
    if requested != "none" and detected == "none":
        raise UserError(f"--scheme {requested} was given but the tags are not chunk tags (B-X, I-X, O, ...)",
                        where, "use --scheme auto or none for tags such as POS")
    return requested
