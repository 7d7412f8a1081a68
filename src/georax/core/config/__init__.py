"""Operator <-> config: the plain, JSON-compatible dict form behind YAML, hashing and the sandbox.

One module per concern:

- :mod:`~georax.core.config.writer` -- operator -> config (:func:`to_config`, the format);
- :mod:`~georax.core.config.variables` -- ``${name}`` placeholders (:func:`substitute_variables`);
- :mod:`~georax.core.config.builder` -- config -> operator (:func:`from_config`);
- the type check of fields lives with the Operator contract, in :mod:`georax.core.typecheck`,
  because Python construction and loading share it.
"""

from georax.core.config.builder import ParamFactory, ParamsRequiredError, from_config
from georax.core.config.variables import MissingVariableError, substitute_variables
from georax.core.config.writer import (
    DTYPES,
    INLINE_MAX,
    config_and_params,
    to_config,
    yaml_forbidden_reason,
)
from georax.core.sandbox import ARRAY, PARAM, TARGET

__all__ = [
    "ARRAY",
    "DTYPES",
    "INLINE_MAX",
    "PARAM",
    "TARGET",
    "MissingVariableError",
    "ParamFactory",
    "ParamsRequiredError",
    "config_and_params",
    "from_config",
    "substitute_variables",
    "to_config",
    "yaml_forbidden_reason",
]
