"""Progress on stderr for long evaluate and predict calls: drawn only on a terminal, never on stdout.

A bar is one line redrawn in place (`\\r`); `clear()` wipes it before anything else is written to the
same terminal, so results on stdout never carry a piece of it. Off the terminal (a pipe, a file, a
test) nothing at all is written.
"""
from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from typing import Iterator, Protocol, TextIO

WIDTH = 24  # characters of the bar itself


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


def format_duration(seconds: float) -> str:
    """45s, 2m05s, 1h02m."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress(Protocol):
    """What long work reports as it goes (an evaluation: its examples, batches or sentences): it
    expects `count` more items, and then has done `count` of them. ProgressBar is one."""

    def expect(self, count: int) -> None: ...

    def advance(self, count: int = 1) -> None: ...


class ProgressBar:
    """`label [#######.................] 30/100, 12s, about 28s left` on stderr, for `total` items
    (None: unknown, the count and time only). enabled=None: only when stderr is a terminal."""

    def __init__(self, label: str, total: int | None = None, enabled: bool | None = None,
                 stream: TextIO | None = None, min_interval: float = 0.1):
        self.label, self.total, self.done = label, total, 0
        self.stream = stream
        self.enabled = stderr_is_terminal() if enabled is None else enabled
        self.start = self.last_draw = time.monotonic()
        self.min_interval = min_interval
        self.shown = False
        self.lock = threading.Lock()  # the ticker thread and the caller draw the same line

    def text(self, now: float | None = None) -> str:
        elapsed = (now or time.monotonic()) - self.start
        if not self.total:
            done = f"{self.done} done, " if self.done else ""
            return f"{self.label}: {done}{format_duration(elapsed)}"
        share = min(self.done / self.total, 1.0)
        filled = round(share * WIDTH)
        text = f"{self.label} [{'#' * filled}{'.' * (WIDTH - filled)}] {self.done}/{self.total}, {format_duration(elapsed)}"
        if 0 < self.done < self.total:
            text += f", about {format_duration(elapsed / self.done * (self.total - self.done))} left"
        return text

    def draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self.last_draw < self.min_interval):
            return
        with self.lock:
            self.last_draw, self.shown = now, True
            self._write(f"\r{self.text(now)}\x1b[K")

    def expect(self, count: int) -> None:
        """`count` more items to do: a total that was unknown becomes known (an evaluation that scores,
        then decodes, adds both)."""
        self.total = (self.total or 0) + count
        self.draw()

    def advance(self, count: int = 1) -> None:
        self.done += count
        self.draw(force=self.total is not None and self.done >= self.total)

    def clear(self) -> None:
        """Wipe the line (before other output reaches the terminal); the next draw puts it back."""
        if self.enabled and self.shown:
            with self.lock:
                self._write("\r\x1b[K")
                self.shown = False
                self.last_draw = 0.0  # redraw at the next advance

    def _write(self, text: str) -> None:
        stream = self.stream or sys.stderr
        stream.write(text)
        stream.flush()


@contextmanager
def progress_bar(label: str, total: int | None = None, enabled: bool | None = None,
                 stream: TextIO | None = None, tick: float | None = None) -> Iterator[ProgressBar]:
    """A ProgressBar for the `with` block, wiped at its end. `tick`: also redraw every `tick` seconds
    from a thread, so that one long call (an evaluation) shows its time passing."""
    bar = ProgressBar(label, total, enabled, stream)
    stop = threading.Event()
    ticker = None
    if bar.enabled and tick:
        def redraw():
            while not stop.wait(tick):
                bar.draw(force=True)

        ticker = threading.Thread(target=redraw, name="progress", daemon=True)
        ticker.start()
    bar.draw(force=True)
    try:
        yield bar
    finally:
        stop.set()
        if ticker is not None:
            ticker.join()
        bar.clear()
