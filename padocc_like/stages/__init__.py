"""Stages: thin wiring of plain functions, one module per phase.

:func:`stage_for` maps a phase to its stage function and fingerprint function,
importing the stage module only when it is needed (``status`` stays light).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..types import Phase

if TYPE_CHECKING:
    from .base import FingerprintFn, StageFn


def stage_for(phase: Phase) -> tuple[StageFn, FingerprintFn]:
    """The stage and fingerprint functions of ``phase``."""
    module = importlib.import_module(f"{__name__}.{phase}")
    return getattr(module, f"{phase}_stage"), getattr(module, f"{phase}_fingerprint")
