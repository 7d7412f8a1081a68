"""georax: a JAX-first, differentiable operator framework for geospatial raster pipelines.

``import georax as gx`` gives the operator algebra (``gx.Sequential``, ``gx.Graph``, ``gx.Input``,
``gx.Tap``, ``gx.Lambda``, ``gx.Identity``, ``gx.ModelOp``), the carrier (``gx.GeoTensor``),
config and artifacts (``gx.dumps_yaml``, ``gx.loads_yaml``, ``gx.config_hash``, ``gx.save``,
``gx.load``...), the error types (``gx.errors``) and the layers as subpackages: ``gx.array``,
``gx.io``, ``gx.data``, ``gx.patch``, ``gx.geo`` (``gx.geo.cloud.MaskClouds``...), ``gx.repro``
(frozen, verifiable artifacts), ``gx.diff`` (structural config diffs, A/B regression) and
``gx.learn`` (train steps, ``fit``, checkpoints; flax and orbax load only when used).
"""

# The layers below core are imported so that every operator is registered (YAML loading, the
# sandbox's allow-list) and reachable as gx.geo.cloud.MaskClouds and so on.
from georax import array, data, diff, errors, geo, io, learn, patch, repro
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
from georax.core.budget import check_budget, price
from georax.core.config import from_config, to_config
from georax.core.hashing import config_hash, params_hash, pipeline_digest
from georax.core.params import load, save
from georax.core.yaml_io import dumps_yaml, loads_yaml
from georax.tensor import GeoTensor

__version__ = "0.1.0"

# Catalogs and runs pull in geopandas, pyarrow and pystac; they are imported on first use
# (``gx.catalog``, ``gx.run``) so that ``import georax`` stays fast for a notebook or a worker.
_LAZY = ("catalog", "run")


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return importlib.import_module(f"georax.{name}")
    raise AttributeError(f"module 'georax' has no attribute {name!r}")


#: The layers whose modules define YAML-loadable operators (see DESIGN.md, Layout): what
#: ``georax.registry.discover(georax.OPERATOR_PACKAGES)`` imports at a server's start-up.
OPERATOR_PACKAGES = (
    "georax.core",
    "georax.array",
    "georax.tensor",
    "georax.patch",
    "georax.geo",
    "georax.learn",
)

__all__ = [
    "OPERATOR_PACKAGES",
    "GeoTensor",
    "Graph",
    "Identity",
    "Input",
    "Lambda",
    "ModelOp",
    "Operator",
    "Sequential",
    "Tap",
    "array",
    "catalog",
    "check_budget",
    "config_hash",
    "data",
    "diff",
    "dumps_yaml",
    "errors",
    "from_config",
    "geo",
    "io",
    "learn",
    "load",
    "loads_yaml",
    "params_hash",
    "patch",
    "pipeline_digest",
    "price",
    "registry",
    "repro",
    "run",
    "save",
    "to_config",
]
