"""A chunk tagger's best checkpoint follows validation entity F1 (seqtasks.tag_validation), logged per
epoch in history.csv; the loop's choice is the task's (FitPlan.monitor / .mode / .validate), so a run
whose loss falls while its F1 does not keeps the F1's best epoch; a resumed run that kept another
column re-reads its best from the history."""
import csv
import json
import random
from pathlib import Path
from types import SimpleNamespace

import pytest

import seqtasks
from seqtasks.training import FitPlan, RunKeeper, TrainState, rebase_best

NAMES = {"John": "PER", "Mary": "PER", "Paris": "LOC", "Berlin": "LOC", "Acme": "ORG"}
FILLER = "the a saw went to with and met in from".split()


def conll(rng, count):
    lines = []
    for _ in range(count):
        for _ in range(rng.randint(3, 6)):
            word = rng.choice(sorted(NAMES)) if rng.random() < 0.35 else rng.choice(FILLER)
            lines.append(f"{word} X {'B-' + NAMES[word] if word in NAMES else 'O'}\n")  # BIO
        lines.append("\n")
    return "".join(lines)


@pytest.fixture(scope="module")
def ner_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ner")
    rng = random.Random(1)
    (folder / "train.conll").write_text(conll(rng, 40))
    (folder / "valid.conll").write_text(conll(rng, 12))
    run = seqtasks.train("tag", out=str(folder / "run"), data=str(folder / "train.conll"),
                         valid=str(folder / "valid.conll"), arch="lstm", units=16, layers=1, tokenizer="word",
                         char_features="none", crf=True, epochs=4, steps_per_epoch=4, batch_size=8, lr=1e-1,
                         warmup_steps=1, dropout=0.0, precision="fp32", verbose=0)
    return run, folder


def test_history_logs_entity_f1_each_epoch_and_the_best_model_is_the_best_f1_epoch(ner_run):
    run, folder = ner_run
    with open(run.path / "history.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["epoch"]) for row in rows] == [1, 2, 3, 4]
    f1 = [float(row["val_f1"]) for row in rows]
    assert all(0.0 <= value <= 1.0 for value in f1) and max(f1) > 0.5 and {"val_precision", "val_recall", "val_loss"} <= set(rows[0])
    state = json.loads((run.path / "checkpoints" / "train_state.json").read_text())
    assert state["monitor"] == "val_f1" and state["monitor_name"] == "entity F1"
    assert state["best_metric"] == pytest.approx(max(f1))
    # model.keras is the weights of the first epoch with the highest F1: evaluate (which loads it)
    # scores the validation file as history.csv says that epoch did
    metrics = run.evaluate(str(folder / "valid.conll"))
    assert metrics["f1"] == pytest.approx(max(f1), abs=1e-6), (metrics["f1"], f1)


class _Checkpoints:
    """A run folder that records which epochs were saved as the best model."""

    def __init__(self, tmp_path: Path):
        self.last_checkpoint_path = tmp_path / "last.keras"  # never made: every save is a full one
        self.best_epochs: list[int] = []

    def save_checkpoint(self, model, state, best=False):
        if best:
            self.best_epochs.append(state["epoch"])


def test_the_best_epoch_follows_the_task_metric_not_the_loss(tmp_path):
    f1 = iter([0.30, 0.55, 0.50, 0.60, 0.58])
    plan = FitPlan(train_batches=None, steps_per_epoch=1, monitor="val_f1", mode="max",
                   validate=lambda model: {"f1": next(f1)})
    run = _Checkpoints(tmp_path)
    cfg = SimpleNamespace(patience=0)
    keeper = RunKeeper(run, plan, cfg, TrainState(monitor="val_f1"), budget_seconds=0.0, planned_steps=5)
    keeper.set_model(SimpleNamespace(optimizer=SimpleNamespace(learning_rate=0.1), stop_training=False))
    for epoch, loss in enumerate([2.0, 1.5, 1.0, 0.9, 0.5]):  # the loss falls every epoch
        keeper.on_epoch_end(epoch, {"loss": loss, "val_loss": loss})
    assert run.best_epochs == [1, 2, 4]
    assert [row["val_f1"] for row in keeper.state.history] == [0.30, 0.55, 0.50, 0.60, 0.58]
    assert keeper.state.best_metric == 0.60 and keeper.state.epochs_without_improvement == 1


def test_a_resumed_run_that_kept_another_column_reads_its_best_from_the_history():
    history = [{"epoch": 1, "val_accuracy": 0.9, "val_f1": 0.4}, {"epoch": 2, "val_accuracy": 0.95, "val_f1": 0.7},
               {"epoch": 3, "val_accuracy": 0.96, "val_f1": 0.6}]
    state = TrainState(best_metric=0.96, history=history)  # saved before the monitor was recorded
    rebase_best(state, FitPlan(None, 1, monitor="val_f1", mode="max"))
    assert (state.monitor, state.best_metric, state.epochs_without_improvement) == ("val_f1", 0.7, 1)
    older = TrainState(best_metric=0.96, history=[{"epoch": 1, "val_accuracy": 0.96}])  # no F1 logged yet
    rebase_best(older, FitPlan(None, 1, monitor="val_f1", mode="max"))
    assert older.best_metric is None  # the next epoch's model becomes the best
    unvalidated = TrainState(best_metric=1.2, history=[{"epoch": 1, "loss": 1.2}])
    rebase_best(unvalidated, FitPlan(None, 1))
    assert unvalidated.best_metric == 1.2
