"""Language modeling: learn p(x_t | x_<t) on raw text; report loss, perplexity and bits per character.

Data: any text source (file, folder, glob, .gz, tfds:NAME[:SPLIT]). The corpus is encoded once
(cached on disk) into one stream of ids, documents separated by EOS, and cut into windows of seq_len
tokens. With no --valid, the last valid_fraction of the stream is held out.

bpc = total nats over the text / number of characters / ln 2, so that char and subword models compare.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterator

import keras

from seqtasks.choices import recurrent_cell
from seqtasks.config import demo_settings
from seqtasks.errors import UserError
from seqtasks.generation import GeneratesText, TextGenerator, TextPrompts, batches
from seqtasks.metrics import language_model_scores
from seqtasks.models.language_model import RecurrentLanguageModel, TransformerLanguageModel
from seqtasks.models.ngram import NgramLanguageModel
from seqtasks.ngram_estimation import corpus_scores, estimate_ngram
from seqtasks.batching import epoch_datasets, fit_batch_size, steps_per_epoch
from seqtasks.progress import Progress
from seqtasks.pipeline import (corpus_pieces, count_windows, encode_corpus, language_model_batches, language_model_windows,
                               training_corpora)
from seqtasks.readers import open_text_source
from seqtasks.tokenizers import PAD_ID, Tokenizer, load_tokenizer, train_tokenizer
from seqtasks.training import FitPlan, dtype_policy
from seqtasks.tasks.base import Task
from seqtasks.tasks.cards.lm import LanguageModelCard, LanguageModelConfig  # noqa: F401  (the settings, as before)


PREDICT_BATCH = 64  # prompts decoded together (bounded memory)


@dataclasses.dataclass
class LanguageModelData:
    train: Any
    valid: Any | None


def bundled_corpus() -> Path:
    from seqtasks.data import bundled_path

    return bundled_path("tinyshakespeare.txt")


def scored_nats(model: keras.Model, dataset, progress: Progress | None = None) -> tuple[float, float]:
    """Sum of -log p(target) over the non-PAD targets of a dataset of (inputs, targets), and their
    count; `progress` hears of the batches (when the dataset knows how many it has)."""
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def batch_nats(inputs, targets):
        logits = model(inputs, training=False)
        nats = keras.ops.sparse_categorical_crossentropy(targets, logits, from_logits=True)
        scored = keras.ops.cast(targets != PAD_ID, "float32")
        return keras.ops.sum(nats * scored), keras.ops.sum(scored)

    total = count = 0.0
    batches = int(dataset.cardinality())
    progress = progress if progress is not None and batches >= 0 else None  # unknown (-2) or infinite (-1)
    if progress is not None:
        progress.expect(batches)
    for inputs, targets in dataset:
        nats, scored = batch_nats(inputs, targets)
        total, count = total + float(nats), count + float(scored)
        if progress is not None:
            progress.advance()
    return total, count


class LanguageModelTask(GeneratesText, LanguageModelCard, Task):

    def default_overrides(self) -> dict[str, Any]:
        return {"data": str(bundled_corpus()), **demo_settings(self.name)}  # the recipe: configs/demo-lm.toml

    # ---- data ---------------------------------------------------------------------------------
    def _source(self, spec: str, cfg, role: str):
        return open_text_source(spec, doc_per_line=cfg.doc_per_line, text_key=cfg.text_key or None,
                                data_dir=cfg.tfds_dir or None, role=role)

    def read(self, cfg) -> LanguageModelData:
        if not cfg.data:
            raise UserError("no training data given", fix="pass --data FILE|FOLDER|GLOB|tfds:NAME")
        train = self._source(cfg.data, cfg, "training data")
        valid = self._source(cfg.valid, cfg, "validation data") if cfg.valid else None
        return LanguageModelData(train, valid)

    def describe_data(self, data: LanguageModelData) -> dict[str, Any]:
        described = {"train": data.train.describe()}
        if data.valid is not None:
            described["valid"] = data.valid.describe()
        return described

    def prepare(self, cfg, data: LanguageModelData) -> Tokenizer:
        texts = (piece for piece, _ in corpus_pieces(data.train, cfg.tokenizer))  # bounded memory
        return train_tokenizer(cfg.tokenizer, texts, vocab_size=cfg.vocab_size or None,
                               model_type=cfg.spm_model_type)

    def load_preprocessor(self, directory: Path) -> Tokenizer:
        return load_tokenizer(directory)

    def estimate(self, cfg, tokenizer: Tokenizer, data: LanguageModelData):
        return estimate_ngram(cfg, tokenizer, data) if cfg.arch == "ngram" else None  # counted, not trained

    def plan(self, cfg, tokenizer: Tokenizer, data: LanguageModelData) -> FitPlan:
        train, valid = training_corpora(data.train, data.valid, tokenizer, cfg.seq_len, cfg.valid_fraction)
        windows = count_windows(len(train), cfg.seq_len)
        batch_size = fit_batch_size(cfg.batch_size, windows, f"windows of {cfg.seq_len} tokens")
        steps = steps_per_epoch(cfg.steps_per_epoch, windows // batch_size)

        def train_dataset(numbers: range):
            return language_model_batches(train, cfg.seq_len, batch_size, seed=cfg.seed, first_batch=numbers.start,
                                          num_batches=len(numbers))

        return FitPlan(epoch_datasets(train_dataset, steps), steps,
                       language_model_windows(valid, cfg.seq_len, cfg.batch_size), monitor="val_loss", mode="min",
                       sample=self.sample_during_training(cfg, tokenizer))

    # ---- model --------------------------------------------------------------------------------
    def build(self, cfg, tokenizer: Tokenizer) -> keras.Model:
        keras.utils.set_random_seed(cfg.seed)
        policy = dtype_policy(cfg.precision)
        if cfg.arch == "transformer":
            model = TransformerLanguageModel(tokenizer.vocab_size, d_model=cfg.units, heads=cfg.heads,
                                             num_layers=cfg.layers, max_length=cfg.seq_len, dropout=cfg.dropout,
                                             positions=cfg.positions, activation=cfg.activation, dtype=policy,
                                             name="language_model")
        elif cfg.arch in ("rnn", "gru", "lstm"):
            model = RecurrentLanguageModel(tokenizer.vocab_size, cell=recurrent_cell(cfg.arch, cfg.cell),
                                           units=cfg.units,
                                           num_layers=cfg.layers, embedding_dim=cfg.embedding_dim or None,
                                           dropout=cfg.dropout, unroll=cfg.unroll,
                                           dtype=policy, name="language_model")
        else:
            raise UserError(f"unknown architecture {cfg.arch!r}", fix=f"choose one of: {', '.join(self.architectures)}")
        model.build((None, cfg.seq_len))
        return model

    def loss_and_metrics(self, cfg, tokenizer):
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=PAD_ID), []

    # ---- use ----------------------------------------------------------------------------------
    def evaluate(self, run, source: str | None) -> dict[str, Any]:
        cfg, tokenizer = run.settings, run.preprocessor
        if not source:
            raise UserError("no evaluation data given", fix="pass --data FILE")
        text = self._source(source, cfg, "evaluation data")
        corpus = encode_corpus(text, tokenizer)  # bad data fails before the model is loaded
        if isinstance(run.model, NgramLanguageModel):
            return corpus_scores(run.model, corpus)  # the whole stream, each token after its order - 1 tokens
        dataset = language_model_windows(corpus, cfg.seq_len, cfg.batch_size)
        total_nats, tokens = scored_nats(run.model, dataset, run.progress)
        return language_model_scores(total_nats, int(tokens), corpus.characters)

    # ---- generation: generate_batch / stream (seqtasks.generation) and predict -------------------
    continues_prompt = True  # the output continues the prompt's text (`seqtasks sample` prints both)

    def conditioning(self, cfg, model, tokenizer: Tokenizer) -> TextPrompts:
        return TextPrompts(tokenizer)  # no stop ids: a language model runs on across documents

    def predict(self, run, inputs: list[str], max_new_tokens: int = 100, temperature: float = 0.0,
                seed: int | None = None, beam: int | None = None) -> Iterator[str]:
        """The continuation of each prompt (greedy unless a temperature or a beam is given)."""
        options = {"max_new_tokens": max_new_tokens, "temperature": temperature, "seed": seed,
                   **({} if beam is None else {"beam_width": beam})}
        for batch in batches(inputs, PREDICT_BATCH):
            for texts in self.generate_batch(run, batch, **options):
                yield texts[0]  # batch by batch: the first outputs print before the last are decoded

    def after_training(self, run, quiet: bool) -> list[str]:
        if quiet:
            return []
        return ["", "sample from the best model:", "", run.sample("", max_new_tokens=300, temperature=0.8, seed=0),
                "", f'next: seqtasks sample {run.path} --prompt "ROMEO:" --temperature 0.8']

    def sample_during_training(self, cfg, tokenizer: Tokenizer):
        if not cfg.sample_tokens:
            return None
        return lambda model: TextGenerator(model, self.conditioning(cfg, model, tokenizer)).generate_batch(
            [""], max_new_tokens=cfg.sample_tokens, temperature=0.8, seed=cfg.seed)[0][0]
