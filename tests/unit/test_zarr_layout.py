"""Chunk layout choice (``zarrstore.layout``) and the bounded-memory copy (``zarrstore.copy``)."""

from __future__ import annotations

import json
import math
import weakref
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from padocc_like.errors import ConfigError, ProductError, StateError
from padocc_like.zarrstore.copy import (
    CopyPlan,
    JsonDoneRecord,
    MemoryDoneRecord,
    block_key,
    execute_copy,
    plan_copy,
)
from padocc_like.zarrstore.layout import (
    DEFAULT_TARGET_BYTES,
    ChunkChoice,
    choose_chunks,
    format_bytes,
)

DIMS3 = ("time", "lat", "lon")
SHAPE3 = (3600, 180, 360)
MiB = 1024 * 1024


# --- layout: the three patterns ------------------------------------------------------


def test_format_bytes() -> None:
    assert format_bytes(512) == "512 B"
    assert format_bytes(180 * 360 * 4) == "253 KiB"
    assert format_bytes(3 * MiB // 2) == "1.5 MiB"
    assert format_bytes(8 * MiB) == "8 MiB"
    assert format_bytes(1023 * 1024) == "1023 KiB"


def test_default_target_is_8_mib() -> None:
    assert 8 * MiB == DEFAULT_TARGET_BYTES
    assert choose_chunks(SHAPE3, DIMS3, 4, pattern="maps").target_bytes == 8 * MiB


def test_maps_whole_planes_as_many_steps_as_fit() -> None:
    choice = choose_chunks(SHAPE3, DIMS3, 4, pattern="maps")
    assert choice.chunks == (32, 180, 360)  # 8 MiB // (180 * 360 * 4 B) = 32 steps
    assert choice.chunk_bytes == 32 * 180 * 360 * 4 <= 8 * MiB
    assert choice.reason.startswith("maps: 32 time steps of 180x360 per chunk (7.91 MiB)")
    assert "whole lat/lon planes" in choice.reason
    assert "8 MiB" in choice.reason


def test_maps_one_step_reason() -> None:
    choice = choose_chunks(SHAPE3, DIMS3, 4, pattern="maps", target_bytes=300_000)
    assert choice.chunks == (1, 180, 360)
    assert choice.reason.startswith(
        "maps: one time step of 180x360 per chunk (253 KiB), whole lat/lon planes"
    )


def test_maps_splits_a_plane_that_exceeds_the_target() -> None:
    choice = choose_chunks((10, 1800, 3600), DIMS3, 4, pattern="maps")
    t, y, x = choice.chunks
    assert t == 1
    assert choice.chunk_bytes <= 8 * MiB
    # split evenly: equal pieces up to the last one, and not needlessly small
    assert math.ceil(1800 / y) * y - 1800 < y and math.ceil(3600 / x) * x - 3600 < x
    assert choice.chunk_bytes > 8 * MiB / 4
    assert "exceeds the 8 MiB target" in choice.reason and "1800x3600 plane (24.7 MiB)" in choice.reason


def test_maps_time_dim_found_by_name_anywhere() -> None:
    choice = choose_chunks((180, 360, 3600), ("lat", "lon", "time"), 4, pattern="maps")
    assert choice.chunks == (180, 360, 32)
    other = choose_chunks((3600, 180, 360), ("t", "y", "x"), 4, pattern="maps", time_dim="t")
    assert other.chunks == (32, 180, 360)


def test_timeseries_full_time_axis_and_near_square_tiles() -> None:
    choice = choose_chunks(SHAPE3, DIMS3, 4, pattern="timeseries")
    t, y, x = choice.chunks
    assert t == 3600
    assert choice.chunk_bytes <= 8 * MiB
    assert 0.8 <= y / x <= 1.25  # near-square
    assert choice.chunk_bytes > 8 * MiB * 0.8  # uses the target
    assert choice.reason.startswith("timeseries: the full time axis (3600 steps of 'time')")
    assert format_bytes(choice.chunk_bytes) in choice.reason


def test_timeseries_series_longer_than_target_is_one_point_per_chunk() -> None:
    choice = choose_chunks((1000, 4, 5), DIMS3, 8, pattern="timeseries", target_bytes=4000)
    assert choice.chunks == (1000, 1, 1)
    assert choice.chunk_bytes == 8000 > 4000
    assert "already exceeds" in choice.reason


def test_balanced_about_equal_chunk_counts() -> None:
    choice = choose_chunks(SHAPE3, DIMS3, 4, pattern="balanced")
    counts = [math.ceil(n / c) for n, c in zip(SHAPE3, choice.chunks, strict=True)]
    assert max(counts) - min(counts) <= 1
    assert choice.chunk_bytes <= 8 * MiB
    assert choice.chunks == (720, 36, 72)
    assert choice.reason.startswith("balanced: chunks of 720x36x72 (7.12 MiB), 5x5x5 chunks")


def test_small_array_is_one_chunk_for_every_pattern() -> None:
    for pattern in ("maps", "timeseries", "balanced"):
        assert choose_chunks((12, 10, 20), DIMS3, 4, pattern=pattern).chunks == (12, 10, 20)


def test_scalar_and_one_dimensional() -> None:
    scalar = choose_chunks((), (), 8, pattern="maps")
    assert scalar.chunks == () and scalar.chunk_bytes == 8 and "scalar" in scalar.reason
    for pattern in ("maps", "timeseries", "balanced"):
        small = choose_chunks((100,), ("lat",), 8, pattern=pattern)
        assert small.chunks == (100,)
        long = choose_chunks((10_000_000,), ("time",), 8, pattern=pattern)
        if pattern == "timeseries":
            assert long.chunks == (10_000_000,)  # the full series is the smallest chunk
        elif pattern == "maps":
            assert long.chunks == (MiB,)  # as many steps as fit
        else:
            assert long.chunks == (1_000_000,)  # the fewest equal pieces that fit


def test_variable_without_the_time_dimension() -> None:
    lat = choose_chunks((180, 360), ("lat", "lon"), 4, pattern="timeseries", time_dim="time")
    assert lat.chunks == (180, 360) and "no time dimension" in lat.reason


def test_zero_length_dimensions() -> None:
    choice = choose_chunks((0, 180, 360), DIMS3, 4, pattern="maps")
    assert choice.chunks == (1, 180, 360)
    assert choose_chunks((5, 0), ("time", "x"), 4, pattern="timeseries").chunks == (5, 1)
    assert choose_chunks((0,), ("x",), 4, pattern="balanced").chunks == (1,)


def test_itemsize_larger_than_target() -> None:
    choice = choose_chunks((10, 10), ("time", "x"), 16, pattern="maps", target_bytes=8)
    assert choice.chunks == (1, 1) and choice.chunk_bytes == 16


def test_to_dict_round_trip() -> None:
    choice = choose_chunks(SHAPE3, DIMS3, 4, pattern="timeseries")
    data = json.loads(json.dumps(choice.to_dict()))
    assert data["chunks"] == list(choice.chunks)
    assert ChunkChoice.from_dict(data) == choice


# --- layout: configuration -----------------------------------------------------------


def test_configured_overrides_every_dim() -> None:
    choice = choose_chunks(
        SHAPE3, DIMS3, 4, pattern="timeseries", configured={"time": 100, "lat": -1, "lon": None}
    )
    assert choice.chunks == (100, 180, 360)
    assert "from configuration" in choice.reason and "time=100" in choice.reason


def test_configured_dims_fixed_and_the_rest_chosen() -> None:
    choice = choose_chunks(SHAPE3, DIMS3, 4, pattern="maps", configured={"time": 1})
    assert choice.chunks == (1, 180, 360)
    assert "lat/lon chosen for maps access" in choice.reason
    ts = choose_chunks(SHAPE3, DIMS3, 4, pattern="timeseries", configured={"lat": 1})
    assert ts.chunks[:2] == (3600, 1) and ts.chunk_bytes <= 8 * MiB and ts.chunks[2] > 100


def test_configured_may_exceed_target_and_says_so() -> None:
    choice = choose_chunks(SHAPE3, DIMS3, 4, pattern="maps", configured={"time": 3600})
    assert choice.chunks[0] == 3600 and choice.chunks[1:] != (180, 360)  # lat/lon tiled around it
    assert choice.chunk_bytes <= 8 * MiB and "within the 8 MiB target" in choice.reason
    big = choose_chunks(SHAPE3, DIMS3, 4, pattern="maps", configured={"time": 3600, "lat": -1, "lon": -1})
    assert big.chunks == SHAPE3 and "more than the 8 MiB target" in big.reason


@pytest.mark.parametrize(
    ("configured", "fragment"),
    [
        ({"level": 1}, "'level'"),
        ({"lat": 0}, "'lat'"),
        ({"lat": 181}, "'lat'"),
        ({"lon": -2}, "'lon'"),
        ({"lon": 2.5}, "'lon'"),
        ({"time": True}, "'time'"),
        ({"time": "10"}, "'time'"),
    ],
)
def test_configured_errors_name_the_dim(configured: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as info:
        choose_chunks((3600, 180, 360), DIMS3, 4, pattern="maps", configured=configured)
    assert isinstance(info.value, ValueError)


def test_argument_errors() -> None:
    with pytest.raises(ConfigError, match="unknown chunk pattern 'points'"):
        choose_chunks(SHAPE3, DIMS3, 4, pattern="points")
    with pytest.raises(ConfigError, match="target"):
        choose_chunks(SHAPE3, DIMS3, 4, pattern="maps", target_bytes=0)
    with pytest.raises(ValueError, match="dims"):
        choose_chunks(SHAPE3, ("time", "lat"), 4, pattern="maps")
    with pytest.raises(ValueError, match="unique"):
        choose_chunks((2, 2), ("x", "x"), 4, pattern="maps")
    with pytest.raises(ValueError, match="itemsize"):
        choose_chunks(SHAPE3, DIMS3, 0, pattern="maps")


# --- layout: properties --------------------------------------------------------------


def _minimal_chunks(lengths: tuple[int, ...], time_axis: int | None, pattern: str) -> tuple[int, ...]:
    """The chunk a pattern may not go below: one element, or one point's full time series."""
    if pattern == "timeseries" and time_axis is not None:
        return tuple(n if a == time_axis else 1 for a, n in enumerate(lengths))
    return (1,) * len(lengths)


@settings(max_examples=300, deadline=None)
@given(
    shape=st.lists(st.integers(0, 5000), min_size=0, max_size=4),
    itemsize=st.sampled_from([1, 2, 4, 8, 16]),
    target=st.integers(1, 64 * MiB),
    pattern=st.sampled_from(["maps", "timeseries", "balanced"]),
    time_first=st.booleans(),
)
def test_layout_properties(
    shape: list[int], itemsize: int, target: int, pattern: str, time_first: bool
) -> None:
    dims = [f"d{i}" for i in range(len(shape))]
    time_axis = None
    if shape:
        time_axis = 0 if time_first else len(shape) - 1
        dims[time_axis] = "time"
    choice = choose_chunks(shape, dims, itemsize, pattern=pattern, target_bytes=target)
    lengths = tuple(max(n, 1) for n in shape)
    chunks = choice.chunks

    assert len(chunks) == len(shape)
    assert all(1 <= c <= n for c, n in zip(chunks, lengths, strict=True))
    assert choice.chunk_bytes == math.prod(chunks) * itemsize
    # never over the target, unless the pattern's minimal chunk is already over it
    if choice.chunk_bytes > target:
        assert chunks == _minimal_chunks(lengths, time_axis, pattern)
        assert math.prod(chunks) * itemsize > target
    assert choice.reason.startswith(f"{pattern}: ")
    assert format_bytes(choice.chunk_bytes) in choice.reason

    if not shape:
        return
    plane_axes = [a for a in range(len(shape)) if a != time_axis]
    plane_elems = math.prod(lengths[a] for a in plane_axes)
    if pattern == "maps":
        if plane_elems * itemsize <= target:  # whole planes, as many steps as fit
            assert all(chunks[a] == lengths[a] for a in plane_axes)
            steps = chunks[time_axis]
            assert steps == lengths[time_axis] or (steps + 1) * plane_elems * itemsize > target
        else:
            assert chunks[time_axis] == 1
    elif pattern == "timeseries":
        assert chunks[time_axis] == lengths[time_axis]
    else:
        counts = [math.ceil(n / c) for n, c in zip(lengths, chunks, strict=True)]
        # about equal counts: chunks are ceil(n / k) for one k, so every count is within a factor 2 of
        # the largest, except along dims too short for k chunks (split into single elements)
        top = max(counts)
        assert all(2 * k >= top or c == 1 for k, c in zip(counts, chunks, strict=True))


# --- copy: helpers ------------------------------------------------------------------------


class Tracker:
    """Bytes of arrays handed out by readers and still alive (released when garbage)."""

    def __init__(self) -> None:
        self.held = 0
        self.peak = 0

    def track(self, array: np.ndarray) -> np.ndarray:
        self.held += array.nbytes
        self.peak = max(self.peak, self.held)
        weakref.finalize(array, self._release, array.nbytes)
        return array

    def _release(self, nbytes: int) -> None:
        self.held -= nbytes


def _aligned(region: tuple[slice, ...], chunks: tuple[int, ...], shape: tuple[int, ...]) -> bool:
    return all(
        s.start % c == 0 and (s.stop % c == 0 or s.stop == n)
        for s, c, n in zip(region, chunks, shape, strict=True)
    )


class Endpoint:
    """An array behind read_block/write_block that checks alignment and counts calls."""

    def __init__(self, array, chunks: tuple[int, ...], tracker: Tracker) -> None:
        self.array = array
        self.chunks = chunks
        self.shape = tuple(array.shape)
        self.tracker = tracker
        self.reads: list[tuple[slice, ...]] = []
        self.writes: list[tuple[slice, ...]] = []
        self.fail_after: int | None = None
        self.fail_before_write = True

    def read(self, region: tuple[slice, ...]) -> np.ndarray:
        assert _aligned(region, self.chunks, self.shape), (region, self.chunks)
        self.reads.append(region)
        return self.tracker.track(np.array(self.array[region], copy=True))

    def write(self, region: tuple[slice, ...], block: np.ndarray) -> None:
        assert _aligned(region, self.chunks, self.shape), (region, self.chunks)
        if self.fail_after is not None and len(self.writes) >= self.fail_after and self.fail_before_write:
            raise Interrupted
        self.array[region] = block
        self.writes.append(region)
        if self.fail_after is not None and len(self.writes) > self.fail_after:
            raise Interrupted


class Interrupted(Exception):
    pass


def _covered_once(writes: list[tuple[slice, ...]], shape: tuple[int, ...]) -> bool:
    count = np.zeros(shape, dtype=np.int16)
    for region in writes:
        count[region] += 1
    return bool((count == 1).all())


def _zarr_array(path: Path, shape, chunks, dtype):
    zarr = pytest.importorskip("zarr")
    return zarr.create_array(store=str(path), shape=shape, chunks=chunks, dtype=dtype, zarr_format=2)


SHAPE = (240, 45, 90)
SOURCE_CHUNKS = (30, 45, 90)
TS_CHUNKS = (240, 9, 9)


@pytest.fixture
def source_array() -> np.ndarray:
    return np.random.default_rng(5).standard_normal(SHAPE).astype(np.float32)


# --- copy: planning -----------------------------------------------------------------------


def test_plan_two_pass_for_timeseries_under_a_small_cap() -> None:
    plan = plan_copy(SHAPE, 4, SOURCE_CHUNKS, TS_CHUNKS, MiB)
    assert plan.kind == "two-pass"
    # min(source, target) is (30, 9, 9); grown along time by multiples of 30 that divide the
    # target's 240, while both passes fit the cap: fewer, larger intermediate chunks
    inter = plan.intermediate_chunks
    assert inter is not None and inter[1:] == (9, 9) and inter[0] % 30 == 0 and 240 % inter[0] == 0
    assert inter[0] > 30
    assert len(plan.passes) == 2
    assert [(p.reads, p.writes) for p in plan.passes] == [
        ("source", "intermediate"),
        ("intermediate", "target"),
    ]
    assert plan.peak_bytes == max(p.peak_bytes for p in plan.passes) <= MiB
    assert plan.peak_bytes < math.prod(SHAPE) * 4  # the whole array would not fit
    assert "two-pass" in plan.reason
    data = json.loads(json.dumps(plan.to_dict()))
    assert data["kind"] == "two-pass" and data["peak_bytes"] == plan.peak_bytes
    assert data["passes"][0]["block_shape"] == list(plan.passes[0].block_shape)


def test_plan_direct_when_aligned_blocks_fit() -> None:
    plan = plan_copy(SHAPE, 4, SOURCE_CHUNKS, TS_CHUNKS, 8 * MiB)
    assert plan.kind == "direct" and plan.intermediate_chunks is None
    assert plan.passes[0].block_shape == SHAPE
    maps = plan_copy(SHAPE, 4, SOURCE_CHUNKS, (60, 45, 90), MiB)
    assert maps.kind == "direct" and maps.passes[0].block_shape == (60, 45, 90)


def test_plan_uses_gcd_intermediate_when_min_does_not_fit() -> None:
    # lcm(45, 10) = 90 along the last axis: the min (10) intermediate would need 2 source chunks
    plan = plan_copy((8, 90), 1, (8, 45), (1, 10), 8 * 45)
    assert plan.kind == "two-pass"
    assert plan.intermediate_chunks == (1, 5)
    assert plan.peak_bytes <= 8 * 45


@pytest.mark.parametrize(
    ("cap", "which"),
    [(77_000, "target chunk 240x9x9"), (400_000, "source chunk 30x45x90")],
)
def test_plan_rejects_a_cap_below_one_chunk(cap: int, which: str) -> None:
    with pytest.raises(ConfigError, match=which) as info:
        plan_copy(SHAPE, 4, SOURCE_CHUNKS, TS_CHUNKS, cap)
    assert "raise the cap" in info.value.message


def test_plan_argument_errors() -> None:
    with pytest.raises(ConfigError, match="positive"):
        plan_copy(SHAPE, 4, SOURCE_CHUNKS, TS_CHUNKS, 0)
    with pytest.raises(ValueError, match="target_chunks"):
        plan_copy(SHAPE, 4, SOURCE_CHUNKS, (240, 9), MiB)
    with pytest.raises(ValueError, match="source_chunks"):
        plan_copy(SHAPE, 4, (0, 45, 90), TS_CHUNKS, MiB)


def test_plan_scalar_and_empty() -> None:
    scalar = plan_copy((), 8, (), (), 8)
    assert scalar.passes[0].n_blocks == 1 and scalar.peak_bytes == 8
    empty = plan_copy((0, 5), 4, (3, 5), (1, 1), 1)
    assert empty.passes[0].n_blocks == 0 and empty.peak_bytes == 0


# --- copy: execution ----------------------------------------------------------------------


def test_two_pass_copy_into_zarr_is_exact_within_the_plan(tmp_path: Path, source_array: np.ndarray) -> None:
    cap = MiB
    assert source_array.nbytes > 3 * cap  # a copy without the bound would exceed the cap
    plan = plan_copy(SHAPE, 4, SOURCE_CHUNKS, TS_CHUNKS, cap)
    assert plan.kind == "two-pass"
    tracker = Tracker()
    source = Endpoint(source_array, SOURCE_CHUNKS, tracker)
    target = Endpoint(_zarr_array(tmp_path / "target.zarr", SHAPE, TS_CHUNKS, "float32"), TS_CHUNKS, tracker)
    assert plan.intermediate_chunks is not None
    inter = Endpoint(
        _zarr_array(tmp_path / "inter.zarr", SHAPE, plan.intermediate_chunks, "float32"),
        plan.intermediate_chunks,
        tracker,
    )

    result = execute_copy(plan, source.read, target.write, intermediate=(inter.read, inter.write))

    assert np.array_equal(target.array[...], source_array)
    assert 0 < tracker.peak <= plan.peak_bytes <= cap
    assert tracker.held == 0
    assert result.blocks_written == sum(p.n_blocks for p in plan.passes) and result.blocks_skipped == 0
    assert _covered_once(target.writes, SHAPE) and _covered_once(inter.writes, SHAPE)
    assert _covered_once(source.reads, SHAPE)  # every source chunk decoded once
    assert len(target.writes) == plan.passes[1].n_blocks


def test_direct_copy_into_zarr(tmp_path: Path, source_array: np.ndarray) -> None:
    plan = plan_copy(SHAPE, 4, SOURCE_CHUNKS, (60, 15, 45), MiB)
    assert plan.kind == "direct"
    tracker = Tracker()
    source = Endpoint(source_array, SOURCE_CHUNKS, tracker)
    target = Endpoint(_zarr_array(tmp_path / "t.zarr", SHAPE, (60, 15, 45), "float32"), (60, 15, 45), tracker)
    result = execute_copy(plan, source.read, target.write)
    assert np.array_equal(target.array[...], source_array)
    assert tracker.peak <= plan.peak_bytes <= MiB
    assert result.blocks_written == plan.passes[0].n_blocks == len(target.writes)
    assert _covered_once(target.writes, SHAPE)


def test_tracker_sees_blocks_held_together() -> None:
    """The instrument itself: a writer that keeps its blocks shows them all as held."""
    tracker = Tracker()
    kept: list[np.ndarray] = []
    data = np.arange(64, dtype=np.float64).reshape(8, 8)
    plan = plan_copy((8, 8), 8, (2, 8), (2, 8), 128)
    execute_copy(plan, lambda r: tracker.track(data[r].copy()), lambda r, b: kept.append(b))
    assert tracker.peak == data.nbytes > plan.peak_bytes


def test_two_pass_needs_an_intermediate(source_array: np.ndarray) -> None:
    plan = plan_copy(SHAPE, 4, SOURCE_CHUNKS, TS_CHUNKS, MiB)
    with pytest.raises(ValueError, match="intermediate"):
        execute_copy(plan, lambda r: source_array[r], lambda r, b: None)


def test_wrong_shape_from_reader_is_an_error() -> None:
    plan = plan_copy((4, 4), 4, (2, 4), (2, 4), 32)
    with pytest.raises(ProductError, match="expected"):
        execute_copy(plan, lambda r: np.zeros((1, 1)), lambda r, b: None)


# --- copy: resuming -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "after", "before_write"),
    [("inter", 2, True), ("target", 3, True), ("target", 1, False), ("inter", 0, False)],
)
def test_interrupted_copy_resumes_from_the_done_file(
    tmp_path: Path, source_array: np.ndarray, where: str, after: int, before_write: bool
) -> None:
    plan = plan_copy(SHAPE, 4, SOURCE_CHUNKS, TS_CHUNKS, MiB)
    assert plan.intermediate_chunks is not None
    n1, n2 = (p.n_blocks for p in plan.passes)
    tracker = Tracker()
    source = Endpoint(source_array, SOURCE_CHUNKS, tracker)
    target = Endpoint(_zarr_array(tmp_path / "t.zarr", SHAPE, TS_CHUNKS, "float32"), TS_CHUNKS, tracker)
    inter = Endpoint(
        _zarr_array(tmp_path / "i.zarr", SHAPE, plan.intermediate_chunks, "float32"),
        plan.intermediate_chunks,
        tracker,
    )
    failing = inter if where == "inter" else target
    failing.fail_after, failing.fail_before_write = after, before_write
    done_path = tmp_path / "progress.json"

    with pytest.raises(Interrupted):
        execute_copy(
            plan,
            source.read,
            target.write,
            intermediate=(inter.read, inter.write),
            done=JsonDoneRecord(done_path),
        )
    recorded = after if where == "inter" else n1 + after
    assert len(JsonDoneRecord(done_path).keys) == recorded
    first_inter, first_target = list(inter.writes), list(target.writes)

    failing.fail_after = None
    inter.writes.clear(), target.writes.clear()
    result = execute_copy(
        plan,
        source.read,
        target.write,
        intermediate=(inter.read, inter.write),
        done=JsonDoneRecord(done_path),
    )

    assert result.blocks_skipped == recorded
    assert result.blocks_written == n1 + n2 - recorded
    # only the remaining blocks are written (a block written but not recorded is written again)
    all_inter = list(plan.passes[0].blocks())
    all_target = list(plan.passes[1].blocks())
    if where == "inter":
        assert inter.writes == all_inter[after:]
        assert target.writes == all_target
    else:
        assert inter.writes == []
        assert target.writes == all_target[after:]
        assert first_target[: len(first_target)] == all_target[: len(first_target)]
        assert first_inter == all_inter
    assert np.array_equal(target.array[...], source_array)
    assert tracker.peak <= plan.peak_bytes
    assert len(JsonDoneRecord(done_path).keys) == n1 + n2


def test_done_keys_belong_to_one_plan(tmp_path: Path) -> None:
    data = np.arange(24, dtype=np.int32).reshape(4, 6)
    done = JsonDoneRecord(tmp_path / "p.json", durable=False)
    plan_a = plan_copy((4, 6), 4, (1, 6), (4, 1), 24)
    plan_b = plan_copy((4, 6), 4, (1, 6), (4, 1), 48)
    assert plan_a.fingerprint != plan_b.fingerprint
    out = np.zeros_like(data)
    inter = np.zeros_like(data)

    def write(r, b):
        out[r] = b

    def iwrite(r, b):
        inter[r] = b

    execute_copy(plan_a, lambda r: data[r], write, intermediate=(lambda r: inter[r], iwrite), done=done)
    assert done.is_done(block_key(plan_a, 0, 0)) and not done.is_done(block_key(plan_b, 0, 0))
    out[...] = 0
    result = execute_copy(
        plan_b, lambda r: data[r], write, intermediate=(lambda r: inter[r], iwrite), done=done
    )
    assert result.blocks_skipped == 0 and np.array_equal(out, data)


def test_json_done_record_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "progress.json"
    record = JsonDoneRecord(path)
    for key in ["abc/0/0", "abc/0/1", "abc/0/2", "abc/0/7", "other"]:
        record.mark_done(key)
    data = json.loads(path.read_text())
    assert data["format"] == "padocc-like/copy-progress" and data["version"] == 1
    assert data["blocks"] == {"abc/0": [[0, 3], [7, 8]]} and data["keys"] == ["other"]
    again = JsonDoneRecord(path)
    assert again.keys == record.keys
    assert again.is_done("abc/0/7") and not again.is_done("abc/0/3") and again.is_done("other")
    assert [p.name for p in path.parent.iterdir()] == ["progress.json"]  # no temporary files left

    path.write_text("{not json")
    with pytest.raises(StateError, match=r"progress\.json"):
        JsonDoneRecord(path)
    path.write_text(json.dumps({"format": "something-else", "version": 1}))
    with pytest.raises(StateError, match="copy-progress"):
        JsonDoneRecord(path)


def test_memory_done_record() -> None:
    record = MemoryDoneRecord()
    assert not record.is_done("a/0/0")
    record.mark_done("a/0/0")
    assert record.is_done("a/0/0") and record.keys == {"a/0/0"}


# --- copy: properties ---------------------------------------------------------------------


@st.composite
def copy_cases(draw):
    shape = tuple(draw(st.lists(st.integers(0, 12), min_size=0, max_size=3)))
    src = tuple(draw(st.integers(1, n + 2)) for n in shape)
    dst = tuple(draw(st.integers(1, n + 2)) for n in shape)
    dtype = draw(st.sampled_from([np.int16, np.float32, np.float64]))
    total = math.prod(shape) * np.dtype(dtype).itemsize
    cap = draw(st.integers(1, max(2 * total, 16)))
    return shape, src, dst, np.dtype(dtype), cap


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=copy_cases(), seed=st.integers(0, 2**16))
def test_copy_is_always_exact_and_bounded(case, seed: int) -> None:
    shape, src, dst, dtype, cap = case
    itemsize = dtype.itemsize
    clip = lambda chunks: tuple(min(c, max(n, 1)) for c, n in zip(chunks, shape, strict=True))  # noqa: E731
    smallest = max(math.prod(clip(src)), math.prod(clip(dst))) * itemsize
    if 0 not in shape and cap < smallest:
        with pytest.raises(ConfigError):
            plan_copy(shape, itemsize, src, dst, cap)
        return
    plan: CopyPlan = plan_copy(shape, itemsize, src, dst, cap)
    assert plan.peak_bytes <= cap
    data = np.random.default_rng(seed).integers(-1000, 1000, size=shape).astype(dtype)
    tracker = Tracker()
    source = Endpoint(data, clip(src), tracker)
    target = Endpoint(np.zeros(shape, dtype), clip(dst), tracker)
    intermediate = None
    inter = None
    if plan.kind == "two-pass":
        assert plan.intermediate_chunks is not None
        inter = Endpoint(np.zeros(shape, dtype), plan.intermediate_chunks, tracker)
        intermediate = (inter.read, inter.write)
    result = execute_copy(plan, source.read, target.write, intermediate=intermediate, done=MemoryDoneRecord())
    assert np.array_equal(target.array, data)
    assert tracker.peak <= plan.peak_bytes
    assert result.blocks_written == sum(p.n_blocks for p in plan.passes)
    if 0 not in shape:
        assert _covered_once(target.writes, shape)
        assert _covered_once(source.reads, shape)
