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

Leaf vs static: thresholds (``vmin``/``vmax``, ``min_valid``) are array leaves -- tunable
without recompiling, and a pipeline can be ``vmap``-ed over them. ``fill_value`` stays static: it
is a sentinel that says which pixels exist, like the carrier's own (static) ``fill_value``.
"""

# No `from __future__ import annotations`: equinox reads `AbstractVar` annotations at class
# creation and refuses them as strings.

import abc
import collections
import contextlib
import functools
import logging
import math
import threading
import typing
import warnings
from collections.abc import Callable, Iterator
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Shaped

from georax.array.validate import concrete, require_real
from georax.core.carrier import values_of
from georax.core.errors import GeoraxError
from georax.core.operator import Operator, as_tuple, leaf, optional_leaf, static

__all__ = [
    "POLICIES",
    "AssertDType",
    "AssertHasAttribute",
    "AssertNoNaN",
    "AssertShape",
    "AssertValidFraction",
    "AssertValueRange",
    "Policy",
    "QCError",
    "QCOperator",
    "QCWarning",
    "nan_count",
    "typed_qc_errors",
    "valid_mask",
    "valid_fraction",
    "value_range",
]

#: What a failed check does (see the module docstring).
Policy = Literal["raise", "warn", "off"]
POLICIES: tuple[str, ...] = typing.get_args(Policy)


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
    x: Shaped[Array, "*shape"], fill_value: float | int | None = None
) -> Bool[Array, "*shape"]:
    """``True`` where ``x`` is a usable value: not NaN/inf and not equal to ``fill_value``.

    **Arguments:**

    - `x`: any array.
    - `fill_value`: a value marking missing pixels (ignored when None or NaN).

    **Returns:** a boolean array of ``x``'s shape.
    """
    x = jnp.asarray(x)
    ok = jnp.isfinite(x) if jnp.issubdtype(x.dtype, jnp.inexact) else jnp.ones(x.shape, bool)
    if fill_value is not None and not (isinstance(fill_value, float) and math.isnan(fill_value)):
        ok = ok & (x != fill_value)
    return ok


def valid_fraction(x: Shaped[Array, "*shape"], fill_value: float | int | None = None) -> Array:
    """Fraction of elements of ``x`` that are valid (see :func:`valid_mask`), float32 scalar.

    An empty array has no valid element: its fraction is 0 (not the NaN of an empty mean).
    """
    ok = valid_mask(x, fill_value)
    return jnp.sum(ok, dtype=jnp.float32) / max(ok.size, 1)


def value_range(
    x: Shaped[Array, "*shape"], fill_value: float | int | None = None
) -> tuple[Array, Array]:
    """``(min, max)`` of the valid elements of ``x`` as float32 (``(inf, -inf)`` if none).

    **Raises:** :class:`~georax.errors.DataError` for complex input (it has no order).
    """
    x = require_real(x, "value_range")
    ok = valid_mask(x, fill_value)
    xf = x.astype(jnp.float32)
    lo = jnp.min(jnp.where(ok, xf, jnp.inf), initial=jnp.inf)
    hi = jnp.max(jnp.where(ok, xf, -jnp.inf), initial=-jnp.inf)
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
    """Abstract base of QC operators: validates ``on_fail`` and reports failures per the policy.

    Subclasses declare ``on_fail: Policy = static(default="raise")`` as their last field (so
    their own required fields can come first), implement ``__call__`` and call :meth:`report`
    (static checks) or :meth:`check_values` (value checks) from it, returning ``x`` unchanged.
    The base is abstract (equinox's abstract/final rule): it is never registered as a YAML
    target. The policy is checked by the field type check (a ``Literal``).
    """

    on_fail: eqx.AbstractVar[Policy]

    @abc.abstractmethod
    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        """Check ``x`` and return it unchanged."""

    @property
    def enabled(self) -> bool:
        """False when ``on_fail="off"``."""
        return self.on_fail != "off"

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


def _fill_value_of(x: Any, fill_value: float | int | None) -> float | int | None:
    if fill_value is not None:
        return fill_value
    return getattr(x, "fill_value", None)


def _bad_leaf(value: Any, ok: Callable[[np.ndarray], np.ndarray]) -> bool:
    """True when a threshold leaf is known (not traced) and is not a scalar passing ``ok``."""
    v = concrete(value)
    if v is None:
        return False  # traced: its value exists only at run time
    return v.ndim != 0 or not bool(ok(v))


# ----------------------------------------------------------------------------- value checks
class AssertValueRange(QCOperator):
    """Check that every valid value lies in ``[vmin, vmax]``.

    NaNs and nodata pixels (``fill_value``, or the GeoTensor's ``fill_value``) are ignored. The
    message gives the measured ``[min, max]``.

    **Arguments:**

    - `vmin`, `vmax`: inclusive limits (array leaves); None leaves that side open.
    - `fill_value`: a value to ignore besides NaN (default: the input's ``fill_value`` if any).
    - `on_fail`: ``"raise"``, ``"warn"`` or ``"off"``.
    """

    vmin: Array | None = optional_leaf()
    vmax: Array | None = optional_leaf()
    fill_value: float | None = static(default=None)
    on_fail: Policy = static(default="raise")

    def __check_init__(self) -> None:
        for field in ("vmin", "vmax"):
            v = getattr(self, field)
            if v is not None and _bad_leaf(v, lambda a: ~np.isnan(a)):
                self.fail(field, "must be a number (not NaN) or None")
        if self.vmin is None and self.vmax is None:
            self.fail("vmin", "give vmin and/or vmax")
        lo, hi = concrete(self.vmin), concrete(self.vmax)
        if lo is not None and hi is not None and bool(lo > hi):
            self.fail("vmax", f"must be >= vmin={float(lo):g}")

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        if not self.enabled:
            return x
        lo, hi = value_range(values_of(x), _fill_value_of(x, self.fill_value))
        ok = jnp.bool_(True)
        measured = {"min": lo, "max": hi}
        if self.vmin is not None:
            ok = ok & (lo >= self.vmin)
            measured["vmin"] = self.vmin
        if self.vmax is not None:
            ok = ok & (hi <= self.vmax)
            measured["vmax"] = self.vmax

        def describe(m: dict[str, float]) -> str:
            limits = f"[{_fmt(m.get('vmin', -np.inf))}, {_fmt(m.get('vmax', np.inf))}]"
            return f"values span [{_fmt(m['min'])}, {_fmt(m['max'])}], outside {limits}"

        self.check_values(ok, measured, describe)
        return x


class AssertValidFraction(QCOperator):
    """Check that at least ``min_valid`` of the values are valid (finite, not nodata).

    Catches the all-NaN scene from a failed download, or a scene mostly outside its footprint.
    An empty input has no valid value (fraction 0).

    **Arguments:**

    - `min_valid`: required fraction in ``[0, 1]`` (an array leaf).
    - `fill_value`: a value counted as invalid besides NaN/inf (default: the input's
      ``fill_value``).
    - `on_fail`: ``"raise"``, ``"warn"`` or ``"off"``.
    """

    min_valid: Array = leaf(default=0.5)
    fill_value: float | None = static(default=None)
    on_fail: Policy = static(default="raise")

    def __check_init__(self) -> None:
        if _bad_leaf(self.min_valid, lambda a: (a >= 0.0) & (a <= 1.0)):
            self.fail("min_valid", "must be a number in [0, 1]")

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        if not self.enabled:
            return x
        frac = valid_fraction(values_of(x), _fill_value_of(x, self.fill_value))
        self.check_values(
            frac >= self.min_valid,
            {"valid_fraction": frac, "min_valid": self.min_valid},
            lambda m: f"valid fraction {m['valid_fraction']:.2%} below {m['min_valid']:.2%}",
        )
        return x


class AssertNoNaN(QCOperator):
    """Check that the values contain no NaN (and, with ``include_inf``, no infinity).

    **Arguments:**

    - `include_inf`: also count +/-inf.
    - `on_fail`: ``"raise"``, ``"warn"`` or ``"off"``.
    """

    include_inf: bool = static(default=False)
    on_fail: Policy = static(default="raise")

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

    shape: tuple[int | None, ...] = static(converter=as_tuple)
    on_fail: Policy = static(default="raise")

    def __check_init__(self) -> None:
        if any(d is not None and d < -1 for d in self.shape):
            self.fail("shape", "sizes are ints >= 0, or -1/None for any")

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
    on_fail: Policy = static(default="raise")

    def __check_init__(self) -> None:
        wanted = self.dtype if isinstance(self.dtype, tuple) else (self.dtype,)
        if not wanted:
            self.fail("dtype", "give at least one dtype name or kind")
        for d in wanted:
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
    on_fail: Policy = static(default="raise")

    def __check_init__(self) -> None:
        if not self.attribute.isidentifier():
            self.fail("attribute", "must be an attribute name")

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        if not self.enabled:
            return x
        if getattr(x, self.attribute, None) is None:
            self.report(f"{type(x).__name__} has no (non-None) attribute {self.attribute!r}")
        return x
