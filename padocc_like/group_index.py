"""A group index: what ``status`` needs from a group file, saved so it can skip loading it.

Loading a group validates YAML into pydantic models, which costs more than reading the
state of 1,000 projects. The index keeps the group's id, work directory and each project's
last phase, with the SHA-256 of every file the loaded group depended on (and the paths that
must stay absent). It is used only while all of them are unchanged, and never for groups
with ``discover`` entries (their projects depend on directory listings). The index is a
cache: the CLI keeps it under the user's cache directory; losing it costs one full load.

Format (JSON): ``{"format": "padocc-like/group-index", "version": 1, "package": <version>,
"group_file", "group_id", "work_dir", "projects": [[id, last phase], ...] (group order),
"inputs": {path: sha256 or null}}``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from ._io import atomic_write_json

if TYPE_CHECKING:
    from .config.load import Group

INDEX_FORMAT = "padocc-like/group-index"
INDEX_VERSION = 1


@dataclass(frozen=True)
class GroupIndex:
    group_file: str
    group_id: str
    work_dir: str
    projects: dict[str, str | None]
    inputs: dict[str, str | None]


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def index_path(cache_dir: Path, group_file: Path) -> Path:
    key = hashlib.sha256(str(group_file.resolve()).encode()).hexdigest()[:32]
    return cache_dir / "groups" / f"{key}.json"


def build_index(group: Group) -> GroupIndex | None:
    """The index of a loaded group, or None when it cannot be reused (``discover``)."""
    if group.config.discover or not group.inputs:
        return None
    from .api import last_phases

    return GroupIndex(
        group_file=str(group.path),
        group_id=group.id,
        work_dir=str(group.work_dir),
        projects=last_phases(group),
        inputs={str(p): _digest(p) for p in group.inputs},
    )


def save_index(cache_dir: Path, index: GroupIndex) -> None:
    payload = {
        "format": INDEX_FORMAT,
        "version": INDEX_VERSION,
        "package": __version__,
        **index.__dict__,
        "projects": [[pid, last] for pid, last in index.projects.items()],  # keeps group order
    }
    atomic_write_json(index_path(cache_dir, Path(index.group_file)), payload, indent=None, durable=False)


def load_index(cache_dir: Path, group_file: Path) -> GroupIndex | None:
    """The saved index of ``group_file`` if every file it depends on is unchanged, else None."""
    try:
        payload = json.loads(index_path(cache_dir, group_file).read_bytes())
        if (payload["format"], payload["version"], payload["package"]) != (
            INDEX_FORMAT,
            INDEX_VERSION,
            __version__,
        ):
            return None
        fields = {k: payload[k] for k in GroupIndex.__dataclass_fields__}
        index = GroupIndex(**{**fields, "projects": dict(fields["projects"])})
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if index.group_file != str(group_file.resolve()):
        return None
    for path, digest in index.inputs.items():
        if _digest(Path(path)) != digest:
            return None
    return index
