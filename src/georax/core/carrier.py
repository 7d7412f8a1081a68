"""The carrier protocol: how operators treat "an array with metadata" without knowing its type.

`georax.core` sits above `georax.tensor` in the layer order, so it cannot import `GeoTensor`.
Instead every carrier subclasses :class:`Carrier`, and operators rebuild carriers only through
:meth:`Carrier.replace` -- never positionally through a constructor -- so any operator works on
any carrier (:class:`georax.GeoTensor`, :class:`georax.patch.Chips`, future ones). Operators that
do not move pixels call :func:`map_values` once and georeferencing survives automatically
(DESIGN.md, Operator contract).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Self

import equinox as eqx
import jax
import jax.numpy as jnp

from georax.core.errors import ConfigError

__all__ = ["Carrier", "map_values", "values_of"]


class Carrier(eqx.Module):
    """Abstract base of array carriers (e.g. :class:`georax.GeoTensor`).

    A carrier has one array leaf, ``values``, and static metadata. It is rebuilt only through
    :meth:`replace`, which calls the subclass's own constructor with the fields changed, so the
    subclass's validation runs on every rebuilt carrier.

    Class attributes:

    - `band_axis_ndim`: the number of trailing axes, counted from the band axis, that a value
      must have for ``values.shape[-3]`` to be its band axis (3 for ``(band, H, W)``). Band names
      that no longer match the band count after :meth:`replace` changes ``values`` are dropped
      (an operator that knows the new names passes ``band_names=`` itself).
    """

    values: eqx.AbstractVar[jax.Array]
    band_axis_ndim: eqx.AbstractClassVar[int]

    def replace(self, **changes: Any) -> Self:
        """A copy of this carrier with some fields replaced, validated like the constructor.

        **Arguments:**

        - `**changes`: ``field=value`` for any of the carrier's init fields (``values``,
          ``transform``, ``band_names``...).

        **Returns:** a new carrier of the same type. When ``values`` changes and ``band_names``
        is not given, names are kept only if the band count is unchanged.

        **Raises:** :class:`~georax.errors.ConfigError` naming an unknown field.
        """
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        unknown = sorted(set(changes) - set(fields))
        if unknown:
            raise ConfigError(
                type(self).__name__, unknown[0], changes[unknown[0]], f"is not a field of {fields}"
            )
        if "values" in changes and "band_names" not in changes and "band_names" in fields:
            fields["band_names"] = self._names_for(changes["values"], fields["band_names"])
        fields.update(changes)
        return type(self)(**fields)

    def shape_bound(self) -> tuple[int, ...]:
        """The shape :meth:`georax.Operator.precheck` is given for this carrier.

        ``values``' shape by default (``values`` may be a :class:`jax.ShapeDtypeStruct`); a
        carrier whose pre-check needs more than a shape (chips remember their scene) returns a
        tuple subclass carrying it.
        """
        return tuple(int(d) for d in self.values.shape)

    def _names_for(self, values: Any, names: tuple[str, ...] | None) -> tuple[str, ...] | None:
        shape = jnp.shape(values)
        if names is None or len(shape) < self.band_axis_ndim or shape[-3] != len(names):
            return None
        return names


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

    **Returns:** ``fn(x)`` for a plain array, ``x.replace(values=fn(x.values))`` for a carrier.
    """
    if isinstance(x, Carrier):
        return x.replace(values=fn(x.values))
    return fn(x)
