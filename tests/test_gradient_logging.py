"""Training logs the global gradient norm before clipping and the share of clipped steps, for every task:
history.csv columns grad_norm, grad_norm_max, clipped, and the same scalars in TensorBoard."""
import csv
import dataclasses

import keras
import numpy as np
import pytest

from seqtasks.config import TrainConfig
from seqtasks.training import gradient_stats, make_optimizer


def _one_step(clip_norm: float):
    """A small model, one fit step on one batch: (the recorded summary, the norm computed directly)."""
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(7, activation="tanh"), keras.layers.Dense(3)])
    x = np.random.default_rng(0).normal(size=(8, 5)).astype("float32")
    y = np.arange(8) % 3
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        value = loss(y, model(x))
    expected = float(tf.linalg.global_norm(tape.gradient(value, model.trainable_variables)))
    cfg = dataclasses.replace(TrainConfig(), clip_norm=clip_norm, weight_decay=0.0)
    model.compile(optimizer=make_optimizer(cfg), loss=loss)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    return gradient_stats(model.optimizer).summary(), expected


def test_the_recorded_norm_is_the_global_norm_before_clipping():
    small, expected = _one_step(clip_norm=1e-3)
    assert small["grad_norm"] == pytest.approx(expected, rel=1e-4)  # not the clipped 1e-3
    assert small["grad_norm_max"] == pytest.approx(expected, rel=1e-4)
    assert small["clipped"] == 1.0
    large, _ = _one_step(clip_norm=1e3)
    assert large["grad_norm"] == pytest.approx(expected, rel=1e-4) and large["clipped"] == 0.0


@pytest.mark.parametrize("task", ["lm", "generate", "classify", "tag", "translate"])
def test_every_task_writes_the_gradient_norm_to_history_and_tensorboard(tiny_runs, task):
    run, _ = tiny_runs(task)
    with open(run.path / "history.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and all(float(row["grad_norm"]) > 0 for row in rows)
    assert all(float(row["grad_norm_max"]) >= float(row["grad_norm"]) for row in rows)
    assert all(0.0 <= float(row["clipped"]) <= 1.0 for row in rows)
    events = list((run.path / "logs" / "train").glob("events.out.tfevents.*"))
    assert events and any(b"epoch_grad_norm" in path.read_bytes() for path in events)
