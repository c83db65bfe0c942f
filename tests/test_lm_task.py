"""The language-modeling task end to end through the Python API: learn, save, load, resume, finetune."""
import json
import math

import keras
import numpy as np
import pytest

import seqtasks
from seqtasks.errors import UserError

TINY = dict(units=32, layers=1, seq_len=16, batch_size=8, lr=1e-2, warmup_steps=5, dropout=0.0,
            sample_tokens=0, precision="fp32")


@pytest.fixture(scope="module")
def pattern_corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "pattern.txt"
    path.write_text("abcdefgh\n" * 400)
    return path


@pytest.fixture(scope="module")
def trained_run(pattern_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "lstm"
    return seqtasks.train("lm", data=str(pattern_corpus), arch="lstm", epochs=4, out=str(out), verbose=0, **TINY)


@pytest.mark.graph_mode  # traced training, as users train
def test_tiny_lm_learns_a_deterministic_pattern_to_near_zero_loss(trained_run, pattern_corpus):
    metrics = trained_run.evaluate(str(pattern_corpus))
    assert metrics["loss"] < 0.05
    assert set(metrics) >= {"loss", "perplexity", "bpc", "tokens", "characters"}
    assert metrics["characters"] == len("abcdefgh\n" * 400)
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]))
    assert trained_run.sample("abc", max_new_tokens=12, temperature=0.0) == "defgh\nabcdef"


def test_run_folder_is_complete_and_self_contained(trained_run):
    path = trained_run.path
    record = json.loads((path / "config.json").read_text())
    assert record["task"] == "lm" and record["settings"]["arch"] == "lstm"
    assert record["data"]["train"]["sha256"]
    for name in ("model.keras", "checkpoints/last.keras", "checkpoints/train_state.json", "history.csv",
                 "tokenizer/tokenizer.json"):
        assert (path / name).is_file(), name
    assert [row["epoch"] for row in trained_run.directory.read_history()] == ["1", "2", "3", "4"]
    assert not list(path.parent.glob(".*creating*"))


def test_saved_model_maps_ids_to_logits_and_reloads_identically(trained_run):
    model = keras.saving.load_model(trained_run.path / "model.keras", safe_mode=True)
    ids = np.array([[4, 5, 6, 7, 8]])
    logits = keras.ops.convert_to_numpy(model(ids))
    assert logits.shape == (1, 5, trained_run.preprocessor.vocab_size)
    np.testing.assert_array_equal(logits, keras.ops.convert_to_numpy(seqtasks.load(trained_run.path).model(ids)))


@pytest.mark.parametrize("arch", ["rnn", "gru"])  # the transformer: in the activation test
def test_every_architecture_trains_and_samples(arch, pattern_corpus, tmp_path):
    run = seqtasks.train("lm", data=str(pattern_corpus), arch=arch, epochs=1, steps_per_epoch=5, heads=2,
                         out=str(tmp_path / arch), verbose=0, **TINY)
    text = run.sample("ab", max_new_tokens=5, temperature=1.0, seed=1)
    assert isinstance(text, str) and len(text) <= 5 * 2
    assert run.sample("ab", max_new_tokens=5, temperature=1.0, seed=1) == text


def test_an_interrupted_run_resumes_mid_epoch_and_a_finished_one_continues_its_steps(pattern_corpus, tmp_path,
                                                                                     monkeypatch):
    from seqtasks import training

    out = tmp_path / "interrupted"
    original = training.RunKeeper.on_train_batch_end

    def interrupt_at_step_7(self, batch, logs=None):
        original(self, batch, logs)
        if self.state.global_step == 7:
            raise KeyboardInterrupt

    monkeypatch.setattr(training.RunKeeper, "on_train_batch_end", interrupt_at_step_7)
    with pytest.raises(KeyboardInterrupt):
        seqtasks.train("lm", data=str(pattern_corpus), epochs=2, out=str(out), verbose=0,
                       **{**TINY, "steps_per_epoch": 5})
    monkeypatch.setattr(training.RunKeeper, "on_train_batch_end", original)
    state = json.loads((out / "checkpoints" / "train_state.json").read_text())
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (1, 2, 7)
    seqtasks.load(out).evaluate(str(pattern_corpus))  # usable before it finished
    resumed = seqtasks.resume(out, verbose=0)
    state = resumed.directory.read_train_state()
    assert state["global_step"] == 10 and state["finished"]
    assert [row["epoch"] for row in resumed.directory.read_history()] == ["1", "2"]

    resumed = seqtasks.resume(out, epochs=4, verbose=0)  # a finished run continues its step count and history
    state = resumed.directory.read_train_state()
    assert state["global_step"] == 20 and state["epoch"] == 4
    history = resumed.directory.read_history()
    assert [row["epoch"] for row in history] == ["1", "2", "3", "4"]
    assert [row["step"] for row in history] == ["5", "10", "15", "20"]
    model = keras.saving.load_model(out / "checkpoints" / "last.keras", compile=True, safe_mode=True)
    assert int(model.optimizer.iterations) == 20


def test_finetune_keeps_tokenizer_names_parent_and_freezes(trained_run, tmp_path):
    new_text = tmp_path / "new.txt"
    new_text.write_text("hgfedcba\n" * 200)
    run = seqtasks.finetune(trained_run.path, data=str(new_text), out=tmp_path / "ft", freeze="embeddings",
                            epochs=1, verbose=0)
    record = json.loads((run.path / "config.json").read_text())
    assert record["parent"]["path"] == str(trained_run.path.resolve())
    assert record["parent"]["freeze"] == "embeddings"
    assert (run.path / "tokenizer" / "chars.json").read_text() == (trained_run.path / "tokenizer" / "chars.json").read_text()
    before = keras.ops.convert_to_numpy(trained_run.model.embedding.embeddings)
    after = keras.ops.convert_to_numpy(run.model.embedding.embeddings)
    np.testing.assert_array_equal(before, after)


def test_bad_inputs_raise_user_errors_and_leave_no_run(tmp_path, pattern_corpus):
    short = tmp_path / "short.txt"
    short.write_text("abc\n")
    with pytest.raises(UserError, match="shorter than one window"):
        seqtasks.train("lm", data=str(short), out=str(tmp_path / "r1"), verbose=0, **TINY)
    with pytest.raises(UserError, match="unknown arch"):
        seqtasks.train("lm", data=str(pattern_corpus), arch="cnn", out=str(tmp_path / "r2"), verbose=0, **TINY)
    with pytest.raises(UserError, match="not a seqtasks run"):
        seqtasks.load(tmp_path)
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_subword_tokenizer_and_bits_per_character(pattern_corpus, tmp_path):
    text = tmp_path / "words.txt"
    text.write_text("the quick brown fox jumps over the lazy dog\n" * 150)
    run = seqtasks.train("lm", data=str(text), tokenizer="spm", vocab_size=40, epochs=1, steps_per_epoch=3,
                         out=str(tmp_path / "spm"), verbose=0, **TINY)
    assert (run.path / "tokenizer" / "spm.model").is_file()
    metrics = run.evaluate(str(text))
    assert metrics["tokens"] < metrics["characters"]  # subwords: fewer tokens than characters
    assert metrics["bpc"] == pytest.approx(metrics["loss"] * metrics["tokens"] / metrics["characters"] / math.log(2))


def test_tfds_source_trains_from_a_locally_built_dataset(tmp_path):
    import tensorflow as tf
    import tensorflow_datasets as tfds

    class TinyText(tfds.dataset_builders.TfDataBuilder):
        code_path = None  # built in a test: no module file to look up

    texts = ["to be or not to be, that is the question\n" * 5] * 20
    builder = TinyText(name="seqtasks_lm_tiny", version="1.0.0", data_dir=str(tmp_path),
                       split_datasets={"train": tf.data.Dataset.from_tensor_slices({"text": texts})},
                       features=tfds.features.FeaturesDict({"text": tfds.features.Text()}))
    builder.download_and_prepare()
    run = seqtasks.train("lm", data="tfds:seqtasks_lm_tiny:train", tfds_dir=str(tmp_path), epochs=1,
                         steps_per_epoch=3, out=str(tmp_path / "tfds-run"), verbose=0, **TINY)
    assert run.record["data"]["train"]["num_examples"] == 20


def test_time_budget_stops_training_and_bends_the_schedule(pattern_corpus, tmp_path):
    from seqtasks.training import learning_rate
    from seqtasks.config import TrainConfig

    cfg = TrainConfig(lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert learning_rate(0, 0.0, cfg) == pytest.approx(0.1)          # warming up
    assert learning_rate(50, 0.0, cfg) == pytest.approx(1.0)         # peak
    assert learning_rate(50, 0.5, cfg) == pytest.approx(0.55)        # half way: midpoint of the cosine
    assert learning_rate(50, 1.0, cfg) == pytest.approx(0.1)         # budget spent: the floor
    run = seqtasks.train("lm", data=str(pattern_corpus), epochs=1000, steps_per_epoch=5, max_time=0.05,
                         out=str(tmp_path / "budget"), verbose=0, **TINY)
    state = run.directory.read_train_state()
    assert state["finished"] and state["stop_reason"] == "time budget spent"
    assert state["epoch"] < 1000 and run.directory.best_model_path.is_file()
    last_lr = float(run.directory.read_history()[-1]["lr"])
    assert last_lr < 0.5 * TINY["lr"]  # the cosine followed the clock down


def test_non_finite_loss_stops_with_a_clear_error(pattern_corpus, tmp_path, monkeypatch):
    from seqtasks import training

    original = training.RunKeeper.on_train_batch_end

    def nan_at_step_3(self, batch, logs=None):
        logs = dict(logs or {})
        if self.state.global_step == 3:
            logs["loss"] = float("nan")
        original(self, batch, logs)

    monkeypatch.setattr(training.RunKeeper, "on_train_batch_end", nan_at_step_3)
    with pytest.raises(UserError, match="diverged.*step 3"):
        seqtasks.train("lm", data=str(pattern_corpus), epochs=2, steps_per_epoch=5, out=str(tmp_path / "nan"),
                       verbose=0, **TINY)
    state = json.loads((tmp_path / "nan" / "checkpoints" / "train_state.json").read_text())
    assert state["stop_reason"] == "diverged"


@pytest.mark.graph_mode  # traced training, as users train
def test_bf16_mixed_precision_trains_saves_and_loads(pattern_corpus, tmp_path):
    run = seqtasks.train("lm", data=str(pattern_corpus), arch="transformer", heads=2, epochs=1, steps_per_epoch=4,
                         out=str(tmp_path / "bf16"), verbose=0, **{**TINY, "precision": "bf16"})
    assert run.record["resolved"]["precision"] == "bf16"
    model = run.model
    assert model.dtype_policy.name == "mixed_bfloat16"
    logits = model(np.array([[4, 5, 6]]))
    assert logits.dtype == "float32" and np.isfinite(keras.ops.convert_to_numpy(logits)).all()


def test_feed_forward_activation_is_saved_with_the_run_and_kept_by_finetune(pattern_corpus, tmp_path):
    run = seqtasks.train("lm", data=str(pattern_corpus), arch="transformer", heads=2, activation="relu", epochs=1,
                         steps_per_epoch=3, out=str(tmp_path / "relu"), verbose=0, **TINY)
    text = run.sample("ab", max_new_tokens=5, temperature=1.0, seed=1)  # the transformer trains and samples
    assert isinstance(text, str) and len(text) <= 5 * 2
    assert run.sample("ab", max_new_tokens=5, temperature=1.0, seed=1) == text
    loaded = seqtasks.load(run.path)
    assert loaded.settings.activation == "relu"
    assert {block.feed_forward.activation for block in loaded.model.decoder.blocks} == {"relu"}
    with pytest.raises(UserError, match="activation"):
        seqtasks.finetune(str(run.path), data=str(pattern_corpus), out=str(tmp_path / "gelu"), activation="gelu")
