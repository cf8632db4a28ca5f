"""Publishing: rewrite products' source URLs with an explicit mapping, copy them verified.

Real products (Kerchunk JSON and Parquet, CFA with absolute and relative URIs) are built
once from a synthetic archive through init/scan/compute; the archive is then moved, so the
rewritten products can only open through the mapping. Copies go to ``memory://`` and to a
local directory; S3 is exercised through a memory filesystem posing as S3 (ETags computed as
S3 does) and the ETag function is checked by hand.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import fsspec
import netCDF4
import numpy as np
import pytest
import xarray as xr
from fsspec.implementations.memory import MemoryFileSystem
from hypothesis import given, settings
from hypothesis import strategies as st

from padocc_like import api
from padocc_like._io import sha256_file, sha256_tree
from padocc_like.errors import (
    CopyConflictError,
    CopyVerificationError,
    PublishError,
    UnmappedUrlError,
)
from padocc_like.publish import (
    UrlMapping,
    copy_product,
    remove_partial,
    rewrite_cfa,
    rewrite_kerchunk_json,
    rewrite_kerchunk_parquet,
    rewrite_product,
    s3_etag,
)
from padocc_like.publish.copy import ENTRY_POINTS, listing_digest, multipart_etag, s3_part_size
from padocc_like.state.store import current_products, load_state, project_paths

NAMES = ["tas", "pr", "time", "time_bnds", "lat", "lon"]


# ---------------------------------------------------------------------------
# products built once
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Products of one archive (then moved from ``archive/`` to ``moved/``)."""
    from padocc_like.demo import ArchiveSpec, make_archive

    root = tmp_path_factory.mktemp("publish")
    make_archive(root / "archive", ArchiveSpec(n_files=3, nlat=9, nlon=18))
    glob = str(root / "archive" / "*.nc")
    projects = [
        {"id": "both", "sources": {"glob": glob}, "product": {"kind": ["kerchunk", "cfa"]}},
        {
            "id": "parq",
            "sources": {"glob": glob},
            "product": {"kind": "kerchunk", "layout": "parquet", "record_size": 20},
        },
        {"id": "rel", "sources": {"glob": glob}, "product": {"kind": "cfa", "cfa_uris": "relative"}},
    ]
    body = {
        "group": "pub",
        "work_dir": str(root / "work"),
        "pipeline": "kerchunk",
        "profile": "serial",
        "projects": projects,
    }
    (root / "group.yaml").write_text(json.dumps(body))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PADOCC_LIKE_CACHE_DIR", str(root / "cache"))
        group = api.open_group(root / "group.yaml")
        outcomes = api.run(group, ["init", "scan", "compute"])
    assert all(o.status == "done" for o in outcomes), outcomes
    products = {}
    for pid in ("both", "parq", "rel"):
        for p in current_products(load_state(project_paths(group.work_dir, pid))):
            products[(pid, p["kind"], p["layout"])] = Path(p["path"])
    shutil.move(root / "archive", root / "moved")
    return {
        "root": root,
        "archive": root / "archive",
        "moved": root / "moved",
        "json": products[("both", "kerchunk", "json")],
        "cfa": products[("both", "cfa", "netcdf")],
        "parquet": products[("parq", "kerchunk", "parquet")],
        "cfa_relative": products[("rel", "cfa", "netcdf")],
    }


@pytest.fixture(scope="module")
def sources(built: dict[str, Any]) -> xr.Dataset:
    paths = sorted(str(p) for p in built["moved"].glob("*.nc"))
    return xr.open_mfdataset(
        paths, combine="nested", concat_dim="time", data_vars="minimal", coords="minimal", compat="override"
    )


def moved_mapping(built: dict[str, Any], **kw: Any) -> UrlMapping:
    return UrlMapping([(f"{built['archive']}/", f"{built['moved']}/")], **kw)


def assert_same(ds: xr.Dataset, ref: xr.Dataset) -> None:
    for name in NAMES:
        np.testing.assert_array_equal(ds[name].values, ref[name].values, err_msg=name)


def open_kerchunk(path: Path) -> xr.Dataset:
    return xr.open_dataset(str(path), engine="kerchunk", storage_options={"remote_protocol": "file"})


# ---------------------------------------------------------------------------
# rewritten products open on the moved sources
# ---------------------------------------------------------------------------
def test_kerchunk_json_rewritten_opens_on_moved_sources(built, sources, tmp_path):
    summary = rewrite_kerchunk_json(built["json"], tmp_path / "r1.json", moved_mapping(built))
    assert summary.sources == 3 and summary.rewritten > 3 and summary.kept == 0
    assert_same(open_kerchunk(tmp_path / "r1.json"), sources)
    refs = json.loads((tmp_path / "r1.json").read_text())["refs"]
    urls = {v[0] for v in refs.values() if isinstance(v, list)}
    assert urls == {str(p) for p in built["moved"].glob("*.nc")}


def test_kerchunk_json_keeps_inline_data_and_documents(built, tmp_path):
    rewrite_kerchunk_json(built["json"], tmp_path / "r1.json", moved_mapping(built))
    before = json.loads(built["json"].read_text())["refs"]
    after = json.loads((tmp_path / "r1.json").read_text())["refs"]
    assert before.keys() == after.keys()
    for key, value in before.items():
        if isinstance(value, list):
            assert after[key][1:] == value[1:]
        else:
            assert after[key] == value  # inline chunks (base64:) and zarr documents
    assert any(isinstance(v, str) and v.startswith("base64:") for v in after.values())


def test_kerchunk_parquet_rewritten_opens_on_moved_sources(built, sources, tmp_path):
    import pyarrow.parquet as pq

    dst = tmp_path / "r1.parq"
    summary = rewrite_kerchunk_parquet(built["parquet"], dst, moved_mapping(built))
    assert summary.sources == 3 and summary.rewritten > 3
    assert_same(open_kerchunk(dst), sources)
    assert (dst / ".zmetadata").read_bytes() == (built["parquet"] / ".zmetadata").read_bytes()
    files = sorted(p.relative_to(built["parquet"]) for p in built["parquet"].rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(dst) for p in dst.rglob("*") if p.is_file())
    for rel in files:
        if rel.name == ".zmetadata":
            continue
        old, new = pq.ParquetFile(built["parquet"] / rel), pq.ParquetFile(dst / rel)
        assert (
            old.schema_arrow == new.schema_arrow
            and old.metadata.num_row_groups == new.metadata.num_row_groups
        )
        assert old.schema.equals(new.schema)  # the physical schema: nullable UTF-8 path, bytes raw
        a, b = old.read().to_pydict(), new.read().to_pydict()
        old.close()
        new.close()
        assert [u is None for u in a["path"]] == [u is None for u in b["path"]]
        assert a["raw"] == b["raw"] and a["offset"] == b["offset"] and a["size"] == b["size"]
    assert not list(tmp_path.glob(".*.partial"))


def test_cfa_rewritten_opens_on_moved_sources(built, sources, tmp_path):
    dst = tmp_path / "pub" / "r2.nc"
    mapping = UrlMapping([(f"file://{built['archive']}/", f"file://{built['moved']}/")])
    summary = rewrite_cfa(built["cfa"], dst, mapping)
    assert summary.to_dict() == {"rewritten": 3, "kept": 0, "sources": 3}
    assert_same(xr.open_dataset(dst, engine="padocc_cfa"), sources)


def test_cfa_relative_uris_resolve_against_the_source_file(built, sources, tmp_path):
    with netCDF4.Dataset(built["cfa_relative"]) as nc:
        uris = nc["fragment_uris_0"][...].reshape(-1).tolist()
    assert all(not u.startswith(("/", "file:")) for u in uris)  # relative, as written
    dst = tmp_path / "elsewhere" / "r1.nc"  # another directory: kept relative URIs would break
    summary = rewrite_product("cfa", "netcdf", built["cfa_relative"], dst, moved_mapping(built))
    assert summary.rewritten == 3
    with netCDF4.Dataset(dst) as nc:
        assert sorted(nc["fragment_uris_0"][...].reshape(-1).tolist()) == sorted(
            str(p) for p in built["moved"].glob("*.nc")
        )
    assert_same(xr.open_dataset(dst, engine="padocc_cfa"), sources)


def test_dispatcher(built, sources, tmp_path):
    m = moved_mapping(built)
    rewrite_product("kerchunk", "json", built["json"], tmp_path / "a.json", m)
    rewrite_product("kerchunk", "parquet", built["parquet"], tmp_path / "a.parq", m)
    assert_same(open_kerchunk(tmp_path / "a.parq"), sources)
    store = tmp_path / "src.zarr"
    (store / "tas").mkdir(parents=True)
    (store / ".zmetadata").write_text("{}")
    (store / "tas" / "0.0").write_bytes(b"\x01\x02")
    assert rewrite_product("zarr", "zarr2", store, tmp_path / "pub.zarr", m).rewritten == 0
    assert sha256_tree(tmp_path / "pub.zarr") == sha256_tree(store)
    (tmp_path / "s.zip").write_bytes(b"PK-ish")
    rewrite_product("zarr", "zarr2-zip", tmp_path / "s.zip", tmp_path / "p.zip", m)
    assert (tmp_path / "p.zip").read_bytes() == b"PK-ish"
    with pytest.raises(PublishError, match="kind 'nope'"):
        rewrite_product("nope", "json", built["json"], tmp_path / "x", m)
    with pytest.raises(PublishError, match="layout 'csv'"):
        rewrite_product("kerchunk", "csv", built["json"], tmp_path / "x", m)


def test_rewrite_output_is_deterministic(built, tmp_path):
    m = moved_mapping(built)
    rewrite_kerchunk_json(built["json"], tmp_path / "a.json", m)
    rewrite_kerchunk_json(built["json"], tmp_path / "b.json", m)
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    # the writer's serialisation: an identity mapping gives the writer's bytes back
    identity = UrlMapping([(f"{built['archive']}/", f"{built['archive']}/")])
    rewrite_kerchunk_json(built["json"], tmp_path / "same.json", identity)
    assert (tmp_path / "same.json").read_bytes() == built["json"].read_bytes()
    rewrite_kerchunk_parquet(built["parquet"], tmp_path / "a.parq", m)
    rewrite_kerchunk_parquet(built["parquet"], tmp_path / "b.parq", m)
    assert sha256_tree(tmp_path / "a.parq") == sha256_tree(tmp_path / "b.parq")


def test_unmapped_url_is_an_error_naming_it(built, tmp_path):
    mapping = UrlMapping([("/nowhere/", "https://data.example.org/x/")])
    with pytest.raises(UnmappedUrlError) as err:
        rewrite_kerchunk_json(built["json"], tmp_path / "r.json", mapping)
    assert str(built["archive"]) in err.value.message and "tas_day_synthetic_" in err.value.message
    assert "/nowhere/ -> https://data.example.org/x/" in err.value.message
    assert err.value.to_dict()["kind"] == "unmapped-url"
    with pytest.raises(UnmappedUrlError):
        rewrite_cfa(built["cfa"], tmp_path / "r.nc", mapping)
    with pytest.raises(UnmappedUrlError):
        rewrite_kerchunk_parquet(built["parquet"], tmp_path / "r.parq", mapping)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_unmapped_keep_leaves_urls(built, tmp_path):
    mapping = UrlMapping([("/nowhere/", "/elsewhere/")], unmapped="keep")
    summary = rewrite_kerchunk_json(built["json"], tmp_path / "r.json", mapping)
    assert summary.rewritten == 0 and summary.kept > 0 and summary.sources == 3
    assert (tmp_path / "r.json").read_bytes() == built["json"].read_bytes()


def test_templates_are_rewritten(tmp_path):
    doc = {
        "version": 1,
        "templates": {"a": "/gws/data/f.nc"},
        "refs": {
            ".zgroup": '{"zarr_format":2}',
            "x/0": ["{{a}}", 0, 4],
            "x/1": ["/gws/data/g.nc"],
            "x/2": "abc",
        },
    }
    (tmp_path / "in.json").write_text(json.dumps(doc))
    mapping = UrlMapping([("/gws/data/", "s3://public/data/")])
    summary = rewrite_kerchunk_json(tmp_path / "in.json", tmp_path / "out.json", mapping)
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["templates"] == {"a": "s3://public/data/f.nc"}
    assert out["refs"]["x/0"] == ["{{a}}", 0, 4] and out["refs"]["x/1"] == ["s3://public/data/g.nc"]
    assert out["refs"]["x/2"] == "abc" and summary.rewritten == 2


# ---------------------------------------------------------------------------
# the mapping
# ---------------------------------------------------------------------------
def test_longest_prefix_wins():
    m = UrlMapping(
        [
            ("/gws/data/", "https://data.example.org/all/"),
            ("/gws/data/cmip6/", "s3://public-bucket/cmip6/"),
            ("s3://internal-bucket/x/", "s3://public-bucket/x/"),
        ]
    )
    assert m.map("/gws/data/cmip6/a/b.nc") == "s3://public-bucket/cmip6/a/b.nc"
    assert m.map("/gws/data/obs/b.nc") == "https://data.example.org/all/obs/b.nc"
    assert m.map("s3://internal-bucket/x/y.nc") == "s3://public-bucket/x/y.nc"
    with pytest.raises(UnmappedUrlError, match=re.escape("s3://internal-bucket/z.nc")):
        m.map("s3://internal-bucket/z.nc")
    with pytest.raises(UnmappedUrlError):  # literal: /gws/data/ does not cover /gws/database/
        m.map("/gws/database/x.nc")


def test_plain_path_and_file_uri_are_the_same_location():
    for source in ("/gws/data/", "file:///gws/data/"):
        m = UrlMapping([(source, "https://data.example.org/x/")])
        assert m.map("/gws/data/a b.nc") == "https://data.example.org/x/a%20b.nc"
        assert m.map("file:///gws/data/a%20b.nc") == "https://data.example.org/x/a%20b.nc"
        assert m.map("file://localhost/gws/data/c.nc") == "https://data.example.org/x/c.nc"
    m = UrlMapping([("file:///gws/data/", "/srv/pub/")])
    assert m.map("file:///gws/data/a%20b.nc") == "/srv/pub/a b.nc"  # a plain path is not encoded
    m = UrlMapping([("/gws/data/", "file:///srv/pub/")])
    assert m.map("/gws/data/a b.nc") == "file:///srv/pub/a%20b.nc"
    # a longer local rule wins whichever form each side is written in
    m = UrlMapping([("file:///gws/", "/a/"), ("/gws/data/", "/b/")])
    assert m.map("file:///gws/data/x.nc") == "/b/x.nc" and m.map("/gws/other/x.nc") == "/a/other/x.nc"


@pytest.mark.parametrize(
    ("rules", "match"),
    [
        ([("", "/x/")], "empty"),
        ([("/x/", "")], "empty"),
        ([("/x/", "/y/"), ("/x/", "/z/")], "given twice"),
        ([("/x/", "/y/"), ("file:///x/", "/z/")], "given twice"),
        ([("/x/", "https://h/y")], "ends with '/'"),
        ([("data/", "/y/")], "absolute path or a URL"),
        ([("/x/", "y/")], "absolute path or a URL"),
    ],
)
def test_rules_are_validated(rules, match):
    with pytest.raises(ValueError, match=match):
        UrlMapping(rules)


def test_mapping_is_frozen_and_messages_hold_no_credentials():
    m = UrlMapping([("https://user:secret@internal.example/x/", "https://public.example/x/")])
    with pytest.raises(AttributeError):
        m.unmapped = "keep"  # type: ignore[misc]
    with pytest.raises(UnmappedUrlError) as err:
        m.map("https://other:pw@elsewhere/y.nc")
    assert "secret" not in err.value.message and "pw" not in err.value.message


segment = st.text(alphabet="abcxyz_-. ", min_size=1, max_size=6).filter(lambda s: s not in (".", ".."))


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(segment, min_size=1, max_size=6), cut=st.data(), file_form=st.booleans())
def test_property_the_longest_covering_prefix_is_used(parts, cut, file_form):
    from urllib.parse import quote, unquote

    path = "/" + "/".join(parts)
    dirs = ["/" + "/".join(parts[:i]) + "/" for i in range(1, len(parts))] or ["/"]
    chosen = cut.draw(st.lists(st.sampled_from(dirs), min_size=1, unique=True))
    rules = [(f"file://{quote(d)}" if file_form and i % 2 else d, f"/t{i}/") for i, d in enumerate(chosen)]
    m = UrlMapping([r for r in rules if r[0] not in ("/", "file:///")] or [("/", "/t/")])
    best = max(m.rules, key=lambda r: len(unquote(r[0].removeprefix("file://"))))  # decoded length
    source = unquote(best[0].removeprefix("file://"))
    expected = best[1] + path[len(source) :]
    assert m.map(path) == expected
    assert m.map("file://" + quote(path)) == expected


# ---------------------------------------------------------------------------
# copy
# ---------------------------------------------------------------------------
@pytest.fixture
def memfs():
    fs = fsspec.filesystem("memory")
    base = f"memory://pub-{uuid.uuid4().hex}"
    yield fs, base
    if fs.exists(base):
        fs.rm(base, recursive=True)


def test_copy_file_to_memory_and_read_back(built, memfs):
    fs, base = memfs
    record = copy_product(built["json"], fs, f"{base}/p/r1.json")
    assert [o.key for o in record.objects] == [""] and record.uploaded == 1
    assert record.total_bytes == built["json"].stat().st_size
    assert record.objects[0].sha256 == sha256_file(built["json"])
    assert fs.cat_file(f"{base}/p/r1.json") == built["json"].read_bytes()
    d = record.to_dict()
    assert d["destination"].endswith("/p/r1.json") and d["sha256"] == listing_digest(record.objects)
    json.dumps(d)


def test_copy_tree_to_local_dir_opens(built, sources, tmp_path):
    rewritten = tmp_path / "staged" / "r1.parq"
    rewrite_kerchunk_parquet(built["parquet"], rewritten, moved_mapping(built))
    fs = fsspec.filesystem("file")
    dest = tmp_path / "published" / "p" / "r1.parq"
    record = copy_product(rewritten, fs, str(dest))
    assert sha256_tree(dest) == sha256_tree(rewritten)
    assert {o.key for o in record.objects} == {
        p.relative_to(rewritten).as_posix() for p in rewritten.rglob("*") if p.is_file()
    }
    assert record.total_bytes == sum(p.stat().st_size for p in rewritten.rglob("*") if p.is_file())
    assert_same(open_kerchunk(dest), sources)


class RecordingFS(MemoryFileSystem):
    """A memory filesystem recording the order of uploads (its own instance cache)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.puts: list[str] = []

    def put_file(self, lpath: str, rpath: str, *args: Any, **kwargs: Any) -> None:
        self.puts.append(rpath)
        super().put_file(lpath, rpath, *args, **kwargs)


def test_entry_points_are_uploaded_last(tmp_path):
    store = tmp_path / "r1.zarr"
    for rel in [
        "tas/.zarray",
        "tas/0.0",
        "tas/0.1",
        "lat/.zattrs",
        ".zgroup",
        ".zattrs",
        ".zmetadata",
        "a/zarr.json",
    ]:
        (store / rel).parent.mkdir(parents=True, exist_ok=True)
        (store / rel).write_bytes(rel.encode())
    fs = RecordingFS(skip_instance_cache=True)
    root = f"/rec-{uuid.uuid4().hex}/p"
    try:
        copy_product(store, fs, f"memory:/{root}")
        keys = [p[len(root) + 1 :] for p in fs.puts]
        assert keys[-3:] == [".zattrs", ".zgroup", ".zmetadata"]
        assert set(keys[:-3]).isdisjoint(ENTRY_POINTS) and "a/zarr.json" in keys[:-3]
        assert keys[:-3] == sorted(keys[:-3])
    finally:
        fs.rm(root.rsplit("/", 1)[0], recursive=True)


class FlippingFS(MemoryFileSystem):
    """Flips the last byte of every object it stores: a corrupting store."""

    def put_file(self, lpath: str, rpath: str, *args: Any, **kwargs: Any) -> None:
        data = bytearray(Path(lpath).read_bytes())
        data[-1] ^= 0xFF
        self.pipe_file(rpath, bytes(data))


class TruncatingFS(MemoryFileSystem):
    def put_file(self, lpath: str, rpath: str, *args: Any, **kwargs: Any) -> None:
        self.pipe_file(rpath, Path(lpath).read_bytes()[:-1])


@pytest.mark.parametrize(("cls", "what"), [(FlippingFS, "sha256"), (TruncatingFS, "size")])
def test_corrupted_upload_is_detected(built, cls, what):
    fs = cls(skip_instance_cache=True)
    dest = f"memory://bad-{uuid.uuid4().hex}/p/r1.json"
    try:
        with pytest.raises(CopyVerificationError) as err:
            copy_product(built["json"], fs, dest)
        e = err.value
        assert e.key == "" and e.expected.startswith(what) and e.found.startswith(what)
        assert e.expected != e.found and "/p/r1.json" in e.message and e.found in e.message
        assert e.to_dict()["kind"] == "copy-verification"
        assert not fs.exists(dest)  # the bad object is not left where readers look
    finally:
        remove_partial(fs, dest)


def test_idempotent_recopy_and_resumed_partial_copy(built, memfs):
    fs, base = memfs
    dest = f"{base}/p/r1.parq"
    first = copy_product(built["parquet"], fs, dest)
    again = copy_product(built["parquet"], fs, dest)
    assert again.uploaded == 0 and again.skipped == len(first.objects)
    assert again.sha256 == first.sha256 and again.objects == first.objects
    # an interrupted copy: data partly there, entry point never written
    fs.rm_file(f"{dest}/.zmetadata")
    data = sorted(k for k in fs.find(dest))
    fs.rm_file(data[0])
    fs.pipe_file(data[1], b"partial")
    resumed = copy_product(built["parquet"], fs, dest)
    assert resumed.uploaded == 3 and resumed.sha256 == first.sha256


def test_remove_partial_then_copy(built, memfs):
    fs, base = memfs
    dest = f"{base}/p/r1.parq"
    copy_product(built["parquet"], fs, dest)
    fs.rm_file(f"{dest}/.zmetadata")
    removed = remove_partial(fs, dest)
    assert ".zmetadata" not in removed and len(removed) == len(list(built["parquet"].rglob("refs.*.parq")))
    assert not fs.exists(dest) and remove_partial(fs, dest) == []
    assert copy_product(built["parquet"], fs, dest).skipped == 0
    with pytest.raises(PublishError, match="refusing"):
        remove_partial(fs, base)


def test_conflicting_destinations_are_refused(built, memfs, tmp_path):
    fs, base = memfs
    dest = f"{base}/p/r1.parq"
    fs.pipe_file(f"{dest}/stray.txt", b"x")
    with pytest.raises(CopyConflictError, match=re.escape("stray.txt")):
        copy_product(built["parquet"], fs, dest)
    remove_partial(fs, dest)
    copy_product(built["parquet"], fs, dest)
    other = tmp_path / "other.parq"
    shutil.copytree(built["parquet"], other)
    (other / ".zmetadata").write_text(
        (other / ".zmetadata").read_text().replace("zarr_format", "zarr_format ")
    )
    with pytest.raises(CopyConflictError, match="different complete product"):
        copy_product(other, fs, dest)
    fs.pipe_file(f"{base}/q/r1.json", b"{}")
    with pytest.raises(CopyConflictError, match="different complete product"):
        copy_product(built["json"], fs, f"{base}/q/r1.json")


# ---------------------------------------------------------------------------
# S3 ETags
# ---------------------------------------------------------------------------
def test_s3_etag_single_and_multipart(tmp_path):
    data = bytes(range(256)) * 10  # 2560 bytes
    path = tmp_path / "obj"
    path.write_bytes(data)
    # smaller than two parts: one PutObject, the plain MD5
    assert s3_etag(path, part_size=2000) == hashlib.md5(data).hexdigest()
    # multipart, parts of 1000 bytes: md5 of the concatenated part md5s, "-3"
    parts = [hashlib.md5(data[i : i + 1000]).digest() for i in (0, 1000, 2000)]
    expected = hashlib.md5(b"".join(parts)).hexdigest() + "-3"
    assert s3_etag(path, part_size=1000) == expected == multipart_etag(parts)
    # exactly two parts
    path.write_bytes(data[:2000])
    two = [hashlib.md5(data[:1000]).digest(), hashlib.md5(data[1000:2000]).digest()]
    assert s3_etag(path, part_size=1000) == hashlib.md5(b"".join(two)).hexdigest() + "-2"
    assert s3_part_size(10, 50 << 20) == 50 << 20
    assert s3_part_size(10_000 * (60 << 20), 50 << 20) == 60 << 20


class FakeS3(MemoryFileSystem):
    """A memory store posing as S3: ETags as S3 computes them for s3fs's uploads."""

    protocol = ("s3", "s3a")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.chunksizes: dict[str, int] = {}
        self.corrupt = False

    def put_file(
        self, lpath: str, rpath: str, *args: Any, chunksize: int | None = None, **kwargs: Any
    ) -> None:
        assert chunksize is not None, "an S3 upload must state its part size"
        self.chunksizes[self._strip_protocol(rpath)] = chunksize
        data = Path(lpath).read_bytes()
        self.pipe_file(rpath, data[:-1] + b"!" if self.corrupt else data)

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        info = dict(super().info(path, **kwargs))
        if info["type"] == "file":
            p = self._strip_protocol(path)
            tmp = Path(self._tmpdir) / "etag"
            tmp.write_bytes(self.cat_file(p))
            info["ETag"] = f'"{s3_etag(tmp, self.chunksizes.get(p, 50 << 20))}"'
        return info


def test_copy_to_s3_like_store_verifies_etags(built, tmp_path):
    fs = FakeS3(skip_instance_cache=True)
    fs._tmpdir = str(tmp_path)
    top = f"/s3-{uuid.uuid4().hex}"
    dest = f"{top}/p/r1.parq"
    try:
        record = copy_product(built["parquet"], fs, dest, part_size=1000)
        assert set(fs.chunksizes.values()) == {1000}
        assert record.uploaded == len(record.objects)
        assert copy_product(built["parquet"], fs, dest, part_size=1000).skipped == len(record.objects)
        fs.corrupt = True
        with pytest.raises(CopyVerificationError, match="ETag"):
            copy_product(built["json"], fs, f"{top}/q/r1.json")
    finally:
        fs.rm(top, recursive=True)


def test_a_failed_tree_copy_never_has_its_entry_point(built):
    fs = FlippingFS(skip_instance_cache=True)
    dest = f"memory://bad-{uuid.uuid4().hex}/p/r1.parq"
    try:
        with pytest.raises(CopyVerificationError) as err:
            copy_product(built["parquet"], fs, dest)
        assert err.value.key.endswith(".parq") and not fs.exists(f"{dest}/.zmetadata")
    finally:
        remove_partial(fs, dest)
