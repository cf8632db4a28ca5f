"""What every benchmark script's tests check the same way (as fixtures)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

HEAVY = ("numpy", "h5py", "xarray", "netCDF4", "padocc_like")


def _help_output(script: Path) -> str:
    """``script --help``'s output; fails unless the script imported only the standard library."""
    code = (
        "import runpy, sys\n"
        f"sys.argv = [{script.name!r}, '--help']\n"
        "try:\n"
        f"    runpy.run_path({str(script)!r}, run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]", "heavy imports at module level"  # stdlib only
    return proc.stdout


@pytest.fixture
def help_output() -> Callable[[Path], str]:
    """``script --help``'s output, asserting that only the standard library was imported."""
    return _help_output
