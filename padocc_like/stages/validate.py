"""validate: prove the current product equals its sources; write the report."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import storage
from .._io import atomic_write_json, atomic_write_text, read_json, utc_now
from ..config.models import ResolvedProject
from ..errors import PhaseOrderError, ValidationFailedError
from ..sources import verify_manifest
from ..state.store import ProjectPaths, current_products, reset_downstream, save_state
from ..types import Phase, Verdict
from ..validation.checks import validate
from ..validation.report import ValidationReport
from ..writers.base import ProductRecord, get_writer
from .base import RunContext, StageOutput, digest


def validate_fingerprint(project: ResolvedProject, paths: ProjectPaths, state: dict[str, Any]) -> str | None:
    products = current_products(state)
    if not products:
        return None
    parts: list[Any] = [x for p in products for x in (p["sha256"], p["revision"])]
    return digest("validate", *parts, project.validation.model_dump(mode="json"))


@dataclass(frozen=True)
class ProductOpener:
    """``open_product(**kwargs)`` for validation: the writer's ``open_dataset`` (as users open
    the product). Picklable, so that validation's worker processes can open it too."""

    record: ProductRecord
    sources_options: dict[str, Any] | None = field(default=None, repr=False)
    """How to read remote sources (the kerchunk engine's ``remote_protocol`` and
    ``remote_options``, credentials included: held in memory only)."""

    def __call__(self, **kwargs: Any) -> Any:
        if self.record.kind == "kerchunk":
            # xarray's kerchunk engine wraps every variable in dask by default; validation reads
            # whole slabs itself, and the plain zarr arrays underneath read them faster
            kwargs.setdefault("open_dataset_options", {"chunks": None})
        if self.sources_options and self.record.kind in ("kerchunk", "cfa"):
            options = self.sources_options
            if self.record.kind == "cfa":  # fragments are opened with the store's options
                options = options.get("remote_options", {})
            kwargs.setdefault("storage_options", dict(options))
        return get_writer(self.record.kind).open_dataset(self.record, **kwargs)


def report_paths(paths: ProjectPaths, revision: int) -> tuple[Path, Path]:
    return (
        paths.reports / f"validation-r{revision}.json",
        paths.reports / f"validation-r{revision}.txt",
    )


def validate_product(
    project: ResolvedProject, paths: ProjectPaths, product: dict[str, Any], urls: list[str], workers: int
) -> tuple[ValidationReport, Path]:
    """Validate one product against the sources; write its report (``validation-r<N>``) and
    set its status (``valid`` or ``invalid``) in its state record."""
    if not Path(product["path"]).exists():
        raise PhaseOrderError(
            f"project {project.id!r} has no product to validate: its {product['kind']} product "
            f"r{product['revision']} is missing ({product['path']}); run compute"
        )
    record = ProductRecord.from_dict({k: product[k] for k in ProductRecord.__dataclass_fields__})
    get_writer(record.kind)  # an unknown kind fails here, before any work
    started, t0 = utc_now(), time.perf_counter()
    findings, stats = validate(
        ProductOpener(record, storage.sources_options(urls)),
        record.path,
        record.layout,
        urls,
        project,
        project.validation.mode,
        workers=workers,
    )
    report = ValidationReport(
        project=project.id,
        product={
            k: product[k]
            for k in ("kind", "revision", "path", "layout", "sha256", "size", "chunk_layout")
            if k in product
        },
        mode=str(project.validation.mode),
        findings=findings,
        stats=stats,
        started=started,
        finished=utc_now(),
        duration_s=time.perf_counter() - t0,
    )
    json_path, text_path = report_paths(paths, record.revision)
    atomic_write_json(json_path, report.to_dict())
    atomic_write_text(text_path, report.summary_text() + "\n")
    product["status"] = "valid" if report.verdict is Verdict.PASS else "invalid"
    product["validation_report"] = str(json_path.relative_to(paths.root))
    return report, json_path


def failure_message(product: dict[str, Any], report: ValidationReport, json_path: Path) -> str:
    """Why a product failed validation: its kind and revision, the first error, the report."""
    first = report.errors[0]
    where = "".join(
        x
        for x in (
            f" [{first.variable}]" if first.variable else "",
            f" ({first.file})" if first.file else "",
        )
    )
    return (
        f"{product['kind']} product r{product['revision']} differs from its sources: "
        f"{len(report.errors)} error(s); first: {first.check}: {first.message}{where}. Report: {json_path}"
    )


def validate_stage(
    project: ResolvedProject, paths: ProjectPaths, state: dict[str, Any], ctx: RunContext
) -> StageOutput:
    products = current_products(state)
    if not products:
        raise PhaseOrderError(f"project {project.id!r} has no product to validate; run compute")
    manifest = read_json(paths.manifest)
    verify_manifest(manifest)
    urls = [e["url"] for e in manifest["files"]]
    results = [(p, *validate_product(project, paths, p, urls, ctx.workers)) for p in products]
    reset_downstream(state, Phase.VALIDATE)
    save_state(paths, state)
    failed = [failure_message(p, r, j) for p, r, j in results if r.verdict is Verdict.FAIL]
    if failed:
        raise ValidationFailedError("; ".join(failed))
    parts = [
        f"r{p['revision']} PASS: {r.stats['values_compared']:,} values compared, "
        f"{sum(1 for f in r.findings if f.severity == 'allowed')} allowed differences"
        for p, r, _ in results
    ]
    if len(results) > 1:
        parts = [f"{p['kind']} {part}" for (p, _, _), part in zip(results, parts, strict=True)]
    return StageOutput(
        message="; ".join(parts),
        fingerprint=validate_fingerprint(project, paths, state) or "",
        details={
            "report": str(results[0][2].relative_to(paths.root)),
            "reports": {str(p["kind"]): str(j.relative_to(paths.root)) for p, _, j in results},
            "values_compared": sum(r.stats["values_compared"] for _, r, _ in results),
        },
    )
