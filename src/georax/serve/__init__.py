"""georax.serve: pipelines behind real servers (the seeds' cases 4, 5, 6 and 7).

- :func:`create_app` -- a FastAPI app from a services YAML: named pipelines loaded through the
  sandbox, priced and compiled at start-up; ``POST /process/{name}`` (GeoTIFF upload or a path
  under a data root -> COG or JSON statistics), ``POST /pipelines`` (a user's YAML, sandboxed
  and priced), XYZ tiles with TileJSON and a Leaflet map page, ``/health``, ``/metrics``.
- :class:`PipelineLitAPI` -- the same sandboxed, priced, compiled pipeline as a LitServe API.
- :func:`load_services` -- read and validate a services file.
- :func:`serve_in_thread` -- run an app with uvicorn on 127.0.0.1 in a background thread
  (examples, tests, notebooks).

Install with the ``serve`` extra: ``pip install "georax[serve]"``. ``georax serve SERVICES.yaml``
runs a server from the command line.
"""

# ruff: noqa: E402 (the extras check runs before the package imports its dependencies)

from georax.core.extras import require_extra

require_extra(
    "georax.serve",
    "serve",
    (
        "fastapi",
        "starlette",
        "uvicorn",
        "httpx",
        "python_multipart",
        "pydantic",
        "prometheus_client",
        "cachetools",
        "morecantile",
        "rio_tiler",
        "litserve",
    ),
)

# The package's modules come after the check above, so a base install gets one typed error.
from georax.serve.app import ServerState, create_app
from georax.serve.compiled import CompiledPipeline, Signature
from georax.serve.config import (
    InputSpec,
    LayerSpec,
    PipelineSource,
    PipelineSpec,
    ServerSpec,
    Services,
    UploadSpec,
    load_services,
)
from georax.serve.errors import RequestError
from georax.serve.litserve_api import PipelineLitAPI
from georax.serve.runner import free_port, serve_in_thread, server_process, wait_until_up

__all__ = [
    "CompiledPipeline",
    "InputSpec",
    "LayerSpec",
    "PipelineLitAPI",
    "PipelineSource",
    "PipelineSpec",
    "RequestError",
    "ServerSpec",
    "ServerState",
    "Services",
    "Signature",
    "UploadSpec",
    "create_app",
    "free_port",
    "load_services",
    "serve_in_thread",
    "server_process",
    "wait_until_up",
]
