"""A crash inside a native library (a segfault while a file is read) fails the project that
was reading it, naming the signal and the file, and the group run goes on: the other
projects, including those the broken pool had not finished, complete.

The segfault is real: a ``sitecustomize`` on ``PYTHONPATH`` makes every process of the run
(the CLI, the forkserver and the workers it forks) dereference a null pointer through
ctypes when a scanner is chosen for a file whose name contains ``CRASH``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from padocc_like.trace import FILE_NAME

SITECUSTOMIZE = """
import os
if os.environ.get("PADOCC_TEST_CRASH"):
    import ctypes
    import padocc_like.scanners.base as base
    _real = base.scanner_for
    def _crashing(path, *args, **kwargs):
        if os.environ["PADOCC_TEST_CRASH"] in str(path):
            ctypes.string_at(0)  # SIGSEGV, as a crash inside HDF5 would
        return _real(path, *args, **kwargs)
    base.scanner_for = _crashing
"""


def _crashing_site(tmp_path) -> str:
    """A directory with the crashing ``sitecustomize``, for ``PYTHONPATH``."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return str(site)


def _status_rows(path) -> list[dict]:
    """``status --json`` rows from a fresh process (without the crashing sitecustomize)."""
    status = subprocess.run(
        [sys.executable, "-m", "padocc_like", "status", str(path), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(status.stdout)["projects"]


def test_a_segfault_fails_its_project_and_the_group_goes_on(tmp_path, archive, write_group):
    files = archive(n_files=3)
    for name in ("a", "b", "c", "d"):
        (tmp_path / name).mkdir()
        for f in files:
            shutil.copy(f, tmp_path / name / f.name)
    victim = tmp_path / "c" / files[1].name.replace(".nc", "_CRASH.nc")
    (tmp_path / "c" / files[1].name).rename(victim)
    path = write_group(
        textwrap.dedent(f"""\
        group: g
        work_dir: {tmp_path}/w
        profile: local
        pipeline: kerchunk-no-catalog
        projects:
        """)
        + "".join(f"  - {{id: p-{n}, sources: {{glob: {n}/*.nc}}}}\n" for n in "abcd")
    )
    site = _crashing_site(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(site), "PADOCC_TEST_CRASH": "CRASH"}
    run = subprocess.run(
        [sys.executable, "-m", "padocc_like", "run", str(path), "--workers", "2", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 1, run.stderr
    outcomes = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    failed = [o for o in outcomes if o["status"] == "failed"]
    assert [(o["project"], o["phase"], o["error_kind"]) for o in failed] == [
        ("p-c", "scan", "worker-crashed")
    ]
    assert "died (signal SIGSEGV)" in failed[0]["message"]
    assert f"the last source file it opened: {victim}" in failed[0]["message"]
    for pid in ("p-a", "p-b", "p-d"):
        assert (pid, "validate", "done") in [(o["project"], o["phase"], o["status"]) for o in outcomes], pid

    rows = {r["project"]: r for r in _status_rows(path)}
    assert rows["p-c"]["state"] == "failed" and rows["p-c"]["error_kind"] == "worker-crashed"
    assert {rows[p]["state"] for p in ("p-a", "p-b", "p-d")} == {"done"}
    assert (tmp_path / "w" / "projects" / "p-c" / FILE_NAME).read_text().strip() == str(victim)
    scan = json.loads((tmp_path / "w" / "projects" / "p-c" / "state.json").read_text())["phases"]["scan"]
    assert scan["status"] == "failed" and 0 < scan["duration_s"] < 120  # its time until it died

    # without the crash (the file is fine), a rerun completes the project
    rerun = subprocess.run(
        [sys.executable, "-m", "padocc_like", "run", str(path), "-p", "p-c", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr


def test_a_segfault_in_a_serial_run_leaves_the_project_interrupted_with_the_file(
    tmp_path, archive, write_group
):
    """One process for everything (``--workers 1``): the crash ends the run, and ``status``
    says which project was interrupted in which phase, and the file it was reading."""
    files = archive(n_files=2)
    victim = files[1].with_name(files[1].name.replace(".nc", "_CRASH.nc"))
    files[1].rename(victim)
    path = write_group(
        f"group: g\nwork_dir: {tmp_path}/w\nprofile: serial\npipeline: kerchunk-no-catalog\n"
        "projects:\n  - {id: p, sources: {glob: archive/*.nc}}\n"
    )
    site = _crashing_site(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(site), "PADOCC_TEST_CRASH": "CRASH"}
    run = subprocess.run(
        [sys.executable, "-m", "padocc_like", "run", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode < 0 or run.returncode > 128, run  # killed by the signal
    (row,) = _status_rows(path)
    assert row["state"] == "interrupted" and row["phase"] == "scan", row
    assert f"(the last source file it opened: {victim})" in row["reason"]


@pytest.mark.slurm
def test_a_segfaulting_slurm_task_fails_its_phase_with_the_file(
    slurm_cluster, archive, write_group, tmp_path
):
    """A task whose process dies inside a phase (SLURM says FAILED, the phase is still
    ``running`` in state) is recorded as ``worker-crashed`` by ``jobs``, naming the file."""
    from test_slurm_runner import group_file, wait_for_jobs

    from padocc_like import api

    files = archive("a", n_files=2)
    victim = files[1].with_name(files[1].name.replace(".nc", "_CRASH.nc"))
    files[1].rename(victim)
    site = _crashing_site(tmp_path)
    setup = f"'export PYTHONPATH={site} PADOCC_TEST_CRASH=CRASH'"
    path = group_file(
        write_group,
        f"{{partition: debug, time_min: 5, memory_mb: 600, setup: [{setup}]}}",
        "  - {id: p, sources: {glob: a/*.nc}}",
    )
    env = slurm_cluster.env()
    group = api.open_group(path)
    api.run(group, ["init"])
    api.submit(group, ["scan", "compute"], env=env)
    wait_for_jobs(group, env, timeout=180)
    (row,) = api.status(group)
    assert row["state"] == "failed" and row["phase"] == "scan", row
    assert row["error_kind"] == "worker-crashed"
    assert f"the last source file it opened: {victim}" in row["reason"]
    assert row["jobs"]["scan"]["state"] == "FAILED"
