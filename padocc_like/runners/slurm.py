"""Run phases as SLURM array jobs: render, submit, monitor, retry with escalation.

The selected projects are sorted into resource buckets (:func:`plan`: each project's time and
memory need, rounded up a doubling ladder of the configured defaults); per bucket, one array
job per phase, one task per project (or per ``projects_per_task``); later phases' arrays wait
for the same task of the previous one (``--dependency=aftercorr``), so a project moves on as
soon as its own task succeeded. A project with more than ``split_files`` files (manifest
known at submission) gets a shard array before scan: each shard task scans a slice of its
files into the scan cache, and the scan task, started once every shard ended, finds them
there (:func:`shard_counts`, :func:`run_shard`). Each task runs ``python -m padocc_like task``
over its projects with the local runner: the state it writes is the same as a local run's.
The submission records, for every project, the job and task ids, the attempt and the
resources asked for (``jobs.json``, beside ``state.json``); :func:`refresh` reads the scheduler (``squeue``, ``scontrol``, then ``sacct`` or the
job-completion log for jobs that left the queue) and records each task's end; a task the
scheduler killed (time limit, memory, cancellation) fails its phase with that reason.
:func:`retry` resubmits failed tasks with more time or memory, up to the configured limits.

Every value that reaches the shell is quoted with :func:`shlex.quote`; a submission error is
an error (:class:`~padocc_like.errors.JobSubmissionError`), never a silent exit 0.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import trace
from .._io import atomic_write_json, atomic_write_text, read_json, utc_now
from ..config.models import ResolvedProject, SlurmConfig
from ..errors import (
    ConfigError,
    JobCancelledError,
    JobError,
    JobOutOfMemoryError,
    JobSubmissionError,
    JobTimeoutError,
    StateLockedError,
    WorkerCrashedError,
)
from ..state.store import ProjectPaths, load_state, project_lock, project_paths, save_state
from ..types import PHASE_ORDER, Phase, Status

log = logging.getLogger(__name__)

TERMINAL = {
    "COMPLETED",
    "FAILED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "CANCELLED",
    "NODE_FAIL",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
}
"""Scheduler states after which a task will not run again by itself."""

KILLED: dict[str, type[JobError]] = {
    "TIMEOUT": JobTimeoutError,
    "DEADLINE": JobTimeoutError,
    "OUT_OF_MEMORY": JobOutOfMemoryError,
    "CANCELLED": JobCancelledError,
    "NODE_FAIL": JobCancelledError,
    "PREEMPTED": JobCancelledError,
    "BOOT_FAIL": JobCancelledError,
}
"""States in which the scheduler, not the task, ended the run: the phase fails with this error."""


@dataclass(frozen=True)
class Task:
    """One array task: its index and the projects it runs, in order."""

    index: int
    projects: tuple[str, ...]


@dataclass(frozen=True)
class Shard:
    """One shard task: it scans slice ``shard`` of ``n_shards`` of a project's files."""

    index: int
    project: str
    shard: int
    n_shards: int


@dataclass(frozen=True)
class Bucket:
    """Projects that need about the same resources: one chain of arrays (one per phase).
    Task (and shard) indices count on across buckets: they index the submission's
    ``tasks.json``, each bucket's arrays a range of it."""

    index: int
    time_min: int
    memory_mb: int
    split: bool
    tasks: tuple[Task, ...]
    shards: tuple[Shard, ...] = ()

    @property
    def projects(self) -> list[str]:
        return [pid for t in self.tasks for pid in t.projects]


@dataclass(frozen=True)
class ArrayJob:
    """One phase's array job of one bucket as rendered (and, once submitted, its id); with
    ``shard`` the array that scans the files of the bucket's split projects before scan."""

    phase: Phase
    tasks: tuple[Task, ...]
    time_min: int
    memory_mb: int
    script: str
    script_path: Path
    job_id: str | None = None
    bucket: int = 0
    shard: bool = False


# --- resources ---------------------------------------------------------------------------
def estimated_resources(paths_root: Path, phase: Phase, cfg: SlurmConfig) -> tuple[int, int]:
    """(minutes, MB) for ``phase`` of a project: scan's estimates when there are any (twice the
    estimated compute time, at least the configured default), else the configured defaults."""
    time_min, memory_mb = cfg.time_min, cfg.memory_mb
    scan = paths_root / "scan.json"
    if phase in (Phase.COMPUTE, Phase.VALIDATE) and scan.exists():
        try:
            estimates = read_json(scan).get("estimates", {})
        except (OSError, ValueError):
            estimates = {}
        seconds = float(estimates.get("compute_seconds") or 0)
        time_min = max(time_min, math.ceil(2 * seconds / 60))
    return min(time_min, cfg.max_time_min), min(memory_mb, cfg.max_memory_mb)


def escalated(previous: Mapping[str, Any], cfg: SlurmConfig) -> tuple[int, int]:
    """The resources of a retry: more time after a timeout, more memory after running out of
    it, up to the limits (a failure of another kind retries with the same)."""
    time_min, memory_mb = int(previous["time_min"]), int(previous["memory_mb"])
    state = previous.get("state")
    if state in ("TIMEOUT", "DEADLINE"):
        time_min = min(cfg.max_time_min, math.ceil(time_min * cfg.escalation))
    if state == "OUT_OF_MEMORY":
        memory_mb = min(cfg.max_memory_mb, math.ceil(memory_mb * cfg.escalation))
    return time_min, memory_mb


def pack(projects: Sequence[str], per_task: int, first: int = 0) -> list[Task]:
    """Projects into tasks of ``per_task`` each, in order; indices from ``first``."""
    return [
        Task(first + i, tuple(projects[j : j + per_task]))
        for i, j in enumerate(range(0, len(projects), per_task))
    ]


def rung(value: int, base: int, cap: int) -> int:
    """``value`` rounded up the ladder ``base``, 2 x ``base``, 4 x ``base``... (at most ``cap``)."""
    step = base
    while step < value and step < cap:
        step *= 2
    return min(step, cap)


def plan(
    projects: Sequence[str],
    needs: Mapping[str, tuple[int, int]],
    cfg: SlurmConfig,
    shards: Mapping[str, int] | None = None,
) -> list[Bucket]:
    """Projects into resource buckets, each packed into tasks: a project's (minutes, MB) need
    rounded up the ladder of the configured defaults (doubling, capped at the limits) names its
    bucket; projects split into ``shards`` (project -> shard count) get buckets of their own.
    Buckets go smallest first; projects keep their order within one."""
    shards = shards or {}
    members: dict[tuple[bool, int, int], list[str]] = {}
    for pid in projects:
        time_min, memory_mb = needs[pid]
        key = (
            pid in shards,
            rung(time_min, cfg.time_min, cfg.max_time_min),
            rung(memory_mb, cfg.memory_mb, cfg.max_memory_mb),
        )
        members.setdefault(key, []).append(pid)
    buckets: list[Bucket] = []
    n_tasks = n_shards = 0
    for i, key in enumerate(sorted(members)):
        tasks = pack(members[key], cfg.projects_per_task, first=n_tasks)
        slices = [(pid, k) for pid in members[key] if pid in shards for k in range(shards[pid])]
        split = [Shard(n_shards + j, pid, k, shards[pid]) for j, (pid, k) in enumerate(slices)]
        n_tasks += len(tasks)
        n_shards += len(split)
        buckets.append(Bucket(i, key[1], key[2], key[0], tuple(tasks), tuple(split)))
    return buckets


def shard_counts(
    work_dir: Path, projects: Sequence[ResolvedProject], phases: Sequence[Phase], cfg: SlurmConfig
) -> dict[str, int]:
    """How many shard tasks scan the files of each project to split (project -> count): those
    with scan among ``phases`` whose manifest (init done) lists more than ``split_files`` files."""
    if Phase.SCAN not in phases or cfg.split_files is None:
        return {}
    per_shard = cfg.shard_files or cfg.split_files
    counts: dict[str, int] = {}
    for project in projects:
        if Phase.SCAN not in project.phases:
            continue
        try:
            n_files = len(read_json(project_paths(work_dir, project.id).manifest)["files"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # no manifest yet: init runs in this submission, the project is not split
        if n_files > cfg.split_files and math.ceil(n_files / per_shard) > 1:
            counts[project.id] = math.ceil(n_files / per_shard)
    return counts


# --- rendering ---------------------------------------------------------------------------
def _hms(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}:00"


def render(
    *,
    phase: Phase,
    group_path: Path,
    tasks_file: Path,
    n_tasks: int,
    time_min: int,
    memory_mb: int,
    cfg: SlurmConfig,
    log_dir: Path,
    job_name: str,
    python: str,
    dependency: str | None = None,
    first_task: int = 0,
    after_all: Sequence[str] = (),
    shard: bool = False,
) -> str:
    """The ``sbatch`` script of one phase's array over tasks ``first_task`` onwards (every value
    quoted for the shell): each task waits for the same task of ``dependency`` and for all the
    tasks of every job in ``after_all``; with ``shard``, the tasks are shards (scan files only)."""
    q = shlex.quote
    logs = f"{phase}-shard" if shard else str(phase)
    directives = [
        f"--job-name={job_name}",
        f"--array={first_task}-{first_task + n_tasks - 1}",
        f"--time={_hms(time_min)}",
        f"--mem={memory_mb}M",
        f"--cpus-per-task={cfg.cpus_per_task}",
        "--ntasks=1",
        f"--output={log_dir / f'{logs}-%A_%a.out'}",
        f"--error={log_dir / f'{logs}-%A_%a.err'}",
    ]
    if cfg.partition:
        directives.append(f"--partition={cfg.partition}")
    if cfg.account:
        directives.append(f"--account={cfg.account}")
    if cfg.qos:
        directives.append(f"--qos={cfg.qos}")
    after = ([f"aftercorr:{dependency}"] if dependency else []) + [f"afterany:{j}" for j in after_all]
    if after:  # a task whose project failed the previous phase is cancelled, not left waiting
        directives += [f"--dependency={','.join(after)}", "--kill-on-invalid-dep=yes"]
    directives += cfg.extra_directives
    for d in directives:
        if "\n" in d or "\r" in d:
            raise ConfigError(f"SLURM directive {d!r} spans lines")
    lines = ["#!/bin/bash", *(f"#SBATCH {q(d)}" for d in directives), "set -eo pipefail"]
    lines += list(cfg.setup)
    command = [python, "-m", "padocc_like", "task", str(group_path), "--phase", str(phase)]
    command += ["--tasks", str(tasks_file), *(["--shard"] if shard else []), "--index"]
    lines.append(" ".join(q(c) for c in command) + ' "${SLURM_ARRAY_TASK_ID}"')
    return "\n".join(lines) + "\n"


# --- scheduler commands ------------------------------------------------------------------
def _run(cmd: Sequence[str], env: Mapping[str, str] | None, what: str, timeout: float = 60) -> str:
    try:
        proc = subprocess.run(
            list(cmd),
            capture_output=True,
            text=True,
            env={**os.environ, **env} if env else None,
            timeout=timeout,
        )
    except FileNotFoundError as err:
        raise JobSubmissionError(f"{what}: {cmd[0]} is not installed (is this a SLURM login node?)") from err
    except subprocess.TimeoutExpired as err:
        raise JobSubmissionError(f"{what}: {cmd[0]} did not answer within {timeout:.0f} s") from err
    if proc.returncode != 0:
        raise JobSubmissionError(
            f"{what}: {' '.join(shlex.quote(c) for c in cmd)} failed (exit {proc.returncode}): "
            + (proc.stderr.strip() or proc.stdout.strip() or "no message")
        )
    return proc.stdout


def sbatch(script_path: Path, env: Mapping[str, str] | None = None) -> str:
    """Submit a script; the job id (``sbatch --parsable``)."""
    out = _run(["sbatch", "--parsable", str(script_path)], env, f"submitting {script_path}").strip()
    job_id = out.split(";", 1)[0]
    if not job_id.isdigit():
        raise JobSubmissionError(f"submitting {script_path}: sbatch answered {out!r}, not a job id")
    return job_id


_SQUEUE_FORMAT = "%i|%T|%M|%r"


def queued(job_id: str, env: Mapping[str, str] | None = None) -> dict[int, dict[str, Any]]:
    """Tasks of an array job still known to the queue: task index -> state, elapsed, reason."""
    out = _run(["squeue", "-h", "-r", "-j", job_id, "-o", _SQUEUE_FORMAT], env, f"querying job {job_id}")
    tasks: dict[int, dict[str, Any]] = {}
    for line in out.splitlines():
        ident, state, elapsed, reason = ([*line.split("|"), "", "", "", ""])[:4]
        if "_" in ident and ident.split("_", 1)[1].isdigit():
            tasks[int(ident.split("_", 1)[1])] = {"state": state, "elapsed": elapsed, "reason": reason}
    return tasks


def finished(job_id: str, env: Mapping[str, str] | None = None) -> dict[int, dict[str, Any]]:
    """Tasks that left the queue, from ``sacct`` when accounting runs, else from the
    job-completion log (``JobCompLoc``) or ``scontrol``: index -> state and exit code."""
    try:
        out = _run(
            ["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "JobID,State,ExitCode,Elapsed"], env, "sacct"
        )
        tasks = {}
        for line in out.splitlines():
            ident, state, code, elapsed = ([*line.split("|"), "", "", "", ""])[:4]
            if "_" in ident and ident.split("_", 1)[1].isdigit():
                tasks[int(ident.split("_", 1)[1])] = _ended(state.split()[0], code, elapsed)
        if tasks:
            return tasks
    except JobSubmissionError:
        pass  # no accounting here
    tasks = _from_scontrol(job_id, env)
    for index, rec in _from_jobcomp(job_id, env).items():
        tasks.setdefault(index, rec)
    return tasks


def _ended(state: str, exit_code: str, elapsed: str = "") -> dict[str, Any]:
    code, _, signal = exit_code.partition(":")
    return {
        "state": state,
        "exit_code": int(code) if code.isdigit() else None,
        "signal": int(signal) if signal.isdigit() else None,
        "elapsed": elapsed,
    }


def _from_scontrol(job_id: str, env: Mapping[str, str] | None) -> dict[int, dict[str, Any]]:
    try:
        out = _run(["scontrol", "-o", "show", "job", job_id], env, "scontrol")
    except JobSubmissionError:
        return {}
    tasks = {}
    for line in out.splitlines():
        fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        if fields.get("ArrayJobId") == job_id and fields.get("ArrayTaskId", "").isdigit():
            tasks[int(fields["ArrayTaskId"])] = _ended(
                fields.get("JobState", ""), fields.get("ExitCode", ""), fields.get("RunTime", "")
            )
    return tasks


def _from_jobcomp(job_id: str, env: Mapping[str, str] | None) -> dict[int, dict[str, Any]]:
    """The job-completion log's records of the array's tasks (``jobcomp/filetxt``)."""
    try:
        config = _run(["scontrol", "show", "config"], env, "scontrol show config")
    except JobSubmissionError:
        return {}
    match = re.search(r"^JobCompLoc\s*=\s*(\S+)", config, re.M)
    if not match or not Path(match.group(1)).is_file():
        return {}
    tasks = {}
    for line in Path(match.group(1)).read_text(errors="replace").splitlines():
        fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        array = fields.get("ArrayJobId") or fields.get("JobId", "").split("_", 1)[0]
        index = fields.get("ArrayTaskId") or ([*fields.get("JobId", "").split("_", 1), ""])[1]
        if array == job_id and index.isdigit():
            tasks[int(index)] = _ended(fields.get("JobState", ""), fields.get("ExitCode", ""))
    return tasks


# --- submission ----------------------------------------------------------------------------
def slurm_config(profile_slurm: SlurmConfig | None) -> SlurmConfig:
    """The profile's SLURM settings; a configuration error naming where they go when absent."""
    if profile_slurm is None:
        raise ConfigError("--runner slurm needs a 'slurm' section in the profile (configs/<site>.yaml)")
    return profile_slurm


def submit(
    *,
    group_id: str,
    group_path: Path,
    work_dir: Path,
    phases: Sequence[Phase],
    projects: Sequence[ResolvedProject],
    cfg: SlurmConfig,
    env: Mapping[str, str] | None = None,
    dry_run: bool = False,
    resources: Mapping[str, tuple[int, int]] | None = None,
    attempt: Mapping[str, int] | None = None,
) -> list[ArrayJob]:
    """Render (and unless ``dry_run``, submit) the arrays over ``projects``: per resource bucket
    (:func:`plan`) one array per phase, chained task by task, with a shard array before scan
    for the projects split (:func:`shard_counts`); record the jobs in every project's
    ``jobs.json``. ``resources`` (project -> minutes, MB) overrides the estimates (retries)."""
    ids = [p.id for p in projects]
    if not ids:
        return []
    stamp = utc_now().replace(":", "").replace("-", "")
    run_dir = work_dir / "slurm" / stamp
    log_dir = run_dir / "logs"
    wanted = {
        pid: {
            phase: (resources or {}).get(pid)
            or estimated_resources(project_paths(work_dir, pid).root, phase, cfg)
            for phase in phases
        }
        for pid in ids
    }
    needs = {pid: (max(t for t, _ in w.values()), max(m for _, m in w.values())) for pid, w in wanted.items()}
    buckets = plan(ids, needs, cfg, shard_counts(work_dir, projects, phases, cfg))
    all_tasks = [t for b in buckets for t in b.tasks]
    all_shards = [s for b in buckets for s in b.shards]
    if max(len(all_tasks), len(all_shards)) > cfg.max_array_size:
        raise ConfigError(
            f"{max(len(all_tasks), len(all_shards))} array tasks exceed slurm.max_array_size "
            f"{cfg.max_array_size}; select fewer projects or raise projects_per_task (or shard_files)"
        )
    tasks_file = run_dir / "tasks.json"
    if not dry_run:
        log_dir.mkdir(parents=True, exist_ok=True)
        listed: dict[str, Any] = {"group": group_id, "tasks": [list(t.projects) for t in all_tasks]}
        if all_shards:
            listed["shards"] = [[s.project, s.shard, s.n_shards] for s in all_shards]
        atomic_write_json(tasks_file, listed)
    chain = _Chain(group_id, group_path, tasks_file, log_dir, cfg, env, dry_run, len(buckets) > 1)
    jobs: list[ArrayJob] = []
    for bucket in buckets:
        previous: str | None = None
        for phase in phases:
            time_min = max(wanted[pid][phase][0] for pid in bucket.projects)
            memory_mb = max(wanted[pid][phase][1] for pid in bucket.projects)
            shard_job: ArrayJob | None = None
            if phase == Phase.SCAN and bucket.shards:
                # the scan tasks start once every shard of the bucket ended, done or not
                shard_tasks = [Task(s.index, (s.project,)) for s in bucket.shards]
                after = [previous] if previous else []
                shard_job = chain.array(
                    bucket, phase, shard_tasks, time_min, memory_mb, None, after, shard=True
                )
                jobs.append(shard_job)
            after = [chain.ref(shard_job)] if shard_job else []
            job = chain.array(bucket, phase, bucket.tasks, time_min, memory_mb, previous, after)
            jobs.append(job)
            previous = chain.ref(job)
            if job.job_id:
                extra = _shard_fields(bucket, shard_job) if shard_job else {}
                _record_submission(work_dir, job, attempt or {}, extra)
    return jobs


@dataclass(frozen=True)
class _Chain:
    """What every array of one submission shares."""

    group_id: str
    group_path: Path
    tasks_file: Path
    log_dir: Path
    cfg: SlurmConfig
    env: Mapping[str, str] | None
    dry_run: bool
    several: bool  # more than one bucket: scripts are named by bucket

    def array(
        self,
        bucket: Bucket,
        phase: Phase,
        tasks: Sequence[Task],
        time_min: int,
        memory_mb: int,
        dependency: str | None,
        after_all: Sequence[str] = (),
        shard: bool = False,
    ) -> ArrayJob:
        """Render one array over ``tasks`` (and unless a dry run, write and submit it)."""
        name = f"{phase}-shards" if shard else str(phase)
        script = render(
            phase=phase,
            group_path=self.group_path,
            tasks_file=self.tasks_file,
            n_tasks=len(tasks),
            first_task=tasks[0].index,
            time_min=time_min,
            memory_mb=memory_mb,
            cfg=self.cfg,
            log_dir=self.log_dir,
            job_name=f"padocc-{self.group_id}-{name}",
            python=self.cfg.python or sys.executable,
            dependency=dependency,
            after_all=after_all,
            shard=shard,
        )
        script_path = self.tasks_file.parent / f"{name}{f'-b{bucket.index}' if self.several else ''}.sbatch"
        job_id = None
        if not self.dry_run:
            atomic_write_text(script_path, script)
            job_id = sbatch(script_path, self.env)
        return ArrayJob(
            phase, tuple(tasks), time_min, memory_mb, script, script_path, job_id, bucket.index, shard
        )

    def ref(self, job: ArrayJob) -> str:
        """How a later array names ``job`` in its dependency (a placeholder in a dry run)."""
        if job.job_id:
            return job.job_id
        where = f" of bucket {job.bucket}" if self.several else ""
        return f"<job id of the {'shard' if job.shard else job.phase} array{where}>"


def _shard_fields(bucket: Bucket, job: ArrayJob) -> dict[str, dict[str, Any]]:
    """What the scan records of a bucket's split projects say about their shards."""
    fields: dict[str, dict[str, Any]] = {}
    for s in bucket.shards:
        rec = fields.setdefault(s.project, {"shard_job": job.job_id, "shards": s.n_shards})
        rec["shard_tasks"] = [rec.get("shard_tasks", [s.index])[0], s.index]
    return fields


def _record_submission(
    work_dir: Path, job: ArrayJob, attempt: Mapping[str, int], extra: Mapping[str, Mapping[str, Any]]
) -> None:
    for task in job.tasks:
        for pid in task.projects:
            record = {
                "runner": "slurm",
                "job_id": job.job_id,
                "task_id": task.index,
                "array_task": f"{job.job_id}_{task.index}",
                "attempt": attempt.get(pid, 1),
                "time_min": job.time_min,
                "memory_mb": job.memory_mb,
                "bucket": job.bucket,
                "submitted": utc_now(),
                "script": str(job.script_path),
                "state": "PENDING",
                **extra.get(pid, {}),
            }
            with jobs_file(project_paths(work_dir, pid)) as jobs:
                jobs[str(job.phase)] = record


def run_shard(group: Any, tasks_file: Path, index: int, workers: int = 1) -> tuple[str, int, int, int]:
    """What shard task ``index`` runs: scan its slice of its project's files into the scan
    cache (no state written). Returns (project, shard, shard count, files scanned)."""
    from ..stages.scan import scan_shard

    shards = json.loads(tasks_file.read_text()).get("shards", [])
    if not 0 <= index < len(shards):
        raise ConfigError(f"{tasks_file}: no shard {index} (it has {len(shards)})")
    pid, shard, n_shards = shards[index]
    if pid not in group.projects:
        raise ConfigError(f"{tasks_file}: shard {index} names project {pid!r}, not in the group")
    paths = project_paths(group.work_dir, pid)
    return pid, shard, n_shards, scan_shard(group.projects[pid], paths, shard, n_shards, workers)


JOBS_FILE = "jobs.json"
"""A project's batch jobs, by phase (the runner's record, beside ``state.json``: the tasks hold
the state lock while they run, so submissions and monitoring write here, under a lock of
their own)."""


def load_jobs(paths: ProjectPaths) -> dict[str, Any]:
    """A project's recorded jobs by phase (``{}`` when it has none)."""
    try:
        return read_json(paths.root / JOBS_FILE)
    except FileNotFoundError:
        return {}


@contextlib.contextmanager
def jobs_file(paths: ProjectPaths) -> Iterator[dict[str, Any]]:
    """The project's jobs, to update in the ``with`` block; written atomically at its end,
    under an exclusive (waiting) lock of the jobs file."""
    paths.root.mkdir(parents=True, exist_ok=True)
    fd = os.open(paths.root / ".jobs.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        jobs = load_jobs(paths)
        yield jobs
        atomic_write_json(paths.root / JOBS_FILE, jobs)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# --- monitoring ----------------------------------------------------------------------------
def refresh(
    work_dir: Path, project_ids: Sequence[str], env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Ask the scheduler about every recorded, unfinished job of ``project_ids``; record what it
    says; fail the phase of a task the scheduler killed. Returns project -> phase -> job record."""
    by_job: dict[str, dict[int, dict[str, Any]]] = {}
    out: dict[str, Any] = {}
    for pid in project_ids:
        paths = project_paths(work_dir, pid)
        if not load_jobs(paths):
            continue
        killed: list[tuple[str, dict[str, Any]]] = []
        with jobs_file(paths) as jobs:
            for phase_name, job in jobs.items():
                if job.get("state") in TERMINAL and job.get("recorded_failure") is not False:
                    continue
                job_id = str(job["job_id"])
                if job_id not in by_job:
                    tasks = finished(job_id, env)
                    tasks.update(queued(job_id, env))  # the queue is the most recent word
                    by_job[job_id] = tasks
                now = by_job[job_id].get(int(job["task_id"]))
                if now is None:
                    continue
                job.update({k: v for k, v in now.items() if v not in (None, "")})
                if job["state"] in KILLED or job["state"] == "FAILED":
                    killed.append((phase_name, dict(job)))
            out[pid] = {k: dict(v) for k, v in jobs.items()}
        for phase_name, job in killed:
            _fail_killed(paths, Phase(phase_name), job)
    return out


def _fail_killed(paths: ProjectPaths, phase: Phase, job: Mapping[str, Any]) -> None:
    """Record the phase as failed when the scheduler ended the task before the phase did
    (left alone while another run holds the project: the next refresh records it)."""
    try:
        lock = project_lock(paths)
        lock.__enter__()
    except StateLockedError:
        return
    try:
        state = load_state(paths)
        if state is None:
            return
        record = state["phases"].setdefault(str(phase), {"status": str(Status.PENDING)})
        if record.get("status") in (Status.DONE, Status.FAILED):
            return  # the phase finished (the task died after it) or failed with its own reason
        if job["state"] == "FAILED":
            if record.get("status") != Status.RUNNING:
                return  # the task failed before the phase began: its log says why
            # the process died inside the phase without recording why: a native crash
            last = trace.last_opened(paths.root)
            err = WorkerCrashedError(
                f"SLURM task {job['array_task']} died while {phase} was running (exit code "
                f"{job.get('exit_code', '?')}): a crash in a native library (HDF5, netCDF-C) or the "
                "process being killed"
                + (f"; the last source file it opened: {last}" if last else "")
                + f"; log: {record.get('log', '-')}"
            )
            _record_failure(paths, state, phase, err, job)
            return
        earlier = PHASE_ORDER[: PHASE_ORDER.index(phase)]
        if record.get("status") == Status.PENDING and any(
            (state["phases"].get(str(p)) or {}).get("status") == Status.FAILED for p in earlier
        ):
            return  # never started: cancelled because an earlier phase failed, which says why
        what = {
            "TIMEOUT": f"ran out of time (limit {job['time_min']} min)",
            "DEADLINE": f"reached its deadline (limit {job['time_min']} min)",
            "OUT_OF_MEMORY": f"ran out of memory (limit {job['memory_mb']} MB)",
        }.get(job["state"], f"was ended by the scheduler ({job['state']})")
        err = KILLED[job["state"]](f"SLURM task {job['array_task']} {what}; 'retry' resubmits it with more")
        _record_failure(paths, state, phase, err, job)
    finally:
        lock.__exit__(None, None, None)


def _record_failure(
    paths: ProjectPaths, state: dict[str, Any], phase: Phase, err: Any, job: Mapping[str, Any]
) -> None:
    state["phases"][str(phase)] = {
        "status": str(Status.FAILED),
        "finished": utc_now(),
        "error": err.to_dict(),
        "job": job.get("array_task"),
    }
    # later phases queued behind it (aftercorr) never run: they wait for a retry
    for later in PHASE_ORDER[PHASE_ORDER.index(phase) + 1 :]:
        state["phases"][str(later)] = {"status": str(Status.PENDING)}
    save_state(paths, state)


def retry_plan(
    work_dir: Path, project_ids: Sequence[str], phase: Phase, cfg: SlurmConfig
) -> tuple[dict[str, tuple[int, int]], dict[str, int], dict[str, str]]:
    """Which projects' ``phase`` to resubmit and with what: (project -> (minutes, MB)),
    (project -> attempt number), and (project -> why not) for those that reached a limit."""
    resources: dict[str, tuple[int, int]] = {}
    attempts: dict[str, int] = {}
    refused: dict[str, str] = {}
    for pid in project_ids:
        paths = project_paths(work_dir, pid)
        state = load_state(paths)
        job = load_jobs(paths).get(str(phase))
        status = ((state or {}).get("phases", {}).get(str(phase)) or {}).get("status")
        if not job or status != Status.FAILED:
            continue
        if int(job.get("attempt", 1)) >= cfg.max_attempts:
            refused[pid] = f"{job['attempt']} attempts made (slurm.max_attempts {cfg.max_attempts})"
            continue
        new = escalated(job, cfg)
        if new == (int(job["time_min"]), int(job["memory_mb"])) and job.get("state") in (
            "TIMEOUT",
            "OUT_OF_MEMORY",
        ):
            refused[pid] = f"already at the limit ({new[0]} min, {new[1]} MB) after {job['state']}"
            continue
        resources[pid] = new
        attempts[pid] = int(job.get("attempt", 1)) + 1
    return resources, attempts, refused


def task_projects(tasks_file: Path, index: int) -> list[str]:
    """The projects of array task ``index`` of a submission."""
    tasks = json.loads(tasks_file.read_text())["tasks"]
    if not 0 <= index < len(tasks):
        raise ConfigError(f"{tasks_file}: no task {index} (it has {len(tasks)})")
    return list(tasks[index])
