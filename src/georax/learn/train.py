"""Train steps: one compiled optax update of a georax pipeline, and batched prediction.

The unit of training is the *pipeline* -- typically ``Sequential([preprocess, ModelOp(net)])``,
the very operator that later runs inside ``Patchwise`` at inference -- not a bare network. So the
preprocessing a model is trained with is, by construction, the preprocessing it is served with.

Conventions (the whole contract; nothing else happens behind the scenes):

- **Per-sample application.** A batch ``x`` of shape ``(B, ...)`` is predicted with
  ``jax.vmap(pipeline)(x)``: the pipeline sees one sample ``(C, h, w)`` at a time, exactly as
  ``Patchwise`` feeds it one chip at a time. With a ``key``, sample ``i`` gets
  ``jax.random.split(key, B)[i]`` (dropout, stochastic operators).
- **Loss.** ``loss(predictions, targets) -> scalar`` (the mean over the batch, as every loss in
  :mod:`georax.learn.losses` returns).
- **What trains.** By default the floating-point array leaves inside every
  :class:`~georax.ModelOp`'s model (the network weights); preprocessing parameters (a
  ``Normalize`` mean, a threshold) stay fixed, so the preprocessing's config hash is the same
  before and after training. Pass ``trainable=eqx.is_inexact_array`` to tune every parameter of
  the pipeline (differentiable retrieval), or any equinox filter spec.
- **Update.** ``grads = jax.grad(loss)(params)``; ``updates, opt_state =
  optimizer.update(grads, opt_state, params)``; ``params = optax.apply_updates(params,
  updates)`` -- plain optax, compiled once with :func:`equinox.filter_jit`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, PRNGKeyArray

from georax.core.carrier import values_of
from georax.core.errors import ConfigError
from georax.core.model import ModelOp
from georax.core.operator import Operator

__all__ = [
    "TrainState",
    "needs_key",
    "TrainStep",
    "evaluate",
    "make_train_step",
    "model_weights",
    "predict",
]

Loss = Callable[[Any, Any], Array]


def model_weights(pipeline: Any) -> Any:
    """The default ``trainable`` filter: float leaves inside ModelOp models, nothing else.

    **Returns:** an equinox filter spec (a prefix tree of ``pipeline``: ``eqx.is_inexact_array``
    at every :class:`~georax.ModelOp`, ``False`` elsewhere) for :func:`equinox.partition`.
    """

    def spec(node: Any) -> Any:
        return eqx.is_inexact_array if isinstance(node, ModelOp) else False

    return jax.tree.map(spec, pipeline, is_leaf=lambda n: isinstance(n, ModelOp))


def needs_key(pipeline: Any) -> bool:
    """Whether ``pipeline`` draws random numbers: a stochastic operator (``requires_key``) or
    a ``ModelOp(pass_key=True)`` anywhere inside it.

    :func:`~georax.learn.fit` passes a per-step key only to such pipelines (splitting keys per
    sample costs time and changes nothing for a deterministic one).
    """
    seen: set[int] = set()

    def visit(node: Any) -> bool:
        if id(node) in seen:
            return False
        seen.add(id(node))
        if isinstance(node, Operator):
            if type(node).requires_key or (isinstance(node, ModelOp) and node.pass_key):
                return True
            return any(visit(getattr(node, f.name)) for f in dataclasses.fields(node))
        if isinstance(node, list | tuple):
            return any(visit(v) for v in node)
        if isinstance(node, Mapping):
            return any(visit(v) for v in node.values())
        return False

    return visit(pipeline)


def _apply(pipeline: Any, x: Array, key: PRNGKeyArray | None) -> Array:
    """``vmap`` the pipeline over the leading (batch) axis of ``x``."""
    if key is None:
        return jax.vmap(lambda xi: values_of(pipeline(xi)))(x)
    keys = jax.random.split(key, x.shape[0])
    return jax.vmap(lambda xi, k: values_of(pipeline(xi, key=k)))(x, keys)


@eqx.filter_jit
def predict(pipeline: Any, x: Array, *, key: PRNGKeyArray | None = None) -> Array:
    """Predictions for a batch: ``jax.vmap(pipeline)(x)`` (see the module docstring), compiled.

    **Arguments:**

    - `pipeline`: any georax operator (or callable pytree) taking one sample.
    - `x`: ``(B, ...)`` samples.
    - `key`: split into one key per sample, for stochastic pipelines.

    **Returns:** the stacked outputs ``(B, ...)`` (plain arrays).
    """
    return _apply(pipeline, x, key)


class TrainState(eqx.Module):
    """Everything a training run changes: the pipeline, the optimizer state and the step count.

    A pytree: checkpoints save its arrays (:class:`georax.learn.Checkpointer`) and restore them
    into the abstract tree of a freshly built state.

    **Arguments:**

    - `pipeline`: the pipeline being trained.
    - `opt_state`: the optax state of its trainable leaves.
    - `step`: the number of updates done (an ``int32`` scalar array).
    """

    pipeline: Any
    opt_state: Any
    step: Array


@dataclasses.dataclass(frozen=True)
class TrainStep:
    """``state, loss = step(state, (x, y), key=None)``: one compiled optax update.

    Built by :func:`make_train_step`; :meth:`init` makes the first :class:`TrainState`.

    Attributes:
        loss: ``loss(predictions, targets) -> scalar``.
        optimizer: the optax transformation.
        trainable: the equinox filter spec selecting the trained leaves (a leaf predicate such
            as ``eqx.is_inexact_array``, or a prefix tree of them); ``None`` for
            :func:`model_weights`.
    """

    loss: Loss
    optimizer: optax.GradientTransformation
    trainable: Any = None

    def filter_spec(self, pipeline: Any) -> Any:
        """The filter spec of the trained leaves of ``pipeline``."""
        return model_weights(pipeline) if self.trainable is None else self.trainable

    def params(self, pipeline: Any) -> Any:
        """The trained leaves of ``pipeline`` (``None`` elsewhere): what the optimizer sees."""
        return eqx.filter(pipeline, self.filter_spec(pipeline))

    def init(self, pipeline: Any) -> TrainState:
        """The state before the first update: ``optimizer.init`` of the trained leaves, step 0.

        **Raises:** :class:`~georax.errors.ConfigError` when nothing would be trained (no
        ModelOp with float weights, or a filter that selects nothing).
        """
        params = self.params(pipeline)
        leaves = jax.tree.leaves(params)
        if not leaves:
            raise ConfigError(
                "make_train_step",
                "trainable",
                getattr(self.trainable, "__name__", self.trainable),
                "selects no floating-point array leaf of the pipeline (the default trains the "
                "weights inside ModelOp models; pass trainable=eqx.is_inexact_array to train "
                "every parameter)",
            )
        bad = [x.dtype for x in leaves if not jnp.issubdtype(x.dtype, jnp.inexact)]
        if bad:
            raise ConfigError(
                "make_train_step", "trainable", str(bad[0]), "selects non-float leaves"
            )
        return TrainState(pipeline, self.optimizer.init(params), jnp.zeros((), jnp.int32))

    def __call__(
        self, state: TrainState, batch: tuple[Any, Any], *, key: PRNGKeyArray | None = None
    ) -> tuple[TrainState, Array]:
        """One update on ``batch = (x, y)``; returns the new state and the batch loss."""
        x, y = batch
        return _step(self, state, x, y, key)

    def loss_value(
        self, pipeline: Any, batch: tuple[Any, Any], *, key: PRNGKeyArray | None = None
    ) -> Array:
        """The loss of ``pipeline`` on ``batch`` (no update)."""
        x, y = batch
        return _loss(self, pipeline, x, y, key)


@eqx.filter_jit
def _loss(step: TrainStep, pipeline: Any, x: Array, y: Array, key: Any) -> Array:
    return step.loss(_apply(pipeline, x, key), y)


@eqx.filter_jit
def _step(
    step: TrainStep, state: TrainState, x: Array, y: Array, key: Any
) -> tuple[TrainState, Array]:
    params, rest = eqx.partition(state.pipeline, step.filter_spec(state.pipeline))

    def objective(p: Any) -> Array:
        return step.loss(_apply(eqx.combine(p, rest), x, key), y)

    value, grads = jax.value_and_grad(objective)(params)
    updates, opt_state = step.optimizer.update(grads, state.opt_state, params)
    params = optax.apply_updates(params, updates)
    return TrainState(eqx.combine(params, rest), opt_state, state.step + 1), value


def make_train_step(
    pipeline: Any,
    loss: Loss,
    optimizer: optax.GradientTransformation,
    *,
    trainable: Any = None,
) -> TrainStep:
    """A compiled train step for ``pipeline`` (see the module docstring for the contract).

    ::

        step = make_train_step(pipeline, losses.sigmoid_cross_entropy, optax.adam(1e-3))
        state = step.init(pipeline)
        for s in range(100):
            state, loss = step(state, ds.batch(batch_key(0, s), 16))
        trained = state.pipeline

    **Arguments:**

    - `pipeline`: the operator to train (checked: it must have something to train).
    - `loss`: ``loss(predictions, targets) -> scalar``.
    - `optimizer`: any ``optax.GradientTransformation``.
    - `trainable`: which leaves train: an equinox filter spec (``eqx.is_inexact_array`` trains
      every float parameter of the pipeline); default :func:`model_weights`.

    **Returns:** a :class:`TrainStep`.
    """
    if not callable(loss):
        raise ConfigError("make_train_step", "loss", type(loss).__name__, "must be callable")
    if not isinstance(optimizer, optax.GradientTransformation):
        raise ConfigError(
            "make_train_step",
            "optimizer",
            type(optimizer).__name__,
            "must be an optax.GradientTransformation",
        )
    step = TrainStep(loss, optimizer, trainable)
    step.init(pipeline)  # refuses a pipeline with nothing to train, now rather than later
    return step


def _batches(data: tuple[Any, Any] | Iterable[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    if isinstance(data, tuple) and len(data) == 2 and not isinstance(data[0], tuple):
        return [data]
    return list(data)


def evaluate(
    pipeline: Any,
    data: tuple[Any, Any] | Iterable[tuple[Any, Any]],
    *,
    loss: Loss | None = None,
    metrics: Callable[[Any, Any], Mapping[str, Any]] | None = None,
    key: PRNGKeyArray | None = None,
) -> dict[str, float]:
    """Loss and metrics of ``pipeline`` on evaluation data.

    Predictions of every batch are concatenated first, so the loss is the mean over all samples
    and metrics such as IoU are computed once on everything (exact, not averaged per batch).

    **Arguments:**

    - `pipeline`: the pipeline to evaluate (applied per sample, like :func:`predict`).
    - `data`: one ``(x, y)`` batch or an iterable of them.
    - `loss`: reported as ``"loss"`` when given.
    - `metrics`: ``metrics(predictions, targets) -> {name: scalar}`` (e.g.
      :func:`~georax.learn.segmentation_metrics`).
    - `key`: for stochastic pipelines (one key, split per batch).

    **Returns:** ``{name: float}``.
    """
    batches = _batches(data)
    keys = [None] * len(batches) if key is None else list(jax.random.split(key, len(batches)))
    preds = [
        predict(pipeline, jnp.asarray(x), key=k) for (x, _), k in zip(batches, keys, strict=True)
    ]
    pred = jnp.concatenate(preds) if len(preds) > 1 else preds[0]
    target = (
        jnp.concatenate([jnp.asarray(y) for _, y in batches])
        if len(batches) > 1
        else (jnp.asarray(batches[0][1]))
    )
    out: dict[str, float] = {}
    if loss is not None:
        out["loss"] = float(loss(pred, target))
    if metrics is not None:
        out.update({k: float(np.asarray(v)) for k, v in metrics(pred, target).items()})
    return out
