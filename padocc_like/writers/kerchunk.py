"""Kerchunk reference products: spec version 1 JSON, or Parquet when large.

The JSON is deterministic (sorted keys, inline chunks as ``base64:``), so the
same inputs give a byte-identical product. Large products use fsspec's lazy
reference format (a directory of Parquet record files plus ``.zmetadata``).
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .._io import (
    atomic_directory,
    atomic_write_bytes,
    sha256_file,
    sha256_tree,
    utc_now,
    write_reference_record,
)
from ..errors import ProductError
from ..references.model import Aggregate, AggVariable, chunk_key, decode_fill_value
from ..references.read import encode_chunk
from ..types import ProductKind
from .base import ProductRecord, xarray_engine

JSON_BYTES_PER_REF = 110
"""Estimated bytes per chunk reference in the JSON layout (measured on CF archives)."""


def _doc(obj: Any) -> str:
    # inner documents (.zarray/.zattrs) may hold NaN, as zarr-python writes them
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True)


def fill_chunk(var: AggVariable) -> bytes:
    """An encoded chunk of the variable's fill value: what readers produce for an unstored chunk."""
    dtype = np.dtype(var.dtype)
    fill = decode_fill_value(var.fill_value, dtype)
    block = np.full(var.chunks or (), 0 if fill is None else fill, dtype=dtype)
    return encode_chunk(block.tobytes(), var.filters)


def aggregate_to_refs(aggregate: Aggregate) -> dict[str, Any]:
    """The ``refs`` mapping of a Kerchunk v1 product."""
    refs: dict[str, Any] = {
        ".zgroup": _doc({"zarr_format": 2}),
        ".zattrs": _doc(aggregate.attrs),
    }
    for name in sorted(aggregate.variables):
        var = aggregate.variables[name]
        refs[f"{name}/.zarray"] = _doc(var.zarray())
        refs[f"{name}/.zattrs"] = _doc(var.zattrs())
        grid = var.grid
        stored = np.flatnonzero(var.url_index >= 0)
        if stored.size:
            idx = np.unravel_index(stored, grid) if grid else ()
            keys = [".".join(map(str, t)) for t in zip(*idx, strict=True)] if grid else ["0"]
            for key, u, o, n in zip(
                keys,
                var.url_index[stored].tolist(),
                var.offsets[stored].tolist(),
                var.lengths[stored].tolist(),
                strict=True,
            ):
                refs[f"{name}/{key}"] = [aggregate.urls[u], o, n]
        for flat, data in var.inline.items():
            key = chunk_key(tuple(int(i) for i in np.unravel_index(flat, grid)) if grid else ())
            refs[f"{name}/{key}"] = "base64:" + base64.b64encode(data).decode()
    return refs


class KerchunkWriter:
    """Writes Kerchunk references (JSON, or Parquet past a size threshold)."""

    kind: ClassVar[ProductKind] = ProductKind.KERCHUNK

    def __init__(
        self,
        *,
        parquet_threshold_bytes: int = 32 << 20,
        record_size: int = 100_000,
        layout: str = "auto",
    ) -> None:
        if layout not in ("auto", "json", "parquet"):
            raise ValueError(f"kerchunk layout must be auto, json or parquet, not {layout!r}")
        self.parquet_threshold_bytes = parquet_threshold_bytes
        self.record_size = record_size
        self.layout = layout

    @classmethod
    def from_options(cls, options: Any) -> KerchunkWriter:
        """From ``ProductOptions`` (layout, parquet_threshold_mb, record_size)."""
        return cls(
            parquet_threshold_bytes=int(options.parquet_threshold_mb * (1 << 20)),
            record_size=options.record_size,
            layout=options.layout,
        )

    @staticmethod
    def estimate_json_bytes(n_refs: int, inline_bytes: int) -> int:
        return n_refs * JSON_BYTES_PER_REF + inline_bytes * 4 // 3

    def layout_for(self, aggregate: Aggregate) -> str:
        if self.layout != "auto":
            return self.layout
        inline = sum(len(b) for v in aggregate.variables.values() for b in v.inline.values())
        est = self.estimate_json_bytes(aggregate.n_refs(), inline)
        return "parquet" if est > self.parquet_threshold_bytes else "json"

    @staticmethod
    def target_name(revision: int, layout: str) -> str:
        return f"r{revision}.json" if layout == "json" else f"r{revision}.parq"

    def write(self, aggregate: Aggregate, target: Path, *, layout: str, revision: int) -> ProductRecord:
        n_refs = sum(int(np.count_nonzero(v.url_index >= 0)) for v in aggregate.variables.values())
        if layout == "json":
            refs = aggregate_to_refs(aggregate)
            body = json.dumps({"version": 1, "refs": refs}, sort_keys=True, separators=(",", ":"))
            atomic_write_bytes(target, body.encode())
            size = target.stat().st_size
            digest = sha256_file(target)
            media = "application/json"
        elif layout == "parquet":
            self._write_parquet(aggregate, target)
            size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
            digest = sha256_tree(target)
            media = "application/vnd.apache.parquet"
        else:
            raise ProductError(f"unknown kerchunk layout {layout!r}")
        return ProductRecord(
            kind=str(self.kind),
            revision=revision,
            path=str(target),
            layout=layout,
            size=size,
            sha256=digest,
            n_refs=n_refs,
            created=utc_now(),
            media_type=media,
        )

    def _write_parquet(self, aggregate: Aggregate, target: Path) -> None:
        """fsspec's lazy reference layout, written straight from the chunk tables.

        Each variable's references go, in C order of its chunk grid, into record
        files of ``record_size`` rows (columns ``path``, ``offset``, ``size``,
        ``raw``), built column-wise with numpy and Arrow (:func:`padocc_like._io.write_reference_record`):
        no Python object per reference, so millions of references fit in bounded memory.
        """
        try:
            import pyarrow as pa
        except ImportError as err:  # pragma: no cover - depends on extras
            raise ProductError(
                "Parquet references need the 'parquet' extra (fsspec, pyarrow, fastparquet)"
            ) from err
        metadata: dict[str, Any] = {".zgroup": {"zarr_format": 2}, ".zattrs": aggregate.attrs}
        urls = pa.array(list(aggregate.urls), type=pa.string())
        rs = self.record_size
        with atomic_directory(target) as tmp:
            for name in sorted(aggregate.variables):
                var = aggregate.variables[name]
                metadata[f"{name}/.zarray"] = var.zarray()
                metadata[f"{name}/.zattrs"] = var.zattrs()
                n = int(var.url_index.size)
                if n == 0:
                    continue
                (tmp / name).mkdir()
                for record in range(math.ceil(n / rs)):
                    lo, hi = record * rs, min((record + 1) * rs, n)
                    rows = np.arange(lo, lo + rs)
                    valid = rows < hi
                    idx = np.where(valid, rows, 0)
                    stored = valid & (var.url_index[idx] >= 0)
                    path = pa.DictionaryArray.from_arrays(
                        pa.array(np.where(stored, var.url_index[idx], 0).astype("int32"), mask=~stored), urls
                    ).cast(pa.string())
                    raw = np.full(rs, None, dtype=object)
                    for flat, data in var.inline.items():
                        if lo <= flat < hi:
                            raw[flat - lo] = data
                    # fsspec reads a null path back as NaN under pandas >= 3 and then fails on
                    # it: a chunk without a reference carries its fill-value chunk inline
                    missing = valid & ~stored & np.equal(raw, None)
                    if missing.any():
                        raw[missing] = [fill_chunk(var)] * int(missing.sum())
                    write_reference_record(
                        tmp / name / f"refs.{record}.parq",
                        path,
                        np.where(stored, var.offsets[idx], 0).astype("int64"),
                        np.where(stored, var.lengths[idx], 0).astype("int64"),
                        raw,
                    )
            body = {"metadata": metadata, "record_size": rs}
            (tmp / ".zmetadata").write_text(json.dumps(body, sort_keys=True, allow_nan=True))

    def open_dataset(self, record: ProductRecord, **kwargs: Any) -> Any:
        """Open with ``xarray.open_dataset(engine="kerchunk")``, as users do."""
        import xarray as xr

        storage_options = dict(kwargs.pop("storage_options", {}) or {})
        storage_options.setdefault("remote_protocol", "file")
        return xr.open_dataset(
            record.path, engine=xarray_engine("kerchunk"), storage_options=storage_options, **kwargs
        )
