"""Examples of the georax.learn operators for tests/test_every_operator.py.

- :class:`georax.learn.SelectBands` on a GeoTensor (fewer bands, same grid);
- the operator :func:`georax.learn.register_model` made for :class:`georax.learn.nets.SegNet`
  (``georax.learn.nets.SegNet`` in YAML) on a plain array: a model maps arrays to arrays, and
  ``ModelOp`` (``forbid_in_yaml`` unless it wraps such an operator, so not in the registry's
  public list) is what re-wraps a carrier around it.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

import georax as gx
from georax.core.model import model_operator
from georax.learn import SelectBands
from georax.learn.nets import SegNet

from operator_examples import Example, example


@example(SelectBands)
def _select_bands() -> Example:
    scene = gx.data.sentinel2_l1c(16, seed=0)
    floats = scene.replace(values=scene.values.astype(jnp.float32))  # differentiable input
    return Example(SelectBands((0, 3, -2)), (floats,))


@example(model_operator(SegNet))
def _segnet() -> Example:
    net = gx.ModelOp(SegNet(4, 4, (1, 2), rngs=nnx.Rngs(0))).model
    x = jnp.asarray(np.random.default_rng(0).random((4, 16, 16), dtype=np.float32))
    return Example(net, (x,), georeferencing="none", rtol=1e-5, atol=1e-5)
