"""georax: a JAX-first, differentiable operator framework for geospatial raster pipelines.

``import georax as gx`` gives the operator algebra (``gx.Sequential``, ``gx.Graph``, ``gx.Input``,
``gx.Tap``, ``gx.Lambda``, ``gx.Identity``, ``gx.ModelOp``), the carrier (``gx.GeoTensor``) and
the error types (``gx.errors``).
"""

from georax import errors
from georax.core import (
    Graph,
    Identity,
    Input,
    Lambda,
    ModelOp,
    Operator,
    Sequential,
    Tap,
    registry,
)
from georax.tensor import GeoTensor

__version__ = "0.1.0"

__all__ = [
    "GeoTensor",
    "Graph",
    "Identity",
    "Input",
    "Lambda",
    "ModelOp",
    "Operator",
    "Sequential",
    "Tap",
    "errors",
    "registry",
]
