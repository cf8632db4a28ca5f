"""Run one phase of one project: the only place where stage outcomes become state.

``run_phase`` takes the project's lock, checks the phases it needs have
succeeded, skips the phase when its fingerprint (the digest of everything it
depends on) matches the last successful run, records ``running`` then
``done``/``failed`` atomically, and writes a log file per run
(``logs/<phase>-<timestamp>.log``, never overwritten).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import __version__, trace
from .._gc import thaw
from .._io import canonical_json, disk_full_error, is_disk_full, sha256_text, utc_now
from ..config.models import ResolvedProject
from ..errors import ErrorKind, PadoccLikeError, PhaseOrderError, StateLockedError, WorkerCrashedError
from ..state.store import (
    ProjectPaths,
    load_state,
    new_state,
    project_lock,
    project_paths,
    record_event,
    save_state,
)
from ..types import Phase, Status

log = logging.getLogger("padocc_like")


@dataclass(frozen=True)
class RunContext:
    """Everything a stage needs to know about the run (no globals, no environment)."""

    work_dir: Path
    group_id: str
    force: bool = False
    workers: int = 1
    """Processes for per-file work inside the project."""
    log_level: str = "info"
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    """The environment variables the configuration names for credentials (a STAC API's
    token), as the runner read them: in memory only, never written."""
    stac_bulk: bool = False
    """Publish catalog items in one bulk upsert after the phase instead of one by one."""


@dataclass
class StageOutput:
    """What a stage function returns to the runner."""

    message: str
    fingerprint: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PhaseOutcome:
    """The result of one phase of one project, as reported to the caller."""

    project: str
    phase: str
    status: str
    message: str
    skipped: bool = False
    error_kind: str | None = None
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


StageFn = Callable[[ResolvedProject, ProjectPaths, dict[str, Any], RunContext], StageOutput]
FingerprintFn = Callable[[ResolvedProject, ProjectPaths, dict[str, Any]], str | None]


def digest(*parts: Any) -> str:
    return sha256_text(canonical_json([__version__, *parts]))


def config_digest(project: ResolvedProject) -> str:
    return digest(project.model_dump(mode="json"))


def _attach_log(paths: ProjectPaths, phase: Phase, level: str) -> tuple[logging.Handler, Path]:
    paths.logs.mkdir(parents=True, exist_ok=True)
    stamp = utc_now().replace(":", "").replace("-", "")
    path = paths.logs / f"{phase}-{stamp}-{os.getpid()}.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(getattr(logging, level.upper(), logging.INFO))
    root = logging.getLogger("padocc_like")
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > handler.level:
        root.setLevel(handler.level)
    return handler, path


def run_phase(
    phase: Phase,
    project: ResolvedProject,
    ctx: RunContext,
    stage: StageFn,
    fingerprint: FingerprintFn,
) -> PhaseOutcome:
    """Run ``stage`` for ``project`` under the project's lock and record the outcome."""
    paths = project_paths(ctx.work_dir, project.id)
    t0 = time.perf_counter()
    try:
        lock = project_lock(paths)
        lock.__enter__()
    except StateLockedError as err:
        return _refused(project.id, phase, err)
    try:
        state = load_state(paths)
        if state is None:
            if phase is not Phase.INIT:
                err = PhaseOrderError(f"project {project.id!r} has not been initialised; run init first")
                return _refused(project.id, phase, err)
            state = new_state(project.id, ctx.group_id)
        if phase is not Phase.INIT and state.get("config_sha256") != config_digest(project):
            err = PhaseOrderError(
                f"project {project.id!r}: its configuration changed since init (the group, pipeline "
                "or profile file was edited, or padocc-like was upgraded); run init to take it"
            )
            return _refused(project.id, phase, err)
        for needed in phase.requires:
            if needed not in project.phases:
                continue  # the project's pipeline skips it
            if needed is Phase.FINALISE and project.publish is None:
                continue  # nothing to publish: finalise has nothing to add
            status = state["phases"].setdefault(str(needed), {"status": str(Status.PENDING)})["status"]
            if status != Status.DONE:
                err = PhaseOrderError(
                    f"project {project.id!r}: {phase} needs {needed} to have succeeded (it is {status})"
                )
                return _refused(project.id, phase, err)

        record = state["phases"].setdefault(str(phase), {"status": str(Status.PENDING)})
        expected = fingerprint(project, paths, state)
        if (
            not ctx.force
            and record.get("status") == Status.DONE
            and expected is not None
            and record.get("fingerprint") == expected
        ):
            return PhaseOutcome(
                project.id,
                str(phase),
                str(Status.DONE),
                f"up to date ({record.get('message', '')})",
                skipped=True,
            )

        try:
            handler, log_path = _attach_log(paths, phase, ctx.log_level)
        except OSError as err:  # a full disk: nothing can be recorded
            if not is_disk_full(err):
                raise
            return _refused(project.id, phase, disk_full_error(paths.logs, err))
        started = utc_now()
        state["phases"][str(phase)] = {
            "status": str(Status.RUNNING),
            "started": started,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "log": str(log_path.relative_to(paths.root)),
        }
        record_event(state, phase, "started")
        log.info("%s: %s started", project.id, phase)
        try:
            save_state(paths, state)
            with trace.tracing(paths.root):
                out = stage(project, paths, state, ctx)
        except PadoccLikeError as err:
            log.error("%s: %s failed: %s", project.id, phase, err.message)
            return _finish_failed(paths, state, phase, started, t0, err.to_dict(), log_path)
        except Exception as err:  # the runner boundary: record, never crash the group
            if is_disk_full(err):  # a write of a library (netCDF, zarr): name the place
                full = disk_full_error(paths.root, err)
                log.error("%s: %s failed: %s", project.id, phase, full)
                return _finish_failed(paths, state, phase, started, t0, full.to_dict(), log_path)
            log.error("%s: %s failed unexpectedly\n%s", project.id, phase, traceback.format_exc())
            info = {
                "kind": str(ErrorKind.INTERNAL),
                "type": type(err).__name__,
                "message": f"internal error: {type(err).__name__}: {err}",
            }
            return _finish_failed(paths, state, phase, started, t0, info, log_path)
        finally:
            thaw()  # what the stage set aside from the collector (its scans are released now)
            logging.getLogger("padocc_like").removeHandler(handler)
            with contextlib.suppress(OSError):  # a full disk fails the last flush of the log
                handler.close()
        duration = time.perf_counter() - t0
        state["phases"][str(phase)] = {
            "status": str(Status.DONE),
            "started": started,
            "finished": utc_now(),
            "duration_s": round(duration, 4),
            "fingerprint": out.fingerprint,
            "message": out.message,
            "log": str(log_path.relative_to(paths.root)),
            **({"details": out.details} if out.details else {}),
        }
        record_event(state, phase, "done", out.message, duration_s=round(duration, 4))
        try:
            save_state(paths, state)
        except OSError as err:  # a full disk: the stage's work is not recorded as done
            if not is_disk_full(err):
                raise
            full = err if isinstance(err, PadoccLikeError) else disk_full_error(paths.state, err)
            return _finish_failed(paths, state, phase, started, t0, full.to_dict(), log_path)
        return PhaseOutcome(project.id, str(phase), str(Status.DONE), out.message, duration_s=duration)
    finally:
        lock.__exit__(None, None, None)


def crashed_worker(
    work_dir: Path, project_id: str, phase: Phase, pid: int, exit_code: int
) -> PhaseOutcome | None:
    """Record that the process ``pid`` running ``phase`` of the project died (``exit_code``:
    a negative signal number, as :class:`multiprocessing.Process` gives it), naming the source
    file it opened last. None when the project's state does not show that process running
    the phase (it did not start there: the caller runs it again)."""
    import signal

    paths = project_paths(work_dir, project_id)
    try:
        with project_lock(paths):
            state = load_state(paths)
            record = (state or {}).get("phases", {}).get(str(phase), {})
            if state is None or record.get("status") != Status.RUNNING or record.get("pid") != pid:
                return None
            try:
                how = (
                    f"signal {signal.Signals(-exit_code).name}" if exit_code < 0 else f"exit code {exit_code}"
                )
            except ValueError:
                how = f"signal {-exit_code}"
            last = trace.last_opened(paths.root)
            err = WorkerCrashedError(
                f"project {project_id!r}: the process running {phase} died ({how}): a crash in a "
                "native library (HDF5, netCDF-C) or the system stopping it (out of memory)"
                + (f"; the last source file it opened: {last}" if last else "")
                + f"; log: {record.get('log', '-')}"
            )
            started = record.get("started") or utc_now()
            ran = datetime.now(UTC) - datetime.strptime(started, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
            t0 = time.perf_counter() - max(0.0, ran.total_seconds())  # the phase's time until it died
            return _finish_failed(
                paths,
                state,
                phase,
                started,
                t0,
                err.to_dict(),
                paths.root / record["log"],
            )
    except StateLockedError:
        return None


def _refused(project_id: str, phase: Phase, err: PadoccLikeError) -> PhaseOutcome:
    """A phase that did not start (nothing is written to state)."""
    return PhaseOutcome(project_id, str(phase), str(Status.FAILED), err.message, error_kind=str(err.kind))


def _finish_failed(
    paths: ProjectPaths,
    state: dict[str, Any],
    phase: Phase,
    started: str,
    t0: float,
    error: dict[str, str],
    log_path: Path,
) -> PhaseOutcome:
    # reload: the stage may have saved state (e.g. a product record) before failing
    current = load_state(paths) or state
    duration = time.perf_counter() - t0
    current["phases"][str(phase)] = {
        "status": str(Status.FAILED),
        "started": started,
        "finished": utc_now(),
        "duration_s": round(duration, 4),
        "error": error,
        "log": str(log_path.relative_to(paths.root)),
    }
    record_event(current, phase, "failed", error["message"], kind=error["kind"])
    try:
        save_state(paths, current)
    except OSError as err:  # a full disk: state.json keeps its last whole version
        log.error(
            "%s: %s: the failure could not be recorded in %s: %s", current["project"], phase, paths.state, err
        )
    return PhaseOutcome(
        current["project"],
        str(phase),
        str(Status.FAILED),
        error["message"],
        error_kind=error["kind"],
        duration_s=duration,
    )
