"""The STAC API client's protocol and authentication hook, against a small local HTTP server
that records every request (the real API is exercised in tests/integration/test_stac_publish.py)."""

from __future__ import annotations

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from padocc_like.catalog.api import StacApiClient
from padocc_like.config.models import StacApiConfig
from padocc_like.errors import CatalogPublishError

SECRET, TOKEN = "client-secret-value", "token-value-123"


class FakeApi(BaseHTTPRequestHandler):
    """Collections and items in memory; an OAuth2 token endpoint; 401 without a bearer token."""

    collections: dict[str, dict] = {}
    items: dict[tuple[str, str], dict] = {}
    log: list[tuple[str, str, str | None]] = []
    tokens_issued = 0
    failures: dict[tuple[str, str], int] = {}
    """(method, path) -> how many more times to answer 500 (after doing the work when
    ``apply_before_failing``, as a server that fails after committing)."""
    apply_before_failing = False

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, code: int, body: object = None) -> None:
        data = json.dumps(body or {}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> object:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        return json.loads(raw) if raw and self.path != "/token" else raw.decode()

    def _route(self, method: str) -> None:
        body = self._body()
        type(self).log.append((method, self.path, self.headers.get("Authorization")))
        if self.failures.get((method, self.path), 0) > 0:
            self.failures[(method, self.path)] -= 1
            if self.apply_before_failing and method == "POST" and self.path.endswith("/items"):
                self.items[(self.path.split("/")[2], body["id"])] = body
            return self._send(500, {"detail": "could not serialize access"})
        if self.path == "/token":
            expected = "Basic " + base64.b64encode(f"cid:{SECRET}".encode()).decode()
            if self.headers.get("Authorization") != expected or "grant_type=client_credentials" not in body:
                return self._send(401, {"detail": "bad client"})
            type(self).tokens_issued += 1
            return self._send(200, {"access_token": TOKEN, "expires_in": 3600})
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._send(401, {"detail": "unauthorized"})
        parts = self.path.strip("/").split("/")
        if parts[0] != "collections":
            return self._send(404)
        if method == "POST" and len(parts) == 1:
            if body["id"] in self.collections:
                return self._send(409, {"detail": "exists"})
            self.collections[body["id"]] = body
            return self._send(201, body)
        if len(parts) == 2:
            if method == "GET":
                return (
                    self._send(200, self.collections[parts[1]])
                    if parts[1] in self.collections
                    else self._send(404)
                )
            if method == "PUT":
                self.collections[parts[1]] = body
                return self._send(200, body)
        if len(parts) == 3 and method == "POST":
            if parts[2] == "bulk_items":
                for iid, item in body["items"].items():
                    self.items[(parts[1], iid)] = item
                return self._send(200, {"ok": len(body["items"])})
            if (parts[1], body["id"]) in self.items:
                return self._send(409, {"detail": "exists"})
            self.items[(parts[1], body["id"])] = body
            return self._send(201, body)
        if len(parts) == 4 and method == "PUT":
            if (parts[1], parts[3]) not in self.items:
                return self._send(404, {"detail": "no item"})
            self.items[(parts[1], parts[3])] = body
            return self._send(200, body)
        return self._send(405)

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PUT(self) -> None:
        self._route("PUT")


@pytest.fixture
def fake_api():
    FakeApi.collections, FakeApi.items, FakeApi.log, FakeApi.tokens_issued = {}, {}, [], 0
    FakeApi.failures, FakeApi.apply_before_failing = {}, False
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def oauth2(url: str) -> StacApiConfig:
    return StacApiConfig.model_validate(
        {
            "url": url,
            "auth": {
                "type": "oauth2",
                "token_url": f"{url}/token",
                "client_id_env": "CID",
                "client_secret_env": "CS",
            },
        }
    )


ITEM = {
    "type": "Feature",
    "id": "p1",
    "collection": "c1",
    "links": [{"rel": "self", "href": "/local/item.json"}],
}


def test_oauth2_client_credentials_then_put_or_post(fake_api):
    client = StacApiClient(oauth2(fake_api), env={"CID": "cid", "CS": SECRET, "OTHER": "x"})
    assert SECRET not in repr(client)
    assert client.ensure_collection({"id": "c1", "links": []}).endswith("/collections/c1")
    url = client.put_item(ITEM)  # new: PUT answers 404, then POST
    assert url == f"{fake_api}/collections/c1/items/p1"
    assert client.put_item({**ITEM, "properties": {"v": 2}}) == url  # existing: PUT only
    assert FakeApi.items[("c1", "p1")]["properties"] == {"v": 2}
    assert FakeApi.items[("c1", "p1")]["links"] == []  # the API owns self/root/parent links
    assert FakeApi.tokens_issued == 1  # the token is reused until it expires
    methods = [(m, p) for m, p, _ in FakeApi.log if p != "/token"]
    assert methods == [
        ("GET", "/collections/c1"),
        ("POST", "/collections"),
        ("PUT", "/collections/c1/items/p1"),
        ("POST", "/collections/c1/items"),
        ("PUT", "/collections/c1/items/p1"),
    ]
    assert all(auth == f"Bearer {TOKEN}" for _, p, auth in FakeApi.log if p != "/token")
    urls = client.bulk_upsert("c1", [{**ITEM, "id": f"p{i}"} for i in range(5)], batch=2)
    assert len(urls) == 5 and len([p for _, p, _ in FakeApi.log if p.endswith("bulk_items")]) == 3


def test_authentication_failures_are_clear_and_hold_no_secret(fake_api):
    with pytest.raises(CatalogPublishError, match="CS, which is not set"):
        StacApiClient(oauth2(fake_api), env={"CID": "cid"}).put_item(ITEM)
    with pytest.raises(CatalogPublishError, match=r"refused the client credentials \(HTTP 401\)") as err:
        StacApiClient(oauth2(fake_api), env={"CID": "cid", "CS": "wrong-secret"}).put_item(ITEM)
    assert "wrong-secret" not in str(err.value)
    bearer = StacApiConfig.model_validate({"url": fake_api, "auth": {"type": "bearer", "token_env": "T"}})
    with pytest.raises(CatalogPublishError, match=r"HTTP 401.*check the API's credentials") as err:
        StacApiClient(bearer, env={"T": "not-the-token"}).put_item(ITEM)
    assert "not-the-token" not in str(err.value)
    StacApiClient(bearer, env={"T": TOKEN}).ensure_collection({"id": "c1", "links": []})
    assert "c1" in FakeApi.collections


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        ({"type": "bearer"}, "needs 'token_env'"),
        ({"type": "oauth2", "token_url": "http://x/t"}, "needs 'token_url', 'client_id_env'"),
        ({"type": "bearer", "token": "abc"}, "would put a secret"),
    ],
)
def test_auth_config_errors(auth, message):
    with pytest.raises(ValueError, match=message):
        StacApiConfig.model_validate({"url": "http://x", "auth": auth})


def test_an_api_that_does_not_answer_is_an_error():
    client = StacApiClient(StacApiConfig(url="http://127.0.0.1:9"))
    with pytest.raises(
        CatalogPublishError, match=re.escape("STAC API GET http://127.0.0.1:9/collections/c failed")
    ):
        client.has_collection("c")


@pytest.mark.parametrize("committed", [False, True])
def test_server_errors_are_tried_again(fake_api, monkeypatch, committed):
    """pgstac answers 500 when two writers create a new collection's partition at once: the
    request is tried again; a POST the server had taken before failing answers 409 on the
    retry, and the item is then replaced."""
    from padocc_like.catalog import api as api_module

    monkeypatch.setattr(api_module, "RETRY_DELAY_S", 0.0)
    client = StacApiClient(oauth2(fake_api), env={"CID": "cid", "CS": SECRET})
    client.ensure_collection({"id": "c1", "links": []})
    FakeApi.failures[("POST", "/collections/c1/items")] = 1
    FakeApi.apply_before_failing = committed
    assert client.put_item({**ITEM, "properties": {"v": 1}}).endswith("/collections/c1/items/p1")
    assert FakeApi.items[("c1", "p1")]["properties"] == {"v": 1}
    methods = [(m, p) for m, p, _ in FakeApi.log if p.startswith("/collections/c1/items")]
    expected = [
        ("PUT", "/collections/c1/items/p1"),
        ("POST", "/collections/c1/items"),
        ("POST", "/collections/c1/items"),
    ]
    assert methods == expected + ([("PUT", "/collections/c1/items/p1")] if committed else [])


def test_a_server_error_that_persists_is_an_error(fake_api, monkeypatch):
    from padocc_like.catalog import api as api_module

    monkeypatch.setattr(api_module, "RETRY_DELAY_S", 0.0)
    client = StacApiClient(oauth2(fake_api), env={"CID": "cid", "CS": SECRET})
    client.ensure_collection({"id": "c1", "links": []})
    FakeApi.failures[("POST", "/collections/c1/items")] = 99
    with pytest.raises(CatalogPublishError, match=r"POST .*/collections/c1/items answered HTTP 500"):
        client.put_item(ITEM)
    posts = [p for m, p, _ in FakeApi.log if m == "POST" and p == "/collections/c1/items"]
    assert len(posts) == 1 + api_module.SERVER_ERROR_RETRIES
