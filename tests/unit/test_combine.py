"""Tests of the combiner on scans of generated netCDF-4 files.

Every successful combine is serialised with the Kerchunk writer and opened with
``xarray.open_dataset(engine="kerchunk")``; the product must equal the files read
directly and concatenated in coordinate order. Every refusal must name the files,
the variables and the values that disagree.
"""

from __future__ import annotations

import random
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cftime
import netCDF4
import numpy as np
import pytest
import xarray as xr

from padocc_like.errors import AggregationError, NotRepresentableError
from padocc_like.references.combine import CombineOptions, combine, read_variable_from_file
from padocc_like.references.model import Aggregate, FileScan
from padocc_like.scanners.hdf5 import HDF5Scanner
from padocc_like.writers.kerchunk import aggregate_to_refs

RAW = {"mask_and_scale": False, "decode_times": False}
LAT = np.array([-67.5, -22.5, 22.5, 67.5])
LON = np.array([0.0, 90.0, 180.0, 270.0, 315.0])
BASE_UNITS = "days since 2000-01-01"
DEFAULT_FILL = np.float32(1e20)


# --- helpers ------------------------------------------------------------------------------------


def write_nc(
    path: Path,
    start: int,
    n: int,
    *,
    units: str = BASE_UNITS,
    calendar: str = "standard",
    lat: np.ndarray = LAT,
    lon: np.ndarray = LON,
    chunk_time: int | None = None,
    chunk_lat: int | None = None,
    variables: Sequence[str] = ("tas",),
    dtype: str = "f4",
    fill_value: Any = DEFAULT_FILL,
    var_attrs: dict[str, Any] | None = None,
    orog_offset: float = 0.0,
) -> Path:
    """A CF file holding days ``start .. start+n-1`` (counted in BASE_UNITS) of ``variables``.

    ``time`` (unlimited, with ``time_bnds``), ``lat`` (with ``lat_bnds``), ``lon`` and a static
    ``orog(lat, lon)``; data values encode their absolute day, latitude and longitude, so any
    misplaced block shows. ``chunk_lat`` chunks ``orog`` and the data along lat (else one chunk).
    """
    days = start + np.arange(n, dtype="f8")
    tvals = cftime.date2num(cftime.num2date(days, BASE_UNITS, calendar), units, calendar)
    with netCDF4.Dataset(path, "w") as ds:
        ds.Conventions = "CF-1.8"
        ds.history = f"written for days {start}-{start + n - 1}"
        ds.createDimension("time", None)
        ds.createDimension("lat", len(lat))
        ds.createDimension("lon", len(lon))
        ds.createDimension("bnds", 2)
        t = ds.createVariable("time", "f8", ("time",))
        t.units, t.calendar, t.bounds, t.standard_name = units, calendar, "time_bnds", "time"
        t[:] = tvals
        tb = ds.createVariable("time_bnds", "f8", ("time", "bnds"))
        tb[:] = np.stack([tvals - 0.5, tvals + 0.5], axis=1)
        la = ds.createVariable("lat", "f8", ("lat",))
        la.units, la.bounds = "degrees_north", "lat_bnds"
        la[:] = lat
        lb = ds.createVariable("lat_bnds", "f8", ("lat", "bnds"))
        lb[:] = np.stack([lat - 1, lat + 1], axis=1)
        lo = ds.createVariable("lon", "f8", ("lon",))
        lo.units = "degrees_east"
        lo[:] = lon
        orog_chunks = {"chunksizes": (chunk_lat, len(lon))} if chunk_lat else {}
        orog = ds.createVariable("orog", "f4", ("lat", "lon"), **orog_chunks)
        orog.units = "m"
        orog[:] = lat[:, None] * 10 + lon[None, :] + orog_offset
        for name in variables:
            v = ds.createVariable(
                name,
                dtype,
                ("time", "lat", "lon"),
                zlib=True,
                shuffle=True,
                chunksizes=(chunk_time or max(n, 1), chunk_lat or len(lat), len(lon)),
                fill_value=fill_value,
            )
            v.units = "K"
            v.coordinates = "orog"
            for key, value in (var_attrs or {}).items():
                v.setncattr(key, value)
            values = days[:, None, None] * 1000 + lat[None, :, None] + lon[None, None, :] / 1000
            v[:] = values.astype(dtype)
    return path


def scan_all(paths: Sequence[Path]) -> list[FileScan]:
    return [HDF5Scanner()(str(p)) for p in paths]


def combine_files(paths: Sequence[Path], **options: Any) -> Aggregate:
    return combine(scan_all(paths), CombineOptions(**options))


def open_product(agg: Aggregate) -> xr.Dataset:
    return xr.open_dataset(
        {"version": 1, "refs": aggregate_to_refs(agg)},
        engine="kerchunk",
        storage_options={"remote_protocol": "file"},
        **RAW,
    )


def read_files(paths: Sequence[Path]) -> list[xr.Dataset]:
    out = []
    for p in paths:
        with xr.open_dataset(p, engine="netcdf4", **RAW) as ds:
            out.append(ds.load())
    return out


def concat_files(paths: Sequence[Path], dim: str = "time") -> xr.Dataset:
    """The files, read directly, concatenated along ``dim`` in the order given."""
    return xr.concat(
        read_files(paths),
        dim=dim,
        data_vars="minimal",
        coords="minimal",
        compat="override",
        join="exact",
        combine_attrs="override",
    )


def assert_product_equals(agg: Aggregate, expected: xr.Dataset) -> None:
    """Values, dimensions and variable attributes of the product equal ``expected``."""
    with open_product(agg) as got:
        got = got.load()
        assert set(got.variables) == set(expected.variables)
        assert dict(got.sizes) == dict(expected.sizes)
        for name in expected.variables:
            assert got[name].dims == expected[name].dims, name
            assert got[name].dtype == expected[name].dtype, name
            np.testing.assert_array_equal(got[name].values, expected[name].values, err_msg=name)
            assert got[name].attrs == expected[name].attrs, name


def shuffled(items: Sequence[Any], seed: int = 0) -> list[Any]:
    out = list(items)
    random.Random(seed).shuffle(out)
    if len(out) > 1 and out == list(items):
        out = out[::-1]
    return out


def names(paths: Sequence[Path]) -> list[str]:
    return [str(p) for p in paths]


# --- ordering along time ------------------------------------------------------------------------


def test_shuffled_files_come_out_in_time_order(archive: Any) -> None:
    """Files given in any order are placed by their decoded time, with fragments recording where
    each file sits; static variables (lat, lon, height, bounds) appear once."""
    paths = archive(n_files=4)
    agg = combine_files(shuffled(paths))
    assert agg.concat_dims == ("time",)
    assert agg.urls == names(paths)
    assert [f.url for f in agg.fragments] == names(paths)
    assert [f.ranges for f in agg.fragments] == [
        {"time": (0, 30)},
        {"time": (30, 60)},
        {"time": (60, 90)},
        {"time": (90, 120)},
    ]
    assert agg.dims["time"] == 120
    assert agg.variables["height"].shape == () and agg.variables["lat"].shape == (18,)
    assert_product_equals(agg, concat_files(paths))
    # the differing history attribute is reported, and the first file's value kept
    assert any("'history'" in note for note in agg.notes)
    with open_product(agg) as ds, netCDF4.Dataset(paths[0]) as first:
        assert ds.attrs["history"] == first.history


def test_per_file_time_units_are_re_encoded(archive: Any) -> None:
    """Files counting time from their own start ("days since <file start>") are re-encoded in the
    first file's units; decoded times and bounds equal the files'."""
    paths = archive(n_files=3, units_per_file=True, calendar="noleap")
    agg = combine_files(shuffled(paths, seed=3))
    assert [f.url for f in agg.fragments] == names(paths)
    with netCDF4.Dataset(paths[0]) as first:
        first_units = first["time"].units
    expected_times, expected_bounds = [], []
    for p in paths:
        with netCDF4.Dataset(p) as nc:
            units = nc["time"].units
            expected_times += list(cftime.num2date(nc["time"][:], units, "noleap"))
            expected_bounds.append(cftime.num2date(nc["time_bnds"][:], units, "noleap"))
    assert len({str(u) for u in expected_times}) == len(expected_times)
    with open_product(agg) as ds:
        assert ds["time"].attrs["units"] == first_units
        assert ds["time"].attrs["calendar"] == "noleap"
        got = cftime.num2date(ds["time"].values, first_units, "noleap")
        assert list(got) == expected_times
        bounds = cftime.num2date(
            ds["time_bnds"].values, ds["time_bnds"].attrs.get("units", first_units), "noleap"
        )
        assert np.array_equal(bounds, np.concatenate(expected_bounds))
        assert np.all(np.diff(ds["time"].values) > 0)
        raw = read_files(paths)
        np.testing.assert_array_equal(ds["tas"].values, np.concatenate([r["tas"].values for r in raw]))
    assert any("different time units" in note for note in agg.notes)


def test_mixed_time_units_hours_and_days(tmp_path: Path) -> None:
    """Different units *and* unit kinds ("hours since" a later date) still decode identically."""
    a = write_nc(tmp_path / "a.nc", 0, 10)
    b = write_nc(tmp_path / "b.nc", 10, 10, units="hours since 2000-01-11")
    agg = combine_files([b, a])
    assert [f.url for f in agg.fragments] == names([a, b])
    with open_product(agg) as ds:
        assert ds["time"].attrs["units"] == BASE_UNITS
        np.testing.assert_array_equal(ds["time"].values, np.arange(20.0))
        np.testing.assert_array_equal(ds["tas"].values[:, 0, 0], np.arange(20) * 1000 + LAT[0])


@pytest.mark.parametrize("dtype", ["i4", "u2", "f4"])
def test_per_file_units_keep_the_time_dtype(tmp_path: Path, dtype: str) -> None:
    """Whole-day times of an integer (or float32) coordinate re-encode exactly in that type."""
    paths = []
    for i, (month, n) in enumerate([(1, 31), (2, 28), (3, 31)]):
        path = tmp_path / f"m{i}.nc"
        with netCDF4.Dataset(path, "w") as ds:
            ds.createDimension("time", None)
            ds.createDimension("x", 2)
            t = ds.createVariable("time", dtype, ("time",))
            t.units, t.calendar = f"days since 2001-{month:02d}-01", "noleap"
            t[:] = np.arange(n)
            ds.createVariable("v", "f4", ("time", "x"), chunksizes=(1, 2))[:] = np.ones((n, 2)) * i
        paths.append(path)
    agg = combine_files(paths[::-1])
    with open_product(agg) as ds:
        assert ds["time"].dtype == np.dtype(dtype)
        assert ds["time"].attrs["units"] == "days since 2001-01-01"
        assert ds["time"].values.tolist() == list(range(90))
        assert ds["v"].values[:, 0].tolist() == [0] * 31 + [1] * 28 + [2] * 31


def test_overlapping_time_names_both_files(tmp_path: Path) -> None:
    """Files that share time steps are refused, naming both files."""
    a = write_nc(tmp_path / "a.nc", 0, 10)
    b = write_nc(tmp_path / "b.nc", 5, 10)
    with pytest.raises(AggregationError) as err:
        combine_files([b, a])
    msg = str(err.value)
    assert str(a) in msg and str(b) in msg and "overlap" in msg
    # the shared steps are named as dates, not as numbers in the files' units
    assert "time = 2000-01-06" in msg, msg


def _rewrite_time(path: Path, values: list[float]) -> None:
    with netCDF4.Dataset(path, "a") as ds:
        ds["time"][: len(values)] = np.asarray(values, dtype="f8")


@pytest.mark.parametrize(
    ("values", "ok"),
    [
        ([0, 1, 2, 3], True),
        ([3, 2, 1, 0], True),
        ([0, 2, 1, 3], False),
        ([0, 1, 1, 2], False),
        ([3, 2, 2, 1], False),
    ],
)
def test_time_within_a_file_must_be_strictly_monotonic(tmp_path: Path, values: list[float], ok: bool) -> None:
    """Order, repeats and direction inside one file, on the numeric (one-encoding) path."""
    a = write_nc(tmp_path / "a.nc", 0, 4)
    b = write_nc(tmp_path / "b.nc", 100, 4)
    _rewrite_time(a, values)
    _rewrite_time(b, [v + 100 if values[0] < values[-1] else 103 - (3 - v) for v in values])
    if ok:
        agg = combine_files([b, a])
        assert agg.dims["time"] == 8
    else:
        with pytest.raises(AggregationError, match="not strictly monotonic"):
            combine_files([b, a])


def test_time_values_that_cannot_be_dates_are_refused(tmp_path: Path) -> None:
    """The numeric path still proves the units readable: a NaN step is refused, naming the file."""
    a = write_nc(tmp_path / "a.nc", 0, 4)
    b = write_nc(tmp_path / "b.nc", 4, 4)
    _rewrite_time(b, [4, 5, float("nan"), 7])
    with pytest.raises(AggregationError, match=r"b\.nc"):
        combine_files([a, b])


def test_interleaved_time_names_both_files(tmp_path: Path) -> None:
    """A file whose steps fall inside another's span (no shared step) is refused too."""
    a = write_nc(tmp_path / "a.nc", 0, 10)  # days 0..9
    b = write_nc(tmp_path / "b.nc", 0, 3, units="days since 2000-01-05 12:00")  # days 4.5..6.5
    with pytest.raises(AggregationError) as err:
        combine_files([a, b])
    assert str(a) in str(err.value) and str(b) in str(err.value)


@pytest.mark.parametrize("how", ["same path twice", "copy under another name"])
def test_duplicate_files_name_both(tmp_path: Path, how: str) -> None:
    """The same data twice (one of several files) is an AggregationError naming both."""
    a = write_nc(tmp_path / "a.nc", 0, 10)
    b = write_nc(tmp_path / "b.nc", 10, 10)
    dup = b
    if how == "copy under another name":
        dup = tmp_path / "b_copy.nc"
        shutil.copy(b, dup)
    with pytest.raises(AggregationError) as err:
        combine_files([a, b, dup])
    assert not isinstance(err.value, NotRepresentableError)
    assert str(b) in str(err.value) and str(dup) in str(err.value)


def test_two_identical_files_are_refused(tmp_path: Path) -> None:
    a = write_nc(tmp_path / "a.nc", 0, 10)
    b = tmp_path / "b.nc"
    shutil.copy(a, b)
    with pytest.raises(AggregationError, match="identical coordinates") as err:
        combine_files([a, b])
    assert str(a) in str(err.value) and str(b) in str(err.value)


def test_gap_in_time_is_fine(tmp_path: Path) -> None:
    """A missing month between files is not an error: the product holds the steps that exist."""
    a = write_nc(tmp_path / "a.nc", 0, 10)
    b = write_nc(tmp_path / "b.nc", 40, 10)
    agg = combine_files([b, a])
    assert [f.ranges["time"] for f in agg.fragments] == [(0, 10), (10, 20)]
    assert_product_equals(agg, concat_files([a, b]))
    with open_product(agg) as ds:
        assert ds["time"].values.tolist() == [*range(10), *range(40, 50)]


# --- consistency between files ------------------------------------------------------------------


def test_different_variable_sets(tmp_path: Path) -> None:
    """Files holding different variables are refused, naming the file and the variables."""
    a = write_nc(tmp_path / "a.nc", 0, 10, variables=("tas", "pr"))
    b = write_nc(tmp_path / "b.nc", 10, 10, variables=("tas",))
    c = write_nc(tmp_path / "c.nc", 20, 10, variables=("tas", "pr", "huss"))
    with pytest.raises(AggregationError) as err:
        combine_files([a, b])
    assert str(b) in str(err.value) and "'pr'" in str(err.value) and "lacks" in str(err.value)
    with pytest.raises(AggregationError) as err:
        combine_files([a, c])
    assert str(c) in str(err.value) and "'huss'" in str(err.value)
    # selecting the common variables makes them combinable
    agg = combine_files([c, a, b], keep_variables=("tas",))
    assert "pr" not in agg.variables and "huss" not in agg.variables
    assert agg.dims["time"] == 30


@pytest.mark.parametrize(
    ("kwargs", "what", "values"),
    [
        ({"var_attrs": {"scale_factor": 0.5}}, "scale_factor", ["0.5", "0.25"]),
        ({"var_attrs": {"add_offset": 273.15}}, "add_offset", ["273.15", "absent"]),
        ({"fill_value": np.float32(-999)}, "_FillValue", ["-999", "e+20"]),
        ({"var_attrs": {"units": "degC"}}, "units", ["'degC'", "'K'"]),
        ({"dtype": "f8", "fill_value": 1e20}, "data type", ["<f8", "<f4"]),
        ({"var_attrs": {"missing_value": np.float32(-1)}}, "missing_value", ["-1.0", "absent"]),
    ],
)
def test_packing_differences_are_refused(
    tmp_path: Path, kwargs: dict[str, Any], what: str, values: list[str]
) -> None:
    """Differing scale_factor, add_offset, _FillValue, units or dtype: one product cannot decode
    both files; the error names the variable and both values."""
    base: dict[str, Any] = {}
    if what == "scale_factor":
        base = {"var_attrs": {"scale_factor": 0.25}}
    a = write_nc(tmp_path / "a.nc", 0, 10, **base)
    b = write_nc(tmp_path / "b.nc", 10, 10, **kwargs)
    with pytest.raises(AggregationError) as err:
        combine_files([b, a])
    msg = str(err.value)
    assert "'tas'" in msg and what in msg, msg
    assert str(a) in msg and str(b) in msg
    for value in values:
        assert value in msg, (value, msg)


def test_chunk_shape_differs_along_time(tmp_path: Path) -> None:
    """Different chunk shapes cannot share one chunk table: NotRepresentableError saying so."""
    a = write_nc(tmp_path / "a.nc", 0, 10, chunk_time=5)
    b = write_nc(tmp_path / "b.nc", 10, 10, chunk_time=10)
    with pytest.raises(NotRepresentableError) as err:
        combine_files([a, b])
    msg = str(err.value)
    assert "'tas'" in msg and "chunk" in msg and str(a) in msg and str(b) in msg
    assert "(5, 4, 5)" in msg and "(10, 4, 5)" in msg


def test_uneven_file_lengths_are_not_a_whole_number_of_chunks(tmp_path: Path) -> None:
    """30, 30, 31, 30 steps chunked by 30: the third file breaks the regular chunk grid."""
    paths = []
    start = 0
    for i, n in enumerate([30, 30, 31, 30]):
        paths.append(write_nc(tmp_path / f"f{i}.nc", start, n, chunk_time=30))
        start += n
    with pytest.raises(NotRepresentableError) as err:
        combine_files(shuffled(paths))
    msg = str(err.value)
    assert str(paths[2]) in msg and "'tas'" in msg
    assert "31" in msg and "whole number of chunks" in msg and "multiple of 30" in msg


def test_uneven_last_file_is_fine(tmp_path: Path) -> None:
    """Only the last file may hold a partial chunk (30, 30, 30, 17 steps by 30)."""
    paths = []
    start = 0
    for i, n in enumerate([30, 30, 30, 17]):
        paths.append(write_nc(tmp_path / f"f{i}.nc", start, n, chunk_time=30))
        start += n
    agg = combine_files(shuffled(paths))
    assert agg.variables["tas"].chunks == (30, 4, 5) and agg.variables["tas"].shape == (107, 4, 5)
    assert_product_equals(agg, concat_files(paths))


def test_uneven_lengths_with_one_step_chunks(tmp_path: Path) -> None:
    """With one step per chunk any file lengths tile the grid."""
    paths = []
    start = 0
    for i, n in enumerate([31, 28, 31, 30]):
        paths.append(write_nc(tmp_path / f"f{i}.nc", start, n, chunk_time=1))
        start += n
    agg = combine_files(shuffled(paths))
    assert_product_equals(agg, concat_files(paths))


def test_static_variables_that_differ_are_refused(tmp_path: Path) -> None:
    """A variable without the concatenation dimension must be identical in every file."""
    a = write_nc(tmp_path / "a.nc", 0, 10)
    b = write_nc(tmp_path / "b.nc", 10, 10, orog_offset=1.0)
    with pytest.raises(AggregationError) as err:
        combine_files([a, b])
    msg = str(err.value)
    assert "'orog'" in msg and str(a) in msg and str(b) in msg and "differ" in msg

    c = write_nc(tmp_path / "c.nc", 20, 10, lat=LAT + 0.5)
    with pytest.raises(AggregationError) as err:
        combine_files([a, c], concat_dims=("time",))
    msg = str(err.value)
    assert "'lat'" in msg and str(a) in msg and str(c) in msg


def test_static_variable_identical_appears_once(tmp_path: Path) -> None:
    """Identical static variables are referenced once, from the first file, unchanged."""
    a = write_nc(tmp_path / "a.nc", 0, 10)
    b = write_nc(tmp_path / "b.nc", 10, 10)
    agg = combine_files([b, a])
    for name in ("orog", "lat", "lon", "lat_bnds"):
        var = agg.variables[name]
        assert "time" not in var.dims
        assert set(var.url_index[var.url_index >= 0].tolist()) <= {agg.urls.index(str(a))}
    assert agg.variables["orog"].shape == (4, 5)
    assert_product_equals(agg, concat_files([a, b]))


def test_static_variables_equal_in_stored_bytes_are_not_decoded(tmp_path: Path) -> None:
    """Identical stored bytes under the same encoding prove identity without decoding."""
    a = write_nc(tmp_path / "a.nc", 0, 10)
    b = write_nc(tmp_path / "b.nc", 10, 10)

    def no_decoding(var: Any, url: str) -> np.ndarray:
        if var.name in ("time", "time_bnds"):  # materialised along time: read, as always
            return read_variable_from_file(var, url)
        raise AssertionError(f"decoded {var.name} of {url}")

    agg = combine(scan_all([a, b]), read_variable=no_decoding)
    assert "time" not in agg.variables["orog"].dims


def test_static_variables_stored_differently_are_compared_by_value(tmp_path: Path) -> None:
    """Equal values stored with another chunking still count as identical; different values do not."""
    a = write_nc(tmp_path / "a.nc", 0, 10, variables=())
    b = write_nc(tmp_path / "b.nc", 10, 10, variables=(), chunk_lat=2)
    assert scan_all([a])[0].variables["orog"].chunks != scan_all([b])[0].variables["orog"].chunks
    agg = combine_files([a, b])
    assert_product_equals(agg, concat_files([a, b]))
    c = write_nc(tmp_path / "c.nc", 20, 10, variables=(), chunk_lat=2, orog_offset=0.5)
    with pytest.raises(AggregationError, match="'orog'"):
        combine_files([a, c])


# --- selection and concatenation dims ----------------------------------------------------------


def test_keep_variables_keeps_coordinates_and_bounds(tmp_path: Path) -> None:
    """Keeping a variable keeps its coordinates, the variables it names and their bounds."""
    paths = [write_nc(tmp_path / f"f{i}.nc", 10 * i, 10, variables=("tas", "pr")) for i in range(2)]
    agg = combine_files(paths, keep_variables=("tas",))
    assert set(agg.variables) == {"tas", "time", "time_bnds", "lat", "lat_bnds", "lon", "orog"}
    expected = concat_files(paths).drop_vars("pr")
    assert_product_equals(agg, expected)

    agg = combine_files(paths, keep_variables=("lat",))
    assert set(agg.variables) == {"lat", "lat_bnds"}


def test_drop_variables(tmp_path: Path) -> None:
    paths = [write_nc(tmp_path / f"f{i}.nc", 10 * i, 10, variables=("tas", "pr")) for i in range(2)]
    agg = combine_files(paths, drop_variables=("pr", "orog"))
    assert "pr" not in agg.variables and "orog" not in agg.variables and "tas" in agg.variables
    assert_product_equals(agg, concat_files(paths).drop_vars(["pr", "orog"]))


def test_dropping_the_time_coordinate_keeps_time_order(tmp_path: Path) -> None:
    """Files are ordered by their coordinate values even when the coordinate itself is dropped
    from the product, never by the order they were listed in."""
    paths = [write_nc(tmp_path / f"f{i}.nc", 10 * i, 10) for i in range(3)]
    agg = combine_files(paths[::-1], drop_variables=("time", "time_bnds"))
    assert [f.url for f in agg.fragments] == names(paths)
    assert_product_equals(agg, concat_files(paths).drop_vars(["time", "time_bnds"]))


def test_unknown_keep_or_drop_variable_is_named(tmp_path: Path) -> None:
    a = write_nc(tmp_path / "a.nc", 0, 10)
    for option in ({"keep_variables": ("nope",)}, {"drop_variables": ("nope",)}):
        with pytest.raises(AggregationError) as err:
            combine_files([a], **option)
        assert "'nope'" in str(err.value) and str(a) in str(err.value)


def test_explicit_concat_dims(tmp_path: Path) -> None:
    """concat_dims given explicitly are used as given (here the one inferred too)."""
    paths = [write_nc(tmp_path / f"f{i}.nc", 10 * i, 10) for i in range(3)]
    agg = combine_files(shuffled(paths), concat_dims=("time",))
    assert agg.concat_dims == ("time",)
    assert_product_equals(agg, concat_files(paths))
    with pytest.raises(AggregationError, match="no dimension 'level'"):
        combine_files(paths, concat_dims=("level",))


def test_single_file_has_no_concat_dims(tmp_path: Path) -> None:
    """One file: nothing to concatenate; the product is the file."""
    a = write_nc(tmp_path / "a.nc", 0, 10, chunk_time=3)
    agg = combine_files([a])
    assert agg.concat_dims == () and agg.urls == [str(a)]
    assert agg.fragments[0].url == str(a) and agg.fragments[0].ranges == {}
    assert_product_equals(agg, read_files([a])[0])


def test_calendars_must_agree(tmp_path: Path) -> None:
    a = write_nc(tmp_path / "a.nc", 0, 10, calendar="360_day")
    b = write_nc(tmp_path / "b.nc", 10, 10, calendar="noleap")
    with pytest.raises(AggregationError, match="calendars"):
        combine_files([a, b])


# --- several concatenation dimensions and descending coordinates --------------------------------


def test_two_by_two_tiling_matches_combine_by_coords(tmp_path: Path) -> None:
    """Files split along time and lat (2 x 2) combine into one grid, as xarray's
    combine_by_coords does; latitude bounds and orog come from one file per lat block."""
    paths = []
    for ti, start in enumerate([0, 6]):
        for li, lat in enumerate([LAT[:2], LAT[2:]]):
            paths.append(write_nc(tmp_path / f"t{ti}_l{li}.nc", start, 6, lat=lat, chunk_time=3))
    agg = combine_files(shuffled(paths, seed=5))
    assert set(agg.concat_dims) == {"time", "lat"}
    ranges = {Path(f.url).name: f.ranges for f in agg.fragments}
    assert ranges["t0_l0.nc"] == {"time": (0, 6), "lat": (0, 2)}
    assert ranges["t1_l1.nc"] == {"time": (6, 12), "lat": (2, 4)}
    expected = xr.combine_by_coords(
        read_files(paths),
        data_vars="minimal",
        coords="minimal",
        compat="override",
        join="exact",
        combine_attrs="override",
    )
    assert_product_equals(agg, expected)
    with open_product(agg) as ds:
        assert ds["lat"].values.tolist() == LAT.tolist()
        np.testing.assert_array_equal(ds["orog"].values, LAT[:, None] * 10 + LON[None, :])


def test_tiles_disagreeing_on_a_variable_without_time_are_refused(tmp_path: Path) -> None:
    """In a time x lat tiling, orog(lat, lon) is taken once per lat block: the files of a block
    must agree on it, else the error names the variable and both files."""
    paths = []
    for ti, start in enumerate([0, 6]):
        for li, lat in enumerate([LAT[:2], LAT[2:]]):
            offset = 1.0 if (ti, li) == (1, 1) else 0.0
            paths.append(write_nc(tmp_path / f"t{ti}_l{li}.nc", start, 6, lat=lat, orog_offset=offset))
    with pytest.raises(AggregationError) as err:
        combine_files(paths)
    msg = str(err.value)
    assert "'orog'" in msg and str(paths[1]) in msg and str(paths[3]) in msg


def test_incomplete_tiling_is_refused(tmp_path: Path) -> None:
    """Three files of a 2 x 2 grid leave a hole: refused, saying which block is missing."""
    paths = []
    for ti, start in enumerate([0, 6]):
        for li, lat in enumerate([LAT[:2], LAT[2:]]):
            paths.append(write_nc(tmp_path / f"t{ti}_l{li}.nc", start, 6, lat=lat))
    with pytest.raises(AggregationError, match="do not tile"):
        combine_files(paths[:3])


def test_descending_latitude_split_into_files(tmp_path: Path) -> None:
    """North-to-south latitudes split across files (1, 2 and 1 rows, chunked by row) stay
    north-to-south in the product."""
    lat = LAT[::-1]
    paths = [
        write_nc(tmp_path / "north.nc", 0, 4, lat=lat[:1], chunk_lat=1),
        write_nc(tmp_path / "mid.nc", 0, 4, lat=lat[1:3], chunk_lat=1),
        write_nc(tmp_path / "south.nc", 0, 4, lat=lat[3:], chunk_lat=1),
    ]
    agg = combine_files(shuffled(paths, seed=1))
    assert agg.concat_dims == ("lat",)
    assert [Path(f.url).name for f in agg.fragments] == ["north.nc", "mid.nc", "south.nc"]
    assert [f.ranges["lat"] for f in agg.fragments] == [(0, 1), (1, 3), (3, 4)]
    assert_product_equals(agg, concat_files(paths, dim="lat"))
    with open_product(agg) as ds:
        assert ds["lat"].values.tolist() == lat.tolist()


@pytest.mark.parametrize("first_single", [False, True])
def test_latitude_files_in_opposite_directions_are_refused(tmp_path: Path, first_single: bool) -> None:
    """One file south-to-north and another north-to-south cannot make a monotonic coordinate,
    whichever file is listed first (even a one-step file, whose direction is unknown)."""
    up = write_nc(tmp_path / "up.nc", 0, 4, lat=np.array([-60.0, -30.0]), chunk_lat=1)
    down = write_nc(tmp_path / "down.nc", 0, 4, lat=np.array([60.0, 30.0]), chunk_lat=1)
    paths = [up, down]
    if first_single:
        paths = [write_nc(tmp_path / "single.nc", 0, 4, lat=np.array([0.0]), chunk_lat=1), *paths]
    with pytest.raises(AggregationError) as err:
        combine_files(paths)
    assert "'lat'" in str(err.value)
    assert re.search(r"(up|down)\.nc", str(err.value))
