"""A safe compiler from band-math formula strings to ``jax.numpy`` functions (private).

Formulas such as the Awesome Spectral Indices catalog's ``"g*(N-R)/(N+C1*R-C2*B+L)"`` are parsed
with :mod:`ast` in ``eval`` mode and checked node by node against a whitelist: names, numeric
literals, ``+ - * / **``, unary ``+``/``-`` and calls of a few named ``jax.numpy`` functions.
Nothing is ever passed to ``eval``/``exec``; an attribute access, subscript, comparison, lambda,
keyword argument or unknown function is refused with a :class:`FormulaError` naming it.
"""

from __future__ import annotations

import ast
import functools
import operator
from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp

from georax.core.sandbox import DEFAULT_LIMITS
from georax.geo.errors import FormulaError

__all__ = ["FUNCTIONS", "Formula", "compile_formula"]

# A formula is compiled when its operator is built, where no document's Limits are in hand: the
# one set of limits for formulas is the default's (the sandbox keeps the same values).
_MAX_CHARS = DEFAULT_LIMITS.max_formula_chars
_MAX_NODES = DEFAULT_LIMITS.max_formula_nodes

_BINOPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: jnp.power,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}

#: Functions a formula may call, by name.
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": jnp.sqrt,
    "abs": jnp.abs,
    "exp": jnp.exp,
    "log": jnp.log,
    "log10": jnp.log10,
    "tanh": jnp.tanh,
    "sin": jnp.sin,
    "cos": jnp.cos,
    "tan": jnp.tan,
    "arctan": jnp.arctan,
    "min": jnp.minimum,
    "max": jnp.maximum,
}


class Formula:
    """A validated formula: its text, its free symbols, and a compiled ``jax.numpy`` function.

    **Arguments:**

    - `text`: the expression, e.g. ``"(N - R) / (N + R)"``.
    """

    def __init__(self, text: str) -> None:
        if not isinstance(text, str):
            raise FormulaError(f"formula must be a string, got {type(text).__name__}")
        if len(text) > _MAX_CHARS:
            raise FormulaError(f"formula is {len(text)} characters long (limit {_MAX_CHARS})")
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as e:
            raise FormulaError(f"formula {text!r} does not parse: {e.msg}") from None
        nodes = list(ast.walk(tree))
        if len(nodes) > _MAX_NODES:
            raise FormulaError(f"formula {text!r} has {len(nodes)} nodes (limit {_MAX_NODES})")
        symbols: set[str] = set()
        for node in nodes:
            self._check(node, text, symbols)
        self.text = text
        self.tree = tree
        self.symbols: frozenset[str] = frozenset(symbols)

    @staticmethod
    def _check(node: ast.AST, text: str, symbols: set[str]) -> None:
        if isinstance(node, ast.Expression | ast.Load | ast.operator | ast.unaryop):
            if isinstance(node, ast.operator) and type(node) not in _BINOPS:
                raise FormulaError(f"operator {type(node).__name__} is not allowed in {text!r}")
            if isinstance(node, ast.unaryop) and type(node) not in _UNARY:
                raise FormulaError(f"operator {type(node).__name__} is not allowed in {text!r}")
            return
        if isinstance(node, ast.BinOp | ast.UnaryOp):
            return
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float):
                raise FormulaError(f"literal {node.value!r} is not a number in {text!r}")
            return
        if isinstance(node, ast.Name):
            if node.id.startswith("_"):
                raise FormulaError(f"name {node.id!r} is not allowed in {text!r}")
            symbols.add(node.id)
            return
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                raise FormulaError(
                    f"call of {ast.unparse(node.func)!r} is not allowed in {text!r}; "
                    f"allowed functions: {sorted(FUNCTIONS)}"
                )
            if node.keywords:
                raise FormulaError(f"keyword arguments are not allowed in {text!r}")
            # the function name itself is not a free symbol
            return
        raise FormulaError(f"{type(node).__name__} is not allowed in formula {text!r}")

    @property
    def variables(self) -> frozenset[str]:
        """Free symbols (bands and constants), excluding called function names."""
        funcs = {
            n.func.id
            for n in ast.walk(self.tree)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
        }
        return frozenset(s for s in self.symbols if s not in funcs or self._used_as_value(s))

    def _used_as_value(self, name: str) -> bool:
        calls = {id(n.func) for n in ast.walk(self.tree) if isinstance(n, ast.Call)}
        return any(
            isinstance(n, ast.Name) and n.id == name and id(n) not in calls
            for n in ast.walk(self.tree)
        )

    def __call__(self, env: Mapping[str, Any]) -> Any:
        """Evaluate with ``env`` mapping every variable to an array or number."""
        missing = sorted(self.variables - set(env))
        if missing:
            raise FormulaError(f"formula {self.text!r} needs values for {missing}")
        return _evaluate(self.tree.body, env)


def _evaluate(node: ast.AST, env: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.BinOp):
        return _BINOPS[type(node.op)](_evaluate(node.left, env), _evaluate(node.right, env))
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_evaluate(node.operand, env))
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return env[node.id]
    if isinstance(node, ast.Call):
        fn = FUNCTIONS[node.func.id]  # type: ignore[attr-defined]
        return fn(*(_evaluate(a, env) for a in node.args))
    raise FormulaError(f"cannot evaluate {type(node).__name__}")  # unreachable after _check


@functools.lru_cache(maxsize=1024)
def compile_formula(text: str) -> Formula:
    """Parse and validate ``text`` once (cached by text)."""
    return Formula(text)
