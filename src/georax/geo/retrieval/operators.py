"""Thin operators over :mod:`georax.geo.retrieval.physics` and :mod:`~.optimise`.

- :class:`BeerLambert`: enhancement -> band transmittance.
- :class:`MethaneForward`: retrieval state (enhancement, albedo, slope) -> reflectance.
- :class:`MatchedFilter`: reflectance -> enhancement, the classical closed form.
- :class:`BandRatio`: Sentinel-2 B11/B12 (+ optional reference pass) -> enhancement.
- :class:`MethaneRetrieval`: reflectance -> state, by gradient descent through
  :class:`MethaneForward` run patchwise (:class:`georax.patch.Patchwise`) with a smoothness prior.

Constants that enter arithmetic (absorption coefficients, background spectrum, air mass factor,
noise, prior widths, learning rate) are array leaves: traced, differentiable, changing them does
not recompile. Band indices, step counts and batch sizes are static.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float

from georax.core.budget import BudgetExceededError
from georax.core.carrier import values_of
from georax.core.errors import ShapeError
from georax.core.operator import Operator, as_tuple, leaf, static
from georax.core.sandbox import Limits
from georax.data.plume import (
    PlumeScene,
    SpectralLayout,
    band_absorption,
    band_reflectance,
    slope_basis,
)
from georax.geo._bands import check_bands, map_bands
from georax.geo._precheck import with_bands
from georax.geo.retrieval.optimise import FitResult, fit, optimise
from georax.geo.retrieval.physics import (
    STATE_BANDS,
    band_ratio_enhancement,
    band_ratio_signal,
    data_misfit,
    forward_reflectance,
    initial_state,
    matched_filter,
    smoothness_penalty,
    transmittance,
)
from georax.patch.operators import Patchwise
from georax.patch.patcher import Patcher
from georax.tensor.geotensor import GeoTensor
from georax.tensor.grid import crs_equal

__all__ = [
    "BandRatio",
    "BeerLambert",
    "MatchedFilter",
    "MethaneForward",
    "MethaneRetrieval",
    "RetrievalResult",
]

_ENHANCEMENT = ("enhancement",)


def _concrete(v: Any) -> np.ndarray | None:
    """``v`` as a NumPy array, or None when it is a tracer (built inside a transform)."""
    try:
        return np.asarray(v)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def _check_vector(op: Operator, *fields: str) -> None:
    """Each field is a 1-D per-band vector, all of the same length."""
    lengths = set()
    for f in fields:
        v = getattr(op, f)
        if jnp.ndim(v) != 1 or jnp.shape(v)[0] < 1:
            op.fail(f, f"must be a non-empty 1-D per-band array, got shape {jnp.shape(v)}")
        lengths.add(jnp.shape(v)[0])
    if len(lengths) > 1:
        op.fail(fields[-1], f"per-band fields {fields} must have one length, got {lengths}")


def _check_positive_scalar(op: Operator, field: str) -> None:
    v = getattr(op, field)
    if jnp.ndim(v) != 0:
        op.fail(field, f"must be a scalar, got shape {jnp.shape(v)}")
    c = _concrete(v)
    if c is not None and not c > 0:
        op.fail(field, "must be > 0")


def _check_band_count(op: Operator, x: Any, n: int, what: str) -> None:
    shape = jnp.shape(values_of(x))
    if len(shape) < 3 or shape[-3] != n:
        raise ShapeError(
            f"{type(op).__name__} expects {what} with {n} bands (..., {n}, H, W), got shape {shape}"
        )


def _names(new: tuple[str, ...] | None) -> Any:
    return lambda _old: new


class BeerLambert(Operator):
    """Band transmittance of a methane enhancement: ``T_b = exp(-m k_b dX)``.

    Input ``(..., 1, H, W)`` enhancement in ppm*m; output ``(..., band, H, W)``.

    **Arguments:**

    - `absorption`: ``k_b`` per band, 1/(ppm*m) (e.g.
      :func:`georax.data.plume.band_absorption`).
    - `air_mass_factor`: ``m``, > 0.
    """

    absorption: Array = leaf()
    air_mass_factor: Array = leaf(2.0)

    def __check_init__(self) -> None:
        _check_vector(self, "absorption")
        _check_positive_scalar(self, "air_mass_factor")

    def precheck(self, shape: tuple[int, ...], limits: Limits) -> tuple[int, ...]:
        """One output band per absorption coefficient."""
        return with_bands(shape, int(jnp.shape(self.absorption)[0]))

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        _check_band_count(self, x, 1, "an enhancement")
        return map_bands(
            lambda v: transmittance(v, self.absorption, self.air_mass_factor), x, names=_names(None)
        )


class MethaneForward(Operator):
    """The forward model: state ``(enhancement, albedo, slope)`` -> reflectance.

    ``y_b = a (1 + s w_b) bg_b exp(-m k_b dX)`` per pixel (see
    :func:`~georax.geo.retrieval.physics.forward_reflectance`). Input ``(..., 3, H, W)``,
    output ``(..., band, H, W)``.

    **Arguments:**

    - `background`: ``bg_b``, background reflectance per band.
    - `absorption`: ``k_b``, 1/(ppm*m).
    - `slope_basis`: ``w_b``, the spectral-slope basis.
    - `air_mass_factor`: ``m``, > 0.
    - `band_names`: names of the output bands, or None.
    """

    background: Array = leaf()
    absorption: Array = leaf()
    slope_basis: Array = leaf()
    air_mass_factor: Array = leaf(2.0)
    band_names: tuple[str, ...] | None = static(None, converter=as_tuple)

    def __check_init__(self) -> None:
        _check_vector(self, "background", "absorption", "slope_basis")
        _check_positive_scalar(self, "air_mass_factor")
        if self.band_names is not None and len(self.band_names) != jnp.shape(self.absorption)[0]:
            self.fail("band_names", f"must name {jnp.shape(self.absorption)[0]} bands")

    @classmethod
    def from_layout(
        cls,
        layout: SpectralLayout,
        air_mass_factor: float,
        background: Float[np.ndarray, " band"] | None = None,
    ) -> MethaneForward:
        """The model of a :class:`~georax.data.plume.SpectralLayout` with the **synthetic** CH4
        spectrum of :mod:`georax.data.plume`; `background` defaults to its synthetic surface."""
        bg = band_reflectance(layout) if background is None else background
        return cls(
            background=np.asarray(bg, np.float32),
            absorption=band_absorption(layout).astype(np.float32),
            slope_basis=slope_basis(layout).astype(np.float32),
            air_mass_factor=float(air_mass_factor),
            band_names=layout.band_names,
        )

    @classmethod
    def from_scene(
        cls, scene: PlumeScene, background: Float[Any, " band"] | None = None
    ) -> MethaneForward:
        """The model a :func:`georax.data.plume_scene` was made with (its constants), with the
        scene's true background unless `background` (e.g. an estimate) is given."""
        return cls(
            background=np.asarray(scene.background if background is None else background),
            absorption=scene.absorption,
            slope_basis=scene.slope_basis,
            air_mass_factor=scene.air_mass_factor,
            band_names=scene.layout.band_names,
        )

    @property
    def n_bands(self) -> int:
        """Number of modelled bands."""
        return int(jnp.shape(self.absorption)[0])

    def precheck(self, shape: tuple[int, ...], limits: Limits) -> tuple[int, ...]:
        """One output band per modelled band."""
        return with_bands(shape, self.n_bands)

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        _check_band_count(self, x, 3, "a state (enhancement, albedo, slope)")

        def fn(v: Array) -> Array:
            return forward_reflectance(
                v, self.background, self.absorption, self.slope_basis, self.air_mass_factor
            )

        return map_bands(fn, x, names=_names(self.band_names))


class MatchedFilter(Operator):
    """The classical matched filter: reflectance ``(..., band, H, W)`` -> enhancement (ppm*m).

    Background mean and shrinkage-regularised covariance are taken over each image's pixels;
    see :func:`~georax.geo.retrieval.physics.matched_filter` for the estimator and its biases.

    **Arguments:**

    - `absorption`: ``k_b`` per band, 1/(ppm*m).
    - `air_mass_factor`: ``m``, > 0.
    - `shrinkage`: covariance shrinkage towards a scaled identity, in ``[0, 1]``.
    """

    absorption: Array = leaf()
    air_mass_factor: Array = leaf(2.0)
    shrinkage: Array = leaf(1e-3)

    def __check_init__(self) -> None:
        _check_vector(self, "absorption")
        _check_positive_scalar(self, "air_mass_factor")
        g = _concrete(self.shrinkage)
        if jnp.ndim(self.shrinkage) != 0 or (g is not None and not 0.0 <= g <= 1.0):
            self.fail("shrinkage", "must be a scalar in [0, 1]")

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        _check_band_count(self, x, int(jnp.shape(self.absorption)[0]), "reflectance")
        return map_bands(
            lambda v: matched_filter(v, self.absorption, self.air_mass_factor, self.shrinkage),
            x,
            names=_names(_ENHANCEMENT),
        )


def _same_grid(x: Any, reference: Any) -> bool:
    if not (isinstance(x, GeoTensor) and isinstance(reference, GeoTensor)):
        return True
    return x.transform == reference.transform and crs_equal(x.crs, reference.crs)


class BandRatio(Operator):
    """The Sentinel-2 band-ratio method: B11/B12 reflectance -> enhancement (ppm*m).

    ``op(x)`` is the single-pass method (MBSP), ``op(x, reference)`` normalises by a plume-free
    pass of the same ground (MBMP), which removes the surface's own B12/B11 ratio; the signal is
    inverted exactly through Beer-Lambert (see
    :func:`~georax.geo.retrieval.physics.band_ratio_signal` and
    :func:`~georax.geo.retrieval.physics.band_ratio_enhancement`).

    **Arguments:**

    - `absorption`: ``(k11, k12)``, 1/(ppm*m).
    - `air_mass_factor`: ``m``, > 0.
    - `swir1_band`, `swir2_band`: band indices of B11 and B12.
    """

    absorption: Array = leaf()
    air_mass_factor: Array = leaf(2.0)
    swir1_band: int = static(0)
    swir2_band: int = static(1)

    def __check_init__(self) -> None:
        if jnp.shape(self.absorption) != (2,):
            self.fail("absorption", "must be the two coefficients (k11, k12)")
        k = _concrete(self.absorption)
        if k is not None and k[1] == k[0]:
            self.fail("absorption", "k12 must differ from k11 (no ratio signal otherwise)")
        _check_positive_scalar(self, "air_mass_factor")
        if self.swir1_band == self.swir2_band:
            self.fail("swir2_band", "must differ from swir1_band")

    def __call__(self, x: Any, reference: Any = None, *, key: jax.Array | None = None) -> Any:
        who = type(self).__name__
        v = values_of(x)
        check_bands(v, (self.swir1_band, self.swir2_band), who)
        ref = None
        if reference is not None:
            ref = values_of(reference)
            if jnp.shape(ref) != jnp.shape(v):
                raise ShapeError(
                    f"{who}: the reference pass has shape {jnp.shape(ref)}, the scene "
                    f"{jnp.shape(v)}; they must cover the same pixels"
                )
            if not _same_grid(x, reference):
                raise ShapeError(
                    f"{who}: the reference pass is on another grid than the scene; resample it "
                    "onto the scene's grid first (georax.geo.fusion.Resample)"
                )

        def fn(values: Array) -> Array:
            signal = band_ratio_signal(values, self.swir1_band, self.swir2_band, ref)
            return band_ratio_enhancement(signal, self.absorption, self.air_mass_factor)

        return map_bands(fn, x, names=_names(_ENHANCEMENT))


class RetrievalResult(NamedTuple):
    """What :meth:`MethaneRetrieval.fit` returns.

    - `state`: ``(..., 3, H, W)`` enhancement (ppm*m), albedo, slope; a GeoTensor for one.
    - `losses`: the loss curve (see :class:`~georax.geo.retrieval.optimise.FitResult`).
    """

    state: Any
    losses: np.ndarray


def _adam_cosine(rate: Any, steps: int) -> optax.GradientTransformation:
    return optax.adam(optax.cosine_decay_schedule(rate, steps, alpha=0.01))


_cached_adam_cosine = functools.lru_cache(maxsize=32)(_adam_cosine)


def _retrieval_loss(z: Array, data: tuple[Array, MethaneRetrieval]) -> Array:
    observed, op = data
    return op.objective(z, observed)


class MethaneRetrieval(Operator):
    """Retrieve the enhancement map by gradient descent through the forward model.

    Minimises over the state ``(dX, a, s)`` of every pixel the negative log posterior

    ``0.5 sum ((F(state) - y) / noise_std)^2 + 0.5 sum_c sum (grad state_c / prior_std_c)^2``

    where ``F`` is :class:`MethaneForward` applied **patchwise** (``Patchwise(patcher,
    forward)``), so the loss, and its gradient, run through patch extraction and overlap-add
    stitching, and scenes larger than one chip are modelled chip by chip: the forward model's
    intermediates are bounded by one batch of chips (the state, its gradient and the optimiser
    moments are whole-scene arrays, 3 bands each).
    Starts from no enhancement and a per-pixel least-squares albedo and slope
    (:func:`~georax.geo.retrieval.physics.initial_state`), then takes ``steps`` Adam steps
    (optax, cosine-decayed rate) on ``state / state_scale``, all in one compiled
    :func:`jax.lax.scan`.

    Calling the operator returns the state ``(..., 3, H, W)`` (bands named
    :data:`~georax.geo.retrieval.physics.STATE_BANDS`; enhancement first); :meth:`fit` also
    returns the loss curve and can stop early.

    **Arguments:**

    - `forward`: the :class:`MethaneForward` model (its background may be an estimate, e.g.
      :func:`~georax.geo.retrieval.physics.background_spectrum`).
    - `patcher`: how the forward model is run chip by chip; the default (64-pixel boxcar chips,
      stride == chip) gives the unpatched loss and gradient (equal up to float round-off;
      tested).
    - `noise_std`: the sensor noise, scalar or per band.
    - `prior_std`: expected neighbour difference per state channel (ppm*m, unitless, unitless);
      0 switches a channel's prior off. The default smooths the enhancement only.
    - `learning_rate`: Adam's step size, in units of `state_scale`.
    - `state_scale`: the state change per unit of the optimiser variable, per channel (a
      diagonal preconditioner): the defaults make one unit change the modelled reflectance by
      a similar amount in each channel, so one learning rate suits ppm*m and unitless
      channels alike (Adam's early steps are about ``learning_rate`` units each).
    - `steps`: optimiser steps taken by ``__call__``.
    - `batch_size`: chips per vmapped batch in the patchwise forward model.
    """

    forward: MethaneForward
    patcher: Patcher = Patcher.regular(64)
    noise_std: Array = leaf(0.002)
    prior_std: Array = leaf((100.0, 0.0, 0.0))
    learning_rate: Array = leaf(0.05)
    state_scale: Array = leaf((1000.0, 0.03, 0.03))
    steps: int = static(200)
    batch_size: int = static(8)

    def __check_init__(self) -> None:
        if jnp.shape(self.state_scale) != (3,):
            self.fail("state_scale", "must hold one value per state channel (3)")
        c = _concrete(self.state_scale)
        if c is not None and np.any(~(c > 0)):
            self.fail("state_scale", "must be > 0")
        if jnp.shape(self.prior_std) != (3,):
            self.fail("prior_std", "must hold one value per state channel (3)")
        c = _concrete(self.prior_std)
        if c is not None and np.any(~(c >= 0)):
            self.fail("prior_std", "must be >= 0 (0 switches a channel's prior off)")
        if jnp.ndim(self.noise_std) > 1:
            self.fail("noise_std", "must be a scalar or one value per band")
        c = _concrete(self.noise_std)
        if c is not None and np.any(~(c > 0)):
            self.fail("noise_std", "must be > 0")
        _check_positive_scalar(self, "learning_rate")
        for f in ("steps", "batch_size"):
            if getattr(self, f) < 1:
                self.fail(f, "must be >= 1")

    # ------------------------------------------------------------------ the objective
    def _scale(self) -> Array:
        return jnp.asarray(self.state_scale)[:, None, None]

    def predict(self, state: Float[Array, "*batch 3 H W"]) -> Float[Array, "*batch band H W"]:
        """The forward model run patchwise: ``Patchwise(patcher, forward)(state)``."""
        return Patchwise(self.patcher, self.forward, self.batch_size)(state)

    def objective(self, z: Float[Array, "*batch 3 H W"], observed: Array) -> Array:
        """The loss at the optimiser variable ``z = state / state_scale`` (class docstring)."""
        state = self.unscaled(z)
        misfit = data_misfit(self.predict(state), observed, self.noise_std)
        return misfit + smoothness_penalty(state, self.prior_std)

    def unscaled(self, z: Float[Array, "*batch 3 H W"]) -> Float[Array, "*batch 3 H W"]:
        """The state ``z * state_scale`` of an optimiser variable ``z``."""
        return z * self._scale()

    def start(self, observed: Float[Array, "*batch band H W"]) -> Float[Array, "*batch 3 H W"]:
        """The scaled starting point ``initial_state(...) / scale``."""
        f = self.forward
        return initial_state(observed, f.background, f.slope_basis) / self._scale()

    def optimizer(self, steps: int | None = None) -> optax.GradientTransformation:
        """What ``__call__`` uses: Adam, its rate decaying from `learning_rate` to 1 % of it
        over `steps` (default :attr:`steps`) on a cosine, so the last steps settle instead of
        jittering around the minimum.

        With a concrete rate the same optimiser object is returned for the same (rate, steps),
        so repeated :meth:`fit` calls reuse their compiled step.
        """
        n = self.steps if steps is None else steps
        rate = _concrete(self.learning_rate)
        if rate is None:  # traced (inside jit/grad): build it in the trace
            return _adam_cosine(self.learning_rate, n)
        return _cached_adam_cosine(float(rate), n)

    # ------------------------------------------------------------------ running
    def _check_input(self, x: Any) -> None:
        n = self.forward.n_bands
        _check_band_count(self, x, n, "reflectance")
        if jnp.ndim(self.noise_std) == 1 and jnp.shape(self.noise_std)[0] != n:
            raise ShapeError(
                f"MethaneRetrieval.noise_std has {jnp.shape(self.noise_std)[0]} per-band values "
                f"but the forward model has {n} bands"
            )

    @staticmethod
    def _float(v: Any) -> Array:
        v = jnp.asarray(v)
        return v if jnp.issubdtype(v.dtype, jnp.floating) else v.astype(jnp.float32)

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        self._check_input(x)

        def fn(v: Array) -> Array:
            observed = self._float(v)
            z, _state, _losses = optimise(
                _retrieval_loss,
                self.start(observed),
                (observed, self),
                self.optimizer(),
                self.steps,
            )
            return self.unscaled(z)

        return map_bands(fn, x, names=_names(STATE_BANDS))

    def fit(
        self,
        x: Any,
        *,
        steps: int | None = None,
        optimizer: optax.GradientTransformation | None = None,
        chunk: int = 25,
        target_loss: float | None = None,
        rtol: float | None = None,
    ) -> RetrievalResult:
        """Run the retrieval from the host with a loss curve and early stopping.

        Same objective and starting point as ``__call__``, driven by
        :func:`~georax.geo.retrieval.optimise.fit` (chunks of compiled steps).

        **Arguments:**

        - `x`: reflectance, array or GeoTensor.
        - `steps`: the most steps (default :attr:`steps`).
        - `optimizer`: any optax optimiser (default :meth:`optimizer` for `steps`).
        - `chunk`, `target_loss`, `rtol`: see :func:`~georax.geo.retrieval.optimise.fit`.

        **Returns:** a :class:`RetrievalResult` (state like ``x``: GeoTensor in, GeoTensor out).
        """
        self._check_input(x)
        observed = self._float(values_of(x))
        result: FitResult = fit(
            _retrieval_loss,
            self.start(observed),
            (observed, self),
            self.optimizer(steps) if optimizer is None else optimizer,
            steps=self.steps if steps is None else steps,
            chunk=chunk,
            target_loss=target_loss,
            rtol=rtol,
        )
        state = self.unscaled(result.params)
        out = map_bands(lambda _: state, x, names=_names(STATE_BANDS))
        return RetrievalResult(out, result.losses)

    def precheck(self, shape: tuple[int, ...], limits: Limits) -> tuple[int, ...]:
        """Refuse a step count over ``limits.max_trace_steps`` and check the patchwise model.

        Every step runs the patchwise forward model and its gradient over the whole scene, so
        run time grows with `steps` (the scan itself is traced once).
        """
        if self.steps > limits.max_trace_steps:
            raise BudgetExceededError(
                self.steps,
                limits.max_trace_steps,
                stage="precheck",
                detail=(
                    f"MethaneRetrieval.steps={self.steps} optimiser steps (a loop count, "
                    f"limit max_trace_steps={limits.max_trace_steps})"
                ),
            )
        if len(shape) < 3:
            raise ShapeError(f"MethaneRetrieval expects (..., band, H, W), got shape {shape}")
        state_shape = (*shape[:-3], 3, *shape[-2:])
        Patchwise(self.patcher, self.forward, self.batch_size).precheck(state_shape, limits)
        return state_shape
