"""georax.tensor: the GeoTensor carrier."""

from georax.tensor.buffers import as_jax_array
from georax.tensor.geotensor import (
    BoundingBox,
    GeoTensor,
    GeoTensorRequiredError,
    crs_equal,
    require_geotensor,
)

__all__ = [
    "BoundingBox",
    "GeoTensor",
    "GeoTensorRequiredError",
    "as_jax_array",
    "crs_equal",
    "require_geotensor",
]
