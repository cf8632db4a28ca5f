"""Small I/O helpers: atomic writes, canonical JSON, timestamps, hashing."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import DiskFullError


def utc_now() -> str:
    """The current time as ISO 8601 UTC with microseconds, e.g. ``2026-11-21T12:00:00.123456Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_json(obj: Any, *, indent: int | None = None) -> str:
    """Deterministic JSON: sorted keys, no NaN, fixed separators."""
    if indent is None:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return json.dumps(obj, sort_keys=True, indent=indent, allow_nan=False)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def sha256_file(path: Path, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def sha256_tree(directory: Path) -> str:
    """Digest of a directory: every file's relative path and content, in sorted order."""
    h = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        h.update(path.relative_to(directory).as_posix().encode() + b"\0")
        h.update(sha256_file(path).encode())
    return h.hexdigest()


def fsync_tree(directory: Path) -> None:
    """Flush every file and directory under ``directory`` (and itself) to disk, before a
    directory built in place is published by a rename."""
    for path in sorted(directory.rglob("*")):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
"""The ``errno`` codes of a full filesystem and of an exceeded quota."""


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` is a write failing for lack of space (or quota)."""
    return isinstance(err, OSError) and err.errno in NO_SPACE


def disk_full_error(path: Path, err: OSError) -> DiskFullError:
    """A :class:`~padocc_like.errors.DiskFullError` naming ``path`` (or the file the error
    names), the filesystem it is on and the space left there."""
    mount = Path(path).absolute()
    while not mount.exists() or not os.path.ismount(mount):
        if mount.parent == mount:
            break
        mount = mount.parent
    try:
        free = f"{shutil.disk_usage(mount).free / 1e6:.1f} MB free"
    except OSError:
        free = "free space unknown"
    reason = "no space left on device" if err.errno == errno.ENOSPC else "disk quota exceeded"
    return DiskFullError(
        f"{reason} writing {err.filename or path} (filesystem {mount}, {free}); "
        "free space there, then run the phase again",
        err.errno or errno.ENOSPC,
    )


def atomic_write_bytes(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part.

    The bytes go to a uniquely named temporary file in the same directory, are
    flushed to disk (unless ``durable`` is false: for caches, which may be lost but
    never half-written), then renamed over ``path``. On error the temporary file is removed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if is_disk_full(err):
            raise disk_full_error(path, err) from err
        raise
    if durable:
        _fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """A temporary file beside ``path`` for writers that need a file name (netCDF libraries).

    The block writes the yielded path (an empty file, ``.<name>.<random>.partial``); when it
    ends, the file is flushed to disk and renamed over ``path``. If the block raises, the
    temporary file is removed and ``path`` is left as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if is_disk_full(err):
            raise disk_full_error(path, err) from err
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, obj: Any, *, indent: int | None = 1, durable: bool = True) -> None:
    atomic_write_bytes(path, (canonical_json(obj, indent=indent) + "\n").encode(), durable=durable)


def read_json(path: Path) -> Any:
    with open(path, "rb") as f:
        return json.loads(f.read())


@contextlib.contextmanager
def atomic_directory(path: Path) -> Iterator[Path]:
    """Build a directory under a temporary name and rename it into place on success.

    An existing directory at ``path`` is replaced. If the block raises, the
    temporary directory is removed and ``path`` is left as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        yield tmp
        _fsync_dir(tmp)
        replace_directory(tmp, path)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_full(err):
            raise disk_full_error(path, err) from err
        raise


def replace_directory(built: Path, path: Path) -> None:
    """Rename the finished directory ``built`` to ``path``, replacing a directory there (moved
    aside first, then deleted), and flush the rename to disk."""
    if path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        os.replace(path, old)
        os.replace(built, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(built, path)
    _fsync_dir(path.parent)


def remove_partials(directory: Path) -> list[Path]:
    """Delete leftovers of interrupted atomic writes (``.*.partial``) in ``directory``."""
    removed = []
    if not directory.is_dir():
        return removed
    for p in directory.glob(".*.partial"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        removed.append(p)
    return removed


# fsspec's lazy reference layout (Kerchunk Parquet): one record file
_PANDAS_METADATA = json.dumps(
    {
        "index_columns": [],
        "column_indexes": [],
        "columns": [
            {"name": n, "field_name": n, "pandas_type": p, "numpy_type": t, "metadata": None}
            for n, p, t in (
                ("path", "unicode", "object"),
                ("offset", "int64", "int64"),
                ("size", "int64", "int64"),
                ("raw", "bytes", "object"),
            )
        ],
        "creator": {"library": "padocc-like"},
    },
    sort_keys=True,
).encode()
"""pandas' description of a record file's columns: without it fastparquet (fsspec's default
reader) gives ``offset`` and ``size`` back as nullable ``Int64`` instead of ``int64``."""


def write_reference_record(path: Path, urls: Any, offsets: Any, sizes: Any, raw: Any) -> None:
    """One record file of fsspec's lazy reference layout, with Arrow: columns ``path``
    (nullable UTF-8, an Arrow array or a sequence of str/None), ``offset`` and ``size``
    (int64), ``raw`` (nullable bytes); zstd, one row group, no statistics. fsspec's
    ``LazyReferenceMapper`` reads it with fastparquet (its default) or pyarrow."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            pa.field("path", pa.string()),
            pa.field("offset", pa.int64(), nullable=False),
            pa.field("size", pa.int64(), nullable=False),
            pa.field("raw", pa.binary()),
        ],
        metadata={b"pandas": _PANDAS_METADATA},  # the column types pandas readers give back
    )
    table = pa.table(
        [
            urls if isinstance(urls, pa.Array) else pa.array(list(urls), type=pa.string()),
            pa.array(np.asarray(offsets, dtype="int64")),
            pa.array(np.asarray(sizes, dtype="int64")),
            pa.array(list(raw), type=pa.binary()),
        ],
        schema=schema,
    )
    pq.write_table(
        table,
        path,
        compression="zstd",
        use_dictionary=["path"],
        write_statistics=False,
        row_group_size=max(1, len(table)),
        store_schema=True,
    )
