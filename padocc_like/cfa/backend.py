"""The xarray backend ``engine="padocc_cfa"`` for CF aggregation files (CFA-netCDF).

Ordinary variables of the aggregation file are read by xarray's netCDF4 store; each
aggregation variable becomes a lazy :class:`~padocc_like.cfa.read.AggregatedArray`, and the
fragment-array variables are hidden. Variables are returned raw, so xarray's CF decoding
(``mask_and_scale``, ``decode_times``...) applies as for any backend. Opening reads no fragment.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import xarray as xr
from xarray.backends import BackendEntrypoint
from xarray.backends.common import AbstractDataStore
from xarray.backends.netCDF4_ import NetCDF4DataStore
from xarray.backends.store import StoreBackendEntrypoint
from xarray.core import indexing

from padocc_like.cfa.parse import AggregationFile, is_aggregation_file, parse_dataset
from padocc_like.cfa.read import AggregatedArray, FragmentOptions
from padocc_like.cfa.uris import NETCDF_LOCK, from_memory, is_remote, local_or_url, read_bytes
from padocc_like.errors import ConfigError

_MAGIC = (b"CDF\x01", b"CDF\x02", b"CDF\x05", b"\x89HDF\r\n\x1a\n")


@dataclass(frozen=True)
class CFAOptions:
    """The ``cfa_options`` of :meth:`CFABackendEntrypoint.open_dataset`."""

    substitutions: Mapping[str, str] = field(default_factory=dict)
    """``{"${name}": value}`` replaces (or defines) a CFA-0.6.2 substitution; any other
    ``{old: new}`` replaces the prefix ``old`` of a fragment URI by ``new`` before it is resolved."""
    decode_cfa: bool = True
    """False: return the file as stored (scalar aggregation and fragment-array variables)."""

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any] | None) -> CFAOptions:
        """Validate user options; unknown keys and wrong types raise :class:`ConfigError`."""
        options = dict(options or {})
        unknown = set(options) - {"substitutions", "decode_cfa"}
        if unknown:
            raise ConfigError(
                f"unknown cfa_options {sorted(unknown)}; the options are 'substitutions' and 'decode_cfa'"
            )
        subs = options.get("substitutions", {})
        if not isinstance(subs, Mapping) or not all(isinstance(v, str) for kv in subs.items() for v in kv):
            raise ConfigError(f"cfa_options['substitutions'] must map strings to strings, not {subs!r}")
        decode = options.get("decode_cfa", True)
        if not isinstance(decode, bool):
            raise ConfigError(f"cfa_options['decode_cfa'] must be True or False, not {decode!r}")
        return cls(dict(subs), decode)


class CFADataStore(AbstractDataStore):
    """The variables of an aggregation file, with aggregation variables as lazy arrays."""

    def __init__(
        self, aggregation: AggregationFile, inner: NetCDF4DataStore, options: FragmentOptions
    ) -> None:
        self.aggregation = aggregation
        self.inner = inner
        self.options = options

    def load(self) -> tuple[dict[str, xr.Variable], dict[str, Any]]:
        variables, attrs = self.inner.load()
        agg = self.aggregation
        out: dict[str, xr.Variable] = {}
        for name, var in variables.items():
            if name in agg.fragment_array_variables:
                continue
            if name in agg.aggregations:
                out[name] = self._aggregated(name)
            else:
                out[name] = var
        return out, dict(attrs)

    def _aggregated(self, name: str) -> xr.Variable:
        agg = self.aggregation.aggregations[name]
        data = indexing.LazilyIndexedArray(AggregatedArray(agg, self.options))
        encoding = {"preferred_chunks": agg.preferred_chunks, "source": self.aggregation.source}
        return xr.Variable(agg.dims, data, attrs=dict(agg.attrs), encoding=encoding)

    def get_encoding(self) -> dict[str, Any]:
        return self.inner.get_encoding()

    def close(self) -> None:
        self.inner.close()


class CFABackendEntrypoint(BackendEntrypoint):
    """Open CF-1.13 aggregation files (and the 2024 drafts and CFA-0.6.2) with xarray."""

    description: ClassVar[str] = (
        "CF aggregation files (CFA-netCDF: CF-1.13, its 2024 drafts, CFA-0.6.2), read fragment by fragment"
    )
    url: ClassVar[str] = (
        "https://cfconventions.org/Data/cf-conventions/cf-conventions-1.13/cf-conventions.html#aggregation-variables"
    )
    open_dataset_parameters: ClassVar[tuple[str, ...]] = (
        "filename_or_obj",
        "mask_and_scale",
        "decode_times",
        "concat_characters",
        "decode_coords",
        "drop_variables",
        "use_cftime",
        "decode_timedelta",
        "group",
        "cfa_options",
        "storage_options",
    )

    def open_dataset(  # type: ignore[override]  # explicit keywords, as xarray's own backends
        self,
        filename_or_obj: str | os.PathLike[str],
        *,
        mask_and_scale: bool = True,
        decode_times: Any = True,
        concat_characters: bool = True,
        decode_coords: Any = True,
        drop_variables: str | Iterable[str] | None = None,
        use_cftime: bool | None = None,
        decode_timedelta: Any = None,
        group: str | None = None,
        cfa_options: Mapping[str, Any] | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> xr.Dataset:
        """Open an aggregation file (a local path, a ``file:`` URI, or a URL for fsspec).

        ``cfa_options``: see :class:`CFAOptions`. ``storage_options`` are passed to fsspec
        for a remote aggregation file and remote fragments.
        """
        options = CFAOptions.from_mapping(cfa_options)
        if not isinstance(filename_or_obj, str | os.PathLike):
            raise TypeError(f"engine 'padocc_cfa' opens paths and URLs, not {type(filename_or_obj).__name__}")
        source = local_or_url(os.fspath(filename_or_obj))
        store = _open_store(source, group, options, dict(storage_options or {}))
        return StoreBackendEntrypoint().open_dataset(
            store,
            mask_and_scale=mask_and_scale,
            decode_times=decode_times,
            concat_characters=concat_characters,
            decode_coords=decode_coords,
            drop_variables=drop_variables,
            use_cftime=use_cftime,
            decode_timedelta=decode_timedelta,
        )

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        """``.nca`` files, and local netCDF files with an ``aggregated_dimensions`` attribute."""
        if not isinstance(filename_or_obj, str | os.PathLike):
            return False
        path = os.fspath(filename_or_obj)
        if not isinstance(path, str):
            return False
        if path.endswith(".nca"):
            return True
        if is_remote(path) or not Path(path).is_file():
            return False
        with open(path, "rb") as f:
            head = f.read(8)
        if not head.startswith(_MAGIC):
            return False
        try:
            return is_aggregation_file(path)
        except OSError:
            return False


def _open_store(
    source: str, group: str | None, options: CFAOptions, storage_options: dict[str, Any]
) -> AbstractDataStore:
    """The store of an aggregation file: parsed, its ordinary variables left to xarray."""

    if is_remote(source):
        data = read_bytes(source, storage_options)
        with NETCDF_LOCK:
            nc = from_memory(source, data)
        inner = NetCDF4DataStore(nc, group=group)
    else:
        inner = NetCDF4DataStore.open(source, mode="r", group=group)
    if not options.decode_cfa:
        return inner
    try:
        root = _root(inner)  # acquires the file under the store's own lock: not inside ours
        with NETCDF_LOCK:
            aggregation = parse_dataset(root, source, group)
    except BaseException:
        inner.close()
        raise
    fragment_options = FragmentOptions(source, options.substitutions, storage_options)
    return CFADataStore(aggregation, inner, fragment_options)


def _root(store: NetCDF4DataStore) -> Any:
    """The root dataset of a netCDF4 store (its ``ds`` is the opened group)."""
    grp = store.ds
    while grp.parent is not None:
        grp = grp.parent
    return grp


__all__ = ["CFABackendEntrypoint", "CFADataStore", "CFAOptions"]
