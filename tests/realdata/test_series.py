"""Every multi-file series in ``realdata/series`` through every phase, with the outcome it deserves.

Each entry of :data:`SERIES` is one project: a glob into a dataset folder (read in place,
never copied), optional project configuration, and the expected outcome, either

* ``pass``: every phase is done, the validation verdict is ``pass`` (every value of every
  file compared, raw and decoded) and, independently of our validator, the product opened
  with xarray's kerchunk engine equals ``xarray.open_mfdataset`` of the sources. A ``cfa``
  product is opened by three readers, each compared with ``open_mfdataset``: our engine
  (``engine="padocc_cfa"``), cfapyx (``engine="CFA"``) and cf-python (``cf.read``), the
  last two from another working directory. Where cfapyx or cf-python cannot open a product
  for a reason of their own, the entry's ``readers`` asserts that precise failure (and why);
  or
* a failed phase, its error kind and regexes that must **all** match the message, so the
  message provably names the real cause (the files and the variable or dimension).

Unconfigured projects come first for each dataset (the default must be right); where an
operator would reasonably configure the project (drop a variable, split by stream or at an
overlap) a second entry shows the configured project passing. Every series Kerchunk cannot
represent also has a ``-cfa`` project (product kind ``cfa``, :data:`CFA_OF`): an exact CF
aggregation of whole-file fragments, or the precise error where even that cannot be exact
(``test_every_kerchunk_failure_has_a_cfa_project``). Every series with an exact product
also has a ``-zarr`` project (product kind ``zarr``, :func:`_zarr_projects`): a Zarr store
copied from the files, opened with xarray's zarr engine and compared with
``open_mfdataset``, its stored types those of the files; ``cesm-le-ctrl-SHF-zarr-timeseries``
rechunks the uneven century files to whole time series. ``test_failure_reason_is_true``
re-derives every expected failure's cause from the files with netCDF4 alone, so an
expectation cannot just mirror what the package happens to say.

Entries marked ``FIX`` in their ``why`` fail until the package bug they describe is fixed;
they assert the correct behaviour on purpose (nothing here is xfail).

Run: ``pytest tests/realdata -q -p no:cacheprovider --realdata``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from padocc_like import api
from padocc_like.state.store import current_product, project_paths
from padocc_like.writers.base import ProductRecord

PHASES = ["init", "scan", "compute", "validate", "catalog"]
CFA_ADVICE = re.escape("set `product: {kind: cfa}`")

MPI = "hist/hist0001/outdata"
CTRL = "b.e11.B1850C5CN.f09_g16.005.pop.h.SHF"
RCP = "b.e11.BRCP85C5CNBDRD.f09_g16.001.pop.h.SHF"
MULTI = "b.e11.B1850C5CN.f09_g16.005.pop.h"
HAD = "tas_Amon_HadGEM2-ES_rcp85_r1i1p1"
CCI = "ESACCI-SOILMOISTURE-L3S-SSMV-COMBINED"


def _q(*names: str) -> tuple[str, ...]:
    """Regexes matching these literal strings (file names, values)."""
    return tuple(re.escape(n) for n in names)


@dataclass(frozen=True)
class ReaderFailure:
    """A third-party CFA reader that cannot open a product, for a reason of its own."""

    reader: str
    """``cfapyx`` or ``cf-python``."""
    exc: type[BaseException]
    match: str
    """Regex the exception's message must match."""
    why: str
    """Whose bug, and the evidence."""
    strip_global_attrs: tuple[str, ...] = ()
    """If the failure is caused by these global attributes, the values are still compared,
    through a copy of the product without them (its fragment URIs are absolute)."""
    evidence: Callable[[str, list[str]], None] | None = None
    """Called with the product path and the sources after the failure: proves its cause."""


@dataclass(frozen=True)
class Series:
    id: str
    """Project id (and test id)."""
    dataset: str
    """Folder under ``realdata/series``."""
    glob: str | tuple[str, ...]
    """Glob(s) relative to the dataset folder."""
    n_files: int
    """How many files the glob(s) must match (guards the globs themselves)."""
    outcome: str
    """``pass``, or the phase expected to fail."""
    error_kind: str | None = None
    message: tuple[str, ...] = ()
    """Regexes that must all be found in the failure message."""
    config: dict[str, Any] = field(default_factory=dict)
    """Extra project options (``concat_dims``, ``variables``...)."""
    mfdataset: dict[str, Any] = field(default_factory=dict)
    """Extra ``xarray.open_mfdataset`` options for the independent cross-check of a pass."""
    why: str = ""
    """The evidence that this outcome is the correct one."""
    readers: tuple[ReaderFailure, ...] = ()
    """For a ``cfa`` pass: the third-party readers expected to fail on the product."""


def _cfapyx_drops_fragment_masks(*names: str) -> Callable[[str, list[str]], None]:
    """cfapyx returns, for these packed variables, the stored integers wherever netCDF4 masks
    a fragment value (outside the files' valid_range [0, 1], in packed units as CF reads
    it), and the unpacked values elsewhere."""

    def check(product: str, files: list[str]) -> None:
        import xarray as xr

        with (
            xr.open_dataset(product, engine="CFA") as prod,
            xr.open_mfdataset(sorted(files), **_mfdataset_kw({"mask_and_scale": False})) as raw,
            xr.open_mfdataset(sorted(files), **_mfdataset_kw({})) as ref,
        ):
            for name in names:
                assert "scale_factor" in raw[name].attrs, name
                assert list(raw[name].attrs["valid_range"]) == [0, 1], name
                got, stored, values = prod[name].values, raw[name].values, ref[name].values
                valid = ~np.isnan(values)
                cf_masked = valid & ((stored < 0) | (stored > 1))
                assert cf_masked.any(), name
                assert np.array_equal(got[cf_masked], stored[cf_masked].astype(got.dtype)), name
                kept = valid & ~cf_masked
                assert np.array_equal(got[kept], values[kept]), name
                assert np.array_equal(np.isnan(got), ~valid), name

    return check


CFAPYX_DROPS_FRAGMENT_MASKS = ReaderFailure(
    "cfapyx",
    AssertionError,
    r"cfapyx: sm(_uncertainty)?: values differ",
    why="cfapyx's bug: it reads each fragment with netCDF4's default mask-and-scale, then "
    "np.array() of the masked array (filehandlers.open_netcdf4) drops the mask and exposes the "
    "data under it. sm and sm_uncertainty are int16 with scale_factor 1e-4 and a float "
    "valid_range [0, 1] that netCDF4 (like CF) applies to the stored values, so every stored "
    "value above 1 comes back as that integer (3559 for 0.3559; CF readers mask it, xarray "
    "keeps 0.3559); checked value by value",
    evidence=_cfapyx_drops_fragment_masks("sm", "sm_uncertainty"),
)
CESM_CONVENTIONS = (
    "The sources' Conventions 'CF-1.0; http://www.cgd.ucar.edu/...' becomes 'CF-1.13 "
    "http://www.cgd.ucar.edu/...' (CF 2.6.1: a blank- or comma-separated list; with the ';' kept, "
    "cf-python would read the version '1.13;' and raise InvalidVersion)"
)
CF_PYTHON_GLOBAL_CALENDAR = ReaderFailure(
    "cf-python",
    KeyError,
    re.escape("all years have exactly  365 days."),
    why="cf-python's bug: the CESM files carry a free-text global attribute calendar = 'All "
    "years have exactly  365 days.' (not a CF attribute; CF allows others). cf-python copies "
    "global attributes onto every field and parses that one as the field's CF calendar "
    "(cfunits' _canonical_calendar lookup): KeyError. It fails the same way on each source file "
    "(once its 'CF-1.0;' Conventions is readable); the product keeps the attribute faithfully",
    strip_global_attrs=("calendar",),
)

SERIES: list[Series] = [
    # --- ESA CCI soil moisture: 3 consecutive days, then 2000-01-01 -------------------------
    Series(
        "esacci-soilmoisture-daily",
        "esacci-soilmoisture-daily",
        "*.nc",
        4,
        "pass",
        why="t0 (observation time) has valid_range [day-0.5, day+0.5] per file, so no file's "
        "range fits the others; the product declares their hull [3238.5, 10957.5] (as stored: "
        "10957.4999999995343), which masks exactly what each file masks (the 17 t0 values of "
        "2000-01-01 equal to 10957.5 lie outside both), proven by _hull_masks_as_each_file. sm is "
        "int16 packed with a float32 scale_factor and decodes equal",
    ),
    Series(
        "esacci-soilmoisture-daily-cfa",
        "esacci-soilmoisture-daily",
        "*.nc",
        4,
        "pass",
        config={"product": {"kind": "cfa"}},
        why="the same series as a CF aggregation (t0's valid range the same hull; CF-1.13 also "
        "applies each fragment's own range, which masks the same values): sm is aggregated "
        "unpacked (float32, valid_range [0, 1e-4] in its units, as CF readers take the files' "
        "float [0, 1] on int16 data: in packed units, so cf-python masks what it masks in the "
        "files)",
        readers=(CFAPYX_DROPS_FRAGMENT_MASKS,),
    ),
    # --- CESM-LE control: 18 century files ------------------------------------------------------
    Series(
        "cesm-le-ctrl-SHF",
        "cesm-le-ctrl-SHF",
        "*.nc",
        18,
        "scan",
        "not-representable",
        (
            r"variable 'SHF'",
            r"chunk",
            r"\(1212, 2, 2\)",
            r"\(1200, 2, 2\)",
            *_q(f"{CTRL}.210001-220012.nc"),
            # the other, independent obstacle: two files are written without shuffle
            r"shuffle",
            *_q(f"{CTRL}.150001-159912.nc"),
            CFA_ADVICE,
        ),
        why="SHF is one chunk per file: (1200,2,2), but (1212,2,2) in 2100-2200; and the "
        "1500s and 1600s files lack the shuffle filter. Kerchunk has one chunk shape and one "
        "codec list per variable. FIX: the message names only the codec difference today "
        "(see combine._concatenated patch); it must name the chunking (and the codecs). Each "
        "file is one whole fragment of a CF aggregation, so scan recommends product kind cfa",
    ),
    Series(
        "cesm-le-ctrl-SHF-cfa",
        "cesm-le-ctrl-SHF",
        "*.nc",
        18,
        "pass",
        config={"product": {"kind": "cfa"}},
        why="as a CF aggregation each file is one fragment of SHF, whatever its chunk shape "
        "and codecs (21612 noleap months); time, its bounds, the char arrays and the static "
        f"grid are stored in the aggregation file. {CESM_CONVENTIONS}",
        readers=(CF_PYTHON_GLOBAL_CALENDAR,),
    ),
    Series(
        "cesm-le-ctrl-SHF-0400-1499",
        "cesm-le-ctrl-SHF",
        (f"{CTRL}.0[4-9]*.nc", f"{CTRL}.1[0-4]*.nc"),
        11,
        "pass",
        why="the run of files with one chunk shape and codec list combines exactly (13200 "
        "noleap months, 'days since 0000-01-01', time as 1-step chunks, char arrays): the "
        "encoding is the only obstacle. FIX: validation compares xarray's char-concatenated "
        "product with netCDF4's raw (n, 256, 1) char arrays (see checks.validate patch); then "
        "catalog writes year 400 as '400-01-01T...', not ISO 8601 (see catalog.stac._iso patch)",
    ),
    # --- CESM-LE RCP8.5: 2 files of 900 and 240 steps, one chunk each ----------------------------
    Series(
        "cesm-le-rcp85-SHF",
        "cesm-le-rcp85-SHF",
        "*.nc",
        2,
        "scan",
        "not-representable",
        (
            r"variable 'SHF'",
            r"chunk",
            r"\(240, 2, 2\)",
            r"\(900, 2, 2\)",
            *_q(f"{RCP}.208101-210012.nc", f"{RCP}.200601-208012.nc"),
            CFA_ADVICE,
        ),
        why="SHF chunks are (900,2,2) and (240,2,2): no single chunk grid covers both files "
        "without re-chunking; codecs are identical. Scan recommends product kind cfa",
    ),
    Series(
        "cesm-le-rcp85-SHF-cfa",
        "cesm-le-rcp85-SHF",
        "*.nc",
        2,
        "pass",
        config={"product": {"kind": "cfa"}},
        why=f"two fragments of 900 and 240 steps, whatever their chunk shapes. {CESM_CONVENTIONS}",
        readers=(CF_PYTHON_GLOBAL_CALENDAR,),
    ),
    # --- CESM multi-variable POP files: merge plus concat --------------------------------------
    Series(
        "cesm-multi-variables",
        "cesm-multi-variables",
        "*.nc",
        5,
        "scan",
        "inconsistent-sources",
        (
            r"different variables",
            r"'O2'",
            r"'PO4'",
            *_q(f"{MULTI}.SHF-NO2-PO4.050001-050012.nc", f"{MULTI}.SHF-NO2-O2.050001-050012.nc"),
        ),
        why="SHF-NO2-O2, SHF-NO2-PO4 and SHF-TEMP-SiO3 files hold different variables (a merge "
        "Kerchunk concat cannot express); SHF/NO2 repeat across them for the same months",
    ),
    Series(
        "cesm-multi-variables-SHF-NO2-O2",
        "cesm-multi-variables",
        f"{MULTI}.SHF-NO2-O2.*.nc",
        2,
        "pass",
        why="one variable set per project: 0500 and 0501 concatenate along time (the 0501 file "
        "starts at 0501-02, a one-month gap, which is legal). FIX: char arrays (see checks patch) "
        "and year 500 in the STAC item (see catalog.stac._iso patch)",
    ),
    Series(
        "cesm-multi-variables-SHF-NO2-PO4",
        "cesm-multi-variables",
        f"{MULTI}.SHF-NO2-PO4.*.nc",
        2,
        "pass",
        why="as SHF-NO2-O2. FIX: char arrays and year 500 (checks and stac patches)",
    ),
    Series(
        "cesm-multi-variables-SHF-TEMP-SiO3",
        "cesm-multi-variables",
        f"{MULTI}.SHF-TEMP-SiO3.*.nc",
        1,
        "pass",
        why="a one-file project (no concatenation dimension) is exact. FIX: char "
        "arrays and year 500 (checks and stac patches)",
    ),
    # --- MPI-GE: hamocc and mpiom, each with a monthly 2d and a yearly monitoring stream --------
    Series(
        "mpi-ge-hist0001-hamocc",
        "mpi-ge-hist0001",
        f"{MPI}/hamocc/*.nc",
        6,
        "scan",
        "inconsistent-sources",
        (
            r"different variables",
            r"'co2flux'",
            *_q(
                "hist0001_hamocc_monitoring_ym_18500101_18501231.nc",
                "hist0001_hamocc_data_2d_mm_18500101_18501231.nc",
            ),
        ),
        why="the folder mixes two streams: data_2d_mm (co2flux, caex90) and monitoring_ym "
        "(global_* time series)",
    ),
    Series(
        "mpi-ge-hist0001-mpiom",
        "mpi-ge-hist0001",
        f"{MPI}/mpiom/*.nc",
        6,
        "scan",
        "inconsistent-sources",
        (
            r"different variables",
            r"'sst'",
            *_q(
                "hist0001_mpiom_monitoring_ym_18500101_18501231.nc",
                "hist0001_mpiom_data_2d_mm_18500101_18501231.nc",
            ),
        ),
        why="the folder mixes two streams: data_2d_mm (sst, bottom_pressure) and monitoring_ym",
    ),
    *[
        Series(
            f"mpi-ge-hist0001-{model}-{stream}",
            "mpi-ge-hist0001",
            f"{MPI}/{model}/hist0001_{model}_{stream}_*.nc",
            3,
            "pass",
            why="one stream per project: time units are 'hours since <file start>' in every "
            "file, re-encoded exactly in the first file's units. FIX: validation reads the "
            "sources' time units from decoded attrs, where xarray no longer keeps them, and so "
            "compares re-encoded raw times bitwise (see checks.read_source_info patch)",
        )
        for model in ("hamocc", "mpiom")
        for stream in ("data_2d_mm", "monitoring_ym")
    ],
    # --- CMIP5 HadGEM2-ES tas: netCDF-3, 360_day, 2099-12 twice --------------------------------
    Series(
        "cmip5-HadGEM2-ES-tas",
        "cmip5-HadGEM2-ES-tas",
        "*.nc",
        13,
        "scan",
        "inconsistent-sources",
        (r"overlapping 'time'", r"2099-12-16", *_q(f"{HAD}_208012-209912.nc", f"{HAD}_209912-212411.nc")),
        why="both files hold 2099-12-16 (360_day), with different tas values: no exact product "
        "can hold the month once",
    ),
    Series(
        "cmip5-HadGEM2-ES-tas-2005-2099",
        "cmip5-HadGEM2-ES-tas",
        tuple(f"{HAD}_{s}-*.nc" for s in ("200512", "203012", "205512", "208012")),
        4,
        "pass",
        why="split at the overlap: 2005-12..2099-12, 1129 months",
    ),
    Series(
        "cmip5-HadGEM2-ES-tas-2099-2299",
        "cmip5-HadGEM2-ES-tas",
        (f"{HAD}_209912-*.nc", f"{HAD}_21[0-9][0-9]12-*.nc", f"{HAD}_22[0-9][0-9]12-*.nc"),
        9,
        "pass",
        why="split at the overlap: 2099-12..2299-12 including the one-step last file",
    ),
    # --- GMET CONUS: 6 days from each of 3 years -------------------------------------------------
    Series(
        "gmet-conus-daily",
        "gmet-conus-daily",
        "*.nc4",
        3,
        "pass",
        why="gaps along time are legal; every chunk is small enough to be inlined",
    ),
    # --- cfapyx rain: the netCDF data files only (not the .nca CFA files) ------------------------
    Series(
        "cfapyx-rain-synthetic",
        "cfapyx-rain-synthetic",
        "rain/*.nc",
        10,
        "pass",
        why="10 contiguous float64 files of 2 daily steps, placed by time value",
    ),
    # --- PADOCC synthetic aggregations (the files are under data_creator/, data/ holds a report) --
    Series(
        "padocc-1DAgg",
        "padocc-synthetic-aggs",
        "data_creator/1DAgg/*.nc",
        8,
        "pass",
        why="8 files along time (no units), identical lat/lon/lat_projection/height",
    ),
    Series(
        "padocc-3DAgg",
        "padocc-synthetic-aggs",
        "data_creator/3DAgg/*.nc",
        8,
        "pass",
        # two files have no 'coordinates' attribute, so xarray cannot tell whether 'height'
        # is a coordinate when merging them: compare without decoding coordinates
        mfdataset={"decode_coords": False},
        why="a 2x2x2 tiling along time, lat and lon. FIX: lat_projection(lat) is held by the 4 "
        "files of each lat block; the combiner must take it once per block (checking the "
        "others agree), not report the copies as overlapping chunks (see combine patch)",
    ),
]


def _cfa(entry: Series, why: str, **changes: Any) -> Series:
    """The CF aggregation project (product kind cfa) of a series Kerchunk cannot represent:
    the same files and operator configuration; the outcome the same unless ``changes`` says."""
    config = {**entry.config, "product": {"kind": "cfa"}}
    return replace(entry, id=f"{entry.id}-cfa", config=config, why=why, **changes)


NOT_EVEN_CFA = "not even a CF aggregation of whole files can be exact: "
CFA_OF: dict[str, dict[str, Any]] = {
    "cesm-multi-variables": {
        "why": NOT_EVEN_CFA + "SHF is held by three files (and NO2 by two) for the same 0500 "
        "months, and a fragment must be the only source of its part of the data; TEMP and SiO3 "
        "exist only in the 0500 file, so no whole-file fragment covers their 0501 months, and "
        "CF-1.13 uris admit no missing fragment. One project per variable set is exact",
    },
    **{
        f"mpi-ge-hist0001-{model}": {
            "why": NOT_EVEN_CFA + "the streams' 'time' axes differ (12 monthly steps per "
            "data_2d_mm file, 1 yearly step per monitoring_ym file, stamped like December), so "
            "one 'time' dimension would need the monitoring variables at 11 of every 12 steps "
            "where no file holds them. One project per stream is exact",
        }
        for model in ("hamocc", "mpiom")
    },
    "cmip5-HadGEM2-ES-tas": {
        "why": NOT_EVEN_CFA + "each aggregated value comes from exactly one fragment, and both "
        "whole files hold 2099-12-16, with different tas values (so neither copy is the "
        "month). Splitting at the overlap is exact",
    },
}
SERIES += [_cfa(s, **CFA_OF[s.id]) for s in list(SERIES) if s.id in CFA_OF]


def _zarr_projects(series: list[Series]) -> list[Series]:
    """A ``zarr`` project for every series with an exact product (Kerchunk or CFA): the same
    files and configuration, copied into a Zarr store (the default maps layout); one per
    series (its id without ``-cfa``, plus ``-zarr``)."""
    out: dict[str, Series] = {}
    for s in series:
        if s.outcome != "pass":
            continue
        base = s.id.removesuffix("-cfa")
        config = {**s.config, "product": {"kind": "zarr"}}
        why = f"the files of {base} copied into a Zarr store: every value equal to open_mfdataset's"
        out.setdefault(f"{base}-zarr", replace(s, id=f"{base}-zarr", config=config, why=why, readers=()))
    return list(out.values())


SERIES += _zarr_projects(SERIES)
SERIES.append(
    Series(
        "cesm-le-ctrl-SHF-zarr-timeseries",
        "cesm-le-ctrl-SHF",
        "*.nc",
        18,
        "pass",
        config={"product": {"kind": "zarr", "zarr": {"pattern": "timeseries", "memory_limit_mb": 4}}},
        why="the 18 century files (1200 and 1212 steps, chunked differently) rechunked to whole time "
        "series of a few points, through an intermediate store under a 4 MiB memory limit",
    )
)


def _ids() -> list[str]:
    ids = [s.id for s in SERIES]
    assert len(ids) == len(set(ids)), "duplicate project ids in SERIES"
    return ids


# ---------------------------------------------------------------------------------------------
# running a project
# ---------------------------------------------------------------------------------------------
def _group_yaml(entry: Series, root: Path, work_dir: Path) -> str:
    globs = [entry.glob] if isinstance(entry.glob, str) else list(entry.glob)
    paths = [str(root / "series" / entry.dataset / g) for g in globs]
    project = {
        "id": entry.id,
        "sources": {"glob": paths[0] if len(paths) == 1 else paths},
        **entry.config,
    }
    group = {
        "group": "realdata-series",
        "work_dir": str(work_dir),
        "pipeline": "kerchunk",
        "projects": [project],
    }
    return yaml.safe_dump(group, sort_keys=False)


def _run(entry: Series, realdata: Path, write_group, tmp_path: Path):
    path = write_group(_group_yaml(entry, realdata, tmp_path / "work"))
    group = api.open_group(path)
    outcomes = api.run(group, PHASES)
    return group, outcomes


def _manifest_files(group: Any, pid: str) -> list[str]:
    manifest = json.loads(project_paths(group.work_dir, pid).manifest.read_text())
    return [f["url"] for f in manifest["files"]]


def _describe(outcomes: list[Any]) -> str:
    return "\n".join(f"  {o.phase}: {o.status} [{o.error_kind}] {o.message}" for o in outcomes)


# ---------------------------------------------------------------------------------------------
# the independent cross-check of a pass: xarray's own multi-file reading
# ---------------------------------------------------------------------------------------------
def _mfdataset_kw(options: dict[str, Any]) -> dict[str, Any]:
    import xarray as xr

    return {
        "combine": "by_coords",
        "data_vars": "minimal",
        "coords": "minimal",
        "compat": "equals",  # variables without a concat dim must be equal in every file
        "join": "exact",
        "decode_times": xr.coders.CFDatetimeCoder(use_cftime=True),
        "decode_timedelta": False,
        "parallel": False,
        **options,
    }


def _compare(prod: Any, ref: Any, reader: str) -> None:
    """Every variable of ``prod`` equals ``ref``'s: same names, sizes, dims, values."""
    assert set(prod.variables) == set(ref.variables), (reader, set(prod.variables) ^ set(ref.variables))
    assert dict(prod.sizes) == dict(ref.sizes), reader
    for name in prod.variables:
        a, b = np.asarray(prod[name].values), np.asarray(ref[name].values)
        assert prod[name].dims == ref[name].dims, (reader, name)
        assert a.shape == b.shape, (reader, name)
        if a.dtype.kind == "f" and b.dtype.kind == "f":
            # JSON attributes carry no float32 type, so a float32 scale_factor decodes
            # as float64 through the product: compare in the sources' type
            assert a.dtype.itemsize >= b.dtype.itemsize, (reader, name)
            same = np.array_equal(a.astype(b.dtype), b, equal_nan=True)
            assert same, f"{reader}: {name}: values differ"
        else:
            assert a.dtype.kind == b.dtype.kind, (reader, name, a.dtype, b.dtype)
            assert bool(np.all(a == b)), f"{reader}: {name}: values differ"


def _crosscheck(record: ProductRecord, files: list[str], options: dict[str, Any]) -> None:
    """A Kerchunk product with xarray's kerchunk engine against ``open_mfdataset``."""
    import xarray as xr

    kw = _mfdataset_kw(options)
    coder = kw["decode_times"]
    with (
        xr.open_dataset(
            record.path,
            engine="kerchunk",
            storage_options={"remote_protocol": "file"},
            decode_times=coder,
            decode_timedelta=False,
        ) as prod,
        xr.open_mfdataset(sorted(files), **kw) as ref,
    ):
        _compare(prod, ref, "kerchunk")


def _crosscheck_zarr(record: ProductRecord, files: list[str], options: dict[str, Any]) -> None:
    """A Zarr store with xarray's zarr engine against ``open_mfdataset``: decoded values, and
    the stored (raw) values and types, which the copy keeps."""
    import xarray as xr

    kw = _mfdataset_kw(options)
    consolidated = record.layout == "zarr2"
    with (
        xr.open_dataset(
            record.path,
            engine="zarr",
            consolidated=consolidated,
            decode_times=kw["decode_times"],
            decode_timedelta=False,
        ) as prod,
        xr.open_mfdataset(sorted(files), **kw) as ref,
    ):
        _compare(prod, ref, "zarr")
    # the stored types are kept (packing included): as in the first file
    with (
        xr.open_dataset(
            record.path,
            engine="zarr",
            consolidated=consolidated,
            mask_and_scale=False,
            decode_times=False,
            decode_timedelta=False,
        ) as prod,
        xr.open_dataset(
            sorted(files)[0], mask_and_scale=False, decode_times=False, decode_timedelta=False
        ) as first,
    ):
        for name in first.data_vars:
            if name in prod.variables:
                assert prod[name].dtype == first[name].dtype, (name, prod[name].dtype, first[name].dtype)


def _third_party(module: str) -> Any:
    """Import cfapyx or cf-python: skipped locally when missing, a failure in CI."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"{module} is not installed ({exc}); CI runs this cross-check")


def _expect_failure(entry: Series, reader: str, call: Callable[[], Any]) -> ReaderFailure | None:
    """Run ``call``; if the entry expects ``reader`` to fail, assert that precise failure."""
    expected = [r for r in entry.readers if r.reader == reader]
    if not expected:
        call()
        return None
    (failure,) = expected
    try:
        call()
    except failure.exc as exc:
        message = str(exc)
        assert re.search(failure.match, message), f"{reader} failed otherwise: {exc!r}"
        return failure
    except Exception as exc:  # a different failure: show it, not pytest.raises' wrapper
        raise AssertionError(f"{reader} was expected to raise {failure.exc.__name__}, got {exc!r}") from exc
    raise AssertionError(f"{reader} opened the product; it was expected to fail: {failure.why}")


def _conventions_names_cf_1_13(path: str) -> None:
    """CF 2.6.1: ``Conventions`` is a list separated by blanks or commas, one name CF-1.13."""
    import netCDF4

    with netCDF4.Dataset(path) as ds:
        value = ds.getncattr("Conventions")
    names = [n for n in re.split(r"[,\s]+", value) if n]
    assert "CF-1.13" in names, f"Conventions {value!r} does not name CF-1.13 (names: {names})"


def _valid_ranges(product: str) -> tuple[set[str], dict[str, tuple[float, float, bool]]]:
    """The aggregation variables of ``product``, the valid range each declares, and whether
    the variable is packed (its range then applies to the stored values)."""
    import netCDF4

    with netCDF4.Dataset(product) as ds:
        aggregated = {n for n, v in ds.variables.items() if "aggregated_dimensions" in v.ncattrs()}
        ranges = {}
        for n in aggregated:
            v = ds[n]
            attrs = set(v.ncattrs())
            lo, hi = -np.inf, np.inf
            if "valid_range" in attrs:
                lo, hi = (float(x) for x in np.asarray(v.valid_range))
            lo = float(v.valid_min) if "valid_min" in attrs else lo
            hi = float(v.valid_max) if "valid_max" in attrs else hi
            if (lo, hi) != (-np.inf, np.inf):
                ranges[n] = (lo, hi, bool(attrs & {"scale_factor", "add_offset"}))
    return aggregated, ranges


def _cf_python_values(fields: Any, ref: Any, raw: Any, product: str) -> None:
    """cf-python's field of each data variable equals ``ref``: its masked points are the NaNs
    there, plus, as CF readers do and xarray does not, the points outside the valid range the
    aggregation variable declares (compared with the stored values in ``raw`` if it is packed,
    else with the values)."""
    aggregated, ranges = _valid_ranges(product)
    by_name = {f.nc_get_variable(): f for f in fields}
    missing = sorted(n for n in aggregated if n not in by_name)
    assert not missing, f"cf-python read no field for the aggregated variables {missing}"
    for name, fld in sorted(by_name.items()):
        if name not in ref.data_vars:
            continue
        expected = np.asarray(ref[name].values)
        got = np.ma.asarray(fld.data.array)
        if expected.dtype.kind in "OM" and got.dtype.kind in "iuf":
            # a data variable of times (esacci's t0): cf-python keeps the numbers of its units,
            # so compare the stored numbers, masked where xarray decodes a fill value
            stored = np.asarray(raw[name].values)
            fills = [raw[name].attrs.get("_FillValue"), raw[name].encoding.get("_FillValue")]
            missing = np.zeros(stored.shape, bool)
            for fill in fills:
                if fill is not None:
                    missing |= stored == fill
            expected = np.where(missing, np.nan, stored.astype("f8"))
        assert got.shape == expected.shape, ("cf-python", name, got.shape, expected.shape)
        if got.dtype.kind in "US" or expected.dtype.kind in "US":
            a = np.char.decode(got, "utf-8") if got.dtype.kind == "S" else got
            b = np.char.decode(expected, "utf-8") if expected.dtype.kind == "S" else expected
            assert np.array_equal(np.ma.filled(a, ""), b), f"cf-python: {name}: values differ"
            continue
        masked = np.isnan(expected) if expected.dtype.kind == "f" else np.zeros(expected.shape, bool)
        if name in ranges:
            lo, hi, packed = ranges[name]
            values = np.asarray(raw[name].values) if packed else expected
            with np.errstate(invalid="ignore"):
                masked = masked | (values < lo) | (values > hi)
        assert np.array_equal(np.ma.getmaskarray(got), masked), (
            f"cf-python: {name}: masked points differ from open_mfdataset's "
            f"({int(np.ma.count_masked(got))} vs {int(masked.sum())})"
        )
        valid = ~masked
        a, b = np.ma.getdata(got)[valid], expected[valid]
        if a.dtype.kind == b.dtype.kind == "f":
            a = a.astype(b.dtype)
        assert np.array_equal(a, b), f"cf-python: {name}: values differ"


def _crosscheck_cfa(
    entry: Series, record: ProductRecord, files: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cfa product through our engine, cfapyx and cf-python, each against ``open_mfdataset``.

    The product names its fragments by absolute ``file://`` URIs, so where it is read from
    does not matter: cfapyx and cf-python run from ``tmp_path`` (both resolve relative URIs
    against the working directory, see docs/research/cfa_zarr.md 3.1-3.2)."""
    import xarray as xr

    kw = _mfdataset_kw(entry.mfdataset)
    decode = {"decode_times": kw["decode_times"], "decode_timedelta": False}
    path = record.path
    _conventions_names_cf_1_13(path)

    # 1. ours, as users open it
    with (
        xr.open_dataset(path, engine="padocc_cfa", **decode) as prod,
        xr.open_mfdataset(sorted(files), **kw) as ref,
    ):
        _compare(prod, ref, "padocc_cfa")

    run_dir = tmp_path / "elsewhere"
    run_dir.mkdir()
    monkeypatch.chdir(run_dir)

    # 2. cfapyx: it does not apply xarray's character-array decoding (a char variable keeps
    #    its trailing length dimension), so both sides are compared as raw char arrays
    _third_party("cfapyx")
    raw_chars = {**decode, "concat_characters": False}

    def cfapyx() -> None:
        with (
            xr.open_dataset(path, engine="CFA", **raw_chars) as prod,
            xr.open_mfdataset(sorted(files), **{**kw, "concat_characters": False}) as ref,
        ):
            _compare(prod, ref, "cfapyx")

    failure = _expect_failure(entry, "cfapyx", cfapyx)
    if failure is not None and failure.evidence is not None:
        failure.evidence(path, files)

    # 3. cf-python
    cf = _third_party("cf")

    def cf_python(target: str) -> Callable[[], None]:
        def read() -> None:
            fields = cf.read(target)
            with (
                xr.open_mfdataset(sorted(files), **kw) as ref,
                xr.open_mfdataset(
                    sorted(files), **{**kw, "mask_and_scale": False, "decode_times": False}
                ) as raw,
            ):
                _cf_python_values(fields, ref, raw, target)

        return read

    failure = _expect_failure(entry, "cf-python", cf_python(path))
    if failure is not None and failure.evidence is not None:
        failure.evidence(path, files)
    if failure is not None and failure.strip_global_attrs:
        import netCDF4

        copy = run_dir / "without-attrs.nc"
        shutil.copyfile(path, copy)
        with netCDF4.Dataset(copy, "a") as ds:
            for name in failure.strip_global_attrs:
                ds.delncattr(name)
        cf_python(str(copy))()


# ---------------------------------------------------------------------------------------------
# the test over the table
# ---------------------------------------------------------------------------------------------
@pytest.mark.realdata
@pytest.mark.parametrize("entry", SERIES, ids=_ids())
def test_series(
    entry: Series, realdata: Path, write_group, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    group, outcomes = _run(entry, realdata, write_group, tmp_path)
    pid = entry.id
    assert outcomes, "no phase ran"
    assert outcomes[0].phase == "init" and outcomes[0].status == "done", _describe(outcomes)
    files = _manifest_files(group, pid)
    assert len(files) == entry.n_files, files
    assert all(Path(f).is_relative_to(realdata / "series" / entry.dataset) for f in files)
    row = api.status(group)[0]

    if entry.outcome == "pass":
        assert [o.phase for o in outcomes] == PHASES, _describe(outcomes)
        assert all(o.status == "done" for o in outcomes), _describe(outcomes)
        report = api.report(group, pid)
        assert report["verdict"] == "pass", report["findings"]
        assert report["summary"]["error"] == 0
        assert report["summary"]["files"] == entry.n_files
        assert report["summary"]["values_compared"] > 0
        assert row["state"] == "done" and row["product"]["status"] == "valid", row
        item = project_paths(group.work_dir, pid).catalog / "item.json"
        assert item.is_file()
        state = json.loads(project_paths(group.work_dir, pid).state.read_text())
        product = current_product(state)
        assert product is not None and product["kind"] == entry.config.get("product", {}).get(
            "kind", "kerchunk"
        )
        record = ProductRecord.from_dict({k: product[k] for k in ProductRecord.__dataclass_fields__})
        if record.kind == "cfa":
            _crosscheck_cfa(entry, record, files, tmp_path, monkeypatch)
        elif record.kind == "zarr":
            _crosscheck_zarr(record, files, entry.mfdataset)
        else:
            assert not entry.readers, "third-party reader expectations are for cfa products"
            _crosscheck(record, files, entry.mfdataset)
        return

    # an expected failure: the named phase fails, with the kind and a message naming the cause
    expected_phases = PHASES[: PHASES.index(entry.outcome) + 1]
    assert [o.phase for o in outcomes] == expected_phases, _describe(outcomes)
    assert all(o.status == "done" for o in outcomes[:-1]), _describe(outcomes)
    failed = outcomes[-1]
    assert failed.status == "failed", _describe(outcomes)
    assert failed.error_kind == entry.error_kind, _describe(outcomes)
    missing = [rx for rx in entry.message if not re.search(rx, failed.message)]
    assert not missing, f"the message does not name {missing}:\n{failed.message}"
    assert row["state"] == "failed" and row["phase"] == entry.outcome, row
    assert row["reason"] == failed.message and row["error_kind"] == entry.error_kind


# ---------------------------------------------------------------------------------------------
# evidence, from the files alone, that each expected failure's reason is true
# ---------------------------------------------------------------------------------------------
def _nc(path: Path) -> Any:
    import netCDF4

    ds = netCDF4.Dataset(path)
    ds.set_auto_maskandscale(False)
    return ds


@pytest.mark.realdata
def test_esacci_t0_hull_masks_as_each_file(realdata: Path) -> None:
    """The evidence for esacci-soilmoisture-daily: no file's t0 valid_range fits another's
    values, and their hull masks exactly the stored values each file's own range masks."""
    from padocc_like.references.ranges import bounds, declared_range, range_hull

    files = sorted((realdata / "series" / "esacci-soilmoisture-daily").glob("*.nc"))
    declared, stored = [], []
    for f in files:
        with _nc(f) as ds:
            v = ds["t0"]
            declared.append(declared_range({k: v.getncattr(k) for k in v.ncattrs()}))
            t0 = np.asarray(v[:])
            stored.append(t0[t0 != v._FillValue])
    lo1, hi1 = bounds(declared[0])
    day2 = stored[1]
    assert day2.size and np.all((day2 > hi1) | (day2 < lo1)), "day 1's range would mask all of day 2"
    hull = range_hull(declared)
    assert hull is not None
    hull_lo, hull_hi = bounds(hull)
    assert (hull_lo, hull_hi) == (bounds(declared[0])[0], bounds(declared[-1])[1])
    masked_somewhere = 0
    for own, values in zip(declared, stored, strict=True):
        lo, hi = bounds(own)
        by_own = (values < lo) | (values > hi)
        by_hull = (values < hull_lo) | (values > hull_hi)
        assert np.array_equal(by_own, by_hull)
        masked_somewhere += int(by_own.sum())
    assert masked_somewhere == 17  # 10957.5 in 2000-01-01: outside its own range and the hull


def _shf(path: Path) -> tuple[list[int], bool]:
    with _nc(path) as ds:
        v = ds["SHF"]
        return list(v.chunking()), bool(v.filters()["shuffle"])


def _why_cesm_ctrl(d: Path) -> None:
    info = {p.name: _shf(p) for p in sorted(d.glob("*.nc"))}
    chunks = {n: tuple(c) for n, (c, _) in info.items()}
    assert chunks.pop(f"{CTRL}.210001-220012.nc") == (1212, 2, 2)
    assert set(chunks.values()) == {(1200, 2, 2)}
    no_shuffle = sorted(n for n, (_, s) in info.items() if not s)
    assert no_shuffle == [f"{CTRL}.150001-159912.nc", f"{CTRL}.160001-169912.nc"]


def _why_cesm_rcp85(d: Path) -> None:
    a, b = (_shf(d / f"{RCP}.{s}.nc") for s in ("200601-208012", "208101-210012"))
    assert a == ([900, 2, 2], True) and b == ([240, 2, 2], True)


def _why_cesm_multi(d: Path) -> None:
    names = {}
    for p in sorted(d.glob("*.nc")):
        with _nc(p) as ds:
            names[p.name] = set(ds.variables)
    o2 = names[f"{MULTI}.SHF-NO2-O2.050001-050012.nc"]
    po4 = names[f"{MULTI}.SHF-NO2-PO4.050001-050012.nc"]
    assert o2 - po4 == {"O2"} and po4 - o2 == {"PO4"}
    # and the shared variables repeat for the same months (a merge, not a concatenation)
    with (
        _nc(d / f"{MULTI}.SHF-NO2-O2.050001-050012.nc") as a,
        _nc(d / f"{MULTI}.SHF-NO2-PO4.050001-050012.nc") as b,
    ):
        assert np.array_equal(a["time"][:], b["time"][:])


def _why_mpi(model: str, var: str) -> Callable[[Path], None]:
    def check(d: Path) -> None:
        folder = d / MPI / model
        with (
            _nc(folder / f"hist0001_{model}_data_2d_mm_18500101_18501231.nc") as a,
            _nc(folder / f"hist0001_{model}_monitoring_ym_18500101_18501231.nc") as b,
        ):
            assert var in a.variables and var not in b.variables
            assert set(a.variables) != set(b.variables)

    return check


def _why_hadgem(d: Path) -> None:
    import cftime

    with _nc(d / f"{HAD}_208012-209912.nc") as a, _nc(d / f"{HAD}_209912-212411.nc") as b:
        ta = cftime.num2date(a["time"][-1], a["time"].units, a["time"].calendar)
        tb = cftime.num2date(b["time"][0], b["time"].units, b["time"].calendar)
        assert a["time"].calendar == "360_day"
        assert ta == tb == cftime.Datetime360Day(2099, 12, 16)
        # not even a harmless duplicate: the two files disagree about that month
        assert not np.array_equal(a["tas"][-1], b["tas"][0])


def _why_cesm_multi_cfa(d: Path) -> None:
    import cftime

    _why_cesm_multi(d)

    def months(ds: Any) -> set[Any]:
        t = ds["time"]
        return set(cftime.num2date(t[:], t.units, t.calendar))

    files = sorted(d.glob("*.nc"))
    with _nc(d / f"{MULTI}.SHF-TEMP-SiO3.050001-050012.nc") as temp:
        temp_months = months(temp)
    holders: dict[str, list[str]] = {"SHF": [], "TEMP": [], "SiO3": []}
    all_months: set[Any] = set()
    for p in files:
        with _nc(p) as ds:
            all_months |= months(ds)
            for name in holders:
                if name in ds.variables and months(ds) == temp_months:
                    holders[name].append(p.name)
    # SHF for the 0500 months is in three files: fragments would overlap
    assert len(holders["SHF"]) == 3, holders
    # TEMP and SiO3 are in one file only, which lacks months the others have
    assert holders["TEMP"] == holders["SiO3"] == [f"{MULTI}.SHF-TEMP-SiO3.050001-050012.nc"]
    assert all_months - temp_months, "the 0501 files add months TEMP and SiO3 have no file for"


def _why_mpi_cfa(model: str, var: str) -> Callable[[Path], None]:
    def check(d: Path) -> None:
        import cftime

        _why_mpi(model, var)(d)
        folder = d / MPI / model
        with (
            _nc(folder / f"hist0001_{model}_data_2d_mm_18500101_18501231.nc") as a,
            _nc(folder / f"hist0001_{model}_monitoring_ym_18500101_18501231.nc") as b,
        ):
            ta, tb = a["time"], b["time"]
            assert (len(ta), len(tb)) == (12, 1)
            monthly = cftime.num2date(ta[:], ta.units, getattr(ta, "calendar", "standard"))
            yearly = cftime.num2date(tb[:], tb.units, getattr(tb, "calendar", "standard"))
            # the yearly step is December's stamp: 11 monthly steps have no monitoring value
            assert list(yearly) == [monthly[-1]]

    return check


WHY: dict[str, Callable[[Path], None]] = {
    "cesm-le-ctrl-SHF": _why_cesm_ctrl,
    "cesm-le-rcp85-SHF": _why_cesm_rcp85,
    "cesm-multi-variables": _why_cesm_multi,
    "mpi-ge-hist0001-hamocc": _why_mpi("hamocc", "co2flux"),
    "mpi-ge-hist0001-mpiom": _why_mpi("mpiom", "sst"),
    "cmip5-HadGEM2-ES-tas": _why_hadgem,
    "cesm-multi-variables-cfa": _why_cesm_multi_cfa,
    "mpi-ge-hist0001-hamocc-cfa": _why_mpi_cfa("hamocc", "co2flux"),
    "mpi-ge-hist0001-mpiom-cfa": _why_mpi_cfa("mpiom", "sst"),
    "cmip5-HadGEM2-ES-tas-cfa": _why_hadgem,
}
FAILING = [s for s in SERIES if s.outcome != "pass"]


@pytest.mark.realdata
def test_every_expected_failure_has_evidence(realdata: Path) -> None:
    assert realdata.is_dir()
    assert sorted(WHY) == sorted(s.id for s in FAILING)


def test_every_kerchunk_failure_has_a_cfa_project() -> None:
    """The issue: every series Kerchunk cannot represent exactly gets a cfa project, with an
    exact product or a precise error."""
    ids = {s.id for s in SERIES}
    kerchunk_failures = {s.id for s in FAILING if "product" not in s.config}
    assert not sorted(f"{i}-cfa" for i in kerchunk_failures if f"{i}-cfa" not in ids)


@pytest.mark.realdata
@pytest.mark.parametrize("entry", FAILING, ids=[s.id for s in FAILING])
def test_failure_reason_is_true(entry: Series, realdata: Path) -> None:
    WHY[entry.id](realdata / "series" / entry.dataset)
