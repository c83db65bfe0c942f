"""Layers and models against their definitions: causality, cached decoding, masks, serialization."""
import math

import numpy as np
import keras
import pytest

import seqtasks  # noqa: F401  (registers layers)
from seqtasks.layers import FeedForward, MultiHeadAttention, RecurrentStack, SinusoidalPosition, causal_attention_mask
from seqtasks.models.language_model import RecurrentLanguageModel, TransformerLanguageModel

VOCAB = 23


def language_models():
    return {
        "rnn": RecurrentLanguageModel(VOCAB, "rnn", 16, 1),
        "gru": RecurrentLanguageModel(VOCAB, "gru", 16, 2),
        "lstm": RecurrentLanguageModel(VOCAB, "lstm", 16, 2),
        "transformer": TransformerLanguageModel(VOCAB, 16, 4, 2, max_length=24),
        "transformer-sinusoidal": TransformerLanguageModel(VOCAB, 16, 2, 1, max_length=24, positions="sinusoidal"),
        "transformer-relu": TransformerLanguageModel(VOCAB, 16, 2, 1, max_length=24, activation="relu"),
    }


@pytest.mark.parametrize("kind", list(language_models()))
def test_logits_at_t_ignore_tokens_after_t(kind):
    model = language_models()[kind]
    rng = np.random.default_rng(0)
    ids = rng.integers(4, VOCAB, (2, 12))
    changed = ids.copy()
    changed[:, 7:] = rng.integers(4, VOCAB, (2, 5))
    before, after = keras.ops.convert_to_numpy(model(ids)), keras.ops.convert_to_numpy(model(changed))
    np.testing.assert_allclose(before[:, :7], after[:, :7], atol=1e-5)
    assert np.abs(before[:, 7:] - after[:, 7:]).max() > 1e-4


@pytest.mark.parametrize("kind", list(language_models()))
def test_cached_step_equals_full_forward(kind):
    model = language_models()[kind]
    ids = np.random.default_rng(1).integers(4, VOCAB, (3, 14))
    full = keras.ops.convert_to_numpy(model(ids))
    logits, state = model.prefill(ids[:, :4], 24)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(logits), full[:, 3], atol=1e-5)
    for t in range(4, 14):
        logits, state = model.step(ids[:, t], state, t)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(logits), full[:, t], atol=1e-5)


@pytest.mark.parametrize("kind", list(language_models()))
def test_save_load_gives_identical_logits(kind, tmp_path):
    model = language_models()[kind]
    ids = np.random.default_rng(2).integers(4, VOCAB, (2, 9))
    expected = keras.ops.convert_to_numpy(model(ids))
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(ids)), expected)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_recurrent_padding_never_changes_results(cell, bidirectional):
    stack = RecurrentStack(cell, 8, num_layers=2, bidirectional=bidirectional)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1, 5, 4)).astype("float32")
    padded = np.concatenate([x, rng.normal(size=(1, 3, 4)).astype("float32")], axis=1)
    mask = np.array([[True] * 5 + [False] * 3])
    out_short, states_short = stack(x)
    out_padded, states_padded = stack(padded, mask=mask)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out_padded)[:, :5],
                               keras.ops.convert_to_numpy(out_short), atol=1e-5)
    for short, long in zip(states_short[-1], states_padded[-1]):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(long), keras.ops.convert_to_numpy(short), atol=1e-5)


def test_lstm_cell_matches_the_textbook_equations():
    stack = RecurrentStack("lstm", 3, num_layers=1)
    x = np.random.default_rng(4).normal(size=(2, 4, 5)).astype("float32")
    outputs, _ = stack(x)
    layer = stack.forward_layers[0]
    W, b = [keras.ops.convert_to_numpy(w) for w in layer.input_projection.weights]
    U = keras.ops.convert_to_numpy(layer.cell.recurrent_kernel)
    sigmoid = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    h = c = np.zeros((2, 3), "float32")
    for t in range(4):
        i, f, g, o = np.split(x[:, t] @ W + b + h @ U, 4, axis=-1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(outputs)[:, t], h, atol=1e-5)


def test_attention_weights_sum_to_one_and_ignore_masked_keys():
    attention = MultiHeadAttention(8, 2)
    rng = np.random.default_rng(5)
    query, memory = rng.normal(size=(2, 3, 8)).astype("float32"), rng.normal(size=(2, 6, 8)).astype("float32")
    key_mask = np.array([[True] * 4 + [False] * 2, [True] * 6])[:, None, :]
    out, _, weights = attention(query, memory=memory, attention_mask=key_mask, return_weights=True)
    weights = keras.ops.convert_to_numpy(weights)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
    assert weights[0, :, :, 4:].max() < 1e-6
    changed = memory.copy()
    changed[0, 4:] = 100.0
    out_changed, _ = attention(query, memory=changed, attention_mask=key_mask)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out_changed)[0], keras.ops.convert_to_numpy(out)[0],
                               atol=1e-5)


def test_causal_mask():
    mask = keras.ops.convert_to_numpy(causal_attention_mask(3, 5, start_index=2))
    assert mask.tolist() == [[True, True, True, False, False], [True] * 4 + [False], [True] * 5]


def test_sinusoidal_positions_follow_the_formula():
    x = np.zeros((1, 4, 6), "float32")
    encoded = keras.ops.convert_to_numpy(SinusoidalPosition()(x, start_index=3))[0]
    position, i = 5, 1  # row 2 is absolute position 5; features 2i and 2i+1
    angle = position / 10000 ** (2 * i / 6)
    np.testing.assert_allclose(encoded[2, 2:4], [np.sin(angle), np.cos(angle)], atol=1e-5)


def test_unrolled_recurrent_model_equals_the_looped_one_and_decodes(tmp_path):
    looped = RecurrentLanguageModel(VOCAB, "lstm", 16, 2)
    unrolled = RecurrentLanguageModel(VOCAB, "lstm", 16, 2, unroll=True)
    ids = np.random.default_rng(6).integers(4, VOCAB, (2, 10))
    looped.build((None, 10))
    unrolled.build((None, 10))
    unrolled.set_weights(looped.get_weights())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(unrolled(ids)), keras.ops.convert_to_numpy(looped(ids)),
                               atol=1e-5)
    from seqtasks import decoding

    config = decoding.GenerationConfig(max_new_tokens=5, temperature=0.0)
    assert decoding.generate(unrolled, [[4, 5, 6]], config) == decoding.generate(looped, [[4, 5, 6]], config)
    unrolled.save(tmp_path / "unrolled.keras")
    reloaded = keras.saving.load_model(tmp_path / "unrolled.keras", safe_mode=True)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(reloaded(ids)), keras.ops.convert_to_numpy(unrolled(ids)))



@pytest.mark.parametrize("go_backwards", [False, True])
def test_lstm_backpropagation_through_time_equals_automatic_differentiation(go_backwards):
    """The unrolled LSTM's hand-written backward pass (lstm_sequence) against autodiff of the cell loop."""
    import tensorflow as tf
    from seqtasks.layers import RecurrentLayer

    looped = RecurrentLayer("lstm", 6, go_backwards=go_backwards)
    unrolled = RecurrentLayer("lstm", 6, go_backwards=go_backwards, unroll=True)
    rng = np.random.default_rng(7)
    x = tf.constant(rng.normal(size=(3, 9, 5)), "float32")
    start = [tf.constant(rng.normal(size=(3, 6)), "float32") for _ in range(2)]
    weights = tf.constant(rng.normal(size=(3, 9, 6)), "float32")
    looped.build(x.shape)
    unrolled.build(x.shape)
    unrolled.set_weights(looped.get_weights())

    def loss_and_gradients(layer):
        with tf.GradientTape() as tape:
            tape.watch([x, *start])
            outputs, (h, c) = layer(x, initial_state=start)
            loss = tf.reduce_sum(outputs * weights) + tf.reduce_sum(h * 0.5) - tf.reduce_sum(c * 0.25)
        return loss, tape.gradient(loss, [x, *start, *layer.trainable_weights])

    expected_loss, expected = loss_and_gradients(looped)
    loss, gradients = loss_and_gradients(unrolled)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-5)
    for got, want in zip(gradients, expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)

@pytest.mark.parametrize("activation", ["gelu", "gelu_tanh", "relu"])
def test_feed_forward_applies_its_nonlinearity(activation):
    erf = np.vectorize(math.erf)
    layer = FeedForward(6, 10, activation=activation)
    x = np.random.default_rng(5).normal(size=(2, 3, 6)).astype("float32")
    layer.build(x.shape)
    hidden = x @ keras.ops.convert_to_numpy(layer.expand.kernel) + keras.ops.convert_to_numpy(layer.expand.bias)
    nonlinear = {"gelu": hidden * 0.5 * (1 + erf(hidden / np.sqrt(2))),
                 "gelu_tanh": 0.5 * hidden * (1 + np.tanh(np.sqrt(2 / np.pi) * (hidden + 0.044715 * hidden ** 3))),
                 "relu": np.maximum(hidden, 0)}[activation]
    expected = nonlinear @ keras.ops.convert_to_numpy(layer.contract.kernel) + keras.ops.convert_to_numpy(layer.contract.bias)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), expected, atol=1e-5)


def test_a_feed_forward_saved_before_activations_existed_loads_as_gelu():
    config = FeedForward(6, 10).get_config()
    del config["activation"]
    assert FeedForward.from_config(config).activation == "gelu"
