"""Publishing items and collections to a STAC API with the Transactions extension.

:class:`StacApiClient` speaks the Transactions extension of STAC API (the
``ogcapi-features/extensions/transaction`` and collection transaction classes, as
stac-fastapi serves them): a collection is created when missing and updated with ``PUT``;
an item is replaced with ``PUT`` and created with ``POST`` when the API does not have it;
many items go in one ``POST /collections/{id}/bulk_items`` with ``method: upsert``. Reruns
publish no duplicates: every write is keyed by the item's id.

Authentication is a hook: a bearer token, or OAuth2 client credentials exchanged for a
token at first use. The secrets come from the environment at run time (the runner passes
it in), live in this object's memory only and are never written or logged.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from ..config.models import StacApiConfig
from ..errors import CatalogError, CatalogPublishError

log = logging.getLogger(__name__)

TIMEOUT_S = 30.0
SERVER_ERROR_RETRIES = 3
"""Times a request that got a server error (5xx) is tried again."""
RETRY_DELAY_S = 0.25
"""The first wait before trying again; it doubles each time (0.25, 0.5, 1 s)."""


class StacApiClient:
    """A STAC API's Transactions endpoints, with the configured authentication."""

    def __init__(self, config: StacApiConfig, env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.url = config.url.rstrip("/")
        names = [
            n for n in (config.auth.token_env, config.auth.client_id_env, config.auth.client_secret_env) if n
        ]
        self._env = {k: v for k, v in (env or {}).items() if k in names}
        self._token: tuple[str, float] | None = None  # (token, expiry on the monotonic clock)
        self._session: Any = None

    def __repr__(self) -> str:
        return f"StacApiClient({self.url!r}, auth={self.config.auth.type!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config, "url": self.url, "_env": self._env, "_token": None, "_session": None}

    # --- authentication -------------------------------------------------------------------
    def _need(self, name: str | None, what: str) -> str:
        value = self._env.get(name or "")
        if not value:
            raise CatalogPublishError(
                f"STAC API {self.url}: {what} comes from the environment variable {name}, which is not set"
            )
        return value

    def _headers(self) -> dict[str, str]:
        auth = self.config.auth
        headers = {"Content-Type": "application/json", "Accept": "application/json, application/geo+json"}
        if auth.type == "bearer":
            headers["Authorization"] = f"Bearer {self._need(auth.token_env, 'the bearer token')}"
        elif auth.type == "oauth2":
            if self._token is None or time.monotonic() > self._token[1]:
                self._token = self._client_credentials()
            headers["Authorization"] = f"Bearer {self._token[0]}"
        return headers

    def _client_credentials(self) -> tuple[str, float]:
        """An OAuth2 access token for the client credentials (RFC 6749 section 4.4)."""
        auth = self.config.auth
        data = {"grant_type": "client_credentials"}
        if auth.scope:
            data["scope"] = auth.scope
        client_id = self._need(auth.client_id_env, "the OAuth2 client id")
        secret = self._need(auth.client_secret_env, "the OAuth2 client secret")
        try:
            resp = self._http().post(
                str(auth.token_url), data=data, auth=(client_id, secret), timeout=TIMEOUT_S
            )
        except Exception as err:
            raise CatalogPublishError(
                f"OAuth2 token endpoint {auth.token_url} did not answer: {err}"
            ) from err
        if resp.status_code != 200:
            raise CatalogPublishError(
                f"OAuth2 token endpoint {auth.token_url} refused the client credentials (HTTP {resp.status_code})"
            )
        body = resp.json()
        expires = float(body.get("expires_in", 300))
        return str(body["access_token"]), time.monotonic() + max(0.0, expires - 30)

    # --- HTTP -----------------------------------------------------------------------------
    def _http(self) -> Any:
        if self._session is None:
            import requests

            self._session = requests.Session()
        return self._session

    def _request(self, method: str, path: str, body: Any = None, ok: Sequence[int] = (200, 201)) -> Any:
        """One request; a server error (5xx) is tried again :data:`SERVER_ERROR_RETRIES` times
        (pgstac answers 500 when two writers create a collection's partition at once). Every
        request made here may be repeated: PUT and upserts replace, and a POST that had been
        taken answers 409, which the callers handle."""
        url = f"{self.url}{path}"
        data = None if body is None else json.dumps(body, separators=(",", ":"), allow_nan=False)
        for attempt in range(SERVER_ERROR_RETRIES + 1):
            try:
                resp = self._http().request(
                    method, url, data=data, headers=self._headers(), timeout=TIMEOUT_S
                )
            except CatalogError:
                raise
            except Exception as err:
                raise CatalogPublishError(
                    f"STAC API {method} {url} failed: {type(err).__name__}: {err}"
                ) from err
            if resp.status_code < 500 or resp.status_code in ok or attempt == SERVER_ERROR_RETRIES:
                break
            time.sleep(RETRY_DELAY_S * 2**attempt)
        if resp.status_code not in ok:
            raise CatalogPublishError(
                f"STAC API {method} {url} answered HTTP {resp.status_code}: {_detail(resp)}"
                + (" (check the API's credentials)" if resp.status_code in (401, 403) else "")
            )
        return resp

    # --- collections and items ------------------------------------------------------------
    def collection_url(self, collection_id: str) -> str:
        return f"{self.url}/collections/{quote(collection_id, safe='')}"

    def item_url(self, collection_id: str, item_id: str) -> str:
        return f"{self.collection_url(collection_id)}/items/{quote(item_id, safe='')}"

    def has_collection(self, collection_id: str) -> bool:
        path = f"/collections/{quote(collection_id, safe='')}"
        # pgstac answers a missing collection with 404 (or, in some versions, 500)
        resp = self._request("GET", path, ok=(200, 404, 500))
        return resp.status_code == 200

    def put_collection(self, collection: dict[str, Any]) -> str:
        """Create the collection, or replace it when it exists; its URL."""
        cid = str(collection["id"])
        if self.has_collection(cid):
            self._request("PUT", f"/collections/{quote(cid, safe='')}", _unlinked(collection))
        else:
            self._request("POST", "/collections", _unlinked(collection), ok=(200, 201, 409))
        return self.collection_url(cid)

    def ensure_collection(self, collection: dict[str, Any]) -> str:
        """Create the collection only when the API does not have it; its URL."""
        cid = str(collection["id"])
        if not self.has_collection(cid):
            self._request("POST", "/collections", _unlinked(collection), ok=(200, 201, 409))
        return self.collection_url(cid)

    def put_item(self, item: dict[str, Any]) -> str:
        """Replace the item (``PUT``), or create it (``POST``) when the API does not have it;
        its URL. A rerun replaces it again: never a duplicate."""
        cid, iid = str(item["collection"]), str(item["id"])
        path = f"/collections/{quote(cid, safe='')}/items/{quote(iid, safe='')}"
        resp = self._request("PUT", path, _unlinked(item), ok=(200, 201, 204, 404))
        if resp.status_code == 404:
            made = self._request(
                "POST", f"/collections/{quote(cid, safe='')}/items", _unlinked(item), ok=(200, 201, 409)
            )
            if made.status_code == 409:  # created meanwhile (or by a POST retried after a 5xx)
                self._request("PUT", path, _unlinked(item), ok=(200, 201, 204))
        return self.item_url(cid, iid)

    def bulk_upsert(self, collection_id: str, items: Sequence[dict[str, Any]], batch: int = 500) -> list[str]:
        """Insert or replace many items of one collection, ``batch`` per request; their URLs."""
        urls = []
        for start in range(0, len(items), batch):
            chunk = items[start : start + batch]
            body = {"items": {str(i["id"]): _unlinked(i) for i in chunk}, "method": "upsert"}
            self._request("POST", f"/collections/{quote(collection_id, safe='')}/bulk_items", body)
            urls += [self.item_url(collection_id, str(i["id"])) for i in chunk]
        return urls


def _unlinked(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without the links the API owns (self, root, parent, collection, items):
    they name local files here, and the API writes its own."""
    own = {"self", "root", "parent", "collection", "items", "item"}
    return {**obj, "links": [link for link in obj.get("links", []) if link.get("rel") not in own]}


def _detail(resp: Any) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:300]
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("description") or body.get("code") or body)[:300]
    return str(body)[:300]
