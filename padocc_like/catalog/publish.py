"""The group-level half of publishing to a STAC API: the group's collection (derived from
every catalogued item) replaces the provisional one the first item created, and, for runs
over many projects, the items go in bulk upserts; each project's state records where its
item went."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .._io import read_json
from ..config.load import Group
from ..config.models import StacApiConfig
from ..stages.base import RunContext
from ..stages.catalog import published_record
from ..state.store import current_products, load_state, project_lock, project_paths, save_state
from .api import StacApiClient

log = logging.getLogger(__name__)


def publishable_items(group: Group) -> list[tuple[str, dict[str, Any]]]:
    """``(project id, item)`` of every project whose item describes validated products."""
    out = []
    for pid in sorted(group.projects):
        paths = project_paths(group.work_dir, pid)
        item_path = paths.catalog / "item.json"
        if not item_path.exists():
            continue
        state = load_state(paths)
        products = current_products(state) if state else []
        if products and all(p.get("status") == "valid" for p in products):
            out.append((pid, read_json(item_path)))
    return out


def publish_group(group: Group, stac_api: StacApiConfig, collection_path: Path, ctx: RunContext) -> str:
    """Replace the group's collection in the API; with ``ctx.stac_bulk``, upsert every
    publishable item in bulk and record it in its project's state. The collection's URL."""
    client = StacApiClient(stac_api, ctx.secrets)
    collection = read_json(collection_path)
    url = client.put_collection(collection)
    if ctx.stac_bulk:
        items = publishable_items(group)
        urls = client.bulk_upsert(str(collection["id"]), [item for _, item in items])
        for (pid, item), item_url in zip(items, urls, strict=True):
            paths = project_paths(group.work_dir, pid)
            with project_lock(paths):
                state = load_state(paths)
                if state is not None:
                    state["catalog_published"] = published_record(stac_api.url, item_url, item)
                    save_state(paths, state)
        log.info("published %d items to %s in bulk", len(items), url)
    return url
