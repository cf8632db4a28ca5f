"""The validation benchmark runs end to end (``bench/bench_validate.py --smoke``).

Four tiny generated files: the product is built, then the h5py read and the validate phase
with 1 and 2 workers are timed once each (the pool threshold lowered, so that 2 workers
really use a pool); the harness must exit 0 and report MB/s and the ratio for each.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "bench_validate.py"


@pytest.fixture(scope="module")
def smoke_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, float, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("bench-validate")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--out-dir", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    return out, time.perf_counter() - t0, proc


def test_help_is_instant_and_light(help_output: Callable[[Path], str]) -> None:
    out = help_output(SCRIPT)
    assert "--smoke" in out
    assert "--workers" in out


@pytest.mark.slow
def test_smoke(smoke_run: tuple[Path, float, subprocess.CompletedProcess[str]]) -> None:
    out, seconds, proc = smoke_run
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert seconds < 90, f"smoke benchmark took {seconds:.1f} s"
    results = json.loads((out / "results.json").read_text())
    assert results["format"] == "padocc-like/bench-validate"
    assert results["archive"]["nfiles"] == 4 and results["data_bytes"] > 0
    summary = results["summary"]
    assert set(summary) == {"h5py", "validate-w1", "validate-w2"}
    for name, row in summary.items():
        assert row["status"] == "ok", (name, row)
        assert row["work_s"] > 0 and row["mb_per_s"] > 0 and row["wall_s"] >= row["work_s"]
    for name in ("validate-w1", "validate-w2"):
        run = summary[name]["median_run"]
        assert run["verdict"] == "pass"
        assert run["summary"]["bytes_compared"] == results["data_bytes"]  # every value of every variable
    assert summary["validate-w1"]["median_run"]["pool"] is False
    assert summary["validate-w2"]["median_run"]["pool"] is True
    assert results["target"]["workers"] == 2 and results["target"]["ratio"] > 0
    md = (out / "results.md").read_text()
    assert "| h5py |" in md and "| validate-w2 |" in md and "Target:" in md
