"""tests/httpserver.py: the loopback Range-capable HTTP server the consumer tests read through."""

from __future__ import annotations

import pytest
import requests
from httpserver import RangeHTTPServer, parse_range

DATA = bytes(range(256)) * 4  # 1024 bytes


@pytest.fixture
def server(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f.bin").write_bytes(DATA)
    (tmp_path / "empty").write_bytes(b"")
    with RangeHTTPServer(tmp_path) as s:
        yield s


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-9", (0, 9)),
        ("bytes=1000-", (1000, 1023)),
        ("bytes=1000-5000", (1000, 1023)),
        ("bytes=-24", (1000, 1023)),
        ("bytes=-5000", (0, 1023)),
        ("bytes=1024-", "unsatisfiable"),
        ("bytes=-0", "unsatisfiable"),
        ("bytes=5-1", None),
        ("bytes=0-1,5-6", None),
        ("items=0-1", None),
        ("bytes=-", None),
    ],
)
def test_parse_range(header, expected):
    assert parse_range(header, 1024) == expected


def test_get_head_ranges_and_errors(server):
    url = f"{server.url}/d/f.bin"
    whole = requests.get(url, timeout=10)
    assert whole.status_code == 200 and whole.content == DATA
    assert whole.headers["Accept-Ranges"] == "bytes" and whole.headers["Content-Length"] == "1024"

    head = requests.head(url, timeout=10)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["Content-Length"] == "1024" and head.headers["Accept-Ranges"] == "bytes"

    for header, (first, last) in {
        "bytes=10-19": (10, 19),
        "bytes=1000-": (1000, 1023),
        "bytes=-4": (1020, 1023),
    }.items():
        r = requests.get(url, headers={"Range": header}, timeout=10)
        assert r.status_code == 206, header
        assert r.content == DATA[first : last + 1]
        assert r.headers["Content-Range"] == f"bytes {first}-{last}/1024"
        assert r.headers["Content-Length"] == str(last - first + 1)

    bad = requests.get(url, headers={"Range": "bytes=2000-"}, timeout=10)
    assert bad.status_code == 416 and bad.headers["Content-Range"] == "bytes */1024"
    assert requests.get(f"{server.url}/empty", headers={"Range": "bytes=0-"}, timeout=10).status_code == 416
    assert requests.get(f"{server.url}/empty", timeout=10).content == b""

    assert requests.get(f"{server.url}/missing", timeout=10).status_code == 404
    assert requests.head(f"{server.url}/d", timeout=10).status_code == 404  # a directory: no listing
    assert requests.get(f"{server.url}/d/", timeout=10, allow_redirects=False).status_code == 404
    assert requests.get(f"{server.url}/../d/f.bin", timeout=10).status_code in (200, 404)  # never outside

    ranged = server.seen("GET", "/d/f.bin", ranged=True)
    assert [r.range for r in ranged] == ["bytes=10-19", "bytes=1000-", "bytes=-4", "bytes=2000-"]
    assert [r.status for r in ranged] == [206, 206, 206, 416]
    assert server.seen("HEAD", "/d")[0].status == 200


def test_fsspec_reads_ranges(server):
    import fsspec

    fs = fsspec.filesystem("http")
    with fs.open(f"{server.url}/d/f.bin", "rb", block_size=64) as f:
        f.seek(500)
        assert f.read(10) == DATA[500:510]
    assert server.seen("GET", "/d/f.bin", ranged=True)


def test_stop_and_restart(tmp_path):
    (tmp_path / "x").write_bytes(b"abc")
    s = RangeHTTPServer(tmp_path).start()
    first = s.url
    assert requests.get(f"{first}/x", timeout=10).content == b"abc"
    s.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{first}/x", timeout=2)
    s.start()
    assert requests.get(f"{s.url}/x", timeout=10).content == b"abc"
    s.stop()
