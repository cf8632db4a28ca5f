"""Validation's chunk-by-chunk source reads (:mod:`padocc_like.validation.source_chunks`)
equal h5py's, or decline.

Files are written with h5py's low-level API, so the filter pipelines are exactly what the
test says: shuffle then deflate, deflate then shuffle, deflate alone, big-endian values,
edge chunks on every axis, chunks never written (HDF5's fill value), a chunk stored with a
filter skipped, and pipelines the reader does not do (deflate then shuffle, fletcher32, none). Every read is compared with h5py's read
of the same selection, for any slab of slices (Hypothesis).
"""

from __future__ import annotations

import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from padocc_like.validation import source_chunks as sc
from padocc_like.validation.values import VarMeta, _Source

SHAPE = (7, 5, 6)
CHUNKS = (2, 3, 4)


def _dataset(
    f: h5py.File, name: str, dtype: str, filters: list[str], fill: float | None = None
) -> h5py.Dataset:
    """A chunked dataset whose pipeline is ``filters`` in that order."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_chunk(CHUNKS)
    for f_ in filters:
        {
            "shuffle": dcpl.set_shuffle,
            "deflate": lambda: dcpl.set_deflate(4),
            "fletcher32": dcpl.set_fletcher32,
        }[f_]()
    if fill is not None:
        dcpl.set_fill_value(np.array(fill, dtype=dtype))
    space = h5py.h5s.create_simple(SHAPE)
    dsid = h5py.h5d.create(f.id, name.encode(), h5py.h5t.py_create(np.dtype(dtype)), space, dcpl=dcpl)
    return h5py.Dataset(dsid)


@pytest.fixture(scope="module")
def path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("source_chunks") / "a.h5"
    rng = np.random.default_rng(3)
    with h5py.File(out, "w") as f:
        _dataset(f, "shuffled", "<f4", ["shuffle", "deflate"])[...] = rng.normal(size=SHAPE)
        _dataset(f, "reversed", "<i4", ["deflate", "shuffle"])[...] = rng.integers(-9999, 9999, size=SHAPE)
        _dataset(f, "big", ">i2", ["deflate"])[...] = rng.integers(-999, 999, size=SHAPE)
        sparse = _dataset(f, "sparse", "<f8", ["shuffle", "deflate"], fill=-1.5)
        sparse[0:2, 0:3, 0:4] = 7.0  # one chunk stored, the rest never written
        sparse[6:7, 3:5, 4:6] = 8.0  # and the far corner (an edge chunk on every axis)
        _dataset(f, "checksummed", "<f4", ["shuffle", "deflate", "fletcher32"])[...] = 1.0
        _dataset(f, "plain", "<f4", [])[...] = 2.0
        skipped = _dataset(f, "skipped", "<f4", ["deflate"])
        skipped[...] = 3.0
        raw = np.full(CHUNKS, 4.0, dtype="<f4").tobytes()
        skipped.id.write_direct_chunk((0, 0, 0), raw, filter_mask=1)  # stored without deflate
    return out


@pytest.fixture
def h5(path: Path):
    with h5py.File(path, "r") as f:
        yield f


@pytest.mark.parametrize("name", ["shuffled", "big", "sparse"])
def test_whole_dataset_equals_h5py(h5: h5py.File, path: Path, name: str) -> None:
    reader = sc.source_chunks(h5[name], str(path))
    assert reader is not None
    try:
        got = reader.read((slice(None),) * 3)
    finally:
        reader.close()
    want = h5[name][()]
    assert got.dtype == want.dtype and got.tobytes() == want.tobytes()


@pytest.mark.parametrize("name", ["checksummed", "plain", "skipped", "reversed"])
def test_declines_what_it_does_not_decode(h5: h5py.File, path: Path, name: str) -> None:
    assert sc.source_chunks(h5[name], str(path)) is None


def test_declines_without_zlib_ng(h5: h5py.File, path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sc, "inflater", lambda: None)
    assert sc.source_chunks(h5["shuffled"], str(path)) is None


def test_selections_other_than_slices_are_refused(h5: h5py.File, path: Path) -> None:
    reader = sc.source_chunks(h5["shuffled"], str(path))
    assert reader is not None
    with pytest.raises(NotImplementedError):
        reader.read((np.array([0, 2]), slice(None), slice(None)))
    with pytest.raises(NotImplementedError):
        reader.read((slice(0, 4, 2), slice(None), slice(None)))
    reader.close()


def _slab(n: int) -> st.SearchStrategy[slice]:
    return st.tuples(st.integers(0, n), st.integers(0, n)).map(lambda ab: slice(min(ab), max(ab)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["shuffled", "big", "sparse"]), key=st.tuples(*(_slab(n) for n in SHAPE)))
def test_any_slab_equals_h5py(h5: h5py.File, path: Path, name: str, key: tuple[slice, ...]) -> None:
    reader = sc.source_chunks(h5[name], str(path))
    assert reader is not None
    try:
        got = reader.read(key)
    finally:
        reader.close()
    want = h5[name][key]
    assert got.shape == want.shape and got.dtype == want.dtype and got.tobytes() == want.tobytes()


def _meta(f: h5py.File, name: str) -> dict[str, VarMeta]:
    ds = f[name]
    return {name: VarMeta(("t", "y", "x"), tuple(ds.shape), ds.dtype.str)}


def test_source_uses_chunks_once_proven(path: Path, h5: h5py.File) -> None:
    checks: dict[str, bool] = {}
    src = _Source(str(path), _meta(h5, "shuffled"), checks)
    try:
        first = src.read("shuffled", (slice(0, 3), slice(None), slice(None)))
        assert checks == {"shuffled": True}
        assert isinstance(src._chunked["shuffled"], sc.SourceChunks)
        assert first.tobytes() == h5["shuffled"][0:3].tobytes()
    finally:
        src.close()


def test_source_falls_back_to_h5py_when_chunks_differ(
    path: Path, h5: h5py.File, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A chunk reader that disagrees with h5py on the first slab is not used again in the
    process, and the values returned are h5py's."""
    real = sc.SourceChunks.read

    def wrong(self: sc.SourceChunks, key: tuple[slice, ...]) -> np.ndarray:
        out = real(self, key)
        out.reshape(-1)[0] += 1
        return out

    monkeypatch.setattr(sc.SourceChunks, "read", wrong)
    checks: dict[str, bool] = {}
    for _ in range(2):  # two files of one run share the verdict
        src = _Source(str(path), _meta(h5, "shuffled"), checks)
        try:
            got = src.read("shuffled", (slice(None),) * 3)
        finally:
            src.close()
        assert got.tobytes() == h5["shuffled"][()].tobytes()
        assert checks == {"shuffled": False}
    assert "differ from h5py's" in caplog.text


def test_corrupt_chunk_goes_back_to_h5py(tmp_path: Path) -> None:
    """A stored chunk that does not decode to a whole chunk: the reader raises, and the
    source reads that variable through h5py from then on."""
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        ds = _dataset(f, "v", "<f4", ["deflate"])
        ds[...] = 1.0
        ds.id.write_direct_chunk((0, 0, 0), zlib.compress(b"\0" * 10), filter_mask=0)  # too short
    with h5py.File(path, "r") as f:
        reader = sc.source_chunks(f["v"], str(path))
        assert reader is not None
        with pytest.raises(ValueError, match="decodes to 10 bytes"):
            reader.read((slice(0, 2), slice(0, 3), slice(0, 4)))
        reader.close()
        src = _Source(str(path), _meta(f, "v"), {})
        try:
            # h5py returns whatever HDF5 makes of the short chunk (not even the same bytes
            # twice: the rest of its buffer is uninitialised), so only the route is checked
            assert src.read("v", (slice(None),) * 3).shape == SHAPE
            assert src._chunked["v"] is None
        finally:
            src.close()
