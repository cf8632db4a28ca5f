#!/usr/bin/env python3
"""Reference-generation benchmark: padocc-like vs kerchunk vs VirtualiZarr (vs PADOCC).

One command generates a CF archive (once), times every tool on the same files, each
run in a fresh child process, checks that every product opens to the same values as
``xr.open_mfdataset`` on the sources, and writes ``results.json`` and ``results.md``::

    .venv/bin/python bench/bench_refs.py --preset standard     # 120 x (30, 180, 360)
    .venv/bin/python bench/bench_refs.py --preset smoke        # 4 tiny files, ~15 s
    .venv/bin/python bench/bench_refs.py --summarize bench/out/*/results.json

Only the standard library is imported at module level, so ``--help`` is instant and
the same file serves as the worker script of every child process (including the
children that run in the VirtualiZarr and PADOCC virtual environments). See
``bench/README.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS_FORMAT = "padocc-like/bench-refs"
RESULTS_VERSION = 1
GENERATOR_VERSION = 1
FILE_PREFIX = "tas_pr_day_bench_"
PROJECT_ID = "bench"
TOOLS = ("ours", "ours2", "kerchunk", "vz", "floor", "padocc")
OURS = ("ours", "ours2")  # padocc-like with --workers N, and with 2 workers
TOOL_LABELS = {
    "ours": "padocc-like",
    "ours2": "padocc-like (2 workers)",
    "kerchunk": "kerchunk",
    "vz": "VirtualiZarr",
    "floor": "floor (h5py chunk_iter + attrs)",
    "padocc": "PADOCC",
}
# variables compared with open_mfdataset, and the static ones kerchunk must not broadcast
CHECK_VARS = ("tas", "pr", "time", "time_bnds", "lat", "lon", "lat_bnds", "lon_bnds", "height")
IDENTICAL_DIMS = ["lat", "lon", "lat_bnds", "lon_bnds", "height"]
INLINE_THRESHOLD = 500
TIMES, DASH = "\u00d7", "\u2013"  # for the markdown tables
MAIN_PACKAGES = (
    "padocc-like",
    "numpy",
    "h5py",
    "netCDF4",
    "xarray",
    "kerchunk",
    "zarr",
    "fsspec",
    "numcodecs",
    "cftime",
    "dask",
    "pandas",
    "fastparquet",
    "ujson",
    "pydantic",
    "PyYAML",
)
VZ_PACKAGES = (
    "virtualizarr",
    "xarray",
    "zarr",
    "h5py",
    "numpy",
    "obstore",
    "obspec-utils",
    "kerchunk",
    "ujson",
)
PADOCC_PACKAGES = ("padocc", "kerchunk", "virtualizarr", "xarray", "zarr", "cfapyx", "h5py", "numpy", "dask")
VENVS: dict[str, dict[str, Any]] = {
    # VirtualiZarr >= 2.6 needs Python >= 3.12; 2.5.1 is the newest for 3.11
    "vz": {
        "dir": HERE / ".venv-vz",
        "packages": ["virtualizarr[hdf]==2.5.1", "kerchunk==0.2.10", "obstore", "ujson", "cftime"],
        "check": "import virtualizarr, obstore, kerchunk, ujson, cftime",
        "timeout": 900,
    },
    "padocc": {
        "dir": HERE / ".venv-padocc",
        "packages": ["padocc==1.5.1"],
        "check": "import padocc",
        "timeout": 2400,
    },
}
PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {
        "nfiles": 4,
        "ntime": 30,
        "nlat": 18,
        "nlon": 36,
        "tools": "ours,ours2,kerchunk,floor",
        "repeat": 1,
        "read_repeat": 1,
        "create_venvs": False,
    },
    "standard": {
        "nfiles": 120,
        "ntime": 30,
        "nlat": 180,
        "nlon": 360,
        "tools": "ours,ours2,kerchunk,vz,floor",
        "repeat": 5,
        "read_repeat": 5,
        "create_venvs": True,
    },
    "scale-1200": {
        "nfiles": 1200,
        "ntime": 30,
        "nlat": 90,
        "nlon": 180,
        "tools": "ours,ours2,kerchunk,vz,floor",
        "repeat": 2,
        "read_repeat": 1,
        "create_venvs": True,
    },
    "scale-10000": {
        "nfiles": 10000,
        "ntime": 30,
        "nlat": 45,
        "nlon": 90,
        "tools": "ours,ours2,kerchunk,vz,floor",
        "repeat": 1,
        "read_repeat": 1,
        "create_venvs": True,
    },
}
DEFAULTS: dict[str, Any] = {
    "nfiles": 120,
    "ntime": 30,
    "nlat": 180,
    "nlon": 360,
    "tools": "ours,kerchunk,vz,floor",
    "repeat": 1,
    "read_repeat": 1,
    "create_venvs": True,
}


# --------------------------------------------------------------------------- helpers


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def maxrss_mib() -> float:
    """Running peak RSS of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def path_size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


def tree_sha256(path: Path) -> str:
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in files:
        h.update(str(p.relative_to(path) if path.is_dir() else p.name).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(obj, indent=1, default=str) + "\n")
    os.replace(tmp, path)


def package_versions(names: Iterable[str]) -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def median_of(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def human_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n:.2f} TB"


def fmt(x: float | None, digits: int = 2) -> str:
    if x is None or x != x:  # None or NaN
        return "-"
    return f"{x:.{digits}f}"


def ratio(x: float | None, ref: float | None) -> str:
    if x is None or ref is None or not ref or x != x or ref != ref:
        return "-"
    r = x / ref
    return f"{r:.1f}{TIMES}" if r >= 0.95 else f"{r:.2f}{TIMES}"


def json_product_stats(path: Path) -> dict[str, int]:
    """Keys of a Kerchunk JSON product: all, chunk references, inlined chunks, metadata."""
    refs = read_json(path).get("refs", {})
    n_refs = sum(1 for v in refs.values() if isinstance(v, list))
    n_meta = sum(1 for k in refs if k.rsplit("/", 1)[-1].startswith("."))
    return {"keys": len(refs), "chunk_refs": n_refs, "inline_chunks": len(refs) - n_refs - n_meta}


class Probe:
    """Sub-step timer for a child: elapsed seconds and running peak RSS after each mark."""

    def __init__(self) -> None:
        self.t0 = self.last = time.perf_counter()
        self.steps: dict[str, dict[str, float]] = {}

    def mark(self, name: str) -> float:
        now = time.perf_counter()
        elapsed = now - self.last
        self.steps[name] = {"s": round(elapsed, 6), "rss_mib": round(maxrss_mib(), 1)}
        self.last = now
        return elapsed


# --------------------------------------------------------------------------- archive


def archive_params(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "generator_version": GENERATOR_VERSION,
        "nfiles": args.nfiles,
        "ntime": args.ntime,
        "nlat": args.nlat,
        "nlon": args.nlon,
        "calendar": "360_day",
        "units": "days since 1850-01-01",
        "complevel": args.complevel,
        "shuffle": True,
        "fill_fraction": args.fill_fraction,
        "seed": args.seed,
        "variables": ["tas", "pr"],
    }


def day_to_date(day: int) -> str:
    """YYYYMMDD of a day index in the 360_day calendar starting 1850-01-01."""
    return f"{1850 + day // 360:04d}{(day % 360) // 30 + 1:02d}{day % 30 + 1:02d}"


def file_name(i: int, ntime: int) -> str:
    return f"{FILE_PREFIX}{day_to_date(i * ntime)}-{day_to_date((i + 1) * ntime - 1)}.nc"


def archive_files(data_dir: Path) -> list[Path]:
    return sorted(data_dir.glob(f"{FILE_PREFIX}*.nc"))


def archive_is_current(data_dir: Path, params: dict[str, Any]) -> bool:
    manifest = data_dir / "manifest.json"
    if not manifest.exists():
        return False
    try:
        m = read_json(manifest)
    except (OSError, ValueError):
        return False
    if m.get("params") != params:
        return False
    files = archive_files(data_dir)
    recorded = {f["name"]: f["size"] for f in m.get("files", [])}
    return len(files) == len(recorded) and all(recorded.get(p.name) == p.stat().st_size for p in files)


def _write_file(job: tuple[str, int, dict[str, Any]]) -> int:
    """Write one monthly CF netCDF4 file (runs in a generator pool process)."""
    import uuid

    import netCDF4
    import numpy as np

    path, i, p = job
    nt, ny, nx = p["ntime"], p["nlat"], p["nlon"]
    rng = np.random.default_rng([p["seed"], i])
    day0 = i * nt
    lat = np.linspace(-90 + 90 / ny, 90 - 90 / ny, ny)
    lon = np.linspace(180 / nx, 360 - 180 / nx, nx)
    dlat, dlon = 180 / ny, 360 / nx
    days = day0 + np.arange(nt, dtype="f8")
    tracking = uuid.UUID(bytes=rng.bytes(16), version=4)
    fill = np.float32(1e20)
    tmp = f"{path}.partial"
    with netCDF4.Dataset(tmp, "w", format="NETCDF4") as ds:
        # everything is defined before any data is written (CMOR-like, "define-first")
        ds.setncatts(
            {
                "Conventions": "CF-1.7",
                "title": "padocc-like benchmark archive: synthetic daily tas and pr",
                "institution": "padocc-like benchmark",
                "source": "bench/bench_refs.py (synthetic)",
                "history": f"{p['generator_version']}: generated by bench_refs.py, file {i}",
                "references": "https://example.org/padocc-like/bench",
                "comment": "Synthetic values; not for science.",
                "frequency": "day",
                "realm": "atmos",
                "experiment_id": "bench",
                "variant_label": "r1i1p1f1",
                "grid": "regular lat-lon",
                "nominal_resolution": f"{dlat:g} degree",
                "product": "model-output",
                "creation_date": "2026-01-01T00:00:00Z",
                "tracking_id": f"hdl:21.14100/{tracking}",
            }
        )
        ds.createDimension("time", None)
        ds.createDimension("lat", ny)
        ds.createDimension("lon", nx)
        ds.createDimension("bnds", 2)
        t = ds.createVariable("time", "f8", ("time",))
        t.setncatts(
            {
                "units": p["units"],
                "calendar": p["calendar"],
                "standard_name": "time",
                "long_name": "time",
                "axis": "T",
                "bounds": "time_bnds",
            }
        )
        tb = ds.createVariable("time_bnds", "f8", ("time", "bnds"))
        la = ds.createVariable("lat", "f8", ("lat",))
        la.setncatts(
            {
                "units": "degrees_north",
                "standard_name": "latitude",
                "long_name": "Latitude",
                "axis": "Y",
                "bounds": "lat_bnds",
            }
        )
        lab = ds.createVariable("lat_bnds", "f8", ("lat", "bnds"))
        lo = ds.createVariable("lon", "f8", ("lon",))
        lo.setncatts(
            {
                "units": "degrees_east",
                "standard_name": "longitude",
                "long_name": "Longitude",
                "axis": "X",
                "bounds": "lon_bnds",
            }
        )
        lob = ds.createVariable("lon_bnds", "f8", ("lon", "bnds"))
        h = ds.createVariable("height", "f8", ())
        h.setncatts(
            {"units": "m", "standard_name": "height", "long_name": "height", "positive": "up", "axis": "Z"}
        )
        comp = {"zlib": p["complevel"] > 0, "complevel": max(1, p["complevel"]), "shuffle": p["shuffle"]}
        tas = ds.createVariable(
            "tas", "f4", ("time", "lat", "lon"), fill_value=fill, chunksizes=(1, ny, nx), **comp
        )
        tas.setncatts(
            {
                "standard_name": "air_temperature",
                "long_name": "Near-Surface Air Temperature",
                "units": "K",
                "cell_methods": "area: time: mean",
                "coordinates": "height",
                "missing_value": fill,
                "comment": "near-surface (usually, 2 meter) air temperature",
            }
        )
        pr = ds.createVariable(
            "pr", "f4", ("time", "lat", "lon"), fill_value=fill, chunksizes=(1, ny, nx), **comp
        )
        pr.setncatts(
            {
                "standard_name": "precipitation_flux",
                "long_name": "Precipitation",
                "units": "kg m-2 s-1",
                "cell_methods": "area: time: mean",
                "missing_value": fill,
                "comment": "includes both liquid and solid phases",
            }
        )
        # data
        t[:] = days + 0.5
        tb[:] = np.stack([days, days + 1], axis=1)
        la[:] = lat
        lab[:] = np.stack([lat - dlat / 2, lat + dlat / 2], axis=1)
        lo[:] = lon
        lob[:] = np.stack([lon - dlon / 2, lon + dlon / 2], axis=1)
        h[...] = 2.0
        season = 10 * np.cos(2 * np.pi * (days[:, None, None] % 360) / 360)
        base = 30 * np.cos(np.deg2rad(lat))[None, :, None]
        tas[:] = (273.15 + base + season + rng.normal(0, 2, (nt, ny, nx))).astype("f4")
        rain = rng.gamma(0.5, 3e-5, (nt, ny, nx)).astype("f4")
        pr[:] = np.ma.masked_array(rain, mask=rng.random((nt, ny, nx)) < p["fill_fraction"])
    Path(tmp).replace(path)
    return Path(path).stat().st_size


def w_gen(job: dict[str, Any], probe: Probe) -> dict[str, Any]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    data_dir = Path(job["data_dir"])
    p = job["params"]
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "manifest.json").unlink(missing_ok=True)
    for stale in [*data_dir.glob(f"{FILE_PREFIX}*.nc"), *data_dir.glob(f"{FILE_PREFIX}*.partial")]:
        stale.unlink()
    jobs = [(str(data_dir / file_name(i, p["ntime"])), i, p) for i in range(p["nfiles"])]
    workers = max(1, min(job["workers"], len(jobs)))
    if workers > 1:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            sizes = list(pool.map(_write_file, jobs, chunksize=max(1, len(jobs) // (8 * workers))))
    else:
        sizes = [_write_file(j) for j in jobs]
    work = probe.mark("generate")
    manifest = {
        "params": p,
        "created": now_iso(),
        "seconds": round(work, 3),
        "workers": workers,
        "files": [{"name": Path(j[0]).name, "size": s} for j, s in zip(jobs, sizes, strict=True)],
    }
    write_json(data_dir / "manifest.json", manifest)
    return {"work_s": work, "bytes": sum(sizes), "nfiles": len(sizes)}


# --------------------------------------------------------------------------- workers (children)


def w_ours(job: dict[str, Any], probe: Probe) -> dict[str, Any]:
    from padocc_like import __version__, api

    probe.mark("import")
    group = api.open_group(job["group_yaml"])
    probe.mark("open_group")
    outcomes = api.run(group, ["init", "scan", "compute"], workers=job["workers"])
    run_s = probe.mark("run")
    bad = [o for o in outcomes if o.status != "done"]
    if bad or not outcomes:
        raise RuntimeError("; ".join(f"{o.phase} {o.status}: {o.message}" for o in bad) or "no outcome")
    state = read_json(Path(job["work_dir"]) / "projects" / PROJECT_ID / "state.json")
    phases = {name: rec.get("duration_s") for name, rec in state["phases"].items() if rec.get("duration_s")}
    products = {p["revision"]: p for p in state.get("products", [])}
    product = products.get(state.get("current_product")) or {}
    scan_report = Path(job["work_dir"]) / "projects" / PROJECT_ID / "scan.json"
    estimates = read_json(scan_report).get("estimates", {}) if scan_report.exists() else {}
    work = float(phases.get("scan", 0.0)) + float(phases.get("compute", 0.0))
    return {
        "work_s": work,
        "run_s": run_s,
        "phases_s": phases,
        "messages": {o.phase: o.message for o in outcomes},
        "scan_estimates": estimates,
        "product": {
            "path": product.get("path"),
            "layout": product.get("layout"),
            "n_refs": product.get("n_refs"),
            "size": product.get("size"),
            "sha256": product.get("sha256"),
        },
        "padocc_like_version": __version__,
    }


def w_kerchunk(job: dict[str, Any], probe: Probe) -> dict[str, Any]:
    import ujson
    from kerchunk.combine import MultiZarrToZarr
    from kerchunk.hdf import SingleHdf5ToZarr

    probe.mark("import")
    per_file: list[float] = []
    refs = []
    for path in job["files"]:
        t0 = time.perf_counter()
        refs.append(SingleHdf5ToZarr(path, inline_threshold=INLINE_THRESHOLD).translate())
        per_file.append(time.perf_counter() - t0)
    scan = probe.mark("scan")
    mzz = MultiZarrToZarr(refs, concat_dims=["time"], identical_dims=job["identical_dims"])
    out = mzz.translate()
    combine = probe.mark("combine")
    target = Path(job["product"])
    with target.open("w") as f:
        ujson.dump(out, f)
    write = probe.mark("write")
    return {
        "work_s": scan + combine + write,
        "per_file_s": {
            "mean": statistics.fmean(per_file),
            "median": statistics.median(per_file),
            "first": per_file[0],
        },
        "product": {"path": str(target), "layout": "json", "n_refs": len(out["refs"])},
    }


def w_vz(job: dict[str, Any], probe: Probe) -> dict[str, Any]:
    import warnings

    import ujson
    import xarray as xr
    from obstore.store import LocalStore
    from virtualizarr import open_virtual_dataset
    from virtualizarr.parsers import HDFParser

    try:
        from obspec_utils.registry import ObjectStoreRegistry
    except ImportError:  # older VirtualiZarr: the registry lived in virtualizarr
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from virtualizarr.registry import ObjectStoreRegistry  # type: ignore[no-redef]

    probe.mark("import")
    registry = ObjectStoreRegistry({"file://": LocalStore()})
    parser = HDFParser()
    per_file: list[float] = []
    vdss = []
    for path in job["files"]:
        t0 = time.perf_counter()
        vdss.append(open_virtual_dataset(f"file://{path}", registry=registry, parser=parser))
        per_file.append(time.perf_counter() - t0)
    scan = probe.mark("scan")
    combined = xr.combine_nested(
        vdss,
        concat_dim="time",
        data_vars="minimal",
        coords="minimal",
        compat="override",
        combine_attrs="override",
    )
    combine = probe.mark("combine")
    refs = combined.vz.to_kerchunk(format="dict")
    to_dict = probe.mark("to_dict")
    repaired = []
    if job.get("fix_scalar_keys", True):
        # VirtualiZarr 2.5.1 writes the chunk of a 0-d array under "name/" (Zarr v2: "name/0")
        for key in [k for k in refs["refs"] if k.endswith("/")]:
            refs["refs"][f"{key}0"] = refs["refs"].pop(key)
            repaired.append(key)
    target = Path(job["product"])
    with target.open("w") as f:
        ujson.dump(refs, f)
    write = probe.mark("write")
    return {
        "work_s": scan + combine + to_dict + write,
        "per_file_s": {
            "mean": statistics.fmean(per_file),
            "median": statistics.median(per_file),
            "first": per_file[0],
        },
        "repaired_scalar_keys": repaired,
        "product": {"path": str(target), "layout": "json", "n_refs": len(refs["refs"])},
        "versions": package_versions(VZ_PACKAGES),
    }


def w_floor(job: dict[str, Any], probe: Probe) -> dict[str, Any]:
    import h5py

    probe.mark("import")
    n_ranges = n_datasets = n_attrs = 0
    for path in job["files"]:
        ranges: list[tuple[int, int]] = []
        with h5py.File(path, "r") as f:

            def visit(_name: str, obj: Any, ranges: list[tuple[int, int]] = ranges) -> None:
                nonlocal n_datasets, n_attrs
                for key in obj.attrs:
                    obj.attrs[key]
                    n_attrs += 1
                if isinstance(obj, h5py.Dataset):
                    n_datasets += 1
                    if obj.chunks is not None:
                        obj.id.chunk_iter(lambda info: ranges.append((info.byte_offset, info.size)))
                    else:
                        offset = obj.id.get_offset()
                        if offset is not None:
                            ranges.append((offset, obj.id.get_storage_size()))

            for key in f.attrs:
                f.attrs[key]
                n_attrs += 1
            f.visititems(visit)
        n_ranges += len(ranges)
    work = probe.mark("walk")
    return {"work_s": work, "byte_ranges": n_ranges, "datasets": n_datasets, "attributes": n_attrs}


def w_padocc(job: dict[str, Any], probe: Probe) -> dict[str, Any]:
    import tracemalloc

    work_dir = Path(job["work_dir"])
    os.environ["WORKDIR"] = str(work_dir)
    import padocc.cli  # noqa: F401  (1.5.x starts tracemalloc(25) on import: stop it, as padocc.md §12)
    from padocc import GroupOperation

    tracemalloc.stop()
    probe.mark("import")
    work_dir.mkdir(parents=True, exist_ok=True)
    filelist = work_dir / "filelist.txt"
    filelist.write_text("".join(f"{p}\n" for p in job["files"]))
    csv = work_dir / "group.csv"
    csv.write_text(f"{PROJECT_ID},{filelist},,\n")
    group = GroupOperation("benchgroup", workdir=str(work_dir), verbose=0)
    group.init_from_file(str(csv))
    group.save_files()
    init = probe.mark("init")
    group.run("scan")
    scan = probe.mark("scan")
    group.run("compute")
    compute = probe.mark("compute")
    proj_dir = work_dir / "in_progress" / "benchgroup" / PROJECT_ID
    status_log = proj_dir / "status_log.csv"
    statuses = status_log.read_text().splitlines() if status_log.exists() else []
    products = sorted(
        p for p in proj_dir.glob("*") if re.fullmatch(r"k[r]?[\d.]+a?\.json|k[\d.]+a?\.parq", p.name)
    )
    if not products:
        raise RuntimeError(f"no Kerchunk product in {proj_dir}; status log: {statuses[-3:]}")
    product = products[-1]
    return {
        "work_s": scan + compute,
        "init_s": init,
        "statuses": statuses,
        "product": {"path": str(product), "layout": "json" if product.suffix == ".json" else "parquet"},
        "other_outputs": sorted(p.name for p in proj_dir.iterdir()),
        "versions": package_versions(PADOCC_PACKAGES),
    }


def _open_product(path: str) -> Any:
    import xarray as xr

    return xr.open_dataset(path, engine="kerchunk", storage_options={"remote_protocol": "file"})


def _open_sources(files: list[str]) -> Any:
    import xarray as xr

    return xr.open_mfdataset(
        files,
        combine="nested",
        concat_dim="time",
        data_vars="minimal",
        coords="minimal",
        compat="override",
    )


def _slab_steps(var: Any, slab_bytes: int) -> int:
    step_bytes = max(1, var.dtype.itemsize * (var.size // max(1, var.shape[0])))
    return max(1, slab_bytes // step_bytes)


def w_read(job: dict[str, Any], probe: Probe) -> dict[str, Any]:
    import dask.array  # noqa: F401  (xarray imports it on the first open: keep that out of "open")
    import fsspec  # noqa: F401
    import kerchunk  # noqa: F401
    import numpy as np
    import xarray as xr
    import zarr  # noqa: F401

    xr.backends.list_engines()
    with contextlib.suppress(ImportError):
        # xarray imports pint, when installed (cfapyx brings it), the first time it checks
        # for duck arrays: ~0.15 s of import that would otherwise land in "open"
        import pint  # noqa: F401
    probe.mark("import")
    files = job["files"]
    ds = _open_sources(files) if job["source"] else _open_product(job["product"])
    open_s = probe.mark("open")
    ds.close()
    probe.mark("close")
    ds = _open_sources(files) if job["source"] else _open_product(job["product"])
    open_again_s = probe.mark("open_again")
    read_s = None
    nbytes = 0
    if job["read"]:
        tas = ds["tas"]
        step = _slab_steps(tas, job["slab_bytes"])
        total = 0.0
        for i in range(0, tas.shape[0], step):
            a = tas[i : i + step].values
            nbytes += a.nbytes
            total += float(np.nansum(a[..., :1]))
        read_s = probe.mark("read_tas")
    ds.close()
    return {
        "work_s": open_s,
        "open_s": open_s,
        "open_again_s": open_again_s,
        "read_s": read_s,
        "bytes": nbytes,
    }


def _digest_update(h: Any, a: Any) -> None:
    import numpy as np

    a = np.asarray(a)
    if a.dtype.kind == "O":
        h.update("\x1f".join(map(str, a.ravel().tolist())).encode())
        return
    if a.dtype.kind == "f":
        a = np.where(np.isnan(a), a.dtype.type(np.nan), a)  # one NaN bit pattern
    elif a.dtype.kind in "mM":
        a = a.view("i8")
    h.update(np.ascontiguousarray(a).tobytes())


def digest_variable(var: Any, slab_bytes: int) -> dict[str, Any]:
    """Digest of a variable's decoded values, read in slabs along its first axis."""
    whole = hashlib.sha256()
    slabs: list[str] = []
    if var.ndim == 0:
        values = var.values
        _digest_update(whole, values)
        slabs.append(whole.hexdigest()[:16])
    else:
        step = _slab_steps(var, slab_bytes)
        for i in range(0, var.shape[0], step):
            h = hashlib.sha256()
            a = var[i : i + step].values
            _digest_update(h, a)
            _digest_update(whole, a)
            slabs.append(h.hexdigest()[:16])
            del a
    return {
        "dims": list(var.dims),
        "shape": list(var.shape),
        "dtype": str(var.dtype),
        "sha256": whole.hexdigest(),
        "slabs": slabs,
    }


def w_check(job: dict[str, Any], probe: Probe) -> dict[str, Any]:
    import dask
    import xarray as xr

    probe.mark("import")
    slab = job["slab_bytes"]
    dask.config.set(scheduler="threads")
    # netCDF4 keeps each open file's decompressed chunk cache: with xarray's default of 128 open
    # files, hashing 120 files x 2 variables grows to ~3 GiB; 16 open files keep it near 1 GiB
    xr.set_options(file_cache_maxsize=16)
    ref = _open_sources(job["files"])
    open_ref = probe.mark("open_sources")
    reference = {name: digest_variable(ref[name], slab) for name in CHECK_VARS if name in ref.variables}
    ref_names = sorted(map(str, ref.variables))
    ref.close()
    hash_ref = probe.mark("hash_sources")
    out: dict[str, Any] = {
        "reference": {"open_s": open_ref, "hash_s": hash_ref, "variables": reference, "names": ref_names},
        "products": {},
    }
    for name, path in job["products"].items():
        t0 = time.perf_counter()
        res: dict[str, Any] = {"path": path, "mismatches": []}
        try:
            ds = _open_product(path)
        except Exception as err:  # report, do not stop the other products
            res["equal"] = False
            res["mismatches"].append(f"does not open: {type(err).__name__}: {err}")
            out["products"][name] = res
            continue
        names = sorted(map(str, ds.variables))
        res["missing"] = sorted(set(ref_names) - set(names))
        res["extra"] = sorted(set(names) - set(ref_names))
        res["variables"] = {}
        for var, want in reference.items():
            if var not in ds.variables:
                res["mismatches"].append(f"{var}: missing from the product")
                continue
            got = digest_variable(ds[var], slab)
            res["variables"][var] = {k: got[k] for k in ("dims", "shape", "dtype", "sha256")}
            if got["sha256"] != want["sha256"]:
                what = []
                for key in ("dims", "shape", "dtype"):
                    if got[key] != want[key]:
                        what.append(f"{key} {got[key]} != {want[key]}")
                bad = [i for i, (a, b) in enumerate(zip(got["slabs"], want["slabs"], strict=False)) if a != b]
                if bad:
                    what.append(
                        f"values differ from slab {bad[0]} ({len(bad)} of {len(want['slabs'])} slabs)"
                    )
                res["mismatches"].append(f"{var}: " + ("; ".join(what) or "values differ"))
        ds.close()
        res["equal"] = not res["mismatches"]
        res["seconds"] = time.perf_counter() - t0
        out["products"][name] = res
    probe.mark("hash_products")
    return out


WORKERS: dict[str, Callable[[dict[str, Any], Probe], dict[str, Any]]] = {
    "gen": w_gen,
    "ours": w_ours,
    "ours2": w_ours,
    "kerchunk": w_kerchunk,
    "vz": w_vz,
    "floor": w_floor,
    "padocc": w_padocc,
    "read": w_read,
    "check": w_check,
}


def worker_main(step: str, job_path: str, result_path: str) -> int:
    """Entry point of a child process: run one step, write its result JSON."""
    probe = Probe()
    job = read_json(Path(job_path))
    try:
        result = WORKERS[step](job, probe)
        result["ok"] = True
        code = 0
    except Exception as err:
        traceback.print_exc()
        result = {"ok": False, "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
        code = 1
    result["steps"] = probe.steps
    result["child_internal_s"] = time.perf_counter() - probe.t0
    result["child_maxrss_mib"] = maxrss_mib()
    result["python"] = sys.version.split()[0]
    result["executable"] = sys.executable
    write_json(Path(result_path), result)
    return code


# --------------------------------------------------------------------------- parent


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.data_dir: Path = args.data_dir
        self.out_dir: Path = args.out_dir
        self.t_start = time.perf_counter()
        self.logs = self.out_dir / "logs"
        self.jobs = self.out_dir / "jobs"
        self.runs = self.out_dir / "runs"
        self.interpreters: dict[str, str] = {
            "ours": sys.executable,
            "ours2": sys.executable,
            "kerchunk": sys.executable,
            "floor": sys.executable,
        }
        self.unavailable: dict[str, str] = {}
        self.venv_info: dict[str, Any] = {}
        self.files: list[str] = []

    def say(self, msg: str) -> None:
        print(f"[{time.perf_counter() - self.t_start:7.1f} s] {msg}", flush=True)

    def child(self, step: str, name: str, job: dict[str, Any], python: str | None = None) -> dict[str, Any]:
        """Run one step in a fresh child process (posix_spawn + wait4): wall, exit code, peak RSS."""
        job_path = self.jobs / f"{name}.json"
        result_path = self.jobs / f"{name}.result.json"
        log_path = self.logs / f"{name}.log"
        write_json(job_path, job)
        result_path.unlink(missing_ok=True)
        exe = python or sys.executable
        argv = [exe, str(Path(__file__).resolve()), "_worker", step, str(job_path), str(result_path)]
        env = dict(os.environ)
        if exe != sys.executable:  # another venv: do not leak this one's settings
            for key in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"):
                env.pop(key, None)
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(log_path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ]
        t0 = time.perf_counter()
        pid = os.posix_spawn(exe, argv, env, file_actions=actions)
        _, status, usage = os.wait4(pid, 0)
        wall = time.perf_counter() - t0
        code = os.waitstatus_to_exitcode(status)
        if result_path.exists():
            result = read_json(result_path)
        else:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:] if log_path.exists() else []
            result = {"ok": False, "error": f"child exited {code} without a result: {' | '.join(tail)}"}
        result.update(
            {
                "wall_s": wall,
                "exit_code": code,
                "maxrss_mib": usage.ru_maxrss / 1024,  # the child and its reaped children, max not sum
                "user_s": usage.ru_utime,
                "sys_s": usage.ru_stime,
                "log": str(log_path.relative_to(self.out_dir)),
            }
        )
        if code != 0:
            result["ok"] = False
        return result

    # ----- archive

    def generate(self) -> dict[str, Any]:
        params = archive_params(self.args)
        if archive_is_current(self.data_dir, params):
            m = read_json(self.data_dir / "manifest.json")
            self.say(f"archive: reusing {len(m['files'])} files in {self.data_dir}")
            info = {"generated": False, "seconds": m.get("seconds"), "created": m.get("created")}
        else:
            n = params["nfiles"]
            shape = (params["ntime"], params["nlat"], params["nlon"])
            self.say(
                f"archive: generating {n} files of {shape} in {self.data_dir} ({self.args.gen_workers} processes)"
            )
            job = {"data_dir": str(self.data_dir), "params": params, "workers": self.args.gen_workers}
            res = self.child("gen", "gen", job)
            if not res.get("ok"):
                raise SystemExit(f"archive generation failed: {res.get('error')} (see {res['log']})")
            self.say(f"archive: {res['nfiles']} files, {human_bytes(res['bytes'])} in {res['wall_s']:.1f} s")
            info = {"generated": True, "seconds": res["wall_s"], "maxrss_mib": res["maxrss_mib"]}
        self.files = [str(p) for p in archive_files(self.data_dir)]
        sizes = [Path(p).stat().st_size for p in self.files]
        info.update(
            {"params": params, "nfiles": len(self.files), "bytes": sum(sizes), "dir": str(self.data_dir)}
        )
        return info

    # ----- virtual environments

    def ensure_venv(self, name: str) -> str | None:
        """The interpreter of a tool's venv, created if needed; None (and a reason) if unusable."""
        spec = VENVS[name]
        vdir: Path = spec["dir"]
        python = vdir / "bin" / "python"
        marker = vdir / ".bench-requirements.json"
        wanted = {"packages": spec["packages"], "base": platform.python_version()}
        info: dict[str, Any] = {"dir": str(vdir), "packages": spec["packages"]}
        self.venv_info[name] = info

        def usable() -> bool:
            ok = subprocess.run([str(python), "-c", spec["check"]], capture_output=True, text=True)
            return ok.returncode == 0

        if python.exists() and marker.exists() and read_json(marker) == wanted and usable():
            info["created"] = False
            return str(python)
        if not self.args.create_venvs:
            reason = f"{vdir} is missing or stale and venv creation is off (--no-create-venvs)"
            self.unavailable[name] = reason
            info["error"] = reason
            self.say(f"{name}: unavailable: {reason}")
            return None
        log = self.logs / f"venv-{name}.log"
        self.say(f"{name}: creating {vdir} with {' '.join(spec['packages'])} (log: {log})")
        t0 = time.perf_counter()
        with log.open("w") as out:
            steps = [
                [sys.executable, "-m", "venv", "--clear", str(vdir)],
                [str(python), "-m", "pip", "install", "--disable-pip-version-check", *spec["packages"]],
            ]
            for cmd in steps:
                out.write(f"$ {' '.join(cmd)}\n")
                out.flush()
                try:
                    rc = subprocess.run(
                        cmd, stdout=out, stderr=subprocess.STDOUT, timeout=spec["timeout"]
                    ).returncode
                except subprocess.TimeoutExpired:
                    rc = -1
                    out.write(f"timed out after {spec['timeout']} s\n")
                if rc != 0:
                    break
        info["install_s"] = time.perf_counter() - t0
        if rc != 0 or not usable():
            tail = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()][-2:]
            reason = f"installing {' '.join(spec['packages'])} failed: {' | '.join(tail)[:400]}"
            self.unavailable[name] = reason
            info["error"] = reason
            self.say(f"{name}: unavailable: {reason}")
            return None
        write_json(marker, wanted)
        info["created"] = True
        self.say(f"{name}: venv ready in {info['install_s']:.0f} s")
        return str(python)

    # ----- tools

    def tool_job(self, tool: str, rep: int) -> dict[str, Any]:
        run_dir = self.runs / f"{tool}-r{rep}"
        if run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
        job: dict[str, Any] = {"files": self.files}
        if tool in OURS:
            workers = 2 if tool == "ours2" else self.args.workers
            work = run_dir / "work"
            group_yaml = run_dir / "group.yaml"
            group_yaml.write_text(
                "# written by bench/bench_refs.py\n"
                f"group: {PROJECT_ID}\n"
                f"work_dir: {json.dumps(str(work))}\n"
                "pipeline: kerchunk\n"
                f"profile: {{name: bench, workers: {workers}, inline_threshold: {INLINE_THRESHOLD}}}\n"
                "projects:\n"
                f"  - id: {PROJECT_ID}\n"
                f"    sources: {{glob: {json.dumps(str(self.data_dir / (FILE_PREFIX + '*.nc')))}}}\n"
                "    concat_dims: [time]\n"
                f"    product: {{layout: {self.args.layout}}}\n"
            )
            job.update({"group_yaml": str(group_yaml), "work_dir": str(work), "workers": workers})
        elif tool == "kerchunk":
            job.update({"product": str(run_dir / "kerchunk.json"), "identical_dims": IDENTICAL_DIMS})
        elif tool == "vz":
            job.update({"product": str(run_dir / "vz.json"), "fix_scalar_keys": not self.args.no_vz_fix})
        elif tool == "padocc":
            job.update({"work_dir": str(run_dir / "work")})
        return job

    def run_tool(self, tool: str, rep: int) -> dict[str, Any]:
        res = self.child(tool, f"{tool}-r{rep}", self.tool_job(tool, rep), self.interpreters[tool])
        res["repeat"] = rep
        n = len(self.files)
        if res.get("ok"):
            res["per_file_ms"] = 1000 * res["work_s"] / n
            product = res.get("product")
            if product and product.get("path"):
                p = Path(product["path"])
                product["size"] = path_size(p)
                product["sha256"] = product.get("sha256") or tree_sha256(p)
                if p.is_file() and p.suffix == ".json":
                    product.update(json_product_stats(p))
            msg = (
                f"{tool} r{rep}: wall {res['wall_s']:.2f} s, {res['per_file_ms']:.1f} ms/file, "
                f"{res['maxrss_mib']:.0f} MiB"
            )
            if tool in OURS:
                msg += " (" + ", ".join(f"{k} {v:.2f} s" for k, v in res["phases_s"].items()) + ")"
        else:
            msg = f"{tool} r{rep}: FAILED: {res.get('error')} (see {res['log']})"
        self.say(msg)
        return res

    # ----- main flow

    def run(self) -> int:
        args = self.args
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for d in (self.jobs, self.runs, self.logs):
            if d.exists():
                shutil.rmtree(d)
            d.mkdir(parents=True)
        load_start = os.getloadavg()
        git_start = git_info()
        archive = self.generate()
        tools = [t for t in args.tools if t in TOOLS]
        for name in ("vz", "padocc"):
            if name in tools:
                python = self.ensure_venv(name)
                if python:
                    self.interpreters[name] = python
        active = [t for t in tools if t not in self.unavailable]

        runs: dict[str, list[dict[str, Any]]] = {t: [] for t in active}
        for rep in range(1, args.repeat + 1):
            for tool in active:
                if tool == "padocc" and rep > args.padocc_repeat:
                    continue
                runs[tool].append(self.run_tool(tool, rep))

        summary: dict[str, Any] = {}
        for tool in tools:
            if tool in self.unavailable:
                summary[tool] = {"status": "unavailable", "reason": self.unavailable[tool]}
            else:
                summary[tool] = summarise_runs(runs[tool])

        products = {
            t: s["median"]["product"]["path"]
            for t, s in summary.items()
            if s.get("status") == "ok" and (s["median"].get("product") or {}).get("path")
        }
        ours_hashes = sorted({r["product"]["sha256"] for t in OURS for r in runs.get(t, []) if r.get("ok")})

        reads: dict[str, Any] = {}
        read_targets: dict[str, str | None] = {
            t: products[t] for t in ("ours", "kerchunk", "vz", "padocc") if t in products
        }
        if read_targets and not args.no_read:
            read_targets["open_mfdataset"] = None
            read_runs: dict[str, list[dict[str, Any]]] = {k: [] for k in read_targets}
            for rep in range(1, args.read_repeat + 1):
                for name, path in read_targets.items():
                    job = {
                        "files": self.files,
                        "product": path,
                        "source": path is None,
                        "read": path is not None,
                        "slab_bytes": args.slab_mb << 20,
                    }
                    res = self.child("read", f"read-{name}-r{rep}", job)
                    res["repeat"] = rep
                    read_runs[name].append(res)
                    if res.get("ok"):
                        read = f", read tas {res['read_s']:.2f} s" if res.get("read_s") is not None else ""
                        self.say(
                            f"read {name} r{rep}: open {res['open_s']:.3f} s{read}, {res['maxrss_mib']:.0f} MiB"
                        )
                    else:
                        self.say(f"read {name} r{rep}: FAILED: {res.get('error')} (see {res['log']})")
            reads = {name: summarise_reads(rr) for name, rr in read_runs.items()}

        equality: dict[str, Any] = {"checked": False}
        if products and not args.no_check:
            self.say(
                f"check: comparing {', '.join(products)} with open_mfdataset over {len(self.files)} files"
            )
            job = {"files": self.files, "products": products, "slab_bytes": args.slab_mb << 20}
            res = self.child("check", "check", job)
            equality = summarise_check(res, products)
            verdict = "PASS" if equality["ok"] else "FAIL"
            self.say(f"check: {verdict} in {res['wall_s']:.1f} s, {res['maxrss_mib']:.0f} MiB")
            for name, p in equality.get("products", {}).items():
                for m in p.get("mismatches", []):
                    self.say(f"check: {name}: {m}")

        results = {
            "format": RESULTS_FORMAT,
            "version": RESULTS_VERSION,
            "created": now_iso(),
            "command": [Path(sys.executable).name, *sys.argv],
            "preset": args.preset,
            "settings": {
                "tools": tools,
                "repeat": args.repeat,
                "read_repeat": args.read_repeat,
                "workers": args.workers,
                "layout": args.layout,
                "padocc_repeat": args.padocc_repeat,
                "vz_scalar_fix": not args.no_vz_fix,
                "slab_mb": args.slab_mb,
                "inline_threshold": INLINE_THRESHOLD,
            },
            "archive": archive,
            "machine": machine_info(load_start),
            "git": {**git_start, "end": git_info()},
            "versions": {
                "main": package_versions(MAIN_PACKAGES),
                **{t: runs[t][0].get("versions") for t in ("vz", "padocc") if runs.get(t)},
            },
            "venvs": self.venv_info,
            "tools": summary,
            "runs": runs,
            "ours_product_sha256": ours_hashes,
            "ours_deterministic": len(ours_hashes) <= 1,
            "reads": reads,
            "equality": equality,
            "bench_seconds": time.perf_counter() - self.t_start,
        }
        write_json(self.out_dir / "results.json", results)
        md = render_markdown(results)
        (self.out_dir / "results.md").write_text(md)
        print()
        print(md)
        self.say(f"wrote {self.out_dir / 'results.json'} and {self.out_dir / 'results.md'}")
        failed = []
        if summary.get("ours", {}).get("status") != "ok" and "ours" in tools:
            failed.append("padocc-like failed")
        if equality.get("checked") and not equality.get("ok"):
            failed.append("a product differs from open_mfdataset")
        if failed:
            self.say("exit 1: " + "; ".join(failed))
            return 1
        return 0


def summarise_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if r.get("ok")]
    if not ok:
        errors = sorted({str(r.get("error")) for r in runs})
        return {"status": "failed", "reason": "; ".join(errors), "runs": len(runs)}
    by_wall = sorted(ok, key=lambda r: r["wall_s"])
    med = by_wall[(len(by_wall) - 1) // 2]
    walls = [r["wall_s"] for r in ok]
    per_file = [r["per_file_ms"] for r in ok]
    return {
        "status": "ok",
        "runs": len(runs),
        "ok_runs": len(ok),
        "median_repeat": med["repeat"],
        "median": {
            k: med.get(k)
            for k in (
                "wall_s",
                "work_s",
                "per_file_ms",
                "maxrss_mib",
                "user_s",
                "sys_s",
                "steps",
                "product",
                "phases_s",
                "per_file_s",
                "run_s",
                "messages",
                "repaired_scalar_keys",
            )
            if k in med
        },
        "wall_range": [min(walls), max(walls)],
        "per_file_ms_range": [min(per_file), max(per_file)],
        "per_file_ms_median": median_of(per_file),
        "maxrss_mib_max": max(r["maxrss_mib"] for r in ok),
        "failed_runs": [r.get("error") for r in runs if not r.get("ok")],
    }


def summarise_reads(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if r.get("ok")]
    if not ok:
        return {"status": "failed", "reason": "; ".join(sorted({str(r.get("error")) for r in runs}))}
    key = "read_s" if ok[0].get("read_s") is not None else "open_s"
    by = sorted(ok, key=lambda r: r[key])
    med = by[(len(by) - 1) // 2]
    opens = [r["open_s"] for r in ok]
    reads = [r["read_s"] for r in ok if r.get("read_s") is not None]
    return {
        "status": "ok",
        "runs": len(runs),
        "open_s": median_of(opens),
        "open_range": [min(opens), max(opens)],
        "open_again_s": median_of([r["open_again_s"] for r in ok]),
        "read_s": median_of(reads) if reads else None,
        "read_range": [min(reads), max(reads)] if reads else None,
        "bytes": med.get("bytes"),
        "maxrss_mib": med["maxrss_mib"],
        "wall_s": med["wall_s"],
        "import_s": med["steps"].get("import", {}).get("s"),
    }


def summarise_check(res: dict[str, Any], products: dict[str, str]) -> dict[str, Any]:
    if not res.get("ok"):
        return {
            "checked": True,
            "ok": False,
            "error": res.get("error"),
            "products": {p: {"equal": False} for p in products},
        }
    prods = res["products"]
    required = [p for p in prods if p != "padocc"]  # PADOCC's product is reported, not enforced
    return {
        "checked": True,
        "ok": all(prods[p]["equal"] for p in required),
        "variables": sorted(res["reference"]["variables"]),
        "reference": {
            "open_s": res["reference"]["open_s"],
            "hash_s": res["reference"]["hash_s"],
            "variables": {
                k: {kk: v[kk] for kk in ("dims", "shape", "dtype", "sha256")}
                for k, v in res["reference"]["variables"].items()
            },
        },
        "products": {
            name: {
                k: v
                for k, v in p.items()
                if k in ("equal", "mismatches", "missing", "extra", "seconds", "path")
            }
            for name, p in prods.items()
        },
        "wall_s": res["wall_s"],
        "maxrss_mib": res["maxrss_mib"],
    }


def machine_info(load_start: tuple[float, float, float]) -> dict[str, Any]:
    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = int(line.split()[1]) * 1024
                break
    except OSError:
        pass
    return {
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "ram_bytes": ram,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
    }


def git_info() -> dict[str, Any]:
    def git(*cmd: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(REPO), *cmd], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    dirty = git("status", "--porcelain", "--", "padocc_like")
    return {
        "commit": git("rev-parse", "HEAD"),
        "padocc_like_dirty": bool(dirty) if dirty is not None else None,
    }


# --------------------------------------------------------------------------- report


def _tool_row(tool: str, s: dict[str, Any], ours: dict[str, Any] | None, workers: str) -> str:
    label = TOOL_LABELS.get(tool, tool)
    if s.get("status") != "ok":
        return f"| {label} | {workers} | {s.get('status')}: {s.get('reason', '')[:160]} | | | | | | |"
    m = s["median"]
    om = ours["median"] if ours and ours.get("status") == "ok" else None
    pf_lo, pf_hi = s["per_file_ms_range"]
    w_lo, w_hi = s["wall_range"]
    prod = m.get("product") or {}
    layout = prod.get("layout") or "-"
    if prod.get("keys") is not None:
        refs = f"{prod['keys']:,} ({prod['chunk_refs']:,} / {prod['inline_chunks']:,})"
    elif prod.get("n_refs") is not None:
        refs = f"{prod['n_refs']:,} refs"
    else:
        refs = "-"
    return (
        f"| {label} | {workers} | {m['per_file_ms']:.2f} ({pf_lo:.2f}{DASH}{pf_hi:.2f}) "
        f"| {ratio(m['per_file_ms'], om['per_file_ms'] if om else None)} "
        f"| {m['wall_s']:.2f} ({w_lo:.2f}{DASH}{w_hi:.2f}) | {ratio(m['wall_s'], om['wall_s'] if om else None)} "
        f"| {m['maxrss_mib']:.0f} | {layout} | {human_bytes(prod.get('size')) if prod else '-'} | {refs} |"
    )


def render_markdown(r: dict[str, Any]) -> str:
    a = r["archive"]
    p = a["params"]
    mach = r["machine"]
    st = r["settings"]
    tools = r["tools"]
    ours = tools.get("ours")
    n = a["nfiles"]
    lines = [
        f"# Reference benchmark: {n} files of ({p['ntime']}, {p['nlat']}, {p['nlon']})",
        "",
        f"Archive: {n} netCDF4 files, {human_bytes(a['bytes'])}; float32 `tas` and `pr` chunked "
        f"(1, {p['nlat']}, {p['nlon']}), zlib {p['complevel']} + shuffle, unlimited `time` "
        f"({p['calendar']}), bounds, scalar `height`, {p['fill_fraction']:.0%} of `pr` missing. "
        + (f"Generated in {a['seconds']:.1f} s." if a.get("generated") else "Reused (generated earlier)."),
        "",
        f"Machine: {mach['cpu_model']}, {mach['cpu_count']} CPUs, "
        f"{(mach['ram_bytes'] or 0) / 2**30:.1f} GiB RAM, Python {mach['python']}, {mach['platform']}; "
        f"load average {mach['loadavg_start'][0]:.2f} at start, {mach['loadavg_end'][0]:.2f} at end. "
        f"Commit {(r['git'].get('commit') or '?')[:10]}"
        + (" (padocc_like/ had uncommitted changes)" if r["git"].get("padocc_like_dirty") else "")
        + (
            f" (HEAD moved to {(r['git']['end'].get('commit') or '?')[:10]} during the run)"
            if r["git"].get("end", {}).get("commit") not in (None, r["git"].get("commit"))
            else ""
        )
        + f"; padocc-like {r['versions']['main'].get('padocc-like')}, kerchunk "
        f"{r['versions']['main'].get('kerchunk')}"
        + (
            f", VirtualiZarr {(r['versions'].get('vz') or {}).get('virtualizarr')}"
            if r["versions"].get("vz")
            else ""
        )
        + (
            f", PADOCC {(r['versions'].get('padocc') or {}).get('padocc')}"
            if r["versions"].get("padocc")
            else ""
        )
        + ".",
        "",
        f"Each run is a fresh child process; {st['repeat']} interleaved repeat(s); the median-wall run is "
        "shown with the range over repeats in brackets. *per-file ms* is the tool's own work divided by "
        "the file count (padocc-like: scan + compute phase durations; kerchunk: `SingleHdf5ToZarr` + "
        "`MultiZarrToZarr` + JSON write; VirtualiZarr: `open_virtual_dataset` + `combine_nested` + "
        "Kerchunk refs + JSON write; PADOCC: its scan + compute phases; floor: h5py `chunk_iter` + all "
        "attributes). *wall* is the whole child (interpreter start and imports included); *peak RSS* is the "
        "child's `ru_maxrss`.",
        "",
        "| tool | workers | per-file ms | per-file vs ours | wall s | wall vs ours | peak RSS MiB | layout | product size | keys (refs / inline chunks) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for tool, s in tools.items():
        workers = {"ours": str(st["workers"]), "ours2": "2"}.get(tool, "1")
        lines.append(_tool_row(tool, s, ours, workers))
    lines.append("")
    ratios = []
    if ours and ours.get("status") == "ok":
        for tool, s in tools.items():
            if tool == "ours2" and s.get("status") == "ok":
                ratios.append(
                    f"2 workers: ours / ours (2 workers) = "
                    f"{ratio(ours['median']['per_file_ms'], s['median']['per_file_ms'])} per file, "
                    f"{ratio(ours['median']['wall_s'], s['median']['wall_s'])} wall"
                )
            elif tool != "ours" and s.get("status") == "ok":
                ratios.append(
                    f"{TOOL_LABELS[tool].split(' ')[0]} / ours = "
                    f"{ratio(s['median']['per_file_ms'], ours['median']['per_file_ms'])} per file, "
                    f"{ratio(s['median']['wall_s'], ours['median']['wall_s'])} wall"
                )
    if ratios:
        lines += ["Ratios (median runs): " + "; ".join(ratios) + ".", ""]

    if ours and ours.get("status") == "ok":
        m = ours["median"]
        ph = m.get("phases_s") or {}
        steps = m.get("steps") or {}
        inside = sum(float(v) for v in ph.values())
        lines += [
            "padocc-like phases (median run, `duration_s` from `state.json`):",
            "",
            "| import | init | scan | compute | scan ms/file | compute ms/file | api.run total | child wall |",
            "|---|---|---|---|---|---|---|---|",
            f"| {fmt(steps.get('import', {}).get('s'))} s | {fmt(ph.get('init'), 3)} s | {fmt(ph.get('scan'))} s "
            f"| {fmt(ph.get('compute'))} s | {fmt(1000 * ph.get('scan', 0) / n)} | {fmt(1000 * ph.get('compute', 0) / n)} "
            f"| {fmt(m.get('run_s'))} s (phases {fmt(inside)} s) | {fmt(m['wall_s'])} s |",
            "",
        ]
        hashes = r.get("ours_product_sha256") or []
        lines += [
            f"padocc-like products of all {sum(tools[t].get('ok_runs', 0) for t in OURS if t in tools)} runs "
            + ("(1 and 2 workers) " if "ours2" in tools else "")
            + "were "
            + ("byte-identical." if len(hashes) <= 1 else f"NOT identical ({len(hashes)} distinct)."),
            "",
        ]

    sub = []
    for tool in ("kerchunk", "vz", "padocc"):
        s = tools.get(tool)
        if not s or s.get("status") != "ok":
            continue
        steps = s["median"].get("steps") or {}
        pf = s["median"].get("per_file_s") or {}
        parts = ", ".join(f"{k} {v['s']:.2f} s" for k, v in steps.items())
        extra = (
            f"; per file mean {1000 * pf['mean']:.1f} ms, median {1000 * pf['median']:.1f} ms, first {1000 * pf['first']:.0f} ms"
            if pf
            else ""
        )
        fixed = s["median"].get("repaired_scalar_keys")
        if fixed:
            extra += f"; repaired scalar chunk key(s) {', '.join(f'`{k}`' for k in fixed)} before writing"
        sub.append(f"* {TOOL_LABELS[tool]}: {parts}{extra}.")
    if sub:
        lines += ["Sub-steps (median run):", "", *sub, ""]

    reads = r.get("reads") or {}
    eq = r.get("equality") or {}
    if reads or eq.get("checked"):
        lines += [
            f"Open and read (fresh child each, {st['read_repeat']} interleaved repeat(s), medians): *open* is the first "
            '`xr.open_dataset(..., engine="kerchunk")` in the process after importing xarray/zarr/fsspec/kerchunk/dask '
            "(target < 0.2 s for ours); *read* loads all of `tas` in slabs.",
            "",
            "| product | open s | open again s | read all `tas` s | decoded MB/s | peak RSS MiB | equal to open_mfdataset |",
            "|---|---|---|---|---|---|---|",
        ]
        names = list(dict.fromkeys([*reads, *(eq.get("products") or {})]))
        for name in names:
            rd = reads.get(name) or {}
            label = TOOL_LABELS.get(name, name)
            if name == "open_mfdataset":
                label = "`xr.open_mfdataset` (sources)"
            equal = (eq.get("products") or {}).get(name, {}).get("equal")
            eq_s = (
                "reference"
                if name == "open_mfdataset"
                else ("yes" if equal else ("NO" if equal is False else "-"))
            )
            if rd.get("status") == "failed":
                lines.append(f"| {label} | failed: {rd.get('reason', '')[:120]} | | | | | {eq_s} |")
                continue
            mbs = rd["bytes"] / rd["read_s"] / 1e6 if rd.get("read_s") else None
            rng = rd.get("read_range")
            read_txt = f"{fmt(rd.get('read_s'))} ({fmt(rng[0])}{DASH}{fmt(rng[1])})" if rng else "-"
            lines.append(
                f"| {label} | {fmt(rd.get('open_s'), 3)} | {fmt(rd.get('open_again_s'), 3)} | {read_txt} "
                f"| {fmt(mbs, 0)} | {fmt(rd.get('maxrss_mib'), 0)} | {eq_s} |"
            )
        lines.append("")
    if eq.get("checked"):
        if eq.get("error"):
            verdict = f"**Equality: FAIL** - the check did not run: {eq['error']}"
        else:
            compared = ", ".join(f"`{v}`" for v in eq.get("variables", []))
            verdict = (
                f"**Equality: {'PASS' if eq['ok'] else 'FAIL'}** - every product compared with "
                f'`xr.open_mfdataset(files, combine="nested", concat_dim="time", data_vars="minimal", '
                f'coords="minimal", compat="override")` by SHA-256 of decoded values (NaN-canonical) for {compared}.'
            )
        lines += [verdict]
        for name, pr in (eq.get("products") or {}).items():
            for mm in pr.get("mismatches", []):
                lines.append(f"* {TOOL_LABELS.get(name, name)}: {mm}")
        lines.append("")
    notes = []
    for tool, s in tools.items():
        if s.get("status") in ("failed", "unavailable"):
            notes.append(f"* {TOOL_LABELS.get(tool, tool)}: {s['status']}: {s.get('reason')}")
    if notes:
        lines += ["Tool problems:", "", *notes, ""]
    lines.append(f"Benchmark wall time: {r['bench_seconds']:.0f} s. Raw numbers: `results.json`.")
    return "\n".join(lines) + "\n"


def summarize(paths: list[Path]) -> str:
    """One table from several results.json files (one row per run and tool)."""
    lines = [
        "| run | files | per-file shape | archive | tool | workers | per-file ms | per-file vs ours | wall s | peak RSS MiB | product | open s | read `tas` s | equal |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for path in paths:
        r = read_json(path)
        a = r["archive"]
        p = a["params"]
        run = path.parent.name
        shape = f"({p['ntime']}, {p['nlat']}, {p['nlon']})"
        ours = r["tools"].get("ours", {})
        om = ours.get("median") if ours.get("status") == "ok" else None
        eq = r.get("equality", {}).get("products", {})
        for tool, s in r["tools"].items():
            label = TOOL_LABELS.get(tool, tool)
            workers = {"ours": r["settings"]["workers"], "ours2": 2}.get(tool, 1)
            if s.get("status") != "ok":
                lines.append(
                    f"| {run} | {a['nfiles']} | {shape} | {human_bytes(a['bytes'])} | {label} | {workers} "
                    f"| {s.get('status')} | | | | | | | |"
                )
                continue
            m = s["median"]
            prod = m.get("product") or {}
            rd = (r.get("reads") or {}).get(tool, {})
            equal = eq.get(tool, {}).get("equal")
            lines.append(
                f"| {run} | {a['nfiles']} | {shape} | {human_bytes(a['bytes'])} | {label} | {workers} "
                f"| {m['per_file_ms']:.2f} | {ratio(m['per_file_ms'], om['per_file_ms'] if om else None)} "
                f"| {m['wall_s']:.2f} | {m['maxrss_mib']:.0f} "
                f"| {(prod.get('layout') or '-')} {human_bytes(prod.get('size')) if prod.get('size') else ''} "
                f"| {fmt(rd.get('open_s'), 3)} | {fmt(rd.get('read_s'))} "
                f"| {'-' if equal is None else ('yes' if equal else 'NO')} |"
            )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- CLI


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="bench_refs.py",
        description="Time padocc-like, kerchunk, VirtualiZarr (and PADOCC) on the same generated archive, "
        "each step in a fresh child process; check every product against open_mfdataset; write "
        "<out-dir>/results.json and results.md.",
        epilog="Example: .venv/bin/python bench/bench_refs.py --preset standard",
    )
    ap.add_argument(
        "--preset", choices=sorted(PRESETS), help="a named configuration (flags given override it)"
    )
    g = ap.add_argument_group("archive")
    g.add_argument("--data-dir", type=Path, help="where the archive is (default bench/data/<shape>)")
    g.add_argument("--nfiles", type=int, help="files (default 120)")
    g.add_argument("--ntime", type=int, help="time steps per file (default 30)")
    g.add_argument("--nlat", type=int, help="latitudes (default 180)")
    g.add_argument("--nlon", type=int, help="longitudes (default 360)")
    g.add_argument("--complevel", type=int, default=4, help="zlib level (default 4)")
    g.add_argument("--fill-fraction", type=float, default=0.01, help="fraction of pr missing (default 0.01)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--gen-workers", type=int, default=2, help="processes for generation (default 2)")
    g.add_argument("--gen-only", action="store_true", help="only generate the archive")
    t = ap.add_argument_group("timing")
    t.add_argument("--out-dir", type=Path, help="results directory (default bench/out/<preset or shape>)")
    t.add_argument("--tools", help=f"comma-separated subset of {','.join(TOOLS)} (default per preset)")
    t.add_argument(
        "--with-padocc",
        action="store_true",
        help="also run PADOCC 1.5.1 (creates bench/.venv-padocc, ~1.1 GB)",
    )
    t.add_argument("--padocc-repeat", type=int, default=1, help="repeats for PADOCC (slow; default 1)")
    t.add_argument("--repeat", type=int, help="interleaved repeats per tool (median-wall run reported)")
    t.add_argument("--read-repeat", type=int, help="interleaved repeats of the open/read step")
    t.add_argument("--workers", type=int, default=1, help="padocc-like profile workers (default 1)")
    t.add_argument(
        "--layout", choices=("auto", "json", "parquet"), default="auto", help="padocc-like product layout"
    )
    t.add_argument("--no-vz-fix", action="store_true", help="do not repair VirtualiZarr's scalar chunk keys")
    t.add_argument(
        "--create-venvs",
        action=argparse.BooleanOptionalAction,
        help="create bench/.venv-vz (and .venv-padocc) when missing (default: yes, except --preset smoke)",
    )
    t.add_argument("--no-read", action="store_true", help="skip the open/read step")
    t.add_argument("--no-check", action="store_true", help="skip the equality check")
    t.add_argument("--slab-mb", type=int, default=128, help="slab size for reading and hashing (MiB)")
    ap.add_argument(
        "--summarize",
        nargs="+",
        type=Path,
        metavar="RESULTS_JSON",
        help="print one table from several results.json and exit",
    )
    args = ap.parse_args(argv)
    preset = PRESETS.get(args.preset or "", {})
    for key, default in DEFAULTS.items():
        if getattr(args, key, None) is None:
            setattr(args, key, preset.get(key, default))
    tools = [s.strip() for s in str(args.tools).split(",") if s.strip()]
    if args.with_padocc and "padocc" not in tools:
        tools.append("padocc")
    unknown = [s for s in tools if s not in TOOLS]
    if unknown:
        ap.error(f"unknown tool(s) {unknown}; choose from {', '.join(TOOLS)}")
    args.tools = tools
    shape = f"n{args.nfiles}_t{args.ntime}_{args.nlat}x{args.nlon}"
    if args.data_dir is None:
        args.data_dir = HERE / "data" / shape
    if args.out_dir is None:
        args.out_dir = HERE / "out" / (args.preset or shape)
    args.data_dir = args.data_dir.resolve()
    args.out_dir = args.out_dir.resolve()
    if min(args.nfiles, args.ntime, args.nlat, args.nlon, args.repeat, args.read_repeat, args.workers) < 1:
        ap.error("sizes, repeats and workers must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_worker"]:
        return worker_main(*argv[1:4])
    args = parse_args(argv)
    if args.summarize:
        print(summarize(args.summarize), end="")
        return 0
    bench = Bench(args)
    if args.gen_only:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        bench.logs.mkdir(parents=True, exist_ok=True)
        bench.jobs.mkdir(parents=True, exist_ok=True)
        bench.generate()
        return 0
    return bench.run()


if __name__ == "__main__":
    sys.exit(main())
