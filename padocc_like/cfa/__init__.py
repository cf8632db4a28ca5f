"""Reading CF aggregation files ("CFA-netCDF", CF-1.13 section 2.8) with xarray.

``xarray.open_dataset(path, engine="padocc_cfa")`` opens an aggregation file lazily; each
aggregation variable reads only the fragments a request touches. The structure alone is
available from :func:`parse_aggregation`.
"""

from padocc_like.cfa.backend import CFABackendEntrypoint, CFAOptions
from padocc_like.cfa.errors import CFAError, FragmentError, FragmentNotFoundError, InvalidAggregationError
from padocc_like.cfa.parse import (
    AggregationFile,
    AggregationVariable,
    FragmentArray,
    TermSet,
    is_aggregation_file,
    parse_aggregation,
    parse_dataset,
)
from padocc_like.cfa.read import AggregatedArray
from padocc_like.cfa.uris import resolve_uri

ENGINE = "padocc_cfa"
"""The name of the xarray engine."""

__all__ = [
    "ENGINE",
    "AggregatedArray",
    "AggregationFile",
    "AggregationVariable",
    "CFABackendEntrypoint",
    "CFAError",
    "CFAOptions",
    "FragmentArray",
    "FragmentError",
    "FragmentNotFoundError",
    "InvalidAggregationError",
    "TermSet",
    "is_aggregation_file",
    "parse_aggregation",
    "parse_dataset",
    "resolve_uri",
]
