"""Generate the YAML configuration reference (``docs/yaml-reference.md``) from the models.

Regenerate the page after changing :mod:`padocc_like.config.models`::

    python -m padocc_like.config.reference > docs/yaml-reference.md

``tests/unit/test_docs.py`` fails when the page and this output differ.

A field's description is its pydantic ``description``: the models set
``use_attribute_docstrings``, so the docstring written under a field in
``models.py`` is that description. :data:`FIELD_NOTES` describes the fields that
have no docstring yet; a note for a field that has one is an error, so the
docstring is the one place to change. :data:`FIELD_EXTRA` appends facts that
the code enforces but no docstring states. This module imports only pydantic
and the standard library, so it stays cheap to import.
"""

from __future__ import annotations

import inspect
import json
import types
from enum import Enum
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from .models import (
    ID_PATTERN,
    AttributeEdits,
    Attributes,
    CatalogOptions,
    Credentials,
    DaskConfig,
    DiscoverConfig,
    GroupConfig,
    PipelineConfig,
    ProductOptions,
    ProfileConfig,
    ProjectConfig,
    ProjectOptions,
    PublishConfig,
    PublishRule,
    ScanOptions,
    SlurmConfig,
    Sources,
    StacApiConfig,
    StacAuth,
    StoreConfig,
    ValidationOptions,
    Variables,
    ZarrOptions,
)

__all__ = ["FIELD_NOTES", "MODELS", "field_description", "main", "render_reference", "undocumented_fields"]

MODELS: tuple[type[BaseModel], ...] = (
    GroupConfig,
    ProjectConfig,
    Sources,
    ProjectOptions,
    Variables,
    Attributes,
    AttributeEdits,
    ProductOptions,
    ZarrOptions,
    ScanOptions,
    ValidationOptions,
    DiscoverConfig,
    PipelineConfig,
    CatalogOptions,
    ProfileConfig,
    StoreConfig,
    Credentials,
    PublishConfig,
    PublishRule,
    StacApiConfig,
    StacAuth,
    SlurmConfig,
    DaskConfig,
)
"""The models documented, in page order."""

WHERE: dict[str, str] = {
    "GroupConfig": "The top level of a group file.",
    "PipelineConfig": ("The top level of a pipeline file (`pipelines/<name>.yaml`)."),
    "ProfileConfig": ("The top level of a profile file (`configs/<name>.yaml`)."),
}
"""Where a model appears when no other model's field names it."""

MODEL_NOTES: dict[str, str] = {
    "Sources": "Exactly one of `glob`, `files` and `list_file` must be given.",
    "ProjectConfig": (
        "A project also takes every key of [ProjectOptions](#projectoptions); a key it sets wins "
        "over the pipeline, the group `defaults` and (for discovered projects) the discover "
        "`options`."
    ),
    "ProjectOptions": (
        "`product`, `scan` and `validation` merge key by key across the layers; `concat_dims`, "
        "`variables`, `attributes` and `catalog_properties` are replaced whole by the last layer "
        "that sets them."
    ),
    "PipelineConfig": "`phases` must be distinct, in pipeline order, and include `init`.",
    "GroupConfig": (
        "Project ids must be unique, including discovered ones. A group needs `projects` or "
        "`discover` (or both)."
    ),
}
"""Rules enforced by model validators, which no field docstring can carry."""

FIELD_NOTES: dict[str, str] = {
    # sources
    "Sources.glob": (
        "Glob pattern, or a list of patterns whose matches are merged (Python `glob`, `**` "
        "recursive). Only regular files count; the result is sorted."
    ),
    "Sources.files": "Explicit list of file paths.",
    "Sources.list_file": (
        "A text file with one path per line; surrounding whitespace is stripped, and blank "
        "lines and lines whose first non-blank character is `#` are skipped. Relative paths in "
        "it are relative to the group file's directory, not to the list file's. A missing list "
        "file makes init fail with `config`."
    ),
    # attribute edits
    "AttributeEdits.set": "Attributes to set on the product (they win over the sources' values).",
    "AttributeEdits.remove": (
        "Attribute names to remove from the product (applied before `set`). A name the "
        "product lacks is ignored."
    ),
    "Attributes.global_": "Edits to the global attributes.",
    "Attributes.variables": (
        "Edits per variable name. A variable the product does not have makes compute fail "
        "(`inconsistent-sources`)."
    ),
    # variables
    "Variables.keep": (
        "Variables to keep; `null` keeps all. Keeping a variable also keeps its dimension "
        "coordinates, the variables its `coordinates`, `bounds`, `grid_mapping` and "
        "`ancillary_variables` attributes name, and the bounds of kept coordinates."
    ),
    "Variables.drop": "Variables to drop (applied after `keep`).",
    # product
    "ProductOptions.kind": (
        "Product kind. `kerchunk`: Kerchunk references (`products/kerchunk/r<N>.json` or "
        "`.parq`). `cfa`: one CF-1.13 aggregation file (`products/cfa/r<N>.nc`, netCDF-4) whose "
        "fragments are the whole source files, so files of uneven length or with differing "
        "chunking and codecs are fine; scan recommends it (`recommended_kind: cfa` in "
        "`scan.json`) when they are all that stops a Kerchunk product. `zarr`: a real Zarr "
        "store copied from the sources (`products/zarr/r<N>.zarr`), rechunked for how it is "
        "read (see `zarr`). Scan estimates Kerchunk references for `kerchunk`, counts fragments "
        "for `cfa` and output chunks (with each variable's chunk shape) for `zarr`. "
        "A list asks for several products of the project at once (`kind: [kerchunk, cfa]`): "
        "its kinds must be distinct and each must have an installed writer (checked when the "
        "file loads); scan combines the files once per combine mode the kinds need and fails "
        "if any listed kind cannot represent them, naming it; compute writes one product per "
        "kind, in list order, each taking the project's next revision number (`r1` "
        "Kerchunk, `r2` CFA); validate checks each; the STAC item has one asset per kind. "
        "The first kind is the project's product in one-product views (`status` `product`, "
        "`report`, the top-level fields of `scan.json`). A single value means a one-item list."
    ),
    "ProductOptions.layout": (
        "Kerchunk layout: `json`, `parquet`, or `auto` (Parquet when the estimated JSON size "
        "exceeds `parquet_threshold_mb`)."
    ),
    # validation
    "ValidationOptions.mode": (
        "`full` compares every value of every variable; `sampled` compares a sample of steps "
        "(see `sample_fraction`); a sample can miss a wrong chunk."
    ),
    # catalog
    "CatalogOptions.enabled": (
        "`true`: the catalog phase writes each project's STAC item, and a run that includes "
        "`catalog` then rebuilds the group's Collection (`<work_dir>/catalog/collection.json`). "
        "`false`: the catalog phase writes nothing, removes an existing `catalog/item.json` "
        "and reports 'catalog disabled by the pipeline'; a run that includes `catalog` "
        "deletes the Collection."
    ),
    "CatalogOptions.collection_id": "STAC Collection id; default: the group id.",
    "CatalogOptions.description": (
        "Collection description; default: the group's `description`, else 'Products of group <id>'."
    ),
    "CatalogOptions.license": "STAC `license` of items and the collection (SPDX id or `other`).",
    "CatalogOptions.keywords": "Collection keywords.",
    "CatalogOptions.extra_properties": (
        "Properties added to every item; a project's `catalog_properties` win over them."
    ),
    # project options
    "ProjectOptions.concat_dims": (
        "Dimensions to concatenate files along; `null` infers them from the files."
    ),
    "ProjectOptions.variables": "Which variables the product holds.",
    "ProjectOptions.attributes": "Attribute edits applied to the product.",
    "ProjectOptions.product": "The product kind and its options.",
    "ProjectOptions.scan": "How much of the project scan inspects.",
    "ProjectOptions.validation": "How validation compares the product with its sources.",
    "ProjectOptions.catalog_properties": (
        "Extra STAC item properties for this project, merged over the pipeline's `catalog.extra_properties`."
    ),
    "ProjectConfig.id": "Project id, unique in the group: the directory name and the STAC item id.",
    "ProjectConfig.sources": "Where the project's files are.",
    "ProjectConfig.description": "Free text; the STAC item's description.",
    # discover
    "DiscoverConfig.root": "Directory to search (relative to the group file's directory).",
    "DiscoverConfig.options": (
        "Options for every project this entry discovers (over the group `defaults`). "
        "Discovered projects have no options of their own, except the `catalog_properties` "
        "made from `properties`: when `properties` is set, they replace the `catalog_properties` "
        "of `options` and of the group `defaults` whole."
    ),
    # pipeline
    "PipelineConfig.name": "Pipeline name.",
    "PipelineConfig.description": "Free text.",
    "PipelineConfig.phases": (
        "The phases projects go through. A project skips a phase not listed (for example `catalog`)."
    ),
    "PipelineConfig.product": "Product defaults for every project.",
    "PipelineConfig.scan": "Scan defaults for every project.",
    "PipelineConfig.validation": "Validation defaults for every project.",
    "PipelineConfig.catalog": "Catalog settings; projects cannot override them (see `catalog_properties`).",
    # profile
    "ProfileConfig.name": "Profile name.",
    "ProfileConfig.description": "Free text.",
    "ProfileConfig.workers": (
        "Processes (the CLI's `--workers` overrides it). With several projects, one process "
        "per project; with one project, its files are scanned in parallel."
    ),
    "ProfileConfig.log_level": (
        "Level of the per-run log files (`logs/` in each project). Console output is set by "
        "the CLI's `-v`/`-q`."
    ),
    # group
    "GroupConfig.group": "Group id.",
    "GroupConfig.description": "Free text; the default Collection description.",
    "GroupConfig.work_dir": (
        "The work directory (relative to the group file's directory); see [spec-state.md](spec-state.md)."
    ),
    "GroupConfig.pipeline": (
        "A pipeline name, a path to a pipeline file, or an inline pipeline mapping "
        "(see *Named pipelines and profiles* above)."
    ),
    "GroupConfig.profile": (
        "A profile name, a path to a profile file, or an inline profile mapping "
        "(see *Named pipelines and profiles* above)."
    ),
    "GroupConfig.defaults": "Options for every project of the group.",
    "GroupConfig.projects": "Projects listed one by one.",
    "GroupConfig.discover": "Rules that make one project per matching directory.",
}
"""Descriptions of the fields that have no docstring in ``models.py`` (yet).

Move a note into ``models.py`` as the field's docstring and delete it here:
:func:`render_reference` refuses a note for a field that has a description.
"""

FIELD_EXTRA: dict[str, str] = {
    "DiscoverConfig.pattern": (
        "Only directories holding at least one file that matches `files` become projects."
    ),
    "ValidationOptions.sample_fraction": (
        "A file with `n` steps gets `max(1, ceil(n * sample_fraction))` evenly spaced steps; "
        "other dimensions, and variables without that dimension, are compared in full."
    ),
}
"""Facts appended to a field's description (enforced by code outside the models)."""

INTRO = """\
# YAML configuration reference

<!-- Generated by `python -m padocc_like.config.reference > docs/yaml-reference.md`
     from padocc_like/config/models.py. Do not edit by hand: tests/unit/test_docs.py
     fails when this page and the generator's output differ. -->

Three kinds of YAML file configure padocc-like:

* a **group** file ([GroupConfig](#groupconfig)): the group id, the work directory, which
  pipeline and profile to use, defaults, and the projects (listed one by one, or discovered
  from a directory tree). Every command except `demo` takes the group file as its argument.
* a **pipeline** file ([PipelineConfig](#pipelineconfig)): the phases, the product kind and
  its options, validation mode, catalog settings.
* a **profile** file ([ProfileConfig](#profileconfig)): how runs behave on a site (workers,
  log level, scanner settings).

Every mapping rejects unknown keys, and the error names the file and the key path
(`group.yaml: unknown key 'concat_dim' in projects[0]`). Strings are stripped of surrounding
whitespace. An *id* (group, project, pipeline and profile names) matches `{id_pattern}`, so
it is safe in paths, STAC ids and SLURM job names.

## Precedence

A project's options resolve in four layers; a later layer wins:

```text
pipeline  <  group `defaults`  <  discover entry `options`  <  the project itself
```

* Only keys a layer sets explicitly count: a key left out (or set to `null`) inherits.
* `product`, `scan` and `validation` merge key by key: a project that sets
  `product: {{layout: json}}` keeps the pipeline's `parquet_threshold_mb`.
  `concat_dims`, `variables`, `attributes` and `catalog_properties` are replaced whole.
* `catalog` comes from the pipeline only; a project adds item properties with
  `catalog_properties`.
* `inline_threshold` and `materialize_limit_mb` come from the profile only.

`init` writes the resolved project to `config.json` in the project's directory and
records its digest (see [spec-state.md](spec-state.md)). After an edit that changes a
project's resolved configuration (any key that reaches `config.json`, in the group,
pipeline or profile file), every phase but `init` refuses to run for that project
(`phase-order`: "its configuration changed since init") until `init` runs again.
Upgrading padocc-like has the same effect, because the digest includes its version.
`padocc-like run` starts with `init` (unless `--phases` leaves it out), so it takes the
edit and redoes the later phases.
Keys that do not reach `config.json` (the group's `description` and `work_dir`,
pipeline and profile `name` and `description`, the profile's `workers` and
`log_level`) never cause this.

## Paths

Relative paths are relative to the **directory of the group file**: `work_dir`, the
`sources` (`glob`, `files`, `list_file`, and the lines of a list file), `discover.root`, and
pipeline or profile paths. `~` is expanded. A source may be written as a `file://` URL;
other protocols (S3, HTTPS) are planned with named stores and are not accepted today.

## Named pipelines and profiles

`pipeline: kerchunk` names a pipeline; a value that contains `/` or ends in `.yaml`/`.yml`
is a path. A name is looked up as `<name>.yaml` (then `.yml`) in `pipelines/` next to the
group file, then in the pipelines bundled with the package. Profiles work the same way
with `configs/`. Bundled pipelines: `kerchunk` (the default), `kerchunk-sampled`,
`kerchunk-no-catalog`; bundled profiles: `local` (the default), `serial`.

## Examples

The group written by `padocc-like demo`:

```yaml
{demo_group}```

Defaults, an inline profile, a list file, variable selection, and discovery of one project
per directory of a CMIP-like tree:

```yaml
group: cmip6-day
work_dir: /gws/work/cmip6-day
pipeline: kerchunk
profile:
  name: big-node
  workers: 16
defaults:
  concat_dims: [time]
  validation: {{allow_attribute_differences: [tracking_id, "tas:history"]}}
projects:
  - id: ukesm-tas
    sources: {{list_file: lists/ukesm-tas.txt}}
    variables: {{keep: [tas]}}
    catalog_properties: {{model: UKESM1-0-LL}}
discover:
  - root: /badc/cmip6/data/CMIP6
    pattern: "CMIP/*/*/historical/r1i1p1f1/day/*/gn/latest"
    files: "*.nc"
    id: "{{1}}.{{2}}.{{6}}"
    options:
      product: {{layout: parquet}}
```

"""


def _defining_class(model: type[BaseModel], name: str) -> type[BaseModel]:
    for cls in model.__mro__:
        if name in getattr(cls, "__annotations__", {}):
            return cls
    return model


def field_description(model: type[BaseModel], name: str) -> str:
    """The description of one field: its docstring, else its note (module docstring)."""
    owner = _defining_class(model, name).__name__
    info = model.model_fields[name]
    text = (
        info.description
        or FIELD_NOTES.get(f"{owner}.{name}")
        or FIELD_NOTES.get(f"{model.__name__}.{name}", "")
    )
    extra = FIELD_EXTRA.get(f"{owner}.{name}")
    text = " ".join(text.split()).replace("``", "`")
    return f"{text} {extra}".strip() if extra else text


def _anchor(model: type[BaseModel]) -> str:
    return model.__name__.lower()


def _constraints(metadata: list[Any]) -> list[str]:
    out: list[str] = []
    for m in metadata:
        if isinstance(m, FieldInfo):
            out += _constraints(m.metadata)
            continue
        for attr, sym in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            value = getattr(m, attr, None)
            if value is not None and type(m).__name__.lower() == attr:
                out.append(f"{sym} {value}")
        if type(m).__name__ == "MaxLen":
            out.append(f"at most {m.max_length} characters")
        pattern = getattr(m, "pattern", None)
        if isinstance(pattern, str):
            out.append("an id" if pattern == ID_PATTERN else f"matching `{pattern}`")
    return out


def _type(tp: Any) -> str:
    origin, args = get_origin(tp), get_args(tp)
    if tp is type(None):
        return "null"
    if tp is Any:
        return "any"
    if origin is Annotated:
        base = _type(args[0])
        extra = _constraints(list(args[1:]))
        return f"{base} ({', '.join(extra)})" if extra else base
    if origin in (Union, types.UnionType):
        parts = [_type(a) for a in args if a is not type(None)]
        if type(None) in args:
            parts.append("null")
        return " or ".join(parts)
    if origin is Literal:
        return " or ".join(f"`{a}`" for a in args)
    if origin is list:
        return f"list of {_type(args[0])}"
    if origin is dict:
        return f"mapping of {_type(args[0])} to {_type(args[1])}"
    if isinstance(tp, type) and issubclass(tp, Enum):
        return " or ".join(f"`{m.value}`" for m in tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return f"[{tp.__name__}](#{_anchor(tp)})"
    names = {str: "string", int: "integer", float: "number", bool: "boolean"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _field_type(info: FieldInfo) -> str:
    text = _type(info.annotation)
    extra = _constraints(info.metadata)
    return f"{text} ({', '.join(extra)})" if extra else text


def _value(value: Any) -> str:
    if isinstance(value, BaseModel):
        dumped = value.model_dump(mode="json", exclude_defaults=True)
        return "`{}`" if not dumped else f"`{json.dumps(dumped, sort_keys=True)}`"
    if isinstance(value, Enum):
        return f"`{value.value}`"
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f"`{value}`" if value else '`""`'
    if isinstance(value, list):
        return "`[" + ", ".join(str(v.value if isinstance(v, Enum) else v) for v in value) + "]`"
    return f"`{json.dumps(value)}`"


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    if info.default_factory is not None:
        return _value(info.default_factory())  # type: ignore[call-arg]
    return _value(info.default)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _own_fields(model: type[BaseModel]) -> list[str]:
    if model is ProjectConfig:
        return [n for n in model.model_fields if n not in ProjectOptions.model_fields]
    return list(model.model_fields)


def _used_in() -> dict[str, list[str]]:
    """Model name -> ``Model.key`` entries whose type mentions it."""
    used: dict[str, list[str]] = {}

    def walk(tp: Any, where: str) -> None:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            used.setdefault(tp.__name__, []).append(where)
            return
        for arg in get_args(tp):
            walk(arg, where)

    for model in MODELS:
        for name in _own_fields(model):
            info = model.model_fields[name]
            walk(info.annotation, f"[{model.__name__}](#{_anchor(model)}).`{info.alias or name}`")
    return used


def undocumented_fields() -> list[str]:
    """``Model.field`` of every documented field that has no docstring (its text is a note)."""
    out: set[str] = set()
    for model in MODELS:
        for name, info in model.model_fields.items():
            if not info.description:
                out.add(f"{_defining_class(model, name).__name__}.{name}")
    return sorted(out)


def _check_notes() -> None:
    fields = {f"{m.__name__}.{n}" for m in MODELS for n in m.model_fields}
    stale = sorted((set(FIELD_NOTES) | set(FIELD_EXTRA)) - fields)
    if stale:
        raise ValueError(f"reference notes name fields the models do not have: {stale}")
    described = {
        f"{m.__name__}.{n}" for m in MODELS for n, info in m.model_fields.items() if info.description
    }
    shadowed = sorted(set(FIELD_NOTES) & described)
    if shadowed:
        raise ValueError(f"FIELD_NOTES entries for fields that have a docstring (delete them): {shadowed}")


def render_model(model: type[BaseModel], used: list[str]) -> str:
    """One model's section: what it is, where it appears, and a table of its keys."""
    lines = [f"## {model.__name__}", ""]
    doc = model.__dict__.get("__doc__")
    if doc:
        first = inspect.cleandoc(doc).split("\n\n")[0]
        lines += [" ".join(first.split()).replace("``", "`"), ""]
    if model.__name__ in WHERE:
        lines += [WHERE[model.__name__], ""]
    if used:
        lines += ["Used in: " + ", ".join(used) + ".", ""]
    if model.__name__ in MODEL_NOTES:
        lines += [MODEL_NOTES[model.__name__], ""]
    lines += ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for name in _own_fields(model):
        info = model.model_fields[name]
        key = info.alias or name
        desc = field_description(model, name)
        if info.alias and info.alias != name:
            desc = f"{desc} (YAML key `{info.alias}`; Python attribute `{name}`.)".strip()
        row = [f"`{key}`", _field_type(info), _default(info), desc]
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return "\n".join(lines) + "\n"


def render_reference() -> str:
    """The whole YAML reference page, as Markdown."""
    _check_notes()
    used = _used_in()
    sections = [render_model(m, used.get(m.__name__, [])) for m in MODELS]
    from ..demo import DEMO_GROUP  # lazily: demo imports numpy

    demo_group = DEMO_GROUP.format().split("\n", 1)[1]  # without its comment line
    return INTRO.format(id_pattern=ID_PATTERN, demo_group=demo_group) + "\n".join(sections)


def main() -> None:
    """Print the reference page (``python -m padocc_like.config.reference``)."""
    print(render_reference(), end="")


if __name__ == "__main__":
    main()
