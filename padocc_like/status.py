"""Derived project status, read from state files and manifests (no configuration models
needed); a finished project whose local sources changed since init is ``stale`` (one ``stat``
per file).

The CLI's ``status`` answers from here through the group index
(:mod:`padocc_like.group_index`) without importing pydantic or parsing YAML.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import trace
from ._io import read_json
from .errors import ConfigError, StateError
from .state.store import current_products, is_locked, load_state, project_paths
from .types import PHASE_ORDER, Status

STATE_FILTERS = ("done", "failed", "pending", "running", "interrupted", "ready", "stale")
STALE_SHOWN = 3
"""Changed files a ``stale`` reason names (``stale`` in the row lists them all)."""


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
                last = trace.last_opened(paths.root)
                if last:  # a crash in a native library names no file itself
                    reason += f" (the last source file it opened: {last})"
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
    stale = changed_sources(paths) if products and state_name != "running" else []
    if stale and state_name in ("done", "ready"):
        state_name = "stale"
        shown = "; ".join(stale[:STALE_SHOWN]) + (
            f" (and {len(stale) - STALE_SHOWN} more)" if len(stale) > STALE_SHOWN else ""
        )
        reason = (
            f"sources changed since the product was computed: {shown}. Review the files, then run "
            "'init --force' and the pipeline again"
        )
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
        "stale": stale,
    }


def changed_sources(paths: Any) -> list[str]:
    """The project's local source files that differ from its manifest (removed, or another size
    or modification time): one ``stat`` per file, no read. The current products were computed
    from the manifest's files (compute refuses files that changed since init), so any file
    listed here makes them stale. Remote sources are not checked here (it would cost a listing
    per directory in every ``status``); scan, compute and validate check them."""
    try:
        manifest = read_json(paths.manifest)
    except (OSError, ValueError):
        return []
    changed = []
    for entry in manifest.get("files", []):
        url = entry.get("url", "")
        if "://" in url and not url.startswith("file://"):
            continue  # remote
        try:
            st = os.stat(url.removeprefix("file://"))
        except FileNotFoundError:
            changed.append(f"{url} was removed")
            continue
        except OSError as err:
            changed.append(f"{url} cannot be read ({err.strerror})")
            continue
        if st.st_size != entry.get("size"):
            changed.append(f"{url} changed size ({entry.get('size')} -> {st.st_size} bytes)")
        elif entry.get("mtime_ns") is not None and st.st_mtime_ns != entry["mtime_ns"]:
            changed.append(f"{url} was modified")
    return changed


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
        if not subset.replace("-", "").replace("_", "").isalnum():  # as api.save_subset: never a path
            raise ConfigError(f"subset name {subset!r} must be letters, digits, '-' or '_'")
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


HISTORY_SHOWN = 20
"""History events the text view of a project shows (the newest; ``--json`` has them all)."""


def project_detail(work_dir: Path, project_id: str, last_phase: str | None) -> dict[str, Any]:
    """Everything ``status -p ID`` shows of one project: its status row, and its phases
    (status, start, duration, message or error, log file), history, product revisions,
    validation summaries and batch jobs."""
    paths = project_paths(work_dir, project_id)
    row = project_status(work_dir, project_id, last_phase)
    try:
        state = load_state(paths) or {}
    except StateError:
        state = {}
    phases = {}
    for phase in PHASE_ORDER:
        rec = state.get("phases", {}).get(str(phase))
        if not rec:
            continue
        phases[str(phase)] = {
            k: rec.get(k) for k in ("status", "started", "finished", "duration_s", "message", "error", "log")
        }
    products = []
    for p in state.get("products", []):
        entry = {
            k: p.get(k) for k in ("kind", "revision", "layout", "status", "created", "size", "n_refs", "path")
        }
        entry["validation"] = _validation_summary(paths.root, p.get("validation_report"))
        products.append(entry)
    return {
        **row,
        "root": str(paths.root),
        "phases": phases,
        "history": list(state.get("history", [])),
        "revisions": products,
        "jobs_detail": _jobs(paths),
    }


def _validation_summary(root: Path, report: str | None) -> dict[str, Any] | None:
    """A validation report's verdict, mode, counts and duration (None when there is none)."""
    if not report:
        return None
    try:
        data = read_json(root / report)
    except (OSError, ValueError):
        return {"report": report, "verdict": "unreadable"}
    severities: dict[str, int] = {}
    for f in data.get("findings", []):
        severities[f.get("severity", "?")] = severities.get(f.get("severity", "?"), 0) + 1
    summary = data.get("summary", {})
    return {
        "report": report,
        "verdict": data.get("verdict"),
        "mode": data.get("mode"),
        "values_compared": summary.get("values_compared"),
        "files": summary.get("files"),
        "variables": summary.get("variables"),
        "findings": severities,
        "duration_s": data.get("duration_s"),
    }
