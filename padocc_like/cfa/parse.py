"""The structure of a CF aggregation file ("CFA-netCDF"), read with netCDF4-python.

An aggregation variable is a scalar variable with an ``aggregated_dimensions`` attribute;
its ``aggregated_data`` attribute names the fragment-array variables by feature. The term
set is recognised from the whole set of features, never from one term (``location`` means
fragment sizes in CFA-0.6.2 but URIs in the mid-2024 draft):

* CF-1.13: ``map`` + ``uris`` + ``identifiers``, or ``map`` + ``unique_values``;
* the November 2024 draft: ``map`` + ``location`` + ``identifier``, or ``map`` + ``unique_value``;
* the mid-2024 draft: ``shape`` + ``location`` + ``address``, or ``shape`` + ``value``;
* NCAS-CMS CFA-0.6.2: ``location`` (sizes) + ``file`` + ``format`` + ``address``, case-insensitive.

Everything is validated here (CF-1.13 section 2.8), so a parsed aggregation is always
consistent. No fragment is opened.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from padocc_like.cfa.errors import InvalidAggregationError
from padocc_like.cfa.uris import IN_FILE, NETCDF_LOCK, parse_substitutions

if TYPE_CHECKING:
    import netCDF4


class TermSet(StrEnum):
    """The generation of the conventions an aggregation variable is written in."""

    CF_1_13 = "CF-1.13"
    DRAFT_2024_11 = "draft-2024-11"
    DRAFT_2024_05 = "draft-2024-05"
    CFA_0_6_2 = "CFA-0.6.2"


# feature name in the file -> role, for every allowed combination
_TERM_SETS: dict[TermSet, tuple[dict[str, str], ...]] = {
    TermSet.CF_1_13: (
        {"map": "map", "uris": "uris", "identifiers": "identifiers"},
        {"map": "map", "unique_values": "unique_values"},
    ),
    TermSet.DRAFT_2024_11: (
        {"map": "map", "location": "uris", "identifier": "identifiers"},
        {"map": "map", "unique_value": "unique_values"},
    ),
    TermSet.DRAFT_2024_05: (
        {"shape": "map", "location": "uris", "address": "identifiers"},
        {"shape": "map", "value": "unique_values"},
    ),
}
_CFA_0_6_2 = {"location": "map", "file": "uris", "address": "identifiers", "format": "format"}
_FINAL_TERMS = {"map", "uris", "identifiers", "unique_values"}
_NETCDF_FORMATS = {"nc", "netcdf"}
# term sets in which a fragment may be wholly missing, and which allow substitutions
_LEGACY_LOCATIONS = {TermSet.CFA_0_6_2, TermSet.DRAFT_2024_05}


@dataclass(frozen=True, eq=False)
class FragmentArray:
    """Where the data of each fragment come from, indexed like the array of fragments."""

    shape: tuple[int, ...]
    """Number of fragments along each aggregated dimension."""
    uris: np.ndarray | None = None
    """Object array of ``shape``: per fragment a tuple of alternative URI references, ``()`` for a
    wholly missing fragment (CFA-0.6.2), ``(IN_FILE,)`` for one in the aggregation file itself."""
    identifiers: np.ndarray | None = None
    """Object array of ``shape``: the fragment's variable name or path (``tas``, ``/grp/tas``)."""
    unique_values: np.ma.MaskedArray | None = None
    """Masked array of ``shape``: each fragment's constant value (masked: wholly missing)."""
    substitutions: Mapping[str, str] = field(default_factory=dict)
    """``${name}`` -> replacement, from the file (CFA-0.6.2 and the mid-2024 draft)."""


@dataclass(frozen=True, eq=False)
class AggregationVariable:
    """One aggregation variable: its aggregated data's dimensions, fragment sizes and fragments."""

    name: str
    dtype: np.dtype
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    fragment_sizes: tuple[tuple[int, ...], ...]
    """Per aggregated dimension, the fragment sizes along it (a row of ``map``)."""
    attrs: Mapping[str, Any]
    """The variable's attributes, without ``aggregated_dimensions`` and ``aggregated_data``."""
    fill_value: Any
    """The canonical missing value: ``_FillValue``, else ``missing_value``, else NaN or netCDF's default."""
    fragments: FragmentArray
    term_set: TermSet

    @cached_property
    def offsets(self) -> tuple[np.ndarray, ...]:
        """Per dimension, where each fragment starts, plus the dimension length at the end."""
        return tuple(np.concatenate([[0], np.cumsum(s, dtype=np.int64)]) for s in self.fragment_sizes)

    @property
    def preferred_chunks(self) -> dict[str, int | tuple[int, ...]]:
        """One chunk per fragment: an int where fragments are even, else the sizes."""
        return {
            d: sizes[0] if len(set(sizes[:-1])) <= 1 and sizes[-1] <= sizes[0] else sizes
            for d, sizes in zip(self.dims, self.fragment_sizes, strict=True)
        }


@dataclass(frozen=True, eq=False)
class AggregationFile:
    """An aggregation file's group: its aggregation variables and everything else in it."""

    source: str
    """Absolute local path or URL of the aggregation file."""
    group: str
    conventions: str
    aggregations: Mapping[str, AggregationVariable]
    fragment_array_variables: frozenset[str]
    """Variables of the group that hold fragment arrays (not data)."""
    variables: tuple[str, ...]
    """The group's ordinary variables, in file order."""


def parse_dataset(ds: netCDF4.Dataset, source: str, group: str | None = None) -> AggregationFile:
    """Parse and validate the aggregation variables of ``group`` of an open netCDF4 dataset.

    ``source`` names the file in messages and is the base of relative URIs. Call it under
    :data:`~padocc_like.cfa.uris.NETCDF_LOCK` when other threads may use libnetcdf.
    """
    grp = _group(ds, group or "/", source)
    aggregations: dict[str, AggregationVariable] = {}
    hidden: set[str] = set()
    for name, var in grp.variables.items():
        attrs = set(var.ncattrs())
        if "aggregated_dimensions" in attrs or "aggregated_data" in attrs:
            aggregations[name], used = _aggregation(grp, var, source)
            hidden.update(v.name for v in used if v.group().path == grp.path)
    overlap = hidden & aggregations.keys()
    if overlap:
        raise InvalidAggregationError(
            f"{source}: aggregation variables {sorted(overlap)} are also named as fragment-array variables"
        )
    return AggregationFile(
        source=source,
        group=grp.path,
        conventions=str(getattr(ds, "Conventions", "")),
        aggregations=aggregations,
        fragment_array_variables=frozenset(hidden),
        variables=tuple(n for n in grp.variables if n not in aggregations and n not in hidden),
    )


def parse_aggregation(path: str | os.PathLike[str], group: str | None = None) -> AggregationFile:
    """Parse and validate a local aggregation file (see :func:`parse_dataset`)."""
    import netCDF4

    from padocc_like.cfa.uris import local_or_url

    source = local_or_url(os.fspath(path))
    with NETCDF_LOCK, netCDF4.Dataset(source, mode="r") as ds:
        return parse_dataset(ds, source, group)


def is_aggregation_file(path: str | os.PathLike[str]) -> bool:
    """Whether any variable of a local netCDF file carries ``aggregated_dimensions``."""
    import netCDF4

    with NETCDF_LOCK, netCDF4.Dataset(os.fspath(path), mode="r") as ds:
        groups = [ds]
        while groups:
            grp = groups.pop()
            if any("aggregated_dimensions" in v.ncattrs() for v in grp.variables.values()):
                return True
            groups.extend(grp.groups.values())
    return False


def detect_terms(terms: Mapping[str, str], where: str) -> tuple[TermSet, dict[str, str]]:
    """The term set of ``aggregated_data`` features (feature -> variable), and role -> variable."""
    keys = set(terms)
    for term_set, combinations in _TERM_SETS.items():
        for combination in combinations:
            if keys == combination.keys():
                return term_set, {combination[k]: v for k, v in terms.items()}
    lower = {k.lower(): v for k, v in terms.items()}
    if len(lower) == len(terms) and _CFA_0_6_2.keys() <= lower.keys():
        return TermSet.CFA_0_6_2, {role: lower[term] for term, role in _CFA_0_6_2.items()}
    got = ", ".join(sorted(keys))
    if keys & _FINAL_TERMS:
        raise InvalidAggregationError(
            f"{where}: bad feature set {{{got}}} in aggregated_data; CF-1.13 allows exactly "
            "{map, uris, identifiers} or {map, unique_values} (case-sensitive)"
        )
    raise InvalidAggregationError(
        f"{where}: unknown term set {{{got}}} in aggregated_data; readable are CF-1.13 "
        "{map, uris, identifiers} or {map, unique_values}, the November 2024 draft "
        "{map, location, identifier} or {map, unique_value}, the mid-2024 draft "
        "{shape, location, address} or {shape, value}, and CFA-0.6.2 {location, file, format, address}"
    )


def _aggregation(
    grp: netCDF4.Group, var: netCDF4.Variable, source: str
) -> tuple[AggregationVariable, list[netCDF4.Variable]]:
    where = f"{source}: aggregation variable {var.name!r}"
    attrs = {k: var.getncattr(k) for k in var.ncattrs()}
    if "aggregated_dimensions" not in attrs or "aggregated_data" not in attrs:
        missing = "aggregated_data" if "aggregated_dimensions" in attrs else "aggregated_dimensions"
        raise InvalidAggregationError(f"{where}: has no {missing} attribute")
    if var.ndim:
        raise InvalidAggregationError(
            f"{where}: an aggregation variable must be scalar, but it has dimensions {var.dimensions}"
        )
    dims = tuple(str(attrs.pop("aggregated_dimensions")).split())
    shape = tuple(_dimension_length(grp, d, where) for d in dims)
    term_set, roles = detect_terms(_features(str(attrs.pop("aggregated_data")), where), where)
    used = {role: _variable(grp, name, role, where) for role, name in roles.items()}
    sizes = _fragment_sizes(used["map"], dims, shape, where)
    frag_shape = tuple(len(s) for s in sizes)
    dtype = np.dtype(object) if var.dtype is str else np.dtype(var.dtype)  # vlen strings: object
    fill = _fill_value(dtype, attrs)
    if "unique_values" in used:
        fragments = FragmentArray(
            frag_shape,
            unique_values=_unique_values(used["unique_values"], frag_shape, dtype, attrs, where),
        )
    else:
        fragments = _located_fragments(used, frag_shape, term_set, where)
    agg = AggregationVariable(var.name, dtype, dims, shape, sizes, attrs, fill, fragments, term_set)
    return agg, list(used.values())


def _features(text: str, where: str) -> dict[str, str]:
    """``"map: a uris: b"`` -> ``{"map": "a", "uris": "b"}``."""
    tokens = text.split()
    terms, names = tokens[0::2], tokens[1::2]
    if (
        not tokens
        or len(terms) != len(names)
        or not all(t.endswith(":") and len(t) > 1 for t in terms)
        or any(n.endswith(":") for n in names)
    ):
        raise InvalidAggregationError(
            f"{where}: aggregated_data {text!r} is not a list of 'feature: variable' pairs"
        )
    features = {t[:-1]: n for t, n in zip(terms, names, strict=True)}
    if len(features) != len(terms):
        raise InvalidAggregationError(f"{where}: aggregated_data {text!r} names a feature twice")
    return features


def _group(ds: netCDF4.Dataset, path: str, source: str) -> netCDF4.Group:
    grp = ds
    for part in (p for p in path.split("/") if p):
        if part not in grp.groups:
            raise InvalidAggregationError(f"{source}: has no group {path!r}")
        grp = grp.groups[part]
    return grp


def _variable(grp: netCDF4.Group, name: str, role: str, where: str) -> netCDF4.Variable:
    """A variable named in ``aggregated_data``: a path, or a name searched for in the group
    and then its ancestors (CF section 2.7)."""
    if "/" in name:
        start: netCDF4.Group | None = grp
        if name.startswith("/"):
            while start is not None and start.parent is not None:
                start = start.parent
        for part in name.strip("/").split("/")[:-1]:
            start = None if start is None else start.parent if part == ".." else start.groups.get(part)
        found = None if start is None else start.variables.get(name.rsplit("/", 1)[-1])
    else:
        found, search = None, grp
        while found is None and search is not None:
            found, search = search.variables.get(name), search.parent
    if found is None:
        raise InvalidAggregationError(f"{where}: its {role} variable {name!r} does not exist")
    return found


def _dimension_length(grp: netCDF4.Group, name: str, where: str) -> int:
    search: netCDF4.Group | None = grp
    while search is not None:
        if name in search.dimensions:
            return len(search.dimensions[name])
        search = search.parent
    raise InvalidAggregationError(f"{where}: aggregated dimension {name!r} is not a dimension of the file")


def _fragment_sizes(
    var: netCDF4.Variable, dims: tuple[str, ...], shape: tuple[int, ...], where: str
) -> tuple[tuple[int, ...], ...]:
    """Decode the ``map`` (CFA-0.6.2 ``location``, draft ``shape``) into fragment sizes per dimension."""
    what = f"{where}: map variable {var.name!r}"
    if var.dtype.kind not in "iu":
        raise InvalidAggregationError(f"{what}: must have an integer type, not {var.dtype}")
    var.set_auto_maskandscale(True)
    table = np.ma.asarray(var[...])
    if not dims:
        if table.size != 1 or np.ma.is_masked(table) or int(table.ravel()[0]) != 1:
            raise InvalidAggregationError(
                f"{what}: scalar aggregated data need a map holding the single value 1"
            )
        return ()
    if table.ndim != 2 or table.shape[0] != len(dims):
        raise InvalidAggregationError(
            f"{what}: must be 2-D with one row per aggregated dimension ({len(dims)}), but has shape {table.shape}"
        )
    rows = []
    for r, (dim, length) in enumerate(zip(dims, shape, strict=True)):
        missing = np.ma.getmaskarray(table[r])
        n = int(np.count_nonzero(~missing))
        if n == 0 or missing[:n].any():
            raise InvalidAggregationError(
                f"{what}: row {r} ({dim}) must start with its fragment sizes and be padded with missing values after them"
            )
        sizes = tuple(int(s) for s in table[r, :n])
        if min(sizes) <= 0:
            raise InvalidAggregationError(f"{what}: row {r} ({dim}) has a fragment size <= 0: {sizes}")
        if sum(sizes) != length:
            raise InvalidAggregationError(
                f"{what}: row {r} sums to {sum(sizes)}, but dimension {dim!r} has length {length}"
            )
        rows.append(sizes)
    return tuple(rows)


def _strings(var: netCDF4.Variable, what: str) -> np.ndarray:
    """A string variable (vlen ``string`` or ``char`` with a trailing length dimension) as
    an object array of str, ``""`` where missing."""
    import netCDF4

    var.set_auto_mask(False)
    if var.dtype is str:
        values = np.asarray(var[...], dtype=object)
    elif var.dtype.kind in "SU" and var.ndim:
        var.set_auto_chartostring(False)
        values = np.asarray(netCDF4.chartostring(np.asarray(var[...])), dtype=object)
    else:
        raise InvalidAggregationError(f"{what}: must be a string variable, not {var.dtype}")
    return np.vectorize(lambda s: "" if s is None else str(s).strip("\x00").strip(), otypes=[object])(values)


def _located_fragments(
    used: Mapping[str, netCDF4.Variable], shape: tuple[int, ...], term_set: TermSet, where: str
) -> FragmentArray:
    """URIs and identifiers of an aggregation whose fragments are files."""
    uris_var = used["uris"]
    what = f"{where}: uris variable {uris_var.name!r}"
    uris = _strings(uris_var, what)
    legacy = term_set in _LEGACY_LOCATIONS
    if legacy and uris.ndim == len(shape) + 1:  # trailing dimension of alternative locations
        alternatives = uris
    elif uris.ndim == len(shape):
        alternatives = uris[..., np.newaxis]
    else:
        alternatives = None
    if alternatives is None or alternatives.shape[: len(shape)] != shape:
        raise InvalidAggregationError(
            f"{what}: has shape {uris.shape}, but the map gives {shape} fragments (the valid values per row)"
        )
    ids_var = used["identifiers"]
    ids = _strings(ids_var, f"{where}: identifiers variable {ids_var.name!r}")
    if ids.shape not in ((), shape):
        raise InvalidAggregationError(
            f"{where}: identifiers variable {ids_var.name!r} must be scalar or have the fragment shape {shape}, "
            f"but has shape {ids.shape}"
        )
    ids = np.broadcast_to(ids, shape)
    located = np.empty(shape, dtype=object)
    for index in np.ndindex(shape):
        present = tuple(u for u in alternatives[index] if u)
        if not present and not legacy:
            raise InvalidAggregationError(
                f"{what}: missing value at fragment index {index}; URIs may not be missing"
            )
        if not ids[index] and (present or not legacy):
            raise InvalidAggregationError(
                f"{where}: identifiers variable {ids_var.name!r} has a missing value at fragment index {index}"
            )
        in_file = term_set is TermSet.CFA_0_6_2 and not present and bool(ids[index])
        located[index] = (IN_FILE,) if in_file else present
    if "format" in used:
        _check_formats(used["format"], located, shape, where)
    substitutions = uris_var.getncattr("substitutions") if "substitutions" in uris_var.ncattrs() else ""
    if substitutions and not legacy:
        raise InvalidAggregationError(
            f"{what}: has a substitutions attribute, which {term_set} does not allow"
        )
    try:
        tokens = parse_substitutions(str(substitutions))
    except ValueError as err:
        raise InvalidAggregationError(f"{what}: {err}") from err
    return FragmentArray(shape, uris=located, identifiers=ids, substitutions=tokens)


def _check_formats(var: netCDF4.Variable, located: np.ndarray, shape: tuple[int, ...], where: str) -> None:
    """CFA-0.6.2 fragments must be netCDF files (``format = "nc"``)."""
    what = f"{where}: format variable {var.name!r}"
    formats = _strings(var, what)
    if formats.shape not in ((), shape):
        raise InvalidAggregationError(f"{what}: must be scalar or have the fragment shape {shape}")
    formats = np.broadcast_to(formats, shape)
    for index in np.ndindex(shape):
        if located[index] and formats[index].lower() not in _NETCDF_FORMATS:
            raise InvalidAggregationError(
                f"{what}: fragment {index} has format {formats[index]!r}; only netCDF ('nc') can be read"
            )


def _unique_values(
    var: netCDF4.Variable, shape: tuple[int, ...], dtype: np.dtype, attrs: Mapping[str, Any], where: str
) -> np.ma.MaskedArray:
    """The constants of a ``unique_values`` aggregation; missing (the variable's own or the
    aggregation variable's missing values) means a wholly missing fragment."""
    if var.shape != shape:
        raise InvalidAggregationError(
            f"{where}: unique_values variable {var.name!r} has shape {var.shape}, but the map gives {shape} fragments"
        )
    var.set_auto_maskandscale(True)
    values = np.ma.asarray(var[...])
    missing = np.ma.getmaskarray(values) | missing_mask(values.data, attrs)
    return np.ma.MaskedArray(np.where(missing, 0, values.data).astype(dtype), mask=missing)


def missing_mask(values: np.ndarray, attrs: Mapping[str, Any]) -> np.ndarray:
    """Where ``values`` equal the ``_FillValue`` or a ``missing_value`` of ``attrs`` (NaN-aware)."""
    flags = [np.asarray(attrs[k]).ravel() for k in ("_FillValue", "missing_value") if k in attrs]
    missing = np.zeros(np.shape(values), dtype=bool)
    if not flags or values.dtype.kind not in "biufc":
        return missing
    for flag in np.concatenate(flags):
        missing |= np.isnan(values) if np.isnan(flag) else values == flag
    return missing


def _fill_value(dtype: np.dtype, attrs: Mapping[str, Any]) -> Any:
    import netCDF4

    for key in ("_FillValue", "missing_value"):
        if key in attrs:
            return np.asarray(attrs[key]).ravel()[0]
    if dtype.kind in "fc":
        return np.nan
    return netCDF4.default_fillvals.get(dtype.str[1:]) if dtype.kind in "iu" else None


__all__ = [
    "AggregationFile",
    "AggregationVariable",
    "FragmentArray",
    "TermSet",
    "detect_terms",
    "is_aggregation_file",
    "missing_mask",
    "parse_aggregation",
    "parse_dataset",
]
