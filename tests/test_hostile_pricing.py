"""Hostile input, causes 1-3: pricing is bounded in time and memory, and only georax errors escape.

Each test asserts the mechanism (which stage refused, that nothing was traced, that the watchdog
fired) rather than a timing; the wall-clock caps below are generous guards against a hang.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import pytest

import config_test_ops as tops
import georax as gx
from georax.core.budget import check_budget, precheck, price
from georax.core.deadline import deadline
from georax.core.errors import (
    AbstractTargetError,
    BudgetExceededError,
    GeoraxError,
    LoaderError,
    PricingTimeoutError,
    ShapeError,
)
from georax.core.operator import config_field_names
from georax.core.registry import public_operators
from georax.core.sandbox import SANDBOX_LIMITS, Limits, SandboxLimitError
from georax.core.yaml_io import loads_yaml

ALLOWED = public_operators(include_modules=["georax", "config_test_ops"])
PRICED: dict[str, Any] = {
    "allowed": ALLOWED,
    "input_spec": (1, 512, 512),
    "memory_budget": "256MiB",
    "flop_budget": 1e12,
}
CAP_S = 2.0  # a hang guard, not a benchmark


@pytest.fixture(autouse=True)
def _clear_traced() -> None:
    tops.TRACED.clear()


# --------------------------------------------------------------------------------------
# Cause 1: pricing has a bound on time
# --------------------------------------------------------------------------------------
def test_the_issue_reproducer_is_refused_fast() -> None:
    """LeeSpeckle with a window of 10**9 + 1 pixels never returned; now a typed error at once."""
    lee = gx.registry.lookup("georax.geo.sar.LeeSpeckle")
    field = "window_size" if "window_size" in config_field_names(lee) else "window"
    start = time.perf_counter()
    with pytest.raises(GeoraxError) as e:
        loads_yaml(f"{{_target_: georax.geo.sar.LeeSpeckle, {field}: 1000000001}}", **PRICED)
    assert time.perf_counter() - start < CAP_S
    assert isinstance(e.value, BudgetExceededError) and e.value.stage == "precheck"
    assert field in str(e.value)


def test_static_sizes_are_bounded_before_anything_is_traced(patient_sandbox: Limits) -> None:
    with pytest.raises(BudgetExceededError) as e:
        loads_yaml("{_target_: config_test_ops.PadBy, size: 70000}", **PRICED)
    assert e.value.stage == "precheck" and e.value.budget == SANDBOX_LIMITS.max_extent
    assert "PadBy.size=70000" in str(e.value)
    assert tops.TRACED == []  # refused from the config alone
    # within the bound the same operator prices normally (and is traced)
    loads_yaml("{_target_: config_test_ops.PadBy, size: 7}", **PRICED, limits=patient_sandbox)
    assert tops.TRACED and set(tops.TRACED) == {"PadBy"}


def test_sizes_are_bounded_before_a_hand_written_init_allocates() -> None:
    # Lut's __init__ builds an n-entry table before any __check_init__ could refuse n.
    with pytest.raises(BudgetExceededError) as e:
        loads_yaml("{_target_: config_test_ops.Lut, n: 1000000000}", allowed=ALLOWED)
    assert e.value.stage == "precheck" and "Lut.n=1000000000" in str(e.value)
    assert loads_yaml("{_target_: config_test_ops.Lut, n: 8}", allowed=ALLOWED).table.shape == (8,)


def test_a_hard_wall_clock_limit_interrupts_tracing() -> None:
    limits = Limits(max_seconds=0.5)
    pipe = tops.SpinAtTrace(turns=10**12)  # an unbounded int: only the clock stops it
    start = time.perf_counter()
    with pytest.raises(PricingTimeoutError) as e:
        price(pipe, (1, 8, 8), limits=limits)
    elapsed = time.perf_counter() - start
    assert e.value.stage == "time" and e.value.budget == 500 and e.value.required >= 500
    assert tops.TRACED == ["SpinAtTrace"]  # it was interrupted in the middle of the trace
    assert elapsed < 0.5 + CAP_S
    # the process is unharmed: the next pricing runs normally, and no late exception arrives
    assert price(tops.SpinAtTrace(turns=3), (1, 8, 8), limits=limits).output_bytes == 256
    time.sleep(0.7)


def test_a_deadline_never_fires_after_its_body_finished() -> None:
    with deadline(0.2, "quick work"):
        total = sum(range(1000))
    time.sleep(0.4)  # an exception scheduled late would surface here
    assert total == 499500


def test_nested_deadlines_each_catch_their_own() -> None:
    with (
        pytest.raises(PricingTimeoutError, match="inner"),
        deadline(5.0, "outer"),
        deadline(0.2, "inner"),
    ):
        while True:
            pass


def test_the_traced_program_size_is_bounded_before_compiling() -> None:
    limits = Limits(max_trace_steps=500)
    with pytest.raises(BudgetExceededError) as e:
        price(tops.UnrollAtTrace(steps=2000), (4,), limits=limits)
    assert e.value.stage == "trace" and e.value.required >= 2000 and e.value.budget == 500
    assert price(tops.UnrollAtTrace(steps=100), (4,), limits=limits).operations >= 100


def test_graph_nodes_reusing_one_operator_count_at_every_use() -> None:
    x = gx.Input("x")
    step = tops.Scale(gain=1.0)
    node = x
    for _ in range(300):
        node = step(node)
    g = gx.Graph(inputs={"x": x}, outputs={"y": node})
    assert len(g.operators) == 1 and len(g.nodes) == 300
    with pytest.raises(SandboxLimitError) as e:
        precheck(g, (1, 8, 8), SANDBOX_LIMITS)
    assert e.value.limit == "max_operators" and e.value.maximum == SANDBOX_LIMITS.max_operators
    text = gx.dumps_yaml(g)
    with pytest.raises(SandboxLimitError, match="max_operators"):
        loads_yaml(text, **PRICED)
    # nesting multiplies: a graph of 20 uses of a graph of 20 uses is 400 applications
    inner_in = gx.Input("v")
    inner_node = inner_in
    for _ in range(20):
        inner_node = step(inner_node)
    inner = gx.Graph(inputs={"v": inner_in}, outputs={"o": inner_node})
    outer_node = x
    for _ in range(20):
        outer_node = inner(outer_node)["o"]
    outer = gx.Graph(inputs={"x": x}, outputs={"y": outer_node})
    with pytest.raises(SandboxLimitError, match="max_operators"):
        precheck(outer, (1, 8, 8), SANDBOX_LIMITS)
    assert precheck(outer, (1, 8, 8), Limits()) == {"y": (1, 8, 8)}


# --------------------------------------------------------------------------------------
# Cause 2: host memory the budget never saw
# --------------------------------------------------------------------------------------
def test_constants_baked_into_the_program_are_priced() -> None:
    n = 1024  # a 4 MiB host table built at trace time
    cost = price(tops.BakedTable(n=n), (1, 8, 8))
    assert n * n * 4 <= cost.constant_bytes < 2 * n * n * 4  # counted, and counted once
    assert cost.peak_bytes >= n * n * 4
    with pytest.raises(BudgetExceededError) as e:
        check_budget(tops.BakedTable(n=n), (1, 8, 8), "2MiB")
    assert e.value.stage == "constants"
    with pytest.raises(BudgetExceededError) as e:
        price(tops.BakedTable(n=n), (1, 8, 8), limits=Limits(max_host_bytes=2**20))
    assert e.value.stage == "constants" and e.value.budget == 2**20


# --------------------------------------------------------------------------------------
# Cause 3: only georax errors leave the sandboxed loader
# --------------------------------------------------------------------------------------
def test_abstract_bases_are_refused_by_name() -> None:
    with pytest.raises(AbstractTargetError) as e:
        loads_yaml("{_target_: georax.array.qc.QCOperator}", **PRICED)
    assert e.value.target == "georax.array.qc.QCOperator"
    assert "AssertNoNaN" in str(e.value)  # the concrete choices are named


def test_a_message_less_exception_is_a_typed_error() -> None:
    with pytest.raises(ShapeError) as e:
        loads_yaml("{_target_: config_test_ops.Silent}", **PRICED)
    assert "ValueError" in str(e.value) and "stage: trace" in str(e.value)


def test_a_buggy_precheck_is_wrapped_naming_the_stage() -> None:
    with pytest.raises(LoaderError) as e:
        loads_yaml("{_target_: config_test_ops.BrokenPrecheck}", **PRICED)
    assert e.value.stage == "precheck" and isinstance(e.value.__cause__, KeyError)


def test_nothing_but_georax_errors_escape_the_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("library bug")

    monkeypatch.setattr("georax.core.yaml_io.parse_yaml", boom)
    with pytest.raises(LoaderError, match="stage: parse"):
        loads_yaml("{_target_: georax.Identity}", allowed=ALLOWED)


def test_bad_budgets_are_refused_not_ignored() -> None:
    for flops in (float("nan"), float("inf"), -1.0, "lots"):
        with pytest.raises(gx.errors.ConfigError, match="FLOPs"):
            loads_yaml("{_target_: georax.Identity}", **{**PRICED, "flop_budget": flops})
    with pytest.raises(gx.errors.ConfigError, match="dtype"):
        price(gx.Identity(), (4,), dtype="notadtype")


def test_an_honest_pipeline_still_prices_and_runs(patient_sandbox: Limits) -> None:
    text = """
_target_: georax.Sequential
operators:
  - {_target_: config_test_ops.Scale, gain: 2.0}
  - {_target_: config_test_ops.BoxBlur, radius: 2}
  - {_target_: config_test_ops.Noise, sigma: 0.1}
"""
    pipe = loads_yaml(text, **PRICED, limits=patient_sandbox)
    out = jax.jit(pipe)(jnp.ones((1, 512, 512)), key=jax.random.key(0))
    assert out.shape == (1, 512, 512)
