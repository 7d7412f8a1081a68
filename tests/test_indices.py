"""georax.geo.indices: named indices and the whole spyndex catalog cross-checked against spyndex."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import spyndex
from affine import Affine
from jax.test_util import check_grads

from _geo_helpers import assert_rebuilds, assert_stitches_to_scene
from georax import GeoTensor
from georax.core.errors import ConfigError, DataError, ShapeError
from georax.core.sandbox import SANDBOX_LIMITS
from georax.geo._formula import Formula
from georax.geo.errors import FormulaError
from georax.geo.indices import (
    EVI,
    NBR,
    NDVI,
    NDWI,
    SAVI,
    NormalizedDifference,
    SpectralIndex,
    catalog,
)

S2 = {"B": 0, "G": 1, "R": 2, "N": 3, "S1": 4, "S2": 5}


def _bands(seed: int = 0, shape=(6, 8, 9)) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.02, 0.6, shape).astype(np.float32)


def _spy(name: str, x: np.ndarray, **consts) -> np.ndarray:
    params = {s: x[i].astype(np.float64) for s, i in S2.items()}
    params.update(consts)
    return np.asarray(spyndex.computeIndex(name, params=params))


@pytest.mark.parametrize(
    ("op", "name", "consts"),
    [
        (NDVI(red_band=2, nir_band=3), "NDVI", {}),
        (NDWI(), "NDWI", {}),
        (NBR(), "NBR", {}),
        (EVI(), "EVI", {"g": 2.5, "C1": 6.0, "C2": 7.5, "L": 1.0}),
        (SAVI(l=0.5), "SAVI", {"L": 0.5}),
    ],
)
def test_named_indices_match_spyndex(op, name, consts) -> None:
    x = _bands()
    out = np.asarray(op(x))
    assert out.shape == (1, *x.shape[1:])
    np.testing.assert_allclose(out[0], _spy(name, x, **consts), rtol=2e-5, atol=1e-6)


def test_normalized_difference_and_band_fields() -> None:
    x = _bands(1)
    nd = np.asarray(NormalizedDifference(a_band=4, b_band=5, label="NDMI-ish")(x))[0]
    np.testing.assert_allclose(nd, (x[4] - x[5]) / (x[4] + x[5]), rtol=1e-6)
    # one name per band role, no aliases: the seeds' red_idx is an unknown field now
    with pytest.raises(ConfigError, match="red_idx"):
        NDVI(red_idx=2)  # type: ignore[call-arg]
    # a bool is not a band index (True would silently mean band 1)
    with pytest.raises(ConfigError, match=r"NDVI\.red_band"):
        NDVI(red_band=True)


def _catalog_inputs(symbols, rng, shape):
    """Random values for every symbol: bands in (0.05, 0.6); constants without default sampled."""
    defaults = {k: spyndex.constants[k].default for k in spyndex.constants}
    bands, consts = {}, {}
    for s in sorted(symbols):
        if s in defaults and defaults[s] is not None:
            continue  # both sides use spyndex's default
        if s in defaults:  # no default (wavelengths, PAR): supply one
            consts[s] = float(rng.uniform(400, 900)) if s.startswith("lambda") else 1.5
        else:
            bands[s] = rng.uniform(0.05, 0.6, shape).astype(np.float32)
    return bands, consts


def test_every_catalog_index_matches_spyndex() -> None:
    """All indices of the catalog, random inputs, georax vs spyndex.computeIndex."""
    rng = np.random.default_rng(42)
    shape = (4, 5)
    names = sorted(catalog())
    assert len(names) == len(spyndex.indices)
    checked = 0
    for name in names:
        symbols = Formula(catalog()[name]).variables
        bands, consts = _catalog_inputs(symbols, rng, shape)
        order = sorted(bands)
        x = np.stack([bands[s] for s in order]) if order else np.zeros((1, *shape), np.float32)
        op = SpectralIndex(name, band_map={s: i for i, s in enumerate(order)}, constants=consts)
        ours = np.asarray(op(x))[0]
        params = {s: bands[s].astype(np.float64) for s in order}
        params.update(consts)
        # spyndex.computeIndex wants every constant passed; give it spyndex's own defaults
        for s in symbols - set(params):
            params[s] = spyndex.constants[s].default
        with np.errstate(all="ignore"):
            ref = np.broadcast_to(np.asarray(spyndex.computeIndex(name, params=params)), shape)
        finite = np.isfinite(ref) & (np.abs(ref) < 1e6)
        assert (np.isfinite(ours) == np.isfinite(ref)).all() or not finite.all(), name
        np.testing.assert_allclose(ours[finite], ref[finite], rtol=2e-3, atol=1e-5, err_msg=name)
        checked += 1
    assert checked == len(spyndex.indices)


def test_out_of_the_box_support_count() -> None:
    """Indices computable from the S2 band layout and spyndex default constants alone."""
    ok = 0
    for name in catalog():
        try:
            SpectralIndex(name)
            ok += 1
        except ConfigError as e:
            assert "needs" in str(e)
    assert 0 < ok < len(catalog())


def test_spectral_index_errors() -> None:
    with pytest.raises(ConfigError, match="did you mean 'NDVI'"):
        SpectralIndex("ndvi")
    with pytest.raises(ConfigError, match="lambdaN"):
        SpectralIndex("NIRv") if "lambdaN" in catalog()["NIRv"] else SpectralIndex("NDGI")
    with pytest.raises(ShapeError):
        SpectralIndex("NDVI")(np.zeros((3, 4, 4), np.float32))


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('true')",
        "N.real",
        "N[0]",
        "N if R else B",
        "(lambda: 1)()",
        "N < R",
        "'a' + N",
        "open('f')",
        "sqrt(x=N)",
        "_secret + 1",
    ],
)
def test_formula_compiler_refuses_non_arithmetic(text) -> None:
    with pytest.raises(FormulaError):
        Formula(text)


def test_formula_functions_and_values() -> None:
    f = Formula("sqrt(abs(N - R)) ** 2 + -B")
    assert f.variables == {"N", "R", "B"}
    out = f({"N": jnp.float32(0.5), "R": jnp.float32(0.1), "B": jnp.float32(0.2)})
    assert float(out) == pytest.approx(0.4 - 0.2, rel=1e-6)


def test_geotensor_jit_vmap_grad() -> None:
    x = _bands(2)
    gt = GeoTensor(x, Affine(10, 0, 0, 0, -10, 0), "EPSG:32630", None, tuple("ABCDEF"))
    for op in [NDVI(), EVI(), SpectralIndex("GNDVI")]:
        out = jax.jit(op)(gt)
        assert isinstance(out, GeoTensor) and out.crs == gt.crs
        assert out.band_names == (op.index if isinstance(op, SpectralIndex) else type(op).__name__,)
    batch = jnp.asarray(np.stack([_bands(s) for s in range(3)]))
    np.testing.assert_allclose(jax.vmap(NDVI())(batch), NDVI()(batch), rtol=1e-6)
    small = jnp.asarray(_bands(3, shape=(6, 2, 2)))
    check_grads(lambda v: NDVI()(v), (small,), order=2, eps=1e-2, atol=1e-2, rtol=1e-2)
    check_grads(
        lambda v: SpectralIndex("EVI")(v), (small,), order=1, eps=1e-2, atol=1e-2, rtol=1e-2
    )
    g = jax.grad(lambda o: jnp.sum(o(x)))(SAVI())
    assert jnp.isfinite(g.l) and g.l != 0


@pytest.mark.parametrize(
    "op",
    [
        NDVI(red_band=2, nir_band=3),
        NDWI(green_band=1, nir_band=3),
        NBR(),
        EVI(g=2.0),
        SAVI(l=0.25),
        NormalizedDifference(a_band=3, b_band=4, label="X"),
        SpectralIndex("EVI", band_map={"B": 0, "R": 2, "N": 3}, constants={"L": 0.5}),
    ],
)
def test_round_trip(op) -> None:
    assert_rebuilds(op)


ALL_INDICES = [
    NDVI(),
    NDWI(),
    NBR(),
    EVI(),
    SAVI(),
    NormalizedDifference(a_band=3, b_band=4, label="X"),
    SpectralIndex("GNDVI"),
]


@pytest.mark.parametrize("op", ALL_INDICES, ids=lambda o: type(o).__name__)
def test_indices_run_on_chips_and_stitch_to_the_scene(op) -> None:
    """issue 9 item 4: index -> Stitch on chips equals the index on the scene."""
    x = _bands(4, shape=(6, 20, 22))
    x[2, 5:9, 3:7] = np.nan  # missing pixels travel through chips like through the scene
    names = ("B02", "B03", "B04", "B08", "B11", "B12")
    scene = GeoTensor(x, Affine(10, 0, 5e5, 0, -10, 4e6), "EPSG:32630", None, names)
    assert_stitches_to_scene(op, scene)


@pytest.mark.parametrize("op", ALL_INDICES, ids=lambda o: type(o).__name__)
def test_indices_refuse_complex_input_and_report_one_band(op) -> None:
    with pytest.raises(DataError, match="got complex"):
        op(jnp.ones((6, 4, 4), jnp.complex64))
    assert op.precheck((2, 6, 32, 32), SANDBOX_LIMITS) == (2, 1, 32, 32)


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: EVI(g=float("nan")), "g"),
        (lambda: EVI(c1=float("inf")), "c1"),
        (lambda: SAVI(l=float("nan")), "l"),
        (lambda: NDWI(green_band=1.0), "green_band"),
        (lambda: NBR(swir2_band=None), "swir2_band"),
        (lambda: SpectralIndex("EVI", constants={"L": float("nan")}), "constants"),
        (lambda: SpectralIndex("NDVI", band_map={"R": True, "N": 3}), "band_map"),
        (lambda: SpectralIndex(["NDVI"]), "index"),
    ],
)
def test_nonsense_index_config_is_refused_naming_the_field(make, field) -> None:
    with pytest.raises(ConfigError) as e:
        make()
    assert e.value.field == field
