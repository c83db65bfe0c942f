"""Where a run's data lives and whether it is still what the run trained on.

A run records its path settings (`setting(..., path="data" | "place")`) as absolute paths, so
`resume` reads the same files from any folder, and for each data setting the size and sha256 of what
it names. `resume` recomputes them before reading anything: a changed file is refused in one line,
unless the user accepts it (`--allow-changed-data`).

What is hashed: a file's content; a glob's files, each by name and content; a folder by the
names and sizes of the files in it (an image folder can hold gigabytes: its listing is what is
checked, the caption table beside it is hashed whole). tfds:NAME sources are left out.
"""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import os
from pathlib import Path
from typing import Any

from seqtasks.errors import UserError

_CHUNK = 1 << 20


def _path_fields(config, kinds: tuple[str, ...]) -> list[tuple[str, str]]:
    """(name, value) of the config's non-empty path settings of these kinds, tfds sources left out."""
    return [(f.name, getattr(config, f.name)) for f in dataclasses.fields(config)
            if f.metadata.get("path") in kinds and isinstance(getattr(config, f.name), str)
            and getattr(config, f.name) and not getattr(config, f.name).startswith("tfds:")]


def absolute_paths(config) -> tuple[Any, dict[str, str]]:
    """(config with absolute path settings, {setting: the value as typed} for those that changed)."""
    changed = {name: value for name, value in _path_fields(config, ("data", "place"))
               if os.path.abspath(os.path.expanduser(value)) != value}
    absolute = {name: os.path.abspath(os.path.expanduser(value)) for name, value in changed.items()}
    return dataclasses.replace(config, **absolute), changed


def _files(spec: str) -> tuple[str, list[Path]]:
    """('file' | 'folder' | 'glob', the files it names, sorted)."""
    path = Path(spec)
    if path.is_file():
        return "file", [path]
    if path.is_dir():
        return "folder", sorted(p for p in path.rglob("*") if p.is_file())
    return "glob", sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())


def _fingerprint(spec: str) -> dict[str, Any]:
    kind, files = _files(spec)
    digest = hashlib.sha256()
    for file in files:
        if kind != "file":
            digest.update(f"{file.relative_to(spec) if kind == 'folder' else file}\0".encode())
        if kind == "folder":
            digest.update(f"{file.stat().st_size}\0".encode())
            continue
        with open(file, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    return {"path": spec, "kind": kind, "files": len(files), "bytes": sum(f.stat().st_size for f in files),
            "sha256": digest.hexdigest()}


def data_fingerprints(config) -> dict[str, dict[str, Any]]:
    """{setting: {path, kind, files, bytes, sha256}} for each data setting of the config."""
    return {name: _fingerprint(value) for name, value in _path_fields(config, ("data",))}


def _change(name: str, old: dict[str, Any], new: dict[str, Any] | None) -> str | None:
    """What changed about one data setting, in words, or None."""
    flag = f"--{name.replace('_', '-')} {old['path']}"
    if new is None:
        return f"{flag} is no longer given"
    if not new["files"]:
        return f"{flag} no longer exists"
    if new["path"] != old["path"]:
        return f"{flag} is now {new['path']}"
    if new["bytes"] != old["bytes"]:
        return f"{flag} now holds {new['bytes']:,} bytes (was {old['bytes']:,})"
    if new["files"] != old["files"]:
        return f"{flag} now holds {new['files']} files (was {old['files']})"
    if new["sha256"] != old["sha256"]:
        return (f"{flag} has the same size but other content "
                f"(sha256 {new['sha256'][:12]}…, was {old['sha256'][:12]}…)")
    return None


def check_unchanged(recorded: dict[str, dict[str, Any]], config, run_path: str | Path, allow: bool
                    ) -> dict[str, dict[str, Any]]:
    """Refuse (one line) to continue a run on data other than what it trained on, unless `allow`.
    Returns the current fingerprints (to record when a change is accepted)."""
    current = data_fingerprints(config)
    changes = [c for name, old in recorded.items() if (c := _change(name, old, current.get(name)))]
    if changes and not allow:
        more = f" (and {len(changes) - 1} more change(s))" if len(changes) > 1 else ""
        raise UserError(f"the training data changed since the run began: {changes[0]}{more}", str(run_path),
                        "restore it, or pass --allow-changed-data to continue on the data as it is now")
    if changes:
        print(f"note: continuing on changed data (--allow-changed-data): {'; '.join(changes)}", flush=True)
    return current
