"""Geo-specific QC checks on a georeferenced carrier: CRS, resolution, band schema.

Pass-through operators with the same ``on_fail`` policy (``"raise"``/``"warn"``/``"off"``) as
:mod:`georax.array.qc`. They read only static metadata, so they act at call/trace time: under
``jax.jit`` a failing ``"raise"`` check raises :class:`~georax.array.qc.QCError` while tracing,
before anything runs. Any carrier holding ``crs``, ``transform`` and ``band_names`` is checked (a
:class:`~georax.GeoTensor`, or :class:`~georax.patch.Chips`, whose metadata is its source
scene's). A plain array (no georeferencing) is refused with
:class:`~georax.tensor.GeoTensorRequiredError` unless the check is ``"off"``.

Their thresholds are static, unlike the value checks' leaves: they are compared with static
metadata (the transform, the band names) in Python at trace time, where a traced number could not
be used.
"""

from __future__ import annotations

import math
from typing import Any

import jax

from georax.array.qc import Policy, QCOperator
from georax.core.carrier import Carrier
from georax.core.operator import as_tuple, static
from georax.tensor.geotensor import require_geotensor
from georax.tensor.grid import crs_equal

__all__ = ["AssertCRSEquals", "AssertResolutionWithin", "AssertSchema"]

_METADATA = ("crs", "transform", "band_names")


def _georeferenced(x: Any, who: str) -> Any:
    """``x`` if it is a carrier with georeferencing metadata; else a typed refusal."""
    if isinstance(x, Carrier) and all(hasattr(x, a) for a in _METADATA):
        return x
    return require_geotensor(x, who)


class AssertCRSEquals(QCOperator):
    """Check that the GeoTensor's CRS equals ``crs`` (compared as CRSs, not strings).

    ``"EPSG:32630"`` matches the equivalent WKT; a GeoTensor without CRS fails.

    **Arguments:**

    - `crs`: the expected CRS (EPSG code, WKT or PROJ string).
    - `on_fail`: ``"raise"``, ``"warn"`` or ``"off"``.
    """

    crs: str = static()
    on_fail: Policy = static(default="raise")

    def __check_init__(self) -> None:
        from pyproj import CRS
        from pyproj.exceptions import CRSError

        try:
            CRS.from_user_input(self.crs)
        except CRSError as e:
            self.fail("crs", f"is not a valid CRS: {e}")

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        if not self.enabled:
            return x
        gt = _georeferenced(x, type(self).__name__)
        if gt.crs is None or not crs_equal(gt.crs, self.crs):
            self.report(f"CRS is {gt.crs}, expected {self.crs}", {"crs": gt.crs})
        return x


class AssertResolutionWithin(QCOperator):
    """Check that both pixel sizes (``xres``, ``yres``, CRS units) lie in ``[lo, hi]``.

    ``AssertResolutionWithin((9.5, 10.5))`` accepts a 10 m grid.

    **Arguments:**

    - `limits`: ``(lo, hi)``, inclusive, in CRS units.
    - `on_fail`: ``"raise"``, ``"warn"`` or ``"off"``.
    """

    limits: tuple[float, float] = static(converter=as_tuple)
    on_fail: Policy = static(default="raise")

    def __check_init__(self) -> None:
        if not 0 <= self.limits[0] <= self.limits[1]:
            self.fail("limits", "must be (lo, hi) with 0 <= lo <= hi")

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        if not self.enabled:
            return x
        t = _georeferenced(x, type(self).__name__).transform
        lo, hi = self.limits
        xres, yres = math.hypot(t.a, t.d), math.hypot(t.b, t.e)
        if not (lo <= xres <= hi and lo <= yres <= hi):
            self.report(
                f"resolution ({xres:.6g}, {yres:.6g}) outside [{lo}, {hi}]",
                {"xres": xres, "yres": yres},
            )
        return x


class AssertSchema(QCOperator):
    """Check the band names of a GeoTensor (or of a Chips' source scene).

    With ``exact=True`` the names must equal ``band_names`` in order; with ``exact=False`` every
    name in ``band_names`` must be present (in any position). A carrier without band names fails.

    **Arguments:**

    - `band_names`: the expected band names.
    - `exact`: require the exact list (default) or only that these bands are present.
    - `on_fail`: ``"raise"``, ``"warn"`` or ``"off"``.
    """

    band_names: tuple[str, ...] = static(converter=as_tuple)
    exact: bool = static(default=True)
    on_fail: Policy = static(default="raise")

    def __check_init__(self) -> None:
        if not self.band_names:
            self.fail("band_names", "must be a non-empty sequence of band names")

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        if not self.enabled:
            return x
        carrier = _georeferenced(x, type(self).__name__)
        names = carrier.band_names
        expected = list(self.band_names)
        if names is None:
            self.report(f"{type(carrier).__name__} has no band names, expected {expected}")
        elif self.exact and names != self.band_names:
            self.report(f"band names {list(names)} != expected {expected}")
        elif not self.exact:
            missing = [b for b in self.band_names if b not in names]
            if missing:
                self.report(f"missing band(s) {missing}; has {list(names)}")
        return x
