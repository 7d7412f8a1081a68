"""Resampling and AlignAndStack vs rasterio.warp.reproject (GDAL), and the target-grid choice."""

from __future__ import annotations

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pyproj
import pytest
import yaml
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads
from rasterio.warp import Resampling, reproject

import georax as gx
from georax.core.budget import BudgetExceededError
from georax.core.errors import ConfigError, DataError, GeoraxError, ShapeError
from georax.core.sandbox import SANDBOX_LIMITS, Limits
from georax.geo.fusion import AlignAndStack, Resample, to_grid
from georax.geo.resample import NoOverlapError, resample, source_pixel_coordinates
from georax.tensor import Grid, MissingGeoreferenceError, crs_equal, grid_of

SRC = Grid("EPSG:32630", (20.0, 0.0, 500000.0, 0.0, -20.0, 4500000.0), (48, 64))


def field(seed: int, shape: tuple[int, ...], holes: bool = False) -> np.ndarray:
    """A smooth random field plus noise; optionally with NaN holes (missing data)."""
    rng = np.random.default_rng(seed)
    h, w = shape[-2:]
    yy, xx = np.mgrid[0:h, 0:w]
    fx, fy, px = rng.uniform(0.05, 0.3, 3)
    v = np.sin(fx * xx + px) + np.cos(fy * yy) + 0.2 * rng.normal(size=shape)
    v = v.astype(np.float32)
    if holes:
        v[rng.random(v.shape) < 0.04] = np.nan
        v[..., h // 3 : h // 3 + 4, w // 2 : w // 2 + 3] = np.nan
    return v


def gdal(values: np.ndarray, src: Grid, dst: Grid, method: str) -> np.ndarray:
    """The reference: rasterio.warp.reproject (GDAL's warper), NaN as nodata."""
    out = np.full((*values.shape[:-2], *dst.shape), np.nan, np.float32)
    reproject(
        values,
        out,
        src_transform=src.affine,
        src_crs=src.crs,
        dst_transform=dst.affine,
        dst_crs=dst.crs,
        resampling=getattr(Resampling, method),
        src_nodata=np.nan,
        dst_nodata=np.nan,
    )
    return out


def assert_matches_gdal(ours: np.ndarray, ref: np.ndarray, atol: float) -> None:
    ours = np.asarray(ours)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))  # same missing pixels
    np.testing.assert_allclose(ours[~np.isnan(ref)], ref[~np.isnan(ref)], atol=atol)


def utm31_grid(res: float, shape: tuple[int, int], offset: tuple[float, float]) -> Grid:
    """A grid in the neighbouring UTM zone, placed over SRC."""
    x, y = pyproj.Transformer.from_crs("EPSG:32630", "EPSG:32631", always_xy=True).transform(
        500000 + offset[0], 4500000 - offset[1]
    )
    return Grid("EPSG:32631", (res, 0.0, x, 0.0, -res, y), shape)


def geographic_grid(res_deg: float, shape: tuple[int, int], offset: tuple[float, float]) -> Grid:
    lon, lat = pyproj.Transformer.from_crs("EPSG:32630", "EPSG:4326", always_xy=True).transform(
        500000 + offset[0], 4500000 - offset[1]
    )
    return Grid("EPSG:4326", (res_deg, 0.0, lon, 0.0, -res_deg, lat), shape)


# -------------------------------------------------------------------- resample vs GDAL
@settings(max_examples=6, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    res=st.sampled_from([7.0, 10.0, 20.0, 30.0, 45.0, 60.0]),
    dx=st.floats(-200, 900),
    dy=st.floats(-150, 700),
    method=st.sampled_from(["bilinear", "nearest"]),
)
def test_same_crs_matches_rasterio(
    seed: int, res: float, dx: float, dy: float, method: str
) -> None:
    # up- and down-sampling, sub-pixel shifts, partial overlap: scale_and_translate path
    shape = (30, 40)
    if res > 20:
        # Downsampling: keep the target inside the source. GDAL sizes its antialiasing kernel
        # from the *clipped* source window, so where a coarser target overhangs the source its
        # kernel shrinks; ours keeps the true ratio (see test_downsampling_partial_overlap).
        dx, dy = abs(dx) % 200, abs(dy) % 200
        shape = (int((960 - dy) // res), int((1280 - dx) // res))
    dst = Grid("EPSG:32630", (res, 0.0, 500000.0 + dx, 0.0, -res, 4500000.0 - dy), shape)
    v = field(seed, (2, *SRC.shape))
    assert_matches_gdal(
        resample(jnp.asarray(v), SRC, dst, resampling=method), gdal(v, SRC, dst, method), atol=2e-5
    )


def test_downsampling_partial_overlap() -> None:
    # the target overhangs the source: the missing-data mask agrees exactly with GDAL; values are
    # GDAL's within its kernel-size approximation, and ours equal a target that fits inside
    v = field(5, SRC.shape)
    big = Grid("EPSG:32630", (60.0, 0.0, 500000.0, 0.0, -60.0, 4500000.0), (30, 40))
    ours = np.asarray(resample(jnp.asarray(v), SRC, big))
    ref = gdal(v, SRC, big, "bilinear")
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))
    inner = Grid("EPSG:32630", (60.0, 0.0, 500000.0, 0.0, -60.0, 4500000.0), (16, 21))
    np.testing.assert_allclose(ours[:16, :21], gdal(v, SRC, inner, "bilinear"), atol=2e-5)


@pytest.mark.parametrize("method", ["bilinear", "nearest"])
@pytest.mark.parametrize(
    "dst",
    [
        utm31_grid(10.0, (50, 60), (100.0, 80.0)),
        utm31_grid(20.0, (60, 70), (-200.0, -100.0)),  # overhangs the source: NaN outside
        geographic_grid(0.0001, (60, 60), (300.0, 200.0)),
    ],
    ids=["utm31-10m", "utm31-20m-partial", "wgs84"],
)
def test_cross_crs_matches_rasterio(dst: Grid, method: str) -> None:
    v = field(11, SRC.shape)
    ours = resample(jnp.asarray(v), SRC, dst, resampling=method)
    ref = gdal(v, SRC, dst, method)
    if method == "nearest" or dst.transform[0] < 20 or dst.crs == "EPSG:4326":
        assert_matches_gdal(ours, ref, atol=1e-3)
    else:
        # same nominal resolution across zones: GDAL widens its kernel where the target is a
        # hair coarser; we point-sample (documented) — the missing-data mask still agrees exactly
        assert_matches_gdal(ours, ref, atol=0.1)
    assert np.isnan(np.asarray(ours)).any() == np.isnan(ref).any()


@pytest.mark.parametrize(
    "dst",
    [
        Grid("EPSG:32630", (10.0, 0.0, 499950.0, 0.0, -10.0, 4500050.0), (70, 90)),
        utm31_grid(10.0, (50, 60), (100.0, 80.0)),
    ],
    ids=["same-crs", "utm31"],
)
@pytest.mark.parametrize("method", ["bilinear", "nearest"])
def test_missing_data_matches_rasterio(dst: Grid, method: str) -> None:
    # NaN holes neither spread into valid neighbours nor get filled: GDAL's nodata rules
    v = field(12, SRC.shape, holes=True)
    ours = resample(jnp.asarray(v), SRC, dst, resampling=method)
    assert_matches_gdal(ours, gdal(v, SRC, dst, method), atol=1e-3)


def test_coordinate_map_is_cached_and_read_only() -> None:
    dst = utm31_grid(10.0, (20, 20), (0.0, 0.0))
    a = source_pixel_coordinates(SRC, dst)
    assert source_pixel_coordinates(SRC, dst) is a
    assert not a.flags.writeable
    # index coordinates: the first target centre maps back near the source corner pixel
    assert a.shape == (2, 20, 20) and np.all(np.abs(a[:, 0, 0]) < 1.0)


def test_resample_identity_and_grad() -> None:
    v = jnp.asarray(field(13, SRC.shape))
    assert resample(v, SRC, SRC) is v
    dst = utm31_grid(10.0, (10, 10), (15.0, 15.0))  # inside the 8x8 source
    small = Grid("EPSG:32630", (20.0, 0.0, 500000.0, 0.0, -20.0, 4500000.0), (8, 8))
    x = v[:8, :8]
    assert np.isfinite(np.asarray(resample(x, small, dst))).all()
    check_grads(lambda a: resample(a, small, dst), (x,), order=1, modes=["rev"], rtol=2e-2)
    same = Grid("EPSG:32630", (13.0, 0.0, 500011.0, 0.0, -13.0, 4499990.0), (9, 9))
    check_grads(lambda a: resample(a, small, same), (x,), order=1, modes=["rev"], rtol=2e-2)


# ---------------------------------------------------------------------------- AlignAndStack
def sensors() -> tuple[gx.GeoTensor, gx.GeoTensor, gx.GeoTensor]:
    optical = gx.GeoTensor(
        field(1, (4, 40, 50)),
        Affine(10.0, 0.0, 500100.0, 0.0, -10.0, 4499900.0),
        "EPSG:32630",
        band_names=("B02", "B03", "B04", "B08"),
    )
    sar = gx.GeoTensor(
        np.abs(field(2, (2, *SRC.shape))) + 0.01, SRC.affine, SRC.crs, band_names=("VV", "VH")
    )
    dem_grid = utm31_grid(30.0, (25, 30), (-100.0, -50.0))
    dem_vals = 500 + 50 * field(3, dem_grid.shape)
    dem_vals[3:6, 10:14] = -9999.0
    dem = gx.GeoTensor(dem_vals, dem_grid.affine, dem_grid.crs, fill_value=-9999.0)
    return optical, sar, dem


@pytest.mark.parametrize(
    ("target", "chosen"),
    [("optical", 0), ("sar", 1), ("dem", 2), (0, 0), (1, 1), (-1, 2)],
)
def test_align_and_stack_honours_the_target_choice(target: str | int, chosen: int) -> None:
    inputs = sensors()
    names = ("optical", "sar", "dem")
    op = AlignAndStack(target_grid=target, inputs=names)
    out = op(*inputs)
    want = grid_of(inputs[chosen])
    assert grid_of(out) == want  # output grid == the chosen input's grid, nothing else
    assert out.values.shape == (7, *want.shape)
    assert out.band_names == (
        "optical:B02",
        "optical:B03",
        "optical:B04",
        "optical:B08",
        "sar:VV",
        "sar:VH",
        "dem",
    )
    # the chosen input is carried over untouched; every other one equals GDAL's reprojection
    offsets = {0: slice(0, 4), 1: slice(4, 6), 2: slice(6, 7)}
    for i, x in enumerate(inputs):
        got = np.asarray(out.values[offsets[i]])
        src_vals = np.asarray(x.values, np.float32).reshape((-1, *x.values.shape[-2:]))
        src_vals = (
            np.where(src_vals == x.fill_value, np.nan, src_vals) if x.fill_value else src_vals
        )
        if i == chosen:
            np.testing.assert_array_equal(got, src_vals)
        else:
            # exactly the resampling verified against GDAL above, on the chosen grid ...
            np.testing.assert_array_equal(got, resample(src_vals, grid_of(x), want))
            # ... and GDAL agrees on which pixels exist; values agree up to GDAL's kernel-size
            # approximation where a coarser target overhangs the source (see tests above)
            ref = gdal(src_vals, grid_of(x), want, "bilinear")
            np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
            both = ~np.isnan(ref)
            assert both.sum() > 100
            assert np.corrcoef(got[both], ref[both])[0, 1] > 0.97


def test_keyword_inputs_name_themselves_and_graph_runs_under_jit() -> None:
    optical, sar, dem = sensors()
    o, s, d = gx.Input("optical"), gx.Input("sar"), gx.Input("dem")
    by_kw = AlignAndStack(target_grid="sar")(optical=o, sar=s, dem=d)
    by_pos = AlignAndStack(target_grid="sar", inputs=("optical", "sar", "dem"))(o, s, d)
    g = gx.Graph(inputs={"optical": o, "sar": s, "dem": d}, outputs={"kw": by_kw, "pos": by_pos})
    out = jax.jit(g)(optical=optical, sar=sar, dem=dem)
    assert grid_of(out["kw"]) == grid_of(sar) == grid_of(out["pos"])
    np.testing.assert_array_equal(out["kw"].values, out["pos"].values)
    eager = g(optical=optical, sar=sar, dem=dem)
    np.testing.assert_allclose(eager["kw"].values, out["kw"].values, rtol=1e-5, atol=1e-5)


def test_explicit_grid_target_resamples_every_input() -> None:
    optical, sar, dem = sensors()
    target = Grid("EPSG:32630", (25.0, 0.0, 500150.0, 0.0, -25.0, 4499850.0), (12, 14))
    out = AlignAndStack(target_grid=target)(optical, sar, dem)
    assert grid_of(out) == target
    np.testing.assert_allclose(
        out.values[4:6], to_grid(sar, target).values, rtol=1e-6, equal_nan=True
    )
    # band names fall back to input positions when nothing names them
    assert out.band_names[0] == "input0:B02" and out.band_names[-1] == "input2"


def test_fill_value_is_missing_not_averaged() -> None:
    optical, _, dem = sensors()
    out = AlignAndStack(target_grid=0)(optical, dem)
    dem_on_opt = np.asarray(out.values[-1])
    # the -9999 block becomes NaN, and no -9999 leaks into neighbours through interpolation
    assert np.isnan(dem_on_opt).any()
    assert np.nanmin(dem_on_opt) > 0


def test_batch_axes_are_carried_and_checked() -> None:
    optical, sar, _ = sensors()
    t3 = gx.GeoTensor(jnp.stack([optical.values] * 3), optical.transform, optical.crs)
    s3 = gx.GeoTensor(jnp.stack([sar.values] * 3), sar.transform, sar.crs)
    out = AlignAndStack()(t3, s3)
    assert out.values.shape == (3, 6, 40, 50)
    with pytest.raises(ShapeError, match=r"leading shape \(\)"):
        AlignAndStack()(t3, sar)


# ------------------------------------------------------------------------------- refusals
def test_refuses_inputs_without_georeferencing() -> None:
    optical, sar, _ = sensors()
    with pytest.raises(MissingGeoreferenceError, match="'sar' is a ndarray"):
        AlignAndStack(inputs=("optical", "sar"))(optical, np.asarray(sar.values))
    no_crs = gx.GeoTensor(sar.values, sar.transform, None)
    with pytest.raises(MissingGeoreferenceError, match="crs=None"):
        AlignAndStack()(optical, no_crs)
    no_transform = gx.GeoTensor(sar.values, crs="EPSG:32630")
    with pytest.raises(MissingGeoreferenceError, match="identity transform"):
        AlignAndStack()(no_transform, optical)
    assert issubclass(MissingGeoreferenceError, GeoraxError)


def test_refuses_non_overlapping_extents() -> None:
    optical, sar, _ = sensors()
    far = gx.GeoTensor(sar.values, Affine(20.0, 0, 700000.0, 0, -20.0, 4500000.0), sar.crs)
    with pytest.raises(NoOverlapError, match=r"input 'input1'.*does not cover"):
        AlignAndStack()(optical, far)
    with pytest.raises(NoOverlapError):
        Resample(target_grid=grid_of(optical))(far)


def test_unknown_target_name() -> None:
    optical, sar, _ = sensors()
    with pytest.raises(ConfigError, match=r"no input is named 'optical'.*\['input0', 'input1'\]"):
        AlignAndStack(target_grid="optical")(optical, sar)
    with pytest.raises(ConfigError) as err:
        AlignAndStack(target_grid="radar", inputs=("optical", "sar"))
    assert err.value.field == "target_grid"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"target_grid": 1.5}, "target_grid"),
        ({"target_grid": True}, "target_grid"),
        ({"target_grid": 3, "inputs": ("a", "b")}, "target_grid"),
        ({"inputs": ("a", "a")}, "inputs"),
        ({"resampling": "cubic"}, "resampling"),
        ({"resampling": ("nearest",), "inputs": ("a", "b")}, "resampling"),
    ],
)
def test_config_errors(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        AlignAndStack(**kwargs)
    assert err.value.field == field


def test_wrong_arity_for_named_inputs() -> None:
    optical, sar, _ = sensors()
    with pytest.raises(ConfigError, match="names 3 positional inputs but 2"):
        AlignAndStack(inputs=("optical", "sar", "dem"))(optical, sar)


# --------------------------------------------------------------------------- config / YAML
def _plain(value):
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


@pytest.mark.parametrize(
    "op",
    [
        AlignAndStack(target_grid="optical", inputs=("optical", "sar", "dem")),
        AlignAndStack(target_grid=SRC, resampling=("bilinear", "nearest")),
        AlignAndStack(),
        Resample(target_grid=SRC, resampling="nearest"),
    ],
)
def test_config_round_trips_through_yaml(op) -> None:
    text = yaml.safe_dump({k: _plain(v) for k, v in op.config_fields().items()})
    rebuilt = type(op)(**yaml.safe_load(text))
    assert rebuilt == op and hash(rebuilt) == hash(op)
    assert pickle.loads(pickle.dumps(op)) == op
    # and through georax's own YAML (the Grid comes back as a Grid, not a list)
    from georax.core.yaml_io import dumps_yaml, loads_yaml

    loaded = loads_yaml(dumps_yaml(op))
    assert loaded == op
    if isinstance(op.target_grid, Grid):
        assert isinstance(loaded.target_grid, Grid)


def test_resample_operator_under_jit_and_vmap() -> None:
    _, sar, _ = sensors()
    target = utm31_grid(15.0, (20, 24), (100.0, 100.0))
    op = Resample(target_grid=target)
    out = jax.jit(op)(sar)
    assert grid_of(out) == target and out.band_names == ("VV", "VH")
    np.testing.assert_allclose(
        out.values, resample(np.asarray(sar.values), SRC, target), rtol=1e-6, equal_nan=True
    )
    stack = gx.GeoTensor(jnp.stack([sar.values, 2 * sar.values]), sar.transform, sar.crs)
    batched = jax.vmap(lambda v: op(gx.GeoTensor(v, sar.transform, sar.crs)).values)(stack.values)
    np.testing.assert_allclose(batched[1], 2 * batched[0], rtol=1e-5)


def test_grid_coerce_and_crs_equal() -> None:
    g = Grid.coerce({"crs": "EPSG:4326", "transform": [1, 0, 0, 0, -1, 0], "shape": [2, 3]})
    assert g == ("EPSG:4326", (1.0, 0.0, 0.0, 0.0, -1.0, 0.0), (2, 3))
    assert g.bounds == (0.0, -2.0, 3.0, 0.0)
    assert crs_equal("EPSG:4326", pyproj.CRS("EPSG:4326").to_wkt())
    assert not crs_equal("EPSG:32630", "EPSG:32631")


# ------------------------------------------------------------------------ hostile configs
def test_precheck_refuses_oversized_target_grids_before_building_them() -> None:
    """issue 16 cause 2: the pyproj grid of the target is host memory the budget never saw."""
    huge = Grid("EPSG:4326", (1e-5, 0.0, -3.0, 0.0, -1e-5, 41.6), (100_000, 100_000))
    for op in (Resample(target_grid=huge), AlignAndStack(target_grid=huge)):
        with pytest.raises(BudgetExceededError, match=r"\.target_grid") as e:
            op.precheck((2, 48, 64), SANDBOX_LIMITS)
        assert e.value.stage == "precheck"
    wide = Grid("EPSG:4326", (1e-5, 0.0, -3.0, 0.0, -1e-5, 41.6), (16, 2_000))
    tight = Limits(max_extent=4096, max_host_bytes=2**20)  # 16x2000 px of plan > 1 MiB
    with pytest.raises(BudgetExceededError, match="max_host_bytes") as e:
        Resample(target_grid=wide).precheck((2, 48, 64), tight)
    assert e.value.required > tight.max_host_bytes
    assert Resample(target_grid=SRC).precheck((3, 2, 10, 10), SANDBOX_LIMITS) == (3, 2, 48, 64)
    assert AlignAndStack(target_grid="optical", inputs=("optical",)).precheck(
        (2, 48, 64), SANDBOX_LIMITS
    ) == (2, 48, 64)


@pytest.mark.parametrize(
    "grid",
    [
        ("EPSG:32630", (20.0, 0.0, 5e5, 0.0, -20.0, 4.5e6), (0, 64)),
        ("EPSG:32630", (0.0, 0.0, 5e5, 0.0, 0.0, 4.5e6), (48, 64)),
        ("EPSG:32630", (float("nan"), 0.0, 5e5, 0.0, -20.0, 4.5e6), (48, 64)),
        ("EPSG:999999", (20.0, 0.0, 5e5, 0.0, -20.0, 4.5e6), (48, 64)),
    ],
)
def test_nonsense_target_grids_are_refused(grid) -> None:
    for cls in (Resample, AlignAndStack):
        with pytest.raises(ConfigError) as e:
            cls(target_grid=grid)
        assert e.value.field == "target_grid"


def test_chips_and_complex_values_are_refused() -> None:
    from georax.patch import GridSampler, Patcher

    _, sar, _ = sensors()
    chips = GridSampler(Patcher.regular(16))(sar)
    with pytest.raises(MissingGeoreferenceError, match="Chips, not a GeoTensor"):
        Resample(target_grid=SRC)(chips)
    complex_sar = sar.replace(values=sar.values.astype(jnp.complex64))
    with pytest.raises(DataError, match="resampling input: got complex"):
        Resample(target_grid=SRC)(complex_sar)
    with pytest.raises(DataError, match="resample: got complex"):
        resample(jnp.ones((48, 64), jnp.complex64), SRC, utm31_grid(15.0, (4, 4), (0.0, 0.0)))


def test_outputs_are_rebuilt_from_the_input_carrier() -> None:
    optical, sar, _ = sensors()
    out = Resample(target_grid=grid_of(optical))(sar)
    assert type(out) is type(sar) and out.band_names == sar.band_names and out.fill_value is None
    stacked = AlignAndStack(target_grid=grid_of(optical))(optical, sar)
    assert type(stacked) is gx.GeoTensor and grid_of(stacked) == grid_of(optical)
