"""Read a variable's raw stored values through its references (no CF decoding)."""

from __future__ import annotations

import contextlib
import itertools
import math
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from ..errors import ScanError
from ..storage import RangeFile, is_remote
from .model import MISSING, AggVariable, VariableScan, chunk_grid, decode_fill_value


def decode_chunk(data: bytes, filters: list[dict[str, Any]] | None) -> bytes:
    """Undo the codec list of a chunk (filters are applied in reverse on decode)."""
    if not filters:
        return data
    from numcodecs import get_codec

    out: Any = data
    for config in reversed(filters):
        out = get_codec(dict(config)).decode(out)
    return bytes(out)


def encode_chunk(data: bytes, filters: list[dict[str, Any]] | None) -> bytes:
    """Apply a chunk's codec list in order (for chunks stored inline)."""
    if not filters:
        return data
    from numcodecs import get_codec

    for config in filters:
        data = bytes(get_codec(dict(config)).encode(data))
    return data


def read_raw(var: VariableScan, read_range: Callable[[int, int], bytes]) -> np.ndarray:
    """Assemble ``var``'s stored values from its chunk table.

    ``read_range(offset, length)`` returns bytes of the variable's file.
    Unstored chunks read as the fill value (0 when the variable has none), as
    Zarr readers do.
    """
    return _assemble(var, lambda flat: _read_stored_bytes(var, flat, read_range))


def read_aggregated(var: AggVariable, urls: Sequence[str]) -> np.ndarray:
    """An aggregate variable's stored values from its chunk table, whose chunks may come from
    several local files (``urls``: the aggregate's, indexed by ``var.url_index``)."""
    with contextlib.ExitStack() as stack:
        readers: dict[int, Callable[[int, int], bytes]] = {}

        def fetch(flat: int) -> bytes | None:
            if flat in var.inline:
                return var.inline[flat]
            u = int(var.url_index[flat])
            if u < 0 or var.offsets[flat] == MISSING:
                return None
            if u not in readers:
                readers[u] = stack.enter_context(file_reader(urls[u]))
            return readers[u](int(var.offsets[flat]), int(var.lengths[flat]))

        return _assemble(var, fetch)


def read_aggregated_region(
    var: AggVariable, region: tuple[slice, ...], read_from: Callable[[int], Callable[[int, int], bytes]]
) -> np.ndarray:
    """The stored values of ``region`` (slices with unit steps) of an aggregate variable,
    reading only the chunks that overlap it. ``read_from(url_index)`` gives the
    ``read_range`` of one of the aggregate's files (the caller keeps files open)."""
    dtype = np.dtype(var.dtype)
    bounds = [sl.indices(n)[:2] for sl, n in zip(region, var.shape, strict=True)]
    fill = decode_fill_value(var.fill_value, dtype)
    out = np.full(tuple(hi - lo for lo, hi in bounds), 0 if fill is None else fill, dtype=dtype)
    if out.size == 0:
        return out
    grid = chunk_grid(var.shape, var.chunks)
    if not grid:  # a scalar: one chunk
        ranges: list[range] = []
    else:
        ranges = [range(lo // c, (hi - 1) // c + 1) for (lo, hi), c in zip(bounds, var.chunks, strict=True)]
    for idx in itertools.product(*ranges):
        flat = int(np.ravel_multi_index(idx, grid)) if grid else 0
        if flat in var.inline:
            raw: bytes | None = var.inline[flat]
        else:
            u = int(var.url_index[flat])
            raw = (
                None
                if u < 0 or var.offsets[flat] == MISSING
                else read_from(u)(int(var.offsets[flat]), int(var.lengths[flat]))
            )
        if raw is None:
            continue
        chunk = _decoded(var, flat, raw, dtype)
        src, dst = [], []
        for i, c, (lo, hi) in zip(idx, var.chunks, bounds, strict=True):
            a, b = max(lo, i * c), min(hi, (i + 1) * c)
            src.append(slice(a - i * c, b - i * c))
            dst.append(slice(a - lo, b - lo))
        out[tuple(dst)] = chunk[tuple(src)]
    return out


def _decoded(var: VariableScan | AggVariable, flat: int, raw: bytes, dtype: np.dtype) -> np.ndarray:
    """One chunk's values, shaped like a chunk."""
    try:
        chunk = np.frombuffer(decode_chunk(raw, var.filters), dtype=dtype)
        return chunk.reshape(var.chunks) if var.chunks else chunk.reshape(())
    except Exception as err:
        raise ScanError(f"variable {var.name!r}: chunk {flat} cannot be decoded: {err}") from err


def _assemble(var: VariableScan | AggVariable, fetch: Callable[[int], bytes | None]) -> np.ndarray:
    """A variable's values from its chunks: ``fetch(flat)`` gives a chunk's stored bytes, or
    None for a chunk that is not stored (read as the fill value)."""
    dtype = np.dtype(var.dtype)
    grid = chunk_grid(var.shape, var.chunks)
    stacked = _read_stacked(var, grid, dtype, fetch)
    if stacked is not None:
        return stacked
    fill = decode_fill_value(var.fill_value, dtype)
    out = np.full(var.shape, 0 if fill is None else fill, dtype=dtype)
    for flat in range(math.prod(grid)):
        raw = fetch(flat)
        if raw is None:
            continue
        chunk = _decoded(var, flat, raw, dtype)
        idx = np.unravel_index(flat, grid) if grid else ()
        sel = tuple(
            slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(idx, var.chunks, var.shape, strict=True)
        )
        out[sel] = chunk[tuple(slice(0, s.stop - s.start) for s in sel)]
    return out


def _read_stored_bytes(var: VariableScan, flat: int, read_range: Callable[[int, int], bytes]) -> bytes | None:
    if flat in var.inline:
        return var.inline[flat]
    if var.offsets[flat] != MISSING:
        return read_range(int(var.offsets[flat]), int(var.lengths[flat]))
    return None


def _read_stacked(
    var: VariableScan | AggVariable,
    grid: tuple[int, ...],
    dtype: np.dtype,
    fetch: Callable[[int], bytes | None],
) -> np.ndarray | None:
    """Fast path for the common small case (time steps, their bounds): unfiltered chunks
    that split only the first axis, all stored, are the array's bytes in order."""
    if (
        var.filters
        or not grid
        or any(g != 1 for g in grid[1:])
        or tuple(var.chunks[1:]) != tuple(var.shape[1:])
    ):
        return None
    parts = [fetch(flat) for flat in range(grid[0])]
    chunk_bytes = math.prod(var.chunks) * dtype.itemsize
    if any(p is None or len(p) != chunk_bytes for p in parts):
        return None
    stored = b"".join(p for p in parts if p is not None)
    data = np.frombuffer(stored, dtype=dtype).reshape((grid[0] * var.chunks[0], *var.shape[1:]))
    return data[: var.shape[0]].copy()


def read_stored_chunks(var: VariableScan, read_range: Callable[[int, int], bytes]) -> list[bytes | None]:
    """Each chunk's bytes as stored (still encoded), ``None`` for unstored chunks."""
    out: list[bytes | None] = []
    for flat in range(len(var.offsets)):
        if flat in var.inline:
            out.append(var.inline[flat])
        elif var.offsets[flat] != MISSING:
            out.append(read_range(int(var.offsets[flat]), int(var.lengths[flat])))
        else:
            out.append(None)
    return out


@contextlib.contextmanager
def file_reader(path: str) -> Iterator[Callable[[int, int], bytes]]:
    """A ``read_range(offset, length)`` over a local file, open for the ``with`` block (opened
    at the first read: values held inline in the scan need no file); ranged reads for a
    file in a remote store."""
    fd: list[int] = []
    if is_remote(path):
        with RangeFile(path) as rf:

            def read_remote(offset: int, length: int) -> bytes:
                data = rf.read(offset, length)
                if len(data) != length:
                    raise ScanError(f"{path}: expected {length} bytes at offset {offset}, file is shorter")
                return data

            yield read_remote
        return

    def read_range(offset: int, length: int) -> bytes:
        if not fd:
            fd.append(os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)))
        data = os.pread(fd[0], length, offset)
        if len(data) != length:
            raise ScanError(f"{path}: expected {length} bytes at offset {offset}, file is shorter")
        return data

    try:
        yield read_range
    finally:
        if fd:
            os.close(fd[0])
