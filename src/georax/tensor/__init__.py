"""georax.tensor: the GeoTensor carrier."""

from georax.tensor.buffers import as_jax_array
from georax.tensor.geotensor import (
    BoundingBox,
    GeoTensor,
    GeoTensorRequiredError,
    apply_transform,
    canonical_nan,
    require_geotensor,
    window_transform,
)
from georax.tensor.grid import Grid, MissingGeoreferenceError, crs_equal, grid_of

__all__ = [
    "BoundingBox",
    "GeoTensor",
    "GeoTensorRequiredError",
    "Grid",
    "MissingGeoreferenceError",
    "apply_transform",
    "as_jax_array",
    "canonical_nan",
    "crs_equal",
    "grid_of",
    "require_geotensor",
    "window_transform",
]
