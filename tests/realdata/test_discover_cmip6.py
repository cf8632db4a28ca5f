"""A group made from a real CMIP6 DRS tree: one project per dataset directory, facets in STAC."""

from __future__ import annotations

import json

import pytest

from padocc_like import api

pytestmark = pytest.mark.realdata


def test_cmip6_drs_tree_becomes_projects_with_facets(realdata, tmp_path, write_group):
    root = realdata / "extras" / "intake-esm-cmip6-drs" / "CMIP6"
    n_files = len(list(root.rglob("*.nc")))
    path = write_group(f"""
group: cmip6-drs
work_dir: {tmp_path / "work"}
profile: local
discover:
  - root: {root}
    pattern: "*/*/*/*/*/*/*/*/*/*"
    files: "*.nc"
    id: "{{2}}.{{3}}.{{4}}.{{5}}.{{6}}.{{7}}"
    properties:
      cmip6:activity_id: "{{0}}"
      cmip6:institution_id: "{{1}}"
      cmip6:source_id: "{{2}}"
      cmip6:experiment_id: "{{3}}"
      cmip6:member_id: "{{4}}"
      cmip6:table_id: "{{5}}"
      cmip6:variable_id: "{{6}}"
      cmip6:grid_label: "{{7}}"
      cmip6:version: "{{8}}"
""")
    g = api.open_group(path)
    assert len(g.projects) == n_files  # each DRS leaf holds one file here
    outs = api.run(g, ["init", "scan", "compute", "validate", "catalog"], workers=2)
    failed = [o for o in outs if o.status == "failed"]
    assert not failed, failed[:3]
    rows = api.status(g)
    assert {r["state"] for r in rows} == {"done"}
    item = json.loads(
        (g.work_dir / "projects/MIROC6.amip.r7i1p1f1.Amon.prsn.gn/catalog/item.json").read_text()
    )
    props = item["properties"]
    assert props["cmip6:source_id"] == "MIROC6" and props["cmip6:experiment_id"] == "amip"
    assert props["cmip6:variable_id"] == "prsn" and props["variables"] == ["prsn"]
    assert item["bbox"][0] >= -180 and item["bbox"][2] <= 180
    collection = json.loads((g.work_dir / "catalog/collection.json").read_text())
    assert sum(1 for link in collection["links"] if link["rel"] == "item") == n_files
