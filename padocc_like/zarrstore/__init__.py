"""Zarr products: chunk layout choice and the bounded-memory rechunking copy.

Groundwork for the ``zarr`` product kind; pure functions, not yet wired into
the pipeline (:mod:`.layout`, :mod:`.copy`).
"""
