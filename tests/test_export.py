"""seqtasks export: a run's SavedModel takes strings, holds its tokenizer, and, loaded with
tf.saved_model.load by a process that never imports seqtasks, gives what predict and sample give.

Every task's tiny run (conftest's tiny_runs) is exported once (module fixture) and every signature
call is made by one subprocess that imports only TensorFlow (and loads tensorflow-text's SentencePiece
ops for the SentencePiece run), so the checks cost one TensorFlow start.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent

# the other process: TensorFlow only; the SentencePiece kernels by their op library when a model needs them
LOADER = r"""
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
requests = json.loads(sys.stdin.read())
results = {}
for key, request in requests.items():
    if request.get("op_library"):
        tf.load_op_library(request["op_library"])
    signature = tf.saved_model.load(request["dir"]).signatures[request["signature"]]
    specs = signature.structured_input_signature[1]
    arguments = {}
    for name, value in request["inputs"].items():
        if name == "images":
            value = [open(path, "rb").read() for path in value]
        arguments[name] = tf.constant(value, specs[name].dtype)
    results[key] = {name: tensor.numpy().tolist() for name, tensor in signature(**arguments).items()}
assert not any(name.startswith("seqtasks") for name in sys.modules)
print(json.dumps(results, default=lambda value: value.decode("utf-8")))
"""

SAMPLED = {"max_new_tokens": 20, "temperature": 1.0, "top_k": 0, "top_p": 0.9, "seed": 3}
TOP_K_SAMPLED = {"max_new_tokens": 10, "temperature": 1.5, "top_k": 5, "top_p": 1.0, "seed": 7}
GREEDY = {"max_new_tokens": 12, "temperature": 0.0, "top_k": 0, "top_p": 1.0, "seed": 0}


def _images(tiny_runs) -> list[str]:
    _, data = tiny_runs("caption")
    return [str(path) for path in sorted(Path(data["images"]).iterdir())[:3]]


def _requests(tiny_runs, folder: Path, spm_run) -> dict:
    from seqtasks.graph_text import sentencepiece_library

    exports = {}
    for task in ("lm", "generate", "classify", "tag", "translate", "caption"):
        run, _ = tiny_runs(task)
        exports[task] = str(run.export(folder / task))
    texts = {"lm": ["abc", "", "hgf"], "generate": ["abcd", "abe"], "classify": ["a good film", "a dull film", "",
             "words never seen!"], "tag": ["John saw Paris.", "", "Mary ran to John Mary Paris"],
             "translate": ["a f", "c h", ""]}
    requests = {task: {"dir": exports[task], "signature": "serving_default", "inputs": {"texts": inputs}}
                for task, inputs in texts.items()}
    requests["caption"] = {"dir": exports["caption"], "signature": "serving_default",
                           "inputs": {"images": _images(tiny_runs)}}
    for name, task, inputs, options in (("lm sampled", "lm", ["abc"], SAMPLED), ("lm greedy", "lm", ["abc", "h"], GREEDY),
                                        ("generate sampled", "generate", ["abc"], TOP_K_SAMPLED),
                                        ("translate sampled", "translate", ["a f"], SAMPLED)):
        requests[name] = {"dir": exports[task], "signature": "generate", "inputs": {"texts": inputs, **options}}
    if spm_run is not None:
        requests["spm"] = {"dir": str(spm_run.export(folder / "spm")), "signature": "generate",
                           "inputs": {"texts": ["abc", "de"], **SAMPLED}, "op_library": str(sentencepiece_library())}
    return requests


@pytest.fixture(scope="module")
def spm_run(tmp_path_factory):
    """A tiny SentencePiece language model, when tensorflow-text's kernels are installed."""
    from seqtasks.errors import UserError
    from seqtasks.graph_text import sentencepiece_library

    try:
        sentencepiece_library()
    except UserError:
        return None
    import seqtasks
    from conftest import TINY_TRAIN

    folder = tmp_path_factory.mktemp("spm-lm")
    (folder / "text.txt").write_text("the cat sat on the mat. a dog ran.\n" * 40)
    return seqtasks.train("lm", data=str(folder / "text.txt"), out=str(folder / "run"), tokenizer="spm",
                          vocab_size=40, arch="lstm", units=8, layers=1, seq_len=8, sample_tokens=0, **TINY_TRAIN)


@pytest.fixture(scope="module")
def served(tiny_runs, spm_run, tmp_path_factory):
    """Every request's outputs, from one process that imports only TensorFlow."""
    requests = _requests(tiny_runs, tmp_path_factory.mktemp("exports"), spm_run)
    done = subprocess.run([sys.executable, "-c", LOADER], input=json.dumps(requests), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_language_model_continues_prompts_as_predict_and_samples_as_sample_with_the_same_seed(tiny_runs, served):
    run, _ = tiny_runs("lm")
    assert served["lm"]["outputs"] == list(run.predict(["abc", "", "hgf"]))
    assert served["lm sampled"]["outputs"] == [run.sample("abc", **SAMPLED, xla=False)]
    greedy = {k: v for k, v in GREEDY.items() if k != "seed"}
    assert served["lm greedy"]["outputs"] == [run.sample(p, **greedy) for p in ("abc", "h")]


def test_a_generate_run_completes_prompts_as_predict_and_samples_with_top_k(tiny_runs, served):
    run, _ = tiny_runs("generate")
    assert served["generate"]["outputs"] == list(run.predict(["abcd", "abe"]))
    assert served["generate sampled"]["outputs"] == [run.sample("abc", **TOP_K_SAMPLED, xla=False)]


def test_a_classifier_gives_the_labels_and_probabilities_predict_gives(tiny_runs, served):
    run, _ = tiny_runs("classify")
    texts = ["a good film", "a dull film", "", "words never seen!"]
    out = served["classify"]
    for i, predicted in enumerate(run.predict(texts, top_labels=2)):
        assert out["label"][i] == predicted["label"]
        assert round(out["probability"][i], 4) == pytest.approx(predicted["probability"], abs=1e-4)
        assert out["labels"][i] == [r["label"] for r in predicted["top_k"]]
        assert np.allclose(out["probabilities"][i], [r["probability"] for r in predicted["top_k"]], atol=1e-4)
        assert sum(out["probabilities"][i]) == pytest.approx(1.0, abs=1e-5)


def test_a_tagger_gives_tokens_tags_and_entity_offsets_as_predict(tiny_runs, served):
    run, _ = tiny_runs("tag")
    out = served["tag"]
    for i, predicted in enumerate(run.predict(["John saw Paris.", "", "Mary ran to John Mary Paris"])):
        length = out["lengths"][i]
        assert out["tokens"][i][:length] == predicted["tokens"]
        assert out["tags"][i][:length] == predicted["tags"]
        count = out["entity_counts"][i]
        entities = [{"start": s, "end": e, "type": t, "text": x} for s, e, t, x in
                    zip(out["entity_starts"][i], out["entity_ends"][i], out["entity_types"][i], out["entity_texts"][i])]
        assert entities[:count] == predicted["entities"]


def test_a_translation_run_translates_as_predict_and_samples_as_sample(tiny_runs, served):
    run, _ = tiny_runs("translate")
    assert served["translate"]["outputs"] == list(run.predict(["a f", "c h", ""]))
    assert served["translate sampled"]["outputs"] == [run.sample("a f", **SAMPLED, xla=False)]


def test_a_captioner_captions_image_bytes_as_predict_captions_the_files(tiny_runs, served):
    run, _ = tiny_runs("caption")
    assert served["caption"]["outputs"] == list(run.predict(_images(tiny_runs)))


def test_a_sentencepiece_run_needs_only_the_tensorflow_text_kernels(spm_run, served):
    if spm_run is None:
        pytest.skip("tensorflow-text is not installed (pip install seqtasks[export])")
    assert served["spm"]["outputs"] == [spm_run.sample(p, **SAMPLED, xla=False) for p in ("abc", "de")]


def test_tflite_files_of_a_classifier_and_a_tagger_keep_the_string_signature(tiny_runs, tmp_path):
    """`seqtasks export --format tflite` writes model.tflite beside the SavedModel; its serving_default
    still takes texts (the CLI is run in this process: a new one would start TensorFlow again)."""
    import tensorflow as tf
    from click.testing import CliRunner

    from seqtasks.cli import cli

    run, _ = tiny_runs("classify")
    result = CliRunner().invoke(cli, ["export", str(run.path), "--out", str(tmp_path / "classify"), "--format", "tflite"])
    assert result.exit_code == 0, result.output
    assert "signatures serving_default" in result.output
    tagger, _ = tiny_runs("tag")
    tagger.export(tmp_path / "tag", "tflite")
    for task in ("classify", "tag"):
        signatures = tf.lite.Interpreter(model_path=str(tmp_path / task / "model.tflite")).get_signature_list()
        assert signatures["serving_default"]["inputs"] == ["texts"]
        info = json.loads((tmp_path / task / "serving.json").read_text())
        assert info["format"] == "tflite" and "Flex" in info["tflite"]


def test_an_existing_folder_or_an_unknown_format_is_one_error_line(tiny_runs, tmp_path):
    from seqtasks.errors import UserError

    run, _ = tiny_runs("classify")
    (tmp_path / "taken").mkdir()
    with pytest.raises(UserError, match="already exists"):
        run.export(tmp_path / "taken")
    from click.testing import CliRunner

    from seqtasks.cli import cli

    done = CliRunner().invoke(cli, ["export", str(run.path), "--out", str(tmp_path / "new"), "--format", "onnx"])
    assert done.exit_code != 0 and "Traceback" not in done.output and "onnx" in done.output
    assert not (tmp_path / "new").exists()
