"""georax.learn: train a pipeline, checkpoint it, deploy it -- thin pieces, optax style.

The pieces, each usable alone:

- models in pipelines: :class:`georax.ModelOp` takes an equinox module or a flax nnx module
  (:func:`register_model` makes an nnx or equinox model class deployable: YAML + params file,
  the sandbox, fresh processes);
- data: :class:`ChipDataset` (random labelled chips from scenes, keyed, vmapped, with keyed
  augmentation) and :func:`batch_key` (the data key of a step);
- losses (:mod:`georax.learn.losses`): ``sigmoid_cross_entropy``, ``softmax_cross_entropy``,
  ``dice_loss``, ``mse``, ``mae``, ``huber`` -- ``loss(pred, target) -> scalar``;
- metrics (:mod:`georax.learn.metrics`): :func:`segmentation_metrics`,
  :func:`regression_metrics`, on :mod:`georax.array.metrics`;
- training: :func:`make_train_step` (one compiled optax update of a whole pipeline),
  :class:`TrainState`, :func:`predict`, :func:`evaluate`;
- the loop: :func:`fit` (epochs, evaluation, tqdm, history, :class:`Callback` hooks);
- checkpoints: :class:`Checkpointer` (orbax-checkpoint: every N steps, keep K, resume);
- :class:`SelectBands`: choose the model's input bands inside the preprocessing;
- active learning: uncertainty scores (:mod:`georax.learn.uncertainty`: MC dropout, ensembles,
  entropy, BALD, margin, std, :class:`MeanScalar`) and :class:`ActiveSampler`
  (:mod:`georax.learn.active`: one compiled scoring program over a pool of chips).

The trained pipeline is an ordinary operator: run it in ``georax.patch.Patchwise`` for
inference and write it with ``georax.save`` to deploy. flax and orbax are imported only when
used (the ``train`` extra installs them).
"""

from georax.core.model import (
    EqxModel,
    NnxModel,
    NnxModule,
    RegisteredModel,
    model_operator,
    register_model,
)
from georax.learn import active, losses, metrics, uncertainty
from georax.learn.active import ActiveSampler, Selection
from georax.learn.checkpoint import CHECKPOINT_FORMAT, Checkpointer, abstract_arrays
from georax.learn.data import ChipDataset, batch_key
from georax.learn.fit import Callback, FitLog, FitResult, fit, model_key
from georax.learn.losses import (
    dice_loss,
    huber,
    mae,
    mse,
    sigmoid_cross_entropy,
    softmax_cross_entropy,
)
from georax.learn.metrics import predict_labels, regression_metrics, segmentation_metrics
from georax.learn.ops import SelectBands, select_bands
from georax.learn.train import (
    TrainState,
    TrainStep,
    evaluate,
    make_train_step,
    model_weights,
    needs_key,
    predict,
)
from georax.learn.uncertainty import (
    BALD,
    Ensemble,
    ExpectedEntropy,
    Margin,
    MCDropout,
    MeanScalar,
    Predictive,
    PredictiveEntropy,
    SampleStd,
)

__all__ = [
    "BALD",
    "CHECKPOINT_FORMAT",
    "ActiveSampler",
    "Ensemble",
    "ExpectedEntropy",
    "MCDropout",
    "Margin",
    "MeanScalar",
    "Predictive",
    "PredictiveEntropy",
    "SampleStd",
    "Selection",
    "active",
    "uncertainty",
    "Callback",
    "ChipDataset",
    "Checkpointer",
    "FitLog",
    "FitResult",
    "EqxModel",
    "NnxModel",
    "NnxModule",
    "RegisteredModel",
    "SelectBands",
    "TrainState",
    "TrainStep",
    "abstract_arrays",
    "batch_key",
    "dice_loss",
    "evaluate",
    "fit",
    "huber",
    "losses",
    "mae",
    "make_train_step",
    "metrics",
    "model_key",
    "model_weights",
    "mse",
    "needs_key",
    "model_operator",
    "predict",
    "predict_labels",
    "register_model",
    "regression_metrics",
    "segmentation_metrics",
    "select_bands",
    "sigmoid_cross_entropy",
    "softmax_cross_entropy",
]
