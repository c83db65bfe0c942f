"""One text-generation front-end over the decoding engine, for lm, generate, translate and caption.

    input (a prompt, a source sentence, an image) --Conditioning--> prompt ids + context --engine--> ids --> text

A task says only how its inputs reach the engine, by a `Conditioning`: the prompt ids of an input (a
language model's prompt tokens; [BOS] for a translation or captioning decoder), what the context of
a batch of inputs is (nothing; the encoder's memory of the source sentences; the image grids), the
ids that end an output, the tokenizer that writes ids as text, and the generation options its
outputs need by default. `TextGenerator` does the rest, the same way for every task:

- options -> GenerationConfig: GenerationConfig's fields, with `beam_width=1` meaning greedy (as
  `top_k=1` does), the task's stop ids, and the ids of the one-character stop strings the tokenizer
  can stop at exactly (`decoding.stop_string_ids`);
- batching: inputs are decoded `batch_size` at a time, in order of their source's length (stable:
  inputs without a source, or with sources of one length, keep their order), so that a batch of
  source sentences holds little padding; outputs come back in input order;
- beam search or sampling and n-best: as the config says (the engine's `generate_with_scores`);
- stop strings: the text is cut before the first one (`decoding.cut_at_stop`);
- streaming: `stream_text` turns the engine's token stream into text pieces that join to exactly the
  text `generate` gives, decoding each new token over a short window of ids (`IncrementalText`), so
  a long stream costs time linear in its length.

`GeneratesText` gives a task the members of the Generative protocol (generate_batch, stream,
continues_prompt) from its `conditioning(settings, model, preprocessor)`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Protocol, Sequence

import numpy as np

from seqtasks import decoding
from seqtasks.errors import UserError
from seqtasks.progress import Progress
from seqtasks.tokenizers import Tokenizer

__all__ = ["Prompt", "Conditioning", "TextPrompts", "Generated", "TextGenerator", "GeneratesText", "IncrementalText",
           "stream_text", "generation_config", "batches"]

_INCOMPLETE = "\ufffd"  # what a tokenizer writes for the first bytes of a character still being generated


@dataclass(frozen=True)
class Prompt:
    """One input as the engine reads it."""

    ids: Sequence[int]  # the decoder's first tokens (a language model's prompt; [BOS] for seq2seq)
    source: Any = None  # what Conditioning.context encodes for this input (source ids, pixels); None: no context


class Conditioning(Protocol):
    """How a task's inputs reach the engine, and how the engine's ids become text."""

    tokenizer: Tokenizer          # writes output ids as text
    stop_ids: tuple[int, ...]     # ids that end an output (not part of it)
    batch_size: int               # inputs decoded together (bounded memory)

    @property
    def defaults(self) -> dict[str, Any]:
        """Generation options the task's outputs need unless the caller gives them (e.g. max_new_tokens)."""

    def prompt(self, item: Any) -> Prompt:
        """One input -> its prompt ids and source."""

    def context(self, sources: list[Any]) -> tuple | None:
        """The sources of a batch -> the engine's context, one row per source (see seqtasks.decoding)."""


@dataclass
class TextPrompts:
    """The Conditioning of a decoder-only model: a prompt is text, encoded, followed by `suffix` (the
    generate task's separator); an empty prompt is the end-of-document id, as a new document starts."""

    tokenizer: Tokenizer
    suffix: tuple[int, ...] = ()
    stop_ids: tuple[int, ...] = ()
    batch_size: int = 64
    defaults: dict[str, Any] = dataclasses.field(default_factory=dict)

    def prompt(self, item: str) -> Prompt:
        ids = (self.tokenizer.encode(item) if item else []) + list(self.suffix)
        return Prompt(ids or [self.tokenizer.eos_id])

    def context(self, sources: list[Any]) -> None:
        return None


@dataclass
class Generated:
    """One output: its text (cut at the first stop string), its ids (without the stop id), its score
    (sum of log p for greedy and sampling; the length-normalized beam score for beam search)."""

    text: str
    ids: list[int]
    score: float


def generation_config(tokenizer: Tokenizer, stop_ids: Sequence[int] = (), stop: Sequence[str] = (),
                      **options) -> decoding.GenerationConfig:
    """A GenerationConfig from user options: GenerationConfig's fields, plus `stop` strings.

    An explicit beam_width of 1 is greedy decoding, as top_k=1 is. The config stops at `stop_ids`
    (the task's), at any `stop_ids` option, and at the ids of one-character stop strings that the
    tokenizer writes alone (stopping there equals cutting the text there).
    """
    if options.get("beam_width") == 1:
        options["temperature"] = 0.0
    ids = tuple(options.pop("stop_ids", ())) + tuple(stop_ids) + decoding.stop_string_ids(tokenizer, stop)
    try:
        return decoding.GenerationConfig(stop_ids=tuple(dict.fromkeys(ids)), **options)
    except TypeError as error:  # an option name GenerationConfig does not know
        known = ", ".join(f.name for f in dataclasses.fields(decoding.GenerationConfig))
        raise UserError(f"unknown generation option ({error})", "generation", f"use: stop, {known}") from None


class TextGenerator:
    """A model and a task's Conditioning -> generated text (see the module docstring)."""

    def __init__(self, model, conditioning: Conditioning):
        self.model, self.conditioning = model, conditioning

    def config(self, stop: Sequence[str] = (), **options) -> decoding.GenerationConfig:
        """The GenerationConfig of these options, over the task's defaults."""
        conditioning = self.conditioning
        return generation_config(conditioning.tokenizer, conditioning.stop_ids, stop,
                                 **{**conditioning.defaults, **options})

    def generate(self, inputs: Sequence[Any], config: decoding.GenerationConfig, stop: Sequence[str] = (),
                 progress: Progress | None = None) -> list[list[Generated]]:
        """For each input, num_return_sequences outputs (best first for beam search); `progress` hears of
        the inputs as their batches are decoded."""
        conditioning = self.conditioning
        prompts = [conditioning.prompt(item) for item in inputs]
        order = np.argsort([0 if p.source is None else len(p.source) for p in prompts], kind="stable")
        results: list[list[Generated]] = [[] for _ in prompts]
        if progress is not None:
            progress.expect(len(prompts))
        for members in batches(order, conditioning.batch_size):
            sources = [prompts[i].source for i in members]
            context = None if sources[0] is None else conditioning.context(sources)
            outputs, scores = decoding.generate_with_scores(self.model, [prompts[i].ids for i in members], config,
                                                            context)
            for i, sequences, sequence_scores in zip(members, outputs, scores):
                results[i] = [Generated(decoding.cut_at_stop(conditioning.tokenizer.decode(ids), stop)[0],
                                        list(ids), score) for ids, score in zip(sequences, sequence_scores)]
            if progress is not None:
                progress.advance(len(members))
        return results

    def generate_batch(self, inputs: Sequence[Any], stop: Sequence[str] = (), progress: Progress | None = None,
                       **options) -> list[list[str]]:
        """For each input, num_return_sequences generated texts."""
        config = self.config(stop, **options)
        return [[g.text for g in outputs] for outputs in self.generate(inputs, config, stop, progress)]

    def stream(self, item: Any, stop: Sequence[str] = (), **options) -> Iterator[str]:
        """The text of one greedy or sampled output, piece by piece as its tokens are generated; the
        pieces join to generate_batch's text for the same options and seed."""
        config = self.config(stop, **options)
        prompt = self.conditioning.prompt(item)
        context = None if prompt.source is None else self.conditioning.context([prompt.source])
        tokens = decoding.stream(self.model, prompt.ids, config, context)  # bad settings fail here, not later
        return stream_text(tokens, self.conditioning.tokenizer, stop)


class GeneratesText:
    """A task's Generative members (generate_batch, stream, continues_prompt), written once over
    TextGenerator: the task supplies conditioning(settings, model, preprocessor)."""

    continues_prompt: bool = False  # whether an output continues the prompt's text (`seqtasks sample` prints both)

    def conditioning(self, cfg, model, preprocessor) -> Conditioning:
        raise NotImplementedError

    def text_generator(self, run) -> TextGenerator:
        return TextGenerator(run.model, self.conditioning(run.settings, run.model, run.preprocessor))

    def generate_batch(self, run, prompts: Sequence[Any], stop: Sequence[str] = (), **options) -> list[list[str]]:
        """For each prompt, num_return_sequences generated texts. Options: GenerationConfig's fields, and
        `stop`: strings that end a text (it is cut before the first one)."""
        return self.text_generator(run).generate_batch(list(prompts), stop, run.progress, **options)

    def stream(self, run, prompt: Any = "", stop: Sequence[str] = (), **options) -> Iterator[str]:
        """One generated text (no beam, one sample) piece by piece as it is generated; ends at a stop string."""
        return self.text_generator(run).stream(prompt, stop, **options)

    def serving_module(self, run):
        """The exported graph (seqtasks.serving_generation): predict's defaults (the run's beam, if any) and
        greedy or seeded sampling with per-request settings."""
        from seqtasks.serving_generation import GenerationServing

        conditioning = self.conditioning(run.settings, run.model, run.preprocessor)
        defaults = {**conditioning.defaults, "beam_width": getattr(run.settings, "beam", 1)}
        return GenerationServing(run.model, conditioning, defaults)


class IncrementalText:
    """The text of a growing sequence of ids, returned piece by piece as ids are added.

    Each id is decoded together with the ids since the last piece but one (a window of a few ids),
    and the new piece is what that decoding adds to the decoding of the window's older part. Both
    decodings start at the same id, so what a tokenizer does at the start of a text (SentencePiece
    drops the space of a first "▁word", the word tokenizer puts no space before a first word) is
    the same in both and cancels; a piece that would end in an incomplete character waits for the
    ids that complete it. The pieces join to tokenizer.decode(all ids), at a cost linear in their
    number, where decoding everything at every id would be quadratic.
    """

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.window: list[int] = []  # the ids of the last piece, then those not yet written
        self.written = 0             # how many of the window's ids the pieces so far include

    def add(self, token: int) -> str:
        """The text this id completes ("" while a character or word is still incomplete)."""
        self.window.append(int(token))
        before = self.tokenizer.decode(self.window[:self.written])
        text = self.tokenizer.decode(self.window)
        if len(text) <= len(before) or text.endswith(_INCOMPLETE):
            return ""
        del self.window[:self.written]
        self.written = len(self.window)
        return text[len(before):]

    def flush(self) -> str:
        """The text of the ids still held back (an incomplete character at the end of the output)."""
        before = self.tokenizer.decode(self.window[:self.written])
        text = self.tokenizer.decode(self.window)
        del self.window[:self.written]
        self.written = len(self.window)
        return text[len(before):]


def stream_text(tokens: Iterable[int], tokenizer: Tokenizer, stop: Sequence[str] = ()) -> Iterator[str]:
    """Text pieces of a stream of ids, ending before the first stop string.

    The pieces join to cut_at_stop(tokenizer.decode(ids), stop)[0]: a piece is held back while it may
    begin a stop string, so no shown text is ever taken back. A stop string can only begin in the
    text not yet shown, which is the only text searched (a few characters at a time).
    """
    text = IncrementalText(tokenizer)
    pending = ""  # decoded and not yet shown
    for token in tokens:
        pending, stopped = decoding.cut_at_stop(pending + text.add(token), stop)
        if stopped:
            break
        ready = len(pending) - decoding.held_back(pending, stop)
        if ready > 0:
            yield pending[:ready]
            pending = pending[ready:]
    else:
        pending = decoding.cut_at_stop(pending + text.flush(), stop)[0]
    if pending:
        yield pending


def batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of `size` items (the last one shorter), read lazily: a stream is answered batch
    by batch."""
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
