"""lm --arch ngram: counting, smoothing (a case worked by hand), normalization, and the CLI round trip."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from seqtasks import ngram_counts
from seqtasks.cli import cli
from seqtasks.models.ngram import NgramLanguageModel


def model_of(ids, vocab, order, smoothing="kneser-ney", discount=0.0, add_k=1.0):
    tables = ngram_counts.count_ngrams(np.asarray(ids), order, vocab)
    levels = ngram_counts.smoothed_levels(tables, vocab, smoothing, discount, add_k)
    return NgramLanguageModel.from_levels(levels, vocab, smoothing)


def distribution(model, context):
    """p(. | context) over the whole vocabulary; context: the last tokens, most recent last (-1: none)."""
    contexts = np.asarray([context], np.int64)
    return np.exp(model.next_log_probs(contexts, np.arange(model.vocab_size)[None]).numpy()[0])


# the stream "a b a b c a": ids a=1, b=2, c=3; id 0 never occurs; V = 4
STREAM, V = [1, 2, 1, 2, 3, 1], 4


def test_interpolated_kneser_ney_matches_the_worked_example():
    """Order 2, one discount D = 0.5 (interpolated KN, Chen & Goodman eq. for p_KN), by hand:

    bigrams: ab x2, ba, bc, ca. Unigram level, continuation counts N1+(. w): a is preceded by b and
    c -> 2; b by a -> 1; c by b -> 1; their sum 4, 3 types, so gamma = 0.5 * 3 / 4 = 0.375 and
        p1(a) = (2 - .5)/4 + .375/4 = 0.46875,  p1(b) = p1(c) = (1 - .5)/4 + .09375 = 0.21875,  p1(0) = 0.09375.
    After b (c(b.) = 2: a once, c once; gamma = 0.5 * 2 / 2 = 0.5):
        p(a|b) = (1 - .5)/2 + .5 p1(a) = 0.484375,  p(c|b) = .25 + .5 p1(c) = 0.359375,
        p(b|b) = .5 p1(b) = 0.109375,  p(0|b) = .5 p1(0) = 0.046875.
    After a (ab twice; gamma = 0.5 / 2 = 0.25): p(b|a) = 1.5/2 + .25 p1(b) = 0.8046875.
    After 0, never a context: p1 itself."""
    model = model_of(STREAM, V, 2, discount=0.5)
    unigram = [0.09375, 0.46875, 0.21875, 0.21875]
    np.testing.assert_allclose(distribution(model, [2]), [0.046875, 0.484375, 0.109375, 0.359375], rtol=1e-6)
    assert distribution(model, [1])[2] == pytest.approx(0.8046875, rel=1e-6)
    np.testing.assert_allclose(distribution(model, [0]), unigram, rtol=1e-6)
    np.testing.assert_allclose(distribution(model, [-1]), unigram, rtol=1e-6)  # no token yet


def test_witten_bell_and_add_k_match_their_formulas_by_hand():
    # Witten-Bell, raw counts: a 3, b 2, c 1 of 6, 3 types: p1(a) = (3 + 3/4) / 9; after b: c(ba) = 1,
    # c(b.) = 2 with 2 types: p(a|b) = (1 + 2 p1(a)) / 4
    p1_a = (3 + 3 / 4) / 9
    assert distribution(model_of(STREAM, V, 2, "witten-bell"), [2])[1] == pytest.approx((1 + 2 * p1_a) / 4, rel=1e-6)
    # add-k, k = 1: (c(ba) + 1) / (c(b.) + V) = 2/6; a context never seen: uniform
    add_one = model_of(STREAM, V, 2, "add-k", add_k=1.0)
    assert distribution(add_one, [2])[1] == pytest.approx(2 / 6, rel=1e-6)
    np.testing.assert_allclose(distribution(add_one, [0]), [0.25] * 4, rtol=1e-6)


def test_modified_kneser_ney_discounts_come_from_the_counts_of_counts():
    # n1 = 3, n2 = 2, n3 = 1, n4 = 1: Y = 3/7, D1 = 1 - 2Y(2/3) = 3/7, D2 = 2 - 3Y/2 = 19/14, D3+ = 3 - 4Y = 9/7
    d1, d2, d3 = ngram_counts.modified_discounts(np.array([1, 1, 1, 2, 2, 3, 4]))
    assert (d1, d2, d3) == pytest.approx((3 / 7, 19 / 14, 9 / 7))


@pytest.mark.parametrize("smoothing", ngram_counts.SMOOTHINGS)
def test_probabilities_sum_to_one_over_the_vocabulary_for_random_contexts(smoothing):
    rng = np.random.default_rng(0)
    vocab = 11
    ids = rng.integers(1, vocab - 2, size=400)  # two ids never occur: they still get mass
    for order in (1, 2, 4):
        model = model_of(ids, vocab, order, smoothing)
        width = model.width
        seen = np.stack([ids[i:i + width] for i in rng.integers(0, len(ids) - width, size=20)])  # contexts in the text
        unseen = rng.integers(-1, vocab, size=(20, width))
        unseen = np.where(np.arange(width) < rng.integers(0, width + 1, size=(20, 1)), -1, unseen)  # -1s lead
        contexts = np.concatenate([seen, unseen])
        p = np.exp(model.next_log_probs(contexts, np.broadcast_to(np.arange(vocab), (40, vocab))).numpy())
        np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=2e-6)
        assert (p > 0).all()


def test_counting_in_blocks_equals_counting_at_once():
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 5, size=1000)
    for order in (1, 3, 5):
        tables = ngram_counts.count_ngrams(ids, order, 5, block=97)  # blocks overlap by order - 1 tokens
        for k, (keys, counts) in enumerate(tables, start=1):
            expected_keys, expected_counts = np.unique(ngram_counts.ngram_keys(ids, k, 5), return_counts=True)
            np.testing.assert_array_equal(keys, expected_keys)
            np.testing.assert_array_equal(counts, expected_counts)


def test_an_order_whose_keys_do_not_fit_63_bits_is_one_line():
    with pytest.raises(Exception, match=r"--order 5 with a vocabulary of 10,000 tokens.*"):
        ngram_counts.check_key_size(10_000, 5)
    ngram_counts.check_key_size(10_000, 4)


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def ngram_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ngram")
    corpus = folder / "text.txt"
    corpus.write_text("the cat sat on the mat. the dog sat on the log.\n" * 40)
    out = folder / "run"
    result = invoke("train", "lm", "--arch", "ngram", "--order", "4", "--data", corpus, "--out", out)
    assert result.exit_code == 0, result.output
    return out, corpus, result.output


def test_train_evaluate_and_sample_an_ngram_run_through_the_cli(ngram_run):
    out, corpus, output = ngram_run
    assert "training finished (estimated from counts): best validation loss" in output
    assert (out / "model.keras").is_file() and (out / "tokenizer").is_dir()
    result = invoke("evaluate", out, "--data", corpus, "--json")
    assert result.exit_code == 0, result.output
    scores = json.loads(result.output)
    assert {"loss", "perplexity", "bpc", "tokens", "characters"} <= set(scores)
    assert scores["characters"] == len(corpus.read_text()) and scores["tokens"] == scores["characters"] + 1
    assert scores["loss"] < 0.3  # the text repeats: a 4-gram model predicts nearly every character
    assert scores["perplexity"] == pytest.approx(np.exp(scores["loss"]))
    sampled = [invoke("sample", out, "--prompt", "the ", "--temperature", "0.8", "--top-k", "5", "--top-p", "0.9",
                      "--seed", "3", "--max-new-tokens", "40", "--stop", "log").output for _ in range(2)]
    assert sampled[0] == sampled[1] and sampled[0].startswith("the ")  # seeded; the output continues the prompt
    assert "log" not in sampled[0][4:]  # cut at the stop string
    greedy = invoke("sample", out, "--prompt", "the d", "--max-new-tokens", "6").output
    assert greedy.startswith("the dog sat")  # "og " is followed by "s" only


def test_an_ngram_run_has_nothing_to_resume_or_fine_tune(ngram_run):
    out, corpus, _ = ngram_run
    assert "training already finished (estimated from counts)" in invoke("resume", out).output
    for args in (("resume", out, "--epochs", "3"), ("finetune", out, "--data", corpus, "--out", out.parent / "ft")):
        result = CliRunner().invoke(cli, [str(a) for a in args])
        assert result.exit_code == 1 and "estimated from counts" in result.output
    info = json.loads(invoke("info", out, "--json").output)
    assert info["settings"]["arch"] == "ngram" and info["training"]["finished"]


def test_the_ngram_decoding_loop_is_not_xla_compiled_unless_asked():
    from seqtasks.decoding import GenerationConfig

    default = NgramLanguageModel.xla_by_default
    assert not GenerationConfig().uses_xla(beam=False, conditional=False, default=default)
    assert GenerationConfig(xla=True).uses_xla(beam=False, conditional=False, default=default)


def test_prefill_and_step_give_the_distributions_of_call():
    """The decoding engine's path (prefill, then step) and the model's call agree position by position."""
    rng = np.random.default_rng(2)
    ids = rng.integers(0, 6, size=300)
    model = model_of(ids, 6, 3)
    text = ids[None, :12].astype("int32")
    every = model(text).numpy()[0]  # (time, vocab)
    log_p, state = model.prefill(text[:, :5])
    np.testing.assert_allclose(log_p.numpy()[0], every[4], rtol=1e-5)
    for t in range(5, 12):
        log_p, state = model.step(text[:, t], state, t)
        np.testing.assert_allclose(log_p.numpy()[0], every[t], rtol=1e-5)
