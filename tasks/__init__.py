"""The task registry: every task by name. The CLI and seqtasks.api discover tasks here."""
from __future__ import annotations

import importlib

from seqtasks.errors import UserError

# name -> "module:Class"; a task whose module is not written yet is left out of the listing
TASKS = {
    "lm": "seqtasks.tasks.lm:LanguageModelTask",
    "generate": "seqtasks.tasks.generate:ConditionalGenerationTask",
    "classify": "seqtasks.tasks.classify:ClassificationTask",
    "tag": "seqtasks.tasks.tag:TaggingTask",
    "translate": "seqtasks.tasks.translate:TranslationTask",
    "caption": "seqtasks.tasks.caption:CaptioningTask",
}


def task_classes() -> dict:
    classes = {}
    for name, target in TASKS.items():
        module_name, class_name = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name == module_name:
                continue
            raise
        classes[name] = getattr(module, class_name)
    return classes


def get_task(name: str):
    classes = task_classes()
    if name not in classes:
        raise UserError(f"unknown task {name!r}", fix=f"choose one of: {', '.join(classes)} (see `seqtasks tasks`)")
    return classes[name]()
