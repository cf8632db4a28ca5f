"""Run phases over projects from this process, per-file work on the active engine.

With the local engine, ``workers > 1`` and several projects, projects run in parallel
(one process each, files serial); with one project, its per-file work uses the workers
instead. With a cluster engine (:mod:`.dask`) projects run one after the other here and
their per-file work goes to the cluster. This module and :mod:`.pool` are the only ones
besides the CLI that decide about processes.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import nullcontext
from dataclasses import replace
from typing import Any

from ..config.models import ResolvedProject, StacApiConfig, StoreConfig
from ..errors import WorkerCrashedError
from ..progress import Tracker, track
from ..stages import stage_for
from ..stages.base import PhaseOutcome, RunContext, crashed_worker, run_phase
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
        _run_in_processes(phase, wanted, ctx, done)
    else:
        for p in wanted:
            done(run_one(phase, p, ctx))
    return results


def _run_in_processes(
    phase: Phase, wanted: list[ResolvedProject], ctx: RunContext, done: Callable[[PhaseOutcome], None]
) -> None:
    """Projects in parallel, one worker process each. A worker that dies (a crash in a native
    library, killed for memory) fails the project it was running (``worker-crashed``); the
    pool is replaced and the projects it had not finished run again."""
    project_ctx = replace(ctx, workers=1)
    pending = list(wanted)
    while pending:
        batch, pending = pending, []
        with process_pool(min(ctx.workers, len(batch))) as pool:
            futures = {
                pool.submit(_run_one_payload, str(phase), p.model_dump(mode="json"), project_ctx): p
                for p in batch
            }
            workers = dict(getattr(pool, "_processes", None) or {})  # pid -> Process, all started
            broken: list[ResolvedProject] = []
            for fut in as_completed(futures):
                try:
                    done(fut.result())
                except BrokenProcessPool:
                    broken.append(futures[fut])
        if not broken:
            continue
        dead = _dead_workers(workers)
        for p in broken:
            crash = next(
                (
                    o
                    for pid, code in dead.items()
                    if (o := crashed_worker(ctx.work_dir, p.id, phase, pid, code))
                ),
                None,
            )
            if crash is not None:
                done(crash)
            else:
                pending.append(p)  # stopped with the pool, or never started: run it again
        if len(pending) == len(broken):  # no project owns the crash: never loop on it
            for p in pending:
                done(_unexplained_crash(p, phase, dead))
            return


def _dead_workers(workers: dict[int, Any]) -> dict[int, int]:
    """pid -> exit code of the pool's processes that died on their own (the executor stops
    the others with SIGTERM once the pool is broken)."""
    out = {}
    for pid, proc in workers.items():
        proc.join(5)
        code = proc.exitcode
        if code not in (None, 0, -signal.SIGTERM):
            out[pid] = code
    return out


def _unexplained_crash(project: ResolvedProject, phase: Phase, dead: dict[int, int]) -> PhaseOutcome:
    err = WorkerCrashedError(
        f"project {project.id!r}: a worker process died during {phase} (exit codes "
        f"{sorted(dead.values()) or 'unknown'}) and the project's state does not say which project it ran"
    )
    return PhaseOutcome(project.id, str(phase), str(Status.FAILED), err.message, error_kind=str(err.kind))
