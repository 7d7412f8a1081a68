"""Combinators: Sequential, Identity, Lambda, Tap (and GetItem, defined next to graph nodes)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, overload

import jax

from georax.core.operator import GetItem, Operator, static
from georax.core.sandbox import Limits
from georax.core.summary import Summary, describe

__all__ = ["GetItem", "Identity", "Lambda", "Sequential", "Tap", "split_keys"]


def split_keys(key: jax.Array | None, n: int) -> list[jax.Array | None]:
    """``n`` independent keys from ``key`` (or ``n`` Nones when ``key`` is None)."""
    if key is None:
        return [None] * n
    return list(jax.random.split(key, n))


class Sequential(Operator):
    """Run operators one after another: ``Sequential([a, b, c])(x) == c(b(a(x)))``.

    The children are a tuple of pytrees, so the whole chain is one pytree and compiles to one
    program. A ``key`` is split into one independent key per child, so stochastic children never
    share randomness.

    **Arguments:**

    - `operators`: the steps, in order. Each must be an :class:`Operator`.
    """

    operators: tuple[Operator, ...]

    def __init__(self, operators: Iterable[Operator]) -> None:
        self.operators = tuple(operators)

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        for op, k in zip(self.operators, split_keys(key, len(self.operators)), strict=True):
            x = op(x, key=k)
        return x

    def precheck(self, shape: tuple[int, ...], limits: Limits) -> tuple[int, ...]:
        """Pre-check each step on the bound its predecessor returns."""
        for op in self.operators:
            shape = op.precheck(shape, limits)
        return shape

    def __len__(self) -> int:
        return len(self.operators)

    def __iter__(self) -> Iterator[Operator]:
        return iter(self.operators)

    @overload
    def __getitem__(self, i: int) -> Operator: ...
    @overload
    def __getitem__(self, i: slice) -> Sequential: ...
    def __getitem__(self, i: int | slice) -> Operator | Sequential:
        if isinstance(i, slice):
            return Sequential(self.operators[i])
        return self.operators[i]

    def summary(self, example_input: Any, *, key: jax.Array | None = None) -> Summary:
        """Per-step output shape and dtype, computed abstractly with :func:`jax.eval_shape`.

        **Arguments:**

        - `example_input`: an array, carrier, or :class:`jax.ShapeDtypeStruct` of the input.
        - `key`: a key for stochastic steps (a fixed dummy key is used if omitted).

        **Returns:** a :class:`~georax.core.summary.Summary`; ``print`` it for a table.
        """
        key = jax.random.key(0) if key is None else key
        keys = split_keys(key, len(self.operators))
        shape, dtype = describe(example_input)
        rows = [("-", "input", shape, dtype)]
        current = example_input
        for i, (op, k) in enumerate(zip(self.operators, keys, strict=True)):
            current = jax.eval_shape(lambda o, v, kk: o(v, key=kk), op, current, k)
            rows.append((str(i), op.display_name, *describe(current)))
        return Summary(f"Sequential ({len(self)} steps)", ("#", "operator", "shape", "dtype"), rows)


class Identity(Operator):
    """Return the input unchanged."""

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        return x


class Lambda(Operator):
    """Wrap a plain function ``fn(x) -> y`` as an operator.

    The function is static (part of the tree structure), so it must be traceable by JAX to run
    under ``jit``. Because it is a closure it cannot be written to YAML (``forbid_in_yaml``).

    **Arguments:**

    - `fn`: the function, receiving whatever the operator receives (array or carrier).
    - `name`: a label for summaries and messages.
    """

    forbid_in_yaml = True
    fn: Callable[[Any], Any] = static()
    name: str = static(default="lambda")

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        return self.fn(x)

    def yaml_write_refusal(self) -> str | None:
        return (
            f"it holds a Python function ({_callable_name(self.fn)}), which YAML cannot "
            "represent (forbid_in_yaml); replace it with a registered Operator subclass"
        )

    @property
    def display_name(self) -> str:
        return f"Lambda[{self.name}]"


class Tap(Operator):
    """Identity with a host-side side effect: ``fn(x)`` runs on the host, then ``x`` flows on.

    The call goes through :func:`jax.debug.callback`, so it fires in eager mode *and* inside a
    jitted pipeline, with the concrete values (NumPy arrays) of that run. With ``ordered=True``
    (default) taps fire in program order; ordered effects are not allowed under ``vmap``, so use
    ``ordered=False`` for a tap inside a vmapped pipeline. Debug-only: ``forbid_in_yaml``.

    **Arguments:**

    - `fn`: called as ``fn(x)`` on the host; its return value is ignored.
    - `ordered`: keep taps in program order.
    """

    forbid_in_yaml = True
    fn: Callable[[Any], Any] = static()
    ordered: bool = static(default=True)

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        jax.debug.callback(self.fn, x, ordered=self.ordered)
        return x

    def yaml_write_refusal(self) -> str | None:
        return (
            f"it runs a host callback ({_callable_name(self.fn)}), which YAML cannot "
            "represent (forbid_in_yaml); replace it with a registered Operator subclass"
        )


def _callable_name(fn: Any) -> str:
    return getattr(fn, "__qualname__", type(fn).__name__)
