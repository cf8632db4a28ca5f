"""Closed sets used across the package (never compared as bare strings)."""

from __future__ import annotations

from enum import StrEnum


class Phase(StrEnum):
    """The pipeline phases, in order."""

    INIT = "init"
    SCAN = "scan"
    COMPUTE = "compute"
    VALIDATE = "validate"
    FINALISE = "finalise"
    CATALOG = "catalog"

    @property
    def requires(self) -> tuple[Phase, ...]:
        """Phases that must have succeeded before this one runs."""
        order = list(Phase)
        return tuple(order[: order.index(self)])


PHASE_ORDER: tuple[Phase, ...] = tuple(Phase)


class Status(StrEnum):
    """The state of one phase of one project."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class ProductKind(StrEnum):
    """Product kinds; one writer per kind."""

    KERCHUNK = "kerchunk"
    CFA = "cfa"
    ZARR = "zarr"


class ValidationMode(StrEnum):
    """How much of the data validation reads."""

    FULL = "full"
    SAMPLED = "sampled"


class Verdict(StrEnum):
    """The outcome of validating one product."""

    PASS = "pass"
    FAIL = "fail"
