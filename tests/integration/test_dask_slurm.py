"""The Dask runner on SLURM: dask-jobqueue starts the workers as SLURM jobs on the loopback
single-node cluster (``tests/slurmcluster.py``), with the site's ``slurm`` settings, and the
products equal the local runner's byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_dask_runner import PHASES, group_file, products

from padocc_like import api
from padocc_like.stages import files

pytest.importorskip("dask_jobqueue")
pytestmark = pytest.mark.slurm


def test_workers_as_slurm_jobs_give_the_local_runners_products(tmp_path, archive, slurm_cluster, monkeypatch):
    for key, value in slurm_cluster.env().items():  # dask-jobqueue runs sbatch with os.environ
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(files, "BATCH_FILES", 2)
    archive(n_files=6, nlat=18, nlon=36)
    local = api.open_group(group_file(tmp_path, "local"))
    assert all(o.status == "done" for o in api.run(local, PHASES, workers=1))

    site = (
        "  slurm: {partition: debug}\n"
        "  dask: {cluster: slurm, n_workers: 1, cores: 1, memory_mb: 1000, walltime_min: 10,"
        " interface: lo, start_timeout_s: 120}\n"
    )
    group = api.open_group(group_file(tmp_path, "dask", site))
    outs = api.run(group, PHASES, runner="dask")
    assert all(o.status == "done" for o in outs), outs
    mine, theirs = products(group), products(local)
    assert sorted(mine) == sorted(theirs)
    for key in theirs:
        assert mine[key] == theirs[key], key
    # the worker ran as a SLURM job: its log is in the work directory
    logs = sorted(Path(group.work_dir, "dask").glob("padocc-dask-*.err"))
    assert logs, "no SLURM job log of the dask worker"
    assert "Start worker at" in logs[0].read_text()
