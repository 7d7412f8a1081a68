"""Evaluation metrics for training loops, built on :mod:`georax.array.metrics`.

A *metrics function* maps a batch of predictions and its targets to a dict of named scalars:
``metrics(pred, target) -> {"mean_iou": ..., ...}``; :func:`georax.learn.evaluate` and
:func:`georax.learn.fit` call it on the whole evaluation set at once (predictions of every
batch concatenated), so ratios such as IoU are exact, not averages of per-batch ratios.

The arithmetic is :mod:`georax.array.metrics` (confusion matrix, accuracy, IoU, F1, RMSE, MAE);
this module only decodes model scores into labels and names the results.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
from jaxtyping import Array, Float, Int, Num

from georax.array import metrics as array_metrics
from georax.core.carrier import values_of
from georax.core.errors import ConfigError, ShapeError

__all__ = ["MetricsFn", "predict_labels", "regression_metrics", "segmentation_metrics"]

#: ``metrics(pred, target) -> {name: scalar}``.
MetricsFn = Callable[[Any, Any], dict[str, Array]]


def predict_labels(
    scores: Float[Array, "*batch C H W"], *, axis: int = -3
) -> Int[Array, "*batch H W"]:
    """Class labels from model scores: ``argmax`` over ``axis``, or ``score > 0`` for one channel.

    A single score channel is a binary logit (class 1 where the logit is positive, i.e. the
    sigmoid probability exceeds 0.5), matching :func:`~georax.learn.losses.sigmoid_cross_entropy`.

    **Arguments:**

    - `scores`: logits with the classes on ``axis`` (bands-first: ``-3``).
    - `axis`: the class axis.

    **Returns:** ``int32`` labels, ``scores`` without ``axis``.
    """
    z = jnp.asarray(values_of(scores))
    if not -z.ndim <= axis < z.ndim:
        raise ShapeError(f"predict_labels: axis {axis} is out of range for shape {z.shape}")
    if z.shape[axis] == 1:
        return (jnp.squeeze(z, axis) > 0).astype(jnp.int32)
    return jnp.argmax(z, axis=axis).astype(jnp.int32)


def segmentation_metrics(num_classes: int, *, axis: int = -3) -> MetricsFn:
    """Metrics for class scores against integer labels, from one confusion matrix.

    **Arguments:**

    - `num_classes`: ``C`` (2 for a binary single-channel logit).
    - `axis`: the class axis of the scores.

    **Returns:** ``metrics(scores, labels)`` giving ``accuracy``, ``mean_iou``, ``macro_f1`` and
    ``iou_<k>`` for each class ``k`` (NaN for a class absent from truth and predictions).
    Labels outside ``[0, C)`` (``-1``, NaN) are left out.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError("segmentation_metrics", "num_classes", num_classes, "must be an int >= 1")

    def metrics(scores: Any, labels: Num[Array, "*batch H W"]) -> dict[str, Array]:
        cm = array_metrics.confusion_matrix(labels, predict_labels(scores, axis=axis), num_classes)
        out = {
            "accuracy": array_metrics.accuracy(cm),
            "mean_iou": array_metrics.mean_iou(cm),
            "macro_f1": array_metrics.macro_f1(cm),
        }
        per_class = array_metrics.iou(cm)
        out.update({f"iou_{k}": per_class[k] for k in range(num_classes)})
        return out

    return metrics


def regression_metrics() -> MetricsFn:
    """``metrics(pred, target)`` giving ``rmse`` and ``mae`` over pixels where both are finite."""

    def metrics(pred: Any, target: Any) -> dict[str, Array]:
        return {"rmse": array_metrics.rmse(pred, target), "mae": array_metrics.mae(pred, target)}

    return metrics
