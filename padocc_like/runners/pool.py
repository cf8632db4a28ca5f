"""The one place that makes worker processes.

Workers fork from a *forkserver* that has imported the scientific stack once:
forking from it is cheap, and safe (a plain fork of a process that has used
HDF5, netCDF or logging threads can inherit held locks and hang).
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

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
