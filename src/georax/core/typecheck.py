"""The one type check of operator fields, the same for Python construction and YAML loading.

Every operator's config fields are checked against their annotations once the operator is built
(after converters ran, so ``size: tuple[int, int] = static(converter=as_pair)`` is checked as
the pair it became), before the operator's own ``__check_init__`` runs: semantic checks (ranges,
consistency) can then assume the types. The Operator metaclass calls :func:`check_fields`; the
YAML builder only turns documents into Python values and calls the class, so a document and a
Python call meet exactly the same check and the same :class:`~georax.errors.ConfigError`.

The checking is beartype's (:func:`beartype.door.is_bearable`), with two settings:

- ``int`` refuses ``bool`` (YAML 1.1 reads ``yes``/``on`` as ``True``; ``band: yes`` is a typo,
  not band 1), and ``float`` accepts ``int`` (PEP 484's numeric tower: ``hi: 1`` is fine);
- beartype checks one random item of a variable-length container (its O(1) contract), so
  :func:`_bearable` also walks the items of tuples, lists and mappings and checks each against
  the item annotation -- a hostile ``bands: [0, 1, "x"]`` is refused every time, not by chance.
  The walk only splits containers; every decision on a value is beartype's.

Annotations may be strings (``from __future__ import annotations``), ``Optional``/unions,
``Literal``, tuples, ``Operator`` subclasses and jaxtyping arrays (``Float[Array, "b b"]``). A
NumPy array passes an annotation for JAX arrays when a JAX array of its shape and dtype would
(operators keep 64-bit NumPy leaves exact when x64 is off). An annotation that cannot be
resolved (a name local to a function) is not checked.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import inspect
import sys
import types
import typing
import weakref
from typing import Annotated, Any

import jax
import numpy as np
from beartype import BeartypeConf, FrozenDict
from beartype.door import is_bearable
from beartype.vale import Is

from georax.core.errors import ConfigError, short_repr

__all__ = [
    "DERIVED",
    "check_arguments",
    "check_fields",
    "config_field_names",
    "describe_hint",
    "field_hints",
]

#: Metadata key marking a field computed in ``__init__`` (left out of config and of the check).
DERIVED = "georax_derived"

_STRICT_INT = Annotated[int, Is[lambda x: not isinstance(x, bool)]]
_CONF = BeartypeConf(is_pep484_tower=True, hint_overrides=FrozenDict({int: _STRICT_INT}))
_HINTS: weakref.WeakKeyDictionary[type, dict[str, Any]] = weakref.WeakKeyDictionary()
_INIT: weakref.WeakKeyDictionary[type, tuple[inspect.Signature, dict[str, Any]]] = (
    weakref.WeakKeyDictionary()
)
_SEQUENCES = (tuple, list, collections.abc.Sequence, collections.abc.Iterable)
_MAPPINGS = (dict, collections.abc.Mapping)


def config_field_names(cls_or_op: Any) -> tuple[str, ...]:
    """Names of the fields that make up an operator's config (init fields, minus derived)."""
    return tuple(
        f.name
        for f in dataclasses.fields(cls_or_op)
        if f.init and not f.metadata.get(DERIVED, False)
    )


def field_hints(cls: type) -> dict[str, Any]:
    """The resolved annotation of each config field of ``cls`` (``Any`` where unresolvable)."""
    try:
        return _HINTS[cls]
    except KeyError:
        pass
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except Exception:  # one unresolvable name: resolve field by field below
        hints = {}
    out = {}
    for name in config_field_names(cls):
        out[name] = hints[name] if name in hints else _resolve_one(cls, name)
    _HINTS[cls] = out
    return out


def _resolve_one(cls: type, name: str) -> Any:
    for klass in cls.__mro__:
        annotation = inspect.get_annotations(klass).get(name)
        if annotation is None:
            continue
        if not isinstance(annotation, str):
            return annotation
        module = sys.modules.get(klass.__module__)
        namespace = dict(vars(module)) if module is not None else {}
        try:
            return eval(annotation, namespace, dict(vars(klass)))  # annotations are source text
        except Exception:
            return Any
    return Any


def describe_hint(hint: Any) -> str:
    """A readable name for an annotation (``tuple[int, ...]``, ``float | None``)."""
    if isinstance(hint, type) and not typing.get_args(hint):
        return hint.__qualname__
    return str(hint).replace("typing.", "").replace("collections.abc.", "")


def _has_numpy(value: Any) -> bool:
    return any(isinstance(x, np.ndarray | np.generic) for x in jax.tree_util.tree_leaves(value))


def _as_jax_abstract(value: Any, hint: Any) -> bool:
    """Check ``value`` with its NumPy arrays seen as JAX arrays of the same shape and dtype."""

    def is_np(x: Any) -> bool:
        return isinstance(x, np.ndarray | np.generic)

    leaves, treedef = jax.tree_util.tree_flatten(value)
    arrays = [jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype) for x in leaves if is_np(x)]
    result: list[bool] = []

    def check(abstract: list[Any]) -> None:
        it = iter(abstract)
        rebuilt = [next(it) if is_np(x) else x for x in leaves]
        result.append(_bearable(jax.tree_util.tree_unflatten(treedef, rebuilt), hint))

    jax.eval_shape(check, arrays)
    return bool(result and result[0])


def _bearable(value: Any, hint: Any) -> bool:
    """beartype's verdict, extended to every item of variable-length containers."""
    if hint is Any or hint is object:
        return True
    if not is_bearable(value, hint, conf=_CONF):
        return False
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        return _bearable(value, args[0])
    if origin is typing.Union or origin is types.UnionType:
        return any(_bearable(value, arm) for arm in args)
    if origin is tuple and args and isinstance(value, tuple):
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_bearable(v, args[0]) for v in value)
        if args == ((),):
            return True
        return all(_bearable(v, a) for v, a in zip(value, args, strict=False))
    if origin in _SEQUENCES and len(args) == 1 and isinstance(value, tuple | list):
        return all(_bearable(v, args[0]) for v in value)
    if origin in _MAPPINGS and len(args) == 2 and isinstance(value, collections.abc.Mapping):
        return all(_bearable(k, args[0]) and _bearable(v, args[1]) for k, v in value.items())
    return True


def _item_hint(hint: Any, index: int) -> Any:
    """The annotation of item ``index`` of a sequence annotation (``None`` if not a sequence)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        return _item_hint(args[0], index)
    if origin is tuple and args:
        if len(args) == 2 and args[1] is Ellipsis:
            return args[0]
        return args[index] if index < len(args) else None
    if origin in _SEQUENCES and len(args) == 1:
        return args[0]
    return None


def _refuse(owner: str, field: str, value: Any, hint: Any, path: str = "") -> ConfigError:
    """The error for a value that does not fit ``hint``, pointing at the first bad item."""
    if isinstance(value, tuple | list) and _bearable_shallow(value, hint):
        for i, item in enumerate(value):
            item_hint = _item_hint(hint, i)
            if item_hint is not None and not _fits(item, item_hint):
                return _refuse(owner, field, item, item_hint, f"{path or field}[{i}]")
    where = f"{path} " if path else ""
    return ConfigError(
        owner,
        field,
        short_repr(value),
        f"{where}has the wrong type: expected {describe_hint(hint)}, got {type(value).__name__}",
    )


def _bearable_shallow(value: Any, hint: Any) -> bool:
    """Whether ``value`` is the right kind of container for ``hint`` (items not checked)."""
    origin = typing.get_origin(hint)
    if origin is Annotated:
        return _bearable_shallow(value, typing.get_args(hint)[0])
    if origin is tuple:
        args = typing.get_args(hint)
        variadic = len(args) == 2 and args[1] is Ellipsis
        return isinstance(value, tuple) and (variadic or len(value) == len(args))
    return origin in _SEQUENCES and isinstance(value, tuple | list)


def _fits(value: Any, hint: Any) -> bool:
    return _bearable(value, hint) or (_has_numpy(value) and _as_jax_abstract(value, hint))


def check_fields(op: Any) -> None:
    """Check every config field of ``op`` against its annotation.

    **Raises:** :class:`~georax.errors.ConfigError` naming the operator, the field, the value
    and the expected type.
    """
    cls = type(op)
    for name, hint in field_hints(cls).items():
        value = getattr(op, name)
        if not _fits(value, hint):
            raise _refuse(cls.__name__, name, value, hint)


def _init_signature(cls: type) -> tuple[inspect.Signature, dict[str, Any]]:
    try:
        return _INIT[cls]
    except KeyError:
        pass
    init = cls.__init__
    signature = inspect.signature(init)
    try:
        hints = typing.get_type_hints(init, include_extras=True)
    except Exception:  # unresolvable names: check only what resolves
        hints = {}
    _INIT[cls] = (signature, hints)
    return signature, hints


def check_arguments(cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Check the arguments of a hand-written ``__init__`` against its annotations.

    A hand-written ``__init__`` computes with its arguments before the fields exist (a LUT
    sized by ``n``), so a wrong type must be refused before it runs, not after. Arguments that
    do not bind are left to Python's own error. Classes with the generated ``__init__`` need no
    such check: their fields are checked by :func:`check_fields`.

    **Raises:** :class:`~georax.errors.ConfigError` naming the operator and the argument.
    """
    signature, hints = _init_signature(cls)
    try:
        bound = signature.bind(None, *args, **kwargs)
    except TypeError:
        return
    for name, value in bound.arguments.items():
        param = signature.parameters[name]
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or name not in hints:
            continue
        if not _fits(value, hints[name]):
            raise _refuse(cls.__name__, name, value, hints[name])
