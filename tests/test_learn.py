"""georax.learn: losses and metrics against NumPy references, chip datasets, train steps and fit
against hand-written JAX/optax loops."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import georax as gx
from georax import learn as gl
from georax.errors import ConfigError, ShapeError
from georax.geo.augment import RandomCrop, RandomFlip, RandomRotate90
from georax.geo.radiometry import DNToReflectance, Normalize
from georax.learn.nets import SegNet

from _learn_models import EqxSeg, TinySeg, pipeline


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# --------------------------------------------------------------------------------------
# Losses (NumPy references written from the formulas)
# --------------------------------------------------------------------------------------
def test_sigmoid_cross_entropy_matches_the_formula_and_skips_missing_labels() -> None:
    z = _rng().normal(size=(4, 1, 8, 8)).astype(np.float32)
    y = (_rng(1).random((4, 8, 8)) > 0.5).astype(np.float32)
    y[0, :2] = np.nan  # no label there
    ref = np.logaddexp(0.0, z[:, 0]) - np.nan_to_num(y) * z[:, 0]
    valid = np.isfinite(y)
    np.testing.assert_allclose(gl.sigmoid_cross_entropy(z, y), ref[valid].mean(), rtol=1e-5)
    where = _rng(2).random((4, 8, 8)) > 0.3
    np.testing.assert_allclose(
        gl.sigmoid_cross_entropy(z, y, where), ref[valid & where].mean(), rtol=1e-5
    )
    g = jax.grad(lambda zz: gl.sigmoid_cross_entropy(zz, y))(jnp.asarray(z))
    assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g[0, 0, :2]).max()) == 0.0
    assert float(gl.sigmoid_cross_entropy(z, np.full_like(y, np.nan))) == 0.0  # nothing valid
    with pytest.raises(ShapeError, match="do not match"):
        gl.sigmoid_cross_entropy(z, y[:, :4])


def test_softmax_cross_entropy_matches_the_formula_and_ignores_unlabelled_pixels() -> None:
    z = _rng().normal(size=(2, 3, 5, 5)).astype(np.float32)
    y = _rng(1).integers(-1, 3, size=(2, 5, 5))  # -1: no class
    lse = np.log(np.exp(z).sum(axis=1))
    picked = np.take_along_axis(z, np.clip(y, 0, 2)[:, None], axis=1)[:, 0]
    ref = (lse - picked)[y >= 0].mean()
    np.testing.assert_allclose(gl.softmax_cross_entropy(z, y), ref, rtol=1e-5)
    with pytest.raises(ShapeError, match="need labels of shape"):
        gl.softmax_cross_entropy(z, y[:, :3])


def test_dice_loss_binary_and_multiclass() -> None:
    z = _rng().normal(size=(3, 1, 6, 6)).astype(np.float32)
    y = (_rng(1).random((3, 6, 6)) > 0.6).astype(np.float32)
    p = 1 / (1 + np.exp(-z[:, 0]))
    ref = 1 - (2 * (p * y).sum() + 1) / (p.sum() + y.sum() + 1)
    np.testing.assert_allclose(gl.dice_loss(z, y), ref, rtol=1e-5)

    zc = _rng(2).normal(size=(2, 4, 6, 6)).astype(np.float32)
    yc = _rng(3).integers(0, 4, size=(2, 6, 6))
    e = np.exp(zc - zc.max(axis=1, keepdims=True))
    pc = e / e.sum(axis=1, keepdims=True)
    t = np.moveaxis(np.eye(4)[yc], -1, 1)
    dice = (2 * (pc * t).sum(axis=(0, 2, 3)) + 1) / (
        pc.sum(axis=(0, 2, 3)) + t.sum(axis=(0, 2, 3)) + 1
    )
    np.testing.assert_allclose(gl.dice_loss(zc, yc), 1 - dice.mean(), rtol=1e-5)
    # a perfect, confident prediction has (almost) no loss
    assert float(gl.dice_loss(np.where(y > 0, 20.0, -20.0)[:, None], y)) < 1e-6


def test_regression_losses_skip_missing_targets() -> None:
    p = _rng().normal(size=(2, 1, 4, 4)).astype(np.float32)
    t = _rng(1).normal(size=(2, 1, 4, 4)).astype(np.float32)
    t[0, 0, 0] = np.nan
    ok = np.isfinite(t)
    d = (p - t)[ok]
    np.testing.assert_allclose(gl.mse(p, t), np.mean(d**2), rtol=1e-5)
    np.testing.assert_allclose(gl.mae(p, t), np.mean(np.abs(d)), rtol=1e-5)
    a = np.abs(d)
    hub = np.where(a <= 0.5, 0.5 * a**2, 0.5 * (a - 0.25))
    np.testing.assert_allclose(gl.huber(p, t, delta=0.5), hub.mean(), rtol=1e-5)
    g = jax.grad(lambda q: gl.mse(q, t))(jnp.asarray(p))
    assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g[0, 0, 0]).max()) == 0.0


def test_segmentation_metrics_are_exact_ratios() -> None:
    z = _rng().normal(size=(4, 1, 10, 10)).astype(np.float32)
    y = (_rng(1).random((4, 10, 10)) > 0.5).astype(np.int32)
    pred = (z[:, 0] > 0).astype(np.int32)
    m = gl.segmentation_metrics(2)(z, y)
    iou1 = ((pred == 1) & (y == 1)).sum() / ((pred == 1) | (y == 1)).sum()
    iou0 = ((pred == 0) & (y == 0)).sum() / ((pred == 0) | (y == 0)).sum()
    np.testing.assert_allclose(m["iou_1"], iou1, rtol=1e-6)
    np.testing.assert_allclose(m["mean_iou"], (iou0 + iou1) / 2, rtol=1e-6)
    np.testing.assert_allclose(m["accuracy"], (pred == y).mean(), rtol=1e-6)
    zc = _rng(2).normal(size=(2, 3, 4, 4))
    np.testing.assert_array_equal(gl.predict_labels(zc), zc.argmax(axis=1))
    r = gl.regression_metrics()(np.ones((2, 3)), np.zeros((2, 3)))
    assert float(r["rmse"]) == 1.0 and float(r["mae"]) == 1.0


# --------------------------------------------------------------------------------------
# Chip datasets
# --------------------------------------------------------------------------------------
def _coordinate_scenes(n: int = 3, size: int = 40) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Scenes whose bands encode (row, col, scene index); labels = row + col (mod 7)."""
    rows, cols = np.mgrid[:size, :size].astype(np.float32)
    scenes = [np.stack([rows, cols, np.full_like(rows, i)]) for i in range(n)]
    labels = [((rows + cols + i) % 7).astype(np.int32) for i in range(n)]
    return scenes, labels


def test_chips_are_windows_of_the_scenes_with_their_labels() -> None:
    scenes, labels = _coordinate_scenes()
    ds = gl.ChipDataset.from_scenes(scenes, labels, chip=(8, 6))
    x, y = ds.batch(jax.random.key(0), 32)
    assert x.shape == (32, 3, 8, 6) and y.shape == (32, 8, 6)
    seen = set()
    for i in range(32):
        r, c, s = (int(v) for v in x[i, :, 0, 0])
        assert 0 <= r <= 40 - 8 and 0 <= c <= 40 - 6
        np.testing.assert_array_equal(x[i], scenes[s][:, r : r + 8, c : c + 6])
        np.testing.assert_array_equal(y[i], labels[s][r : r + 8, c : c + 6])
        seen.add(s)
    assert seen == {0, 1, 2}  # every scene is drawn from


def test_augmentation_moves_images_and_labels_together() -> None:
    rng = _rng()
    scenes = [rng.random((2, 32, 32)).astype(np.float32) for _ in range(2)]
    labels = [(s[0] > 0.5).astype(np.int32) for s in scenes]  # a pixelwise function of band 0
    augment = gx.Sequential([RandomFlip(axes=("x", "y")), RandomRotate90(), RandomCrop(12)])
    ds = gl.ChipDataset.from_scenes(scenes, labels, chip=16, augment=augment)
    x, y = ds.batch(jax.random.key(3), 24)
    assert x.shape == (24, 2, 12, 12)
    np.testing.assert_array_equal(y, (x[:, 0] > 0.5).astype(np.int32))
    plain = gl.ChipDataset.from_scenes(scenes, labels, chip=16)
    xp, _ = plain.batch(jax.random.key(3), 24)
    assert not np.array_equal(np.asarray(x), np.asarray(xp[:, :, :12, :12]))  # it did augment


def test_a_batch_is_a_function_of_its_key_only() -> None:
    scenes, labels = _coordinate_scenes()
    ds = gl.ChipDataset.from_scenes(scenes, labels, chip=8, augment=RandomFlip())
    key = gl.batch_key(5, 17)
    x, y = ds.batch(key, 8)
    x2, y2 = ds.batch(gl.batch_key(5, 17), 8)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    # sample i depends on fold_in(key, i) only: two "workers" building halves agree
    xa, _ = ds.batch(key, 4)
    np.testing.assert_array_equal(xa, x[:4])
    for i in (5, 7):
        xi, yi = ds.sample(jax.random.fold_in(key, i))
        np.testing.assert_array_equal(xi, x[i])
        np.testing.assert_array_equal(yi, y[i])
    x3, _ = ds.batch(gl.batch_key(5, 18), 8)
    assert not np.array_equal(np.asarray(x), np.asarray(x3))


def test_labels_from_a_function_of_the_scene_and_shape_errors() -> None:
    scenes, _ = _coordinate_scenes(2, 16)
    ds = gl.ChipDataset.from_scenes(scenes, lambda s: s[0] > 7, chip=4)
    x, y = ds.batch(jax.random.key(0), 6)
    np.testing.assert_array_equal(y, (x[:, 0] > 7).astype(np.uint8))
    with pytest.raises(ShapeError, match="every scene"):
        gl.ChipDataset.from_scenes([scenes[0], scenes[1][:, :8]], lambda s: s[0], chip=4)
    with pytest.raises(ShapeError, match="does not fit"):
        gl.ChipDataset.from_scenes(scenes, lambda s: s[0], chip=32)
    with pytest.raises(ShapeError, match="2 scenes but 1 label"):
        gl.ChipDataset.from_scenes(scenes, [scenes[0][0]], chip=4)


# --------------------------------------------------------------------------------------
# Train steps against independent references
# --------------------------------------------------------------------------------------
def _batches(n: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = _rng(seed)
    out = []
    for _ in range(n):
        x = rng.integers(0, 5000, size=(4, 7, 12, 12)).astype(np.uint16)
        y = (x[:, 0] > 2500).astype(np.float32)
        out.append((x, y))
    return out


def test_train_step_equals_a_hand_written_optax_loop_equinox() -> None:
    model = EqxSeg(6, 4, key=jax.random.key(0))
    batches = _batches(5)
    # the reference: plain equinox + optax, no georax
    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt = optax.adam(1e-2)
    opt_state = opt.init(params)

    def ref_loss(p: Any, x: jax.Array, y: jax.Array) -> jax.Array:
        m = eqx.combine(p, static)
        logits = jax.vmap(m)(x[:, :6].astype(jnp.float32) * jnp.float32(1e-4))[:, 0]
        return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, y))

    ref_losses = []
    for x, y in batches:
        value, grads = jax.value_and_grad(ref_loss)(params, x, y)
        updates, opt_state = opt.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        ref_losses.append(float(value))
    ref_model = eqx.combine(params, static)

    pre = gx.Sequential([gl.SelectBands(tuple(range(6))), DNToReflectance()])
    pipe = gx.Sequential([pre, gx.ModelOp(model)])
    step = gl.make_train_step(pipe, gl.sigmoid_cross_entropy, optax.adam(1e-2))
    state = step.init(pipe)
    losses = []
    for batch in batches:
        state, loss = step(state, batch)
        losses.append(float(loss))
    assert int(state.step) == 5
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    trained = state.pipeline.operators[1].module
    np.testing.assert_allclose(trained.conv.weight, ref_model.conv.weight, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(trained.head.bias, ref_model.head.bias, rtol=1e-4, atol=1e-6)
    assert not np.allclose(trained.conv.weight, model.conv.weight)  # it did learn


def test_train_step_equals_a_hand_written_optax_loop_nnx() -> None:
    net = TinySeg(6, 4, rngs=nnx.Rngs(1))
    batches = _batches(4, seed=1)
    graphdef, state0 = nnx.split(net)
    opt = optax.sgd(0.5, momentum=0.9)
    params = nnx.to_pure_dict(state0)
    opt_state = opt.init(params)

    def ref_loss(p: Any, x: jax.Array, y: jax.Array) -> jax.Array:
        m = nnx.merge(graphdef, p)
        logits = jax.vmap(m)(x[:, :6].astype(jnp.float32) * jnp.float32(1e-4))[:, 0]
        return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, y))

    for x, y in batches:
        grads = jax.grad(ref_loss)(params, x, y)
        updates, opt_state = opt.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)

    pipe = pipeline(width=4, seed=1)
    step = gl.make_train_step(pipe, gl.sigmoid_cross_entropy, optax.sgd(0.5, momentum=0.9))
    state = step.init(pipe)
    for batch in batches:
        state, _ = step(state, batch)
    got = state.pipeline.operators[1].model.params
    np.testing.assert_allclose(got["conv.kernel"], params["conv"]["kernel"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got["head.bias"], params["head"]["bias"], rtol=1e-4, atol=1e-6)


def test_only_model_weights_train_by_default() -> None:
    stats = Normalize(mean=jnp.full(6, 0.1), std=jnp.full(6, 0.05))
    pre = gx.Sequential([gl.SelectBands(tuple(range(6))), DNToReflectance(), stats])
    pipe = gx.Sequential([pre, gx.ModelOp(TinySeg(6, 4, rngs=nnx.Rngs(0)))])
    batch = _batches(1)[0]
    step = gl.make_train_step(pipe, gl.sigmoid_cross_entropy, optax.adam(1e-2))
    state, _ = step(step.init(pipe), batch)
    assert gx.config_hash(state.pipeline.operators[0]) == gx.config_hash(pre)
    assert gx.params_hash(state.pipeline) != gx.params_hash(pipe)
    everything = gl.make_train_step(
        pipe, gl.sigmoid_cross_entropy, optax.adam(1e-2), trainable=eqx.is_inexact_array
    )
    state, _ = everything(everything.init(pipe), batch)
    trained_stats = state.pipeline.operators[0].operators[2]
    assert not np.allclose(trained_stats.mean, stats.mean)  # preprocessing tuned too


def test_make_train_step_refuses_a_pipeline_with_nothing_to_train() -> None:
    pre = gx.Sequential([gl.SelectBands((0,)), DNToReflectance()])
    with pytest.raises(ConfigError, match="selects no floating-point"):
        gl.make_train_step(pre, gl.mse, optax.sgd(0.1))
    with pytest.raises(ConfigError, match="optax"):
        gl.make_train_step(pipeline(), gl.mse, "adam")  # type: ignore[arg-type]


def test_needs_key_finds_stochastic_parts() -> None:
    assert not gl.needs_key(pipeline())
    assert gl.needs_key(gx.Sequential([RandomFlip(), pipeline()]))
    net = EqxSeg(6, 4, key=jax.random.key(0))
    assert gl.needs_key(gx.Sequential([gx.ModelOp(net, pass_key=True)]))


# --------------------------------------------------------------------------------------
# fit
# --------------------------------------------------------------------------------------
def _dataset() -> gl.ChipDataset:
    rng = _rng(4)
    scenes = [rng.integers(0, 5000, size=(7, 48, 48)).astype(np.uint16) for _ in range(2)]
    return gl.ChipDataset.from_scenes(scenes, lambda s: s[0] > 2500, chip=16)


class _Recorder(gl.Callback):
    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []

    def on_fit_start(self, state: gl.TrainState, log: gl.FitLog) -> Any:
        self.events.append(("start", int(state.step)))
        return state, log

    def on_step_end(self, state: gl.TrainState, loss: float, log: gl.FitLog) -> None:
        self.events.append(("step", int(state.step)))

    def on_epoch_end(self, state: gl.TrainState, log: gl.FitLog) -> None:
        self.events.append(("epoch", int(log.history[-1]["epoch"])))

    def on_fit_end(self, state: gl.TrainState, log: gl.FitLog) -> None:
        self.events.append(("end", int(state.step)))


def test_fit_is_the_keyed_loop_with_history_and_callbacks() -> None:
    ds = _dataset()
    pipe = pipeline(width=4)
    step = gl.make_train_step(pipe, gl.sigmoid_cross_entropy, optax.adam(1e-2))
    rec = _Recorder()
    val = ds.batch(jax.random.key(9), 8)
    result = gl.fit(
        step, step.init(pipe), ds, batch_size=4, epochs=2, steps_per_epoch=3, seed=11,
        eval_data=val, metrics=gl.segmentation_metrics(2), callbacks=[rec], progress=False,
    )  # fmt: skip
    # the same updates, written by hand: the data order is a function of (seed, step)
    state = step.init(pipe)
    losses = []
    for s in range(6):
        state, loss = step(state, ds.batch(gl.batch_key(11, s), 4))
        losses.append(float(loss))
    assert bool(eqx.tree_equal(result.state, state))
    h = result.history
    assert [r["epoch"] for r in h] == [1, 2] and [r["step"] for r in h] == [3, 6]
    np.testing.assert_allclose([r["loss"] for r in h], [np.mean(losses[:3]), np.mean(losses[3:])])
    scores = gl.evaluate(state.pipeline, val, loss=step.loss, metrics=gl.segmentation_metrics(2))
    assert h[-1]["eval_loss"] == scores["loss"] and h[-1]["iou_1"] == scores["iou_1"]
    assert rec.events == [
        ("start", 0), ("step", 1), ("step", 2), ("epoch", 1), ("step", 3),
        ("step", 4), ("step", 5), ("epoch", 2), ("step", 6), ("end", 6),
    ]  # fmt: skip
    other = gl.fit(step, step.init(pipe), ds, batch_size=4, epochs=2, steps_per_epoch=3, seed=12,
                   progress=False)  # fmt: skip
    assert not bool(eqx.tree_equal(other.state.pipeline, result.state.pipeline))


def test_fit_checks_its_arguments() -> None:
    pipe = pipeline(width=4)
    step = gl.make_train_step(pipe, gl.mse, optax.sgd(0.1))
    with pytest.raises(ConfigError, match="epochs"):
        gl.fit(step, step.init(pipe), _dataset(), batch_size=2, epochs=0, steps_per_epoch=1)
    with pytest.raises(ConfigError, match="batch_size"):
        gl.fit(step, step.init(pipe), _dataset(), epochs=1, steps_per_epoch=1)


# --------------------------------------------------------------------------------------
# SelectBands
# --------------------------------------------------------------------------------------
def test_select_bands_on_arrays_geotensors_and_prechecks() -> None:
    scene = gx.data.sentinel2_l1c(16)
    out = gl.SelectBands((0, 3, -2))(scene)
    np.testing.assert_array_equal(out.values, np.asarray(scene.values)[[0, 3, 5]])
    assert out.band_names == ("B02", "B08", "B12") and out.transform == scene.transform
    np.testing.assert_array_equal(
        gl.SelectBands((1,))(np.arange(12).reshape(3, 2, 2)), [[[4, 5], [6, 7]]]
    )
    with pytest.raises(ShapeError, match=r"\[7\] out of range for an input with 7 bands"):
        gl.SelectBands((0, 7))(scene)
    sel = gl.SelectBands((0, 1))
    assert sel.precheck((7, 32, 32), gx.core.sandbox.SANDBOX_LIMITS) == (2, 32, 32)
    with pytest.raises(ShapeError):
        sel.precheck((32, 32), gx.core.sandbox.SANDBOX_LIMITS)
    assert gx.loads_yaml(gx.dumps_yaml(sel)) == sel
    with pytest.raises(ConfigError, match="bands"):
        gl.SelectBands(())


# --------------------------------------------------------------------------------------
# SegNet (the net shipped with georax.learn)
# --------------------------------------------------------------------------------------
def test_segnet_receptive_field_config_and_checks() -> None:
    net = SegNet(3, 4, (1, 3), out_channels=2, rngs=nnx.Rngs(0))
    x = jnp.asarray(_rng().random((2, 3, 24, 24), dtype=np.float32))
    assert net(x).shape == (2, 2, 24, 24)
    # the output at (12, 12) depends on inputs within 1 + 2 * (1 + 3) = 9 pixels, no further
    g = jax.grad(lambda v: net(v)[0, 0, 12, 12])(x)
    rows, cols = np.nonzero(np.abs(np.asarray(g[0])).sum(axis=0))
    assert rows.min() >= 8 and rows.max() <= 16 and cols.min() >= 8 and cols.max() <= 16
    assert rows.max() - rows.min() == 8  # the whole field is used (dilations 1 and 3)
    cfg = gx.to_config(gx.ModelOp(net))["model"]
    assert cfg["_target_"] == "georax.learn.nets.SegNet"
    assert (cfg["in_bands"], cfg["width"], tuple(cfg["dilations"])) == (3, 4, (1, 3))
    back = gx.from_config(gx.to_config(gx.ModelOp(net), max_inline=None))
    np.testing.assert_array_equal(back(x[0]), net(x[0]))
    with pytest.raises(ConfigError, match="dilations"):
        SegNet(3, 4, (), rngs=nnx.Rngs(0))
    with pytest.raises(ConfigError, match="width"):
        SegNet(3, 0, rngs=nnx.Rngs(0))
