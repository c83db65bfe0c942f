"""The shared TransformerDecoder (seqtasks.layers.transformer_decoder): prefill then one-token steps
give what the full causal pass gives, with and without a memory; padded memory positions are never
read; the layer serializes; and a model file saved in an older layout loads or fails in one line."""
from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

import seqtasks  # noqa: F401  (registers the layers)
from seqtasks.errors import UserError
from seqtasks.layers import TransformerDecoder
from seqtasks.model_files import load_model

OLD_RUNS = Path(__file__).resolve().parent / "data" / "old_runs"
D_MODEL, BATCH, TIME, SOURCE = 8, 2, 7, 5


def decoder_and_inputs(cross_attention: bool):
    keras.utils.set_random_seed(0)
    decoder = TransformerDecoder(D_MODEL, heads=2, num_layers=2, cross_attention=cross_attention)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, TIME, D_MODEL)).astype("float32")
    memory = rng.normal(size=(BATCH, SOURCE, D_MODEL)).astype("float32") if cross_attention else None
    mask = np.array([[True] * SOURCE, [True] * 3 + [False] * 2]) if cross_attention else None
    decoder.build((None, None, D_MODEL), (None, SOURCE, D_MODEL) if cross_attention else None)
    return decoder, x, memory, mask


@pytest.mark.parametrize("cross_attention", [False, True], ids=["decoder-only", "with-memory"])
@pytest.mark.parametrize("prompt", [1, 3])
def test_prefill_then_steps_equal_the_full_causal_pass(cross_attention, prompt):
    decoder, x, memory, mask = decoder_and_inputs(cross_attention)
    full = keras.ops.convert_to_numpy(decoder(x, memory, mask))
    y, state = decoder.prefill(x[:, :prompt], TIME + 2, memory, mask)  # caches longer than needed
    np.testing.assert_allclose(keras.ops.convert_to_numpy(y), full[:, :prompt], atol=1e-5)
    for index in range(prompt, TIME):
        y, new_state = decoder.step(x[:, index:index + 1], state, index)
        assert [tuple(t.shape) for t in new_state] == [tuple(t.shape) for t in state]  # a compiled loop's carry
        state = new_state
        np.testing.assert_allclose(keras.ops.convert_to_numpy(y)[:, 0], full[:, index], atol=1e-5)


def test_padded_memory_positions_are_never_read():
    decoder, x, memory, mask = decoder_and_inputs(cross_attention=True)
    changed = memory.copy()
    changed[1, 3:] = 100.0  # the second row's padding
    for a, b in [(decoder(x, memory, mask), decoder(x, changed, mask)),
                 (decoder.prefill(x, TIME, memory, mask)[0], decoder.prefill(x, TIME, changed, mask)[0])]:
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), atol=1e-5)
    assert not np.allclose(keras.ops.convert_to_numpy(decoder(x, changed))[1],
                           keras.ops.convert_to_numpy(decoder(x, memory))[1], atol=1e-3)


def test_an_output_never_depends_on_later_inputs():
    decoder, x, _, _ = decoder_and_inputs(cross_attention=False)
    later = x.copy()
    later[:, 4:] = 0.0
    np.testing.assert_allclose(keras.ops.convert_to_numpy(decoder(x))[:, :4],
                               keras.ops.convert_to_numpy(decoder(later))[:, :4], atol=1e-6)


def test_the_decoder_serializes_with_its_settings():
    decoder = TransformerDecoder(D_MODEL, heads=2, num_layers=3, hidden=12, dropout=0.1, cross_attention=True,
                                 activation="relu", name="decoder")
    copy = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(decoder))
    assert type(copy) is TransformerDecoder and copy.get_config() == decoder.get_config()
    assert [block.name for block in copy.blocks] == ["block_0", "block_1", "block_2"]


def test_an_old_file_that_does_not_fit_the_model_fails_in_one_line(tmp_path):
    """An lm saved with two blocks whose config now says one: block_1's weights have no place."""
    path = tmp_path / "model.keras"
    shutil.copy(OLD_RUNS / "lm_transformer" / "model.keras", path)
    with zipfile.ZipFile(path) as archive:
        entries = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w") as archive:
        for info, data in entries:
            if info.filename == "config.json":
                config = json.loads(data)
                config["config"]["num_layers"] = 1
                data = json.dumps(config)
            archive.writestr(info, data)
    with pytest.raises(UserError) as error:
        load_model(path)
    assert "block_1" in str(error.value) and "\n" not in error.value.message
