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
from ..state.store import ProjectPaths, current_product, reset_downstream, save_state
from ..types import Phase, ProductKind
from ..writers.base import get_writer
from .base import RunContext, StageOutput, digest
from .files import load_aggregate, scan_entries
from .scan import aggregate_key, combine_options

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
    product = current_product(state)
    if product is None or not Path(product["path"]).exists():
        return None  # nothing to keep: must compute
    return digest("compute", state.get("manifest_sha256"), state.get("config_sha256"))


def compute_stage(
    project: ResolvedProject, paths: ProjectPaths, state: dict[str, Any], ctx: RunContext
) -> StageOutput:
    get_writer(project.product.kind)  # an unknown kind fails before any work
    manifest = read_json(paths.manifest)
    verify_manifest(manifest)
    aggregate = load_aggregate(paths.file_cache, aggregate_key(state))
    if aggregate is None:  # scan sampled the files, or its cache is gone
        scans = scan_entries(manifest["files"], project.inline_threshold, paths.file_cache, ctx.workers)
        aggregate = combine(scans, combine_options(project))
    covered = {f.url for f in aggregate.fragments}
    missing = [e["url"] for e in manifest["files"] if e["url"] not in covered]
    if missing:  # the combiner places every file; this guards against regressions
        raise AggregationError(f"{len(missing)} manifest files are not in the product, e.g. {missing[0]}")
    apply_attribute_edits(aggregate, project.attributes)
    writer = get_writer(project.product.kind, project.product)
    layout = writer.layout_for(aggregate)
    out_dir = paths.products / str(project.product.kind)
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
    if project.product.kind is ProductKind.CFA:
        entry["cfa_uris"] = project.product.cfa_uris  # how fragments are named: readers differ
    state["products"] = [p for p in state["products"] if p["revision"] != revision] + [entry]
    state["current_product"] = revision
    # the catalog describes only a validated current product: withdraw the old item
    (paths.catalog / "item.json").unlink(missing_ok=True)
    reset_downstream(state, Phase.COMPUTE)
    save_state(paths, state)
    log.info("wrote %s (%d refs, %d bytes)", target, record.n_refs, record.size)
    return StageOutput(
        message=f"r{revision} {layout}, {record.n_refs} refs, {record.size / 1e3:.1f} kB",
        fingerprint=digest("compute", state.get("manifest_sha256"), state.get("config_sha256")),
        details={"revision": revision, "layout": layout},
    )
