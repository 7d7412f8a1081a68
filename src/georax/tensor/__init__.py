"""georax.tensor: the GeoTensor carrier."""

from georax.tensor.buffers import as_jax_array
from georax.tensor.geotensor import (
    BoundingBox,
    GeoTensor,
    GeoTensorRequiredError,
    apply_transform,
    crs_equal,
    require_geotensor,
    window_transform,
)

__all__ = [
    "BoundingBox",
    "GeoTensor",
    "GeoTensorRequiredError",
    "apply_transform",
    "as_jax_array",
    "crs_equal",
    "require_geotensor",
    "window_transform",
]
