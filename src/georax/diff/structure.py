"""``config_diff(a, b)``: what changed between two pipelines, structurally.

A line diff of serialised configs (the seeds' case 13 used ``difflib.unified_diff`` over JSON)
marks everything after an inserted operator as changed and says nothing about *which* operator
or field moved. This diff walks the two configs as trees:

- **Operator sequences** (``Sequential.operators`` and any other list of operators) are aligned
  with :class:`difflib.SequenceMatcher` over the operators' identities (their ``_target_``), so
  inserting one operator reports exactly one ``added`` operator and the rest stay matched.
  An operator that was removed at one place and added at another with the same target is
  reported once, as ``moved``.
- **Fields** of matched operators are compared one by one: ``changed`` with old -> new values;
  child operators recurse (a ``ModelOp``'s model, a patcher's inner operator).
- **Array leaves** are compared by value: small ones inline, large ones (``_param_``
  placeholders) fetched from the pipelines themselves, reporting the largest absolute
  difference and how many elements differ. Passing configs instead of pipelines compares large
  arrays by shape and dtype only (noted in :attr:`ConfigDiff.notes`).
- **Graphs** align their nodes (topological order) the same way, then compare the wiring of
  matched nodes after mapping old node indices to new ones: inputs added/removed, a node
  reading a different producer, an output now produced by a different node (``wiring``).

The result, :class:`ConfigDiff`, prints as a short text for people and converts to a JSON-able
dict for programs (``to_dict()`` / ``to_json()``).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from georax.core.config import INLINE_MAX, to_config
from georax.core.hashing import config_hash
from georax.core.operator import Operator
from georax.core.yaml_io import SAVED_FORMAT
from georax.diff.errors import DiffError

__all__ = ["FORMAT", "Change", "ConfigDiff", "config_diff"]

FORMAT = "georax.config_diff/1"
TARGET, ARRAY, PARAM = "_target_", "_array_", "_param_"
_GRAPH = "georax.Graph"
_SHOW_ELEMENTS = 8  # arrays up to this many elements are printed in full
_TOKEN = re.compile(r"\.?([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")

Resolver = Callable[[str], "np.ndarray | None"]


@dataclasses.dataclass(frozen=True)
class Change:
    """One difference between two pipelines.

    Attributes:
        kind: ``"added"``, ``"removed"``, ``"moved"`` (operators), ``"changed"`` (a field or
            array value), ``"replaced"`` (an operator of another class in the same place),
            ``"wiring"`` (Graph inputs, node arguments, outputs).
        path: where, in the new pipeline's coordinates for added/moved/changed (e.g.
            ``"operators[1].percentile"``), in the old one's for removed.
        operator: the short class name of the operator concerned.
        field: the field name for ``changed``.
        old, new: the values (JSON-able; arrays summarised when large).
        detail: extra facts: ``max_abs_diff``, ``n_changed``, ``from``/``to`` indices,
            ``after``/``before`` neighbours, the added/removed operator's ``config``.
    """

    kind: str
    path: str
    operator: str | None = None
    field: str | None = None
    old: Any = None
    new: Any = None
    detail: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (non-finite floats written as strings)."""
        return _jsonable(
            {
                "kind": self.kind,
                "path": self.path,
                "operator": self.operator,
                "field": self.field,
                "old": self.old,
                "new": self.new,
                "detail": dict(self.detail),
            }
        )

    def __str__(self) -> str:
        d = self.detail
        if self.kind == "added":
            where = _context(d)
            return f"+ {self.path} {self.operator} (added{where}): {_short(d.get('config'))}"
        if self.kind == "removed":
            where = _context(d)
            return f"- {self.path} {self.operator} (removed{where}): {_short(d.get('config'))}"
        if self.kind == "moved":
            return f"> {self.path} {self.operator} (moved from {d.get('from')})"
        if self.kind == "replaced":
            return f"! {self.path or '<root>'}: {self.old} replaced by {self.new}"
        if self.kind == "wiring":
            return f"# {self.path}: {_wiring_text(self)}"
        label = f"{self.path} ({self.operator})" if self.operator else self.path
        if d.get("absent") == "old":
            return f"~ {label}: (absent) -> {_short(self.new)}"
        if d.get("absent") == "new":
            return f"~ {label}: {_short(self.old)} -> (absent)"
        if "max_abs_diff" in d:
            extra = (
                f" (max |a-b| = {d['max_abs_diff']:.6g}, {d['n_changed']} of {d['size']} differ)"
            )
        else:
            extra = ""
        if extra and isinstance(self.old, str) and self.old == self.new:
            return f"~ {label}: {self.old} values changed{extra}"
        return f"~ {label}: {_short(self.old)} -> {_short(self.new)}{extra}"


def _wiring_text(c: Change) -> str:
    d = c.detail
    for what in ("input", "output"):
        if what in d:
            name = d[what]
            if c.old is None:
                return f"{what} {name!r} added" + (f" ({c.new})" if what == "output" else "")
            if c.new is None:
                return f"{what} {name!r} removed" + (f" (was {c.old})" if what == "output" else "")
            return f"{what} {name!r} now from {c.new} (was {c.old})"
    return f"{c.operator} now reads {c.new} (was {c.old})"


def _context(d: Mapping[str, Any]) -> str:
    parts = []
    if d.get("after"):
        parts.append(f"after {d['after']}")
    if d.get("before"):
        parts.append(f"before {d['before']}")
    return (" " + ", ".join(parts)) if parts else ""


def _short(v: Any, n: int = 160) -> str:
    if isinstance(v, dict):
        v = {k: x for k, x in v.items() if k != TARGET}
    text = json.dumps(_jsonable(v), separators=(", ", ": "))
    return text if len(text) <= n else text[: n - 3] + "..."


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return _jsonable(v.item())
    return v


@dataclasses.dataclass(frozen=True)
class ConfigDiff:
    """The structural difference between two pipelines (see :func:`config_diff`).

    Attributes:
        changes: the :class:`Change` list, in the order of the new pipeline.
        a_hash, b_hash: the two configs' :func:`~georax.config_hash`.
        notes: what could not be compared (e.g. weights given only as placeholders).
    """

    changes: tuple[Change, ...]
    a_hash: str
    b_hash: str
    notes: tuple[str, ...] = ()

    @property
    def equal(self) -> bool:
        """No structural or value difference was found."""
        return not self.changes

    def of_kind(self, kind: str) -> list[Change]:
        """The changes of one kind (``"added"``, ``"removed"``, ``"moved"``, ``"changed"``...)."""
        return [c for c in self.changes if c.kind == kind]

    @property
    def added(self) -> list[Change]:
        """Operators added."""
        return self.of_kind("added")

    @property
    def removed(self) -> list[Change]:
        """Operators removed."""
        return self.of_kind("removed")

    @property
    def moved(self) -> list[Change]:
        """Operators moved."""
        return self.of_kind("moved")

    @property
    def changed(self) -> list[Change]:
        """Fields and array values changed."""
        return self.of_kind("changed")

    def __iter__(self) -> Iterator[Change]:
        return iter(self.changes)

    def __len__(self) -> int:
        return len(self.changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict: format, hashes, counts per kind, the changes and notes."""
        counts: dict[str, int] = {}
        for c in self.changes:
            counts[c.kind] = counts.get(c.kind, 0) + 1
        return {
            "format": FORMAT,
            "equal": self.equal,
            "a": {"config_hash": self.a_hash},
            "b": {"config_hash": self.b_hash},
            "counts": counts,
            "changes": [c.to_dict() for c in self.changes],
            "notes": list(self.notes),
        }

    def to_json(self, indent: int | None = 2) -> str:
        """:meth:`to_dict` as strict JSON text."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def __str__(self) -> str:
        lines = ["no differences"] if self.equal else [str(c) for c in self.changes]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# Normalising the two sides
# ------------------------------------------------------------------------------------------------
def _resolver(op: Operator) -> Resolver:
    """Fetch an array of ``op`` by its config path (``operators[1].model.weights``)."""

    def resolve(path: str) -> np.ndarray | None:
        obj: Any = op
        for name, index in _TOKEN.findall(path):
            if name:
                obj = obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)
            else:
                try:
                    obj = obj[int(index)]
                except (TypeError, IndexError, KeyError):
                    return None
            if obj is None:
                return None
        try:
            return np.asarray(obj)
        except Exception:  # not an array after all
            return None

    return resolve


def _side(x: Any, label: str) -> tuple[dict[str, Any], Resolver | None]:
    if isinstance(x, Operator):
        return to_config(x, max_inline=INLINE_MAX), _resolver(x)
    if isinstance(x, Mapping):
        if (
            TARGET not in x
            and x.get("georax") == SAVED_FORMAT
            and isinstance(x.get("pipeline"), Mapping)
        ):
            return dict(x["pipeline"]), None
        if TARGET in x:
            return dict(x), None
    raise DiffError(
        f"config_diff: {label} must be a georax Operator or a pipeline config mapping "
        f"(with {TARGET}), got {type(x).__name__}; load files with gx.loads_yaml / gx.load"
    )


# ------------------------------------------------------------------------------------------------
# The walk
# ------------------------------------------------------------------------------------------------
def _is_op(v: Any) -> bool:
    return isinstance(v, Mapping) and isinstance(v.get(TARGET), str)


def _is_op_list(v: Any) -> bool:
    return isinstance(v, list) and all(_is_op(x) for x in v)


def _short_name(target: str) -> str:
    return target.rsplit(".", 1)[-1]


def _numeric(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int | float):
        return True
    return isinstance(v, list) and len(v) > 0 and all(_numeric(x) for x in v)


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping):
        return set(a) == set(b) and all(_equal(a[k], b[k]) for k in a)
    return a == b


class _Walker:
    def __init__(self, ra: Resolver | None, rb: Resolver | None) -> None:
        self.ra, self.rb = ra, rb
        self.changes: list[tuple[tuple[Any, ...], Change]] = []
        self.notes: list[str] = []
        self.order = 0

    def emit(self, change: Change) -> None:
        self.order += 1
        self.changes.append(((self.order,), change))

    # -------------------------------------------------------------- values
    def operator(self, a: Mapping[str, Any], b: Mapping[str, Any], pa: str, pb: str) -> None:
        if a[TARGET] != b[TARGET]:
            self.emit(Change("replaced", pb, _short_name(b[TARGET]), old=a[TARGET], new=b[TARGET]))
            return
        if a[TARGET] == _GRAPH:
            self.graph(a, b, pa, pb)
            return
        name = _short_name(a[TARGET])
        keys = [k for k in a if k != TARGET] + [k for k in b if k != TARGET and k not in a]
        for k in keys:
            fa, fb = _join(pa, k), _join(pb, k)
            if k not in b:
                self.emit(Change("changed", fb, name, k, a[k], None, {"absent": "new"}))
            elif k not in a:
                self.emit(Change("changed", fb, name, k, None, b[k], {"absent": "old"}))
            else:
                self.value(a[k], b[k], fa, fb, name, k)

    def value(self, va: Any, vb: Any, pa: str, pb: str, owner: str, field: str) -> None:
        if _is_op(va) and _is_op(vb):
            self.operator(va, vb, pa, pb)
        elif _is_op_list(va) and _is_op_list(vb) and (va or vb):
            self.sequence(va, vb, pa, pb)
        elif self.array_like(va) or self.array_like(vb):
            self.array(va, vb, pa, pb, owner, field)
        elif isinstance(va, list) and isinstance(vb, list) and len(va) == len(vb):
            for i, (x, y) in enumerate(zip(va, vb, strict=True)):
                self.value(x, y, f"{pa}[{i}]", f"{pb}[{i}]", owner, field)
        elif isinstance(va, Mapping) and isinstance(vb, Mapping):
            for k in list(va) + [k for k in vb if k not in va]:
                if k not in vb or k not in va:
                    self.emit(Change("changed", f"{pb}.{k}", owner, field, va.get(k), vb.get(k)))
                else:
                    self.value(va[k], vb[k], f"{pa}.{k}", f"{pb}.{k}", owner, field)
        elif not _equal(va, vb):
            detail = {}
            if _numeric(va) and _numeric(vb) and not isinstance(va, list):
                detail = {"abs_diff": abs(float(vb) - float(va))}
            self.emit(Change("changed", pb, owner, field, va, vb, detail))

    @staticmethod
    def array_like(v: Any) -> bool:
        return (isinstance(v, Mapping) and (ARRAY in v or PARAM in v)) or (
            isinstance(v, list) and _numeric(v)
        )

    def to_array(self, v: Any, resolver: Resolver | None) -> tuple[np.ndarray | None, str]:
        """The array a config value stands for (or None) and its summary (dtype[shape])."""
        if isinstance(v, Mapping) and PARAM in v:
            summary = f"{v.get('dtype')}{v.get('shape')}"
            found = resolver(str(v[PARAM])) if resolver is not None else None
            return found, summary
        try:
            if isinstance(v, Mapping) and ARRAY in v:
                arr = np.asarray(v[ARRAY], dtype=str(v.get("dtype", "float32")))
                arr = arr.reshape([int(s) for s in v.get("shape", arr.shape)])
            else:
                arr = np.asarray(v)
        except (TypeError, ValueError):
            return None, type(v).__name__
        return arr, f"{arr.dtype}{list(arr.shape)}"

    def array(self, va: Any, vb: Any, pa: str, pb: str, owner: str, field: str) -> None:
        a, sa = self.to_array(va, self.ra)
        b, sb = self.to_array(vb, self.rb)
        placeholder = any(isinstance(v, Mapping) and PARAM in v for v in (va, vb))
        if (a is None or b is None) and not placeholder:  # not arrays after all (ragged lists)
            if not _equal(va, vb):
                self.emit(Change("changed", pb, owner, field, va, vb))
            return
        if a is None or b is None:
            if sa != sb:
                self.emit(Change("changed", pb, owner, field, sa, sb))
            else:
                self.notes.append(
                    f"{pb}: values not available (config placeholder); compared "
                    "shape and dtype only -- pass the pipelines to compare values"
                )
            return
        ta, tb = not _numeric(va), not _numeric(vb)  # bare numeric lists carry no dtype
        if a.shape != b.shape or (ta and tb and a.dtype != b.dtype):
            self.emit(Change("changed", pb, owner, field, _show(a, ta), _show(b, tb)))
            return
        if np.array_equal(a, b, equal_nan=a.dtype.kind == "f" and b.dtype.kind == "f"):
            return
        fa, fb = a.astype(np.float64), b.astype(np.float64)
        both = np.isfinite(fa) & np.isfinite(fb)
        diff = np.abs(fa - fb)
        differs = ~((fa == fb) | (np.isnan(fa) & np.isnan(fb)))
        detail = {
            "max_abs_diff": float(np.max(diff[both], initial=0.0)),
            "n_changed": int(np.count_nonzero(differs)),
            "size": int(a.size),
            "shape": list(a.shape),
            "dtype": str(b.dtype) if tb else None,
        }
        self.emit(Change("changed", pb, owner, field, _show(a, ta), _show(b, tb), detail))

    # -------------------------------------------------------------- sequences
    def sequence(self, la: list[Any], lb: list[Any], pa: str, pb: str) -> None:
        """Align two operator lists; report changes in the order of the new list."""
        ka, kb = [x[TARGET] for x in la], [x[TARGET] for x in lb]
        pairs, moved, removed, added = _align(ka, kb, la, lb)
        names_a = [_short_name(k) for k in ka]
        names_b = [_short_name(k) for k in kb]
        matched = dict(pairs) | dict(moved)  # old index -> new index
        moved_from = {j: i for i, j in moved}
        back = {j: i for i, j in matched.items()}

        def anchor(i: int) -> int:  # the new position a removed operator sat just before
            later = [matched[k] for k in matched if k > i]
            return min(later) if later else len(lb)

        pending = sorted(removed, key=lambda i: (anchor(i), i))
        for j in range(len(lb) + 1):
            while pending and anchor(pending[0]) == j:
                i = pending.pop(0)
                context = {
                    "after": names_a[i - 1] if i > 0 else None,
                    "before": names_a[i + 1] if i + 1 < len(la) else None,
                }
                detail = {"index": i, "config": la[i], **context}
                self.emit(Change("removed", f"{pa}[{i}]", names_a[i], detail=detail))
            if j == len(lb):
                break
            if j in added:
                context = {
                    "after": names_b[j - 1] if j > 0 else None,
                    "before": names_b[j + 1] if j + 1 < len(lb) else None,
                }
                detail = {"index": j, "config": lb[j], **context}
                self.emit(Change("added", f"{pb}[{j}]", names_b[j], detail=detail))
                continue
            if j in moved_from:
                i = moved_from[j]
                detail = {"from": f"{pa}[{i}]", "to": f"{pb}[{j}]"}
                self.emit(Change("moved", f"{pb}[{j}]", names_b[j], detail=detail))
            i = back[j]
            self.operator(la[i], lb[j], f"{pa}[{i}]", f"{pb}[{j}]")

    # -------------------------------------------------------------- graphs
    def graph(self, a: Mapping[str, Any], b: Mapping[str, Any], pa: str, pb: str) -> None:
        try:
            ga, gb = _GraphView(a), _GraphView(b)
        except (TypeError, ValueError, KeyError, IndexError) as e:
            raise DiffError(
                f"config_diff: malformed Graph config at {pb or '<root>'}: {e}"
            ) from None
        self._graph_inputs(ga, gb, pb)
        pairs, moved, removed, added = _align(ga.keys, gb.keys, ga.node_configs, gb.node_configs)
        m = dict(pairs) | dict(moved)
        self._graph_nodes_added_removed(ga, gb, pa, pb, moved, removed, added)
        self._graph_nodes_matched(ga, gb, pa, pb, m)
        self._graph_outputs(ga, gb, pb, m)

    def _graph_inputs(self, ga: _GraphView, gb: _GraphView, pb: str) -> None:
        """Inputs declared by one graph only."""
        where = _join(pb, "inputs")
        for name in ga.inputs:
            if name not in gb.inputs:
                self.emit(Change("wiring", where, "Graph", "inputs", name, None, {"input": name}))
        for name in gb.inputs:
            if name not in ga.inputs:
                self.emit(Change("wiring", where, "Graph", "inputs", None, name, {"input": name}))

    def _graph_nodes_added_removed(
        self,
        ga: _GraphView,
        gb: _GraphView,
        pa: str,
        pb: str,
        moved: list[tuple[int, int]],
        removed: list[int],
        added: list[int],
    ) -> None:
        """Nodes removed from ``a``, then nodes of ``b`` in order: moved, added."""
        for i in removed:
            detail = {
                "index": i,
                "config": ga.node_configs[i],
                "reads": ga.describe_args(i),
            }
            self.emit(Change("removed", f"{_join(pa, 'nodes')}[{i}]", ga.name(i), detail=detail))
        moved_to = {j: i for i, j in moved}
        for j in range(len(gb.nodes)):
            where = f"{_join(pb, 'nodes')}[{j}]"
            if j in moved_to:
                detail = {"from": f"nodes[{moved_to[j]}]", "to": f"nodes[{j}]"}
                self.emit(Change("moved", where, gb.name(j), detail=detail))
            if j in added:
                detail = {
                    "index": j,
                    "config": gb.node_configs[j],
                    "after": None,
                    "before": None,
                    "reads": gb.describe_args(j),
                }
                self.emit(Change("added", where, gb.name(j), detail=detail))

    def _graph_nodes_matched(
        self, ga: _GraphView, gb: _GraphView, pa: str, pb: str, m: dict[int, int]
    ) -> None:
        """Matched nodes: their operators compared once per pair, then their wiring."""
        seen_ops: set[tuple[int, int]] = set()
        for i, j in sorted(m.items(), key=lambda t: t[1]):
            oa, ob = ga.nodes[i][0], gb.nodes[j][0]
            if (oa, ob) not in seen_ops:
                seen_ops.add((oa, ob))
                self.operator(
                    ga.ops[oa],
                    gb.ops[ob],
                    f"{_join(pa, 'operators')}[{oa}]",
                    f"{_join(pb, 'operators')}[{ob}]",
                )
            old = ga.describe_args(i, through=m, other=gb)
            new = gb.describe_args(j)
            if old != new:
                where = f"{_join(pb, 'nodes')}[{j}]"
                self.emit(Change("wiring", where, gb.name(j), "args", ga.describe_args(i), new))

    def _graph_outputs(self, ga: _GraphView, gb: _GraphView, pb: str, m: dict[int, int]) -> None:
        """Outputs removed, added, or rewired to a node that is not the matched one."""
        outs_a, outs_b = dict(ga.outputs), dict(gb.outputs)
        for name in list(outs_a) + [n for n in outs_b if n not in outs_a]:
            if name not in outs_b:
                old, new = ga.label(outs_a[name]), None
            elif name not in outs_a:
                old, new = None, gb.label(outs_b[name])
            elif m.get(outs_a[name]) != outs_b[name]:
                old, new = ga.label(outs_a[name]), gb.label(outs_b[name])
            else:
                continue
            where = f"{_join(pb, 'outputs')}.{name}"
            self.emit(Change("wiring", where, "Graph", "outputs", old, new, {"output": name}))


def _show(a: np.ndarray, typed: bool = True) -> Any:
    if a.size <= _SHOW_ELEMENTS:
        return a.tolist()
    return f"{a.dtype if typed else 'array'}{list(a.shape)}"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _align(
    keys_a: list[str], keys_b: list[str], items_a: list[Any], items_b: list[Any]
) -> tuple[list[tuple[int, int]], list[tuple[int, int]], list[int], list[int]]:
    """Align two sequences by identity: matched pairs, moves, removed and added indices."""
    sm = difflib.SequenceMatcher(None, keys_a, keys_b, autojunk=False)
    pairs: list[tuple[int, int]] = []
    removed: list[int] = []
    added: list[int] = []
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag == "equal":
            pairs += list(zip(range(i1, i2), range(j1, j2), strict=True))
        else:
            removed += range(i1, i2)
            added += range(j1, j2)
    moved: list[tuple[int, int]] = []
    for i in list(removed):
        same = [j for j in added if keys_b[j] == keys_a[i]]
        if not same:
            continue
        exact = [j for j in same if _equal(items_a[i], items_b[j])]
        j = (exact or same)[0]
        moved.append((i, j))
        removed.remove(i)
        added.remove(j)
    return pairs, moved, removed, added


class _GraphView:
    """A Graph config's wiring, read defensively."""

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        self.inputs = [str(n) for n in cfg["inputs"]]
        self.ops = list(cfg["operators"])
        self.nodes = [(int(n[0]), list(n[1]), [(str(k), r) for k, r in n[2]]) for n in cfg["nodes"]]
        self.outputs = [(str(n), int(j)) for n, j in cfg["outputs"]]
        self.node_configs = [self.ops[op] for op, _, _ in self.nodes]
        self.keys = [c[TARGET] for c in self.node_configs]

    def name(self, j: int) -> str:
        return _short_name(self.keys[j])

    def label(self, j: int) -> str:
        return f"{self.name(j)}@nodes[{j}]"

    def describe_args(
        self,
        i: int,
        through: Mapping[int, int] | None = None,
        other: _GraphView | None = None,
    ) -> list[str]:
        """The node's arguments as labels; with ``through``, node refs mapped into ``other``."""
        _, args, kwargs = self.nodes[i]

        def ref(r: Any) -> str:
            if isinstance(r, str):
                return f"input {r!r}"
            if through is None:
                return self.label(int(r))
            j = through.get(int(r))
            return (
                f"{self.label(int(r))} (removed)" if j is None or other is None else other.label(j)
            )

        return [ref(r) for r in args] + [f"{k}={ref(r)}" for k, r in kwargs]


def config_diff(a: Operator | Mapping[str, Any], b: Operator | Mapping[str, Any]) -> ConfigDiff:
    """The structural difference from pipeline ``a`` (old) to pipeline ``b`` (new).

    **Arguments:**

    - `a`, `b`: georax operators, or their configs (a ``to_config`` dict, a parsed pipeline
      YAML, or a parsed ``georax.save`` document). Pipelines are preferred: their large arrays
      are compared by value.

    **Returns:** a :class:`ConfigDiff`; ``print(diff)`` for people, ``diff.to_dict()`` for
    programs.

    **Raises:** :class:`~georax.diff.errors.DiffError` for arguments that are neither, and
    ``SerializationError`` for pipelines that have no config (a Lambda...).
    """
    ca, ra = _side(a, "a")
    cb, rb = _side(b, "b")
    walker = _Walker(ra, rb)
    walker.operator(ca, cb, "", "")
    changes = tuple(c for _, c in sorted(walker.changes, key=lambda t: t[0]))
    return ConfigDiff(changes, config_hash(ca), config_hash(cb), tuple(dict.fromkeys(walker.notes)))
