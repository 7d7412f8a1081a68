"""Training augmentation with explicit keys: flips, 90-degree rotations, crops.

The seeds' augmentation held a NumPy ``Generator`` inside the operator, so every DataLoader
worker forked the same RNG state and produced correlated batches. Here randomness is an argument:
each operator has ``requires_key = True`` and draws only from the ``key`` it is given (a JAX
threefry key, identical on every machine and process). Derive one key per sample, e.g.
``sample_key(seed, epoch, index)``, and the augmentation of sample ``i`` is the same in whichever
worker, process or host computes it — and different samples get independent draws.

**Georeferencing.** Flips, rotations and crops move pixels, so a GeoTensor's transform must move
with them. A GeoTensor's transform is *static* metadata, but a random draw inside ``jit``/``vmap``
is a traced value, so which flip happened is unknown when the output transform must be fixed.
Hence, for GeoTensor inputs:

- when the draw is concrete (eager call with a concrete key), the transform is updated exactly:
  every output pixel keeps its true map position (a flip gives a mirrored transform with a negative
  pixel size, a rotation a rotated transform, a crop moves the origin);
- when the draw is traced (inside ``jit``/``vmap``), the output has ``crs=None`` and the identity
  transform — georeferencing is *dropped*, never silently wrong. Augmented tiles are training
  tensors; do not write them out as maps.

Plain arrays are handled identically in both modes (the draws and pixels do not depend on it).
GeoTensor outputs are rebuilt with ``Carrier.replace``. Other carriers (a
:class:`~georax.patch.Chips` stack) are refused with a typed error: moving a chip's pixels would
leave its recorded position wrong, and a later ``Stitch`` would put them back in the wrong place;
augment chips inside ``ApplyToChips``, where each chip is a plain array.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from affine import Affine
from jaxtyping import Array, Float, PRNGKeyArray

from georax.array.validate import concrete
from georax.core.carrier import Carrier
from georax.core.errors import ShapeError
from georax.core.operator import Operator, as_tuple, leaf, static
from georax.geo._precheck import refuse_extent, spatial_shape
from georax.tensor.geotensor import GeoTensor, GeoTensorRequiredError

if TYPE_CHECKING:
    from georax.core.sandbox import Limits

__all__ = [
    "RandomCrop",
    "RandomFlip",
    "RandomRotate90",
    "crop",
    "crop_transform",
    "flip",
    "flip_transform",
    "rot90",
    "rot90_transform",
    "sample_key",
]


# --------------------------------------------------------------------------------------
# Pure functions
# --------------------------------------------------------------------------------------
def sample_key(seed: int, *indices: int) -> PRNGKeyArray:
    """A key for one sample: ``fold_in`` of ``indices`` (epoch, sample index, ...) into ``seed``.

    Depends only on its arguments, so any worker computing sample ``i`` of epoch ``e`` gets the
    same key, and different ``(e, i)`` get independent keys.
    """
    key = jax.random.key(seed)
    for i in indices:
        key = jax.random.fold_in(key, i)
    return key


def flip(x: Float[Array, "*batch H W"], *, x_axis: Any, y_axis: Any) -> Float[Array, "*batch H W"]:
    """Reverse columns where ``x_axis`` is true and rows where ``y_axis`` is true.

    ``x_axis`` / ``y_axis`` may be Python bools or traced boolean scalars (then both variants are
    computed and one is selected, which is what a compiled random flip needs).
    """
    x = jnp.where(x_axis, jnp.flip(x, -1), x)
    return jnp.where(y_axis, jnp.flip(x, -2), x)


def flip_transform(
    transform: Affine, shape: tuple[int, int], *, x_axis: bool, y_axis: bool
) -> Affine:
    """The transform of a flipped raster such that every pixel keeps its map position.

    Reversing columns maps output column ``c'`` to input column ``W - c'`` (continuous pixel
    coordinates), so ``T' = T * Affine(-1, 0, W, 0, 1, 0)``; rows likewise with ``H``.
    """
    h, w = shape
    if x_axis:
        transform = _compose(transform, Affine(-1.0, 0.0, float(w), 0.0, 1.0, 0.0))
    if y_axis:
        transform = _compose(transform, Affine(1.0, 0.0, 0.0, 0.0, -1.0, float(h)))
    return transform


def rot90(x: Float[Array, "*batch H W"], k: Any, *, ks: tuple[int, ...] = (0, 1, 2, 3)) -> Array:
    """Rotate the last two axes by ``k`` quarter turns counter-clockwise (``jnp.rot90``).

    A concrete ``k`` rotates directly. A traced ``k`` (inside ``jit``/``vmap``) selects among the
    rotations in ``ks`` with ``lax.switch`` — every branch must then have one output shape, so
    odd turns need a square image.
    """
    if _concrete(k):
        return jnp.rot90(x, int(k) % 4, axes=(-2, -1))
    branches = [lambda v, t=t: jnp.rot90(v, t, axes=(-2, -1)) for t in ks]
    index = jnp.argmax(jnp.asarray(ks) == jnp.mod(k, 4))
    return jax.lax.switch(index, branches, x)


def rot90_transform(transform: Affine, shape: tuple[int, int], k: int) -> Affine:
    """The transform after ``jnp.rot90(x, k, axes=(-2, -1))``, keeping every pixel's map position.

    One counter-clockwise quarter turn sends output ``(col', row')`` to input
    ``(col, row) = (W - row', col')``, i.e. ``T' = T * Affine(0, -1, W, 1, 0, 0)``; ``k`` turns
    compose that ``k`` times (with height and width swapping each turn).
    """
    h, w = shape
    for _ in range(int(k) % 4):
        transform = _compose(transform, Affine(0.0, -1.0, float(w), 1.0, 0.0, 0.0))
        h, w = w, h
    return transform


def crop(x: Float[Array, "*batch H W"], row: Any, col: Any, size: tuple[int, int]) -> Array:
    """The ``size`` window of the last two axes starting at ``(row, col)`` (which may be traced)."""
    starts = (0,) * (x.ndim - 2) + (row, col)
    return jax.lax.dynamic_slice(x, starts, (*x.shape[:-2], *size))


def crop_transform(transform: Affine, row: int, col: int) -> Affine:
    """The transform of a window starting at ``(row, col)``: the origin moves, nothing else."""
    return _compose(transform, Affine.translation(float(col), float(row)))


def _compose(t: Affine, u: Affine) -> Affine:
    """``t`` after ``u``: the matrix product ``t @ u``, written out (works with affine 2 and 3)."""
    return Affine(
        t.a * u.a + t.b * u.d,
        t.a * u.b + t.b * u.e,
        t.a * u.c + t.b * u.f + t.c,
        t.d * u.a + t.e * u.d,
        t.d * u.b + t.e * u.e,
        t.d * u.c + t.e * u.f + t.f,
    )


def _pair(size: Any) -> Any:
    """Converter for ``size``: an int means a square; YAML lists become tuples."""
    return (size, size) if isinstance(size, int) and not isinstance(size, bool) else as_tuple(size)


def _concrete(*values: Any) -> bool:
    return not any(isinstance(v, jax.core.Tracer) for v in values)


def _ungeoreferenced(x: GeoTensor, values: Array) -> GeoTensor:
    return x.replace(values=values, transform=Affine.identity(), crs=None)


def _check_raster(x: Any, who: str) -> tuple[int, int]:
    if isinstance(x, Carrier) and not isinstance(x, GeoTensor):
        raise GeoTensorRequiredError(
            f"{who} moves pixels, so it takes a plain array or a GeoTensor, not a "
            f"{type(x).__name__} (its recorded chip positions would no longer match the pixels); "
            "augment chips inside ApplyToChips, where each chip is a plain array"
        )
    return spatial_shape(jnp.shape(x.values if isinstance(x, GeoTensor) else x), who)


# --------------------------------------------------------------------------------------
# Operators
# --------------------------------------------------------------------------------------
class RandomFlip(Operator):
    """Flip the image along each of ``axes`` independently with probability ``p``.

    **Arguments:**

    - `p`: probability of flipping each axis (array leaf: change it without recompiling).
    - `axes`: which flips may happen: ``"x"`` (reverse columns, left-right) and/or ``"y"``
      (reverse rows, up-down). Default ``("x",)``, the seeds' flip.

    Needs ``key=``. GeoTensor georeferencing: see the module docstring (exact when the draw is
    concrete, dropped under ``jit``/``vmap``).
    """

    requires_key = True
    p: Array = leaf(default=0.5)
    axes: tuple[Literal["x", "y"], ...] = static(default=("x",), converter=as_tuple)

    def __check_init__(self) -> None:
        if not self.axes:
            self.fail("axes", "must name at least one axis, 'x' and/or 'y'")
        if len(set(self.axes)) != len(self.axes):
            self.fail("axes", "lists an axis twice")
        p = concrete(self.p)
        if p is not None and not bool(np.all((p >= 0) & (p <= 1))):
            self.fail("p", "must be a probability in [0, 1]")

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        shape = _check_raster(x, "RandomFlip")
        draws = jax.random.uniform(key, (len(self.axes),)) < self.p
        do = {a: draws[i] for i, a in enumerate(self.axes)}
        fx, fy = do.get("x", False), do.get("y", False)
        if not isinstance(x, GeoTensor):
            return flip(x, x_axis=fx, y_axis=fy)
        if _concrete(draws):
            fx, fy = bool(fx), bool(fy)
            values = flip(x.values, x_axis=fx, y_axis=fy)
            t = flip_transform(x.transform, shape, x_axis=fx, y_axis=fy)
            return x.replace(values=values, transform=t)
        return _ungeoreferenced(x, flip(x.values, x_axis=fx, y_axis=fy))


class RandomRotate90(Operator):
    """Rotate by a uniformly drawn number of quarter turns from ``ks`` (counter-clockwise).

    **Arguments:**

    - `ks`: the allowed numbers of quarter turns (default ``(0, 1, 2, 3)``). Odd turns swap height
      and width, so with odd ``ks`` the image must be square (a compiled program has one output
      shape); use ``ks=(0, 2)`` for non-square images.

    Needs ``key=``. GeoTensor georeferencing: see the module docstring.
    """

    requires_key = True
    ks: tuple[int, ...] = static(default=(0, 1, 2, 3), converter=as_tuple)

    def __check_init__(self) -> None:
        if (
            not self.ks
            or any(not 0 <= k <= 3 for k in self.ks)
            or len(set(self.ks)) != len(self.ks)
        ):
            self.fail("ks", "must be a non-empty tuple of distinct quarter turns in 0..3")

    def _check_square(self, h: int, w: int) -> None:
        if h != w and any(k % 2 for k in self.ks):
            raise ShapeError(
                f"RandomRotate90(ks={self.ks}): a {h}x{w} image changes shape under odd quarter "
                "turns; use a square image or ks=(0, 2)"
            )

    def precheck(self, shape: tuple[int, ...], limits: Limits) -> tuple[int, ...]:
        """Refuse odd turns of a non-square input (the shape is then not static)."""
        del limits
        self._check_square(*spatial_shape(shape, "RandomRotate90"))
        return shape

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        h, w = _check_raster(x, "RandomRotate90")
        self._check_square(h, w)
        k = jnp.asarray(self.ks)[jax.random.randint(key, (), 0, len(self.ks))]
        if not isinstance(x, GeoTensor):
            return rot90(x, k, ks=self.ks)
        if _concrete(k):
            k = int(k)
            t = rot90_transform(x.transform, (h, w), k)
            return x.replace(values=rot90(x.values, k), transform=t)
        return _ungeoreferenced(x, rot90(x.values, k, ks=self.ks))


class RandomCrop(Operator):
    """Crop a ``size`` window at a uniformly drawn position (every valid offset equally likely).

    **Arguments:**

    - `size`: ``(height, width)`` of the crop (an int means square). Static: the output shape.

    Needs ``key=``. GeoTensor georeferencing: the transform origin moves to the crop when the
    draw is concrete, and is dropped under ``jit``/``vmap`` (see the module docstring).
    Raises :class:`~georax.errors.ShapeError` if the image is smaller than ``size``.
    """

    requires_key = True
    size: tuple[int, int] = static(converter=_pair)

    def __check_init__(self) -> None:
        if any(s < 1 for s in self.size):
            self.fail("size", "must be a positive int or (height, width) of positive ints")

    def _check_fits(self, h: int, w: int) -> None:
        ch, cw = self.size
        if ch > h or cw > w:
            raise ShapeError(f"RandomCrop(size={self.size}) is larger than the {h}x{w} image")

    def precheck(self, shape: tuple[int, ...], limits: Limits) -> tuple[int, ...]:
        """Refuse a crop over ``limits.max_extent`` or larger than the input; output ``size``."""
        refuse_extent("RandomCrop", "size", max(self.size), limits)
        self._check_fits(*spatial_shape(shape, "RandomCrop"))
        return (*shape[:-2], *self.size)

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        h, w = _check_raster(x, "RandomCrop")
        self._check_fits(h, w)
        ch, cw = self.size
        k_row, k_col = jax.random.split(key)
        row = jax.random.randint(k_row, (), 0, h - ch + 1)
        col = jax.random.randint(k_col, (), 0, w - cw + 1)
        if not isinstance(x, GeoTensor):
            return crop(x, row, col, self.size)
        if _concrete(row, col):
            r, c = int(row), int(col)
            t = crop_transform(x.transform, r, c)
            return x.replace(values=crop(x.values, r, c, self.size), transform=t)
        return _ungeoreferenced(x, crop(x.values, row, col, self.size))
