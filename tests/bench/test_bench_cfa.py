"""The CFA benchmark runs end to end (``bench/bench_cfa.py --smoke``).

Four tiny generated files: the ``cfa`` product is built, then our reader, cfapyx's and
``open_mfdataset`` each open it and read all of ``tas`` once; the harness must exit 0 and
find every reader's values equal to ``open_mfdataset``'s.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "bench_cfa.py"


def test_help_is_light(help_output: Callable[[Path], str]) -> None:
    out = help_output(SCRIPT)
    assert "--smoke" in out


@pytest.mark.slow
def test_smoke(tmp_path: Path) -> None:
    if importlib.util.find_spec("cfapyx") is None:
        if os.environ.get("CI"):
            pytest.fail("cfapyx is not installed (pip install -e '.[test]')")
        pytest.skip("cfapyx is not installed")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--out-dir", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    results = json.loads((out / "results.json").read_text())
    assert results["format"] == "padocc-like/bench-cfa" and results["files"] == 4
    assert results["product"]["kind"] == "cfa" and results["product"]["path"].endswith(".nc")
    for name in ("padocc_cfa", "cfapyx", "open_mfdataset"):
        row = results["readers"][name]
        assert row["status"] == "ok", (name, row)
        assert row["open_s"] > 0 and row["read_s"] > 0 and row["bytes"] > 0
    assert results["readers"]["padocc_cfa"]["equal"] and results["readers"]["cfapyx"]["equal"]
    md = (out / "results.md").read_text()
    assert "| padocc_cfa |" in md and "| cfapyx |" in md
