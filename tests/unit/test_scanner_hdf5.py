"""Tests of the HDF5/netCDF-4 scanner: every file is read back through Kerchunk references.

Each case writes a file with netCDF4-python or h5py, scans it, wraps the scan into a
one-file aggregate, serialises it with the Kerchunk writer and opens the references
with ``xarray.open_dataset(engine="kerchunk")``. The values (bitwise, NaNs included),
dimensions and attributes must equal what netCDF4-python / xarray (or h5py for plain
HDF5) read from the file itself.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import h5py
import netCDF4
import numpy as np
import pytest
import xarray as xr
from test_scanners_hdf5_native import compare_backends

from padocc_like.errors import ScanError, UnsupportedFeatureError
from padocc_like.references.combine import combine
from padocc_like.references.model import MISSING, FileScan
from padocc_like.scanners.base import HDF5_SIGNATURE, scanner_for
from padocc_like.scanners.hdf5 import HDF5Scanner
from padocc_like.writers.kerchunk import aggregate_to_refs

RAW = {"mask_and_scale": False, "decode_times": False}
THRESHOLDS = [0, 10**7]
"""``inline_threshold`` 0 (every stored chunk is a byte range) and huge (every chunk inline)."""


# --- helpers ------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def native_reader_agrees(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file these tests scan is also scanned by each backend alone: the native reader gives
    exactly the h5py backend's scan, or declines (``compare_backends``)."""
    scan = HDF5Scanner.__call__

    def checked(self: HDF5Scanner, path: str) -> FileScan:
        compare_backends(path, self.inline_threshold)
        return scan(self, path)

    monkeypatch.setattr(HDF5Scanner, "__call__", checked)


def refs_of(scan: FileScan) -> dict[str, Any]:
    """The Kerchunk v1 product of one scanned file."""
    return {"version": 1, "refs": aggregate_to_refs(combine([scan]))}


def open_refs(scan: FileScan) -> xr.Dataset:
    return xr.open_dataset(
        refs_of(scan), engine="kerchunk", storage_options={"remote_protocol": "file"}, **RAW
    )


def same_bits(got: np.ndarray, expected: np.ndarray) -> bool:
    """Bitwise equality of values (NaN payloads included), independent of byte order."""
    expected = np.asarray(expected)
    got = np.asarray(got)
    if got.shape != expected.shape:
        return False
    native = expected.dtype.newbyteorder("=")
    return (
        np.ascontiguousarray(got.astype(native)).tobytes()
        == np.ascontiguousarray(expected.astype(native)).tobytes()
    )


def check_scan_json(scan: FileScan) -> None:
    """The scan is JSON-safe and survives the scan cache round trip unchanged."""
    text = json.dumps(scan.to_dict(), allow_nan=False)
    again = FileScan.from_dict(json.loads(text))
    assert json.dumps(again.to_dict(), allow_nan=False) == text


def roundtrip_netcdf4(path: Path, **scanner_kw: Any) -> FileScan:
    """Scan a netCDF-4 file; the Kerchunk product reads exactly like the file itself."""
    scan = HDF5Scanner(**scanner_kw)(str(path))
    assert scan.url == str(path)
    assert scan.format == "netcdf4"
    check_scan_json(scan)
    with netCDF4.Dataset(path) as nc:
        assert scan.dims == {k: len(d) for k, d in nc.dimensions.items()}
        assert set(scan.unlimited) == {k for k, d in nc.dimensions.items() if d.isunlimited()}
        assert set(scan.variables) == set(nc.variables)
        with open_refs(scan) as via_refs:
            via_refs.load()
            for name, ncvar in nc.variables.items():
                ncvar.set_auto_maskandscale(False)
                ncvar.set_auto_chartostring(False)
                expected = np.asarray(ncvar[...])
                var = scan.variables[name]
                assert var.dims == ncvar.dimensions, name
                assert var.shape == expected.shape, name
                assert "_FillValue" not in var.attrs
                got = via_refs[name].values if ncvar.dtype.kind != "S" else None
                if got is not None:
                    assert same_bits(got, expected), name
        with (
            open_refs(scan) as via_refs,
            xr.open_dataset(path, engine="netcdf4", **RAW) as direct,
        ):
            xr.testing.assert_identical(via_refs.load(), direct.load())
    return scan


def roundtrip_hdf5(path: Path, **scanner_kw: Any) -> FileScan:
    """Scan a plain HDF5 file; the product's values equal h5py's, bit for bit."""
    scan = HDF5Scanner(**scanner_kw)(str(path))
    assert scan.format == "hdf5"
    check_scan_json(scan)
    with h5py.File(path, "r") as f, open_refs(scan) as via_refs:
        assert set(scan.variables) == set(f)
        for name, ds in f.items():
            expected = ds[()]
            got = via_refs[name].values
            assert got.dtype == expected.dtype.newbyteorder("="), name
            assert same_bits(got, expected), name
    return scan


def compact_dcpl() -> Any:
    """A dataset creation property list with the compact layout (data in the object header)."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_layout(h5py.h5d.COMPACT)
    return dcpl


def data(shape: tuple[int, ...], dtype: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.normal(0, 100, shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -1000), min(info.max, 1000), shape, endpoint=True).astype(dtype)


# --- layouts and codecs -------------------------------------------------------------------------


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_chunked_shuffle_zlib(tmp_path: Path, threshold: int) -> None:
    """Chunked, shuffled, deflated variables of several types (and a big-endian one) read exactly,
    with partial edge chunks, whether chunks are byte ranges or inline."""
    path = tmp_path / "chunked.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("time", None)
        ds.createDimension("lat", 7)
        ds.createDimension("lon", 10)
        t = ds.createVariable("time", "f8", ("time",))
        t.units = "days since 2000-01-01"
        t[:] = np.arange(9) + 0.5
        for code in ("f4", "f8", "i2", "i4", "u1", "i8"):
            v = ds.createVariable(
                f"v_{code}",
                code,
                ("time", "lat", "lon"),
                zlib=True,
                shuffle=True,
                complevel=6,
                chunksizes=(4, 3, 10),
            )
            v[:] = data((9, 7, 10), code, seed=len(code))
        big = ds.createVariable("big", ">f4", ("lat", "lon"), zlib=True, shuffle=True, endian="big")
        big[:] = data((7, 10), "f4")
        with_nan = ds.createVariable("with_nan", "f4", ("lat", "lon"), zlib=True, fill_value=np.nan)
        values = data((7, 10), "f4")
        values[2, 3] = np.nan
        with_nan[:] = values
    scan = roundtrip_netcdf4(path, inline_threshold=threshold)
    var = scan.variables["v_f4"]
    assert var.chunks == (4, 3, 10) and var.grid == (3, 3, 1)
    assert var.filters == [{"id": "shuffle", "elementsize": 4}, {"id": "zlib", "level": 6}]
    assert scan.variables["v_i8"].filters[0] == {"id": "shuffle", "elementsize": 8}
    assert scan.variables["big"].dtype == ">f4"
    assert scan.variables["with_nan"].fill_value == "NaN"
    assert var.storage == "chunked"
    if threshold == 0:
        assert not var.inline and np.all(var.offsets >= 0) and np.all(var.lengths > 0)
    else:
        assert len(var.inline) == 9 and np.all(var.offsets == MISSING)


def test_netcdf4_classic_model(tmp_path: Path) -> None:
    """NETCDF4_CLASSIC files scan like netCDF-4 ones; the classic-model marker is not an attribute."""
    path = tmp_path / "classic.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF4_CLASSIC") as ds:
        ds.title = "classic model"
        ds.createDimension("time", None)
        ds.createDimension("x", 5)
        t = ds.createVariable("time", "f8", ("time",))
        t[:] = np.arange(4.0)
        v = ds.createVariable("v", "i2", ("time", "x"), zlib=True, fill_value=np.int16(-1))
        v[:] = data((4, 5), "i2")
    scan = roundtrip_netcdf4(path)
    assert scan.attrs == {"title": "classic model"}
    assert scan.variables["v"].fill_value == -1


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_contiguous(tmp_path: Path, threshold: int) -> None:
    """Contiguous variables are one chunk at the dataset's byte offset; an unwritten one reads
    as its fill value."""
    path = tmp_path / "contiguous.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("y", 5)
        ds.createDimension("x", 6)
        v = ds.createVariable("v", "f8", ("y", "x"), contiguous=True)
        v[:] = data((5, 6), "f8")
        ds.createVariable("unwritten", "i4", ("y", "x"), contiguous=True, fill_value=np.int32(-9))
        ds.createVariable("unwritten_default", "f4", ("x",), contiguous=True)
    scan = roundtrip_netcdf4(path, inline_threshold=threshold)
    v = scan.variables["v"]
    assert v.storage == "contiguous" and v.chunks == (5, 6) and v.grid == (1, 1)
    if threshold == 0:
        assert v.offsets[0] > 0 and v.lengths[0] == 5 * 6 * 8 and not v.inline
    else:
        assert v.inline and v.offsets[0] == MISSING

    plain = tmp_path / "contiguous.h5"
    with h5py.File(plain, "w") as f:
        f["u2"] = np.arange(30, dtype="u2").reshape(5, 6)
        f.create_dataset("unwritten", shape=(4,), dtype="f8", fillvalue=3.5)
    scan = roundtrip_hdf5(plain, inline_threshold=threshold)
    assert scan.variables["u2"].storage == "contiguous"


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_compact_layout_is_inlined_whatever_its_size(tmp_path: Path, threshold: int) -> None:
    """Compact datasets live in the object header; they are inlined, even when larger than the
    inline threshold (kerchunk itself silently returns zeros for those)."""
    path = tmp_path / "compact.h5"
    big = np.arange(6000, dtype="i4") * 3 - 7  # 24 kB, inside HDF5's 64 kB compact limit
    with h5py.File(path, "w") as f:
        f.create_dataset("small", data=np.linspace(0, 1, 10), dcpl=compact_dcpl())
        f.create_dataset("big", data=big, dcpl=compact_dcpl())
        f.create_dataset("grid", data=data((20, 30), "f4"), dcpl=compact_dcpl())
    with h5py.File(path, "r") as f:
        assert f["big"].id.get_create_plist().get_layout() == h5py.h5d.COMPACT
    scan = roundtrip_hdf5(path, inline_threshold=threshold)
    for name in ("small", "big", "grid"):
        var = scan.variables[name]
        assert var.storage == "compact"
        assert set(var.inline) == {0} and np.all(var.offsets == MISSING)
    assert scan.variables["big"].inline[0] == big.tobytes()
    with open_refs(scan) as ds:
        assert np.array_equal(ds["big"].values, big)  # not zeros


def test_scalar_variables(tmp_path: Path) -> None:
    """0-d variables (written, unwritten with and without _FillValue) read back as scalars."""
    path = tmp_path / "scalars.nc"
    with netCDF4.Dataset(path, "w") as ds:
        h = ds.createVariable("height", "f8", ())
        h.units = "m"
        h[...] = 2.0
        i = ds.createVariable("count", "i4", ())
        i[...] = 42
        ds.createVariable("unset_fill", "i2", (), fill_value=np.int16(-5))
        ds.createVariable("unset_default", "f4", ())
    scan = roundtrip_netcdf4(path, inline_threshold=0)
    h = scan.variables["height"]
    assert h.dims == () and h.shape == () and h.chunks == () and h.grid == ()
    assert scan.variables["unset_fill"].fill_value == -5
    assert "height" not in scan.coords

    plain = tmp_path / "scalar.h5"
    with h5py.File(plain, "w") as f:
        f["s"] = np.float32(2.5)
        f["c"] = np.int64(-3)
    roundtrip_hdf5(plain)


def test_empty_datasets(tmp_path: Path) -> None:
    """Zero-length variables (unlimited dimension never written) have an empty chunk table."""
    path = tmp_path / "empty.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("time", None)
        ds.createDimension("x", 3)
        ds.createVariable("time", "f8", ("time",))
        ds.createVariable("v", "f4", ("time", "x"), zlib=True)
        x = ds.createVariable("x", "i4", ("x",))
        x[:] = [1, 2, 3]
    scan = roundtrip_netcdf4(path)
    v = scan.variables["v"]
    assert v.shape == (0, 3) and v.offsets.size == 0 and not v.inline
    assert scan.dims == {"time": 0, "x": 3} and scan.unlimited == ("time",)
    assert scan.coords == {"time": [], "x": [1, 2, 3]}

    plain = tmp_path / "empty.h5"
    with h5py.File(plain, "w") as f:
        f.create_dataset("contiguous", shape=(0, 3), dtype="i4")
        f.create_dataset("chunked", shape=(0, 3), dtype="f8", chunks=(2, 3), maxshape=(None, 3))
    scan = roundtrip_hdf5(plain)
    assert all(v.offsets.size == 0 and not v.inline for v in scan.variables.values())


# --- chunks never written -----------------------------------------------------------------------

FILLS = [
    ("f4", np.float32(-99.0)),
    ("f4", None),
    ("f8", np.nan),
    ("f8", None),
    ("i2", np.int16(-1)),
    ("i2", None),
    ("u1", None),
    ("i8", np.int64(7)),
    ("u8", None),
]


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_missing_chunks_read_as_netcdf4_returns_them(tmp_path: Path, threshold: int) -> None:
    """Chunks never written read as the _FillValue, or as netCDF's default fill when the variable
    declares none (the Zarr fill would be 0 there), compressed or not."""
    path = tmp_path / "missing.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("time", None)
        ds.createDimension("x", 4)
        ds.createDimension("bnds", 2)
        t = ds.createVariable("time", "f8", ("time",))
        t[:] = np.arange(10)
        for k, (code, fill) in enumerate(FILLS):
            kw = {} if fill is None else {"fill_value": fill}
            for zlib in (False, True):
                v = ds.createVariable(
                    f"v{k}_{code}_{'z' if zlib else 'raw'}",
                    code,
                    ("time", "x"),
                    chunksizes=(3, 2),
                    zlib=zlib,
                    **kw,
                )
                v[0:3, 0:2] = 1
                v[9, 3] = 2
        ds.createVariable("never_written", "f8", ("x", "bnds"))
    scan = roundtrip_netcdf4(path, inline_threshold=threshold)
    for k, (code, fill) in enumerate(FILLS):
        var = scan.variables[f"v{k}_{code}_raw"]
        if fill is None:
            assert var.fill_value is None
        elif isinstance(fill, float) and math.isnan(fill):
            assert var.fill_value == "NaN"
        else:
            assert var.fill_value == fill.item()
    with netCDF4.Dataset(path) as nc:
        nc.set_auto_maskandscale(False)
        assert np.all(nc["never_written"][...] == netCDF4.default_fillvals["f8"])


@pytest.mark.parametrize("dtype", ["f4", "i4", "u2", "i8"])
def test_missing_chunks_plain_hdf5(tmp_path: Path, dtype: str) -> None:
    """In a plain HDF5 file, unwritten chunks read as the dataset's fill value, as h5py reads
    them, for float and integer types alike; no ``_FillValue`` attribute, so no fill value is
    declared (netCDF4 and h5netcdf mask nothing: declaring it would mask valid values)."""
    path = tmp_path / "missing.h5"
    with h5py.File(path, "w") as f:
        d = f.create_dataset("with_fill", shape=(10, 4), dtype=dtype, chunks=(3, 4), fillvalue=7)
        d[0:3] = 1
        d = f.create_dataset("zero_fill", shape=(10,), dtype=dtype, chunks=(3,))
        d[3:6] = 2
    scan = roundtrip_hdf5(path, inline_threshold=0)
    assert scan.variables["with_fill"].fill_value is None
    assert scan.variables["zero_fill"].fill_value is None


def test_fletcher32(tmp_path: Path) -> None:
    """Fletcher-32 checksummed chunks are decoded (and verified) by the fletcher32 codec."""
    path = tmp_path / "fletcher.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("y", 10)
        ds.createDimension("x", 10)
        v = ds.createVariable("v", "f4", ("y", "x"), fletcher32=True, chunksizes=(5, 5))
        v[:] = data((10, 10), "f4")
        w = ds.createVariable(
            "w", "i2", ("y", "x"), fletcher32=True, zlib=True, shuffle=True, chunksizes=(4, 10)
        )
        w[:] = data((10, 10), "i2")
    scan = roundtrip_netcdf4(path, inline_threshold=0)
    assert scan.variables["v"].filters == [{"id": "fletcher32"}]
    # in HDF5's pipeline order (netCDF-C puts the checksum first): applied in order on encode
    assert scan.variables["w"].filters == [
        {"id": "fletcher32"},
        {"id": "shuffle", "elementsize": 2},
        {"id": "zlib", "level": 4},
    ]

    plain = tmp_path / "fletcher.h5"
    with h5py.File(plain, "w") as f:
        f.create_dataset("v", data=np.arange(80).reshape(10, 8), chunks=(5, 4), fletcher32=True)
    roundtrip_hdf5(plain, inline_threshold=0)


def test_unlimited_dimension_with_default_coordinate_chunk(tmp_path: Path) -> None:
    """netCDF-4 chunks a 1-D unlimited coordinate by 512: one partial chunk, longer than the data."""
    path = tmp_path / "unlimited.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("time", None)
        ds.createDimension("x", 3)
        t = ds.createVariable("time", "f8", ("time",))
        t.units = "hours since 2001-01-01"
        t[:] = np.arange(40) * 6.0
        v = ds.createVariable("v", "f4", ("time", "x"))
        v[:] = data((40, 3), "f4")
        assert t.chunking() == [512]
    scan = roundtrip_netcdf4(path, inline_threshold=0)
    time = scan.variables["time"]
    assert scan.unlimited == ("time",) and scan.dims["time"] == 40
    assert time.shape == (40,) and time.chunks == (512,) and time.grid == (1,)
    assert time.lengths[0] == 512 * 8  # the whole stored chunk is referenced
    assert scan.coords["time"] == (np.arange(40) * 6.0).tolist()
    assert scan.variables["time"].attrs == {"units": "hours since 2001-01-01"}


def test_variables_shorter_than_their_unlimited_dimension(tmp_path: Path) -> None:
    """netCDF-4 lets variables along an unlimited dimension hold fewer records than the dimension
    (whose length is that of the longest variable, coordinate or not); netCDF reads the rest as
    the fill value. The scan must read the same or refuse the file, never report shapes that
    disagree with the dimensions (the product could not be opened)."""
    path = tmp_path / "ragged.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("time", None)
        ds.createDimension("rec", None)  # no coordinate variable: a dimension-only scale
        ds.createDimension("x", 2)
        t = ds.createVariable("time", "f8", ("time",))
        t[:] = np.arange(5)
        v = ds.createVariable("v", "f4", ("time", "x"), chunksizes=(1, 2))
        v[0:2] = 1
        # 3 records in chunks of 2: the stored edge chunk straddles the variable's extent
        w = ds.createVariable("w", "i2", ("time", "x"), chunksizes=(2, 2), fill_value=np.int16(-7))
        w[0:3] = 3
        longest = ds.createVariable("longest", "u1", ("time",), zlib=True, chunksizes=(4,))
        longest[0:6] = np.arange(6)  # longer than the time coordinate
        ds.createVariable("r", "f8", ("rec",))[0:4] = np.arange(4.0)
        ds.createVariable("r2", "i4", ("rec", "x"))[0:2] = 5
    with netCDF4.Dataset(path) as nc:
        assert len(nc.dimensions["time"]) == 6 and len(nc.dimensions["rec"]) == 4
    try:
        scan = HDF5Scanner(inline_threshold=0)(str(path))
    except UnsupportedFeatureError as err:
        assert str(path) in str(err)
        assert any(f"'{v}'" in str(err) for v in ("time", "v", "w", "r", "r2", "longest"))
        return
    for var in scan.variables.values():
        for dim, size in zip(var.dims, var.shape, strict=True):
            assert scan.dims[dim] == size, (var.name, dim)
    roundtrip_netcdf4(path, inline_threshold=0)


# --- dimensions ---------------------------------------------------------------------------------


def test_dimension_scales_and_dimension_only_scales(tmp_path: Path) -> None:
    """Coordinate variables name dimensions; netCDF dimension-only scales (``bnds``) are dimensions
    but not variables; a variable named like a dimension it does not index keeps its name."""
    path = tmp_path / "dims.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("time", None)
        ds.createDimension("lat", 3)
        ds.createDimension("bnds", 2)
        ds.createDimension("x", 4)
        t = ds.createVariable("time", "f8", ("time",))
        t.bounds = "time_bnds"
        t[:] = [0.5, 1.5]
        tb = ds.createVariable("time_bnds", "f8", ("time", "bnds"))
        tb[:] = [[0, 1], [1, 2]]
        la = ds.createVariable("lat", "f4", ("lat",))
        la[:] = [-10, 0, 10]
        ds.createDimension("nchar", 4)
        label = ds.createVariable("label", "S1", ("lat", "nchar"))
        label[:] = netCDF4.stringtochar(np.array([b"s", b"eq", b"nort"], dtype="S4"))
        ds.createVariable("v", "i4", ("time", "lat", "x"))[:] = np.arange(24).reshape(2, 3, 4)
        # netCDF-4 stores this one as "_nc4_non_coord_x" next to the dimension-only scale "x"
        ds.createVariable("x", "f4", ("lat", "x"))[:] = np.ones((3, 4))
    with h5py.File(path, "r") as f:
        assert "_nc4_non_coord_x" in f and "bnds" in f
    scan = roundtrip_netcdf4(path)
    assert scan.dims == {"time": 2, "lat": 3, "bnds": 2, "x": 4, "nchar": 4}
    assert scan.variables["label"].dtype == "|S1"
    assert "bnds" not in scan.variables
    assert scan.variables["time_bnds"].dims == ("time", "bnds")
    assert scan.variables["x"].dims == ("lat", "x")
    assert scan.coords == {"time": [0.5, 1.5], "lat": [-10.0, 0.0, 10.0]}


def test_plain_hdf5_dimension_scales(tmp_path: Path) -> None:
    """h5py dimension scales name the dimensions the same way netCDF-C does."""
    path = tmp_path / "scales.h5"
    with h5py.File(path, "w") as f:
        f["lat"] = np.linspace(-80, 80, 5)
        f["lat"].make_scale("lat")
        f["lon"] = np.arange(4.0)
        f["lon"].make_scale()
        f["nv"] = np.zeros(2)
        f["nv"].make_scale()
        t2m = f.create_dataset("t2m", data=np.arange(20.0).reshape(5, 4))
        t2m.dims[0].attach_scale(f["lat"])
        t2m.dims[1].attach_scale(f["lon"])
        lonb = f.create_dataset("lon_bnds", data=np.zeros((4, 2)))
        lonb.dims[0].attach_scale(f["lon"])
        lonb.dims[1].attach_scale(f["nv"])
    scan = roundtrip_hdf5(path)
    with netCDF4.Dataset(path) as nc:
        assert scan.dims == {k: len(d) for k, d in nc.dimensions.items()}
        for name, var in nc.variables.items():
            assert scan.variables[name].dims == var.dimensions
    assert scan.coords["lat"] == np.linspace(-80, 80, 5).tolist()


def test_phony_dimensions_like_netcdf_c(tmp_path: Path) -> None:
    """Without dimension scales, dimensions are ``phony_dim_N`` shared by length as netCDF-C names
    them; two axes of the same length in one variable are two distinct dimensions."""
    path = tmp_path / "phony.h5"
    with h5py.File(path, "w") as f:
        f["a"] = np.zeros((3, 4), "f4")
        f["b"] = np.ones((4,), "i2")
        f["c"] = np.arange(25.0).reshape(5, 5)  # square: (phony_dim_2, phony_dim_3)
        f["d"] = np.arange(3 * 5 * 5).reshape(3, 5, 5)
    scan = roundtrip_hdf5(path)
    with netCDF4.Dataset(path) as nc:
        assert scan.dims == {k: len(d) for k, d in nc.dimensions.items()}
        for name, var in nc.variables.items():
            assert scan.variables[name].dims == var.dimensions, name
    for var in scan.variables.values():
        assert len(set(var.dims)) == len(var.dims), var.name
        assert all(scan.dims[d] == n for d, n in zip(var.dims, var.shape, strict=True))
    assert scan.coords == {}


# --- codecs from HDF5 plugins -------------------------------------------------------------------

PLUGINS = {
    "zstd": "hdf5plugin.Zstd(clevel=5)",
    "blosc-lz4": "hdf5plugin.Blosc(cname='lz4')",
    "blosc-zstd": "hdf5plugin.Blosc(cname='zstd', clevel=3)",
    "blosc-bitshuffle": "hdf5plugin.Blosc(cname='lz4', shuffle=hdf5plugin.Blosc.BITSHUFFLE)",
    "bzip2": "hdf5plugin.BZip2()",
}
WRITE_PLUGIN_FILES = """
import sys
import h5py, hdf5plugin, numpy as np
values = np.arange(1000).reshape(100, 10) * 0.25 - 40  # compressible by every codec
for path, codec in zip(sys.argv[1::2], sys.argv[2::2]):
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=values, chunks=(30, 10), **eval(codec))
        d = f.create_dataset("sparse", shape=(90, 2), dtype="f4", chunks=(30, 2), fillvalue=-1,
                             **eval(codec))
        d[30:60] = 5.0
# random bytes in small chunks do not compress: HDF5 stores them with the optional filter skipped
with h5py.File(sys.argv[1].replace(".h5", "-masked.h5"), "w") as f:
    f.create_dataset("noise", data=np.random.default_rng(1).random((8, 4)), chunks=(2, 4),
                     **hdf5plugin.Blosc(cname="lz4", shuffle=hdf5plugin.Blosc.BITSHUFFLE))
"""


@pytest.fixture(scope="module")
def plugin_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One HDF5 file per plugin codec, written by a clean interpreter.

    (netCDF4-python points ``HDF5_PLUGIN_PATH`` at its own plugins when imported, and h5py then
    cannot *write* Blosc in this process; reading is unaffected.)
    """
    pytest.importorskip("hdf5plugin")
    import os
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("plugins")
    paths = {name: root / f"{name}.h5" for name in PLUGINS}
    args = [a for name, path in paths.items() for a in (str(path), PLUGINS[name])]
    env = {k: v for k, v in os.environ.items() if k != "HDF5_PLUGIN_PATH"}
    subprocess.run([sys.executable, "-c", WRITE_PLUGIN_FILES, *args], check=True, env=env)
    paths["masked"] = root / f"{next(iter(PLUGINS))}-masked.h5"
    return paths


@pytest.mark.parametrize("codec", list(PLUGINS))
@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_plugin_codecs(plugin_files: dict[str, Path], codec: str, threshold: int) -> None:
    """Blosc, Zstandard and bzip2 chunks (hdf5plugin) decode with the matching numcodecs codec,
    and unwritten chunks (inlined, encoded with that codec) read as the fill value."""
    import hdf5plugin  # noqa: F401  (h5py decodes the plugin chunks for the comparison)

    scan = roundtrip_hdf5(plugin_files[codec], inline_threshold=threshold)
    filters = scan.variables["x"].filters
    assert filters is not None and len(filters) == 1
    assert filters[0]["id"] == {"zstd": "zstd", "bzip2": "bz2"}.get(codec, "blosc")
    sparse = scan.variables["sparse"]
    assert sparse.fill_value is None  # no _FillValue attribute; unwritten chunks are inlined


def test_chunk_that_skipped_an_optional_filter(plugin_files: dict[str, Path]) -> None:
    """A chunk stored with an optional filter skipped (HDF5 filter mask) is never decoded with the
    full codec list: it is read exactly (re-encoded inline) or refused by name."""
    import hdf5plugin  # noqa: F401

    path = plugin_files["masked"]
    with h5py.File(path, "r") as f:
        masks: list[int] = []
        f["noise"].id.chunk_iter(lambda info: masks.append(info.filter_mask))
    if not any(masks):  # pragma: no cover - depends on the Blosc build
        pytest.skip("Blosc compressed every chunk; no filter mask to test")
    try:
        roundtrip_hdf5(path, inline_threshold=0)
    except UnsupportedFeatureError as err:
        assert str(path) in str(err) and "'noise'" in str(err) and "filter" in str(err)


# --- unsupported features and broken files ------------------------------------------------------


def _raises_unsupported(path: Path, *words: str) -> str:
    with pytest.raises(UnsupportedFeatureError) as err:
        HDF5Scanner()(str(path))
    message = str(err.value)
    assert str(path) in message
    for word in words:
        assert word in message, (word, message)
    return message


def test_lzf_is_unsupported(tmp_path: Path) -> None:
    """LZF (h5py's built-in filter) has no Zarr codec: refused, naming file, variable and lzf."""
    path = tmp_path / "lzf.h5"
    with h5py.File(path, "w") as f:
        f["ok"] = np.arange(3)
        f.create_dataset("packed", data=np.arange(100.0), chunks=(10,), compression="lzf")
    _raises_unsupported(path, "'packed'", "lzf")


def test_szip_is_unsupported(tmp_path: Path) -> None:
    """SZIP is refused by name (skipped when this HDF5 build cannot write it)."""
    path = tmp_path / "szip.h5"
    try:
        with h5py.File(path, "w") as f:
            f.create_dataset("packed", data=np.arange(100.0), chunks=(10,), compression="szip")
    except (ValueError, OSError) as err:
        pytest.skip(f"this HDF5 build cannot write szip: {err}")
    _raises_unsupported(path, "'packed'", "szip")


def test_variable_length_strings_are_unsupported(tmp_path: Path) -> None:
    """Variable-length strings (h5py and netCDF-4 ``str`` variables) are refused by name."""
    path = tmp_path / "vlen.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("names", data=np.array(["a", "bc"], dtype=h5py.string_dtype()))
    _raises_unsupported(path, "'names'", "variable-length")

    nc_path = tmp_path / "vlen.nc"
    with netCDF4.Dataset(nc_path, "w") as ds:
        ds.createDimension("x", 2)
        ds.createVariable("ok", "f4", ("x",))[:] = [1, 2]
        ds.createVariable("labels", str, ("x",))[:] = np.array(["one", "two"], dtype=object)
    _raises_unsupported(nc_path, "'labels'", "variable-length")


def test_vlen_numbers_compound_and_enum_are_unsupported(tmp_path: Path) -> None:
    """Compound, ragged (vlen) and enum types are refused, naming the variable."""
    path = tmp_path / "compound.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("rec", data=np.zeros(3, dtype=[("a", "i4"), ("b", "f8")]))
    _raises_unsupported(path, "'rec'", "compound")

    path = tmp_path / "vlen_int.h5"
    with h5py.File(path, "w") as f:
        d = f.create_dataset("ragged", shape=(2,), dtype=h5py.vlen_dtype(np.int32))
        d[0] = [1, 2, 3]
    _raises_unsupported(path, "'ragged'", "variable-length")

    path = tmp_path / "enum.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "cloud",
            data=np.array([0, 1], "u1"),
            dtype=h5py.enum_dtype({"clear": 0, "cloudy": 1}, basetype="u1"),
        )
    _raises_unsupported(path, "'cloud'", "enum")


def test_attributes_json_cannot_hold_are_unsupported(tmp_path: Path) -> None:
    """Compound, complex, opaque and ragged (vlen of numbers) attributes are refused, naming the
    file, the variable (or "global") and the attribute: never flattened into another value."""
    cases = {
        "compound": np.array([(1.0, -2.0)], dtype=[("x", "<f4"), ("y", "<f8")]),
        "complex": np.complex64(1 + 2j),
        "opaque": np.void(b"\x01\x02\x03"),
    }
    for word, value in cases.items():
        path = tmp_path / f"global-{word}.h5"
        with h5py.File(path, "w") as f:
            f["v"] = np.arange(3)
            f.attrs["odd"] = value
        _raises_unsupported(path, "global attribute 'odd'", f"{word} data type")

        path = tmp_path / f"variable-{word}.h5"
        with h5py.File(path, "w") as f:
            f["v"] = np.arange(3)
            f["v"].attrs["odd"] = value
        _raises_unsupported(path, "variable 'v'", "attribute 'odd'", f"{word} data type")

    path = tmp_path / "vlen-attribute.h5"
    with h5py.File(path, "w") as f:
        f["v"] = np.arange(3)
        ragged = np.empty(2, dtype=object)
        ragged[0], ragged[1] = np.array([1, 2], "i4"), np.array([3], "i4")
        f["v"].attrs.create("ragged", ragged, dtype=h5py.vlen_dtype(np.int32))
    _raises_unsupported(path, "variable 'v'", "attribute 'ragged'", "variable-length sequence")


def test_opaque_variables_are_unsupported(tmp_path: Path) -> None:
    """An opaque dataset is refused by name, as an opaque type."""
    path = tmp_path / "opaque.h5"
    with h5py.File(path, "w") as f:
        f["blob"] = np.array([b"\x00\x01", b"\x02\x03"], dtype="V2")
    _raises_unsupported(path, "variable 'blob'", "HDF5 opaque data type")


def test_one_dataset_under_several_names_is_unsupported(tmp_path: Path) -> None:
    """A dataset linked under two names (a hard or a soft link) is refused, naming both: netCDF
    readers show it twice and name its dimensions after one of the links."""
    for kind in ("hard", "soft"):
        path = tmp_path / f"{kind}.h5"
        with h5py.File(path, "w") as f:
            f["lat"] = np.arange(4.0)
            f["lat_alias"] = f["lat"] if kind == "hard" else h5py.SoftLink("/lat")
        _raises_unsupported(path, "'lat_alias'", "'lat'", "links (hard or soft) to one HDF5 dataset")


def test_phony_dimensions_of_unlimited_axes(tmp_path: Path) -> None:
    """As netCDF-C, an unlimited axis without a dimension scale never shares the phony dimension of
    a fixed axis of the same length (and the other way round)."""
    path = tmp_path / "resizable.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("fixed", data=np.zeros((4, 6)), maxshape=(8, 12))
        f.create_dataset("grows", data=np.ones((8, 4)), maxshape=(None, None))
        f.create_dataset("again", data=np.ones((4,)), maxshape=(None,))
    scan = roundtrip_hdf5(path)
    with netCDF4.Dataset(path) as nc:
        for name, var in nc.variables.items():
            assert scan.variables[name].dims == var.dimensions, name
    assert scan.variables["grows"].dims[1] != scan.variables["fixed"].dims[0]
    assert scan.variables["again"].dims[0] == scan.variables["grows"].dims[1]


def test_groups_are_unsupported(tmp_path: Path) -> None:
    """A file with groups is refused, naming the group (never silently scanning the root only)."""
    path = tmp_path / "groups.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("x", 2)
        ds.createVariable("root_var", "f4", ("x",))[:] = [1, 2]
        g = ds.createGroup("forecast")
        g.createVariable("inner", "f4", ("x",))[:] = [3, 4]
    _raises_unsupported(path, "'forecast'", "group")

    plain = tmp_path / "groups.h5"
    with h5py.File(plain, "w") as f:
        f.create_group("g").create_dataset("y", data=[1, 2])
    _raises_unsupported(plain, "'g'", "group")


def _netcdf4_file(path: Path) -> bytes:
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("time", None)
        ds.createDimension("x", 50)
        t = ds.createVariable("time", "f8", ("time",))
        t.units = "days since 2000-01-01"
        t[:] = np.arange(20)
        v = ds.createVariable("v", "f4", ("time", "x"), zlib=True, chunksizes=(5, 50))
        v[:] = data((20, 50), "f4")
    return path.read_bytes()


def test_truncated_file_cut_in_half(tmp_path: Path) -> None:
    """A netCDF-4 file cut in half is a ScanError naming the path."""
    whole = _netcdf4_file(tmp_path / "whole.nc")
    cut = tmp_path / "cut.nc"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ScanError) as err:
        HDF5Scanner()(str(cut))
    assert str(cut) in str(err.value)


def test_every_truncation_is_a_scan_error(tmp_path: Path) -> None:
    """Whatever the cut point, a truncated file gives a ScanError naming it, never another
    exception (h5py raises many kinds) and never a scan pointing past the end of the file."""
    whole = _netcdf4_file(tmp_path / "whole.nc")
    cut = tmp_path / "cut.nc"
    for size in [0, 4, 8, 100, 512, *range(1000, len(whole), 331), len(whole) - 1]:
        cut.write_bytes(whole[:size])
        try:
            scan = HDF5Scanner(inline_threshold=0)(str(cut))
        except ScanError as err:
            assert str(cut) in str(err), size
            continue
        for var in scan.variables.values():  # pragma: no cover - only if HDF5 reads it
            stored = var.offsets != MISSING
            assert np.all(var.offsets[stored] + var.lengths[stored] <= size)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        HDF5Scanner()(str(tmp_path / "missing.nc"))


def test_sniff(tmp_path: Path) -> None:
    """HDF5's 8-byte signature, and nothing else, is recognised; the registry picks this scanner."""
    assert HDF5Scanner.sniff(HDF5_SIGNATURE)
    assert HDF5Scanner.sniff(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)
    assert not HDF5Scanner.sniff(b"CDF\x01\x00\x00\x00\x00")
    assert not HDF5Scanner.sniff(b"\x89HDF")
    assert not HDF5Scanner.sniff(b"\x0e\x03\x13\x01")
    assert not HDF5Scanner.sniff(b"")
    assert HDF5Scanner.name == "hdf5"
    path = tmp_path / "file.nc"
    _netcdf4_file(path)
    assert scanner_for(str(path)) is HDF5Scanner


# --- attributes ---------------------------------------------------------------------------------


def test_attributes(tmp_path: Path) -> None:
    """1-element attributes become scalars, strings (char and NC_STRING, any script) decode to str,
    arrays stay lists, and _FillValue moves from the attributes to the fill value."""
    path = tmp_path / "attrs.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.title = "plain ascii"
        ds.comment = "ünïcode text"
        ds.version = np.array([1.5])
        ds.count = np.int32(7)
        ds.big = np.int64(2**40)
        ds.levels = np.array([1.0, 2.5, 3.25], dtype="f4")
        ds.empty = ""
        ds.createDimension("x", 3)
        v = ds.createVariable("v", "i2", ("x",), fill_value=np.int16(-999))
        v[:] = [1, 2, 3]
        v.scale_factor = np.float32(0.5)
        v.add_offset = 1.0
        v.one = np.array([3], dtype="i2")
        v.units = "K"
        v.valid_range = np.array([0, 100], dtype="i2")
        v.setncattr_string("flag_meanings_list", ["low", "high"])
        v.setncattr_string("note", "a single NC_STRING")
    scan = roundtrip_netcdf4(path)
    assert scan.attrs == {
        "title": "plain ascii",
        "comment": "ünïcode text",
        "version": 1.5,
        "count": 7,
        "big": 2**40,
        "levels": [1.0, 2.5, 3.25],
        "empty": "",
    }
    var = scan.variables["v"]
    assert var.fill_value == -999
    assert var.attrs == {
        "scale_factor": 0.5,
        "add_offset": 1.0,
        "one": 3,
        "units": "K",
        "valid_range": [0, 100],
        "flag_meanings_list": ["low", "high"],
        "note": "a single NC_STRING",
    }
    assert isinstance(var.attrs["one"], int) and isinstance(var.attrs["scale_factor"], float)
    with open_refs(scan) as ds:
        assert ds["v"].attrs["_FillValue"] == -999
    # HDF5/netCDF bookkeeping never leaks into user attributes
    hidden = {"_NCProperties", "_Netcdf4Dimid", "DIMENSION_LIST", "CLASS", "NAME", "REFERENCE_LIST"}
    assert not hidden & set(scan.attrs)
    assert not hidden & {k for v in scan.variables.values() for k in v.attrs}


@pytest.mark.parametrize(("dtype", "refused"), [("f8", True), ("i8", True), ("f4", False), ("i2", False)])
def test_fletcher32_before_shuffle_of_wide_values_is_refused(tmp_path, dtype, refused):
    """netCDF-C checksums before shuffling: 8-byte values then leave a 4-byte tail that Zarr's
    shuffle refuses, so such a variable is refused by name (narrower values read fine)."""
    import netCDF4

    from padocc_like.errors import UnsupportedFeatureError
    from padocc_like.references.read import file_reader, read_raw

    path = tmp_path / "f.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("x", 10)
        v = ds.createVariable("v", dtype, ("x",), zlib=True, shuffle=True, fletcher32=True, chunksizes=(5,))
        v[:] = np.arange(10)
    scanner = HDF5Scanner(inline_threshold=0)
    if refused:
        with pytest.raises(UnsupportedFeatureError, match=r"'v'.*fletcher32"):
            scanner(str(path))
    else:
        scan = scanner(str(path))
        with file_reader(str(path)) as read_range:
            np.testing.assert_array_equal(read_raw(scan.variables["v"], read_range), np.arange(10))
