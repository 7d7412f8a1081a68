"""``fit``: epochs of compiled train steps, evaluation, a progress bar, history and callbacks.

A small loop over :class:`~georax.learn.TrainStep` calls -- nothing in it that a user could not
write, which is the point: it is the reference way to get the keyed data order and resumable
checkpoints right::

    result = fit(step, step.init(pipeline), ds, batch_size=16, epochs=10, steps_per_epoch=50,
                 eval_data=val, metrics=segmentation_metrics(2),
                 callbacks=[Checkpointer("ckpt", every=50, keep=3)])
    trained, history = result.pipeline, result.history

**Everything keyed.** The batch of global step ``s`` is ``data(batch_key(seed, s))`` and, for
a stochastic pipeline (:func:`~georax.learn.train.needs_key`), the model key of that step
(dropout) is ``model_key(seed, s)``. A run resumed at step ``s``
from a checkpoint therefore replays exactly the updates the uninterrupted run would have made,
and (on CPU, where XLA is deterministic) ends with bit-identical weights.

**History.** One record per epoch: ``epoch``, ``step``, ``loss`` (the mean training loss of the
epoch's steps), and -- when ``eval_data`` is given -- ``eval_loss`` and the ``metrics``. No
wall-clock times (a resumed run's history equals the uninterrupted run's).

**Callbacks** subclass :class:`Callback` and override any of its hooks; a
:class:`~georax.learn.Checkpointer` is one (it restores at the start and saves every N steps).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jaxtyping import Array, PRNGKeyArray
from tqdm.auto import tqdm

from georax.core.errors import ConfigError
from georax.learn.data import ChipDataset, batch_key
from georax.learn.train import TrainState, TrainStep, evaluate, needs_key

__all__ = ["Callback", "FitLog", "FitResult", "fit", "model_key"]

#: The salt folded into a run's seed for model randomness (data keys use the seed itself).
_MODEL_SALT = 0x6D6F64


def model_key(seed: int, step: int | Array) -> PRNGKeyArray:
    """The model key of training step ``step`` (dropout...): independent of the data key."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), _MODEL_SALT), step)


@dataclasses.dataclass
class FitLog:
    """What :func:`fit` has recorded so far (callbacks read it; a checkpoint saves it).

    Attributes:
        history: one dict per finished epoch (see the module docstring).
        epoch_losses: the training losses of the steps of the current, unfinished epoch.
    """

    history: list[dict[str, float]] = dataclasses.field(default_factory=list)
    epoch_losses: list[float] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The log as a JSON-ready dict (``history`` rows and ``epoch_losses``)."""
        return {"history": self.history, "epoch_losses": self.epoch_losses}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> FitLog:
        """Rebuild a log from :meth:`to_json`'s dict (a checkpoint's side-car, when resuming)."""
        return cls(
            [dict(r) for r in doc.get("history", [])],
            [float(v) for v in doc.get("epoch_losses", [])],
        )


class Callback:
    """Hooks :func:`fit` calls; override the ones you need (the defaults do nothing)."""

    def on_fit_start(self, state: TrainState, log: FitLog) -> tuple[TrainState, FitLog]:
        """Before the first step; may return a different state and log (to resume)."""
        return state, log

    def on_step_end(self, state: TrainState, loss: float, log: FitLog) -> None:
        """After each step (and after :meth:`on_epoch_end` when the step ends an epoch);
        ``state.step`` is the number of updates done."""

    def on_epoch_end(self, state: TrainState, log: FitLog) -> None:
        """After each epoch; its record is ``log.history[-1]``."""

    def on_fit_end(self, state: TrainState, log: FitLog) -> None:
        """After the last step (also when fit is resumed with nothing left to do)."""


@dataclasses.dataclass(frozen=True)
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        state: the final :class:`~georax.learn.TrainState`.
        history: the per-epoch records.
    """

    state: TrainState
    history: list[dict[str, float]]

    @property
    def pipeline(self) -> Any:
        """The trained pipeline."""
        return self.state.pipeline


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError("fit", name, value, "must be a positive int")
    return value


def fit(
    step: TrainStep,
    state: TrainState,
    data: ChipDataset | Callable[[PRNGKeyArray], tuple[Any, Any]],
    *,
    epochs: int,
    steps_per_epoch: int,
    batch_size: int | None = None,
    seed: int = 0,
    eval_data: tuple[Any, Any] | Sequence[tuple[Any, Any]] | None = None,
    metrics: Callable[[Any, Any], Mapping[str, Any]] | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
) -> FitResult:
    """Train for ``epochs * steps_per_epoch`` steps from ``state`` (see the module docstring).

    **Arguments:**

    - `step`: from :func:`~georax.learn.make_train_step`.
    - `state`: from ``step.init(pipeline)`` (or a restored one: training continues from
      ``state.step``).
    - `data`: a :class:`~georax.learn.ChipDataset` (with ``batch_size``) or a function
      ``key -> (x, y)``.
    - `epochs`, `steps_per_epoch`: the length of the run, in steps.
    - `batch_size`: samples per step, for a ChipDataset.
    - `seed`: the run's seed: the data order and model keys are functions of ``(seed, step)``.
    - `eval_data`: ``(x, y)`` or a sequence of them, evaluated after each epoch.
    - `metrics`: ``metrics(predictions, targets) -> {name: scalar}`` for the evaluation.
    - `callbacks`: :class:`Callback` objects, called in order.
    - `progress`: show a tqdm progress bar.

    **Returns:** a :class:`FitResult` (final state and per-epoch history).
    """
    epochs = _positive("epochs", epochs)
    steps_per_epoch = _positive("steps_per_epoch", steps_per_epoch)
    if isinstance(data, ChipDataset):
        size = _positive("batch_size", batch_size)

        def draw(key: PRNGKeyArray) -> tuple[Any, Any]:
            return data.batch(key, size)

    elif callable(data):
        draw = data
    else:
        raise ConfigError(
            "fit", "data", type(data).__name__, "must be a ChipDataset or key -> batch"
        )

    log = FitLog()
    for cb in callbacks:
        state, log = cb.on_fit_start(state, log)
    total = epochs * steps_per_epoch
    start = int(state.step)
    stochastic = needs_key(state.pipeline)
    bar = tqdm(total=total, initial=min(start, total), disable=not progress, unit="step")
    try:
        for s in range(start, total):
            key = model_key(seed, s) if stochastic else None
            state, loss = step(state, draw(batch_key(seed, s)), key=key)
            value = float(loss)
            log.epoch_losses.append(value)
            bar.update(1)
            if (s + 1) % 10 == 0 or s + 1 == total:
                bar.set_postfix(loss=f"{value:.4f}", epoch=s // steps_per_epoch + 1)
            if (s + 1) % steps_per_epoch == 0:
                record: dict[str, float] = {
                    "epoch": (s + 1) // steps_per_epoch,
                    "step": s + 1,
                    "loss": float(np.mean(np.asarray(log.epoch_losses, np.float64))),
                }
                if eval_data is not None:
                    scores = evaluate(state.pipeline, eval_data, loss=step.loss, metrics=metrics)
                    record.update({f"eval_{k}" if k == "loss" else k: v for k, v in scores.items()})
                log.history.append(record)
                log.epoch_losses = []
                for cb in callbacks:
                    cb.on_epoch_end(state, log)
            # after the epoch's bookkeeping, so a checkpoint saved here holds a consistent log
            for cb in callbacks:
                cb.on_step_end(state, value, log)
    finally:
        bar.close()
    for cb in callbacks:
        cb.on_fit_end(state, log)
    return FitResult(state, list(log.history))
