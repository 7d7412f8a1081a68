"""The Operator base class and the field helpers every operator is declared with.

An operator is an :class:`equinox.Module`, hence a pytree: array fields are leaves (traced,
differentiable, changing them does not recompile) and fields declared with :func:`static` are part
of the tree structure (config: written to YAML, hashed, changing one recompiles). See DESIGN.md,
principles 1-2 and "The Operator contract".
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from georax.core.errors import ConfigError, GraphError, MissingKeyError
from georax.core.registry import register

if TYPE_CHECKING:
    from georax.core.sandbox import Limits

_DERIVED = "georax_derived"


# --------------------------------------------------------------------------------------
# Field helpers
# --------------------------------------------------------------------------------------
def static(default: Any = dataclasses.MISSING, **kwargs: Any) -> Any:
    """Declare a static (config) field: part of the tree structure, written to YAML, hashed.

    Use for structural settings: band indices, window sizes, modes, shapes. Changing one
    recompiles a jitted pipeline.
    """
    return eqx.field(static=True, default=default, **kwargs)


def as_tuple(value: Any) -> Any:
    """Converter for static sequence fields: lists (also nested) become tuples.

    Static fields must be hashable, and YAML gives back lists; converting in the operator means a
    loaded operator equals (and hashes like) the one that was saved.
    """
    if isinstance(value, list | tuple):
        return tuple(as_tuple(v) for v in value)
    return value


def _to_leaf(value: Any) -> Any:
    # Python numbers and lists become float32 arrays (parameters are meant to be differentiable);
    # arrays and tracers pass through untouched, keeping their dtype, so vmap/grad over operator
    # parameters keep working.
    if isinstance(value, jax.Array | np.ndarray):
        return value
    arr = np.asarray(value)
    return jnp.asarray(arr if arr.dtype.kind in "bOUS" else arr.astype(np.float32))


def leaf(default: Any = dataclasses.MISSING, **kwargs: Any) -> Any:
    """Declare an array-leaf parameter (threshold, gain, weights): traced and differentiable.

    Python scalars and lists are converted to float32 JAX arrays at construction; arrays keep
    their dtype.
    """
    return eqx.field(converter=_to_leaf, default=default, **kwargs)


def derived(static_field: bool = False, **kwargs: Any) -> Any:
    """Declare a field computed in ``__init__`` from other fields (e.g. a colormap LUT).

    Derived fields are left out of the config: loading rebuilds them by calling ``__init__``
    with the remaining fields, so ``cls(**config)`` must reconstruct the operator.
    """
    return eqx.field(static=static_field, metadata={_DERIVED: True}, **kwargs)


def config_field_names(cls_or_op: Any) -> tuple[str, ...]:
    """Names of the fields that make up an operator's config (init fields, minus derived)."""
    return tuple(
        f.name
        for f in dataclasses.fields(cls_or_op)
        if f.init and not f.metadata.get(_DERIVED, False)
    )


# --------------------------------------------------------------------------------------
# Graph nodes (functional graph building, the seeds' case 11)
# --------------------------------------------------------------------------------------
class Node:
    """A symbolic value in a graph under construction: an operator applied to other nodes.

    Calling an operator on a node (instead of on data) returns a new node; :class:`georax.Graph`
    turns a set of output nodes into a compiled, validated program.
    """

    __slots__ = ("args", "kwargs", "op")

    def __init__(self, op: Operator | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.op = op
        self.args = args
        self.kwargs = kwargs

    def __getitem__(self, item: str | int) -> Node:
        """Select one output of a node whose value is a dict or tuple (e.g. a nested Graph)."""
        from georax.core.combinators import GetItem

        return GetItem(item)(self)

    def __repr__(self) -> str:
        name = type(self.op).__name__ if self.op is not None else "?"
        return f"Node({name}, {len(self.args)} args)"


class Input(Node):
    """A named graph input: ``Input("optical")``."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name.isidentifier():
            raise GraphError(f"Input name must be a Python identifier, got {name!r}")
        super().__init__(None, (), {})
        self.name = name

    def __repr__(self) -> str:
        return f"Input({self.name!r})"


def _has_node(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    return any(isinstance(a, Node) for a in args) or any(
        isinstance(v, Node) for v in kwargs.values()
    )


def _graph_aware(call: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a subclass ``__call__``: data runs it, graph nodes build a new node."""
    signature = inspect.signature(call)

    @functools.wraps(call)
    def __call__(self: Operator, *args: Any, **kwargs: Any) -> Any:
        if _has_node(args, kwargs):
            if "key" in kwargs:
                raise GraphError(f"{type(self).__name__}: pass `key` when running the Graph")
            try:
                signature.bind(self, *args, **kwargs)
            except TypeError as e:
                raise GraphError(
                    f"{type(self).__name__} called with {len(args)} positional and "
                    f"{sorted(kwargs)} keyword inputs: {e}"
                ) from None
            return Node(self, args, kwargs)
        if self.requires_key and kwargs.get("key") is None:
            raise MissingKeyError(
                f"{type(self).__name__} is stochastic and needs an explicit `key=` "
                "(jax.random.key(...)); no hidden RNG state (DESIGN.md principle 3)"
            )
        return call(self, *args, **kwargs)

    __call__.__georax_wrapped__ = True  # type: ignore[attr-defined]
    return __call__


# --------------------------------------------------------------------------------------
# Operator
# --------------------------------------------------------------------------------------
class Operator(eqx.Module):
    """Base class of every georax operator.

    Subclasses declare fields (with :func:`static` for config, :func:`leaf` for parameters, or
    a sub-operator / model as a pytree child) and implement ``__call__(self, x, *, key=None)``.

    - Calling on data runs the operator; calling on a :class:`Node` returns a node (graph
      building).
    - Config is derived from the fields; there is no hand-written ``get_config``.
    - Each concrete subclass is registered under its import path when defined, which is what YAML
      loading and the sandbox consult.
    - Invalid field values should be refused in ``__check_init__`` with :meth:`fail`, which
      raises a :class:`~georax.errors.ConfigError` naming the operator, field and value.

    Class attributes:

    - `forbid_in_yaml`: the operator holds a closure or runtime object and cannot be serialised
      (``Lambda``, ``Tap``, ``ModelOp`` around an arbitrary callable).
    - `requires_key`: the operator is stochastic; calling it without ``key=`` is an error.
    """

    forbid_in_yaml: ClassVar[bool] = False
    requires_key: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        call = cls.__dict__.get("__call__")
        if call is not None and not getattr(call, "__georax_wrapped__", False):
            cls.__call__ = _graph_aware(call)  # type: ignore[method-assign]
        register(cls)

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not implement __call__")

    def precheck(self, shape: tuple[int, ...], limits: Limits) -> tuple[int, ...]:
        """Refuse, without tracing, a config whose cost is unbounded for an input of ``shape``.

        The sandboxed loader calls this before it traces anything, because tracing time and
        host allocations grow with config values (a window of 10**9 pixels pads a scene in a
        Python loop; a chip of 8192**2 builds its window weights on the host). Override it in
        operators whose config sizes, windows, margins, grids or loop counts scale their cost,
        compare them with ``limits`` (``max_extent``, ``max_host_bytes``, ``max_trace_steps``)
        and raise a georax error naming the field (:class:`~georax.errors.ShapeError` for an
        impossible combination with the input, :class:`~georax.errors.BudgetExceededError`
        for a cost over a limit). Containers call it on their children.

        **Arguments:**

        - `shape`: an upper bound on the shape of the input, bands-first ``(..., H, W)``.
        - `limits`: the loader's :class:`~georax.core.sandbox.Limits`.

        **Returns:** an upper bound on the output shape (default: ``shape``, for operators that
        do not grow their input).
        """
        del limits
        return shape

    def __hash__(self) -> int:
        # Structural hash when every field is hashable (pure-config operators); identity otherwise.
        # The identity fallback lets `jax.jit(pipe)` accept a pipeline holding arrays (it hashes
        # its callable); equal-but-distinct such pipelines then merely miss each other's cache.
        try:
            return hash((type(self), *(getattr(self, f.name) for f in dataclasses.fields(self))))
        except TypeError:
            return id(self)

    @property
    def display_name(self) -> str:
        """A short human name for tables and messages: the class name.

        (Not ``name``: many operators have a config field called ``name``.)
        """
        return type(self).__name__

    def fail(self, field: str | None, problem: str) -> None:
        """Raise a :class:`ConfigError` naming ``field``; call it from ``__check_init__``."""
        value = getattr(self, field) if field else None
        raise ConfigError(type(self).__name__, field, value, problem)

    def config_fields(self) -> dict[str, Any]:
        """The operator's config: ``{field name: value}`` for every non-derived init field."""
        return {name: getattr(self, name) for name in config_field_names(self)}
