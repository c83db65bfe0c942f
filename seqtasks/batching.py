"""The one batching core of every task: holdout splits, length buckets, padding, and epochs as slices
of a stream of passes.

    holdout_split            (training, validation) indices: a seeded random share held out, at least one
    holdout_items            the same split of a list
    length_bucketed_batches  example indices in batches of similar length, so padding stays small
    pad, pad_nested          rows of ids -> (batch, time) or (batch, time, width), right-padded (PAD = 0)
    fit_batch_size           the batch size, or all the training data when it holds fewer items
    steps_per_epoch          --steps-per-epoch, or one pass when it is 0
    stream_batches           batch g of the stream: batch g % per_pass of pass g // per_pass
    stream_dataset           tf.data of a range of that stream's batches
    epoch_datasets           FitPlan.train_batches over that stream
    bucketed_epochs          FitPlan.train_batches and steps of length-bucketed passes
    batch_dataset            a generator of batches -> tf.data, its cardinality told, prefetched

What --steps-per-epoch means, in every task: the number of training batches between two
validations. The training batches form one endless stream: pass p visits every training example
(window, pair, caption) once, in an order set by (seed, p) alone, and the passes follow one another.
Epoch e is batches e·S .. (e+1)·S - 1 of that stream (S = steps per epoch; 0 = one pass), so an epoch
shorter than a pass leaves the rest of the pass to the next epoch, a longer one runs on into the next
pass, and a resumed run rebuilds exactly the batches it has not yet trained on.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np

from seqtasks.errors import UserError

PAD = 0  # the id padding positions hold (tokenizers.PAD_ID); a loss or mask ignores it
Batch = TypeVar("Batch")


def holdout_split(count: int, fraction: float, seed: int, *, what: str = "examples", where: str | None = None,
                  valid_flag: str = "--valid") -> tuple[np.ndarray, np.ndarray]:
    """(training indices, validation indices), each ascending: a random `fraction` of `count` items,
    at least one, chosen by `seed` alone, is held out for validation. Too few items to keep one for
    training as well is a UserError naming `what` (e.g. "sentence pairs") and the flag that gives
    validation data instead."""
    held = max(1, int(round(count * fraction)))
    if held >= count:
        raise UserError(f"{count} {what} are too few to hold out --valid-fraction {fraction:g} for validation",
                        where, f"give more {what}, a smaller --valid-fraction, or validation data with {valid_flag}")
    order = np.random.default_rng(seed).permutation(count)
    return np.sort(order[held:]), np.sort(order[:held])


def holdout_items(items: Sequence, fraction: float, seed: int, **error) -> tuple[list, list]:
    """(training items, validation items) of a list, as holdout_split chooses them (both in list order)."""
    train, valid = holdout_split(len(items), fraction, seed, **error)
    return [items[i] for i in train], [items[i] for i in valid]


def length_bucketed_batches(lengths, batch_size: int, *, shuffle: bool, seed: int = 0, epoch: int = 0,
                            window_batches: int = 100, drop_remainder: bool = False) -> list[np.ndarray]:
    """Example indices grouped into batches of similar length, so padding stays small.

    Training (shuffle=True): the examples are shuffled, sorted by length within windows of
    window_batches × batch_size consecutive examples, cut into batches, and the batches shuffled; all
    of it depends only on (seed, epoch), so a pass is rebuilt exactly. Every example appears once,
    in ceil(n / batch_size) batches (the last may be smaller), or with `drop_remainder` in
    n // batch_size full ones (the shuffle decides which examples this pass leaves out).
    Evaluation: sorted by length, shortest first, every example once.
    """
    lengths = np.asarray(lengths)
    if not shuffle:
        order = np.argsort(lengths, kind="stable")
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    if drop_remainder:
        order = order[:len(order) // batch_size * batch_size]
    window = batch_size * window_batches
    batches = []
    for start in range(0, len(order), window):
        chunk = order[start:start + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def pad(rows: Sequence[Sequence[int]], length: int | None = None, *, multiple: int = 1,
        value: int = PAD) -> np.ndarray:
    """Rows of ids -> (len(rows), time) int32, right-padded with `value`. time = `length` (longer rows
    are cut), or the longest row rounded up to a `multiple` (fewer distinct shapes to trace)."""
    width = length if length is not None else -(-max((len(r) for r in rows), default=0) // multiple) * multiple
    out = np.full((len(rows), width), value, np.int32)
    for i, row in enumerate(rows):
        row = row[:width]
        out[i, :len(row)] = row
    return out


def pad_nested(rows: Sequence[Sequence[Sequence[int]]], value: int = PAD) -> np.ndarray:
    """Rows of rows of ids (e.g. a sentence's words' characters) -> (batch, time, width) int32, time the
    longest row, width the longest inner row, right-padded with `value` on both axes."""
    time = max((len(row) for row in rows), default=0)
    width = max((len(inner) for row in rows for inner in row), default=0)
    out = np.full((len(rows), time, width), value, np.int32)
    for i, row in enumerate(rows):
        for position, inner in enumerate(row):
            out[i, position, :len(inner)] = inner
    return out


def fit_batch_size(batch_size: int, available: int, items: str) -> int:
    """The batch size for training data of `available` items (`items`: "examples", "windows of 128
    tokens"): batch_size, or all of them when there are fewer, said in one line, so that a small
    corpus trains (one step per pass) instead of failing on a batch it cannot fill."""
    if available >= batch_size or available < 1:
        return batch_size
    print(f"note: the training data holds {available} {items}: batch size {batch_size} -> {available} "
          "(one step per pass over it)", flush=True)
    return available


def steps_per_epoch(setting: int, per_pass: int) -> int:
    """Training batches between validations: the --steps-per-epoch setting, or one pass when it is 0."""
    return setting or per_pass


def stream_batches(pass_batches: Callable[[int], Sequence[Batch]], per_pass: int,
                   numbers: Iterable[int]) -> Iterator[tuple[int, Batch]]:
    """(g, batch g of the stream) for each number g: batch g % per_pass of pass g // per_pass, where
    pass_batches(p) gives pass p's per_pass batches. A pass is built once, when its first batch is reached."""
    built: dict[int, Sequence[Batch]] = {}
    for number in numbers:
        index = number // per_pass
        if index not in built:
            built.clear()  # one pass in memory at a time
            built[index] = pass_batches(index)
        yield number, built[index][number % per_pass]


def epoch_datasets(dataset_of: Callable[[range], Any], steps: int) -> Callable[[int, int], Any]:
    """FitPlan.train_batches for a stream of batches: (epoch, batches already trained) -> dataset_of(the
    stream numbers of the epoch's other batches). Epoch e holds stream batches e·steps .. (e+1)·steps - 1."""
    return lambda epoch, skip: dataset_of(range(epoch * steps + skip, (epoch + 1) * steps))


def stream_dataset(pass_batches: Callable[[int], Sequence[Batch]], per_pass: int, numbers: range,
                   make_batch: Callable[[int, Batch], Any], signature, transform=None):
    """batch_dataset of make_batch(g, batch g of the stream) for each stream number g in `numbers`
    (the number seeds per-batch randomness such as augmentation)."""
    return batch_dataset(lambda: (make_batch(number, members) for number, members in
                                  stream_batches(pass_batches, per_pass, numbers)), signature, len(numbers), transform)


def bucketed_epochs(lengths, batch_size: int, seed: int, steps_setting: int, make_batch: Callable[[np.ndarray], Any],
                    signature) -> tuple[Callable[[int, int], Any], int]:
    """(FitPlan.train_batches, steps per epoch) for examples of these lengths: pass p is
    length_bucketed_batches(lengths, batch_size, seed=seed, epoch=p), every example once in
    ceil(n / batch_size) batches; make_batch(example indices) -> one batch as `signature` describes it."""
    per_pass = -(-len(lengths) // batch_size)
    steps = steps_per_epoch(steps_setting, per_pass)

    def pass_batches(index: int) -> list[np.ndarray]:
        return length_bucketed_batches(lengths, batch_size, shuffle=True, seed=seed, epoch=index)

    def dataset_of(numbers: range):
        return stream_dataset(pass_batches, per_pass, numbers, lambda _, indices: make_batch(indices), signature)

    return epoch_datasets(dataset_of, steps), steps


def batch_dataset(make_batches: Callable[[], Iterator], signature, count: int, transform=None):
    """tf.data.Dataset of the `count` batches make_batches() yields (as `signature` describes them),
    mapped by `transform` (in parallel) when one is given, and prefetched."""
    import tensorflow as tf

    dataset = tf.data.Dataset.from_generator(make_batches, output_signature=signature)
    if transform is not None:
        dataset = dataset.map(transform, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.apply(tf.data.experimental.assert_cardinality(count)).prefetch(tf.data.AUTOTUNE)
