"""georax.io: raster read/write (rasterio, COG) and xarray interop.

A host boundary (see :mod:`georax.io.raster`): files become :class:`~georax.GeoTensor` values
before a compiled pipeline runs, and go back to disk after it.

- :func:`read`, :func:`iter_blocks`, :func:`info`: reading, with special files refused and every
  allocation priced against the read budget (:func:`read_budget`, :mod:`georax.io.budget`).
- :func:`write`, :func:`write_cog`, :func:`strip_writer`: atomic writes
  (:func:`atomic_destination`), whole or strip by strip.
- :func:`to_xarray`, :func:`from_xarray`: rioxarray-compatible DataArrays.
"""

from georax.io import budget, errors, files, strips
from georax.io.budget import MAX_BANDS, read_budget, set_default_read_budget
from georax.io.errors import (
    BandIndexError,
    CorruptRasterError,
    CRSMismatchError,
    RasterDTypeError,
    RasterNotFoundError,
    RasterReadError,
    RasterWriteError,
    ReadBudgetExceededError,
    WindowError,
)
from georax.io.files import atomic_destination
from georax.io.raster import RasterInfo, info, iter_blocks, read, write, write_cog
from georax.io.strips import StripWriter, strip_writer
from georax.io.xarray import from_xarray, to_xarray

__all__ = [
    "MAX_BANDS",
    "BandIndexError",
    "CRSMismatchError",
    "CorruptRasterError",
    "RasterDTypeError",
    "RasterInfo",
    "RasterNotFoundError",
    "RasterReadError",
    "RasterWriteError",
    "ReadBudgetExceededError",
    "StripWriter",
    "WindowError",
    "atomic_destination",
    "budget",
    "errors",
    "files",
    "from_xarray",
    "info",
    "iter_blocks",
    "read",
    "read_budget",
    "set_default_read_budget",
    "strip_writer",
    "strips",
    "to_xarray",
    "write",
    "write_cog",
]
