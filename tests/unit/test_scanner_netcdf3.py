"""Tests of the netCDF-3 scanner: every variable is read back through its references."""

from __future__ import annotations

import base64
import json
import math
import os
import struct
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import pytest
import xarray as xr

from padocc_like.errors import ScanError
from padocc_like.references.model import MISSING, FileScan, VariableScan, chunk_key
from padocc_like.scanners.netcdf3 import NetCDF3Scanner

FORMATS = ["NETCDF3_CLASSIC", "NETCDF3_64BIT_OFFSET"]
FORMAT_NAMES = {
    "NETCDF3_CLASSIC": "netcdf3-classic",
    "NETCDF3_64BIT_OFFSET": "netcdf3-64bit-offset",
    "NETCDF3_64BIT_DATA": "netcdf3-64bit-data",
}
REALDATA = Path(
    os.environ.get("PADOCC_LIKE_REALDATA", Path(__file__).resolve().parents[2].parent / "shared" / "realdata")
)


# --- helpers ------------------------------------------------------------------------------------


def read_through_refs(var: VariableScan, url: str) -> np.ndarray:
    """Assemble a variable from its chunk table (byte ranges or inline bytes)."""
    out = np.empty(var.shape, dtype=var.dtype)
    with open(url, "rb") as f:
        for flat in range(math.prod(var.grid)):
            index = np.unravel_index(flat, var.grid)
            if flat in var.inline:
                assert var.offsets[flat] == MISSING and var.lengths[flat] == MISSING
                raw = var.inline[flat]
            else:
                assert var.offsets[flat] >= 0, f"{var.name}: chunk {flat} not stored"
                f.seek(int(var.offsets[flat]))
                raw = f.read(int(var.lengths[flat]))
                assert len(raw) == var.lengths[flat]
            assert len(raw) == math.prod(var.chunks) * var.itemsize
            chunk = np.frombuffer(raw, dtype=var.dtype).reshape(var.chunks)
            where = tuple(
                slice(i * c, min((i + 1) * c, s))
                for i, c, s in zip(index, var.chunks, var.shape, strict=True)
            )
            out[where] = chunk[tuple(slice(0, w.stop - w.start) for w in where)]
    return out


def raw_values(ds: netCDF4.Dataset, name: str) -> np.ndarray:
    var = ds.variables[name]
    var.set_auto_maskandscale(False)
    var.set_auto_chartostring(False)
    return np.asarray(var[...])


def nc_attr_json(value: Any) -> Any:
    """What the scanner should report for an attribute netCDF4-python read."""
    if isinstance(value, str):
        return value
    arr = np.asarray(value)
    return arr.reshape(()).item() if arr.size == 1 else arr.tolist()


def assert_matches_netcdf4(scan: FileScan, path: str) -> None:
    """Every variable, read through the references, equals netCDF4-python's raw values."""
    with netCDF4.Dataset(path) as ds:
        assert scan.dims == {k: len(d) for k, d in ds.dimensions.items()}
        assert scan.unlimited == tuple(k for k, d in ds.dimensions.items() if d.isunlimited())
        assert scan.attrs == {k: nc_attr_json(ds.getncattr(k)) for k in ds.ncattrs()}
        assert list(scan.variables) == list(ds.variables)
        for name, ncvar in ds.variables.items():
            var = scan.variables[name]
            expected = raw_values(ds, name)
            assert var.dims == ncvar.dimensions
            assert var.shape == expected.shape
            assert np.dtype(var.dtype).newbyteorder("=") == ncvar.dtype
            assert var.filters is None
            got = read_through_refs(var, scan.url)
            # bitwise equality (NaNs included)
            assert got.astype(expected.dtype).tobytes() == np.ascontiguousarray(expected).tobytes()
            attrs = {k: nc_attr_json(ncvar.getncattr(k)) for k in ncvar.ncattrs()}
            fill = attrs.pop("_FillValue", None)
            assert var.attrs == attrs
            assert "_FillValue" not in var.attrs
            if fill is None:
                assert var.fill_value is None
            elif isinstance(fill, float) and math.isnan(fill):
                assert var.fill_value == "NaN"
            elif isinstance(fill, bytes | str):  # char fill value
                raw = fill.encode() if isinstance(fill, str) else fill
                assert base64.b64decode(var.fill_value) == raw
            else:
                assert var.fill_value == fill
            if len(var.dims) == 1 and var.dims[0] == name and var.dtype != "|S1":
                assert scan.coords[name] == expected.tolist()
            else:
                assert name not in scan.coords


def kerchunk_refs(scan: FileScan) -> dict[str, Any]:
    """A kerchunk v1 reference set built directly from a scan."""
    refs: dict[str, Any] = {
        ".zgroup": json.dumps({"zarr_format": 2}),
        ".zattrs": json.dumps(scan.attrs, allow_nan=False),
    }
    for name, var in scan.variables.items():
        refs[f"{name}/.zarray"] = json.dumps(var.zarray(), allow_nan=False)
        refs[f"{name}/.zattrs"] = json.dumps(var.zattrs(), allow_nan=False)
        for flat in range(var.offsets.size):
            key = f"{name}/{chunk_key(tuple(int(i) for i in np.unravel_index(flat, var.grid)))}"
            if flat in var.inline:
                refs[key] = "base64:" + base64.b64encode(var.inline[flat]).decode()
            elif var.offsets[flat] != MISSING:
                refs[key] = [scan.url, int(var.offsets[flat]), int(var.lengths[flat])]
    return {"version": 1, "refs": refs}


def assert_kerchunk_identical(scan: FileScan, path: str) -> None:
    """xarray over the references equals xarray over the file, values and attributes."""
    opts = {"mask_and_scale": False, "decode_times": False}
    with (
        xr.open_dataset(kerchunk_refs(scan), engine="kerchunk", **opts) as via_refs,
        xr.open_dataset(path, engine="netcdf4", **opts) as direct,
    ):
        xr.testing.assert_identical(via_refs.load(), direct.load())


def scan_and_check(path: Path, **kwargs: Any) -> FileScan:
    scan = NetCDF3Scanner(**kwargs)(str(path))
    assert scan.url == str(path)
    assert_matches_netcdf4(scan, str(path))
    assert_kerchunk_identical(scan, str(path))
    # the scan is JSON-safe and survives the scan cache round trip
    text = json.dumps(scan.to_dict(), allow_nan=False)
    again = FileScan.from_dict(json.loads(text))
    assert json.dumps(again.to_dict(), allow_nan=False) == text
    return scan


# --- files made with netCDF4-python -------------------------------------------------------------


def make_records(path: Path, fmt: str, nrec: int = 5) -> None:
    """Two+ record variables, fixed 2-D variables, a scalar, chars and global attributes."""
    rng = np.random.default_rng(0)
    with netCDF4.Dataset(path, "w", format=fmt) as ds:
        ds.title = "record test"
        ds.comment = "ünïcode text"
        ds.version = np.float64(1.5)
        ds.count = np.int32(7)
        ds.small = np.int16(-3)
        ds.flag = np.int8(1)
        ds.levels = np.array([1.0, 2.5, 3.25], dtype="f4")
        ds.ints = np.array([1, -2, 3], dtype="i4")
        ds.createDimension("time", None)
        ds.createDimension("lat", 3)
        ds.createDimension("lon", 4)
        ds.createDimension("nchar", 5)
        time = ds.createVariable("time", "f8", ("time",))
        time.units = "days since 2000-01-01"
        time.calendar = "360_day"
        lat = ds.createVariable("lat", "f4", ("lat",))
        lat.units = "degrees_north"
        lon = ds.createVariable("lon", "f8", ("lon",))
        tas = ds.createVariable("tas", "f4", ("time", "lat", "lon"), fill_value=np.float32(1e20))
        tas.units = "K"
        tas.valid_range = np.array([100, 400], dtype="f4")
        packed = ds.createVariable("packed", "i2", ("time", "lat"), fill_value=np.int16(-32767))
        packed.scale_factor = np.float32(0.01)
        packed.add_offset = 273.15
        odd = ds.createVariable("odd", "i1", ("time", "nchar"))  # 5 bytes: padded to 8 per record
        label = ds.createVariable("label", "S1", ("time", "nchar"))
        grid = ds.createVariable("grid", "f8", ("lat", "lon"), fill_value=np.nan)
        mask = ds.createVariable("mask", "i1", ("lat", "lon"))
        names = ds.createVariable("names", "S1", ("lat", "nchar"), fill_value=b"x")
        scalar = ds.createVariable("scalar", "i4", ())
        scalar.long_name = "a scalar"
        lat[:] = [-45.0, 0.0, 45.0]
        lon[:] = [0.0, 90.0, 180.0, 270.0]
        time[:] = np.arange(nrec) * 30.0
        tas[:] = rng.normal(280, 10, (nrec, 3, 4)).astype("f4")
        packed[: max(nrec - 1, 0)] = rng.integers(-1000, 1000, (max(nrec - 1, 0), 3))
        odd[:] = rng.integers(-128, 127, (nrec, 5))
        words = np.array([b"alpha", b"be", b"gamma", b"d", b"eps"] * nrec, dtype="S5")[:nrec]
        label[:] = netCDF4.stringtochar(words)
        g = rng.normal(size=(3, 4))
        g[1, 2] = np.nan
        grid[:] = g
        mask[:] = rng.integers(0, 2, (3, 4))
        names[:2] = netCDF4.stringtochar(np.array([b"ab", b"cdefg"], dtype="S5"))
        scalar.assignValue(42)


@pytest.mark.parametrize("fmt", FORMATS)
def test_record_variables(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "records.nc"
    make_records(path, fmt)
    scan = scan_and_check(path)
    assert scan.format == FORMAT_NAMES[fmt]
    assert scan.unlimited == ("time",)
    assert scan.dims == {"time": 5, "lat": 3, "lon": 4, "nchar": 5}
    assert scan.attrs["title"] == "record test"
    assert scan.attrs["comment"] == "ünïcode text"
    assert scan.attrs["version"] == 1.5 and isinstance(scan.attrs["version"], float)
    assert scan.attrs["count"] == 7 and isinstance(scan.attrs["count"], int)
    assert scan.attrs["levels"] == [1.0, 2.5, 3.25]
    assert scan.attrs["ints"] == [1, -2, 3]

    tas, packed, odd = (scan.variables[k] for k in ("tas", "packed", "odd"))
    assert tas.storage == "record" and tas.chunks == (1, 3, 4) and tas.dtype == ">f4"
    assert packed.dtype == ">i2" and packed.chunks == (1, 3)
    assert odd.dtype == "|i1" and scan.variables["label"].dtype == "|S1"
    assert tas.fill_value == float(np.float32(1e20))
    assert packed.fill_value == -32767
    assert packed.attrs == {"scale_factor": pytest.approx(0.01), "add_offset": 273.15}
    assert scan.variables["grid"].fill_value == "NaN"
    assert scan.variables["names"].fill_value == base64.b64encode(b"x").decode()
    assert scan.variables["lat"].fill_value is None

    # records: time 8 + tas 48 + packed 6->8 + odd 5->8 + label 5->8 = 80 bytes apart
    scan0 = NetCDF3Scanner(inline_threshold=0)(str(path))
    t0 = scan0.variables["tas"]
    assert np.all(np.diff(t0.offsets) == 80)
    assert np.all(t0.lengths == 48)
    for name in ("time", "packed", "odd", "label"):
        assert np.all(np.diff(scan0.variables[name].offsets) == 80)

    # fixed variables: one contiguous chunk, exact (unpadded) length
    grid = scan0.variables["grid"]
    assert grid.storage == "contiguous" and grid.chunks == (3, 4) and grid.lengths.tolist() == [96]
    mask = scan0.variables["mask"]
    assert mask.lengths.tolist() == [12]
    scalar = scan0.variables["scalar"]
    assert scalar.shape == () and scalar.chunks == () and scalar.lengths.tolist() == [4]
    assert scalar.attrs == {"long_name": "a scalar"}

    assert scan.coords == {
        "time": [0.0, 30.0, 60.0, 90.0, 120.0],
        "lat": [-45.0, 0.0, 45.0],
        "lon": [0.0, 90.0, 180.0, 270.0],
    }


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("threshold", [0, 10, 500, 10_000])
def test_inline_threshold(tmp_path: Path, fmt: str, threshold: int) -> None:
    path = tmp_path / "records.nc"
    make_records(path, fmt)
    scan = scan_and_check(path, inline_threshold=threshold)
    for var in scan.variables.values():
        chunk_bytes = math.prod(var.chunks) * var.itemsize
        n = math.prod(var.grid)
        if chunk_bytes < threshold:
            assert sorted(var.inline) == list(range(n))
            assert np.all(var.offsets == MISSING) and np.all(var.lengths == MISSING)
        else:
            assert not var.inline
            assert np.all(var.offsets > 0) and np.all(var.lengths == chunk_bytes)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("dtype", "width"), [("i2", 3), ("S1", 5), ("i1", 7), ("f8", 1)])
def test_single_record_variable_is_not_padded(tmp_path: Path, fmt: str, dtype: str, width: int) -> None:
    path = tmp_path / "one.nc"
    nrec = 7
    with netCDF4.Dataset(path, "w", format=fmt) as ds:
        ds.createDimension("rec", None)
        ds.createDimension("w", width)
        ds.createVariable("fixed", "i4", ("w",))[:] = np.arange(width)
        var = ds.createVariable("v", dtype, ("rec", "w"))
        values = np.arange(nrec * width).reshape(nrec, width)
        if dtype == "S1":
            var[:] = np.array([chr(65 + i % 26).encode() for i in values.ravel()]).reshape(nrec, width)
        else:
            var[:] = values.astype(dtype)
    scan = scan_and_check(path, inline_threshold=0)
    v = scan.variables["v"]
    itemsize = np.dtype(dtype).itemsize
    assert v.chunks == (1, width)
    assert np.all(np.diff(v.offsets) == width * itemsize)  # unpadded records
    assert np.all(v.lengths == width * itemsize)
    scan_and_check(path)  # and with inlining


@pytest.mark.parametrize("fmt", FORMATS)
def test_zero_records(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "empty_records.nc"
    with netCDF4.Dataset(path, "w", format=fmt) as ds:
        ds.createDimension("time", None)
        ds.createDimension("x", 3)
        ds.createVariable("time", "f8", ("time",))
        ds.createVariable("a", "f4", ("time", "x"))
        ds.createVariable("b", "i2", ("time",))
        ds.createVariable("x", "i4", ("x",))[:] = [1, 2, 3]
    scan = scan_and_check(path)
    assert scan.dims == {"time": 0, "x": 3}
    assert scan.unlimited == ("time",)
    a = scan.variables["a"]
    assert a.shape == (0, 3) and a.chunks == (1, 3) and a.grid == (0, 1)
    assert a.offsets.size == 0 and not a.inline
    assert scan.coords == {"time": [], "x": [1, 2, 3]}


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_record_dimension_and_no_variables(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "attrs_only.nc"
    with netCDF4.Dataset(path, "w", format=fmt) as ds:
        ds.history = "made in a test"
        ds.createDimension("unused", 2)
    scan = scan_and_check(path)
    assert scan.unlimited == () and scan.variables == {} and scan.dims == {"unused": 2}

    empty = tmp_path / "empty.nc"
    netCDF4.Dataset(empty, "w", format=fmt).close()
    scan = scan_and_check(empty)
    assert scan.attrs == {} and scan.dims == {} and scan.variables == {}


def test_cdf5_types(tmp_path: Path) -> None:
    path = tmp_path / "cdf5.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF3_64BIT_DATA") as ds:
        ds.big = np.int64(2**40)
        ds.ubig = np.array([1, 2**63 + 1], dtype="u8")
        ds.createDimension("t", None)
        ds.createDimension("x", 3)
        for code in ("u1", "u2", "u4", "i8", "u8"):
            ds.createVariable(f"fixed_{code}", code, ("x",), fill_value=np.dtype(code).type(7))[:] = (
                np.array([0, 1, 2], dtype=code) + np.iinfo(code).max // 2
            )
            ds.createVariable(f"rec_{code}", code, ("t", "x"))[:] = np.arange(12).reshape(4, 3).astype(code)
    scan = scan_and_check(path)
    assert scan.format == "netcdf3-64bit-data"
    assert scan.attrs["big"] == 2**40 and scan.attrs["ubig"] == [1, 2**63 + 1]
    assert {scan.variables[f"fixed_{c}"].dtype for c in ("u1", "u2", "u4", "i8", "u8")} == {
        "|u1",
        ">u2",
        ">u4",
        ">i8",
        ">u8",
    }
    assert scan.variables["fixed_u8"].fill_value == 7


def test_large_header(tmp_path: Path) -> None:
    """A header bigger than the first 64 KiB read."""
    path = tmp_path / "big_header.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF3_CLASSIC") as ds:
        ds.long_text = "x" * 100_000
        ds.createDimension("n", 2)
        for i in range(300):
            v = ds.createVariable(f"variable_with_a_long_name_{i:04d}", "i2", ("n",))
            v.description = f"variable number {i} " * 10
            v[:] = [i, -i]
    scan = scan_and_check(path)
    assert len(scan.variables) == 300
    assert len(scan.attrs["long_text"]) == 100_000


def test_many_records(tmp_path: Path) -> None:
    path = tmp_path / "many.nc"
    n = 20_000
    with netCDF4.Dataset(path, "w", format="NETCDF3_64BIT_OFFSET") as ds:
        ds.createDimension("time", None)
        ds.createDimension("x", 300)
        ds.createVariable("time", "i4", ("time",))[:] = np.arange(n)
        ds.createVariable("data", "f4", ("time", "x"))[:] = np.ones((n, 300), "f4")
    scan = NetCDF3Scanner()(str(path))
    assert scan.coords["time"] == list(range(n))
    assert len(scan.variables["time"].inline) == n
    assert np.all(np.diff(scan.variables["data"].offsets) == 4 + 1200)
    assert_matches_netcdf4(scan, str(path))


def test_streaming_numrecs(tmp_path: Path) -> None:
    """numrecs == 0xFFFFFFFF: the record count comes from the file size."""
    path = tmp_path / "records.nc"
    make_records(path, "NETCDF3_CLASSIC")
    expected = NetCDF3Scanner()(str(path))
    data = bytearray(path.read_bytes())
    data[4:8] = b"\xff\xff\xff\xff"
    streaming = tmp_path / "streaming.nc"
    streaming.write_bytes(bytes(data))
    scan = NetCDF3Scanner()(str(streaming))
    assert scan.dims == expected.dims
    for name, var in expected.variables.items():
        assert np.array_equal(scan.variables[name].offsets, var.offsets)
        assert scan.variables[name].inline == var.inline


# --- sniffing and corrupt files -----------------------------------------------------------------


def test_sniff() -> None:
    assert NetCDF3Scanner.sniff(b"CDF\x01\x00\x00\x00\x00")
    assert NetCDF3Scanner.sniff(b"CDF\x02\x00\x00\x00\x00")
    assert NetCDF3Scanner.sniff(b"CDF\x05\x00\x00\x00\x00")
    assert not NetCDF3Scanner.sniff(b"CDF\x03\x00\x00\x00\x00")
    assert not NetCDF3Scanner.sniff(b"\x89HDF\r\n\x1a\n")
    assert not NetCDF3Scanner.sniff(b"CD")
    assert not NetCDF3Scanner.sniff(b"")
    assert NetCDF3Scanner.name == "netcdf3"


def test_truncated_data(tmp_path: Path) -> None:
    path = tmp_path / "records.nc"
    make_records(path, "NETCDF3_CLASSIC")
    data = path.read_bytes()
    cut = tmp_path / "cut.nc"
    cut.write_bytes(data[:-5])
    with pytest.raises(ScanError) as err:
        NetCDF3Scanner()(str(cut))
    msg = str(err.value)
    assert str(cut) in msg and "'label'" in msg and "beyond the end of the file" in msg
    assert f"({len(data) - 5} bytes)" in msg


@pytest.mark.parametrize("keep", [0, 3, 4, 6, 8, 20, 100])
def test_truncated_header(tmp_path: Path, keep: int) -> None:
    path = tmp_path / "records.nc"
    make_records(path, "NETCDF3_64BIT_OFFSET")
    cut = tmp_path / "cut.nc"
    cut.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(ScanError, match=r"truncated|not a netCDF-3") as err:
        NetCDF3Scanner()(str(cut))
    assert str(cut) in str(err.value)


@pytest.mark.parametrize("seed", range(20))
def test_garbage_after_magic(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    path = tmp_path / "garbage.nc"
    path.write_bytes(b"CDF\x01" + rng.integers(0, 256, 2000, dtype=np.uint8).tobytes())
    with pytest.raises(ScanError) as err:
        NetCDF3Scanner()(str(path))
    assert str(path) in str(err.value)


@pytest.mark.parametrize("fmt", [*FORMATS, "NETCDF3_64BIT_DATA"])
def test_mutated_headers_fail_cleanly(tmp_path: Path, fmt: str) -> None:
    """Every truncation and random header corruption either scans in bounds or is a ScanError."""
    path = tmp_path / "records.nc"
    make_records(path, fmt)
    data = path.read_bytes()
    variables = NetCDF3Scanner(inline_threshold=0)(str(path)).variables.values()
    header_end = min(int(v.offsets.min()) for v in variables)
    bad = tmp_path / "bad.nc"
    rng = np.random.default_rng(0)
    cases = [data[:cut] for cut in range(header_end + 8)]
    for _ in range(300):
        mutated = bytearray(data)
        for i in rng.integers(4, header_end, rng.integers(1, 4)):
            mutated[i] = rng.integers(0, 256)
        cases.append(bytes(mutated))
    for case in cases:
        bad.write_bytes(case)
        try:
            scan = NetCDF3Scanner()(str(bad))
        except ScanError as err:
            assert str(bad) in str(err)
            continue
        for var in scan.variables.values():
            stored = var.offsets >= 0
            assert np.all(var.offsets[stored] + var.lengths[stored] <= len(case))


def test_not_netcdf3(tmp_path: Path) -> None:
    path = tmp_path / "hdf.nc"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)
    with pytest.raises(ScanError, match="not a netCDF-3 file"):
        NetCDF3Scanner()(str(path))
    with pytest.raises(FileNotFoundError):
        NetCDF3Scanner()(str(tmp_path / "missing.nc"))


def _name(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">I", len(raw)) + raw + b"\x00" * (-len(raw) % 4)


def attribute(name: str, values: np.ndarray | bytes) -> bytes:
    """One header attribute entry (char for bytes, else by the array's dtype)."""
    codes = {"i1": 1, "i2": 3, "i4": 4, "f4": 5, "f8": 6}
    if isinstance(values, bytes):
        nc_type, raw, n = 2, values, len(values)
    else:
        arr = np.atleast_1d(values)
        nc_type, raw, n = (
            codes[arr.dtype.str[1:]],
            arr.astype(arr.dtype.newbyteorder(">")),
            arr.size,
        )
        raw = raw.tobytes()
    return _name(name) + struct.pack(">II", nc_type, n) + raw + b"\x00" * (-len(raw) % 4)


def classic_file(
    dims: list[tuple[str, int]],
    variables: list[tuple[Any, ...]],
    *,
    numrecs: int = 0,
    data: bytes = b"",
) -> bytes:
    """A hand-made CDF-1 file: variables are (name, dimids, nc_type, begin[, attributes])."""
    out = b"CDF\x01" + struct.pack(">I", numrecs)
    out += struct.pack(">II", 0x0A, len(dims)) if dims else b"\x00" * 8
    out += b"".join(_name(n) + struct.pack(">I", s) for n, s in dims)
    out += b"\x00" * 8  # no global attributes
    out += struct.pack(">II", 0x0B, len(variables)) if variables else b"\x00" * 8
    for name, dimids, nc_type, begin, *attrs in variables:
        out += _name(name) + struct.pack(f">I{len(dimids)}I", len(dimids), *dimids)
        out += struct.pack(">II", 0x0C, len(attrs)) if attrs else b"\x00" * 8
        out += b"".join(attrs) + struct.pack(">IIi", nc_type, 0, begin)
    return out + data


def _header_size(dims: list[tuple[str, int]], variables: list[tuple[str, list[int], int]]) -> int:
    return len(classic_file(dims, [(n, d, t, 0) for n, d, t in variables]))


def test_hand_made_file_is_read_like_netcdf4(tmp_path: Path) -> None:
    """The hand-made file builder is right: netCDF4-python agrees with the scanner."""
    dims = [("r", 0), ("x", 3)]
    specs = [("fixed", [1], 3), ("a", [0, 1], 4), ("b", [0], 1)]
    start = _header_size(dims, specs)
    fixed = np.array([1, 2, 3], ">i2").tobytes() + b"\x00\x00"
    records = b"".join(
        np.array([r, r + 1, r + 2], ">i4").tobytes() + bytes([r]) + b"\x00" * 3 for r in range(4)
    )
    path = tmp_path / "hand.nc"
    path.write_bytes(
        classic_file(
            dims,
            [("fixed", [1], 3, start), ("a", [0, 1], 4, start + 8), ("b", [0], 1, start + 20)],
            numrecs=4,
            data=fixed + records,
        )
    )
    scan = scan_and_check(path)
    assert scan.dims == {"r": 4, "x": 3}


@pytest.mark.parametrize(
    ("dims", "variables", "match"),
    [
        ([("x", 2)], [("v", [5], 4, 200)], "dimension id 5"),
        ([("r", 0), ("x", 2)], [("v", [1, 0], 4, 200)], "must be the first"),
        ([("r", 0), ("s", 0)], [("v", [0], 4, 200)], "2 unlimited dimensions"),
        ([("x", 2)], [("v", [0], 4, -8)], "negative"),
        ([("x", 2)], [("v", [0], 99, 200)], "nc_type 99"),
        ([("x", 2)], [("v", [0], 8, 200)], "nc_type 8"),  # ushort is CDF-5 only
        ([("x", 2)], [("v", [0], 4, 4)], "before the end of the header"),
        ([("x", 2)], [("v", [0], 4, 200), ("w", [0], 4, 204)], "before the end of variable 'v'"),
        ([("x", 2), ("x", 3)], [], "duplicate dimension"),
        ([("x", 2)], [("v", [0], 4, 200), ("v", [0], 4, 208)], "two variables"),
        ([("x", 2)], [("v", [0], 4, 10_000)], "beyond the end of the file"),
    ],
)
def test_corrupt_headers(
    tmp_path: Path, dims: list[tuple[str, int]], variables: list[Any], match: str
) -> None:
    path = tmp_path / "bad.nc"
    path.write_bytes(classic_file(dims, variables).ljust(400, b"\x00"))
    with pytest.raises(ScanError, match=match) as err:
        NetCDF3Scanner()(str(path))
    assert str(path) in str(err.value)
    if variables and "variable" in match:
        assert "'v'" in str(err.value) or "'w'" in str(err.value)


def test_wrong_list_tag_and_huge_counts(tmp_path: Path) -> None:
    path = tmp_path / "bad.nc"
    path.write_bytes(b"CDF\x01" + struct.pack(">III", 0, 0x0B, 1) + b"\x00" * 100)
    with pytest.raises(ScanError, match="dimension list tag"):
        NetCDF3Scanner()(str(path))
    path.write_bytes(b"CDF\x01" + struct.pack(">III", 0, 0x0A, 2**31) + b"\x00" * 100)
    with pytest.raises(ScanError, match="claims 2147483648 entries"):
        NetCDF3Scanner()(str(path))
    path.write_bytes(b"CDF\x05" + struct.pack(">QIq", 0, 0x0A, -1) + b"\x00" * 100)
    with pytest.raises(ScanError, match="negative"):
        NetCDF3Scanner()(str(path))


def _one_variable_file(path: Path, nc_type: int, fill: bytes) -> None:
    """A 2-element variable 'v' of ``nc_type`` with the _FillValue attribute entry ``fill``."""
    spec = ("v", [0], nc_type, 0, fill)
    start = len(classic_file([("x", 2)], [spec]))
    path.write_bytes(classic_file([("x", 2)], [(*spec[:3], start, fill)], data=b"\x00" * 16))


@pytest.mark.parametrize(
    ("nc_type", "fill", "expected"),
    [
        (5, np.array(1e20, "f8"), float(np.float32(1e20))),  # double fill on a float: rounds
        (5, np.array(np.nan, "f4"), "NaN"),
        (6, np.array(-np.inf, "f8"), "-Infinity"),
        (3, np.array(-999, "i4"), -999),
        (3, np.array(-999.0, "f8"), -999),
        (6, np.array(-999, "i2"), -999.0),
        (2, b"*", base64.b64encode(b"*").decode()),
    ],
)
def test_fill_value_of_another_type(
    tmp_path: Path, nc_type: int, fill: np.ndarray | bytes, expected: Any
) -> None:
    path = tmp_path / "fill.nc"
    _one_variable_file(path, nc_type, attribute("_FillValue", fill))
    var = NetCDF3Scanner()(str(path)).variables["v"]
    assert var.fill_value == expected
    assert var.attrs == {}


@pytest.mark.parametrize(
    ("nc_type", "fill", "match"),
    [
        (3, np.array([1, 2], "i2"), "_FillValue has 2 values"),
        (3, np.array([], "i2"), "_FillValue has 0 values"),
        (3, np.array(70000, "i4"), "cannot be represented"),
        (3, np.array(1.5, "f8"), "cannot be represented"),
        (4, np.array(np.nan, "f8"), "cannot be represented"),
        (2, np.array(1, "i1"), "does not match"),
        (3, b"x", "does not match"),
    ],
)
def test_bad_fill_value(tmp_path: Path, nc_type: int, fill: np.ndarray | bytes, match: str) -> None:
    path = tmp_path / "fill.nc"
    _one_variable_file(path, nc_type, attribute("_FillValue", fill))
    with pytest.raises(ScanError, match=match) as err:
        NetCDF3Scanner()(str(path))
    assert str(path) in str(err.value) and "'v'" in str(err.value)


# --- real archive files -------------------------------------------------------------------------


def _realdata_netcdf3() -> list[Path]:
    if not REALDATA.is_dir():
        return []
    found = []
    for root, _, files in os.walk(REALDATA):
        for name in files:
            path = Path(root) / name
            with open(path, "rb") as f:
                if NetCDF3Scanner.sniff(f.read(8)):
                    found.append(path)
    return sorted(found)


@pytest.mark.realdata
@pytest.mark.skipif(not REALDATA.is_dir(), reason=f"{REALDATA} does not exist")
@pytest.mark.parametrize("path", _realdata_netcdf3(), ids=lambda p: str(p.relative_to(REALDATA)))
def test_realdata(path: Path) -> None:
    try:
        scan = NetCDF3Scanner()(str(path))
    except ScanError as err:
        assert str(path) in str(err)
        # netcdf-c must refuse the file too: we never reject a file it reads
        with pytest.raises(OSError):
            netCDF4.Dataset(path).close()
        return
    assert_matches_netcdf4(scan, str(path))
    assert_kerchunk_identical(scan, str(path))
