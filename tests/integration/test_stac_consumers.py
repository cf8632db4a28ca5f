"""Published products open to the source values for the consumers of STAC items
(issue 7 item 5; research note docs/research/stac_catalog.md sections 2.1 to 2.4).

A group whose archive sits in a web site's directory (served by a loopback HTTP server with
Range support, ``tests/httpserver.py``) publishes Kerchunk, Zarr and CFA products into the
same site, with references mapped to the archive's HTTP URLs, and its item to the loopback
STAC API. The item is read back FROM THE API and every product asset is opened:

(a) generically: ``xr.open_dataset(href, **asset["xarray:open_kwargs"])``;
(b) with xpystac: ``xr.open_dataset(pystac.Asset)``;
(c) as CEDA DataPoint does: the fields it reads, its HEAD reachability check, and its own
    ``xr.open_dataset`` calls per ``cloud_format``;
(d) with ``padocc_like.api.open_item(<item URL>)``.

Every successful open is compared, variable by variable, with ``xr.open_mfdataset`` of the
local source files; every consumer that cannot read an asset is asserted to fail precisely.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import xarray as xr
from httpserver import RangeHTTPServer

from padocc_like import api

pytestmark = pytest.mark.stac_api

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO.parent / "shared" / "stac-schemas"
PHASES = ["init", "scan", "compute", "validate", "finalise", "catalog"]
PRODUCT_ASSETS = {"reference_file": "kerchunk", "zstore": "zarr", "reference_file_2": "CFA"}
VIRTUAL = {"reference_file", "reference_file_2"}  # read the archive's bytes when opened


def source_dataset(files: list[Path], **kwargs: Any) -> xr.Dataset:
    return xr.open_mfdataset(
        [str(f) for f in files],
        combine="nested",
        concat_dim="time",
        data_vars="minimal",
        coords="minimal",
        compat="override",
        **kwargs,
    ).load()


def assert_same(ds: xr.Dataset, expected: xr.Dataset, what: str) -> None:
    """Every variable of the sources (data, coordinates, bounds) with equal values."""
    assert set(ds.variables) == set(expected.variables), what
    for name in expected.variables:
        np.testing.assert_array_equal(ds[name].values, expected[name].values, err_msg=f"{what}: {name}")
    assert float(ds["tas"].sum()) == float(expected["tas"].sum()), what


class Published:
    """The group's run and what the tests read: the HTTP server, the item from the API."""

    def __init__(self, http: RangeHTTPServer, stac_url: str, collection: str, files: list[Path]) -> None:
        import pystac_client

        self.http = http
        self.files = files
        self.item_url = f"{stac_url}/collections/{collection}/items/p1"
        client = pystac_client.Client.open(stac_url)
        found = list(client.search(collections=[collection], ids=["p1"]).items())
        assert len(found) == 1
        self.item = found[0]  # a pystac.Item, as pystac-client gives it
        self.doc = requests.get(self.item_url, timeout=10).json()  # the JSON the API serves
        self.expected = source_dataset(files, decode_times=False)

    def product_assets(self) -> dict[str, Any]:
        return {k: a for k, a in self.item.assets.items() if k in PRODUCT_ASSETS}

    def opened(self, key: str, open_: Any) -> xr.Dataset:
        """``open_()`` loaded, checking it read the archive over HTTP exactly when the product
        is virtual (references to the sources) and never the local files."""
        self.http.clear()
        ds = open_()
        # every value read now (with this xarray, Dataset.load() of a kerchunk dataset opened
        # without dask chunks was seen to return before reading any chunk)
        for var in ds.variables.values():
            var.values  # noqa: B018
        archive = self.http.seen("GET", "/archive/")
        if key in VIRTUAL:
            assert archive, f"{key}: no source bytes were read over HTTP"
        else:
            assert not archive, f"{key}: a Zarr store holds values; it read {archive[:3]}"
        return ds


@pytest.fixture
def published(stac_api, archive, write_group, tmp_path):
    """All phases of a group whose archive and products are served over HTTP."""
    if not SCHEMAS.is_dir():
        pytest.skip(f"STAC schemas not found at {SCHEMAS}")
    files = archive("site/archive", n_files=3)
    site = tmp_path / "site"
    (site / "products").mkdir()
    collection = f"consumers-{uuid.uuid4().hex[:12]}"
    with RangeHTTPServer(site) as http:
        path = write_group(
            f"""
            group: gc
            work_dir: work
            stores:
              site: {{protocol: file, location: "{site}/products", public_url: "{http.url}/products"}}
            publish:
              store: site
              references:
                - {{from: "{site}/archive/", to: "{http.url}/archive/"}}
            stac_api: {{url: "{stac_api.url}"}}
            stac_schema_dir: {SCHEMAS}
            pipeline:
              name: p
              catalog: {{collection_id: {collection}}}
            projects:
              - id: p1
                sources: {{glob: site/archive/*.nc}}
                concat_dims: [time]
                product: {{kind: [kerchunk, zarr, cfa]}}
            """
        )
        outcomes = api.run(api.open_group(path), PHASES)
        assert [(o.phase, o.status) for o in outcomes] == [(p, "done") for p in PHASES], [
            o.message for o in outcomes
        ]
        yield Published(http, stac_api.url, collection, files)


def test_item_assets_are_the_products_served_over_http(published):
    assets = published.product_assets()
    assert set(assets) == set(PRODUCT_ASSETS)
    for key, asset in assets.items():
        assert asset.href.startswith(f"{published.http.url}/products/gc/p1/"), (key, asset.href)
    assert assets["reference_file_2"].href.endswith(".nc#mode=bytes")  # netCDF-C over HTTP


def test_generic_href_and_open_kwargs(published):
    """(a) ``xr.open_dataset(href, **xarray:open_kwargs)`` opens every kind to the sources."""
    for key, asset in published.product_assets().items():
        kwargs = asset.extra_fields["xarray:open_kwargs"]
        assert "padocc_like:open_href" not in asset.extra_fields  # a Zarr directory, not a zip
        ds = published.opened(
            key, lambda a=asset, kw=kwargs: xr.open_dataset(a.href, decode_times=False, **kw)
        )
        assert_same(ds, published.expected, f"generic {key}")
    # the Kerchunk product reads byte ranges of the archive's files over HTTP, nothing more
    published.http.clear()
    kerchunk = published.item.assets["reference_file"]
    xr.open_dataset(kerchunk.href, **kerchunk.extra_fields["xarray:open_kwargs"])["tas"].values  # noqa: B018
    ranged = published.http.seen("GET", "/archive/", ranged=True)
    assert {Path(r.path).name for r in ranged} == {f.name for f in published.files}
    assert all(r.status == 206 for r in ranged)
    assert not published.http.seen("GET", "/archive/", ranged=False)


def test_xpystac(published):
    """(b) xpystac 0.5.0's xarray backend for a ``pystac.Asset``: Kerchunk JSON (media type
    ``application/json`` with role ``references``) and Zarr (``application/vnd+zarr``) open
    to the sources; the CFA file does not (below)."""
    pytest.importorskip("xpystac")
    assets = published.product_assets()
    for key in ("reference_file", "zstore"):
        ds = published.opened(key, lambda a=assets[key]: xr.open_dataset(a, decode_times=False))
        assert_same(ds, published.expected, f"xpystac {key}")
    # CFA (media type application/netcdf) is not supported by xpystac 0.5.0: its Asset handler
    # (xpystac/core.py) sets `default_kwargs` only in its COG and Zarr branches (Kerchunk
    # returns early), then calls xarray.open_dataset(href, **{**default_kwargs, ...}) for any
    # other media type, so it fails before reading anything (research note 2.2, "Bug in the
    # 0.5.0 wheel"). Observed here: UnboundLocalError naming default_kwargs.
    published.http.clear()
    with pytest.raises(UnboundLocalError, match="default_kwargs"):
        xr.open_dataset(assets["reference_file_2"], decode_times=False)
    assert not published.http.seen(prefix="/products/")  # it failed before any request


def test_datapoint_fields_reachability_and_opens(published):
    """(c) What CEDA DataPoint 0.5.2 reads (research note 2.1), from the API's JSON, and its
    opens: kerchunk -> engine "kerchunk" with ``open_zarr_kwargs``; zarr -> engine "zarr"
    with ``open_zarr_kwargs``; CFA -> cfapyx's engine "CFA" with ``cfa_options`` and
    ``open_xarray_kwargs`` (DataPoint passes no other options; its Kerchunk and Zarr opens
    decode times, so those compare with decoded sources)."""
    doc = published.doc
    # item fields DataPoint indexes directly (KeyError otherwise)
    bbox = doc["bbox"]
    assert len(bbox) == 4 and bbox[0] < bbox[2] and bbox[1] < bbox[3]
    props = doc["properties"]
    assert props["start_datetime"].startswith("2000-01") and props["end_datetime"] > props["start_datetime"]
    assert sorted(props["variables"]) == ["pr", "tas"]
    assert props["units"] == {v: published.expected[v].attrs["units"] for v in ("pr", "tas")}
    # products are named "<item id>-<asset key>" and split on the last "-"
    assert all("-" not in key for key in doc["assets"])

    decoded = source_dataset(published.files)
    for key, cloud_format in PRODUCT_ASSETS.items():
        asset = doc["assets"][key]
        assert asset["cloud_format"] == cloud_format, key
        href = asset["href"]
        # _set_visibility: a HEAD without redirects; zarr checks .zmetadata (consolidated v2)
        check = f"{href}/.zmetadata" if cloud_format == "zarr" else href
        assert requests.head(check, timeout=10, allow_redirects=False).status_code == 200, check
        if cloud_format == "kerchunk":
            kwargs = asset["open_zarr_kwargs"]  # top level of the asset, not under open_kwargs
            ds = published.opened(key, lambda h=href, kw=kwargs: xr.open_dataset(h, engine="kerchunk", **kw))
            assert_same(ds, decoded, f"DataPoint {key}")
        elif cloud_format == "zarr":
            kwargs = asset["open_zarr_kwargs"]
            assert kwargs == {"consolidated": True}
            ds = published.opened(key, lambda h=href, kw=kwargs: xr.open_dataset(h, engine="zarr", **kw))
            assert_same(ds, decoded, f"DataPoint {key}")
        else:
            # DataPoint merges the caller's kwargs into open_xarray_kwargs: decode_times=False
            kwargs = {**asset["open_xarray_kwargs"], "decode_times": False}
            ds = published.opened(
                key,
                lambda h=href, kw=kwargs: xr.open_dataset(h, engine="CFA", cfa_options={}, **kw),
            )
            assert_same(ds, published.expected, f"DataPoint {key}")


def test_open_item_from_the_api(published):
    """(d) ``api.open_item(<item URL>)``: the default asset (Kerchunk) and each asset key."""
    ds = published.opened("reference_file", lambda: api.open_item(published.item_url, decode_times=False))
    assert_same(ds, published.expected, "open_item default")
    for key in PRODUCT_ASSETS:
        ds = published.opened(key, lambda k=key: api.open_item(published.item_url, k, decode_times=False))
        assert_same(ds, published.expected, f"open_item {key}")
