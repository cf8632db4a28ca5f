"""Sources in a read-only HTTP(S) store: listed by the configuration, scanned with ranged
GETs, validated value for value (over a loopback Range-capable server)."""

from __future__ import annotations

import json

import pytest

from padocc_like import api


@pytest.fixture
def served(tmp_path, archive):
    from httpserver import RangeHTTPServer

    files = archive("web/archive", n_files=3)
    with RangeHTTPServer(tmp_path / "web") as server:
        yield server, files


def test_sources_over_http(served, write_group):
    server, files = served
    names = ", ".join(f.name for f in files)
    group = api.open_group(
        write_group(
            f"""
            group: g
            work_dir: work
            stores:
              web: {{protocol: http, location: "{server.url}/archive"}}
            projects:
              - id: p
                sources: {{store: web, files: [{names}]}}
                concat_dims: [time]
                product: {{kind: [kerchunk, cfa]}}
            """
        )
    )
    outcomes = api.run(group, ["init", "scan", "compute", "validate"])
    assert all(o.status == "done" for o in outcomes), [o.message for o in outcomes]
    manifest = json.loads((group.work_dir / "projects" / "p" / "manifest.json").read_text())
    assert [e["url"] for e in manifest["files"]] == [f"{server.url}/archive/{f.name}" for f in files]
    assert all(e["size"] == f.stat().st_size for e, f in zip(manifest["files"], files, strict=True))
    scan = json.loads((group.work_dir / "projects" / "p" / "scan.json").read_text())
    assert scan["remote_io"]["files"] == 3
    assert server.seen("GET", "/archive/", ranged=True), "scanning must read byte ranges"


def test_an_http_store_cannot_be_written_or_globbed(served, write_group):
    from padocc_like.errors import ConfigError

    server, _ = served
    body = f"""
        group: g
        work_dir: work
        stores:
          web: {{protocol: http, location: "{server.url}/archive"}}
        {{extra}}
        projects:
          - id: p
            sources: {{store: web, glob: "*.nc"}}
        """
    with pytest.raises(ConfigError, match="products_store store 'web' is read only"):
        api.open_group(write_group(body.replace("{extra}", "products_store: web")))
    group = api.open_group(write_group(body.replace("{extra}", "")))
    out = api.run(group, ["init"])[0]
    assert out.status == "failed" and "need 'files' or 'list_file'" in out.message
