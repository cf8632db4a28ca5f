"""catalog: write a STAC Item for the project's validated products (static JSON), one asset each."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from .. import __version__
from .._io import atomic_write_json, read_json, utc_now
from ..config.models import ResolvedProject
from ..errors import CatalogError
from ..state.store import ProjectPaths, current_products
from ..writers.base import ProductRecord
from .base import RunContext, StageOutput, digest


def collection_id(project: ResolvedProject) -> str:
    return project.catalog.collection_id or project.group


def href_for(path: Path, work_dir: Path, base: str | None) -> str:
    """A public URL under ``href_base`` when configured, else the absolute local path."""
    if base:
        return base.rstrip("/") + "/" + path.resolve().relative_to(work_dir.resolve()).as_posix()
    return str(path.resolve())


def served_href(product: dict[str, Any], work_dir: Path, base: str | None) -> str:
    """Where consumers read a product: its published copy, else its copy in the products
    store, else the work directory's (under ``href_base`` when configured)."""
    published = product.get("published") or {}
    if published.get("url"):
        return str(published.get("public_url") or published["url"])
    if product.get("url"):
        return str(product["url"])
    return href_for(Path(product["path"]), work_dir, base)


def as_served(product: dict[str, Any]) -> dict[str, Any]:
    """The product record as its served copy is: a published copy has its references mapped,
    so its size, checksum (of the one object, or of a tree's listing) and the options to read
    its references are the copy's."""
    published = product.get("published")
    if not published:
        return product
    return {
        **product,
        "size": published["bytes"],
        "sha256": published.get("sha256") or published["listing_sha256"],
        "storage_options": published.get("storage_options") or {},
        "store_options": published.get("store_options") or {},
    }


def attribute_properties(project: ResolvedProject, attrs: dict[str, Any]) -> dict[str, Any]:
    """Item properties taken from the product's global attributes (``catalog.attribute_properties``:
    property name -> attribute name), e.g. CMIP6 DRS facets; a missing attribute is an error."""
    out = {}
    for prop, attr in project.catalog.attribute_properties.items():
        if attr not in attrs:
            raise CatalogError(
                f"project {project.id!r}: catalog.attribute_properties takes {prop!r} from the global "
                f"attribute {attr!r}, which the product does not have"
            )
        value = attrs[attr]
        out[prop] = value.item() if hasattr(value, "item") and getattr(value, "ndim", 1) == 0 else value
    return out


def publish_item(project: ResolvedProject, item: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """PUT (or POST) the item into the project's STAC API, creating its collection (from this
    item, until the group's collection replaces it) when the API has none; where it went."""
    from ..catalog.api import StacApiClient
    from ..catalog.stac import build_collection

    assert project.stac_api is not None
    client = StacApiClient(project.stac_api, ctx.secrets)
    collection = build_collection(
        collection_id=collection_id(project),
        description=project.catalog.description or f"Products of group {project.group}",
        items=[item],
        license=project.catalog.license,
        keywords=project.catalog.keywords,
        title=project.group,
    )
    client.ensure_collection(collection)
    return published_record(project.stac_api.url, client.put_item(item), item)


def published_record(api: str, url: str, item: dict[str, Any]) -> dict[str, Any]:
    """What state keeps of a published item: the API, the item's URL there, its digest."""
    from .._io import canonical_json, sha256_text

    return {"api": api, "url": url, "item_sha256": sha256_text(canonical_json(item)), "published": utc_now()}


def software_versions() -> dict[str, str]:
    out = {"padocc-like": __version__}
    for pkg in ("h5py", "numcodecs", "xarray", "kerchunk", "zarr", "fsspec"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


def catalog_fingerprint(project: ResolvedProject, paths: ProjectPaths, state: dict[str, Any]) -> str | None:
    products = current_products(state)
    if not products:
        return None
    if project.stac_api and (state.get("catalog_published") or {}).get("api") != project.stac_api.url:
        return None  # not yet in the configured API
    parts: list[Any] = [x for p in products for x in (p["sha256"], p.get("status"), p.get("published"))]
    return digest(
        "catalog",
        *parts,
        project.catalog.model_dump(mode="json"),
        project.catalog_properties,
        project.stac_api.url if project.stac_api else None,
    )


def catalogued_products(project: ResolvedProject, state: dict[str, Any]) -> list[dict[str, Any]]:
    """The current products, every one of which must have passed validation."""
    products = current_products(state)
    if not products:
        raise CatalogError(
            f"project {project.id!r}: the current product has not passed validation "
            "(status none); it will not be catalogued"
        )
    for product in products:
        if product.get("status") != "valid":
            raise CatalogError(
                f"project {project.id!r}: the current {product['kind']} product has not passed validation "
                f"(status {product.get('status')}); it will not be catalogued"
            )
    return products


def catalog_stage(
    project: ResolvedProject, paths: ProjectPaths, state: dict[str, Any], ctx: RunContext
) -> StageOutput:
    from ..catalog.stac import build_item, summarise_dataset, validate_stac

    if not project.catalog.enabled:
        (paths.catalog / "item.json").unlink(missing_ok=True)
        return StageOutput(
            message="catalog disabled by the pipeline",
            fingerprint=catalog_fingerprint(project, paths, state) or "",
        )
    products = catalogued_products(project, state)
    product = products[0]  # the dataset is summarised from the first kind's product
    record = ProductRecord.from_dict({k: product[k] for k in ProductRecord.__dataclass_fields__})
    import xarray as xr

    from .. import storage
    from .validate import ProductOpener

    urls = [e["url"] for e in read_json(paths.manifest)["files"]]
    ds = ProductOpener(record, storage.sources_options(urls))(
        decode_times=xr.coders.CFDatetimeCoder(use_cftime=True), decode_timedelta=False
    )
    try:
        summary = summarise_dataset(ds)
        from_attrs = attribute_properties(project, dict(ds.attrs))
    finally:
        ds.close()
    work_dir = ctx.work_dir
    base = project.catalog.href_base
    entries = [
        (
            as_served(p),
            served_href(p, work_dir, base),
            href_for(paths.root / p["validation_report"], work_dir, base),
        )
        for p in products
    ]
    properties = {**project.catalog.extra_properties, **from_attrs, **project.catalog_properties}
    item = build_item(
        project_id=project.id,
        collection_id=collection_id(project),
        summary=summary,
        products=entries,
        properties=properties,
        software=software_versions(),
        title=project.id,
        description=project.description or f"{project.id}: aggregated from {product.get('n_files')} files",
        license=project.catalog.license,
        collection_href=href_for(
            work_dir / "catalog" / "collection.json", work_dir, project.catalog.href_base
        ),
    )
    validate_stac(item, Path(project.stac_schema_dir) if project.stac_schema_dir else None)
    target = paths.catalog / "item.json"
    atomic_write_json(target, item)
    state.pop("catalog_published", None)
    if project.stac_api and not ctx.stac_bulk:  # bulk: published by the runner after the phase
        state["catalog_published"] = publish_item(project, item, ctx)
    return StageOutput(
        message=f"STAC item {target.relative_to(paths.root)}",
        fingerprint=catalog_fingerprint(project, paths, state) or "",
        details={"item": str(target.relative_to(paths.root))},
    )
