"""The immutable input manifest: what init resolved a project's sources to.

Later phases read the manifest, never a mutable file list, and check the
files still match it (size and modification time) before using them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ._io import canonical_json, sha256_text, utc_now
from .errors import NoSourcesError, SourceNotFoundError, SourcesChangedError

MANIFEST_FORMAT = "padocc-like/input-manifest"
MANIFEST_VERSION = 1


def build_manifest(project_id: str, paths: list[str], source_spec: dict[str, Any]) -> dict[str, Any]:
    """Stat every file and build the manifest (files sorted by path)."""
    if not paths:
        raise NoSourcesError(f"project {project_id!r}: sources {source_spec} matched no files")
    entries = []
    for p in sorted(set(paths)):
        try:
            st = os.stat(p)
        except FileNotFoundError as err:
            raise SourceNotFoundError(f"project {project_id!r}: source file {p} does not exist") from err
        if not Path(p).is_file():
            raise SourceNotFoundError(f"project {project_id!r}: source {p} is not a regular file")
        entries.append({"url": p, "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    body = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "project": project_id,
        "sources": source_spec,
        "files": entries,
    }
    body["sha256"] = manifest_digest(body)
    body["created"] = utc_now()
    return body


def manifest_digest(manifest: dict[str, Any]) -> str:
    """Digest over the file entries only (stable across re-inits of identical inputs)."""
    return sha256_text(canonical_json(manifest["files"]))


def verify_manifest(manifest: dict[str, Any]) -> None:
    """Raise :class:`SourcesChangedError` naming every file that changed since init."""
    problems = []
    for entry in manifest["files"]:
        try:
            st = os.stat(entry["url"])
        except FileNotFoundError:
            problems.append(f"{entry['url']} was removed")
            continue
        if st.st_size != entry["size"]:
            problems.append(f"{entry['url']} changed size ({entry['size']} -> {st.st_size} bytes)")
        elif st.st_mtime_ns != entry["mtime_ns"]:
            problems.append(f"{entry['url']} was modified after init")
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise SourcesChangedError(
            f"project {manifest['project']!r}: sources changed since init: "
            + "; ".join(problems[:5])
            + more
            + ". Rerun 'init --force' to accept the new files."
        )
