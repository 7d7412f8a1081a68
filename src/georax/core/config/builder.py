"""Config -> operator: the generic builder behind YAML loading, :func:`georax.load` and the sandbox.

``from_config`` never imports anything named in a document: it looks each ``_target_`` up in the
registry (an allow-list when sandboxed), turns the document's values into Python values (lists to
tuples, ``_array_`` mappings to arrays, ``_param_`` placeholders through a factory), checks field
*names* (unknown and missing fields), and calls ``cls(**fields)`` -- the Operator contract. Field
*types* are checked by the class itself at construction (:mod:`georax.core.typecheck`), the same
check a Python caller meets, so nothing about types lives here.

The steps, in order: measure the config, check and fill the ``${name}`` variables, measure the
filled config again (a variable holding a list can multiply its size), build. Sandboxed (with
``allowed=``), static int sizes are also bounded by ``Limits.max_extent`` before each class is
called, since a hand-written ``__init__`` may allocate from them.
"""

from __future__ import annotations

import collections.abc
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from georax.core import registry
from georax.core.config.variables import check_variables, substitute_variables
from georax.core.config.writer import DTYPES
from georax.core.errors import (
    AbstractTargetError,
    ConfigError,
    SerializationError,
    UntrustedTargetError,
    short_repr,
)
from georax.core.operator import Operator, check_extent_values, config_field_names
from georax.core.sandbox import (
    ARRAY,
    DEFAULT_LIMITS,
    PARAM,
    RESERVED_KEYS,
    TARGET,
    Limits,
    SandboxLimitError,
    measure_config,
)

__all__ = ["ParamFactory", "ParamsRequiredError", "from_config"]

#: ``(placeholder key, shape, dtype) -> array`` for ``_param_`` placeholders.
ParamFactory = Callable[[str, tuple[int, ...], np.dtype], Any]


class ParamsRequiredError(SerializationError):
    """The config refers to arrays stored in a params file; load it with :func:`georax.load`."""


def _numeric(v: Any) -> bool:
    """Numbers, or (nested) lists of numbers (the config is measured, so depth is bounded)."""
    if isinstance(v, bool | int | float):
        return True
    return isinstance(v, list | tuple) and all(_numeric(x) for x in v)


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

    # -- targets -----------------------------------------------------------------------
    def resolve(self, target: Any, cfg: Mapping[str, Any], path: str) -> type[Operator]:
        if not isinstance(target, str):
            raise SerializationError(
                f"{path}: _target_ must be a string naming a registered operator, "
                f"got {type(target).__name__} {short_repr(target)!r}"
            )
        if registry.canonical(target) in registry.abstract_operators():
            registry.lookup(target)  # raises AbstractTargetError naming the concrete subclasses
        if self.allowed is not None and (
            target not in self.allowed and registry.canonical(target) not in self.allowed
        ):
            raise UntrustedTargetError(target, f"(at {path}) is not in the allowed registry")
        try:
            cls = registry.lookup(target)
        except AbstractTargetError:
            raise
        except SerializationError:
            raise UntrustedTargetError(
                target, f"(at {path}) is not a registered georax operator"
            ) from None
        if not (isinstance(cls, type) and issubclass(cls, Operator)):
            raise UntrustedTargetError(target, f"(at {path}) is not a georax Operator")
        reason = cls.yaml_load_refusal(cfg)
        if reason is not None:
            raise UntrustedTargetError(target, f"(at {path}) {reason}")
        return cls

    # -- operators ---------------------------------------------------------------------
    def operator(self, cfg: Any, path: str) -> Operator:
        where = path or "<root>"
        if not isinstance(cfg, Mapping):
            raise SerializationError(
                f"{where}: expected an operator mapping with _target_, got "
                f"{type(cfg).__name__} {short_repr(cfg)!r}"
            )
        if TARGET not in cfg:
            raise SerializationError(f"{where}: operator mapping has no _target_ key")
        cls = self.resolve(cfg[TARGET], cfg, where)
        self.check_names(cls, cfg)
        kwargs = {
            key: self.value(raw, f"{path}.{key}" if path else key, owner=cls.__name__, field=key)
            for key, raw in cfg.items()
            if key != TARGET
        }
        if self.allowed is not None:  # sandboxed: sizes are bounded before __init__ can allocate
            check_extent_values(cls, kwargs, self.limits)
        try:
            return cls(**kwargs)
        except ConfigError as e:
            e.add_note(f"in the config at {where}")
            raise

    def check_names(self, cls: type[Operator], cfg: Mapping[str, Any]) -> None:
        name = cls.__name__
        names = config_field_names(cls)
        for key in cfg:
            if key != TARGET and (not isinstance(key, str) or key not in names):
                raise ConfigError(
                    name,
                    str(key),
                    short_repr(cfg[key]),
                    f"unknown field; {name} accepts {list(names)}",
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

    # -- values ------------------------------------------------------------------------
    def value(self, v: Any, path: str, *, owner: str, field: str) -> Any:
        if v is None or isinstance(v, bool | int | float | str):
            return v
        if isinstance(v, Mapping):
            if TARGET in v:
                return self.operator(v, path)
            if ARRAY in v:
                return self.inline_array(v, path, owner, field)
            if PARAM in v:
                return self.param(v, path, owner, field)
            return self.mapping(v, path, owner, field)
        if isinstance(v, list | tuple):
            return tuple(
                self.value(x, f"{path}[{i}]", owner=owner, field=field) for i, x in enumerate(v)
            )
        raise ConfigError(
            owner,
            field,
            short_repr(v),
            f"unsupported value type {type(v).__name__} at {path} (config holds only "
            "str/int/float/bool/None, lists and mappings)",
        )

    def mapping(self, v: Mapping[Any, Any], path: str, owner: str, field: str) -> dict[str, Any]:
        out = {}
        for k, x in v.items():
            if not isinstance(k, str):
                raise ConfigError(owner, field, short_repr(v), f"mapping key {k!r} is not a string")
            if len(k) > 1 and k.startswith("_") and k.endswith("_"):
                raise ConfigError(
                    owner,
                    field,
                    short_repr(v),
                    f"unknown reserved key {k!r} (reserved keys: {', '.join(RESERVED_KEYS)})",
                )
            out[k] = self.value(x, f"{path}.{k}", owner=owner, field=field)
        return out

    def shape_dtype(
        self, spec: Mapping[str, Any], kind: str, path: str, owner: str, field: str
    ) -> tuple[tuple[int, ...], str]:
        keys = {kind, "shape", "dtype"}
        if set(spec) != keys:
            raise ConfigError(
                owner, field, short_repr(spec), f"{kind} needs exactly the keys {sorted(keys)}"
            )
        dtype, shape = spec["dtype"], spec["shape"]
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise ConfigError(
                owner, field, short_repr(dtype), f"dtype must be one of {sorted(DTYPES)}"
            )
        if not isinstance(shape, list | tuple) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise ConfigError(
                owner, field, short_repr(shape), "shape must be a list of non-negative ints"
            )
        if len(shape) > self.limits.max_array_dims:
            raise SandboxLimitError(
                "max_array_dims", len(shape), self.limits.max_array_dims, f"at {path}"
            )
        n = math.prod(shape)
        if n > self.limits.max_array_elements:
            raise SandboxLimitError(
                "max_array_elements", n, self.limits.max_array_elements, f"at {path}"
            )
        return tuple(shape), dtype

    def inline_array(self, spec: Mapping[str, Any], path: str, owner: str, field: str) -> Any:
        shape, dtype = self.shape_dtype(spec, ARRAY, path, owner, field)
        values = spec[ARRAY]
        if not _numeric(values):
            raise ConfigError(owner, field, short_repr(values), "_array_ must hold numbers")
        try:
            arr = np.asarray(values, dtype=jnp.dtype(dtype))
        except (ValueError, TypeError, OverflowError) as e:
            raise ConfigError(
                owner, field, short_repr(values), f"not a valid {dtype} array: {e}"
            ) from None
        if arr.size != math.prod(shape):
            raise ConfigError(
                owner, field, short_repr(values), f"has {arr.size} values but shape {list(shape)}"
            )
        arr = arr.reshape(shape)
        if arr.dtype.itemsize == 8 and not jax.config.jax_enable_x64:
            return arr  # keep 64-bit values exact (JAX would truncate them to 32 bits)
        return jnp.asarray(arr)

    def param(self, spec: Mapping[str, Any], path: str, owner: str, field: str) -> Any:
        shape, dtype = self.shape_dtype(spec, PARAM, path, owner, field)
        if self.param_factory is None:
            raise ParamsRequiredError(
                f"{owner}.{field} ({path}): array {spec[PARAM]!r} ({dtype}{list(shape)}) is "
                "stored in a params file; load the pipeline with georax.load(directory)"
            )
        return self.param_factory(str(spec[PARAM]), shape, jnp.dtype(dtype))


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
      registered, non-``forbid_in_yaml`` operator is accepted. Abstract classes never are
      (:class:`~georax.errors.AbstractTargetError`). Nothing is ever imported.
    - `variables`: values for ``${name}`` placeholders.
    - `limits`: :class:`~georax.core.sandbox.Limits` on the config's size (counted before and
      after variables are filled in) and on operator and array counts.
    - `param_factory`: ``(key, shape, dtype) -> array`` for ``_param_`` placeholders; used by
      :func:`georax.load`. Without it a placeholder raises :class:`ParamsRequiredError`.

    **Returns:** the operator.

    **Raises:** `UntrustedTargetError`, `ConfigError` (unknown, missing or mistyped field,
    named), `GraphError`, `MissingVariableError`, `SandboxLimitError`, `SerializationError`.
    """
    measure_config(cfg, limits, "config")
    check_variables(variables or {}, limits)
    filled = substitute_variables(cfg, variables)
    if variables:
        measure_config(filled, limits, "config after ${} variables are filled in")
    allow = None if allowed is None else frozenset(allowed)
    try:
        return _Builder(allow, limits, param_factory).operator(filled, "")
    except RecursionError:  # only reachable with limits.max_depth raised past Python's stack
        raise SandboxLimitError(
            "max_depth", limits.max_depth, limits.max_depth, "Python recursion limit reached"
        ) from None
