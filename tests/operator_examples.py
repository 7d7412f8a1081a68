"""One example instance of every public georax operator, for tests/test_every_operator.py.

Each entry maps an operator class to a factory of an :class:`Example`: the operator, an input it
runs on, and what the conformance test should expect of it (differentiable or not and why; does
a GeoTensor input keep its georeferencing, or does the operator document that it changes it).
A class that is in ``georax.registry.public_operators()`` but not here fails the conformance
test by name, so a new operator cannot escape the contract.

Other layers add their operators in modules named ``operator_examples_<layer>.py`` next to this
one (same ``EXAMPLES`` dict and :func:`example` decorator); the test merges every such module.

Inputs are small (16 x 16 pixels) and built once per process.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import pkgutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import jax.numpy as jnp
import numpy as np

import georax as gx
import georax.data as gd
from georax.core.operator import GetItem, Operator
from georax.geo import augment, cloud, fusion, indices, qa, radiometry, sar, viz
from georax.geo import retrieval as rt
from georax.patch import aggregation as agg
from georax.patch import operators as patch_ops
from georax.patch import samplers, window_ops
from georax.patch.geometry import Rectangular
from georax.patch.patcher import Patcher
from georax.tensor.grid import Grid

__all__ = ["EXAMPLES", "Example", "example", "import_all"]

Georeferencing = Literal["kept", "changed", "none"]


@dataclasses.dataclass(frozen=True)
class Example:
    """An operator, an input it runs on, and what the contract expects of it.

    - `op`: the operator instance.
    - `args`, `kwargs`: the call's inputs (``op(*args, **kwargs, key=...)``).
    - `batch`: a second ``(args, kwargs)`` of the same shapes, stacked with the first for the
      vmap check (default: the carriers' and arrays' values mirrored left-right).
    - `not_batchable`: why ``vmap`` over a batch of inputs does not apply (``None``: it does).
    - `not_differentiable`: why gradients do not apply (``None``: they must be finite and not
      all zero).
    - `georeferencing`: ``"kept"`` (every carrier output has the input's transform and CRS, and
      its band names when the band count is unchanged), ``"changed"`` (the class docstring says
      how: it must mention georeferencing) or ``"none"`` (the output is no raster: it holds no
      carrier).
    - `rtol`, `atol`: tolerance between programs (eager/jit/vmap) in output units.
    """

    op: Operator
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    batch: tuple[tuple[Any, ...], Mapping[str, Any]] | None = None
    not_batchable: str | None = None
    not_differentiable: str | None = None
    georeferencing: Georeferencing = "kept"
    rtol: float = 1e-5
    atol: float = 1e-6


EXAMPLES: dict[type[Operator], Callable[[], Example]] = {}


def example(*classes: type[Operator]) -> Callable[[Callable[[], Example]], Callable[[], Example]]:
    """Register ``factory`` as the example of ``classes`` (one factory may serve several)."""

    def register(factory: Callable[[], Example]) -> Callable[[], Example]:
        for cls in classes:
            if cls in EXAMPLES:
                raise AssertionError(f"two examples for {cls.__name__}")
            EXAMPLES[cls] = factory
        return factory

    return register


def import_all() -> None:
    """Import every georax module (so every operator is registered) and every example table."""
    for info in pkgutil.walk_packages(gx.__path__, prefix="georax."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    for info in pkgutil.iter_modules([str(Path(__file__).resolve().parent)]):
        if info.name.startswith("operator_examples_"):
            importlib.import_module(info.name)


# ------------------------------------------------------------------------------------ inputs
SIZE = 16
S2_NAMES = gd.S2_BANDS[:6]


@functools.cache
def s2_dn() -> gx.GeoTensor:
    """``(7, 16, 16)`` uint16 Sentinel-2 DN with QA60 (named bands, fill_value 0, clouds)."""
    return gd.sentinel2_l1c(SIZE, seed=3, cloud_cover=0.4, cirrus_cover=0.2)


@functools.cache
def s2_dn_float() -> gx.GeoTensor:
    """:func:`s2_dn` as float32 (QA bits still integer-valued), so gradients reach it."""
    g = s2_dn()
    return g.replace(values=jnp.asarray(g.values, jnp.float32))


@functools.cache
def reflectance() -> gx.GeoTensor:
    """``(6, 16, 16)`` float32 reflectance B02..B12, named, no nodata."""
    g = s2_dn()
    values = np.asarray(g.values[:6], np.float32) / 10_000 + 0.01
    return g.replace(values=jnp.asarray(values), band_names=S2_NAMES, fill_value=None)


@functools.cache
def one_band() -> gx.GeoTensor:
    """``(1, 16, 16)`` float32 values in about [-1, 1] with one NaN pixel (NDVI-like)."""
    values = np.asarray(indices.NDVI()(reflectance()).values).copy()
    values[0, 3, 5] = np.nan
    return reflectance().replace(values=jnp.asarray(values), band_names=("NDVI",))


@functools.cache
def sar_linear() -> gx.GeoTensor:
    """``(2, 16, 16)`` Sentinel-1 VV/VH sigma0, linear power, on a 20 m grid that covers (and
    does not align with) the optical one."""
    t = s2_dn().transform
    return gd.sentinel1_grd(SIZE, seed=3, origin=(t.c - 35.0, t.f + 25.0))


@functools.cache
def chips() -> Any:
    """Overlapping 8 x 8 chips (stride 4, Hann window) of :func:`reflectance`."""
    return patch_ops.GridSampler(Patcher.regular(8, 4, window="hann"))(reflectance())


@functools.cache
def plume(sensor: str = "hyperspectral") -> gd.PlumeScene:
    return gd.plume_scene(SIZE, sensor=sensor, seed=7)


SHAPES = ((SIZE, SIZE), (8, 8))  # what a sampler takes: (scene shape, chip shape)


# ------------------------------------------------------------------------------------ core
@example(gx.Identity)
def _identity() -> Example:
    return Example(gx.Identity(), (reflectance(),))


@example(gx.Sequential)
def _sequential() -> Example:
    op = gx.Sequential([radiometry.ScaleOffset(1.5, 0.01), indices.NDVI()])
    return Example(op, (reflectance(),))


@example(GetItem)
def _get_item() -> Example:
    r = reflectance()
    return Example(GetItem("b"), ({"a": r, "b": r.replace(values=r.values * 2)},))


@example(gx.Graph)
def _graph() -> Example:
    x = gx.Input("x")
    scaled = radiometry.ScaleOffset(2.0)(x)
    graph = gx.Graph(inputs={"x": x}, outputs={"ndvi": indices.NDVI()(scaled), "scaled": scaled})
    return Example(graph, (), {"x": reflectance()})


# ------------------------------------------------------------------------------------ array.qc
@example(gx.array.qc.AssertDType)
def _assert_dtype() -> Example:
    return Example(gx.array.qc.AssertDType(("floating", "uint16")), (reflectance(),))


@example(gx.array.qc.AssertHasAttribute)
def _assert_has_attribute() -> Example:
    return Example(gx.array.qc.AssertHasAttribute("crs"), (reflectance(),))


@example(gx.array.qc.AssertNoNaN)
def _assert_no_nan() -> Example:
    return Example(gx.array.qc.AssertNoNaN(include_inf=True), (reflectance(),))


@example(gx.array.qc.AssertShape)
def _assert_shape() -> Example:
    return Example(gx.array.qc.AssertShape((6, -1, None)), (reflectance(),))


@example(gx.array.qc.AssertValidFraction)
def _assert_valid_fraction() -> Example:
    return Example(gx.array.qc.AssertValidFraction(0.5), (one_band(),))


@example(gx.array.qc.AssertValueRange)
def _assert_value_range() -> Example:
    return Example(gx.array.qc.AssertValueRange(vmin=0.0, vmax=1.0), (reflectance(),))


# ------------------------------------------------------------------------------------ geo
_TRACED_DRAW = "changed"  # augmentations move pixels: see georax.geo.augment's docstring


@example(augment.RandomCrop)
def _random_crop() -> Example:
    return Example(augment.RandomCrop(8), (reflectance(),), georeferencing=_TRACED_DRAW)


@example(augment.RandomFlip)
def _random_flip() -> Example:
    op = augment.RandomFlip(0.5, axes=("x", "y"))
    return Example(op, (reflectance(),), georeferencing=_TRACED_DRAW)


@example(augment.RandomRotate90)
def _random_rotate() -> Example:
    return Example(augment.RandomRotate90(), (reflectance(),), georeferencing=_TRACED_DRAW)


@example(cloud.ApplyMask)
def _apply_mask() -> Example:
    op = cloud.ApplyMask(cloud.MaskFromQABits(qa_band=-1, bits=(10, 11)), fill_value=-1.0)
    return Example(op, (s2_dn_float(),))


@example(cloud.MaskClouds)
def _mask_clouds() -> Example:
    return Example(cloud.MaskClouds.sentinel2(dilate=1), (s2_dn_float(),))


@example(cloud.MaskFromQABits)
def _mask_from_qa_bits() -> Example:
    return Example(
        cloud.MaskFromQABits(bits=(10,), dilate=1),
        (s2_dn(),),
        not_differentiable="a boolean mask of integer QA bits",
    )


@example(fusion.AlignAndStack)
def _align_and_stack() -> Example:
    return Example(
        fusion.AlignAndStack(target_grid="optical", resampling="bilinear"),
        (),
        {"optical": reflectance(), "sar": sar_linear()},
        rtol=1e-4,
        atol=1e-5,
    )


@example(fusion.Resample)
def _resample() -> Example:
    r = reflectance()
    t = r.transform
    grid = Grid(r.crs, (t.a * 2, t.b, t.c + 3.0, t.d, t.e * 2, t.f - 3.0), (8, 8))
    return Example(fusion.Resample(grid), (r,), georeferencing="changed", rtol=1e-4, atol=1e-5)


@example(indices.NDVI)
def _ndvi() -> Example:
    return Example(indices.NDVI(red_band=2, nir_band=3), (reflectance(),))


@example(indices.NDWI)
def _ndwi() -> Example:
    return Example(indices.NDWI(), (reflectance(),))


@example(indices.NBR)
def _nbr() -> Example:
    return Example(indices.NBR(), (reflectance(),))


@example(indices.EVI)
def _evi() -> Example:
    return Example(indices.EVI(g=2.5, l=1.0), (reflectance(),), rtol=1e-4)


@example(indices.SAVI)
def _savi() -> Example:
    return Example(indices.SAVI(l=0.5), (reflectance(),))


@example(indices.NormalizedDifference)
def _normalized_difference() -> Example:
    return Example(indices.NormalizedDifference(a_band=4, b_band=5, label="SWIR"), (reflectance(),))


@example(indices.SpectralIndex)
def _spectral_index() -> Example:
    return Example(indices.SpectralIndex("EVI", constants={"g": 2.5}), (reflectance(),), rtol=1e-4)


@example(qa.AssertCRSEquals)
def _assert_crs() -> Example:
    return Example(qa.AssertCRSEquals("EPSG:32630"), (reflectance(),))


@example(qa.AssertResolutionWithin)
def _assert_resolution() -> Example:
    return Example(qa.AssertResolutionWithin((9.5, 10.5)), (reflectance(),))


@example(qa.AssertSchema)
def _assert_schema() -> Example:
    return Example(qa.AssertSchema(("B04", "B08"), exact=False), (reflectance(),))


@example(radiometry.DNToReflectance)
def _dn_to_reflectance() -> Example:
    return Example(radiometry.DNToReflectance(offset=-0.1), (s2_dn(),))


@example(radiometry.DarkObjectSubtraction)
def _dark_object() -> Example:
    return Example(radiometry.DarkObjectSubtraction(percentile=5.0), (reflectance(),))


@example(radiometry.Normalize)
def _normalize() -> Example:
    return Example(radiometry.Normalize.fit(reflectance()), (reflectance(),), rtol=1e-4)


@example(radiometry.PercentileClip)
def _percentile_clip() -> Example:
    return Example(radiometry.PercentileClip(5.0, 95.0, rescale=True), (reflectance(),), rtol=1e-4)


@example(radiometry.ScaleOffset)
def _scale_offset() -> Example:
    scale = np.linspace(0.5, 1.5, 6, dtype=np.float32)
    return Example(radiometry.ScaleOffset(scale, 0.01), (reflectance(),))


@example(radiometry.TOAToBOA)
def _toa_to_boa() -> Example:
    return Example(radiometry.TOAToBOA(sun_zenith=35.0, path_reflectance=0.005), (reflectance(),))


@example(radiometry.ToFloat32)
def _to_float32() -> Example:
    r = reflectance()
    return Example(radiometry.ToFloat32(), (r.replace(values=r.values.astype(jnp.float16)),))


@example(sar.DBToLinear)
def _db_to_linear() -> Example:
    s = sar_linear()
    return Example(sar.DBToLinear(), (s.replace(values=10 * jnp.log10(s.values)),))


@example(sar.LinearToDB)
def _linear_to_db() -> Example:
    return Example(sar.LinearToDB(floor_db=-30.0), (sar_linear(),))


@example(sar.LeeSpeckle)
def _lee_speckle() -> Example:
    return Example(sar.LeeSpeckle(window_size=3, looks=4.4), (sar_linear(),), rtol=1e-4)


@example(viz.Colormap)
def _colormap() -> Example:
    return Example(
        viz.Colormap("RdYlGn", vmin=-1.0, vmax=1.0),
        (one_band(),),
        not_differentiable="uint8 colours: a table lookup",
    )


@example(viz.TrueColor)
def _true_color() -> Example:
    return Example(
        viz.TrueColor(pmin=1.0, pmax=99.0, gamma=1.2),
        (reflectance(),),
        not_differentiable="uint8 colours: rounded and cast",
    )


# ------------------------------------------------------------------------------------ retrieval
_RETRIEVAL_TOL = {"rtol": 1e-3, "atol": 0.2}  # ppm*m through a float32 covariance solve


@example(rt.BeerLambert)
def _beer_lambert() -> Example:
    p = plume()
    return Example(rt.BeerLambert(p.absorption, p.air_mass_factor), (p.enhancement,))


@example(rt.MethaneForward)
def _methane_forward() -> Example:
    p = plume()
    state = jnp.concatenate([p.enhancement.values, p.albedo.values, p.slope.values])
    return Example(rt.MethaneForward.from_scene(p), (p.enhancement.replace(values=state),))


@example(rt.MatchedFilter)
def _matched_filter() -> Example:
    p = plume()
    op = rt.MatchedFilter(p.absorption, p.air_mass_factor)
    return Example(op, (p.reflectance,), **_RETRIEVAL_TOL)


@example(rt.BandRatio)
def _band_ratio() -> Example:
    p = plume("sentinel2")
    op = rt.BandRatio(p.absorption, p.air_mass_factor)
    return Example(op, (p.reflectance, p.reference), **_RETRIEVAL_TOL)


@example(rt.MethaneRetrieval)
def _methane_retrieval() -> Example:
    p = plume()
    op = rt.MethaneRetrieval(
        rt.MethaneForward.from_scene(p), Patcher.regular(8), noise_std=p.noise_std, steps=200
    )
    # enough steps to converge: Adam's first steps amplify round-off between programs
    return Example(op, (p.reflectance,), rtol=2e-3, atol=1.0)


# ------------------------------------------------------------------------------------ patch
def _aggregation_of(cls: type[agg.Aggregation]) -> Callable[[], Example]:
    return lambda: Example(cls(fill_value=0.0), (chips(),))


for _cls in (agg.OverlapAdd, agg.Mean, agg.Max, agg.ByIndex):
    EXAMPLES[_cls] = _aggregation_of(_cls)


def _window_of(op: Callable[[], window_ops.Window]) -> Callable[[], Example]:
    return lambda: Example(op(), (chips(),))


EXAMPLES.update(
    {
        window_ops.Boxcar: _window_of(window_ops.Boxcar),
        window_ops.Hann: _window_of(window_ops.Hann),
        window_ops.Triangular: _window_of(window_ops.Triangular),
        window_ops.Tukey: _window_of(lambda: window_ops.Tukey(alpha=0.3)),
        window_ops.Gaussian: _window_of(lambda: window_ops.Gaussian(sigma=0.25)),
    }
)


@example(Rectangular)
def _rectangular() -> Example:
    return Example(
        Rectangular((8, 4)),
        (reflectance(),),
        not_batchable="returns the static chip shape, whatever the input",
        not_differentiable="returns the static chip shape",
        georeferencing="none",
    )


_POSITIONS = "chip positions are integers"


@example(samplers.RegularStride)
def _regular_stride() -> Example:
    return Example(
        samplers.RegularStride((4, 8)),
        (SHAPES,),
        not_batchable="deterministic positions from static shapes: nothing to batch",
        not_differentiable=_POSITIONS,
        georeferencing="none",
    )


@example(samplers.ExplicitPositions)
def _explicit_positions() -> Example:
    return Example(
        samplers.ExplicitPositions(((0, 0), (4, 8), (8, 2))),
        (SHAPES,),
        not_batchable="fixed positions from static shapes: nothing to batch",
        not_differentiable=_POSITIONS,
        georeferencing="none",
    )


@example(samplers.RandomPositions)
def _random_positions() -> Example:
    # vmap batches the keys only: the shapes are static
    return Example(
        samplers.RandomPositions(5),
        (SHAPES,),
        not_differentiable=_POSITIONS,
        georeferencing="none",
    )


@example(Patcher)
def _patcher() -> Example:
    return Example(Patcher.regular(8, 4, window="tukey", margin=2), (reflectance(),))


@example(patch_ops.GridSampler)
def _grid_sampler() -> Example:
    return Example(patch_ops.GridSampler(Patcher.regular(8, 6)), (reflectance(),))


@example(patch_ops.ApplyToChips)
def _apply_to_chips() -> Example:
    return Example(patch_ops.ApplyToChips(indices.NDVI(), batch_size=3), (chips(),))


@example(patch_ops.Stitch)
def _stitch() -> Example:
    return Example(patch_ops.Stitch(agg.Mean()), (chips(),))


@example(patch_ops.Patchwise)
def _patchwise() -> Example:
    op = patch_ops.Patchwise(
        Patcher.regular(8, 4, window="hann"), radiometry.ScaleOffset(2.0, 0.1), batch_size=4
    )
    return Example(op, (reflectance(),))
