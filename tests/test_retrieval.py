"""georax.geo.retrieval against independent NumPy references, the operator contract, gradients
through patching, and the optimiser loop."""

from __future__ import annotations

import pickle
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from affine import Affine
from jax.test_util import check_grads

import georax as gx
import georax.data.plume as gp
from georax.core.budget import BudgetExceededError
from georax.core.sandbox import DEFAULT_LIMITS, SANDBOX_LIMITS
from georax.errors import ConfigError, ShapeError
from georax.geo.retrieval import (
    STATE_BANDS,
    BandRatio,
    BeerLambert,
    MatchedFilter,
    MethaneForward,
    MethaneRetrieval,
    background_spectrum,
    band_ratio_enhancement,
    band_ratio_signal,
    data_misfit,
    fit,
    forward_reflectance,
    initial_state,
    matched_filter,
    optimise,
    smoothness_penalty,
    transmittance,
)
from georax.patch import Boxcar, Hann, Patcher, Rectangular, RegularStride


@pytest.fixture(scope="module")
def scene() -> gp.PlumeScene:
    return gp.plume_scene(48, seed=0)


@pytest.fixture(scope="module")
def s2_scene() -> gp.PlumeScene:
    # a super-emitter: Sentinel-2's two broad bands see only large plumes above the noise
    return gp.plume_scene(64, sensor="sentinel2", seed=2, emission_kg_h=10_000.0)


def _rmse(a: Any, b: Any) -> float:
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))


def _random_state(seed: int, shape: tuple[int, int]) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dx = rng.uniform(0.0, 3000.0, shape)
    albedo = rng.uniform(0.5, 1.5, shape)
    slope = rng.uniform(-0.2, 0.2, shape)
    return np.stack([dx, albedo, slope]).astype(np.float32)


# ---------------------------------------------------------------- NumPy references (independent)
def forward_numpy(state: np.ndarray, bg: np.ndarray, k: np.ndarray, w: np.ndarray, m: float):
    out = np.empty((bg.size, *state.shape[1:]))
    for b in range(bg.size):
        out[b] = state[1] * (1 + state[2] * w[b]) * bg[b] * np.exp(-m * k[b] * state[0])
    return out


def matched_filter_numpy(x: np.ndarray, k: np.ndarray, m: float, shrinkage: float) -> np.ndarray:
    bands = x.shape[0]
    pixels = x.reshape(bands, -1).astype(np.float64)
    mu = pixels.mean(axis=1)
    cov = np.cov(pixels)
    cov = (1 - shrinkage) * cov + shrinkage * np.trace(cov) / bands * np.eye(bands)
    target = -m * k.astype(np.float64) * mu
    u = np.linalg.solve(cov, target)
    return ((pixels - mu[:, None]).T @ u / (target @ u)).reshape(x.shape[1:])


def band_ratio_numpy(x: np.ndarray, k: np.ndarray, m: float, ref: np.ndarray | None = None):
    def normalised(v: np.ndarray) -> np.ndarray:
        b11, b12 = v[0].astype(np.float64), v[1].astype(np.float64)
        c = np.sum(b11 * b12) / np.sum(b12**2)
        return c * b12 / b11

    r = normalised(x) if ref is None else normalised(x) / normalised(ref)
    return -np.log(r) / (m * (float(k[1]) - float(k[0])))


# ---------------------------------------------------------------- forward model
def test_forward_model_and_transmittance_match_numpy(scene: gp.PlumeScene) -> None:
    state = _random_state(1, (9, 11))
    fwd = MethaneForward.from_scene(scene)
    out = fwd(state)
    ref = forward_numpy(state, scene.background, scene.absorption, scene.slope_basis, 2.1547)
    np.testing.assert_allclose(out, ref, rtol=1e-4)
    t = BeerLambert(scene.absorption, scene.air_mass_factor)(state[:1])
    ref_t = np.exp(-scene.air_mass_factor * scene.absorption[:, None, None] * state[0])
    np.testing.assert_allclose(t, ref_t, rtol=1e-5)
    # the band-effective model reproduces the scene up to noise and the small SRF (Jensen) error
    truth = np.concatenate(
        [scene.enhancement.values, scene.albedo.values, scene.slope.values], axis=0
    )
    residual = np.asarray(fwd(truth)) - np.asarray(scene.reflectance.values)
    assert residual.std() == pytest.approx(scene.noise_std, rel=0.05)


def test_from_layout_uses_the_synthetic_spectrum() -> None:
    fwd = MethaneForward.from_layout(gp.SENTINEL2_SWIR, air_mass_factor=2.0)
    np.testing.assert_allclose(fwd.absorption, gp.band_absorption(gp.SENTINEL2_SWIR), rtol=1e-6)
    np.testing.assert_allclose(fwd.background, gp.band_reflectance(gp.SENTINEL2_SWIR), rtol=1e-6)
    assert fwd.band_names == ("B11", "B12") and fwd.n_bands == 2


def test_forward_model_gradients_check_grads() -> None:
    # in float64, with inputs in units of order one (dX in 1000 ppm*m, k in 1e-5 per ppm*m) so
    # that a finite-difference step is small relative to every input
    units = jnp.asarray([1000.0, 1.0, 1.0])[:, None, None]

    def fwd(z: jax.Array, bg: jax.Array, k: jax.Array, w: jax.Array, m: jax.Array) -> jax.Array:
        return forward_reflectance(z * units, bg, k * 1e-5, w, m)

    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        z = jnp.asarray(_random_state(2, (3, 4)), jnp.float64) / units
        bg = jnp.asarray(rng.uniform(0.2, 0.4, 5))
        k = jnp.asarray(rng.uniform(0.1, 4.0, 5))
        w = jnp.linspace(-0.5, 0.5, 5)
        m = jnp.float64(2.2)
        check_grads(jax.jit(fwd), (z, bg, k, w, m), order=2, modes=("fwd", "rev"), eps=1e-4)
        check_grads(
            jax.jit(lambda d, kk, mm: transmittance(d * 1000.0, kk * 1e-5, mm)),
            (z[:1], k, m),
            order=2,
            modes=("fwd", "rev"),
            eps=1e-4,
        )
        x = fwd(z, bg, k, w, m) + 1e-3 * jnp.asarray(rng.standard_normal((5, 3, 4)))
        check_grads(
            jax.jit(lambda v, kk: matched_filter(v, kk * 1e-5, m, 0.01) / 1000.0),
            (x, k),
            order=1,
            eps=1e-6,
        )
        prior = jnp.asarray([100.0, 0.1, 0.0])
        check_grads(
            jax.jit(
                lambda zz: (
                    data_misfit(fwd(zz, bg, k, w, m), x, 0.01)
                    + smoothness_penalty(zz * units, prior)
                )
            ),
            (z,),
            order=2,
            eps=1e-4,
        )
        s2 = jnp.asarray(rng.uniform(0.2, 0.4, (2, 3, 4)))
        check_grads(
            jax.jit(
                lambda v, r: (
                    band_ratio_enhancement(band_ratio_signal(v, 0, 1, r), k[:2] * 1e-5, m) / 1000.0
                )
            ),
            (s2, s2 * 1.01),
            order=1,
            eps=1e-6,
        )


# ---------------------------------------------------------------- classical baselines
@pytest.mark.parametrize("shrinkage", [0.0, 1e-3, 0.3])
def test_matched_filter_matches_numpy(scene: gp.PlumeScene, shrinkage: float) -> None:
    x = np.asarray(scene.reflectance.values)
    op = MatchedFilter(scene.absorption, scene.air_mass_factor, shrinkage)
    out = op(scene.reflectance)
    assert out.band_names == ("enhancement",) and out.shape == (1, 48, 48)
    ref = matched_filter_numpy(x, scene.absorption, scene.air_mass_factor, shrinkage)
    np.testing.assert_allclose(out.values[0], ref, rtol=2e-3, atol=0.5)


def test_matched_filter_is_exact_for_an_additive_linear_signal() -> None:
    # x = background + t * alpha exactly: the filter returns alpha plus background noise that
    # averages out (unbiased), and its error shrinks with the noise
    rng = np.random.default_rng(5)
    bands, n = 12, 64
    k = rng.uniform(1e-6, 4e-5, bands).astype(np.float32)
    mu = rng.uniform(0.2, 0.4, bands)
    alpha = np.zeros((n, n))
    alpha[20:40, 10:30] = 800.0
    background = mu[:, None, None] + 0.002 * rng.standard_normal((bands, n, n))
    target = -2.0 * k * mu
    x = (background + target[:, None, None] * alpha).astype(np.float32)
    est = np.asarray(MatchedFilter(k, 2.0, 0.0)(x))[0]
    # mean and covariance include the signal pixels, so the estimate is offset but not scaled
    assert np.corrcoef(est.ravel(), alpha.ravel())[0, 1] > 0.9
    inside = est[20:40, 10:30].mean() - est[alpha == 0].mean()
    assert inside == pytest.approx(800.0, rel=0.05)


def test_band_ratio_matches_numpy(s2_scene: gp.PlumeScene) -> None:
    x, ref = s2_scene.reflectance, s2_scene.reference
    op = BandRatio(s2_scene.absorption, s2_scene.air_mass_factor)
    k, m = s2_scene.absorption, s2_scene.air_mass_factor
    single = op(x)
    multi = op(x, ref)
    assert multi.band_names == ("enhancement",) and multi.transform == x.transform
    np.testing.assert_allclose(
        single.values[0], band_ratio_numpy(np.asarray(x.values), k, m), rtol=1e-3, atol=1.0
    )
    np.testing.assert_allclose(
        multi.values[0],
        band_ratio_numpy(np.asarray(x.values), k, m, np.asarray(ref.values)),
        rtol=1e-3,
        atol=1.0,
    )
    # swapped band order is honoured
    swapped = BandRatio(k, m, swir1_band=1, swir2_band=0)(x.values[::-1])
    np.testing.assert_allclose(swapped, single.values, rtol=1e-5, atol=1e-3)


def test_reference_pass_is_what_makes_the_band_ratio_work(s2_scene: gp.PlumeScene) -> None:
    # the surface's own B12/B11 ratio varies (spectral slope): single pass is dominated by it,
    # the reference pass cancels it
    op = BandRatio(s2_scene.absorption, s2_scene.air_mass_factor)
    truth = s2_scene.enhancement.values[0]
    single = op(s2_scene.reflectance).values[0]
    multi = op(s2_scene.reflectance, s2_scene.reference).values[0]
    assert _rmse(multi, truth) < 0.3 * _rmse(single, truth)
    # the plume core is found at its strength (within the broad-band saturation bias)
    core = np.asarray(truth) > np.percentile(truth, 95)
    assert float(np.mean(multi[core])) == pytest.approx(float(np.mean(truth[core])), rel=0.25)


# ---------------------------------------------------------------- gradients through patching
def _unpatched_objective(op: MethaneRetrieval, z: jax.Array, observed: jax.Array) -> jax.Array:
    state = op.unscaled(z)
    return data_misfit(op.forward(state), observed, op.noise_std) + smoothness_penalty(
        state, op.prior_std
    )


@pytest.mark.parametrize(
    "patcher",
    [
        Patcher(Rectangular(16), RegularStride(16), Boxcar()),  # proved equal: boxcar, stride=chip
        Patcher(Rectangular(16), RegularStride(11), Hann(), margin=3),  # overlap-add, margins
    ],
    ids=["boxcar-stride=chip", "hann-overlap"],
)
def test_gradient_through_patch_and_stitch_equals_unpatched(
    scene: gp.PlumeScene, patcher: Patcher
) -> None:
    op = MethaneRetrieval(MethaneForward.from_scene(scene), patcher, noise_std=scene.noise_std)
    observed = jnp.asarray(scene.reflectance.values)
    z = op.start(observed) + 0.3 * jax.random.normal(jax.random.key(0), (3, 48, 48))
    l1, g1 = jax.jit(jax.value_and_grad(op.objective))(z, observed)
    l0, g0 = jax.jit(jax.value_and_grad(lambda v: _unpatched_objective(op, v, observed)))(z)
    assert float(l1) == pytest.approx(float(l0), rel=1e-5)
    scale = float(jnp.abs(g0).max())
    np.testing.assert_allclose(g1, g0, rtol=1e-4, atol=1e-5 * scale)
    assert scale > 0


# ---------------------------------------------------------------- retrieval
def test_retrieval_converges_and_beats_the_matched_filter(scene: gp.PlumeScene) -> None:
    x = scene.reflectance
    fwd = MethaneForward.from_scene(scene, background=background_spectrum(x.values))
    op = MethaneRetrieval(fwd, Patcher.regular(16), noise_std=scene.noise_std, steps=150)
    result = op.fit(x, chunk=25)
    losses = result.losses
    assert losses.shape == (151,) and np.all(np.isfinite(losses))
    assert losses[-1] < 0.95 * losses[0]
    assert abs(losses[-1] - losses[-26]) < 1e-4 * losses[-1]  # flat over the last chunk
    state = result.state
    assert isinstance(state, gx.GeoTensor) and state.band_names == STATE_BANDS
    assert state.transform == x.transform and state.crs == x.crs
    truth = scene.enhancement.values[0]
    mf = MatchedFilter(scene.absorption, scene.air_mass_factor)(x).values[0]
    assert _rmse(state.values[0], truth) < 0.8 * _rmse(mf, truth)
    assert _rmse(state.values[1], scene.albedo.values[0]) < 0.02
    # the operator call (one compiled scan) takes the same steps from the same start
    called = op(x)
    np.testing.assert_allclose(called.values, state.values, rtol=1e-3, atol=1.0)


def test_initial_state_recovers_albedo_and_slope_without_methane() -> None:
    bg = np.linspace(0.3, 0.25, 8).astype(np.float32)
    w = np.linspace(-0.5, 0.5, 8).astype(np.float32)
    state = _random_state(3, (5, 6))
    state[0] = 0.0
    x = forward_numpy(state, bg, np.zeros(8), w, 2.0).astype(np.float32)
    np.testing.assert_allclose(initial_state(x, bg, w), state, rtol=1e-3, atol=1e-4)


def test_background_spectrum_is_the_band_median() -> None:
    x = np.random.default_rng(0).random((4, 9, 7)).astype(np.float32)
    np.testing.assert_allclose(background_spectrum(x), np.median(x, axis=(1, 2)), rtol=1e-6)


# ---------------------------------------------------------------- the optimiser loop
def _quadratic(p: jax.Array, data: jax.Array) -> jax.Array:
    return 0.5 * jnp.sum((p - data) ** 2 * jnp.arange(1.0, p.size + 1.0))


def test_fit_stops_at_the_target_loss_and_when_stalled() -> None:
    target = jnp.asarray([1.0, -2.0, 3.0])
    res = fit(
        _quadratic, jnp.zeros(3), target, optax.sgd(0.05), steps=1000, chunk=10, target_loss=1e-3
    )
    taken = res.losses.size - 1
    assert taken % 10 == 0 and taken < 1000
    assert res.losses[:-1].min() <= 1e-3 < res.losses[: taken - 10].min()
    assert res.losses[-1] <= res.losses[-2]
    stalled = fit(
        _quadratic, jnp.zeros(3), target, optax.sgd(0.05), steps=5000, chunk=50, rtol=1e-6
    )
    assert stalled.losses.size - 1 < 5000
    np.testing.assert_allclose(stalled.params, target, atol=1e-3)
    # a short last chunk runs exactly the remaining steps
    short = fit(_quadratic, jnp.zeros(3), target, optax.sgd(0.05), steps=23, chunk=10)
    assert short.losses.size == 24 and np.all(np.isfinite(short.losses))
    full = optimise(_quadratic, jnp.zeros(3), target, optax.sgd(0.05), 23)
    np.testing.assert_allclose(short.params, full[0], rtol=1e-6)
    np.testing.assert_allclose(short.losses[:-1], full[2], rtol=1e-6)


def test_fit_accepts_optimisers_that_need_the_value_function() -> None:
    target = jnp.asarray([1.0, -2.0, 3.0, 0.5])
    res = fit(_quadratic, jnp.zeros(4), target, optax.lbfgs(), steps=20, chunk=20)
    np.testing.assert_allclose(res.params, target, atol=1e-4)


def test_optimise_is_traceable_under_jit_and_vmap() -> None:
    targets = jnp.asarray([[1.0, 2.0], [-3.0, 0.5]])
    run = jax.jit(
        jax.vmap(lambda t: optimise(_quadratic, jnp.zeros(2), t, optax.adam(0.1), 300)[0])
    )
    np.testing.assert_allclose(run(targets), targets, atol=1e-2)


def test_fit_refuses_bad_step_counts() -> None:
    with pytest.raises(ConfigError, match="steps"):
        fit(_quadratic, jnp.zeros(2), jnp.ones(2), optax.sgd(0.1), steps=0)
    with pytest.raises(ConfigError, match="chunk"):
        fit(_quadratic, jnp.zeros(2), jnp.ones(2), optax.sgd(0.1), steps=5, chunk=0)


# ---------------------------------------------------------------- the operator contract
_TRANSFORM = Affine(30.0, 0.0, 600_000.0, 0.0, -30.0, 3_560_000.0)

# One compiled program per operator structure and input shape, shared by the tests below (a
# reloaded or unpickled operator has the same structure, so it reuses the compiled code).
_jit = eqx.filter_jit(lambda op, x: op(x))


def _geo(v: Any) -> gx.GeoTensor:
    return gx.GeoTensor(jnp.asarray(v, jnp.float32), _TRANSFORM, "EPSG:32613", None, None)


def _cases() -> list[tuple[str, Any, Any]]:
    hs = gp.plume_scene(16, seed=7)
    s2 = gp.plume_scene(16, sensor="sentinel2", seed=7)
    fwd = MethaneForward.from_scene(hs)
    return [
        ("BeerLambert", BeerLambert(hs.absorption, hs.air_mass_factor), hs.enhancement.values),
        ("MethaneForward", fwd, _random_state(4, (16, 16))),
        ("MatchedFilter", MatchedFilter(hs.absorption, hs.air_mass_factor), hs.reflectance.values),
        ("BandRatio", BandRatio(s2.absorption, s2.air_mass_factor), s2.reflectance.values),
        (
            "MethaneRetrieval",
            # enough steps to converge: Adam's transient amplifies round-off between programs
            MethaneRetrieval(fwd, Patcher.regular(8), noise_std=hs.noise_std, steps=200),
            hs.reflectance.values,
        ),
    ]


@pytest.fixture(scope="module", params=range(5), ids=[c[0] for c in _cases()])
def case(request: pytest.FixtureRequest) -> tuple[str, Any, Any]:
    return _cases()[request.param]


_TOLERANCE = {  # float32 round-off differs between programs; in output units
    "BeerLambert": (1e-5, 1e-6),  # transmittance
    "MethaneForward": (1e-5, 1e-6),  # reflectance
    "MatchedFilter": (1e-3, 0.2),  # ppm*m, via a float32 covariance solve
    "BandRatio": (1e-3, 0.2),  # ppm*m
    "MethaneRetrieval": (2e-3, 1.0),  # ppm*m, converged state
}


def _close(a: Any, b: Any, name: str) -> None:
    rtol, atol = _TOLERANCE[name]
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


def test_eager_equals_jit_and_georeferencing_is_kept(case: tuple[str, Any, Any]) -> None:
    name, op, x = case
    g = _geo(x)
    eager, jitted = op(g), _jit(op, g)
    assert isinstance(eager, gx.GeoTensor) and isinstance(jitted, gx.GeoTensor)
    assert (eager.transform, eager.crs) == (_TRANSFORM, "EPSG:32613")
    _close(eager.values, jitted.values, name)
    assert np.all(np.isfinite(np.asarray(eager.values)))


def test_vmap_equals_a_loop(case: tuple[str, Any, Any]) -> None:
    name, op, x = case
    batch = jnp.stack([jnp.asarray(x), jnp.asarray(x)[..., ::-1, :]])
    vmapped = eqx.filter_jit(lambda o, b: jax.vmap(o)(b))(op, batch)
    looped = jnp.stack([_jit(op, b) for b in batch])
    _close(vmapped, looped, name)


def test_yaml_and_pickle_round_trips(case: tuple[str, Any, Any]) -> None:
    name, op, x = case
    text = gx.dumps_yaml(op)
    loaded = gx.loads_yaml(text, allowed=gx.registry.public_operators())
    assert type(loaded) is type(op)
    assert gx.config_hash(loaded) == gx.config_hash(op)
    assert bool(eqx.tree_equal(type(op)(**op.config_fields()), op))
    out = _jit(op, x)
    _close(_jit(loaded, x), out, name)
    again = pickle.loads(pickle.dumps(op))
    _close(_jit(again, x), out, name)


def test_gradients_with_respect_to_leaves_are_finite(case: tuple[str, Any, Any]) -> None:
    name, op, x = case
    grads = eqx.filter_jit(eqx.filter_grad(lambda o: jnp.sum(o(x) ** 2)))(op)
    leaves = [g for g in jax.tree.leaves(grads) if g is not None]
    assert leaves and all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert any(float(jnp.abs(g).max()) > 0 for g in leaves), name


def test_batched_retrieval_equals_one_scene_at_a_time() -> None:
    hs = gp.plume_scene(16, seed=8)
    op = MethaneRetrieval(
        MethaneForward.from_scene(hs), Patcher.regular(8), noise_std=hs.noise_std, steps=200
    )
    x = jnp.asarray(hs.reflectance.values)
    batch = jnp.stack([x, x[..., ::-1]])
    together = _jit(op, batch)
    np.testing.assert_allclose(together[1], _jit(op, batch[1]), rtol=2e-3, atol=1.0)


# ---------------------------------------------------------------- errors and precheck
def test_bad_configs_are_config_errors(scene: gp.PlumeScene) -> None:
    k, bg = scene.absorption, scene.background
    with pytest.raises(ConfigError, match="slope_basis"):
        MethaneForward(bg, k, np.zeros(5), 2.0)
    with pytest.raises(ConfigError, match="air_mass_factor"):
        BeerLambert(k, -1.0)
    with pytest.raises(ConfigError, match="shrinkage"):
        MatchedFilter(k, 2.0, 1.5)
    with pytest.raises(ConfigError, match="absorption"):
        BandRatio(k, 2.0)
    with pytest.raises(ConfigError, match="absorption"):
        BandRatio([1e-6, 1e-6], 2.0)
    with pytest.raises(ConfigError, match="swir2_band"):
        BandRatio([1e-6, 5e-6], 2.0, swir1_band=1, swir2_band=1)
    fwd = MethaneForward.from_scene(scene)
    with pytest.raises(ConfigError, match="prior_std"):
        MethaneRetrieval(fwd, prior_std=(100.0, 0.0))
    with pytest.raises(ConfigError, match="prior_std"):
        MethaneRetrieval(fwd, prior_std=(100.0, -1.0, 0.0))
    with pytest.raises(ConfigError, match="noise_std"):
        MethaneRetrieval(fwd, noise_std=0.0)
    with pytest.raises(ConfigError, match="steps"):
        MethaneRetrieval(fwd, steps=0)
    with pytest.raises(ConfigError, match="state_scale"):
        MethaneRetrieval(fwd, state_scale=(1.0, 0.0, 1.0))


def test_wrong_inputs_are_shape_errors(scene: gp.PlumeScene, s2_scene: gp.PlumeScene) -> None:
    x = scene.reflectance
    with pytest.raises(ShapeError, match="MatchedFilter expects reflectance with 5 bands"):
        MatchedFilter(scene.absorption[:5], 2.0)(x)
    with pytest.raises(ShapeError, match="MethaneForward expects a state"):
        MethaneForward.from_scene(scene)(x)
    with pytest.raises(ShapeError, match="BeerLambert expects an enhancement"):
        BeerLambert(scene.absorption, 2.0)(x)
    fwd = MethaneForward.from_scene(scene)
    with pytest.raises(ShapeError, match="MethaneRetrieval expects reflectance"):
        MethaneRetrieval(fwd)(x[:10])
    with pytest.raises(ShapeError, match="noise_std has 5 per-band values"):
        MethaneRetrieval(fwd, noise_std=np.full(5, 0.002)).fit(x)
    op = BandRatio(s2_scene.absorption, 2.0)
    with pytest.raises(ShapeError, match="band index 2"):
        BandRatio(s2_scene.absorption, 2.0, swir2_band=2)(s2_scene.reflectance)
    with pytest.raises(ShapeError, match="same pixels"):
        op(s2_scene.reflectance, s2_scene.reference[:, :10, :10])
    shifted = s2_scene.reference.replace(transform=_TRANSFORM)
    with pytest.raises(ShapeError, match="another grid"):
        op(s2_scene.reflectance, shifted)


def test_precheck_refuses_runaway_step_counts(scene: gp.PlumeScene) -> None:
    fwd = MethaneForward.from_scene(scene)
    op = MethaneRetrieval(fwd, steps=200)
    assert op.precheck((36, 512, 512), SANDBOX_LIMITS) == (3, 512, 512)
    assert op.precheck((4, 36, 64, 64), SANDBOX_LIMITS) == (4, 3, 64, 64)
    runaway = MethaneRetrieval(fwd, steps=SANDBOX_LIMITS.max_trace_steps + 1)
    with pytest.raises(BudgetExceededError, match=r"MethaneRetrieval\.steps"):
        runaway.precheck((36, 64, 64), SANDBOX_LIMITS)
    assert runaway.precheck((36, 64, 64), DEFAULT_LIMITS) == (3, 64, 64)
    with pytest.raises(ShapeError):
        op.precheck((64, 64), SANDBOX_LIMITS)
