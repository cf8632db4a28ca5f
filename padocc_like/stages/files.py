"""Scan the files of a manifest, with a per-file cache and optional process parallelism."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .. import __version__
from .._io import atomic_write_bytes, atomic_write_json, canonical_json, read_json, sha256_text
from ..references.model import FileScan
from ..runners.pool import process_pool
from ..scanners.base import scan_file

log = logging.getLogger(__name__)


PARALLEL_MIN_FILES = 200
"""Fewest uncached files worth a process pool (~7 ms each, against ~0.4 s of worker start-up)."""


def _cache_key(entry: dict[str, Any], inline_threshold: int) -> str:
    return sha256_text(
        canonical_json([__version__, entry["url"], entry["size"], entry["mtime_ns"], inline_threshold])
    )


def _scan_one(args: tuple[dict[str, Any], int, str]) -> tuple[FileScan, bool]:
    entry, inline_threshold, cache_dir = args
    cache = Path(cache_dir) / f"{_cache_key(entry, inline_threshold)}.json"
    if cache.exists():
        try:
            return FileScan.from_dict(read_json(cache)), True
        except (OSError, ValueError, KeyError):
            log.warning("ignoring unreadable scan cache %s", cache)
    scan = scan_file(entry["url"], inline_threshold=inline_threshold)
    atomic_write_json(cache, scan.to_dict(), indent=None, durable=False)  # a lost entry is rescanned
    return scan, False


def scan_entries(
    entries: list[dict[str, Any]], inline_threshold: int, cache_dir: Path, workers: int = 1
) -> list[FileScan]:
    """Scan manifest entries (cached by URL, size and mtime), in manifest order."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(e, inline_threshold, str(cache_dir)) for e in entries]
    uncached = sum(1 for e in entries if not (cache_dir / f"{_cache_key(e, inline_threshold)}.json").exists())
    # a worker costs ~0.4 s to start: parallelise only when the files to scan outweigh it
    if workers > 1 and uncached >= PARALLEL_MIN_FILES:
        with process_pool(min(workers, len(jobs))) as pool:
            results = list(pool.map(_scan_one, jobs, chunksize=max(1, len(jobs) // (4 * workers))))
    else:
        results = [_scan_one(j) for j in jobs]
    hits = sum(1 for _, hit in results if hit)
    log.info("scanned %d files (%d from cache)", len(results), hits)
    return [scan for scan, _ in results]


def aggregate_cache(cache_dir: Path) -> Path:
    return cache_dir.parent / "aggregate.pkl"


def save_aggregate(cache_dir: Path, key: str, aggregate: Any) -> None:
    """Keep scan's combined aggregate for compute (a cache: lost or stale means recombine)."""
    import pickle

    atomic_write_bytes(aggregate_cache(cache_dir), pickle.dumps((key, aggregate), protocol=5), durable=False)


def load_aggregate(cache_dir: Path, key: str) -> Any | None:
    """The aggregate saved by scan under ``key``, or None."""
    import pickle

    path = aggregate_cache(cache_dir)
    try:
        saved_key, aggregate = pickle.loads(path.read_bytes())
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, AttributeError, TypeError):
        return None
    return aggregate if saved_key == key else None


def sample_entries(entries: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """``n`` entries spread evenly over the list, always including the first and last."""
    if n >= len(entries):
        return list(entries)
    if n == 1:
        return [entries[0]]
    step = (len(entries) - 1) / (n - 1)
    picks = sorted({round(i * step) for i in range(n)})
    return [entries[i] for i in picks]
