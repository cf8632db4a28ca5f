"""The ``padocc_cfa`` xarray engine against NumPy truth arrays.

Every aggregation file here is written by the helpers below with netCDF4 (fragments plus
the aggregation file), for each reader case of research/cfa_zarr.md section 1.11 (items
1-13; remote schemes through fsspec's ``memory://``), the 2024 drafts and CFA-0.6.2.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import fsspec
import netCDF4
import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from padocc_like.cfa import (
    CFABackendEntrypoint,
    FragmentError,
    FragmentNotFoundError,
    InvalidAggregationError,
    TermSet,
    parse_aggregation,
    resolve_uri,
)
from padocc_like.errors import ConfigError, ErrorKind

ENGINE = "padocc_cfa"
FILL = np.float32(1e20)

Var = tuple[tuple[str, ...], Any, dict[str, Any]]
"""A netCDF variable to write: dimensions, data (array, masked array or str), attributes."""

TERMS = {
    TermSet.CF_1_13: {
        "map": "map",
        "uris": "uris",
        "identifiers": "identifiers",
        "unique_values": "unique_values",
    },
    TermSet.DRAFT_2024_11: {
        "map": "map",
        "uris": "location",
        "identifiers": "identifier",
        "unique_values": "unique_value",
    },
    TermSet.DRAFT_2024_05: {
        "map": "shape",
        "uris": "location",
        "identifiers": "address",
        "unique_values": "value",
    },
    TermSet.CFA_0_6_2: {"map": "location", "uris": "file", "identifiers": "address"},
}


# --- writing files ----------------------------------------------------------------------
def write_nc(
    path: Path, variables: dict[str, Var], dims: dict[str, int] | None = None, **gattrs: Any
) -> Path:
    """A netCDF4 file; dimension lengths come from the data or from ``dims`` (in that order)."""
    lengths = dict(dims or {})
    for vdims, data, _ in variables.values():
        lengths.update(zip(vdims, np.shape(data), strict=True))
    path.parent.mkdir(parents=True, exist_ok=True)
    with netCDF4.Dataset(path, "w") as ds:
        ds.setncatts({"Conventions": "CF-1.13", **gattrs})
        for d, n in lengths.items():
            ds.createDimension(d, n)
        for name, (vdims, data, attrs) in variables.items():
            *groups, vname = name.strip("/").split("/")
            grp = ds
            for g in groups:
                grp = grp.groups.get(g) or grp.createGroup(g)
            attrs = dict(attrs)
            fill = attrs.pop("_FillValue", None)
            is_str = isinstance(data, str) or np.asarray(data).dtype.kind in "OU"
            var = grp.createVariable(vname, str if is_str else np.asarray(data).dtype, vdims, fill_value=fill)
            var.setncatts(attrs)
            var.set_auto_scale(False)  # raw values are written as given (packed data)
            if np.ma.isMaskedArray(data):  # netCDF4 ignores the mask when not scaling
                data = data.filled(fill if fill is not None else netCDF4.default_fillvals[data.dtype.str[1:]])
            var[...] = np.asarray(data, dtype=object) if is_str and vdims else data
    return path


def map_array(sizes: Sequence[Sequence[int]]) -> np.ma.MaskedArray:
    """The ``map``: one row of fragment sizes per dimension, padded with missing values."""
    width = max(len(s) for s in sizes)
    table = np.ma.masked_all((len(sizes), width), dtype=np.int32)
    for r, row in enumerate(sizes):
        table[r, : len(row)] = row
    return table


def blocks(sizes: Sequence[Sequence[int]]) -> dict[tuple[int, ...], tuple[slice, ...]]:
    """Fragment index -> the hyperslab it fills."""
    offsets = [np.concatenate([[0], np.cumsum(s)]) for s in sizes]
    return {
        index: tuple(slice(int(o[k]), int(o[k + 1])) for o, k in zip(offsets, index, strict=True))
        for index in itertools.product(*(range(len(s)) for s in sizes))
    }


Hook = Callable[[tuple[int, ...], np.ndarray, dict[str, Any]], tuple[np.ndarray, dict[str, Any]]]


def write_fragments(
    directory: Path,
    truth: np.ndarray,
    sizes: Sequence[Sequence[int]],
    dims: tuple[str, ...],
    *,
    variable: str | Callable[[tuple[int, ...]], str] = "tas",
    attrs: dict[str, Any] | None = None,
    hook: Hook | None = None,
    omit_size1: bool = False,
) -> np.ndarray:
    """One file per fragment of ``truth``; returns their paths (object array, fragment shape)."""
    paths = np.empty(tuple(len(s) for s in sizes), dtype=object)
    for index, where in blocks(sizes).items():
        data, fattrs = truth[where], dict(attrs if attrs is not None else {"_FillValue": FILL, "units": "K"})
        if hook is not None:
            data, fattrs = hook(index, data, fattrs)
        fdims = dims
        if omit_size1:
            fdims = tuple(d for d, n in zip(dims, data.shape, strict=True) if n != 1)
            data = data.reshape(tuple(n for n in data.shape if n != 1))
        name = variable(index) if callable(variable) else variable
        tag = "_".join(map(str, index)) or "scalar"
        paths[index] = write_nc(directory / f"frag_{tag}.nc", {name: (fdims, data, fattrs)})
    return paths


def aggregation_variables(
    name: str,
    dims: tuple[str, ...],
    sizes: Sequence[Sequence[int]],
    *,
    uris: np.ndarray | None = None,
    identifiers: str | np.ndarray = "tas",
    unique_values: np.ndarray | None = None,
    attrs: dict[str, Any] | None = None,
    dtype: Any = np.float32,
    terms: TermSet = TermSet.CF_1_13,
) -> dict[str, Var]:
    """An aggregation variable and its fragment-array variables, in the given term set."""
    fdims = tuple(f"f_{name}_{d}" for d in dims)
    term = TERMS[terms]
    out: dict[str, Var] = {}
    if dims:
        out[f"{name}_map"] = ((f"j_{name}", f"i_{name}"), map_array(sizes), {"_FillValue": np.int32(-1)})
    else:
        out[f"{name}_map"] = ((), np.int32(1), {})
    features = {term["map"]: f"{name}_map"}
    if unique_values is not None:
        out[f"{name}_values"] = (fdims, unique_values, {})
        features[term["unique_values"]] = f"{name}_values"
    else:
        assert uris is not None
        out[f"{name}_uris"] = (fdims, uris, {})
        ids = np.asarray(identifiers, dtype=object)
        out[f"{name}_ids"] = (fdims if ids.ndim else (), ids if ids.ndim else str(identifiers), {})
        features.update({term["uris"]: f"{name}_uris", term["identifiers"]: f"{name}_ids"})
        if terms is TermSet.CFA_0_6_2:
            out[f"{name}_format"] = ((), "nc", {})
            features["format"] = f"{name}_format"
    var_attrs = {"_FillValue": FILL, "units": "K", **(attrs or {})}
    var_attrs["aggregated_dimensions"] = " ".join(dims)
    var_attrs["aggregated_data"] = " ".join(f"{k}: {v}" for k, v in features.items())
    out[name] = ((), np.asarray(var_attrs.get("_FillValue", 0), dtype=dtype), var_attrs)
    return out


def relative_uris(paths: np.ndarray, start: Path) -> np.ndarray:
    """Relative-path URI references from directory ``start``."""
    import os

    return np.vectorize(lambda p: os.path.relpath(p, start), otypes=[object])(paths)


def simple_aggregation(
    tmp: Path,
    truth: np.ndarray,
    sizes: Sequence[Sequence[int]],
    dims: tuple[str, ...] = ("time", "lat", "lon"),
    *,
    uri: Callable[[np.ndarray, Path], np.ndarray] = relative_uris,
    agg_dir: str = ".",
    **fragment_kw: Any,
) -> Path:
    """Fragments of ``truth`` in ``tmp/frag``, an aggregation file of ``tas`` in ``tmp/agg_dir``."""
    dims = dims[: truth.ndim]
    paths = write_fragments(tmp / "frag", truth, sizes, dims, **fragment_kw)
    target = tmp / agg_dir / "agg.nca"
    target.parent.mkdir(parents=True, exist_ok=True)
    variables = aggregation_variables("tas", dims, sizes, uris=uri(paths, target.parent))
    return write_nc(target, variables, dims=dict(zip(dims, truth.shape, strict=True)))


def open_cfa(path: Path | str, **kw: Any) -> xr.Dataset:
    return xr.open_dataset(path, engine=ENGINE, **kw)


def values(path: Path | str, name: str = "tas", **kw: Any) -> np.ndarray:
    with open_cfa(path, **kw) as ds:
        return ds[name].values


def assert_same(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal dtype, shape and values (NaN equals NaN)."""
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    np.testing.assert_array_equal(actual, expected, strict=True)


def field(shape: tuple[int, ...], *, masked: bool = True, seed: int = 0) -> np.ndarray:
    """Distinct float32 values, with a few NaNs (missing) when ``masked``."""
    data = np.random.default_rng(seed).permutation(np.prod(shape)).reshape(shape).astype(np.float32) / 4 + 200
    if masked and data.size > 3:
        data.ravel()[:: max(3, data.size // 5)] = np.nan
    return data


def netcdf_nan(data: np.ndarray) -> np.ndarray:
    """``data`` with NaN written as the fill value (how fragments store missing values)."""
    return np.where(np.isnan(data), FILL, data).astype(data.dtype)


def _fill(
    index: tuple[int, ...], data: np.ndarray, attrs: dict[str, Any]
) -> tuple[np.ndarray, dict[str, Any]]:
    return netcdf_nan(data), attrs


# --- 1, 2: fragment layouts ------------------------------------------------------------
@pytest.mark.parametrize(
    "sizes", [[[30] * 12], [[90, 270]], [[31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]]]
)
def test_time_aggregation_uniform_and_uneven(tmp_path: Path, sizes: list[list[int]]) -> None:
    length = sum(sizes[0])
    truth = field((length, 3, 4))
    path = simple_aggregation(tmp_path, truth, [*sizes, [3], [4]], hook=_fill)
    assert_same(values(path), truth)
    with open_cfa(path) as ds:
        assert ds["tas"].attrs["units"] == "K"
        assert "aggregated_data" not in ds["tas"].attrs
        assert set(ds.variables) == {"tas"}  # fragment-array variables are hidden


def test_multidimensional_fragments_and_slicing_across_boundaries(tmp_path: Path) -> None:
    truth = field((6, 5, 4))
    sizes = [[2, 4], [3, 2], [1, 3]]  # 2x2x2 fragments of unequal sizes
    path = simple_aggregation(tmp_path, truth, sizes, hook=_fill)
    with open_cfa(path) as ds:
        da = ds["tas"]
        for key in [
            (slice(1, 5), slice(2, 4), slice(0, 2)),
            (slice(None, None, 2), slice(None), slice(1, None)),
            (slice(5, 0, -2), slice(4, 1, -1), slice(None, None, -1)),
            (3, slice(1, 4), 1),
            (0, 0, 0),
            (slice(2, 2), slice(None), slice(None)),
        ]:
            assert_same(np.asarray(da[key].values), truth[key])
        # outer (orthogonal) indexing with unsorted, repeated indices
        picked = da.isel(time=[5, 0, 2, 2], lat=[4, 1], lon=[3, 0, 1]).values
        assert_same(picked, truth[np.ix_([5, 0, 2, 2], [4, 1], [3, 0, 1])])
        # vectorised indexing (pointwise)
        points = da.isel(
            time=xr.DataArray([0, 5, 3]), lat=xr.DataArray([4, 0, 2]), lon=xr.DataArray([3, 0, 1])
        )
        assert_same(points.values, truth[[0, 5, 3], [4, 0, 2], [3, 0, 1]])


def test_twelve_by_two_by_two_fragments_with_unequal_latitudes(tmp_path: Path) -> None:
    truth = field((24, 9, 4))
    path = simple_aggregation(tmp_path, truth, [[2] * 12, [4, 5], [2, 2]], hook=_fill)
    assert parse_aggregation(path).aggregations["tas"].fragments.shape == (12, 2, 2)
    assert_same(values(path), truth)
    with open_cfa(path) as ds:
        assert_same(ds["tas"][3:21, 2:7, 1:3].values, truth[3:21, 2:7, 1:3])


# --- 3, 4: URIs ----------------------------------------------------------------------------
def test_relative_uris_resolve_against_the_aggregation_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    truth = field((8, 3))
    path = simple_aggregation(tmp_path, truth, [[5, 3], [3]], agg_dir="aggs/deeper", hook=_fill)
    with netCDF4.Dataset(path) as ds:
        assert ds["tas_uris"][...].ravel().tolist() == ["../../frag/frag_0_0.nc", "../../frag/frag_1_0.nc"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert_same(values(path), truth)
    # the same with a relative aggregation path given from the new working directory
    assert_same(values(Path("..") / "aggs" / "deeper" / "agg.nca"), truth)


def test_relative_uris_in_the_same_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    truth = field((6,), masked=False)
    paths = write_fragments(tmp_path, truth, [[2, 4]], ("time",), hook=_fill)
    names = np.array([p.name for p in paths], dtype=object)
    path = write_nc(
        tmp_path / "agg.nca", aggregation_variables("tas", ("time",), [[2, 4]], uris=names), dims={"time": 6}
    )
    monkeypatch.chdir(tmp_path.parent)
    assert_same(values(path), truth)


@pytest.mark.parametrize(
    "to_uri",
    [
        lambda p: p.as_uri(),  # file:///abs
        lambda p: "file://localhost" + p.as_posix(),
        lambda p: str(p),  # bare /abs: accepted when reading
    ],
    ids=["file-uri", "file-localhost", "bare-absolute-path"],
)
def test_absolute_uris(tmp_path: Path, to_uri: Callable[[Path], str]) -> None:
    truth = field((7, 2))
    absolute = lambda paths, _: np.vectorize(to_uri, otypes=[object])(paths)  # noqa: E731
    path = simple_aggregation(tmp_path, truth, [[3, 4], [2]], uri=absolute, hook=_fill)
    assert_same(values(path), truth)


def test_resolve_uri_rules(tmp_path: Path) -> None:
    base = str(tmp_path / "a" / "agg.nca")
    assert resolve_uri("x.nc", base) == str(tmp_path / "a" / "x.nc")
    assert resolve_uri("../b/x.nc", base) == str(tmp_path / "b" / "x.nc")
    assert resolve_uri("sub/x%20y.nc", base) == str(tmp_path / "a" / "sub" / "x y.nc")
    assert resolve_uri("file:///d/x.nc", base) == "/d/x.nc"
    assert resolve_uri("file://localhost/d/x.nc", base) == "/d/x.nc"
    assert resolve_uri("/d/x.nc", base) == "/d/x.nc"
    assert resolve_uri("s3://bucket/x.nc", base) == "s3://bucket/x.nc"
    assert resolve_uri("https://host/x.nc", base) == "https://host/x.nc"
    assert resolve_uri("x.nc", "https://host/p/agg.nca") == "https://host/p/x.nc"
    assert resolve_uri("../q/x.nc", "s3://bucket/p/agg.nca") == "s3://bucket/q/x.nc"
    assert resolve_uri("/q/x.nc", "s3://bucket/p/agg.nca") == "s3://bucket/q/x.nc"
    with pytest.raises(ValueError, match="names host 'otherhost'"):
        resolve_uri("file://otherhost/d/x.nc", base)


@pytest.fixture
def memory_fs() -> Any:
    fs = fsspec.filesystem("memory")
    yield fs
    if fs.exists("/cfa-test"):
        fs.rm("/cfa-test", recursive=True)


def test_remote_fragments_and_aggregation_through_fsspec(tmp_path: Path, memory_fs: Any) -> None:
    """Remote schemes go through fsspec (here its in-memory filesystem, no network)."""
    truth = field((5, 3))
    paths = write_fragments(tmp_path, truth, [[2, 3], [3]], ("time", "lat"), hook=_fill)
    for p in paths.ravel():
        memory_fs.pipe(f"/cfa-test/frag/{p.name}", p.read_bytes())
        p.unlink()
    absolute = np.array([[f"memory://cfa-test/frag/{p.name}"] for p in paths.ravel()], dtype=object)
    local = write_nc(
        tmp_path / "abs.nca",
        aggregation_variables("tas", ("time", "lat"), [[2, 3], [3]], uris=absolute),
        dims={"time": 5, "lat": 3},
    )
    assert_same(values(local, storage_options={}), truth)
    # a remote aggregation file with relative URIs: resolved against its own URL
    relative = np.array([[f"../frag/{p.name}"] for p in paths.ravel()], dtype=object)
    remote = write_nc(
        tmp_path / "rel.nca",
        aggregation_variables("tas", ("time", "lat"), [[2, 3], [3]], uris=relative),
        dims={"time": 5, "lat": 3},
    )
    memory_fs.pipe("/cfa-test/aggs/rel.nca", remote.read_bytes())
    assert_same(values("memory://cfa-test/aggs/rel.nca"), truth)


# --- 5, 6: identifiers and omitted dimensions ---------------------------------------------
@pytest.mark.parametrize(
    ("variable", "identifiers"),
    [
        ("tas", "tas"),
        ("tas", "/tas"),
        ("grp/tas", "/grp/tas"),
        ("t_air", "t_air"),
    ],
)
def test_scalar_identifiers(tmp_path: Path, variable: str, identifiers: str) -> None:
    truth = field((6, 2))
    paths = write_fragments(tmp_path, truth, [[3, 3], [2]], ("time", "lat"), variable=variable, hook=_fill)
    agg = aggregation_variables(
        "tas", ("time", "lat"), [[3, 3], [2]], uris=relative_uris(paths, tmp_path), identifiers=identifiers
    )
    assert_same(values(write_nc(tmp_path / "agg.nca", agg, dims={"time": 6, "lat": 2})), truth)


def test_per_fragment_identifiers(tmp_path: Path) -> None:
    truth = field((9,), masked=False)
    names = {(0,): "t_air", (1,): "tas", (2,): "/grp/temperature"}
    paths = write_fragments(
        tmp_path, truth, [[3, 4, 2]], ("time",), variable=lambda i: names[i].lstrip("/"), hook=_fill
    )
    ids = np.array([names[(k,)] for k in range(3)], dtype=object)
    agg = aggregation_variables(
        "tas", ("time",), [[3, 4, 2]], uris=relative_uris(paths, tmp_path), identifiers=ids
    )
    assert_same(values(write_nc(tmp_path / "agg.nca", agg, dims={"time": 9})), truth)


@pytest.mark.parametrize("named", [True, False], ids=["dimension-names", "sizes-only"])
def test_fragments_that_omit_size_one_dimensions(tmp_path: Path, named: bool) -> None:
    truth = field((4, 1, 3, 5))  # time, level (size 1), lat, lon
    sizes = [[1, 1, 2], [1], [3], [2, 3]]  # fragments of one time step omit time too

    def rename(
        index: tuple[int, ...], data: np.ndarray, attrs: dict[str, Any]
    ) -> tuple[np.ndarray, dict[str, Any]]:
        return netcdf_nan(data), attrs

    dims = ("time", "level", "lat", "lon")
    paths = write_fragments(tmp_path / "frag", truth, sizes, dims, hook=rename, omit_size1=True)
    if not named:  # fragment dimension names unrelated to the aggregated ones: matched by size
        for p in paths.ravel():
            with netCDF4.Dataset(p, "a") as ds:
                for d in list(ds.dimensions):
                    ds.renameDimension(d, f"x_{d}")
    with netCDF4.Dataset(paths[0, 0, 0, 0]) as ds:
        assert ds["tas"].ndim == 2  # time and level omitted
    agg = aggregation_variables("tas", dims, sizes, uris=relative_uris(paths, tmp_path))
    path = write_nc(tmp_path / "agg.nca", agg, dims=dict(zip(dims, truth.shape, strict=True)))
    assert_same(values(path), truth)
    with open_cfa(path) as ds:
        assert_same(ds["tas"][1:3, 0, 1:, 1:4].values, truth[1:3, 0, 1:, 1:4])


def test_fragment_with_a_shape_that_does_not_fit_is_refused(tmp_path: Path) -> None:
    truth = field((6, 2))
    paths = write_fragments(tmp_path, truth, [[3, 3], [2]], ("time", "lat"), hook=_fill)
    write_nc(paths[1, 0], {"tas": (("time", "lat"), np.zeros((3, 4), np.float32), {})})
    agg = aggregation_variables("tas", ("time", "lat"), [[3, 3], [2]], uris=relative_uris(paths, tmp_path))
    path = write_nc(tmp_path / "agg.nca", agg, dims={"time": 6, "lat": 2})
    with pytest.raises(
        FragmentError, match=r"agg\.nca: aggregation variable 'tas', fragment \(1, 0\).*shape \(3, 4\)"
    ):
        values(path)


# --- 7, 8: canonical form -------------------------------------------------------------------
def test_reference_time_units_are_converted(tmp_path: Path) -> None:
    days = np.arange(150.5, 160.5, 1.0)  # days since 2001-01-01

    def in_hours(
        index: tuple[int, ...], data: np.ndarray, attrs: dict[str, Any]
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if index == (1,):
            return (data - 151) * 24, {"units": "hours since 2001-06-01", "calendar": "gregorian"}
        return data, attrs

    paths = write_fragments(
        tmp_path,
        days,
        [[4, 6]],
        ("time",),
        variable="time",
        attrs={"units": "days since 2001-01-01"},
        hook=in_hours,
    )
    attrs = {"units": "days since 2001-01-01", "calendar": "standard", "_FillValue": np.nan}
    agg = aggregation_variables(
        "time",
        ("time",),
        [[4, 6]],
        uris=relative_uris(paths, tmp_path),
        identifiers="time",
        attrs=attrs,
        dtype=np.float64,
    )
    path = write_nc(tmp_path / "agg.nca", agg, dims={"time": 10})
    assert_same(values(path, "time", decode_times=False), days)
    import cftime

    with open_cfa(path, decode_times=xr.coders.CFDatetimeCoder(use_cftime=True)) as ds:
        assert ds["time"].values[4] == cftime.DatetimeGregorian(2001, 6, 4, 12)  # from the hours fragment


@pytest.mark.parametrize(
    ("have", "want", "match"),
    [
        ("degC", "K", "units 'degC' differ from the aggregation variable's 'K'"),
        ("months since 2001-01-01", "days since 2001-01-01", "fixed lengths"),
    ],
)
def test_other_unit_differences_are_refused(tmp_path: Path, have: str, want: str, match: str) -> None:
    truth = field((4,), masked=False)
    paths = write_fragments(tmp_path, truth, [[2, 2]], ("time",), attrs={"units": want})
    write_nc(paths[1], {"tas": (("time",), truth[2:], {"units": have})})
    agg = aggregation_variables(
        "tas", ("time",), [[2, 2]], uris=relative_uris(paths, tmp_path), attrs={"units": want}
    )
    path = write_nc(tmp_path / "agg.nca", agg, dims={"time": 4})
    with pytest.raises(
        FragmentError, match=rf"agg\.nca: aggregation variable 'tas', fragment \(1,\).*{match}"
    ):
        values(path)


def test_calendars_must_agree(tmp_path: Path) -> None:
    paths = write_fragments(
        tmp_path, np.arange(4.0), [[2, 2]], ("time",), attrs={"units": "days since 2000-01-01"}
    )
    write_nc(
        paths[1],
        {"tas": (("time",), np.arange(2.0), {"units": "hours since 2000-02-01", "calendar": "360_day"})},
    )
    agg = aggregation_variables(
        "tas",
        ("time",),
        [[2, 2]],
        uris=relative_uris(paths, tmp_path),
        attrs={"units": "days since 2000-01-01"},
        dtype=np.float64,
    )
    with pytest.raises(FragmentError, match="calendar '360_day' differs"):
        values(write_nc(tmp_path / "agg.nca", agg, dims={"time": 4}), decode_times=False)


def test_fragment_dtype_fill_value_and_packing_differ(tmp_path: Path) -> None:
    """Fragment 0: int16 packed with its own _FillValue; 1: float64 with missing_value; 2: as the aggregation."""
    truth = np.array([280.5, np.nan, 281.25, 279.0, np.nan, 300.0, 250.5, 251.0], dtype=np.float32)

    def vary(
        index: tuple[int, ...], data: np.ndarray, attrs: dict[str, Any]
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if index == (0,):
            scale, offset = np.float32(0.25), np.float32(250.0)
            packed = np.where(np.isnan(data), -999, np.round((np.nan_to_num(data) - offset) / scale)).astype(
                np.int16
            )
            return packed, {
                "_FillValue": np.int16(-999),
                "scale_factor": scale,
                "add_offset": offset,
                "units": "K",
            }
        if index == (1,):
            return np.where(np.isnan(data), -1.0, data).astype(np.float64), {
                "missing_value": -1.0,
                "units": "K",
            }
        return netcdf_nan(data), attrs

    paths = write_fragments(tmp_path, truth, [[3, 3, 2]], ("time",), hook=vary)
    with netCDF4.Dataset(paths[0]) as ds:
        assert ds["tas"].dtype == np.int16
    agg = aggregation_variables("tas", ("time",), [[3, 3, 2]], uris=relative_uris(paths, tmp_path))
    path = write_nc(tmp_path / "agg.nca", agg, dims={"time": 8})
    assert_same(values(path), truth)
    raw = values(path, mask_and_scale=False)  # missing values became the aggregation's _FillValue
    assert_same(raw, netcdf_nan(truth))


def test_integer_aggregation_of_float_fragments(tmp_path: Path) -> None:
    truth = np.array([1, 2, -7, 4, 5], dtype=np.int32)

    def as_float(
        index: tuple[int, ...], data: np.ndarray, attrs: dict[str, Any]
    ) -> tuple[np.ndarray, dict[str, Any]]:
        return np.where(data == -7, np.nan, data.astype(np.float64)), {"_FillValue": np.nan}

    paths = write_fragments(tmp_path, truth, [[2, 3]], ("time",), hook=as_float)
    agg = aggregation_variables(
        "tas",
        ("time",),
        [[2, 3]],
        uris=relative_uris(paths, tmp_path),
        attrs={"_FillValue": np.int32(-7)},
        dtype=np.int32,
    )
    path = write_nc(tmp_path / "agg.nca", agg, dims={"time": 5})
    assert_same(values(path, mask_and_scale=False), truth)
    assert_same(values(path), np.array([1, 2, np.nan, 4, 5]))


def test_packed_aggregation_variable(tmp_path: Path) -> None:
    """The aggregation variable is int16 packed, so its canonical form is packed too: fragment 0
    is packed alike, 1 is unpacked float32, 2 is packed differently; all come back as the
    aggregation's stored values, and xarray unpacks them after assembly."""
    packing = {"scale_factor": np.float32(0.5), "add_offset": np.float32(100.0)}
    stored = np.array([-3, 7, 0, 12, 5, -1, 30000, 4], dtype=np.int16)
    physical = stored.astype(np.float32) * packing["scale_factor"] + packing["add_offset"]

    def vary(
        index: tuple[int, ...], data: np.ndarray, attrs: dict[str, Any]
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if index == (1,):
            return physical[3:6], {}
        if index == (2,):
            return ((physical[6:] - 50) / 2).astype(np.int32), {"scale_factor": 2.0, "add_offset": 50.0}
        return data, dict(packing)

    paths = write_fragments(tmp_path, stored, [[3, 3, 2]], ("time",), hook=vary)
    agg = aggregation_variables(
        "tas",
        ("time",),
        [[3, 3, 2]],
        uris=relative_uris(paths, tmp_path),
        attrs={"_FillValue": np.int16(-32767), **packing},
        dtype=np.int16,
    )
    path = write_nc(tmp_path / "agg.nca", agg, dims={"time": 8})
    assert_same(values(path, mask_and_scale=False), stored)
    assert_same(values(path), physical)


def test_string_aggregation(tmp_path: Path) -> None:
    labels = np.array(["jan", "feb", "mar", "apr", "may"], dtype=object)
    paths = write_fragments(tmp_path, labels, [[2, 3]], ("time",), variable="label", attrs={})
    agg = aggregation_variables(
        "label", ("time",), [[2, 3]], uris=relative_uris(paths, tmp_path), identifiers="label"
    )
    agg["label"] = ((), "", {k: v for k, v in agg["label"][2].items() if k.startswith("aggregated_")})
    path = write_nc(tmp_path / "agg.nca", agg, dims={"time": 5})
    assert values(path, "label").tolist() == labels.tolist()


# --- 9, 10, 11: unique values, scalars, coordinates ----------------------------------------
def test_unique_values_with_a_missing_fragment(tmp_path: Path) -> None:
    sizes = [[2, 3], [2, 2]]
    constants = np.ma.masked_array(np.array([[1.5, 2.5], [0.0, 4.0]], np.float32), mask=[[0, 0], [1, 0]])
    truth = np.empty((5, 4), np.float32)
    for index, where in blocks(sizes).items():
        truth[where] = np.nan if constants.mask[index] else constants[index]
    agg = aggregation_variables("tas", ("time", "lat"), sizes, unique_values=constants)
    path = write_nc(tmp_path / "agg.nca", agg, dims={"time": 5, "lat": 4})
    assert_same(values(path), truth)
    with open_cfa(path, mask_and_scale=False) as ds:
        assert ds["tas"].values[2, 0] == FILL  # wholly missing: the _FillValue
    # a value equal to the aggregation variable's _FillValue is missing too
    constants = np.ma.masked_array(np.array([[1.5, 2.5], [FILL, 4.0]], np.float32))
    agg = aggregation_variables("tas", ("time", "lat"), sizes, unique_values=constants)
    assert_same(values(write_nc(tmp_path / "agg2.nca", agg, dims={"time": 5, "lat": 4})), truth)


def test_scalar_aggregation(tmp_path: Path) -> None:
    paths = write_fragments(tmp_path, np.float32(287.5), [], ())
    agg = aggregation_variables("tas", (), [], uris=relative_uris(paths, tmp_path))
    path = write_nc(tmp_path / "agg.nca", agg)
    assert_same(values(path), np.array(287.5, np.float32))
    with open_cfa(path, chunks={}) as ds:
        assert ds["tas"].shape == ()
        assert float(ds["tas"]) == 287.5
    constant = aggregation_variables("tas", (), [], unique_values=np.float32(3.0))
    assert_same(values(write_nc(tmp_path / "const.nca", constant)), np.array(3.0, np.float32))


def test_aggregated_coordinate_and_bounds_variables(tmp_path: Path) -> None:
    time = np.arange(0.5, 9.5)
    bounds = np.stack([time - 0.5, time + 0.5], axis=1)
    truth = field((9, 2))
    sizes = [[4, 5]]
    time_paths = write_fragments(tmp_path / "t", time, sizes, ("time",), variable="time", attrs={})
    bnds_paths = write_fragments(
        tmp_path / "b", bounds, [*sizes, [2]], ("time", "bnds"), variable="time_bnds", attrs={}
    )
    tas_paths = write_fragments(tmp_path / "x", truth, [*sizes, [2]], ("time", "lat"), hook=_fill)
    time_attrs = {
        "units": "days since 2001-01-01",
        "calendar": "standard",
        "bounds": "time_bnds",
        "_FillValue": np.nan,
    }
    variables = {
        **aggregation_variables(
            "time",
            ("time",),
            sizes,
            uris=relative_uris(time_paths, tmp_path),
            identifiers="time",
            attrs=time_attrs,
            dtype=np.float64,
        ),
        **aggregation_variables(
            "time_bnds",
            ("time", "bnds"),
            [*sizes, [2]],
            uris=relative_uris(bnds_paths, tmp_path),
            identifiers="time_bnds",
            attrs={"_FillValue": np.nan, "units": "days since 2001-01-01"},
            dtype=np.float64,
        ),
        **aggregation_variables(
            "tas", ("time", "lat"), [*sizes, [2]], uris=relative_uris(tas_paths, tmp_path)
        ),
        "lat": (("lat",), np.array([-45.0, 45.0]), {"units": "degrees_north"}),
    }
    path = write_nc(tmp_path / "agg.nca", variables, dims={"time": 9, "bnds": 2})
    with open_cfa(path, decode_times=False) as ds:
        assert "time" in ds.indexes
        assert_same(ds["time"].values, time)
        assert_same(ds["time_bnds"].values, bounds)
        assert_same(ds["tas"].values, truth)
        assert_same(ds["lat"].values, np.array([-45.0, 45.0]))
    with open_cfa(path) as ds:
        assert ds["time"].values[0] == np.datetime64("2001-01-01T12:00")
        assert ds["time_bnds"].values[8, 1] == np.datetime64("2001-01-10")


# --- 12: rejection ----------------------------------------------------------------------------
def _valid(tmp_path: Path) -> tuple[dict[str, Var], dict[str, int]]:
    truth = field((6,), masked=False)
    paths = write_fragments(tmp_path, truth, [[2, 4]], ("time",))
    return aggregation_variables("tas", ("time",), [[2, 4]], uris=relative_uris(paths, tmp_path)), {"time": 6}


def _refused(path: Path, match: str) -> InvalidAggregationError:
    with pytest.raises(InvalidAggregationError, match=match) as info:
        open_cfa(path)
    with pytest.raises(InvalidAggregationError, match=match):
        parse_aggregation(path)
    assert info.value.code == "cfa-invalid-aggregation"
    assert info.value.to_dict()["kind"] == str(ErrorKind.PRODUCT)
    return info.value


def test_non_scalar_aggregation_variable_is_refused(tmp_path: Path) -> None:
    variables, dims = _valid(tmp_path)
    attrs = variables["tas"][2]
    variables["tas"] = (("time",), np.zeros(6, np.float32), attrs)
    path = write_nc(tmp_path / "bad.nca", variables, dims=dims)
    _refused(
        path,
        r"bad\.nca: aggregation variable 'tas': an aggregation variable must be scalar, but it has dimensions \('time',\)",
    )


@pytest.mark.parametrize(
    ("aggregated_data", "match"),
    [
        (
            "map: tas_map uris: tas_uris identifiers: tas_ids unique_values: tas_uris",
            r"bad feature set \{identifiers, map, unique_values, uris\}",
        ),
        ("map: tas_map uris: tas_uris", r"bad feature set \{map, uris\}"),
        ("Map: tas_map Uris: tas_uris Identifiers: tas_ids", r"unknown term set \{Identifiers, Map, Uris\}"),
        (
            "shape: tas_map file: tas_uris format: tas_ids address: tas_ids",
            r"unknown term set \{address, file, format, shape\}",
        ),
        ("map tas_map uris: tas_uris", "aggregated_data .* is not a list of 'feature: variable' pairs"),
        ("map: tas_map uris: nowhere identifiers: tas_ids", "its uris variable 'nowhere' does not exist"),
    ],
    ids=[
        "final-mixed",
        "final-incomplete",
        "case-sensitive",
        "april-2024-draft",
        "malformed",
        "missing-variable",
    ],
)
def test_bad_feature_sets_are_refused(tmp_path: Path, aggregated_data: str, match: str) -> None:
    variables, dims = _valid(tmp_path)
    dims_, data, attrs = variables["tas"]
    variables["tas"] = (dims_, data, {**attrs, "aggregated_data": aggregated_data})
    _refused(
        write_nc(tmp_path / "bad.nca", variables, dims=dims),
        r"bad\.nca: aggregation variable 'tas': " + match,
    )


def test_row_sum_mismatch_is_refused(tmp_path: Path) -> None:
    variables, _ = _valid(tmp_path)
    _refused(
        write_nc(tmp_path / "bad.nca", variables, dims={"time": 7}),
        r"bad\.nca: aggregation variable 'tas': map variable 'tas_map': row 0 sums to 6, but dimension 'time' has length 7",
    )


def test_fragment_count_mismatch_is_refused(tmp_path: Path) -> None:
    variables, dims = _valid(tmp_path)
    variables["tas_map"] = (("j", "i"), map_array([[2, 2, 2]]), {"_FillValue": np.int32(-1)})
    _refused(
        write_nc(tmp_path / "bad.nca", variables, dims=dims),
        r"has shape \(2,\), but the map gives \(3,\) fragments",
    )


def test_missing_value_in_uris_is_refused(tmp_path: Path) -> None:
    variables, dims = _valid(tmp_path)
    fdims, uris, _ = variables["tas_uris"]
    variables["tas_uris"] = (fdims, np.array([uris[0], ""], dtype=object), {})
    _refused(
        write_nc(tmp_path / "bad.nca", variables, dims=dims),
        r"uris variable 'tas_uris': missing value at fragment index \(1,\); URIs may not be missing",
    )


def test_bad_maps_are_refused(tmp_path: Path) -> None:
    variables, dims = _valid(tmp_path)
    variables["tas_map"] = (("j", "i"), np.array([[2.0, 4.0]]), {})
    _refused(write_nc(tmp_path / "float.nca", variables, dims=dims), "must have an integer type")
    variables["tas_map"] = (
        ("j", "i"),
        np.ma.masked_array([[2, 0, 4]], mask=[[0, 1, 0]], dtype=np.int32),
        {"_FillValue": np.int32(-1)},
    )
    _refused(write_nc(tmp_path / "gap.nca", variables, dims=dims), "padded with missing values after them")


def test_unknown_options_are_refused(tmp_path: Path) -> None:
    variables, dims = _valid(tmp_path)
    path = write_nc(tmp_path / "ok.nca", variables, dims=dims)
    with pytest.raises(ConfigError, match=r"unknown cfa_options \['chunks'\]"):
        open_cfa(path, cfa_options={"chunks": 1})


# --- 13: laziness and chunks ---------------------------------------------------------------
def test_opening_reads_no_fragment_and_reading_only_touches_what_it_needs(tmp_path: Path) -> None:
    truth = field((10, 3))
    paths = write_fragments(tmp_path / "frag", truth, [[4, 4, 2], [3]], ("time", "lat"), hook=_fill)
    time = (("time",), np.arange(10.0), {"units": "days since 2001-01-01"})
    agg = {
        **aggregation_variables(
            "tas", ("time", "lat"), [[4, 4, 2], [3]], uris=relative_uris(paths, tmp_path)
        ),
        "time": time,
    }
    path = write_nc(tmp_path / "agg.nca", agg, dims={"lat": 3})
    paths[1, 0].unlink()
    with open_cfa(path) as ds:  # one fragment is gone: opening still works
        assert_same(ds["tas"][:4].values, truth[:4])
        assert_same(ds["tas"][8:, 1:].values, truth[8:, 1:])
        with pytest.raises(
            FragmentNotFoundError,
            match=r"agg\.nca: aggregation variable 'tas', fragment \(1, 0\): no such file: '.*frag_1_0\.nc'",
        ) as info:
            ds["tas"][3:5].values  # noqa: B018
    assert info.value.code == "cfa-fragment-not-found"
    assert info.value.to_dict()["kind"] == str(ErrorKind.SOURCE_NOT_FOUND)
    for p in paths.ravel():
        p.unlink(missing_ok=True)
    with open_cfa(path, chunks={}) as ds:  # nothing is read when opening, even with dask
        assert ds["tas"].shape == (10, 3)
        with pytest.raises(FragmentNotFoundError):
            ds["tas"].values  # noqa: B018


def test_one_dask_chunk_per_fragment(tmp_path: Path) -> None:
    truth = field((10, 7, 4))
    path = simple_aggregation(tmp_path, truth, [[4, 4, 2], [3, 4], [4]], hook=_fill)
    with open_cfa(path) as ds:
        assert ds["tas"].encoding["preferred_chunks"] == {"time": 4, "lat": (3, 4), "lon": 4}
    with open_cfa(path, chunks={}) as ds:
        assert ds["tas"].chunks == ((4, 4, 2), (3, 4), (4,))
        assert_same(ds["tas"].values, truth)
        assert_same(ds["tas"][1:9:3, 2:6].values, truth[1:9:3, 2:6])


def test_aggregation_variable_in_a_group(tmp_path: Path) -> None:
    """Fragment-array variables and dimensions are found in ancestor groups (CF 2.7)."""
    truth = field((6,), masked=False)
    paths = write_fragments(tmp_path, truth, [[2, 4]], ("time",), hook=_fill)
    variables = aggregation_variables("tas", ("time",), [[2, 4]], uris=relative_uris(paths, tmp_path))
    variables["forecast/tas"] = variables.pop("tas")
    variables["forecast/height"] = ((), np.float64(2.0), {"units": "m"})
    path = write_nc(tmp_path / "agg.nca", variables, dims={"time": 6})
    with open_cfa(path, group="forecast") as ds:
        assert set(ds.variables) == {"tas", "height"}
        assert_same(ds["tas"].values, truth)
    assert parse_aggregation(path, group="/forecast").group == "/forecast"


def test_decode_cfa_false_shows_the_file_as_stored(tmp_path: Path) -> None:
    variables, dims = _valid(tmp_path)
    path = write_nc(tmp_path / "agg.nca", variables, dims=dims)
    with open_cfa(path, cfa_options={"decode_cfa": False}) as ds:
        assert ds["tas"].shape == ()
        assert {"tas_map", "tas_uris", "tas_ids"} <= set(ds.variables)
        assert ds["tas"].attrs["aggregated_dimensions"] == "time"


def test_storage_options_reach_fsspec(
    tmp_path: Path, memory_fs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    truth = field((3,), masked=False)
    paths = write_fragments(tmp_path, truth, [[3]], ("time",), hook=_fill)
    memory_fs.pipe("/cfa-test/f.nc", paths[0].read_bytes())
    agg = aggregation_variables(
        "tas", ("time",), [[3]], uris=np.array(["memory://cfa-test/f.nc"], dtype=object)
    )
    path = write_nc(tmp_path / "agg.nca", agg, dims={"time": 3})
    seen: list[dict[str, Any]] = []
    real_open = fsspec.open

    def recording_open(url: str, mode: str = "rb", **options: Any) -> Any:
        seen.append(options)
        return real_open(url, mode=mode)

    monkeypatch.setattr(fsspec, "open", recording_open)
    assert_same(values(path, storage_options={"anon": True}), truth)
    assert seen == [{"anon": True}]


def test_opened_datasets_pickle(tmp_path: Path) -> None:
    """Lazy aggregated arrays cross process boundaries (dask distributed, multiprocessing)."""
    import pickle

    truth = field((6, 2))
    path = simple_aggregation(tmp_path, truth, [[3, 3], [2]], hook=_fill)
    with open_cfa(path, chunks={}) as ds:
        assert_same(pickle.loads(pickle.dumps(ds))["tas"].values, truth)


def test_guess_can_open(tmp_path: Path) -> None:
    variables, dims = _valid(tmp_path)
    nc = write_nc(tmp_path / "agg.nc", variables, dims=dims)
    plain = write_nc(tmp_path / "plain.nc", {"x": (("x",), np.arange(3), {})})
    entry = CFABackendEntrypoint()
    assert entry.guess_can_open(nc)
    assert entry.guess_can_open(str(tmp_path / "anything.nca"))
    assert not entry.guess_can_open(plain)
    assert not entry.guess_can_open(tmp_path / "missing.nc")
    assert_same(xr.open_dataset(nc, engine=ENGINE)["tas"].values, field((6,), masked=False))


# --- legacy term sets -------------------------------------------------------------------------
@pytest.mark.parametrize("terms", [TermSet.DRAFT_2024_11, TermSet.DRAFT_2024_05, TermSet.CFA_0_6_2])
def test_legacy_term_sets(tmp_path: Path, terms: TermSet) -> None:
    truth = field((6, 2))
    paths = write_fragments(tmp_path, truth, [[2, 4], [2]], ("time", "lat"), hook=_fill)
    agg = aggregation_variables(
        "tas", ("time", "lat"), [[2, 4], [2]], uris=relative_uris(paths, tmp_path), terms=terms
    )
    path = write_nc(tmp_path / "agg.nca", agg, dims={"time": 6, "lat": 2})
    assert parse_aggregation(path).aggregations["tas"].term_set is terms
    assert_same(values(path), truth)


@pytest.mark.parametrize("terms", [TermSet.DRAFT_2024_11, TermSet.DRAFT_2024_05])
def test_draft_unique_values(tmp_path: Path, terms: TermSet) -> None:
    constants = np.ma.masked_array(np.array([7.0, 8.0], np.float32))
    agg = aggregation_variables("tas", ("time",), [[2, 1]], unique_values=constants, terms=terms)
    path = write_nc(tmp_path / "agg.nca", agg, dims={"time": 3})
    assert_same(values(path), np.array([7.0, 7.0, 8.0], np.float32))


def test_cfa_0_6_2_features(tmp_path: Path) -> None:
    """Upper-case terms, ``${base}`` substitutions, alternative locations, a wholly missing
    fragment and a fragment stored in the aggregation file itself."""
    truth = field((8, 2), masked=False)
    sizes = [[2, 2, 2, 2], [2]]
    write_fragments(tmp_path / "data", truth, sizes, ("time", "lat"), hook=_fill)
    files = np.full((4, 1, 2), "", dtype=object)  # trailing dimension: alternative locations
    files[0, 0] = ["${base}/nowhere/frag_0_0.nc", "${base}/data/frag_0_0.nc"]  # first alternative is absent
    files[1, 0, 0] = "data/frag_1_0.nc"
    # fragment 2: wholly missing (no file, no address); fragment 3: in this file (no file, an address)
    address = np.array([["tas"], ["tas"], [""], ["local_tas"]], dtype=object)
    variables: dict[str, Var] = {
        "tas": (
            (),
            FILL,
            {
                "_FillValue": FILL,
                "aggregated_dimensions": "time lat",
                "aggregated_data": "LOCATION: loc File: files Format: fmt ADDRESS: address tracking_id: tid",
            },
        ),
        "loc": (("j", "i"), map_array(sizes), {"_FillValue": np.int32(-1)}),
        "files": (
            ("f_time", "f_lat", "versions"),
            files,
            {"substitutions": f"${{base}}: {tmp_path.as_uri()}"},
        ),
        "fmt": ((), "nc", {}),
        "address": (("f_time", "f_lat"), address, {}),
        "tid": (("f_time", "f_lat"), np.array([["a"], ["b"], ["c"], ["d"]], dtype=object), {}),
        "local_tas": (("t2", "lat"), truth[6:], {}),
    }
    path = write_nc(
        tmp_path / "agg.nca", variables, dims={"time": 8, "lat": 2}, Conventions="CF-1.10 CFA-0.6.2"
    )
    expected = truth.copy()
    expected[4:6] = np.nan
    assert_same(values(path), expected)
    with open_cfa(path) as ds:
        assert "local_tas" in ds  # the in-file fragment's variable stays an ordinary variable
        assert "files" not in ds and "tid" in ds  # non-standard terms are not fragment-array variables here
    # reader substitutions: ${base} overrides the file's definition, "data/" is a URI prefix
    (tmp_path / "moved").mkdir()
    (tmp_path / "data").rename(tmp_path / "moved" / "data")
    with pytest.raises(
        FragmentNotFoundError, match=r"no such file: '.*/nowhere/frag_0_0\.nc', '.*/data/frag_0_0\.nc'"
    ):
        values(path)
    moved = {"${base}": (tmp_path / "moved").as_uri(), "data/": "moved/data/"}
    assert_same(values(path, cfa_options={"substitutions": moved}), expected)


@pytest.mark.parametrize(
    ("substitutions", "match"),
    [("${base}: /x ${other}", "are not"), ("", "uses substitution \\$\\{base\\} that is not defined")],
)
def test_cfa_0_6_2_bad_substitutions(tmp_path: Path, substitutions: str, match: str) -> None:
    paths = write_fragments(tmp_path, np.arange(2.0), [[2]], ("time",))
    agg = aggregation_variables(
        "tas",
        ("time",),
        [[2]],
        uris=np.array(["${base}/" + paths[0].name], dtype=object),
        terms=TermSet.CFA_0_6_2,
    )
    dims_, data, _ = agg["tas_uris"]
    agg["tas_uris"] = (dims_, data, {"substitutions": substitutions} if substitutions else {})
    path = write_nc(tmp_path / "agg.nca", agg, dims={"time": 2})
    with pytest.raises((InvalidAggregationError, FragmentError), match=match):
        values(path)


def test_substitutions_are_not_allowed_in_cf_1_13(tmp_path: Path) -> None:
    variables, dims = _valid(tmp_path)
    fdims, uris, _ = variables["tas_uris"]
    variables["tas_uris"] = (fdims, uris, {"substitutions": "${a}: b"})
    _refused(
        write_nc(tmp_path / "bad.nca", variables, dims=dims),
        "has a substitutions attribute, which CF-1.13 does not allow",
    )


def test_missing_fragments_only_in_legacy_term_sets(tmp_path: Path) -> None:
    truth = field((4,), masked=False)
    paths = write_fragments(tmp_path, truth, [[2, 2]], ("time",), hook=_fill)
    uris = relative_uris(paths, tmp_path)
    uris[1] = ""
    agg = aggregation_variables(
        "tas",
        ("time",),
        [[2, 2]],
        uris=uris,
        identifiers=np.array(["tas", ""], dtype=object),
        terms=TermSet.DRAFT_2024_05,
    )
    path = write_nc(tmp_path / "agg.nca", agg, dims={"time": 4})
    assert_same(values(path), np.array([*truth[:2], np.nan, np.nan], np.float32))
    agg = aggregation_variables("tas", ("time",), [[2, 2]], uris=uris, terms=TermSet.DRAFT_2024_11)
    _refused(write_nc(tmp_path / "bad.nca", agg, dims={"time": 4}), "URIs may not be missing")


# --- property: random fragmentations, random slices -------------------------------------
@st.composite
def fragmented_arrays(draw: st.DrawFn) -> tuple[np.ndarray, list[list[int]]]:
    shape = draw(st.lists(st.integers(1, 7), min_size=1, max_size=3))
    sizes = []
    for n in shape:
        cuts = sorted(draw(st.sets(st.integers(1, n - 1), max_size=n - 1))) if n > 1 else []
        sizes.append(np.diff([0, *cuts, n]).tolist())
    seed = draw(st.integers(0, 2**16))
    return field(tuple(shape), masked=draw(st.booleans()), seed=seed), sizes


def basic_keys(shape: tuple[int, ...]) -> st.SearchStrategy[tuple[Any, ...]]:
    def one(n: int) -> st.SearchStrategy[Any]:
        bound = st.none() | st.integers(-n - 2, n + 2)
        slices = st.builds(slice, bound, bound, st.none() | st.integers(-3, 3).filter(bool))
        return slices | st.integers(-n, n - 1)

    return st.tuples(*(one(n) for n in shape))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=fragmented_arrays(), data=st.data())
def test_random_fragmentations_and_slices(
    case: tuple[np.ndarray, list[list[int]]], data: st.DataObject
) -> None:
    truth, sizes = case
    with tempfile.TemporaryDirectory() as tmp:
        path = simple_aggregation(Path(tmp), truth, sizes, hook=_fill)
        with open_cfa(path) as ds:
            da = ds["tas"]
            assert_same(da.values, truth)
            for _ in range(3):
                key = data.draw(basic_keys(truth.shape))
                assert_same(np.asarray(da[key].values), truth[key])
