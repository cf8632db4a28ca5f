"""STAC 1.1.0 Items and Collections for validated products, and offline validation.

One Item per project (its id is the project id), with one asset per product
(``reference_file`` for Kerchunk) and the validation report. The layout follows
the research note ``stac_catalog.md`` section 4: CEDA DataPoint, xpystac and the
``xr.open_dataset(asset["href"], **asset["xarray:open_kwargs"])`` pattern all open it.

Static-catalog links: an Item always carries a ``collection`` link (STAC 1.1 requires
one whenever the ``collection`` field is set). Its href is ``collection_href`` when
given, else ``../collection.json`` (pystac's layout: ``<root>/collection.json`` and
``<root>/<item id>/<item id>.json``). A STAC API replaces it on ingest.

Validation never touches the network: core schemas come from pystac's bundled copy,
extension schemas from a local directory (``validate_stac(obj, schema_dir)``).

pystac, xarray, jsonschema and referencing are imported inside the functions, so
importing this module is cheap.
"""

from __future__ import annotations

import calendar
import functools
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CatalogError

if TYPE_CHECKING:  # pragma: no cover
    import xarray

STAC_VERSION = "1.1.0"

DATACUBE = "https://stac-extensions.github.io/datacube/v2.2.0/schema.json"
FILE = "https://stac-extensions.github.io/file/v2.1.0/schema.json"
PROCESSING = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"
XARRAY_ASSETS = "https://stac-extensions.github.io/xarray-assets/v1.0.0/schema.json"
ITEM_EXTENSIONS = (DATACUBE, FILE, PROCESSING, XARRAY_ASSETS)
"""The extensions every Item declares (exact schema URLs, research note section 3.2)."""
ZARR_EXTENSION = "https://stac-extensions.github.io/zarr/v1.1.0/schema.json"
"""Declared by Items with a Zarr store asset (``zarr:consolidated``, ``zarr:zarr_format``)."""

GLOBAL_BBOX = (-180.0, -90.0, 180.0, 90.0)
DEFAULT_COLLECTION_HREF = "../collection.json"
PREFIX = "padocc_like"

KERCHUNK_ASSET = "reference_file"
ZARR_ASSET = "zstore"
ZARR_MEDIA = "application/vnd+zarr"
CFA_ASSET = "reference_file_2"
CFA_MEDIA = "application/netcdf"
REPORT_ASSET = "validation_report"
_MEDIA = {"json": "application/json", "parquet": "application/vnd.apache.parquet"}
_PGSTAC_FORBIDDEN = re.compile(r"[:/?#\[\]@!$&'()*+,;=\s]")
_STAC_EXT_BASE = "https://stac-extensions.github.io/"
_PROJJSON_ID = re.compile(r"^https://proj\.org/schemas/v0\.\d+/projjson\.schema\.json$")

_LAT_NAMES = ("lat", "latitude", "nav_lat", "lats", "xlat", "lat_rho", "latitude_t")
_LON_NAMES = ("lon", "longitude", "nav_lon", "lons", "xlong", "lon_rho", "longitude_t")
_VERTICAL_STANDARD_NAMES = {
    "air_pressure", "altitude", "depth", "height", "height_above_geopotential_datum",
    "model_level_number", "atmosphere_hybrid_sigma_pressure_coordinate",
    "atmosphere_ln_pressure_coordinate", "atmosphere_sigma_coordinate",
    "atmosphere_hybrid_height_coordinate", "ocean_sigma_coordinate", "ocean_s_coordinate",
    "ocean_s_coordinate_g1", "ocean_s_coordinate_g2", "ocean_sigma_z_coordinate",
    "ocean_double_sigma_coordinate", "sea_water_pressure", "geopotential_height",
}  # fmt: skip


# --- small helpers -------------------------------------------------------------------------
def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _float(x: Any) -> float | None:
    """A finite Python float (rounded to 1e-6), or None."""
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return round(f, 6) + 0.0 if math.isfinite(f) else None


def _json_safe(x: Any) -> Any:
    """Numpy scalars/arrays and NaN made JSON-safe (NaN becomes None)."""
    if isinstance(x, Mapping):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return x
    if isinstance(x, int):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if hasattr(x, "tolist"):  # numpy scalar or array
        return _json_safe(x.tolist())
    return str(x)


def _parse_iso(s: str) -> datetime:
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except (TypeError, ValueError) as err:
        raise CatalogError(f"not an ISO 8601 date-time: {s!r}") from err
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _iso(dt: datetime) -> str:
    dt = dt.astimezone(UTC)
    # not strftime("%Y"): glibc does not zero-pad years before 1000 ("400-01-01")
    s = f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
    return s + (f".{dt.microsecond:06d}" if dt.microsecond else "") + "Z"


def time_to_iso(value: Any) -> str | None:
    """An RFC 3339 UTC string for a cftime/datetime/numpy datetime64 value (None for NaT).

    Fields are taken as they are and clamped to a valid Gregorian date, so the
    360_day date 2000-02-30 becomes 2000-02-29 (2001-02-30 becomes 2001-02-28);
    years are clamped to 0001..9999. Naive times are taken as UTC.
    """
    import numpy as np

    if value is None:
        return None
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            return None
        value = value.astype("datetime64[us]").item()  # datetime (or int if out of range)
        if not isinstance(value, datetime):
            return None
    try:
        year, month, day = int(value.year), int(value.month), int(value.day)
        hour, minute, second = int(value.hour), int(value.minute), int(value.second)
        micro = int(getattr(value, "microsecond", 0) or 0)
    except (AttributeError, TypeError, ValueError):
        return None
    year = min(max(year, 1), 9999)
    month = min(max(month, 1), 12)
    day = min(max(day, 1), calendar.monthrange(year, month)[1])
    return _iso(datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC))


# --- finding coordinates -------------------------------------------------------------------
def _is_time_like(var: Any) -> bool:
    import numpy as np

    if np.issubdtype(var.dtype, np.datetime64):
        return True
    if var.dtype == object and var.size:
        # the first element alone: decoding a whole variable of times to look at one is slow
        first = var[tuple(0 for _ in var.dims)].values
        first = first.item() if getattr(first, "ndim", 1) == 0 else first
        return hasattr(first, "calendar") or isinstance(first, datetime)
    return False


def _is_numeric(var: Any) -> bool:
    import numpy as np

    return np.issubdtype(var.dtype, np.number) and not np.issubdtype(var.dtype, np.timedelta64)


def _std(var: Any) -> str:
    return str(var.attrs.get("standard_name", "")).lower()


def _units(var: Any) -> str:
    u = var.attrs.get("units", var.encoding.get("units", ""))
    return str(u) if u is not None else ""


def _find_geo(ds: xarray.Dataset, axis: str) -> str | None:
    """The name of the latitude (axis "y") or longitude (axis "x") variable, if any."""
    std, units, names = (
        ("latitude", ("degrees_north", "degree_north", "degrees_n", "degree_n"), _LAT_NAMES)
        if axis == "y"
        else ("longitude", ("degrees_east", "degree_east", "degrees_e", "degree_e"), _LON_NAMES)
    )
    candidates = [n for n in list(ds.coords) + list(ds.data_vars) if ds[n].ndim in (1, 2)]
    candidates = [n for n in candidates if _is_numeric(ds[n]) and ds[n].size]

    def rank(name: Any) -> tuple[int, int] | None:
        var = ds[name]
        if _std(var) == std:
            score = 0
        elif _units(var).lower() in units:
            score = 1
        elif str(name).lower() in names:
            score = 2
        else:
            return None
        return (score, var.ndim)

    ranked = sorted((r, str(n)) for n in candidates if (r := rank(n)) is not None)
    return ranked[0][1] if ranked else None


def _bounds_var(ds: xarray.Dataset, name: str) -> Any:
    var = ds[name]
    b = var.attrs.get("bounds") or var.encoding.get("bounds")
    return ds[b] if b and b in ds.variables else None


def _values(var: Any) -> Any:
    import numpy as np

    return np.asarray(var.values, dtype="float64").ravel()


def _cell_extent(ds: xarray.Dataset, name: str, valid: tuple[float, float]) -> tuple[float, float] | None:
    """(min, max) of the cells of a lat/lon variable: its bounds, else centres +- half a step."""
    import numpy as np

    lo_ok, hi_ok = valid
    bounds = _bounds_var(ds, name)
    if bounds is not None and _is_numeric(bounds):
        vals = _values(bounds)
    else:
        vals = _values(ds[name])
    vals = vals[np.isfinite(vals) & (vals >= lo_ok) & (vals <= hi_ok)]
    if not vals.size:
        return None
    lo, hi = float(vals.min()), float(vals.max())
    if bounds is None and ds[name].ndim == 1 and ds[name].size > 1:
        centres = np.sort(vals)
        steps = np.diff(centres)
        steps = steps[steps > 0]
        if steps.size:
            half = float(np.median(steps)) / 2
            lo, hi = lo - half, hi + half
    return lo, hi


def _geo_box(ds: xarray.Dataset) -> tuple[list[float], str]:
    """([w, s, e, n], source) from the lat/lon coordinates; the global box when there are none."""
    import numpy as np

    lat_name, lon_name = _find_geo(ds, "y"), _find_geo(ds, "x")
    if lat_name is None or lon_name is None:
        return list(GLOBAL_BBOX), "unknown"
    lat = _cell_extent(ds, lat_name, (-90.0, 90.0))
    lon = _cell_extent(ds, lon_name, (-360.0, 720.0))
    if lat is None or lon is None:
        return list(GLOBAL_BBOX), "unknown"
    s, n = max(lat[0], -90.0), min(lat[1], 90.0)
    w0, e0 = lon
    if e0 - w0 >= 359.0:
        w, e = -180.0, 180.0
    elif ds[lon_name].ndim == 2 and _bounds_var(ds, lon_name) is None:
        # curvilinear: normalise every point, then take min/max
        vals = _values(ds[lon_name])
        vals = vals[np.isfinite(vals) & (vals >= -360.0) & (vals <= 720.0)]
        vals = (vals + 180.0) % 360.0 - 180.0
        w, e = float(vals.min()), float(vals.max())
    else:
        w = (w0 + 180.0) % 360.0 - 180.0  # in [-180, 180)
        e = (e0 - 180.0) % 360.0 - 180.0  # in (-180, 180]
        if e0 - w0 > 0 and e < w:  # crosses the antimeridian: keep a simple, valid box
            w, e = -180.0, 180.0
        elif e0 == w0:
            e = w
    if e - w >= 359.0:
        w, e = -180.0, 180.0
    box = [_float(w), _float(s), _float(e), _float(n)]
    if any(v is None for v in box):
        return list(GLOBAL_BBOX), "unknown"
    return [float(v) for v in box if v is not None], "coordinates"


def bbox_geometry(bbox: Sequence[float]) -> dict[str, Any]:
    """The GeoJSON Polygon (counter-clockwise) of a [w, s, e, n] box."""
    w, s, e, n = (float(v) for v in bbox)
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


def _find_time(ds: xarray.Dataset) -> str | None:
    """The main time coordinate: datetime-valued, preferring dimension coordinates named time."""
    cands = [str(n) for n in ds.coords if ds[n].ndim <= 1 and _is_time_like(ds[n])]
    if not cands:
        return None

    def rank(name: str) -> tuple[int, int, str]:
        var = ds[name]
        is_dim = int(not (var.ndim == 1 and var.dims[0] == name))
        named = 0 if (name.lower() == "time" or _std(var) == "time") else 1
        return (is_dim, named, name)

    return min(cands, key=rank)


def _time_range(var: Any) -> tuple[str | None, str | None]:
    import numpy as np

    vals = var.values.ravel()
    if np.issubdtype(vals.dtype, np.datetime64):
        vals = vals[~np.isnat(vals)]
        if not vals.size:
            return None, None
        return time_to_iso(vals.min()), time_to_iso(vals.max())
    vals = [v for v in vals if v is not None]
    if not vals:
        return None, None
    try:
        return time_to_iso(min(vals)), time_to_iso(max(vals))
    except TypeError:  # mixed calendars: give up on ordering
        return None, None


# --- datacube ------------------------------------------------------------------------------
def _describe(var: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    desc = var.attrs.get("long_name") or var.attrs.get("standard_name")
    if desc:
        out["description"] = str(desc)
    return out


def _regular_step(vals: Any) -> float | None:
    import numpy as np

    if vals.size < 2:
        return None
    d = np.diff(vals)
    if np.all(np.isfinite(d)) and np.allclose(d, d[0], rtol=1e-6, atol=0):
        return _float(d[0])
    return None


def _projected_crs(ds: xarray.Dataset, name: str) -> str | None:
    """A WKT CRS for a projection x/y coordinate, from the grid_mapping of a variable using it."""
    for var in ds.data_vars.values():
        if name in var.dims:
            gm = var.attrs.get("grid_mapping") or var.encoding.get("grid_mapping")
            if gm and gm in ds.variables:
                wkt = ds[gm].attrs.get("crs_wkt") or ds[gm].attrs.get("spatial_ref")
                if wkt:
                    return str(wkt)
    return None


def _cube_dimension(ds: xarray.Dataset, dim: str, lat: str | None, lon: str | None) -> dict[str, Any]:
    import numpy as np

    size = int(ds.sizes[dim])
    if dim not in ds.coords:
        return {
            "type": "other",
            "extent": [0, size - 1] if size else [None, None],
            "description": f"index dimension of {size} values (no coordinate variable)",
        }
    var = ds[dim]
    info = _describe(var)
    if _is_time_like(var):
        start, end = _time_range(var)
        return {"type": "temporal", "extent": [start, end], **info}
    if not _is_numeric(var):
        vals = [str(v) for v in var.values.ravel().tolist()]
        if 0 < len(vals) <= 1000:
            return {"type": "other", "values": vals, **info}
        return {"type": "other", "extent": [None, None], **info}
    vals = _values(var)
    finite = vals[np.isfinite(vals)]
    extent = [_float(finite.min()), _float(finite.max())] if finite.size else [None, None]
    step = _regular_step(vals)
    unit = _units(var)
    axis = str(var.attrs.get("axis", "")).upper()
    std = _std(var)
    if dim in (lat, lon) and None not in extent:
        out = {"type": "spatial", "axis": "y" if dim == lat else "x", "extent": extent}
        out["reference_system"] = 4326
    elif (axis in ("X", "Y") or std in ("projection_x_coordinate", "projection_y_coordinate")) and (
        None not in extent and (wkt := _projected_crs(ds, dim))
    ):
        out = {
            "type": "spatial",
            "axis": "x" if axis == "X" or std.endswith("x_coordinate") else "y",
        }
        out.update(extent=extent, reference_system=wkt)
    elif axis == "Z" or "positive" in var.attrs or std in _VERTICAL_STANDARD_NAMES:
        out = {"type": "spatial", "axis": "z", "extent": extent}
        if unit:
            out["unit"] = unit
    else:
        out = {"type": "other", "extent": extent}
        if unit:
            out["unit"] = unit
    if step is not None:
        out["step"] = step
    out.update(info)
    return out


def _auxiliary_names(ds: xarray.Dataset) -> set[str]:
    """Variables that describe others: CF bounds, grid mappings, climatology."""
    aux: set[str] = set()
    for var in ds.variables.values():
        for key in ("bounds", "grid_mapping", "climatology"):
            ref = var.attrs.get(key) or var.encoding.get(key)
            if isinstance(ref, str):
                aux.update(t.rstrip(":") for t in ref.split() if t.rstrip(":") in ds.variables)
    return aux


def summarise_dataset(ds: xarray.Dataset) -> dict[str, Any]:
    """A JSON-safe summary of an opened (decoded, ``use_cftime=True``) product.

    Keys: ``bbox`` [w, s, e, n] (-180..180; global box when the longitudes span 359 degrees
    or more, or when no lat/lon is found), ``geometry`` (GeoJSON Polygon of the box),
    ``bbox_source`` ("coordinates" or "unknown"), ``start_datetime``/``end_datetime``
    (ISO 8601 ``Z`` strings from the time bounds, else the time coordinate; None without
    time), ``variables`` (sorted data variables, without CF bounds/grid mappings), ``units``,
    ``cube_dimensions`` and ``cube_variables`` (datacube extension v2.2.0).
    """
    bbox, source = _geo_box(ds)
    lat, lon = _find_geo(ds, "y"), _find_geo(ds, "x")

    start = end = None
    tname = _find_time(ds)
    if tname is not None:
        tb = _bounds_var(ds, tname)
        if tb is not None and _is_time_like(tb):
            start, end = _time_range(tb)
        if start is None or end is None:
            start, end = _time_range(ds[tname])

    aux = _auxiliary_names(ds)
    variables = sorted(str(n) for n in ds.data_vars if str(n) not in aux)
    units = {v: u for v in variables if (u := _units(ds[v]))}

    cube_dimensions = {str(d): _cube_dimension(ds, str(d), lat, lon) for d in ds.dims}
    cube_variables: dict[str, Any] = {}
    for name in sorted(str(n) for n in ds.variables if n not in ds.dims):
        var = ds[name]
        entry: dict[str, Any] = {
            "dimensions": [str(d) for d in var.dims],
            "type": "data" if name in variables else "auxiliary",
            "shape": [int(s) for s in var.shape],
        }
        if (unit := _units(var)) and not _is_time_like(var):
            entry["unit"] = unit
        entry.update(_describe(var))
        cube_variables[name] = entry

    return _json_safe(
        {
            "bbox": bbox,
            "geometry": bbox_geometry(bbox),
            "bbox_source": source,
            "start_datetime": start,
            "end_datetime": end,
            "variables": variables,
            "units": units,
            "cube_dimensions": cube_dimensions,
            "cube_variables": cube_variables,
        }
    )


# --- Item ------------------------------------------------------------------------------------
_PROTECTED = {"datetime", "start_datetime", "end_datetime", "cube:dimensions", "cube:variables"}


def _file_fields(product: Mapping[str, Any]) -> dict[str, Any]:
    """The file extension's size and multihash checksum of a product record."""
    size, sha = product.get("size"), str(product.get("sha256", "")).lower()
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise CatalogError(f"product 'size' must be a non-negative integer, not {size!r}")
    if not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise CatalogError(f"product 'sha256' must be 64 hex digits, not {sha!r}")
    return {"file:size": size, "file:checksum": "1220" + sha}


def _asset(
    product: Mapping[str, Any],
    href: str,
    media_type: str,
    title: str,
    roles: list[str],
    cloud_format: str,
    open_kwargs: dict[str, Any],
) -> dict[str, Any]:
    """The fields every product asset has (``cloud_format`` is what DataPoint dispatches on)."""
    return {
        "href": href,
        "type": media_type,
        "title": title,
        "roles": roles,
        "cloud_format": cloud_format,
        "xarray:open_kwargs": open_kwargs,
        **_file_fields(product),
    }


def _cfa_asset(product: Mapping[str, Any], href: str) -> tuple[str, dict[str, Any]]:
    """A CF-1.13 aggregation file, under the key and fields CEDA DataPoint reads.

    DataPoint opens ``reference_file_2`` (``cloud_format: CFA``) with cfapyx's ``CFA``
    engine and ``open_xarray_kwargs``; the generic ``href`` + ``xarray:open_kwargs`` pattern
    gets cfapyx's engine for absolute fragment URIs (which it resolves from anywhere) and our
    ``padocc_cfa`` engine for relative ones (cfapyx resolves those against the working
    directory). An aggregation file served over HTTP needs ``#mode=bytes`` for netCDF-C."""
    if href.startswith(("http://", "https://")) and "#" not in href:
        href += "#mode=bytes"
    relative = str(product.get("cfa_uris", "absolute")) == "relative"
    open_kwargs: dict[str, Any] = {"engine": "padocc_cfa" if relative else "CFA", "chunks": {}}
    if product.get("store_options"):  # the file is in an object store: its endpoint, anon
        open_kwargs["storage_options"] = dict(product["store_options"])
    title = f"CF-1.13 aggregation (CFA-netCDF), revision {product.get('revision')}"
    roles = ["data", "aggregation", "virtual"]
    fields = _asset(product, href, CFA_MEDIA, title, roles, "CFA", open_kwargs)
    return CFA_ASSET, {**fields, "open_xarray_kwargs": {}}


def _product_asset(product: Mapping[str, Any], href: str) -> tuple[str, dict[str, Any]]:
    """(asset key, asset fields) for a product record."""
    kind = str(product.get("kind", "kerchunk"))
    if kind == "cfa":
        return _cfa_asset(product, href)
    if kind == "zarr":
        return _zarr_asset(product, href)
    if kind != "kerchunk":
        raise CatalogError(f"STAC assets for product kind {kind!r} are not supported yet")
    layout = str(product.get("layout", "json"))
    if layout not in _MEDIA:
        raise CatalogError(f"unknown kerchunk layout {layout!r} (expected json or parquet)")
    open_kwargs: dict[str, Any] = {"engine": "kerchunk", "chunks": {}}
    if product.get("storage_options"):
        # kerchunk's backend takes them (e.g. remote_protocol/remote_options for the targets)
        open_kwargs["storage_options"] = dict(product["storage_options"])
    title = f"Kerchunk references ({layout}), revision {product.get('revision')}"
    roles = ["data", "references", "virtual"]
    fields = _asset(product, href, _MEDIA[layout], title, roles, "kerchunk", open_kwargs)
    return KERCHUNK_ASSET, {**fields, "open_zarr_kwargs": {}}


def _zarr_asset(product: Mapping[str, Any], href: str) -> tuple[str, dict[str, Any]]:
    """A Zarr store, under DataPoint's ``zstore`` key: it detects Zarr by the exact media type
    ``application/vnd+zarr`` and needs consolidated (v2) metadata (research note 2.2)."""
    layout = str(product.get("layout"))
    zarr_format = 3 if layout.startswith("zarr3") else 2
    consolidated = zarr_format == 2
    open_kwargs: dict[str, Any] = {"engine": "zarr", "consolidated": consolidated, "chunks": {}}
    if product.get("store_options"):  # the store is in an object store: its endpoint, anon
        open_kwargs["storage_options"] = dict(product["store_options"])
    if layout.endswith("-zip"):
        # one zip file: xarray opens it as "zip::" + href (fsspec), which the asset says
        title = f"Zarr v{zarr_format} store in a zip file, revision {product.get('revision')}"
        fields = _asset(
            product, href, "application/zip", title, ["data", "zarr", "archive"], "zarr", open_kwargs
        )
        fields.update({"zarr:consolidated": consolidated, "zarr:zarr_format": zarr_format})
        fields[f"{PREFIX}:open_href"] = f"zip::{href}"
        return ZARR_ASSET, {**fields, "open_zarr_kwargs": {"consolidated": consolidated}}
    title = f"Zarr v{zarr_format} store, revision {product.get('revision')}"
    fields = _asset(product, href, ZARR_MEDIA, title, ["data", "zarr"], "zarr", open_kwargs)
    fields.update({"zarr:consolidated": consolidated, "zarr:zarr_format": zarr_format})
    # a store is a directory: the file extension's checksum is of one file, so it is left out
    # (the record's sha256 digests every file of the store, see _io.sha256_tree)
    fields.pop("file:checksum", None)
    return ZARR_ASSET, {**fields, "open_zarr_kwargs": {"consolidated": consolidated}}


def _lineage_what(product: Mapping[str, Any]) -> str:
    if str(product.get("kind")) == "zarr":
        return "a Zarr store copied from"
    if str(product.get("kind")) == "cfa":
        return "a CF-1.13 aggregation (CFA-netCDF) of"
    return f"Kerchunk references ({product.get('layout', 'json')}) to"


def _product_assets(
    products: Sequence[tuple[Mapping[str, Any], str, str]],
) -> list[tuple[str, dict[str, Any], str, str]]:
    """(asset key, asset fields, report asset key, report href) per product, the first
    product's report under ``validation_report``; one asset per format (DataPoint's rule)."""
    out: list[tuple[str, dict[str, Any], str, str]] = []
    seen: dict[str, Any] = {}
    for i, (product, product_href, report_href) in enumerate(products):
        key, fields = _product_asset(product, product_href)
        if key in seen:
            raise CatalogError(
                f"two products would share the asset {key!r} (kinds {seen[key]!r} and "
                f"{product.get('kind')!r}): an item has one asset per format"
            )
        seen[key] = product.get("kind")
        report_key = REPORT_ASSET if i == 0 else f"{REPORT_ASSET}_{product.get('kind')}".replace("-", "_")
        out.append((key, fields, report_key, report_href))
    return out


def build_item(
    *,
    project_id: str,
    collection_id: str,
    summary: dict[str, Any],
    product: dict[str, Any] | None = None,
    report_href: str | None = None,
    product_href: str | None = None,
    properties: dict[str, Any],
    software: dict[str, str],
    title: str | None = None,
    description: str | None = None,
    license: str = "other",
    collection_href: str | None = None,
    products: Sequence[tuple[Mapping[str, Any], str, str]] | None = None,
) -> dict[str, Any]:
    """A STAC 1.1.0 Item dict for one project's validated products.

    ``products`` lists ``(product record, product href, report href)``, one per product kind
    (one asset each); without it, ``product``, ``product_href`` and ``report_href`` give the
    one product. The first product's report is the ``validation_report`` asset, the others'
    ``validation_report_<kind>``.
    The item id is ``project_id``; the first product's revision is in ``padocc_like:revision``
    (every product's in ``padocc_like:revisions`` when there are several).
    ``properties`` (free facets) are added last and may override anything except the
    datetime and datacube fields. ``collection_href`` is the href of the ``collection``
    link (default ``../collection.json``).
    """
    import pystac

    if not project_id or _PGSTAC_FORBIDDEN.search(project_id):
        raise CatalogError(f"{project_id!r} cannot be a STAC item id (reserved URL characters)")
    if not collection_id:
        raise CatalogError("a STAC item needs a collection id")
    clash = sorted(_PROTECTED & set(properties))
    if clash:
        raise CatalogError(f"catalog properties may not set {', '.join(clash)}")
    for key in ("bbox", "variables", "cube_dimensions", "cube_variables"):
        if key not in summary:
            raise CatalogError(f"dataset summary lacks {key!r}")

    now = _now_iso()
    bbox = [float(v) for v in summary["bbox"]]
    start, end = summary.get("start_datetime"), summary.get("end_datetime")
    if products is None:
        if product is None or product_href is None or report_href is None:
            raise CatalogError("build_item needs `products`, or `product`, `product_href` and `report_href`")
        products = [(product, product_href, report_href)]
    if not products:
        raise CatalogError("a STAC item needs at least one product")
    product = dict(products[0][0])
    revision = product.get("revision")
    assets = _product_assets(products)
    what = " and ".join(_lineage_what(p) for p, _, _ in products)

    props: dict[str, Any] = {
        "title": title or project_id,
        **({"description": description} if description else {}),
        "created": now,
        "updated": now,
        "license": license,
        "variables": list(summary["variables"]),
        "units": dict(summary.get("units", {})),
        "aggregation": True,
        "cube:dimensions": summary["cube_dimensions"],
        "cube:variables": summary["cube_variables"],
        "processing:software": {str(k): str(v) for k, v in software.items()},
        "processing:lineage": (
            f"{what} {product.get('n_files', 'the')} source files, built by padocc_like "
            "(phases init, scan, compute) and validated against the sources (phase validate)"
        ),
        "processing:datetime": now,
        f"{PREFIX}:revision": revision,
        f"{PREFIX}:status": "validated",
    }
    if len(products) > 1:
        props[f"{PREFIX}:revisions"] = {str(p.get("kind")): p.get("revision") for p, _, _ in products}
    for key in ("n_files", "n_refs"):
        if isinstance(product.get(key), int):
            props[f"{PREFIX}:{key}"] = product[key]
    if summary.get("bbox_source") == "unknown":
        props[f"{PREFIX}:bbox_source"] = "unknown"
    props.update(_json_safe(properties))

    if start and end:
        dt, start_dt, end_dt = None, _parse_iso(start), _parse_iso(end)
    else:  # no time axis: STAC needs a datetime, use the creation time
        dt, start_dt, end_dt = _parse_iso(props.get("created", now)), None, None

    item = pystac.Item(
        id=project_id,
        geometry=summary.get("geometry") or bbox_geometry(bbox),
        bbox=bbox,
        datetime=dt,
        start_datetime=start_dt,
        end_datetime=end_dt,
        properties=props,
        stac_extensions=list(ITEM_EXTENSIONS)
        + ([ZARR_EXTENSION] if any(a[0] == ZARR_ASSET for a in assets) else []),
        collection=collection_id,
    )
    json_type = "application/json"
    item.add_link(pystac.Link("collection", collection_href or DEFAULT_COLLECTION_HREF, json_type))
    for asset_key, asset_fields, report_key, report in assets:
        store_href, store_type = asset_fields["href"], asset_fields["type"]
        item.add_asset(
            asset_key,
            pystac.Asset(
                href=asset_fields.pop("href"),
                title=asset_fields.pop("title"),
                media_type=asset_fields.pop("type"),
                roles=asset_fields.pop("roles"),
                extra_fields=asset_fields,
            ),
        )
        item.add_asset(
            report_key,
            pystac.Asset(href=report, title="Validation report", media_type=json_type, roles=["metadata"]),
        )
        item.add_link(pystac.Link("processing-validation", report, json_type, "Validation report"))
        item.add_link(pystac.Link("store", store_href, store_type))
    return item.to_dict(include_self_link=False, transform_hrefs=False)


# --- Collection --------------------------------------------------------------------------
def _item_interval(item: Mapping[str, Any]) -> tuple[datetime, datetime]:
    p = item.get("properties", {})
    start = p.get("start_datetime") or p.get("datetime")
    end = p.get("end_datetime") or p.get("datetime")
    if not start or not end:
        raise CatalogError(f"item {item.get('id')!r} has no datetime or start/end_datetime")
    return _parse_iso(start), _parse_iso(end)


def _item_assets(items: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Asset templates: the fields (type, roles, title, cloud_format) shared by all items."""
    keys: dict[str, list[Mapping[str, Any]]] = {}
    for item in items:
        for key, asset in item.get("assets", {}).items():
            keys.setdefault(key, []).append(asset)
    out: dict[str, dict[str, Any]] = {}
    for key, assets in sorted(keys.items()):
        common: dict[str, Any] = {}
        for field in ("title", "type", "roles", "cloud_format"):
            vals = [a.get(field) for a in assets]
            if vals[0] is not None and all(v == vals[0] for v in vals):
                common[field] = vals[0]
        if "title" not in common:
            common["title"] = key
        if len(common) >= 2:
            out[key] = common
    return out


def build_collection(
    *,
    collection_id: str,
    description: str,
    items: list[dict[str, Any]],
    license: str = "other",
    keywords: Iterable[str] = (),
    title: str | None = None,
    item_hrefs: list[str] | None = None,
) -> dict[str, Any]:
    """A STAC 1.1.0 Collection dict covering ``items`` (at least one).

    Extent: the union of the item bboxes and the min start / max end of their times.
    Summaries: ``cloud_format`` and ``variables``; ``item_assets`` from the shared asset
    fields. ``item_hrefs`` adds one ``item`` link per href.
    """
    import pystac

    if not items:
        raise CatalogError(f"collection {collection_id!r}: no items to describe")
    boxes = [it.get("bbox") for it in items]
    if any(not b or len(b) != 4 for b in boxes):
        raise CatalogError(f"collection {collection_id!r}: every item needs a 2-D bbox")
    w = min(b[0] for b in boxes)
    s = min(b[1] for b in boxes)
    e = max(b[2] for b in boxes)
    n = max(b[3] for b in boxes)
    intervals = [_item_interval(it) for it in items]
    start = min(i[0] for i in intervals)
    end = max(i[1] for i in intervals)

    formats = sorted(
        {
            str(a["cloud_format"])
            for it in items
            for a in it.get("assets", {}).values()
            if a.get("cloud_format")
        }
    )
    variables = sorted({str(v) for it in items for v in it.get("properties", {}).get("variables", [])})
    summaries: dict[str, Any] = {}
    if formats:
        summaries["cloud_format"] = formats
    if variables:
        summaries["variables"] = variables

    coll = pystac.Collection(
        id=collection_id,
        description=description,
        extent=pystac.Extent(pystac.SpatialExtent([[w, s, e, n]]), pystac.TemporalExtent([[start, end]])),
        title=title,
        license=license,
        keywords=list(keywords) or None,
        summaries=pystac.Summaries(summaries),
        extra_fields={"item_assets": _item_assets(items)},
    )
    for href in item_hrefs or []:
        coll.add_link(pystac.Link("item", href, "application/geo+json"))
    return coll.to_dict(include_self_link=False, transform_hrefs=False)


# --- validation ----------------------------------------------------------------------------
def _strip(uri: str) -> str:
    return uri[:-1] if uri.endswith("#") else uri


def _schema_set(schema_dir: Path | None) -> tuple[Any, dict[str, dict[str, Any]]]:
    """(referencing.Registry, {schema URI: schema}) for pystac's core plus ``schema_dir``.

    Cached per directory and its files' sizes and mtimes, so edits to it are seen.
    """
    if schema_dir is None:
        return _load_schemas(None, ())
    root = Path(schema_dir).resolve()
    if not root.is_dir():
        raise CatalogError(f"STAC schema directory {root} does not exist")
    stamp = tuple(
        (p.relative_to(root).as_posix(), p.stat().st_mtime_ns, p.stat().st_size)
        for p in sorted(root.rglob("*.json"))
    )
    return _load_schemas(str(root), stamp)


@functools.lru_cache(maxsize=8)
def _load_schemas(schema_dir: str | None, stamp: tuple[Any, ...]) -> tuple[Any, dict[str, dict[str, Any]]]:
    from pystac.validation.local_validator import get_local_schema_cache
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT7

    def no_network(uri: str) -> Any:
        raise CatalogError(f"schema {uri} is not available locally (validation never fetches)")

    schemas: dict[str, dict[str, Any]] = {_strip(k): v for k, v in get_local_schema_cache().items()}
    if schema_dir is not None:
        root = Path(schema_dir)
        for path in sorted(root.rglob("*.json")):
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:
                raise CatalogError(f"unreadable JSON schema {path}: {err}") from err
            if not isinstance(doc, dict):
                continue
            rel = path.relative_to(root).as_posix()
            if path.name == "schema.json":  # <name>/<version>/schema.json, as published
                schemas.setdefault(_STAC_EXT_BASE + rel, doc)
            if isinstance(doc.get("$id"), str):
                schemas.setdefault(_strip(doc["$id"]), doc)
        # PROJJSON: the datacube schema names v0.4; PROJ ships newer files that validate the
        # same objects, so register whichever is present under the other versions' ids too.
        projjson = next((v for k, v in schemas.items() if _PROJJSON_ID.match(k)), None)
        if projjson is not None:
            for minor in range(2, 8):
                schemas.setdefault(f"https://proj.org/schemas/v0.{minor}/projjson.schema.json", projjson)
    registry = Registry(retrieve=no_network).with_resources(
        (uri, Resource.from_contents(doc, default_specification=DRAFT7)) for uri, doc in schemas.items()
    )
    return registry, schemas


def _core_uri(obj: Mapping[str, Any]) -> str:
    kind = {"Feature": "item", "Collection": "collection", "Catalog": "catalog"}.get(str(obj.get("type")))
    if kind is None:
        raise CatalogError(f"not a STAC Item, Collection or Catalog (type {obj.get('type')!r})")
    if obj.get("stac_version") != STAC_VERSION:
        raise CatalogError(
            f"only STAC {STAC_VERSION} can be validated offline, not {obj.get('stac_version')!r}"
        )
    return f"https://schemas.stacspec.org/v{STAC_VERSION}/{kind}-spec/json-schema/{kind}.json"


def _leaf_error(error: Any) -> Any:
    """The most specific cause of a (possibly anyOf/oneOf) validation error.

    Branches whose ``type`` discriminator does not match (e.g. the Collection branch of an
    extension schema when validating an Item) are ignored; of the rest, the branch with the
    fewest errors wins, and within it the error deepest in the instance.
    """
    while error.context:
        depth = len(error.absolute_path)
        groups: dict[Any, list[Any]] = {}
        for e in error.context:
            groups.setdefault(e.relative_schema_path[0], []).append(e)

        def mismatch(errs: list[Any], depth: int = depth) -> bool:
            return any(
                e.validator in ("const", "enum")
                and len(e.absolute_path) == depth + 1
                and e.absolute_path[-1] == "type"
                for e in errs
            )

        candidates = [g for g in groups.values() if not mismatch(g)] or list(groups.values())
        branch = min(candidates, key=lambda g: (len(g), -max(len(e.absolute_path) for e in g)))
        error = max(branch, key=lambda e: len(e.absolute_path))
    return error


def _message(error: Any) -> str:
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "not" and list(schema.get("not", {})) == ["required"]:
        names = ", ".join(repr(n) for n in schema["not"]["required"])
        return f"{names} is not allowed here"
    msg = str(error.message)
    return msg if len(msg) <= 300 else msg[:297] + "..."


def _check(obj: Mapping[str, Any], uri: str, schema: dict[str, Any], registry: Any) -> None:
    from jsonschema import validators
    from jsonschema.exceptions import SchemaError
    from referencing.exceptions import Unresolvable

    what = f"{obj.get('type')} {obj.get('id')!r}"
    cls = validators.validator_for(schema, default=validators.Draft7Validator)
    try:
        errors = list(cls(schema, registry=registry).iter_errors(obj))
    except Unresolvable as err:
        ref = getattr(err, "ref", err)
        raise CatalogError(f"{what}: schema {uri} refers to {ref}, which is not available locally") from None
    except SchemaError as err:
        raise CatalogError(f"{what}: schema {uri} is invalid: {err.message}") from None
    if errors:
        leaf = _leaf_error(errors[0])
        more = f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""
        raise CatalogError(f"{what} is not valid against {uri}: {_message(leaf)} (at {leaf.json_path}){more}")


def validate_stac(obj: dict[str, Any], schema_dir: Path | None = None) -> None:
    """Validate a STAC 1.1.0 Item/Collection/Catalog dict offline; raise CatalogError if invalid.

    Core schemas come from pystac's bundled copy. Each ``stac_extensions`` URL is validated
    against its schema from ``schema_dir`` (files ``<name>/<version>/schema.json``, or any JSON
    file whose ``$id`` is the URL; PROJJSON for datacube likewise). Without ``schema_dir`` the
    extensions are skipped; with it, a missing extension schema is an error. Nothing is ever
    fetched from the network.
    """
    if not isinstance(obj, Mapping):
        raise CatalogError(f"a STAC object must be a JSON object, not {type(obj).__name__}")
    core = _core_uri(obj)
    registry, schemas = _schema_set(schema_dir)
    try:  # the JSON round trip also proves the object is serialisable
        obj = json.loads(json.dumps(obj, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise CatalogError(f"{obj.get('type')} {obj.get('id')!r} is not valid JSON: {err}") from None
    extensions = [_strip(str(ext)) for ext in obj.get("stac_extensions", []) or []]
    missing = [uri for uri in extensions if uri not in schemas]
    if missing and schema_dir is not None:
        raise CatalogError(f"no local schema for extension(s) {', '.join(missing)} under {schema_dir}")
    _check(obj, core, schemas[core], registry)
    for uri in extensions:
        if uri in schemas:
            _check(obj, uri, schemas[uri], registry)


__all__ = [
    "DATACUBE",
    "FILE",
    "GLOBAL_BBOX",
    "ITEM_EXTENSIONS",
    "PROCESSING",
    "XARRAY_ASSETS",
    "bbox_geometry",
    "build_collection",
    "build_item",
    "summarise_dataset",
    "time_to_iso",
    "validate_stac",
]
