"""Conditional generation: a decoder-only model learns p(completion | prompt) from prompt/completion pairs.

Each pair becomes one sequence

    prompt ids + [SEP] + completion ids + [EOS]        SEP = the tokenizer's BOS id, "<s>"

The separator is BOS because every tokenizer has it, encode() never produces it (so no text can fake
it), and an lm run's tokenizer already holds it: `--from RUN` fine-tunes a language model on pairs
without changing its vocabulary. The model is the lm task's (same flags, same classes); the loss is
the next-token cross-entropy on the completion and its EOS only: the targets of prompt positions (and
of the separator) are PAD, which the loss ignores. Batches hold pairs of similar length (bucketed),
padded at the end. Pairs longer than seq_len + 1 tokens lose the start of their prompt (then the end
of their completion).

predict / sample feed prompt ids + [SEP] to the decoding engine and stop at EOS; evaluate reports
exact match, chrF (sacreBLEU) and the loss on completions.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterator, Sequence

from seqtasks.batching import bucketed_epochs, fit_batch_size, holdout_items
from seqtasks.completion_data import Pair, encode_pairs, evaluation_dataset, pair_batch, pair_signature, separator_id
from seqtasks.config import demo_settings
from seqtasks.errors import UserError
from seqtasks.generation import TextGenerator, TextPrompts
from seqtasks.metrics import bleu_and_chrf
from seqtasks.model_files import load_model
from seqtasks.readers.pairs import open_pair_source
from seqtasks.runs import RunDirectory
from seqtasks.tokenizers import Tokenizer, train_tokenizer
from seqtasks.training import FitPlan
from seqtasks.tasks.cards.generate import ConditionalGenerationCard, ConditionalGenerationConfig  # noqa: F401
from seqtasks.tasks.lm import LanguageModelTask, scored_nats

SHAPE_SETTINGS = ("arch", "tokenizer", "vocab_size", "spm_model_type", "layers", "units", "heads", "positions",
                  "activation", "seq_len")


@dataclasses.dataclass
class PairData:
    train: list[Pair]
    valid: list[Pair]
    sources: dict[str, Any]


def bundled_pairs() -> Path:
    from seqtasks.data import bundled_path

    return bundled_path("generation_example.jsonl")


class ConditionalGenerationTask(ConditionalGenerationCard, LanguageModelTask):
    continues_prompt = False  # the output is the completion, not a continuation of the prompt's text

    def __init__(self):
        self._parent_model = None

    def default_overrides(self) -> dict[str, Any]:
        return {"data": str(bundled_pairs()), **demo_settings(self.name)}  # the recipe: configs/demo-generate.toml

    # ---- data ---------------------------------------------------------------------------------
    def read(self, cfg) -> PairData:
        if not cfg.data:
            raise UserError("no training pairs given", fix="pass --data PAIRS.jsonl|PAIRS.tsv")
        train_source = open_pair_source(cfg.data, "training data")
        train = list(train_source.pairs())
        sources = {"train": train_source.describe()}
        if cfg.valid:
            valid_source = open_pair_source(cfg.valid, "validation data")
            valid = list(valid_source.pairs())
            sources["valid"] = valid_source.describe()
        else:
            train, valid = holdout_items(train, cfg.valid_fraction, cfg.seed, what="pairs", where=cfg.data)
        return PairData(train, valid, sources)

    def describe_data(self, data: PairData) -> dict[str, Any]:
        return {split: {**described, "pairs": len(getattr(data, split))} for split, described in data.sources.items()}

    def prepare(self, cfg, data: PairData) -> Tokenizer:
        if cfg.from_run:
            return self._start_from(cfg)
        texts = (f"{prompt}\n{completion}" for prompt, completion in data.train)
        return train_tokenizer(cfg.tokenizer, texts, vocab_size=cfg.vocab_size or None, model_type=cfg.spm_model_type)

    def _start_from(self, cfg) -> Tokenizer:
        """--from RUN: take RUN's tokenizer, model shape and weights (checked now, before the run exists).
        The run folder is read directly (a task does not go through the API above it): an lm and a
        generate run keep their tokenizer and model the same way."""
        parent = RunDirectory.open(cfg.from_run)
        record = parent.read_config()
        if record.get("task") not in ("lm", "generate"):
            found = f"a {record['task']} run" if record.get("task") else "not a seqtasks run"
            raise UserError(f"--from needs an lm or generate run; this is {found}",
                            cfg.from_run, "train a language model first: seqtasks train lm ...")
        defaults = {f.name: f.default for f in dataclasses.fields(self.Config)}
        for key in SHAPE_SETTINGS:
            inherited, given = record["settings"].get(key), getattr(cfg, key)
            if given not in (defaults[key], inherited):
                raise UserError(f"--{key.replace('_', '-')} {given!r} differs from the --from run's {inherited!r}",
                                cfg.from_run, f"drop --{key.replace('_', '-')}: the model shape comes from the run")
            setattr(cfg, key, inherited)
        self._parent_model = load_model(parent.model_file())
        print(f"starting from {cfg.from_run}: its tokenizer, weights and shape "
              f"({cfg.arch}, {cfg.layers} x {cfg.units}, seq_len {cfg.seq_len})", flush=True)
        return parent.load_tokenizer(self.load_preprocessor)

    def initial_model(self, cfg):
        return self._parent_model if cfg.from_run else None

    def plan(self, cfg, tokenizer: Tokenizer, data: PairData) -> FitPlan:
        train = encode_pairs(tokenizer, data.train, cfg.seq_len)
        valid = encode_pairs(tokenizer, data.valid, cfg.seq_len)
        if train.truncated:
            print(f"note: {train.truncated} of {len(train)} training pairs are longer than --seq-len "
                  f"{cfg.seq_len}: cut to fit, the start of the prompt first")
        batch_size = fit_batch_size(cfg.batch_size, len(train), "pairs")
        train_batches, steps = bucketed_epochs(train.lengths, batch_size, cfg.seed, cfg.steps_per_epoch,
                                               lambda indices: pair_batch(train, indices, cfg.seq_len), pair_signature())
        return FitPlan(train_batches, steps, evaluation_dataset(valid, cfg.batch_size, cfg.seq_len),
                       monitor="val_loss", mode="min", sample=self._progress_sample(cfg, tokenizer, data.valid))

    def _progress_sample(self, cfg, tokenizer: Tokenizer, pairs: list[Pair]):
        shown = pairs[:cfg.sample_examples]
        if not shown:
            return None

        def sample(model) -> str:
            generator = TextGenerator(model, self.conditioning(cfg, model, tokenizer))
            outputs = generator.generate_batch([p for p, _ in shown], temperature=0.0)
            return "\n".join(f"{prompt!r} -> {output[0]!r} (expected {expected!r})"
                             for (prompt, expected), output in zip(shown, outputs))

        return sample

    def after_training(self, run, quiet: bool) -> list[str]:
        if quiet:
            return []
        return ["", f'next: seqtasks predict {run.path} "PROMPT"   (the bundled example: "sort: owl moon tea"); '
                    f"seqtasks evaluate {run.path} --data PAIRS"]

    def sample_during_training(self, cfg, tokenizer):
        return None  # plan() builds the per-epoch sample: it needs the validation pairs

    # ---- generation ---------------------------------------------------------------------------
    def conditioning(self, cfg, model, tokenizer: Tokenizer) -> TextPrompts:
        # completions were trained to end (at EOS) within seq_len tokens
        return TextPrompts(tokenizer, suffix=(separator_id(tokenizer),), stop_ids=(tokenizer.eos_id,),
                           defaults={"max_new_tokens": cfg.seq_len})

    def generate_batch(self, run, prompts: Sequence[str], stop: Sequence[str] = (), **options) -> list[list[str]]:
        if options.get("beam_width", 1) > 1:  # beam search cannot slide a window: stay within the context
            conditioning = self.conditioning(run.settings, run.model, run.preprocessor)
            longest = max((len(conditioning.prompt(p).ids) for p in prompts), default=1)
            wanted = options.get("max_new_tokens", run.settings.seq_len)
            options["max_new_tokens"] = max(min(wanted, run.model.capacity(longest + wanted) - longest), 1)
        return super().generate_batch(run, prompts, stop, **options)

    def predict(self, run, inputs: list[str], max_new_tokens: int | None = None, temperature: float = 0.0,
                seed: int | None = None, beam: int | None = None) -> Iterator[str]:
        """The completion of each prompt (greedy unless a temperature or a beam is given; ends at EOS)."""
        return super().predict(run, inputs, max_new_tokens or run.settings.seq_len, temperature, seed, beam)

    # ---- evaluation ---------------------------------------------------------------------------
    def evaluate(self, run, source: str | None, beam: int | None = None) -> dict[str, Any]:
        """exact_match (greedy or beam completion == reference as the tokenizer writes it), chrF, and the
        loss (nats per completion token, EOS included) with teacher forcing."""
        if not source:
            raise UserError("no evaluation pairs given", fix="pass --data PAIRS.jsonl|PAIRS.tsv")
        cfg, tokenizer = run.settings, run.preprocessor
        pairs = list(open_pair_source(source, "evaluation data").pairs())  # bad data fails before the model loads
        nats, scored = scored_nats(run.model, evaluation_dataset(encode_pairs(tokenizer, pairs, cfg.seq_len),
                                                             cfg.batch_size, cfg.seq_len), run.progress)
        options = {"temperature": 0.0} if beam is None else {"beam_width": beam}
        outputs = [texts[0] for texts in self.generate_batch(run, [p for p, _ in pairs], **options)]
        references = [tokenizer.decode(tokenizer.encode(c)) for _, c in pairs]
        scores = bleu_and_chrf(outputs, [references])
        return {"exact_match": sum(o == r for o, r in zip(outputs, references)) / len(pairs),
                "chrf": scores["chrf"], "loss": nats / max(scored, 1.0), "examples": len(pairs),
                "chrf_signature": scores["chrf_signature"]}

