"""georax.io: raster read/write (rasterio, COG) and xarray interop.

A host boundary (see :mod:`georax.io.raster`): files become :class:`~georax.GeoTensor` values
before a compiled pipeline runs, and go back to disk after it.
"""

from georax.io import errors
from georax.io.errors import (
    BandIndexError,
    CorruptRasterError,
    CRSMismatchError,
    RasterDTypeError,
    RasterNotFoundError,
    RasterReadError,
    RasterWriteError,
    WindowError,
)
from georax.io.raster import RasterInfo, info, iter_blocks, read, write, write_cog
from georax.io.xarray import from_xarray, to_xarray

__all__ = [
    "BandIndexError",
    "CRSMismatchError",
    "CorruptRasterError",
    "RasterDTypeError",
    "RasterInfo",
    "RasterNotFoundError",
    "RasterReadError",
    "RasterWriteError",
    "WindowError",
    "errors",
    "from_xarray",
    "info",
    "iter_blocks",
    "read",
    "to_xarray",
    "write",
    "write_cog",
]
