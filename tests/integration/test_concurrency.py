"""Concurrent runs: different projects never collide; the same project is locked."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from padocc_like import api
from padocc_like.state.store import project_lock, project_paths


def _group(tmp_path, n: int) -> str:
    projects = "\n".join(f"  - {{id: p{i}, sources: {{glob: archive/*.nc}}}}" for i in range(n))
    return f"group: c\nwork_dir: {tmp_path / 'work'}\nprofile: serial\nprojects:\n{projects}\n"


def test_separate_processes_on_different_projects(tmp_path, archive, write_group):
    archive(n_files=3)
    path = write_group(_group(tmp_path, 6))
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "padocc_like",
                "run",
                str(path),
                "-p",
                f"p{i}",
                "-q",
                "--phases",
                "init,scan,compute,validate",
            ]
        )
        for i in range(6)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0] * 6
    g = api.open_group(path)
    rows = api.status(g)
    assert {r["state"] for r in rows} == {"ready"}  # validated, not yet catalogued
    for i in range(6):
        state = json.loads((g.work_dir / f"projects/p{i}/state.json").read_text())
        assert state["project"] == f"p{i}" and state["phases"]["validate"]["status"] == "done"


def test_same_project_is_locked(tmp_path, archive, write_group):
    archive(n_files=1)
    g = api.open_group(write_group(_group(tmp_path, 1)))
    with project_lock(project_paths(g.work_dir, "p0")):
        out = api.run(g, ["init"])[0]
    assert out.status == "failed" and out.error_kind == "state-locked"
    assert api.run(g, ["init"])[0].status == "done"


def test_file_level_workers_within_one_project(tmp_path, archive, write_group, monkeypatch):
    """The per-file process pool gives the same product as a serial scan."""
    from pathlib import Path

    from padocc_like.runners.pool import LocalEngine
    from padocc_like.stages import files

    archive(n_files=6)
    serial = api.open_group(write_group(_group(tmp_path, 1).replace("/work", "/serial"), "serial.yaml"))
    assert all(o.status == "done" for o in api.run(serial, ["init", "scan", "compute"], workers=1))
    monkeypatch.setattr(LocalEngine, "min_files", 2)  # force the pool for 6 files
    monkeypatch.setattr(files, "BATCH_FILES", 1)
    used = []
    real_executor = LocalEngine.executor
    monkeypatch.setattr(LocalEngine, "executor", lambda self, n: used.append(n) or real_executor(self, n))
    g = api.open_group(write_group(_group(tmp_path, 1)))
    outs = api.run(g, ["init", "scan", "compute", "validate"], workers=2)
    assert all(o.status == "done" for o in outs), outs
    assert used == [1]  # one worker process beside this one
    product = Path(api.status(g)[0]["product"]["path"]).read_bytes()
    assert product == Path(api.status(serial)[0]["product"]["path"]).read_bytes()


def _pid_after_nap(seconds: float) -> int:
    import os
    import time

    time.sleep(seconds)
    return os.getpid()


def test_shared_map_splits_work_between_this_process_and_the_workers():
    """The calling process works from the back while the workers start; every batch runs once."""
    import os

    from padocc_like.runners.pool import LocalEngine
    from padocc_like.stages import files

    batches = [0.05] * 40  # 2 s of naps: the worker (~0.3 s to start) must take part
    got = dict(files._shared_map(_pid_after_nap, batches, LocalEngine(), slots=1))
    assert sorted(got) == list(range(40))
    pids = set(got.values())
    assert os.getpid() in pids and len(pids) == 2, pids
    # the caller took batches from the back, the worker from the front
    assert got[39] == os.getpid() and got[0] != os.getpid()


def test_shared_map_raises_the_first_error():
    from padocc_like.runners.pool import LocalEngine
    from padocc_like.stages import files

    batches = [0.01] * 5 + ["not seconds"] + [0.01] * 5
    with pytest.raises(TypeError):
        list(files._shared_map(_pid_after_nap, batches, LocalEngine(), slots=1))


def test_small_projects_skip_the_pool(tmp_path, archive, write_group, monkeypatch):
    from padocc_like.runners.pool import LocalEngine

    archive(n_files=3)
    monkeypatch.setattr(
        LocalEngine, "executor", lambda self, n: (_ for _ in ()).throw(AssertionError("pool"))
    )
    g = api.open_group(write_group(_group(tmp_path, 1)))
    assert all(o.status == "done" for o in api.run(g, ["init", "scan"], workers=2))


def test_fifty_concurrent_tasks_keep_every_record(tmp_path, archive, write_group):
    """50 processes, each what one array task of a group runs (one project through every
    phase, ``python -m padocc_like run -p``), all at once: every project's state, product,
    report and item is whole, and the group's collection (which every task rewrites under
    its lock) lists all 50."""
    n = 50
    archive(n_files=1, nlat=4, nlon=8)
    path = write_group(_group(tmp_path, n))
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "padocc_like", "run", str(path), "-p", f"p{i}", "-q"],
            stdout=subprocess.DEVNULL,
        )
        for i in range(n)
    ]
    assert [p.wait(timeout=900) for p in procs] == [0] * n
    g = api.open_group(path)
    rows = api.status(g)
    assert [r["state"] for r in rows] == ["done"] * n, [r for r in rows if r["state"] != "done"]
    for i in range(n):
        root = g.work_dir / "projects" / f"p{i}"
        state = json.loads((root / "state.json").read_text())
        assert state["project"] == f"p{i}" and state["products"][0]["status"] == "valid"
        events = [(e["phase"], e["event"]) for e in state["history"]]
        assert ("catalog", "done") in events and ("init", "started") in events
        assert json.loads((root / "catalog" / "item.json").read_text())["id"] == f"p{i}"
    collection = json.loads((g.work_dir / "catalog" / "collection.json").read_text())
    assert len([link for link in collection["links"] if link["rel"] == "item"]) == n
