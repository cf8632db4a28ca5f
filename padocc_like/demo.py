"""A small, realistic CF-conformant archive for the demo and the tests.

:func:`make_archive` writes one netCDF4 file per month, split along an
unlimited ``time`` axis with ``time_bnds``, ``lat``/``lon`` with bounds, a
scalar ``height`` coordinate, and float32 ``tas``/``pr`` compressed with zlib
and shuffle, in the layout modelling centres use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

DAYS_PER_MONTH = {"360_day": [30] * 12, "noleap": [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]}


@dataclass(frozen=True)
class ArchiveSpec:
    """Shape of a synthetic archive."""

    n_files: int = 12
    nlat: int = 36
    nlon: int = 72
    calendar: str = "360_day"
    start_year: int = 2000
    variables: tuple[str, ...] = ("tas", "pr")
    units_per_file: bool = False
    """If true, each file uses ``days since <its first day>`` (as some models write)."""
    chunk_time: int = 1
    complevel: int = 4
    shuffle: bool = True
    format: str = "NETCDF4"
    seed: int = 0


def make_archive(directory: Path, spec: ArchiveSpec = ArchiveSpec()) -> list[Path]:
    """Write ``spec.n_files`` monthly files into ``directory``; return their paths in time order."""
    import netCDF4

    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    lat = np.linspace(-90 + 90 / spec.nlat, 90 - 90 / spec.nlat, spec.nlat)
    lon = np.linspace(180 / spec.nlon, 360 - 180 / spec.nlon, spec.nlon)
    dlat, dlon = 180 / spec.nlat, 360 / spec.nlon
    month_lengths = DAYS_PER_MONTH.get(spec.calendar, DAYS_PER_MONTH["noleap"])
    base_units = f"days since {spec.start_year}-01-01 00:00:00"
    paths: list[Path] = []
    day0 = 0.0
    for i in range(spec.n_files):
        year = spec.start_year + i // 12
        month = i % 12 + 1
        ndays = month_lengths[month - 1]
        path = directory / f"tas_day_synthetic_{year:04d}{month:02d}.nc"
        nc_fmt = spec.format
        with netCDF4.Dataset(path, "w", format=nc_fmt) as ds:
            ds.Conventions = "CF-1.8"
            ds.title = "Synthetic daily near-surface climate"
            ds.institution = "padocc-like demo"
            ds.source = "padocc_like.demo.make_archive"
            ds.history = f"created for month {year:04d}-{month:02d}"
            ds.frequency = "day"
            ds.createDimension("time", None)
            ds.createDimension("lat", spec.nlat)
            ds.createDimension("lon", spec.nlon)
            ds.createDimension("bnds", 2)
            compress = {}
            if nc_fmt.startswith("NETCDF4"):
                compress = {
                    "zlib": spec.complevel > 0,
                    "complevel": spec.complevel or 1,
                    "shuffle": spec.shuffle,
                }
            t = ds.createVariable("time", "f8", ("time",))
            units = f"days since {year:04d}-{month:02d}-01 00:00:00" if spec.units_per_file else base_units
            offset = 0.0 if spec.units_per_file else day0
            t.units = units
            t.calendar = spec.calendar
            t.standard_name = "time"
            t.axis = "T"
            t.bounds = "time_bnds"
            t[:] = offset + np.arange(ndays) + 0.5
            tb = ds.createVariable("time_bnds", "f8", ("time", "bnds"))
            tb[:] = np.stack([offset + np.arange(ndays), offset + np.arange(ndays) + 1], axis=1)
            la = ds.createVariable("lat", "f8", ("lat",))
            la.units, la.standard_name, la.axis, la.bounds = (
                "degrees_north",
                "latitude",
                "Y",
                "lat_bnds",
            )
            la[:] = lat
            lo = ds.createVariable("lon", "f8", ("lon",))
            lo.units, lo.standard_name, lo.axis, lo.bounds = (
                "degrees_east",
                "longitude",
                "X",
                "lon_bnds",
            )
            lo[:] = lon
            lab = ds.createVariable("lat_bnds", "f8", ("lat", "bnds"))
            lab[:] = np.stack([lat - dlat / 2, lat + dlat / 2], axis=1)
            lob = ds.createVariable("lon_bnds", "f8", ("lon", "bnds"))
            lob[:] = np.stack([lon - dlon / 2, lon + dlon / 2], axis=1)
            h = ds.createVariable("height", "f8", ())
            h.units, h.standard_name, h.positive, h.axis = "m", "height", "up", "Z"
            h[...] = 2.0
            chunks = (spec.chunk_time, spec.nlat, spec.nlon)
            yy, _xx = np.meshgrid(np.deg2rad(lat), np.deg2rad(lon), indexing="ij")
            for name in spec.variables:
                kw = dict(compress)
                if nc_fmt.startswith("NETCDF4"):
                    kw["chunksizes"] = chunks
                v = ds.createVariable(name, "f4", ("time", "lat", "lon"), fill_value=np.float32(1e20), **kw)
                if name == "tas":
                    v.standard_name, v.long_name, v.units = (
                        "air_temperature",
                        "Near-Surface Air Temperature",
                        "K",
                    )
                    v.coordinates = "height"
                    seasonal = 10 * np.cos(2 * np.pi * (i % 12) / 12)
                    data = 273.15 + 30 * np.cos(yy)[None] + seasonal + rng.normal(0, 2, (ndays, *yy.shape))
                else:
                    v.standard_name, v.long_name, v.units = (
                        "precipitation_flux",
                        "Precipitation",
                        "kg m-2 s-1",
                    )
                    data = np.abs(rng.gamma(0.5, 3e-5, (ndays, *yy.shape)))
                    mask = rng.random(data.shape) < 0.01
                    data = np.where(mask, np.nan, data)
                v.cell_methods = "time: mean"
                v.missing_value = np.float32(1e20)
                v[:] = np.ma.masked_invalid(data.astype("f4"))
        day0 += ndays
        paths.append(path)
    return paths


DEMO_GROUP = """\
# A group made by `padocc-like demo`: one project per variable layout.
group: demo
description: Synthetic daily climate archive (padocc-like demo)
work_dir: work
pipeline: kerchunk
profile: local
projects:
  - id: tas-pr-day
    description: Daily tas and pr, one netCDF4 file per month
    sources:
      glob: archive/*.nc
    concat_dims: [time]
    attributes:
      global:
        set: {{product_note: "Kerchunk aggregation made by padocc-like"}}
"""


def run_demo(directory: Path, *, n_files: int = 12, workers: int = 2, echo=print) -> int:
    """Generate the demo archive and group, run every phase, and show the results."""
    from . import api

    directory = directory.resolve()
    archive = directory / "archive"
    if not any(archive.glob("*.nc")):
        make_archive(archive, ArchiveSpec(n_files=n_files))
    group_file = directory / "group.yaml"
    group_file.write_text(DEMO_GROUP.format())
    echo(f"archive: {len(list(archive.glob('*.nc')))} netCDF4 files in {archive}")
    group = api.open_group(group_file)

    def show(o: api.PhaseOutcome) -> None:
        echo(f"  {o.phase:<8} {o.project}: {o.status} - {o.message}")

    outcomes = api.run(
        group,
        ["init", "scan", "compute", "validate", "finalise", "catalog"],
        workers=workers,
        on_outcome=show,
    )
    if any(o.status == "failed" for o in outcomes):
        echo("the demo failed; see `padocc-like status " + str(group_file) + "`")
        return 1
    row = api.status(group)[0]
    prod = row["product"]
    rep = api.report(group, "tas-pr-day")
    work = group.work_dir
    echo("")
    echo(f"product:    {prod['path']} (r{prod['revision']}, {prod['layout']}, {prod['n_refs']} references)")
    echo(
        f"report:     {work / 'projects' / 'tas-pr-day' / 'reports' / 'validation-r1.json'} "
        f"-> {rep['verdict'].upper()}, {rep['summary']['values_compared']:,} values compared"
    )
    echo(f"STAC item:  {work / 'projects' / 'tas-pr-day' / 'catalog' / 'item.json'}")
    echo(f"collection: {work / 'catalog' / 'collection.json'}")
    echo("")
    import xarray as xr

    ds = xr.open_dataset(prod["path"], engine="kerchunk", storage_options={"remote_protocol": "file"})
    echo(f'>>> xr.open_dataset("{prod["path"]}", engine="kerchunk")')
    echo(str(ds))
    ds.close()
    echo("")
    echo(f"next: padocc-like status {group_file}")
    return 0
