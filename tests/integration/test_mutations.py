"""Validation under attack: every way we corrupt a product must be reported as an error.

One small CF archive (four 30-day files of a 360-day calendar, time unlimited, lat/lon with
bounds, a float ``tas`` with ``missing_value``, a float ``pr``, an int16 ``psl`` packed with
``scale_factor``/``add_offset``) is computed once per product kind: Kerchunk JSON, Kerchunk
Parquet, CFA-netCDF (CF-1.13 aggregation) and Zarr (v2). Each mutation of :data:`MUTATIONS`
corrupts a fresh copy of the product (the project's state is pointed at the copy) and
``validate`` (forced) must fail the project with an error finding; the untouched product must
pass. A mutation that makes no sense for a kind says why in its table entry (:class:`NA`):
nothing is skipped silently.

The mutation score (caught / applicable, per kind and overall) must be 100%;
``test_mutation_score`` computes it and checks that the table in ``docs/reliability.md``
(section "Validation under attack") is the one it renders. To rewrite that table after
changing the mutations: ``PADOCC_LIKE_WRITE_RELIABILITY=1 pytest tests/integration/test_mutations.py``.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import pytest

from padocc_like import api

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "reliability.md"
SECTION = "## Validation under attack (mutation testing)"
N_FILES, N_DAYS, CHUNK, NLAT, NLON = 4, 30, 10, 6, 8
FILL = np.float32(1e20)

KINDS: dict[str, dict[str, Any]] = {
    "kerchunk-json": {"kind": "kerchunk", "layout": "json"},
    "kerchunk-parquet": {"kind": "kerchunk", "layout": "parquet", "record_size": 7},
    "cfa": {"kind": "cfa"},
    "zarr": {"kind": "zarr", "zarr": {"chunks": {"time": CHUNK}}},
}
"""Each product kind and the ``product`` options that make it (Parquet with several record
files per variable; Zarr with several chunks per file)."""


# ---------------------------------------------------------------------------
# the archive and one computed project per kind
# ---------------------------------------------------------------------------
def write_archive(root: Path) -> list[Path]:
    """Four monthly files of daily data: ``tas`` (float32, ``missing_value``, a few masked
    points), ``pr`` (float32), ``psl`` (int16 packed with float32 ``scale_factor`` and
    ``add_offset``), ``time`` with bounds, ``lat``/``lon`` with bounds; chunked by 10 days."""
    root.mkdir(parents=True)
    lat = np.linspace(-75.0, 75.0, NLAT)
    lon = np.linspace(0.0, 315.0, NLON)
    rng = np.random.default_rng(7)
    shape = (N_DAYS, NLAT, NLON)
    paths = []
    for i in range(N_FILES):
        path = root / f"clim_day_2001{i + 1:02d}.nc"
        with netCDF4.Dataset(path, "w") as ds:
            ds.Conventions, ds.title, ds.institution = "CF-1.8", "Mutation archive", "padocc-like tests"
            ds.createDimension("time", None)
            ds.createDimension("lat", NLAT)
            ds.createDimension("lon", NLON)
            ds.createDimension("bnds", 2)
            days = i * N_DAYS + np.arange(N_DAYS, dtype="f8")
            t = ds.createVariable("time", "f8", ("time",))
            t.units, t.calendar, t.standard_name = "days since 2001-01-01", "360_day", "time"
            t.axis, t.bounds = "T", "time_bnds"
            t[:] = days + 0.5
            ds.createVariable("time_bnds", "f8", ("time", "bnds"))[:] = np.stack([days, days + 1], 1)
            for name, values, units, step in (
                ("lat", lat, "degrees_north", 15.0),
                ("lon", lon, "degrees_east", 22.5),
            ):
                v = ds.createVariable(name, "f8", (name,))
                v.units, v.standard_name, v.bounds = (
                    units,
                    {"lat": "latitude", "lon": "longitude"}[name],
                    f"{name}_bnds",
                )
                v[:] = values
                ds.createVariable(f"{name}_bnds", "f8", (name, "bnds"))[:] = np.stack(
                    [values - step, values + step], 1
                )
            kw = {"zlib": True, "shuffle": True, "chunksizes": (CHUNK, NLAT, NLON)}
            tas = ds.createVariable("tas", "f4", ("time", "lat", "lon"), fill_value=FILL, **kw)
            tas.standard_name, tas.long_name, tas.units = (
                "air_temperature",
                "Near-Surface Air Temperature",
                "K",
            )
            tas.cell_methods, tas.missing_value = "time: mean", FILL
            data = 273 + 30 * np.cos(np.deg2rad(lat))[None, :, None] + rng.normal(0, 2, shape)
            tas[:] = np.ma.masked_array(data.astype("f4"), mask=rng.random(shape) < 0.02)
            pr = ds.createVariable("pr", "f4", ("time", "lat", "lon"), fill_value=FILL, **kw)
            pr.standard_name, pr.units = "precipitation_flux", "kg m-2 s-1"
            pr[:] = rng.gamma(0.5, 3e-5, shape).astype("f4")
            psl = ds.createVariable("psl", "i2", ("time", "lat", "lon"), fill_value=np.int16(-32767), **kw)
            psl.standard_name, psl.units = "air_pressure_at_mean_sea_level", "Pa"
            psl.scale_factor, psl.add_offset = np.float32(2.0), np.float32(100000.0)
            psl[:] = 100000 + rng.normal(0, 1000, shape)
        paths.append(path)
    return paths


@dataclass
class Project:
    """One computed and validated project of one product kind."""

    kind: str
    group: Any
    state: Path
    pristine_state: str
    product: Path
    archive: list[Path]
    root: Path


@pytest.fixture(scope="module")
def archive_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_archive(tmp_path_factory.mktemp("mutations") / "archive")


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory, archive_files: list[Path]) -> Callable[[str], Project]:
    """``projects(kind)``: that kind's project, computed on first use and shared by the module."""
    made: dict[str, Project] = {}

    def get(kind: str) -> Project:
        if kind not in made:
            root = tmp_path_factory.mktemp(f"project-{kind}")
            body = {
                "group": "mut",
                "work_dir": str(root / "work"),
                "profile": "serial",
                "projects": [
                    {
                        "id": "p",
                        "sources": {"glob": str(archive_files[0].parent / "*.nc")},
                        "product": KINDS[kind],
                    }
                ],
            }
            path = root / "group.yaml"
            path.write_text(json.dumps(body))  # JSON is YAML
            group = api.open_group(path)
            outs = api.run(group, ["init", "scan", "compute", "validate"])
            assert all(o.status == "done" for o in outs), outs
            state = root / "work" / "projects" / "p" / "state.json"
            product = Path(api.status(group)[0]["product"]["path"])
            made[kind] = Project(kind, group, state, state.read_text(), product, archive_files, root)
        return made[kind]

    return get


@dataclass
class Ctx:
    """What a mutation works on: a fresh copy of the product (``path``), the sources, and a
    scratch directory."""

    kind: str
    path: Path
    archive: list[Path]
    scratch: Path


def fresh_copy(project: Project, name: str) -> Ctx:
    """A copy of the product under a new path, with the project's state pointing at it (a new
    path: no reader may serve the pristine product from a cache)."""
    target = project.product.parent / f"mut-{name}" / project.product.name
    if target.parent.exists():
        shutil.rmtree(target.parent)
    target.parent.mkdir(parents=True)
    if project.product.is_dir():
        shutil.copytree(project.product, target)
    else:
        shutil.copy2(project.product, target)
    state = json.loads(project.pristine_state)
    for p in state["products"]:
        if p["path"] == str(project.product):
            p["path"] = str(target)
    project.state.write_text(json.dumps(state))
    scratch = project.root / "scratch" / name
    scratch.mkdir(parents=True, exist_ok=True)
    return Ctx(project.kind, target, project.archive, scratch)


def restore(project: Project) -> None:
    project.state.write_text(project.pristine_state)


# ---------------------------------------------------------------------------
# editing Kerchunk references (JSON and Parquet alike, as the JSON "refs" mapping)
# ---------------------------------------------------------------------------
def _grid(zarray: dict[str, Any]) -> tuple[int, ...]:
    return tuple(math.ceil(s / c) if c else 0 for s, c in zip(zarray["shape"], zarray["chunks"], strict=True))


def _read_parquet(path: Path) -> dict[str, Any]:
    import pandas as pd

    body = json.loads((path / ".zmetadata").read_text())
    refs: dict[str, Any] = {k: json.dumps(v) for k, v in body["metadata"].items()}
    for key in [k for k in body["metadata"] if k.endswith("/.zarray")]:
        name = key[: -len("/.zarray")]
        files = sorted((path / name).glob("refs.*.parq"), key=lambda p: int(p.name.split(".")[1]))
        if not files:
            continue
        frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
        grid = _grid(body["metadata"][key])
        for i in range(math.prod(grid)):
            row = frame.iloc[i]
            chunk = f"{name}/{'.'.join(map(str, np.unravel_index(i, grid))) if grid else '0'}"
            if isinstance(row["path"], str):
                refs[chunk] = [row["path"], int(row["offset"]), int(row["size"])]
            elif row["raw"] is not None and not (isinstance(row["raw"], float) and math.isnan(row["raw"])):
                refs[chunk] = "base64:" + base64.b64encode(bytes(row["raw"])).decode()
    return refs


def _write_parquet(path: Path, refs: dict[str, Any]) -> None:
    """Rewrite the Parquet layout from ``refs`` with kerchunk's own writer (the same record
    size: fsspec finds a chunk's row from it)."""
    from kerchunk.df import refs_to_dataframe

    record_size = int(json.loads((path / ".zmetadata").read_text())["record_size"])
    shutil.rmtree(path)
    refs_to_dataframe({"version": 1, "refs": refs}, str(path), record_size=record_size)


@contextmanager
def kerchunk_refs(ctx: Ctx) -> Iterator[dict[str, Any]]:
    """The product's references as Kerchunk JSON's ``refs`` mapping, written back on exit."""
    if ctx.kind == "kerchunk-json":
        doc = json.loads(ctx.path.read_text())
        yield doc["refs"]
        ctx.path.write_text(json.dumps(doc))
    else:
        refs = _read_parquet(ctx.path)
        yield refs
        _write_parquet(ctx.path, refs)


def chunk_keys(refs: dict[str, Any], var: str) -> list[str]:
    """A variable's chunk keys in time order (then the other axes)."""
    keys = [k for k in refs if k.startswith(f"{var}/") and not k.split("/")[1].startswith(".")]
    return sorted(keys, key=lambda k: tuple(int(i) for i in k.split("/")[1].split(".")))


def edit_doc(refs: dict[str, Any], key: str, fn: Callable[[dict[str, Any]], Any]) -> None:
    doc = json.loads(refs[key])
    fn(doc)
    refs[key] = json.dumps(doc)


def edit_inline(refs: dict[str, Any], var: str, fn: Callable[[np.ndarray], np.ndarray | None]) -> None:
    """Edit the values of a variable held inline in one uncompressed chunk (coordinates)."""
    z = json.loads(refs[f"{var}/.zarray"])
    assert z["compressor"] is None and not z["filters"], z
    (key,) = chunk_keys(refs, var)
    values = np.frombuffer(base64.b64decode(refs[key][len("base64:") :]), dtype=z["dtype"]).copy()
    values = values.reshape(z["chunks"])
    out = fn(values)
    values = values if out is None else out
    refs[key] = "base64:" + base64.b64encode(np.ascontiguousarray(values).tobytes()).decode()


# ---------------------------------------------------------------------------
# editing a CFA-netCDF file (rewritten whole from an editable model)
# ---------------------------------------------------------------------------
@dataclass
class NcVar:
    dtype: Any
    dims: tuple[str, ...]
    attrs: dict[str, Any]
    fill: Any
    data: Any


@dataclass
class NcModel:
    dims: dict[str, int]
    attrs: dict[str, Any]
    vars: dict[str, NcVar]


@contextmanager
def cfa_file(ctx: Ctx) -> Iterator[NcModel]:
    """The aggregation file as an editable model, rewritten on exit."""
    with netCDF4.Dataset(ctx.path) as nc:
        nc.set_auto_maskandscale(False)
        nc.set_auto_chartostring(False)
        model = NcModel(
            {d: len(v) for d, v in nc.dimensions.items()},
            {k: nc.getncattr(k) for k in nc.ncattrs()},
            {
                n: NcVar(
                    v.dtype,
                    tuple(v.dimensions),
                    {k: v.getncattr(k) for k in v.ncattrs() if k != "_FillValue"},
                    v.__dict__.get("_FillValue"),
                    v[...],
                )
                for n, v in nc.variables.items()
            },
        )
    yield model
    ctx.path.unlink()
    with netCDF4.Dataset(ctx.path, "w") as nc:
        nc.set_auto_maskandscale(False)
        nc.setncatts(model.attrs)
        for d, n in model.dims.items():
            nc.createDimension(d, n)
        for name, v in model.vars.items():
            out = nc.createVariable(name, v.dtype, v.dims, fill_value=v.fill)
            out.set_auto_chartostring(False)
            for k, a in v.attrs.items():
                out.setncattr(k, a)
            out[...] = np.asarray(v.data).astype(v.dtype) if v.dtype is not str else v.data


def cfa_uris(m: NcModel, var: str = "tas") -> np.ndarray:
    """The (shared) fragment URIs of an aggregation variable, an editable array."""
    terms = dict(re.findall(r"(\S+):\s+(\S+)", m.vars[var].attrs["aggregated_data"]))
    return m.vars[terms["uris"]].data


# ---------------------------------------------------------------------------
# editing a Zarr v2 store (consolidated metadata kept in step with the array files)
# ---------------------------------------------------------------------------
@contextmanager
def zarr_meta(ctx: Ctx) -> Iterator[dict[str, Any]]:
    """The store's metadata documents by key (``tas/.zattrs``...), written back on exit to
    ``.zmetadata`` and to the documents themselves."""
    body = json.loads((ctx.path / ".zmetadata").read_text())
    before = set(body["metadata"])
    yield body["metadata"]
    (ctx.path / ".zmetadata").write_text(json.dumps(body))
    for key, doc in body["metadata"].items():
        (ctx.path / key).parent.mkdir(parents=True, exist_ok=True)
        (ctx.path / key).write_text(json.dumps(doc))
    for key in before - set(body["metadata"]):
        (ctx.path / key).unlink(missing_ok=True)


def zchunk(ctx: Ctx, var: str, i: int) -> Path:
    """The object of a variable's ``i``-th chunk along time (whole along the other axes)."""
    ndim = len(json.loads((ctx.path / var / ".zarray").read_text())["shape"])
    return ctx.path / var / ".".join([str(i)] + ["0"] * (ndim - 1))


def zarr_array(ctx: Ctx, var: str) -> Any:
    import zarr

    return zarr.open_array(str(ctx.path / var), mode="r+", zarr_format=2)


# ---------------------------------------------------------------------------
# the mutations
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class NA:
    """Not applicable to a kind, and why."""

    reason: str


Apply = Callable[[Ctx], None]


@dataclass(frozen=True)
class Mutation:
    name: str
    description: str
    kinds: dict[str, Apply | NA]
    names: str | None = None
    """The variable an error must name (in its ``variable`` or its message), if any."""


def _ker(fn: Callable[[dict[str, Any], Ctx], None]) -> Apply:
    """A mutation of the Kerchunk references (JSON or Parquet)."""

    def apply(ctx: Ctx) -> None:
        with kerchunk_refs(ctx) as refs:
            fn(refs, ctx)

    return apply


def _cfa(fn: Callable[[NcModel, Ctx], None]) -> Apply:
    def apply(ctx: Ctx) -> None:
        with cfa_file(ctx) as m:
            fn(m, ctx)

    return apply


def _zmeta(fn: Callable[[dict[str, Any], Ctx], None]) -> Apply:
    def apply(ctx: Ctx) -> None:
        with zarr_meta(ctx) as meta:
            fn(meta, ctx)

    return apply


def _refs_and_zarr(doc: str, fn: Callable[[dict[str, Any]], None]) -> dict[str, Apply]:
    """The same edit of one metadata document (``tas/.zattrs``...) in the Kerchunk and Zarr kinds."""
    ker = _ker(lambda refs, _: edit_doc(refs, doc, fn))
    return {"kerchunk-json": ker, "kerchunk-parquet": ker, "zarr": _zmeta(lambda meta, _: fn(meta[doc]))}


def _attrs(var: str | None, fn: Callable[[dict[str, Any]], None]) -> dict[str, Apply]:
    """The same attribute edit in every kind (``var`` None: the global attributes)."""
    doc = ".zattrs" if var is None else f"{var}/.zattrs"
    out = _refs_and_zarr(doc, fn)
    out["cfa"] = _cfa(lambda m, _: fn(m.attrs if var is None else m.vars[var].attrs))
    return out


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda attrs: attrs.__setitem__(key, value)


def _del(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda attrs: attrs.__delitem__(key)


NO_BYTE_RANGES = NA("no byte ranges: fragments are whole files named by URI (see the URI mutations)")
ZARR_NO_REFS = NA(
    "a Zarr store holds copied chunks, no byte ranges into the sources (see the chunk mutations)"
)
CFA_NO_CHUNKS = NA("the aggregation holds no chunks or codecs: fragments are read with their files' own")
NOT_CFA = NA("no CF aggregation variables in this kind")


# -- references ---------------------------------------------------------------
def _shift(refs: dict[str, Any], _: Ctx) -> None:
    refs[chunk_keys(refs, "tas")[5]][1] += 4


def _swap(refs: dict[str, Any], _: Ctx) -> None:
    a, b = chunk_keys(refs, "pr")[:2]
    refs[a], refs[b] = refs[b], refs[a]


def _wrong_file(refs: dict[str, Any], _: Ctx) -> None:
    keys = chunk_keys(refs, "tas")
    refs[keys[3]] = [refs[keys[-3]][0], *refs[keys[3]][1:]]  # another month's file, same bytes


def _wrong_variable(refs: dict[str, Any], _: Ctx) -> None:
    refs[chunk_keys(refs, "tas")[4]] = list(refs[chunk_keys(refs, "pr")[4]])  # same file


def _file_urls(refs: dict[str, Any], old: str, new: str) -> None:
    """Every chunk reference to file ``old`` names ``new`` instead."""
    for name in ("tas", "pr", "psl"):
        for k in chunk_keys(refs, name):
            if isinstance(refs[k], list) and refs[k][0] == old:
                refs[k] = [new, *refs[k][1:]]


def _duplicate(refs: dict[str, Any], ctx: Ctx) -> None:
    """The second file's chunks (3 to 5 along time) read the first file's (0 to 2)."""
    for name in ("tas", "pr", "psl"):
        keys = chunk_keys(refs, name)
        assert [refs[k][0] for k in keys[3:6]] == [str(ctx.archive[1])] * 3
        for k, src in zip(keys[3:6], keys[0:3], strict=True):
            refs[k] = list(refs[src])


def _foreign_copy(ctx: Ctx) -> str:
    """A byte-identical copy of the second source, outside the manifest."""
    copy = ctx.scratch / ctx.archive[1].name
    shutil.copy2(ctx.archive[1], copy)
    return str(copy)


def _foreign(refs: dict[str, Any], ctx: Ctx) -> None:
    _file_urls(refs, str(ctx.archive[1]), _foreign_copy(ctx))


def _drop_fragment(refs: dict[str, Any], ctx: Ctx) -> None:
    for k in chunk_keys(refs, "tas")[3:6]:
        del refs[k]


def _delete_chunk(refs: dict[str, Any], _: Ctx) -> None:
    del refs[chunk_keys(refs, "pr")[7]]


def _truncate(refs: dict[str, Any], ctx: Ctx) -> None:
    """The product of the first three files only, consistent in itself."""
    last = str(ctx.archive[-1])
    for name in ("tas", "pr", "psl"):
        for k in chunk_keys(refs, name):
            if refs[k][0] == last:
                del refs[k]
        edit_doc(refs, f"{name}/.zarray", lambda z: z["shape"].__setitem__(0, z["shape"][0] - N_DAYS))
    for name in ("time", "time_bnds"):
        edit_doc(
            refs,
            f"{name}/.zarray",
            lambda z: z.update(
                shape=[z["shape"][0] - N_DAYS, *z["shape"][1:]],
                chunks=[z["shape"][0] - N_DAYS, *z["chunks"][1:]],
            ),
        )

    def cut(v: np.ndarray) -> np.ndarray:
        return v[:-N_DAYS]

    for name in ("time", "time_bnds"):
        key = chunk_keys(refs, name)[0]
        z = json.loads(refs[f"{name}/.zarray"])
        raw = np.frombuffer(base64.b64decode(refs[key][7:]), dtype=z["dtype"]).reshape(-1, *z["chunks"][1:])
        refs[key] = "base64:" + base64.b64encode(cut(raw).tobytes()).decode()


def _truncate_chunk(refs: dict[str, Any], _: Ctx) -> None:
    refs[chunk_keys(refs, "psl")[6]][2] -= 16


def _z_truncate_chunk(ctx: Ctx) -> None:
    path = zchunk(ctx, "psl", 6)
    path.write_bytes(path.read_bytes()[:-16])


def _cfa_rename_dim(m: NcModel, _: Ctx) -> None:
    m.dims["nv"] = 2
    m.vars["lat_bnds"].dims = ("lat", "nv")


def _z_remove_provenance(ctx: Ctx) -> None:
    (ctx.path / ".padocc-sources.json").unlink()


def _reorder_time(values: np.ndarray) -> None:
    values[[0, 1]] = values[[1, 0]]


def _recompress(refs: dict[str, Any], _: Ctx) -> None:
    """One chunk replaced by other valid compressed data: its values, shifted, encoded with
    the variable's own filters, inline."""
    import numcodecs

    z = json.loads(refs["tas/.zarray"])
    codecs = [numcodecs.get_codec(c) for c in z["filters"]]
    key = chunk_keys(refs, "tas")[2]
    path, offset, size = refs[key]
    with open(path, "rb") as f:
        f.seek(offset)
        raw: Any = f.read(size)
    for c in reversed(codecs):
        raw = c.decode(raw)
    values = np.frombuffer(raw, dtype=z["dtype"]).copy()
    values[values < 1e19] += 0.5
    data: Any = values.tobytes()
    for c in codecs:
        data = c.encode(data)
    refs[key] = "base64:" + base64.b64encode(bytes(data)).decode()


def _drop_var(refs: dict[str, Any], _: Ctx) -> None:
    for k in [k for k in refs if k.startswith("pr/")]:
        del refs[k]


def _extra_var(refs: dict[str, Any], _: Ctx) -> None:
    for k in [k for k in refs if k.startswith("pr/")]:
        refs["pr2" + k[2:]] = refs[k]


# -- CFA ---------------------------------------------------------------------
def _cfa_swap(m: NcModel, _: Ctx) -> None:
    uris = cfa_uris(m)
    uris[[1, 2]] = uris[[2, 1]]


def _cfa_uri(index: int, value: Callable[[NcModel, Ctx], str]) -> Callable[[NcModel, Ctx], None]:
    def apply(m: NcModel, ctx: Ctx) -> None:
        uris = cfa_uris(m)
        uris[index] = value(m, ctx)

    return apply


def _cfa_truncate(m: NcModel, ctx: Ctx) -> None:
    m.dims["time"] -= N_DAYS
    m.dims["f_time"] -= 1
    m.dims["map_i4"] -= 1
    for v in m.vars.values():
        if v.dims and v.dims[0] in ("time", "f_time"):
            v.data = v.data[:-1] if v.dims[0] == "f_time" else v.data[:-N_DAYS]
    (name,) = [n for n in m.vars if n.startswith("fragment_map")]
    m.vars[name].data = m.vars[name].data[:, :-1]


def _cfa_map(m: NcModel, _: Ctx) -> None:
    (name,) = [n for n in m.vars if n.startswith("fragment_map")]
    m.vars[name].data[0, :2] = [N_DAYS - 5, N_DAYS + 5]


def _cfa_values(var: str, fn: Callable[[np.ndarray], None]) -> Callable[[NcModel, Ctx], None]:
    def apply(m: NcModel, _: Ctx) -> None:
        m.vars[var].data = np.array(m.vars[var].data)
        fn(m.vars[var].data)

    return apply


def _cfa_fill(m: NcModel, _: Ctx) -> None:
    m.vars["pr"].fill = np.float32(0)


def _cfa_no_fill(m: NcModel, _: Ctx) -> None:
    m.vars["pr"].fill = None


def _cfa_dtype(m: NcModel, _: Ctx) -> None:
    v = m.vars["tas"]
    v.dtype, v.fill = np.dtype("f8"), np.float64(v.fill)
    v.attrs["missing_value"] = np.float64(v.attrs["missing_value"])


def _cfa_drop(m: NcModel, _: Ctx) -> None:
    del m.vars["pr"], m.vars["fragment_identifiers_pr"]


def _cfa_extra(m: NcModel, _: Ctx) -> None:
    src = m.vars["pr"]
    m.vars["pr2"] = NcVar(src.dtype, src.dims, dict(src.attrs), src.fill, src.data)


def _cfa_identifier(m: NcModel, _: Ctx) -> None:
    m.vars["fragment_identifiers_tas"].data = np.array("pr", dtype=object)


def _cfa_agg_data(m: NcModel, _: Ctx) -> None:
    a = m.vars["tas"].attrs
    a["aggregated_data"] = a["aggregated_data"].replace("fragment_identifiers_tas", "fragment_identifiers_pr")


def _cfa_agg_dims(m: NcModel, _: Ctx) -> None:
    m.vars["tas"].attrs["aggregated_dimensions"] = "time lon lat"


# -- Zarr --------------------------------------------------------------------
def _z_copy(pairs: Callable[[Ctx], list[tuple[Path, Path]]]) -> Apply:
    """Overwrite chunk objects with others' bytes (valid compressed data of the same codec)."""

    def apply(ctx: Ctx) -> None:
        data = [(dst, src.read_bytes()) for dst, src in pairs(ctx)]
        for dst, b in data:
            dst.write_bytes(b)

    return apply


def _z_swap(ctx: Ctx) -> list[tuple[Path, Path]]:
    a, b = zchunk(ctx, "pr", 0), zchunk(ctx, "pr", 1)
    return [(a, b), (b, a)]


def _z_delete(var: str, chunks: range) -> Apply:
    def apply(ctx: Ctx) -> None:
        for i in chunks:
            zchunk(ctx, var, i).unlink()

    return apply


def _z_values(var: str, fn: Callable[[np.ndarray], None]) -> Apply:
    """Rewrite a variable's values through zarr (valid chunks, the array's own codec)."""

    def apply(ctx: Ctx) -> None:
        arr = zarr_array(ctx, var)
        values = arr[...]
        fn(values)
        arr[...] = values

    return apply


def _z_recompress(ctx: Ctx) -> None:
    arr = zarr_array(ctx, "tas")
    block = arr[2 * CHUNK : 3 * CHUNK]
    block[block < 1e19] += 0.5
    arr[2 * CHUNK : 3 * CHUNK] = block


def _z_truncate(ctx: Ctx) -> None:
    n = N_FILES * N_DAYS // CHUNK
    keep = (N_FILES - 1) * N_DAYS // CHUNK
    with zarr_meta(ctx) as meta:
        for name in ("time", "time_bnds", "tas", "pr", "psl"):
            z = meta[f"{name}/.zarray"]
            z["shape"][0] -= N_DAYS
            assert z["chunks"][0] == CHUNK, z
            for i in range(keep, n):
                zchunk(ctx, name, i).unlink()
    prov = ctx.path / ".padocc-sources.json"
    doc = json.loads(prov.read_text())
    doc["sources"] = doc["sources"][:-1]
    prov.write_text(json.dumps(doc))


def _z_foreign(ctx: Ctx) -> None:
    prov = ctx.path / ".padocc-sources.json"
    doc = json.loads(prov.read_text())
    doc["sources"][1] = _foreign_copy(ctx)
    prov.write_text(json.dumps(doc))


def _z_drop(meta: dict[str, Any], ctx: Ctx) -> None:
    for k in [k for k in meta if k.startswith("pr/")]:
        del meta[k]
    shutil.rmtree(ctx.path / "pr")


def _z_extra(meta: dict[str, Any], ctx: Ctx) -> None:
    for k in [k for k in meta if k.startswith("pr/")]:
        meta["pr2" + k[2:]] = meta[k]
    shutil.copytree(ctx.path / "pr", ctx.path / "pr2")


def _both_refs(fn: Callable[[dict[str, Any], Ctx], None]) -> dict[str, Apply]:
    ker = _ker(fn)
    return {"kerchunk-json": ker, "kerchunk-parquet": ker}


def _values(var: str, fn: Callable[[np.ndarray], None]) -> dict[str, Apply]:
    """The same change of a stored (coordinate) variable's values in every kind."""
    return {
        **_both_refs(lambda refs, _: edit_inline(refs, var, fn)),
        "cfa": _cfa(_cfa_values(var, fn)),
        "zarr": _z_values(var, fn),
    }


def _bump(index: Any, delta: float) -> Callable[[np.ndarray], None]:
    def fn(v: np.ndarray) -> None:
        v[index] += delta

    return fn


ATTRIBUTE_EDITS: list[tuple[str, str, str | None, str, Any]] = [
    # name, what is corrupted, variable (None: global), attribute, new value (None: removed)
    ("change_scale_factor", "`scale_factor` of the packed `psl` changed", "psl", "scale_factor", 3.0),
    ("change_add_offset", "`add_offset` of the packed `psl` changed", "psl", "add_offset", 90000.0),
    ("add_scale_factor", "a `scale_factor` added to the unpacked `tas`", "tas", "scale_factor", 2.0),
    ("change_missing_value", "`missing_value` of `tas` changed", "tas", "missing_value", 0.0),
    ("add_valid_max", "a `valid_max` added to `tas` (masks real values)", "tas", "valid_max", 280.0),
    ("add_valid_min", "a `valid_min` added to the packed `psl`", "psl", "valid_min", -10),
    ("change_calendar", "the time axis' `calendar` changed", "time", "calendar", "standard"),
    ("change_units", "the time axis' `units` changed", "time", "units", "days since 2001-02-01"),
    ("change_global_attr", "a global attribute changed", None, "title", "Something else"),
    ("add_global_attr", "a global attribute added", None, "comment", "not in the sources"),
    ("remove_var_attr", "`units` of `tas` removed", "tas", "units", None),
    ("change_var_attr", "`long_name` of `tas` changed", "tas", "long_name", "Skin temperature"),
    ("add_var_attr", "an attribute added to `tas`", "tas", "comment", "not in the sources"),
]
ATTRIBUTE_MUTATIONS = [
    Mutation(name, what, _attrs(var, _del(key) if value is None else _set(key, value)), var)
    for name, what, var, key, value in ATTRIBUTE_EDITS
]


MUTATIONS: list[Mutation] = [
    Mutation(
        "shift_byte_range",
        "a chunk reference's offset moved by 4 bytes",
        {**_both_refs(_shift), "cfa": NO_BYTE_RANGES, "zarr": ZARR_NO_REFS},
        "tas",
    ),
    Mutation(
        "swap_chunks",
        "two chunks of `pr` swapped (references, fragment URIs, or chunk objects)",
        {**_both_refs(_swap), "cfa": _cfa(_cfa_swap), "zarr": _z_copy(_z_swap)},
        "pr",
    ),
    Mutation(
        "wrong_file",
        "a chunk (fragment) read from another source file, at the same position",
        {
            **_both_refs(_wrong_file),
            "cfa": _cfa(_cfa_uri(1, lambda m, _: str(cfa_uris(m)[3].item()))),
            "zarr": _z_copy(lambda ctx: [(zchunk(ctx, "tas", 3), zchunk(ctx, "tas", 9))]),
        },
    ),
    Mutation(
        "wrong_variable",
        "a chunk (fragment) read from the right file but another variable (`pr` for `tas`)",
        {
            **_both_refs(_wrong_variable),
            "cfa": _cfa(_cfa_identifier),
            "zarr": _z_copy(lambda ctx: [(zchunk(ctx, "tas", 4), zchunk(ctx, "pr", 4))]),
        },
        "tas",
    ),
    Mutation(
        "duplicate_fragment",
        "the first file's data also in place of the second's",
        {
            **_both_refs(_duplicate),
            "cfa": _cfa(_cfa_uri(1, lambda m, _: str(cfa_uris(m)[0].item()))),
            "zarr": _z_copy(
                lambda ctx: [
                    (zchunk(ctx, v, 3 + i), zchunk(ctx, v, i)) for v in ("tas", "pr", "psl") for i in range(3)
                ]
            ),
        },
    ),
    Mutation(
        "drop_fragment",
        "one file's chunks of `tas` left out (readers fill them with the fill value)",
        {
            **_both_refs(_drop_fragment),
            "cfa": _cfa(_cfa_uri(1, lambda m, _: "")),
            "zarr": _z_delete("tas", range(3, 6)),
        },
    ),
    Mutation(
        "delete_chunk",
        "one chunk reference or object deleted",
        {
            **_both_refs(_delete_chunk),
            "cfa": NA("fragments are whole files: see drop_fragment"),
            "zarr": _z_delete("pr", range(7, 8)),
        },
        "pr",
    ),
    Mutation(
        "foreign_file",
        "the product names a byte-identical copy of a source outside the manifest",
        {
            **_both_refs(_foreign),
            "cfa": _cfa(_cfa_uri(1, lambda m, ctx: _foreign_copy(ctx))),
            "zarr": _z_foreign,
        },
    ),
    Mutation(
        "truncate_sources",
        "the product of the first three files only (consistent in itself)",
        {**_both_refs(_truncate), "cfa": _cfa(_cfa_truncate), "zarr": _z_truncate},
    ),
    Mutation(
        "truncate_chunk",
        "a chunk cut 16 bytes short (reference length, or the object itself)",
        {**_both_refs(_truncate_chunk), "cfa": NO_BYTE_RANGES, "zarr": _z_truncate_chunk},
        "psl",
    ),
    Mutation(
        "remove_provenance",
        "the Zarr store's list of sources (`.padocc-sources.json`) deleted",
        {
            "kerchunk-json": NA("references name their files themselves"),
            "kerchunk-parquet": NA("references name their files themselves"),
            "cfa": NA("fragment URIs name their files themselves"),
            "zarr": _z_remove_provenance,
        },
    ),
    Mutation(
        "change_shape",
        "the shape along time changed (`.zarray` shape, or the fragment map's sizes)",
        {
            **_refs_and_zarr("tas/.zarray", lambda z: z["shape"].__setitem__(0, z["shape"][0] - CHUNK)),
            "cfa": _cfa(_cfa_map),
        },
        "tas",
    ),
    Mutation(
        "change_chunks",
        "the chunk shape in `.zarray` changed",
        {
            **_refs_and_zarr("tas/.zarray", lambda z: z["chunks"].__setitem__(1, NLAT // 2)),
            "cfa": CFA_NO_CHUNKS,
        },
        "tas",
    ),
    Mutation(
        "change_filters",
        "the shuffle filter dropped from `.zarray` (Kerchunk), or a shuffle filter added (Zarr)",
        {
            **_refs_and_zarr(
                "tas/.zarray",
                lambda z: (
                    z.update(filters=[f for f in z["filters"] if f["id"] != "shuffle"])
                    if z["filters"]
                    else z.update(filters=[{"id": "shuffle", "elementsize": 4}])
                ),
            ),
            "cfa": CFA_NO_CHUNKS,
        },
        "tas",
    ),
    Mutation(
        "change_compressor",
        "the compressor in `.zarray` changed (zlib added to Kerchunk's filters; Zstd -> zlib in Zarr)",
        {
            **_refs_and_zarr("tas/.zarray", _set("compressor", {"id": "zlib", "level": 1})),
            "cfa": CFA_NO_CHUNKS,
        },
        "tas",
    ),
    Mutation(
        "overwrite_chunk",
        "a chunk replaced by other valid compressed data (its values + 0.5, same codec)",
        {**_both_refs(_recompress), "cfa": CFA_NO_CHUNKS, "zarr": _z_recompress},
        "tas",
    ),
    Mutation(
        "change_fill_value",
        "`_FillValue` (`fill_value`) of `pr` changed to 0",
        {
            **_refs_and_zarr("pr/.zarray", _set("fill_value", 0.0)),
            "cfa": _cfa(_cfa_fill),
        },
        "pr",
    ),
    Mutation(
        "remove_fill_value",
        "`_FillValue` of `pr` removed",
        {**_refs_and_zarr("pr/.zarray", _set("fill_value", None)), "cfa": _cfa(_cfa_no_fill)},
        "pr",
    ),
    Mutation(
        "change_dtype",
        "the type of `tas` changed (`<i4` in `.zarray`; float64 aggregation variable)",
        {**_refs_and_zarr("tas/.zarray", _set("dtype", "<i4")), "cfa": _cfa(_cfa_dtype)},
        "tas",
    ),
    *ATTRIBUTE_MUTATIONS[:10],
    Mutation(
        "change_conventions",
        "`Conventions` changed (`CF-1.13` claimed; in a CFA product the sources' `CF-1.8`)",
        {
            **_refs_and_zarr(".zattrs", _set("Conventions", "CF-1.13")),
            "cfa": _cfa(lambda m, _: m.attrs.__setitem__("Conventions", "CF-1.8")),
        },
    ),
    Mutation(
        "rename_dimension",
        "a dimension of `lat_bnds` renamed (`bnds` -> `nv`)",
        {
            **_refs_and_zarr("lat_bnds/.zattrs", _set("_ARRAY_DIMENSIONS", ["lat", "nv"])),
            "cfa": _cfa(_cfa_rename_dim),
        },
        "lat_bnds",
    ),
    *ATTRIBUTE_MUTATIONS[10:],
    Mutation(
        "reorder_time", "two time steps swapped in the time axis", _values("time", _reorder_time), "time"
    ),
    Mutation("change_coordinate", "a latitude value changed", _values("lat", _bump(2, 1.0)), "lat"),
    Mutation(
        "change_bounds", "a longitude bound changed", _values("lon_bnds", _bump((3, 1), 0.5)), "lon_bnds"
    ),
    Mutation(
        "drop_variable",
        "variable `pr` removed",
        {**_both_refs(_drop_var), "cfa": _cfa(_cfa_drop), "zarr": _zmeta(_z_drop)},
        "pr",
    ),
    Mutation(
        "extra_variable",
        "a variable `pr2` (a copy of `pr`) added",
        {**_both_refs(_extra_var), "cfa": _cfa(_cfa_extra), "zarr": _zmeta(_z_extra)},
        "pr2",
    ),
    Mutation(
        "cfa_aggregated_data",
        "`aggregated_data` of `tas` names `pr`'s identifiers",
        {"kerchunk-json": NOT_CFA, "kerchunk-parquet": NOT_CFA, "cfa": _cfa(_cfa_agg_data), "zarr": NOT_CFA},
        "tas",
    ),
    Mutation(
        "cfa_aggregated_dimensions",
        "`aggregated_dimensions` of `tas` reordered (`time lon lat`)",
        {"kerchunk-json": NOT_CFA, "kerchunk-parquet": NOT_CFA, "cfa": _cfa(_cfa_agg_dims), "zarr": NOT_CFA},
        "tas",
    ),
]
BY_NAME = {m.name: m for m in MUTATIONS}
CASES = [(m.name, kind) for m in MUTATIONS for kind in KINDS]
RESULTS: dict[tuple[str, str], str] = {}
"""(mutation, kind) -> ``caught: <checks>``, ``MISSED`` or ``n/a``."""


def run_mutation(project: Project, mutation: Mutation) -> tuple[str, list[dict[str, Any]]]:
    """Corrupt a copy of the product, validate with force; the outcome for the table and the
    error findings."""
    apply = mutation.kinds[project.kind]
    if isinstance(apply, NA):
        return "n/a", []
    ctx = fresh_copy(project, mutation.name)
    try:
        apply(ctx)
        out = api.run(project.group, ["validate"], force=True)[0]
        rep = api.report(project.group, "p")
        row = api.status(project.group)[0]
    finally:
        restore(project)
        shutil.rmtree(ctx.path.parent, ignore_errors=True)
    errors = [f for f in rep["findings"] if f["severity"] == "error"]
    caught = (
        out.status == "failed"
        and out.error_kind == "validation-failed"
        and rep["verdict"] == "fail"
        and bool(errors)
        and row["product"]["status"] == "invalid"
    )
    if not caught:
        return "MISSED", errors
    return "caught: " + ", ".join(sorted({f["check"] for f in errors})), errors


def _names(finding: dict[str, Any], name: str) -> bool:
    return (
        finding.get("variable") == name
        or f"'{name}'" in finding["message"]
        or f"{name}:" in finding["message"]
    )


@pytest.mark.parametrize(("mutation", "kind"), CASES, ids=[f"{m}-{k}" for m, k in CASES])
def test_corrupted_product_fails_validation(projects, mutation: str, kind: str) -> None:
    m = BY_NAME[mutation]
    if isinstance(m.kinds[kind], NA):
        RESULTS[(mutation, kind)] = "n/a"
        return  # listed as not applicable in MUTATIONS (and in docs/reliability.md), with why
    project = projects(kind)
    outcome, errors = run_mutation(project, m)
    RESULTS[(mutation, kind)] = outcome
    assert outcome.startswith("caught"), (mutation, kind, errors)
    if m.names is not None:
        assert any(_names(f, m.names) for f in errors), (m.names, errors)
    assert all(f["message"] for f in errors), errors
    # what differs, and where: a variable or a file (global attributes and variables as a whole aside)
    assert any(
        f.get("variable") or f.get("file") or f["check"] in ("attributes", "structure") for f in errors
    )


@pytest.mark.parametrize("kind", list(KINDS))
def test_untouched_product_passes(projects, kind: str) -> None:
    project = projects(kind)
    ctx = fresh_copy(project, "untouched")
    # the copy and the mutations' editing round trip (read, write back unchanged) alone
    # must not change the verdict
    editor = {"cfa": cfa_file, "zarr": zarr_meta}.get(kind, kerchunk_refs)
    with editor(ctx):
        pass
    try:
        out = api.run(project.group, ["validate"], force=True)[0]
        rep = api.report(project.group, "p")
    finally:
        restore(project)
    assert out.status == "done" and rep["verdict"] == "pass", rep["findings"]


def render_table(results: dict[tuple[str, str], str]) -> str:
    """The mutation table and the scores, as in docs/reliability.md."""
    kinds = list(KINDS)
    lines = [
        "| Mutation | What is corrupted | " + " | ".join(kinds) + " |",
        "|---|---|" + "---|" * len(kinds),
    ]
    for m in MUTATIONS:
        cells = [results[(m.name, k)].split(":")[0] for k in kinds]  # caught, MISSED or n/a
        lines.append(f"| `{m.name}` | {m.description} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("| Kind | Caught | Applicable | Not applicable | Score |")
    lines.append("|---|---|---|---|---|")
    total_caught = total = 0
    for k in kinds:
        rs = [results[(m.name, k)] for m in MUTATIONS]
        applicable = [r for r in rs if r != "n/a"]
        caught = sum(r.startswith("caught") for r in applicable)
        total_caught += caught
        total += len(applicable)
        lines.append(
            f"| {k} | {caught} | {len(applicable)} | {len(rs) - len(applicable)} | {100 * caught / len(applicable):.0f}% |"
        )
    lines.append(f"| **all** | **{total_caught}** | **{total}** | | **{100 * total_caught / total:.0f}%** |")
    lines.append("")
    lines.append("Not applicable:")
    lines.append("")
    for m in MUTATIONS:
        for k in kinds:
            a = m.kinds[k]
            if isinstance(a, NA):
                lines.append(f"- `{m.name}` on {k}: {a.reason}.")
    return "\n".join(lines)


TABLE_START, TABLE_END = "<!-- mutation-table:start -->", "<!-- mutation-table:end -->"


def test_mutation_score(projects) -> None:
    """Every mutation on every kind (those the tests above did not run yet); the score must
    be 100% and docs/reliability.md must show this table."""
    for m in MUTATIONS:
        for kind in KINDS:
            if (m.name, kind) not in RESULTS:
                RESULTS[(m.name, kind)] = (
                    run_mutation(projects(kind), m)[0] if not isinstance(m.kinds[kind], NA) else "n/a"
                )
    table = render_table(RESULTS)
    print("\n" + table)
    missed = sorted(k for k, r in RESULTS.items() if r == "MISSED")
    assert not missed, f"mutations not caught: {missed}\n{table}"
    text = DOC.read_text()
    start, end = text.index(TABLE_START) + len(TABLE_START), text.index(TABLE_END)
    if os.environ.get("PADOCC_LIKE_WRITE_RELIABILITY"):
        DOC.write_text(text[:start] + "\n" + table + "\n" + text[end:])
        text = DOC.read_text()
        start, end = text.index(TABLE_START) + len(TABLE_START), text.index(TABLE_END)
    assert text[start:end].strip() == table.strip(), (
        "docs/reliability.md's mutation table is out of date: rerun with PADOCC_LIKE_WRITE_RELIABILITY=1"
    )
