"""The one place that decides where per-file work runs: the *engine* contract.

An :class:`Engine` hands out executors (``submit(fn, *args)`` returning
:class:`concurrent.futures.Future`) for the per-file work of a project: scanning files,
validation blocks. Stages never make processes; they ask the active engine
(:func:`active_engine`), which a runner sets for the run (:func:`using_engine`).

* :class:`LocalEngine` (the default): worker processes on this machine, forked from a
  *forkserver* that has imported the scientific stack once (cheap, and safe: a plain fork
  of a process that has used HDF5, netCDF or logging threads can inherit held locks and
  hang). The calling process works too, so pools only pay off past a size.
* :class:`padocc_like.runners.dask.DaskEngine`: the workers of a ``distributed`` cluster.

Every unit of work depends only on its inputs and results are put back in order, so the
products are the same whichever engine ran which unit.
"""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import ClassVar

PRELOAD = [
    "numpy",
    "h5py",
    "numcodecs",
    "padocc_like.scanners.hdf5",
    "padocc_like.scanners.hdf5_native",
    "padocc_like.scanners.netcdf3",
    "padocc_like.stages.files",
    "padocc_like.runners.local",
]

PARALLEL_MIN_FILES = 400
"""Fewest uncached files worth starting local worker processes for: a worker takes ~0.3 s
to start, the time to scan ~250 files here."""

PARALLEL_MIN_BYTES = 256 << 20
"""Least source data (bytes on disk) worth a local validation pool: a worker costs about a
second of one core to start (interpreter, imports, opening the product)."""


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes forked from a preloaded forkserver; each resolves
    source URLs through the calling process's active :class:`~padocc_like.storage.Storage`
    (handed over in memory, through the pool's pipe)."""
    from .. import storage

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=ctx, initializer=storage.activate, initargs=(storage.active(),)
    )


class Engine:
    """Where per-file work runs. Subclasses set the class attributes and :meth:`executor`."""

    name: ClassVar[str]
    caller_works: ClassVar[bool]
    """Whether the calling process takes a share of the work (a local pool: yes; a cluster:
    no, the caller may be a login node)."""
    warm_up: ClassVar[bool]
    """Whether validation sends a warm-up task per worker first (imports, heap settings)."""
    min_files: ClassVar[int]
    """Fewest uncached files a scan hands to the engine."""
    min_bytes: ClassVar[int]
    """Least source data a validation hands to the engine."""
    parallel_projects: ClassVar[bool]
    """Whether a phase over several projects runs them in parallel (one per worker, files
    serial) rather than one after the other with their files in parallel."""

    def slots(self, workers: int) -> int:
        """Units of work the engine runs at once besides the caller, for ``workers`` requested."""
        raise NotImplementedError

    def executor(self, slots: int) -> Executor:
        """An executor for ``slots`` units at once; the caller shuts it down."""
        raise NotImplementedError

    def phase_done(self) -> None:
        """Called after every phase of every project (drop per-phase caches on the workers)."""


class LocalEngine(Engine):
    """Worker processes on this machine (:func:`process_pool`)."""

    name = "local"
    caller_works = True
    warm_up = True
    min_files = PARALLEL_MIN_FILES
    min_bytes = PARALLEL_MIN_BYTES
    parallel_projects = True

    def slots(self, workers: int) -> int:
        return max(0, workers - 1)

    def executor(self, slots: int) -> Executor:
        return process_pool(slots)


_active: list[Engine] = [LocalEngine()]


def active_engine() -> Engine:
    """The engine of the current run (a :class:`LocalEngine` unless a runner set another)."""
    return _active[-1]


@contextlib.contextmanager
def using_engine(engine: Engine) -> Iterator[Engine]:
    """Make ``engine`` the active one for the ``with`` block."""
    _active.append(engine)
    try:
        yield engine
    finally:
        _active.remove(engine)
