"""The benchmark harness runs end to end (``bench/bench_refs.py --preset smoke``).

Four tiny files, padocc-like + kerchunk + the h5py floor, one repeat, no extra
virtual environments; the harness must exit 0, time every tool, and find every
product equal to ``xr.open_mfdataset`` on the sources.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "bench_refs.py"


@pytest.fixture(scope="module")
def smoke_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, float, subprocess.CompletedProcess[str]]:
    root = tmp_path_factory.mktemp("bench")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--preset",
            "smoke",
            "--data-dir",
            str(root / "data"),
            "--out-dir",
            str(root / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    return root / "out", time.perf_counter() - t0, proc


def test_help_is_instant_and_light(help_output: Callable[[Path], str]) -> None:
    out = help_output(SCRIPT)
    assert "--preset" in out


@pytest.mark.slow
def test_smoke_preset(smoke_run: tuple[Path, float, subprocess.CompletedProcess[str]]) -> None:
    out, seconds, proc = smoke_run
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert seconds < 60, f"smoke benchmark took {seconds:.1f} s"
    results = json.loads((out / "results.json").read_text())
    assert results["format"] == "padocc-like/bench-refs"
    assert results["archive"]["nfiles"] == 4
    for tool in ("ours", "ours2", "kerchunk", "floor"):
        summary = results["tools"][tool]
        assert summary["status"] == "ok", summary
        median = summary["median"]
        assert median["wall_s"] > 0
        assert median["per_file_ms"] > 0
        assert median["maxrss_mib"] > 0
    assert results["tools"]["ours"]["median"]["phases_s"]["scan"] > 0
    assert results["tools"]["ours"]["median"]["product"]["size"] > 0
    equality = results["equality"]
    assert equality["checked"] is True
    assert equality["ok"] is True
    assert set(equality["products"]) == {"ours", "ours2", "kerchunk"}
    assert results["ours_deterministic"] is True  # 1 and 2 workers wrote the same bytes
    assert all(p["equal"] for p in equality["products"].values())
    assert results["reads"]["ours"]["open_s"] > 0
    assert results["versions"]["main"]["padocc-like"]
    md = (out / "results.md").read_text()
    assert "padocc-like" in md and "kerchunk" in md and "Equality: PASS" in md


@pytest.mark.slow
def test_summarize(smoke_run: tuple[Path, float, subprocess.CompletedProcess[str]]) -> None:
    out, _, proc = smoke_run
    assert proc.returncode == 0
    table = subprocess.run(
        [sys.executable, str(SCRIPT), "--summarize", str(out / "results.json")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert table.returncode == 0, table.stderr
    rows = [line for line in table.stdout.splitlines() if line.startswith("| out |")]
    assert len(rows) == 4  # ours, ours2, kerchunk, floor
