"""The run directory: one self-contained folder per trained model, written atomically.

    RUN/config.json     task, seqtasks version, every resolved setting, data sources (size, sha256)
    RUN/tokenizer/      the tokenizer files and labels.json
    RUN/model.keras     the best model so far (Keras native format, loaded in safe mode)
    RUN/checkpoints/    last.keras (weights + optimizer state) and train_state.json
    RUN/history.csv     one row per epoch;  RUN/metrics.json: the last evaluation
    RUN/logs/           TensorBoard
    RUN/lock            held (flock) by the one process writing the run: train, resume, finetune (run_lock)

The folder is built under a temporary name and renamed once config and tokenizer are complete, so a
half-made run never appears. Every later file is written to a temporary file and moved into place;
temporary names carry the writer's PID, so the next start of the run removes those of dead writers.

A checkpoint is three files that must agree: the weights (last.keras), the train state and history.
`save_checkpoint` writes them so that a kill at any instant leaves a run that `resume` continues:
the weights go to checkpoints/last.pending-STEP.keras, train_state.json (which carries the history
rows) is the commit point, then the pending file is renamed to last.keras and history.csv is derived
from the state. `recover` finishes or undoes whatever a killed writer left half-done.

Test hook: SEQTASKS_CRASH_AT="NAME:N" ends the process with os._exit(9) (no cleanup at all, like
kill -9) the Nth time this process is about to move a file NAME into place, its temporary written;
"NAME:N:after" ends it just after (counting from when the variable last changed). NAME is the file name (model.keras, last.pending.keras,
train_state.json, last.keras, history.csv), a pending checkpoint's step left out.
"""
from __future__ import annotations

import csv
import glob
import io
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from seqtasks.errors import UserError
from seqtasks.files import check_input_file, check_text_head, numbered_lines, read_json_object
from seqtasks.run_lock import RunLock, check_not_in_use

CONFIG_FILE = "config.json"
DAMAGED_RUN_FIX = "the run folder is damaged: restore the file from a backup, or train the run again"
CRASH_HOOK_ENV = "SEQTASKS_CRASH_AT"
_TEMP_PID = re.compile(r"\.tmp(\d+)(\.|$)")
_crash_counts: dict[str, int] = {}


def _crash_point(path: Path, moment: str) -> None:
    """The SEQTASKS_CRASH_AT test hook (see the module docstring)."""
    spec = os.environ.get(CRASH_HOOK_ENV)
    if not spec:
        return
    name, count, *when = spec.split(":")
    if re.sub(r"-\d+(?=\.keras$)", "", path.name) != name or (when or ["before"])[0] != moment:
        return
    seen = _crash_counts.get(spec, 0) + 1
    _crash_counts.clear()  # counting starts again whenever the spec changes
    _crash_counts[spec] = seen
    if seen == int(count):
        os._exit(9)


def _move_into_place(temporary: Path, path: Path) -> None:
    _crash_point(path, "before")
    os.replace(temporary, path)
    _crash_point(path, "after")


def temp_name(path: Path) -> str:
    """The prefix of a temporary file for `path`: hidden, and naming this process (see is_stray)."""
    return f".{path.name}.tmp{os.getpid()}."


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=temp_name(path))
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        _move_into_place(Path(temporary), path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def atomic_save_model(model, path: str | Path) -> None:
    """model.save to a temporary .keras file, then rename: a reader never sees a half-written model."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.tmp{os.getpid()}.keras")
    try:
        model.save(temporary)
        _move_into_place(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def place_copy(source: Path, path: Path) -> None:
    """Put a second name of `source` at `path`, atomically: a hard link (no bytes copied; both names are
    only ever replaced, never written in place), or a copy where the file system has no links."""
    temporary = path.with_name(f"{temp_name(path)}{path.suffix.lstrip('.')}")
    try:
        try:
            os.link(source, temporary)
        except OSError:
            shutil.copyfile(source, temporary)
        _move_into_place(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def process_alive(pid: int) -> bool:
    """Whether a process with this PID exists (ours included): the writer of a temporary file."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def is_stray(name: str) -> bool:
    """A temporary file name whose writer is gone: its PID is dead or ours (a starting run writes
    nothing yet), or it has none (written before temporary names carried one)."""
    found = _TEMP_PID.search(name)
    if found is None:
        return True
    pid = int(found.group(1))
    return pid == os.getpid() or not process_alive(pid)


def remove_stray(paths) -> list[Path]:
    removed = []
    for path in paths:
        if is_stray(path.name):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def already_exists(path: Path) -> UserError:
    """The error of a new run whose folder is there: in use by a running writer, or there to resume."""
    check_not_in_use(path)
    return UserError("the run folder already exists", str(path),
                     f"continue it with `seqtasks resume {path}`, or choose another --out")


class RunDirectory:
    """Paths and small files of one run; no model code."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.held: RunLock | None = None

    # ---- creation and opening -------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, config: dict[str, Any], write_contents: Callable[[Path], None],
               lock: bool = False) -> "RunDirectory":
        """Make RUN atomically: config.json and whatever write_contents(tmp) writes, then rename.
        lock: RUN/lock is taken before the rename, so the run appears held (release it with
        `with run_dir:` or unlock())."""
        path = Path(path)
        if path.exists():
            raise already_exists(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        prefix = f".{path.name}.creating."
        remove_stray(p for p in path.parent.glob(f"{glob.escape(prefix)}*"))  # left by a killed `train`
        temporary = Path(tempfile.mkdtemp(dir=path.parent, prefix=f"{prefix}tmp{os.getpid()}."))
        held = None
        try:
            write_contents(temporary)
            atomic_write_json(temporary / CONFIG_FILE, config)
            held = RunLock(temporary, path) if lock else None  # the lock is the open file's: it moves with it
            try:
                os.replace(temporary, path)
            except OSError:
                if path.exists():  # made by another process since the check above
                    raise already_exists(path) from None
                raise
        except BaseException:
            if held is not None:
                held.release()
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        run_dir = cls(path)
        run_dir.held = held
        return run_dir

    def lock(self, shown: str | Path | None = None) -> "RunDirectory":
        """Take RUN/lock for this process (run_lock.RunInUse when another holds it); `with run_dir:` releases it."""
        if self.held is None:
            self.held = RunLock(self.path, shown or self.path)
        return self

    def unlock(self) -> None:
        if self.held is not None:
            self.held.release()
            self.held = None

    def __enter__(self) -> "RunDirectory":
        return self

    def __exit__(self, *exc_info) -> None:
        self.unlock()

    @classmethod
    def open(cls, path: str | Path) -> "RunDirectory":
        path = Path(path)
        if not path.exists():
            raise UserError("no such run folder", str(path), "give the folder that `seqtasks train --out` made")
        if not path.is_dir():
            raise UserError("the run is a file, not a folder", str(path), "give the folder that `seqtasks train --out` made")
        if not (path / CONFIG_FILE).exists():
            raise UserError("not a seqtasks run (no config.json)", str(path),
                            "give the folder that `seqtasks train --out` made")
        return cls(path)

    # ---- files ----------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def tokenizer_dir(self) -> Path:
        return self.path / "tokenizer"

    @property
    def best_model_path(self) -> Path:
        return self.path / "model.keras"

    @property
    def last_checkpoint_path(self) -> Path:
        return self.path / "checkpoints" / "last.keras"

    @property
    def train_state_path(self) -> Path:
        return self.path / "checkpoints" / "train_state.json"

    @property
    def history_path(self) -> Path:
        return self.path / "history.csv"

    @property
    def logs_dir(self) -> Path:
        return self.path / "logs"

    def read_config(self) -> dict[str, Any]:
        return read_json_object(self.config_path, "run's config.json", DAMAGED_RUN_FIX)

    def write_config(self, config: dict[str, Any]) -> None:
        atomic_write_json(self.config_path, config)

    def read_train_state(self) -> dict[str, Any] | None:
        if not self.train_state_path.exists():
            return None
        return read_json_object(self.train_state_path, "run's checkpoints/train_state.json",
                                f"the checkpoint is damaged: fine-tune from the best model with `seqtasks finetune "
                                f"{self.path} --out NEW_RUN`, or train again")

    def read_metrics(self) -> dict[str, Any] | None:
        """The last evaluation, or None if there was none."""
        path = self.path / "metrics.json"
        if not path.exists():
            return None
        return read_json_object(path, "run's metrics.json", "delete it (it only holds the last evaluation) "
                                "and evaluate again")

    def write_train_state(self, state: dict[str, Any]) -> None:
        atomic_write_json(self.train_state_path, state)

    def load_tokenizer(self, load: Callable[[Path], Any]) -> Any:
        """What the task's `load` reads from RUN/tokenizer/; a missing or damaged file is one UserError."""
        if not self.tokenizer_dir.is_dir():
            raise UserError("the run has no tokenizer folder", str(self.tokenizer_dir), DAMAGED_RUN_FIX)
        try:
            return load(self.tokenizer_dir)
        except UserError:
            raise
        except Exception as error:  # each tokenizer format fails its own way: one line (--debug: all)
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise UserError(f"the run's tokenizer files are damaged: {first_line[:200]}", str(self.tokenizer_dir),
                            DAMAGED_RUN_FIX) from error

    def pending_checkpoint_path(self, step: int) -> Path:
        return self.last_checkpoint_path.with_name(f"last.pending-{step}.keras")

    # ---- checkpoints, crash-safe (see the module docstring) ---------------------------------
    def save_checkpoint(self, model, state: dict[str, Any], best: bool = False) -> None:
        """Weights + optimizer, train state and history, in the order that survives a kill anywhere.
        best: the same weights are also the best model so far (RUN/model.keras), put in place before
        the commit, as a second name of the one file written (a model is serialized once)."""
        step = int(state["global_step"])
        pending = self.pending_checkpoint_path(step)
        atomic_save_model(model, pending)
        if best:
            try:
                place_copy(pending, self.best_model_path)
            except Exception:
                pending.unlink(missing_ok=True)
                raise
        try:
            self.write_train_state({**state, "checkpoint_step": step})  # the commit point
        except Exception:  # not replaced (a disk full, say); an interrupt leaves the pick to recover()
            pending.unlink(missing_ok=True)
            raise
        _move_into_place(pending, self.last_checkpoint_path)
        self.write_history(state.get("history", []))

    def update_checkpoint_state(self, state: dict[str, Any]) -> None:
        """A new train state (and history) for the weights already in last.keras: a step-less change,
        such as the run being finished, needs no second copy of the weights."""
        self.write_train_state(state)
        self.write_history(state.get("history", []), only_if_changed=True)

    def recover(self) -> list[Path]:
        """Make the run whole after a kill at any instant; call it only when starting to train the run.
        A pending checkpoint the train state names is moved into place, any other is dropped; history.csv
        is rewritten from the state; temporary files of dead writers are removed. Returns what was removed."""
        folders = [self.path, self.last_checkpoint_path.parent]
        removed = remove_stray(p for folder in folders for p in folder.glob(".*") if p.is_file())
        state = self.read_train_state()
        committed = state.get("checkpoint_step") if state else None
        for pending in self.last_checkpoint_path.parent.glob("last.pending-*.keras"):
            if committed is not None and pending == self.pending_checkpoint_path(committed):
                os.replace(pending, self.last_checkpoint_path)
            else:
                pending.unlink(missing_ok=True)
                removed.append(pending)
        if state is not None:
            self.write_history(state.get("history", []), only_if_changed=True)
        return removed

    def model_file(self) -> Path:
        """The best model, or the last checkpoint if no validation has finished yet."""
        for candidate in (self.best_model_path, self.last_checkpoint_path):
            if candidate.exists():  # a folder or a damaged file in its place is reported when loading it
                return candidate
        raise UserError("the run has no trained weights yet", str(self.path),
                        f"train it further with `seqtasks resume {self.path}`")

    # ---- history --------------------------------------------------------------------------
    def read_history(self) -> list[dict[str, str]]:
        if not self.history_path.exists():
            return []
        role = "run's history.csv"
        path = check_input_file(self.history_path, role, allow_empty=True)
        check_text_head(path, role)
        try:
            return list(csv.DictReader(line for _, line in numbered_lines(path, role)))
        except csv.Error as error:
            raise UserError(f"the {role} is damaged ({error})", str(path),
                            "delete it: it only lists the epochs (checkpoints/train_state.json keeps them too)")

    def write_history(self, rows: list[dict[str, Any]], only_if_changed: bool = False) -> None:
        columns: list[str] = []
        for row in rows:
            columns.extend(key for key in row if key not in columns)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        text = buffer.getvalue()
        if only_if_changed and self.history_path.is_file() and self.history_path.read_text(encoding="utf-8") == text:
            return
        atomic_write_text(self.history_path, text)

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        atomic_write_json(self.path / "metrics.json", metrics)
