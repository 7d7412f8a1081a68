"""The ``georax`` command.

Each subcommand lives in its own module under ``georax.cli`` exposing
``register(subparsers) -> None``, which adds an ``argparse`` sub-parser whose ``func`` default is
called with the parsed arguments and returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from georax.core.errors import GeoraxError

# Subcommand modules, in the order they appear in --help.
COMMAND_MODULES = (
    "georax.cli.demo",
    "georax.cli.config_cmds",
    "georax.cli.repro_cmds",
    "georax.cli.run_cmds",
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="georax", description="JAX-first geospatial raster pipelines."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:  # a real import error inside the module: surface it
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``georax`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except GeoraxError as e:
        print(f"georax {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
