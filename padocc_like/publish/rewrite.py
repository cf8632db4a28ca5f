"""Rewrite a product's references from where the sources were read to where consumers read them.

A product names its sources by the URLs the scan read (``/gws/data/x.nc``,
``file:///gws/data/x.nc``, ``s3://internal-bucket/x.nc``). Published, it must name them
where its readers find them (``https://data.example.org/x.nc``, ``s3://public-bucket/x.nc``).
:class:`UrlMapping` states that move explicitly, as prefix rules; the ``rewrite_*``
functions apply it to a finished product and write a new one beside it (atomically), never
touching the original. Zarr products hold values, not references: they are copied as they are.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

from .._io import atomic_directory, atomic_file, atomic_write_bytes
from ..errors import PublishError, UnmappedUrlError

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_QUOTED_SCHEMES = ("http://", "https://", "file://")
"""Targets whose remainder is percent-encoded when it comes from a local (decoded) path."""


def _redact(url: str) -> str:
    """``url`` without a ``user:password@`` part (never put credentials into a message)."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@", r"\1***@", url)


def local_path(url: str) -> str | None:
    """The plain absolute path a local URL names (``file://`` decoded, ``localhost`` allowed),
    or None for a remote URL or a relative path."""
    if url.startswith("file://"):
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            return None
        return unquote(parts.path)
    if url.startswith("/"):
        return url
    return None


@dataclass(frozen=True)
class _Rule:
    source: str  # as given
    target: str
    local: str | None  # the decoded plain path of a local source prefix


@dataclass(frozen=True)
class UrlMapping:
    """Prefix rules from where sources were read to where consumers read them.

    ``rules`` are ``(source_prefix, target_prefix)`` pairs. :meth:`map` replaces the longest
    source prefix that starts a URL by its target. Prefixes are compared literally (no path
    normalisation: end a directory prefix with ``/`` so that ``/gws/data/`` does not match
    ``/gws/database``), except that a local location is the same whether written as a plain
    absolute path or a ``file://`` URI: both sides are compared as decoded plain paths. The
    rest of a local URL is percent-encoded again when the target is ``file://`` or
    ``http(s)://``, and left decoded for a plain path or another scheme (``s3://``).

    A URL no rule covers raises :class:`~padocc_like.errors.UnmappedUrlError` (naming the URL
    and the rules) with ``unmapped="error"``, or is left as it is with ``"keep"``.

    Rules are checked at construction: a prefix may not be empty, a source prefix may not be
    given twice (``/a/`` and ``file:///a/`` are the same), a source must be an absolute path
    or a URL, a target an absolute path or a URL, and a source prefix ending in ``/`` needs
    a target ending in ``/`` (and the other way round). A broken rule raises ``ValueError``.
    """

    rules: Sequence[tuple[str, str]]
    unmapped: Literal["error", "keep"] = "error"
    _compiled: tuple[_Rule, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.unmapped not in ("error", "keep"):
            raise ValueError(f"unmapped must be 'error' or 'keep', not {self.unmapped!r}")
        rules = tuple((str(s), str(t)) for s, t in self.rules)
        object.__setattr__(self, "rules", rules)
        compiled: list[_Rule] = []
        seen: dict[str, str] = {}
        for source, target in rules:
            if not source or not target:
                raise ValueError(f"URL mapping rule {source!r} -> {target!r}: a prefix is empty")
            for what, value in (("source", source), ("target", target)):
                if not (_SCHEME.match(value) or value.startswith("/")):
                    raise ValueError(
                        f"URL mapping rule {source!r} -> {target!r}: the {what} prefix must be an "
                        "absolute path or a URL (scheme://...)"
                    )
            if source.endswith("/") != target.endswith("/"):
                raise ValueError(
                    f"URL mapping rule {source!r} -> {target!r}: one prefix ends with '/' and the "
                    "other does not (a directory would map to a name prefix)"
                )
            local = local_path(source)
            key = f"local:{local}" if local is not None else source
            if key in seen:
                raise ValueError(
                    f"URL mapping: the source prefix {source!r} is given twice (also as {seen[key]!r})"
                )
            seen[key] = source
            compiled.append(_Rule(source, target, local))
        # longest first; ties cannot happen between distinct keys of one kind
        compiled.sort(key=lambda r: len(r.local if r.local is not None else r.source), reverse=True)
        object.__setattr__(self, "_compiled", tuple(compiled))

    def describe(self) -> str:
        """The rules, one ``source -> target`` per line (for messages)."""
        if not self.rules:
            return "  (no rules)"
        return "\n".join(f"  {_redact(s)} -> {_redact(t)}" for s, t in self.rules)

    def lookup(self, url: str) -> str | None:
        """The mapped URL, or None when no rule covers ``url``."""
        local = local_path(url)
        for rule in self._compiled:
            if rule.local is not None:
                if local is None or not local.startswith(rule.local):
                    continue
                rest = local[len(rule.local) :]
                if rule.target.startswith(_QUOTED_SCHEMES):
                    rest = quote(rest, safe="/")
                return rule.target + rest
            if url.startswith(rule.source):
                return rule.target + url[len(rule.source) :]
        return None

    def map(self, url: str) -> str:
        """``url`` under the longest matching rule (see the class docstring)."""
        mapped = self.lookup(url)
        if mapped is not None:
            return mapped
        if self.unmapped == "keep":
            return url
        raise UnmappedUrlError(
            f"no URL mapping rule covers {_redact(url)!r}; the rules are:\n{self.describe()}"
        )


@dataclass(frozen=True)
class RewriteSummary:
    """What a rewrite did: ``rewritten`` references (or fragment URIs) whose URL changed or was
    mapped, ``kept`` ones left as they were (``unmapped="keep"``), and the number of distinct
    source URLs seen."""

    rewritten: int = 0
    kept: int = 0
    sources: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"rewritten": self.rewritten, "kept": self.kept, "sources": self.sources}


class _Counter:
    """Maps URLs through a mapping (once per distinct URL), counting what it did."""

    def __init__(self, mapping: UrlMapping) -> None:
        self.mapping = mapping
        self.cache: dict[str, tuple[str, bool]] = {}
        self.rewritten = 0
        self.kept = 0

    def __call__(self, url: str) -> str:
        hit = self.cache.get(url)
        if hit is None:
            mapped = self.mapping.lookup(url)
            hit = (self.mapping.map(url), False) if mapped is None else (mapped, True)
            self.cache[url] = hit
        out, was_mapped = hit
        if was_mapped:
            self.rewritten += 1
        else:
            self.kept += 1
        return out

    def summary(self) -> RewriteSummary:
        return RewriteSummary(rewritten=self.rewritten, kept=self.kept, sources=len(self.cache))


# ---------------------------------------------------------------------------
# Kerchunk JSON
# ---------------------------------------------------------------------------
def _is_reference(value: Any) -> bool:
    return isinstance(value, list) and len(value) in (1, 3) and isinstance(value[0], str)


def rewrite_kerchunk_json(src: Path, dst: Path, mapping: UrlMapping) -> RewriteSummary:
    """Write ``dst``: the Kerchunk v1 JSON product ``src`` with every reference's URL mapped.

    Every ``[url, offset, length]`` and ``[url]`` reference is rewritten, and every
    ``templates`` value; a URL holding a ``{{template}}`` is left as it is (its template is
    rewritten). Inline data (``base64:`` or plain strings) and the zarr documents are kept
    byte for byte. The JSON is serialised as :mod:`padocc_like.writers.kerchunk` does
    (sorted keys, compact separators), so the same input and mapping give the same bytes.
    ``dst`` is written atomically. Generator (``gen``) products are refused.
    """
    with open(src, "rb") as f:
        doc = json.loads(f.read())
    if not isinstance(doc, dict) or not isinstance(doc.get("refs"), dict):
        raise PublishError(f"{src}: not a Kerchunk v1 reference file (no 'refs' mapping)")
    if doc.get("gen"):
        raise PublishError(f"{src}: Kerchunk 'gen' references cannot be rewritten; expand them first")
    count = _Counter(mapping)
    templates = doc.get("templates")
    if isinstance(templates, dict):
        doc["templates"] = {k: count(v) if isinstance(v, str) else v for k, v in templates.items()}
    refs = doc["refs"]
    for key, value in refs.items():
        if _is_reference(value) and "{{" not in value[0]:
            refs[key] = [count(value[0]), *value[1:]]
    body = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    atomic_write_bytes(dst, body.encode())
    return count.summary()


# ---------------------------------------------------------------------------
# Kerchunk Parquet (fsspec's lazy reference layout)
# ---------------------------------------------------------------------------
def rewrite_kerchunk_parquet(src_dir: Path, dst_dir: Path, mapping: UrlMapping) -> RewriteSummary:
    """Write ``dst_dir``: the Parquet reference directory ``src_dir`` with the ``path`` column of
    every ``refs.N.parq`` file mapped.

    Rows without a path (inline or missing chunks) stay null. The record files are written
    as :mod:`padocc_like.writers.kerchunk` writes them
    (:func:`~padocc_like._io.write_reference_record`), so fsspec's
    ``LazyReferenceMapper`` reads them; ``.zmetadata`` and any other file are copied
    unchanged. The directory is built under a temporary name and renamed into place.
    """
    try:
        import numpy as np
        import pyarrow.parquet as pq
    except ImportError as err:  # pragma: no cover - depends on extras
        raise PublishError("rewriting Parquet references needs pyarrow") from err

    from .._io import write_reference_record

    if not (src_dir / ".zmetadata").is_file():
        raise PublishError(f"{src_dir}: not a Parquet reference directory (no .zmetadata)")
    count = _Counter(mapping)
    with atomic_directory(dst_dir) as tmp:
        for path in sorted(p for p in src_dir.rglob("*") if p.is_file()):
            rel = path.relative_to(src_dir)
            out = tmp / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            if not re.fullmatch(r"refs\.\d+\.parq", path.name):
                shutil.copyfile(path, out)
                continue
            table = pq.read_table(path)  # read and closed (fastparquet's reader keeps the file open)
            paths = table.column("path").to_pylist()
            write_reference_record(
                out,
                [None if u is None else count(u) for u in paths],
                table.column("offset").to_numpy(),
                table.column("size").to_numpy(),
                np.asarray(table.column("raw").to_pylist(), dtype=object),
            )
    return count.summary()


# ---------------------------------------------------------------------------
# CF aggregation files
# ---------------------------------------------------------------------------
_URIS = re.compile(r"\buris:\s*(\S+)")


def _resolve(uri: str, base: Path) -> str:
    """A fragment URI as an absolute URL: a relative one (a percent-encoded path, as CF-1.13
    writes it) is resolved against ``base`` and given as a ``file://`` URI."""
    if _SCHEME.match(uri) or uri.startswith("/"):
        return uri
    return Path(os.path.normpath(base.absolute() / unquote(uri))).as_uri()


def _uris_variables(group: Any) -> list[Any]:
    """The fragment-URI variables named by aggregation variables of ``group`` and its subgroups."""
    found: dict[str, Any] = {}
    for var in group.variables.values():
        if "aggregated_data" not in var.ncattrs():
            continue
        spec = var.getncattr("aggregated_data")
        spec = spec.decode() if isinstance(spec, bytes) else str(spec)
        match = _URIS.search(spec)
        if match and match[1] in group.variables:
            found[match[1]] = group.variables[match[1]]
    out = [found[k] for k in sorted(found)]
    for sub in group.groups.values():
        out.extend(_uris_variables(sub))
    return out


def rewrite_cfa(src: Path, dst: Path, mapping: UrlMapping) -> RewriteSummary:
    """Write ``dst``: the CF-1.13 aggregation file ``src`` with every fragment URI mapped.

    The fragment-URI variables are those named by ``uris:`` in an ``aggregated_data``
    attribute. A relative URI is first resolved against ``src``'s directory (as CF-1.13
    resolves it against the aggregation file's location), then mapped; a relative URI left
    unmapped by ``unmapped="keep"`` is written as its absolute ``file://`` form, so that it
    still names the same file from ``dst``'s directory. Everything else in the file is
    copied unchanged. The copy is edited under a temporary name, then renamed into place.
    """
    import netCDF4
    import numpy as np

    count = _Counter(mapping)
    base = src.parent
    with atomic_file(dst) as tmp:
        shutil.copyfile(src, tmp)
        with netCDF4.Dataset(tmp, "a") as nc:
            for var in _uris_variables(nc):
                values = np.asarray(var[...], dtype=object)
                new = np.empty(values.shape, dtype=object)
                for index, uri in np.ndenumerate(values):
                    uri = "" if uri is None else str(uri)
                    new[index] = count(_resolve(uri, base)) if uri else uri
                var[...] = new
    return count.summary()


# ---------------------------------------------------------------------------
# any product
# ---------------------------------------------------------------------------
def _copy_as_is(src: Path, dst: Path) -> RewriteSummary:
    if src.is_dir():
        with atomic_directory(dst) as tmp:
            shutil.copytree(src, tmp, dirs_exist_ok=True)
    else:
        with atomic_file(dst) as tmp:
            shutil.copyfile(src, tmp)
    return RewriteSummary()


def rewrite_product(kind: str, layout: str, src: Path, dst: Path, mapping: UrlMapping) -> RewriteSummary:
    """Rewrite the product ``src`` (of ``kind`` and ``layout``, as in its product record) into
    ``dst``: ``kerchunk`` ``json`` or ``parquet`` references, or a ``cfa`` file's fragment
    URIs; a ``zarr`` product (any layout) holds values, not references, and is copied as it is.
    """
    src, dst = Path(src), Path(dst)
    if kind == "kerchunk":
        if layout == "json":
            return rewrite_kerchunk_json(src, dst, mapping)
        if layout == "parquet":
            return rewrite_kerchunk_parquet(src, dst, mapping)
        raise PublishError(f"cannot rewrite a kerchunk product of layout {layout!r} (json or parquet)")
    if kind == "cfa":
        return rewrite_cfa(src, dst, mapping)
    if kind == "zarr":
        return _copy_as_is(src, dst)
    raise PublishError(f"cannot rewrite a product of kind {kind!r} (kerchunk, cfa or zarr)")
