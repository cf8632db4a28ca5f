"""The format-neutral reference model shared by scanners, the combiner and writers.

A scanner turns one source file into a :class:`FileScan`: its dimensions,
global attributes and, per variable, the Zarr v2 array metadata plus the byte
range of every stored chunk (or the chunk's bytes inline). The combiner turns
many ``FileScan`` objects into one :class:`Aggregate`, which writers serialise:
variables as chunk tables (:class:`AggVariable`, for Kerchunk) or, for CF aggregations, as
whole-file fragments (:class:`FragmentedVariable`).

Chunk tables are numpy arrays over the C-ordered chunk grid (``-1`` marks a
chunk that is not stored, which readers fill with the fill value), so large
grids stay compact. Everything round-trips through plain JSON (``to_dict`` /
``from_dict``) for the per-file scan cache.
"""

from __future__ import annotations

import base64
import functools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MISSING = -1
"""Offset of a chunk that is not stored in the file (read as the fill value)."""


@functools.lru_cache(maxsize=1024)
def chunk_grid(shape: tuple[int, ...], chunks: tuple[int, ...]) -> tuple[int, ...]:
    """Number of chunks along each axis (remembered: every file of a project asks the same)."""
    return tuple(math.ceil(s / c) if c else 0 for s, c in zip(shape, chunks, strict=True))


def chunk_key(index: tuple[int, ...]) -> str:
    """Zarr v2 chunk key (``"0"`` for a 0-d array)."""
    return ".".join(str(i) for i in index) if index else "0"


def zarray_document(var: VariableScan | AggVariable) -> dict[str, Any]:
    """Zarr v2 ``.zarray`` of a variable (filters only, no compressor, C order)."""
    return {
        "chunks": list(var.chunks),
        "compressor": None,
        "dtype": var.dtype,
        "fill_value": var.fill_value,
        "filters": var.filters or None,
        "order": "C",
        "shape": list(var.shape),
        "zarr_format": 2,
    }


def zattrs_document(var: VariableScan | AggVariable) -> dict[str, Any]:
    """Zarr v2 ``.zattrs`` of a variable, with xarray's ``_ARRAY_DIMENSIONS``."""
    return {**var.attrs, "_ARRAY_DIMENSIONS": list(var.dims)}


@dataclass
class VariableScan:
    """One variable of one file, as Zarr v2 metadata plus its chunk table.

    ``filters`` are numcodecs configurations applied in order on encode (so in
    reverse on decode); the compressor is always null, as in kerchunk.
    ``fill_value`` is the Zarr fill value (``None`` when the variable declares
    no ``_FillValue``); ``attrs`` never contains ``_FillValue``.
    """

    name: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: str
    chunks: tuple[int, ...]
    filters: list[dict[str, Any]] | None
    fill_value: Any
    attrs: dict[str, Any]
    offsets: np.ndarray
    lengths: np.ndarray
    inline: dict[int, bytes] = field(default_factory=dict)
    storage: str = "chunked"

    def __post_init__(self) -> None:
        self.dims = tuple(self.dims)
        self.shape = tuple(int(s) for s in self.shape)
        self.chunks = tuple(int(c) for c in self.chunks)
        n = math.prod(self.grid)
        self.offsets = np.asarray(self.offsets, dtype=np.int64).reshape(-1)
        self.lengths = np.asarray(self.lengths, dtype=np.int64).reshape(-1)
        if self.offsets.size != n or self.lengths.size != n:
            raise ValueError(
                f"variable {self.name!r}: chunk table has {self.offsets.size} entries, "
                f"expected {n} for shape {self.shape} and chunks {self.chunks}"
            )

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # chunk tables travel as raw bytes: pickling numpy arrays one by one costs ~10 µs each,
        # and a 10,000-file project pickles ~180,000 of them into its scan cache
        return (
            _rebuild_variable,
            (
                self.name,
                self.dims,
                self.shape,
                self.dtype,
                self.chunks,
                self.filters,
                self.fill_value,
                self.attrs,
                self.offsets.tobytes(),
                self.lengths.tobytes(),
                self.inline,
                self.storage,
            ),
        )

    @property
    def grid(self) -> tuple[int, ...]:
        return chunk_grid(self.shape, self.chunks)

    @property
    def itemsize(self) -> int:
        return np.dtype(self.dtype).itemsize

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.itemsize

    def n_stored(self) -> int:
        """Number of chunks with a byte range or inline bytes."""
        return int(np.count_nonzero(self.offsets != MISSING)) + len(self.inline)

    def zarray(self) -> dict[str, Any]:
        """The ``.zarray`` document."""
        return zarray_document(self)

    def zattrs(self) -> dict[str, Any]:
        """The ``.zattrs`` document, with xarray's ``_ARRAY_DIMENSIONS``."""
        return zattrs_document(self)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dims": list(self.dims),
            "shape": list(self.shape),
            "dtype": self.dtype,
            "chunks": list(self.chunks),
            "filters": self.filters,
            "fill_value": self.fill_value,
            "attrs": self.attrs,
            "offsets": self.offsets.tolist(),
            "lengths": self.lengths.tolist(),
            "inline": {str(k): base64.b64encode(v).decode() for k, v in self.inline.items()},
            "storage": self.storage,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VariableScan:
        return cls(
            name=d["name"],
            dims=tuple(d["dims"]),
            shape=tuple(d["shape"]),
            dtype=d["dtype"],
            chunks=tuple(d["chunks"]),
            filters=d["filters"],
            fill_value=d["fill_value"],
            attrs=d["attrs"],
            offsets=np.asarray(d["offsets"], dtype=np.int64),
            lengths=np.asarray(d["lengths"], dtype=np.int64),
            inline={int(k): base64.b64decode(v) for k, v in d["inline"].items()},
            storage=d.get("storage", "chunked"),
        )


def _rebuild_variable(
    name: str,
    dims: tuple[str, ...],
    shape: tuple[int, ...],
    dtype: str,
    chunks: tuple[int, ...],
    filters: list[dict[str, Any]] | None,
    fill_value: Any,
    attrs: dict[str, Any],
    offsets: bytes,
    lengths: bytes,
    inline: dict[int, bytes],
    storage: str,
) -> VariableScan:
    """Unpickle a :class:`VariableScan` (see ``VariableScan.__reduce__``): the fields of a
    validated object, restored without validating them again."""
    var = object.__new__(VariableScan)
    var.__dict__.update(
        name=name,
        dims=dims,
        shape=shape,
        dtype=dtype,
        chunks=chunks,
        filters=filters,
        fill_value=fill_value,
        attrs=attrs,
        offsets=np.frombuffer(offsets, dtype=np.int64).copy(),
        lengths=np.frombuffer(lengths, dtype=np.int64).copy(),
        inline=inline,
        storage=storage,
    )
    return var


@dataclass
class FileScan:
    """Everything a scanner learned about one source file.

    ``coords`` holds the raw stored values of every 1-D dimension coordinate
    (a variable named like its only dimension), used to order files.
    """

    url: str
    format: str
    attrs: dict[str, Any]
    dims: dict[str, int]
    unlimited: tuple[str, ...]
    variables: dict[str, VariableScan]
    coords: dict[str, list[Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "format": self.format,
            "attrs": self.attrs,
            "dims": self.dims,
            "unlimited": list(self.unlimited),
            "variables": {k: v.to_dict() for k, v in self.variables.items()},
            "coords": self.coords,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FileScan:
        return cls(
            url=d["url"],
            format=d["format"],
            attrs=d["attrs"],
            dims=dict(d["dims"]),
            unlimited=tuple(d["unlimited"]),
            variables={k: VariableScan.from_dict(v) for k, v in d["variables"].items()},
            coords=d.get("coords", {}),
        )


@dataclass
class AggVariable:
    """One variable of the combined product.

    ``url_index``, ``offsets`` and ``lengths`` cover the combined chunk grid
    (C order); ``url_index == -1`` with no inline entry means "not stored".
    """

    name: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: str
    chunks: tuple[int, ...]
    filters: list[dict[str, Any]] | None
    fill_value: Any
    attrs: dict[str, Any]
    url_index: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    inline: dict[int, bytes] = field(default_factory=dict)

    @property
    def grid(self) -> tuple[int, ...]:
        return chunk_grid(self.shape, self.chunks)

    def zarray(self) -> dict[str, Any]:
        return zarray_document(self)

    def zattrs(self) -> dict[str, Any]:
        return zattrs_document(self)

    def n_refs(self) -> int:
        return int(np.count_nonzero(self.url_index >= 0)) + len(self.inline)


@dataclass
class FragmentedVariable:
    """A variable of the combined product held as whole-file fragments (a CF aggregation).

    ``sizes`` has one row per dimension: the fragments' lengths along it, in order (CF's
    ``map`` rows; a dimension that is not split has one fragment of its whole length).
    ``uris`` is the array of fragments: one axis per dimension (size-1 axes included),
    holding each fragment's source URL. ``identifiers`` is the variable's name in the
    fragments: a str when the same everywhere, else an object array shaped like ``uris``.
    ``dtype`` and ``fill_value`` (encoded as in ``.zarray``) are the fragments' own, as
    stored; ``attrs`` are the merged attributes (without ``_FillValue``).
    """

    name: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: str
    fill_value: Any
    attrs: dict[str, Any]
    sizes: tuple[tuple[int, ...], ...]
    uris: np.ndarray
    identifiers: str | np.ndarray

    def __post_init__(self) -> None:
        self.dims = tuple(self.dims)
        self.shape = tuple(int(s) for s in self.shape)
        self.sizes = tuple(tuple(int(n) for n in row) for row in self.sizes)
        self.uris = np.asarray(self.uris, dtype=object)
        if not isinstance(self.identifiers, str):
            self.identifiers = np.asarray(self.identifiers, dtype=object)
        if len(self.sizes) != len(self.dims):
            raise ValueError(f"variable {self.name!r}: {len(self.sizes)} map rows for dims {self.dims}")
        for d, row, n in zip(self.dims, self.sizes, self.shape, strict=True):
            if sum(row) != n or any(k <= 0 for k in row):
                raise ValueError(
                    f"variable {self.name!r}: fragment sizes {list(row)} along {d!r} do not tile length {n}"
                )
        if self.uris.shape != self.grid:
            raise ValueError(
                f"variable {self.name!r}: array of fragments has shape {self.uris.shape}, "
                f"expected {self.grid}"
            )
        if not isinstance(self.identifiers, str) and self.identifiers.shape != self.grid:
            raise ValueError(
                f"variable {self.name!r}: identifiers have shape {self.identifiers.shape}, "
                f"expected {self.grid} or a single name"
            )

    @property
    def grid(self) -> tuple[int, ...]:
        """Number of fragments along each dimension."""
        return tuple(len(row) for row in self.sizes)

    def n_refs(self) -> int:
        """Number of fragments."""
        return int(self.uris.size)

    def identifier(self, index: tuple[int, ...]) -> str:
        """The variable's name in the fragment at ``index`` of the array of fragments."""
        return self.identifiers if isinstance(self.identifiers, str) else str(self.identifiers[index])


@dataclass(frozen=True)
class Fragment:
    """Where one source file sits in the product: its index range along each concat dim."""

    url: str
    ranges: dict[str, tuple[int, int]]

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "ranges": {k: list(v) for k, v in self.ranges.items()}}


@dataclass
class Aggregate:
    """The combined dataset, ready for a writer."""

    attrs: dict[str, Any]
    dims: dict[str, int]
    variables: dict[str, AggVariable | FragmentedVariable]
    urls: list[str]
    concat_dims: tuple[str, ...]
    fragments: list[Fragment]
    notes: list[str] = field(default_factory=list)

    def n_refs(self) -> int:
        """Chunk references and inline chunks of :class:`AggVariable` s, plus the fragments of
        :class:`FragmentedVariable` s."""
        return sum(v.n_refs() for v in self.variables.values())

    def n_fragments(self) -> int:
        """Fragments of every :class:`FragmentedVariable` (0 for a Kerchunk aggregate)."""
        return sum(v.n_refs() for v in self.variables.values() if isinstance(v, FragmentedVariable))


def encode_fill_value(value: Any, dtype: np.dtype) -> Any:
    """Encode a fill value for ``.zarray`` as Zarr v2 does (NaN and infinities as strings)."""
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.size != 1:
        raise ValueError(f"fill value {value!r} is not a scalar")
    if dtype.kind == "f":
        v = float(arr.reshape(()))
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        return v
    if dtype.kind in "iu":
        return int(arr.reshape(()))
    if dtype.kind == "b":
        return bool(arr.reshape(()))
    if dtype.kind in "SV":
        return base64.b64encode(np.asarray(value, dtype=dtype).tobytes()).decode()
    return None


def decode_fill_value(value: Any, dtype: np.dtype) -> Any:
    """Inverse of :func:`encode_fill_value` (a numpy scalar, or None)."""
    if value is None:
        return None
    if dtype.kind == "f":
        return dtype.type({"NaN": np.nan, "Infinity": np.inf, "-Infinity": -np.inf}.get(value, value))
    if dtype.kind in "SV":
        return np.frombuffer(base64.b64decode(value), dtype=dtype)[0]
    return dtype.type(value)
