"""SIGKILL during a phase, then a rerun, gives the same result as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from padocc_like import api

GROUP = """
group: kill
work_dir: {work}
profile: serial
projects:
  - id: p
    sources: {{glob: {archive}/*.nc}}
"""


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "padocc_like", *args]


def _state(work: Path) -> dict:
    try:
        return json.loads((work / "projects/p/state.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


@pytest.fixture
def big_archive(tmp_path, archive):
    archive(n_files=24, nlat=45, nlon=90)
    return tmp_path / "archive"


def _product_bytes(work: Path) -> bytes:
    state = _state(work)
    rev = state["current_product"]
    product = next(p for p in state["products"] if p["revision"] == rev)
    return Path(product["path"]).read_bytes()


@pytest.mark.parametrize(
    "phase,delay", [("compute", 0.0), ("compute", 0.3), ("scan", 0.1), ("validate", 0.2)]
)
def test_sigkill_then_rerun_matches_uninterrupted(tmp_path, big_archive, phase, delay):
    ref_group = tmp_path / "ref.yaml"
    ref_group.write_text(GROUP.format(work=tmp_path / "ref-work", archive=big_archive))
    subprocess.run(_cli("run", str(ref_group), "--phases", "init,scan,compute,validate", "-q"), check=True)
    expected = _product_bytes(tmp_path / "ref-work")

    work = tmp_path / "work"
    group = tmp_path / "g.yaml"
    group.write_text(GROUP.format(work=work, archive=big_archive))
    before = {"scan": "init", "compute": "init,scan", "validate": "init,scan,compute"}[phase]
    subprocess.run(_cli("run", str(group), "--phases", before, "-q"), check=True)
    proc = subprocess.Popen(_cli(phase, str(group), "-q", "--force"))
    deadline = time.monotonic() + 60
    while _state(work).get("phases", {}).get(phase, {}).get("status") != "running":
        assert time.monotonic() < deadline and proc.poll() is None, "phase never started"
        time.sleep(0.005)
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    g = api.open_group(group)
    row = api.status(g)[0]
    if row["state"] != "done":  # killed mid-phase: reported as interrupted, never as done
        assert row["state"] in ("interrupted", "pending"), row
    outs = api.run(g, ["init", "scan", "compute", "validate"])
    assert all(o.status == "done" for o in outs), outs
    assert _product_bytes(work) == expected
    assert api.report(g, "p")["verdict"] == "pass"
    leftovers = list((work / "projects/p").rglob("*.partial"))
    assert not leftovers or all(p.parent.name != "kerchunk" for p in leftovers)
