"""Bahdanau and Luong attention against their definitions: weights, padding, time axis, keys, saving."""
import numpy as np
import keras
import pytest

import seqtasks  # noqa: F401  (registers layers)
from seqtasks.layers import AdditiveAttention, MultiplicativeAttention

QUERY, MEMORY = 6, 10


def make(kind):
    return AdditiveAttention(8) if kind == "bahdanau" else MultiplicativeAttention(QUERY)


def inputs(seed=0, batch=3, time=4, source=7):
    rng = np.random.default_rng(seed)
    query = rng.normal(size=(batch, QUERY)).astype("float32")
    queries = rng.normal(size=(batch, time, QUERY)).astype("float32")
    memory = rng.normal(size=(batch, source, MEMORY)).astype("float32")
    lengths = np.array([source, 3, 1])[:batch]
    mask = np.arange(source)[None, :] < lengths[:, None]
    return query, queries, memory, mask


def numpy(x):
    return keras.ops.convert_to_numpy(x)


KINDS = ["bahdanau", "luong"]


@pytest.mark.parametrize("kind", KINDS)
def test_weights_sum_to_one_and_padding_gets_none(kind):
    layer = make(kind)
    query, queries, memory, mask = inputs()
    context, weights = layer(query, memory, memory_mask=mask)
    assert numpy(context).shape == (3, MEMORY) and numpy(weights).shape == (3, 7)
    np.testing.assert_allclose(numpy(weights).sum(-1), 1.0, atol=1e-6)
    assert (numpy(weights)[~mask] == 0).all()
    np.testing.assert_allclose(numpy(context), np.einsum("bs,bsf->bf", numpy(weights), memory), atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_padding_content_never_changes_the_result(kind):
    layer = make(kind)
    query, queries, memory, mask = inputs()
    noisy = memory.copy()
    noisy[~mask] = 100.0
    for q in (query, queries):
        clean_context, clean_weights = layer(q, memory, memory_mask=mask)
        noisy_context, noisy_weights = layer(q, noisy, memory_mask=mask)
        np.testing.assert_allclose(numpy(noisy_context), numpy(clean_context), atol=1e-5)
        np.testing.assert_allclose(numpy(noisy_weights), numpy(clean_weights), atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_time_axis_equals_one_query_at_a_time_and_keys_can_be_precomputed(kind):
    layer = make(kind)
    _, queries, memory, mask = inputs(1)
    context, weights = layer(queries, memory, memory_mask=mask)
    assert numpy(weights).shape == (3, 4, 7)
    np.testing.assert_allclose(numpy(weights).sum(-1), 1.0, atol=1e-6)
    keys = layer.precompute_keys(memory)
    for t in range(4):
        step_context, step_weights = layer(queries[:, t], memory, memory_mask=mask, keys=keys)
        np.testing.assert_allclose(numpy(step_context), numpy(context)[:, t], atol=1e-5)
        np.testing.assert_allclose(numpy(step_weights), numpy(weights)[:, t], atol=1e-6)


def test_additive_score_is_the_bahdanau_equation():
    layer = AdditiveAttention(5)
    query, _, memory, _ = inputs(2)
    _, weights = layer(query, memory)
    W_q = numpy(layer.query_projection.kernel)
    W_k, b = numpy(layer.key_projection.kernel), numpy(layer.key_projection.bias)
    v = numpy(layer.score_vector)
    e = np.tanh((query @ W_q)[:, None, :] + memory @ W_k + b) @ v
    expected = np.exp(e - e.max(-1, keepdims=True))
    np.testing.assert_allclose(numpy(weights), expected / expected.sum(-1, keepdims=True), atol=1e-5)


def test_multiplicative_score_is_the_luong_general_equation():
    layer = MultiplicativeAttention(QUERY)
    query, _, memory, _ = inputs(3)
    _, weights = layer(query, memory)
    e = np.einsum("bq,bsq->bs", query, memory @ numpy(layer.key_projection.kernel))
    expected = np.exp(e - e.max(-1, keepdims=True))
    np.testing.assert_allclose(numpy(weights), expected / expected.sum(-1, keepdims=True), atol=1e-5)


def test_luong_rejects_a_query_of_the_wrong_size():
    _, _, memory, _ = inputs()
    with pytest.raises(ValueError, match="units must equal"):
        MultiplicativeAttention(QUERY + 1)(np.zeros((3, QUERY), "float32"), memory)


@pytest.mark.parametrize("kind", KINDS)
def test_attention_in_a_saved_model_loads_with_identical_outputs(kind, tmp_path):
    query_in = keras.Input((QUERY,))
    memory_in = keras.Input((7, MEMORY))
    mask_in = keras.Input((7,), dtype="bool")
    context, weights = make(kind)(query_in, memory_in, memory_mask=mask_in)
    model = keras.Model([query_in, memory_in, mask_in], [context, weights])
    query, _, memory, mask = inputs(4)
    expected = [numpy(x) for x in model([query, memory, mask])]
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    for got, want in zip(loaded([query, memory, mask]), expected):
        np.testing.assert_array_equal(numpy(got), want)
    layer = make(kind)
    assert type(layer).from_config(layer.get_config()).get_config() == layer.get_config()
