"""Publishing finished products: rewrite their references for where consumers read the
sources (:mod:`.rewrite`), then copy them, verified, to a destination store (:mod:`.copy`)."""

from __future__ import annotations

from .copy import CopyRecord, ObjectRecord, copy_product, remove_partial, s3_etag
from .rewrite import (
    RewriteSummary,
    UrlMapping,
    rewrite_cfa,
    rewrite_kerchunk_json,
    rewrite_kerchunk_parquet,
    rewrite_product,
)

__all__ = [
    "CopyRecord",
    "ObjectRecord",
    "RewriteSummary",
    "UrlMapping",
    "copy_product",
    "remove_partial",
    "rewrite_cfa",
    "rewrite_kerchunk_json",
    "rewrite_kerchunk_parquet",
    "rewrite_product",
    "s3_etag",
]
