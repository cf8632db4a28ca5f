#!/usr/bin/env python3
"""Zarr benchmark: rechunk 480 files (maps) into a time-series Zarr store, side by side.

Writes a Zarr v2 store of ``tas`` (zstd level 3, consolidated metadata) from the first 480
files of an archive of monthly files, and times, each in a fresh child process with a warm
page cache, in interleaved repeats:

* ``ours-timeseries``: padocc-like (init, scan, compute) with a ``zarr`` product chunked
  ``(time=all, lat=9, lon=18)`` under ``memory_limit_mb: 256``;
* ``ours-maps``: the same with ``pattern: maps`` (the default chunking);
* ``dask-tasks``: ``xr.open_mfdataset(files, chunks={})["tas"].chunk({"time": -1, "lat": 9,
  "lon": 18}).to_zarr(...)``, dask's default rechunk on its default (threaded) scheduler;
  ``chunks={}`` gives the files' HDF5 chunks, one time step per dask chunk;
* ``dask-files``: the same from one dask chunk per file (``chunks={"time": 30}``, what
  ``open_mfdataset`` gave before xarray used the files' own chunking), for comparison;
* ``rechunker`` (only with ``--with-rechunker``): rechunker 0.5.4 with ``max_mem="256MB"``,
  in its own venv (it needs zarr < 3), ``bench/out/venvs/rechunker``.

Peak RSS is the child's ``ru_maxrss`` (``os.wait4``). Every store's ``tas`` must digest
(SHA-256 of the float32 values in C order) to the same as ``xr.open_mfdataset`` of the
sources, or its row fails and the exit code is 1. Then, in fresh children, it times reading
one map (``tas.isel(time=k)``) and one point's whole series (``tas.isel(lat=22, lon=45)``)
from each layout and, as the baseline, through ``xr.open_mfdataset`` of the sources.
Writes ``results.json`` and ``results.md``::

    .venv/bin/python bench/bench_zarr.py                     # 480 files of (30, 45, 90), 3 repeats
    .venv/bin/python bench/bench_zarr.py --with-rechunker    # + rechunker 0.5.4 (creates its venv)
    .venv/bin/python bench/bench_zarr.py --smoke             # 6 tiny files, 1 repeat (the tests)

Only the standard library is imported at module level; the archive generator and the
child-process helpers are ``bench_refs.py``'s and ``bench_validate.py``'s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_refs as br  # noqa: E402  (standard library only at import)
import bench_validate as bv  # noqa: E402

RESULTS_FORMAT = "padocc-like/bench-zarr"
RESULTS_VERSION = 1
DEFAULT_OUT = HERE / "out" / "zarr"
BIG_ARCHIVE = HERE / "data" / "n10000_t30_45x90"
FULL = {"nfiles": 480, "ntime": 30, "nlat": 45, "nlon": 90}
SMOKE = {"nfiles": 6, "ntime": 30, "nlat": 18, "nlon": 36}
TARGET_TILE = {"lat": 9, "lon": 18}
MEMORY_LIMIT_MB = 256
TARGET_TIME_RATIO = 2.0
TARGET_RSS_MIB = 500.0
SLAB_BYTES = 64 << 20
TOOLS = ("ours-timeseries", "ours-maps", "dask-tasks", "dask-files", "rechunker")
READ_LAYOUTS = ("ours-timeseries", "ours-maps", "dask-tasks", "sources")
RECHUNKER_VENV = HERE / "out" / "venvs" / "rechunker"
RECHUNKER_PACKAGES = [
    "rechunker==0.5.4",
    "zarr==2.18.7",
    "xarray==2025.6.1",
    "numcodecs==0.15.2",
    "netCDF4",
    "dask",
]
RECHUNKER_CHECK = "import rechunker, zarr, xarray, numcodecs, netCDF4, dask"
NOT_RUN = "not run (needs zarr<3, a separate venv: --with-rechunker)"
# the source encoding that must not reach a Zarr store (netCDF4's chunking and filters)
SOURCE_ENCODING = (
    "chunksizes",
    "preferred_chunks",
    "zlib",
    "szip",
    "zstd",
    "bzip2",
    "blosc",
    "shuffle",
    "complevel",
    "fletcher32",
    "contiguous",
    "source",
    "original_shape",
    "chunks",
)


# --------------------------------------------------------------------------- children


def _strip_encoding(obj: Any) -> None:
    for var in obj.variables.values() if hasattr(obj, "variables") else [obj]:
        for key in SOURCE_ENCODING:
            var.encoding.pop(key, None)


def _open_mf(files: list[str], chunks: Any) -> Any:
    import xarray as xr

    return xr.open_mfdataset(
        files,
        chunks=chunks,
        combine="nested",
        concat_dim="time",
        data_vars="minimal",
        coords="minimal",
        compat="override",
    )


def _versions(names: tuple[str, ...]) -> dict[str, str | None]:
    return br.package_versions(names)


def w_ours(job: dict[str, Any], probe: br.Probe) -> dict[str, Any]:
    """init, scan and compute of a ``zarr`` product."""
    from padocc_like import api

    probe.mark("import")
    group = api.open_group(job["group_yaml"])
    outcomes = api.run(group, ["init", "scan", "compute"])
    run_s = probe.mark("run")
    bad = [o for o in outcomes if o.status != "done"]
    if bad or not outcomes:
        raise RuntimeError("; ".join(f"{o.phase} {o.status}: {o.message}" for o in bad) or "no outcome")
    state = br.read_json(Path(job["work_dir"]) / "projects" / br.PROJECT_ID / "state.json")
    phases = {n: rec.get("duration_s") for n, rec in state["phases"].items() if rec.get("duration_s")}
    product = next(p for p in state["products"] if p["revision"] == state["current_product"])
    layout = product.get("chunk_layout", {}).get("tas", {})
    return {
        "work_s": run_s,
        "compute_s": phases.get("compute"),
        "phases_s": phases,
        "store": product["path"],
        "chunks": layout.get("chunks"),
        "layout_reason": layout.get("reason"),
        "messages": {o.phase: o.message for o in outcomes},
    }


def w_dask(job: dict[str, Any], probe: br.Probe) -> dict[str, Any]:
    """dask's default rechunk: ``open_mfdataset(chunks=...)``, ``.chunk``, ``to_zarr``."""
    import dask
    import dask.array
    import netCDF4  # noqa: F401
    import numcodecs
    import xarray as xr
    import zarr  # noqa: F401

    xr.backends.list_engines()
    probe.mark("import")
    ds = _open_mf(job["files"], job["source_chunks"])
    tas = ds["tas"]
    source_chunks = [int(c) for c in tas.data.chunksize]
    open_s = probe.mark("open")
    target = tas.chunk({"time": -1, **job["tile"]})
    _strip_encoding(target)
    target.encoding["compressors"] = [numcodecs.Zstd(level=3)]
    target.to_zarr(job["store"], mode="w", zarr_format=2, consolidated=True)
    write_s = probe.mark("rechunk_write")
    return {
        "work_s": open_s + write_s,
        "open_s": open_s,
        "write_s": write_s,
        "store": job["store"],
        "chunks": [int(c) for c in target.data.chunksize],
        "source_chunks": source_chunks,
        "scheduler": str(dask.config.get("scheduler", None) or "threads (default)"),
        "versions": _versions(("xarray", "dask", "zarr", "numcodecs", "netCDF4")),
    }


def w_rechunker(job: dict[str, Any], probe: br.Probe) -> dict[str, Any]:
    """rechunker 0.5.4 (in its own venv: zarr 2) with ``max_mem``, then consolidated metadata."""
    import dask.array  # noqa: F401
    import netCDF4  # noqa: F401
    import numcodecs
    import xarray as xr
    import zarr
    from rechunker import rechunk

    probe.mark("import")
    ds = _open_mf(job["files"], {})[["tas"]]
    _strip_encoding(ds)
    source_chunks = [int(c) for c in ds["tas"].data.chunksize]
    open_s = probe.mark("open")
    store, temp = Path(job["store"]), Path(job["temp_store"])
    for p in (store, temp):
        shutil.rmtree(p, ignore_errors=True)
    chunks = {"time": ds.sizes["time"], **job["tile"]}
    plan = rechunk(
        ds,
        target_chunks=chunks,
        max_mem=job["max_mem"],
        target_store=str(store),
        temp_store=str(temp),
        target_options={"tas": {"compressor": numcodecs.Zstd(level=3)}},
    )
    plan_s = probe.mark("plan")
    plan.execute()
    zarr.consolidate_metadata(str(store))
    execute_s = probe.mark("execute")
    shutil.rmtree(temp, ignore_errors=True)
    written = xr.open_dataset(str(store), engine="zarr", consolidated=True)["tas"]
    return {
        "work_s": open_s + plan_s + execute_s,
        "open_s": open_s,
        "write_s": plan_s + execute_s,
        "store": str(store),
        "chunks": [int(c) for c in written.encoding["chunks"]],
        "source_chunks": source_chunks,
        "versions": _versions(("rechunker", "xarray", "dask", "zarr", "numcodecs", "netCDF4")),
    }


def w_digest(job: dict[str, Any], probe: br.Probe) -> dict[str, Any]:
    """SHA-256 of ``tas``'s float32 values in C order (slabs along time), of the sources
    and of every store."""
    import xarray as xr

    xr.set_options(file_cache_maxsize=16)
    probe.mark("import")
    out: dict[str, Any] = {}
    for name, path in job["targets"].items():
        t0 = time.perf_counter()
        try:
            if name == "sources":
                ds = _open_mf(job["files"], None)
            else:
                ds = xr.open_dataset(path, engine="zarr", consolidated=True)
            d = br.digest_variable(ds["tas"], job["slab_bytes"])
            ds.close()
            out[name] = {k: d[k] for k in ("dims", "shape", "dtype", "sha256")}
        except Exception as err:  # report it, digest the others
            out[name] = {"error": f"{type(err).__name__}: {err}"}
        out[name]["seconds"] = time.perf_counter() - t0
    probe.mark("digest")
    return {"digests": out}


def w_read(job: dict[str, Any], probe: br.Probe) -> dict[str, Any]:
    """Open once, then read one map and one point's whole series ``reads + 1`` times (the
    first of each is dropped); each map read is a different time step."""
    import dask.array  # noqa: F401
    import netCDF4  # noqa: F401
    import numpy as np
    import xarray as xr
    import zarr  # noqa: F401

    xr.backends.list_engines()
    with contextlib.suppress(ImportError):
        import pint  # noqa: F401  (xarray imports it on first use: keep it out of "open")
    probe.mark("import")
    if job["layout"] == "sources":
        ds = _open_mf(job["files"], None)
    else:
        ds = xr.open_dataset(job["store"], engine="zarr", consolidated=True)
    tas = ds["tas"]
    open_s = probe.mark("open")
    # ``tas.chunks``, not ``tas.data``: ``.data`` of a lazily indexed (zarr) array loads it
    source_chunks = [int(c[0]) for c in tas.chunks] if tas.chunks else None
    lat, lon = job["point"]
    map_s, point_s, checks = [], [], []
    for k in job["map_steps"]:
        t0 = time.perf_counter()
        a = tas.isel(time=k).values
        map_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        b = tas.isel(lat=lat, lon=lon).values
        point_s.append(time.perf_counter() - t0)
        checks.append([list(a.shape), list(b.shape), float(np.nansum(a[:1])) + float(np.nansum(b[:1]))])
    probe.mark("reads")
    ds.close()
    return {
        "open_s": open_s,
        "map_s": map_s,
        "point_s": point_s,
        "map_shape": checks[0][0],
        "point_shape": checks[0][1],
        "dask_chunks": source_chunks,
    }


WORKERS = {
    "gen": br.w_gen,
    "ours": w_ours,
    "dask": w_dask,
    "rechunker": w_rechunker,
    "digest": w_digest,
    "read": w_read,
}


def worker_main(step: str, job_path: str, result_path: str) -> int:
    br.WORKERS.update(WORKERS)  # bench_refs' child protocol, with this script's steps
    return br.worker_main(step, job_path, result_path)


# --------------------------------------------------------------------------- parent


class Runner(bv.Runner):
    """``bench_validate``'s runner, with children in another venv's interpreter too."""

    def child(self, step: str, name: str, job: dict[str, Any], python: str | None = None) -> dict[str, Any]:
        if python is None:
            return super().child(step, name, job)
        job_path, result_path = self.jobs / f"{name}.json", self.jobs / f"{name}.result.json"
        br.write_json(job_path, job)
        result_path.unlink(missing_ok=True)
        env = dict(os.environ)
        for key in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"):  # do not leak this venv's settings
            env.pop(key, None)
        argv = [python, str(self.script), "_worker", step, str(job_path), str(result_path)]
        with (self.logs / f"{name}.log").open("w") as log:
            start = time.perf_counter()
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
            )
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        res = br.read_json(result_path) if result_path.exists() else {"ok": False, "error": "no result"}
        res.update(
            wall_s=wall,
            exit_code=code,
            maxrss_mib=usage.ru_maxrss / 1024,
            cpu_s=usage.ru_utime + usage.ru_stime,
            log=f"logs/{name}.log",
        )
        res["ok"] = bool(res.get("ok")) and code == 0
        return res


def ensure_rechunker_venv(runner: Runner, timeout: float) -> tuple[str | None, dict[str, Any]]:
    """The rechunker venv's interpreter (created when missing or stale), or None and why."""
    python = RECHUNKER_VENV / "bin" / "python"
    marker = RECHUNKER_VENV / ".bench-requirements.json"
    wanted = {"packages": RECHUNKER_PACKAGES, "base": platform.python_version()}
    info: dict[str, Any] = {"dir": str(RECHUNKER_VENV), "packages": RECHUNKER_PACKAGES}

    def usable() -> bool:
        return subprocess.run([str(python), "-c", RECHUNKER_CHECK], capture_output=True).returncode == 0

    if python.exists() and marker.exists() and br.read_json(marker) == wanted and usable():
        info["created"] = False
        return str(python), info
    log = runner.logs / "venv-rechunker.log"
    runner.say(f"rechunker: creating {RECHUNKER_VENV} (log: {log})")
    t0 = time.perf_counter()
    rc = 0
    with log.open("w") as out:
        for cmd in (
            [sys.executable, "-m", "venv", "--clear", str(RECHUNKER_VENV)],
            [str(python), "-m", "pip", "install", "--disable-pip-version-check", *RECHUNKER_PACKAGES],
        ):
            out.write(f"$ {' '.join(cmd)}\n")
            out.flush()
            try:
                rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=timeout).returncode
            except subprocess.TimeoutExpired:
                rc = -1
                out.write(f"timed out after {timeout:.0f} s\n")
            if rc != 0:
                break
    info["install_s"] = time.perf_counter() - t0
    if rc != 0 or not usable():
        tail = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()][-2:]
        info["error"] = f"installing {' '.join(RECHUNKER_PACKAGES)} failed: {' | '.join(tail)[:400]}"
        return None, info
    br.write_json(marker, wanted)
    info["created"] = True
    runner.say(f"rechunker: venv ready in {info['install_s']:.0f} s")
    return str(python), info


def ensure_files(runner: Runner, args: argparse.Namespace) -> list[str]:
    """The first ``nfiles`` files of the archive, generated (only that many) when missing."""
    shape = SMOKE if args.smoke else {**FULL, "nfiles": args.nfiles}
    files = [str(p) for p in br.archive_files(args.data_dir)]
    if len(files) >= shape["nfiles"] and not args.smoke:
        runner.say(f"archive: the first {shape['nfiles']} of {len(files)} files in {args.data_dir}")
        return files[: shape["nfiles"]]
    params = br.archive_params(
        argparse.Namespace(**shape, complevel=4, fill_fraction=0.01, seed=0)  # bench_refs' defaults
    )
    if not br.archive_is_current(args.data_dir, params):
        if files and not args.generated_dir:
            raise SystemExit(f"{args.data_dir} has {len(files)} files, fewer than {shape['nfiles']}")
        runner.say(f"archive: generating {params['nfiles']} files in {args.data_dir}")
        res = runner.child("gen", "gen", {"data_dir": str(args.data_dir), "params": params, "workers": 2})
        if not res["ok"]:
            raise SystemExit(f"archive generation failed: {res.get('error')} (see {res['log']})")
    return [str(p) for p in br.archive_files(args.data_dir)][: shape["nfiles"]]


def group_yaml(work: Path, list_file: Path, pattern: str, tile: dict[str, int]) -> str:
    chunks = (
        f"chunks: {{time: -1, lat: {tile['lat']}, lon: {tile['lon']}}}, " if pattern == "timeseries" else ""
    )
    return (
        "# written by bench/bench_zarr.py\n"
        f"group: {br.PROJECT_ID}\n"
        f"work_dir: {json.dumps(str(work))}\n"
        "pipeline: kerchunk\n"
        "profile: {name: serial, workers: 1}\n"
        "projects:\n"
        f"  - id: {br.PROJECT_ID}\n"
        f"    sources: {{list_file: {json.dumps(str(list_file))}}}\n"
        "    concat_dims: [time]\n"
        "    variables: {keep: [tas]}\n"
        f"    product: {{kind: zarr, zarr: {{pattern: {pattern}, {chunks}"
        f"memory_limit_mb: {MEMORY_LIMIT_MB}, format: 2, codec: zstd}}}}\n"
    )


def warm(paths: list[str | Path]) -> None:
    """Read every file (of a store: every file under it) once, so no measurement pays for the disk."""
    files: list[str] = []
    for p in map(Path, paths):
        files += [str(f) for f in sorted(p.rglob("*")) if f.is_file()] if p.is_dir() else [str(p)]
    bv.warm_page_cache(files)


def write_job(
    tool: str, rep: int, out: Path, files: list[str], list_file: Path, tile: dict[str, int], file_ntime: int
) -> Any:
    run_dir = out / "runs" / f"{tool}-r{rep}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    if tool.startswith("ours-"):
        work = run_dir / "work"
        gy = run_dir / "group.yaml"
        gy.write_text(group_yaml(work, list_file, tool.removeprefix("ours-"), tile))
        return "ours", {"group_yaml": str(gy), "work_dir": str(work)}
    job = {"files": files, "store": str(run_dir / "tas.zarr"), "tile": tile, "source_chunks": {}}
    if tool == "dask-files":
        job["source_chunks"] = {"time": file_ntime}
    if tool == "rechunker":
        job.update(temp_store=str(run_dir / "temp.zarr"), max_mem=f"{MEMORY_LIMIT_MB}MB")
        return "rechunker", job
    return "dask", job


def summarise_write(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if r["ok"]]
    if len(ok) != len(runs) or not ok:
        bad = next(r for r in runs if not r["ok"])
        return {"status": "failed", "error": bad.get("error"), "log": bad.get("log"), "runs": runs}
    median_run = sorted(ok, key=lambda r: r["work_s"])[(len(ok) - 1) // 2]
    work = [r["work_s"] for r in ok]
    out = {
        "status": "ok",
        "work_s": median_run["work_s"],
        "work_range_s": [min(work), max(work)],
        "wall_s": statistics.median(r["wall_s"] for r in ok),
        "maxrss_mib": max(r["maxrss_mib"] for r in ok),
        "store": median_run["store"],
        "store_bytes": median_run["store_bytes"],
        "chunks": median_run.get("chunks"),
        "runs": runs,
    }
    for key in ("compute_s", "open_s", "write_s", "source_chunks", "scheduler", "versions", "layout_reason"):
        if key in median_run:
            out[key] = median_run[key]
    return out


def summarise_read(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if r["ok"]]
    if len(ok) != len(runs) or not ok:
        bad = next(r for r in runs if not r["ok"])
        return {"status": "failed", "error": bad.get("error"), "log": bad.get("log"), "runs": runs}
    maps = [s for r in ok for s in r["map_s"][1:]]  # the first read of each child is dropped
    points = [s for r in ok for s in r["point_s"][1:]]
    return {
        "status": "ok",
        "open_s": statistics.median(r["open_s"] for r in ok),
        "map_s": statistics.median(maps),
        "map_range_s": [min(maps), max(maps)],
        "map_first_s": statistics.median(r["map_s"][0] for r in ok),
        "point_s": statistics.median(points),
        "point_range_s": [min(points), max(points)],
        "point_first_s": statistics.median(r["point_s"][0] for r in ok),
        "reads": len(maps),
        "maxrss_mib": max(r["maxrss_mib"] for r in ok),
        "map_shape": ok[0]["map_shape"],
        "point_shape": ok[0]["point_shape"],
        "dask_chunks": ok[0].get("dask_chunks"),
        "runs": runs,
    }


def _ms(s: float) -> str:
    return f"{s * 1000:.1f}" if s < 10 else f"{s * 1000:,.0f}"


def render(results: dict[str, Any]) -> str:
    a, m, st = results["archive"], results["machine"], results["settings"]
    tools, reads, targets = results["tools"], results["reads"], results["targets"]
    shape = a["file_shape"]
    lines = [
        f"# Zarr products: rechunking {a['nfiles']} files (maps) to a time-series layout",
        "",
        f"Archive: the first {a['nfiles']} files of `{a['dir']}`, each `tas` of "
        f"({shape[0]}, {shape[1]}, {shape[2]}) float32 (zlib); `tas` is "
        f"{a['tas_bytes'] / (1 << 20):.0f} MiB decoded, ({a['ntime']}, {shape[1]}, {shape[2]}). "
        f"Every store is Zarr v2, zstd level 3, consolidated metadata.",
        "",
        f"Machine: {m.get('cpu_model') or '?'}, {m.get('cpu_count', '?')} CPUs, "
        f"{(m.get('ram_bytes') or 0) / (1 << 30):.0f} GiB; load average {m['loadavg_start'][0]:.2f} at "
        f"start, {m['loadavg_end'][0]:.2f} at end. Commit {(results['git'].get('commit') or '?')[:10]}"
        + (" (padocc_like/ had uncommitted changes)" if results["git"].get("padocc_like_dirty") else "")
        + ".",
        "",
        f"Each write is a fresh child process with a warm page cache, {st['repeat']} interleaved "
        "repeat(s) (rechunker: 1); the median run is shown with the range in brackets. *time* is the "
        "work after the imports: for padocc-like init + scan + compute (of which *compute* writes the "
        "store), for dask and rechunker `open_mfdataset` + rechunk + write. *child wall* adds interpreter "
        "start and imports. *peak RSS* is the child's `ru_maxrss` (the largest over repeats). *equal*: "
        "the SHA-256 of the store's `tas` values (C order) equals that of `open_mfdataset` of the sources.",
        "",
        "| tool | chunks of `tas` | time s | compute s | child wall s | time vs dask-tasks "
        "| peak RSS MiB | RSS vs dask-tasks | store size | equal |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    dask = tools.get("dask-tasks", {})
    dask_ok = dask.get("status") == "ok"
    for name in TOOLS:
        s = tools.get(name)
        if s is None:
            continue
        if s["status"] == "not run":
            lines.append(f"| {name} | {s.get('reason')} | | | | | | | | |")
            continue
        if s["status"] != "ok":
            lines.append(f"| {name} | FAILED: {str(s.get('error'))[:200]} | | | | | | | | |")
            continue
        lo, hi = s["work_range_s"]
        t_ratio = f"{s['work_s'] / dask['work_s']:.2f}x" if dask_ok else "-"
        r_ratio = f"{s['maxrss_mib'] / dask['maxrss_mib']:.2f}x" if dask_ok else "-"
        compute = f"{s['compute_s']:.2f}" if s.get("compute_s") is not None else "-"
        chunks = "(" + ", ".join(map(str, s.get("chunks") or [])) + ")"
        equal = "yes" if s.get("equal") else "**FAIL**"
        lines.append(
            f"| {name} | {chunks} | {s['work_s']:.2f} [{lo:.2f}{br.DASH}{hi:.2f}] | {compute} | "
            f"{s['wall_s']:.2f} | {t_ratio} | {s['maxrss_mib']:.0f} | {r_ratio} | "
            f"{br.human_bytes(s['store_bytes'])} | {equal} |"
        )
    for name in ("dask-tasks", "dask-files", "rechunker"):
        s = tools.get(name, {})
        if s.get("status") == "ok":
            lines.append("")
            lines.append(
                f"{name}: `open_mfdataset` {s['open_s']:.2f} s, rechunk + write {s['write_s']:.2f} s; "
                f"source dask chunks {tuple(s.get('source_chunks') or [])}."
            )
    if tools.get("rechunker", {}).get("venv", {}).get("error"):
        lines += ["", f"rechunker venv: {tools['rechunker']['venv']['error']}"]
    lines += [
        "",
        "## Reading one map and one point's time series",
        "",
        f"Fresh children, {st['read_repeat']} per layout, each opening once and then reading "
        f"{st['reads'] + 1} times; the first read of each child is dropped, the median of the other "
        f"{st['reads'] * st['read_repeat']} is shown (ms), with the range. *map*: "
        "`tas.isel(time=k).values`, a different `k` at each read; *point*: "
        f"`tas.isel(lat={st['point'][0]}, lon={st['point'][1]}).values`, the whole series. *sources*: "
        "`xr.open_mfdataset` of the netCDF files with xarray's default chunks (the files' HDF5 "
        "chunks: one dask chunk per time step here).",
        "",
        "| layout | chunks of `tas` | open s | one map ms | one point series ms | peak RSS MiB |",
        "|---|---|---|---|---|---|",
    ]
    for name in READ_LAYOUTS:
        s = reads.get(name)
        if s is None:
            continue
        if s["status"] != "ok":
            lines.append(f"| {name} | FAILED: {str(s.get('error'))[:200]} | | | | |")
            continue
        chunks = tools.get(name, {}).get("chunks") or s.get("dask_chunks")
        chunks_s = "(" + ", ".join(map(str, chunks)) + ")" if chunks else "xarray's default"
        if name == "sources" and chunks:
            chunks_s = f"dask {chunks_s}"
        mlo, mhi = s["map_range_s"]
        plo, phi = s["point_range_s"]
        lines.append(
            f"| {name} | {chunks_s} | {s['open_s']:.2f} | {_ms(s['map_s'])} [{_ms(mlo)}{br.DASH}{_ms(mhi)}] "
            f"| {_ms(s['point_s'])} [{_ms(plo)}{br.DASH}{_ms(phi)}] | {s['maxrss_mib']:.0f} |"
        )
    lines += ["", "## Targets", ""]
    for t in targets:
        if t.get("holds") is None:
            lines.append(f"* {t['what']}: {t['value']}.")
        else:
            lines.append(f"* {t['what']}: {t['value']}, **{'holds' if t['holds'] else 'does not hold'}**.")
    return "\n".join(lines) + "\n"


def evaluate_targets(tools: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets for ``ours-timeseries`` (``holds`` None: shown for comparison)."""
    out: list[dict[str, Any]] = []
    ours = tools.get("ours-timeseries", {})
    if ours.get("status") != "ok":
        return out
    for name, target in (("dask-tasks", TARGET_TIME_RATIO), ("dask-files", None), ("rechunker", None)):
        other = tools.get(name, {})
        if other.get("status") != "ok":
            continue
        r = ours["work_s"] / other["work_s"]
        what = (
            f"ours-timeseries within {target:g}x of {name}' time" if target else f"ours-timeseries vs {name}"
        )
        out.append(
            {
                "what": what,
                "value": f"{ours['work_s']:.2f} s vs {other['work_s']:.2f} s, {r:.2f}x; peak RSS "
                f"{ours['maxrss_mib']:.0f} vs {other['maxrss_mib']:.0f} MiB",
                "ratio": r,
                "holds": r <= target if target else None,
            }
        )
    out.append(
        {
            "what": f"ours-timeseries peak RSS under {TARGET_RSS_MIB:.0f} MiB",
            "value": f"{ours['maxrss_mib']:.0f} MiB",
            "holds": ours["maxrss_mib"] < TARGET_RSS_MIB,
        }
    )
    out.append(
        {
            "what": "ours-timeseries store equal to the sources",
            "value": "yes" if ours.get("equal") else "no",
            "holds": bool(ours.get("equal")),
        }
    )
    return out


def run(args: argparse.Namespace) -> int:
    out: Path = args.out_dir
    runner = Runner(out, Path(__file__).resolve())
    load_start = os.getloadavg()
    files = ensure_files(runner, args)
    if not files:
        raise SystemExit(f"no archive files in {args.data_dir}")
    list_file = out / "files.txt"
    list_file.write_text("".join(f"{f}\n" for f in files))
    shutil.rmtree(out / "runs", ignore_errors=True)
    tile = dict(TARGET_TILE)
    shape = SMOKE if args.smoke else FULL

    tools = [t for t in TOOLS if t != "rechunker"]
    venv_info: dict[str, Any] = {}
    rechunker_python = None
    if args.with_rechunker:
        rechunker_python, venv_info = ensure_rechunker_venv(runner, args.venv_timeout)
        if rechunker_python is None:
            runner.say(f"rechunker: unavailable: {venv_info['error']}")
    runs: dict[str, list[dict[str, Any]]] = {t: [] for t in tools}
    for rep in range(1, args.repeat + 1):
        for tool in tools:
            warm(files)
            step, job = write_job(tool, rep, out, files, list_file, tile, shape["ntime"])
            res = runner.child(step, f"{tool}-r{rep}", job)
            res["repeat"] = rep
            if res["ok"]:
                res["store_bytes"] = br.path_size(Path(res["store"]))
                runner.say(
                    f"{tool} r{rep}: {res['work_s']:.2f} s (child wall {res['wall_s']:.2f} s), "
                    f"peak RSS {res['maxrss_mib']:.0f} MiB"
                )
            else:
                runner.say(f"{tool} r{rep}: FAILED {res.get('error')} (see {res['log']})")
            runs[tool].append(res)
    summary: dict[str, Any] = {t: summarise_write(runs[t]) for t in tools}
    if rechunker_python:
        warm(files)
        step, job = write_job("rechunker", 1, out, files, list_file, tile, shape["ntime"])
        res = runner.child(step, "rechunker-r1", job, python=rechunker_python)
        res["repeat"] = 1
        if res["ok"]:
            res["store_bytes"] = br.path_size(Path(res["store"]))
            runner.say(f"rechunker: {res['work_s']:.2f} s, peak RSS {res['maxrss_mib']:.0f} MiB")
        else:
            runner.say(f"rechunker: FAILED {res.get('error')} (see {res['log']})")
        summary["rechunker"] = summarise_write([res])
    elif args.with_rechunker:
        summary["rechunker"] = {"status": "failed", "error": f"venv: {venv_info.get('error')}"}
    else:
        summary["rechunker"] = {"status": "not run", "reason": NOT_RUN}
    summary.setdefault("rechunker", {})["venv"] = venv_info

    # every store of every repeat against the sources
    targets = {"sources": ""}
    for tool, s in summary.items():
        for r in s.get("runs", []):
            if r["ok"]:
                targets[f"{tool}-r{r['repeat']}"] = r["store"]
    runner.say(f"digest: sources and {len(targets) - 1} stores")
    dig = runner.child("digest", "digest", {"files": files, "targets": targets, "slab_bytes": SLAB_BYTES})
    digests = dig.get("digests", {}) if dig["ok"] else {}
    ref = digests.get("sources", {}).get("sha256")
    if not ref:
        runner.say(f"digest of the sources FAILED: {dig.get('error') or digests.get('sources')}")
    for tool, s in summary.items():
        if s["status"] != "ok":
            continue
        mine = [digests.get(f"{tool}-r{r['repeat']}", {}) for r in s["runs"]]
        s["sha256"] = sorted({str(d.get("sha256") or d.get("error")) for d in mine})
        s["equal"] = bool(ref) and all(d.get("sha256") == ref for d in mine)
        runner.say(f"{tool}: {'equal to the sources' if s['equal'] else 'DIFFERS from the sources'}")

    nt = len(files) * shape["ntime"]
    point = [shape["nlat"] // 2, shape["nlon"] // 2]
    map_steps = [round((i + 0.5) * nt / (args.reads + 1)) for i in range(args.reads + 1)]
    read_runs: dict[str, list[dict[str, Any]]] = {}
    for rep in range(1, args.read_repeat + 1):
        for layout in READ_LAYOUTS:
            s = summary.get(layout)
            if layout != "sources" and (s is None or s["status"] != "ok"):
                continue
            store = s["store"] if s else None
            warm([store] if store else files)
            job = {"layout": layout, "store": store, "files": files, "point": point, "map_steps": map_steps}
            res = runner.child("read", f"read-{layout}-r{rep}", job)
            if res["ok"]:
                runner.say(
                    f"read {layout} r{rep}: open {res['open_s']:.2f} s, map {_ms(statistics.median(res['map_s'][1:]))} "
                    f"ms, point {_ms(statistics.median(res['point_s'][1:]))} ms"
                )
            else:
                runner.say(f"read {layout} r{rep}: FAILED {res.get('error')} (see {res['log']})")
            read_runs.setdefault(layout, []).append(res)
    reads = {layout: summarise_read(r) for layout, r in read_runs.items()}

    results = {
        "format": RESULTS_FORMAT,
        "version": RESULTS_VERSION,
        "created": br.now_iso(),
        "command": [Path(sys.executable).name, *sys.argv],
        "settings": {
            "repeat": args.repeat,
            "read_repeat": args.read_repeat,
            "reads": args.reads,
            "smoke": args.smoke,
            "with_rechunker": args.with_rechunker,
            "tile": tile,
            "memory_limit_mb": MEMORY_LIMIT_MB,
            "point": point,
            "map_steps": map_steps,
        },
        "archive": {
            "dir": str(args.data_dir),
            "nfiles": len(files),
            "file_shape": [shape["ntime"], shape["nlat"], shape["nlon"]],
            "ntime": nt,
            "bytes": sum(Path(f).stat().st_size for f in files),
            "tas_bytes": nt * shape["nlat"] * shape["nlon"] * 4,
        },
        "sources_digest": digests.get("sources"),
        "digests": digests,
        "tools": summary,
        "reads": reads,
        "targets": evaluate_targets(summary),
        "machine": br.machine_info(load_start),
        "git": br.git_info(),
        "versions": br.package_versions(
            ("padocc-like", "xarray", "dask", "zarr", "numcodecs", "netCDF4", "h5py")
        ),
    }
    br.write_json(out / "results.json", results)
    md = render(results)
    (out / "results.md").write_text(md)
    print(md)
    failed = [
        t for t, s in summary.items() if s["status"] == "failed" or (s["status"] == "ok" and not s["equal"])
    ]
    failed += [f"read {k}" for k, s in reads.items() if s["status"] != "ok"]
    if not ref:
        failed.append("digest of the sources")
    if failed:
        runner.say("exit 1: " + ", ".join(failed))
    return 1 if failed else 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        allow_abbrev=False,
    )
    ap.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"the archive: its first --nfiles files (default {BIG_ARCHIVE} when it has enough, "
        "else bench/data/n480_t30_45x90, generated)",
    )
    ap.add_argument("--nfiles", type=int, default=FULL["nfiles"], help="files of (30, 45, 90) to use")
    ap.add_argument("--out-dir", type=Path, default=DEFAULT_OUT, help="results, logs and the stores")
    ap.add_argument("--repeat", type=int, default=None, help="interleaved write repeats (default 3; smoke 1)")
    ap.add_argument(
        "--read-repeat", type=int, default=None, help="read children per layout (default 2; smoke 1)"
    )
    ap.add_argument("--reads", type=int, default=None, help="reads kept per read child (default 5; smoke 2)")
    ap.add_argument(
        "--with-rechunker",
        action="store_true",
        help=f"also run rechunker 0.5.4 in {RECHUNKER_VENV} (created on first use)",
    )
    ap.add_argument("--venv-timeout", type=float, default=600, help="seconds for each venv install step")
    ap.add_argument(
        "--smoke", action="store_true", help="6 tiny generated files, 1 repeat, ~20 s (used by the tests)"
    )
    args = ap.parse_args(argv)
    args.generated_dir = args.data_dir is None
    if args.data_dir is None:
        if args.smoke:
            args.data_dir = args.out_dir / "data-smoke"
        elif len(br.archive_files(BIG_ARCHIVE)) >= args.nfiles:
            args.data_dir = BIG_ARCHIVE
            args.generated_dir = False
        else:
            args.data_dir = HERE / "data" / f"n{args.nfiles}_t30_45x90"
    if args.repeat is None:
        args.repeat = 1 if args.smoke else 3
    if args.read_repeat is None:
        args.read_repeat = 1 if args.smoke else 2
    if args.reads is None:
        args.reads = 2 if args.smoke else 5
    args.data_dir = args.data_dir.resolve()
    args.out_dir = args.out_dir.resolve()
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
