"""Scanner for netCDF-3 files: classic (CDF-1), 64-bit offset (CDF-2) and 64-bit data (CDF-5).

The header is parsed with ``struct`` and numpy from a growing read buffer, never
the whole file. netCDF-3 data is uncompressed and stored in one of two ways:

* a non-record ("fixed") variable is one contiguous block at ``begin``: one chunk;
* a record variable (first dimension unlimited) has one slab per record, at
  ``begin + r * recsize``, where ``recsize`` is the sum of the 4-byte padded
  slab sizes of all record variables, or, when there is exactly one record
  variable, its unpadded slab size (records are then not padded).

The layout rules and consistency checks follow netcdf-c's ``v1hpg.c``
(``NC_computeshapes``, ``NC_check_voffs``): headers netcdf-c rejects as corrupt
are rejected here too, and so is a file whose declared data extends past its end.
"""

from __future__ import annotations

import math
import mmap
import os
import struct
from dataclasses import dataclass
from typing import IO, Any, ClassVar

import numpy as np

from ..errors import ScanError
from ..references.model import MISSING, FileScan, VariableScan, encode_fill_value
from .base import to_json_value

MAGIC_CLASSIC = b"CDF\x01"
MAGIC_64BIT_OFFSET = b"CDF\x02"
MAGIC_64BIT_DATA = b"CDF\x05"

_FORMATS = {1: "netcdf3-classic", 2: "netcdf3-64bit-offset", 5: "netcdf3-64bit-data"}

_NC_DIMENSION = 0x0A
_NC_VARIABLE = 0x0B
_NC_ATTRIBUTE = 0x0C

_NC_CHAR = 2
_NC_TYPES: dict[int, tuple[str, str]] = {
    1: ("byte", "|i1"),
    2: ("char", "|S1"),
    3: ("short", ">i2"),
    4: ("int", ">i4"),
    5: ("float", ">f4"),
    6: ("double", ">f8"),
    7: ("ubyte", "|u1"),
    8: ("ushort", ">u2"),
    9: ("uint", ">u4"),
    10: ("int64", ">i8"),
    11: ("uint64", ">u8"),
}
_CLASSIC_MAX_TYPE = 6
"""CDF-1 and CDF-2 only define types 1-6; CDF-5 adds 7-11."""

_HEADER_READ = 64 * 1024
"""First header read; the buffer grows (doubling) while the header needs more."""

_SPAN_READ_LIMIT = 4 * 1024 * 1024
"""Strided record data is read as one span up to this size, else gathered from a memory map."""

_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")
_U64 = struct.Struct(">Q")
_I64 = struct.Struct(">q")

_Attr = tuple[int, Any]
"""An attribute as parsed: its nc_type and its value (``bytes`` for char, else an array)."""


@dataclass(frozen=True)
class _Var:
    """One variable entry of the header."""

    name: str
    dimids: tuple[int, ...]
    attrs: dict[str, _Attr]
    nc_type: int
    begin: int


@dataclass(frozen=True)
class _Header:
    """The parsed header."""

    version: int
    numrecs: int | None
    """None when the header says "streaming" (the count is implied by the file size)."""
    dims: list[tuple[str, int]]
    attrs: dict[str, _Attr]
    variables: list[_Var]
    end: int
    """Byte offset just after the header."""


def _round4(n: int) -> int:
    return (n + 3) & ~3


class _HeaderReader:
    """Big-endian readers over a growing buffer of the start of the file."""

    def __init__(self, f: IO[bytes], path: str, file_size: int) -> None:
        self._f = f
        self.path = path
        self.file_size = file_size
        self.buf = b""
        self.pos = 0
        self.version = 1

    @property
    def cdf5(self) -> bool:
        return self.version == 5

    def error(self, what: str) -> ScanError:
        return ScanError(f"{self.path}: corrupt netCDF-3 header: {what}")

    def need(self, n: int, what: str) -> None:
        """Make sure ``n`` bytes from ``pos`` are buffered, reading more of the file if needed."""
        end = self.pos + n
        if end <= len(self.buf):
            return
        if end > self.file_size:
            raise ScanError(
                f"{self.path}: truncated netCDF-3 header: {what} needs bytes up to {end} "
                f"but the file has only {self.file_size} bytes"
            )
        want = min(self.file_size, max(end, 2 * len(self.buf), _HEADER_READ))
        try:
            self._f.seek(len(self.buf))
            more = self._f.read(want - len(self.buf))
        except OSError as err:
            raise ScanError(f"{self.path}: cannot read the header: {err}") from err
        self.buf += more
        if len(self.buf) < end:
            raise ScanError(
                f"{self.path}: truncated netCDF-3 header: {what} needs bytes up to {end} "
                f"but only {len(self.buf)} bytes could be read"
            )

    def unpack(self, fmt: struct.Struct, what: str) -> int:
        self.need(fmt.size, what)
        (value,) = fmt.unpack_from(self.buf, self.pos)
        self.pos += fmt.size
        return value

    def tag(self, what: str) -> int:
        """A 32-bit unsigned word (list tags, nc_type)."""
        return self.unpack(_U32, what)

    def count(self, what: str) -> int:
        """A non-negative size or count: 32-bit unsigned, or 64-bit signed in CDF-5."""
        if not self.cdf5:
            return self.unpack(_U32, what)
        at = self.pos
        value = self.unpack(_I64, what)
        if value < 0:
            raise self.error(f"{what} at byte {at} is negative ({value})")
        return value

    def offset(self, what: str) -> int:
        """A file offset: 32-bit signed in CDF-1, 64-bit signed in CDF-2 and CDF-5."""
        at = self.pos
        value = self.unpack(_I32 if self.version == 1 else _I64, what)
        if value < 0:
            raise self.error(f"{what} at byte {at} is negative ({value})")
        return value

    def raw(self, n: int, what: str) -> bytes:
        """``n`` bytes, then skip the padding to a 4-byte boundary."""
        padded = _round4(n)
        self.need(padded, what)
        value = self.buf[self.pos : self.pos + n]
        self.pos += padded
        return value

    def name(self, what: str) -> str:
        n = self.count(f"the length of {what}")
        at = self.pos
        raw = self.raw(n, what)
        try:  # netcdf-c treats names as C strings: a NUL ends the name
            return raw.split(b"\x00", 1)[0].decode("utf-8")
        except UnicodeDecodeError as err:
            raise self.error(f"{what} at byte {at} is not UTF-8 ({raw!r})") from err

    def list_length(self, tag: int, min_entry: int, what: str) -> int:
        """The element count of a dim/att/var list (0 for ABSENT), bounded by the file size."""
        at = self.pos
        found = self.tag(f"the {what} list tag")
        n = self.count(f"the {what} count")
        if n == 0:  # ABSENT; netcdf-c ignores the tag of an empty list
            return 0
        if found != tag:
            raise self.error(f"expected the {what} list tag {tag:#x} at byte {at}, found {found:#x}")
        if n * min_entry > self.file_size - self.pos:
            raise self.error(
                f"the {what} list at byte {at} claims {n} entries, more than the "
                f"{self.file_size} byte file can hold"
            )
        return n


def _parse_attrs(h: _HeaderReader, owner: str) -> dict[str, _Attr]:
    size = 8 if h.cdf5 else 4
    n = h.list_length(_NC_ATTRIBUTE, 4 + size + 4 + size, f"{owner} attribute")
    attrs: dict[str, _Attr] = {}
    for _ in range(n):
        name = h.name(f"an attribute name of {owner}")
        at = h.pos
        nc_type = h.tag(f"the type of attribute {name!r} of {owner}")
        dtype = _dtype_of(h, nc_type, f"attribute {name!r} of {owner}", at)
        nelems = h.count(f"the length of attribute {name!r} of {owner}")
        nbytes = nelems * np.dtype(dtype).itemsize
        what = f"the value of attribute {name!r} of {owner}"
        if nbytes > h.file_size:
            raise h.error(f"{what} claims {nelems} elements, more than the file holds")
        if nc_type == _NC_CHAR:
            value: Any = h.raw(nbytes, what)
        else:
            h.need(_round4(nbytes), what)
            value = np.frombuffer(h.buf, dtype=dtype, count=nelems, offset=h.pos).copy()
            h.pos += _round4(nbytes)
        if name in attrs:
            raise h.error(f"{owner} has two attributes named {name!r}")
        attrs[name] = (nc_type, value)
    return attrs


def _dtype_of(h: _HeaderReader, nc_type: int, what: str, at: int) -> str:
    if nc_type not in _NC_TYPES or (not h.cdf5 and nc_type > _CLASSIC_MAX_TYPE):
        raise h.error(
            f"{what} has nc_type {nc_type} at byte {at}, which is not a valid {_FORMATS[h.version]} type"
        )
    return _NC_TYPES[nc_type][1]


def _parse_header(f: IO[bytes], path: str, file_size: int) -> _Header:
    h = _HeaderReader(f, path, file_size)
    h.need(4, "the magic number")
    magic = h.buf[:4]
    versions = {MAGIC_CLASSIC: 1, MAGIC_64BIT_OFFSET: 2, MAGIC_64BIT_DATA: 5}
    if magic not in versions:
        raise ScanError(f"{path}: not a netCDF-3 file (first bytes {magic!r})")
    h.version = versions[magic]
    h.pos = 4
    if h.cdf5:
        numrecs = h.unpack(_U64, "the record count")
        streaming = numrecs == 0xFFFF_FFFF_FFFF_FFFF
        if not streaming and numrecs >= 1 << 63:
            raise h.error(f"the record count is negative ({numrecs - (1 << 64)})")
    else:
        numrecs = h.unpack(_U32, "the record count")
        streaming = numrecs == 0xFFFF_FFFF
    size = 8 if h.cdf5 else 4

    dims: list[tuple[str, int]] = []
    for i in range(h.list_length(_NC_DIMENSION, 4 + size, "dimension")):
        name = h.name(f"the name of dimension {i}")
        dims.append((name, h.count(f"the size of dimension {name!r}")))
    names = [d[0] for d in dims]
    if len(set(names)) != len(names):
        raise h.error(f"duplicate dimension names in {names}")

    attrs = _parse_attrs(h, "the file")

    variables: list[_Var] = []
    seen: set[str] = set()
    n_vars = h.list_length(_NC_VARIABLE, 4 + size + 4 + size + 4 + size + size, "variable")
    for i in range(n_vars):
        name = h.name(f"the name of variable {i}")
        what = f"variable {name!r}"
        ndims = h.count(f"the number of dimensions of {what}")
        if ndims * size > file_size:
            raise h.error(f"{what} claims {ndims} dimensions")
        h.need(ndims * size, f"the dimension ids of {what}")
        ids = np.frombuffer(h.buf, dtype=">i8" if h.cdf5 else ">u4", count=ndims, offset=h.pos)
        h.pos += ndims * size
        dimids = tuple(int(d) for d in ids)
        for d in dimids:
            if not 0 <= d < len(dims):
                raise h.error(
                    f"{what} refers to dimension id {d}, but the file defines {len(dims)} dimensions"
                )
        vattrs = _parse_attrs(h, what)
        at = h.pos
        nc_type = h.tag(f"the type of {what}")
        _dtype_of(h, nc_type, what, at)
        h.count(f"the vsize of {what}")  # redundant (and clipped for big variables): recomputed
        begin = h.offset(f"the begin offset of {what}")
        if name in seen:
            raise h.error(f"two variables are named {name!r}")
        seen.add(name)
        variables.append(_Var(name, dimids, vattrs, nc_type, begin))
    return _Header(h.version, None if streaming else numrecs, dims, attrs, variables, h.pos)


def _attr_json(nc_type: int, value: Any) -> Any:
    """An attribute value as JSON: str for char, a scalar for one number, else a list."""
    if nc_type == _NC_CHAR:
        return to_json_value(value.rstrip(b"\x00"))
    if value.size == 1:
        return to_json_value(value[0])
    return to_json_value(value)


def _fill_value(path: str, var: str, attr: _Attr, dtype: np.dtype) -> Any:
    """The Zarr fill value of a variable from its ``_FillValue`` attribute."""
    nc_type, value = attr
    arr = np.frombuffer(value, dtype="S1") if nc_type == _NC_CHAR else value
    if arr.size != 1:
        raise ScanError(f"{path}: variable {var!r}: _FillValue has {arr.size} values, expected exactly one")
    if (arr.dtype.kind == "S") != (dtype.kind == "S"):
        raise ScanError(
            f"{path}: variable {var!r}: _FillValue of type {_NC_TYPES[nc_type][0]} "
            f"does not match the variable's type {dtype}"
        )
    with np.errstate(all="ignore"):
        cast = arr.astype(dtype)
        # a double fill on a float variable rounds, as readers do; anything else must be exact
        exact = (arr.dtype.kind == dtype.kind == "f") or bool(np.all(cast.astype(arr.dtype) == arr))
    if not exact:
        raise ScanError(
            f"{path}: variable {var!r}: _FillValue {arr[0]!r} cannot be represented "
            f"in the variable's type {dtype}"
        )
    return encode_fill_value(cast[0], dtype)


def _pread(fd: int, path: str, var: str, offset: int, n: int) -> bytes:
    """Exactly ``n`` bytes at ``offset``."""
    parts = []
    got = 0
    try:
        while got < n:
            part = os.pread(fd, n - got, offset + got)
            if not part:
                break
            parts.append(part)
            got += len(part)
    except OSError as err:
        raise ScanError(f"{path}: variable {var!r}: cannot read bytes at {offset}: {err}") from err
    if got < n:
        raise ScanError(
            f"{path}: variable {var!r}: bytes [{offset}, {offset + n}) lie beyond the end "
            f"of the file (read {got} of {n})"
        )
    return b"".join(parts)


def _read_strided(fd: int, path: str, var: str, first: int, stride: int, count: int, length: int) -> bytes:
    """The concatenated bytes of ``count`` blocks of ``length`` bytes, ``stride`` apart."""
    if count == 0:
        return b""
    span = (count - 1) * stride + length
    if count == 1 or stride == length:
        return _pread(fd, path, var, first, span)
    if span <= _SPAN_READ_LIMIT:
        buf = np.frombuffer(_pread(fd, path, var, first, span), dtype=np.uint8)
        return _gather(buf, stride, count, length)
    try:  # sparse blocks far apart: gather from a memory map, touching only their pages
        with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mm:
            if first + span > len(mm):
                raise ValueError("the file shrank")
            buf = np.frombuffer(mm, dtype=np.uint8, count=span, offset=first)
            try:
                return _gather(buf, stride, count, length)
            finally:
                del buf  # release the export so the map can close
    except (OSError, ValueError, BufferError):
        return b"".join(_pread(fd, path, var, first + i * stride, length) for i in range(count))


def _gather(buf: np.ndarray, stride: int, count: int, length: int) -> bytes:
    """Copy ``count`` rows of ``length`` bytes, ``stride`` apart, out of ``buf``."""
    rows = np.lib.stride_tricks.as_strided(buf, shape=(count, length), strides=(stride, 1))
    return rows.tobytes()


@dataclass(frozen=True)
class _Layout:
    """Where one variable's bytes are."""

    var: _Var
    shape: tuple[int, ...]
    dtype: np.dtype
    is_record: bool
    nbytes: int
    """Bytes of the whole variable, or of one record of a record variable."""

    @property
    def padded(self) -> int:
        return _round4(self.nbytes)


class NetCDF3Scanner:
    """netCDF-3 classic, 64-bit offset and 64-bit data (CDF-5) files."""

    name: ClassVar[str] = "netcdf3"
    description: ClassVar[str] = "netCDF-3 classic and 64-bit offset files"

    def __init__(self, *, inline_threshold: int = 500) -> None:
        self.inline_threshold = inline_threshold

    @staticmethod
    def sniff(head: bytes) -> bool:
        """True for the CDF-1, CDF-2 and CDF-5 magic numbers."""
        return head[:4] in (MAGIC_CLASSIC, MAGIC_64BIT_OFFSET, MAGIC_64BIT_DATA)

    def __call__(self, path: str) -> FileScan:
        try:
            with open(path, "rb") as f:
                file_size = os.fstat(f.fileno()).st_size
                header = _parse_header(f, path, file_size)
                return self._scan(f.fileno(), path, file_size, header)
        except FileNotFoundError:
            raise
        except OSError as err:
            raise ScanError(f"{path}: cannot read the file: {err}") from err

    def _scan(self, fd: int, path: str, file_size: int, header: _Header) -> FileScan:
        dims = header.dims
        rec_ids = [i for i, (_, size) in enumerate(dims) if size == 0]
        if len(rec_ids) > 1:
            names = [dims[i][0] for i in rec_ids]
            raise ScanError(
                f"{path}: corrupt netCDF-3 header: {len(names)} unlimited dimensions {names}; "
                "netCDF-3 allows one"
            )
        rec_id = rec_ids[0] if rec_ids else None

        layouts = [self._layout(path, header, v, rec_id) for v in header.variables]
        records = [lay for lay in layouts if lay.is_record]
        recsize = sum(lay.padded for lay in records)
        if records and recsize == records[0].padded:  # one record variable: no record padding
            recsize = records[0].nbytes
        _check_begins(path, header, layouts)

        numrecs = header.numrecs
        if numrecs is None:
            numrecs = _streaming_numrecs(file_size, records, recsize)
        dim_sizes = {name: (numrecs if i == rec_id else size) for i, (name, size) in enumerate(dims)}

        variables: dict[str, VariableScan] = {}
        coords: dict[str, list[Any]] = {}
        for lay in layouts:
            variables[lay.var.name], values = self._variable(
                fd, path, file_size, header, lay, numrecs, recsize
            )
            if values is not None:
                coords[lay.var.name] = values

        return FileScan(
            url=path,
            format=_FORMATS[header.version],
            attrs={k: _attr_json(*v) for k, v in header.attrs.items()},
            dims=dim_sizes,
            unlimited=(dims[rec_id][0],) if rec_id is not None else (),
            variables=variables,
            coords=coords,
        )

    @staticmethod
    def _layout(path: str, header: _Header, var: _Var, rec_id: int | None) -> _Layout:
        for k, d in enumerate(var.dimids):
            if d == rec_id and k != 0:
                raise ScanError(
                    f"{path}: corrupt netCDF-3 header: variable {var.name!r} uses the unlimited "
                    f"dimension {header.dims[d][0]!r} at position {k}; it must be the first"
                )
        is_record = rec_id is not None and bool(var.dimids) and var.dimids[0] == rec_id
        shape = tuple(header.dims[d][1] for d in var.dimids)
        dtype = np.dtype(_NC_TYPES[var.nc_type][1])
        nbytes = math.prod(shape[1:] if is_record else shape) * dtype.itemsize
        return _Layout(var, shape, dtype, is_record, nbytes)

    def _variable(
        self,
        fd: int,
        path: str,
        file_size: int,
        header: _Header,
        lay: _Layout,
        numrecs: int,
        recsize: int,
    ) -> tuple[VariableScan, list[Any] | None]:
        var = lay.var
        if lay.is_record:
            shape = (numrecs, *lay.shape[1:])
            chunks = (1, *(max(s, 1) for s in shape[1:]))
            stride = recsize
        else:
            shape = lay.shape
            chunks = tuple(max(s, 1) for s in shape)
            stride = 0
        length = lay.nbytes
        count = (numrecs if lay.is_record else 1) if math.prod(shape) else 0
        if count:
            end = var.begin + (count - 1) * stride + length
            if end > file_size:
                last = f"record {count - 1} of " if lay.is_record else ""
                raise ScanError(
                    f"{path}: variable {var.name!r}: {last}its data, bytes "
                    f"[{end - length}, {end}), lies beyond the end of the file "
                    f"({file_size} bytes); the file is truncated"
                )

        offsets = var.begin + np.arange(count, dtype=np.int64) * stride
        lengths = np.full(count, length, dtype=np.int64)
        inline: dict[int, bytes] = {}
        is_coord = len(var.dimids) == 1 and header.dims[var.dimids[0]][0] == var.name
        is_coord = is_coord and lay.dtype.kind != "S"
        values = None
        do_inline = count > 0 and length < self.inline_threshold
        if do_inline or is_coord:
            data = _read_strided(fd, path, var.name, var.begin, stride, count, length)
            if do_inline:
                inline = dict(enumerate(np.frombuffer(data, dtype=f"V{length}").tolist()))
                offsets[:] = MISSING
                lengths[:] = MISSING
            if is_coord:
                values = np.frombuffer(data, dtype=lay.dtype).tolist()

        attrs = dict(var.attrs)
        fill = attrs.pop("_FillValue", None)
        scan = VariableScan(
            name=var.name,
            dims=tuple(header.dims[d][0] for d in var.dimids),
            shape=shape,
            dtype=lay.dtype.str,
            chunks=chunks,
            filters=None,
            fill_value=None if fill is None else _fill_value(path, var.name, fill, lay.dtype),
            attrs={k: _attr_json(*v) for k, v in attrs.items()},
            offsets=offsets,
            lengths=lengths,
            inline=inline,
            storage="record" if lay.is_record else "contiguous",
        )
        return scan, values


def _check_begins(path: str, header: _Header, layouts: list[_Layout]) -> None:
    """Variables must follow the header and each other in definition order, as netcdf-c checks."""
    prev, prev_what = header.end, "the header"
    for is_record in (False, True):
        for lay in layouts:
            if lay.is_record != is_record:
                continue
            if lay.var.begin < prev:
                raise ScanError(
                    f"{path}: corrupt netCDF-3 header: variable {lay.var.name!r} begins at byte "
                    f"{lay.var.begin}, before the end of {prev_what} at byte {prev}"
                )
            prev, prev_what = lay.var.begin + lay.padded, f"variable {lay.var.name!r}"


def _streaming_numrecs(file_size: int, records: list[_Layout], recsize: int) -> int:
    """The number of whole records in a file whose header says "streaming"."""
    if not records or recsize == 0:
        return 0
    begin_rec = records[0].var.begin
    tail = max(lay.var.begin - begin_rec + lay.nbytes for lay in records)
    avail = file_size - begin_rec
    return 0 if avail < tail else (avail - tail) // recsize + 1
