"""End to end: the ``zarr`` product kind (a rechunked Zarr store copied from the sources).

The demo archive (monthly CF files, packed and unpacked variables, time bounds) goes through
init, scan, compute, validate and catalog with ``product: {kind: zarr}``. The store must open
with xarray's zarr engine to the values of ``xarray.open_mfdataset`` of the sources (decoded
and raw), carry consolidated metadata (v2) or not (v3), use the chunk layout its access
pattern asks for, record that layout and its reasoning in state, and be described by a
``zstore`` STAC asset that opens it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr

from padocc_like import api
from padocc_like.state.store import project_paths

PHASES = ["init", "scan", "compute", "validate", "catalog"]
MF = {
    "combine": "by_coords",
    "data_vars": "minimal",
    "coords": "minimal",
    "compat": "equals",
    "join": "exact",
}


def _group(tmp_path: Path, write_group, zarr: str, kinds: str = "zarr") -> Any:
    path = write_group(f"""
group: z
work_dir: {tmp_path / "work"}
profile: serial
projects:
  - id: p
    sources: {{glob: archive/*.nc}}
    product: {{kind: {kinds}, zarr: {zarr}}}
""")
    return api.open_group(path)


def _state(group: Any) -> dict[str, Any]:
    return json.loads(project_paths(group.work_dir, "p").state.read_text())


def _compare(store: xr.Dataset, ref: xr.Dataset) -> None:
    assert set(store.variables) == set(ref.variables)
    for name in ref.variables:
        a, b = store[name].values, ref[name].values
        assert store[name].dims == ref[name].dims, name
        if a.dtype.kind == "f":
            assert np.array_equal(a, b, equal_nan=True), name
        else:
            assert np.array_equal(a, b), name


@pytest.mark.parametrize(
    ("zarr", "pattern_chunks"),
    [
        ("{}", None),
        ("{pattern: timeseries, target_chunk_mb: 0.05}", "timeseries"),
        ("{format: 3, codec: zlib}", None),
        ("{format: 3, target_chunk_mb: 0.01, shard_mb: 0.1}", "sharded"),
        ("{store: zip}", None),
    ],
    ids=["v2-maps", "v2-timeseries", "v3-zlib", "v3-sharded", "v2-zip"],
)
def test_zarr_project_validates_and_opens_from_its_stac_item(
    tmp_path: Path, archive, write_group, zarr: str, pattern_chunks: str | None
) -> None:
    files = archive(n_files=4)
    group = _group(tmp_path, write_group, zarr)
    outcomes = api.run(group, PHASES)
    assert [o.status for o in outcomes] == ["done"] * len(PHASES), outcomes
    report = api.report(group, "p")
    assert report["verdict"] == "pass" and report["summary"]["values_compared"] > 0, report["findings"]

    product = _state(group)["products"][-1]
    assert product["kind"] == "zarr" and product["status"] == "valid"
    store = Path(product["path"])
    v3, zipped = "format: 3" in zarr, "store: zip" in zarr
    assert product["layout"] == ("zarr3" if v3 else "zarr2") + ("-zip" if zipped else "")
    if zipped:  # one file holding the store, opened through fsspec's zip filesystem
        import zipfile

        assert store.name == "r1.zarr.zip" and store.is_file()
        assert ".zmetadata" in zipfile.ZipFile(store).namelist()
        store = f"zip::{store}"
    else:
        assert (store / ".zmetadata").is_file() != v3
    layout = product["chunk_layout"]
    assert set(layout) >= {"time", "lat", "lon"}
    assert report["product"]["chunk_layout"] == layout  # the report records the layout

    kw = {"decode_times": xr.coders.CFDatetimeCoder(use_cftime=True)}
    with (
        xr.open_dataset(store, engine="zarr", consolidated=not v3, **kw) as ds,
        xr.open_mfdataset(sorted(files), **MF, **kw) as ref,
    ):
        _compare(ds, ref)
        data_vars = [n for n in ref.data_vars if "time" in ref[n].dims and ref[n].ndim == 3]
        assert data_vars
        for name in data_vars:
            chunks = tuple(ds[name].encoding["chunks"])
            assert tuple(layout[name]["chunks"]) == chunks
            assert layout[name]["pattern"] in layout[name]["reason"]
            if pattern_chunks == "sharded":
                shards = tuple(ds[name].encoding["shards"])
                assert tuple(layout[name]["shards"]) == shards and "Shards" in layout[name]["reason"]
                assert all(s % c == 0 for s, c in zip(shards, chunks, strict=True)) and shards != chunks
            if pattern_chunks == "timeseries":
                assert chunks[0] == ref.sizes["time"], chunks  # the whole time axis per chunk
                assert chunks[1:] != ref[name].shape[1:]
            else:
                assert chunks[1:] == ref[name].shape[1:], chunks  # whole maps
                # whole 30-day files per chunk, or a divisor: copied directly, no intermediate
                assert chunks[0] % 30 == 0 or 30 % chunks[0] == 0, chunks
                assert product["copy_plans"][name]["kind"] == "direct"
    with (
        xr.open_dataset(
            store, engine="zarr", consolidated=not v3, mask_and_scale=False, decode_times=False
        ) as raw,
        xr.open_mfdataset(sorted(files), **MF, mask_and_scale=False, decode_times=False) as ref_raw,
    ):
        for name in ref_raw.data_vars:
            assert raw[name].dtype == ref_raw[name].dtype, name  # stored types and packing kept
            assert np.array_equal(raw[name].values, ref_raw[name].values), name

    item = json.loads((project_paths(group.work_dir, "p").catalog / "item.json").read_text())
    asset = item["assets"]["zstore"]
    assert asset["type"] == ("application/zip" if zipped else "application/vnd+zarr")
    assert asset["cloud_format"] == "zarr"
    assert asset["zarr:consolidated"] is (not v3) and asset["zarr:zarr_format"] == (3 if v3 else 2)
    href = asset["href"]
    if not Path(href).is_absolute():
        href = str((project_paths(group.work_dir, "p").catalog / href).resolve())
    if zipped:
        assert (
            asset["type"] == "application/zip" and asset["padocc_like:open_href"] == f"zip::{asset['href']}"
        )
        href = f"zip::{href}"
    with xr.open_dataset(href, **asset["xarray:open_kwargs"]) as ds:
        assert set(ds.data_vars) == set(ref.data_vars)


def test_zarr_alongside_kerchunk_and_a_corrupted_chunk_fails_validation(
    tmp_path: Path, archive, write_group
) -> None:
    """A project asking for Kerchunk and Zarr gets both; a Zarr chunk overwritten with another
    chunk's bytes is reported by validation."""
    archive(n_files=3)
    group = _group(tmp_path, write_group, "{target_chunk_mb: 0.05}", kinds="[kerchunk, zarr]")
    outcomes = api.run(group, ["init", "scan", "compute", "validate"])
    assert [o.status for o in outcomes] == ["done"] * 4, outcomes
    kinds = {p["kind"]: p for p in _state(group)["products"]}
    assert set(kinds) == {"kerchunk", "zarr"}
    store = Path(kinds["zarr"]["path"])
    chunks = sorted(p for p in (store / "tas").iterdir() if not p.name.startswith("."))
    assert len(chunks) > 2
    chunks[1].write_bytes(chunks[2].read_bytes())
    api.run(group, ["validate"], force=True)
    report = api.report(group, "p", kind="zarr")
    assert report["verdict"] == "fail"
    assert any(f["severity"] == "error" and f.get("variable") == "tas" for f in report["findings"])


def test_unknown_zarr_option_is_refused_naming_it(tmp_path: Path, archive, write_group) -> None:
    archive(n_files=2)
    with pytest.raises(Exception, match="chunk_mb"):
        _group(tmp_path, write_group, "{chunk_mb: 4}")
    with pytest.raises(Exception, match="shard_mb needs format: 3"):
        _group(tmp_path, write_group, "{shard_mb: 64}")
