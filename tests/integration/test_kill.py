"""SIGKILL during a phase, then a rerun, gives the same result as an uninterrupted run.

Two kinds of kill: at a moment (a delay after the phase starts, for the long phases), and at a
chosen point inside each of the six phases (the CLI runs with one function wrapped to stop
there, then the process is killed): products, published copies, reports (timestamps masked),
the STAC item and the collection of the rerun equal those of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import re
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


# --- a kill at a chosen point of every phase ------------------------------------------------
PHASES = ["init", "scan", "compute", "validate", "finalise", "catalog"]

FULL_GROUP = """
group: kill
work_dir: {work}
profile: serial
stores:
  site: {{protocol: file, location: "{pub}", public_url: "https://data.example.org/products"}}
publish:
  store: site
  references:
    - {{from: "{archive}/", to: "https://data.example.org/archive/"}}
projects:
  - id: p
    sources: {{glob: {archive}/*.nc}}
    product: {{kind: [kerchunk, zarr]}}
"""

DRIVER = """
import importlib, sys, time
from pathlib import Path
module, name, when, nth, marker, *argv = sys.argv[1:]
mod = importlib.import_module(module)
real, calls = getattr(mod, name), []
def stop_here(*args, **kwargs):
    calls.append(1)
    if len(calls) != int(nth):
        return real(*args, **kwargs)
    if when == "after":
        real(*args, **kwargs)
    Path(marker).touch()
    time.sleep(600)
setattr(mod, name, stop_here)
from padocc_like.cli import main
sys.exit(main(argv))
"""

KILL_POINTS = {
    "init: manifest written, config.json not": (
        "init",
        "padocc_like.stages.init",
        "atomic_write_json",
        "after",
        1,
    ),
    "scan: files scanned, scan.json not written": (
        "scan",
        "padocc_like.stages.scan",
        "atomic_write_json",
        "before",
        1,
    ),
    "compute: first kind written, second not": (
        "compute",
        "padocc_like.stages.compute",
        "write_product",
        "after",
        1,
    ),
    "compute: products written, not recorded": (
        "compute",
        "padocc_like.stages.compute",
        "save_state",
        "before",
        1,
    ),
    "validate: JSON report written, text not": (
        "validate",
        "padocc_like.stages.validate",
        "atomic_write_text",
        "before",
        1,
    ),
    "finalise: in the middle of copying the Zarr tree": (
        "finalise",
        "padocc_like.publish.copy",
        "_check",
        "before",
        5,
    ),
    "finalise: copies made, not recorded": (
        "finalise",
        "padocc_like.stages.finalise",
        "save_state",
        "before",
        1,
    ),
    "catalog: item written, state not saved": (
        "catalog",
        "padocc_like.stages.catalog",
        "atomic_write_json",
        "after",
        1,
    ),
}

TIMESTAMPS = ("created", "updated", "started", "finished", "duration_s", "processing:datetime")


def _masked(obj, *roots: Path):
    """``obj`` with timestamps replaced and the run's own directories made placeholders."""
    if isinstance(obj, dict):
        return {k: "<time>" if k in TIMESTAMPS else _masked(v, *roots) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_masked(v, *roots) for v in obj]
    if isinstance(obj, str):
        for i, root in enumerate(roots):
            obj = obj.replace(str(root), f"<root{i}>")
    return obj


def _tree(path: Path) -> dict[str, bytes]:
    if path.is_file():
        return {"": path.read_bytes()}
    return {q.relative_to(path).as_posix(): q.read_bytes() for q in sorted(path.rglob("*")) if q.is_file()}


def _results(work: Path, pub: Path) -> dict:
    """Everything a finished run delivers, comparable between runs."""
    state = _state(work)
    current = {c["revision"] for c in state["current_products"]}
    products = [p for p in state["products"] if p["revision"] in current]
    project = work / "projects/p"
    reports = {}
    for p in products:
        report = json.loads((project / p["validation_report"]).read_text())
        text = (project / p["validation_report"]).with_suffix(".txt").read_text()
        reports[p["kind"]] = (
            _masked(report, work, pub),
            re.sub(r" in [0-9.]+ s", "", text).replace(str(work), "<w>"),
        )
    return {
        "products": {p["kind"]: _tree(Path(p["path"])) for p in products},
        "records": [_masked({k: v for k, v in p.items() if k != "created"}, work, pub) for p in products],
        "published": _tree(pub),
        "reports": reports,
        "item": _masked(json.loads((project / "catalog/item.json").read_text()), work, pub),
        "collection": _masked(json.loads((work / "catalog/collection.json").read_text()), work, pub),
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A small archive and the results of an uninterrupted run over it."""
    from padocc_like.demo import ArchiveSpec, make_archive

    root = tmp_path_factory.mktemp("kill-ref")
    make_archive(root / "archive", ArchiveSpec(n_files=4, nlat=18, nlon=36))
    group = root / "ref.yaml"
    group.write_text(FULL_GROUP.format(work=root / "work", pub=root / "pub", archive=root / "archive"))
    outs = api.run(api.open_group(group), PHASES)
    assert all(o.status == "done" for o in outs), [o.message for o in outs]
    return root / "archive", _results(root / "work", root / "pub")


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_sigkill_at_a_point_of_every_phase_then_rerun_matches_uninterrupted(tmp_path, reference, point):
    archive, expected = reference
    phase, module, name, when, nth = KILL_POINTS[point]
    work, pub = tmp_path / "work", tmp_path / "pub"
    group = tmp_path / "g.yaml"
    group.write_text(FULL_GROUP.format(work=work, pub=pub, archive=archive))
    g = api.open_group(group)
    before = PHASES[: PHASES.index(phase)]
    if before:
        assert all(o.status == "done" for o in api.run(g, before))
    marker = tmp_path / "stopped"
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, module, name, when, str(nth), str(marker), phase, str(group), "-q"]
    )
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None, f"the {phase} run ended before reaching the point ({proc.returncode})"
        assert time.monotonic() < deadline, "the point was never reached"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    row = api.status(g)[0]
    assert (row["state"], row["phase"]) == ("interrupted", phase), row  # never reported done
    assert _state(work)["phases"][phase]["status"] == "running"
    outs = api.run(g, PHASES)
    assert all(o.status == "done" for o in outs), [(o.phase, o.message) for o in outs]
    assert api.status(g)[0]["state"] == "done"
    assert _results(work, pub) == expected
    leftovers = [
        p for p in (work / "projects/p/products").rglob("*") if p.name.endswith((".partial", ".inprogress"))
    ]
    assert not leftovers, leftovers
