"""STAC Items/Collections for products, and their offline validation (padocc_like.catalog.stac)."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import shutil
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest

xr = pytest.importorskip("xarray")
cftime = pytest.importorskip("cftime")
pytest.importorskip("pystac")
pytest.importorskip("jsonschema")

from padocc_like.catalog import build_collection, build_item, summarise_dataset, validate_stac  # noqa: E402
from padocc_like.catalog.stac import time_to_iso  # noqa: E402
from padocc_like.errors import CatalogError  # noqa: E402

SCHEMAS = Path("/work/shared/stac-schemas")
SOFTWARE = {"padocc-like": "0.1.0", "kerchunk": "0.2.10"}
SHA = "ab" * 32


@pytest.fixture
def schemas() -> Path:
    if not (SCHEMAS / "datacube").is_dir():
        pytest.skip(f"vendored STAC extension schemas not found at {SCHEMAS}")
    return SCHEMAS


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any socket connection fails the test: validation must be offline."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def d360(*args: int) -> Any:
    return cftime.Datetime360Day(*args)


def cf_dataset(
    lat: np.ndarray | None = None,
    lon: np.ndarray | None = None,
    *,
    with_time: bool = True,
) -> Any:
    """A small CF dataset: 360_day monthly time with bounds, lat/lon (0..360), tas in K."""
    lat = np.linspace(-87.5, 87.5, 36) if lat is None else lat
    lon = np.arange(0.0, 360.0, 5.0) if lon is None else lon
    coords: dict[str, Any] = {
        "lat": ("lat", lat, {"standard_name": "latitude", "units": "degrees_north"}),
        "lon": ("lon", lon, {"standard_name": "longitude", "units": "degrees_east"}),
    }
    dims: tuple[str, ...] = ("lat", "lon")
    data_vars: dict[str, Any] = {}
    if with_time:
        times = [d360(2000, 1, 16), d360(2000, 2, 16)]
        bounds = np.array([[d360(2000, 1, 1), d360(2000, 2, 1)], [d360(2000, 2, 1), d360(2000, 2, 30)]])
        coords["time"] = ("time", times, {"standard_name": "time", "bounds": "time_bnds"})
        data_vars["time_bnds"] = (("time", "bnds"), bounds)
        dims = ("time", *dims)
    shape = tuple(len(coords[d][1]) for d in dims)
    data = np.arange(np.prod(shape), dtype="f4").reshape(shape)
    data_vars["tas"] = (dims, data, {"units": "K", "long_name": "Near-surface air temperature"})
    return xr.Dataset(data_vars, coords=coords, attrs={"Conventions": "CF-1.8"})


def product(**over: Any) -> dict[str, Any]:
    rec = {
        "kind": "kerchunk",
        "revision": 2,
        "layout": "json",
        "size": 1234,
        "sha256": SHA,
        "media_type": "application/json",
        "n_refs": 7,
        "n_files": 3,
    }
    rec.update(over)
    return rec


def make_item(summary: dict[str, Any], **over: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "project_id": "cmip6.tas.r1",
        "collection_id": "demo-group",
        "summary": summary,
        "product": product(),
        "report_href": "/work/demo/cmip6.tas.r1/reports/validate.json",
        "product_href": "/work/demo/cmip6.tas.r1/products/r2.json",
        "properties": {"project": "CMIP6", "experiment": "historical"},
        "software": SOFTWARE,
        "title": "tas",
        "description": "Aggregated tas",
    }
    kwargs.update(over)
    return build_item(**kwargs)


# --- summarise_dataset -------------------------------------------------------------------
def test_summary_of_cf_dataset_with_360_day_calendar() -> None:
    s = summarise_dataset(cf_dataset())
    json.dumps(s, allow_nan=False)  # JSON-safe
    assert s["bbox"] == [-180.0, -90.0, 180.0, 90.0]
    assert s["geometry"]["type"] == "Polygon"
    assert s["geometry"]["coordinates"][0][0] == s["geometry"]["coordinates"][0][-1]
    # from the time bounds; 360_day 2000-02-30 is clamped to a real date
    assert s["start_datetime"] == "2000-01-01T00:00:00Z"
    assert s["end_datetime"] == "2000-02-29T00:00:00Z"
    assert s["variables"] == ["tas"]  # time_bnds is a CF bounds variable, not data
    assert s["units"] == {"tas": "K"}
    dims = s["cube_dimensions"]
    assert dims["time"] == {
        "type": "temporal",
        "extent": ["2000-01-16T00:00:00Z", "2000-02-16T00:00:00Z"],
        "description": "time",
    }
    assert "axis" not in dims["time"]
    assert dims["lon"]["type"] == "spatial" and dims["lon"]["axis"] == "x"
    assert dims["lon"]["extent"] == [0.0, 355.0] and dims["lon"]["step"] == 5.0
    assert dims["lat"]["axis"] == "y"
    assert dims["bnds"]["type"] == "other"
    tas = s["cube_variables"]["tas"]
    assert tas["type"] == "data" and tas["unit"] == "K" and tas["dimensions"] == ["time", "lat", "lon"]
    assert s["cube_variables"]["time_bnds"]["type"] == "auxiliary"


def test_global_0_360_grid_gives_global_box() -> None:
    # 1.25 degree global grid 0..358.75: the cells cover 360 degrees
    ds = cf_dataset(lat=np.linspace(-89.375, 89.375, 144), lon=np.arange(0.0, 360.0, 1.25))
    assert summarise_dataset(ds)["bbox"] == [-180.0, -90.0, 180.0, 90.0]


def test_regional_grid_gives_its_box_in_minus_180_180() -> None:
    # 0..360 longitudes east of the antimeridian: 190..200 becomes -170..-160 (cells +- 0.5)
    ds = cf_dataset(lat=np.arange(10.0, 21.0), lon=np.arange(190.0, 201.0))
    s = summarise_dataset(ds)
    assert s["bbox"] == [-170.5, 9.5, -159.5, 20.5]
    assert s["bbox_source"] == "coordinates"
    assert s["geometry"]["coordinates"][0] == [
        [-170.5, 9.5],
        [-159.5, 9.5],
        [-159.5, 20.5],
        [-170.5, 20.5],
        [-170.5, 9.5],
    ]


def test_regional_grid_with_bounds_uses_the_bounds() -> None:
    ds = cf_dataset(lat=np.array([51.0, 52.0]), lon=np.array([-1.0, 0.0, 1.0]))
    ds["lat"].attrs["bounds"] = "lat_bnds"
    ds["lon"].attrs["bounds"] = "lon_bnds"
    ds["lat_bnds"] = (("lat", "bnds"), np.array([[50.6, 51.4], [51.6, 52.4]]))
    ds["lon_bnds"] = (("lon", "bnds"), np.array([[-1.3, -0.7], [-0.3, 0.3], [0.7, 1.3]]))
    s = summarise_dataset(ds)
    assert s["bbox"] == [-1.3, 50.6, 1.3, 52.4]
    assert s["variables"] == ["tas"]  # the bounds are not data variables


def test_grid_crossing_the_antimeridian_gets_full_longitude_range() -> None:
    ds = cf_dataset(lat=np.arange(-10.0, 11.0), lon=np.arange(170.0, 191.0))
    assert summarise_dataset(ds)["bbox"] == [-180.0, -10.5, 180.0, 10.5]


def test_curvilinear_2d_lat_lon() -> None:
    ny, nx = 4, 5
    j, i = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    lat2d = 40.0 + 2.0 * j + 0.5 * i
    lon2d = 350.0 + 3.0 * i - 0.5 * j  # 0..360 convention, crossing 0 degrees
    lon2d = lon2d % 360.0
    ds = xr.Dataset(
        {"sst": (("y", "x"), np.ones((ny, nx), "f4"), {"units": "degC"})},
        coords={
            "nav_lat": (("y", "x"), lat2d, {"units": "degrees_north"}),
            "nav_lon": (("y", "x"), lon2d, {"units": "degrees_east"}),
        },
    )
    s = summarise_dataset(ds)
    w, south, e, n = s["bbox"]
    assert (south, n) == (40.0, 40.0 + 2.0 * 3 + 0.5 * 4)
    assert (w, e) == (-11.5, 2.0)
    assert s["cube_dimensions"]["x"]["type"] == "other"
    assert s["cube_variables"]["nav_lat"]["type"] == "auxiliary"
    assert s["variables"] == ["sst"]


def test_no_lat_lon_falls_back_to_global_and_flags_it(schemas: Path) -> None:
    ds = xr.Dataset({"x": (("n",), np.arange(3.0), {"units": "m"})})
    s = summarise_dataset(ds)
    assert s["bbox"] == [-180.0, -90.0, 180.0, 90.0]
    assert s["bbox_source"] == "unknown"
    assert s["start_datetime"] is None and s["end_datetime"] is None
    item = make_item(s)
    assert item["properties"]["padocc_like:bbox_source"] == "unknown"
    # no time: datetime is the creation time, no start/end
    assert item["properties"]["datetime"] == item["properties"]["created"]
    assert "start_datetime" not in item["properties"]
    validate_stac(item, schemas)
    validate_stac(item)


def test_time_to_iso_clamps_non_gregorian_dates() -> None:
    assert time_to_iso(d360(2000, 2, 30)) == "2000-02-29T00:00:00Z"
    assert time_to_iso(d360(2001, 2, 30, 12, 30)) == "2001-02-28T12:30:00Z"
    assert time_to_iso(cftime.DatetimeNoLeap(1850, 1, 1)) == "1850-01-01T00:00:00Z"
    assert time_to_iso(np.datetime64("2016-05-02T06:00:00")) == "2016-05-02T06:00:00Z"
    assert time_to_iso(np.datetime64("NaT")) is None


# --- Item and Collection -----------------------------------------------------------------
def test_item_has_the_recommended_layout(schemas: Path, no_network: None) -> None:
    item = make_item(summarise_dataset(cf_dataset()))
    json.dumps(item, allow_nan=False)
    assert item["id"] == "cmip6.tas.r1"
    assert item["collection"] == "demo-group"
    assert item["stac_version"] == "1.1.0"
    assert set(item["stac_extensions"]) == {
        "https://stac-extensions.github.io/datacube/v2.2.0/schema.json",
        "https://stac-extensions.github.io/file/v2.1.0/schema.json",
        "https://stac-extensions.github.io/processing/v1.2.0/schema.json",
        "https://stac-extensions.github.io/xarray-assets/v1.0.0/schema.json",
    }
    p = item["properties"]
    assert p["datetime"] is None
    assert (p["start_datetime"], p["end_datetime"]) == (
        "2000-01-01T00:00:00Z",
        "2000-02-29T00:00:00Z",
    )
    assert p["padocc_like:revision"] == 2 and p["padocc_like:status"] == "validated"
    assert p["variables"] == ["tas"] and p["units"] == {"tas": "K"}
    assert p["aggregation"] is True
    assert p["processing:software"] == SOFTWARE
    assert p["project"] == "CMIP6" and p["experiment"] == "historical"
    assert p["title"] == "tas" and p["description"] == "Aggregated tas"
    ref = item["assets"]["reference_file"]
    assert ref["href"] == "/work/demo/cmip6.tas.r1/products/r2.json"
    assert ref["type"] == "application/json"
    assert ref["roles"] == ["data", "references", "virtual"]
    assert ref["cloud_format"] == "kerchunk"
    assert ref["xarray:open_kwargs"] == {"engine": "kerchunk", "chunks": {}}
    assert ref["open_zarr_kwargs"] == {}
    assert ref["file:size"] == 1234 and ref["file:checksum"] == "1220" + SHA
    report = item["assets"]["validation_report"]
    assert report["roles"] == ["metadata"] and report["type"] == "application/json"
    links = {link["rel"]: link["href"] for link in item["links"]}
    assert links == {
        "collection": "../collection.json",
        "processing-validation": "/work/demo/cmip6.tas.r1/reports/validate.json",
        "store": "/work/demo/cmip6.tas.r1/products/r2.json",
    }
    validate_stac(item, schemas)
    validate_stac(item)


def test_core_only_validation_needs_no_schema_dir(no_network: None) -> None:
    item = make_item(summarise_dataset(cf_dataset()), collection_href="https://x.org/c.json")
    assert {
        "rel": "collection",
        "href": "https://x.org/c.json",
        "type": "application/json",
    } in item["links"]
    validate_stac(item)  # extensions are skipped without a schema dir


def test_parquet_layout_media_type(schemas: Path) -> None:
    item = make_item(summarise_dataset(cf_dataset()), product=product(layout="parquet"))
    assert item["assets"]["reference_file"]["type"] == "application/vnd.apache.parquet"
    validate_stac(item, schemas)


def test_cfa_product_gets_datapoints_asset(schemas: Path) -> None:
    """A CFA product is DataPoint's ``reference_file_2`` (cloud_format CFA, opened with
    cfapyx's ``CFA`` engine); relative fragment URIs need our engine, HTTP needs #mode=bytes."""
    s = summarise_dataset(cf_dataset())
    cfa = product(kind="cfa", layout="nc", media_type="application/netcdf")
    item = make_item(s, product=cfa, product_href="/work/demo/p/products/cfa/r1.nc")
    asset = item["assets"]["reference_file_2"]
    assert "reference_file" not in item["assets"]
    assert asset["type"] == "application/netcdf" and asset["cloud_format"] == "CFA"
    assert asset["xarray:open_kwargs"]["engine"] == "CFA" and asset["href"].endswith("r1.nc")
    assert asset["file:size"] == 1234 and asset["file:checksum"] == "1220" + SHA
    validate_stac(item, schemas)
    rel = make_item(s, product={**cfa, "cfa_uris": "relative"})
    assert rel["assets"]["reference_file_2"]["xarray:open_kwargs"]["engine"] == "padocc_cfa"
    web = make_item(s, product=cfa, product_href="https://data.example.org/p/r1.nc")
    assert web["assets"]["reference_file_2"]["href"] == "https://data.example.org/p/r1.nc#mode=bytes"
    with pytest.raises(CatalogError, match="sha256"):
        make_item(s, product={**cfa, "sha256": "x"})


def test_one_asset_per_product_kind(schemas: Path) -> None:
    """Several products (one per kind): one asset and one report each, keys without '-'."""
    s = summarise_dataset(cf_dataset())
    cfa = product(kind="cfa", revision=3, layout="nc", media_type="application/netcdf")
    entries = [
        (product(), "/w/p/products/kerchunk/r2.json", "/w/p/reports/validation-r2.json"),
        (cfa, "/w/p/products/cfa/r3.nc", "/w/p/reports/validation-r3.json"),
    ]
    item = make_item(s, product=None, product_href=None, report_href=None, products=entries)
    assert set(item["assets"]) == {
        "reference_file",
        "reference_file_2",
        "validation_report",
        "validation_report_cfa",
    }
    assert item["assets"]["validation_report_cfa"]["href"] == "/w/p/reports/validation-r3.json"
    p = item["properties"]
    assert p["padocc_like:revision"] == 2 and p["padocc_like:revisions"] == {"kerchunk": 2, "cfa": 3}
    stores = [link["href"] for link in item["links"] if link["rel"] == "store"]
    assert stores == ["/w/p/products/kerchunk/r2.json", "/w/p/products/cfa/r3.nc"]
    validate_stac(item, schemas)
    with pytest.raises(CatalogError, match="one asset per format"):
        make_item(s, products=[entries[0], entries[0]])
    with pytest.raises(CatalogError, match="at least one product"):
        make_item(s, products=[])


def test_bad_inputs_are_catalog_errors() -> None:
    s = summarise_dataset(cf_dataset())
    with pytest.raises(CatalogError, match="datetime"):
        make_item(s, properties={"datetime": "2000-01-01T00:00:00Z"})
    with pytest.raises(CatalogError, match="size"):
        make_item(s, product=product(size="12 MB"))
    with pytest.raises(CatalogError, match="item id"):
        make_item(s, project_id="a/b")
    with pytest.raises(CatalogError, match="not supported"):
        make_item(s, product=product(kind="icechunk"))


def test_collection_covers_its_items(schemas: Path, no_network: None) -> None:
    a = make_item(summarise_dataset(cf_dataset(lat=np.arange(10.0, 21.0), lon=np.arange(190.0, 201.0))))
    ds_b = cf_dataset(lat=np.arange(-30.0, -19.0), lon=np.arange(0.0, 11.0))
    ds_b = ds_b.assign_coords(time=[d360(2010, 6, 16), d360(2010, 7, 16)])
    ds_b["time"].attrs.update(standard_name="time")
    ds_b = ds_b.drop_vars("time_bnds")
    b = make_item(summarise_dataset(ds_b), project_id="other.project")
    coll = build_collection(
        collection_id="demo-group",
        description="Demo group",
        items=[a, b],
        keywords=["CMIP6", "kerchunk"],
        title="Demo",
        item_hrefs=["cmip6.tas.r1/item.json", "other.project/item.json"],
    )
    assert coll["type"] == "Collection" and coll["id"] == "demo-group"
    assert coll["extent"]["spatial"]["bbox"] == [[-170.5, -30.5, 10.5, 20.5]]
    assert coll["extent"]["temporal"]["interval"] == [["2000-01-01T00:00:00Z", "2010-07-16T00:00:00Z"]]
    assert coll["summaries"] == {"cloud_format": ["kerchunk"], "variables": ["tas"]}
    assert coll["item_assets"]["reference_file"]["type"] == "application/json"
    assert coll["item_assets"]["reference_file"]["roles"] == ["data", "references", "virtual"]
    assert coll["keywords"] == ["CMIP6", "kerchunk"] and coll["title"] == "Demo"
    assert [link["href"] for link in coll["links"] if link["rel"] == "item"] == [
        "cmip6.tas.r1/item.json",
        "other.project/item.json",
    ]
    validate_stac(coll, schemas)
    validate_stac(coll)
    with pytest.raises(CatalogError, match="no items"):
        build_collection(collection_id="x", description="d", items=[])


# --- validation failures -----------------------------------------------------------------
def test_file_size_as_string_is_rejected(schemas: Path, no_network: None) -> None:
    item = make_item(summarise_dataset(cf_dataset()))
    item["assets"]["reference_file"]["file:size"] = "28.96 MB"
    with pytest.raises(CatalogError, match="file:size") as err:
        validate_stac(item, schemas)
    assert "integer" in str(err.value)


def test_temporal_dimension_with_axis_is_rejected(schemas: Path, no_network: None) -> None:
    item = make_item(summarise_dataset(cf_dataset()))
    item["properties"]["cube:dimensions"]["time"]["axis"] = "z"
    with pytest.raises(CatalogError, match=r"cube:dimensions'\]\.time") as err:
        validate_stac(item, schemas)
    assert "axis" in str(err.value)


def test_core_violation_is_rejected_without_schema_dir() -> None:
    item = make_item(summarise_dataset(cf_dataset()))
    del item["properties"]["start_datetime"]
    with pytest.raises(CatalogError, match=r"item\.json"):
        validate_stac(item)
    bad_link = make_item(summarise_dataset(cf_dataset()))
    bad_link["links"] = [link for link in bad_link["links"] if link["rel"] != "collection"]
    with pytest.raises(CatalogError):  # STAC 1.1: a collection field needs a collection link
        validate_stac(bad_link)


def test_missing_extension_schema(tmp_path: Path, schemas: Path, no_network: None) -> None:
    item = make_item(summarise_dataset(cf_dataset()))
    local = tmp_path / "schemas"
    shutil.copytree(schemas, local)
    shutil.rmtree(local / "xarray-assets")
    with pytest.raises(CatalogError, match="xarray-assets"):
        validate_stac(item, local)
    shutil.copytree(schemas / "xarray-assets", local / "xarray-assets")
    validate_stac(item, local)  # edits to the directory are seen (no stale cache)
    # datacube $refs PROJJSON: without it, an error rather than a download
    shutil.rmtree(local / "projjson")
    with pytest.raises(CatalogError, match="projjson"):
        validate_stac(item, local)
    validate_stac(item)  # core only: fine


# --- opening the product the way users do --------------------------------------------------
def _write_netcdf(path: Path) -> Any:
    ds = cf_dataset(lat=np.arange(-30.0, 31.0, 10.0), lon=np.arange(0.0, 360.0, 60.0))
    ds["time"].encoding.update(units="days since 2000-01-01", calendar="360_day")
    ds["time_bnds"].encoding.update(units="days since 2000-01-01", calendar="360_day")
    ds.to_netcdf(path, engine="netcdf4")
    return ds


def _kerchunk_json(nc: Path, target: Path) -> dict[str, Any]:
    fsspec = pytest.importorskip("fsspec")
    hdf = pytest.importorskip("kerchunk.hdf")
    with fsspec.open(str(nc), "rb") as f:
        refs = hdf.SingleHdf5ToZarr(f, str(nc), inline_threshold=0).translate()
    target.write_text(json.dumps(refs))
    data = target.read_bytes()
    return product(size=len(data), sha256=hashlib.sha256(data).hexdigest())


def _open_asset(asset: dict[str, Any]) -> Any:
    return xr.open_dataset(asset["href"], **asset["xarray:open_kwargs"])


def test_kerchunk_json_opens_from_asset_href_and_open_kwargs(tmp_path: Path, schemas: Path) -> None:
    nc, ref = tmp_path / "src.nc", tmp_path / "r2.json"
    _write_netcdf(nc)
    rec = _kerchunk_json(nc, ref)
    with xr.open_dataset(
        str(ref), engine="kerchunk", decode_times=xr.coders.CFDatetimeCoder(use_cftime=True)
    ) as ds:
        summary = summarise_dataset(ds)
    assert summary["start_datetime"] == "2000-01-01T00:00:00Z"
    assert summary["end_datetime"] == "2000-02-29T00:00:00Z"
    item = make_item(summary, product=rec, product_href=str(ref))
    validate_stac(item, schemas)
    asset = item["assets"]["reference_file"]
    assert asset["file:size"] == ref.stat().st_size
    with _open_asset(asset) as got, xr.open_dataset(nc, engine="netcdf4") as want:
        np.testing.assert_array_equal(got["tas"].values, want["tas"].values)
        np.testing.assert_array_equal(got["lat"].values, want["lat"].values)
        assert list(got["time"].values) == list(want["time"].values)
    # DataPoint's way: engine kerchunk plus the asset's open_zarr_kwargs
    with xr.open_dataset(asset["href"], engine="kerchunk", **asset["open_zarr_kwargs"]) as got:
        assert float(got["tas"].sum()) == float(np.arange(2 * 7 * 6).sum())


# fsspec's LazyReferenceMapper reads/writes its records through pandas with engine="fastparquet",
# which pandas deprecates; not ours to fix, and the product opens correctly.
@pytest.mark.filterwarnings("ignore:The 'fastparquet' engine is deprecated")
def test_kerchunk_parquet_opens_from_asset_href_and_open_kwargs(tmp_path: Path) -> None:
    pytest.importorskip("fastparquet")
    import fsspec
    from fsspec.implementations.reference import LazyReferenceMapper

    nc, ref_json, parq = tmp_path / "src.nc", tmp_path / "r2.json", tmp_path / "r2.parq"
    _write_netcdf(nc)
    _kerchunk_json(nc, ref_json)
    refs = json.loads(ref_json.read_text())["refs"]
    parq.mkdir()
    out = LazyReferenceMapper.create(root=str(parq), fs=fsspec.filesystem("file"), record_size=100)
    # metadata keys first: the mapper needs each .zarray before that array's chunks
    for key, value in sorted(
        refs.items(), key=lambda kv: (not kv[0].rsplit("/", 1)[-1].startswith("."), kv[0])
    ):
        if isinstance(value, str) and value.startswith("base64:"):
            out[key] = base64.b64decode(value[7:])
        elif isinstance(value, str):
            out[key] = value.encode()
        else:
            out[key] = value
    out.flush()
    meta = (parq / ".zmetadata").read_bytes()
    rec = product(layout="parquet", size=len(meta), sha256=hashlib.sha256(meta).hexdigest())
    with xr.open_dataset(nc, engine="netcdf4") as want:
        item = make_item(summarise_dataset(want), product=rec, product_href=str(parq))
        asset = item["assets"]["reference_file"]
        assert asset["type"] == "application/vnd.apache.parquet"
        with _open_asset(asset) as got:
            np.testing.assert_array_equal(got["tas"].values, want["tas"].values)


def test_validate_does_not_mutate_and_accepts_copies(schemas: Path) -> None:
    item = make_item(summarise_dataset(cf_dataset()))
    before = copy.deepcopy(item)
    validate_stac(item, schemas)
    assert item == before
