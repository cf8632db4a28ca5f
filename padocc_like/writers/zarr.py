"""Zarr products: a real store copied from the sources, rechunked for how it is read.

One store per revision: ``r<N>.zarr``, Zarr v2 with consolidated metadata (``.zmetadata``)
by default or Zarr v3 (optionally sharded), or the same packed in one zip file
(``r<N>.zarr.zip``). Every variable keeps its stored type, fill value and CF attributes
(``scale_factor``, ``units``, ``calendar``...), so the store decodes to the sources' values;
only the chunking and the compressor change. The chunk layout comes from the configured
access pattern (:func:`padocc_like.zarrstore.layout.choose_chunks`) and is recorded, with
its reasoning, in the product record.

Values are copied in blocks planned by :func:`padocc_like.zarrstore.copy.plan_copy` within
``memory_limit_mb``, directly or through an intermediate store: variables along the
concatenation dims are read from the source files' regions (h5py, or netCDF4-python for
netCDF-3 and strings; raw values, no masking or scaling), the others from the aggregate's
chunk tables. The store is built in ``.r<N>.zarr.inprogress`` with a record of finished
blocks, so that an interrupted write resumes, and is renamed into place when complete.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import os
import shutil
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .._io import (
    atomic_file,
    atomic_write_text,
    fsync_tree,
    replace_directory,
    sha256_file,
    sha256_tree,
    utc_now,
)
from ..errors import ProductError
from ..references.model import Aggregate, AggVariable, FragmentedVariable, decode_fill_value
from ..references.read import read_aggregated_region
from ..storage import local_path_of
from ..types import ProductKind
from ..zarrstore.copy import JsonDoneRecord, execute_copy, plan_copy
from .base import ProductRecord, xarray_engine

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/vnd+zarr"
SOURCES_FILE = ".padocc-sources.json"
"""The store's provenance (zarr ignores the file): the source URLs it was copied from, each
variable's chunk layout with its reasoning, and the copy plan that wrote it."""
MAX_OPEN_FILES = 16


@dataclass(frozen=True)
class ZarrSettings:
    """How a store is written (the ``zarr`` section of the product options)."""

    format: int = 2
    codec: str = "zstd"
    level: int | None = None
    pattern: str = "maps"
    target_chunk_mb: float = 8.0
    chunks: dict[str, int] | None = None
    memory_limit_mb: float = 256.0
    shard_mb: float | None = None
    store: str = "directory"


class ZarrWriter:
    """Writes Zarr stores (``r<N>.zarr``)."""

    kind: ClassVar[ProductKind] = ProductKind.ZARR

    def __init__(self, settings: ZarrSettings | None = None) -> None:
        self.options = settings or ZarrSettings()

    @classmethod
    def from_options(cls, options: Any) -> ZarrWriter:
        """From ``ProductOptions`` (its ``zarr`` section)."""
        z = options.zarr
        return cls(
            ZarrSettings(
                format=int(z.format),
                codec=z.codec,
                level=z.level,
                pattern=z.pattern,
                target_chunk_mb=z.target_chunk_mb,
                chunks=dict(z.chunks) if z.chunks else None,
                memory_limit_mb=z.memory_limit_mb,
                shard_mb=z.shard_mb,
                store=z.store,
            )
        )

    def layout_for(self, aggregate: Aggregate) -> str:
        return f"zarr{self.options.format}" + ("-zip" if self.options.store == "zip" else "")

    @staticmethod
    def target_name(revision: int, layout: str) -> str:
        return f"r{revision}.zarr" + (".zip" if layout.endswith("-zip") else "")

    def write(self, aggregate: Aggregate, target: Path, *, layout: str, revision: int) -> ProductRecord:
        if layout not in LAYOUTS:
            raise ProductError(f"unknown zarr layout {layout!r} (expected one of {', '.join(LAYOUTS)})")
        if layout.endswith("-zip"):
            # built as a directory (resumable), packed into the zip file in place of publishing it
            directory = target.with_name(target.name.removesuffix(".zip"))
            n_chunks = write_store(
                aggregate, directory, self.options, publish=lambda work: _zip_store(work, target)
            )
            size, sha = target.stat().st_size, sha256_file(target)
        else:
            n_chunks = write_store(aggregate, target, self.options)
            size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
            sha = sha256_tree(target)
        return ProductRecord(
            kind=str(self.kind),
            revision=revision,
            path=str(target),
            layout=layout,
            size=size,
            sha256=sha,
            n_refs=n_chunks,
            created=utc_now(),
            media_type=MEDIA_TYPE,
        )

    def open_dataset(self, record: ProductRecord, **kwargs: Any) -> Any:
        """Open with ``xarray.open_dataset(engine="zarr")``, as users do."""
        import xarray as xr

        consolidated = record.layout.startswith("zarr2")
        path = f"zip::{record.path}" if record.layout.endswith("-zip") else record.path
        return xr.open_dataset(path, engine=xarray_engine("zarr"), consolidated=consolidated, **kwargs)


LAYOUTS = ("zarr2", "zarr3", "zarr2-zip", "zarr3-zip")
"""Zarr format, and ``-zip`` for a store in one zip file."""


def _zip_store(directory: Path, target: Path) -> None:
    """Pack the finished store ``directory`` into the zip file ``target`` (entries in sorted
    order, stored, fixed timestamps: the same store gives the same bytes), atomically, then
    remove the directory."""
    import zipfile

    with atomic_file(target) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(path.relative_to(directory).as_posix(), date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_STORED
            with path.open("rb") as src, zf.open(info, "w", force_zip64=True) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)  # a shard can be large: streamed
    shutil.rmtree(directory)


def chunk_layouts(aggregate: Aggregate, options: Any) -> dict[str, dict[str, Any]]:
    """Each variable's chunk choice (``ChunkChoice.to_dict()``), as written and recorded."""
    from ..zarrstore.layout import choose_chunks

    time_dim = aggregate.concat_dims[0] if aggregate.concat_dims else None
    out = {}
    for name in sorted(aggregate.variables):
        var = aggregate.variables[name]
        configured = {d: n for d, n in (options.chunks or {}).items() if d in var.dims} or None
        choice = choose_chunks(
            var.shape,
            var.dims,
            np.dtype(var.dtype).itemsize,
            pattern=options.pattern,
            target_bytes=int(options.target_chunk_mb * (1 << 20)),
            time_dim=time_dim,
            configured=configured,
        )
        out[name] = choice.to_dict()
        if time_dim in var.dims and time_dim not in (configured or {}) and choice.pattern != "timeseries":
            _align_to_files(out[name], var.dims.index(time_dim), _file_length(aggregate, time_dim))
        if options.shard_mb is not None and var.shape:
            inner = tuple(out[name]["chunks"])
            shards = shard_shape(var.shape, inner, np.dtype(var.dtype).itemsize, options.shard_mb)
            out[name]["shards"] = list(shards)
            out[name]["reason"] += (
                f" Shards of {'x'.join(map(str, shards))} ({math.prod(shards) // math.prod(inner)} "
                f"chunks) near the {options.shard_mb:g} MiB shard target."
            )
    return out


def _file_length(aggregate: Aggregate, dim: str) -> int | None:
    """The files' common length along ``dim`` (the last file may be shorter), or None."""
    lengths = [f.ranges[dim][1] - f.ranges[dim][0] for f in aggregate.fragments if dim in f.ranges]
    if not lengths or len(set(lengths[:-1])) > 1 or lengths[-1] > lengths[0]:
        return None
    return lengths[0]


def _align_to_files(layout: dict[str, Any], axis: int, file_length: int | None) -> None:
    """Round an automatic time chunk to whole files (or a divisor of a file's length), so that
    blocks of whole source and target chunks stay small and the copy is direct: a chunk of
    517 steps over files of 30 would need an intermediate store."""
    chunk = layout["chunks"][axis]
    if not file_length or chunk % file_length == 0 or file_length % chunk == 0:
        return
    if chunk > file_length:
        aligned = chunk // file_length * file_length
    else:
        aligned = max(d for d in range(1, chunk + 1) if file_length % d == 0)
    itemsize = layout["chunk_bytes"] // max(1, math.prod(layout["chunks"]))
    layout["chunks"] = [aligned if a == axis else c for a, c in enumerate(layout["chunks"])]
    layout["chunk_bytes"] = math.prod(layout["chunks"]) * itemsize
    layout["reason"] += (
        f" The time chunk is {aligned} rather than {chunk}, to hold whole files of {file_length} steps "
        "(a direct copy, no intermediate store)."
    )


def shard_shape(
    shape: tuple[int, ...], chunks: tuple[int, ...], itemsize: int, shard_mb: float
) -> tuple[int, ...]:
    """Shards of whole chunks up to about ``shard_mb``: the chunk count is doubled along the
    axis with the most chunks left outside a shard, while the shard fits the target."""
    target = shard_mb * (1 << 20)
    factors = [1] * len(shape)
    grid = [-(-n // c) for n, c in zip(shape, chunks, strict=True)]
    while True:
        room = [(grid[a] / factors[a], a) for a in range(len(shape)) if factors[a] < grid[a]]
        if not room:
            break
        _, axis = max(room)
        grown = min(grid[axis], factors[axis] * 2)
        size = math.prod(
            c * (grown if a == axis else f) for a, (c, f) in enumerate(zip(chunks, factors, strict=True))
        )
        if size * itemsize > target:
            break
        factors[axis] = grown
    return tuple(c * f for c, f in zip(chunks, factors, strict=True))  # whole chunks, as zarr asks


def _compressor(options: Any, zarr_format: int) -> Any:
    if options.codec == "none":
        return None
    if zarr_format == 2:
        import numcodecs

        if options.codec == "zstd":
            return numcodecs.Zstd(level=options.level if options.level is not None else 3)
        if options.codec == "zlib":
            return numcodecs.Zlib(level=options.level if options.level is not None else 4)
        return numcodecs.Blosc(cname="zstd", clevel=options.level if options.level is not None else 5)
    from zarr.codecs import BloscCodec, GzipCodec, ZstdCodec

    if options.codec == "zstd":
        return ZstdCodec(level=options.level if options.level is not None else 3)
    if options.codec == "zlib":
        return GzipCodec(level=options.level if options.level is not None else 4)
    return BloscCodec(cname="zstd", clevel=options.level if options.level is not None else 5)


class _Files:
    """Source files open for region reads of raw values (no masking or scaling), a bounded
    few: h5py for netCDF-4/HDF5 numeric variables (reading straight into the output),
    netCDF4-python otherwise (netCDF-3, strings)."""

    H5_KINDS = "iufc"

    def __init__(self) -> None:
        self._open: OrderedDict[str, tuple[Any, Any]] = OrderedDict()  # url -> (h5py, netCDF4)

    def _handles(self, url: str, name: str) -> tuple[Any, Any]:
        handles = self._open.get(url)
        if handles is None:
            import h5py

            path = local_path_of(url)  # a remote source is downloaded once (whole files are copied)
            h5 = None
            try:
                if h5py.is_hdf5(path):
                    # no chunk cache: blocks cover whole source chunks, each read once
                    h5 = h5py.File(path, "r", rdcc_nbytes=0)
            except OSError:
                h5 = None
            handles = (h5, None)
            self._open[url] = handles
            while len(self._open) > MAX_OPEN_FILES:
                for f in self._open.popitem(last=False)[1]:
                    if f is not None:
                        f.close()
        else:
            self._open.move_to_end(url)
        return handles

    def _netcdf(self, url: str, name: str) -> Any:
        import netCDF4

        h5, nc = self._open[url]
        if nc is None:
            try:
                nc = netCDF4.Dataset(local_path_of(url))
            except OSError as err:
                raise ProductError(f"{url}: cannot open the source to copy {name!r}: {err}") from err
            nc.set_auto_maskandscale(False)
            nc.set_auto_chartostring(False)
            self._open[url] = (h5, nc)
        if name not in nc.variables:
            raise ProductError(f"{url}: has no variable {name!r} to copy")
        return nc.variables[name]

    def read_into(self, url: str, name: str, src: tuple[slice, ...], out: np.ndarray) -> None:
        """Copy ``name[src]`` of the file ``url`` into ``out`` (its shape)."""
        import h5py

        h5, _ = self._handles(url, name)
        if h5 is not None and out.dtype.kind in self.H5_KINDS:
            shadow = f"_nc4_non_coord_{name}"
            obj = h5.get(shadow) if shadow in h5 else h5.get(name)
            if (
                isinstance(obj, h5py.Dataset)
                and obj.dtype.kind == out.dtype.kind
                and obj.dtype.itemsize == out.dtype.itemsize
                and obj.ndim == out.ndim
            ):
                if obj.ndim == 0:
                    out[...] = obj[()]
                elif out.flags.c_contiguous and obj.dtype == out.dtype:
                    obj.read_direct(out, source_sel=src)
                else:
                    out[...] = obj[src]
                return
        source = self._netcdf(url, name)
        out[...] = np.asarray(source[src] if source.ndim else source[...])

    def close(self) -> None:
        for handles in self._open.values():
            for f in handles:
                if f is not None:
                    f.close()
        self._open.clear()


class _Ranges:
    """``read_range`` callables over the aggregate's files, a bounded few kept open."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self._fds: OrderedDict[int, int] = OrderedDict()

    def read_from(self, u: int) -> Any:
        def read_range(offset: int, length: int) -> bytes:
            fd = self._fds.get(u)
            if fd is None:
                fd = os.open(local_path_of(self.urls[u]), os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
                self._fds[u] = fd
                while len(self._fds) > MAX_OPEN_FILES:
                    os.close(self._fds.popitem(last=False)[1])
            data = os.pread(fd, length, offset)
            if len(data) != length:
                raise ProductError(
                    f"{self.urls[u]}: expected {length} bytes at offset {offset}, file is shorter"
                )
            return data

        return read_range

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def _fragment_region(var: FragmentedVariable, region: tuple[slice, ...], files: _Files) -> np.ndarray:
    """The stored values of ``region`` of a fragmented variable, read from its files (the
    fragments tile the variable, so every value is read)."""
    dtype = np.dtype(var.dtype).newbyteorder("=")
    out = np.empty(tuple(sl.stop - sl.start for sl in region), dtype=dtype)
    starts = [np.concatenate([[0], np.cumsum(row)]) for row in var.sizes]
    per_dim = []
    for sl, edges in zip(region, starts, strict=True):
        first = int(np.searchsorted(edges, sl.start, side="right")) - 1
        last = int(np.searchsorted(edges, sl.stop, side="left"))
        per_dim.append(range(first, last))
    for idx in itertools.product(*per_dim):
        src, dst = [], []
        for sl, edges, i in zip(region, starts, idx, strict=True):
            a, b = max(sl.start, int(edges[i])), min(sl.stop, int(edges[i + 1]))
            src.append(slice(a - int(edges[i]), b - int(edges[i])))
            dst.append(slice(a - sl.start, b - sl.start))
        part = out[tuple(dst)]
        if part.flags.c_contiguous:
            files.read_into(str(var.uris[idx]), var.identifier(idx), tuple(src), part)
        else:
            buffer = np.empty(part.shape, dtype=dtype)
            files.read_into(str(var.uris[idx]), var.identifier(idx), tuple(src), buffer)
            part[...] = buffer
    return out


INPROGRESS = ".inprogress"
"""Suffix of a store being written (``.r<N>.zarr.inprogress``): kept across interruptions so
that a rerun resumes it; compute's clean-up of ``.partial`` leftovers leaves it alone."""
JOB_FILE = "job.json"
PROGRESS_FILE = "progress.json"


def _job(aggregate: Aggregate, options: ZarrSettings, layouts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What a store is written from: a rerun resumes an interrupted write only if it is equal."""
    return {
        "format": "padocc-like/zarr-job",
        "version": 1,
        "urls": list(aggregate.urls),
        "settings": dataclasses.asdict(options),
        "variables": {
            name: {
                "dims": list(v.dims),
                "shape": list(v.shape),
                "dtype": str(v.dtype),
                "chunks": list(layouts[name]["chunks"]),
                "attrs": _json_attrs(v.attrs),
            }
            for name, v in sorted(aggregate.variables.items())
        },
        "attrs": _json_attrs(aggregate.attrs),
    }


def read_provenance(store: Path) -> dict[str, Any]:
    """What the writer recorded beside a store (:data:`SOURCES_FILE`), in a directory or a
    zip file."""
    if store.is_file():
        import zipfile

        with zipfile.ZipFile(store) as zf:
            return json.loads(zf.read(SOURCES_FILE))
    return json.loads((store / SOURCES_FILE).read_text())


def write_store(
    aggregate: Aggregate, target: Path, options: ZarrSettings, publish: Callable[[Path], None] | None = None
) -> int:
    """Write the store at ``target`` (replacing one there) and return the number of chunks.

    The store is built in ``.<name>.inprogress`` beside ``target``, block by block under
    the memory limit (:func:`padocc_like.zarrstore.copy.plan_copy`), recording finished
    blocks; an interrupted write of the same job resumes there. The finished store gets
    consolidated metadata (v2) and is renamed into place (or handed to ``publish``)."""
    layouts = chunk_layouts(aggregate, options)
    job = _job(aggregate, options, layouts)
    work = target.parent / f".{target.name}{INPROGRESS}"
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".*{INPROGRESS}"):
        if stale != work:  # another revision's interrupted write: never resumed
            shutil.rmtree(stale, ignore_errors=True)
    job_path = work / ".padocc-job" / JOB_FILE
    job_text = json.dumps(job, sort_keys=True, default=str)  # text: NaN attributes compare equal
    if work.exists():
        try:
            same = job_path.read_text() == job_text
        except OSError:
            same = False
        if not same:
            shutil.rmtree(work)
    resuming = work.exists()
    if resuming:
        done = len(JsonDoneRecord(work / ".padocc-job" / PROGRESS_FILE).keys)
        log.info("resuming the interrupted write of %s: %d blocks already written", target, done)
    else:
        (work / ".padocc-job").mkdir(parents=True)
        atomic_write_text(job_path, job_text)
    n_chunks, plans = _fill_store(aggregate, work, options, layouts, resuming)
    shutil.rmtree(work / ".padocc-job")
    import zarr

    if int(options.format) == 2:
        zarr.consolidate_metadata(str(work), zarr_format=2)
    provenance = {"sources": aggregate.urls, "layouts": layouts, "copy_plans": plans}
    (work / SOURCES_FILE).write_text(json.dumps(provenance, indent=1))
    fsync_tree(work)
    if publish is not None:  # e.g. packed into a zip file
        publish(work)
    else:
        replace_directory(work, target)
    return n_chunks


class _Prefixed:
    """A progress record's view for one variable (block keys do not name the variable)."""

    def __init__(self, record: JsonDoneRecord, prefix: str) -> None:
        self.record, self.prefix = record, prefix

    def is_done(self, key: str) -> bool:
        return self.record.is_done(f"{self.prefix}:{key}")

    def mark_done(self, key: str) -> None:
        self.record.mark_done(f"{self.prefix}:{key}")


def _source_chunks(var: AggVariable | FragmentedVariable, cap: int) -> tuple[int, ...]:
    """The read granularity of a variable's sources: the chunk table's chunks, or for
    fragments the largest common divisor of the fragment lengths along each dimension,
    halved (on divisors) until a block fits a quarter of the memory limit."""
    if isinstance(var, AggVariable):
        return tuple(var.chunks) or ()
    itemsize = np.dtype(var.dtype).itemsize
    units = [math.gcd(*row) for row in var.sizes]
    for axis in range(len(units)):
        while units[axis] > 1 and math.prod(units) * itemsize > cap // 4:
            n = units[axis]
            units[axis] = next(d for d in range(n // 2, 0, -1) if n % d == 0)
    return tuple(units)


def _fill_store(
    aggregate: Aggregate,
    path: Path,
    options: ZarrSettings,
    layouts: dict[str, dict[str, Any]],
    resuming: bool,
) -> tuple[int, dict[str, Any]]:
    import zarr

    zarr_format = int(options.format)
    compressor = _compressor(options, zarr_format)
    limit = int(options.memory_limit_mb * (1 << 20))
    # a block is held next to zarr's copy of the run being written and its encoded chunks
    cap = limit // BLOCK_SHARE
    run_bytes = min(WRITE_RUN_BYTES, cap)
    # mode "a" even for a new store: "w" would delete the job record beside it
    root = zarr.open_group(str(path), mode="a", zarr_format=zarr_format)
    if not resuming:
        root.attrs.update(_json_attrs(aggregate.attrs))
    progress = JsonDoneRecord(path / ".padocc-job" / PROGRESS_FILE)
    files = _Files()
    ranges = _Ranges(aggregate.urls)
    n_chunks = 0
    plans: dict[str, Any] = {}
    try:
        for name in sorted(aggregate.variables):
            var = aggregate.variables[name]
            dtype = np.dtype(var.dtype)
            if dtype.kind in "OU":
                raise ProductError(f"variable {name!r}: data type {dtype} cannot be written to Zarr yet")
            chunks = tuple(layouts[name]["chunks"])
            n_chunks += math.prod(-(-n // c) for n, c in zip(var.shape, chunks, strict=True))
            shards = tuple(layouts[name]["shards"]) if "shards" in layouts[name] else None
            array = _array(root, name, var, chunks, compressor, zarr_format, resuming, shards)
            unit = shards or chunks  # what one write stores whole

            def read_source(region: tuple[slice, ...], var: Any = var) -> np.ndarray:
                if isinstance(var, FragmentedVariable):
                    return _fragment_region(var, region, files)
                return read_aggregated_region(var, region, ranges.read_from)

            def write_target(
                region: tuple[slice, ...], data: np.ndarray, array: Any = array, chunks: Any = unit
            ) -> None:
                # a run of whole chunks at a time: zarr encodes a run's chunks concurrently and
                # holds their encoded bytes, so runs stay small beside the block
                for sub in _chunk_runs(data.shape, chunks, data.itemsize, run_bytes):
                    at = tuple(
                        slice(r.start + s.start, r.start + s.stop) for r, s in zip(region, sub, strict=True)
                    )
                    array[at] = data[sub]

            plans[name] = None
            if not var.shape:
                if not progress.is_done(f"{name}:scalar"):
                    array[...] = read_source(())
                    progress.mark_done(f"{name}:scalar")
                continue
            plan = plan_copy(var.shape, dtype.itemsize, _source_chunks(var, cap), unit, cap)
            plans[name] = plan.to_dict()
            intermediate = None
            if plan.intermediate_chunks is not None:
                scratch = zarr.open_group(str(path / ".padocc-job" / "intermediate"), mode="a", zarr_format=3)
                if name in scratch:
                    inter = scratch[name]
                else:
                    inter = scratch.create_array(
                        name,
                        shape=var.shape,
                        chunks=plan.intermediate_chunks,
                        dtype=dtype,
                        fill_value=decode_fill_value(var.fill_value, dtype),
                        compressors=None,
                    )
                intermediate = (
                    lambda region, inter=inter: inter[region],
                    lambda region, data, inter=inter: inter.__setitem__(region, data),
                )
            execute_copy(
                plan, read_source, write_target, intermediate=intermediate, done=_Prefixed(progress, name)
            )
    finally:
        files.close()
        ranges.close()
    return n_chunks, plans


def _array(
    root: Any,
    name: str,
    var: AggVariable | FragmentedVariable,
    chunks: tuple[int, ...],
    compressor: Any,
    zarr_format: int,
    resuming: bool,
    shards: tuple[int, ...] | None = None,
) -> Any:
    """The store's array for ``var``: created, or (resuming) the one created before."""
    if resuming and name in root:
        return root[name]
    dtype = np.dtype(var.dtype)
    attrs = _json_attrs(var.attrs)
    extra: dict[str, Any] = {"compressors": compressor}
    if zarr_format == 2:
        attrs["_ARRAY_DIMENSIONS"] = list(var.dims)
    else:
        extra["dimension_names"] = list(var.dims)
        fill = decode_fill_value(var.fill_value, dtype)
        if fill is not None:
            # Zarr v3's fill_value is not CF's _FillValue: xarray reads it from the attributes,
            # encoded its own way (base64 of the bytes for floats)
            from xarray.backends.zarr import FillValueCoder

            attrs["_FillValue"] = FillValueCoder.encode(fill, dtype)
    if shards is not None:
        extra["shards"] = shards
    return root.create_array(
        name,
        shape=var.shape,
        chunks=chunks,
        dtype=dtype,
        fill_value=decode_fill_value(var.fill_value, dtype),
        attributes=attrs,
        **extra,
    )


WRITE_RUN_BYTES = 32 << 20
"""Most uncompressed bytes handed to zarr in one write."""
BLOCK_SHARE = 3
"""Blocks of a copy hold at most this fraction of ``memory_limit_mb``: the rest is for zarr's
copy of a run of chunks and their encoded bytes, and the reads' buffers."""


def _chunk_runs(shape: tuple[int, ...], chunks: tuple[int, ...], itemsize: int, limit: int) -> Any:
    """Regions of ``shape`` made of whole chunks, each at most ``limit`` bytes (or one chunk):
    the outermost axis ``a`` whose runs of chunks (one chunk along the axes before it, the
    whole extent after it) fit, with as many chunks along ``a`` as fit."""
    if not shape:
        yield ()
        return
    for axis in range(len(shape)):
        inner = math.prod(chunks[:axis]) * math.prod(shape[axis + 1 :]) * itemsize
        per_run = limit // max(1, inner * chunks[axis])
        if per_run >= 1 or axis == len(shape) - 1:
            per_run = max(1, per_run)
            break
    outer = [range(0, n, c) for n, c in zip(shape[:axis], chunks[:axis], strict=True)]
    step = per_run * chunks[axis]
    for starts in itertools.product(*outer):
        head = tuple(slice(s, min(s + c, n)) for s, c, n in zip(starts, chunks, shape, strict=False))
        for start in range(0, shape[axis], step):
            yield (
                *head,
                slice(start, min(start + step, shape[axis])),
                *(slice(0, n) for n in shape[axis + 1 :]),
            )


def _json_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """Attributes as JSON values (numpy scalars and arrays as numbers and lists)."""
    out = {}
    for k, v in attrs.items():
        if isinstance(v, np.ndarray):
            v = v.tolist()
        elif isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out
