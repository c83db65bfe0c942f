"""Conditional generation and sampling as a user meets them: the task, the pairs reader, `seqtasks sample`."""
import itertools
import json

import keras
import numpy as np
import pytest
from click.testing import CliRunner

import seqtasks
from seqtasks.cli import cli
from seqtasks.errors import UserError
from seqtasks.readers.pairs import open_pair_source
from seqtasks.completion_data import encode_pairs, pair_batch
from seqtasks.tasks.generate import ConditionalGenerationConfig, ConditionalGenerationTask
from seqtasks.tokenizers import PAD_ID, train_tokenizer

TINY_LM = dict(units=32, layers=1, seq_len=16, batch_size=8, lr=1e-2, warmup_steps=5, dropout=0.0,
               sample_tokens=0, precision="fp32")


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def write_jsonl(path, pairs):
    path.write_text("".join(json.dumps({"prompt": p, "completion": c}) + "\n" for p, c in pairs))
    return path


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lm")
    corpus = folder / "text.txt"
    corpus.write_text("the cat sat on the mat. a dog ran to the log.\n" * 60)
    return seqtasks.train("lm", data=str(corpus), arch="gru", epochs=1, steps_per_epoch=15, out=str(folder / "run"),
                          verbose=0, **TINY_LM)


@pytest.fixture(scope="module")
def sort_pairs(tmp_path_factory):
    """Sorting three letters: 'cab' -> 'abc', every ordered triple of a..g."""
    pairs = [("".join(t), "".join(sorted(t))) for t in itertools.permutations("abcdefg", 3)]
    return write_jsonl(tmp_path_factory.mktemp("sort") / "sort3.jsonl", pairs)


@pytest.fixture(scope="module")
def sort_run(sort_pairs, tmp_path_factory):
    return seqtasks.train("generate", data=str(sort_pairs), out=str(tmp_path_factory.mktemp("runs") / "sort"),
                          arch="transformer", units=32, layers=2, heads=2, seq_len=8, batch_size=32, epochs=1,
                          steps_per_epoch=150, lr=1e-2, warmup_steps=20, dropout=0.0, precision="fp32",
                          sample_examples=0, verbose=0)


# --- conditional generation -------------------------------------------------------------------------

def test_the_loss_counts_only_completion_tokens():
    pairs = [("abc", "cb"), ("a", "abcab")]
    tokenizer = train_tokenizer("char", ["abc"])
    cfg = ConditionalGenerationConfig(arch="lstm", units=16, layers=1, seq_len=12, precision="fp32")
    task = ConditionalGenerationTask()
    model = task.build(cfg, tokenizer)
    loss_fn, _ = task.loss_and_metrics(cfg, tokenizer)
    encoded = encode_pairs(tokenizer, pairs, cfg.seq_len)
    inputs, targets = pair_batch(encoded, [0, 1], cfg.seq_len)
    logits = model(inputs)
    loss = float(loss_fn(targets, logits))

    # by hand: the mean of -log p over completion tokens and EOS only
    log_p = keras.ops.convert_to_numpy(keras.ops.log_softmax(logits, axis=-1))
    nats = []
    for row, (prompt, completion) in enumerate(pairs):
        expected = tokenizer.encode(completion) + [tokenizer.eos_id]
        for k, token in enumerate(expected):
            nats.append(-log_p[row, len(prompt) + k, token])
    assert loss == pytest.approx(np.mean(nats), rel=1e-5)
    assert int((targets != PAD_ID).sum()) == len(nats)

    # other prompt tokens as targets: the same loss; another completion token: a different loss
    changed_prompts = encode_pairs(tokenizer, [("cab", "cb"), ("c", "abcab")], cfg.seq_len)
    assert float(loss_fn(pair_batch(changed_prompts, [0, 1], cfg.seq_len)[1], logits)) == loss
    changed_completion = encode_pairs(tokenizer, [("abc", "cc"), ("a", "abcab")], cfg.seq_len)
    assert float(loss_fn(pair_batch(changed_completion, [0, 1], cfg.seq_len)[1], logits)) != pytest.approx(loss)


def test_long_pairs_lose_the_start_of_the_prompt():
    tokenizer = train_tokenizer("char", ["abcdef"])
    encoded = encode_pairs(tokenizer, [("abcdef", "fed")], seq_len=7)
    assert encoded.truncated == 1
    # 3 prompt chars + SEP + 3 completion chars + EOS = seq_len + 1 tokens (seq_len model inputs)
    assert tokenizer.decode(encoded.sequences[0]) == "deffed" and len(encoded.sequences[0]) == 8
    assert encoded.scored_from[0] == 3


@pytest.mark.graph_mode  # traced training, as users train
def test_a_tiny_model_learns_to_sort_three_letters(sort_run, sort_pairs):
    metrics = sort_run.evaluate(str(sort_pairs))
    assert metrics["exact_match"] >= 0.95, metrics
    assert set(metrics) == {"exact_match", "chrf", "loss", "examples", "chrf_signature"}
    assert metrics["examples"] == 210 and metrics["chrf"] > 90
    assert sort_run.generate_batch(["gca", "fbd"], beam_width=3) == ["acg", "bdf"]


def test_generate_through_the_cli(sort_run):
    result = invoke("predict", sort_run.path, "bac", "gfe", "--beam", "3")
    assert result.exit_code == 0 and result.output.splitlines() == ["abc", "efg"]
    # sample prints the completion alone (not the prompt before it)
    assert invoke("sample", sort_run.path, "--prompt", "dca", "--temperature", "0").output == "acd\n"
    listing = invoke("train", "generate", "--help").output
    assert "--from" in listing and "--seq-len" in listing


def test_from_run_starts_from_an_lm_run(lm_run, tmp_path):
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [("the cat", " sat"), ("a dog", " ran")] * 20)
    run = seqtasks.train("generate", data=str(pairs), from_run=str(lm_run.path), epochs=1, steps_per_epoch=1,
                         batch_size=8, lr=0.0, weight_decay=0.0, precision="fp32", sample_examples=0,
                         out=str(tmp_path / "gen"), verbose=0)
    settings = run.record["settings"]
    assert (settings["arch"], settings["units"], settings["seq_len"]) == ("gru", 32, 16)  # inherited shape
    assert run.preprocessor.fingerprint() == lm_run.preprocessor.fingerprint()
    for ours, theirs in zip(run.model.get_weights(), lm_run.model.get_weights()):
        np.testing.assert_array_equal(ours, theirs)  # learning rate 0: still the lm's weights
    with pytest.raises(UserError, match="differs from the --from run"):
        seqtasks.train("generate", data=str(pairs), from_run=str(lm_run.path), units=64,
                       out=str(tmp_path / "bad"), verbose=0)
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("case", ["not-json", "missing-key", "three-columns"])
def test_bad_pairs_are_one_line_errors_and_no_run(case, tmp_path):
    data = tmp_path / ("pairs.tsv" if case == "three-columns" else "pairs.jsonl")
    data.write_text({"not-json": '{"prompt": "a", "completion": "b"}\n{"prompt": oops}\n',
                     "missing-key": '{"prompt": "a", "completion": "b"}\n{"prompt": "a"}\n',
                     "three-columns": "a\tb\na\tb\tc\n"}[case])
    result = CliRunner().invoke(cli, ["train", "generate", "--data", str(data), "--out", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("seqtasks: error:") and "line 2" in result.stderr
    assert not (tmp_path / "run").exists()


def test_pairs_reader_reads_tsv_with_a_header_and_escapes(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("prompt\tcompletion\nlist two\tone\\ntwo\n\ntab\ta\\tb\n")
    assert list(open_pair_source(str(path)).pairs()) == [("list two", "one\ntwo"), ("tab", "a\tb")]
    sniffed = tmp_path / "pairs.data"
    sniffed.write_text('{"prompt": "x", "completion": "y", "id": 3}\n')
    assert list(open_pair_source(str(sniffed)).pairs()) == [("x", "y")]


# --- sampling: the CLI and the Python API -------------------------------------------------------------

def sample(run, *args):
    result = invoke("sample", run.path, "--max-new-tokens", "12", *args)
    assert result.exit_code == 0, result.output
    return result.output


def test_top_k_1_and_beam_1_give_the_same_text(lm_run):
    greedy = sample(lm_run, "--prompt", "the ", "--top-k", "1")
    assert greedy == sample(lm_run, "--prompt", "the ", "--beam", "1")
    assert greedy == sample(lm_run, "--prompt", "the ", "--temperature", "0")
    assert greedy.startswith("the ") and len(greedy) > len("the \n")


def test_several_temperatures_print_a_block_each(lm_run, tmp_path):
    output = sample(lm_run, "--prompt", "a", "-n", "2", "--seed", "3", "--temperature", "0.5",
                    "--temperature", "1.5")
    lines = output.splitlines()
    assert lines[0] == "=== temperature 0.5 ===" and "=== temperature 1.5 ===" in lines
    assert lines.count("--- sample 1 ---") == 2 and lines.count("--- sample 2 ---") == 2
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("the\na dog\n")
    out = tmp_path / "samples.jsonl"
    sample(lm_run, "--input", prompts, "--json", "--seed", "1", "--temperature", "0.7", "--temperature", "1.0",
           "--top-p", "0.9", "--no-repeat-ngram", "3", "--output", out)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["prompt"], r["temperature"]) for r in records] == [("the", 0.7), ("a dog", 0.7), ("the", 1.0),
                                                                  ("a dog", 1.0)]
    assert all(len(r["samples"]) == 1 for r in records)
    nbest = json.loads(sample(lm_run, "--prompt", "the", "--beam", "3", "-n", "3", "--json"))
    assert len(nbest["samples"]) == 3 and nbest["beam"] == 3


def test_stop_strings_cut_the_text_streamed_or_not(lm_run):
    full = sample(lm_run, "--prompt", "the", "--temperature", "0", "--max-new-tokens", "30")[len("the"):-1]
    for stop in (full[3:5], full[4]):  # a two-character stop string (text) and a one-character one (ids)
        expected = "the" + full[:full.index(stop)]
        streamed = sample(lm_run, "--prompt", "the", "--temperature", "0", "--max-new-tokens", "30", "--stop", stop)
        assert streamed == expected + "\n"
        batch = json.loads(sample(lm_run, "--prompt", "the", "--temperature", "0", "--max-new-tokens", "30",
                                  "--stop", stop, "--json"))
        assert "the" + batch["samples"][0] == expected
    assert lm_run.sample("the", temperature=0, max_new_tokens=30, stop=["\\n"]) == full  # no such text: no cut


def test_generate_batch_decodes_prompts_together(lm_run):
    options = dict(max_new_tokens=8, temperature=0.0)
    assert lm_run.generate_batch(["the", "a dog"], **options) == [lm_run.sample("the", **options),
                                                                 lm_run.sample("a dog", **options)]
    several = lm_run.generate_batch(["the", "a"], max_new_tokens=5, num_return_sequences=2, seed=0)
    assert [len(s) for s in several] == [2, 2]
    with pytest.raises(UserError, match="unknown generation option"):
        lm_run.sample("the", beam=2)
