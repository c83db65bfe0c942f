"""The Python API, mirrored by the CLI: train, resume, finetune, load -> Run.

    run = seqtasks.train(task, data="corpus.txt", out="runs/shakespeare")   # task: see `seqtasks tasks`
    run = seqtasks.load("runs/shakespeare")
    run.sample("ROMEO:", max_new_tokens=200, temperature=0.8)
    run.evaluate("heldout.txt")

This module is the only place that creates runs; tasks only supply the parts.
"""
from __future__ import annotations

import dataclasses
import datetime
import shutil
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import seqtasks.serializables  # noqa: F401  (first: starts TensorFlow quietly, registers the Keras classes)
import keras

from seqtasks.config import (COMMAND_LINE, check_ranges, config_from_dict, read_config_file, resolve_config,
                             with_current_names)
from seqtasks.datafiles import absolute_paths, check_unchanged, data_fingerprints
from seqtasks.distributed import folder_digest, worker_folder, workers_of
from seqtasks.errors import SeqtasksWarning, TrainingFailed, UserError, describe_exception
from seqtasks.files import check_output_folder
from seqtasks.model_files import load_model
from seqtasks.progress import Progress
from seqtasks.pretrained_embeddings import freeze_tables, initialise_embeddings, run_vectors
from seqtasks.run_lock import LOCK_FILE, check_not_in_use
from seqtasks.runs import RunDirectory, already_exists, atomic_save_model, atomic_write_json
from seqtasks.tasks.base import Exportable, ExtensibleLabels, Generative
from seqtasks.training import TrainState, compile_model, fit, make_strategy, resolve_precision



def _version() -> str:
    from seqtasks import __version__

    return __version__


def resolve_task_config(task, config_file: str | None, overrides: dict[str, Any]):
    toml = read_config_file(config_file, task.name) if config_file else {}
    given = {k: v for k, v in overrides.items() if v is not None}
    if not any(given.get(key) or toml.get(key) for key in task.data_settings):
        # no data: the bundled demo, with the user's other settings (TOML and flags) on top
        given = {**{k: v for k, v in task.default_overrides().items() if k not in toml}, **given}
    return resolve_config(task.Config, toml, given, where=config_file or "settings")


def default_run_path(task_name: str) -> Path:
    return Path("runs") / f"{task_name}-{datetime.datetime.now():%Y%m%d-%H%M%S}"


def _print_settings(cfg, extra: dict[str, Any]) -> None:
    settings = {**dataclasses.asdict(cfg), **extra}
    width = max(len(k) for k in settings)
    print("settings:")
    for key, value in settings.items():
        print(f"  {key:<{width}} = {value!r}")
    sys.stdout.flush()


def train(task: str, out: str | Path | None = None, config_file: str | None = None, verbose: int = 1,
          **overrides) -> "Run | None":
    """Train TASK on the given data (or its bundled demo data) and return the finished Run.
    With --strategy multiworker, every worker calls this; the chief's call returns the Run, the
    other workers' return None (their copy of the run was temporary)."""
    from seqtasks.tasks import get_task

    task_obj = get_task(task)
    cfg = resolve_task_config(task_obj, config_file, overrides)
    task_obj.check_settings(cfg)
    workers = workers_of(make_strategy(cfg.strategy))  # first: before anything starts TensorFlow
    chief = workers is None or workers.is_chief
    precision = resolve_precision(cfg.precision)
    out = Path(out) if out else default_run_path(task)
    if chief and out.exists():
        raise already_exists(out)
    if chief:
        check_output_folder(out, "--out")
    check_pretrained_settings(cfg)
    data = task_obj.read(cfg)  # bad sources fail here, before anything is printed or made
    if verbose and chief:
        _print_settings(cfg, {"resolved_precision": precision, "out": str(out)})
    prep = task_obj.prepare(cfg, data)
    estimated = task_obj.estimate(cfg, prep, data)
    if estimated is not None:
        return _save_estimated(task_obj, out, cfg, prep, data, *estimated, verbose=verbose) if chief else None
    plan = task_obj.plan(cfg, prep, data)
    record = _run_record(task_obj, cfg, precision, task_obj.describe_data(data))
    with _run_folder(out, workers, verbose) as folder, \
            RunDirectory.create(folder, record, lambda tmp: prep.save(tmp / "tokenizer"), lock=chief) as run_dir:
        _check_same_tokenizer(run_dir, workers)
        if verbose and chief:
            print(f"run folder: {run_dir.path}", flush=True)
        run = _fit_new(task_obj, run_dir, cfg, prep, plan, initial_model=task_obj.initial_model(cfg),
                       verbose=verbose if chief else 0, new_folder=True, shown_path=out)
    return run if chief else None


@contextmanager
def _run_folder(out: Path, workers, verbose: int):
    """Where this process writes the run: `out`, or for a worker that is not the chief a temporary
    folder, removed afterwards (only the chief writes the run folder)."""
    if workers is None or workers.is_chief:
        yield out
        return
    if verbose:
        print(f"worker {workers.index} of {workers.count}: training with the chief (worker 0), which writes {out}",
              flush=True)
    with worker_folder(out.name) as folder:
        yield folder


def _check_same_tokenizer(run_dir: RunDirectory, workers) -> None:
    """Every worker built its tokenizer from its own copy of the data: they must be the same files."""
    if workers is not None:
        workers.check_same(folder_digest(run_dir.tokenizer_dir), "tokenizers",
                           "give every worker the same data files and settings")


def check_pretrained_settings(cfg) -> None:
    """--pretrained-embeddings names something that exists (the vectors are read once the model is
    built); --freeze-embeddings needs it."""
    from seqtasks.word_vectors import check_source

    source = getattr(cfg, "pretrained_embeddings", "")
    if source:
        check_source(source)
    elif getattr(cfg, "freeze_embeddings", False):
        raise UserError("--freeze-embeddings would hold random embeddings fixed",
                        fix="add --pretrained-embeddings SOURCE, or drop --freeze-embeddings")


def _save_estimated(task_obj, out: Path, cfg, prep, data, model: keras.Model, row: dict[str, Any],
                    verbose: int) -> "Run":
    """The run folder of a model estimated in closed form (Task.estimate), made whole at once: config,
    tokenizer, model.keras and a finished train state whose history is `row`."""
    record = _run_record(task_obj, cfg, "fp32", task_obj.describe_data(data))
    state = {**dataclasses.asdict(TrainState(epoch=1, finished=True, stop_reason="estimated from counts")),
             "elapsed_seconds": row.get("seconds", 0.0), "best_metric": row.get("val_loss"), "estimated": True,
             "history": [row]}

    def write(folder: Path) -> None:
        prep.save(folder / "tokenizer")
        atomic_save_model(model, folder / "model.keras")
        atomic_write_json(folder / "checkpoints" / "train_state.json", state)
        RunDirectory(folder).write_history([row])

    run_dir = RunDirectory.create(out, record, write)
    if verbose:
        print(f"model: {cfg.arch}, {model.count_params():,} table entries; {row.get('train_tokens', 0):,} tokens "
              f"counted in {row.get('count_seconds', 0.0):.2f} s; run folder: {run_dir.path}", flush=True)
    return Run(run_dir.path)


def _run_record(task_obj, cfg, precision: str, data: dict[str, Any], parent: dict[str, Any] | None = None):
    """config.json: the settings with absolute data paths (`typed` keeps what was given), so resume
    reads the same files from any folder, and `data_files` their sizes and sha256, checked on resume."""
    absolute, typed = absolute_paths(cfg)
    record = {"task": task_obj.name, "seqtasks_version": _version(),
              "created": datetime.datetime.now().isoformat(timespec="seconds"),
              "settings": dataclasses.asdict(absolute), "resolved": {"precision": precision}, "data": data,
              "data_files": data_fingerprints(absolute)}
    if typed:
        record["typed"] = typed
    if parent:
        record["parent"] = parent
    return record


def _fit_new(task_obj, run_dir: RunDirectory, cfg, prep, plan, initial_model, verbose: int,
             freeze: str | None = None, grow_outputs: bool = False, new_folder: bool = False,
             shown_path: Path | None = None) -> "Run":
    """Build, initialise and train. `new_folder`: the folder was made for this call, so a user error
    while building (settings the model cannot take, word vectors of the wrong width) removes it again
    and the same command can run once the settings are fixed."""
    strategy = make_strategy(cfg.strategy)
    try:
        with strategy.scope():
            model = task_obj.build(cfg, prep)
            if initial_model is not None:
                copy_weights(model, initial_model, grow=grow_outputs)
            else:
                if plan.output_log_prior is not None:
                    model.output_layer.bias.assign(plan.output_log_prior)
                if getattr(cfg, "pretrained_embeddings", ""):
                    initialise_embeddings(model, prep, cfg, verbose)
            if freeze:
                apply_freeze(model, freeze)
            if getattr(cfg, "freeze_embeddings", False):
                freeze_tables(model)
            loss, metrics = task_obj.loss_and_metrics(cfg, prep)
            compile_model(model, cfg, loss, metrics)
    except UserError:
        if new_folder:
            shutil.rmtree(run_dir.path, ignore_errors=True)
        raise
    except Exception as error:  # the run folder exists by now: say how to come back to it
        raise TrainingFailed(f"building the model failed: {describe_exception(error)}", str(run_dir.path),
                             f"once the cause is fixed, `seqtasks resume {run_dir.path}` starts the run; "
                             "--debug shows the traceback") from error
    if verbose:
        trainable = sum(int(keras.ops.size(w)) for w in model.trainable_weights)
        print(f"model: {cfg.arch}, {model.count_params():,} parameters ({trainable:,} trainable)", flush=True)
    fit(model, run_dir, plan, cfg, TrainState(), verbose=verbose, shown_path=shown_path)
    return Run(run_dir.path)


def resume(path: str | Path, verbose: int = 1, allow_changed_data: bool = False, **overrides) -> "Run | None":
    """Continue an interrupted run exactly: weights, optimizer, schedule, epoch and batch position.
    `epochs` or `max_time` may be raised to extend a finished run. The run's data files must be
    what it trained on (size and sha256), unless `allow_changed_data`. With --strategy multiworker,
    every worker resumes RUN (each must be able to read it) with the same TF_CONFIG; the chief's call
    returns the Run, the others' None."""
    run = Run(path)
    run_dir, task_obj = run.directory, run.task
    state_data = run_dir.read_train_state()
    if (state_data or {}).get("estimated"):  # made whole by train (Task.estimate): nothing to continue
        if any(v is not None for v in overrides.values()):
            raise UserError(f"this run's model was {state_data['stop_reason']}, not trained: there is no training "
                            "to extend", str(run_dir.path), "train a new run with the settings you want")
        print(f"{run_dir.path}: training already finished ({state_data['stop_reason']})")
        return run
    settings = dict(run.record["settings"])
    extended = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(extended) - {"epochs", "max_time"}
    if unknown:
        raise UserError(f"resume can only change epochs and max-time, not {', '.join(sorted(unknown))}",
                        str(run_dir.path), "use `seqtasks finetune` to train with other settings")
    settings.update(extended)
    cfg = config_from_dict(task_obj.Config, settings)
    check_ranges(cfg, {name: COMMAND_LINE for name in extended}, names=extended)
    workers = workers_of(make_strategy(cfg.strategy))  # first: before anything starts TensorFlow
    chief = workers is None or workers.is_chief
    with run_dir.lock(path) if chief else run_dir:  # one writer: the chief's lock, until training ends
        if chief:
            removed = run_dir.recover()  # whatever a kill left half-done or behind
            if removed and verbose:
                print(f"removed {len(removed)} temporary file(s) left by an interrupted session", flush=True)
            if extended:
                run.record["settings"] = dataclasses.asdict(cfg)
                run_dir.write_config(run.record)
        if workers is None:
            return _continue(run, cfg, bool(extended), verbose, allow_changed_data, run_dir.path)
        workers.barrier()  # the chief has made the run whole before the others copy it
        if chief:
            return _continue(run, cfg, bool(extended), verbose, allow_changed_data, run_dir.path)
    with worker_folder(run_dir.path.name) as copy:
        shutil.copytree(run_dir.path, copy, ignore=shutil.ignore_patterns(LOCK_FILE))
        _continue(Run(copy), cfg, bool(extended), 0, allow_changed_data, run_dir.path)
    return None


def _continue(run: "Run", cfg, extended: bool, verbose: int, allow_changed_data: bool, shown_path: Path) -> "Run":
    """resume's training: from the last checkpoint, or from step 0 when there is none."""
    run_dir, task_obj = run.directory, run.task
    state_data = run_dir.read_train_state()
    # killed before its first checkpoint: the folder holds the settings and tokenizer, so start it over
    fresh = state_data is None or not run_dir.last_checkpoint_path.exists()
    state = TrainState() if fresh else TrainState.from_dict(state_data)
    if extended:
        state.finished = False
    if state.finished:
        if shown_path == run_dir.path:  # not on a worker's copy
            print(f"{shown_path}: training already finished ({state.stop_reason}); "
                  "raise --epochs or --max-time to train further")
        return run
    files = check_unchanged(run.record.get("data_files", {}), cfg, run_dir.path, allow_changed_data)
    if allow_changed_data and files != run.record.get("data_files", files):
        run_dir.write_config({**run.record, "data_files": files})
    if fresh:
        return _restart(run, cfg, verbose, shown_path)
    data = task_obj.read(cfg)
    plan = task_obj.plan(cfg, run.preprocessor, data)
    if verbose:
        print(f"resuming {shown_path} at epoch {state.epoch + 1}, batch {state.step_in_epoch} "
              f"(step {state.global_step})", flush=True)
    strategy = make_strategy(cfg.strategy)
    with strategy.scope():
        model = _load_checkpoint(run, cfg)
    fit(model, run_dir, plan, cfg, state, verbose=verbose, shown_path=shown_path)
    return Run(run_dir.path)


def _restart(run: "Run", cfg, verbose: int, shown_path: Path | None = None) -> "Run":
    """Train a run that has no checkpoint from step 0, from its saved settings and tokenizer (and,
    for a fine-tuning run, its parent's weights again)."""
    run_dir, task_obj = run.directory, run.task
    print(f"{shown_path or run_dir.path} has no checkpoint yet: starting it over from its saved settings (step 0)",
          flush=True)
    for derived in (run_dir.history_path, run_dir.train_state_path):  # no weights back them
        derived.unlink(missing_ok=True)
    data = task_obj.read(cfg)
    plan = task_obj.plan(cfg, run.preprocessor, data)
    parent = run.record.get("parent")
    initial_model = None
    if parent:
        try:
            initial_model = Run(parent["path"]).model
        except UserError as error:
            raise UserError(f"cannot start the fine-tuning run over: its parent run is unusable ({error.message})",
                            str(run_dir.path), "fine-tune the parent again with `seqtasks finetune`") from error
    return _fit_new(task_obj, run_dir, cfg, run.preprocessor, plan, initial_model=initial_model, verbose=verbose,
                    freeze=(parent or {}).get("freeze"), grow_outputs=bool(parent), shown_path=shown_path)


def _load_checkpoint(run: "Run", cfg) -> keras.Model:
    """The last checkpoint, compiled, with its optimizer state. A fine-tuned run's --freeze is applied
    again first: a saved model does not keep which layers were frozen, and its optimizer state covers
    only the weights that were trainable."""
    path = run.directory.last_checkpoint_path
    freeze = (run.record.get("parent") or {}).get("freeze")
    frozen_tables = bool(getattr(cfg, "freeze_embeddings", False))
    if not freeze and not frozen_tables:
        return load_model(path, compile=True)
    model = load_model(path, compile=False)
    if freeze:
        apply_freeze(model, freeze)
    if frozen_tables:  # --freeze-embeddings, like --freeze, is not kept in the saved model
        freeze_tables(model)
    loss, metrics = run.task.loss_and_metrics(cfg, run.preprocessor)
    compile_model(model, cfg, loss, metrics)
    model.load_weights(path)  # the weights and the optimizer's moments and step, now that the sets match
    return model


def finetune(path: str | Path, data: str | None, out: str | Path, freeze: str | None = None,
             config_file: str | None = None, verbose: int = 1, extend_labels: bool = False,
             **overrides) -> "Run | None":
    """A new run from RUN's weights on new data: same tokenizer, fresh optimizer and schedule.
    extend_labels (tasks that predict labels): labels the parent never saw are added; the output layer grows."""
    parent = Run(path)
    task_obj = parent.task
    parent_state = parent.directory.read_train_state() or {}
    if parent_state.get("estimated"):
        raise UserError(f"this run's model was {parent_state['stop_reason']}: it has no weights to fine-tune",
                        str(parent.directory.path), "train a new run on the new data")
    toml = read_config_file(config_file, task_obj.name) if config_file else {}
    toml = with_current_names(task_obj.Config, toml, default_origin=f"from {config_file}")
    flags = {k: v for k, v in overrides.items() if v is not None}
    if data is not None:  # tasks whose data flags are not --data (image captioning: --images/--captions) leave it out
        flags["data"] = data
    _check_finetune_flags(task_obj, flags, parent.directory.path)
    given = {**toml, **flags}
    shape_keys = {"arch", "layers", "units", "heads", "tokenizer", "vocab_size", "positions", "activation",
                  "spm_model_type", "embedding_dim", "char_features", "char_dim", "char_units", "crf", "pooling", "max_len",
                  "pretrained_embeddings"}  # the parent's weights replace any vectors
    changed = {k for k in given if k in shape_keys and given[k] != parent.record["settings"].get(k)}
    if changed:
        raise UserError(f"finetune keeps the parent's model shape; cannot change {', '.join(sorted(changed))}",
                        str(parent.directory.path), "train a new run with `seqtasks train` instead")
    # the parent's data and validation sources do not carry over: the new run reads only what is given
    sources = {key: "" for key, value in parent.record["settings"].items()
               if key in task_obj.data_settings or (key == "valid" or key.startswith("valid_")) and isinstance(value, str)}
    settings = {**parent.record["settings"], "max_time": 0.0, **sources}
    settings.update(given)
    origins = {**{key: f"from {parent.directory.config_path}" for key in parent.record["settings"]},
               **{key: f"from {config_file}" for key in toml}, **{key: COMMAND_LINE for key in flags}}
    cfg = resolve_config(task_obj.Config, {}, settings, where=config_file or "settings", origins=origins)
    task_obj.check_finetune(parent.record["settings"], cfg)  # what the parent fixes first: the likelier cause
    task_obj.check_settings(cfg)
    workers = workers_of(make_strategy(cfg.strategy))  # first: before the parent model starts TensorFlow
    chief = workers is None or workers.is_chief
    out = Path(out)
    if chief and out.exists():
        check_not_in_use(out)
        raise UserError("the run folder already exists", str(out), "choose another --out")
    if chief:
        check_output_folder(out, "--out")
    if freeze:
        freeze_layers(parent.model, freeze)  # a wrong part fails here, before the run folder exists
    precision = resolve_precision(cfg.precision)
    task_data = task_obj.read(cfg)
    if verbose and chief:
        _print_settings(cfg, {"parent": str(parent.directory.path), "freeze": freeze, "out": str(out)})
    prep = parent.preprocessor
    if isinstance(task_obj, ExtensibleLabels):
        prep = _labels_for_finetuning(task_obj, prep, task_data, extend_labels)
    plan = task_obj.plan(cfg, prep, task_data)
    parent_info = {"path": str(parent.directory.path.resolve()), "model": parent.directory.model_file().name,
                   "freeze": freeze}
    record = _run_record(task_obj, cfg, precision, task_obj.describe_data(task_data), parent_info)
    parent_model = parent.model  # a damaged or unsafe parent model fails before the new folder is made
    with _run_folder(out, workers, verbose) as folder, \
            RunDirectory.create(folder, record, lambda tmp: prep.save(tmp / "tokenizer"), lock=chief) as run_dir:
        _check_same_tokenizer(run_dir, workers)
        run = _fit_new(task_obj, run_dir, cfg, prep, plan, initial_model=parent_model,
                       verbose=verbose if chief else 0, freeze=freeze, grow_outputs=extend_labels, shown_path=out)
    return run if chief else None


def _check_finetune_flags(task_obj, flags: dict[str, Any], where: Path) -> None:
    """The CLI's finetune offers the data flags of every task: one that this run's task lacks is refused."""
    settings = dataclasses.fields(task_obj.Config)
    for name in flags:
        if name not in {f.name for f in settings}:
            own = ", ".join(f"--{f.name.replace('_', '-')}" for f in settings if f.metadata.get("path") == "data")
            raise UserError(f"--{name.replace('_', '-')} does not apply to a {task_obj.name} run", str(where),
                            f"give its data with {own}")


def _labels_for_finetuning(task_obj, prep, data, extend: bool):
    """Labels in the fine-tuning data that the parent never saw: an error, or, with `extend`, appended
    to the label vocabulary (old labels keep their ids, so the old output rows stay valid)."""
    from seqtasks.tokenizers import LabelVocabulary

    new = sorted(task_obj.new_labels(prep, data))
    if not new:
        return prep
    if not extend:
        shown = ", ".join(repr(label) for label, _ in new[:10]) + (f", ... ({len(new)} in all)" if len(new) > 10 else "")
        raise UserError(f"the fine-tuning data has labels the parent run never saw: {shown}", new[0][1],
                        "pass --extend-labels to add them (the output layer grows), or leave those examples out")
    return prep.with_labels(LabelVocabulary(prep.labels.names + [label for label, _ in new]))


def copy_weights(model: keras.Model, source: keras.Model, grow: bool = False) -> None:
    """model's weights := source's. With `grow`, a weight that became larger (an output layer with
    new labels: kernel columns, bias, CRF transitions) takes source's values in its leading slice
    and keeps its fresh initialization in the new rows and columns."""
    weights = model.get_weights()
    for index, (new, old) in enumerate(zip(weights, source.get_weights(), strict=True)):
        if new.shape == old.shape:
            weights[index] = old
        elif grow and new.ndim == old.ndim and all(n >= o for n, o in zip(new.shape, old.shape)):
            new[tuple(slice(0, size) for size in old.shape)] = old
        else:
            raise ValueError(f"weight {index}: shape {new.shape} cannot take the parent's {old.shape}")
    model.set_weights(weights)


def freeze_layers(model: keras.Model, freeze: str) -> list[keras.layers.Layer]:
    """The layers that --freeze FREEZE names: a comma-separated list of the model's freezable parts
    (seqtasks.models.freezing). A name the model does not have is a UserError listing the ones it has."""
    parts = model.freezable_parts()
    names = [name.strip() for name in freeze.split(",") if name.strip()]
    depth = sum(name.startswith("layers:") for name in parts)
    layers_form = f"layers:N (N from 1 to {depth})" if depth > 1 else "layers:1"
    listed = ", ".join({(layers_form if name.startswith("layers:") else name): None for name in parts})
    if not names:
        raise UserError(f"--freeze {freeze!r} names no part", fix=f"this model has: {listed}")
    layers = []
    for name in names:
        count = name.partition(":")[2]
        if name not in parts and name.startswith("layers:") and count.isdigit():
            raise UserError(f"cannot freeze {count} layers: this model has {depth}", f"--freeze {freeze}",
                            f"use {layers_form}" if depth else f"its parts are: {listed}")
        if name not in parts:
            raise UserError(f"this model has no part {name!r} to freeze", f"--freeze {freeze}",
                            f"its parts are: {listed}")
        layers.extend(parts[name])
    return layers


def apply_freeze(model: keras.Model, freeze: str) -> None:
    """Hold the parts that --freeze names fixed: their weights leave the trainable set (and a frozen
    batch norm runs in inference mode), so the optimizer never sees them."""
    for layer in freeze_layers(model, freeze):
        layer.trainable = False


class Run:
    """A trained (or training) run folder, loaded lazily: settings, tokenizer, model."""

    def __init__(self, path: str | Path):
        from seqtasks.tasks import get_task

        self.directory = RunDirectory.open(path)
        self.record = self.directory.read_config()
        if "task" not in self.record or "settings" not in self.record:
            raise UserError("not a seqtasks run (config.json has no task)", str(self.directory.path))
        self.task = get_task(self.record["task"])
        # an older run's renamed settings under their current names, for every reader of the record
        self.record["settings"] = with_current_names(self.task.Config, self.record["settings"], warn=False)
        self.settings = config_from_dict(self.task.Config, self.record["settings"])
        self._preprocessor = None
        self._model = None
        # functions a task compiled over this run's model (tf.function), kept for its next call: made
        # anew per call, each would trace again (a served run answers many calls)
        self.compiled: dict[str, Any] = {}
        # where the task reports the items of the evaluate call in progress (None otherwise)
        self.progress: Progress | None = None

    @property
    def path(self) -> Path:
        return self.directory.path

    @property
    def preprocessor(self):
        if self._preprocessor is None:
            self._preprocessor = self.directory.load_tokenizer(self.task.load_preprocessor)
        return self._preprocessor

    @property
    def model(self) -> keras.Model:
        if self._model is None:
            self._model = load_model(self.directory.model_file(), compile=False)
        return self._model

    def evaluate(self, source: str | None = None, progress: Progress | None = None, **options) -> dict[str, Any]:
        """The task's metrics, also saved as RUN/metrics.json. A run folder that cannot be written
        (read-only, full) still gives the metrics, with a SeqtasksWarning that they were not saved.
        `progress` (e.g. seqtasks.progress.ProgressBar) hears of the examples, batches or sentences the
        task scores and decodes, as it does them."""
        _check_options(self.task.evaluate, options, self.task.name)
        start = time.monotonic()
        self.progress = progress
        try:
            metrics = self.task.evaluate(self, source, **options)
        finally:
            self.progress = None
        try:
            self.directory.write_metrics({**metrics, "data": source, "seconds": round(time.monotonic() - start, 2)})
        except OSError as error:
            warnings.warn(SeqtasksWarning(f"the metrics could not be saved in the run folder "
                                          f"({error.strerror or error})", str(self.directory.path / "metrics.json"),
                                          "they are complete as shown; make the folder writable to keep them"),
                          stacklevel=2)
        return metrics

    def predict(self, inputs: list[str], **options):
        _check_options(self.task.predict, options, self.task.name)
        return self.task.predict(self, inputs, **options)

    def sample(self, prompt: str = "", **options) -> str | list[str]:
        """Generated text (the continuation of the prompt, or its completion); a list when
        num_return_sequences > 1. Options: decoding.GenerationConfig's fields (max_new_tokens,
        temperature, top_k, top_p, repetition_penalty, no_repeat_ngram_size, beam_width, length_penalty,
        num_return_sequences, min_new_tokens, seed) and stop=[strings] (the text is cut before the first)."""
        return self.generate_batch([prompt], **options)[0]

    def generate_batch(self, prompts: list[str], **options) -> list[str] | list[list[str]]:
        """sample() for many prompts, decoded together: one text per prompt (a list of
        num_return_sequences texts per prompt when that is > 1)."""
        if not isinstance(self.task, Generative):
            raise UserError(f"the {self.task.name} task does not write text", str(self.path),
                            "use `seqtasks predict`")
        texts = self.task.generate_batch(self, list(prompts), **options)
        return texts if options.get("num_return_sequences", 1) > 1 else [t[0] for t in texts]

    def export(self, out: str | Path, format: str = "savedmodel") -> Path:
        """A SavedModel (or TFLite file) of the run that takes strings, with the tokenizer inside: it loads
        with tf.saved_model.load in a process without seqtasks (seqtasks.export says what it holds)."""
        from seqtasks.export import export_run

        if not isinstance(self.task, Exportable):
            raise UserError(f"the {self.task.name} task cannot export its runs", str(self.path))
        return export_run(self, out, format)

    def word_vectors(self):
        """The run's own token embedding table as WordVectors (seqtasks.word_vectors): its neighbours
        and analogies, as `seqtasks embeddings RUN` shows them."""
        return run_vectors(self.model, self.preprocessor, str(self.directory.path))

    def info(self) -> dict[str, Any]:
        state = self.directory.read_train_state() or {}
        history = self.directory.read_history()
        return {
            "path": str(self.path), "task": self.record["task"], "created": self.record.get("created"),
            "seqtasks_version": self.record.get("seqtasks_version"), "settings": self.record["settings"],
            "resolved": self.record.get("resolved", {}), "data": self.record.get("data", {}),
            "parent": self.record.get("parent"),
            "training": {k: state.get(k) for k in ("epoch", "global_step", "elapsed_seconds", "best_metric",
                                                   "finished", "stop_reason")},
            "epochs_recorded": len(history), "last_epoch": history[-1] if history else None,
            "model_file": str(self.directory.model_file()) if (self.directory.best_model_path.is_file()
                                                               or self.directory.last_checkpoint_path.is_file()) else None,
            "last_evaluation": self.directory.read_metrics(),
        }


def _check_options(method, options: dict[str, Any], task_name: str) -> None:
    """An option the task's method does not take is a user mistake, not something to ignore."""
    import inspect

    accepted = inspect.signature(method).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
        return
    for name in options:
        if name not in accepted:
            raise UserError(f"--{name.replace('_', '-')} does not apply to the {task_name} task",
                            fix=f"see `seqtasks {method.__name__} --help`")


def load(path: str | Path) -> Run:
    """Open a run folder for evaluate / predict / sample."""
    return Run(path)


def diagnose_gradients(runs: list[str | Path] = (), archs: list[str] = (), data: str | None = None,
                       seq_len: int | None = None, **options) -> tuple[list, dict[str, Any]]:
    """‖∂L_T/∂h_t‖ over t (seqtasks.gradient_flow) for recurrent runs (trained and re-initialised) and
    fresh cells `archs` (at initialisation and briefly trained). Returns (curves, the JSON report)."""
    from seqtasks import gradient_flow

    trained = []
    for path in runs:
        run = load(path)
        trained.append((str(run.path), run.model, run.preprocessor, getattr(run.settings, "data", "")))
        seq_len = seq_len or getattr(run.settings, "seq_len", None)
    return gradient_flow.diagnose(trained, list(archs), data, seq_len, **options)
