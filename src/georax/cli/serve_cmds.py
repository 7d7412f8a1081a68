"""``georax serve SERVICES.yaml``: run the HTTP server of a services file.

Loads every pipeline of the file through the sandbox, prices it for its declared inputs against
the file's budgets, compiles and warms it, compiles each tile layer, then serves with uvicorn
(``GET /pipelines``, ``POST /process/{name}``, ``POST /pipelines``, ``GET /tiles/...``,
``GET /map``, ``GET /health``, ``GET /metrics``; see ``georax.serve``). It listens on 127.0.0.1
unless told otherwise: expose it deliberately, behind a proxy that terminates TLS.

Needs the ``serve`` extra: ``pip install "georax[serve]"``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``serve`` subcommand."""
    p = subparsers.add_parser(
        "serve",
        help="serve the pipelines and tile layers of a services YAML over HTTP",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("services", type=Path, help="the services YAML file")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (8000)")
    p.add_argument(
        "--keep-alive",
        type=float,
        default=30.0,
        help="seconds an idle keep-alive connection stays open (30; clients reuse them)",
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=("critical", "error", "warning", "info", "debug"),
        help="uvicorn's log level",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the app (loading, pricing and compiling everything), then serve until stopped."""
    if not 0 <= args.port <= 65535:
        print(f"georax serve: error: --port {args.port} is not a TCP port", file=sys.stderr)
        return 2
    if not 0 < args.keep_alive < 3600:
        print("georax serve: error: --keep-alive must be in (0, 3600) seconds", file=sys.stderr)
        return 2
    try:  # the serve extra is optional: say how to get it instead of a traceback
        import uvicorn

        from georax.serve import create_app
    except ImportError as e:
        print(
            f"georax serve: error: {e.name or e} is not installed; "
            'install the serve extra: pip install "georax[serve]"',
            file=sys.stderr,
        )
        return 1
    app = create_app(args.services)
    state = app.state.georax
    print(
        f"georax serve: {len(state.store.names())} pipeline(s), {len(state.layers)} layer(s); "
        f"outputs under {state.output_root}; listening on http://{args.host}:{args.port}",
        flush=True,
    )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        timeout_keep_alive=args.keep_alive,
    )
    return 0
