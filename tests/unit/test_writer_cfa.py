"""The CF-1.13 aggregation writer: the file it writes, inspected with netCDF4 and h5py.

Aggregation variables must be scalar, of the unpacked type, with ``aggregated_dimensions``
and ``aggregated_data`` naming an integer ``map`` (rows of fragment sizes padded with its
``_FillValue``), a vlen-string ``uris`` array of fragments and the identifiers; everything
else is stored in the file with the sources' values; attributes are ``char``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import h5py
import netCDF4
import numpy as np
import pytest
from test_combine import LAT, LON, combine_files, read_files, write_nc
from test_combine_fragments import monthly, recompress

from padocc_like.config.models import ProductOptions
from padocc_like.errors import ProductError
from padocc_like.references.model import Aggregate
from padocc_like.writers.base import ProductRecord, get_writer
from padocc_like.writers.cfa import CFAWriter, cf_conventions, fragment_uri


def write(agg: Aggregate, target: Path, **kw: Any) -> ProductRecord:
    return CFAWriter(**kw).write(agg, target, layout="netcdf", revision=1)


def features(var: Any) -> dict[str, str]:
    terms = re.findall(r"(\S+):\s+(\S+)", var.getncattr("aggregated_data"))
    return dict(terms)


def test_writer_is_registered_with_its_options() -> None:
    writer = get_writer("cfa", ProductOptions(kind="cfa", cfa_uris="relative"))
    assert isinstance(writer, CFAWriter) and writer.uris == "relative"
    assert get_writer("cfa").uris == "absolute"
    assert writer.target_name(3, writer.layout_for(None)) == "r3.nc"  # type: ignore[arg-type]


def test_uneven_months_file(tmp_path: Path) -> None:
    """Four months of daily data (31, 28, 31, 30 days) in one aggregation file."""
    paths = monthly(tmp_path / "src", chunk_time=7)
    agg = combine_files(paths, fragments=True)
    target = tmp_path / "products" / "r1.nc"
    record = write(agg, target)
    assert record.kind == "cfa" and record.layout == "netcdf" and record.n_refs == 4
    assert record.media_type == "application/netcdf" and record.size == target.stat().st_size
    assert [p.name for p in target.parent.iterdir()] == ["r1.nc"]  # no temporary file left
    with netCDF4.Dataset(target) as nc:
        assert nc.data_model == "NETCDF4"
        assert nc.Conventions == "CF-1.13"  # the sources say CF-1.8
        tas = nc["tas"]
        assert tas.shape == () and tas.dtype == np.float32
        assert tas._FillValue == np.float32(1e20) and tas.units == "K" and tas.coordinates == "orog"
        assert tas.aggregated_dimensions == "time lat lon"
        terms = features(tas)
        assert sorted(terms) == ["identifiers", "map", "uris"]
        fmap = nc[terms["map"]]
        assert fmap.dtype.kind == "i" and fmap.dimensions[0].startswith("map_j")
        table = fmap[...]
        assert table.shape == (3, 4) and fmap._FillValue == -1
        assert table[0].tolist() == [31, 28, 31, 30]
        assert table[1].compressed().tolist() == [4] and table[2].compressed().tolist() == [5]
        assert table.mask.sum() == 6
        uris = nc[terms["uris"]]
        assert uris.dtype is str and uris.dimensions == ("f_time", "f_lat", "f_lon")
        assert uris[...].reshape(-1).tolist() == [p.resolve().as_uri() for p in paths]
        ids = nc[terms["identifiers"]]
        assert ids.dtype is str and ids.shape == () and ids[...] == "tas"
        # everything else is stored, with the sources' values
        expected = read_files(paths)
        nc.set_auto_maskandscale(False)
        np.testing.assert_array_equal(nc["time"][:], np.concatenate([ds["time"].values for ds in expected]))
        np.testing.assert_array_equal(
            nc["time_bnds"][:], np.concatenate([ds["time_bnds"].values for ds in expected])
        )
        np.testing.assert_array_equal(nc["lat"][:], LAT)
        np.testing.assert_array_equal(nc["lon"][:], LON)
        np.testing.assert_array_equal(nc["orog"][:], expected[0]["orog"].values)
        assert nc["orog"].dtype == np.float32 and "_FillValue" not in nc["lat"].ncattrs()
        assert nc["time"].units == "days since 2000-01-01" and nc["time"].bounds == "time_bnds"
        assert nc.dimensions["time"].size == 120 and not nc.dimensions["time"].isunlimited()
    # attributes are char, not vlen strings
    with h5py.File(target) as f:
        for obj, key in ((f, "Conventions"), (f["tas"], "aggregated_data"), (f["time"], "units")):
            info = h5py.check_string_dtype(obj.attrs.get_id(key).dtype)
            assert info is not None and info.length is not None, key


def test_relative_uris_are_relative_to_the_product(tmp_path: Path) -> None:
    paths = monthly(tmp_path / "archive" / "daily", [3, 4])
    agg = combine_files(paths, fragments=True)
    target = tmp_path / "work" / "products" / "cfa" / "r1.nc"
    write(agg, target, uris="relative")
    with netCDF4.Dataset(target) as nc:
        uris = nc[features(nc["tas"])["uris"]][...].reshape(-1).tolist()
    assert uris == ["../../../archive/daily/m00.nc", "../../../archive/daily/m01.nc"]
    assert [os.path.normpath(target.parent / u) for u in uris] == [str(p) for p in paths]


@pytest.mark.parametrize(
    ("url", "mode", "expected"),
    [
        ("/data/a b.nc", "absolute", "file:///data/a%20b.nc"),
        ("file:///data/x.nc", "absolute", "file:///data/x.nc"),
        ("s3://bucket/x.nc", "absolute", "s3://bucket/x.nc"),
        ("https://host/x.nc", "relative", "https://host/x.nc"),
        ("/data/x.nc", "relative", "../data/x.nc"),
        ("/prod/sub/x.nc", "relative", "sub/x.nc"),
    ],
)
def test_fragment_uris(url: str, mode: Any, expected: str) -> None:
    assert fragment_uri(url, Path("/prod"), mode) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "CF-1.13"),
        ("", "CF-1.13"),
        ("CF-1.8", "CF-1.13"),
        ("CF-1.10", "CF-1.13"),
        ("CF-1.6 ACDD-1.3", "CF-1.13 ACDD-1.3"),
        ("ACDD-1.3", "CF-1.13 ACDD-1.3"),
        (
            "CF-1.0; http://www.cgd.ucar.edu/cms/eaton/netcdf/CF-current.htm",
            # one CF list item per name: cf-python reads "CF-1.13;" as version "1.13;"
            "CF-1.13 http://www.cgd.ucar.edu/cms/eaton/netcdf/CF-current.htm",
        ),
        ("CF-1.6, ACDD-1.3", "CF-1.13 ACDD-1.3"),
        ("CF-1.13", "CF-1.13"),
        ("CF-1.14 ACDD-1.3", "CF-1.14 ACDD-1.3"),
    ],
)
def test_conventions_name_cf_1_13(value: Any, expected: str) -> None:
    out = cf_conventions(value)
    assert out == expected
    assert any(re.fullmatch(r"CF-1\.1[3-9]", name) for name in re.split(r"[ ,]+", out))


def test_split_along_several_dims_shares_maps(tmp_path: Path) -> None:
    """A 2 x 2 x 2 split along time, lat and lon; tas and pr share one map and one uris
    array, orog(lat, lon) has its own; per-dimension fragment counts are dimensions."""
    paths = []
    for start in (0, 6):
        for lat in (LAT[:2], LAT[2:]):
            for lon in (LON[:2], LON[2:]):
                name = f"t{start}_{lat[0]:+.0f}_{lon[0]:.0f}.nc"
                paths.append(write_nc(tmp_path / name, start, 6, lat=lat, lon=lon, variables=("tas", "pr")))
    agg = combine_files(paths, fragments=True)
    target = tmp_path / "r1.nc"
    assert write(agg, target).n_refs == 8 + 8 + 4
    with netCDF4.Dataset(target) as nc:
        tas, pr, orog = (features(nc[n]) for n in ("tas", "pr", "orog"))
        assert tas["map"] == pr["map"] and tas["uris"] == pr["uris"]
        assert tas["identifiers"] != pr["identifiers"]
        assert nc[pr["identifiers"]][...] == "pr"
        assert orog["map"] != tas["map"]
        assert nc["orog"].aggregated_dimensions == "lat lon"
        table = nc[tas["map"]][...]
        assert table.tolist() == [[6, 6], [2, 2], [2, 3]]
        uris = nc[tas["uris"]]
        assert uris.dimensions == ("f_time", "f_lat", "f_lon") and uris.shape == (2, 2, 2)
        assert uris[1, 0, 1] == (tmp_path / "t6_-68_180.nc").as_uri()
        assert nc[orog["uris"]].dimensions == ("f_lat", "f_lon")
        assert nc[orog["map"]][...].tolist() == [[2, 2], [2, 3]]
        assert nc.dimensions["lat"].size == 4 and nc.dimensions["lon"].size == 5


def test_packed_variable_is_aggregated_unpacked(tmp_path: Path) -> None:
    """int16 packed with float32 scale_factor/add_offset: a float32 aggregation variable without
    packing attributes; its fill value and valid range in unpacked terms."""
    attrs = {
        "scale_factor": np.float32(0.5),
        "add_offset": np.float32(100),
        "valid_range": np.int16([0, 200]),
    }
    paths = [
        write_nc(tmp_path / "a.nc", 0, 5, dtype="i2", fill_value=np.int16(-999), var_attrs=attrs),
        recompress(
            write_nc(tmp_path / "b.nc", 5, 3, dtype="i2", fill_value=np.int16(-999), var_attrs=attrs),
            chunksizes=(1, 4, 5),
        ),
    ]
    agg = combine_files(paths, fragments=True)
    target = tmp_path / "r1.nc"
    write(agg, target)
    with netCDF4.Dataset(target) as nc:
        tas = nc["tas"]
        assert tas.dtype == np.float32 and tas.shape == ()
        assert "scale_factor" not in tas.ncattrs() and "add_offset" not in tas.ncattrs()
        assert tas._FillValue == np.float32(-999)
        assert tas.valid_range.tolist() == [100.0, 200.0]


def test_failed_write_leaves_the_old_product(tmp_path: Path) -> None:
    """A name the file needs is taken by a source variable: ProductError, nothing replaced."""
    paths = monthly(tmp_path / "src", [3, 4], variables=("tas", "fragment_map_0"))
    agg = combine_files(paths, fragments=True)
    target = tmp_path / "out" / "r1.nc"
    target.parent.mkdir()
    target.write_bytes(b"old")
    with pytest.raises(ProductError, match="'fragment_map_0'"):
        write(agg, target)
    assert target.read_bytes() == b"old"
    assert [p.name for p in target.parent.iterdir()] == ["r1.nc"]


def test_same_aggregate_gives_the_same_bytes(tmp_path: Path) -> None:
    """Deterministic output, whatever order the scans listed the dimensions in."""
    agg = combine_files(monthly(tmp_path / "src", [3, 4]), fragments=True)
    first = write(agg, tmp_path / "a" / "r1.nc")
    agg.dims = dict(reversed(agg.dims.items()))
    second = write(agg, tmp_path / "b" / "r1.nc")
    assert first.sha256 == second.sha256


def _flagged_months(root: Path, flags: list[int | None], fill: int = -99) -> list[Path]:
    """Months of 31, 28 and 31 days: ``tas`` varies, ``flag(time)`` holds one value per file
    (``None``: all _FillValue)."""
    rng = np.random.default_rng(3)
    paths, start = [], 0
    for k, (days, flag) in enumerate(zip((31, 28, 31), flags, strict=True)):
        path = root / f"m{k}.nc"
        with netCDF4.Dataset(path, "w") as nc:
            nc.createDimension("time", None)
            nc.createDimension("lat", 3)
            t = nc.createVariable("time", "f8", ("time",))
            t.units, t.calendar = "days since 2000-01-01", "standard"
            t[:] = np.arange(start, start + days)
            tas = nc.createVariable("tas", "f4", ("time", "lat"))
            tas[:] = rng.normal(size=(days, 3)).astype("f4")
            f = nc.createVariable("flag", "i4", ("time",), fill_value=fill)
            f[:] = np.full(days, fill if flag is None else flag, dtype="i4")
        paths.append(path)
        start += days
    return paths


def test_constant_fragments_as_unique_values(tmp_path: Path) -> None:
    """With ``unique_values``, a variable constant in every file is written as CF-1.13
    ``unique_values`` (a wholly missing fragment masked), the others keep their URIs; our
    reader gives the sources' values."""
    import xarray as xr

    paths = _flagged_months(tmp_path, [1, 7, None])
    target = tmp_path / "r1.nc"
    write(combine_files(paths, fragments=True), target, unique_values=True)
    with netCDF4.Dataset(target) as nc:
        flag_terms, tas_terms = features(nc["flag"]), features(nc["tas"])
        assert set(flag_terms) == {"map", "unique_values"} and "uris" in tas_terms
        uniq = nc[flag_terms["unique_values"]][:]
        assert uniq.mask.tolist() == [False, False, True] and uniq[:2].tolist() == [1, 7]
        assert nc[flag_terms["map"]][0, :].tolist() == [31, 28, 31]
    with xr.open_dataset(target, engine="padocc_cfa") as ds, xr.open_mfdataset(paths) as ref:
        assert np.array_equal(ds["flag"].values, ref["flag"].values, equal_nan=True)
        assert np.array_equal(ds["tas"].values, ref["tas"].values)


def test_unique_values_only_where_every_fragment_is_constant(tmp_path: Path) -> None:
    paths = _flagged_months(tmp_path, [1, 7, 3])
    with netCDF4.Dataset(paths[1], "a") as nc:
        nc["flag"][5] = 8  # the second month is no longer constant
    target = tmp_path / "r1.nc"
    write(combine_files(paths, fragments=True), target, unique_values=True)
    with netCDF4.Dataset(target) as nc:
        assert "uris" in features(nc["flag"])
    constant = tmp_path / "constant"
    constant.mkdir()
    write(combine_files(_flagged_months(constant, [1, 2, 3]), fragments=True), tmp_path / "r2.nc")
    with netCDF4.Dataset(tmp_path / "r2.nc") as nc:
        assert "uris" in features(nc["flag"])  # off by default: cfapyx cannot read unique_values
