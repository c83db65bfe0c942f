"""The task contract: what every task module provides, so the CLI, runs and tests treat tasks alike.

A task turns its data sources into examples, prepares what must be saved with the run (tokenizers,
label vocabularies), builds a Keras model from seqtasks parts, hands the training loop a FitPlan, and
later evaluates and predicts with a loaded run. The generic train / resume / finetune orchestration
lives in seqtasks.api; a task never writes run files itself.

A task's card (TaskCard: name, description, settings, example) is known without TensorFlow: the CLI
builds `seqtasks tasks` and every --help from the cards (tasks/cards/), and imports a task's class
(tasks/NAME.py, which builds Keras models) only for a command that uses it. This module, too, imports
no TensorFlow.

Exportable (every task: `seqtasks export`) gives the graph of a run with its tokenizer inside.
Two protocols name what only some tasks do, so that callers ask `isinstance(task, Generative)` rather
than a task's name: Generative (lm, generate, translate, caption: text out of a prompt, a source or an
image) and ExtensibleLabels (classify, tag: fine-tuning data may bring labels the parent never saw).
"""
from __future__ import annotations

import abc
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Protocol, runtime_checkable

if TYPE_CHECKING:
    import keras

    from seqtasks.training import FitPlan


class TaskCard:
    """What `seqtasks tasks` and `seqtasks train NAME --help` show of a task, before TensorFlow starts."""

    name: str = ""
    description: str = ""
    Config: type = object        # the settings dataclass: every field is a flag of `train NAME`
    architectures: tuple[str, ...] = ()
    example: str = ""            # a `seqtasks train` command line for --help ("": the generic one, with --data)
    # the settings that name training data; when none of them is given, train uses the bundled demo
    data_settings: tuple[str, ...] = ("data",)
    # what predict takes: "text", or "image" (paths of image files; `seqtasks serve` takes their bytes)
    input_kind: str = "text"
    # `seqtasks serve`: a second name of POST /predict for this task's runs ("" = none), e.g. "translate"
    serve_route: str = ""

    def check_settings(self, cfg) -> None:
        """Raise a UserError for settings that cannot work together (each alone is range-checked by
        its field), before any data is read or run folder made."""

    def check_finetune(self, parent_settings: dict[str, Any], cfg) -> None:
        """Raise a UserError for a fine-tuning setting that cannot start from the parent's weights."""


class Task(TaskCard, abc.ABC):
    """What every task is: its card and the steps of train, evaluate and predict. A task class is
    `class NameTask(NameCard, Task)`, so what the card says is written once."""

    # what the best checkpoint is chosen by, as shown to users; a plan may choose by another column
    # (FitPlan.monitor, .mode, .monitor_name; FitPlan.validate computes task scores such as tag's entity F1)
    monitor_name: str = "loss"
    # predict() accepts any iterable of inputs and yields each result before reading further, so
    # `seqtasks predict RUN --input -` answers every stdin line as soon as it is read
    streams_predictions: bool = False

    def default_overrides(self) -> dict[str, Any]:
        """Settings used when the user gives no --data: the bundled demo."""
        return {}

    @abc.abstractmethod
    def read(self, cfg) -> Any:
        """Open the data sources named in cfg -> task data (train and validation), with clear errors."""

    @abc.abstractmethod
    def prepare(self, cfg, data) -> Any:
        """Fit tokenizers / label vocabularies on the training data -> a preprocessor with save(dir)."""

    @abc.abstractmethod
    def load_preprocessor(self, directory: Path) -> Any:
        """Load what prepare() saved in RUN/tokenizer."""

    @abc.abstractmethod
    def plan(self, cfg, prep, data) -> "FitPlan":
        """Encode the data (cached) and describe the batches of each epoch."""

    @abc.abstractmethod
    def build(self, cfg, prep) -> "keras.Model":
        """A built Keras model (weights created) from seqtasks parts, in cfg's precision."""

    @abc.abstractmethod
    def loss_and_metrics(self, cfg, prep) -> tuple[Any, list]:
        """The training loss and the Keras metrics shown during fit."""

    def describe_data(self, data) -> dict[str, Any]:
        return {}

    def estimate(self, cfg, prep, data) -> "tuple[keras.Model, dict[str, Any]] | None":
        """A model computed in closed form from the data instead of trained (lm's `--arch ngram` counts
        n-grams), with the one history row of its scores (val_loss, ...); None (the default): the
        model is trained, by plan, build and fit. The run of an estimated model is complete when it
        appears: nothing to resume or fine-tune."""
        return None

    def initial_model(self, cfg) -> "keras.Model | None":
        """A model whose weights a new run starts from (generate --from RUN), or None: fresh weights."""
        return None

    @abc.abstractmethod
    def evaluate(self, run, source: str | None, **options) -> dict[str, Any]:
        """Metrics of a loaded run on a data source."""

    @abc.abstractmethod
    def predict(self, run, inputs: list[str], **options) -> Iterator[Any]:
        """Outputs (labels, tags, text) for raw inputs."""

    def format_prediction(self, result: Any) -> str:
        """One prediction as the plain-text line `seqtasks predict` prints."""
        import json

        return result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)

    def sample_during_training(self, cfg, prep):
        """A function model -> str printed after each epoch (generative tasks), or None."""
        return None

    def after_training(self, run, quiet: bool) -> list[str]:
        """Lines `seqtasks train` prints after the summary of a finished run (a sample, the next
        command to try); with `quiet`, only what costs no model call."""
        return []


@runtime_checkable
class Generative(Protocol):
    """A task whose runs write text: `seqtasks sample`, Run.sample and Run.generate_batch use these.
    Options are decoding.GenerationConfig's fields and `stop` (strings that end a text)."""

    # True: the output continues the prompt's text (`seqtasks sample` prints the prompt before it);
    # False: the output stands alone (a completion, a translation, a caption)
    continues_prompt: bool

    def generate_batch(self, run, prompts: list[str], **options) -> list[list[str]]:
        """num_return_sequences texts for each prompt, decoded together."""

    def stream(self, run, prompt: str, **options) -> Iterator[str]:
        """One text for one prompt, in pieces as its tokens are decoded."""


@runtime_checkable
class ExtensibleLabels(Protocol):
    """A task with a label vocabulary that fine-tuning may extend (`finetune --extend-labels`)."""

    def new_labels(self, prep, data) -> list[tuple[str, str]]:
        """(label, where) of each label in data that prep does not know, in order of appearance."""


@runtime_checkable
class Exportable(Protocol):
    """A task whose runs export to a SavedModel that takes strings (`seqtasks export`, seqtasks.export)."""

    def serving_module(self, run) -> Any:
        """A tf.Module holding the run's model and tokenizer, with `signatures()`: name -> tf.function."""
