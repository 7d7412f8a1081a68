"""Chips: the carrier that flows between GridSampler, ApplyToChips and Stitch.

A chip stack plus everything needed to put it back: each chip's position, the window and
aggregation of the patcher that cut it, and the source scene's shape, padding and
georeferencing. Like :class:`georax.GeoTensor` it is a :class:`~georax.core.carrier.Carrier`
whose only float leaf is ``values``, so any operator that rebuilds its input with
:meth:`~georax.core.carrier.Carrier.replace` (every georax operator) runs on a whole stack
unchanged -- ``NDVI()(chips)`` is a stack of one-band chips named ``NDVI`` -- and it passes through
``jit``/``vmap``/``grad``.
"""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from affine import Affine
from jaxtyping import Array, Float, Int, Shaped

from georax.core.errors import ShapeError
from georax.core.operator import static
from georax.patch.aggregation import Aggregation, ChipStack
from georax.patch.extract import Pads, crop_padding
from georax.patch.geometry import ChipOffsets, ChipsShape
from georax.patch.stitch import stitch
from georax.patch.window_ops import Window
from georax.tensor.geotensor import GeoTensor, apply_transform, canonical_nan, window_transform
from georax.tensor.grid import Grid, MissingGeoreferenceError

__all__ = ["Chips"]


class Chips(ChipStack):
    """A stack of chips cut from one scene, with their positions and the scene's metadata.

    **Arguments:**

    - `values`: ``(n, *band, h, w)`` chip values.
    - `positions`: ``(n, 2)`` int32 top-left ``(row, col)`` of each chip in the *padded* scene
      (an array leaf: random samplers produce traced positions).
    - `chip`: ``(h, w)`` the chips were cut at (stitching refuses chips of another size).
    - `window`: the patcher's :class:`~georax.patch.Window` (weights for overlap-add).
    - `aggregation`: the patcher's :class:`~georax.patch.Aggregation` (the default for
      :meth:`stitch`).
    - `scene_shape`: ``(H, W)`` of the unpadded source scene.
    - `pads`: ``((top, bottom), (left, right))`` padding applied before cutting.
    - `offsets`: per-axis chip starts when positions form a regular grid, else None.
    - `transform`, `crs`, `fill_value`, `band_names`: the source scene's georeferencing.
    - `geo`: whether the source was a GeoTensor (stitching then returns one).
    """

    values: jax.Array
    positions: jax.Array
    chip: tuple[int, int] = static()
    window: Window = static()
    aggregation: Aggregation = static()
    scene_shape: tuple[int, int] = static()
    pads: Pads = static()
    offsets: ChipOffsets | None = static(default=None)
    transform: Affine = static(default=Affine.identity())
    crs: str | None = static(default=None)
    fill_value: float | int | None = static(default=None, converter=canonical_nan)
    band_names: tuple[str, ...] | None = static(default=None)
    geo: bool = static(default=False)
    band_axis_ndim: ClassVar[int] = 4

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def chip_shape(self) -> tuple[int, int]:
        """``(h, w)`` of the chips as they are now (equal to :attr:`chip` unless resized)."""
        return int(self.values.shape[-2]), int(self.values.shape[-1])

    @property
    def padded_shape(self) -> tuple[int, int]:
        """``(H, W)`` of the padded scene the positions refer to."""
        (t, b), (lft, r) = self.pads
        return self.scene_shape[0] + t + b, self.scene_shape[1] + lft + r

    def shape_bound(self) -> ChipsShape:
        """The chip stack's shape, remembering the scene and aggregation (for pre-checks)."""
        return ChipsShape(tuple(self.values.shape), self.scene_shape, self.aggregation.kind)

    @property
    def grid(self) -> Grid:
        """The georeferenced :class:`georax.tensor.Grid` of the source scene (not of a chip).

        **Raises:** :class:`~georax.tensor.MissingGeoreferenceError` when the chips were cut from
        a plain array or a scene without a CRS.
        """
        if not self.geo or self.crs is None:
            raise MissingGeoreferenceError(
                "Chips.grid: these chips were cut from a scene without a CRS and transform"
            )
        return Grid.coerce((self.crs, self.transform, self.scene_shape))

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
        c, f = apply_transform(t, rc[:, 1], rc[:, 0])
        full = jnp.ones_like(c)
        return jnp.stack([full * t.a, full * t.b, c, full * t.d, full * t.e, f], axis=1)

    def chip_transform(self, i: int) -> Affine:
        """The exact (float64, host-side) :class:`affine.Affine` of chip ``i``."""
        row, col = (int(v) for v in np.asarray(self.scene_positions())[i])
        return window_transform(self.transform, col, row)

    def geotensor(self, i: int) -> GeoTensor:
        """Chip ``i`` as a :class:`GeoTensor` with its own transform (host-side, concrete)."""
        values = self.values[i]
        return GeoTensor(
            values=values,
            transform=self.chip_transform(i),
            crs=self.crs,
            fill_value=self.fill_value,
            band_names=self._scene_names(values),
        )

    def as_scene(self, values: Shaped[Array, "*band H W"]) -> jax.Array | GeoTensor:
        """A stitched ``(*band, H, W)`` array with the source scene's georeferencing re-attached
        (a GeoTensor when the chips came from one; band names kept when the count matches)."""
        if not self.geo:
            return values
        return GeoTensor(
            values=values,
            transform=self.transform,
            crs=self.crs,
            fill_value=self.fill_value,
            band_names=self._scene_names(values),
        )

    def _scene_names(self, values: jax.Array) -> tuple[str, ...] | None:
        names = self.band_names
        shape = jnp.shape(values)
        if names is None or len(shape) < 3 or shape[-3] != len(names):
            return None
        return names

    def stitch(self, aggregation: Aggregation | None = None) -> jax.Array | GeoTensor | Chips:
        """Put the chips back into their scene with ``aggregation`` (default: the patcher's).

        **Returns:** an array or GeoTensor (like the scene the chips came from) of the scene's
        shape; the chips unchanged for :class:`~georax.patch.ByIndex`.

        **Raises:** :class:`~georax.errors.ShapeError` when an operator changed the chip size.
        """
        agg = self.aggregation if aggregation is None else aggregation
        if agg.kind == "by_index":
            return self
        if self.chip_shape != tuple(self.chip):
            raise ShapeError(
                f"chips of shape {self.chip_shape} cannot be stitched: they were cut as "
                f"{tuple(self.chip)} chips and positions refer to that size"
            )
        out = stitch(
            self.values,
            self.positions,
            self.padded_shape,
            weights=self.window.weights_1d(self.chip),
            aggregation=agg.kind,
            offsets=self.offsets,
            fill_value=agg.fill_value,
        )
        return self.as_scene(crop_padding(out, self.pads, self.scene_shape))
