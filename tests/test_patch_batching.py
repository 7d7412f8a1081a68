"""Batch loop: the unrolled loop equals the scan fallback, stays one batch in memory, and keeps
convolutions where XLA:CPU runs them fast (outside loop bodies)."""

from __future__ import annotations

import re
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import georax as gx
from georax.patch import ApplyToChips, GridSampler, Patcher, Patchwise, Stitch, map_chips

stitch_mod = sys.modules["georax.patch.stitch"]  # the package re-exports a function `stitch`


class _Conv(eqx.Module):
    """4 -> 16 -> 1 channels, 3x3, channels-first (the layout XLA:CPU must canonicalise)."""

    c1: eqx.nn.Conv2d
    c2: eqx.nn.Conv2d

    def __init__(self, key: jax.Array) -> None:
        k1, k2 = jax.random.split(key)
        self.c1 = eqx.nn.Conv2d(4, 16, 3, padding=1, key=k1)
        self.c2 = eqx.nn.Conv2d(16, 1, 3, padding=1, key=k2)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.c2(jax.nn.relu(self.c1(x)))


def _scene() -> jax.Array:
    return jax.random.uniform(jax.random.key(0), (4, 70, 90))


@pytest.mark.parametrize("window", ["hann", "boxcar"])
@pytest.mark.parametrize("aggregation", ["overlap_add", "max"])
def test_unrolled_loop_equals_scan_fallback(
    window: str, aggregation: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = _scene()
    model = gx.ModelOp(_Conv(jax.random.key(1)))
    # 3 x 4 = 12 chips in batches of 5: the last batch is short (2 chips)
    p = Patcher.regular((32, 32), (19, 20), window=window, aggregation=aggregation)
    pw = Patchwise(p, model, batch_size=5)
    unrolled = np.asarray(eqx.filter_jit(pw)(x))
    three = gx.Sequential([GridSampler(p), ApplyToChips(model, 5), Stitch()])
    unrolled3 = np.asarray(eqx.filter_jit(three)(x))
    monkeypatch.setattr(stitch_mod, "MAX_UNROLLED_BATCHES", 0)
    scanned = np.asarray(eqx.filter_jit(pw)(x))
    scanned3 = np.asarray(eqx.filter_jit(three)(x))
    np.testing.assert_allclose(unrolled, scanned, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(unrolled3, scanned3, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(unrolled, unrolled3, rtol=1e-5, atol=1e-5)


def test_map_chips_keys_same_in_both_loops(monkeypatch: pytest.MonkeyPatch) -> None:
    chips = jax.random.normal(jax.random.key(2), (7, 2, 4, 4))

    def noisy(c: jax.Array, k: jax.Array | None) -> jax.Array:
        assert k is not None
        return c + jax.random.normal(k, c.shape)

    a = map_chips(noisy, chips, batch_size=3, key=jax.random.key(3))
    monkeypatch.setattr(stitch_mod, "MAX_UNROLLED_BATCHES", 0)
    b = map_chips(noisy, chips, batch_size=3, key=jax.random.key(3))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # every chip got its own key: the added noise differs between chips
    noise = np.asarray(a - chips).reshape(7, -1)
    assert len({round(float(r[0]), 6) for r in noise}) == 7


def _temp_bytes(batch: int) -> int:
    x = jax.random.uniform(jax.random.key(0), (4, 128, 128))
    p = Patcher.regular(32, 32, window="hann")  # 16 chips
    pw = Patchwise(p, gx.ModelOp(_Conv(jax.random.key(1))), batch_size=batch)
    compiled = jax.jit(lambda v: pw(v)).lower(x).compile()
    return int(compiled.memory_analysis().temp_size_in_bytes)


def test_unrolled_batches_do_not_all_stay_alive() -> None:
    # one batch of 2 chips holds 2 x 16 x 32 x 32 float32 = 128 KiB of hidden activations;
    # without the data dependency between batches XLA:CPU hoists all 8 batches (>= 1 MiB)
    one_batch = 2 * 16 * 32 * 32 * 4
    small, whole = _temp_bytes(2), _temp_bytes(16)
    assert small < 4 * one_batch, (small, one_batch)
    assert small * 3 < whole, (small, whole)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU layout detail")
def test_convolutions_are_canonicalised_for_the_fast_cpu_kernel() -> None:
    # XLA:CPU runs a convolution with its Eigen kernel only once it is in b01f (NHWC) form,
    # which its ConvCanonicalization pass produces in the entry computation only; a bf01 conv
    # left in a loop body is a naive loop nest (2-3x slower on the benchmark's net)
    x = _scene()
    pw = Patchwise(Patcher.regular(32, 19, window="hann"), gx.ModelOp(_Conv(jax.random.key(1))), 4)
    text = jax.jit(lambda v: pw(v)).lower(x).compile().as_text()
    labels = re.findall(r"convolution\(.*?dim_labels=(\S+?)[,\s]", text)
    assert labels, "no convolution found in the compiled program"
    assert all(lbl.startswith("b01f") for lbl in labels), labels
    np.testing.assert_allclose(eqx.filter_jit(pw)(x).shape, (1, 70, 90))  # and it still runs


def test_unrolled_loop_is_differentiable() -> None:
    x = _scene()
    net = _Conv(jax.random.key(1))
    p = Patcher.regular((35, 45))  # boxcar, stride == chip: 2 x 2 chips, batches of 3

    def loss(n: _Conv) -> jax.Array:
        return jnp.sum(Patchwise(p, gx.ModelOp(n), 3)(x) ** 2)

    g = eqx.filter_grad(loss)(net)
    chips = x.reshape(4, 2, 35, 2, 45).transpose(1, 3, 0, 2, 4).reshape(4, 4, 35, 45)

    def loss_ref(n: _Conv) -> jax.Array:
        return jnp.sum(jax.vmap(n)(chips) ** 2)

    g_ref = eqx.filter_grad(loss_ref)(net)
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-4)
