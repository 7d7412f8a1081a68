"""Losses for segmentation and regression: pure, jit-safe ``loss(pred, target) -> scalar``.

Every loss here takes the model's predictions for a batch (``(B, ...)``, bands-first rasters:
class scores on axis ``-3``) and the targets, and returns **one scalar, the mean over the valid
elements** -- the contract :func:`georax.learn.make_train_step` expects. Pixels are left out
(weight 0, no NaN in the gradient) where ``where`` is false and where the target says "no
value": NaN for float targets, a label outside ``[0, num_classes)`` (e.g. ``-1``) for class
targets. A batch without any valid element has loss 0 (nothing to learn), not NaN.

The element-wise formulas are optax's (:func:`optax.sigmoid_binary_cross_entropy`,
:func:`optax.softmax_cross_entropy_with_integer_labels`, :func:`optax.huber_loss`); this module
adds the raster conventions (class axis, masks, binary maps with or without a channel axis).

Binary segmentation: a single-channel score map ``(..., 1, H, W)`` may be compared with labels
``(..., H, W)`` (the channel axis is dropped), as a chip dataset gives them.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, ArrayLike, Bool, Float, Num

from georax.core.carrier import values_of
from georax.core.errors import ShapeError

__all__ = [
    "dice_loss",
    "huber",
    "mae",
    "mse",
    "sigmoid_cross_entropy",
    "softmax_cross_entropy",
]


def _masked_mean(values: Array, valid: Array) -> Array:
    """Mean of ``values`` over ``valid`` (0 when nothing is valid)."""
    w = valid.astype(values.dtype)
    return jnp.sum(values * w) / jnp.maximum(jnp.sum(w), 1)


def _where(where: Any, shape: tuple[int, ...], who: str) -> Array:
    if where is None:
        return jnp.ones(shape, bool)
    w = jnp.asarray(values_of(where)).astype(bool)
    try:
        return jnp.broadcast_to(w, shape)
    except ValueError:
        raise ShapeError(
            f"{who}: where= of shape {w.shape} does not broadcast to {shape}"
        ) from None


def _binary_pair(logits: Any, labels: Any, axis: int, who: str) -> tuple[Array, Array]:
    """Scores and float labels of one shape (a lone channel axis of the scores dropped)."""
    z, y = jnp.asarray(values_of(logits)), jnp.asarray(values_of(labels))
    if z.ndim == y.ndim + 1 and z.shape[axis] == 1:
        z = jnp.squeeze(z, axis)
    if z.shape != y.shape:
        raise ShapeError(
            f"{who}: scores of shape {jnp.shape(values_of(logits))} and labels of shape "
            f"{y.shape} do not match (a (..., 1, H, W) score map goes with (..., H, W) labels)"
        )
    dtype = jnp.promote_types(z.dtype, jnp.float32)
    return z.astype(dtype), y.astype(dtype)


def _class_pair(logits: Any, labels: Any, axis: int, who: str) -> tuple[Array, Array, Array]:
    """Scores with the class axis last, int labels, and which labels are real classes."""
    z, y = jnp.asarray(values_of(logits)), jnp.asarray(values_of(labels))
    if not -z.ndim <= axis < z.ndim:
        raise ShapeError(f"{who}: class axis {axis} is out of range for scores of shape {z.shape}")
    z = jnp.moveaxis(z, axis, -1)
    if z.shape[:-1] != y.shape:
        raise ShapeError(
            f"{who}: scores of shape {jnp.shape(values_of(logits))} (classes on axis {axis}) "
            f"need labels of shape {z.shape[:-1]}, got {y.shape}"
        )
    if jnp.issubdtype(y.dtype, jnp.floating):
        y = jnp.where(jnp.isfinite(y), y, -1)
    y = y.astype(jnp.int32)
    n = z.shape[-1]
    valid = (y >= 0) & (y < n)
    return z.astype(jnp.promote_types(z.dtype, jnp.float32)), jnp.where(valid, y, 0), valid


def sigmoid_cross_entropy(
    logits: Float[ArrayLike, "*batch"],
    labels: Num[ArrayLike, "*batch"],
    where: Bool[ArrayLike, "*batch"] | None = None,
    *,
    axis: int = -3,
) -> Float[Array, ""]:
    r"""Binary cross-entropy on logits, averaged over valid pixels.

    $$\ell = -\big[y \log \sigma(z) + (1 - y) \log(1 - \sigma(z))\big]$$

    computed stably by :func:`optax.sigmoid_binary_cross_entropy`. Labels may be soft (in
    ``[0, 1]``); NaN labels are left out.

    **Arguments:**

    - `logits`: scores ``z``; a channel axis of size 1 at ``axis`` is dropped to match labels.
    - `labels`: targets ``y`` (bool, int or float).
    - `where`: optional mask of pixels that count.
    - `axis`: where the lone channel axis of ``logits`` is (bands-first: ``-3``).

    **Returns:** the mean loss (a scalar).
    """
    z, y = _binary_pair(logits, labels, axis, "sigmoid_cross_entropy")
    valid = jnp.isfinite(y) & _where(where, y.shape, "sigmoid_cross_entropy")
    y = jnp.where(valid, y, 0)
    return _masked_mean(optax.sigmoid_binary_cross_entropy(z, y), valid)


def softmax_cross_entropy(
    logits: Float[ArrayLike, "*batch C H W"],
    labels: Num[ArrayLike, "*batch H W"],
    where: Bool[ArrayLike, "*batch H W"] | None = None,
    *,
    axis: int = -3,
) -> Float[Array, ""]:
    r"""Multi-class cross-entropy on logits with integer labels, averaged over valid pixels.

    $$\ell = -\log \operatorname{softmax}(z)_{y} = \log \textstyle\sum_c e^{z_c} - z_y$$

    (:func:`optax.softmax_cross_entropy_with_integer_labels`). Labels outside
    ``[0, num_classes)`` -- ``-1`` for "no class", NaN in a float label map -- are left out.

    **Arguments:**

    - `logits`: class scores with the classes on ``axis`` (bands-first: ``-3``).
    - `labels`: integer class labels, the shape of ``logits`` without ``axis``.
    - `where`: optional mask of pixels that count.
    - `axis`: the class axis of ``logits``.

    **Returns:** the mean loss (a scalar).
    """
    z, y, valid = _class_pair(logits, labels, axis, "softmax_cross_entropy")
    valid = valid & _where(where, y.shape, "softmax_cross_entropy")
    return _masked_mean(optax.softmax_cross_entropy_with_integer_labels(z, y), valid)


def dice_loss(
    logits: Float[ArrayLike, "*batch C H W"],
    labels: Num[ArrayLike, "*batch H W"],
    where: Bool[ArrayLike, "*batch H W"] | None = None,
    *,
    axis: int = -3,
    smooth: float = 1.0,
) -> Float[Array, ""]:
    r"""Soft Dice loss over the whole batch: one minus the mean Dice coefficient of the classes.

    For class probabilities $p$ and one-hot targets $t$, summed over every valid pixel of the
    batch,

    $$\mathcal{L} = 1 - \frac{1}{K}\sum_{k} \frac{2 \sum p_k t_k + s}{\sum p_k + \sum t_k + s}$$

    with $s$ = ``smooth`` (keeps an absent class at Dice 1 and the gradient finite). A single
    score channel (or scores without a class axis of the labels' shape) is binary: $p =
    \sigma(z)$, and only the foreground class enters ($K = 1$, soft labels allowed). Otherwise
    $p = \operatorname{softmax}(z)$ over ``axis`` and every class enters. Dice is insensitive to
    class imbalance (a small cloud fraction), which is why it is often added to cross-entropy.

    **Arguments:**

    - `logits`: scores (see above).
    - `labels`: binary labels (binary case) or integer class labels.
    - `where`: optional mask of pixels that count.
    - `axis`: the class axis of ``logits``.
    - `smooth`: the additive smoothing ``s``.

    **Returns:** the loss, in ``[0, 1]``.
    """
    z_arr = jnp.asarray(values_of(logits))
    y_arr = jnp.asarray(values_of(labels))
    binary = z_arr.shape == y_arr.shape or (z_arr.ndim == y_arr.ndim + 1 and z_arr.shape[axis] == 1)
    if binary:
        z, y = _binary_pair(logits, labels, axis, "dice_loss")
        valid = jnp.isfinite(y) & _where(where, y.shape, "dice_loss")
        w = valid.astype(z.dtype)
        p, t = jax.nn.sigmoid(z) * w, jnp.where(valid, y, 0) * w
        inter, total = jnp.sum(p * t), jnp.sum(p) + jnp.sum(t)
        return 1 - (2 * inter + smooth) / (total + smooth)
    z, y, valid = _class_pair(logits, labels, axis, "dice_loss")
    valid = valid & _where(where, y.shape, "dice_loss")
    w = valid.astype(z.dtype)[..., None]
    p = jax.nn.softmax(z, axis=-1) * w
    t = jax.nn.one_hot(y, z.shape[-1], dtype=z.dtype) * w
    lead = tuple(range(p.ndim - 1))
    inter = jnp.sum(p * t, axis=lead)
    total = jnp.sum(p, axis=lead) + jnp.sum(t, axis=lead)
    return 1 - jnp.mean((2 * inter + smooth) / (total + smooth))


def _regression(pred: Any, target: Any, where: Any, who: str) -> tuple[Array, Array, Array]:
    p, t = jnp.asarray(values_of(pred)), jnp.asarray(values_of(target))
    if p.shape != t.shape:
        raise ShapeError(f"{who}: predictions {p.shape} and targets {t.shape} differ in shape")
    dtype = jnp.promote_types(jnp.result_type(p, t), jnp.float32)
    p, t = p.astype(dtype), t.astype(dtype)
    valid = jnp.isfinite(t) & _where(where, t.shape, who)
    return p, jnp.where(valid, t, p), valid  # invalid targets equal the prediction: 0 gradient


def mse(
    pred: Float[ArrayLike, "*shape"],
    target: Float[ArrayLike, "*shape"],
    where: Bool[ArrayLike, "*shape"] | None = None,
) -> Float[Array, ""]:
    r"""Mean squared error $\frac{1}{|V|}\sum_{i \in V} (p_i - t_i)^2$ over valid elements.

    **Arguments:** ``pred``, ``target`` of one shape (NaN targets left out), optional ``where``.

    **Returns:** a scalar.
    """
    p, t, valid = _regression(pred, target, where, "mse")
    return _masked_mean(jnp.square(p - t), valid)


def mae(
    pred: Float[ArrayLike, "*shape"],
    target: Float[ArrayLike, "*shape"],
    where: Bool[ArrayLike, "*shape"] | None = None,
) -> Float[Array, ""]:
    r"""Mean absolute error $\frac{1}{|V|}\sum_{i \in V} |p_i - t_i|$ over valid elements.

    **Arguments:** as :func:`mse`.

    **Returns:** a scalar.
    """
    p, t, valid = _regression(pred, target, where, "mae")
    return _masked_mean(jnp.abs(p - t), valid)


def huber(
    pred: Float[ArrayLike, "*shape"],
    target: Float[ArrayLike, "*shape"],
    where: Bool[ArrayLike, "*shape"] | None = None,
    *,
    delta: float = 1.0,
) -> Float[Array, ""]:
    r"""Mean Huber loss: quadratic for $|p - t| \le \delta$, linear beyond.

    $$\ell = \begin{cases} \tfrac12 (p - t)^2 & |p - t| \le \delta \\
    \delta\,(|p - t| - \tfrac12\delta) & \text{otherwise} \end{cases}$$

    (:func:`optax.huber_loss`): robust to outliers in the targets.

    **Arguments:** as :func:`mse`, plus `delta` (> 0).

    **Returns:** a scalar.
    """
    p, t, valid = _regression(pred, target, where, "huber")
    return _masked_mean(optax.huber_loss(p, t, delta=delta), valid)
