"""Copy a finished product to a destination store (any fsspec filesystem), verified.

A product is one file (Kerchunk JSON, CFA ``.nc``, Zarr ``.zip``), copied as one object at
``dest``, or a directory tree (Parquet references, Zarr store), copied as objects under
``dest/``. Readers find a tree by its entry point (``.zmetadata``, ``.zgroup``, ``.zattrs``,
``zarr.json`` at the root), so those objects are uploaded last: an interrupted copy never
has its entry point, and no reader sees a store whose entry point exists before its data.
Each object is written once (on S3 one ``PUT``, or one multipart upload, either of which is
atomic) and verified after upload: its size, and its checksum (the S3 ETag against the MD5,
or multipart MD5, computed locally; elsewhere the SHA-256 of the object read back). A
mismatch raises :class:`~padocc_like.errors.CopyVerificationError` and no record is returned.

Nothing but the product's own objects is written under ``dest`` (no marker or lock
objects). A rerun after an interruption either calls :func:`remove_partial` first, or
simply copies again: objects already present with the right size and checksum are
verified and not uploaded again, so copying a complete, identical product onto the same
revision path is a verified no-op. A destination holding objects that are not the
product's, or a different complete product (its entry point, or the single object, differs),
is refused with :class:`~padocc_like.errors.CopyConflictError`: revisions are immutable.

Only the filesystem object is received; its options (credentials) are never formatted into
messages or records.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .._io import canonical_json, sha256_file, sha256_text
from ..errors import CopyConflictError, CopyVerificationError, PublishError
from .rewrite import _redact

log = logging.getLogger(__name__)

ENTRY_POINTS = (".zattrs", ".zgroup", "zarr.json", ".zmetadata")
"""Root objects by which readers open a tree, uploaded last, in this order."""
S3_PART_SIZE = 50 << 20
"""Multipart part size given to s3fs's ``put_file`` (its own default)."""
S3_MAX_PARTS = 10_000
S3_MAX_SINGLE_PUT = 5 << 30


# ---------------------------------------------------------------------------
# records
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ObjectRecord:
    """One copied object: its key relative to the destination (``""`` for a single-object
    product: the destination itself), size in bytes and SHA-256."""

    key: str
    size: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "size": self.size, "sha256": self.sha256}


def listing_digest(objects: Sequence[ObjectRecord]) -> str:
    """SHA-256 of the canonical listing ``[[key, size, sha256], ...]`` sorted by key."""
    rows = sorted([o.key, o.size, o.sha256] for o in objects)
    return sha256_text(canonical_json(rows))


@dataclass(frozen=True)
class CopyRecord:
    """What a copy put where: the destination URL, every object, the total size and the digest
    of the listing (:func:`listing_digest`). ``uploaded`` and ``skipped`` count the objects
    written by this call and those found already in place (verified); they do not enter the
    digest, so a rerun states the same copy."""

    destination: str
    objects: tuple[ObjectRecord, ...]
    total_bytes: int
    sha256: str
    uploaded: int = 0
    skipped: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "destination": self.destination,
            "objects": [o.to_dict() for o in self.objects],
            "total_bytes": self.total_bytes,
            "sha256": self.sha256,
            "uploaded": self.uploaded,
            "skipped": self.skipped,
        }


# ---------------------------------------------------------------------------
# S3 ETags
# ---------------------------------------------------------------------------
def s3_part_size(size: int, part_size: int = S3_PART_SIZE) -> int:
    """The part size used to upload ``size`` bytes: ``part_size``, grown to fit S3's 10,000
    parts."""
    return max(part_size, math.ceil(size / S3_MAX_PARTS))


def multipart_etag(part_md5s: Sequence[bytes]) -> str:
    """S3's ETag of a multipart upload: MD5 of the concatenated binary part MD5s, ``-<parts>``."""
    return f"{hashlib.md5(b''.join(part_md5s)).hexdigest()}-{len(part_md5s)}"


def s3_etag(path: Path, part_size: int = S3_PART_SIZE) -> str:
    """The ETag S3 gives ``path`` uploaded by s3fs's ``put_file(..., chunksize=part_size)``.

    s3fs sends one ``PutObject`` when the file is smaller than ``min(5 GiB, 2 * part_size)``
    (ETag: the hex MD5), else a multipart upload of ``part_size`` parts (ETag:
    :func:`multipart_etag`). Objects encrypted with SSE-KMS or SSE-C have other ETags: verify
    those with ``verify="read"``.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        if size < min(S3_MAX_SINGLE_PUT, 2 * part_size):
            h = hashlib.md5()
            while block := f.read(1 << 20):
                h.update(block)
            return h.hexdigest()
        parts = []
        while True:
            h = hashlib.md5()
            left = part_size
            while left and (block := f.read(min(left, 1 << 20))):
                h.update(block)
                left -= len(block)
            if left == part_size:
                break
            parts.append(h.digest())
    return multipart_etag(parts)


# ---------------------------------------------------------------------------
# the copy
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _Planned:
    key: str
    local: Path
    size: int
    sha256: str
    etag: str | None


def _protocols(fs: Any) -> tuple[str, ...]:
    return (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)


def _is_s3(fs: Any) -> bool:
    return bool({"s3", "s3a"} & set(_protocols(fs)))


def upload_order(keys: Sequence[str]) -> list[str]:
    """Keys in upload order: data objects sorted, then the root entry points
    (:data:`ENTRY_POINTS`, ``.zmetadata`` last)."""
    data = sorted(k for k in keys if k not in ENTRY_POINTS)
    return data + [k for k in ENTRY_POINTS if k in keys]


def _root(fs: Any, dest: str) -> str:
    root = fs._strip_protocol(dest).rstrip("/")
    if not root.strip("/") or "/" not in root.strip("/"):
        raise PublishError(
            f"refusing destination {_redact(dest)!r}: it must name a location below a bucket or "
            "top-level directory"
        )
    return root


def _url(fs: Any, path: str) -> str:
    return _redact(fs.unstrip_protocol(path))


def _sha256_remote(fs: Any, path: str) -> str:
    h = hashlib.sha256()
    with fs.open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _remote_etag(fs: Any, info: dict[str, Any]) -> str | None:
    etag = info.get("ETag") or info.get("etag")
    return None if etag is None else str(etag).strip('"')


def _check(fs: Any, path: str, obj: _Planned, how: str) -> tuple[str, str] | None:
    """None if the object at ``path`` is ``obj``; else (expected, found) of what differs.
    A missing object gives ``found="missing"``."""
    fs.invalidate_cache(path)
    try:
        info = fs.info(path)
    except FileNotFoundError:
        return (f"size {obj.size}", "missing")
    if info.get("type") == "directory":
        return (f"size {obj.size}", "a directory")
    size = int(info.get("size") or 0)
    if size != obj.size:
        return (f"size {obj.size}", f"size {size}")
    if how == "etag":
        etag = _remote_etag(fs, info)
        if etag is None:
            raise PublishError(f"{_url(fs, path)}: the store gives no ETag; copy with verify='read'")
        if etag != obj.etag:
            return (f"ETag {obj.etag}", f"ETag {etag}")
        return None
    found = _sha256_remote(fs, path)
    if found != obj.sha256:
        return (f"sha256 {obj.sha256}", f"sha256 {found}")
    return None


def _plan(src: Path, etags: bool, part_size: int) -> list[_Planned]:
    if src.is_file():
        files = [("", src)]
    elif src.is_dir():
        found = {p.relative_to(src).as_posix(): p for p in src.rglob("*") if p.is_file()}
        files = [(k, found[k]) for k in upload_order(list(found))]
    else:
        raise PublishError(f"no product at {src}")
    if not files:
        raise PublishError(f"{src}: the product directory is empty")
    return [
        _Planned(
            key=key,
            local=path,
            size=path.stat().st_size,
            sha256=sha256_file(path),
            etag=s3_etag(path, s3_part_size(path.stat().st_size, part_size)) if etags else None,
        )
        for key, path in files
    ]


def _conflicts(fs: Any, root: str, plan: list[_Planned], how: str) -> None:
    """Refuse a destination holding foreign objects, or a different complete product."""
    single = plan[0].key == ""
    if not fs.exists(root):
        return
    if single:
        if fs.isdir(root):
            raise CopyConflictError(
                f"{_url(fs, root)} is a directory, not a single object; remove it first (remove_partial)"
            )
        entry = plan
    else:
        if fs.isfile(root):
            raise CopyConflictError(
                f"{_url(fs, root)} is an object, not a directory of objects; remove it first (remove_partial)"
            )
        ours = {o.key for o in plan}
        present = sorted(p[len(root) + 1 :] for p in fs.find(root) if p.startswith(root + "/"))
        extra = [k for k in present if k not in ours]
        if extra:
            shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
            raise CopyConflictError(
                f"{_url(fs, root)} holds objects that are not this product's ({shown}); "
                "remove them first (remove_partial)"
            )
        entry = [o for o in plan if o.key in ENTRY_POINTS and o.key in present]
    for obj in entry:
        path = root if obj.key == "" else f"{root}/{obj.key}"
        diff = _check(fs, path, obj, how)
        if diff is not None and diff[1] != "missing":
            raise CopyConflictError(
                f"{_url(fs, root)} already holds a different complete product ({_url(fs, path)}: "
                f"expected {diff[0]}, found {diff[1]}); revisions are immutable: remove it first "
                "(remove_partial) to replace it"
            )


def copy_product(
    src: Path,
    fs: Any,
    dest: str,
    *,
    verify: Literal["auto", "etag", "read"] = "auto",
    part_size: int = S3_PART_SIZE,
) -> CopyRecord:
    """Copy the product ``src`` (a file, or a directory tree) to ``dest`` on ``fs``, verified.

    A file becomes the one object ``dest``; a tree becomes the objects ``dest/<relative
    path>``, data first and root entry points last (:func:`upload_order`). Every object is
    checked after upload: size from ``fs.info``, then (``verify="auto"``) the S3 ETag against
    :func:`s3_etag` on S3, or the SHA-256 of the object read back elsewhere (``"etag"`` or
    ``"read"`` force one way). An object already at its place with the right size and checksum
    is not uploaded again, so a rerun over a complete, identical copy is a verified no-op.

    Raises :class:`~padocc_like.errors.CopyVerificationError` (naming the object, the
    expected and the found value) when an upload does not verify (the bad object is deleted,
    best effort, and the copy stops there: a tree's entry points are not uploaded), and
    :class:`~padocc_like.errors.CopyConflictError` when ``dest`` holds foreign objects or a
    different complete product. Returns the :class:`CopyRecord` only when every object verified.
    """
    src = Path(src)
    s3 = _is_s3(fs)
    how = ("etag" if s3 else "read") if verify == "auto" else verify
    if how not in ("etag", "read"):
        raise ValueError(f"verify must be 'auto', 'etag' or 'read', not {verify!r}")
    root = _root(fs, dest)
    plan = _plan(src, etags=how == "etag", part_size=part_size)
    _conflicts(fs, root, plan, how)
    uploaded = skipped = 0
    for obj in plan:
        path = root if obj.key == "" else f"{root}/{obj.key}"
        if _check(fs, path, obj, how) is None:
            skipped += 1
            continue
        if s3:
            fs.put_file(str(obj.local), path, chunksize=s3_part_size(obj.size, part_size))
        else:
            fs.makedirs(fs._parent(path), exist_ok=True)
            fs.put_file(str(obj.local), path)
        uploaded += 1
        diff = _check(fs, path, obj, how)
        if diff is not None:
            with contextlib.suppress(Exception):  # leave no bad object where readers look
                fs.rm_file(path)
            raise CopyVerificationError(
                f"{_url(fs, path)} does not verify after upload: expected {diff[0]}, found {diff[1]}",
                key=obj.key,
                expected=diff[0],
                found=diff[1],
            )
    objects = tuple(sorted((ObjectRecord(o.key, o.size, o.sha256) for o in plan), key=lambda o: o.key))
    record = CopyRecord(
        destination=_url(fs, root),
        objects=objects,
        total_bytes=sum(o.size for o in objects),
        sha256=listing_digest(objects),
        uploaded=uploaded,
        skipped=skipped,
    )
    log.info("copied %s to %s: %d uploaded, %d in place", src, record.destination, uploaded, skipped)
    return record


def remove_partial(fs: Any, dest: str) -> list[str]:
    """Delete whatever is at or under ``dest`` (a copy interrupted, or a product to replace);
    return the removed keys relative to ``dest`` (``""`` for a single object), sorted.

    An interrupted copy never has its entry point, so readers never saw it; a rerun calls
    this before copying again. A destination that is a bucket or a top-level directory is
    refused (:class:`~padocc_like.errors.PublishError`).
    """
    root = _root(fs, dest)
    fs.invalidate_cache(root)
    if not fs.exists(root):
        return []
    if fs.isfile(root):
        fs.rm_file(root)
        removed = [""]
    else:
        removed = sorted(p[len(root) + 1 :] for p in fs.find(root) if p.startswith(root + "/"))
        fs.rm(root, recursive=True)
    fs.invalidate_cache(root)
    return removed
