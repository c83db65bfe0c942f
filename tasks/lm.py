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

from seqtasks import decoding
from seqtasks.config import TrainConfig, setting
from seqtasks.errors import UserError
from seqtasks.metrics import language_model_scores
from seqtasks.models.language_model import RecurrentLanguageModel, TransformerLanguageModel
from seqtasks.pipeline import count_windows, encode_corpus, language_model_windows
from seqtasks.readers import open_text_source
from seqtasks.tokenizers import PAD_ID, Tokenizer, load_tokenizer, train_tokenizer
from seqtasks.training import FitPlan, dtype_policy
from seqtasks.tasks.base import Task


@dataclasses.dataclass
class LanguageModelConfig(TrainConfig):
    data: str = setting("", "training text: a file, folder, glob, .gz, or tfds:NAME[:SPLIT]")
    valid: str = setting("", "validation text; default: the last --valid-fraction of the training text")
    valid_fraction: float = setting(0.05, "share of the training text held out when --valid is not given")
    doc_per_line: bool = setting(False, "each line is a document (default: each file is one)")
    text_key: str = setting("", "tfds sources: the feature holding the text")
    tfds_dir: str = setting("", "tfds sources: the data dir (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    arch: str = setting("lstm", "model family", ("rnn", "gru", "lstm", "transformer"))
    tokenizer: str = setting("char", "char, SentencePiece subwords (spm) or words", ("char", "spm", "word"))
    vocab_size: int = setting(0, "tokenizer vocabulary size; 0 = the tokenizer's default (spm 8000)")
    spm_model_type: str = setting("unigram", "SentencePiece algorithm", ("unigram", "bpe"))
    layers: int = setting(2, "recurrent layers or Transformer blocks")
    units: int = setting(256, "hidden units (recurrent) or d_model (Transformer)")
    heads: int = setting(4, "attention heads (Transformer)")
    positions: str = setting("learned", "Transformer position encoding", ("learned", "sinusoidal"))
    seq_len: int = setting(128, "tokens per training window (the Transformer's context)")
    sample_tokens: int = setting(200, "tokens sampled after each epoch to show progress; 0 = none")


@dataclasses.dataclass
class LanguageModelData:
    train: Any
    valid: Any | None


@dataclasses.dataclass
class Encoded:
    train: Any
    valid: Any


def bundled_corpus() -> Path:
    from seqtasks.data import bundled_path

    return bundled_path("tinyshakespeare.txt")


class LanguageModelTask(Task):
    name = "lm"
    description = "language modeling: raw text -> perplexity and bits per character; sample text"
    Config = LanguageModelConfig
    architectures = ("rnn", "gru", "lstm", "transformer")

    def default_overrides(self) -> dict[str, Any]:
        return {"data": str(bundled_corpus()), "max_time": 3.0, "epochs": 30, "steps_per_epoch": 100,
                "units": 256, "layers": 2, "sample_tokens": 150}

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
        texts = (line for line, _ in data.train.lines())
        return train_tokenizer(cfg.tokenizer, texts, vocab_size=cfg.vocab_size or None,
                               model_type=cfg.spm_model_type)

    def load_preprocessor(self, directory: Path) -> Tokenizer:
        return load_tokenizer(directory)

    def encode(self, cfg, tokenizer: Tokenizer, data: LanguageModelData) -> Encoded:
        train = encode_corpus(data.train, tokenizer)
        if data.valid is not None:
            valid = encode_corpus(data.valid, tokenizer)
        else:
            train, valid = train.split(cfg.valid_fraction)
        if count_windows(len(train), cfg.seq_len) < 1:
            raise UserError(f"the training text is shorter than one window of {cfg.seq_len} tokens "
                            f"({len(train)} tokens)", cfg.data,
                            "use a smaller --seq-len or more text")
        if len(valid) < 2:
            raise UserError("the validation text is too short to score", cfg.valid or cfg.data,
                            "give a longer --valid text or raise --valid-fraction")
        return Encoded(train, valid)

    def plan(self, cfg, tokenizer: Tokenizer, data: LanguageModelData) -> FitPlan:
        encoded = self.encode(cfg, tokenizer, data)
        windows = count_windows(len(encoded.train), cfg.seq_len)
        batch_size = cfg.batch_size
        if windows < batch_size:
            batch_size = windows
            print(f"note: the training text has only {windows} windows of {cfg.seq_len} tokens; "
                  f"using batches of {batch_size}")
        steps = windows // batch_size
        if cfg.steps_per_epoch:
            steps = cfg.steps_per_epoch

        def train_batches(epoch: int, skip: int):
            dataset = language_model_windows(encoded.train, cfg.seq_len, batch_size, shuffle=True,
                                             seed=cfg.seed, epoch=epoch)
            return dataset.repeat().skip(skip).take(steps - skip) if cfg.steps_per_epoch else dataset.skip(skip)

        valid = language_model_windows(encoded.valid, cfg.seq_len, cfg.batch_size, shuffle=False)
        return FitPlan(train_batches, steps, valid, monitor="val_loss", mode="min",
                       sample=self.sample_during_training(cfg, tokenizer))

    # ---- model --------------------------------------------------------------------------------
    def build(self, cfg, tokenizer: Tokenizer) -> keras.Model:
        keras.utils.set_random_seed(cfg.seed)
        policy = dtype_policy(cfg.precision)
        if cfg.arch == "transformer":
            if cfg.units % cfg.heads:
                raise UserError(f"--units {cfg.units} is not divisible by --heads {cfg.heads}",
                                fix="choose units a multiple of heads")
            model = TransformerLanguageModel(tokenizer.vocab_size, d_model=cfg.units, heads=cfg.heads,
                                             num_layers=cfg.layers, max_length=cfg.seq_len, dropout=cfg.dropout,
                                             positions=cfg.positions, dtype=policy, name="language_model")
        elif cfg.arch in ("rnn", "gru", "lstm"):
            model = RecurrentLanguageModel(tokenizer.vocab_size, cell=cfg.arch, units=cfg.units,
                                           num_layers=cfg.layers, dropout=cfg.dropout, dtype=policy,
                                           name="language_model")
        else:
            raise UserError(f"unknown architecture {cfg.arch!r}", fix=f"choose one of: {', '.join(self.architectures)}")
        model.build((None, cfg.seq_len))
        return model

    def loss_and_metrics(self, cfg, tokenizer):
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=PAD_ID), []

    # ---- use ----------------------------------------------------------------------------------
    def evaluate(self, run, source: str | None) -> dict[str, Any]:
        import tensorflow as tf

        cfg, tokenizer, model = run.settings, run.preprocessor, run.model
        if not source:
            raise UserError("no evaluation data given", fix="pass --data FILE")
        text = self._source(source, cfg, "evaluation data")
        corpus = encode_corpus(text, tokenizer)
        dataset = language_model_windows(corpus, cfg.seq_len, cfg.batch_size, shuffle=False)

        @tf.function
        def batch_nats(inputs, targets):
            logits = model(inputs, training=False)
            nats = keras.ops.sparse_categorical_crossentropy(targets, logits, from_logits=True)
            scored = keras.ops.cast(targets != PAD_ID, "float32")
            return keras.ops.sum(nats * scored), keras.ops.sum(scored)

        total_nats = tokens = 0.0
        for inputs, targets in dataset:
            nats, count = batch_nats(inputs, targets)
            total_nats += float(nats)
            tokens += float(count)
        return language_model_scores(total_nats, int(tokens), corpus.characters)

    def prompt_ids(self, tokenizer: Tokenizer, prompt: str) -> list[int]:
        # an empty prompt starts a new document, as after an end-of-document in training
        return tokenizer.encode(prompt) if prompt else [tokenizer.eos_id]

    def generation_config(self, tokenizer: Tokenizer, **options) -> decoding.GenerationConfig:
        options.setdefault("stop_ids", ())
        return decoding.GenerationConfig(**options)

    def sample(self, run, prompt: str = "", **options) -> list[str]:
        tokenizer = run.preprocessor
        config = self.generation_config(tokenizer, **options)
        outputs = decoding.generate(run.model, [self.prompt_ids(tokenizer, prompt)], config)[0]
        return [tokenizer.decode(ids) for ids in outputs]

    def stream(self, run, prompt: str = "", **options) -> Iterator[str]:
        """Yield text pieces as tokens are generated (one sample, no beam)."""
        tokenizer = run.preprocessor
        config = self.generation_config(tokenizer, **options)
        generated: list[int] = []
        shown = ""
        for token in decoding.stream(run.model, self.prompt_ids(tokenizer, prompt), config):
            generated.append(token)
            text = tokenizer.decode(generated)
            if len(text) > len(shown) and not text.endswith("\ufffd"):
                yield text[len(shown):]
                shown = text

    def predict(self, run, inputs: list[str], max_new_tokens: int = 100, temperature: float = 0.0,
                seed: int | None = None) -> Iterator[str]:
        """The continuation of each prompt (greedy unless a temperature is given)."""
        for prompt in inputs:
            yield self.sample(run, prompt, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)[0]

    def sample_during_training(self, cfg, tokenizer: Tokenizer):
        if not cfg.sample_tokens:
            return None
        config = decoding.GenerationConfig(max_new_tokens=cfg.sample_tokens, temperature=0.8, seed=cfg.seed)

        def sample(model) -> str:
            ids = decoding.generate(model, [[tokenizer.eos_id]], config)[0][0]
            return tokenizer.decode(ids)

        return sample

