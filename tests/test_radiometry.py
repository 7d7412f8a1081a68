"""georax.geo.radiometry against NumPy references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from affine import Affine
from jax.test_util import check_grads

from _geo_helpers import assert_rebuilds, assert_runs_on_chips, assert_stitches_to_scene, chips_of
from georax import GeoTensor
from georax.core.errors import ConfigError, DataError
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


# ------------------------------------------------------------------ nonsense values, hostile input
@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: Normalize(std=float("nan")), "std"),
        (lambda: Normalize(std=[1.0, float("nan")], mean=[0.0, 0.0]), "std"),
        (lambda: Normalize(std=-1.0), "std"),
        (lambda: Normalize(std=float("inf")), "std"),
        (lambda: Normalize(mean=float("nan")), "mean"),
        (lambda: ScaleOffset(scale=float("nan")), "scale"),
        (lambda: DNToReflectance(offset=float("inf")), "offset"),
        (lambda: TOAToBOA(sun_zenith=30.0, path_reflectance=float("nan")), "path_reflectance"),
        (lambda: TOAToBOA(sun_zenith=float("nan")), "sun_zenith"),
        (lambda: TOAToBOA(sun_zenith="noon"), "sun_zenith"),
        (lambda: TOAToBOA(sun_zenith_band=True), "sun_zenith_band"),
        (lambda: PercentileClip(pmin=float("nan")), "pmin"),
        (lambda: PercentileClip(pmax=[2.0, 98.0]), "pmax"),
        (lambda: DarkObjectSubtraction(percentile=float("nan")), "percentile"),
    ],
)
def test_nonsense_parameters_are_refused_naming_the_field(make, field) -> None:
    with pytest.raises(ConfigError) as e:
        make()
    assert e.value.field == field


def test_traced_parameters_are_not_checked_but_still_work() -> None:
    """Leaves may be tracers (vmap over parameters): only known values are checked."""
    x = jnp.asarray(_refl(3, shape=(2, 12, 12), nan_frac=0.0))
    stds = jnp.array([0.5, 2.0])
    out = jax.vmap(lambda s: Normalize(mean=0.1, std=s)(x))(stds)
    np.testing.assert_allclose(out[1], (x - 0.1) / 2.0, rtol=1e-6)
    lows = jnp.array([5.0, 20.0])
    clipped = jax.vmap(lambda p: PercentileClip(pmin=p, pmax=90.0)(x))(lows)
    np.testing.assert_allclose(clipped[1], PercentileClip(pmin=20.0, pmax=90.0)(x), rtol=1e-6)
    assert not np.allclose(clipped[0], clipped[1])


def test_normalize_fit_names_a_band_without_data() -> None:
    x = np.ones((3, 4, 4), np.float32)
    x[1] = np.nan
    with pytest.raises(DataError, match=r"band\(s\) \[1\] have no finite pixel"):
        Normalize.fit(x)


def test_percentile_operators_on_empty_arrays_return_empty_arrays() -> None:
    for shape in [(3, 0, 0), (0, 4, 4), (2, 0, 5)]:
        x = jnp.zeros(shape, jnp.float32)
        for op in (PercentileClip(), DarkObjectSubtraction(), PercentileClip(rescale=True)):
            out = op(x)
            assert out.shape == shape and out.dtype == jnp.float32


@pytest.mark.parametrize(
    "op",
    [
        ToFloat32(),
        ScaleOffset(),
        DNToReflectance(),
        PercentileClip(),
        DarkObjectSubtraction(),
        TOAToBOA(sun_zenith=30.0),
        TOAToBOA(sun_zenith_band=-1),
        Normalize(),
    ],
    ids=lambda o: type(o).__name__,
)
def test_complex_input_is_refused_not_cast(op) -> None:
    with pytest.raises(DataError, match=f"{type(op).__name__}: got complex"):
        op(jnp.ones((3, 4, 4), jnp.complex64))


def test_radiometry_runs_on_chips() -> None:
    import georax as gx

    scene = gx.data.sentinel2_l1c(20)
    for op in (
        ToFloat32(),
        DNToReflectance(scale=jnp.full(7, 1e-4)),
        TOAToBOA(sun_zenith=30.0),
        TOAToBOA(sun_zenith_band=-1),
        Normalize(mean=jnp.full(7, 100.0), std=jnp.full(7, 50.0)),
    ):
        assert_stitches_to_scene(op, scene)
    # percentiles are per chip: each chip is clipped / corrected on its own statistics
    chips = chips_of(ToFloat32()(scene))
    for op in (PercentileClip(), DarkObjectSubtraction(percentile=5.0)):
        assert_runs_on_chips(op, chips)
