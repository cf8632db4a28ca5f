"""Derived project status, read from state files only (no configuration models needed).

The CLI's ``status`` answers from here through the group index
(:mod:`padocc_like.group_index`) without importing pydantic or parsing YAML.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._io import read_json
from .errors import ConfigError, StateError
from .state.store import current_products, is_locked, load_state, project_paths
from .types import PHASE_ORDER, Status

STATE_FILTERS = ("done", "failed", "pending", "running", "interrupted", "ready")


def project_status(work_dir: Path, project_id: str, last_phase: str | None) -> dict[str, Any]:
    """A project's derived status: furthest phase, state, failure reason, and its current
    products: ``product`` is the first requested kind's, ``products`` every kind's by kind.

    ``last_phase`` is the last phase of the project's pipeline (``None`` if unknown).
    """
    paths = project_paths(work_dir, project_id)
    empty = {"phase": None, "error_kind": None, "product": None, "products": {}, "jobs": {}, "updated": None}
    try:
        state = load_state(paths)
    except StateError as err:
        return {
            **empty,
            "project": project_id,
            "state": "failed",
            "reason": err.message,
            "error_kind": str(err.kind),
        }
    if state is None:
        return {**empty, "project": project_id, "state": "pending", "reason": ""}
    phase_done = None
    state_name, reason, kind, at_phase = "pending", "", None, None
    records = [
        (phase, state["phases"].get(str(phase), {"status": str(Status.PENDING)})) for phase in PHASE_ORDER
    ]
    for i, (phase, rec) in enumerate(records):
        st = rec.get("status")
        if st == Status.PENDING and any(r.get("status") == Status.DONE for _, r in records[i + 1 :]):
            continue  # a phase the project's pipeline skips (later phases ran without it)
        if st == Status.DONE:
            phase_done = str(phase)
            continue
        if st == Status.FAILED:
            state_name, at_phase = "failed", str(phase)
            reason, kind = rec["error"]["message"], rec["error"]["kind"]
        elif st == Status.PENDING:
            at_phase = str(phase)  # the phase the project waits for
        elif st == Status.RUNNING:
            at_phase = str(phase)
            state_name = "running" if is_locked(paths) else "interrupted"
            if state_name == "interrupted":
                reason = f"{phase} was interrupted (process {rec.get('pid')} on {rec.get('host')} stopped); rerun it"
        break
    else:
        state_name = "done"
    if state_name == "pending" and phase_done is not None and phase_done == last_phase:
        # every phase of the project's pipeline is done (it has no later phases)
        state_name, at_phase = "done", None
    products = current_products(state)
    product = products[0] if products else None  # the first requested kind's
    if state_name == "pending" and products and all(p.get("status") == "valid" for p in products):
        state_name = "ready"
    fields = ("revision", "layout", "status", "path", "n_refs", "size")
    return {
        "project": project_id,
        "phase": at_phase or phase_done,
        "last_done": phase_done,
        "state": state_name,
        "reason": reason,
        "error_kind": kind,
        "product": {k: product.get(k) for k in fields} if product else None,
        "products": {str(p["kind"]): {k: p.get(k) for k in fields} for p in products},
        "jobs": {
            phase: {k: job.get(k) for k in ("array_task", "state", "exit_code", "elapsed", "attempt")}
            for phase, job in _jobs(paths).items()
        },
        "updated": state.get("updated"),
    }


def select_ids(
    work_dir: Path,
    group_id: str,
    last_phases: dict[str, str | None],
    projects: Sequence[str] | None = None,
    states: Sequence[str] | None = None,
    subset: str | None = None,
    source: str = "",
) -> list[str]:
    """Project ids filtered by id, by saved subset and by derived state, in group order."""
    chosen = list(last_phases)
    if projects:
        unknown = [p for p in projects if p not in last_phases]
        if unknown:
            raise ConfigError(f"{source}: no project {unknown[0]!r} in group {group_id!r}")
        chosen = list(projects)
    if subset:
        path = work_dir / "subsets" / f"{subset}.txt"
        if not path.exists():
            raise ConfigError(f"no saved subset {subset!r} ({path})")
        ids = {line.strip() for line in path.read_text().splitlines() if line.strip()}
        chosen = [p for p in chosen if p in ids]
    if states:
        bad = [s for s in states if s not in STATE_FILTERS]
        if bad:
            raise ConfigError(f"unknown state filter {bad[0]!r}; use one of {', '.join(STATE_FILTERS)}")
        chosen = [p for p in chosen if project_status(work_dir, p, last_phases[p])["state"] in states]
    return chosen


def _jobs(paths: Any) -> dict[str, Any]:
    """The project's batch jobs by phase, as the SLURM runner recorded them (``jobs.json``)."""
    try:
        return read_json(paths.root / "jobs.json")
    except (FileNotFoundError, ValueError):
        return {}
