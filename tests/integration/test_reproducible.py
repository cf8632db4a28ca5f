"""Reproducibility: the same inputs and configuration give byte-identical products, and the
same reports, STAC items and state once timestamps are masked (docs/reliability.md lists them).

Two work directories run the same group over the same archive. Products never embed the work
directory; reports, items and state name their product by its absolute path, so they are
compared after the work directory is replaced by a placeholder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from padocc_like import api

PHASES = ["init", "scan", "compute", "validate", "finalise", "catalog"]

TIMESTAMP_FIELDS = frozenset(
    {
        # ISO 8601 times
        "created",  # manifest, scan.json, state, product records, STAC items
        "updated",  # state, STAC items
        "started",  # phase records, validation reports
        "finished",  # phase records, validation reports
        "time",  # state history events
        "processing:datetime",  # STAC items
        "submitted",  # jobs.json (SLURM runs only)
        # durations measured by the clock
        "duration_s",  # phase records, history, validation reports
        "compute_seconds",  # scan.json estimates
        "scan_seconds_per_file",  # scan.json estimates
        "seconds_per_file",  # scan.json remote_io
        # the process that ran a phase, and its log file (named by time and pid)
        "host",
        "pid",
        "log",
    }
)
"""Every field whose value depends on when (or by which process) a run happened. Everything
else in the work directory is a function of the inputs and the configuration."""

TEXT_TIMINGS = re.compile(r" in \d+(\.\d+)? s\b")
"""The one timing in a validation report's text summary ("... compared ... in 0.55 s")."""


def masked(obj: Any, work: Path) -> Any:
    """``obj`` with every timestamp field replaced and the work directory made a placeholder."""
    if isinstance(obj, dict):
        return {k: "<time>" if k in TIMESTAMP_FIELDS else masked(v, work) for k, v in obj.items()}
    if isinstance(obj, list):
        return [masked(v, work) for v in obj]
    if isinstance(obj, str):
        return obj.replace(str(work), "<work>")
    return obj


def outputs(work: Path) -> dict[str, bytes]:
    """Every file of a work directory but logs, locks and caches (internal, pickled), by path."""
    out = {}
    for path in sorted(work.rglob("*")):
        rel = path.relative_to(work).as_posix()
        if not path.is_file() or "/logs/" in rel or "/cache/" in rel or path.name.endswith(".lock"):
            continue
        out[rel] = path.read_bytes()
    return out


def comparable(rel: str, data: bytes, work: Path) -> Any:
    """What must be equal between two runs: products byte for byte, the rest masked."""
    if "/products/" in rel:
        return data
    if rel.endswith(".json"):
        return masked(json.loads(data), work)
    return TEXT_TIMINGS.sub(" in <time> s", data.decode().replace(str(work), "<work>"))


GROUP = """
group: repro
work_dir: {work}
profile: serial
projects:
  - id: multi
    sources: {{glob: {archive}/*.nc}}
    product: {{kind: [kerchunk, cfa, zarr]}}
  - id: parquet
    sources: {{glob: {archive}/*.nc}}
    product: {{layout: parquet}}
  - id: zarr3
    sources: {{glob: {archive}/*.nc}}
    product: {{kind: zarr, zarr: {{format: 3}}}}
  - id: cfa-relative
    sources: {{glob: {archive}/*.nc}}
    product: {{kind: cfa, cfa_uris: relative}}
"""


def run_in(tmp_path: Path, archive: Path, name: str) -> tuple[api.Group, Path]:
    work = tmp_path / name
    path = tmp_path / f"{name}.yaml"
    path.write_text(GROUP.format(work=work, archive=archive))
    group = api.open_group(path)
    outcomes = api.run(group, PHASES)
    assert all(o.status == "done" for o in outcomes), [(o.project, o.phase, o.message) for o in outcomes]
    return group, work


def test_two_work_dirs_give_identical_products_and_reports(tmp_path, archive):
    archive(n_files=5)
    _, work_a = run_in(tmp_path, tmp_path / "archive", "work-a")
    _, work_b = run_in(tmp_path, tmp_path / "archive", "work-b")
    a, b = outputs(work_a), outputs(work_b)
    assert sorted(a) == sorted(b)
    products = [rel for rel in a if "/products/" in rel]
    layouts = {rel.split("/")[4].split(".", 1)[-1] for rel in products}
    assert {"json", "nc", "parq", "zarr"} <= {layout.split("/")[0] for layout in layouts}, layouts
    for rel in a:
        if "/products/" in rel:
            assert str(work_a).encode() not in a[rel], f"{rel} embeds its work directory"
        assert comparable(rel, a[rel], work_a) == comparable(rel, b[rel], work_b), rel


def test_a_forced_rerun_gives_the_same_bytes_and_report(tmp_path, archive):
    """A rerun in the same work directory (forced) writes the next revision: the same bytes."""
    archive(n_files=3)
    group, work = run_in(tmp_path, tmp_path / "archive", "work")
    before = api.status(group)
    outcomes = api.run(group, ["compute", "validate"], force=True)
    assert all(o.status == "done" for o in outcomes), [o.message for o in outcomes]
    after = api.status(group)
    for old, new in zip(before, after, strict=True):
        for kind, product in old["products"].items():
            again = new["products"][kind]
            assert again["revision"] > product["revision"]
            assert _tree_bytes(Path(again["path"])) == _tree_bytes(Path(product["path"])), (
                old["project"],
                kind,
            )
            old_report = _report(work, old["project"], product["revision"])
            new_report = _report(work, old["project"], again["revision"])
            assert _without_revision(masked(new_report, work)) == _without_revision(masked(old_report, work))


def _tree_bytes(path: Path) -> dict[str, bytes]:
    if path.is_file():
        return {"": path.read_bytes()}
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _report(work: Path, project: str, revision: int) -> dict[str, Any]:
    return json.loads((work / "projects" / project / "reports" / f"validation-r{revision}.json").read_text())


def _without_revision(report: dict[str, Any]) -> dict[str, Any]:
    """A report names its product's revision and path: the rest must not change."""
    product = {k: v for k, v in report["product"].items() if k not in ("path", "revision")}
    return {**report, "product": product}
