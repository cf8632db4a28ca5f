"""``status`` at a glance (counts, what needs attention grouped by phase and reason, stale
products) and ``status -p ID`` in detail (phases and times, revisions with their validation,
history), in text and JSON."""

from __future__ import annotations

import json
import os

from padocc_like.cli import main


def _group(tmp_path, write_group):
    return write_group(
        f"group: g\nwork_dir: {tmp_path}/w\nprofile: serial\npipeline: kerchunk-no-catalog\n"
        "projects:\n"
        "  - {id: good, sources: {glob: archive/*.nc}}\n"
        "  - {id: other, sources: {glob: archive/*.nc}}\n"
        "  - {id: empty-1, sources: {glob: nothing/*.nc}}\n"
        "  - {id: empty-2, sources: {glob: nothing/*.nc}}\n"
    )


def test_glance_and_detail(tmp_path, archive, write_group, capsys):
    files = archive(n_files=3)
    path = str(_group(tmp_path, write_group))
    assert main(["run", path, "-q"]) == 1
    capsys.readouterr()
    # a source rewritten after compute makes both products stale
    os.utime(files[1], ns=(1, 1))

    assert main(["status", path]) == 0
    out = capsys.readouterr().out
    assert "group g: 4 project(s)" in out
    assert "      2  init      failed" in out and "      2  validate  stale" in out
    attention = out[out.index("needing attention") :]
    assert "init/no-sources: 2 (empty-1, empty-2)" in attention
    assert "validate/stale: 2 (good, other)" in attention
    assert "e.g. sources changed since the product was computed" in attention and "was modified" in attention

    assert main(["status", path, "-p", "good"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("project good: stale at validate")
    for phase in ("init", "scan", "compute", "validate"):
        assert f"\n{phase:<9} done     " in out
    assert "kerchunk r1 json valid" in out and "validation PASS (full):" in out
    assert "values compared in 3 files" in out
    assert "stale: the sources changed" in out and files[1].name in out
    assert "history:" in out and "validate  done" in out

    assert main(["status", path, "-p", "empty-1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("project empty-1: failed at init")
    assert "[no-sources]" in out and "no-sources:" in out

    assert main(["status", path, "-p", "good", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)["project"]
    assert d["state"] == "stale" and d["phases"]["validate"]["status"] == "done"
    assert d["phases"]["compute"]["duration_s"] > 0 and d["phases"]["compute"]["log"].startswith(
        "logs/compute-"
    )
    (rev,) = d["revisions"]
    assert rev["validation"]["verdict"] == "pass" and rev["validation"]["values_compared"] > 0
    assert [e["event"] for e in d["history"]] == ["started", "done"] * 4
    assert d["jobs_detail"] == {}

    # -p with another filter lists rows, as before
    assert main(["status", path, "-p", "good", "-s", "stale", "--json"]) == 0
    assert [r["project"] for r in json.loads(capsys.readouterr().out)["projects"]] == ["good"]
