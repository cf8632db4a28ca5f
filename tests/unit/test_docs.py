"""The documentation cannot drift from the code.

* ``docs/yaml-reference.md`` is exactly what :func:`render_reference` generates;
* every relative link in ``docs/*.md`` and ``README.md`` resolves (files and anchors);
* every config field is described by its docstring or, failing that, by a note;
* every error class and ``ErrorKind`` code is in ``docs/architecture.md``;
* the constants ``docs/spec-state.md`` quotes (lock attempts, history length) match the code;
* every field a real run writes (state, manifest, scan, validation report) is documented.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from padocc_like.config.reference import MODELS, render_reference

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
PAGES = [*sorted(DOCS.glob("*.md")), REPO / "README.md"]

FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(([^)\s]+)[^)]*\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def _prose(text: str) -> str:
    """Markdown without fenced code blocks and inline code (links there are not links)."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links -> their text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {_slug(h) for h in HEADING.findall(FENCE.sub("", path.read_text()))}


def _documented(page: str, keys: set[str]) -> list[str]:
    """Keys that do not appear as inline code (`key`) in a docs page."""
    text = (DOCS / page).read_text()
    return sorted(k for k in keys if f"`{k}`" not in text)


# --- (a) the YAML reference is generated ------------------------------------------------
def test_yaml_reference_is_the_generated_output():
    actual = (DOCS / "yaml-reference.md").read_text()
    assert actual == render_reference(), (
        "docs/yaml-reference.md is stale; regenerate it with "
        "`python -m padocc_like.config.reference > docs/yaml-reference.md`"
    )


def test_every_config_key_has_a_description():
    from padocc_like.config.reference import field_description

    missing = [
        f"{model.__name__}.{name}"
        for model in MODELS
        for name in model.model_fields
        if not field_description(model, name)
    ]
    assert not missing, f"document these fields (docstring in models.py, or FIELD_NOTES): {missing}"


def test_field_notes_are_only_for_fields_without_a_docstring():
    """A docstring (``use_attribute_docstrings``) is the description; a note may not shadow it."""
    from padocc_like.config.reference import FIELD_NOTES, undocumented_fields

    undocumented = set(undocumented_fields())
    assert not set(FIELD_NOTES) - undocumented, "delete these FIELD_NOTES: the field has a docstring"
    assert not undocumented - set(FIELD_NOTES), "these fields have neither a docstring nor a note"


def test_reference_examples_are_valid_group_files():
    from padocc_like.config.load import parse_model
    from padocc_like.config.models import GroupConfig
    from padocc_like.demo import DEMO_GROUP

    text = render_reference()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    assert blocks
    for block in blocks:
        parse_model(GroupConfig, yaml.safe_load(block), "docs/yaml-reference.md example")
    demo_body = DEMO_GROUP.format().split("\n", 1)[1]  # without its comment line
    assert demo_body in text, "the demo example differs from padocc_like.demo.DEMO_GROUP"


# --- (b) relative links resolve ----------------------------------------------------------
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page: Path):
    if not page.exists():
        pytest.skip(f"{page.name} does not exist yet")
    broken = []
    for target in LINK.findall(_prose(page.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
            continue
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.exists():
            broken.append(f"{target}: {dest} does not exist")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor} in {dest.name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


# --- (c) the error table -----------------------------------------------------------------
def test_every_error_kind_and_class_is_in_the_architecture_page():
    from padocc_like import errors

    text = (DOCS / "architecture.md").read_text()
    kinds = [str(k) for k in errors.ErrorKind if f"`{k}`" not in text]
    classes = [name for name in errors.__all__ if f"`{name}`" not in text]
    assert not kinds, f"ErrorKind codes missing from docs/architecture.md: {kinds}"
    assert not classes, f"error classes missing from docs/architecture.md: {classes}"


# --- (c') numbers the state spec quotes from the code -------------------------------------
def test_constants_quoted_by_spec_state_match_the_code():
    from padocc_like.state.store import HISTORY_LIMIT, LOCK_ATTEMPTS

    text = (DOCS / "spec-state.md").read_text()
    assert f"{LOCK_ATTEMPTS} attempts" in text, "spec-state.md §9 misstates LOCK_ATTEMPTS"
    assert f"last {HISTORY_LIMIT} events" in text, "spec-state.md §3.5 misstates HISTORY_LIMIT"


# --- (d) fields written by a real run are documented -------------------------------------
GROUP = """
group: docs
work_dir: work
profile: serial
projects:
  - id: good
    sources: {glob: archive/*.nc}
    concat_dims: [time]
  - id: bad
    sources: {glob: broken/*.nc}
"""


@pytest.fixture
def real_run(tmp_path, archive, write_group) -> Path:
    """Run every phase on a tiny archive (project ``good``) and a broken one (``bad``)."""
    from padocc_like import api

    archive(n_files=2)
    archive(subdir="broken", n_files=1)
    (tmp_path / "broken" / "zz_not_netcdf.nc").write_bytes(b"not a netCDF file")
    group = api.open_group(write_group(GROUP))
    outcomes = api.run(group, ["init", "scan", "compute", "validate", "catalog"])
    status = {(o.project, o.phase): o.status for o in outcomes}
    assert status[("good", "catalog")] == "done", outcomes
    assert status[("bad", "scan")] == "failed", outcomes
    return tmp_path / "work" / "projects"


def _keys(records: list[dict[str, Any]]) -> set[str]:
    return {k for r in records for k in r}


def _running_record(tmp_path: Path) -> dict[str, Any]:
    """The phase record as saved while a phase runs (seen from inside a stage)."""
    from padocc_like.config.models import ResolvedProject
    from padocc_like.stages.base import RunContext, StageOutput, run_phase
    from padocc_like.types import Phase

    seen: dict[str, Any] = {}

    def stage(project, paths, state, ctx):
        seen.update(json.loads(paths.state.read_text())["phases"]["init"])
        return StageOutput(message="ok", fingerprint="x")

    project = ResolvedProject.model_validate(
        {"id": "p", "group": "g", "sources": {"glob": "*.nc"}, "base_dir": str(tmp_path)}
    )
    ctx = RunContext(work_dir=tmp_path / "running", group_id="g")
    run_phase(Phase.INIT, project, ctx, stage, lambda *a: None)
    assert seen["status"] == "running"
    return seen


def test_state_manifest_and_scan_fields_are_in_spec_state(real_run, tmp_path):
    good = json.loads((real_run / "good" / "state.json").read_text())
    bad = json.loads((real_run / "bad" / "state.json").read_text())
    phases = [*good["phases"].values(), *bad["phases"].values(), _running_record(tmp_path)]
    failed = [p for p in phases if p["status"] == "failed"]
    assert failed
    manifest = json.loads((real_run / "good" / "manifest.json").read_text())
    scan = json.loads((real_run / "good" / "scan.json").read_text())
    fields = {
        "state": set(good) | set(bad),
        "phase record": _keys(phases),
        "phase details": _keys([p.get("details", {}) for p in phases]),
        "phase error": _keys([p["error"] for p in failed]),
        "product": _keys(good["products"]),
        "history": _keys(good["history"] + bad["history"]),
        "manifest": set(manifest),
        "manifest files": _keys(manifest["files"]),
        "scan": set(scan),
        "scan estimates": set(scan["estimates"]),
        "scan variables": _keys(list(scan["variables"].values())),
        "scan fragments": _keys(scan["fragments"]),
    }
    missing = {what: _documented("spec-state.md", keys) for what, keys in fields.items()}
    missing = {what: keys for what, keys in missing.items() if keys}
    assert not missing, f"fields written but not documented in docs/spec-state.md: {missing}"
    values = {p["status"] for p in phases} | {p["status"] for p in good["products"]}
    assert not _documented("spec-state.md", values)


def test_report_fields_are_in_spec_report(real_run):
    state = json.loads((real_run / "good" / "state.json").read_text())
    report_path = real_run / "good" / state["products"][-1]["validation_report"]
    report = json.loads(report_path.read_text())
    from padocc_like.validation.report import Severity

    fields = {
        "report": set(report),
        "product": set(report["product"]),
        "summary": set(report["summary"]),
        "finding": _keys(report["findings"]),
        "values": {report["verdict"], report["mode"], *(str(s) for s in Severity)},
        "checks": {f["check"] for f in report["findings"]},
    }
    missing = {what: _documented("spec-report.md", keys) for what, keys in fields.items()}
    missing = {what: keys for what, keys in missing.items() if keys}
    assert not missing, f"fields written but not documented in docs/spec-report.md: {missing}"
