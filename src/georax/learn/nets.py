"""Small ready-made networks, registered with :func:`~georax.learn.register_model`.

A pipeline holding a model loads in another process only where the model's class can be
imported. A class defined in a script (``__main__``) cannot be; a class shipped with georax can,
so a pipeline trained with one of these nets deploys wherever georax (with the ``train`` extra)
is installed: ``import georax.learn.nets`` (the loader itself never imports anything), then
``georax.load`` -- through the sandbox too, once ``georax.ModelOp`` and the net
(``"georax.learn.nets.SegNet"``) are on ``allowed``.

flax is imported when this module is (``georax.learn.nets`` is not imported by ``georax``).
"""

# ruff: noqa: E402 (the extras check runs before flax is imported)

from __future__ import annotations

import jax
import jax.numpy as jnp

from georax.core.extras import require_extra

require_extra("georax.learn.nets", "train", ("flax",))

from flax import nnx
from jaxtyping import Array, Float

from georax.core.errors import ConfigError
from georax.core.model import register_model

__all__ = ["SegNet"]


@register_model
class SegNet(nnx.Module):
    """A fully convolutional segmentation net: ``(..., C, H, W)`` -> ``(..., K, H, W)`` logits.

    3x3 convolutions with the given dilations, each followed by ReLU, then a 1x1 head. The
    receptive field is ``1 + 2 * sum(dilations)`` pixels (15 for ``(1, 2, 4)``): context to
    tell a cloud edge from bright ground at ~5k weights. 'SAME' zero padding keeps ``H, W``.
    flax convolutions are channels-last and georax rasters bands-first: the axes are moved in
    ``__call__``.

    **Arguments:**

    - `in_bands`: input bands ``C``.
    - `width`: channels of the hidden convolutions.
    - `dilations`: one 3x3 convolution per entry, with that dilation.
    - `out_channels`: output channels ``K`` (1 for a binary mask scored with a sigmoid).
    - `rngs`: the flax random streams for the initial weights.
    """

    def __init__(
        self,
        in_bands: int,
        width: int = 16,
        dilations: tuple[int, ...] = (1, 2, 4),
        out_channels: int = 1,
        *,
        rngs: nnx.Rngs,
    ) -> None:
        dilations = tuple(dilations)
        for name, value in (
            ("in_bands", in_bands),
            ("width", width),
            ("out_channels", out_channels),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError("SegNet", name, value, "must be a positive int")
        if not dilations or any(
            isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dilations
        ):
            raise ConfigError(
                "SegNet", "dilations", dilations, "must be positive ints (at least one)"
            )
        self.in_bands, self.width, self.out_channels = in_bands, width, out_channels
        self.dilations = dilations
        sizes = [in_bands] + [width] * len(dilations)
        self.convs = nnx.List(
            [
                nnx.Conv(a, b, (3, 3), kernel_dilation=d, rngs=rngs)
                for a, b, d in zip(sizes[:-1], sizes[1:], dilations, strict=True)
            ]
        )
        self.head = nnx.Conv(width, out_channels, (1, 1), rngs=rngs)

    def __call__(self, x: Float[Array, "*batch C H W"]) -> Float[Array, "*batch K H W"]:
        h = jnp.moveaxis(x, -3, -1)
        for conv in self.convs:
            h = jax.nn.relu(conv(h))
        return jnp.moveaxis(self.head(h), -1, -3)
