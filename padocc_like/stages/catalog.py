"""catalog: write a STAC Item for the project's validated products (static JSON), one asset each."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from .. import __version__
from .._io import atomic_write_json
from ..config.models import ResolvedProject
from ..errors import CatalogError
from ..state.store import ProjectPaths, current_products
from ..writers.base import ProductRecord, get_writer
from .base import RunContext, StageOutput, digest


def collection_id(project: ResolvedProject) -> str:
    return project.catalog.collection_id or project.group


def href_for(path: Path, work_dir: Path, base: str | None) -> str:
    """A public URL under ``href_base`` when configured, else the absolute local path."""
    if base:
        return base.rstrip("/") + "/" + path.resolve().relative_to(work_dir.resolve()).as_posix()
    return str(path.resolve())


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
    parts: list[Any] = [x for p in products for x in (p["sha256"], p.get("status"))]
    return digest("catalog", *parts, project.catalog.model_dump(mode="json"), project.catalog_properties)


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

    ds = get_writer(record.kind).open_dataset(
        record, decode_times=xr.coders.CFDatetimeCoder(use_cftime=True), decode_timedelta=False
    )
    try:
        summary = summarise_dataset(ds)
    finally:
        ds.close()
    work_dir = ctx.work_dir
    base = project.catalog.href_base
    entries = [
        (
            p,
            href_for(Path(p["path"]), work_dir, base),
            href_for(paths.root / p["validation_report"], work_dir, base),
        )
        for p in products
    ]
    properties = {**project.catalog.extra_properties, **project.catalog_properties}
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
    validate_stac(item)
    target = paths.catalog / "item.json"
    atomic_write_json(target, item)
    return StageOutput(
        message=f"STAC item {target.relative_to(paths.root)}",
        fingerprint=catalog_fingerprint(project, paths, state) or "",
        details={"item": str(target.relative_to(paths.root))},
    )
