"""Prove a product equals its sources, value for value.

The product is opened the way users open it (xarray, through its writer's
``open_dataset``); the sources are read independently of our scanners and
combiner: raw stored values with netCDF4-python, decoded values with xarray's
netCDF4 engine. Where each file sits in the product is found from the
*values* of its coordinates, not from anything the compute phase recorded.

Checks, each producing :class:`~.report.Finding` objects:

* ``structure``: the product opens, holds exactly the expected variables and
  dimensions, with the sources' dtypes and fill values;
* ``coverage``: every manifest file appears exactly once, the files tile the
  product without gaps or overlaps, and the product references no other file;
* ``attributes``: global and variable attributes equal the sources', apart
  from configured edits and values that vary between files (listed as allowed);
* ``values``: every raw stored value is bitwise equal and every decoded value
  equal (NaN-aware) in every file (or a sample of steps in ``sampled`` mode).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config.models import ResolvedProject
from ..types import ValidationMode
from .report import Finding, Severity

log = logging.getLogger(__name__)


@dataclass
class SourceInfo:
    url: str
    dims: dict[str, int]
    coords: dict[str, np.ndarray]  # decoded coordinate values per dimension
    attrs: dict[str, Any]
    variables: list[str]
    var_units: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    if isinstance(value, bytes | np.bytes_):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        if value.size == 1:
            return _plain(value.reshape(-1)[0])
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple):
        if len(value) == 1:
            return _plain(value[0])
        return [_plain(v) for v in value]
    return value


def attrs_equal(a: Any, b: Any) -> bool:
    """Attribute equality across readers: numbers by value (NaN equal), strings exactly."""
    a, b = _plain(a), _plain(b)
    if isinstance(a, list) or isinstance(b, list):
        if not (isinstance(a, list) and isinstance(b, list)) or len(a) != len(b):
            return False
        return all(attrs_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    if isinstance(a, bool | int | float) and isinstance(b, bool | int | float):
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
            return True
        return a == b
    return a == b


def _bitwise_equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise bitwise equality (NaN payloads included) of two same-dtype arrays."""
    a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("="))
    b = np.ascontiguousarray(b, dtype=b.dtype.newbyteorder("="))
    if a.dtype.kind in "fc":
        view = {2: np.uint16, 4: np.uint32, 8: np.uint64, 16: np.uint64}[a.dtype.itemsize]
        return a.view(view) == b.view(view)
    return a == b


def _all_equal(a: np.ndarray, b: np.ndarray) -> bool:
    """True if equal element-wise; values of incomparable types (calendars) are unequal."""
    try:
        return bool(np.all(a == b))
    except TypeError:
        return False


def _decoded_equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype.kind == "f" and b.dtype.kind == "f":
        return (a == b) | (np.isnan(a) & np.isnan(b))
    if a.dtype.kind == "M" and b.dtype.kind == "M":
        return (a == b) | (np.isnat(a) & np.isnat(b))
    return np.asarray(a == b)


def product_urls(path: str, layout: str) -> set[str]:
    """Every file URL the product's references point at."""
    if layout == "json":
        with open(path) as f:
            refs = json.load(f)["refs"]
        return {v[0] for v in refs.values() if isinstance(v, list) and v}
    import pandas as pd

    urls: set[str] = set()
    for parq in Path(path).rglob("refs.*.parq"):
        col = pd.read_parquet(parq, columns=["path"])["path"]
        urls.update(str(u) for u in col.dropna().unique())
    return urls


def _time_coder() -> Any:
    """Decode times to cftime objects always, so every calendar compares alike."""
    import xarray as xr

    return xr.coders.CFDatetimeCoder(use_cftime=True)


def read_source_info(url: str) -> SourceInfo:
    import xarray as xr

    with xr.open_dataset(
        url,
        engine="netcdf4",
        decode_times=_time_coder(),
        mask_and_scale=False,
        decode_timedelta=False,
    ) as ds:
        coords = {d: np.asarray(ds[d].values) for d in ds.dims if d in ds.variables}
        # decoded times carry their units in .encoding, not .attrs
        var_units = {v: ds[v].encoding.get("units", ds[v].attrs.get("units")) for v in ds.variables}
        return SourceInfo(url, dict(ds.sizes), coords, dict(ds.attrs), list(ds.variables), var_units)


# ---------------------------------------------------------------------------
# the checks
# ---------------------------------------------------------------------------
@dataclass
class Layout:
    concat_dims: list[str]
    ranges: dict[str, dict[str, tuple[int, int]]]  # url -> dim -> (start, stop)
    first_url: str


def check_coverage(
    product: Any, sources: list[SourceInfo], referenced: set[str]
) -> tuple[list[Finding], Layout | None]:
    """Place every file in the product by its coordinate values; check the tiling."""
    findings: list[Finding] = []
    manifest = {s.url for s in sources}
    for url in sorted(referenced - manifest):
        findings.append(
            Finding(
                "coverage",
                Severity.ERROR,
                "the product references a file that is not in the input manifest",
                file=url,
            )
        )
    concat = [d for d in product.sizes if any(s.dims.get(d) != product.sizes[d] for s in sources)]
    for s in sources:
        for d in product.sizes:
            if d not in s.dims and any(d in product[v].dims for v in s.variables if v in product.variables):
                findings.append(
                    Finding(
                        "coverage",
                        Severity.ERROR,
                        f"dimension {d!r} is not in the source",
                        file=s.url,
                    )
                )
    ranges: dict[str, dict[str, tuple[int, int]]] = {s.url: {} for s in sources}
    for d in concat:
        n_total = int(product.sizes[d])
        if d in product.variables and all(d in s.coords for s in sources):
            values = np.asarray(product[d].values)
            index: dict[Any, int] = {}
            for i, v in enumerate(values.tolist()):
                index.setdefault(v, i)
            for s in sources:
                f = s.coords[d]
                if f.size == 0:
                    continue
                try:
                    start = index.get(f.tolist()[0])
                except TypeError:  # e.g. cftime dates of different calendars
                    start = None
                if start is None:
                    findings.append(
                        Finding(
                            "coverage",
                            Severity.ERROR,
                            f"the file's {d} values ({f.tolist()[0]} ...) are not in the product (file missing from the product?)",
                            file=s.url,
                        )
                    )
                    continue
                stop = start + f.size
                seg = values[start:stop]
                if seg.shape != f.shape or not _all_equal(seg, f):
                    findings.append(
                        Finding(
                            "coverage",
                            Severity.ERROR,
                            f"the product's {d} values at {start}:{stop} differ from the file's",
                            file=s.url,
                        )
                    )
                    continue
                ranges[s.url][d] = (start, stop)
        else:  # no coordinate: files follow the manifest order
            start = 0
            for s in sources:
                n = s.dims.get(d, 0)
                ranges[s.url][d] = (start, start + n)
                start += n
            if start != n_total:
                findings.append(
                    Finding(
                        "coverage",
                        Severity.ERROR,
                        f"files hold {start} steps along {d!r} but the product has {n_total}",
                    )
                )
    placed = [s for s in sources if len(ranges[s.url]) == len(concat)]
    if concat:
        shape = tuple(int(product.sizes[d]) for d in concat)
        count = np.zeros(shape, dtype=np.int32)
        for s in placed:
            count[tuple(slice(*ranges[s.url][d]) for d in concat)] += 1
        over = int(np.count_nonzero(count > 1))
        gaps = int(np.count_nonzero(count == 0))
        if over:
            findings.append(
                Finding(
                    "coverage",
                    Severity.ERROR,
                    f"{over} positions along {concat} are covered by more than one file",
                    count=over,
                )
            )
        if gaps:
            findings.append(
                Finding(
                    "coverage",
                    Severity.ERROR,
                    f"{gaps} positions along {concat} are covered by no source file",
                    count=gaps,
                )
            )
    elif len(sources) > 1:
        findings.append(
            Finding(
                "coverage",
                Severity.ERROR,
                f"{len(sources)} files but the product is no larger than one of them",
            )
        )
    if len(placed) != len(sources) or any(f.severity is Severity.ERROR for f in findings):
        return findings, None
    first = min(placed, key=lambda s: tuple(ranges[s.url][d][0] for d in concat)).url
    findings.append(
        Finding(
            "coverage",
            Severity.INFO,
            f"{len(sources)} files tile the product along {concat or 'no dimension'} exactly once",
        )
    )
    return findings, Layout(concat, ranges, first)


def check_attributes(
    product_raw: Any,
    sources: list[SourceInfo],
    first_nc: Any,
    layout: Layout,
    project: ResolvedProject,
) -> list[Finding]:
    """Global and variable attributes against the first file, allowing configured edits."""
    findings: list[Finding] = []
    allowed = set(project.validation.allow_attribute_differences)
    edits = project.attributes

    def compare(
        scope: str,
        prod: dict[str, Any],
        src: dict[str, Any],
        varying: set[str],
        set_: dict[str, Any],
        remove: list[str],
        variable: str | None,
    ) -> None:
        for key in sorted(set(prod) | set(src) | set(set_)):
            label = key if variable is None else f"{variable}:{key}"
            if key in set_:
                if key not in prod or not attrs_equal(prod[key], set_[key]):
                    findings.append(
                        Finding(
                            "attributes",
                            Severity.ERROR,
                            f"{scope} attribute {key!r} should be set to {set_[key]!r} by configuration, product has {prod.get(key)!r}",
                            variable=variable,
                        )
                    )
                else:
                    findings.append(
                        Finding(
                            "attributes",
                            Severity.ALLOWED,
                            f"{scope} attribute {key!r} set by configuration",
                            variable=variable,
                        )
                    )
                continue
            if key in remove:
                if key in prod:
                    findings.append(
                        Finding(
                            "attributes",
                            Severity.ERROR,
                            f"{scope} attribute {key!r} should be removed by configuration",
                            variable=variable,
                        )
                    )
                continue
            equal = key in prod and key in src and attrs_equal(prod[key], src[key])
            if key in varying:
                if equal or (key not in src and key not in prod):
                    findings.append(
                        Finding(
                            "attributes",
                            Severity.ALLOWED,
                            f"{scope} attribute {key!r} varies between files; the product keeps the first file's value",
                            variable=variable,
                        )
                    )
                else:
                    findings.append(
                        Finding(
                            "attributes",
                            Severity.ERROR,
                            f"{scope} attribute {key!r} = {_short(prod.get(key))} is not the first file's value {_short(src.get(key))}",
                            variable=variable,
                        )
                    )
                continue
            if equal:
                continue
            if label in allowed:
                findings.append(
                    Finding(
                        "attributes",
                        Severity.ALLOWED,
                        f"{scope} attribute {key!r} differs (allowed by configuration)",
                        variable=variable,
                    )
                )
            elif key not in prod:
                findings.append(
                    Finding(
                        "attributes",
                        Severity.ERROR,
                        f"{scope} attribute {key!r} is missing from the product (source: {_short(src[key])})",
                        variable=variable,
                    )
                )
            elif key not in src:
                findings.append(
                    Finding(
                        "attributes",
                        Severity.ERROR,
                        f"{scope} attribute {key!r} = {_short(prod[key])} is not in the sources",
                        variable=variable,
                    )
                )
            else:
                findings.append(
                    Finding(
                        "attributes",
                        Severity.ERROR,
                        f"{scope} attribute {key!r} differs: product {_short(prod[key])}, source {_short(src[key])}",
                        variable=variable,
                    )
                )

    varying_global = {
        k
        for s in sources
        for k in set(s.attrs) | set(sources[0].attrs)
        if not (k in s.attrs and k in sources[0].attrs and attrs_equal(s.attrs[k], sources[0].attrs[k]))
    }
    src_global = {k: first_nc.getncattr(k) for k in first_nc.ncattrs()}
    compare(
        "global",
        dict(product_raw.attrs),
        src_global,
        varying_global,
        edits.global_.set,
        edits.global_.remove,
        None,
    )
    for name in product_raw.variables:
        if name not in first_nc.variables:
            continue
        var_nc = first_nc.variables[name]
        src = {k: var_nc.getncattr(k) for k in var_nc.ncattrs()}
        prod = dict(product_raw[name].attrs)
        prod.pop("_ARRAY_DIMENSIONS", None)
        varying = set()
        units = {str(s.var_units.get(name)) for s in sources}
        if len(units) > 1 and "units" in src:
            varying.add("units")  # time re-encoded in common units; decoded values are compared
        e = edits.variables.get(name)
        compare("variable", prod, src, varying, e.set if e else {}, e.remove if e else [], name)
    return findings


def _short(v: Any, n: int = 80) -> str:
    s = repr(_plain(v))
    return s if len(s) <= n else s[: n - 3] + "..."


def _sample_indices(n: int, fraction: float) -> np.ndarray:
    k = max(1, math.ceil(n * fraction))
    return np.unique(np.linspace(0, n - 1, k).round().astype(int))


def check_values(
    product_raw: Any,
    product_dec: Any,
    source: SourceInfo,
    layout: Layout,
    mode: ValidationMode,
    sample_fraction: float,
    stats: dict[str, int],
    reencoded: set[str],
    seen_dtype_note: set[str],
) -> Iterator[Finding]:
    """Raw (bitwise) and decoded (NaN-aware) comparison of one file with its slice of the product."""
    import netCDF4
    import xarray as xr

    try:
        nc = netCDF4.Dataset(source.url)
    except OSError as err:
        yield Finding(
            "values", Severity.ERROR, f"cannot open the source with netCDF4: {err}", file=source.url
        )
        return
    nc.set_auto_maskandscale(False)
    dec = xr.open_dataset(source.url, engine="netcdf4", decode_times=_time_coder(), decode_timedelta=False)
    try:
        for name in sorted(product_raw.variables):
            if name not in nc.variables:
                continue
            var_nc = nc.variables[name]
            sel: dict[str, Any] = {}
            src_sel: list[Any] = [slice(None)] * var_nc.ndim
            for d in layout.concat_dims:
                if d in product_raw[name].dims:
                    a, b = layout.ranges[source.url][d]
                    if mode is ValidationMode.SAMPLED and d == layout.concat_dims[0]:
                        idx = _sample_indices(b - a, sample_fraction)
                        sel[d] = idx + a
                        src_sel[var_nc.dimensions.index(d)] = idx
                    else:
                        sel[d] = slice(a, b)
            try:
                p_raw = np.asarray(product_raw[name].isel(sel).values)
            except Exception as err:
                yield Finding(
                    "values",
                    Severity.ERROR,
                    f"cannot read the product's data: {type(err).__name__}: {err}",
                    variable=name,
                    file=source.url,
                )
                continue
            s_raw = np.asarray(var_nc[tuple(src_sel)] if var_nc.ndim else var_nc[...])
            if p_raw.dtype.newbyteorder("=") != s_raw.dtype.newbyteorder("=") and name not in reencoded:
                yield Finding(
                    "structure",
                    Severity.ERROR,
                    f"dtype differs: product {p_raw.dtype}, source {s_raw.dtype}",
                    variable=name,
                    file=source.url,
                )
                continue
            if p_raw.shape != s_raw.shape:
                yield Finding(
                    "values",
                    Severity.ERROR,
                    f"shape differs: product {p_raw.shape}, source {s_raw.shape}",
                    variable=name,
                    file=source.url,
                )
                continue
            if name not in reencoded:
                eq = _bitwise_equal(p_raw, s_raw)
                bad = int(eq.size - np.count_nonzero(eq))
                stats["values_compared"] += int(eq.size)
                if bad:
                    first = np.unravel_index(int(np.argmin(eq.reshape(-1))), eq.shape) if eq.ndim else ()
                    yield Finding(
                        "values",
                        Severity.ERROR,
                        f"{bad} of {eq.size} raw values differ (first at index {tuple(int(i) for i in first)})",
                        variable=name,
                        file=source.url,
                        count=bad,
                    )
                    continue
            # decoded values, as users see them
            try:
                p_dec = np.asarray(product_dec[name].isel(sel).values)
            except Exception as err:
                yield Finding(
                    "values",
                    Severity.ERROR,
                    f"cannot decode the product's data: {type(err).__name__}: {err}",
                    variable=name,
                    file=source.url,
                )
                continue
            src_isel = {
                d: sel[d] - layout.ranges[source.url][d][0] if not isinstance(sel[d], slice) else slice(None)
                for d in sel
            }
            s_dec = np.asarray(dec[name].isel(src_isel).values)
            if p_dec.dtype != s_dec.dtype:
                if p_dec.dtype.kind == s_dec.dtype.kind == "f" and name not in seen_dtype_note:
                    seen_dtype_note.add(name)
                    yield Finding(
                        "values",
                        Severity.ALLOWED,
                        f"decodes as {p_dec.dtype} (source {s_dec.dtype}): JSON attributes carry no float32 type; values are compared in the source's type",
                        variable=name,
                    )
                if p_dec.dtype.kind == s_dec.dtype.kind == "f":
                    p_dec = p_dec.astype(s_dec.dtype)
            try:
                eq = _decoded_equal(p_dec, s_dec)
            except Exception as err:  # incomparable types
                yield Finding(
                    "values",
                    Severity.ERROR,
                    f"decoded values cannot be compared: {err}",
                    variable=name,
                    file=source.url,
                )
                continue
            bad = int(np.size(eq) - np.count_nonzero(eq))
            stats["values_compared"] += int(np.size(eq))
            if bad:
                yield Finding(
                    "values",
                    Severity.ERROR,
                    f"{bad} of {np.size(eq)} decoded values differ",
                    variable=name,
                    file=source.url,
                    count=bad,
                )
    finally:
        dec.close()
        nc.close()


def validate(
    open_product: Any,
    product_path: str,
    layout_name: str,
    manifest_urls: list[str],
    project: ResolvedProject,
    mode: ValidationMode,
) -> tuple[list[Finding], dict[str, int]]:
    """Run every check; return the findings and counters."""
    import netCDF4

    findings: list[Finding] = []
    stats = {"files": len(manifest_urls), "variables": 0, "values_compared": 0}
    try:
        # raw view: no char-array concatenation either, to match netCDF4's raw reads
        product_raw = open_product(
            mask_and_scale=False,
            decode_times=False,
            decode_timedelta=False,
            decode_coords=False,
            concat_characters=False,
        )
        product_dec = open_product(decode_times=_time_coder(), decode_timedelta=False)
    except Exception as err:
        findings.append(
            Finding(
                "structure",
                Severity.ERROR,
                f"the product does not open: {type(err).__name__}: {err}",
            )
        )
        return findings, stats
    try:
        sources = []
        for url in manifest_urls:
            try:
                sources.append(read_source_info(url))
            except Exception as err:
                findings.append(
                    Finding("structure", Severity.ERROR, f"cannot read the source: {err}", file=url)
                )
        if len(sources) != len(manifest_urls):
            return findings, stats
        # structure: the expected variables
        expected = set(sources[0].variables)
        if project.variables.keep is not None:
            keep = set(project.variables.keep)
            missing = sorted(keep - set(product_raw.variables))
            for name in missing:
                findings.append(
                    Finding(
                        "structure",
                        Severity.ERROR,
                        "a variable to keep is missing from the product",
                        variable=name,
                    )
                )
            expected &= set(product_raw.variables) | keep
        expected -= set(project.variables.drop)
        for name in sorted(expected - set(product_raw.variables)):
            if project.variables.keep is None:
                findings.append(
                    Finding(
                        "structure",
                        Severity.ERROR,
                        "variable is in the sources but not in the product",
                        variable=name,
                    )
                )
        for name in sorted(set(product_raw.variables) - set(sources[0].variables)):
            findings.append(
                Finding(
                    "structure",
                    Severity.ERROR,
                    "variable is in the product but not in the sources",
                    variable=name,
                )
            )
        for name in project.variables.drop:
            if name in product_raw.variables:
                findings.append(
                    Finding(
                        "structure",
                        Severity.ERROR,
                        "variable should have been dropped",
                        variable=name,
                    )
                )
        stats["variables"] = len(product_raw.variables)

        referenced = product_urls(product_path, layout_name)
        cov, layout = check_coverage(product_dec, sources, referenced)
        findings.extend(cov)
        if layout is None:
            return findings, stats
        reencoded = {n for n in product_raw.variables if len({str(s.var_units.get(n)) for s in sources}) > 1}
        bounds = {product_raw[n].attrs.get("bounds") for n in reencoded}
        reencoded |= {b for b in bounds if isinstance(b, str)}
        for n in sorted(reencoded):
            findings.append(
                Finding(
                    "values",
                    Severity.ALLOWED,
                    "time values are re-encoded in common units across files; decoded times are compared",
                    variable=n,
                )
            )
        with netCDF4.Dataset(layout.first_url) as first_nc:
            findings.extend(check_attributes(product_raw, sources, first_nc, layout, project))
        seen: set[str] = set()
        for s in sources:
            findings.extend(
                check_values(
                    product_raw,
                    product_dec,
                    s,
                    layout,
                    mode,
                    project.validation.sample_fraction,
                    stats,
                    reencoded,
                    seen,
                )
            )
        # fill values and dtypes of the whole product against the first file
        with netCDF4.Dataset(layout.first_url) as first_nc:
            for name in product_raw.variables:
                if name in first_nc.variables:
                    src_fill = first_nc.variables[name].__dict__.get("_FillValue")
                    prod_fill = product_raw[name].attrs.get("_FillValue")
                    if (src_fill is None) != (prod_fill is None) or (
                        src_fill is not None and not attrs_equal(src_fill, prod_fill)
                    ):
                        findings.append(
                            Finding(
                                "structure",
                                Severity.ERROR,
                                f"_FillValue differs: product {prod_fill!r}, source {src_fill!r}",
                                variable=name,
                            )
                        )
        return findings, stats
    finally:
        product_raw.close()
        product_dec.close()
