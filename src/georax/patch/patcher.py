"""Patcher: the four axes (geometry, sampler, window, aggregation) plus boundary handling.

The patcher is pure config (every field is a small static-only operator or a static value), so it
is hashable, YAML round-trippable and free to close over in compiled code. It decides *where*
chips go and *how* they are weighted and combined; :mod:`georax.patch.operators` decides what runs
on them. Its :meth:`Patcher.precheck` prices a layout from shapes alone (nothing is allocated),
and the same check runs with the trusted :data:`~georax.core.sandbox.DEFAULT_LIMITS` whenever a
scene is actually cut, so an empty or 1-D input or an absurd chip is a typed error either way.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from affine import Affine
from jaxtyping import Array, Int

from georax.core.carrier import Carrier, values_of
from georax.core.errors import ConfigError, ShapeError
from georax.core.operator import Operator, as_tuple, static
from georax.core.sandbox import DEFAULT_LIMITS, Limits
from georax.patch.aggregation import Aggregation, ByIndex, Max, Mean, OverlapAdd
from georax.patch.chips import Chips
from georax.patch.extract import Padding, Pads, crop_padding, extract_patches, pad_scene
from georax.patch.geometry import (
    ChipOffsets,
    ChipsShape,
    Rectangular,
    as_pair,
    pad_widths,
    to_pair,
)
from georax.patch.pricing import (
    HOST_BYTES_PER_ITEM,
    check_extent,
    check_host_bytes,
    scene_of,
)
from georax.patch.samplers import ExplicitPositions, RegularStride, Sampler
from georax.patch.stitch import ChipFn, map_chips, patchwise
from georax.patch.window_ops import Boxcar, Gaussian, Hann, Triangular, Tukey, Window
from georax.patch.windows import Weights1D
from georax.tensor.geotensor import GeoTensor

__all__ = ["Patcher"]

_WINDOWS: dict[str, type[Window]] = {
    "boxcar": Boxcar,
    "hann": Hann,
    "triangular": Triangular,
    "tukey": Tukey,
    "gaussian": Gaussian,
}
_AGGREGATIONS: dict[str, type[Aggregation]] = {
    "overlap_add": OverlapAdd,
    "mean": Mean,
    "max": Max,
    "by_index": ByIndex,
}


class Patcher(Operator):
    """Where chips are cut, how they are weighted, and how they are put back.

    Calling a patcher on a scene (array or GeoTensor) cuts its chips: it returns a
    :class:`~georax.patch.Chips`. Chips are full-size everywhere: the scene is padded by `margin`
    on each side (and further at the bottom/right if it is smaller than a chip) with `padding`,
    and the regular sampler places its last chip flush with the (padded) edge. Stitching crops the
    padding off again.

    **Arguments:**

    - `geometry`: the chip shape, e.g. ``Rectangular((256, 256))``.
    - `sampler`: ``RegularStride``, ``RandomPositions`` or ``ExplicitPositions``.
    - `window`: ``Boxcar``, ``Hann``, ``Triangular``, ``Tukey`` or ``Gaussian`` (all strictly
      positive, so normalised overlap-add is exact on every pixel).
    - `aggregation`: ``OverlapAdd``, ``Mean``, ``Max`` or ``ByIndex``.
    - `padding`: ``"reflect"``, ``"edge"`` or ``"constant"``.
    - `margin`: pixels of padding on every side, an int or ``(rows, cols)``. A margin of about
      ``(chip - stride) // 2`` moves the tapered chip edges off the scene border, so border pixels
      are predicted with context rather than from one chip edge (a quality choice; exactness of
      reconstruction holds for any margin).
    - `fill_value`: the constant for ``padding="constant"``.
    """

    geometry: Rectangular
    sampler: Sampler
    window: Window = Boxcar()
    aggregation: Aggregation = OverlapAdd()
    padding: Padding = static(default="reflect")
    margin: tuple[int, int] = static(default=(0, 0), converter=as_pair)
    fill_value: float = static(default=0.0)

    def __check_init__(self) -> None:
        if min(self.margin) < 0:
            self.fail("margin", "must be a non-negative int or a pair of them")

    @classmethod
    def regular(
        cls,
        chip: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        *,
        window: str | Window = "boxcar",
        aggregation: str | Aggregation = "overlap_add",
        padding: str = "reflect",
        margin: int | tuple[int, int] = 0,
        fill_value: float = 0.0,
    ) -> Patcher:
        """Shorthand for a regular-grid patcher: ``Patcher.regular(256, 224, window="hann")``.

        `stride` defaults to the chip size (tiling without overlap); windows and aggregations
        may be given by name (see ``georax.patch.windows.WINDOW_NAMES`` and
        ``georax.patch.aggregation.AGGREGATION_KINDS``).
        """
        if isinstance(window, str):
            if window not in _WINDOWS:
                raise ConfigError("Patcher", "window", window, f"expected one of {tuple(_WINDOWS)}")
            window = _WINDOWS[window]()
        if isinstance(aggregation, str):
            if aggregation not in _AGGREGATIONS:
                raise ConfigError(
                    "Patcher", "aggregation", aggregation, f"expected one of {tuple(_AGGREGATIONS)}"
                )
            aggregation = _AGGREGATIONS[aggregation]()
        return cls(
            geometry=Rectangular(as_tuple(chip)),
            sampler=RegularStride(as_tuple(chip if stride is None else stride)),
            window=window,
            aggregation=aggregation,
            padding=padding,
            margin=as_tuple(margin),
            fill_value=fill_value,
        )

    # ---------------------------------------------------------------- layout (host, static)
    @property
    def chip(self) -> tuple[int, int]:
        """``(h, w)`` of a chip."""
        return self.geometry.shape

    def pads(self, scene: tuple[int, int]) -> Pads:
        """``((top, bottom), (left, right))`` padding for a scene of shape ``scene``."""
        return pad_widths(scene, self.chip, to_pair(self.margin))

    def padded_shape(self, scene: tuple[int, int]) -> tuple[int, int]:
        """Shape of the padded scene."""
        (t, b), (lft, r) = self.pads(scene)
        return scene[0] + t + b, scene[1] + lft + r

    def layout(
        self, scene: tuple[int, int], key: jax.Array | None = None
    ) -> tuple[Int[Array, "n 2"] | np.ndarray, ChipOffsets | None]:
        """Chip positions in the padded scene, and the per-axis offsets when they form a grid.

        Explicit positions are given in scene pixels and shifted by the padding here; positions
        whose chip would leave the padded scene raise :class:`~georax.errors.ShapeError`.
        """
        padded = self.padded_shape(scene)
        self._check_points(scene)
        offsets = self.sampler.offsets(padded, self.chip)
        pos = self.sampler.positions(padded, self.chip, key)
        if isinstance(self.sampler, ExplicitPositions):
            (t, _), (lft, _) = self.pads(scene)
            pos = pos + np.asarray([t, lft], dtype=np.int32)
        return pos, offsets

    def _check_points(self, scene: tuple[int, int], who: str = "Patcher") -> None:
        """Refuse explicit points whose chip leaves the padded scene (before any array exists)."""
        if not isinstance(self.sampler, ExplicitPositions):
            return
        (t, b), (lft, r) = self.pads(scene)
        hi = (scene[0] + b - self.chip[0], scene[1] + r - self.chip[1])  # scene coordinates
        lo = (-t, -lft)
        bad = [p for p in self.sampler.points if not all(lo[a] <= p[a] <= hi[a] for a in (0, 1))]
        if bad:
            raise ShapeError(
                f"{who}.sampler.points: {bad[:5]} put a {self.chip} chip outside the padded "
                f"scene (scene {scene}, padding {((t, b), (lft, r))})"
            )

    def weights_1d(self) -> Weights1D:
        """The separable window ``(rows, cols)`` as float64 1-D arrays."""
        return self.window.weights_1d(self.chip)

    # ---------------------------------------------------------------- pricing (no arrays)
    def precheck(
        self, shape: tuple[int, ...], limits: Limits, *, who: str = "Patcher"
    ) -> ChipsShape:
        """Price cutting a scene of ``shape`` from shapes alone, before anything is traced.

        Refuses (naming ``who`` and the field): fewer than 2 axes or an empty input
        (:class:`~georax.errors.ShapeError`); a chip side, stride, margin or added padding over
        ``limits.max_extent``; explicit points outside the padded scene; a layout whose host
        constructions (chip positions, offsets, 1-D windows and normaliser, reflect index maps;
        see :mod:`georax.patch.pricing`) exceed ``limits.max_host_bytes``.

        **Returns:** the chip stack's shape ``(n, *band, h, w)`` as a
        :class:`~georax.patch.geometry.ChipsShape` that remembers the scene's ``(H, W)``.
        """
        scene = scene_of(shape, who)
        chip = self.chip
        for side in chip:
            check_extent(side, limits, who, "geometry.size", "a chip side")
        for m in to_pair(self.margin):
            check_extent(m, limits, who, "margin", "padding on each side")
        if isinstance(self.sampler, RegularStride):
            for s in to_pair(self.sampler.stride):
                check_extent(s, limits, who, "sampler.stride", "a stride")
        padded = self.padded_shape(scene)
        for n, p in zip(scene, padded, strict=True):
            what = f"padding a {n}-pixel axis to {p} pixels (chip size and margin)"
            check_extent(p - n, limits, who, "geometry.size", what)
        self._check_points(scene, who)
        n_chips = self.sampler.count(padded, chip)
        positions_on_host = 0 if self.sampler.requires_key else n_chips
        items = positions_on_host + 2 * (padded[0] + padded[1]) + chip[0] + chip[1]
        what = (
            f"the layout of {n_chips} chips of {chip} on a padded {padded} scene "
            "(positions, offsets, 1-D windows, normaliser) built on the host"
        )
        check_host_bytes(items * HOST_BYTES_PER_ITEM, limits, who, "sampler", what)
        return ChipsShape((n_chips, *shape[:-2], *chip), scene, self.aggregation.kind)

    def check_scene(self, x: Any) -> tuple[int, int]:
        """``(H, W)`` of the scene ``x``, after checking the layout with the trusted limits."""
        shape = tuple(int(s) for s in jnp.shape(values_of(x)))
        self.precheck(shape, DEFAULT_LIMITS)
        return shape[-2], shape[-1]

    # ---------------------------------------------------------------- compiled parts
    def extract(self, x: Any, *, key: jax.Array | None = None) -> Chips:
        """Cut the chips of ``x`` (array or GeoTensor) into a :class:`Chips` carrier."""
        v = values_of(x)
        scene = self.check_scene(x)
        pads = self.pads(scene)
        xp = pad_scene(v, pads, self.padding, self.fill_value)
        pos, offsets = self.layout(scene, key)
        geo = isinstance(x, GeoTensor)
        return Chips(
            values=extract_patches(xp, pos, self.chip),
            positions=jnp.asarray(pos, jnp.int32),
            chip=self.chip,
            window=self.window,
            aggregation=self.aggregation,
            scene_shape=scene,
            pads=pads,
            offsets=offsets,
            transform=x.transform if geo else Affine.identity(),
            crs=x.crs if geo else None,
            fill_value=x.fill_value if geo else None,
            band_names=x.band_names if geo else None,
            geo=geo,
        )

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Chips:
        return self.extract(x, key=key)

    def apply(
        self,
        x: Any,
        fn: ChipFn,
        *,
        batch_size: int,
        key: jax.Array | None = None,
        max_unrolled: int | None = None,
    ) -> Any:
        """Fused extract -> ``fn`` per chip -> stitch, in bounded batches (one compiled loop).

        **Arguments:**

        - `x`: the scene, array or GeoTensor.
        - `fn`: ``fn(chip_values, key_or_None) -> chip_out`` of the same ``(h, w)``.
        - `batch_size`: chips per vmapped batch.
        - `key`: split between the sampler (random positions) and ``fn``.
        - `max_unrolled`: unroll at most this many batches at trace time (see
          :data:`~georax.patch.stitch.MAX_UNROLLED_BATCHES`; 0 for nested patching).

        **Returns:** the stitched scene (array or GeoTensor like ``x``); for :class:`ByIndex`
        aggregation, a :class:`Chips` of per-chip outputs.
        """
        k_pos, k_fn = (None, None) if key is None else tuple(jax.random.split(key))
        if self.aggregation.kind == "by_index":
            chips = self.extract(x, key=k_pos)
            out = map_chips(
                fn, chips.values, batch_size=batch_size, key=k_fn, max_unrolled=max_unrolled
            )
            return chips.replace(values=out)
        v = values_of(x)
        scene = self.check_scene(x)
        pads = self.pads(scene)
        xp = pad_scene(v, pads, self.padding, self.fill_value)
        pos, offsets = self.layout(scene, k_pos)
        out = patchwise(
            xp,
            fn,
            pos,
            self.chip,
            batch_size=batch_size,
            weights=self.weights_1d(),
            aggregation=self.aggregation.kind,
            offsets=offsets,
            fill_value=self.aggregation.fill_value,
            key=k_fn,
            max_unrolled=max_unrolled,
        )
        out = crop_padding(out, pads, scene)
        return x.replace(values=out) if isinstance(x, Carrier) else out
