"""Price a pipeline before running it, and refuse one that would not fit a budget.

A georax pipeline is a JAX program, so what it will allocate for a given input can be known
without running it (the seeds' case 6 leaves "resource exhaustion" open; this closes it).
:func:`price` works in stages, cheapest first, and :func:`check_budget` refuses at the first stage
that is already over budget, so an absurd request never reaches the compiler:

0. **pre-check** -- :meth:`georax.Operator.precheck` from the config alone, nothing traced:
   static ints of every operator bounded by ``Limits.max_extent``, each operator application
   (a Graph node reusing an operator included) counted against ``Limits.max_operators``, and
   whatever an operator knows of its own cost (windows larger than the scene, chip weights);
1. **input and params** -- bytes of the input spec and of the pipeline's array leaves;
2. **trace** -- :func:`jax.make_jaxpr` of the pipeline on the spec (no FLOP is run): the program
   may hold at most ``Limits.max_trace_steps`` operations (sub-programs included), since XLA's
   compile time grows with it and cannot be interrupted;
3. **constants** -- host arrays an operator built while tracing are baked into the program; they
   count towards ``Limits.max_host_bytes`` and the budget;
4. **output** and **largest intermediate** -- the abstract output, and the largest single value
   in the traced program. XLA may fuse such a value away, but a sandbox should not bet on a
   fusion heuristic: no single value may exceed the budget;
5. **compiled peak** -- ``jax.jit(...).lower(...).compile().memory_analysis()``: arguments +
   outputs + XLA's temporary buffers - aliased bytes + constants, i.e. the buffer assignment of
   the program that would actually run on this backend;
6. optionally **compute** -- the program's ``cost_analysis()`` FLOP count against a
   ``flop_budget``, once on the lowered program (before compiling: a compute bomb never reaches
   XLA's optimiser) and again on the compiled one (loop bodies are counted once, so this bounds
   from below).

All of it runs under a hard wall-clock limit, ``Limits.max_seconds``
(:func:`georax.core.deadline.deadline`), refused with
:class:`~georax.errors.PricingTimeoutError`.

Limitations (documented, not hidden): memory is priced for the backend this process compiles for;
host-side callbacks (``Tap``, I/O) can allocate outside the program; construction-time arrays
(e.g. a LUT sized by a static field) are allocated when the pipeline is built, before pricing --
operators must bound such sizes in ``__check_init__``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any

import equinox as eqx
import jax
import jax.extend.core as jex
import jax.numpy as jnp
import numpy as np

from georax.core.carrier import Carrier
from georax.core.deadline import deadline
from georax.core.errors import (
    BudgetExceededError,
    ConfigError,
    GeoraxError,
    LoaderError,
    ShapeError,
    describe_exception,
    format_bytes,
)
from georax.core.operator import Operator, check_static_extents
from georax.core.sandbox import DEFAULT_LIMITS, Limits

__all__ = [
    "BudgetExceededError",
    "Price",
    "check_budget",
    "format_bytes",
    "input_spec",
    "operators_in",
    "parse_bytes",
    "precheck",
    "price",
]

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_bytes(value: int | float | str) -> int:
    """``512MiB``, ``2GB``, ``1.5 GiB`` or a plain number of bytes -> int bytes.

    **Raises:** `ConfigError` naming the bad value.
    """
    if isinstance(value, bool):
        raise ConfigError("budget", None, value, "is not a size")
    if isinstance(value, int | float):
        if value < 0 or not math.isfinite(value):
            raise ConfigError("budget", None, value, "must be a finite size >= 0")
        return int(value)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(value))
    if m is None or m.group(2).lower() not in _UNITS:
        raise ConfigError(
            "budget", None, value, "is not a size (examples: 536870912, 512MiB, 2GB, 1.5GiB)"
        )
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def parse_flops(value: int | float | str | None) -> float | None:
    """A FLOP budget: a finite number >= 0 (``1e12``), or ``None`` for no budget.

    A NaN budget would silently disable the check (every comparison with NaN is false), so it
    is refused like any other non-number.

    **Raises:** `ConfigError` naming the bad value.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError("flop_budget", None, value, "is not a number of FLOPs")
    try:
        flops = float(value)
    except (TypeError, ValueError):
        raise ConfigError("flop_budget", None, value, "is not a number of FLOPs") from None
    if not math.isfinite(flops) or flops < 0:
        raise ConfigError("flop_budget", None, value, "must be a finite number of FLOPs >= 0")
    return flops


def _nbytes(shape: tuple[int, ...], dtype: Any) -> int:
    try:
        itemsize = np.dtype(dtype).itemsize
    except TypeError:  # PRNG key arrays and other extended dtypes
        itemsize = getattr(dtype, "itemsize", 8)
    return math.prod(shape) * itemsize


def _tree_bytes(tree: Any) -> int:
    return sum(
        _nbytes(tuple(x.shape), x.dtype)
        for x in jax.tree_util.tree_leaves(tree)
        if hasattr(x, "shape") and hasattr(x, "dtype")
    )


def _dtype(dtype: Any) -> Any:
    try:
        return jnp.dtype(dtype)
    except (TypeError, ValueError):
        raise ConfigError("input_spec", "dtype", dtype, "is not a NumPy/JAX dtype name") from None


def input_spec(spec: Any, dtype: Any = "float32") -> Any:
    """Normalise an input description into (a pytree of) :class:`jax.ShapeDtypeStruct`.

    **Arguments:**

    - `spec`: a shape (tuple/list of ints), a ``ShapeDtypeStruct``, an array, a carrier
      (e.g. GeoTensor) or any pytree of those; a dict gives one spec per Graph input.
    - `dtype`: the dtype for bare shapes.

    **Returns:** the same structure with every array replaced by a ``ShapeDtypeStruct``.

    **Raises:** `ShapeError` for a negative dimension, `ConfigError` for an unknown dtype.
    """
    if isinstance(spec, list | tuple) and all(
        isinstance(d, int) and not isinstance(d, bool) for d in spec
    ):
        if any(d < 0 for d in spec):
            raise ShapeError(f"input shape {tuple(spec)} has a negative dimension")
        return jax.ShapeDtypeStruct(tuple(spec), _dtype(dtype))
    if isinstance(spec, Mapping):
        return {k: input_spec(v, dtype) for k, v in spec.items()}

    def to_struct(x: Any) -> Any:
        if isinstance(x, jax.ShapeDtypeStruct):
            return x
        if hasattr(x, "shape") and hasattr(x, "dtype"):
            return jax.ShapeDtypeStruct(tuple(x.shape), x.dtype)
        return x

    return jax.tree_util.tree_map(to_struct, spec)


@dataclasses.dataclass(frozen=True)
class Price:
    """What a pipeline costs for one input spec (bytes; ``None`` where a stage was not reached).

    Attributes:
        input_bytes: the input itself.
        params_bytes: the pipeline's array leaves (weights, LUTs, thresholds).
        output: the abstract output (``ShapeDtypeStruct`` pytree) from the trace.
        output_bytes: bytes of ``output``.
        largest_intermediate_bytes: the largest single value in the traced program.
        constant_bytes: arrays baked into the traced program as constants (host arrays an
            operator builds from its config, e.g. window weights); they live in the compiled
            program too, so they count towards the budget.
        operations: equations in the traced program, sub-programs included.
        compiled: the compiled program's memory analysis, as a dict (argument, output, temp,
            alias and generated-code bytes).
        flops: XLA's cost analysis of the compiled program (floating-point operations). A loop
            body (``lax.map``/``scan``) is counted once, so with loops this is a lower bound.
    """

    input_bytes: int
    params_bytes: int
    output: Any = None
    output_bytes: int | None = None
    largest_intermediate_bytes: int | None = None
    constant_bytes: int | None = None
    operations: int | None = None
    compiled: dict[str, int] | None = None
    flops: float | None = None

    @property
    def peak_bytes(self) -> int:
        """Best estimate of peak memory: the compiled figure if known, else the stages seen.

        Constants are added to the compiled figure: XLA's memory analysis does not count the
        buffers of constants embedded in the program.
        """
        constants = self.constant_bytes or 0
        if self.compiled is not None:
            c = self.compiled
            return c["argument"] + c["output"] + c["temp"] - c["alias"] + constants
        return (
            self.input_bytes
            + self.params_bytes
            + constants
            + (self.output_bytes or 0)
            + (self.largest_intermediate_bytes or 0)
        )

    def __str__(self) -> str:
        rows = [
            ("input", self.input_bytes),
            ("params", self.params_bytes),
            ("constants", self.constant_bytes),
            ("output", self.output_bytes),
            ("largest intermediate", self.largest_intermediate_bytes),
        ]
        if self.compiled is not None:
            rows += [(f"compiled {k}", v) for k, v in self.compiled.items()]
        rows.append(("peak estimate", self.peak_bytes))
        width = max(len(r[0]) for r in rows)
        lines = [f"{name:<{width}}  {'-' if v is None else format_bytes(v)}" for name, v in rows]
        if self.operations is not None:
            lines.append(f"{'operations':<{width}}  {self.operations}")
        if self.flops is not None:
            lines.append(f"{'flops':<{width}}  {self.flops:.3g}")
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class _ProgramStats:
    largest: int  # bytes of the largest value produced
    operations: int  # equations, sub-programs included
    constants: int  # bytes of constants closed over


def _program_stats(closed: Any) -> _ProgramStats:
    """Walk a closed jaxpr and its sub-programs once: largest value, size, constants."""
    largest = operations = constants = 0
    stack: list[Any] = [closed]
    seen: set[int] = set()
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, jex.ClosedJaxpr):
            stack.append(item.jaxpr)  # its consts are the jaxpr's constvars, counted there
            continue
        for var in item.constvars:  # constants closed over by this (sub-)program
            aval = getattr(var, "aval", None)
            if hasattr(aval, "shape"):
                constants += _nbytes(tuple(aval.shape), aval.dtype)
        for eqn in item.eqns:
            operations += 1
            for var in eqn.outvars:
                aval = getattr(var, "aval", None)
                if hasattr(aval, "shape"):
                    largest = max(largest, _nbytes(tuple(aval.shape), aval.dtype))
            for param in eqn.params.values():
                for sub in param if isinstance(param, list | tuple) else (param,):
                    if isinstance(sub, jex.ClosedJaxpr | jex.Jaxpr):
                        stack.append(sub)
    return _ProgramStats(largest, operations, constants)


def _runner(pipeline: Operator, spec: Any) -> tuple[Any, Any, Any]:
    """A pure ``(arrays, x, key) -> output`` function and its abstract arguments."""
    arrays, static = eqx.partition(pipeline, eqx.is_array)
    is_graph_kwargs = isinstance(spec, Mapping)

    def run(params: Any, x: Any, key: jax.Array) -> Any:
        op = eqx.combine(params, static)
        if is_graph_kwargs:
            return op(key=key, **x)
        return op(x, key=key)

    abstract_arrays = jax.tree_util.tree_map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), arrays
    )
    return run, abstract_arrays, jax.eval_shape(lambda: jax.random.key(0))


def _flops_of(program: Any) -> float | None:
    """XLA's FLOP count of a lowered or compiled program (best-effort: ``None`` if unknown)."""
    try:
        costs = program.cost_analysis()
        cost = costs[0] if isinstance(costs, list | tuple) else costs
        return float(cost["flops"]) if cost and "flops" in cost else None
    except Exception:  # cost analysis is best-effort on some backends
        return None


def _pricing_failed(spec: str, stage: str, e: BaseException) -> ShapeError:
    what = describe_exception(e)
    return ShapeError(f"the pipeline cannot run on input {spec} (stage: {stage}): {what}")


def _shape_bound(spec: Any) -> Any:
    """The shape (or ``{input: shape}``) that :meth:`Operator.precheck` receives for a spec."""
    if isinstance(spec, Mapping):
        return {k: _shape_bound(v) for k, v in spec.items()}
    if isinstance(spec, Carrier):
        return spec.shape_bound()
    leaves = [x for x in jax.tree_util.tree_leaves(spec) if hasattr(x, "shape")]
    return tuple(int(d) for d in leaves[0].shape) if leaves else ()


def operators_in(pipeline: Operator) -> list[Operator]:
    """Every operator in a pipeline's tree, the pipeline first (children of any container)."""
    found: list[Operator] = []
    seen: set[int] = set()
    stack: list[Any] = [pipeline]
    while stack:
        value = stack.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, Operator):
            found.append(value)
            stack.extend(getattr(value, f.name) for f in dataclasses.fields(value))
        elif isinstance(value, list | tuple):
            stack.extend(value)
        elif isinstance(value, Mapping):
            stack.extend(value.values())
    return found


def precheck(pipeline: Operator, spec: Any, limits: Limits = DEFAULT_LIMITS) -> Any:
    """Run the pipeline's trace-free pre-check for an input spec (see :meth:`Operator.precheck`).

    First the generic bound on static ints (:func:`~georax.core.operator.check_static_extents`)
    on *every* operator in the tree -- a container that does not recurse in its own pre-check
    does not hide a child's billion-pixel window -- then the pipeline's own pre-check, which
    walks its children once per use.

    **Returns:** the pre-check's bound on the output shape.

    **Raises:** the pre-check's georax errors (``BudgetExceededError`` with
    ``stage="precheck"``, ``ShapeError``, ``SandboxLimitError`` for too many operator
    applications); anything else an operator's pre-check raises is wrapped in
    :class:`~georax.errors.LoaderError` (``stage="precheck"``).
    """
    try:
        for op in operators_in(pipeline):
            check_static_extents(op, limits)
        return pipeline.precheck(_shape_bound(input_spec(spec)), limits)
    except GeoraxError:
        raise
    except Exception as e:
        raise LoaderError("precheck", e) from e


class _Stages:
    """The checks of :func:`price`, one method per stage, sharing the budget and the spec."""

    def __init__(self, budget: int | None, flop_budget: float | None, limits: Limits, shown: str):
        self.budget = budget
        self.flop_budget = flop_budget
        self.limits = limits
        self.shown = shown

    def over(self, required: int, stage: str, what: str) -> None:
        if self.budget is not None and required > self.budget:
            raise BudgetExceededError(required, self.budget, stage, what)

    def guarded(self, stage: str, fn: Any, *args: Any) -> Any:
        """Run one step of pricing; a non-georax error means the pipeline cannot run here."""
        try:
            return fn(*args)
        except GeoraxError:
            raise
        except Exception as e:
            raise _pricing_failed(self.shown, stage, e) from e

    def trace(self, run: Any, arrays: Any, spec: Any, key: Any) -> tuple[Any, Any]:
        return self.guarded("trace", jax.make_jaxpr(run, return_shape=True), arrays, spec, key)

    def program(self, stats: _ProgramStats, base: int) -> None:
        if stats.operations > self.limits.max_trace_steps:
            raise BudgetExceededError(
                stats.operations,
                self.limits.max_trace_steps,
                "trace",
                f"the traced program on {self.shown} (bounded by Limits.max_trace_steps)",
                unit="operations",
            )
        if stats.constants > self.limits.max_host_bytes:
            raise BudgetExceededError(
                stats.constants,
                self.limits.max_host_bytes,
                "constants",
                f"constants baked into the program on {self.shown} (Limits.max_host_bytes)",
            )
        self.over(base + stats.constants, "constants", "input + params + baked-in constants")

    def lower(self, run: Any, arrays: Any, spec: Any, key: Any) -> Any:
        return self.guarded("lower", jax.jit(run).lower, arrays, spec, key)

    def compile(self, lowered: Any) -> tuple[dict[str, int] | None, float | None]:
        program = self.guarded("compile", lowered.compile)
        stats = self.guarded("compile", program.memory_analysis)
        compiled = None
        if stats is not None:
            compiled = {
                "argument": int(stats.argument_size_in_bytes),
                "output": int(stats.output_size_in_bytes),
                "temp": int(stats.temp_size_in_bytes),
                "alias": int(stats.alias_size_in_bytes),
                "generated_code": int(stats.generated_code_size_in_bytes),
            }
        return compiled, _flops_of(program)

    def flops(self, flops: float | None) -> None:
        if self.flop_budget is not None and flops is not None and flops > self.flop_budget:
            raise BudgetExceededError(
                int(flops), int(self.flop_budget), "flops", f"the program on {self.shown}"
            )


def price(
    pipeline: Operator,
    spec: Any,
    *,
    dtype: Any = "float32",
    budget: int | str | None = None,
    compile: bool = True,
    flop_budget: float | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Price:
    """Price ``pipeline`` for an input spec without running it (see the module docstring).

    **Arguments:**

    - `pipeline`: the operator.
    - `spec`: the input: a shape, a ``ShapeDtypeStruct``, an array, or a dict of those (one per
      Graph input); see :func:`input_spec`.
    - `dtype`: dtype for a bare shape.
    - `budget`: if given (bytes or a string such as ``"512MiB"``), stop and raise
      :class:`BudgetExceededError` at the first stage over budget.
    - `compile`: run the (slowest) compiled-memory stage.
    - `flop_budget`: if given, also refuse a program whose compiled cost analysis exceeds this
      many floating-point operations (a guard against compute bombs, e.g. a huge filter window;
      loop bodies count once, so it bounds from below). Must be a finite number >= 0.
    - `limits`: the pre-check's limits, the size of the traced program
      (``max_trace_steps``), baked-in constants (``max_host_bytes``) and the wall-clock limit
      on the whole of pricing (``max_seconds``).

    **Returns:** a :class:`Price`.

    **Raises:** :class:`BudgetExceededError` (:class:`~georax.errors.PricingTimeoutError`
    past ``limits.max_seconds``); `ShapeError` if the pipeline cannot run on the spec;
    `ConfigError` for a malformed budget or dtype; the pre-check's errors.
    """
    stages = _Stages(
        None if budget is None else parse_bytes(budget),
        parse_flops(flop_budget),
        limits,
        "",
    )
    spec = input_spec(spec, dtype)
    stages.shown = shown = _show_spec(spec)
    with deadline(limits.max_seconds, f"pricing the pipeline on {shown}"):
        precheck(pipeline, spec, limits)
        in_bytes = _tree_bytes(spec)
        stages.over(in_bytes, "input", f"the input {shown}")
        run, arrays, key = _runner(pipeline, spec)
        p_bytes = _tree_bytes(arrays)
        stages.over(in_bytes + p_bytes, "params", f"the input {shown} plus the pipeline's arrays")
        closed, out = stages.trace(run, arrays, spec, key)
        stats = _program_stats(closed)
        stages.program(stats, in_bytes + p_bytes)
        out_bytes = _tree_bytes(out)
        stages.over(
            in_bytes + p_bytes + stats.constants + out_bytes,
            "output",
            f"input + params + constants + output for {shown}",
        )
        stages.over(
            stats.largest, "intermediate", f"one intermediate value of the program on {shown}"
        )
        result = Price(
            in_bytes, p_bytes, out, out_bytes, stats.largest, stats.constants, stats.operations
        )
        if not compile:
            return result
        lowered = stages.lower(run, arrays, spec, key)
        stages.flops(_flops_of(lowered))  # a compute bomb never reaches the compiler
        compiled, flops = stages.compile(lowered)
        result = dataclasses.replace(result, compiled=compiled, flops=flops)
        stages.over(result.peak_bytes, "compiled", f"the compiled program on {shown}")
        stages.flops(flops)
        return result


def check_budget(
    pipeline: Operator,
    spec: Any,
    budget: int | str,
    *,
    dtype: Any = "float32",
    flop_budget: float | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Price:
    """Refuse ``pipeline`` if running it on ``spec`` would exceed ``budget``; else its price.

    Pre-checks the pipeline (:meth:`Operator.precheck`) before anything is traced, and prices
    under ``limits`` (see :func:`price`).

    **Raises:** :class:`BudgetExceededError` naming the stage, what is needed and the budget.
    """
    return price(pipeline, spec, dtype=dtype, budget=budget, flop_budget=flop_budget, limits=limits)


def _show_spec(spec: Any) -> str:
    leaves = jax.tree_util.tree_leaves(spec)
    parts = [f"{np.dtype(x.dtype).name}{list(x.shape)}" for x in leaves if hasattr(x, "shape")]
    return parts[0] if len(parts) == 1 else "(" + ", ".join(parts) + ")"
