"""compute: write the product, atomically, as a new revision."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .._io import read_json, remove_partials
from ..config.models import Attributes, ResolvedProject
from ..errors import AggregationError
from ..references.combine import combine
from ..references.model import Aggregate
from ..sources import verify_manifest
from ..state.store import ProjectPaths, current_products, reset_downstream, save_state, set_current_products
from ..types import Phase, ProductKind
from ..writers.base import get_writer
from .base import RunContext, StageOutput, digest
from .files import load_aggregate, scan_entries
from .scan import aggregate_key, aggregate_name, combine_options

log = logging.getLogger(__name__)


def apply_attribute_edits(aggregate: Aggregate, edits: Attributes) -> None:
    """Apply configured attribute updates and removals to the product (in place)."""
    g = edits.global_
    for key in g.remove:
        aggregate.attrs.pop(key, None)
    aggregate.attrs.update(g.set)
    for name, e in edits.variables.items():
        if name not in aggregate.variables:
            raise AggregationError(
                f"attribute edits name variable {name!r}, which the product does not have "
                f"(it has {sorted(aggregate.variables)})"
            )
        attrs = aggregate.variables[name].attrs
        for key in e.remove:
            attrs.pop(key, None)
        attrs.update(e.set)


def compute_fingerprint(project: ResolvedProject, paths: ProjectPaths, state: dict[str, Any]) -> str | None:
    products = current_products(state)
    kinds = [str(k) for k in project.product.kinds]
    if [p["kind"] for p in products] != kinds or not all(Path(p["path"]).exists() for p in products):
        return None  # nothing to keep: must compute
    return digest("compute", state.get("manifest_sha256"), state.get("config_sha256"))


def product_aggregates(
    project: ResolvedProject,
    paths: ProjectPaths,
    state: dict[str, Any],
    manifest: dict[str, Any],
    workers: int,
) -> dict[ProductKind, Aggregate]:
    """The aggregate of each requested kind: scan's saved one per combine mode, else recombined
    (the files scanned once); one aggregate per mode, shared by the kinds that use it."""
    by_mode: dict[bool, Aggregate] = {}
    scans: list[Any] | None = None
    out: dict[ProductKind, Aggregate] = {}
    for kind in project.product.kinds:
        options = combine_options(project, kind)
        mode = options.fragments
        if mode not in by_mode:
            aggregate = load_aggregate(paths.file_cache, aggregate_key(state, mode), aggregate_name(mode))
            if aggregate is None:  # scan sampled the files, or its cache is gone
                if scans is None:
                    scans = scan_entries(
                        manifest["files"],
                        project.inline_threshold,
                        paths.file_cache,
                        workers,
                        label=f"compute {project.id}: scan",
                    )
                aggregate = combine(scans, options)
            covered = {f.url for f in aggregate.fragments}
            missing = [e["url"] for e in manifest["files"] if e["url"] not in covered]
            if missing:  # the combiner places every file; this guards against regressions
                raise AggregationError(
                    f"{len(missing)} manifest files are not in the {kind} product, e.g. {missing[0]}"
                )
            apply_attribute_edits(aggregate, project.attributes)
            by_mode[mode] = aggregate
        out[kind] = by_mode[mode]
    return out


def write_product(
    project: ResolvedProject,
    paths: ProjectPaths,
    state: dict[str, Any],
    kind: ProductKind,
    aggregate: Aggregate,
) -> dict[str, Any]:
    """Write ``kind``'s product as the project's next revision (one revision sequence for all
    kinds: each product written gets the next number); add its record to state and return it."""
    writer = get_writer(kind, project.product)
    layout = writer.layout_for(aggregate)
    out_dir = paths.products / str(kind)
    remove_partials(out_dir)
    revision = max((p["revision"] for p in state["products"]), default=0) + 1
    target = out_dir / writer.target_name(revision, layout)
    record = writer.write(aggregate, target, layout=layout, revision=revision)
    entry = {
        **record.to_dict(),
        "status": "unvalidated",
        "path": str(target),
        "n_files": len(aggregate.urls),
        "concat_dims": list(aggregate.concat_dims),
        "notes": aggregate.notes,
        "manifest_sha256": state.get("manifest_sha256"),
    }
    if kind is ProductKind.CFA:
        entry["cfa_uris"] = project.product.cfa_uris  # how fragments are named: readers differ
    if kind is ProductKind.ZARR:
        from ..writers.zarr import read_provenance

        # the chunk layout chosen for each variable and why, and how it was copied
        provenance = read_provenance(target)
        entry["chunk_layout"] = provenance["layouts"]
        entry["copy_plans"] = provenance["copy_plans"]
    if project.products_store:  # staged here, then uploaded whole and verified
        from .. import storage
        from ..publish.products import product_storage_options, store_key, upload

        key = store_key("{group}/{project}", project.group, project.id, str(kind), target.name)
        entry["upload"] = upload(storage.active(), project.products_store, target, key)
        entry["url"] = entry["upload"]["url"]
        entry["store_options"] = storage.active().public_options(project.products_store)
        if kind is ProductKind.KERCHUNK:
            entry["storage_options"] = product_storage_options(
                storage.active(), list(aggregate.urls[:1]), project.products_store
            )
    state["products"] = [p for p in state["products"] if p["revision"] != revision] + [entry]
    log.info("wrote %s (%d refs, %d bytes)", target, record.n_refs, record.size)
    return entry


def compute_stage(
    project: ResolvedProject, paths: ProjectPaths, state: dict[str, Any], ctx: RunContext
) -> StageOutput:
    kinds = project.product.kinds
    for kind in kinds:
        get_writer(kind)  # an unknown kind fails before any work
    manifest = read_json(paths.manifest)
    verify_manifest(manifest)
    aggregates = product_aggregates(project, paths, state, manifest, ctx.workers)
    entries = [write_product(project, paths, state, kind, aggregates[kind]) for kind in kinds]
    set_current_products(state, {str(e["kind"]): e["revision"] for e in entries})
    # the catalog describes only validated current products: withdraw the old item
    (paths.catalog / "item.json").unlink(missing_ok=True)
    reset_downstream(state, Phase.COMPUTE)
    save_state(paths, state)
    parts = [f"r{e['revision']} {e['layout']}, {e['n_refs']} refs, {e['size'] / 1e3:.1f} kB" for e in entries]
    if len(entries) > 1:
        parts = [f"{e['kind']} {part}" for e, part in zip(entries, parts, strict=True)]
    return StageOutput(
        message="; ".join(parts),
        fingerprint=digest("compute", state.get("manifest_sha256"), state.get("config_sha256")),
        details={
            "revision": entries[0]["revision"],
            "layout": entries[0]["layout"],
            "revisions": {str(e["kind"]): e["revision"] for e in entries},
        },
    )
