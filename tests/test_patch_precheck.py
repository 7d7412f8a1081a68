"""Hostile patch configs (issue 16, causes 1, 2 and 9): priced before tracing, cheap to trace,
no chip-squared host memory, and typed errors naming the problem.

Each test asserts the mechanism that bounds the cost (equations in a jaxpr, traces of the inner
operator, bytes traced by tracemalloc, constants in the compiled program), not a wall clock.
"""

from __future__ import annotations

import dataclasses
import re
import time
import tracemalloc
from typing import Any

import jax
import jax.extend.core as jex
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import georax as gx
from georax.core.sandbox import DEFAULT_LIMITS, SANDBOX_LIMITS, Limits
from georax.errors import BudgetExceededError, GeoraxError, ShapeError
from georax.patch import (
    ApplyToChips,
    ChipsShape,
    GridSampler,
    Hann,
    Patcher,
    Patchwise,
    RandomPositions,
    Rectangular,
    RegularStride,
    Stitch,
    grid_normaliser,
    pad_scene,
    regular_starts,
    source_index,
)
from georax.patch.stitch import axis_weight_sum


class _LimitsProbe(gx.Operator):
    """Identity whose precheck records the limits a container hands it."""

    seen: list = dataclasses.field(default_factory=list, compare=False, hash=False)

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        return x

    def precheck(self, shape: tuple[int, ...], limits: Limits) -> tuple[int, ...]:
        self.seen.append((tuple(shape), limits.max_trace_steps))
        return shape


# ------------------------------------------------------------- cause 1: pricing time bounded
def test_containers_price_the_inner_operator_on_the_chip_with_divided_trace_steps() -> None:
    x = (3, 40, 36)
    p = Patcher.regular(16, 12, window="hann")  # 3 x 3 = 9 chips
    probe = _LimitsProbe()
    limits = dataclasses.replace(SANDBOX_LIMITS, max_trace_steps=1200)
    assert Patchwise(p, probe, batch_size=5).precheck(x, limits) == x
    assert probe.seen[-1] == ((3, 16, 16), 1200 // 2)  # 2 unrolled batches
    chips = GridSampler(p).precheck(x, limits)
    assert isinstance(chips, ChipsShape) and chips == (9, 3, 16, 16) and chips.scene == (40, 36)
    mapped = ApplyToChips(probe, batch_size=4).precheck(chips, limits)
    assert probe.seen[-1] == ((3, 16, 16), 1200 // 3)  # 3 unrolled batches
    assert Stitch().precheck(mapped, limits) == x
    # the precheck bound is the traced output shape
    seq = gx.Sequential([GridSampler(p), ApplyToChips(gx.Identity(), 4), Stitch()])
    assert jax.eval_shape(seq, jax.ShapeDtypeStruct(x, jnp.float32)).shape == x


def test_too_many_unrolled_batches_are_refused_naming_batch_size() -> None:
    p = Patcher.regular(4, 2)  # 19 x 19 = 361 chips on 40 x 40
    limits = dataclasses.replace(SANDBOX_LIMITS, max_trace_steps=100)
    Patchwise(p, gx.Identity(), batch_size=4).precheck((1, 40, 40), limits)  # 91 steps: fine
    with pytest.raises(BudgetExceededError, match=r"Patchwise\.batch_size.*trace steps"):
        Patchwise(p, gx.Identity(), batch_size=3).precheck((1, 40, 40), limits)  # 121
    # past MAX_UNROLLED_BATCHES the loop is a scan: traced once, whatever the chip count
    Patchwise(p, gx.Identity(), batch_size=1).precheck((1, 40, 40), limits)


def test_nested_patching_multiplies_into_one_bounded_total() -> None:
    inner = Patchwise(Patcher.regular(4, 2), _LimitsProbe(), batch_size=2)  # 49 chips, 25 steps
    outer = Patchwise(Patcher.regular(16, 8), inner, batch_size=1)  # 49 chips, a scan
    limits = dataclasses.replace(SANDBOX_LIMITS, max_trace_steps=100)
    assert outer.precheck((1, 64, 64), limits) == (1, 64, 64)
    assert inner.operator.seen[-1] == ((1, 4, 4), 100 // 25)
    with pytest.raises(BudgetExceededError, match=r"Patchwise\.batch_size"):
        outer.precheck((1, 64, 64), dataclasses.replace(limits, max_trace_steps=24))


def test_nested_patching_unrolls_one_level_only() -> None:
    traces = []

    def count(c: jax.Array) -> jax.Array:
        traces.append(1)  # runs once per trace of the innermost operator
        return c

    inner = Patchwise(Patcher.regular(4, 4), gx.Lambda(count), batch_size=1)  # 16 batches
    outer = Patchwise(Patcher.regular(16, 16), inner, batch_size=1)  # 16 batches
    x = jnp.arange(64 * 64, dtype=jnp.float32).reshape(1, 64, 64)
    jaxpr = jax.make_jaxpr(outer)(x)
    # both levels unrolled would trace the innermost operator 16 x 16 = 256 times
    assert 16 <= len(traces) <= 4 * 16, len(traces)
    np.testing.assert_array_equal(jax.core.eval_jaxpr(jaxpr.jaxpr, jaxpr.consts, x)[0], x)


def _count_eqns(jaxpr: jex.Jaxpr) -> int:
    """Equations of ``jaxpr`` including those of nested sub-programs (jit, scan, cond...)."""
    n = 0
    for eqn in jaxpr.eqns:
        n += 1
        for value in eqn.params.values():
            for sub in value if isinstance(value, list | tuple) else (value,):
                if isinstance(sub, jex.ClosedJaxpr):
                    n += _count_eqns(sub.jaxpr)
                elif isinstance(sub, jex.Jaxpr):
                    n += _count_eqns(sub)
    return n


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_reflect_padding_wider_than_the_axis_traces_in_constant_size(n: int) -> None:
    x = jnp.arange(2.0 * n * 5).reshape(2, n, 5)

    def eqns(pad: int) -> int:
        jaxpr = jax.make_jaxpr(lambda v: pad_scene(v, ((pad, pad), (pad, 1)), "reflect"))(x)
        return _count_eqns(jaxpr.jaxpr)

    # jnp.pad in reflect mode adds n - 1 pixels per traced pass: 3000 / (n - 1) passes
    assert eqns(3000) <= eqns(40) <= 32  # jnp.pad: 15009 equations for 3000 on n = 3
    got = pad_scene(x, ((40, 33), (9, 1)), "reflect")
    rows = np.pad(np.asarray(x), ((0, 0), (40, 33), (0, 0)), mode="reflect" if n > 1 else "edge")
    np.testing.assert_array_equal(got, np.pad(rows, ((0, 0), (0, 0), (9, 1)), mode="reflect"))


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 9),
    st.integers(0, 40),
    st.integers(0, 40),
    st.sampled_from(["reflect", "edge", "constant"]),
)
def test_source_index_is_numpy_pad_in_closed_form(
    n: int, before: int, after: int, mode: str
) -> None:
    idx = source_index(n, (before, after), mode)
    if mode == "constant":
        want = np.pad(np.arange(n), (before, after), constant_values=-1)
    else:
        want = np.pad(np.arange(n), (before, after), mode="edge" if n == 1 else mode)
    np.testing.assert_array_equal(idx, want)


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 30), st.integers(1, 40), st.integers(0, 60), st.integers(0, 2**16))
def test_axis_weight_sum_closed_form_equals_the_loop(
    chip: int, stride: int, extra: int, seed: int
) -> None:
    length = chip + extra
    w = np.random.default_rng(seed).uniform(1e-6, 1.0, chip)
    starts = regular_starts(length, chip, stride)
    loop = np.zeros(length)
    for s in starts:
        loop[s : s + chip] += w
    got = axis_weight_sum(length, tuple(starts.tolist()), w)
    np.testing.assert_allclose(got, loop, rtol=1e-9, atol=1e-12)
    if stride <= chip:  # covered: the normaliser is the reciprocal
        inv, _ = grid_normaliser(
            (length, 1), (chip, 1), (tuple(starts.tolist()), (0,)), (w, np.ones(1))
        )
        np.testing.assert_allclose(inv, (1.0 / loop).astype(np.float32), rtol=1e-6)


def test_grid_normaliser_does_not_loop_over_chip_starts() -> None:
    # stride 1 on a 2**20 axis with 2**14-pixel chips: the per-start loop did 2**34 additions
    # (minutes); the closed form is a few vectorised passes over the axis. Hostile-input bound:
    # a generous wall-clock cap, ~100x the closed form's time on a loaded 2-core machine.
    n, c = 2**20, 2**14
    starts = tuple(regular_starts(n, c, 1).tolist())
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        inv, _ = grid_normaliser((n, 1), (c, 1), (starts, (0,)), (np.ones(c), np.ones(1)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - t0 < 5.0
    assert (
        inv[0] == 1.0
        and inv[c - 1] == pytest.approx(1.0 / c)
        and inv[n // 2] == pytest.approx(1 / c)
    )
    assert peak < 64 * n * 8  # a few vectors of the axis length


# ------------------------------------------------------------ cause 2: host memory bounded
def test_huge_chip_is_traced_without_chip_squared_host_arrays() -> None:
    # the reproducer: size [8192, 8192] on 512 x 512 built 512 MiB of float64 weights
    op = Patchwise(Patcher(Rectangular(8192), RegularStride(8192), Hann()), gx.Identity(), 8)
    assert op.precheck((1, 512, 512), SANDBOX_LIMITS) == (1, 512, 512)
    tracemalloc.start()
    try:
        jax.eval_shape(op, jax.ShapeDtypeStruct((1, 512, 512), jnp.float32))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 * 2**20, peak


@pytest.mark.parametrize("three_step", [False, True], ids=["Patchwise", "GridSampler-Stitch"])
def test_compiled_program_embeds_1d_windows_only(three_step: bool) -> None:
    p = Patcher(Rectangular(96), RandomPositions(3), Hann())
    op = gx.Sequential([GridSampler(p), Stitch()]) if three_step else Patchwise(p, gx.Identity(), 2)
    x = jnp.ones((1, 200, 200))
    text = jax.jit(lambda v, k: op(v, key=k)).lower(x, jax.random.key(0)).compile().as_text()
    assert not re.search(r"f32\[96,96\]\{[^}]*\} constant\(", text)
    assert re.search(r"f32\[96\]\{[^}]*\} constant\(", text)  # the 1-D window is there


def test_layout_over_the_host_budget_is_refused_before_anything_is_built() -> None:
    op = Patchwise(Patcher.regular(8, 1), gx.Identity(), 4096)  # stride 1: ~1.04e6 chips
    limits = dataclasses.replace(SANDBOX_LIMITS, max_host_bytes=2**24)
    with pytest.raises(BudgetExceededError, match=r"Patchwise\.patcher\.sampler") as e:
        op.precheck((1, 1024, 1024), limits)
    assert e.value.stage == "precheck" and e.value.required > 2**24
    op.precheck((1, 1024, 1024), dataclasses.replace(limits, max_host_bytes=2**27))


@pytest.mark.parametrize(
    ("patcher", "field"),
    [
        (Patcher(Rectangular(70_000), RegularStride(8)), "geometry.size"),
        (Patcher(Rectangular(8), RegularStride(70_000)), "sampler.stride"),
        (Patcher(Rectangular(8), RegularStride(8), margin=70_000), "margin"),
    ],
    ids=["chip", "stride", "margin"],
)
def test_extents_over_the_limit_are_refused_naming_the_field(patcher: Patcher, field: str) -> None:
    for op, who in (
        (Patchwise(patcher, gx.Identity()), "Patchwise.patcher"),
        (GridSampler(patcher), "GridSampler.patcher"),
    ):
        # Named through the container, or by the generic static-int bound on the Patcher.
        name = rf"({re.escape(who)}|Patcher)\.{re.escape(field)}"
        with pytest.raises(BudgetExceededError, match=rf"{name}.*pixels") as e:
            op.precheck((1, 64, 64), SANDBOX_LIMITS)
        assert e.value.unit == "pixels" and e.value.budget == SANDBOX_LIMITS.max_extent


# ------------------------------------------------------------- cause 9: typed errors
EMPTY_OR_1D = r"empty|at least 2 axes"


@pytest.mark.parametrize("shape", [(0,), (7,), (0, 4, 4), (3, 0, 5), (2, 6, 0)])
def test_empty_and_1d_inputs_are_shape_errors_everywhere(shape: tuple[int, ...]) -> None:
    p = Patcher.regular(4, 2, window="hann")
    x = jnp.zeros(shape)
    ops = [
        Patchwise(p, gx.Identity()),
        GridSampler(p),
        gx.Sequential([GridSampler(p), ApplyToChips(gx.Identity()), Stitch()]),
    ]
    for op in ops:
        with pytest.raises(ShapeError, match=EMPTY_OR_1D):
            op(x)
        with pytest.raises(ShapeError, match=EMPTY_OR_1D):
            jax.jit(op)(x)
    for op in ops[:2]:
        with pytest.raises(ShapeError, match=EMPTY_OR_1D):
            op.precheck(shape, SANDBOX_LIMITS)
    if len(shape) < 2:
        with pytest.raises(ShapeError, match="at least 2 axes"):
            Hann()(x)


def test_chip_larger_than_allowed_is_a_typed_error_at_run_time_too() -> None:
    too_big = DEFAULT_LIMITS.max_extent + 1
    op = Patchwise(Patcher(Rectangular(too_big), RegularStride(1)), gx.Identity())
    with pytest.raises(BudgetExceededError, match=r"geometry\.size.*pixels"):
        op(jnp.zeros((1, 4, 4)))  # refused before a 2**20-pixel canvas is padded or traced
    with pytest.raises(GeoraxError, match=r"geometry\.size"):
        GridSampler(op.patcher)(jnp.zeros((1, 4, 4)))


def test_stitch_precheck_needs_chips() -> None:
    with pytest.raises(ShapeError, match="Chips"):
        Stitch().precheck((1, 16, 16), SANDBOX_LIMITS)
    with pytest.raises(ShapeError, match="Chips"):
        ApplyToChips(gx.Identity()).precheck((16, 16), SANDBOX_LIMITS)
