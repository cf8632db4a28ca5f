"""Validation's synchronous chunk reads (:mod:`padocc_like.validation.direct`) equal zarr's.

The references come from kerchunk's own ``SingleHdf5ToZarr`` (not our writer), and every
read is compared with zarr reading the same references through xarray: edge chunks on
every axis, chunks never written (fill value), inline chunks, big-endian data, and any
slab of slices (Hypothesis).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from padocc_like.validation.compare import RAW_OPEN
from padocc_like.validation.direct import DirectArray, NotLocalError, OpenFiles, direct_array
from padocc_like.validation.values import ProductSide

SHAPE = (7, 5, 6)
CHUNKS = (2, 3, 4)


def _write(path: Path) -> None:
    import netCDF4

    rng = np.random.default_rng(1)
    with netCDF4.Dataset(path, "w") as ds:
        for name, n in zip(("t", "y", "x"), SHAPE, strict=True):
            ds.createDimension(name, n)
        v = ds.createVariable("v", "f4", ("t", "y", "x"), chunksizes=CHUNKS, zlib=True, shuffle=True)
        v[:] = rng.normal(size=SHAPE).astype("f4")
        b = ds.createVariable("b", ">i2", ("t", "y", "x"), chunksizes=CHUNKS, endian="big")
        b[:] = rng.integers(-999, 999, size=SHAPE)
        g = ds.createVariable("g", "f8", ("t", "y", "x"), chunksizes=CHUNKS, fill_value=-1.5, zlib=True)
        g[0:2, 0:3, 0:4] = 7.0  # one chunk written: the rest are never stored
        x = ds.createVariable("x", "f8", ("x",))
        x[:] = np.arange(6) * 0.5


@pytest.fixture(scope="module")
def refs_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kerchunk.hdf import SingleHdf5ToZarr

    root = tmp_path_factory.mktemp("direct")
    nc = root / "a.nc"
    _write(nc)
    refs = SingleHdf5ToZarr(str(nc), inline_threshold=100).translate()  # small arrays inline
    out = root / "refs.json"
    out.write_text(json.dumps(refs))
    return out


def _open(path: Path):
    import xarray as xr

    return xr.open_dataset(
        str(path),
        engine="kerchunk",
        storage_options={"remote_protocol": "file"},
        open_dataset_options={"chunks": None},  # as validation opens it: plain zarr arrays
        **RAW_OPEN,
    )


@pytest.fixture(scope="module")
def ds(refs_path: Path):
    d = _open(refs_path)
    yield d
    d.close()


def _zarr(ds, name: str, key) -> np.ndarray:
    return np.asarray(ds.variables[name][key].values)


@pytest.mark.parametrize("name", ["v", "b", "g"])
def test_whole_arrays_equal_zarr(ds, name):
    files = OpenFiles()
    direct = direct_array(ds.variables[name], files)
    assert direct is not None
    key = tuple(slice(None) for _ in ds.variables[name].shape)
    got, want = direct.read(key), _zarr(ds, name, key)
    assert got.shape == want.shape
    assert got.astype(want.dtype).tobytes() == want.tobytes()
    files.close()


def test_index_coordinates_are_not_read_directly(ds):
    # xarray holds them in memory (a pandas index): there is no zarr array under them
    assert direct_array(ds.variables["x"], OpenFiles()) is None


def test_chunks_never_written_read_as_the_fill_value(ds):
    direct = direct_array(ds.variables["g"], OpenFiles())
    got = direct.read((slice(None),) * 3)
    assert (got[0:2, 0:3, 0:4] == 7.0).all()
    assert (got[2:] == -1.5).all() and np.count_nonzero(got == -1.5) == got.size - 24


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_slab_equals_zarr(ds, data):
    name = data.draw(st.sampled_from(["v", "b", "g"]))
    key = []
    for n in SHAPE:
        a = data.draw(st.integers(0, n))
        b = data.draw(st.integers(a, n))
        key.append(slice(a, b))
    direct = direct_array(ds.variables[name], OpenFiles())
    got, want = direct.read(tuple(key)), _zarr(ds, name, tuple(key))
    assert got.shape == want.shape
    assert got.astype(want.dtype).tobytes() == want.tobytes()


def test_remote_references_are_left_to_zarr(refs_path, tmp_path):
    refs = json.loads(refs_path.read_text())
    for k, v in refs["refs"].items():
        if k.startswith("v/") and isinstance(v, list):
            refs["refs"][k] = ["s3://bucket/a.nc", *v[1:]]
    path = tmp_path / "remote.json"
    path.write_text(json.dumps(refs))
    d = _open(path)
    direct = direct_array(d.variables["v"], OpenFiles())
    with pytest.raises(NotLocalError):
        direct.read((slice(0, 1), slice(None), slice(None)))
    d.close()


def test_inline_chunks_are_decoded(refs_path, tmp_path):
    refs = json.loads(refs_path.read_text())
    key = next(k for k, v in refs["refs"].items() if k.startswith("v/") and isinstance(v, list))
    url, offset, size = refs["refs"][key]
    with open(url.removeprefix("file://"), "rb") as f:
        f.seek(offset)
        refs["refs"][key] = "base64:" + base64.b64encode(f.read(size)).decode()
    path = tmp_path / "inline.json"
    path.write_text(json.dumps(refs))
    d = _open(path)
    whole = (slice(None),) * 3
    assert direct_array(d.variables["v"], OpenFiles()).read(whole).tobytes() == _zarr(d, "v", whole).tobytes()
    d.close()


def test_open_files_stay_bounded(tmp_path):
    files = OpenFiles()
    for i in range(10):
        p = tmp_path / f"f{i}"
        p.write_bytes(bytes(range(10)))
        assert files.pread(str(p), 2, 5) == bytes([2, 3, 4])
    assert len(files._fds) <= 4
    with pytest.raises(OSError, match="referenced"):
        files.pread(str(tmp_path / "f0"), 8, 20)
    files.close()


def test_product_side_falls_back_to_zarr_when_the_loop_disagrees(ds, monkeypatch):
    """A direct read that differs from zarr's on the first slab is never used."""
    side = ProductSide(ds)
    monkeypatch.setattr(DirectArray, "read", lambda self, key: np.zeros(SHAPE, "f4")[tuple(key)])
    key = (slice(0, 3), slice(None), slice(None))
    assert side.read("v", key).tobytes() == _zarr(ds, "v", key).tobytes()
    assert side._direct["v"] is None  # zarr from now on
    side.close(dataset=False)


def test_product_side_reads_directly_once_checked(ds, monkeypatch):
    side = ProductSide(ds)
    key = (slice(2, 5), slice(None), slice(None))
    assert side.read("v", key).tobytes() == _zarr(ds, "v", key).tobytes()
    assert "v" in side._checked and side._direct["v"] is not None
    calls = []
    monkeypatch.setattr(ProductSide, "_read_zarr", lambda self, n, k: calls.append(n))
    assert side.read("v", (slice(0, 2), slice(None), slice(None))).shape == (2, 5, 6)
    assert calls == []  # checked once: no second read through zarr
    side.close(dataset=False)
