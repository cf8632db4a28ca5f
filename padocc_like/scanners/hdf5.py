"""HDF5 and netCDF-4 files.

Two backends read the raw HDF5 facts of a file (the root group's datasets: dataspace,
datatype, layout, filters, fill value, attributes, dimension scales and chunk index):

* the native one (:mod:`.hdf5_native`), a pure-Python reader of the HDF5 file format,
  tried first because it is several times faster than h5py at reading attributes;
* h5py's low-level API (this module), used for every file the native reader declines.

One builder (:class:`_FileReader`) turns either backend's facts into the
:class:`~padocc_like.references.model.FileScan`, so both give the same scan. Chunk byte
ranges come straight from HDF5's chunk index; Zarr v2 metadata is built here without going
through zarr-python or xarray. Everything that cannot be referenced exactly raises
:class:`~padocc_like.errors.UnsupportedFeatureError` naming the variable.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from ..errors import ScanError, UnsupportedFeatureError
from ..references.model import MISSING, FileScan, VariableScan, decode_fill_value, encode_fill_value
from ..references.read import encode_chunk
from .base import HDF5_SIGNATURE, to_json_value

# Attributes that are HDF5 / netCDF-4 bookkeeping, not user metadata.
HIDDEN_ATTRS = frozenset(
    {
        "DIMENSION_LIST",
        "REFERENCE_LIST",
        "CLASS",
        "NAME",
        "_Netcdf4Dimid",
        "_Netcdf4Coordinates",
        "_nc3_strict",
        "_NCProperties",
        "_SuperblockVersion",
        "_IsNetcdf4",
        "_FillValue",
    }
)
DIMENSION_ONLY = b"This is a netCDF dimension but not a netCDF variable"
NON_COORD_PREFIX = "_nc4_non_coord_"

# HDF5 filter id -> function(cd_values, dtype) -> numcodecs config
_H5Z_DEFLATE, _H5Z_SHUFFLE, _H5Z_FLETCHER32, _H5Z_SZIP, _H5Z_NBIT, _H5Z_SCALEOFFSET = (
    1,
    2,
    3,
    4,
    5,
    6,
)


def _codec_for(code: int, values: tuple[int, ...], dtype: np.dtype) -> dict[str, Any] | None:
    if code == _H5Z_DEFLATE:
        return {"id": "zlib", "level": int(values[0]) if values else 4}
    if code == _H5Z_SHUFFLE:
        return {"id": "shuffle", "elementsize": dtype.itemsize}
    if code == _H5Z_FLETCHER32:
        return {"id": "fletcher32"}
    if code == 32015:  # zstd plugin
        return {"id": "zstd", "level": int(values[0]) if values else 0}
    if code == 32001:  # blosc plugin: the frame header describes itself
        return {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1, "blocksize": 0}
    if code == 307:  # bzip2 plugin
        return {"id": "bz2", "level": int(values[0]) if values else 9}
    return None


_FILTER_NAMES = {
    _H5Z_SZIP: "szip",
    _H5Z_NBIT: "nbit",
    _H5Z_SCALEOFFSET: "scale-offset",
    32000: "lzf",
    32004: "lz4 (HDF5 plugin framing)",
    32008: "bitshuffle",
    32013: "zfp",
    32017: "sz",
}


HIDDEN_ATTR_BYTES = frozenset(a.encode() for a in HIDDEN_ATTRS)
BACKENDS = ("auto", "native", "h5py")

log = logging.getLogger(__name__)


class EmptyAttribute:
    """An attribute with a null dataspace (h5py's ``Empty``): a type and no value."""

    __slots__ = ("dtype",)

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = dtype


def attribute_value(value: Any, name: str = "") -> Any:
    """The JSON value of an attribute read as numpy data (:func:`_read_attribute`); an
    attribute of a type JSON cannot hold exactly raises UnsupportedFeatureError naming it
    (the caller adds the file and the variable)."""
    if isinstance(value, EmptyAttribute):
        return "" if value.dtype.kind in "SO" else None
    feature = attribute_type_problem(value)
    if feature is not None:
        raise UnsupportedFeatureError(f"attribute {name!r} has a {feature}, which no JSON attribute holds")
    return to_json_value(value)


def attribute_type_problem(value: Any) -> str | None:
    """Why an attribute value cannot become a JSON attribute exactly (None if it can)."""
    if not isinstance(value, np.ndarray | np.generic):
        return None
    dtype = value.dtype
    if dtype.names is not None:
        return f"compound data type ({dtype})"
    if dtype.kind == "c":
        return f"complex data type ({dtype}, an HDF5 compound)"
    if dtype.kind == "V":
        return f"opaque data type ({dtype})"
    if dtype.kind == "O" and isinstance(value, np.ndarray):
        sequences = [v for v in value.reshape(-1) if isinstance(v, np.ndarray)]
        if sequences:
            return f"variable-length sequence data type (a vlen of {sequences[0].dtype})"
    return None


def string_bytes(value: Any) -> bytes:
    """A string attribute's bytes, from its numpy value (b"" if it is not a string)."""
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(-1)[0]
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes | np.bytes_):
        return bytes(value)
    return b""


# --- the facts a backend provides ---------------------------------------------------------------


class Dataset(Protocol):
    """One dataset of the root group, as a backend reads it."""

    shape: tuple[int, ...]
    ndim: int
    maxshape: tuple[int | None, ...]
    dtype: np.dtype
    layout: str
    """``compact``, ``contiguous``, ``chunked`` or ``virtual``."""

    @property
    def address(self) -> int:
        """The object header's address (identifies dimension scales)."""
        ...

    @property
    def is_scale(self) -> bool: ...

    @property
    def fillvalue(self) -> Any:
        """The dataset's HDF5 fill value, a numpy scalar of ``dtype``."""
        ...

    def check_dtype(self, where: str) -> None:
        """Raise UnsupportedFeatureError for types without a Zarr equivalent."""
        ...

    def attr_bytes(self, name: str) -> bytes:
        """A string attribute's bytes (b"" if absent or not a string)."""
        ...

    def attributes(self) -> tuple[dict[str, Any], Any]:
        """User attributes (JSON values) and the raw ``_FillValue`` (None if absent)."""
        ...

    def num_scales(self, axis: int) -> int: ...

    def filters(self) -> list[tuple[int, tuple[int, ...], bytes]]:
        """(filter id, client values, name) of each filter of the pipeline, in order."""
        ...

    def has_external_storage(self) -> bool: ...

    def chunk_shape(self) -> tuple[int, ...]: ...

    def contiguous_storage(self) -> tuple[int | None, int]:
        """(byte offset or None if unallocated, size) of contiguous data."""
        ...

    def stored_chunks(self, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every stored chunk: element offsets (n, ndim), byte offsets, sizes, filter masks.
        (``where`` names the variable in errors.)"""
        ...

    def read(self, region: Any = ()) -> np.ndarray:
        """Values (``ds[region]``), as HDF5 reads them (fill value where nothing is stored)."""
        ...


class Source(Protocol):
    """One opened file, whichever backend reads it."""

    path: str
    size: int

    def has_root_attribute(self, name: bytes) -> bool: ...

    def root_attributes(self) -> dict[str, Any]: ...

    def datasets(self) -> Iterator[tuple[str, Dataset]]:
        """The root group's datasets in HDF5's name order; refuses groups and external links."""
        ...

    def scale_name(self, ds: Dataset, axis: int, known: dict[int, str]) -> str:
        """The dimension name of the one scale attached to ``axis`` (``known``: scale
        addresses to names)."""
        ...

    def read_bytes(self, offset: int, length: int) -> bytes: ...


# --- the scanner --------------------------------------------------------------------------------


class HDF5Scanner:
    """Scanner for HDF5 files, including netCDF-4."""

    name: ClassVar[str] = "hdf5"
    description: ClassVar[str] = "HDF5 and netCDF-4 files (native HDF5 reader, h5py fallback)"
    backend: ClassVar[str] = "auto"
    """``auto`` (the native reader, h5py for what it declines), ``native`` or ``h5py``."""

    def __init__(self, *, inline_threshold: int = 500, backend: str | None = None) -> None:
        self.inline_threshold = inline_threshold
        if backend is not None:
            if backend not in BACKENDS:
                raise ValueError(f"unknown HDF5 backend {backend!r}; expected one of {', '.join(BACKENDS)}")
            self.backend = backend  # type: ignore[misc]

    @staticmethod
    def sniff(head: bytes) -> bool:
        return head.startswith(HDF5_SIGNATURE)

    def __call__(self, path: str) -> FileScan:
        if self.backend != "h5py":
            from .hdf5_native import scan_native

            try:
                return scan_native(path, self.inline_threshold)
            except FileNotFoundError:
                raise
            except Exception as err:
                if self.backend == "native":
                    raise
                log.debug("%s: native HDF5 reader declined, reading with h5py: %s", path, err)
        return self._scan_h5py(path)

    def _scan_h5py(self, path: str) -> FileScan:
        import h5py

        try:
            h5 = h5py.File(path, "r")
        except FileNotFoundError:
            raise
        except OSError as err:
            raise ScanError(f"{path}: cannot open as HDF5 (corrupt or truncated?): {err}") from err
        try:
            with h5, open(path, "rb") as raw:
                return _FileReader(_H5pySource(path, h5, raw), self.inline_threshold).scan()
        except (ScanError, FileNotFoundError):
            raise
        except Exception as err:  # h5py raises many error types on damaged files
            raise ScanError(f"{path}: failed while reading HDF5 metadata: {err!r}") from err


# --- the shared builder -------------------------------------------------------------------------


class _FileReader:
    """Builds the FileScan from one backend's facts."""

    def __init__(self, source: Source, inline_threshold: int) -> None:
        self.source = source
        self.path = source.path
        self.inline_threshold = inline_threshold
        self.size = source.size
        self.is_netcdf4 = source.has_root_attribute(b"_NCProperties")
        self.dims: dict[str, int] = {}
        self.unlimited: list[str] = []
        self._scale_names: dict[int, str] = {}  # object address -> dimension name

    def read_bytes(self, offset: int, length: int) -> bytes:
        data = self.source.read_bytes(offset, length)
        if len(data) != length:
            raise ScanError(
                f"{self.path}: truncated file: a chunk at bytes {offset}-{offset + length} lies "
                f"beyond the end of the file ({self.size} bytes)"
            )
        return data

    def scan(self) -> FileScan:
        datasets: dict[str, Dataset] = {}
        scales: set[str] = set()
        names_at: dict[int, str] = {}  # object address -> the first name linking to it
        for key, ds in self.source.datasets():
            first = names_at.setdefault(ds.address, key)
            if first != key:
                raise UnsupportedFeatureError(
                    f"{self.path}: variable {key!r} and variable {first!r} are links (hard or soft) "
                    "to one HDF5 dataset; a dataset under several names has no single netCDF "
                    "variable or dimension name (netCDF readers name its dimension after one link)"
                )
            datasets[key] = ds
            if ds.is_scale:
                scales.add(key)
                self._scale_names[ds.address] = key.removeprefix(NON_COORD_PREFIX)

        # Dimension scales first, so that dataset dimension names resolve (in the file's
        # order: iterating the set would order dimensions differently in every process).
        for key in [k for k in datasets if k in scales]:
            ds = datasets[key]
            name = key.removeprefix(NON_COORD_PREFIX)
            self.dims[name] = ds.shape[0] if ds.ndim else 0
            if ds.maxshape and ds.maxshape[0] is None:
                self.unlimited.append(name)

        variables: dict[str, VariableScan] = {}
        coords: dict[str, list[Any]] = {}
        phony: dict[int, list[str]] = {}
        dims_of: dict[str, tuple[str, ...]] = {}
        for key, ds in datasets.items():
            if key in scales and ds.attr_bytes("NAME").startswith(DIMENSION_ONLY):
                continue  # a netCDF dimension without a variable
            dims_of[key] = self._dim_names(ds, key.removeprefix(NON_COORD_PREFIX), phony, key in scales)
            if self.is_netcdf4:
                # netCDF-4: an unlimited dimension is as long as the longest variable along it
                # (its dimension scale, and shorter variables, may hold fewer records)
                for d, size in zip(dims_of[key], ds.shape, strict=True):
                    if d in self.unlimited:
                        self.dims[d] = max(self.dims[d], size)
        for key, dims in dims_of.items():
            ds = datasets[key]
            name = key.removeprefix(NON_COORD_PREFIX)
            var = self._variable(name, ds, dims)
            variables[name] = var
            if len(dims) == 1 and dims[0] == name and np.dtype(var.dtype).kind in "iuf":
                values = np.full(var.shape, ds.fillvalue, dtype=ds.dtype)
                values[: ds.shape[0]] = ds.read()
                coords[name] = values.tolist()
        try:
            attrs = self.source.root_attributes()
        except UnsupportedFeatureError as err:
            raise UnsupportedFeatureError(f"{self.path}: global {err.message}") from err
        return FileScan(
            url=self.path,
            format="netcdf4" if self.is_netcdf4 else "hdf5",
            attrs=attrs,
            dims=dict(self.dims),
            unlimited=tuple(self.unlimited),
            variables=variables,
            coords=coords,
        )

    def _dim_names(
        self, ds: Dataset, name: str, phony: dict[int, list[str]], is_scale: bool
    ) -> tuple[str, ...]:
        if ds.ndim == 0:
            return ()
        if is_scale and ds.ndim == 1:
            return (name,)
        names: list[str] = []
        for axis in range(ds.ndim):
            resolved = None
            n_scales = ds.num_scales(axis)
            if n_scales == 1:
                resolved = self.source.scale_name(ds, axis, self._scale_names)
            elif n_scales > 1:
                raise UnsupportedFeatureError(
                    f"{self.path}: variable {name!r}: axis {axis} has "
                    f"{n_scales} dimension scales attached; expected one"
                )
            if resolved is None:
                # as netCDF-C: reuse a phony dimension of this length and unlimitedness (an
                # unlimited axis never shares a fixed one's) that this variable does not use
                # yet, else make a new one (a square array has two distinct dimensions)
                size = ds.shape[axis]
                unlimited = bool(ds.maxshape) and ds.maxshape[axis] is None
                same_size = phony.setdefault((size, unlimited), [])
                free = [d for d in same_size if d not in names]
                if free:
                    resolved = free[0]
                else:
                    resolved = f"phony_dim_{sum(len(v) for v in phony.values())}"
                    same_size.append(resolved)
                self.dims.setdefault(resolved, size)
            names.append(resolved)
        return tuple(names)

    def _variable(self, name: str, ds: Dataset, dims: tuple[str, ...]) -> VariableScan:
        dtype = ds.dtype
        where = f"{self.path}: variable {name!r}"
        ds.check_dtype(where)
        if dtype.kind not in "biufS":
            raise UnsupportedFeatureError(f"{where}: {_dtype_feature(dtype)} is not supported")

        layout = ds.layout
        filters = self._filters(name, ds.filters(), dtype)
        try:
            attrs, raw_fill = ds.attributes()
        except UnsupportedFeatureError as err:
            raise UnsupportedFeatureError(f"{where}: {err.message}") from err
        # Only a _FillValue attribute declares a fill value: netCDF4-python and h5netcdf (so
        # xarray) mask nothing else, so declaring the HDF5 dataset's fill value (as kerchunk
        # does) would mask valid values. Unwritten chunks still read as that fill value
        # (_fill_missing).
        fill_value = None if raw_fill is None else encode_fill_value(raw_fill, dtype)
        stored_shape = tuple(ds.shape)
        # records past the dataset's extent along an unlimited dimension read as the fill value
        shape = tuple(
            max(s, self.dims[d]) if d in self.unlimited else s
            for s, d in zip(stored_shape, dims, strict=True)
        )

        if layout == "virtual":
            raise UnsupportedFeatureError(f"{where}: HDF5 virtual datasets are not supported")
        if ds.has_external_storage():
            raise UnsupportedFeatureError(f"{where}: data held in external raw files")

        if layout == "chunked":
            chunks = ds.chunk_shape()
            storage = "chunked"
        else:
            chunks = tuple(max(s, 1) for s in shape)
            storage = layout
        grid = tuple(math.ceil(s / c) for s, c in zip(shape, chunks, strict=True))
        n = math.prod(grid)
        offsets = np.full(n, MISSING, dtype=np.int64)
        lengths = np.zeros(n, dtype=np.int64)
        inline: dict[int, bytes] = {}

        if shape != stored_shape and layout != "chunked":
            raise UnsupportedFeatureError(
                f"{where}: holds {stored_shape} values but its dimensions {dims} are {shape}"
            )
        if n == 0:
            pass
        elif layout == "compact":
            # data lives in the object header: inline it
            inline[0] = encode_chunk(np.ascontiguousarray(ds.read()).tobytes(), filters)
        elif layout == "contiguous":
            offset, size = ds.contiguous_storage()
            if offset is not None:
                offsets[0] = offset
                lengths[0] = size
        else:
            where_chunk, addresses, sizes, masks = ds.stored_chunks(where)
            if addresses.size:
                # the chunk's flat index in the C-ordered chunk grid
                strides = np.array([math.prod(grid[i + 1 :]) for i in range(len(grid))], dtype=np.int64)
                flat = (where_chunk // np.asarray(chunks, dtype=np.int64)) @ strides
                offsets[flat] = addresses
                lengths[flat] = sizes
            n_masked = int(np.count_nonzero(masks))
            if n_masked:
                raise UnsupportedFeatureError(
                    f"{where}: {n_masked} chunk(s) skip filters of the pipeline "
                    "(HDF5 filter mask); chunks cannot share one codec list"
                )
            if shape != stored_shape:
                _rebuild_edge_chunks(ds, stored_shape, chunks, grid, filters, offsets, lengths, inline)

        stored = offsets != MISSING
        if stored.any():
            ends = offsets[stored] + lengths[stored]
            if int(ends.max()) > self.size:
                raise ScanError(
                    f"{where}: data extends to byte {int(ends.max())} but the file has "
                    f"{self.size} bytes (truncated file)"
                )
        # Small chunks are copied into the product (saves a request per chunk).
        small = np.flatnonzero(stored & (lengths < self.inline_threshold))
        for flat_index in small.tolist():
            inline[flat_index] = self.read_bytes(int(offsets[flat_index]), int(lengths[flat_index]))
            offsets[flat_index] = MISSING
            lengths[flat_index] = 0
        self._fill_missing(ds, dtype, chunks, filters, fill_value, offsets, inline, n)

        return VariableScan(
            name=name,
            dims=dims,
            shape=shape,
            dtype=dtype.str,
            chunks=chunks,
            filters=filters,
            fill_value=fill_value,
            attrs=attrs,
            offsets=offsets,
            lengths=lengths,
            inline=inline,
            storage=storage,
        )

    def _filters(
        self, name: str, pipeline: list[tuple[int, tuple[int, ...], bytes]], dtype: np.dtype
    ) -> list[dict[str, Any]] | None:
        configs = []
        for code, values, label in pipeline:
            codec = _codec_for(code, tuple(values), dtype)
            if codec is None:
                what = _FILTER_NAMES.get(code) or label.decode(errors="replace") or "unknown"
                raise UnsupportedFeatureError(
                    f"{self.path}: variable {name!r} is compressed with the HDF5 filter "
                    f"{what!r} (id {code}), which no Zarr codec decodes"
                )
            configs.append(codec)
        ids = [c["id"] for c in configs]
        if "fletcher32" in ids and "shuffle" in ids and ids.index("fletcher32") < ids.index("shuffle"):
            size = configs[ids.index("shuffle")]["elementsize"]
            if 4 % size:
                # HDF5's shuffle leaves the checksum's 4 trailing bytes as they are; Zarr's
                # shuffle codec refuses a buffer that is not whole elements
                raise UnsupportedFeatureError(
                    f"{self.path}: variable {name!r}: its HDF5 filters checksum (fletcher32) before "
                    f"shuffling {size}-byte values, so each chunk is not a whole number of values "
                    "when unshuffled; no Zarr shuffle codec can read it"
                )
        return configs or None

    def _fill_missing(
        self,
        ds: Dataset,
        dtype: np.dtype,
        chunks: tuple[int, ...],
        filters: list[dict[str, Any]] | None,
        fill_value: Any,
        offsets: np.ndarray,
        inline: dict[int, bytes],
        n: int,
    ) -> None:
        """Make unwritten chunks read back as HDF5 does, with the dataset's fill value."""
        if n == 0 or dtype.kind == "S":
            return
        missing = [i for i in np.flatnonzero(offsets == MISSING).tolist() if i not in inline]
        if not missing:
            return
        h5_fill = np.asarray(ds.fillvalue, dtype=dtype)
        # what Zarr readers produce for an unstored chunk: the .zarray fill value, else 0
        zarr_fill = np.asarray(0 if fill_value is None else decode_fill_value(fill_value, dtype), dtype=dtype)
        if h5_fill.tobytes() == zarr_fill.tobytes():
            return  # readers already produce the right value
        encoded = encode_chunk(np.full(chunks, h5_fill, dtype=dtype).tobytes(), filters)
        for i in missing:
            inline[i] = encoded


def _rebuild_edge_chunks(
    ds: Dataset,
    stored_shape: tuple[int, ...],
    chunks: tuple[int, ...],
    grid: tuple[int, ...],
    filters: list[dict[str, Any]] | None,
    offsets: np.ndarray,
    lengths: np.ndarray,
    inline: dict[int, bytes],
) -> None:
    """Inline stored chunks that straddle the dataset's extent, padded with the fill value.

    Past the extent such a chunk holds whatever HDF5 left there, but netCDF reads the fill
    value there (the variable is shorter than its unlimited dimension).
    """
    for flat in np.flatnonzero(offsets != MISSING).tolist():
        idx = np.unravel_index(flat, grid)
        region = tuple(
            slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(idx, chunks, stored_shape, strict=True)
        )
        if all(r.stop - r.start == c for r, c in zip(region, chunks, strict=True)):
            continue
        block = np.full(chunks, ds.fillvalue, dtype=ds.dtype)
        block[tuple(slice(0, r.stop - r.start) for r in region)] = ds.read(region)
        inline[flat] = encode_chunk(block.tobytes(), filters)
        offsets[flat] = MISSING
        lengths[flat] = 0


def _dtype_feature(dtype: np.dtype) -> str:
    """How an error names a variable's data type that no Zarr type holds."""
    if dtype.kind == "V":
        return f"HDF5 opaque data type ({dtype})"
    if dtype.kind in "Mm":
        return f"HDF5 opaque data type tagged as {dtype} (a NumPy time type)"
    if dtype.kind == "c":
        return f"complex data type ({dtype}, an HDF5 compound)"
    return f"data type {dtype}"


# --- the h5py backend ---------------------------------------------------------------------------


def read_attributes(oid: Any) -> tuple[dict[str, Any], Any]:
    """User attributes of an HDF5 object (low-level API, no bookkeeping attributes) and its
    raw ``_FillValue`` (None if absent). Hidden attributes are skipped without being read."""
    from h5py import h5a

    names: list[bytes] = []
    h5a.iterate(oid, lambda name, *_: names.append(name))
    attrs: dict[str, Any] = {}
    fill = None
    for name in names:
        if name in HIDDEN_ATTR_BYTES and name != b"_FillValue":
            continue
        value = _read_attribute(h5a.open(oid, name))
        if name == b"_FillValue":
            fill = value
        else:
            key = name.decode("utf-8", errors="replace")
            attrs[key] = attribute_value(value, key)
    return attrs, fill


def _read_attribute(attr: Any) -> Any:
    """An attribute's value as numpy data (as h5py's AttributeManager reads it)."""
    from h5py import h5t

    shape = attr.shape
    file_type = attr.get_type()
    dtype = file_type.dtype
    if shape is None:
        return EmptyAttribute(dtype)
    if dtype.kind in "biufS" and dtype.subdtype is None and dtype.names is None:
        # fixed-size values: reading with the file's own type skips building a memory type;
        # numbers keep the file's byte order, which conversion to Python values absorbs
        arr = np.empty(shape, dtype=dtype)
        attr.read(arr, mtype=file_type)
        return arr
    # variable-length, compound and array types: h5py's own conversion path
    if dtype.subdtype is not None:
        base, sub = dtype.subdtype
        arr = np.zeros(shape + sub, dtype=base)
    else:
        arr = np.zeros(shape, dtype=dtype)
    attr.read(arr, mtype=h5t.py_create(dtype))
    return arr


class _H5pySource:
    """A file opened with h5py (low-level API)."""

    def __init__(self, path: str, h5: Any, raw: Any) -> None:
        self.path = path
        self.h5 = h5
        self.raw = raw
        self.size = Path(path).stat().st_size

    def read_bytes(self, offset: int, length: int) -> bytes:
        self.raw.seek(offset)
        return self.raw.read(length)

    def has_root_attribute(self, name: bytes) -> bool:
        from h5py import h5a

        return bool(h5a.exists(self.h5.id, name))

    def root_attributes(self) -> dict[str, Any]:
        return read_attributes(self.h5.id)[0]

    def datasets(self) -> Iterator[tuple[str, Dataset]]:
        import h5py
        from h5py import h5g, h5l, h5o

        root = self.h5.id
        for index in range(root.get_num_objs()):
            raw_key = root.get_objname_by_idx(index)
            key = raw_key.decode("utf-8", errors="replace")
            kind = root.get_objtype_by_idx(index)
            if kind not in (h5g.GROUP, h5g.DATASET, h5g.TYPE) and (
                root.links.get_info(raw_key).type == h5l.TYPE_EXTERNAL
            ):
                raise UnsupportedFeatureError(
                    f"{self.path}: {key!r} is an external link to another file; references cannot follow it"
                )
            oid = h5o.open(root, raw_key)  # follows soft links
            if not isinstance(oid, h5py.h5d.DatasetID):
                if isinstance(oid, h5py.h5g.GroupID):
                    raise UnsupportedFeatureError(
                        f"{self.path}: group {key!r}: files with groups are not supported yet "
                        "(only the root group can be aggregated)"
                    )
                continue  # a committed datatype: not data
            yield key, _Dataset(oid, self.read_bytes)

    def scale_name(self, ds: Dataset, axis: int, known: dict[int, str]) -> str:
        from h5py import h5ds, h5i, h5o

        def name_of(sid: Any) -> str:
            found = known.get(h5o.get_info(sid).addr)
            if found is not None:
                return found
            path = h5i.get_name(sid).decode("utf-8", errors="replace").lstrip("/")
            return path.removeprefix(NON_COORD_PREFIX)

        names: list[str] = []
        h5ds.iterate(ds.id, axis, lambda sid: names.append(name_of(sid)) or 1)  # type: ignore[attr-defined]
        return names[0]


class _Dataset:
    """An HDF5 dataset's metadata through h5py, read once (h5py re-reads it on every property
    access). Data reads go through an ``h5py.Dataset`` made on first use."""

    def __init__(self, oid: Any, read_bytes: Any = None) -> None:
        from h5py import h5s

        self.id = oid
        self._read_bytes = read_bytes
        space = oid.get_space()
        self.shape: tuple[int, ...] = space.shape or ()
        self.ndim = len(self.shape)
        maxdims = space.get_simple_extent_dims(True) if self.ndim else ()
        self.maxshape = tuple(None if m == h5s.UNLIMITED else m for m in maxdims)
        self.dtype: np.dtype = oid.dtype
        self._plist: Any = None
        self._hl: Any = None
        self._is_scale: bool | None = None

    @property
    def layout(self) -> str:
        from h5py import h5d

        kind = self.plist.get_layout()
        names = {
            h5d.COMPACT: "compact",
            h5d.CONTIGUOUS: "contiguous",
            h5d.CHUNKED: "chunked",
            h5d.VIRTUAL: "virtual",
        }
        return names.get(kind, f"layout {kind}")

    @property
    def plist(self) -> Any:
        if self._plist is None:
            self._plist = self.id.get_create_plist()
        return self._plist

    @property
    def address(self) -> int:
        from h5py import h5o

        return int(h5o.get_info(self.id).addr)

    @property
    def is_scale(self) -> bool:
        if self._is_scale is None:
            from h5py import h5ds

            self._is_scale = bool(h5ds.is_scale(self.id))
        return self._is_scale

    @property
    def fillvalue(self) -> Any:
        arr = np.zeros((1,), dtype=self.dtype)
        self.plist.get_fill_value(arr)
        return arr[0]

    def check_dtype(self, where: str) -> None:
        import h5py

        dtype = self.dtype
        if h5py.check_string_dtype(dtype) is not None and dtype.kind == "O":
            raise UnsupportedFeatureError(f"{where}: variable-length strings are not supported")
        if h5py.check_vlen_dtype(dtype) is not None:
            raise UnsupportedFeatureError(f"{where}: variable-length data is not supported")
        if dtype.names is not None:
            raise UnsupportedFeatureError(f"{where}: compound data types are not supported")
        if h5py.check_enum_dtype(dtype) is not None:
            raise UnsupportedFeatureError(f"{where}: enum data types are not supported")

    def attr_bytes(self, name: str) -> bytes:
        from h5py import h5a

        if not h5a.exists(self.id, name.encode()):
            return b""
        return string_bytes(_read_attribute(h5a.open(self.id, name.encode())))

    def attributes(self) -> tuple[dict[str, Any], Any]:
        return read_attributes(self.id)

    def num_scales(self, axis: int) -> int:
        from h5py import h5ds

        return int(h5ds.get_num_scales(self.id, axis))

    def filters(self) -> list[tuple[int, tuple[int, ...], bytes]]:
        out = []
        for i in range(self.plist.get_nfilters()):
            code, _flags, values, label = self.plist.get_filter(i)
            out.append((code, tuple(values), label))
        return out

    def has_external_storage(self) -> bool:
        return self.plist.get_external_count() > 0

    def chunk_shape(self) -> tuple[int, ...]:
        return tuple(self.plist.get_chunk())

    def contiguous_storage(self) -> tuple[int | None, int]:
        offset = self.id.get_offset()
        return offset, (self.id.get_storage_size() if offset is not None else 0)

    def stored_chunks(self, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        offsets: list[tuple[int, ...]] = []
        addresses: list[int] = []
        sizes: list[int] = []
        masks: list[int] = []

        def visit(info: Any) -> None:
            offsets.append(info.chunk_offset)
            addresses.append(info.byte_offset)
            sizes.append(info.size)
            masks.append(info.filter_mask)

        if self.id.get_num_chunks():
            self.id.chunk_iter(visit)
        unlimited = [axis for axis, m in enumerate(self.maxshape) if m is None]
        if len(unlimited) == 1 and unlimited[0] != 0:
            self._check_chunk_offsets(where, offsets, addresses, sizes)
        return (
            np.array(offsets, dtype=np.int64).reshape(len(offsets), self.ndim),
            np.array(addresses, dtype=np.int64),
            np.array(sizes, dtype=np.int64),
            np.array(masks, dtype=np.int64),
        )

    def _check_chunk_offsets(
        self, where: str, offsets: list[tuple[int, ...]], addresses: list[int], sizes: list[int]
    ) -> None:
        """HDF5 2.0 reports wrong chunk offsets for an extensible-array chunk index whose
        unlimited dimension is not the first: check each chunk against HDF5's own lookup."""
        for offset, address, size in zip(offsets, addresses, sizes, strict=True):
            ok = all(o < s for o, s in zip(offset, self.shape, strict=True))
            if ok:
                try:
                    _mask, data = self.id.read_direct_chunk(offset)
                except Exception:  # HDF5 finds no chunk there
                    ok = False
                else:
                    ok = data == self._read_bytes(address, size)
            if not ok:
                raise UnsupportedFeatureError(
                    f"{where}: h5py/HDF5 report chunk offsets that disagree with the chunks "
                    "they read (an extensible-array chunk index whose unlimited dimension is not "
                    "the first); the native HDF5 reader reads this file"
                )

    def read(self, region: Any = ()) -> np.ndarray:
        if self._hl is None:
            import h5py

            self._hl = h5py.Dataset(self.id)
        return self._hl[region]
