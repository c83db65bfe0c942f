"""The seqtasks command line: parses flags, resolves config, calls seqtasks.api. No model code.

Every setting of a task's config dataclass is a flag of `seqtasks train TASK` (`seq_len` -> `--seq-len`),
so `seqtasks train lm --help` lists them all with their defaults.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import click

from seqtasks.errors import UserError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


class SeqtasksGroup(click.Group):
    """Shows a user mistake as one line, `seqtasks: error: ...`, exit 1 (a traceback with --debug)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as error:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"seqtasks: error: {error.message}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            ctx.exit(130)


@click.group(cls=SeqtasksGroup, context_settings=CONTEXT)
@click.option("--debug", is_flag=True, help="Show the full traceback of an error.")
@click.version_option(package_name="seqtasks", prog_name="seqtasks")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """seqtasks: train and use sequence models (language modeling, generation, classification, tagging,
    translation, captioning) from one command line.

    \b
    Quick start:
      seqtasks train lm                         # a small model on the bundled corpus, ~3 minutes
      seqtasks train lm --data my.txt --arch transformer --max-time 20 --out runs/mine
      seqtasks sample runs/mine --prompt "ROMEO:" --max-new-tokens 300 --temperature 0.8
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


# ---- tasks ---------------------------------------------------------------------------------------
@cli.command(context_settings=CONTEXT)
def tasks() -> None:
    """List the tasks, their model families and default settings."""
    from seqtasks.tasks import task_classes

    for name, cls in task_classes().items():
        click.echo(f"{name}: {cls.description}")
        click.echo(f"  architectures: {', '.join(cls.architectures)}")
        defaults = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(cls.Config)
                             if f.name not in ("data", "valid"))
        click.echo(f"  defaults: {defaults}")
        click.echo(f"  help: seqtasks train {name} --help")


# ---- train ---------------------------------------------------------------------------------------
def _options_from_config(config_class: type):
    """click options for every field of a config dataclass, default None ('not given')."""

    def decorate(command):
        for f in reversed(dataclasses.fields(config_class)):
            flag = "--" + f.name.replace("_", "-")
            help_text = f.metadata.get("help", "")
            choices = f.metadata.get("choices")
            kind = f.type if isinstance(f.type, type) else {"int": int, "float": float, "bool": bool}.get(str(f.type), str)
            if kind is bool:
                option = click.option(f"{flag}/--no-{flag[2:]}", f.name, default=None,
                                      help=f"{help_text}  [default: {'on' if f.default else 'off'}]")
            else:
                click_type = click.Choice(choices) if choices else kind
                option = click.option(flag, f.name, type=click_type, default=None,
                                      help=f"{help_text}  [default: {f.default!r}]")
            command = option(command)
        return command

    return decorate


def _make_train_command(task_cls) -> click.Command:
    example = {"lm": "seqtasks train lm --data corpus.txt --arch transformer --max-time 20 --out runs/lm"}.get(
        task_cls.name, f"seqtasks train {task_cls.name} --data DATA --out runs/{task_cls.name}")

    @click.command(name=task_cls.name, context_settings=CONTEXT,
                   help=f"Train a {task_cls.description}.\n\nWith no --data, trains on the bundled demo "
                        f"data.\n\n\b\nExample:\n  {example}")
    @click.option("--out", type=click.Path(), default=None, help="Run folder to create  [default: runs/TASK-TIME]")
    @click.option("--config", "config_file", type=click.Path(), default=None,
                  help="TOML file of settings (flags override it).")
    @click.option("--quiet", is_flag=True, help="No progress bars or samples.")
    @_options_from_config(task_cls.Config)
    def command(out, config_file, quiet, **settings):
        from seqtasks import api

        run = api.train(task_cls.name, out=out, config_file=config_file, verbose=0 if quiet else 1, **settings)
        _after_training(run, quiet)

    return command


def _after_training(run, quiet: bool) -> None:
    state = run.directory.read_train_state() or {}
    click.echo(f"\ntraining finished ({state.get('stop_reason', '')}): best {state.get('best_metric')}; "
               f"run saved in {run.path}")
    if run.task.name == "lm" and not quiet:
        click.echo("\nsample from the best model:\n")
        click.echo(run.sample("", max_new_tokens=300, temperature=0.8, seed=0))
        click.echo(f"\nnext: seqtasks sample {run.path} --prompt \"ROMEO:\" --temperature 0.8")


class TrainGroup(click.Group):
    def list_commands(self, ctx):
        from seqtasks.tasks import task_classes

        return list(task_classes())

    def get_command(self, ctx, name):
        from seqtasks.tasks import task_classes

        classes = task_classes()
        return _make_train_command(classes[name]) if name in classes else None


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
@click.option("--quiet", is_flag=True, help="No progress bars or samples.")
def resume(run, epochs, max_time, quiet) -> None:
    """Continue an interrupted run exactly where it stopped.

    \b
    Example:
      seqtasks resume runs/lm
    """
    from seqtasks import api

    result = api.resume(run, verbose=0 if quiet else 1, epochs=epochs, max_time=max_time)
    state = result.directory.read_train_state() or {}
    click.echo(f"run {result.path}: {state.get('stop_reason', '')} at step {state.get('global_step')}")


@cli.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path())
@click.option("--data", required=True, help="The new training data (same formats as train).")
@click.option("--out", required=True, type=click.Path(), help="The new run folder.")
@click.option("--valid", default=None, help="Validation data; default: held out from --data.")
@click.option("--freeze", default=None, help="Freeze parts: embeddings, layers:N, or both comma-separated.")
@click.option("--config", "config_file", type=click.Path(), default=None, help="TOML file of settings.")
@click.option("--epochs", type=int, default=None, help="Epochs of fine-tuning.")
@click.option("--lr", type=float, default=None, help="Peak learning rate (fresh optimizer and schedule).")
@click.option("--batch-size", type=int, default=None, help="Examples per step.")
@click.option("--steps-per-epoch", type=int, default=None, help="Steps between validations.")
@click.option("--warmup-steps", type=int, default=None, help="Warmup steps.")
@click.option("--max-time", type=float, default=None, help="Training budget in minutes.")
@click.option("--patience", type=int, default=None, help="Early-stopping patience (validations).")
@click.option("--dropout", type=float, default=None, help="Dropout rate.")
@click.option("--seed", type=int, default=None, help="Random seed.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default=None, help="Precision.")
@click.option("--quiet", is_flag=True, help="No progress bars or samples.")
def finetune(run, data, out, valid, freeze, config_file, quiet, **settings) -> None:
    """Start a new run from RUN's weights on new data: same tokenizer, fresh optimizer.

    \b
    Example:
      seqtasks finetune runs/lm --data my_corpus.txt --out runs/lm-mine --freeze embeddings --epochs 3
    """
    from seqtasks import api

    result = api.finetune(run, data=data, out=out, freeze=freeze, config_file=config_file,
                          verbose=0 if quiet else 1, valid=valid, **settings)
    _after_training(result, quiet=True)


# ---- evaluate / predict / sample / info ----------------------------------------------------------
@cli.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path())
@click.option("--data", default=None, help="The data to score (same formats as train).")
@click.option("--src", default=None, help="translate: source sentences, one per line.")
@click.option("--tgt", default=None, help="translate: reference translations, one per line.")
@click.option("--images", default=None, help="caption: the image folder.")
@click.option("--captions", default=None, help="caption: the caption table or COCO JSON.")
@click.option("--beam", type=int, default=None, help="Generative tasks: beam width (default greedy).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def evaluate(run, as_json, **options) -> None:
    """Score RUN on data: lm prints loss, perplexity and bits per character; classify accuracy and F1;
    tag accuracy and entity F1; translate BLEU and chrF; caption BLEU-1..4.

    \b
    Example:
      seqtasks evaluate runs/lm --data heldout.txt --json
    """
    from seqtasks import api

    given = {k: v for k, v in options.items() if v is not None}
    metrics = api.load(run).evaluate(given.pop("data", None), **given)
    if as_json:
        click.echo(json.dumps(metrics))
        return
    for key, value in metrics.items():
        if isinstance(value, (dict, list)):
            value = json.dumps(value)
        click.echo(f"{key:>12}: {value:.4f}" if isinstance(value, float) else f"{key:>12}: {value}")


def _read_inputs(texts: tuple[str, ...], input_file: str | None) -> list[str]:
    inputs = list(texts)
    if input_file:
        handle = sys.stdin if input_file == "-" else _open_input(input_file)
        inputs.extend(line.rstrip("\n") for line in handle)
    if not inputs:
        raise UserError("nothing to predict", fix="give TEXT arguments or --input FILE (- for stdin)")
    return inputs


def _open_input(path: str):
    if not Path(path).is_file():
        raise UserError("no such input file", path, "check the path given to --input")
    return open(path, encoding="utf-8")


@cli.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path())
@click.argument("texts", nargs=-1)
@click.option("--input", "input_file", default=None, help="Read inputs from FILE, one per line (- for stdin).")
@click.option("--output", "output_file", type=click.Path(), default=None, help="Write outputs to FILE.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--max-new-tokens", type=int, default=None, help="Generative tasks: tokens per output.")
@click.option("--temperature", type=float, default=None, help="Generative tasks: sampling temperature (0 = greedy).")
@click.option("--seed", type=int, default=None, help="Random seed for sampling.")
@click.option("--top-k", type=int, default=None, help="classify: show the k likeliest labels.")
@click.option("--beam", type=int, default=None, help="translate, caption: beam width.")
@click.option("--n-best", type=int, default=None, help="translate, caption: print the N best hypotheses.")
@click.option("--pretokenized", is_flag=True, default=None, help="tag: the input is CoNLL (one token per line).")
@click.option("--alignments", is_flag=True, default=None, help="translate: print attention alignments.")
@click.option("--plot", type=click.Path(), default=None, help="translate, caption: draw attention to FILE.png.")
def predict(run, texts, input_file, output_file, as_json, **options) -> None:
    """Predict for each input: a continuation (lm, generate), a label (classify), tags (tag), a
    translation (translate) or a caption (caption; inputs are image paths). Reads stdin with --input -.

    \b
    Example:
      seqtasks predict runs/lm "To be, or not" --max-new-tokens 50
    """
    from seqtasks import api

    loaded = api.load(run)
    given = {k: v for k, v in options.items() if v is not None}
    inputs = _read_inputs(texts, input_file)
    out = open(output_file, "w", encoding="utf-8") if output_file else sys.stdout
    try:
        for text, result in zip(inputs, loaded.predict(inputs, **given)):
            if as_json:
                line = json.dumps({"input": text, "output": result})
            else:
                line = loaded.task.format_prediction(result)
            out.write(line + "\n")
            out.flush()
    finally:
        if output_file:
            out.close()


@cli.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path())
@click.option("--prompt", default="", help="Text to continue (default: start a new document).")
@click.option("-n", "num_samples", type=int, default=1, show_default=True, help="Number of samples.")
@click.option("--max-new-tokens", type=int, default=200, show_default=True, help="Tokens to generate.")
@click.option("--temperature", type=float, default=1.0, show_default=True, help="Softmax temperature; 0 = greedy.")
@click.option("--top-k", type=int, default=0, show_default=True, help="Sample among the k likeliest tokens (0 = all).")
@click.option("--top-p", type=float, default=1.0, show_default=True, help="Nucleus sampling mass (1 = off).")
@click.option("--seed", type=int, default=None, help="Random seed: the same seed gives the same text.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object with the samples.")
def sample(run, prompt, num_samples, max_new_tokens, temperature, top_k, top_p, seed, as_json) -> None:
    """Generate text from a language-model RUN.

    \b
    Example:
      seqtasks sample runs/lm --prompt "ROMEO:" --max-new-tokens 300 --temperature 0.8 --seed 1
    """
    from seqtasks import api

    loaded = api.load(run)
    if loaded.task.name != "lm":
        raise UserError(f"`sample` works on language-model runs; this run is a {loaded.task.name} run",
                        str(loaded.path), "use `seqtasks predict`")
    options = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_k": top_k, "top_p": top_p,
               "seed": seed}
    if as_json or num_samples > 1:
        texts = loaded.task.sample(loaded, prompt, num_return_sequences=num_samples, **options)
        if as_json:
            click.echo(json.dumps({"prompt": prompt, "samples": texts}))
        else:
            for i, text in enumerate(texts):
                click.echo(f"--- sample {i + 1} ---\n{prompt}{text}")
        return
    click.echo(prompt, nl=False)
    for piece in loaded.task.stream(loaded, prompt, **options):
        click.echo(piece, nl=False)
    click.echo()


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
    click.echo(f"training:  epoch {training['epoch']}, step {training['global_step']}, "
               f"{(training['elapsed_seconds'] or 0) / 60:.1f} min, best {training['best_metric']}, "
               f"{'finished: ' + str(training['stop_reason']) if training['finished'] else 'not finished'}")
    click.echo(f"model:     {details['model_file']}")
    for split, described in details["data"].items():
        click.echo(f"data {split}: {described.get('source')} ({described.get('bytes', '?')} bytes)")
    click.echo("settings:")
    for key, value in details["settings"].items():
        click.echo(f"  {key} = {value!r}")
    if details["last_evaluation"]:
        click.echo(f"last evaluation: {json.dumps(details['last_evaluation'])}")


def main() -> None:
    cli(prog_name="seqtasks")


if __name__ == "__main__":
    main()
