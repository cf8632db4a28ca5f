"""padocc-like: archives of NetCDF/HDF5 files to validated, catalogued cloud products.

The public Python API lives in :mod:`padocc_like.api`; the CLI is a thin layer over it.
Heavy libraries (xarray, h5py, pystac) are imported only where they are used.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
