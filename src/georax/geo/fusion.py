"""Fusion operators: put rasters from different sensors on one grid and stack them.

This is where fusion pipelines silently fail (seed case 11): whichever grid the inputs are
resampled to decides what is thrown away — resampling 10 m optical onto a 20 m SAR grid loses
optical detail, resampling SAR onto the optical grid invents none but interpolates it. So here the
target grid is always an explicit, written-down choice (``target_grid``), and everything that would
make the result quietly wrong is refused with a typed error instead: inputs without a CRS or
transform (:class:`MissingGeoreferenceError`), inputs that do not overlap the target grid at all
(:class:`NoOverlapError`), mismatched batch shapes (:class:`~georax.errors.ShapeError`), an unknown
target name (:class:`~georax.errors.ConfigError`).

Grids are static metadata, so all of that is decided while tracing; the compiled program only
interpolates (see :mod:`georax.geo.resample`). Building the resampling plan of a target grid costs
host memory in proportion to its pixels, so :meth:`Resample.precheck` and
:meth:`AlignAndStack.precheck` refuse an oversized fixed target grid before anything is traced.
Outputs are rebuilt from an input with ``Carrier.replace`` (values, transform, crs, fill_value,
band names), never positionally.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
from affine import Affine

from georax.array.validate import real_float
from georax.core.errors import ConfigError, ShapeError
from georax.core.operator import Operator, as_tuple, static
from georax.geo._precheck import refuse_extent, refuse_host_bytes, spatial_shape
from georax.geo.resample import (
    PLAN_BYTES_PER_PIXEL,
    RESAMPLING_METHODS,
    NoOverlapError,
    Resampling,
    resample,
)
from georax.tensor.geotensor import GeoTensor
from georax.tensor.grid import Grid, MissingGeoreferenceError, grid_of

if TYPE_CHECKING:
    from georax.core.sandbox import Limits

__all__ = [
    "AlignAndStack",
    "NoOverlapError",
    "Resample",
    "to_grid",
]


def _grid_or_ref(value: Any) -> Any:
    """Converter for ``target_grid``: ints and names pass, (crs, transform, shape) -> Grid."""
    if isinstance(value, str | int) or value is None:
        return value
    return Grid.coerce(value)


def _check_grid(op: Operator, field: str) -> None:
    """A fixed target grid must have a parseable CRS, an invertible finite transform, pixels."""
    grid = getattr(op, field)
    h, w = grid.shape
    if h < 1 or w < 1:
        op.fail(field, f"shape {grid.shape} has no pixels")
    t = grid.transform
    if not all(math.isfinite(v) for v in t) or Affine(*t).determinant == 0:
        op.fail(field, f"transform {t} must be finite and invertible")
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        CRS.from_user_input(grid.crs)
    except CRSError as e:
        op.fail(field, f"crs {grid.crs!r} is not a valid CRS: {e}")


def _precheck_grid(
    who: str, field: str, grid: Grid, shape: tuple[int, ...], limits: Limits
) -> tuple[int, ...]:
    """Refuse a target grid over the extent or host-memory limits; return the output shape."""
    spatial_shape(shape, who)
    h, w = grid.shape
    refuse_extent(who, field, max(h, w), limits)
    refuse_host_bytes(who, field, h * w * PLAN_BYTES_PER_PIXEL, limits)
    return (*shape[:-2], h, w)


def _missing_as_nan(x: GeoTensor, what: str) -> jax.Array:
    """Float values of ``x`` with its ``fill_value`` pixels turned into NaN (complex refused)."""
    v = real_float(x.values, f"resampling {what}")
    fill = x.fill_value
    if fill is not None and not (isinstance(fill, float) and math.isnan(fill)):
        v = jnp.where(jnp.asarray(x.values) == fill, jnp.nan, v)
    return v


def to_grid(
    x: GeoTensor, grid: Grid, *, resampling: str = "bilinear", what: str = "input"
) -> GeoTensor:
    """Resample a GeoTensor onto ``grid`` (pixels equal to its ``fill_value`` count as missing).

    **Arguments:**

    - `x`: a georeferenced GeoTensor (CRS and transform set). Other carriers are refused: a
      :class:`~georax.patch.Chips` stack holds its *scene's* transform, not each chip's.
    - `grid`: the target grid.
    - `resampling`: ``"bilinear"`` or ``"nearest"``.
    - `what`: how to name ``x`` in error messages.

    **Returns:** a float GeoTensor on ``grid``, NaN for missing data (``fill_value=None``).
    """
    if not isinstance(x, GeoTensor):
        raise MissingGeoreferenceError(
            f"{what} is a {type(x).__name__}, not a GeoTensor: resampling needs the CRS and "
            "transform of the pixels themselves"
        )
    src = grid_of(x, what=what)
    try:
        values = resample(_missing_as_nan(x, what), src, grid, resampling=resampling)
    except NoOverlapError as e:
        raise NoOverlapError(f"{what}: {e}") from None
    return x.replace(values=values, transform=grid.affine, crs=grid.crs, fill_value=None)


class Resample(Operator):
    """Resample a GeoTensor onto a fixed grid (see :mod:`georax.geo.resample` for the math).

    Same CRS and axis-aligned grids use :func:`jax.image.scale_and_translate` (antialiased
    bilinear, matching GDAL's warper); otherwise a pyproj coordinate map, computed once on the host
    while tracing, drives :func:`jax.scipy.ndimage.map_coordinates`. Output is float, NaN where
    the target is outside the source or on missing data (input ``fill_value`` or NaN). The
    output's georeferencing is the target grid's (its transform and CRS), with
    ``fill_value=None``; band names are kept.

    **Arguments:**

    - `target_grid`: the target :class:`Grid` (or ``(crs, transform, shape)``).
    - `resampling`: ``"bilinear"`` (default) or ``"nearest"`` (for class maps).
    """

    target_grid: Grid = static(converter=_grid_or_ref)
    resampling: Resampling = static(default="bilinear")

    def __check_init__(self) -> None:
        _check_grid(self, "target_grid")

    def precheck(self, shape: tuple[int, ...], limits: Limits) -> tuple[int, ...]:
        """Refuse a target grid over ``max_extent`` or whose plan exceeds ``max_host_bytes``."""
        return _precheck_grid("Resample", "target_grid", self.target_grid, shape, limits)

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> GeoTensor:
        return to_grid(x, self.target_grid, resampling=self.resampling)


class AlignAndStack(Operator):
    """Resample several rasters onto one explicitly chosen grid and concatenate their bands.

    ``target_grid`` says which grid wins:

    - a **name**: the input of that name. Inputs get names either from keywords —
      ``AlignAndStack(target_grid="optical")(optical=o, sar=s, dem=d)`` — or, for positional
      inputs, from ``inputs``: ``AlignAndStack(target_grid="optical",
      inputs=("optical", "sar", "dem"))(o, s, d)``. Names are the recommended form: they
      survive reordering and are readable in YAML.
    - an **int**: the position of the input (positional inputs first, then keyword ones).
    - a :class:`Grid`: a fixed grid independent of every input (then all inputs are resampled).

    The chosen input is passed through untouched (only converted to float, its ``fill_value``
    pixels to NaN); every other input is resampled onto its grid. The result is a float GeoTensor
    on the target grid with bands ``[input 0 bands..., input 1 bands..., ...]`` named
    ``"<input name>:<band name or index>"`` (just ``"<input name>"`` for a single-band 2-D input),
    NaN where an input has no data, ``fill_value=None``.

    Refused (typed errors, at trace time): inputs that are not GeoTensors or lack CRS/transform,
    an input that covers no target pixel at all, an unknown target name, differing leading batch
    shapes.

    **Arguments:**

    - `target_grid`: input name, input index, or a :class:`Grid` (default ``0``: the first input).
    - `inputs`: names of the positional inputs, in order (optional; needed for a name target with
      positional calling).
    - `resampling`: ``"bilinear"`` or ``"nearest"``, or a tuple with one method per input (e.g.
      nearest for a land-cover input).
    """

    target_grid: str | int | Grid = static(default=0, converter=_grid_or_ref)
    inputs: tuple[str, ...] | None = static(default=None, converter=as_tuple)
    resampling: Resampling | tuple[Resampling, ...] = static(default="bilinear", converter=as_tuple)

    def __check_init__(self) -> None:
        t = self.target_grid
        if isinstance(t, Grid):
            _check_grid(self, "target_grid")
        if self.inputs is not None:
            if not all(self.inputs):
                self.fail("inputs", "must be a tuple of non-empty names")
            if len(set(self.inputs)) != len(self.inputs):
                self.fail("inputs", "names must be unique")
            if isinstance(t, str) and t not in self.inputs:
                self.fail("target_grid", f"is not one of the input names {list(self.inputs)}")
            if isinstance(t, int) and not -len(self.inputs) <= t < len(self.inputs):
                self.fail("target_grid", f"is out of range for {len(self.inputs)} inputs")
        if self.resampling == ():
            self.fail("resampling", f"must be one of {RESAMPLING_METHODS} (or a tuple of them)")
        if (
            self.inputs is not None
            and not isinstance(self.resampling, str)
            and len(self.resampling) != len(self.inputs)
        ):
            self.fail("resampling", f"needs one method per input ({len(self.inputs)})")

    def precheck(self, shape: tuple[int, ...], limits: Limits) -> tuple[int, ...]:
        """Refuse a fixed target :class:`Grid` over the extent or host-memory limits.

        A target named by input name or index is one of the inputs, already bounded by the input
        spec. ``shape`` bounds one input; the band count of the stack (the sum over inputs) is
        not known from it, so the returned bound keeps ``shape``'s leading axes.
        """
        if isinstance(self.target_grid, Grid):
            return _precheck_grid("AlignAndStack", "target_grid", self.target_grid, shape, limits)
        spatial_shape(shape, "AlignAndStack")
        return shape

    def _named(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[tuple[str, Any]]:
        if self.inputs is not None and len(args) != len(self.inputs):
            raise ConfigError(
                "AlignAndStack",
                "inputs",
                self.inputs,
                f"names {len(self.inputs)} positional inputs but {len(args)} were given",
            )
        names = (
            list(self.inputs)
            if self.inputs is not None
            else [f"input{i}" for i in range(len(args))]
        )
        named = list(zip(names, args, strict=True)) + list(kwargs.items())
        if not named:
            raise ConfigError("AlignAndStack", None, None, "needs at least one input")
        if len({n for n, _ in named}) != len(named):
            raise ConfigError("AlignAndStack", "inputs", [n for n, _ in named], "duplicate names")
        return named

    def _target(self, named: list[tuple[str, Any]]) -> tuple[Grid, int | None]:
        t = self.target_grid
        if isinstance(t, Grid):
            return t, None
        if isinstance(t, str):
            names = [n for n, _ in named]
            if t not in names:
                raise ConfigError(
                    "AlignAndStack",
                    "target_grid",
                    t,
                    f"no input is named {t!r}; inputs are {names} (name positional inputs "
                    "with inputs=(...) or pass them as keywords)",
                )
            i = names.index(t)
        else:
            if not -len(named) <= t < len(named):
                raise ConfigError(
                    "AlignAndStack", "target_grid", t, f"out of range for {len(named)} inputs"
                )
            i = t % len(named)
        name, x = named[i]
        return grid_of(x, what=f"target input {name!r}"), i

    def __call__(self, *args: Any, key: jax.Array | None = None, **kwargs: Any) -> GeoTensor:
        named = self._named(args, kwargs)
        methods = (
            (self.resampling,) * len(named) if isinstance(self.resampling, str) else self.resampling
        )
        if len(methods) != len(named):
            raise ConfigError(
                "AlignAndStack",
                "resampling",
                self.resampling,
                f"needs one method per input ({len(named)})",
            )
        grid, _ = self._target(named)
        stacked: list[jax.Array] = []
        band_names: list[str] = []
        batch: tuple[int, ...] | None = None
        aligned_inputs: list[GeoTensor] = []
        for (name, x), method in zip(named, methods, strict=True):
            if not isinstance(x, GeoTensor):
                raise MissingGeoreferenceError(
                    f"input {name!r} is a {type(x).__name__}, not a GeoTensor: AlignAndStack "
                    "needs each input's CRS and transform to place it on the target grid"
                )
            aligned = to_grid(x, grid, resampling=method, what=f"input {name!r}")
            aligned_inputs.append(aligned)
            v = aligned.values
            if v.ndim == 2:
                v = v[None]
                band_names.append(name)
            else:
                labels = x.band_names or tuple(str(b) for b in range(v.shape[-3]))
                band_names.extend(f"{name}:{b}" for b in labels)
            if batch is None:
                batch = v.shape[:-3]
            elif v.shape[:-3] != batch:
                raise ShapeError(
                    f"input {name!r} has leading shape {v.shape[:-3]} but earlier inputs have "
                    f"{batch}; AlignAndStack concatenates bands, other axes must agree"
                )
            stacked.append(v)
        dtype = jnp.result_type(*stacked)
        values = jnp.concatenate([s.astype(dtype) for s in stacked], axis=-3)
        # rebuilt from the first input (already on the target grid), keeping its carrier type
        return aligned_inputs[0].replace(values=values, band_names=tuple(band_names))
