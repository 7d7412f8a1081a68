"""``georax hash`` and ``georax validate``: pipeline documents from the command line.

::

    georax hash pipelines/ndvi.yaml                # config_hash, params_hash, digest
    georax hash saved_dir/                         # a georax.save directory (verified first)
    georax validate upload.yaml --sandbox --input-shape 4,512,512 --budget 256MiB

Both commands first import georax's operator layers (:func:`georax.core.registry.discover`) so
every built-in operator is known, plus any ``--import MODULE`` you name (trusted code of yours,
e.g. a package of custom operators). Names inside the document are never imported.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from georax.core import registry
from georax.core.budget import format_bytes, parse_bytes, price
from georax.core.config import TARGET, from_config, to_config
from georax.core.errors import SerializationError
from georax.core.hashing import config_hash, params_hash, pipeline_digest
from georax.core.operator import Operator
from georax.core.params import PIPELINE_FILE, load
from georax.core.sandbox import DEFAULT_LIMITS, SANDBOX_LIMITS, Limits, parse_yaml
from georax.core.yaml_io import SAVED_FORMAT, loads_yaml


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``hash`` and ``validate`` subcommands."""
    h = subparsers.add_parser(
        "hash", help="print config_hash, params_hash and digest of a pipeline YAML"
    )
    _common(h)
    h.add_argument("-q", "--quiet", action="store_true", help="print only the config hash")
    h.set_defaults(func=run_hash)

    v = subparsers.add_parser(
        "validate", help="load a pipeline YAML (optionally sandboxed and priced) and report"
    )
    _common(v)
    v.add_argument(
        "--sandbox",
        action="store_true",
        help="load as an untrusted document: public operators only, sandbox limits",
    )
    v.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="TARGET",
        help="with --sandbox, also allow this _target_ (repeatable)",
    )
    v.add_argument(
        "--input-shape",
        type=_shape,
        metavar="D0,D1,...",
        help="price the pipeline for an input of this shape (e.g. 4,512,512)",
    )
    v.add_argument("--dtype", default="float32", help="input dtype for --input-shape")
    v.add_argument(
        "--budget",
        type=_budget,
        metavar="SIZE",
        help="refuse if the priced pipeline needs more memory (e.g. 512MiB, 2GB)",
    )
    v.add_argument(
        "--max-flops",
        type=float,
        metavar="N",
        help="refuse if the compiled program's cost analysis exceeds N FLOPs (e.g. 1e12)",
    )
    v.set_defaults(func=run_validate)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("pipeline", type=Path, help="pipeline YAML, or a directory from georax.save")
    p.add_argument(
        "--var",
        action="append",
        default=[],
        type=_variable,
        metavar="NAME=VALUE",
        help="fill ${NAME} placeholders (VALUE is read as a YAML scalar; repeatable)",
    )
    p.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import this module first so its operators are registered (repeatable)",
    )


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(d) for d in text.replace("x", ",").split(",") if d.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape like 4,512,512") from None
    if not shape or any(d < 0 for d in shape):
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape like 4,512,512")
    return shape


def _budget(text: str) -> int:
    try:
        return parse_bytes(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _variable(text: str) -> tuple[str, Any]:
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    try:
        value = parse_yaml(raw, Limits(max_bytes=4096, max_depth=8, max_nodes=256)) if raw else ""
    except SerializationError as e:
        raise argparse.ArgumentTypeError(f"--var {name}: {e}") from None
    return name, value


def _prepare(args: argparse.Namespace) -> None:
    registry.discover()
    for module in args.imports:
        importlib.import_module(module)


def _document_path(path: Path) -> Path:
    return path / PIPELINE_FILE if path.is_dir() else path


def _is_saved(path: Path, limits: Limits) -> bool:
    try:
        text = _document_path(path).read_bytes()
    except OSError as e:
        raise SerializationError(f"cannot read {path}: {e.strerror or e}") from None
    doc = parse_yaml(text, limits)
    return isinstance(doc, Mapping) and TARGET not in doc and doc.get("georax") == SAVED_FORMAT


def _load(args: argparse.Namespace, allowed: frozenset[str] | None, limits: Limits) -> Operator:
    path: Path = args.pipeline
    variables = dict(args.var)
    if _is_saved(path, limits):
        if variables:
            raise SerializationError("--var applies to plain pipeline YAML, not a saved pipeline")
        # A saved pipeline may carry large weights; its document limits stay the trusted ones
        # except for the target allow-list.
        return load(path, allowed=allowed)
    text = _document_path(path).read_bytes()
    return loads_yaml(text, allowed=allowed, variables=variables, limits=limits)


def _count_operators(cfg: Any) -> int:
    if isinstance(cfg, Mapping):
        return int(TARGET in cfg) + sum(_count_operators(v) for v in cfg.values())
    if isinstance(cfg, list):
        return sum(_count_operators(v) for v in cfg)
    return 0


def run_hash(args: argparse.Namespace) -> int:
    """Print the pipeline's config hash (and params hash and digest unless ``--quiet``)."""
    _prepare(args)
    op = _load(args, None, DEFAULT_LIMITS)
    if args.quiet:
        print(config_hash(op))
        return 0
    print(f"config_hash  {config_hash(op)}")
    print(f"params_hash  {params_hash(op)}")
    print(f"digest       {pipeline_digest(op)}")
    return 0


def run_validate(args: argparse.Namespace) -> int:
    """Load (sandboxed if asked), check it round-trips, price it if asked; report."""
    if (args.budget is not None or args.max_flops is not None) and args.input_shape is None:
        raise SerializationError("--budget/--max-flops need --input-shape (the input to price)")
    _prepare(args)
    allowed = None
    limits = DEFAULT_LIMITS
    if args.sandbox:
        allowed = registry.public_operators() | frozenset(args.allow)
        limits = SANDBOX_LIMITS
    op = _load(args, allowed, limits)
    cfg = to_config(op)
    again = from_config(cfg)
    if config_hash(again) != config_hash(op):
        raise SerializationError("the pipeline does not round-trip through its config")
    result = None
    if args.input_shape is not None:
        result = price(
            op,
            args.input_shape,
            dtype=args.dtype,
            budget=args.budget,
            flop_budget=args.max_flops,
        )
    mode = "sandboxed" if args.sandbox else "trusted"
    print(f"ok ({mode}): {op.display_name}, {_count_operators(cfg)} operators")
    print(f"config_hash  {config_hash(op)}")
    if result is not None:
        print(f"price for {args.dtype}{list(args.input_shape)}:")
        print(result)
        if args.budget is not None:
            print(f"within the budget of {format_bytes(args.budget)}")
    return 0
