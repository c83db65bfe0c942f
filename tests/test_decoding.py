"""The decoding engine: cached decoding == full forward, greedy/beam/sampling semantics, logit filters."""
from __future__ import annotations

import dataclasses
import itertools
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from seqtasks import decoding  # noqa: E402
from seqtasks.decoding import GenerationConfig, Generator  # noqa: E402
from seqtasks.models.language_model import RecurrentLanguageModel, TransformerLanguageModel  # noqa: E402

VOCAB = 30
KINDS = ["lstm", "gru", "rnn", "transformer-learned", "transformer-sinusoidal"]


def make_model(kind: str, max_length: int = 64):
    keras.utils.set_random_seed(1)
    if kind.startswith("transformer"):
        model = TransformerLanguageModel(VOCAB, d_model=16, heads=2, num_layers=2, max_length=max_length,
                                         positions=kind.split("-")[1])
    else:
        model = RecurrentLanguageModel(VOCAB, cell=kind, units=16, num_layers=2)
    model(np.zeros((1, 2), "int32"))  # build
    return model


@pytest.fixture(scope="module")
def models():
    return {kind: make_model(kind) for kind in KINDS}


class TableDecoder:
    """A toy decoder: log p(next | previous token) = table[previous]; the state is a dummy tensor."""

    def __init__(self, probabilities):
        probabilities = np.asarray(probabilities, np.float64)
        self.table = tf.constant(np.log(probabilities / probabilities.sum(-1, keepdims=True)), tf.float32)

    def prefill(self, token_ids, max_length):
        return tf.gather(self.table, token_ids[:, -1]), (tf.zeros((tf.shape(token_ids)[0], 1)),)

    def step(self, token_ids, state, index):
        return tf.gather(self.table, token_ids), state

    def capacity(self, max_length):
        return max_length

    def log_p(self, start, sequence):
        table = self.table.numpy()
        total, previous = 0.0, start
        for token in sequence:
            total += float(table[previous, token])
            previous = token
        return total


def greedy(**kwargs):
    return GenerationConfig(temperature=0.0, **kwargs)


# --- the decoder interface: cached decoding is the full forward pass ------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_prefill_then_step_matches_full_forward(models, kind):
    model = models[kind]
    ids = np.random.default_rng(0).integers(0, VOCAB, size=(2, 9)).astype("int32")
    full = model(ids).numpy()
    start = 3
    logits, state = model.prefill(tf.constant(ids[:, :start]), 16)
    np.testing.assert_allclose(logits.numpy(), full[:, start - 1], atol=1e-4)
    for position in range(start, ids.shape[1]):
        logits, state = model.step(tf.constant(ids[:, position]), state, position)
        np.testing.assert_allclose(logits.numpy(), full[:, position], atol=1e-4)


# --- greedy ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_greedy_matches_argmax_by_recomputation(models, kind):
    model = models[kind]
    prompt = [3, 1, 4]
    out = decoding.generate(model, [prompt], greedy(max_new_tokens=6))[0][0]
    sequence = list(prompt)
    for _ in range(6):
        sequence.append(int(np.argmax(model(np.array([sequence], "int32"))[0, -1])))
    assert out == sequence[len(prompt):]


@pytest.mark.parametrize("kind", ["lstm", "transformer-learned"])
def test_greedy_equals_top_k_1_and_beam_width_1(models, kind):
    model = models[kind]
    prompts = [[5, 6, 7], [8, 9, 10]]
    tokens, scores = decoding.generate_with_scores(model, prompts, greedy(max_new_tokens=12))
    assert decoding.generate(model, prompts, GenerationConfig(max_new_tokens=12, top_k=1, seed=3)) == tokens
    beam_tokens, beam_scores = decoding.generator_for(model).beam_search(
        np.array(prompts), GenerationConfig(max_new_tokens=12, beam_width=1, length_penalty=0.0))
    assert beam_tokens == tokens
    np.testing.assert_allclose(beam_scores, scores, rtol=1e-5)


@pytest.mark.parametrize("kind", ["lstm", "transformer-learned"])
def test_xla_compiled_loop_gives_the_same_tokens_and_scores(models, kind):
    model = models[kind]
    prompts = [[5, 6, 7], [8, 9, 10]]
    for config in (greedy(max_new_tokens=10, stop_ids=(3,)), GenerationConfig(max_new_tokens=10, beam_width=3)):
        graph = decoding.generate_with_scores(model, prompts, config)
        xla = decoding.generate_with_scores(model, prompts, dataclasses.replace(config, xla=True))
        assert xla[0] == graph[0]
        np.testing.assert_allclose(xla[1], graph[1], rtol=1e-4, atol=1e-4)
    # under XLA top_k=1 is still greedy, and a seed reproduces samples (XLA draws other random numbers)
    sampled = GenerationConfig(max_new_tokens=10, temperature=0.9, top_k=1, seed=4, xla=True)
    assert decoding.generate(model, prompts, sampled) == decoding.generate(model, prompts, greedy(max_new_tokens=10))
    sampled = dataclasses.replace(sampled, top_k=0)
    assert decoding.generate(model, prompts, sampled) == decoding.generate(model, prompts, sampled)


def test_greedy_equals_beam_width_1_with_stop_ids():
    rng = np.random.default_rng(5)
    decoder = TableDecoder(rng.random((6, 6)) ** 3)
    for stop in range(6):
        for start in range(6):
            config = dict(max_new_tokens=7, stop_ids=(stop,))
            expected = decoding.generate(decoder, [[start]], greedy(**config))
            beam, _ = decoding.generator_for(decoder).beam_search(np.array([[start]]),
                                                                  GenerationConfig(beam_width=1, **config))
            assert beam == expected
    # the stop id ranks second after the prompt: a one-token "[stop]" would have the best normalized score,
    # but only candidates among the beam_width best of their step may finish, so width 1 stays greedy
    decoder = TableDecoder([[1, 1, 1], [0.48, 0.02, 0.5], [0.4, 0.3, 0.3]])
    config = dict(max_new_tokens=4, stop_ids=(0,))
    assert decoding.generate(decoder, [[1]], greedy(**config)) == [[[2]]]
    beam, _ = decoding.generator_for(decoder).beam_search(np.array([[1]]), GenerationConfig(beam_width=1, **config))
    assert beam == [[[2]]]


def test_prompts_of_different_lengths_match_single_prompt_calls(models):
    model = models["gru"]
    prompts = [[1, 2, 3], [4], [5, 6, 7], [8, 9]]
    config = greedy(max_new_tokens=5)
    together = decoding.generate(model, prompts, config)
    assert together == [decoding.generate(model, [p], config)[0] for p in prompts]
    assert all(len(seqs) == 1 and len(seqs[0]) == 5 for seqs in together)


@pytest.mark.parametrize("kind", ["transformer-learned", "transformer-sinusoidal", "lstm"])
def test_prompts_of_different_lengths_decode_in_one_loop_as_each_alone(models, kind):
    """Right-aligned in one loop: a 1-token prompt beside the longest, each as decoded alone (a batch of
    1), greedy with the constraints that read the history, and seeded sampling with 2 samples each."""
    model = models[kind]
    prompts = [[5], list(range(1, 21)), [7, 8, 9], [5]]
    configs = [greedy(max_new_tokens=6, repetition_penalty=1.3, no_repeat_ngram_size=2),
               GenerationConfig(max_new_tokens=6, temperature=1.0, top_k=8, seed=11, num_return_sequences=2)]
    for config in configs:
        assert decoding.generator_for(model)._loops([np.array(p) for p in prompts], config) == [[0, 1, 2, 3]]
        together, together_scores = decoding.generate_with_scores(model, prompts, config)
        for prompt, outputs, scores in zip(prompts, together, together_scores):
            alone, alone_scores = decoding.generate_with_scores(model, [prompt], config)
            assert outputs == alone[0]
            assert scores == pytest.approx(alone_scores[0], abs=1e-4)
    assert together[0] == together[3] and together[0][0] != together[0][1]  # noise by sample, not by row


def test_same_shapes_do_not_retrace(models):
    model = models["lstm"]
    config = greedy(max_new_tokens=4)
    decoding.generate(model, [[1, 2]], config)
    generator = decoding.generator_for(model)
    functions = list(generator._functions.values())
    traces = [f.experimental_get_tracing_count() for f in functions]
    decoding.generate(model, [[3, 4]], config)
    decoding.generate(model, [[3, 4, 5], [6]], config)  # other lengths and batch sizes: same trace
    assert decoding.generator_for(model) is generator
    assert list(generator._functions.values()) == functions
    assert [f.experimental_get_tracing_count() for f in functions] == traces


# --- beam search -------------------------------------------------------------------------------

def brute_force_best(decoder, start, length, vocab):
    return max((decoder.log_p(start, seq), list(seq)) for seq in itertools.product(range(vocab), repeat=length))


def test_beam_search_beats_greedy_on_a_hand_made_table():
    # from 0, token 1 is likelier than 2, but after 1 everything is flat while 2 -> 2 is nearly certain
    decoder = TableDecoder([[0.1, 0.5, 0.4], [0.34, 0.33, 0.33], [0.05, 0.05, 0.9]])
    best_score, best = brute_force_best(decoder, 0, 3, 3)
    assert best == [2, 2, 2]
    greedy_tokens, greedy_scores = decoding.generate_with_scores(decoder, [[0]], greedy(max_new_tokens=3))
    assert greedy_tokens[0][0] == [1, 0, 1]  # greedy is not optimal here
    config = GenerationConfig(max_new_tokens=3, beam_width=2, length_penalty=0.0, num_return_sequences=2)
    tokens, scores = decoding.generate_with_scores(decoder, [[0]], config)
    assert tokens[0][0] == best
    assert scores[0][0] == pytest.approx(best_score, abs=1e-5)
    assert scores[0][0] > greedy_scores[0][0]
    assert scores[0][0] >= scores[0][1]


@pytest.mark.parametrize("seed", range(4))
def test_beam_search_finds_the_optimum_and_never_scores_below_greedy(seed):
    rng = np.random.default_rng(seed)
    vocab, length = 3, 4
    decoder = TableDecoder(rng.random((vocab, vocab)) ** 2 + 0.01)
    best_score, best = brute_force_best(decoder, 0, length, vocab)
    greedy_score = decoding.generate_with_scores(decoder, [[0]], greedy(max_new_tokens=length))[1][0][0]
    for width in (2, 3):
        config = GenerationConfig(max_new_tokens=length, beam_width=width, length_penalty=0.0)
        score = decoding.generate_with_scores(decoder, [[0]], config)[1][0][0]
        assert greedy_score - 1e-5 <= score <= best_score + 1e-5
    # a beam as wide as the number of prefixes is exhaustive
    config = GenerationConfig(max_new_tokens=length, beam_width=vocab ** (length - 1), length_penalty=0.0)
    tokens, scores = decoding.generate_with_scores(decoder, [[0]], config)
    assert tokens[0][0] == best
    assert scores[0][0] == pytest.approx(best_score, abs=1e-5)


def brute_force_with_stop(decoder, start, max_length, vocab, stop, length_penalty):
    """Best hypothesis over all sequences ending at their first stop id or at max_length."""
    best = (-math.inf, None)
    for n in range(1, max_length + 1):
        for seq in itertools.product(range(vocab), repeat=n):
            if stop in seq[:-1] or (n < max_length and seq[-1] != stop):
                continue
            best = max(best, (decoder.log_p(start, seq) / n ** length_penalty, list(seq)))
    return best


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_beam_search_with_a_stop_id_strips_it_and_normalizes(length_penalty):
    decoder = TableDecoder([[0.3, 0.3, 0.4], [0.6, 0.1, 0.3], [0.2, 0.5, 0.3]])
    score, best = brute_force_with_stop(decoder, 2, 3, 3, 0, length_penalty)
    config = GenerationConfig(max_new_tokens=3, beam_width=9, stop_ids=(0,), length_penalty=length_penalty,
                              num_return_sequences=3)
    tokens, scores = decoding.generate_with_scores(decoder, [[2]], config)
    assert tokens[0][0] == [t for t in best if t != 0]
    assert scores[0][0] == pytest.approx(score, abs=1e-5)
    assert scores[0] == sorted(scores[0], reverse=True)
    assert all(0 not in seq for seq in tokens[0])


def test_beam_search_batches_prompts_and_rejects_what_does_not_fit():
    decoder = TableDecoder([[0.1, 0.5, 0.4], [0.34, 0.33, 0.33], [0.05, 0.05, 0.9]])
    config = GenerationConfig(max_new_tokens=3, beam_width=2, length_penalty=0.0)
    together = decoding.generate(decoder, [[0], [1], [2, 0]], config)
    assert together == [decoding.generate(decoder, [p], config)[0] for p in ([0], [1], [2, 0])]
    model = make_model("transformer-learned", max_length=16)
    with pytest.raises(ValueError, match="beam search"):
        decoding.generate(model, [[1, 2, 3]], GenerationConfig(max_new_tokens=20, beam_width=2))


# --- logit filters -----------------------------------------------------------------------------

def kept(filtered):
    return set(np.flatnonzero(np.isfinite(np.asarray(filtered)[0])).tolist())


def test_top_p_keeps_the_smallest_set_reaching_p():
    probabilities = np.array([[0.1, 0.4, 0.2, 0.25, 0.05]])
    logits = np.log(probabilities)
    assert kept(decoding.top_p_filter(logits, 0.4)) == {1}           # 0.4 reaches 0.4 exactly
    assert kept(decoding.top_p_filter(logits, 0.41)) == {1, 3}
    assert kept(decoding.top_p_filter(logits, 0.65)) == {1, 3}       # 0.65 reached exactly
    assert kept(decoding.top_p_filter(logits, 0.66)) == {1, 3, 2}
    assert kept(decoding.top_p_filter(logits, 0.95)) == {1, 3, 2, 0}
    assert kept(decoding.top_p_filter(logits, 0.01)) == {1}          # the top token always stays
    np.testing.assert_array_equal(decoding.top_p_filter(logits, 1.0), logits.astype("float32"))
    filtered = decoding.top_p_filter(logits, 0.65).numpy()
    np.testing.assert_allclose(filtered[0, [1, 3]], logits[0, [1, 3]], rtol=1e-6)  # kept logits unchanged


def test_top_p_with_ties_keeps_the_smallest_set_lower_ids_first():
    logits = np.log(np.array([[0.2, 0.3, 0.2, 0.3]]))
    assert kept(decoding.top_p_filter(logits, 0.3)) == {1}
    assert kept(decoding.top_p_filter(logits, 0.5)) == {1, 3}
    assert kept(decoding.top_p_filter(logits, 0.7)) == {1, 3, 0}
    assert kept(decoding.top_p_filter(np.zeros((1, 4)), 0.5)) == {0, 1}  # uniform: 2 tokens make 0.5


def test_top_k_keeps_exactly_k():
    logits = np.array([[1.0, 3.0, 2.0, 3.0, 0.5], [0.0, 0.0, 0.0, 0.0, 0.0]])
    filtered = decoding.top_k_filter(logits, 2).numpy()
    assert [set(np.flatnonzero(np.isfinite(row))) for row in filtered] == [{1, 3}, {0, 1}]
    assert np.isfinite(decoding.top_k_filter(logits, 3).numpy()).sum(axis=1).tolist() == [3, 3]
    np.testing.assert_array_equal(decoding.top_k_filter(logits, 0), logits.astype("float32"))


def test_sampling_never_leaves_the_top_k_and_top_p_sets(models):
    model = models["lstm"]
    prompt = [1, 2, 3]
    first_logits = model(np.array([prompt], "int32"))[0, -1].numpy()
    allowed = set(np.argsort(-first_logits, kind="stable")[:3].tolist())
    config = GenerationConfig(max_new_tokens=1, top_k=3, num_return_sequences=64, seed=0)
    assert {seq[0] for seq in decoding.generate(model, [prompt], config)[0]} <= allowed
    config = GenerationConfig(max_new_tokens=1, top_p=0.2, num_return_sequences=64, seed=0)
    nucleus = kept(decoding.top_p_filter(first_logits[None], 0.2))
    assert {seq[0] for seq in decoding.generate(model, [prompt], config)[0]} <= nucleus


def test_repetition_penalty_lowers_seen_tokens():
    logits = tf.constant([[2.0, -2.0, 1.0, 0.5]])
    seen = decoding.seen_token_mask(tf.constant([[0, 1, 3, 0]]), 2, 4)  # only [0, 1] counts
    assert seen.numpy().tolist() == [[True, True, False, False]]
    penalized = decoding.apply_repetition_penalty(logits, seen, 2.0).numpy()
    np.testing.assert_allclose(penalized, [[1.0, -4.0, 1.0, 0.5]])
    before, after = tf.nn.softmax(logits).numpy(), tf.nn.softmax(penalized).numpy()
    assert (after[0, :2] < before[0, :2]).all() and (after[0, 2:] > before[0, 2:]).all()


def test_repetition_penalty_in_generation():
    # logits are log-probabilities (all negative), so the penalty multiplies a seen token's logit by 1e6
    decoder = TableDecoder(np.random.default_rng(2).random((VOCAB, VOCAB)) ** 4)
    plain = decoding.generate(decoder, [[1, 2]], greedy(max_new_tokens=20))[0][0]
    penalized = decoding.generate(decoder, [[1, 2]], greedy(max_new_tokens=20, repetition_penalty=1e6))[0][0]
    assert len(set(plain)) < 20  # greedy decoding of a fixed table cycles...
    assert len(set(penalized + [1, 2])) == 22  # ...and a huge penalty forbids any repeat


def test_no_repeat_ngram_mask():
    history = tf.constant([[1, 2, 3, 1, 2, 4, 1, 0, 0]])
    # the last token is 1; bigrams starting with 1 were (1,2) twice -> ban 2
    assert np.flatnonzero(decoding.no_repeat_ngram_mask(history, 7, 2, 6).numpy()[0]).tolist() == [2]
    # trigrams with prefix (2, 4)? none; with length 5 the prefix is (1, 2): (1, 2, 3) -> ban 3
    assert np.flatnonzero(decoding.no_repeat_ngram_mask(history, 7, 3, 6).numpy()[0]).tolist() == []
    assert np.flatnonzero(decoding.no_repeat_ngram_mask(history, 5, 3, 6).numpy()[0]).tolist() == [3]
    assert np.flatnonzero(decoding.no_repeat_ngram_mask(history, 3, 1, 6).numpy()[0]).tolist() == [1, 2, 3]


@pytest.mark.parametrize("kind", ["transformer-learned", "lstm"])
def test_no_repeat_ngram_size_2_never_repeats_a_bigram(models, kind):
    prompt = [1, 2, 3]
    for config in (greedy(max_new_tokens=25, no_repeat_ngram_size=2),
                   GenerationConfig(max_new_tokens=25, no_repeat_ngram_size=2, num_return_sequences=4, seed=1)):
        for out in decoding.generate(models[kind], [prompt], config)[0]:
            sequence = prompt + out
            bigrams = list(zip(sequence, sequence[1:]))
            assert len(bigrams) == len(set(bigrams))


# --- sampling, seeds, stops --------------------------------------------------------------------

def test_seed_reproduces_samples_and_different_seeds_differ(models):
    model = models["transformer-sinusoidal"]
    config = GenerationConfig(max_new_tokens=20, num_return_sequences=3, seed=7)
    first = decoding.generate(model, [[1, 2], [3, 4]], config)
    assert decoding.generate(model, [[1, 2], [3, 4]], config) == first
    other = decoding.generate(model, [[1, 2], [3, 4]], GenerationConfig(max_new_tokens=20, num_return_sequences=3,
                                                                          seed=8))
    assert other != first
    samples = first[0]
    assert len(samples) == 3 and len({tuple(s) for s in samples}) == 3  # the samples of a prompt differ


def test_stop_ids_end_generation_and_are_stripped(models):
    model = models["lstm"]
    full = decoding.generate(model, [[1, 2, 3]], greedy(max_new_tokens=8))[0][0]
    stop = full[3]
    cut = decoding.generate(model, [[1, 2, 3]], greedy(max_new_tokens=8, stop_ids=(stop,)))[0][0]
    assert cut == full[:full.index(stop)]
    streamed = list(decoding.stream(model, [1, 2, 3], greedy(max_new_tokens=8, stop_ids=(stop,))))
    assert streamed == cut


def test_min_new_tokens_holds_back_the_stop_id():
    # token 0 (the stop) is the likeliest after every token
    decoder = TableDecoder([[0.7, 0.1, 0.2], [0.6, 0.3, 0.1], [0.8, 0.1, 0.1]])
    assert decoding.generate(decoder, [[1]], greedy(max_new_tokens=10, stop_ids=(0,))) == [[[]]]
    out = decoding.generate(decoder, [[1]], greedy(max_new_tokens=10, stop_ids=(0,), min_new_tokens=4))[0][0]
    assert out == [1, 1, 1, 1]
    config = GenerationConfig(max_new_tokens=10, stop_ids=(0,), min_new_tokens=3, num_return_sequences=50, seed=2)
    samples = decoding.generate(decoder, [[1]], config)[0]
    assert all(len(s) >= 3 and 0 not in s for s in samples)
    assert any(len(s) < 10 for s in samples)
    beam = decoding.generate(decoder, [[1]], GenerationConfig(max_new_tokens=10, beam_width=2, stop_ids=(0,),
                                                              min_new_tokens=2))[0][0]
    assert len(beam) >= 2 and 0 not in beam


def test_sample_scores_are_sums_of_log_probabilities():
    decoder = TableDecoder([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1], [0.3, 0.3, 0.4]])
    config = GenerationConfig(max_new_tokens=6, num_return_sequences=5, seed=4, stop_ids=(0,))
    tokens, scores = decoding.generate_with_scores(decoder, [[2]], config)
    for seq, score in zip(tokens[0], scores[0]):
        full = seq + [0] if len(seq) < 6 else seq  # the stop id counts in the score
        assert score == pytest.approx(decoder.log_p(2, full), abs=1e-5)


# --- long outputs, streaming, errors -----------------------------------------------------------

def crop_reference(model, prompt, new_tokens, capacity):
    """Greedy with nanoGPT's crop: when the context is full, keep its last capacity // 2 tokens."""
    sequence, window = list(prompt), list(prompt)
    for _ in range(new_tokens):
        token = int(np.argmax(model(np.array([window], "int32"))[0, -1]))
        sequence.append(token)
        window = sequence[-(capacity // 2):] if len(window) == capacity else window + [token]
    return sequence[len(prompt):]


def test_sliding_window_past_the_capacity():
    model = make_model("transformer-learned", max_length=16)
    config = greedy(max_new_tokens=40)
    out = decoding.generate(model, [[1, 2, 3]], config)[0][0]
    assert len(out) == 40
    assert out == crop_reference(model, [1, 2, 3], 40, 16)
    assert list(decoding.stream(model, [1, 2, 3], config)) == out
    sampled = decoding.generate(model, [[1, 2, 3], list(range(20))],
                                GenerationConfig(max_new_tokens=40, seed=0, num_return_sequences=2))
    assert [len(s) for seqs in sampled for s in seqs] == [40] * 4


@pytest.mark.parametrize("kind", ["gru", "transformer-learned"])
def test_stream_yields_what_generate_returns(models, kind):
    model = models[kind]
    for config in (greedy(max_new_tokens=15), GenerationConfig(max_new_tokens=15, seed=11, top_k=10)):
        streamed = decoding.stream(model, [4, 5], config)
        assert iter(streamed) is streamed
        assert list(streamed) == decoding.generate(model, [[4, 5]], config)[0][0]


def test_errors(models):
    model = models["lstm"]
    with pytest.raises(ValueError, match="empty"):
        decoding.generate(model, [[1], []], greedy(max_new_tokens=3))
    with pytest.raises(ValueError, match="beam"):
        decoding.stream(model, [1], GenerationConfig(beam_width=2))  # raised at the call, before iterating
    with pytest.raises(ValueError, match="empty"):
        decoding.stream(model, [], GenerationConfig())
    with pytest.raises(ValueError, match="num_return_sequences"):
        GenerationConfig(beam_width=2, num_return_sequences=3)
    with pytest.raises(ValueError, match="top_p"):
        GenerationConfig(top_p=0.0)
    assert decoding.generate(model, [[1]], greedy(max_new_tokens=0, num_return_sequences=2)) == [[[], []]]
    unbuilt = RecurrentLanguageModel(VOCAB, cell="gru", units=8, num_layers=1)
    with pytest.raises(ValueError, match="no weights"):
        decoding.generate(unbuilt, [[1]], greedy(max_new_tokens=3))


def test_generator_can_be_held_by_the_caller(models):
    generator = Generator(models["rnn"])
    config = greedy(max_new_tokens=5)
    assert generator.generate([[1, 2]], config) == decoding.generate(models["rnn"], [[1, 2]], config)
    assert decoding.generate(generator, [[1, 2]], config) == generator.generate([[1, 2]], config)


# --- conditional decoders: a per-prompt context --------------------------------------------------

class ContextDecoder:
    """A toy encoder-decoder: logits = transitions[b, previous token] + bias[b], both from the context.

    The context is (transitions (batch, vocab, vocab), bias (batch, vocab)); prefill keeps it in the
    state, as a translation decoder keeps its encoder memory, so step never sees the context itself.
    """

    def __init__(self, capacity: int = 1000):
        self.limit = capacity
        self.prefill_context_rows = []

    def prefill(self, token_ids, max_length, context):
        transitions, bias = context
        self.prefill_context_rows.append(transitions.shape[0])  # recorded at trace time
        return self._logits(token_ids[:, -1], (transitions, bias)), (transitions, bias)

    def step(self, token_ids, state, index):
        return self._logits(token_ids, state), state

    @staticmethod
    def _logits(previous, state):
        transitions, bias = state
        return tf.gather(transitions, previous, batch_dims=1) + bias

    def capacity(self, max_length):
        return min(max_length, self.limit)


def walking_context(shifts, vocab=VOCAB):
    """Row b walks t -> (t + shifts[b]) % vocab with probability ~1."""
    transitions = np.stack([40.0 * np.eye(vocab)[(np.arange(vocab) + s) % vocab] for s in shifts]).astype("float32")
    return transitions, np.zeros((len(shifts), vocab), "float32")


def walk(start, shift, steps, vocab=VOCAB):
    return [(start + shift * k) % vocab for k in range(1, steps + 1)]


PROMPTS = [[1], [2, 3, 4], [5], [6, 7, 8], [9, 10]]  # mixed lengths: groups are not contiguous
SHIFTS = [1, 2, 3, 4, 5]


@pytest.mark.parametrize("config", [
    greedy(max_new_tokens=6),
    GenerationConfig(max_new_tokens=6, seed=4, num_return_sequences=2),
    GenerationConfig(max_new_tokens=6, beam_width=3, num_return_sequences=2),
], ids=["greedy", "sampling-n2", "beam3"])
def test_context_rows_follow_their_prompts(config):
    decoder = ContextDecoder()
    out = decoding.generate(decoder, PROMPTS, config, context=walking_context(SHIFTS))
    for prompt, shift, sequences in zip(PROMPTS, SHIFTS, out):
        assert len(sequences) == config.num_return_sequences
        assert sequences[0] == walk(prompt[-1], shift, 6)
        if not config.beam:  # samples all follow the walk; beam's second best deviates by design
            assert all(s == sequences[0] for s in sequences)


def test_context_with_a_sliding_window_and_stream():
    decoder = ContextDecoder(capacity=6)  # prompt + 10 new tokens do not fit: prefilled again, same rows
    context = walking_context(SHIFTS)
    for config in (greedy(max_new_tokens=10), GenerationConfig(max_new_tokens=10, seed=1, num_return_sequences=2)):
        out = decoding.generate(decoder, PROMPTS, config, context=context)
        assert [seqs[0] for seqs in out] == [walk(p[-1], s, 10) for p, s in zip(PROMPTS, SHIFTS)]
    one_row = tuple(c[3:4] for c in context)
    assert list(decoding.stream(decoder, PROMPTS[3], greedy(max_new_tokens=10), context=one_row)) == walk(8, 4, 10)


def test_context_is_an_input_so_new_values_do_not_retrace():
    decoder = ContextDecoder()
    configs = [greedy(max_new_tokens=5), GenerationConfig(max_new_tokens=5, beam_width=3)]
    for config in configs:
        decoding.generate(decoder, [[1, 2], [3, 4]], config, context=walking_context([1, 2]))
    generator = decoding.generator_for(decoder)
    functions = dict(generator._functions)
    traces = {key: f.experimental_get_tracing_count() for key, f in functions.items()}
    for config in configs:
        out = decoding.generate(decoder, [[1, 2], [3, 4]], config, context=walking_context([7, 3]))
        assert out == [[walk(2, 7, 5)], [walk(4, 3, 5)]]  # the new values are used, not baked-in ones
    assert generator._functions == functions
    assert {key: f.experimental_get_tracing_count() for key, f in functions.items()} == traces


def test_context_errors():
    decoder = ContextDecoder()
    with pytest.raises(ValueError, match="one row per prompt"):
        decoding.generate(decoder, [[1], [2]], greedy(max_new_tokens=2), context=walking_context([1]))
    with pytest.raises(ValueError, match="empty"):
        decoding.generate(decoder, [[1]], greedy(max_new_tokens=2), context=())


# --- stop strings (text level) --------------------------------------------------------------------

def test_stop_string_helpers():
    from seqtasks.tokenizers import train_tokenizer

    assert decoding.cut_at_stop("abc\n\nd.ef", ["\n\n", "."]) == ("abc", True)
    assert decoding.cut_at_stop("abc", ["x", ""]) == ("abc", False)
    assert decoding.held_back("the en", ["end", "n"]) == 2  # "en" may begin "end"
    assert decoding.held_back("ab\n", ["\n\n"]) == 1 and decoding.held_back("abc", ["x"]) == 0
    chars = train_tokenizer("char", ["ab c\n"])
    assert decoding.stop_string_ids(chars, ["\n", "ab"]) == tuple(chars.encode("\n"))  # "ab" spans tokens: text only
    words = train_tokenizer("word", ["a cat sat . a"])
    assert decoding.stop_string_ids(words, ["."]) == tuple(words.encode("."))
    assert decoding.stop_string_ids(words, ["a"]) == ()  # "a" also occurs inside "cat"
