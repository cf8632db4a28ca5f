"""A bounded-memory rechunking copy between array-like objects.

:func:`plan_copy` decides how to move an array from a source chunking to a
target chunking with at most ``memory_cap_bytes`` of array data held at once;
:func:`execute_copy` carries the plan out through two plain callables,
``read_block(region) -> ndarray`` and ``write_block(region, array)``.

Every block is aligned to the chunks on *both* sides of its pass: reads take
whole source chunks (a chunked, compressed source decodes whole chunks anyway,
so each one is decoded exactly once per pass) and writes cover whole target
chunks (so concurrent or resumed writers never share a chunk). Edge blocks are
clipped to the array's shape. A block aligned to both grids is a multiple of
the per-axis least common multiple of the two chunk sizes (or the full axis):

* **direct** - one pass, source to target, when such a block fits the cap;
* **two-pass** - otherwise, as rechunker does: pass 1 copies the source into an
  intermediate array (e.g. a temporary Zarr store) whose chunks divide or
  match the source chunks, pass 2 copies the intermediate into the target. With
  intermediate chunks ``gcd(source, target)`` per axis the blocks are exactly one
  source chunk and one target chunk, so the copy is possible whenever
  ``max(source chunk, target chunk) <= cap``; larger intermediate chunks
  (``min(source, target)``, fewer objects) are used on every axis where they fit.

Blocks are then consolidated (grown by whole aligned units, last axis first)
up to the cap. The caller's reader and writer may use buffers of their own
(compressed bytes, one decoded chunk) on top of the plan's peak.

Resuming: ``execute_copy`` asks a :class:`DoneRecord` before each block and
records each block after its write returns. Keys embed the plan's fingerprint,
so a record never applies to a different plan. A block interrupted between its
write and its record is simply written again (whole chunks, same values).
The record must live exactly as long as the intermediate array it describes.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .._io import atomic_write_json, canonical_json, read_json, sha256_text
from ..errors import ConfigError, ProductError, StateError
from .layout import format_bytes

Region = tuple[slice, ...]
ReadBlock = Callable[[Region], Any]
"""Reads a region of an array and returns it as an array of the region's shape."""
WriteBlock = Callable[[Region, np.ndarray], None]
"""Writes an array into a region of an array."""

SOURCE = "source"
INTERMEDIATE = "intermediate"
TARGET = "target"


@dataclass(frozen=True)
class CopyPass:
    """One pass of a copy: ``reads`` to ``writes`` in blocks of ``block_shape``, in C order."""

    reads: str
    writes: str
    shape: tuple[int, ...]
    block_shape: tuple[int, ...]
    itemsize: int

    @property
    def grid(self) -> tuple[int, ...]:
        """Number of blocks along each axis."""
        return tuple(-(-n // b) for n, b in zip(self.shape, self.block_shape, strict=True))

    @property
    def n_blocks(self) -> int:
        return math.prod(self.grid)

    @property
    def peak_bytes(self) -> int:
        """Bytes of the largest block (blocks at the edges are smaller)."""
        return math.prod(min(b, n) for n, b in zip(self.shape, self.block_shape, strict=True)) * self.itemsize

    def blocks(self) -> Iterator[Region]:
        """The block regions, in C order of the block grid (the order of block indices)."""
        for index in itertools.product(*(range(g) for g in self.grid)):
            yield tuple(
                slice(i * b, min((i + 1) * b, n))
                for i, b, n in zip(index, self.block_shape, self.shape, strict=True)
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "reads": self.reads,
            "writes": self.writes,
            "block_shape": list(self.block_shape),
            "n_blocks": self.n_blocks,
            "peak_bytes": self.peak_bytes,
        }


@dataclass(frozen=True)
class CopyPlan:
    """How to copy an array between two chunkings within a memory cap (see :func:`plan_copy`)."""

    shape: tuple[int, ...]
    itemsize: int
    source_chunks: tuple[int, ...]
    target_chunks: tuple[int, ...]
    memory_cap_bytes: int
    intermediate_chunks: tuple[int, ...] | None
    passes: tuple[CopyPass, ...]
    reason: str
    fingerprint: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fingerprint", sha256_text(canonical_json(self._identity()))[:16])

    @property
    def kind(self) -> str:
        """``"direct"`` or ``"two-pass"``."""
        return "two-pass" if len(self.passes) == 2 else "direct"

    @property
    def peak_bytes(self) -> int:
        """The most array data the copy holds at once: the largest block of any pass."""
        return max((p.peak_bytes for p in self.passes), default=0)

    def _identity(self) -> dict[str, Any]:
        return {
            "shape": list(self.shape),
            "itemsize": self.itemsize,
            "source_chunks": list(self.source_chunks),
            "target_chunks": list(self.target_chunks),
            "intermediate_chunks": None
            if self.intermediate_chunks is None
            else list(self.intermediate_chunks),
            "passes": [p.to_dict() for p in self.passes],
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON form for project state and reports."""
        return {
            **self._identity(),
            "kind": self.kind,
            "memory_cap_bytes": self.memory_cap_bytes,
            "peak_bytes": self.peak_bytes,
            "reason": self.reason,
            "fingerprint": self.fingerprint,
        }


@dataclass(frozen=True)
class CopyResult:
    """What one :func:`execute_copy` call did."""

    blocks_written: int
    blocks_skipped: int


# --- planning ---------------------------------------------------------------------


def plan_copy(
    shape: Sequence[int],
    itemsize: int,
    source_chunks: Sequence[int],
    target_chunks: Sequence[int],
    memory_cap_bytes: int,
) -> CopyPlan:
    """Plan a copy from ``source_chunks`` to ``target_chunks`` holding at most ``memory_cap_bytes``.

    ``source_chunks`` is the source's read granularity: its storage chunks when
    compressed (a partial read decodes whole chunks), any convenient block for
    contiguous data. Chunks larger than the array are clipped to it.

    Raises
    ------
    ConfigError
        The cap is not positive, or too small: one target chunk or one source
        chunk (the smallest blocks any aligned copy must hold) exceeds it.
    ValueError
        The shapes and chunk tuples disagree, or a chunk or itemsize is not positive.
    """
    shape_t = tuple(operator.index(n) for n in shape)
    src = _clip_chunks("source_chunks", source_chunks, shape_t)
    dst = _clip_chunks("target_chunks", target_chunks, shape_t)
    if operator.index(itemsize) < 1:
        raise ValueError(f"itemsize must be a positive number of bytes, got {itemsize}")
    if operator.index(memory_cap_bytes) < 1:
        raise ConfigError(f"memory cap must be a positive number of bytes, got {memory_cap_bytes}")
    cap_elems = memory_cap_bytes // itemsize

    def plan(intermediate: tuple[int, ...] | None, passes: tuple[CopyPass, ...], reason: str) -> CopyPlan:
        return CopyPlan(shape_t, itemsize, src, dst, memory_cap_bytes, intermediate, passes, reason)

    if 0 in shape_t:
        empty = CopyPass(SOURCE, TARGET, shape_t, dst, itemsize)
        return plan(None, (empty,), f"direct: the {_text(shape_t)} array is empty, nothing to copy.")

    direct_unit = _aligned_unit(shape_t, src, dst)
    if math.prod(direct_unit) <= cap_elems:
        block = _consolidate(shape_t, direct_unit, cap_elems)
        copy = CopyPass(SOURCE, TARGET, shape_t, block, itemsize)
        return plan(
            None,
            (copy,),
            f"direct: blocks of {_text(block)} ({format_bytes(copy.peak_bytes)}) are whole source and "
            f"target chunks and fit the {format_bytes(memory_cap_bytes)} cap.",
        )

    for name, chunks in (("target", dst), ("source", src)):
        need = math.prod(chunks) * itemsize
        if need > memory_cap_bytes:
            raise ConfigError(
                f"memory cap {_bytes_text(memory_cap_bytes)} is too small to copy {_text(shape_t)} from "
                f"chunks {_text(src)} to {_text(dst)}: one {name} chunk {_text(chunks)} holds "
                f"{_bytes_text(need)}; raise the cap to at least that "
                f"or choose smaller {name} chunks"
            )

    inter = _choose_intermediate(shape_t, src, dst, cap_elems)
    pass1 = CopyPass(
        SOURCE,
        INTERMEDIATE,
        shape_t,
        _consolidate(shape_t, _aligned_unit(shape_t, src, inter), cap_elems),
        itemsize,
    )
    pass2 = CopyPass(
        INTERMEDIATE,
        TARGET,
        shape_t,
        _consolidate(shape_t, _aligned_unit(shape_t, inter, dst), cap_elems),
        itemsize,
    )
    direct_bytes = math.prod(direct_unit) * itemsize
    return plan(
        inter,
        (pass1, pass2),
        f"two-pass: the smallest block that is whole source and target chunks ({_text(direct_unit)}, "
        f"{format_bytes(direct_bytes)}) exceeds the {format_bytes(memory_cap_bytes)} cap, so the copy goes "
        f"through intermediate chunks {_text(inter)} in blocks of {_text(pass1.block_shape)} then "
        f"{_text(pass2.block_shape)} (peak {format_bytes(max(pass1.peak_bytes, pass2.peak_bytes))}).",
    )


def _clip_chunks(name: str, chunks: Sequence[int], shape: tuple[int, ...]) -> tuple[int, ...]:
    chunks_t = tuple(operator.index(c) for c in chunks)
    if len(chunks_t) != len(shape):
        raise ValueError(
            f"{name} {chunks_t} has {len(chunks_t)} dimensions but the shape {shape} has {len(shape)}"
        )
    if any(c < 1 for c in chunks_t):
        raise ValueError(f"{name} must be positive, got {chunks_t}")
    if any(n < 0 for n in shape):
        raise ValueError(f"shape {shape} has a negative length")
    return tuple(min(c, max(n, 1)) for c, n in zip(chunks_t, shape, strict=True))


def _aligned_unit(shape: tuple[int, ...], a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """The smallest block aligned to both chunk grids: lcm per axis, or the full axis."""
    return tuple(min(math.lcm(x, y), max(n, 1)) for n, x, y in zip(shape, a, b, strict=True))


def _consolidate(shape: tuple[int, ...], unit: tuple[int, ...], cap_elems: int) -> tuple[int, ...]:
    """Grow ``unit`` by whole multiples (or to the full axis), last axis first, within ``cap_elems``."""
    block = list(unit)
    for axis in reversed(range(len(shape))):
        length = max(shape[axis], 1)
        if block[axis] >= length:
            continue
        others = math.prod(block) // block[axis]
        multiple = max(1, cap_elems // (others * unit[axis]))
        block[axis] = min(multiple * unit[axis], length)
        if block[axis] < length:
            break  # partial: the cap is used up, an earlier axis could not even double
    return tuple(block)


def _choose_intermediate(
    shape: tuple[int, ...], src: tuple[int, ...], dst: tuple[int, ...], cap_elems: int
) -> tuple[int, ...]:
    """Intermediate chunks: ``min(src, dst)`` per axis where it fits, ``gcd`` where it must.

    Starts from ``min`` everywhere (fewest intermediate objects) and switches to
    ``gcd``, one axis at a time, the axis that shrinks the larger pass block most,
    until both passes' smallest blocks fit. With ``gcd`` everywhere they are one
    source chunk and one target chunk, which the caller has checked fit.
    """

    def need(inter: list[int]) -> int:
        t = tuple(inter)
        return max(math.prod(_aligned_unit(shape, src, t)), math.prod(_aligned_unit(shape, t, dst)))

    inter = [min(s, d) for s, d in zip(src, dst, strict=True)]
    while need(inter) > cap_elems:
        options = [a for a, (s, d) in enumerate(zip(src, dst, strict=True)) if inter[a] != math.gcd(s, d)]
        if not options:  # pragma: no cover - excluded by the caller's chunk checks
            raise AssertionError("no intermediate chunking fits although both chunks do")
        best = min(options, key=lambda a: (need([*inter[:a], math.gcd(src[a], dst[a]), *inter[a + 1 :]]), a))
        inter[best] = math.gcd(src[best], dst[best])
    return _grow_intermediate(shape, dst, inter, cap_elems, need)


INTERMEDIATE_TARGET_ELEMS = 1 << 20
"""Grow intermediate chunks towards this many elements (4 MiB of float32): ``min(src, dst)``
can be tiny (one file's steps of one output tile), and an intermediate store of many tiny
chunks costs more than the data it holds."""


def _grow_intermediate(
    shape: tuple[int, ...], dst: tuple[int, ...], inter: list[int], cap_elems: int, need: Any
) -> tuple[int, ...]:
    """Grow ``inter`` along each axis, first axis first, by multiples that divide the target
    chunk (so pass 2 stays aligned) while both passes' smallest blocks fit the cap, until an
    intermediate chunk reaches :data:`INTERMEDIATE_TARGET_ELEMS`."""
    for axis in range(len(shape)):
        while math.prod(inter) < INTERMEDIATE_TARGET_ELEMS:
            step, limit = inter[axis], min(dst[axis], max(shape[axis], 1))
            grown = next(
                (k * step for k in range(2, limit // step + 1) if dst[axis] % (k * step) == 0),
                None,
            )
            if grown is None:
                break
            trial = [*inter[:axis], grown, *inter[axis + 1 :]]
            if need(trial) > cap_elems or math.prod(trial) > INTERMEDIATE_TARGET_ELEMS * 2:
                break
            inter = trial
    return tuple(inter)


def _bytes_text(n: int) -> str:
    return format_bytes(n) if n < 1024 else f"{format_bytes(n)} ({n} B)"


def _text(sizes: Sequence[int]) -> str:
    return "x".join(str(s) for s in sizes) or "scalar"


# --- recording progress ------------------------------------------------------------


@runtime_checkable
class DoneRecord(Protocol):
    """Which blocks of a copy are written, so a rerun can skip them."""

    def is_done(self, key: str) -> bool: ...

    def mark_done(self, key: str) -> None: ...


class MemoryDoneRecord:
    """A :class:`DoneRecord` in memory (tests, or one process retrying)."""

    def __init__(self) -> None:
        self._keys: set[str] = set()

    def is_done(self, key: str) -> bool:
        return key in self._keys

    def mark_done(self, key: str) -> None:
        self._keys.add(key)

    @property
    def keys(self) -> frozenset[str]:
        return frozenset(self._keys)


class JsonDoneRecord:
    """A :class:`DoneRecord` in a JSON file, rewritten atomically (temporary file, ``os.replace``) on each mark.

    Keys ending in ``/<integer>`` (the block keys of :func:`execute_copy`) are
    stored as ranges of block indices under their prefix, so the file stays
    small when blocks finish in order. ``durable=False`` skips the fsync.
    """

    FORMAT = "padocc-like/copy-progress"
    VERSION = 1

    def __init__(self, path: Path, *, durable: bool = True) -> None:
        self.path = Path(path)
        self.durable = durable
        self._blocks: dict[str, set[int]] = {}
        self._other: set[str] = set()
        if self.path.exists():
            self._load()

    def is_done(self, key: str) -> bool:
        prefix, index = _split_key(key)
        if index is None:
            return key in self._other
        return index in self._blocks.get(prefix, ())

    def mark_done(self, key: str) -> None:
        prefix, index = _split_key(key)
        if index is None:
            self._other.add(key)
        else:
            self._blocks.setdefault(prefix, set()).add(index)
        atomic_write_json(self.path, self._to_json(), indent=None, durable=self.durable)

    @property
    def keys(self) -> frozenset[str]:
        blocks = {f"{prefix}/{i}" for prefix, indices in self._blocks.items() for i in indices}
        return frozenset(blocks | self._other)

    def _to_json(self) -> dict[str, Any]:
        return {
            "format": self.FORMAT,
            "version": self.VERSION,
            "blocks": {prefix: _ranges(indices) for prefix, indices in self._blocks.items()},
            "keys": sorted(self._other),
        }

    def _load(self) -> None:
        try:
            data = read_json(self.path)
            if data.get("format") != self.FORMAT or data.get("version") != self.VERSION:
                raise ValueError(f"format {data.get('format')!r} version {data.get('version')!r}")
            blocks = {
                str(prefix): {i for start, stop in ranges for i in range(int(start), int(stop))}
                for prefix, ranges in data["blocks"].items()
            }
            other = {str(k) for k in data["keys"]}
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
            raise StateError(
                f"copy progress file {self.path} is unreadable ({e}); expected {self.FORMAT} version "
                f"{self.VERSION}. Delete it together with the intermediate store to restart the copy."
            ) from e
        self._blocks, self._other = blocks, other


def _split_key(key: str) -> tuple[str, int | None]:
    prefix, _, tail = key.rpartition("/")
    if prefix and tail.isdigit() and tail.isascii() and str(int(tail)) == tail:
        return prefix, int(tail)
    return key, None


def _ranges(indices: set[int]) -> list[list[int]]:
    """Sorted half-open ``[start, stop)`` runs covering ``indices``."""
    out: list[list[int]] = []
    for i in sorted(indices):
        if out and out[-1][1] == i:
            out[-1][1] = i + 1
        else:
            out.append([i, i + 1])
    return out


# --- executing ---------------------------------------------------------------------


def block_key(plan: CopyPlan, pass_index: int, block_index: int) -> str:
    """The :class:`DoneRecord` key of one block: ``<plan fingerprint>/<pass>/<block>``."""
    return f"{plan.fingerprint}/{pass_index}/{block_index}"


def execute_copy(
    plan: CopyPlan,
    read_block: ReadBlock,
    write_block: WriteBlock,
    *,
    intermediate: tuple[ReadBlock, WriteBlock] | None = None,
    done: DoneRecord | None = None,
) -> CopyResult:
    """Carry out ``plan``: every pass in order, every block in C order, one block held at a time.

    ``read_block(region)`` must return an array of the region's shape;
    ``write_block(region, array)`` writes whole target chunks. ``intermediate``
    is the ``(read_block, write_block)`` pair of an array of the plan's shape
    chunked as ``plan.intermediate_chunks`` (required for a two-pass plan,
    unused otherwise). With ``done``, blocks already recorded are skipped and
    each block is recorded after its write returns.

    Raises
    ------
    ValueError
        A two-pass plan without ``intermediate``.
    ProductError
        A reader returned an array of the wrong shape.
    """
    if plan.kind == "two-pass" and intermediate is None:
        raise ValueError(
            f"a two-pass copy needs an intermediate array chunked {_text(plan.intermediate_chunks or ())}: "
            "pass intermediate=(read_block, write_block)"
        )
    readers = {SOURCE: read_block, INTERMEDIATE: intermediate[0] if intermediate else read_block}
    writers = {TARGET: write_block, INTERMEDIATE: intermediate[1] if intermediate else write_block}
    written = skipped = 0
    for pass_index, copy in enumerate(plan.passes):
        read, write = readers[copy.reads], writers[copy.writes]
        for block_index, region in enumerate(copy.blocks()):
            key = block_key(plan, pass_index, block_index)
            if done is not None and done.is_done(key):
                skipped += 1
                continue
            block = read(region)
            expected = tuple(s.stop - s.start for s in region)
            if tuple(np.shape(block)) != expected:
                raise ProductError(
                    f"reading {copy.reads} region {_region_text(region)} returned shape "
                    f"{tuple(np.shape(block))}, expected {expected}"
                )
            write(region, block)
            del block  # release before the next read: never two blocks at once
            if done is not None:
                done.mark_done(key)
            written += 1
    return CopyResult(blocks_written=written, blocks_skipped=skipped)


def _region_text(region: Region) -> str:
    return "[" + ", ".join(f"{s.start}:{s.stop}" for s in region) + "]"


__all__ = [
    "CopyPass",
    "CopyPlan",
    "CopyResult",
    "DoneRecord",
    "JsonDoneRecord",
    "MemoryDoneRecord",
    "block_key",
    "execute_copy",
    "plan_copy",
]
