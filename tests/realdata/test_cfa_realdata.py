"""Every aggregation file of ``realdata/series/cfapyx-rain-synthetic`` through ``engine="padocc_cfa"``.

The folder holds ten fragments ``rain/example0.nc`` ... ``example9.nc`` (``p(time=2,
latitude=180, longitude=360)`` each) and four aggregation files that cfapyx wrote in
different term sets. None of them locates its fragments the way CF says a reader must:
relative URIs are relative to the writer's working directory, and absolute ones name the
writer's home directory. So each file is checked twice:

* as written: the URIs are resolved as the convention says (relative to the aggregation
  file's directory), opening still works (no fragment is read), and reading fails with
  :class:`FragmentNotFoundError` naming the file, the variable, the fragment and the
  resolved location, which proves the resolution rule rather than the data;
* remapped with the reader option ``cfa_options={"substitutions": {prefix: new}}``: the
  values, dimensions and coordinates equal ``xarray.open_mfdataset`` of the fragments
  sorted by their first time value (not by name), bitwise.

Run: ``pytest tests/realdata/test_cfa_realdata.py -q -p no:cacheprovider --realdata``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import xarray as xr

from padocc_like.cfa import FragmentNotFoundError, TermSet, parse_aggregation

pytestmark = pytest.mark.realdata

DATASET = "series/cfapyx-rain-synthetic"
RAW = {"decode_times": False, "mask_and_scale": False}  # compare stored values, not decoded ones
CONCAT_IN_ORDER = {
    "combine": "nested",
    "concat_dim": "time",
    "data_vars": "minimal",
    "coords": "minimal",
    "compat": "override",
}


@dataclass(frozen=True)
class Aggregation:
    path: str
    """Relative to the dataset folder."""
    term_set: TermSet
    unresolved: str
    """Where the first fragment's URI leads when resolved as the convention says."""
    substitutions: dict[str, str]
    """Reader substitutions that point the URIs at ``rain/``."""
    why: str


AGGREGATIONS = [
    Aggregation(
        "testrain.nca",
        TermSet.CF_1_13,
        "{dataset}/cfapyx/tests/test_space/rain/example0.nc",
        {"cfapyx/tests/test_space/rain/": "rain/"},
        "Final CF-1.13 terms (map, uris, identifiers) although Conventions says CF-1.11. The URI "
        "'cfapyx/tests/test_space/rain/example0.nc' is a relative reference: it resolves against the "
        "aggregation file's directory, where no such path exists (cfapyx wrote it relative to its CWD).",
    ),
    Aggregation(
        "testrain_1.12.nca",
        TermSet.CF_1_13,
        "/home/users/dwest77/cedadev/CFAPyX/cfapyx/tests/test_space/rain/example0.nc",
        {"/home/users/dwest77/cedadev/CFAPyX/cfapyx/tests/test_space/rain/": "rain/"},
        "Final CF-1.13 terms with bare absolute paths from the writer's machine (accepted as local "
        "paths when reading; they do not exist here).",
    ),
    Aggregation(
        "test_outputs/testrain.nca",
        TermSet.DRAFT_2024_05,
        "/home/users/dwest77/cedadev/cfatests/CFAPyX/tests/test_space/rain/example0.nc",
        {"/home/users/dwest77/cedadev/cfatests/CFAPyX/tests/test_space/rain/": "../rain/"},
        "The mid-2024 draft terms (shape, location = URIs, address), bare absolute paths from the "
        "writer's machine; remapped relative to test_outputs/, so '../rain/'.",
    ),
    Aggregation(
        "rain/rainmaker.nca",
        TermSet.CFA_0_6_2,
        "/home/users/dwest77/Documents/cfa_python_dw/testfiles/rain/example0.nc",
        {"file:///home/users/dwest77/Documents/cfa_python_dw/testfiles/rain/": ""},
        "CFA-0.6.2 (location = sizes, file, format, address; Conventions 'CF-1.11 CFA-0.6.2') with "
        "file:/// URIs on the writer's machine; remapped to bare names, relative to rain/ itself.",
    ),
]


@pytest.fixture(scope="module")
def folder(realdata: Path) -> Path:
    path = realdata / DATASET
    if not path.is_dir():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture(scope="module")
def reference(folder: Path) -> xr.Dataset:
    """The fragments concatenated by xarray, in the order of their first time value."""

    def first_time(path: Path) -> float:
        with netCDF4.Dataset(path) as ds:
            return float(ds["time"][0])

    files = sorted(folder.glob("rain/example*.nc"), key=first_time)
    assert len(files) == 10
    with xr.open_mfdataset(files, **CONCAT_IN_ORDER, **RAW) as ds:
        return ds.load()


def test_every_aggregation_file_is_listed(folder: Path) -> None:
    found = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.nca"))
    assert found == sorted(a.path for a in AGGREGATIONS)


@pytest.mark.parametrize("agg", AGGREGATIONS, ids=[a.path for a in AGGREGATIONS])
def test_structure(folder: Path, agg: Aggregation) -> None:
    parsed = parse_aggregation(folder / agg.path)
    assert set(parsed.aggregations) == {"p"}
    p = parsed.aggregations["p"]
    assert p.term_set is agg.term_set
    assert p.dims == ("time", "latitude", "longitude")
    assert p.shape == (20, 180, 360)
    assert p.fragment_sizes == ((2,) * 10, (180,), (360,))
    assert p.fragments.identifiers is not None and set(p.fragments.identifiers.ravel()) == {"p"}
    assert set(parsed.variables) == {"time", "latitude", "longitude"}


@pytest.mark.parametrize("agg", AGGREGATIONS, ids=[a.path for a in AGGREGATIONS])
def test_uris_as_written_do_not_resolve(folder: Path, agg: Aggregation) -> None:
    """See each entry's ``why``: the error names the file, variable, fragment and resolved path."""
    location = agg.unresolved.format(dataset=folder)
    assert not Path(location).exists()
    with xr.open_dataset(folder / agg.path, engine="padocc_cfa", **RAW) as ds:  # reads no fragment
        assert ds["p"].shape == (20, 180, 360)
        message = (
            f"{folder / agg.path}: aggregation variable 'p', fragment (0, 0, 0): no such file: '{location}'"
        )
        with pytest.raises(FragmentNotFoundError, match=re.escape(message)):
            ds["p"][0, 0, 0].values  # noqa: B018


@pytest.mark.parametrize("agg", AGGREGATIONS, ids=[a.path for a in AGGREGATIONS])
def test_remapped_values_equal_open_mfdataset(folder: Path, reference: xr.Dataset, agg: Aggregation) -> None:
    options = {"substitutions": agg.substitutions}
    with xr.open_dataset(folder / agg.path, engine="padocc_cfa", cfa_options=options, **RAW) as ds:
        assert dict(ds.sizes) == dict(reference.sizes)
        for name in ("time", "latitude", "longitude", "p"):
            actual, expected = ds[name].values, reference[name].values
            assert actual.dtype == expected.dtype, name
            np.testing.assert_array_equal(actual, expected, strict=True, err_msg=name)
        assert ds["p"].attrs["standard_name"] == "rain"
        # slices across fragment boundaries, and strided
        np.testing.assert_array_equal(
            ds["p"][1:17:3, 40:50, ::37].values, reference["p"][1:17:3, 40:50, ::37].values
        )
    with xr.open_dataset(folder / agg.path, engine="padocc_cfa", cfa_options=options, chunks={}, **RAW) as ds:
        assert ds["p"].chunks == ((2,) * 10, (180,), (360,))
        np.testing.assert_array_equal(
            ds["p"].values, reference["p"].values, strict=True
        )  # one task per fragment
