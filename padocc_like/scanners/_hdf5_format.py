"""The HDF5 file format, read with ``struct`` and numpy (no HDF5 library).

Everything here reads through one ``read(offset, length) -> bytes`` callable (see
:class:`PagedReader`), so the same code can later read objects in S3 by byte ranges.

Only what netCDF-4 and h5py files commonly contain is read: superblocks v0-v3, object
headers v1/v2 with continuation blocks, old-style groups (symbol table: v1 B-tree + local
heap) and new-style groups (link messages, or dense links in a fractal heap indexed by a
v2 B-tree), compact and dense attributes, the atomic datatypes (integers, IEEE floats,
fixed and variable-length strings, object references inside variable-length sequences),
dataspaces, fill values, filter pipelines, data layouts v1-v5 and the chunk indexes
(v1 B-tree, single chunk, implicit, fixed array, extensible array, v2 B-tree).

Anything else, and any structural inconsistency (a bad signature, an address outside the
file, an unexpected version or size), raises :class:`NativeUnsupported`: the caller then
reads the file with the HDF5 library instead. Checksums are not verified.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

UNDEF = 0xFFFF_FFFF_FFFF_FFFF
SIGNATURE = b"\x89HDF\r\n\x1a\n"

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_Q2 = struct.Struct("<QQ")

MAX_ITEMS = 10_000_000
"""Bound on the entries any one structure may list (a damaged count must not run away)."""


class NativeUnsupported(Exception):
    """The file uses something this reader does not read, or is inconsistent."""


def _fail(message: str) -> NativeUnsupported:
    return NativeUnsupported(message)


# --- byte access --------------------------------------------------------------------------------


class PagedReader:
    """``read(offset, length)`` over a raw range reader, with a small page cache.

    Reads never pass the end of the file: a range outside it raises
    :class:`NativeUnsupported` (HDF5 addresses pointing there mean a damaged file).
    """

    def __init__(self, read_range: Callable[[int, int], bytes], size: int, page_size: int = 1 << 16) -> None:
        self._read_range = read_range
        self.size = size
        self._shift = page_size.bit_length() - 1
        if 1 << self._shift != page_size:
            raise ValueError("page_size must be a power of two")
        self._page_size = page_size
        self._pages: dict[int, bytes] = {}

    @classmethod
    def for_fd(cls, fd: int, page_size: int = 1 << 16) -> PagedReader:
        size = os.fstat(fd).st_size
        return cls(lambda offset, length: os.pread(fd, length, offset), size, page_size)

    def _page(self, index: int) -> bytes:
        page = self._pages.get(index)
        if page is None:
            start = index << self._shift
            page = self._read_range(start, min(self._page_size, self.size - start))
            if len(page) != min(self._page_size, self.size - start):
                raise _fail("short read")
            if len(self._pages) > 256:  # 16 MiB of metadata pages at most
                self._pages.clear()
            self._pages[index] = page
        return page

    def prefetch(self, offset: int, length: int) -> None:
        """Read the pages holding ``length`` bytes at ``offset`` in one request, into the cache."""
        start = offset - offset % self._page_size
        end = min(self.size, -(-(offset + length) // self._page_size) * self._page_size)
        if end <= start:
            return
        data = self._read_range(start, end - start)
        if len(data) != end - start:
            raise _fail("short read")
        for i, pos in enumerate(range(start, end, self._page_size)):
            page = data[pos - start : pos - start + self._page_size]
            self._pages[(start >> self._shift) + i] = page

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise _fail(f"bytes {offset}-{offset + length} lie outside the file ({self.size} bytes)")
        if length == 0:
            return b""
        first = offset >> self._shift
        last = (offset + length - 1) >> self._shift
        start = offset - (first << self._shift)
        if first == last:
            return self._page(first)[start : start + length]
        if length > 4 * self._page_size:  # a large block (chunk data): read it directly
            data = self._read_range(offset, length)
            if len(data) != length:
                raise _fail("short read")
            return data
        parts = [self._page(i) for i in range(first, last + 1)]
        return b"".join(parts)[start : start + length]


def _check_addr(addr: int, size: int, what: str) -> int:
    if addr == UNDEF or addr >= size:
        raise _fail(f"{what} address {addr:#x} outside the file")
    return addr


def _uint(data: bytes, pos: int, n: int) -> int:
    return int.from_bytes(data[pos : pos + n], "little")


# --- datatypes and dataspaces -------------------------------------------------------------------

# datatype classes
FIXED, FLOAT, TIME, STRING, BITFIELD, OPAQUE, COMPOUND, REFERENCE, ENUM, VLEN, ARRAY = range(11)

_FLOAT_LAYOUTS = {
    # size: (precision, exponent location, exponent size, mantissa location, mantissa size, bias)
    2: (16, 10, 5, 0, 10, 15),
    4: (32, 23, 8, 0, 23, 127),
    8: (64, 52, 11, 0, 52, 1023),
}


@dataclass(frozen=True, slots=True)
class H5Type:
    """An HDF5 datatype this reader understands."""

    cls: int
    size: int
    dtype: np.dtype | None = None
    """numpy type of fixed-size values (integers, floats, fixed strings), as h5py maps them."""
    strpad: int = 0
    """string padding: 0 null-terminated, 1 null-padded, 2 space-padded."""
    vlen_string: bool = False
    base: H5Type | None = None
    """element type of a variable-length sequence."""
    ref_type: int = -1
    """reference type (0 object) of a reference."""


_TYPE_CACHE: dict[bytes, tuple[H5Type, int]] = {}


def parse_datatype(data: bytes, pos: int = 0) -> tuple[H5Type, int]:
    """The datatype encoded at ``data[pos:]`` and its encoded length."""
    key = data[pos : pos + 24]
    cached = _TYPE_CACHE.get(key)
    if cached is not None:
        return cached
    result = _parse_datatype(data, pos, 0)
    if len(_TYPE_CACHE) < 4096 and result[1] <= 24:
        _TYPE_CACHE[data[pos : pos + 24]] = result
    return result


def _parse_datatype(data: bytes, pos: int, depth: int) -> tuple[H5Type, int]:
    if depth > 4 or pos + 8 > len(data):
        raise _fail("datatype message too short or too deeply nested")
    head, b1, b2, b3, size = struct.unpack_from("<BBBBI", data, pos)
    version, cls = head >> 4, head & 0x0F
    bits = b1 | (b2 << 8) | (b3 << 16)
    if version not in (1, 2, 3):
        raise _fail(f"datatype version {version}")
    props = pos + 8
    if cls == FIXED:
        if props + 4 > len(data):
            raise _fail("fixed-point datatype too short")
        offset, precision = struct.unpack_from("<HH", data, props)
        if size not in (1, 2, 4, 8) or offset != 0 or precision != 8 * size or bits & ~0x0F:
            raise _fail(f"fixed-point datatype of size {size}, precision {precision}, offset {offset}")
        if bits & 0x06:  # padding bits: irrelevant with full precision, but unusual
            raise _fail("fixed-point datatype with padding")
        order = ">" if bits & 1 else "<"
        kind = "i" if bits & 0x08 else "u"
        return H5Type(FIXED, size, np.dtype(f"{order}{kind}{size}")), 12
    if cls == FLOAT:
        if props + 12 > len(data):
            raise _fail("floating-point datatype too short")
        layout = _FLOAT_LAYOUTS.get(size)
        offset, precision, epos, esize, mpos, msize, bias = struct.unpack_from("<HHBBBBI", data, props)
        if layout is None or offset != 0 or (precision, epos, esize, mpos, msize, bias) != layout:
            raise _fail(f"non-IEEE floating-point datatype of size {size}")
        if (
            bits & 0x40
            or bits & 0x0E
            or (bits >> 4) & 0x03 != 2
            or (bits >> 8) & 0xFF != layout[1] + layout[2]
        ):
            # VAX order, padding bits, a mantissa without an implied leading bit, or a sign
            # bit that is not the top bit
            raise _fail("unusual floating-point datatype")
        order = ">" if bits & 1 else "<"
        return H5Type(FLOAT, size, np.dtype(f"{order}f{size}")), 20
    if cls == STRING:
        if size == 0:
            raise _fail("zero-size string datatype")
        pad, cset = bits & 0x0F, (bits >> 4) & 0x0F
        if pad > 2 or cset > 1:
            raise _fail("string datatype with unknown padding or character set")
        return H5Type(STRING, size, np.dtype(f"S{size}"), strpad=pad), 8
    if cls == REFERENCE:
        ref_type = bits & 0x0F
        if version != 1 or ref_type != 0 or size != 8:
            raise _fail("reference datatype other than an HDF5 1.8 object reference")
        return H5Type(REFERENCE, size, ref_type=ref_type), 8
    if cls == VLEN:
        vtype, pad, cset = bits & 0x0F, (bits >> 4) & 0x0F, (bits >> 8) & 0x0F
        if vtype > 1 or cset > 1:
            raise _fail("variable-length datatype of unknown kind")
        base, used = _parse_datatype(data, props, depth + 1)
        if vtype == 1:
            if base.cls != FIXED or base.size != 1:
                raise _fail("variable-length string of non-character elements")
            return H5Type(VLEN, size, vlen_string=True, strpad=pad), 8 + used
        return H5Type(VLEN, size, base=base), 8 + used
    raise _fail(f"datatype class {cls}")


@dataclass(frozen=True, slots=True)
class Space:
    """A dataspace: ``shape`` None for a null dataspace, () for a scalar."""

    shape: tuple[int, ...] | None
    maxshape: tuple[int | None, ...] | None


_SPACE_CACHE: dict[bytes, tuple[Space, int]] = {}


def parse_dataspace(data: bytes, pos: int = 0) -> tuple[Space, int]:
    """The dataspace encoded at ``data[pos:]`` and its encoded length."""
    if pos + 4 > len(data):
        raise _fail("dataspace message too short")
    version, rank, flags = data[pos], data[pos + 1], data[pos + 2]
    if flags & ~0x01:
        raise _fail("dataspace with a permutation index")
    if version == 1:
        kind = 1 if rank else 0
        start = pos + 8
    elif version == 2:
        kind = data[pos + 3]
        start = pos + 4
    else:
        raise _fail(f"dataspace version {version}")
    n = rank * (2 if flags & 1 else 1)
    end = start + 8 * n
    key = data[pos:end]
    cached = _SPACE_CACHE.get(key)
    if cached is not None:
        return cached
    if rank > 32 or end > len(data):
        raise _fail("dataspace too short")
    values = struct.unpack_from(f"<{n}Q", data, start)
    if kind == 0:
        if rank:
            raise _fail("scalar dataspace with dimensions")
        result = Space((), ())
    elif kind == 1:
        shape = values[:rank]
        if flags & 1:
            maxshape = tuple(None if m == UNDEF else m for m in values[rank:])
        else:
            maxshape = shape
        if any(s >= 1 << 62 for s in shape) or any(
            m is not None and m < s for s, m in zip(shape, maxshape, strict=True)
        ):
            raise _fail("dataspace dimension out of range")
        result = Space(tuple(shape), maxshape)
    elif kind == 2:
        if rank:
            raise _fail("null dataspace with dimensions")
        result = Space(None, None)
    else:
        raise _fail(f"dataspace type {kind}")
    result = (result, end - pos)
    if len(_SPACE_CACHE) < 4096:
        _SPACE_CACHE[key] = result
    return result


# --- object headers -----------------------------------------------------------------------------

# message types
(
    MSG_NIL,
    MSG_DATASPACE,
    MSG_LINK_INFO,
    MSG_DATATYPE,
    MSG_FILL_OLD,
    MSG_FILL,
    MSG_LINK,
    MSG_EXTERNAL,
    MSG_LAYOUT,
    MSG_BOGUS,
    MSG_GROUP_INFO,
    MSG_FILTERS,
    MSG_ATTRIBUTE,
    MSG_COMMENT,
    MSG_MTIME_OLD,
    MSG_SHARED_TABLE,
    MSG_CONTINUATION,
    MSG_SYMBOL_TABLE,
    MSG_MTIME,
    MSG_BTREE_K,
    MSG_DRIVER_INFO,
    MSG_ATTRIBUTE_INFO,
    MSG_REFCOUNT,
    MSG_FSINFO,
) = range(24)

_KNOWN_MESSAGES = frozenset(range(24)) - {MSG_BOGUS, MSG_SHARED_TABLE}
_SHARED_FLAG = 0x02
_SHAREABLE = frozenset({MSG_DATASPACE, MSG_DATATYPE, MSG_FILL_OLD, MSG_FILL, MSG_FILTERS, MSG_ATTRIBUTE})


@dataclass
class ObjectHeader:
    address: int
    messages: list[tuple[int, bytes]] = field(default_factory=list)

    def first(self, mtype: int) -> bytes | None:
        for t, data in self.messages:
            if t == mtype:
                return data
        return None

    def all(self, mtype: int) -> list[bytes]:
        return [data for t, data in self.messages if t == mtype]

    def types(self) -> set[int]:
        return {t for t, _ in self.messages}


# --- the file -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Link:
    name: bytes
    address: int
    target: bytes | None = None
    """The path a soft link points to (its address is then UNDEF until resolved)."""


class H5File:
    """The structures of one HDF5 file, read on demand."""

    def __init__(self, reader: PagedReader) -> None:
        self.reader = reader
        self.size = reader.size
        self._global_heaps: dict[int, dict[int, bytes]] = {}
        self._headers: dict[int, ObjectHeader] = {}
        self.root_address = self._superblock()

    def read(self, offset: int, length: int) -> bytes:
        return self.reader.read(offset, length)

    # superblock
    def _superblock(self) -> int:
        head = self.read(0, min(self.size, 96))
        if len(head) < 48 or not head.startswith(SIGNATURE):
            raise _fail("no HDF5 signature at offset 0")
        version = head[8]
        if version in (0, 1):
            if head[13] != 8 or head[14] != 8:
                raise _fail("file uses addresses or lengths that are not 8 bytes")
            pos = 24 + (4 if version == 1 else 0)
            if len(head) < pos + 32 + 40:
                raise _fail("superblock too short")
            # the checks HDF5 makes: format versions, B-tree K values, no extension before v2
            leaf_k, node_k = struct.unpack_from("<HH", head, 16)
            if head[9] != 0 or head[10] != 0 or head[12] != 0 or not leaf_k or not node_k:
                raise _fail("bad superblock v0/v1 fields")
            if version == 1 and not _U16.unpack_from(head, 24)[0]:
                raise _fail("bad superblock v1 fields")
            base, extension, eof, driver = struct.unpack_from("<4Q", head, pos)
            if extension != UNDEF or driver != UNDEF:
                raise _fail("superblock v0/v1 with an extension or a driver information block")
            root_header = _U64.unpack_from(head, pos + 32 + 8)[0]
        elif version in (2, 3):
            if head[9] != 8 or head[10] != 8:
                raise _fail("file uses addresses or lengths that are not 8 bytes")
            base, extension, eof, root_header = struct.unpack_from("<4Q", head, 12)
            if extension != UNDEF:
                self.object_header(extension)  # read, so that a damaged extension declines the file
        else:
            raise _fail(f"superblock version {version}")
        if base != 0:
            raise _fail("superblock base address is not 0 (user block)")
        if eof != UNDEF and eof > self.size:
            raise _fail(f"file is truncated: its superblock says {eof} bytes, the file has {self.size}")
        return _check_addr(root_header, self.size, "root group")

    # object headers
    def object_header(self, address: int) -> ObjectHeader:
        cached = self._headers.get(address)
        if cached is not None:
            return cached
        _check_addr(address, self.size, "object header")
        header = ObjectHeader(address)
        first = self.read(address, min(16, self.size - address))
        if first[:4] == b"OHDR":
            self._header_v2(address, header)
        elif first and first[0] == 1:
            self._header_v1(address, first, header)
        else:
            raise _fail(f"no object header at {address:#x}")
        self._headers[address] = header
        return header

    def _header_v1(self, address: int, first: bytes, header: ObjectHeader) -> None:
        if len(first) < 16 or first[1] != 0:
            raise _fail("object header v1 too short or not v1")
        _version, _r, nmessages, _refs, size = struct.unpack_from("<BBHII", first)
        blocks = [(address + 16, size)]
        seen = set()
        count = 0
        while blocks:
            start, length = blocks.pop(0)
            if (start, length) in seen or len(seen) > 10_000:
                raise _fail("object header continuation loop")
            seen.add((start, length))
            data = self.read(start, length)
            pos = 0
            while pos + 8 <= length:
                mtype, msize, mflags = struct.unpack_from("<HHB", data, pos)
                pos += 8
                if pos + msize > length:
                    raise _fail("object header message runs past its block")
                self._message(header, mtype, mflags, data[pos : pos + msize], blocks, v1=True)
                pos += msize
                count += 1
        if count != nmessages:
            raise _fail("object header holds another number of messages than it declares")

    def _header_v2(self, address: int, header: ObjectHeader) -> None:
        prefix = self.read(address, min(48, self.size - address))
        if len(prefix) < 12 or prefix[4] != 2:
            raise _fail("object header v2 with an unknown version")
        flags = prefix[5]
        if flags & 0xC0:
            raise _fail("unknown object header flags")
        pos = 6
        if flags & 0x20:
            pos += 16  # access, modification, change and birth times
        if flags & 0x10:
            pos += 4  # attribute phase change values
        nsize = 1 << (flags & 0x03)
        chunk0 = _uint(prefix, pos, nsize)
        pos += nsize
        order = bool(flags & 0x04)
        blocks = [(address + pos, chunk0)]
        seen = set()
        first = True
        while blocks:
            start, length = blocks.pop(0)
            if (start, length) in seen or len(seen) > 10_000:
                raise _fail("object header continuation loop")
            seen.add((start, length))
            if first:
                data = self.read(start, length)
                first = False
            else:
                whole = self.read(start, length)
                if whole[:4] != b"OCHK" or length < 8:
                    raise _fail("bad object header continuation block")
                data = whole[4:-4]
            self._messages_v2(header, data, order, blocks)

    def _messages_v2(self, header: ObjectHeader, data: bytes, order: bool, blocks: list) -> None:
        hsize = 6 if order else 4
        pos, end = 0, len(data)
        while pos + hsize <= end:
            mtype, msize, mflags = struct.unpack_from("<BHB", data, pos)
            pos += hsize
            if pos + msize > end:
                raise _fail("object header message runs past its block")
            self._message(header, mtype, mflags, data[pos : pos + msize], blocks, v1=False)
            pos += msize

    def _message(
        self, header: ObjectHeader, mtype: int, mflags: int, data: bytes, blocks: list, v1: bool
    ) -> None:
        # the flag combinations HDF5 refuses
        if (
            (mflags & 0x02 and mflags & 0x04)
            or (mflags & 0x20 and mflags & 0x08)
            or (mflags & 0x20 and not mflags & 0x10)
            or (mflags & 0x40 and mtype not in _SHAREABLE)
        ):
            raise _fail(f"bad flag combination for message type {mtype:#x}")
        if mtype == MSG_NIL:
            return
        if mtype not in _KNOWN_MESSAGES:
            raise _fail(f"object header message type {mtype:#x}")
        if mflags & _SHARED_FLAG:
            raise _fail(f"shared object header message (type {mtype:#x})")
        if mtype == MSG_CONTINUATION:
            offset, length = _Q2.unpack_from(data)
            _check_addr(offset, self.size, "continuation block")
            if offset + length > self.size:
                raise _fail("continuation block outside the file")
            blocks.append((offset, length))
            return
        header.messages.append((mtype, data))

    # groups
    def links(self, header: ObjectHeader) -> list[Link]:
        """The links of a group, sorted by name (h5py's index order), soft links resolved."""
        symtab = header.first(MSG_SYMBOL_TABLE)
        if symtab is not None:
            btree, heap = _Q2.unpack_from(symtab)
            links = self._symbol_table_links(btree, heap)
        else:
            links = []
            for data in header.all(MSG_LINK):
                links.append(_parse_link(data))
            info = header.first(MSG_LINK_INFO)
            if info is not None:
                links.extend(self._dense_links(info))
            elif not header.all(MSG_LINK) and MSG_GROUP_INFO not in header.types():
                raise _fail("object is not a group")
        links.sort(key=lambda link: link.name)
        names = [link.name for link in links]
        if len(set(names)) != len(names):
            raise _fail("group lists a name twice")
        # soft links to objects of this group (a relative name, or an absolute path from the
        # root when this is the root group) resolve to the object's address
        by_name = {link.name: link.address for link in links if link.target is None}
        for link in links:
            if link.target is not None:
                target = link.target
                if target.startswith(b"/") and header.address == self.root_address:
                    target = target.lstrip(b"/")
                if b"/" in target or target not in by_name:
                    raise _fail(f"soft link {link.name!r} to {link.target!r} outside the group")
                link.address = by_name[target]
        return links

    def _symbol_table_links(self, btree: int, heap: int) -> list[Link]:
        heap_data = self._local_heap(heap)
        links: list[Link] = []
        snods: list[int] = []
        for nodes in _v1_btree_leaves(self, btree, 0, _GROUP_ENTRY):
            # keys are offsets of names in the group's local heap
            if (nodes["key"] >= len(heap_data)).any():
                raise _fail("v1 B-tree key outside the local heap")
            snods.extend(nodes["child"].tolist())
        for snod in snods:
            node = self.read(_check_addr(snod, self.size, "symbol table node"), 8)
            if node[:4] != b"SNOD" or node[4] != 1:
                raise _fail("bad symbol table node")
            count = _U16.unpack_from(node, 6)[0]
            entries = self.read(snod + 8, 40 * count)
            for i in range(count):
                name_off, addr, cache = struct.unpack_from("<QQI", entries, 40 * i)
                name = _heap_string(heap_data, name_off)
                if cache == 2:  # a soft link: the scratch pad holds the offset of its value
                    value_off = _U32.unpack_from(entries, 40 * i + 24)[0]
                    links.append(Link(name, UNDEF, _heap_string(heap_data, value_off)))
                else:
                    links.append(Link(name, _check_addr(addr, self.size, "object")))
        return links

    def _local_heap(self, address: int) -> bytes:
        head = self.read(_check_addr(address, self.size, "local heap"), 32)
        if head[:4] != b"HEAP" or head[4] != 0:
            raise _fail("bad local heap")
        size, free, data_addr = struct.unpack_from("<QQQ", head, 8)
        data = self.read(_check_addr(data_addr, self.size, "local heap data"), size)
        # walk the free list as HDF5 does (offset 1 ends it): a block outside the heap, or a
        # next offset of 0, means a damaged heap
        for _ in range(100_000):
            if free == 1:
                return data
            if free + 16 > size:
                raise _fail("bad local heap free list")
            offset = free
            free, block = _Q2.unpack_from(data, offset)
            if free == 0 or offset + block > size:
                raise _fail("bad local heap free list")
        raise _fail("local heap free list loops")

    def _dense_links(self, info: bytes) -> list[Link]:
        if info[0] != 0:
            raise _fail("link info message version")
        pos = 2 + (8 if info[1] & 1 else 0)
        heap_addr, name_btree = _Q2.unpack_from(info, pos)
        if heap_addr == UNDEF:
            return []
        heap = FractalHeap(self, heap_addr)
        links = []
        for record in V2BTree(self, name_btree, 5).records():
            links.append(_parse_link(heap.get(record[4:11])))
        return links

    # attributes
    def attribute_messages(self, header: ObjectHeader) -> list[bytes]:
        """Raw attribute messages of an object (compact and dense storage)."""
        messages = header.all(MSG_ATTRIBUTE)
        info = header.first(MSG_ATTRIBUTE_INFO)
        if info is not None:
            if info[0] != 0:
                raise _fail("attribute info message version")
            pos = 2 + (2 if info[1] & 1 else 0)
            heap_addr, name_btree = _Q2.unpack_from(info, pos)
            if heap_addr != UNDEF:
                heap = FractalHeap(self, heap_addr)
                for record in V2BTree(self, name_btree, 8).records():
                    if record[8] & _SHARED_FLAG:
                        raise _fail("shared attribute message")
                    messages.append(heap.get(record[:8]))
        return messages

    # global heap
    def global_heap_object(self, collection: int, index: int) -> bytes:
        objects = self._global_heaps.get(collection)
        if objects is None:
            objects = self._read_global_heap(collection)
            self._global_heaps[collection] = objects
        data = objects.get(index)
        if data is None:
            raise _fail("global heap object not found")
        return data

    def _read_global_heap(self, address: int) -> dict[int, bytes]:
        head = self.read(_check_addr(address, self.size, "global heap"), 16)
        if head[:4] != b"GCOL" or head[4] != 1:
            raise _fail("bad global heap collection")
        size = _U64.unpack_from(head, 8)[0]
        if size < 16:
            raise _fail("global heap collection too small")
        data = self.read(address, size)
        objects: dict[int, bytes] = {}
        # as HDF5 reads a collection: every object, free space (index 0) included, must tile it
        pos = 16
        while pos + 16 <= size:
            index, _refs, _r, osize = struct.unpack_from("<HHIQ", data, pos)
            if index:
                if pos + 16 + osize > size:
                    raise _fail("global heap object runs past its collection")
                objects[index] = data[pos + 16 : pos + 16 + osize]
                need = 16 + ((osize + 7) & ~7)
            else:
                need = osize  # free space, its header included
            if need <= 0 or pos + need > size:
                raise _fail("global heap collection does not add up")
            pos += need
        return objects


def _heap_string(heap: bytes, offset: int) -> bytes:
    end = heap.find(b"\x00", offset)
    if offset >= len(heap) or end < 0:
        raise _fail("string outside the local heap")
    return heap[offset:end]


def _parse_link(data: bytes) -> Link:
    if len(data) < 3 or data[0] != 1:
        raise _fail("link message version")
    flags = data[1]
    pos = 2
    ltype = 0
    if flags & 0x08:
        ltype = data[pos]
        pos += 1
    if flags & 0x04:
        pos += 8
    if flags & 0x10:
        pos += 1
    nsize = 1 << (flags & 0x03)
    nlen = _uint(data, pos, nsize)
    pos += nsize
    name = data[pos : pos + nlen]
    pos += nlen
    if len(name) != nlen:
        raise _fail("link message too short")
    if ltype == 1:
        if pos + 2 > len(data):
            raise _fail("link message too short")
        vlen = _U16.unpack_from(data, pos)[0]
        target = data[pos + 2 : pos + 2 + vlen]
        if len(target) != vlen:
            raise _fail("link message too short")
        return Link(name, UNDEF, target)
    if ltype != 0:
        raise _fail(f"link {name!r} is neither a hard nor a soft link (type {ltype})")
    if pos + 8 > len(data):
        raise _fail("link message too short")
    return Link(name, _U64.unpack_from(data, pos)[0])


# --- fractal heap and v2 B-trees ----------------------------------------------------------------


def _log2_exact(value: int, what: str) -> int:
    if value <= 0 or value & (value - 1):
        raise _fail(f"{what} {value} is not a power of two")
    return value.bit_length() - 1


def _enc_size(value: int) -> int:
    """HDF5's H5VM_limit_enc_size: bytes to encode numbers up to ``value``."""
    return (max(value, 1).bit_length() - 1) // 8 + 1


class FractalHeap:
    """Managed and tiny objects of a fractal heap (no I/O filters, no huge objects)."""

    def __init__(self, h5: H5File, address: int) -> None:
        self.h5 = h5
        head = h5.read(_check_addr(address, h5.size, "fractal heap"), 146)
        if head[:4] != b"FRHP" or head[4] != 0:
            raise _fail("bad fractal heap header")
        self.id_len, filter_len, self.flags, max_managed = struct.unpack_from("<HHBI", head, 5)
        if filter_len:
            raise _fail("fractal heap with I/O filters")
        self.huge_btree = _U64.unpack_from(head, 22)[0]
        self._huge: dict[int, tuple[int, int]] | None = None
        pos = 5 + 9 + 8 * 12
        (self.width,) = _U16.unpack_from(head, pos)
        self.start_block, self.max_direct = _Q2.unpack_from(head, pos + 2)
        self.max_heap_bits, _start_rows = struct.unpack_from("<HH", head, pos + 18)
        self.root, self.root_rows = struct.unpack_from("<QH", head, pos + 22)
        self.log2_start = _log2_exact(self.start_block, "fractal heap starting block size")
        log2_max_direct = _log2_exact(self.max_direct, "fractal heap maximum direct block size")
        _log2_exact(self.width, "fractal heap table width")
        if self.max_heap_bits > 64 or log2_max_direct < self.log2_start:
            raise _fail("fractal heap parameters")
        self.off_size = (self.max_heap_bits + 7) // 8
        self.len_size = min((log2_max_direct + 7) // 8, _enc_size(max_managed))
        self.max_direct_rows = log2_max_direct - self.log2_start + 2
        self._blocks: list[tuple[int, int, int]] | None = None  # (heap offset, address, size)
        self._block_data: dict[int, bytes] = {}

    def _row_size(self, row: int) -> int:
        return self.start_block << max(row - 1, 0)

    def _list_blocks(self) -> list[tuple[int, int, int]]:
        blocks: list[tuple[int, int, int]] = []
        if self.root == UNDEF:
            return blocks
        if self.root_rows == 0:
            blocks.append((0, self.root, self.start_block))
            return blocks
        self._indirect(self.root, self.root_rows, 0, blocks, 0)
        return blocks

    def _indirect(self, address: int, nrows: int, heap_offset: int, blocks: list, depth: int) -> None:
        if depth > 16 or len(blocks) > 1_000_000:
            raise _fail("fractal heap too deep")
        prefix = 4 + 1 + 8 + self.off_size
        n_direct = min(nrows, self.max_direct_rows) * self.width
        n_indirect = max(nrows - self.max_direct_rows, 0) * self.width
        data = self.h5.read(
            _check_addr(address, self.h5.size, "fractal heap block"), prefix + 8 * (n_direct + n_indirect)
        )
        if data[:4] != b"FHIB":
            raise _fail("bad fractal heap indirect block")
        addrs = struct.unpack_from(f"<{n_direct + n_indirect}Q", data, prefix)
        offset = heap_offset
        for i, addr in enumerate(addrs):
            row = i // self.width
            size = self._row_size(row)
            if i < n_direct:
                if addr != UNDEF:
                    blocks.append((offset, addr, size))
            elif addr != UNDEF:
                child_rows = (size.bit_length() - 1) - (self.log2_start + self.width.bit_length() - 1) + 1
                self._indirect(addr, child_rows, offset, blocks, depth + 1)
            offset += size

    def _block(self, address: int, size: int) -> bytes:
        data = self._block_data.get(address)
        if data is None:
            data = self.h5.read(_check_addr(address, self.h5.size, "fractal heap block"), size)
            if data[:4] != b"FHDB":
                raise _fail("bad fractal heap direct block")
            self._block_data[address] = data
        return data

    def get(self, heap_id: bytes) -> bytes:
        if len(heap_id) < 1:
            raise _fail("empty heap id")
        first = heap_id[0]
        if first >> 6 != 0:
            raise _fail("heap id version")
        kind = (first >> 4) & 0x03
        if kind == 2:  # tiny: the object is inside the id
            if self.id_len - 1 > 16 + 1:
                length = (((first & 0x0F) << 8) | heap_id[1]) + 1
                return heap_id[2 : 2 + length]
            length = (first & 0x0F) + 1
            return heap_id[1 : 1 + length]
        if kind == 1:
            return self._huge_object(heap_id)
        if kind != 0:
            raise _fail("fractal heap id of an unknown kind")
        offset = _uint(heap_id, 1, self.off_size)
        length = _uint(heap_id, 1 + self.off_size, self.len_size)
        if self._blocks is None:
            self._blocks = self._list_blocks()
        for start, address, size in self._blocks:
            if start <= offset < start + size:
                if offset - start + length > size:
                    raise _fail("fractal heap object runs past its block")
                data = self._block(address, size)
                return data[offset - start : offset - start + length]
        raise _fail("fractal heap object not found")

    def _huge_object(self, heap_id: bytes) -> bytes:
        """A huge object: stored on its own, found by address in its id or through the
        heap's v2 B-tree of huge objects (type 1 records: address, length, id)."""
        if self.id_len >= 17:
            address, length = _Q2.unpack_from(heap_id, 1)
        else:
            if self._huge is None:
                if self.huge_btree == UNDEF:
                    raise _fail("huge fractal heap object without a B-tree")
                self._huge = {}
                for record in V2BTree(self.h5, self.huge_btree, 1).records():
                    address, length, key = struct.unpack_from("<QQQ", record)
                    self._huge[key] = (address, length)
            key = _uint(heap_id, 1, min(self.id_len - 1, 8))
            if key not in self._huge:
                raise _fail("huge fractal heap object not found")
            address, length = self._huge[key]
        return self.h5.read(_check_addr(address, self.h5.size, "huge heap object"), length)


class V2BTree:
    """Records of a version 2 B-tree (raw bytes, in key order)."""

    def __init__(self, h5: H5File, address: int, node_type: int) -> None:
        self.h5 = h5
        head = h5.read(_check_addr(address, h5.size, "v2 B-tree"), 38)
        if head[:4] != b"BTHD" or head[4] != 0 or head[5] != node_type:
            raise _fail("bad v2 B-tree header")
        self.node_size, self.record_size, self.depth = struct.unpack_from("<IHH", head, 6)
        self.root, self.root_nrec, self.total = struct.unpack_from("<QHQ", head, 16)
        self.type = node_type
        if self.record_size == 0 or self.node_size < 16 or self.depth > 16:
            raise _fail("v2 B-tree parameters")
        # sizes of the child pointers' record counts at each level (H5B2__hdr_init)
        max_leaf = (self.node_size - 10) // self.record_size
        self.max_nrec_size = _enc_size(max_leaf)
        cum = [max_leaf]
        cum_size = [0]
        for level in range(1, self.depth + 1):
            pointer = 8 + self.max_nrec_size + (cum_size[level - 1] if level > 1 else 0)
            max_nrec = (self.node_size - 10 - pointer) // (self.record_size + pointer)
            cum.append((max_nrec + 1) * cum[level - 1] + max_nrec)
            cum_size.append(_enc_size(cum[level]))
        self.cum_size = cum_size

    def records(self) -> list[bytes]:
        out: list[bytes] = []
        if self.root == UNDEF or self.total == 0:
            return out
        self._node(self.root, self.root_nrec, self.depth, out)
        if len(out) != self.total:
            raise _fail("v2 B-tree record count differs from its header")
        return out

    def _node(self, address: int, nrec: int, level: int, out: list[bytes]) -> None:
        if len(out) > MAX_ITEMS:
            raise _fail("v2 B-tree too large")
        rs = self.record_size
        if level == 0:
            data = self.h5.read(_check_addr(address, self.h5.size, "v2 B-tree leaf"), 6 + nrec * rs)
            if data[:4] != b"BTLF" or data[5] != self.type:
                raise _fail("bad v2 B-tree leaf")
            out.extend(data[6 + i * rs : 6 + (i + 1) * rs] for i in range(nrec))
            return
        total_size = self.cum_size[level - 1] if level > 1 else 0
        psize = 8 + self.max_nrec_size + total_size
        data = self.h5.read(
            _check_addr(address, self.h5.size, "v2 B-tree node"), 6 + nrec * rs + (nrec + 1) * psize
        )
        if data[:4] != b"BTIN" or data[5] != self.type:
            raise _fail("bad v2 B-tree internal node")
        pos = 6 + nrec * rs
        for i in range(nrec + 1):
            child = _U64.unpack_from(data, pos)[0]
            child_nrec = _uint(data, pos + 8, self.max_nrec_size)
            pos += psize
            self._node(child, child_nrec, level - 1, out)
            if i < nrec:
                out.append(data[6 + i * rs : 6 + (i + 1) * rs])


# --- dataset storage ----------------------------------------------------------------------------


@dataclass
class Layout:
    """A dataset's storage: class, chunk shape and where its data or chunk index is."""

    kind: str  # compact | contiguous | chunked | virtual
    address: int = UNDEF
    size: int = 0
    compact: bytes = b""
    chunks: tuple[int, ...] = ()
    index: int = 0  # 0 v1 B-tree, 1 single, 2 implicit, 3 fixed array, 4 extensible array, 5 v2 B-tree
    single_size: int = 0
    single_mask: int = 0
    filtered_single: bool = False
    itemsize: int = 0

    @property
    def chunk_nbytes(self) -> int:
        return math.prod(self.chunks) * self.itemsize


def parse_layout(data: bytes, shape: tuple[int, ...], itemsize: int) -> Layout:
    """The data layout message (versions 1 to 4) of a dataset of ``shape``."""
    rank = len(shape)
    version = data[0]
    if version in (1, 2):
        ndims, kind = data[1], data[2]
        pos = 8
        address = UNDEF
        if kind != 0:
            address = _U64.unpack_from(data, pos)[0]
            pos += 8
        dims = struct.unpack_from(f"<{ndims}I", data, pos)
        pos += 4 * ndims
        if kind == 0:
            size = _U32.unpack_from(data, pos)[0]
            return Layout("compact", compact=data[pos + 4 : pos + 4 + size], size=size)
        if kind == 1:
            return Layout("contiguous", address=address, size=math.prod(shape) * itemsize)
        if kind == 2:
            if ndims != rank + 1 or dims[-1] != itemsize:
                raise _fail("chunked layout dimensions disagree with the dataspace")
            return Layout("chunked", address=address, chunks=tuple(dims[:-1]), index=0, itemsize=itemsize)
        raise _fail(f"layout class {kind}")
    if version not in (3, 4, 5):  # 5 (HDF5 2.0): as 4, with 8-byte sizes of filtered chunks
        raise _fail(f"layout message version {version}")
    kind = data[1]
    if kind == 0:
        size = _U16.unpack_from(data, 2)[0]
        if 4 + size > len(data):
            raise _fail("compact data runs past its message")
        return Layout("compact", compact=data[4 : 4 + size], size=size)
    if kind == 1:
        address, size = _Q2.unpack_from(data, 2)
        return Layout("contiguous", address=address, size=size)
    if kind == 3:
        return Layout("virtual")
    if kind != 2:
        raise _fail(f"layout class {kind}")
    if version == 3:
        ndims = data[2]
        address = _U64.unpack_from(data, 3)[0]
        dims = struct.unpack_from(f"<{ndims}I", data, 11)
        if ndims != rank + 1 or dims[-1] != itemsize:
            raise _fail("chunked layout dimensions disagree with the dataspace")
        return Layout("chunked", address=address, chunks=tuple(dims[:-1]), index=0, itemsize=itemsize)
    flags, ndims, enc = data[2], data[3], data[4]
    if flags & ~0x03:
        raise _fail("unknown chunked layout flags")
    if flags & 0x01:
        raise _fail("partial edge chunks are stored unfiltered")
    if not 1 <= enc <= 8:
        raise _fail("chunk dimension encoding")
    pos = 5
    dims = tuple(_uint(data, pos + i * enc, enc) for i in range(ndims))
    pos += ndims * enc
    if ndims != rank + 1 or dims[-1] != itemsize:
        raise _fail("chunked layout dimensions disagree with the dataspace")
    index = data[pos]
    pos += 1
    layout = Layout("chunked", chunks=dims[:-1], index=index, itemsize=itemsize)
    if index == 1:
        if flags & 0x02:
            layout.single_size, layout.single_mask = struct.unpack_from("<QI", data, pos)
            layout.filtered_single = True
            pos += 12
    elif index == 2:
        pass
    elif index == 3:
        pos += 1
    elif index == 4:
        pos += 5
    elif index == 5:
        pos += 6
    else:
        raise _fail(f"chunk index type {index}")
    layout.address = _U64.unpack_from(data, pos)[0]
    return layout


def parse_filters(data: bytes) -> list[tuple[int, int, tuple[int, ...], bytes]]:
    """(id, flags, client values, name) of each filter, in pipeline order."""
    version, count = data[0], data[1]
    out = []
    if version == 1:
        pos = 8
    elif version == 2:
        pos = 2
    else:
        raise _fail(f"filter pipeline version {version}")
    for _ in range(count):
        code = _U16.unpack_from(data, pos)[0]
        pos += 2
        name_len = 0
        if version == 1 or code >= 256:
            name_len = _U16.unpack_from(data, pos)[0]
            pos += 2
        flags, nvalues = struct.unpack_from("<HH", data, pos)
        pos += 4
        name = b""
        if name_len:
            raw = data[pos : pos + name_len]
            name = raw.split(b"\x00", 1)[0]
            pos += (name_len + 7) & ~7 if version == 1 else name_len
        values = struct.unpack_from(f"<{nvalues}I", data, pos)
        pos += 4 * nvalues
        if version == 1 and nvalues % 2:
            pos += 4
        if pos > len(data):
            raise _fail("filter pipeline message too short")
        out.append((code, flags, values, name))
    return out


def parse_fill(new: bytes | None, old: bytes | None, itemsize: int) -> bytes | None:
    """The fill value's raw bytes (None: the default, zeros). Undefined fill values raise."""
    if new is not None:
        version = new[0]
        if version in (1, 2):
            defined = new[3]
            if not defined:
                if version == 1:
                    size = _U32.unpack_from(new, 4)[0]
                    if size:
                        raise _fail("fill value message v1 with an undefined value")
                raise _fail("undefined fill value")
            size = _U32.unpack_from(new, 4)[0]
            value = new[8 : 8 + size] if size else None
        elif version == 3:
            flags = new[1]
            if flags & ~0x3F:
                raise _fail("unknown fill value flags")
            if flags & 0x10:
                raise _fail("undefined fill value")
            if flags & 0x20:
                size = _U32.unpack_from(new, 2)[0]
                value = new[6 : 6 + size]
            else:
                value = None
        else:
            raise _fail(f"fill value message version {version}")
    elif old is not None:
        size = _U32.unpack_from(old, 0)[0]
        value = old[4 : 4 + size] if size else None
    else:
        value = None
    if value is not None and len(value) != itemsize:
        raise _fail("fill value size differs from the datatype's")
    return value


# --- chunk indexes ------------------------------------------------------------------------------


@dataclass
class ChunkTable:
    """Stored chunks: element offsets (n, rank), byte addresses, stored sizes, filter masks."""

    coords: np.ndarray
    addresses: np.ndarray
    sizes: np.ndarray
    masks: np.ndarray

    @classmethod
    def empty(cls, rank: int) -> ChunkTable:
        z = np.zeros(0, dtype=np.int64)
        return cls(np.zeros((0, rank), dtype=np.int64), z, z.copy(), z.copy())


def chunk_table(
    h5: H5File, layout: Layout, shape: tuple[int, ...], maxshape: tuple, filtered: bool
) -> ChunkTable:
    rank = len(shape)
    chunks = layout.chunks
    if any(c == 0 for c in chunks):
        raise _fail("zero chunk dimension")
    if layout.address == UNDEF:
        return ChunkTable.empty(rank)
    _check_addr(layout.address, h5.size, "chunk index")
    nbytes = layout.chunk_nbytes
    if layout.index == 0:
        table = _v1_btree_chunks(h5, layout.address, rank + 1)
    elif layout.index == 1:
        size = layout.single_size if layout.filtered_single else nbytes
        table = ChunkTable(
            np.zeros((1, rank), dtype=np.int64),
            np.array([layout.address], dtype=np.int64),
            np.array([size], dtype=np.int64),
            np.array([layout.single_mask], dtype=np.int64),
        )
    elif layout.index == 2:
        if filtered:
            raise _fail("implicit chunk index with filters")
        n = _n_chunks(maxshape, chunks)
        linear = np.arange(n, dtype=np.int64)
        table = ChunkTable(
            _unravel(linear, maxshape, chunks, None),
            layout.address + linear * nbytes,
            np.full(n, nbytes, dtype=np.int64),
            np.zeros(n, dtype=np.int64),
        )
    elif layout.index == 3:
        linear, addrs, sizes, masks = _fixed_array(h5, layout.address, filtered, nbytes)
        table = ChunkTable(_unravel(linear, maxshape, chunks, None), addrs, sizes, masks)
    elif layout.index == 4:
        unlimited = [i for i, m in enumerate(maxshape) if m is None]
        if len(unlimited) != 1:
            raise _fail("extensible array index without exactly one unlimited dimension")
        linear, addrs, sizes, masks = _extensible_array(h5, layout.address, filtered, nbytes)
        table = ChunkTable(_unravel(linear, maxshape, chunks, unlimited[0]), addrs, sizes, masks)
    elif layout.index == 5:
        table = _v2_btree_chunks(h5, layout.address, rank, chunks, filtered, nbytes)
    else:
        raise _fail(f"chunk index type {layout.index}")
    if table.addresses.size:
        if int(table.addresses.max()) >= h5.size or int(table.addresses.min()) < 0:
            raise _fail("chunk address outside the file")
        if (table.coords < 0).any() or (table.coords % np.asarray(chunks, dtype=np.int64)).any():
            raise _fail("chunk offset not on the chunk grid")
        if (table.coords >= np.asarray(shape, dtype=np.int64)).any():
            raise _fail("chunk outside the dataset's extent")
    return table


def _n_chunks(maxshape: tuple, chunks: tuple[int, ...]) -> int:
    if any(m is None for m in maxshape):
        raise _fail("fixed chunk index on an unlimited dataset")
    return math.prod(-(-m // c) for m, c in zip(maxshape, chunks, strict=True))


def _unravel(
    linear: np.ndarray, maxshape: tuple, chunks: tuple[int, ...], unlimited: int | None
) -> np.ndarray:
    """Element offsets of chunks from their linear index over the grid of the maximum shape
    (with the unlimited dimension, if any, swizzled to be the slowest)."""
    rank = len(chunks)
    order = list(range(rank))
    if unlimited is not None:
        order = [unlimited] + [i for i in range(rank) if i != unlimited]
    counts = [(-(-maxshape[i] // chunks[i]) if maxshape[i] is not None else 0) for i in order]
    coords = np.zeros((linear.size, rank), dtype=np.int64)
    rest = linear.copy()
    for pos in range(rank - 1, -1, -1):
        axis = order[pos]
        if pos == 0:
            coords[:, axis] = rest * chunks[axis]
        else:
            n = counts[pos]
            if n <= 0:
                raise _fail("empty chunk grid")
            coords[:, axis] = (rest % n) * chunks[axis]
            rest //= n
    return coords


_GROUP_ENTRY = np.dtype([("key", "<u8"), ("child", "<u8")])


def _v1_btree_leaves(h5: H5File, address: int, node_type: int, entry: np.dtype) -> Iterator[np.ndarray]:
    """The entries of each leaf node of a v1 B-tree (type 0: groups, 1: chunks), left to
    right; ``entry`` is a (key, child) record whose last field is the child's address."""
    stack: list[tuple[int, int | None]] = [(address, None)]
    visited = 0
    while stack:
        addr, level = stack.pop()
        visited += 1
        if visited > 1_000_000:
            raise _fail("v1 B-tree too large or cyclic")
        head = h5.read(_check_addr(addr, h5.size, "B-tree node"), 24)
        if head[:4] != b"TREE" or head[4] != node_type:
            raise _fail("bad v1 B-tree node")
        node_level, entries = head[5], _U16.unpack_from(head, 6)[0]
        if level is not None and node_level != level:
            raise _fail("v1 B-tree levels inconsistent")
        nodes = np.frombuffer(h5.read(addr + 24, entries * entry.itemsize), dtype=entry, count=entries)
        if node_level == 0:
            yield nodes
        else:
            stack.extend((int(c), node_level - 1) for c in nodes["child"][::-1])


def _v1_btree_chunks(h5: H5File, address: int, ndims: int) -> ChunkTable:
    entry = np.dtype([("size", "<u4"), ("mask", "<u4"), ("offset", "<u8", (ndims,)), ("child", "<u8")])
    leaves = list(_v1_btree_leaves(h5, address, 1, entry))
    if not leaves:
        return ChunkTable.empty(ndims - 1)
    allk = np.concatenate(leaves) if len(leaves) > 1 else leaves[0]
    return ChunkTable(
        allk["offset"][:, :-1].astype(np.int64),
        allk["child"].astype(np.int64),
        allk["size"].astype(np.int64),
        allk["mask"].astype(np.int64),
    )


def _little_endian(column: np.ndarray, width: int) -> np.ndarray:
    """Unsigned little-endian integers of ``width`` (1 to 8) bytes, from a void column."""
    raw = np.zeros((len(column), 8), dtype=np.uint8)
    raw[:, :width] = np.frombuffer(column.tobytes(), dtype=np.uint8).reshape(len(column), width)
    return raw.view("<u8").reshape(len(column))


def _entries(
    raw: bytes, count: int, entry_size: int, filtered: bool, chunk_nbytes: int
) -> tuple[np.ndarray, ...]:
    """Decode fixed/extensible array elements: (address, size, mask) arrays."""
    if filtered:
        size_len = entry_size - 12
        if not 1 <= size_len <= 8:
            raise _fail("chunk index entry size")
        dt = np.dtype([("addr", "<u8"), ("size", f"V{size_len}"), ("mask", "<u4")])
        arr = np.frombuffer(raw, dtype=dt, count=count)
        sizes = _little_endian(arr["size"], size_len)
        return arr["addr"], sizes, arr["mask"]
    if entry_size != 8:
        raise _fail("chunk index entry size")
    addrs = np.frombuffer(raw, dtype="<u8", count=count)
    return addrs, np.full(count, chunk_nbytes, dtype=np.uint64), np.zeros(count, dtype=np.uint32)


def _defined(
    linear: np.ndarray, addrs: np.ndarray, sizes: np.ndarray, masks: np.ndarray
) -> tuple[np.ndarray, ...]:
    keep = addrs != UNDEF
    return (
        linear[keep].astype(np.int64),
        addrs[keep].astype(np.int64),
        sizes[keep].astype(np.int64),
        masks[keep].astype(np.int64),
    )


def _bit_set(bitmap: bytes, index: int) -> bool:
    return bool(bitmap[index // 8] & (0x80 >> (index % 8)))


def _fixed_array(h5: H5File, address: int, filtered: bool, chunk_nbytes: int) -> tuple[np.ndarray, ...]:
    head = h5.read(address, 28)
    if head[:4] != b"FAHD" or head[4] != 0:
        raise _fail("bad fixed array header")
    client, entry_size, page_bits = head[5], head[6], head[7]
    nelmts, dblock = _Q2.unpack_from(head, 8)
    if client != (1 if filtered else 0) or nelmts > MAX_ITEMS or page_bits > 32:
        raise _fail("fixed array parameters")
    if dblock == UNDEF or nelmts == 0:
        z = np.zeros(0, dtype=np.int64)
        return z, z, z, z
    _check_addr(dblock, h5.size, "fixed array data block")
    page_n = 1 << page_bits
    prefix = 4 + 1 + 1 + 8
    if nelmts <= page_n:
        data = h5.read(dblock, prefix + nelmts * entry_size)
        if data[:4] != b"FADB":
            raise _fail("bad fixed array data block")
        a, s, m = _entries(data[prefix:], nelmts, entry_size, filtered, chunk_nbytes)
        return _defined(np.arange(nelmts), a, s, m)
    npages = -(-nelmts // page_n)
    bitmap_len = (npages + 7) // 8
    data = h5.read(dblock, prefix + bitmap_len)
    if data[:4] != b"FADB":
        raise _fail("bad fixed array data block")
    bitmap = data[prefix:]
    page_start = dblock + prefix + bitmap_len + 4
    parts = []
    for page in range(npages):
        if not _bit_set(bitmap, page):
            continue
        n = min(page_n, nelmts - page * page_n)
        raw = h5.read(page_start + page * (page_n * entry_size + 4), n * entry_size)
        a, s, m = _entries(raw, n, entry_size, filtered, chunk_nbytes)
        parts.append(_defined(np.arange(page * page_n, page * page_n + n), a, s, m))
    return _concat(parts)


def _concat(parts: list[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    if not parts:
        z = np.zeros(0, dtype=np.int64)
        return z, z, z, z
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(4))


def _extensible_array(h5: H5File, address: int, filtered: bool, chunk_nbytes: int) -> tuple[np.ndarray, ...]:
    head = h5.read(address, 68)
    if head[:4] != b"EAHD" or head[4] != 0:
        raise _fail("bad extensible array header")
    client, esize, max_bits, iblk_n, dblk_min, sblk_min_ptrs, page_bits = head[5:12]
    _nsb, _sbs, _ndb, _dbs, max_idx, _nelmts, iblock = struct.unpack_from("<7Q", head, 12)
    if client != (1 if filtered else 0) or max_bits > 64 or max_idx > MAX_ITEMS or page_bits > 32:
        raise _fail("extensible array parameters")
    if iblock == UNDEF or max_idx == 0:
        z = np.zeros(0, dtype=np.int64)
        return z, z, z, z
    log2_dblk_min = _log2_exact(dblk_min, "extensible array data block minimum")
    log2_sblk_min = _log2_exact(sblk_min_ptrs, "extensible array super block minimum")
    nsblks = 1 + max_bits - log2_dblk_min
    # per super block: number of data blocks, elements per data block, first element index
    sblk = []
    start = 0
    for u in range(nsblks):
        ndblks = 1 << (u // 2)
        dblk_n = (1 << ((u + 1) // 2)) * dblk_min
        sblk.append((ndblks, dblk_n, start))
        start += ndblks * dblk_n
    iblk_sblks = 2 * log2_sblk_min
    iblk_dblk_addrs = 2 * (sblk_min_ptrs - 1)
    iblk_sblk_addrs = nsblks - iblk_sblks
    off_size = (max_bits + 7) // 8
    page_n = 1 << page_bits
    prefix = 4 + 1 + 1 + 8
    data = h5.read(
        _check_addr(iblock, h5.size, "extensible array index block"),
        prefix + iblk_n * esize + 8 * (iblk_dblk_addrs + iblk_sblk_addrs),
    )
    if data[:4] != b"EAIB":
        raise _fail("bad extensible array index block")
    parts = []
    n = min(iblk_n, max_idx)
    a, s, m = _entries(data[prefix:], n, esize, filtered, chunk_nbytes)
    parts.append(_defined(np.arange(n), a, s, m))
    pos = prefix + iblk_n * esize
    dblk_addrs = struct.unpack_from(f"<{iblk_dblk_addrs}Q", data, pos)
    sblk_addrs = struct.unpack_from(f"<{iblk_sblk_addrs}Q", data, pos + 8 * iblk_dblk_addrs)

    def data_block(addr: int, first: int, count: int, page_bitmap: bytes | None, bit0: int) -> None:
        if first >= max_idx:
            return
        dprefix = prefix + off_size
        if count <= page_n:
            raw = h5.read(_check_addr(addr, h5.size, "extensible array data block"), dprefix + count * esize)
            if raw[:4] != b"EADB":
                raise _fail("bad extensible array data block")
            a, s, m = _entries(raw[dprefix:], count, esize, filtered, chunk_nbytes)
            parts.append(_defined(np.arange(first, first + count), a, s, m))
            return
        raw = h5.read(_check_addr(addr, h5.size, "extensible array data block"), dprefix)
        if raw[:4] != b"EADB" or page_bitmap is None:
            raise _fail("bad extensible array data block")
        npages = count // page_n
        for page in range(npages):
            if not _bit_set(page_bitmap, bit0 + page):
                continue
            praw = h5.read(addr + dprefix + 4 + page * (page_n * esize + 4), page_n * esize)
            a, s, m = _entries(praw, page_n, esize, filtered, chunk_nbytes)
            lo = first + page * page_n
            parts.append(_defined(np.arange(lo, lo + page_n), a, s, m))

    # data blocks of the first super blocks are listed in the index block itself
    k = 0
    for u in range(min(iblk_sblks, nsblks)):
        ndblks, dblk_n, first = sblk[u]
        for d in range(ndblks):
            addr = dblk_addrs[k]
            k += 1
            if addr != UNDEF:
                data_block(addr, iblk_n + first + d * dblk_n, dblk_n, None, 0)
    for j, saddr in enumerate(sblk_addrs):
        if saddr == UNDEF:
            continue
        u = iblk_sblks + j
        ndblks, dblk_n, first = sblk[u]
        if iblk_n + first >= max_idx:
            continue
        npages = dblk_n // page_n if dblk_n > page_n else 0
        bitmap_len = ndblks * ((npages + 7) // 8) if npages else 0
        sprefix = prefix + off_size
        raw = h5.read(
            _check_addr(saddr, h5.size, "extensible array super block"), sprefix + bitmap_len + 8 * ndblks
        )
        if raw[:4] != b"EASB":
            raise _fail("bad extensible array super block")
        bitmap = raw[sprefix : sprefix + bitmap_len] if npages else None
        addrs = struct.unpack_from(f"<{ndblks}Q", raw, sprefix + bitmap_len)
        for d, addr in enumerate(addrs):
            if addr != UNDEF:
                data_block(addr, iblk_n + first + d * dblk_n, dblk_n, bitmap, d * npages)
    linear, addrs_, sizes, masks = _concat(parts)
    keep = linear < max_idx
    return linear[keep], addrs_[keep], sizes[keep], masks[keep]


def _v2_btree_chunks(
    h5: H5File, address: int, rank: int, chunks: tuple[int, ...], filtered: bool, chunk_nbytes: int
) -> ChunkTable:
    tree = V2BTree(h5, address, 11 if filtered else 10)
    records = tree.records()
    n = len(records)
    if not n:
        return ChunkTable.empty(rank)
    raw = b"".join(records)
    if filtered:
        size_len = tree.record_size - 8 - 4 - 8 * rank
        if not 1 <= size_len <= 8:
            raise _fail("v2 B-tree chunk record size")
        dt = np.dtype(
            [("addr", "<u8"), ("size", f"V{size_len}"), ("mask", "<u4"), ("scaled", "<u8", (rank,))]
        )
        arr = np.frombuffer(raw, dtype=dt, count=n)
        sizes = _little_endian(arr["size"], size_len).astype(np.int64)
        masks = arr["mask"].astype(np.int64)
    else:
        if tree.record_size != 8 + 8 * rank:
            raise _fail("v2 B-tree chunk record size")
        dt = np.dtype([("addr", "<u8"), ("scaled", "<u8", (rank,))])
        arr = np.frombuffer(raw, dtype=dt, count=n)
        sizes = np.full(n, chunk_nbytes, dtype=np.int64)
        masks = np.zeros(n, dtype=np.int64)
    coords = arr["scaled"].astype(np.int64).reshape(n, rank) * np.asarray(chunks, dtype=np.int64)
    return ChunkTable(coords, arr["addr"].astype(np.int64), sizes, masks)
