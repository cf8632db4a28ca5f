"""Choosing the chunk layout of a Zarr product from an access pattern and a target size.

Chunk layout changes read cost about 10x either way (one map vs one point's
time series), so it follows how people read the product:

``maps``
    whole horizontal planes (every non-time dimension full) with as many time
    steps as fit the target; when one plane alone exceeds the target, the
    largest plane dimensions are split evenly (near-square tiles) until it fits.
``timeseries``
    the full time axis in every chunk, the other dimensions split into
    near-square tiles so that the chunk fits the target.
``balanced``
    about the same number of chunks along every dimension (a cube-root style
    split), as few chunks as the target allows.

Sizes are planned in uncompressed bytes. A chunk never exceeds the target
except when the pattern's *minimal chunk* does: one element for ``maps`` and
``balanced``, one point's full time series (the time length x itemsize) for
``timeseries``; the chunk is then exactly that minimal chunk. Dimensions of
length 0 get chunk 1 (Zarr needs positive chunks) and count as length 1 when
planning. Configured chunks override the automatic choice dimension by
dimension; dimensions left out are chosen by the pattern around them, and
configured chunks may exceed the target (the reason says so).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import ConfigError

DEFAULT_TARGET_BYTES = 8 * 1024 * 1024
"""Default uncompressed chunk size: inside the 1-16 MB range that reads well from object stores."""

PATTERNS = ("maps", "timeseries", "balanced")
"""The access patterns :func:`choose_chunks` knows."""

TIME_DIM_NAME = "time"


@dataclass(frozen=True)
class ChunkChoice:
    """A chosen chunk shape and why: recorded in project state."""

    chunks: tuple[int, ...]
    pattern: str
    target_bytes: int
    chunk_bytes: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON form (chunks as a list)."""
        out = asdict(self)
        out["chunks"] = list(self.chunks)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChunkChoice:
        """Inverse of :meth:`to_dict`."""
        return cls(
            chunks=tuple(int(c) for c in data["chunks"]),
            pattern=str(data["pattern"]),
            target_bytes=int(data["target_bytes"]),
            chunk_bytes=int(data["chunk_bytes"]),
            reason=str(data["reason"]),
        )


def format_bytes(n: int) -> str:
    """A byte count for people: ``253 KiB``, ``1.5 MiB``, ``512 B``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.3g} {unit}" if value < 1000 else f"{value:.0f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def choose_chunks(
    shape: Sequence[int],
    dims: Sequence[str],
    itemsize: int,
    *,
    pattern: str,
    target_bytes: int = DEFAULT_TARGET_BYTES,
    time_dim: str | None = None,
    configured: Mapping[str, int | None] | None = None,
) -> ChunkChoice:
    """Choose the chunk shape of one variable.

    Parameters
    ----------
    shape, dims
        The variable's shape and dimension names (same length; scalars are ``()``).
    itemsize
        Bytes per element of the stored dtype.
    pattern
        One of :data:`PATTERNS`.
    target_bytes
        Target uncompressed chunk size.
    time_dim
        The time (record) dimension. ``None`` means ``"time"`` when the variable
        has it, else its first dimension. A name the variable does not have means
        it has no time axis (a coordinate, a mask): it is chunked as one plane.
    configured
        Chunk sizes from configuration, by dimension name; ``-1`` or ``None``
        means the full length. Unnamed dimensions are chosen by the pattern.

    Raises
    ------
    ConfigError
        Unknown pattern, non-positive target, or a configured chunk that names an
        unknown dimension or is not a size from 1 to the dimension's length.
    ValueError
        ``shape`` and ``dims`` disagree, or ``itemsize`` is not positive.
    """
    shape_t = tuple(operator.index(n) for n in shape)
    dims_t = tuple(dims)
    if len(shape_t) != len(dims_t):
        raise ValueError(f"shape {shape_t} has {len(shape_t)} dimensions but dims {dims_t} has {len(dims_t)}")
    if len(set(dims_t)) != len(dims_t):
        raise ValueError(f"dimension names must be unique, got {dims_t}")
    if any(n < 0 for n in shape_t):
        raise ValueError(f"shape {shape_t} has a negative length")
    if operator.index(itemsize) < 1:
        raise ValueError(f"itemsize must be a positive number of bytes, got {itemsize}")
    if pattern not in PATTERNS:
        raise ConfigError(f"unknown chunk pattern {pattern!r}; expected one of {', '.join(PATTERNS)}")
    if operator.index(target_bytes) < 1:
        raise ConfigError(f"target chunk size must be a positive number of bytes, got {target_bytes}")

    fixed = _parse_configured(configured, shape_t, dims_t)
    lengths = tuple(max(n, 1) for n in shape_t)
    budget = target_bytes // itemsize  # elements per chunk; 0 when one element exceeds the target
    time_axis = _time_axis(dims_t, time_dim)

    if not shape_t:
        chunks: tuple[int, ...] = ()
        detail = f"scalar variable, one chunk of one element ({format_bytes(itemsize)})."
    elif pattern == "maps":
        chunks = _maps(lengths, time_axis, budget, fixed)
    elif pattern == "timeseries":
        chunks = _timeseries(lengths, time_axis, budget, fixed)
    else:
        chunks = _balanced(lengths, budget, fixed)
    chunk_bytes = math.prod(chunks) * itemsize

    if shape_t:
        if fixed:
            detail = _configured_reason(chunks, dims_t, fixed, chunk_bytes, target_bytes, pattern)
        elif pattern == "maps":
            detail = _maps_reason(chunks, dims_t, lengths, time_axis, itemsize, target_bytes)
        elif pattern == "timeseries":
            detail = _timeseries_reason(chunks, dims_t, lengths, time_axis, itemsize, target_bytes)
        else:
            detail = _balanced_reason(chunks, lengths, chunk_bytes, target_bytes)
    return ChunkChoice(
        chunks=chunks,
        pattern=pattern,
        target_bytes=target_bytes,
        chunk_bytes=chunk_bytes,
        reason=f"{pattern}: {detail}",
    )


# --- validation ----------------------------------------------------------------


def _parse_configured(
    configured: Mapping[str, int | None] | None, shape: tuple[int, ...], dims: tuple[str, ...]
) -> dict[int, int]:
    """Configured chunks by axis, validated; full-length requests resolved."""
    if not configured:
        return {}
    fixed: dict[int, int] = {}
    for name, size in configured.items():
        if name not in dims:
            raise ConfigError(
                f"configured chunks name dimension {name!r}, which the variable does not have "
                f"(its dimensions: {', '.join(dims) or 'none, it is a scalar'})"
            )
        axis = dims.index(name)
        length = max(shape[axis], 1)
        if size is None or (not isinstance(size, bool) and isinstance(size, int) and size == -1):
            fixed[axis] = length
            continue
        try:
            value = operator.index(size) if not isinstance(size, bool) else None
        except TypeError:
            value = None
        if value is None or not 1 <= value <= length:
            raise ConfigError(
                f"configured chunk for dimension {name!r} must be an integer from 1 to its length "
                f"{shape[axis]} (or -1/None for the full length), got {size!r}"
            )
        fixed[axis] = value
    return fixed


def _time_axis(dims: tuple[str, ...], time_dim: str | None) -> int | None:
    if not dims:
        return None
    if time_dim is None:
        return dims.index(TIME_DIM_NAME) if TIME_DIM_NAME in dims else 0
    return dims.index(time_dim) if time_dim in dims else None


# --- the three patterns ---------------------------------------------------------


def _tile(lengths: Sequence[int], budget: int) -> list[int]:
    """Near-square tiles of ``lengths`` (all >= 1) holding at most ``budget`` elements.

    The largest dimensions are split first: every chunk edge is capped at a
    common size ``c``, the largest that fits, then evened out (``ceil(n / pieces)``)
    and grown again where the leftover budget allows. All ones when ``budget < 1``.
    """
    lengths = list(lengths)
    if math.prod(lengths) <= budget:
        return lengths
    if budget < 1:
        return [1] * len(lengths)
    lo, hi = 1, max(lengths)  # prod(min(c, n)) grows with c; lo always fits, hi never does
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if math.prod(min(mid, n) for n in lengths) <= budget:
            lo = mid
        else:
            hi = mid
    chunks = [_even(n, min(lo, n)) for n in lengths]
    for axis in reversed(range(len(lengths))):  # last axis first: longer contiguous runs
        others = math.prod(chunks) // chunks[axis]
        room = min(lengths[axis], budget // others)
        if room > chunks[axis]:
            chunks[axis] = _even(lengths[axis], room)
    return chunks


def _even(length: int, at_most: int) -> int:
    """The chunk that splits ``length`` into as few near-equal pieces of at most ``at_most``."""
    pieces = -(-length // at_most)
    return -(-length // pieces)


def _maps(
    lengths: tuple[int, ...], time_axis: int | None, budget: int, fixed: dict[int, int]
) -> tuple[int, ...]:
    chunks = [0] * len(lengths)
    plane_axes = [a for a in range(len(lengths)) if a != time_axis]
    free = [a for a in plane_axes if a not in fixed]
    held = math.prod(fixed[a] for a in plane_axes if a in fixed)
    if time_axis is not None and time_axis in fixed:
        held *= fixed[time_axis]
    for axis, size in zip(free, _tile([lengths[a] for a in free], budget // held), strict=True):
        chunks[axis] = size
    for axis, size in fixed.items():
        chunks[axis] = size
    if time_axis is not None and time_axis not in fixed:
        plane = math.prod(chunks[a] for a in plane_axes)
        split = any(chunks[a] < lengths[a] for a in free)  # planes split: one step per chunk
        chunks[time_axis] = 1 if split else min(lengths[time_axis], max(1, budget // plane))
    return tuple(chunks)


def _timeseries(
    lengths: tuple[int, ...], time_axis: int | None, budget: int, fixed: dict[int, int]
) -> tuple[int, ...]:
    chunks = [0] * len(lengths)
    for axis, size in fixed.items():
        chunks[axis] = size
    if time_axis is not None and time_axis not in fixed:
        chunks[time_axis] = lengths[time_axis]
    free = [a for a in range(len(lengths)) if not chunks[a]]
    held = math.prod(c for c in chunks if c)
    for axis, size in zip(free, _tile([lengths[a] for a in free], budget // held), strict=True):
        chunks[axis] = size
    return tuple(chunks)


def _balanced(lengths: tuple[int, ...], budget: int, fixed: dict[int, int]) -> tuple[int, ...]:
    chunks = [fixed.get(a, 0) for a in range(len(lengths))]
    free = [a for a in range(len(lengths)) if a not in fixed]
    free_lengths = [lengths[a] for a in free]
    room = budget // math.prod(fixed.values()) if fixed else budget
    if math.prod(free_lengths) <= room:
        sizes = free_lengths
    elif room < 1:
        sizes = [1] * len(free)
    else:
        sizes = [-(-n // min(_balanced_pieces(free_lengths, room), n)) for n in free_lengths]
    for axis, size in zip(free, sizes, strict=True):
        chunks[axis] = size
    return tuple(chunks)


def _balanced_pieces(lengths: Sequence[int], budget: int) -> int:
    """The fewest pieces ``k`` per dimension such that chunks ``ceil(n / min(k, n))`` fit ``budget``."""

    def fits(k: int) -> bool:
        return math.prod(-(-n // min(k, n)) for n in lengths) <= budget

    lo, hi = 0, max(lengths)  # fits(hi) holds (all chunks 1, budget >= 1); fits(lo) is treated as false
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            hi = mid
        else:
            lo = mid
    return hi


# --- reasons ---------------------------------------------------------------------


def _shape_text(sizes: Sequence[int]) -> str:
    return "x".join(str(s) for s in sizes)


def _maps_reason(
    chunks: tuple[int, ...],
    dims: tuple[str, ...],
    lengths: tuple[int, ...],
    time_axis: int | None,
    itemsize: int,
    target: int,
) -> str:
    plane_axes = [a for a in range(len(dims)) if a != time_axis]
    plane_dims = "/".join(dims[a] for a in plane_axes)
    plane_shape = _shape_text(lengths[a] for a in plane_axes)
    plane_bytes = math.prod(lengths[a] for a in plane_axes) * itemsize
    size = format_bytes(math.prod(chunks) * itemsize)
    tile = _shape_text(chunks[a] for a in plane_axes)
    whole = all(chunks[a] == lengths[a] for a in plane_axes)
    if time_axis is None:
        if whole:
            return f"no time dimension; the whole {plane_shape} array in one chunk ({size}), within the {format_bytes(target)} target."
        return f"no time dimension; {plane_dims} split into {tile} tiles ({size}) because the whole array ({format_bytes(plane_bytes)}) exceeds the {format_bytes(target)} target."
    steps = chunks[time_axis]
    step_text = "one time step" if steps == 1 else f"{steps} time steps"
    if not plane_axes:
        fit = "all of them fit" if steps == lengths[time_axis] else "as many as fit"
        return (
            f"{step_text} of {dims[time_axis]!r} per chunk ({size}); {fit} the {format_bytes(target)} target."
        )
    if whole:
        nt = lengths[time_axis]
        fit = (
            "as many steps as fit"
            if steps < nt
            else "the single step fits"
            if nt == 1
            else f"all {nt} steps fit"
        )
        return f"{step_text} of {plane_shape} per chunk ({size}), whole {plane_dims} planes; {fit} the {format_bytes(target)} target."
    return (
        f"one time step per chunk, {plane_dims} split into {tile} tiles ({size}) because one whole "
        f"{plane_shape} plane ({format_bytes(plane_bytes)}) exceeds the {format_bytes(target)} target."
    )


def _timeseries_reason(
    chunks: tuple[int, ...],
    dims: tuple[str, ...],
    lengths: tuple[int, ...],
    time_axis: int | None,
    itemsize: int,
    target: int,
) -> str:
    size = format_bytes(math.prod(chunks) * itemsize)
    other_axes = [a for a in range(len(dims)) if a != time_axis]
    tile = _shape_text(chunks[a] for a in other_axes)
    other_dims = "/".join(dims[a] for a in other_axes)
    if time_axis is None:
        return f"no time dimension; {other_dims} in {tile} tiles ({size}) within the {format_bytes(target)} target."
    nt = lengths[time_axis]
    head = f"the full time axis ({nt} steps of {dims[time_axis]!r}) in every chunk"
    if not other_axes:
        over = (
            " (more than the target: the full series is the smallest chunk)" if nt * itemsize > target else ""
        )
        return f"{head} ({size}){over}; the {format_bytes(target)} target."
    series = nt * itemsize
    if series > target:
        return (
            f"{head}, one point per chunk ({size}): one point's full series ({format_bytes(series)}) "
            f"already exceeds the {format_bytes(target)} target."
        )
    return f"{head}, {other_dims} in {tile} tiles ({size}) so that one point's series is one chunk within the {format_bytes(target)} target."


def _balanced_reason(chunks: tuple[int, ...], lengths: tuple[int, ...], chunk_bytes: int, target: int) -> str:
    counts = [-(-n // c) for n, c in zip(lengths, chunks, strict=True)]
    size = format_bytes(chunk_bytes)
    if math.prod(counts) == 1:
        return f"the whole {_shape_text(lengths)} array in one chunk ({size}), within the {format_bytes(target)} target."
    over = " (one element already exceeds the target)" if chunk_bytes > target else ""
    return (
        f"chunks of {_shape_text(chunks)} ({size}), {_shape_text(counts)} chunks along the dimensions, "
        f"about as many along each as the {format_bytes(target)} target allows{over}."
    )


def _configured_reason(
    chunks: tuple[int, ...],
    dims: tuple[str, ...],
    fixed: dict[int, int],
    chunk_bytes: int,
    target: int,
    pattern: str,
) -> str:
    set_text = ", ".join(f"{dims[a]}={fixed[a]}" for a in sorted(fixed))
    free = [dims[a] for a in range(len(dims)) if a not in fixed]
    chosen = f"; {'/'.join(free)} chosen for {pattern} access" if free else ""
    over = (
        f", more than the {format_bytes(target)} target"
        if chunk_bytes > target
        else f", within the {format_bytes(target)} target"
    )
    return f"chunks of {_shape_text(chunks)} ({format_bytes(chunk_bytes)}{over}); {set_text} from configuration{chosen}."


__all__ = ["DEFAULT_TARGET_BYTES", "PATTERNS", "ChunkChoice", "choose_chunks", "format_bytes"]
