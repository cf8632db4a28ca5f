"""The group's HTML report, rendered in headless Chromium: what an operator sees."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from padocc_like import api, html_report
from padocc_like.cli import main
from padocc_like.state.store import project_paths

ALL = ["init", "scan", "compute", "validate", "catalog"]


def group_yaml(tmp_path: Path) -> str:
    return f"""
group: g-html
work_dir: {tmp_path / "work"}
pipeline: kerchunk
profile: serial
projects:
  - id: good
    sources: {{glob: archive/*.nc}}
    concat_dims: [time]
  - id: broken
    sources: {{glob: "missing/<none>*.nc"}}
"""


def dump_dom(chromium: str, page: Path, tmp_path: Path) -> str:
    """The page's DOM after load, as headless Chromium built it (scripts run)."""
    out = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    return out.stdout


@pytest.fixture
def group(tmp_path, archive, write_group):
    archive(n_files=4)
    g = api.open_group(write_group(group_yaml(tmp_path)))
    api.run(g, ALL)
    return g


def test_page_in_chromium_shows_counts_failures_validation_and_plots(group, tmp_path, chromium):
    pytest.importorskip("matplotlib")
    rows = {r["project"]: r for r in api.status(group)}
    assert rows["good"]["state"] == "done" and rows["broken"]["state"] == "failed"
    rep = api.report(group, "good")
    assert rep["verdict"] == "pass"

    page = api.html_report(group)
    assert page == group.work_dir / "report" / "index.html"
    dom = dump_dom(chromium, page, tmp_path)

    # the inline script ran and every image decoded (map + coverage of the good project)
    body = re.search(r"<body[^>]*>", dom).group(0)
    assert 'data-images-loaded="all"' in body, body
    assert 'data-image-count="2"' in body, body
    assert len(re.findall(r'<img [^>]*src="data:image/png;base64,', dom)) == 2
    # counts by state
    counts = re.search(r'<p id="counts">(.*?)</p>', dom, re.S).group(1)
    assert re.search(r'data-state="done">.*?<b>1</b>', counts) and re.search(
        r'data-state="failed">.*?<b>1</b>', counts
    )
    assert "(of 2 project(s))" in counts
    # the failing project's reason, escaped (its glob has '<none>' in it), grouped by kind
    failures = re.search(r'<table class="failures">(.*?)</table>', dom, re.S).group(1)
    assert "no-sources" in failures and "broken" in failures
    assert "matched no files" in failures and "&lt;none&gt;" in failures
    assert "<none>" not in dom
    # the good project's verdict and the values it compared
    projects = re.search(r'<table class="projects">(.*?)</table>', dom, re.S).group(1)
    good_row = next(r for r in projects.split("<tr>") if ">good<" in r)
    assert 'class="pass">pass<' in good_row
    assert f"{rep['summary']['values_compared']:,}" in good_row
    assert "4 file(s) along time: 0 gap(s), 0 overlap(s)" in dom
    # phase timings of the good project are shown
    assert all(f"<td>{phase}</td>" in dom for phase in ALL)
    # nothing is fetched from anywhere: no http(s) URLs in src or href
    assert not re.findall(r'(?:src|href)="(?:https?:)?//', dom)
    assert "Content-Security-Policy" in page.read_text()


def test_cli_writes_the_page_and_prints_its_path(group, tmp_path, capsys):
    out = tmp_path / "site" / "report.html"
    assert main(["html-report", str(group.path), "-o", str(out), "-p", "broken"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    text = out.read_text()
    assert "broken" in text and ">good<" not in text and "<img" not in text


def test_without_matplotlib_the_page_renders_with_notes(group, monkeypatch):
    monkeypatch.setattr(html_report, "_have_matplotlib", lambda: False)
    text = html_report.render(html_report.gather(group))
    assert "<img" not in text
    assert "plots need matplotlib" in text
    assert 'class="pass">pass<' in text


def test_coverage_marks_gaps_and_overlaps(tmp_path, archive, write_group):
    paths = archive(n_files=5)
    paths[2].unlink()  # March is missing: a gap
    shutil.copy(paths[0], paths[0].with_name(paths[0].stem + "b.nc"))  # January twice: an overlap
    g = api.open_group(write_group(group_yaml(tmp_path)))
    api.run(g, ["init"], projects=[g.projects["good"]])
    cov = html_report.coverage(project_paths(g.work_dir, "good"))
    assert [name for name, _, _ in cov.files] == [
        "tas_day_synthetic_200001.nc",
        "tas_day_synthetic_200001b.nc",
        "tas_day_synthetic_200002.nc",
        "tas_day_synthetic_200004.nc",
        "tas_day_synthetic_200005.nc",
    ]
    assert cov.dim == "time" and cov.units.startswith("days since")
    assert cov.overlaps == [(0.5, 30.5)]  # 360_day calendar: 30 days a month, steps at noon
    assert cov.gaps == [(60.5, 90.5)]
    pytest.importorskip("matplotlib")
    assert html_report._coverage_png(cov).startswith(b"\x89PNG")


def test_every_value_from_state_is_escaped():
    evil = "<script>alert(1)</script>"
    row = {
        "project": evil,
        "phase": "scan",
        "state": "failed",
        "reason": f"cannot read {evil} & <b>bold</b>",
        "error_kind": "<kind>",
        "product": None,
        "products": {},
        "jobs": {"scan": {"array_task": "<7_1>", "state": "FAILED"}},
    }
    view = html_report.ProjectView(
        row=row,
        phases=[{"phase": "scan", "status": "failed", "error": {"kind": "<kind>", "message": evil}}],
        plots=[html_report.Plot("map", note=f"no {evil}")],
    )
    text = html_report.render(
        html_report.GroupView(group_id="<g>", work_dir="/w/<x>", created="now", projects=[view])
    )
    assert "<script>alert" not in text and "<b>bold" not in text and "<kind>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "&lt;7_1&gt;" in text and "&lt;g&gt;" in text and "/w/&lt;x&gt;" in text
    # the only script is the page's own
    assert text.count("<script>") == 1
