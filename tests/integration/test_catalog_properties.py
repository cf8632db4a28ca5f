"""Item properties from the product's global attributes (``catalog.attribute_properties``)."""

from __future__ import annotations

import json

from padocc_like import api

PHASES = ["init", "scan", "compute", "validate", "catalog"]


def group_with(write_group, mapping: str):
    return api.open_group(
        write_group(
            f"""
            group: g
            work_dir: work
            pipeline:
              name: p
              catalog: {{attribute_properties: {mapping}}}
            projects:
              - id: p1
                sources: {{glob: archive/*.nc}}
                concat_dims: [time]
            """
        )
    )


def test_properties_come_from_global_attributes(archive, write_group):
    archive(n_files=2)
    group = group_with(write_group, "{demo:institution: institution, demo:title: title}")
    outcomes = api.run(group, PHASES)
    assert all(o.status == "done" for o in outcomes), [o.message for o in outcomes]
    item = json.loads((group.work_dir / "projects" / "p1" / "catalog" / "item.json").read_text())
    assert item["properties"]["demo:institution"] == "padocc-like demo"
    assert item["properties"]["demo:title"] == "Synthetic daily near-surface climate"


def test_a_missing_attribute_fails_the_catalog_phase_naming_it(archive, write_group):
    archive(n_files=2)
    group = group_with(write_group, "{cmip6:source_id: source_id}")
    outcome = api.run(group, PHASES)[-1]
    assert (outcome.phase, outcome.status, outcome.error_kind) == ("catalog", "failed", "catalog")
    assert "'source_id'" in outcome.message and "cmip6:source_id" in outcome.message
