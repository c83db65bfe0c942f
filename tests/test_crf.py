"""The CRF against its definition: the forward algorithm equals enumerating every path, Viterbi
returns the best path found by enumeration, and padding changes neither."""
import itertools

import keras
import numpy as np
import pytest

from seqtasks.layers.crf import CRF


def brute_force(emissions, transitions, start, end, length):
    """Every path's score, by the definition, for one sentence of `length` real tokens."""
    num_tags = emissions.shape[-1]
    scores = {}
    for path in itertools.product(range(num_tags), repeat=length):
        score = start[path[0]] + end[path[-1]] + sum(emissions[t, tag] for t, tag in enumerate(path))
        score += sum(transitions[a, b] for a, b in zip(path, path[1:]))
        scores[path] = score
    return scores


@pytest.fixture(scope="module")
def crf():
    layer = CRF(3)
    layer.build()
    rng = np.random.default_rng(0)
    layer.transitions.assign(rng.normal(size=(3, 3)).astype("float32"))
    layer.start_scores.assign(rng.normal(size=(3,)).astype("float32"))
    layer.end_scores.assign(rng.normal(size=(3,)).astype("float32"))
    return layer


def parameters(layer):
    return [keras.ops.convert_to_numpy(w) for w in (layer.transitions, layer.start_scores, layer.end_scores)]


@pytest.mark.parametrize("lengths", [(4, 2, 1, 3)])
def test_forward_algorithm_and_viterbi_equal_brute_force_with_padding(crf, lengths):
    rng = np.random.default_rng(1)
    time = max(lengths) + 1  # every sentence has at least one padded step
    emissions = rng.normal(size=(len(lengths), time, 3)).astype("float32") * 2
    mask = np.arange(time)[None, :] < np.array(lengths)[:, None]
    tags = rng.integers(0, 3, size=(len(lengths), time))
    log_z = keras.ops.convert_to_numpy(crf.log_partition(emissions, mask))
    nll = keras.ops.convert_to_numpy(crf.negative_log_likelihood(emissions, tags, mask))
    best = keras.ops.convert_to_numpy(crf.decode(emissions, mask))
    transitions, start, end = parameters(crf)
    for i, length in enumerate(lengths):
        scores = brute_force(emissions[i], transitions, start, end, length)
        values = np.array(list(scores.values()))
        expected_log_z = values.max() + np.log(np.exp(values - values.max()).sum())
        assert log_z[i] == pytest.approx(expected_log_z, abs=1e-4)
        gold = tuple(int(t) for t in tags[i, :length])
        assert nll[i] == pytest.approx(expected_log_z - scores[gold], abs=1e-4)
        assert tuple(best[i, :length]) == max(scores, key=scores.get)


def test_padding_values_never_change_likelihood_or_path(crf):
    rng = np.random.default_rng(2)
    emissions = rng.normal(size=(2, 6, 3)).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]], bool)
    tags = rng.integers(0, 3, size=(2, 6))
    noisy, noisy_tags = emissions.copy(), tags.copy()
    noisy[~mask] = 100.0 * rng.normal(size=(int((~mask).sum()), 3))
    noisy_tags[~mask] = 2
    for a, b in [(crf.negative_log_likelihood(emissions, tags, mask), crf.negative_log_likelihood(noisy, noisy_tags, mask)),
                 (crf.decode(emissions, mask) * mask, crf.decode(noisy, mask) * mask)]:
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), rtol=1e-5)
    short = crf.negative_log_likelihood(emissions[:1, :3], tags[:1, :3], mask[:1, :3])
    assert keras.ops.convert_to_numpy(short)[0] == pytest.approx(
        float(keras.ops.convert_to_numpy(crf.negative_log_likelihood(emissions, tags, mask))[0]), abs=1e-5)


def test_probabilities_of_all_paths_sum_to_one(crf):
    emissions = np.random.default_rng(3).normal(size=(1, 3, 3)).astype("float32")
    mask = np.ones((1, 3), bool)
    total = 0.0
    for path in itertools.product(range(3), repeat=3):
        nll = crf.negative_log_likelihood(emissions, np.array([path]), mask)
        total += float(np.exp(-keras.ops.convert_to_numpy(nll)[0]))
    assert total == pytest.approx(1.0, abs=1e-5)


def test_serialization_round_trip(crf):
    clone = CRF.from_config(crf.get_config())
    clone.build()
    clone.set_weights(crf.get_weights())
    emissions = np.random.default_rng(4).normal(size=(2, 4, 3)).astype("float32")
    mask = np.ones((2, 4), bool)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(clone.decode(emissions, mask)),
                                  keras.ops.convert_to_numpy(crf.decode(emissions, mask)))


@pytest.mark.parametrize("batch, time", [(4, 1), (1, 1), (1, 6)])
def test_every_batch_shape_works_in_a_graph_of_unknown_length(crf, batch, time):
    """A bucketed batch whose sentences all have one token is a scan of length 1 (it once failed as
    an empty scan): loss and Viterbi match the definition in a graph that does not know the length."""
    import tensorflow as tf

    spec = [tf.TensorSpec([None, None, 3]), tf.TensorSpec([None, None], tf.bool), tf.TensorSpec([None, None], tf.int32)]

    @tf.function(input_signature=spec)
    def loss_and_path(emissions, mask, tags):
        return crf.negative_log_likelihood(emissions, tags, mask), crf.decode(emissions, mask)

    rng = np.random.default_rng(3)
    emissions = rng.normal(size=(batch, time, 3)).astype("float32")
    mask = np.ones((batch, time), bool)
    tags = rng.integers(0, 3, size=(batch, time)).astype("int32")
    nll, best = (keras.ops.convert_to_numpy(x) for x in loss_and_path(emissions, mask, tags))
    transitions, start, end = parameters(crf)
    for i in range(batch):
        scores = brute_force(emissions[i], transitions, start, end, time)
        values = np.array(list(scores.values()))
        log_z = values.max() + np.log(np.exp(values - values.max()).sum())
        assert nll[i] == pytest.approx(log_z - scores[tuple(int(t) for t in tags[i])], abs=1e-4)
        assert tuple(best[i]) == max(scores, key=scores.get)
