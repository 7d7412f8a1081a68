"""Operator -> config: the plain, JSON-compatible dict behind YAML and hashing.

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
  when the field is a :func:`~georax.core.operator.leaf` whose converter rebuilds the same dtype
  from the bare value, otherwise as ``{_array_: [...], dtype: float16, shape: [2, 2]}``. Floats
  are written with the shortest decimal that round-trips in *their own* dtype (``0.3`` for a
  float32 0.3, not ``0.30000001192092896``), falling back to the exact float64 value if that
  would not round-trip.
- Larger arrays (model weights, LUTs) are written as placeholders
  ``{_param_: operators[1].weight, shape: [...], dtype: float32}``: :func:`georax.save` stores
  their values in the params file; loading such a config needs :func:`georax.load`.
- Strings are written verbatim except that ``${`` is escaped as ``$${``, because ``${name}`` is
  a placeholder filled from ``variables=`` at load time.

Whether an operator may be written at all is the class's own decision
(:meth:`~georax.Operator.yaml_write_refusal`); the writer has no special cases.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from georax.core import registry
from georax.core.errors import SerializationError
from georax.core.operator import LEAF, Operator, config_field_names
from georax.core.sandbox import PARAM, RESERVED_KEYS, TARGET

__all__ = ["DTYPES", "INLINE_MAX", "config_and_params", "to_config", "yaml_forbidden_reason"]

#: Array leaves with at most this many elements are written inline in config/YAML.
INLINE_MAX = 256

#: Array dtypes a config can hold (inline arrays, params placeholders).
DTYPES = frozenset(
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


def yaml_forbidden_reason(op: Operator) -> str | None:
    """Why ``op`` cannot be written to YAML, or ``None`` if it can (the class decides)."""
    return op.yaml_write_refusal()


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
        self.params: dict[str, Any] = {}

    def operator(self, op: Any, path: str) -> dict[str, Any]:
        where = path or "<root>"
        if not isinstance(op, Operator):
            raise SerializationError(f"{where}: {type(op).__name__} is not a georax Operator")
        reason = op.yaml_write_refusal()
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
            return self.array(v, path, f, top=top, owner=owner)
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
            return self.mapping(v, path, f, owner)
        if isinstance(v, jax.core.Tracer):
            raise SerializationError(f"{path}: cannot write a traced value (call outside jit)")
        raise SerializationError(
            f"{owner} field {path} holds a {type(v).__module__}.{type(v).__qualname__}, "
            "which config cannot represent (allowed: operators, arrays, str/int/float/bool/None, "
            "and lists/tuples/string-keyed dicts of those)"
        )

    def mapping(
        self, v: Mapping[Any, Any], path: str, f: dataclasses.Field, owner: str
    ) -> dict[str, Any]:
        out = {}
        for k, x in v.items():
            if not isinstance(k, str) or k in RESERVED_KEYS:
                raise SerializationError(
                    f"{path}: mapping key {k!r} cannot be written (keys must be strings "
                    f"other than {', '.join(RESERVED_KEYS)})"
                )
            out[k] = self.value(x, f"{path}.{k}", f, top=False, owner=owner)
        return out

    def array(self, v: Any, path: str, f: dataclasses.Field, *, top: bool, owner: str) -> Any:
        if isinstance(v, jax.core.Tracer):
            raise SerializationError(f"{path}: cannot write a traced value (call outside jit)")
        a = np.asarray(v)
        name = a.dtype.name
        if name not in DTYPES:
            raise SerializationError(
                f"{owner} field {path}: arrays of dtype {name} cannot be written to config "
                f"(supported: {', '.join(sorted(DTYPES))})"
            )
        if self.max_inline is not None and a.size > self.max_inline:
            self.params[path] = v
            return {PARAM: path, "shape": list(a.shape), "dtype": name}
        values = _python_values(a)
        if top and a.size > 0 and f.metadata.get(LEAF):
            rebuilt = f.metadata["converter"](values)
            if rebuilt.dtype == a.dtype and rebuilt.shape == a.shape:
                return values
        return {"_array_": values, "dtype": name, "shape": list(a.shape)}


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


def config_and_params(
    op: Operator, *, max_inline: int | None = INLINE_MAX
) -> tuple[dict[str, Any], dict[str, Any]]:
    """:func:`to_config` plus the arrays behind its ``_param_`` placeholders, by key.

    ``from_config(cfg, param_factory=lambda key, shape, dtype: params[key])`` rebuilds ``op``.
    """
    writer = _Writer(max_inline)
    cfg = writer.operator(op, "")
    return cfg, writer.params
