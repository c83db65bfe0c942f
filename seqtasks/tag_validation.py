"""Validation entity F1 during training: what a chunk tagger's best checkpoint is chosen by.

A CRF's loss (the negative log-likelihood of the gold path, summed over every token) and its entity
F1 (exact spans) often disagree late in training: the loss rises on a few confident errors while
more entities come out whole. So for chunk tags (IOB1/BIO/IOBES) the tag task hands the training
loop `entity_f1_plan`: at each epoch's end the model's tags (Viterbi with a CRF, argmax without) of
every validation piece are read back into the data's scheme and scored with conlleval's semantics
(metrics.entity_scores, the figure `evaluate` reports), logged as val_f1, val_precision and
val_recall, and model.keras follows val_f1. Pieces are what the model trains on: sentences longer
than --max-len are scored in pieces of --max-len words. Plain tags (POS) keep token accuracy.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import keras
import numpy as np

from seqtasks import schemes
from seqtasks.metrics import entity_scores
from seqtasks.sequence_inputs import InputEncoder, compiled_inference, run_batches
from seqtasks.training import FitPlan


def entity_f1_validation(prep: InputEncoder, inputs: Sequence[tuple[list, list | None]],
                         targets: Sequence[np.ndarray], batch_size: int,
                         token_pieces: bool) -> Callable[[keras.Model], dict[str, float]]:
    """model -> {f1, precision, recall} of its tags on the encoded validation pieces (targets: internal tag ids)."""
    scheme, internal = prep.info["scheme"], prep.info["internal_scheme"]

    def tags(ids) -> list[str]:
        return schemes.convert([prep.labels.decode(int(i)) for i in ids], internal, scheme)

    gold = [tags(row) for row in targets]
    traced: dict[str, Any] = {}  # the model of the last call and its traced tag_ids (traced once per model)

    def validate(model: keras.Model) -> dict[str, float]:
        if not inputs:
            return {}
        if model.run_eagerly:
            function = lambda batch: keras.ops.convert_to_numpy(model.tag_ids(batch))  # noqa: E731
        else:
            if traced.get("model") is not model:
                traced.update(model=model, function=compiled_inference(model.tag_ids, prep, token_pieces))
            function = traced["function"]
        outputs = run_batches(function, inputs, batch_size)
        predicted = [tags(row[:len(tokens)]) for (tokens, _), row in zip(inputs, outputs)]
        scores = entity_scores(gold, predicted)
        return {key: scores[key] for key in ("f1", "precision", "recall")}

    return validate


def entity_f1_plan(plan: FitPlan, prep: InputEncoder, valid: tuple[list, list], batch_size: int,
                   token_pieces: bool) -> FitPlan:
    """`plan` choosing its best checkpoint by validation entity F1 when the tags are chunks; else `plan`."""
    if prep.info.get("scheme", "none") == "none":
        return plan
    return dataclasses.replace(plan, monitor="val_f1", mode="max", monitor_name="entity F1",
                               validate=entity_f1_validation(prep, *valid, batch_size, token_pieces))
