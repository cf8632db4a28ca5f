"""Progress of long operations, reported through logging.

Library code counts (:func:`track`); only the CLI decides how progress is shown, by
attaching a handler to the ``padocc_like.progress`` logger (which does not propagate, so
progress never fills the per-phase log files):

* :class:`TerminalProgress`: one line, rewritten in place on a terminal, with the rate and
  the time left; an operation that took at least a second leaves its last line;
* :class:`LogProgress`: for files, pipes and batch jobs, a plain line every ``interval``
  seconds of an operation that runs that long, and its last line; nothing for shorter ones.

A record carries ``record.progress``, a :class:`Snapshot`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TextIO

LOGGER = "padocc_like.progress"
log = logging.getLogger(LOGGER)
log.propagate = False

EMIT_EVERY_S = 0.2
"""Least time between two records of one operation (the last one is always sent)."""


@dataclass(frozen=True)
class Snapshot:
    """Where an operation stands."""

    what: str
    """``scan p1``, ``validate p1``, ``compute``..."""
    done: int
    total: int
    unit: str
    elapsed_s: float
    final: bool = False

    @property
    def rate(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        if self.final or self.done == 0 or self.total <= self.done:
            return None
        return (self.total - self.done) / self.rate if self.rate else None

    def describe(self) -> str:
        pct = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        text = f"{self.what}: {self.done}/{self.total} {self.unit}{pct}"
        if self.elapsed_s >= 0.5 and self.done:
            text += f", {_rate(self.rate)} {self.unit}/s"
        if self.final:
            text += f", done in {_duration(self.elapsed_s)}"
        elif (eta := self.eta_s) is not None:
            text += f", ETA {_duration(eta)}"
        return text


def _rate(rate: float) -> str:
    return f"{rate:.0f}" if rate >= 10 else f"{rate:.1f}" if rate >= 0.1 else f"{rate:.2f}"


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Tracker:
    """Counts one operation's units; sends a record at most every :data:`EMIT_EVERY_S`."""

    def __init__(self, what: str, total: int, unit: str) -> None:
        self.what, self.total, self.unit = what, total, unit
        self.done = 0
        self._t0 = time.monotonic()
        self._last = 0.0
        self._lock = threading.Lock()
        self._enabled = log.isEnabledFor(logging.INFO) and bool(log.handlers)

    def update(self, n: int = 1) -> None:
        """Count ``n`` more units done (from any thread)."""
        with self._lock:
            self.done += n
            if not self._enabled or (now := time.monotonic()) - self._last < EMIT_EVERY_S:
                return
            self._last = now
        self._emit(final=False)

    def close(self) -> None:
        if self._enabled:
            self._emit(final=True)

    def _emit(self, final: bool) -> None:
        snap = Snapshot(self.what, self.done, self.total, self.unit, time.monotonic() - self._t0, final)
        log.info(snap.describe(), extra={"progress": snap})


@contextmanager
def track(what: str, total: int, unit: str = "files") -> Iterator[Tracker]:
    """A :class:`Tracker` for the ``with`` block; the final record is sent when it ends."""
    tracker = Tracker(what, total, unit)
    try:
        yield tracker
    finally:
        tracker.close()


class TerminalProgress(logging.Handler):
    """Shows operations on one line of a terminal, rewritten in place."""

    KEEP_AFTER_S = 1.0
    """An operation that took this long leaves its last line on the screen."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(logging.INFO)
        self.stream = stream
        self._open = False

    def emit(self, record: logging.LogRecord) -> None:
        snap: Snapshot | None = getattr(record, "progress", None)
        if snap is None:
            return
        if snap.final and snap.elapsed_s < self.KEEP_AFTER_S:
            self.clear()
            return
        try:
            self.stream.write("\r\x1b[2K" + snap.describe() + ("\n" if snap.final else ""))
            self.stream.flush()
        except (OSError, ValueError):  # the terminal went away: progress is not worth an error
            self.handleError(record)
        self._open = not snap.final

    def clear(self) -> None:
        """Wipe an unfinished progress line (before other output)."""
        if self._open:
            self._open = False
            try:
                self.stream.write("\r\x1b[2K")
                self.stream.flush()
            except (OSError, ValueError):
                pass


class LogProgress(logging.Handler):
    """Writes a plain line every ``interval`` seconds of an operation that runs that long,
    and then its last line; says nothing of shorter ones."""

    def __init__(self, stream: TextIO, interval: float = 30.0) -> None:
        super().__init__(logging.INFO)
        self.stream = stream
        self.interval = interval
        self._last: dict[str, float] = {}  # operation -> when its last line was written

    def emit(self, record: logging.LogRecord) -> None:
        snap: Snapshot | None = getattr(record, "progress", None)
        if snap is None:
            return
        if snap.final:
            if self._last.pop(snap.what, None) is None and snap.elapsed_s < self.interval:
                return
        else:
            last = self._last.get(snap.what, 0.0)
            if snap.elapsed_s - last < self.interval:
                return
            self._last[snap.what] = snap.elapsed_s
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime())
        try:
            self.stream.write(f"{stamp} progress {snap.describe()}\n")
            self.stream.flush()
        except (OSError, ValueError):
            self.handleError(record)
