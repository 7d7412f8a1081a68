"""Pure chip extraction: pad a scene, cut chips at given positions, crop the padding off.

``jnp`` in, ``jnp`` out, no config. Padding is exactly NumPy's (``reflect``, ``edge``,
``constant``) for every pad width, including pads wider than the scene, and its trace-time cost
does not grow with the pad: ``jnp.pad`` in reflect mode adds at most ``size - 1`` pixels per
pass and loops in Python until the pad is reached, so a pad of a million pixels on a 2-pixel axis
traced a million slices. Pads wider than one reflection are done here as one gather along each
axis, with source indices computed in closed form (:func:`source_index`).
"""

from __future__ import annotations

import typing
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Int, Shaped

from georax.core.errors import ConfigError

__all__ = [
    "PADDING_MODES",
    "Padding",
    "crop_padding",
    "extract_patches",
    "pad_scene",
    "source_index",
]

#: How a scene is padded before chips are cut from it.
Padding = Literal["reflect", "edge", "constant"]
PADDING_MODES: tuple[str, ...] = typing.get_args(Padding)

Pads = tuple[tuple[int, int], tuple[int, int]]


def source_index(n: int, pad: tuple[int, int], padding: str) -> Int[np.ndarray, " m"]:
    """For each index of an axis of length ``n`` padded by ``pad = (before, after)``, the source
    index it copies (``-1`` where ``padding="constant"`` puts the constant).

    Closed form, so the cost is one vectorised pass over the padded axis whatever the pad:
    ``reflect`` mirrors without repeating the edge (period ``2 (n - 1)``; a 1-pixel axis
    reflects to itself), ``edge`` clamps.

    **Arguments:**

    - `n`: the axis length (``>= 1``).
    - `pad`: pixels added before and after.
    - `padding`: one of :data:`PADDING_MODES`.

    **Returns:** an int64 array of length ``before + n + after``; equal to
    ``np.pad(np.arange(n), pad, mode=padding)`` for ``reflect`` and ``edge``.
    """
    before, after = int(pad[0]), int(pad[1])
    i = np.arange(-before, n + after, dtype=np.int64)
    if padding == "constant":
        return np.where((i >= 0) & (i < n), i, -1)
    if padding == "edge" or n == 1:
        return np.clip(i, 0, n - 1)
    if padding == "reflect":
        period = 2 * (n - 1)
        m = np.mod(i, period)
        return np.where(m < n, m, period - m)
    raise ConfigError("pad_scene", "padding", padding, f"expected one of {PADDING_MODES}")


def pad_scene(
    x: Shaped[Array, "*band H W"],
    pads: Pads,
    padding: str = "reflect",
    fill_value: float = 0.0,
) -> Shaped[Array, "*band Hp Wp"]:
    """Pad the two spatial axes of ``x`` by ``pads = ((top, bottom), (left, right))``.

    **Arguments:**

    - `x`: the scene, bands-first.
    - `pads`: pixels to add on each side of rows and columns.
    - `padding`: ``"reflect"`` (mirror without repeating the edge pixel, NumPy's ``reflect``),
      ``"edge"`` (repeat the edge pixel) or ``"constant"`` (``fill_value``).
    - `fill_value`: the constant for ``padding="constant"``.

    **Returns:** the padded scene (``x`` itself when every pad is 0).
    """
    if padding not in PADDING_MODES:
        raise ConfigError("pad_scene", "padding", padding, f"expected one of {PADDING_MODES}")
    if not any(p for pair in pads for p in pair):
        return x
    widths = [(0, 0)] * (x.ndim - 2) + [tuple(pads[0]), tuple(pads[1])]
    if padding == "constant":
        return jnp.pad(x, widths, mode="constant", constant_values=fill_value)
    if padding == "edge":
        return jnp.pad(x, widths, mode="edge")
    out = x
    for axis, pad in ((-2, pads[0]), (-1, pads[1])):
        n = int(x.shape[axis])
        if max(pad) == 0:
            continue
        if max(pad) < n:  # one reflection: jnp.pad does it in a single pass of slices
            w = [(0, 0)] * out.ndim
            w[axis] = tuple(pad)
            out = jnp.pad(out, w, mode="reflect")
        else:  # wider than the axis: one gather with closed-form indices, no trace-time loop
            out = jnp.take(out, jnp.asarray(source_index(n, pad, "reflect")), axis=axis)
    return out


def crop_padding(
    v: Shaped[Array, "*band Hp Wp"], pads: Pads, scene: tuple[int, int]
) -> Shaped[Array, "*band H W"]:
    """Undo :func:`pad_scene`: the ``scene``-sized window of ``v`` after the top/left pads."""
    (t, _), (lft, _) = pads
    return v[..., t : t + scene[0], lft : lft + scene[1]]


def extract_patches(
    x: Shaped[Array, "*band H W"],
    positions: Int[Array, "n 2"],
    chip: tuple[int, int],
) -> Shaped[Array, "n *band h w"]:
    """Cut ``chip``-sized windows of ``x`` whose top-left pixels are ``positions``.

    A vmapped :func:`jax.lax.dynamic_slice`, so positions may be traced (random sampling inside a
    compiled program) and the cut is differentiable with respect to ``x``. Positions must keep
    chips inside ``x`` (dynamic_slice would clamp them otherwise); the patchers guarantee it.

    **Arguments:**

    - `x`: the (padded) scene, bands-first.
    - `positions`: ``(n, 2)`` integer ``(row, col)`` of each chip's top-left pixel.
    - `chip`: ``(rows, cols)`` chip size.

    **Returns:** the chip stack, chips first.
    """
    lead = x.shape[:-2]
    sizes = (*lead, int(chip[0]), int(chip[1]))
    zeros = (0,) * len(lead)

    def cut(p: jax.Array) -> jax.Array:
        return lax.dynamic_slice(x, (*zeros, p[0], p[1]), sizes)

    return jax.vmap(cut)(jnp.asarray(positions, dtype=jnp.int32))
