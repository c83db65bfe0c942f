"""The task registry: every task by name.

TASKS maps each name to the task's card (tasks/cards/: settings, description, example), which imports
no TensorFlow, so `seqtasks tasks` and every --help answer at once. task_classes() imports the task
classes themselves (tasks/NAME.py, which build Keras models) for a command that needs one.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from seqtasks.errors import UserError
from seqtasks.tasks.cards.caption import CaptioningCard
from seqtasks.tasks.cards.classify import ClassificationCard
from seqtasks.tasks.cards.generate import ConditionalGenerationCard
from seqtasks.tasks.cards.lm import LanguageModelCard
from seqtasks.tasks.cards.tag import TaggingCard
from seqtasks.tasks.cards.translate import TranslationCard

if TYPE_CHECKING:
    from seqtasks.tasks.base import Task, TaskCard

TASKS: dict[str, type[TaskCard]] = {card.name: card for card in (
    LanguageModelCard, ConditionalGenerationCard, ClassificationCard, TaggingCard, TranslationCard, CaptioningCard)}


def task_classes() -> dict[str, type[Task]]:
    """Every task's class by name (this imports TensorFlow and the models)."""
    from seqtasks.tasks.caption import CaptioningTask
    from seqtasks.tasks.classify import ClassificationTask
    from seqtasks.tasks.generate import ConditionalGenerationTask
    from seqtasks.tasks.lm import LanguageModelTask
    from seqtasks.tasks.tag import TaggingTask
    from seqtasks.tasks.translate import TranslationTask

    classes = (LanguageModelTask, ConditionalGenerationTask, ClassificationTask, TaggingTask, TranslationTask,
               CaptioningTask)
    return {cls.name: cls for cls in classes}


def card(name: str) -> type[TaskCard]:
    """The card of the task called `name`; an unknown name is a UserError listing the tasks."""
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}", fix=f"choose one of: {', '.join(TASKS)} (see `seqtasks tasks`)")
    return TASKS[name]


def get_task(name: str) -> Task:
    return task_classes()[card(name).name]()
