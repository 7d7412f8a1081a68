"""georax.tensor: the GeoTensor carrier."""

from georax.tensor.geotensor import GeoTensor

__all__ = ["GeoTensor"]
