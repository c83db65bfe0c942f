"""Encoding once with a cache, and windows whose targets are the inputs shifted by one."""
import numpy as np

from seqtasks.pipeline import EncodedCorpus, encode_corpus, language_model_windows
from seqtasks.readers import open_text_source
from seqtasks.tokenizers import train_tokenizer


def corpus(n=200, seq=np.arange(4, 50)):
    return EncodedCorpus(np.resize(seq, n).astype(np.uint16), n)


def test_training_windows_line_up_inputs_and_targets():
    data = corpus(1000)
    batches = list(language_model_windows(data, 16, 4, shuffle=True, seed=1, epoch=0).as_numpy_iterator())
    assert len(batches) >= (1000 - 16) // 16 // 4
    for inputs, targets in batches:
        assert inputs.shape == targets.shape == (4, 16)
        np.testing.assert_array_equal(inputs[:, 1:], targets[:, :-1])
        # every window is a contiguous slice of the corpus (ids 4..49 repeating)
        steps = np.diff(np.concatenate([inputs, targets[:, -1:]], axis=1), axis=1)
        assert np.isin(steps, [1, -45]).all()


def test_epoch_order_depends_only_on_seed_and_epoch_and_skip_resumes():
    data = corpus(2000)
    first = [b[0] for b in language_model_windows(data, 8, 4, shuffle=True, seed=3, epoch=2).as_numpy_iterator()]
    again = [b[0] for b in language_model_windows(data, 8, 4, shuffle=True, seed=3, epoch=2).as_numpy_iterator()]
    other = [b[0] for b in language_model_windows(data, 8, 4, shuffle=True, seed=3, epoch=3).as_numpy_iterator()]
    skipped = [b[0] for b in language_model_windows(data, 8, 4, shuffle=True, seed=3, epoch=2,
                                                     skip_batches=5).as_numpy_iterator()]
    np.testing.assert_array_equal(np.stack(first), np.stack(again))
    assert not np.array_equal(np.stack(first), np.stack(other))
    np.testing.assert_array_equal(np.stack(first[5:]), np.stack(skipped))


def test_evaluation_windows_score_every_token_once():
    data = corpus(103)
    targets = [t for _, t in language_model_windows(data, 10, 4, shuffle=False).as_numpy_iterator()]
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
    assert list(encoded.ids).count(eos) == 2
    assert tokenizer.decode([i for i in encoded.ids if i != eos]) == "abc\nab\ncab\n"
    assert encoded.characters == len("abc\nab\ncab\n")
    files = sorted(p.name for p in (tmp_path / "cache").iterdir())
    again = encode_corpus(source, tokenizer, cache_dir=tmp_path / "cache", show_progress=False)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == files
    np.testing.assert_array_equal(np.asarray(again.ids), np.asarray(encoded.ids))
