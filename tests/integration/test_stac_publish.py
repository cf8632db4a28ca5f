"""The catalog phase publishes to a real STAC API (stac-fastapi-pgstac on loopback): items are
searchable by bbox, datetime and properties, reruns publish no duplicates, large runs go in
bulk, and a project whose product failed validation is never published."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from padocc_like import api

pytestmark = pytest.mark.stac_api

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO.parent / "shared" / "stac-schemas"
PHASES = ["init", "scan", "compute", "validate", "finalise", "catalog"]


@pytest.fixture
def stac_group(stac_api, archive, write_group, tmp_path):
    """Two good projects (different years) and one whose sources do not combine."""
    if not SCHEMAS.is_dir():
        pytest.skip(f"STAC schemas not found at {SCHEMAS}")
    archive("a", n_files=2, start_year=2001)
    archive("b", n_files=2, start_year=2010)
    collection = f"c-{tmp_path.name[-12:].lower().replace('_', '-')}"

    def make(bulk_from: int = 100) -> api.Group:
        path = write_group(
            f"""
            group: g
            work_dir: work
            stac_api: {{url: "{stac_api.url}", bulk_from: {bulk_from}}}
            stac_schema_dir: {SCHEMAS}
            pipeline:
              name: p
              catalog: {{collection_id: {collection}}}
            projects:
              - id: early
                sources: {{glob: a/*.nc}}
                concat_dims: [time]
                catalog_properties: {{padocc_like:facet: early-run}}
              - id: late
                sources: {{glob: b/*.nc}}
                concat_dims: [time]
                catalog_properties: {{padocc_like:facet: late-run}}
            """
        )
        return api.open_group(path)

    return make, collection


def search(url: str, collection: str, **kw) -> list[dict]:
    import pystac_client

    client = pystac_client.Client.open(url)
    return [i.to_dict() for i in client.search(collections=[collection], **kw).items()]


def test_items_are_published_searchable_and_never_duplicated(stac_api, stac_group):
    from padocc_like.cli import main

    make, collection = stac_group
    group = make()
    assert main(["run", str(group.path), "-q"]) == 0  # `padocc-like run`, as operators do
    found = search(stac_api.url, collection)
    assert sorted(i["id"] for i in found) == ["early", "late"]
    by_time = search(stac_api.url, collection, datetime="2010-01-01/2010-12-31")
    assert [i["id"] for i in by_time] == ["late"]
    assert search(stac_api.url, collection, datetime="1900-01-01/1900-12-31") == []
    item = found[0]
    assert len(search(stac_api.url, collection, bbox=item["bbox"])) == 2
    by_facet = search(stac_api.url, collection, query={"padocc_like:facet": {"eq": "early-run"}})
    assert [i["id"] for i in by_facet] == ["early"]

    state = json.loads((group.work_dir / "projects" / "early" / "state.json").read_text())
    published = state["catalog_published"]
    assert published["api"] == stac_api.url
    assert requests.get(published["url"], timeout=10).json()["id"] == "early"
    # the collection in the API is the group's (both items' extents)
    coll = requests.get(f"{stac_api.url}/collections/{collection}", timeout=10).json()
    interval = coll["extent"]["temporal"]["interval"][0]
    assert interval[0].startswith("2001-01") and interval[1].startswith("2010-03"), interval

    # reruns: nothing new; a forced catalog replaces the items in place
    again = api.run(group, PHASES)
    assert all(o.skipped for o in again)
    forced = api.run(group, ["catalog"], force=True)
    assert all(o.status == "done" for o in forced)
    assert sorted(i["id"] for i in search(stac_api.url, collection)) == ["early", "late"]


def test_large_runs_publish_in_bulk(stac_api, stac_group):
    make, collection = stac_group
    group = make(bulk_from=2)
    outcomes = api.run(group, PHASES)
    assert all(o.status == "done" for o in outcomes)
    assert sorted(i["id"] for i in search(stac_api.url, collection)) == ["early", "late"]
    for pid in ("early", "late"):
        state = json.loads((group.work_dir / "projects" / pid / "state.json").read_text())
        assert state["catalog_published"]["url"].endswith(f"/collections/{collection}/items/{pid}")
    api.run(group, ["catalog"], force=True)  # a bulk rerun upserts: still one item each
    assert sorted(i["id"] for i in search(stac_api.url, collection)) == ["early", "late"]


def test_an_item_that_fails_validation_is_never_published(stac_api, stac_group, monkeypatch):
    make, collection = stac_group
    group = make()
    assert all(o.status == "done" for o in api.run(group, ["init", "scan", "compute"]))
    # corrupt one product after compute: validation must fail and catalog must refuse it
    product = next((group.work_dir / "projects" / "late" / "products" / "kerchunk").glob("r*.json"))
    refs = json.loads(product.read_text())
    key = next(k for k, v in refs["refs"].items() if k.startswith("tas/") and isinstance(v, list))
    refs["refs"][key][1] += 1  # a shifted byte range
    product.write_text(json.dumps(refs))
    outcomes = api.run(group, ["validate", "finalise", "catalog"])
    status = {(o.project, o.phase): o.status for o in outcomes}
    assert status[("late", "validate")] == "failed" and ("late", "catalog") not in status
    assert [i["id"] for i in search(stac_api.url, collection)] == ["early"]
