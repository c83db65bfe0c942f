"""Sequence labeling: a tag per word, by a softmax per token or a linear-chain CRF (--crf).

Data: CoNLL columns (token first, tag in the last column or --tag-col N) or CoNLL-U (--tag-col
upos | xpos), .gz accepted. Chunk tags (IOB1, BIO, IOBES; detected, or --scheme) are converted to
IOBES inside and written back in the input's scheme; other tags (POS) are used as they are.
Sentences longer than --max-len are split into pieces of --max-len words. The best checkpoint is
chosen by validation entity F1 for chunk tags (seqtasks.tag_validation), by token accuracy for
others; `evaluate` adds entity-level P/R/F1 (conlleval) for chunk tags.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterator

import keras
import numpy as np

from seqtasks import schemes
from seqtasks.batching import holdout_items, pad
from seqtasks.config import demo_settings
from seqtasks.errors import UserError
from seqtasks.models.tagger import PAD_TAG, MaskedAccuracy, SequenceTagger
from seqtasks.readers.conll import TaggedSentence, pretokenized_sentences, read_tagged_sentences
from seqtasks.sequence_inputs import (InputEncoder, accuracy_fit_plan, build_input_encoder,
                                      dummy_inputs, encoder_arguments,
                                      input_signature, run_batches, run_inference, split_words)
from seqtasks.serving_labels import TaggerServing
from seqtasks.tag_scores import tagging_scores
from seqtasks.tag_validation import entity_f1_plan
from seqtasks.tasks.base import Task
from seqtasks.tasks.cards.tag import TaggingCard, TaggingConfig  # noqa: F401
from seqtasks.tokenizers import LabelVocabulary
from seqtasks.training import FitPlan, dtype_policy


@dataclasses.dataclass
class TaggingData:
    train: list[TaggedSentence]
    valid: list[TaggedSentence]
    sources: dict[str, str]


def bundled_treebank() -> Path:
    from seqtasks.data import bundled_path

    return bundled_path("en_ewt_sample.conllu.gz")


def _pieces(sentence_tokens: list, max_len: int) -> list[tuple[int, int]]:
    """(start, end) windows of at most max_len words covering a sentence."""
    return [(start, min(start + max_len, len(sentence_tokens))) for start in range(0, len(sentence_tokens), max_len)]


class TaggingTask(TaggingCard, Task):
    monitor_name = "accuracy"

    def default_overrides(self) -> dict[str, Any]:
        return {"data": str(bundled_treebank()), **demo_settings(self.name)}  # the recipe: configs/demo-tag.toml

    # ---- data ---------------------------------------------------------------------------------
    def read(self, cfg) -> TaggingData:
        if not cfg.data:
            raise UserError("no training data given", fix="pass --data FILE (CoNLL or CoNLL-U)")
        train = read_tagged_sentences(cfg.data, cfg.tag_col, "training data")
        if cfg.valid:
            valid = read_tagged_sentences(cfg.valid, cfg.tag_col, "validation data")
        else:
            train, valid = holdout_items(train, cfg.valid_fraction, cfg.seed, what="sentences", where=cfg.data)
        return TaggingData(train, valid, {"train": cfg.data, "valid": cfg.valid})

    def describe_data(self, data: TaggingData) -> dict[str, Any]:
        return {split: {"source": data.sources[split] or f"{data.sources['train']} (held out)",
                        "sentences": len(sentences), "tokens": sum(len(s.tokens) for s in sentences)}
                for split, sentences in (("train", data.train), ("valid", data.valid))}

    def prepare(self, cfg, data: TaggingData) -> InputEncoder:
        scheme = schemes.resolve_scheme(cfg.scheme, [s.tags for s in data.train], cfg.data)
        internal = schemes.INTERNAL_SCHEME if scheme != "none" else "none"
        # the tag set is the training file's: a tag seen once may be in the held-out part
        held_out = [] if cfg.valid else data.valid
        labels = LabelVocabulary.from_examples(
            tag for s in data.train + held_out for tag in schemes.convert(s.tags, scheme, internal))
        words = (token for s in data.train for token in s.tokens)
        texts = [" ".join(s.tokens) for s in data.train] if cfg.tokenizer == "spm" else None
        return build_input_encoder(cfg, words, texts, labels, {"scheme": scheme, "internal_scheme": internal})

    def load_preprocessor(self, directory: Path) -> InputEncoder:
        return InputEncoder.load(directory)

    def internal_tags(self, prep: InputEncoder, sentence: TaggedSentence) -> list[str]:
        return schemes.convert(sentence.tags, prep.info["scheme"], prep.info["internal_scheme"])

    def new_labels(self, prep: InputEncoder, data: TaggingData) -> list[tuple[str, str]]:
        """(tag, where) of each internal tag of the data that the preprocessor does not know."""
        seen: dict[str, str] = {}
        for sentence in data.train + data.valid:
            for tag in self.internal_tags(prep, sentence):
                if tag not in prep.labels:
                    seen.setdefault(tag, sentence.where)
        return list(seen.items())

    def encode(self, cfg, prep: InputEncoder, sentences: list[TaggedSentence]) -> tuple[list, list[np.ndarray]]:
        inputs, targets = [], []
        for sentence in sentences:
            tags = self.internal_tags(prep, sentence)
            for tag in tags:
                if tag not in prep.labels:
                    raise UserError(f"the tag {tag!r} was not seen in training", sentence.where,
                                    "the tag set is fixed by the training data (finetune: pass --extend-labels "
                                    "to add tags)")
            for start, end in _pieces(sentence.tokens, cfg.max_len):
                inputs.append(prep.encode_words(sentence.tokens[start:end]))
                targets.append(np.array([prep.labels.encode(t) for t in tags[start:end]], np.int32))
        return inputs, targets

    def plan(self, cfg, prep: InputEncoder, data: TaggingData) -> FitPlan:
        import tensorflow as tf

        train = self.encode(cfg, prep, data.train)
        valid = self.encode(cfg, prep, data.valid)

        plan = accuracy_fit_plan(cfg, train, valid, input_signature(prep, not prep.uses_words),
                                 tf.TensorSpec((None, None), tf.int32), lambda tags: pad(tags, value=PAD_TAG))
        return entity_f1_plan(plan, prep, valid, cfg.batch_size, not prep.uses_words)

    # ---- model --------------------------------------------------------------------------------
    def build(self, cfg, prep: InputEncoder) -> keras.Model:
        keras.utils.set_random_seed(cfg.seed)
        pieces = not prep.uses_words
        model = SequenceTagger(len(prep.labels), crf=cfg.crf, encoder=encoder_arguments(cfg, prep, pieces),
                               dtype=dtype_policy(cfg.precision), name="tagger")
        model(dummy_inputs(prep, pieces))
        return model

    def loss_and_metrics(self, cfg, prep):
        # with a CRF the model computes its own loss (it needs the transition scores)
        loss = None if cfg.crf else keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=PAD_TAG)
        return loss, [MaskedAccuracy(name="accuracy")]

    # ---- use ----------------------------------------------------------------------------------
    def tag_words(self, run, sentences: list[list[str]], scheme: str | None = None) -> list[list[str]]:
        """Tags of each sentence of words, in `scheme` (default: the training data's)."""
        cfg, prep, model = run.settings, run.preprocessor, run.model
        encoded, owners = [], []
        for index, words in enumerate(sentences):
            for start, end in _pieces(words, cfg.max_len):
                encoded.append(prep.encode_words(words[start:end]))
                owners.append(index)
        infer = run_inference(run, "tag_ids", model.tag_ids, prep, not prep.uses_words)
        outputs = run_batches(infer, encoded, cfg.batch_size, run.progress) if encoded else []
        ids: list[list[int]] = [[] for _ in sentences]
        for owner, (tokens, _), predicted in zip(owners, encoded, outputs):
            ids[owner].extend(int(i) for i in predicted[:len(tokens)])
        target = scheme or prep.info["scheme"]
        return [schemes.convert([prep.labels.decode(i) for i in row], prep.info["internal_scheme"], target)
                for row in ids]

    def evaluate(self, run, source: str | None) -> dict[str, Any]:
        if not source:
            raise UserError("no evaluation data given", fix="pass --data FILE")
        sentences = read_tagged_sentences(source, run.settings.tag_col, "evaluation data")
        gold = [list(s.tags) for s in sentences]
        trained_scheme = run.preprocessor.info["scheme"]
        # predictions are written in the evaluation file's own scheme, so token accuracy compares like with like
        scheme = schemes.detect(gold) if trained_scheme != "none" else "none"
        predicted = self.tag_words(run, [list(s.tokens) for s in sentences], scheme if scheme != "none" else None)
        return tagging_scores(gold, predicted, run.preprocessor.labels.names, chunked=trained_scheme != "none")

    def predict(self, run, inputs: list[str], pretokenized: bool = False) -> Iterator[dict[str, Any]]:
        """Raw text: each input is a sentence, split into words, tagged -> tokens, tags, entity spans.
        Pretokenized (CoNLL): one token per input line, blank lines between sentences -> per line,
        the token and its tag (other lines are echoed)."""
        if not pretokenized:
            sentences = [split_words(text) for text in inputs]
            for words, tags in zip(sentences, self.tag_words(run, sentences)):
                chunks = schemes.spans(tags) if run.preprocessor.info["scheme"] != "none" else []
                entities = [{"start": start, "end": end, "type": kind, "text": " ".join(words[start:end])}
                            for start, end, kind in chunks]
                yield {"tokens": words, "tags": tags, "entities": entities}
            return
        groups = list(pretokenized_sentences(inputs))
        tagged = self.tag_words(run, [[token for _, token in group] for group in groups])
        by_line = {line: {"token": token, "tag": tag} for group, tags in zip(groups, tagged)
                   for (line, token), tag in zip(group, tags)}
        for line, text in enumerate(inputs):
            yield by_line.get(line, {"text": text})

    def serving_module(self, run):  # seqtasks export: the graph of predict
        return TaggerServing(run.model, run.preprocessor, run.settings.max_len)

    def format_prediction(self, result: dict[str, Any]) -> str:
        if "tokens" in result:
            return "".join(f"{token}\t{tag}\n" for token, tag in zip(result["tokens"], result["tags"]))
        if "token" in result:
            return f"{result['token']}\t{result['tag']}"
        return result["text"]
