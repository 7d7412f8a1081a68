"""Graph: multi-input, multi-output operator DAGs built functionally (the seeds' case 11).

::

    opt, sar = gx.Input("optical"), gx.Input("sar")
    fused = AlignAndStack(...)(MaskClouds()(opt), sar)
    g = gx.Graph(inputs={"optical": opt, "sar": sar}, outputs={"fused": fused, "map": model(fused)})
    g(optical=a, sar=b)  # -> {"fused": ..., "map": ...}

The wiring is static (tree structure, config); the operators are pytree children, each stored once
even when used at several nodes, so shared weights stay tied under ``grad``. Each node is computed
once per call however many consumers it has.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax

from georax.core.combinators import split_keys
from georax.core.errors import ConfigError, GraphError, short_repr
from georax.core.operator import Input, Node, Operator, static
from georax.core.sandbox import Limits
from georax.core.summary import Summary, describe

# A reference to a value inside the graph: an input name (str) or the index of an earlier node.
Ref = str | int
# One node: (index into ``operators``, positional argument refs, keyword argument refs).
NodeSpec = tuple[int, tuple[Ref, ...], tuple[tuple[str, Ref], ...]]


def _trace_nodes(
    inputs: Mapping[str, Input], outputs: Mapping[str, Node]
) -> tuple[tuple[Operator, ...], tuple[NodeSpec, ...], tuple[tuple[str, int], ...]]:
    """Topologically sort the nodes reachable from ``outputs``, validating as we go."""
    for name, node in inputs.items():
        if not isinstance(node, Input):
            raise GraphError(f"inputs[{name!r}] must be gx.Input, got {type(node).__name__}")
        if node.name != name:
            raise GraphError(f"inputs[{name!r}] is Input({node.name!r}): names must match")
    declared = {id(node): name for name, node in inputs.items()}

    order: list[Node] = []  # non-input nodes, dependencies first
    index: dict[int, int] = {}  # id(node) -> position in `order`
    state: dict[int, str] = {}  # id(node) -> "visiting" | "done"
    used_inputs: set[str] = set()

    def visit(node: Node, path: tuple[str, ...]) -> None:
        if isinstance(node, Input):
            if id(node) not in declared:
                raise GraphError(
                    f"undeclared input {node.name!r} reached via {' <- '.join(path)}; "
                    "add it to Graph(inputs=...)"
                )
            used_inputs.add(declared[id(node)])
            return
        status = state.get(id(node))
        if status == "done":
            return
        if status == "visiting":
            raise GraphError(f"cycle detected through {' <- '.join(path)}")
        state[id(node)] = "visiting"
        label = type(node.op).__name__
        for arg in (*node.args, *node.kwargs.values()):
            if not isinstance(arg, Node):
                raise GraphError(
                    f"{label}: every argument of a graph node must be a node, got "
                    f"{type(arg).__name__}; bind constants as operator fields instead"
                )
            visit(arg, (*path, label))
        state[id(node)] = "done"
        index[id(node)] = len(order)
        order.append(node)

    for name, node in outputs.items():
        if not isinstance(node, Node):
            raise GraphError(f"outputs[{name!r}] must be a graph node, got {type(node).__name__}")
        visit(node, (f"output {name!r}",))

    unused = [name for name in inputs if name not in used_inputs]
    if unused:
        raise GraphError(f"declared input(s) {unused} are not used by any output")

    operators: list[Operator] = []
    op_index: dict[int, int] = {}
    for node in order:
        if id(node.op) not in op_index:
            op_index[id(node.op)] = len(operators)
            operators.append(node.op)  # type: ignore[arg-type]

    def ref(node: Node) -> Ref:
        return declared[id(node)] if isinstance(node, Input) else index[id(node)]

    specs = tuple(
        (
            op_index[id(node.op)],
            tuple(ref(a) for a in node.args),
            tuple((k, ref(v)) for k, v in node.kwargs.items()),
        )
        for node in order
    )
    outs = []
    for name, node in outputs.items():
        if isinstance(node, Input):
            raise GraphError(
                f"output {name!r} is an input passed straight through; use gx.Identity"
            )
        outs.append((name, index[id(node)]))
    return tuple(operators), specs, tuple(outs)


def _is_index(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_ref(v: Any) -> bool:
    return isinstance(v, str) or _is_index(v)


def _wiring_error(field: str, value: Any, problem: str) -> ConfigError:
    return ConfigError("Graph", field, short_repr(value), problem)


def _parse_inputs(inputs: Any) -> tuple[str, ...]:
    if isinstance(inputs, str | bytes) or not isinstance(inputs, Sequence | Mapping):
        raise _wiring_error("inputs", inputs, "must be a list of input names")
    names = tuple(inputs)
    if not all(isinstance(n, str) and n.isidentifier() for n in names):
        raise _wiring_error("inputs", inputs, "input names must be Python identifiers")
    if len(set(names)) != len(names):
        raise GraphError(f"duplicate input names in {list(names)}")
    return names


def _parse_outputs(outputs: Any) -> tuple[tuple[str, int], ...]:
    if isinstance(outputs, Mapping):
        items = list(outputs.items())
    elif isinstance(outputs, Sequence) and not isinstance(outputs, str | bytes):
        items = list(outputs)
        if not all(
            isinstance(p, Sequence) and not isinstance(p, str) and len(p) == 2 for p in items
        ):
            raise _wiring_error("outputs", outputs, "must map output names to node indices")
    else:
        raise _wiring_error("outputs", outputs, "must map output names to node indices")
    if not items:
        raise GraphError("a Graph needs at least one output")
    for name, index in items:
        if not isinstance(name, str) or not _is_index(index):
            raise _wiring_error(
                "outputs", outputs, f"output {name!r}: names are strings, node indices are ints"
            )
    names = [name for name, _ in items]
    if len(set(names)) != len(names):
        raise GraphError(f"duplicate output names in {names}")
    return tuple((name, index) for name, index in items)


def _parse_nodes(nodes: Any) -> tuple[NodeSpec, ...]:
    if isinstance(nodes, str | bytes) or not isinstance(nodes, Sequence):
        raise _wiring_error("nodes", nodes, "must be a list of [operator, args, kwargs] entries")
    specs = []
    for i, node in enumerate(nodes):
        if isinstance(node, str | bytes) or not isinstance(node, Sequence) or len(node) != 3:
            raise _wiring_error("nodes", node, f"node {i} must be [operator, args, kwargs]")
        op, args, kwargs = node
        if not _is_index(op):
            raise _wiring_error("nodes", node, f"node {i}: the operator index must be an int")
        if isinstance(args, str | bytes) or not isinstance(args, Sequence):
            raise _wiring_error("nodes", node, f"node {i}: args must be a list of references")
        pairs = list(kwargs.items()) if isinstance(kwargs, Mapping) else kwargs
        if isinstance(pairs, str | bytes) or not isinstance(pairs, Sequence):
            raise _wiring_error("nodes", node, f"node {i}: kwargs must map names to references")
        if not all(
            isinstance(p, Sequence) and len(p) == 2 and isinstance(p[0], str) for p in pairs
        ):
            raise _wiring_error("nodes", node, f"node {i}: kwargs must map names to references")
        refs = (*args, *(r for _, r in pairs))
        if not all(_is_ref(r) for r in refs):
            raise _wiring_error(
                "nodes",
                node,
                f"node {i}: a reference is an input name (str) or an earlier node index (int)",
            )
        specs.append((op, tuple(args), tuple((k, r) for k, r in pairs)))
    return tuple(specs)


def _check_wiring(
    inputs: tuple[str, ...],
    operators: tuple[Operator, ...],
    nodes: tuple[NodeSpec, ...],
    outputs: tuple[tuple[str, int], ...],
) -> None:
    """Validate serialised wiring (the form loaded from YAML), already well-typed."""
    used: set[str] = set()
    for i, (op_i, args, kwargs) in enumerate(nodes):
        if not 0 <= op_i < len(operators):
            raise GraphError(f"node {i} uses operator {op_i}, but there are {len(operators)}")
        for r in (*args, *(v for _, v in kwargs)):
            if isinstance(r, str):
                if r not in inputs:
                    raise GraphError(f"node {i} reads undeclared input {r!r}")
                used.add(r)
            elif not 0 <= r < i:
                raise GraphError(
                    f"node {i} reads node {r}: references must point to earlier nodes "
                    "(a forward reference is a cycle)"
                )
    for name, j in outputs:
        if not 0 <= j < len(nodes):
            raise GraphError(f"output {name!r} points to node {j}, but there are {len(nodes)}")
    unused = [name for name in inputs if name not in used]
    if unused:
        raise GraphError(f"declared input(s) {unused} are not used by any output")


def _bound(shapes: list[Any]) -> Any:
    """One upper bound for the shapes of a node's arguments (elementwise max when they agree)."""
    tuples = [s for s in shapes if isinstance(s, tuple)]
    if not tuples:
        return shapes[0] if shapes else ()
    ranks = {len(s) for s in tuples}
    if len(ranks) == 1:
        return tuple(max(dims) for dims in zip(*tuples, strict=True))
    return max(tuples, key=math.prod)


class Graph(Operator):
    """A DAG of operators with named inputs and named outputs.

    Build it functionally from :class:`Input` nodes, then call it with one keyword argument per
    input (or positionally when it has exactly one input). It returns a dict of named outputs.

    Validated at construction: cycles, inputs reached but not declared, declared inputs not used,
    and operators called with the wrong number of inputs all raise :class:`GraphError`.

    **Arguments:**

    - `inputs`: ``{name: Input(name)}`` (or, when loading config, a sequence of names).
    - `outputs`: ``{name: node}`` (or, when loading config, ``{name: node index}``).
    - `operators`, `nodes`: the serialised wiring; only given when loading config.
    """

    inputs: tuple[str, ...] = static()
    outputs: tuple[tuple[str, int], ...] = static()
    operators: tuple[Operator, ...]
    nodes: tuple[NodeSpec, ...] = static()

    def __init__(
        self,
        inputs: Mapping[str, Input] | Sequence[str],
        outputs: Mapping[str, Node] | Mapping[str, int] | Sequence[tuple[str, int]],
        operators: Sequence[Operator] | None = None,
        nodes: Sequence[Any] | None = None,
    ) -> None:
        if operators is None:
            if not isinstance(inputs, Mapping) or not isinstance(outputs, Mapping):
                raise GraphError("Graph(inputs={name: Input}, outputs={name: node}) expected")
            if not outputs:
                raise GraphError("a Graph needs at least one output")
            ops, specs, outs = _trace_nodes(inputs, outputs)  # type: ignore[arg-type]
            self.inputs = tuple(inputs)
        else:
            ops = tuple(operators)  # typed Sequence[Operator]: checked before __init__ runs
            self.inputs = _parse_inputs(inputs)
            specs = _parse_nodes(() if nodes is None else nodes)
            outs = _parse_outputs(outputs)
            _check_wiring(self.inputs, ops, specs, outs)
        self.operators = ops
        self.nodes = specs
        self.outputs = outs

    def _run(self, values: dict[str, Any], key: jax.Array | None) -> list[Any]:
        missing = [n for n in self.inputs if n not in values]
        extra = [n for n in values if n not in self.inputs]
        if missing or extra:
            raise GraphError(
                f"Graph inputs are {list(self.inputs)}; missing {missing}, unexpected {extra}"
            )
        results: list[Any] = []

        def get(r: Ref) -> Any:
            return values[r] if isinstance(r, str) else results[r]

        for (op_i, args, kwargs), k in zip(
            self.nodes, split_keys(key, len(self.nodes)), strict=True
        ):
            op = self.operators[op_i]
            results.append(op(*(get(a) for a in args), **{n: get(r) for n, r in kwargs}, key=k))
        return results

    def precheck(self, shape: Any, limits: Limits) -> dict[str, Any]:
        """Pre-check every node, in order: an operator used at several nodes counts at each.

        **Arguments:**

        - `shape`: one input's shape bound (single-input graphs) or ``{input name: shape}``.
        - `limits`: the loader's limits.

        **Returns:** ``{output name: shape bound}``.
        """
        if isinstance(shape, Mapping):
            values: dict[str, Any] = dict(shape)
        else:
            values = {name: shape for name in self.inputs}
        results: list[Any] = []

        def get(r: Ref) -> Any:
            return values.get(r, ()) if isinstance(r, str) else results[r]

        for op_i, args, kwargs in self.nodes:
            bound = _bound([get(r) for r in (*args, *(v for _, v in kwargs))])
            results.append(self.operators[op_i].precheck(bound, limits))
        return {name: results[j] for name, j in self.outputs}

    def __call__(self, *args: Any, key: jax.Array | None = None, **inputs: Any) -> dict[str, Any]:
        if args:
            if len(args) != 1 or len(self.inputs) != 1 or inputs:
                raise GraphError(
                    f"call a Graph with keyword inputs {list(self.inputs)}; positional calling "
                    "is only for single-input graphs"
                )
            inputs = {self.inputs[0]: args[0]}
        results = self._run(inputs, key)
        return {name: results[j] for name, j in self.outputs}

    def summary(self, key: jax.Array | None = None, **example_inputs: Any) -> Summary:
        """Each node's operator, inputs, output shape and dtype, via one :func:`jax.eval_shape`.

        **Arguments:**

        - `**example_inputs`: one array / carrier / ShapeDtypeStruct per graph input.
        """
        key = jax.random.key(0) if key is None else key
        structs = jax.eval_shape(lambda kw, k: self._run(kw, k), example_inputs, key)
        out_of = {j: name for name, j in self.outputs}
        rows = [("-", f"Input({n})", "", *describe(v)) for n, v in example_inputs.items()]
        for i, ((op_i, args, kwargs), s) in enumerate(zip(self.nodes, structs, strict=True)):
            refs = [str(r) for r in args] + [f"{n}={r}" for n, r in kwargs]
            label = self.operators[op_i].display_name
            label += f" -> {out_of[i]!r}" if i in out_of else ""
            rows.append((str(i), label, ", ".join(refs), *describe(s)))
        return Summary(
            f"Graph (inputs {list(self.inputs)}, outputs {[n for n, _ in self.outputs]})",
            ("#", "operator", "inputs", "shape", "dtype"),
            rows,
        )

    def __repr__(self) -> str:
        outs = ", ".join(n for n, _ in self.outputs)
        return (
            f"Graph(inputs=[{', '.join(self.inputs)}], outputs=[{outs}], nodes={len(self.nodes)})"
        )
