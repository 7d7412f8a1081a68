"""``georax hash`` and ``georax validate``: pipeline documents from the command line.

::

    georax hash pipelines/ndvi.yaml                # config_hash, params_hash, digest
    georax hash saved_dir/                         # a georax.save directory (verified first)
    georax validate upload.yaml --sandbox --input-shape 4,512,512 --budget 256MiB

Both commands first import georax's operator layers (``georax.OPERATOR_PACKAGES``, through
:func:`georax.core.registry.discover`) so every built-in operator is known, plus any
``--import MODULE`` you name (trusted code of yours, e.g. a package of custom operators). Names
inside the document are never imported.

Files are read as regular files only, capped at the document limit (a FIFO or a symlink to a
device is refused, never read); ``--sandbox`` applies the sandbox limits to plain documents and
saved directories alike.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax.numpy as jnp

import georax
from georax.core import registry
from georax.core.budget import format_bytes, parse_bytes, parse_flops, price
from georax.core.config import TARGET, config_and_params, from_config
from georax.core.errors import GeoraxError, SerializationError
from georax.core.files import read_regular_file
from georax.core.hashing import config_hash, params_hash, pipeline_digest
from georax.core.operator import Operator
from georax.core.params import PIPELINE_FILE, load
from georax.core.sandbox import (
    DEFAULT_LIMITS,
    SANDBOX_LIMITS,
    Limits,
    measure_config,
    parse_yaml,
)
from georax.core.yaml_io import SAVED_FORMAT, loader_stage, loads_yaml


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
    v.add_argument("--dtype", type=_dtype, default="float32", help="input dtype for --input-shape")
    v.add_argument(
        "--budget",
        type=_budget,
        metavar="SIZE",
        help="refuse if the priced pipeline needs more memory (e.g. 512MiB, 2GB)",
    )
    v.add_argument(
        "--max-flops",
        type=_flops,
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
    except GeoraxError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _flops(text: str) -> float:
    try:
        flops = parse_flops(text)
    except GeoraxError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    assert flops is not None
    return flops


def _dtype(text: str) -> str:
    try:
        return jnp.dtype(text).name
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a dtype (e.g. float32, uint16)"
        ) from None


def _variable(text: str) -> tuple[str, Any]:
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    try:
        value = parse_yaml(raw, SANDBOX_LIMITS) if raw else ""
    except SerializationError as e:
        raise argparse.ArgumentTypeError(f"--var {name}: {e}") from None
    return name, value


def _prepare(args: argparse.Namespace) -> None:
    registry.discover(georax.OPERATOR_PACKAGES)
    for module in args.imports:
        try:
            importlib.import_module(module)
        except ImportError as e:  # a typo in --import is a usage error, not a traceback
            raise SerializationError(f"--import {module}: {e}") from None


def _document_path(path: Path) -> Path:
    return path / PIPELINE_FILE if path.is_dir() else path


def _load(args: argparse.Namespace, allowed: frozenset[str] | None, limits: Limits) -> Operator:
    path: Path = args.pipeline
    variables = dict(args.var)
    text = read_regular_file(_document_path(path), limits.max_bytes, "pipeline document")
    doc = loader_stage("parse", parse_yaml, text, limits)
    if isinstance(doc, Mapping) and TARGET not in doc and doc.get("georax") == SAVED_FORMAT:
        if variables:
            raise SerializationError("--var applies to plain pipeline YAML, not a saved pipeline")
        return load(path, allowed=allowed, limits=limits)
    return loads_yaml(text, allowed=allowed, variables=variables, limits=limits)


def _round_trip(op: Operator) -> None:
    """The pipeline must rebuild from its own config to the same hash (weights included)."""
    cfg, params = config_and_params(op)
    again = from_config(cfg, param_factory=lambda key, shape, dtype: params[key])
    if config_hash(again) != config_hash(op) or params_hash(again) != params_hash(op):
        raise SerializationError("the pipeline does not round-trip through its config")


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
    loader_stage("verify", _round_trip, op)
    result = None
    if args.input_shape is not None:
        result = loader_stage(
            "price",
            price,
            op,
            args.input_shape,
            dtype=args.dtype,
            budget=args.budget,
            flop_budget=args.max_flops,
            limits=limits,
        )
    mode = "sandboxed" if args.sandbox else "trusted"
    count = measure_config(config_and_params(op)[0], limits).operators
    print(f"ok ({mode}): {op.display_name}, {count} operators")
    print(f"config_hash  {config_hash(op)}")
    if result is not None:
        print(f"price for {args.dtype}{list(args.input_shape)}:")
        print(result)
        if args.budget is not None:
            print(f"within the budget of {format_bytes(args.budget)}")
    return 0
