"""Errors as HTTP answers: every refusal is a 4xx JSON body naming the error type and the problem.

A georax server never answers a bad request with a stack trace. Two kinds of failure reach a
client:

- **georax errors** (:class:`~georax.errors.GeoraxError`): the loader, the pricing, the raster
  reader and the operators already raise typed errors whose messages name the operator, field
  or file. :func:`status_for` maps each family to a status code; :func:`problem_body` writes
  ``{"error": <type name>, "message": <message>, "status": <code>, ...}`` plus the attributes a
  client can act on (``target`` of an untrusted operator, ``stage``/``required``/``budget`` of
  a refused price, ``limit`` of a document limit).
- **request problems** (:class:`RequestError`): things only the HTTP layer can see -- an unknown
  pipeline or layer, a body over the size limit, a path outside the data roots, a full queue, a
  request over its time limit. They carry their status code (and headers, e.g. ``Retry-After``).

Request problems are deliberately *not* georax errors: they describe an HTTP exchange, not a
pipeline, and a library user calling georax directly never meets them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from georax.core.errors import (
    BudgetExceededError,
    GeoraxError,
    LoaderError,
    SerializationError,
    UntrustedTargetError,
)
from georax.core.sandbox import SandboxLimitError
from georax.io.errors import RasterNotFoundError, RasterReadError, ReadBudgetExceededError

__all__ = [
    "RequestError",
    "problem_body",
    "status_for",
]


class RequestError(Exception):
    """A request the server refuses for a reason only the HTTP layer sees.

    **Arguments:**

    - `status`: the HTTP status code (4xx, or 503/504 for a full queue / a timeout).
    - `error`: a short type name for clients (``"UnknownPipeline"``, ``"BodyTooLarge"``...).
    - `message`: what is wrong, naming the resource.
    - `headers`: extra response headers (``Retry-After``).
    """

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.headers = dict(headers or {})


def status_for(e: BaseException) -> int:
    """The HTTP status for an exception: 4xx for every georax error, 500 for anything else.

    - 413: the request asks for more than the server allows to read
      (:class:`~georax.io.errors.ReadBudgetExceededError`, a document over ``max_bytes``);
    - 403: an operator outside the allow-list (:class:`~georax.errors.UntrustedTargetError`);
    - 404: a raster that does not exist;
    - 400: a raster that cannot be read (not a GeoTIFF, corrupt);
    - 422: everything else georax refuses (config, YAML, graph wiring, shapes, data, budgets,
      pricing time), and :class:`~georax.errors.LoaderError` (an operator failed while loading:
      the document is what made it fail).
    """
    if isinstance(e, RequestError):
        return e.status
    if isinstance(e, ReadBudgetExceededError):
        return 413
    if isinstance(e, SandboxLimitError) and e.limit == "max_bytes":
        return 413
    if isinstance(e, UntrustedTargetError):
        return 403
    if isinstance(e, RasterNotFoundError):
        return 404
    if isinstance(e, RasterReadError):
        return 400
    if isinstance(e, GeoraxError):
        return 422
    return 500


def problem_body(e: BaseException) -> dict[str, Any]:
    """The JSON body of an error answer (never a traceback).

    An exception that is neither a georax error nor a :class:`RequestError` is a bug in the
    server: the body says only ``InternalError`` (the details go to the server's log).
    """
    status = status_for(e)
    if isinstance(e, RequestError):
        return {"error": e.error, "message": e.message, "status": status}
    if not isinstance(e, GeoraxError):
        return {"error": "InternalError", "message": "internal server error", "status": status}
    body: dict[str, Any] = {"error": type(e).__name__, "message": str(e), "status": status}
    # Attributes are read with getattr: a subclass that sets only some of them (as
    # ReadBudgetExceededError does with ``unit``) must not turn a 4xx into a failed handler.
    names: tuple[str, ...] = ()
    if isinstance(e, UntrustedTargetError):
        names = ("target",)
    elif isinstance(e, BudgetExceededError):
        names = ("stage", "required", "budget", "unit")
    elif isinstance(e, SandboxLimitError):
        names = ("limit", "value", "maximum")
    for name in names:
        value = getattr(e, name, None)
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            body[name] = value
    if isinstance(e, LoaderError | SerializationError) and e.__cause__ is not None:
        body["cause"] = type(e.__cause__).__name__
    return body
