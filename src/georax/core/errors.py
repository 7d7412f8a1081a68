"""Typed georax errors.

Every error georax raises on purpose derives from :class:`GeoraxError`, so callers can catch the
library's own failures without swallowing unrelated bugs. Messages name the operator, the field and
the offending value wherever those exist.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "GeoraxError",
    "ConfigError",
    "GraphError",
    "SerializationError",
    "UntrustedTargetError",
    "ShapeError",
    "DataError",
    "MissingKeyError",
]


class GeoraxError(Exception):
    """Base class of every error georax raises deliberately."""


class ConfigError(GeoraxError, ValueError):
    """An operator was constructed (or loaded) with an invalid field value.

    Attributes:
        operator: the operator class name.
        field: the offending field name (or ``None`` if the problem is not field-specific).
        value: the offending value.
    """

    def __init__(self, operator: str, field: str | None, value: Any, problem: str) -> None:
        self.operator = operator
        self.field = field
        self.value = value
        self.problem = problem
        where = f"{operator}.{field}" if field else operator
        super().__init__(f"{where}={value!r}: {problem}")


class GraphError(GeoraxError, ValueError):
    """A Graph is wired incorrectly: a cycle, an undeclared or unused input, a wrong arity."""


class SerializationError(GeoraxError, ValueError):
    """An operator cannot be converted to or from config/YAML."""


class UntrustedTargetError(SerializationError):
    """A YAML ``_target_`` is not in the allow-list of the sandboxed loader.

    Attributes:
        target: the refused ``_target_`` string.
    """

    def __init__(self, target: str, reason: str = "is not in the allowed registry") -> None:
        self.target = target
        super().__init__(f"Operator {target!r} {reason}")


class ShapeError(GeoraxError, ValueError):
    """An input array has the wrong shape, rank or number of bands."""


class DataError(GeoraxError, ValueError):
    """Input data is unusable (NaN scene, wrong dtype, values out of contract)."""


class MissingKeyError(GeoraxError, ValueError):
    """A stochastic operator was called without an explicit ``key=``."""
