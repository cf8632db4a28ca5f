"""The ``values`` check, file by file: every raw value bitwise, every decoded value NaN-aware.

Each array is read once per side, in slabs of at most :data:`BLOCK_BYTES` along its first
axis (bounded memory):

* the product's raw stored values from the dataset xarray opens over the Kerchunk
  references, as users open it: chunk by chunk with zarr's own metadata, key encoding and
  codecs (:mod:`.direct`, checked against zarr's read of each variable's first slab), or
  through zarr itself (xarray's asynchronous loading, run in this thread) where that does
  not apply;
* the source's raw stored values independently of our scanners and references: for the
  numeric variables of netCDF-4/HDF5 files, chunk by chunk from libhdf5's own chunk index
  and filter pipeline as h5py reports them, inflated by zlib-ng (:mod:`.source_chunks`,
  checked against h5py's read of each variable's first slab), or with h5py itself; with
  netCDF4-python (mask, scale and character conversion off) for everything else. The source's structure, attributes and
  coordinates always come from netCDF4-python and xarray's ``netcdf4`` engine.

The decoded values of each side are then derived from its raw values with xarray's CF
decoder and that side's own attributes (:mod:`.compare`): what ``xarray.open_dataset``
would return, without reading the data a second time. Where the raw values are bitwise
equal and both sides' decoding is masking alone with the same effect on every value
(:func:`~.compare.masks_alike`), the decoded values are equal without decoding them.

The per-file work is a plain function of picklable inputs (:func:`read_block`,
:func:`compare_block`), so a process pool can run it; each process opens the product once
(:func:`product_side`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..storage import local_path_of
from ..types import ValidationMode
from .compare import (
    RAW_OPEN,
    DecodeSpec,
    bitwise_equal,
    count_decoded_unequal,
    decode_array,
    decode_specs,
    masks_alike,
    same_decoding,
    time_coder,
)
from .direct import CachedStoreArray, ChunkCache, DirectArray, NotLocalError, cached_store_array, direct_array
from .direct import OpenFiles as DirectFiles
from .report import Finding, Severity
from .source_chunks import SourceChunks, source_chunks

log = logging.getLogger(__name__)

BLOCK_BYTES = 16 << 20
"""Largest slab of one variable (raw bytes per side) held in memory at once."""

_MASK_AND_SCALE = {"_FillValue", "missing_value", "scale_factor", "add_offset", "_Unsigned"}
"""The attributes through which ``mask_and_scale`` changes a variable's decoded values."""

CACHE_BYTES = 64 << 20
"""Whole product variables (coordinates without a concatenated dimension: every file
compares the same values) are read and decoded once per process, up to this many bytes."""

SMALL_BYTES = 1 << 20
"""Product variables up to this size (concatenated coordinates such as ``time`` and its
bounds) are read and decoded whole, once per process, and each file's slice cut from
them: one read and one decode instead of one per file."""

SKIP_DECODE_BYTES = 0
"""Slabs from this size (raw bytes) whose two sides decode alike (:func:`masks_alike`)
are not decoded: bitwise-equal raw values then decode to equal values. Smaller slabs
decode faster than the two sides' decoders can be compared."""

DTYPE_NOTE = (
    "JSON attributes carry no float32 type; values are compared with the source decoded with "
    "the same attribute values in the product's type"
)


@dataclass
class SourceInfo:
    url: str
    dims: dict[str, int]
    coords: dict[str, np.ndarray]  # decoded coordinate values per dimension
    attrs: dict[str, Any]
    variables: list[str]
    var_units: dict[str, Any] = field(default_factory=dict)
    var_ranges: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The valid-range attributes each variable declares (variables declaring none left out)."""


RANGE_ATTRS = ("valid_min", "valid_max", "valid_range")


# ---------------------------------------------------------------------------
# sources: what coverage needs, and how each variable decodes
# ---------------------------------------------------------------------------
def _source_store(nc: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The raw variables and attributes xarray's ``netcdf4`` engine sees in an open file."""
    import xarray as xr

    variables, attrs = xr.backends.NetCDF4DataStore(nc).load()
    return dict(variables), dict(attrs)


@dataclass(frozen=True)
class VarMeta:
    """A source variable as netCDF4-python sees it."""

    dims: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: str  # numpy dtype string, "O" for variable-length types


def read_source(
    url: str,
) -> tuple[SourceInfo, dict[str, DecodeSpec] | None, dict[str, VarMeta]]:
    """One netCDF4 open: the file's :class:`SourceInfo` (as ``xarray.open_dataset`` with
    ``mask_and_scale=False`` and cftime times sees it), its decoding specs (None if the
    file does not decode: the value check then decodes again and fails as it would) and
    its variables' dimensions, shapes and types."""
    import netCDF4
    import xarray as xr

    with netCDF4.Dataset(local_path_of(url)) as nc:
        meta = {
            name: VarMeta(
                tuple(v.dimensions),
                tuple(int(n) for n in v.shape),
                v.dtype.str if isinstance(v.dtype, np.dtype) else "O",
            )
            for name, v in nc.variables.items()
        }
        variables, attrs = _source_store(nc)
        try:
            specs, lazy = decode_specs(variables, attrs)
        except Exception:
            specs, lazy = None, None
        coord_attrs = {k for d in nc.dimensions if d in variables for k in variables[d].attrs}
        if lazy is None or coord_attrs & _MASK_AND_SCALE:
            # coverage compares coordinates as decoded without mask_and_scale
            _, lazy = decode_specs(variables, attrs, mask_and_scale=False)
        # what xr.Dataset(lazy) would hold, without building its indexes
        sizes: dict[str, int] = {}
        for v in lazy.values():
            for d, n in zip(v.dims, v.shape, strict=True):
                if sizes.setdefault(str(d), int(n)) != n:
                    xr.Dataset(lazy)  # raises xarray's own error about the conflicting sizes
        coords = {d: np.asarray(lazy[d].values) for d in sizes if d in lazy and lazy[d].dims == (d,)}
        # decoded times carry their units in .encoding, not .attrs
        var_units = {v: x.encoding.get("units", x.attrs.get("units")) for v, x in lazy.items()}
        var_ranges = {
            n: r for n, v in variables.items() if (r := {k: v.attrs[k] for k in RANGE_ATTRS if k in v.attrs})
        }
        info = SourceInfo(url, sizes, coords, dict(attrs), list(lazy), var_units, var_ranges)
        return info, specs, meta


@dataclass
class SourceRead:
    url: str
    info: SourceInfo | None
    specs: dict[str, DecodeSpec] | None
    meta: dict[str, VarMeta] = field(default_factory=dict)
    error: str | None = None


def read_block(urls: list[str]) -> list[SourceRead]:
    out = []
    for url in urls:
        try:
            info, specs, meta = read_source(url)
        except Exception as err:
            out.append(SourceRead(url, None, None, error=str(err)))
        else:
            out.append(SourceRead(url, info, specs, meta))
    return out


# ---------------------------------------------------------------------------
# the product, once per process
# ---------------------------------------------------------------------------
class _InlineExecutor(concurrent.futures.ThreadPoolExecutor):
    """Runs ``asyncio.to_thread`` work in the calling thread.

    A validation process reads one slab at a time and validation is parallel across
    processes: zarr handing every chunk's read and decompression to a thread pool only
    adds thread switches (about a third of the product's read time on two cores)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as err:
            future.set_exception(err)
        return future


class ProductSide:
    """The product's raw view (opened as users open it) and how each of its variables decodes."""

    def __init__(self, ds: Any, remote: bool = False) -> None:
        self.ds = ds
        self.spec_error: Exception | None = None
        try:
            self.specs, _ = decode_specs(ds.variables, ds.attrs)
        except Exception as err:
            self.specs, self.spec_error = {}, err
        self._loop: asyncio.AbstractEventLoop | None = None
        self._files = DirectFiles()
        self._chunk_cache = ChunkCache()
        self._direct: dict[str, DirectArray | CachedStoreArray | None] = {}
        self._checked: set[str] = set()
        self._raw: dict[str, np.ndarray] = {}
        self._decoded: dict[str, np.ndarray] = {}
        self._alike: dict[tuple[str, str, str], bool] = {}
        self._parts: dict[str, tuple[tuple[Any, ...], np.ndarray]] = {}
        self._cached = 0
        self.source_checks: dict[str, bool] = {}
        """What the sources' chunk-by-chunk reads proved in this process (:class:`_Source`)."""
        try:
            asyncio.get_running_loop()
            self._async = False  # inside someone's event loop: read synchronously
        except RuntimeError:
            # remote sources are read through file systems bound to zarr's own loop (a loop
            # of ours would close under their cached sessions)
            self._async = not remote

    def read(self, name: str, key: tuple[Any, ...]) -> np.ndarray:
        """Raw values of ``name[key]`` (``key``: one slice or index array per dimension)."""
        whole = all(isinstance(k, slice) and k == slice(None) for k in key)
        if whole and name in self._raw:
            return self._raw[name]
        if not whole and all(isinstance(k, slice) for k in key) and self._small(name):
            try:
                full = self.read(name, tuple(slice(None) for _ in key))
            except Exception:  # the slice alone may read: its own error if not
                full = None
            if full is not None and self._raw.get(name) is full:
                part = full[key]
                self._parts[name] = (key, part)
                return part
        data = self._read(name, key)
        if whole and self._cached + data.nbytes <= CACHE_BYTES:
            data.setflags(write=False)
            self._raw[name] = data
            self._cached += data.nbytes
        return data

    def _read(self, name: str, key: tuple[Any, ...]) -> np.ndarray:
        """``name[key]``: through :mod:`.direct` where it applies and agrees with zarr
        (checked on the first slab of each variable), otherwise through zarr."""
        if name not in self._direct:
            variable = self.ds.variables[name]
            self._direct[name] = direct_array(variable, self._files) or cached_store_array(
                variable, name, self._chunk_cache
            )
            self._checked.discard(name)
        direct = self._direct[name]
        if direct is None or not all(isinstance(k, slice) and k.step in (None, 1) for k in key):
            return self._read_zarr(name, key)
        try:
            data = direct.read(key)
        except NotLocalError:
            self._direct[name] = None
            return self._read_zarr(name, key)
        except Exception:  # zarr reads it again: its error, its message
            return self._read_zarr(name, key)
        if name not in self._checked:
            ref = self._read_zarr(name, key)
            if ref.dtype != data.dtype and ref.dtype.newbyteorder("=") == data.dtype.newbyteorder("="):
                direct.out_dtype = ref.dtype  # xarray hands zarr's values over in this byte order
                data = data.astype(ref.dtype)
            if ref.dtype != data.dtype or ref.shape != data.shape or ref.tobytes() != data.tobytes():
                log.warning("%s: direct chunk reads differ from zarr's; reading through zarr", name)
                self._direct[name] = None
                return ref
            self._checked.add(name)
        return data

    def _read_zarr(self, name: str, key: tuple[Any, ...]) -> np.ndarray:
        sub = self.ds.variables[name][key]
        if sub.chunks is not None:  # a dask-backed view: compute here, not in dask's thread pool
            return np.asarray(sub.data.compute(scheduler="synchronous"))
        if self._async and sub.dtype.kind in "biufc":
            try:
                return np.asarray(self._loop_().run_until_complete(sub.load_async()).values)
            except Exception:  # read again synchronously: same error, same message
                self._drain()
                sub = self.ds.variables[name][key]
        return np.asarray(sub.values)

    def decode(self, name: str, data: np.ndarray) -> np.ndarray:
        """``data`` (raw values of ``name``) decoded as users see them."""
        if self.spec_error is not None:
            raise self.spec_error
        cached = self._raw.get(name) is data
        if cached and name in self._decoded:
            return self._decoded[name]
        key, part = self._parts.get(name, (None, None))
        if part is data and key is not None:
            try:
                return self.decode(name, self._raw[name])[key]
            except Exception:  # the slice alone may decode: its own error if not
                pass
        out = decode_array(name, self.specs[name], data)
        if cached and self._cached + out.nbytes <= CACHE_BYTES:
            out.setflags(write=False)
            self._decoded[name] = out
            self._cached += out.nbytes
        return out

    def _small(self, name: str) -> bool:
        var = self.ds.variables[name]
        return var.dtype.itemsize * math.prod(var.shape) <= SMALL_BYTES

    def decodes_alike(self, name: str, source: DecodeSpec, dtype: np.dtype) -> bool:
        """Whether equal raw values of ``name`` decode alike here and in a source decoded
        by ``source`` (:func:`~.compare.masks_alike`, remembered per distinct pair)."""
        if self.spec_error is not None or name not in self.specs:
            return False
        mine = self.specs[name]
        key = (name, repr((mine, dtype.str)), repr(source))  # repr keeps numpy scalar types apart
        if key not in self._alike:
            self._alike[key] = same_decoding(mine, source, dtype) or masks_alike(name, mine, source, dtype)
        return self._alike[key]

    def _loop_(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._loop.set_default_executor(_InlineExecutor(max_workers=1))
        return self._loop

    def _drain(self) -> None:
        """Cancel the reads a failed one left pending on this side's loop, and let them end."""
        loop = self._loop
        if loop is None:
            return
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))

    def close(self, dataset: bool = True) -> None:
        self._files.close()
        self._drain()
        if self._loop is not None:
            self._loop.close()
            self._loop = None
        if dataset:
            self.ds.close()


_PRODUCTS: dict[str, ProductSide] = {}


def product_side(token: str, opener: Callable[..., Any]) -> ProductSide:
    """This process's :class:`ProductSide` for one validation run (``token``), opened once."""
    side = _PRODUCTS.get(token)
    if side is None:
        for old in list(_PRODUCTS):
            _PRODUCTS.pop(old).close()
        remote = bool(getattr(opener, "sources_options", None))
        side = _PRODUCTS[token] = ProductSide(opener(**RAW_OPEN), remote=remote)
    return side


def register_product(token: str, side: ProductSide) -> None:
    _PRODUCTS[token] = side


def forget_product(token: str) -> None:
    _PRODUCTS.pop(token, None)


def warm(token: str, opener: Callable[..., Any]) -> None:
    """Pool warm-up: import what reading the sources needs while the caller is busy.

    The product is opened by the first block of values this process compares: the
    sources are read first, and the sooner the pool takes its share of them the better."""
    import netCDF4  # noqa: F401

    from .parallel import reuse_heap

    reuse_heap()  # a pool process only validates: it keeps its heap to the end
    time_coder()


# ---------------------------------------------------------------------------
# values, file by file
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ValueTask:
    """What every file of one validation run shares."""

    token: str
    opener: Callable[..., Any]
    concat_dims: tuple[str, ...]
    reencoded: frozenset[str]
    mode: ValidationMode
    sample_fraction: float
    variable_major: bool = False
    """Compare one variable at a time across a block's files (a Zarr store chunked across
    files, e.g. whole time series: each chunk is then decoded once per process, from the
    chunk cache, instead of once per file)."""


@dataclass
class FileJob:
    url: str
    ranges: dict[str, tuple[int, int]]
    specs: dict[str, DecodeSpec] | None
    meta: dict[str, VarMeta]


@dataclass
class FileResult:
    findings: list[Finding] = field(default_factory=list)
    values_compared: int = 0
    bytes_compared: int = 0
    unreadable: bool = False


def sample_indices(n: int, fraction: float) -> np.ndarray:
    k = max(1, math.ceil(n * fraction))
    return np.unique(np.linspace(0, n - 1, k).round().astype(int))


PACKING = ("scale_factor", "add_offset")


def widened(spec: DecodeSpec, dtype: np.dtype) -> DecodeSpec:
    """``spec`` with its float packing attributes (``scale_factor``, ``add_offset``) held in
    ``dtype``: the same values, in the type of the attributes of a product that cannot hold
    the source's type."""

    def widen(d: dict[str, Any]) -> dict[str, Any]:
        out = dict(d)
        for key in PACKING:
            v = out.get(key)
            if isinstance(v, np.floating | np.ndarray) and np.asarray(v).dtype.kind == "f":
                out[key] = np.asarray(v).astype(dtype)[()]
        return out

    return DecodeSpec(spec.dims, widen(spec.attrs), widen(spec.encoding), spec.stack_char_dim)


def is_dtype_note(f: Finding) -> bool:
    """The once-per-variable note of :func:`compare_file` (kept at its first file only)."""
    return f.check == "values" and f.severity is Severity.ALLOWED and f.file is None


def compare_block(task: ValueTask, jobs: list[FileJob]) -> list[FileResult]:
    side = product_side(task.token, task.opener)
    if not task.variable_major:
        return [compare_file(side, task, job) for job in jobs]
    results = [FileResult() for _ in jobs]
    for name in sorted(side.ds.variables):  # the order compare_file takes them in
        for job, result in zip(jobs, results, strict=True):
            if not result.unreadable:
                compare_file(side, task, job, names=(name,), into=result)
    return results


class _Source:
    """One source file's raw stored values: read through h5py where netCDF4-python and h5py
    see the same numeric dataset (a netCDF-4/HDF5 file; deflated chunks through
    :mod:`.source_chunks`), otherwise with netCDF4-python (mask, scale and character
    conversion off, as xarray's netcdf4 engine reads before decoding)."""

    H5_KINDS = "iufc"

    def __init__(self, url: str, meta: dict[str, VarMeta], checks: dict[str, bool] | None = None) -> None:
        import h5py

        self.url, self.meta = url, meta
        self.checks = checks if checks is not None else {}
        """Per variable, whether :mod:`.source_chunks` read its first slab in this process
        exactly as h5py did (shared by the files of a validation run)."""
        self._nc: Any = None
        self._h5: Any = None
        self._datasets: dict[str, Any] = {}
        self._chunked: dict[str, SourceChunks | None] = {}
        self.path = local_path_of(url)
        try:
            self._h5 = h5py.File(self.path, "r") if h5py.is_hdf5(self.path) else None
        except OSError:
            self._h5 = None

    def nc(self) -> Any:
        if self._nc is None:
            import netCDF4

            self._nc = netCDF4.Dataset(self.path)
            self._nc.set_auto_maskandscale(False)
            self._nc.set_auto_chartostring(False)
        return self._nc

    def _dataset(self, name: str) -> Any:
        """The HDF5 dataset holding variable ``name``, if h5py reads it as netCDF4 does."""
        if name not in self._datasets:
            import h5py

            ds, m = None, self.meta.get(name)
            if self._h5 is not None and m is not None and np.dtype(m.dtype).kind in self.H5_KINDS:
                # netCDF-4 stores a variable named like a dimension it is not the coordinate
                # of under this prefix (the plain name is then the dimension's scale)
                shadow = f"_nc4_non_coord_{name}"
                obj = self._h5.get(shadow) if shadow in self._h5 else None  # `in`: no object opened
                obj = obj if isinstance(obj, h5py.Dataset) else self._h5.get(name)
                want = np.dtype(m.dtype)
                if (
                    isinstance(obj, h5py.Dataset)
                    and obj.shape == m.shape
                    and obj.dtype.kind == want.kind
                    and obj.dtype.itemsize == want.itemsize
                ):
                    ds = obj
            self._datasets[name] = ds
        return self._datasets[name]

    def read(self, name: str, key: tuple[Any, ...]) -> np.ndarray:
        ds = self._dataset(name)
        if ds is not None:
            data = self._read_chunks(name, ds, key) if key else None
            if data is not None:
                return data
            try:
                return np.asarray(ds[key] if key else ds[()])
            except Exception:  # e.g. a filter h5py lacks: netCDF4 decides
                self._datasets[name] = None
        var = self.nc().variables[name]
        return np.asarray(var[key] if var.ndim else var[...])

    def _read_chunks(self, name: str, ds: Any, key: tuple[Any, ...]) -> np.ndarray | None:
        """``ds[key]`` through :mod:`.source_chunks`, or None (then h5py reads it)."""
        if self.checks.get(name) is False:
            return None
        if name not in self._chunked:
            try:
                self._chunked[name] = source_chunks(ds, self.path)
            except Exception:
                self._chunked[name] = None
        chunked = self._chunked[name]
        if chunked is None:
            return None
        try:
            data = chunked.read(key)
        except Exception:  # h5py reads it: its values, or its error
            chunked.close()
            self._chunked[name] = None
            return None
        if name not in self.checks:
            ref = np.asarray(ds[key])
            self.checks[name] = (
                ref.dtype == data.dtype and ref.shape == data.shape and ref.tobytes() == data.tobytes()
            )
            if not self.checks[name]:
                log.warning(
                    "%s: chunk-by-chunk reads of the sources differ from h5py's; reading through h5py", name
                )
                return ref
        return data

    def close(self) -> None:
        for chunked in self._chunked.values():
            if chunked is not None:
                chunked.close()
        for f in (self._h5, self._nc):
            if f is not None:
                f.close()


def compare_file(
    product: ProductSide,
    task: ValueTask,
    job: FileJob,
    names: Sequence[str] | None = None,
    into: FileResult | None = None,
) -> FileResult:
    """Raw (bitwise) and decoded (NaN-aware) comparison of one file with its slice of the
    product: every variable, or ``names``, added to ``into`` when given."""
    result = into if into is not None else FileResult()
    src = _Source(job.url, job.meta, product.source_checks)
    try:
        specs = job.specs
        if src._h5 is None or specs is None:
            try:
                nc = src.nc()
            except OSError as err:
                result.findings.append(
                    Finding(
                        "values", Severity.ERROR, f"cannot open the source with netCDF4: {err}", file=job.url
                    )
                )
                result.unreadable = True
                return result
            if specs is None:
                specs = decode_specs(*_source_store(nc))[0]
        for name in sorted(product.ds.variables) if names is None else names:
            if name in job.meta:
                _compare_variable(product, src, name, specs[name], task, job, result)
    finally:
        src.close()
    return result


def _selected_len(n: int, sel: Any) -> int:
    if isinstance(sel, slice):
        return len(range(*sel.indices(n)))
    return len(sel)


def _rows(sel: Any, lo: int, hi: int) -> Any:
    """Rows ``lo:hi`` of a selection along one axis."""
    if isinstance(sel, slice):
        start = sel.start or 0
        return slice(start + lo, start + hi)
    return sel[lo:hi]


def _compare_variable(
    product: ProductSide,
    src: _Source,
    name: str,
    spec: DecodeSpec,
    task: ValueTask,
    job: FileJob,
    result: FileResult,
) -> None:
    url = job.url
    pvar = product.ds.variables[name]
    meta = job.meta[name]
    sel: dict[str, Any] = {}
    src_sel: list[Any] = [slice(None)] * len(meta.shape)
    for d in task.concat_dims:
        if d in pvar.dims:
            a, b = job.ranges[d]
            if task.mode is ValidationMode.SAMPLED and d == task.concat_dims[0]:
                idx = sample_indices(b - a, task.sample_fraction)
                sel[d] = idx + a
                src_sel[meta.dims.index(d)] = idx
            else:
                sel[d] = slice(a, b)
    pkey = tuple(sel.get(d, slice(None)) for d in pvar.dims)
    pshape = tuple(_selected_len(n, s) for n, s in zip(pvar.shape, pkey, strict=True))
    sshape = tuple(_selected_len(n, s) for n, s in zip(meta.shape, src_sel, strict=True))
    row_bytes = pvar.dtype.itemsize * math.prod(pshape[1:])
    if pshape == sshape and len(pshape) >= 2 and pshape[0] * row_bytes > BLOCK_BYTES:
        step = max(1, BLOCK_BYTES // max(1, row_bytes))
        spans: list[tuple[int, int] | None] = [
            (lo, min(lo + step, pshape[0])) for lo in range(0, pshape[0], step)
        ]
    else:
        spans = [None]  # the whole selection at once

    reencoded = name in task.reencoded
    raw_size = raw_bad = 0
    raw_first: tuple[int, ...] | None = None
    dec_size = dec_bad = 0
    decode_error: str | None = None
    compare_error: str | None = None
    note: tuple[np.dtype, np.dtype] | None = None
    nbytes = 0
    for span in spans:
        if span is None:
            pk, sk, lo = pkey, tuple(src_sel), 0
        else:
            lo, hi = span
            pk = (_rows(pkey[0], lo, hi), *pkey[1:])
            sk = (_rows(src_sel[0], lo, hi), *src_sel[1:])
        try:
            p_raw = product.read(name, pk)
        except Exception as err:
            result.findings.append(
                Finding(
                    "values",
                    Severity.ERROR,
                    f"cannot read the product's data: {type(err).__name__}: {err}",
                    variable=name,
                    file=url,
                )
            )
            return
        s_raw = src.read(name, sk)
        if p_raw.dtype.newbyteorder("=") != s_raw.dtype.newbyteorder("=") and not reencoded:
            result.findings.append(
                Finding(
                    "structure",
                    Severity.ERROR,
                    f"dtype differs: product {p_raw.dtype}, source {s_raw.dtype}",
                    variable=name,
                    file=url,
                )
            )
            return
        if p_raw.shape != s_raw.shape:
            shapes = (p_raw.shape, s_raw.shape) if span is None else (pshape, sshape)
            result.findings.append(
                Finding(
                    "values",
                    Severity.ERROR,
                    f"shape differs: product {shapes[0]}, source {shapes[1]}",
                    variable=name,
                    file=url,
                )
            )
            return
        nbytes += s_raw.nbytes
        if not reencoded:
            eq = bitwise_equal(p_raw, s_raw)
            bad = int(eq.size - np.count_nonzero(eq))
            raw_size += int(eq.size)
            if bad and raw_first is None:
                first = np.unravel_index(int(np.argmin(eq.reshape(-1))), eq.shape) if eq.ndim else ()
                raw_first = tuple(int(i) + (lo if k == 0 else 0) for k, i in enumerate(first))
            raw_bad += bad
            del eq
        if raw_bad or decode_error or compare_error:
            continue  # only the first problem of a variable is reported
        if (
            not reencoded
            and p_raw.nbytes >= SKIP_DECODE_BYTES
            and product.decodes_alike(name, spec, np.dtype(s_raw.dtype))
        ):
            dec_size += int(p_raw.size)  # bitwise equal and decoded alike: equal once decoded
            continue
        # decoded values, as users see them
        try:
            p_dec = product.decode(name, p_raw)
        except Exception as err:
            decode_error = f"cannot decode the product's data: {type(err).__name__}: {err}"
            continue
        s_dec = decode_array(name, spec, s_raw)
        if p_dec.dtype != s_dec.dtype and p_dec.dtype.kind == s_dec.dtype.kind == "f":
            note = note or (p_dec.dtype, s_dec.dtype)
            # the product holds the source's float32 packing attributes as float64 (JSON has
            # no float32), so it unpacks in float64: decode the source with the same values
            # in that type (exact: float32 -> float64 loses nothing). A product whose packing
            # attributes differ still decodes differently; casting the product's float64
            # values down instead would round twice where the source rounds once.
            s_dec = decode_array(name, widened(spec, p_dec.dtype), s_raw)
            if p_dec.dtype != s_dec.dtype:
                p_dec = p_dec.astype(s_dec.dtype)
        try:
            bad, size = count_decoded_unequal(p_dec, s_dec)
        except Exception as err:
            compare_error = f"decoded values cannot be compared: {err}"
            continue
        dec_bad += bad
        dec_size += size

    if not reencoded:
        result.values_compared += raw_size
        result.bytes_compared += nbytes
        if raw_bad:
            result.findings.append(
                Finding(
                    "values",
                    Severity.ERROR,
                    f"{raw_bad} of {raw_size} raw values differ (first at index {raw_first})",
                    variable=name,
                    file=url,
                    count=raw_bad,
                )
            )
            return
    if decode_error:
        result.findings.append(Finding("values", Severity.ERROR, decode_error, variable=name, file=url))
        return
    if note is not None:
        result.findings.append(
            Finding(
                "values",
                Severity.ALLOWED,
                f"decodes as {note[0]} (source {note[1]}): {DTYPE_NOTE}",
                variable=name,
            )
        )
    if compare_error:
        result.findings.append(Finding("values", Severity.ERROR, compare_error, variable=name, file=url))
        return
    result.values_compared += dec_size
    if reencoded:
        result.bytes_compared += nbytes
    if dec_bad:
        result.findings.append(
            Finding(
                "values",
                Severity.ERROR,
                f"{dec_bad} of {dec_size} decoded values differ",
                variable=name,
                file=url,
                count=dec_bad,
            )
        )
