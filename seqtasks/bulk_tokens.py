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
_latin1_classes: bytes = b""  # its first 256 entries, as a bytes.translate table


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
    global _bmp_classes, _latin1_classes
    if _bmp_classes is None:
        _bmp_classes = _classes_below(0x10000)
        _latin1_classes = _bmp_classes[:256].tobytes()
    top = int(codes.max()) if len(codes) else 0
    if top < 256:  # Latin-1 (English, most of Europe): one bytes.translate, a C loop over bytes
        return np.frombuffer(codes.astype(np.uint8).tobytes().translate(_latin1_classes), np.uint8)
    classes = _bmp_classes.take(codes, mode="clip")  # an astral code point reads U+FFFF's, fixed below
    if top > 0xFFFF:  # emoji and rare scripts: classified once per distinct code point
        astral = codes > 0xFFFF
        distinct, where = np.unique(codes[astral], return_inverse=True)
        classes[astral] = np.array([class_of(chr(code)) for code in distinct.tolist()], np.uint8)[where]
    return classes


def token_spans(in_runs: np.ndarray, alone: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[start, end) of each token, in order: maximal runs of `in_runs` characters and single
    `alone` characters (the two masks do not overlap; other characters belong to no token)."""
    first = in_runs.copy()
    first[1:] &= ~in_runs[:-1]  # a run starts where the character before is not in it
    first |= alone
    last = in_runs.copy()
    last[:-1] &= ~in_runs[1:]
    last |= alone
    return np.flatnonzero(first), np.flatnonzero(last) + 1


_LEADING_BYTES = np.array([(1 << 8 * n) - 1 for n in range(9)], np.uint64)  # n low bytes set, for n = 0..8


class _KeyTable:
    """Open addressing (linear probing, at most a quarter full) from packed keys to ids, probed for
    many keys at once. A key is one 64-bit integer (`low`) or two (`low`, `high`); a slot whose
    `low` is 0 is empty: no key is, since a token's first byte is never 0."""

    _MIX = np.uint64(0xFF51AFD7ED558CCD)  # MurmurHash3's finalizer constants: spread keys over slots
    _MIX_HIGH = np.uint64(0xC4CEB9FE1A85EC53)

    def __init__(self, low: np.ndarray, high: np.ndarray | None, ids: np.ndarray):
        bits = max(10, int(np.ceil(np.log2(4 * max(len(low), 1)))))  # small: it stays in the CPU cache
        self.shift, self.mask = np.uint64(64 - bits), (1 << bits) - 1
        size = 1 << bits
        slot_low, slot_high, slot_id = [0] * size, [0] * size, [-1] * size
        self.probes = 1
        highs = high.tolist() if high is not None else [0] * len(low)
        for key_low, key_high, slot, i in zip(low.tolist(), highs, self.slots(low, high).tolist(), ids.tolist()):
            probe = 0
            while slot_low[(slot + probe) & self.mask]:
                probe += 1
            at = (slot + probe) & self.mask
            slot_low[at], slot_high[at], slot_id[at] = key_low, key_high, i
            self.probes = max(self.probes, probe + 1)
        self.slot_low = np.array(slot_low, np.uint64)
        self.slot_high = np.array(slot_high, np.uint64) if high is not None else None
        self.slot_id = np.array(slot_id, np.int64)

    def slots(self, low: np.ndarray, high: np.ndarray | None) -> np.ndarray:
        with np.errstate(over="ignore"):
            mixed = low * self._MIX
            if high is not None:
                mixed ^= high * self._MIX_HIGH
            mixed >>= self.shift
            return mixed.view(np.int64)  # below 2**bits: the same number as a signed index

    def find(self, ids: np.ndarray, where: np.ndarray, low: np.ndarray, high: np.ndarray | None) -> None:
        """ids[where[k]] = the id of key k, for the keys in the table (the others are left)."""
        slots = self.slots(low, high)
        for probe in range(self.probes):
            at = (slots + probe) & self.mask if probe else slots
            held = self.slot_low.take(at)
            found = held == low
            if high is not None:
                found &= self.slot_high.take(at) == high
            hit = np.flatnonzero(found)
            ids.put(where.take(hit), self.slot_id.take(at.take(hit)))
            rest = np.flatnonzero(~found & (held != 0))  # an empty slot ends the search
            if not len(rest):
                return
            where, slots, low = where.take(rest), slots.take(rest), low.take(rest)
            high = high.take(rest) if high is not None else None


class PackedVocabulary:
    """Tokens (strings) -> ids, looked up for many tokens of one text at once, exactly.

    A short ASCII token (at most 16 characters, each from U+0001 to U+007F) is its own key: its
    characters as the bytes of one 64-bit integer (up to 8 characters) or two (9 to 16), the bytes
    after its end zero. No character is a zero byte, so no two such tokens share a key. Keys are
    found in open-addressing tables (_KeyTable, one per key width: most words take one integer)
    probed for all tokens together. English words are almost all of this kind. Any other token
    (longer, or in other scripts) is looked up in a dictionary: such tokens are few in most texts,
    and in scripts written without spaces a token spans many characters, so their count stays small too.
    """

    MAX_PACKED = 16  # bytes of two 64-bit integers

    def __init__(self, tokens: Sequence[str], ids: Sequence[int]):
        self.by_token = dict(zip(tokens, ids))
        joined = "".join(self.by_token)
        lengths = np.fromiter(map(len, self.by_token), np.int64, len(self.by_token))
        low, high, packable = self._packed_keys(code_points(joined), np.cumsum(lengths) - lengths, lengths)
        all_ids = np.fromiter(self.by_token.values(), np.int64, len(self.by_token))
        short, long = packable & (lengths <= 8), packable & (lengths > 8)
        self.short = _KeyTable(low[short], None, all_ids[short])
        self.long = _KeyTable(low[long], high[long], all_ids[long])

    @staticmethod
    def _packed_keys(codes: np.ndarray, starts: np.ndarray, lengths: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each token's key (its first 8 bytes, its next 8: 0 for a token of at most 8), and whether
        it has one (at most 16 characters, ASCII, no NUL)."""
        count = len(codes)
        # bytes 1..127 are ASCII characters; 0 (NUL) and 128 (anything beyond ASCII) are no key's
        ascii_only = not count or (int(codes.max()) < 128 and int(codes.min()) > 0)
        padded = np.zeros(count + 16, np.uint8)
        padded[:count] = codes if ascii_only else np.minimum(codes, 128)
        # the 8 bytes from every position, as one unaligned uint64 each (a view, not a copy)
        eight = np.ndarray((count + 9,), np.uint64, padded, strides=(1,))
        # take: gathers twice as fast as fancy indexing here
        low = eight.take(starts) & _LEADING_BYTES.take(np.minimum(lengths, 8))
        high = np.zeros(len(starts), np.uint64)
        longer = np.flatnonzero(lengths > 8)
        high[longer] = eight.take(starts.take(longer) + 8) & _LEADING_BYTES.take(np.minimum(lengths.take(longer) - 8, 8))
        packable = (lengths <= PackedVocabulary.MAX_PACKED) & (lengths > 0)  # "" would be an empty slot's key
        if not ascii_only:  # a token with a NUL or a character beyond ASCII has no key
            bad = np.concatenate([[0], np.cumsum((padded[:count] == 0) | (padded[:count] == 128))])
            packable &= bad[starts + lengths] == bad[starts]
        return low, high, packable

    def lookup(self, text: str, codes: np.ndarray, starts: np.ndarray, ends: np.ndarray,
               default: int) -> np.ndarray:
        """The id of each token text[starts[k]:ends[k]] (codes: the code points of text), or
        `default` where it is not in the vocabulary."""
        ids = np.full(len(starts), default, np.int64)
        if not len(starts):
            return ids
        lengths = ends - starts
        low, high, packable = self._packed_keys(codes, starts, lengths)
        short = np.flatnonzero(packable & (lengths <= 8))
        self.short.find(ids, short, low.take(short), None)
        long = np.flatnonzero(packable & (lengths > 8))
        if len(long):
            self.long.find(ids, long, low.take(long), high.take(long))
        others = np.flatnonzero(~packable)
        if len(others):
            get = self.by_token.get
            ids[others] = [get(text[start:end], default)
                           for start, end in zip(starts[others].tolist(), ends[others].tolist())]
        return ids
