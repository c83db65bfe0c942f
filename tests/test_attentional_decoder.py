"""The shared AttentionalDecoder (seqtasks.layers.attentional_decoder): stepping after a prefill gives
the teacher-forced outputs, for every attention, with padded memory; padding gets no weight and is
never read; a Bahdanau step is the equations; the layer serializes."""
from __future__ import annotations

import keras
import numpy as np
import pytest

import seqtasks  # noqa: F401  (registers the layers)
from seqtasks.layers import AttentionalDecoder

BATCH, TIME, SOURCE, FEATURES, MEMORY, UNITS = 2, 6, 5, 4, 6, 8
VARIANTS = {
    "bahdanau": dict(attention="bahdanau"),
    "bahdanau-gated-concat": dict(attention="bahdanau", gate=True, combine=False),
    "luong": dict(attention="luong"),
    "luong-input-feeding": dict(attention="luong", input_feeding=True),
    "none": dict(attention="none"),
}


def decoder_and_inputs(variant: str, cell: str = "lstm", num_layers: int = 2):
    keras.utils.set_random_seed(0)
    decoder = AttentionalDecoder(cell, UNITS, num_layers, **VARIANTS[variant])
    decoder.build((None, None, FEATURES), (None, SOURCE, MEMORY))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, TIME, FEATURES)).astype("float32")
    memory = rng.normal(size=(BATCH, SOURCE, MEMORY)).astype("float32")
    mask = np.array([[True] * SOURCE, [True] * 3 + [False] * 2])
    states = [keras.ops.convert_to_tensor(rng.normal(size=(BATCH, UNITS)).astype("float32"))
              for _ in range(num_layers * decoder.state_count)]
    return decoder, x, memory, mask, states


def numpy(tensor):
    return keras.ops.convert_to_numpy(tensor)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("prompt", [1, 3])
def test_steps_after_a_prefill_equal_teacher_forcing(variant, prompt):
    decoder, x, memory, mask, states = decoder_and_inputs(variant)
    full, full_weights, _ = decoder(x, decoder.start(states, memory, mask))
    outputs, _, state = decoder(x[:, :prompt], decoder.start(states, memory, mask))
    np.testing.assert_allclose(numpy(outputs), numpy(full)[:, :prompt], atol=1e-5)
    for t in range(prompt, TIME):
        output, new_state, weights = decoder.step(x[:, t], state)
        assert [tuple(s.shape) for s in new_state] == [tuple(s.shape) for s in state]  # a compiled loop's carry
        state = new_state
        np.testing.assert_allclose(numpy(output), numpy(full)[:, t], atol=1e-5)
        if variant != "none":
            np.testing.assert_allclose(numpy(weights), numpy(full_weights)[:, t], atol=1e-5)


@pytest.mark.parametrize("variant", sorted(set(VARIANTS) - {"none"}))
def test_padding_gets_no_weight_and_is_never_read(variant):
    decoder, x, memory, mask, states = decoder_and_inputs(variant)
    outputs, weights, _ = decoder(x, decoder.start(states, memory, mask))
    assert np.all(numpy(weights)[1, :, 3:] == 0.0)
    np.testing.assert_allclose(numpy(weights).sum(-1), 1.0, atol=1e-5)
    changed = memory.copy()
    changed[1, 3:] = 50.0
    np.testing.assert_allclose(numpy(decoder(x, decoder.start(states, changed, mask))[0]), numpy(outputs), atol=1e-5)


def test_a_gated_bahdanau_step_is_its_equations():
    """c = σ(w_β·s) Σ_j α_j m_j with α from s_{t-1}; s_t = LSTM([x; c], s_{t-1}); o = [s_t; c]."""
    decoder, x, memory, mask, states = decoder_and_inputs("bahdanau-gated-concat", num_layers=1)
    output, _, weights = decoder.step(x[:, 0], decoder.start(states, memory, mask))
    h, c = states
    context = numpy(decoder.gate(h)) * np.einsum("bs,bsf->bf", numpy(weights), memory)
    expected_h, _ = decoder.recurrent.step(np.concatenate([x[:, 0], context], -1), [[h, c]])
    np.testing.assert_allclose(numpy(output), np.concatenate([numpy(expected_h), context], -1), atol=1e-5)


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_other_cells_decode_the_same_way(cell):
    decoder, x, memory, mask, states = decoder_and_inputs("luong-input-feeding", cell=cell)
    full, _, _ = decoder(x, decoder.start(states, memory, mask))
    _, _, state = decoder(x[:, :2], decoder.start(states, memory, mask))
    output, _, _ = decoder.step(x[:, 2], state)
    np.testing.assert_allclose(numpy(output), numpy(full)[:, 2], atol=1e-5)


def test_the_decoder_serializes_with_its_settings():
    decoder = AttentionalDecoder("gru", 6, 2, "luong", input_feeding=True, bridges=2, dropout=0.1, name="decoder")
    copy = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(decoder))
    assert type(copy) is AttentionalDecoder and copy.get_config() == decoder.get_config()
    assert [bridge.name for bridge in copy.bridges] == ["bridge_0", "bridge_1"] and copy.sequential
