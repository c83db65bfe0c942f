"""Help answers before TensorFlow starts: `seqtasks --help`, `tasks` and every --help import neither
TensorFlow nor Keras, nor FastAPI and uvicorn, which only `seqtasks serve` needs (a structural check;
the README gives the measured times). The API still loads TensorFlow and registers the Keras classes
when it is used."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# runs cli.py as `python cli.py ARGS` would, then prints which heavy modules were imported
PROBE = """
import json, runpy, sys
sys.argv = ["cli.py", *json.loads(sys.argv[1])]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as exit:
    code = exit.code
else:
    code = 0
print(json.dumps({"code": code, "heavy": sorted({m.split(".")[0] for m in sys.modules}
                                                & {"tensorflow", "keras", "fastapi", "uvicorn"})}))
"""

VERBS = ("train", "resume", "finetune", "evaluate", "predict", "sample", "info", "tasks", "diagnose", "serve",
         "embeddings")


def probe(*args: str) -> dict:
    result = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    *output, report = result.stdout.strip().splitlines()
    return {**json.loads(report), "output": "\n".join(output)}


@pytest.mark.parametrize("args", [("--help",), ("tasks",), ("train", "--help"), ("train", "lm", "--help"),
                                  ("train", "caption", "--help"), ("diagnose", "gradients", "--help"),
                                  *((verb, "--help") for verb in VERBS)],
                         ids=" ".join)
def test_help_imports_no_tensorflow(args):
    result = probe(*args)
    assert result["code"] == 0
    assert result["output"].strip(), "the command printed nothing"
    assert result["heavy"] == [], f"{' '.join(args)} imported {result['heavy']}"


def test_the_probe_sees_tensorflow_when_a_command_loads_it(tmp_path):
    """A command that opens a run imports TensorFlow: the probe above would notice it."""
    result = probe("info", str(tmp_path / "no-such-run"))
    assert result["code"] == 1
    assert "tensorflow" in result["heavy"]


def test_import_seqtasks_is_light_its_api_is_there_and_keras_then_loads_a_run(tiny_runs):
    """One process: `import seqtasks` starts no TensorFlow, the API's first use does, and Keras (safe
    mode) then loads a run's model file, its classes registered by the API's import."""
    run, _ = tiny_runs("tag")
    code = ("import sys, seqtasks; assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules; "
            "assert callable(seqtasks.load) and seqtasks.Run.__name__ == 'Run'; print('tensorflow' in sys.modules); "
            "import keras, seqtasks.api; "
            f"model = keras.saving.load_model({str(run.directory.model_file())!r}, safe_mode=True); "
            "print(type(model).__name__)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "True"  # the API's first use started TensorFlow
    assert lines[-1] == type(run.model).__name__


def test_the_task_cards_need_no_tensorflow():
    code = ("import sys; from seqtasks.tasks import TASKS; import dataclasses; "
            "[dataclasses.fields(card.Config) for card in TASKS.values()]; "
            "print(sorted(TASKS), sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras'}))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "['caption', 'classify', 'generate', 'lm', 'tag', 'translate'] []"


def test_every_task_class_is_its_card():
    """A task class inherits its card, so name, settings and help are written once."""
    from seqtasks.tasks import TASKS, task_classes

    classes = task_classes()
    assert set(classes) == set(TASKS)
    for name, card in TASKS.items():
        assert issubclass(classes[name], card) and classes[name].Config is card.Config


def test_output_cut_short_by_a_closed_pipe_ends_quietly():
    """`seqtasks tasks | head -1`: the reader closed the pipe; no error line, exit 0. (`true` has
    closed its end long before Python starts writing, so the write always fails.)"""
    shell = f"{sys.executable} cli.py tasks | true; exit ${{PIPESTATUS[0]}}"
    result = subprocess.run(["bash", "-c", shell], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stderr == "", result.stderr
