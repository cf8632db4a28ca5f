"""Faults: sources changed behind the pipeline's back, a full disk, stale products, and an S3
server that restarts mid-run. (SIGKILL in every phase: tests/integration/test_kill.py.)"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from padocc_like import api

PHASES = ["init", "scan", "compute", "validate", "finalise", "catalog"]


def group_yaml(work: Path, archive: Path, product: str = "{kind: kerchunk}") -> str:
    return f"""
group: faults
work_dir: {work}
profile: serial
projects:
  - id: p
    sources: {{glob: {archive}/*.nc}}
    product: {product}
"""


def make_group(tmp_path: Path, work: Path, archive: Path, name: str = "g.yaml", **kw: str) -> api.Group:
    path = tmp_path / name
    path.write_text(group_yaml(work, archive, **kw))
    return api.open_group(path)


def rewrite_in_place(path: Path) -> None:
    """Change a file's content but not its size (its modification time moves on)."""
    data = bytearray(path.read_bytes())
    data[-8:] = bytes(b ^ 0xFF for b in data[-8:])
    time.sleep(0.01)
    path.write_bytes(bytes(data))


def tree(path: Path) -> dict[str, bytes]:
    if path.is_file():
        return {"": path.read_bytes()}
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# --- sources changed after init ----------------------------------------------------------
@pytest.mark.parametrize("change", ["content", "size", "removed", "mtime"])
def test_a_source_changed_after_scan_is_refused_before_compute_reads_it(tmp_path, archive, change):
    files = archive(n_files=3)
    group = make_group(tmp_path, tmp_path / "work", tmp_path / "archive")
    assert all(o.status == "done" for o in api.run(group, ["init", "scan"]))
    target = files[1]
    if change == "content":
        rewrite_in_place(target)
    elif change == "size":
        with open(target, "ab") as f:
            f.write(b"\0" * 16)
    elif change == "removed":
        target.unlink()
    else:  # touched: the same bytes, a new modification time
        os.utime(target, ns=(time.time_ns(), time.time_ns() + 10**9))
    out = api.run(group, ["compute"])[0]
    assert out.status == "failed" and out.error_kind == "sources-changed", out.message
    assert str(target) in out.message and "init --force" in out.message
    products = group.work_dir / "projects" / "p" / "products"
    assert not products.exists() or not any(p.is_file() for p in products.rglob("*"))
    row = api.status(group)[0]
    assert row["state"] == "failed" and row["phase"] == "compute" and row["product"] is None


def test_a_source_changed_after_compute_is_refused_by_validate(tmp_path, archive):
    files = archive(n_files=3)
    group = make_group(tmp_path, tmp_path / "work", tmp_path / "archive")
    assert all(o.status == "done" for o in api.run(group, ["init", "scan", "compute"]))
    rewrite_in_place(files[0])
    out = api.run(group, ["validate"])[0]
    assert out.status == "failed" and out.error_kind == "sources-changed" and str(files[0]) in out.message
    row = api.status(group)[0]
    assert row["product"]["status"] == "unvalidated"  # never marked valid against other bytes


@pytest.mark.s3
@pytest.mark.parametrize("change", ["content", "size"])
def test_a_remote_source_rewritten_after_init_is_refused_before_compute(
    s3_server, s3_bucket, archive, write_group, change
):
    """In a bucket a source is recognised by its size and ETag: an object rewritten after init
    (same size, other bytes; or another size) fails compute with ``sources-changed`` naming it."""
    files = archive(n_files=3)
    client = s3_server.client()
    for f in files:
        client.upload_file(str(f), s3_bucket, f"archive/{f.name}")
    creds = "{source: env, access_key_env: PADOCC_TEST_S3_KEY, secret_key_env: PADOCC_TEST_S3_SECRET}"
    env = {"PADOCC_TEST_S3_KEY": s3_server.key, "PADOCC_TEST_S3_SECRET": s3_server.secret}
    path = write_group(
        f"""
        group: g8
        work_dir: work
        stores:
          archive: {{protocol: s3, location: {s3_bucket}/archive, endpoint_url: "{s3_server.endpoint_url}", credentials: {creds}}}
        projects:
          - id: p1
            sources: {{store: archive, glob: "*.nc"}}
            concat_dims: [time]
        """
    )
    group = api.open_group(path)
    assert all(o.status == "done" for o in api.run(group, ["init", "scan"], env=env))
    data = bytearray(files[1].read_bytes())
    if change == "content":
        data[-8:] = bytes(b ^ 0xFF for b in data[-8:])
    else:
        data += b"\0" * 16
    client.put_object(Bucket=s3_bucket, Key=f"archive/{files[1].name}", Body=bytes(data))
    out = api.run(group, ["compute"], env=env)[0]
    assert out.status == "failed" and out.error_kind == "sources-changed", out.message
    assert f"s3://{s3_bucket}/archive/{files[1].name}" in out.message
    assert api.status(group)[0]["product"] is None


# --- stale products ----------------------------------------------------------------------
@pytest.mark.parametrize("change", ["content", "removed", "mtime"])
def test_a_product_whose_sources_changed_is_stale(tmp_path, archive, change):
    files = archive(n_files=3)
    group = make_group(tmp_path, tmp_path / "work", tmp_path / "archive")
    assert all(o.status == "done" for o in api.run(group, PHASES))
    row = api.status(group)[0]
    assert row["state"] == "done" and row["stale"] == []
    if change == "content":
        rewrite_in_place(files[2])
    elif change == "removed":
        files[2].unlink()
    else:
        os.utime(files[2], ns=(time.time_ns(), time.time_ns() + 10**9))
    row = api.status(group)[0]
    assert row["state"] == "stale", row
    assert str(files[2]) in row["reason"] and "init --force" in row["reason"]
    assert len(row["stale"]) == 1 and row["stale"][0].startswith(str(files[2]))
    assert [p.id for p in api.select(group, states=["stale"])] == ["p"]
    assert api.select(group, states=["done"]) == []

    env = {**os.environ, "PADOCC_LIKE_CACHE_DIR": str(tmp_path / "cache")}
    cli = [sys.executable, "-m", "padocc_like", "status", str(group.path)]
    shown = json.loads(subprocess.run([*cli, "--json"], env=env, capture_output=True, check=True).stdout)
    assert shown["projects"][0]["state"] == "stale" and shown["projects"][0]["stale"] == row["stale"]
    text = subprocess.run(cli, env=env, capture_output=True, text=True, check=True).stdout
    assert "stale" in text and str(files[2]) in text

    if change == "mtime":  # accepting the change (same bytes) makes the product fresh again
        assert api.run(group, ["init"], force=True)[0].status == "done"
        assert all(o.status == "done" for o in api.run(group, PHASES))
        row = api.status(group)[0]
        assert row["state"] == "done" and row["stale"] == []


def test_remote_sources_are_not_stat_by_status(tmp_path, archive, monkeypatch):
    """``status`` checks local sources with one stat each, and skips remote ones (their
    listing would cost requests on every status; scan, compute and validate check them)."""
    archive(n_files=2)
    group = make_group(tmp_path, tmp_path / "work", tmp_path / "archive")
    assert all(o.status == "done" for o in api.run(group, PHASES))
    manifest_path = group.work_dir / "projects" / "p" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"].append({"url": "s3://bucket/never-listed.nc", "size": 1, "mtime_ns": None, "etag": "x"})
    manifest_path.write_text(json.dumps(manifest))
    calls: list[str] = []
    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: calls.append(str(p)) or real_stat(p, *a, **k))
    row = api.status(group)[0]
    assert row["state"] == "done" and row["stale"] == []
    assert not [c for c in calls if "s3:" in c or "never-listed" in c]


# --- a full disk -------------------------------------------------------------------------
@pytest.fixture
def small_fs(tmp_path):
    """A 4 MB tmpfs mounted for the test (needs root; CI runs as root and must run these)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    reason = None
    if os.geteuid() != 0:
        reason = "mounting a small tmpfs needs root"
    else:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True, text=True
        )
        if done.returncode != 0:
            reason = f"cannot mount a tmpfs: {done.stderr.strip()}"
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the full-disk tests: {reason}")
        pytest.skip(reason)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(mnt: Path, leave: int) -> Path:
    """Fill the filesystem, then give back ``leave`` bytes; the filler's path."""
    filler = mnt / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            os.write(fd, b"\xa5" * 65536)
    except OSError as err:
        assert err.errno == errno.ENOSPC
    finally:
        os.close(fd)
    if leave:
        os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def half_written(work: Path) -> list[Path]:
    return [p for p in work.rglob("*") if p.name.endswith(".partial")]


@pytest.fixture
def zarr_reference(tmp_path, archive):
    """The archive, and the Zarr product (and report) of an uninterrupted run on a roomy disk."""
    archive(n_files=4, nlat=30, nlon=60)
    group = make_group(
        tmp_path, tmp_path / "ref-work", tmp_path / "archive", "ref.yaml", product="{kind: zarr}"
    )
    assert all(o.status == "done" for o in api.run(group, ["init", "scan", "compute", "validate"]))
    row = api.status(group)[0]
    return tmp_path / "archive", tree(Path(row["product"]["path"]))


def test_a_full_disk_during_compute_fails_clearly_and_resumes(tmp_path, small_fs, zarr_reference):
    """The product does not fit: compute fails with ``disk-full`` naming the place, state stays
    whole and says so, nothing half-written is left but Zarr's resumable ``.inprogress``
    directory, and after space is freed the rerun gives the uninterrupted run's bytes."""
    archive, expected = zarr_reference
    group = make_group(tmp_path, small_fs / "work", archive, product="{kind: zarr}")
    assert all(o.status == "done" for o in api.run(group, ["init", "scan"]))
    filler = fill(small_fs, leave=160 * 1024)
    out = api.run(group, ["compute"])[0]
    assert out.status == "failed" and out.error_kind == "disk-full", out.message
    assert "no space left on device" in out.message and str(small_fs) in out.message
    state = json.loads((group.work_dir / "projects" / "p" / "state.json").read_text())
    assert state["phases"]["compute"]["status"] == "failed"
    assert state["phases"]["compute"]["error"]["kind"] == "disk-full"
    assert state["current_products"] == [] and state["products"] == []
    row = api.status(group)[0]
    assert (row["state"], row["phase"], row["error_kind"]) == ("failed", "compute", "disk-full")
    assert not half_written(group.work_dir)
    products = group.work_dir / "projects" / "p" / "products" / "zarr"
    assert not [p for p in products.iterdir() if not p.name.endswith(".inprogress")]

    filler.unlink()
    outs = api.run(group, ["compute", "validate"])
    assert [o.status for o in outs] == ["done", "done"], [o.message for o in outs]
    assert tree(Path(api.status(group)[0]["product"]["path"])) == expected
    assert api.report(group, "p")["verdict"] == "pass"
    assert not half_written(group.work_dir)


def test_a_disk_too_full_to_record_anything_leaves_state_whole(tmp_path, small_fs, zarr_reference):
    """Not even state can be written: the run does not crash, the outcome names ``state.json``
    and the filesystem, ``state.json`` keeps its last version byte for byte, and a rerun after
    space is freed completes."""
    archive, expected = zarr_reference
    group = make_group(tmp_path, small_fs / "work", archive, product="{kind: zarr}")
    assert all(o.status == "done" for o in api.run(group, ["init", "scan"]))
    state_file = group.work_dir / "projects" / "p" / "state.json"
    before = state_file.read_bytes()
    filler = fill(small_fs, leave=0)
    out = api.run(group, ["compute", "validate"])
    assert len(out) == 1 and out[0].status == "failed" and out[0].error_kind == "disk-full", out
    assert "no space left on device" in out[0].message and str(small_fs) in out[0].message
    assert state_file.read_bytes() == before
    row = api.status(group)[0]
    assert row["state"] == "pending" and row["phase"] == "compute"  # still as before the attempt
    assert not half_written(group.work_dir)

    filler.unlink()
    outs = api.run(group, ["compute", "validate"])
    assert [o.status for o in outs] == ["done", "done"], [o.message for o in outs]
    assert tree(Path(api.status(group)[0]["product"]["path"])) == expected


def test_a_full_disk_while_saving_a_report_fails_validate_cleanly(tmp_path, small_fs, archive, monkeypatch):
    """An atomic write that hits ENOSPC removes its temporary file and names its target."""
    from padocc_like import _io
    from padocc_like.errors import DiskFullError

    target = small_fs / "dir" / "report.json"
    fill(small_fs, leave=0)
    with pytest.raises(DiskFullError) as err:
        _io.atomic_write_json(target, {"x": "y" * 100_000})
    assert str(target) in err.value.message and err.value.errno == errno.ENOSPC
    assert isinstance(err.value, OSError)  # handlers of write errors still catch it
    assert not half_written(small_fs)


# --- an S3 server restarting mid-run ---------------------------------------------------------
@pytest.mark.s3
@pytest.mark.parametrize("down_s", [0.0, 1.0])
def test_s3_server_restarting_during_upload(tmp_path, archive, write_group, monkeypatch, down_s):
    """The server goes away as compute uploads and comes back a moment later: compute either
    succeeds with a complete, verified upload, or fails with a clear storage error and records no
    product; never a partial product marked done. A rerun then completes."""
    from s3server import SeaweedServer

    from padocc_like.publish import products

    reason = SeaweedServer.available()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the s3 tests: {reason}")
        pytest.skip(reason)
    server = SeaweedServer(tmp_path / "own-s3", buckets=("data",)).start()
    restarted = threading.Event()
    try:
        files = archive(n_files=3)
        client = server.client()
        for f in files:
            client.upload_file(str(f), "data", f"archive/{f.name}")
        env = {"PADOCC_TEST_S3_KEY": server.key, "PADOCC_TEST_S3_SECRET": server.secret}
        creds = "{source: env, access_key_env: PADOCC_TEST_S3_KEY, secret_key_env: PADOCC_TEST_S3_SECRET}"
        path = write_group(
            f"""
            group: g7
            work_dir: work
            stores:
              archive: {{protocol: s3, location: data/archive, endpoint_url: "{server.endpoint_url}", credentials: {creds}}}
              products: {{protocol: s3, location: data/products, endpoint_url: "{server.endpoint_url}", credentials: {creds}}}
            products_store: products
            projects:
              - id: p1
                sources: {{store: archive, glob: "*.nc"}}
                concat_dims: [time]
                product: {{kind: [kerchunk, zarr]}}
            """
        )
        group = api.open_group(path)
        assert all(o.status == "done" for o in api.run(group, ["init", "scan"], env=env))
        real_upload = products.upload

        restart_errors: list[BaseException] = []

        def restart_in_background() -> None:
            """Start the server again (a loaded machine may need a second try); never raise
            in the thread: the test reports what went wrong."""
            time.sleep(down_s)
            for _ in range(3):
                try:
                    server.start(timeout=60)
                    restarted.set()
                    return
                except Exception as err:
                    restart_errors.append(err)
                    server.stop()

        def stop_then_upload(*args, **kwargs):
            if not restarted.is_set() and server.running():
                server.stop()
                threading.Thread(target=restart_in_background, daemon=True).start()
            return real_upload(*args, **kwargs)

        monkeypatch.setattr(products, "upload", stop_then_upload)
        t0 = time.monotonic()
        out = api.run(group, ["compute"], env=env)[0]
        elapsed = time.monotonic() - t0
        assert elapsed < 120
        assert restarted.wait(200), f"the server did not come back: {restart_errors}"
        state = json.loads((group.work_dir / "projects" / "p1" / "state.json").read_text())
        if out.status == "failed":
            assert out.error_kind in ("storage-unavailable", "storage"), out.message
            assert "s3://" in out.message and "did not answer" in out.message
            assert elapsed > 0.5  # a refused connection fails in milliseconds: it was retried
            assert state["current_products"] == [] and api.status(group)[0]["product"] is None
            out = api.run(group, ["compute"], env=env)[0]
            state = json.loads((group.work_dir / "projects" / "p1" / "state.json").read_text())
        assert out.status == "done", out.message
        for record in state["products"]:
            if record["revision"] not in [c["revision"] for c in state["current_products"]]:
                continue
            upload = record["upload"]
            prefix = upload["url"].removeprefix("s3://data/")
            listed = client.list_objects_v2(Bucket="data", Prefix=prefix)["Contents"]
            assert len(listed) == upload["objects"] and sum(o["Size"] for o in listed) == upload["bytes"]
        outs = api.run(group, ["validate"], env=env)
        assert outs[0].status == "done", outs[0].message
    finally:
        restarted.wait(200)
        server.stop()
