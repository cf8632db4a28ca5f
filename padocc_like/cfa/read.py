"""Reading aggregated data: only the fragments a request touches, each in canonical form.

A fragment is opened when its values are needed and closed straight after. Its values are
put into the canonical form of the aggregation variable (CF-1.13 section 2.8.2): size-1
dimensions it omits are inserted, its own missing values become the aggregation variable's
``_FillValue``, packed values are unpacked, reference-time units are converted, and the
result is cast to the aggregation variable's data type. Values returned are the raw values
of the aggregation variable; xarray decodes them like any other variable.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np
from xarray.backends import BackendArray
from xarray.core import indexing

from padocc_like.cfa.errors import FragmentError, FragmentNotFoundError
from padocc_like.cfa.parse import AggregationVariable, missing_mask
from padocc_like.cfa.uris import open_netcdf, resolve_uri, substitute

if TYPE_CHECKING:
    import netCDF4

_SECONDS = {
    **dict.fromkeys(("microseconds", "microsecond", "us"), Fraction(1, 10**6)),
    **dict.fromkeys(("milliseconds", "millisecond", "ms"), Fraction(1, 1000)),
    **dict.fromkeys(("seconds", "second", "secs", "sec", "s"), Fraction(1)),
    **dict.fromkeys(("minutes", "minute", "mins", "min"), Fraction(60)),
    **dict.fromkeys(("hours", "hour", "hrs", "hr", "h"), Fraction(3600)),
    **dict.fromkeys(("days", "day", "d"), Fraction(86400)),
    **dict.fromkeys(("weeks", "week"), Fraction(7 * 86400)),
}
_SINCE = re.compile(r"^\s*(\w+)\s+since\s+(.+?)\s*$", re.IGNORECASE)
_CALENDAR_ALIASES = {"gregorian": "standard", "": "standard"}


@dataclass(frozen=True)
class FragmentOptions:
    """How fragment URIs become locations and how remote ones are opened."""

    source: str
    """Absolute local path or URL of the aggregation file (the base of relative URIs)."""
    substitutions: Mapping[str, str] = field(default_factory=dict)
    """Reader substitutions: ``${name}`` tokens, or URI prefixes replaced by another prefix."""
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    """fsspec options for remote fragments."""


class AggregatedArray(BackendArray):
    """The aggregated data of one aggregation variable, read lazily fragment by fragment."""

    def __init__(self, variable: AggregationVariable, options: FragmentOptions) -> None:
        self.variable = variable
        self.options = options
        self.shape = variable.shape
        self.dtype = variable.dtype

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
        return indexing.explicit_indexing_adapter(key, self.shape, indexing.IndexingSupport.OUTER, self._read)

    def _read(self, key: tuple[Any, ...]) -> np.ndarray:
        """Orthogonal read: ``key`` holds an int, a slice or an integer array per dimension."""
        var = self.variable
        wanted = [_positions(k, n) for k, n in zip(key, self.shape, strict=True)]
        out = np.empty(tuple(len(p) for p in wanted), dtype=self.dtype)
        offsets = var.offsets
        # per dimension: fragment index -> where in the request its positions are
        groups = [
            _by_fragment(np.searchsorted(o[1:], p, side="right"))
            for o, p in zip(offsets, wanted, strict=True)
        ]
        for frag in itertools.product(*groups):
            where = [g[k] for g, k in zip(groups, frag, strict=True)]
            local = [p[w] - o[k] for p, w, o, k in zip(wanted, where, offsets, frag, strict=True)]
            out[_as_index(where)] = self._fragment(frag, local)
        return np.asarray(out[tuple(0 if isinstance(k, int | np.integer) else slice(None) for k in key)])

    def _fragment(self, frag: tuple[int, ...], local: list[np.ndarray]) -> np.ndarray | Any:
        """Values at positions ``local`` (orthogonal, per dimension) of fragment ``frag``."""
        var, fragments = self.variable, self.variable.fragments
        shape = tuple(len(p) for p in local)
        if fragments.unique_values is not None:
            value = fragments.unique_values[frag]
            return np.full(shape, var.fill_value if value is np.ma.masked else value, dtype=var.dtype)
        assert fragments.uris is not None and fragments.identifiers is not None
        uris: tuple[str, ...] = fragments.uris[frag]
        if not uris:  # wholly missing (CFA-0.6.2)
            return np.full(shape, var.fill_value, dtype=var.dtype)
        canonical = tuple(s[k] for s, k in zip(var.fragment_sizes, frag, strict=True))
        where = f"{self.options.source}: aggregation variable {var.name!r}, fragment {frag}"
        tried = []
        for uri in uris:
            location = self._locate(uri, fragments.substitutions, where)
            tried.append(location)
            try:
                with open_netcdf(location, self.options.storage_options) as ds:
                    target = _fragment_variable(ds, fragments.identifiers[frag], f"{where} ({location})")
                    return read_canonical(target, var, canonical, local, f"{where} ({location})")
            except FileNotFoundError:
                continue
            except (OSError, RuntimeError, ValueError, ImportError) as err:
                raise FragmentError(f"{where}: cannot read {location!r}: {err}") from err
        raise FragmentNotFoundError(f"{where}: no such file: {', '.join(map(repr, tried))}")

    def _locate(self, uri: str, tokens: Mapping[str, str], where: str) -> str:
        user = self.options.substitutions
        user_tokens = {k: v for k, v in user.items() if k.startswith("${")}
        prefixes = {k: v for k, v in user.items() if not k.startswith("${")}
        try:
            return resolve_uri(substitute(uri, {**tokens, **user_tokens}, prefixes), self.options.source)
        except ValueError as err:
            raise FragmentError(f"{where}: {err}") from err


def _as_index(where: list[np.ndarray]) -> Any:
    """An orthogonal index of ``where``: basic slices where positions are consecutive (a
    view, copied into at memory speed), ``np.ix_`` otherwise."""
    slices = []
    for w in where:
        if not w.size or w[-1] - w[0] + 1 != w.size or (w.size > 1 and np.any(np.diff(w) != 1)):
            return np.ix_(*where)
        slices.append(slice(int(w[0]), int(w[-1]) + 1))
    return tuple(slices)


def _by_fragment(owner: np.ndarray) -> dict[int, np.ndarray]:
    """Fragment index -> the indices of the positions it owns (``owner`` gives each position's)."""
    if not owner.size:
        return {}
    order = np.argsort(owner, kind="stable")
    keys, starts = np.unique(owner[order], return_index=True)
    return dict(zip(keys.tolist(), np.split(order, starts[1:]), strict=True))


def _positions(key: Any, n: int) -> np.ndarray:
    """The positions a key component selects along a dimension of length ``n``."""
    if isinstance(key, slice):
        return np.arange(*key.indices(n), dtype=np.int64)
    return np.atleast_1d(np.asarray(key, dtype=np.int64)) % max(n, 1)


def _fragment_variable(ds: netCDF4.Dataset, identifier: str, where: str) -> netCDF4.Variable:
    """The variable an identifier names: ``tas``, ``/tas`` or ``/grp/tas``."""
    *groups, name = identifier.strip("/").split("/")
    grp = ds
    for part in groups:
        if part not in grp.groups:
            raise FragmentError(f"{where}: has no group {part!r} (identifier {identifier!r})")
        grp = grp.groups[part]
    if name not in grp.variables:
        raise FragmentError(f"{where}: has no variable {identifier!r}")
    return grp.variables[name]


def read_canonical(
    target: netCDF4.Variable,
    var: AggregationVariable,
    canonical: tuple[int, ...],
    local: Sequence[np.ndarray],
    where: str,
) -> np.ndarray:
    """Positions ``local`` of fragment variable ``target``, in the canonical form of ``var``.

    ``canonical`` is the fragment's shape in the aggregated data; ``local`` gives, per
    aggregated dimension, the wanted positions within the fragment.
    """
    axes = _fragment_axes(target, var.dims, canonical, where)
    target.set_auto_maskandscale(False)
    reads, takes = [], {}
    for j, positions in enumerate(local):
        if j not in axes:
            if np.any(positions):
                raise FragmentError(f"{where}: position {positions.max()} of an omitted size-1 dimension")
            takes[j] = positions
            continue
        read, take = _read_slice(positions)
        reads.append(read)
        if take is not None:
            takes[j] = take
    raw = np.asarray(target[tuple(reads)])
    raw = np.expand_dims(raw, tuple(j for j in range(len(local)) if j not in axes))
    for j, take in takes.items():
        raw = np.take(raw, take, axis=j)
    attrs = {k: target.getncattr(k) for k in target.ncattrs()}
    return canonical_values(raw, attrs, var, where)


def _fragment_axes(
    target: netCDF4.Variable, dims: tuple[str, ...], canonical: tuple[int, ...], where: str
) -> list[int]:
    """For each axis of the fragment variable, the aggregated dimension it holds.

    A fragment may omit size-1 dimensions; where its dimension names are aggregated
    dimensions they decide, otherwise sizes are matched in order.
    """
    shape, names = tuple(target.shape), tuple(target.dimensions)
    axes: list[int] | None = None
    if len(shape) == len(canonical):
        axes = list(range(len(canonical)))
    elif len(shape) < len(canonical):
        if set(names) <= set(dims) and len(set(names)) == len(names):
            axes = [dims.index(n) for n in names]
        else:
            axes, j = [], 0
            for size in shape:
                while j < len(canonical) and canonical[j] != size and canonical[j] == 1:
                    j += 1
                axes.append(j)
                j += 1
    fits = (
        axes is not None
        and axes == sorted(set(axes))
        and all(j < len(canonical) and canonical[j] == s for j, s in zip(axes, shape, strict=True))
        and all(canonical[j] == 1 for j in set(range(len(canonical))) - set(axes))
    )
    if not fits or axes is None:
        raise FragmentError(
            f"{where}: variable {target.name!r} has shape {shape} {names}, which does not fit the "
            f"fragment's place {canonical} in the aggregated dimensions {dims} (only size-1 dimensions may be omitted)"
        )
    return axes


def _read_slice(positions: np.ndarray) -> tuple[slice, np.ndarray | None]:
    """A slice reading ``positions``, and the positions to take from what it reads (or None)."""
    first = int(positions[0])
    if len(positions) == 1:
        return slice(first, first + 1), None
    steps = np.diff(positions)
    if steps[0] > 0 and np.all(steps == steps[0]):
        return slice(first, int(positions[-1]) + 1, int(steps[0])), None
    low = int(positions.min())
    return slice(low, int(positions.max()) + 1), positions - low


def canonical_values(
    raw: np.ndarray, attrs: Mapping[str, Any], var: AggregationVariable, where: str
) -> np.ndarray:
    """Raw fragment values with the fragment's attributes -> raw values of the aggregation variable.

    Values are unpacked (and repacked when the aggregation variable is itself packed) only
    when the two are stored differently, so identically packed fragments stay exact.
    """
    if var.dtype.kind not in "biufc" or raw.dtype.kind not in "biufc":
        return raw.astype(var.dtype)
    storage, agg_storage = _storage(attrs), _storage(var.attrs)
    if (
        raw.dtype == var.dtype
        and storage == agg_storage
        and _same_units(attrs.get("units"), var.attrs.get("units"))
        and _flags(attrs, raw.dtype) <= _flags(var.attrs, raw.dtype)
    ):
        return raw  # stored alike, and every value the fragment calls missing the aggregation does too
    missing = missing_mask(raw, attrs)
    if missing.any():  # so that no arithmetic or cast below sees a fill value
        raw = np.where(missing, np.zeros((), raw.dtype), raw)
    if storage == agg_storage and _same_units(attrs.get("units"), var.attrs.get("units")):
        data = raw
    else:
        data = _convert_units(_unpack(raw, storage, var), attrs, var, where)
        data = _pack(data, agg_storage, var)
    if data.dtype != var.dtype:
        if var.dtype.kind in "iu" and data.dtype.kind in "fc":
            data = np.rint(data)
        data = data.astype(var.dtype)
    if missing.any():
        data = np.where(missing, np.asarray(var.fill_value, dtype=var.dtype), data)
    return data


def _flags(attrs: Mapping[str, Any], dtype: np.dtype) -> set[bytes]:
    """The bit patterns, in ``dtype``, of the ``_FillValue`` and ``missing_value`` of ``attrs``
    (a flag that ``dtype`` cannot hold exactly gets a pattern no value has)."""
    out: set[bytes] = set()
    for key in ("_FillValue", "missing_value"):
        for flag in np.asarray(attrs.get(key, [])).ravel():
            with np.errstate(all="ignore"):
                cast = np.asarray(flag).astype(dtype)
            same = (
                np.isnan(cast) and np.isnan(flag) if dtype.kind in "fc" and np.isnan(cast) else cast == flag
            )
            out.add(cast.tobytes() if same else b"inexact:" + repr(flag).encode())
    return out


def _storage(attrs: Mapping[str, Any]) -> tuple[Any, Any, bool]:
    """How values are stored: ``scale_factor``, ``add_offset``, whether ``_Unsigned``."""
    unsigned = str(attrs.get("_Unsigned", "")).lower() == "true"
    return attrs.get("scale_factor"), attrs.get("add_offset"), unsigned


def _unpack(raw: np.ndarray, storage: tuple[Any, Any, bool], var: AggregationVariable) -> np.ndarray:
    """Physical values, computed as xarray decodes them (in the aggregation's float type if it has one)."""
    scale, offset, unsigned = storage
    if unsigned and raw.dtype.kind == "i":
        raw = raw.view(raw.dtype.str.replace("i", "u"))
    if scale is None and offset is None:
        return raw
    packed = var.attrs.get("scale_factor") is not None or var.attrs.get("add_offset") is not None
    data = raw.astype(var.dtype if var.dtype.kind == "f" and not packed else np.float64)
    if scale is not None:
        data *= scale
    if offset is not None:
        data += offset
    return data


def _pack(data: np.ndarray, storage: tuple[Any, Any, bool], var: AggregationVariable) -> np.ndarray:
    """Physical values in the aggregation variable's own packing (if any)."""
    scale, offset, unsigned = storage
    if scale is not None or offset is not None:
        data = (np.asarray(data, dtype=np.float64) - (offset or 0)) / (1 if scale is None else scale)
    if unsigned and var.dtype.kind == "i":
        data = np.rint(data).astype(var.dtype.str.replace("i", "u")).view(var.dtype)
    return data


def _same_units(have: Any, want: Any) -> bool:
    """Units are the same, or one side has none (taken to mean the same)."""
    return have is None or want is None or " ".join(str(have).split()) == " ".join(str(want).split())


def _convert_units(
    data: np.ndarray, attrs: Mapping[str, Any], var: AggregationVariable, where: str
) -> np.ndarray:
    """Fragment values in the aggregation variable's units: only reference-time units convert."""
    have, want = attrs.get("units"), var.attrs.get("units")
    if _same_units(have, want):
        return data
    have_time, want_time = _SINCE.match(str(have)), _SINCE.match(str(want))
    if not (have_time and want_time):
        raise FragmentError(
            f"{where}: units {have!r} differ from the aggregation variable's {want!r}; "
            "only reference-time units ('<unit> since <date>') are converted"
        )
    calendar = _calendar(var.attrs)
    if _calendar(attrs) != calendar:
        raise FragmentError(
            f"{where}: calendar {_calendar(attrs)!r} differs from the aggregation variable's {calendar!r}"
        )
    unit_have, unit_want = (_SECONDS.get(m.group(1).lower()) for m in (have_time, want_time))
    if unit_have is None or unit_want is None:
        raise FragmentError(
            f"{where}: cannot convert {have!r} to {want!r}; units of time must be fixed lengths (seconds to weeks)"
        )
    import cftime

    shift = cftime.date2num(cftime.num2date(0, str(have), calendar), str(want), calendar)
    ratio = unit_have / unit_want
    values = np.asarray(data, dtype=np.float64)
    if ratio != 1:
        values = values * ratio.numerator / ratio.denominator
    return values + shift if shift else values


def _calendar(attrs: Mapping[str, Any]) -> str:
    name = str(attrs.get("calendar", "standard")).strip().lower()
    return _CALENDAR_ALIASES.get(name, name)


__all__ = ["AggregatedArray", "FragmentOptions", "canonical_values", "read_canonical"]
