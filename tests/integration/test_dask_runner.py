"""The Dask runner (``--runner dask``): per-file work on a real ``distributed`` cluster gives
products and reports identical to the local runner's.

Scans of files and validation blocks go to the cluster's worker processes (checked by
counting the tasks the engine submitted); the kerchunk (JSON and Parquet), CFA and Zarr
products and the validation findings are byte for byte / value for value the same. A
scheduler given by address works from the CLI; one that does not answer fails the run with
``cluster-unavailable``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from padocc_like import api
from padocc_like.cli import main
from padocc_like.config.models import DaskConfig
from padocc_like.errors import ClusterUnavailableError
from padocc_like.runners import dask as dask_runner
from padocc_like.stages import files
from padocc_like.state.store import current_products, load_state, project_paths

distributed = pytest.importorskip("distributed")

PHASES = ["init", "scan", "compute", "validate"]
KINDS = {"p-json": "kerchunk", "p-parquet": "kerchunk", "p-cfa": "cfa", "p-zarr": "zarr"}


def group_file(tmp_path: Path, name: str, dask: str = "") -> Path:
    layout = {"p-parquet": ", layout: parquet"}
    projects = "\n".join(
        f"  - id: {pid}\n    sources: {{glob: {tmp_path / 'archive'}/*.nc}}\n"
        f"    product: {{kind: {kind}{layout.get(pid, '')}}}"
        for pid, kind in KINDS.items()
    )
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"group: g\nwork_dir: {tmp_path / name}\npipeline: kerchunk-no-catalog\n"
        f"profile:\n  name: site\n  workers: 2\n{dask}projects:\n{projects}\n"
    )
    return path


def products(group: Any) -> dict[str, dict[str, bytes]]:
    """Every file of every product, by project and path inside the product."""
    out: dict[str, dict[str, bytes]] = {}
    for pid in KINDS:
        state = load_state(project_paths(group.work_dir, pid))
        for product in current_products(state):
            root = Path(product["path"])
            found = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
            out[f"{pid}/{product['kind']}"] = {
                str(p.relative_to(root.parent)): p.read_bytes().replace(str(group.work_dir).encode(), b"W")
                for p in found
            }
    return out


def findings(group: Any) -> dict[str, Any]:
    out = {}
    for pid in KINDS:
        rep = api.report(group, pid)
        out[pid] = {k: rep[k] for k in ("verdict", "mode", "findings")} | {
            "values_compared": rep["summary"].get("values_compared")
        }
    return out


@pytest.fixture
def submitted(monkeypatch):
    """Count the tasks the Dask engine submits; batches of 2 files so that 6 files make 3."""
    count = {"tasks": 0}
    real = dask_runner._Executor.submit

    def counting(self, fn, /, *args, **kwargs):
        count["tasks"] += 1
        return real(self, fn, *args, **kwargs)

    monkeypatch.setattr(dask_runner._Executor, "submit", counting)
    monkeypatch.setattr(files, "BATCH_FILES", 2)
    return count


@pytest.fixture
def local_run(tmp_path, archive):
    archive(n_files=6, nlat=18, nlon=36)
    group = api.open_group(group_file(tmp_path, "local"))
    outs = api.run(group, PHASES, workers=1)
    assert all(o.status == "done" for o in outs), outs
    return group


def test_local_cluster_gives_the_local_runners_products(tmp_path, local_run, submitted):
    group = api.open_group(group_file(tmp_path, "dask", "  dask: {n_workers: 2}\n"))
    outs = api.run(group, PHASES, runner="dask")
    assert all(o.status == "done" for o in outs), outs
    # 4 projects x 3 scan batches, plus validation blocks: the work went to the cluster
    assert submitted["tasks"] >= 4 * 3 + 4, submitted
    mine, theirs = products(group), products(local_run)
    assert (
        sorted(mine)
        == sorted(theirs)
        == sorted(["p-json/kerchunk", "p-parquet/kerchunk", "p-cfa/cfa", "p-zarr/zarr"])
    )
    for key in theirs:
        assert mine[key] == theirs[key], key
    assert findings(group) == findings(local_run)
    assert all(f["verdict"] == "pass" for f in findings(group).values())


def test_scheduler_address_from_the_cli(tmp_path, local_run, submitted, capsys):
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None, processes=True
    ) as cluster:
        path = group_file(tmp_path, "addr")
        rc = main(["run", str(path), "--phases", ",".join(PHASES), "--runner", "dask",
                   "--dask-address", cluster.scheduler_address])  # fmt: skip
        assert rc == 0, capsys.readouterr()
    group = api.open_group(path)
    assert submitted["tasks"] > 0
    mine, theirs = products(group), products(local_run)
    for key in theirs:
        assert mine[key] == theirs[key], key


def test_a_scheduler_that_does_not_answer_is_a_clear_error(tmp_path, archive, capsys):
    archive(n_files=2)
    group = api.open_group(group_file(tmp_path, "down", "  dask: {start_timeout_s: 2}\n"))
    cfg = DaskConfig(cluster="address", address="tcp://127.0.0.1:9", start_timeout_s=2)
    with pytest.raises(ClusterUnavailableError, match=r"tcp://127.0.0.1:9 within 2 s"):
        api.run(group, PHASES, runner="dask", dask=cfg)
    rc = main(["run", str(group.path), "--runner", "dask", "--dask-address", "tcp://127.0.0.1:9"])
    assert rc == 1
    assert "cluster-unavailable" in capsys.readouterr().err


def test_dask_settings_are_checked():
    with pytest.raises(ValueError, match="needs 'address'"):
        DaskConfig(cluster="address")
    with pytest.raises(ValueError, match="only used with cluster 'address'"):
        DaskConfig(address="tcp://x:1")
    with pytest.raises(ValueError, match="n_worker"):
        DaskConfig(n_worker=2)
    json.dumps(DaskConfig().model_dump())
