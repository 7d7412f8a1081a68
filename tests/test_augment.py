"""Augmentation with explicit keys: determinism across processes, independence, georeferencing."""

from __future__ import annotations

import multiprocessing as mp
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from affine import Affine
from jax.test_util import check_grads

import georax as gx
from georax.core.budget import BudgetExceededError
from georax.core.errors import ConfigError, MissingKeyError, ShapeError
from georax.core.sandbox import SANDBOX_LIMITS
from georax.core.yaml_io import dumps_yaml, loads_yaml
from georax.geo.augment import (
    RandomCrop,
    RandomFlip,
    RandomRotate90,
    flip_transform,
    rot90_transform,
    sample_key,
)
from georax.tensor.geotensor import apply_transform

T = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4500000.0)
OPS = [RandomFlip(p=0.5, axes=("x", "y")), RandomRotate90(), RandomCrop(size=(5, 4))]


def ids(shape: tuple[int, ...]) -> np.ndarray:
    """Every pixel a distinct value, so any permutation of pixels is visible."""
    return np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)


def run_in_worker(args: tuple[bytes, list[np.ndarray], np.ndarray]) -> list[np.ndarray]:
    """Apply a pickled operator with raw key data in a fresh (spawned) process."""
    op_bytes, key_data, x = args
    op = pickle.loads(op_bytes)
    return [np.asarray(op(x, key=jax.random.wrap_key_data(k))) for k in key_data]


# ---------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("op", OPS, ids=lambda o: type(o).__name__)
def test_requires_an_explicit_key(op) -> None:
    with pytest.raises(MissingKeyError, match="explicit `key=`"):
        op(ids((2, 8, 8)))


def test_same_key_same_result_in_other_processes_and_pickled_copies() -> None:
    x = ids((2, 8, 8))
    keys = [sample_key(7, 0, i) for i in range(6)]
    key_data = [np.asarray(jax.random.key_data(k)) for k in keys]
    here = [[np.asarray(op(x, key=k)) for k in keys] for op in OPS]
    ctx = mp.get_context("spawn")  # a fresh interpreter: no state shared with this process
    with ctx.Pool(1) as pool:
        there = pool.map(run_in_worker, [(pickle.dumps(op), key_data, x) for op in OPS])
    for op, h, t in zip(OPS, here, there, strict=True):
        copy = pickle.loads(pickle.dumps(op))
        for k, a, b in zip(keys, h, t, strict=True):
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(a, copy(x, key=k))
            np.testing.assert_array_equal(a, op(x, key=k))  # and again in this process


def test_sample_key_depends_only_on_its_arguments() -> None:
    a = jax.random.key_data(sample_key(3, 1, 2))
    np.testing.assert_array_equal(a, jax.random.key_data(sample_key(3, 1, 2)))
    assert not np.array_equal(a, jax.random.key_data(sample_key(3, 2, 1)))
    assert not np.array_equal(a, jax.random.key_data(sample_key(4, 1, 2)))


def test_different_keys_give_different_draws() -> None:
    x = ids((1, 9, 9))
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(0), i))(jnp.arange(96))

    def where_is_pixel_0(op):
        outs = np.asarray(jax.vmap(lambda k: op(x, key=k))(keys))[:, 0]
        return [tuple(np.argwhere(o == 0)[0]) if (o == 0).any() else None for o in outs], outs

    flips, _ = where_is_pixel_0(RandomFlip(p=0.5))
    n_flipped = sum(pos != (0, 0) for pos in flips)
    assert 28 <= n_flipped <= 68  # Binomial(96, 0.5): far outside this is broken randomness
    turns, _ = where_is_pixel_0(RandomRotate90())
    assert set(turns) == {(0, 0), (8, 0), (8, 8), (0, 8)}  # all four quarter turns drawn
    _, crops = where_is_pixel_0(RandomCrop(size=3))
    assert len({float(c[0, 0]) for c in crops}) >= 30  # 49 possible offsets, most of them hit
    both, _ = where_is_pixel_0(RandomFlip(p=0.5, axes=("x", "y")))
    assert set(both) == {(0, 0), (0, 8), (8, 0), (8, 8)}  # x and y drawn independently


def test_probability_extremes() -> None:
    x = ids((2, 4, 6))
    for i in range(8):
        k = sample_key(1, i)
        np.testing.assert_array_equal(RandomFlip(p=0.0)(x, key=k), x)
        np.testing.assert_array_equal(RandomFlip(p=1.0)(x, key=k), x[..., ::-1])
        np.testing.assert_array_equal(RandomFlip(p=1.0, axes=("y",))(x, key=k), x[..., ::-1, :])
        assert RandomRotate90(ks=(2,))(x, key=k).tolist() == np.rot90(x, 2, axes=(-2, -1)).tolist()


@pytest.mark.parametrize("op", OPS, ids=lambda o: type(o).__name__)
def test_jit_and_vmap_match_eager(op) -> None:
    x = ids((3, 8, 8))
    keys = jax.random.split(jax.random.key(5), 6)
    jitted = jax.jit(lambda v, k: op(v, key=k))
    batched = jax.vmap(lambda k: op(x, key=k))(keys)
    for i, k in enumerate(keys):
        np.testing.assert_array_equal(jitted(x, k), op(x, key=k))
        np.testing.assert_array_equal(batched[i], op(x, key=k))


def test_sequential_gives_children_independent_keys() -> None:
    x = ids((1, 6, 6))
    pipe = gx.Sequential([RandomFlip(p=0.5), RandomFlip(p=0.5)])
    # two flips with the *same* key would always cancel; split keys must not
    results = [np.asarray(pipe(x, key=sample_key(2, i))) for i in range(32)]
    assert any(not np.array_equal(r, x) for r in results)


def test_flip_crop_are_differentiable() -> None:
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 6, 6)), jnp.float32)
    k = sample_key(0, 3)
    for op in OPS:
        check_grads(lambda v, op=op: op(v, key=k), (x,), order=1, modes=["rev"])


# ------------------------------------------------------------------------ georeferencing
def assert_pixels_keep_their_map_position(src: gx.GeoTensor, out: gx.GeoTensor) -> None:
    """Every output pixel centre, mapped through the output transform and back through the input
    transform, lands on the input pixel holding the same value."""
    h, w = out.values.shape[-2:]
    rows, cols = np.mgrid[0:h, 0:w]
    xs, ys = apply_transform(out.transform, cols + 0.5, rows + 0.5)
    c, r = apply_transform(~src.transform, xs, ys)
    r, c = np.floor(r).astype(int), np.floor(c).astype(int)
    np.testing.assert_array_equal(np.asarray(src.values)[..., r, c], np.asarray(out.values))


@pytest.mark.parametrize("op", OPS, ids=lambda o: type(o).__name__)
def test_concrete_draws_update_the_transform_exactly(op) -> None:
    src = gx.GeoTensor(ids((2, 8, 8)), T, "EPSG:32630", band_names=("a", "b"))
    transforms = set()
    for i in range(24):
        out = op(src, key=sample_key(9, i))
        assert out.crs == src.crs and out.band_names == ("a", "b")
        assert_pixels_keep_their_map_position(src, out)
        transforms.add(tuple(out.transform))
    assert len(transforms) > 2  # the draws really moved pixels (and transforms) around


def test_crop_moves_the_origin_only() -> None:
    src = gx.GeoTensor(ids((12, 20)), T, "EPSG:32630")
    out = RandomCrop(size=(4, 6))(src, key=sample_key(4))
    col, row = apply_transform(~T, out.transform.c, out.transform.f)
    assert out.transform.a == T.a and out.transform.e == T.e
    np.testing.assert_array_equal(
        out.values, src.values[int(row) : int(row) + 4, int(col) : int(col) + 6]
    )


def test_known_transforms() -> None:
    # left-right flip of a 10 m north-up raster: origin moves to the right edge, x size negative
    assert flip_transform(T, (4, 6), x_axis=True, y_axis=False) == Affine(
        -10.0, 0.0, 500060.0, 0.0, -10.0, 4500000.0
    )
    # four quarter turns are the identity, on shape and transform
    assert rot90_transform(T, (4, 6), 4) == T
    assert rot90_transform(rot90_transform(T, (4, 6), 1), (6, 4), 3).almost_equals(T)


@pytest.mark.parametrize("op", OPS, ids=lambda o: type(o).__name__)
def test_traced_draws_drop_georeferencing(op) -> None:
    src = gx.GeoTensor(ids((2, 8, 8)), T, "EPSG:32630", band_names=("a", "b"))
    k = sample_key(6)
    out = jax.jit(lambda g, kk: op(g, key=kk))(src, k)
    assert out.crs is None and out.transform == Affine.identity()
    assert out.band_names == ("a", "b")
    np.testing.assert_array_equal(out.values, op(src, key=k).values)  # same pixels as eager


# --------------------------------------------------------------------------- shapes/config
def test_shape_errors() -> None:
    with pytest.raises(ShapeError, match="changes shape under odd quarter"):
        RandomRotate90()(ids((1, 4, 6)), key=sample_key(0))
    out = RandomRotate90(ks=(0, 2))(ids((1, 4, 6)), key=sample_key(0))
    assert out.shape == (1, 4, 6)
    with pytest.raises(ShapeError, match=r"larger than the 4x6 image"):
        RandomCrop(size=5)(ids((4, 6)), key=sample_key(0))


@pytest.mark.parametrize(
    ("cls", "kwargs", "field"),
    [
        (RandomFlip, {"p": 1.5}, "p"),
        (RandomFlip, {"axes": ("z",)}, "axes"),
        (RandomFlip, {"axes": ("x", "x")}, "axes"),
        (RandomFlip, {"axes": "x"}, "axes"),
        (RandomRotate90, {"ks": (0, 4)}, "ks"),
        (RandomRotate90, {"ks": ()}, "ks"),
        (RandomRotate90, {"ks": (1.0,)}, "ks"),
        (RandomCrop, {"size": (0, 3)}, "size"),
        (RandomCrop, {"size": (3, 3, 3)}, "size"),
        (RandomCrop, {"size": 2.5}, "size"),
    ],
)
def test_config_errors(cls, kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        cls(**kwargs)
    assert err.value.field == field


@pytest.mark.parametrize(
    "op",
    [*OPS, RandomFlip(), RandomRotate90(ks=(0, 2)), RandomCrop(size=7)],
    ids=lambda o: type(o).__name__,
)
def test_yaml_round_trip(op) -> None:
    assert type(op)(**op.config_fields()) == op
    loaded = loads_yaml(dumps_yaml(op))
    assert loaded == op
    x = ids((1, 8, 8))
    np.testing.assert_array_equal(loaded(x, key=sample_key(1)), op(x, key=sample_key(1)))


# ------------------------------------------------------------------------- carriers, precheck
@pytest.mark.parametrize("op", OPS, ids=lambda o: type(o).__name__)
def test_chips_are_refused_with_a_typed_error(op) -> None:
    """Moving chip pixels would leave their recorded positions wrong (then Stitch misplaces)."""
    from georax.patch import GridSampler, Patcher

    scene = gx.GeoTensor(ids((1, 12, 12)), T, "EPSG:32630")
    chips = GridSampler(Patcher.regular(6))(scene)
    with pytest.raises(gx.tensor.GeoTensorRequiredError, match="ApplyToChips"):
        op(chips, key=sample_key(0))


def test_precheck_refuses_impossible_shapes_before_tracing() -> None:
    assert RandomCrop(size=(5, 4)).precheck((2, 3, 8, 8), SANDBOX_LIMITS) == (2, 3, 5, 4)
    with pytest.raises(ShapeError, match="larger than the 4x6 image"):
        RandomCrop(size=5).precheck((1, 4, 6), SANDBOX_LIMITS)
    with pytest.raises(BudgetExceededError, match=r"RandomCrop\.size"):
        RandomCrop(size=10**9).precheck((1, 4, 6), SANDBOX_LIMITS)
    with pytest.raises(ShapeError, match="odd quarter"):
        RandomRotate90().precheck((1, 4, 6), SANDBOX_LIMITS)
    assert RandomRotate90(ks=(0, 2)).precheck((1, 4, 6), SANDBOX_LIMITS) == (1, 4, 6)
    with pytest.raises(ShapeError, match="RandomFlip"):
        RandomFlip()(jnp.ones((5,)), key=sample_key(0))


def test_traced_probability_is_not_checked_but_used() -> None:
    x = ids((1, 4, 4))
    out = jax.vmap(lambda p: RandomFlip(p=p)(x, key=sample_key(3)))(jnp.array([0.0, 1.0]))
    np.testing.assert_array_equal(out[0], x)
    np.testing.assert_array_equal(out[1], x[..., ::-1])
    with pytest.raises(ConfigError, match="probability"):
        RandomFlip(p=float("nan"))
