"""Element comparisons and CF decoding of arrays already in memory.

Validation reads each array once per side (the product's raw stored values, the source's
raw stored values) and derives the decoded values from them with xarray's own decoder,
:func:`xarray.conventions.decode_cf_variable`, given that side's attributes, exactly as
``xarray.open_dataset`` decodes them. What ``open_dataset`` decides by looking at the whole
dataset (time bounds inherit their parent's ``units``/``calendar``; which character arrays
are concatenated into strings) is decided once per dataset by running xarray's
:func:`~xarray.conventions.decode_cf_variables` over lazy copies of its variables, and kept
as one :class:`DecodeSpec` per variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

_UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def time_coder() -> Any:
    """Decode times to cftime objects always, so every calendar compares alike."""
    import xarray as xr

    return xr.coders.CFDatetimeCoder(use_cftime=True)


# flags of the raw view (nothing decoded) and of the decoded view (as users see the data)
RAW_OPEN: dict[str, Any] = {
    "mask_and_scale": False,
    "decode_times": False,
    "decode_timedelta": False,
    "decode_coords": False,
    "concat_characters": False,  # no char-array concatenation, to match netCDF4's raw reads
}


def decoded_open() -> dict[str, Any]:
    return {"decode_times": time_coder(), "decode_timedelta": False}


@dataclass(frozen=True)
class DecodeSpec:
    """How xarray decodes one variable of one dataset (picklable: crosses process pools)."""

    dims: tuple[str, ...]
    attrs: dict[str, Any]
    encoding: dict[str, Any]
    stack_char_dim: bool


def decode_specs(
    variables: Mapping[str, Any], attrs: Mapping[str, Any], *, mask_and_scale: bool = True
) -> tuple[dict[str, DecodeSpec], dict[str, Any]]:
    """Per-variable decoding specs, and the lazily decoded variables, of raw ``variables``.

    ``variables`` are raw (undecoded) ``xarray.Variable`` objects, typically lazy; they are
    not modified and no data is read (but for the first and last value of time variables,
    which xarray reads to pick the decoded type, as ``open_dataset`` does).
    """
    from xarray.conventions import decode_cf_variables

    shadow = {k: v.copy(deep=False) for k, v in variables.items()}  # attrs copied, data shared
    decoded, _, _ = decode_cf_variables(
        shadow,
        dict(attrs),
        concat_characters=True,
        mask_and_scale=mask_and_scale,
        decode_times=time_coder(),
        decode_coords=True,
        decode_timedelta=False,
    )
    specs = {
        k: DecodeSpec(
            tuple(str(d) for d in v.dims),
            dict(v.attrs),  # after xarray gave time bounds their parent's units and calendar
            dict(v.encoding),
            decoded[k].ndim == v.ndim - 1,  # xarray joined the last (character) dimension
        )
        for k, v in shadow.items()
    }
    return specs, decoded


def decode_array(name: str, spec: DecodeSpec, data: np.ndarray) -> np.ndarray:
    """``data`` (raw values of variable ``name``, any block along its first axis) decoded
    the way ``xarray.open_dataset`` decodes that variable."""
    import xarray as xr
    from xarray.conventions import decode_cf_variable

    var = xr.Variable(spec.dims, data, attrs=dict(spec.attrs), encoding=dict(spec.encoding))
    out = decode_cf_variable(
        name,
        var,
        concat_characters=True,
        mask_and_scale=True,
        decode_times=time_coder(),
        decode_timedelta=False,
        stack_char_dim=spec.stack_char_dim,
    )
    return np.asarray(out.values)


def native(a: np.ndarray) -> np.ndarray:
    """Contiguous and in native byte order (values converted, not reinterpreted)."""
    return np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("="))


def bitwise_equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise bitwise equality (NaN payloads included) of two same-dtype arrays."""
    a, b = native(a), native(b)
    if a.dtype.kind in "fc":
        view = {2: np.uint16, 4: np.uint32, 8: np.uint64, 16: np.uint64}[a.dtype.itemsize]
        return a.view(view) == b.view(view)
    return a == b


def decoded_equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise equality of decoded values: NaN equals NaN, NaT equals NaT."""
    if a.dtype.kind == "f" and b.dtype.kind == "f":
        return (a == b) | (np.isnan(a) & np.isnan(b))
    if a.dtype.kind == "M" and b.dtype.kind == "M":
        return (a == b) | (np.isnat(a) & np.isnat(b))
    return np.asarray(a == b)


def count_decoded_unequal(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """How many decoded values differ (as :func:`decoded_equal`), and how many were compared.

    One pass when the arrays are bitwise identical (the usual case): identical numbers are
    equal everywhere, NaN included; otherwise :func:`decoded_equal` decides each value."""
    if (
        a.dtype == b.dtype
        and a.dtype.kind in "biufcmM"
        and a.shape == b.shape
        and a.dtype.itemsize in _UINT
        and a.dtype.isnative
    ):
        u = _UINT[a.dtype.itemsize]
        if np.array_equal(np.ascontiguousarray(a).view(u), np.ascontiguousarray(b).view(u)):
            return 0, int(a.size)
    eq = decoded_equal(a, b)
    return int(np.size(eq) - np.count_nonzero(eq)), int(np.size(eq))
