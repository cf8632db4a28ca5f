"""The one-command harness of issue 3's targets (``bench/bench_issue3.py``).

The full run takes about 25 minutes and is not part of the suite. Tested here: its help
imports nothing heavy; the target checks turn benchmark results into the right verdicts
(a miss shows as a miss); ``--write-docs`` fills exactly the marked blocks; and its own two
measurements (1,000,000 references to Parquet, the CLI over a group of projects) run.
"""

from __future__ import annotations

import copy
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "bench_issue3.py"


@pytest.fixture(scope="module")
def harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_issue3", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _results() -> dict[str, Any]:
    """Benchmark results shaped as the sub-benchmarks write them, every target met."""
    refs = {
        "tools": {
            "ours": {"per_file_ms_median": 2.0},
            "kerchunk": {"per_file_ms_median": 40.0},
            "vz": {"per_file_ms_median": 35.0},
            "floor": {"per_file_ms_median": 5.0},
        },
        "reads": {
            "ours": {"open_s": 0.12, "read_s": 8.0},
            "kerchunk": {"open_s": 0.13, "read_s": 9.0},
            "open_mfdataset": {"open_s": 2.0},
        },
        "equality": {"ok": True},
    }
    scale = [
        {"files": n, "workers": w, "ok": True, "ms_per_file": ms, "maxrss_mib": rss}
        for n, w, ms, rss in (
            (1000, 1, 2.2, 180),
            (1000, 2, 1.5, 185),
            (5000, 1, 1.8, 260),
            (5000, 2, 1.05, 330),
            (10000, 1, 1.8, 445),
            (10000, 2, 1.0, 510),
        )
    ]
    return {
        "refs": refs,
        "scale": scale,
        "val": {"target": {"ratio": 0.8}},
        "mil": {"refs": 1_000_000, "seconds": 0.4, "maxrss_mib": 180},
        "cli": {"help_s": 0.05, "status_s": 0.12, "status_first_s": 0.4},
    }


def _verdicts(harness: ModuleType, results: dict[str, Any]) -> dict[str, bool]:
    return {r["target"]: r["met"] for r in harness.targets(**results)}


def test_help_is_light(help_output: Callable[[Path], str]) -> None:
    out = help_output(SCRIPT)
    assert "--write-docs" in out and "--from-results" in out


def test_all_met(harness: ModuleType) -> None:
    verdicts = _verdicts(harness, _results())
    assert len(verdicts) == 12 and all(verdicts.values()), verdicts


@pytest.mark.parametrize(
    ("change", "target"),
    [
        (lambda r: r["refs"]["tools"]["kerchunk"].update(per_file_ms_median=15.0), "than kerchunk"),
        (lambda r: r["refs"]["tools"].pop("vz"), "than VirtualiZarr"),
        (lambda r: r["scale"][5].update(ms_per_file=1.2), "--workers 2"),
        (lambda r: r["scale"][4].update(ms_per_file=2.4), "linear"),
        (lambda r: r["scale"][5].update(maxrss_mib=1100), "peak RSS"),
        (lambda r: r["refs"]["reads"]["ours"].update(open_s=0.25), "opens in"),
        (lambda r: r["val"]["target"].update(ratio=0.69), "validation"),
        (lambda r: r["cli"].update(status_s=0.31), "`status`"),
        (lambda r: r["refs"]["equality"].update(ok=False), "sources' values"),
    ],
)
def test_a_miss_is_reported(
    harness: ModuleType, change: Callable[[dict[str, Any]], Any], target: str
) -> None:
    results = copy.deepcopy(_results())
    change(results)
    missed = [t for t, met in _verdicts(harness, results).items() if not met]
    assert len(missed) == 1 and target in missed[0], missed
    rows = harness.targets(**results)
    assert "| **no** |" in harness.markdown(
        rows, {"commit": "abc", "created": "now", "minutes": 1, "loadavg": [0, 0]}
    )


def test_write_docs_fills_the_marked_blocks(harness: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "out"
    for sub in ("refs", "scale", "validate"):
        (out / sub).mkdir(parents=True)
        (out / sub / "results.md").write_text(f"# {sub} title\n\n{sub} table from {harness.REPO}/bench\n")
        (out / sub / "results.json").write_text("{}")
    (out / "results.json").write_text(json.dumps({"targets": []}))
    docs = tmp_path / "performance.md"
    blocks = "".join(f"<!-- {m}:begin -->\nold\n<!-- {m}:end -->\nkept {m}\n" for m, _ in harness.SECTIONS)
    docs.write_text("intro\n" + blocks)
    (tmp_path / "perf-results").mkdir()
    harness.write_docs(out, "TARGETS\n", docs=docs, results=tmp_path / "perf-results")
    text = docs.read_text()
    assert "old" not in text and "TARGETS" in text and "title" not in text
    assert "refs table from bench" in text  # repository paths made relative
    assert all(f"kept {m}" in text for m, _ in harness.SECTIONS)
    assert sorted(p.name for p in (tmp_path / "perf-results").iterdir()) == [
        "issue3.json",
        "refs-standard.json",
        "scale.json",
        "validate.json",
    ]
    docs.write_text("no markers\n")
    with pytest.raises(SystemExit, match="no <!-- issue3-targets:begin -->"):
        harness.write_docs(out, "TARGETS\n", docs=docs, results=tmp_path / "perf-results")


@pytest.mark.slow
def test_own_measurements_run(harness: ModuleType, tmp_path: Path) -> None:
    million = harness.million(tmp_path)
    assert million["refs"] == 1_000_000 and million["maxrss_mib"] < 1024
    cli = harness.cli_timings(tmp_path, n_projects=5)
    assert cli["projects"] == 5
    assert 0 < cli["help_s"] < 5 and 0 < cli["status_s"] < 5
