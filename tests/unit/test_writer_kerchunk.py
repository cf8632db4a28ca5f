"""The Kerchunk writer: JSON and Parquet layouts hold the same references and read the same."""

from __future__ import annotations

import json

import netCDF4
import numpy as np
import pytest
import xarray as xr

from padocc_like.references.combine import combine
from padocc_like.scanners.base import scan_file
from padocc_like.writers.kerchunk import KerchunkWriter


def _file_with_gaps(path, t0: int) -> None:
    """Chunks left unwritten (fill value), tiny chunks (inlined), a scalar and a 2-D grid."""
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("time", None)
        ds.createDimension("y", 30)
        ds.createDimension("x", 40)
        t = ds.createVariable("time", "f8", ("time",))
        t.units, t.calendar = "days since 2000-01-01", "standard"
        t[:] = np.arange(t0, t0 + 4)
        v = ds.createVariable(
            "v", "f4", ("time", "y", "x"), chunksizes=(1, 15, 20), zlib=True, fill_value=-999.0
        )
        rng = np.random.default_rng(t0)
        v[0] = rng.random((30, 40), dtype="f4")  # incompressible: referenced, not inlined
        v[2, :15, :20] = 7.0  # a constant chunk (inlined); steps 1 and 3 never written
        s = ds.createVariable("s", "i2", ())
        s[...] = 3


@pytest.mark.parametrize("record_size", [1, 5, 1000])
def test_json_and_parquet_read_identically(tmp_path, record_size):
    files = [tmp_path / "a.nc", tmp_path / "b.nc"]
    _file_with_gaps(files[0], 0)
    _file_with_gaps(files[1], 4)
    agg = combine([scan_file(str(f)) for f in files])
    writer = KerchunkWriter(record_size=record_size)
    rj = writer.write(agg, tmp_path / "r1.json", layout="json", revision=1)
    rp = writer.write(agg, tmp_path / "r1.parq", layout="parquet", revision=1)
    assert rj.n_refs == rp.n_refs > 0
    dj = writer.open_dataset(rj, mask_and_scale=False)
    dp = writer.open_dataset(rp, mask_and_scale=False)
    xr.testing.assert_identical(dj, dp)
    ref = xr.open_mfdataset(
        [str(f) for f in files],
        combine="nested",
        concat_dim="time",
        data_vars="minimal",
        coords="minimal",
        compat="override",
        mask_and_scale=False,
    )
    np.testing.assert_array_equal(dp.v.values, ref.v.values)
    assert int(dp.s) == 3
    meta = json.loads((tmp_path / "r1.parq" / ".zmetadata").read_text())
    assert meta["record_size"] == record_size
    n_chunks = 8 * 2 * 2  # steps x chunk rows x chunk columns
    assert len(list((tmp_path / "r1.parq" / "v").glob("refs.*.parq"))) == -(-n_chunks // record_size)


def test_json_is_deterministic(tmp_path):
    files = [tmp_path / "a.nc", tmp_path / "b.nc"]
    _file_with_gaps(files[0], 0)
    _file_with_gaps(files[1], 4)
    writer = KerchunkWriter()
    a = writer.write(
        combine([scan_file(str(f)) for f in files]), tmp_path / "a.json", layout="json", revision=1
    )
    b = writer.write(
        combine([scan_file(str(f)) for f in reversed(files)]), tmp_path / "b.json", layout="json", revision=1
    )
    assert a.sha256 == b.sha256


def test_parquet_missing_chunks_read_as_fill_through_dask(tmp_path):
    """Batched (dask) reads of unstored chunks give the fill value, not a broken reference."""
    files = [tmp_path / "a.nc", tmp_path / "b.nc"]
    _file_with_gaps(files[0], 0)
    _file_with_gaps(files[1], 4)
    agg = combine([scan_file(str(f)) for f in files])
    rec = KerchunkWriter(record_size=7).write(agg, tmp_path / "r1.parq", layout="parquet", revision=1)
    ds = xr.open_dataset(
        rec.path,
        engine="kerchunk",
        chunks={},
        mask_and_scale=False,
        storage_options={"remote_protocol": "file"},
    )
    # every chunk resolves to bytes: fsspec, which reads a null path back as NaN under
    # pandas >= 3, must never meet a row without a reference
    import fsspec

    fs = fsspec.filesystem("reference", fo=rec.path, remote_protocol="file", skip_instance_cache=True)
    assert isinstance(fs.cat("v/1.0.0", on_error="raise"), bytes)  # step 1 was never written
    values = ds.v.values
    assert (values[1] == -999.0).all() and (values[3] == -999.0).all()  # steps never written
    ref = xr.open_mfdataset(
        [str(f) for f in files],
        combine="nested",
        concat_dim="time",
        data_vars="minimal",
        coords="minimal",
        compat="override",
        mask_and_scale=False,
    )
    np.testing.assert_array_equal(values, ref.v.values)
