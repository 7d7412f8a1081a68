"""Sequential, Identity, Lambda, Tap, ModelOp behaviour."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import georax as gx

from _core_ops import AddNoise, Gain, Power


def test_sequential_applies_in_order_and_indexes() -> None:
    pipe = gx.Sequential([Gain(2.0, 1.0), Power(2), gx.Identity()])
    x = jnp.arange(4.0)
    np.testing.assert_allclose(pipe(x), (2 * x + 1) ** 2)
    assert len(pipe) == 3 and isinstance(pipe[1], Power)
    head = pipe[:2]
    assert isinstance(head, gx.Sequential) and len(head) == 2
    np.testing.assert_allclose(head(x), (2 * x + 1) ** 2)
    assert [type(op).__name__ for op in pipe] == ["Gain", "Power", "Identity"]


def test_sequential_splits_keys_so_children_differ() -> None:
    noise = AddNoise(scale=1.0)
    pipe = gx.Sequential([noise, noise])
    x = jnp.zeros(1000)
    key = jax.random.key(7)
    k0, k1 = jax.random.split(key, 2)
    np.testing.assert_array_equal(pipe(x, key=key), noise(noise(x, key=k0), key=k1))
    # two children never reuse one key: their noise draws differ
    assert not np.allclose(noise(x, key=k0), noise(x, key=k1))
    np.testing.assert_array_equal(pipe(x, key=key), pipe(x, key=key))  # same key, same result


def test_summary_reports_each_step_shape_and_dtype() -> None:
    pipe = gx.Sequential([Gain(), gx.Lambda(lambda v: v.sum(axis=0), name="band_sum"), Power(2)])
    s = pipe.summary(jax.ShapeDtypeStruct((4, 8, 8), jnp.float32))
    assert s.rows[0][2:] == ("(4, 8, 8)", "float32")
    assert s.rows[2][1] == "Lambda[band_sum]" and s.rows[2][2] == "(8, 8)"
    assert "Power" in str(s) and len(s.rows) == 4


def test_tap_fires_eagerly_and_inside_jit_in_order() -> None:
    seen: list[tuple[str, float]] = []
    pipe = gx.Sequential(
        [
            Gain(2.0),
            gx.Tap(lambda v: seen.append(("after_gain", float(np.mean(v))))),
            Power(2),
            gx.Tap(lambda v: seen.append(("after_power", float(np.mean(v))))),
        ]
    )
    x = jnp.ones(5)
    pipe(x)
    assert seen == [("after_gain", 2.0), ("after_power", 4.0)]
    seen.clear()
    f = jax.jit(pipe)
    jax.block_until_ready(f(x))
    jax.effects_barrier()
    assert seen == [("after_gain", 2.0), ("after_power", 4.0)]
    seen.clear()
    jax.block_until_ready(f(3 * x))
    jax.effects_barrier()
    assert seen == [("after_gain", 6.0), ("after_power", 36.0)]  # fires every run, real values


def test_unordered_tap_works_under_vmap() -> None:
    seen: list[float] = []
    tap = gx.Tap(lambda v: seen.append(float(np.sum(v))), ordered=False)
    out = jax.vmap(tap)(jnp.arange(6.0).reshape(3, 2))
    jax.effects_barrier()
    assert out.shape == (3, 2) and sorted(seen) == [1.0, 5.0, 9.0]


def test_modelop_holds_weights_as_leaves() -> None:
    mlp = eqx.nn.MLP(3, 2, 8, 1, key=jax.random.key(0))
    op = gx.ModelOp(mlp)
    x = jnp.ones(3)
    np.testing.assert_allclose(op(x), mlp(x))
    n_model = len(jax.tree_util.tree_leaves(eqx.filter(mlp, eqx.is_array)))
    assert len(jax.tree_util.tree_leaves(eqx.filter(op, eqx.is_array))) == n_model


def test_modelop_calls_named_method() -> None:
    class UQ(eqx.Module):
        w: jax.Array

        def predict_with_uncertainty(self, x: jax.Array) -> dict[str, jax.Array]:
            return {"pred": jnp.mean(x * self.w), "sigma": jnp.std(x * self.w)}

    op = gx.ModelOp(UQ(jnp.array(2.0)), method="predict_with_uncertainty")
    out = op(jnp.array([1.0, 3.0]))
    assert float(out["pred"]) == 4.0 and float(out["sigma"]) == 2.0
    with pytest.raises(gx.errors.ConfigError, match="no callable 'predict'"):
        gx.ModelOp(UQ(jnp.array(2.0)), method="predict")


def test_lambda_refuses_non_callable() -> None:
    with pytest.raises(gx.errors.ConfigError, match=r"Lambda\.fn"):
        gx.Lambda(3)  # type: ignore[arg-type]
