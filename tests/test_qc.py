"""QC operators: each policy (raise / warn / off) eagerly and under jit, vmap and grad; what the
caller actually receives from compiled code; geo checks; config round trips."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from affine import Affine
from pyproj import CRS

import georax as gx
from georax.array import qc
from georax.core.yaml_io import dumps_yaml, loads_yaml
from georax.errors import ConfigError
from georax.geo import qa
from georax.tensor import GeoTensorRequiredError

T = Affine(10, 0, 400_000, 0, -10, 4_600_000)


def geo(values, fill=None, names=None, crs="EPSG:32630", transform=T) -> gx.GeoTensor:
    return gx.GeoTensor(jnp.asarray(values), transform, crs, fill, names)


GOOD = jnp.array([[[10.0, 50.0], [200.0, 1000.0]]])
BAD = jnp.array([[[10.0, 50.0], [200.0, 99_999.0]]])

VALUE_CASES = [
    (qc.AssertValueRange, {"vmin": 0, "vmax": 10_000}, GOOD, BAD, "99999"),
    (qc.AssertValidFraction, {"min_valid": 0.75}, GOOD, GOOD.at[0, 0].set(jnp.nan), "50.00%"),
    (qc.AssertNoNaN, {}, GOOD, GOOD.at[0, 1, 1].set(jnp.nan), r"1 NaN value\(s\) of 4"),
]
ALL_QC = [
    qc.AssertValueRange(vmin=0),
    qc.AssertValidFraction(),
    qc.AssertNoNaN(),
    qc.AssertShape((-1, 2)),
    qc.AssertDType("floating"),
    qc.AssertHasAttribute("crs"),
    qa.AssertCRSEquals("EPSG:32630"),
    qa.AssertResolutionWithin((9.5, 10.5)),
    qa.AssertSchema(["B02"]),
]


def _jaxpr_has_callback(fn, x) -> bool:
    return "callback" in str(jax.make_jaxpr(fn)(x))


# ----------------------------------------------------------------------------- config
@pytest.mark.parametrize("op", ALL_QC, ids=lambda o: type(o).__name__)
def test_on_fail_must_be_one_of_three(op) -> None:
    cfg = op.config_fields()
    assert type(op)(**cfg) == op
    for bad in ("Raise", "error", None, 1):  # the field type check (a Literal) refuses them
        with pytest.raises(
            ConfigError, match=r"\.on_fail=.*wrong type: expected Literal\['raise', 'warn', 'off'\]"
        ):
            type(op)(**{**cfg, "on_fail": bad})


def test_threshold_validation_names_the_field() -> None:
    with pytest.raises(ConfigError, match="vmax"):
        qc.AssertValueRange(vmin=5, vmax=1)
    with pytest.raises(ConfigError, match="vmin"):
        qc.AssertValueRange()
    with pytest.raises(ConfigError, match="min_valid"):
        qc.AssertValidFraction(min_valid=1.5)
    with pytest.raises(ConfigError, match="shape"):
        qc.AssertShape((3, -2))
    with pytest.raises(ConfigError, match="dtype"):
        qc.AssertDType("float99")
    with pytest.raises(ConfigError, match="crs"):
        qa.AssertCRSEquals("EPSG:999999")
    with pytest.raises(ConfigError, match="limits"):
        qa.AssertResolutionWithin((10, 5))


def test_yaml_round_trip_with_policy_variable() -> None:
    pipe = gx.Sequential(ALL_QC)
    text = dumps_yaml(pipe)
    assert loads_yaml(text) == pipe
    templated = text.replace("on_fail: raise", "on_fail: '${qc_policy}'")
    loaded = loads_yaml(templated, variables={"qc_policy": "warn"})
    assert all(op.on_fail == "warn" for op in loaded.operators)
    with pytest.raises(ConfigError, match="on_fail"):
        loads_yaml(templated, variables={"qc_policy": "sometimes"})


# ----------------------------------------------------------------------------- value checks
@pytest.mark.parametrize(("cls", "kw", "good", "bad", "value"), VALUE_CASES)
def test_value_check_passes_silently_and_is_identity(cls, kw, good, bad, value) -> None:
    op = cls(**kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert op(good) is good
        out = jax.block_until_ready(jax.jit(op)(good))
    np.testing.assert_array_equal(out, good)


@pytest.mark.parametrize(("cls", "kw", "good", "bad", "value"), VALUE_CASES)
def test_raise_policy_eager_and_jit(cls, kw, good, bad, value) -> None:
    op = cls(**kw, on_fail="raise")
    name = cls.__name__
    with pytest.raises(qc.QCError, match=f"{name}: .*{value}") as e:
        op(bad)
    assert e.value.check == name and e.value.measured
    # Under jit JAX wraps the host exception: this is what a caller sees ...
    with pytest.raises(jax.errors.JaxRuntimeError, match=f"QCError: {name}: .*{value}"):
        jax.block_until_ready(jax.jit(op)(bad))
    # ... and typed_qc_errors() hands back the original typed error.
    with pytest.raises(qc.QCError, match=f"{name}: .*{value}") as e2, qc.typed_qc_errors():
        jax.block_until_ready(jax.jit(op)(bad))
    assert isinstance(e2.value.__cause__, jax.errors.JaxRuntimeError)


@pytest.mark.parametrize(("cls", "kw", "good", "bad", "value"), VALUE_CASES)
def test_warn_policy_fires_from_compiled_code_every_call(cls, kw, good, bad, value) -> None:
    op = cls(**kw, on_fail="warn")
    f = jax.jit(op)
    for _ in range(2):  # the second call hits the compilation cache and must still warn
        with pytest.warns(qc.QCWarning, match=f"{cls.__name__}: .*{value}"):
            out = jax.block_until_ready(f(bad))
            jax.effects_barrier()
        np.testing.assert_array_equal(out, bad)


@pytest.mark.parametrize(("cls", "kw", "good", "bad", "value"), VALUE_CASES)
def test_off_policy_compiles_nothing(cls, kw, good, bad, value) -> None:
    op = cls(**kw, on_fail="off")
    assert not _jaxpr_has_callback(op, bad)
    assert _jaxpr_has_callback(cls(**kw), bad)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(jax.block_until_ready(jax.jit(op)(bad)), bad)


def test_vmap_reports_the_failing_element() -> None:
    batch = jnp.stack([GOOD, BAD, GOOD])
    op = qc.AssertValueRange(vmin=0, vmax=10_000)
    np.testing.assert_array_equal(
        jax.jit(jax.vmap(op))(jnp.stack([GOOD, GOOD])), jnp.stack([GOOD, GOOD])
    )
    with pytest.raises(qc.QCError, match="99999"), qc.typed_qc_errors():
        jax.block_until_ready(jax.jit(jax.vmap(op))(batch))


def test_grad_flows_through_checks() -> None:
    pipe = gx.Sequential([qc.AssertNoNaN(), qc.AssertValueRange(vmin=-1, vmax=1)])
    g = jax.grad(lambda v: jnp.sum(pipe(v) ** 2))(jnp.array([0.5, -0.25]))
    np.testing.assert_allclose(g, [1.0, -0.5])


def test_geotensor_fill_value_is_excluded() -> None:
    arr = jnp.array([[[0, 0], [300, 400]]], dtype=jnp.uint16)
    gt = geo(arr, fill=0)
    qc.AssertValueRange(vmin=100, vmax=500)(gt)  # the zeros are nodata: passes
    with pytest.raises(qc.QCError, match="values span"):
        qc.AssertValueRange(vmin=100, vmax=500)(arr)  # plain array: zeros count
    with pytest.raises(qc.QCError, match=r"valid fraction 50\.00% below 60\.00%"):
        qc.AssertValidFraction(min_valid=0.6)(gt)
    out = jax.jit(qc.AssertValidFraction(min_valid=0.5))(gt)
    assert isinstance(out, gx.GeoTensor) and out.transform == T and out.fill_value == 0


def test_all_nan_scene_fails_valid_fraction() -> None:
    scene = geo(jnp.full((3, 8, 8), jnp.nan))
    with pytest.raises(qc.QCError, match=r"valid fraction 0\.00% below 50\.00%"):
        qc.AssertValidFraction(min_valid=0.5)(scene)


# ----------------------------------------------------------------------------- static checks
def test_shape_and_dtype_checks() -> None:
    x = jnp.zeros((3, 4, 5), jnp.float32)
    assert qc.AssertShape((-1, -1, -1))(x) is x
    assert qc.AssertShape((3, None, 5))(x) is x
    with pytest.raises(
        qc.QCError, match=r"AssertShape: shape \(3, 4, 5\) does not match \(-1, -1\)"
    ):
        qc.AssertShape((-1, -1))(x)
    assert qc.AssertDType(["uint16", "floating"])(x) is x
    with pytest.raises(qc.QCError, match=r"AssertDType: dtype float32 is not one of \('uint16',\)"):
        qc.AssertDType("uint16")(x)
    with pytest.raises(qc.QCError, match=r"has no .*attribute 'crs'"):
        qc.AssertHasAttribute("crs")(x)
    assert qc.AssertHasAttribute("crs")(geo(x)).crs == "EPSG:32630"


def test_static_checks_under_jit_raise_at_trace_time_and_warn_once_per_compile() -> None:
    x = jnp.zeros((2, 3))
    with pytest.raises(qc.QCError, match="AssertShape"):
        jax.jit(qc.AssertShape((2,)))(x)  # typed: raised while tracing, before running
    f = jax.jit(qc.AssertDType("int8", on_fail="warn"))
    with pytest.warns(qc.QCWarning, match="dtype float32"):
        f(x)
    assert not _jaxpr_has_callback(qc.AssertShape((2,), on_fail="off"), x)


def test_geo_checks() -> None:
    gt = geo(jnp.ones((2, 4, 4)), names=("B04", "B08"))
    wkt = CRS.from_epsg(32630).to_wkt()
    assert qa.AssertCRSEquals(wkt)(gt) is gt  # equal CRSs, different spelling
    with pytest.raises(qc.QCError, match="AssertCRSEquals: CRS is EPSG:32630, expected EPSG:4326"):
        jax.jit(qa.AssertCRSEquals("EPSG:4326"))(gt)
    with pytest.raises(qc.QCError, match="CRS is None"):
        qa.AssertCRSEquals("EPSG:4326")(geo(jnp.ones((4, 4)), crs=None))
    assert qa.AssertResolutionWithin((9.5, 10.5))(gt) is gt
    coarse = gt[..., ::2, ::2]
    with pytest.raises(qc.QCError, match=r"resolution \(20, 20\) outside \[9.5, 10.5\]"):
        qa.AssertResolutionWithin((9.5, 10.5))(coarse)
    assert qa.AssertSchema(["B04", "B08"])(gt) is gt
    assert qa.AssertSchema(["B08"], exact=False)(gt) is gt
    with pytest.raises(qc.QCError, match=r"band names \['B04', 'B08'\] != expected \['B08'\]"):
        qa.AssertSchema(["B08"])(gt)
    with pytest.raises(qc.QCError, match=r"missing band\(s\) \['QA60'\]"):
        qa.AssertSchema(["QA60"], exact=False)(gt)
    with pytest.raises(qc.QCError, match="no band names"):
        qa.AssertSchema(["B04"])(gt.replace(band_names=None))
    with pytest.warns(qc.QCWarning, match="AssertSchema"):
        qa.AssertSchema(["QA60"], on_fail="warn")(gt)


@pytest.mark.parametrize(
    "op",
    [qa.AssertCRSEquals("EPSG:32630"), qa.AssertResolutionWithin((1, 2)), qa.AssertSchema(["a"])],
    ids=lambda o: type(o).__name__,
)
def test_geo_checks_refuse_plain_arrays(op) -> None:
    with pytest.raises(GeoTensorRequiredError, match=f"{type(op).__name__} needs a georax"):
        op(jnp.ones((2, 2)))
    off = type(op)(**{**op.config_fields(), "on_fail": "off"})
    x = jnp.ones((2, 2))
    assert off(x) is x


def test_under_vmap_geo_checks_see_the_static_metadata() -> None:
    batch = geo(jnp.ones((5, 2, 4, 4)), names=None)
    pipe = gx.Sequential([qa.AssertCRSEquals("EPSG:32630"), qc.AssertShape((2, 4, 4))])
    out = jax.jit(jax.vmap(pipe))(batch)
    assert out.shape == (5, 2, 4, 4) and out.transform == T


# ----------------------------------------------------------------------------- contract, hostile
def test_qc_base_is_abstract_and_not_a_yaml_target() -> None:
    with pytest.raises(ConfigError, match="abstract"):
        qc.QCOperator()  # type: ignore[abstract]
    allowed = gx.registry.public_operators()
    assert "georax.array.qc.QCOperator" not in allowed
    assert "georax.array.qc.AssertValueRange" in allowed
    with pytest.raises(gx.errors.UntrustedTargetError):
        gx.loads_yaml("{_target_: georax.array.qc.QCOperator}", allowed=allowed)


def test_thresholds_are_leaves_and_can_be_vmapped() -> None:
    """vmin/vmax and min_valid are array leaves: one program, checked per threshold."""
    op = qc.AssertValueRange(vmin=0, vmax=10_000)
    assert [type(v) for v in jax.tree_util.tree_leaves(op)] == [type(jnp.zeros(()))] * 2
    calls = []

    def run(vmax):
        calls.append(1)
        return qc.AssertValueRange(vmax=vmax, on_fail="warn")(GOOD)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        jax.block_until_ready(jax.jit(jax.vmap(run))(jnp.array([500.0, 5000.0])))
        jax.effects_barrier()
    assert len(calls) == 1  # traced once for both thresholds
    messages = [str(w.message) for w in caught if issubclass(w.category, qc.QCWarning)]
    assert messages == ["AssertValueRange: values span [10, 1000], outside [-inf, 500]"]


def test_nonsense_thresholds_are_refused() -> None:
    with pytest.raises(ConfigError, match="vmin"):
        qc.AssertValueRange(vmin=float("nan"))
    with pytest.raises(ConfigError, match="min_valid"):
        qc.AssertValidFraction(min_valid=float("nan"))
    with pytest.raises(ConfigError, match="fill_value"):
        qc.AssertValueRange(vmin=0, fill_value="zero")
    with pytest.raises(ConfigError, match="band_names"):
        qa.AssertSchema(band_names=[1, 2])


def test_empty_and_complex_inputs() -> None:
    empty = jnp.zeros((3, 0, 0))
    assert qc.AssertValueRange(vmin=0, vmax=1)(empty) is empty  # nothing out of range
    assert float(qc.valid_fraction(empty)) == 0.0
    with pytest.raises(qc.QCError, match=r"valid fraction 0\.00% below 50\.00%"):
        qc.AssertValidFraction()(empty)
    with pytest.raises(gx.errors.DataError, match="complex"):
        qc.AssertValueRange(vmin=0)(jnp.ones((2, 2), jnp.complex64))
    # NaN counting is meaningful for complex values
    assert qc.AssertNoNaN()(jnp.ones((2, 2), jnp.complex64)).dtype == jnp.complex64


def test_checks_run_on_chips() -> None:
    """QC operators are pass-through on any carrier; geo checks read the Chips' scene metadata."""
    from georax.patch import GridSampler, Patcher

    scene = geo(jnp.ones((2, 12, 12)), names=("B04", "B08"))
    chips = GridSampler(Patcher.regular(4))(scene)
    for op in (
        qa.AssertCRSEquals("EPSG:32630"),
        qa.AssertResolutionWithin((9.5, 10.5)),
        qa.AssertSchema(["B04", "B08"]),
        qc.AssertValueRange(vmin=0, vmax=1),
        qc.AssertShape((-1, 2, 4, 4)),
    ):
        assert op(chips) is chips
    with pytest.raises(qc.QCError, match="expected EPSG:4326"):
        qa.AssertCRSEquals("EPSG:4326")(chips)
    with pytest.raises(qc.QCError, match=r"missing band\(s\) \['QA60'\]"):
        qa.AssertSchema(["QA60"], exact=False)(chips)
