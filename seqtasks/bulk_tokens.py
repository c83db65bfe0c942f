"""Token ids of whole blocks of text at once, in numpy, for the char, word and whitespace tokenizers.

A text becomes an array of code points (UTF-32). Each character is classified through a table
(word character, space, newline, other: exactly the regex classes \\w and \\s), a token is a run of
characters of one kind or a single character, and each token is looked up by a 64-bit polynomial
hash of its code points among the sorted hashes of the vocabulary. A hit is then compared with its
vocabulary entry character by character, so a hash collision can only mean "not found": the ids
are exactly those of a dictionary look-up, without one Python object per token.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

WORD, SPACE, NEWLINE, OTHER = 0, 1, 2, 3  # what the word regex \w+|[^\w\s]|\n makes of a character
_BASES = (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9)  # odd: invertible mod 2**64
_bmp_classes: np.ndarray | None = None  # the class of every code point below 0x10000, built once


def code_points(text: str) -> np.ndarray:
    """The code points of `text` (uint32); a lone surrogate, which a str may hold, stays itself."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)


def class_of(char: str) -> int:
    if char == "\n":
        return NEWLINE
    if char.isalnum() or char == "_":  # exactly the regex's \w
        return WORD
    return SPACE if char.isspace() else OTHER  # isspace is exactly \s


def _classes_below(limit: int) -> np.ndarray:
    """class_of for every code point below `limit`, by the regex itself over all of them at once."""
    every = "".join(map(chr, range(limit)))
    codes = np.arange(limit, dtype=np.uint32)
    # a character the substitution left alone is in the class (\x01 itself is in neither)
    word = code_points(re.sub(r"\W", "\x01", every)) == codes
    space = code_points(re.sub(r"\S", "\x01", every)) == codes
    word[1] = space[1] = False
    classes = np.full(limit, OTHER, np.uint8)
    classes[word] = WORD
    classes[space] = SPACE
    classes[ord("\n")] = NEWLINE
    return classes


def character_classes(codes: np.ndarray) -> np.ndarray:
    """WORD, SPACE, NEWLINE or OTHER for each code point."""
    global _bmp_classes
    if _bmp_classes is None:
        _bmp_classes = _classes_below(0x10000)
    classes = _bmp_classes[np.minimum(codes, 0xFFFF)]
    astral = codes > 0xFFFF  # emoji and rare scripts: classified once per distinct code point
    if astral.any():
        distinct, where = np.unique(codes[astral], return_inverse=True)
        classes[astral] = np.array([class_of(chr(code)) for code in distinct.tolist()], np.uint8)[where]
    return classes


def token_spans(in_runs: np.ndarray, alone: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[start, end) of each token, in order: maximal runs of `in_runs` characters and single
    `alone` characters (the two masks do not overlap; other characters belong to no token)."""
    before = np.concatenate([[False], in_runs[:-1]])
    after = np.concatenate([in_runs[1:], [False]])
    starts = np.flatnonzero((in_runs & ~before) | alone)
    ends = np.flatnonzero((in_runs & ~after) | alone) + 1
    return starts, ends


class _Hasher:
    """h(token) = sum of code[j] * base**j mod 2**64, for many tokens of one array at once."""

    def __init__(self, base: int):
        self.base, self.inverse = base, pow(base, -1, 1 << 64)
        self.powers = self.inverse_powers = np.ones(1, np.uint64)

    def _grow(self, length: int) -> None:
        if len(self.powers) > length:
            return
        size = max(length + 1, 2 * len(self.powers))
        one = np.ones(1, np.uint64)  # not [1]: int64 beside uint64 would make float64
        with np.errstate(over="ignore"):  # wrapping around 2**64 is the point
            self.powers = np.concatenate([one, np.cumprod(np.full(size - 1, self.base, np.uint64))])
            self.inverse_powers = np.concatenate([one, np.cumprod(np.full(size - 1, self.inverse, np.uint64))])

    def hashes(self, codes: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        self._grow(len(codes))
        with np.errstate(over="ignore"):
            prefix = np.concatenate([np.zeros(1, np.uint64),
                                     np.cumsum(codes.astype(np.uint64) * self.powers[:len(codes)])])
            return (prefix[ends] - prefix[starts]) * self.inverse_powers[starts]


class HashedVocabulary:
    """Tokens (strings) -> ids, looked up for many tokens of a code-point array at once: an
    open-addressing table on the top bits of each token's hash, probed for all tokens together."""

    def __init__(self, tokens: Sequence[str], ids: Sequence[int]):
        codes = code_points("".join(tokens))
        lengths = np.fromiter(map(len, tokens), np.int64, len(tokens))
        self.ends = np.cumsum(lengths)
        self.starts = self.ends - lengths
        self.codes, self.lengths = codes, lengths
        self.ids = np.asarray(ids, np.int64)
        bits = max(12, int(np.ceil(np.log2(4 * max(len(tokens), 1)))))  # at most a quarter full
        self.shift, self.mask = np.uint64(64 - bits), (1 << bits) - 1
        for base in _BASES:
            self.hasher = _Hasher(base)
            hashes = self.hasher.hashes(codes, self.starts, self.ends)
            if len(np.unique(hashes)) == len(hashes):
                break
        else:  # pragma: no cover - three independent 64-bit collisions within a vocabulary
            raise RuntimeError("the vocabulary's token hashes collide")
        slot_hash, slot_entry = [0] * (1 << bits), [-1] * (1 << bits)  # lists: fast to fill one by one
        self.probes = 1
        for entry, (value, slot) in enumerate(zip(hashes.tolist(), (hashes >> self.shift).tolist())):
            probe = 0
            while slot_entry[(slot + probe) & self.mask] >= 0:
                probe += 1
            slot_hash[(slot + probe) & self.mask] = value
            slot_entry[(slot + probe) & self.mask] = entry
            self.probes = max(self.probes, probe + 1)
        self.slot_hash = np.array(slot_hash, np.uint64)
        self.slot_entry = np.array(slot_entry, np.int64)

    def _entries(self, hashes: np.ndarray) -> np.ndarray:
        """The vocabulary entry whose hash each of `hashes` is, or -1."""
        entry = np.full(len(hashes), -1, np.int64)
        pending = np.arange(len(hashes))
        slots = (hashes >> self.shift).astype(np.int64)
        for probe in range(self.probes):
            at = (slots[pending] + probe) & self.mask
            held = self.slot_entry[at]
            found = (held >= 0) & (self.slot_hash[at] == hashes[pending])
            entry[pending[found]] = held[found]
            pending = pending[(held >= 0) & ~found]  # an empty slot ends the search
            if not len(pending):
                break
        return entry

    def lookup(self, codes: np.ndarray, starts: np.ndarray, ends: np.ndarray, default: int) -> np.ndarray:
        """The id of each token codes[starts[k]:ends[k]], or `default` where it is not in the vocabulary."""
        ids = np.full(len(starts), default, np.int64)
        if len(self.ids) == 0 or len(starts) == 0:
            return ids
        entry = self._entries(self.hasher.hashes(codes, starts, ends))
        lengths = ends - starts
        hit = np.flatnonzero(entry >= 0)
        hit = hit[self.lengths[entry[hit]] == lengths[hit]]
        if not len(hit):
            return ids
        # check each hit character by character against its entry (tokens are never empty)
        hit_lengths = lengths[hit]
        edges = np.bincount(starts[hit], minlength=len(codes) + 1) - np.bincount(ends[hit], minlength=len(codes) + 1)
        inside = np.flatnonzero(np.cumsum(edges[:-1]) > 0)  # every character of a hit, in order
        shifted = inside + np.repeat(self.starts[entry[hit]] - starts[hit], hit_lengths)
        same = codes[inside] == self.codes[shifted]
        verified = hit[np.logical_and.reduceat(same, np.cumsum(hit_lengths) - hit_lengths)]
        ids[verified] = self.ids[entry[verified]]
        return ids
