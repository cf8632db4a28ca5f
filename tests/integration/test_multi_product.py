"""End to end: one project asking for two product kinds (``kind: [kerchunk, cfa]``).

Even months (a 360-day calendar, chunked by 10 days) through every phase give a Kerchunk and a
CFA product, both validated, both in one STAC item, both opening to the values of
``xarray.open_mfdataset``. Uneven months (which Kerchunk cannot represent) fail scan naming
``kerchunk`` when both kinds are asked for, and pass with ``kind: [cfa]``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import netCDF4
import pytest
import xarray as xr
from test_cfa_product import assert_same_values, describe, monthly_files, sources_dataset, uneven_months

from padocc_like import api
from padocc_like.errors import StateError
from padocc_like.state.store import current_product, current_products, load_state, project_paths

PHASES = ["init", "scan", "compute", "validate", "catalog"]
NAMES = ["tas", "time", "time_bnds", "lat", "lon", "orog"]


def even_months(root: Path) -> list[Path]:
    """Four 30-day months (360_day calendar) chunked by 10 days: a regular chunk grid."""
    return monthly_files(root, 4, "360_day", lambda m: 10)


def group_file(tmp_path: Path, sources: Path, kind: Any) -> Path:
    body = {
        "group": "multi",
        "work_dir": str(tmp_path / "work"),
        "pipeline": "kerchunk",
        "profile": "serial",
        "projects": [{"id": "p1", "sources": {"glob": str(sources / "*.nc")}, "product": {"kind": kind}}],
    }
    path = tmp_path / "group.yaml"
    path.write_text(json.dumps(body))  # JSON is YAML
    return path


def test_both_products_through_every_phase(tmp_path: Path) -> None:
    paths = even_months(tmp_path / "archive")
    group = api.open_group(group_file(tmp_path, tmp_path / "archive", ["kerchunk", "cfa"]))
    outcomes = api.run(group, PHASES)
    assert [(o.phase, o.status) for o in outcomes] == [(p, "done") for p in PHASES], describe(outcomes)
    pp = project_paths(group.work_dir, "p1")

    scan = json.loads(pp.scan.read_text())
    assert scan["product_kind"] == "kerchunk" and scan["product_kinds"] == ["kerchunk", "cfa"]
    assert scan["representable"] is True
    assert {k: v["representable"] for k, v in scan["products"].items()} == {"kerchunk": True, "cfa": True}
    assert scan["products"]["cfa"]["estimates"]["n_refs"] == len(paths)

    state = load_state(pp)
    assert state is not None and state["version"] == 2
    products = current_products(state)
    assert [p["kind"] for p in products] == ["kerchunk", "cfa"]
    assert state["current_products"] == [{"kind": "kerchunk", "revision": 1}, {"kind": "cfa", "revision": 2}]
    assert current_product(state) is products[0] and state["current_product"] == 1
    assert all(p["status"] == "valid" and Path(p["path"]).exists() for p in products)
    assert Path(products[0]["path"]).name == "r1.json" and Path(products[1]["path"]).name == "r2.nc"
    for p in products:
        report = json.loads((pp.root / p["validation_report"]).read_text())
        assert report["verdict"] == "pass" and report["product"]["kind"] == p["kind"]
    assert products[0]["validation_report"] != products[1]["validation_report"]

    item = json.loads((pp.catalog / "item.json").read_text())
    assert {"reference_file", "reference_file_2", "validation_report", "validation_report_cfa"} <= set(
        item["assets"]
    )
    assert item["assets"]["reference_file"]["cloud_format"] == "kerchunk"
    assert item["assets"]["reference_file_2"]["cloud_format"] == "CFA"
    assert all("-" not in key for key in item["assets"])
    assert item["properties"]["padocc_like:revisions"] == {"kerchunk": 1, "cfa": 2}

    row = api.status(group)[0]
    assert row["state"] == "done" and row["product"]["revision"] == 1
    assert {k: (v["revision"], v["status"]) for k, v in row["products"].items()} == {
        "kerchunk": (1, "valid"),
        "cfa": (2, "valid"),
    }
    from padocc_like.cli import render_status

    assert "kerchunk:r1:valid,cfa:r2:valid" in render_status("multi", [row])
    # each kind's report on request, the first kind's by default
    assert api.report(group, "p1")["product"]["kind"] == "kerchunk"
    assert api.report(group, "p1", "cfa")["product"]["kind"] == "cfa"
    with pytest.raises(StateError, match="no current 'zarr' product"):
        api.report(group, "p1", "zarr")

    coder = xr.coders.CFDatetimeCoder(use_cftime=True)
    with sources_dataset(paths) as ref:
        kerchunk = xr.open_dataset(products[0]["path"], engine="kerchunk", decode_times=coder)
        cfa = xr.open_dataset(products[1]["path"], engine="padocc_cfa", decode_times=coder)
        with kerchunk, cfa:
            assert_same_values(kerchunk, ref, NAMES)
            assert_same_values(cfa, ref, NAMES)

    again = api.run(group, PHASES)  # every phase is up to date: nothing recomputed
    assert all(o.status == "done" for o in again), describe(again)
    assert [p["revision"] for p in current_products(load_state(pp))] == [1, 2]


@pytest.mark.parametrize(("kind", "passes"), [(["kerchunk", "cfa"], False), (["cfa"], True)])
def test_uneven_files_fail_scan_only_for_kerchunk(tmp_path: Path, kind: list[str], passes: bool) -> None:
    uneven_months(tmp_path / "archive")
    group = api.open_group(group_file(tmp_path, tmp_path / "archive", kind))
    outcomes = api.run(group, ["init", "scan"])
    scan = json.loads(project_paths(group.work_dir, "p1").scan.read_text())
    assert scan["products"]["cfa"]["representable"] is True
    if passes:
        assert [o.status for o in outcomes] == ["done", "done"], describe(outcomes)
        return
    assert [o.status for o in outcomes] == ["done", "failed"], describe(outcomes)
    failed = outcomes[-1]
    assert failed.error_kind == "not-representable"
    assert "product kind 'kerchunk' cannot be produced" in failed.message
    assert "whole number of chunks" in failed.message
    assert scan["representable"] is False and scan["products"]["kerchunk"]["representable"] is False


def test_each_product_is_validated_on_its_own(tmp_path: Path) -> None:
    """A wrong cfa product fails validate naming it; the kerchunk product stays valid, and
    catalog refuses the project."""
    even_months(tmp_path / "archive")
    group = api.open_group(group_file(tmp_path, tmp_path / "archive", ["kerchunk", "cfa"]))
    outcomes = api.run(group, ["init", "scan", "compute"])
    assert all(o.status == "done" for o in outcomes), describe(outcomes)
    pp = project_paths(group.work_dir, "p1")
    cfa = current_products(load_state(pp))[1]
    with netCDF4.Dataset(cfa["path"], "a") as nc:  # two months swapped: values out of place
        uris = nc["fragment_uris_0"][...]
        uris[[0, 1]] = uris[[1, 0]]
        nc["fragment_uris_0"][...] = uris
    failed = api.run(group, ["validate"])[-1]
    assert failed.status == "failed" and failed.error_kind == "validation-failed"
    assert (
        failed.message.startswith("cfa product r2 differs from its sources")
        and "kerchunk" not in failed.message
    )
    assert [p["status"] for p in current_products(load_state(pp))] == ["valid", "invalid"]
    assert api.run(group, ["catalog"])[-1].status == "failed"
    assert not (pp.catalog / "item.json").exists()
