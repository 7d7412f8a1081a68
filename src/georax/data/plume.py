"""Synthetic methane plume scenes with a known enhancement map, and the synthetic CH4 spectroscopy.

No data files and no spectroscopic database: everything is generated with NumPy from a seed,
so tests and examples can score a retrieval against the exact truth.

The synthetic absorption spectrum (read this before trusting a number)
======================================================================
Real methane retrievals use line-by-line cross sections (HITRAN) run through a radiative
transfer model. Those tables cannot be shipped here, so :func:`ch4_absorption` is a
**synthetic** spectrum: a sum of Gaussian bands placed near the real CH4 features and scaled to
a plausible strength. It is smooth (no rotational lines), it is not HITRAN, and it must not be
used for real data. Its features (centre / FWHM in nm, relative strength) sit where methane
absorbs in the short-wave infrared:

- the ``2 nu3`` overtone near 1640-1670 nm (weak; what Sentinel-2 B11 sees),
- the ``nu2 + nu3`` band near 2200 nm,
- the strong ``nu3 + nu4`` complex from ~2280 to ~2430 nm (R, Q and P branches, the Q branch
  near 2317 nm being the strongest feature).

The strongest feature has :data:`CH4_PEAK_ABSORPTION` = 5e-5 per ppm*m, so a 1000 ppm*m
enhancement seen through an air mass factor of 2 absorbs ~10 % at 2317 nm: the order of
magnitude of imaging-spectrometer plume signals, not a calibrated value.

Band models
===========
A :class:`SpectralLayout` lists band centres and full widths at half maximum (Gaussian spectral
response functions). :func:`band_absorption` is the response-weighted mean absorption of each
band: the *band-effective* Beer-Lambert coefficient ``k_b`` the retrieval operators use.
:func:`band_transmittance` is the *exact* band transmittance, the response-weighted mean of the
monochromatic ``exp(-m k(lambda) dX)`` on a 0.5 nm grid; for wide bands and strong plumes it
is slightly larger than ``exp(-m k_b dX)`` (Jensen's inequality), so scenes carry a small,
realistic model error relative to the band-effective model that every retrieval shares.

Plume scenes
============
:func:`plume_scene` builds, per pixel ``p`` and band ``b``::

    reflectance_b(p) = albedo(p) * (1 + slope(p) * w_b) * s_b * T_b(m, dX(p)) + noise

- ``s_b``: the background top-of-atmosphere reflectance (:func:`surface_spectrum` averaged over
  the band: a soil-like spectrum with clay and carbonate features; the ambient atmosphere's
  absorption is folded into it, so ``dX`` is the enhancement *above* background).
- ``albedo``: lognormal surface brightness (smooth fields plus sharp-edged patches: fields, roads).
- ``slope``: per-pixel spectral slope against the band basis ``w_b`` (:func:`slope_basis`, the
  band centre's position in the layout's span, -0.5 .. 0.5): surfaces differ in spectral shape
  as well as in brightness, which is what defeats single-pass methods on heterogeneous ground.
- ``dX``: the enhancement in ppm*m from a Gaussian plume (:func:`gaussian_plume`), textured by a
  smooth turbulence field.
- ``m``: the two-way air mass factor ``1/cos(sun_zenith) + 1/cos(view_zenith)``.
- noise: additive Gaussian, the same standard deviation in every band: the scene-mean
  background reflectance divided by ``snr``.

A *reference* pass (same surface, no plume, its own noise, a 3 % illumination change) comes
with every scene: the band-ratio method normalises by it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from affine import Affine
from jaxtyping import Float

from georax.core.errors import ConfigError
from georax.tensor.geotensor import GeoTensor

__all__ = [
    "CH4_FEATURES",
    "CH4_PEAK_ABSORPTION",
    "HYPERSPECTRAL_SWIR",
    "PLUME_CRS",
    "PLUME_ORIGIN",
    "PPM_M_PER_KG_M2",
    "SENTINEL2_SWIR",
    "PlumeScene",
    "SpectralLayout",
    "air_mass_factor",
    "band_absorption",
    "band_reflectance",
    "band_transmittance",
    "ch4_absorption",
    "gaussian_plume",
    "hyperspectral_layout",
    "plume_scene",
    "slope_basis",
    "surface_spectrum",
]

#: Default CRS and upper-left corner of plume scenes (UTM 13N metres: the Permian Basin).
PLUME_CRS = "EPSG:32613"
PLUME_ORIGIN = (600_000.0, 3_560_000.0)

#: Synthetic CH4 features: (centre nm, FWHM nm, strength relative to the strongest).
CH4_FEATURES: tuple[tuple[float, float, float], ...] = (
    (1645.0, 30.0, 0.10),
    (1666.0, 14.0, 0.16),
    (2205.0, 50.0, 0.22),
    (2290.0, 40.0, 0.50),
    (2317.0, 12.0, 1.00),
    (2355.0, 45.0, 0.62),
    (2385.0, 30.0, 0.45),
    (2425.0, 45.0, 0.25),
)
#: Absorption coefficient of the strongest synthetic feature, per ppm*m (see the module doc).
CH4_PEAK_ABSORPTION = 5e-5

#: ppm*m of CH4 column enhancement per kg/m^2: 1 ppm*m is 1e-6 of a metre of air at
#: 41.6 mol/m^3 (1013 hPa, 293 K) times 16.04 g/mol = 6.67e-7 kg/m^2.
PPM_M_PER_KG_M2 = 1.0 / (1e-6 * 41.6 * 16.04e-3)

_GRID_STEP_NM = 0.5
_SRF_HALF_SPAN = 3.0  # Gaussian responses are integrated over centre +- 3 FWHM
_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


class SpectralLayout(NamedTuple):
    """Bands of a sensor: names, centres and full widths at half maximum (nm).

    Each band's spectral response is a Gaussian of that centre and FWHM.
    """

    name: str
    band_names: tuple[str, ...]
    centres_nm: tuple[float, ...]
    fwhm_nm: tuple[float, ...]

    @property
    def n_bands(self) -> int:
        """Number of bands."""
        return len(self.band_names)


def hyperspectral_layout(
    n_bands: int = 36,
    start_nm: float = 2100.0,
    stop_nm: float = 2450.0,
    fwhm_nm: float | None = None,
) -> SpectralLayout:
    """An imaging-spectrometer layout: ``n_bands`` evenly spaced centres in ``[start, stop]``.

    **Arguments:**

    - `n_bands`: number of bands (>= 2).
    - `start_nm`, `stop_nm`: first and last band centre.
    - `fwhm_nm`: band width; default the band spacing (adjacent responses cross at half height).

    **Returns:** a :class:`SpectralLayout` with bands named ``"b2100"``-style (rounded centre).
    """
    if isinstance(n_bands, bool) or not isinstance(n_bands, int) or n_bands < 2:
        raise ConfigError("hyperspectral_layout", "n_bands", n_bands, "must be an int >= 2")
    if not 0 < start_nm < stop_nm:
        raise ConfigError("hyperspectral_layout", "stop_nm", stop_nm, "must exceed start_nm > 0")
    centres = np.linspace(start_nm, stop_nm, n_bands)
    width = float(centres[1] - centres[0]) if fwhm_nm is None else float(fwhm_nm)
    if not width > 0:
        raise ConfigError("hyperspectral_layout", "fwhm_nm", fwhm_nm, "must be > 0")
    names = tuple(f"b{round(c)}" for c in centres)
    return SpectralLayout(
        "hyperspectral", names, tuple(float(c) for c in centres), (width,) * n_bands
    )


#: 36 bands every 10 nm from 2100 to 2450 nm, 10 nm wide (an EMIT/PRISMA-like SWIR window).
HYPERSPECTRAL_SWIR = hyperspectral_layout()

#: Sentinel-2A MSI short-wave infrared bands (centre and bandwidth from the ESA spectral
#: response functions, rounded).
SENTINEL2_SWIR = SpectralLayout("sentinel2", ("B11", "B12"), (1613.7, 2202.4), (90.8, 174.9))


def ch4_absorption(wavelength_nm: np.ndarray | float) -> np.ndarray:
    """The synthetic CH4 absorption spectrum ``k(lambda)`` in 1/(ppm*m). **Not HITRAN.**

    ``k(lambda) = CH4_PEAK_ABSORPTION * sum_i a_i exp(-(lambda - c_i)^2 / (2 s_i^2)) / max``,
    Gaussian bands at the :data:`CH4_FEATURES` (centre ``c_i``, FWHM ``2.355 s_i``, strength
    ``a_i``), normalised so the spectrum's maximum is :data:`CH4_PEAK_ABSORPTION`. See the
    module docstring for why it is synthetic and where its features come from.

    **Arguments:**

    - `wavelength_nm`: wavelengths in nm (any shape).

    **Returns:** float64 absorption coefficients of the same shape.
    """
    lam = np.asarray(wavelength_nm, dtype=np.float64)
    return CH4_PEAK_ABSORPTION * _feature_sum(lam) / _FEATURE_MAX


def _feature_sum(lam: np.ndarray) -> np.ndarray:
    out = np.zeros_like(lam)
    for centre, fwhm, strength in CH4_FEATURES:
        s = fwhm * _FWHM_TO_SIGMA
        out = out + strength * np.exp(-0.5 * ((lam - centre) / s) ** 2)
    return out


_FEATURE_MAX = float(_feature_sum(np.arange(1500.0, 2500.0, 0.1)).max())


def surface_spectrum(wavelength_nm: np.ndarray | float) -> np.ndarray:
    """The synthetic background top-of-atmosphere reflectance of a dry, soil-like surface.

    ``0.30 - 0.08 u^2 + 0.02 (u + 1)``, ``u = (lambda - 2000) / 500``, minus a clay (Al-OH)
    feature at 2200 nm (depth 0.02, FWHM 25 nm) and a carbonate feature at 2340 nm (depth
    0.015, FWHM 40 nm). Synthetic, like :func:`ch4_absorption`: it gives the background the
    smooth decline and the mineral features that real SWIR scenes show.

    **Arguments:**

    - `wavelength_nm`: wavelengths in nm (any shape).

    **Returns:** float64 reflectance of the same shape.
    """
    lam = np.asarray(wavelength_nm, dtype=np.float64)
    u = (lam - 2000.0) / 500.0
    base = 0.30 - 0.08 * u**2 + 0.02 * (u + 1.0)
    clay = 0.020 * np.exp(-0.5 * ((lam - 2200.0) / (25.0 * _FWHM_TO_SIGMA)) ** 2)
    carbonate = 0.015 * np.exp(-0.5 * ((lam - 2340.0) / (40.0 * _FWHM_TO_SIGMA)) ** 2)
    return base - clay - carbonate


def _responses(layout: SpectralLayout) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per band: the fine wavelength grid and the normalised Gaussian response on it."""
    out = []
    for centre, fwhm in zip(layout.centres_nm, layout.fwhm_nm, strict=True):
        half = _SRF_HALF_SPAN * fwhm
        lam = np.arange(centre - half, centre + half + _GRID_STEP_NM / 2, _GRID_STEP_NM)
        srf = np.exp(-0.5 * ((lam - centre) / (fwhm * _FWHM_TO_SIGMA)) ** 2)
        out.append((lam, srf / srf.sum()))
    return out


def band_absorption(layout: SpectralLayout) -> Float[np.ndarray, " band"]:
    """Band-effective Beer-Lambert coefficients: ``k_b = int SRF_b(l) k(l) dl`` (1/(ppm*m)).

    **Arguments:**

    - `layout`: the sensor's bands.

    **Returns:** float64 ``(band,)``.
    """
    return np.array([np.sum(srf * ch4_absorption(lam)) for lam, srf in _responses(layout)])


def band_reflectance(layout: SpectralLayout) -> Float[np.ndarray, " band"]:
    """The background spectrum seen by each band: ``s_b = int SRF_b(l) surface(l) dl``.

    **Arguments:**

    - `layout`: the sensor's bands.

    **Returns:** float64 ``(band,)``.
    """
    return np.array([np.sum(srf * surface_spectrum(lam)) for lam, srf in _responses(layout)])


def slope_basis(layout: SpectralLayout) -> Float[np.ndarray, " band"]:
    """Where each band centre sits in the layout's span: ``(c_b - mid) / (max - min)``.

    The per-pixel spectral slope multiplies this basis (values in ``[-0.5, 0.5]``; zeros for a
    single-band layout).

    **Arguments:**

    - `layout`: the sensor's bands.

    **Returns:** float64 ``(band,)``.
    """
    c = np.asarray(layout.centres_nm, dtype=np.float64)
    span = c.max() - c.min()
    if span == 0:
        return np.zeros_like(c)
    return (c - 0.5 * (c.max() + c.min())) / span


def band_transmittance(
    layout: SpectralLayout, enhancement: np.ndarray, air_mass: float
) -> Float[np.ndarray, "band ..."]:
    """Exact band transmittance ``T_b = int SRF_b(l) exp(-m k(l) dX) dl`` per pixel.

    Tabulated on 1025 enhancement values from 0 to the largest requested and linearly
    interpolated: ``T_b`` is smooth and monotone in ``dX``, and the interpolation error is
    below 1e-6 for enhancements up to 1e4 ppm*m at air mass factors up to 6.

    **Arguments:**

    - `layout`: the sensor's bands.
    - `enhancement`: ``dX`` in ppm*m, any shape, ``>= 0``.
    - `air_mass`: the air mass factor ``m``.

    **Returns:** float64 ``(band, *enhancement.shape)``.
    """
    dx = np.asarray(enhancement, dtype=np.float64)
    if dx.size and float(dx.min()) < 0:
        raise ConfigError("band_transmittance", "enhancement", float(dx.min()), "must be >= 0")
    top = max(float(dx.max(initial=0.0)), 1.0)
    table_dx = np.linspace(0.0, top, 1025)
    out = np.empty((layout.n_bands, *dx.shape))
    for b, (lam, srf) in enumerate(_responses(layout)):
        k = ch4_absorption(lam)
        table = np.exp(-air_mass * np.outer(table_dx, k)) @ srf
        out[b] = np.interp(dx, table_dx, table)
    return out


def air_mass_factor(sun_zenith: float, view_zenith: float = 0.0) -> float:
    """Two-way geometric air mass factor ``1/cos(sun_zenith) + 1/cos(view_zenith)`` (degrees)."""
    for name, angle in (("sun_zenith", sun_zenith), ("view_zenith", view_zenith)):
        if not 0.0 <= angle < 80.0:
            raise ConfigError("air_mass_factor", name, angle, "must be in [0, 80) degrees")
    return 1.0 / math.cos(math.radians(sun_zenith)) + 1.0 / math.cos(math.radians(view_zenith))


def gaussian_plume(
    shape: tuple[int, int],
    pixel_size: float,
    source: tuple[float, float],
    emission_kg_h: float,
    wind_speed: float,
    wind_direction_deg: float,
    dispersion: float = 0.11,
) -> Float[np.ndarray, "H W"]:
    """Vertically integrated Gaussian plume: column enhancement in ppm*m on a pixel grid.

    ``C(x, y) = Q / (sqrt(2 pi) sigma_y(x) u) exp(-y^2 / (2 sigma_y^2)) Phi(x / sigma_0)`` (kg/m^2)
    with ``x`` downwind and ``y`` crosswind distance from the source (m), ``Q`` the emission
    (kg/s), ``u`` the wind speed, ``sigma_y(x) = sqrt(sigma_0^2 + (a x / sqrt(1 + 1e-4 x))^2)``
    (Briggs' open-country form, ``a = dispersion``; 0.11 is stability class C),
    ``sigma_0`` one pixel, and the normal CDF ``Phi`` a smooth onset at the source. Converted to
    ppm*m with :data:`PPM_M_PER_KG_M2`.

    **Arguments:**

    - `shape`: ``(H, W)``.
    - `pixel_size`: metres per pixel.
    - `source`: ``(row, col)`` of the source in pixels (fractional allowed).
    - `emission_kg_h`: emission rate ``Q`` in kg/h.
    - `wind_speed`: m/s, > 0.
    - `wind_direction_deg`: direction the wind blows *towards*, degrees clockwise from east
      on the image (0: towards increasing columns, 90: towards increasing rows).
    - `dispersion`: Briggs coefficient ``a``.

    **Returns:** float64 ``(H, W)`` enhancement in ppm*m.
    """
    h, w = shape
    rows, cols = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
    dr, dc = (rows - source[0]) * pixel_size, (cols - source[1]) * pixel_size
    theta = math.radians(wind_direction_deg)
    down = dc * math.cos(theta) + dr * math.sin(theta)
    cross = -dc * math.sin(theta) + dr * math.cos(theta)
    sigma0 = pixel_size
    xd = np.maximum(down, 0.0)
    sigma_y = np.sqrt(sigma0**2 + (dispersion * xd / np.sqrt(1.0 + 1e-4 * xd)) ** 2)
    onset = 0.5 * (1.0 + _erf(down / (sigma0 * math.sqrt(2.0))))
    q = emission_kg_h / 3600.0
    column = q / (math.sqrt(2.0 * math.pi) * sigma_y * wind_speed)
    column = column * np.exp(-0.5 * (cross / sigma_y) ** 2) * onset
    return column * PPM_M_PER_KG_M2


def _erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], length: float) -> np.ndarray:
    """Unit-variance Gaussian random field with correlation length ``length`` pixels (FFT)."""
    h, w = shape
    noise = rng.standard_normal((h, w))
    ky = np.fft.fftfreq(h)[:, None]
    kx = np.fft.rfftfreq(w)[None, :]
    k2 = (2.0 * math.pi) ** 2 * (ky**2 + kx**2)
    field = np.fft.irfft2(np.fft.rfft2(noise) * np.exp(-0.5 * k2 * length**2), s=(h, w))
    return (field - field.mean()) / max(float(field.std()), 1e-12)


def _patches(rng: np.random.Generator, shape: tuple[int, int], block: int) -> np.ndarray:
    """Piecewise-constant unit-variance field on ``block``-pixel rectangles (sharp edges)."""
    h, w = shape
    coarse = rng.standard_normal((-(-h // block) + 1, -(-w // block) + 1))
    oy, ox = rng.integers(0, block, 2)
    rr = (np.arange(h) + oy) // block
    cc = (np.arange(w) + ox) // block
    return coarse[rr[:, None], cc[None, :]]


class PlumeScene(NamedTuple):
    """A synthetic plume scene and its truth (see :func:`plume_scene`).

    GeoTensors share one grid (``transform``, ``crs``):

    - `reflectance`: ``(band, H, W)`` float32 TOA reflectance with the plume, named bands.
    - `reference`: ``(band, H, W)`` the same surface on a plume-free pass.
    - `enhancement`: ``(1, H, W)`` float32 true CH4 enhancement in ppm*m.
    - `albedo`: ``(1, H, W)`` true surface brightness factor.
    - `slope`: ``(1, H, W)`` true spectral slope (against :attr:`slope_basis`).

    Known sensor and model constants (NumPy ``(band,)`` float32 unless said):

    - `layout`: the :class:`SpectralLayout`.
    - `background`: ``s_b``, the background reflectance at albedo 1, slope 0.
    - `absorption`: band-effective coefficients ``k_b`` (:func:`band_absorption`).
    - `slope_basis`: ``w_b`` (:func:`slope_basis`).
    - `air_mass_factor`: ``m`` (float).
    - `noise_std`: the standard deviation of the additive noise (float).
    - `source`: ``(row, col)`` of the emission source in pixels.
    """

    reflectance: GeoTensor
    reference: GeoTensor
    enhancement: GeoTensor
    albedo: GeoTensor
    slope: GeoTensor
    layout: SpectralLayout
    background: np.ndarray
    absorption: np.ndarray
    slope_basis: np.ndarray
    air_mass_factor: float
    noise_std: float
    source: tuple[float, float]


_SENSORS = {"hyperspectral": 30.0, "sentinel2": 20.0}


def _check_scene_args(
    size: int | tuple[int, int],
    sensor: str,
    emission_kg_h: float,
    wind_speed: float,
    snr: float,
) -> tuple[int, int]:
    name = "plume_scene"
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if len(hw) != 2 or not all(
        isinstance(v, int | np.integer) and not isinstance(v, bool) and v >= 8 for v in hw
    ):
        raise ConfigError(name, "size", size, "must be an int >= 8 or (height, width) of them")
    if sensor not in _SENSORS:
        raise ConfigError(name, "sensor", sensor, f"expected one of {tuple(_SENSORS)}")
    for field, value in (("emission_kg_h", emission_kg_h), ("wind_speed", wind_speed)):
        if not value > 0:
            raise ConfigError(name, field, value, "must be > 0")
    if not snr > 0:
        raise ConfigError(name, "snr", snr, "must be > 0")
    return int(hw[0]), int(hw[1])


def plume_scene(
    size: int | tuple[int, int] = 128,
    *,
    sensor: str = "hyperspectral",
    seed: int = 0,
    layout: SpectralLayout | None = None,
    emission_kg_h: float = 1500.0,
    wind_speed: float = 4.0,
    wind_direction_deg: float | None = None,
    sun_zenith: float = 30.0,
    view_zenith: float = 0.0,
    snr: float = 150.0,
    pixel_size: float | None = None,
    origin: tuple[float, float] = PLUME_ORIGIN,
    crs: str = PLUME_CRS,
) -> PlumeScene:
    """A seeded synthetic methane plume scene with its truth (recipe in the module docstring).

    **Arguments:**

    - `size`: ``H = W = size`` or ``(H, W)`` pixels (>= 8).
    - `sensor`: ``"hyperspectral"`` (:data:`HYPERSPECTRAL_SWIR`, 30 m pixels) or
      ``"sentinel2"`` (:data:`SENTINEL2_SWIR`, 20 m pixels).
    - `seed`: selects the surface, the turbulence, the wind direction (when not given) and the
      noise.
    - `layout`: override the sensor's bands (e.g. ``hyperspectral_layout(72)``).
    - `emission_kg_h`, `wind_speed`: the source (kg/h) and the wind (m/s).
    - `wind_direction_deg`: direction the plume travels, degrees clockwise from +columns;
      default drawn from the seed in [-30, 30].
    - `sun_zenith`, `view_zenith`: geometry (degrees) for the air mass factor.
    - `snr`: signal-to-noise ratio of the scene-mean background.
    - `pixel_size`: metres; default per sensor.
    - `origin`, `crs`: upper-left corner and CRS of the grid.

    **Returns:** a :class:`PlumeScene`.
    """
    h, w = _check_scene_args(size, sensor, emission_kg_h, wind_speed, snr)
    layout = layout or (HYPERSPECTRAL_SWIR if sensor == "hyperspectral" else SENTINEL2_SWIR)
    res = float(pixel_size or _SENSORS[sensor])
    if not res > 0:
        raise ConfigError("plume_scene", "pixel_size", pixel_size, "must be > 0")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 4242, h, w]))
    drawn = float(rng.uniform(-30.0, 30.0))
    direction = drawn if wind_direction_deg is None else float(wind_direction_deg)
    amf = air_mass_factor(sun_zenith, view_zenith)

    source = (h * (0.5 + 0.1 * float(rng.uniform(-1, 1))), w * 0.2)
    plume = gaussian_plume((h, w), res, source, emission_kg_h, wind_speed, direction)
    turbulence = 1.0 + 0.3 * _smooth_field(rng, (h, w), 3.0)
    enhancement = plume * np.clip(turbulence, 0.2, None)

    albedo = np.exp(
        0.18 * _smooth_field(rng, (h, w), 10.0)
        + 0.06 * _smooth_field(rng, (h, w), 1.5)
        + 0.12 * _patches(rng, (h, w), max(h, w) // 6)
    )
    slope = 0.05 * _smooth_field(rng, (h, w), 8.0) + 0.04 * _patches(rng, (h, w), max(h, w) // 5)

    s_b = band_reflectance(layout)
    w_b = slope_basis(layout)
    k_b = band_absorption(layout)
    sigma = float(s_b.mean() / snr)

    surface = albedo[None] * (1.0 + slope[None] * w_b[:, None, None]) * s_b[:, None, None]
    with_plume = surface * band_transmittance(layout, enhancement, amf)
    with_plume += sigma * rng.standard_normal(with_plume.shape)
    reference = 1.03 * surface + sigma * rng.standard_normal(surface.shape)

    transform = Affine(res, 0.0, origin[0], 0.0, -res, origin[1])

    def geo(v: np.ndarray, names: tuple[str, ...]) -> GeoTensor:
        return GeoTensor(v.astype(np.float32), transform, crs, None, names)

    return PlumeScene(
        reflectance=geo(with_plume, layout.band_names),
        reference=geo(reference, layout.band_names),
        enhancement=geo(enhancement[None], ("ch4_enhancement",)),
        albedo=geo(albedo[None], ("albedo",)),
        slope=geo(slope[None], ("slope",)),
        layout=layout,
        background=s_b.astype(np.float32),
        absorption=k_b.astype(np.float32),
        slope_basis=w_b.astype(np.float32),
        air_mass_factor=amf,
        noise_std=sigma,
        source=source,
    )
