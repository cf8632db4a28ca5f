"""The native HDF5 reader gives exactly the h5py backend's scan, or declines the file.

:func:`compare_backends` scans one file with each backend alone (``HDF5Scanner(backend=...)``)
and is the single definition of agreement: the native FileScan equals the h5py FileScan (the
JSON of ``to_dict``, key order included), or both backends raise the same error, or the native
reader declines (:class:`NativeUnsupported`), after which the scanner reads the file with h5py.

It runs on

* every file the HDF5 scanner tests write (an autouse fixture in ``test_scanner_hdf5.py``);
* a corpus of files written here to cover the format: old- and new-style groups, compact and
  dense attributes and links, every chunk index (v1 B-tree, single chunk, implicit, fixed
  array with and without pages, extensible array with and without pages, v2 B-tree of one and
  more levels), contiguous and compact layouts, variable-length strings, fill values, filters;
* random netCDF-4 files (Hypothesis);
* damaged files, which must end in a ScanError naming the file.

The common cases must not be declined (else the speed-up silently vanishes): the corpus
marks the files the native reader must read itself.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import netCDF4
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from padocc_like.errors import ScanError, UnsupportedFeatureError
from padocc_like.references.model import FileScan
from padocc_like.references.read import read_raw
from padocc_like.scanners import _hdf5_format as fmt
from padocc_like.scanners.hdf5 import HDF5Scanner
from padocc_like.scanners.hdf5_native import NativeUnsupported, scan_native

H5PY_CHUNK_OFFSET_BUG = "report chunk offsets that disagree"
"""The h5py backend's refusal of files whose chunk offsets HDF5 misreports (see
``test_extensible_array_with_a_later_unlimited_dimension``): the native scan is checked
against the values HDF5 reads instead."""


# --- the agreement check --------------------------------------------------------------------------


def _read_range(path: str) -> Callable[[int, int], bytes]:
    def read(offset: int, length: int) -> bytes:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(length)

    return read


def _scan(path: str, backend: str, inline_threshold: int) -> FileScan | Exception:
    """One backend alone (not through ``HDF5Scanner.__call__``, which tests may wrap)."""
    try:
        if backend == "native":
            return scan_native(path, inline_threshold)
        return HDF5Scanner(inline_threshold=inline_threshold)._scan_h5py(path)
    except Exception as err:  # the outcome to compare
        return err


def _as_json(scan: FileScan) -> str:
    return json.dumps(scan.to_dict())


def compare_backends(path: str | Path, inline_threshold: int = 500) -> str | None:
    """Assert that the native backend agrees with the h5py backend on ``path``.

    Returns None when the native reader read the file itself, else why it declined.
    """
    path = str(path)
    expected = _scan(path, "h5py", inline_threshold)
    got = _scan(path, "native", inline_threshold)
    if isinstance(got, NativeUnsupported):
        return str(got) or type(got).__name__
    if isinstance(expected, UnsupportedFeatureError) and H5PY_CHUNK_OFFSET_BUG in str(expected):
        assert isinstance(got, FileScan), (path, got)
        _assert_reads_like_hdf5(path, got)
        return None
    if isinstance(expected, Exception):
        assert isinstance(got, Exception), f"{path}: h5py raised {expected!r}, native scanned the file"
        assert type(got) is type(expected), (path, expected, got)
        if not isinstance(expected, FileNotFoundError):  # (the OS words that one)
            assert str(got) == str(expected), (path, expected, got)
        return None
    assert isinstance(got, FileScan), f"{path}: h5py scanned the file, native raised {got!r}"
    assert _as_json(got) == _as_json(expected), f"{path}: the native scan differs from h5py's"
    return None


def _assert_reads_like_hdf5(path: str, scan: FileScan) -> None:
    """Every variable of the scan reads the values HDF5 reads."""
    with h5py.File(path, "r") as f:
        for name, var in scan.variables.items():
            expected = f[name][()]
            got = read_raw(var, _read_range(path))
            assert np.array_equal(got, expected), name


def native_reads(path: str | Path, inline_threshold: int = 500) -> None:
    """The native reader reads ``path`` itself, and agrees with h5py (it may decline a file
    that h5py cannot scan either: the scanner raises h5py's error then)."""
    reason = compare_backends(path, inline_threshold)
    if reason is not None:
        h5py_outcome = _scan(str(path), "h5py", inline_threshold)
        assert isinstance(h5py_outcome, ScanError), f"{path}: the native reader declined: {reason}"


# --- a corpus covering the format ---------------------------------------------------------------


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def write_netcdf4_default(path: Path) -> None:
    """netCDF4-python with the default settings: unlimited time, coordinates, bounds, chunked
    zlib variables, a dense set of global attributes, NC_STRING and char attributes."""
    rng = _rng()
    with netCDF4.Dataset(path, "w") as ds:
        for i in range(30):
            ds.setncattr(f"attr_{i:02d}", f"value {i}")
        ds.setncattr_string("strings", ["a", "bb", "ccc"])
        ds.setncattr_string("one_string", "x")
        ds.numbers = np.arange(5, dtype="i8")
        ds.single = np.float32(1.5)
        ds.not_a_number = np.nan
        ds.empty = ""
        ds.createDimension("time", None)
        ds.createDimension("y", 5)
        ds.createDimension("x", 7)
        ds.createDimension("bnds", 2)
        t = ds.createVariable("time", "f8", ("time",))
        t.units = "days since 2000-01-01"
        t.bounds = "time_bnds"
        for j in range(12):
            t.setncattr(f"extra_{j}", j)  # more than 8 attributes: dense storage
        t[:] = np.arange(12) + 0.5
        ds.createVariable("time_bnds", "f8", ("time", "bnds"))[:] = np.arange(24).reshape(12, 2)
        v = ds.createVariable(
            "v",
            "f4",
            ("time", "y", "x"),
            zlib=True,
            shuffle=True,
            chunksizes=(5, 3, 7),
            fill_value=np.float32(-1),
        )
        v.units = "K"
        v[:] = rng.normal(size=(12, 5, 7))
        w = ds.createVariable(
            "w", "i2", ("y", "x"), fill_value=np.int16(3), fletcher32=True, chunksizes=(2, 7)
        )
        w.valid_range = np.array([0, 10], "i2")
        w[0:2] = 1
        c = ds.createVariable("label", "S1", ("x",))
        c[:] = np.array(list("abcdefg"), "S1")
        ds.createVariable("short", "u1", ("time",))[:5] = 1  # shorter than its unlimited dimension
        ds.createVariable("big_endian", ">i4", ("x",), endian="big")[:] = np.arange(7)
        ds.createVariable("contiguous", "f8", ("y",), contiguous=True)[:] = np.arange(5.0)
        ds.createVariable("scalar", "i8", ())[...] = 3


def write_netcdf4_classic(path: Path) -> None:
    with netCDF4.Dataset(path, "w", format="NETCDF4_CLASSIC") as ds:
        ds.title = "classic model"
        ds.createDimension("x", 3)
        ds.createVariable("x", "f4", ("x",))[:] = [1, 2, 3]


def write_netcdf4_many_variables(path: Path) -> None:
    """Forty variables: the root group's links are dense (fractal heap + v2 B-tree)."""
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("x", 4)
        for i in range(40):
            ds.createVariable(f"var{i:02d}", "f4", ("x",))[:] = i


def write_bench_like(path: Path) -> None:
    """Like the benchmark archive's files (bench/bench_refs.py): daily tas and pr."""
    rng = _rng(1)
    with netCDF4.Dataset(path, "w") as ds:
        for key in ("Conventions", "title", "institution", "source", "history", "references", "comment"):
            ds.setncattr(key, f"{key} text")
        for key in ("frequency", "realm", "experiment_id", "variant_label", "grid", "nominal_resolution"):
            ds.setncattr(key, key)
        ds.createDimension("time", None)
        ds.createDimension("lat", 18)
        ds.createDimension("lon", 36)
        ds.createDimension("bnds", 2)
        t = ds.createVariable("time", "f8", ("time",))
        t.setncatts(
            {"units": "days since 1850-01-01", "calendar": "360_day", "axis": "T", "bounds": "time_bnds"}
        )
        t[:] = np.arange(30) + 0.5
        ds.createVariable("time_bnds", "f8", ("time", "bnds"))[:] = np.arange(60.0).reshape(30, 2)
        for name, n in (("lat", 18), ("lon", 36)):
            c = ds.createVariable(name, "f8", (name,))
            c.units = "degrees"
            c[:] = np.linspace(0, 1, n)
            ds.createVariable(f"{name}_bnds", "f8", (name, "bnds"))[:] = np.zeros((n, 2))
        h = ds.createVariable("height", "f8", ())
        h.units = "m"
        h[...] = 2.0
        for name in ("tas", "pr"):
            v = ds.createVariable(
                name,
                "f4",
                ("time", "lat", "lon"),
                zlib=True,
                shuffle=True,
                chunksizes=(1, 18, 36),
                fill_value=1e20,
            )
            v.setncatts({"standard_name": name, "units": "K", "missing_value": np.float32(1e20)})
            v[:] = rng.normal(size=(30, 18, 36))


def write_h5py_groups(libver: str) -> Callable[[Path], None]:
    """h5py with ``libver='earliest'`` (old-style groups, v1 B-trees) or ``'latest'`` (new-style
    groups, layout v4: single chunk, fixed array, extensible array, v2 B-tree indexes)."""

    def write(path: Path) -> None:
        rng = _rng(2)
        with h5py.File(path, "w", libver=libver) as f:
            f.attrs["title"] = "hello"
            for i in range(20):
                f.attrs[f"k{i:02d}"] = i
            f.attrs["vlen"] = np.array(["ab", "cé"], dtype=h5py.string_dtype())
            f.attrs["vlen_ascii"] = np.array([b"x", b""], dtype=h5py.string_dtype("ascii"))
            f.attrs["empty_number"] = h5py.Empty("f4")
            f.attrs["empty_string"] = h5py.Empty("S3")
            f.attrs["fixed_strings"] = np.array([b"ab\x00c", b"x  "], dtype="S4")
            f["fixed"] = rng.normal(size=(20, 30)).astype("f4")
            f.create_dataset(
                "fixed_chunked", data=rng.normal(size=(20, 30)), chunks=(6, 7), compression="gzip"
            )
            f.create_dataset("fixed_chunked_raw", data=rng.normal(size=(20, 30)), chunks=(6, 7))
            f.create_dataset("single", data=np.arange(12.0).reshape(3, 4), chunks=(3, 4), compression="gzip")
            f.create_dataset("single_raw", data=np.arange(12.0).reshape(3, 4), chunks=(3, 4))
            e = f.create_dataset(
                "one_unlimited",
                shape=(10, 6),
                maxshape=(None, 6),
                chunks=(3, 4),
                dtype="i4",
                compression="gzip",
            )
            e[:] = np.arange(60).reshape(10, 6)
            e = f.create_dataset(
                "one_unlimited_raw", shape=(10, 6), maxshape=(None, 6), chunks=(3, 4), dtype="i4"
            )
            e[:] = np.arange(60).reshape(10, 6)
            b = f.create_dataset(
                "two_unlimited",
                shape=(10, 6),
                maxshape=(None, None),
                chunks=(3, 4),
                dtype="f8",
                compression="gzip",
            )
            b[:] = np.arange(60).reshape(10, 6)
            b = f.create_dataset(
                "two_unlimited_raw", shape=(10, 6), maxshape=(None, None), chunks=(3, 4), dtype="<f8"
            )
            b[3:10] = 1
            f.create_dataset("sparse", shape=(100,), chunks=(10,), dtype="u2", fillvalue=9)[35] = 1
            f.create_dataset(
                "fletcher", data=np.arange(40).reshape(8, 5), chunks=(4, 5), fletcher32=True, shuffle=True
            )
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            dcpl.set_layout(h5py.h5d.COMPACT)
            f.create_dataset("compact", data=np.arange(10, dtype=">i8"), dcpl=dcpl)
            f["lat"] = np.linspace(-80, 80, 20)
            f["lat"].make_scale("lat")
            f["fixed"].dims[0].attach_scale(f["lat"])
            f["zero_length"] = np.zeros(0)
            f.create_dataset("not_allocated", shape=(4,), dtype="f8", fillvalue=2.5)

    return write


def write_implicit_index(path: Path) -> None:
    """Early allocation of an unfiltered fixed-size chunked dataset: the implicit index."""
    with h5py.File(path, "w", libver="latest") as f:
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_chunk((4, 5))
        dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
        space = h5py.h5s.create_simple((10, 10))
        h5py.h5d.create(f.id, b"implicit", h5py.h5t.NATIVE_DOUBLE, space, dcpl=dcpl)
        f["implicit"][:] = np.arange(100.0).reshape(10, 10)


def write_paged_fixed_array(path: Path) -> None:
    """More than 1024 chunks of a fixed-size dataset: a paged fixed array, pages unwritten."""
    with h5py.File(path, "w", libver="latest") as f:
        for name, kw in (("filtered", {"compression": "gzip"}), ("raw", {})):
            ds = f.create_dataset(name, shape=(5000,), chunks=(2,), dtype="i2", **kw)
            ds[10:20] = 5
            ds[4000:4010] = 7


def write_paged_extensible_array(path: Path) -> None:
    """More than 131,060 chunks along an unlimited dimension: extensible array data blocks of
    2,048 elements, which are paged (pages of 1,024), some pages never written."""
    with h5py.File(path, "w", libver="latest") as f:
        ds = f.create_dataset("e", shape=(0,), maxshape=(None,), chunks=(1,), dtype="u1")
        ds.resize((135_000,))
        ds[:1000] = 1
        ds[131_100:131_200] = 3
        ds[134_000] = 4
        ds = f.create_dataset(
            "z", shape=(0, 3), maxshape=(None, 3), chunks=(2, 3), dtype="f4", compression="gzip"
        )
        ds.resize((40_000, 3))
        ds[::7] = 1.0


def write_deep_btrees(path: Path) -> None:
    """Many chunks: v2 B-tree of depth 2 (two unlimited dimensions), v1 B-tree of depth 2."""
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset("bt2", shape=(150, 150), maxshape=(None, None), chunks=(1, 1), dtype="u1")[:] = 1
    earliest = path.with_name(path.stem + "-v1.h5")
    with h5py.File(earliest, "w", libver="earliest") as f:
        f.create_dataset("bt1", shape=(200, 200), chunks=(1, 2), dtype="u1")[:] = 2


def write_v110(path: Path) -> None:
    with h5py.File(path, "w", libver=("v110", "latest")) as f:
        f.create_dataset("x", data=np.arange(10), chunks=(3,), maxshape=(None,))


CORPUS: dict[str, tuple[Callable[[Path], None], bool]] = {
    # name: (writer, the native reader must read it itself)
    "netcdf4-default.nc": (write_netcdf4_default, True),
    "netcdf4-classic.nc": (write_netcdf4_classic, True),
    "netcdf4-many-variables.nc": (write_netcdf4_many_variables, True),
    "bench-like.nc": (write_bench_like, True),
    "h5py-earliest.h5": (write_h5py_groups("earliest"), True),
    "h5py-latest.h5": (write_h5py_groups("latest"), True),
    "implicit.h5": (write_implicit_index, True),
    "paged-fixed-array.h5": (write_paged_fixed_array, True),
    "paged-extensible-array.h5": (write_paged_extensible_array, True),
    "deep-btrees.h5": (write_deep_btrees, True),
    "v110.h5": (write_v110, True),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    root = tmp_path_factory.mktemp("native-corpus")
    files: dict[str, list[Path]] = {}
    for name, (write, _) in CORPUS.items():
        before = set(root.iterdir())
        write(root / name)
        files[name] = sorted(set(root.iterdir()) - before)
    return files


@pytest.mark.parametrize("name", list(CORPUS))
@pytest.mark.parametrize("threshold", [0, 500, 10**7])
def test_corpus(corpus: dict[str, list[Path]], name: str, threshold: int) -> None:
    for path in corpus[name]:
        if CORPUS[name][1]:
            native_reads(path, threshold)
        else:  # pragma: no cover - every corpus file is read natively today
            compare_backends(path, threshold)


def test_corpus_covers_every_chunk_index(
    corpus: dict[str, list[Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The corpus exercises each chunk index, pages of both arrays and deep B-trees (else the
    conformance above proves less than it claims)."""
    seen: set[Any] = set()
    chunk_table, bit_set, node = fmt.chunk_table, fmt._bit_set, fmt.V2BTree._node

    def spy_table(h5: Any, layout: fmt.Layout, *args: Any) -> fmt.ChunkTable:
        seen.add(("index", layout.index))
        return chunk_table(h5, layout, *args)

    def spy_bit(bitmap: bytes, index: int) -> bool:
        seen.add("page bitmap")
        return bit_set(bitmap, index)

    def spy_node(self: fmt.V2BTree, address: int, nrec: int, level: int, out: list[bytes]) -> None:
        seen.add(("v2 B-tree level", level))
        node(self, address, nrec, level, out)

    monkeypatch.setattr(fmt, "chunk_table", spy_table)
    monkeypatch.setattr(fmt, "_bit_set", spy_bit)
    monkeypatch.setattr(fmt.V2BTree, "_node", spy_node)
    for paths in corpus.values():
        for path in paths:
            scan_native(str(path))
    assert {("index", i) for i in range(6)} <= seen
    assert {"page bitmap", ("v2 B-tree level", 2)} <= seen


def test_extensible_array_with_a_later_unlimited_dimension(tmp_path: Path) -> None:
    """HDF5 (2.0) misreports chunk offsets of an extensible-array index whose unlimited dimension
    is not the first (h5py's chunk_iter and get_chunk_info_by_coord alike), so the h5py backend
    refuses such a dataset by name rather than pointing chunks at the wrong bytes; the native
    reader reads the index itself and its references read what HDF5 reads."""
    for name, written in (("full", np.s_[:]), ("sparse", np.s_[3:6, 0:4])):
        # sparse: one stored chunk, whose misreported offset still lies inside the dataset
        path = tmp_path / f"later-unlimited-{name}.h5"
        with h5py.File(path, "w", libver="latest") as f:
            ds = f.create_dataset(name, shape=(10, 6), maxshape=(10, None), chunks=(3, 4), dtype="i4")
            ds[written] = np.arange(60).reshape(10, 6)[written]
        with pytest.raises(UnsupportedFeatureError, match=H5PY_CHUNK_OFFSET_BUG) as err:
            HDF5Scanner(backend="h5py")(str(path))
        assert str(path) in str(err.value) and f"'{name}'" in str(err.value)
        scan = HDF5Scanner(backend="native", inline_threshold=0)(str(path))
        _assert_reads_like_hdf5(str(path), scan)
        assert _as_json(HDF5Scanner()(str(path))) == _as_json(HDF5Scanner(backend="native")(str(path)))


def test_declines_what_it_does_not_read(tmp_path: Path) -> None:
    """Groups, committed datatypes and user-defined types, enum, compound and variable-length
    variables are declined (h5py then raises the scanner's error)."""
    cases: dict[str, Callable[[Path], None]] = {}

    def groups(path: Path) -> None:
        with netCDF4.Dataset(path, "w") as ds:
            ds.createGroup("g").createDimension("x", 1)

    def enum(path: Path) -> None:
        with h5py.File(path, "w") as f:
            f.create_dataset(
                "e", data=np.array([0, 1], "u1"), dtype=h5py.enum_dtype({"a": 0, "b": 1}, basetype="u1")
            )

    def compound(path: Path) -> None:
        with h5py.File(path, "w") as f:
            f.create_dataset("c", data=np.zeros(2, dtype=[("a", "i4"), ("b", "f8")]))

    def vlen_strings(path: Path) -> None:
        with netCDF4.Dataset(path, "w") as ds:
            ds.createDimension("x", 2)
            ds.createVariable("s", str, ("x",))[:] = np.array(["a", "bc"], dtype=object)

    def committed(path: Path) -> None:
        with h5py.File(path, "w") as f:
            f["t"] = np.dtype("f4")
            f["x"] = np.arange(3.0)

    cases.update(groups=groups, enum=enum, compound=compound, vlen_strings=vlen_strings, committed=committed)
    for name, write in cases.items():
        path = tmp_path / f"{name}.h5"
        write(path)
        reason = compare_backends(path)
        assert reason is not None, name
        with pytest.raises(NativeUnsupported):
            scan_native(str(path))


# --- random netCDF-4 files ----------------------------------------------------------------------

DTYPES = ["i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f4", "f8", "S1"]
SETTINGS = settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _value(draw: st.DrawFn, dtype: str, size: int) -> Any:
    dt = np.dtype(dtype)
    if dt.kind == "f":
        values = draw(
            st.lists(st.floats(width=8 * dt.itemsize, allow_nan=True), min_size=size, max_size=size)
        )
        return np.array(values, dtype=dt)
    info = np.iinfo(dt)
    return np.array(draw(st.lists(st.integers(info.min, info.max), min_size=size, max_size=size)), dtype=dt)


@st.composite
def attributes(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i in range(draw(st.integers(0, 14))):
        kind = draw(st.sampled_from(["number", "numbers", "text", "strings", "string", "empty"]))
        name = f"a{i}_{draw(st.sampled_from(['x', 'Y', 'long_name', 'ü']))}"
        if kind == "number":
            out[name] = _value(draw, draw(st.sampled_from(DTYPES[:-1])), 1)[0]
        elif kind == "numbers":
            out[name] = _value(draw, draw(st.sampled_from(DTYPES[:-1])), draw(st.integers(2, 4)))
        elif kind == "text":
            out[name] = draw(
                st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=20)
            )
        elif kind == "strings":
            texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8)
            out[name] = ("NC_STRING", draw(st.lists(texts, min_size=1, max_size=3)))
        elif kind == "string":
            out[name] = (
                "NC_STRING",
                draw(st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8)),
            )
        else:
            out[name] = ""
    return out


def _set_attributes(obj: Any, attrs: dict[str, Any]) -> None:
    for name, value in attrs.items():
        if isinstance(value, tuple):
            obj.setncattr_string(name, value[1])
        else:
            obj.setncattr(name, value)


@st.composite
def netcdf4_files(draw: st.DrawFn) -> Callable[[Path], None]:
    """A writer of one random netCDF-4 file."""
    n_dims = draw(st.integers(0, 3))
    dims = {f"d{i}": draw(st.integers(1, 6)) for i in range(n_dims)}
    unlimited = [d for d in dims if draw(st.booleans()) and draw(st.booleans())]
    global_attrs = draw(attributes())
    variables: list[dict[str, Any]] = []
    for i in range(draw(st.integers(1, 5))):
        order = draw(st.permutations(list(dims)))
        vdims = order[: draw(st.integers(0, len(order)))]
        dtype = draw(st.sampled_from(DTYPES))
        name = f"v{i}"
        taken = {v["name"] for v in variables}
        if dims and draw(st.integers(0, 3)) == 0:
            # named like a dimension: its coordinate variable if that is its only dimension,
            # else a variable netCDF-4 stores as "_nc4_non_coord_<name>"
            candidate = vdims[0] if len(vdims) == 1 else draw(st.sampled_from(sorted(dims)))
            if candidate not in taken:
                name = candidate
        spec: dict[str, Any] = {
            "name": name,
            "dims": tuple(vdims),
            "dtype": dtype,
            "attrs": draw(attributes()),
        }
        kw: dict[str, Any] = {}
        layout = draw(st.sampled_from(["default", "contiguous", "chunked"]))
        if layout == "contiguous" and not set(vdims) & set(unlimited):
            kw["contiguous"] = True
        elif layout == "chunked" and vdims:
            kw["chunksizes"] = tuple(draw(st.integers(1, 8 if d in unlimited else dims[d])) for d in vdims)
        if "contiguous" not in kw and vdims and draw(st.booleans()):
            kw.update(zlib=True, complevel=draw(st.integers(1, 9)), shuffle=draw(st.booleans()))
            kw["fletcher32"] = draw(st.booleans())
        if dtype == "S1":
            if draw(st.booleans()):
                kw["fill_value"] = draw(st.sampled_from([b"x", b"\x00", b" "]))
        else:
            fill = draw(st.sampled_from(["default", "value", "nan", "off"]))
            if fill == "value":
                kw["fill_value"] = _value(draw, dtype, 1)[0]
            elif fill == "nan" and dtype.startswith("f"):
                kw["fill_value"] = np.nan
            elif fill == "off":
                kw["fill_value"] = False
            if np.dtype(dtype).itemsize > 1 and draw(st.booleans()):
                kw["endian"] = "big"
                spec["dtype"] = ">" + dtype
        spec["kw"] = kw
        spec["records"] = {d: draw(st.integers(0, 7)) for d in vdims if d in unlimited}
        spec["seed"] = draw(st.integers(0, 2**16))
        variables.append(spec)

    fill_off = draw(st.integers(0, 4)) == 0

    def write(path: Path) -> None:
        with netCDF4.Dataset(path, "w") as ds:
            if fill_off:
                ds.set_fill_off()
            _set_attributes(ds, global_attrs)
            for d, size in dims.items():
                ds.createDimension(d, None if d in unlimited else size)
            for spec in variables:
                v = ds.createVariable(spec["name"], spec["dtype"], spec["dims"], **spec["kw"])
                _set_attributes(v, spec["attrs"])
                shape = tuple(spec["records"].get(d, dims[d]) for d in spec["dims"])
                if math.prod(shape) == 0:
                    continue
                rng = np.random.default_rng(spec["seed"])
                if spec["dtype"] == "S1":
                    values = rng.choice(list(b"abc "), size=shape).astype("u1").view("S1")
                else:
                    values = (rng.random(shape) * 100).astype(spec["dtype"])
                v[tuple(slice(0, s) for s in shape)] = values

    return write


@SETTINGS
@given(write=netcdf4_files())
def test_random_netcdf4_files(write: Callable[[Path], None]) -> None:
    """Random netCDF-4 files: the native reader reads each one itself and gives h5py's scan."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "random.nc"
        write(path)
        for threshold in (0, 500):
            native_reads(path, threshold)


# --- damaged files ------------------------------------------------------------------------------


def _damage_outcome(path: Path) -> FileScan | None:
    """Scan a damaged file: a ScanError naming it, or a scan; never another exception."""
    try:
        return HDF5Scanner(inline_threshold=0)(str(path))
    except ScanError as err:
        assert str(path) in str(err)
        return None


@pytest.mark.timeout(300)
def test_truncated_files(tmp_path: Path, corpus: dict[str, list[Path]]) -> None:
    """Whatever the cut point, a truncated file gives a ScanError naming it (the native reader
    declines, h5py raises), or a scan whose chunks all lie inside the file."""
    for name in ("netcdf4-default.nc", "h5py-latest.h5"):
        whole = corpus[name][0].read_bytes()
        cut = tmp_path / f"cut-{name}"
        for size in [0, 8, 40, 100, 700, *range(1000, len(whole), 997), len(whole) - 1]:
            cut.write_bytes(whole[:size])
            with pytest.raises(NativeUnsupported):
                scan_native(str(cut))  # the superblock records the file's length
            scan = _damage_outcome(cut)
            if scan is not None:  # pragma: no cover - only if HDF5 reads it
                for var in scan.variables.values():
                    assert np.all(var.offsets + var.lengths <= size)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", ["netcdf4-default.nc", "h5py-earliest.h5", "h5py-latest.h5"])
def test_overwritten_metadata(tmp_path: Path, corpus: dict[str, list[Path]], name: str) -> None:
    """Random bytes written over the file's metadata: the scanner gives a ScanError naming the
    file or a scan, never another exception and never a hang. The native reader declines or
    reads the file; where h5py reads it too, they agree. (h5py may refuse a file the native
    reader reads: HDF5 verifies checksums and structures the native reader does not need, such
    as free-space records and creation-order indexes. Damage the native reader does read, it
    declines: 80 seeded damages reach every outcome below.)"""
    whole = corpus[name][0].read_bytes()
    rng = np.random.default_rng(7)
    bad = tmp_path / f"bad-{name}"
    metadata_end = min(len(whole), 6000)
    outcomes: dict[str, int] = {}
    for _ in range(80):
        data = bytearray(whole)
        for _ in range(int(rng.integers(1, 6))):
            at = int(rng.integers(0, metadata_end))
            data[at : at + 4] = rng.integers(0, 256, 4, dtype=np.uint8).tobytes()
        bad.write_bytes(bytes(data))
        native = _scan(str(bad), "native", 0)
        assert isinstance(native, FileScan | NativeUnsupported | ScanError), repr(native)
        expected = _scan(str(bad), "h5py", 0)
        assert isinstance(expected, FileScan | ScanError), repr(expected)
        outcome = _damage_outcome(bad)  # the scanner itself (native, else h5py)
        if isinstance(native, FileScan):
            assert outcome is not None and _as_json(outcome) == _as_json(native)
            if isinstance(expected, FileScan):
                assert _as_json(native) == _as_json(expected)
                key = "both read it"
            else:
                key = "only native reads it"
        else:
            key = "native declines" if isinstance(native, NativeUnsupported) else "native refuses"
            if isinstance(expected, FileScan):
                assert outcome is not None and _as_json(outcome) == _as_json(expected)
            else:
                assert outcome is None
        outcomes[key] = outcomes.get(key, 0) + 1
    assert outcomes.get("native declines", 0) > 0 and outcomes.get("both read it", 0) > 0, outcomes


def test_a_native_decline_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """In auto mode the fallback to h5py is logged at DEBUG level with the file and reason."""
    path = tmp_path / "groups.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.createGroup("g")
    caplog.set_level("DEBUG", logger="padocc_like.scanners.hdf5")
    with pytest.raises(UnsupportedFeatureError):
        HDF5Scanner()(str(path))
    assert any(str(path) in r.getMessage() and "group" in r.getMessage() for r in caplog.records)


def test_backend_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``backend`` picks the reader: h5py never runs the native one, native never falls back."""
    path = tmp_path / "x.nc"
    write_netcdf4_classic(path)
    with pytest.raises(ValueError, match="backend"):
        HDF5Scanner(backend="netcdf")
    assert HDF5Scanner.backend == "auto"

    def refuse(*_: Any) -> None:
        raise NativeUnsupported("refused")

    monkeypatch.setattr("padocc_like.scanners.hdf5_native.scan_native", refuse)
    assert HDF5Scanner(backend="h5py")(str(path)).variables
    assert HDF5Scanner()(str(path)).variables  # auto falls back
    with pytest.raises(NativeUnsupported):
        HDF5Scanner(backend="native")(str(path))


def test_native_scan_does_not_import_h5py(tmp_path: Path) -> None:
    """A scan the native reader completes never imports h5py."""
    path = tmp_path / "x.nc"
    write_bench_like(path)
    code = (
        "import sys\n"
        "from padocc_like.scanners.hdf5 import HDF5Scanner\n"
        f"HDF5Scanner(backend='native')({str(path)!r})\n"
        "assert 'h5py' not in sys.modules, 'h5py imported'\n"
    )
    import subprocess

    subprocess.run([sys.executable, "-c", code], check=True)
