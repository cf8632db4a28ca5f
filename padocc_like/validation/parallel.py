"""Run validation's per-file work over blocks of files, in this process and a process pool.

The calling process is one of the ``workers``: it already has the scientific stack
imported and the product open, so it starts on the first blocks at once, while the pool
(``workers - 1`` processes from :func:`padocc_like.runners.pool.process_pool`) starts up and
takes blocks from the other end. Every block's result depends only on its inputs and
results come back in block order, so the outcome is the same whoever ran which block.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import pickle
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

log = logging.getLogger(__name__)

PARALLEL_MIN_BYTES = 256 << 20
"""Least source data (bytes on disk) worth a pool: a worker costs about a second of one core
to start (interpreter, imports, opening the product)."""

BLOCKS_PER_PROCESS = 8
"""Blocks per process: enough for the two ends to meet with little idle time."""

R = TypeVar("R")

# glibc mallopt parameters
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_DEFAULT_THRESHOLD = 128 << 10
_HEAP_MMAP_THRESHOLD = 32 << 20  # glibc's largest
_HEAP_TRIM_THRESHOLD = 1 << 30


def _glibc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def reuse_heap() -> bool:
    """Make this process keep freed large arrays in its heap (glibc; else a no-op).

    Validation allocates and frees arrays of several MB per variable and file. By default
    glibc maps each one afresh and unmaps it when freed, so every page of every array is
    faulted in and zeroed again by the kernel: a fifth of validation's CPU time. Served
    from the heap, freed arrays are reused instead."""
    libc = _glibc()
    if libc is None:
        return False
    return bool(
        libc.mallopt(_M_MMAP_THRESHOLD, _HEAP_MMAP_THRESHOLD)
        and libc.mallopt(_M_TRIM_THRESHOLD, _HEAP_TRIM_THRESHOLD)
    )


@contextlib.contextmanager
def heap_reused() -> Iterator[None]:
    """:func:`reuse_heap` for a while; then glibc's default thresholds, and the memory returned."""
    if not reuse_heap():
        yield
        return
    try:
        yield
    finally:
        libc = _glibc()
        libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_THRESHOLD)
        libc.mallopt(_M_MMAP_THRESHOLD, _DEFAULT_THRESHOLD)
        libc.malloc_trim(0)


def blocks_of(items: Sequence[Any], processes: int) -> list[list[Any]]:
    """``items`` cut into contiguous blocks, in order."""
    n = max(1, min(len(items), BLOCKS_PER_PROCESS * max(1, processes)))
    size, extra = divmod(len(items), n)
    out, start = [], 0
    for i in range(n):
        stop = start + size + (1 if i < extra else 0)
        if stop > start:
            out.append(list(items[start:stop]))
        start = stop
    return out


class Workers:
    """This process plus, when worth it, a pool of ``workers - 1`` processes."""

    def __init__(
        self, workers: int, data_bytes: int, warm: tuple[Callable[..., Any], tuple[Any, ...]] | None
    ):
        self.processes = 1
        self.pool: ProcessPoolExecutor | None = None
        self._starter: threading.Thread | None = None
        if workers < 2 or data_bytes < PARALLEL_MIN_BYTES:
            return
        if warm is not None:
            try:
                pickle.dumps(warm)
            except Exception:
                log.info("validation stays serial: the product opener cannot be sent to a pool")
                return
        from ..runners.pool import process_pool

        self.processes = workers
        self.pool = process_pool(workers - 1)
        if warm is not None:
            fn, args = warm
            pool = self.pool

            def start() -> None:  # starting a worker blocks until it is forked: do it aside
                for _ in range(workers - 1):
                    pool.submit(fn, *args)

            self._starter = threading.Thread(target=start, name="validation-pool-start", daemon=True)
            self._starter.start()

    def map_blocks(self, fn: Callable[..., R], shared: Any, blocks: list[Any]) -> list[R]:
        """``[fn(shared, block) for block in blocks]``, shared between this process and the pool."""
        if self.pool is None or len(blocks) < 2:
            return [fn(shared, b) for b in blocks]
        if self._starter is not None:
            self._starter.join()
        futures: dict[int, Future] = {}
        for i in reversed(range(len(blocks))):  # the pool takes blocks from the end
            futures[i] = self.pool.submit(fn, shared, blocks[i])
        results: list[Any] = [None] * len(blocks)
        i = 0
        try:
            # from the front, every block the pool has not taken yet
            while i < len(blocks) and futures[i].cancel():
                results[i] = fn(shared, blocks[i])
                i += 1
            for j in range(i, len(blocks)):
                try:
                    results[j] = futures[j].result()
                except BrokenProcessPool:  # a worker died (killed, out of memory): do it here
                    log.warning("validation pool broke; block %d runs in this process", j)
                    results[j] = fn(shared, blocks[j])
        except BaseException:
            for f in futures.values():
                f.cancel()
            raise
        log.debug("%d of %d blocks ran in this process", i, len(blocks))
        return results

    def close(self) -> None:
        if self._starter is not None:
            self._starter.join()
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
