"""The loopback STAC API of the stac_api tests is a real, transactional one.

stac-fastapi-pgstac over PostgreSQL + PostGIS (``tests/stacapi.py``): it answers ping,
advertises the Transactions conformance classes, creates collections and items (201),
refuses a duplicate (409), replaces with PUT (200), returns what was stored, finds it with
pystac-client by bbox, datetime and a CQL2 filter on our own properties, deletes it, and
listens on 127.0.0.1 only.
"""

from __future__ import annotations

import copy
import socket
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.stac_api

DAY = "2016-05-02T12:00:00Z"
BBOX = [-10.0, 40.0, 10.0, 60.0]


def _collection(cid: str) -> dict:
    return {
        "type": "Collection",
        "stac_version": "1.0.0",
        "id": cid,
        "description": "loopback STAC API test collection",
        "license": "proprietary",
        "links": [],
        "extent": {
            "spatial": {"bbox": [BBOX]},
            "temporal": {"interval": [["2016-01-01T00:00:00Z", "2016-12-31T23:59:59Z"]]},
        },
    }


def _item(iid: str, cid: str) -> dict:
    """A minimal valid item: a polygon geometry, its bbox, a datetime and two properties of ours."""
    w, s, e, n = BBOX
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [],
        "id": iid,
        "collection": cid,
        "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]},
        "bbox": BBOX,
        "properties": {"datetime": DAY, "aggregation": True, "padocc:revision": "kr1.0"},
        "links": [],
        "assets": {
            "reference_file": {
                "href": "https://example.invalid/products/x.json",
                "type": "application/json",
                "roles": ["data", "references"],
            }
        },
    }


@pytest.fixture
def collection_id(stac_api) -> str:
    cid = f"test-{uuid.uuid4().hex[:12]}"
    status, body = stac_api.request("POST", "/collections", _collection(cid))
    assert status == 201, body
    return cid


def test_ping_and_transaction_conformance(stac_api) -> None:
    assert stac_api.request("GET", "/_mgmt/ping") == (200, {"message": "PONG"})
    status, body = stac_api.request("GET", "/conformance")
    assert status == 200
    classes = body["conformsTo"]
    assert any(c.endswith("ogcapi-features/extensions/transaction") for c in classes), classes
    assert any("item-search" in c for c in classes), classes


def test_post_duplicate_put_get(stac_api, collection_id: str) -> None:
    cid = collection_id
    assert stac_api.request("GET", f"/collections/{cid}")[0] == 200

    item = _item("product-1", cid)
    status, body = stac_api.request("POST", f"/collections/{cid}/items", item)
    assert status == 201, body
    status, body = stac_api.request("POST", f"/collections/{cid}/items", item)
    assert status == 409, body

    changed = copy.deepcopy(item)
    changed["properties"]["padocc:revision"] = "kr1.1"
    changed["properties"]["title"] = "re-published"
    status, body = stac_api.request("PUT", f"/collections/{cid}/items/product-1", changed)
    assert status == 200, body

    status, back = stac_api.request("GET", f"/collections/{cid}/items/product-1")
    assert status == 200, back
    assert back["id"] == "product-1"
    assert back["collection"] == cid
    assert back["geometry"] == changed["geometry"]
    assert back["properties"] == changed["properties"]
    assert back["assets"] == changed["assets"]

    assert stac_api.request("DELETE", f"/collections/{cid}/items/product-1")[0] in (200, 204)
    assert stac_api.request("GET", f"/collections/{cid}/items/product-1")[0] == 404


def test_search_with_pystac_client(stac_api, collection_id: str) -> None:
    pystac_client = pytest.importorskip("pystac_client")
    cid = collection_id
    for iid, agg in (("agg", True), ("plain", False)):
        item = _item(iid, cid)
        item["properties"]["aggregation"] = agg
        assert stac_api.request("POST", f"/collections/{cid}/items", item)[0] == 201

    client = pystac_client.Client.open(stac_api.url)

    def ids(**kw) -> list[str]:
        return sorted(i.id for i in client.search(collections=[cid], **kw).items())

    assert ids() == ["agg", "plain"]
    assert ids(bbox=[0.0, 50.0, 1.0, 51.0]) == ["agg", "plain"]
    assert ids(bbox=[100.0, -10.0, 101.0, -9.0]) == []
    assert ids(datetime="2016-05-02/2016-05-03") == ["agg", "plain"]
    assert ids(datetime="2017-01-01/2017-12-31") == []
    cql2 = {"op": "=", "args": [{"property": "aggregation"}, True]}
    assert ids(filter=cql2, filter_lang="cql2-json") == ["agg"]
    assert ids(bbox=[0.0, 50.0, 1.0, 51.0], datetime="2016-05-02/2016-05-03", filter=cql2) == ["agg"]
    assert ids(query={"aggregation": {"eq": False}}) == ["plain"]

    found = next(client.search(collections=[cid], ids=["agg"]).items())
    assert found.properties["padocc:revision"] == "kr1.0"
    assert found.assets["reference_file"].href == "https://example.invalid/products/x.json"


def _listen_addresses(port: int) -> list[str]:
    """Local addresses of the LISTEN sockets on ``port`` (from /proc/net/tcp and tcp6)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, hexport = local.rsplit(":", 1)
            if state == "0A" and int(hexport, 16) == port:
                if len(addr) == 8:
                    found.append(socket.inet_ntop(socket.AF_INET, bytes.fromhex(addr)[::-1]))
                else:
                    words = [bytes.fromhex(addr[i : i + 8])[::-1] for i in range(0, 32, 8)]
                    found.append(socket.inet_ntop(socket.AF_INET6, b"".join(words)))
    return found


def _external_address() -> str | None:
    """This machine's address on its default route (no packet is sent), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
            addr = s.getsockname()[0]
        except OSError:
            return None
    return None if addr.startswith("127.") else addr


def test_listens_on_loopback_only(stac_api) -> None:
    if not Path("/proc/net/tcp").is_file():
        pytest.skip("no /proc/net/tcp")
    for port in (stac_api.port, stac_api.pg_port):
        assert _listen_addresses(port) == ["127.0.0.1"], port
    external = _external_address()
    if external is not None:
        for port in (stac_api.port, stac_api.pg_port):
            with pytest.raises(OSError), socket.create_connection((external, port), timeout=2):
                pass
