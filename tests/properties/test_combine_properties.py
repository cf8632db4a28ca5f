"""Properties of scan + combine + Kerchunk on random splits of a random dataset.

A dataset of 1..40 time steps, chunked by a random length along time, is split into
consecutive files holding whole chunks (the last may be partial) and written with
netCDF4-python. Whatever the order the files are given in, the product opened with
``xarray.open_dataset(engine="kerchunk")`` equals the dataset; a non-last file that is
not a whole number of chunks is always NotRepresentableError; a duplicated file is
always AggregationError.
"""

from __future__ import annotations

import itertools
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cftime
import netCDF4
import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from padocc_like.errors import AggregationError, NotRepresentableError
from padocc_like.references.combine import combine
from padocc_like.scanners.hdf5 import HDF5Scanner
from padocc_like.writers.kerchunk import aggregate_to_refs

SETTINGS = settings(
    max_examples=25,
    deadline=None,
    database=None,  # no example database on disk: each run is independent
    suppress_health_check=[HealthCheck.too_slow],
)
BASE_UNITS = "days since 2000-01-01"
CALENDAR = "360_day"
NLAT, NLON = 2, 3
MAX_FILES = 6


@dataclass
class Dataset:
    """A random dataset and how it is split into files."""

    chunk: int
    lengths: list[int]
    dtype: str
    per_file_units: bool
    step: int
    values: np.ndarray  # (time, lat, lon)

    @property
    def days(self) -> np.ndarray:
        return np.arange(sum(self.lengths)) * self.step + 0.5


@st.composite
def splits(draw: st.DrawFn, total: int, chunk: int) -> list[int]:
    """Consecutive file lengths summing to ``total``: whole chunks except the last file."""
    lengths: list[int] = []
    remaining = total
    while remaining > 0:
        if len(lengths) == MAX_FILES - 1:
            lengths.append(remaining)  # the last file takes the rest
            break
        k = draw(st.integers(1, math.ceil(remaining / chunk)))
        lengths.append(min(k * chunk, remaining))
        remaining -= lengths[-1]
    return lengths


@st.composite
def datasets(draw: st.DrawFn, min_chunk: int = 1) -> Dataset:
    total = draw(st.integers(max(1, min_chunk), 40))
    chunk = draw(st.integers(min_chunk, max(min_chunk, total)))
    lengths = draw(splits(total, chunk))
    dtype = draw(st.sampled_from(["f4", "i2", "f8"]))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    if dtype == "i2":
        values = rng.integers(-1000, 1000, (total, NLAT, NLON)).astype(dtype)
    else:
        values = rng.normal(280, 10, (total, NLAT, NLON)).astype(dtype)
        values[rng.random(values.shape) < 0.1] = np.nan
    return Dataset(
        chunk=chunk,
        lengths=lengths,
        dtype=dtype,
        per_file_units=draw(st.booleans()),
        step=draw(st.sampled_from([1, 30])),
        values=values,
    )


def write_files(ds: Dataset, directory: Path, lengths: list[int] | None = None) -> list[Path]:
    """One netCDF-4 file per block of ``lengths`` (default: the dataset's own split)."""
    lengths = ds.lengths if lengths is None else lengths
    paths = []
    start = 0
    days = np.arange(sum(lengths)) * ds.step + 0.5
    values = np.resize(ds.values, (sum(lengths), NLAT, NLON))
    for i, n in enumerate(lengths):
        path = directory / f"part{i:02d}.nc"
        block = slice(start, start + n)
        dates = cftime.num2date(days[block], BASE_UNITS, CALENDAR)
        units = BASE_UNITS
        if ds.per_file_units:
            first = dates[0]
            units = f"days since {first.year:04d}-{first.month:02d}-{first.day:02d}"
        times = cftime.date2num(dates, units, CALENDAR)
        with netCDF4.Dataset(path, "w") as nc:
            nc.createDimension("time", None)
            nc.createDimension("lat", NLAT)
            nc.createDimension("lon", NLON)
            nc.createDimension("bnds", 2)
            t = nc.createVariable("time", "f8", ("time",))
            t.units, t.calendar, t.bounds = units, CALENDAR, "time_bnds"
            t[:] = times
            tb = nc.createVariable("time_bnds", "f8", ("time", "bnds"))
            tb[:] = np.stack([times - 0.5, times + 0.5], axis=1)
            nc.createVariable("lat", "f8", ("lat",))[:] = np.arange(NLAT) * 10.0
            nc.createVariable("lon", "f8", ("lon",))[:] = np.arange(NLON) * 20.0
            fill = np.array(-999 if ds.dtype == "i2" else 1e20, dtype=ds.dtype)
            v = nc.createVariable(
                "x",
                ds.dtype,
                ("time", "lat", "lon"),
                zlib=True,
                shuffle=True,
                chunksizes=(ds.chunk, NLAT, NLON),
                fill_value=fill,
            )
            v.set_auto_maskandscale(False)
            v[:] = values[block]
        paths.append(path)
        start += n
    return paths


def combine_paths(paths: list[Path]):
    return combine([HDF5Scanner()(str(p)) for p in paths])


@SETTINGS
@given(ds=datasets(), data=st.data())
def test_any_order_gives_the_original_dataset(ds: Dataset, data: st.DataObject) -> None:
    """Files in any order combine into exactly the original values and times."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_files(ds, Path(tmp))
        order = data.draw(st.permutations(paths))
        agg = combine_paths(order)
        assert [f.url for f in agg.fragments] == [str(p) for p in paths]
        starts = np.cumsum([0, *ds.lengths])
        assert [f.ranges.get("time") for f in agg.fragments] == (
            [(int(a), int(b)) for a, b in itertools.pairwise(starts)] if len(paths) > 1 else [None]
        )
        refs = {"version": 1, "refs": aggregate_to_refs(agg)}
        with xr.open_dataset(
            refs,
            engine="kerchunk",
            storage_options={"remote_protocol": "file"},
            mask_and_scale=False,
            decode_times=False,
        ) as product:
            got = product["x"].values
            assert got.dtype == np.dtype(ds.dtype)
            assert got.tobytes() == ds.values.tobytes()  # bitwise, NaNs included
            units = product["time"].attrs["units"]
            assert product["time"].attrs["calendar"] == CALENDAR
            decoded = cftime.num2date(product["time"].values, units, CALENDAR)
            assert list(decoded) == list(cftime.num2date(ds.days, BASE_UNITS, CALENDAR))
            bounds = cftime.num2date(product["time_bnds"].values, units, CALENDAR)
            expected = np.stack([ds.days - 0.5, ds.days + 0.5], axis=1)
            assert np.array_equal(bounds, cftime.num2date(expected, BASE_UNITS, CALENDAR))


@SETTINGS
@given(ds=datasets(min_chunk=2), data=st.data())
def test_a_partial_chunk_before_the_last_file_is_not_representable(ds: Dataset, data: st.DataObject) -> None:
    """A file other than the last that is not a whole number of chunks always refuses."""
    lengths = list(ds.lengths)
    if len(lengths) == 1:
        lengths.append(data.draw(st.integers(1, 2 * ds.chunk)))
    i = data.draw(st.integers(0, len(lengths) - 2))
    lengths[i] = data.draw(st.integers(1, 3 * ds.chunk).filter(lambda n: n % ds.chunk != 0))
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_files(ds, Path(tmp), lengths)
        with pytest.raises(NotRepresentableError) as err:
            combine_paths(data.draw(st.permutations(paths)))
        assert f"multiple of {ds.chunk}" in str(err.value)
        assert str(paths[i]) in str(err.value)  # the first file, in time order, off the grid


@SETTINGS
@given(ds=datasets(), data=st.data())
def test_a_duplicated_file_is_always_refused(ds: Dataset, data: st.DataObject) -> None:
    """Any file given twice (same path or a copy) is an AggregationError naming it."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_files(ds, Path(tmp))
        original = data.draw(st.sampled_from(paths))
        dup = original
        if data.draw(st.booleans()):
            dup = Path(tmp) / "copy.nc"
            shutil.copy(original, dup)
        order = data.draw(st.permutations([*paths, dup]))
        with pytest.raises(AggregationError) as err:
            combine_paths(order)
        assert not isinstance(err.value, NotRepresentableError)
        assert str(dup) in str(err.value)
