"""``${name}`` placeholders in configs, filled from ``variables=`` at load time (seeds' QC policy).

A string that is exactly ``${name}`` takes the variable's value *with its type* (so
``window: ${size}`` can be an int, or a list); inside a longer string the value is formatted with
``str``. ``$${`` writes a literal ``${``. Placeholders are not expanded recursively.

Variables are plain YAML values and are measured against the same
:class:`~georax.core.sandbox.Limits` as documents; the config is measured again once they are
filled in (a variable holding a list can multiply a document's size), by
:func:`georax.core.config.from_config`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from georax.core.errors import SerializationError
from georax.core.sandbox import Limits, measure_config

__all__ = ["MissingVariableError", "check_variables", "substitute_variables"]

_PLACEHOLDER = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")


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


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, bool | int | float | str):
        return True
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def check_variables(variables: Mapping[str, Any], limits: Limits) -> None:
    """Refuse variables that are not plain YAML values or exceed ``limits``.

    **Raises:** `SerializationError` naming the variable; `SandboxLimitError`.
    """
    if not isinstance(variables, Mapping):
        raise SerializationError(f"variables must be a mapping, got {type(variables).__name__}")
    for name, value in variables.items():
        if not isinstance(name, str):
            raise SerializationError(f"variable name {name!r} is not a string")
        measure_config(value, limits, f"variable {name!r}")  # bounds the walk below
        if not _plain(value):
            raise SerializationError(
                f"variable {name!r} has type {type(value).__name__}; variables must be plain "
                "YAML values (str/int/float/bool/None, lists and string-keyed dicts)"
            )


def _value_of(name: str, variables: Mapping[str, Any], where: str) -> Any:
    if not _VAR_NAME.fullmatch(name):
        raise SerializationError(f"bad placeholder ${{{name}}} at {where}")
    if name not in variables:
        raise MissingVariableError(name, where)
    return variables[name]


def _substitute_str(s: str, variables: Mapping[str, Any], where: str) -> Any:
    if "$" not in s:
        return s
    whole = _PLACEHOLDER.fullmatch(s)
    if whole is not None and whole.group(1) is not None:
        value = _value_of(whole.group(1), variables, where)
        return list(value) if isinstance(value, tuple) else value

    def repl(m: re.Match[str]) -> str:
        if m.group(1) is None:
            return "${"
        value = _value_of(m.group(1), variables, where)
        if not isinstance(value, str | int | float | bool):
            raise SerializationError(
                f"placeholder ${{{m.group(1)}}} at {where} is inside a string, so its value must "
                f"be a scalar, got {type(value).__name__}"
            )
        return str(value)

    return _PLACEHOLDER.sub(repl, s)


def substitute_variables(cfg: Any, variables: Mapping[str, Any] | None = None) -> Any:
    """Fill ``${name}`` placeholders in the strings of ``cfg`` from ``variables``.

    The walk is iterative, so it needs no depth limit of its own: callers measure ``cfg`` and
    ``variables`` first (:func:`~georax.core.sandbox.measure_config`, :func:`check_variables`).

    **Arguments:**

    - `cfg`: a config (dicts, lists, scalars).
    - `variables`: name -> plain YAML value.

    **Returns:** a new config with every placeholder filled (shared sub-configs stay shared).

    **Raises:** :class:`MissingVariableError` naming the first placeholder without a value.
    """
    variables = dict(variables or {})
    done: dict[int, Any] = {}

    def leaf(node: Any, where: str) -> Any:
        return (
            _substitute_str(node, variables, where or "<root>") if isinstance(node, str) else node
        )

    # Iterative post-order copy: children are rebuilt before their parent.
    stack: list[tuple[Any, str, bool]] = [(cfg, "", False)]
    while stack:
        node, where, built = stack.pop()
        if id(node) in done:
            continue
        if isinstance(node, Mapping):
            items = [(k, v, f"{where}.{k}" if where else str(k)) for k, v in node.items()]
            if built:
                done[id(node)] = {k: done.get(id(v), v) for k, v, _ in items}
            else:
                stack.append((node, where, True))
                stack.extend((v, w, False) for _, v, w in items if id(v) not in done)
        elif isinstance(node, list | tuple):
            items = [(v, f"{where}[{i}]") for i, v in enumerate(node)]
            if built:
                done[id(node)] = [done.get(id(v), v) for v, _ in items]
            else:
                stack.append((node, where, True))
                stack.extend((v, w, False) for v, w in items if id(v) not in done)
        else:
            done[id(node)] = leaf(node, where)
    return done[id(cfg)]
