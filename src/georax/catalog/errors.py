"""Errors of :mod:`georax.catalog`: bad slices, unreadable catalogs, impossible queries.

Each derives from :class:`~georax.errors.GeoraxError` and from the builtin a caller would catch
(``ValueError`` for bad values, ``OSError`` for files). Messages name the slice field, the
catalog file or the column, and the problem. Raster read failures keep the types of
:mod:`georax.io.errors` (``RasterNotFoundError``, ``CorruptRasterError``...).
"""

from __future__ import annotations

from georax.core.errors import GeoraxError

__all__ = [
    "CatalogError",
    "CatalogFormatError",
    "CatalogNotFoundError",
    "CatalogQueryError",
    "EmptyQueryError",
    "SliceError",
    "SliceTooLargeError",
]


class CatalogError(GeoraxError, ValueError):
    """Base class of the catalog errors (they pickle like every georax error)."""


class SliceError(CatalogError):
    """A :class:`~georax.catalog.GeoSlice` is inconsistent or cannot be built.

    Attributes:
        field: the offending field (``"bounds"``, ``"crs"``, ``"shape"``...), or ``None``.
    """

    def __init__(self, field: str | None, problem: str) -> None:
        self.field = field
        self.problem = problem
        where = f"GeoSlice.{field}" if field else "GeoSlice"
        super().__init__(f"{where}: {problem}")


class SliceTooLargeError(CatalogError):
    """Loading a slice would allocate more than the read budget allows.

    Attributes:
        required: bytes the read would allocate.
        budget: the allowed bytes.
    """

    def __init__(self, uri: str, required: int, budget: int) -> None:
        self.uri = uri
        self.required = required
        self.budget = budget
        super().__init__(
            f"{uri}: reading this slice needs {required} bytes, over the read budget of "
            f"{budget} bytes (pass max_bytes= to load_raster to raise it)"
        )


class CatalogNotFoundError(CatalogError, FileNotFoundError):
    """The catalog path does not exist."""


class CatalogFormatError(CatalogError):
    """The file is not a catalog georax can read (format, columns or values)."""


class CatalogQueryError(CatalogError):
    """A query, sample or tile request cannot be answered as asked (unknown column...)."""


class EmptyQueryError(CatalogQueryError):
    """No catalog row matches where at least one is needed (a tile with no scene under it)."""
