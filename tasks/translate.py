"""Translation: learn p(y | x) from sentence pairs; report sacreBLEU BLEU and chrF; translate text.

Models: `--arch seq2seq`, a recurrent encoder-decoder (LSTM/GRU; the encoder's final state as the
context vector with `--attention none`, or Bahdanau/Luong attention over all encoder outputs), and
`--arch transformer`, the pre-LN Transformer encoder-decoder. Both are trained with teacher forcing and
label smoothing, and decode through seqtasks.decoding (greedy or beam search with a length penalty).

Data: `--src FILE --tgt FILE` (line-aligned), `--data FILE.tsv` (source<TAB>target) or
`--data tfds:NAME[:SPLIT] --src-lang L --tgt-lang L`. Pairs longer than the length limits are dropped
from training (and counted); batches hold sentences of similar length.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator

import keras

from seqtasks.batching import bucketed_epochs, fit_batch_size
from seqtasks.config import demo_settings
from seqtasks.errors import UserError
from seqtasks.generation import GeneratesText, batches
from seqtasks.losses import SmoothedCrossEntropy
from seqtasks.metrics import bleu_and_chrf
from seqtasks.models.seq2seq import RecurrentSeq2Seq
from seqtasks.models.transformer_seq2seq import TransformerSeq2Seq
from seqtasks.readers.parallel import ParallelSource, open_parallel_source
from seqtasks.tasks.base import Task
from seqtasks.tasks.cards.translate import TranslationCard, TranslationConfig  # noqa: F401
from seqtasks.tokenizers import EOS_ID
from seqtasks.training import FitPlan, dtype_policy, unigram_log_prior
from seqtasks.translation_data import TranslationVocab, pair_dataset, pair_signature, training_pairs
from seqtasks.translator import DECODE_BATCH, Hypothesis, Translator, prediction, prediction_lines


@dataclasses.dataclass
class TranslationData:
    train: ParallelSource
    valid: ParallelSource | None


def bundled_pairs(split: str) -> Path:
    from seqtasks.data import bundled_path

    return bundled_path(f"toy_translation/{split}.tsv.gz")


class TranslationTask(GeneratesText, TranslationCard, Task):
    streams_predictions = True

    def default_overrides(self) -> dict[str, Any]:
        return {"data": str(bundled_pairs("train")), "valid": str(bundled_pairs("valid")),
                **demo_settings(self.name)}  # the recipe: configs/demo-translate.toml

    # ---- data ---------------------------------------------------------------------------------
    def read(self, cfg) -> TranslationData:
        if not (cfg.src or cfg.tgt or cfg.data):
            raise UserError("no training data given", fix="pass --src FILE --tgt FILE, or --data FILE.tsv|tfds:NAME")
        tfds = dict(source_lang=cfg.src_lang or None, target_lang=cfg.tgt_lang or None, tfds_dir=cfg.tfds_dir or None)
        train = open_parallel_source(source=cfg.src or None, target=cfg.tgt or None, table=cfg.data or None, **tfds)
        valid = None
        if cfg.valid or cfg.valid_src or cfg.valid_tgt:
            valid = open_parallel_source(source=cfg.valid_src or None, target=cfg.valid_tgt or None,
                                         table=cfg.valid or None, role="validation data",
                                         flags=("--valid-src", "--valid-tgt", "--valid"), **tfds)
        return TranslationData(train, valid)

    def describe_data(self, data: TranslationData) -> dict[str, Any]:
        described = {"train": data.train.describe()}
        if data.valid is not None:
            described["valid"] = data.valid.describe()
        return described

    def prepare(self, cfg, data: TranslationData) -> TranslationVocab:
        return TranslationVocab.train(data.train, cfg)

    def load_preprocessor(self, directory: Path) -> TranslationVocab:
        return TranslationVocab.load(directory)

    def plan(self, cfg, vocab: TranslationVocab, data: TranslationData) -> FitPlan:
        train, valid = training_pairs(data.train, data.valid, vocab, cfg.valid_fraction, cfg.seed,
                                      (cfg.max_source_len, cfg.max_target_len))
        batch_size = fit_batch_size(cfg.batch_size, len(train), "sentence pairs")
        train_batches, steps = bucketed_epochs(train.lengths(), batch_size, cfg.seed, cfg.steps_per_epoch, train.batch,
                                               pair_signature())
        sources = [vocab.source.decode(valid.source_flat[valid.source_offsets[i]:valid.source_offsets[i + 1]])
                   for i in range(min(cfg.sample_examples, len(valid)))]
        # the recurrent model's output layer has a bias (the Transformer's output is the tied embedding)
        prior = unigram_log_prior(train.target_flat, vocab.target.vocab_size, stops=len(train), stop_id=EOS_ID) \
            if cfg.arch == "seq2seq" else None
        return FitPlan(train_batches, steps, pair_dataset(valid, cfg.batch_size),
                       monitor="val_loss", mode="min", sample=self._progress_sample(cfg, vocab, sources),
                       output_log_prior=prior)

    def _progress_sample(self, cfg, vocab: TranslationVocab, sources: list[str]):
        if not sources:
            return None

        def sample(model) -> str:
            translations = self.translator(cfg, model, vocab).translate(sources)
            return "\n".join(f"  {source}\n  -> {hyps[0].text}" for source, hyps in zip(sources, translations))

        return sample

    # ---- model --------------------------------------------------------------------------------
    def build(self, cfg, vocab: TranslationVocab) -> keras.Model:
        keras.utils.set_random_seed(cfg.seed)
        policy = dtype_policy(cfg.precision)
        sizes = dict(source_vocab=vocab.source.vocab_size, target_vocab=vocab.target.vocab_size,
                     shared_embeddings=cfg.shared_embeddings and vocab.joint, dropout=cfg.dropout, dtype=policy,
                     name="translation_model")
        if cfg.arch == "transformer":
            model = TransformerSeq2Seq(d_model=cfg.units, heads=cfg.heads, encoder_layers=cfg.layers,
                                       decoder_layers=cfg.layers, hidden=cfg.ffn or None, positions=cfg.positions,
                                       max_length=max(cfg.max_source_len, cfg.max_target_len + 1),
                                       tied_output=cfg.tied_output, **sizes)
        else:
            model = RecurrentSeq2Seq(cell=cfg.cell, units=cfg.units, num_layers=cfg.layers,
                                     embedding_dim=cfg.embedding_dim or None, attention=cfg.attention,
                                     attention_units=cfg.attention_units or None, bidirectional=cfg.bidirectional,
                                     input_feeding=cfg.input_feeding, **sizes)
        model.build(((None, None), (None, None)))
        return model

    def loss_and_metrics(self, cfg, vocab):
        return SmoothedCrossEntropy(cfg.label_smoothing), []

    # ---- use: generate_batch and stream (seqtasks.generation) take source sentences ----------------
    def conditioning(self, cfg, model, vocab: TranslationVocab) -> Translator:
        return self.translator(cfg, model, vocab)

    def translator(self, cfg, model, vocab: TranslationVocab, length_penalty: float | None = None) -> Translator:
        learned = cfg.arch == "transformer" and cfg.positions == "learned"
        return Translator(model, vocab, max_new_tokens=cfg.max_target_len,
                          max_source_length=cfg.max_source_len if learned else None,
                          length_penalty=cfg.length_penalty if length_penalty is None else length_penalty)

    def evaluate(self, run, source: str | None, src: str | None = None, tgt: str | None = None,
                 beam: int | None = None, length_penalty: float | None = None) -> dict[str, Any]:
        """sacreBLEU BLEU and chrF of the run's translations of --src against --tgt (or a --data TSV)."""
        import time

        cfg = run.settings
        if not (source or src or tgt):
            raise UserError("no evaluation data given", fix="pass --src FILE --tgt FILE, or --data FILE.tsv")
        pairs = list(open_parallel_source(source=src, target=tgt, table=source, role="evaluation data",
                                          source_lang=cfg.src_lang or None, target_lang=cfg.tgt_lang or None,
                                          tfds_dir=cfg.tfds_dir or None).pairs())
        width = cfg.beam if beam is None else beam
        start = time.monotonic()
        translator = self.translator(cfg, run.model, run.preprocessor, length_penalty)
        translations = translator.translate([s for s, _ in pairs], width, progress=run.progress)
        seconds = time.monotonic() - start
        scores = bleu_and_chrf([hyps[0].text for hyps in translations], [[t for _, t in pairs]])
        return {**scores, "sentences": len(pairs), "beam": width, "length_penalty": translator.length_penalty,
                "sentences_per_second": round(len(pairs) / max(seconds, 1e-9), 2)}

    def predict(self, run, inputs: Iterable[str], beam: int | None = None, n_best: int | None = None,
                alignments: bool = False, plot: str | None = None,
                max_new_tokens: int | None = None) -> Iterator[Any]:
        """A translation per input (a list of n_best hypotheses with --n-best; with alignments a dict).

        A list of inputs is translated in batches; any other iterable (stdin) one sentence at a time,
        so each translation appears as soon as its line is read.
        """
        cfg = run.settings
        translator = self.translator(cfg, run.model, run.preprocessor)
        if max_new_tokens is not None:
            translator.max_new_tokens = max_new_tokens
        count = n_best or 1
        width = beam if beam is not None else max(cfg.beam, count)
        plotted = 0
        for chunk in batches(inputs, DECODE_BATCH if isinstance(inputs, (list, tuple)) else 1):
            real = [s for s in chunk if s.strip()]
            translated = iter(translator.translate(real, width, count) if real else [])
            for sentence in chunk:
                if not sentence.strip():  # a blank line stays a blank line
                    yield prediction([Hypothesis("", [], 0.0)] * count, n_best is not None, alignments)
                    continue
                hypotheses = next(translated)
                for hypothesis in hypotheses if alignments else ():
                    translator.align(sentence, hypothesis)
                if plot:
                    plotted += 1
                    path = Path(plot) if plotted == 1 else Path(plot).with_stem(f"{Path(plot).stem}-{plotted}")
                    print(f"attention map: {translator.plot(sentence, hypotheses[0], path)}", file=sys.stderr)
                yield prediction(hypotheses, n_best is not None, alignments)

    def format_prediction(self, result: Any) -> str:
        return prediction_lines(result)

