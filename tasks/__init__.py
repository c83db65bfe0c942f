"""The task registry: every task by name. The CLI and seqtasks.api discover tasks here."""
from __future__ import annotations

from seqtasks.errors import UserError


def task_classes() -> dict:
    from seqtasks.tasks.lm import LanguageModelTask

    return {cls.name: cls for cls in (LanguageModelTask,)}


def get_task(name: str):
    classes = task_classes()
    if name not in classes:
        raise UserError(f"unknown task {name!r}", fix=f"choose one of: {', '.join(classes)} (see `seqtasks tasks`)")
    return classes[name]()
