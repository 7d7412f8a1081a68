"""Price a pipeline before running it, and refuse one that would not fit a memory budget.

A georax pipeline is a JAX program, so what it will allocate for a given input can be known
without running it (the seeds' case 6 leaves "resource exhaustion" open; this closes it).
:func:`price` works in stages, cheapest first, and :func:`check_budget` refuses at the first stage
that is already over budget, so an absurd request never reaches the compiler:

1. **input and params** -- bytes of the input spec and of the pipeline's array leaves;
2. **output** -- :func:`jax.eval_shape` of the pipeline on the spec (no FLOP is run);
3. **largest intermediate** -- the largest single value in the traced program
   (:func:`jax.make_jaxpr`, nested sub-programs included). XLA may fuse such a value away, but a
   sandbox should not bet on a fusion heuristic: no single value may exceed the budget;
4. **compiled peak** -- ``jax.jit(...).lower(...).compile().memory_analysis()``: arguments +
   outputs + XLA's temporary buffers - aliased bytes, i.e. the buffer assignment of the program
   that would actually run on this backend;
5. optionally **compute** -- the compiled program's ``cost_analysis()`` FLOP count against a
   ``flop_budget`` (loop bodies are counted once, so this bounds from below).

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
import numpy as np

from georax.core.errors import ConfigError, GeoraxError, ShapeError
from georax.core.operator import Operator

__all__ = [
    "BudgetExceededError",
    "Price",
    "check_budget",
    "input_spec",
    "parse_bytes",
    "price",
]


class BudgetExceededError(GeoraxError, ValueError):
    """A pipeline would need more memory than the budget allows for the given input.

    Attributes:
        required: bytes the pipeline would need (at ``stage``; a lower bound of the total).
        budget: the budget in bytes.
        stage: which estimate exceeded it (``"input"``, ``"params"``, ``"output"``,
            ``"intermediate"``, ``"compiled"``, or ``"flops"`` for the compute budget, in which
            case ``required`` and ``budget`` count floating-point operations).
    """

    def __init__(self, required: int, budget: int, stage: str, detail: str) -> None:
        self.required = required
        self.budget = budget
        self.stage = stage
        if stage == "flops":
            need, limit, kind = f"{required:.3g} FLOPs", f"{budget:.3g} FLOPs", "compute"
        else:
            need, limit, kind = format_bytes(required), format_bytes(budget), "memory"
        super().__init__(
            f"pipeline refused: {detail} needs {need} (stage: {stage}), "
            f"over the {kind} budget of {limit}"
        )


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


def format_bytes(n: int) -> str:
    """Human-readable binary size, e.g. ``1.50 GiB``."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


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


def input_spec(spec: Any, dtype: Any = "float32") -> Any:
    """Normalise an input description into (a pytree of) :class:`jax.ShapeDtypeStruct`.

    **Arguments:**

    - `spec`: a shape (tuple/list of ints), a ``ShapeDtypeStruct``, an array, a carrier
      (e.g. GeoTensor) or any pytree of those; a dict gives one spec per Graph input.
    - `dtype`: the dtype for bare shapes.

    **Returns:** the same structure with every array replaced by a ``ShapeDtypeStruct``.
    """
    if isinstance(spec, list | tuple) and all(
        isinstance(d, int) and not isinstance(d, bool) for d in spec
    ):
        if any(d < 0 for d in spec):
            raise ShapeError(f"input shape {tuple(spec)} has a negative dimension")
        return jax.ShapeDtypeStruct(tuple(spec), np.dtype(dtype))
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
        output: the abstract output (``ShapeDtypeStruct`` pytree) from :func:`jax.eval_shape`.
        output_bytes: bytes of ``output``.
        largest_intermediate_bytes: the largest single value in the traced program.
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
    compiled: dict[str, int] | None = None
    flops: float | None = None

    @property
    def peak_bytes(self) -> int:
        """Best estimate of peak memory: the compiled figure if known, else the stages seen."""
        if self.compiled is not None:
            c = self.compiled
            return c["argument"] + c["output"] + c["temp"] - c["alias"]
        return (
            self.input_bytes
            + self.params_bytes
            + (self.output_bytes or 0)
            + (self.largest_intermediate_bytes or 0)
        )

    def __str__(self) -> str:
        rows = [
            ("input", self.input_bytes),
            ("params", self.params_bytes),
            ("output", self.output_bytes),
            ("largest intermediate", self.largest_intermediate_bytes),
        ]
        if self.compiled is not None:
            rows += [(f"compiled {k}", v) for k, v in self.compiled.items()]
        rows.append(("peak estimate", self.peak_bytes))
        width = max(len(r[0]) for r in rows)
        lines = [f"{name:<{width}}  {'-' if v is None else format_bytes(v)}" for name, v in rows]
        if self.flops is not None:
            lines.append(f"{'flops':<{width}}  {self.flops:.3g}")
        return "\n".join(lines)


def _largest_value(jaxpr: Any) -> int:
    """Bytes of the largest value produced anywhere in a (closed) jaxpr, sub-programs included."""
    best = 0
    stack = [jaxpr.jaxpr if hasattr(jaxpr, "jaxpr") else jaxpr]
    seen: set[int] = set()
    while stack:
        jx = stack.pop()
        if id(jx) in seen:
            continue
        seen.add(id(jx))
        for eqn in jx.eqns:
            for var in eqn.outvars:
                aval = getattr(var, "aval", None)
                if hasattr(aval, "shape"):
                    best = max(best, _nbytes(tuple(aval.shape), aval.dtype))
            for param in eqn.params.values():
                for sub in param if isinstance(param, list | tuple) else (param,):
                    if isinstance(sub, jex.ClosedJaxpr):
                        stack.append(sub.jaxpr)
                    elif isinstance(sub, jex.Jaxpr):
                        stack.append(sub)
    return best


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


def _pricing_failed(spec: Any, e: Exception) -> ShapeError:
    return ShapeError(
        f"the pipeline cannot run on input {spec}: {type(e).__name__}: {str(e).splitlines()[0]}"
    )


def price(
    pipeline: Operator,
    spec: Any,
    *,
    dtype: Any = "float32",
    budget: int | str | None = None,
    compile: bool = True,
    flop_budget: float | None = None,
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
      loop bodies count once, so it bounds from below).

    **Returns:** a :class:`Price`.

    **Raises:** :class:`BudgetExceededError`; `ShapeError` if the pipeline cannot run on the spec.
    """
    limit = None if budget is None else parse_bytes(budget)
    spec = input_spec(spec, dtype)
    shown = _show_spec(spec)

    def over(required: int, stage: str, what: str) -> None:
        if limit is not None and required > limit:
            raise BudgetExceededError(required, limit, stage, what)

    in_bytes = _tree_bytes(spec)
    over(in_bytes, "input", f"the input {shown}")
    run, arrays, key = _runner(pipeline, spec)
    p_bytes = _tree_bytes(arrays)
    over(in_bytes + p_bytes, "params", f"the input {shown} plus the pipeline's arrays")

    try:
        jaxpr, out = jax.make_jaxpr(run, return_shape=True)(arrays, spec, key)
    except GeoraxError:
        raise
    except Exception as e:
        raise _pricing_failed(shown, e) from e
    out_bytes = _tree_bytes(out)
    over(in_bytes + p_bytes + out_bytes, "output", f"input + params + output for {shown}")
    largest = _largest_value(jaxpr)
    over(largest, "intermediate", f"one intermediate value of the program on {shown}")
    result = Price(in_bytes, p_bytes, out, out_bytes, largest)
    if not compile:
        return result
    try:
        compiled_program = jax.jit(run).lower(arrays, spec, key).compile()
        stats = compiled_program.memory_analysis()
    except GeoraxError:
        raise
    except Exception as e:
        raise _pricing_failed(shown, e) from e
    compiled = None
    if stats is not None:
        compiled = {
            "argument": int(stats.argument_size_in_bytes),
            "output": int(stats.output_size_in_bytes),
            "temp": int(stats.temp_size_in_bytes),
            "alias": int(stats.alias_size_in_bytes),
            "generated_code": int(stats.generated_code_size_in_bytes),
        }
    flops = None
    try:
        costs = compiled_program.cost_analysis()
        cost = costs[0] if isinstance(costs, list | tuple) else costs
        flops = float(cost["flops"]) if cost and "flops" in cost else None
    except Exception:  # cost analysis is best-effort on some backends
        flops = None
    result = dataclasses.replace(result, compiled=compiled, flops=flops)
    over(result.peak_bytes, "compiled", f"the compiled program on {shown}")
    if flop_budget is not None and flops is not None and flops > flop_budget:
        raise BudgetExceededError(
            int(flops), int(flop_budget), "flops", f"the compiled program on {shown}"
        )
    return result


def check_budget(
    pipeline: Operator,
    spec: Any,
    budget: int | str,
    *,
    dtype: Any = "float32",
    flop_budget: float | None = None,
) -> Price:
    """Refuse ``pipeline`` if running it on ``spec`` would exceed ``budget``; else its price.

    **Raises:** :class:`BudgetExceededError` naming the stage, the bytes needed and the budget.
    """
    return price(pipeline, spec, dtype=dtype, budget=budget, flop_budget=flop_budget)


def _show_spec(spec: Any) -> str:
    leaves = jax.tree_util.tree_leaves(spec)
    parts = [f"{np.dtype(x.dtype).name}{list(x.shape)}" for x in leaves if hasattr(x, "shape")]
    return parts[0] if len(parts) == 1 else "(" + ", ".join(parts) + ")"
