"""The compile guarantees of issue 2: jit, vmap, grad, no-retrace on leaves, pickling."""

from __future__ import annotations

import pickle

import chex
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

import georax as gx

from _core_ops import TRACES, Add, AddNoise, Gain, Power


def _pipeline(key: jax.Array) -> gx.Sequential:
    model = eqx.nn.Conv2d(4, 2, kernel_size=3, padding=1, key=key)
    return gx.Sequential([Gain(1.5, 0.1), Power(2), gx.ModelOp(model), gx.Identity()])


class TestEagerAndJit(chex.TestCase):
    """The same pipeline, eager and compiled (chex runs each test once per variant)."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_sequential_matches_its_reference(self) -> None:
        pipe = _pipeline(jax.random.key(0))
        x = jax.random.uniform(jax.random.key(1), (4, 16, 16))
        model = pipe.operators[2].model
        expected = model((1.5 * x + 0.1) ** 2)
        out = self.variant(lambda v: pipe(v))(x)
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_graph_matches_its_reference(self) -> None:
        a, b = gx.Input("a"), gx.Input("b")
        g = gx.Graph(inputs={"a": a, "b": b}, outputs={"y": Add()(Gain(0.5)(a), Power(3)(b))})
        xa, xb = jnp.arange(4.0), jnp.linspace(-1.0, 1.0, 4)
        out = self.variant(lambda u, v: g(a=u, b=v)["y"])(xa, xb)
        np.testing.assert_allclose(out, 0.5 * xa + xb**3, rtol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_stochastic_children_get_the_same_keys(self) -> None:
        pipe = gx.Sequential([AddNoise(scale=1.0), AddNoise(scale=2.0)])
        key = jax.random.key(3)
        k0, k1 = jax.random.split(key)
        x = jnp.zeros(16)
        expected = x + jax.random.normal(k0, (16,)) + 2.0 * jax.random.normal(k1, (16,))
        out = self.variant(lambda v, k: pipe(v, key=k))(x, key)
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_filter_jit_with_the_pipeline_as_argument_equals_eager() -> None:
    pipe = _pipeline(jax.random.key(0))
    x = jax.random.uniform(jax.random.key(1), (4, 16, 16))
    run = eqx.filter_jit(lambda p, v: p(v))
    np.testing.assert_allclose(run(pipe, x), pipe(x), rtol=1e-5, atol=1e-6)


def test_vmap_equals_python_loop() -> None:
    pipe = _pipeline(jax.random.key(0))
    batch = jax.random.uniform(jax.random.key(2), (5, 4, 8, 8))
    vmapped = eqx.filter_vmap(pipe)(batch)
    looped = jnp.stack([pipe(b) for b in batch])
    np.testing.assert_allclose(vmapped, looped, rtol=1e-5, atol=1e-6)


def _finite_difference_check(pipe: eqx.Module, loss) -> None:  # type: ignore[no-untyped-def]
    params, static = eqx.partition(pipe, eqx.is_inexact_array)
    grads = eqx.filter_grad(lambda p: loss(eqx.combine(p, static)))(params)
    flat, unravel = ravel_pytree(params)
    gflat, _ = ravel_pytree(grads)
    rng = np.random.default_rng(0)
    eps = 1e-3
    for i in rng.choice(flat.size, size=min(12, flat.size), replace=False):
        e = jnp.zeros_like(flat).at[i].set(eps)
        plus = loss(eqx.combine(unravel(flat + e), static))
        minus = loss(eqx.combine(unravel(flat - e), static))
        fd = (plus - minus) / (2 * eps)
        np.testing.assert_allclose(gflat[i], fd, rtol=2e-2, atol=2e-3)


def test_grad_through_sequential_matches_finite_differences() -> None:
    pipe = _pipeline(jax.random.key(3))
    x = jax.random.uniform(jax.random.key(4), (4, 6, 6))
    _finite_difference_check(pipe, lambda p: jnp.mean(p(x) ** 2))
    grads = eqx.filter_grad(lambda p: jnp.mean(p(x) ** 2))(pipe)
    assert float(jnp.abs(grads[0].gain)) > 0  # the learnable gain gets a real gradient


def test_grad_through_graph_matches_finite_differences() -> None:
    a, b = gx.Input("a"), gx.Input("b")
    mlp = eqx.nn.MLP(3, 3, 4, 1, key=jax.random.key(5))
    y = gx.ModelOp(mlp)(Add()(Gain(0.7)(a), Power(2)(b)))
    g = gx.Graph(inputs={"a": a, "b": b}, outputs={"y": y})
    xa, xb = jnp.array([0.1, -0.4, 0.9]), jnp.array([0.3, 0.2, -0.5])
    _finite_difference_check(g, lambda p: jnp.sum(p(a=xa, b=xb)["y"] ** 2))


def test_leaf_change_does_not_retrace_static_change_does() -> None:
    run = eqx.filter_jit(lambda p, x: p(x))
    x = jnp.ones(8)
    TRACES.clear()
    run(gx.Sequential([Gain(2.0), Power(2)]), x)
    run(gx.Sequential([Gain(5.0, 1.0), Power(2)]), x)  # new leaf values: cached program
    assert TRACES == ["Power(2)"]
    run(gx.Sequential([Gain(2.0), Power(3)]), x)  # new static config: recompiles
    assert TRACES == ["Power(2)", "Power(3)"]


def test_pipelines_pickle_to_equal_results(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pipe = _pipeline(jax.random.key(6))
    a = gx.Input("a")
    graph = gx.Graph(inputs={"a": a}, outputs={"y": pipe(a)})
    x = jax.random.uniform(jax.random.key(7), (4, 8, 8))
    for obj, call in ((pipe, lambda p: p(x)), (graph, lambda g: g(a=x)["y"])):
        restored = pickle.loads(pickle.dumps(obj))
        np.testing.assert_array_equal(call(restored), call(obj))
