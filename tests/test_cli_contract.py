"""The CLI and the API know tasks only through the task contract (tasks/base.py): no task name, no
`hasattr` on a task. A new task then needs no edit of either file."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TASK_NAMES = ("lm", "generate", "classify", "tag", "translate", "caption")
DOORS = ("seqtasks/cli.py", "seqtasks/api.py")


def test_the_names_checked_are_the_registered_tasks():
    from seqtasks.tasks import TASKS

    assert set(TASKS) == set(TASK_NAMES)


@pytest.mark.parametrize("path", DOORS)
def test_no_task_name(path):
    """Whole lowercase words anywhere in the file (code, help text, docstrings, comments)."""
    pattern = re.compile(r"\b(" + "|".join(TASK_NAMES) + r")\b")
    found = [f"{path}:{number}: {line.strip()}" for number, line in
             enumerate((ROOT / path).read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert not found, "task names in the CLI/API:\n" + "\n".join(found)


@pytest.mark.parametrize("path", DOORS)
def test_no_hasattr_on_a_task(path):
    found = [line.strip() for line in (ROOT / path).read_text(encoding="utf-8").splitlines()
             if re.search(r"hasattr\([^,]*task", line)]
    assert not found, found


def test_the_checks_would_catch_a_task_name():
    """The patterns above are the ones that flag the old code."""
    pattern = re.compile(r"\b(" + "|".join(TASK_NAMES) + r")\b")
    assert pattern.search('    if run.task.name == "lm" and not quiet:')
    assert pattern.search('help="translate, caption: beam width."')
    assert not pattern.search("generate_batch(run, prompts)")
    assert re.search(r"hasattr\([^,]*task", 'if not hasattr(loaded.task, "generate_batch"):')


def _help(*args: str) -> str:
    from click.testing import CliRunner

    from seqtasks.cli import cli

    result = CliRunner().invoke(cli, [*args, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


def _option_help(output: str, flag: str) -> str:
    """The help text of one option in click's --help output (its first line and continuation lines)."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(flag + " ") or line.strip() == flag)
    text = [lines[start].strip()[len(flag):]]
    for line in lines[start + 1:]:
        if line.strip().startswith("-") or not line.startswith(" " * 10):
            break
        text.append(line.strip())
    return " ".join(" ".join(text).split())


def test_quiet_means_the_same_on_every_verb():
    helps = {verb: _option_help(_help(*verb.split()), "--quiet") for verb in ("train lm", "train caption", "resume",
                                                                               "finetune")}
    assert len(set(helps.values())) == 1, helps
    assert "samples" in helps["resume"]


def test_finetune_has_every_setting_of_the_training_loop_and_of_the_data():
    """Written once in the config dataclasses: finetune offers each TrainConfig setting and the data
    settings of every task (translate's --src/--tgt, caption's --images/--captions)."""
    import dataclasses

    from seqtasks.config import TrainConfig
    from seqtasks.tasks import TASKS

    output = _help("finetune")
    wanted = {f.name for f in dataclasses.fields(TrainConfig)}
    for card in TASKS.values():
        wanted |= {f.name for f in dataclasses.fields(card.Config) if f.metadata.get("path") == "data"}
    missing = [name for name in sorted(wanted) if f"--{name.replace('_', '-')} " not in output]
    assert not missing, missing
    for flag in ("--src", "--tgt", "--images", "--captions", "--data", "--valid", "--freeze", "--extend-labels",
                 "--config", "--out", "--quiet"):
        assert f"{flag} " in output
    assert "translate: training source sentences" in " ".join(output.split())


def test_sample_help_says_when_text_streams():
    text = " ".join(_help("sample").split())
    assert "no --beam, no --json, no --output" not in text
    assert "streams to the terminal as it is generated" in text and "--beam" in text
