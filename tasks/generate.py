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

import numpy as np

from seqtasks.config import demo_settings
from seqtasks.errors import UserError
from seqtasks.generation import TextGenerator, TextPrompts
from seqtasks.metrics import bleu_and_chrf
from seqtasks.pipeline import fit_batch_size, length_bucketed_batches
from seqtasks.readers.pairs import open_pair_source
from seqtasks.tokenizers import PAD_ID, Tokenizer, train_tokenizer
from seqtasks.training import FitPlan
from seqtasks.tasks.cards.generate import ConditionalGenerationCard, ConditionalGenerationConfig  # noqa: F401
from seqtasks.tasks.lm import LanguageModelTask, scored_nats

Pair = tuple[str, str]
_PASSES_PER_EPOCH = 1_000_003  # separates the shuffles of (epoch, pass) when an epoch takes several passes
PAD_MULTIPLE = 8  # batch lengths are rounded up to this: fewer distinct shapes to trace
SHAPE_SETTINGS = ("arch", "tokenizer", "vocab_size", "spm_model_type", "layers", "units", "heads", "positions",
                  "activation", "seq_len")


@dataclasses.dataclass
class PairData:
    train: list[Pair]
    valid: list[Pair]
    sources: dict[str, Any]


@dataclasses.dataclass
class EncodedPairs:
    """Token sequences (prompt + SEP + completion + EOS) and where each one's scored targets begin."""

    sequences: list[np.ndarray]
    scored_from: np.ndarray  # target index of the first completion token (= prompt length)
    truncated: int           # pairs cut to fit seq_len

    def __len__(self) -> int:
        return len(self.sequences)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(s) - 1 for s in self.sequences])  # model inputs per sequence


def bundled_pairs() -> Path:
    from seqtasks.data import bundled_path

    return bundled_path("generation_example.jsonl")


def separator_id(tokenizer: Tokenizer) -> int:
    return tokenizer.bos_id


def encode_pairs(tokenizer: Tokenizer, pairs: Sequence[Pair], seq_len: int) -> EncodedPairs:
    """prompt + [SEP] + completion + [EOS], at most seq_len + 1 tokens (seq_len model inputs)."""
    prompts = tokenizer.encode_batch([p for p, _ in pairs])
    completions = tokenizer.encode_batch([c for _, c in pairs])
    sequences, scored_from, truncated = [], [], 0
    for prompt, completion in zip(prompts, completions):
        room = seq_len - 1 - min(len(completion), seq_len - 1)  # prompt tokens that fit beside SEP and EOS
        truncated += len(prompt) > room or len(completion) > seq_len - 1
        prompt, completion = prompt[max(len(prompt) - room, 0):] if room else [], completion[:seq_len - 1]
        sequences.append(np.array([*prompt, separator_id(tokenizer), *completion, tokenizer.eos_id], np.int32))
        scored_from.append(len(prompt))
    return EncodedPairs(sequences, np.array(scored_from, np.int64), truncated)


def pair_batch(encoded: EncodedPairs, indices: Sequence[int], seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) (batch, time) int32, padded at the end with PAD; prompt targets are PAD too."""
    longest = max(len(encoded.sequences[i]) - 1 for i in indices)
    width = min(-(-longest // PAD_MULTIPLE) * PAD_MULTIPLE, seq_len)
    tokens = np.full((len(indices), width + 1), PAD_ID, np.int32)
    for row, i in enumerate(indices):
        sequence = encoded.sequences[i]
        tokens[row, :len(sequence)] = sequence
    inputs, targets = tokens[:, :-1], tokens[:, 1:].copy()
    positions = np.arange(width)[None, :]
    targets[positions < encoded.scored_from[np.asarray(indices)][:, None]] = PAD_ID  # only completions count
    return inputs, targets


def epoch_batches(lengths: np.ndarray, batch_size: int, count: int, seed: int, epoch: int) -> list[np.ndarray]:
    """`count` length-bucketed batches of pair indices for one epoch, from as many passes as it takes.

    Pass k of epoch e is pipeline.length_bucketed_batches with its own (seed, e, k) stream, so the
    batches depend only on (seed, epoch) and a resumed run sees the same ones.
    """
    batches: list[np.ndarray] = []
    passes = 0
    while len(batches) < count:
        stream = epoch * _PASSES_PER_EPOCH + passes
        batches += length_bucketed_batches(lengths, batch_size, shuffle=True, seed=seed, epoch=stream)
        passes += 1
    return batches[:count]


def pair_dataset(encoded: EncodedPairs, batches: list[np.ndarray], seq_len: int):
    import tensorflow as tf

    def generate():
        for indices in batches:
            yield pair_batch(encoded, indices, seq_len)

    spec = tf.TensorSpec((None, None), tf.int32)
    dataset = tf.data.Dataset.from_generator(generate, output_signature=(spec, spec))
    return dataset.apply(tf.data.experimental.assert_cardinality(len(batches))).prefetch(tf.data.AUTOTUNE)


def evaluation_dataset(encoded: EncodedPairs, batch_size: int, seq_len: int):
    """Every pair once, in length order (little padding)."""
    return pair_dataset(encoded, length_bucketed_batches(encoded.lengths, batch_size, shuffle=False), seq_len)


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
            held_out = int(round(len(train) * cfg.valid_fraction))
            if held_out < 1 or held_out >= len(train):
                raise UserError(f"cannot hold out {cfg.valid_fraction:g} of {len(train)} pairs for validation",
                                cfg.data, "give more pairs, change --valid-fraction, or pass --valid PAIRS")
            order = np.random.default_rng(cfg.seed).permutation(len(train))
            valid = [train[i] for i in order[:held_out]]
            train = [train[i] for i in sorted(order[held_out:])]
        return PairData(train, valid, sources)

    def describe_data(self, data: PairData) -> dict[str, Any]:
        return {split: {**described, "pairs": len(getattr(data, split))} for split, described in data.sources.items()}

    def prepare(self, cfg, data: PairData) -> Tokenizer:
        if cfg.from_run:
            return self._start_from(cfg)
        texts = (f"{prompt}\n{completion}" for prompt, completion in data.train)
        return train_tokenizer(cfg.tokenizer, texts, vocab_size=cfg.vocab_size or None, model_type=cfg.spm_model_type)

    def _start_from(self, cfg) -> Tokenizer:
        """--from RUN: take RUN's tokenizer, model shape and weights (checked now, before the run exists)."""
        from seqtasks.api import Run

        parent = Run(cfg.from_run)
        if parent.task.name not in ("lm", "generate"):
            raise UserError(f"--from needs an lm or generate run; this is a {parent.task.name} run", cfg.from_run,
                            "train a language model first: seqtasks train lm ...")
        defaults = {f.name: f.default for f in dataclasses.fields(self.Config)}
        for key in SHAPE_SETTINGS:
            inherited, given = parent.record["settings"].get(key), getattr(cfg, key)
            if given not in (defaults[key], inherited):
                raise UserError(f"--{key.replace('_', '-')} {given!r} differs from the --from run's {inherited!r}",
                                cfg.from_run, f"drop --{key.replace('_', '-')}: the model shape comes from the run")
            setattr(cfg, key, inherited)
        self._parent_model = parent.model
        print(f"starting from {cfg.from_run}: its tokenizer, weights and shape "
              f"({cfg.arch}, {cfg.layers} x {cfg.units}, seq_len {cfg.seq_len})", flush=True)
        return parent.preprocessor

    def initial_model(self, cfg):
        return self._parent_model if cfg.from_run else None

    def plan(self, cfg, tokenizer: Tokenizer, data: PairData) -> FitPlan:
        train = encode_pairs(tokenizer, data.train, cfg.seq_len)
        valid = encode_pairs(tokenizer, data.valid, cfg.seq_len)
        if train.truncated:
            print(f"note: {train.truncated} of {len(train)} training pairs are longer than --seq-len "
                  f"{cfg.seq_len}: cut to fit, the start of the prompt first")
        batch_size = fit_batch_size(cfg.batch_size, len(train), "pairs")
        steps = cfg.steps_per_epoch or -(-len(train) // batch_size)  # default: one pass

        def train_batches(epoch: int, skip: int):
            return pair_dataset(train, epoch_batches(train.lengths, batch_size, steps, cfg.seed, epoch)[skip:],
                                cfg.seq_len)

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
                                                             cfg.batch_size, cfg.seq_len))
        options = {"temperature": 0.0} if beam is None else {"beam_width": beam}
        outputs = [texts[0] for texts in self.generate_batch(run, [p for p, _ in pairs], **options)]
        references = [tokenizer.decode(tokenizer.encode(c)) for _, c in pairs]
        scores = bleu_and_chrf(outputs, [references])
        return {"exact_match": sum(o == r for o, r in zip(outputs, references)) / len(pairs),
                "chrf": scores["chrf"], "loss": nats / max(scored, 1.0), "examples": len(pairs),
                "chrf_signature": scores["chrf_signature"]}

