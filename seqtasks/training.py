"""The one training loop: AdamW, warmup + cosine, clipping, precision, strategy, checkpoints, resume.

Training is `model.fit`, called once per epoch so that each epoch's data order depends only on
(seed, epoch); that is what lets `resume` continue exactly, skipping the batches already seen. One
callback, `RunKeeper`, owns everything that outlives a step:

    learning rate  lr(p) = lr_max · min(1, step / warmup) · (r + (1 - r) · ½(1 + cos(π p)))
                   with progress p = max(step / planned_steps, elapsed / budget), so the schedule
                   fits itself to --max-time as well as to --epochs; a warmup longer than half
                   the planned steps shrinks to a tenth of them (fitted_warmup);
    checkpoints    checkpoints/last.keras + train_state.json at each epoch end and every few minutes;
                   model.keras whenever the monitored validation metric improves;
    history.csv    one row per finished epoch, derived from train_state.json; curves.png drawn from it
                   at the end of training (with matplotlib, the plot extra); with the loss, the
                   epoch's mean global gradient norm before clipping and the share of clipped steps
                   (grad_norm, grad_norm_max, clipped; also in TensorBoard, counted by MonitoredAdamW);
    stopping       the time budget, early stopping (patience), a non-finite loss.
The writes of an epoch's end are ordered (best model, then RunDirectory.save_checkpoint) so that a
kill at any instant leaves a run `resume` continues. Ctrl-C and SIGTERM save the last checkpoint and
print how to resume; any other error inside training does too, then raises TrainingFailed (one line).
On several workers (--strategy multiworker, seqtasks.distributed) the datasets are sharded, the clock
is the chief's, read once a step, and an interruption keeps the last checkpoint rather than saving
one the other workers would have to join.
"""
from __future__ import annotations

import dataclasses
import errno
import math
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import keras

from seqtasks import backend, distributed
from seqtasks.errors import Terminated, TrainingFailed, UserError, describe_exception
from seqtasks.progress import format_duration
from seqtasks.runs import RunDirectory

MID_EPOCH_CHECKPOINT_SECONDS = 600.0


def cpu_has_fast_bf16() -> bool:
    """True where the CPU has bf16 matrix instructions (AMX or AVX512-BF16); elsewhere bf16 is emulated."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            flags = next((line for line in handle if line.startswith("flags")), "")
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("amx_bf16", "avx512_bf16"))


def resolve_precision(precision: str) -> str:
    """auto -> bf16 where the hardware has fast bf16, else fp32. Returns fp32 | bf16 | fp16."""
    if precision != "auto":
        return precision
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0))
        if capability >= (8, 0):
            return "bf16"
    return "bf16" if cpu_has_fast_bf16() else "fp32"


def dtype_policy(precision: str) -> str:
    return {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}[resolve_precision(precision)]


_multiworker_strategy = []  # made once per process: its collectives are configured at start-up


def make_strategy(name: str):
    """default: one device. mirrored: every GPU, or every logical CPU device when there is no GPU
    ($SEQTASKS_CPU_DEVICES=N makes N of them, see seqtasks.backend). multiworker: many machines,
    described by the TF_CONFIG environment variable (seqtasks.distributed); call this before any
    other TensorFlow work."""
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        backend.split_cpu(os.environ.get(backend.CPU_DEVICES_ENV))  # when TensorFlow started elsewhere
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multiworker":
        if not _multiworker_strategy:
            _multiworker_strategy.append(distributed.make_multiworker_strategy())
        return _multiworker_strategy[0]
    raise UserError(f"unknown strategy {name!r}", fix="choose default, mirrored or multiworker")


class GradientStats:
    """Running sums of one epoch's steps: the global gradient norm n_s, its maximum, the steps with
    n_s > clip_norm. A plain object, not tracked by Keras, so that checkpoints keep the optimizer's
    variables as they were (runs saved before load as they are, and resume loads them)."""

    def __init__(self):
        def counter():
            return keras.Variable(0.0, dtype="float32", trainable=False, aggregation="only_first_replica")

        self.steps, self.norm_sum, self.norm_max, self.clipped = counter(), counter(), counter(), counter()

    def record(self, norm, clip_norm: float | None) -> None:
        self.steps.assign_add(1.0)
        self.norm_sum.assign_add(norm)
        self.norm_max.assign(keras.ops.maximum(self.norm_max, norm))
        if clip_norm:
            self.clipped.assign_add(keras.ops.cast(norm > clip_norm, "float32"))

    def reset(self) -> None:
        for variable in (self.steps, self.norm_sum, self.norm_max, self.clipped):
            variable.assign(0.0)

    def summary(self) -> dict[str, float]:
        """{grad_norm: the mean n_s, grad_norm_max, clipped: the share of clipped steps}; {} before a step."""
        steps = float(keras.ops.convert_to_numpy(self.steps))
        if not steps:
            return {}
        value = lambda variable: float(keras.ops.convert_to_numpy(variable))  # noqa: E731
        return {"grad_norm": value(self.norm_sum) / steps, "grad_norm_max": value(self.norm_max),
                "clipped": value(self.clipped) / steps}


@keras.saving.register_keras_serializable(package="seqtasks")
class MonitoredAdamW(keras.optimizers.AdamW):
    """AdamW that clips the gradient of the whole batch by its global norm, and records that norm
    before clipping, at every step:

        g   = Σ_r g_r                           the batch's gradient: the sum over the R replicas of
                                                each one's gradient of its share of the loss (R = 1 on
                                                one device)
        n_s = ‖g‖₂ = sqrt(Σ_v ‖g_v‖²)          over every trainable variable v
        ĝ   = g · min(1, global_clipnorm / n_s) clipped when n_s > global_clipnorm

    into `gradient_stats` (GradientStats), which RunKeeper reads and resets at each epoch. Keras itself
    clips each replica's g_r before it sums them, which under `mirrored` or `multiworker` differs from
    one device's step as soon as clipping starts; so with R > 1 the replicas sum their gradients first
    (one extra all-reduce), clip g, and each hands Keras ĝ / R, whose sum Keras then forms: every
    replica applies ĝ, as one device would. One sum of squares over the gradients per step:
    benchmarks/gradient_norm_cost.py measures what it costs.
    """

    def build(self, variables):
        super().build(variables)
        self.gradient_stats = GradientStats()

    def _clip_gradients(self, grads):
        import tensorflow as tf

        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync if context is not None else 1
        present = [i for i, g in enumerate(grads) if g is not None]
        if not present:
            return grads
        grads = list(grads)
        if replicas > 1:
            summed = context.all_reduce(tf.distribute.ReduceOp.SUM, [grads[i] for i in present])
            for i, g in zip(present, summed):
                grads[i] = g
        norm = keras.ops.sqrt(keras.ops.sum(keras.ops.stack(
            [keras.ops.sum(keras.ops.square(keras.ops.cast(grads[i], "float32"))) for i in present])))
        self.gradient_stats.record(norm, self.global_clipnorm)
        scale = 1.0 / replicas
        if self.global_clipnorm and self.global_clipnorm > 0:
            # a non-finite norm makes the step NaN, as Keras' clip_by_global_norm does
            scale = scale * keras.ops.minimum(1.0, self.global_clipnorm / norm) + (norm - norm)
        if replicas == 1 and not (self.global_clipnorm and self.global_clipnorm > 0):
            return grads
        return [g if g is None else g * keras.ops.cast(scale, g.dtype) for g in grads]


def gradient_stats(optimizer) -> GradientStats | None:
    """The stats of a model's optimizer (inside a LossScaleOptimizer under fp16); None for another optimizer."""
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    return getattr(optimizer, "gradient_stats", None)


def make_optimizer(cfg) -> keras.optimizers.Optimizer:
    optimizer = MonitoredAdamW(
        learning_rate=cfg.lr, weight_decay=cfg.weight_decay, beta_1=0.9, beta_2=0.99,
        global_clipnorm=cfg.clip_norm or None,
    )
    # decay matrices only: biases, norms and position tables are not pulled towards zero
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta", "norm", "position"])
    return optimizer


DEFAULT_EPOCHS = 10  # the epoch limit when neither --epochs nor --max-time is given


def planned_epochs(cfg) -> int | None:
    """The epochs to run: --epochs when given; with only --max-time, None (until the budget is
    spent, so the epochs are no hidden second limit); with neither, DEFAULT_EPOCHS."""
    if cfg.epochs:
        return cfg.epochs
    return None if cfg.max_time else DEFAULT_EPOCHS


def fitted_warmup(warmup_steps: int, planned_steps: float) -> int:
    """Warmup steps that leave the schedule room to reach its peak: a warmup longer than half the
    planned steps (a small fine-tuning set) would keep the learning rate far below --lr throughout,
    so it shrinks to a tenth of them (at least 1)."""
    if warmup_steps > planned_steps / 2:
        return max(1, int(planned_steps) // 10)
    return warmup_steps


def learning_rate(step: int, progress: float, cfg) -> float:
    warmup = min(1.0, (step + 1) / max(cfg.warmup_steps, 1))
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    return cfg.lr * warmup * (cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * cosine)


@dataclass
class TrainState:
    """What resume needs beyond the weights and optimizer: saved as checkpoints/train_state.json."""

    epoch: int = 0                 # the epoch to run next (or the one interrupted)
    step_in_epoch: int = 0         # batches of `epoch` already trained on
    global_step: int = 0
    elapsed_seconds: float = 0.0   # training time spent in earlier sessions
    best_metric: float | None = None
    monitor: str = ""              # the history column best_metric is of ("": a run saved before it was kept)
    monitor_name: str = ""         # that column as users are told it (FitPlan.monitor_name)
    epochs_without_improvement: int = 0
    finished: bool = False
    stop_reason: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)
    checkpoint_step: int | None = None  # global_step of checkpoints/last.keras (set by save_checkpoint)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainState":
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class FitPlan:
    """What a task hands the loop: batches per epoch, validation data and the metric to watch."""

    train_batches: Callable[[int, int], Any]   # (epoch, skip_batches) -> tf.data.Dataset
    steps_per_epoch: int
    valid_data: Any = None
    monitor: str = "val_loss"      # the history column the best checkpoint (model.keras) is chosen by
    mode: str = "min"              # min | max: which way is better
    monitor_name: str = ""         # the monitor as users are told it ("entity F1"); "": the task's monitor_name
    # scores beyond the compiled metrics, computed by the task at each epoch's end: model -> {name: value} of the
    # validation data, logged as val_NAME (history.csv, TensorBoard) before the monitor is read
    validate: Callable[[keras.Model], dict[str, float]] | None = None
    sample: Callable[[keras.Model], str] | None = None
    # log p(token) over the training targets: a new model's output bias starts there (unigram_log_prior)
    output_log_prior: Any = None


def unigram_log_prior(target_ids, vocab_size: int, stops: int = 0, stop_id: int | None = None):
    """log p(w) of the training targets, add-one smoothed: (vocab_size,) float32. `stops` more
    occurrences of `stop_id` count the EOS that ends each target.

    Why: a new model's first steps learn word frequencies. With a zero output bias they do it by
    pushing every output vector towards one direction, which saturates a tanh output layer (an
    attentional seq2seq's o_t = tanh(W_c [s_t; c_t])); its gradient then vanishes and the loss
    sits at the unigram entropy for thousands of steps. Starting the bias at log p(w) leaves the
    hidden layers only the context to learn (Karpathy, "A Recipe for Training Neural Networks").
    """
    import numpy as np

    counts = np.bincount(np.asarray(target_ids, np.int64).ravel(), minlength=vocab_size)[:vocab_size].astype(np.float64)
    if stop_id is not None:
        counts[stop_id] += stops
    counts += 1.0
    return np.log(counts / counts.sum()).astype(np.float32)


def time_left(elapsed: float, budget_seconds: float, step: int, planned_steps: float,
              seconds_per_step: float | None) -> float | None:
    """Seconds until training stops: the budget's remainder or the remaining planned steps at the
    measured pace, whichever ends first; None when neither is known yet."""
    candidates = []
    if budget_seconds:
        candidates.append(budget_seconds - elapsed)
    if math.isfinite(planned_steps) and seconds_per_step is not None:
        candidates.append((planned_steps - step) * seconds_per_step)
    return max(min(candidates), 0.0) if candidates else None


def run_progress(epoch: int, total_epochs: int | None, fraction: float, left: float | None,
                 budget_seconds: float) -> str:
    """The line heading an epoch: 'Epoch 3/30: 21% of the run, about 2m22s left (time budget 3m00s)'."""
    epochs = f"Epoch {epoch}/{total_epochs}" if total_epochs else f"Epoch {epoch}"
    parts = [f"{min(fraction, 1.0):.0%} of the run"]
    if left is not None:
        parts[0] += f", about {format_duration(left)} left"
    if budget_seconds:
        parts.append(f"(time budget {format_duration(budget_seconds)})")
    return f"{epochs}: {' '.join(parts)}"


def better(value: float, than: float, mode: str) -> bool:
    return value < than if mode == "min" else value > than


def rebase_best(state: TrainState, plan: FitPlan) -> None:
    """Make state.best_metric the best of plan.monitor when it was kept for another column (a run saved
    before its task chose the best checkpoint this way): the best of that column in the history, and
    the epochs since; with no such column yet, none (the next epoch's model becomes the best). A run
    that never had validation data kept its training loss, and still does."""
    if state.monitor == plan.monitor:
        return
    state.monitor = plan.monitor
    if not any(key.startswith("val_") for row in state.history for key in row):
        return  # never validated: the best was the training loss, as it still is
    scored = [(row["epoch"], row[plan.monitor]) for row in state.history if row.get(plan.monitor) is not None]
    best = None
    for epoch, value in scored:
        if best is None or better(value, best[1], plan.mode):
            best = (epoch, value)
    state.best_metric = best[1] if best else None
    state.epochs_without_improvement = sum(epoch > best[0] for epoch, _ in scored) if best else 0


class _EpochProgress(keras.callbacks.ProgbarLogger):
    """Keras' bar for each epoch, headed by the whole run's progress: the share done and the time left,
    against --max-time and the planned epochs (fit is called one epoch at a time, so Keras alone
    would count each call as the whole run)."""

    def __init__(self, keeper: "RunKeeper", total_epochs: int | None):
        super().__init__()
        self.keeper = keeper
        self.total_epochs = total_epochs  # None: until the time budget is spent
        self.last_epoch_start: tuple[float, int] | None = None  # (time, global step) when the last epoch began

    def on_epoch_begin(self, epoch, logs=None):
        verbose, self.verbose = self.verbose, 0  # Keras would print "Epoch n/n+1"
        super().on_epoch_begin(epoch, logs)
        self.verbose = verbose
        keeper, now = self.keeper, time.monotonic()
        step = keeper.state.global_step
        pace = None  # seconds per step over the last epoch, validation included (the first also compiled: it runs long)
        if self.last_epoch_start and step > self.last_epoch_start[1]:
            pace = (now - self.last_epoch_start[0]) / (step - self.last_epoch_start[1])
        self.last_epoch_start = (now, step)
        if verbose:
            left = time_left(keeper.elapsed(), keeper.budget_seconds, step, keeper.planned_steps, pace)
            print(run_progress(epoch + 1, self.total_epochs, keeper.progress(step), left, keeper.budget_seconds),
                  flush=True)


class RunKeeper(keras.callbacks.Callback):
    def __init__(self, run: RunDirectory, plan: FitPlan, cfg, state: TrainState, budget_seconds: float,
                 planned_steps: int, workers: distributed.Workers | None = None):
        super().__init__()
        self.run, self.plan, self.cfg, self.state = run, plan, cfg, state
        self.budget_seconds, self.planned_steps = budget_seconds, planned_steps
        self.workers = workers
        # on several workers, the chief's clock, read once a step: every time-based decision agrees
        self.now = self.read_clock()
        self.session_start = self.now
        self.last_checkpoint = self.now
        self.epoch_start_step = state.global_step
        self.diverged_at: int | None = None
        self.budget_spent = False
        self.early_stopped = False
        self.saved_step: int | None = state.checkpoint_step  # the step the last checkpoint holds
        self.epoch_number = state.epoch + 1  # the epoch being trained or closed, counted from 1

    def read_clock(self) -> float:
        if self.workers is None:
            return time.monotonic()
        return self.workers.agreed(time.monotonic())

    def elapsed(self) -> float:
        if self.workers is None:
            self.now = time.monotonic()
        return self.state.elapsed_seconds + (self.now - self.session_start)

    def progress(self, step: int) -> float:
        by_steps = step / max(self.planned_steps, 1)
        by_time = self.elapsed() / self.budget_seconds if self.budget_seconds else 0.0
        return max(by_steps, by_time)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_number = epoch + 1
        self.epoch_start_step = self.state.global_step - self.state.step_in_epoch
        stats = gradient_stats(self.model.optimizer)
        if stats is not None:
            stats.reset()

    def on_train_batch_begin(self, batch, logs=None):
        step = self.state.global_step
        self.model.optimizer.learning_rate = learning_rate(step, self.progress(step), self.cfg)

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.diverged_at = self.state.global_step
            self.model.stop_training = True
            return
        self.state.global_step += 1
        self.state.step_in_epoch = self.state.global_step - self.epoch_start_step
        self.now = self.read_clock()
        if self.budget_seconds and self.elapsed() >= self.budget_seconds:
            self.budget_spent = True
            self.model.stop_training = True
        elif self.now - self.last_checkpoint > MID_EPOCH_CHECKPOINT_SECONDS:
            self.save_last()

    def on_epoch_end(self, epoch, logs=None):
        if self.diverged_at is not None:
            return
        stats = gradient_stats(self.model.optimizer)
        extra = {f"val_{name}": float(value) for name, value in self.plan.validate(self.model).items()} \
            if self.plan.validate is not None else {}
        if stats is not None:
            extra.update(stats.summary())
        if logs is not None:
            logs.update(extra)  # the dict the TensorBoard callback, which runs next, writes
        logs = {**(logs or {}), **extra}
        row = {"epoch": epoch + 1, "step": self.state.global_step,
               "lr": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
               "elapsed_s": round(self.elapsed(), 1)}
        row.update({k: float(v) for k, v in logs.items() if k != "learning_rate"})
        self.state.history = [r for r in self.state.history if r["epoch"] != epoch + 1] + [row]
        metric = logs.get(self.plan.monitor, logs.get("loss"))
        improved = metric is not None and (self.state.best_metric is None
                                           or better(metric, self.state.best_metric, self.plan.mode))
        if improved:
            self.state.best_metric = float(metric)
            self.state.epochs_without_improvement = 0
        else:
            self.state.epochs_without_improvement += 1
            if self.cfg.patience and self.state.epochs_without_improvement >= self.cfg.patience:
                self.early_stopped = True
                self.model.stop_training = True
        self.state.epoch, self.state.step_in_epoch = epoch + 1, 0
        self.save_last(best=improved)  # the epoch's commit point; history.csv follows from it
        if self.plan.sample is not None:
            try:
                print(f"sample after epoch {epoch + 1}:\n{self.plan.sample(self.model)}\n", flush=True)
            except Exception as error:  # a failed sample must never cost the training run
                print(f"(no sample: {error})", file=sys.stderr)

    def save_last(self, best: bool = False) -> None:
        """Checkpoint the current step (best: it is also the best model so far); when last.keras
        already holds this step's weights, only the train state is new."""
        snapshot = TrainState(**{**self.state.__dict__, "elapsed_seconds": self.elapsed(),
                                 "checkpoint_step": self.state.global_step})
        if not best and self.saved_step == self.state.global_step and self.run.last_checkpoint_path.is_file():
            self.run.update_checkpoint_state(snapshot.__dict__)
        else:
            self.run.save_checkpoint(self.model, snapshot.__dict__, best=best)
        self.saved_step = self.state.global_step
        self.last_checkpoint = self.now

    def kept(self) -> str:
        return f"the checkpoint at step {self.saved_step} is kept" if self.saved_step else "no checkpoint was saved"

    def save_after_failure(self) -> str:
        """Checkpoint the last finished step after an interruption or error; say what was kept."""
        if self.saved_step == self.state.global_step and self.run.last_checkpoint_path.is_file():
            return f"the checkpoint at step {self.saved_step} is kept"
        if self.state.global_step == 0:
            return "nothing was trained yet"
        try:
            self.save_last()
        except Exception as error:  # the weights may be what failed; the older checkpoint stays valid
            kept = f"the checkpoint at step {self.saved_step} is kept" if self.saved_step else "no checkpoint was saved"
            return f"saving a checkpoint failed too ({describe_exception(error)}); {kept}"
        return f"saved a checkpoint at step {self.state.global_step}"


def runs_eagerly() -> bool:
    """$SEQTASKS_RUN_EAGERLY=1: Keras runs the train and test steps eagerly, not as traced graphs (a
    debugging aid: Python breakpoints and prints inside the model work; slower per step, no tracing)."""
    return os.environ.get("SEQTASKS_RUN_EAGERLY", "0") not in ("", "0")


def compile_model(model: keras.Model, cfg, loss, metrics=()) -> None:
    model.compile(optimizer=make_optimizer(cfg), loss=loss, metrics=list(metrics))
    # set on the model, not passed to compile: compile's arguments are saved with model.keras, and a run
    # trained while debugging must not stay eager when it is resumed
    model.run_eagerly = runs_eagerly()
    # built now, for the weights trainable now: left to the first training step, the optimizer would
    # create its variables inside the traced step, and TensorFlow would trace that step twice
    model.optimizer.build(model.trainable_variables)


def fit(model: keras.Model, run: RunDirectory, plan: FitPlan, cfg, state: TrainState | None = None,
        verbose: int = 1, shown_path: Path | None = None) -> TrainState:
    """Train `model` (compiled) for cfg.epochs or cfg.max_time minutes; return the final TrainState.
    `shown_path`: the run as the user knows it, where `run` is a worker's temporary copy."""
    state = state or TrainState(monitor=plan.monitor)
    rebase_best(state, plan)
    state.monitor_name = plan.monitor_name
    workers = distributed.workers_of(model.distribute_strategy)
    if workers is not None:
        plan = distributed.sharded_plan(model, plan)
    shown_path = shown_path or run.path
    budget = cfg.max_time * 60.0 if cfg.max_time else 0.0
    epochs = planned_epochs(cfg)
    planned = epochs * plan.steps_per_epoch if epochs else math.inf  # inf: the schedule follows the clock
    warmup = fitted_warmup(cfg.warmup_steps, planned)
    if warmup != cfg.warmup_steps:
        steps = f"{planned:,} training step{'s' * (planned != 1)}"
        print(f"note: {steps}: warmup {cfg.warmup_steps} -> {warmup} step{'s' * (warmup != 1)}, so the "
              "learning rate reaches --lr", flush=True)
        cfg = dataclasses.replace(cfg, warmup_steps=warmup)
    if not verbose:  # --quiet: no samples either, on every verb that trains
        plan = dataclasses.replace(plan, sample=None)
    keeper = RunKeeper(run, plan, cfg, state, budget, planned, workers)
    callbacks = [keeper, keras.callbacks.TensorBoard(str(run.logs_dir), write_graph=False, profile_batch=0)]
    if verbose:
        callbacks.append(_EpochProgress(keeper, epochs))
    with terminate_as_interrupt():
        try:
            while (epochs is None or state.epoch < epochs) and not state.finished:
                epoch = state.epoch
                if state.step_in_epoch >= plan.steps_per_epoch:
                    close_epoch(model, keeper, plan, epoch)
                else:
                    model.fit(plan.train_batches(epoch, state.step_in_epoch), validation_data=plan.valid_data,
                              initial_epoch=epoch, epochs=epoch + 1, callbacks=callbacks, verbose=verbose,
                              shuffle=False)
                if keeper.diverged_at is not None:
                    # the state of the last good checkpoint (or of none: step 0), marked, so info tells why
                    committed = run.read_train_state() or dict(TrainState().__dict__)
                    run.write_train_state({**committed, "stop_reason": "diverged"})
                    raise UserError(
                        f"training diverged: the loss became NaN or infinite at step {keeper.diverged_at}",
                        str(run.path),
                        f"lower --lr (now {cfg.lr:g}), keep --clip-norm on, or use --precision fp32; "
                        "the last good checkpoint is kept")
                if keeper.budget_spent or keeper.early_stopped:
                    state.finished = True
                    state.stop_reason = "time budget spent" if keeper.budget_spent else "early stopping"
            if not state.finished:
                state.finished, state.stop_reason = True, "all epochs done"
            keeper.save_last()
        except KeyboardInterrupt as interrupt:
            how = "terminated (SIGTERM), exit status 143" if isinstance(interrupt, Terminated) else "interrupted"
            if workers is not None:  # a checkpoint now would wait for the other workers: keep the last one
                print(f"{how}: {keeper.kept()}; {distributed.RESUME_ALL} `seqtasks resume {shown_path}`",
                      file=sys.stderr, flush=True)
                raise
            kept = keeper.save_after_failure()
            print(f"\n{how}: {kept}; continue with\n  seqtasks resume {run.path}", file=sys.stderr, flush=True)
            raise
        except UserError:
            if keeper.diverged_at is None:  # a task's own error mid-training: keep the steps done (NaN weights never)
                keeper.save_after_failure()
            raise
        except Exception as error:
            where = f"epoch {keeper.epoch_number}, step {state.global_step}"
            if workers is not None:  # most often another worker stopped: the collectives were aborted
                raise TrainingFailed(
                    f"training stopped at {where}: {distributed.describe_worker_failure(error)}", str(shown_path),
                    f"{keeper.kept()}; {distributed.RESUME_ALL} `seqtasks resume {shown_path}`") from error
            if isinstance(error, OSError) and error.errno in UNWRITABLE:
                kept = (f"the checkpoint at step {keeper.saved_step} is kept" if keeper.saved_step
                        else "no checkpoint was saved")
                folder = Path(error.filename).parent if error.filename else run.path
                raise TrainingFailed(
                    f"training stopped at {where}: {UNWRITABLE[error.errno]} writing to {folder}", str(run.path),
                    f"{kept}; make room, then continue with `seqtasks resume {run.path}`") from error
            kept = keeper.save_after_failure()
            raise TrainingFailed(
                f"training failed at {where}: {describe_exception(error)}", str(run.path),
                f"{kept}; continue with `seqtasks resume {run.path}`; --debug shows the traceback") from error
    write_curves(run, state.history, plan.monitor, verbose)
    return state


def write_curves(run: RunDirectory, history: list[dict[str, Any]], monitor: str, verbose: int) -> Path | None:
    """RUN/curves.png (loss, validation metrics, learning rate per epoch) when matplotlib is installed;
    without it, one hint line (when verbose) and nothing else. A failed plot never costs the run."""
    from seqtasks import plotting

    path = run.path / "curves.png"
    if not plotting.have_matplotlib():
        if verbose:
            print(f"(pip install seqtasks[plot] draws the training curves to {path})", flush=True)
        return None
    try:
        return plotting.draw_training_curves(history, path, monitor)
    except Exception as error:
        print(f"(no training curves: {describe_exception(error)})", file=sys.stderr, flush=True)
        return None


def close_epoch(model: keras.Model, keeper: RunKeeper, plan: FitPlan, epoch: int) -> None:
    """An epoch whose batches were all trained before an interruption, but whose end was not reached:
    validate and record it without another step (an empty model.fit would still take one). The
    training loss of that epoch is gone, so its history row has the validation columns only."""
    logs = {}
    if plan.valid_data is not None:
        scores = model.evaluate(plan.valid_data, verbose=0, return_dict=True)
        logs = {f"val_{name}": value for name, value in scores.items()}
    keeper.set_model(model)
    keeper.epoch_number = epoch + 1
    keeper.on_epoch_end(epoch, logs)


# errno -> what the user is told when a checkpoint cannot be written
UNWRITABLE = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded",
              errno.EROFS: "read-only file system", errno.EACCES: "folder not writable",
              errno.EPERM: "folder not writable"}


@contextmanager
def terminate_as_interrupt():
    """While training, SIGTERM raises Terminated (a KeyboardInterrupt) in the main thread, so that it
    saves the checkpoint as Ctrl-C does; the previous handler comes back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_terminate(signum, frame):
        signal.signal(signal.SIGTERM, previous)  # a second SIGTERM is not held up by the save
        raise Terminated()

    previous = signal.getsignal(signal.SIGTERM)
    if previous is None:  # installed outside Python: the default is the nearest we can restore
        previous = signal.SIG_DFL
    signal.signal(signal.SIGTERM, on_terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
