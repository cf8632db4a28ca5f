"""The ``padocc-like`` command line: a thin layer over :mod:`padocc_like.api`.

Only this module (and the runners) print, read the environment or exit.
Exit codes: 0 success, 1 some project failed, 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PHASES = ("init", "scan", "compute", "validate", "finalise", "catalog")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _selection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("group", help="the group YAML file")
    p.add_argument(
        "-p",
        "--project",
        action="append",
        default=[],
        metavar="ID",
        help="only this project (repeatable)",
    )
    p.add_argument(
        "-s",
        "--status",
        action="append",
        default=[],
        metavar="STATE",
        help="only projects in this state: done, failed, pending, running, interrupted, ready, stale "
        "(repeatable)",
    )
    p.add_argument("--subset", metavar="NAME", help="only the projects of a saved subset")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="padocc-like",
        description=(
            "Turn archives of NetCDF/HDF5 files into validated, catalogued Kerchunk, CF-1.13 "
            "aggregation (CFA) and Zarr products."
        ),
        epilog="Example: padocc-like run group.yaml --workers 2; padocc-like status group.yaml",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more output (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    # -v/-q also after the command; SUPPRESS keeps a value given before it
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS,
        help="more output (-vv for debug)",
    )
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="only errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add = sub.add_parser

    def add_parser(name: str, **kw: Any) -> argparse.ArgumentParser:
        return _add(name, parents=[common], **kw)

    sub.add_parser = add_parser  # type: ignore[method-assign]

    helps = {
        "init": "resolve sources into each project's immutable input manifest",
        "scan": "inspect the files; decide whether an exact product is possible",
        "compute": "write the product (a new revision) atomically",
        "validate": "compare the product with its sources, value for value",
        "finalise": "copy validated products to the publish store, references mapped, verified",
        "catalog": "write STAC items and the group's collection",
    }
    for name in PHASES:
        p = sub.add_parser(name, help=helps[name], description=helps[name])
        _selection_args(p)
        p.add_argument("-f", "--force", action="store_true", help="redo the phase even if up to date")
        p.add_argument("-w", "--workers", type=int, default=None, help="processes (default: profile)")
        p.add_argument("--json", action="store_true", help="machine-readable outcomes")
    p = sub.add_parser(
        "run",
        help="run all phases of the pipeline in order",
        description="Run the pipeline's phases in order (or --phases).",
    )
    _selection_args(p)
    p.add_argument("--phases", help="comma-separated subset of phases, e.g. scan,compute")
    p.add_argument("-f", "--force", action="store_true", help="redo phases even if up to date")
    p.add_argument("-w", "--workers", type=int, default=None, help="processes (default: profile)")
    p.add_argument("--json", action="store_true", help="machine-readable outcomes")
    p.add_argument(
        "--runner",
        choices=["local", "slurm", "dask"],
        default="local",
        help="run here (default); submit SLURM array jobs (the profile's 'slurm' settings); or run "
        "here with per-file work on a Dask cluster (the profile's 'dask' settings, default a local one)",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="with --runner slurm: write and show the scripts only"
    )
    p.add_argument(
        "--dask-address", metavar="URL", help="with --runner dask: the scheduler to use (tcp://host:8786)"
    )

    p = sub.add_parser("jobs", help="ask SLURM about the projects' jobs and record their states")
    _selection_args(p)
    p.add_argument(
        "--wait", type=float, default=0, metavar="S", help="poll until every job ended (at most S s)"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("retry", help="resubmit failed SLURM tasks of a phase with more time or memory")
    _selection_args(p)
    p.add_argument("--phase", required=True, choices=PHASES, help="the phase whose failed tasks to resubmit")
    p.add_argument("--dry-run", action="store_true", help="write and show the scripts only")

    p = sub.add_parser("task", help=argparse.SUPPRESS)  # what an array task runs
    p.add_argument("group")
    p.add_argument("--phase", required=True, choices=PHASES)
    p.add_argument("--tasks", required=True, help="the submission's tasks.json")
    p.add_argument("--index", required=True, type=int)
    p.add_argument(
        "--shard", action="store_true", help="--index names a shard (scan a slice of one project's files)"
    )

    p = sub.add_parser(
        "status",
        help="projects by phase and state, with failure reasons",
        description="The group at a glance: counts by phase and state, failures grouped by reason, "
        "stale products, a row per project. With one -p ID: that project in detail (its phases "
        "and their times, history, product revisions, validation summaries, jobs).",
    )
    _selection_args(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("report", help="the validation report of a project")
    p.add_argument("group", help="the group YAML file")
    p.add_argument("-p", "--project", required=True, metavar="ID")
    p.add_argument("--kind", help="the product kind whose report to show (default: the first requested)")
    p.add_argument("--json", action="store_true", help="the full JSON report")

    p = sub.add_parser(
        "html-report",
        help="write the group's HTML report: one self-contained page (status, timings, validation, plots)",
    )
    _selection_args(p)
    p.add_argument(
        "-o", "--output", metavar="FILE", help="where to write it (default: <work_dir>/report/index.html)"
    )

    p = sub.add_parser("subset", help="save the selected projects as a named subset")
    _selection_args(p)
    p.add_argument("--name", required=True, help="name to save the subset under")

    p = sub.add_parser("demo", help="generate a small archive and run every phase on it")
    p.add_argument("--dir", default="demo-work", help="where to put the archive and work directory")
    p.add_argument("--files", type=int, default=12, help="number of monthly files")
    p.add_argument("-w", "--workers", type=int, default=2)
    return parser


_handlers: list[tuple[logging.Logger, logging.Handler]] = []
"""What this module attached to loggers (replaced by the next :func:`_configure_logging`)."""


def _configure_logging(verbose: int, quiet: bool) -> None:
    """Messages at the level ``-v``/``-q`` ask for; progress on a terminal, or as log lines of
    long operations when stderr is not one (a file, a pipe, a batch job) or ``-q``."""
    from .progress import LOGGER, LogProgress, TerminalProgress

    _detach_logging()
    level = (
        logging.ERROR
        if quiet
        else (logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.setLevel(level)
    root = logging.getLogger("padocc_like")
    root.addHandler(handler)
    root.setLevel(min(level, logging.INFO))
    # ours is the only console output: a library that configures the root logger on import
    # (cfdm does) must not print our INFO records a second time
    root.propagate = False
    _handlers.append((root, handler))
    if quiet:
        return
    progress = logging.getLogger(LOGGER)
    batch = bool(os.environ.get("SLURM_JOB_ID")) or os.environ.get("TERM") == "dumb"
    if sys.stderr.isatty() and not batch:
        shown: logging.Handler = TerminalProgress(sys.stderr)
    else:
        interval = float(os.environ.get("PADOCC_LIKE_PROGRESS_INTERVAL") or 30)
        shown = LogProgress(sys.stderr, interval=interval)
    progress.addHandler(shown)
    progress.setLevel(logging.INFO)
    _handlers.append((progress, shown))


def _detach_logging() -> None:
    """Take off what :func:`_configure_logging` attached (``main`` called in a process that
    goes on, e.g. tests or a notebook)."""
    for logger, handler in _handlers:
        logger.removeHandler(handler)
    _handlers.clear()
    logging.getLogger("padocc_like").propagate = True


def _clear_progress() -> None:
    """Wipe an unfinished progress line before printing to the terminal."""
    from .progress import TerminalProgress

    for _, handler in _handlers:
        if isinstance(handler, TerminalProgress):
            handler.clear()


def _print_outcome(out: Any, as_json: bool) -> None:
    _clear_progress()
    if as_json:
        print(json.dumps(out.to_dict()), flush=True)
        return
    mark = {"done": "ok  ", "failed": "FAIL"}.get(out.status, out.status)
    skipped = " (skipped)" if out.skipped else ""
    print(f"{mark} {out.phase:<8} {out.project}: {out.message}{skipped}", flush=True)


def _cmd_phases(args: argparse.Namespace, phases: Sequence[str]) -> int:
    from . import api
    from .config.models import DaskConfig
    from .errors import ConfigError

    runner = getattr(args, "runner", "local")
    address = getattr(args, "dask_address", None)
    if address and runner != "dask":
        raise ConfigError("--dask-address needs --runner dask")

    group = api.open_group(args.group)
    projects = api.select(group, args.project, args.status, args.subset)
    if not projects:
        print("no projects selected", file=sys.stderr)
        return EXIT_OK
    outcomes = api.run(
        group,
        phases,
        projects=projects,
        force=args.force,
        workers=args.workers,
        on_outcome=lambda o: _print_outcome(o, args.json),
        runner=runner,
        dask=(group.profile.dask or DaskConfig()).model_copy(
            update={"cluster": "address", "address": address}
        )
        if address
        else None,
    )
    failed = [o for o in outcomes if o.status == "failed"]
    if not args.json:
        done = len({o.project for o in outcomes}) - len({o.project for o in failed})
        print(f"{done} project(s) ok, {len({o.project for o in failed})} failed", flush=True)
    return EXIT_FAILED if failed else EXIT_OK


def cache_dir() -> Path:
    """Where the CLI keeps its caches: $PADOCC_LIKE_CACHE_DIR, else $XDG_CACHE_HOME/padocc-like."""
    if os.environ.get("PADOCC_LIKE_CACHE_DIR"):
        return Path(os.environ["PADOCC_LIKE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "padocc-like"


def _cmd_status(args: argparse.Namespace) -> int:
    from . import status as st
    from .group_index import build_index, load_index, save_index

    # an unchanged group answers from its index, without loading the YAML into models
    index = load_index(cache_dir(), Path(args.group))
    if index is None:
        from . import api

        group = api.open_group(args.group)
        index = build_index(group)
        if index is not None:
            try:
                save_index(cache_dir(), index)
            except OSError as err:  # a cache: never fail the command for it
                logging.getLogger(__name__).debug("cannot save the group index: %s", err)
        else:
            selected = api.select(group, args.project, args.status, args.subset)
            if _one_project(args):
                last = api.last_phases(group)
                return _print_project(args, group.id, str(group.work_dir), selected[0].id, last)
            return _print_status(args, group.id, str(group.work_dir), api.status(group, selected))
    work_dir = Path(index.work_dir)
    ids = st.select_ids(
        work_dir, index.group_id, index.projects, args.project, args.status, args.subset, index.group_file
    )
    if _one_project(args):
        return _print_project(args, index.group_id, index.work_dir, ids[0], index.projects)
    rows = [st.project_status(work_dir, pid, index.projects[pid]) for pid in ids]
    return _print_status(args, index.group_id, index.work_dir, rows)


def _one_project(args: argparse.Namespace) -> bool:
    """``status -p ID`` (one project, no other filter) shows that project in detail."""
    return len(args.project) == 1 and not args.status and not args.subset


def _print_project(
    args: argparse.Namespace, group_id: str, work_dir: str, project_id: str, last: dict[str, str | None]
) -> int:
    from .status import project_detail

    detail = project_detail(Path(work_dir), project_id, last.get(project_id))
    if args.json:
        print(json.dumps({"group": group_id, "work_dir": work_dir, "project": detail}, indent=1))
    else:
        print(render_project(detail))
    return EXIT_OK


def _print_status(args: argparse.Namespace, group_id: str, work_dir: str, rows: list[dict[str, Any]]) -> int:
    if args.json:
        print(json.dumps({"group": group_id, "work_dir": work_dir, "projects": rows}, indent=1))
        return EXIT_OK
    print(render_status(group_id, rows))
    return EXIT_OK


def render_status(group_id: str, rows: list[dict[str, Any]]) -> str:
    """The status table, counts by phase and state, and failures grouped by reason."""
    lines = [f"group {group_id}: {len(rows)} project(s)"]
    counts: dict[tuple[str, str], int] = {}
    for r in rows:
        key = (r["phase"] or "-", r["state"])
        counts[key] = counts.get(key, 0) + 1
    for (phase, state), n in sorted(counts.items()):
        lines.append(f"  {n:5d}  {phase:<9} {state}")
    width = max([len(r["project"]) for r in rows] + [7])
    lines.append("")
    lines.append(f"{'project':<{width}}  {'phase':<9} {'state':<12} product  reason")
    for r in rows:
        prods = r.get("products") or {}
        if len(prods) > 1:  # several kinds: each kind's revision and status
            prod_s = ",".join(f"{kind}:r{p['revision']}:{p['status']}" for kind, p in prods.items())
        else:
            prod = r.get("product")
            prod_s = f"r{prod['revision']}:{prod['status']}" if prod else "-"
        reason = r["reason"] if len(r["reason"]) < 160 else r["reason"][:157] + "..."
        lines.append(
            f"{r['project']:<{width}}  {(r['phase'] or '-'):<9} {r['state']:<12} {prod_s:<8} {reason}"
        )
    with_jobs = [r for r in rows if r.get("jobs")]
    if with_jobs:  # SLURM runs: each project's job of its current phase (else its last job)
        lines.append("")
        lines.append(f"{'project':<{width}}  {'phase':<9} {'job':<14} {'state':<14} elapsed  attempt")
        order = {ph: i for i, ph in enumerate(PHASES)}
        for r in with_jobs:
            jobs = r["jobs"]
            phase = r["phase"] if r["phase"] in jobs else max(jobs, key=lambda ph: order.get(ph, -1))
            j = jobs[phase]
            state = str(j.get("state") or "?") + (
                "" if j.get("exit_code") in (None, 0) else f" ({j['exit_code']})"
            )
            lines.append(
                f"{r['project']:<{width}}  {phase:<9} {j.get('array_task')!s:<14} {state:<14} "
                f"{j.get('elapsed') or '-'!s:<8} {j.get('attempt') or 1}"
            )
    failures: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["state"] in ("failed", "interrupted", "stale"):
            kind = r["error_kind"] or r["state"]
            failures.setdefault(f"{r['phase']}/{kind}", []).append(r)
    if failures:
        lines.append("")
        lines.append("needing attention, by phase and reason:")
        for key, group in sorted(failures.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            ids = [r["project"] for r in group]
            lines.append(f"  {key}: {len(ids)} ({', '.join(ids[:5])}{' ...' if len(ids) > 5 else ''})")
            lines.append(f"      e.g. {_shorten(group[0]['reason'], 300)}")
        lines.append("  (status -p ID for one project in detail)")
    return "\n".join(lines)


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def render_project(d: dict[str, Any]) -> str:
    """One project in detail: state, phases with times, revisions with validation, jobs, history."""
    from .status import HISTORY_SHOWN

    lines = [f"project {d['project']}: {d['state']}" + (f" at {d['phase']}" if d["phase"] else "")]
    if d["reason"]:
        lines.append(f"  reason: {d['reason']}" + (f" [{d['error_kind']}]" if d["error_kind"] else ""))
    lines.append(f"  directory: {d['root']}")
    lines.append("")
    lines.append(f"{'phase':<9} {'status':<8} {'started':<20} {'time':>8}  message / error")
    for phase, rec in d["phases"].items():
        started = (rec.get("started") or "-")[:19].replace("T", " ")
        took = f"{rec['duration_s']:.2f}s" if rec.get("duration_s") is not None else "-"
        note = rec.get("message") or ""
        if rec.get("error"):
            note = f"{rec['error'].get('kind')}: {rec['error'].get('message')}"
        lines.append(
            f"{phase:<9} {rec.get('status') or '-':<8} {started:<20} {took:>8}  {_shorten(note, 110)}".rstrip()
        )
        if rec.get("log"):
            lines.append(f"{'':<48}log {rec['log']}")
    if d["revisions"]:
        lines.append("")
        lines.append("product revisions:")
        for p in d["revisions"]:
            size = f"{p['size']:,} B" if p.get("size") is not None else "-"
            lines.append(
                f"  {p['kind']} r{p['revision']} {p.get('layout') or ''} {p['status']}, {size}, "
                f"{p.get('n_refs') or '-'} refs, made {(p.get('created') or '-')[:19].replace('T', ' ')}"
            )
            v = p.get("validation")
            if v:
                counts = (
                    ", ".join(f"{n} {sev}" for sev, n in sorted(v.get("findings", {}).items()))
                    or "no findings"
                )
                compared = f"{v['values_compared']:,}" if v.get("values_compared") is not None else "-"
                lines.append(
                    f"      validation {str(v.get('verdict')).upper()} ({v.get('mode')}): {compared} values "
                    f"compared in {v.get('files') or '-'} files; {counts}; report {v['report']}"
                )
    if d["stale"]:
        lines.append("")
        lines.append("stale: the sources changed since the product was computed:")
        lines.extend(f"  {x}" for x in d["stale"])
    if d["jobs_detail"]:
        lines.append("")
        lines.append("jobs:")
        for phase, j in d["jobs_detail"].items():
            lines.append(
                f"  {phase:<9} {j.get('array_task')} {j.get('state')} exit {j.get('exit_code', '-')} "
                f"elapsed {j.get('elapsed') or '-'} attempt {j.get('attempt') or 1} "
                f"({j.get('time_min')} min, {j.get('memory_mb')} MB)"
            )
    history = d["history"][-HISTORY_SHOWN:]
    if history:
        lines.append("")
        more = len(d["history"]) - len(history)
        lines.append("history" + (f" (last {len(history)}; {more} earlier in --json)" if more else "") + ":")
        for e in history:
            took = f" {e['duration_s']:.2f}s" if e.get("duration_s") is not None else ""
            msg = f" {_shorten(e['message'], 90)}" if e.get("message") else ""
            lines.append(
                f"  {e['time'][:23].replace('T', ' ')}  {e.get('phase') or '-':<9} {e['event']}{took}{msg}"
            )
    return "\n".join(lines)


def _cmd_report(args: argparse.Namespace) -> int:
    from . import api
    from .validation.report import Finding, Severity, ValidationReport

    group = api.open_group(args.group)
    data = api.report(group, args.project, args.kind)
    if args.json:
        print(json.dumps(data, indent=1))
        return EXIT_OK
    rep = ValidationReport(
        project=data["project"],
        product=data["product"],
        mode=data["mode"],
        findings=[Finding(**{**f, "severity": Severity(f["severity"])}) for f in data["findings"]],
        stats={
            k: data["summary"][k] for k in ("files", "variables", "values_compared") if k in data["summary"]
        },
        duration_s=data["duration_s"],
    )
    print(rep.summary_text(limit=50))
    return EXIT_OK if data["verdict"] == "pass" else EXIT_FAILED


def _cmd_html_report(args: argparse.Namespace) -> int:
    from . import api

    group = api.open_group(args.group)
    projects = api.select(group, args.project, args.status, args.subset)
    print(api.html_report(group, args.output, projects))
    return EXIT_OK


def _show_jobs(jobs: Sequence[Any], dry_run: bool) -> None:
    for job in jobs:
        if dry_run:
            print(f"# {job.script_path} ({len(job.tasks)} tasks; not submitted)\n{job.script}")
        else:
            print(
                f"submitted {job.phase}: job {job.job_id}, {len(job.tasks)} tasks, "
                f"{job.time_min} min, {job.memory_mb} MB ({job.script_path})"
            )


def _cmd_submit(args: argparse.Namespace, phases: Sequence[str]) -> int:
    from . import api

    group = api.open_group(args.group)
    projects = api.select(group, args.project, args.status, args.subset)
    pipeline = [p for p in phases if any(p in pr.phases for pr in projects)]
    _show_jobs(api.submit(group, pipeline, projects=projects, dry_run=args.dry_run), args.dry_run)
    return EXIT_OK


def _cmd_jobs(args: argparse.Namespace) -> int:
    import time

    from . import api
    from .runners.slurm import TERMINAL

    group = api.open_group(args.group)
    projects = api.select(group, args.project, args.status, args.subset)
    deadline = time.monotonic() + args.wait
    while True:
        jobs = api.refresh_jobs(group, projects)
        pending = [j for phases in jobs.values() for j in phases.values() if j.get("state") not in TERMINAL]
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(min(5.0, max(0.5, deadline - time.monotonic())))
    if args.json:
        print(json.dumps(jobs, indent=1))
        return EXIT_OK
    for pid, phases in jobs.items():
        for phase, j in phases.items():
            code = "" if j.get("exit_code") is None else f" exit {j['exit_code']}"
            print(
                f"{pid:<30} {phase:<9} {j['array_task']:<14} {j.get('state', '?'):<14}{code} "
                f"{j.get('elapsed', '')} attempt {j.get('attempt', 1)}"
            )
    return EXIT_OK if not pending else EXIT_FAILED


def _cmd_retry(args: argparse.Namespace) -> int:
    from . import api

    group = api.open_group(args.group)
    projects = api.select(group, args.project, args.status, args.subset)
    jobs, refused = api.retry(group, args.phase, projects=projects, dry_run=args.dry_run)
    _show_jobs(jobs, args.dry_run)
    for pid, why in refused.items():
        print(f"not retried: {pid}: {why}", file=sys.stderr)
    if not jobs and not refused:
        print(f"no failed {args.phase} tasks to retry")
    return EXIT_FAILED if refused else EXIT_OK


def _cmd_task(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from . import api
    from .runners.slurm import task_projects

    group = api.open_group(args.group)
    workers = int(os.environ.get("SLURM_CPUS_PER_TASK") or 1)
    if args.shard:  # scan files into the project's cache only: no state, no phase
        from .runners.slurm import run_shard

        pid, shard, n_shards, n_files = run_shard(group, Path(args.tasks), args.index, workers)
        print(f"{pid}: shard {shard + 1}/{n_shards} scanned {n_files} files")
        return EXIT_OK
    ids = task_projects(Path(args.tasks), args.index)
    outcomes = api.run(
        group,
        [args.phase],
        projects=[group.projects[i] for i in ids if i in group.projects],
        workers=workers,
        on_outcome=lambda o: _print_outcome(o, False),
    )
    return EXIT_FAILED if any(o.status == "failed" for o in outcomes) else EXIT_OK


def _cmd_subset(args: argparse.Namespace) -> int:
    from . import api

    group = api.open_group(args.group)
    projects = api.select(group, args.project, args.status, args.subset)
    path = api.save_subset(group, args.name, projects)
    print(f"saved {len(projects)} project(s) as subset {args.name!r} ({path})")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .demo import run_demo

    return run_demo(Path(args.dir), n_files=args.files, workers=args.workers, echo=print)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__

        print(f"padocc-like {__version__}")
        return EXIT_OK
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    _configure_logging(args.verbose, args.quiet)
    from .errors import ConfigError, PadoccLikeError

    try:
        if args.command in PHASES:
            return _cmd_phases(args, [args.command])
        if args.command == "run":
            phases = args.phases.split(",") if args.phases else list(PHASES)
            bad = [p for p in phases if p not in PHASES]
            if bad:
                raise ConfigError(f"unknown phase {bad[0]!r}; phases are {', '.join(PHASES)}")
            if args.runner == "slurm":
                return _cmd_submit(args, phases)
            return _cmd_phases(args, phases)
        return {
            "jobs": _cmd_jobs,
            "retry": _cmd_retry,
            "task": _cmd_task,
            "status": _cmd_status,
            "report": _cmd_report,
            "html-report": _cmd_html_report,
            "subset": _cmd_subset,
            "demo": _cmd_demo,
        }[args.command](args)
    except ConfigError as err:
        _clear_progress()
        print(f"error: {err.message}", file=sys.stderr)
        return EXIT_USAGE
    except PadoccLikeError as err:
        _clear_progress()
        print(f"error [{err.kind}]: {err.message}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        _detach_logging()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
