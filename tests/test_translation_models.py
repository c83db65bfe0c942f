"""The translation models against their definitions: cached decoding, padding, attention, saving, loss."""
import keras
import numpy as np
import pytest

import seqtasks  # noqa: F401  (registers layers and models)
from seqtasks import decoding
from seqtasks.losses import SmoothedCrossEntropy
from seqtasks.models.seq2seq import RecurrentSeq2Seq
from seqtasks.models.transformer_seq2seq import TransformerSeq2Seq

VOCAB = 19
BUILDERS = {
    "lstm-none": lambda: RecurrentSeq2Seq(VOCAB, VOCAB, "lstm", 16, 2, attention="none"),
    "lstm-bahdanau-bidirectional": lambda: RecurrentSeq2Seq(VOCAB, VOCAB, "lstm", 16, 2, attention="bahdanau"),
    "gru-bahdanau": lambda: RecurrentSeq2Seq(VOCAB, VOCAB + 3, "gru", 16, 1, attention="bahdanau",
                                             bidirectional=False, attention_units=8),
    "lstm-luong": lambda: RecurrentSeq2Seq(VOCAB, VOCAB, "lstm", 16, 2, attention="luong", shared_embeddings=True),
    "lstm-luong-input-feeding": lambda: RecurrentSeq2Seq(VOCAB, VOCAB, "lstm", 16, 2, attention="luong",
                                                         input_feeding=True, embedding_dim=8),
    "transformer": lambda: TransformerSeq2Seq(VOCAB, VOCAB, 16, 2, 2, 2),
    "transformer-learned-shared-untied": lambda: TransformerSeq2Seq(VOCAB, VOCAB, 16, 4, 1, 2, positions="learned",
                                                                    max_length=24, shared_embeddings=True,
                                                                    tied_output=False),
}


def make(kind):
    model = BUILDERS[kind]()
    model.build(((None, None), (None, None)))
    return model


def batch(seed=0):
    """Sources right-padded to different lengths; targets starting with BOS (2)."""
    rng = np.random.default_rng(seed)
    source = rng.integers(4, VOCAB, (3, 7)).astype("int32")
    source[1, 5:] = 0
    source[2, 2:] = 0
    target = rng.integers(4, VOCAB, (3, 10)).astype("int32")
    target[:, 0] = 2
    return source, target


def numpy(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_cached_decoding_equals_full_recomputation(kind):
    model = make(kind)
    source, target = batch()
    full = numpy(model((source, target)))
    assert full.shape == (3, 10, model.target_vocab) and full.dtype == np.float32
    logits, state = model.prefill(target[:, :3], 16, model.encode(source))
    np.testing.assert_allclose(numpy(logits), full[:, 2], atol=1e-5)
    for t in range(3, 10):
        logits, state = model.step(target[:, t], state, t)
        np.testing.assert_allclose(numpy(logits), full[:, t], atol=1e-5)


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_source_padding_never_changes_the_logits(kind):
    model = make(kind)
    source, target = batch(1)
    longer = np.concatenate([source, np.zeros((3, 4), "int32")], axis=1)
    np.testing.assert_allclose(numpy(model((longer, target))), numpy(model((source, target))), atol=1e-5)


@pytest.mark.parametrize("kind", ["lstm-bahdanau-bidirectional", "lstm-luong", "transformer"])
def test_attention_weights_sum_to_one_and_ignore_padding(kind):
    model = make(kind)
    source, target = batch(2)
    weights = numpy(model.alignments(source, target))
    assert weights.shape == (3, 10, 7)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
    assert (weights[source[:, None, :].repeat(10, 1) == 0] == 0).all()


@pytest.mark.parametrize("kind", ["lstm-luong-input-feeding", "transformer"])
def test_engine_decoding_with_context_matches_step_by_step_argmax(kind):
    model = make(kind)
    source, _ = batch(3)
    context = model.encode(source)
    config = decoding.GenerationConfig(max_new_tokens=6, temperature=0.0)
    generated = decoding.generate(model, [[2]] * 3, config, context=context)
    logits, state = model.prefill(np.full((3, 1), 2, "int32"), 64, context)
    expected = []
    for t in range(6):
        token = np.argmax(numpy(logits), -1).astype("int32")
        expected.append(token)
        logits, state = model.step(token, state, t + 1)
    assert [g[0] for g in generated] == np.stack(expected, 1).tolist()


@pytest.mark.parametrize("kind", ["lstm-bahdanau-bidirectional", "transformer-learned-shared-untied"])
def test_save_load_gives_identical_logits(kind, tmp_path):
    model = make(kind)
    source, target = batch(4)
    expected = numpy(model((source, target)))
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    np.testing.assert_array_equal(numpy(loaded((source, target))), expected)


def test_smoothed_cross_entropy_is_its_definition():
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(2, 4, 6)).astype("float32")
    labels = np.array([[3, 1, 0, 0], [5, 2, 4, 0]])
    plain = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0)
    np.testing.assert_allclose(float(SmoothedCrossEntropy(0.0)(labels, logits)), float(plain(labels, logits)),
                               rtol=1e-5)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    q = 0.9 * np.eye(6)[labels] + 0.1 / 6
    per_token = -(q * log_p).sum(-1)
    expected = per_token[labels != 0].mean()
    np.testing.assert_allclose(float(SmoothedCrossEntropy(0.1)(labels, logits)), expected, rtol=1e-5)
