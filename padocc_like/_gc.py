"""Pausing Python's cyclic garbage collector around allocation-heavy work."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

_frozen = [False]


@contextlib.contextmanager
def gc_paused(freeze: bool = False) -> Iterator[None]:
    """No cyclic garbage collection inside the block (reference counting still frees).

    Scanning a project keeps every file's scan alive (tens of objects per variable per file)
    until they are combined. Each full collection walks all of them again, so collections
    grow with the project: a tenth of the scan phase of 10,000 files, and most of the time
    spent unpickling scans. The objects built here hold no reference cycles that matter;
    whatever cycles do form are collected once the block ends.

    Every object made while paused is in the youngest generation, so the first collection
    after the block walks them all (0.4 s for a 10,000-file scan) while most are still in
    use. With ``freeze`` the objects alive at the end of the block are set aside instead
    (:func:`gc.freeze`) until :func:`thaw`, which the phase runner calls once the stage has
    returned and released them."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
            _frozen[0] = True
        if enabled:
            gc.enable()


def thaw() -> None:
    """Return what :func:`gc_paused` set aside to the collector (a no-op if nothing was)."""
    if _frozen[0]:
        _frozen[0] = False
        gc.unfreeze()
