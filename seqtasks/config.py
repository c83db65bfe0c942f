"""Configs: one dataclass per task, every hyperparameter with its default and a help line.

A setting is resolved in this order, later wins: the dataclass default, the TOML file (`--config`),
the command-line flags. The CLI builds its options from the same dataclass fields, so a setting has
one name everywhere: `seq_len` in TOML is `--seq-len` on the command line.
"""
from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from seqtasks.errors import UserError


def setting(default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:
    """A dataclass field carrying its help text (and allowed values) for --help and error messages."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices})


@dataclasses.dataclass
class TrainConfig:
    """Settings every task shares: the optimizer, the schedule, precision, budget and checkpoints."""

    batch_size: int = setting(64, "examples per training step")
    epochs: int = setting(10, "passes over the training data (an upper bound when --max-time is set)")
    steps_per_epoch: int = setting(0, "steps between validations; 0 = one pass over the training data")
    lr: float = setting(2e-3, "peak learning rate of AdamW")
    warmup_steps: int = setting(100, "steps of linear warmup before the cosine decay")
    min_lr_ratio: float = setting(0.1, "the cosine decays to lr × this at the end of training")
    weight_decay: float = setting(0.01, "AdamW decoupled weight decay")
    clip_norm: float = setting(1.0, "clip gradients to this global norm; 0 = off")
    dropout: float = setting(0.1, "dropout rate")
    precision: str = setting("auto", "auto: bf16 where the CPU/GPU has fast bf16, else fp32",
                             ("auto", "fp32", "bf16", "fp16"))
    max_time: float = setting(0.0, "training budget in minutes (0 = none); the schedule fits itself to it")
    patience: int = setting(0, "stop after this many validations without improvement; 0 = never")
    seed: int = setting(0, "random seed for initialization and data order")
    strategy: str = setting("default", "tf.distribute strategy", ("default", "mirrored", "multiworker"))


def field_help(config_class: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(config_class)}


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    """Turn a TOML or CLI value into the field's type, with a clear error when it cannot."""
    kind = _base_type(annotation)
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
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if kind is float:
            return float(value)
        if kind is str:
            return str(value)
    except (TypeError, ValueError):
        raise UserError(f"setting {name} must be {kind.__name__}, got {value!r}", fix=f"give {name} a {kind.__name__}")
    return value


def _base_type(annotation: Any) -> type:
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


def resolve_config(config_class: type, toml: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None,
                   where: str = "config"):
    """defaults < toml < overrides (None values in overrides mean 'not given')."""
    fields = field_help(config_class)
    values: dict[str, Any] = {}
    for source in (toml or {}, {k: v for k, v in (overrides or {}).items() if v is not None}):
        for key, value in source.items():
            name = key.replace("-", "_")
            if name not in fields:
                raise UserError(f"unknown setting {key!r}", where,
                                f"known settings: {', '.join(sorted(fields))}")
            values[name] = _coerce(name, value, fields[name].type)
    config = config_class(**values)
    check_choices(config)
    return config


def check_choices(config) -> None:
    for f in dataclasses.fields(config):
        choices = f.metadata.get("choices")
        value = getattr(config, f.name)
        if choices and value not in choices:
            raise UserError(f"unknown {f.name.replace('_', '-')} {value!r}", fix=f"choose one of: {', '.join(choices)}")


def config_from_dict(config_class: type, data: dict[str, Any]):
    """Rebuild a saved config, ignoring keys a newer or older version does not know."""
    names = {f.name for f in dataclasses.fields(config_class)}
    return config_class(**{k: v for k, v in data.items() if k in names})
