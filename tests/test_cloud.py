"""georax.geo.cloud: QA-bit masks, ApplyMask, MaskClouds presets."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from affine import Affine

from _geo_helpers import assert_rebuilds
from georax import GeoTensor, Sequential
from georax.core.errors import ConfigError, ShapeError
from georax.geo.cloud import ApplyMask, MaskClouds, MaskFromQABits, apply_mask, qa_bit_mask
from georax.geo.indices import NDVI


def _scene(seed: int = 0, h: int = 16, w: int = 12) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dn = rng.integers(1, 10000, size=(7, h, w)).astype(np.uint16)
    # QA60: random combinations of bits 10 (opaque), 11 (cirrus) and an unrelated bit 3
    qa = (rng.integers(0, 2, (h, w)) << 10) | (rng.integers(0, 2, (h, w)) << 11)
    dn[-1] = (qa | (rng.integers(0, 2, (h, w)) << 3)).astype(np.uint16)
    return dn


def test_qa_bit_mask_against_numpy_bit_ops() -> None:
    qa = _scene()[-1]
    for bits in [(10,), (11,), (10, 11), (3,)]:
        ref = np.zeros(qa.shape, bool)
        for b in bits:
            ref |= ((qa >> b) & 1).astype(bool)
        np.testing.assert_array_equal(qa_bit_mask(qa, bits), ref)
    # float QA (after ToFloat32) reads the same; NaN means no bits
    f = qa.astype(np.float32)
    f[0, 0] = np.nan
    m = np.asarray(qa_bit_mask(f, (10, 11)))
    assert not m[0, 0]
    np.testing.assert_array_equal(m.ravel()[1:], np.asarray(qa_bit_mask(qa, (10, 11))).ravel()[1:])


def test_mask_clouds_drops_qa_and_fills_nan() -> None:
    x = _scene()
    out = np.asarray(MaskClouds(qa_band=-1, bits=[10, 11])(x))
    cloudy = (x[-1] & ((1 << 10) | (1 << 11))) != 0
    assert out.shape == (6, *x.shape[1:]) and out.dtype == np.float32
    assert np.isnan(out[:, cloudy]).all()
    np.testing.assert_array_equal(out[:, ~cloudy], x[:-1][:, ~cloudy].astype(np.float32))
    # the seed's two-step spelling gives the same result
    two = ApplyMask(MaskFromQABits(qa_band=-1, bits=[10, 11]))(x)
    np.testing.assert_array_equal(np.asarray(two), out)
    kept = np.asarray(MaskClouds(drop_qa=False)(x))
    assert kept.shape == x.shape


def test_presets() -> None:
    assert MaskClouds.sentinel2().bits == (10, 11)
    assert MaskClouds.sentinel2(cirrus=False).bits == (10,)
    assert MaskClouds.landsat().bits == (1, 2, 3, 4)
    assert MaskClouds.landsat(shadow=False, qa_band=0).bits == (1, 2, 3)
    qa = np.array([[1 << 3, 1 << 4], [1 << 5, 0]], np.uint16)
    x = np.stack([np.ones((2, 2), np.uint16), qa])
    out = np.asarray(MaskClouds.landsat()(x))
    np.testing.assert_array_equal(np.isnan(out[0]), [[True, True], [False, False]])


def test_mask_band_and_dilation() -> None:
    x = np.ones((3, 7, 7), np.float32)
    x[-1] = 0
    x[-1, 3, 3] = 1 << 10
    out = np.asarray(ApplyMask(mask_band=-1)(x))
    assert out.shape == (2, 7, 7) and np.isnan(out[:, 3, 3]).all() and np.isnan(out).sum() == 2
    m = np.asarray(MaskFromQABits(bits=[10], dilate=1)(x))
    assert m.shape == (1, 7, 7) and m.dtype == bool and m.sum() == 9 and m[0, 2:5, 2:5].all()


def test_geotensor_preserved_band_names_and_fill() -> None:
    x = _scene()
    names = ("B02", "B03", "B04", "B08", "B11", "B12", "QA60")
    gt = GeoTensor(x, Affine(10, 0, 500000, 0, -10, 4e6), "EPSG:32630", 0, names)
    out = MaskClouds()(gt)
    assert isinstance(out, GeoTensor)
    assert out.band_names == names[:-1] and out.crs == gt.crs and out.transform == gt.transform
    assert np.isnan(out.fill_value)
    m = MaskFromQABits()(gt)
    assert m.band_names == ("mask",) and m.values.shape == (1, *x.shape[1:])


def test_jit_vmap_and_chain_with_ndvi() -> None:
    batch = np.stack([_scene(s) for s in range(3)])
    pipe = Sequential([MaskClouds(), NDVI(red_idx=2, nir_idx=3)])
    out = jax.jit(pipe)(batch)
    ref = np.stack([np.asarray(pipe(b)) for b in batch])
    np.testing.assert_allclose(np.asarray(out), ref, equal_nan=True)
    v = jax.vmap(MaskClouds())(jnp.asarray(batch))
    np.testing.assert_array_equal(np.asarray(v), np.asarray(MaskClouds()(batch)))


def test_gradient_through_masking() -> None:
    x = jnp.asarray(np.random.default_rng(1).random((2, 3, 3)).astype(np.float32))
    mask = jnp.asarray(np.eye(3, dtype=bool))[None]
    g = jax.grad(lambda v: jnp.nansum(apply_mask(v, mask) ** 2))(x)
    np.testing.assert_allclose(g, np.where(np.asarray(mask), 0, 2 * np.asarray(x)), rtol=1e-6)


def test_bad_config_and_data() -> None:
    with pytest.raises(ConfigError, match="bits"):
        MaskClouds(bits=[40])
    with pytest.raises(ConfigError, match="exactly one"):
        ApplyMask()
    with pytest.raises(ConfigError, match="exactly one"):
        ApplyMask(MaskFromQABits(), mask_band=-1)
    with pytest.raises(ShapeError, match="band index 9"):
        MaskClouds(qa_band=9)(_scene())
    with pytest.raises(ShapeError, match="bands-first"):
        MaskClouds()(np.zeros((4, 4), np.uint16))


@pytest.mark.parametrize(
    "op",
    [
        MaskFromQABits(qa_band=-1, bits=[10, 11], dilate=2),
        ApplyMask(MaskFromQABits(qa_band=-1, bits=[10, 11])),
        ApplyMask(mask_band=0, fill=0.0, drop_qa=False),
        MaskClouds.landsat(qa_band=7),
        MaskClouds(),
    ],
)
def test_round_trip(op) -> None:
    assert_rebuilds(op)
