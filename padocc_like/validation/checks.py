"""Prove a product equals its sources, value for value.

The product is opened the way users open it (xarray, through its writer's
``open_dataset``); the sources are read independently of our scanners and
combiner, with netCDF4-python and xarray's ``netcdf4`` engine. Each array is
read once per side; decoded values are derived from the raw ones with xarray's
CF decoder and each side's attributes (:mod:`.values`, :mod:`.compare`). Where
each file sits in the product is found from the *values* of its coordinates,
not from anything the compute phase recorded.

Checks, each producing :class:`~.report.Finding` objects:

* ``structure``: the product opens, holds exactly the expected variables and
  dimensions, with the sources' dtypes and fill values;
* ``coverage``: every manifest file appears exactly once, the files tile the
  product without gaps or overlaps, and the product references no other file;
* ``attributes``: global and variable attributes equal the sources', apart
  from configured edits and values that vary between files (listed as allowed);
* ``values``: every raw stored value is bitwise equal and every decoded value
  equal (NaN-aware) in every file (or a sample of steps in ``sampled`` mode).

Reading the sources and comparing values run file by file, in this process and,
for large projects with ``workers > 1``, a process pool (:mod:`.parallel`); the
findings are merged in manifest order, so the report does not depend on it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config.models import ResolvedProject
from ..storage import local_path_of
from ..types import ValidationMode
from . import values
from .compare import RAW_OPEN, decoded_open
from .parallel import Workers, blocks_of, heap_reused
from .report import Finding, Severity
from .values import RANGE_ATTRS, SourceInfo, is_dtype_note

log = logging.getLogger(__name__)


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


def _all_equal(a: np.ndarray, b: np.ndarray) -> bool:
    """True if equal element-wise; values of incomparable types (calendars) are unequal."""
    try:
        return bool(np.all(a == b))
    except TypeError:
        return False


def _first_difference(product: np.ndarray, source: np.ndarray) -> str:
    """Where two coordinate segments first differ, for a message."""
    if product.shape != source.shape:
        return f"{product.size} values in the product, {source.size} in the file"
    for i, (a, b) in enumerate(zip(product.tolist(), source.tolist(), strict=True)):
        try:
            same = bool(a == b)
        except TypeError:
            same = False
        if not same:
            return f"first at step {i}: product {a}, file {b}"
    return "values of incomparable types"


def product_urls(path: str, layout: str) -> set[str]:
    """Every file URL the product's references point at (a CF aggregation's fragment URIs,
    resolved as CF-1.13 says)."""
    if layout == CFA_LAYOUT:
        return fragment_urls(read_aggregations(path))
    if layout.startswith("zarr"):
        # a store copied from the sources: the writer lists them beside its metadata
        if layout.endswith("-zip"):
            import zipfile

            with zipfile.ZipFile(path) as zf:
                return set(json.loads(zf.read(".padocc-sources.json"))["sources"])
        with open(Path(path) / ".padocc-sources.json") as f:
            return set(json.load(f)["sources"])
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


def read_source_info(url: str) -> SourceInfo:
    """What coverage needs from one source (as ``xarray.open_dataset`` with ``mask_and_scale=False``
    and cftime times sees it)."""
    return values.read_source(url)[0]


# ---------------------------------------------------------------------------
# CF-1.13 aggregation files (cfa products), read here with netCDF4 alone
# ---------------------------------------------------------------------------
CFA_LAYOUT = "netcdf"
"""The layout of a cfa product: one CF-1.13 aggregation file."""
AGGREGATION_ATTRS = ("aggregated_dimensions", "aggregated_data")
UNPACKED_RANGES = ("valid_min", "valid_max", "valid_range", "actual_range")
"""Attributes of a packed variable in packed units, which a CF aggregation gives unpacked."""
_CF = re.compile(r"\bCF-(\d+)\.(\d+)(?:\.\d+)*\b")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


@dataclass
class Aggregation:
    """One aggregation variable of a CF-1.13 file: its aggregated dimensions, the fragment
    sizes along each (the ``map`` rows without padding), and per fragment its resolved URL
    and variable name (arrays shaped like the array of fragments)."""

    name: str
    dims: tuple[str, ...]
    sizes: list[list[int]]
    uris: np.ndarray
    identifiers: np.ndarray


def resolve_uri(uri: str, base_dir: str) -> str:
    """A fragment URI as a local path (``file://`` URIs, and references relative to the
    aggregation file's directory) or the URL as it is (other schemes)."""
    from urllib.parse import unquote, urlparse

    if uri.startswith("file:"):
        return unquote(urlparse(uri).path)
    if _SCHEME.match(uri):
        return uri
    return os.path.normpath(Path(base_dir) / unquote(uri))


def read_aggregations(path: str) -> dict[str, Aggregation]:
    """Every aggregation variable of a CF-1.13 aggregation file that names fragment files
    (``unique_values`` aggregations name none)."""
    import netCDF4

    base = str(Path(path).absolute().parent)
    out: dict[str, Aggregation] = {}
    with netCDF4.Dataset(path) as nc:
        for name, var in nc.variables.items():
            if "aggregated_data" not in var.ncattrs():
                continue
            terms = dict(re.findall(r"(\S+):\s+(\S+)", str(var.getncattr("aggregated_data"))))
            if "uris" not in terms:
                continue  # unique_values: constants held in this file, compared value by value
            dims = tuple(str(var.getncattr("aggregated_dimensions")).split())
            table = nc.variables[terms["map"]][...]
            rows = np.ma.getdata(table).reshape(len(dims), -1) if dims else np.ones((0, 0), dtype=int)
            valid = ~np.ma.getmaskarray(table).reshape(rows.shape)
            sizes = [[int(n) for n in row[ok]] for row, ok in zip(rows, valid, strict=True)]
            uris = np.asarray(nc.variables[terms["uris"]][...], dtype=object)
            ids = np.asarray(nc.variables[terms["identifiers"]][...], dtype=object)
            resolved = np.empty(uris.shape, dtype=object)
            for index, uri in np.ndenumerate(uris):
                resolved[index] = resolve_uri(str(uri), base)
            out[name] = Aggregation(
                name, dims, sizes, resolved, np.broadcast_to(ids, uris.shape) if ids.ndim == 0 else ids
            )
    return out


def fragment_urls(aggregations: dict[str, Aggregation]) -> set[str]:
    """Every fragment's resolved URL."""
    return {str(u) for agg in aggregations.values() for u in agg.uris.reshape(-1)}


def check_fragments(
    aggregations: dict[str, Aggregation],
    layout: Layout,
    product_sizes: dict[str, int],
    metas: dict[str, dict[str, values.VarMeta]],
) -> list[Finding]:
    """Each fragment's extent in the aggregation file's map against the file itself: the
    fragment variable has the aggregated dimensions and, along each, as many steps as the
    map says, at the position where its coordinate values place it (:func:`check_coverage`)."""
    findings: list[Finding] = []

    def error(message: str, name: str, url: str | None = None) -> None:
        findings.append(Finding("coverage", Severity.ERROR, message, variable=name, file=url))

    for name, agg in sorted(aggregations.items()):
        for d, row in zip(agg.dims, agg.sizes, strict=True):
            if sum(row) != product_sizes.get(d) or any(n <= 0 for n in row):
                error(
                    f"the fragment map's row for {d!r} ({row}) does not tile its length {product_sizes.get(d)}",
                    name,
                )
        if tuple(len(row) for row in agg.sizes) != agg.uris.shape:
            error(
                f"the array of fragments has shape {agg.uris.shape}, the map {[len(r) for r in agg.sizes]}",
                name,
            )
            continue
        starts = [np.cumsum([0, *row[:-1]]).tolist() for row in agg.sizes]
        for index, url in np.ndenumerate(agg.uris):
            ident = str(agg.identifiers[index]).lstrip("/")
            meta = metas.get(url, {}).get(ident)
            if meta is None:
                error(
                    f"fragment {list(index)} names variable {ident!r}, which the file does not hold",
                    name,
                    url,
                )
                continue
            if meta.dims != agg.dims:
                error(
                    f"the fragment's dimensions {meta.dims} are not the aggregated ones {agg.dims}", name, url
                )
                continue
            for ax, d in enumerate(agg.dims):
                start, size = starts[ax][index[ax]], agg.sizes[ax][index[ax]]
                if meta.shape[ax] != size:
                    error(
                        f"the fragment map gives {size} steps along {d!r}; the file holds {meta.shape[ax]}",
                        name,
                        url,
                    )
                    break
                want = layout.ranges[url].get(d, (0, product_sizes[d])) if url in layout.ranges else None
                if want is not None and (start, start + size) != tuple(want):
                    error(
                        f"the fragment map places the file at {start}:{start + size} along {d!r}; "
                        f"its coordinates place it at {want[0]}:{want[1]}",
                        name,
                        url,
                    )
                    break
    if not findings:
        n = sum(agg.uris.size for agg in aggregations.values())
        findings.append(
            Finding(
                "coverage",
                Severity.INFO,
                f"the fragment maps of {len(aggregations)} aggregation variables place their {n} "
                "fragments where the files' extents and coordinates do",
            )
        )
    return findings


def _cf_version(conventions: Any) -> tuple[tuple[int, int] | None, tuple[str, ...]]:
    """The CF version a ``Conventions`` value names, and its other names (CF 2.6.1: a blank-
    or comma-separated list; sources also write ``"CF-1.0; http://..."``)."""
    text = str(_plain(conventions)) if conventions is not None else ""
    names = [n for n in re.split(r"[\s,;]+", text) if n]
    for i, name in enumerate(names):
        match = _CF.fullmatch(name)
        if match is not None:
            return (int(match[1]), int(match[2])), tuple(names[:i] + names[i + 1 :])
    return None, tuple(names)


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
            users = [v for v in s.variables if v in product.variables and d in product[v].dims]
            if d not in s.dims and users:
                findings.append(
                    Finding(
                        "coverage",
                        Severity.ERROR,
                        f"dimension {d!r} (of {', '.join(map(repr, users))} in the product) is not in the source",
                        variable=users[0],
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
                            variable=d,
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
                            f"the product's {d} values at {start}:{stop} differ from the file's "
                            f"({_first_difference(seg, f)})",
                            variable=d,
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
                        variable=d,
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
                    variable=concat[0] if len(concat) == 1 else None,
                    count=over,
                )
            )
        if gaps:
            findings.append(
                Finding(
                    "coverage",
                    Severity.ERROR,
                    f"{gaps} positions along {concat} are covered by no source file",
                    variable=concat[0] if len(concat) == 1 else None,
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
    layout: Layout | None,
    project: ResolvedProject,
    aggregations: dict[str, Aggregation] | None = None,
) -> list[Finding]:
    """Global and variable attributes against the first file, allowing configured edits.

    For a CF aggregation (``aggregations`` given), ``Conventions`` must name CF-1.13 in place
    of the sources' CF version, and the packing attributes of a packed variable held
    unpacked by an aggregation variable are not compared (its decoded values are)."""
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
    prod_global = dict(product_raw.attrs)
    configured = set(edits.global_.set) | set(edits.global_.remove)
    if aggregations is not None and "Conventions" not in configured:
        findings.append(
            _check_conventions(prod_global.pop("Conventions", None), src_global.pop("Conventions", None))
        )
    compare(
        "global",
        prod_global,
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
        if aggregations is not None and name in aggregations:
            for key in AGGREGATION_ATTRS:
                prod.pop(key, None)
            if {"scale_factor", "add_offset"} & set(src):
                findings.extend(_check_unpacked(name, prod, src))
        if any(k in src for k in RANGE_ATTRS):
            handled = _check_range_hull(name, prod, sources)
            if handled is not None:
                findings.append(handled)
                for key in RANGE_ATTRS:
                    src.pop(key, None)
                    prod.pop(key, None)
        varying = set()
        units = {str(s.var_units.get(name)) for s in sources}
        if len(units) > 1 and "units" in src:
            varying.add("units")  # time re-encoded in common units; decoded values are compared
        e = edits.variables.get(name)
        compare("variable", prod, src, varying, e.set if e else {}, e.remove if e else [], name)
    return findings


def _check_unpacked(name: str, prod: dict[str, Any], src: dict[str, Any]) -> list[Finding]:
    """The packing attributes of a packed variable that a CF aggregation holds unpacked
    (popped from ``prod`` and ``src``; the others are compared as usual): no
    ``scale_factor`` or ``add_offset`` (a reader would apply them again to the unpacked
    values), and the ranges in packed units given unpacked."""
    findings: list[Finding] = []
    scale, offset = (float(_plain(src.get(k, d))) for k, d in (("scale_factor", 1.0), ("add_offset", 0.0)))

    def error(message: str) -> None:
        findings.append(Finding("attributes", Severity.ERROR, message, variable=name))

    for key in ("scale_factor", "add_offset"):
        src.pop(key, None)
        if key in prod:
            error(
                f"variable attribute {key!r} = {_short(prod.pop(key))}: the aggregation holds the packed "
                "values unpacked, and readers would apply it again"
            )
    for key in UNPACKED_RANGES:
        if key not in src and key not in prod:
            continue
        want = None if key not in src else np.asarray(_plain(src.pop(key)), dtype=np.float64) * scale + offset
        have = prod.pop(key, None)
        if (
            want is None
            or have is None
            or not np.allclose(np.asarray(_plain(have), dtype=np.float64), want, rtol=1e-6)
        ):
            error(
                f"variable attribute {key!r} differs: product {_short(have)}, source unpacked "
                f"{_short(None if want is None else want.tolist())}"
            )
    findings.append(
        Finding(
            "attributes",
            Severity.ALLOWED,
            "the aggregation holds the packed values unpacked: scale_factor and add_offset are not "
            "in the product, valid and actual ranges are compared unpacked",
            variable=name,
        )
    )
    return findings


def _declared(attrs: dict[str, Any]) -> dict[str, list[float]]:
    """A variable's valid-range attributes, as lists of floats."""
    return {
        k: [float(x) for x in np.atleast_1d(np.asarray(attrs[k])).ravel()] for k in RANGE_ATTRS if k in attrs
    }


def _valid_interval(declared: dict[str, list[float]]) -> tuple[float, float]:
    """The valid stored values as netCDF4-python masks them: ``valid_range``, overridden by
    ``valid_min``/``valid_max``."""
    lo, hi = -math.inf, math.inf
    if len(declared.get("valid_range", [])) == 2:
        lo, hi = declared["valid_range"]
    lo = declared["valid_min"][0] if "valid_min" in declared else lo
    hi = declared["valid_max"][0] if "valid_max" in declared else hi
    return lo, hi


def _check_range_hull(name: str, prod: dict[str, Any], sources: list[SourceInfo]) -> Finding | None:
    """A variable whose valid range differs between the files: the product must declare the
    smallest range holding all of theirs, declared with the same attributes, and no file may
    hold a stored value inside it but outside its own range (every file's values are read
    again: CF readers would show what the file masks). None when the files agree.

    Written apart from the combiner's ``references.ranges``: the proof shares no code with
    what it checks."""
    declared = [_declared(s.var_ranges.get(name, {})) for s in sources]
    if all(d == declared[0] for d in declared[1:]):
        return None
    keys = set(declared[0])
    if any(set(d) != keys for d in declared):
        reason = "the files declare their valid ranges with different attributes"
    else:
        hull = {
            k: [min(d[k][0] for d in declared), max(d[k][-1] for d in declared)]
            if k == "valid_range"
            else [(min if k == "valid_min" else max)(d[k][0] for d in declared)]
            for k in keys
        }
        if _declared(prod) != hull:
            reason = f"the product should declare their hull {hull}, it declares {_declared(prod)}"
        else:
            import netCDF4

            hull_lo, hull_hi = _valid_interval(hull)
            for source, own in zip(sources, declared, strict=True):
                lo, hi = _valid_interval(own)
                if (lo, hi) == (hull_lo, hull_hi):
                    continue
                with netCDF4.Dataset(local_path_of(source.url)) as nc:
                    var = nc[name]
                    var.set_auto_maskandscale(False)
                    stored = np.asarray(var[...])
                    missing = [
                        var.getncattr(k) for k in ("_FillValue", "missing_value") if k in var.ncattrs()
                    ]
                if stored.dtype.kind not in "iuf":
                    continue
                with np.errstate(invalid="ignore"):
                    shown = ((stored < lo) | (stored > hi)) & (stored >= hull_lo) & (stored <= hull_hi)
                for m in missing:
                    shown &= ~np.isin(stored, np.atleast_1d(m))
                if shown.any():
                    return Finding(
                        "attributes",
                        Severity.ERROR,
                        f"the valid range differs between files, and the product's hull of them shows "
                        f"{int(shown.sum())} stored values of {source.url} (e.g. {stored[shown].flat[0]!r}) "
                        "that the file's own range masks",
                        variable=name,
                    )
            return Finding(
                "attributes",
                Severity.ALLOWED,
                "the valid range differs between files; the product declares their hull, which masks "
                f"every file's stored values as its own range does (checked in {len(sources)} files)",
                variable=name,
            )
    return Finding(
        "attributes",
        Severity.ERROR,
        f"the valid range differs between files ({declared[0]} in {sources[0].url}); {reason}",
        variable=name,
    )


def _check_conventions(product: Any, source: Any) -> Finding:
    """A CF aggregation's ``Conventions``: CF-1.13 or later in place of the sources' CF
    version, the other conventions kept."""
    version, rest = _cf_version(product)
    _, source_rest = _cf_version(source)
    if version is None or version < (1, 13) or rest != source_rest:
        return Finding(
            "attributes",
            Severity.ERROR,
            f"global attribute 'Conventions' = {_short(product)} should name CF-1.13 in place of "
            f"the sources' CF version ({_short(source)})",
        )
    return Finding(
        "attributes",
        Severity.ALLOWED,
        "global attribute 'Conventions' names CF-1.13 (CF aggregation variables need it) in "
        "place of the sources' CF version",
    )


def _short(v: Any, n: int = 80) -> str:
    s = repr(_plain(v))
    return s if len(s) <= n else s[: n - 3] + "..."


def _source_bytes(urls: list[str]) -> int:
    total = 0
    for url in urls:
        with contextlib.suppress(OSError):
            total += Path(url).stat().st_size
    return total


def zarr_documents(path: str, layout: str) -> dict[str, Any]:
    """The Zarr v2 metadata documents (``name/.zarray``...) of a reference product or a
    Zarr v2 store, parsed; empty for other layouts."""
    if layout == "json":
        with open(path) as f:
            refs = json.load(f)["refs"]
        return {k: json.loads(v) for k, v in refs.items() if k.rsplit("/", 1)[-1].startswith(".z")}
    if layout == "parquet":
        return dict(json.loads((Path(path) / ".zmetadata").read_text())["metadata"])
    if layout == "zarr2":
        return dict(json.loads((Path(path) / ".zmetadata").read_text())["metadata"])
    if layout == "zarr2-zip":
        import zipfile

        with zipfile.ZipFile(path) as zf:
            return dict(json.loads(zf.read(".zmetadata"))["metadata"])
    return {}


def unopenable(
    open_product: Callable[..., Any],
    kwargs: dict[str, Any],
    product_path: str,
    layout: str,
    manifest_urls: list[str],
    err: Exception,
) -> list[Finding]:
    """Why the product does not open (with ``kwargs``): the arrays whose Zarr metadata zarr
    refuses, or else the variables (of the first source) without which it opens, each named
    in an error with the reader's complaint; one error without a variable when none is to
    blame alone. Only run once the product failed to open."""
    from zarr.core.metadata.v2 import ArrayV2Metadata

    message = f"the product does not open: {type(err).__name__}: {err}"
    refused = []
    with contextlib.suppress(Exception):
        for key, doc in sorted(zarr_documents(product_path, layout).items()):
            if key.endswith("/.zarray"):
                try:
                    ArrayV2Metadata.from_dict(dict(doc))
                except Exception as bad:
                    refused.append((key[: -len("/.zarray")], doc, bad))
    if refused:
        return [
            Finding(
                "structure",
                Severity.ERROR,
                f"the product does not open: zarr refuses the array's metadata (dtype {doc.get('dtype')!r}, "
                f"shape {doc.get('shape')}, chunks {doc.get('chunks')}, fill_value {doc.get('fill_value')!r}): "
                f"{type(bad).__name__}: {bad}",
                variable=name,
            )
            for name, doc, bad in refused
        ]
    names: list[str] = []
    with contextlib.suppress(Exception):
        import netCDF4

        with netCDF4.Dataset(local_path_of(manifest_urls[0])) as nc:
            names = list(nc.variables)
    blamed = []
    for name in names:
        with contextlib.suppress(Exception):
            open_product(**kwargs, drop_variables=[name]).close()
            blamed.append(name)
    if not blamed or len(blamed) == len(names):
        # the reader's message may name the variable (CF aggregation errors do)
        named = [n for n in re.findall(r"variable '([^']+)'", str(err)) if n in names]
        return [Finding("structure", Severity.ERROR, message, variable=named[0] if named else None)]
    return [
        Finding(
            "structure",
            Severity.ERROR,
            f"{message}; it opens without variable {name!r}, whose metadata or attributes the reader refuses",
            variable=name,
        )
        for name in blamed
    ]


def validate(
    open_product: Callable[..., Any],
    product_path: str,
    layout_name: str,
    manifest_urls: list[str],
    project: ResolvedProject,
    mode: ValidationMode,
    workers: int = 1,
) -> tuple[list[Finding], dict[str, int]]:
    """Run every check; return the findings and counters.

    ``open_product(**kwargs)`` opens the product as an xarray Dataset; with ``workers > 1``
    and enough data it must be picklable (it is sent to the pool's processes, which open
    the product themselves). The findings do not depend on ``workers``.
    """
    with heap_reused():
        return _validate(open_product, product_path, layout_name, manifest_urls, project, mode, workers)


def _validate(
    open_product: Callable[..., Any],
    product_path: str,
    layout_name: str,
    manifest_urls: list[str],
    project: ResolvedProject,
    mode: ValidationMode,
    workers: int,
) -> tuple[list[Finding], dict[str, int]]:
    import netCDF4

    findings: list[Finding] = []
    stats = {"files": len(manifest_urls), "variables": 0, "values_compared": 0, "bytes_compared": 0}
    token = uuid.uuid4().hex
    pool = Workers(workers, _source_bytes(manifest_urls), (values.warm, (token, open_product)))
    # raw view: no char-array concatenation either, to match netCDF4's raw reads
    opened: list[Any] = []
    for kwargs in (RAW_OPEN, decoded_open()):
        try:
            opened.append(open_product(**kwargs))
        except Exception as err:
            pool.close()
            for ds in opened:
                ds.close()
            findings.extend(unopenable(open_product, kwargs, product_path, layout_name, manifest_urls, err))
            return findings, stats
    product_raw, product_dec = opened
    side = values.ProductSide(product_raw, remote=bool(getattr(open_product, "sources_options", None)))
    values.register_product(token, side)
    try:
        sources = []
        reads = [
            r
            for block in pool.map_blocks(_read_sources, None, blocks_of(manifest_urls, pool.processes))
            for r in block
        ]
        specs: dict[str, Any] = {}
        metas: dict[str, Any] = {}
        for r in reads:
            if r.info is None:
                findings.append(
                    Finding("structure", Severity.ERROR, f"cannot read the source: {r.error}", file=r.url)
                )
            else:
                sources.append(r.info)
                specs[r.url], metas[r.url] = r.specs, r.meta
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
        first_meta = metas[sources[0].url]
        for name in sorted(product_raw.variables):
            meta = first_meta.get(name)
            if meta is not None and tuple(map(str, product_raw[name].dims)) != meta.dims:
                findings.append(
                    Finding(
                        "structure",
                        Severity.ERROR,
                        f"dimensions differ: product {tuple(map(str, product_raw[name].dims))}, source {meta.dims}",
                        variable=name,
                    )
                )

        aggregations: dict[str, Aggregation] | None = None
        if layout_name == CFA_LAYOUT:
            try:
                aggregations = read_aggregations(product_path)
            except Exception as err:
                findings.append(
                    Finding(
                        "structure",
                        Severity.ERROR,
                        f"the aggregation file's fragment variables cannot be read: {type(err).__name__}: {err}",
                    )
                )
                return findings, stats
            referenced = fragment_urls(aggregations)
        else:
            try:
                referenced = product_urls(product_path, layout_name)
            except Exception as err:
                findings.append(
                    Finding(
                        "structure",
                        Severity.ERROR,
                        f"the files the product was made from cannot be listed: {type(err).__name__}: {err}",
                    )
                )
                return findings, stats
        cov, layout = check_coverage(product_dec, sources, referenced)
        findings.extend(cov)
        if layout is None:
            # the metadata is still checked (cheap): a changed calendar or units says so
            with netCDF4.Dataset(local_path_of(sources[0].url)) as first_nc:
                findings.extend(check_attributes(product_raw, sources, first_nc, None, project, aggregations))
                findings.extend(check_fill_values(product_raw, first_nc))
            return findings, stats
        if aggregations is not None:
            findings.extend(check_fragments(aggregations, layout, dict(product_dec.sizes), metas))
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
        with netCDF4.Dataset(local_path_of(layout.first_url)) as first_nc:
            findings.extend(check_attributes(product_raw, sources, first_nc, layout, project, aggregations))
            unpacked = sorted(
                n
                for n in aggregations or {}
                if n in first_nc.variables and {"scale_factor", "add_offset"} & set(first_nc[n].ncattrs())
            )
        for n in unpacked:  # no raw values to compare: the aggregation holds them unpacked
            reencoded.add(n)
            findings.append(
                Finding(
                    "values",
                    Severity.ALLOWED,
                    "the aggregation holds the packed values unpacked; decoded values are compared",
                    variable=n,
                )
            )
        task = values.ValueTask(
            token,
            open_product,
            tuple(layout.concat_dims),
            frozenset(reencoded),
            mode,
            project.validation.sample_fraction,
            variable_major=layout_name.startswith("zarr"),
        )
        jobs = [values.FileJob(s.url, layout.ranges[s.url], specs[s.url], metas[s.url]) for s in sources]
        seen: set[str] = set()
        for block in pool.map_blocks(values.compare_block, task, blocks_of(jobs, pool.processes)):
            for result in block:
                for f in result.findings:
                    if is_dtype_note(f):
                        if f.variable in seen:
                            continue
                        seen.add(str(f.variable))
                    findings.append(f)
                stats["values_compared"] += result.values_compared
                stats["bytes_compared"] += result.bytes_compared
        # fill values of the whole product against the first file
        with netCDF4.Dataset(local_path_of(layout.first_url)) as first_nc:
            findings.extend(check_fill_values(product_raw, first_nc))
        return findings, stats
    finally:
        pool.close()
        values.forget_product(token)
        side.close(dataset=False)
        product_raw.close()
        product_dec.close()


def check_fill_values(product_raw: Any, first_nc: Any) -> list[Finding]:
    """Every variable's ``_FillValue`` against the first file's."""
    findings = []
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
    return findings


def _read_sources(_: None, urls: list[str]) -> list[values.SourceRead]:
    return values.read_block(urls)
