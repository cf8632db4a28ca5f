"""A source's deflated HDF5 datasets read chunk by chunk, for validation.

h5py reads a compressed dataset through HDF5's filter pipeline, whose deflate filter
inflates with the zlib HDF5 was linked against: about 60 % of a plain h5py read of the
benchmark archive. :class:`SourceChunks` reads the same chunks with the pieces libhdf5
itself reports through h5py: its chunk index (``DatasetID.chunk_iter``: every stored
chunk's offset, byte range and filter mask) and the dataset's filter pipeline
(``get_filter``); it inflates with zlib-ng (:func:`~.direct.inflater`, the same bytes out,
Adler-32 checked) and undoes the shuffle filter with numcodecs, in the reverse of the
pipeline's order. Nothing comes from our scanners or from the product.

Only deflate, or shuffle then deflate (netCDF-4's pipelines), with every filter applied to
every chunk, qualify;
chunks the file does not store are read through h5py (HDF5 fills them), and any error
sends the variable back to h5py. The caller also reads the first slab of each variable
in each process through h5py and uses this path only if both are identical.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .direct import chunk_regions, decode_step, inflater

H5Z_FILTER_DEFLATE = 1
H5Z_FILTER_SHUFFLE = 2


class SourceChunks:
    """One chunked, deflated HDF5 dataset of a source file, read without HDF5's filters."""

    def __init__(
        self,
        dataset: Any,
        path: str,
        steps: list[Callable[..., Any]],
        chunks: dict[tuple[int, ...], tuple[int, int]],
    ) -> None:
        self.dataset = dataset
        self.path = path
        self.steps = steps
        """Decoding steps, the pipeline's filters last first; the last may decode into ``out``."""
        self.chunk_index = chunks
        """Stored chunks: offset of the chunk's first element -> (byte offset, size)."""
        self.shape = tuple(int(n) for n in dataset.shape)
        self.chunks = tuple(int(n) for n in dataset.chunks)
        self.dtype = np.dtype(dataset.dtype)
        self._fd: int | None = None
        self._last: tuple[tuple[int, ...], np.ndarray] | None = None

    def _stored(self, start: int, size: int) -> bytes:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        data = os.pread(self._fd, size, start)
        if len(data) != size:
            raise OSError(f"{self.path}: chunk of {size} bytes at {start}, {len(data)} read")
        return data

    def _decode(self, offset: tuple[int, ...], into: np.ndarray | None) -> np.ndarray:
        start, size = self.chunk_index[offset]
        data: Any = self._stored(start, size)
        nbytes = math.prod(self.chunks) * self.dtype.itemsize
        for i, step in enumerate(self.steps):
            if into is not None and i == len(self.steps) - 1 and len(data) == nbytes:
                step(data, out=into.reshape(-1).view(np.uint8))
                return into
            data = step(data)
        flat = np.frombuffer(data, dtype=np.uint8)
        if flat.size != nbytes:
            raise ValueError(f"chunk at {offset} decodes to {flat.size} bytes, not {nbytes}")
        chunk = flat.view(self.dtype).reshape(self.chunks)
        if into is not None:
            into[...] = chunk
            return into
        return chunk

    def read(self, key: Sequence[Any]) -> np.ndarray:
        """``dataset[key]`` for a slice of step 1 per dimension, as h5py returns it."""
        if len(key) != len(self.shape) or not all(isinstance(k, slice) and k.step in (None, 1) for k in key):
            raise NotImplementedError("only slices of step 1 are read chunk by chunk")
        out_shape, regions = chunk_regions(key, self.shape, self.chunks)
        out = np.empty(out_shape, dtype=self.dtype)
        for index, dst, src in regions:
            offset = tuple(k * c for k, c in zip(index, self.chunks, strict=True))
            region = out[dst]
            if offset not in self.chunk_index:  # not stored: HDF5's fill value, through h5py
                region[...] = self.dataset[
                    tuple(slice(o + s.start, o + s.stop) for o, s in zip(offset, src, strict=True))
                ]
            elif region.shape == self.chunks and region.flags.c_contiguous:
                self._decode(offset, into=region)
            else:
                if self._last is None or self._last[0] != offset:
                    self._last = (offset, self._decode(offset, None))
                region[...] = self._last[1][src]
        return out

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._last = None


def _codec(code: int, values: tuple[int, ...], itemsize: int) -> Any:
    """The numcodecs codec of one HDF5 filter of the pipeline (deflate or shuffle)."""
    from numcodecs import Shuffle, Zlib

    if code == H5Z_FILTER_DEFLATE:
        return Zlib()
    return Shuffle(elementsize=int(values[0]) if values else itemsize)


def source_chunks(dataset: Any, path: str) -> SourceChunks | None:
    """A :class:`SourceChunks` for an h5py dataset of the file at ``path``, or None unless the
    dataset holds plain numbers in chunks filtered by deflate or shuffle then deflate, every
    stored chunk went through every filter, and zlib-ng is installed."""
    inflate = inflater()
    dtype = np.dtype(dataset.dtype)
    if inflate is None or dataset.chunks is None or dtype.kind not in "iuf" or dtype.fields:
        return None
    dsid = dataset.id
    if not hasattr(dsid, "chunk_iter"):
        return None
    dcpl = dsid.get_create_plist()
    pipeline = []
    for i in range(dcpl.get_nfilters()):
        code, _flags, values, _name = dcpl.get_filter(i)
        if code not in (H5Z_FILTER_DEFLATE, H5Z_FILTER_SHUFFLE):
            return None
        pipeline.append((int(code), tuple(int(v) for v in values)))
    codes = [code for code, _ in pipeline]
    if codes not in ([H5Z_FILTER_DEFLATE], [H5Z_FILTER_SHUFFLE, H5Z_FILTER_DEFLATE]):
        return None  # shuffle after deflate leaves HDF5's odd trailing bytes, which numcodecs refuses
    index: dict[tuple[int, ...], tuple[int, int]] = {}
    masked: list[int] = []

    def visit(info: Any) -> None:
        if info.filter_mask:
            masked.append(info.filter_mask)
        index[tuple(int(n) for n in info.chunk_offset)] = (int(info.byte_offset), int(info.size))

    dsid.chunk_iter(visit)
    if masked:
        return None
    steps = [
        decode_step(_codec(code, values, dtype.itemsize), inflate) for code, values in reversed(pipeline)
    ]
    return SourceChunks(dataset, path, steps, index)
