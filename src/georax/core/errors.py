"""Typed georax errors.

Every error georax raises on purpose derives from :class:`GeoraxError`, so callers can catch the
library's own failures without swallowing unrelated bugs. Messages name the operator, the field and
the offending value wherever those exist.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AbstractTargetError",
    "BudgetExceededError",
    "ConfigError",
    "DataError",
    "GeoraxError",
    "GraphError",
    "LoaderError",
    "MissingDependencyError",
    "MissingKeyError",
    "PricingTimeoutError",
    "SerializationError",
    "ShapeError",
    "UntrustedTargetError",
]


def _rebuild_error(cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    """Unpickle a georax error without calling its ``__init__`` (see ``GeoraxError.__reduce__``)."""
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class GeoraxError(Exception):
    """Base class of every error georax raises deliberately.

    Errors cross process boundaries (process pools, Dask and orchestrators pickle a failed task's
    exception), so every georax error pickles by its message and attributes, whatever the
    signature of its ``__init__``.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild_error, (type(self), self.args, dict(self.__dict__))


class ConfigError(GeoraxError, ValueError):
    """An operator was constructed (or loaded) with an invalid field value.

    Attributes:
        operator: the operator class name.
        field: the offending field name (or ``None`` if the problem is not field-specific).
        value: the offending value.
        problem: what is wrong with it.
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


class AbstractTargetError(UntrustedTargetError):
    """A ``_target_`` names an abstract operator class (a base such as ``Window``).

    Abstract classes are never registered, so they can never be loaded, in or out of the
    sandbox; the message lists the concrete subclasses that can.
    """


class ShapeError(GeoraxError, ValueError):
    """An input array has the wrong shape, rank or number of bands."""


class DataError(GeoraxError, ValueError):
    """Input data is unusable (NaN scene, wrong dtype, values out of contract)."""


class MissingKeyError(GeoraxError, ValueError):
    """A stochastic operator was called without an explicit ``key=``."""


class BudgetExceededError(GeoraxError, ValueError):
    """A pipeline would cost more than a budget or limit allows for the given input.

    Attributes:
        required: what the pipeline would need at ``stage`` (a lower bound of the total).
        budget: the budget or limit.
        stage: which estimate exceeded it: ``"input"``, ``"params"``, ``"constants"``,
            ``"output"``, ``"intermediate"``, ``"compiled"`` (bytes); ``"flops"`` (floating-point
            operations); ``"trace"`` (operations in the traced program); ``"precheck"`` (a
            config value checked before tracing, in the unit given).
        unit: ``"bytes"``, ``"flops"`` or any other noun (``"pixels"``, ``"operations"``).
    """

    def __init__(
        self, required: int, budget: int, stage: str, detail: str, *, unit: str | None = None
    ) -> None:
        self.required = required
        self.budget = budget
        self.stage = stage
        self.unit = unit or ("flops" if stage == "flops" else "bytes")
        if self.unit == "bytes":
            need, limit, kind = format_bytes(required), format_bytes(budget), "memory budget"
        elif self.unit == "flops":
            need, limit, kind = f"{required:.3g} FLOPs", f"{budget:.3g} FLOPs", "compute budget"
        else:
            need, limit, kind = f"{required} {self.unit}", f"{budget} {self.unit}", "limit"
        super().__init__(
            f"pipeline refused: {detail} needs {need} (stage: {stage}), over the {kind} of {limit}"
        )


class PricingTimeoutError(BudgetExceededError):
    """Pricing a pipeline (pre-check, trace, compile) took longer than the loader allows.

    ``required`` and ``budget`` are milliseconds; ``stage`` is ``"time"``.
    """


class MissingDependencyError(GeoraxError, ImportError):
    """An optional dependency (e.g. ``spyndex``, ``flax``, ``fastapi``) is needed and not
    installed; the message names the extra that installs it."""


class LoaderError(GeoraxError, RuntimeError):
    """Something other than a georax error went wrong while loading or pricing a document.

    The sandboxed loader promises that only georax errors leave it; an unexpected exception (a
    bug in an operator, a library error) is wrapped in this, naming the stage, and chained.

    Attributes:
        stage: ``"parse"``, ``"build"``, ``"precheck"``, ``"price"`` or ``"verify"``.
    """

    def __init__(self, stage: str, error: BaseException) -> None:
        self.stage = stage
        text = describe_exception(error)
        super().__init__(f"unexpected error while loading (stage: {stage}): {text}")


def describe_exception(error: BaseException) -> str:
    """``"TypeName: first line of the message"``, or the type name alone for an empty message."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def short_repr(value: Any, n: int = 80) -> Any:
    """``value`` itself when its repr is short, else its repr cut to ``n`` characters.

    What error messages show of an offending value: a hostile document can put a megabyte in
    one field, and the message must stay readable.
    """
    text = repr(value)
    return value if len(text) <= n else text[: n - 3] + "..."


def format_bytes(n: int) -> str:
    """Human-readable binary size, e.g. ``1.50 GiB``."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"
