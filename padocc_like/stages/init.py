"""init: resolve sources into the immutable input manifest and snapshot the config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._io import atomic_write_json, read_json
from ..config.load import expand_sources
from ..config.models import ResolvedProject
from ..errors import SourcesChangedError
from ..sources import build_manifest
from ..state.store import ProjectPaths, reset_downstream
from ..types import Phase
from .base import RunContext, StageOutput, config_digest, digest


def init_fingerprint(project: ResolvedProject, paths: ProjectPaths, state: dict[str, Any]) -> str | None:
    # init is a no-op while the configuration is unchanged (the manifest is immutable)
    return digest("init", config_digest(project))


def init_stage(
    project: ResolvedProject, paths: ProjectPaths, state: dict[str, Any], ctx: RunContext
) -> StageOutput:
    files = expand_sources(project.sources, Path(project.base_dir))
    manifest = build_manifest(project.id, files, project.sources.model_dump(exclude_none=True))
    if paths.manifest.exists():
        old = read_json(paths.manifest)
        if old["sha256"] != manifest["sha256"] and not ctx.force:
            added = len({f["url"] for f in manifest["files"]} - {f["url"] for f in old["files"]})
            removed = len({f["url"] for f in old["files"]} - {f["url"] for f in manifest["files"]})
            raise SourcesChangedError(
                f"project {project.id!r}: the sources now resolve to a different set of files "
                f"({added} added, {removed} removed or changed) than the manifest written by init; "
                "rerun init with --force to replace the manifest (products will be recomputed)"
            )
        if old["sha256"] == manifest["sha256"]:
            manifest = old  # keep the original manifest byte for byte
    atomic_write_json(paths.manifest, manifest)
    atomic_write_json(paths.config, project.model_dump(mode="json"))
    state["manifest_sha256"] = manifest["sha256"]
    state["config_sha256"] = config_digest(project)
    reset_downstream(state, Phase.INIT)
    total = sum(f["size"] for f in manifest["files"])
    return StageOutput(
        message=f"{len(manifest['files'])} files, {total / 1e6:.1f} MB",
        fingerprint=digest("init", config_digest(project)),
        details={"n_files": len(manifest["files"]), "bytes": total},
    )
