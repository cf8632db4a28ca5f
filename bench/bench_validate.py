#!/usr/bin/env python3
"""Validation throughput benchmark: padocc-like's validate phase vs a plain h5py read.

Builds a Kerchunk product of an archive with ``padocc_like.api`` (pipeline ``kerchunk``,
as ``bench_refs.py``'s ``ours`` tool does), then times, each in a fresh child process
with a warm page cache, in interleaved repeats:

* ``h5py``: a plain h5py read of every variable of every file (``f[name][...]``), one process;
* ``validate-wN``: padocc-like's validate phase (every value, raw and decoded) with N workers.

It reports decoded MB/s for each (the bytes h5py reads, divided by the median time) and
the ratio validate/h5py, and writes ``results.json`` and ``results.md``::

    .venv/bin/python bench/bench_validate.py                       # bench/data/n120_t30_180x360
    .venv/bin/python bench/bench_validate.py --workers 1,2 --repeat 3
    .venv/bin/python bench/bench_validate.py --smoke               # 4 tiny files, ~15 s

Only the standard library is imported at module level (``--help`` is instant); the archive
generator and the child-process helpers are ``bench_refs.py``'s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
import bench_refs as br  # noqa: E402  (standard library only at import)

RESULTS_FORMAT = "padocc-like/bench-validate"
RESULTS_VERSION = 1
TARGET_RATIO = 0.70
DEFAULT_DATA = HERE / "data" / "n120_t30_180x360"
DEFAULT_OUT = HERE / "out" / "validate"
STANDARD = {"nfiles": 120, "ntime": 30, "nlat": 180, "nlon": 360}
SMOKE = {"nfiles": 4, "ntime": 30, "nlat": 18, "nlon": 36}
PHONY_DIM = b"This is a netCDF dimension but not a netCDF variable"


# --------------------------------------------------------------------------- children


def w_h5read(job: dict[str, Any], probe: br.Probe) -> dict[str, Any]:
    """Read every variable of every file with h5py, one process."""
    import h5py

    probe.mark("import")
    nbytes = datasets = 0
    for path in job["files"]:
        with h5py.File(path, "r") as f:
            for name in f:
                obj = f[name]
                if not isinstance(obj, h5py.Dataset):
                    continue
                if bytes(obj.attrs.get("NAME", b"")).startswith(PHONY_DIM):
                    continue  # a dimension without a variable: no data
                nbytes += obj[...].nbytes
                datasets += 1
    work = probe.mark("read")
    return {"work_s": work, "bytes": nbytes, "datasets": datasets}


def w_build(job: dict[str, Any], probe: br.Probe) -> dict[str, Any]:
    """init, scan and compute: the product to validate (``bench_cfa.py``'s product too)."""
    from padocc_like import api

    probe.mark("import")
    group = api.open_group(job["group_yaml"])
    outcomes = api.run(group, ["init", "scan", "compute"], workers=job.get("workers", 1))
    probe.mark("run")
    bad = [o for o in outcomes if o.status != "done"]
    if bad or not outcomes:
        raise RuntimeError("; ".join(f"{o.phase} {o.status}: {o.message}" for o in bad) or "no outcome")
    state = br.read_json(Path(job["work_dir"]) / "projects" / br.PROJECT_ID / "state.json")
    product = next(p for p in state["products"] if p["revision"] == state["current_product"])
    return {"product": {k: product.get(k) for k in ("path", "kind", "layout", "n_refs", "size", "sha256")}}


def w_validate(job: dict[str, Any], probe: br.Probe) -> dict[str, Any]:
    """The validate phase alone, forced, with ``workers`` processes."""
    from padocc_like import api
    from padocc_like.runners.pool import LocalEngine
    from padocc_like.validation import parallel

    if job.get("parallel_min_bytes") is not None:
        LocalEngine.min_bytes = job["parallel_min_bytes"]
    pools: list[bool] = []
    pool_cpu: list[float] = []
    init, close = parallel.Workers.__init__, parallel.Workers.close

    def record(self: Any, *a: Any, **kw: Any) -> None:
        init(self, *a, **kw)
        pools.append(self.pool is not None)

    def account(self: Any) -> None:  # the pool's processes are the forkserver's children, not ours
        import psutil

        for proc in list(getattr(self.pool, "_processes", {}).values()):
            try:
                t = psutil.Process(proc.pid).cpu_times()
                pool_cpu.append(t.user + t.system)
            except psutil.Error:
                pass
        close(self)

    parallel.Workers.__init__ = record  # type: ignore[method-assign]
    parallel.Workers.close = account  # type: ignore[method-assign]
    probe.mark("import")
    group = api.open_group(job["group_yaml"])
    [outcome] = api.run(group, ["validate"], force=True, workers=job["workers"])
    run_s = probe.mark("run")
    if outcome.status != "done":
        raise RuntimeError(f"validate {outcome.status}: {outcome.message}")
    project = Path(job["work_dir"]) / "projects" / br.PROJECT_ID
    state = br.read_json(project / "state.json")
    report = br.read_json(project / state["phases"]["validate"]["details"]["report"])
    return {
        "work_s": state["phases"]["validate"]["duration_s"],
        "run_s": run_s,
        "verdict": report["verdict"],
        "report_duration_s": report["duration_s"],
        "summary": report["summary"],
        "pool": any(pools),
        "pool_cpu_s": sum(pool_cpu),
        "message": outcome.message,
    }


WORKERS = {"gen": br.w_gen, "h5read": w_h5read, "build": w_build, "validate": w_validate}


def worker_main(step: str, job_path: str, result_path: str) -> int:
    br.WORKERS.update(WORKERS)  # bench_refs' child protocol, with this script's steps
    return br.worker_main(step, job_path, result_path)


# --------------------------------------------------------------------------- parent


class Runner:
    def __init__(self, out_dir: Path, script: Path | None = None) -> None:
        self.out_dir = out_dir
        self.script = script or Path(__file__).resolve()  # whose ``_worker`` runs the steps
        self.jobs, self.logs = out_dir / "jobs", out_dir / "logs"
        self.t0 = time.perf_counter()
        for d in (self.jobs, self.logs):
            d.mkdir(parents=True, exist_ok=True)

    def say(self, msg: str) -> None:
        print(f"[{time.perf_counter() - self.t0:7.1f} s] {msg}", flush=True)

    def child(self, step: str, name: str, job: dict[str, Any]) -> dict[str, Any]:
        """One step in a fresh interpreter: its result, wall time and peak RSS."""
        job_path, result_path = self.jobs / f"{name}.json", self.jobs / f"{name}.result.json"
        br.write_json(job_path, job)
        result_path.unlink(missing_ok=True)
        argv = [
            sys.executable,
            str(self.script),
            "_worker",
            step,
            str(job_path),
            str(result_path),
        ]
        with (self.logs / f"{name}.log").open("w") as log:
            start = time.perf_counter()
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        res = br.read_json(result_path) if result_path.exists() else {"ok": False, "error": "no result"}
        res.update(
            wall_s=wall,
            exit_code=proc.returncode,
            maxrss_mib=usage.ru_maxrss / 1024,
            cpu_s=usage.ru_utime + usage.ru_stime,  # this process and the children it waited for
            log=f"logs/{name}.log",
        )
        res["ok"] = bool(res.get("ok")) and proc.returncode == 0
        return res


def group_yaml(work: Path, data_dir: Path, layout: str) -> str:
    return (
        "# written by bench/bench_validate.py\n"
        f"group: {br.PROJECT_ID}\n"
        f"work_dir: {json.dumps(str(work))}\n"
        "pipeline: kerchunk\n"
        f"profile: {{name: bench, workers: 2, inline_threshold: {br.INLINE_THRESHOLD}}}\n"
        "projects:\n"
        f"  - id: {br.PROJECT_ID}\n"
        f"    sources: {{glob: {json.dumps(str(data_dir / (br.FILE_PREFIX + '*.nc')))}}}\n"
        "    concat_dims: [time]\n"
        f"    product: {{layout: {layout}}}\n"
    )


def ensure_archive(runner: Runner, args: argparse.Namespace) -> list[str]:
    files = [str(p) for p in br.archive_files(args.data_dir)]
    if files and not args.smoke:
        runner.say(f"archive: {len(files)} files in {args.data_dir}")
        return files
    shape = SMOKE if args.smoke else STANDARD
    params = br.archive_params(
        argparse.Namespace(**shape, complevel=4, fill_fraction=0.01, seed=0)  # bench_refs' defaults
    )
    if not br.archive_is_current(args.data_dir, params):
        runner.say(f"archive: generating {params['nfiles']} files in {args.data_dir}")
        res = runner.child("gen", "gen", {"data_dir": str(args.data_dir), "params": params, "workers": 2})
        if not res["ok"]:
            raise SystemExit(f"archive generation failed: {res.get('error')} (see {res['log']})")
    return [str(p) for p in br.archive_files(args.data_dir)]


def warm_page_cache(files: list[str]) -> float:
    """Read every file once, so that no measurement pays for the disk; the seconds it took."""
    t0 = time.perf_counter()
    for path in files:
        with open(path, "rb", buffering=0) as f:
            while f.read(8 << 20):
                pass
    return time.perf_counter() - t0


def summarise(runs: list[dict[str, Any]], data_bytes: int) -> dict[str, Any]:
    ok = [r for r in runs if r["ok"]]
    if len(ok) != len(runs):
        bad = next(r for r in runs if not r["ok"])
        return {"status": "failed", "error": bad.get("error"), "log": bad.get("log"), "runs": runs}
    work = [r["work_s"] for r in ok]
    # the median run (with an even count, the faster of the two middle runs)
    median_run = sorted(ok, key=lambda r: r["work_s"])[(len(ok) - 1) // 2]
    return {
        "status": "ok",
        "work_s": median_run["work_s"],
        "work_range_s": [min(work), max(work)],
        "wall_s": statistics.median(r["wall_s"] for r in ok),
        "cpu_s": median_run["cpu_s"] + median_run.get("pool_cpu_s", 0.0),
        "maxrss_mib": max(r["maxrss_mib"] for r in ok),
        "mb_per_s": data_bytes / 1e6 / median_run["work_s"],
        "median_run": median_run,
        "runs": runs,
    }


def render(results: dict[str, Any]) -> str:
    a, s, m = results["archive"], results["summary"], results["machine"]
    h5 = s["h5py"]
    lines = [
        "# Validation throughput: padocc-like validate vs a plain h5py read",
        "",
        f"Archive: {a['nfiles']} netCDF-4 files in `{a['dir']}`, {br.human_bytes(a['bytes'])} on disk, "
        f"{br.human_bytes(results['data_bytes'])} decoded (every variable). Product: Kerchunk "
        f"{results['product'].get('layout')}, {results['product'].get('n_refs')} references.",
        "",
        f"Machine: {m['cpu_model']}, {m['cpu_count']} CPUs; load average {m['loadavg_start'][0]:.2f} at "
        f"start, {m['loadavg_end'][0]:.2f} at end. Commit {(results['git'].get('commit') or '?')[:10]}"
        + (" (padocc_like/ had uncommitted changes)" if results["git"].get("padocc_like_dirty") else "")
        + ".",
        "",
        f"Each measurement is a fresh child process, warm page cache, {results['settings']['repeat']} "
        "interleaved repeat(s); the median run is shown with the range in brackets. *time* is the work "
        "alone: the h5py read loop, or the validate phase's `duration_s` in `state.json`. *MB/s* is the "
        "decoded bytes h5py reads divided by *time*. *child wall* includes interpreter start and imports. "
        "*CPU* is user + system time of the child and of validation's pool processes. The load average "
        "counts other users' work: on a shared machine the runs compete with it for the cores.",
        "",
        "| measurement | workers | time s | MB/s | vs h5py | child wall s | wall vs h5py | CPU s | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in s.items():
        workers = name.removeprefix("validate-w") if name.startswith("validate") else "1"
        if row["status"] != "ok":
            lines.append(f"| {name} | {workers} | failed: {row.get('error')} | | | | | | |")
            continue
        lo, hi = row["work_range_s"]
        vs = row["mb_per_s"] / h5["mb_per_s"] if h5["status"] == "ok" else float("nan")
        wall_vs = h5["wall_s"] / row["wall_s"] if h5["status"] == "ok" else float("nan")
        lines.append(
            f"| {name} | {workers} | {row['work_s']:.2f} [{lo:.2f}{br.DASH}{hi:.2f}] | {row['mb_per_s']:.0f} "
            f"| {vs:.2f} | {row['wall_s']:.2f} | {wall_vs:.2f} | {row['cpu_s']:.1f} | {row['maxrss_mib']:.0f} |"
        )
    lines.append("")
    best = results.get("target")
    if best:
        lines += [
            f"Target: validate with {best['workers']} workers at least {TARGET_RATIO:.2f} of h5py's MB/s: "
            f"{best['ratio']:.2f}, {'MET' if best['met'] else 'NOT MET'}.",
            "",
        ]
    for name, row in s.items():
        if name.startswith("validate") and row["status"] == "ok":
            r = row["median_run"]
            lines.append(
                f"* {name}: verdict {r['verdict']}, {r['summary']['values_compared']:,} values compared, "
                f"{br.human_bytes(r['summary'].get('bytes_compared'))} of raw values per side, "
                f"process pool {'used' if r['pool'] else 'not used'}."
            )
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    out: Path = args.out_dir
    runner = Runner(out)
    load_start = os.getloadavg()
    files = ensure_archive(runner, args)
    if not files:
        raise SystemExit(f"no archive files in {args.data_dir}")
    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)
    group = out / "group.yaml"
    group.write_text(group_yaml(work, args.data_dir.resolve(), args.layout))
    runner.say(f"product: building with padocc-like ({len(files)} files)")
    built = runner.child("build", "build", {"group_yaml": str(group), "work_dir": str(work), "workers": 2})
    if not built["ok"]:
        raise SystemExit(f"building the product failed: {built.get('error')} (see {built['log']})")
    product = built["product"]
    runner.say(f"product: {product['layout']}, {product['n_refs']} refs, {br.human_bytes(product['size'])}")

    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    names = ["h5py", *(f"validate-w{w}" for w in workers)]
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for rep in range(1, args.repeat + 1):
        for name in names:
            warm_page_cache(files)  # others' work may have evicted them since the last run
            if name == "h5py":
                res = runner.child("h5read", f"h5py-r{rep}", {"files": files})
            else:
                job = {
                    "group_yaml": str(group),
                    "work_dir": str(work),
                    "workers": int(name.removeprefix("validate-w")),
                    "parallel_min_bytes": args.parallel_min_bytes,
                }
                res = runner.child("validate", f"{name}-r{rep}", job)
                if res["ok"] and res["verdict"] != "pass":
                    res.update(ok=False, error=f"verdict {res['verdict']}")
            res["repeat"] = rep
            runs[name].append(res)
            if res["ok"]:
                extra = f", pool {'used' if res.get('pool') else 'not used'}" if "pool" in res else ""
                runner.say(f"{name} r{rep}: {res['work_s']:.2f} s (child wall {res['wall_s']:.2f} s{extra})")
            else:
                runner.say(f"{name} r{rep}: FAILED: {res.get('error')} (see {res['log']})")

    data_bytes = next((r["bytes"] for r in runs["h5py"] if r["ok"]), 0)
    summary = {n: summarise(runs[n], data_bytes) for n in names}
    target = None
    ok_validate = [n for n in names if n != "h5py" and summary[n]["status"] == "ok"]
    if summary["h5py"]["status"] == "ok" and ok_validate:
        best = max(ok_validate, key=lambda n: int(n.removeprefix("validate-w")))
        ratio = summary[best]["mb_per_s"] / summary["h5py"]["mb_per_s"]
        target = {
            "workers": int(best.removeprefix("validate-w")),
            "ratio": ratio,
            "met": ratio >= TARGET_RATIO,
        }
    results = {
        "format": RESULTS_FORMAT,
        "version": RESULTS_VERSION,
        "created": br.now_iso(),
        "command": [Path(sys.executable).name, *sys.argv],
        "settings": {
            "workers": workers,
            "repeat": args.repeat,
            "layout": args.layout,
            "smoke": args.smoke,
            "parallel_min_bytes": args.parallel_min_bytes,
        },
        "archive": {
            "dir": str(args.data_dir),
            "nfiles": len(files),
            "bytes": sum(Path(f).stat().st_size for f in files),
        },
        "data_bytes": data_bytes,
        "product": product,
        "summary": summary,
        "target": target,
        "machine": br.machine_info(load_start),
        "git": br.git_info(),
        "versions": br.package_versions(br.MAIN_PACKAGES),
    }
    br.write_json(out / "results.json", results)
    md = render(results)
    (out / "results.md").write_text(md)
    print(md)
    failed = [n for n in names if summary[n]["status"] != "ok"]
    return 1 if failed else 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Time padocc-like's validate phase against a plain h5py read of the same files.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--data-dir", type=Path, default=None, help=f"the archive (default {DEFAULT_DATA})")
    p.add_argument("--out-dir", type=Path, default=DEFAULT_OUT, help="results, logs and the product")
    p.add_argument("--workers", default="1,2", help="validate worker counts to time, comma-separated")
    p.add_argument("--repeat", type=int, default=None, help="interleaved repeats (default 3; smoke 1)")
    p.add_argument("--layout", default="auto", choices=("auto", "json", "parquet"), help="product layout")
    p.add_argument(
        "--parallel-min-bytes",
        type=int,
        default=None,
        help="override validation's pool threshold (bytes of sources; smoke: 0, so the pool runs)",
    )
    p.add_argument(
        "--smoke", action="store_true", help="4 tiny generated files, 1 repeat (used by the tests)"
    )
    args = p.parse_args(argv)
    if args.data_dir is None:
        args.data_dir = args.out_dir / "data-smoke" if args.smoke else DEFAULT_DATA
    if args.repeat is None:
        args.repeat = 1 if args.smoke else 3
    if args.smoke and args.parallel_min_bytes is None:
        args.parallel_min_bytes = 0
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_worker"]:
        try:
            return worker_main(*argv[1:4])
        except Exception:
            traceback.print_exc()
            return 1
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
