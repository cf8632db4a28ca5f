"""Scan the files of a manifest, with a per-project scan cache and optional process parallelism."""

from __future__ import annotations

import logging
import os
import pickle
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path
from typing import Any

from .. import __version__
from .._gc import gc_paused
from .._io import atomic_write_bytes, sha256_text
from ..progress import Tracker, track
from ..references.model import FileScan
from ..runners.pool import Engine, active_engine
from ..scanners.base import IOCounter, scan_file
from ..storage import is_remote

log = logging.getLogger(__name__)

BATCH_FILES = 16
"""Files per unit of work handed to a worker."""

MAX_SEGMENTS = 16
"""More segments than this are merged into one at the end of a scan."""

SEGMENT_FILES = 1024
SEGMENT_SECONDS = 10.0
"""New scans are saved as a cache segment every this many files or seconds (whichever comes
first), so that a killed scan resumes from where it was."""

REMOTE_CONCURRENCY = 16
"""Remote files scanned at once (each waits on ranged reads most of the time)."""

CACHE_FORMAT = "padocc-like/scan-cache"
SEGMENT_GLOB = "scans-*.pkl"


def cache_key(entry: dict[str, Any], inline_threshold: int) -> str:
    """What a file's scan depends on: the package version, the file's identity and the threshold."""
    fields: tuple[Any, ...] = (__version__, entry["url"], entry["size"], entry["mtime_ns"], inline_threshold)
    if entry.get("etag"):  # a remote object: its ETag changes when it is rewritten
        fields += (entry["etag"],)
    return sha256_text("\0".join(map(str, fields)))


class ScanCache:
    """A project's scans, kept as a few segment files.

    One file per project instead of one per source file: a 10,000-file project
    writes a handful of files, not 10,000. A segment is a pickled header followed
    by pickled batches ``{key: FileScan}``; batches pickled by worker processes are
    appended as they arrived, without pickling them again. Segments are renamed
    into place but not fsynced; a lost or unreadable segment only means those files
    are scanned again.
    """

    def __init__(self, cache_dir: Path) -> None:
        self.dir = cache_dir
        self.scans: dict[str, FileScan] = {}
        self.segments: list[Path] = sorted(cache_dir.glob(SEGMENT_GLOB))
        self._pending: dict[str, FileScan] = {}
        self._pending_blobs: list[bytes] = []
        self._pending_count = 0
        self._last_flush = time.monotonic()
        # per-file JSON entries of releases before segments: unread, removed by the next merge
        self._legacy = sorted(cache_dir.glob("*.json"))
        self.damaged = bool(self._legacy)
        for path in self.segments:
            try:
                self.scans.update(_read_segment(path))
            except Exception as err:  # a damaged or foreign segment is a cache miss, never a failure
                self.damaged = True
                log.warning("ignoring unreadable scan cache segment %s: %s", path, err)

    def get(self, key: str) -> FileScan | None:
        return self.scans.get(key)

    def add(self, key: str, scan: FileScan) -> None:
        self.scans[key] = scan
        self._pending[key] = scan
        self._maybe_flush()

    def add_pickled(self, blob: bytes, scans: dict[str, FileScan]) -> None:
        """Add a batch that arrived pickled (``blob`` is ``pickle.dumps(scans)``)."""
        self.scans.update(scans)
        self._pending_blobs.append(blob)
        self._pending_count += len(scans)
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        pending = self._pending_count + len(self._pending)
        if pending >= SEGMENT_FILES or time.monotonic() - self._last_flush > SEGMENT_SECONDS:
            self.flush()

    def _write(self, blobs: list[bytes], count: int) -> Path:
        import secrets
        import socket

        # unique across the hosts and processes that fill one cache at once (SLURM shard tasks)
        host = "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname()) or "host"
        name = f"scans-{time.time_ns():020d}-{host}-{os.getpid()}-{secrets.token_hex(4)}.pkl"
        path = self.dir / name
        header = pickle.dumps({"format": CACHE_FORMAT, "version": __version__, "scans": count}, protocol=5)
        atomic_write_bytes(path, b"".join([header, *blobs]), durable=False)
        return path

    def flush(self) -> None:
        """Save the scans added since the last flush as a new segment."""
        if self._pending:
            self._pending_blobs.append(pickle.dumps(self._pending, protocol=5))
            self._pending_count += len(self._pending)
        if self._pending_blobs:
            self.segments.append(self._write(self._pending_blobs, self._pending_count))
        self._pending, self._pending_blobs, self._pending_count = {}, [], 0
        self._last_flush = time.monotonic()

    def compact(self) -> None:
        """Flush, then merge the segments into one when there are more than :data:`MAX_SEGMENTS`
        (or any unreadable one): a fresh scan of 10,000 files keeps its ~10 segments as written."""
        self.flush()
        if len(self.segments) <= MAX_SEGMENTS and not self.damaged:
            return
        merged = self._write([pickle.dumps(dict(self.scans), protocol=5)], len(self.scans))
        for path in [*self.segments, *self._legacy]:
            path.unlink(missing_ok=True)
        self.segments, self._legacy = [merged], []
        self.damaged = False


def _read_segment(path: Path) -> dict[str, FileScan]:
    scans: dict[str, FileScan] = {}
    count = 0  # scans in the batches, as the header counts them
    with open(path, "rb") as f:
        header = pickle.load(f)
        if header.get("format") != CACHE_FORMAT or header.get("version") != __version__:
            raise ValueError(f"not a scan cache segment of padocc-like {__version__}")
        while True:
            try:
                batch = pickle.load(f)
            except EOFError:
                break
            scans.update(batch)
            count += len(batch)
    if count != header["scans"]:
        raise ValueError(f"holds {count} of its {header['scans']} scans (truncated?)")
    return scans


def _scan_batch_pickled(args: tuple[list[str], list[str], int]) -> bytes:
    """A worker's unit of work: scan files, return ``{key: FileScan}`` already pickled (the
    calling process stores the bytes in the cache as they are)."""
    urls, keys, inline_threshold = args
    with gc_paused():
        scans = {k: scan_file(u, inline_threshold=inline_threshold) for u, k in zip(urls, keys, strict=True)}
        return pickle.dumps(scans, protocol=5)


def _scan_batch_here(args: tuple[list[str], list[str], int]) -> dict[str, FileScan]:
    urls, keys, inline_threshold = args
    return {k: scan_file(u, inline_threshold=inline_threshold) for u, k in zip(urls, keys, strict=True)}


def _shared_map(
    fn: Callable[[Any], Any],
    batches: list[Any],
    engine: Engine,
    slots: int,
    local_fn: Callable[[Any], Any] | None = None,
) -> Iterator[tuple[int, Any]]:
    """Run ``fn`` over ``batches`` on ``engine`` (``slots`` at once) and, when the engine
    lets the caller work, in this process too.

    A feeder thread starts the executor and hands batches from the front to it (at most
    two per slot in flight); this process takes batches from the back meanwhile. It starts
    at once, so worker start-up (~0.3 s) overlaps useful work instead of adding to it.
    Yields ``(batch index, result)`` in no particular order; the first error stops the
    feeding and is raised.
    """
    queue = deque(range(len(batches)))
    lock = threading.Lock()
    stop = threading.Event()
    submitted: list[tuple[int, Future[Any]]] = []
    feeder_error: list[BaseException] = []
    pool = engine.executor(slots)

    def feed() -> None:
        try:
            in_flight: set[Future[Any]] = set()
            while not stop.is_set():
                with lock:
                    if not queue:
                        return
                    i = queue.popleft()
                future = pool.submit(fn, batches[i])
                submitted.append((i, future))
                in_flight.add(future)
                if len(in_flight) >= 2 * slots:
                    done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                    if any(f.exception() is not None for f in done):
                        return
        except BaseException as err:  # surfaced in the calling thread
            feeder_error.append(err)

    feeder = threading.Thread(target=feed, name="padocc-like-scan-feeder", daemon=True)
    feeder.start()
    taken = 0  # worker results handed on, in submission order

    def finished() -> Iterator[tuple[int, Any]]:
        nonlocal taken
        while taken < len(submitted) and submitted[taken][1].done():
            i, future = submitted[taken]
            taken += 1
            yield i, future.result()

    try:
        while engine.caller_works:
            with lock:
                if not queue:
                    break
                i = queue.pop()
            yield i, (local_fn or fn)(batches[i])
            # the workers' finished batches now, not all at the end: they keep scanning
            # while this process takes their results in
            yield from finished()
        while feeder.is_alive():  # results as they come, while the feeder still submits
            feeder.join(0.05)
            yield from finished()
        if feeder_error:
            raise feeder_error[0]
        for i, future in submitted[taken:]:
            yield i, future.result()
    finally:
        stop.set()
        feeder.join()
        pool.shutdown(wait=True, cancel_futures=True)


def _scan_remote_entries(
    entries: list[dict[str, Any]], todo: list[int], inline_threshold: int, io: IOCounter | None
) -> Iterator[tuple[int, FileScan]]:
    """Scan remote files ``REMOTE_CONCURRENCY`` at a time (their time is mostly waiting for
    ranged reads); yields ``(index, scan)`` in completion order, the first error raised."""
    from concurrent.futures import ThreadPoolExecutor

    def one(i: int) -> tuple[int, FileScan, IOCounter]:
        counter = IOCounter()
        e = entries[i]
        return (
            i,
            scan_file(e["url"], inline_threshold=inline_threshold, size=e.get("size"), io=counter),
            counter,
        )

    with ThreadPoolExecutor(max_workers=REMOTE_CONCURRENCY, thread_name_prefix="padocc-like-scan") as pool:
        futures = [pool.submit(one, i) for i in todo]
        try:
            for future in futures:
                i, scan, counter = future.result()
                if io is not None:
                    io.add(counter)
                yield i, scan
        finally:
            for future in futures:
                future.cancel()


def scan_entries(
    entries: list[dict[str, Any]],
    inline_threshold: int,
    cache_dir: Path,
    workers: int = 1,
    io: IOCounter | None = None,
    label: str = "scan",
) -> list[FileScan]:
    """Scan manifest entries (cached by URL, size and mtime), in manifest order.

    With enough uncached files, the active engine's workers scan them in batches
    (``workers - 1`` local processes alongside this one, or a Dask cluster's workers).
    Remote files are scanned by threads of this process, several at once. The scans are
    the same either way. ``io`` adds up the requests and bytes read from remote files;
    progress is reported as ``label`` (:mod:`padocc_like.progress`).
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    cache = ScanCache(cache_dir)
    keys = [cache_key(e, inline_threshold) for e in entries]
    results: list[FileScan | None] = [cache.get(k) for k in keys]
    todo = [i for i, scan in enumerate(results) if scan is None]
    engine = active_engine()
    with track(label, len(entries), "files") as progress:
        progress.update(len(entries) - len(todo))  # the cached ones
        try:
            _scan_todo(entries, todo, keys, results, cache, inline_threshold, workers, io, engine, progress)
        finally:
            cache.compact()  # keeps what was scanned even when a file failed
    log.info("scanned %d files (%d from cache)", len(results), len(results) - len(todo))
    return [scan for scan in results if scan is not None]


def _scan_todo(
    entries: list[dict[str, Any]],
    todo: list[int],
    keys: list[str],
    results: list[FileScan | None],
    cache: ScanCache,
    inline_threshold: int,
    workers: int,
    io: IOCounter | None,
    engine: Engine,
    progress: Tracker,
) -> None:
    """Scan the files at ``todo`` into ``results`` and the cache, on the engine or here."""
    if any(is_remote(entries[i]["url"]) for i in todo):
        for i, scan in _scan_remote_entries(entries, todo, inline_threshold, io):
            results[i] = scan
            cache.add(keys[i], scan)
            progress.update()
    elif (slots := engine.slots(workers)) > 0 and len(todo) >= engine.min_files:
        batches = [todo[j : j + BATCH_FILES] for j in range(0, len(todo), BATCH_FILES)]
        jobs = [
            ([entries[i]["url"] for i in batch], [keys[i] for i in batch], inline_threshold)
            for batch in batches
        ]
        positions: dict[str, list[int]] = {}
        for i in todo:  # the same file may be listed twice
            positions.setdefault(keys[i], []).append(i)
        mapped = _shared_map(_scan_batch_pickled, jobs, engine, slots, local_fn=_scan_batch_here)
        for _, result in mapped:
            if isinstance(result, bytes):  # from a worker: keep its pickle for the cache
                scans = pickle.loads(result)
                cache.add_pickled(result, scans)
            else:
                scans = result
                for key, scan in scans.items():
                    cache.add(key, scan)
            for key, scan in scans.items():
                for i in positions[key]:
                    results[i] = scan
            progress.update(sum(len(positions[key]) for key in scans))
    else:
        for i in todo:
            scan = scan_file(entries[i]["url"], inline_threshold=inline_threshold)
            results[i] = scan
            cache.add(keys[i], scan)
            progress.update()


def aggregate_cache(cache_dir: Path, name: str = "aggregate") -> Path:
    return cache_dir.parent / f"{name}.pkl"


def save_aggregate(cache_dir: Path, key: str, aggregate: Any, name: str = "aggregate") -> None:
    """Keep scan's combined aggregate for compute (a cache: lost or stale means recombine);
    ``name`` tells the combine modes apart (one file each)."""
    import pickle

    target = aggregate_cache(cache_dir, name)
    atomic_write_bytes(target, pickle.dumps((key, aggregate), protocol=5), durable=False)


def load_aggregate(cache_dir: Path, key: str, name: str = "aggregate") -> Any | None:
    """The aggregate saved by scan under ``key`` (in cache file ``name``), or None."""
    import pickle

    path = aggregate_cache(cache_dir, name)
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
