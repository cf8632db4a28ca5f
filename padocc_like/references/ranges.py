"""Valid ranges that differ between files, merged into one range that masks the same values.

A file's ``valid_min``, ``valid_max`` and ``valid_range`` tell CF readers (netCDF4-python,
cf-python) to mask the stored values outside them. Some archives write a range per file
(ESA CCI soil moisture's observation time ``t0``: one day per daily file). One product has
one range per variable, so the files' ranges are merged into their *hull* (the lowest lower
bound, the highest upper bound), which is exact only if no file holds a value inside the
hull but outside its own range: a value its file masks that the product would show.
:func:`unmasked_by_hull` finds such values; the combiner and the validator both ask it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

RANGE_ATTRS = ("valid_min", "valid_max", "valid_range")
"""Attributes declaring which stored values are valid (CF 2.5.1)."""


def declared_range(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The range attributes a variable declares (possibly none)."""
    return {k: attrs[k] for k in RANGE_ATTRS if k in attrs}


def _floats(value: Any) -> list[float]:
    return [float(x) for x in np.atleast_1d(np.asarray(value)).ravel()]


def bounds(declared: Mapping[str, Any]) -> tuple[float, float]:
    """The lowest and highest valid stored values, as netCDF4-python applies them:
    ``valid_range``, overridden by ``valid_min`` and ``valid_max``."""
    lo, hi = -np.inf, np.inf
    if "valid_range" in declared:
        pair = _floats(declared["valid_range"])
        if len(pair) == 2:
            lo, hi = pair
    if "valid_min" in declared:
        lo = _floats(declared["valid_min"])[0]
    if "valid_max" in declared:
        hi = _floats(declared["valid_max"])[0]
    return lo, hi


def _like(template: Any, value: float) -> Any:
    """``value`` in the Python type of an attribute value like ``template``."""
    if isinstance(template, np.generic):
        return template.dtype.type(value)
    if isinstance(template, int) and not isinstance(template, bool) and float(value).is_integer():
        return int(value)
    return value


def range_hull(declared: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The smallest range holding every file's, declared with the same attributes; ``None``
    when the files declare their ranges with different attributes (one has ``valid_min``,
    another ``valid_range``), which this does not reconcile."""
    if not declared:
        return {}
    keys = set(declared[0])
    if any(set(d) != keys for d in declared):
        return None
    hull: dict[str, Any] = {}
    for key in RANGE_ATTRS:
        if key not in keys:
            continue
        first = declared[0][key]
        values = [_floats(d[key]) for d in declared]
        if key == "valid_range":
            if any(len(v) != 2 for v in values):
                return None
            lo = min(v[0] for v in values)
            hi = max(v[1] for v in values)
            if isinstance(first, np.ndarray):
                hull[key] = np.array([lo, hi], dtype=first.dtype)
            else:
                items = list(first) if isinstance(first, list | tuple) else [first, first]
                hull[key] = [_like(items[0], lo), _like(items[1], hi)]
        else:
            pick = min if key == "valid_min" else max
            value = pick(v[0] for v in values)
            hull[key] = (
                np.array([value], dtype=first.dtype)
                if isinstance(first, np.ndarray)
                else [_like(first[0], value)]
                if isinstance(first, list)
                else _like(first, value)
            )
    return hull


def unmasked_by_hull(
    stored: np.ndarray, own: Mapping[str, Any], hull: Mapping[str, Any], missing: Sequence[Any] = ()
) -> tuple[int, Any]:
    """How many stored values (not equal to a ``missing`` value such as ``_FillValue``) lie
    outside the file's ``own`` range but inside the ``hull``, and the first of them (or None):
    values the product would show where the file masks them."""
    lo, hi = bounds(own)
    hull_lo, hull_hi = bounds(hull)
    values = np.asarray(stored)
    if values.dtype.kind not in "iuf" or (lo, hi) == (hull_lo, hull_hi):
        return 0, None
    with np.errstate(invalid="ignore"):
        shown = ((values < lo) | (values > hi)) & (values >= hull_lo) & (values <= hull_hi)
        for m in missing:
            if m is not None:
                shown &= values != m
    count = int(np.count_nonzero(shown))
    return count, (values[shown].flat[0].item() if count else None)
