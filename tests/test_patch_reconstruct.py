"""Exactness: stitching an identity pipeline reconstructs the scene everywhere, for every window."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import georax as gx
from georax.patch import (
    ApplyToChips,
    Boxcar,
    ExplicitPositions,
    Gaussian,
    GridSampler,
    Hann,
    Max,
    Mean,
    OverlapAdd,
    Patcher,
    Patchwise,
    RandomPositions,
    Rectangular,
    RegularStride,
    Stitch,
    Triangular,
    Tukey,
    regular_starts,
    window_1d,
)
from georax.patch.windows import WINDOW_NAMES

WINDOWS = [Boxcar(), Hann(), Triangular(), Tukey(0.5), Tukey(1.0), Gaussian(0.125), Gaussian(0.05)]


def _close(a: jax.Array, b: jax.Array) -> None:
    a, b = np.asarray(a), np.asarray(b)
    scale = max(1.0, float(np.abs(b).max()))
    np.testing.assert_allclose(a, b, rtol=0, atol=4e-6 * scale)


@st.composite
def cases(draw: st.DrawFn) -> tuple:
    h = draw(st.integers(1, 37))
    w = draw(st.integers(1, 37))
    ch = draw(st.integers(1, 12))
    cw = draw(st.integers(1, 12))
    sh = draw(st.integers(max(1, ch // 3), ch))
    sw = draw(st.integers(max(1, cw // 3), cw))
    margin = draw(st.integers(0, 4))
    padding = draw(st.sampled_from(["reflect", "edge", "constant"]))
    window = draw(st.sampled_from(WINDOWS))
    bands = draw(st.integers(1, 3))
    batch = draw(st.integers(1, 7))
    return (h, w), (ch, cw), (sh, sw), margin, padding, window, bands, batch


@settings(max_examples=20, deadline=None)
@given(cases(), st.integers(0, 2**31 - 1))
def test_identity_reconstruction_property(case: tuple, seed: int) -> None:
    (h, w), chip, stride, margin, padding, window, bands, batch = case
    x = jax.random.normal(jax.random.key(seed), (bands, h, w)) * 10 + 3
    p = Patcher(Rectangular(chip), RegularStride(stride), window, OverlapAdd(), padding, margin)
    fused = jax.jit(Patchwise(p, gx.Identity(), batch_size=batch))(x)
    seq = gx.Sequential([GridSampler(p), ApplyToChips(gx.Identity(), batch), Stitch()])
    three = jax.jit(seq)(x)
    assert fused.shape == x.shape
    _close(fused, x)
    _close(three, x)
    # the outer pixel frame in particular (the peer bug returns zeros there)
    frame = np.asarray(fused)
    np.testing.assert_array_equal(np.isfinite(frame), True)
    _close(frame[..., 0, :], x[..., 0, :])
    _close(frame[..., -1, :], x[..., -1, :])
    _close(frame[..., :, 0], x[..., :, 0])
    _close(frame[..., :, -1], x[..., :, -1])


@pytest.mark.parametrize("window", WINDOWS, ids=lambda w: repr(w))
@pytest.mark.parametrize("stride", [16, 12, 7])
def test_every_window_exact_under_jit_with_geotensor(window: object, stride: int) -> None:
    x = jax.random.uniform(jax.random.key(1), (2, 45, 38), minval=-5, maxval=5)
    g = gx.GeoTensor(x, crs="EPSG:4326")
    pw = Patchwise(Patcher(Rectangular(16), RegularStride(stride), window), gx.Identity(), 5)
    out = jax.jit(pw)(g)
    assert isinstance(out, gx.GeoTensor)
    _close(out.values, x)
    # a pointwise op commutes with any window: patched == unpatched
    pw2 = Patchwise(pw.patcher, gx.Lambda(lambda c: 2 * c + 1), 5)
    _close(jax.jit(pw2)(x), 2 * x + 1)


def test_hann_border_not_zero_without_margin() -> None:
    # The classic bug: windows with zero end weights divide 0/0 on the outer frame.
    x = jnp.ones((1, 64, 64))
    p = Patcher(Rectangular(32), RegularStride(16), Hann())
    out = np.asarray(Patchwise(p, gx.Identity(), 4)(x))
    assert out.min() > 0.999999 and out.max() < 1.000001
    assert window_1d("hann", 32).min() > 0


@pytest.mark.parametrize("name", WINDOW_NAMES)
@pytest.mark.parametrize("n", [1, 2, 3, 8, 255, 256])
def test_windows_are_strictly_positive_and_symmetric(name: str, n: int) -> None:
    w = window_1d(name, n)
    assert w.shape == (n,)
    assert (w > 0).all() and w.max() == pytest.approx(1.0)
    np.testing.assert_allclose(w, w[::-1], atol=1e-12)


def test_tukey_limits() -> None:
    np.testing.assert_allclose(window_1d("tukey", 20, 0.0), window_1d("boxcar", 20))
    np.testing.assert_allclose(window_1d("tukey", 20, 1.0), window_1d("hann", 20), atol=1e-12)


@pytest.mark.parametrize(
    ("length", "chip", "stride", "expected"),
    [
        (10, 4, 4, [0, 4, 6]),
        (12, 4, 4, [0, 4, 8]),
        (2048, 256, 224, [224 * i for i in range(9)]),
        (5, 5, 2, [0]),
        (11, 4, 3, [0, 3, 6, 7]),
    ],
)
def test_regular_starts_cover_last_row(length: int, chip: int, stride: int, expected: list) -> None:
    starts = regular_starts(length, chip, stride)
    assert starts.tolist() == expected
    assert starts[-1] + chip == length


def test_mean_and_max_aggregations() -> None:
    x = jax.random.normal(jax.random.key(2), (3, 30, 26))
    for agg in (Mean(), Max()):
        p = Patcher(Rectangular((8, 10)), RegularStride((5, 4)), Hann(), agg, "edge", 2)
        _close(Patchwise(p, gx.Identity(), 3)(x), x)
        _close(gx.Sequential([GridSampler(p), Stitch()])(x), x)
    # max really takes the maximum over overlapping chips: add the chip index to each chip
    p = Patcher(Rectangular(8), RegularStride(4), Boxcar(), Max())
    chips = GridSampler(p)(jnp.zeros((1, 16, 16)))
    marked = chips.replace(values=chips.values + jnp.arange(len(chips))[:, None, None, None])
    out = np.asarray(Stitch()(marked))[0]
    starts = regular_starts(16, 8, 4).tolist()
    expect = np.zeros((16, 16))
    for i, (r, c) in enumerate([(r, c) for r in starts for c in starts]):
        expect[r : r + 8, c : c + 8] = np.maximum(expect[r : r + 8, c : c + 8], i)
    np.testing.assert_array_equal(out, expect)


def test_random_positions_cover_what_they_sample_and_fill_the_rest() -> None:
    x = jax.random.normal(jax.random.key(3), (2, 40, 40)) + 10
    p = Patcher(Rectangular(8), RandomPositions(6), Hann(), OverlapAdd(fill_value=-1.0))
    key = jax.random.key(7)
    chips = GridSampler(p)(x, key=key)
    out = np.asarray(jax.jit(lambda v, k: Patchwise(p, gx.Identity(), 4)(v, key=k))(x, key))
    pos = np.asarray(
        GridSampler(p)(x, key=jax.random.split(key)[0]).positions
    )  # Patchwise splits the key: first half samples positions
    covered = np.zeros((40, 40), bool)
    for r, c in pos:
        covered[r : r + 8, c : c + 8] = True
    np.testing.assert_allclose(out[:, covered], np.asarray(x)[:, covered], atol=1e-5)
    assert (out[:, ~covered] == -1.0).all()
    assert chips.values.shape == (6, 2, 8, 8)
    with pytest.raises(gx.errors.MissingKeyError):
        GridSampler(p)(x)


def test_explicit_positions_in_scene_pixels_with_margin() -> None:
    x = jnp.arange(2 * 20 * 20, dtype=jnp.float32).reshape(2, 20, 20)
    p = Patcher(Rectangular(6), ExplicitPositions([(0, 0), (14, 14), (3, 9)]), margin=2)
    chips = GridSampler(p)(x)
    np.testing.assert_array_equal(chips.values[1], x[:, 14:20, 14:20])
    np.testing.assert_array_equal(chips.scene_positions(), [[0, 0], [14, 14], [3, 9]])
    out = np.asarray(Stitch()(chips))
    np.testing.assert_array_equal(out[:, 3:9, 9:15], x[:, 3:9, 9:15])
    assert (out[:, 10:14, 0:6] == 0).all()  # uncovered -> fill_value
    with pytest.raises(gx.errors.ShapeError, match="outside"):
        GridSampler(Patcher(Rectangular(6), ExplicitPositions([(16, 0)])))(x)


def test_scene_smaller_than_chip_is_padded_and_cropped() -> None:
    x = jax.random.normal(jax.random.key(4), (1, 5, 3))
    for padding in ("reflect", "edge", "constant"):
        p = Patcher(Rectangular(8), RegularStride(4), Gaussian(), padding=padding)
        _close(Patchwise(p, gx.Identity(), 2)(x), x)
