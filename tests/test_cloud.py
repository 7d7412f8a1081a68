"""georax.geo.cloud: QA-bit masks, ApplyMask, MaskClouds presets."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from affine import Affine
from scipy import ndimage

from _geo_helpers import assert_rebuilds, assert_stitches_to_scene
from georax import GeoTensor, Sequential
from georax.core.budget import BudgetExceededError
from georax.core.errors import ConfigError, DataError, ShapeError
from georax.core.sandbox import SANDBOX_LIMITS
from georax.geo.cloud import (
    ApplyMask,
    MaskClouds,
    MaskFromQABits,
    apply_mask,
    dilate_mask,
    qa_bit_mask,
)
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
    pipe = Sequential([MaskClouds(), NDVI(red_band=2, nir_band=3)])
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
        ApplyMask(mask_band=0, fill_value=0.0, drop_qa=False),
        MaskClouds.landsat(qa_band=7),
        MaskClouds(),
    ],
)
def test_round_trip(op) -> None:
    assert_rebuilds(op)


@pytest.mark.parametrize("shape", [(9, 11), (2, 3, 17), (1, 6)])
@pytest.mark.parametrize("radius", [1, 3, 8, 40])
def test_separable_dilation_equals_the_square_max_filter(shape, radius) -> None:
    """Rows-then-columns dilation equals a (2r+1)^2 square filter, even past the image size."""
    m = np.random.default_rng(radius).random(shape) < 0.08
    w = 2 * radius + 1
    size = (1,) * (len(shape) - 2) + (w, w)
    ref = ndimage.maximum_filter(m, size=size, mode="constant", cval=False)
    np.testing.assert_array_equal(np.asarray(dilate_mask(jnp.asarray(m), radius)), ref)


def test_huge_dilation_costs_what_the_image_costs() -> None:
    """A dilation of 10**9 pixels is clamped to the image: the traced program is the same."""
    qa = jnp.zeros((2, 12, 12), jnp.uint16)
    small = str(jax.make_jaxpr(MaskFromQABits(dilate=11))(qa))
    huge = str(jax.make_jaxpr(MaskFromQABits(dilate=10**9))(qa))
    assert small == huge


def test_mask_precheck_refuses_a_dilation_over_the_extent_limit() -> None:
    assert MaskClouds(dilate=3).precheck((7, 64, 64), SANDBOX_LIMITS) == (6, 64, 64)
    assert MaskFromQABits().precheck((2, 7, 64, 64), SANDBOX_LIMITS) == (2, 1, 64, 64)
    nested = ApplyMask(MaskFromQABits(dilate=10**9))
    for op in (MaskClouds(dilate=10**9), MaskFromQABits(dilate=10**9), nested):
        with pytest.raises(BudgetExceededError, match=r"\.dilate"):
            op.precheck((7, 64, 64), SANDBOX_LIMITS)
    with pytest.raises(ShapeError, match="MaskClouds"):
        MaskClouds().precheck((64, 64), SANDBOX_LIMITS)


def test_fill_value_field_and_mistyped_masks_are_refused() -> None:
    x = _scene()
    out = np.asarray(ApplyMask(mask_band=-1, fill_value=-1.0)(x.astype(np.float32)))
    assert (out == -1.0).any() and not np.isnan(out).any()
    # uint16 cannot hold -1: promoted to float32 instead of an OverflowError
    promoted = ApplyMask(mask_band=-1, fill_value=-1.0)(x)
    assert promoted.dtype == jnp.float32 and bool((promoted == -1.0).any())
    assert ApplyMask(mask_band=-1, fill_value=0)(x).dtype == jnp.uint16
    with pytest.raises(ConfigError, match=r"MaskClouds\.bits"):
        MaskClouds(bits=[True])
    with pytest.raises(ConfigError, match=r"MaskFromQABits\.dilate"):
        MaskFromQABits(dilate=True)
    with pytest.raises(ConfigError, match=r"ApplyMask\.fill_value"):
        ApplyMask(mask_band=-1, fill_value="zero")
    with pytest.raises(ConfigError, match=r"MaskClouds\.qa_band"):
        MaskClouds(qa_band=False)


def test_complex_qa_band_is_refused_and_complex_data_stays_complex() -> None:
    x = jnp.asarray(_scene()).astype(jnp.complex64)
    with pytest.raises(DataError, match="complex"):
        MaskClouds()(x)
    data = jnp.ones((2, 3, 3), jnp.complex64)
    out = apply_mask(data, jnp.eye(3, dtype=bool)[None])
    assert out.dtype == jnp.complex64 and bool(jnp.isnan(out[0, 0, 0]))


def test_cloud_operators_run_on_chips_and_stitch_to_the_scene() -> None:
    names = ("B02", "B03", "B04", "B08", "B11", "B12", "QA60")
    gt = GeoTensor(_scene(h=20, w=22), Affine(10, 0, 5e5, 0, -10, 4e6), "EPSG:32630", 0, names)
    for op in (MaskClouds(), MaskFromQABits(dilate=1), ApplyMask(mask_band=-1, fill_value=-1.0)):
        assert_stitches_to_scene(op, gt)
