"""The S3 scanning benchmark runs end to end (``bench/bench_s3.py --preset smoke``).

Four tiny generated files are uploaded to a throw-away SeaweedFS server and scanned from
local disk and from S3 (per page size and concurrency), with kerchunk as the peer; the
results must hold every field the report uses, and every S3 scan must equal the local scan
of the same file apart from its URL. Skipped without the ``weed`` binary, except in CI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "bench_s3.py"


def _require_weed() -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from s3server import SeaweedServer

    reason = SeaweedServer.available()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the S3 benchmark's smoke test: {reason}")
        pytest.skip(reason)


def test_help_is_light(help_output: Callable[[Path], str]) -> None:
    out = help_output(SCRIPT)
    assert "--preset" in out and "--page-sizes" in out and "--concurrency" in out


def _without_url(scan: dict) -> dict:
    return {k: v for k, v in scan.items() if k != "url"}


@pytest.mark.slow
@pytest.mark.s3
def test_smoke(tmp_path: Path) -> None:
    _require_weed()
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--preset", "smoke", "--out-dir", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    r = json.loads((out / "results.json").read_text())
    assert r["format"] == "padocc-like/bench-s3" and r["preset"] == "smoke"
    assert r["archive"]["nfiles"] == 4 and r["archive"]["total_bytes"] > 0
    assert r["server"]["upload_s"] > 0 and r["server"]["start_s"] > 0
    assert r["local"]["ms_per_file"] > 0 and len(r["local"]["runs_s"]) >= 1
    defaults = r["defaults"]
    rows = {(row["page_size"], row["concurrency"]): row for row in r["s3"]}
    assert (defaults["page_size"], defaults["concurrency"]) in rows
    assert {4096, 16384} <= {p for p, _ in rows} and {1, 16} <= {c for _, c in rows}
    assert [row["default"] for row in r["s3"]].count(True) == 1
    for row in r["s3"]:
        assert row["ms_per_file"] > 0 and row["ratio_vs_local"] > 0
        assert row["requests_per_file"] >= 1 and row["bytes_per_file"] > 0
        assert row["ratio_bytes_needed"] > 0 and row["io_identical_over_repeats"] is True
    # smaller pages: more requests, never more bytes
    assert (
        rows[(4096, defaults["concurrency"])]["requests_per_file"] >= rows[(16384, 16)]["requests_per_file"]
    )
    assert rows[(4096, defaults["concurrency"])]["bytes_per_file"] <= rows[(16384, 16)]["bytes_per_file"]
    needed = r["needed"]
    assert len(needed["per_file"]) == 4
    for f in needed["per_file"]:
        assert 0 < f["needed_bytes"] <= f["size"] and f["needed_bytes"] <= f["s3_bytes_read"]
        assert f["parser_reads"] > 0
    k = r["kerchunk"]
    assert k["status"] == "ok" and k["ms_per_file"] > 0 and k["requests_per_file"] >= 1
    assert {t["what"] for t in r["targets"]} and all(isinstance(t["holds"], bool) for t in r["targets"])
    assert r["machine"]["loadavg_start"] and r["machine"]["loadavg_end"]
    # the S3 scans equal the local ones apart from the URL
    assert r["products_equal"] is True, r["products_mismatches"]
    local = json.loads((out / "scans-local.json").read_text())
    s3 = json.loads((out / "scans-s3.json").read_text())
    assert len(local) == len(s3) == 4
    for a, b in zip(local, s3, strict=True):
        assert b["url"].startswith("s3://") and Path(a["url"]).name == b["url"].rsplit("/", 1)[-1]
        assert a["variables"]["tas"]["offsets"], "no chunk table"
        assert _without_url(a) == _without_url(b)
    md = (out / "results.md").read_text()
    assert "| local disk |" in md and "| S3 (default) |" in md and "kerchunk" in md
    assert "PASS" in proc.stdout or "FAIL" in proc.stdout
    assert not Path(r["archive"]["data_dir"]).is_relative_to(REPO / "bench" / "data")
