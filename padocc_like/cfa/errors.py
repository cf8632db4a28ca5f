"""Errors of the CF aggregation reader.

They derive from the package's hierarchy (:mod:`padocc_like.errors`), keep the parent's
``kind`` (so state records stay within :class:`~padocc_like.errors.ErrorKind`) and add a
stable, append-only ``code`` that names the CFA failure more precisely.
"""

from __future__ import annotations

from typing import ClassVar

from padocc_like.errors import ErrorKind, ProductError


class CFAError(ProductError):
    """An aggregation file, or one of its fragments, cannot be read as the conventions say."""

    code: ClassVar[str] = "cfa"


class InvalidAggregationError(CFAError, ValueError):
    """The aggregation file breaks the CF aggregation conventions (names file and variable)."""

    code: ClassVar[str] = "cfa-invalid-aggregation"


class FragmentError(CFAError):
    """A fragment cannot be put into the canonical form of its aggregation variable."""

    code: ClassVar[str] = "cfa-fragment"


class FragmentNotFoundError(FragmentError, FileNotFoundError):
    """No location given for a fragment exists."""

    kind = ErrorKind.SOURCE_NOT_FOUND
    code: ClassVar[str] = "cfa-fragment-not-found"


__all__ = ["CFAError", "FragmentError", "FragmentNotFoundError", "InvalidAggregationError"]
