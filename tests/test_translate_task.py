"""The translation task end to end: tiny models learn to reverse and to copy; BLEU, beam search, the CLI,
alignments and plots, streaming, fine-tuning, and every bad input as one clear line."""
import gzip
import json
import random

import keras
import numpy as np
import pytest
import sacrebleu
from click.testing import CliRunner

import seqtasks
from seqtasks import decoding
from seqtasks.api import resolve_task_config
from seqtasks.cli import cli
from seqtasks.errors import UserError
from seqtasks.metrics import bleu_and_chrf
from seqtasks.readers.parallel import open_parallel_source
from seqtasks.tasks import get_task
from seqtasks.tokenizers import BOS_ID, EOS_ID
from seqtasks.translator import Translator

TINY = dict(tokenizer="word", units=32, layers=2, heads=2, batch_size=32, lr=5e-3, warmup_steps=20, dropout=0.0,
            label_smoothing=0.0, precision="fp32", sample_examples=0, beam=1)
TINY_FLAGS = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]


def toy_pairs(kind: str, count: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    pairs = []
    for _ in range(count):
        words = [rng.choice("abcdefghij") for _ in range(rng.randint(3, 7))]
        pairs.append((" ".join(words), " ".join(words[::-1] if kind == "reverse" else words)))
    return pairs


def invoke(*args, input=None):
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("translate-data")
    files = {}
    for kind, seed in (("reverse", 0), ("copy", 1)):
        train, valid = toy_pairs(kind, 4000, seed), toy_pairs(kind, 200, seed + 10)
        files[kind] = {"train": train, "valid": valid}
        (folder / f"{kind}-train.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in train))
        (folder / f"{kind}-valid.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in valid))
        for split, pairs in (("train", train), ("valid", valid)):
            for side, index in (("src", 0), ("tgt", 1)):
                with gzip.open(folder / f"{kind}-{split}.{side}.gz", "wt") as out:
                    out.write("".join(pair[index] + "\n" for pair in pairs))
    files["folder"] = folder
    return files


@pytest.fixture(scope="module")
def reverse_run(data, tmp_path_factory):
    folder = data["folder"]
    return seqtasks.train("translate", data=str(folder / "reverse-train.tsv"), valid=str(folder / "reverse-valid.tsv"),
                          arch="transformer", epochs=4, out=str(tmp_path_factory.mktemp("runs") / "reverse"),
                          verbose=0, **TINY)


@pytest.fixture(scope="module")
def copy_run(data, tmp_path_factory):
    folder, out = data["folder"], tmp_path_factory.mktemp("runs") / "copy"
    result = invoke("train", "translate", "--src", folder / "copy-train.src.gz", "--tgt", folder / "copy-train.tgt.gz",
                    "--valid-src", folder / "copy-valid.src.gz", "--valid-tgt", folder / "copy-valid.tgt.gz",
                    "--arch", "seq2seq", "--attention", "luong", "--epochs", "2", "--out", out, "--quiet", *TINY_FLAGS)
    assert result.exit_code == 0, result.output
    assert "training finished" in result.output
    return out


def exact_match(run, pairs) -> float:
    outputs = list(run.predict([s for s, _ in pairs]))
    return float(np.mean([o == t for o, (_, t) in zip(outputs, pairs)]))


@pytest.mark.graph_mode  # traced training, as users train
def test_transformer_learns_to_reverse(reverse_run, data):
    assert exact_match(reverse_run, data["reverse"]["valid"]) >= 0.95


@pytest.mark.graph_mode  # traced training, as users train; 250 recurrent steps cost more eagerly
def test_seq2seq_with_attention_learns_to_copy(copy_run, data):
    assert exact_match(seqtasks.load(copy_run), data["copy"]["valid"]) >= 0.95


def test_run_folder_holds_the_model_and_one_joint_tokenizer(reverse_run):
    record = json.loads((reverse_run.path / "config.json").read_text())
    assert record["task"] == "translate" and record["data"]["train"]["sha256"]
    assert (reverse_run.path / "tokenizer" / "tokenizer.json").is_file()
    assert reverse_run.preprocessor.joint and (reverse_run.path / "model.keras").is_file()


def test_bleu_on_a_hand_made_example_equals_sacrebleu():
    hypotheses, references = ["the cat sat on the mat"], ["the cat sat on a mat"]
    scores = bleu_and_chrf(hypotheses, [references])
    # precisions 5/6, 3/5, 2/4, 1/3 and no brevity penalty
    assert scores["bleu"] == pytest.approx(100 * (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25)
    assert scores["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hypotheses, [references]).score)
    assert scores["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hypotheses, [references]).score)


def test_evaluate_scores_the_runs_own_translations_with_sacrebleu(reverse_run, data):
    pairs = data["reverse"]["valid"][:50]
    tsv = data["folder"] / "eval.tsv"
    tsv.write_text("".join(f"{s}\t{t}\n" for s, t in pairs))
    metrics = reverse_run.evaluate(str(tsv), beam=1)
    outputs = list(reverse_run.predict([s for s, _ in pairs], beam=1))
    assert metrics["bleu"] == pytest.approx(sacrebleu.corpus_bleu(outputs, [[t for _, t in pairs]]).score)
    assert metrics["sentences"] == 50 and "tok:13a" in metrics["bleu_signature"] and metrics["chrf"] > 0


def test_beam_search_never_scores_below_greedy(reverse_run, data):
    model, vocab = reverse_run.model, reverse_run.preprocessor
    translator = Translator(model, vocab, max_new_tokens=12)
    sources = [s for s, _ in data["reverse"]["valid"][:24]] + ["a", "j j j j j j j j j"]
    ids = [translator.source_ids(s) for s in sources]
    context = translator.encode(np.array([np.pad(i, (0, 10 - len(i))) for i in ids], np.int32))
    prompts = [[BOS_ID]] * len(sources)
    # length_penalty 0: the beam score is the sum of log p, the quantity greedy scores too
    _, greedy = decoding.generate_with_scores(
        model, prompts, decoding.GenerationConfig(max_new_tokens=12, temperature=0.0, stop_ids=(EOS_ID,)), context)
    _, beam = decoding.generate_with_scores(
        model, prompts, decoding.GenerationConfig(max_new_tokens=12, beam_width=4, length_penalty=0.0,
                                                  stop_ids=(EOS_ID,)), context)
    for greedy_score, beam_score in zip(greedy, beam):
        assert beam_score[0] >= greedy_score[0] - 1e-4


def test_cli_evaluate_json_and_predict_beam_n_best(copy_run, data):
    folder = data["folder"]
    result = invoke("evaluate", copy_run, "--src", folder / "copy-valid.src.gz", "--tgt", folder / "copy-valid.tgt.gz",
                    "--beam", "2", "--length-penalty", "0.6", "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output.strip().splitlines()[-1])
    assert {"bleu", "chrf", "bleu_signature", "chrf_signature"} <= set(metrics) and metrics["bleu"] > 90
    assert metrics["beam"] == 2 and metrics["length_penalty"] == 0.6
    result = invoke("predict", copy_run, "a b c", "d e f g", "--beam", "3", "--n-best", "2")
    lines = result.output.strip().splitlines()
    assert result.exit_code == 0 and len(lines) == 4
    assert lines[0].split("\t")[0] == "a b c" and lines[2].split("\t")[0] == "d e f g"
    assert float(lines[0].split("\t")[1]) >= float(lines[1].split("\t")[1])


def test_cli_alignments_and_attention_plot(reverse_run, tmp_path):
    result = invoke("predict", reverse_run.path, "a b c d", "--alignments", "--plot", tmp_path / "map.png")
    assert result.exit_code == 0, result.output
    translation, alignment = result.output.splitlines()[0].split("\t")  # then stderr's "attention map: FILE"
    assert translation == "d c b a"
    assert alignment == "3-0 2-1 1-2 0-3"  # reversing: target word j attends to source word 3 - j
    assert (tmp_path / "map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_missing_matplotlib_is_a_clear_error(reverse_run, tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ModuleNotFoundError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(UserError, match=r"pip install seqtasks\[plot\]"):
        list(reverse_run.predict(["a b"], plot=str(tmp_path / "x.png")))


def test_stdin_predictions_stream_one_line_at_a_time(reverse_run):
    consumed = []

    def lines():
        for line in ["a b c", "", "j i h"]:
            consumed.append(line)
            yield line

    outputs = reverse_run.predict(lines(), beam=1)
    assert next(outputs) == "c b a" and consumed == ["a b c"]
    assert list(outputs) == ["", "h i j"]
    result = invoke("predict", reverse_run.path, "--input", "-", input="a b c\nc d e f\n")
    assert result.output.strip().splitlines() == ["c b a", "f e d c"]


def test_finetune_starts_from_the_parents_weights_with_its_vocabulary(reverse_run, data, tmp_path):
    # a gentle lr: 2 steps at the full rate (the warmup shrinks to fit them) must not undo what the parent learned
    run = seqtasks.finetune(reverse_run.path, data=str(data["folder"] / "reverse-valid.tsv"), out=tmp_path / "ft",
                            epochs=1, steps_per_epoch=2, lr=3e-4, verbose=0)
    assert run.record["parent"]["path"] == str(reverse_run.path.resolve())
    assert run.record["settings"]["src"] == "" and run.record["settings"]["valid"] == ""
    assert list(run.predict(["a b c d"])) == ["d c b a"]


def test_a_new_seq2seq_starts_its_output_bias_at_the_log_frequency_of_target_words(data, tmp_path):
    folder = data["folder"]
    run = seqtasks.train("translate", data=str(folder / "copy-valid.tsv"), valid=str(folder / "copy-valid.tsv"),
                         arch="seq2seq", attention="bahdanau", out=str(tmp_path / "prior"), verbose=0,
                         **{**TINY, "lr": 0.0, "epochs": 1, "steps_per_epoch": 1})  # lr 0: the weights stay where they started
    tokenizer = run.preprocessor.target
    counts = np.ones(tokenizer.vocab_size)
    for _, target in data["copy"]["valid"]:
        for token in tokenizer.encode(target) + [EOS_ID]:
            counts[token] += 1
    bias = keras.ops.convert_to_numpy(run.model.output_layer.bias)
    np.testing.assert_allclose(bias, np.log(counts / counts.sum()), rtol=1e-5)
    word = tokenizer.encode("a")[0]
    assert bias[word] > bias[BOS_ID]  # a target word is more likely than a token that never is one


BAD = {
    "mismatched line counts": (["a", "b", "c"], ["x", "y"], "different numbers of lines", "line 3"),
    "empty target side": (["a", "b", "c"], ["x", "", "z"], "target side of a pair is empty", "line 2"),
}


@pytest.mark.parametrize("case", ["mismatched line counts", "empty target side", "missing file", "no tab",
                                  "one side", "twice", "heads"])
def test_bad_input_is_one_line_exit_1_and_no_run(case, tmp_path, data):
    src, tgt, tsv = tmp_path / "s.txt", tmp_path / "t.txt", tmp_path / "p.tsv"
    out = tmp_path / "run"
    expected = {"missing file": "no such file", "no tab": "line 2", "one side": "--tgt is missing",
                "twice": "given twice", "heads": "not divisible"}
    args = ["--src", src, "--tgt", tgt]
    if case in BAD:
        src_lines, tgt_lines, message, line = BAD[case]
        src.write_text("\n".join(src_lines) + "\n")
        tgt.write_text("\n".join(tgt_lines) + "\n")
        expected[case] = line
        assert message
    elif case == "missing file":
        src.write_text("a\n")
    elif case == "no tab":
        tsv.write_text("a\tb\nc d\n")
        args = ["--data", tsv]
    elif case == "one side":
        src.write_text("a\n")
        args = ["--src", src]
    elif case == "twice":
        src.write_text("a\n")
        tgt.write_text("b\n")
        tsv.write_text("a\tb\n")
        args += ["--data", tsv]
    elif case == "heads":
        args = ["--data", data["folder"] / "copy-valid.tsv", "--units", "30", "--heads", "4"]
    result = invoke("train", "translate", *args, "--out", out, "--quiet")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("seqtasks: error:") and expected[case] in lines[0], result.output
    if case in BAD:
        assert BAD[case][2] in lines[0]
    assert not out.exists()


def test_reader_accepts_extra_columns_skips_blank_pairs_and_reads_gz(tmp_path, data):
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("a b\tx y\tCC-BY someone\n\n  c \t z \n")
    assert list(open_parallel_source(table=str(tsv)).pairs()) == [("a b", "x y"), ("c", "z")]
    folder = data["folder"]
    source = open_parallel_source(source=str(folder / "copy-valid.src.gz"), target=str(folder / "copy-valid.tgt.gz"))
    assert list(source.pairs()) == data["copy"]["valid"]


def test_no_data_means_the_bundled_toy_pairs():
    task = get_task("translate")
    cfg = resolve_task_config(task, None, {})
    data = task.read(cfg)
    pairs = list(data.valid.pairs())
    assert len(pairs) == 1000 and all(source.endswith(" .") and target.endswith(" .") for source, target in pairs)
    assert cfg.data.endswith("train.tsv.gz")
