"""The on-disk cache of encoded text and decoded images: one folder, entries named by content keys.

An entry is one or more data files ``KEY.*`` and its metadata ``KEY.json``, written last and
atomically; an entry whose metadata is missing, unreadable or disagrees with its data file is not
an entry, and is rebuilt. Data is written to ``NAME.tmpPID`` and renamed into place. At every use
the folder is tidied: temporary files of writers no longer running (or idle for an hour) are
removed, and the least recently used entries are evicted until the folder holds at most
``$SEQTASKS_CACHE_MB`` megabytes (default 4096; the entry in use is always kept). A hit marks its
entry as used (its files' mtime).
"""
from __future__ import annotations

import errno
import json
import os
import re
import time
from pathlib import Path
from typing import Any, Callable

from seqtasks.errors import UserError
from seqtasks.runs import atomic_write_json, process_alive

DEFAULT_LIMIT_MB = 4096
IDLE_TEMPORARY_SECONDS = 3600
_TEMPORARY = re.compile(r"\.tmp(\d+)")  # NAME.tmpPID, NAME.tmpPID.npz
_FULL_DISK = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def default_cache_dir() -> Path:
    root = os.environ.get("SEQTASKS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "seqtasks")
    return Path(root) / "encoded"


def limit_bytes() -> int:
    """The size the cache folder is kept within ($SEQTASKS_CACHE_MB, default 4096 MB)."""
    value = os.environ.get("SEQTASKS_CACHE_MB", "")
    try:
        megabytes = float(value) if value else DEFAULT_LIMIT_MB
    except ValueError:
        raise UserError(f"SEQTASKS_CACHE_MB={value!r} is not a number", None,
                        "set it to the cache size in megabytes, e.g. SEQTASKS_CACHE_MB=4096") from None
    return int(megabytes * 1e6)


def temporary_path(path: Path) -> Path:
    """Where a writer builds `path` before renaming it: the PID tells tidy() whether it still runs."""
    return path.with_name(f"{path.name}.tmp{os.getpid()}")


def cached_entry(cache_dir: str | Path | None, key: str, suffix: str, build: Callable[[Path], dict[str, Any]],
                 whole: Callable[[dict[str, Any], Path], bool]) -> tuple[Path, dict[str, Any]]:
    """The data file CACHE/KEY.SUFFIX and its metadata CACHE/KEY.json, the one way every cache entry is
    made and found (encoded ids, decoded images, backbone features).

    A hit is an entry whose metadata reads and for which whole(meta, data path) holds (its data agrees
    with it): it is marked used. A miss calls build(temporary path), which writes the data there and
    returns its metadata; the data is renamed into place, then the metadata written, so a half-written
    entry is never found. A failed write is one line (write_error); the folder is tidied either way.
    """
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    data_path, meta_path = cache_dir / f"{key}{suffix}", cache_dir / f"{key}.json"
    meta = read_meta(meta_path, lambda meta: whole(meta, data_path))
    if meta is not None:
        mark_used(data_path, meta_path)
        tidy(cache_dir, keep=key)
        return data_path, meta
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise write_error(cache_dir, error) from None
    tidy(cache_dir, keep=key)
    temporary = temporary_path(data_path)
    try:
        meta = build(temporary)
        os.replace(temporary, data_path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise write_error(cache_dir, error) from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    write_meta(meta_path, meta)
    tidy(cache_dir, keep=key)  # now counting the new entry
    return data_path, meta


def read_meta(meta_path: Path, check: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    """An entry's metadata if it is whole and `check(meta)` holds (its data agrees), else None."""
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if isinstance(meta, dict) and check(meta):
            return meta
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def write_meta(meta_path: Path, meta: dict[str, Any]) -> None:
    try:
        atomic_write_json(meta_path, meta)
    except OSError as error:
        raise write_error(meta_path.parent, error) from None


def mark_used(*paths: Path) -> None:
    now = time.time()
    for path in paths:
        try:
            os.utime(path, (now, now))
        except OSError:  # a read-only cache still serves hits
            pass


def write_error(folder: Path, error: OSError) -> UserError:
    """A failed cache write as one line: a full disk says so and where the cache can go instead."""
    if error.errno in _FULL_DISK:
        what = "no space left on the disk of the cache folder"
    else:
        what = f"cannot write to the cache folder ({error.strerror or error})"
    return UserError(what, str(folder), "free some space, or point SEQTASKS_CACHE at another disk")


def preallocate(handle, size: int, folder: Path) -> None:
    """Reserve `size` bytes for an open file, so that a full disk is an error now, not a SIGBUS
    when a memory map of a sparse file is written later."""
    handle.truncate(0)
    try:
        os.posix_fallocate(handle.fileno(), 0, size)
        return
    except OSError as error:
        if error.errno in _FULL_DISK:
            raise write_error(folder, error) from None
        if error.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise write_error(folder, error) from None
    except AttributeError:  # no posix_fallocate on this platform
        pass
    try:  # the file system cannot reserve: write the zeros
        block = bytes(1 << 20)
        for start in range(0, size, len(block)):
            handle.write(block[:min(len(block), size - start)])
        handle.flush()
        os.fsync(handle.fileno())
    except OSError as error:
        raise write_error(folder, error) from None


def _entry_key(name: str) -> str:
    return name.split(".", 1)[0]


def tidy(folder: Path, keep: str) -> None:
    """Remove orphan temporary files and evict least recently used entries past the size limit;
    the entry `keep` (a key) stays whatever its size. Errors (a read-only folder) are ignored."""
    try:
        files = [entry for entry in os.scandir(folder) if entry.is_file(follow_symlinks=False)]
    except OSError:
        return
    now = time.time()
    entries: dict[str, list] = {}
    for file in files:
        try:
            stat = file.stat(follow_symlinks=False)
        except OSError:
            continue
        writer = _TEMPORARY.search(file.name)
        hidden = file.name.startswith(".")  # atomic_write_json's own temporary files
        if writer or hidden:
            idle = now - stat.st_mtime > IDLE_TEMPORARY_SECONDS
            if idle or (writer and not process_alive(int(writer.group(1)))):
                _remove(Path(file.path))
            continue
        entries.setdefault(_entry_key(file.name), []).append((Path(file.path), stat.st_size, stat.st_mtime))
    total = sum(size for parts in entries.values() for _, size, _ in parts)
    limit = limit_bytes()
    # oldest use first: an entry's last use is its newest file's mtime
    for key in sorted(entries, key=lambda k: max(mtime for _, _, mtime in entries[k])):
        if total <= limit:
            break
        if key == keep:
            continue
        for path, size, _ in entries[key]:
            if _remove(path):
                total -= size


def _remove(path: Path) -> bool:
    try:
        path.unlink()
        return True
    except OSError:
        return False
