"""Named stores: configuration, credentials, URL resolution and error translation (no server:
the S3 paths run against SeaweedFS in tests/integration/test_s3_pipeline.py)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from padocc_like import storage
from padocc_like.config.load import expand_remote, load_group
from padocc_like.config.models import SECRET_KEYS, Sources, StoreConfig
from padocc_like.errors import (
    ConfigError,
    StorageAccessError,
    StorageNotFoundError,
    StorageUnavailableError,
)
from padocc_like.scanners._hdf5_format import PagedReader


def s3(location: str = "bucket/prefix", **kw) -> StoreConfig:
    return StoreConfig(protocol="s3", location=location, endpoint_url="http://127.0.0.1:1", **kw)


# --- configuration -----------------------------------------------------------------------
@given(key=st.sampled_from(sorted(SECRET_KEYS)), upper=st.booleans())
def test_a_secret_in_yaml_is_refused_with_where_secrets_go(key: str, upper: bool) -> None:
    key = key.upper() if upper else key
    with pytest.raises(ValidationError) as err:
        StoreConfig.model_validate({"protocol": "s3", "location": "bucket", "credentials": {key: "x"}})
    assert key in str(err.value) and "environment" not in str(err.value).split(key)[0][-5:]
    assert "secret_key_env" in str(err.value)  # says how to name the variable instead
    with pytest.raises(ValidationError, match="would put a secret"):
        StoreConfig.model_validate({"protocol": "s3", "location": "bucket", key: "x"})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"protocol": "s3", "location": "Not_A_Bucket/x"}, "not a valid S3 bucket name"),
        ({"protocol": "file", "location": "/data", "endpoint_url": "http://x"}, "are S3 settings"),
        ({"protocol": "https", "location": "data.example.org/x"}, "must start with https://"),
        ({"protocol": "s3", "location": "bucket", "credentials": {"source": "file"}}, "needs 'path'"),
        ({"protocol": "s3", "location": "bucket", "credentials": {"source": "profile"}}, "needs 'profile'"),
        ({"protocol": "ftp", "location": "x"}, "protocol"),
    ],
)
def test_store_config_errors(fields: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        StoreConfig.model_validate(fields)


def test_store_urls_and_writability() -> None:
    assert s3("s3://bucket/a/b/").root_url == "s3://bucket/a/b"
    assert StoreConfig(protocol="file", location="file:///data/x/").root_url == "/data/x"
    web = StoreConfig(protocol="https", location="https://data.example.org/arch/")
    assert web.root_url == "https://data.example.org/arch" and not web.writable
    assert not s3(read_only=True).writable
    assert s3(anonymous_read=True).public_options() == {
        "client_kwargs": {"endpoint_url": "http://127.0.0.1:1"},
        "anon": True,
    }


def write_group(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "group.yaml"
    path.write_text(body)
    return path


GROUP = """
group: g
work_dir: work
{extra}
projects:
  - id: p
    sources: {{store: {store}, glob: "*.nc"}}
"""


def test_projects_name_stores_that_exist_and_write_to_writable_ones(tmp_path: Path) -> None:
    stores = "stores:\n  a: {protocol: s3, location: bucket-a, read_only: true}\n"
    with pytest.raises(ConfigError, match=r"sources names store 'nope', which is not defined \(a\)"):
        load_group(write_group(tmp_path, GROUP.format(extra=stores, store="nope")))
    with pytest.raises(ConfigError, match="products_store store 'a' is read only"):
        load_group(write_group(tmp_path, GROUP.format(extra=stores + "products_store: a", store="a")))
    publish = stores + "  out: {protocol: s3, location: bucket-out}\npublish: {store: out}\n"
    group = load_group(write_group(tmp_path, GROUP.format(extra=publish, store="a")))
    project = group.projects["p"]
    assert sorted(project.stores) == ["a", "out"] and project.publish.store == "out"
    no_finalise = publish + "pipeline: {name: x, phases: [init, scan, compute, validate, catalog]}\n"
    with pytest.raises(ConfigError, match="no 'finalise' phase"):
        load_group(write_group(tmp_path, GROUP.format(extra=no_finalise, store="a")))


def test_group_stores_add_to_and_replace_the_profiles(tmp_path: Path) -> None:
    extra = (
        "profile: {name: site, stores: {a: {protocol: s3, location: site-a}, b: {protocol: s3, location: site-b}}}\n"
        "stores: {a: {protocol: s3, location: group-a}}\n"
        "products_store: b\n"
    )
    project = load_group(write_group(tmp_path, GROUP.format(extra=extra, store="a"))).projects["p"]
    assert project.stores["a"].location == "group-a" and project.stores["b"].location == "site-b"


def test_remote_sources_are_keys_in_the_store(tmp_path: Path) -> None:
    store = s3("bucket/arch")
    (tmp_path / "list.txt").write_text("# files\ny/2.nc\n\ns3://bucket/arch/z.nc\n")
    got = expand_remote(Sources(store="a", files=["x/1.nc", "/x/3.nc"]), tmp_path, store)
    assert list(got) == ["s3://bucket/arch/x/1.nc", "s3://bucket/arch/x/3.nc"]
    got = expand_remote(Sources(store="a", list_file="list.txt"), tmp_path, store)
    assert list(got) == ["s3://bucket/arch/y/2.nc", "s3://bucket/arch/z.nc"]
    with pytest.raises(ConfigError, match="is not inside store location s3://bucket/arch"):
        expand_remote(Sources(store="a", files=["s3://other/x.nc"]), tmp_path, store)
    web = StoreConfig(protocol="https", location="https://h/x")
    with pytest.raises(ConfigError, match="need 'files' or 'list_file'"):
        expand_remote(Sources(store="w", glob="*.nc"), tmp_path, web)


# --- credentials -------------------------------------------------------------------------
def test_credentials_from_the_environment_only_as_named() -> None:
    st_ = storage.Storage(
        {"a": s3(credentials={"source": "env", "access_key_env": "K", "secret_key_env": "S"})},
        env={"K": "key-1", "S": "secret-1", "HOME": "/root", "AWS_SECRET_ACCESS_KEY": "other"},
    )
    opts = st_.options("a")
    assert (opts["key"], opts["secret"]) == ("key-1", "secret-1")
    assert opts["client_kwargs"] == {"endpoint_url": "http://127.0.0.1:1"}
    assert set(st_.env) == {"K", "S"}  # nothing else of the environment is kept
    assert "secret-1" not in repr(st_) and "key-1" not in repr(st_)
    clone = pickle.loads(pickle.dumps(st_))  # as handed to worker processes
    assert clone.options("a")["secret"] == "secret-1" and st_.secrets() == ["secret-1"]


def test_a_missing_variable_is_named() -> None:
    st_ = storage.Storage({"a": s3()}, env={"AWS_ACCESS_KEY_ID": "k"})
    with pytest.raises(StorageAccessError, match="AWS_SECRET_ACCESS_KEY is not set"):
        st_.options("a")


def test_credentials_file_and_anonymous(tmp_path: Path) -> None:
    creds = tmp_path / "credentials"
    creds.write_text(
        "[default]\naws_access_key_id = A\naws_secret_access_key = B\n[ceda]\naws_access_key_id = C\n"
    )
    st_ = storage.Storage(
        {
            "f": s3(credentials={"source": "file", "path": str(creds)}),
            "g": s3(credentials={"source": "file", "path": str(creds), "profile": "ceda"}),
            "h": s3(credentials={"source": "file", "path": str(creds), "profile": "none"}),
            "anon": s3(credentials={"source": "anonymous"}),
            "prof": s3(credentials={"source": "profile", "profile": "jasmin"}),
        }
    )
    assert (st_.options("f")["key"], st_.options("f")["secret"]) == ("A", "B")
    with pytest.raises(StorageAccessError, match=r"profile \[ceda\] of .* lacks"):
        st_.options("g")
    with pytest.raises(StorageAccessError, match=r"has no profile \[none\]"):
        st_.options("h")
    assert st_.options("anon")["anon"] is True and "key" not in st_.options("anon")
    assert st_.options("prof")["profile"] == "jasmin"


def test_urls_resolve_to_the_longest_matching_store() -> None:
    st_ = storage.Storage({"a": s3("bucket"), "b": s3("bucket/deep"), "c": s3("bucket2")})
    assert st_.store_for("s3://bucket/deep/x.nc") == "b"
    assert st_.store_for("s3://bucket/deeper/x.nc") == "a"
    assert st_.store_for("s3://bucket2/x") == "c" and st_.store_for("s3://elsewhere/x") is None
    assert st_.url("b", "/k/x.nc") == "s3://bucket/deep/k/x.nc"


@pytest.mark.parametrize(
    ("error", "kind", "words"),
    [
        (PermissionError("Forbidden"), StorageAccessError, "access denied"),
        (OSError("An error occurred (SignatureDoesNotMatch) ..."), StorageAccessError, "access denied"),
        (FileNotFoundError("x"), StorageNotFoundError, "no such object"),
        (OSError("An error occurred (NoSuchBucket)"), StorageNotFoundError, "no such object"),
        (ConnectionRefusedError("Connect call failed"), StorageUnavailableError, "did not answer"),
    ],
)
def test_storage_failures_become_named_errors(error: Exception, kind: type, words: str) -> None:
    err = storage.translate_error("s3://b/k.nc", error)
    assert isinstance(err, kind) and words in err.message and err.message.startswith("s3://b/k.nc: ")


# --- reading -----------------------------------------------------------------------------
def test_range_file_counts_local_reads(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(range(256)) * 4)
    with storage.RangeFile(str(path)) as rf:
        assert rf.size == 1024 and rf.read(10, 5) == bytes(range(10, 15)) and rf.read(0, 0) == b""
        assert (rf.requests, rf.bytes_read) == (1, 5)


@given(offset=st.integers(0, 5000), length=st.integers(0, 3000), head=st.integers(0, 6000))
def test_prefetched_pages_read_the_same_bytes(offset: int, length: int, head: int) -> None:
    data = bytes(i * 7 % 251 for i in range(6001))
    calls: list[tuple[int, int]] = []

    def read_range(o: int, n: int) -> bytes:
        calls.append((o, n))
        return data[o : o + n]

    reader = PagedReader(read_range, len(data), page_size=1024)
    reader.prefetch(0, head)
    length = min(length, len(data) - offset)
    assert reader.read(offset, length) == data[offset : offset + length]
    if head >= offset + length and length and head:
        assert len(calls) == 1  # served from the prefetched pages
