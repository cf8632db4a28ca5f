"""``combine(..., CombineOptions(fragments=True))``: variables along the concatenation dims held
as whole-file fragments (for CF aggregations), on scans of generated netCDF-4 files.

Every fragmented variable must place each file where its coordinate values put it; what
Kerchunk refuses (uneven lengths, differing chunk shapes and codecs) is fine, and every other
disagreement is refused with the same errors as for Kerchunk.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import pytest
from test_combine import LAT, LON, combine_files, names, shuffled, write_nc

from padocc_like.errors import AggregationError, NotRepresentableError
from padocc_like.references.model import AggVariable, FragmentedVariable

MONTHS = [31, 28, 31, 30]


def monthly(directory: Path, lengths: list[int] = MONTHS, **kw: Any) -> list[Path]:
    """Consecutive files of these lengths (days) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    paths, start = [], 0
    for i, n in enumerate(lengths):
        paths.append(write_nc(directory / f"m{i:02d}.nc", start, n, **kw))
        start += n
    return paths


def recompress(path: Path, **create: Any) -> Path:
    """Rewrite ``tas`` of ``path`` in place with other netCDF4 storage options (same values)."""
    tmp = path.with_suffix(".tmp")
    with netCDF4.Dataset(path) as src, netCDF4.Dataset(tmp, "w") as dst:
        src.set_auto_maskandscale(False)
        dst.set_auto_maskandscale(False)
        dst.setncatts(src.__dict__)
        for d in src.dimensions.values():
            dst.createDimension(d.name, None if d.isunlimited() else len(d))
        for v in src.variables.values():
            fill = v.__dict__.get("_FillValue")
            kw = create if v.name == "tas" else {}
            out = dst.createVariable(v.name, v.dtype, v.dimensions, fill_value=fill, **kw)
            out.setncatts({k: a for k, a in v.__dict__.items() if k != "_FillValue"})
            out[:] = v[:]
    tmp.replace(path)
    return path


def test_uneven_months_become_one_fragment_per_file(tmp_path: Path) -> None:
    """31, 28, 31, 30 days chunked by 7: Kerchunk refuses, fragments place each month by its
    time values (files given shuffled); coordinates and static fields stay chunk tables."""
    paths = monthly(tmp_path, chunk_time=7)
    with pytest.raises(NotRepresentableError, match="whole number of chunks"):
        combine_files(shuffled(paths))
    agg = combine_files(shuffled(paths), fragments=True)
    tas = agg.variables["tas"]
    assert isinstance(tas, FragmentedVariable)
    assert tas.dims == ("time", "lat", "lon") and tas.shape == (120, 4, 5)
    assert tas.sizes == ((31, 28, 31, 30), (4,), (5,))
    assert tas.grid == (4, 1, 1) and tas.uris.shape == (4, 1, 1)
    assert tas.uris.reshape(-1).tolist() == names(paths)
    assert tas.identifiers == "tas" and tas.identifier((2, 0, 0)) == "tas"
    assert tas.dtype == "<f4" and tas.fill_value == pytest.approx(1e20)
    assert tas.attrs == {"units": "K", "coordinates": "orog"}
    for name in ("time", "time_bnds", "lat", "lat_bnds", "lon", "orog"):
        assert isinstance(agg.variables[name], AggVariable), name
    assert agg.variables["time"].shape == (120,)
    assert [f.ranges["time"] for f in agg.fragments] == [(0, 31), (31, 59), (59, 90), (90, 120)]
    assert agg.n_fragments() == 4
    # n_refs counts the fragments of fragmented variables with the others' chunks
    others = sum(v.n_refs() for n, v in agg.variables.items() if n != "tas")
    assert agg.n_refs() == others + 4
    # the aggregate survives the scan -> compute cache (a pickle)
    back = pickle.loads(pickle.dumps(agg, protocol=5))
    assert back.variables["tas"].uris.tolist() == tas.uris.tolist()
    assert back.variables["tas"].sizes == tas.sizes


def test_differing_chunk_shapes_and_codecs_are_fine(tmp_path: Path) -> None:
    """Files chunked and compressed differently (one uncompressed) are each one fragment."""
    a = write_nc(tmp_path / "a.nc", 0, 10, chunk_time=5)
    b = recompress(write_nc(tmp_path / "b.nc", 10, 10), chunksizes=(10, 2, 5))
    c = recompress(write_nc(tmp_path / "c.nc", 20, 10), chunksizes=(3, 4, 5))
    with pytest.raises(NotRepresentableError) as err:
        combine_files([c, b, a])
    assert "chunking" in str(err.value) and "compression" in str(err.value)
    agg = combine_files([c, b, a], fragments=True)
    tas = agg.variables["tas"]
    assert isinstance(tas, FragmentedVariable)
    assert tas.sizes == ((10, 10, 10), (4,), (5,))
    assert tas.uris.reshape(-1).tolist() == [str(a), str(b), str(c)]


def test_split_along_time_lat_and_lon(tmp_path: Path) -> None:
    """A 2 x 2 x 2 split: fragments along every dimension, unequal along lon; orog(lat, lon),
    held by the two files of each (lat, lon) block, is one fragment per block."""
    paths = {}
    for ti, start in enumerate([0, 6]):
        for li, lat in enumerate([LAT[:2], LAT[2:]]):
            for oi, lon in enumerate([LON[:2], LON[2:]]):
                name = f"t{ti}_la{li}_lo{oi}.nc"
                paths[(ti, li, oi)] = write_nc(tmp_path / name, start, 6, lat=lat, lon=lon, chunk_time=4)
    agg = combine_files(shuffled(list(paths.values()), seed=3), fragments=True)
    assert set(agg.concat_dims) == {"time", "lat", "lon"}
    tas = agg.variables["tas"]
    assert isinstance(tas, FragmentedVariable)
    assert tas.sizes == ((6, 6), (2, 2), (2, 3))
    for index, path in paths.items():
        assert tas.uris[index] == str(path), index
    orog = agg.variables["orog"]
    assert isinstance(orog, FragmentedVariable)
    assert orog.dims == ("lat", "lon") and orog.sizes == ((2, 2), (2, 3))
    for (ti, li, oi), path in paths.items():
        if ti == 0:  # the first file of each (lat, lon) block holds it
            assert orog.uris[li, oi] == str(path)
    assert agg.n_fragments() == 8 + 4


def test_files_disagreeing_on_a_block_are_refused(tmp_path: Path) -> None:
    """Split along time and lon, orog(lat, lon) is one fragment per lon block: the other file
    of that block must hold the same values, else the error names the variable and both."""
    first = write_nc(tmp_path / "early_west.nc", 0, 4, lon=LON[:3])
    write_nc(tmp_path / "early_east.nc", 0, 4, lon=LON[3:])
    write_nc(tmp_path / "late_west.nc", 4, 4, lon=LON[:3])
    odd = write_nc(tmp_path / "late_east.nc", 4, 4, lon=LON[3:], orog_offset=0.5)
    paths = sorted(tmp_path.glob("*.nc"))
    assert combine_files(paths, fragments=True, drop_variables=("orog",)).n_fragments() == 4
    with pytest.raises(AggregationError) as err:
        combine_files(paths, fragments=True)
    msg = str(err.value)
    assert "'orog'" in msg and str(tmp_path / "early_east.nc") in msg and str(odd) in msg
    assert str(first) not in msg


def test_dtype_must_still_agree(tmp_path: Path) -> None:
    a = write_nc(tmp_path / "a.nc", 0, 10)
    b = write_nc(tmp_path / "b.nc", 10, 10, dtype="f8", fill_value=1e20)
    with pytest.raises(AggregationError) as err:
        combine_files([b, a], fragments=True)
    msg = str(err.value)
    assert not isinstance(err.value, NotRepresentableError)
    assert "'tas'" in msg and "data type" in msg and str(a) in msg and str(b) in msg


def test_other_dimensions_must_have_equal_lengths(tmp_path: Path) -> None:
    """Concatenated along time only, a file with fewer longitudes is refused, naming both."""
    a = write_nc(tmp_path / "a.nc", 0, 10)
    b = write_nc(tmp_path / "b.nc", 10, 10, lon=LON[:4])
    with pytest.raises(AggregationError) as err:
        combine_files([a, b], fragments=True, concat_dims=("time",), drop_variables=("lon", "orog"))
    msg = str(err.value)
    assert "'tas'" in msg and "'lon'" in msg and "length 4" in msg and str(a) in msg and str(b) in msg


def test_overlaps_are_still_refused(tmp_path: Path) -> None:
    a = write_nc(tmp_path / "a.nc", 0, 10)
    b = write_nc(tmp_path / "b.nc", 5, 10)
    with pytest.raises(AggregationError, match="overlapping 'time'") as err:
        combine_files([a, b], fragments=True)
    assert str(a) in str(err.value) and str(b) in str(err.value)


def test_fragmented_variable_checks_its_map() -> None:
    uris = np.array([["a.nc"], ["b.nc"]], dtype=object)
    kw: dict[str, Any] = {
        "name": "tas",
        "dims": ("time", "lat"),
        "dtype": "<f4",
        "fill_value": None,
        "attrs": {},
        "uris": uris,
        "identifiers": "tas",
    }
    var = FragmentedVariable(shape=(5, 3), sizes=((2, 3), (3,)), **kw)
    assert var.n_refs() == 2 and var.grid == (2, 1)
    with pytest.raises(ValueError, match="do not tile length 6"):
        FragmentedVariable(shape=(6, 3), sizes=((2, 3), (3,)), **kw)
    with pytest.raises(ValueError, match="array of fragments"):
        FragmentedVariable(shape=(5, 3), sizes=((5,), (3,)), **kw)
    with pytest.raises(ValueError, match="identifiers"):
        FragmentedVariable(shape=(5, 3), sizes=((2, 3), (3,)), **{**kw, "identifiers": ["tas"]})
