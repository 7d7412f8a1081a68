"""Chips: the carrier that flows between GridSampler, ApplyToChips and Stitch.

A chip stack plus everything needed to put it back: each chip's position, the patcher that cut
it (its window and aggregation) and the source scene's shape, padding and georeferencing. Like
:class:`georax.GeoTensor` it is a :class:`~georax.core.carrier.Carrier` whose only float leaf is
``values``, so pixel-preserving operators (``map_values``) run on a whole stack unchanged, and it
passes through ``jit``/``vmap``/``grad``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from affine import Affine
from jaxtyping import Array, Float, Int

from georax.core.carrier import Carrier
from georax.core.operator import static
from georax.tensor.geotensor import GeoTensor

if TYPE_CHECKING:
    from georax.patch.patcher import Patcher

Grid = tuple[tuple[int, ...], tuple[int, ...]]


class Chips(Carrier):
    """A stack of chips cut from one scene, with their positions and the scene's metadata.

    **Arguments:**

    - `values`: ``(n, *band, h, w)`` chip values.
    - `positions`: ``(n, 2)`` int32 top-left ``(row, col)`` of each chip in the *padded* scene
      (an array leaf: random samplers produce traced positions).
    - `patcher`: the :class:`~georax.patch.Patcher` that cut the chips (window, aggregation).
    - `scene_shape`: ``(H, W)`` of the unpadded source scene.
    - `pads`: ``((top, bottom), (left, right))`` padding applied before cutting.
    - `grid`: per-axis chip starts when positions form a regular grid, else None.
    - `transform`, `crs`, `fill_value`, `band_names`: the source scene's georeferencing.
    - `geo`: whether the source was a GeoTensor (Stitch then returns one).
    """

    values: jax.Array
    positions: jax.Array
    patcher: Patcher = static()
    scene_shape: tuple[int, int] = static()
    pads: tuple[tuple[int, int], tuple[int, int]] = static()
    grid: Grid | None = static(default=None)
    transform: Affine = static(default=Affine.identity())
    crs: str | None = static(default=None)
    fill_value: float | int | None = static(default=None)
    band_names: tuple[str, ...] | None = static(default=None)
    geo: bool = static(default=False)
    band_axis_ndim: ClassVar[int] = 4

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def chip_shape(self) -> tuple[int, int]:
        """``(h, w)`` of one chip."""
        return int(self.values.shape[-2]), int(self.values.shape[-1])

    @property
    def padded_shape(self) -> tuple[int, int]:
        """``(H, W)`` of the padded scene the positions refer to."""
        (t, b), (lft, r) = self.pads
        return self.scene_shape[0] + t + b, self.scene_shape[1] + lft + r

    def scene_positions(self) -> Int[Array, "n 2"]:
        """Chip top-left ``(row, col)`` in unpadded scene pixels (negative inside the padding)."""
        off = jnp.asarray([self.pads[0][0], self.pads[1][0]], jnp.int32)
        return self.positions - off

    def transforms(self) -> Float[Array, "n 6"]:
        """Each chip's affine ``(a, b, c, d, e, f)``: the scene transform shifted to the chip.

        Works on traced positions (inside ``jit``), e.g. to attach map coordinates to scores.
        """
        t = self.transform
        rc = self.scene_positions().astype(jnp.result_type(float))
        row, col = rc[:, 0], rc[:, 1]
        c = t.c + t.a * col + t.b * row
        f = t.f + t.d * col + t.e * row
        n = rc.shape[0]
        full = lambda v: jnp.full((n,), v, c.dtype)  # noqa: E731
        return jnp.stack([full(t.a), full(t.b), c, full(t.d), full(t.e), f], axis=1)

    def chip_transform(self, i: int) -> Affine:
        """The exact (float64, host-side) :class:`affine.Affine` of chip ``i``."""
        row, col = (int(v) for v in np.asarray(self.scene_positions())[i])
        return self.transform @ Affine.translation(col, row)

    def geotensor(self, i: int) -> GeoTensor:
        """Chip ``i`` as a :class:`GeoTensor` with its own transform (host-side, concrete)."""
        return GeoTensor(
            self.values[i], self.chip_transform(i), self.crs, self.fill_value, self.band_names
        )
