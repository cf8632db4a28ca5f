"""The scanner contract and the registry that picks a scanner by magic bytes.

A scanner is configured in ``__init__`` and called once per file::

    scanner = HDF5Scanner(inline_threshold=500)
    file_scan = scanner("/data/tas_200001.nc")

It must return a :class:`~padocc_like.references.model.FileScan` whose chunk
table points at the exact stored bytes of every chunk, or raise a
:class:`~padocc_like.errors.ScanError` subclass naming the file, the variable
and the problem. It never drops a variable silently.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import logging
import warnings
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, ClassVar, Protocol, runtime_checkable

from ..errors import ScanError, UnknownPluginError, UnsupportedFormatError
from ..references.model import FileScan

log = logging.getLogger(__name__)

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
HDF4_SIGNATURE = b"\x0e\x03\x13\x01"
SNIFF_BYTES = 8


@runtime_checkable
class Scanner(Protocol):
    """One input format: recognise its files and turn one into references."""

    name: ClassVar[str]
    description: ClassVar[str]

    def __init__(self, *, inline_threshold: int = 500) -> None: ...

    @staticmethod
    def sniff(head: bytes) -> bool:
        """True if ``head`` (the first bytes of a file) is this format."""
        ...

    def __call__(self, path: str) -> FileScan: ...


_BUILTIN: dict[str, str] = {
    "hdf5": "padocc_like.scanners.hdf5:HDF5Scanner",
    "netcdf3": "padocc_like.scanners.netcdf3:NetCDF3Scanner",
}


@functools.cache
def _load(target: str) -> type[Scanner]:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


@functools.cache
def available_scanners() -> dict[str, str]:
    """Names of installed scanners mapped to their import targets (built-ins first)."""
    found = dict(_BUILTIN)
    for ep in entry_points(group="padocc_like.scanners"):
        found.setdefault(ep.name, ep.value)
    return found


def get_scanner(name: str) -> type[Scanner]:
    targets = available_scanners()
    if name not in targets:
        raise UnknownPluginError(
            f"no scanner named {name!r}; installed scanners: {', '.join(sorted(targets))}"
        )
    return _load(targets[name])


def read_head(path: str, n: int = SNIFF_BYTES) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except FileNotFoundError:
        raise
    except OSError as err:
        raise ScanError(f"{path}: cannot read the file: {err}") from err


def scanner_for(path: str, head: bytes | None = None) -> type[Scanner]:
    """The scanner class whose ``sniff`` accepts the file's first bytes."""
    head = read_head(path) if head is None else head
    for name, target in available_scanners().items():
        try:
            cls = _load(target)
        except Exception as err:  # a broken third-party plugin must not stop every scan
            if name in _BUILTIN:
                raise
            warnings.warn(
                f"scanner plugin {name!r} ({target}) failed to load: {err}", RuntimeWarning, stacklevel=2
            )
            continue
        if cls.sniff(head):
            return cls
    if head.startswith(HDF4_SIGNATURE):
        raise UnsupportedFormatError(
            f"{path}: HDF4 file; HDF4 cannot be referenced (convert it to netCDF4 first)"
        )
    if len(head) < 4:
        raise UnsupportedFormatError(f"{path}: file is empty or truncated ({len(head)} bytes)")
    raise UnsupportedFormatError(f"{path}: not a netCDF-3 or HDF5/netCDF4 file (first bytes {head[:8]!r})")


def scan_file(
    path: str, *, inline_threshold: int = 500, size: int | None = None, io: IOCounter | None = None
) -> FileScan:
    """Sniff the format of ``path`` (a local path, or a URL of a remote store) and scan it
    with the matching scanner. For a remote file, ``size`` (from the manifest) saves a
    request and ``io`` adds up the reads."""
    from .. import storage, trace

    trace.opening(path)
    if storage.is_remote(path):
        return _scan_remote(path, inline_threshold, size, io)
    cls = scanner_for(path)
    return cls(inline_threshold=inline_threshold)(path)


@dataclass
class IOCounter:
    """Requests and bytes read from remote files, and the files counted."""

    files: int = 0
    requests: int = 0
    bytes_read: int = 0

    def add(self, other: IOCounter) -> None:
        self.files += other.files
        self.requests += other.requests
        self.bytes_read += other.bytes_read


def _scan_remote(url: str, inline_threshold: int, size: int | None, io: IOCounter | None) -> FileScan:
    """Scan a remote file with small ranged reads (HDF5, natively), or, for what only a
    library reading a local file can scan (netCDF-3, HDF5 the native reader declines), a
    temporary local copy; the scan names the remote URL either way."""
    from .. import storage
    from ._hdf5_format import PagedReader

    with storage.RangeFile(url, size=size) as rf:
        try:
            reader = PagedReader(rf.read, rf.size, page_size=storage.REMOTE_PAGE_SIZE)
            reader.prefetch(0, storage.REMOTE_HEAD_SIZE)
            head = reader.read(0, min(SNIFF_BYTES, rf.size))
            cls = scanner_for(url, head)
            scanner = cls(inline_threshold=inline_threshold)
            if cls.name == "hdf5" and getattr(scanner, "backend", "auto") != "h5py":
                from .hdf5_native import NativeUnsupported, scan_native_reader

                try:
                    return scan_native_reader(url, reader, inline_threshold)
                except NativeUnsupported as err:
                    if getattr(scanner, "backend", "auto") == "native":
                        raise
                    log.debug("%s: native HDF5 reader declined, reading a local copy: %s", url, err)
        finally:
            if io is not None:
                io.add(IOCounter(1, rf.requests, rf.bytes_read))
    with storage.local_copy(url) as local:
        try:
            scan = cls(inline_threshold=inline_threshold)(local)
        except ScanError as err:
            raise type(err)(err.message.replace(local, url)) from err
    return dataclasses.replace(scan, url=url)


def to_json_value(value: Any) -> Any:
    """Turn an attribute value read by h5py/numpy into a JSON-safe Python value."""
    import numpy as np

    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "SO" or value.dtype.kind == "U":
            items = [to_json_value(v) for v in value.reshape(-1).tolist()]
            # a 1-element string array (char or NC_STRING) reads as one string, as netCDF4 does
            return items[0] if value.size == 1 else items
        if value.ndim == 0 or (value.ndim == 1 and value.size == 1):
            # netCDF attributes are 1-D; a single value reads back as a scalar
            return to_json_value(value.reshape(-1)[0])
        return [to_json_value(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return to_json_value(value.item())
    if isinstance(value, list | tuple):
        return [to_json_value(v) for v in value]
    return value
