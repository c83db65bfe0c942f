"""Sequence classification: text -> one label, p(label | x) = softmax(W pool(Encoder(x)) + b).

Data: TSV / CSV with a header (--text-col, --label-col name the columns; indices for a file without
a header), JSONL ({"text": ..., "label": ...}), .gz, or tfds:NAME[:SPLIT] with text and label
features. Any number of classes; their names are kept in RUN/tokenizer/labels.json. With no --valid,
a seeded --valid-fraction of the examples is held out. Training watches validation accuracy.
"""
from __future__ import annotations

import dataclasses
import sys
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import keras
import numpy as np

from seqtasks.batching import holdout_items
from seqtasks.config import demo_settings
from seqtasks.errors import SeqtasksWarning, UserError
from seqtasks.metrics import classification_scores, unseen_warning
from seqtasks.models.classifier import SequenceClassifier
from seqtasks.readers.tables import LabeledText, read_labeled_texts
from seqtasks.sequence_inputs import (InputEncoder, accuracy_fit_plan, build_input_encoder,
                                      dummy_inputs, encoder_arguments,
                                      input_signature, run_batches, run_inference, split_words)
from seqtasks.serving_labels import ClassifierServing
from seqtasks.tasks.base import Task
from seqtasks.tasks.cards.classify import ClassificationCard, ClassificationConfig  # noqa: F401
from seqtasks.tokenizers import LabelVocabulary
from seqtasks.training import FitPlan, dtype_policy


@dataclasses.dataclass
class ClassificationData:
    train: list[LabeledText]
    valid: list[LabeledText]
    sources: dict[str, str]


def bundled_examples() -> Path:
    from seqtasks.data import bundled_path

    return bundled_path("sentiment_demo.tsv")


class ClassificationTask(ClassificationCard, Task):
    monitor_name = "accuracy"

    def default_overrides(self) -> dict[str, Any]:
        return {"data": str(bundled_examples()), **demo_settings(self.name)}  # the recipe: configs/demo-classify.toml

    # ---- data ---------------------------------------------------------------------------------
    def _read(self, cfg, spec: str, role: str) -> list[LabeledText]:
        return read_labeled_texts(spec, cfg.text_col, cfg.label_col, role, data_dir=cfg.tfds_dir or None)

    def read(self, cfg) -> ClassificationData:
        if not cfg.data:
            raise UserError("no training data given", fix="pass --data FILE (TSV, CSV or JSONL)")
        train = self._read(cfg, cfg.data, "training data")
        if cfg.valid:
            valid = self._read(cfg, cfg.valid, "validation data")
        else:
            train, valid = holdout_items(train, cfg.valid_fraction, cfg.seed, what="examples", where=cfg.data)
        return ClassificationData(train, valid, {"train": cfg.data, "valid": cfg.valid})

    def describe_data(self, data: ClassificationData) -> dict[str, Any]:
        described = {}
        for split, examples in (("train", data.train), ("valid", data.valid)):
            labels = sorted({e.label for e in examples})
            described[split] = {"source": data.sources[split] or f"{data.sources['train']} (held out)",
                                "examples": len(examples), "labels": labels[:50]}
        return described

    def prepare(self, cfg, data: ClassificationData) -> InputEncoder:
        # the label set is the training file's: a label seen once may be in the held-out part
        held_out = [] if cfg.valid else data.valid
        labels = LabelVocabulary.from_examples(e.label for e in data.train + held_out)
        if len(labels) < 2:
            raise UserError(f"the training data has only one label ({labels.names[0]!r})", cfg.data,
                            "a classifier needs examples of at least two labels")
        words = (word for e in data.train for word in split_words(e.text))
        return build_input_encoder(cfg, words, [e.text for e in data.train], labels)

    def load_preprocessor(self, directory: Path) -> InputEncoder:
        return InputEncoder.load(directory)

    def label_ids(self, prep: InputEncoder, examples: list[LabeledText], fix: str) -> np.ndarray:
        for example in examples:
            if example.label not in prep.labels:
                raise UserError(f"the label {example.label!r} was not seen in training", example.where, fix)
        return np.array([prep.labels.encode(e.label) for e in examples], np.int32)

    def new_labels(self, prep: InputEncoder, data: ClassificationData) -> list[tuple[str, str]]:
        """(label, where) of each label of the data that the preprocessor does not know."""
        seen: dict[str, str] = {}
        for example in data.train + data.valid:
            if example.label not in prep.labels:
                seen.setdefault(example.label, example.where)
        return list(seen.items())

    def plan(self, cfg, prep: InputEncoder, data: ClassificationData) -> FitPlan:
        fix = "the label set is fixed by the training data (finetune: pass --extend-labels to add labels)"
        train_labels = self.label_ids(prep, data.train, fix)
        valid_labels = self.label_ids(prep, data.valid, fix)
        train = [prep.encode_text(e.text, cfg.max_len) for e in data.train]
        valid = [prep.encode_text(e.text, cfg.max_len) for e in data.valid]
        return accuracy_fit_plan(cfg, (train, train_labels), (valid, valid_labels), input_signature(prep, False),
                                 _label_spec(), lambda labels: np.array(labels, np.int32))

    # ---- model --------------------------------------------------------------------------------
    def build(self, cfg, prep: InputEncoder) -> keras.Model:
        keras.utils.set_random_seed(cfg.seed)
        model = SequenceClassifier(len(prep.labels), pooling=cfg.pooling, encoder=encoder_arguments(cfg, prep),
                                   dtype=dtype_policy(cfg.precision), name="classifier")
        model(dummy_inputs(prep, False))
        return model

    def loss_and_metrics(self, cfg, prep):
        return (keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                [keras.metrics.SparseCategoricalAccuracy(name="accuracy")])

    # ---- use ----------------------------------------------------------------------------------
    def probabilities(self, run, texts: list[str]) -> list[np.ndarray]:
        cfg, prep, model = run.settings, run.preprocessor, run.model
        encoded = [prep.encode_text(text, cfg.max_len) for text in texts]
        infer = run_inference(run, "probabilities", lambda inputs: keras.ops.softmax(model(inputs, training=False)),
                              prep, False)
        return run_batches(infer, encoded, cfg.batch_size, run.progress)

    def evaluate(self, run, source: str | None) -> dict[str, Any]:
        if not source:
            raise UserError("no evaluation data given", fix="pass --data FILE")
        prep = run.preprocessor
        examples = self._read(run.settings, source, "evaluation data")
        # a label the run never saw is scored as it is: an error it could not avoid, in a class of its own
        unseen = Counter(e.label for e in examples if e.label not in prep.labels)
        names = prep.labels.names + sorted(unseen)
        index = {name: i for i, name in enumerate(names)}
        predicted = [int(np.argmax(p)) for p in self.probabilities(run, [e.text for e in examples])]
        metrics = classification_scores([index[e.label] for e in examples], predicted, names)
        if unseen:
            count = sum(unseen.values())
            print(unseen_warning(unseen, f"{count} of {len(examples)} examples", "labels",
                                 "they count as errors (their classes score 0 and enter macro-F1)"),
                  file=sys.stderr, flush=True)
            metrics["unseen_labels"] = {"examples": count, "labels": dict(unseen.most_common())}
        return metrics

    def predict(self, run, inputs: list[str], top_labels: int = 1, top_k: int | None = None
                ) -> Iterator[dict[str, Any]]:
        """The likeliest label of each text and its probability (the `top_labels` likeliest, ranked,
        under "top_k"). `top_k` is the old name of top_labels, kept for one release: in `sample` it
        means top-k sampling."""
        if top_k is not None:
            warnings.warn(SeqtasksWarning("--top-k is deprecated for label predictions: it is now --top-labels",
                                          fix="use --top-labels (--top-k goes in the next release)"), stacklevel=2)
            top_labels = top_k
        if top_labels < 1:
            raise UserError(f"--top-labels must be at least 1, got {top_labels}", fix="give --top-labels 1 or more")
        top_k = top_labels
        names = run.preprocessor.labels.names
        texts = [text if text.strip() else " " for text in inputs]
        for probabilities in self.probabilities(run, texts):
            best = np.argsort(-probabilities, kind="stable")[:top_k]
            ranked = [{"label": names[i], "probability": round(float(probabilities[i]), 4)} for i in best]
            yield {**ranked[0], "top_k": ranked} if top_k > 1 else ranked[0]

    def serving_module(self, run):  # seqtasks export: the graph of predict
        return ClassifierServing(run.model, run.preprocessor, run.settings.max_len)

    def format_prediction(self, result: dict[str, Any]) -> str:
        ranked = result.get("top_k", [result])
        return "\t".join(f"{r['label']}\t{r['probability']:.4f}" for r in ranked)


def _label_spec():
    import tensorflow as tf

    return tf.TensorSpec((None,), tf.int32)
