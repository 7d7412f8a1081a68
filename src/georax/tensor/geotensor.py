"""GeoTensor: a georeferenced array carrier that works through jit, vmap and grad."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from affine import Affine

from georax.core.carrier import Carrier
from georax.core.operator import static


def _as_affine(transform: Any) -> Affine:
    if isinstance(transform, Affine):
        return transform
    return Affine(*tuple(transform)[:6])


class GeoTensor(Carrier):
    """A bands-first array ``(..., H, W)`` with its georeferencing.

    ``values`` is the only array leaf; ``transform`` (pixel -> CRS affine), ``crs``,
    ``fill_value`` and ``band_names`` are static, so a GeoTensor passes through ``jit``/``vmap``/
    ``grad`` like an array and its metadata is known at trace time.

    **Arguments:**

    - `values`: the pixels, bands-first, last two axes are rows (y) and columns (x).
    - `transform`: an :class:`affine.Affine` (or its 6 coefficients) mapping (col, row) to CRS x/y.
    - `crs`: a CRS string (``"EPSG:32630"`` or WKT), or None when unknown.
    - `fill_value`: the nodata value, or None.
    - `band_names`: optional names, one per band (``values.shape[-3]``).
    """

    values: jax.Array
    transform: Affine = static()
    crs: str | None = static(default=None)
    fill_value: float | int | None = static(default=None)
    band_names: tuple[str, ...] | None = static(default=None)

    def __init__(
        self,
        values: Any,
        transform: Any = Affine.identity(),
        crs: Any = None,
        fill_value: float | int | None = None,
        band_names: Any = None,
    ) -> None:
        self.values = values if isinstance(values, jax.Array) else jnp.asarray(values)
        self.transform = _as_affine(transform)
        self.crs = None if crs is None else str(crs)
        self.fill_value = fill_value
        self.band_names = None if band_names is None else tuple(str(b) for b in band_names)

    def with_values(self, values: Any) -> GeoTensor:
        """A copy holding ``values``; band names are dropped if the band count changed."""
        names = self.band_names
        shape = jnp.shape(values)
        if names is not None and (len(shape) < 3 or shape[-3] != len(names)):
            names = None
        return GeoTensor(values, self.transform, self.crs, self.fill_value, names)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.values.shape)

    @property
    def dtype(self) -> Any:
        return self.values.dtype
