"""Pure functions of methane retrieval: the Beer-Lambert forward model and the closed-form methods.

Arrays are bands-first, ``(..., band, H, W)``; leading axes are batch axes. Per-band constants
(``background``, ``absorption``, ``slope_basis``) are 1-D ``(band,)`` arrays. Units: enhancement
``dX`` in ppm*m (column enhancement above the ambient background), absorption ``k_b`` in
1/(ppm*m), reflectance unitless. Every function is differentiable.

The forward model (per pixel, per band ``b``)::

    y_b = a * (1 + s * w_b) * bg_b * exp(-m * k_b * dX)

with the *state* ``(dX, a, s)`` = (enhancement, albedo factor, spectral slope) as three bands,
``bg_b`` the background top-of-atmosphere reflectance, ``w_b`` the slope basis and ``m`` the air
mass factor. ``k_b`` is a band-effective coefficient (see :mod:`georax.data.plume` for the
synthetic spectrum the sample scenes use).

The closed-form methods:

- :func:`matched_filter`: the classical linearised estimator (Thompson et al. 2015; Foote et al.
  2020 use the same form) with a shrinkage-regularised background covariance.
- :func:`band_ratio_signal` / :func:`band_ratio_enhancement`: the Sentinel-2 B12/B11 method of
  Varon et al. (2021), single pass (MBSP) or normalised by a plume-free reference pass (MBMP).
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from georax.array.reductions import nanpercentile

__all__ = [
    "STATE_BANDS",
    "background_spectrum",
    "background_statistics",
    "band_ratio_enhancement",
    "band_ratio_signal",
    "data_misfit",
    "forward_reflectance",
    "initial_state",
    "matched_filter",
    "smoothness_penalty",
    "transmittance",
]

#: Band names of a retrieval state: enhancement (ppm*m), albedo factor, spectral slope.
STATE_BANDS = ("enhancement", "albedo", "slope")


def _column(v: ArrayLike) -> Array:
    """A ``(band,)`` vector as ``(band, 1, 1)`` to broadcast against ``(..., band, H, W)``."""
    return jnp.asarray(v)[:, None, None]


def transmittance(
    enhancement: Float[Array, "*batch 1 H W"],
    absorption: Float[ArrayLike, " band"],
    air_mass_factor: Float[ArrayLike, ""],
) -> Float[Array, "*batch band H W"]:
    """Beer-Lambert band transmittance ``T_b = exp(-m k_b dX)``.

    **Arguments:**

    - `enhancement`: ``dX`` in ppm*m, one band.
    - `absorption`: ``k_b`` per band, 1/(ppm*m).
    - `air_mass_factor`: ``m`` (``1/cos(sun zenith) + 1/cos(view zenith)``).

    **Returns:** the transmittance of each band, ``(..., band, H, W)``.
    """
    return jnp.exp(-air_mass_factor * _column(absorption) * enhancement)


def forward_reflectance(
    state: Float[Array, "*batch 3 H W"],
    background: Float[ArrayLike, " band"],
    absorption: Float[ArrayLike, " band"],
    slope_basis: Float[ArrayLike, " band"],
    air_mass_factor: Float[ArrayLike, ""],
) -> Float[Array, "*batch band H W"]:
    """The forward model ``y_b = a (1 + s w_b) bg_b exp(-m k_b dX)`` (module docstring).

    **Arguments:**

    - `state`: ``(dX, a, s)`` as three bands (see :data:`STATE_BANDS`).
    - `background`: ``bg_b``, the background reflectance at ``a = 1, s = 0, dX = 0``.
    - `absorption`: ``k_b``, 1/(ppm*m).
    - `slope_basis`: ``w_b``.
    - `air_mass_factor`: ``m``.

    **Returns:** the modelled reflectance, ``(..., band, H, W)``.
    """
    dx, albedo, slope = state[..., 0:1, :, :], state[..., 1:2, :, :], state[..., 2:3, :, :]
    surface = albedo * (1.0 + slope * _column(slope_basis)) * _column(background)
    return surface * transmittance(dx, absorption, air_mass_factor)


def background_spectrum(x: Float[Array, "*batch band H W"]) -> Float[Array, "*batch band"]:
    """The scene's background spectrum: the per-band median over the pixels.

    The median, not the mean, so a plume covering a minority of the scene barely moves it.
    """
    return nanpercentile(x, 50.0, (-2, -1))


def background_statistics(
    x: Float[Array, "*batch band H W"], shrinkage: Float[ArrayLike, ""]
) -> tuple[Float[Array, "*batch band"], Float[Array, "*batch band band"]]:
    """Mean and shrinkage-regularised covariance of the pixels of each image.

    ``C_reg = (1 - g) C + g (trace(C) / band) I`` (shrinkage ``g`` towards a scaled identity,
    Ledoit & Wolf's target), where ``C`` is the unbiased sample covariance over ``H * W`` pixels.
    Regularising keeps the inverse stable when bands are nearly collinear or pixels are few.
    """
    flat = x.reshape(*x.shape[:-2], -1)
    n = flat.shape[-1]
    mean = jnp.mean(flat, axis=-1)
    centred = flat - mean[..., None]
    cov = jnp.einsum("...bn,...cn->...bc", centred, centred) / (n - 1)
    bands = cov.shape[-1]
    scale = jnp.trace(cov, axis1=-2, axis2=-1)[..., None, None] / bands
    cov = (1.0 - shrinkage) * cov + shrinkage * scale * jnp.eye(bands, dtype=cov.dtype)
    return mean, cov


def matched_filter(
    x: Float[Array, "*batch band H W"],
    absorption: Float[ArrayLike, " band"],
    air_mass_factor: Float[ArrayLike, ""],
    shrinkage: Float[ArrayLike, ""] = 1e-3,
) -> Float[Array, "*batch 1 H W"]:
    """The classical matched-filter enhancement estimate, in ppm*m.

    ``dX(p) = (x(p) - mu)^T C^-1 t / (t^T C^-1 t)`` with ``mu`` and ``C`` the scene's mean and
    regularised covariance (:func:`background_statistics`) and the target signature
    ``t = -m k * mu``: the derivative of the forward model with respect to ``dX`` at ``dX = 0``
    for a pixel equal to the mean. Closed form, one pass; it linearises Beer-Lambert (so it
    underestimates strong plumes), scales the estimate by the pixel's brightness relative to the
    mean, and takes the background statistics from a scene that contains the plume.

    **Arguments:**

    - `x`: reflectance, ``(..., band, H, W)``; statistics are taken per image.
    - `absorption`: ``k_b``, 1/(ppm*m).
    - `air_mass_factor`: ``m``.
    - `shrinkage`: covariance regularisation ``g`` in ``[0, 1]``.

    **Returns:** ``(..., 1, H, W)`` enhancement in ppm*m.
    """
    mean, cov = background_statistics(x, shrinkage)
    target = -air_mass_factor * jnp.asarray(absorption) * mean
    cinv_t = jnp.linalg.solve(cov, target[..., None])[..., 0]
    norm = jnp.sum(target * cinv_t, axis=-1)
    score = jnp.einsum("...bhw,...b->...hw", x - mean[..., None, None], cinv_t)
    return (score / norm[..., None, None])[..., None, :, :]


def band_ratio_signal(
    x: Float[Array, "*batch band H W"],
    swir1_band: int,
    swir2_band: int,
    reference: Float[Array, "*batch band H W"] | None = None,
) -> Float[Array, "*batch 1 H W"]:
    """Fractional methane signal ``dR`` of the SWIR band ratio (Varon et al. 2021).

    Single pass (MBSP, ``reference=None``): ``dR = c B12 / B11 - 1`` with ``c`` the least-squares
    fit of ``B11 ~ c B12`` over the scene (``c = sum B11 B12 / sum B12^2``), i.e. the ratio
    normalised to the scene. Multi-pass (MBMP): the same for a plume-free ``reference`` pass of
    the same ground, combined as a ratio, ``dR = (c B12 / B11) / (c' B12' / B11') - 1``, so that
    each pixel's own surface ratio cancels (Varon et al. take the difference of the two MBSP
    signals; the ratio is exact for a multiplicative surface and equal to first order).

    **Arguments:**

    - `x`: reflectance with the SWIR bands (B11 ~1610 nm, B12 ~2190 nm).
    - `swir1_band`, `swir2_band`: indices of B11 and B12 on the band axis.
    - `reference`: the plume-free pass, same shape as `x`, or None.

    **Returns:** ``(..., 1, H, W)`` ``dR`` (negative where methane absorbs).
    """

    def normalised_ratio(v: Array) -> Array:
        b11, b12 = v[..., swir1_band, :, :], v[..., swir2_band, :, :]
        c = jnp.sum(b11 * b12, axis=(-2, -1), keepdims=True) / jnp.sum(
            b12 * b12, axis=(-2, -1), keepdims=True
        )
        return c * b12 / b11

    ratio = normalised_ratio(x)
    if reference is not None:
        ratio = ratio / normalised_ratio(reference)
    return (ratio - 1.0)[..., None, :, :]


def band_ratio_enhancement(
    signal: Float[Array, "*batch 1 H W"],
    absorption: Float[ArrayLike, " 2"],
    air_mass_factor: Float[ArrayLike, ""],
) -> Float[Array, "*batch 1 H W"]:
    """Invert a band-ratio signal with Beer-Lambert: ``dX = -log(1 + dR) / (m (k12 - k11))``.

    The ratio of the two bands' transmittances is ``exp(-m (k12 - k11) dX)``, so the inversion is
    exact for band-effective coefficients (no linearisation).

    **Arguments:**

    - `signal`: ``dR`` from :func:`band_ratio_signal`.
    - `absorption`: ``(k11, k12)``, 1/(ppm*m).
    - `air_mass_factor`: ``m``.

    **Returns:** enhancement in ppm*m.
    """
    k = jnp.asarray(absorption)
    return -jnp.log1p(signal) / (air_mass_factor * (k[1] - k[0]))


def data_misfit(
    predicted: Float[Array, "*batch band H W"],
    observed: Float[Array, "*batch band H W"],
    noise_std: Float[ArrayLike, "*#band"],
) -> Float[Array, ""]:
    """Gaussian negative log-likelihood up to a constant: ``0.5 sum ((pred - obs) / sigma)^2``.

    `noise_std` is a scalar or one value per band.
    """
    sigma = jnp.asarray(noise_std)
    sigma = _column(sigma) if sigma.ndim == 1 else sigma
    return 0.5 * jnp.sum(((predicted - observed) / sigma) ** 2)


def smoothness_penalty(
    state: Float[Array, "*batch C H W"], prior_std: Float[ArrayLike, " C"]
) -> Float[Array, ""]:
    """Gaussian smoothness prior: ``0.5 sum_c sum (grad state_c / tau_c)^2``.

    Forward differences between 4-neighbours (rows and columns, no wrap-around); ``tau_c`` is the
    expected standard deviation of a neighbour difference of channel ``c`` in its own units, and
    ``tau_c = 0`` switches the prior off for that channel.
    """
    tau = jnp.asarray(prior_std)
    inv = jnp.where(tau > 0, 1.0 / jnp.where(tau > 0, tau, 1.0), 0.0)
    w = _column(inv) ** 2
    dy = jnp.diff(state, axis=-2)
    dx = jnp.diff(state, axis=-1)
    return 0.5 * (jnp.sum(w * dy**2) + jnp.sum(w * dx**2))


def initial_state(
    x: Float[Array, "*batch band H W"],
    background: Float[ArrayLike, " band"],
    slope_basis: Float[ArrayLike, " band"],
) -> Float[Array, "*batch 3 H W"]:
    """A starting state: no enhancement, albedo and slope fitted per pixel by least squares.

    With ``dX = 0`` the model is linear in ``(a, a s)``: ``y_b = a bg_b + (a s) bg_b w_b``; the
    2x2 normal equations are the same for every pixel (ridge 1e-6 of their trace, so a layout
    whose slope basis is zero still solves).
    """
    bg = jnp.asarray(background, x.dtype)
    basis = jnp.stack([bg, bg * jnp.asarray(slope_basis, x.dtype)])  # (2, band)
    gram = basis @ basis.T
    gram = gram + 1e-6 * jnp.trace(gram) * jnp.eye(2, dtype=gram.dtype)
    rhs = jnp.einsum("kb,...bhw->...khw", basis, x)
    coef = jnp.einsum("jk,...khw->...jhw", jnp.linalg.inv(gram), rhs)
    albedo = coef[..., 0:1, :, :]
    slope = coef[..., 1:2, :, :] / jnp.where(albedo != 0, albedo, 1.0)
    return jnp.concatenate([jnp.zeros_like(albedo), albedo, slope], axis=-3)
