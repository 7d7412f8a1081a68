"""Quality-control checks as pass-through operators (the seeds' case 8), carrier-neutral.

A QC operator returns its input unchanged and checks a contract on the way through, so the same
pipeline that does the work runs the assertions. Each takes a static ``on_fail`` policy:

- ``"raise"``: a failed check raises :class:`QCError` naming the check and the measured value.
- ``"warn"``: a :class:`QCWarning` is emitted on the host and the data flows on.
- ``"off"``: the check is skipped entirely (nothing is computed or compiled).

Two kinds of check:

- **Static checks** (:class:`AssertShape`, :class:`AssertDType`, :class:`AssertHasAttribute`;
  the CRS/resolution/band-name checks in :mod:`georax.geo.qa`) only look at metadata known at
  trace time. They act in Python when the operator is called or traced: under ``jax.jit`` a
  failure raises while tracing, and a warning fires once per compilation (not on every call of the
  cached program, whose input structure is then known to be the same).
- **Value checks** (:class:`AssertValueRange`, :class:`AssertValidFraction`,
  :class:`AssertNoNaN`) reduce the pixels in JAX to a few scalars and hand those to the host
  with :func:`jax.debug.callback`, so they also fire from compiled code, on every call, under
  ``jit``, ``vmap`` (one report naming the failing batch elements) and ``grad``. Called eagerly,
  ``"raise"`` raises :class:`QCError` directly. Raised from inside a compiled program, JAX wraps
  it: the caller receives :class:`jax.errors.JaxRuntimeError` whose message ends with
  ``QCError: <check>: <measured value> ...``. Wrap the call in :func:`typed_qc_errors` to get the
  original :class:`QCError` back. The cost is one full-array reduction per check (the seeds'
  trade-off note: drop checks from latency-critical paths, or use ``"off"`` there).

Nodata: for a :class:`~georax.GeoTensor` with a ``fill_value``, pixels equal to it are treated as
invalid (excluded from the range, counted against the valid fraction); NaNs always are.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import math
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Shaped

from georax.core.carrier import values_of
from georax.core.errors import GeoraxError
from georax.core.operator import Operator, as_tuple, static

__all__ = [
    "POLICIES",
    "AssertDType",
    "AssertHasAttribute",
    "AssertNoNaN",
    "AssertShape",
    "AssertValidFraction",
    "AssertValueRange",
    "QCError",
    "QCOperator",
    "QCWarning",
    "nan_count",
    "typed_qc_errors",
    "valid_mask",
    "valid_fraction",
    "value_range",
]

POLICIES = ("raise", "warn", "off")


class QCError(GeoraxError, ValueError):
    """A QC check failed with ``on_fail="raise"``.

    Attributes:
        check: the operator's name (e.g. ``"AssertValueRange"``).
        measured: the measured values that failed, ``{name: float}``.
    """

    def __init__(self, check: str, message: str, measured: dict[str, Any] | None = None) -> None:
        self.check = check
        self.measured = dict(measured or {})
        super().__init__(f"{check}: {message}")


class QCWarning(UserWarning):
    """A QC check failed with ``on_fail="warn"``."""


# QCErrors raised inside host callbacks, so `typed_qc_errors` can re-raise the original object
# when JAX surfaces it as a JaxRuntimeError. Bounded; shared across threads (callbacks may run on
# a runtime thread).
_RECENT: collections.deque[QCError] = collections.deque(maxlen=32)
_RECENT_LOCK = threading.Lock()


@contextlib.contextmanager
def typed_qc_errors() -> Iterator[None]:
    """Re-raise QC failures from compiled code as the original :class:`QCError`.

    Inside ``jax.jit`` a host callback's exception reaches the caller as
    :class:`jax.errors.JaxRuntimeError`; within this context it is replaced by the
    :class:`QCError` that caused it (chained ``from`` the runtime error)::

        with typed_qc_errors():
            out = jax.block_until_ready(jax.jit(pipeline)(scene))
    """
    try:
        yield
    except jax.errors.JaxRuntimeError as e:
        text = str(e)
        with _RECENT_LOCK:
            match = next((err for err in reversed(_RECENT) if str(err) in text), None)
        if match is None:
            raise
        raise match from e


class _QuietQCFailures(logging.Filter):
    """Drop JAX's "jax.debug.callback failed" log record (with traceback) for a QCError.

    The failure is not lost: it propagates to the caller as the runtime error. Other callback
    failures are logged as usual.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, QCError)


logging.getLogger("jax._src.debugging").addFilter(_QuietQCFailures())


# ----------------------------------------------------------------------------- pure functions
def valid_mask(
    x: Shaped[Array, "*shape"], nodata: float | int | None = None
) -> Bool[Array, "*shape"]:
    """``True`` where ``x`` is a usable value: not NaN/inf and not equal to ``nodata``.

    **Arguments:**

    - `x`: any array.
    - `nodata`: a value marking missing pixels (ignored when None or NaN).

    **Returns:** a boolean array of ``x``'s shape.
    """
    ok = jnp.isfinite(x) if jnp.issubdtype(x.dtype, jnp.inexact) else jnp.ones(x.shape, bool)
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
        ok = ok & (x != nodata)
    return ok


def valid_fraction(x: Shaped[Array, "*shape"], nodata: float | int | None = None) -> Array:
    """Fraction of elements of ``x`` that are valid (see :func:`valid_mask`), float32 scalar."""
    return jnp.mean(valid_mask(x, nodata).astype(jnp.float32))


def value_range(
    x: Shaped[Array, "*shape"], nodata: float | int | None = None
) -> tuple[Array, Array]:
    """``(min, max)`` of the valid elements of ``x`` as float32 (``(inf, -inf)`` if none)."""
    ok = valid_mask(x, nodata)
    xf = x.astype(jnp.float32)
    lo = jnp.min(jnp.where(ok, xf, jnp.inf))
    hi = jnp.max(jnp.where(ok, xf, -jnp.inf))
    return lo, hi


def nan_count(x: Shaped[Array, "*shape"], include_inf: bool = False) -> Array:
    """Number of NaN (and, with ``include_inf``, infinite) elements of ``x`` (int32 scalar)."""
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        return jnp.zeros((), jnp.int32)
    bad = ~jnp.isfinite(x) if include_inf else jnp.isnan(x)
    return jnp.sum(bad, dtype=jnp.int32)


# ----------------------------------------------------------------------------- base class
def _fmt(v: float) -> str:
    return f"{v:.6g}"


class QCOperator(Operator):
    """Base of QC operators: validates ``on_fail`` and reports failures per the policy.

    Subclasses declare ``on_fail: str = static("raise")`` as their last field (so their own
    required fields can come first) and call :meth:`report` (static checks) or
    :meth:`check_values` (value checks) from ``__call__``, returning ``x`` unchanged.
    """

    def __check_init__(self) -> None:
        policy = getattr(self, "on_fail", None)
        if not isinstance(policy, str) or policy not in POLICIES:
            self.fail("on_fail", f"must be one of {POLICIES}")

    @property
    def enabled(self) -> bool:
        """False when ``on_fail="off"``."""
        return getattr(self, "on_fail", "raise") != "off"

    def report(self, message: str, measured: dict[str, Any] | None = None) -> None:
        """Act on a failed check on the host: raise :class:`QCError` or warn, per ``on_fail``."""
        if self.on_fail == "raise":
            err = QCError(type(self).__name__, message, measured)
            with _RECENT_LOCK:
                _RECENT.append(err)
            raise err
        if self.on_fail == "warn":
            warnings.warn(f"{type(self).__name__}: {message}", QCWarning, stacklevel=3)

    def check_values(
        self,
        ok: Bool[Array, ""],
        measured: dict[str, Array],
        describe: Callable[[dict[str, float]], str],
    ) -> None:
        """Report a value check computed in JAX, from eager or compiled code.

        **Arguments:**

        - `ok`: scalar boolean, True when the check passes (batched under ``vmap``).
        - `measured`: scalar measurements to put in the message.
        - `describe`: builds the failure message from the measurements of one failing element.
        """
        if not self.enabled:
            return
        names = tuple(measured)
        leaves = (ok, *measured.values())
        host = functools.partial(self._host_check, names, describe)
        if any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
            jax.debug.callback(host, *leaves)
        else:
            host(*leaves)

    def _host_check(
        self,
        names: tuple[str, ...],
        describe: Callable[[dict[str, float]], str],
        ok: Any,
        *values: Any,
    ) -> None:
        ok = np.asarray(ok)
        if bool(np.all(ok)):
            return
        vals = [np.broadcast_to(np.asarray(v), ok.shape) for v in values]
        failing = np.argwhere(~ok)
        first = tuple(failing[0])
        measured = {n: float(v[first]) for n, v in zip(names, vals, strict=True)}
        message = describe(measured)
        if ok.ndim:
            message += f" (batch element {first if len(first) > 1 else first[0]}; "
            message += f"{len(failing)} of {ok.size} failing)"
        self.report(message, measured)


def _nodata_of(x: Any, nodata: float | int | None) -> float | int | None:
    if nodata is not None:
        return nodata
    return getattr(x, "fill_value", None)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and not math.isnan(v)


# ----------------------------------------------------------------------------- value checks
class AssertValueRange(QCOperator):
    """Check that every valid value lies in ``[min_val, max_val]``.

    NaNs and nodata pixels (``nodata``, or the GeoTensor's ``fill_value``) are ignored. The
    message gives the measured ``[min, max]``.

    **Arguments:**

    - `min_val`, `max_val`: inclusive limits; None leaves that side open.
    - `nodata`: a value to ignore besides NaN (default: the input's ``fill_value`` if any).
    - `on_fail`: ``"raise"``, ``"warn"`` or ``"off"``.
    """

    min_val: float | None = static(default=None)
    max_val: float | None = static(default=None)
    nodata: float | None = static(default=None)
    on_fail: str = static(default="raise")

    def __check_init__(self) -> None:
        for field in ("min_val", "max_val"):
            v = getattr(self, field)
            if v is not None and not _is_number(v):
                self.fail(field, "must be a number or None")
        if self.min_val is None and self.max_val is None:
            self.fail("min_val", "give min_val and/or max_val")
        if self.min_val is not None and self.max_val is not None and self.min_val > self.max_val:
            self.fail("max_val", f"must be >= min_val={self.min_val}")

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        if not self.enabled:
            return x
        lo, hi = value_range(values_of(x), _nodata_of(x, self.nodata))
        ok = jnp.bool_(True)
        if self.min_val is not None:
            ok = ok & (lo >= self.min_val)
        if self.max_val is not None:
            ok = ok & (hi <= self.max_val)
        limits = f"[{self.min_val}, {self.max_val}]"
        self.check_values(
            ok,
            {"min": lo, "max": hi},
            lambda m: f"values span [{_fmt(m['min'])}, {_fmt(m['max'])}], outside {limits}",
        )
        return x


class AssertValidFraction(QCOperator):
    """Check that at least ``min_valid`` of the values are valid (finite, not nodata).

    Catches the all-NaN scene from a failed download, or a scene mostly outside its footprint.

    **Arguments:**

    - `min_valid`: required fraction in ``[0, 1]``.
    - `nodata`: a value counted as invalid besides NaN/inf (default: the input's ``fill_value``).
    - `on_fail`: ``"raise"``, ``"warn"`` or ``"off"``.
    """

    min_valid: float = static(default=0.5)
    nodata: float | None = static(default=None)
    on_fail: str = static(default="raise")

    def __check_init__(self) -> None:
        if not _is_number(self.min_valid) or not 0.0 <= self.min_valid <= 1.0:
            self.fail("min_valid", "must be a number in [0, 1]")

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        if not self.enabled:
            return x
        frac = valid_fraction(values_of(x), _nodata_of(x, self.nodata))
        need = self.min_valid
        self.check_values(
            frac >= need,
            {"valid_fraction": frac},
            lambda m: f"valid fraction {m['valid_fraction']:.2%} below {need:.2%}",
        )
        return x


class AssertNoNaN(QCOperator):
    """Check that the values contain no NaN (and, with ``include_inf``, no infinity).

    **Arguments:**

    - `include_inf`: also count +/-inf.
    - `on_fail`: ``"raise"``, ``"warn"`` or ``"off"``.
    """

    include_inf: bool = static(default=False)
    on_fail: str = static(default="raise")

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        if not self.enabled:
            return x
        v = values_of(x)
        count = nan_count(v, self.include_inf)
        what = "NaN/inf" if self.include_inf else "NaN"
        size = int(np.prod(v.shape))
        self.check_values(
            count == 0,
            {"count": count},
            lambda m: f"{int(m['count'])} {what} value(s) of {size}",
        )
        return x


# ----------------------------------------------------------------------------- static checks
class AssertShape(QCOperator):
    """Check the values' shape; ``-1`` (or None) matches any size on that axis.

    ``AssertShape((-1, -1, -1))`` asserts a 3-D input. Under ``vmap`` the shape seen is the
    per-example one. A static check: acts at call/trace time.

    **Arguments:**

    - `shape`: expected shape with ``-1`` wildcards.
    - `on_fail`: ``"raise"``, ``"warn"`` or ``"off"``.
    """

    shape: tuple[int, ...] = static(converter=as_tuple)
    on_fail: str = static(default="raise")

    def __check_init__(self) -> None:
        if not isinstance(self.shape, tuple) or not all(
            d is None or (isinstance(d, int) and not isinstance(d, bool) and d >= -1)
            for d in self.shape
        ):
            self.fail("shape", "must be a sequence of sizes (ints >= 0, or -1/None for any)")

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        if not self.enabled:
            return x
        actual = tuple(np.shape(values_of(x)))
        ok = len(actual) == len(self.shape) and all(
            want in (-1, None) or want == got for want, got in zip(self.shape, actual, strict=False)
        )
        if not ok:
            self.report(f"shape {actual} does not match {self.shape}", {"shape": actual})
        return x


_DTYPE_KINDS = {
    "floating": jnp.floating,
    "integer": jnp.integer,
    "signedinteger": jnp.signedinteger,
    "unsignedinteger": jnp.unsignedinteger,
    "bool": jnp.bool_,
    "number": jnp.number,
    "inexact": jnp.inexact,
}


class AssertDType(QCOperator):
    """Check the values' dtype against names (``"uint16"``) or kinds (``"floating"``).

    Kinds: ``floating``, ``integer``, ``signedinteger``, ``unsignedinteger``, ``bool``,
    ``number``, ``inexact``. A static check.

    **Arguments:**

    - `dtype`: one dtype name/kind or a sequence of them (any may match).
    - `on_fail`: ``"raise"``, ``"warn"`` or ``"off"``.
    """

    dtype: str | tuple[str, ...] = static(converter=as_tuple)
    on_fail: str = static(default="raise")

    def __check_init__(self) -> None:
        wanted = self.dtype if isinstance(self.dtype, tuple) else (self.dtype,)
        if not wanted:
            self.fail("dtype", "give at least one dtype name or kind")
        for d in wanted:
            if not isinstance(d, str):
                self.fail("dtype", f"{d!r} is not a dtype name string")
            if d not in _DTYPE_KINDS:
                try:
                    np.dtype(d)
                except TypeError:
                    self.fail("dtype", f"{d!r} is neither a dtype name nor one of {_DTYPE_KINDS}")

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        if not self.enabled:
            return x
        actual = np.dtype(values_of(x).dtype)
        wanted = self.dtype if isinstance(self.dtype, tuple) else (self.dtype,)
        ok = any(
            jnp.issubdtype(actual, _DTYPE_KINDS[d]) if d in _DTYPE_KINDS else actual == np.dtype(d)
            for d in wanted
        )
        if not ok:
            self.report(f"dtype {actual} is not one of {wanted}", {"dtype": str(actual)})
        return x


class AssertHasAttribute(QCOperator):
    """Check that the input carries a non-None attribute (e.g. ``"crs"`` on a GeoTensor).

    A GeoTensor with ``crs=None`` fails ``AssertHasAttribute("crs")``; a plain array fails it too.
    A static check.

    **Arguments:**

    - `attribute`: the attribute name.
    - `on_fail`: ``"raise"``, ``"warn"`` or ``"off"``.
    """

    attribute: str = static()
    on_fail: str = static(default="raise")

    def __check_init__(self) -> None:
        if not isinstance(self.attribute, str) or not self.attribute.isidentifier():
            self.fail("attribute", "must be an attribute name")

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        if not self.enabled:
            return x
        if getattr(x, self.attribute, None) is None:
            self.report(f"{type(x).__name__} has no (non-None) attribute {self.attribute!r}")
        return x
