"""SAR operators against independent references (NumPy, scipy.ndimage)."""

from __future__ import annotations

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from affine import Affine
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads
from scipy import ndimage

from _geo_helpers import assert_runs_on_chips, assert_stitches_to_scene, chips_of
from georax import GeoTensor, Sequential
from georax.core.budget import BudgetExceededError
from georax.core.errors import ConfigError, DataError, GeoraxError, ShapeError
from georax.core.sandbox import SANDBOX_LIMITS
from georax.geo.sar import (
    PADDING_MODES,
    DBToLinear,
    LeeSpeckle,
    LinearToDB,
    box_mean,
    db_to_linear,
    lee_filter,
    linear_to_db,
    scene_speckle_cv2,
)


def speckled(seed: int, shape: tuple[int, ...], looks: float = 4.0) -> np.ndarray:
    """A piecewise-constant reflectivity times L-look gamma speckle (mean 1, variance 1/L)."""
    rng = np.random.default_rng(seed)
    h, w = shape[-2:]
    s = np.ones(shape)
    s[..., : h // 2, :] *= 0.2
    s[..., :, w // 3 :] *= 3.0
    s *= rng.uniform(0.5, 2.0, size=(*shape[:-2], 1, 1))
    return (s * rng.gamma(looks, 1.0 / looks, size=shape)).astype(np.float32)


def lee_reference(x: np.ndarray, window: int, cu2: np.ndarray | float, mode: str) -> np.ndarray:
    """The Lee MMSE filter written with scipy.ndimage.uniform_filter, in float64."""
    x = x.astype(np.float64)
    size = (1,) * (x.ndim - 2) + (window, window)
    m = ndimage.uniform_filter(x, size=size, mode=mode)
    m2 = ndimage.uniform_filter(x * x, size=size, mode=mode)
    var = np.maximum(m2 - m * m, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.clip((var - cu2 * m * m) / ((1.0 + cu2) * var), 0.0, 1.0)
    w = np.where(var > 0, w, 0.0)
    return m + w * (x - m)


# ---------------------------------------------------------------------------- dB conversion
def test_linear_to_db_matches_numpy() -> None:
    x = np.random.default_rng(1).gamma(1.0, 0.1, size=(3, 17, 9)).astype(np.float32)
    np.testing.assert_allclose(linear_to_db(x), 10 * np.log10(x.astype(np.float64)), rtol=1e-5)
    np.testing.assert_allclose(
        linear_to_db(x, amplitude=True), 20 * np.log10(x.astype(np.float64)), rtol=1e-5
    )
    np.testing.assert_allclose(db_to_linear(np.float32(-7.5)), 10 ** (-0.75), rtol=1e-6)


def test_linear_to_db_zero_negative_and_floor() -> None:
    x = jnp.array([0.0, -1.0, 1e-6, 1.0])
    out = np.asarray(linear_to_db(x))
    assert out[0] == -np.inf and np.isnan(out[1])
    floored = np.asarray(LinearToDB(floor_db=-30.0)(x))
    np.testing.assert_allclose(floored[[0, 2, 3]], [-30.0, -30.0, 0.0], atol=1e-5)
    assert np.isnan(floored[1])  # negative power is not backscatter: still NaN
    # the clamp keeps gradients finite where the floor is active
    g = jax.grad(lambda v: LinearToDB(floor_db=-30.0)(v).sum())(jnp.array([1e-6, 1.0]))
    np.testing.assert_allclose(g, [0.0, 10 / np.log(10)], rtol=1e-5)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.floats(1e-6, 1e6, allow_nan=False, allow_infinity=False), min_size=1, max_size=8),
    st.booleans(),
)
def test_db_round_trip(values: list[float], amplitude: bool) -> None:
    x = jnp.asarray(values, jnp.float32)
    back = DBToLinear(amplitude=amplitude)(LinearToDB(amplitude=amplitude)(x))
    np.testing.assert_allclose(back, x, rtol=2e-5)


def test_db_grads() -> None:
    x = jnp.asarray(np.random.default_rng(2).uniform(0.05, 2.0, size=(2, 5, 5)), jnp.float32)
    check_grads(lambda v: linear_to_db(v), (x,), order=1, modes=["rev"], rtol=2e-2)
    check_grads(lambda v: db_to_linear(v), (x,), order=1, modes=["rev"], rtol=2e-2)


# ------------------------------------------------------------------------------ box filter
@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    h=st.integers(1, 23),
    w=st.integers(1, 23),
    window=st.sampled_from([3, 5, 7, 9, 15, 21]),
    mode=st.sampled_from(sorted(PADDING_MODES)),
)
def test_box_mean_matches_scipy_uniform_filter(
    seed: int, h: int, w: int, window: int, mode: str
) -> None:
    """Borders included, also where the pad is longer than an axis (window // 2 >= H)."""
    assume(window <= max(h, w))
    x = np.random.default_rng(seed).normal(size=(2, h, w)).astype(np.float32)
    ref = ndimage.uniform_filter(x.astype(np.float64), size=(1, window, window), mode=mode)
    np.testing.assert_allclose(box_mean(jnp.asarray(x), window, padding=mode), ref, atol=2e-6)


# ------------------------------------------------------------------------------ Lee filter
@settings(max_examples=10, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    h=st.integers(8, 40),
    w=st.integers(8, 40),
    window=st.sampled_from([3, 5, 7]),
    mode=st.sampled_from(sorted(PADDING_MODES)),
    looks=st.one_of(st.none(), st.floats(1.0, 20.0)),
)
def test_lee_matches_scipy_reference(
    seed: int, h: int, w: int, window: int, mode: str, looks: float | None
) -> None:
    x = speckled(seed, (2, h, w))
    op = LeeSpeckle(window_size=window, looks=looks, padding=mode)
    if looks is None:
        x64 = x.astype(np.float64)
        cu2 = x64.var(axis=(-2, -1), keepdims=True) / x64.mean(axis=(-2, -1), keepdims=True) ** 2
    else:
        cu2 = 1.0 / np.float32(looks)
    ref = lee_reference(x, window, cu2, mode)
    np.testing.assert_allclose(op(x), ref, rtol=2e-4, atol=2e-5)


def test_lee_borders_match_scipy_for_every_mode() -> None:
    # The outermost window//2 rows and columns are where boundary modes differ; compare them
    # explicitly (and check the modes really do differ there, so the test can fail).
    x = speckled(3, (1, 30, 30))
    outs = {}
    for mode in PADDING_MODES:
        out = np.asarray(lee_filter(jnp.asarray(x), 7, cu2=0.25, padding=mode))
        ref = lee_reference(x, 7, 0.25, mode)
        border = np.ones((30, 30), bool)
        border[3:-3, 3:-3] = False
        np.testing.assert_allclose(out[0][border], ref[0][border], rtol=2e-4, atol=2e-5)
        outs[mode] = out
    assert not np.allclose(outs["reflect"], outs["wrap"])
    np.testing.assert_allclose(outs["reflect"][0, 3:-3, 3:-3], outs["wrap"][0, 3:-3, 3:-3])


def test_lee_reduces_speckle_and_keeps_edges() -> None:
    rng = np.random.default_rng(4)
    looks = 4.0
    s = np.where(np.arange(64)[None, :] < 32, 1.0, 10.0) * np.ones((64, 64))
    y = (s * rng.gamma(looks, 1 / looks, size=s.shape)).astype(np.float32)
    out = np.asarray(LeeSpeckle(window_size=7, looks=looks)(y))
    flat = (slice(8, -8), slice(4, 26))  # homogeneous area, away from the edge
    # speckle std in the flat area drops by well over half, the mean is preserved
    assert out[flat].std() < 0.5 * y[flat].std()
    assert abs(out[flat].mean() - y[flat].mean()) < 0.05 * y[flat].mean()
    # the step edge survives: contrast across it is kept
    assert out[:, 28:30].mean() < 2.0 and out[:, 34:36].mean() > 7.0


def test_lee_constant_image_is_fixed_point() -> None:
    x = jnp.full((2, 9, 11), 0.37, jnp.float32)
    np.testing.assert_allclose(LeeSpeckle(window_size=5)(x), x, rtol=1e-6)
    np.testing.assert_allclose(LeeSpeckle(window_size=5, looks=1.0)(x), x, rtol=1e-6)


def test_scene_cv2_is_one_over_looks_for_pure_speckle() -> None:
    y = np.random.default_rng(5).gamma(5.0, 1 / 5.0, size=(256, 256)).astype(np.float32)
    np.testing.assert_allclose(scene_speckle_cv2(jnp.asarray(y))[0, 0], 1 / 5.0, rtol=0.05)


def test_lee_nan_propagates_only_to_its_window() -> None:
    x = speckled(6, (20, 20))
    x[10, 10] = np.nan
    out = np.asarray(lee_filter(jnp.asarray(x), 5, cu2=0.25))
    assert np.isnan(out[8:13, 8:13]).all()
    assert np.isfinite(out).sum() == 400 - 25


def test_lee_geotensor_jit_vmap() -> None:
    x = speckled(7, (3, 2, 16, 16))
    gt = GeoTensor(x[0], Affine(10, 0, 5e5, 0, -10, 4e6), "EPSG:32630", band_names=("VV", "VH"))
    op = LeeSpeckle(window_size=5, looks=4.4)
    out = jax.jit(op)(gt)
    assert isinstance(out, GeoTensor)
    assert (out.transform, out.crs, out.band_names) == (gt.transform, gt.crs, gt.band_names)
    np.testing.assert_allclose(
        out.values, lee_reference(x[0], 5, 1 / np.float32(4.4), "reflect"), rtol=2e-4, atol=2e-5
    )
    batched = jax.vmap(op)(jnp.asarray(x))
    for i in range(3):
        np.testing.assert_allclose(batched[i], op(x[i]), rtol=1e-6)
    # looks is a leaf: vmap over it without recompiling per value
    per_looks = jax.vmap(lambda lk: LeeSpeckle(window_size=5, looks=lk)(x[0]))(
        jnp.array([1.0, 4.0])
    )
    np.testing.assert_allclose(
        per_looks[1], op.__class__(window_size=5, looks=4.0)(x[0]), rtol=1e-5
    )
    assert not np.allclose(per_looks[0], per_looks[1])


def test_lee_grads() -> None:
    x = jnp.asarray(speckled(8, (1, 8, 8)))
    check_grads(lambda v: lee_filter(v, 3, cu2=0.25), (x,), order=1, modes=["rev"], rtol=2e-2)
    check_grads(lambda v: lee_filter(v, 3), (x,), order=1, modes=["rev"], rtol=2e-2)
    # gradient w.r.t. the number of looks (a leaf)
    check_grads(
        lambda lk: LeeSpeckle(window_size=3, looks=lk)(x).sum(),
        (jnp.float32(3.0),),
        order=1,
        modes=["rev"],
        rtol=2e-2,
    )
    # constant windows (var = 0) keep finite gradients
    g = jax.grad(lambda v: lee_filter(v, 3, cu2=0.25).sum())(jnp.ones((6, 6)))
    assert np.isfinite(np.asarray(g)).all()


# --------------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"window_size": 4}, "window_size"),
        ({"window_size": 1}, "window_size"),
        ({"window_size": 7.0}, "window_size"),
        ({"padding": "bogus"}, "padding"),
        ({"looks": 0.0}, "looks"),
        ({"looks": -2.0}, "looks"),
    ],
)
def test_lee_config_errors(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        LeeSpeckle(**kwargs)
    assert err.value.field == field
    assert field in str(err.value)


@pytest.mark.parametrize(
    "op",
    [
        LeeSpeckle(window_size=9, looks=4.4, padding="nearest"),
        LeeSpeckle(),
        LinearToDB(amplitude=True, floor_db=-40.0),
        LinearToDB(),
        DBToLinear(amplitude=True),
    ],
)
def test_config_round_trip_and_pickle(op) -> None:
    rebuilt = type(op)(**op.config_fields())
    assert rebuilt == op
    x = speckled(9, (1, 12, 12))
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(op))(x), op(x))


def test_seed_chain_under_jit() -> None:
    pipe = Sequential([LeeSpeckle(window_size=7), LinearToDB(floor_db=-35.0)])
    x = speckled(10, (2, 32, 32))
    out = jax.jit(pipe)(x)
    ref = 10 * np.log10(np.maximum(lee_reference(x, 7, scene_cv2_np(x), "reflect"), 10**-3.5))
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def scene_cv2_np(x: np.ndarray) -> np.ndarray:
    x64 = x.astype(np.float64)
    return x64.var(axis=(-2, -1), keepdims=True) / x64.mean(axis=(-2, -1), keepdims=True) ** 2


@pytest.mark.parametrize(
    "op",
    [
        LeeSpeckle(window_size=5, looks=4.4, padding="wrap"),
        LeeSpeckle(),
        LinearToDB(floor_db=-30.0),
    ],
)
def test_yaml_round_trip(op) -> None:
    from georax.core.yaml_io import dumps_yaml, loads_yaml

    assert loads_yaml(dumps_yaml(op)) == op


# ------------------------------------------------------------------ hostile configs and input
def test_pad_longer_than_an_axis_matches_scipy_in_every_mode() -> None:
    """The gather path (pad >= axis length) against scipy, deterministically for every mode."""
    x = np.random.default_rng(5).normal(size=(1, 3, 40)).astype(np.float32)
    for mode in PADDING_MODES:
        for window in (7, 9, 25, 39):  # window // 2 >= 3 rows: several periods of reflection
            ref = ndimage.uniform_filter(x.astype(np.float64), size=(1, window, window), mode=mode)
            got = box_mean(jnp.asarray(x), window, padding=mode)
            np.testing.assert_allclose(got, ref, atol=2e-6, err_msg=f"{mode} {window}")


def test_trace_cost_of_the_box_mean_does_not_grow_with_the_window() -> None:
    """jnp.pad's reflect loop grew with pad / size; the program must not (the issue's cause 1)."""
    x = jnp.ones((1, 3, 600), jnp.float32)

    def n_eqns(window: int) -> int:
        return len(jax.make_jaxpr(lambda v: box_mean(v, window))(x).jaxpr.eqns)

    assert n_eqns(9) == n_eqns(101) == n_eqns(599)


def test_window_larger_than_the_image_is_a_shape_error_not_a_hang() -> None:
    x = jnp.ones((1, 512, 512), jnp.float32)
    with pytest.raises(ShapeError, match=r"window_size=1000000001 is larger than the 512x512"):
        LeeSpeckle(window_size=1000000001)(x)
    with pytest.raises(ShapeError, match="larger than the"):
        jax.jit(LeeSpeckle(window_size=1025))(x)
    with pytest.raises(ShapeError, match="box_mean"):
        box_mean(x, 1025)


def test_the_issue_reproducer_is_refused_by_the_sandboxed_loader() -> None:
    """issue 16 cause 1: this document never returned; now it is a typed error."""
    import georax as gx

    with pytest.raises(GeoraxError, match="window_size"):
        gx.loads_yaml(
            "{_target_: georax.geo.sar.LeeSpeckle, window_size: 1000000001}",
            allowed=gx.registry.public_operators(),
            input_spec=(1, 512, 512),
            memory_budget="256MiB",
            flop_budget=1e12,
        )


def test_lee_precheck_refuses_without_tracing() -> None:
    op = LeeSpeckle(window_size=1000000001)
    with pytest.raises(BudgetExceededError, match=r"LeeSpeckle\.window_size") as e:
        op.precheck((1, 512, 512), SANDBOX_LIMITS)
    assert e.value.stage == "precheck" and e.value.budget == SANDBOX_LIMITS.max_extent
    assert e.value.unit == "pixels" and "1000000001 pixels" in str(e.value)
    with pytest.raises(ShapeError, match="larger than the 512x512"):
        LeeSpeckle(window_size=1025).precheck((1, 512, 512), SANDBOX_LIMITS)
    with pytest.raises(ShapeError, match=r"got shape \(512,\)"):
        LeeSpeckle().precheck((512,), SANDBOX_LIMITS)
    assert LeeSpeckle(window_size=9).precheck((4, 2, 64, 64), SANDBOX_LIMITS) == (4, 2, 64, 64)


@pytest.mark.parametrize("shape", [(5,), (), (3, 0, 0)])
def test_lee_on_arrays_without_an_image_is_a_shape_error(shape) -> None:
    with pytest.raises(ShapeError, match="LeeSpeckle"):
        LeeSpeckle()(jnp.ones(shape, jnp.float32))


def test_complex_input_is_refused_where_the_math_is_real() -> None:
    slc = jnp.ones((1, 8, 8), jnp.complex64)
    for op in (LeeSpeckle(window_size=3), LinearToDB(), DBToLinear()):
        with pytest.raises(DataError, match=f"{type(op).__name__}: got complex"):
            op(slc)
    with pytest.raises(DataError, match="abs"):
        lee_filter(slc, 3)
    # the documented way in: intensity of the SLC
    assert LinearToDB()(jnp.abs(slc) ** 2).dtype == jnp.float32


def test_nonsense_floor_is_refused() -> None:
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ConfigError, match=r"LinearToDB\.floor_db"):
            LinearToDB(floor_db=bad)
    for bad in (float("nan"), "four", [1.0, [2.0]]):
        with pytest.raises(ConfigError, match=r"LeeSpeckle\.looks"):
            LeeSpeckle(looks=bad)


def test_sar_operators_run_on_chips() -> None:
    x = GeoTensor(speckled(4, (2, 20, 22)), Affine(20, 0, 5e5, 0, -20, 4e6), "EPSG:32630")
    for op in (LinearToDB(floor_db=-30.0), DBToLinear()):
        assert_stitches_to_scene(op, x)
    # the Lee filter sees each chip as an image of its own (chip borders padded)
    assert_runs_on_chips(LeeSpeckle(window_size=5, looks=4.0), chips_of(x))
