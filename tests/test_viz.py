"""georax.geo.viz: colormap against matplotlib, true colour, PNG round trip."""

from __future__ import annotations

import io
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import pytest
from affine import Affine
from PIL import Image

from _geo_helpers import assert_rebuilds, assert_runs_on_chips, assert_stitches_to_scene, chips_of
from georax import GeoTensor
from georax.core.errors import ConfigError, DataError, ShapeError
from georax.core.sandbox import SANDBOX_LIMITS
from georax.geo.viz import Colormap, TrueColor, apply_lut, encode_png, write_png


@pytest.mark.parametrize(("name", "vmin", "vmax"), [("viridis", 0.0, 1.0), ("RdYlGn", -1.0, 1.0)])
def test_colormap_matches_matplotlib(name, vmin, vmax) -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(vmin - 0.3, vmax + 0.3, (1, 16, 16)).astype(np.float32)
    x[0, 0, :3] = np.nan
    out = np.asarray(Colormap(name, vmin, vmax)(x))
    assert out.shape == (4, 16, 16) and out.dtype == np.uint8
    norm = matplotlib.colors.Normalize(vmin, vmax)
    ref = matplotlib.colormaps[name](norm(x[0].astype(np.float64)), bytes=True)  # (H, W, 4)
    ok = ~np.isnan(x[0])
    np.testing.assert_array_equal(np.moveaxis(out, 0, -1)[ok], ref[ok])
    assert (out[:, 0, :3] == 0).all()  # NaN -> transparent


def test_lut_built_once_and_is_a_leaf() -> None:
    cm = Colormap("magma", 0, 2)
    assert cm.lut.shape == (256, 4) and cm.lut.dtype == jnp.uint8
    assert "lut" not in cm.config_fields()
    leaves = jax.tree_util.tree_leaves(cm)
    assert any(leaf is cm.lut for leaf in leaves)
    f = jax.jit(lambda op, v: op(v))
    a = f(cm, jnp.ones((1, 2, 2)))
    b = f(Colormap("magma", 0, 4), jnp.ones((1, 2, 2)))  # new vmax: same compiled program
    assert f._cache_size() == 1 and not np.array_equal(a, b)


def _hlo_opcodes(compiled_text: str) -> set[str]:
    """The opcodes of every instruction in an optimised HLO module's text."""
    return set(re.findall(r"= (?:\([^)]*\)|\S+) ([a-z][\w-]*)\(", compiled_text))


def test_colormap_passed_as_argument_does_not_repack_its_table_per_pixel() -> None:
    """The idiom a service deploys, ``filter_jit(lambda p, x: p(x))``, gathers from the packed
    table leaf as it is: no in-graph append/bitcast of the LUT, which XLA:CPU fuses into the
    gather and repeats for every pixel (a pad + shift + reduce per pixel; ~2x the colormap
    step), and no extra copy of the output. The captured form is checked alongside: both
    compile to the same operations, apart from the scalar arithmetic on the vmin/vmax
    arguments, and give the same pixels."""
    cm = Colormap("RdYlGn", vmin=-1, vmax=1, nan_rgba=(1, 2, 3, 4))
    assert cm.packed_lut.shape == (257,) and cm.packed_lut.dtype == jnp.uint32
    x = jnp.asarray(np.random.default_rng(0).uniform(-1.2, 1.2, (1, 32, 32)).astype(np.float32))
    x = x.at[0, 0, 0].set(jnp.nan)
    served = eqx.filter_jit(lambda p, v: p(v))
    lowered = served.lower(cm, x).lowered
    assert "concatenate" not in lowered.as_text()  # the NaN entry is not appended in-graph
    compiled = lowered.compile().as_text()
    arg_ops = _hlo_opcodes(compiled)
    cap_ops = _hlo_opcodes(jax.jit(cm).lower(x).compile().as_text())
    assert {"gather", "fusion"} <= arg_ops
    assert not {"reduce", "shift-left", "pad", "concatenate"} & arg_ops, arg_ops
    assert arg_ops - cap_ops <= {"subtract", "divide", "parameter", "tuple"}, arg_ops - cap_ops
    # filter_jit returns a marker scalar beside the image: the RGBA planes must still be written
    # in place, not produced transposed and copied (bitcast + moveaxis did that)
    copies = re.findall(r"= (\S+) copy\(", compiled.split("ENTRY", 1)[1])
    assert copies in ([], ["s32[]"]), copies
    out = served(cm, x)
    np.testing.assert_array_equal(out, jax.jit(cm)(x))
    np.testing.assert_array_equal(out, apply_lut(x[0], cm.lut, -1.0, 1.0, (1, 2, 3, 4)))
    assert tuple(np.asarray(out[:, 0, 0])) == (1, 2, 3, 4)


def test_true_color_fixed_and_percentile() -> None:
    x = np.random.default_rng(1).uniform(0, 0.4, (6, 10, 12)).astype(np.float32)
    x[2, 0, 0] = np.nan
    out = np.asarray(TrueColor(rgb_bands=(2, 1, 0), vmin=0.0, vmax=0.3)(x))
    assert out.shape == (4, 10, 12) and out.dtype == np.uint8
    ref = np.round(np.clip(x[[2, 1, 0]] / 0.3, 0, 1) * 255)
    ok = ~np.isnan(ref)
    np.testing.assert_array_equal(out[:3][ok], ref[ok].astype(np.uint8))
    assert out[3, 0, 0] == 0 and out[3, 1, 1] == 255
    auto = np.asarray(TrueColor(alpha=False)(x))
    assert auto.shape == (3, 10, 12)
    lo, hi = np.nanpercentile(x[[2, 1, 0]], [2, 98], axis=(1, 2), keepdims=True)
    ref = np.round(np.clip((x[[2, 1, 0]] - lo) / (hi - lo), 0, 1) * 255)
    ok = ~np.isnan(ref)
    assert np.abs(auto[ok].astype(int) - ref[ok]).max() <= 1


def test_geotensor_and_png_round_trip(tmp_path) -> None:
    x = np.linspace(-1, 1, 64, dtype=np.float32).reshape(1, 8, 8)
    gt = GeoTensor(x, Affine(10, 0, 0, 0, -10, 0), "EPSG:32630")
    rgba = jax.jit(Colormap("RdYlGn", -1, 1))(gt)
    assert isinstance(rgba, GeoTensor) and rgba.band_names == ("R", "G", "B", "A")
    data = encode_png(rgba)
    back = np.asarray(Image.open(io.BytesIO(data)))
    np.testing.assert_array_equal(back, np.moveaxis(np.asarray(rgba.values), 0, -1))
    path = write_png(tmp_path / "t.png", rgba.values[:3])
    assert Image.open(path).mode == "RGB"
    with pytest.raises(DataError, match="uint8"):
        encode_png(x)
    with pytest.raises(ShapeError):
        encode_png(np.zeros((2, 4, 4), np.uint8))


def test_bad_input() -> None:
    with pytest.raises(ConfigError, match="colormap"):
        Colormap("not-a-cmap")
    with pytest.raises(ShapeError, match="one band"):
        Colormap()(np.zeros((2, 3, 3), np.float32))
    with pytest.raises(ConfigError, match="vmin"):
        TrueColor(vmin=0.3)


@pytest.mark.parametrize(
    "op", [Colormap("RdYlGn", vmin=-1, vmax=1), TrueColor(vmin=0.0, vmax=0.3, gamma=2.2)]
)
def test_round_trip(op) -> None:
    assert_rebuilds(op)


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: Colormap(vmin=1.0, vmax=1.0), "vmax"),
        (lambda: Colormap(vmin=2.0, vmax=1.0), "vmax"),
        (lambda: Colormap(vmin=float("nan")), "vmin"),
        (lambda: Colormap(vmax=float("inf")), "vmax"),
        (lambda: Colormap(nan_rgba=("a", 0, 0, 0)), "nan_rgba"),
        (lambda: Colormap(nan_rgba=(0, 0, 0)), "nan_rgba"),
        (lambda: TrueColor(gamma=0.0), "gamma"),
        (lambda: TrueColor(gamma=-2.2), "gamma"),
        (lambda: TrueColor(gamma=float("nan")), "gamma"),
        (lambda: TrueColor(vmin=0.3, vmax=0.3), "vmax"),
        (lambda: TrueColor(pmin=50.0, pmax=50.0), "pmax"),
        (lambda: TrueColor(pmin=-5.0), "pmin"),
        (lambda: TrueColor(rgb_bands=(0, 1, True)), "rgb_bands"),
        (lambda: TrueColor(vmin="dark", vmax=1.0), "vmin"),
    ],
)
def test_nonsense_rendering_values_are_refused_naming_the_field(make, field) -> None:
    with pytest.raises(ConfigError) as e:
        make()
    assert e.value.field == field


def test_true_color_range_and_gamma_are_leaves() -> None:
    """vmin/vmax/gamma are leaves (as in Colormap): vmap over them, one compiled program."""
    x = jnp.asarray(np.random.default_rng(0).uniform(0, 0.4, (3, 6, 6)).astype(np.float32))
    op = TrueColor(rgb_bands=(0, 1, 2), vmin=0.0, vmax=0.3, gamma=1.0)
    assert len(jax.tree_util.tree_leaves(op)) == 5  # vmin, vmax, pmin, pmax, gamma
    vmaxes = jnp.array([0.2, 0.4])
    out = jax.vmap(lambda v: TrueColor(rgb_bands=(0, 1, 2), vmin=0.0, vmax=v)(x))(vmaxes)
    np.testing.assert_array_equal(out[1], TrueColor(rgb_bands=(0, 1, 2), vmin=0.0, vmax=0.4)(x))
    assert not np.array_equal(out[0], out[1])


def test_hostile_shapes_and_dtypes_are_typed_errors() -> None:
    with pytest.raises(ShapeError, match="Colormap"):
        Colormap()(np.zeros((5,), np.float32))
    for op in (Colormap(), TrueColor(rgb_bands=(0, 0, 0))):
        with pytest.raises(DataError, match="got complex"):
            op(np.zeros((1, 3, 3), np.complex64))
    empty = TrueColor(rgb_bands=(0, 1, 2))(np.zeros((3, 0, 0), np.float32))
    assert empty.shape == (4, 0, 0) and empty.dtype == np.uint8
    assert Colormap().precheck((1, 64, 64), SANDBOX_LIMITS) == (4, 64, 64)
    assert TrueColor(alpha=False).precheck((2, 6, 64, 64), SANDBOX_LIMITS) == (2, 3, 64, 64)


def test_viz_runs_on_chips() -> None:
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (3, 20, 22)).astype(np.float32)
    x[:, 2:5, 2:5] = np.nan
    scene = GeoTensor(x, Affine(10, 0, 5e5, 0, -10, 4e6), "EPSG:32630")
    assert_stitches_to_scene(TrueColor(rgb_bands=(0, 1, 2), vmin=-1.0, vmax=1.0), scene)
    assert_stitches_to_scene(Colormap("RdYlGn", vmin=-1, vmax=1), scene[:1])
    # a percentile stretch is per chip
    assert_runs_on_chips(TrueColor(rgb_bands=(0, 1, 2)), chips_of(scene))
