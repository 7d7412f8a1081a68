"""georax.array.reductions.nanpercentile: exact agreement with np.nanpercentile, both backends."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

from georax.array.reductions import (
    _host_order_stats,
    _lerp,
    nanpercentile,
    nanquantile,
    order_statistics_radix,
)
from georax.core.errors import DataError, ShapeError


def _data(seed: int, shape: tuple[int, ...], nan_frac: float = 0.1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape).astype(np.float32) * 3
    x[rng.random(shape) < nan_frac] = np.nan
    return x


@pytest.mark.parametrize("axis", [None, -1, 0, (0, 2), (-2, -1)])
def test_matches_numpy_linear(axis) -> None:
    x = _data(0, (3, 17, 23))
    q = np.array([0.0, 1.0, 13.5, 50.0, 98.0, 100.0], np.float32)
    ours = np.asarray(nanpercentile(x, q, axis))
    ref = np.nanpercentile(x, q, axis=axis)
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6)


def test_scalar_q_keepdims_and_quantile() -> None:
    x = _data(1, (2, 9, 11))
    out = nanpercentile(x, 25.0, (-2, -1), keepdims=True)
    assert out.shape == (2, 1, 1)
    np.testing.assert_allclose(
        out, np.nanpercentile(x, 25, axis=(-2, -1), keepdims=True), rtol=1e-6
    )
    np.testing.assert_allclose(nanquantile(x, 0.25, (-2, -1)), out[:, 0, 0], rtol=1e-6)


def test_all_nan_slice_is_nan_and_ints_work() -> None:
    x = _data(2, (3, 40))
    x[1] = np.nan
    out = np.asarray(nanpercentile(x, 10.0, -1))
    assert np.isnan(out[1]) and not np.isnan(out[[0, 2]]).any()
    dn = np.random.default_rng(3).integers(0, 10000, size=(4, 64, 64)).astype(np.uint16)
    np.testing.assert_allclose(
        nanpercentile(dn, [1, 99], (-2, -1)), np.percentile(dn, [1, 99], axis=(-2, -1)), rtol=1e-6
    )


def test_large_rows_use_the_bracketed_path_exactly() -> None:
    # > 4 * 2**15 elements per row exercises the sample bracket; ties (quantised DN) included.
    rng = np.random.default_rng(4)
    x = (rng.integers(0, 3000, size=(2, 300_000)) * 1e-4).astype(np.float32)
    x[0, :50_000] = np.nan
    q = np.array([0.5, 1.0, 2.0, 50.0, 98.0, 99.9], np.float32)
    np.testing.assert_allclose(nanpercentile(x, q, -1), np.nanpercentile(x, q, axis=-1), rtol=1e-6)
    # adversarial order: sorted data defeats a strided sample's assumptions; still exact
    s = np.sort(x[1])
    np.testing.assert_allclose(nanpercentile(s, q), np.nanpercentile(s, q), rtol=1e-6)


def test_radix_branch_equals_host_branch() -> None:
    x = _data(5, (4, 257))
    q = jnp.array([0.0, 3.0, 50.0, 77.7, 100.0])
    lo_r, hi_r, w_r = order_statistics_radix(jnp.asarray(x), q)
    lo_h, hi_h, _ = _host_order_stats(x, np.asarray(q)[None, :])
    np.testing.assert_array_equal(np.asarray(lo_r), lo_h.T)
    np.testing.assert_array_equal(np.asarray(hi_r), hi_h.T)
    np.testing.assert_allclose(
        _lerp(lo_r, hi_r, w_r), np.nanpercentile(x, np.asarray(q), axis=-1), rtol=1e-6
    )


def test_jit_and_vmap() -> None:
    x = _data(6, (5, 3, 31))
    f = jax.jit(lambda a: nanpercentile(a, 40.0, -1))
    np.testing.assert_allclose(f(x), np.nanpercentile(x, 40, axis=-1), rtol=1e-6)
    v = jax.vmap(lambda a: nanpercentile(a, 40.0, -1))(jnp.asarray(x))
    np.testing.assert_allclose(v, np.nanpercentile(x, 40, axis=-1), rtol=1e-6)


def test_gradient_matches_finite_differences() -> None:
    x = jnp.asarray(np.random.default_rng(7).normal(size=(40,)).astype(np.float32))
    check_grads(lambda a: nanpercentile(a, 37.0), (x,), order=1, modes=("fwd", "rev"), eps=1e-3)
    g = jax.grad(lambda a: nanpercentile(a, 37.0))(x)
    assert float(g.sum()) == pytest.approx(1.0, abs=1e-6)  # weights of the two neighbours
    assert int((g != 0).sum()) == 2


def test_bad_axis_is_a_shape_error() -> None:
    with pytest.raises(ShapeError, match="out of range"):
        nanpercentile(np.zeros((2, 3)), 5.0, axis=2)
    with pytest.raises(ShapeError, match="1-D"):
        nanpercentile(np.zeros((2, 3)), np.zeros((2, 2)))


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 60),
    q=st.floats(0, 100, allow_nan=False).map(lambda v: float(np.float32(v))),
    seed=st.integers(0, 2**16),
    nan_frac=st.sampled_from([0.0, 0.3]),
)
def test_property_equals_numpy(n: int, q: float, seed: int, nan_frac: float) -> None:
    x = _data(seed, (n,), nan_frac)
    ref = np.nanpercentile(x, q) if not np.isnan(x).all() else np.nan
    np.testing.assert_allclose(float(nanpercentile(x, q)), ref, rtol=1e-5, atol=1e-6)


def test_rows_split_over_several_ordered_host_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    # Large inputs go to the host in row chunks (one fused slice + one callback each, ordered by a
    # token); force several chunks on small data and check exactness, jit and vmap.
    import georax.array.reductions as red

    monkeypatch.setattr(red, "_CALL_BYTES", 2 * 50 * 4)  # two rows of 50 float32 per call
    x = _data(8, (2, 5, 50), nan_frac=0.2)
    x[1, 3] = np.nan
    q = np.array([1.0, 50.0, 99.0], np.float32)
    ref = np.nanpercentile(x, q, axis=-1)
    f = jax.jit(lambda a: nanpercentile(a, q, -1))
    text = f.lower(x).as_text()
    assert text.count("callback") >= 3  # 10 rows / 2 per call = 5 calls
    np.testing.assert_allclose(f(x), ref, rtol=1e-6, equal_nan=True)
    v = jax.vmap(lambda a: nanpercentile(a, q, -1))(jnp.asarray(x))
    np.testing.assert_allclose(np.moveaxis(np.asarray(v), 0, 1), ref, rtol=1e-6, equal_nan=True)


def test_empty_input_gives_nan_not_a_bare_error() -> None:
    """Zero elements per slice, or zero slices: NaN of the right shape, as NumPy (no warning)."""
    out = nanpercentile(jnp.zeros((3, 0, 0)), 50.0, (-2, -1))
    assert out.shape == (3,) and bool(jnp.all(jnp.isnan(out)))
    out = nanpercentile(jnp.zeros((0, 4, 4)), jnp.array([2.0, 98.0]), (-2, -1), keepdims=True)
    assert out.shape == (2, 0, 1, 1)
    assert bool(jnp.isnan(jax.jit(lambda v: nanpercentile(v, 10.0))(jnp.zeros((0,)))))


def test_complex_input_is_refused() -> None:
    with pytest.raises(DataError, match="nanpercentile: got complex"):
        nanpercentile(jnp.ones((4,), jnp.complex64), 50.0)
