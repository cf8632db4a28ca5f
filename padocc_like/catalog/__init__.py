"""STAC catalog output: Items and Collections for validated products, validated offline.

Importing this package is cheap: pystac, xarray and jsonschema load only when used.
"""

from .stac import build_collection, build_item, summarise_dataset, validate_stac

__all__ = ["build_collection", "build_item", "summarise_dataset", "validate_stac"]
