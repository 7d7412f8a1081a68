"""The sandbox's limits, and the guarded YAML parse: what a document may cost, counted in one place.

:class:`Limits` holds every limit of the loader, the pre-check and pricing (nothing else in
georax hard-codes one). :func:`_measure` is the one place that counts nodes, depth and operators,
on the composed YAML graph and on plain configs (:func:`measure_config`, run again after
``${name}`` variables are filled in); :func:`count_application` counts operator applications
while a pre-check walks a pipeline.

``yaml.safe_load`` already refuses to build arbitrary Python objects, but it happily parses a
"billion laughs" document (nine levels of ten aliases each) into a structure whose *expanded* size
is 10**9 nodes, nests lists until the interpreter's recursion limit breaks, builds recursive lists
from a self-referencing anchor (``&a [*a]``), and silently keeps the last of two duplicate keys.
Every one of those becomes a denial of service, or a confusing error, the moment the parsed tree is
walked. :func:`parse_yaml` composes the document (libyaml's events when available, composed in
Python so every node is seen) and checks, *before* any value is built:

- the document size in bytes (before the parser even starts);
- nesting depth while composing, so a deep document fails long before Python's stack does;
- the number of aliases used;
- the **expanded** node count, depth and operator count, i.e. the size the tree has once aliases
  are followed, computed in linear time on the alias DAG (a billion-laughs document is refused
  in milliseconds), and alias cycles;
- tags: only the plain YAML core types (null, bool, int, float, str, seq, map, merge) are
  accepted, so ``!!python/...``, ``!!binary``, ``!!set``, timestamps written with an explicit tag
  and local tags are refused by name;
- mapping keys: strings only (YAML 1.1 reads bare ``on``/``yes``/``no`` as booleans, a classic
  trap), and no duplicates.

Errors are typed: :class:`SandboxLimitError` (a limit was exceeded), :class:`UnsafeYAMLError` (a
forbidden tag), :class:`MalformedYAMLError` (not valid YAML, duplicate or non-string keys).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

try:  # libyaml's event parser: the same events, several times faster than the Python one
    from yaml.cyaml import CParser
except ImportError:  # PyYAML built without libyaml
    CParser = None

from georax.core.errors import SerializationError

__all__ = [
    "ARRAY",
    "DEFAULT_LIMITS",
    "PARAM",
    "RESERVED_KEYS",
    "SANDBOX_LIMITS",
    "TARGET",
    "Limits",
    "MalformedYAMLError",
    "SandboxLimitError",
    "Size",
    "UnsafeYAMLError",
    "count_application",
    "measure_config",
    "parse_yaml",
]

#: The reserved keys of a pipeline document: an operator's registered name, an inline array and
#: a params-file placeholder.
TARGET, ARRAY, PARAM = "_target_", "_array_", "_param_"
RESERVED_KEYS = (TARGET, ARRAY, PARAM)

#: Seconds an untrusted pipeline may take to be priced (pre-check, trace and compile together).
#: Pre-checks refuse hostile configs in milliseconds; this is the backstop for what they miss.
SANDBOX_SECONDS = 2.0


class SandboxLimitError(SerializationError):
    """A document exceeds one of the loader's :class:`Limits`.

    Attributes:
        limit: the name of the limit (a :class:`Limits` field, e.g. ``"max_depth"``).
        value: the observed value (a lower bound when counting stopped early).
        maximum: the configured maximum.
    """

    def __init__(self, limit: str, value: int, maximum: int, detail: str = "") -> None:
        self.limit = limit
        self.value = value
        self.maximum = maximum
        extra = f" ({detail})" if detail else ""
        super().__init__(f"document exceeds {limit}={maximum}: found {value}{extra}")


class UnsafeYAMLError(SerializationError):
    """The document uses a YAML tag outside the plain core schema (e.g. ``!!python/object``).

    Attributes:
        tag: the refused tag.
    """

    def __init__(self, tag: str, where: str = "") -> None:
        self.tag = tag
        at = f" at {where}" if where else ""
        hint = " (quote dates to keep them strings)" if tag.endswith(":timestamp") else ""
        super().__init__(
            f"YAML tag {tag!r}{at} is not allowed: only null, bool, int, float, str, "
            f"sequences and mappings may appear in a pipeline document{hint}"
        )


class MalformedYAMLError(SerializationError):
    """The text is not a single well-formed YAML document with string keys."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """Every resource limit of the loader, the pre-check and pricing, in one place.

    See :data:`DEFAULT_LIMITS` (trusted documents) and :data:`SANDBOX_LIMITS` (untrusted ones).
    Nothing else in georax hard-codes a limit on what a document may cost.

    **Arguments:**

    - `max_bytes`: document size in UTF-8 bytes (also the most bytes read from a document file).
    - `max_depth`: nesting depth of collections, counted after alias expansion and after
      ``${name}`` variables are filled in.
    - `max_nodes`: scalars + collections + mapping keys, counted the same way.
    - `max_aliases`: alias (``*name``) occurrences in the text.
    - `max_operators`: operators a document may build, and operator *applications* the
      pre-check may walk (a Graph node that reuses an operator counts at every use).
    - `max_array_elements`: elements of one array written in the document (``_array_``) or
      promised by a params placeholder (``_param_``), checked before anything is allocated.
    - `max_array_dims`: dimensions of one such array.
    - `max_extent`: pixels along one axis that a config value may make an operator cover,
      allocate or pad (windows, chip sizes, target grids), checked by
      :meth:`georax.Operator.precheck` before anything is traced. Every static ``int`` field
      (sizes, windows, counts, indices) is bounded by it in absolute value, unless the field is
      declared ``static(bounded=False)``.
    - `max_host_bytes`: host memory an operator may allocate from its config while it is built,
      traced or compiled (window weights, coordinate grids, constants baked into the program).
    - `max_trace_steps`: operations the traced program may hold (equations, sub-programs
      included), and operations one operator may unroll at trace time (batch loops, nested
      patching, pad loops), so tracing and compiling stay bounded whatever the config holds.
    - `max_params_bytes`: size of a params file read by :func:`georax.load`.
    - `max_seconds`: wall-clock seconds that pricing (pre-check, trace, compile) may take before
      it is refused with :class:`~georax.errors.PricingTimeoutError`.
    - `max_formula_chars`, `max_formula_nodes`: length and syntax-tree size of one index
      formula (``SpectralIndex``), checked when the formula is compiled, before it is evaluated.
    """

    max_bytes: int = 16 * 2**20
    max_depth: int = 100
    max_nodes: int = 1_000_000
    max_aliases: int = 10_000
    max_operators: int = 10_000
    max_array_elements: int = 2**28
    max_array_dims: int = 32
    max_extent: int = 2**20
    max_host_bytes: int = 2**34
    max_trace_steps: int = 1_000_000
    max_params_bytes: int = 2**36
    max_seconds: float = 600.0
    max_formula_chars: int = 4000
    max_formula_nodes: int = 2000

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "max_seconds":
                ok = isinstance(value, int | float) and not isinstance(value, bool)
                if not ok or not math.isfinite(value) or value <= 0:
                    raise SerializationError(
                        f"Limits.{f.name}={value!r}: must be a finite number of seconds > 0"
                    )
            elif not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise SerializationError(f"Limits.{f.name}={value!r}: must be an int >= 0")


#: Limits for trusted documents (your own pipelines): generous, but a runaway document still fails.
DEFAULT_LIMITS = Limits()
#: Limits used when ``allowed=`` is given (untrusted documents, the seeds' case 6).
SANDBOX_LIMITS = Limits(
    max_bytes=64 * 2**10,
    max_depth=32,
    max_nodes=10_000,
    max_aliases=64,
    max_operators=256,
    max_array_elements=65_536,
    max_array_dims=8,
    max_extent=2**16,
    max_host_bytes=2**28,
    max_trace_steps=10_000,
    max_params_bytes=2**28,
    max_seconds=SANDBOX_SECONDS,
)

_CORE = "tag:yaml.org,2002:"
_ALLOWED_TAGS = frozenset(
    _CORE + t for t in ("null", "bool", "int", "float", "str", "seq", "map", "merge")
)


def _where(node: Node) -> str:
    mark = node.start_mark
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


if CParser is not None:

    class _SafeLoader(Composer, CParser, SafeConstructor, Resolver):  # type: ignore[misc]
        """libyaml's events, composed in Python, built by the safe constructor."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
            Composer.__init__(self)

else:
    _SafeLoader = yaml.SafeLoader  # type: ignore[misc,assignment]


class _GuardedLoader(_SafeLoader):
    """A safe loader that refuses tags outside the core schema and counts aliases while composing.

    Events come from libyaml when PyYAML has it (the pure-Python parser otherwise); the nodes
    are composed here, in Python, so every node passes :meth:`compose_node`; values are built by
    PyYAML's ``SafeConstructor`` only. Composing also stops past ``max_depth``: it is recursive,
    so a deep document must fail before Python's stack does. Node, depth and operator counts
    proper are made once, on the composed graph, by :func:`_measure`.
    """

    def __init__(self, stream: str, limits: Limits) -> None:
        super().__init__(stream)
        self._limits = limits
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > self._limits.max_aliases:
                raise SandboxLimitError("max_aliases", self._aliases, self._limits.max_aliases)
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > self._limits.max_depth:
            raise SandboxLimitError("max_depth", self._depth, self._limits.max_depth)
        node = super().compose_node(parent, index)
        self._depth -= 1
        if node.tag not in _ALLOWED_TAGS:
            raise UnsafeYAMLError(node.tag, _where(node))
        return node


@dataclasses.dataclass(frozen=True)
class Size:
    """The expanded size of a document or config (shared parts counted at every use).

    Attributes:
        nodes: scalars + collections + mapping keys.
        depth: nesting depth of collections.
        operators: mappings holding ``_target_``.
    """

    nodes: int
    depth: int
    operators: int


def _measure(
    root: Any,
    limits: Limits,
    children: Callable[[Any], list[Any]],
    is_operator: Callable[[Any], bool],
    on_cycle: Callable[[Any], Exception],
    detail: str,
    visit: Callable[[Any], None] | None = None,
) -> Size:
    """The one place where georax counts nodes, depth and operators against :class:`Limits`.

    Works on a DAG (YAML alias targets and Python objects referenced twice are shared): each
    node is measured once and its size reused at every reference, so the *expanded* size of a
    billion-laughs document is known in time linear in what was written. The walk is iterative,
    so no depth reaches Python's recursion limit, and it stops at the first limit exceeded.
    """
    size: dict[int, tuple[int, int, int]] = {}
    active: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        current, expanded = stack.pop()
        key = id(current)
        if expanded:
            active.discard(key)
            kids = [size[id(c)] for c in children(current)]
            nodes = 1 + sum(k[0] for k in kids)
            depth = 1 + max((k[1] for k in kids), default=0)
            ops = int(is_operator(current)) + sum(k[2] for k in kids)
            size[key] = (nodes, depth, ops)
            for name, value, maximum in (
                ("max_nodes", nodes, limits.max_nodes),
                ("max_depth", depth, limits.max_depth),
                ("max_operators", ops, limits.max_operators),
            ):
                if value > maximum:
                    raise SandboxLimitError(name, value, maximum, detail)
            continue
        if key in size:
            continue
        if key in active:
            raise on_cycle(current)
        active.add(key)
        if visit is not None:
            visit(current)
        stack.append((current, True))
        stack.extend((c, False) for c in children(current) if id(c) not in size)
    nodes, depth, ops = size[id(root)]
    return Size(nodes, depth, ops)


def _yaml_children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _yaml_is_operator(node: Node) -> bool:
    return isinstance(node, MappingNode) and any(
        isinstance(k, ScalarNode) and k.value == TARGET for k, _ in node.value
    )


def _yaml_visit(node: Node) -> None:
    if isinstance(node, MappingNode):
        _check_keys(node)


def _recursive_alias(node: Node) -> Exception:
    return MalformedYAMLError(f"recursive alias at {_where(node)}: a node contains itself")


def _config_children(value: Any) -> list[Any]:
    if isinstance(value, Mapping):
        return [*value.keys(), *value.values()]
    if isinstance(value, list | tuple):
        return list(value)
    return []


def _config_is_operator(value: Any) -> bool:
    return isinstance(value, Mapping) and TARGET in value


def measure_config(cfg: Any, limits: Limits, detail: str = "") -> Size:
    """Count the nodes, depth and operators of a plain config (dicts, lists, scalars).

    Shared sub-configs count at every reference, a cycle is refused. Run on every config before
    it is built, *after* ``${name}`` variables are filled in (a variable can hold a list).

    **Returns:** the :class:`Size`.

    **Raises:** :class:`SandboxLimitError` naming the limit.
    """

    def cycle(value: Any) -> Exception:
        return SandboxLimitError(
            "max_depth",
            limits.max_depth + 1,
            limits.max_depth,
            f"the config contains itself (a {type(value).__name__} cycle): infinitely deep",
        )

    return _measure(cfg, limits, _config_children, _config_is_operator, cycle, detail or "config")


# --------------------------------------------------------------------------------------
# Operator applications, counted while the pre-check walks a pipeline
# --------------------------------------------------------------------------------------
@dataclasses.dataclass
class _Applications:
    limits: Limits
    count: int = 0


_APPLICATIONS: contextvars.ContextVar[_Applications | None] = contextvars.ContextVar(
    "georax_applications", default=None
)


@contextlib.contextmanager
def count_application(name: str, limits: Limits) -> Iterator[None]:
    """Count one operator application while a pre-check walks a pipeline.

    :meth:`georax.Operator.precheck` runs inside this (the Operator machinery wraps every
    override), so a container that pre-checks a child once per use (a Graph node reusing an
    operator, a nested patch loop) counts every use against ``limits.max_operators``, and the
    walk itself stops once it would exceed what the trace may hold. The outermost pre-check
    opens the count; nested ones add to it.

    **Raises:** :class:`SandboxLimitError` (``max_operators``).
    """
    current = _APPLICATIONS.get()
    token = None
    if current is None:
        current = _Applications(limits)
        token = _APPLICATIONS.set(current)
    try:
        current.count += 1
        if current.count > current.limits.max_operators:
            raise SandboxLimitError(
                "max_operators",
                current.count,
                current.limits.max_operators,
                f"operator applications, at {name}; a reused operator counts at every use",
            )
        yield
    finally:
        if token is not None:
            _APPLICATIONS.reset(token)


def _check_keys(node: MappingNode) -> None:
    seen: set[str] = set()
    for key, _ in node.value:
        if key.tag == _CORE + "merge":
            continue
        if not isinstance(key, ScalarNode) or key.tag != _CORE + "str":
            shown = key.value if isinstance(key, ScalarNode) else type(key).__name__
            raise MalformedYAMLError(
                f"mapping key {shown!r} at {_where(key)} is not a string (YAML 1.1 reads bare "
                "on/off/yes/no/true/false as booleans and digits as numbers: quote the key)"
            )
        if key.value in seen:
            raise MalformedYAMLError(f"duplicate key {key.value!r} at {_where(key)}")
        seen.add(key.value)


def parse_yaml(text: str | bytes, limits: Limits = DEFAULT_LIMITS) -> Any:
    """Parse one YAML document with the safe constructor, refusing costly or unsafe documents.

    **Arguments:**

    - `text`: the document (``str``, or UTF-8 ``bytes``).
    - `limits`: the :class:`Limits` to enforce.

    **Returns:** the plain Python value (dicts, lists, str, int, float, bool, None).

    **Raises:** :class:`SandboxLimitError`, :class:`UnsafeYAMLError`, :class:`MalformedYAMLError`.
    """
    if isinstance(text, bytes | bytearray):
        n_bytes = len(text)
        if n_bytes > limits.max_bytes:
            raise SandboxLimitError("max_bytes", n_bytes, limits.max_bytes)
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as e:
            raise MalformedYAMLError(f"document is not UTF-8: {e}") from None
    if not isinstance(text, str):
        raise MalformedYAMLError(f"expected YAML text (str or bytes), got {type(text).__name__}")
    # Cheap bound first (a char is at most 4 bytes), exact count only when it can matter.
    if len(text) > limits.max_bytes or 4 * len(text) > limits.max_bytes:
        n_bytes = len(text.encode("utf-8", errors="surrogatepass"))
        if n_bytes > limits.max_bytes:
            raise SandboxLimitError("max_bytes", n_bytes, limits.max_bytes)
    loader = None
    try:
        loader = _GuardedLoader(text, limits)
        root = loader.get_single_node()
        if root is None:
            raise MalformedYAMLError("the document is empty")
        _measure(
            root,
            limits,
            _yaml_children,
            _yaml_is_operator,
            _recursive_alias,
            "after alias expansion",
            _yaml_visit,
        )
        return loader.construct_document(root)
    except yaml.YAMLError as e:
        if "maximum nesting depth" in str(e):  # libyaml's own depth guard fired first
            raise SandboxLimitError(
                "max_depth", limits.max_depth + 1, limits.max_depth, "libyaml's nesting limit"
            ) from None
        raise MalformedYAMLError(f"invalid YAML: {e}") from None
    except ValueError as e:  # e.g. an int literal longer than Python's digit limit
        if isinstance(e, SerializationError):
            raise
        raise MalformedYAMLError(f"invalid YAML value: {e}") from None
    except RecursionError:
        raise SandboxLimitError(
            "max_depth", limits.max_depth + 1, limits.max_depth, "Python's recursion limit"
        ) from None
    finally:
        if loader is not None:
            loader.dispose()
