"""Project state on disk (format ``padocc-like/project-state`` version 2).

Each project owns one directory under ``<work_dir>/projects/<project_id>/``;
only the process holding the project's lock writes there, so concurrent runs
on different projects never touch each other's files, and group views
(``status``) are derived by reading every project. Every file is written
atomically (temporary file, fsync, rename). The format is specified in
``docs/spec-state.md``; bump :data:`STATE_VERSION` on incompatible changes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._io import atomic_write_json, read_json, utc_now
from ..errors import ConfigError, StateError, StateLockedError
from ..types import PHASE_ORDER, Phase, Status

STATE_FORMAT = "padocc-like/project-state"
STATE_VERSION = 2
READABLE_VERSIONS = (1, 2)
"""Versions :func:`load_state` reads; version 1 is migrated on read (:func:`migrate_state`)."""
HISTORY_LIMIT = 1000
LOCK_ATTEMPTS = 25


@dataclass(frozen=True)
class ProjectPaths:
    """Where a project's files live."""

    root: Path

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def scan(self) -> Path:
        return self.root / "scan.json"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    @property
    def file_cache(self) -> Path:
        return self.root / "cache" / "files"

    @property
    def products(self) -> Path:
        return self.root / "products"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def catalog(self) -> Path:
        return self.root / "catalog"

    @property
    def logs(self) -> Path:
        return self.root / "logs"


SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
"""What a project id may be (``config.models.ID_PATTERN``, repeated here so that state code
never imports the configuration models): one path component, never ``.``, ``..`` or absolute."""


def project_paths(work_dir: Path, project_id: str) -> ProjectPaths:
    """The files of project ``project_id``: always a directory inside ``<work_dir>/projects``."""
    if not isinstance(project_id, str) or not SAFE_ID.fullmatch(project_id) or len(project_id) > 200:
        raise ConfigError(
            f"project id {project_id!r} is not a valid id (letters, digits, '.', '_' and '-', "
            "starting with a letter or digit, at most 200): it could name a path outside the work directory"
        )
    return ProjectPaths(work_dir / "projects" / project_id)


def new_state(project_id: str, group_id: str) -> dict[str, Any]:
    return {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "project": project_id,
        "group": group_id,
        "created": utc_now(),
        "updated": utc_now(),
        "phases": {str(p): {"status": str(Status.PENDING)} for p in PHASE_ORDER},
        "products": [],
        "current_products": [],
        "current_product": None,
        "history": [],
    }


def load_state(paths: ProjectPaths) -> dict[str, Any] | None:
    """The project's state, or None if init never ran."""
    if not paths.state.exists():
        return None
    try:
        state = read_json(paths.state)
    except (OSError, ValueError) as err:
        raise StateError(f"{paths.state}: unreadable state file: {err}") from err
    if state.get("format") != STATE_FORMAT:
        raise StateError(f"{paths.state}: not a padocc-like project state file")
    if state.get("version") not in READABLE_VERSIONS:
        raise StateError(
            f"{paths.state}: state version {state.get('version')} is not supported "
            f"(this release reads versions {', '.join(map(str, READABLE_VERSIONS))})"
        )
    return migrate_state(state)


def migrate_state(state: dict[str, Any]) -> dict[str, Any]:
    """Bring a state dict to :data:`STATE_VERSION` in place (version 1 had one ``current_product``
    revision; version 2 adds ``current_products``, the current revision of each product kind)."""
    if state.get("version") == 1:
        rev = state.get("current_product")
        kinds = [str(p["kind"]) for p in state.get("products", []) if p["revision"] == rev]
        state["current_products"] = [{"kind": kinds[0], "revision": rev}] if kinds else []
        state["version"] = STATE_VERSION
    return state


def save_state(paths: ProjectPaths, state: dict[str, Any]) -> None:
    state["updated"] = utc_now()
    if len(state["history"]) > HISTORY_LIMIT:
        state["history"] = state["history"][-HISTORY_LIMIT:]
    atomic_write_json(paths.state, state)


def record_event(
    state: dict[str, Any], phase: Phase | None, event: str, message: str = "", **extra: Any
) -> None:
    entry = {"time": utc_now(), "phase": str(phase) if phase else None, "event": event}
    if message:
        entry["message"] = message
    entry.update(extra)
    state["history"].append(entry)


def reset_downstream(state: dict[str, Any], phase: Phase) -> None:
    """Mark every phase after ``phase`` pending again (its inputs changed)."""
    order = list(PHASE_ORDER)
    for later in order[order.index(phase) + 1 :]:
        state["phases"][str(later)] = {"status": str(Status.PENDING)}


@contextlib.contextmanager
def project_lock(paths: ProjectPaths) -> Iterator[None]:
    """Hold the project's exclusive lock (non-blocking: a second runner fails fast)."""
    paths.root.mkdir(parents=True, exist_ok=True)
    fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        for attempt in range(LOCK_ATTEMPTS):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError as err:
                # a moment's wait rides out `status` probing the lock (is_locked)
                if attempt == LOCK_ATTEMPTS - 1:
                    raise StateLockedError(
                        f"project {paths.root.name!r} is being processed by another run (lock {paths.lock})"
                    ) from err
                time.sleep(0.02)
        os.ftruncate(fd, 0)
        os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def is_locked(paths: ProjectPaths) -> bool:
    """True if some process holds the project's lock right now."""
    if not paths.lock.exists():
        return False
    fd = os.open(paths.lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def current_products(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The current product record of each kind, in the order the kinds were requested."""
    by_revision = {p["revision"]: p for p in state.get("products", [])}
    current = state.get("current_products") or []
    return [by_revision[c["revision"]] for c in current if c["revision"] in by_revision]


def current_product(state: dict[str, Any]) -> dict[str, Any] | None:
    """The project's one current product for one-product views: the first requested kind's
    (the only one of a one-kind project); :func:`current_products` gives every kind's."""
    products = current_products(state)
    return products[0] if products else None


def set_current_products(state: dict[str, Any], revisions: dict[str, int]) -> None:
    """Make ``revisions`` (kind -> revision, in requested order) current; ``{}`` clears them.
    ``current_product`` keeps the first kind's revision, for readers of version 1."""
    state["current_products"] = [{"kind": k, "revision": r} for k, r in revisions.items()]
    state["current_product"] = next(iter(revisions.values()), None)


def list_projects(work_dir: Path) -> list[str]:
    root = work_dir / "projects"
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "state.json").exists())
