"""Fragment locations: substitutions, URI resolution and opening a netCDF file anywhere.

CF-1.13 (section 2.8.1): a fragment URI is an absolute URI (``file:///d/x.nc``,
``https://host/x.nc``, ``s3://bucket/x.nc``) or a relative-path URI reference
(``x.nc``, ``../x.nc``) resolved against the location of the aggregation file, never the
working directory. Bare absolute paths (``/d/x.nc``) are accepted when reading. Local
files are opened with netCDF4-python; anything else is fetched through fsspec.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit, urlunsplit

from xarray.backends.locks import HDF5_LOCK, NETCDFC_LOCK, combine_locks

if TYPE_CHECKING:
    import netCDF4

IN_FILE = ""
"""The URI of a fragment stored in the aggregation file itself (CFA-0.6.2): the empty
reference, which RFC 3986 resolves to the referencing document."""

NETCDF_LOCK = combine_locks([NETCDFC_LOCK, HDF5_LOCK])
"""The lock xarray's netCDF4 backend holds around every libnetcdf call."""

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_TOKEN = re.compile(r"\$\{\w+\}")


def scheme(uri: str) -> str | None:
    """The URI's scheme in lower case (``None`` for references and paths; one-letter
    schemes are taken as Windows drives)."""
    match = _SCHEME.match(uri)
    if match is None or len(match.group(1)) == 1:
        return None
    return match.group(1).lower()


def is_remote(location: str) -> bool:
    """Whether a resolved location is a URL for fsspec rather than a local path."""
    return scheme(location) is not None


def file_uri_path(uri: str) -> str:
    """The local path of a ``file:`` URI (host empty or ``localhost``)."""
    parts = urlsplit(uri)
    if parts.netloc not in ("", "localhost"):
        raise ValueError(f"file URI {uri!r} names host {parts.netloc!r}; only local files can be opened")
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise ValueError(f"file URI {uri!r} has no absolute path")
    return path


def local_or_url(source: str) -> str:
    """An aggregation file's location as given: ``file:`` URIs become paths, paths become
    absolute, other URLs are kept."""
    kind = scheme(source)
    if kind == "file":
        return file_uri_path(source)
    if kind is None:
        return str(Path(source).expanduser().absolute())
    return source


def resolve_uri(uri: str, base: str) -> str:
    """The location (absolute local path or URL) of fragment URI ``uri`` in aggregation file ``base``.

    ``base`` is an absolute local path or a URL (see :func:`local_or_url`).
    """
    if uri.startswith("#"):
        raise ValueError(f"URI {uri!r} is a same-document fragment reference, not a file")
    kind = scheme(uri)
    if kind == "file":
        return file_uri_path(uri)
    if kind is not None:
        return uri
    if uri == IN_FILE:
        return base
    if is_remote(base):
        parts = urlsplit(base)
        ref = unquote(uri)
        path = ref if ref.startswith("/") else posixpath.join(posixpath.dirname(parts.path), ref)
        return urlunsplit((parts.scheme, parts.netloc, posixpath.normpath(path), "", ""))
    return os.path.normpath(Path(base).parent / unquote(uri))


def parse_substitutions(text: str) -> dict[str, str]:
    """CFA-0.6.2 ``substitutions`` attribute (``"${a}: x ${b}: y"``) as ``{"${a}": "x", ...}``."""
    pairs = re.findall(r"(\$\{\w+\})\s*:\s*(\S+)", text)
    if re.sub(r"(\$\{\w+\})\s*:\s*(\S+)", "", text).strip():
        raise ValueError(f"substitutions {text!r} are not '${{name}}: value' pairs")
    return dict(pairs)


def substitute(uri: str, tokens: Mapping[str, str], prefixes: Mapping[str, str]) -> str:
    """``uri`` with CFA-0.6.2 ``${name}`` tokens replaced, then the first matching prefix
    of ``prefixes`` (a reader option) replaced."""
    for token, value in tokens.items():
        uri = uri.replace(token, value)
    if (left := _TOKEN.search(uri)) is not None:
        raise ValueError(f"URI {uri!r} uses substitution {left.group()} that is not defined")
    for old, new in prefixes.items():
        if uri.startswith(old):
            return new + uri[len(old) :]
    return uri


def read_bytes(url: str, storage_options: Mapping[str, Any] | None) -> bytes:
    """The whole remote file at ``url``, through fsspec (``ValueError``/``ImportError`` for
    protocols fsspec cannot serve)."""
    import fsspec

    with fsspec.open(url, mode="rb", **dict(storage_options or {})) as f:
        return f.read()


def from_memory(url: str, data: bytes) -> netCDF4.Dataset:
    """A netCDF file fetched from ``url``, opened from memory (under a plain name: libnetcdf
    would take a URL for a DAP server)."""
    import netCDF4

    return netCDF4.Dataset(posixpath.basename(urlsplit(url).path) or "remote.nc", mode="r", memory=data)


@contextmanager
def open_netcdf(location: str, storage_options: Mapping[str, Any] | None = None) -> Iterator[netCDF4.Dataset]:
    """A netCDF file at a local path or a URL, open for reading, closed afterwards.

    The block runs under xarray's netCDF lock (libnetcdf and HDF5 are not thread-safe), so
    it must not open another file. Remote files are fetched whole first, outside the lock,
    and opened from memory. Raises :class:`FileNotFoundError` when there is no such file.
    """
    import netCDF4

    data = read_bytes(location, storage_options) if is_remote(location) else None
    if data is None and not Path(location).exists():
        raise FileNotFoundError(location)
    with NETCDF_LOCK:
        ds = netCDF4.Dataset(location, mode="r") if data is None else from_memory(location, data)
        try:
            yield ds
        finally:
            ds.close()
