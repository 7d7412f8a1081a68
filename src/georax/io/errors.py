"""Typed errors of :mod:`georax.io`.

Each derives from :class:`~georax.errors.GeoraxError` and from the builtin a caller would naturally
catch (``OSError`` for file problems, ``IndexError`` for a band out of range, ``ValueError`` for a
bad window or CRS, ``TypeError`` for a dtype the format cannot hold). Every message names the path
and the problem.
"""

from __future__ import annotations

from georax.core.errors import GeoraxError

__all__ = [
    "BandIndexError",
    "CRSMismatchError",
    "CorruptRasterError",
    "RasterDTypeError",
    "RasterNotFoundError",
    "RasterReadError",
    "RasterWriteError",
    "WindowError",
]


class RasterReadError(GeoraxError, OSError):
    """A raster could not be opened or read."""


class RasterNotFoundError(RasterReadError, FileNotFoundError):
    """The raster path does not exist."""


class CorruptRasterError(RasterReadError):
    """The file exists but is not a readable raster (truncated, corrupt, wrong format)."""


class RasterWriteError(GeoraxError, OSError):
    """A raster could not be written (the destination is left untouched)."""


class BandIndexError(GeoraxError, IndexError):
    """A requested band (index or name) does not exist in the raster."""


class WindowError(GeoraxError, ValueError):
    """A requested window or bounds lies (partly) outside the raster and boundless is off."""


class CRSMismatchError(GeoraxError, ValueError):
    """A raster's CRS is not the expected one, or a CRS is needed and missing."""


class RasterDTypeError(GeoraxError, TypeError):
    """The data type cannot be stored or produced (e.g. bool to GeoTIFF, nodata out of range)."""
