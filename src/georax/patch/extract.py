"""Pure chip extraction: pad a scene, cut chips at given positions (jnp in, jnp out)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Int, Shaped

PAD_MODES = ("reflect", "edge", "constant")


def pad_scene(
    x: Shaped[Array, "*band H W"],
    pads: tuple[tuple[int, int], tuple[int, int]],
    mode: str = "reflect",
    value: float = 0.0,
) -> Shaped[Array, "*band Hp Wp"]:
    """Pad the two spatial axes of ``x`` by ``pads = ((top, bottom), (left, right))``.

    **Arguments:**

    - `x`: the scene, bands-first.
    - `pads`: pixels to add on each side of rows and columns.
    - `mode`: ``"reflect"`` (mirror without repeating the edge pixel, NumPy's ``reflect``),
      ``"edge"`` (repeat the edge pixel) or ``"constant"`` (``value``).
    - `value`: the constant for ``mode="constant"``.

    **Returns:** the padded scene (``x`` itself when every pad is 0).
    """
    if not any(p for pair in pads for p in pair):
        return x
    widths = [(0, 0)] * (x.ndim - 2) + [tuple(pads[0]), tuple(pads[1])]
    if mode == "constant":
        return jnp.pad(x, widths, mode="constant", constant_values=value)
    if mode == "reflect" and (x.shape[-2] == 1 or x.shape[-1] == 1):
        mode = "edge"  # reflecting a single pixel is the edge pixel
    return jnp.pad(x, widths, mode=mode)


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
