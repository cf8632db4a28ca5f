"""Concurrent runs: different projects never collide; the same project is locked."""

from __future__ import annotations

import json
import subprocess
import sys

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


def test_file_level_workers_within_one_project(tmp_path, archive, write_group):
    archive(n_files=6)
    g = api.open_group(write_group(_group(tmp_path, 1)))
    outs = api.run(g, ["init", "scan", "compute", "validate"], workers=2)
    assert all(o.status == "done" for o in outs), outs
