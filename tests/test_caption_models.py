"""Captioning models against their definitions: encoder shapes, cached decoding, attention, saving."""
import keras
import numpy as np
import pytest

import seqtasks  # noqa: F401  (registers the models)
from seqtasks import decoding
from seqtasks.models.captioner import RecurrentCaptioner, TransformerCaptioner
from seqtasks.models.image_encoder import BACKBONES, ImageEncoder

VOCAB = 20
RNG = np.random.default_rng(0)
PIXELS = RNG.uniform(0, 255, (3, 32, 32, 3)).astype("float32")
IDS = RNG.integers(4, VOCAB, (3, 7)).astype("int32")


@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_backbone_maps_pixels_to_a_grid_without_downloading(backbone):
    encoder = ImageEncoder(backbone, image_size=64, features=24, cnn_blocks=3, weights=None)
    encoder.build()
    pixels = RNG.uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    grid = keras.ops.convert_to_numpy(encoder(pixels))
    height, width, channels = encoder.feature_shape
    expected = {"cnn": (8, 8, 128), "efficientnet-lite0": (2, 2, 1280), "efficientnetb0": (2, 2, 1280), "mobilenetv2": (2, 2, 1280),
                "resnet50": (2, 2, 2048)}[backbone]
    assert (height, width, channels) == expected
    assert grid.shape == (2, height * width, 24)
    # cached backbone features give the same grid as pixels (what a frozen backbone's cache relies on)
    features = encoder.backbone_features(pixels, training=False)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(encoder(features)), grid, atol=1e-4)


def test_a_frozen_backbone_stays_frozen_after_saving(tmp_path):
    model = RecurrentCaptioner(VOCAB, ImageEncoder("cnn", 32, 16, cnn_filters=4, cnn_blocks=2, freeze_backbone=True),
                               units=16)
    model.build()
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert not loaded.encoder.backbone.trainable
    assert not any("backbone" in w.path or "conv" in w.path for w in loaded.trainable_weights)


def make(kind):
    encoder = ImageEncoder("cnn", 32, 16, cnn_filters=4, cnn_blocks=2)
    if kind == "transformer":
        model = TransformerCaptioner(VOCAB, encoder, d_model=16, heads=2, num_layers=2, max_length=16)
    else:
        model = RecurrentCaptioner(VOCAB, encoder, units=16, num_layers=2, attention=kind.startswith("attention"),
                                   initial_state="mean" if kind == "attention-mean" else "grid")
    model.build()
    return model


MODELS = {kind: make(kind) for kind in ("lstm", "attention", "attention-mean", "transformer")}


@pytest.mark.parametrize("kind", MODELS)
def test_cached_decoding_equals_full_recomputation(kind):
    model = MODELS[kind]
    full = keras.ops.convert_to_numpy(model((PIXELS, IDS)))
    assert full.shape == (3, 7, VOCAB) and full.dtype == np.float32
    grid = model.encode(PIXELS)
    logits, state = model.prefill(IDS[:, :3], 16, (grid,))
    stepped = [keras.ops.convert_to_numpy(logits)]
    for index in range(3, 7):
        logits, state = model.step(IDS[:, index], state, index)
        stepped.append(keras.ops.convert_to_numpy(logits))
    np.testing.assert_allclose(np.stack(stepped, axis=1), full[:, 2:], atol=1e-5)


@pytest.mark.parametrize("kind", MODELS)
def test_the_engine_decodes_greedily_what_the_full_model_prefers(kind):
    model = MODELS[kind]
    grid = model.encode(PIXELS)
    config = decoding.GenerationConfig(max_new_tokens=5, temperature=0.0)
    generated = decoding.generate(model, [[2]] * 3, config, (grid,))
    for row, (sequences,) in enumerate(generated):
        ids = np.array([[2, *sequences]], np.int32)
        logits, _ = model.decode(grid[row:row + 1], ids)
        assert list(np.argmax(keras.ops.convert_to_numpy(logits)[0, :-1], axis=-1)) == sequences
    if kind == "attention":  # beam search reorders a state that holds the grid and its attention keys
        beams = decoding.generate(model, [[2]] * 3, decoding.GenerationConfig(
            max_new_tokens=5, beam_width=3, num_return_sequences=2), (grid,))
        assert [len(b) for b in beams] == [2, 2, 2]


@pytest.mark.parametrize("kind", ["attention", "transformer"])
def test_attention_weights_over_the_grid_sum_to_one(kind):
    model = MODELS[kind]
    _, weights = model.decode(model.encode(PIXELS), IDS)
    weights = keras.ops.convert_to_numpy(weights)
    assert weights.shape == (3, 7, model.encoder.grid_cells)
    assert (weights >= 0).all()
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0, atol=1e-5)


def test_show_and_tell_has_no_attention_and_its_image_sets_the_state():
    model = MODELS["lstm"]
    logits, weights = model.decode(model.encode(PIXELS), IDS)
    assert weights is None
    other, _ = model.decode(model.encode(PIXELS[::-1]), IDS)
    assert not np.allclose(keras.ops.convert_to_numpy(logits[0]), keras.ops.convert_to_numpy(other[0]))


@pytest.mark.parametrize("kind", MODELS)
def test_captioners_save_and_reload_identically(kind, tmp_path):
    model = MODELS[kind]
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded((PIXELS, IDS))),
                                  keras.ops.convert_to_numpy(model((PIXELS, IDS))))


def test_a_mean_initial_state_reads_the_average_cell():
    model = MODELS["attention-mean"]
    grid = model.encode(PIXELS)
    h, c = model.initial_state(grid)[0]  # the first layer
    expected = np.tanh(keras.ops.convert_to_numpy(keras.ops.mean(grid, axis=1)) @
                       keras.ops.convert_to_numpy(model.initial_h[0].kernel) +
                       keras.ops.convert_to_numpy(model.initial_h[0].bias))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(h), expected, atol=1e-5)
    assert model.initial_h[0].kernel.shape == (16, 16)  # features, not cells × features


@pytest.mark.parametrize("kind", MODELS)
def test_captions_sharing_an_image_get_the_logits_of_that_image(kind):
    model = MODELS[kind]
    image_of = np.array([2, 0, 2, 1, 0, 2], np.int32)
    ids = RNG.integers(4, VOCAB, (len(image_of), 7)).astype("int32")
    shared = keras.ops.convert_to_numpy(model((PIXELS, ids, image_of)))
    np.testing.assert_allclose(shared, keras.ops.convert_to_numpy(model((PIXELS[image_of], ids))), atol=1e-5)


@pytest.mark.parametrize("kind", ["attention-mean", "transformer"])
def test_word_dropout_replaces_input_words_by_unk_in_training_only(kind, tmp_path):
    encoder = ImageEncoder("cnn", 32, 16, cnn_filters=4, cnn_blocks=2)
    if kind == "transformer":
        model = TransformerCaptioner(VOCAB, encoder, d_model=16, heads=2, num_layers=1, max_length=16, word_dropout=0.5)
    else:
        model = RecurrentCaptioner(VOCAB, encoder, units=16, attention=True, initial_state="mean", word_dropout=0.5)
    model.build()
    ids = np.concatenate([np.full((64, 1), 2), RNG.integers(4, VOCAB, (64, 30)), np.zeros((64, 4))], 1).astype("int32")
    dropped = keras.ops.convert_to_numpy(model.drop_words(ids, training=True))
    changed = dropped != ids
    assert (dropped[changed] == 1).all()  # to UNK, and never BOS or padding
    assert not changed[:, 0].any() and not changed[:, -4:].any()
    assert 0.4 < changed[:, 1:-4].mean() < 0.6
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.drop_words(ids)), ids)
    # inference never drops words: the same logits every call, and after saving
    first = keras.ops.convert_to_numpy(model((PIXELS, IDS)))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model((PIXELS, IDS))), first)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    assert loaded.word_dropout == 0.5
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded((PIXELS, IDS))), first)


def test_cell_dropout_hides_whole_grid_cells_in_training_only(tmp_path):
    # a frozen backbone: its batch norm gives the same features in training
    encoder = ImageEncoder("cnn", 32, 16, cnn_filters=4, cnn_blocks=2, cell_dropout=0.5, freeze_backbone=True)
    encoder.build()
    pixels = RNG.uniform(0, 255, (32, 32, 32, 3)).astype("float32")
    kept = keras.ops.convert_to_numpy(encoder(pixels))
    dropped = keras.ops.convert_to_numpy(encoder(pixels, training=True))
    hidden = (dropped == 0).all(axis=-1)  # (images, cells): a cell is hidden with all its features
    assert 0.35 < hidden.mean() < 0.65
    np.testing.assert_allclose(dropped[~hidden], 2 * kept[~hidden], rtol=1e-5, atol=1e-5)  # the rest scaled by 1/(1-q)
    model = RecurrentCaptioner(VOCAB, encoder, units=16, attention=True, initial_state="mean")
    model.build()
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    assert loaded.encoder.cell_dropout_rate == 0.5
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded((PIXELS, IDS))),
                                  keras.ops.convert_to_numpy(model((PIXELS, IDS))))
