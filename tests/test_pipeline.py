"""Encoding once with a cache, and windows whose targets are the inputs shifted by one."""
import numpy as np

from seqtasks.pipeline import EncodedCorpus, batches_per_pass, encode_corpus, language_model_batches, language_model_windows
from seqtasks.readers import open_text_source
from seqtasks.tokenizers import train_tokenizer


def corpus(n=200, seq=np.arange(4, 50)):
    return EncodedCorpus(np.resize(seq, n).astype(np.uint16), n)


def batches(data, first, count, seed=1):
    stream = language_model_batches(data, 8, 4, seed=seed, first_batch=first, num_batches=count)
    return np.stack([inputs for inputs, _ in stream.as_numpy_iterator()])


def test_training_windows_line_up_inputs_and_targets():
    data = corpus(1000)
    stream = list(language_model_batches(data, 16, 4, seed=1, first_batch=0, num_batches=20).as_numpy_iterator())
    assert len(stream) == 20  # more than one pass: the stream continues into the next pass
    for inputs, targets in stream:
        assert inputs.shape == targets.shape == (4, 16)
        np.testing.assert_array_equal(inputs[:, 1:], targets[:, :-1])
        # every window is a contiguous slice of the corpus (ids 4..49 repeating)
        steps = np.diff(np.concatenate([inputs, targets[:, -1:]], axis=1), axis=1)
        assert np.isin(steps, [1, -45]).all()


def test_any_slice_of_the_stream_is_rebuilt_exactly():
    data = corpus(2000)
    per_pass = batches_per_pass(data, 8, 4)
    whole = batches(data, 0, 3 * per_pass)
    np.testing.assert_array_equal(batches(data, 5, 17), whole[5:22])        # a resumed epoch
    np.testing.assert_array_equal(batches(data, per_pass - 2, 4), whole[per_pass - 2:per_pass + 2])
    assert not np.array_equal(whole[:per_pass], whole[per_pass:2 * per_pass])  # each pass reshuffled
    # one pass visits every window exactly once
    firsts = sorted(int(w[0]) for batch in whole[:per_pass] for w in batch)
    assert len(firsts) == per_pass * 4
    assert not np.array_equal(batches(data, 0, 4, seed=2), whole[:4])


def test_evaluation_windows_score_every_token_once():
    data = corpus(103)
    targets = [t for _, t in language_model_windows(data, 10, 4).as_numpy_iterator()]
    flat = np.concatenate([t.reshape(-1) for t in targets])
    assert (flat != 0).sum() == 102
    np.testing.assert_array_equal(flat[flat != 0], data.ids[1:])


def test_encode_corpus_caches_and_separates_documents(tmp_path):
    (tmp_path / "a.txt").write_text("abc\nab\n")
    (tmp_path / "b.txt").write_text("cab\n")
    source = open_text_source(str(tmp_path))
    tokenizer = train_tokenizer("char", (line for line, _ in source.lines()))
    encoded = encode_corpus(source, tokenizer, cache_dir=tmp_path / "cache", show_progress=False)
    eos = tokenizer.eos_id
    # a start-of-document EOS, then one after each of the two documents (files)
    ids = list(encoded.ids)
    assert ids.count(eos) == 3 and ids[0] == eos and ids[-1] == eos
    assert ids[1:ids.index(eos, 1)] == tokenizer.encode("abc\nab\n")
    assert tokenizer.decode([i for i in encoded.ids if i != eos]) == "abc\nab\ncab\n"
    assert encoded.characters == len("abc\nab\ncab\n")
    files = sorted(p.name for p in (tmp_path / "cache").iterdir())
    again = encode_corpus(source, tokenizer, cache_dir=tmp_path / "cache", show_progress=False)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == files
    np.testing.assert_array_equal(np.asarray(again.ids), np.asarray(encoded.ids))
