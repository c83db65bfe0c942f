"""The text-generation front-end (seqtasks.generation): what lm, generate, translate and caption share."""
from __future__ import annotations

import dataclasses
import random

import keras
import numpy as np
import pytest

from seqtasks import decoding
from seqtasks.errors import UserError
from seqtasks.generation import (IncrementalText, Prompt, TextGenerator, TextPrompts, generation_config,
                                 stream_text)
from seqtasks.models.language_model import RecurrentLanguageModel, TransformerLanguageModel
from seqtasks.tokenizers import BOS_ID, EOS_ID, train_tokenizer

TEXT = "The quick brown fox, jumps over the lazy dog.\nNaïve café: 東京 is big; ünïcödé! " * 40


@pytest.fixture(scope="module")
def tokenizers():
    return {kind: train_tokenizer(kind, [TEXT], **({"vocab_size": 400} if kind == "spm" else {}))
            for kind in ("char", "word", "whitespace", "spm")}


def untrained(kind: str, vocab: int):
    """A language model with random weights: decoding it is as deterministic as decoding a trained one."""
    keras.utils.set_random_seed(3)
    if kind == "transformer":
        model = TransformerLanguageModel(vocab, d_model=16, heads=2, num_layers=1, max_length=32)
    else:
        model = RecurrentLanguageModel(vocab, cell="gru", units=16, num_layers=1)
    model(np.zeros((1, 2), "int32"))
    return model


@pytest.fixture(scope="module")
def generators(tokenizers):
    """(model kind, tokenizer kind) -> a TextGenerator of a decoder-only model with the TextPrompts of lm
    (its loop a graph: XLA would compile it for each new shape, and the text does not depend on it)."""
    return {(model, kind): TextGenerator(untrained(model, tokenizers[kind].vocab_size),
                                         TextPrompts(tokenizers[kind], defaults={"xla": False}))
            for model, kind in (("gru", "char"), ("transformer", "char"), ("gru", "spm"))}


# --- detokenizing a stream ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["char", "word", "whitespace", "spm"])
def test_incremental_text_joins_to_the_decoding_of_all_ids(tokenizers, kind):
    tokenizer = tokenizers[kind]
    rng = random.Random(0)
    # random ids: specials, byte pieces that only make a character together (spm), words, newlines
    for _ in range(200):
        ids = [rng.randrange(tokenizer.vocab_size) for _ in range(rng.randint(0, 30))]
        text = IncrementalText(tokenizer)
        pieces = [text.add(i) for i in ids] + [text.flush()]
        assert "".join(pieces) == tokenizer.decode(ids), ids
    ids = tokenizer.encode(TEXT[:300])
    assert "".join(stream_text(ids, tokenizer)) == tokenizer.decode(ids)


def test_incremental_text_decodes_each_id_once_in_a_short_window(tokenizers):
    tokenizer = tokenizers["spm"]
    decoded = []

    class Counting:
        def decode(self, ids):
            decoded.append(len(ids))
            return tokenizer.decode(ids)

    ids = tokenizer.encode(TEXT) * 2
    assert "".join(stream_text(ids, Counting())) == tokenizer.decode(ids)
    # two decodings a token, each of a few ids: linear in the length, where decoding all text so far is quadratic
    assert len(decoded) <= 2 * len(ids) + 2 and max(decoded) <= 8


def test_a_stream_holds_back_the_start_of_a_stop_string_and_cuts_before_it(tokenizers):
    tokenizer = tokenizers["char"]
    ids = tokenizer.encode("abc the end. more")
    pieces = list(stream_text(ids, tokenizer, ["end.", "xyz"]))
    assert "".join(pieces) == "abc the "
    assert all(not p.endswith("e") for p in pieces[:-1])  # "e" may begin "end.": it waits for the next id
    assert "".join(stream_text(ids, tokenizer, ["zz"])) == "abc the end. more"
    for stop in (["e"], ["th", "\n"], [" q", "."], ["é!", "東"]):  # the text's own stops, one- and two-character
        for length in (0, 5, 60):
            ids = tokenizer.encode(TEXT[7:7 + length])
            assert "".join(stream_text(ids, tokenizer, stop)) == decoding.cut_at_stop(tokenizer.decode(ids), stop)[0]


# --- options -> GenerationConfig ---------------------------------------------------------------------

def test_options_become_a_generation_config(tokenizers):
    tokenizer = tokenizers["char"]
    config = generation_config(tokenizer, (EOS_ID,), ["\n", "ab"], beam_width=1, temperature=0.7, max_new_tokens=9)
    assert config.greedy and config.max_new_tokens == 9  # an explicit beam of 1 is greedy
    assert config.stop_ids == (EOS_ID, tokenizer.encode("\n")[0])  # "\n" is one id: the engine stops there
    assert generation_config(tokenizer, stop_ids=[5], stop=()).stop_ids == (5,)
    with pytest.raises(UserError, match="unknown generation option"):
        generation_config(tokenizer, beam=2)


def test_generation_options_describe_every_field_a_user_sets():
    rows = decoding.generation_options()
    fields = {f.name: f for f in dataclasses.fields(decoding.GenerationConfig)}
    assert [r.field for r in rows] == [name for name in fields if name != "stop_ids"]
    assert len({r.flag for r in rows}) == len(rows) and all(r.help for r in rows)
    assert {r.field: r.default for r in rows} == {n: f.default for n, f in fields.items() if n != "stop_ids"}
    flags = {r.field: r.flag for r in rows}
    assert flags["beam_width"] == "--beam" and flags["top_k"] == "--top-k" and flags["xla"] == "--xla/--no-xla"
    assert {r.field: r.type for r in rows}["seed"] is int and {r.field: r.type for r in rows}["top_p"] is float


def test_the_settings_and_their_options_load_without_the_engine():
    """The CLI makes its flags from generation_options() before TensorFlow starts: neither the settings
    nor the front-end's module may load the engine (its modules import TensorFlow) until it is used."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys; import seqtasks.generation; from seqtasks.decoding import generation_options; "
            "assert generation_options(); "
            "print(sorted(m for m in sys.modules if m.split('.')[:2] == ['seqtasks', 'decoding']))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["['seqtasks.decoding',", "'seqtasks.decoding.config',",
                                     "'seqtasks.decoding.stops']"]


# --- the front-end over a model ------------------------------------------------------------------------

def test_the_same_seed_gives_the_same_text_and_another_seed_another(generators):
    generator = generators[("gru", "char")]
    options = dict(max_new_tokens=20, temperature=1.0, seed=5)
    first = generator.generate_batch(["The ", "a"], **options)
    assert generator.generate_batch(["The ", "a"], **options) == first
    assert generator.generate_batch(["The ", "a"], **{**options, "seed": 6}) != first
    assert all(len(texts) == 1 and texts[0] for texts in first)


@pytest.mark.parametrize("model", ["gru", "transformer"])
def test_n_best_and_samples_per_prompt(generators, model):
    generator = generators[(model, "char")]
    beams = generator.generate(["The ", "fox"], generator.config(max_new_tokens=6, beam_width=4,
                                                                 num_return_sequences=3))
    for outputs in beams:
        # three different hypotheses (as ids: an untrained model may put a special token, which decodes
        # to nothing, in two places, and two hypotheses then read the same)
        assert len(outputs) == 3 and len({tuple(o.ids) for o in outputs}) == 3
        assert outputs[0].score >= outputs[1].score >= outputs[2].score
    samples = generator.generate_batch(["The ", "fox"], max_new_tokens=12, num_return_sequences=4, seed=1)
    assert [len(s) for s in samples] == [4, 4] and len(set(samples[0])) > 1


def test_stop_strings_cut_the_text_batched_and_streamed(generators):
    generator = generators[("transformer", "char")]
    full = generator.generate_batch(["The "], max_new_tokens=40, temperature=0.0)[0][0]
    assert len(full) >= 20
    for stop in (full[5:7], full[9]):  # a two-character stop string (text) and a one-character one (an id)
        expected = full[:full.index(stop)]
        assert generator.generate_batch(["The "], max_new_tokens=40, temperature=0.0, stop=[stop])[0][0] == expected
        assert "".join(generator.stream("The ", max_new_tokens=40, temperature=0.0, stop=[stop])) == expected


@pytest.mark.parametrize("key", [("transformer", "char"), ("gru", "spm")])
@pytest.mark.parametrize("options", [dict(temperature=0.0), dict(temperature=1.2, top_p=0.95, seed=3)],
                         ids=["greedy", "sampled"])
def test_streamed_pieces_join_to_the_batch_text(generators, key, options):
    generator = generators[key]
    for prompt in ("", "The quick", "東京"):
        # 40 tokens: past the Transformer's 32 positions, so the window slides
        batch = generator.generate_batch([prompt], max_new_tokens=40, **options)[0][0]
        pieces = list(generator.stream(prompt, max_new_tokens=40, **options))
        assert "".join(pieces) == batch and len(pieces) > 1


@pytest.mark.parametrize("options", [dict(temperature=0.0), dict(temperature=1.0, seed=2),
                                     dict(beam_width=3, num_return_sequences=2)], ids=["greedy", "sampled", "beam"])
def test_a_batch_of_prompts_of_different_lengths_equals_each_prompt_alone(generators, options):
    generator = generators[("transformer", "char")]
    prompts = ["a", "The quick brown", "ab", "fox, ", "lazy dog.\n"]  # as many lengths as prompts
    together = generator.generate_batch(prompts, max_new_tokens=8, **options)
    assert together == [generator.generate_batch([p], max_new_tokens=8, **options)[0] for p in prompts]


def test_more_prompts_than_a_batch_come_back_in_order(tokenizers):
    conditioning = TextPrompts(tokenizers["char"], batch_size=3, defaults={"xla": False})
    generator = TextGenerator(untrained("gru", tokenizers["char"].vocab_size), conditioning)
    prompts = ["a", "b", "The", "c", "fox", "d", "e"]
    assert generator.generate_batch(prompts, max_new_tokens=5, temperature=0.0) == \
        [generator.generate_batch([p], max_new_tokens=5, temperature=0.0)[0] for p in prompts]


# --- a conditional decoder: the context follows its input through the length ordering ---------------------

class WalkDecoder:
    """A toy encoder-decoder: the context row of an input says by how much its output walks from BOS."""

    def __init__(self, vocab: int):
        self.vocab = vocab

    def prefill(self, token_ids, max_length, context):
        import tensorflow as tf

        (shifts,) = context
        state = (tf.cast(shifts, tf.int32),)
        return self.step(token_ids[:, -1], state, 0)

    def step(self, token_ids, state, index):
        import tensorflow as tf

        (shifts,) = state
        following = (token_ids + shifts) % self.vocab
        return 40.0 * tf.one_hot(following, self.vocab), state

    def capacity(self, max_length):
        return max_length


@dataclasses.dataclass
class Shifts:
    """A Conditioning whose inputs are lists of numbers: the source is the list, the context its length."""

    tokenizer: object
    stop_ids: tuple = ()
    batch_size: int = 2
    defaults: dict = dataclasses.field(default_factory=lambda: {"temperature": 0.0, "max_new_tokens": 4})
    batched: list = dataclasses.field(default_factory=list)

    def prompt(self, item):
        return Prompt([BOS_ID], source=np.array(item))

    def context(self, sources):
        self.batched.append([len(s) for s in sources])
        return (np.array([len(s) for s in sources], np.int32),)


def test_inputs_are_batched_by_source_length_and_answered_in_input_order(tokenizers):
    tokenizer = tokenizers["char"]
    conditioning = Shifts(tokenizer)
    generator = TextGenerator(WalkDecoder(tokenizer.vocab_size), conditioning)
    inputs = [[0] * 3, [0] * 1, [0] * 4, [0] * 2, [0] * 1]
    outputs = generator.generate(inputs, generator.config())
    assert conditioning.batched == [[1, 1], [2, 3], [4]]  # similar lengths together, little padding
    for item, (output,) in zip(inputs, outputs):
        assert output.ids == [(BOS_ID + len(item) * k) % tokenizer.vocab_size for k in range(1, 5)]
    assert "".join(generator.stream([0] * 3)) == outputs[0][0].text


# --- every generative task through the one front-end -------------------------------------------------

def test_translate_generates_streams_and_predicts_the_same_text(tiny_runs):
    run, _ = tiny_runs("translate")
    sources = ["a f", "b g h", "c", "d i e j"]
    assert run.task.continues_prompt is False
    texts = run.task.generate_batch(run, sources)  # greedy by default, like predict with the run's beam of 1
    assert [t[0] for t in texts] == list(run.predict(sources, beam=1))
    assert ["".join(run.task.stream(run, s)) for s in sources] == [t[0] for t in texts]
    assert run.sample(sources[1]) == texts[1][0]  # the Python API's sample takes a source sentence
    nbest = run.task.generate_batch(run, sources[:2], beam_width=3, num_return_sequences=3)
    assert [len(t) for t in nbest] == [3, 3]
    sampled = run.task.generate_batch(run, sources, temperature=1.0, seed=7, num_return_sequences=2)
    assert sampled == run.task.generate_batch(run, sources, temperature=1.0, seed=7, num_return_sequences=2)


def test_caption_generates_streams_and_predicts_the_same_text(tiny_runs):
    run, data = tiny_runs("caption")
    from pathlib import Path

    images = sorted(str(p) for p in Path(data["images"]).iterdir())[:3]
    assert run.task.continues_prompt is False
    texts = run.task.generate_batch(run, images)
    assert [t[0] for t in texts] == list(run.predict(images))
    assert ["".join(run.task.stream(run, image)) for image in images] == [t[0] for t in texts]
    options = dict(temperature=1.5, seed=4, num_return_sequences=2)
    sampled = run.task.generate_batch(run, images, **options)
    assert [len(t) for t in sampled] == [2, 2, 2] and sampled == run.task.generate_batch(run, images, **options)
    assert "".join(run.task.stream(run, images[0], temperature=1.5, seed=4)) == \
        run.task.generate_batch(run, images[:1], temperature=1.5, seed=4)[0][0]
    with pytest.raises(UserError, match="no such image"):
        run.task.generate_batch(run, [images[0] + ".missing"])
