"""CF-1.13 aggregation products ("CFA"): one netCDF-4 file per revision, ``r<N>.nc``.

Every :class:`~padocc_like.references.model.FragmentedVariable` becomes a scalar
aggregation variable (CF-1.13 section 2.8) whose ``aggregated_data`` names three
fragment-array variables: an integer ``map`` (one row of fragment sizes per aggregated
dimension, padded with ``_FillValue``), a vlen-string ``uris`` array of fragments, and
the fragments' variable names (``identifiers``, scalar when the same everywhere).
Variables with the same fragmentation share one ``map`` and one ``uris``. Every other
variable (the concatenated coordinates and their bounds, static fields) is stored in the
file itself, with its values read from the aggregate's chunk tables. Attributes are the
aggregate's, written as ``char`` (not vlen) attributes; the global ``Conventions`` names
``CF-1.13`` (replacing an older ``CF-1.x``, keeping other conventions).

Fragments are named by ``file://`` URIs (or the URL as it is for remote files), or, with
``cfa_uris: relative``, by paths relative to the product's directory, as CF-1.13 resolves
them. The file is built under a temporary name beside the target and renamed into place.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Literal
from urllib.parse import quote

import numpy as np

from .._io import atomic_file, sha256_file, utc_now
from ..errors import ProductError
from ..references.model import Aggregate, AggVariable, FragmentedVariable, decode_fill_value
from ..references.read import read_aggregated
from ..types import ProductKind
from .base import ProductRecord, xarray_engine

CF_VERSION = (1, 13)
CONVENTIONS = "CF-1.13"
LAYOUT = "netcdf"
MEDIA_TYPE = "application/netcdf"
MAP_FILL = -1
"""Pad value of the ``map`` rows (its ``_FillValue``)."""

PACKING = ("scale_factor", "add_offset")
VALUE_ATTRS = ("missing_value", "valid_min", "valid_max", "valid_range", "actual_range", "flag_values")
"""Attributes whose values are in the variable's own type (cast to it when written)."""
UNPACKED_RANGES = ("valid_min", "valid_max", "valid_range", "actual_range")
"""Attributes of a packed variable given in packed units: unpacked with it."""

_CF_TOKEN = re.compile(r"\bCF-(\d+)\.(\d+)(?:\.\d+)*\b")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def cf_conventions(value: Any) -> str:
    """A ``Conventions`` value naming CF-1.13 or later: an older ``CF-1.x`` is replaced,
    other conventions are kept (``CF-1.6 ACDD-1.3`` -> ``CF-1.13 ACDD-1.3``)."""
    if not isinstance(value, str) or not value.strip():
        return CONVENTIONS
    # CF: a blank- or comma-separated list; sources also write "CF-1.0; http://..."
    names = [t for t in re.split(r"[\s,;]+", value.strip()) if t]
    cf = [i for i, t in enumerate(names) if _CF_TOKEN.fullmatch(t)]
    if not cf:
        return " ".join([CONVENTIONS, *names])
    match = _CF_TOKEN.fullmatch(names[cf[0]])
    assert match is not None
    if (int(match[1]), int(match[2])) < CF_VERSION:
        names[cf[0]] = CONVENTIONS
    return " ".join(names)


def fragment_uri(url: str, product_dir: Path, mode: Literal["absolute", "relative"]) -> str:
    """How the product names one fragment: a remote URL as it is; a local path as a
    ``file://`` URI, or (``relative``) as a path relative to ``product_dir``."""
    if _SCHEME.match(url) and not url.startswith("file://"):
        return url
    path = os.path.normpath(Path(url.removeprefix("file://")).absolute())
    if mode == "absolute":
        return Path(path).as_uri()
    rel = os.path.relpath(path, os.path.normpath(product_dir.absolute()))
    return quote(PurePosixPath(*Path(rel).parts).as_posix())


class CFAWriter:
    """Writes CF-1.13 aggregation files (netCDF-4, ``r<N>.nc``)."""

    kind: ClassVar[ProductKind] = ProductKind.CFA

    def __init__(
        self, *, uris: Literal["absolute", "relative"] = "absolute", unique_values: bool = False
    ) -> None:
        if uris not in ("absolute", "relative"):
            raise ValueError(f"cfa_uris must be absolute or relative, not {uris!r}")
        self.uris = uris
        self.unique_values = unique_values

    @classmethod
    def from_options(cls, options: Any) -> CFAWriter:
        """From ``ProductOptions`` (``cfa_uris``, ``cfa_unique_values``)."""
        return cls(uris=options.cfa_uris, unique_values=options.cfa_unique_values)

    def layout_for(self, aggregate: Aggregate) -> str:
        return LAYOUT

    @staticmethod
    def target_name(revision: int, layout: str) -> str:
        return f"r{revision}.nc"

    def write(self, aggregate: Aggregate, target: Path, *, layout: str, revision: int) -> ProductRecord:
        if layout != LAYOUT:
            raise ProductError(f"unknown cfa layout {layout!r} (expected {LAYOUT!r})")
        with atomic_file(target) as tmp:
            _write_file(aggregate, tmp, target.parent, self.uris, self.unique_values)
        return ProductRecord(
            kind=str(self.kind),
            revision=revision,
            path=str(target),
            layout=layout,
            size=target.stat().st_size,
            sha256=sha256_file(target),
            n_refs=aggregate.n_fragments(),
            created=utc_now(),
            media_type=MEDIA_TYPE,
        )

    def open_dataset(self, record: ProductRecord, **kwargs: Any) -> Any:
        """Open with ``xarray.open_dataset(engine="padocc_cfa")``, as users do."""
        import xarray as xr

        return xr.open_dataset(record.path, engine=xarray_engine("padocc_cfa"), **kwargs)


# ---------------------------------------------------------------------------
# the file
# ---------------------------------------------------------------------------
class _Names:
    """Dimension and variable names of the file, refusing a clash with the sources' names."""

    def __init__(self, nc: Any, aggregate: Aggregate) -> None:
        self.nc = nc
        self.taken = set(aggregate.variables) | set(aggregate.dims)

    def new(self, name: str, what: str) -> str:
        if name in self.taken:
            raise ProductError(
                f"cannot write the CF aggregation: the sources already have a {what} named {name!r}"
            )
        self.taken.add(name)
        return name

    def dim(self, name: str, size: int) -> str:
        """A dimension of this size named ``name``, or ``name_<size>`` when ``name`` is used."""
        for candidate in (name, f"{name}_{size}"):
            existing = self.nc.dimensions.get(candidate)
            if existing is not None and len(existing) == size:
                return candidate
            if existing is None and candidate not in self.taken:
                self.taken.add(candidate)
                self.nc.createDimension(candidate, size)
                return candidate
        raise ProductError(f"cannot write the CF aggregation: no free dimension name for {name!r}")


def _write_file(
    aggregate: Aggregate,
    path: Path,
    product_dir: Path,
    mode: Literal["absolute", "relative"],
    unique_values: bool = False,
) -> None:
    import netCDF4

    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.set_auto_maskandscale(False)
        attrs = dict(aggregate.attrs)
        attrs["Conventions"] = cf_conventions(attrs.get("Conventions"))
        _set_attrs(nc, attrs, None, "global")
        for dim in sorted(aggregate.dims):  # sorted: the same inputs give the same bytes
            nc.createDimension(dim, aggregate.dims[dim])
        names = _Names(nc, aggregate)
        shared: dict[tuple[Any, ...], tuple[str, str]] = {}  # fragmentation -> (map, uris)
        for name in sorted(aggregate.variables):
            var = aggregate.variables[name]
            if isinstance(var, FragmentedVariable):
                constants = _fragment_constants(var) if unique_values else None
                if constants is not None:
                    _write_unique_values(nc, var, names, constants)
                else:
                    _write_aggregation(nc, var, names, shared, product_dir, mode)
            else:
                _write_values(nc, var, aggregate.urls)


def _native(dtype: np.dtype, name: str) -> np.dtype:
    if dtype.kind == "b" or (dtype.kind == "S" and dtype.itemsize != 1):
        raise ProductError(f"variable {name!r}: data type {dtype} has no netCDF equivalent")
    return dtype.newbyteorder("=")


def _write_values(nc: Any, var: AggVariable, urls: list[str]) -> None:
    """A variable stored in the aggregation file with its values."""
    dtype = _native(np.dtype(var.dtype), var.name)
    try:
        values = read_aggregated(var, urls).astype(dtype, copy=False)
    except Exception as err:
        raise ProductError(f"variable {var.name!r}: cannot read its values from the sources: {err}") from err
    fill = decode_fill_value(var.fill_value, np.dtype(var.dtype))
    compress = {"zlib": True, "complevel": 1, "shuffle": True} if values.ndim and values.size else {}
    out = nc.createVariable(var.name, dtype, var.dims, fill_value=fill, **compress)
    out.set_auto_chartostring(False)
    _set_attrs(out, var.attrs, dtype, var.name)
    if values.size:
        out[...] = values


def _write_aggregation(
    nc: Any,
    var: FragmentedVariable,
    names: _Names,
    shared: dict[tuple[Any, ...], tuple[str, str]],
    product_dir: Path,
    mode: Literal["absolute", "relative"],
) -> None:
    """A scalar aggregation variable and its fragment arrays (``map`` and ``uris`` shared with
    the variables fragmented alike)."""
    uris = np.empty(var.grid, dtype=object)
    for index, url in np.ndenumerate(var.uris):
        uris[index] = fragment_uri(str(url), product_dir, mode)
    key = (var.dims, var.sizes, tuple(uris.reshape(-1).tolist()))
    frag_dims = tuple(names.dim(f"f_{d}", n) for d, n in zip(var.dims, var.grid, strict=True))
    if key not in shared:
        k = len(shared)
        map_name = _write_map(nc, var, names, f"fragment_map_{k}")
        uris_name = names.new(f"fragment_uris_{k}", "variable")
        furis = nc.createVariable(uris_name, str, frag_dims)
        furis[...] = uris
        shared[key] = (map_name, uris_name)
    map_name, uris_name = shared[key]
    ids_name = names.new(f"fragment_identifiers_{var.name}", "variable")
    ids = nc.createVariable(ids_name, str, () if isinstance(var.identifiers, str) else frag_dims)
    ids[...] = np.asarray(var.identifiers, dtype=object)

    stored = np.dtype(var.dtype)
    attrs = dict(var.attrs)
    fill = decode_fill_value(var.fill_value, stored)
    packing = {k: attrs.pop(k) for k in PACKING if k in attrs}
    if packing:  # fragments are unpacked into the aggregation's type (CF-1.13 section 2.8.1)
        dtype = _unpacked_dtype(var, stored)
        scale, offset = packing.get("scale_factor", 1), packing.get("add_offset", 0)
        for attr in UNPACKED_RANGES:
            if attr in attrs:
                attrs[attr] = (np.asarray(attrs[attr], dtype=np.float64) * scale + offset).tolist()
    else:
        dtype = _native(stored, var.name)
    out = nc.createVariable(var.name, dtype, (), fill_value=None if fill is None else dtype.type(fill))
    _set_attrs(out, attrs, dtype, var.name)
    out.setncattr("aggregated_dimensions", " ".join(var.dims).encode())
    out.setncattr("aggregated_data", f"map: {map_name} uris: {uris_name} identifiers: {ids_name}".encode())


def _write_map(nc: Any, var: FragmentedVariable, names: _Names, name: str) -> str:
    """CF-1.13's ``map`` of ``var`` under ``name``: one row of fragment sizes per aggregated
    dimension, padded with missing values (the scalar 1 for scalar aggregated data)."""
    name = names.new(name, "variable")
    sizes = np.asarray([n for row in var.sizes for n in row], dtype=np.int64)
    map_type = "i4" if sizes.size == 0 or sizes.max() <= np.iinfo(np.int32).max else "i8"
    if var.dims:
        width = max(var.grid)
        table = np.ma.masked_all((len(var.dims), width), dtype=map_type)
        for r, row in enumerate(var.sizes):
            table[r, : len(row)] = row
        map_dims = (names.dim(f"map_j{len(var.dims)}", len(var.dims)), names.dim(f"map_i{width}", width))
    else:
        table, map_dims = np.ma.masked_array(np.ones((), dtype=map_type)), ()
    fmap = nc.createVariable(name, map_type, map_dims, fill_value=MAP_FILL)
    fmap[...] = table
    return name


UNIQUE_MAX_BYTES = 64 << 20
"""Largest aggregated variable whose fragments are read to find out whether each holds one value."""


def _fragment_constants(var: FragmentedVariable) -> np.ma.MaskedArray | None:
    """Each fragment's one value (masked: wholly missing), or None when a fragment holds
    several, the variable is packed or large, or a fragment is not a local file."""
    import netCDF4

    dtype = np.dtype(var.dtype)
    if (
        dtype.kind not in "iuf"
        or any(k in var.attrs for k in PACKING)
        or not var.dims
        or dtype.itemsize * math.prod(var.shape) > UNIQUE_MAX_BYTES
    ):
        return None
    fill = decode_fill_value(var.fill_value, dtype)
    out = np.ma.masked_all(var.grid, dtype=dtype)
    for index, url in np.ndenumerate(var.uris):
        url = str(url)
        if _SCHEME.match(url) and not url.startswith("file://"):
            return None
        try:
            with netCDF4.Dataset(url.removeprefix("file://")) as nc:
                source = nc.variables[var.identifier(index)]
                source.set_auto_maskandscale(False)
                values = np.asarray(source[...]).reshape(-1)
        except (OSError, KeyError) as err:
            raise ProductError(f"variable {var.name!r}: cannot read its fragment {url}: {err}") from err
        if not values.size:
            return None
        first = values[0]
        same = values == first if dtype.kind != "f" or not np.isnan(first) else np.isnan(values)
        if not np.all(same):
            return None
        if fill is None or not (first == fill or (dtype.kind == "f" and np.isnan(first) and np.isnan(fill))):
            out[index] = first  # a fragment all _FillValue stays masked: wholly missing
    return out


def _write_unique_values(
    nc: Any, var: FragmentedVariable, names: _Names, constants: np.ma.MaskedArray
) -> None:
    """A scalar aggregation variable whose fragments are constants (``map`` + ``unique_values``)."""
    dtype = _native(np.dtype(var.dtype), var.name)
    fill = decode_fill_value(var.fill_value, np.dtype(var.dtype))
    frag_dims = tuple(names.dim(f"f_{d}", n) for d, n in zip(var.dims, var.grid, strict=True))
    map_name = _write_map(nc, var, names, f"fragment_map_{var.name}")
    values_name = names.new(f"fragment_unique_values_{var.name}", "variable")
    missing = dtype.type(fill) if fill is not None else _default_fill(dtype)
    uniq = nc.createVariable(values_name, dtype, frag_dims, fill_value=missing)
    uniq[...] = constants.astype(dtype)
    out = nc.createVariable(var.name, dtype, (), fill_value=missing)
    _set_attrs(out, dict(var.attrs), dtype, var.name)
    out.setncattr("aggregated_dimensions", " ".join(var.dims).encode())
    out.setncattr("aggregated_data", f"map: {map_name} unique_values: {values_name}".encode())


def _default_fill(dtype: np.dtype) -> Any:
    """netCDF's default fill value for ``dtype`` (a missing constant needs one)."""
    import netCDF4

    return dtype.type(netCDF4.default_fillvals[dtype.str[1:]])


def _unpacked_dtype(var: FragmentedVariable, stored: np.dtype) -> np.dtype:
    """The type of a packed variable's values once unpacked: that of its ``scale_factor`` or
    ``add_offset`` in the first fragment (CF 8.1). The scan keeps attribute values, not their
    types, so the fragment is asked; a remote one is assumed float32 for 8- and 16-bit data,
    float64 otherwise."""
    import netCDF4

    url = str(var.uris.reshape(-1)[0])
    name = var.identifier((0,) * len(var.dims))
    if not _SCHEME.match(url) or url.startswith("file://"):
        try:
            with netCDF4.Dataset(url.removeprefix("file://")) as nc:
                source = nc.variables[name]
                for key in PACKING:
                    if key in source.ncattrs():
                        return np.dtype(np.asarray(source.getncattr(key)).dtype).newbyteorder("=")
        except (OSError, KeyError) as err:
            raise ProductError(
                f"variable {var.name!r}: cannot read its packing attributes from {url}: {err}"
            ) from err
    return np.dtype("f4") if stored.itemsize <= 2 else np.dtype("f8")


def _set_attrs(target: Any, attrs: dict[str, Any], dtype: np.dtype | None, where: str) -> None:
    """Attributes as JSON values -> netCDF: text as ``char`` (UTF-8), numbers in the
    variable's type where CF wants it (:data:`VALUE_ATTRS`)."""
    for key, value in attrs.items():
        if key == "_FillValue" or value is None:
            continue
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            target.setncattr_string(key, value)  # several strings: only a vlen array holds them
        else:
            target.setncattr(key, _attr_value(key, value, dtype, where))


def _attr_value(key: str, value: Any, dtype: np.dtype | None, where: str) -> Any:
    if isinstance(value, str):
        return value.encode()  # bytes: written as char even when not ASCII
    arr = np.asarray(value)
    if arr.dtype.kind == "b":
        arr = arr.astype(np.int8)
    if arr.dtype.kind not in "iuf":
        raise ProductError(f"{where}: attribute {key!r} = {value!r} cannot be written to netCDF")
    if dtype is not None and dtype.kind in "iuf" and key in VALUE_ATTRS:
        cast = arr.astype(dtype)
        if np.array_equal(cast.astype(arr.dtype), arr, equal_nan=arr.dtype.kind == "f"):
            return cast
    if arr.dtype.kind == "i" and arr.size and np.all(np.abs(arr) <= np.iinfo(np.int32).max):
        return arr.astype(np.int32)
    return arr
