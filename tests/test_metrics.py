"""georax.array.metrics against NumPy / SciPy references, under jit and vmap, NaN-aware."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from scipy.special import rel_entr

import georax as gx
from georax.array import metrics as gm
from georax.core.errors import ConfigError, ShapeError

RNG = np.random.default_rng(0)


def pair(shape=(3, 16, 16), nan_frac=0.1):
    a = RNG.normal(size=shape).astype(np.float32)
    b = (a + RNG.normal(scale=0.3, size=shape)).astype(np.float32)
    a[RNG.random(shape) < nan_frac] = np.nan
    b[RNG.random(shape) < nan_frac] = np.nan
    return a, b


def np_valid(a, b):
    return np.isfinite(a) & np.isfinite(b)


def test_rmse_mae_max_match_numpy_over_pixels_finite_in_both() -> None:
    a, b = pair()
    v = np_valid(a, b)
    d = a[v].astype(np.float64) - b[v]
    np.testing.assert_allclose(gm.rmse(a, b), np.sqrt(np.mean(d**2)), rtol=1e-5)
    np.testing.assert_allclose(gm.mae(a, b), np.mean(np.abs(d)), rtol=1e-5)
    np.testing.assert_allclose(gm.max_abs_error(a, b), np.max(np.abs(d)), rtol=1e-6)


def test_where_mask_restricts_the_pixels() -> None:
    a, b = pair(nan_frac=0.0)
    where = RNG.random(a.shape) < 0.3
    d = a[where].astype(np.float64) - b[where]
    np.testing.assert_allclose(gm.rmse(a, b, where), np.sqrt(np.mean(d**2)), rtol=1e-5)
    # a per-pixel mask broadcasts over bands
    w2 = RNG.random(a.shape[1:]) < 0.5
    d2 = (a - b)[:, w2].astype(np.float64)
    np.testing.assert_allclose(gm.mae(a, b, w2), np.mean(np.abs(d2)), rtol=1e-5)


def test_unsigned_inputs_do_not_wrap_around() -> None:
    a = np.array([[0, 10]], dtype=np.uint16)
    b = np.array([[5, 0]], dtype=np.uint16)
    assert float(gm.max_abs_error(a, b)) == 10.0
    np.testing.assert_allclose(gm.rmse(a, b), np.sqrt((25 + 100) / 2))


def test_no_valid_pixel_gives_nan_not_zero() -> None:
    a = np.full((2, 2), np.nan, np.float32)
    b = np.zeros((2, 2), np.float32)
    for f in (gm.rmse, gm.mae, gm.max_abs_error):
        assert np.isnan(float(f(a, b))), f.__name__


def test_fraction_changed_counts_tolerance_and_missingness() -> None:
    a = np.array([0.0, 1.0, np.nan, np.nan, 2.0, np.inf], np.float32)
    b = np.array([0.0, 1.5, np.nan, 3.0, 2.05, np.inf], np.float32)
    # changed: 1.0->1.5, nan->3.0, 2.0->2.05 (atol 0); with atol 0.1 the last one is not
    assert float(gm.fraction_changed(a, b)) == pytest.approx(3 / 6)
    assert float(gm.fraction_changed(a, b, atol=0.1)) == pytest.approx(2 / 6)
    x, y = pair()
    ref = np.mean((np.abs(x - y) > 0.2) | (np.isnan(x) != np.isnan(y)))
    np.testing.assert_allclose(gm.fraction_changed(x, y, 0.2), ref, rtol=1e-6)


def test_kl_divergence_matches_scipy_rel_entr() -> None:
    logits_p = RNG.normal(size=(4, 8, 8))
    logits_q = RNG.normal(size=(4, 8, 8))
    p = np.exp(logits_p) / np.exp(logits_p).sum(0)
    q = np.exp(logits_q) / np.exp(logits_q).sum(0)
    p[:, 0, 0] = [1.0, 0.0, 0.0, 0.0]  # 0 log 0 = 0
    ref = rel_entr(p, q).sum(0).mean()
    np.testing.assert_allclose(
        gm.kl_divergence(p.astype(np.float32), q.astype(np.float32)), ref, rtol=1e-4
    )
    assert float(gm.kl_divergence(p, p)) == pytest.approx(0.0, abs=1e-6)
    # a class q rules out is penalised by -log(eps), finite
    hard = np.zeros_like(q)
    hard[1] = 1.0
    val = float(gm.kl_divergence(p, hard))
    assert np.isfinite(val) and val > 5


def test_confusion_matrix_matches_a_numpy_count_and_skips_unlabelled() -> None:
    t = RNG.integers(-1, 5, size=(20, 20))
    p = RNG.integers(0, 5, size=(20, 20))
    p[0, :5] = 9  # outside [0, C): left out
    cm = np.asarray(gm.confusion_matrix(t, p, 5))
    ref = np.zeros((5, 5), int)
    for ti, pi in zip(t.ravel(), p.ravel(), strict=True):
        if 0 <= ti < 5 and 0 <= pi < 5:
            ref[ti, pi] += 1
    np.testing.assert_array_equal(cm, ref)
    # float label maps: NaN is "no class"
    tf = t.astype(np.float32)
    tf[t < 0] = np.nan
    np.testing.assert_array_equal(gm.confusion_matrix(tf, p, 5), ref)


def test_accuracy_iou_f1_from_the_confusion_matrix() -> None:
    cm = np.array([[5, 1, 0], [2, 3, 0], [0, 0, 0]])
    tp = np.diag(cm).astype(float)
    rows, cols = cm.sum(1), cm.sum(0)
    assert float(gm.accuracy(cm)) == pytest.approx(8 / 11)
    iou = np.asarray(gm.iou(cm))
    np.testing.assert_allclose(iou[:2], tp[:2] / (rows + cols - tp)[:2], rtol=1e-6)
    assert np.isnan(iou[2])  # class absent everywhere: no IoU
    assert float(gm.mean_iou(cm)) == pytest.approx(np.mean(iou[:2]), rel=1e-6)
    f1 = np.asarray(gm.f1(cm))
    prec, rec = tp[:2] / cols[:2], tp[:2] / rows[:2]
    np.testing.assert_allclose(f1[:2], 2 * prec * rec / (prec + rec), rtol=1e-6)
    assert float(gm.macro_f1(cm)) == pytest.approx(np.mean(f1[:2]), rel=1e-6)


def test_confusion_shift_rows_sum_to_zero_and_show_where_recall_went() -> None:
    truth = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    a = np.array([0, 0, 0, 0, 1, 1, 1, 1])  # perfect
    b = np.array([0, 0, 1, 1, 1, 1, 1, 1])  # half of class 0 now predicted as class 1
    s = np.asarray(gm.confusion_shift(truth, a, b, 2))
    np.testing.assert_allclose(s, [[-0.5, 0.5], [0.0, 0.0]])
    np.testing.assert_allclose(s.sum(1), 0.0, atol=1e-7)


def test_metrics_are_the_same_under_jit_and_vmap() -> None:
    a, b = pair(shape=(5, 3, 8, 8))
    for f in (gm.rmse, gm.mae, gm.max_abs_error, gm.fraction_changed):
        eager = np.array([float(f(x, y)) for x, y in zip(a, b, strict=True)])
        batched = np.asarray(jax.vmap(jax.jit(f))(a, b))
        np.testing.assert_allclose(batched, eager, rtol=1e-6, err_msg=f.__name__)
    cmj = jax.jit(gm.confusion_matrix, static_argnums=2)
    t, p = RNG.integers(0, 3, (10, 10)), RNG.integers(0, 3, (10, 10))
    np.testing.assert_array_equal(cmj(t, p, 3), gm.confusion_matrix(t, p, 3))


def test_metrics_accept_carriers() -> None:
    a, b = pair(nan_frac=0.0)
    ga, gb = gx.GeoTensor(a), gx.GeoTensor(b)
    assert float(gm.rmse(ga, gb)) == pytest.approx(float(gm.rmse(a, b)))


def test_shape_mismatch_is_a_typed_error_not_broadcasting() -> None:
    with pytest.raises(ShapeError, match="same shape"):
        gm.rmse(np.zeros((2, 3)), np.zeros((3,)))
    with pytest.raises(ShapeError):
        gm.confusion_matrix(np.zeros((2, 3), int), np.zeros((2, 2), int), 3)
    with pytest.raises(ConfigError, match="num_classes"):
        gm.confusion_matrix(np.zeros(3, int), np.zeros(3, int), 0)


def test_metric_objects_name_and_value() -> None:
    a, b = pair()
    assert gm.RMSE().name == "rmse" and float(gm.RMSE()(a, b)) == float(gm.rmse(a, b))
    assert float(gm.FractionChanged(atol=0.2)(a, b)) == float(gm.fraction_changed(a, b, 0.2))
    with pytest.raises(ConfigError, match="atol"):
        gm.FractionChanged(atol=-1.0)
    # scores reduced by argmax along the class axis, then the off-diagonal mass
    sa = np.zeros((3, 2, 2), np.float32)
    sa[0] = 1.0
    sb = sa.copy()
    sb[:, 0, 0] = [0.0, 0.0, 1.0]
    assert float(gm.ConfusionShift(num_classes=3, axis=0)(sa, sb)) == pytest.approx(0.25)
    assert float(jax.jit(gm.ConfusionShift(num_classes=3, axis=0))(sa, sb)) == pytest.approx(0.25)
    with pytest.raises(ConfigError):
        gm.ConfusionShift(num_classes=0)
