"""georax.catalog: catalogs of rasters, the slices they yield, and loading slices as GeoTensors.

The seeds' ``geocatalog``: ``open_catalog(path)`` reads GeoParquet, CSV, STAC or a folder of
COGs into a :class:`Catalog`; queries (bounding box in any CRS, time, properties), sampling and
random chips yield :class:`GeoSlice` values; :func:`load_raster` turns a slice into a
:class:`~georax.GeoTensor` on exactly the slice's grid. A GeoSlice is frozen, JSON-friendly and
hashed, so it crosses process and orchestrator boundaries (seed cases 2, 7 and 12).
"""

from georax.catalog.errors import (
    CatalogError,
    CatalogFormatError,
    CatalogNotFoundError,
    CatalogQueryError,
    EmptyQueryError,
    SliceError,
    SliceTooLargeError,
)
from georax.catalog.formats import open_catalog, scan_rasters
from georax.catalog.geoslice import MAX_SLICE_EXTENT, GeoSlice, canonical_crs, canonical_time
from georax.catalog.loading import DEFAULT_READ_BUDGET, RasterLoader, load_raster
from georax.catalog.table import CORE_COLUMNS, Catalog, CatalogRow

__all__ = [
    "CORE_COLUMNS",
    "DEFAULT_READ_BUDGET",
    "MAX_SLICE_EXTENT",
    "Catalog",
    "CatalogError",
    "CatalogFormatError",
    "CatalogNotFoundError",
    "CatalogQueryError",
    "CatalogRow",
    "EmptyQueryError",
    "GeoSlice",
    "RasterLoader",
    "SliceError",
    "SliceTooLargeError",
    "canonical_crs",
    "canonical_time",
    "load_raster",
    "open_catalog",
    "scan_rasters",
]
