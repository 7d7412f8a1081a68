"""georax.data.plume: the synthetic spectroscopy, the Gaussian plume and the seeded scenes."""

from __future__ import annotations

import math

import numpy as np
import pytest

import georax as gx
import georax.data.plume as gp
from georax.errors import ConfigError


def test_absorption_spectrum_peaks_at_the_methane_q_branch() -> None:
    lam = np.arange(1500.0, 2500.0, 0.1)
    k = gp.ch4_absorption(lam)
    assert k.max() == pytest.approx(gp.CH4_PEAK_ABSORPTION, rel=1e-9)
    assert lam[np.argmax(k)] == pytest.approx(2317.0, abs=1.0)
    # strong in the 2300-2400 nm complex, weak near 1650 nm, ~transparent in between
    assert k[(lam > 2280) & (lam < 2400)].mean() > 5 * k[(lam > 1620) & (lam < 1700)].mean()
    assert k[(lam > 1900) & (lam < 2000)].max() < 1e-3 * gp.CH4_PEAK_ABSORPTION


def test_band_absorption_of_a_narrow_band_is_the_monochromatic_value() -> None:
    layout = gp.SpectralLayout("narrow", ("a", "b"), (2317.0, 2205.0), (0.5, 0.5))
    np.testing.assert_allclose(
        gp.band_absorption(layout), gp.ch4_absorption([2317.0, 2205.0]), rtol=1e-3
    )
    # a wide band averages the feature down
    wide = gp.SpectralLayout("wide", ("a",), (2317.0,), (60.0,))
    assert gp.band_absorption(wide)[0] < 0.8 * gp.ch4_absorption(2317.0)


def test_band_transmittance_is_beer_lambert_and_exceeds_the_band_effective_model() -> None:
    narrow = gp.SpectralLayout("narrow", ("a",), (2317.0,), (0.5,))
    dx = np.array([[0.0, 500.0], [1500.0, 3000.0]])
    t = gp.band_transmittance(narrow, dx, 2.0)
    # (a 0.5 nm band still averages k over ~3 nm: a 1e-4 effect at 3000 ppm*m)
    np.testing.assert_allclose(t[0], np.exp(-2.0 * gp.ch4_absorption(2317.0) * dx), rtol=3e-4)
    # wide bands: the mean of exp is larger than exp of the mean (Jensen); equal at dX = 0
    layout = gp.SENTINEL2_SWIR
    exact = gp.band_transmittance(layout, dx, 2.0)
    effective = np.exp(-2.0 * gp.band_absorption(layout)[:, None, None] * dx)
    np.testing.assert_allclose(exact[:, 0, 0], 1.0)
    assert np.all(exact[:, 1:] >= effective[:, 1:] - 1e-12)
    assert np.all(exact[1, 1:] > effective[1, 1:])


def test_layouts() -> None:
    hs = gp.HYPERSPECTRAL_SWIR
    assert hs.n_bands == 36 and hs.centres_nm[0] == 2100.0 and hs.centres_nm[-1] == 2450.0
    assert hs.fwhm_nm[0] == pytest.approx(10.0) and hs.band_names[0] == "b2100"
    assert gp.SENTINEL2_SWIR.band_names == ("B11", "B12")
    np.testing.assert_allclose(gp.slope_basis(hs)[[0, -1]], [-0.5, 0.5])
    with pytest.raises(ConfigError, match="n_bands"):
        gp.hyperspectral_layout(1)
    with pytest.raises(ConfigError, match="stop_nm"):
        gp.hyperspectral_layout(10, 2400.0, 2100.0)


@pytest.mark.parametrize("distance_m", [150.0, 600.0, 2000.0])
def test_gaussian_plume_carries_the_emission_downwind(distance_m: float) -> None:
    # mass conservation: crosswind integral of the column times the wind speed = emission rate
    q_kg_h, u, res = 1000.0, 3.0, 10.0
    plume = gp.gaussian_plume((801, 400), res, (400.5, 50.0), q_kg_h, u, 0.0)
    col = int(50 + distance_m / res)
    flux = plume[:, col].sum() * res / gp.PPM_M_PER_KG_M2 * u  # kg/s
    assert flux == pytest.approx(q_kg_h / 3600.0, rel=0.02)
    assert plume[:, :40].max() < 1e-3 * plume.max()  # nothing upwind of the source
    # a wind blowing towards +rows puts the plume below the source instead
    down = gp.gaussian_plume((200, 200), res, (20.0, 100.0), q_kg_h, u, 90.0)
    assert np.unravel_index(np.argmax(down[60:]), down[60:].shape)[1] in range(97, 103)


def test_scene_is_seeded_georeferenced_and_consistent_with_its_truth() -> None:
    s = gx.data.plume_scene(48, seed=3)
    again = gx.data.plume_scene(48, seed=3)
    other = gx.data.plume_scene(48, seed=4)
    np.testing.assert_array_equal(s.reflectance.values, again.reflectance.values)
    assert not np.allclose(s.reflectance.values, other.reflectance.values)

    assert s.reflectance.shape == (36, 48, 48) and s.reflectance.dtype == np.float32
    assert s.reflectance.band_names == gp.HYPERSPECTRAL_SWIR.band_names
    assert s.enhancement.shape == (1, 48, 48) and s.enhancement.band_names == ("ch4_enhancement",)
    for g in (s.reference, s.enhancement, s.albedo, s.slope):
        assert (g.transform, g.crs) == (s.reflectance.transform, s.reflectance.crs)
    assert s.reflectance.crs == gp.PLUME_CRS and s.reflectance.transform.a == 30.0
    assert s.air_mass_factor == pytest.approx(1.0 / math.cos(math.radians(30.0)) + 1.0)

    # the recipe: reflectance = albedo (1 + slope w) bg T(dX) + noise of the stated std
    a, sl = np.asarray(s.albedo.values), np.asarray(s.slope.values)
    surface = a * (1 + sl * s.slope_basis[:, None, None]) * s.background[:, None, None]
    t = gp.band_transmittance(s.layout, np.asarray(s.enhancement.values[0]), s.air_mass_factor)
    noise = np.asarray(s.reflectance.values) - surface * t
    assert abs(noise.mean()) < 0.05 * s.noise_std
    assert noise.std() == pytest.approx(s.noise_std, rel=0.03)
    ref_noise = np.asarray(s.reference.values) - 1.03 * surface
    assert ref_noise.std() == pytest.approx(s.noise_std, rel=0.03)
    # the plume is there: strongest near the source, absent upwind
    e = np.asarray(s.enhancement.values[0])
    assert e.max() > 1000.0
    assert e[:, : int(s.source[1]) - 3].max() < 0.01 * e.max()


def test_sentinel2_scene() -> None:
    s = gx.data.plume_scene((40, 56), sensor="sentinel2", seed=1, wind_direction_deg=0.0)
    assert s.reflectance.shape == (2, 40, 56)
    assert s.reflectance.band_names == ("B11", "B12") and s.reflectance.transform.a == 20.0
    assert s.absorption[1] > 3 * s.absorption[0]  # B12 sees methane, B11 hardly


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"size": 4}, "size"),
        ({"size": (32, 32, 3)}, "size"),
        ({"sensor": "landsat"}, "sensor"),
        ({"emission_kg_h": 0.0}, "emission_kg_h"),
        ({"wind_speed": -1.0}, "wind_speed"),
        ({"snr": 0.0}, "snr"),
        ({"sun_zenith": 85.0}, "sun_zenith"),
        ({"pixel_size": -3.0}, "pixel_size"),
    ],
)
def test_bad_scene_arguments_are_config_errors(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        gp.plume_scene(**{"size": 16, **kwargs})
