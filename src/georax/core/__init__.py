"""georax.core: the operator algebra (Operator, combinators, Graph, ModelOp), config and errors."""

from georax.core import registry
from georax.core.carrier import Carrier, map_values, values_of
from georax.core.combinators import Identity, Lambda, Sequential, Tap
from georax.core.errors import (
    AbstractTargetError,
    BudgetExceededError,
    ConfigError,
    DataError,
    GeoraxError,
    GraphError,
    LoaderError,
    MissingKeyError,
    PricingTimeoutError,
    SerializationError,
    ShapeError,
    UntrustedTargetError,
)
from georax.core.graph import Graph
from georax.core.model import ModelOp
from georax.core.operator import (
    GetItem,
    Input,
    Node,
    Operator,
    as_tuple,
    derived,
    leaf,
    optional_leaf,
    static,
)

__all__ = [
    "AbstractTargetError",
    "BudgetExceededError",
    "Carrier",
    "ConfigError",
    "DataError",
    "GeoraxError",
    "GetItem",
    "Graph",
    "GraphError",
    "Identity",
    "Input",
    "Lambda",
    "LoaderError",
    "MissingKeyError",
    "ModelOp",
    "Node",
    "Operator",
    "PricingTimeoutError",
    "SerializationError",
    "Sequential",
    "ShapeError",
    "Tap",
    "UntrustedTargetError",
    "as_tuple",
    "derived",
    "leaf",
    "map_values",
    "optional_leaf",
    "registry",
    "static",
    "values_of",
]

for _cls in (Sequential, Identity, Lambda, Tap, GetItem, Graph, ModelOp):
    registry.alias(f"georax.{_cls.__name__}", _cls)
