"""One writer per run folder: an exclusive lock on RUN/lock, held while train, resume or finetune writes the run.

The lock is the operating system's (fcntl.flock on the open lock file), not the file's existence, so it
can never be left stuck: it ends with the process that holds it however that process ends (kill -9, a
crash, a lost machine on a local disk), and the next writer takes it over without a word. The file
itself stays (removing it would let a third writer lock a new file while a second still waits on the
old one); it says who holds it, `{"pid": ..., "started": ..., "command": ...}`, for the error a second
writer ends with:

    seqtasks: error: RUN is in use by process PID (started 2026-12-04 03:50:12 UTC); ...

Its name has no leading dot: RunDirectory.recover removes hidden temporary files. On a system without
fcntl (Windows) runs are not locked.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from seqtasks.errors import UserError

LOCK_FILE = "lock"
_READ_TRIES = 20  # a holder writes its name just after locking: a reader that comes between waits for it

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


class RunInUse(UserError):
    """Another process holds the run's lock."""


class RunLock:
    """The held lock of one run folder; release() (or the process's end) lets the next writer in."""

    def __init__(self, folder: str | Path, shown: str | Path | None = None):
        self.path = Path(folder) / LOCK_FILE
        self.descriptor: int | None = None
        if fcntl is None:
            return
        try:
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:  # a read-only folder, a folder in the lock's place
            raise UserError(f"the run folder cannot be written ({error.strerror or error})", str(self.path),
                            "make it writable, or fine-tune it into a new run with `seqtasks finetune RUN "
                            "--out NEW_RUN`") from error
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise in_use(self.path, shown or folder) from None
        except BaseException:
            os.close(descriptor)
            raise
        self.descriptor = descriptor
        holder = {"pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                  "command": " ".join(["seqtasks", *sys.argv[1:]]) if sys.argv else "seqtasks"}
        try:
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, (json.dumps(holder) + "\n").encode("utf-8"), 0)
        except OSError:  # a full disk: the lock holds all the same, a second writer is told "process ?"
            pass

    def release(self) -> None:
        if self.descriptor is not None:
            os.close(self.descriptor)  # closing the last descriptor of the open file drops the flock
            self.descriptor = None


def in_use(lock_path: Path, shown: str | Path) -> RunInUse:
    """The error of a writer that found the lock held: who holds it, as its file says."""
    holder: dict = {}
    for _ in range(_READ_TRIES):
        try:
            holder = json.loads(lock_path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            holder = {}
        if holder.get("pid"):
            break
        time.sleep(0.05)
    pid, started = holder.get("pid", "?"), holder.get("started", "at an unknown time")
    return RunInUse(f"{shown} is in use by process {pid} (started {started}); wait until it ends, or stop it "
                    f"(kill {pid}) and then `seqtasks resume {shown}`; a lock whose process has ended is "
                    "taken over by the next writer")


def check_not_in_use(folder: str | Path, shown: str | Path | None = None) -> None:
    """Raise RunInUse when another process holds the folder's lock; otherwise change nothing (a
    shared lock, taken and dropped, is the probe: it needs only read access and writes nothing)."""
    path = Path(folder) / LOCK_FILE
    if fcntl is None or not path.is_file():
        return
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise in_use(path, shown or folder) from None
    finally:
        os.close(descriptor)
