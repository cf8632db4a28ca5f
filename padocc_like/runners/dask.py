"""The Dask runner: per-file work of projects on a ``distributed`` cluster.

Phases and their state are run from this process, project after project, exactly as the
local runner runs them; what goes to the cluster is the per-file work (scans of files,
validation blocks), through :class:`DaskEngine`, the :class:`~.pool.Engine` of the run.
The cluster is a ``LocalCluster`` on this machine, a running scheduler, or SLURM jobs
started by dask-jobqueue's ``SLURMCluster`` with the site's ``slurm`` settings. Workers
must see the same paths as this process (a shared file system) or read sources from a
store; they resolve source URLs through the run's :class:`~padocc_like.storage.Storage`
(sent once to every worker, in memory, by a worker plugin).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from .. import storage
from ..config.models import DaskConfig, SlurmConfig
from ..errors import ClusterUnavailableError
from .pool import Engine

log = logging.getLogger(__name__)

PLUGIN_NAME = "padocc-like-storage"


class _Executor(Executor):
    """A ``concurrent.futures`` executor over a Dask client: every task its own (``pure=False``)."""

    def __init__(self, client: Any) -> None:
        self._inner = client.get_executor(pure=False)

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        return self._inner.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if cancel_futures:
            self._inner._client.cancel(list(self._inner._futures))
        self._inner.shutdown(wait=wait)


class DaskEngine(Engine):
    """The workers of a Dask cluster (through ``client``)."""

    name = "dask"
    caller_works = False
    warm_up = False
    min_files = 1
    min_bytes = 0
    parallel_projects = False

    def __init__(self, client: Any) -> None:
        self.client = client

    def slots(self, workers: int) -> int:
        return max(1, sum(self.client.nthreads().values()))

    def executor(self, slots: int) -> Executor:
        return _Executor(self.client)

    def phase_done(self) -> None:
        self.client.run(storage.clear_downloads)


def _storage_plugin(active: storage.Storage) -> Any:
    from distributed import WorkerPlugin

    class ActivateStorage(WorkerPlugin):
        """Make the run's storage the active one in every worker, present and future."""

        def __init__(self, storage_: storage.Storage) -> None:
            self.storage = storage_

        def setup(self, worker: Any) -> None:
            storage.activate(self.storage)

    return ActivateStorage(active)


def _slurm_cluster(cfg: DaskConfig, slurm: SlurmConfig | None, log_dir: Path) -> Any:
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError as err:
        raise ClusterUnavailableError(
            "dask cluster 'slurm' needs dask-jobqueue (pip install 'padocc-like[dask]')"
        ) from err
    slurm = slurm or SlurmConfig()
    directives = list(slurm.extra_directives)
    if slurm.qos:
        directives.append(f"--qos={slurm.qos}")
    log_dir.mkdir(parents=True, exist_ok=True)
    return SLURMCluster(
        queue=slurm.partition,
        account=slurm.account,
        cores=cfg.cores,
        processes=cfg.cores,
        memory=f"{cfg.memory_mb}MB",
        walltime=f"{cfg.walltime_min // 60:02d}:{cfg.walltime_min % 60:02d}:00",
        job_extra_directives=directives,
        job_script_prologue=list(slurm.setup),
        python=slurm.python or sys.executable,
        interface=cfg.interface,
        job_name="padocc-dask",
        log_directory=str(log_dir),
    )


@contextlib.contextmanager
def dask_engine(
    cfg: DaskConfig, workers: int, slurm: SlurmConfig | None = None, work_dir: Path | None = None
) -> Iterator[DaskEngine]:
    """A :class:`DaskEngine` on the cluster ``cfg`` describes, for the ``with`` block (the
    clusters it started are closed after it). ``workers`` sizes a local cluster when
    ``cfg.n_workers`` is unset; ``slurm`` gives the site settings of SLURM worker jobs, whose
    logs go to ``work_dir/dask``."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as err:
        raise ClusterUnavailableError(
            "--runner dask needs dask.distributed (pip install 'padocc-like[dask]')"
        ) from err
    timeout = cfg.start_timeout_s
    with contextlib.ExitStack() as stack:
        try:
            if cfg.cluster == "address":
                client = stack.enter_context(Client(cfg.address, timeout=timeout))
                wanted = 1
            elif cfg.cluster == "local":
                cluster = stack.enter_context(
                    LocalCluster(
                        n_workers=cfg.n_workers or workers,
                        threads_per_worker=cfg.threads_per_worker,
                        processes=True,
                        memory_limit=cfg.memory_limit or "auto",
                        host="127.0.0.1",
                        dashboard_address=None,
                        silence_logs=logging.WARNING,
                    )
                )
                client = stack.enter_context(Client(cluster))
                wanted = cfg.n_workers or workers
            else:
                cluster = stack.enter_context(_slurm_cluster(cfg, slurm, (work_dir or Path()) / "dask"))
                wanted = cfg.n_workers or 1
                cluster.scale(jobs=wanted)
                client = stack.enter_context(Client(cluster))
            client.wait_for_workers(1, timeout=timeout)
        except ClusterUnavailableError:
            raise
        except (OSError, TimeoutError) as err:
            where = cfg.address if cfg.cluster == "address" else f"a {cfg.cluster} cluster"
            raise ClusterUnavailableError(
                f"dask: no worker of {where} within {timeout:g} s ({type(err).__name__}: {err})"
            ) from err
        client.register_plugin(_storage_plugin(storage.active()), name=PLUGIN_NAME)
        engine = DaskEngine(client)
        log.info("dask: %d of %d worker(s) at %s", len(client.nthreads()), wanted, client.scheduler.address)
        yield engine
