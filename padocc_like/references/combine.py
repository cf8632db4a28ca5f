"""Combine per-file scans into one exact aggregate.

The rules, each enforced with an error that names the files and variables:

* every file holds the same variables with the same dtype, codecs, fill value
  and packing attributes (``scale_factor``, ``add_offset``, ``missing_value``...),
  except that the valid ranges of a variable along a concatenation dimension may differ:
  the product declares their hull when no file holds a value inside the hull but outside
  its own range (:mod:`.ranges`, checked by reading the values);
* files are placed along each concatenation dimension by their *decoded*
  coordinate values (cftime for time, whatever the calendar and even when
  the units differ between files), never by name or glob order;
* blocks along a concatenation dimension never overlap or repeat, and the
  files fill the grid of blocks exactly once;
* variables without a concatenation dimension appear once and must hold the
  same values in every file;
* the chunk grid along a concatenation dimension is regular (every file but
  the last holds a whole number of chunks), and every file has the same chunk
  shape and codecs, else Kerchunk cannot represent it; with
  ``CombineOptions(fragments=True)`` (CF aggregations) each file is instead one
  whole fragment, and none of this needs to agree;
* attributes are merged deterministically: values shared by all files are
  kept; a differing value is taken from the first file and reported in
  :attr:`Aggregate.notes`.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import AggregationError, NotRepresentableError
from .model import (
    MISSING,
    Aggregate,
    AggVariable,
    FileScan,
    Fragment,
    FragmentedVariable,
    VariableScan,
    chunk_grid,
)
from .ranges import RANGE_ATTRS, declared_range, range_hull, unmasked_by_hull
from .read import file_reader, read_raw, read_stored_chunks

# Attributes that change how stored values decode; they must agree across files.
PACKING_ATTRS = (
    "scale_factor",
    "add_offset",
    "missing_value",
    "valid_min",
    "valid_max",
    "valid_range",
    "units",
    "calendar",
    "flag_values",
    "flag_masks",
)


@dataclass(frozen=True)
class CombineOptions:
    """How to combine files (from the project configuration)."""

    concat_dims: tuple[str, ...] | None = None
    """Dimensions to concatenate along; ``None`` infers them from the files."""
    keep_variables: tuple[str, ...] | None = None
    drop_variables: tuple[str, ...] = ()
    materialize_limit: int = 16 << 20
    """Coordinates and bounds along a concatenation dimension up to this many
    bytes are copied into the product as one chunk (their per-file chunking
    and time units need not agree)."""
    fragments: bool = False
    """Hold the variables along the concatenation dims (but the copied coordinates and
    bounds) as whole-file fragments (:class:`FragmentedVariable`, for CF aggregations)
    instead of chunk tables: block lengths, chunk shapes and codecs may then differ
    between files."""


RawReader = Callable[[VariableScan, str], np.ndarray]


StoredReader = Callable[[Sequence[VariableScan], str], list[list[bytes | None]]]


def read_variable_from_file(var: VariableScan, url: str) -> np.ndarray:
    """Default :data:`RawReader`: read a variable's stored values from a local file."""
    with file_reader(url) as read_range:
        return read_raw(var, read_range)


def read_stored_from_file(variables: Sequence[VariableScan], url: str) -> list[list[bytes | None]]:
    """Default :data:`StoredReader`: variables' chunks as stored in one local file, undecoded
    (the file is opened once for all of them)."""
    with file_reader(url) as read_range:
        return [read_stored_chunks(var, read_range) for var in variables]


def _identical_by_bytes(
    names: list[str], per_file: dict[str, list[VariableScan]], urls: list[str], read_stored: StoredReader
) -> dict[str, set[int]]:
    """For each static variable, the file positions whose stored bytes, under the first file's
    encoding, equal the first file's: identical values, proven without decoding."""
    proven: dict[str, set[int]] = {n: set() for n in names}
    if not names or len(urls) < 2:
        return proven
    reference = dict(zip(names, read_stored([per_file[n][0] for n in names], urls[0]), strict=True))
    for k in range(1, len(urls)):
        candidates = [n for n in names if _same_encoding(per_file[n][0], per_file[n][k])]
        if not candidates:
            continue
        stored = read_stored([per_file[n][k] for n in candidates], urls[k])
        for n, chunks in zip(candidates, stored, strict=True):
            if chunks == reference[n]:
                proven[n].add(k)
    return proven


def _same_encoding(a: VariableScan, b: VariableScan) -> bool:
    """Whether equal stored chunks imply equal values: same type, shape, chunking, codecs and
    fill value. (Which chunks are stored is part of the comparison itself: an unstored chunk
    reads as ``None``, which equals no stored bytes.)"""
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and a.chunks == b.chunks
        and a.filters == b.filters
        and _same(a.fill_value, b.fill_value)
    )


# ---------------------------------------------------------------------------
# selection and consistency
# ---------------------------------------------------------------------------
def select_variables(scan: FileScan, options: CombineOptions) -> dict[str, VariableScan]:
    """Apply keep/drop lists; keeping a variable keeps its coordinates and bounds."""
    variables = scan.variables
    unknown = [v for v in (options.keep_variables or ()) + options.drop_variables if v not in variables]
    if unknown:
        raise AggregationError(
            f"{scan.url}: variables {unknown} named in keep/drop are not in the file "
            f"(it has {sorted(variables)})"
        )
    if options.keep_variables is None and not options.drop_variables:
        return dict(variables)
    names = set(variables)
    if options.keep_variables is not None:
        keep = set(options.keep_variables)
        for name in list(keep):
            var = variables[name]
            keep.update(d for d in var.dims if d in variables)
            for ref_attr in ("coordinates", "bounds", "grid_mapping", "ancillary_variables"):
                value = var.attrs.get(ref_attr)
                if isinstance(value, str):
                    keep.update(t.rstrip(":") for t in value.split() if t.rstrip(":") in variables)
        for d in list(keep):  # bounds of kept coordinates
            b = variables[d].attrs.get("bounds") if d in variables else None
            if isinstance(b, str) and b in variables:
                keep.add(b)
        names &= keep
    names -= set(options.drop_variables)
    return {k: v for k, v in variables.items() if k in names}


def _check_same_variables(scans: Sequence[FileScan], selected: list[dict[str, VariableScan]]) -> None:
    reference = set(selected[0])
    for scan, variables in zip(scans[1:], selected[1:], strict=True):
        names = set(variables)
        if names != reference:
            missing = sorted(reference - names)
            extra = sorted(names - reference)
            parts = []
            if missing:
                parts.append(f"lacks {missing}")
            if extra:
                parts.append(f"has extra {extra}")
            raise AggregationError(
                f"files hold different variables: {scan.url} {' and '.join(parts)} "
                f"compared with {scans[0].url}; split them into separate projects or "
                "select common variables with keep_variables"
            )


def infer_concat_dims(scans: Sequence[FileScan], selected: list[dict[str, VariableScan]]) -> tuple[str, ...]:
    """Dimensions whose size or coordinate values differ between files."""
    if len(scans) < 2:
        return ()
    dims: list[str] = []
    for dim in scans[0].dims:
        sizes = {s.dims.get(dim) for s in scans}
        values = {tuple(s.coords[dim]) if dim in s.coords else None for s in scans}
        units = {str(s.variables[dim].attrs.get("units")) if dim in s.variables else None for s in scans}
        if len(sizes) > 1 or len(values) > 1 or len(units) > 1:
            dims.append(dim)
    if not dims:
        raise AggregationError(
            f"the {len(scans)} files have identical coordinates along every dimension "
            f"(duplicates? e.g. {scans[0].url} and {scans[1].url}); set concat_dims if they "
            "should be stacked"
        )
    return tuple(dims)


# ---------------------------------------------------------------------------
# ordering files along concatenation dimensions
# ---------------------------------------------------------------------------
@dataclass
class _Axis:
    """The blocks of one concatenation dimension, in order."""

    dim: str
    block_of_file: list[int]
    starts: list[int]
    sizes: list[int]
    values: list[np.ndarray]  # per block: coordinate values encoded in the output units
    units: str | None
    notes: list[str]
    block_units: list[str | None] = None  # type: ignore[assignment]
    calendar: str = "standard"

    @property
    def length(self) -> int:
        return sum(self.sizes)


def _is_time_units(units: Any) -> bool:
    return isinstance(units, str) and " since " in units


def _decode_times(values: Any, units: str, calendar: str, url: str, dim: str) -> list[Any]:
    import cftime

    try:
        dates = cftime.num2date(np.asarray(values), units, calendar, only_use_cftime_datetimes=True)
        if np.ma.is_masked(dates):
            raise ValueError("some values are missing (fill values or NaN)")
        return list(np.ma.getdata(dates).reshape(-1))
    except Exception as err:
        raise AggregationError(
            f"{url}: cannot decode coordinate {dim!r} with units {units!r} and calendar {calendar!r}: {err}"
        ) from err


def _decode_all_times(
    scans: Sequence[FileScan], selected: list[dict[str, VariableScan]], dim: str, calendar: str
) -> list[list[Any]]:
    """Each file's ``dim`` values as dates: one cftime call per distinct units and dtype,
    not one per file (a file that fails is then decoded alone, to name it)."""
    groups: dict[tuple[str, str], list[int]] = {}
    arrays = [np.asarray(s.coords[dim]) for s in scans]
    for i, sel in enumerate(selected):
        groups.setdefault((sel[dim].attrs["units"], arrays[i].dtype.str), []).append(i)
    out: list[list[Any]] = [[] for _ in scans]
    for (units, _), members in groups.items():
        try:
            dates = _decode_times(
                np.concatenate([arrays[i] for i in members]), units, calendar, scans[members[0]].url, dim
            )
        except AggregationError:
            for i in members:  # raises, naming the file
                out[i] = _decode_times(arrays[i], units, calendar, scans[i].url, dim)
            raise
        start = 0
        for i in members:
            out[i] = dates[start : start + len(arrays[i])]
            start += len(arrays[i])
    return out


def _as_is(value: Any) -> Any:
    return value


def _show_time(value: Any, *, units: str, calendar: str, dim: str) -> Any:
    return _decode_times(np.array([value]), units, calendar, "", dim)[0]


def _strictly_monotonic(key: tuple[Any, ...]) -> bool:
    """Strictly increasing or strictly decreasing (numbers vectorised; dates compared in Python)."""
    if all(isinstance(k, int | float) for k in (key[0], key[-1])):
        try:
            steps = np.diff(np.asarray(key, dtype=np.float64 if isinstance(key[0], float) else None))
        except (TypeError, ValueError):
            steps = None
        if steps is not None and steps.dtype.kind in "iuf":
            return bool(np.all(steps > 0) or np.all(steps < 0))
    rising = [key[i + 1] > key[i] for i in range(len(key) - 1)]
    falling = [key[i + 1] < key[i] for i in range(len(key) - 1)]
    return all(rising) or all(falling)


def order_along(dim: str, scans: Sequence[FileScan], selected: list[dict[str, VariableScan]]) -> _Axis:
    """Group files into blocks along ``dim`` and order the blocks by decoded coordinate."""
    notes: list[str] = []
    # order by the coordinate even when keep/drop leaves it out of the product
    selected = [
        {**sel, dim: s.variables[dim]} if dim in s.variables else sel
        for s, sel in zip(scans, selected, strict=True)
    ]
    has_coord = [dim in s.coords and dim in sel for s, sel in zip(scans, selected, strict=True)]
    if not any(has_coord):
        # no coordinate variable: keep the manifest order, one block per file
        sizes = [s.dims[dim] for s in scans]
        notes.append(f"dimension {dim!r} has no coordinate variable; files are kept in manifest order")
        starts = list(np.cumsum([0, *sizes[:-1]]).tolist())
        return _Axis(
            dim,
            list(range(len(scans))),
            starts,
            sizes,
            [np.arange(n) for n in sizes],
            None,
            notes,
            [None] * len(sizes),
        )
    if not all(has_coord):
        bad = next(s.url for s, h in zip(scans, has_coord, strict=True) if not h)
        raise AggregationError(f"{bad}: has no coordinate variable {dim!r}, other files do")

    units_set = {str(sel[dim].attrs.get("units")) for sel in selected}
    first_units = selected[0][dim].attrs.get("units")
    time_like = _is_time_units(first_units)
    keys: list[tuple[Any, ...]] = []
    decoded: list[list[Any]] = []
    show: Callable[[Any], Any] = _as_is  # a coordinate value as error messages give it
    if time_like:
        calendars = {str(sel[dim].attrs.get("calendar", "standard")) for sel in selected}
        calendars = {"standard" if c == "gregorian" else c for c in calendars}
        if len(calendars) > 1:
            raise AggregationError(
                f"files use different calendars for {dim!r}: {sorted(calendars)}; they cannot be concatenated"
            )
        calendar = calendars.pop()
        for s, sel in zip(scans, selected, strict=True):
            units = sel[dim].attrs.get("units")
            if not _is_time_units(units):
                raise AggregationError(f"{s.url}: coordinate {dim!r} has units {units!r}, others are times")
        lists = [s.coords[dim] for s in scans]
        flat = np.asarray([x for values in lists for x in values])
        if len(units_set) == 1 and flat.dtype.kind in "iuf" and bool(np.isfinite(flat).all()):
            # one encoding for every file: decoding is monotonic, so the stored numbers order,
            # group and compare exactly as the dates do; decode the extremes to prove the
            # units readable, and any values an error message shows
            units = str(first_units)
            if flat.size:
                _decode_times(np.array([flat.min(), flat.max()]), units, calendar, scans[0].url, dim)
            keys = [tuple(values) for values in lists]
            show = functools.partial(_show_time, units=units, calendar=calendar, dim=dim)
        else:
            decoded = _decode_all_times(scans, selected, dim, calendar)
            keys = [tuple(dates) for dates in decoded]
    else:
        if len(units_set) > 1:
            raise AggregationError(f"files give coordinate {dim!r} different units: {sorted(units_set)}")
        for s in scans:
            vals = list(s.coords[dim])
            decoded.append(vals)
            keys.append(tuple(vals))

    # blocks: files with the same coordinate values along dim
    block_keys: list[tuple[Any, ...]] = []
    index: dict[tuple[Any, ...], int] = {}
    block_of_file: list[int] = []
    for key in keys:
        if key not in index:
            index[key] = len(block_keys)
            block_keys.append(key)
        block_of_file.append(index[key])
    first_file_of_block: dict[int, int] = {}
    for f, b in enumerate(block_of_file):
        first_file_of_block.setdefault(b, f)
    for b, key in enumerate(block_keys):
        if len(key) == 0:
            url = scans[first_file_of_block[b]].url
            raise AggregationError(f"{url}: dimension {dim!r} has length 0; nothing to concatenate")
        if len(key) > 1 and not _strictly_monotonic(key):
            url = scans[first_file_of_block[b]].url
            raise AggregationError(f"{url}: coordinate {dim!r} is not strictly monotonic within the file")
    # every file must run the same way (a one-step file has no direction of its own)
    falling = {b: key[1] < key[0] for b, key in enumerate(block_keys) if len(key) > 1}
    if len(set(falling.values())) > 1:
        up = scans[first_file_of_block[next(b for b, f in falling.items() if not f)]].url
        down = scans[first_file_of_block[next(b for b, f in falling.items() if f)]].url
        raise AggregationError(
            f"coordinate {dim!r} increases in {up} but decreases in {down}; the files cannot "
            "form one monotonic coordinate"
        )
    descending = any(falling.values())
    order = sorted(range(len(block_keys)), key=lambda b: block_keys[b][0], reverse=descending)
    rank = {b: r for r, b in enumerate(order)}
    # overlaps and repeats between consecutive blocks
    for prev, nxt in itertools.pairwise(order):
        last, first = block_keys[prev][-1], block_keys[nxt][0]
        overlapping = first <= last if not descending else first >= last
        if overlapping:
            a = scans[first_file_of_block[prev]].url
            b = scans[first_file_of_block[nxt]].url
            shared = sorted(set(block_keys[prev]) & set(block_keys[nxt]))
            what = (
                f"both contain {dim} = {', '.join(str(show(v)) for v in shared[:3])}"
                + (f" (and {len(shared) - 3} more)" if len(shared) > 3 else "")
                if shared
                else f"overlap: {a} ends at {show(last)} after {b} starts at {show(first)}"
            )
            raise AggregationError(
                f"overlapping {dim!r} coordinates: {a} and {b} {what}; a product would hold "
                "duplicate or unordered steps"
            )
    sizes = [len(block_keys[b]) for b in order]
    starts = list(np.cumsum([0, *sizes[:-1]]).tolist())

    # output encoding of the coordinate values
    out_units = None
    values: list[np.ndarray] = []
    block_units: list[str | None] = []
    calendar = "standard"
    if time_like:
        first_file = first_file_of_block[order[0]]
        out_units = selected[first_file][dim].attrs.get("units")
        calendar = str(selected[first_file][dim].attrs.get("calendar", "standard"))
        dtype = np.dtype(selected[first_file][dim].dtype)
        for b in order:
            f = first_file_of_block[b]
            raw = np.asarray(scans[f].coords[dim])
            units = selected[f][dim].attrs.get("units")
            block_units.append(units)
            if units == out_units:
                values.append(raw)
                continue
            enc = _recode_times(raw, units, out_units, calendar, scans[f].url, dim)
            if dtype.kind in "iu" and np.all(enc == np.round(enc)):
                enc = enc.astype(dtype)
            values.append(enc)
        if len(units_set) > 1:
            notes.append(
                f"coordinate {dim!r}: files use {len(units_set)} different time units; values are "
                f"re-encoded in {out_units!r} (decoded times are unchanged)"
            )
    else:
        for b in order:
            values.append(np.asarray(scans[first_file_of_block[b]].coords[dim]))
            block_units.append(None)
    return _Axis(
        dim,
        [rank[b] for b in block_of_file],
        starts,
        sizes,
        values,
        out_units,
        notes,
        block_units,
        calendar,
    )


# ---------------------------------------------------------------------------
# the combine
# ---------------------------------------------------------------------------
def combine(
    scans: Sequence[FileScan],
    options: CombineOptions = CombineOptions(),
    read_variable: RawReader = read_variable_from_file,
    read_stored: StoredReader = read_stored_from_file,
) -> Aggregate:
    """Combine file scans into one :class:`Aggregate` or raise a precise error."""
    if not scans:
        raise AggregationError("no files to combine")
    selected = [select_variables(s, options) for s in scans]
    _check_same_variables(scans, selected)
    concat = options.concat_dims if options.concat_dims is not None else infer_concat_dims(scans, selected)
    for d in concat:
        missing = [s.url for s in scans if d not in s.dims]
        if missing:
            raise AggregationError(f"{missing[0]}: has no dimension {d!r} to concatenate along")
    axes = {d: order_along(d, scans, selected) for d in concat}

    # every cell of the block grid holds exactly one file
    grid_shape = tuple(len(axes[d].sizes) for d in concat)
    cell_of_file = [tuple(axes[d].block_of_file[i] for d in concat) for i in range(len(scans))]
    seen: dict[tuple[int, ...], int] = {}
    for i, cell in enumerate(cell_of_file):
        if cell in seen:
            raise AggregationError(
                f"{scans[seen[cell]].url} and {scans[i].url} cover the same region along "
                f"{list(concat)} (duplicate files?)"
            )
        seen[cell] = i
    if len(seen) != math.prod(grid_shape):
        for cell in np.ndindex(*grid_shape):
            if cell not in seen:
                where = ", ".join(
                    f"{d} block {c + 1} of {n}" for d, c, n in zip(concat, cell, grid_shape, strict=True)
                )
                raise AggregationError(f"no file covers {where}; the files do not tile a full grid")
    order = [seen[cell] for cell in np.ndindex(*grid_shape)] if grid_shape else [0]
    if not concat and len(scans) > 1:
        raise AggregationError("several files but no concatenation dimension")
    first = scans[order[0]]
    first_sel = selected[order[0]]
    notes = [n for d in concat for n in axes[d].notes]

    urls = [scans[i].url for i in order]
    url_pos = {u: k for k, u in enumerate(urls)}
    dims = dict(first.dims)
    for d in concat:
        dims[d] = axes[d].length
    for var in first_sel.values():
        for d, size in zip(var.dims, var.shape, strict=True):
            dims.setdefault(d, size)
    dims = {d: n for d, n in dims.items() if any(d in v.dims for v in first_sel.values())}

    variables: dict[str, AggVariable | FragmentedVariable] = {}
    bounds_of = {
        first_sel[d].attrs["bounds"]: d
        for d in concat
        if d in first_sel and isinstance(first_sel[d].attrs.get("bounds"), str)
    }
    ordered_urls = [scans[i].url for i in order]
    ordered_cells = [cell_of_file[i] for i in order]
    static_names = [n for n in first_sel if not any(d in concat for d in first_sel[n].dims)]
    proven = _identical_by_bytes(
        static_names,
        {n: [selected[i][n] for i in order] for n in static_names},
        ordered_urls,
        read_stored,
    )
    for name in first_sel:
        per_file = [selected[i][name] for i in order]
        var_concat = [d for d in concat if d in per_file[0].dims]
        attrs, attr_notes = _merge_var_attrs(
            name, per_file, [scans[i].url for i in order], axes, bounds_of, read_variable
        )
        notes.extend(attr_notes)
        if not var_concat:
            variables[name] = _static_variable(
                name, per_file, ordered_urls, read_variable, proven[name], url_pos, attrs
            )
            continue
        materialize = (name in axes or name in bounds_of) and (
            sum(v.nbytes for v in per_file) <= options.materialize_limit
        )
        if materialize:
            variables[name] = _materialized(
                name,
                per_file,
                [scans[i].url for i in order],
                axes,
                bounds_of,
                read_variable,
                attrs,
                order,
            )
        else:
            placed = (name, per_file, ordered_urls, axes, var_concat)
            variables[name] = (
                _fragmented(*placed, attrs, ordered_cells, read_variable)
                if options.fragments
                else _concatenated(*placed, url_pos, attrs, ordered_cells, read_variable)
            )

    attrs, global_notes = _merge_global_attrs([scans[i] for i in order])
    notes.extend(global_notes)
    fragments = [
        Fragment(
            url=scans[i].url,
            ranges={
                d: (
                    axes[d].starts[axes[d].block_of_file[i]],
                    axes[d].starts[axes[d].block_of_file[i]] + axes[d].sizes[axes[d].block_of_file[i]],
                )
                for d in concat
            },
        )
        for i in order
    ]
    return Aggregate(
        attrs=attrs,
        dims=dims,
        variables=variables,
        urls=urls,
        concat_dims=tuple(concat),
        fragments=fragments,
        notes=notes,
    )


def _same(a: Any, b: Any) -> bool:
    """Attribute equality: NaN equals NaN, numbers compare by value, other types must match."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return (bool(a == b) and type(a) is type(b)) or (
        isinstance(a, int | float) and isinstance(b, int | float) and a == b
    )


def _merge_global_attrs(scans: Sequence[FileScan]) -> tuple[dict[str, Any], list[str]]:
    merged = dict(scans[0].attrs)
    notes = []
    first = scans[0].attrs
    others = [first, *(s.attrs for s in scans[1:] if s.attrs != first)]  # equal dicts: nothing to note
    keys = sorted({k for attrs in others for k in attrs})
    for k in keys:
        vals = [attrs.get(k, _ABSENT) for attrs in others]
        if vals[0] is not _ABSENT and vals.count(vals[0]) == len(vals):
            continue  # all equal at C speed (attributes are JSON values: == implies _same)
        if all(v is not _ABSENT and _same(v, vals[0]) for v in vals):
            continue
        n_diff = sum(1 for v in vals if v is _ABSENT or not _same(v, vals[0]))
        if vals[0] is _ABSENT:
            notes.append(f"global attribute {k!r} is missing from the first file; it is left out")
            merged.pop(k, None)
        else:
            notes.append(
                f"global attribute {k!r} differs in {n_diff} of {len(scans)} files; "
                "the product keeps the first file's value"
            )
    return merged, notes


_ABSENT = object()


def _merge_var_attrs(
    name: str,
    per_file: list[VariableScan],
    urls: list[str],
    axes: dict[str, _Axis],
    bounds_of: dict[str, str],
    read_variable: RawReader = read_variable_from_file,
) -> tuple[dict[str, Any], list[str]]:
    first = per_file[0]
    notes = []
    # a variable along a concatenation dim may declare a valid range per file: merged below
    per_file_ranges = any(d in axes for d in first.dims) and len(per_file) > 1
    time_recoded = (name in axes and axes[name].units is not None) or (
        name in bounds_of and axes[bounds_of[name]].units is not None
    )
    # files whose attributes equal the first file's (dict equality implies _same key by key)
    # need no key-by-key look: the usual case, checked at C speed
    differing = [
        (var, url)
        for var, url in zip(per_file[1:], urls[1:], strict=True)
        if not (
            var.attrs == first.attrs
            and var.dtype == first.dtype
            and var.dims == first.dims
            and _same(var.fill_value, first.fill_value)
        )
    ]
    for var, url in differing:
        where = f"variable {name!r}: {url} differs from {urls[0]}"
        if var.dtype != first.dtype:
            raise AggregationError(f"{where} in data type ({var.dtype} vs {first.dtype})")
        if var.dims != first.dims:
            raise AggregationError(f"{where} in dimensions ({var.dims} vs {first.dims})")
        if not _same(var.fill_value, first.fill_value):
            raise AggregationError(f"{where} in _FillValue ({var.fill_value} vs {first.fill_value})")
        for key in PACKING_ATTRS:
            if (time_recoded and key == "units") or (per_file_ranges and key in RANGE_ATTRS):
                continue
            a, b = var.attrs.get(key, _ABSENT), first.attrs.get(key, _ABSENT)
            if not (a is _ABSENT and b is _ABSENT) and (a is _ABSENT or b is _ABSENT or not _same(a, b)):
                raise AggregationError(
                    f"{where} in {key} ({_show(a)} vs {_show(b)}); one product cannot decode both"
                )
    attrs = dict(first.attrs)
    if per_file_ranges and differing:
        hull = _merged_range(name, per_file, urls, read_variable)
        if hull is not None:
            for key in RANGE_ATTRS:
                attrs.pop(key, None)
            attrs.update(hull)
            shown = ", ".join(f"{k} {_show(v)}" for k, v in hull.items())
            notes.append(
                f"variable {name!r}: the files declare different valid ranges; the product "
                f"declares their hull ({shown}), which masks each file's values as its own does "
                "(checked value by value)"
            )
    if time_recoded:
        axis = axes[name] if name in axes else axes[bounds_of[name]]
        if "units" in attrs or name in axes:
            attrs["units"] = axis.units
    others = [first, *(var for var, _ in differing)]
    keys = sorted({k for v in others for k in v.attrs} - set(PACKING_ATTRS))
    for k in keys:
        vals = [v.attrs.get(k, _ABSENT) for v in others]
        if vals[0] is not _ABSENT and vals.count(vals[0]) == len(vals):
            continue  # as in _merge_global_attrs
        if all(v is not _ABSENT and _same(v, vals[0]) for v in vals):
            continue
        if vals[0] is _ABSENT:
            attrs.pop(k, None)
        notes.append(f"attribute {name}:{k} differs between files; the product keeps the first file's value")
    return attrs, notes


def _merged_range(
    name: str, per_file: list[VariableScan], urls: list[str], read_variable: RawReader
) -> dict[str, Any] | None:
    """The hull of the files' valid ranges (:mod:`.ranges`), or None if they all agree;
    refused, naming the files, when the files declare them differently or a file holds a
    value the hull would unmask."""
    declared = [declared_range(v.attrs) for v in per_file]
    if all(_same_attrs(d, declared[0]) for d in declared[1:]):
        return None
    k = next(k for k, d in enumerate(declared) if not _same_attrs(d, declared[0]))
    where = f"variable {name!r}: {urls[k]} differs from {urls[0]}"
    hull = range_hull(declared)
    if hull is None:
        key = next(
            key
            for key in RANGE_ATTRS
            if not _same(declared[k].get(key, _ABSENT), declared[0].get(key, _ABSENT))
        )
        a, b = declared[k].get(key, _ABSENT), declared[0].get(key, _ABSENT)
        raise AggregationError(
            f"{where} in {key} ({_show(a)} vs {_show(b)}), and the files declare their valid "
            "ranges with different attributes; one product cannot decode both"
        )
    for var, url, own in zip(per_file, urls, declared, strict=True):
        if _same_attrs(own, hull):
            continue
        missing = [var.fill_value, *np.atleast_1d(var.attrs.get("missing_value", [])).tolist()]
        count, example = unmasked_by_hull(read_variable(var, url), own, hull, missing)
        if count:
            key = next(iter(own))
            raise AggregationError(
                f"{where} in {key} ({_show(own[key])} vs {_show(declared[0][key])}); one product "
                f"cannot decode both: {count} stored values of {url} (e.g. {example!r}) lie outside "
                f"its own range but inside the files' hull ({_show(hull[key])}), so CF readers "
                "would show values the file masks"
            )
    return hull


def _same_attrs(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)


def _show(v: Any) -> str:
    return "absent" if v is _ABSENT else repr(v)


def _static_variable(
    name: str,
    per_file: list[VariableScan],
    urls: list[str],
    read_variable: RawReader,
    proven: set[int],
    url_pos: dict[str, int],
    attrs: dict[str, Any],
) -> AggVariable:
    """A variable without concatenation dims: identical everywhere, referenced from the first file."""
    first = per_file[0]
    for var, url in zip(per_file[1:], urls[1:], strict=True):
        if var.shape != first.shape:
            raise AggregationError(
                f"variable {name!r} has shape {var.shape} in {url} but {first.shape} in {urls[0]}"
            )
    if len(per_file) > 1:
        # files proven identical by their stored bytes (``proven``) need no decoding; the rest
        # (recompressed, rechunked, or really different) are compared value by value
        reference: np.ndarray | None = None
        for k, (var, url) in enumerate(zip(per_file[1:], urls[1:], strict=True), start=1):
            if k in proven:
                continue
            if reference is None:
                reference = read_variable(first, urls[0])
            values = read_variable(var, url)
            if not _arrays_identical(reference, values):
                n = int(np.count_nonzero(~_equal_mask(reference, values)))
                raise AggregationError(
                    f"variable {name!r} has no concatenation dimension but its values differ "
                    f"between {urls[0]} and {url} ({n} of {reference.size} values); "
                    "it cannot appear once in the product"
                )
    return AggVariable(
        name=name,
        dims=first.dims,
        shape=first.shape,
        dtype=first.dtype,
        chunks=first.chunks,
        filters=first.filters,
        fill_value=first.fill_value,
        attrs=attrs,
        url_index=np.where(first.offsets != MISSING, url_pos[urls[0]], -1).astype(np.int64),
        offsets=first.offsets.copy(),
        lengths=first.lengths.copy(),
        inline=dict(first.inline),
    )


def _equal_mask(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    eq = a == b
    if a.dtype.kind == "f":
        eq |= np.isnan(a) & np.isnan(b)
    return eq


def _arrays_identical(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and bool(np.all(_equal_mask(a, b)))


def _materialized(
    name: str,
    per_file: list[VariableScan],
    urls: list[str],
    axes: dict[str, _Axis],
    bounds_of: dict[str, str],
    read_variable: RawReader,
    attrs: dict[str, Any],
    order: list[int],
) -> AggVariable:
    """Copy a small coordinate (or its bounds) into the product as one chunk.

    Their per-file chunking need not match, and time values are re-encoded in
    the common units chosen by :func:`order_along`.
    """
    first = per_file[0]
    source_dtype = np.dtype(first.dtype)
    dim = name if name in axes else bounds_of[name]
    axis_pos = first.dims.index(dim)
    axis = axes[dim]
    if name in axes:
        parts = list(axis.values)
    else:
        # one file per block along this dim: files in a block share the coordinate values
        first_file_of_block: dict[int, int] = {}
        for k, i in enumerate(order):
            first_file_of_block.setdefault(axis.block_of_file[i], k)
        parts = []
        for block in sorted(first_file_of_block):
            k = first_file_of_block[block]
            values = read_variable(per_file[k], urls[k])
            if axis.units is not None and axis.block_units[block] != axis.units:
                values = _recode_times(
                    values, axis.block_units[block], axis.units, axis.calendar, urls[k], name
                )
            parts.append(values)
    data = np.concatenate([np.asarray(p) for p in parts], axis=axis_pos)
    if data.dtype != source_dtype and np.array_equal(data.astype(source_dtype).astype(data.dtype), data):
        data = data.astype(source_dtype)
    data = np.ascontiguousarray(data)
    shape = data.shape
    n = 1 if all(shape) else 0
    return AggVariable(
        name=name,
        dims=first.dims,
        shape=shape,
        dtype=data.dtype.str,
        chunks=tuple(max(s, 1) for s in shape),
        filters=None,
        fill_value=first.fill_value,
        attrs=attrs,
        url_index=np.full(n, -1, dtype=np.int64),
        offsets=np.full(n, MISSING, dtype=np.int64),
        lengths=np.zeros(n, dtype=np.int64),
        inline={0: data.tobytes()} if n else {},
    )


def _recode_times(
    values: np.ndarray, units: str | None, out_units: str, calendar: str, url: str, name: str
) -> np.ndarray:
    """Re-encode time values from ``units`` to ``out_units``, exactly or not at all."""
    import cftime

    dates = cftime.num2date(values, units, calendar, only_use_cftime_datetimes=True)
    enc = np.asarray(cftime.date2num(dates, out_units, calendar), dtype=np.float64)
    back = cftime.num2date(enc, out_units, calendar, only_use_cftime_datetimes=True)
    if not np.array_equal(np.asarray(back), np.asarray(dates)):
        raise NotRepresentableError(
            f"{url}: times of {name!r} in units {units!r} cannot be re-encoded exactly in {out_units!r}"
        )
    return enc


@dataclass(frozen=True)
class _Placement:
    """Where one file's values of a variable go along the concatenation dims it spans."""

    k: int
    """The file's position in ``per_file``."""
    block: tuple[int, ...]
    """Its block index along each of the variable's concatenation dims."""
    starts: tuple[int, ...]
    """Its start index along each of them."""


BlockCheck = Callable[[str, int, str, int, int, int], None]
"""``check(url, axis, dim, block, start, size)``: a writer's own rule for one file's block
(Kerchunk: a whole number of chunks); raises to refuse it."""


def _place_files(
    name: str,
    per_file: list[VariableScan],
    urls: list[str],
    axes: dict[str, _Axis],
    var_concat: list[str],
    cells: list[tuple[int, ...]],
    read_variable: RawReader,
    check: BlockCheck | None = None,
) -> list[_Placement]:
    """Place each file's values of ``name`` along ``var_concat``, one file per block.

    The files must agree in length along the other dims, and each must hold as many steps
    as its coordinate along ``var_concat``. A variable that spans only some of the
    concatenation dims (``lat_bnds(lat)`` in files split along time and lat) is held by
    several files per block: it is placed from the first of them, and the others must hold
    identical values.
    """
    first = per_file[0]
    concat_order = list(axes)
    for var, url in zip(per_file[1:], urls[1:], strict=True):
        for ax, d in enumerate(var.dims):
            if d not in var_concat and var.shape[ax] != first.shape[ax]:
                raise AggregationError(
                    f"variable {name!r}: dimension {d!r} has length {var.shape[ax]} in {url} but "
                    f"{first.shape[ax]} in {urls[0]}"
                )
    placements: list[_Placement] = []
    holder: dict[tuple[int, ...], int] = {}  # block along var_concat -> first file holding it
    for k, (var, url, cell) in enumerate(zip(per_file, urls, cells, strict=True)):
        starts = []
        for d in var_concat:
            ax = first.dims.index(d)
            axis = axes[d]
            block = cell[concat_order.index(d)]
            start, size = axis.starts[block], axis.sizes[block]
            if check is not None:
                check(url, ax, d, block, start, size)
            if var.shape[ax] != size:
                raise AggregationError(
                    f"variable {name!r}: {url} has {var.shape[ax]} steps along {d!r}, its coordinate {size}"
                )
            starts.append(start)
        block_key = tuple(cell[concat_order.index(d)] for d in var_concat)
        if block_key in holder:
            j = holder[block_key]
            if not _arrays_identical(read_variable(per_file[j], urls[j]), read_variable(var, url)):
                raise AggregationError(
                    f"variable {name!r} spans only {var_concat} of the concatenation dims "
                    f"{concat_order}, but {urls[j]} and {url} hold different values for the same "
                    f"block along {var_concat}; it cannot appear once in the product"
                )
            continue
        holder[block_key] = k
        placements.append(_Placement(k, block_key, tuple(starts)))
    return placements


def _concatenated_shape(
    first: VariableScan, axes: dict[str, _Axis], var_concat: list[str]
) -> tuple[int, ...]:
    shape = list(first.shape)
    for d in var_concat:
        shape[first.dims.index(d)] = axes[d].length
    return tuple(shape)


def _concatenated(
    name: str,
    per_file: list[VariableScan],
    urls: list[str],
    axes: dict[str, _Axis],
    var_concat: list[str],
    url_pos: dict[str, int],
    attrs: dict[str, Any],
    cells: list[tuple[int, ...]],
    read_variable: RawReader = read_variable_from_file,
) -> AggVariable:
    """Concatenate chunk tables along the concatenation dims (regular grid required).

    Files are placed by :func:`_place_files`; a variable held by several files per block
    is referenced from the first of them.
    """
    first = per_file[0]
    # report every reason the files cannot share one chunk table, not only the first
    others = list(zip(per_file[1:], urls[1:], strict=True))
    chunk_diff = [(url, var.chunks) for var, url in others if var.chunks != first.chunks]
    codec_diff = [(url, var.filters) for var, url in others if var.filters != first.filters]
    problems = []
    if chunk_diff:
        more = f" (and {len(chunk_diff) - 1} more files)" if len(chunk_diff) > 1 else ""
        problems.append(
            f"the files differ in chunking: chunk shape {chunk_diff[0][1]} in "
            f"{chunk_diff[0][0]}{more} differs from {first.chunks} in {urls[0]}"
        )
    if codec_diff:
        more = f" (and {len(codec_diff) - 1} more files)" if len(codec_diff) > 1 else ""
        problems.append(
            f"the files differ in compression: {codec_diff[0][0]}{more} is compressed with "
            f"{codec_diff[0][1]} but {urls[0]} with {first.filters}"
        )
    if problems:
        raise NotRepresentableError(
            f"variable {name!r}: " + "; ".join(problems) + "; Kerchunk needs one chunk shape "
            "and one codec list per variable (use product kind 'cfa' or 'zarr')"
        )
    chunks = first.chunks
    last_block = {d: len(axes[d].sizes) - 1 for d in var_concat}

    def whole_chunks(url: str, ax: int, d: str, block: int, start: int, size: int) -> None:
        c = chunks[ax]
        if start % c or (size % c and block != last_block[d]):
            bad = size if size % c else start
            raise NotRepresentableError(
                f"variable {name!r}: {url} holds {size} steps along {d!r} (starting at index "
                f"{start}) but the chunk length is {c}; Kerchunk needs every file except the "
                f"last to hold a whole number of chunks ({bad} is not a multiple of {c}). "
                "Use product kind 'cfa' for files of uneven length"
            )

    placements = _place_files(name, per_file, urls, axes, var_concat, cells, read_variable, whole_chunks)
    shape = _concatenated_shape(first, axes, var_concat)
    out_grid = chunk_grid(shape, chunks)
    n_out = math.prod(out_grid)
    url_index = np.full(n_out, -1, dtype=np.int64)
    offsets = np.full(n_out, MISSING, dtype=np.int64)
    lengths = np.zeros(n_out, dtype=np.int64)
    inline: dict[int, bytes] = {}
    filled = np.zeros(n_out, dtype=bool)
    templates: dict[tuple[int, ...], np.ndarray] = {}
    for placement in placements:
        var, url = per_file[placement.k], urls[placement.k]
        chunk_origin = [0] * len(first.dims)
        for d, start in zip(var_concat, placement.starts, strict=True):
            ax = first.dims.index(d)
            chunk_origin[ax] = start // chunks[ax]
        local_grid = var.grid
        if math.prod(local_grid) == 0:
            continue
        if not out_grid:
            flat = np.zeros(1, dtype=np.int64)
        else:
            # a file's chunks land at (its own flat positions in the output grid) + (its
            # origin's flat position): the first part is the same for every file of one grid
            template = templates.get(local_grid)
            if template is None:
                local_idx = np.unravel_index(np.arange(math.prod(local_grid)), local_grid)
                template = templates[local_grid] = np.ravel_multi_index(local_idx, out_grid)
            flat = template + int(np.ravel_multi_index(tuple(chunk_origin), out_grid))
        if filled[flat].any():
            raise AggregationError(f"variable {name!r}: chunks of {url} overlap another file's")
        filled[flat] = True
        stored = var.offsets != MISSING
        url_index[flat[stored]] = url_pos[url]
        offsets[flat[stored]] = var.offsets[stored]
        lengths[flat[stored]] = var.lengths[stored]
        for local_flat, data in var.inline.items():
            inline[int(flat[local_flat])] = data
    return AggVariable(
        name=name,
        dims=first.dims,
        shape=shape,
        dtype=first.dtype,
        chunks=chunks,
        filters=first.filters,
        fill_value=first.fill_value,
        attrs=attrs,
        url_index=url_index,
        offsets=offsets,
        lengths=lengths,
        inline=inline,
    )


def _fragmented(
    name: str,
    per_file: list[VariableScan],
    urls: list[str],
    axes: dict[str, _Axis],
    var_concat: list[str],
    attrs: dict[str, Any],
    cells: list[tuple[int, ...]],
    read_variable: RawReader = read_variable_from_file,
) -> FragmentedVariable:
    """Hold a variable as whole-file fragments, one per block along ``var_concat``.

    Chunk shapes, codecs and block lengths may differ between files; everything else is
    placed and checked as for Kerchunk (:func:`_place_files`).
    """
    first = per_file[0]
    placements = _place_files(name, per_file, urls, axes, var_concat, cells, read_variable)
    sizes = tuple(
        tuple(axes[d].sizes) if d in var_concat else (first.shape[ax],) for ax, d in enumerate(first.dims)
    )
    grid = tuple(len(row) for row in sizes)
    uris = np.empty(grid, dtype=object)
    for placement in placements:
        index = [0] * len(first.dims)
        for d, block in zip(var_concat, placement.block, strict=True):
            index[first.dims.index(d)] = block
        uris[tuple(index)] = urls[placement.k]
    return FragmentedVariable(
        name=name,
        dims=first.dims,
        shape=_concatenated_shape(first, axes, var_concat),
        dtype=first.dtype,
        fill_value=first.fill_value,
        attrs=attrs,
        sizes=sizes,
        uris=uris,
        identifiers=name,
    )
