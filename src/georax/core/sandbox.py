"""Guarded YAML parsing: ``yaml.safe_load`` semantics plus hard limits on what a document may cost.

``yaml.safe_load`` already refuses to build arbitrary Python objects, but it happily parses a
"billion laughs" document (nine levels of ten aliases each) into a structure whose *expanded* size
is 10**9 nodes, nests lists until the interpreter's recursion limit breaks, builds recursive lists
from a self-referencing anchor (``&a [*a]``), and silently keeps the last of two duplicate keys.
Every one of those becomes a denial of service, or a confusing error, the moment the parsed tree is
walked. :func:`parse_yaml` composes the document with :class:`yaml.SafeLoader` (so the safe
constructor, and only it, builds the Python values) but checks, *before* any value is built:

- the document size in bytes (before the parser even starts);
- nesting depth, counted while composing so a deep document fails long before Python's stack does;
- the number of nodes written and the number of aliases used;
- the **expanded** node count and depth, i.e. the size the tree has once aliases are followed,
  computed in linear time on the alias DAG (a billion-laughs document is refused in milliseconds),
  and alias cycles;
- tags: only the plain YAML core types (null, bool, int, float, str, seq, map, merge) are
  accepted, so ``!!python/...``, ``!!binary``, ``!!set``, timestamps written with an explicit tag
  and local tags are refused by name;
- mapping keys: strings only (YAML 1.1 reads bare ``on``/``yes``/``no`` as booleans, a classic
  trap), and no duplicates.

Errors are typed: :class:`SandboxLimitError` (a limit was exceeded), :class:`UnsafeYAMLError` (a
forbidden tag), :class:`MalformedYAMLError` (not valid YAML, duplicate or non-string keys).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from georax.core.errors import SerializationError

__all__ = [
    "DEFAULT_LIMITS",
    "SANDBOX_LIMITS",
    "Limits",
    "MalformedYAMLError",
    "SandboxLimitError",
    "UnsafeYAMLError",
    "parse_yaml",
]


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
    """Resource limits of the YAML loader (see :data:`DEFAULT_LIMITS`, :data:`SANDBOX_LIMITS`).

    **Arguments:**

    - `max_bytes`: document size in UTF-8 bytes.
    - `max_depth`: nesting depth of collections, counted after alias expansion.
    - `max_nodes`: scalars + collections, counted after alias expansion.
    - `max_aliases`: alias (``*name``) occurrences in the text.
    - `max_operators`: operators a document may build (a million-step Sequential is refused
      before one is constructed).
    - `max_array_elements`: elements of one array written in the document (``_array_``) or
      promised by a params placeholder (``_param_``), checked before anything is allocated.
    - `max_extent`: pixels along one axis that a config value may make an operator cover,
      allocate or pad (windows, chip sizes, target grids), checked by
      :meth:`georax.Operator.precheck` before anything is traced.
    - `max_host_bytes`: host memory an operator may allocate from its config while it is built,
      traced or compiled (window weights, coordinate grids, baked constants).
    - `max_trace_steps`: operations an operator may unroll at trace time (batch loops, nested
      patching, pad loops), so tracing time stays bounded whatever the config holds.
    """

    max_bytes: int = 16 * 2**20
    max_depth: int = 100
    max_nodes: int = 1_000_000
    max_aliases: int = 10_000
    max_operators: int = 10_000
    max_array_elements: int = 2**28
    max_extent: int = 2**20
    max_host_bytes: int = 2**34
    max_trace_steps: int = 1_000_000

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
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
    max_extent=2**16,
    max_host_bytes=2**28,
    max_trace_steps=10_000,
)

_CORE = "tag:yaml.org,2002:"
_ALLOWED_TAGS = frozenset(
    _CORE + t for t in ("null", "bool", "int", "float", "str", "seq", "map", "merge")
)


def _where(node: Node) -> str:
    mark = node.start_mark
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


class _GuardedLoader(yaml.SafeLoader):
    """SafeLoader that counts while composing: depth, nodes written, aliases, tags."""

    def __init__(self, stream: str, limits: Limits) -> None:
        super().__init__(stream)
        self._limits = limits
        self._depth = 0
        self._nodes = 0
        self._aliases = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > self._limits.max_aliases:
                raise SandboxLimitError("max_aliases", self._aliases, self._limits.max_aliases)
            return super().compose_node(parent, index)
        self._depth += 1
        self._nodes += 1
        if self._depth > self._limits.max_depth:
            raise SandboxLimitError("max_depth", self._depth, self._limits.max_depth)
        if self._nodes > self._limits.max_nodes:
            raise SandboxLimitError("max_nodes", self._nodes, self._limits.max_nodes)
        node = super().compose_node(parent, index)
        self._depth -= 1
        if node.tag not in _ALLOWED_TAGS:
            raise UnsafeYAMLError(node.tag, _where(node))
        return node


def _check_expanded(root: Node, limits: Limits) -> None:
    """Expanded node count and depth of the alias DAG, mapping keys, and alias cycles."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    active: set[int] = set()

    def visit(node: Node) -> None:
        # Iterative post-order walk: a deep alias chain must not hit Python's recursion limit.
        stack: list[tuple[Node, bool]] = [(node, False)]
        while stack:
            current, expanded = stack.pop()
            key = id(current)
            if expanded:
                active.discard(key)
                children = _children(current)
                size[key] = 1 + sum(size[id(c)] for c in children)
                depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
                if size[key] > limits.max_nodes:
                    raise SandboxLimitError(
                        "max_nodes", size[key], limits.max_nodes, "after alias expansion"
                    )
                if depth[key] > limits.max_depth:
                    raise SandboxLimitError(
                        "max_depth", depth[key], limits.max_depth, "after alias expansion"
                    )
                continue
            if key in size:
                continue
            if key in active:
                raise MalformedYAMLError(
                    f"recursive alias at {_where(current)}: a node contains itself"
                )
            active.add(key)
            if isinstance(current, MappingNode):
                _check_keys(current)
            stack.append((current, True))
            stack.extend((c, False) for c in _children(current) if id(c) not in size)

    visit(root)


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


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
        _check_expanded(root, limits)
        return loader.construct_document(root)
    except yaml.YAMLError as e:
        raise MalformedYAMLError(f"invalid YAML: {e}") from None
    except ValueError as e:  # e.g. an int literal longer than Python's digit limit
        if isinstance(e, SerializationError):
            raise
        raise MalformedYAMLError(f"invalid YAML value: {e}") from None
    except RecursionError:
        raise SandboxLimitError("max_depth", -1, limits.max_depth, "recursion limit") from None
    finally:
        if loader is not None:
            loader.dispose()
