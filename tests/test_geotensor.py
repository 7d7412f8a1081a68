"""GeoTensor: georeferencing after slicing/cropping, metadata, and survival through the core
operators under jit, vmap and grad."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import CRS

import georax as gx
from georax.errors import ConfigError, DataError, ShapeError
from georax.tensor import (
    BoundingBox,
    GeoTensorRequiredError,
    apply_transform,
    crs_equal,
    require_geotensor,
)

from _core_ops import Gain

T = Affine(10.0, 0.0, 400_000.0, 0.0, -10.0, 4_600_000.0)
NAMES = ("B02", "B03", "B04", "B08")


def make(shape=(4, 32, 48), transform=T, names=NAMES, fill=0) -> gx.GeoTensor:
    values = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    return gx.GeoTensor(values, transform, "EPSG:32630", fill, names)


# ----------------------------------------------------------------------------- construction
def test_constructor_validates_band_names_and_rank() -> None:
    with pytest.raises(ShapeError, match="band_names"):
        gx.GeoTensor(np.zeros((3, 4, 4)), T, band_names=("a", "b"))
    with pytest.raises(ShapeError, match="at least 2 axes"):
        gx.GeoTensor(np.zeros(5), T)
    gt = gx.GeoTensor(np.zeros((2, 3)), list(T)[:6], CRS.from_epsg(32630))
    assert gt.transform == T
    assert gt.crs == "EPSG:32630"


def test_metadata_properties() -> None:
    gt = make()
    assert gt.shape == (4, 32, 48) and gt.ndim == 3 and gt.count == 4
    assert (gt.height, gt.width) == (32, 48)
    assert gt.dtype == jnp.float32
    assert gt.resolution == (10.0, 10.0) and gt.res == gt.resolution
    assert gt.bounds == BoundingBox(400_000.0, 4_600_000.0 - 320, 400_000.0 + 480, 4_600_000.0)
    np.testing.assert_allclose(gt.x_coords[:2], [400_005.0, 400_015.0])
    np.testing.assert_allclose(gt.y_coords[-1], 4_600_000.0 - 315.0)
    assert gt.xy(0, 0) == (400_005.0, 4_599_995.0)
    assert gt.index(*gt.xy(7, 9)) == (7, 9)
    assert np.array_equal(np.asarray(gt), gt.to_numpy())


def test_rotated_transform_bounds_and_resolution() -> None:
    rot = Affine(
        *(np.array(T).reshape(3, 3) @ np.array(Affine.rotation(30)).reshape(3, 3)).ravel()[:6]
    )
    gt = gx.GeoTensor(np.zeros((10, 20)), rot)
    np.testing.assert_allclose(gt.resolution, (10.0, 10.0))
    corners = [apply_transform(rot, c, r) for c, r in ((0, 0), (20, 0), (0, 10), (20, 10))]
    xs, ys = zip(*corners, strict=True)
    np.testing.assert_allclose(gt.bounds, (min(xs), min(ys), max(xs), max(ys)))
    assert not gt.is_rectilinear
    with pytest.raises(ShapeError, match="unrotated"):
        _ = gt.x_coords


def test_replace_values_keeps_georeferencing_and_drops_stale_names() -> None:
    gt = make()
    same = gt.replace(values=gt.values * 2)
    assert same.band_names == NAMES and same.transform == T and same.fill_value == 0
    fewer = gt.replace(values=gt.values[:2])
    assert fewer.band_names is None and fewer.transform == T and fewer.crs == gt.crs


# ----------------------------------------------------------------------------- slicing
def test_slicing_updates_transform_and_band_names() -> None:
    gt = make()
    sub = gt[1:3, 10:20, 5:15]
    assert sub.shape == (2, 10, 10)
    assert sub.band_names == ("B03", "B04")
    assert sub.xy(0, 0) == gt.xy(10, 5)
    np.testing.assert_array_equal(sub.values, gt.values[1:3, 10:20, 5:15])
    strided = gt[..., ::2, 3::3]
    assert strided.resolution == (30.0, 20.0)
    assert strided.xy(4, 5, offset="ul") == gt.xy(8, 3 + 15, offset="ul")
    named = gt[["B08", "B02"]]
    assert named.band_names == ("B08", "B02")
    np.testing.assert_array_equal(named.values, gt.values[np.array([3, 0])])
    single = gt["B04"]
    assert single.shape == (32, 48) and single.band_names is None
    np.testing.assert_array_equal(single.values, gt.values[2])


@pytest.mark.parametrize(
    ("index", "match"),
    [
        ((0, 5, slice(None)), "keep the row"),
        ((Ellipsis, slice(None), 3), "keep the column"),
        ((Ellipsis, slice(None, None, -1), slice(None)), "positive"),
        ((Ellipsis, slice(5, 5), slice(None)), "no pixels"),
        (("B99",), "no band named"),
    ],
)
def test_slicing_refuses_indices_that_lose_the_grid(index, match) -> None:
    with pytest.raises(ShapeError, match=match):
        make()[index]


@settings(max_examples=40, deadline=None)
@given(
    r0=st.integers(-32, 31),
    r1=st.integers(1, 40),
    rs=st.integers(1, 4),
    c0=st.integers(-48, 47),
    c1=st.integers(1, 60),
    cs=st.integers(1, 4),
)
def test_slice_georeferencing_matches_numpy_indexing(r0, r1, rs, c0, c1, cs) -> None:
    """Every output pixel sits where its source pixel sat (the transform law of slicing)."""
    gt = make(shape=(32, 48), names=None)
    rows = range(*slice(r0, r1, rs).indices(32))
    cols = range(*slice(c0, c1, cs).indices(48))
    if not rows or not cols:
        with pytest.raises(ShapeError):
            gt[r0:r1:rs, c0:c1:cs]
        return
    sub = gt[r0:r1:rs, c0:c1:cs]
    np.testing.assert_array_equal(sub.values, np.asarray(gt.values)[r0:r1:rs, c0:c1:cs])
    for i, j in ((0, 0), (len(rows) - 1, len(cols) - 1)):
        # pixel centres differ with strides, upper-left corners do not
        assert sub.xy(i, j, offset="ul") == pytest.approx(gt.xy(rows[i], cols[j], offset="ul"))


def test_crop_and_crop_bounds() -> None:
    gt = make()
    sub = gt.crop(4, 6, 10, 12)
    assert sub.shape == (4, 10, 12) and sub.xy(0, 0) == gt.xy(4, 6)
    again = gt.crop_bounds(sub.bounds)
    assert again.transform == sub.transform and again.shape == sub.shape
    # partially covered edge pixels are included
    left, bottom, right, top = sub.bounds
    grown = gt.crop_bounds((left - 1, bottom - 1, right + 1, top + 1))
    assert grown.shape == (4, 12, 14)
    with pytest.raises(ShapeError, match="not inside"):
        gt.crop(30, 0, 5, 5)
    with pytest.raises(ShapeError, match="do not intersect"):
        gt.crop_bounds((0, 0, 10, 10))


def test_select_bands_and_astype() -> None:
    gt = make()
    sel = gt.select_bands(["B04", 0])
    assert sel.band_names == ("B04", "B02")
    cast = gt.astype(jnp.int32)
    assert cast.dtype == jnp.int32 and cast.transform == gt.transform


def test_same_grid_and_crs_equal() -> None:
    gt = make()
    wkt = CRS.from_epsg(32630).to_wkt()
    assert crs_equal("EPSG:32630", wkt)
    assert not crs_equal("EPSG:32630", "EPSG:32631")
    assert crs_equal(None, None) and not crs_equal(None, "EPSG:4326")
    assert gt.same_grid(gt.replace(crs=wkt, values=gt.values[:1], band_names=None))
    assert not gt.same_grid(gt[..., 1:, :])


def test_require_geotensor() -> None:
    gt = make()
    assert require_geotensor(gt, "x") is gt
    with pytest.raises(GeoTensorRequiredError, match=r"MyOp needs a georax\.GeoTensor"):
        require_geotensor(jnp.ones((2, 2)), "MyOp")


def test_slicing_inside_jit_keeps_static_transform() -> None:
    gt = make()
    out = jax.jit(lambda g: g[..., 2:6, 3:9])(gt)
    assert out.transform == gt[..., 2:6, 3:9].transform
    np.testing.assert_array_equal(out.values, gt.values[..., 2:6, 3:9])


# ----------------------------------------------------------------------------- core operators
class Scale(eqx.Module):
    w: jax.Array

    def __call__(self, x: jax.Array) -> jax.Array:
        return x * self.w[:, None, None]

    def predict(self, x: jax.Array) -> jax.Array:
        return jnp.tanh(x * self.w[:, None, None])


def pipelines() -> dict[str, gx.Operator]:
    inp = gx.Input("x")
    mid = Gain(0.5, 1.0)(inp)
    graph = gx.Graph(inputs={"x": inp}, outputs={"y": gx.ModelOp(Scale(jnp.ones(4)))(mid)})
    return {
        "identity": gx.Identity(),
        "sequential": gx.Sequential([Gain(2.0, 0.0), gx.Identity(), Gain(0.5, 3.0)]),
        "modelop": gx.ModelOp(Scale(jnp.arange(1.0, 5.0)), method="predict"),
        "graph": graph,
    }


def _geo_of(out):
    return out["y"] if isinstance(out, dict) else out


@pytest.mark.parametrize("name", ["identity", "sequential", "modelop", "graph"])
def test_core_operators_keep_georeferencing_under_jit_vmap_grad(name: str) -> None:
    op = pipelines()[name]
    gt = make(shape=(4, 8, 8)).replace(values=jnp.linspace(0, 1, 256).reshape(4, 8, 8))

    def run(o, g):
        return o(x=g) if isinstance(o, gx.Graph) else o(g)

    eager = _geo_of(run(op, gt))
    jitted = _geo_of(jax.jit(run)(op, gt))
    for out in (eager, jitted):
        assert isinstance(out, gx.GeoTensor)
        assert out.transform == gt.transform and out.crs == gt.crs
        assert out.fill_value == gt.fill_value and out.band_names == gt.band_names
    np.testing.assert_allclose(jitted.values, eager.values, rtol=1e-6)

    batch = gt.replace(values=jnp.stack([gt.values, 2 * gt.values]), band_names=None)
    vm = _geo_of(jax.vmap(run, in_axes=(None, 0))(op, batch))
    assert isinstance(vm, gx.GeoTensor) and vm.transform == gt.transform and vm.crs == gt.crs
    np.testing.assert_allclose(vm.values[0], eager.values, rtol=1e-6)

    grads = jax.grad(lambda g: jnp.sum(_geo_of(run(op, g)).values ** 2))(gt)
    assert isinstance(grads, gx.GeoTensor) and grads.transform == gt.transform
    assert grads.crs == gt.crs and grads.shape == gt.shape
    assert np.all(np.isfinite(np.asarray(grads.values)))
    assert float(jnp.abs(grads.values).sum()) > 0


def test_grad_through_parameters_with_geotensor_input() -> None:
    op = gx.Sequential([Gain(2.0, 0.0), gx.ModelOp(Scale(jnp.ones(4)))])
    gt = make(shape=(4, 4, 4)).replace(values=jnp.ones((4, 4, 4)))
    g = eqx.filter_grad(lambda o: jnp.sum(o(gt).values))(op)
    # d/d gain of sum(gain * 1 * w) = 64 * w (16 pixels per band, w = 1)
    np.testing.assert_allclose(g.operators[0].gain, 64.0)


def test_xy_refuses_an_unknown_offset() -> None:
    from georax.core.errors import ConfigError

    values = np.zeros((1, 4, 4), np.float32)
    gt = gx.GeoTensor(values, Affine(10, 0, 100, 0, -10, 200), "EPSG:32630")
    assert gt.xy(0, 0) == (105.0, 195.0) and gt.xy(0, 0, "ul") == (100.0, 200.0)
    with pytest.raises(ConfigError, match="offset"):
        gt.xy(0, 0, "centre")


# ----------------------------------------------------------------------------- hostile input
def test_array_protocol_honours_copy() -> None:
    gt = make()
    view = np.asarray(gt)
    assert np.shares_memory(view, np.asarray(gt.values)) and not view.flags.writeable
    copied = np.array(gt, copy=True)
    assert not np.shares_memory(copied, view) and copied.flags.writeable
    copied[0, 0, 0] = -1.0  # writing the copy leaves the GeoTensor alone
    assert float(gt.values[0, 0, 0]) == 0.0
    same = np.array(gt, copy=False)
    assert np.shares_memory(same, view)
    with pytest.raises(DataError, match="needs a copy") as e:
        np.array(gt, dtype=np.float64, copy=False)
    assert isinstance(e.value, ValueError)  # what NumPy's protocol expects
    assert np.array(gt, dtype=np.float64).dtype == np.float64


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"values": np.array([["a", "b"]])}, "values"),
        ({"values": np.array([[object(), 1]])}, "values"),
        ({"values": None}, "values"),
        ({"transform": "abc"}, "transform"),
        ({"transform": (1, 2)}, "transform"),
        ({"transform": None}, "transform"),
        ({"transform": Affine(float("nan"), 0, 0, 0, -1, 0)}, "transform"),
        ({"transform": Affine(10, 0, 0, 0, float("inf"), 0)}, "transform"),
        ({"transform": Affine(0, 0, 0, 0, 0, 0)}, "transform"),
        ({"crs": 4326}, "crs"),
        ({"crs": {"init": "epsg:4326"}}, "crs"),
        ({"fill_value": "x"}, "fill_value"),
        ({"fill_value": np.array([1, 2])}, "fill_value"),
        ({"fill_value": True}, "fill_value"),
        ({"band_names": "ab"}, "band_names"),
        ({"band_names": 3}, "band_names"),
        ({"band_names": [1, 2]}, "band_names"),
    ],
)
def test_constructor_refuses_bad_fields_by_name(kwargs, field) -> None:
    args = {"values": np.zeros((2, 3, 3), np.float32), "transform": T, **kwargs}
    with pytest.raises(ConfigError, match=rf"GeoTensor\.{field}"):
        gx.GeoTensor(**args)


def test_constructor_normalises_scalar_fill_values() -> None:
    for fill in (np.float32(1.5), np.array(1.5), jnp.asarray(1.5)):
        gt = gx.GeoTensor(np.zeros((2, 2), np.float32), T, fill_value=fill)
        assert gt.fill_value == 1.5 and type(gt.fill_value) is float

    @jax.jit
    def traced(v):
        return gx.GeoTensor(v, T, fill_value=v[0, 0]).values

    with pytest.raises(ConfigError, match="concrete number"):
        traced(jnp.zeros((2, 2)))


@pytest.mark.parametrize(
    ("index", "match"),
    [
        (5, r"index \[5\] out of range for size 4"),
        (-5, r"index \[-5\] out of range"),
        ([0, 7], r"index \[7\] out of range"),
        (np.array([1, 4]), r"index \[4\] out of range"),
        (0.5, "cannot index with 0.5"),
        (True, "boolean index"),
        ((slice(None), slice(0.5, 2)), "needs integer bounds"),
    ],
)
def test_indexing_refuses_what_jax_would_clamp_or_misread(index, match) -> None:
    with pytest.raises(ShapeError, match=match):
        make()[index]


def test_crop_select_astype_index_xy_refuse_bad_arguments() -> None:
    gt = make()
    with pytest.raises(ConfigError, match=r"crop\.row_off"):
        gt.crop(0.5, 0, 2, 2)
    with pytest.raises(ConfigError, match=r"crop\.width"):
        gt.crop(0, 0, 2, "2")
    for bounds, match in [
        ((0, 0, 10), r"\(left, bottom, right, top\)"),
        ((400_000, float("nan"), 400_100, 4_600_000), "finite"),
        ((400_000, 4_599_900, float("inf"), 4_600_000), "finite"),
        ((400_100, 4_599_900, 400_000, 4_600_000), "reversed"),
        ((-1e308, -1e308, 1e308, 1e308), None),  # huge but finite: clipped, not overflowed
    ]:
        if match is None:
            assert gt.crop_bounds(bounds).shape == gt.shape
        else:
            with pytest.raises(ShapeError, match=match):
                gt.crop_bounds(bounds)
    assert gt.select_bands("B04").band_names == ("B04",)
    assert gt.select_bands(2).shape == (1, 32, 48)
    with pytest.raises(ShapeError, match="out of range"):
        gt.select_bands([9])
    for dtype in ("float99", object, str):
        with pytest.raises(ConfigError, match=r"astype\.dtype"):
            gt.astype(dtype)
    with pytest.raises(DataError, match="not a finite coordinate"):
        gt.index(float("nan"), 0.0)
    with pytest.raises(ConfigError, match=r"xy\.row"):
        gt.xy("a", 0)
    with pytest.raises(GeoTensorRequiredError):
        gt.same_grid(np.zeros((32, 48)))  # type: ignore[arg-type]
    with pytest.raises(DataError, match="'bogus' is not a CRS"):
        crs_equal("bogus", "EPSG:4326")
