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


_FILL_ATTRS = ("_FillValue", "missing_value")
_NOT_MASK_ONLY = {"scale_factor", "add_offset", "_Unsigned", "dtype", "_Encoding", "calendar"}
"""Attributes through which xarray's decoder does more than mask fill values."""


def _mask_only(spec: DecodeSpec) -> bool:
    from xarray.coding.variables import _is_time_like

    coded = {"scale_factor", "add_offset", "_Unsigned", "units", "calendar"}  # once decoded
    if set(spec.attrs) & _NOT_MASK_ONLY or set(spec.encoding) & coded or spec.stack_char_dim:
        return False
    if _is_time_like(spec.attrs.get("units")):
        return False
    dtype = spec.encoding.get("dtype")
    return dtype is None or not getattr(np.dtype(dtype), "metadata", None)  # no enum types


def mask_probe(dtype: np.dtype, specs: tuple[DecodeSpec, ...]) -> np.ndarray:
    """Every raw value of ``dtype`` that any fill value of ``specs`` can match.

    xarray masks a raw value ``x`` when ``x == fv`` for a fill value ``fv``. For ``x`` of
    ``dtype`` that holds only at ``fv`` cast to ``dtype`` (rounded either way for floats,
    either sign of zero). The probe holds those values, their neighbours, zeros, the
    extremes and, for floats, NaN and the infinities."""
    dtype = np.dtype(dtype).newbyteorder("=")
    vals: list[Any] = []
    if dtype.kind == "f":
        info = np.finfo(dtype)
        vals += [0.0, -0.0, np.nan, np.inf, -np.inf, info.max, info.min]
    else:
        iinfo = np.iinfo(dtype)
        vals += [0, iinfo.max, iinfo.min]
    probe = [np.asarray(v).astype(dtype) for v in vals]
    with np.errstate(all="ignore"):
        for spec in specs:
            for key in _FILL_ATTRS:
                for fv in np.ravel(np.asarray(spec.attrs.get(key, []), dtype=object)):
                    if isinstance(fv, (str, bytes)) or fv is None:
                        continue
                    c = np.asarray(fv).astype(dtype)
                    probe.append(c)
                    if dtype.kind == "f":
                        probe += [
                            -c,
                            np.nextafter(c, dtype.type(np.inf)),
                            np.nextafter(c, dtype.type(-np.inf)),
                        ]
                    else:
                        probe += [c + dtype.type(1), c - dtype.type(1)]  # wraps at the extremes
    return np.array(probe, dtype=dtype)


NOT_DECODING = frozenset(
    {"valid_range", "valid_min", "valid_max", "actual_range", "long_name", "standard_name", "comment"}
)
"""Attributes xarray's CF decoding never reads (it does not apply valid ranges)."""
STORAGE_ENCODING = frozenset(
    {
        "chunks", "preferred_chunks", "compressors", "compressor", "filters", "shards", "zlib",
        "szip", "zstd", "bzip2", "blosc", "shuffle", "complevel", "fletcher32", "contiguous",
        "chunksizes", "source", "original_shape", "endian",
    }
)  # fmt: skip
"""Encoding entries that describe storage, which decoding does not read."""


def same_decoding(a: DecodeSpec, b: DecodeSpec, dtype: np.dtype) -> bool:
    """Whether two specs give :func:`decode_array` the same inputs for raw numbers of
    ``dtype``, apart from attributes and storage entries it never reads: it is then one
    function of the raw values on both sides, and raw values equal bitwise decode to equal
    values. ``repr`` keeps numpy scalar types apart (a float32 and a float64 ``scale_factor``
    decode differently). Numbers only: string and enum decoding read the encoded type."""
    if np.dtype(dtype).kind not in "iuf":
        return False

    def key(spec: DecodeSpec) -> str:
        attrs = sorted((k, v) for k, v in spec.attrs.items() if k not in NOT_DECODING)
        encoding = {k: v for k, v in spec.encoding.items() if k not in STORAGE_ENCODING}
        if "dtype" in encoding:  # the byte order is storage; the type itself is compared
            encoding["dtype"] = np.dtype(encoding["dtype"]).newbyteorder("=").str
        return repr((spec.dims, attrs, sorted(encoding.items()), spec.stack_char_dim))

    try:
        return key(a) == key(b)
    except (TypeError, ValueError):  # unorderable or odd entries: decode both sides
        return False


def masks_alike(name: str, a: DecodeSpec, b: DecodeSpec, dtype: np.dtype) -> bool:
    """Whether xarray decodes every raw value of ``dtype`` alike under ``a`` and ``b``.

    True only for variables whose decoding is masking alone (no scale, offset, times,
    characters or unsigned reinterpretation): decoding is then elementwise, a value that
    matches no fill value of either side passes through both alike (the decoded type being
    the same), and the values that can match are exactly :func:`mask_probe`'s, which are
    decoded both ways and compared. Raw values equal bitwise then decode to equal values,
    without decoding them."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "iuf" or not a.dims or a.dims != b.dims or not (_mask_only(a) and _mask_only(b)):
        return False
    probe = mask_probe(dtype, (a, b))
    shaped = probe.reshape((probe.size,) + (1,) * (len(a.dims) - 1))
    try:
        da, db = decode_array(name, a, shaped), decode_array(name, b, shaped)
    except Exception:
        return False
    if da.dtype != db.dtype or da.shape != db.shape:
        return False
    return bool(np.all(decoded_equal(da, db)))
