"""The Operator base class and the field helpers every operator is declared with.

An operator is an :class:`equinox.Module`, hence a pytree: array fields are leaves (traced,
differentiable, changing them does not recompile) and fields declared with :func:`static` are part
of the tree structure (config: written to YAML, hashed, changing one recompiles). See DESIGN.md,
principles 1-2 and "The Operator contract".

The contract is enforced by the metaclass, once, for every subclass:

- **abstract or concrete, decided when the class is complete**: a class with abstract methods
  (``Operator.__call__`` itself is abstract), ``eqx.AbstractVar`` or ``eqx.AbstractClassVar`` is
  never registered and never loadable; a concrete class is registered under its import path.
  (``__init_subclass__`` runs before ``ABCMeta`` computes ``__abstractmethods__``, so this cannot
  be decided there.)
- **one type check**: after ``__init__`` and the field converters, every config field is checked
  against its annotation (:mod:`georax.core.typecheck`), before the class's own
  ``__check_init__`` (semantic checks) runs. A converter that fails, or any non-georax exception
  while constructing, becomes a :class:`~georax.errors.ConfigError` naming the operator (and the
  field, for converters).
- **calls**: ``__call__`` builds a graph node when given nodes, refuses a missing ``key=`` for
  stochastic operators, and runs under ``jax.named_scope(display_name)`` so profiles and HLO show
  the pipeline.
- **pre-checks**: every ``precheck`` override is counted as one operator application against
  ``Limits.max_operators`` and preceded by the generic bound on static ``int`` fields
  (``Limits.max_extent``).
"""

from __future__ import annotations

import abc
import contextlib
import contextvars
import dataclasses
import functools
import inspect
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, NoReturn

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from georax.core import registry
from georax.core.errors import (
    BudgetExceededError,
    ConfigError,
    GeoraxError,
    GraphError,
    MissingKeyError,
    describe_exception,
    short_repr,
)
from georax.core.sandbox import Limits, count_application
from georax.core.typecheck import (
    DERIVED,
    check_arguments,
    check_fields,
    config_field_names,
    field_hints,
)

__all__ = [
    "GetItem",
    "check_extent_values",
    "check_static_extents",
    "Input",
    "Node",
    "Operator",
    "as_tuple",
    "config_field_names",
    "derived",
    "leaf",
    "optional_leaf",
    "semantic_checks_suspended",
    "static",
]

#: Metadata key of fields declared with :func:`leaf` (written bare in YAML when possible).
LEAF = "georax_leaf"
#: Metadata key of static ``int`` fields exempt from the ``Limits.max_extent`` bound.
UNBOUNDED = "georax_unbounded"
_WRAPPED = "__georax_wrapped__"


# --------------------------------------------------------------------------------------
# Field helpers
# --------------------------------------------------------------------------------------
def static(default: Any = dataclasses.MISSING, *, bounded: bool = True, **kwargs: Any) -> Any:
    """Declare a static (config) field: part of the tree structure, written to YAML, hashed.

    Use for structural settings: band indices, window sizes, modes, shapes. Changing one
    recompiles a jitted pipeline.

    **Arguments:**

    - `default`: the default value.
    - `bounded`: ``int`` values of this field (sizes, windows, counts, indices) are bounded in
      absolute value by ``Limits.max_extent`` when a pipeline is pre-checked, because such
      values size what tracing allocates or unrolls. Pass ``False`` for an int that sizes
      nothing (a label, a seed).
    - `**kwargs`: passed to :func:`equinox.field` (``converter=``, ``default_factory=``...).
    """
    metadata = dict(kwargs.pop("metadata", None) or {})
    if not bounded:
        metadata[UNBOUNDED] = True
    return eqx.field(static=True, default=default, metadata=metadata, **kwargs)


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
    if isinstance(value, str):
        raise TypeError(
            "is an array parameter: expected a number, a (nested) list of numbers or an array "
            "(note: YAML 1.1 reads 1e-3 as a string; write 1.0e-3)"
        )
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"is an array parameter: expected numbers, got {type(value).__name__} "
            f"(as an array: dtype {arr.dtype})"
        )
    return jnp.asarray(arr if arr.dtype.kind == "b" else arr.astype(np.float32))


def leaf(default: Any = dataclasses.MISSING, **kwargs: Any) -> Any:
    """Declare an array-leaf parameter (threshold, gain, weights): traced and differentiable.

    Python scalars and lists are converted to float32 JAX arrays at construction; arrays keep
    their dtype.
    """
    metadata = dict(kwargs.pop("metadata", None) or {})
    metadata[LEAF] = True
    return eqx.field(converter=_to_leaf, default=default, metadata=metadata, **kwargs)


def _to_optional_leaf(value: Any) -> Any:
    return None if value is None else _to_leaf(value)


def optional_leaf(default: Any = None, **kwargs: Any) -> Any:
    """Declare an array-leaf parameter that may be ``None`` (e.g. an open side of a range).

    Like :func:`leaf`, numbers become float32 arrays; ``None`` means "not given" and stays
    ``None``. Annotate the field ``Array | None``.
    """
    metadata = dict(kwargs.pop("metadata", None) or {})
    metadata[LEAF] = True
    return eqx.field(converter=_to_optional_leaf, default=default, metadata=metadata, **kwargs)


def derived(static_field: bool = False, **kwargs: Any) -> Any:
    """Declare a field computed in ``__init__`` from other fields (e.g. a colormap LUT).

    Derived fields are left out of the config: loading rebuilds them by calling ``__init__``
    with the remaining fields, so ``cls(**config)`` must reconstruct the operator.
    """
    return eqx.field(static=static_field, metadata={DERIVED: True}, **kwargs)


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


# --------------------------------------------------------------------------------------
# What the metaclass installs on every subclass
# --------------------------------------------------------------------------------------
def _graph_aware(call: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a subclass ``__call__``: data runs it (named), graph nodes build a new node."""
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
        with jax.named_scope(self.display_name):
            return call(self, *args, **kwargs)

    setattr(__call__, _WRAPPED, True)
    return __call__


def _int_hint(hint: Any) -> bool:
    """Whether every value an annotation admits (besides None) is an int or ints in tuples."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is int:
        return True
    if origin is types.UnionType or origin is typing.Union:
        arms = [a for a in args if a is not type(None)]
        return bool(arms) and all(_int_hint(a) for a in arms)
    if origin is tuple and args:
        return all(a is Ellipsis or _int_hint(a) for a in args)
    return False


def _ints(value: Any) -> Iterator[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        yield value
    elif isinstance(value, tuple | list):
        for v in value:
            yield from _ints(v)


def check_static_extents(op: Operator, limits: Limits) -> None:
    """The generic pre-check: every bounded static ``int`` field is at most ``max_extent``.

    A static int sizes structure (a window, a chip, a pad, a count, an index), and what tracing
    allocates or unrolls grows with it; ``2**16`` pixels along one axis is already a large
    scene. Fields declared ``static(bounded=False)`` are skipped.

    **Raises:** :class:`~georax.errors.BudgetExceededError` (``stage="precheck"``) naming the
    operator and field.
    """
    check_extent_values(type(op), op.config_fields(), limits, op.display_name)


def check_extent_values(
    cls: type[Operator], values: Mapping[str, Any], limits: Limits, name: str | None = None
) -> None:
    """:func:`check_static_extents` on field values before ``cls`` is built from them.

    The sandboxed loader runs it on a document's values before calling the class, because a
    hand-written ``__init__`` may allocate from a size (a LUT of ``n`` entries) before any
    ``__check_init__`` or pre-check could refuse it.
    """
    hints = field_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name not in values or f.name not in hints:
            continue
        if not f.metadata.get("static") or f.metadata.get(UNBOUNDED):
            continue
        if not _int_hint(hints[f.name]):
            continue
        for v in _ints(values[f.name]):
            if abs(v) > limits.max_extent:
                raise BudgetExceededError(
                    abs(v),
                    limits.max_extent,
                    "precheck",
                    f"{name or cls.__name__}.{f.name}={v} (bounded by Limits.max_extent)",
                    unit="pixels",
                )


def _metered(precheck: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a ``precheck`` override: count the application and bound static ints first."""

    @functools.wraps(precheck)
    def wrapper(self: Operator, shape: Any, limits: Limits, **kwargs: Any) -> Any:
        with count_application(self.display_name, limits):
            check_static_extents(self, limits)
            return precheck(self, shape, limits, **kwargs)

    setattr(wrapper, _WRAPPED, True)
    return wrapper


# Ids of operators whose fields were type-checked in the current construction (one set per
# metaclass call, so nested constructions do not interfere).
_TYPED: contextvars.ContextVar[set[int] | None] = contextvars.ContextVar(
    "georax_typed", default=None
)
_SEMANTIC_CHECKS: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "georax_semantic_checks", default=True
)


@contextlib.contextmanager
def semantic_checks_suspended() -> Iterator[None]:
    """Build operators without running their ``__check_init__`` (types are still checked).

    Only for throwaway skeletons whose arrays are placeholders about to be replaced (how
    :func:`georax.load` learns the layout of a params file before it holds the real values,
    which are then validated by building the pipeline again).
    """
    token = _SEMANTIC_CHECKS.set(False)
    try:
        yield
    finally:
        _SEMANTIC_CHECKS.reset(token)


def _types_first(check: Callable[[Any], None]) -> Callable[[Any], None]:
    """Wrap a ``__check_init__``: the one type check runs before the first semantic check."""

    @functools.wraps(check)
    def __check_init__(self: Operator) -> None:
        done = _TYPED.get()
        if done is None or id(self) not in done:
            if done is not None:
                done.add(id(self))
            check_fields(self)
        if _SEMANTIC_CHECKS.get():
            check(self)

    setattr(__check_init__, _WRAPPED, True)
    return __check_init__


class _ConversionError(Exception):
    def __init__(self, field: str, value: Any, problem: str) -> None:
        super().__init__(problem)
        self.field, self.value, self.problem = field, value, problem


def _named_converter(name: str, convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    @functools.wraps(convert)
    def converter(value: Any) -> Any:
        try:
            return convert(value)
        except GeoraxError:
            raise
        except Exception as e:
            raise _ConversionError(name, value, _problem(e)) from e

    setattr(converter, _WRAPPED, True)
    return converter


def _problem(e: BaseException) -> str:
    if isinstance(e, TypeError) and str(e).startswith("is an array parameter"):
        return str(e).splitlines()[0]
    return f"cannot be converted: {describe_exception(e)}"


class _OperatorMeta(type(eqx.Module)):  # type: ignore[misc]
    """Equinox's module metaclass plus the georax Operator contract (see the module docstring)."""

    def __new__(mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kw: Any):
        cls = super().__new__(mcs, name, bases, namespace, **kw)
        for attr, wrap in (
            ("__call__", _graph_aware),
            ("precheck", _metered),
            ("__check_init__", _types_first),
        ):
            fn = cls.__dict__.get(attr)
            if fn is not None and not getattr(fn, _WRAPPED, False):
                setattr(cls, attr, wrap(fn))
        for f in dataclasses.fields(cls):
            convert = f.metadata.get("converter")
            if convert is not None and not getattr(convert, _WRAPPED, False):
                f.metadata = types.MappingProxyType(
                    {**f.metadata, "converter": _named_converter(f.name, convert)}
                )
        inherited = any(getattr(b, "__georax_custom_init__", False) for b in bases)
        cls.__georax_custom_init__ = "__init__" in namespace or inherited
        registry.register(cls)
        return cls

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        token = _TYPED.set(set())
        try:
            if cls.__georax_custom_init__:
                check_arguments(cls, args, kwargs)
            return super().__call__(*args, **kwargs)
        except GeoraxError:
            raise
        except _ConversionError as e:
            raise ConfigError(
                cls.__name__, e.field, short_repr(e.value), e.problem
            ) from e.__cause__
        except Exception as e:
            raise ConfigError(
                cls.__name__,
                None,
                short_repr(kwargs or args),
                f"construction failed: {describe_exception(e)}",
            ) from e
        finally:
            _TYPED.reset(token)


# --------------------------------------------------------------------------------------
# Operator
# --------------------------------------------------------------------------------------
class Operator(eqx.Module, metaclass=_OperatorMeta):
    """Base class of every georax operator (abstract: subclasses implement ``__call__``).

    Subclasses declare fields (with :func:`static` for config, :func:`leaf` for parameters, or
    a sub-operator / model as a pytree child) and implement ``__call__(self, x, *, key=None)``.

    - Calling on data runs the operator (under ``jax.named_scope(display_name)``); calling on a
      :class:`Node` returns a node (graph building).
    - Config is derived from the fields; there is no hand-written ``get_config``.
    - Each concrete subclass is registered under its import path when defined, which is what
      YAML loading and the sandbox consult; abstract ones never are. Every class is abstract or
      final: share code through an abstract base, not by subclassing a concrete operator.
    - Field types are checked against the annotations once, at construction, for Python calls
      and YAML alike; ``__check_init__`` adds only semantic checks, refusing bad values with
      :meth:`fail`, which raises a :class:`~georax.errors.ConfigError` naming the field.

    Class attributes:

    - `forbid_in_yaml`: the operator holds a closure or runtime object and cannot be serialised
      (``Lambda``, ``Tap``, ``ModelOp`` around an arbitrary callable); see
      :meth:`yaml_write_refusal` and :meth:`yaml_load_refusal` for the hooks that decide.
    - `requires_key`: the operator is stochastic; calling it without ``key=`` is an error.
    """

    forbid_in_yaml: ClassVar[bool] = False
    requires_key: ClassVar[bool] = False

    @abc.abstractmethod
    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        """Run the operator on ``x`` (an array or carrier); ``key`` for stochastic operators."""

    def __check_init__(self) -> None:
        # The metaclass wraps this like every __check_init__: the field type check runs first.
        pass

    def precheck(self, shape: tuple[int, ...], limits: Limits) -> tuple[int, ...]:
        """Refuse, without tracing, a config whose cost is unbounded for an input of ``shape``.

        The sandboxed loader calls this before it traces anything, because tracing time and
        host allocations grow with config values (a window of 10**9 pixels pads a scene in a
        Python loop; a chip of 8192**2 builds its window weights on the host). Override it in
        operators whose config sizes, windows, margins, grids or loop counts scale their cost,
        compare them with ``limits`` (``max_extent``, ``max_host_bytes``, ``max_trace_steps``)
        and raise a georax error naming the field (:class:`~georax.errors.ShapeError` for an
        impossible combination with the input, :class:`~georax.errors.BudgetExceededError`
        for a cost over a limit). Containers call it on their children, once per use.

        Every override is wrapped: each call counts as one operator application against
        ``limits.max_operators``, and static ``int`` fields are first bounded by
        ``limits.max_extent`` (see :func:`check_static_extents`).

        **Arguments:**

        - `shape`: an upper bound on the shape of the input, bands-first ``(..., H, W)``.
        - `limits`: the loader's :class:`~georax.core.sandbox.Limits`.

        **Returns:** an upper bound on the output shape (default: ``shape``, for operators that
        do not grow their input).
        """
        del limits
        return shape

    def yaml_write_refusal(self) -> str | None:
        """Why this operator cannot be written to YAML, or ``None`` if it can.

        The default refuses ``forbid_in_yaml`` classes; classes that hold a runtime object
        only sometimes (``ModelOp``) or want a sharper message (``Lambda``, ``Tap``) override it.
        """
        if type(self).forbid_in_yaml:
            return (
                "it is marked forbid_in_yaml (it holds a closure or runtime object that YAML "
                "cannot represent); replace it with a registered Operator subclass"
            )
        return None

    @classmethod
    def yaml_load_refusal(cls, cfg: Mapping[str, Any]) -> str | None:
        """Why a document's config for this class cannot be loaded, or ``None`` if it can.

        Decided before anything is built. The default refuses ``forbid_in_yaml`` classes.
        """
        del cfg
        if cls.forbid_in_yaml:
            return (
                "is forbid_in_yaml: it holds a closure or runtime object that YAML cannot represent"
            )
        return None

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
        """A short human name for tables, messages and profiles: the class name.

        (Not ``name``: many operators have a config field called ``name``.)
        """
        return type(self).__name__

    def fail(self, field: str | None, problem: str) -> NoReturn:
        """Raise a :class:`ConfigError` naming ``field``; call it from ``__check_init__``."""
        value = getattr(self, field) if field else None
        raise ConfigError(type(self).__name__, field, short_repr(value), problem)

    def config_fields(self) -> dict[str, Any]:
        """The operator's config: ``{field name: value}`` for every non-derived init field."""
        return {name: getattr(self, name) for name in config_field_names(self)}


class GetItem(Operator):
    """Select ``x[item]``: one named output of a Graph or one element of a tuple output.

    It lives here, next to :class:`Node`, because ``node["name"]`` builds one.
    """

    item: str | int = static(bounded=False)

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        return x[self.item]

    def precheck(self, shape: Any, limits: Limits) -> Any:
        """The bound of the selected output when the input is a Graph's named outputs."""
        del limits
        if isinstance(shape, Mapping) and self.item in shape:
            return shape[self.item]
        return shape
