"""Token ids of whole blocks of text at once, in numpy, for the char, word and whitespace tokenizers.

A text becomes an array of code points (UTF-32). Each character is classified through a table
(word character, space, newline, other: exactly the regex classes \\w and \\s), a token is a run of
characters of one kind or a single character, and the ids of all tokens are looked up together
(PackedVocabulary): exactly the ids of a dictionary look-up, without one Python object per token.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

WORD, SPACE, NEWLINE, OTHER = 0, 1, 2, 3  # what the word regex \w+|[^\w\s]|\n makes of a character
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


def class_table(limit: int = 0x110000) -> np.ndarray:
    """class_of for every code point below `limit` (all of Unicode by default), uint8: the table an
    exported graph classifies characters with."""
    return _classes_below(limit)


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


_ONES, _HIGH = np.uint64(0x0101010101010101), np.uint64(0x8080808080808080)  # a bit in each byte
_LEADING_BYTES = np.array([(1 << 8 * n) - 1 for n in range(9)], np.uint64)  # n low bytes set, for n = 0..8


class PackedVocabulary:
    """Tokens (strings) -> ids, looked up for many tokens of one text at once, exactly.

    A short ASCII token (at most 16 characters, each from U+0001 to U+007F) is its own key: its
    characters as the bytes of two 64-bit integers, the bytes after its end zero. No character is a
    zero byte, so no two such tokens share a key. Keys are found in an open-addressing table probed
    for all tokens together. English words are almost all of this kind. Any other token (longer,
    or in other scripts) is looked up in a dictionary: such tokens are few in most texts, and in
    scripts written without spaces a token spans many characters, so their count stays small too.
    """

    MAX_PACKED = 16  # bytes of two 64-bit integers
    _MIX = np.uint64(0xFF51AFD7ED558CCD)  # MurmurHash3's finalizer constants: spread keys over slots
    _MIX_HIGH = np.uint64(0xC4CEB9FE1A85EC53)

    def __init__(self, tokens: Sequence[str], ids: Sequence[int]):
        self.by_token = dict(zip(tokens, ids))
        joined = "".join(self.by_token)
        lengths = np.fromiter(map(len, self.by_token), np.int64, len(self.by_token))
        low, high, packable = self._packed_keys(code_points(joined), np.cumsum(lengths) - lengths, lengths)
        packed_ids = np.fromiter(self.by_token.values(), np.int64, len(self.by_token))[packable]
        low, high = low[packable], high[packable]
        bits = max(10, int(np.ceil(np.log2(4 * max(len(low), 1)))))  # at most a quarter full: small, in cache
        self.shift, self.mask = np.uint64(64 - bits), (1 << bits) - 1
        slot_low, slot_high, slot_id = [0] * (1 << bits), [0] * (1 << bits), [-1] * (1 << bits)
        self.probes = 1
        for key_low, key_high, slot, i in zip(low.tolist(), high.tolist(), self._slots(low, high).tolist(),
                                              packed_ids.tolist()):
            probe = 0
            while slot_id[(slot + probe) & self.mask] >= 0:
                probe += 1
            at = (slot + probe) & self.mask
            slot_low[at], slot_high[at], slot_id[at] = key_low, key_high, i
            self.probes = max(self.probes, probe + 1)
        self.slot_low = np.array(slot_low, np.uint64)
        self.slot_high = np.array(slot_high, np.uint64)
        self.slot_id = np.array(slot_id, np.int64)

    def _slots(self, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            return (((low * self._MIX) ^ (high * self._MIX_HIGH)) >> self.shift).astype(np.int64)

    @staticmethod
    def _packed_keys(codes: np.ndarray, starts: np.ndarray, lengths: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each token's key (its first 8 bytes, its next 8), and whether it has one (at most 16
        characters, ASCII, no NUL)."""
        # bytes 1..127 are ASCII characters; 0 (NUL) and 128 (anything beyond ASCII) are no key's
        clipped = np.minimum(codes, 128).astype(np.uint8)
        padded = np.concatenate([clipped, np.zeros(16, np.uint8)])
        # the 8 bytes from every position, as one unaligned uint64 each (a view, not a copy)
        eight = np.ndarray((len(codes) + 9,), np.uint64, padded, strides=(1,))
        keys, packable = [], lengths <= 16
        for half, taken in ((eight[starts], np.minimum(lengths, 8)), (eight[starts + 8], np.clip(lengths - 8, 0, 8))):
            mask = _LEADING_BYTES[taken]
            key = half & mask
            # with the bytes past the token set to 1, any byte 0 or 128 left is the token's own
            probe = key | (_ONES & ~mask)
            packable &= (((probe - _ONES) & ~probe & _HIGH) | (probe & _HIGH)) == 0  # no byte 0, no byte 128
            keys.append(key)
        return keys[0], keys[1], packable

    def lookup(self, text: str, codes: np.ndarray, starts: np.ndarray, ends: np.ndarray,
               default: int) -> np.ndarray:
        """The id of each token text[starts[k]:ends[k]] (codes: the code points of text), or
        `default` where it is not in the vocabulary."""
        ids = np.full(len(starts), default, np.int64)
        if not len(starts):
            return ids
        low, high, packable = self._packed_keys(codes, starts, ends - starts)
        pending = np.flatnonzero(packable)
        low, high = low[pending], high[pending]
        slots = self._slots(low, high)
        for probe in range(self.probes):
            at = (slots + probe) & self.mask
            held = self.slot_id[at]
            found = (held >= 0) & (self.slot_low[at] == low) & (self.slot_high[at] == high)
            ids[pending[found]] = held[found]
            still = (held >= 0) & ~found  # an empty slot ends the search
            pending, slots, low, high = pending[still], slots[still], low[still], high[still]
            if not len(pending):
                break
        others = np.flatnonzero(~packable)
        get = self.by_token.get
        ids[others] = [get(text[start:end], default) for start, end in zip(starts[others].tolist(), ends[others].tolist())]
        return ids
