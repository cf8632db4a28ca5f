"""Pausing Python's cyclic garbage collector around allocation-heavy work."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside the block (reference counting still frees).

    Scanning a project keeps every file's scan alive (tens of objects per variable per file)
    until they are combined. Each full collection walks all of them again, so collections
    grow with the project: a tenth of the scan phase of 10,000 files, and most of the time
    spent unpickling scans. The objects built here hold no reference cycles that matter;
    whatever cycles do form are collected once the block ends."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
