"""End to end: the ``cfa`` product kind (CF-1.13 aggregation files) on generated archives.

Monthly netCDF-4 files of daily data that Kerchunk cannot represent exactly, either because the
months are uneven (31, 28, 31, ... days chunked by 7) or because the files are chunked
differently. A ``kerchunk`` project fails scan saying so and recommending ``cfa``; a ``cfa``
project passes every phase up to validation, and the product opens with cfapyx
(``engine="CFA"``), cf-python and our own ``padocc_cfa`` engine, from another working
directory, with the values of ``xarray.open_mfdataset`` of the sources.

cfapyx and cf-python are interoperability checks: tests needing them skip when they are not
installed, except in CI (``CI`` set), where they must be.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import cftime
import netCDF4
import numpy as np
import pytest
import xarray as xr

from padocc_like import api
from padocc_like.state.store import project_paths

PHASES = ["init", "scan", "compute", "validate"]
LAT = np.array([-60.0, -20.0, 20.0, 60.0])
LON = np.array([0.0, 72.0, 144.0, 216.0, 288.0])
FILL = np.float32(1e20)


def need(module: str) -> ModuleType:
    """Import an optional reader; skip without it, except in CI, where it must be installed."""
    try:
        return importlib.import_module(module)
    except (ImportError, OSError) as err:  # cf-python raises OSError without libudunits2
        if os.environ.get("CI"):
            raise
        pytest.skip(f"{module} is not installed ({err}): pip install cfapyx cf-python")


def write_month(
    path: Path, year: int, month: int, calendar: str, chunk_time: int | None, units: str, packed: bool = False
) -> None:
    """One month of daily CF data: tas (with a few masked points; ``packed``: int16 with a
    float32 scale_factor and add_offset), time with bounds, lat and lon coordinates, a static
    orography, and a per-file tracking_id."""
    first = cftime.datetime(year, month, 1, calendar=calendar)
    nxt = cftime.datetime(year + month // 12, month % 12 + 1, 1, calendar=calendar)
    t0, t1 = cftime.date2num([first, nxt], units, calendar)
    days = np.arange(t0, t1, dtype="f8")
    with netCDF4.Dataset(path, "w") as ds:
        ds.Conventions = "CF-1.8"
        ds.title = "Synthetic daily near-surface air temperature"
        ds.tracking_id = f"id-{year}-{month:02d}"
        ds.createDimension("time", None)
        ds.createDimension("lat", len(LAT))
        ds.createDimension("lon", len(LON))
        ds.createDimension("bnds", 2)
        t = ds.createVariable("time", "f8", ("time",))
        t.standard_name, t.units, t.calendar, t.bounds, t.axis = "time", units, calendar, "time_bnds", "T"
        t[:] = days + 0.5
        tb = ds.createVariable("time_bnds", "f8", ("time", "bnds"))
        tb[:] = np.stack([days, days + 1], axis=1)
        la = ds.createVariable("lat", "f8", ("lat",))
        la.standard_name, la.units = "latitude", "degrees_north"
        la[:] = LAT
        lo = ds.createVariable("lon", "f8", ("lon",))
        lo.standard_name, lo.units = "longitude", "degrees_east"
        lo[:] = LON
        orog = ds.createVariable("orog", "f4", ("lat", "lon"))
        orog.standard_name, orog.units = "surface_altitude", "m"
        orog[:] = np.abs(LAT[:, None]) * 10 + LON[None, :]
        chunks = (chunk_time or len(days), len(LAT), len(LON))
        dtype, fill = ("i2", np.int16(-32767)) if packed else ("f4", FILL)
        tas = ds.createVariable(
            "tas", dtype, ("time", "lat", "lon"), zlib=True, shuffle=True, chunksizes=chunks, fill_value=fill
        )
        tas.standard_name, tas.units, tas.cell_methods = "air_temperature", "K", "time: mean"
        tas.coordinates = "orog"
        if packed:
            tas.scale_factor, tas.add_offset = np.float32(0.01), np.float32(250)
        values = 250 + days[:, None, None] / 10 + LAT[None, :, None] / 100 + LON[None, None, :] / 1000
        values = np.ma.masked_array(values, mask=np.zeros(values.shape, dtype=bool))
        values[::5, 0, 0] = np.ma.masked  # some missing values
        tas[:] = values if packed else values.astype("f4")


def monthly_files(root: Path, n_months: int, calendar: str, chunk_time: Callable[[int], int]) -> list[Path]:
    """Months 1..n of 2001 in ``root``, month ``m`` chunked by ``chunk_time(m)`` days."""
    root.mkdir(parents=True)
    paths = [root / f"tas_day_2001{m:02d}.nc" for m in range(1, n_months + 1)]
    for m, path in enumerate(paths, start=1):
        write_month(path, 2001, m, calendar, chunk_time(m), "days since 2001-01-01")
    return paths


def uneven_months(root: Path) -> list[Path]:
    """Jan-Jun 2001 (31, 28, 31, 30, 31, 30 days), chunked by 7 days: no regular chunk grid."""
    return monthly_files(root, 6, "standard", lambda m: 7)


def differing_chunks(root: Path) -> list[Path]:
    """Five 30-day months (360_day calendar), chunked by 10 or 15 days in turn."""
    return monthly_files(root, 5, "360_day", lambda m: 10 if m % 2 else 15)


ARCHIVES = {"uneven-months": uneven_months, "differing-chunks": differing_chunks}


def group_file(tmp_path: Path, sources: Path, product: dict[str, Any]) -> Path:
    body = {
        "group": "cfa",
        "work_dir": str(tmp_path / "work"),
        "pipeline": "kerchunk",
        "profile": "serial",
        "projects": [{"id": "p1", "sources": {"glob": str(sources / "*.nc")}, "product": product}],
    }
    path = tmp_path / f"group-{product['kind']}.yaml"
    path.write_text(json.dumps(body))  # JSON is YAML
    return path


def run(path: Path) -> tuple[Any, list[Any]]:
    group = api.open_group(path)
    return group, api.run(group, PHASES)


def describe(outcomes: list[Any]) -> str:
    return "\n".join(f"{o.phase}: {o.status} [{o.error_kind}] {o.message}" for o in outcomes)


def sources_dataset(paths: list[Path]) -> xr.Dataset:
    return xr.open_mfdataset(
        [str(p) for p in paths],
        combine="by_coords",
        data_vars="minimal",
        coords="minimal",
        compat="equals",
        join="exact",
        decode_times=xr.coders.CFDatetimeCoder(use_cftime=True),
        parallel=False,
    )


def assert_same_values(product: xr.Dataset, reference: xr.Dataset, names: list[str]) -> None:
    for name in names:
        a, b = np.asarray(product[name].values), np.asarray(reference[name].values)
        assert product[name].dims == reference[name].dims, name
        assert a.shape == b.shape and a.dtype == b.dtype, (name, a.dtype, b.dtype)
        if a.dtype.kind == "f":
            assert np.array_equal(a, b, equal_nan=True), name
        else:
            assert bool(np.all(a == b)), name


@pytest.mark.parametrize("case", sorted(ARCHIVES))
def test_kerchunk_project_fails_scan_and_recommends_cfa(tmp_path: Path, case: str) -> None:
    ARCHIVES[case](tmp_path / "archive")
    group, outcomes = run(group_file(tmp_path, tmp_path / "archive", {"kind": "kerchunk"}))
    assert [(o.phase, o.status) for o in outcomes] == [("init", "done"), ("scan", "failed")], describe(
        outcomes
    )
    failed = outcomes[-1]
    assert failed.error_kind == "not-representable"
    assert "'tas'" in failed.message
    assert ("whole number of chunks" if case == "uneven-months" else "differ in chunking") in failed.message
    assert "product: {kind: cfa}" in failed.message
    report = json.loads(project_paths(group.work_dir, "p1").scan.read_text())
    assert report["representable"] is False and report["error_kind"] == "not-representable"
    assert report["recommended_kind"] == "cfa"
    assert "product: {kind: cfa}" not in report["reason"] and "'tas'" in report["reason"]


@pytest.mark.parametrize("case", sorted(ARCHIVES))
def test_cfa_project_passes_and_opens_everywhere(
    tmp_path: Path, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = ARCHIVES[case](tmp_path / "archive")
    group, outcomes = run(group_file(tmp_path, tmp_path / "archive", {"kind": "cfa"}))
    assert [(o.phase, o.status) for o in outcomes] == [(p, "done") for p in PHASES], describe(outcomes)
    report = api.report(group, "p1")
    assert report["verdict"] == "pass", report["findings"]
    assert report["summary"]["files"] == len(paths) and report["summary"]["values_compared"] > 0
    messages = [f["message"] for f in report["findings"]]
    assert any("fragment maps" in m for m in messages), messages
    scan = json.loads(project_paths(group.work_dir, "p1").scan.read_text())
    assert scan["representable"] is True and scan["product_kind"] == "cfa"
    assert "recommended_kind" not in scan and scan["estimates"]["n_refs"] == len(paths)
    row = api.status(group)[0]
    product = Path(row["product"]["path"])
    assert product.name == "r1.nc" and product.parent.name == "cfa" and row["product"]["status"] == "valid"

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # absolute URIs: every reader finds the fragments from anywhere
    names = ["tas", "time", "time_bnds", "lat", "lon", "orog"]
    coder = xr.coders.CFDatetimeCoder(use_cftime=True)
    with sources_dataset(paths) as ref:
        with xr.open_dataset(product, engine="padocc_cfa", decode_times=coder) as ours:
            assert ours.attrs["Conventions"] == "CF-1.13"
            assert_same_values(ours, ref, names)
        need("cfapyx")
        with xr.open_dataset(product, engine="CFA", decode_times=coder) as theirs:
            assert_same_values(theirs, ref, names)
        cf = need("cf")
        fields = cf.read(str(product))
        tas = next(f for f in fields if f.standard_name == "air_temperature")
        np.testing.assert_array_equal(np.ma.filled(tas.array, np.nan), ref["tas"].values)
        assert tas.array.mask.sum() == int(np.isnan(ref["tas"].values).sum()) > 0


def test_relative_uris_validate_from_the_product_directory(tmp_path: Path) -> None:
    """``cfa_uris: relative`` writes paths relative to the product, which our reader (and so
    validation) resolves against the product's directory, not the working directory."""
    paths = uneven_months(tmp_path / "archive")
    group, outcomes = run(group_file(tmp_path, tmp_path / "archive", {"kind": "cfa", "cfa_uris": "relative"}))
    assert [o.status for o in outcomes] == ["done"] * 4, describe(outcomes)
    product = Path(api.status(group)[0]["product"]["path"])
    with netCDF4.Dataset(product) as nc:
        uris = nc["fragment_uris_0"][...].reshape(-1).tolist()
    assert uris == [os.path.relpath(p, product.parent) for p in paths]
    assert api.report(group, "p1")["verdict"] == "pass"
    state = json.loads(project_paths(group.work_dir, "p1").state.read_text())
    assert state["products"][-1]["cfa_uris"] == "relative"  # the catalog picks its reader by it


def test_constant_fragments_validate_as_unique_values(tmp_path: Path) -> None:
    """``cfa_unique_values: true``: a per-file constant (here a member number, missing in one
    file) is written as ``unique_values`` and validates against the sources like the rest."""
    paths = uneven_months(tmp_path / "archive")
    for k, path in enumerate(paths):
        with netCDF4.Dataset(path, "a") as nc:
            member = nc.createVariable("member", "i4", ("time",), fill_value=-1)
            member[:] = np.full(len(nc.dimensions["time"]), -1 if k == 1 else k + 10, dtype="i4")
    product = {"kind": "cfa", "cfa_unique_values": True}
    group, outcomes = run(group_file(tmp_path, tmp_path / "archive", product))
    assert [o.status for o in outcomes] == ["done"] * 4, describe(outcomes)
    assert api.report(group, "p1")["verdict"] == "pass"
    with netCDF4.Dataset(api.status(group)[0]["product"]["path"]) as nc:
        assert "unique_values:" in nc["member"].getncattr("aggregated_data")
        assert "uris:" in nc["tas"].getncattr("aggregated_data")


def test_validation_catches_fragments_out_of_place(tmp_path: Path) -> None:
    """Swapping the URIs of two months of equal length (April and June) keeps every extent
    right: validation must still see that the map puts them where their times are not."""
    paths = uneven_months(tmp_path / "archive")
    group, outcomes = run(group_file(tmp_path, tmp_path / "archive", {"kind": "cfa"}))
    assert outcomes[-1].status == "done", describe(outcomes)
    product = Path(api.status(group)[0]["product"]["path"])
    with netCDF4.Dataset(product, "a") as nc:
        uris = nc["fragment_uris_0"][...]
        uris[[3, 5]] = uris[[5, 3]]
        nc["fragment_uris_0"][...] = uris
    outcome = api.run(group, ["validate"], force=True)[-1]
    assert outcome.status == "failed" and outcome.error_kind == "validation-failed", outcome.message
    errors = [f for f in api.report(group, "p1")["findings"] if f["severity"] == "error"]
    placed = [f for f in errors if f["check"] == "coverage"]
    assert {f["file"] for f in placed} == {str(paths[3]), str(paths[5])}
    assert all("places the file at" in f["message"] for f in placed), placed
    assert any(f["check"] == "values" and f["variable"] == "tas" for f in errors), errors


def test_packed_sources_are_aggregated_unpacked(tmp_path: Path) -> None:
    """int16 sources packed with float32 scale_factor/add_offset: the aggregation variable is
    float32 without packing attributes, its fragments are unpacked on reading, and validation
    compares decoded values (there are no raw values to compare)."""
    root = tmp_path / "archive"
    root.mkdir()
    paths = [root / f"tas_day_2001{m:02d}.nc" for m in (1, 2, 3)]
    for m, path in enumerate(paths, start=1):
        write_month(path, 2001, m, "standard", 7, "days since 2001-01-01", packed=True)
    group, outcomes = run(group_file(tmp_path, root, {"kind": "cfa"}))
    assert [o.status for o in outcomes] == ["done"] * 4, describe(outcomes)
    report = api.report(group, "p1")
    assert report["verdict"] == "pass", report["findings"]
    allowed = [f["message"] for f in report["findings"] if f["severity"] == "allowed"]
    assert any("holds the packed values unpacked" in m for m in allowed), allowed
    product = Path(api.status(group)[0]["product"]["path"])
    with netCDF4.Dataset(product) as nc:
        assert nc["tas"].dtype == np.float32 and "scale_factor" not in nc["tas"].ncattrs()
    coder = xr.coders.CFDatetimeCoder(use_cftime=True)
    with (
        sources_dataset(paths) as ref,
        xr.open_dataset(product, engine="padocc_cfa", decode_times=coder) as ours,
    ):
        assert_same_values(ours, ref, ["tas", "time", "time_bnds"])
        assert int(np.isnan(ours["tas"].values).sum()) > 0
