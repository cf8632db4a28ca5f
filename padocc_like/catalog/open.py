"""Open a product straight from its STAC item, as a consumer would: the asset's ``href`` with
its ``xarray:open_kwargs`` (the generic pattern; see docs/research notes on DataPoint and
xpystac for the others)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import CatalogError

ASSET_PREFERENCE = ("reference_file", "zstore", "reference_file_2")
"""Asset keys tried in order when none is named: Kerchunk references, a Zarr store, a CFA file."""


def load_item(item: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """A STAC item from a dict, a local path, or an ``http(s)://`` (or any fsspec) URL."""
    if isinstance(item, Mapping):
        return dict(item)
    text = str(item)
    if "://" in text and not text.startswith("file://"):
        import fsspec

        with fsspec.open(text, "rt", encoding="utf-8") as f:
            return json.load(f)
    return json.loads(Path(text.removeprefix("file://")).read_text(encoding="utf-8"))


def choose_asset(item: Mapping[str, Any], asset: str | None = None) -> tuple[str, dict[str, Any]]:
    """``(key, asset)``: the named asset, or the first of :data:`ASSET_PREFERENCE` the item has."""
    assets = item.get("assets") or {}
    if asset is not None:
        if asset not in assets:
            raise CatalogError(f"item {item.get('id')!r} has no asset {asset!r} (it has {sorted(assets)})")
        return asset, dict(assets[asset])
    for key in ASSET_PREFERENCE:
        if key in assets:
            return key, dict(assets[key])
    raise CatalogError(
        f"item {item.get('id')!r} has no product asset (looked for {', '.join(ASSET_PREFERENCE)})"
    )


def open_item(item: str | Path | Mapping[str, Any], asset: str | None = None, **kwargs: Any) -> Any:
    """``xarray.open_dataset`` of a product of ``item`` (a dict, path or URL): the asset's
    href (``padocc_like:open_href`` when set, e.g. ``zip::`` for a zipped Zarr store) with its
    ``xarray:open_kwargs``, updated by ``kwargs``."""
    import xarray as xr

    doc = load_item(item)
    _, fields = choose_asset(doc, asset)
    href = fields.get("padocc_like:open_href") or fields["href"]
    options = {**dict(fields.get("xarray:open_kwargs") or {}), **kwargs}
    return xr.open_dataset(href, **options)
