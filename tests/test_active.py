"""georax.learn.active.ActiveSampler: selections against an independent NumPy implementation of
the same criteria (top, diverse k-centre, random, sub-sampling, tiers), every kind of pool, the
determinism promise, bounded memory, errors and the Operator contract."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import config_test_ops as tops
import georax as gx
from georax.core import registry
from georax.core.sandbox import SANDBOX_LIMITS
from georax.errors import BudgetExceededError, ConfigError, DataError, MissingKeyError, ShapeError
from georax.learn import active as a
from georax.learn import uncertainty as u
from georax.patch import Patcher
from georax.patch.stitch import MAX_UNROLLED_BATCHES, unrolled_batches

KEY = jax.random.key(42)
N, K = 160, 8


def make_pool(n: int = N, seed: int = 0) -> np.ndarray:
    """(n, 3, 8, 8) chips: per-chip means and textures that differ."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(n, 3, 1, 1))
    scale = rng.uniform(0.2, 2.0, size=(n, 1, 1, 1))
    return (means + scale * rng.normal(size=(n, 3, 8, 8))).astype(np.float32)


POOL = make_pool()
MLP = tops.TinyMLP.init((3, 6, 4), jax.random.key(1))


# --------------------------------------------------------------------------------------
# The NumPy reference (independent of georax.learn.active; the random draws are the documented
# jax.random draws: keys = split(key, 6) -> positions, subsample, prefilter, score, embed, random)
# --------------------------------------------------------------------------------------
def np_mean_score(chip: np.ndarray) -> float:
    return float(chip.astype(np.float64).mean())


def np_mlp_entropy(chip: np.ndarray) -> float:
    """Mean per-pixel softmax entropy of TinyMLP, written out in NumPy."""
    h = chip.astype(np.float64)
    n = len(MLP.weights)
    for i, (w, b) in enumerate(zip(MLP.weights, MLP.biases, strict=True)):
        h = np.einsum("oi,ihw->ohw", np.asarray(w, np.float64), h) + np.asarray(b)[:, None, None]
        if i < n - 1:
            h = np.maximum(h, 0.0)
    p = np.exp(h - h.max(axis=0))
    p /= p.sum(axis=0)
    return float((-(p * np.log(p)).sum(axis=0)).mean())


def mlp_entropy_op() -> gx.Operator:
    return gx.Sequential([u.Predictive(MLP), u.PredictiveEntropy(), u.MeanScalar()])


def np_rank(scores: np.ndarray, k: int) -> np.ndarray:
    s = np.nan_to_num(np.asarray(scores, np.float64), nan=-np.inf)  # NaN ranks lowest
    return np.argsort(-s, kind="stable")[:k]


def np_moments(chip: np.ndarray) -> np.ndarray:
    v = chip.astype(np.float64).reshape(chip.shape[0], -1)
    return np.concatenate([v.mean(axis=1), v.std(axis=1)])


def np_k_center(emb: np.ndarray, k: int, valid: np.ndarray | None = None) -> list[int]:
    chosen = [0]
    nearest = ((emb - emb[0]) ** 2).sum(axis=1)
    if valid is not None:
        nearest[~valid] = -np.finfo(np.float32).max
    nearest[0] = -np.inf
    while len(chosen) < k:
        j = int(np.argmax(nearest))
        chosen.append(j)
        nearest = np.minimum(nearest, ((emb - emb[j]) ** 2).sum(axis=1))
        nearest[j] = -np.inf
    return chosen


def np_select(
    pool: np.ndarray,
    score: Any,
    *,
    k: int,
    mode: str = "top",
    beta: float = 4.0,
    subsample: int | None = None,
    cheap: Any = None,
    survivors: int | None = None,
    key: jax.Array | None = None,
    exclude: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(picked pool indices, pool scores with NaN where unscored)."""
    n = len(pool)
    excluded = np.zeros(n, bool) if exclude is None else np.asarray(exclude, bool)

    def masked(v: np.ndarray, at: np.ndarray) -> np.ndarray:
        return np.where(excluded[at], np.nan, v)

    keys = jax.random.split(key, 6) if key is not None else [None] * 6
    ids = np.arange(n)
    if subsample is not None:
        u_ = np.asarray(jax.random.uniform(keys[1], (n,)))
        ids = np.sort(np_rank(u_, subsample))
    pool_scores = np.full(n, np.nan)
    if mode == "random":
        u_ = np.asarray(jax.random.uniform(keys[5], (len(ids),)))
        return ids[np_rank(masked(u_, ids), k)], pool_scores
    if cheap is not None:
        c = np.array([cheap(pool[i]) for i in ids])
        ids = np.sort(ids[np_rank(masked(c, ids), survivors)])
    s = np.array([score(pool[i]) for i in ids])
    pool_scores[ids] = s
    if mode == "top":
        return ids[np_rank(masked(s, ids), k)], pool_scores
    m = min(int(np.ceil(beta * k)), len(ids))
    cand = np_rank(masked(s, ids), m)
    emb = np.stack([np_moments(pool[ids[c]]) for c in cand])
    emb = (emb - emb.mean(axis=0)) / (emb.std(axis=0) + 1e-6)
    return ids[cand[np_k_center(emb, k, ~excluded[ids[cand]])]], pool_scores


# --------------------------------------------------------------------------------------
# Selections against the reference
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_size", [1, 7, None])
def test_top_matches_numpy(batch_size: int | None) -> None:
    sel = a.ActiveSampler(u.MeanScalar(), k=K, batch_size=batch_size)(POOL)
    want, scores = np_select(POOL, np_mean_score, k=K)
    np.testing.assert_array_equal(sel.indices, want)
    np.testing.assert_allclose(sel.pool_scores, scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sel.scores, scores[want], rtol=1e-5, atol=1e-6)


def test_model_scores_and_top_match_numpy() -> None:
    sel = a.ActiveSampler(mlp_entropy_op(), k=K, batch_size=16)(POOL)
    want, scores = np_select(POOL, np_mlp_entropy, k=K)
    np.testing.assert_allclose(sel.pool_scores, scores, rtol=1e-4)
    np.testing.assert_array_equal(sel.indices, want)


def test_diverse_matches_numpy_k_centre() -> None:
    sampler = a.ActiveSampler(mlp_entropy_op(), k=K, mode="diverse", beta=3.0, batch_size=16)
    sel = sampler(POOL)
    want, _ = np_select(POOL, np_mlp_entropy, k=K, mode="diverse", beta=3.0)
    np.testing.assert_array_equal(sel.indices, want)
    assert len(set(np.asarray(sel.indices).tolist())) == K
    # the first pick is the best-scored chip; all picks are among the 3k best
    top = np_rank(np.asarray(sel.pool_scores), 3 * K)
    assert int(sel.indices[0]) == int(top[0]) and set(np.asarray(sel.indices)) <= set(top)


def test_random_matches_numpy_and_needs_a_key() -> None:
    sampler = a.ActiveSampler(u.MeanScalar(), k=K, mode="random")
    sel = sampler(POOL, key=KEY)
    want, _ = np_select(POOL, np_mean_score, k=K, mode="random", key=KEY)
    np.testing.assert_array_equal(sel.indices, want)
    assert np.isnan(np.asarray(sel.scores)).all() and np.isnan(np.asarray(sel.pool_scores)).all()
    assert not np.array_equal(sampler(POOL, key=jax.random.key(1)).indices, sel.indices)
    with pytest.raises(MissingKeyError, match="ActiveSampler"):
        sampler(POOL)


def test_subsample_and_tiers_match_numpy() -> None:
    sampler = a.ActiveSampler(
        mlp_entropy_op(),
        k=K,
        subsample=100,
        prefilter=u.MeanScalar(),
        survivors=30,
        batch_size=8,
    )
    sel = sampler(POOL, key=KEY)
    want, scores = np_select(
        POOL,
        np_mlp_entropy,
        k=K,
        subsample=100,
        cheap=np_mean_score,
        survivors=30,
        key=KEY,
    )
    np.testing.assert_array_equal(sel.indices, want)
    np.testing.assert_allclose(sel.pool_scores, scores, rtol=1e-4)
    assert int(np.isfinite(np.asarray(sel.pool_scores)).sum()) == 30  # only survivors scored


def test_diverse_spreads_over_clusters_where_top_does_not() -> None:
    # four spectral clusters; cluster 0 holds the most uncertain (highest-variance) chips
    rng = np.random.default_rng(3)
    centres = np.array([[-3, -3, -3], [3, 3, -3], [-3, 3, 3], [3, -3, 3]], np.float32)
    label = np.repeat(np.arange(4), 30)
    noise = np.where(label == 0, 1.5, 1.0)[:, None, None, None]
    pool = centres[label][:, :, None, None] + noise * rng.normal(size=(120, 3, 8, 8))
    score = gx.Lambda(lambda v: jnp.std(v, axis=(-2, -1)).mean(), name="texture")
    top = a.ActiveSampler(score, k=6)(jnp.asarray(pool, jnp.float32))
    div = a.ActiveSampler(score, k=6, mode="diverse", beta=20.0)(jnp.asarray(pool, jnp.float32))
    assert set(label[np.asarray(top.indices)]) == {0}
    assert len(set(label[np.asarray(div.indices)])) == 4


@pytest.mark.parametrize(
    "config",
    [
        {"mode": "top"},
        {"mode": "diverse", "beta": 2.0},
        {"mode": "random"},
        {"subsample": 80, "prefilter": u.MeanScalar(), "survivors": 30},
    ],
    ids=["top", "diverse", "random", "subsample+tiers"],
)
def test_excluded_chips_are_never_picked_and_match_numpy(config: dict[str, Any]) -> None:
    # exclude the chips a plain run picks first, and many more: the next-best are picked
    sampler = a.ActiveSampler(mlp_entropy_op(), k=K, batch_size=16, **config)
    first = np.asarray(sampler(POOL, key=KEY).indices)
    exclude = np.zeros(N, bool)
    exclude[first] = True
    exclude[::3] = True
    sel = sampler(POOL, key=KEY, exclude=jnp.asarray(exclude))
    np_config = {
        "mode": config.get("mode", "top"),
        "beta": config.get("beta", 4.0),
        "subsample": config.get("subsample"),
        "cheap": np_mean_score if "prefilter" in config else None,
        "survivors": config.get("survivors"),
    }
    want, _ = np_select(POOL, np_mlp_entropy, k=K, key=KEY, exclude=exclude, **np_config)
    np.testing.assert_array_equal(sel.indices, want)
    assert not exclude[np.asarray(sel.indices)].any()
    loaded = sampler.select_from(list(POOL), lambda v: v, key=KEY, exclude=exclude, host_batch=64)
    np.testing.assert_array_equal(loaded.indices, sel.indices)


# --------------------------------------------------------------------------------------
# Determinism and stochastic score operators
# --------------------------------------------------------------------------------------
class DropNet(eqx.Module):
    conv: eqx.nn.Conv2d
    drop: eqx.nn.Dropout
    head: eqx.nn.Conv2d

    def __init__(self, key: jax.Array) -> None:
        k1, k2 = jax.random.split(key)
        self.conv = eqx.nn.Conv2d(3, 8, 3, padding=1, key=k1)
        self.drop = eqx.nn.Dropout(0.5)
        self.head = eqx.nn.Conv2d(8, 4, 1, key=k2)

    def __call__(self, x: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
        return self.head(self.drop(jax.nn.relu(self.conv(x)), key=key))


def bald_op() -> gx.Sequential:
    return gx.Sequential([u.MCDropout(DropNet(KEY), samples=4), u.BALD(), u.MeanScalar()])


def test_each_chip_is_scored_with_its_own_folded_key() -> None:
    op = bald_op()
    pool = POOL[:40]
    sel = a.ActiveSampler(op, k=5, batch_size=6, consistent=False)(pool, key=KEY)
    k_score = jax.random.split(KEY, 6)[3]
    loop = [
        float(op(jnp.asarray(c), key=jax.random.fold_in(k_score, i))) for i, c in enumerate(pool)
    ]
    np.testing.assert_allclose(sel.pool_scores, loop, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(sel.indices, np_rank(np.asarray(loop), 5))


def test_consistent_scores_every_chip_with_the_same_draws() -> None:
    op = bald_op()
    pool = np.concatenate([POOL[:20], POOL[:20]])  # every chip twice
    sel = a.ActiveSampler(op, k=5, batch_size=6)(pool, key=KEY)  # consistent by default
    k_score = jax.random.split(KEY, 6)[3]
    loop = [float(op(jnp.asarray(c), key=k_score)) for c in pool]
    np.testing.assert_allclose(sel.pool_scores, loop, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(sel.indices, np_rank(np.asarray(loop), 5))
    # common random numbers: a chip and its copy score alike; independent draws do not
    np.testing.assert_allclose(sel.pool_scores[:20], sel.pool_scores[20:], rtol=1e-5, atol=1e-7)
    folded = a.ActiveSampler(op, k=5, batch_size=6, consistent=False)(pool, key=KEY).pool_scores
    assert not np.allclose(folded[:20], folded[20:], rtol=1e-3)


def test_consistent_draws_do_not_depend_on_the_pool_kind() -> None:
    pool = POOL[:30]
    ref = a.ActiveSampler(bald_op(), k=4, mode="diverse", batch_size=1)(pool, key=KEY)
    wide = a.ActiveSampler(bald_op(), k=4, mode="diverse", batch_size=30)
    np.testing.assert_allclose(
        wide(pool, key=KEY).pool_scores, ref.pool_scores, rtol=1e-5, atol=1e-7
    )
    sliced = wide.select_from(list(range(30)), lambda i: pool[i], key=KEY, host_batch=8)
    np.testing.assert_array_equal(sliced.indices, ref.indices)
    np.testing.assert_allclose(sliced.pool_scores, ref.pool_scores, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("consistent", [True, False], ids=["consistent", "independent"])
def test_same_key_same_picks_whatever_the_batch_size(consistent: bool) -> None:
    pool = POOL[:48]
    picks = [
        a.ActiveSampler(bald_op(), k=6, mode="diverse", batch_size=b, consistent=consistent)(
            pool, key=KEY
        )
        for b in (1, 5, 48)
    ]
    for p in picks[1:]:
        np.testing.assert_array_equal(p.indices, picks[0].indices)
        np.testing.assert_allclose(p.pool_scores, picks[0].pool_scores, rtol=1e-5, atol=1e-7)
    other = a.ActiveSampler(bald_op(), k=6, batch_size=5, consistent=consistent)(
        pool, key=jax.random.key(7)
    )
    assert not np.allclose(other.pool_scores, picks[0].pool_scores)
    with pytest.raises(MissingKeyError, match="MCDropout"):
        a.ActiveSampler(bald_op(), k=6)(pool)


# --------------------------------------------------------------------------------------
# Pools: scene + patcher, Chips, slices
# --------------------------------------------------------------------------------------
def scene() -> gx.GeoTensor:
    s2 = gx.data.sentinel2_l1c((72, 88), seed=4)
    return s2.replace(values=jnp.asarray(s2.values[:3], jnp.float32) * 1e-4)


def test_scene_pool_equals_the_chip_stack_of_the_same_patcher() -> None:
    patcher = Patcher.regular(16, aggregation="by_index")  # 72 x 88: last row/col flush
    x = scene()
    op = mlp_entropy_op()
    on_scene = a.ActiveSampler(op, k=5, patcher=patcher, batch_size=4)(x)
    chips = patcher(x)
    on_chips = a.ActiveSampler(op, k=5, batch_size=4)(chips)
    on_stack = a.ActiveSampler(op, k=5, batch_size=4)(chips.values)
    np.testing.assert_array_equal(on_scene.indices, on_stack.indices)
    np.testing.assert_array_equal(on_scene.indices, on_chips.indices)
    np.testing.assert_allclose(on_scene.pool_scores, on_stack.pool_scores, rtol=1e-6)
    np.testing.assert_array_equal(on_scene.positions, chips.scene_positions())
    np.testing.assert_array_equal(on_chips.positions, chips.scene_positions())
    assert on_stack.positions is None
    want = np.array([np_mlp_entropy(np.asarray(c)) for c in chips.values])
    np.testing.assert_allclose(on_scene.pool_scores, want, rtol=1e-4)


def test_score_raster_paints_each_chip_with_its_score() -> None:
    patcher = Patcher.regular(16, aggregation="by_index")
    x = scene()
    sampler = a.ActiveSampler(mlp_entropy_op(), k=5, patcher=patcher, subsample=20)
    sel = sampler(x, key=KEY)
    raster = sampler.score_raster(x, sel)
    assert isinstance(raster, gx.GeoTensor) and raster.values.shape == (72, 88)
    assert raster.transform == x.transform and raster.crs == x.crs
    r = np.asarray(raster.values)
    pos, s = np.asarray(sel.positions), np.asarray(sel.pool_scores)
    # expected: max over the chips covering a pixel of their score, NaN where none was scored
    want = np.full((72, 88), -np.inf)
    for (row, col), v in zip(pos, s, strict=True):
        if np.isfinite(v):
            win = want[row : row + 16, col : col + 16]
            np.maximum(win, v, out=win)
    want[np.isneginf(want)] = np.nan
    np.testing.assert_allclose(r, want, rtol=1e-6)
    assert np.isnan(r).any() and np.isfinite(r).any()
    chips = patcher(x)
    on_chips = a.ActiveSampler(mlp_entropy_op(), k=5, subsample=20)(chips, key=KEY)
    np.testing.assert_allclose(a.chips_score_raster(chips, on_chips.pool_scores).values, r)


@pytest.mark.parametrize(
    "config",
    [
        {"mode": "top"},
        {"mode": "diverse", "beta": 2.5},
        {"mode": "random"},
        {"subsample": 50, "prefilter": u.MeanScalar(), "survivors": 20, "mode": "diverse"},
    ],
    ids=["top", "diverse", "random", "subsample+tiers"],
)
def test_select_from_slices_equals_the_stacked_pool(config: dict[str, Any]) -> None:
    sampler = a.ActiveSampler(mlp_entropy_op(), k=6, batch_size=4, **config)
    items = [f"chip-{i}" for i in range(70)]
    loaded: list[str] = []

    def loader(name: str) -> np.ndarray:
        loaded.append(name)
        return POOL[int(name.split("-")[1])]

    sel = sampler.select_from(items, loader, key=KEY, host_batch=16)
    ref = sampler(POOL[:70], key=KEY)
    np.testing.assert_array_equal(sel.indices, ref.indices)
    np.testing.assert_allclose(sel.pool_scores, ref.pool_scores, rtol=1e-6)
    if "subsample" in config:  # sub-sampled-out items are never loaded
        never = set(items) - set(loaded)
        assert len(never) >= 70 - 50 and all(
            np.isnan(ref.pool_scores[items.index(i)]) for i in never
        )
    if config["mode"] == "random":
        assert loaded == []


def test_select_from_catalog_slices_with_load_raster(tmp_path: Path) -> None:
    from georax.catalog import load_raster, open_catalog

    demo = gx.data.write_demo_catalog(tmp_path, n=10, size=16, bands=("B02", "B03", "B04"))
    catalog = open_catalog(demo.catalog)
    slices = list(catalog.iter_slices())
    stack = np.stack([np.asarray(load_raster(s).values, np.float32) * 1e-4 for s in slices])
    op = gx.Sequential([gx.Lambda(lambda v: v.astype(jnp.float32) * 1e-4), mlp_entropy_op()])
    sampler = a.ActiveSampler(op, k=3, mode="diverse", beta=2.0, batch_size=4)
    sel = sampler.select_from(slices, key=KEY, host_batch=4)  # default loader: load_raster
    want, _ = np_select(stack, np_mlp_entropy, k=3, mode="diverse", beta=2.0)
    np.testing.assert_array_equal(sel.indices, want)


def test_select_from_refuses_chips_of_different_shapes() -> None:
    sampler = a.ActiveSampler(u.MeanScalar(), k=2)
    items = [np.ones((3, 8, 8)), np.ones((3, 8, 8)), np.ones((3, 9, 8))]
    with pytest.raises(DataError, match=r"item 2 .*shape \(3, 9, 8\)"):
        sampler.select_from(items, lambda v: v)


# --------------------------------------------------------------------------------------
# Memory: one batch's working set, whatever the pool size
# --------------------------------------------------------------------------------------
def temp_bytes(sampler: a.ActiveSampler, n: int) -> int:
    pool = jax.ShapeDtypeStruct((n, 3, 16, 16), jnp.float32)
    fn = jax.jit(lambda p, k: sampler(p, key=k).indices)  # the model's bools stay Python
    compiled = fn.lower(pool, KEY).compile()
    return int(compiled.memory_analysis().temp_size_in_bytes)


def test_default_batch_grows_with_the_pool_to_stay_unrolled_then_caps() -> None:
    sampler = a.ActiveSampler(bald_op(), k=4)
    b = a.default_batch_size()
    assert sampler.batch_for(10) == b
    assert sampler.batch_for(b * MAX_UNROLLED_BATCHES) == b
    n = 2 * b * MAX_UNROLLED_BATCHES + 1  # just over twice: 2b + 1 per batch keeps it unrolled
    assert sampler.batch_for(n) == 2 * b + 1
    assert unrolled_batches(n, b) == 1  # the default batch would make the loop a scan
    assert 1 < unrolled_batches(n, sampler.batch_for(n)) <= MAX_UNROLLED_BATCHES
    assert sampler.batch_for(10**9) == a.MAX_BATCH_GROWTH * b  # memory bound wins: a scan
    assert a.ActiveSampler(bald_op(), k=4, batch_size=3).batch_for(10**9) == 3


def test_working_memory_does_not_grow_with_the_pool() -> None:
    sampler = a.ActiveSampler(bald_op(), k=4, batch_size=8)
    small, large = temp_bytes(sampler, 64), temp_bytes(sampler, 1024)
    one_batch = 8 * 4 * 8 * 16 * 16 * 4  # batch x samples x hidden channels x pixels x float32
    assert large < 1.5 * small + 1024 * 16  # + the pool-sized score vectors
    assert large < 16 * one_batch
    wide = a.ActiveSampler(bald_op(), k=4, batch_size=1024)
    assert temp_bytes(wide, 1024) > 8 * large  # the all-at-once program holds every chip


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------
def test_config_errors_name_the_field() -> None:
    op = u.MeanScalar()
    cases = [
        ({"k": 0}, r"ActiveSampler\.k"),
        ({"k": 2, "mode": "best"}, r"ActiveSampler\.mode"),
        ({"k": 2, "beta": 0.5}, r"ActiveSampler\.beta"),
        ({"k": 2, "prefilter": op}, r"ActiveSampler\.survivors.*go together"),
        ({"k": 5, "subsample": 3}, r"ActiveSampler\.subsample.*>= k=5"),
        ({"k": 2, "subsample": 10, "prefilter": op, "survivors": 20}, r"survivors.*<= subsample"),
        ({"k": 2, "batch_size": 0}, r"ActiveSampler\.batch_size"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ConfigError, match=match):
            a.ActiveSampler(op, **kwargs)


def test_run_time_errors_are_typed_and_named() -> None:
    with pytest.raises(ShapeError, match=r"k=200.*160 chips"):
        a.ActiveSampler(u.MeanScalar(), k=200)(POOL)
    with pytest.raises(ShapeError, match=r"one scalar per chip.*MeanScalar"):
        a.ActiveSampler(u.PredictiveEntropy(), k=2)(POOL)
    with pytest.raises(ShapeError, match="chip stack"):
        a.ActiveSampler(u.MeanScalar(), k=2)(POOL[0, 0])
    with pytest.raises(ShapeError, match="subsample=500"):
        a.ActiveSampler(u.MeanScalar(), k=2, subsample=500)(POOL, key=KEY)


# --------------------------------------------------------------------------------------
# The Operator contract
# --------------------------------------------------------------------------------------
def contract_sampler() -> a.ActiveSampler:
    return a.ActiveSampler(
        mlp_entropy_op(),
        k=4,
        mode="diverse",
        beta=2.0,
        prefilter=u.MeanScalar(),
        survivors=40,
        subsample=100,
        batch_size=8,
    )


def test_registered_and_round_trips_through_yaml_and_pickle() -> None:
    s = contract_sampler()
    assert registry.lookup(registry.import_path(a.ActiveSampler)) is a.ActiveSampler
    back = gx.loads_yaml(gx.dumps_yaml(s))
    assert gx.config_hash(back) == gx.config_hash(s)
    want = s(POOL, key=KEY)
    for other in (back, pickle.loads(pickle.dumps(s))):
        got = other(POOL, key=KEY)
        np.testing.assert_array_equal(got.indices, want.indices)
        np.testing.assert_allclose(got.pool_scores, want.pool_scores, rtol=1e-6)


def test_eager_equals_jit_and_vmap_over_pools_equals_loop() -> None:
    s = contract_sampler()
    want = s(POOL, key=KEY)
    got = jax.jit(lambda p, k: s(p, key=k))(jnp.asarray(POOL), KEY)
    np.testing.assert_array_equal(got.indices, want.indices)
    pools = jnp.stack([POOL[:120], POOL[20:140], POOL[40:]])
    batched = jax.vmap(lambda p: s(p, key=KEY).indices)(pools)
    for i in range(3):
        np.testing.assert_array_equal(batched[i], s(pools[i], key=KEY).indices)


def test_precheck_prices_the_pool() -> None:
    s = contract_sampler()
    assert s.precheck((160, 3, 8, 8), SANDBOX_LIMITS) == (4,)
    with pytest.raises(ShapeError, match="subsample=100"):
        s.precheck((50, 3, 8, 8), SANDBOX_LIMITS)
    with_patcher = a.ActiveSampler(u.MeanScalar(), k=3, patcher=Patcher.regular(16))
    assert with_patcher.precheck((3, 64, 64), SANDBOX_LIMITS) == (3,)
    huge = a.ActiveSampler(u.MeanScalar(), k=3, batch_size=1)
    tight = dataclasses.replace(SANDBOX_LIMITS, max_trace_steps=10)
    with pytest.raises(BudgetExceededError, match=r"ActiveSampler\.score_op/batch_size"):
        huge.precheck((64, 3, 8, 8), tight)
