"""The batching core: holdout splits, length buckets, padding, and what --steps-per-epoch means."""
import numpy as np
import pytest

from seqtasks.batching import (epoch_datasets, fit_batch_size, holdout_items, holdout_split, length_bucketed_batches,
                               pad, pad_nested, steps_per_epoch, stream_batches)
from seqtasks.errors import UserError


# ---- holdout ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("count, fraction, held", [(100, 0.1, 10), (7, 0.1, 1), (2, 0.5, 1), (10, 0.0, 1),
                                                   (1001, 0.05, 50)])
def test_holdout_holds_out_the_rounded_share_and_at_least_one(count, fraction, held):
    train, valid = holdout_split(count, fraction, seed=3)
    assert len(valid) == held and len(train) == count - held
    assert not set(train) & set(valid)                                   # disjoint
    assert sorted(set(train) | set(valid)) == list(range(count))         # together: every example
    assert list(train) == sorted(train) and list(valid) == sorted(valid)  # in the data's order


def test_holdout_depends_on_the_seed_alone():
    first = holdout_split(50, 0.2, seed=1)
    again = holdout_split(50, 0.2, seed=1)
    other = holdout_split(50, 0.2, seed=2)
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])


def test_holdout_of_a_list_keeps_the_items_and_their_order():
    items = [f"example {i}" for i in range(20)]
    train, valid = holdout_items(items, 0.25, seed=0)
    indices = holdout_split(20, 0.25, seed=0)
    assert train == [items[i] for i in indices[0]] and valid == [items[i] for i in indices[1]]


@pytest.mark.parametrize("count, fraction", [(1, 0.1), (2, 0.9), (0, 0.1)])
def test_too_few_to_hold_out_is_one_line_naming_the_flags(count, fraction):
    with pytest.raises(UserError) as caught:
        holdout_split(count, fraction, seed=0, what="sentence pairs", where="pairs.tsv",
                      valid_flag="--valid-src/--valid-tgt")
    message = str(caught.value)
    assert f"{count} sentence pairs are too few to hold out --valid-fraction {fraction:g}" in message
    assert "--valid-src/--valid-tgt" in message and "\n" not in message


# ---- length buckets ---------------------------------------------------------------------------------

def lengths_of(count, seed=0):
    return np.random.default_rng(seed).integers(1, 60, count)


@pytest.mark.parametrize("count, batch_size", [(1000, 32), (33, 32), (5, 8), (64, 8)])
def test_a_training_pass_holds_every_example_exactly_once(count, batch_size):
    batches = length_bucketed_batches(lengths_of(count), batch_size, shuffle=True, seed=1, epoch=4)
    members = np.concatenate(batches)
    assert sorted(members) == list(range(count))
    assert len(batches) == -(-count // batch_size)
    assert sum(len(b) < batch_size for b in batches) <= 1  # only the remainder is short


def test_evaluation_batches_are_every_example_once_shortest_first():
    lengths = lengths_of(100)
    batches = length_bucketed_batches(lengths, 16, shuffle=False)
    members = np.concatenate(batches)
    assert sorted(members) == list(range(100))
    assert list(lengths[members]) == sorted(lengths)


def test_dropping_the_remainder_gives_full_batches_of_distinct_examples():
    batches = length_bucketed_batches(lengths_of(70), 16, shuffle=True, seed=0, drop_remainder=True)
    assert [len(b) for b in batches] == [16] * 4
    members = np.concatenate(batches)
    assert len(set(members)) == 64
    # the same shuffle as without dropping: the examples left out differ from pass to pass
    other = np.concatenate(length_bucketed_batches(lengths_of(70), 16, shuffle=True, seed=0, epoch=1,
                                                   drop_remainder=True))
    assert set(members) != set(other)


def test_buckets_need_less_padding_than_random_batches():
    lengths = lengths_of(2000)
    bucketed = length_bucketed_batches(lengths, 32, shuffle=True, seed=0)
    padded = sum(len(b) * lengths[b].max() for b in bucketed)
    random = np.random.default_rng(0).permutation(2000)
    unbucketed = sum(32 * lengths[random[i:i + 32]].max() for i in range(0, 2000, 32))
    assert padded < 0.8 * unbucketed


def test_a_pass_is_set_by_seed_and_epoch():
    lengths = lengths_of(300)

    def of(seed, epoch):
        return [list(b) for b in length_bucketed_batches(lengths, 16, shuffle=True, seed=seed, epoch=epoch)]

    assert of(1, 2) == of(1, 2)
    assert of(1, 2) != of(1, 3) and of(1, 2) != of(2, 2)


# ---- padding ----------------------------------------------------------------------------------------

def test_padding_marks_exactly_the_positions_past_each_row():
    rows = [[5, 6, 7], [8], [9, 10]]
    padded = pad(rows)
    assert padded.shape == (3, 3) and padded.dtype == np.int32
    mask = padded != 0
    np.testing.assert_array_equal(mask, np.arange(3)[None, :] < np.array([3, 1, 2])[:, None])
    np.testing.assert_array_equal(padded[mask], [5, 6, 7, 8, 9, 10])


def test_padding_to_a_multiple_or_a_length_cuts_and_fills():
    assert pad([[1, 2, 3]], multiple=8).shape == (1, 8)
    np.testing.assert_array_equal(pad([[1, 2, 3], [4]], length=2), [[1, 2], [4, 0]])
    np.testing.assert_array_equal(pad([[1], [2, 3]], value=-1), [[1, -1], [2, 3]])


def test_nested_padding_masks_both_axes():
    words = [[[1, 2], [3]], [[4, 5, 6]]]
    padded = pad_nested(words)
    assert padded.shape == (2, 2, 3)
    np.testing.assert_array_equal(padded != 0, [[[1, 1, 0], [1, 0, 0]], [[1, 1, 1], [0, 0, 0]]])


# ---- steps per epoch --------------------------------------------------------------------------------

def passes(count=10, batch_size=3, seed=0):
    """Each pass: every example once in ceil(10 / 3) = 4 batches, reshuffled by pass."""
    per_pass = -(-count // batch_size)
    return (lambda index: length_bucketed_batches(np.ones(count), batch_size, shuffle=True, seed=seed,
                                                  epoch=index)), per_pass


def epoch_members(steps, epoch, skip=0):
    pass_batches, per_pass = passes()
    numbers = epoch_datasets(lambda numbers: numbers, steps)(epoch, skip)
    return [list(batch) for _, batch in stream_batches(pass_batches, per_pass, numbers)]


def stream(count):
    pass_batches, per_pass = passes()
    return [list(batch) for _, batch in stream_batches(pass_batches, per_pass, range(count))]


def test_zero_steps_per_epoch_is_one_pass_and_an_epoch_is_that_pass():
    assert steps_per_epoch(0, 4) == 4 and steps_per_epoch(7, 4) == 7
    pass_batches, _ = passes()
    for epoch in range(3):
        assert epoch_members(4, epoch) == [list(b) for b in pass_batches(epoch)]


def test_epochs_are_consecutive_slices_of_one_stream_of_passes():
    whole = stream(12)  # three passes
    assert sorted(i for batch in whole[:4] for i in batch) == list(range(10))  # a pass: each example once
    assert whole[:4] != whole[4:8]                                            # passes reshuffled
    for steps in (1, 3, 4, 5):
        epochs = [batch for epoch in range(12 // steps) for batch in epoch_members(steps, epoch)]
        assert epochs == whole[:len(epochs)]  # shorter epochs leave the pass to the next; longer run on


def test_a_resumed_epoch_is_the_rest_of_the_same_batches():
    assert epoch_members(5, 1, skip=2) == epoch_members(5, 1)[2:]
    assert len(epoch_members(5, 1, skip=5)) == 0


def test_a_batch_no_larger_than_the_data(capsys):
    assert fit_batch_size(64, 1000, "examples") == 64
    assert fit_batch_size(64, 43, "windows of 128 tokens") == 43
    assert "holds 43 windows of 128 tokens: batch size 64 -> 43" in capsys.readouterr().out


# ---- the encoded-ids cache --------------------------------------------------------------------------

def test_a_cache_entry_is_built_once_then_reused_and_rebuilt_when_damaged(tmp_path):
    from seqtasks.disk_cache import cached_entry

    built = []

    def build(path):
        built.append(path)
        np.arange(10, dtype=np.int32).tofile(path)
        return {"bytes": 40}

    def whole(meta, path):
        return path.stat().st_size == meta["bytes"]

    path, meta = cached_entry(tmp_path, "k1", ".ids", build, whole)
    again, _ = cached_entry(tmp_path, "k1", ".ids", build, whole)
    assert again == path and len(built) == 1 and meta == {"bytes": 40}
    np.testing.assert_array_equal(np.fromfile(path, np.int32), np.arange(10))
    path.write_bytes(b"cut")  # a damaged data file is no entry
    cached_entry(tmp_path, "k1", ".ids", build, whole)
    assert len(built) == 2 and path.stat().st_size == 40
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]  # no temporary left behind


def test_a_failed_build_leaves_no_entry(tmp_path):
    from seqtasks.disk_cache import cached_entry

    def build(path):
        path.write_bytes(b"half")
        raise UserError("the text encodes to no tokens")

    with pytest.raises(UserError):
        cached_entry(tmp_path, "k2", ".ids", build, lambda meta, path: True)
    assert list(tmp_path.iterdir()) == []


def test_encoded_ids_are_reused_until_the_data_changes(tmp_path):
    from seqtasks.readers.parallel import open_parallel_source
    from seqtasks.tokenizers import train_tokenizer
    from seqtasks.translation_data import TranslationVocab, encode_pairs

    table = tmp_path / "pairs.tsv"
    table.write_text("a b\tb a\nc d\td c\n")
    tokenizer = train_tokenizer("char", ["abcd "])
    vocab = TranslationVocab(tokenizer, tokenizer)
    cache = tmp_path / "cache"
    first = encode_pairs(open_parallel_source(table=str(table)), vocab, cache_dir=cache)
    entries = sorted(p.name for p in cache.iterdir())
    assert len(first) == 2 and len(entries) == 2  # KEY.pairs.npz and KEY.json
    again = encode_pairs(open_parallel_source(table=str(table)), vocab, cache_dir=cache)
    assert sorted(p.name for p in cache.iterdir()) == entries
    np.testing.assert_array_equal(again.target_flat, first.target_flat)
    table.write_text("a b\tb a\nc d\td c\nd a\ta d\n")  # changed data: a new entry, not the old ids
    changed = encode_pairs(open_parallel_source(table=str(table)), vocab, cache_dir=cache)
    assert len(changed) == 3 and len(list(cache.iterdir())) == 4
    assert tokenizer.decode(changed.source_flat[changed.source_offsets[2]:]) == "d a"
