"""Stop strings and stop ids: the engine stops at ids; text-level stops are checked on the decoded text."""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["stop_string_ids", "cut_at_stop", "held_back"]


def stop_string_ids(tokenizer, stops: Sequence[str]) -> tuple[int, ...]:
    """Ids at which the engine may stop for a stop string, saving the tokens past it.

    Only exact cases: a one-character stop string s whose every containing token decodes to exactly
    s (a char tokenizer's newline, a word tokenizer's "."). Stopping there and cutting the text at s
    give the same result; every stop string is still checked on the text (`cut_at_stop`).
    """
    single = {s for s in stops if len(s) == 1}
    if not single:
        return ()
    texts = [tokenizer.decode([i]) for i in range(tokenizer.vocab_size)]
    ids: list[int] = []
    for stop in sorted(single):
        containing = [i for i, text in enumerate(texts) if stop in text]
        if containing and all(texts[i] == stop for i in containing):
            ids.extend(containing)
    return tuple(ids)


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """The text before the earliest occurrence of any stop string, and whether one occurred."""
    positions = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return (text[:min(positions)], True) if positions else (text, False)


def held_back(text: str, stops: Sequence[str]) -> int:
    """How many final characters of `text` could begin a stop string (a stream must not show them yet)."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest


def strip_stops(tokens, stop_ids) -> list[int]:
    """Cut a row at its first stop id (not kept)."""
    out = []
    for token in np.asarray(tokens).tolist():
        if token in stop_ids:
            break
        out.append(token)
    return out
