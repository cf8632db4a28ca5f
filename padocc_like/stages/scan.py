"""scan: inspect the files and decide whether the product can represent them exactly."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import numpy as np

from .._gc import gc_paused
from .._io import atomic_write_json, read_json, utc_now
from ..config.models import ResolvedProject
from ..errors import AggregationError, NotRepresentableError
from ..references.combine import CombineOptions, combine, select_variables
from ..references.model import Aggregate, AggVariable, FileScan
from ..sources import verify_manifest
from ..state.store import ProjectPaths
from ..types import ProductKind
from ..writers.cfa import LAYOUT
from ..writers.kerchunk import JSON_BYTES_PER_REF, KerchunkWriter
from .base import RunContext, StageOutput, digest
from .files import sample_entries, save_aggregate, scan_entries

log = logging.getLogger(__name__)
SCAN_FORMAT = "padocc-like/scan"
SCAN_VERSION = 1


def combine_options(project: ResolvedProject) -> CombineOptions:
    """How the project's files combine; a ``cfa`` product holds whole-file fragments."""
    return CombineOptions(
        concat_dims=tuple(project.concat_dims) if project.concat_dims is not None else None,
        keep_variables=tuple(project.variables.keep) if project.variables.keep is not None else None,
        drop_variables=tuple(project.variables.drop),
        materialize_limit=int(project.materialize_limit_mb * (1 << 20)),
        fragments=project.product.kind is ProductKind.CFA,
    )


CFA_ADVICE = (
    "The files combine exactly as a CF aggregation of whole files: set `product: {kind: cfa}` "
    "for this project (scan.json says recommended_kind: cfa)."
)


def kerchunk_writer(project: ResolvedProject) -> KerchunkWriter:
    return KerchunkWriter.from_options(project.product)


def aggregate_key(state: dict[str, Any]) -> str:
    """What a saved aggregate depends on: the manifest and the configuration."""
    return digest("aggregate", state.get("manifest_sha256"), state.get("config_sha256"))


def scan_fingerprint(project: ResolvedProject, paths: ProjectPaths, state: dict[str, Any]) -> str | None:
    return digest("scan", state.get("manifest_sha256"), state.get("config_sha256"))


def describe_variables(names: list[str], scans: list[FileScan]) -> dict[str, dict[str, Any]]:
    """:func:`describe_variable` for several variables, in one pass over the scans."""
    chunk_shapes: dict[str, set[tuple[int, ...]]] = {n: set() for n in names}
    extents: dict[str, set[tuple[int, ...]]] = {n: set() for n in names}
    for s in scans:
        variables = s.variables
        for n in names:
            var = variables.get(n)
            if var is not None:
                chunk_shapes[n].add(tuple(var.chunks))
                extents[n].add(tuple(var.shape))
    return {n: _describe(scans[0].variables[n], chunk_shapes[n], extents[n]) for n in names}


def describe_variable(name: str, scans: list[FileScan]) -> dict[str, Any]:
    """What scan reports per variable: taken from the first file, with what varies."""
    return describe_variables([name], scans)[name]


def _describe(
    first: Any, chunk_shapes: set[tuple[int, ...]], extents: set[tuple[int, ...]]
) -> dict[str, Any]:
    info: dict[str, Any] = {
        "dims": list(first.dims),
        "dtype": first.dtype,
        "shape_first_file": list(first.shape),
        "chunks": [list(c) for c in sorted(chunk_shapes)],
        "codecs": [f["id"] for f in first.filters or []],
        "fill_value": first.fill_value,
        "storage": first.storage,
    }
    for key in ("scale_factor", "add_offset", "missing_value", "units", "calendar"):
        if key in first.attrs:
            info[key] = first.attrs[key]
    if len(extents) > 1:
        info["shapes_vary"] = True
    return info


def analyse(
    scans: list[FileScan], project: ResolvedProject, sampled: bool
) -> tuple[dict[str, Any], Aggregate | None, AggregationError | None]:
    """The scan report (formats, variables, concat dims, verdict), the combined aggregate
    when the files combine, and otherwise the error that says why not."""
    options = combine_options(project)
    report: dict[str, Any] = {
        "format": SCAN_FORMAT,
        "version": SCAN_VERSION,
        "project": project.id,
        "created": utc_now(),
        "files_scanned": len(scans),
        "sampled": sampled,
        "file_formats": sorted({s.format for s in scans}),
    }
    selected = select_variables(scans[0], options)
    report["variables"] = describe_variables(sorted(selected), scans)
    report["dimensions"] = scans[0].dims
    report["unlimited"] = list(scans[0].unlimited)
    try:
        agg = combine(scans, options)
    except AggregationError as err:  # includes NotRepresentableError
        report["representable"] = False
        report["reason"] = err.message
        report["error_kind"] = str(err.kind)
        if (
            project.product.kind is ProductKind.KERCHUNK
            and isinstance(err, NotRepresentableError)
            and _fragments_combine(scans, options)
        ):
            # Kerchunk cannot hold what a CF aggregation of whole files can
            report["recommended_kind"] = str(ProductKind.CFA)
            return report, None, NotRepresentableError(f"{err.message.rstrip('.')}. {CFA_ADVICE}")
        return report, None, err
    else:
        report["representable"] = True
        report["concat_dims"] = list(agg.concat_dims)
        report["notes"] = agg.notes
        report["fragments"] = [f.to_dict() for f in agg.fragments]
        report["dimensions"] = agg.dims
    return report, agg, None


def _fragments_combine(scans: list[FileScan], options: CombineOptions) -> bool:
    """Whether files that do not combine as chunk tables combine as whole-file fragments."""
    try:
        combine(scans, dataclasses.replace(options, fragments=True))
    except AggregationError:
        return False
    return True


def scan_stage(
    project: ResolvedProject, paths: ProjectPaths, state: dict[str, Any], ctx: RunContext
) -> StageOutput:
    manifest = read_json(paths.manifest)
    verify_manifest(manifest)
    entries = manifest["files"]
    limit = project.scan.all_files_up_to if project.scan.sample == "all" else int(project.scan.sample)
    chosen = sample_entries(entries, limit)
    sampled = len(chosen) < len(entries)
    t0 = time.perf_counter()
    with gc_paused():
        scans = scan_entries(chosen, project.inline_threshold, paths.file_cache, ctx.workers)
        per_file_s = (time.perf_counter() - t0) / max(1, len(chosen))
        report, agg, problem = analyse(scans, project, sampled)
    report["files_total"] = len(entries)
    # estimates for the whole project, extrapolated from the scanned files
    scale = len(entries) / len(chosen)
    estimates: dict[str, Any]
    if project.product.kind is ProductKind.CFA:
        # one fragment per file and fragmented variable; the file holds the rest itself
        n_refs = agg.n_fragments() if agg is not None else 0
        if sampled:
            n_refs = int(n_refs * scale)
        layout = LAYOUT
        estimates = {"n_refs": n_refs, "layout": layout}
    else:
        if agg is not None and not sampled:  # the whole project is combined: count, don't estimate
            n_refs = agg.n_refs()
            inline_bytes = sum(
                len(b)
                for v in agg.variables.values()
                if isinstance(v, AggVariable)
                for b in v.inline.values()
            )
        else:
            refs_per_file = float(np.mean([sum(v.n_stored() for v in s.variables.values()) for s in scans]))
            inline_bytes = sum(len(b) for s in scans for v in s.variables.values() for b in v.inline.values())
            n_refs = int(refs_per_file * len(entries))
        json_bytes = KerchunkWriter.estimate_json_bytes(n_refs, int(inline_bytes * scale))
        writer = kerchunk_writer(project)
        layout = project.product.layout
        if layout == "auto":
            layout = "parquet" if json_bytes > writer.parquet_threshold_bytes else "json"
        estimates = {
            "n_refs": n_refs,
            "bytes_per_ref_json": JSON_BYTES_PER_REF,
            "json_bytes": json_bytes,
            "layout": layout,
        }
    report["estimates"] = {
        **estimates,
        "source_bytes": sum(e["size"] for e in entries),
        "scan_seconds_per_file": round(per_file_s, 5),
        "compute_seconds": round(per_file_s * len(entries) * 1.2 + 0.5, 2),
    }
    report["product_kind"] = str(project.product.kind)
    if agg is not None and not sampled:
        save_aggregate(paths.file_cache, aggregate_key(state), agg)
    atomic_write_json(paths.scan, report)
    if project.product.kind in (ProductKind.KERCHUNK, ProductKind.CFA) and problem is not None:
        raise problem
    what = f"{len(chosen)}/{len(entries)} files" + (" (sample)" if sampled else "")
    concat = ",".join(report.get("concat_dims", [])) or "none"
    return StageOutput(
        message=f"{what}; concat {concat}; ~{n_refs} refs -> {layout}",
        fingerprint=scan_fingerprint(project, paths, state) or "",
        details={"representable": report["representable"], "layout": layout, "n_refs": n_refs},
    )
