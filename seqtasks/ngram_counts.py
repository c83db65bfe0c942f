"""Counting n-grams of a token-id stream and smoothing them into interpolated probability tables (numpy).

Every smoothing method here has one form, so that one lookup (seqtasks.models.ngram) serves them all:

    p_0(w) = 1 / V
    p_k(w | h) = alpha_k(h, w) + gamma_k(h) p_{k-1}(w | h')   if the context h (k-1 tokens) is in level k
               = p_{k-1}(w | h')                              otherwise

h' is h without its first token; alpha_k is 0 for an n-gram hw not in level k. Per level k, with c the
level's counts, T(h) = sum_w c(hw), N_j(h) the number of w with c(hw) = j (N_3+ : >= 3), N_1+(h) all of them:

    kneser-ney (interpolated, Chen & Goodman's modified KN):  alpha = max(c - D(c), 0) / T,
        gamma = sum_w min(D(c(hw)), c(hw)) / T = (D1 N1 + D2 N2 + D3+ N3+) / T;  the highest level
        counts n-grams (c = occurrences), every lower level counts continuations (c(hw) = the number of
        distinct tokens v with v h w in the stream, N_1+(. h w)). D(c) = D1, D2, D3+ for c = 1, 2, >= 3,
        estimated per level from its counts of counts n_1..n_4: Y = n1 / (n1 + 2 n2), D1 = 1 - 2Y n2/n1,
        D2 = 2 - 3Y n3/n2, D3+ = 3 - 4Y n4/n3; a fixed `discount` D > 0 is original interpolated KN (one D).
    witten-bell:  alpha = c / (T + N_1+),  gamma = N_1+ / (T + N_1+)  (raw counts at every level).
    add-k:  only the highest level, alpha = c / (T + kV),  gamma = kV / (T + kV): p = (c + k) / (T + kV),
        and a context never seen gets the uniform 1/V.

alpha + gamma sums to 1 over w for every context, so every p_k is a distribution over the V tokens.
The recursion itself runs in the model (seqtasks.models.ngram), from the arrays of each Level.

Keys: the n-gram w_1..w_k is the int64 sum_i w_i V^(k-i) (exact: no two n-grams share a key), so the
context of a key is key // V, its last token key % V, and its suffix of k-1 tokens key % V^(k-1);
V^(order-1) (V + 1) must stay below 2^63 (key_fits). Counting reads the stream in blocks of BLOCK
tokens (a memory map is never read whole): each block's keys of `order` tokens are counted with
np.unique and merged into the running table, so memory holds the distinct n-grams plus one block,
however long the corpus; the shorter n-grams' counts follow from the longest ones' (count_ngrams).

A tiny corpus with no n-gram seen once or twice (n1 or n2 = 0) cannot estimate modified KN's
discounts: each is then 0.5.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from seqtasks.choices import SMOOTHINGS
from seqtasks.errors import UserError

BLOCK = 1 << 22  # tokens counted at once
_MAX_KEY = 2 ** 63 - 1


@dataclasses.dataclass
class Level:
    """Level k of a model: its n-grams (sorted keys of k tokens) with alpha, its contexts (sorted keys of
    k - 1 tokens) with gamma."""

    ngram_keys: np.ndarray      # (n,) int64
    alpha: np.ndarray           # (n,) float64
    context_keys: np.ndarray    # (m,) int64
    gamma: np.ndarray           # (m,) float64
    discounts: tuple[float, ...] = ()


def key_fits(vocab_size: int, order: int) -> bool:
    """Whether n-grams of `order` tokens fit an int64 key, with room for the model's table slots
    (seqtasks.models.ngram: V^(order-1) (V + 1))."""
    return vocab_size ** (order - 1) * (vocab_size + 1) <= _MAX_KEY


def check_key_size(vocab_size: int, order: int) -> None:
    """A UserError when n-grams of `order` tokens from `vocab_size` do not fit an int64 key."""
    if not key_fits(vocab_size, order):
        fits = max([k for k in range(1, order) if key_fits(vocab_size, k)], default=0)
        raise UserError(f"--order {order} with a vocabulary of {vocab_size:,} tokens needs keys of more than 63 bits",
                        f"--order {order}", f"use --order {fits} or less, or a smaller --vocab-size")


def ngram_keys(ids: np.ndarray, k: int, vocab_size: int) -> np.ndarray:
    """The keys of the len(ids) - k + 1 n-grams of k tokens in ids, in order (Horner's scheme)."""
    ids = np.asarray(ids, np.int64)
    count = max(len(ids) - k + 1, 0)
    keys = ids[:count].copy()
    for j in range(1, k):
        keys *= vocab_size
        keys += ids[j:j + count]
    return keys


def _merge(table: tuple[np.ndarray, np.ndarray] | None, keys: np.ndarray, counts: np.ndarray):
    """The sum of two (sorted distinct keys, counts) tables: each key's place found by binary search
    (no argsort of the whole table)."""
    if table is None:
        return keys, counts
    if len(keys) < len(table[0]) // 64:  # a few keys (the stream's last tokens): add or insert them in place
        at = np.searchsorted(table[0], keys)
        present = table[0][np.minimum(at, len(table[0]) - 1)] == keys if len(table[0]) else np.zeros(len(keys), bool)
        merged = table[1].copy()
        merged[at[present]] += counts[present]
        return np.insert(table[0], at[~present], keys[~present]), np.insert(merged, at[~present], counts[~present])
    merged_keys = np.union1d(table[0], keys)
    merged = np.zeros(len(merged_keys), np.int64)
    merged[np.searchsorted(merged_keys, table[0])] += table[1]  # distinct places within each table
    merged[np.searchsorted(merged_keys, keys)] += counts
    return merged_keys, merged


def runs(sorted_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct values, index of each one's first occurrence, its count) of a sorted array, without a sort."""
    first = np.flatnonzero(np.concatenate([[True], sorted_keys[1:] != sorted_keys[:-1]])) if len(sorted_keys) else \
        np.zeros(0, np.int64)
    return sorted_keys[first], first, np.diff(np.append(first, len(sorted_keys)))


def count_ngrams(ids: np.ndarray, order: int, vocab_size: int, block: int = BLOCK
                 ) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(sorted keys, counts) of the n-grams of k tokens, for k = 1..order] over the whole stream.

    Only the n-grams of `order` tokens are sorted (np.unique per block, merged into the running table;
    blocks overlap by order - 1 tokens, an n-gram counted in the block where it starts). A shorter
    n-gram's count is the sum over the longest ones it begins (their keys divided by a power of V are
    its key, already sorted), plus its occurrences among the last order - 1 tokens, where no n-gram of
    `order` tokens begins."""
    check_key_size(vocab_size, order)
    table = None
    for start in range(0, len(ids) - order + 1, block):
        piece = np.asarray(ids[start:start + block + order - 1], np.int64)
        table = _merge(table, *np.unique(ngram_keys(piece, order, vocab_size), return_counts=True))
    longest = table or (np.zeros(0, np.int64), np.zeros(0, np.int64))
    tail = np.asarray(ids[max(len(ids) - order + 1, 0):], np.int64)
    tables = []
    for k in range(1, order):
        keys, first, _ = runs(longest[0] // vocab_size ** (order - k))
        counts = np.add.reduceat(longest[1], first) if len(first) else first
        ends = ngram_keys(tail, k, vocab_size)
        tables.append(_merge((keys, counts), *np.unique(ends, return_counts=True)) if len(ends) else (keys, counts))
    return tables + [longest]


def continuation_counts(higher_keys: np.ndarray, k: int, vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(keys, N_1+(. g)) of the n-grams g of k tokens: in how many distinct (k+1)-grams each is the suffix."""
    return np.unique(higher_keys % vocab_size ** k, return_counts=True)


def modified_discounts(counts: np.ndarray) -> tuple[float, float, float]:
    """Chen & Goodman's D1, D2, D3+ from the counts of counts n_1..n_4 (0.5 each when n1 or n2 is 0,
    a tiny corpus; each clipped to [0, j])."""
    n = [int(np.count_nonzero(counts == j)) for j in range(1, 5)]
    if n[0] == 0 or n[1] == 0:
        return 0.5, 0.5, 0.5
    y = n[0] / (n[0] + 2 * n[1])
    d1 = 1 - 2 * y * n[1] / n[0]
    d2 = 2 - 3 * y * n[2] / n[1]
    d3 = 3 - 4 * y * n[3] / n[2] if n[2] else d2
    return tuple(float(np.clip(d, 0.0, j)) for j, d in zip((1, 2, 3), (d1, d2, d3)))


def smoothed_level(keys: np.ndarray, counts: np.ndarray, vocab_size: int, smoothing: str, discount: float = 0.0,
                   add_k: float = 1.0) -> Level:
    """alpha and gamma of one level from its n-grams' keys (sorted) and counts (see the module docstring)."""
    counts = counts.astype(np.float64)
    contexts, first, per_context = runs(keys // vocab_size)  # keys sorted: so are their contexts
    if not len(keys):
        return Level(keys, counts, contexts, np.zeros(0))
    totals = np.add.reduceat(counts, first)
    context_of = np.repeat(np.arange(len(contexts)), per_context)
    discounts: tuple[float, ...] = ()
    if smoothing == "kneser-ney":
        discounts = (discount,) * 3 if discount > 0 else modified_discounts(counts)
        taken = np.minimum(np.asarray(discounts)[np.minimum(counts, 3).astype(int) - 1], counts)
        alpha = (counts - taken) / totals[context_of]
        gamma = np.add.reduceat(taken, first) / totals
    elif smoothing == "witten-bell":
        alpha = counts / (totals + per_context)[context_of]
        gamma = per_context / (totals + per_context)
    elif smoothing == "add-k":
        alpha = counts / (totals + add_k * vocab_size)[context_of]
        gamma = add_k * vocab_size / (totals + add_k * vocab_size)
    else:
        raise UserError(f"unknown smoothing {smoothing!r}", fix=f"choose one of: {', '.join(SMOOTHINGS)}")
    return Level(keys, alpha, contexts, gamma, discounts)


def smoothed_levels(tables: list[tuple[np.ndarray, np.ndarray]], vocab_size: int, smoothing: str,
                    discount: float = 0.0, add_k: float = 1.0) -> list[Level]:
    """Levels 1..order from count_ngrams' tables: Kneser-Ney's lower levels count continuations,
    add-k keeps only the highest level (the others empty)."""
    order = len(tables)
    levels = []
    for k in range(1, order + 1):
        keys, counts = tables[k - 1]
        if smoothing == "kneser-ney" and k < order:
            keys, counts = continuation_counts(tables[k][0], k, vocab_size)
        elif smoothing == "add-k" and k < order:
            keys, counts = keys[:0], counts[:0]
        levels.append(smoothed_level(keys, counts, vocab_size, smoothing, discount, add_k))
    return levels


def stream_contexts(ids: np.ndarray, width: int) -> np.ndarray:
    """(len(ids), width): row i holds the `width` tokens before ids[i] (-1 before the stream's start)."""
    if not width:
        return np.zeros((len(ids), 0), np.int64)
    padded = np.concatenate([np.full(width, -1, np.int64), np.asarray(ids, np.int64)])
    return np.lib.stride_tricks.sliding_window_view(padded, width)[:len(ids)]
