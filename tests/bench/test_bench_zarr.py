"""The Zarr benchmark runs end to end (``bench/bench_zarr.py --smoke``).

Six tiny generated files: padocc-like writes a time-series and a maps ``zarr`` product,
dask rechunks with ``.chunk(...).to_zarr(...)``; every store's ``tas`` must equal the
sources', and one map and one point's series are read from each layout and from the
sources. rechunker is not run (it needs its own venv: ``--with-rechunker``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "bench_zarr.py"


def test_help_is_light(help_output: Callable[[Path], str]) -> None:
    out = help_output(SCRIPT)
    assert "--smoke" in out and "--with-rechunker" in out


@pytest.mark.slow
def test_smoke(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--out-dir", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    results = json.loads((out / "results.json").read_text())
    assert results["format"] == "padocc-like/bench-zarr" and results["archive"]["nfiles"] == 6
    ntime = results["archive"]["ntime"]
    tools = results["tools"]
    for name in ("ours-timeseries", "ours-maps", "dask-tasks"):
        row = tools[name]
        assert row["status"] == "ok", (name, row.get("error"))
        assert row["equal"] is True, (name, row.get("sha256"), results["sources_digest"])
        assert row["work_s"] > 0 and row["maxrss_mib"] > 0 and row["store_bytes"] > 0
        assert Path(row["store"], ".zmetadata").is_file()
    assert tools["ours-timeseries"]["chunks"] == [ntime, 9, 18]
    assert tools["dask-tasks"]["chunks"] == [ntime, 9, 18]
    assert tools["ours-timeseries"]["compute_s"] > 0
    assert tools["rechunker"]["status"] == "not run" and "--with-rechunker" in tools["rechunker"]["reason"]
    for layout in ("ours-timeseries", "ours-maps", "dask-tasks", "sources"):
        row = results["reads"][layout]
        assert row["status"] == "ok", (layout, row.get("error"))
        assert row["map_s"] > 0 and row["point_s"] > 0
        assert row["map_shape"] == [18, 36] and row["point_shape"] == [ntime]
    assert {t["holds"] for t in results["targets"] if "equal" in t["what"]} == {True}
    md = (out / "results.md").read_text()
    assert "| ours-timeseries |" in md and "| dask-tasks |" in md
    assert "one point series ms" in md and "| sources |" in md and "## Targets" in md
