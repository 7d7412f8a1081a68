"""Shape/dtype tables for ``Sequential.summary`` and ``Graph.summary``."""

from __future__ import annotations

from typing import Any

import jax


def describe(struct: Any) -> tuple[str, str]:
    """``(shape, dtype)`` strings for an abstract value (array, carrier or pytree of them)."""
    leaves = jax.tree_util.tree_leaves(struct)
    if len(leaves) == 1 and hasattr(leaves[0], "shape"):
        return str(tuple(leaves[0].shape)), str(leaves[0].dtype)
    shapes = ", ".join(str(tuple(leaf.shape)) for leaf in leaves if hasattr(leaf, "shape"))
    dtypes = ", ".join(sorted({str(leaf.dtype) for leaf in leaves if hasattr(leaf, "dtype")}))
    return f"[{shapes}]", dtypes


class Summary:
    """A printable table of pipeline steps; ``rows`` holds the raw cells for programmatic use."""

    def __init__(self, title: str, headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
        self.title = title
        self.headers = headers
        self.rows = rows

    def __str__(self) -> str:
        table = [self.headers, *self.rows]
        widths = [max(len(r[i]) for r in table) for i in range(len(self.headers))]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        lines = [self.title, fmt.format(*self.headers), "  ".join("-" * w for w in widths)]
        lines += [fmt.format(*r) for r in self.rows]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)
