"""Stages: thin wiring of plain functions, one module per phase.

``STAGES`` maps each phase to its stage function and its fingerprint function.
"""

from __future__ import annotations

from ..types import Phase
from .base import FingerprintFn, StageFn
from .catalog import catalog_fingerprint, catalog_stage
from .compute import compute_fingerprint, compute_stage
from .init import init_fingerprint, init_stage
from .scan import scan_fingerprint, scan_stage
from .validate import validate_fingerprint, validate_stage

STAGES: dict[Phase, tuple[StageFn, FingerprintFn]] = {
    Phase.INIT: (init_stage, init_fingerprint),
    Phase.SCAN: (scan_stage, scan_fingerprint),
    Phase.COMPUTE: (compute_stage, compute_fingerprint),
    Phase.VALIDATE: (validate_stage, validate_fingerprint),
    Phase.CATALOG: (catalog_stage, catalog_fingerprint),
}
