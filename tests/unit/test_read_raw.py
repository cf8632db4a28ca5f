"""read_raw: a variable's stored values assembled from its chunk table, against netCDF4."""

from __future__ import annotations

import netCDF4
import numpy as np
import pytest

from padocc_like.references.read import file_reader, read_raw
from padocc_like.scanners.hdf5 import HDF5Scanner


@pytest.mark.parametrize("n", [1, 5, 6])
@pytest.mark.parametrize("chunk", [1, 2, 4])
@pytest.mark.parametrize("zlib", [False, True])
@pytest.mark.parametrize("inline_threshold", [0, 500])
def test_read_raw_equals_netcdf4(tmp_path, n, chunk, zlib, inline_threshold):
    """Both the stacked fast path (unfiltered, split along the first axis) and the general path."""
    path = tmp_path / "f.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("time", None)
        ds.createDimension("bnds", 2)
        ds.createDimension("x", 3)
        tb = ds.createVariable("time_bnds", "f8", ("time", "bnds"), chunksizes=(chunk, 2), zlib=zlib)
        tb[:] = np.arange(2 * n, dtype="f8").reshape(n, 2) + 0.5
        v = ds.createVariable("v", "i2", ("time", "x"), chunksizes=(chunk, 2), zlib=zlib, fill_value=-9)
        v[: max(n - 1, 0)] = np.arange(3 * max(n - 1, 0)).reshape(-1, 3)  # last step unwritten
    scan = HDF5Scanner(inline_threshold=inline_threshold)(str(path))
    with netCDF4.Dataset(path) as ds, file_reader(str(path)) as read_range:
        ds.set_auto_maskandscale(False)
        for name in ("time_bnds", "v"):
            got = read_raw(scan.variables[name], read_range)
            np.testing.assert_array_equal(got, ds[name][...], err_msg=name)
            assert got.dtype == ds[name].dtype
