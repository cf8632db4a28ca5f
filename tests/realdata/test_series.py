"""Every multi-file series in ``realdata/series`` through every phase, with the outcome it deserves.

Each entry of :data:`SERIES` is one project: a glob into a dataset folder (read in place,
never copied), optional project configuration, and the expected outcome, either

* ``pass``: every phase is done, the validation verdict is ``pass`` (every value of every
  file compared, raw and decoded) and, independently of our validator, the product opened
  with xarray's kerchunk engine (a ``cfa`` product: with its writer's ``open_dataset``)
  equals ``xarray.open_mfdataset`` of the sources; or
* a failed phase, its error kind and regexes that must **all** match the message, so the
  message provably names the real cause (the files and the variable or dimension).

Unconfigured projects come first for each dataset (the default must be right); where an
operator would reasonably configure the project (drop a variable, split by stream or at an
overlap) a second entry shows the configured project passing. ``test_failure_reason_is_true``
re-derives every expected failure's cause from the files with netCDF4 alone, so an
expectation cannot just mirror what the package happens to say.

Entries marked ``FIX`` in their ``why`` fail until the package bug they describe is fixed;
they assert the correct behaviour on purpose (nothing here is xfail).

Run: ``pytest tests/realdata -q -p no:cacheprovider --realdata``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from padocc_like import api
from padocc_like.state.store import current_product, project_paths
from padocc_like.writers.base import ProductRecord, get_writer

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


SERIES: list[Series] = [
    # --- ESA CCI soil moisture: 3 consecutive days, then 2000-01-01 -------------------------
    Series(
        "esacci-soilmoisture-daily",
        "esacci-soilmoisture-daily",
        "*.nc",
        4,
        "scan",
        "inconsistent-sources",
        (
            r"variable 't0'",
            r"valid_range",
            *_q(f"{CCI}-19781114000000-fv02.2.nc", f"{CCI}-19781115000000-fv02.2.nc"),
        ),
        why="t0 (observation time) has valid_range [day-0.5, day+0.5] per file; every valid t0 "
        "of one day lies outside another day's range, so one product attribute would mask "
        "them all in CF readers (netCDF4-python)",
    ),
    Series(
        "esacci-soilmoisture-daily-drop-t0",
        "esacci-soilmoisture-daily",
        "*.nc",
        4,
        "pass",
        config={"variables": {"drop": ["t0"]}},
        mfdataset={"drop_variables": ["t0"]},
        why="without t0 the four days (and the 21-year gap) concatenate exactly; sm is "
        "int16 packed with a float32 scale_factor and decodes equal",
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
        "grid are stored in the aggregation file",
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
        why="two fragments of 900 and 240 steps, whatever their chunk shapes",
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
def _open_product(record: ProductRecord, **kw: Any) -> Any:
    """A Kerchunk product with xarray's kerchunk engine; a cfa product as its writer opens it
    (our ``padocc_cfa`` engine: no other reader resolves every CF-1.13 URI correctly)."""
    import xarray as xr

    if record.kind == "cfa":
        return get_writer(record.kind).open_dataset(record, **kw)
    return xr.open_dataset(record.path, engine="kerchunk", storage_options={"remote_protocol": "file"}, **kw)


def _crosscheck(record: ProductRecord, files: list[str], options: dict[str, Any]) -> None:
    import xarray as xr

    coder = xr.coders.CFDatetimeCoder(use_cftime=True)
    kw: dict[str, Any] = {
        "combine": "by_coords",
        "data_vars": "minimal",
        "coords": "minimal",
        "compat": "equals",  # variables without a concat dim must be equal in every file
        "join": "exact",
        "decode_times": coder,
        "decode_timedelta": False,
        "parallel": False,
        **options,
    }
    with (
        _open_product(record, decode_times=coder, decode_timedelta=False) as prod,
        xr.open_mfdataset(sorted(files), **kw) as ref,
    ):
        assert set(prod.variables) == set(ref.variables)
        assert dict(prod.sizes) == dict(ref.sizes)
        for name in prod.variables:
            a, b = np.asarray(prod[name].values), np.asarray(ref[name].values)
            assert prod[name].dims == ref[name].dims, name
            assert a.shape == b.shape, name
            if a.dtype.kind == "f" and b.dtype.kind == "f":
                # JSON attributes carry no float32 type, so a float32 scale_factor decodes
                # as float64 through the product: compare in the sources' type
                assert a.dtype.itemsize >= b.dtype.itemsize, name
                same = np.array_equal(a.astype(b.dtype), b, equal_nan=True)
                assert same, f"{name}: values differ"
            else:
                assert a.dtype.kind == b.dtype.kind, (name, a.dtype, b.dtype)
                assert bool(np.all(a == b)), f"{name}: values differ"


# ---------------------------------------------------------------------------------------------
# the test over the table
# ---------------------------------------------------------------------------------------------
@pytest.mark.realdata
@pytest.mark.parametrize("entry", SERIES, ids=_ids())
def test_series(entry: Series, realdata: Path, write_group, tmp_path: Path) -> None:
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


def _why_esacci(d: Path) -> None:
    day1, day2 = (d / f"{CCI}-1978111{k}000000-fv02.2.nc" for k in (4, 5))
    with _nc(day1) as a, _nc(day2) as b:
        r1, r2 = np.asarray(a["t0"].valid_range), np.asarray(b["t0"].valid_range)
        assert not np.array_equal(r1, r2)
        t0 = np.asarray(b["t0"][:])
        valid = t0[t0 != b["t0"]._FillValue]
        assert valid.size and np.all((valid > r1[1]) | (valid < r1[0])), (
            "day 2's observation times would all be masked by day 1's valid_range"
        )


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


WHY: dict[str, Callable[[Path], None]] = {
    "esacci-soilmoisture-daily": _why_esacci,
    "cesm-le-ctrl-SHF": _why_cesm_ctrl,
    "cesm-le-rcp85-SHF": _why_cesm_rcp85,
    "cesm-multi-variables": _why_cesm_multi,
    "mpi-ge-hist0001-hamocc": _why_mpi("hamocc", "co2flux"),
    "mpi-ge-hist0001-mpiom": _why_mpi("mpiom", "sst"),
    "cmip5-HadGEM2-ES-tas": _why_hadgem,
}
FAILING = [s for s in SERIES if s.outcome != "pass"]


@pytest.mark.realdata
def test_every_expected_failure_has_evidence(realdata: Path) -> None:
    assert realdata.is_dir()
    assert sorted(WHY) == sorted(s.id for s in FAILING)


@pytest.mark.realdata
@pytest.mark.parametrize("entry", FAILING, ids=[s.id for s in FAILING])
def test_failure_reason_is_true(entry: Series, realdata: Path) -> None:
    WHY[entry.id](realdata / "series" / entry.dataset)
