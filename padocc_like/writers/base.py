"""The writer contract: one writer per product kind.

A writer serialises an :class:`~padocc_like.references.model.Aggregate` to a
target path atomically (readers never see half a product) and opens a
product the way users will. Writers never decide policy: which revision to
write and whether to overwrite is the compute stage's business.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import asdict, dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from ..errors import UnknownPluginError
from ..references.model import Aggregate
from ..types import ProductKind


@dataclass(frozen=True)
class ProductRecord:
    """What state records about one written product."""

    kind: str
    revision: int
    path: str
    layout: str
    size: int
    sha256: str
    n_refs: int
    created: str
    media_type: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProductRecord:
        return cls(**d)


@runtime_checkable
class Writer(Protocol):
    """Writes one product kind."""

    kind: ClassVar[ProductKind]

    @classmethod
    def from_options(cls, options: Any) -> Writer:
        """Build the writer from the project's ``product`` options (``ProductOptions``)."""
        ...

    def layout_for(self, aggregate: Aggregate) -> str:
        """The on-disk layout this aggregate gets (e.g. ``json`` or ``parquet``)."""
        ...

    def target_name(self, revision: int, layout: str) -> str:
        """File or directory name of a revision, e.g. ``r1.json``."""
        ...

    def write(self, aggregate: Aggregate, target: Path, *, layout: str, revision: int) -> ProductRecord:
        """Write atomically to ``target``; return the record."""
        ...

    def open_dataset(self, record: ProductRecord, **kwargs: Any) -> Any:
        """Open the product as users do (an ``xarray.Dataset``)."""
        ...


_BUILTIN = {
    ProductKind.KERCHUNK: "padocc_like.writers.kerchunk:KerchunkWriter",
    ProductKind.CFA: "padocc_like.writers.cfa:CFAWriter",
    ProductKind.ZARR: "padocc_like.writers.zarr:ZarrWriter",
}


@functools.cache
def available_writers() -> dict[str, str]:
    """Product kinds with a writer, mapped to import targets (built-ins first)."""
    targets: dict[str, str] = {str(k): v for k, v in _BUILTIN.items()}
    for ep in entry_points(group="padocc_like.writers"):
        targets.setdefault(ep.name, ep.value)
    return targets


def get_writer(kind: ProductKind | str, options: Any = None) -> Writer:
    """The writer for ``kind``, built from the project's ``product`` options (defaults if None)."""
    targets = available_writers()
    if str(kind) not in targets:
        raise UnknownPluginError(
            f"no writer for product kind {str(kind)!r}; installed: {', '.join(sorted(targets))}"
        )
    module, _, attr = targets[str(kind)].partition(":")
    cls = getattr(importlib.import_module(module), attr)
    return cls() if options is None else cls.from_options(options)


@functools.cache
def xarray_engine(name: str) -> Any:
    """The xarray backend registered as ``name`` (xarray's own, or a package's entry point),
    loaded alone, to pass as ``engine=``. Asked for a name, xarray first imports and checks
    every installed backend (h5netcdf, scipy, pydap, cfapyx, ...): over half a second of each
    process that opens a product. The backend and what it returns are the same; an unknown
    name is returned as it is, for xarray to report."""
    from xarray.backends.plugins import BACKEND_ENTRYPOINTS

    if name in BACKEND_ENTRYPOINTS:
        return BACKEND_ENTRYPOINTS[name][1]
    for ep in entry_points(group="xarray.backends"):
        if ep.name == name:
            return ep.load()
    return name
