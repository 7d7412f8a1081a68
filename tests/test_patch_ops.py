"""Patch operators: georeferencing, per-chip outputs, config round-trip, errors, gradients."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from affine import Affine

import georax as gx
from georax.core.config import from_config, to_config
from georax.errors import ConfigError, ShapeError
from georax.patch import (
    ApplyToChips,
    Boxcar,
    ByIndex,
    Chips,
    ExplicitPositions,
    Gaussian,
    GridSampler,
    Hann,
    Max,
    Mean,
    OverlapAdd,
    Patcher,
    Patchwise,
    RandomPositions,
    Rectangular,
    RegularStride,
    Stitch,
    Triangular,
    Tukey,
)
from georax.tensor import apply_transform, window_transform

TRANSFORM = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 4_200_000.0)


def _scene(bands: int = 3, h: int = 40, w: int = 36) -> gx.GeoTensor:
    v = jax.random.normal(jax.random.key(0), (bands, h, w))
    names = tuple(f"b{i}" for i in range(bands))
    return gx.GeoTensor(v, TRANSFORM, "EPSG:32630", -9999.0, names)


def test_geotensor_in_geotensor_out_with_input_georeferencing() -> None:
    g = _scene()
    p = Patcher.regular(16, 12, window="hann", margin=2)
    for op in (
        Patchwise(p, gx.Lambda(lambda c: c * 3), 4),
        gx.Sequential([GridSampler(p), ApplyToChips(gx.Lambda(lambda c: c * 3), 4), Stitch()]),
    ):
        out = jax.jit(op)(g)
        assert isinstance(out, gx.GeoTensor)
        assert (out.transform, out.crs, out.fill_value) == (TRANSFORM, "EPSG:32630", -9999.0)
        assert out.band_names == g.band_names
        np.testing.assert_allclose(out.values, g.values * 3, atol=1e-5)
    # band count changes (4 -> 1): names dropped, georeferencing kept
    one = Patchwise(p, gx.Lambda(lambda c: c.sum(0, keepdims=True)), 4)(g)
    assert one.shape == (1, 40, 36) and one.band_names is None and one.transform == TRANSFORM
    np.testing.assert_allclose(one.values, g.values.sum(0, keepdims=True), atol=1e-5)
    # plain arrays stay plain arrays
    assert isinstance(Patchwise(p, gx.Identity(), 4)(g.values), jax.Array)


def test_chip_positions_and_transforms() -> None:
    g = _scene()
    p = Patcher(Rectangular((16, 12)), RegularStride((10, 8)), margin=(3, 2))
    chips = jax.jit(GridSampler(p))(g)
    assert isinstance(chips, Chips)
    scene_pos = np.asarray(chips.scene_positions())
    assert scene_pos[:, 0].min() == -3 and scene_pos[:, 1].min() == -2
    coeffs = np.asarray(jax.jit(lambda c: c.transforms())(chips))
    for i in range(len(chips)):
        r, c = scene_pos[i]
        expect = window_transform(TRANSFORM, int(c), int(r))
        assert chips.chip_transform(i) == expect
        np.testing.assert_allclose(coeffs[i], tuple(expect)[:6], rtol=1e-6)
    # a chip fully inside the scene holds exactly the scene pixels under its transform
    inside = next(
        i
        for i in range(len(chips))
        if (scene_pos[i] >= 0).all() and scene_pos[i][0] + 16 <= 40 and scene_pos[i][1] + 12 <= 36
    )
    r, c = scene_pos[inside]
    gt = chips.geotensor(inside)
    np.testing.assert_array_equal(gt.values, g.values[:, r : r + 16, c : c + 12])
    assert apply_transform(gt.transform, 0, 0) == apply_transform(TRANSFORM, int(c), int(r))
    assert gt.crs == "EPSG:32630" and gt.band_names == g.band_names


def test_by_index_returns_per_chip_outputs_with_positions() -> None:
    g = _scene(2, 32, 32)
    p = Patcher(Rectangular(16), RegularStride(16), Boxcar(), ByIndex())
    scores = jax.jit(Patchwise(p, gx.Lambda(lambda c: jnp.std(c)), 3))(g)
    assert isinstance(scores, Chips) and scores.values.shape == (4,)
    v = np.asarray(g.values)
    for i, (r, c) in enumerate(np.asarray(scores.scene_positions())):
        assert scores.values[i] == pytest.approx(float(v[:, r : r + 16, c : c + 16].std()), 1e-5)
    # Stitch leaves by-index chips alone
    chips = GridSampler(p)(g)
    assert Stitch()(chips) is chips


def test_stitch_with_other_aggregation_than_patcher() -> None:
    x = jax.random.normal(jax.random.key(5), (1, 20, 20))
    p = Patcher(Rectangular(8), RegularStride(4), Hann(), OverlapAdd())
    chips = GridSampler(p)(x)
    shifted = chips.replace(values=chips.values + jnp.arange(len(chips))[:, None, None, None])
    mean = np.asarray(Stitch(Mean())(shifted))
    mx = np.asarray(Stitch(Max())(shifted))
    assert (mx >= mean - 1e-5).all() and (mx > mean + 0.1).any()


ROUND_TRIP = [
    Patchwise(Patcher.regular(16, 12, window="hann"), gx.Identity(), 4),
    Patchwise(
        Patcher(
            Rectangular((16, 12)), RegularStride((8, 6)), Tukey(0.3), Max(-2.0), "edge", (1, 2)
        ),
        gx.Sequential([gx.Identity()]),
        batch_size=2,
    ),
    gx.Sequential(
        [
            GridSampler(Patcher(Rectangular(8), RandomPositions(5), Gaussian(0.2), Mean())),
            ApplyToChips(gx.Identity(), 3),
            Stitch(OverlapAdd(fill_value=1.5)),
        ]
    ),
    GridSampler(Patcher(Rectangular(4), ExplicitPositions([(0, 1), (2, 3)]), Triangular())),
    Stitch(),
    Stitch(ByIndex()),
]


@pytest.mark.parametrize("op", ROUND_TRIP, ids=lambda o: type(o).__name__)
def test_config_round_trip(op: gx.Operator) -> None:
    assert type(op)(**op.config_fields()) == op
    cfg = to_config(op)
    back = from_config(cfg)
    assert back == op and hash(back) == hash(op)
    assert to_config(back) == cfg
    try:
        from georax.core.yaml_io import dumps_yaml, loads_yaml
    except ImportError:
        return
    assert loads_yaml(dumps_yaml(op)) == op


def test_bad_config_names_the_field() -> None:
    cases = [
        (lambda: Rectangular(0), "size"),
        (lambda: Rectangular((4, 4, 4)), "size"),
        (lambda: RegularStride((1, 0)), "stride"),
        (lambda: RandomPositions(0), "n"),
        (lambda: ExplicitPositions([]), "points"),
        (lambda: Tukey(2.0), "alpha"),
        (lambda: Gaussian(0.0), "sigma"),
        (lambda: Patcher(Rectangular(4), RegularStride(2), padding="wrap"), "padding"),
        (lambda: Patcher(Rectangular(4), RegularStride(2), margin=-1), "margin"),
        (lambda: Patcher(Rectangular(4), Hann()), "sampler"),
        (lambda: Patchwise(Patcher.regular(4), gx.Identity(), 0), "batch_size"),
        (lambda: Patchwise(Patcher.regular(4), lambda c: c), "operator"),
        (lambda: Patcher.regular(4, window="hamming"), "window"),
    ]
    for make, field in cases:
        with pytest.raises(ConfigError) as e:
            make()
        assert e.value.field == field


def test_bad_data_raises_typed_errors() -> None:
    p = Patcher.regular(4)
    with pytest.raises(ShapeError, match="Chips"):
        ApplyToChips(gx.Identity())(jnp.zeros((4, 4)))
    with pytest.raises(ShapeError, match="Chips"):
        Stitch()(jnp.zeros((4, 4)))
    with pytest.raises(ShapeError, match="at least 2 axes"):
        Patchwise(p, gx.Identity())(jnp.zeros((5,)))
    with pytest.raises(ShapeError, match="chip size"):
        Patchwise(p, gx.Lambda(lambda c: c[..., :2, :]))(jnp.zeros((8, 8)))


class _PixelNet(eqx.Module):
    """A per-pixel (1x1 conv) model: patched and unpatched runs are mathematically identical."""

    a: eqx.nn.Conv2d
    b: eqx.nn.Conv2d

    def __init__(self, key: jax.Array) -> None:
        k1, k2 = jax.random.split(key)
        self.a = eqx.nn.Conv2d(3, 8, 1, key=k1)
        self.b = eqx.nn.Conv2d(8, 2, 1, key=k2)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.b(jnp.tanh(self.a(x)))


@pytest.mark.parametrize(
    "patcher",
    [
        Patcher(Rectangular(8), RegularStride(8), Boxcar()),  # the case
        Patcher(Rectangular(8), RegularStride(5), Hann(), margin=2),  # overlap + window too
    ],
    ids=["boxcar-stride=chip", "hann-overlap"],
)
def test_gradient_through_stitching_equals_unpatched(patcher: Patcher) -> None:
    x = jax.random.normal(jax.random.key(1), (3, 24, 21))
    target = jax.random.normal(jax.random.key(2), (2, 24, 21))
    model = gx.ModelOp(_PixelNet(jax.random.key(3)))

    def loss(m: gx.ModelOp, patched: bool) -> jax.Array:
        y = Patchwise(patcher, m, batch_size=3)(x) if patched else m(x)
        return jnp.mean((y - target) ** 2)

    l0, g0 = eqx.filter_jit(eqx.filter_value_and_grad(lambda m: loss(m, False)))(model)
    l1, g1 = eqx.filter_jit(eqx.filter_value_and_grad(lambda m: loss(m, True)))(model)
    assert float(l1) == pytest.approx(float(l0), rel=1e-5)
    for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)
    assert any(float(jnp.abs(a).max()) > 0 for a in jax.tree.leaves(g1))


def test_gradient_with_respect_to_input_through_three_step_pipeline() -> None:
    x = jax.random.normal(jax.random.key(4), (1, 17, 19))
    p = Patcher(Rectangular(8), RegularStride(6), Gaussian())
    seq = gx.Sequential([GridSampler(p), ApplyToChips(gx.Lambda(lambda c: c**2), 2), Stitch()])
    g = jax.jit(jax.grad(lambda v: jnp.sum(seq(v))))(x)
    np.testing.assert_allclose(g, 2 * x, rtol=1e-4, atol=1e-5)


@pytest.mark.usefixtures("isolated_registry")
def test_stochastic_inner_operator_gets_distinct_keys() -> None:
    p = Patcher(Rectangular(4), RegularStride(4), Boxcar(), ByIndex())

    class Noise(gx.Operator):
        requires_key = True

        def __call__(self, x: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
            return x + jax.random.normal(key, x.shape)

    x = jnp.zeros((1, 8, 8))
    a = Patchwise(p, Noise(), 2)(x, key=jax.random.key(0)).values
    b = Patchwise(p, Noise(), 2)(x, key=jax.random.key(0)).values
    c = Patchwise(p, Noise(), 2)(x, key=jax.random.key(1)).values
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert not np.allclose(a[0], a[1])  # chips do not share randomness
