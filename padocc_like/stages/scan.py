"""scan: inspect the files and decide whether the product can represent them exactly."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import Any

import numpy as np

from .._gc import gc_paused
from .._io import atomic_write_json, read_json, utc_now
from ..config.models import ResolvedProject
from ..errors import AggregationError, NotRepresentableError
from ..references.combine import CombineOptions, combine, select_variables
from ..references.model import Aggregate, AggVariable, FileScan
from ..scanners.base import IOCounter
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


def combine_options(project: ResolvedProject, kind: ProductKind | None = None) -> CombineOptions:
    """How the project's files combine for ``kind`` (default: the first requested kind);
    a ``cfa`` product holds whole-file fragments."""
    kind = kind or project.product.kinds[0]
    return CombineOptions(
        concat_dims=tuple(project.concat_dims) if project.concat_dims is not None else None,
        keep_variables=tuple(project.variables.keep) if project.variables.keep is not None else None,
        drop_variables=tuple(project.variables.drop),
        materialize_limit=int(project.materialize_limit_mb * (1 << 20)),
        # a cfa product holds whole files; a zarr store is copied from the files' regions
        fragments=kind in (ProductKind.CFA, ProductKind.ZARR),
    )


CFA_ADVICE = (
    "The files combine exactly as a CF aggregation of whole files: set `product: {kind: cfa}` "
    "for this project (scan.json says recommended_kind: cfa)."
)


def kerchunk_writer(project: ResolvedProject) -> KerchunkWriter:
    return KerchunkWriter.from_options(project.product)


def aggregate_key(state: dict[str, Any], fragments: bool = False) -> str:
    """What a saved aggregate depends on: the manifest, the configuration and the combine mode."""
    return digest("aggregate", state.get("manifest_sha256"), state.get("config_sha256"), fragments)


def aggregate_name(fragments: bool) -> str:
    """The cache file name of one combine mode's aggregate (one file per mode)."""
    return "aggregate-fragments" if fragments else "aggregate"


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


def kind_verdict(
    scans: list[FileScan], project: ResolvedProject, kind: ProductKind, combined: dict[bool, Any]
) -> tuple[dict[str, Any], Aggregate | None, AggregationError | None]:
    """Whether ``kind`` can represent the files: (scan.json's fields for it, the aggregate,
    the error saying why not). ``combined`` caches one combine per mode (aggregate or error)."""
    options = combine_options(project, kind)
    if options.fragments not in combined:
        try:
            combined[options.fragments] = combine(scans, options)
        except AggregationError as err:  # includes NotRepresentableError
            combined[options.fragments] = err
    result = combined[options.fragments]
    if isinstance(result, AggregationError):
        info: dict[str, Any] = {
            "representable": False,
            "reason": result.message,
            "error_kind": str(result.kind),
        }
        if (
            kind is ProductKind.KERCHUNK
            and isinstance(result, NotRepresentableError)
            and _fragments_combine(scans, options, combined)
        ):
            # Kerchunk cannot hold what a CF aggregation of whole files can
            info["recommended_kind"] = str(ProductKind.CFA)
            return info, None, NotRepresentableError(f"{result.message.rstrip('.')}. {CFA_ADVICE}")
        return info, None, result
    return {"representable": True}, result, None


def analyse(
    scans: list[FileScan], project: ResolvedProject, sampled: bool
) -> tuple[dict[str, Any], dict[ProductKind, Aggregate], dict[ProductKind, AggregationError]]:
    """The scan report (formats, variables, concat dims, verdict per kind; top-level fields
    for the first kind), the aggregate of each representable kind, and for each other kind
    the error that says why not."""
    kinds = project.product.kinds
    report: dict[str, Any] = {
        "format": SCAN_FORMAT,
        "version": SCAN_VERSION,
        "project": project.id,
        "created": utc_now(),
        "files_scanned": len(scans),
        "sampled": sampled,
        "file_formats": sorted({s.format for s in scans}),
    }
    selected = select_variables(scans[0], combine_options(project))
    report["variables"] = describe_variables(sorted(selected), scans)
    report["dimensions"] = scans[0].dims
    report["unlimited"] = list(scans[0].unlimited)
    combined: dict[bool, Any] = {}
    aggregates: dict[ProductKind, Aggregate] = {}
    problems: dict[ProductKind, AggregationError] = {}
    report["products"] = {}
    for kind in kinds:
        info, agg, problem = kind_verdict(scans, project, kind, combined)
        if agg is not None:
            aggregates[kind] = agg
            info["concat_dims"] = list(agg.concat_dims)
        if problem is not None:
            problems[kind] = problem
        report["products"][str(kind)] = info
    first = kinds[0]
    report.update(report["products"][str(first)])
    if first in aggregates:
        agg = aggregates[first]
        report["notes"] = agg.notes
        report["fragments"] = [f.to_dict() for f in agg.fragments]
        report["dimensions"] = agg.dims
    return report, aggregates, problems


def _fragments_combine(scans: list[FileScan], options: CombineOptions, combined: dict[bool, Any]) -> bool:
    """Whether files that do not combine as chunk tables combine as whole-file fragments."""
    if True not in combined:
        try:
            combined[True] = combine(scans, dataclasses.replace(options, fragments=True))
        except AggregationError as err:
            combined[True] = err
    return not isinstance(combined[True], AggregationError)


def estimate_kind(
    kind: ProductKind,
    project: ResolvedProject,
    agg: Aggregate | None,
    scans: list[FileScan],
    n_entries: int,
    sampled: bool,
) -> dict[str, Any]:
    """Scan's estimates of ``kind``'s product for the whole project (from the scanned files)."""
    scale = n_entries / len(scans)
    if kind is ProductKind.ZARR:
        if agg is None:
            return {
                "n_refs": 0,
                "layout": f"zarr{project.product.zarr.format}"
                + ("-zip" if project.product.zarr.store == "zip" else ""),
            }
        from ..writers.zarr import chunk_layouts

        layouts = chunk_layouts(agg, project.product.zarr)
        n_chunks = sum(
            math.prod(-(-n // c) for n, c in zip(agg.variables[v].shape, lay["chunks"], strict=True))
            for v, lay in layouts.items()
        )
        return {
            "n_refs": n_chunks,
            "layout": f"zarr{project.product.zarr.format}"
            + ("-zip" if project.product.zarr.store == "zip" else ""),
            "chunks": {v: lay["chunks"] for v, lay in layouts.items()},
            "uncompressed_bytes": sum(
                math.prod(v.shape) * np.dtype(v.dtype).itemsize for v in agg.variables.values()
            ),
        }
    if kind is ProductKind.CFA:
        # one fragment per file and fragmented variable; the file holds the rest itself
        n_refs = agg.n_fragments() if agg is not None else 0
        if sampled:
            n_refs = int(n_refs * scale)
        return {"n_refs": n_refs, "layout": LAYOUT}
    if agg is not None and not sampled:  # the whole project is combined: count, don't estimate
        n_refs = agg.n_refs()
        inline_bytes = sum(
            len(b) for v in agg.variables.values() if isinstance(v, AggVariable) for b in v.inline.values()
        )
    else:
        refs_per_file = float(np.mean([sum(v.n_stored() for v in s.variables.values()) for s in scans]))
        inline_bytes = sum(len(b) for s in scans for v in s.variables.values() for b in v.inline.values())
        n_refs = int(refs_per_file * n_entries)
    json_bytes = KerchunkWriter.estimate_json_bytes(n_refs, int(inline_bytes * scale))
    layout = project.product.layout
    if layout == "auto":
        layout = "parquet" if json_bytes > kerchunk_writer(project).parquet_threshold_bytes else "json"
    return {
        "n_refs": n_refs,
        "bytes_per_ref_json": JSON_BYTES_PER_REF,
        "json_bytes": json_bytes,
        "layout": layout,
    }


def kind_failure(
    kinds: tuple[ProductKind, ...], problems: dict[ProductKind, AggregationError]
) -> AggregationError:
    """The error scan fails with: the first requested kind that cannot be produced, named
    when the project asks for several kinds (of the same class, so its error kind stays)."""
    kind = next(k for k in kinds if k in problems)
    err = problems[kind]
    if len(kinds) == 1:
        return err
    return type(err)(f"product kind {str(kind)!r} cannot be produced: {err.message}")


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
    io = IOCounter()
    with gc_paused(freeze=True):
        scans = scan_entries(
            chosen, project.inline_threshold, paths.file_cache, ctx.workers, io, label=f"scan {project.id}"
        )
        per_file_s = (time.perf_counter() - t0) / max(1, len(chosen))
        report, aggregates, problems = analyse(scans, project, sampled)
    report["files_total"] = len(entries)
    kinds = project.product.kinds
    for kind in kinds:
        report["products"][str(kind)]["estimates"] = estimate_kind(
            kind, project, aggregates.get(kind), scans, len(entries), sampled
        )
    first = report["products"][str(kinds[0])]["estimates"]
    n_refs, layout = first["n_refs"], first["layout"]
    report["estimates"] = {
        **first,
        "source_bytes": sum(e["size"] for e in entries),
        "scan_seconds_per_file": round(per_file_s, 5),
        "compute_seconds": round(per_file_s * len(entries) * 1.2 * len(kinds) + 0.5, 2),
    }
    if io.files:  # remote files: what scanning them cost
        report["remote_io"] = {
            "files": io.files,
            "requests_per_file": round(io.requests / io.files, 2),
            "bytes_per_file": round(io.bytes_read / io.files),
            "seconds_per_file": round(per_file_s, 5),
        }
    report["product_kind"] = str(kinds[0])
    report["product_kinds"] = [str(k) for k in kinds]
    if not sampled:
        for kind, agg in aggregates.items():
            fragments = combine_options(project, kind).fragments
            save_aggregate(paths.file_cache, aggregate_key(state, fragments), agg, aggregate_name(fragments))
    atomic_write_json(paths.scan, report)
    fatal = {
        k: e for k, e in problems.items() if k in (ProductKind.KERCHUNK, ProductKind.CFA, ProductKind.ZARR)
    }
    if fatal:  # other kinds fail in compute, for want of a writer
        raise kind_failure(kinds, fatal)
    what = f"{len(chosen)}/{len(entries)} files" + (" (sample)" if sampled else "")
    concat = ",".join(report.get("concat_dims", [])) or "none"
    return StageOutput(
        message=f"{what}; concat {concat}; ~{n_refs} refs -> {layout}",
        fingerprint=scan_fingerprint(project, paths, state) or "",
        details={
            "representable": report["representable"],
            "layout": layout,
            "n_refs": n_refs,
            "kinds": {str(k): report["products"][str(k)]["representable"] for k in kinds},
        },
    )


def shard_slice(n_files: int, shard: int, n_shards: int) -> slice:
    """The manifest files of shard ``shard`` of ``n_shards``: contiguous, sizes within one of
    each other, together every file once."""
    if not 0 <= shard < n_shards:
        raise ValueError(f"no shard {shard} of {n_shards}")
    return slice(shard * n_files // n_shards, (shard + 1) * n_files // n_shards)


def scan_shard(
    project: ResolvedProject, paths: ProjectPaths, shard: int, n_shards: int, workers: int = 1
) -> int:
    """Scan one contiguous slice of the manifest's files into the project's scan cache (a SLURM
    shard task of a very large project): no state is written and no phase changes; the scan
    phase then finds these files cached. Returns the number of files in the slice."""
    files = read_json(paths.manifest)["files"]
    entries = files[shard_slice(len(files), shard, n_shards)]
    with gc_paused():
        scan_entries(entries, project.inline_threshold, paths.file_cache, workers)
    return len(entries)
