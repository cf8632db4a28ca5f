"""Products leaving the work directory: uploaded to the products store by compute, and
copied (references mapped) to the publish store by finalise. Plain functions over a
:class:`~padocc_like.storage.Storage`; the stages only call them and record the result."""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..config.models import PublishConfig
from ..errors import PadoccLikeError, PublishError
from ..storage import Storage, is_remote, translate_error
from .copy import CopyRecord, copy_product, remove_partial
from .rewrite import UrlMapping, rewrite_product

log = logging.getLogger(__name__)


@contextlib.contextmanager
def store_errors(url: str) -> Iterator[None]:
    """Failures of the store behind ``url`` as :class:`~padocc_like.errors.StorageError`s
    (our own errors, such as a failed verification, pass through)."""
    try:
        yield
    except PadoccLikeError:
        raise
    except Exception as err:
        raise translate_error(url, err) from err


def store_key(prefix: str, group: str, project: str, kind: str, name: str) -> str:
    """The key of a product inside a store: ``<prefix with {group}/{project}>/<kind>/<name>``."""
    try:
        base = prefix.format(group=group, project=project).strip("/")
    except (KeyError, IndexError) as err:
        raise PublishError(f"prefix {prefix!r}: unknown field {err} (use {{group}} and {{project}})") from err
    return "/".join(part for part in (base, kind, name) if part)


def summary(record: CopyRecord) -> dict[str, Any]:
    """What state keeps of a copy: where, how many objects and bytes, and the listing's
    digest (a Zarr store's object list would bloat state; single objects keep their SHA-256)."""
    out = {
        "url": record.destination,
        "objects": len(record.objects),
        "bytes": record.total_bytes,
        "listing_sha256": record.sha256,
    }
    if len(record.objects) == 1 and record.objects[0].key == "":
        out["sha256"] = record.objects[0].sha256
    return out


def upload(storage: Storage, store: str, local: Path, key: str) -> dict[str, Any]:
    """Copy the finished product ``local`` to ``key`` in ``store``, verified; whatever an
    interrupted earlier attempt left there is removed first (the key is a revision that
    state never recorded as uploaded)."""
    url = storage.url(store, key)
    fs, path = storage.filesystem(url)
    with store_errors(url):
        remove_partial(fs, path)
        record = copy_product(local, fs, path)
    log.info(
        "uploaded %s to %s (%d objects, %d bytes)", local.name, url, len(record.objects), record.total_bytes
    )
    return {"store": store, **summary(record), "url": url}


def product_storage_options(
    storage: Storage, source_urls: list[str], product_store: str | None
) -> dict[str, Any]:
    """The kerchunk engine's ``storage_options`` a consumer needs for a product whose
    references point at ``source_urls`` and which lives in ``product_store`` (public
    settings only: endpoints and ``anon``; never credentials)."""
    opts: dict[str, Any] = {}
    remote = [u for u in source_urls if is_remote(u)]
    if remote:
        opts["remote_protocol"] = remote[0].split("://", 1)[0]
        name = storage.store_for(remote[0])
        # zarr-python 3 reads through the reference file system asynchronously: its target
        # file system must be asynchronous too
        opts["remote_options"] = {**(storage.public_options(name) if name else {}), "asynchronous": True}
    else:
        opts["remote_protocol"] = "file"
    if product_store:
        target = storage.public_options(product_store)
        if target:
            opts["target_options"] = target
    return opts


def publish(
    storage: Storage,
    config: PublishConfig,
    product: dict[str, Any],
    source_urls: list[str],
    staging: Path,
    group: str,
    project: str,
) -> dict[str, Any]:
    """Rewrite ``product``'s references with the configured mapping into ``staging``, copy the
    result to the publish store, verified, and return the record of where it went."""
    mapping = UrlMapping([(r.from_, r.to) for r in config.references], config.unmapped)
    local = Path(product["path"])
    staged = staging / local.name
    if staged.is_dir():
        shutil.rmtree(staged)
    staging.mkdir(parents=True, exist_ok=True)
    rewritten = rewrite_product(str(product["kind"]), str(product["layout"]), local, staged, mapping)
    key = store_key(config.prefix, group, project, str(product["kind"]), local.name)
    url = storage.url(config.store, key)
    fs, path = storage.filesystem(url)
    previous = product.get("published") or {}
    with store_errors(url):
        if previous.get("url") != url:
            remove_partial(fs, path)  # leftovers of an interrupted copy (never recorded)
        record = copy_product(staged, fs, path)
    mapped = [mapping.map(u) for u in source_urls[:1]] if product["kind"] != "zarr" else []
    public = storage.store(config.store).public_url
    return {
        "store": config.store,
        **summary(record),
        "url": url,
        **({"public_url": f"{public.rstrip('/')}/{key}"} if public else {}),
        "references": rewritten.to_dict(),
        "storage_options": product_storage_options(storage, mapped, config.store),
        "store_options": storage.public_options(config.store),
    }
