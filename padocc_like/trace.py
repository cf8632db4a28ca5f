"""The last source file a phase opened, kept on disk while the phase runs.

A crash inside a native library (HDF5, netCDF-C) kills the process without a Python
traceback. While a phase runs, :func:`opening` writes each source file's URL, before any
library opens it, over the single line of the project's ``last-source`` file; when the
process running the phase dies, the runner names that file in the project's failure
(:func:`last_opened`). One ``pwrite`` per file opened, on a descriptor kept open for the phase.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

FILE_NAME = "last-source"

_fd: int | None = None


@contextlib.contextmanager
def tracing(project_root: Path) -> Iterator[None]:
    """Record the source files this process opens in ``project_root/last-source`` for the
    ``with`` block (a phase); the file is emptied at the start."""
    global _fd
    previous = _fd
    try:
        fd: int | None = os.open(project_root / FILE_NAME, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except OSError:  # a full disk or a read-only directory: no trace, the phase still runs
        fd = None
    _fd = fd
    try:
        yield
    finally:
        _fd = previous
        if fd is not None:
            os.close(fd)


def opening(url: str) -> None:
    """Note that this process is about to open ``url`` (does nothing outside :func:`tracing`)."""
    fd = _fd
    if fd is None:
        return
    data = url.encode("utf-8", "replace") + b"\n"
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
    except OSError:
        pass


def last_opened(project_root: Path) -> str | None:
    """The source file the project's last phase opened last, if it noted one."""
    try:
        text = (project_root / FILE_NAME).read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None
    return text or None
