"""Configs: one dataclass per task, every hyperparameter with its default and a help line.

A setting is resolved in this order, later wins: the dataclass default, the TOML file (`--config`: a
path, or the name of a config installed with seqtasks, seqtasks/configs/NAME.toml), the command-line
flags. The CLI builds its options from the same dataclass fields, so a setting has
one name everywhere: `seq_len` in TOML is `--seq-len` on the command line.
"""
from __future__ import annotations

import dataclasses
import json
import math
import tomllib
import types
import typing
import warnings
from pathlib import Path
from typing import Any

from seqtasks.errors import SeqtasksWarning, UserError


def setting(default: Any, help: str, choices: tuple[str, ...] | None = None, *, minimum: float | None = None,
            maximum: float | None = None, above: float | None = None, below: float | None = None,
            path: str | None = None, renamed_from: tuple[str, ...] = ()) -> Any:
    """A dataclass field carrying its help text (and allowed values) for --help and error messages.

    Numbers carry their range, checked by resolve_config before anything is made: `minimum` and
    `maximum` are inclusive bounds, `above` and `below` exclusive ones. `path`: the value names a
    file, folder or glob, recorded as an absolute path so that resume finds it from any folder:
    "data" (training data: its size and sha256 are recorded and checked on resume) or "place" (a
    folder only looked in, such as a tfds data dir). `renamed_from`: the setting's old names, still
    read (flags, TOML keys, the config.json of older runs) with a deprecation warning for one release.
    """
    return dataclasses.field(default=default, metadata={
        "help": help, "choices": choices, "minimum": minimum, "maximum": maximum, "above": above, "below": below,
        "path": path, "renamed_from": renamed_from})


@dataclasses.dataclass
class TrainConfig:
    """Settings every task shares: the optimizer, the schedule, precision, budget and checkpoints."""

    batch_size: int = setting(64, "examples per training step (fewer when the data holds fewer)",
                              minimum=1, maximum=65536)
    epochs: int | None = setting(None, "passes over the training data; default: as many as --max-time allows, "
                                       "or 10 without --max-time", minimum=1, maximum=1_000_000)
    steps_per_epoch: int = setting(0, "training batches between validations (an epoch), cut from one stream of "
                                      "shuffled passes over the training data: an epoch may end mid-pass, the next "
                                      "goes on from there; 0 = one pass", minimum=0, maximum=10**9)
    lr: float = setting(2e-3, "peak learning rate of AdamW", minimum=0.0, maximum=10.0)
    warmup_steps: int = setting(100, "steps of linear warmup before the cosine decay (at most half the planned "
                                     "steps: a longer one shrinks to a tenth of them)", minimum=0, maximum=10**9)
    min_lr_ratio: float = setting(0.1, "the cosine decays to lr × this at the end of training",
                                  minimum=0.0, maximum=1.0)
    weight_decay: float = setting(0.01, "AdamW decoupled weight decay", minimum=0.0, maximum=1.0)
    clip_norm: float = setting(1.0, "clip gradients to this global norm; 0 = off", minimum=0.0, maximum=1e6)
    dropout: float = setting(0.1, "dropout rate", minimum=0.0, below=1.0)
    precision: str = setting("auto", "auto: bf16 where the CPU/GPU has fast bf16, else fp32",
                             ("auto", "fp32", "bf16", "fp16"))
    max_time: float = setting(0.0, "training budget in minutes (0 = none); the schedule fits itself to it",
                              minimum=0.0, maximum=525_600.0)
    patience: int = setting(0, "stop after this many validations without improvement; 0 = never",
                            minimum=0, maximum=1_000_000)
    seed: int = setting(0, "random seed for initialization and data order", minimum=0, maximum=2**32 - 1)
    strategy: str = setting("default", "tf.distribute strategy", ("default", "mirrored", "multiworker"))


def field_help(config_class: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(config_class)}


def _coerce(name: str, value: Any, annotation: Any, origin: str | None = None) -> Any:
    """Turn a TOML or CLI value into the field's type, with a clear error when it cannot."""
    kind = setting_type(annotation)
    if value is None:
        return None
    try:
        if kind is bool:
            if isinstance(value, str):
                if value.lower() in ("true", "yes", "1", "on"):
                    return True
                if value.lower() in ("false", "no", "0", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if kind is int:
            if isinstance(value, str):  # a flag: "64", or "1e8" as TOML would write it
                value = int(value) if value.strip().lstrip("+-").isdigit() else float(value)
            if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if kind is str:
            return str(value)
    except (TypeError, ValueError, OverflowError):
        kind_name = _KIND_NAMES.get(kind, kind.__name__)
        raise UserError(f"--{name.replace('_', '-')} must be {kind_name}, got {value!r}", origin,
                        f"give --{name.replace('_', '-')} {kind_name}")
    return value


_KIND_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def setting_type(annotation: Any) -> type:
    """int, float, bool or str: the type a field's values take (`int | None` -> int)."""
    if isinstance(annotation, str):
        annotation = {"int": int, "float": float, "str": str, "bool": bool}.get(annotation.split("|")[0].strip(), str)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation if isinstance(annotation, type) else str


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML config; tables ([model], [train], ...) are flattened, since every key is unique."""
    path = Path(path)
    if not path.is_file():
        raise UserError("config file not found", str(path), "check the path given to --config")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"config file is not valid TOML: {error}", str(path), "fix the syntax")
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    return flat


CONFIG_FOLDER = Path(__file__).resolve().parent / "configs"


def installed_configs() -> dict[str, Path]:
    """The recommended configs installed with seqtasks, by name: NAME.toml is `--config NAME`.
    demo-TASK is the recipe of TASK's no-data demo; TASK-... are tuned for a dataset."""
    return {path.stem: path for path in sorted(CONFIG_FOLDER.glob("*.toml"))}


def configs_of_task(task: str) -> list[str]:
    """The installed configs for TASK, its demo first: ["demo-lm", "lm-tinyshakespeare-lstm", ...]."""
    names = installed_configs()
    return [name for name in names if name == f"demo-{task}"] + [name for name in names if name.startswith(f"{task}-")]


def find_config(name_or_path: str | Path) -> Path:
    """The file --config names: a path (TOML, or a run's config.json), else an installed config's name
    (with or without .toml)."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    configs = installed_configs()
    name = path.name.removesuffix(".toml")
    if path.parent == Path(".") and name in configs:
        return configs[name]
    raise UserError("config file not found", str(name_or_path),
                    f"give a TOML file, a run's config.json, or an installed config: {', '.join(configs)}")


def read_config_file(name_or_path: str | Path, task: str | None = None) -> dict[str, Any]:
    """The settings of --config: a TOML file, an installed config's name (see find_config), or a run's
    config.json (read_run_settings; `task`, when given, must be the run's)."""
    path = find_config(name_or_path)
    if path.suffix == ".json":
        return read_run_settings(path, task)
    return read_toml(path)


def read_run_settings(path: str | Path, task: str | None = None) -> dict[str, Any]:
    """A run's saved settings (RUN/config.json, "settings"), to train the same run again: the data
    paths are the absolute ones the run recorded, so it reads the same files from any folder."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"config file is not valid JSON: {error}", str(path), "give a TOML file or a run's config.json")
    if not isinstance(record, dict) or not isinstance(record.get("settings"), dict):
        raise UserError("not a run's config.json (it has no settings)", str(path),
                        "give a TOML file or the config.json in a run folder")
    if task and record.get("task") != task:
        raise UserError(f"this config.json is of a run of the {record.get('task')} task, not {task}", str(path),
                        f"use it with `seqtasks train {record.get('task')}`")
    if record.get("parent"):
        warnings.warn(SeqtasksWarning(
            f"this run was fine-tuned from {record['parent'].get('path')}: its settings are used, not the "
            "parent's weights", str(path), "to repeat the fine-tuning: seqtasks finetune PARENT --config "
            f"{path} --out NEW"), stacklevel=2)
    return dict(record["settings"])


def demo_settings(task: str) -> dict[str, Any]:
    """The recipe of TASK's no-data demo (seqtasks/configs/demo-TASK.toml), without its data sources;
    {} for a task without one."""
    path = installed_configs().get(f"demo-{task}")
    return read_toml(path) if path else {}


COMMAND_LINE = "from the command line"


def renamed_settings(config_class: type) -> dict[str, str]:
    """{old name: current name} of the settings renamed in this release (their old names still work)."""
    return {old: f.name for f in dataclasses.fields(config_class) for old in f.metadata.get("renamed_from", ())}


def with_current_names(config_class: type, values: dict[str, Any], origins: dict[str, str] | None = None,
                       default_origin: str = COMMAND_LINE, warn: bool = True) -> dict[str, Any]:
    """`values` with each old setting name replaced by its current one, warning (a SeqtasksWarning, one
    line) where `warn`. An old and a new name given together with different values is a UserError."""
    renamed = renamed_settings(config_class)
    current: dict[str, Any] = {}
    for key, value in values.items():
        new = renamed.get(key.replace("-", "_"))
        if new is None:
            current[key] = value
            continue
        origin = (origins or {}).get(key, default_origin)
        old_name, new_name = (_flag(key), _flag(new)) if origin == COMMAND_LINE else (key, new)
        twin = next((k for k in values if k.replace("-", "_") == new), None)
        if twin is not None:
            if values[twin] != value:
                raise UserError(f"{old_name} and {new_name} both given", origin,
                                f"give only {new_name} ({old_name} is its old name)")
            continue
        if warn:
            warnings.warn(SeqtasksWarning(f"{old_name} is deprecated: it is now {new_name}", origin,
                                          f"use {new_name}; the old name goes in the next release"), stacklevel=3)
        current[new] = value
    return current


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def resolve_config(config_class: type, toml: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None,
                   where: str = "config", origins: dict[str, str] | None = None):
    """defaults < toml < overrides (None values in overrides mean 'not given'), checked: every value of
    the right type, choice and range. `origins` names where a value came from, for error messages
    (default: TOML keys from `where`, the TOML file; overrides from the command line)."""
    fields = field_help(config_class)
    values: dict[str, Any] = {}
    came_from: dict[str, str] = {}
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    for source, default_origin in ((toml or {}, f"from {where}"), (given, COMMAND_LINE)):
        source = with_current_names(config_class, source, origins, default_origin)
        for key, value in source.items():
            name = key.replace("-", "_")
            if name not in fields:
                raise UserError(f"unknown setting {key!r}", where,
                                f"known settings: {', '.join(sorted(fields))}")
            came_from[name] = (origins or {}).get(key, default_origin)
            values[name] = _coerce(name, value, fields[name].type, came_from[name])
    config = config_class(**values)
    check_choices(config)
    check_ranges(config, came_from)
    return config


def check_heads_divide_units(cfg) -> None:
    """A Transformer's d_model (--units) is split evenly among its attention heads (--heads)."""
    if cfg.arch == "transformer" and cfg.units % cfg.heads:
        raise UserError(f"--units {cfg.units} is not divisible by --heads {cfg.heads}",
                        fix="choose units a multiple of heads")


def check_choices(config) -> None:
    for f in dataclasses.fields(config):
        choices = f.metadata.get("choices")
        value = getattr(config, f.name)
        if choices and value not in choices:
            raise UserError(f"unknown {f.name.replace('_', '-')} {value!r}", fix=f"choose one of: {', '.join(choices)}")


def allowed_range(f: dataclasses.Field) -> str:
    """A field's range in words: 'an integer from 1 to 8192', 'a number >= 0 and < 1'."""
    meta = f.metadata
    kind = setting_type(f.type)
    low, high = meta.get("minimum"), meta.get("maximum")
    if kind is int and low is not None and high is not None:
        return f"an integer from {_number(low)} to {_number(high)}"
    bounds = [f"{sign} {_number(bound)}" if kind is int else f"{sign} {bound:g}"
              for sign, bound in ((">=", low), (">", meta.get("above")), ("<=", high), ("<", meta.get("below")))
              if bound is not None]
    return f"{_KIND_NAMES[kind]} {' and '.join(bounds)}"


def _number(n: float) -> str:
    return f"{n:,}" if abs(n) >= 100_000 else str(n)


def in_range(f: dataclasses.Field, value: Any) -> bool:
    meta = f.metadata
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return not ((meta.get("minimum") is not None and value < meta["minimum"])
                or (meta.get("maximum") is not None and value > meta["maximum"])
                or (meta.get("above") is not None and value <= meta["above"])
                or (meta.get("below") is not None and value >= meta["below"]))


def check_ranges(config, origins: dict[str, str] | None = None, names=None) -> None:
    """Every number (of `names`, default all) within its setting's range: one line naming the flag,
    the value, the range and where the value came from (a TOML file, the command line)."""
    for f in dataclasses.fields(config):
        if names is not None and f.name not in names:
            continue
        value = getattr(config, f.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or in_range(f, value):
            continue
        raise UserError(f"--{f.name.replace('_', '-')} {value!r} is out of range", (origins or {}).get(f.name),
                        f"give {allowed_range(f)}")


def config_from_dict(config_class: type, data: dict[str, Any]):
    """Rebuild a saved config, ignoring keys a newer or older version does not know (an older run's
    renamed settings are read under their current names)."""
    names = {f.name for f in dataclasses.fields(config_class)}
    data = with_current_names(config_class, data, warn=False)
    return config_class(**{k: v for k, v in data.items() if k in names})
