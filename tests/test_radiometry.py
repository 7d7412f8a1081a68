"""georax.geo.radiometry against NumPy references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from affine import Affine
from jax.test_util import check_grads

from _geo_helpers import assert_rebuilds
from georax import GeoTensor
from georax.core.errors import ConfigError
from georax.geo.radiometry import (
    DarkObjectSubtraction,
    DNToReflectance,
    Normalize,
    PercentileClip,
    ScaleOffset,
    TOAToBOA,
    ToFloat32,
    dark_object_subtraction,
    sun_zenith_correction,
)


def _refl(seed: int = 0, shape=(4, 20, 24), nan_frac=0.1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.random(shape).astype(np.float32) * 0.6
    x[rng.random(shape) < nan_frac] = np.nan
    return x


def test_to_float_and_dn_scaling() -> None:
    dn = np.random.default_rng(0).integers(0, 10000, (3, 5, 5)).astype(np.uint16)
    assert ToFloat32()(dn).dtype == jnp.float32
    np.testing.assert_allclose(DNToReflectance()(dn), dn.astype(np.float32) * 1e-4, rtol=1e-6)
    per_band = ScaleOffset(scale=[1.0, 2.0, 3.0], offset=[0.0, -1.0, 0.5])(dn)
    ref = dn * np.array([1, 2, 3.0])[:, None, None] + np.array([0, -1, 0.5])[:, None, None]
    np.testing.assert_allclose(per_band, ref, rtol=1e-6)


def test_percentile_clip_matches_numpy() -> None:
    x = _refl(1)
    out = np.asarray(PercentileClip(pmin=2, pmax=98)(x))
    lo, hi = np.nanpercentile(x, [2, 98], axis=(-2, -1), keepdims=True)
    np.testing.assert_allclose(out, np.clip(x, lo, hi), rtol=1e-6)
    assert np.isnan(out).sum() == np.isnan(x).sum()
    st = np.asarray(PercentileClip(pmin=5, pmax=95, rescale=True)(x))
    assert np.nanmin(st) == 0.0 and np.nanmax(st) == pytest.approx(1.0)
    whole = np.asarray(PercentileClip(pmin=10, pmax=90, axis=None)(x))
    lo, hi = np.nanpercentile(x, [10, 90])
    np.testing.assert_allclose(whole, np.clip(x, lo, hi), rtol=1e-6)


def test_dark_object_subtraction_matches_numpy() -> None:
    x = _refl(2) + 0.05
    out = np.asarray(DarkObjectSubtraction(percentile=1)(x))
    ref = x - np.nanpercentile(x, 1, axis=(-2, -1), keepdims=True)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-7)
    clipped = np.asarray(DarkObjectSubtraction(percentile=1, clip_negative=True)(x))
    assert np.nanmin(clipped) == 0.0


def test_toa_to_boa_value_and_band() -> None:
    x = _refl(3, nan_frac=0.0)
    out = np.asarray(TOAToBOA(sun_zenith=30.0, path_reflectance=0.01)(x))
    np.testing.assert_allclose(out, (x - 0.01) / np.cos(np.deg2rad(30.0)), rtol=1e-5)
    sza = np.random.default_rng(4).uniform(10, 60, x.shape[1:]).astype(np.float32)
    stacked = np.concatenate([x, sza[None]], axis=0)
    out_b = np.asarray(TOAToBOA(sun_zenith_band=-1)(stacked))
    assert out_b.shape == x.shape
    np.testing.assert_allclose(out_b, x / np.cos(np.deg2rad(sza)), rtol=1e-5)


def test_normalize_fit_and_apply() -> None:
    x = _refl(5)
    op = Normalize.fit(x)
    np.testing.assert_allclose(op.mean, np.nanmean(x, axis=(1, 2)), rtol=1e-5)
    out = np.asarray(op(x))
    np.testing.assert_allclose(np.nanmean(out, axis=(1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(np.nanstd(out, axis=(1, 2)), 1, rtol=1e-4)


def test_geotensor_jit_vmap() -> None:
    x = _refl(6)
    gt = GeoTensor(x, Affine(10, 0, 0, 0, -10, 0), "EPSG:32630", None, ("a", "b", "c", "d"))
    for op in [DNToReflectance(), PercentileClip(), DarkObjectSubtraction(), Normalize.fit(x)]:
        out = jax.jit(op)(gt)
        assert isinstance(out, GeoTensor) and out.band_names == gt.band_names
        np.testing.assert_allclose(out.values, op(x), rtol=1e-6, equal_nan=True)
    batch = np.stack([_refl(s) for s in range(3)])
    v = jax.vmap(DarkObjectSubtraction(percentile=5))(jnp.asarray(batch))
    ref = batch - np.nanpercentile(batch, 5, axis=(-2, -1), keepdims=True)
    np.testing.assert_allclose(v, ref, rtol=1e-5, atol=1e-7)
    out = TOAToBOA(sun_zenith_band=0)(gt)
    assert out.band_names == ("b", "c", "d")


def test_gradients() -> None:
    x = jnp.asarray(_refl(7, shape=(2, 5, 6), nan_frac=0.0))
    check_grads(lambda v: dark_object_subtraction(v, 10.0), (x,), order=1, modes=("rev",), eps=1e-3)
    check_grads(lambda s: sun_zenith_correction(x, s), (jnp.float32(40.0),), order=2, eps=1e-2)
    op = TOAToBOA(sun_zenith=40.0)
    g = jax.grad(lambda o: jnp.sum(o(x)))(op)
    assert jnp.isfinite(g.sun_zenith) and g.sun_zenith != 0
    check_grads(
        lambda v: PercentileClip(pmin=10, pmax=90)(v), (x,), order=1, modes=("rev",), eps=1e-3
    )


def test_bad_config() -> None:
    with pytest.raises(ConfigError, match="pmin"):
        PercentileClip(pmin=90, pmax=10)
    with pytest.raises(ConfigError, match="percentile"):
        DarkObjectSubtraction(percentile=101)
    with pytest.raises(ConfigError, match="exactly one"):
        TOAToBOA()
    with pytest.raises(ConfigError, match="std"):
        Normalize(mean=[0.0, 0.0], std=[1.0, 0.0])


@pytest.mark.parametrize(
    "op",
    [
        ToFloat32(),
        DNToReflectance(),
        ScaleOffset(scale=[1.0, 2.0], offset=0.5),
        PercentileClip(pmin=2, pmax=98, axis=(-2, -1)),
        DarkObjectSubtraction(percentile=2, axis=None),
        TOAToBOA(sun_zenith_band=-2),
        TOAToBOA(sun_zenith=35.0, path_reflectance=0.02),
        Normalize(mean=[0.1, 0.2], std=[0.5, 0.25]),
    ],
)
def test_round_trip(op) -> None:
    assert_rebuilds(op)


def test_per_band_parameter_length_mismatch_is_a_typed_error_naming_the_field() -> None:
    import georax as gx
    from georax.geo import radiometry

    scene = gx.data.sentinel2_l1c(32)  # 7 bands: QA60 still attached
    with pytest.raises(gx.errors.ShapeError, match=r"DNToReflectance\.scale has 6 per-band"):
        radiometry.DNToReflectance(scale=jnp.full(6, 1e-4))(scene)
    with pytest.raises(gx.errors.ShapeError, match="has no band axis"):
        radiometry.Normalize(mean=jnp.zeros(3), std=jnp.ones(3))(jnp.ones((8, 8)))
    out = radiometry.DNToReflectance(scale=jnp.full(7, 1e-4))(scene)  # the right length works
    assert out.shape == (7, 32, 32)


def test_sun_below_the_horizon_is_refused_or_masked() -> None:
    from georax.geo import radiometry

    with pytest.raises(ConfigError, match=r"TOAToBOA\.sun_zenith"):
        radiometry.TOAToBOA(sun_zenith=95.0)
    x = jnp.full((2, 2, 2), 0.2)
    zen = jnp.array([[30.0, 90.0], [95.0, 0.0]])
    out = np.asarray(radiometry.sun_zenith_correction(x, zen))
    assert np.isnan(out[:, 0, 1]).all() and np.isnan(out[:, 1, 0]).all()
    np.testing.assert_allclose(out[:, 1, 1], 0.2)
    np.testing.assert_allclose(out[:, 0, 0], 0.2 / np.cos(np.deg2rad(30.0)), rtol=1e-6)
