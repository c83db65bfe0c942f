"""Run folders saved before the decoders were shared (tests/data/old_runs/) still load and give the
outputs they gave when they were saved: the same logits for fixed inputs (to 1e-5), the same greedy
tokens through the model's prefill/step decoding interface, and the same weights in the same order
(a checkpoint's optimizer moments are stored in that order).

The folders were written by tests/data/old_runs/make_old_runs.py with the code of that commit.
"""
from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

import seqtasks

OLD_RUNS = Path(__file__).resolve().parent / "data" / "old_runs"
EXPECTED = json.loads((OLD_RUNS / "expected.json").read_text())


def greedy(model, prompt: list[int], context, steps: int) -> tuple[list[int], list[float]]:
    """`steps` greedy tokens after `prompt` by prefill then step; also the logits prefill gives."""
    ids = keras.ops.convert_to_tensor([prompt], "int32")
    logits, state = model.prefill(ids, len(prompt) + steps, *([] if context is None else [context]))
    first = keras.ops.convert_to_numpy(logits)[0].tolist()
    tokens = []
    for index in range(len(prompt), len(prompt) + steps):
        tokens.append(int(np.argmax(keras.ops.convert_to_numpy(logits)[0])))
        logits, state = model.step(keras.ops.convert_to_tensor([tokens[-1]], "int32"), state, index)
    return tokens, first


def teacher_forced(task: str, model, ids: np.ndarray, folder: Path):
    """(logits of the model's call on the fixed inputs saved in `folder`, the decoding context of row 0)."""
    if task == "lm":
        return model(ids), None
    if task == "translate":
        source = np.load(folder / "source.npy")
        return model((source, ids)), model.encode(source[:1])
    image = np.load(folder / "image.npy")
    return model((image, ids)), (model.encode(image[:1]),)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_an_old_run_loads_and_gives_its_old_outputs(name):
    folder, expected = OLD_RUNS / name, EXPECTED[name]
    run = seqtasks.load(folder)
    assert run.preprocessor is not None
    model = run.model
    assert [list(w.shape) for w in model.weights] == expected["weight_shapes"]
    ids = np.array(expected["ids"], "int32")
    logits, context = teacher_forced(expected["task"], model, ids, folder)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(logits), np.load(folder / "logits.npy"), atol=1e-5)
    tokens, first = greedy(model, list(ids[0]), context, len(expected["greedy"]))
    np.testing.assert_allclose(first, expected["prefill_logits"], atol=1e-5)
    assert tokens == expected["greedy"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_an_old_runs_optimizer_state_comes_back_beside_its_own_variables(name):
    """What resume needs from an old file: Adam's moments, stored in the order of the trainable
    variables, are loaded in that order, so each moment has its variable's shape."""
    from seqtasks.model_files import load_model

    model = load_model(OLD_RUNS / name / "model.keras", compile=True)
    moments = model.optimizer.variables[2:]  # after the iteration count and the learning rate
    trainable = model.trainable_variables
    assert len(moments) == 2 * len(trainable) and np.any(keras.ops.convert_to_numpy(moments[0]) != 0)
    for k, variable in enumerate(trainable):
        assert moments[2 * k].shape == moments[2 * k + 1].shape == variable.shape, variable.path
