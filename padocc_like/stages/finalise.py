"""finalise: copy validated products to the publish store, their references mapped to where
consumers read the sources, verified object by object; record where they went."""

from __future__ import annotations

from typing import Any

from .. import storage
from .._io import read_json
from ..config.models import ResolvedProject
from ..errors import PhaseOrderError
from ..publish.products import publish
from ..state.store import ProjectPaths, current_products, reset_downstream, save_state
from ..types import Phase
from .base import RunContext, StageOutput, digest


def finalise_fingerprint(project: ResolvedProject, paths: ProjectPaths, state: dict[str, Any]) -> str | None:
    products = current_products(state)
    if not products:
        return None
    if project.publish and any((p.get("published") or {}).get("url") is None for p in products):
        return None
    parts: list[Any] = [x for p in products for x in (p["sha256"], p.get("status"))]
    return digest("finalise", *parts, project.publish.model_dump(mode="json") if project.publish else None)


def finalise_stage(
    project: ResolvedProject, paths: ProjectPaths, state: dict[str, Any], ctx: RunContext
) -> StageOutput:
    products = current_products(state)
    invalid = [p for p in products if p.get("status") != "valid"]
    if not products or invalid:
        what = f"the {invalid[0]['kind']} product r{invalid[0]['revision']}" if invalid else "no product"
        raise PhaseOrderError(
            f"project {project.id!r}: {what} has not passed validation; nothing is published unproven"
        )
    fingerprint = finalise_fingerprint(project, paths, state) or ""
    if project.publish is None:
        for p in products:
            p.pop("published", None)
        save_state(paths, state)
        return StageOutput("nothing to publish (no 'publish' store configured)", fingerprint)
    urls = [e["url"] for e in read_json(paths.manifest)["files"]]
    for p in products:
        staging = paths.products / "publish" / f"r{p['revision']}"
        p["published"] = publish(
            storage.active(), project.publish, p, urls, staging, project.group, project.id
        )
    reset_downstream(state, Phase.FINALISE)
    save_state(paths, state)
    parts = [f"{p['kind']} r{p['revision']} -> {p['published']['url']}" for p in products]
    return StageOutput(
        "; ".join(parts),
        finalise_fingerprint(project, paths, state) or "",
        details={"published": {str(p["kind"]): p["published"]["url"] for p in products}},
    )
