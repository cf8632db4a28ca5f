"""Zarr products under interruption and memory pressure.

* An exception or a SIGKILL in the middle of a store's write leaves no store under its
  published name; the rerun resumes the recorded blocks (it does not write them again) and
  gives a store equal, file for file, to an uninterrupted write.
* Peak RSS of compute stays under the configured ``memory_limit_mb`` plus the process's fixed
  overhead, for a variable several times larger than the limit; the same project with a
  limit that admits the whole variable exceeds that bound, so the bound is what holds it.
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
from typing import Any

import pytest

from padocc_like import api
from padocc_like.writers import zarr as zarr_writer

GROUP = """
group: z
work_dir: {work}
profile: serial
projects:
  - id: p
    sources: {{glob: {archive}/*.nc}}
    variables: {{keep: [tas]}}
    product: {{kind: zarr, zarr: {zarr}}}
"""
TIMESERIES = "{pattern: timeseries, chunks: {time: -1, lat: 9, lon: 18}, memory_limit_mb: 1}"


def _store_files(store: Path) -> dict[str, bytes]:
    return {p.relative_to(store).as_posix(): p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()}


def _run(tmp_path: Path, name: str, archive_dir: Path, zarr: str = TIMESERIES) -> Any:
    path = tmp_path / f"{name}.yaml"
    path.write_text(GROUP.format(work=tmp_path / f"{name}-work", archive=archive_dir, zarr=zarr))
    return api.open_group(path)


def _store(group: Any) -> Path:
    return Path(api.status(group)[0]["product"]["path"])


@pytest.fixture
def days(tmp_path: Path, archive) -> Path:
    archive(n_files=12, nlat=45, nlon=90)
    return tmp_path / "archive"


def test_an_interrupted_write_resumes_its_blocks(tmp_path: Path, days: Path, monkeypatch, caplog) -> None:
    ref = _run(tmp_path, "ref", days)
    assert all(o.status == "done" for o in api.run(ref, ["init", "scan", "compute", "validate"]))
    expected = _store_files(_store(ref))

    group = _run(tmp_path, "cut", days)
    assert all(o.status == "done" for o in api.run(group, ["init", "scan"]))
    reads = {"n": 0}
    real = zarr_writer._fragment_region

    def failing(*args: Any, **kwargs: Any) -> Any:
        reads["n"] += 1
        if reads["n"] == 6:
            raise OSError("disk went away")
        return real(*args, **kwargs)

    monkeypatch.setattr(zarr_writer, "_fragment_region", failing)
    out = api.run(group, ["compute"])[0]
    assert out.status == "failed" and "disk went away" in out.message
    products = group.work_dir / "projects" / "p" / "products" / "zarr"
    assert not (products / "r1.zarr").exists()  # never published half-written
    assert (products / f".r1.zarr{zarr_writer.INPROGRESS}").is_dir()

    counted = {"n": 0}

    def counting(*args: Any, **kwargs: Any) -> Any:
        counted["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(zarr_writer, "_fragment_region", counting)
    caplog.set_level("INFO", logger="padocc_like.writers.zarr")
    outs = api.run(group, ["compute", "validate"])
    assert all(o.status == "done" for o in outs), outs
    # the 5 blocks of tas read before the failure, and the coordinates' (written first)
    resumed = re.search(r"resuming the interrupted write of \S+: (\d+) blocks already written", caplog.text)
    assert resumed and int(resumed[1]) >= 5, caplog.text
    assert counted["n"] == reads_total(ref) - 5  # the recorded blocks are not read again
    assert _store_files(_store(group)) == expected
    assert not list(products.glob(".*"))  # nothing left to clean


def reads_total(group: Any) -> int:
    """Blocks the uninterrupted write read from the sources (recorded in its product entry)."""
    state = json.loads((group.work_dir / "projects/p/state.json").read_text())
    product = next(p for p in state["products"] if p["kind"] == "zarr")
    plan = product["copy_plans"]["tas"]
    assert plan["kind"] == "two-pass", plan  # the limit forces an intermediate store
    return int(plan["passes"][0]["n_blocks"])


def test_sigkill_during_the_write_then_rerun_matches_uninterrupted(tmp_path: Path, days: Path) -> None:
    ref = _run(tmp_path, "ref", days)
    assert all(o.status == "done" for o in api.run(ref, ["init", "scan", "compute"]))
    expected = _store_files(_store(ref))

    group = _run(tmp_path, "kill", days)
    assert all(o.status == "done" for o in api.run(group, ["init", "scan"]))
    products = group.work_dir / "projects" / "p" / "products" / "zarr"
    progress = products / f".r1.zarr{zarr_writer.INPROGRESS}" / ".padocc-job" / zarr_writer.PROGRESS_FILE
    proc = subprocess.Popen(
        [sys.executable, "-m", "padocc_like", "compute", str(tmp_path / "kill.yaml"), "-q"]
    )
    deadline = time.monotonic() + 120
    while not progress.is_file():  # at least one block written
        assert time.monotonic() < deadline and proc.poll() is None, "the write finished or never started"
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (products / "r1.zarr").exists()

    outs = api.run(group, ["compute", "validate"])
    assert all(o.status == "done" for o in outs), outs
    assert _store_files(_store(group)) == expected


def _peak_rss_mib(group_yaml: Path) -> float:
    """Peak RSS of a fresh process running ``compute`` on the group (MiB): its VmHWM, which
    starts afresh at exec (``ru_maxrss`` would carry this test process's own peak over)."""
    code = (
        "import re, sys\n"
        "from padocc_like.cli import main\n"
        f"rc = main(['compute', {str(group_yaml)!r}, '-q', '--force'])\n"
        "status = open('/proc/self/status').read()\n"
        "print(int(re.search(r'VmHWM:\\s+(\\d+) kB', status)[1]) / 1024)\n"
        "sys.exit(rc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


FIXED_OVERHEAD_MIB = 48
"""Native memory of the copy engine beyond its blocks, whatever the data size: HDF5's and
zstd's buffers and the allocator arenas of zarr's threads (measured: 40-48 MiB here)."""


@pytest.mark.slow
def test_peak_memory_stays_under_the_limit(tmp_path: Path, archive) -> None:
    """``tas`` of 32 and of 64 files of (30, 90, 180) float32 (59 and 119 MiB) to a
    time-series layout (every output chunk needs every file), with ``memory_limit_mb: 16``:
    compute's peak RSS is the same for both sizes, and within the limit plus a fixed overhead
    above an equal process copying a few KiB the same way (two passes). The same copy with a
    limit that admits the whole variable exceeds that bound, so the bound is what holds it."""
    archive("big", n_files=32, nlat=90, nlon=180, variables=("tas",))
    archive("bigger", n_files=64, nlat=90, nlon=180, variables=("tas",))
    archive("tiny", n_files=2, nlat=9, nlon=18, variables=("tas",))
    chunks = "chunks: {time: -1, lat: 9, lon: 18}"
    runs = {
        "tiny": ("tiny", "{pattern: timeseries, chunks: {time: -1, lat: 3, lon: 3}, memory_limit_mb: 0.05}"),
        "bounded": ("big", f"{{pattern: timeseries, {chunks}, memory_limit_mb: 16}}"),
        "bounded-2x": ("bigger", f"{{pattern: timeseries, {chunks}, memory_limit_mb: 16}}"),
        "unbounded": ("big", f"{{pattern: timeseries, {chunks}, memory_limit_mb: 1024}}"),
    }
    peaks = {}
    for name, (data, zarr) in runs.items():
        group = _run(tmp_path, name, tmp_path / data, zarr)
        assert all(o.status == "done" for o in api.run(group, ["init", "scan"]))
        peaks[name] = _peak_rss_mib(tmp_path / f"{name}.yaml")
    bound = peaks["tiny"] + 16 + FIXED_OVERHEAD_MIB
    assert peaks["bounded"] <= bound and peaks["bounded-2x"] <= bound, peaks
    assert abs(peaks["bounded-2x"] - peaks["bounded"]) <= 8, peaks  # twice the data, same peak
    assert peaks["unbounded"] > bound, peaks  # without the bound, the same copy exceeds it
