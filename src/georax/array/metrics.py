"""Carrier-neutral, jit-safe comparison metrics: errors, probabilities and classes.

Two families, both pure functions of arrays (a :class:`~georax.core.carrier.Carrier` such as a
GeoTensor is accepted anywhere an array is and its ``values`` are used), traceable under
``jax.jit`` / ``jax.vmap``, with no Python loop over pixels:

- **Continuous outputs** (reflectance, an index, a retrieval): :func:`rmse`, :func:`mae`,
  :func:`max_abs_error`, :func:`fraction_changed`.
- **Probabilities**: :func:`kl_divergence` over a class axis (RMSE is the wrong question for a
  probability map: it does not see how surprising one distribution is under the other).
- **Classes** (hard labels): :func:`confusion_matrix` and what derives from it --
  :func:`accuracy`, :func:`iou` (per class), :func:`mean_iou`, :func:`f1` (per class),
  :func:`macro_f1` -- and :func:`confusion_shift`, how each true class's predictions move
  between two versions of a classifier.

**Missing values.** Geospatial outputs carry NaN where data is missing (clouds, outside a
footprint). The error metrics average over the pixels where *both* arrays are finite (and
``where`` is true), so a missing pixel is not a zero error; :func:`fraction_changed` instead
counts a pixel whose missingness differs as changed, which is how a newly masked or newly
unmasked region shows up. A comparison with no valid pixel returns NaN (an empty mean), never 0.
Class labels outside ``[0, num_classes)`` (e.g. ``-1`` for "no class") are left out of
confusion matrices.

**Precision.** Inputs are promoted to at least float32 before subtracting (two ``uint16`` scenes
would otherwise wrap around), and reductions run in that dtype.

The :class:`Metric` objects (:class:`RMSE`, :class:`MAE`, :class:`MaxAbsError`,
:class:`FractionChanged`, :class:`KLDivergence`, :class:`ConfusionShift`) wrap these functions as
small equinox modules with a ``name``, for harnesses that compare two pipelines per input
(:class:`georax.diff.AB`): ``metric(a, b) -> scalar``.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int, Num

from georax.core.carrier import values_of
from georax.core.errors import ConfigError, ShapeError

__all__ = [
    "MAE",
    "RMSE",
    "ConfusionShift",
    "FractionChanged",
    "KLDivergence",
    "MaxAbsError",
    "Metric",
    "accuracy",
    "confusion_matrix",
    "confusion_shift",
    "f1",
    "fraction_changed",
    "iou",
    "kl_divergence",
    "macro_f1",
    "mae",
    "max_abs_error",
    "mean_iou",
    "rmse",
]


# ------------------------------------------------------------------------------------------------
# Shared pieces
# ------------------------------------------------------------------------------------------------
def _pair(a: Any, b: Any, who: str) -> tuple[Array, Array]:
    """Both inputs as arrays of one float dtype (at least float32), shapes checked equal."""
    a, b = jnp.asarray(values_of(a)), jnp.asarray(values_of(b))
    if a.shape != b.shape:
        raise ShapeError(
            f"{who}: the two arrays must have the same shape, got {a.shape} and {b.shape} "
            "(no broadcasting: a shape change between two pipeline versions is itself a finding)"
        )
    dtype = jnp.promote_types(jnp.result_type(a, b), jnp.float32)
    if not jnp.issubdtype(dtype, jnp.floating):  # complex stays complex: |a - b| is its modulus
        dtype = jnp.promote_types(dtype, jnp.complex64)
    return a.astype(dtype), b.astype(dtype)


def _mask(where: Any, shape: tuple[int, ...], who: str) -> Array:
    if where is None:
        return jnp.ones(shape, dtype=bool)
    w = jnp.asarray(values_of(where))
    if w.shape != shape:
        try:
            w = jnp.broadcast_to(w, shape)
        except ValueError:
            raise ShapeError(
                f"{who}: where= of shape {w.shape} does not broadcast to {shape}"
            ) from None
    return w.astype(bool)


def _finite_pair(a: Array, b: Array, where: Any, who: str) -> tuple[Array, Array]:
    """``|a - b|`` with invalid pixels zeroed, and the validity mask (both finite and ``where``)."""
    valid = jnp.isfinite(a) & jnp.isfinite(b) & _mask(where, a.shape, who)
    diff = jnp.where(valid, jnp.abs(a - b), 0)
    return diff, valid


def _safe_mean(total: Array, count: Array) -> Array:
    """``total / count``, NaN when ``count`` is 0 (an empty mean)."""
    return jnp.where(count > 0, total / jnp.maximum(count, 1), jnp.nan)


# ------------------------------------------------------------------------------------------------
# Continuous outputs
# ------------------------------------------------------------------------------------------------
def rmse(
    a: Num[ArrayLike, " *shape"],
    b: Num[ArrayLike, " *shape"],
    where: Bool[ArrayLike, " *shape"] | None = None,
) -> Float[Array, ""]:
    r"""Root-mean-square error over the pixels where both arrays are finite.

    $$\mathrm{RMSE} = \sqrt{\tfrac{1}{|V|}\textstyle\sum_{i \in V} (a_i - b_i)^2},\quad
    V = \{i : a_i, b_i \text{ finite},\ \mathrm{where}_i\}$$

    **Arguments:**

    - `a`, `b`: arrays (or carriers) of the same shape.
    - `where`: optional mask (broadcast to the shape) restricting the pixels compared.

    **Returns:** a scalar; NaN when no pixel is valid.
    """
    a, b = _pair(a, b, "rmse")
    diff, valid = _finite_pair(a, b, where, "rmse")
    return jnp.sqrt(_safe_mean(jnp.sum(diff * diff), jnp.sum(valid)))


def mae(
    a: Num[ArrayLike, " *shape"],
    b: Num[ArrayLike, " *shape"],
    where: Bool[ArrayLike, " *shape"] | None = None,
) -> Float[Array, ""]:
    r"""Mean absolute error over the pixels where both arrays are finite.

    $$\mathrm{MAE} = \tfrac{1}{|V|}\textstyle\sum_{i \in V} |a_i - b_i|$$ with ``V`` as in
    :func:`rmse`.

    **Arguments:** as :func:`rmse`.

    **Returns:** a scalar; NaN when no pixel is valid.
    """
    a, b = _pair(a, b, "mae")
    diff, valid = _finite_pair(a, b, where, "mae")
    return _safe_mean(jnp.sum(diff), jnp.sum(valid))


def max_abs_error(
    a: Num[ArrayLike, " *shape"],
    b: Num[ArrayLike, " *shape"],
    where: Bool[ArrayLike, " *shape"] | None = None,
) -> Float[Array, ""]:
    r"""The largest absolute difference, $\max_{i \in V} |a_i - b_i|$ (``V`` as in :func:`rmse`).

    **Arguments:** as :func:`rmse`.

    **Returns:** a scalar; NaN when no pixel is valid.
    """
    a, b = _pair(a, b, "max_abs_error")
    diff, valid = _finite_pair(a, b, where, "max_abs_error")
    return jnp.where(jnp.any(valid), jnp.max(diff, initial=0.0), jnp.nan)


def fraction_changed(
    a: Num[ArrayLike, " *shape"],
    b: Num[ArrayLike, " *shape"],
    atol: float | Float[ArrayLike, ""] = 0.0,
    where: Bool[ArrayLike, " *shape"] | None = None,
) -> Float[Array, ""]:
    r"""The fraction of pixels that changed by more than ``atol``, missingness included.

    A pixel counts as changed when $|a_i - b_i| > \mathrm{atol}$, or when exactly one of $a_i$,
    $b_i$ is NaN (newly masked or newly filled). Two NaNs, or two equal infinities, are
    unchanged. The denominator is every pixel selected by ``where`` (all pixels by default).

    **Arguments:**

    - `a`, `b`: arrays (or carriers) of the same shape.
    - `atol`: absolute tolerance; ``0`` counts any difference.
    - `where`: optional mask restricting the pixels counted.

    **Returns:** a scalar in ``[0, 1]``; NaN when ``where`` selects no pixel.
    """
    a, b = _pair(a, b, "fraction_changed")
    sel = _mask(where, a.shape, "fraction_changed")
    # |inf - inf| is NaN and NaN > atol is False: equal infinities are unchanged.
    changed = (jnp.abs(a - b) > atol) | (jnp.isnan(a) != jnp.isnan(b))
    return _safe_mean(jnp.sum(changed & sel).astype(jnp.float32), jnp.sum(sel))


# ------------------------------------------------------------------------------------------------
# Probabilities
# ------------------------------------------------------------------------------------------------
def kl_divergence(
    p: Float[ArrayLike, " *shape"],
    q: Float[ArrayLike, " *shape"],
    axis: int = -3,
    eps: float = 1e-12,
    where: Bool[ArrayLike, " *pixels"] | None = None,
) -> Float[Array, ""]:
    r"""Mean Kullback-Leibler divergence $D_{KL}(p \,\|\, q)$ of per-pixel class distributions.

    For each pixel, $D = \sum_c p_c \log\frac{p_c}{\max(q_c, \varepsilon)}$ with $0 \log 0 = 0$
    (natural log: nats), averaged over pixels whose probabilities are all finite in both
    arrays (and ``where``). ``p`` and ``q`` are used as given: each must already sum to 1 along
    ``axis``. The divergence is asymmetric: ``p`` is the reference (the old pipeline), and a
    class the reference deems possible but ``q`` rules out is penalised by
    $-\log\varepsilon$ (about 27.6 nats at the default) rather than becoming infinite.

    **Arguments:**

    - `p`, `q`: probabilities of the same shape; the class axis is ``axis`` (default ``-3``,
      the band axis of a bands-first ``(..., C, H, W)`` raster).
    - `axis`: the class axis.
    - `eps`: floor for ``q``.
    - `where`: optional pixel mask of the shape with ``axis`` removed.

    **Returns:** a scalar (nats); NaN when no pixel is valid.
    """
    p, q = _pair(p, q, "kl_divergence")
    if not -p.ndim <= axis < p.ndim:
        raise ShapeError(f"kl_divergence: axis {axis} is out of range for shape {p.shape}")
    per_pixel = jnp.sum(
        jax.scipy.special.xlogy(p, p) - jax.scipy.special.xlogy(p, jnp.maximum(q, eps)), axis=axis
    )
    finite = jnp.all(jnp.isfinite(p) & jnp.isfinite(q), axis=axis)
    valid = finite & _mask(where, per_pixel.shape, "kl_divergence")
    return _safe_mean(jnp.sum(jnp.where(valid, per_pixel, 0)), jnp.sum(valid))


# ------------------------------------------------------------------------------------------------
# Classes
# ------------------------------------------------------------------------------------------------
def _labels(x: Any) -> Array:
    x = jnp.asarray(values_of(x))
    if jnp.issubdtype(x.dtype, jnp.floating):  # float class maps (NaN where unclassified)
        return jnp.where(jnp.isfinite(x), x, -1).astype(jnp.int32)
    return x.astype(jnp.int32)


def confusion_matrix(
    y_true: Int[ArrayLike, " *shape"],
    y_pred: Int[ArrayLike, " *shape"],
    num_classes: int,
    where: Bool[ArrayLike, " *shape"] | None = None,
) -> Int[Array, "C C"]:
    r"""Counts $C_{ij}$ of pixels with true class $i$ predicted as class $j$.

    Pixels where either label is outside ``[0, num_classes)`` (``-1``, NaN in a float map) or
    ``where`` is false are left out. Computed with one ``bincount`` of ``i * C + j`` -- no loop
    over classes or pixels.

    **Arguments:**

    - `y_true`, `y_pred`: integer (or float, NaN = no class) label arrays of the same shape.
    - `num_classes`: ``C`` (a Python int: it fixes the output shape).
    - `where`: optional mask restricting the pixels counted.

    **Returns:** an ``int32`` array ``(C, C)``, rows = true class, columns = predicted class.
    """
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ConfigError("confusion_matrix", "num_classes", num_classes, "must be an int >= 1")
    t, p = _labels(y_true), _labels(y_pred)
    if t.shape != p.shape:
        raise ShapeError(
            f"confusion_matrix: label arrays must have the same shape, got {t.shape} and {p.shape}"
        )
    valid = (t >= 0) & (t < num_classes) & (p >= 0) & (p < num_classes)
    valid = valid & _mask(where, t.shape, "confusion_matrix")
    index = jnp.where(valid, t * num_classes + p, 0).ravel()
    weights = valid.ravel().astype(jnp.int32)
    counts = jnp.bincount(index, weights=weights, length=num_classes * num_classes)
    return counts.astype(jnp.int32).reshape(num_classes, num_classes)


def _ratio(num: Array, den: Array) -> Array:
    num, den = num.astype(jnp.float32), den.astype(jnp.float32)
    return jnp.where(den > 0, num / jnp.maximum(den, 1), jnp.nan)


def accuracy(cm: Int[ArrayLike, "C C"]) -> Float[Array, ""]:
    r"""Overall accuracy $\operatorname{tr}(C) / \sum_{ij} C_{ij}$ (NaN for an empty matrix)."""
    cm = jnp.asarray(cm)
    return _ratio(jnp.trace(cm), jnp.sum(cm))


def iou(cm: Int[ArrayLike, "C C"]) -> Float[Array, " C"]:
    r"""Per-class intersection over union, $C_{kk} / (\sum_j C_{kj} + \sum_i C_{ik} - C_{kk})$.

    A class that appears neither in the truth nor in the predictions has no IoU: NaN.
    """
    cm = jnp.asarray(cm)
    tp = jnp.diagonal(cm)
    return _ratio(tp, jnp.sum(cm, axis=1) + jnp.sum(cm, axis=0) - tp)


def mean_iou(cm: Int[ArrayLike, "C C"]) -> Float[Array, ""]:
    """Mean of :func:`iou` over the classes that have one (NaN entries left out)."""
    return jnp.nanmean(iou(cm))


def f1(cm: Int[ArrayLike, "C C"]) -> Float[Array, " C"]:
    r"""Per-class F1 score, $2 C_{kk} / (\sum_j C_{kj} + \sum_i C_{ik})$ (NaN for an absent class).

    This is the harmonic mean of precision and recall, written without either (so a class with
    support but no prediction gets 0, not NaN).
    """
    cm = jnp.asarray(cm)
    return _ratio(2 * jnp.diagonal(cm), jnp.sum(cm, axis=1) + jnp.sum(cm, axis=0))


def macro_f1(cm: Int[ArrayLike, "C C"]) -> Float[Array, ""]:
    """Mean of :func:`f1` over the classes that have one (NaN entries left out)."""
    return jnp.nanmean(f1(cm))


def confusion_shift(
    y_true: Int[ArrayLike, " *shape"],
    pred_a: Int[ArrayLike, " *shape"],
    pred_b: Int[ArrayLike, " *shape"],
    num_classes: int,
    where: Bool[ArrayLike, " *shape"] | None = None,
) -> Float[Array, "C C"]:
    r"""How each true class's predictions move from classifier A to classifier B.

    $$S = \hat C^{B} - \hat C^{A},\qquad \hat C_{ij} = C_{ij} / \textstyle\sum_j C_{ij}$$

    (row-normalised confusion matrices against the same truth). Each row of ``S`` sums to 0: a
    negative diagonal entry is recall lost on that class, and the positive off-diagonal entries
    of the row say which classes took it. Rows of classes absent from the truth are 0.

    **Arguments:**

    - `y_true`: the reference labels.
    - `pred_a`, `pred_b`: the two versions' labels, same shape.
    - `num_classes`, `where`: as :func:`confusion_matrix`.

    **Returns:** a ``float32`` array ``(C, C)``.
    """

    def normalised(pred: Any) -> Array:
        cm = confusion_matrix(y_true, pred, num_classes, where).astype(jnp.float32)
        support = jnp.sum(cm, axis=1, keepdims=True)
        return jnp.where(support > 0, cm / jnp.maximum(support, 1), 0.0)

    return normalised(pred_b) - normalised(pred_a)


# ------------------------------------------------------------------------------------------------
# Metric objects (for comparison harnesses)
# ------------------------------------------------------------------------------------------------
class Metric(eqx.Module):
    """A named comparison ``metric(a, b) -> scalar`` (abstract).

    ``a`` is the reference (the old pipeline's output), ``b`` the candidate. Subclasses set the
    class attribute ``name`` (the key in reports) and implement ``__call__``; being equinox
    modules, they pass through ``jax.jit`` (their fields are static configuration).
    """

    name: ClassVar[str]

    @abc.abstractmethod
    def __call__(self, a: Any, b: Any) -> Float[Array, ""]:
        """The metric of candidate ``b`` against reference ``a``."""


class RMSE(Metric):
    """:func:`rmse` of the two outputs."""

    name: ClassVar[str] = "rmse"

    def __call__(self, a: Any, b: Any) -> Float[Array, ""]:
        return rmse(a, b)


class MAE(Metric):
    """:func:`mae` of the two outputs."""

    name: ClassVar[str] = "mae"

    def __call__(self, a: Any, b: Any) -> Float[Array, ""]:
        return mae(a, b)


class MaxAbsError(Metric):
    """:func:`max_abs_error` of the two outputs."""

    name: ClassVar[str] = "max_abs_error"

    def __call__(self, a: Any, b: Any) -> Float[Array, ""]:
        return max_abs_error(a, b)


class FractionChanged(Metric):
    """:func:`fraction_changed` of the two outputs, with tolerance ``atol``."""

    atol: float = eqx.field(static=True, default=0.0)
    name: ClassVar[str] = "fraction_changed"

    def __check_init__(self) -> None:
        if not isinstance(self.atol, int | float) or isinstance(self.atol, bool) or self.atol < 0:
            raise ConfigError("FractionChanged", "atol", self.atol, "must be a number >= 0")

    def __call__(self, a: Any, b: Any) -> Float[Array, ""]:
        return fraction_changed(a, b, self.atol)


class KLDivergence(Metric):
    """:func:`kl_divergence` of the candidate's probabilities under the reference's."""

    axis: int = eqx.field(static=True, default=-3)
    eps: float = eqx.field(static=True, default=1e-12)
    name: ClassVar[str] = "kl_divergence"

    def __call__(self, a: Any, b: Any) -> Float[Array, ""]:
        return kl_divergence(a, b, self.axis, self.eps)


class ConfusionShift(Metric):
    r"""The fraction of classified pixels whose class differs between the two outputs.

    With $C$ the :func:`confusion_matrix` of the reference's classes (rows) against the
    candidate's (columns), this is the off-diagonal mass $1 - \operatorname{tr}(C)/\sum C$:
    0 when no pixel changed class. (With ground truth at hand, :func:`confusion_shift` says
    *which* classes moved where.) Pixels unclassified in either output are left out.

    **Arguments:**

    - `num_classes`: number of classes.
    - `axis`: if given, the outputs are class scores / probabilities and are first reduced to
      labels with ``argmax`` along this axis; ``None`` (default) means they are labels already.
    """

    num_classes: int = eqx.field(static=True)
    axis: int | None = eqx.field(static=True, default=None)
    name: ClassVar[str] = "confusion_shift"

    def __check_init__(self) -> None:
        n = self.num_classes
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ConfigError("ConfusionShift", "num_classes", n, "must be an int >= 1")

    def __call__(self, a: Any, b: Any) -> Float[Array, ""]:
        a, b = values_of(a), values_of(b)
        if self.axis is not None:
            a, b = jnp.argmax(a, axis=self.axis), jnp.argmax(b, axis=self.axis)
        cm = confusion_matrix(a, b, self.num_classes)
        return 1.0 - accuracy(cm)
