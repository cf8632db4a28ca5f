"""The loopback S3 server of the s3 tests is a real one.

It stores and serves bytes through s3fs, answers ranged reads, checks signatures,
gives anonymous clients the public bucket only, listens on 127.0.0.1 only and
keeps its data over a restart.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.s3

s3fs = pytest.importorskip("s3fs")
botocore_exceptions = pytest.importorskip("botocore.exceptions")


def _fs(**options):
    # s3fs caches instances by their arguments; the tests want fresh ones
    return s3fs.S3FileSystem(skip_instance_cache=True, **options)


def _error_code(call) -> str:
    with pytest.raises(botocore_exceptions.ClientError) as info:
        call()
    return info.value.response["Error"]["Code"]


def test_put_and_get_through_s3fs(s3_server, s3_bucket: str, tmp_path: Path) -> None:
    fs = _fs(**s3_server.storage_options())
    data = os.urandom(3 * 2**20 + 17)
    src = tmp_path / "blob.bin"
    src.write_bytes(data)
    fs.put_file(str(src), f"{s3_bucket}/dir/blob.bin")
    fs.pipe(f"{s3_bucket}/dir/small.txt", b"hello")

    assert fs.cat_file(f"{s3_bucket}/dir/blob.bin") == data
    assert fs.cat_file(f"{s3_bucket}/dir/small.txt") == b"hello"
    assert sorted(fs.ls(f"{s3_bucket}/dir", detail=False)) == [
        f"{s3_bucket}/dir/blob.bin",
        f"{s3_bucket}/dir/small.txt",
    ]
    assert fs.size(f"{s3_bucket}/dir/blob.bin") == len(data)
    fs.get_file(f"{s3_bucket}/dir/blob.bin", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == data


def test_env_alone_configures_s3fs(s3_server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    fs = _fs()
    fs.pipe(f"{s3_bucket}/env.txt", b"from the environment")
    assert (
        s3_server.client().get_object(Bucket=s3_bucket, Key="env.txt")["Body"].read()
        == b"from the environment"
    )


def test_ranged_get_returns_exactly_those_bytes(s3_server, s3_bucket: str) -> None:
    fs = _fs(**s3_server.storage_options())
    data = os.urandom(2**20)
    path = f"{s3_bucket}/ranged.bin"
    fs.pipe(path, data)
    for start, end in [(0, 1), (1000, 2000), (4096, 4096 + 65536), (len(data) - 10, len(data))]:
        assert fs.cat_file(path, start=start, end=end) == data[start:end]
    # a suffix range, and the status code of a ranged GET
    r = s3_server.client().get_object(Bucket=s3_bucket, Key="ranged.bin", Range="bytes=100-199")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert r["Body"].read() == data[100:200]
    r = s3_server.client().get_object(Bucket=s3_bucket, Key="ranged.bin", Range="bytes=-10")
    assert r["Body"].read() == data[-10:]


def test_anonymous_reads_the_public_bucket_only_and_signatures_are_checked(s3_server, s3_bucket: str) -> None:
    admin = s3_server.client()
    public = s3_server.public_bucket
    admin.put_object(Bucket=public, Key="open.txt", Body=b"anyone may read this")
    admin.put_object(Bucket=s3_bucket, Key="secret.txt", Body=b"admin only")

    anon = s3_server.client(anon=True)
    assert anon.get_object(Bucket=public, Key="open.txt")["Body"].read() == b"anyone may read this"
    assert _fs(**s3_server.anon_storage_options()).cat_file(f"{public}/open.txt") == b"anyone may read this"

    assert _error_code(lambda: anon.get_object(Bucket=s3_bucket, Key="secret.txt")) == "AccessDenied"
    assert _error_code(lambda: anon.put_object(Bucket=public, Key="x", Body=b"x")) == "AccessDenied"
    wrong = s3_server.client(secret="not-the-secret")
    assert (
        _error_code(lambda: wrong.get_object(Bucket=s3_bucket, Key="secret.txt")) == "SignatureDoesNotMatch"
    )


def test_listens_on_loopback_only(s3_server) -> None:
    psutil = pytest.importorskip("psutil")
    conns = psutil.Process(s3_server.pid).net_connections(kind="inet")
    listening = [c for c in conns if c.status == psutil.CONN_LISTEN]
    unconnected_udp = [c for c in conns if c.type == socket.SOCK_DGRAM and not c.raddr]
    assert s3_server.port in {c.laddr.port for c in listening}, listening
    outside = [c for c in listening + unconnected_udp if not ipaddress.ip_address(c.laddr.ip).is_loopback]
    assert not outside, f"bound beyond loopback: {outside}"
    # only the ports it was given (no stray metrics or debug ports)
    assert {c.laddr.port for c in listening} <= set(s3_server.ports()), listening
    # no connections to anything but itself (telemetry is off)
    remote = [c for c in conns if c.raddr and not ipaddress.ip_address(c.raddr.ip).is_loopback]
    assert not remote, remote


def test_restart_keeps_the_data(tmp_path: Path) -> None:
    from s3server import SeaweedServer

    reason = SeaweedServer.available()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    server = SeaweedServer(tmp_path / "weed", buckets=("keep",))
    try:
        server.start()
        port, first_pid = server.port, server.pid
        assert server.start() is server and server.pid == first_pid  # idempotent
        server.client().put_object(Bucket="keep", Key="a/b.txt", Body=b"survives")
        t0 = time.monotonic()
        server.restart()
        restart_seconds = time.monotonic() - t0
        assert server.port == port and server.pid != first_pid
        body = server.client().get_object(Bucket="keep", Key="a/b.txt")["Body"].read()
        assert body == b"survives"
        assert _fs(**server.storage_options()).cat_file("keep/a/b.txt") == b"survives"
        assert restart_seconds < 30
    finally:
        server.stop()
    assert not server.running()
    assert not list(Path("/tmp").glob(f"seaweedfs-*-{port}.sock"))
