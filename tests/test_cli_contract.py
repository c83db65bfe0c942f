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
