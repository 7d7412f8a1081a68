"""End to end: gradients through a pipeline with cloud-masked (NaN) pixels are finite and right."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import georax as gx
from georax.geo import cloud, indices, radiometry, sar


def _scene() -> gx.GeoTensor:
    return gx.data.sentinel2_l1c(64, seed=2, cloud_cover=0.3)  # ~25 % cloud


def test_nanmean_loss_gradient_is_finite_through_mask_scale_dos_ndvi() -> None:
    scene = _scene()
    pipe = gx.Sequential(
        [
            cloud.MaskClouds.sentinel2(),
            radiometry.ScaleOffset(scale=1e-4, offset=0.01),
            radiometry.DarkObjectSubtraction(percentile=1.0),
            indices.EVI(),
        ]
    )
    assert np.isnan(np.asarray(pipe(scene).values)).mean() > 0.05  # masked pixels exist

    def loss(p: gx.Sequential) -> jax.Array:
        return jnp.nanmean(p(scene).values)

    grads = jax.grad(loss)(pipe)
    g_offset = grads[1].offset
    g_evi = grads[3]
    leaves = [*jax.tree_util.tree_leaves(g_evi), g_offset, grads[1].scale]
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in leaves)
    # central finite difference on the EVI gain g (the loss is linear in it: exact)
    eps = 1e-2
    hi = gx.Sequential([*pipe.operators[:3], indices.EVI(g=2.5 + eps)])
    lo = gx.Sequential([*pipe.operators[:3], indices.EVI(g=2.5 - eps)])
    fd = (loss(hi) - loss(lo)) / (2 * eps)
    np.testing.assert_allclose(g_evi.g, fd, rtol=1e-3)


def test_db_conversion_gradient_ignores_missing_pixels() -> None:
    v = jnp.array([[[0.1, jnp.nan], [0.02, 0.5]]])
    g = jax.grad(lambda f: jnp.nanmean(sar.LinearToDB(floor_db=f)(v)))(jnp.array(-15.0))
    assert jnp.isfinite(g)
    # only the 0.02 pixel (-17 dB) is floored at -15 dB: d mean / d floor = 1/3
    np.testing.assert_allclose(g, 1.0 / 3.0, rtol=1e-6)
