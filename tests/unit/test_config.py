"""Configuration: typed models, unknown keys named with their file, precedence, discovery."""

from __future__ import annotations

from pathlib import Path

import pytest

from padocc_like.config.load import expand_sources, load_group, load_pipeline, load_profile
from padocc_like.config.models import Sources
from padocc_like.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_unknown_key_is_named_with_the_file(write_group):
    path = write_group("""
group: g
work_dir: w
projects:
  - id: p
    sources: {glob: "*.nc"}
    concat_dim: [time]
""")
    with pytest.raises(ConfigError) as err:
        load_group(path)
    assert str(path) in err.value.message
    assert "unknown key 'concat_dim'" in err.value.message and "projects[0]" in err.value.message


def test_unknown_nested_key_and_bad_values(write_group):
    path = write_group("""
group: g
work_dir: w
projects:
  - id: "bad id!"
    sources: {glob: "*.nc", files: [a.nc]}
    product: {kind: kerchunk, layuot: json}
""")
    with pytest.raises(ConfigError) as err:
        load_group(path)
    msg = err.value.message
    assert "unknown key 'layuot' in projects[0].product" in msg
    assert "projects[0].id" in msg and "exactly one of 'glob', 'files' or 'list_file'" in msg


def test_missing_required_key(write_group):
    with pytest.raises(ConfigError, match="missing required key 'work_dir'"):
        load_group(write_group("group: g\nprojects: [{id: p, sources: {glob: x}}]\n"))


def test_not_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("group: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_group(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_group(tmp_path / "nope.yaml")


def test_duplicate_project_ids(write_group):
    with pytest.raises(ConfigError, match="appears twice"):
        load_group(
            write_group("""
group: g
work_dir: w
projects:
  - {id: p, sources: {glob: a}}
  - {id: p, sources: {glob: b}}
""")
        )


def test_models_are_frozen(write_group):
    g = load_group(write_group("group: g\nwork_dir: w\nprojects: [{id: p, sources: {glob: x}}]\n"))
    with pytest.raises(ValueError):
        g.config.group = "other"  # type: ignore[misc]


def test_precedence_pipeline_defaults_project(write_group):
    g = load_group(
        write_group("""
group: g
work_dir: w
pipeline: kerchunk-sampled
defaults:
  product: {parquet_threshold_mb: 5}
  concat_dims: [time]
projects:
  - id: a
    sources: {glob: x}
  - id: b
    sources: {glob: x}
    product: {layout: json}
    validation: {mode: full}
""")
    )
    a, b = g.projects["a"], g.projects["b"]
    assert a.product.layout == "parquet" and a.product.parquet_threshold_mb == 5
    assert a.validation.mode == "sampled" and a.concat_dims == ["time"]
    assert b.product.layout == "json" and b.product.parquet_threshold_mb == 5
    assert b.validation.mode == "full" and b.validation.sample_fraction == 0.1


def test_unknown_pipeline_lists_known(write_group):
    with pytest.raises(ConfigError, match=r"no pipeline named 'nope'.*kerchunk"):
        load_group(
            write_group("group: g\nwork_dir: w\npipeline: nope\nprojects: [{id: p, sources: {glob: x}}]\n")
        )


@pytest.mark.parametrize("path", sorted((REPO / "pipelines").glob("*.yaml")), ids=lambda p: p.name)
def test_every_pipeline_example_loads(path):
    assert load_pipeline(str(path), REPO).name == path.stem


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_profile_example_loads(path):
    assert load_profile(str(path), REPO).name == path.stem


def test_discover_makes_one_project_per_directory(tmp_path, write_group):
    for model, run in [("A", "r1"), ("A", "r2"), ("B", "r1")]:
        d = tmp_path / "archive" / model / run
        d.mkdir(parents=True)
        (d / "x_2000.nc").write_bytes(b"")
    (tmp_path / "archive" / "C" / "empty").mkdir(parents=True)
    g = load_group(
        write_group("""
group: g
work_dir: w
discover:
  - root: archive
    pattern: "*/*"
    id: "{0}-{1}"
    options: {concat_dims: [time]}
""")
    )
    assert sorted(g.projects) == ["A-r1", "A-r2", "B-r1"]
    assert g.projects["A-r1"].concat_dims == ["time"]
    assert expand_sources(g.projects["B-r1"].sources, g.base_dir) == [
        str(tmp_path / "archive/B/r1/x_2000.nc")
    ]


def test_sources_forms(tmp_path):
    (tmp_path / "a.nc").write_bytes(b"")
    (tmp_path / "b.nc").write_bytes(b"")
    (tmp_path / "list.txt").write_text("# files\nb.nc\na.nc\n\n")
    assert expand_sources(Sources(glob="*.nc"), tmp_path) == [str(tmp_path / "a.nc"), str(tmp_path / "b.nc")]
    assert expand_sources(Sources(files=["b.nc"]), tmp_path) == [str(tmp_path / "b.nc")]
    assert expand_sources(Sources(list_file="list.txt"), tmp_path) == [
        str(tmp_path / "b.nc"),
        str(tmp_path / "a.nc"),
    ]
    assert expand_sources(Sources(files=[f"file://{tmp_path}/a.nc"]), tmp_path) == [str(tmp_path / "a.nc")]


def _product_group(write_group, kind: str) -> Path:
    return write_group(f"""
group: g
work_dir: w
projects:
  - id: p
    sources: {{glob: x}}
    product: {{kind: {kind}}}
""")


def test_product_kind_single_or_list(write_group):
    single = load_group(_product_group(write_group, "cfa")).projects["p"].product
    assert single.kind == "cfa" and single.kinds == ("cfa",)
    default = load_group(_product_group(write_group, "kerchunk")).projects["p"].product
    assert default.kinds == ("kerchunk",)
    both = load_group(_product_group(write_group, "[kerchunk, cfa]")).projects["p"].product
    assert both.kinds == ("kerchunk", "cfa")
    assert load_group(_product_group(write_group, "[cfa]")).projects["p"].product.kinds == ("cfa",)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("[kerchunk, cfa, kerchunk]", "product kind 'kerchunk' is listed twice"),
        ("[]", "the list of product kinds is empty"),
        ("[kerchunk, netcdf]", "projects[0].product.kind"),
        ("netcdf", "projects[0].product.kind"),
    ],
)
def test_product_kind_list_is_checked(write_group, kind: str, message: str):
    with pytest.raises(ConfigError) as err:
        load_group(_product_group(write_group, kind))
    assert message in err.value.message
