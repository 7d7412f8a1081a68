"""Predictive uncertainty: samples of a model's prediction, and scores computed from them.

Two halves, split as everywhere in georax:

- **Pure functions** on arrays (documented math, no config): a *sample stack* is an array
  ``(S, C, *spatial)`` of ``S`` predictive samples (Monte-Carlo dropout passes, ensemble members)
  of ``C`` class probabilities per pixel. From it:

  - :func:`predictive_entropy` ``H[p̄] = -Σ_c p̄_c log p̄_c`` with ``p̄ = (1/S) Σ_s p_s`` (total
    uncertainty);
  - :func:`expected_entropy` ``(1/S) Σ_s H[p_s]`` (aleatoric part);
  - :func:`bald` the mutual information ``H[p̄] - (1/S) Σ_s H[p_s]`` between the prediction and
    the model (epistemic part, Houlsby et al. 2011, "BALD");
  - :func:`margin` ``1 - (p̄_(1) - p̄_(2))``, one minus the gap between the two most probable
    classes of the mean prediction;
  - :func:`sample_std` the standard deviation over samples (regression outputs, or one
    probability map).

  Entropies are in nats (natural log) with ``0 log 0 = 0``. Every score is "higher means more
  uncertain", which is what :class:`georax.learn.active.ActiveSampler` ranks by. The samplers
  :func:`mc_dropout_samples` (``jax.vmap`` over keys) and :func:`ensemble_samples` (``vmap`` over
  the members of a stacked ensemble built by :func:`stack_ensemble` with ``eqx.filter_vmap``)
  produce sample stacks from a model.

- **Operators** that hold config and call them, so a scoring pipeline is one pytree that
  compiles, vmaps over chips and round-trips through YAML (when its model is a registered
  georax operator)::

      score = gx.Sequential([preprocess, MCDropout(net, samples=16), BALD(), MeanScalar()])
      score(chip, key=key)   # a scalar: the chip's mean BALD

  Producers (``(..., H, W)`` in, a sample stack out): :class:`Predictive` (a deterministic
  model, one sample), :class:`MCDropout`, :class:`Ensemble`. Scores (sample stack in, per-pixel
  map out): :class:`PredictiveEntropy`, :class:`ExpectedEntropy`, :class:`BALD`,
  :class:`Margin`, :class:`SampleStd`. Reduction: :class:`MeanScalar` (the seeds'
  ``pa.MeanScalar(field="sigma")``). A carrier (GeoTensor) in gives a carrier out, except from
  :class:`MeanScalar`, whose scalar has no grid.

Why vmap over keys for MC dropout rather than replicating the batch (what torch libraries do):
the layers before the first dropout do not depend on the key, so ``vmap`` leaves them unbatched
and XLA computes them once per chip, not once per sample; and the ``S`` copies of the input
never exist.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from georax.core.carrier import map_values, values_of
from georax.core.errors import DataError, ShapeError
from georax.core.model import ModelOp
from georax.core.operator import Operator, static
from georax.core.sandbox import Limits

__all__ = [
    "ACTIVATIONS",
    "BALD",
    "Ensemble",
    "ExpectedEntropy",
    "MCDropout",
    "Margin",
    "MeanScalar",
    "Predictive",
    "PredictiveEntropy",
    "PredictiveSamples",
    "SampleScore",
    "SampleStd",
    "bald",
    "ensemble_samples",
    "ensemble_size",
    "entropy",
    "expected_entropy",
    "margin",
    "mc_dropout_samples",
    "mean_probabilities",
    "predictive_entropy",
    "sample_std",
    "stack_ensemble",
    "to_probabilities",
]

#: How a producer turns model outputs into the sample stack: ``softmax`` over the class axis,
#: ``sigmoid`` of a one-channel logit into the two classes ``(1 - p, p)``, or ``identity``
#: (the model already outputs probabilities, or regression values for :class:`SampleStd`).
ACTIVATIONS = ("softmax", "sigmoid", "identity")


# --------------------------------------------------------------------------------------
# Pure functions
# --------------------------------------------------------------------------------------
def _f32(x: Any) -> Array:
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)


def _check_stack(probs: Array, who: str) -> None:
    if jnp.ndim(probs) < 2:
        raise ShapeError(
            f"{who}: expected a sample stack (S, C, *spatial) of S samples of C classes, got an "
            f"array of shape {tuple(jnp.shape(probs))}"
        )


def entropy(p: Float[Array, "*a"], axis: int = 0) -> Float[Array, "*b"]:
    """Shannon entropy ``-Σ p log p`` along ``axis``, in nats, with ``0 log 0 = 0``.

    **Arguments:**

    - `p`: probabilities (non-negative, summing to 1 along ``axis``).
    - `axis`: the class axis.

    **Returns:** ``p`` with ``axis`` reduced.
    """
    p = _f32(p)
    return -jnp.sum(jax.scipy.special.xlogy(p, p), axis=axis)


def mean_probabilities(probs: Float[Array, "S C *spatial"]) -> Float[Array, " C *spatial"]:
    """The predictive distribution ``p̄ = (1/S) Σ_s p_s``: the mean over the sample axis."""
    _check_stack(probs, "mean_probabilities")
    return jnp.mean(_f32(probs), axis=0)


def predictive_entropy(probs: Float[Array, "S C *spatial"]) -> Float[Array, " *spatial"]:
    """Total uncertainty ``H[p̄]``: the entropy of the mean prediction, per pixel (nats)."""
    _check_stack(probs, "predictive_entropy")
    return entropy(mean_probabilities(probs), axis=0)


def expected_entropy(probs: Float[Array, "S C *spatial"]) -> Float[Array, " *spatial"]:
    """Aleatoric uncertainty ``(1/S) Σ_s H[p_s]``: the mean entropy of the samples (nats)."""
    _check_stack(probs, "expected_entropy")
    return jnp.mean(entropy(probs, axis=1), axis=0)


def bald(probs: Float[Array, "S C *spatial"]) -> Float[Array, " *spatial"]:
    """BALD: the mutual information ``H[p̄] - (1/S) Σ_s H[p_s]`` between label and model (nats).

    High where the samples disagree with each other while each is confident (epistemic
    uncertainty: more labels there would teach the model something). Mathematically
    non-negative (Jensen); float rounding can make it a few ulps below 0, so it is clipped at 0.
    """
    _check_stack(probs, "bald")
    return jnp.maximum(predictive_entropy(probs) - expected_entropy(probs), 0.0)


def margin(probs: Float[Array, "S C *spatial"]) -> Float[Array, " *spatial"]:
    """Margin uncertainty ``1 - (p̄_(1) - p̄_(2))`` of the mean prediction, per pixel.

    ``p̄_(1) >= p̄_(2)`` are the two largest class probabilities: 0 when one class is certain,
    1 when the top two tie. Needs at least two classes.
    """
    _check_stack(probs, "margin")
    if jnp.shape(probs)[1] < 2:
        raise ShapeError(f"margin: needs at least 2 classes, got a stack of shape {probs.shape}")
    top2 = jax.lax.top_k(jnp.moveaxis(mean_probabilities(probs), 0, -1), 2)[0]
    return 1.0 - (top2[..., 0] - top2[..., 1])


def sample_std(samples: Float[Array, " S *rest"]) -> Float[Array, " *rest"]:
    """Standard deviation over the sample axis (``ddof=0``): the seeds' ``sigma``."""
    if jnp.ndim(samples) < 1:
        raise ShapeError("sample_std: expected samples stacked along axis 0, got a scalar")
    return jnp.std(_f32(samples), axis=0)


def to_probabilities(
    outputs: Float[Array, "S C *spatial"], activation: str, who: str = "to_probabilities"
) -> Float[Array, "S C2 *spatial"]:
    """A sample stack of model outputs as probabilities (see :data:`ACTIVATIONS`).

    **Arguments:**

    - `outputs`: ``(S, C, *spatial)`` model outputs (logits, or probabilities for ``identity``).
    - `activation`: ``"softmax"`` (over axis 1), ``"sigmoid"`` (``C`` must be 1; the result has
      the two classes ``(1 - p, p)``) or ``"identity"``.
    - `who`: named in errors.
    """
    outputs = _f32(outputs)
    if activation == "softmax":
        return jax.nn.softmax(outputs, axis=1)
    if activation == "sigmoid":
        if outputs.ndim < 2 or outputs.shape[1] != 1:
            raise ShapeError(
                f"{who}: activation='sigmoid' takes a one-channel logit per sample, got samples "
                f"of shape {tuple(outputs.shape[1:])}; use 'softmax' for several classes"
            )
        p = jax.nn.sigmoid(outputs)
        return jnp.concatenate([1.0 - p, p], axis=1)
    return outputs


def mc_dropout_samples(
    apply: Callable[[Array, PRNGKeyArray], Array],
    x: Array,
    key: PRNGKeyArray,
    samples: int,
) -> Array:
    """``S`` stochastic forward passes ``apply(x, k_s)``, one per key, vectorised with ``vmap``.

    **Arguments:**

    - `apply`: ``apply(x, key) -> y``, a forward pass with dropout active (an equinox model
      with ``eqx.nn.Dropout(inference=False)`` layers called with ``key=``).
    - `x`: the input (one chip).
    - `key`: split into ``samples`` independent keys.
    - `samples`: ``S``.

    **Returns:** ``(S, *y.shape)``.
    """
    keys = jax.random.split(key, samples)
    return jax.vmap(lambda k: apply(x, k))(keys)


def stack_ensemble(make: Callable[[PRNGKeyArray], PyTree], keys: PRNGKeyArray) -> PyTree:
    """A deep ensemble as *one* model whose array leaves are stacked along a new axis 0.

    ``eqx.filter_vmap(make)(keys)``: one member per key (independent initialisations), built in
    one vectorised call. Train it with ``eqx.filter_vmap`` over the same axis; evaluate it with
    :func:`ensemble_samples` or :class:`Ensemble`.

    **Arguments:**

    - `make`: ``make(key) -> model`` (e.g. ``lambda k: eqx.nn.MLP(..., key=k)``).
    - `keys`: ``(M,)`` keys, ``M`` members.
    """
    return eqx.filter_vmap(make)(keys)


def ensemble_size(members: PyTree, who: str = "ensemble") -> int:
    """``M``, the length of the stacked axis shared by every array leaf of ``members``.

    **Raises:** :class:`~georax.errors.ShapeError` when there is no array leaf, a leaf is a
    scalar, or leaves disagree on their leading axis (not built by :func:`stack_ensemble`).
    """
    leaves = jax.tree.leaves(eqx.filter(members, eqx.is_array))
    sizes = {int(jnp.shape(v)[0]) if jnp.ndim(v) else 0 for v in leaves}
    if not leaves or len(sizes) != 1 or 0 in sizes:
        raise ShapeError(
            f"{who}: the members' array leaves must all be stacked along a leading axis of one "
            f"length M >= 1 (build them with stack_ensemble); leading sizes found: "
            f"{sorted(sizes) or 'no array leaves'}"
        )
    return sizes.pop()


def ensemble_samples(
    members: PyTree,
    apply: Callable[[PyTree, Array], Array],
    x: Array,
) -> Array:
    """Evaluate every member of a stacked ensemble on ``x`` with one ``vmap``.

    **Arguments:**

    - `members`: the stacked ensemble (:func:`stack_ensemble`).
    - `apply`: ``apply(member, x) -> y`` for one (unstacked) member.
    - `x`: the input, shared by all members.

    **Returns:** ``(M, *y.shape)``.
    """
    return eqx.filter_vmap(apply, in_axes=(eqx.if_array(0), None))(members, x)


# --------------------------------------------------------------------------------------
# Operators: producers of sample stacks
# --------------------------------------------------------------------------------------
def _as_operator(model: Any, pass_key: bool) -> Any:
    """Converter: a bare model becomes ``ModelOp(model, pass_key=...)``; operators stay."""
    if isinstance(model, Operator):
        return model
    return ModelOp(model, pass_key=pass_key)


def _as_keyed_model(model: Any) -> Any:
    return _as_operator(model, pass_key=True)


def _as_model(model: Any) -> Any:
    return _as_operator(model, pass_key=False)


class PredictiveSamples(Operator):
    """Abstract producer of a sample stack ``(S, C, *spatial)`` from a model's input.

    **Arguments:**

    - `activation`: how outputs become probabilities (:data:`ACTIVATIONS`).
    """

    # Each subclass declares ``activation: str = static(default="softmax")`` after its own
    # fields (an inherited field with a default would have to come before them).

    def __check_init__(self) -> None:
        if getattr(self, "activation", None) not in ACTIVATIONS:
            self.fail("activation", f"must be one of {ACTIVATIONS}")

    @abc.abstractmethod
    def raw_samples(self, v: Array, key: PRNGKeyArray | None) -> Array:
        """``(S, *model_output)`` raw model outputs for one input array ``v``."""

    def __call__(self, x: Any, *, key: PRNGKeyArray | None = None) -> Any:
        def f(v: Array) -> Array:
            out = self.raw_samples(v, key)
            return to_probabilities(out, self.activation, self.display_name)

        return map_values(f, x)


def _stack_bound(samples: int, out: tuple[int, ...], activation: str) -> tuple[int, ...]:
    """Shape bound of the sample stack: ``samples`` in front; ``sigmoid`` makes 1 class 2."""
    out = tuple(int(s) for s in out)
    if activation == "sigmoid" and out:
        out = (max(out[0], 2), *out[1:])
    return (samples, *out)


def _model_input(model: Operator, v: Array, key: PRNGKeyArray | None) -> Array:
    return values_of(model(v) if key is None else model(v, key=key))


class Predictive(PredictiveSamples):
    """The prediction of a deterministic model as a stack of one sample ``(1, C, *spatial)``.

    So that the same scores apply to a plain classifier: :class:`PredictiveEntropy` of it is the
    entropy of its softmax, :class:`Margin` its margin (and :class:`BALD` is 0).

    **Arguments:**

    - `model`: a georax operator, or a model (wrapped as ``ModelOp(model)``).
    - `activation`: see :data:`ACTIVATIONS`.
    """

    model: Operator = eqx.field(converter=_as_model)
    activation: str = static(default="softmax")

    def raw_samples(self, v: Array, key: PRNGKeyArray | None) -> Array:
        return _model_input(self.model, v, key)[None]

    def precheck(self, shape: tuple[int, ...], limits: Limits) -> tuple[int, ...]:
        """The model's bound with a sample axis of 1 in front (2 classes from ``sigmoid``)."""
        return _stack_bound(1, self.model.precheck(shape, limits), self.activation)


class MCDropout(PredictiveSamples):
    """Monte-Carlo dropout: ``samples`` stochastic passes of ``model``, ``vmap``-ed over keys.

    Stochastic: needs ``key=``; the same key gives the same samples. The model must keep its
    dropout active when given a key (equinox: ``eqx.nn.Dropout(p)`` layers, called with
    ``key=``); a model that ignores the key gives ``samples`` identical passes (BALD 0).

    **Arguments:**

    - `model`: a georax operator called as ``model(x, key=k)``, or a model (wrapped as
      ``ModelOp(model, pass_key=True)``).
    - `samples`: ``S``, the number of passes (static: it sizes the stack).
    - `activation`: see :data:`ACTIVATIONS`.
    """

    requires_key = True
    model: Operator = eqx.field(converter=_as_keyed_model)
    samples: int = static(default=16)
    activation: str = static(default="softmax")

    def __check_init__(self) -> None:
        if isinstance(self.samples, bool) or not isinstance(self.samples, int):
            self.fail("samples", "must be an int")
        if self.samples < 1:
            self.fail("samples", "must be >= 1")

    def raw_samples(self, v: Array, key: PRNGKeyArray | None) -> Array:
        assert key is not None  # requires_key: the call wrapper refused a missing key
        return mc_dropout_samples(lambda x, k: _model_input(self.model, x, k), v, key, self.samples)

    def precheck(self, shape: tuple[int, ...], limits: Limits) -> tuple[int, ...]:
        """The model's bound with ``samples`` in front (2 classes from ``sigmoid``)."""
        return _stack_bound(self.samples, self.model.precheck(shape, limits), self.activation)


class Ensemble(PredictiveSamples):
    """A deep ensemble: every member of a stacked ensemble on the input, ``vmap``-ed.

    Build the members with :func:`stack_ensemble` (``eqx.filter_vmap`` over init keys) or stack
    trained members' leaves along axis 0. With ``key=``, each member gets its own key (members
    with dropout, wrapped as ``ModelOp(members, pass_key=True)``); without, members are called
    without one.

    YAML: like :class:`~georax.ModelOp`, when the members are a registered georax operator; the
    stacked leaves then load only if that class's field annotations admit the leading member
    axis (``Float[Array, "*m o i"]``, not ``"o i"``: fields are type-checked on load).

    **Arguments:**

    - `members`: a georax operator whose array leaves are stacked along axis 0, or a stacked
      model (wrapped as ``ModelOp(members)``).
    - `activation`: see :data:`ACTIVATIONS`.
    """

    members: Operator = eqx.field(converter=_as_model)
    activation: str = static(default="softmax")

    def __check_init__(self) -> None:
        try:
            ensemble_size(self.members, "Ensemble.members")
        except ShapeError as e:
            self.fail("members", str(e))

    @property
    def size(self) -> int:
        """``M``, the number of members."""
        return ensemble_size(self.members, "Ensemble.members")

    def raw_samples(self, v: Array, key: PRNGKeyArray | None) -> Array:
        if key is None:
            return ensemble_samples(self.members, lambda m, x: _model_input(m, x, None), v)
        keys = jax.random.split(key, self.size)
        return eqx.filter_vmap(lambda m, k: _model_input(m, v, k), in_axes=(eqx.if_array(0), 0))(
            self.members, keys
        )

    def precheck(self, shape: tuple[int, ...], limits: Limits) -> tuple[int, ...]:
        """The number of members in front of the input shape (a member's output is unknown)."""
        del limits
        return _stack_bound(self.size, shape, self.activation)


# --------------------------------------------------------------------------------------
# Operators: scores of a sample stack
# --------------------------------------------------------------------------------------
class SampleScore(Operator):
    """Abstract per-pixel score of a sample stack ``(S, C, *spatial) -> (*spatial)``."""

    @staticmethod
    @abc.abstractmethod
    def score(probs: Array) -> Array:
        """The pure function this operator applies."""

    def __call__(self, x: Any, *, key: PRNGKeyArray | None = None) -> Any:
        v = values_of(x)
        if jnp.ndim(v) < 2:
            raise ShapeError(
                f"{self.display_name}: expected a sample stack (S, C, *spatial) from Predictive, "
                f"MCDropout or Ensemble, got shape {tuple(jnp.shape(v))}"
            )
        return map_values(self.score, x)

    def precheck(self, shape: tuple[int, ...], limits: Limits) -> tuple[int, ...]:
        """The sample and class axes are reduced."""
        del limits
        if len(shape) < 2:
            raise ShapeError(f"{self.display_name}: needs a sample stack (S, C, ...), got {shape}")
        return tuple(shape[2:])


class PredictiveEntropy(SampleScore):
    """Per-pixel :func:`predictive_entropy` ``H[p̄]`` (total uncertainty, nats)."""

    score = staticmethod(predictive_entropy)


class ExpectedEntropy(SampleScore):
    """Per-pixel :func:`expected_entropy` ``(1/S) Σ_s H[p_s]`` (aleatoric uncertainty, nats)."""

    score = staticmethod(expected_entropy)


class BALD(SampleScore):
    """Per-pixel :func:`bald`, the mutual information (epistemic uncertainty, nats)."""

    score = staticmethod(bald)


class Margin(SampleScore):
    """Per-pixel :func:`margin` uncertainty ``1 - (p̄_(1) - p̄_(2))``."""

    score = staticmethod(margin)


class SampleStd(SampleScore):
    """Standard deviation over the samples, keeping the class/band axis: ``(S, C, ...) ->
    (C, ...)`` (:func:`sample_std`; the seeds' ``sigma`` of a regression model)."""

    score = staticmethod(sample_std)

    def precheck(self, shape: tuple[int, ...], limits: Limits) -> tuple[int, ...]:
        """Only the sample axis is reduced."""
        del limits
        if len(shape) < 1:
            raise ShapeError("SampleStd: needs samples stacked along axis 0, got a scalar")
        return tuple(shape[1:])


# --------------------------------------------------------------------------------------
# Reduction to a per-chip score
# --------------------------------------------------------------------------------------
class MeanScalar(Operator):
    """Reduce a field (or the whole input) to its mean: one scalar score per chip.

    The seeds' ``pa.MeanScalar(field="sigma")`` after ``ModelOp(uq_model,
    method="predict_with_uncertainty")``: ``field`` picks ``x[field]`` from a mapping (or the
    attribute of that name, e.g. of a NamedTuple); with ``field=None`` the input itself is
    reduced. A carrier's ``values`` are used; the scalar is float32 (no grid: not a carrier).

    **Arguments:**

    - `field`: the key or attribute to reduce, or None.
    - `ignore_nan`: average over non-NaN elements only (masked pixels); an all-NaN input gives
      NaN either way.
    """

    field: str | None = static(default=None)
    ignore_nan: bool = static(default=False)

    def _pick(self, x: Any) -> Any:
        if self.field is None:
            return x
        if isinstance(x, Mapping):
            if self.field in x:
                return x[self.field]
            raise DataError(
                f"MeanScalar.field={self.field!r}: the input has no such key "
                f"(keys: {sorted(map(str, x))})"
            )
        if hasattr(x, self.field) and not callable(getattr(x, self.field)):
            return getattr(x, self.field)
        raise DataError(
            f"MeanScalar.field={self.field!r}: the input ({type(x).__name__}) has no such key or "
            "attribute"
        )

    def __call__(self, x: Any, *, key: PRNGKeyArray | None = None) -> Float[Array, ""]:
        v = _f32(values_of(self._pick(x)))
        return jnp.nanmean(v) if self.ignore_nan else jnp.mean(v)

    def precheck(self, shape: Any, limits: Limits) -> tuple[int, ...]:
        """A scalar."""
        del shape, limits
        return ()
