"""Every example in pipelines/ and configs/ runs end to end on a small archive."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from padocc_like import api

REPO = Path(__file__).resolve().parents[2]
PIPELINES = sorted((REPO / "pipelines").glob("*.yaml"))
PROFILES = sorted((REPO / "configs").glob("*.yaml"))


@pytest.mark.parametrize("pipeline", PIPELINES, ids=lambda p: p.stem)
def test_pipeline_example_runs(pipeline, tmp_path, archive, write_group):
    archive(n_files=3)
    path = write_group(f"""
group: ex
work_dir: {tmp_path / "work"}
pipeline: {pipeline}
profile: serial
projects:
  - id: p
    sources: {{glob: archive/*.nc}}
""")
    g = api.open_group(path)
    spec = yaml.safe_load(pipeline.read_text())
    outs = api.run(g, spec["phases"])
    assert [o.phase for o in outs] == spec["phases"]
    assert all(o.status == "done" for o in outs), outs
    if "validate" in spec["phases"]:
        rep = api.report(g, "p")
        assert rep["verdict"] == "pass"
        assert rep["mode"] == spec.get("validation", {}).get("mode", "full")
    row = api.status(g)[0]
    assert (row["state"], row["phase"]) == ("done", spec["phases"][-1])  # nothing left to run
    catalog = (g.work_dir / "projects/p/catalog/item.json").exists()
    assert catalog == ("catalog" in spec["phases"])
    layout = spec.get("product", {}).get("layout", "auto")
    assert api.status(g)[0]["product"]["layout"] == ("json" if layout == "auto" else layout)


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.stem)
def test_profile_example_runs(profile, tmp_path, archive, write_group):
    archive(n_files=2)
    path = write_group(f"""
group: ex
work_dir: {tmp_path / "work"}
profile: {profile.stem}
projects:
  - id: p
    sources: {{glob: archive/*.nc}}
""")
    g = api.open_group(path)
    assert g.profile.name == profile.stem
    outs = api.run(g, ["init", "scan", "compute", "validate"])
    assert all(o.status == "done" for o in outs), outs
