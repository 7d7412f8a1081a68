"""Models and a training script for the georax.learn tests.

Importable by name (``_learn_models``) so that subprocesses -- a fresh process loading a saved
pipeline, a training run killed with ``kill -9`` and resumed -- find the same registered classes:

- :class:`TinySeg`: a flax nnx segmentation net registered with ``register_model``;
- :class:`EqxSeg`: the same net as an equinox module, also registered with ``register_model``;
- ``python tests/_learn_models.py train ...``: a small deterministic ``fit`` run with orbax
  checkpoints, used by the kill-and-resume test (``--stall-at`` makes it block after a given
  step so the test can kill it mid-run at a known point).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import georax as gx
from georax import learn as gl


@gl.register_model
class TinySeg(nnx.Module):
    """``(C, H, W) -> (1, H, W)`` logits: 3x3 conv, ReLU, 1x1 conv (channels-last inside)."""

    def __init__(self, in_bands: int, width: int = 8, *, rngs: nnx.Rngs) -> None:
        self.conv = nnx.Conv(in_bands, width, (3, 3), rngs=rngs)
        self.head = nnx.Conv(width, 1, (1, 1), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = jnp.moveaxis(x, -3, -1)
        return jnp.moveaxis(self.head(jax.nn.relu(self.conv(h))), -1, -3)

    def probabilities(self, x: jax.Array) -> jax.Array:
        return jax.nn.sigmoid(self(x))


@gl.register_model
class EqxSeg(eqx.Module):
    """The same net written with equinox; hyper-parameters kept as static fields (so a copy
    made by ``eqx.tree_at`` still knows them)."""

    conv: eqx.nn.Conv2d
    head: eqx.nn.Conv2d
    in_bands: int = eqx.field(static=True)
    width: int = eqx.field(static=True)

    def __init__(self, in_bands: int, width: int = 8, *, key: jax.Array) -> None:
        k1, k2 = jax.random.split(key)
        self.conv = eqx.nn.Conv2d(in_bands, width, 3, padding=1, key=k1)
        self.head = eqx.nn.Conv2d(width, 1, 1, key=k2)
        self.in_bands, self.width = in_bands, width

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(jax.nn.relu(self.conv(x)))


def scenes(n: int = 2, size: int = 96) -> tuple[list[Any], list[np.ndarray]]:
    """Small synthetic Sentinel-2 scenes and their opaque-cloud truth."""
    seeds = [(10 + i, 0.3) for i in range(n)]
    xs = [gx.data.sentinel2_l1c(size, seed=s, cloud_cover=c) for s, c in seeds]
    ys = [gx.data.sentinel2_truth(size, seed=s, cloud_cover=c).cloud for s, c in seeds]
    return xs, ys


def pipeline(width: int = 8, seed: int = 0) -> gx.Sequential:
    """Preprocess (drop QA, DN -> reflectance) + TinySeg."""
    pre = gx.Sequential([gl.SelectBands(tuple(range(6))), gx.geo.radiometry.DNToReflectance()])
    return gx.Sequential([pre, gx.ModelOp(TinySeg(6, width, rngs=nnx.Rngs(seed)))])


class _Stall(gl.Callback):
    """Block forever once ``state.step`` reaches ``at`` (the test kills the process there)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_step_end(self, state: gl.TrainState, loss: float, log: gl.FitLog) -> None:
        if int(state.step) == self.at:
            print(f"stalled at {self.at}", flush=True)
            while True:
                time.sleep(1)


class _ReportStart(gl.Callback):
    """Print the step training starts from (after a Checkpointer has restored, if it did)."""

    def on_fit_start(self, state: gl.TrainState, log: gl.FitLog) -> Any:
        print(f"start {int(state.step)}", flush=True)
        return state, log


def train(argv: list[str]) -> None:
    """A deterministic fit run; writes the final arrays of the pipeline to ``--out``."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--every", type=int, default=3)
    ap.add_argument("--stall-at", type=int, default=0)
    args = ap.parse_args(argv)
    xs, ys = scenes()
    aug = gx.geo.augment.RandomFlip(axes=("x", "y"))
    ds = gl.ChipDataset.from_scenes(xs, ys, chip=32, augment=aug)
    pipe = pipeline()
    step = gl.make_train_step(pipe, gl.sigmoid_cross_entropy, optax.adam(1e-2))
    callbacks: list[gl.Callback] = [
        gl.Checkpointer(args.ckpt, every=args.every, keep=2),
        _ReportStart(),
    ]
    if args.stall_at:
        callbacks.append(_Stall(args.stall_at))
    result = gl.fit(
        step,
        step.init(pipe),
        ds,
        batch_size=4,
        epochs=args.steps // args.every,
        steps_per_epoch=args.every,
        seed=7,
        callbacks=callbacks,
        progress=False,
    )
    leaves = [np.asarray(v) for v in jax.tree.leaves(eqx.filter(result.state, eqx.is_array))]
    np.savez(args.out, *leaves, history=np.asarray(repr(result.history)))
    print("done", int(result.state.step), flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["train"]:
        import _learn_models  # the registered classes, under their importable name

        _learn_models.train(sys.argv[2:])
