"""The bad-input corpus: every file of ``realdata/singles``, alone in a project, through init,
scan, compute and validate.

Each file either yields a product that validates exact, or its project fails with a precise
error: the expected phase and error kind, and a message naming the file, the variable or
attribute (where the problem is one) and the feature. :data:`EXPECTED` holds one outcome per
file, so any change of outcome fails (a new failure, a new pass, a vaguer message); a file
added to the corpus without an entry fails with the entry to add. The files are discovered at
test time and read in place (never copied). A failure never stops other projects of the group
(:func:`test_group_of_good_and_bad_files`).

Independently of our validator, every exact product holds exactly the variables netCDF4 sees
in the file (a variable that cannot be referenced is never dropped silently), and a compact
HDF5 dataset reads its values, not zeros (kerchunk's failure).

Run: ``pytest tests/realdata/test_corpus.py -q -p no:cacheprovider --realdata``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from padocc_like import api
from padocc_like.state.store import current_product, project_paths

pytestmark = [
    pytest.mark.realdata,
    # ref_nc_test_netcdf4_4_0.nc has variables with a repeated dimension (f11(D1, D1)): netCDF
    # allows them, and xarray warns on the file itself as on the product
    pytest.mark.filterwarnings("ignore:Duplicate dimension names present:UserWarning"),
]

REALDATA = Path(
    os.environ.get("PADOCC_LIKE_REALDATA", Path(__file__).resolve().parents[3] / "shared" / "realdata")
)
SINGLES = REALDATA / "singles"
PHASES = ["init", "scan", "compute", "validate"]


@dataclass(frozen=True)
class Fails:
    """The project fails ``phase`` with ``kind``; the message names the file, ``names`` (a
    variable, an attribute or a group, quoted as the message quotes it) and ``feature``."""

    phase: str
    kind: str
    names: str | None
    feature: str
    why: str = ""

    def describe(self) -> str:
        what = f" {self.names!r}" if self.names else ""
        return f"{self.kind} at {self.phase}:{what} {self.feature}"


EXACT = "exact"
"""Every phase done, validation verdict pass without errors."""


def _scan(kind: str, names: str | None, feature: str, why: str = "") -> Fails:
    return Fails("scan", kind, names, feature, why)


def _feature(names: str | None, feature: str, why: str = "") -> Fails:
    return _scan("unsupported-feature", names, feature, why)


GROUP = "files with groups are not supported"
COMPOUND = "compound data type"
ENUM = "enum data types"
VLEN_STR = "variable-length strings"
FILTER_MASK = "skip filters of the pipeline (HDF5 filter mask)"

KT = "kerchunk-test-files/"
NC = "netcdf-c-reference-files/"
PF = "pyfive-hdf5-format-cases/"
IRIS = "iris-test-data-netcdf/"
XC = "xclim-cmip-singles/"
CCI = "esacci-singles/"

EXPECTED: dict[str, str | Fails] = {
    # --- ESA CCI -----------------------------------------------------------------------------
    # int8 packed with float32 scale_factor/add_offset: the product (JSON attributes, float64)
    # decodes in float64, compared with the source decoded with the same values in float64
    f"{CCI}19910916120000-ESACCI-L3C_GHRSST-SSTskin-AVHRR12_G-CDR2.1_night-v02.0-fv01.0.nc": EXACT,
    f"{CCI}20000302-ESACCI-L3C_AEROSOL-AER_PRODUCTS-ATSR2-ERS2-ADV_DAILY-v2.30.nc": EXACT,
    f"{CCI}ESACCI-OC-L3S-IOP-MERGED-1M_MONTHLY_4km_GEO_PML_OCx_QAA-200505-fv4.2.nc": EXACT,
    f"{CCI}ESACCI-OZONE-L3S-TC-MERGED-DLR_1M-20050501-fv0100.nc": EXACT,
    f"{CCI}ESACCI-SEASTATE-L4-SWH-MULTI_1M-200505-fv01.nc": EXACT,
    # --- iris test data --------------------------------------------------------------------------
    f"{IRIS}global/xyt/SMALL_total_column_co2.nc": EXACT,
    f"{IRIS}label_and_climate/A1B-99999a-river-sep-2070-2099.nc": EXACT,
    f"{IRIS}label_and_climate/small_FC_167_mon_19601101.nc": EXACT,
    f"{IRIS}lambert_conformal/test_lcc.nc": EXACT,
    f"{IRIS}mercator/false_east_north_merc.nc": EXACT,
    f"{IRIS}rotated/xy/rotPole_landAreaFraction.nc": EXACT,
    f"{IRIS}rotated/xyt/small_rotPole_precipitation.nc": EXACT,
    f"{IRIS}testing/small_theta_colpex.nc": EXACT,
    f"{IRIS}transverse_mercator/tmean_1910_1910.nc": EXACT,
    f"{IRIS}ugrid/21_triangle_example.nc": EXACT,
    f"{IRIS}unstructured_grid/lfric_ngvat_2D_72t_face_half_levels_main_conv_rain.nc": EXACT,
    # --- kerchunk's test files -----------------------------------------------------------------
    f"{KT}MOD14.hdf4": _scan("unsupported-format", None, "HDF4 file"),
    f"{KT}NEONDSTowerTemperatureData.hdf5": _feature("Domain_03", GROUP),
    f"{KT}air.nc": EXACT,
    f"{KT}air_linked.nc": _feature(
        "lat_hard",
        "links (hard or soft) to one HDF5 dataset",
        why="netCDF-C names the shared dimensions after one link (lat_hard, time_hard)",
    ),
    f"{KT}hdf5_compression_bitshuffle.h5": _feature("data", "'bitshuffle'"),
    f"{KT}hdf5_compression_blosc_lz4_bitshuffle.h5": EXACT,
    f"{KT}hdf5_compression_lz4.h5": _feature("data", "'lz4 (HDF5 plugin framing)'"),
    f"{KT}hdf5_compression_zstd.h5": EXACT,
    f"{KT}hdf5_mali_chunk.h5": _feature("data", FILTER_MASK),
    f"{KT}hdf5_mali_chunk2.h5": _feature("data", FILTER_MASK),
    f"{KT}hdf5_mini_blosc.h5": _feature("data", FILTER_MASK),
    f"{KT}hdf5_mini_lz4.h5": _feature("data", "'lz4 (HDF5 plugin framing)'"),
    f"{KT}hdf5_mini_shuffle_blosc.h5": _feature("data", FILTER_MASK),
    f"{KT}hdf5_mini_shuffle_zstd.h5": EXACT,
    f"{KT}hdf5_mini_zstd.h5": EXACT,
    f"{KT}vlen.h5": _feature("vlen_str", VLEN_STR),
    f"{KT}vlen2.h5": _feature("vlen_str", "compound data types"),
    # --- netCDF-C reference files --------------------------------------------------------------
    f"{NC}h5_test/ref_tst_compounds.nc": _feature("obs", "compound data types"),
    f"{NC}h5_test/ref_tst_h_compounds.h5": _feature("obs_var", "compound data types"),
    f"{NC}h5_test/ref_tst_h_compounds2.h5": _feature("The_Nutmeg_of_Consolation", COMPOUND),
    f"{NC}nc_test/bad_cdf5_begin.nc": _scan(
        "corrupt-file", "var_small", "corrupt netCDF-3 header", why="its variables overlap"
    ),
    f"{NC}nc_test/f03tst_open_mem.nc": EXACT,
    f"{NC}nc_test4/ref_hdf5_compat1.nc": EXACT,
    f"{NC}nc_test4/ref_hdf5_compat2.nc": EXACT,
    f"{NC}nc_test4/ref_hdf5_compat3.nc": _feature("phony_var", "compound data types"),
    f"{NC}nc_test4/ref_szip.h5": _feature("dset_szip", "'szip'"),
    f"{NC}nc_test4/ref_tst_compounds.nc": _feature("obs", "compound data types"),
    f"{NC}nc_test4/ref_tst_dims.nc": EXACT,  # one 4.5e9-long dimension, no variable
    f"{NC}nc_test4/ref_tst_interops4.nc": EXACT,
    f"{NC}nc_test4/ref_tst_xplatform2_1.nc": _feature(
        "We_will_sell_to_no_man_we_will_not_deny_or_defer_to_any_man_either_Justice_or_Right",
        "variable-length sequence data type",
    ),
    f"{NC}nc_test4/ref_tst_xplatform2_2.nc": _feature("Runnymede", COMPOUND),
    f"{NC}nc_test4/tdset.h5": EXACT,
    f"{NC}ncdump/ref_nc_test_netcdf4_4_0.nc": EXACT,
    f"{NC}ncdump/ref_nccopy3_subset.nc": EXACT,
    f"{NC}ncdump/ref_no_ncproperty.nc": _feature("subgroup", GROUP),
    f"{NC}ncdump/ref_null_byte_padding_test.nc": EXACT,
    f"{NC}ncdump/ref_provenance_v1.nc": _feature("subgroup", GROUP),
    f"{NC}ncdump/ref_test_360_day_1900.nc": EXACT,
    f"{NC}ncdump/ref_test_365_day_1900.nc": EXACT,
    f"{NC}ncdump/ref_test_366_day_1900.nc": EXACT,
    f"{NC}ncdump/ref_test_corrupt_magic.nc": _feature("UTC_time", VLEN_STR),
    f"{NC}ncdump/ref_tst_compounds2.nc": _feature("phony_compound_var", "compound data types"),
    f"{NC}ncdump/ref_tst_compounds3.nc": _feature("var", "compound data types"),
    f"{NC}ncdump/ref_tst_compounds4.nc": _feature("a1", COMPOUND),
    f"{NC}ncdump/ref_tst_irish_rover.nc": _feature("in_the_hold_of_the_Irish_Rover", ENUM),
    f"{NC}nctest/ref_nctest_64bit_offset.nc": EXACT,
    f"{NC}nctest/ref_nctest_classic.nc": EXACT,
    f"{NC}nczarr_test/ref_groups.h5": _feature("MyGroup", GROUP),
    f"{NC}unit_test/nctest_netcdf4_classic.nc": EXACT,
    # --- pyfive's HDF5 format cases ------------------------------------------------------------
    f"{PF}compact.hdf5": EXACT,
    f"{PF}data/attr_datatypes.hdf5": _feature("complex128_big", "complex data type"),
    f"{PF}data/btreev2.hdf5": EXACT,
    f"{PF}data/chunked.hdf5": EXACT,
    f"{PF}data/compressed.hdf5": EXACT,
    f"{PF}data/compressed_v1.hdf5": EXACT,
    f"{PF}data/dataset_datatypes.hdf5": EXACT,
    f"{PF}data/dataset_multidim.hdf5": EXACT,
    f"{PF}data/dim_scales.hdf5": _feature("dset1", "2 dimension scales attached"),
    f"{PF}data/earliest.hdf5": _feature("group1", GROUP),
    f"{PF}data/enum_h5variable.hdf5": _feature("enum_var", ENUM),
    f"{PF}data/enum_variable.hdf5": _feature("enum_var", ENUM),
    f"{PF}data/enum_variable.nc": _feature("enum_var", ENUM),
    f"{PF}data/enums_from_netcdf.nc": _feature("enum_var", ENUM),
    f"{PF}data/fillvalue_earliest.hdf5": EXACT,
    f"{PF}data/fillvalue_latest.hdf5": EXACT,
    f"{PF}data/filter_pipeline_v2.hdf5": EXACT,
    f"{PF}data/fletcher32.hdf5": EXACT,
    f"{PF}data/groups.hdf5": _feature("group1", GROUP),
    f"{PF}data/h5netcdf_test.hdf5": _feature("subgroup", GROUP),
    f"{PF}data/issue23_A.nc": EXACT,
    f"{PF}data/issue23_A_contiguous.nc": EXACT,
    f"{PF}data/issue23_B.nc": EXACT,
    f"{PF}data/latest.hdf5": _feature("group1", GROUP),
    f"{PF}data/netcdf4_classic.nc": EXACT,
    f"{PF}data/new_style_groups.hdf5": _feature("group0", GROUP),
    f"{PF}data/noy_AERmonZ_UKESM1-0-LL_piControl_r1i1p1f2_gnz_200001-200012.nc": EXACT,
    f"{PF}data/references.hdf5": _feature("group1", GROUP),
    f"{PF}data/resizable.hdf5": EXACT,
    f"{PF}opaque_datetime.hdf5": _feature("opaque_datetimes", "HDF5 opaque data type"),
    f"{PF}opaque_fixed.hdf5": _feature("opaque_data", "HDF5 opaque data type"),
    # --- xclim ---------------------------------------------------------------------------------
    f"{XC}ERA5/daily_surface_cancities_1990-1993.nc": _feature("location", VLEN_STR),
    f"{XC}cmip3/tas.sresb1.giss_model_e_r.run1.atm.da.nc": EXACT,
    f"{XC}cmip5/tas_Amon_CanESM2_rcp85_r1i1p1_200701-200712.nc": EXACT,
    f"{XC}cmip6/o3_Amon_GFDL-ESM4_historical_r1i1p1f1_gr1_185001-194912.nc": EXACT,
    f"{XC}cmip6/prsn_day_CanESM5_historical_r1i1p1f1_gn_19910101-20101231.nc": EXACT,
    f"{XC}cmip6/sic_SImon_CCCma-CanESM5_ssp245_r13i1p2f1_2020.nc": EXACT,
    f"{XC}cmip6/snw_day_CanESM5_historical_r1i1p1f1_gn_19910101-20101231.nc": EXACT,
}

SLOW = {f"{NC}nc_test4/ref_hdf5_compat1.nc"}  # 2000 variables: ~10 s


def _discover() -> list[str]:
    """Every file under ``realdata/singles``, relative to it."""
    if not SINGLES.is_dir():
        return []
    return sorted(p.relative_to(SINGLES).as_posix() for p in SINGLES.rglob("*") if p.is_file())


FILES = _discover()


def _params() -> list[Any]:
    names = sorted(set(FILES) | set(EXPECTED)) if FILES else []
    return [pytest.param(n, marks=[pytest.mark.slow] if n in SLOW else [], id=n) for n in names]


# --- running projects --------------------------------------------------------------------------
def _pid(rel: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in rel.lower()).strip("-")[-60:].strip("-")


def _run_group(write_group: Any, tmp_path: Path, rels: list[str]) -> tuple[Any, dict[str, list[Any]]]:
    body = {
        "group": "bad-input-corpus",
        "work_dir": str(tmp_path / "work"),
        "pipeline": "kerchunk",
        "projects": [{"id": _pid(r), "sources": {"files": [str(SINGLES / r)]}} for r in rels],
    }
    group = api.open_group(write_group(yaml.safe_dump(body, sort_keys=False)))
    by_project: dict[str, list[Any]] = {_pid(r): [] for r in rels}
    for outcome in api.run(group, PHASES):
        by_project[outcome.project].append(outcome)
    return group, by_project


def _describe(outcomes: list[Any]) -> str:
    return "\n".join(f"  {o.phase}: {o.status} [{o.error_kind}] {o.message}" for o in outcomes)


def _product_variables(group: Any, pid: str) -> set[str]:
    state = json.loads(project_paths(group.work_dir, pid).state.read_text())
    product = current_product(state)
    assert product is not None and product["kind"] == "kerchunk", product
    refs = json.loads(Path(product["path"]).read_text())
    refs = refs.get("refs", refs)
    return {key.rsplit("/", 1)[0] for key in refs if key.endswith("/.zarray")}


def _netcdf4_variables(path: Path) -> set[str]:
    import netCDF4

    with netCDF4.Dataset(path) as ds:
        return set(ds.variables)


def _check(group: Any, rel: str, outcomes: list[Any], expected: str | Fails) -> None:
    """The project of ``rel`` ended as ``expected``."""
    pid, path = _pid(rel), str(SINGLES / rel)
    phases = [o.phase for o in outcomes]
    row = api.project_status(group, pid)
    if expected == EXACT:
        assert phases == PHASES and all(o.status == "done" for o in outcomes), (
            f"{rel}: expected an exact product\n{_describe(outcomes)}"
        )
        report = api.report(group, pid)
        assert report["verdict"] == "pass", report["findings"]
        assert report["summary"]["error"] == 0
        assert row["last_done"] == "validate" and row["product"]["status"] == "valid", row
        # independently of the validator: no variable dropped, none invented
        assert _product_variables(group, pid) == _netcdf4_variables(SINGLES / rel), rel
        return
    assert isinstance(expected, Fails)
    assert phases == PHASES[: PHASES.index(expected.phase) + 1], (
        f"{rel}: expected {expected.describe()}\n{_describe(outcomes)}"
    )
    assert all(o.status == "done" for o in outcomes[:-1]), _describe(outcomes)
    failed = outcomes[-1]
    assert failed.status == "failed" and failed.error_kind == expected.kind, (
        f"{rel}: expected {expected.describe()}\n{_describe(outcomes)}"
    )
    message = failed.message
    assert path in message, f"{rel}: the message does not name the file: {message}"
    if expected.names is not None:
        assert f"'{expected.names}'" in message or f"[{expected.names}]" in message, (
            f"{rel}: the message does not name {expected.names!r}: {message}"
        )
    assert expected.feature in message, f"{rel}: the message does not name {expected.feature!r}: {message}"
    assert row["state"] == "failed" and row["phase"] == expected.phase, row
    assert row["error_kind"] == expected.kind and row["reason"] == message, row


# --- the tests ----------------------------------------------------------------------------------
def test_every_corpus_file_has_an_expected_outcome(realdata: Path) -> None:
    assert SINGLES.is_dir(), SINGLES
    new = [f for f in FILES if f not in EXPECTED]
    gone = [f for f in EXPECTED if f not in FILES]
    assert not new, (
        f"corpus files without an expected outcome in EXPECTED: {new}; run them and add an entry "
        "(EXACT, or Fails(phase, kind, variable, feature))"
    )
    assert not gone, f"EXPECTED names files the corpus no longer has: {gone}"


@pytest.mark.parametrize("rel", _params())
def test_corpus_file(rel: str, realdata: Path, write_group: Any, tmp_path: Path) -> None:
    if rel not in EXPECTED:
        pytest.fail(f"{rel}: a corpus file without an expected outcome; add an entry to EXPECTED")
    assert (SINGLES / rel).is_file(), f"{rel}: listed in EXPECTED but not in the corpus"
    group, by_project = _run_group(write_group, tmp_path, [rel])
    _check(group, rel, by_project[_pid(rel)], EXPECTED[rel])


GROUP_FILES = [
    f"{KT}air.nc",
    f"{NC}nc_test4/ref_szip.h5",
    f"{PF}compact.hdf5",
    f"{KT}MOD14.hdf4",
    f"{NC}nc_test/bad_cdf5_begin.nc",
    f"{KT}air_linked.nc",
    f"{NC}nctest/ref_nctest_classic.nc",
    f"{PF}data/attr_datatypes.hdf5",
]


def test_group_of_good_and_bad_files(realdata: Path, write_group: Any, tmp_path: Path) -> None:
    """Good and bad files in one group: each bad project fails with its own precise error, the
    good ones complete."""
    group, by_project = _run_group(write_group, tmp_path, GROUP_FILES)
    kinds = {EXPECTED[r] == EXACT for r in GROUP_FILES}
    assert kinds == {True, False}, "the group must mix good and bad files"
    for rel in GROUP_FILES:
        _check(group, rel, by_project[_pid(rel)], EXPECTED[rel])


def test_compact_dataset_is_not_read_as_zeros(realdata: Path, write_group: Any, tmp_path: Path) -> None:
    """A compact dataset (its data in the object header) reads its values through the product;
    kerchunk 0.2.10 reads zeros."""
    import h5py
    import xarray as xr

    rel = f"{PF}compact.hdf5"
    group, by_project = _run_group(write_group, tmp_path, [rel])
    _check(group, rel, by_project[_pid(rel)], EXACT)
    state = json.loads(project_paths(group.work_dir, _pid(rel)).state.read_text())
    with h5py.File(SINGLES / rel) as f:
        compact = [k for k, d in f.items() if d.id.get_create_plist().get_layout() == h5py.h5d.COMPACT]
        assert compact, "the file has no compact dataset"
        expected = {k: f[k][()] for k in compact}
    with xr.open_dataset(
        current_product(state)["path"],
        engine="kerchunk",
        storage_options={"remote_protocol": "file"},
        mask_and_scale=False,
    ) as prod:
        for name, values in expected.items():
            assert np.any(values != 0), name
            assert np.array_equal(prod[name].values, values), name
