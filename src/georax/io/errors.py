"""Typed errors of :mod:`georax.io`.

Each derives from :class:`~georax.errors.GeoraxError` and from the builtin a caller would naturally
catch (``OSError`` for file problems, ``IndexError`` for a band out of range, ``ValueError`` for a
bad window or CRS, ``TypeError`` for a dtype the format cannot hold). A read refused by the read
budget is a :class:`~georax.errors.BudgetExceededError`, like every other budget refusal. Every
message names the path and the problem.
"""

from __future__ import annotations

from georax.core.budget import BudgetExceededError, format_bytes
from georax.core.errors import GeoraxError

__all__ = [
    "BandIndexError",
    "CRSMismatchError",
    "CorruptRasterError",
    "RasterDTypeError",
    "RasterNotFoundError",
    "RasterReadError",
    "RasterWriteError",
    "ReadBudgetExceededError",
    "WindowError",
]


class RasterReadError(GeoraxError, OSError):
    """A raster could not be opened or read (including a path that is not a regular file)."""


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
    """A raster's CRS is not the expected one, a CRS is needed and missing, or it cannot be
    parsed."""


class RasterDTypeError(GeoraxError, TypeError):
    """The data type cannot be stored or produced (e.g. bool to GeoTIFF, nodata out of range)."""


class ReadBudgetExceededError(BudgetExceededError):
    """A read would allocate more than the read budget (:mod:`georax.io.budget`) allows.

    Raised before anything is allocated, so a decompression bomb (a small file declaring a huge
    raster) or a boundless read of a huge window costs nothing.

    Attributes:
        path: the raster.
        required: bytes the read would allocate.
        budget: the read budget in bytes.
        stage: ``"read"``.
    """

    def __init__(self, path: str, required: int, budget: int, what: str) -> None:
        self.path = path
        self.required = required
        self.budget = budget
        self.stage = "read"
        self.what = what
        # BudgetExceededError words its message for pipelines; a read names the file instead.
        GeoraxError.__init__(
            self,
            f"{path}: {what} needs {format_bytes(required)} ({required} bytes), over the read "
            f"budget of {format_bytes(budget)}; raise it with max_bytes= or "
            "georax.io.read_budget(...) if this is intended",
        )
