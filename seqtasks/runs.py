"""The run directory: one self-contained folder per trained model, written atomically.

    RUN/config.json     task, seqtasks version, every resolved setting, data sources (size, sha256)
    RUN/tokenizer/      the tokenizer files and labels.json
    RUN/model.keras     the best model so far (Keras native format, loaded in safe mode)
    RUN/checkpoints/    last.keras (weights + optimizer state) and train_state.json
    RUN/history.csv     one row per epoch;  RUN/metrics.json: the last evaluation
    RUN/logs/           TensorBoard

The folder is built under a temporary name and renamed once config and tokenizer are complete, so a
half-made run never appears. Every later file is written to a temporary file and moved into place.
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from seqtasks.errors import UserError

CONFIG_FILE = "config.json"


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
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
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


class RunDirectory:
    """Paths and small files of one run; no model code."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    # ---- creation and opening -------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, config: dict[str, Any], write_contents: Callable[[Path], None]) -> "RunDirectory":
        """Make RUN atomically: config.json and whatever write_contents(tmp) writes, then rename."""
        path = Path(path)
        if path.exists():
            raise UserError("the run folder already exists", str(path),
                            f"continue it with `seqtasks resume {path}`, or choose another --out")
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.creating."))
        try:
            write_contents(temporary)
            atomic_write_json(temporary / CONFIG_FILE, config)
            os.replace(temporary, path)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        return cls(path)

    @classmethod
    def open(cls, path: str | Path) -> "RunDirectory":
        path = Path(path)
        if not path.exists():
            raise UserError("no such run folder", str(path), "give the folder that `seqtasks train --out` made")
        if not (path / CONFIG_FILE).is_file():
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
        try:
            return json.loads(self.config_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise UserError(f"the run's config.json is damaged: {error}", str(self.config_path))

    def write_config(self, config: dict[str, Any]) -> None:
        atomic_write_json(self.config_path, config)

    def read_train_state(self) -> dict[str, Any] | None:
        if not self.train_state_path.is_file():
            return None
        return json.loads(self.train_state_path.read_text(encoding="utf-8"))

    def write_train_state(self, state: dict[str, Any]) -> None:
        atomic_write_json(self.train_state_path, state)

    def model_file(self) -> Path:
        """The best model, or the last checkpoint if no validation has finished yet."""
        for candidate in (self.best_model_path, self.last_checkpoint_path):
            if candidate.is_file():
                return candidate
        raise UserError("the run has no trained weights yet", str(self.path),
                        f"train it further with `seqtasks resume {self.path}`")

    # ---- history --------------------------------------------------------------------------
    def read_history(self) -> list[dict[str, str]]:
        if not self.history_path.is_file():
            return []
        with open(self.history_path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))

    def write_history(self, rows: list[dict[str, Any]]) -> None:
        columns: list[str] = []
        for row in rows:
            columns.extend(key for key in row if key not in columns)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.history_path, buffer.getvalue())

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        atomic_write_json(self.path / "metrics.json", metrics)
