"""`seqtasks diagnose gradients`: ‖∂L_T/∂h_t‖ against finite differences, the tanh RNN's gradient
vanishing faster than the LSTM's on a small synthetic task, and the command's JSON, plot and errors."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from seqtasks import api, gradient_flow
from seqtasks.cli import cli
from seqtasks.models.language_model import RecurrentLanguageModel

VOCAB, T = 11, 12


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm", "lstm-peephole"])
def test_the_gradients_equal_finite_differences(cell):
    """⟨∂L_T/∂h_t, v⟩ = (L(h_t + εv) - L(h_t - εv)) / 2ε, for each layer and several t (float64)."""
    import tensorflow as tf

    model = RecurrentLanguageModel(VOCAB, cell, 6, 2, dtype="float64")
    model.build((None, T))
    tokens = np.random.default_rng(0).integers(1, VOCAB, (3, T + 1)).astype("int32")
    grads, loss = gradient_flow.state_gradients(model, tf.constant(tokens))
    assert grads.shape == (2, T, 3, 6) and loss > 0
    norms, _ = gradient_flow.hidden_state_gradients(model, tokens)
    np.testing.assert_allclose(norms, np.linalg.norm(grads, axis=-1).mean(axis=-1))
    rng, eps = np.random.default_rng(1), 1e-5
    for layer in (0, 1):
        for t in (0, T // 2, T - 1):
            direction = rng.normal(size=(3, 6))

            def loss_at(sign):
                offsets = [[tf.zeros((3, 6), "float64")] * T for _ in range(2)]
                offsets[layer][t] = tf.constant(sign * eps * direction)
                return float(gradient_flow.last_step_loss(model, tf.constant(tokens), offsets))

            numeric = (loss_at(1) - loss_at(-1)) / (2 * eps)
            assert np.sum(grads[layer, t] * direction) == pytest.approx(numeric, rel=1e-5, abs=1e-9)


def test_a_tanh_rnn_forgets_faster_than_an_lstm(tmp_path):
    """Synthetic text: random letters, every second one repeating the letter 4 steps back. After 150
    steps of training the RNN's gradient shrinks by a larger factor per step back than the LSTM's."""
    rng = np.random.default_rng(0)
    letters = list(rng.choice(list("abcdefghi"), 20000))
    for i in range(4, len(letters), 2):
        letters[i] = letters[i - 4]
    text = tmp_path / "synthetic.txt"
    text.write_text("".join(letters))
    curves, report = api.diagnose_gradients([], ["rnn", "lstm"], str(text), 24, batch_size=16, units=16,
                                            train_steps=150)
    trained = {c["arch"]: c for c in report["curves"] if c["weights"] == "trained"}
    assert trained["rnn"]["decay_per_step"] < trained["lstm"]["decay_per_step"] - 0.03
    assert trained["rnn"]["norms"][0] < trained["lstm"]["norms"][0]  # at t = 1 the LSTM keeps more
    assert all(c["train_loss"] < np.log(12) for c in trained.values())  # both learned something
    assert [c["weights"] for c in report["curves"]] == ["init", "trained", "init", "trained"]


def test_diagnose_gradients_of_a_run_writes_json_and_a_plot(tiny_runs, tmp_path):
    pytest.importorskip("matplotlib", reason="--plot needs the plot extra (pip install seqtasks[plot])")
    run, data = tiny_runs("lm")
    plot = tmp_path / "gradients.png"
    result = CliRunner().invoke(cli, ["diagnose", "gradients", str(run.path), "--data", data["data"],
                                      "--batch-size", "4", "--plot", str(plot), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["seq_len"] == 8  # the run's
    assert [c["weights"] for c in report["curves"]] == ["trained", "init"]
    for c in report["curves"]:
        assert c["arch"] == "lstm" and len(c["norms"]) == 8 and len(c["norms_per_layer"]) == 2
        assert all(value >= 0 for value in c["norms"]) and c["norms"][-1] > 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_diagnose_gradients_table_for_fresh_cells(tiny_runs):
    _, data = tiny_runs("lm")
    result = CliRunner().invoke(cli, ["diagnose", "gradients", "--arch", "rnn,lstm-peephole", "--data", data["data"],
                                      "--seq-len", "10", "--units", "8", "--batch-size", "4", "--train-steps", "0"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "T = 10" in lines[0] and lines[2].startswith("rnn ") and lines[3].startswith("lstm-peephole ")


@pytest.mark.parametrize("args, message", [
    ([], "nothing to diagnose"),
    (["--arch", "rnn,elman"], "unknown cell 'elman'"),
    (["--arch", "rnn", "--seq-len", "0"], "--seq-len must be at least 1"),
])
def test_diagnose_gradients_mistakes_are_one_line(args, message):
    result = CliRunner().invoke(cli, ["diagnose", "gradients", *args])
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


def test_a_transformer_run_is_refused_with_a_fix(tiny_runs):
    run, _ = tiny_runs("generate")  # a Transformer
    result = CliRunner().invoke(cli, ["diagnose", "gradients", str(run.path)])
    assert result.exit_code == 1 and "needs a recurrent language model" in result.output
