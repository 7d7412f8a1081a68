"""Examples of the active-learning operators (georax.learn.uncertainty, georax.learn.active).

Merged into tests/test_every_operator.py with the others (see operator_examples.py). The models
inside the producers are georax operators, so the examples round-trip through the sandboxed
YAML loader: NDVI as a one-channel logit (activation ``sigmoid``), made stochastic by a random
flip for MC dropout, and a stacked ensemble of ``ScaleOffset`` members (softmax over bands).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

import georax as gx
from georax.geo import augment, indices, radiometry
from georax.learn import active, uncertainty

from operator_examples import EXAMPLES, Example, chips, example, reflectance


def ndvi_classifier() -> uncertainty.Predictive:
    """A deterministic two-class "classifier": sigmoid of NDVI."""
    return uncertainty.Predictive(indices.NDVI(), activation="sigmoid")


@functools.cache
def sample_stack() -> gx.GeoTensor:
    """A ``(3, 6, 16, 16)`` GeoTensor: 3 softmax samples over the 6 reflectance bands."""
    x = reflectance()
    stack = jnp.stack([x.values, x.values[:, ::-1], 4.0 * x.values**2])
    return x.replace(values=jax.nn.softmax(10.0 * stack, axis=1), band_names=None)


@example(uncertainty.Predictive)
def _predictive() -> Example:
    return Example(ndvi_classifier(), (reflectance(),))


@example(uncertainty.MCDropout)
def _mc_dropout() -> Example:
    model = gx.Sequential([augment.RandomFlip(p=0.5, axes=("x", "y")), indices.NDVI()])
    op = uncertainty.MCDropout(model, samples=4, activation="sigmoid")
    return Example(op, (reflectance(),))


@example(uncertainty.Ensemble)
def _ensemble() -> Example:
    members = uncertainty.stack_ensemble(
        lambda k: radiometry.ScaleOffset(
            scale=jax.random.uniform(k, (), minval=5.0, maxval=20.0), offset=0.0
        ),
        jax.random.split(jax.random.key(0), 3),
    )
    return Example(uncertainty.Ensemble(members), (reflectance(),))


def _score_of(cls: type[uncertainty.SampleScore]) -> Callable[[], Example]:
    return lambda: Example(cls(), (sample_stack(),))


for _cls in (
    uncertainty.PredictiveEntropy,
    uncertainty.ExpectedEntropy,
    uncertainty.BALD,
    uncertainty.Margin,
    uncertainty.SampleStd,
):
    EXAMPLES[_cls] = _score_of(_cls)


@example(uncertainty.MeanScalar)
def _mean_scalar() -> Example:
    return Example(uncertainty.MeanScalar(), (reflectance(),), georeferencing="none")


@example(active.ActiveSampler)
def _active_sampler() -> Example:
    score = gx.Sequential(
        [ndvi_classifier(), uncertainty.PredictiveEntropy(), uncertainty.MeanScalar()]
    )
    op = active.ActiveSampler(score, k=3, mode="diverse", beta=2.0)
    return Example(op, (jnp.asarray(chips().values),), georeferencing="none")
