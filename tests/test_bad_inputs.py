"""Every file a user names, damaged every way a user can damage it, gives one line and exit 1.

The matrix is data: for each verb, the file arguments it takes per task (ARGUMENTS), and for each
kind of argument the ways it can be bad (INPUT_DAMAGE, OUTPUT_DAMAGE, RUN_DAMAGE). Each case runs the
CLI in-process and checks what a user sees: exit status 1, exactly one line on stderr, starting
`seqtasks: error:`, naming the file, and no traceback.

The runs are built once per module without training (a forward pass builds the weights; they are
saved as model.keras and checkpoints/last.keras), so the matrix stays fast; a case that damages a
run works on a copy.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Callable

import pytest
from click.testing import CliRunner

import seqtasks
import seqtasks.api
from seqtasks.cli import cli
from seqtasks.runs import atomic_save_model
from seqtasks.training import TrainState

ROOT = Path(__file__).resolve().parent.parent
SHAPES = ROOT / "data" / "shapes"
IMAGES = sorted((SHAPES / "images").iterdir())[:8]
TASKS = ("lm", "generate", "classify", "tag", "translate", "caption")
GENERATIVE = ("lm", "generate")
SMALL = dict(epochs=2, steps_per_epoch=2, batch_size=4, warmup_steps=1, precision="fp32", units=8, layers=1)

# ---- good files, one per format: each holds one "é" on line 3, so a latin-1 copy is bad there ----
GOOD = {
    "text": "the cat sat on the mat.\na dog ran to the log.\nthe café is open.\n" * 4,
    "pairs": "".join(json.dumps({"prompt": f"rev: {a} {b}", "completion": f"{b} {a}"}, ensure_ascii=False) + "\n"
                     for a, b in [("ab", "cd"), ("ef", "gh"), ("café", "ij")] * 6),
    "labeled": "text\tlabel\n" + "good film\tpos\nthe café was awful\tneg\n" * 10,
    "conll": "John PER\nsaw O\ncafé O\nParis LOC\n\n" * 8,
    "parallel": "ab cd\tcd ab\nef gh\tgh ef\ncafé ij\tij café\n" * 6,
    "lines": "ab cd\nef gh\ncafé ij\n" * 6,
    "captions": "image,caption\n" + "".join(f"{p.name},a small red circle\n{p.name},a café shape\n" for p in IMAGES),
    "toml": "epochs = 1\n\n# café\n",
    "image_paths": "".join(f"{p}\n" for p in IMAGES[:2]) + "café.png\n",
}
BAD_LINE = 3  # where the "é" is
# a record cut short, per format (appended to the good file): what a file truncated mid-write looks like
# (plain text cannot be cut short except inside a character: its cut ends in half of a two-byte "é")
CUT = {"text": b"the caf\xc3", "lines": b"ab caf\xc3", "image_paths": b"caf\xc3", "pairs": b'{"prompt": "rev: ab',
       "labeled": b"a text without its label", "conll": b"Berlin", "parallel": b"a source without a target",
       "captions": IMAGES[0].name.encode(), "toml": b"units = "}


def write_input(path: Path, kind: str, fmt: str) -> None:
    """Make `path` a damaged file of format `fmt` (kind: missing, empty, folder, binary, latin1, truncated)."""
    if kind == "missing":
        return
    if kind == "folder":
        path.mkdir(parents=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    content = {"empty": lambda: b"",
               "binary": lambda: b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x01" * 64,
               "latin1": lambda: GOOD[fmt].encode("latin-1"),
               "truncated": lambda: GOOD[fmt].encode("utf-8") + CUT[fmt],
               }[kind]()
    path.write_bytes(content)


INPUT_DAMAGE = ("missing", "empty", "folder", "binary", "latin1", "truncated")
OUTPUT_DAMAGE = ("folder", "no-parent", "under-a-file", "unwritable", "read-only")


def write_output(tmp_path: Path, kind: str, name: str) -> Path:
    """A path that cannot be written to, for --output / --plot."""
    if kind == "folder":
        (tmp_path / name).mkdir()
        return tmp_path / name
    if kind == "no-parent":
        return tmp_path / "no-such-folder" / name
    if kind == "under-a-file":
        (tmp_path / "a-file").write_text("x")
        return tmp_path / "a-file" / name
    if kind == "unwritable":  # sysfs refuses new files, even to root
        if not os.path.isdir("/sys/kernel"):
            pytest.skip("no /sys to write to")
        return Path("/sys") / name
    if os.geteuid() == 0:  # root writes through any permission bits
        pytest.skip("a read-only folder does not stop root")
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o500)
    return folder / name


# ---- the runs and their good data -----------------------------------------------------------------
DATA_FILES = {"lm": {"data": ("corpus.txt", "text")}, "generate": {"data": ("pairs.jsonl", "pairs")},
              "classify": {"data": ("reviews.tsv", "labeled")}, "tag": {"data": ("ner.conll", "conll")},
              "translate": {"data": ("pairs.tsv", "parallel")},
              "caption": {"captions": ("captions.csv", "captions")}}
RUN_SETTINGS = {"lm": dict(seq_len=8, sample_tokens=0, arch="gru"),
                "generate": dict(seq_len=16, sample_examples=0, arch="gru"),
                "classify": dict(tokenizer="word"), "tag": dict(char_units=4, char_dim=4),
                "translate": dict(tokenizer="word", arch="seq2seq", sample_examples=0),
                "caption": dict(image_size=16, cnn_blocks=1, cnn_filters=4, sample_examples=0, valid_fraction=0.25)}


def build_without_training(model, run, plan, cfg, state=None, verbose=0, shown_path=None):
    """Stands in for training.fit: one forward pass builds the weights, saved as a checkpoint would be."""
    model(next(iter(plan.train_batches(0, 0)))[0])
    atomic_save_model(model, run.best_model_path)
    atomic_save_model(model, run.last_checkpoint_path)
    run.write_train_state(TrainState(epoch=1, global_step=2).__dict__)  # unfinished: resume continues it
    return state


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("good")
    for fmt, text in GOOD.items():
        (folder / f"good.{fmt}").write_text(text, encoding="utf-8")
    for files in DATA_FILES.values():
        for name, fmt in files.values():
            (folder / name).write_text(GOOD[fmt], encoding="utf-8")
    (folder / "images.list").write_text("".join(f"{p}\n" for p in IMAGES[:2]))  # good inputs of caption predict
    (folder / "images").mkdir()
    for image in IMAGES:
        shutil.copy(image, folder / "images" / image.name)
    return folder


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("runs")
    made = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(seqtasks.api, "fit", build_without_training)
        for task in TASKS:
            sources = {flag: str(data / name) for flag, (name, _) in DATA_FILES[task].items()}
            if task == "caption":
                sources["images"] = str(data / "images")
            seqtasks.train(task, out=str(folder / task), verbose=0, **SMALL, **RUN_SETTINGS[task], **sources)
            made[task] = folder / task
    return made


# ---- the matrix ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Case:
    verb: str
    task: str
    flag: str       # the argument made bad ("RUN" for the run folder, "TEXT" for a positional input)
    kind: str       # how it is bad
    fmt: str = ""   # the good file's format, for input damage

    def __str__(self) -> str:
        return f"{self.verb}-{self.task}-{self.flag.lstrip('-')}-{self.kind}"


def good_args(verb: str, task: str, data: Path, run: Path, out: Path) -> dict[str, str]:
    """The arguments of a verb that succeeds, flag -> value; a case replaces one of them."""
    if verb in ("train", "finetune", "evaluate"):
        sources = {"--" + flag: str(data / name) for flag, (name, _) in DATA_FILES[task].items()}
        if task == "caption":
            sources["--images"] = str(data / "images")
        if verb == "train":  # tiny settings: a case that wrongly trains ends soon, and fails
            tiny = {f"--{key.replace('_', '-')}": str(value) for key, value in {**SMALL, **RUN_SETTINGS[task]}.items()}
            return {**sources, **tiny, "--out": str(out), "--epochs": "1", "--steps-per-epoch": "1", "--quiet": ""}
        if verb == "finetune":
            return {"RUN": str(run), **sources, "--out": str(out), "--epochs": "1", "--quiet": ""}
        return {"RUN": str(run), **sources}
    if verb == "predict":
        return {"RUN": str(run), "--input": str(data / ("images.list" if task == "caption" else "good.lines"))}
    if verb == "sample":
        return {"RUN": str(run), "--prompt": "ab", "--max-new-tokens": "2"}
    return {"RUN": str(run), **({"--quiet": ""} if verb == "resume" else {})}


def command(verb: str, task: str, args: dict[str, str]) -> list[str]:
    line = [verb] + ([task] if verb == "train" else [])
    for flag, value in args.items():
        if flag == "RUN":
            line.insert(1, value)
        elif flag == "TEXT":
            line.append(value)
        else:
            line += [flag] if value == "" else [flag, value]
    return line


# The file arguments of each verb, per task: flag -> the format of its good file.
def input_arguments(verb: str, task: str) -> dict[str, str]:
    data_fmt = {flag: fmt for flag, (_, fmt) in DATA_FILES[task].items()}
    if verb in ("train", "finetune"):
        flags = {"--" + flag: fmt for flag, fmt in data_fmt.items()}
        flags["--valid"] = data_fmt.get("data", data_fmt.get("captions"))
        if verb == "train" and task == "translate":
            flags.update({"--src": "lines", "--tgt": "lines"})
        return {**flags, "--config": "toml"}
    if verb == "evaluate":
        flags = {"--" + flag: fmt for flag, fmt in data_fmt.items()}
        return {**flags, **({"--src": "lines", "--tgt": "lines"} if task == "translate" else {})}
    if verb == "predict" or (verb == "sample" and task in GENERATIVE):
        return {"--input": "image_paths" if task == "caption" else "lines"}
    return {}


def output_arguments(verb: str, task: str) -> list[str]:
    if verb in ("train", "finetune"):
        return ["--out"]
    if verb == "predict":
        return ["--output"] + (["--plot"] if task in ("translate", "caption") else [])
    return ["--output"] if verb == "sample" and task in GENERATIVE else []


RUN_VERBS = ("evaluate", "predict", "sample", "info", "resume", "finetune")
LOADS_MODEL = ("evaluate", "predict", "sample", "finetune")
# A damaged file inside the run: (file, kind) -> the verbs that must notice it.
RUN_DAMAGE = {
    **{(".", kind): RUN_VERBS for kind in ("missing", "a-file", "empty-folder")},
    **{("config.json", kind): RUN_VERBS for kind in ("empty", "binary", "latin1", "truncated", "folder", "not-an-object")},
    **{("model.keras", kind): LOADS_MODEL for kind in ("empty", "binary", "truncated", "folder", "lambda", "foreign")},
    **{("checkpoints/last.keras", kind): ("resume",) for kind in ("empty", "binary", "truncated", "folder", "lambda")},
    **{("checkpoints/train_state.json", kind): ("info", "resume")
       for kind in ("empty", "binary", "latin1", "truncated", "folder", "not-an-object")},
    **{("tokenizer", kind): ("evaluate", "predict", "sample") for kind in ("missing", "truncated")},
    **{(file, kind): ("info",) for file in ("history.csv", "metrics.json") for kind in ("binary", "folder")},
}


def cases() -> list[Case]:
    found = []
    for verb in ("train", *RUN_VERBS):
        for task in TASKS:
            if verb == "sample" and task not in GENERATIVE:
                continue
            for flag, fmt in input_arguments(verb, task).items():
                found += [Case(verb, task, flag, kind, fmt) for kind in INPUT_DAMAGE]
            for flag in output_arguments(verb, task):  # a run folder --out that exists is fine: "already exists"
                found += [Case(verb, task, flag, kind) for kind in OUTPUT_DAMAGE
                          if not (flag == "--out" and kind in ("folder", "no-parent"))]
            if verb == "predict" and task == "caption":
                found += [Case(verb, task, "TEXT", kind, "image") for kind in ("missing", "empty", "folder", "binary",
                                                                                "truncated")]
            if verb == "train" and task == "caption" or verb == "evaluate" and task == "caption":
                found += [Case(verb, task, "--images", kind) for kind in ("missing", "a-file", "empty-folder")]
            if verb != "train":
                found += [Case(verb, task, f"RUN:{file}", kind) for (file, kind), verbs in RUN_DAMAGE.items()
                          if verb in verbs]
    return found


# ---- damaging a run ---------------------------------------------------------------------------------
@functools.cache
def code_model_bytes(foreign: bool) -> bytes:
    """Made once: keras is slow to build and save even a tiny model."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.keras"
        code_model(path, foreign)
        return path.read_bytes()


def code_model(path: Path, foreign: bool) -> None:
    """A .keras file holding a Lambda (Python code) or a layer class seqtasks does not know."""
    import keras

    inputs = keras.Input((3,))
    if foreign:
        config = {"module": "evil.layers", "class_name": "Payload", "registered_name": "evil>Payload", "config": {}}
        model = keras.Model(inputs, keras.layers.Identity()(inputs))
        model.save(path)
        with zipfile.ZipFile(path) as archive:
            files = {name: archive.read(name) for name in archive.namelist()}
        model_config = json.loads(files["config.json"])
        model_config["config"]["layers"][1].update(config)
        files["config.json"] = json.dumps(model_config).encode()
        with zipfile.ZipFile(path, "w") as archive:
            for name, content in files.items():
                archive.writestr(name, content)
        return
    keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs)).save(path)


def damage_run(run: Path, tmp_path: Path, file: str, kind: str) -> tuple[Path, str]:
    """A damaged copy of `run`; returns it and what the error line must name."""
    copy = tmp_path / "run"
    if file == ".":
        if kind == "a-file":
            copy.write_text("not a run\n")
        elif kind == "empty-folder":
            copy.mkdir()
        return copy, copy.name
    shutil.copytree(run, copy)
    target = copy / file
    if target.is_dir():
        shutil.rmtree(target)
    else:
        target.unlink(missing_ok=True)
    if kind == "truncated" and (run / file).is_dir():  # every file of the folder cut in half
        shutil.copytree(run / file, target)
        for part in (p for p in target.rglob("*") if p.is_file()):
            part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    elif kind == "folder":
        target.mkdir()
    elif kind == "empty":
        target.write_bytes(b"")
    elif kind == "binary":
        target.write_bytes(b"\x00\x13\x99garbage" * 50)
    elif kind == "truncated":
        original = (run / file).read_bytes()
        target.write_bytes(original[: len(original) // 2])
    elif kind == "latin1":
        text = json.loads((run / file).read_text())
        text["note"] = "café"
        target.write_bytes(json.dumps(text, indent=2, ensure_ascii=False).encode("latin-1"))
    elif kind == "not-an-object":
        target.write_text("[1, 2, 3]\n")
    elif kind in ("lambda", "foreign"):
        target.write_bytes(code_model_bytes(foreign=kind == "foreign"))
    return copy, Path(file).name


def make_bad(case: Case, args: dict[str, str], data: Path, run: Path, tmp_path: Path) -> str:
    """Put the case's damage into args; return what the error line must name."""
    if case.flag.startswith("RUN:"):
        copy, named = damage_run(run, tmp_path, case.flag[4:], case.kind)
        args["RUN"] = str(copy)
        return named
    if case.flag == "--images":
        folder = tmp_path / "pictures"
        if case.kind == "a-file":
            folder.write_text("x")
        elif case.kind == "empty-folder":
            folder.mkdir()
        args["--images"] = str(folder)
        return folder.name
    if case.flag == "TEXT":  # an image path given to caption predict
        image = tmp_path / "photo.png"
        if case.kind == "folder":
            image.mkdir()
        elif case.kind == "empty":
            image.write_bytes(b"")
        elif case.kind == "binary":
            image.write_bytes(b"\x00garbage" * 40)
        elif case.kind == "truncated":
            image.write_bytes(IMAGES[0].read_bytes()[:60])
        args.pop("--input")
        args["TEXT"] = str(image)
        return image.name
    if case.flag in ("--output", "--plot", "--out"):
        path = write_output(tmp_path, case.kind, {"--plot": "out.png", "--out": "new-run"}.get(case.flag, "out.txt"))
        args[case.flag] = str(path)
        if case.flag == "--plot":
            args["TEXT"] = str(IMAGES[0]) if case.task == "caption" else "ab cd"
            args.pop("--input")
        return path.name
    name = {"lines": "side.txt", "toml": "settings.toml", "image_paths": "inputs.txt"}.get(case.fmt, "bad.data")
    path = tmp_path / name
    write_input(path, case.kind, case.fmt)
    if case.flag == "--input":
        args.pop("--prompt", None)
    if case.flag in ("--src", "--tgt"):
        args.pop("--data", None)
        args["--src"] = args["--tgt"] = str(data / "good.lines")
    args[case.flag] = str(path)
    return path.name


@pytest.mark.parametrize("case", cases(), ids=str)
def test_a_bad_file_is_one_line_and_exit_1(case: Case, data: Path, runs: dict[str, Path], tmp_path: Path):
    args = good_args(case.verb, case.task, data, runs[case.task], tmp_path / "new-run")
    named = make_bad(case, args, data, runs[case.task], tmp_path)
    result = CliRunner().invoke(cli, command(case.verb, case.task, args))
    lines = result.stderr.splitlines()
    assert "Traceback" not in result.output, result.output
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), (result.exception, result.output)
    assert len(lines) == 1 and lines[0].startswith("seqtasks: error: "), result.stderr
    assert named in lines[0], lines[0]
    assert "rerun with --debug" not in lines[0], lines[0]  # a UserError saying what to do, not the catch-all
    if case.kind == "latin1" and not case.flag.startswith("RUN:"):
        assert f"line {BAD_LINE}" in lines[0], lines[0]
    if case.kind in ("lambda", "foreign"):
        assert "never loads code" in lines[0], lines[0]
    assert not (tmp_path / "new-run").exists()


# ---- a run folder evaluate cannot write to: the metrics are printed, one warning line, exit 0 ----------
def unwritable_metrics(run: Path, tmp_path: Path, how: str) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    if how == "read-only":
        if os.geteuid() == 0:
            pytest.skip("a read-only folder does not stop root")
        copy.chmod(0o500)
    else:  # a folder where metrics.json goes: the write fails as on a read-only folder, even for root
        (copy / "metrics.json").unlink(missing_ok=True)
        (copy / "metrics.json").mkdir()
    return copy


@pytest.mark.parametrize("how", ["read-only", "blocked"])
def test_evaluate_prints_the_metrics_and_warns_in_one_line_when_it_cannot_save_them(how, data, runs, tmp_path):
    run = unwritable_metrics(runs["lm"], tmp_path, how)
    result = CliRunner().invoke(cli, ["evaluate", str(run), "--data", str(data / "corpus.txt"), "--json"])
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.stdout)) >= {"loss", "perplexity"}
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("seqtasks: warning: the metrics could not be saved"), lines
    assert "metrics.json" in lines[0]


def test_the_api_warns_too_and_still_returns_the_metrics(data, runs, tmp_path):
    run = seqtasks.load(unwritable_metrics(runs["lm"], tmp_path, "blocked"))
    with pytest.warns(seqtasks.errors.SeqtasksWarning, match="metrics.json"):
        metrics = run.evaluate(str(data / "corpus.txt"))
    assert metrics["perplexity"] > 1
