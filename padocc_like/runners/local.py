"""Run phases over projects from this process, per-file work on the active engine.

With the local engine, ``workers > 1`` and several projects, projects run in parallel
(one process each, files serial); with one project, its per-file work uses the workers
instead. With a cluster engine (:mod:`.dask`) projects run one after the other here and
their per-file work goes to the cluster. This module and :mod:`.pool` are the only ones
besides the CLI that decide about processes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import as_completed
from contextlib import nullcontext
from dataclasses import replace

from ..config.models import ResolvedProject, StacApiConfig, StoreConfig
from ..progress import Tracker, track
from ..stages import stage_for
from ..stages.base import PhaseOutcome, RunContext, run_phase
from ..storage import Storage, clear_downloads
from ..types import Phase, Status
from .pool import active_engine, process_pool


def storage_for(stores: Mapping[str, StoreConfig], env: Mapping[str, str] | None = None) -> Storage:
    """The run's :class:`Storage`: ``stores`` with credentials from ``env`` (default: this
    process's environment; the only place besides the CLI that reads it)."""
    return Storage(stores, dict(os.environ) if env is None else env)


def secrets_for(stac_api: StacApiConfig | None, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment variables a STAC API's authentication names (default: from this
    process's environment), and nothing else of it."""
    if stac_api is None:
        return {}
    env = dict(os.environ) if env is None else env
    names = {stac_api.auth.token_env, stac_api.auth.client_id_env, stac_api.auth.client_secret_env}
    return {k: v for k, v in env.items() if k in names}


def run_one(phase: Phase, project: ResolvedProject, ctx: RunContext) -> PhaseOutcome:
    stage, fingerprint = stage_for(phase)
    try:
        return run_phase(phase, project, ctx, stage, fingerprint)
    finally:
        clear_downloads()  # remote sources downloaded for the phase
        active_engine().phase_done()


def _run_one_payload(phase: str, project_json: dict, ctx: RunContext) -> PhaseOutcome:
    return run_one(Phase(phase), ResolvedProject.model_validate(project_json), ctx)


def run_phases(
    phases: Iterable[Phase],
    projects: list[ResolvedProject],
    ctx: RunContext,
    on_outcome: Callable[[PhaseOutcome], None] | None = None,
) -> list[PhaseOutcome]:
    """Run each phase over every project (phase by phase); a failed project stops there."""
    outcomes: list[PhaseOutcome] = []
    active = list(projects)
    for phase in phases:
        wanted = [p for p in active if phase in p.phases]
        with track(str(phase), len(wanted), "projects") if len(wanted) > 1 else nullcontext() as progress:
            results = _run_phase_over(phase, wanted, ctx, on_outcome, progress)
        failed = {o.project for o in results if o.status == Status.FAILED}
        active = [p for p in active if p.id not in failed]
        order = {p.id: i for i, p in enumerate(projects)}
        outcomes.extend(sorted(results, key=lambda o: order[o.project]))
    return outcomes


def _run_phase_over(
    phase: Phase,
    wanted: list[ResolvedProject],
    ctx: RunContext,
    on_outcome: Callable[[PhaseOutcome], None] | None,
    progress: Tracker | None,
) -> list[PhaseOutcome]:
    """One phase over ``wanted``: in parallel (one process per project) or one by one."""
    results: list[PhaseOutcome] = []

    def done(out: PhaseOutcome) -> None:
        results.append(out)
        if on_outcome:
            on_outcome(out)
        if progress is not None:
            progress.update()

    if ctx.workers > 1 and len(wanted) > 1 and active_engine().parallel_projects:
        project_ctx = replace(ctx, workers=1)
        with process_pool(min(ctx.workers, len(wanted))) as pool:
            futures = [
                pool.submit(_run_one_payload, str(phase), p.model_dump(mode="json"), project_ctx)
                for p in wanted
            ]
            for fut in as_completed(futures):
                done(fut.result())
    else:
        for p in wanted:
            done(run_one(phase, p, ctx))
    return results
