"""The peephole LSTM (--cell lstm-peephole) against its equations, in cached decoding and in a run; the
LSTM's forget-gate bias of 1 at initialisation."""
import keras
import numpy as np
import pytest

import seqtasks
from seqtasks.choices import recurrent_cell
from seqtasks.errors import UserError
from seqtasks.layers import RecurrentStack
from seqtasks.models.language_model import RecurrentLanguageModel
from seqtasks.models.seq2seq import RecurrentSeq2Seq

VOCAB = 13


def numpy(x):
    return keras.ops.convert_to_numpy(x)


def with_random_peepholes(model, seed=0):
    """Peepholes start at 0 (a plain LSTM); give them values so that the checks see them."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        if "peephole" in weight.path:
            weight.assign(rng.normal(0, 0.5, weight.shape).astype("float32"))
    return model


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_peephole_steps_match_a_numpy_reference():
    stack = RecurrentStack("lstm-peephole", 3, num_layers=1)
    x = np.random.default_rng(4).normal(size=(2, 4, 5)).astype("float32")
    stack(x)
    with_random_peepholes(stack)
    outputs, states = stack(x)
    layer = stack.forward_layers[0]
    W, b = [numpy(w) for w in layer.input_projection.weights]
    U = numpy(layer.cell.recurrent_kernel)
    p_i, p_f, p_o = (numpy(w) for w in (layer.cell.peephole_input, layer.cell.peephole_forget,
                                         layer.cell.peephole_output))
    assert min(abs(p_i).max(), abs(p_f).max(), abs(p_o).max()) > 0.1
    h = c = np.zeros((2, 3), "float32")
    for t in range(4):
        a_i, a_f, a_g, a_o = np.split(x[:, t] @ W + b + h @ U, 4, axis=-1)
        i, f = sigmoid(a_i + p_i * c), sigmoid(a_f + p_f * c)  # the gates see c_{t-1}
        c = f * c + i * np.tanh(a_g)
        h = sigmoid(a_o + p_o * c) * np.tanh(c)                # the output gate sees c_t
        np.testing.assert_allclose(numpy(outputs)[:, t], h, atol=1e-5)
    np.testing.assert_allclose(numpy(states[0][1]), c, atol=1e-5)
    # and one decoding step is the same function as the sequence
    h1, _ = stack.step(x[:, 0], stack.zero_state(2))
    np.testing.assert_allclose(numpy(h1), numpy(outputs)[:, 0], atol=1e-6)


@pytest.mark.parametrize("cell", ["lstm", "lstm-peephole", "gru"])
def test_the_forget_gate_bias_starts_at_one(cell):
    stack = RecurrentStack(cell, 4, num_layers=1)
    stack.build((None, None, 3))
    bias = numpy(stack.forward_layers[0].input_projection.bias)
    if cell == "gru":
        assert not bias.any()
        return
    i, f, g, o = np.split(bias, 4)
    assert (f == 1).all() and not i.any() and not g.any() and not o.any()


def test_cached_decoding_equals_full_recomputation_with_peepholes():
    rng = np.random.default_rng(1)
    lm = RecurrentLanguageModel(VOCAB, "lstm-peephole", 8, 2)
    lm.build((None, None))
    with_random_peepholes(lm)
    tokens = rng.integers(1, VOCAB, (3, 9)).astype("int32")
    full = numpy(lm(tokens))
    logits, state = lm.prefill(tokens[:, :4])
    np.testing.assert_allclose(numpy(logits), full[:, 3], atol=1e-5)
    for t in range(4, 9):
        logits, state = lm.step(tokens[:, t], state, t)
        np.testing.assert_allclose(numpy(logits), full[:, t], atol=1e-5)

    seq2seq = RecurrentSeq2Seq(VOCAB, VOCAB, "lstm-peephole", 8, 1, attention="bahdanau")
    seq2seq.build(((None, None), (None, None)))
    with_random_peepholes(seq2seq)
    source = rng.integers(4, VOCAB, (3, 6)).astype("int32")
    source[1, 4:] = 0
    target = rng.integers(4, VOCAB, (3, 7)).astype("int32")
    target[:, 0] = 2
    full = numpy(seq2seq((source, target)))
    logits, state = seq2seq.prefill(target[:, :2], 16, seq2seq.encode(source))
    np.testing.assert_allclose(numpy(logits), full[:, 1], atol=1e-5)
    for t in range(2, 7):
        logits, state = seq2seq.step(target[:, t], state, t)
        np.testing.assert_allclose(numpy(logits), full[:, t], atol=1e-5)


def test_cell_refines_arch():
    assert recurrent_cell("lstm", "auto") == "lstm"
    assert recurrent_cell("lstm", "lstm-peephole") == "lstm-peephole"
    assert recurrent_cell("gru", "gru") == "gru"
    for arch, cell in (("gru", "lstm-peephole"), ("transformer", "lstm"), ("transformer", "lstm-peephole")):
        with pytest.raises(UserError, match="does not fit --arch"):
            recurrent_cell(arch, cell)


def test_a_language_model_run_trains_saves_and_samples_with_peepholes(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("abcdefgh\n" * 60)
    run = seqtasks.train("lm", data=str(text), out=str(tmp_path / "run"), arch="lstm", cell="lstm-peephole",
                         units=8, layers=1, seq_len=8, sample_tokens=0, epochs=1, steps_per_epoch=2, batch_size=4,
                         lr=1e-2, warmup_steps=1, precision="fp32", verbose=0)
    loaded = seqtasks.load(run.path)
    assert loaded.model.recurrent.kind == "lstm-peephole"
    peepholes = [w for w in loaded.model.weights if "peephole" in w.path]
    assert len(peepholes) == 3 and any(numpy(w).any() for w in peepholes)  # trained away from 0
    assert len(loaded.sample("ab", max_new_tokens=5, temperature=0.0)) >= 2


def test_classify_and_tag_settings_take_the_cell():
    """--cell reaches the shared encoder (sequence_inputs), and a --cell that does not fit --arch stops first."""
    import dataclasses

    from seqtasks.models.encoder import SequenceEncoder
    from seqtasks.encoder_settings import check_encoder_settings as check_settings
    from seqtasks.tasks.cards.classify import ClassificationConfig
    from seqtasks.tasks.cards.tag import TaggingConfig

    for config in (ClassificationConfig, TaggingConfig):
        cfg = dataclasses.replace(config(), arch="lstm", cell="lstm-peephole")
        check_settings(cfg)
        with pytest.raises(UserError, match="does not fit"):
            check_settings(dataclasses.replace(cfg, arch="gru"))
    encoder = SequenceEncoder(20, arch="lstm-peephole", units=4, num_layers=1)
    states, mask = encoder({"tokens": np.array([[5, 6, 7, 0]], "int32")})
    assert states.shape == (1, 4, 8) and encoder.recurrent.kind == "lstm-peephole"
