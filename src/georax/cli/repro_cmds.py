"""Release and reproducibility commands: ``freeze``, ``verify``, ``rerun``, ``diff``, ``ab``.

::

    georax freeze pipeline.yaml --input scene=scene.tif --meta doi=10.x/y -o result.gxa
    georax verify result.gxa --expect 5f0c...         # exit 1 if anything was tampered with
    georax rerun result.gxa --input scene=/new/home/scene.tif
    georax diff old.yaml new.yaml [--json] [--exit-code]
    georax ab old.yaml new.yaml --inputs scenes/ --metric rmse --gate "rmse:p99<=0.02" --out ab/

Exit status: 0 when all is well; 1 for an error (a tampered or unsafe artifact, an unreadable
file -- printed as one line, no traceback); 3 when the command ran but its check failed (a
rerun that differs, a failed A/B gate, differences under ``diff --exit-code``).

A pipeline argument may be a pipeline YAML, a directory written by :func:`georax.save`, or a
georax artifact (its verified pipeline is used). Operators are looked up in georax's registry
(plus modules named with ``--import``); names inside documents are never imported.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
from collections.abc import Mapping
from pathlib import Path

import georax
from georax.array import metrics as gm
from georax.core import registry
from georax.core.budget import parse_bytes
from georax.core.config import TARGET
from georax.core.files import read_regular_file
from georax.core.operator import Operator
from georax.core.params import PIPELINE_FILE
from georax.core.params import load as load_saved
from georax.core.sandbox import DEFAULT_LIMITS, parse_yaml
from georax.core.yaml_io import SAVED_FORMAT, loads_yaml
from georax.diff import AB, DiffError, config_diff
from georax.diff.ab import STATS
from georax.repro import ReproError, freeze
from georax.repro import load as load_artifact

#: Exit status of a command that ran but whose check failed (gate, rerun, diff --exit-code).
CHECK_FAILED = 3

_METRICS = {
    "rmse": lambda a: gm.RMSE(),
    "mae": lambda a: gm.MAE(),
    "max_abs_error": lambda a: gm.MaxAbsError(),
    "fraction_changed": lambda a: gm.FractionChanged(atol=a.atol),
    "kl_divergence": lambda a: gm.KLDivergence(),
    "confusion_shift": lambda a: gm.ConfusionShift(num_classes=_need_classes(a)),
}
_GATE = re.compile(r"(?:(?P<metric>[A-Za-z0-9_\[\]/.-]+):)?(?P<stat>[a-z0-9]+)\s*<=\s*(?P<v>\S+)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``freeze``, ``verify``, ``rerun``, ``diff`` and ``ab``."""
    f = subparsers.add_parser(
        "freeze", help="run a pipeline and freeze it as a verifiable artifact"
    )
    f.add_argument("pipeline", type=Path, help="pipeline YAML or georax.save directory")
    f.add_argument("-o", "--output", type=Path, required=True, help="artifact file to write")
    f.add_argument(
        "--input", dest="inputs", action="append", default=[], type=_pair, metavar="NAME=PATH"
    )
    f.add_argument("--meta", action="append", default=[], type=_pair, metavar="KEY=VALUE")
    f.add_argument(
        "--embed-below", type=_size, metavar="SIZE", help="embed input files smaller than this"
    )
    f.add_argument("--deps-lock", type=Path, metavar="FILE", help="lock file to embed")
    f.add_argument("--seed", type=int, help="seed of the key for stochastic pipelines")
    f.add_argument("--no-compress", action="store_true", help="write a plain (uncompressed) tar")
    _imports(f)
    f.set_defaults(func=run_freeze)

    v = subparsers.add_parser("verify", help="verify every digest of an artifact")
    v.add_argument("artifact", type=Path)
    _artifact_options(v)
    v.set_defaults(func=run_verify)

    r = subparsers.add_parser("rerun", help="rerun an artifact and compare with its outputs")
    r.add_argument("artifact", type=Path)
    _artifact_options(r)
    r.add_argument(
        "--input",
        dest="inputs",
        action="append",
        default=[],
        type=_pair,
        metavar="NAME=PATH",
        help="where an input recorded by path now lives (verified by digest)",
    )
    r.add_argument("--rtol", type=float, default=1e-5)
    r.add_argument("--atol", type=float, default=1e-8)
    r.set_defaults(func=run_rerun)

    d = subparsers.add_parser("diff", help="structural diff of two pipelines")
    d.add_argument("old", type=Path)
    d.add_argument("new", type=Path)
    d.add_argument("--json", action="store_true", help="print the diff as JSON")
    d.add_argument("--exit-code", action="store_true", help=f"exit {CHECK_FAILED} if they differ")
    _imports(d)
    d.set_defaults(func=run_diff)

    a = subparsers.add_parser("ab", help="numerical A/B regression of two pipelines")
    a.add_argument("old", type=Path)
    a.add_argument("new", type=Path)
    a.add_argument(
        "--inputs",
        nargs="+",
        required=True,
        type=Path,
        metavar="PATH",
        help="rasters (.tif, .npy) or directories of them",
    )
    a.add_argument(
        "--metric", action="append", choices=sorted(_METRICS), help="repeatable; default rmse"
    )
    a.add_argument("--atol", type=float, default=0.0, help="tolerance of fraction_changed")
    a.add_argument("--num-classes", type=int, help="classes, for confusion_shift")
    a.add_argument(
        "--gate",
        action="append",
        default=[],
        metavar="[METRIC:]STAT<=VALUE",
        help=f"fail (exit {CHECK_FAILED}) unless it holds; STAT in {', '.join(STATS)}",
    )
    a.add_argument("--no-bimodal", action="store_true", help="a bimodal metric fails the gate")
    a.add_argument("--worst", type=int, default=5, help="worst inputs listed per metric")
    a.add_argument("--out", type=Path, help="write ab_report.json and ab_histogram.png here")
    _imports(a)
    a.set_defaults(func=run_ab)


# ------------------------------------------------------------------------------------------------
# Argument helpers
# ------------------------------------------------------------------------------------------------
def _imports(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import this module first so its operators are registered (repeatable)",
    )


def _artifact_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--expect", metavar="DIGEST", help="the artifact digest you pinned")
    p.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="TARGET",
        help="also allow this _target_ in the sandboxed pipeline (repeatable)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    _imports(p)


def _pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return name, value


def _size(text: str) -> int:
    try:
        return parse_bytes(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _need_classes(args: argparse.Namespace) -> int:
    if args.num_classes is None:
        raise DiffError("--metric confusion_shift needs --num-classes N")
    return args.num_classes


def _prepare(args: argparse.Namespace) -> None:
    registry.discover(georax.OPERATOR_PACKAGES)
    for module in args.imports:
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise ReproError(f"--import {module}: {e}") from None


def _is_archive(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(512)
    except OSError:
        return False
    return head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")) or head[257:262] == b"ustar"


def _load_pipeline(path: Path, args: argparse.Namespace) -> Operator:
    """A pipeline from YAML, a georax.save directory, or an artifact (trusted, registry only)."""
    if path.is_file() and _is_archive(path):
        return load_artifact(path, allowed=_allowed(args)).pipeline
    doc_path = path / PIPELINE_FILE if path.is_dir() else path
    text = read_regular_file(doc_path, DEFAULT_LIMITS.max_bytes, "pipeline document")
    doc = parse_yaml(text, DEFAULT_LIMITS)
    if isinstance(doc, Mapping) and TARGET not in doc and doc.get("georax") == SAVED_FORMAT:
        return load_saved(doc_path)
    return loads_yaml(text)


def _allowed(args: argparse.Namespace) -> frozenset[str]:
    return registry.public_operators() | frozenset(getattr(args, "allow", []))


# ------------------------------------------------------------------------------------------------
# Commands
# ------------------------------------------------------------------------------------------------
def run_freeze(args: argparse.Namespace) -> int:
    """Freeze the pipeline with its inputs and write the artifact."""
    _prepare(args)
    pipeline = _load_pipeline(args.pipeline, args)
    names = [n for n, _ in args.inputs]
    if len(set(names)) != len(names):
        raise ReproError(f"--input names repeat: {names}")
    art = freeze(
        pipeline,
        inputs={n: Path(p) for n, p in args.inputs},
        metadata=dict(args.meta),
        embed_inputs_below=args.embed_below,
        deps_lock=args.deps_lock,
        seed=args.seed,
    )
    art.save(args.output, compress=not args.no_compress)
    print(art.summary())
    print(f"wrote {args.output}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    """Verify every member of the artifact (exit 1 on any mismatch)."""
    _prepare(args)
    art = load_artifact(args.artifact, expected_digest=args.expect, allowed=_allowed(args))
    if args.json:
        print(json.dumps({"ok": True, "digest": art.digest, "members": art.member_names}))
    else:
        print(art.summary())
        print(f"verified: {len(art.member_names)} members, every digest matches")
    return 0


def run_rerun(args: argparse.Namespace) -> int:
    """Rerun the artifact; exit 3 if an output differs beyond tolerance."""
    _prepare(args)
    art = load_artifact(args.artifact, expected_digest=args.expect, allowed=_allowed(args))
    report = art.rerun({n: Path(p) for n, p in args.inputs}, rtol=args.rtol, atol=args.atol)
    print(json.dumps(report.to_dict(), indent=2) if args.json else str(report))
    return 0 if report.ok else CHECK_FAILED


def run_diff(args: argparse.Namespace) -> int:
    """Print the structural diff of two pipelines."""
    _prepare(args)
    diff = config_diff(_load_pipeline(args.old, args), _load_pipeline(args.new, args))
    print(diff.to_json() if args.json else str(diff))
    return CHECK_FAILED if args.exit_code and not diff.equal else 0


def _gates(specs: list[str]) -> list[tuple[str | None, str, float]]:
    gates = []
    for spec in specs:
        m = _GATE.fullmatch(spec.strip())
        if m is None or m["stat"] not in STATS:
            raise DiffError(
                f"--gate {spec!r}: expected [METRIC:]STAT<=VALUE with STAT in {list(STATS)}"
            )
        try:
            value = float(m["v"])
        except ValueError:
            raise DiffError(f"--gate {spec!r}: {m['v']!r} is not a number") from None
        gates.append((m["metric"], m["stat"], value))
    return gates


def run_ab(args: argparse.Namespace) -> int:
    """Run the A/B comparison, print the summary, write the report, apply the gates."""
    gates = _gates(args.gate)
    _prepare(args)
    metrics = [_METRICS[name](args) for name in (args.metric or ["rmse"])]
    ab = AB(
        _load_pipeline(args.old, args), _load_pipeline(args.new, args), metrics, worst_n=args.worst
    )
    for p in args.inputs:
        if not p.exists():
            raise DiffError(f"--inputs {p}: no such file or directory")
    report = ab.run(args.inputs)
    print(report.summary())
    if report.config_diff is not None:
        print("structural diff:")
        print("  " + str(report.config_diff).replace("\n", "\n  "))
    if args.out is not None:
        paths = report.save(args.out)
        print(f"wrote {paths['json']} and {paths['png']}")
    failed = False
    by_metric: dict[str, dict[str, float]] = {}
    for metric, stat, value in gates:
        by_metric.setdefault(metric or report.metrics[0], {})[f"max_{stat}"] = value
    if args.no_bimodal:
        for name in report.metrics:
            by_metric.setdefault(name, {})
    for metric, limits in by_metric.items():
        result = report.check(metric, allow_bimodal=not args.no_bimodal, **limits)
        print(result)
        failed |= not result.passed
    return CHECK_FAILED if failed else 0
