"""The native HDF5 reader on every HDF5/netCDF-4 file of ``realdata``: it gives exactly the h5py
backend's scan, or declines (and the scanner reads the file with h5py).

The agreement check is ``compare_backends`` of ``tests/unit/test_scanners_hdf5_native.py``.
:data:`DECLINED` records the files h5py scans but the native reader declines, with the reason:
those files are scanned at h5py's speed, so a new one is a regression to look at (and a file
leaving the list is progress to record). Files that h5py cannot scan either (compound, enum and
variable-length variables, groups, unknown filters, damaged files) may be declined freely; the
scanner raises h5py's error for them.

Run: ``pytest tests/realdata/test_hdf5_native.py -q -p no:cacheprovider --realdata -s`` (``-s``
prints the table of declined files).
"""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

import pytest

from padocc_like.errors import ScanError
from padocc_like.scanners.base import HDF5_SIGNATURE

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_scanners_hdf5_native import _scan, compare_backends

pytestmark = pytest.mark.realdata

REALDATA = Path(
    os.environ.get("PADOCC_LIKE_REALDATA", Path(__file__).resolve().parents[3] / "shared" / "realdata")
)

DECLINED: dict[str, str] = {
    # file: words of the reason the native reader gives
}
"""Files h5py scans that the native reader declines. None today: the files the native reader
declines for their user-defined (committed) attribute types or a compound attribute are refused
by both backends since attributes no JSON value holds are refused (see tests/realdata/test_corpus.py)."""


def _hdf5_files() -> list[str]:
    """The MANIFEST's files that start with the HDF5 signature."""
    manifest = REALDATA / "MANIFEST.tsv"
    if not manifest.is_file():
        return []
    files = []
    with manifest.open() as f:
        for row in csv.DictReader(f, delimiter="\t"):
            path = REALDATA / row["path"]
            with path.open("rb") as data:
                if data.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
                    files.append(row["path"])
    return sorted(files)


FILES = _hdf5_files()
OUTCOMES: dict[str, str] = {}


@pytest.mark.parametrize("rel", FILES)
def test_native_reader_agrees(realdata: Path, rel: str, record_property: pytest.RecordProperty) -> None:
    path = realdata / rel
    reason = compare_backends(path)
    h5py_scans = not isinstance(_scan(str(path), "h5py", 500), ScanError)
    record_property("native", "agrees" if reason is None else f"declined: {reason}")
    if reason is None:
        OUTCOMES[rel] = "agrees"
    elif h5py_scans:
        OUTCOMES[rel] = f"declined (h5py scans it): {reason}"
        assert rel in DECLINED, f"{rel}: the native reader now declines a file h5py scans: {reason}"
        assert DECLINED[rel] in reason, (rel, reason)
    else:
        OUTCOMES[rel] = f"declined (h5py refuses it too): {reason}"
    if rel in DECLINED:
        assert reason is not None, f"{rel}: the native reader reads it now; remove it from DECLINED"


def test_declined_files_are_listed(realdata: Path) -> None:
    """Every file of :data:`DECLINED` exists, and the table of outcomes (run with ``-s``)."""
    for rel in DECLINED:
        assert (realdata / rel).is_file(), rel
    assert len(FILES) > 100
    if len(OUTCOMES) == len(FILES):
        agree = sum(outcome == "agrees" for outcome in OUTCOMES.values())
        print(
            f"\nnative HDF5 reader: same scan (or same error) as h5py on {agree} of {len(FILES)} files; declined:"
        )
        for rel, outcome in sorted(OUTCOMES.items()):
            if outcome != "agrees":
                print(f"  {rel}: {outcome}")
