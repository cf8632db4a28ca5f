"""The immutable input manifest: what init resolved a project's sources to.

Later phases read the manifest, never a mutable file list, and check the
files still match it (size and modification time) before using them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from . import storage
from ._io import canonical_json, sha256_text, utc_now
from .errors import NoSourcesError, SourceNotFoundError, SourcesChangedError, StorageNotFoundError

MANIFEST_FORMAT = "padocc-like/input-manifest"
MANIFEST_VERSION = 1


def build_manifest(
    project_id: str,
    paths: list[str],
    source_spec: dict[str, Any],
    identities: dict[str, dict[str, Any] | None] | None = None,
) -> dict[str, Any]:
    """Stat every file and build the manifest (files sorted by path). Remote files (URLs) are
    identified by size, modification time and ETag, from ``identities`` (a listing) when given."""
    if not paths:
        raise NoSourcesError(f"project {project_id!r}: sources {source_spec} matched no files")
    entries = []
    for p in sorted(set(paths)):
        if storage.is_remote(p):
            ident = (identities or {}).get(p)
            if ident is None:
                try:
                    ident = storage.stat(p)
                except StorageNotFoundError as err:
                    raise SourceNotFoundError(
                        f"project {project_id!r}: source file {p} does not exist"
                    ) from err
            entries.append({"url": p, **ident})
            continue
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
    remote = [e for e in manifest["files"] if storage.is_remote(e["url"])]
    if remote:
        problems += _remote_changes(remote)
    for entry in manifest["files"]:
        if storage.is_remote(entry["url"]):
            continue
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


def _remote_changes(entries: list[dict[str, Any]]) -> list[str]:
    """Remote files that changed since init, by size and ETag; one listing per directory."""
    by_dir: dict[str, list[dict[str, Any]]] = {}
    for e in entries:
        by_dir.setdefault(e["url"].rsplit("/", 1)[0], []).append(e)
    problems = []
    for directory, group in by_dir.items():
        listed = storage.list_remote(directory + "/*") if len(group) > 1 else {}
        for e in group:
            try:
                now = listed.get(e["url"]) or storage.stat(e["url"])
            except StorageNotFoundError:
                problems.append(f"{e['url']} was removed")
                continue
            if now["size"] != e["size"]:
                problems.append(f"{e['url']} changed size ({e['size']} -> {now['size']} bytes)")
            elif e.get("etag") and now.get("etag") and now["etag"] != e["etag"]:
                problems.append(f"{e['url']} was rewritten after init (ETag {e['etag']} -> {now['etag']})")
    return problems
