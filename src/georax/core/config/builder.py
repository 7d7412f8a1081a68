"""Operator <-> config: the plain, JSON-compatible dict form behind YAML, hashing and the sandbox.

The format (DESIGN.md, "Configuration")::

    {"_target_": "georax.Sequential",
     "operators": [{"_target_": "my.pkg.Scale", "gain": 2.0, "band": 1}, ...]}

- ``_target_`` is the registry's public path of the class (``georax.Sequential`` for an aliased
  core combinator, the full import path otherwise).
- Every config field (see :meth:`Operator.config_fields`) is written, defaults included, so a
  document is explicit and its hash does not move when a default changes in a later release.
- Static values are written as themselves; tuples become lists (and come back as tuples, so the
  rebuilt operator is equal and hashes alike).
- Child operators nest, to any depth; ``Graph`` writes its full wiring (``inputs``, ``outputs``,
  ``operators``, ``nodes``) and is rebuilt from exactly that.
- Array leaves with at most ``max_inline`` elements are written inline: bare (``threshold: 0.3``)
  when the field's :func:`~georax.core.operator.leaf` converter rebuilds the same dtype from the
  bare value, otherwise as ``{_array_: [...], dtype: float16, shape: [2, 2]}``. Floats are written
  with the shortest decimal that round-trips in *their own* dtype (``0.3`` for a float32 0.3, not
  ``0.30000001192092896``), falling back to the exact float64 value if that would not round-trip.
- Larger arrays (model weights, LUTs) are written as placeholders
  ``{_param_: operators[1].weight, shape: [...], dtype: float32}``: :func:`georax.save` stores
  their values in the params file; loading such a config needs :func:`georax.load`.
- Strings are written verbatim except that ``${`` is escaped as ``$${``, because ``${name}`` is
  a placeholder filled from ``variables=`` at load time.

``from_config`` is generic: it looks the target up in the registry (never imports anything named
in a document), checks field names and simple types against the class's annotations, and calls
``cls(**fields)`` -- the Operator contract -- so every operator that keeps the contract loads
without code of its own here.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import inspect
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from georax.core import registry
from georax.core.errors import ConfigError, GeoraxError, SerializationError, UntrustedTargetError
from georax.core.model import ModelOp
from georax.core.operator import Operator, config_field_names, leaf
from georax.core.sandbox import DEFAULT_LIMITS, Limits, SandboxLimitError

__all__ = [
    "INLINE_MAX",
    "MissingVariableError",
    "ParamsRequiredError",
    "from_config",
    "substitute_variables",
    "to_config",
    "yaml_forbidden_reason",
]

#: Array leaves with at most this many elements are written inline in config/YAML.
INLINE_MAX = 256

TARGET, ARRAY, PARAM = "_target_", "_array_", "_param_"
_RESERVED = (TARGET, ARRAY, PARAM)
_DTYPES = frozenset(
    (
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "bfloat16",
        "float32",
        "float64",
    )
)
# The converter that :func:`~georax.core.operator.leaf` installs: a field using it rebuilds a bare
# YAML number/list into the same float32/int32 array, so such leaves are written bare.
_LEAF_CONVERTER = leaf().metadata.get("converter")


class MissingVariableError(SerializationError):
    """A ``${name}`` placeholder has no value in ``variables=``.

    Attributes:
        name: the placeholder's name.
    """

    def __init__(self, name: str, where: str = "") -> None:
        self.name = name
        at = f" (at {where})" if where else ""
        super().__init__(
            f"placeholder ${{{name}}}{at} has no value: pass variables={{{name!r}: ...}}"
        )


class ParamsRequiredError(SerializationError):
    """The config refers to arrays stored in a params file; load it with :func:`georax.load`."""


# ======================================================================================
# Which operators may be written
# ======================================================================================
def yaml_forbidden_reason(op: Operator) -> str | None:
    """Why ``op`` cannot be written to YAML, or ``None`` if it can.

    ``forbid_in_yaml`` classes hold closures or runtime objects. One is conditionally allowed:
    a :class:`~georax.ModelOp` whose ``model`` is itself a georax Operator (a registered class
    with config), since its architecture is then rebuilt from config and its weights are leaves.
    """
    cls = type(op)
    if not getattr(cls, "forbid_in_yaml", False):
        return None
    if isinstance(op, ModelOp):
        if isinstance(op.model, Operator):
            return None
        return (
            f"it wraps a {type(op.model).__module__}.{type(op.model).__qualname__} model, which "
            "is not a registered georax Operator, so its architecture cannot be rebuilt from "
            "config; define the architecture as a gx.Operator subclass (static config fields, "
            "array-leaf weights) and georax.save() will write the weights to a params file"
        )
    fn = getattr(op, "fn", None)
    if fn is not None and callable(fn):
        what = "runs a host callback" if cls.__name__ == "Tap" else "holds a Python function"
        return (
            f"it {what} ({getattr(fn, '__qualname__', type(fn).__name__)}), which YAML cannot "
            "represent (forbid_in_yaml); replace it with a registered Operator subclass"
        )
    return "it is marked forbid_in_yaml (it holds a closure or runtime object)"


def _forbidden_target_reason(cls: type[Operator], cfg: Mapping[str, Any]) -> str | None:
    if not getattr(cls, "forbid_in_yaml", False):
        return None
    if issubclass(cls, ModelOp):
        model = cfg.get("model")
        if isinstance(model, Mapping) and TARGET in model:
            return None
        return (
            "is forbid_in_yaml: a ModelOp in YAML must wrap an operator config "
            "(model: {_target_: ...})"
        )
    return "is forbid_in_yaml: it holds a closure or runtime object that YAML cannot represent"


# ======================================================================================
# to_config
# ======================================================================================
def _escape(s: str) -> str:
    return s.replace("${", "$${")


def _shortest_floats(a: np.ndarray) -> np.ndarray:
    """Float values as float64 holding the shortest decimal that round-trips in ``a.dtype``."""
    flat = a.ravel()
    if a.dtype == np.float64 or flat.size == 0:
        return flat.astype(np.float64)
    short = np.array([float(str(v)) for v in flat], dtype=np.float64)
    back = short.astype(a.dtype)
    same = np.array_equal(back, flat, equal_nan=True) and np.array_equal(
        np.signbit(back), np.signbit(flat)
    )
    return short if same else flat.astype(np.float64)


def _python_values(a: np.ndarray) -> Any:
    """Nested Python lists (or a scalar) holding ``a``'s values exactly."""
    if a.dtype.kind == "f" or a.dtype.name == "bfloat16":
        return _shortest_floats(a).reshape(a.shape).tolist()
    return a.tolist()


def _is_array(v: Any) -> bool:
    return isinstance(v, jax.Array | np.ndarray)


class _Writer:
    def __init__(self, max_inline: int | None) -> None:
        self.max_inline = max_inline

    def operator(self, op: Any, path: str) -> dict[str, Any]:
        where = path or "<root>"
        if not isinstance(op, Operator):
            raise SerializationError(f"{where}: {type(op).__name__} is not a georax Operator")
        reason = yaml_forbidden_reason(op)
        if reason is not None:
            raise SerializationError(
                f"{where}: {op.display_name} cannot be written to YAML: {reason}"
            )
        out: dict[str, Any] = {TARGET: registry.public_path(type(op))}
        fields = {f.name: f for f in dataclasses.fields(op)}
        for name in config_field_names(op):
            f = fields[name]
            sub = f"{path}.{name}" if path else name
            out[name] = self.value(getattr(op, name), sub, f, top=True, owner=op.display_name)
        return out

    def value(self, v: Any, path: str, f: dataclasses.Field, *, top: bool, owner: str) -> Any:
        static = bool(f.metadata.get("static", False))
        if isinstance(v, Operator):
            return self.operator(v, path)
        if _is_array(v) or (not static and isinstance(v, np.generic)):
            return self.array(np.asarray(v), path, f, top=top, owner=owner)
        if isinstance(v, np.generic):
            v = v.item()
        if v is None or isinstance(v, bool | int):
            return v
        if isinstance(v, float):
            return float(v)
        if isinstance(v, str):
            return _escape(v)
        if isinstance(v, list | tuple):
            return [
                self.value(x, f"{path}[{i}]", f, top=False, owner=owner) for i, x in enumerate(v)
            ]
        if isinstance(v, Mapping):
            out = {}
            for k, x in v.items():
                if not isinstance(k, str) or k in _RESERVED:
                    raise SerializationError(
                        f"{path}: mapping key {k!r} cannot be written (keys must be strings "
                        f"other than {', '.join(_RESERVED)})"
                    )
                out[k] = self.value(x, f"{path}.{k}", f, top=False, owner=owner)
            return out
        if isinstance(v, jax.core.Tracer):
            raise SerializationError(f"{path}: cannot write a traced value (call outside jit)")
        raise SerializationError(
            f"{owner} field {path} holds a {type(v).__module__}.{type(v).__qualname__}, "
            "which config cannot represent (allowed: operators, arrays, str/int/float/bool/None, "
            "and lists/tuples/string-keyed dicts of those)"
        )

    def array(
        self, a: np.ndarray, path: str, f: dataclasses.Field, *, top: bool, owner: str
    ) -> Any:
        name = a.dtype.name
        if name not in _DTYPES:
            raise SerializationError(
                f"{owner} field {path}: arrays of dtype {name} cannot be written to config "
                f"(supported: {', '.join(sorted(_DTYPES))})"
            )
        if self.max_inline is not None and a.size > self.max_inline:
            return {PARAM: path, "shape": list(a.shape), "dtype": name}
        values = _python_values(a)
        if top and a.size > 0 and f.metadata.get("converter") is _LEAF_CONVERTER:
            rebuilt = _LEAF_CONVERTER(values)
            if rebuilt.dtype == a.dtype and rebuilt.shape == a.shape:
                return values
        return {ARRAY: values, "dtype": name, "shape": list(a.shape)}


def to_config(op: Operator, *, max_inline: int | None = INLINE_MAX) -> dict[str, Any]:
    """The config of ``op``: a JSON-compatible dict (``_target_`` + fields, nested).

    **Arguments:**

    - `op`: any georax operator (combinators and Graphs nest to any depth).
    - `max_inline`: arrays with more elements become ``_param_`` placeholders (their values go
      to the params file written by :func:`georax.save`); ``None`` writes every array inline.

    **Returns:** a dict of str/int/float/bool/None, lists and dicts only.

    **Raises:** `SerializationError` naming the operator and field when something cannot be
    written (a ``forbid_in_yaml`` operator such as ``Lambda``/``Tap``, a ``ModelOp`` around a
    non-georax model, a field holding a runtime object).
    """
    return _Writer(max_inline).operator(op, "")


# ======================================================================================
# ${name} placeholders
# ======================================================================================
_PLACEHOLDER = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")


def _check_variable(name: str, value: Any, depth: int = 0) -> None:
    if depth > 32:
        raise SerializationError(f"variable {name!r} is nested too deeply")
    if value is None or isinstance(value, bool | int | float | str):
        return
    if isinstance(value, list | tuple):
        for v in value:
            _check_variable(name, v, depth + 1)
        return
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        for v in value.values():
            _check_variable(name, v, depth + 1)
        return
    raise SerializationError(
        f"variable {name!r} has type {type(value).__name__}; variables must be plain "
        "YAML values (str/int/float/bool/None, lists and string-keyed dicts)"
    )


def _substitute_str(s: str, variables: Mapping[str, Any], where: str) -> Any:
    if "$" not in s:
        return s
    whole = _PLACEHOLDER.fullmatch(s)
    if whole is not None and whole.group(1) is not None:
        name = whole.group(1)
        if not _VAR_NAME.fullmatch(name):
            raise SerializationError(f"bad placeholder ${{{name}}} at {where}")
        if name not in variables:
            raise MissingVariableError(name, where)
        value = variables[name]
        return list(value) if isinstance(value, tuple) else value

    def repl(m: re.Match[str]) -> str:
        if m.group(1) is None:
            return "${"
        name = m.group(1)
        if not _VAR_NAME.fullmatch(name):
            raise SerializationError(f"bad placeholder ${{{name}}} at {where}")
        if name not in variables:
            raise MissingVariableError(name, where)
        value = variables[name]
        if not isinstance(value, str | int | float | bool):
            raise SerializationError(
                f"placeholder ${{{name}}} at {where} is inside a string, so its value must be "
                f"a scalar, got {type(value).__name__}"
            )
        return str(value)

    return _PLACEHOLDER.sub(repl, s)


def substitute_variables(cfg: Any, variables: Mapping[str, Any] | None = None) -> Any:
    """Fill ``${name}`` placeholders in the strings of ``cfg`` from ``variables``.

    A string that is exactly ``${name}`` takes the variable's value *with its type* (so
    ``window: ${size}`` can be an int); inside a longer string the value is formatted with
    ``str``. ``$${`` writes a literal ``${``. Placeholders are not expanded recursively.

    **Arguments:**

    - `cfg`: a config (dicts, lists, scalars).
    - `variables`: name -> plain YAML value.

    **Returns:** a new config with every placeholder filled.

    **Raises:** :class:`MissingVariableError` naming the first placeholder without a value.
    """
    variables = dict(variables or {})
    for name, value in variables.items():
        _check_variable(name, value)

    def walk(node: Any, where: str, depth: int) -> Any:
        if depth > 1000:
            raise SandboxLimitError("max_depth", depth, 1000, "while filling variables")
        if isinstance(node, str):
            return _substitute_str(node, variables, where or "<root>")
        if isinstance(node, Mapping):
            return {
                k: walk(v, f"{where}.{k}" if where else str(k), depth + 1) for k, v in node.items()
            }
        if isinstance(node, list | tuple):
            return [walk(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(node)]
        return node

    return walk(cfg, "", 0)


# ======================================================================================
# from_config
# ======================================================================================
def _check_tree(cfg: Any, limits: Limits) -> None:
    """Count nodes (following shared references) and depth of a plain Python config."""
    count = 0
    stack: list[tuple[Any, int]] = [(cfg, 1)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > limits.max_nodes:
            raise SandboxLimitError("max_nodes", count, limits.max_nodes)
        if depth > limits.max_depth:
            raise SandboxLimitError("max_depth", depth, limits.max_depth)
        if isinstance(node, Mapping):
            stack.extend((v, depth + 1) for v in node.values())
            count += len(node)  # the keys
        elif isinstance(node, list | tuple):
            stack.extend((v, depth + 1) for v in node)


def _origin_args(hint: Any) -> tuple[Any, tuple[Any, ...]]:
    return typing.get_origin(hint), typing.get_args(hint)


def _all(results: list[bool | None]) -> bool | None:
    if any(r is False for r in results):
        return False
    return None if any(r is None for r in results) else True


def _matches(value: Any, hint: Any) -> bool | None:
    """Does ``value`` fit annotation ``hint``? ``None`` when the annotation is not understood."""
    if hint is Any or hint is object:
        return True
    if hint is None or hint is type(None):
        return value is None
    origin, args = _origin_args(hint)
    if origin is typing.Annotated:
        return _matches(value, args[0])
    if origin is typing.Union or origin is types.UnionType:
        results = [_matches(value, a) for a in args]
        if any(r is True for r in results):
            return True
        return None if any(r is None for r in results) else False
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            return False
        if not args:
            return True
        if len(args) == 2 and args[1] is Ellipsis:
            return _all([_matches(v, args[0]) for v in value])
        if args == ((),):
            return len(value) == 0
        if len(value) != len(args):
            return False
        return _all([_matches(v, a) for v, a in zip(value, args, strict=True)])
    if origin in (list, collections.abc.Sequence):
        if not isinstance(value, list | tuple):
            return False
        return _all([_matches(v, args[0]) for v in value]) if args else True
    if origin in (dict, collections.abc.Mapping):
        if not isinstance(value, Mapping):
            return False
        if not args:
            return True
        keys = [_matches(k, args[0]) for k in value]
        return _all(keys + [_matches(v, args[1]) for v in value.values()])
    if origin is collections.abc.Callable or hint is collections.abc.Callable:
        return callable(value)
    if isinstance(hint, type):
        if hint is bool:
            return isinstance(value, bool)
        if hint is int:
            return isinstance(value, int) and not isinstance(value, bool)
        if hint is float:
            return isinstance(value, int | float) and not isinstance(value, bool)
        if hint is str:
            return isinstance(value, str)
        if hint in (tuple, list):
            return isinstance(value, list | tuple)
        if issubclass(hint, Operator):
            return isinstance(value, hint)
    return None


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """Annotations to check config values against: ``__init__``'s if informative, else fields'."""
    if cls in _HINTS:
        return _HINTS[cls]
    try:
        fields = typing.get_type_hints(cls)
    except Exception:  # unresolvable forward references: skip type checks for this class
        fields = {}
    try:
        init = typing.get_type_hints(cls.__init__)
    except Exception:
        init = {}
    out = {}
    for name in config_field_names(cls):
        hint = init.get(name, Any)
        out[name] = fields.get(name, Any) if hint is Any else hint
    _HINTS[cls] = out
    return out


def _short(value: Any, n: int = 80) -> Any:
    text = repr(value)
    return value if len(text) <= n else text[: n - 3] + "..."


def _numeric_nested(v: Any, depth: int = 0) -> bool:
    if isinstance(v, bool | int | float):
        return True
    if isinstance(v, list | tuple) and depth < 32:
        return all(_numeric_nested(x, depth + 1) for x in v)
    return False


def _count_elements(v: Any) -> int:
    if isinstance(v, list | tuple):
        return sum(_count_elements(x) for x in v)
    return 1


ParamFactory = Callable[[str, tuple[int, ...], np.dtype], Any]


class _Builder:
    def __init__(
        self,
        allowed: frozenset[str] | None,
        limits: Limits,
        param_factory: ParamFactory | None,
    ) -> None:
        self.allowed = allowed
        self.limits = limits
        self.param_factory = param_factory
        self.n_operators = 0

    # -- targets -----------------------------------------------------------------------
    def resolve(self, target: Any, cfg: Mapping[str, Any], path: str) -> type[Operator]:
        if not isinstance(target, str):
            raise SerializationError(
                f"{path}: _target_ must be a string naming a registered operator, "
                f"got {type(target).__name__} {_short(target)!r}"
            )
        if self.allowed is not None and (
            target not in self.allowed and registry.canonical(target) not in self.allowed
        ):
            raise UntrustedTargetError(target, f"(at {path}) is not in the allowed registry")
        try:
            cls = registry.lookup(target)
        except SerializationError:
            raise UntrustedTargetError(
                target, f"(at {path}) is not a registered georax operator"
            ) from None
        if not (isinstance(cls, type) and issubclass(cls, Operator)):
            raise UntrustedTargetError(target, f"(at {path}) is not a georax Operator")
        if getattr(cls, "__abstractmethods__", None) or getattr(cls, "__abstractvars__", None):
            raise UntrustedTargetError(target, f"(at {path}) is abstract")
        reason = _forbidden_target_reason(cls, cfg)
        if reason is not None:
            raise UntrustedTargetError(target, f"(at {path}) {reason}")
        return cls

    # -- operators ---------------------------------------------------------------------
    def operator(self, cfg: Any, path: str) -> Operator:
        where = path or "<root>"
        if not isinstance(cfg, Mapping):
            raise SerializationError(
                f"{where}: expected an operator mapping with _target_, got "
                f"{type(cfg).__name__} {_short(cfg)!r}"
            )
        if TARGET not in cfg:
            raise SerializationError(f"{where}: operator mapping has no _target_ key")
        cls = self.resolve(cfg[TARGET], cfg, where)
        self.n_operators += 1
        if self.n_operators > self.limits.max_operators:
            raise SandboxLimitError(
                "max_operators", self.n_operators, self.limits.max_operators, f"at {where}"
            )
        name = cls.__name__
        names = config_field_names(cls)
        statics = {f.name: bool(f.metadata.get("static")) for f in dataclasses.fields(cls)}
        converters = {f.name: f.metadata.get("converter") for f in dataclasses.fields(cls)}
        for key in cfg:
            if key == TARGET:
                continue
            if not isinstance(key, str) or key not in names:
                raise ConfigError(
                    name, str(key), _short(cfg[key]), f"unknown field; {name} accepts {list(names)}"
                )
        try:
            params = inspect.signature(cls).parameters
        except (TypeError, ValueError):
            params = {}
        for pname, p in params.items():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            if p.default is p.empty and pname not in cfg:
                raise ConfigError(name, pname, None, "required field is missing")
        hints = _hints(cls)
        kwargs: dict[str, Any] = {}
        for key, raw in cfg.items():
            if key == TARGET:
                continue
            sub = f"{path}.{key}" if path else key
            value = self.value(
                raw,
                sub,
                static=statics.get(key, False),
                leaf_field=converters.get(key) is _LEAF_CONVERTER,
                top=True,
                owner=name,
                field=key,
            )
            if converters.get(key) is _LEAF_CONVERTER and not (
                _numeric_nested(value) or isinstance(value, jax.Array | np.ndarray)
            ):
                raise ConfigError(
                    name,
                    key,
                    _short(raw),
                    "is an array parameter: expected a number, a (nested) list of numbers or "
                    "an {_array_: ..., dtype: ..., shape: ...} mapping (note: YAML 1.1 reads "
                    "1e-3 as a string; write 1.0e-3)",
                )
            ok = _matches(value, hints.get(key, Any))
            if ok is False:
                raise ConfigError(
                    name, key, _short(raw), f"has the wrong type: expected {_hint_name(hints[key])}"
                )
            kwargs[key] = value
        try:
            return cls(**kwargs)
        except GeoraxError:
            raise
        except Exception as e:
            raise ConfigError(
                name, None, f"<config at {where}>", f"construction failed: {type(e).__name__}: {e}"
            ) from e

    # -- values ------------------------------------------------------------------------
    def value(
        self,
        v: Any,
        path: str,
        *,
        static: bool,
        leaf_field: bool,
        top: bool,
        owner: str,
        field: str,
    ) -> Any:
        if v is None or isinstance(v, bool | int | str):
            return v
        if isinstance(v, float):
            return v
        if isinstance(v, Mapping):
            if TARGET in v:
                return self.operator(v, path)
            if ARRAY in v:
                return self.inline_array(v, path, owner, field)
            if PARAM in v:
                return self.param(v, path, owner, field)
            out = {}
            for k, x in v.items():
                if not isinstance(k, str):
                    raise ConfigError(owner, field, _short(v), f"mapping key {k!r} is not a string")
                if len(k) > 1 and k.startswith("_") and k.endswith("_"):
                    raise ConfigError(
                        owner,
                        field,
                        _short(v),
                        f"unknown reserved key {k!r} (reserved keys: {', '.join(_RESERVED)})",
                    )
                out[k] = self.value(
                    x,
                    f"{path}.{k}",
                    static=static,
                    leaf_field=False,
                    top=False,
                    owner=owner,
                    field=field,
                )
            return out
        if isinstance(v, list | tuple):
            if top and leaf_field and _numeric_nested(v):
                n = _count_elements(v)
                if n > self.limits.max_array_elements:
                    raise SandboxLimitError(
                        "max_array_elements", n, self.limits.max_array_elements, f"at {path}"
                    )
                return list(v)
            return tuple(
                self.value(
                    x,
                    f"{path}[{i}]",
                    static=static,
                    leaf_field=False,
                    top=False,
                    owner=owner,
                    field=field,
                )
                for i, x in enumerate(v)
            )
        raise ConfigError(
            owner,
            field,
            _short(v),
            f"unsupported value type {type(v).__name__} at {path} (config holds only "
            "str/int/float/bool/None, lists and mappings)",
        )

    def _shape_dtype(
        self, spec: Mapping[str, Any], kind: str, path: str, owner: str, field: str
    ) -> tuple[tuple[int, ...], str]:
        keys = {kind, "shape", "dtype"}
        if set(spec) != keys:
            raise ConfigError(
                owner, field, _short(spec), f"{kind} needs exactly the keys {sorted(keys)}"
            )
        dtype, shape = spec["dtype"], spec["shape"]
        if not isinstance(dtype, str) or dtype not in _DTYPES:
            raise ConfigError(
                owner, field, _short(dtype), f"dtype must be one of {sorted(_DTYPES)}"
            )
        if not isinstance(shape, list | tuple) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise ConfigError(
                owner, field, _short(shape), "shape must be a list of non-negative ints"
            )
        if len(shape) > 32:
            raise ConfigError(owner, field, _short(shape), "more than 32 dimensions")
        n = math.prod(shape)
        if n > self.limits.max_array_elements:
            raise SandboxLimitError(
                "max_array_elements", n, self.limits.max_array_elements, f"at {path}"
            )
        return tuple(shape), dtype

    def inline_array(self, spec: Mapping[str, Any], path: str, owner: str, field: str) -> Any:
        shape, dtype = self._shape_dtype(spec, ARRAY, path, owner, field)
        values = spec[ARRAY]
        if not _numeric_nested(values):
            raise ConfigError(owner, field, _short(values), "_array_ must hold numbers")
        try:
            arr = np.asarray(values, dtype=jnp.dtype(dtype))
        except (ValueError, TypeError, OverflowError) as e:
            raise ConfigError(
                owner, field, _short(values), f"not a valid {dtype} array: {e}"
            ) from None
        if arr.size != math.prod(shape):
            raise ConfigError(
                owner, field, _short(values), f"has {arr.size} values but shape {list(shape)}"
            )
        arr = arr.reshape(shape)
        if arr.dtype.itemsize == 8 and not jax.config.jax_enable_x64:
            return arr  # keep 64-bit values exact (JAX would truncate them to 32 bits)
        return jnp.asarray(arr)

    def param(self, spec: Mapping[str, Any], path: str, owner: str, field: str) -> Any:
        shape, dtype = self._shape_dtype(spec, PARAM, path, owner, field)
        if self.param_factory is None:
            raise ParamsRequiredError(
                f"{owner}.{field} ({path}): array {spec[PARAM]!r} ({dtype}{list(shape)}) is "
                "stored in a params file; load the pipeline with georax.load(directory)"
            )
        return self.param_factory(str(spec[PARAM]), shape, jnp.dtype(dtype))


def _hint_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def from_config(
    cfg: Mapping[str, Any],
    *,
    allowed: collections.abc.Iterable[str] | None = None,
    variables: Mapping[str, Any] | None = None,
    limits: Limits = DEFAULT_LIMITS,
    param_factory: ParamFactory | None = None,
) -> Operator:
    """Build an operator from its config.

    **Arguments:**

    - `cfg`: a config as produced by :func:`to_config` (or parsed from YAML).
    - `allowed`: if given, the only ``_target_`` strings accepted (e.g.
      ``georax.registry.public_operators()``); anything else raises
      :class:`~georax.errors.UntrustedTargetError` carrying ``.target``. Without it every
      registered, non-``forbid_in_yaml`` operator is accepted. Nothing is ever imported.
    - `variables`: values for ``${name}`` placeholders.
    - `limits`: :class:`~georax.core.sandbox.Limits` on the config's size and on operator and
      array counts.
    - `param_factory`: ``(key, shape, dtype) -> array`` for ``_param_`` placeholders; used by
      :func:`georax.load`. Without it a placeholder raises :class:`ParamsRequiredError`.

    **Returns:** the operator.

    **Raises:** `UntrustedTargetError`, `ConfigError` (unknown, missing or mistyped field,
    named), `MissingVariableError`, `SandboxLimitError`, `SerializationError`.
    """
    _check_tree(cfg, limits)
    allow = None if allowed is None else frozenset(allowed)
    try:
        cfg = substitute_variables(cfg, variables)
        return _Builder(allow, limits, param_factory).operator(cfg, "")
    except RecursionError:  # only reachable with limits.max_depth raised past Python's stack
        raise SandboxLimitError(
            "max_depth", limits.max_depth, limits.max_depth, "Python recursion limit reached"
        ) from None
