"""validate: prove the current product equals its sources; write the report."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._io import atomic_write_json, atomic_write_text, read_json, utc_now
from ..config.models import ResolvedProject
from ..errors import PhaseOrderError, ValidationFailedError
from ..sources import verify_manifest
from ..state.store import ProjectPaths, current_product, reset_downstream, save_state
from ..types import Phase, Verdict
from ..validation.checks import validate
from ..validation.report import ValidationReport
from ..writers.base import ProductRecord, get_writer
from .base import RunContext, StageOutput, digest


def validate_fingerprint(project: ResolvedProject, paths: ProjectPaths, state: dict[str, Any]) -> str | None:
    product = current_product(state)
    if product is None:
        return None
    return digest(
        "validate",
        product["sha256"],
        product["revision"],
        project.validation.model_dump(mode="json"),
    )


@dataclass(frozen=True)
class ProductOpener:
    """``open_product(**kwargs)`` for validation: the writer's ``open_dataset`` (as users open
    the product). Picklable, so that validation's worker processes can open it too."""

    record: ProductRecord

    def __call__(self, **kwargs: Any) -> Any:
        if self.record.kind == "kerchunk":
            # xarray's kerchunk engine wraps every variable in dask by default; validation reads
            # whole slabs itself, and the plain zarr arrays underneath read them faster
            kwargs.setdefault("open_dataset_options", {"chunks": None})
        return get_writer(self.record.kind).open_dataset(self.record, **kwargs)


def report_paths(paths: ProjectPaths, revision: int) -> tuple[Path, Path]:
    return (
        paths.reports / f"validation-r{revision}.json",
        paths.reports / f"validation-r{revision}.txt",
    )


def validate_stage(
    project: ResolvedProject, paths: ProjectPaths, state: dict[str, Any], ctx: RunContext
) -> StageOutput:
    product = current_product(state)
    if product is None or not Path(product["path"]).exists():
        raise PhaseOrderError(f"project {project.id!r} has no product to validate; run compute")
    manifest = read_json(paths.manifest)
    verify_manifest(manifest)
    record = ProductRecord.from_dict({k: product[k] for k in ProductRecord.__dataclass_fields__})
    get_writer(record.kind)  # an unknown kind fails here, before any work
    started, t0 = utc_now(), time.perf_counter()
    findings, stats = validate(
        ProductOpener(record),
        record.path,
        record.layout,
        [e["url"] for e in manifest["files"]],
        project,
        project.validation.mode,
        workers=ctx.workers,
    )
    report = ValidationReport(
        project=project.id,
        product={k: product[k] for k in ("kind", "revision", "path", "layout", "sha256", "size")},
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
    verdict = report.verdict
    for p in state["products"]:
        if p["revision"] == record.revision:
            p["status"] = "valid" if verdict is Verdict.PASS else "invalid"
            p["validation_report"] = str(json_path.relative_to(paths.root))
    reset_downstream(state, Phase.VALIDATE)
    save_state(paths, state)
    n_err = len(report.errors)
    if verdict is Verdict.FAIL:
        first = report.errors[0]
        where = "".join(
            x
            for x in (
                f" [{first.variable}]" if first.variable else "",
                f" ({first.file})" if first.file else "",
            )
        )
        raise ValidationFailedError(
            f"product r{record.revision} differs from its sources: {n_err} error(s); first: "
            f"{first.check}: {first.message}{where}. Report: {json_path}"
        )
    return StageOutput(
        message=f"r{record.revision} PASS: {stats['values_compared']:,} values compared, "
        f"{sum(1 for f in findings if f.severity == 'allowed')} allowed differences",
        fingerprint=validate_fingerprint(project, paths, state) or "",
        details={
            "report": str(json_path.relative_to(paths.root)),
            "values_compared": stats["values_compared"],
        },
    )
