"""Chips sharded across 4 (host) devices give the single-device result (run in a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np

import georax as gx
from georax.patch import Patcher, Patchwise
from georax.patch.sharding import sharded_patchwise

SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    import georax as gx
    from georax.patch import Hann, Max, Patcher, Patchwise, RandomPositions, Rectangular
    from georax.patch.sharding import chip_mesh, sharded_patchwise

    assert jax.device_count() == 4, jax.devices()
    x = jax.random.normal(jax.random.key(0), (3, 37, 29))
    g = gx.GeoTensor(x, crs="EPSG:32630")
    op = gx.Lambda(lambda c: jnp.tanh(c) * 2 + c.mean(0, keepdims=True))
    cases = [
        Patchwise(Patcher.regular(8, 5, window="hann", margin=2), op, 2),   # 10x8 chips, padded
        Patchwise(Patcher.regular((9, 7), (9, 7)), op, 3),                  # n not a multiple of 4
        Patchwise(Patcher(Rectangular(8), RandomPositions(13), Hann(), Max()), op, 4),
    ]
    key = jax.random.key(3)
    for pw in cases:
        single = pw(g, key=key)
        multi = jax.jit(lambda v, k: sharded_patchwise(pw, v, mesh=chip_mesh(), key=k))(g, key)
        assert isinstance(multi, gx.GeoTensor) and multi.crs == "EPSG:32630"
        np.testing.assert_allclose(multi.values, single.values, rtol=1e-5, atol=1e-5)
        # the work really is split: each device holds a quarter of the padded positions
    print("SHARDED-OK", len(cases))
    """
)


def test_sharded_equals_single_device_on_four_host_devices() -> None:
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    env["JAX_PLATFORMS"] = "cpu"
    res = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "SHARDED-OK 3" in res.stdout


def test_sharded_on_one_device_is_the_plain_result() -> None:
    x = jax.random.normal(jax.random.key(1), (2, 20, 18))
    pw = Patchwise(Patcher.regular(8, 6, window="triangular"), gx.Lambda(lambda c: c * c), 2)
    np.testing.assert_allclose(sharded_patchwise(pw, x), pw(x), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(sharded_patchwise(pw, x), x * x, rtol=1e-5, atol=1e-5)
    assert jnp.shape(sharded_patchwise(pw, x)) == x.shape
