"""init: resolve sources into the immutable input manifest and snapshot the config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._io import atomic_write_json, read_json
from ..config.load import expand_remote, expand_sources
from ..config.models import ResolvedProject
from ..errors import PadoccLikeError, SourcesChangedError
from ..sources import build_manifest
from ..state.store import ProjectPaths, reset_downstream, set_current_products
from ..types import Phase
from .base import RunContext, StageOutput, config_digest, digest


def current_manifest(project: ResolvedProject) -> dict[str, Any]:
    """The manifest the project's sources resolve to right now."""
    store = project.stores.get(project.sources.store) if project.sources.store else None
    spec = project.sources.model_dump(exclude_none=True)
    if store is not None and store.protocol != "file":
        found = expand_remote(project.sources, Path(project.base_dir), store)
        return build_manifest(project.id, sorted(found), spec, identities=found)
    return build_manifest(project.id, expand_sources(project.sources, Path(project.base_dir), store), spec)


def describe_changes(old: list[dict[str, Any]], new: list[dict[str, Any]], limit: int = 3) -> str:
    """Which files were added, removed or changed, naming the first few of each."""
    before = {f["url"]: f for f in old}
    after = {f["url"]: f for f in new}
    groups = {
        "added": sorted(after.keys() - before.keys()),
        "removed": sorted(before.keys() - after.keys()),
        "changed": sorted(u for u in before.keys() & after.keys() if before[u] != after[u]),
    }
    parts = []
    for what, urls in groups.items():
        if urls:
            more = f" and {len(urls) - limit} more" if len(urls) > limit else ""
            parts.append(f"{len(urls)} {what} ({', '.join(urls[:limit])}{more})")
    return "; ".join(parts) or "no difference in files"


def init_fingerprint(project: ResolvedProject, paths: ProjectPaths, state: dict[str, Any]) -> str | None:
    """Init is a no-op while the configuration and the files the sources resolve to are unchanged."""
    try:
        manifest = current_manifest(project)
    except PadoccLikeError:
        return None  # let the stage run and report the problem
    return digest("init", config_digest(project), manifest["sha256"])


def init_stage(
    project: ResolvedProject, paths: ProjectPaths, state: dict[str, Any], ctx: RunContext
) -> StageOutput:
    manifest = current_manifest(project)
    changed_files = False
    if paths.manifest.exists():
        old = read_json(paths.manifest)
        if old["sha256"] != manifest["sha256"] and not ctx.force:
            raise SourcesChangedError(
                f"project {project.id!r}: the sources no longer match the manifest written by init: "
                + describe_changes(old["files"], manifest["files"])
                + "; rerun init with --force to replace the manifest (the product will be recomputed)"
            )
        if old["sha256"] == manifest["sha256"]:
            manifest = old  # keep the original manifest byte for byte
        else:
            changed_files = True
    config_changed = state.get("config_sha256") != config_digest(project)
    if changed_files or config_changed:
        # the current product was made from other files or settings: no longer current, nor catalogued
        set_current_products(state, {})
        (paths.catalog / "item.json").unlink(missing_ok=True)
    atomic_write_json(paths.manifest, manifest)
    atomic_write_json(paths.config, project.model_dump(mode="json"))
    state["manifest_sha256"] = manifest["sha256"]
    state["config_sha256"] = config_digest(project)
    if changed_files or config_changed:
        reset_downstream(state, Phase.INIT)
    total = sum(f["size"] for f in manifest["files"])
    return StageOutput(
        message=f"{len(manifest['files'])} files, {total / 1e6:.1f} MB",
        fingerprint=digest("init", config_digest(project), manifest["sha256"]),
        details={"n_files": len(manifest["files"]), "bytes": total},
    )
