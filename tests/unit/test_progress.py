"""Progress reporting: what a snapshot says, how often a tracker reports, and what each
handler writes (in place on a terminal; only long operations in logs)."""

from __future__ import annotations

import io
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from padocc_like import progress
from padocc_like.progress import LogProgress, Snapshot, TerminalProgress, track


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(progress.time, "monotonic", c)
    return c


@pytest.fixture
def attach():
    """Attach a handler to the progress logger for the test."""
    added: list[logging.Handler] = []
    logger = logging.getLogger(progress.LOGGER)
    level = logger.level

    def _attach(handler: logging.Handler) -> logging.Handler:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        added.append(handler)
        return handler

    yield _attach
    for h in added:
        logger.removeHandler(h)
    logger.setLevel(level)


def test_snapshot_says_count_share_rate_and_time_left():
    snap = Snapshot("scan p1", 300, 1200, "files", elapsed_s=3.0)
    assert snap.describe() == "scan p1: 300/1200 files (25%), 100 files/s, ETA 9s"
    done = Snapshot("scan p1", 1200, 1200, "files", elapsed_s=125.0, final=True)
    assert done.describe() == "scan p1: 1200/1200 files (100%), 9.6 files/s, done in 2m05s"
    assert Snapshot("x", 0, 10, "files", 0.0).describe() == "x: 0/10 files (0%)"
    assert Snapshot("x", 1, 4, "projects", 7300.0).describe().endswith("ETA 6h05m")


@given(
    done=st.integers(0, 10**7), total=st.integers(0, 10**7), elapsed=st.floats(0, 1e6), final=st.booleans()
)
def test_snapshot_never_fails_and_eta_is_sane(done, total, elapsed, final):
    snap = Snapshot("op", done, total, "files", elapsed, final)
    text = snap.describe()
    assert text.startswith(f"op: {done}/{total} files")
    eta = snap.eta_s
    assert eta is None or eta >= 0
    if final:
        assert "ETA" not in text


def test_tracker_reports_at_most_every_fifth_of_a_second_and_always_at_the_end(clock, attach):
    records: list[Snapshot] = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record.progress)

    attach(Collect())
    with track("scan p", 100) as t:
        for _ in range(100):
            t.update()
            clock.now += 0.01  # 1 s in all
    assert records[-1].final and records[-1].done == 100
    steps = [r.done for r in records[:-1]]
    assert steps[0] == 1 and len(steps) == 5, steps  # at 0, 0.2, 0.4, 0.6, 0.8 s


def test_tracker_below_info_is_silent_and_cheap(monkeypatch):
    """Nothing asked for progress (no CLI): a tracker only counts."""
    logger = logging.getLogger(progress.LOGGER)
    monkeypatch.setattr(logger, "level", logging.WARNING)
    t = progress.Tracker("x", 10, "files")
    assert t._enabled is False
    t.update(10)
    t.close()
    assert t.done == 10


def test_terminal_rewrites_one_line_and_keeps_only_long_operations(clock, attach):
    out = io.StringIO()
    attach(TerminalProgress(out))
    with track("quick", 2) as t:
        t.update(2)
    assert out.getvalue().startswith("\r\x1b[2Kquick: 2/2 files") and "\n" not in out.getvalue()
    assert out.getvalue().endswith("\r\x1b[2K")  # the finished quick one is wiped
    out.truncate(0), out.seek(0)
    with track("slow", 2) as t:
        t.update()
        clock.now += 2
        t.update()
    assert out.getvalue().endswith("\r\x1b[2Kslow: 2/2 files (100%), 1.0 files/s, done in 2s\n")


def test_log_lines_only_for_operations_that_run_long(clock, attach):
    out = io.StringIO()
    attach(LogProgress(out, interval=30))
    with track("short", 10) as t:
        for _ in range(10):
            t.update()
            clock.now += 1  # 10 s: under the interval
    assert out.getvalue() == ""
    with track("long", 100) as t:
        for _ in range(100):
            t.update()
            clock.now += 1  # 100 s: lines at 30, 60, 90 s and the last
    lines = out.getvalue().splitlines()
    assert len(lines) == 4, lines
    assert " progress long: 31/100 files (31%)" in lines[0] and "ETA" in lines[0]
    assert lines[-1].endswith("long: 100/100 files (100%), 1.0 files/s, done in 1m40s")
