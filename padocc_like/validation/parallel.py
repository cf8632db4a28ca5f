"""Run validation's per-file work over blocks of files, in this process and the active engine.

With a local engine the calling process is one of the ``workers``: it already has the
scientific stack imported and the product open, so it starts on the first blocks at once,
while the pool (``workers - 1`` processes from :func:`padocc_like.runners.pool.process_pool`)
starts up and then takes blocks from the other end. A cluster engine (Dask) takes every
block. Every block's result depends only on its inputs and results come back in block
order, so the outcome is the same whoever ran which block.
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
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from ..progress import Tracker, track

log = logging.getLogger(__name__)

BLOCKS_PER_PROCESS = 16
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
    """This process plus, when worth it, the active engine's workers (``workers - 1`` local
    processes, or a cluster's)."""

    def __init__(
        self, workers: int, data_bytes: int, warm: tuple[Callable[..., Any], tuple[Any, ...]] | None
    ):
        from ..runners.pool import active_engine

        engine = active_engine()
        self.processes = 1
        self.caller_works = True
        self.pool: Executor | None = None
        self._warm: list[Future] = []
        self._ready: bool | None = None
        self._starter: threading.Thread | None = None
        slots = engine.slots(workers)
        if slots < 1 or data_bytes < engine.min_bytes:
            return
        if warm is not None:
            try:
                pickle.dumps(warm)
            except Exception:
                log.info("validation stays serial: the product opener cannot be sent to workers")
                return
        self.caller_works = engine.caller_works
        self.processes = slots + (1 if self.caller_works else 0)
        self.pool = pool = engine.executor(slots)
        if not engine.warm_up:
            self._ready = True
            return
        fn, args = warm if warm is not None else (_ready, ())

        def start() -> None:  # starting a worker blocks until it is forked: never in this thread
            try:
                self._warm = [pool.submit(fn, *args) for _ in range(slots)]
            except Exception as err:  # no pool after all: this process does everything
                log.warning("validation pool did not start: %s", err)

        self._starter = threading.Thread(target=start, name="validation-pool-start", daemon=True)
        self._starter.start()

    def _pool_ready(self, give_up: Callable[[], bool]) -> bool:
        """Wait until every pool process has started (imports done, product open), unless
        ``give_up()`` turns true first (this process has done all the work meanwhile)."""
        while self._ready is None:
            assert self._starter is not None
            if self._starter.is_alive():
                self._starter.join(0.02)
            elif not self._warm:
                self._ready = False
            elif not wait(self._warm, timeout=0.02).not_done:
                try:
                    self._ready = all(f.result() is None for f in self._warm)
                except Exception as err:
                    log.warning("validation pool unusable: %s", err)
                    self._ready = False
            if self._ready is None and give_up():
                return False
        return self._ready

    def map_blocks(
        self, fn: Callable[..., R], shared: Any, blocks: list[Any], label: str = "validate"
    ) -> list[R]:
        """``[fn(shared, block) for block in blocks]``, shared between this process and the pool.

        This process takes blocks from the front; a feeder thread hands blocks from the back
        to the pool, one per pool process at a time, once the pool has started. Each block
        is run exactly once, by whichever side claims it first. Progress is reported as
        ``label``, in items of the blocks (:mod:`padocc_like.progress`)."""
        with track(label, sum(len(b) for b in blocks), "files") as progress:
            return self._map_blocks(fn, shared, blocks, progress)

    def _map_blocks(self, fn: Callable[..., R], shared: Any, blocks: list[Any], progress: Tracker) -> list[R]:
        if self.pool is None or len(blocks) < 2:
            out = []
            for b in blocks:
                out.append(fn(shared, b))
                progress.update(len(b))
            return out
        pool, size = self.pool, self.processes - (1 if self.caller_works else 0)
        lock = threading.Lock()
        ends = [0, len(blocks)]  # next block from the front, one past the next from the back
        results: list[Any] = [None] * len(blocks)
        failed: dict[int, BaseException] = {}
        stop = threading.Event()

        def claim(front: bool) -> int | None:
            with lock:
                if ends[0] >= ends[1] or stop.is_set():
                    return None
                if front:
                    ends[0] += 1
                    return ends[0] - 1
                ends[1] -= 1
                return ends[1]

        def feed() -> None:
            if not self._pool_ready(give_up=lambda: ends[0] >= ends[1]):
                return
            running: dict[Future, int] = {}
            broken = False
            while True:
                while not broken and len(running) < size and (i := claim(front=False)) is not None:
                    try:
                        running[pool.submit(fn, shared, blocks[i])] = i
                    except Exception as err:  # the pool broke: this process runs the block
                        failed[i], broken = BrokenProcessPool(str(err)), True
                if not running:
                    return
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for f in done:
                    i = running.pop(f)
                    try:
                        results[i] = f.result()
                        progress.update(len(blocks[i]))
                    except BaseException as err:  # re-raised in the caller's thread
                        failed[i] = err

        feeder = threading.Thread(target=feed, name="validation-pool-feed", daemon=True)
        feeder.start()
        mine = 0
        try:
            while self.caller_works and (i := claim(front=True)) is not None:
                results[i] = fn(shared, blocks[i])
                progress.update(len(blocks[i]))
                mine += 1
        except BaseException:
            stop.set()  # the pool finishes what it has, takes nothing more
            feeder.join()
            raise
        feeder.join()
        for i in sorted(failed):
            if not isinstance(failed[i], BrokenProcessPool):
                raise failed[i]
            log.warning("validation pool broke; block %d runs in this process", i)  # killed, out of memory
            results[i] = fn(shared, blocks[i])
        log.debug("%d of %d blocks ran in this process", mine, len(blocks))
        return results

    def close(self) -> None:
        if self._starter is not None:
            self._starter.join()
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


def _ready() -> None:
    """A pool process's first task when there is nothing to warm up."""
