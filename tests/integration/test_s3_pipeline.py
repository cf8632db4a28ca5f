"""Sources and products in buckets of a real S3 server (SeaweedFS on loopback).

A group whose sources are in a private bucket goes through every phase: its products are
uploaded to a products store, published (references mapped) to a public bucket, and read
back through xarray with only public settings, equal to the sources. Secrets never reach
any output; wrong credentials, a missing bucket and a server stopping mid-compute fail
with clear errors, and a rerun after the server is back completes.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from padocc_like import api

pytestmark = pytest.mark.s3

PHASES = ["init", "scan", "compute", "validate", "finalise", "catalog"]
ENV_KEY, ENV_SECRET = "PADOCC_TEST_S3_KEY", "PADOCC_TEST_S3_SECRET"


def upload_archive(server, files: list[Path], bucket: str, prefix: str) -> None:
    client = server.client()
    for f in files:
        client.upload_file(str(f), bucket, f"{prefix}/{f.name}")


def store(server, location: str, **extra: str) -> str:
    fields = {
        "protocol": "s3",
        "location": location,
        "endpoint_url": server.endpoint_url,
        "credentials": f"{{source: env, access_key_env: {ENV_KEY}, secret_key_env: {ENV_SECRET}}}",
        **extra,
    }
    return "{" + ", ".join(f"{k}: {v}" for k, v in fields.items()) + "}"


def env_for(server, secret: str | None = None) -> dict[str, str]:
    return {ENV_KEY: server.key, ENV_SECRET: server.secret if secret is None else secret}


def source_dataset(files: list[Path]) -> xr.Dataset:
    return xr.open_mfdataset(
        [str(f) for f in files],
        combine="nested",
        concat_dim="time",
        data_vars="minimal",
        coords="minimal",
        compat="override",
        decode_times=False,
    ).load()


def assert_same(ds: xr.Dataset, expected: xr.Dataset) -> None:
    for name in ("tas", "pr", "time", "lat", "lon"):
        np.testing.assert_array_equal(ds[name].values, expected[name].values, err_msg=name)


@pytest.fixture
def s3_group(s3_server, s3_bucket, archive, write_group):
    """A group: sources in a private bucket, products to a products store, publishing to the
    public bucket with references mapped to a public copy of the archive."""
    files = archive(n_files=4)
    run_id = uuid.uuid4().hex[:10]
    upload_archive(s3_server, files, s3_bucket, "archive")
    upload_archive(s3_server, files, s3_server.public_bucket, f"{run_id}/archive")
    public = s3_server.public_bucket
    path = write_group(
        f"""
        group: g3
        work_dir: work
        stores:
          archive: {store(s3_server, f"{s3_bucket}/archive", read_only="true")}
          products: {store(s3_server, f"{s3_bucket}/products")}
          public: {store(s3_server, f"{public}/{run_id}/products", anonymous_read="true")}
          public-archive: {store(s3_server, f"{public}/{run_id}/archive", read_only="true", anonymous_read="true")}
        products_store: products
        publish:
          store: public
          references:
            - {{from: "s3://{s3_bucket}/archive/", to: "s3://{public}/{run_id}/archive/"}}
        projects:
          - id: p1
            sources: {{store: archive, glob: "*.nc"}}
            concat_dims: [time]
            product: {{kind: [kerchunk, cfa, zarr]}}
        """
    )
    return api.open_group(path), files, s3_bucket, run_id


def test_group_in_buckets_end_to_end(s3_server, s3_group):
    group, files, bucket, run_id = s3_group
    outcomes = api.run(group, PHASES, env=env_for(s3_server))
    assert [(o.phase, o.status) for o in outcomes] == [(p, "done") for p in PHASES], [
        o.message for o in outcomes
    ]
    expected = source_dataset(files)
    state = api.project_status(group, "p1")
    assert state["state"] == "done"

    import json

    paths = group.work_dir / "projects" / "p1"
    records = {p["kind"]: p for p in json.loads((paths / "state.json").read_text())["products"]}
    scan = json.loads((paths / "scan.json").read_text())
    assert scan["remote_io"]["files"] == 4 and scan["remote_io"]["requests_per_file"] >= 1

    # the products store's copies, opened as anyone with the bucket's credentials would
    so = s3_server.storage_options()
    kerchunk = records["kerchunk"]
    assert kerchunk["url"] == f"s3://{bucket}/products/g3/p1/kerchunk/r1.json"
    ds = xr.open_dataset(
        kerchunk["url"],
        engine="kerchunk",
        decode_times=False,
        storage_options={
            "target_options": so,
            "remote_protocol": "s3",
            "remote_options": {**so, "asynchronous": True},  # as zarr-python 3 needs
        },
    )
    assert_same(ds, expected)
    ds = xr.open_dataset(records["zarr"]["url"], engine="zarr", storage_options=so, decode_times=False)
    assert_same(ds, expected)
    ds = xr.open_dataset(records["cfa"]["url"], engine="padocc_cfa", storage_options=so, decode_times=False)
    assert_same(ds, expected)

    # the published copies: references mapped to the public archive, opened anonymously
    # from the STAC item's href and xarray:open_kwargs alone
    item = json.loads((paths / "catalog" / "item.json").read_text())
    public = f"s3://{s3_server.public_bucket}/{run_id}"
    for key in ("reference_file", "zstore"):
        asset = item["assets"][key]
        assert asset["href"].startswith(f"{public}/products/g3/p1/")
        kwargs = {k: v for k, v in asset["xarray:open_kwargs"].items() if k != "chunks"}
        ds = xr.open_dataset(asset["href"], decode_times=False, **kwargs)
        assert_same(ds, expected)
    refs = json.loads(
        s3_server.client(anon=True)
        .get_object(Bucket=s3_server.public_bucket, Key=f"{run_id}/products/g3/p1/kerchunk/r1.json")["Body"]
        .read()
    )
    urls = {v[0] for v in refs["refs"].values() if isinstance(v, list)}
    assert urls and all(u.startswith(f"{public}/archive/") for u in urls), urls
    published = records["kerchunk"]["published"]
    assert published["url"] == f"{public}/products/g3/p1/kerchunk/r1.json"
    assert published["references"]["rewritten"] > 0

    # a rerun is a no-op; a forced finalise copies nothing new and records the same copy
    again = api.run(group, PHASES, env=env_for(s3_server))
    assert all(o.skipped for o in again), [(o.phase, o.message) for o in again]
    forced = api.run(group, ["finalise"], force=True, env=env_for(s3_server))
    assert forced[0].status == "done"
    after = {p["kind"]: p for p in json.loads((paths / "state.json").read_text())["products"]}
    assert after["kerchunk"]["published"]["listing_sha256"] == published["listing_sha256"]


def test_secrets_never_written(s3_server, s3_group):
    """Every file of the work directory and every object in the buckets is searched for the
    secret (and the access key): none holds either."""
    group, _, bucket, run_id = s3_group
    outcomes = api.run(group, PHASES, env=env_for(s3_server))
    assert all(o.status == "done" for o in outcomes), [o.message for o in outcomes]
    secrets = [s3_server.secret.encode(), s3_server.key.encode()]
    searched = 0
    for path in group.work_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            searched += 1
            for secret in secrets:
                assert secret not in data, f"{secret!r} found in {path}"
    client = s3_server.client()
    for b, prefix in ((bucket, ""), (s3_server.public_bucket, run_id)):
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=b, Prefix=prefix):
            for obj in page.get("Contents", []):
                data = client.get_object(Bucket=b, Key=obj["Key"])["Body"].read()
                searched += 1
                for secret in secrets:
                    assert secret not in data, f"{secret!r} found in s3://{b}/{obj['Key']}"
    assert searched > 40
    for o in outcomes:
        assert s3_server.secret not in o.message


def test_wrong_credentials_fail_fast_and_clearly(s3_server, s3_group):
    group, *_ = s3_group
    t0 = time.monotonic()
    out = api.run(group, ["init"], env=env_for(s3_server, secret="not-the-secret"))
    elapsed = time.monotonic() - t0
    assert out[0].status == "failed"
    assert out[0].error_kind == "storage-access", out[0].message
    assert "access denied" in out[0].message and "s3://" in out[0].message
    assert "not-the-secret" not in out[0].message
    assert elapsed < 15, f"a wrong key took {elapsed:.1f} s to fail (retries?)"
    missing = api.run(group, ["init"], env={})
    assert missing[0].status == "failed" and missing[0].error_kind == "storage-access"
    assert ENV_SECRET in missing[0].message  # names the variable to set


def test_missing_bucket_is_named(s3_server, write_group):
    path = write_group(
        f"""
        group: g4
        work_dir: work
        stores:
          archive: {store(s3_server, "no-such-bucket-here/archive")}
        projects:
          - id: p1
            sources: {{store: archive, glob: "*.nc"}}
        """
    )
    out = api.run(api.open_group(path), ["init"], env=env_for(s3_server))
    assert out[0].status == "failed"
    assert out[0].error_kind == "storage-not-found", out[0].message
    assert "s3://no-such-bucket-here" in out[0].message and "does not exist" in out[0].message


def test_server_stopping_mid_compute_then_clean_rerun(tmp_path, archive, write_group, monkeypatch):
    """The server stops after compute wrote its product locally, as it uploads: compute fails
    with a clear error and records no product; with the server back, a rerun completes and
    leaves one complete, verified copy."""
    from s3server import SeaweedServer

    from padocc_like.publish import products

    server = SeaweedServer(tmp_path / "own-s3", buckets=("data",)).start()
    try:
        files = archive(n_files=3)
        upload_archive(server, files, "data", "archive")
        path = write_group(
            f"""
            group: g5
            work_dir: work
            stores:
              archive: {store(server, "data/archive")}
              products: {store(server, "data/products")}
            products_store: products
            projects:
              - id: p1
                sources: {{store: archive, glob: "*.nc"}}
                concat_dims: [time]
                product: {{kind: zarr}}
            """
        )
        group = api.open_group(path)
        assert all(o.status == "done" for o in api.run(group, ["init", "scan"], env=env_for(server)))
        real_upload = products.upload

        def stop_then_upload(*args, **kwargs):
            server.stop()
            return real_upload(*args, **kwargs)

        monkeypatch.setattr(products, "upload", stop_then_upload)
        t0 = time.monotonic()
        out = api.run(group, ["compute"], env=env_for(server))
        assert out[0].status == "failed"
        assert out[0].error_kind in ("storage-unavailable", "storage"), out[0].message
        assert "did not answer" in out[0].message or "unavailable" in out[0].message
        assert time.monotonic() - t0 < 60
        status = api.project_status(group, "p1")
        assert status["state"] == "failed" and status["product"] is None

        monkeypatch.setattr(products, "upload", real_upload)
        server.start()
        out = api.run(group, ["compute", "validate"], env=env_for(server))
        assert [o.status for o in out] == ["done", "done"], [o.message for o in out]
        url = api.project_status(group, "p1")["product"]
        assert url is not None
        import json

        record = json.loads((group.work_dir / "projects" / "p1" / "state.json").read_text())["products"][-1]
        ds = xr.open_dataset(
            record["url"], engine="zarr", storage_options=server.storage_options(), decode_times=False
        )
        assert_same(ds, source_dataset(files))
    finally:
        server.stop()


def test_parquet_references_in_a_bucket(s3_server, s3_bucket, archive, write_group):
    """Kerchunk's Parquet layout (a directory of objects, `.zmetadata` last) in the products
    store opens from the bucket."""
    files = archive(n_files=3)
    upload_archive(s3_server, files, s3_bucket, "archive")
    path = write_group(
        f"""
        group: g6
        work_dir: work
        stores:
          archive: {store(s3_server, f"{s3_bucket}/archive")}
          products: {store(s3_server, f"{s3_bucket}/products")}
        products_store: products
        projects:
          - id: p1
            sources: {{store: archive, glob: "*.nc"}}
            concat_dims: [time]
            product: {{layout: parquet}}
        """
    )
    group = api.open_group(path)
    outcomes = api.run(group, ["init", "scan", "compute", "validate"], env=env_for(s3_server))
    assert all(o.status == "done" for o in outcomes), [o.message for o in outcomes]
    import json

    record = json.loads((group.work_dir / "projects" / "p1" / "state.json").read_text())["products"][-1]
    assert record["layout"] == "parquet" and record["upload"]["objects"] > 2
    keys = [
        o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_bucket, Prefix="products/")["Contents"]
    ]
    assert "products/g6/p1/kerchunk/r1.parq/.zmetadata" in keys
    so = s3_server.storage_options()
    ds = xr.open_dataset(
        record["url"],
        engine="kerchunk",
        decode_times=False,
        storage_options={
            "target_options": so,
            "remote_protocol": "s3",
            "remote_options": {**so, "asynchronous": True},
        },
    )
    assert_same(ds, source_dataset(files))
