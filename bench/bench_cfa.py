#!/usr/bin/env python3
"""CFA benchmark: open and read padocc-like's CF-1.13 aggregation product, side by side.

Builds a ``cfa`` product of an archive with ``padocc_like.api`` (init, scan, compute), then
times, each in a fresh child process with a warm page cache, in interleaved repeats:

* ``padocc_cfa``: ``xr.open_dataset(product, engine="padocc_cfa")``, our reader;
* ``cfapyx``: ``xr.open_dataset(product, engine="CFA")``, cfapyx's reader (what CEDA's
  DataPoint uses);
* ``open_mfdataset``: ``xr.open_mfdataset`` over the sources, the baseline.

For each: the first open after the imports, a second open, and reading all of ``tas`` in
slabs; every reader's ``tas`` must digest to the same values as ``open_mfdataset``'s.
Writes ``results.json`` and ``results.md``::

    .venv/bin/python bench/bench_cfa.py                  # bench/data/n120_t30_180x360, 3 repeats
    .venv/bin/python bench/bench_cfa.py --smoke          # 4 tiny files, 1 repeat

Only the standard library is imported at module level; the archive generator and the
child-process helpers are ``bench_refs.py``'s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_refs as br  # noqa: E402
import bench_validate as bv  # noqa: E402

RESULTS_FORMAT = "padocc-like/bench-cfa"
RESULTS_VERSION = 1
DEFAULT_OUT = HERE / "out" / "cfa"
READERS = ("padocc_cfa", "cfapyx", "open_mfdataset")


# --------------------------------------------------------------------------- children


def _open(reader: str, job: dict[str, Any]) -> Any:
    import xarray as xr

    if reader == "open_mfdataset":
        return br._open_sources(job["files"])
    engine = "padocc_cfa" if reader == "padocc_cfa" else "CFA"
    return xr.open_dataset(job["product"], engine=engine)


def w_read(job: dict[str, Any], probe: br.Probe) -> dict[str, Any]:
    """Open twice, then read and digest all of ``tas`` in slabs."""
    import hashlib

    import dask.array  # noqa: F401  (imported by the first open otherwise: keep it out of "open")
    import netCDF4  # noqa: F401
    import xarray as xr

    xr.backends.list_engines()
    with contextlib.suppress(ImportError):
        import pint  # noqa: F401  (xarray and cfapyx import it on first use: keep it out of "open")
    probe.mark("import")
    reader = job["reader"]
    ds = _open(reader, job)
    open_s = probe.mark("open")
    ds.close()
    ds = _open(reader, job)
    open_again_s = probe.mark("open_again")
    tas = ds["tas"]
    step = br._slab_steps(tas, job["slab_bytes"])
    h, nbytes = hashlib.sha256(), 0
    for i in range(0, tas.shape[0], step):
        a = tas[i : i + step].values
        nbytes += a.nbytes
        br._digest_update(h, a)
    read_s = probe.mark("read_tas")
    shape = list(tas.shape)
    ds.close()
    return {
        "open_s": open_s,
        "open_again_s": open_again_s,
        "read_s": read_s,
        "bytes": nbytes,
        "shape": shape,
        "sha256": h.hexdigest(),
    }


WORKERS = {"gen": br.w_gen, "build": bv.w_build, "read": w_read}


def worker_main(step: str, job_path: str, result_path: str) -> int:
    br.WORKERS.update(WORKERS)
    return br.worker_main(step, job_path, result_path)


# --------------------------------------------------------------------------- parent


def group_yaml(work: Path, data_dir: Path) -> str:
    return (
        "# written by bench/bench_cfa.py\n"
        f"group: {br.PROJECT_ID}\n"
        f"work_dir: {json.dumps(str(work))}\n"
        "projects:\n"
        f"  - id: {br.PROJECT_ID}\n"
        f"    sources: {{glob: {json.dumps(str(data_dir / (br.FILE_PREFIX + '*.nc')))}}}\n"
        "    concat_dims: [time]\n"
        "    product: {kind: cfa}\n"
    )


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if r["ok"]]
    if len(ok) != len(runs):
        bad = next(r for r in runs if not r["ok"])
        return {"status": "failed", "error": bad.get("error"), "log": bad.get("log"), "runs": runs}

    def med(key: str) -> float:
        return statistics.median(r[key] for r in ok)

    return {
        "status": "ok",
        "open_s": med("open_s"),
        "open_again_s": med("open_again_s"),
        "read_s": med("read_s"),
        "read_range": [min(r["read_s"] for r in ok), max(r["read_s"] for r in ok)],
        "wall_s": med("wall_s"),
        "maxrss_mib": max(r["maxrss_mib"] for r in ok),
        "bytes": ok[0]["bytes"],
        "sha256": sorted({r["sha256"] for r in ok}),
        "runs": runs,
    }


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        "# CFA product: open and read, against cfapyx and `xr.open_mfdataset`",
        "",
        f"Archive: {results['files']} netCDF-4 files in `{results['data_dir']}`. Product: "
        f"`{Path(results['product']['path']).name}` ({results['product']['n_refs']} fragments, "
        f"{results['product']['size']:,} bytes).",
        "",
        f"Machine: {m.get('cpu_model') or '?'}, {m.get('cpu_count', '?')} CPUs; load average "
        f"{results['load'][0]:.2f} at start, {results['load'][1]:.2f} at end. Commit "
        f"{results['commit']}.",
        "",
        f"Each measurement is a fresh child process, warm page cache, {results['repeat']} interleaved "
        "repeat(s); medians, with the range of *read* in brackets. *open* is the first open after "
        "importing xarray, dask and netCDF4; *read* loads all of `tas` in slabs of "
        f"{results['slab_mb']} MiB. *equal* compares the digest of the decoded `tas` with "
        "`open_mfdataset`'s.",
        "",
        "| reader | open s | open again s | read `tas` s | read vs open_mfdataset | peak RSS MiB | equal |",
        "|---|---|---|---|---|---|---|",
    ]
    base = results["readers"].get("open_mfdataset", {})
    for name in READERS:
        s = results["readers"].get(name)
        if s is None:
            continue
        if s["status"] != "ok":
            lines.append(f"| {name} | failed: {s.get('error')} | | | | | |")
            continue
        speed = base.get("read_s") / s["read_s"] if base.get("status") == "ok" and s["read_s"] else None
        lo, hi = s["read_range"]
        equal = "reference" if name == "open_mfdataset" else ("yes" if s["equal"] else "**NO**")
        lines.append(
            f"| {name} | {s['open_s']:.3f} | {s['open_again_s']:.3f} | {s['read_s']:.2f} "
            f"[{lo:.2f}-{hi:.2f}] | {f'{speed:.2f}x' if speed else '-'} | {s['maxrss_mib']:.0f} | {equal} |"
        )
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    out = args.out_dir
    runner = bv.Runner(out, Path(__file__).resolve())
    files = bv.ensure_archive(runner, args)
    work = out / "work"
    gy = out / "group.yaml"
    gy.write_text(group_yaml(work, args.data_dir))
    runner.say(f"product: building the cfa product ({len(files)} files)")
    build = runner.child("build", "build", {"group_yaml": str(gy), "work_dir": str(work)})
    if not build["ok"]:
        runner.say(f"build failed: {build.get('error')} (see {build['log']})")
        return 1
    product = build["product"]
    runner.say(f"warmed page cache in {bv.warm_page_cache(files):.1f} s")
    load0 = os.getloadavg()
    runs: dict[str, list[dict[str, Any]]] = {r: [] for r in READERS}
    for rep in range(args.repeat):
        for reader in READERS:
            job = {
                "reader": reader,
                "product": product["path"],
                "files": files,
                "slab_bytes": args.slab_mb << 20,
            }
            res = runner.child("read", f"{reader}-r{rep + 1}", job)
            runs[reader].append(res)
            if res["ok"]:
                runner.say(f"{reader} r{rep + 1}: open {res['open_s']:.3f} s, read tas {res['read_s']:.2f} s")
            else:
                runner.say(f"{reader} r{rep + 1}: FAILED {res.get('error')} (see {res['log']})")
    readers = {name: summarise(r) for name, r in runs.items()}
    ref = readers["open_mfdataset"]
    for s in readers.values():
        if s["status"] == "ok":
            s["equal"] = ref["status"] == "ok" and s["sha256"] == ref["sha256"] and len(s["sha256"]) == 1
    results = {
        "format": RESULTS_FORMAT,
        "version": RESULTS_VERSION,
        "created": br.now_iso(),
        "data_dir": str(args.data_dir),
        "files": len(files),
        "product": product,
        "repeat": args.repeat,
        "slab_mb": args.slab_mb,
        "machine": br.machine_info(load0),
        "load": [load0[0], os.getloadavg()[0]],
        "commit": (br.git_info().get("commit") or "?")[:10],
        "readers": readers,
    }
    br.write_json(out / "results.json", results)
    md = render(results)
    (out / "results.md").write_text(md)
    print(md)
    failed = any(s["status"] != "ok" or not s.get("equal", True) for s in readers.values())
    return 1 if failed else 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    ap.add_argument("--data-dir", type=Path, default=None, help=f"the archive (default {bv.DEFAULT_DATA})")
    ap.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--repeat", type=int, default=None, help="interleaved repeats (default 3; smoke 1)")
    ap.add_argument("--slab-mb", type=int, default=256, help="slab size for reading (MiB)")
    ap.add_argument(
        "--smoke", action="store_true", help="4 tiny generated files, 1 repeat (used by the tests)"
    )
    args = ap.parse_args(argv)
    if args.data_dir is None:
        args.data_dir = (args.out_dir / "data") if args.smoke else bv.DEFAULT_DATA
    if args.repeat is None:
        args.repeat = 1 if args.smoke else 3
    args.data_dir = args.data_dir.resolve()
    args.out_dir = args.out_dir.resolve()
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_worker"]:
        return worker_main(*argv[1:4])
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
