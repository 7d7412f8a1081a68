"""Chip datasets: labelled training chips cut at random from scenes, drawn from an explicit key.

A :class:`ChipDataset` holds scenes and their label rasters as arrays (a pytree, so batching is
one compiled program with the data as arguments) and makes batches with
:meth:`ChipDataset.batch`::

    ds = ChipDataset.from_scenes(scenes, labels, chip=64, augment=augment)
    x, y = ds.batch(key, 16)              # (16, C, 64, 64), (16, 64, 64)

**Keys, not state.** Sample ``i`` of a batch is a function of ``fold_in(key, i)`` only: that key
picks the scene, the chip position (with the patch layer's
:class:`~georax.patch.RandomPositions` sampler) and the augmentation draw. So the same key gives
the same batch in any process, worker or host; two workers that each build half of a batch
agree with one that builds all of it; and a training loop whose key for step ``s`` is
``batch_key(seed, s)`` replays the same data order after a restart -- nothing to seed, nothing to
reset (the seeds' forked-RNG bug cannot happen).

**Augmentation** uses georax's keyed operators (``RandomFlip``, ``RandomRotate90``,
``RandomCrop``, or a ``Sequential`` of them): the image chip and its label chip go through the
same operator with the same key, so they move together. Only geometric operators belong here
(anything that changes pixel values would change the labels too); augmentation is a training
concern and never part of the model pipeline. Preprocessing, by contrast, *is* part of the
pipeline being trained (``Sequential([preprocess, ModelOp(net)])``), so training and inference
run the same preprocessing object.

Batches are built with ``jax.vmap`` over samples: no Python loop over chips.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray, Shaped

from georax.core.carrier import values_of
from georax.core.errors import ConfigError, ShapeError
from georax.core.operator import Operator
from georax.patch import RandomPositions

__all__ = ["ChipDataset", "batch_key"]

Batch = tuple[Array, Array]


def batch_key(seed: int, step: int | Array) -> PRNGKeyArray:
    """The data key of training step ``step``: ``fold_in(key(seed), step)``.

    The data order of a run is a function of ``(seed, step)`` alone, which is what makes a run
    resumed from a checkpoint at step ``s`` see exactly the batches the uninterrupted run saw.
    """
    return jax.random.fold_in(jax.random.key(seed), step)


def _pair(chip: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(chip, int) and not isinstance(chip, bool):
        return (chip, chip)
    t = tuple(chip)
    if len(t) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in t):
        raise ConfigError("ChipDataset", "chip", chip, "must be an int or (rows, cols)")
    return (int(t[0]), int(t[1]))


class ChipDataset(eqx.Module):
    """Random labelled chips from a stack of scenes (see the module docstring).

    **Arguments** (prefer :meth:`from_scenes`):

    - `scenes`: ``(S, C, H, W)`` image stack (any dtype: the pipeline converts).
    - `labels`: ``(S, *L, H, W)`` labels, pixel-aligned with the scenes (``L`` may be empty).
    - `chip`: ``(h, w)`` chip size, at most the scene size.
    - `augment`: an optional keyed geometric :class:`~georax.Operator` applied to each image
      chip and its label chip with the same key.
    """

    scenes: Shaped[Array, "S C H W"]
    labels: Shaped[Array, "S *L H W"]
    chip: tuple[int, int] = eqx.field(static=True)
    augment: Operator | None = None

    def __check_init__(self) -> None:
        s, lab = self.scenes, self.labels
        if s.ndim != 4:
            raise ShapeError(f"ChipDataset.scenes: expected (S, C, H, W), got shape {s.shape}")
        if lab.ndim < 3 or lab.shape[0] != s.shape[0] or lab.shape[-2:] != s.shape[-2:]:
            raise ShapeError(
                f"ChipDataset.labels: expected (S, *L, H, W) aligned with scenes {s.shape}, "
                f"got shape {lab.shape}"
            )
        h, w = self.chip
        if not (1 <= h <= s.shape[-2] and 1 <= w <= s.shape[-1]):
            raise ShapeError(
                f"ChipDataset.chip={self.chip} does not fit scenes of {s.shape[-2:]} pixels"
            )
        if self.augment is not None and not isinstance(self.augment, Operator):
            raise ConfigError(
                "ChipDataset", "augment", type(self.augment).__name__, "must be a georax Operator"
            )

    @classmethod
    def from_scenes(
        cls,
        scenes: Sequence[Any],
        labels: Sequence[Any] | Callable[[Any], Any],
        *,
        chip: int | tuple[int, int],
        augment: Operator | None = None,
    ) -> ChipDataset:
        """Build a dataset from scenes (GeoTensors or ``(C, H, W)`` arrays) of one shape.

        **Arguments:**

        - `scenes`: the scenes.
        - `labels`: one label raster per scene (``(H, W)`` or ``(L, H, W)``, pixel-aligned), or
          a function ``scene -> labels`` applied to each scene once, here.
        - `chip`: the chip size, an int or ``(rows, cols)``.
        - `augment`: see the class docstring.

        **Raises:** :class:`~georax.errors.ShapeError` when scenes differ in shape or labels do
        not line up; :class:`~georax.errors.ConfigError` for a bad ``chip``.
        """
        scenes = list(scenes)
        if not scenes:
            raise ConfigError("ChipDataset", "scenes", [], "needs at least one scene")
        lab = [labels(s) for s in scenes] if callable(labels) else list(labels)
        if len(lab) != len(scenes):
            raise ShapeError(f"ChipDataset: {len(scenes)} scenes but {len(lab)} label rasters")
        xs = [np.asarray(values_of(s)) for s in scenes]
        ys = [np.asarray(values_of(v)) for v in lab]
        for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
            if x.ndim != 3 or x.shape != xs[0].shape:
                raise ShapeError(
                    f"ChipDataset: scene {i} has shape {x.shape}; every scene must be "
                    f"(C, H, W) of the first scene's shape {xs[0].shape}"
                )
            if y.shape[-2:] != x.shape[-2:] or y.shape != ys[0].shape:
                raise ShapeError(
                    f"ChipDataset: labels {i} have shape {y.shape}; expected (..., H, W) "
                    f"aligned with the scene ({x.shape[-2:]}) and like the first labels"
                )
        stacked = np.stack(ys)
        if stacked.dtype == bool:  # flips and rotations work on any dtype; losses want numbers
            stacked = stacked.astype(np.uint8)
        return cls(jnp.asarray(np.stack(xs)), jnp.asarray(stacked), _pair(chip), augment)

    @property
    def num_scenes(self) -> int:
        return int(self.scenes.shape[0])

    def sample(self, key: PRNGKeyArray) -> Batch:
        """One ``(image chip, label chip)`` drawn from ``key``: scene, position, augmentation."""
        k_scene, k_pos, k_aug = jax.random.split(key, 3)
        scene = jax.random.randint(k_scene, (), 0, self.num_scenes)
        hw = (int(self.scenes.shape[-2]), int(self.scenes.shape[-1]))
        row, col = RandomPositions(1).positions(hw, self.chip, k_pos)[0]
        x = jax.lax.dynamic_slice(
            self.scenes[scene], (0, row, col), (self.scenes.shape[1], *self.chip)
        )
        lead = self.labels.shape[1:-2]
        y = jax.lax.dynamic_slice(
            self.labels[scene], (*(0,) * len(lead), row, col), (*lead, *self.chip)
        )
        if self.augment is not None:
            x, y = self.augment(x, key=k_aug), self.augment(y, key=k_aug)
        return x, y

    @eqx.filter_jit
    def batch(self, key: PRNGKeyArray, batch_size: int) -> Batch:
        """``batch_size`` samples; sample ``i`` is :meth:`sample` of ``fold_in(key, i)``.

        Compiled once per batch size (the dataset's arrays are arguments, not constants).

        **Returns:** ``(x, y)``: ``(B, C, h, w)`` images and ``(B, *L, h, w)`` labels.
        """
        keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(batch_size))
        return jax.vmap(self.sample)(keys)
