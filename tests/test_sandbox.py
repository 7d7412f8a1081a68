"""The sandboxed loader: hostile corpus, allow-list, limits, variables and the memory budget."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml

import config_test_ops as tops
import georax as gx
from georax.core import (
    AbstractTargetError,
    ConfigError,
    GraphError,
    Operator,
    SerializationError,
    UntrustedTargetError,
)
from georax.core.budget import BudgetExceededError, check_budget, parse_bytes, price
from georax.core.config import MissingVariableError, ParamsRequiredError, from_config
from georax.core.registry import public_operators
from georax.core.sandbox import (
    SANDBOX_LIMITS,
    Limits,
    MalformedYAMLError,
    SandboxLimitError,
    UnsafeYAMLError,
)
from georax.core.yaml_io import dumps_yaml, loads_yaml

CORPUS = Path(__file__).parent / "hostile_yaml"
MANIFEST: dict[str, dict[str, Any]] = yaml.safe_load((CORPUS / "manifest.yaml").read_text())
MARKER = Path("/tmp/georax_hostile_marker")
ERRORS: dict[str, type[Exception]] = {
    e.__name__: e
    for e in (
        AbstractTargetError,
        UntrustedTargetError,
        UnsafeYAMLError,
        MalformedYAMLError,
        SandboxLimitError,
        ConfigError,
        GraphError,
        SerializationError,
        MissingVariableError,
        ParamsRequiredError,
        BudgetExceededError,
    )
}
ALLOWED = public_operators(include_modules=["georax", "config_test_ops"])
# A guard against unbounded work (a billion-laughs expansion takes minutes and gigabytes), not a
# benchmark: every refusal measured here takes milliseconds.
QUICK_S = 2.0


def test_corpus_is_complete() -> None:
    files = {p.name for p in CORPUS.glob("*.yaml")} - {"manifest.yaml"}
    assert files == set(MANIFEST), "every hostile file has a manifest entry and vice versa"
    assert len(files) >= 30
    assert {entry["error"] for entry in MANIFEST.values()} <= set(ERRORS)


def _load(name: str, entry: dict[str, Any]) -> Operator:
    kwargs: dict[str, Any] = {"allowed": ALLOWED, "variables": entry.get("variables")}
    if "input_shape" in entry:
        kwargs["input_spec"] = tuple(entry["input_shape"])
        kwargs["memory_budget"] = entry["budget"]
        kwargs["flop_budget"] = entry.get("flop_budget")
    return loads_yaml((CORPUS / name).read_bytes(), **kwargs)


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_hostile_document_is_refused(name: str, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    entry = MANIFEST[name]
    expected = ERRORS[entry["error"]]
    monkeypatch.chdir(tmp_path)
    MARKER.unlink(missing_ok=True)
    start = time.perf_counter()
    with pytest.raises(expected) as info:
        _load(name, entry)
    elapsed = time.perf_counter() - start
    err = info.value
    assert isinstance(err, gx.errors.GeoraxError)
    assert elapsed < QUICK_S, f"{name} took {elapsed:.2f}s to refuse"
    if "target" in entry:
        assert err.target == entry["target"]  # type: ignore[attr-defined]
        assert entry["target"] in str(err)
    if "field" in entry:
        assert err.field == entry["field"]  # type: ignore[attr-defined]
    if "stage" in entry:
        assert err.stage == entry["stage"]  # type: ignore[attr-defined]
    # no side effect: nothing executed, nothing written
    assert not MARKER.exists()
    assert list(tmp_path.iterdir()) == []


def test_corpus_documents_are_also_refused_by_the_trusted_loader() -> None:
    """Without allowed= the loader is looser about targets, never about safety."""
    for name, entry in MANIFEST.items():
        if entry["error"] in ("UnsafeYAMLError", "MalformedYAMLError"):
            with pytest.raises(ERRORS[entry["error"]]):
                loads_yaml((CORPUS / name).read_bytes())
        if entry.get("target", "").split(".")[0] in ("os", "builtins", "subprocess", "posix"):
            with pytest.raises(UntrustedTargetError, match="not a registered georax operator"):
                loads_yaml((CORPUS / name).read_bytes(), variables=entry.get("variables"))
    assert not MARKER.exists()


def test_safe_submission_loads_and_runs(patient_sandbox: Limits) -> None:
    text = """
_target_: georax.Sequential
operators:
  - {_target_: config_test_ops.Scale, band: 1, gain: 0.5}
  - {_target_: config_test_ops.QC, on_fail: "${qc_policy}"}
  - {_target_: config_test_ops.Clip, lo: 0.0, hi: 1.0}
"""
    pipe = loads_yaml(
        text,
        allowed=ALLOWED,
        variables={"qc_policy": "warn"},
        input_spec=(3, 64, 64),
        memory_budget="16MiB",
        limits=patient_sandbox,
    )
    x = jnp.linspace(-1.0, 4.0, 3 * 64 * 64).reshape(3, 64, 64)
    np.testing.assert_allclose(pipe(x), jnp.clip(x * 0.5, 0.0, 1.0))
    assert pipe.operators[1].on_fail == "warn"


def test_public_operators_allow_list() -> None:
    allowed = public_operators()
    for name in ("georax.Sequential", "georax.Identity", "georax.Graph", "georax.GetItem"):
        assert name in allowed
    assert "georax.core.combinators.Sequential" in allowed  # canonical path too
    for name in ("georax.Lambda", "georax.Tap", "georax.ModelOp"):
        assert name not in allowed
    assert not any(t.startswith("config_test_ops.") for t in allowed)
    with_tests = public_operators(include_modules=["config_test_ops"])
    assert "config_test_ops.Scale" in with_tests
    assert "config_test_ops._Private" not in with_tests
    assert "config_test_ops.HostCallback" not in with_tests
    assert not any(t.startswith("georax.") for t in with_tests)
    fewer = public_operators(
        include_modules=["config_test_ops"], exclude_classes=["Scale", "config_test_ops.Clip"]
    )
    assert "config_test_ops.Scale" not in fewer and "config_test_ops.Clip" not in fewer
    assert "config_test_ops.Lut" in fewer


@pytest.mark.usefixtures("isolated_registry")
def test_user_subclasses_register_themselves() -> None:
    class Brighten(Operator):
        amount: float = gx.core.static(0.1)

        def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
            return x + self.amount

    path = f"{__name__}.test_user_subclasses_register_themselves.<locals>.Brighten"
    assert gx.registry.lookup(path) is Brighten
    assert path in public_operators(include_modules=[__name__])
    op = loads_yaml(dumps_yaml(Brighten(0.25)))
    assert op == Brighten(0.25)


def test_allow_list_is_exact_and_never_imports() -> None:
    only_identity = frozenset({"georax.Identity"})
    assert loads_yaml("{_target_: georax.Identity}", allowed=only_identity) == gx.Identity()
    with pytest.raises(UntrustedTargetError) as e:
        loads_yaml("{_target_: georax.Sequential, operators: []}", allowed=only_identity)
    assert e.value.target == "georax.Sequential"
    # an allow-list naming an unregistered module path still cannot import it
    with pytest.raises(UntrustedTargetError, match="not a registered"):
        loads_yaml("{_target_: json.loads, s: '1'}", allowed={"json.loads"})


def test_from_config_dicts_get_the_same_checks() -> None:
    nested: dict[str, Any] = {"_target_": "georax.Identity"}
    for _ in range(50):
        nested = {"_target_": "georax.Sequential", "operators": [nested]}
    with pytest.raises(SandboxLimitError, match="max_depth"):
        from_config(nested, allowed=ALLOWED, limits=SANDBOX_LIMITS)
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(SandboxLimitError):
        from_config({"_target_": "config_test_ops.Select", "bands": loop}, limits=SANDBOX_LIMITS)
    with pytest.raises(UntrustedTargetError):
        from_config({"_target_": "os.system"}, allowed=ALLOWED)


def test_limits_are_configurable() -> None:
    text = (
        "{_target_: georax.Sequential, operators: ["
        + ", ".join(["{_target_: georax.Identity}"] * 20)
        + "]}"
    )
    assert len(loads_yaml(text, allowed=ALLOWED)) == 20
    with pytest.raises(SandboxLimitError, match="max_operators=10") as e:
        loads_yaml(text, allowed=ALLOWED, limits=Limits(max_operators=10))
    assert (e.value.limit, e.value.maximum) == ("max_operators", 10)
    with pytest.raises(SerializationError, match="max_depth"):
        Limits(max_depth=-1)


def test_variables() -> None:
    text = "{_target_: config_test_ops.QC, on_fail: '${policy}', max_value: '${vmax}'}"
    op = loads_yaml(text, variables={"policy": "raise", "vmax": 7})
    assert op.on_fail == "raise" and op.max_value == 7 and isinstance(op.max_value, int)
    with pytest.raises(MissingVariableError) as e:
        loads_yaml(text, variables={"policy": "warn"})
    assert e.value.name == "vmax" and "max_value" in str(e.value)
    embedded = loads_yaml(
        "{_target_: georax.GetItem, item: 'band_${n}_${name}'}", variables={"n": 3, "name": "red"}
    )
    assert embedded.item == "band_3_red"
    escaped = loads_yaml("{_target_: georax.GetItem, item: '$${literal}'}")
    assert escaped.item == "${literal}"
    with pytest.raises(SerializationError, match="plain YAML values"):
        loads_yaml(text, variables={"policy": object(), "vmax": 1})
    with pytest.raises(ConfigError, match="on_fail"):
        loads_yaml(text, variables={"policy": "explode", "vmax": 1})


# --------------------------------------------------------------------------------------
# Resource budget
# --------------------------------------------------------------------------------------
def test_budget_refuses_a_pipeline_whose_intermediate_would_not_fit() -> None:
    pipe = gx.Sequential([tops.Scale(gain=2.0), tops.SuperResolve(factor=16)])
    spec = (2, 128, 128)  # 128 KiB in and out; a 32 MiB intermediate
    cost = price(pipe, spec)
    assert cost.input_bytes == cost.output_bytes == 2 * 128 * 128 * 4
    assert cost.largest_intermediate_bytes >= 2 * 128 * 128 * 4 * 16 * 16
    assert cost.compiled is not None and cost.peak_bytes >= cost.input_bytes + cost.output_bytes
    with pytest.raises(BudgetExceededError) as e:
        check_budget(pipe, spec, "8MiB")
    assert e.value.stage == "intermediate" and e.value.budget == 8 * 2**20
    assert e.value.required >= 32 * 2**20
    assert "8.00 MiB" in str(e.value) and "float32[2, 128, 128]" in str(e.value)
    assert check_budget(pipe, spec, "256MiB").peak_bytes <= 256 * 2**20
    # the identical pipeline on a small input fits a small budget
    check_budget(pipe, (1, 16, 16), "8MiB")


def test_budget_refuses_huge_inputs_before_tracing() -> None:
    pipe = gx.Sequential([tops.Scale(gain=2.0)])
    start = time.perf_counter()
    with pytest.raises(BudgetExceededError) as e:
        check_budget(pipe, (4, 100_000, 100_000), "1GiB")
    assert e.value.stage == "input"
    assert time.perf_counter() - start < QUICK_S


def test_budget_counts_the_compiled_program() -> None:
    # sorting needs XLA temporaries; the compiled stage sees them
    pipe = tops.SuperResolve(factor=4)
    cost = price(pipe, (1, 64, 64))
    assert cost.compiled["temp"] > 0
    with pytest.raises(BudgetExceededError) as e:
        price(pipe, (1, 64, 64), budget=cost.peak_bytes - 1, compile=True)
    assert e.value.stage in ("intermediate", "compiled")


def test_flop_budget_refuses_compute_bombs() -> None:
    small, huge = tops.BoxBlur(radius=1), tops.BoxBlur(radius=300)
    spec = (1, 128, 128)
    cost_small, cost_huge = price(small, spec), price(huge, spec)
    assert cost_small.flops is not None and cost_huge.flops > 1000 * cost_small.flops
    check_budget(small, spec, "64MiB", flop_budget=1e8)
    with pytest.raises(BudgetExceededError, match="compute budget") as e:
        check_budget(huge, spec, "64MiB", flop_budget=1e8)
    assert e.value.stage == "flops" and e.value.required > 1e8


def test_budget_for_graph_inputs_and_params() -> None:
    a, b = gx.Input("a"), gx.Input("b")
    g = gx.Graph(inputs={"a": a, "b": b}, outputs={"s": tops.Add()(a, b)})
    cost = price(g, {"a": (8, 8), "b": jax.ShapeDtypeStruct((8, 8), jnp.float32)})
    assert cost.input_bytes == 2 * 8 * 8 * 4 and cost.output_bytes == 8 * 8 * 4
    heavy = tops.Kernel(weights=jnp.ones(1_000_000))
    with pytest.raises(BudgetExceededError) as e:
        check_budget(heavy, (4,), "1MiB")
    assert e.value.stage == "params"


def test_budget_errors_are_typed() -> None:
    with pytest.raises(gx.errors.ShapeError, match="cannot run on input"):
        price(tops.BandMix(weights=jnp.eye(3)), (5, 4, 4))
    with pytest.raises(ConfigError, match="not a size"):
        parse_bytes("lots")
    assert parse_bytes("1.5GiB") == int(1.5 * 2**30) and parse_bytes("2GB") == 2 * 10**9
    with pytest.raises(SerializationError, match="input_spec"):
        loads_yaml("{_target_: georax.Identity}", memory_budget="1MiB")


def test_stochastic_pipelines_are_priced_with_a_key() -> None:
    cost = price(gx.Sequential([tops.Noise(sigma=0.1)]), (2, 16, 16))
    assert cost.output_bytes == 2 * 16 * 16 * 4


def test_no_side_effects_from_the_whole_corpus(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    before = set(os.listdir("/tmp"))
    for name, entry in MANIFEST.items():
        with pytest.raises(gx.errors.GeoraxError):
            _load(name, entry)
    assert not MARKER.exists()
    assert list(tmp_path.iterdir()) == []
    new = {n for n in set(os.listdir("/tmp")) - before if "georax" in n}
    assert not new
