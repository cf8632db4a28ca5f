"""The Python API. The CLI is a thin layer over these functions.

Example::

    from padocc_like import api
    group = api.open_group("group.yaml")
    outcomes = api.run(group, ["init", "scan", "compute", "validate", "finalise", "catalog"], workers=2)
    for row in api.status(group):
        print(row["project"], row["state"], row["reason"])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import status as _status
from ._io import atomic_write_text, read_json
from .config.load import Group, load_group
from .config.models import DaskConfig, ResolvedProject
from .errors import ConfigError, StateError
from .stages.base import PhaseOutcome, RunContext
from .state.store import current_products, load_state, project_paths
from .types import PHASE_ORDER, Phase, Status

__all__ = [
    "PhaseOutcome",
    "html_report",
    "open_group",
    "open_item",
    "project_status",
    "report",
    "run",
    "save_subset",
    "select",
    "status",
    "write_collection",
]

STATE_FILTERS = _status.STATE_FILTERS


def open_group(path: str | Path) -> Group:
    """Load a group file (with its pipeline and profile)."""
    return load_group(path)


def open_item(item: str | Path | dict[str, Any], asset: str | None = None, **kwargs: Any) -> Any:
    """Open a product from its STAC item (a URL, a path or a dict) as consumers do: the
    asset's href with its ``xarray:open_kwargs`` (default asset: Kerchunk references, else
    the Zarr store, else the CFA file)."""
    from .catalog.open import open_item as _open_item

    return _open_item(item, asset, **kwargs)


def subset_path(group: Group, name: str) -> Path:
    return group.work_dir / "subsets" / f"{name}.txt"


def select(
    group: Group,
    projects: Sequence[str] | None = None,
    states: Sequence[str] | None = None,
    subset: str | None = None,
) -> list[ResolvedProject]:
    """The group's projects, filtered by id, by derived state, or by a saved subset."""
    ids = _status.select_ids(
        group.work_dir, group.id, last_phases(group), projects, states, subset, source=str(group.path)
    )
    return [group.projects[i] for i in ids]


def run(
    group: Group,
    phases: Iterable[Phase | str],
    *,
    projects: Sequence[ResolvedProject] | None = None,
    force: bool = False,
    workers: int | None = None,
    on_outcome: Callable[[PhaseOutcome], None] | None = None,
    env: Mapping[str, str] | None = None,
    runner: str = "local",
    dask: DaskConfig | None = None,
) -> list[PhaseOutcome]:
    """Run ``phases`` (in pipeline order) over ``projects`` (default: all). Store credentials
    come from ``env`` (default: the process environment).

    ``runner="dask"`` sends the per-file work to a Dask cluster: ``dask``, else the
    profile's ``dask`` settings, else a local cluster of ``workers``; the products are the
    same as the local runner's."""
    from . import storage
    from .config.load import group_stores
    from .runners.local import run_phases, secrets_for, storage_for

    if runner not in ("local", "dask"):
        raise ConfigError(f"unknown runner {runner!r}; api.run runs 'local' or 'dask' (SLURM: api.submit)")
    stac_api = group.config.stac_api or group.profile.stac_api
    secrets = secrets_for(stac_api, env)
    with storage.using(storage_for(group_stores(group.config, group.profile), env)):
        if runner == "dask":
            from .runners.dask import dask_engine
            from .runners.pool import using_engine

            cfg = dask or group.profile.dask or DaskConfig()
            n = workers or group.profile.workers
            with dask_engine(cfg, n, group.profile.slurm, group.work_dir) as engine, using_engine(engine):
                return _run(group, phases, projects, force, workers, on_outcome, run_phases, secrets)
        return _run(group, phases, projects, force, workers, on_outcome, run_phases, secrets)


def _run(
    group: Group,
    phases: Iterable[Phase | str],
    projects: Sequence[ResolvedProject] | None,
    force: bool,
    workers: int | None,
    on_outcome: Callable[[PhaseOutcome], None] | None,
    run_phases: Callable[..., list[PhaseOutcome]],
    secrets: Mapping[str, str],
) -> list[PhaseOutcome]:
    wanted = {Phase(p) for p in phases}
    ordered = [p for p in PHASE_ORDER if p in wanted]
    selected = list(projects) if projects is not None else list(group.projects.values())
    stac_api = group.config.stac_api or group.profile.stac_api
    ctx = RunContext(
        work_dir=group.work_dir,
        group_id=group.id,
        force=force,
        workers=workers or group.profile.workers,
        log_level=group.profile.log_level,
        secrets=secrets,
        stac_bulk=bool(stac_api and Phase.CATALOG in ordered and len(selected) >= stac_api.bulk_from),
    )
    group.work_dir.mkdir(parents=True, exist_ok=True)
    if force and Phase.INIT in ordered and len(ordered) > 1:
        # forcing a whole run redoes the work, but never silently accepts a changed set of
        # files: replacing an immutable manifest takes an explicit `init --force`
        outcomes = run_phases([Phase.INIT], selected, replace(ctx, force=False), on_outcome)
        failed = {o.project for o in outcomes if o.status == Status.FAILED}
        rest = [p for p in selected if p.id not in failed]
        outcomes += run_phases(ordered[1:], rest, ctx, on_outcome)
    else:
        outcomes = run_phases(ordered, selected, ctx, on_outcome)
    if Phase.CATALOG in ordered:
        if group.pipeline.catalog.enabled:
            collection = write_collection(group)
            if stac_api and collection is not None:
                from .catalog.publish import publish_group

                publish_group(group, stac_api, collection, ctx)
        else:
            (group.work_dir / "catalog" / "collection.json").unlink(missing_ok=True)
    return outcomes


def submit(
    group: Group,
    phases: Iterable[Phase | str],
    *,
    projects: Sequence[ResolvedProject] | None = None,
    dry_run: bool = False,
    env: Mapping[str, str] | None = None,
) -> list[Any]:
    """Submit ``phases`` over ``projects`` as SLURM array jobs (one per phase, chained task by
    task), with the profile's ``slurm`` settings; ``dry_run`` renders the scripts only."""
    from .runners import slurm

    wanted = {Phase(p) for p in phases}
    selected = list(projects) if projects is not None else list(group.projects.values())
    ordered = [p for p in PHASE_ORDER if p in wanted]
    cfg = slurm.slurm_config(group.profile.slurm)
    return slurm.submit(
        group_id=group.id,
        group_path=group.path,
        work_dir=group.work_dir,
        phases=ordered,
        projects=selected,
        cfg=cfg,
        env=env,
        dry_run=dry_run,
    )


def refresh_jobs(
    group: Group, projects: Sequence[ResolvedProject] | None = None, env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Ask SLURM about the projects' recorded jobs and record their states (project -> phase -> job)."""
    from .runners import slurm

    ids = [p.id for p in (projects if projects is not None else group.projects.values())]
    return slurm.refresh(group.work_dir, ids, env)


def retry(
    group: Group,
    phase: Phase | str,
    *,
    projects: Sequence[ResolvedProject] | None = None,
    dry_run: bool = False,
    env: Mapping[str, str] | None = None,
) -> tuple[list[Any], dict[str, str]]:
    """Resubmit the failed SLURM tasks of ``phase`` (and the pipeline's later phases) with
    escalated time or memory; returns the jobs and the projects refused (limit reached)."""
    from .runners import slurm

    phase = Phase(phase)
    selected = list(projects) if projects is not None else list(group.projects.values())
    cfg = slurm.slurm_config(group.profile.slurm)
    refresh_jobs(group, selected, env)
    resources, attempts, refused = slurm.retry_plan(group.work_dir, [p.id for p in selected], phase, cfg)
    again = [p for p in selected if p.id in resources]
    later = [ph for ph in PHASE_ORDER[PHASE_ORDER.index(phase) :] if any(ph in p.phases for p in again)]
    jobs = slurm.submit(
        group_id=group.id,
        group_path=group.path,
        work_dir=group.work_dir,
        phases=later,
        projects=again,
        cfg=cfg,
        env=env,
        dry_run=dry_run,
        resources=resources,
        attempt=attempts,
    )
    return jobs, refused


def last_phases(group: Group) -> dict[str, str | None]:
    """Each project's last pipeline phase, in group order."""
    return {p.id: str(max(p.phases, key=PHASE_ORDER.index)) for p in group.projects.values()}


def project_status(group: Group, project_id: str) -> dict[str, Any]:
    """A project's derived status: furthest phase, state, failure reason, product."""
    project = group.projects.get(project_id)
    last = str(max(project.phases, key=PHASE_ORDER.index)) if project else None
    return _status.project_status(group.work_dir, project_id, last)


def status(group: Group, projects: Sequence[ResolvedProject] | None = None) -> list[dict[str, Any]]:
    """One row per project (derived from project state files; nothing group-level is stored)."""
    ids = [p.id for p in (projects if projects is not None else group.projects.values())]
    return [project_status(group, pid) for pid in ids]


def report(group: Group, project_id: str, kind: str | None = None) -> dict[str, Any]:
    """The validation report of the project's current product (of ``kind``: the first
    requested kind's when None)."""
    if project_id not in group.projects:
        raise ConfigError(f"no project {project_id!r} in group {group.id!r}")
    paths = project_paths(group.work_dir, project_id)
    state = load_state(paths)
    products = current_products(state) if state else []
    if kind is None:
        product = products[0] if products else None
    else:
        product = next((p for p in products if p.get("kind") == kind), None)
        if product is None:
            have = ", ".join(str(p.get("kind")) for p in products) or "none"
            raise StateError(f"project {project_id!r} has no current {kind!r} product (current: {have})")
    if not product or "validation_report" not in product:
        raise StateError(f"project {project_id!r} has no validation report yet; run validate")
    return read_json(paths.root / product["validation_report"])


def html_report(
    group: Group, out: str | Path | None = None, projects: Sequence[ResolvedProject] | None = None
) -> Path:
    """Write the group's HTML report, one self-contained page (status breakdown, timings,
    sizes, validation results, plots), to ``out`` (default ``<work_dir>/report/index.html``)."""
    from .html_report import write_report

    return write_report(group, out, projects)


def save_subset(group: Group, name: str, projects: Sequence[ResolvedProject]) -> Path:
    """Save a named selection of projects for later runs (``--subset NAME``)."""
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"subset name {name!r} must be letters, digits, '-' or '_'")
    path = subset_path(group, name)
    atomic_write_text(path, "".join(f"{p.id}\n" for p in projects))
    return path


def write_collection(group: Group) -> Path | None:
    """Derive the group's STAC Collection from the items of its catalogued projects (under a
    group-level lock: concurrent runs, such as array tasks, each read every item afterwards)."""
    import fcntl
    import os

    lock_dir = group.work_dir / "catalog"
    lock_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_dir / ".collection.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return _write_collection(group)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _write_collection(group: Group) -> Path | None:
    from ._io import atomic_write_json
    from .catalog.stac import build_collection, validate_stac

    items, hrefs = [], []
    for pid in sorted(group.projects):
        item_path = project_paths(group.work_dir, pid).catalog / "item.json"
        if item_path.exists():
            try:
                items.append(read_json(item_path))
            except FileNotFoundError:
                continue  # withdrawn since we listed it (another run recomputed the project)
            hrefs.append(str(item_path.resolve()))
    target = group.work_dir / "catalog" / "collection.json"
    if not items:
        target.unlink(missing_ok=True)  # nothing catalogued: no collection
        return None
    cat = group.pipeline.catalog
    collection = build_collection(
        collection_id=cat.collection_id or group.id,
        description=cat.description or group.config.description or f"Products of group {group.id}",
        items=items,
        license=cat.license,
        keywords=cat.keywords,
        title=group.id,
        item_hrefs=hrefs,
    )
    validate_stac(collection)
    atomic_write_json(target, collection)
    return target
