"""georax.learn.uncertainty: every score against a NumPy reference written from its definition,
the sample producers against explicit Python loops, and the Operator contract (registered, YAML
and pickle round-trips, eager == jit, vmap == loop, stochastic ones need a key)."""

from __future__ import annotations

import pickle
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import config_test_ops as tops
import georax as gx
from georax.core import registry
from georax.core.config import from_config, to_config
from georax.errors import ConfigError, DataError, MissingKeyError, ShapeError
from georax.learn import uncertainty as u

KEY = jax.random.key(0)


def probs_stack(s: int = 5, c: int = 4, hw: tuple[int, ...] = (3, 2), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(s, c, *hw)) * 2.0
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


# --------------------------------------------------------------------------------------
# NumPy references, written from the definitions (float64, explicit loops where clearer)
# --------------------------------------------------------------------------------------
def np_entropy(p: np.ndarray, axis: int) -> np.ndarray:
    p = p.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return -terms.sum(axis=axis)


def np_predictive_entropy(probs: np.ndarray) -> np.ndarray:
    return np_entropy(probs.astype(np.float64).mean(axis=0), axis=0)


def np_expected_entropy(probs: np.ndarray) -> np.ndarray:
    return np.mean([np_entropy(p, axis=0) for p in probs], axis=0)


def np_margin(probs: np.ndarray) -> np.ndarray:
    mean = probs.astype(np.float64).mean(axis=0)
    ordered = np.sort(mean, axis=0)[::-1]
    return 1.0 - (ordered[0] - ordered[1])


def test_hand_computed_values() -> None:
    # two confident samples that disagree: total ln 2, aleatoric 0, epistemic ln 2, margin 1
    disagree = jnp.asarray([[[1.0], [0.0]], [[0.0], [1.0]]])  # (S=2, C=2, 1)
    np.testing.assert_allclose(u.predictive_entropy(disagree), [np.log(2)], rtol=1e-6)
    np.testing.assert_allclose(u.expected_entropy(disagree), [0.0], atol=1e-7)
    np.testing.assert_allclose(u.bald(disagree), [np.log(2)], rtol=1e-6)
    np.testing.assert_allclose(u.margin(disagree), [1.0], rtol=1e-6)
    # identical uncertain samples: all the uncertainty is aleatoric, BALD is 0
    same = jnp.asarray([[[0.5], [0.5]]] * 3)
    np.testing.assert_allclose(u.bald(same), [0.0], atol=1e-7)
    np.testing.assert_allclose(u.expected_entropy(same), [np.log(2)], rtol=1e-6)
    # margin of a (0.7, 0.2, 0.1) prediction: 1 - (0.7 - 0.2)
    np.testing.assert_allclose(u.margin(jnp.asarray([[[0.7], [0.2], [0.1]]])), [0.5], rtol=1e-6)
    # std over samples (ddof 0) of 1, 3: 1
    np.testing.assert_allclose(u.sample_std(jnp.asarray([[1.0], [3.0]])), [1.0])


@pytest.mark.parametrize(
    ("fn", "ref"),
    [
        (u.predictive_entropy, np_predictive_entropy),
        (u.expected_entropy, np_expected_entropy),
        (u.bald, lambda p: np_predictive_entropy(p) - np_expected_entropy(p)),
        (u.margin, np_margin),
        (u.sample_std, lambda p: p.astype(np.float64).std(axis=0)),
    ],
)
def test_scores_match_numpy_reference(fn: Any, ref: Any) -> None:
    for seed in range(3):
        p = probs_stack(seed=seed)
        np.testing.assert_allclose(np.asarray(fn(jnp.asarray(p))), ref(p), rtol=1e-5, atol=1e-6)


def test_entropy_treats_zero_probability_as_zero_contribution() -> None:
    p = jnp.asarray([[1.0, 0.0], [0.5, 0.5]]).T  # classes on axis 0
    np.testing.assert_allclose(u.entropy(p, axis=0), [0.0, np.log(2)], rtol=1e-6)
    assert np.isfinite(np.asarray(jax.grad(lambda q: u.entropy(q, 0).sum())(p + 1e-3))).all()


def test_to_probabilities_softmax_sigmoid_identity() -> None:
    z = jnp.asarray(np.random.default_rng(1).normal(size=(3, 4, 2, 2)), jnp.float32)
    e = np.exp(np.asarray(z, np.float64))
    np.testing.assert_allclose(
        u.to_probabilities(z, "softmax"), e / e.sum(axis=1, keepdims=True), rtol=1e-5
    )
    p = 1 / (1 + np.exp(-np.asarray(z[:, :1], np.float64)))
    np.testing.assert_allclose(
        u.to_probabilities(z[:, :1], "sigmoid"), np.concatenate([1 - p, p], axis=1), rtol=1e-5
    )
    np.testing.assert_array_equal(u.to_probabilities(z, "identity"), z)
    with pytest.raises(ShapeError, match="one-channel"):
        u.to_probabilities(z, "sigmoid")


def test_shape_errors_name_the_function() -> None:
    with pytest.raises(ShapeError, match=r"predictive_entropy.*sample stack"):
        u.predictive_entropy(jnp.ones(3))
    with pytest.raises(ShapeError, match=r"margin.*2 classes"):
        u.margin(jnp.ones((2, 1, 3)))
    with pytest.raises(ShapeError, match=r"BALD.*sample stack"):
        u.BALD()(jnp.ones(4))


# --------------------------------------------------------------------------------------
# Producers: MC dropout and ensembles against explicit loops
# --------------------------------------------------------------------------------------
class DropNet(eqx.Module):
    """conv -> relu -> dropout -> 1x1 conv: a small MC-dropout segmentation net."""

    conv: eqx.nn.Conv2d
    drop: eqx.nn.Dropout
    head: eqx.nn.Conv2d

    def __init__(self, key: jax.Array, bands: int = 3, classes: int = 4) -> None:
        k1, k2 = jax.random.split(key)
        self.conv = eqx.nn.Conv2d(bands, 8, 3, padding=1, key=k1)
        self.drop = eqx.nn.Dropout(0.5)
        self.head = eqx.nn.Conv2d(8, classes, 1, key=k2)

    def __call__(self, x: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
        return self.head(self.drop(jax.nn.relu(self.conv(x)), key=key))


X = jnp.asarray(np.random.default_rng(2).normal(size=(3, 6, 5)), jnp.float32)


def test_mc_dropout_equals_a_loop_over_split_keys() -> None:
    net = DropNet(KEY)
    op = u.MCDropout(net, samples=6)
    out = op(X, key=jax.random.key(3))
    keys = jax.random.split(jax.random.key(3), 6)
    loop = np.stack([np.asarray(jax.nn.softmax(net(X, key=k), axis=0)) for k in keys])
    np.testing.assert_allclose(out, loop, rtol=1e-5, atol=1e-6)
    assert out.shape == (6, 4, 6, 5)
    # dropout is active: the samples differ; the same key gives the same samples
    assert float(jnp.abs(out[0] - out[1]).max()) > 1e-3
    np.testing.assert_array_equal(out, op(X, key=jax.random.key(3)))
    assert not np.allclose(out, op(X, key=jax.random.key(4)))


def test_mc_dropout_requires_a_key_and_valid_config() -> None:
    op = u.MCDropout(DropNet(KEY), samples=2)
    with pytest.raises(MissingKeyError, match="MCDropout"):
        op(X)
    with pytest.raises(ConfigError, match=r"MCDropout\.samples"):
        u.MCDropout(DropNet(KEY), samples=0)
    with pytest.raises(ConfigError, match=r"MCDropout\.activation"):
        u.MCDropout(DropNet(KEY), activation="relu")


def test_stacked_ensemble_equals_its_members() -> None:
    keys = jax.random.split(KEY, 4)
    members = u.stack_ensemble(lambda k: eqx.nn.Conv2d(3, 2, 3, padding=1, key=k), keys)
    assert u.ensemble_size(members) == 4
    singles = [eqx.nn.Conv2d(3, 2, 3, padding=1, key=k) for k in keys]
    np.testing.assert_allclose(members.weight[2], singles[2].weight)
    raw = u.ensemble_samples(members, lambda m, x: m(x), X)
    np.testing.assert_allclose(raw, np.stack([np.asarray(m(X)) for m in singles]), rtol=1e-5)
    op = u.Ensemble(members)
    assert op.size == 4
    e = np.exp(np.asarray(raw, np.float64))
    np.testing.assert_allclose(op(X), e / e.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-7)


def test_ensemble_of_dropout_members_gets_one_key_per_member() -> None:
    members = u.stack_ensemble(DropNet, jax.random.split(KEY, 3))
    op = u.Ensemble(gx.ModelOp(members, pass_key=True))  # members that take a key
    out = op(X, key=jax.random.key(9))
    ks = jax.random.split(jax.random.key(9), 3)
    for i in range(3):
        member = jax.tree.map(lambda leaf, i=i: leaf[i] if eqx.is_array(leaf) else leaf, members)
        ref = jax.nn.softmax(member(X, key=ks[i]), axis=0)
        np.testing.assert_allclose(out[i], ref, rtol=1e-5, atol=1e-6)


def test_ensemble_refuses_unstacked_members() -> None:
    class Two(eqx.Module):
        a: jax.Array
        b: jax.Array

        def __call__(self, x: jax.Array) -> jax.Array:
            return x

    with pytest.raises(ConfigError, match=r"Ensemble\.members.*stacked"):
        u.Ensemble(Two(jnp.ones((3, 2)), jnp.ones((4,))))


def test_predictive_is_one_sample_of_a_deterministic_model() -> None:
    model = tops.TinyMLP.init((3, 5, 4), KEY)
    out = u.Predictive(model)(X)
    z = np.asarray(model(X), np.float64)
    e = np.exp(z - z.max(axis=0))
    np.testing.assert_allclose(out[0], e / e.sum(axis=0), rtol=1e-5, atol=1e-7)
    assert out.shape == (1, 4, 6, 5)
    np.testing.assert_allclose(u.BALD()(out), 0.0, atol=1e-6)


# --------------------------------------------------------------------------------------
# MeanScalar (the seeds' pa.MeanScalar(field="sigma"))
# --------------------------------------------------------------------------------------
class UQ(eqx.Module):
    """The seeds' stand-in model with ``predict_with_uncertainty`` -> {"pred", "sigma"}."""

    def predict_with_uncertainty(self, arr: jax.Array) -> dict[str, jax.Array]:
        return {"pred": jnp.mean(arr, axis=0), "sigma": jnp.std(arr, axis=0)}


class Out(NamedTuple):
    pred: jax.Array
    sigma: jax.Array


def test_mean_scalar_reduces_a_field_as_in_the_seed() -> None:
    pipe = gx.Sequential(
        [gx.ModelOp(UQ(), method="predict_with_uncertainty"), u.MeanScalar(field="sigma")]
    )
    x = np.asarray(X)
    assert float(pipe(X)) == pytest.approx(float(x.std(axis=0).mean()), rel=1e-5)
    assert float(u.MeanScalar(field="sigma")(Out(X[0], X[1]))) == pytest.approx(x[1].mean())
    geo = gx.data.sentinel2_l1c(16, seed=0)
    score = u.MeanScalar()(geo)
    assert score.shape == () and score.dtype == jnp.float32
    assert float(score) == pytest.approx(np.asarray(geo.values, np.float64).mean(), rel=1e-5)


def test_mean_scalar_ignore_nan_and_missing_field() -> None:
    v = jnp.asarray([1.0, jnp.nan, 3.0])
    assert np.isnan(float(u.MeanScalar()(v)))
    assert float(u.MeanScalar(ignore_nan=True)(v)) == 2.0
    with pytest.raises(DataError, match=r"MeanScalar\.field='sigma'.*keys: \['pred'\]"):
        u.MeanScalar(field="sigma")({"pred": v})
    with pytest.raises(DataError, match=r"MeanScalar\.field='sigma'"):
        u.MeanScalar(field="sigma")(v)


# --------------------------------------------------------------------------------------
# The Operator contract
# --------------------------------------------------------------------------------------
SCORES = [u.PredictiveEntropy, u.ExpectedEntropy, u.BALD, u.Margin, u.SampleStd]


def stochastic_model() -> gx.Sequential:
    """A registered, stochastic model: TinyMLP then Gaussian noise (round-trips through YAML)."""
    return gx.Sequential([tops.TinyMLP.init((3, 5, 4), KEY), tops.Noise(sigma=0.5)])


def all_operators() -> list[gx.Operator]:
    return [
        *(cls() for cls in SCORES),
        u.MeanScalar(field=None, ignore_nan=True),
        u.Predictive(tops.TinyMLP.init((3, 5, 4), KEY)),
        u.MCDropout(stochastic_model(), samples=3),
        # a registered member class whose leaf annotation admits the stacked member axis
        u.Ensemble(
            u.stack_ensemble(
                lambda k: tops.Kernel(weights=jax.random.uniform(k, (4,))),
                jax.random.split(KEY, 3),
            )
        ),
    ]


def run(op: gx.Operator, x: Any) -> Any:
    if isinstance(op, u.SampleScore):
        x = jax.nn.softmax(jnp.stack([x[:2], x[1:]]), axis=1)  # a (2, 2, H, W) stack
    return op(x, key=jax.random.key(5)) if type(op).requires_key else op(x)


def test_every_operator_is_registered_under_its_path() -> None:
    for op in all_operators():
        assert registry.lookup(registry.import_path(type(op))) is type(op)
    assert not registry.is_abstract(u.MCDropout)
    assert registry.is_abstract(u.PredictiveSamples) and registry.is_abstract(u.SampleScore)


@pytest.mark.parametrize("op", all_operators(), ids=lambda op: type(op).__name__)
def test_yaml_and_pickle_round_trips_give_the_same_outputs(op: gx.Operator) -> None:
    via_yaml = gx.loads_yaml(gx.dumps_yaml(op))
    assert gx.config_hash(via_yaml) == gx.config_hash(op)
    via_pickle = pickle.loads(pickle.dumps(op))
    want = np.asarray(run(op, X))
    np.testing.assert_allclose(np.asarray(run(via_yaml, X)), want, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(run(via_pickle, X)), want)
    assert to_config(from_config(to_config(op))) == to_config(op)


@pytest.mark.parametrize("op", all_operators(), ids=lambda op: type(op).__name__)
def test_eager_equals_jit_and_vmap_equals_loop(op: gx.Operator) -> None:
    want = np.asarray(run(op, X))
    np.testing.assert_allclose(np.asarray(jax.jit(run)(op, X)), want, rtol=1e-5, atol=1e-6)
    xs = jnp.stack([X, 2 * X, X - 1])
    batched = np.asarray(jax.vmap(lambda x: run(op, x))(xs))
    for i in range(3):
        np.testing.assert_allclose(batched[i], np.asarray(run(op, xs[i])), rtol=1e-5, atol=1e-6)


def test_scores_keep_georeferencing() -> None:
    geo = gx.data.sentinel2_l1c(16, seed=0)
    chip = geo.replace(values=jnp.asarray(geo.values[:3], jnp.float32) * 1e-4)
    pipe = gx.Sequential([u.MCDropout(stochastic_model(), samples=2), u.BALD()])
    out = pipe(chip, key=KEY)
    assert isinstance(out, gx.GeoTensor) and out.values.shape == (16, 16)
    assert out.transform == geo.transform and out.crs == geo.crs


def test_precheck_bounds_the_shapes() -> None:
    from georax.core.sandbox import SANDBOX_LIMITS

    pipe = gx.Sequential([u.MCDropout(stochastic_model(), samples=7), u.BALD(), u.MeanScalar()])
    assert pipe.precheck((3, 32, 32), SANDBOX_LIMITS) == ()
    assert u.MCDropout(stochastic_model(), samples=7).precheck((3, 8, 8), SANDBOX_LIMITS) == (
        7,
        3,
        8,
        8,
    )
    assert u.SampleStd().precheck((7, 4, 8, 8), SANDBOX_LIMITS) == (4, 8, 8)
    with pytest.raises(gx.errors.BudgetExceededError, match=r"MCDropout\.samples"):
        u.MCDropout(stochastic_model(), samples=10**7).precheck((3, 8, 8), SANDBOX_LIMITS)


def test_precheck_bound_counts_the_two_classes_a_sigmoid_makes() -> None:
    from georax.core.sandbox import SANDBOX_LIMITS
    from georax.geo.indices import NDVI

    x = jnp.asarray(np.random.default_rng(4).uniform(0.01, 0.5, size=(6, 8, 8)), jnp.float32)
    ndvi = NDVI()
    assert ndvi.precheck((6, 8, 8), SANDBOX_LIMITS) == (1, 8, 8)  # one logit channel
    for op, key in (
        (u.Predictive(ndvi, activation="sigmoid"), None),
        (u.MCDropout(ndvi, samples=3, activation="sigmoid"), jax.random.key(0)),
    ):
        out = op(x) if key is None else op(x, key=key)
        bound = op.precheck((6, 8, 8), SANDBOX_LIMITS)
        assert out.shape[1] == 2 and bound == (out.shape[0], 2, 8, 8)
