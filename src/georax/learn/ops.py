"""Small operators model pipelines need around the network.

:class:`SelectBands` keeps the model's input bands (dropping, say, a QA band the model must not
see) *inside* the preprocessing, so training and inference cannot disagree on which bands the
model reads. It is carrier-neutral: plain arrays, GeoTensors (band names follow) and
:class:`~georax.patch.Chips` stacks.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from georax.core.carrier import Carrier, values_of
from georax.core.errors import ShapeError
from georax.core.operator import Operator, as_tuple, static
from georax.core.sandbox import Limits

__all__ = ["SelectBands", "select_bands"]


def select_bands(x: jax.Array, bands: tuple[int, ...]) -> jax.Array:
    """``x[..., bands, :, :]``: the given bands of a bands-first array, in that order.

    **Arguments:**

    - `x`: ``(..., C, H, W)``.
    - `bands`: band indices (negative ones count from the end).

    **Returns:** ``(..., len(bands), H, W)``.
    """
    return jnp.take(x, jnp.asarray(bands, jnp.int32), axis=-3)


class SelectBands(Operator):
    """Keep the bands ``bands`` (indices on the band axis, ``-3``), in the given order.

    **Arguments:**

    - `bands`: one or more band indices; negative indices count from the last band.
    """

    bands: tuple[int, ...] = static(converter=as_tuple)

    def __check_init__(self) -> None:
        if not self.bands:
            self.fail("bands", "needs at least one band index")

    def _resolved(self, count: int) -> tuple[int, ...]:
        bad = [b for b in self.bands if not -count <= b < count]
        if bad:
            raise ShapeError(
                f"SelectBands.bands={self.bands}: {bad} out of range for an input with "
                f"{count} bands"
            )
        return tuple(b % count for b in self.bands)

    def precheck(self, shape: tuple[int, ...], limits: Limits) -> tuple[int, ...]:
        """Refuse band indices the input does not have; the output has ``len(bands)`` bands."""
        del limits
        if len(shape) < 3:
            raise ShapeError(f"SelectBands needs a band axis (..., C, H, W), got shape {shape}")
        self._resolved(int(shape[-3]))
        return (*shape[:-3], len(self.bands), *shape[-2:])

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        v = values_of(x)
        if jnp.ndim(v) < 3:
            raise ShapeError(
                f"SelectBands needs a band axis (..., C, H, W), got shape {jnp.shape(v)}"
            )
        bands = self._resolved(int(jnp.shape(v)[-3]))
        out = select_bands(v, bands)
        if not isinstance(x, Carrier):
            return out
        names = getattr(x, "band_names", None)
        if names is not None and len(names) == jnp.shape(v)[-3]:
            return x.replace(values=out, band_names=tuple(names[b] for b in bands))
        return x.replace(values=out)
