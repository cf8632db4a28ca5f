"""Scaling of padocc-like's reference generation with the number of files.

Runs init + scan + compute on the first N files of one archive for several N (each in a fresh
child process, with 1 and 2 workers, ``--repeat`` times interleaved), and reports time per
file (the median run), peak RSS and the product.
Linear scaling shows as a flat time per file; the RSS column is the whole child's peak.

    .venv/bin/python bench/bench_scale.py --data-dir bench/data/n10000_t30_45x90 \\
        --counts 1000,2500,5000,10000 --workers 1,2 --layout parquet

The archive comes from ``bench_refs.py --preset scale-10000 --gen-only``. Results go to
``bench/out/scale/results.json`` and ``results.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child(data_dir: str, n: int, workers: int, layout: str, out: str) -> None:
    """One measurement (runs in a fresh interpreter)."""
    t0 = time.perf_counter()
    from padocc_like import api

    files = sorted(str(p) for p in Path(data_dir).glob("*.nc"))[:n]
    if len(files) < n:
        raise SystemExit(f"{data_dir} has {len(files)} files, fewer than {n}")
    work = Path(out) / f"n{n}-w{workers}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / "files.txt").write_text("\n".join(files) + "\n")
    (work / "group.yaml").write_text(
        f"group: scale\nwork_dir: {json.dumps(str(work / 'work'))}\npipeline: kerchunk\n"
        f"profile: {{name: scale, workers: {workers}, inline_threshold: 500}}\n"
        "projects:\n  - id: scale\n    sources: {list_file: files.txt}\n    concat_dims: [time]\n"
        f"    product: {{layout: {layout}}}\n"
    )
    group = api.open_group(work / "group.yaml")
    t1 = time.perf_counter()
    outcomes = api.run(group, ["init", "scan", "compute"], workers=workers)
    t2 = time.perf_counter()
    row = api.status(group)[0]
    print(
        json.dumps(
            {
                "files": n,
                "workers": workers,
                "ok": all(o.status == "done" for o in outcomes),
                "messages": [o.message for o in outcomes],
                "phases_s": {o.phase: o.duration_s for o in outcomes},
                "run_s": t2 - t1,
                "import_s": t1 - t0,
                "product": row["product"],
                "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=str(HERE / "data" / "n10000_t30_45x90"))
    ap.add_argument("--counts", default="1000,2500,5000,10000")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--layout", default="parquet", choices=["auto", "json", "parquet"])
    ap.add_argument("--out-dir", default=str(HERE / "out" / "scale"))
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs of each (files, workers), interleaved; the median is shown",
    )
    ap.add_argument("--_child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        child(args.data_dir, args._child[0], args._child[1], args.layout, args.out_dir)
        return 0
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # warm the page cache, so that every count measures the same thing (metadata from memory);
    # the chunk index of a netCDF-4 file is spread through it, so read whole files
    t0 = time.perf_counter()
    files = sorted(Path(args.data_dir).glob("*.nc"))[: max(int(c) for c in args.counts.split(","))]
    total = 0
    for path in files:
        with open(path, "rb") as f:
            while block := f.read(1 << 22):
                total += len(block)
    print(f"page cache warmed: {len(files)} files, {total / 1e9:.2f} GB in {time.perf_counter() - t0:.1f} s")
    runs: dict[tuple[int, int], list[dict]] = {}
    for rep in range(1, args.repeat + 1):
        for n in [int(c) for c in args.counts.split(",")]:
            for w in [int(c) for c in args.workers.split(",")]:
                t0 = time.perf_counter()
                proc = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--data-dir",
                        args.data_dir,
                        "--layout",
                        args.layout,
                        "--out-dir",
                        str(out / "runs"),
                        "--_child",
                        str(n),
                        str(w),
                    ],
                    capture_output=True,
                    text=True,
                )
                wall = time.perf_counter() - t0
                if proc.returncode != 0:
                    print(proc.stderr[-2000:], file=sys.stderr)
                    return 1
                run = json.loads(proc.stdout.strip().splitlines()[-1])
                run["wall_s"] = wall
                run["ms_per_file"] = 1000 * (run["phases_s"]["scan"] + run["phases_s"]["compute"]) / n
                runs.setdefault((n, w), []).append(run)
                print(
                    f"[{rep}/{args.repeat}] {n} files, {w} worker(s): {run['ms_per_file']:.2f} ms/file, "
                    f"wall {wall:.1f} s, {run['maxrss_mib']:.0f} MiB, {run['product']['layout']}",
                    flush=True,
                )
    rows = []
    for these in runs.values():  # the median run of each (files, workers), in run order
        ranked = sorted(these, key=lambda r: r["ms_per_file"])
        row = dict(ranked[(len(ranked) - 1) // 2])
        row["repeats"] = len(these)
        row["ms_per_file_runs"] = [r["ms_per_file"] for r in these]
        row["maxrss_mib"] = max(r["maxrss_mib"] for r in these)
        rows.append(row)
    base = {r["files"]: r for r in rows if r["workers"] == 1}
    lines = [
        f"# Scaling: first N files of `{args.data_dir}`",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; load average {os.getloadavg()[0]:.2f} at the end. Layout `{args.layout}`. "
        "Page cache warmed first (every file read once). Each run is a fresh child process; "
        f"{args.repeat} interleaved run(s) of each row, the median shown with the range of ms/file in brackets "
        "and the largest peak RSS.",
        "",
        "| files | workers | scan s | compute s | ms/file (scan + compute) | speed-up vs 1 worker | child wall s | peak RSS MiB | product | references |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        b = base.get(r["files"])
        speed = (b["ms_per_file"] / r["ms_per_file"]) if b else float("nan")
        lines.append(
            f"| {r['files']:,} | {r['workers']} | {r['phases_s']['scan']:.2f} | {r['phases_s']['compute']:.2f} "
            f"| {r['ms_per_file']:.2f} [{min(r['ms_per_file_runs']):.2f}-{max(r['ms_per_file_runs']):.2f}] "
            f"| {speed:.2f}x | {r['wall_s']:.1f} | {r['maxrss_mib']:.0f} "
            f"| {r['product']['layout']}, {r['product']['size'] / 1e6:.1f} MB | {r['product']['n_refs']:,} |"
        )
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
