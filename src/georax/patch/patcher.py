"""Patcher: the four axes (geometry, sampler, window, aggregation) plus boundary handling.

The patcher is pure config (every field is a small static-only operator or a static value), so it
is hashable, YAML round-trippable and free to close over in compiled code. It decides *where*
chips go and *how* they are weighted and combined; :mod:`georax.patch.operators` decides what runs
on them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from affine import Affine
from jaxtyping import Array, Int, Shaped

from georax.core.carrier import values_of
from georax.core.errors import ConfigError, ShapeError
from georax.core.operator import Operator, as_tuple, static
from georax.patch.aggregation import Aggregation, ByIndex, Max, Mean, OverlapAdd
from georax.patch.chips import Chips, Grid
from georax.patch.extract import PAD_MODES, extract_patches, pad_scene
from georax.patch.geometry import Rectangular, _is_int_pair, _pair, as_pair, pad_widths
from georax.patch.samplers import RegularStride, Sampler
from georax.patch.stitch import Weights1D, patchwise, stitch
from georax.patch.window_ops import Boxcar, Gaussian, Hann, Triangular, Tukey, Window
from georax.patch.windows import window_1d
from georax.tensor.geotensor import GeoTensor

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


def _scene_hw(v: Any) -> tuple[int, int]:
    shape = jnp.shape(v)
    if len(shape) < 2:
        raise ShapeError(f"patching needs an array with at least 2 axes (..., H, W), got {shape}")
    return int(shape[-2]), int(shape[-1])


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
    - `pad_value`: the constant for ``padding="constant"``.
    """

    geometry: Rectangular
    sampler: Sampler
    window: Window = Boxcar()
    aggregation: Aggregation = OverlapAdd()
    padding: str = static(default="reflect")
    margin: tuple[int, int] = static(default=(0, 0), converter=as_pair)
    pad_value: float = static(default=0.0)

    def __check_init__(self) -> None:
        checks = (
            ("geometry", Rectangular),
            ("sampler", Sampler),
            ("window", Window),
            ("aggregation", Aggregation),
        )
        for name, cls in checks:
            if not isinstance(getattr(self, name), cls):
                self.fail(name, f"must be a {cls.__name__}")
        if self.padding not in PAD_MODES:
            self.fail("padding", f"must be one of {PAD_MODES}")
        if not _is_int_pair(self.margin, 0):
            self.fail("margin", "must be a non-negative int or a pair of them")
        if isinstance(self.pad_value, bool) or not isinstance(self.pad_value, int | float):
            self.fail("pad_value", "must be a number")

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
    ) -> Patcher:
        """Shorthand for a regular-grid patcher: ``Patcher.regular(256, 224, window="hann")``.

        `stride` defaults to the chip size (tiling without overlap); windows and aggregations
        may be given by name (see ``georax.patch.windows.WINDOW_NAMES`` and
        ``georax.patch.aggregation.AGGREGATION_MODES``).
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
            Rectangular(as_tuple(chip)),
            RegularStride(as_tuple(chip if stride is None else stride)),
            window,
            aggregation,
            padding,
            as_tuple(margin),
        )

    # ---------------------------------------------------------------- layout (host, static)
    @property
    def chip(self) -> tuple[int, int]:
        """``(h, w)`` of a chip."""
        return self.geometry.shape

    def pads(self, scene: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
        """``((top, bottom), (left, right))`` padding for a scene of shape ``scene``."""
        return pad_widths(scene, self.chip, _pair(self.margin))

    def padded_shape(self, scene: tuple[int, int]) -> tuple[int, int]:
        """Shape of the padded scene."""
        (t, b), (lft, r) = self.pads(scene)
        return scene[0] + t + b, scene[1] + lft + r

    def layout(
        self, scene: tuple[int, int], key: jax.Array | None = None
    ) -> tuple[Int[Array, "n 2"] | np.ndarray, Grid | None]:
        """Chip positions in the padded scene, and the per-axis grid when they form one.

        Explicit positions are given in scene pixels and shifted by the padding here; positions
        whose chip would leave the padded scene raise :class:`~georax.errors.ShapeError`.
        """
        padded = self.padded_shape(scene)
        chip = self.chip
        grid = self.sampler.grid(padded, chip)
        pos = self.sampler.positions(padded, chip, key)
        if isinstance(pos, np.ndarray) and grid is None:
            (t, _), (lft, _) = self.pads(scene)
            pos = pos + np.asarray([t, lft], dtype=np.int32)
            hi = np.asarray(padded) - np.asarray(chip)
            bad = np.nonzero((pos < 0).any(axis=1) | (pos > hi).any(axis=1))[0]
            if bad.size:
                raise ShapeError(
                    f"chip positions {pos[bad][:5].tolist()} (padded coordinates) put a "
                    f"{chip} chip outside the padded scene of shape {padded}"
                )
        return pos, grid

    def weights_1d(self) -> Weights1D:
        """The separable window ``(rows, cols)`` as float64 1-D arrays."""
        h, w = self.chip
        param = self.window._param()
        return window_1d(self.window.kind, h, param), window_1d(self.window.kind, w, param)

    # ---------------------------------------------------------------- compiled parts
    def extract(self, x: Any, *, key: jax.Array | None = None) -> Chips:
        """Cut the chips of ``x`` (array or GeoTensor) into a :class:`Chips` carrier."""
        v = values_of(x)
        scene = _scene_hw(v)
        pads = self.pads(scene)
        xp = pad_scene(v, pads, self.padding, self.pad_value)
        pos, grid = self.layout(scene, key)
        chips = extract_patches(xp, pos, self.chip)
        geo = isinstance(x, GeoTensor)
        return Chips(
            chips,
            jnp.asarray(pos, jnp.int32),
            self,
            scene,
            pads,
            grid,
            x.transform if geo else Affine.identity(),
            x.crs if geo else None,
            x.fill_value if geo else None,
            x.band_names if geo else None,
            geo,
        )

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Chips:
        return self.extract(x, key=key)

    def stitch(self, chips: Chips, aggregation: Aggregation | None = None) -> Any:
        """Put ``chips`` back into a scene with ``aggregation`` (default: this patcher's).

        **Returns:** an array or GeoTensor (like the scene the chips came from) of the scene's
        shape; ``chips`` unchanged for :class:`ByIndex`.
        """
        agg = self.aggregation if aggregation is None else aggregation
        if agg.mode == "by_index":
            return chips
        out = stitch(
            chips.values,
            chips.positions,
            chips.padded_shape,
            weights=self.weights_1d(),
            mode=agg.mode,
            grid=chips.grid,
            fill=agg.fill,
        )
        return _wrap_scene(self._crop(out, chips.pads, chips.scene_shape), chips)

    def apply(
        self,
        x: Any,
        fn: Callable[[jax.Array, jax.Array | None], jax.Array],
        *,
        batch_size: int,
        key: jax.Array | None = None,
    ) -> Any:
        """Fused extract -> ``fn`` per chip -> stitch, in bounded batches (one compiled loop).

        **Arguments:**

        - `x`: the scene, array or GeoTensor.
        - `fn`: ``fn(chip_values, key_or_None) -> chip_out`` of the same ``(h, w)``.
        - `batch_size`: chips per vmapped batch.
        - `key`: split between the sampler (random positions) and ``fn``.

        **Returns:** the stitched scene (array or GeoTensor like ``x``); for :class:`ByIndex`
        aggregation, a :class:`Chips` of per-chip outputs.
        """
        k_pos, k_fn = (None, None) if key is None else tuple(jax.random.split(key))
        if self.aggregation.mode == "by_index":
            from georax.patch.stitch import map_chips

            chips = self.extract(x, key=k_pos)
            return chips.replace(
                values=map_chips(fn, chips.values, batch_size=batch_size, key=k_fn)
            )
        v = values_of(x)
        scene = _scene_hw(v)
        pads = self.pads(scene)
        xp = pad_scene(v, pads, self.padding, self.pad_value)
        pos, grid = self.layout(scene, k_pos)
        out = patchwise(
            xp,
            fn,
            pos,
            self.chip,
            batch_size=batch_size,
            weights=self.weights_1d(),
            mode=self.aggregation.mode,
            grid=grid,
            fill=self.aggregation.fill,
            key=k_fn,
        )
        out = self._crop(out, pads, scene)
        return x.replace(values=out) if isinstance(x, GeoTensor) else out

    @staticmethod
    def _crop(
        v: Shaped[Array, "*band Hp Wp"],
        pads: tuple[tuple[int, int], tuple[int, int]],
        scene: tuple[int, int],
    ) -> Shaped[Array, "*band H W"]:
        (t, _), (lft, _) = pads
        return v[..., t : t + scene[0], lft : lft + scene[1]]


def _wrap_scene(out: jax.Array, chips: Chips) -> Any:
    """Re-attach the source scene's georeferencing to a stitched array."""
    if not chips.geo:
        return out
    names = chips.band_names
    if names is not None and (out.ndim < 3 or out.shape[-3] != len(names)):
        names = None
    return GeoTensor(out, chips.transform, chips.crs, chips.fill_value, names)
