"""Deterministic synthetic scenes: Sentinel-2 L1C, Sentinel-1 GRD and a DEM of one fake world.

No data files: every scene is generated with NumPy from a seed, in well under a second for
512x512 pixels. They are the embedded default input of the demo, tests and examples.

The recipe
==========
One *world* per seed: smooth random fields defined as functions of position in UTM zone 30N
metres (``EPSG:32630``), each a sum of 32 random plane waves (wavelengths log-uniform in a band,
power-law amplitudes, unit variance). Because the fields are functions of position, not arrays,
any grid -- any size, origin, resolution or CRS -- samples the *same* landscape, and the optical,
SAR and DEM scenes agree where they overlap (what the fusion case needs).

- Elevation ``z = 600 + 150 e1 + 20 e2`` m (``e1`` wavelengths 1-10 km, ``e2`` 150-800 m).
- Land cover (codes in :data:`LANDCOVER_CLASSES`): **water** where ``e1`` is in its lowest 4 %
  (lakes in valleys) or on the zero-crossings of a 1.5-6 km field (meandering rivers, ~40 m
  wide); else **urban** where an urban-density field exceeds its 90 % quantile; else
  **vegetation** where a moisture field is above its 35 % quantile; else **bare soil**.
- Surface top-of-atmosphere reflectance per class (:data:`S2_REFLECTANCE`, typical L1C values:
  water dark and bluish, vegetation with the red edge, bare soil rising into the SWIR, urban flat
  and bright), times ``1 + 0.08 t`` for a 30-300 m texture field ``t`` (urban: 20-80 m, 0.2),
  plus Gaussian sensor noise (1 % relative + 0.002 absolute).
- Clouds: opacity ``a = clip((c - q) / 0.5, 0, 1)`` with ``c`` a normalised 0.5-6 km field plus
  60-400 m detail, thresholded at its Gaussian quantile ``q`` for the requested ``cloud_cover``.
  Cirrus: a thin layer (opacity up to 0.35) from another field, ``cirrus_cover``. Cloud shadows:
  the opaque-cloud opacity sampled at the position displaced by ``h tan(sun_zenith)`` away from
  the sun (default 1.5 km cloud height, 35 deg zenith, 150 deg azimuth: ~1 km toward NNW), which
  dims the surface by up to 65 %. TOA = ``(1 - a) * surface * shadow + a * cloud``.
- Digital numbers: ``round(10000 * reflectance)`` as ``uint16``, clipped to ``[1, 65535]``
  (0 is nodata, as in L1C). No ``+1000`` radiometric offset (the pre-baseline-04.00 convention).

QA60 semantics
==============
The ``QA60`` band (``uint16``) carries the L1C cloud bits, per 10 m pixel (real QA60 is rasterised
at 60 m; per-pixel here so tests can check masks exactly):

- bit 10 (value 1024, :data:`QA60_OPAQUE_BIT`): opaque cloud -- set **iff** the opaque-cloud
  opacity of the pixel is > 0;
- bit 11 (value 2048, :data:`QA60_CIRRUS_BIT`): cirrus -- set **iff** cirrus opacity > 0 and the
  pixel is not opaque cloud (the bits are exclusive, as in ESA products);
- all other bits 0. Cloud shadows are not flagged (real QA60 has no shadow bit); the true
  shadow mask is in :func:`sentinel2_truth`.

Sentinel-1 and DEM
==================
``sentinel1_grd``: VV and VH backscatter (linear power, sigma0) per class
(:data:`S1_SIGMA0`), modulated by terrain (slopes facing the east-looking radar are brighter) and
texture, times independent unit-mean gamma speckle with ``looks`` equivalent looks. ``dem``: the
elevation field, ``float32`` metres. By default they sit on *different* grids from the optical
scene: S1 at 20 m and DEM at 30 m, with origins offset by non-multiples of the pixel size, each
covering the optical scene's area with a margin; ``dem(crs="EPSG:4326")`` gives a geographic
1-arc-second grid instead.

Determinism: the same arguments give bit-identical arrays with a given NumPy version (world
parameters depend only on the seed; pixel noise on the seed and the grid).
"""

from __future__ import annotations

import math
import os
from statistics import NormalDist
from typing import Any, NamedTuple

import numpy as np
from affine import Affine

from georax.core.errors import ConfigError
from georax.core.sandbox import DEFAULT_LIMITS
from georax.tensor.geotensor import GeoTensor, apply_transform
from georax.tensor.grid import crs_equal

__all__ = [
    "DEFAULT_CRS",
    "DEFAULT_ORIGIN",
    "LANDCOVER_CLASSES",
    "QA60_CIRRUS_BIT",
    "QA60_OPAQUE_BIT",
    "S1_BANDS",
    "S1_SIGMA0",
    "S2_BANDS",
    "S2_REFLECTANCE",
    "S2Truth",
    "dem",
    "fusion_scenes",
    "landcover",
    "sentinel1_grd",
    "sentinel2_l1c",
    "sentinel2_truth",
    "write_sample_cogs",
]

DEFAULT_CRS = "EPSG:32630"
#: Upper-left corner of the default optical scene (UTM 30N metres; central Spain).
DEFAULT_ORIGIN = (399_960.0, 4_600_020.0)

S2_BANDS = ("B02", "B03", "B04", "B08", "B11", "B12", "QA60")
S1_BANDS = ("VV", "VH")
QA60_OPAQUE_BIT = 10
QA60_CIRRUS_BIT = 11

#: Land-cover codes of :func:`landcover` / :func:`sentinel2_truth`.
LANDCOVER_CLASSES = {0: "water", 1: "vegetation", 2: "bare_soil", 3: "urban"}

#: TOA reflectance per land cover for B02, B03, B04, B08, B11, B12.
S2_REFLECTANCE = np.array(
    [
        [0.070, 0.055, 0.035, 0.020, 0.008, 0.005],  # water
        [0.045, 0.075, 0.040, 0.340, 0.170, 0.080],  # vegetation
        [0.100, 0.130, 0.170, 0.240, 0.320, 0.260],  # bare soil
        [0.110, 0.110, 0.120, 0.160, 0.190, 0.170],  # urban
    ]
)
_CLOUD_REFLECTANCE = np.array([0.45, 0.43, 0.42, 0.42, 0.30, 0.20])
_CIRRUS_REFLECTANCE = np.array([0.20, 0.20, 0.20, 0.20, 0.08, 0.05])

#: sigma0 (linear power) per land cover for VV, VH.
S1_SIGMA0 = np.array(
    [
        [0.008, 0.0010],  # water: specular, dark (~-21 / -30 dB)
        [0.080, 0.0200],  # vegetation: volume scattering (~-11 / -17 dB)
        [0.050, 0.0080],  # bare soil (~-13 / -21 dB)
        [0.350, 0.0600],  # urban: double bounce (~-4.6 / -12 dB)
    ]
)

_N_MODES = 32


# ----------------------------------------------------------------------------- fields
class _Field:
    """A unit-variance random field: a sum of plane waves with power-law amplitudes."""

    def __init__(self, rng: np.random.Generator, lmin: float, lmax: float, slope: float = 1.0):
        wavelength = np.exp(rng.uniform(math.log(lmin), math.log(lmax), _N_MODES))
        theta = rng.uniform(0.0, 2.0 * math.pi, _N_MODES)
        k = 2.0 * math.pi / wavelength
        self.kx, self.ky = k * np.cos(theta), k * np.sin(theta)
        self.phase = rng.uniform(0.0, 2.0 * math.pi, _N_MODES)
        amp = wavelength**slope
        self.amp = amp / math.sqrt(float(np.sum(amp**2)) / 2.0)  # variance sum(a^2)/2 = 1

    def __call__(self, coords: _Coords) -> np.ndarray:
        if coords.separable:
            # cos(kx x + ky y + p) = cos(kx x + p) cos(ky y) - sin(kx x + p) sin(ky y): two
            # (H, N) @ (N, W) products instead of N full-grid cosines.
            ax = np.outer(coords.x, self.kx) + self.phase
            ay = np.outer(coords.y, self.ky)
            left = np.concatenate([np.cos(ay) * self.amp, -np.sin(ay) * self.amp], axis=1)
            right = np.concatenate([np.cos(ax), np.sin(ax)], axis=1).T
            return _small_matmul(left, right)
        out = np.zeros(coords.x.shape)
        for kx, ky, p, a in zip(self.kx, self.ky, self.phase, self.amp, strict=True):
            out += a * np.cos(kx * coords.x + ky * coords.y + p)
        return out


def _small_matmul(a: np.ndarray, b: np.ndarray, rows: int = 8) -> np.ndarray:
    """``a @ b`` in row blocks small enough that OpenBLAS stays single-threaded.

    These products are tiny (K = 64); multi-threaded GEMM only adds synchronisation, which on a
    busy machine made scene generation ~5x slower.
    """
    out = np.empty((a.shape[0], b.shape[1]))
    for i in range(0, a.shape[0], rows):
        np.matmul(a[i : i + rows], b, out=out[i : i + rows])
    return out


class _Coords(NamedTuple):
    """World (UTM 30N) coordinates of pixel centres: 1-D x/y when separable, else 2-D."""

    x: np.ndarray
    y: np.ndarray
    separable: bool

    def shifted(self, dx: float, dy: float) -> _Coords:
        return _Coords(self.x + dx, self.y + dy, self.separable)


def _grid_coords(transform: Affine, crs: str, shape: tuple[int, int]) -> _Coords:
    h, w = shape
    if crs_equal(crs, DEFAULT_CRS) and transform.b == 0 and transform.d == 0:
        xs = transform.c + transform.a * (np.arange(w) + 0.5)
        ys = transform.f + transform.e * (np.arange(h) + 0.5)
        return _Coords(xs, ys, True)
    from pyproj import Transformer

    cols, rows = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    gx, gy = apply_transform(transform, cols, rows)
    to_world = Transformer.from_crs(crs, DEFAULT_CRS, always_xy=True)
    x, y = to_world.transform(gx, gy)
    return _Coords(np.asarray(x), np.asarray(y), False)


class _World:
    """All random fields of one seed (independent of any grid)."""

    def __init__(self, seed: int) -> None:
        def rng(stream: int) -> np.random.Generator:
            return np.random.default_rng(np.random.SeedSequence([seed, stream]))

        self.elev = _Field(rng(1), 1_000, 10_000)
        self.elev_detail = _Field(rng(2), 150, 800)
        self.river = _Field(rng(3), 1_500, 6_000)
        self.urban = _Field(rng(4), 400, 2_500, slope=0.5)
        self.moisture = _Field(rng(5), 300, 3_000)
        self.texture = _Field(rng(6), 30, 300, slope=0.5)
        self.urban_texture = _Field(rng(7), 20, 80, slope=0.2)
        self.cloud = _Field(rng(8), 500, 6_000)
        self.cloud_detail = _Field(rng(9), 60, 400, slope=0.5)
        self.cirrus = _Field(rng(10), 1_000, 8_000)
        self.sar_texture = _Field(rng(11), 40, 400, slope=0.5)

    def elevation(self, c: _Coords) -> np.ndarray:
        return 600.0 + 150.0 * self.elev(c) + 20.0 * self.elev_detail(c)

    def landcover(self, c: _Coords) -> np.ndarray:
        q = NormalDist().inv_cdf
        water = (self.elev(c) < q(0.04)) | (np.abs(self.river(c)) < 0.04)
        urban = self.urban(c) > q(0.90)
        veg = self.moisture(c) > q(0.35)
        lc = np.where(veg, 1, 2).astype(np.uint8)
        lc[urban] = 3
        lc[water] = 0
        return lc

    def cloud_opacity(self, c: _Coords, cover: float) -> np.ndarray:
        if cover <= 0:
            return np.zeros(_shape(c))
        field = (self.cloud(c) + 0.35 * self.cloud_detail(c)) / math.hypot(1.0, 0.35)
        t = NormalDist().inv_cdf(1.0 - min(cover, 1.0 - 1e-9))
        return np.clip((field - t) / 0.5, 0.0, 1.0)

    def cirrus_opacity(self, c: _Coords, cover: float) -> np.ndarray:
        if cover <= 0:
            return np.zeros(_shape(c))
        t = NormalDist().inv_cdf(1.0 - min(cover, 1.0 - 1e-9))
        return 0.35 * np.clip((self.cirrus(c) - t) / 0.8, 0.0, 1.0)


def _shape(c: _Coords) -> tuple[int, int]:
    return (c.y.size, c.x.size) if c.separable else c.x.shape


# ----------------------------------------------------------------------------- grids
#: Upper bound of the host bytes one pixel of a generated scene takes while it is built (the
#: float64 world fields and float32 band temporaries of :func:`sentinel2_l1c`, the heaviest),
#: and of one row or column (the separable fields' ``(n, 2 * _N_MODES)`` float64 factors).
_BYTES_PER_PIXEL = 128
_BYTES_PER_LINE = 4 * 2 * _N_MODES * 8


def _hw(size: int | tuple[int, int], name: str) -> tuple[int, int]:
    """``(H, W)`` from ``size``, refusing non-positive sizes and scenes too large to build.

    The bound is the trusted host budget (``DEFAULT_LIMITS.max_host_bytes``): a mistyped
    ``georax demo --size`` is refused with a ConfigError instead of a MemoryError (or the OOM
    killer) after minutes of allocation.
    """
    hw = (size, size) if isinstance(size, int) and not isinstance(size, bool) else size
    try:
        hw = tuple(hw)
    except TypeError:
        hw = ()
    if len(hw) != 2 or not all(
        isinstance(v, int | np.integer) and not isinstance(v, bool) and v > 0 for v in hw
    ):
        raise ConfigError(name, "size", size, "must be a positive int or (height, width)")
    h, w = int(hw[0]), int(hw[1])
    need = h * w * _BYTES_PER_PIXEL + (h + w) * _BYTES_PER_LINE
    if need > DEFAULT_LIMITS.max_host_bytes:
        raise ConfigError(
            name,
            "size",
            size,
            f"a {h}x{w} scene needs about {need / 2**30:.1f} GiB of host memory to generate, "
            f"over the {DEFAULT_LIMITS.max_host_bytes / 2**30:.0f} GiB limit "
            "(DEFAULT_LIMITS.max_host_bytes)",
        )
    return h, w


def _transform(origin: tuple[float, float], resolution: float) -> Affine:
    return Affine(resolution, 0.0, origin[0], 0.0, -resolution, origin[1])


def _check(name: str, field: str, value: Any, ok: bool, problem: str) -> None:
    if not ok:
        raise ConfigError(name, field, value, problem)


# ----------------------------------------------------------------------------- Sentinel-2
class S2Truth(NamedTuple):
    """Ground truth behind :func:`sentinel2_l1c` (NumPy arrays of shape ``(H, W)``).

    ``landcover`` (uint8 codes of :data:`LANDCOVER_CLASSES`), ``cloud`` (opaque cloud, bool),
    ``cirrus`` (bool, exclusive of ``cloud``), ``shadow`` (visible cloud shadow: shadowed by more
    than 10 % and not under any cloud, bool), ``cloud_opacity`` (float32 in [0, 1]).
    """

    landcover: np.ndarray
    cloud: np.ndarray
    cirrus: np.ndarray
    shadow: np.ndarray
    cloud_opacity: np.ndarray


def _s2_layers(
    size: int | tuple[int, int],
    seed: int,
    origin: tuple[float, float] | None,
    resolution: float,
    cloud_cover: float,
    cirrus_cover: float,
    cloud_height: float,
    sun_zenith: float,
    sun_azimuth: float,
) -> tuple[Affine, np.ndarray, np.ndarray, S2Truth]:
    name = "sentinel2_l1c"
    h, w = _hw(size, name)
    _check(name, "resolution", resolution, resolution > 0, "must be > 0")
    _check(name, "cloud_cover", cloud_cover, 0 <= cloud_cover <= 1, "must be in [0, 1]")
    _check(name, "cirrus_cover", cirrus_cover, 0 <= cirrus_cover <= 1, "must be in [0, 1]")
    _check(name, "sun_zenith", sun_zenith, 0 <= sun_zenith < 89, "must be in [0, 89) degrees")
    transform = _transform(origin or DEFAULT_ORIGIN, resolution)
    coords = _grid_coords(transform, DEFAULT_CRS, (h, w))
    world = _World(seed)

    f32 = np.float32
    lc = world.landcover(coords)
    texture = np.where(
        lc == 3, 1.0 + 0.2 * world.urban_texture(coords), 1.0 + 0.08 * world.texture(coords)
    ).astype(f32)

    alpha = world.cloud_opacity(coords, cloud_cover).astype(f32)
    cirrus = world.cirrus_opacity(coords, cirrus_cover).astype(f32)
    # Shadow: the cloud that shades (x, y) sits displaced toward the sun.
    reach = cloud_height * math.tan(math.radians(sun_zenith))
    az = math.radians(sun_azimuth)
    shade = world.cloud_opacity(
        coords.shifted(reach * math.sin(az), reach * math.cos(az)), cloud_cover
    ).astype(f32)
    through = (1.0 - alpha) * (1.0 - 0.65 * shade)  # surface weight after cloud and shadow
    cloud_light = alpha * (1.0 + 0.1 * world.cloud_detail(coords)).astype(f32)

    # One band at a time in float32: bounded temporaries, so 4096^2 scenes stay fast.
    rng = np.random.default_rng(np.random.SeedSequence([seed, 100, h, w]))
    dn = np.empty((len(_CLOUD_REFLECTANCE), h, w), np.uint16)
    for b in range(dn.shape[0]):
        surface = S2_REFLECTANCE[:, b].astype(f32)[lc] * texture
        toa = surface * through + cloud_light * f32(_CLOUD_REFLECTANCE[b])
        toa = (1.0 - cirrus) * toa + cirrus * f32(_CIRRUS_REFLECTANCE[b])
        toa += rng.standard_normal((h, w), dtype=f32) * (f32(0.01) * toa + f32(0.002))
        dn[b] = np.clip(np.rint(toa * f32(10_000.0)), 1, 65_535)

    cloud_mask = alpha > 0
    cirrus_mask = (cirrus > 0) & ~cloud_mask
    qa = np.zeros((h, w), np.uint16)
    qa[cloud_mask] = 1 << QA60_OPAQUE_BIT
    qa[cirrus_mask] = 1 << QA60_CIRRUS_BIT
    truth = S2Truth(
        landcover=lc,
        cloud=cloud_mask,
        cirrus=cirrus_mask,
        shadow=(shade > 0.1) & ~cloud_mask & ~(cirrus > 0),
        cloud_opacity=alpha,
    )
    return transform, dn, qa, truth


def sentinel2_l1c(
    size: int | tuple[int, int] = 512,
    *,
    seed: int = 0,
    origin: tuple[float, float] | None = None,
    resolution: float = 10.0,
    cloud_cover: float = 0.15,
    cirrus_cover: float = 0.05,
    cloud_height: float = 1_500.0,
    sun_zenith: float = 35.0,
    sun_azimuth: float = 150.0,
) -> GeoTensor:
    """A Sentinel-2-like L1C scene: ``uint16`` DN (reflectance x 10000) plus QA60.

    Bands (axis 0, named): ``B02, B03, B04, B08, B11, B12, QA60``; UTM 30N (``EPSG:32630``),
    ``fill_value=0`` (L1C nodata). See the module docstring for the recipe and QA60 semantics.

    **Arguments:**

    - `size`: ``H = W = size`` or ``(H, W)`` pixels.
    - `seed`: selects the world (landscape and clouds) and the noise.
    - `origin`: upper-left corner ``(x, y)`` in UTM 30N metres (default :data:`DEFAULT_ORIGIN`).
    - `resolution`: pixel size in metres (10 m like the S2 VNIR bands).
    - `cloud_cover`, `cirrus_cover`: expected fraction of opaque-cloud / cirrus pixels (exact
      only on average over large areas: the threshold is the field's Gaussian quantile, so the
      same world looks the same on every grid).
    - `cloud_height`, `sun_zenith`, `sun_azimuth`: shadow geometry (metres, degrees).

    **Returns:** a ``(7, H, W)`` ``uint16`` :class:`~georax.GeoTensor`.
    """
    transform, dn, qa, _ = _s2_layers(
        size,
        seed,
        origin,
        resolution,
        cloud_cover,
        cirrus_cover,
        cloud_height,
        sun_zenith,
        sun_azimuth,
    )
    values = np.concatenate([dn, qa[None]], axis=0)
    return GeoTensor(values, transform, crs=DEFAULT_CRS, fill_value=0, band_names=S2_BANDS)


def sentinel2_truth(
    size: int | tuple[int, int] = 512,
    *,
    seed: int = 0,
    origin: tuple[float, float] | None = None,
    resolution: float = 10.0,
    cloud_cover: float = 0.15,
    cirrus_cover: float = 0.05,
    cloud_height: float = 1_500.0,
    sun_zenith: float = 35.0,
    sun_azimuth: float = 150.0,
) -> S2Truth:
    """The ground truth (land cover, cloud, cirrus, shadow) of the same-argument S2 scene.

    **Arguments:** exactly those of :func:`sentinel2_l1c`.

    **Returns:** an :class:`S2Truth` of ``(H, W)`` NumPy arrays.
    """
    return _s2_layers(
        size,
        seed,
        origin,
        resolution,
        cloud_cover,
        cirrus_cover,
        cloud_height,
        sun_zenith,
        sun_azimuth,
    )[3]


def landcover(
    size: int | tuple[int, int] = 512,
    *,
    seed: int = 0,
    transform: Affine | None = None,
    crs: str = DEFAULT_CRS,
) -> GeoTensor:
    """The land-cover map of the world of ``seed`` on any grid (codes in LANDCOVER_CLASSES).

    **Arguments:**

    - `size`: ``H = W = size`` or ``(H, W)``.
    - `seed`: the world.
    - `transform`, `crs`: the grid (default: the 10 m optical grid at :data:`DEFAULT_ORIGIN`).

    **Returns:** a ``(H, W)`` ``uint8`` :class:`~georax.GeoTensor`.
    """
    h, w = _hw(size, "landcover")
    transform = transform or _transform(DEFAULT_ORIGIN, 10.0)
    lc = _World(seed).landcover(_grid_coords(transform, crs, (h, w)))
    return GeoTensor(lc, transform, crs=crs)


# ----------------------------------------------------------------------------- Sentinel-1
def _default_aux_origin(offset: float) -> tuple[float, float]:
    return (DEFAULT_ORIGIN[0] - offset, DEFAULT_ORIGIN[1] + offset)


def sentinel1_grd(
    size: int | tuple[int, int] = 320,
    *,
    seed: int = 0,
    origin: tuple[float, float] | None = None,
    resolution: float = 20.0,
    looks: float = 4.4,
) -> GeoTensor:
    """A Sentinel-1-like GRD scene: VV and VH sigma0 in linear power with gamma speckle.

    By default a 20 m grid whose origin is offset 645 m up-left of the optical scene's (32.25
    optical pixels: the grids do not align), 320x320 pixels, covering the default 512x512
    optical scene with a margin. UTM 30N, ``float32``.

    **Arguments:**

    - `size`: ``H = W = size`` or ``(H, W)`` pixels.
    - `seed`: the world (same seed = same landscape as the optical scene) and the speckle.
    - `origin`: upper-left corner in UTM 30N metres.
    - `resolution`: pixel size in metres.
    - `looks`: equivalent number of looks of the multiplicative speckle ``Gamma(L, 1/L)``
      (mean 1, variance ``1/L``); ``inf`` gives no speckle.

    **Returns:** a ``(2, H, W)`` ``float32`` :class:`~georax.GeoTensor` named ``VV, VH``.
    """
    name = "sentinel1_grd"
    h, w = _hw(size, name)
    _check(name, "resolution", resolution, resolution > 0, "must be > 0")
    _check(name, "looks", looks, looks > 0, "must be > 0")
    transform = _transform(origin or _default_aux_origin(645.0), resolution)
    coords = _grid_coords(transform, DEFAULT_CRS, (h, w))
    world = _World(seed)
    lc = world.landcover(coords)
    sigma = S1_SIGMA0[lc]  # (H, W, 2)
    # Right-looking radar looking east: slopes facing west (dz/dx > 0) face the sensor. Central
    # difference of the (continuous) elevation field, so any grid size works, even 1 pixel.
    step = resolution / 2
    z_east = world.elevation(coords.shifted(step, 0))
    z_west = world.elevation(coords.shifted(-step, 0))
    slope_x = (z_east - z_west) / (2 * step)
    terrain = np.clip(1.0 + 4.0 * slope_x, 0.3, 3.0)
    texture = 1.0 + 0.15 * world.sar_texture(coords)
    sigma = sigma * (terrain * texture)[..., None]
    if math.isfinite(looks):
        rng = np.random.default_rng(np.random.SeedSequence([seed, 200, h, w]))
        sigma = sigma * rng.gamma(looks, 1.0 / looks, size=sigma.shape)
    values = np.moveaxis(sigma, -1, 0).astype(np.float32)
    return GeoTensor(values, transform, crs=DEFAULT_CRS, band_names=S1_BANDS)


# ----------------------------------------------------------------------------- DEM
def dem(
    size: int | tuple[int, int] = 240,
    *,
    seed: int = 0,
    origin: tuple[float, float] | None = None,
    resolution: float | None = None,
    crs: str = DEFAULT_CRS,
) -> GeoTensor:
    """A digital elevation model of the world of ``seed`` (``float32`` metres).

    By default a 30 m UTM 30N grid offset 1515 m up-left of the optical scene (50.5 optical
    pixels), 240x240 pixels, covering the default optical and SAR scenes. With
    ``crs="EPSG:4326"`` (or any other CRS) the grid is in that CRS: ``origin`` is then in its
    units, defaulting to the reprojected default corner, and ``resolution`` defaults to 1 arc
    second (like Copernicus GLO-30) for geographic CRSs.

    **Arguments:**

    - `size`: ``H = W = size`` or ``(H, W)`` pixels.
    - `seed`: the world.
    - `origin`: upper-left corner in `crs` units.
    - `resolution`: pixel size in `crs` units (default 30 m, or 1/3600 degree).
    - `crs`: the grid's CRS.

    **Returns:** a ``(1, H, W)`` ``float32`` :class:`~georax.GeoTensor` named ``elevation``.
    """
    name = "dem"
    h, w = _hw(size, name)
    from pyproj import CRS, Transformer

    try:
        target = CRS.from_user_input(crs)
    except Exception as e:  # pyproj raises CRSError (a plain Exception subclass)
        raise ConfigError(name, "crs", crs, f"is not a valid CRS: {e}") from None
    if resolution is None:
        resolution = 1.0 / 3600.0 if target.is_geographic else 30.0
    _check(name, "resolution", resolution, resolution > 0, "must be > 0")
    if origin is None:
        corner = _default_aux_origin(1515.0)
        if crs_equal(crs, DEFAULT_CRS):
            origin = corner
        else:
            to = Transformer.from_crs(DEFAULT_CRS, target, always_xy=True)
            origin = tuple(float(v) for v in to.transform(*corner))
    transform = _transform(origin, resolution)
    z = _World(seed).elevation(_grid_coords(transform, crs, (h, w)))
    crs_out = crs if isinstance(crs, str) else target.to_string()
    return GeoTensor(z[None].astype(np.float32), transform, crs=crs_out, band_names=("elevation",))


# ----------------------------------------------------------------------------- bundles
def fusion_scenes(
    size: int = 512, *, seed: int = 0, dem_crs: str = DEFAULT_CRS
) -> dict[str, GeoTensor]:
    """The optical, SAR and DEM scenes of one world on three different, overlapping grids.

    The S1 (20 m) and DEM (30 m) grids are sized to cover the ``size`` x ``size`` optical scene
    (10 m) with a margin, with origins that do not align with it.

    **Arguments:**

    - `size`: optical scene size in 10 m pixels.
    - `seed`: the world.
    - `dem_crs`: CRS of the DEM grid (``"EPSG:4326"`` for a geographic one).

    **Returns:** ``{"s2": (7,H,W) uint16, "s1": (2,h,w) float32, "dem": (1,h',w') float32}``.
    """
    extent = size * 10.0
    s1_size = math.ceil((extent + 2 * 645.0) / 20.0)
    dem_size = math.ceil((extent + 2 * 1515.0) / 30.0)
    if not crs_equal(dem_crs, DEFAULT_CRS):
        dem_size = math.ceil(dem_size * 1.6)  # 1 arc second is ~23 m east-west at 41 N
    return {
        "s2": sentinel2_l1c(size, seed=seed),
        "s1": sentinel1_grd(s1_size, seed=seed),
        "dem": dem(dem_size, seed=seed, crs=dem_crs),
    }


def write_sample_cogs(
    directory: str | os.PathLike[str], *, size: int = 512, seed: int = 0
) -> dict[str, str]:
    """Write the :func:`fusion_scenes` as Cloud-Optimised GeoTIFFs into ``directory``.

    **Arguments:**

    - `directory`: created if missing.
    - `size`, `seed`: as in :func:`fusion_scenes`.

    **Returns:** ``{"s2": path, "s1": path, "dem": path}`` (``s2_l1c.tif``, ``s1_grd.tif``,
    ``dem.tif``).
    """
    from georax.io.raster import write_cog

    os.makedirs(directory, exist_ok=True)
    scenes = fusion_scenes(size, seed=seed)
    names = {"s2": "s2_l1c.tif", "s1": "s1_grd.tif", "dem": "dem.tif"}
    return {
        key: write_cog(scenes[key], os.path.join(os.fspath(directory), names[key])) for key in names
    }
