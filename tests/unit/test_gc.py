"""Pausing the cyclic collector (:mod:`padocc_like._gc`): paused inside, the survivors frozen
on request, and everything frozen handed back when a phase ends."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from padocc_like._gc import gc_paused, thaw


@pytest.fixture(autouse=True)
def _collector_restored():
    thaw()
    gc.collect()  # no garbage of earlier tests in the counts below
    enabled = gc.isenabled()
    yield
    thaw()
    gc.enable() if enabled else gc.disable()


def test_paused_inside_enabled_after() -> None:
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0  # nothing set aside without freeze


def test_a_disabled_collector_stays_disabled() -> None:
    gc.disable()
    with gc_paused(freeze=True):
        pass
    assert not gc.isenabled()


def test_survivors_frozen_until_thaw() -> None:
    with gc_paused(freeze=True):
        kept = [[i] for i in range(10_000)]
    assert gc.get_freeze_count() >= len(kept)
    thaw()
    assert gc.get_freeze_count() == 0
    thaw()  # nothing left: a no-op


def test_cycles_made_while_frozen_are_collected_after_thaw() -> None:
    class Node:
        pass

    with gc_paused(freeze=True):
        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle: only the collector frees it
    del a, b
    assert gc.collect() == 0  # frozen: out of the collector's reach
    thaw()
    assert gc.collect() >= 2


def test_a_phase_leaves_nothing_frozen(tmp_path: Path, archive, write_group) -> None:
    """The scan stage freezes its scans; the phase runner hands them back when it ends."""
    from padocc_like import api

    archive(n_files=3)
    group = write_group(
        f"""
        group: g
        work_dir: {tmp_path / "work"}
        pipeline: kerchunk
        projects:
          - id: p
            sources: {{glob: "{tmp_path}/archive/*.nc"}}
            concat_dims: [time]
        """
    )
    outcomes = api.run(api.open_group(group), ["init", "scan"])
    assert [o.status for o in outcomes] == ["done", "done"]
    assert gc.get_freeze_count() == 0
