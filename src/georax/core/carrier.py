"""The carrier protocol: how operators treat "an array with metadata" without knowing its type.

`georax.core` sits above `georax.tensor` in the layer order, so it cannot import `GeoTensor`.
Instead every carrier subclasses :class:`Carrier`; operators that do not move pixels call
:func:`map_values` once and georeferencing survives automatically (DESIGN.md, Operator contract).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, TypeVar

import equinox as eqx
import jax

C = TypeVar("C")


class Carrier(eqx.Module):
    """Abstract base of array carriers (e.g. :class:`georax.GeoTensor`).

    A carrier has one array leaf, ``values``, and static metadata. Subclasses implement
    :meth:`with_values` to return a copy holding new values with the metadata kept (and adjusted
    where the new values make some of it stale, e.g. band names when the band count changes).
    """

    values: eqx.AbstractVar[jax.Array]

    @abc.abstractmethod
    def with_values(self: C, values: Any) -> C:
        """Return a copy of this carrier holding ``values`` instead."""


def values_of(x: Any) -> Any:
    """The raw array inside ``x`` (``x`` itself when it is not a carrier)."""
    return x.values if isinstance(x, Carrier) else x


def map_values(fn: Callable[[Any], Any], x: Any) -> Any:
    """Apply an array function to ``x``, keeping ``x``'s carrier (and metadata) if it has one.

    This is the one shared helper through which every pixel-preserving operator supports
    GeoTensor: `fn` sees a plain array; a carrier in gives a carrier out.

    **Arguments:**

    - `fn`: array -> array function.
    - `x`: a plain array or a :class:`Carrier`.

    **Returns:** ``fn(x)`` for a plain array, ``x.with_values(fn(x.values))`` for a carrier.
    """
    if isinstance(x, Carrier):
        return x.with_values(fn(x.values))
    return fn(x)
