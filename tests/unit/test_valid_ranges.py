"""Valid ranges that differ between files: their hull, and the proof that it masks as each
file does (``padocc_like.references.ranges``), in the combiner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from padocc_like.errors import AggregationError
from padocc_like.references.combine import CombineOptions, combine
from padocc_like.references.ranges import bounds, declared_range, range_hull, unmasked_by_hull
from padocc_like.scanners.hdf5 import HDF5Scanner

FILL = -9999.0


def write_day(path: Path, day: int, t0: np.ndarray, ranges: dict[str, Any], static_range: Any = None) -> Path:
    """A daily file like ESA CCI soil moisture's: ``t0(time, lat, lon)`` observation times
    with a per-file valid range, and a static ``land(lat, lon)``."""
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("time", None)
        ds.createDimension("lat", t0.shape[0])
        ds.createDimension("lon", t0.shape[1])
        t = ds.createVariable("time", "f8", ("time",))
        t.units, t.calendar = "days since 1970-01-01", "standard"
        t[:] = [day]
        v = ds.createVariable("t0", "f8", ("time", "lat", "lon"), fill_value=FILL)
        v.units = "days since 1970-01-01"
        for key, value in ranges.items():
            v.setncattr(key, value)
        v.set_auto_maskandscale(False)
        v[0] = t0
        land = ds.createVariable("land", "i1", ("lat", "lon"))
        if static_range is not None:
            land.valid_range = static_range
        land[:] = 1
    return path


def _day_values(day: int, n: int = 6) -> np.ndarray:
    values = day + np.linspace(-0.4, 0.4, n * n).reshape(n, n)
    values[0, 0] = FILL
    return values


def _combine(paths: list[Path], **options: Any):
    scans = [HDF5Scanner()(str(p)) for p in paths]
    return combine(scans, CombineOptions(concat_dims=("time",), **options))


# --- the hull and its proof ----------------------------------------------------------------------


def test_bounds_follow_netcdf4_precedence() -> None:
    assert bounds({}) == (-np.inf, np.inf)
    assert bounds({"valid_range": [1, 5]}) == (1.0, 5.0)
    assert bounds({"valid_range": [1, 5], "valid_min": 2}) == (2.0, 5.0)
    assert bounds({"valid_max": np.float32(3)}) == (-np.inf, 3.0)


def test_hull_keeps_attribute_types_and_refuses_mixed_declarations() -> None:
    hull = range_hull([{"valid_range": [0, 10]}, {"valid_range": [5, 20]}])
    assert hull == {"valid_range": [0, 20]} and all(type(x) is int for x in hull["valid_range"])
    hull = range_hull([{"valid_range": np.array([0.5, 1.5])}, {"valid_range": np.array([1.5, 2.5])}])
    assert hull is not None and hull["valid_range"].tolist() == [0.5, 2.5]
    assert hull["valid_range"].dtype == np.float64
    assert range_hull([{"valid_min": 3, "valid_max": 4}, {"valid_min": 1, "valid_max": 2}]) == {
        "valid_min": 1,
        "valid_max": 4,
    }
    assert range_hull([{"valid_range": [0, 1]}, {"valid_min": 0}]) is None
    assert range_hull([{"valid_range": [0, 1]}, {}]) is None


@settings(max_examples=200, deadline=None)
@given(
    own=st.tuples(st.integers(-50, 50), st.integers(0, 30)),
    other=st.tuples(st.integers(-50, 50), st.integers(0, 30)),
    values=st.lists(st.integers(-100, 100), min_size=1, max_size=40),
    fill=st.sampled_from([None, -100, 0]),
)
def test_unmasked_by_hull_counts_exactly_the_points_masked_differently(own, other, values, fill) -> None:
    """The count is the number of non-missing values whose mask under the hull differs from
    their mask under the file's own range: zero exactly when the hull is exact."""
    own_range = {"valid_range": [own[0], own[0] + own[1]]}
    hull = range_hull([own_range, {"valid_range": [other[0], other[0] + other[1]]}])
    assert hull is not None
    stored = np.array(values, dtype="f8")
    count, example = unmasked_by_hull(stored, own_range, hull, [fill])
    lo, hi = bounds(own_range)
    hlo, hhi = bounds(hull)
    differ = ((stored < lo) | (stored > hi)) != ((stored < hlo) | (stored > hhi))
    if fill is not None:
        differ &= stored != fill
    assert count == int(differ.sum())
    assert (example is None) == (count == 0)
    if count:
        assert example in stored[differ]


# --- in the combiner ----------------------------------------------------------------------------


@pytest.mark.parametrize("fragments", [False, True])
def test_per_day_ranges_merge_into_their_hull(tmp_path: Path, fragments: bool) -> None:
    """ESA CCI's t0: [day-0.5, day+0.5] per file, every value inside its own day. The product
    declares [first-0.5, last+0.5] and says so in a note."""
    paths = [
        write_day(tmp_path / f"d{day}.nc", day, _day_values(day), {"valid_range": [day - 0.5, day + 0.5]})
        for day in (3239, 3238, 3240)
    ]
    agg = _combine(paths, fragments=fragments)
    assert agg.variables["t0"].attrs["valid_range"] == [3237.5, 3240.5]
    assert any("'t0'" in n and "hull" in n for n in agg.notes), agg.notes


def test_a_value_the_hull_would_unmask_is_refused(tmp_path: Path) -> None:
    """Day 3239's file holds 3238.0, outside its own range (masked by CF readers) but inside the
    hull: one product range cannot mask it; the error names the file, the count and a value."""
    odd = _day_values(3239)
    odd[2, 3] = 3238.0
    a = write_day(tmp_path / "a.nc", 3238, _day_values(3238), {"valid_range": [3237.5, 3238.5]})
    b = write_day(tmp_path / "b.nc", 3239, odd, {"valid_range": [3238.5, 3239.5]})
    for fragments in (False, True):
        with pytest.raises(AggregationError) as err:
            _combine([a, b], fragments=fragments)
        msg = str(err.value)
        assert "'t0'" in msg and "valid_range" in msg and str(b) in msg, msg
        assert "1 stored values" in msg and "3238.0" in msg, msg


def test_values_outside_both_the_file_and_the_hull_are_fine(tmp_path: Path) -> None:
    """Like 10957.5 in ESA CCI's 2000-01-01 file: masked by its own range and by the hull."""
    high = _day_values(3239)
    high[1, 1] = 3239.5 + 1e-6
    a = write_day(tmp_path / "a.nc", 3238, _day_values(3238), {"valid_range": [3237.5, 3238.5]})
    b = write_day(tmp_path / "b.nc", 3239, high, {"valid_range": [3238.5, 3239.5]})
    assert _combine([a, b]).variables["t0"].attrs["valid_range"] == [3237.5, 3239.5]


def test_ranges_declared_differently_are_refused(tmp_path: Path) -> None:
    a = write_day(tmp_path / "a.nc", 3238, _day_values(3238), {"valid_range": [3237.5, 3238.5]})
    b = write_day(tmp_path / "b.nc", 3239, _day_values(3239), {"valid_min": 3238.5})
    with pytest.raises(AggregationError, match=r"different attributes") as err:
        _combine([a, b])
    assert str(a) in str(err.value) and str(b) in str(err.value)


def test_a_static_variable_keeps_needing_one_range(tmp_path: Path) -> None:
    """A variable without a concatenation dim is referenced from one file: its range must agree."""
    a = write_day(tmp_path / "a.nc", 3238, _day_values(3238), {}, static_range=np.int8([0, 1]))
    b = write_day(tmp_path / "b.nc", 3239, _day_values(3239), {}, static_range=np.int8([0, 2]))
    with pytest.raises(AggregationError, match=r"'land'.*valid_range"):
        _combine([a, b])


def test_declared_range_reads_only_range_attributes() -> None:
    assert declared_range({"units": "K", "valid_min": 1, "scale_factor": 2.0}) == {"valid_min": 1}


# --- through the pipeline: validation proves the hull, and catches a wrong one ---------------------


def _project(tmp_path: Path, write_group, kind: str) -> Any:
    from padocc_like import api

    for day in (3238, 3239, 3240):
        write_day(
            tmp_path / "days" / f"d{day}.nc", day, _day_values(day), {"valid_range": [day - 0.5, day + 0.5]}
        )
    path = write_group(f"""
group: ranges
work_dir: {tmp_path / "work"}
profile: serial
projects:
  - id: p
    sources: {{glob: days/*.nc}}
    product: {{kind: {kind}}}
""")
    return api.open_group(path)


@pytest.fixture
def day_files(tmp_path: Path) -> Path:
    (tmp_path / "days").mkdir()
    return tmp_path / "days"


@pytest.mark.parametrize("kind", ["kerchunk", "cfa"])
def test_validation_proves_the_hull_and_refuses_another_range(
    tmp_path: Path, write_group, day_files: Path, kind: str
) -> None:
    """The product validates with the hull allowed (every file's values re-read); a product
    declaring the first file's range instead (masking the other days in CF readers) fails."""
    from padocc_like import api

    group = _project(tmp_path, write_group, kind)
    outcomes = api.run(group, ["init", "scan", "compute", "validate"])
    assert all(o.status == "done" for o in outcomes), outcomes
    report = api.report(group, "p")
    assert report["verdict"] == "pass", report["findings"]
    allowed = [f for f in report["findings"] if f.get("variable") == "t0" and "hull" in f["message"]]
    assert allowed and allowed[0]["severity"] == "allowed", report["findings"]
    assert "3 files" in allowed[0]["message"]

    product = Path(api.status(group)[0]["product"]["path"])
    if kind == "kerchunk":
        import json

        doc = json.loads(product.read_text())
        zattrs = json.loads(doc["refs"]["t0/.zattrs"])
        assert zattrs["valid_range"] == [3237.5, 3240.5]
        zattrs["valid_range"] = [3237.5, 3238.5]
        doc["refs"]["t0/.zattrs"] = json.dumps(zattrs)
        product.write_text(json.dumps(doc))
    else:
        with netCDF4.Dataset(product, "a") as nc:
            assert nc["t0"].valid_range.tolist() == [3237.5, 3240.5]
            nc["t0"].valid_range = np.array([3237.5, 3238.5])
    api.run(group, ["validate"], force=True)
    report = api.report(group, "p")
    assert report["verdict"] == "fail"
    errors = [f for f in report["findings"] if f["severity"] == "error"]
    assert any(f.get("variable") == "t0" and "hull" in f["message"] for f in errors), errors


def test_validation_finds_a_value_the_hull_shows(tmp_path: Path) -> None:
    """Validation's own proof (written apart from the combiner's): a product declaring the
    hull is refused when a file holds a value inside it that the file's own range masks."""
    from padocc_like.validation.checks import _check_range_hull
    from padocc_like.validation.values import read_source

    odd = _day_values(3239)
    odd[2, 3] = 3238.0
    a = write_day(tmp_path / "a.nc", 3238, _day_values(3238), {"valid_range": [3237.5, 3238.5]})
    b = write_day(tmp_path / "b.nc", 3239, odd, {"valid_range": [3238.5, 3239.5]})
    sources = [read_source(str(p))[0] for p in (a, b)]
    finding = _check_range_hull("t0", {"valid_range": [3237.5, 3239.5]}, sources)
    assert finding is not None and finding.severity.value == "error"
    assert str(b) in finding.message and "1 stored values" in finding.message and "3238.0" in finding.message
    assert _check_range_hull("land", {}, sources) is None  # no range, nothing to say
