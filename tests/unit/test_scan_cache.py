"""The per-project scan cache: segments, resumption, damage and compaction."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from padocc_like.runners.pool import LocalEngine
from padocc_like.stages import files
from padocc_like.stages.files import ScanCache, cache_key, scan_entries


def _entries(paths: list[Path]) -> list[dict]:
    out = []
    for p in paths:
        st = os.stat(p)
        out.append({"url": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    return out


def _count_scans(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    scanned: list[str] = []
    real = files.scan_file

    def counting(url: str, **kw):
        scanned.append(url)
        return real(url, **kw)

    monkeypatch.setattr(files, "scan_file", counting)
    return scanned


def test_second_scan_reads_everything_from_one_segment(tmp_path, archive, monkeypatch):
    entries = _entries(archive(n_files=5))
    cache_dir = tmp_path / "cache"
    scanned = _count_scans(monkeypatch)
    first = scan_entries(entries, 500, cache_dir)
    assert len(scanned) == 5
    assert len(list(cache_dir.glob("scans-*.pkl"))) == 1
    again = scan_entries(entries, 500, cache_dir)
    assert len(scanned) == 5, "cached files were scanned again"
    assert [s.to_dict() for s in again] == [s.to_dict() for s in first]


def test_key_changes_with_threshold_size_and_mtime(tmp_path, archive):
    entry = _entries(archive(n_files=1))[0]
    base = cache_key(entry, 500)
    assert cache_key(entry, 100) != base
    assert cache_key({**entry, "size": entry["size"] + 1}, 500) != base
    assert cache_key({**entry, "mtime_ns": entry["mtime_ns"] + 1}, 500) != base


def test_a_failed_scan_keeps_the_files_scanned_before_it(tmp_path, archive, monkeypatch):
    paths = archive(n_files=4)
    entries = _entries(paths)
    broken = {**entries[2], "url": str(tmp_path / "missing.nc")}
    cache_dir = tmp_path / "cache"
    with pytest.raises(FileNotFoundError):
        scan_entries([entries[0], entries[1], broken, entries[3]], 500, cache_dir)
    scanned = _count_scans(monkeypatch)
    scan_entries(entries, 500, cache_dir)
    assert scanned == [str(paths[2]), str(paths[3])]  # the first two came from the cache


def test_damaged_or_foreign_segments_are_cache_misses(tmp_path, archive, monkeypatch):
    entries = _entries(archive(n_files=3))
    cache_dir = tmp_path / "cache"
    scan_entries(entries, 500, cache_dir)
    (segment,) = cache_dir.glob("scans-*.pkl")
    segment.write_bytes(segment.read_bytes()[:40])  # truncated
    (cache_dir / "scans-0-0.pkl").write_bytes(b"not a pickle")
    scanned = _count_scans(monkeypatch)
    result = scan_entries(entries, 500, cache_dir)
    assert len(scanned) == 3 and len(result) == 3
    # and the damaged segments were compacted away
    assert len(list(cache_dir.glob("scans-*.pkl"))) == 1


def test_segments_flush_by_count_and_compact_into_one(tmp_path, archive, monkeypatch):
    entries = _entries(archive(n_files=5))
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    monkeypatch.setattr(files, "SEGMENT_FILES", 2)
    monkeypatch.setattr(files, "MAX_SEGMENTS", 2)
    written: list[int] = []
    real_write = ScanCache._write

    def spy(self, blobs, count):
        written.append(count)
        return real_write(self, blobs, count)

    monkeypatch.setattr(ScanCache, "_write", spy)
    scan_entries(entries, 500, cache_dir)
    assert written == [2, 2, 1, 5]  # three flushed segments, then one merged segment
    assert len(list(cache_dir.glob("scans-*.pkl"))) == 1
    assert len(ScanCache(cache_dir).scans) == 5


def test_a_few_segments_are_kept_as_written(tmp_path, archive, monkeypatch):
    """Merging re-pickles every scan: below MAX_SEGMENTS the segments stay, and all are read."""
    entries = _entries(archive(n_files=5))
    cache_dir = tmp_path / "cache"
    monkeypatch.setattr(files, "SEGMENT_FILES", 2)
    scan_entries(entries, 500, cache_dir)
    assert len(list(cache_dir.glob("scans-*.pkl"))) == 3
    scanned = _count_scans(monkeypatch)
    scan_entries(entries, 500, cache_dir)
    assert scanned == []


def test_scans_pickle_round_trip_exactly(tmp_path, archive):
    """Chunk tables travel as raw bytes (VariableScan.__reduce__); nothing is lost or shared."""
    import pickle

    from padocc_like.scanners.base import scan_file

    scan = scan_file(str(archive(n_files=1)[0]), inline_threshold=100)
    assert any(v.inline for v in scan.variables.values())  # inline chunks travel too
    back = pickle.loads(pickle.dumps(scan, protocol=5))
    assert back.to_dict() == scan.to_dict()
    for name, var in back.variables.items():
        assert var.offsets.dtype == var.lengths.dtype == "int64"
        assert var.offsets.flags.writeable
        assert var.offsets is not scan.variables[name].offsets


def test_batches_pickled_by_workers_are_cached_as_they_came(tmp_path, archive, monkeypatch):
    entries = _entries(archive(n_files=6))
    cache_dir = tmp_path / "cache"
    monkeypatch.setattr(LocalEngine, "min_files", 2)
    monkeypatch.setattr(files, "BATCH_FILES", 1)
    pooled = scan_entries(entries, 500, cache_dir, workers=2)
    scanned = _count_scans(monkeypatch)
    again = scan_entries(entries, 500, cache_dir)
    assert scanned == []
    assert [s.to_dict() for s in again] == [s.to_dict() for s in pooled]


def test_a_segment_cut_at_a_batch_boundary_is_unreadable(tmp_path, archive):
    import pickle

    entries = _entries(archive(n_files=3))
    cache_dir = tmp_path / "cache"
    scan_entries(entries, 500, cache_dir)
    (segment,) = cache_dir.glob("scans-*.pkl")
    data = segment.read_bytes()
    with open(segment, "rb") as f:
        pickle.load(f)  # the header
        header_end = f.tell()
    segment.write_bytes(data[:header_end])  # header only: its 3 scans are gone
    cache = ScanCache(cache_dir)
    assert cache.scans == {} and cache.damaged


def test_per_file_json_entries_of_older_releases_are_removed(tmp_path, archive):
    entries = _entries(archive(n_files=2))
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    old = [cache_dir / f"{i:064x}.json" for i in range(3)]
    for p in old:
        p.write_text("{}")
    scan_entries(entries, 500, cache_dir)
    assert not any(p.exists() for p in old)
    assert len(list(cache_dir.glob("scans-*.pkl"))) == 1
