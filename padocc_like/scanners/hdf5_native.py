"""The native HDF5 backend: the scanner's facts read by :mod:`._hdf5_format`, without h5py.

It fills the same facts as the h5py backend in :mod:`.hdf5` (and the shared builder there
turns them into the scan), with the values h5py would give: attributes come out as h5py's
low-level read makes them (numpy arrays in the file's byte order, bytes for strings, an
:class:`~.hdf5.EmptyAttribute` for a null dataspace), names in HDF5's name order, dimension
scales recognised as ``H5DSis_scale`` recognises them.

Whatever it does not read exactly raises :class:`~._hdf5_format.NativeUnsupported`, and
the scanner then reads the whole file with h5py. This module never imports h5py.
"""

from __future__ import annotations

import math
import os
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import ScanError
from ..references.model import FileScan
from ..references.read import decode_chunk
from . import _hdf5_format as fmt
from ._hdf5_format import NativeUnsupported
from .hdf5 import HIDDEN_ATTR_BYTES, EmptyAttribute, _codec_for, _FileReader, attribute_value, string_bytes

__all__ = ["NativeUnsupported", "scan_native"]

_VLEN = struct.Struct("<IQI")  # a variable-length element: length, global heap collection, index
_DIMENSION_SCALE = b"DIMENSION_SCALE"


def scan_native(path: str, inline_threshold: int = 500) -> FileScan:
    """Scan an HDF5 file with the native reader; NativeUnsupported if it cannot."""
    fd = os.open(path, os.O_RDONLY)  # FileNotFoundError propagates
    try:
        return scan_native_reader(path, fmt.PagedReader.for_fd(fd), inline_threshold)
    finally:
        os.close(fd)


def scan_native_reader(url: str, reader: fmt.PagedReader, inline_threshold: int = 500) -> FileScan:
    """Scan the HDF5 file ``url`` read through ``reader`` (a local file or ranged GETs)."""
    try:
        source = NativeSource(url, reader)
        return _FileReader(source, inline_threshold).scan()
    except (ScanError, NativeUnsupported):
        raise
    except Exception as err:  # a damaged file can break any assumption of the parser
        raise NativeUnsupported(f"{type(err).__name__}: {err}") from err


def _unshuffle(data: bytes, itemsize: int) -> bytes:
    """HDF5's shuffle filter, reversed: byte planes back to elements; the bytes past the last
    whole element stay where they are."""
    n = len(data) // itemsize
    if itemsize <= 1 or n <= 1:
        return data
    body = np.frombuffer(data, dtype=np.uint8, count=n * itemsize).reshape(itemsize, n).T.tobytes()
    return body + data[n * itemsize :]


# --- attributes ---------------------------------------------------------------------------------


class RawAttribute:
    """One attribute message: its name, and its value decoded on demand."""

    __slots__ = ("_parts", "data", "name")

    def __init__(self, data: bytes) -> None:
        version = data[0]
        if version not in (1, 2, 3) or len(data) < 8:
            raise NativeUnsupported(f"attribute message version {version}")
        if version > 1 and data[1] & 0x03:
            raise NativeUnsupported("attribute with a shared datatype or dataspace")
        name_size, type_size, space_size = struct.unpack_from("<HHH", data, 2)
        if version == 1:
            pos = 8
            pad = 7
        else:
            pos = 8 if version == 2 else 9
            pad = 0
        name = data[pos : pos + name_size - 1]  # as HDF5: at most the size less its NUL
        cut = name.find(b"\x00")
        self.name = name if cut < 0 else name[:cut]
        type_pos = pos + ((name_size + pad) & ~pad)
        space_pos = type_pos + ((type_size + pad) & ~pad)
        value_pos = space_pos + ((space_size + pad) & ~pad)
        if value_pos > len(data) or not self.name:
            raise NativeUnsupported("attribute message too short")
        self.data = data
        self._parts = (type_pos, space_pos, value_pos)

    def value(self, h5: fmt.H5File) -> Any:
        """The value as h5py's low-level read gives it (see ``hdf5._read_attribute``)."""
        type_pos, space_pos, value_pos = self._parts
        h5type, _ = fmt.parse_datatype(self.data, type_pos)
        space, _ = fmt.parse_dataspace(self.data, space_pos)
        if h5type.cls == fmt.VLEN and h5type.vlen_string:
            dtype = np.dtype(object)
        elif h5type.dtype is not None:
            dtype = h5type.dtype
        else:
            raise NativeUnsupported(f"attribute {self.name!r}: datatype class {h5type.cls}")
        if space.shape is None:
            return EmptyAttribute(dtype)
        n = math.prod(space.shape)
        raw = self.data[value_pos:]
        if dtype.kind != "O":
            if len(raw) < n * dtype.itemsize:
                raise NativeUnsupported(f"attribute {self.name!r}: value shorter than its type and shape")
            return np.frombuffer(raw, dtype=dtype, count=n).reshape(space.shape)
        if len(raw) < 16 * n:
            raise NativeUnsupported(f"attribute {self.name!r}: value shorter than its shape")
        out = np.empty(n, dtype=object)
        for i in range(n):
            length, collection, index = _VLEN.unpack_from(raw, 16 * i)
            if length == 0:
                out[i] = b""
                continue
            text = h5.global_heap_object(collection, index)
            if len(text) < length:
                raise NativeUnsupported(f"attribute {self.name!r}: string shorter than its length")
            text = text[:length]
            if b"\x00" in text:
                raise NativeUnsupported(f"attribute {self.name!r}: string with an embedded NUL")
            out[i] = text
        return out.reshape(space.shape)

    def references(self, h5: fmt.H5File) -> list[list[int]]:
        """The object addresses of a variable-length sequence of object references
        (``DIMENSION_LIST``), one list per element."""
        type_pos, space_pos, value_pos = self._parts
        h5type, _ = fmt.parse_datatype(self.data, type_pos)
        space, _ = fmt.parse_dataspace(self.data, space_pos)
        base = h5type.base
        if h5type.cls != fmt.VLEN or base is None or base.cls != fmt.REFERENCE or space.shape is None:
            raise NativeUnsupported(f"attribute {self.name!r} is not a list of object references")
        n = math.prod(space.shape)
        raw = self.data[value_pos:]
        if len(raw) < 16 * n:
            raise NativeUnsupported(f"attribute {self.name!r}: value shorter than its shape")
        out = []
        for i in range(n):
            length, collection, index = _VLEN.unpack_from(raw, 16 * i)
            if length == 0:
                out.append([])
                continue
            data = h5.global_heap_object(collection, index)
            if len(data) < 8 * length:
                raise NativeUnsupported(f"attribute {self.name!r}: reference list too short")
            out.append(list(struct.unpack_from(f"<{length}Q", data)))
        return out


def _attribute_table(h5: fmt.H5File, header: fmt.ObjectHeader) -> dict[bytes, RawAttribute]:
    table: dict[bytes, RawAttribute] = {}
    for message in h5.attribute_messages(header):
        attr = RawAttribute(message)
        if attr.name in table:
            raise NativeUnsupported(f"attribute {attr.name!r} twice")
        table[attr.name] = attr
    return dict(sorted(table.items()))  # HDF5's name order (strcmp), as h5py iterates


def _read_attributes(h5: fmt.H5File, table: dict[bytes, RawAttribute]) -> tuple[dict[str, Any], Any]:
    attrs: dict[str, Any] = {}
    fill = None
    for name, attr in table.items():
        if name in HIDDEN_ATTR_BYTES and name != b"_FillValue":
            continue
        value = attr.value(h5)
        if name == b"_FillValue":
            fill = value
        else:
            key = name.decode("utf-8", errors="replace")
            attrs[key] = attribute_value(value, key)
    return attrs, fill


# --- the file -----------------------------------------------------------------------------------


class NativeSource:
    """A file read with the native reader (the :class:`~.hdf5.Source` of the builder)."""

    def __init__(self, path: str, reader: fmt.PagedReader) -> None:
        self.path = path
        self.reader = reader
        self.size = reader.size
        self.h5 = fmt.H5File(reader)
        self.root = self.h5.object_header(self.h5.root_address)
        self._root_attrs = _attribute_table(self.h5, self.root)
        self._links: list[fmt.Link] = []

    def read_bytes(self, offset: int, length: int) -> bytes:
        length = max(0, min(length, self.size - offset))
        return self.reader.read(offset, length)

    def has_root_attribute(self, name: bytes) -> bool:
        return name in self._root_attrs

    def root_attributes(self) -> dict[str, Any]:
        return _read_attributes(self.h5, self._root_attrs)[0]

    def datasets(self) -> Iterator[tuple[str, NativeDataset]]:
        self._links = self.h5.links(self.root)
        for link in self._links:
            key = link.name.decode("utf-8", errors="replace")
            header = self.h5.object_header(link.address)
            types = header.types()
            if {fmt.MSG_DATASPACE, fmt.MSG_DATATYPE, fmt.MSG_LAYOUT} <= types:
                yield key, NativeDataset(self.h5, header, key)
            elif types & {fmt.MSG_SYMBOL_TABLE, fmt.MSG_LINK_INFO, fmt.MSG_LINK, fmt.MSG_GROUP_INFO}:
                raise NativeUnsupported(f"{key!r} is a group")
            else:
                raise NativeUnsupported(f"{key!r} is neither a dataset nor a group (a committed datatype?)")

    def scale_name(self, ds: NativeDataset, axis: int, known: dict[int, str]) -> str:
        address = ds.dimension_list()[axis][0]
        found = known.get(address)
        if found is not None:
            return found
        # a dataset that is not a dimension scale: h5py names it by its path
        names = [link.name for link in self._links if link.address == address]
        if len(names) != 1:
            raise NativeUnsupported(f"a dimension scale at {address:#x} is not one object of the root group")
        return names[0].decode("utf-8", errors="replace").removeprefix("_nc4_non_coord_")


# --- datasets -----------------------------------------------------------------------------------


class NativeDataset:
    """One dataset's facts (the :class:`~.hdf5.Dataset` of the builder)."""

    def __init__(self, h5: fmt.H5File, header: fmt.ObjectHeader, key: str) -> None:
        self.h5 = h5
        self.header = header
        self.key = key
        try:
            self._read_header()
        except NativeUnsupported as err:
            raise NativeUnsupported(f"dataset {key!r}: {err}") from err
        self._attrs: dict[bytes, RawAttribute] | None = None
        self._is_scale: bool | None = None
        self._dimension_list: list[list[int]] | None = None

    def _read_header(self) -> None:
        header = self.header
        space, _ = fmt.parse_dataspace(header.first(fmt.MSG_DATASPACE) or b"")
        if space.shape is None or space.maxshape is None:
            raise NativeUnsupported("a null dataspace")
        self.shape: tuple[int, ...] = space.shape
        self.ndim = len(self.shape)
        self.maxshape: tuple[int | None, ...] = space.maxshape
        h5type, _ = fmt.parse_datatype(header.first(fmt.MSG_DATATYPE) or b"")
        if h5type.dtype is None or h5type.cls not in (fmt.FIXED, fmt.FLOAT, fmt.STRING):
            raise NativeUnsupported(f"datatype class {h5type.cls}")
        self.dtype: np.dtype = h5type.dtype
        if fmt.MSG_EXTERNAL in header.types():
            raise NativeUnsupported("data in external files")
        self._layout = fmt.parse_layout(
            header.first(fmt.MSG_LAYOUT) or b"\x00", self.shape, self.dtype.itemsize
        )
        self.layout = self._layout.kind
        pipeline = header.first(fmt.MSG_FILTERS)
        self._pipeline = fmt.parse_filters(pipeline) if pipeline is not None else []
        fill = fmt.parse_fill(header.first(fmt.MSG_FILL), header.first(fmt.MSG_FILL_OLD), self.dtype.itemsize)
        self._fill_bytes = fill

    @property
    def address(self) -> int:
        return self.header.address

    @property
    def attrs(self) -> dict[bytes, RawAttribute]:
        if self._attrs is None:
            self._attrs = _attribute_table(self.h5, self.header)
        return self._attrs

    @property
    def fillvalue(self) -> Any:
        if self._fill_bytes is None:
            return np.zeros(1, dtype=self.dtype)[0]
        return np.frombuffer(self._fill_bytes, dtype=self.dtype)[0]

    @property
    def is_scale(self) -> bool:
        """As ``H5DSis_scale``: a ``CLASS`` attribute holding the null-terminated
        16-byte string ``DIMENSION_SCALE``."""
        if self._is_scale is None:
            self._is_scale = self._class_is_scale()
        return self._is_scale

    def _class_is_scale(self) -> bool:
        attr = self.attrs.get(b"CLASS")
        if attr is None:
            return False
        type_pos, space_pos, value_pos = attr._parts
        h5type, _ = fmt.parse_datatype(attr.data, type_pos)
        if h5type.cls == fmt.VLEN and h5type.vlen_string:
            raise NativeUnsupported("variable-length CLASS attribute")
        if h5type.cls != fmt.STRING or h5type.strpad != 0 or h5type.size != 16:
            return False
        space, _ = fmt.parse_dataspace(attr.data, space_pos)
        if space.shape is None or math.prod(space.shape) < 1:
            raise NativeUnsupported("CLASS attribute without a value")
        raw = attr.data[value_pos : value_pos + 16]
        if b"\x00" not in raw:
            raise NativeUnsupported("CLASS attribute without a terminating NUL")
        text = raw[: raw.index(b"\x00")]
        if text == _DIMENSION_SCALE:
            return True
        if _DIMENSION_SCALE.startswith(text):
            raise NativeUnsupported(f"CLASS attribute {text!r}: a prefix of DIMENSION_SCALE")
        return False

    def check_dtype(self, where: str) -> None:
        """Nothing to check: datasets of types without a Zarr equivalent are declined."""

    def attr_bytes(self, name: str) -> bytes:
        attr = self.attrs.get(name.encode())
        if attr is None:
            return b""
        return string_bytes(attr.value(self.h5))

    def attributes(self) -> tuple[dict[str, Any], Any]:
        return _read_attributes(self.h5, self.attrs)

    def dimension_list(self) -> list[list[int]]:
        if self._dimension_list is None:
            attr = self.attrs.get(b"DIMENSION_LIST")
            refs = attr.references(self.h5) if attr is not None else [[] for _ in range(self.ndim)]
            if len(refs) != self.ndim:
                raise NativeUnsupported(f"dataset {self.key!r}: DIMENSION_LIST does not match its rank")
            self._dimension_list = refs
        return self._dimension_list

    def num_scales(self, axis: int) -> int:
        return len(self.dimension_list()[axis])

    def filters(self) -> list[tuple[int, tuple[int, ...], bytes]]:
        return [(code, values, name) for code, _flags, values, name in self._pipeline]

    def has_external_storage(self) -> bool:
        return False

    def chunk_shape(self) -> tuple[int, ...]:
        return self._layout.chunks

    def contiguous_storage(self) -> tuple[int | None, int]:
        layout = self._layout
        if layout.address == fmt.UNDEF:
            return None, 0
        return layout.address, layout.size

    def stored_chunks(self, where: str = "") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        table = fmt.chunk_table(self.h5, self._layout, self.shape, self.maxshape, bool(self._pipeline))
        return table.coords, table.addresses, table.sizes, table.masks

    # data
    def read(self, region: Any = ()) -> np.ndarray:
        layout = self._layout
        if layout.kind == "compact":
            nbytes = math.prod(self.shape) * self.dtype.itemsize
            if len(layout.compact) != nbytes:
                raise NativeUnsupported(f"dataset {self.key!r}: compact data of the wrong size")
            return np.frombuffer(layout.compact, dtype=self.dtype).reshape(self.shape)[region]
        if layout.kind == "contiguous":
            if layout.address == fmt.UNDEF:
                return np.full(self.shape, self.fillvalue, dtype=self.dtype)[region]
            nbytes = math.prod(self.shape) * self.dtype.itemsize
            raw = self.h5.read(layout.address, nbytes)
            return np.frombuffer(raw, dtype=self.dtype).reshape(self.shape)[region]
        if layout.kind == "chunked":
            return self._read_chunked(region)
        raise NativeUnsupported(f"dataset {self.key!r}: reading {layout.kind} data")

    def _decode(self, data: bytes) -> bytes:
        """Undo the filter pipeline as HDF5 does (its shuffle leaves a trailing partial
        element as it is, where numcodecs' refuses it)."""
        for code, _flags, values, _name in reversed(self._pipeline):
            if code == 1:
                data = zlib.decompress(data)
            elif code == 2:
                data = _unshuffle(data, self.dtype.itemsize)
            else:
                codec = _codec_for(code, values, self.dtype)
                if codec is None:
                    raise NativeUnsupported(f"dataset {self.key!r}: filter {code} without a codec")
                data = decode_chunk(data, [codec])
        return data

    def _read_chunked(self, region: Any) -> np.ndarray:
        if region == ():
            region = tuple(slice(0, s) for s in self.shape)
        if len(region) != self.ndim or any(
            not isinstance(r, slice) or r.step not in (None, 1) or r.start is None for r in region
        ):
            raise NativeUnsupported("unexpected region")
        lo = [r.start for r in region]
        hi = [r.stop for r in region]
        out = np.full([b - a for a, b in zip(lo, hi, strict=True)], self.fillvalue, dtype=self.dtype)
        chunks = self._layout.chunks
        where, addresses, sizes, masks = self.stored_chunks()
        rows = zip(where.tolist(), addresses.tolist(), sizes.tolist(), masks.tolist(), strict=True)
        for start, address, size, mask in rows:
            end = [s + c for s, c in zip(start, chunks, strict=True)]
            if any(e <= a or s >= b for s, e, a, b in zip(start, end, lo, hi, strict=True)):
                continue
            if mask:
                raise NativeUnsupported(f"dataset {self.key!r}: a chunk skips filters")
            raw = self._decode(self.h5.read(address, size))
            if len(raw) != self._layout.chunk_nbytes:
                raise NativeUnsupported(f"dataset {self.key!r}: a chunk decodes to the wrong size")
            block = np.frombuffer(raw, dtype=self.dtype).reshape(chunks)
            src = tuple(
                slice(max(a, s) - s, min(b, e) - s) for s, e, a, b in zip(start, end, lo, hi, strict=True)
            )
            dst = tuple(
                slice(max(a, s) - a, min(b, e) - a) for s, e, a, b in zip(start, end, lo, hi, strict=True)
            )
            out[dst] = block[src]
        return out
