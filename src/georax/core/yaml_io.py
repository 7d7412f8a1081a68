"""YAML in and out: ``dumps_yaml(op)`` and the (optionally sandboxed) loader ``loads_yaml(text)``.

Loading is always ``yaml.safe_load`` semantics (see :mod:`georax.core.sandbox` for the guarded
parse), then :func:`~georax.core.config.from_config`. Passing ``allowed=`` switches to the
sandbox: only those targets, tighter :data:`~georax.core.sandbox.SANDBOX_LIMITS`, and -- with
``input_spec=`` -- a pre-check of the built pipeline (no tracing) and, with ``memory_budget=``,
a price check within a wall-clock limit before anyone runs it (:mod:`georax.core.budget`)::

    ALLOWED = gx.registry.public_operators(include_modules=["georax"])
    pipe = gx.loads_yaml(text, allowed=ALLOWED, variables={"qc_policy": "warn"},
                         input_spec=(4, 512, 512), memory_budget="256MiB", flop_budget=1e10)

Each stage (parse, build, pre-check, price) runs through :func:`loader_stage`, so only georax
errors leave the loader.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import yaml

from georax.core.budget import check_budget, parse_flops, precheck
from georax.core.config import INLINE_MAX, TARGET, ParamsRequiredError, from_config, to_config
from georax.core.errors import GeoraxError, LoaderError, SerializationError
from georax.core.operator import Operator
from georax.core.sandbox import DEFAULT_LIMITS, SANDBOX_LIMITS, Limits, parse_yaml

__all__ = ["SAVED_FORMAT", "dumps_yaml", "loads_yaml", "parse_config"]

#: Value of the ``georax:`` key that marks a document written by :func:`georax.save`.
SAVED_FORMAT = "georax.saved/1"

_T = TypeVar("_T")


class _Dumper(yaml.SafeDumper):
    """SafeDumper that never writes anchors/aliases (a shared child is written out in full)
    and writes a collection in flow style (``{...}``, ``[...]``) when it holds no mapping, so
    leaf operators, placeholders and Graph wiring read as one line each."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _holds_mapping(items: Iterable[Any]) -> bool:
    return any(
        isinstance(v, Mapping) or (isinstance(v, list | tuple) and _holds_mapping(v)) for v in items
    )


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    return dumper.represent_sequence(
        "tag:yaml.org,2002:seq", data, flow_style=not _holds_mapping(data)
    )


def _represent_dict(dumper: yaml.SafeDumper, data: dict[str, Any]) -> yaml.Node:
    return dumper.represent_mapping(
        "tag:yaml.org,2002:map", data.items(), flow_style=not _holds_mapping(data.values())
    )


_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(dict, _represent_dict)


def dump_config_yaml(cfg: Mapping[str, Any]) -> str:
    """Write a config mapping as YAML: keys in insertion order, leaf collections in flow style."""
    return yaml.dump(
        cfg,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=100,
    )


def dumps_yaml(op: Operator, *, max_inline: int | None = INLINE_MAX) -> str:
    """The YAML text of ``op``'s config (see :func:`~georax.core.config.to_config`).

    **Arguments:**

    - `op`: the operator / pipeline.
    - `max_inline`: arrays larger than this become ``_param_`` placeholders, which only
      :func:`georax.load` can fill; use :func:`georax.save` for pipelines with weights, or
      ``max_inline=None`` to write every array inline.

    **Returns:** a YAML document that :func:`loads_yaml` turns back into an equal operator.
    """
    return dump_config_yaml(to_config(op, max_inline=max_inline))


def parse_config(text: str | bytes, *, limits: Limits = DEFAULT_LIMITS) -> Any:
    """Parse a YAML document into a plain config with the guarded safe loader (no building)."""
    return parse_yaml(text, limits)


def loader_stage(name: str, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """Run one stage of loading; anything but a georax error becomes a :class:`LoaderError`.

    The loader's promise is that only georax errors leave it (a server catches
    ``GeoraxError`` and answers 4xx); a bug or library error in an operator must not escape as
    a bare exception, so it is wrapped, naming the stage, with the original chained.
    """
    try:
        return fn(*args, **kwargs)
    except GeoraxError:
        raise
    except Exception as e:
        raise LoaderError(name, e) from e


def loads_yaml(
    text: str | bytes,
    allowed: Iterable[str] | None = None,
    variables: Mapping[str, Any] | None = None,
    *,
    limits: Limits | None = None,
    input_spec: Any = None,
    memory_budget: int | str | None = None,
    flop_budget: float | None = None,
) -> Operator:
    """Build a pipeline from YAML text, optionally sandboxed and priced.

    **Arguments:**

    - `text`: the YAML document (``str`` or UTF-8 ``bytes``).
    - `allowed`: the sandbox allow-list of ``_target_`` strings (e.g.
      ``georax.registry.public_operators()``). When given, untrusted-document limits apply.
    - `variables`: values for ``${name}`` placeholders (the seeds' ``on_fail: ${qc_policy}``).
    - `limits`: override the :class:`~georax.core.sandbox.Limits` (default:
      ``SANDBOX_LIMITS`` with ``allowed``, ``DEFAULT_LIMITS`` without).
    - `input_spec`: the input the pipeline will get -- a shape, a ``jax.ShapeDtypeStruct``, an
      array, or a dict of those for a Graph (see :func:`georax.core.budget.input_spec`). The
      built pipeline is pre-checked for it (:meth:`georax.Operator.precheck`, no tracing).
    - `memory_budget`: bytes (or ``"512MiB"``); with ``input_spec``, the built pipeline is
      priced (within ``limits.max_seconds``) and refused if it would need more.
    - `flop_budget`: with ``memory_budget``, also refuse a compiled program estimated at more
      floating-point operations than this (see :func:`georax.core.budget.price`).

    **Returns:** the operator.

    **Raises:** only georax errors: ``UntrustedTargetError`` (``.target``; an abstract base:
    ``AbstractTargetError``), ``SandboxLimitError``, ``UnsafeYAMLError``,
    ``MalformedYAMLError``, ``ConfigError`` (field named), ``GraphError``,
    ``MissingVariableError``, ``BudgetExceededError`` (``PricingTimeoutError``),
    ``ParamsRequiredError``, and ``LoaderError`` (naming the stage) for anything unexpected.
    """
    if limits is None:
        limits = DEFAULT_LIMITS if allowed is None else SANDBOX_LIMITS
    if memory_budget is not None and input_spec is None:
        raise SerializationError("memory_budget= needs input_spec= (the shape to price for)")
    if flop_budget is not None and memory_budget is None:
        raise SerializationError("flop_budget= needs memory_budget= and input_spec=")
    flop_budget = parse_flops(flop_budget)
    cfg = loader_stage("parse", parse_yaml, text, limits)
    if isinstance(cfg, Mapping) and TARGET not in cfg and cfg.get("georax") == SAVED_FORMAT:
        raise ParamsRequiredError(
            "this document was written by georax.save (config + params file); "
            "load it with georax.load(directory)"
        )
    if not isinstance(cfg, Mapping):
        raise SerializationError(
            f"a pipeline document must be a mapping with _target_, got {type(cfg).__name__}"
        )
    op = loader_stage(
        "build", from_config, cfg, allowed=allowed, variables=variables, limits=limits
    )
    if memory_budget is not None:
        loader_stage(
            "price",
            check_budget,
            op,
            input_spec,
            memory_budget,
            flop_budget=flop_budget,
            limits=limits,
        )
    elif input_spec is not None:
        loader_stage("precheck", precheck, op, input_spec, limits)
    return op
