"""GeoTensor <-> :class:`xarray.DataArray`, in the layout rioxarray reads and writes.

A DataArray from :func:`to_xarray` looks like one from ``rioxarray.open_rasterio``: dims
``("band", "y", "x")`` (``("y", "x")`` for 2-D; extra leading axes are ``dim_0``...), ``x``/``y``
coordinates at pixel centres, integer ``band`` coordinate ``1..n``, band names in the
``long_name`` attribute, nodata in ``_FillValue``, and the CRS in a scalar ``spatial_ref``
coordinate carrying the CF grid-mapping attributes, ``crs_wkt``/``spatial_ref`` (WKT) and the
GDAL ``GeoTransform`` -- so ``da.rio.crs`` and ``da.rio.transform()`` work without rioxarray
having written it, and rioxarray is not needed at run time.

Copies: :func:`to_xarray` wraps ``np.asarray(gt.values)``, a read-only view of the JAX buffer on
the CPU backend (no copy). :func:`from_xarray` adopts the DataArray's NumPy buffer without a copy
when it is C-contiguous, 64-byte aligned and of a dtype JAX keeps (``copy=False``); otherwise it
copies once.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import xarray as xr
from affine import Affine

from georax.core.errors import DataError, ShapeError
from georax.io.budget import check_read_bytes, max_read_bytes
from georax.io.errors import CRSMismatchError
from georax.tensor.buffers import as_jax_array, host_view
from georax.tensor.geotensor import GeoTensor, require_geotensor

__all__ = ["from_xarray", "to_xarray"]

_GRID_MAPPING = "spatial_ref"


def _parse_crs(crs: str, who: str) -> Any:
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        return CRS.from_user_input(crs)
    except CRSError as e:
        raise CRSMismatchError(f"{who}: CRS {crs!r} cannot be parsed: {e}") from None


@functools.lru_cache(maxsize=64)
def _crs_attrs_cached(crs: str) -> tuple[tuple[str, Any], ...]:
    c = _parse_crs(crs, "to_xarray")
    attrs = {k: v for k, v in c.to_cf().items() if v is not None}
    wkt = c.to_wkt()
    attrs["crs_wkt"] = wkt
    attrs["spatial_ref"] = wkt
    return tuple(attrs.items())


def _crs_attrs(crs: str) -> dict[str, Any]:
    """CF grid-mapping attributes plus WKT for ``crs`` (parsed once per CRS string)."""
    return dict(_crs_attrs_cached(crs))


def to_xarray(gt: GeoTensor, *, name: str | None = None) -> xr.DataArray:
    """Convert a GeoTensor to a rioxarray-compatible :class:`xarray.DataArray`.

    **Arguments:**

    - `gt`: the GeoTensor (unrotated transform: x depends on column only, y on row only).
    - `name`: the DataArray's name.

    **Returns:** a DataArray sharing the GeoTensor's memory on the CPU backend (read-only).

    **Raises:** :class:`~georax.errors.ShapeError` for a rotated transform (``x``/``y``
    coordinates cannot describe it), :class:`~georax.io.errors.CRSMismatchError` for a CRS
    that cannot be parsed.
    """
    gt = require_geotensor(gt, "to_xarray")
    if not gt.is_rectilinear:
        raise ShapeError(f"to_xarray needs an unrotated transform, got {gt.transform}")
    data = host_view(gt.values)
    ndim = data.ndim
    spatial = ("y", "x")
    if ndim == 2:
        dims: tuple[str, ...] = spatial
    else:
        dims = (*(f"dim_{i}" for i in range(ndim - 3)), "band", *spatial)
    coords: dict[str, Any] = {"y": gt.y_coords, "x": gt.x_coords}
    if ndim >= 3:
        coords["band"] = np.arange(1, data.shape[-3] + 1)
    t = gt.transform
    ref_attrs = _crs_attrs(gt.crs) if gt.crs is not None else {}
    ref_attrs["GeoTransform"] = " ".join(repr(float(v)) for v in (t.c, t.a, t.b, t.f, t.d, t.e))
    coords[_GRID_MAPPING] = xr.Variable((), np.int64(0), attrs=ref_attrs)
    attrs: dict[str, Any] = {"AREA_OR_POINT": "Area"}
    if gt.fill_value is not None:
        attrs["_FillValue"] = gt.fill_value
    if gt.band_names is not None:
        attrs["long_name"] = tuple(gt.band_names)
    da = xr.DataArray(data, dims=dims, coords=coords, attrs=attrs, name=name)
    da.encoding["grid_mapping"] = _GRID_MAPPING
    return da


def _coords(da: xr.DataArray, dim: str) -> np.ndarray:
    values = np.asarray(da[dim].values)
    if values.dtype.kind not in "iuf":
        raise DataError(f"from_xarray: {dim} coordinates must be numbers, got {values.dtype}")
    out = values.astype(np.float64)
    if not np.isfinite(out).all():
        raise DataError(f"from_xarray: {dim} coordinates contain NaN or infinity")
    return out


def _geotransform(text: Any) -> Affine:
    """The affine of a GDAL ``GeoTransform`` attribute ``"c a b f d e"``."""
    try:
        c, a, b, f, d, e = (float(v) for v in str(text).split())
    except ValueError:
        raise DataError(
            f"from_xarray: GeoTransform {text!r} is not six numbers 'c a b f d e'"
        ) from None
    if not all(np.isfinite((a, b, c, d, e, f))):
        raise DataError(f"from_xarray: GeoTransform {text!r} is not finite")
    return Affine(a, b, c, d, e, f)


def _transform_from_coords(da: xr.DataArray, xdim: str, ydim: str) -> Affine:
    xs, ys = _coords(da, xdim), _coords(da, ydim)
    if xs.size < 2 or ys.size < 2:
        raise DataError(
            "from_xarray: cannot infer pixel size from a single x or y coordinate; add a "
            "'GeoTransform' attribute to the spatial_ref coordinate"
        )
    dx, dy = np.diff(xs), np.diff(ys)
    for label, d in (("x", dx), ("y", dy)):
        if not np.allclose(d, d[0], rtol=1e-6, atol=1e-9 * max(1.0, abs(float(d[0])))):
            raise DataError(f"from_xarray: {label} coordinates are not evenly spaced")
    rx, ry = float(dx.mean()), float(dy.mean())
    return Affine(rx, 0.0, xs[0] - rx / 2, 0.0, ry, ys[0] - ry / 2)


def _find_crs(da: xr.DataArray) -> str | None:
    gm_name = da.encoding.get("grid_mapping", da.attrs.get("grid_mapping", _GRID_MAPPING))
    for holder in (da.coords.get(gm_name), da.coords.get(_GRID_MAPPING)):
        if holder is not None:
            for key in ("crs_wkt", "spatial_ref"):
                if key in holder.attrs:
                    return _short_crs(str(holder.attrs[key]))
    if "crs" in da.attrs:
        return _short_crs(str(da.attrs["crs"]))
    return None


@functools.lru_cache(maxsize=64)
def _short_crs(crs: str) -> str:
    """EPSG code when the CRS has one that round-trips exactly, else WKT."""
    c = _parse_crs(crs, "from_xarray")
    epsg = c.to_epsg(min_confidence=100)
    return f"EPSG:{epsg}" if epsg is not None else c.to_wkt()


def from_xarray(
    da: xr.DataArray, *, copy: bool = False, max_bytes: int | str | None = None
) -> GeoTensor:
    """Convert a DataArray (e.g. from ``rioxarray.open_rasterio`` or :func:`to_xarray`) back.

    The last two dims must be ``y`` and ``x`` (or ``lat``/``lon``); any dims before them are
    kept in order, the one right before ``y`` being the band axis. The transform comes from the
    grid mapping's ``GeoTransform`` attribute when present, else from evenly spaced ``x``/``y``
    pixel-centre coordinates. CRS from the grid mapping's ``crs_wkt``/``spatial_ref`` (or a
    ``crs`` attribute); band names from a ``long_name`` tuple or a string ``band`` coordinate;
    ``fill_value`` from ``_FillValue``/``nodata`` (attribute or encoding).

    **Arguments:**

    - `da`: the DataArray. Lazy (e.g. ``rioxarray.open_rasterio``) and Dask-backed arrays are
      computed. Its size counts against the read budget (:mod:`georax.io.budget`), checked
      before its data is touched: converting a lazy DataArray is reading a file.
    - `copy`: force a copy of the pixels. With ``False`` (default) an aligned, contiguous NumPy
      buffer is adopted without copying: do not modify ``da`` in place afterwards.
    - `max_bytes`: the read budget, as in :func:`georax.io.read`.

    **Returns:** a :class:`~georax.GeoTensor`.

    **Raises:** :class:`~georax.errors.ShapeError` when the spatial dims are missing or not
    last, :class:`~georax.errors.DataError` for irregular, non-numeric or non-finite
    coordinates or a malformed ``GeoTransform``, :class:`~georax.io.errors.CRSMismatchError`
    for an unparsable CRS, :class:`~georax.io.errors.ReadBudgetExceededError` for an array
    over the read budget, :class:`~georax.errors.ConfigError` for non-numeric pixels.
    """
    if not isinstance(da, xr.DataArray):
        raise ShapeError(f"from_xarray needs an xarray.DataArray, got {type(da).__name__}")
    ydim, xdim = _spatial_dims(da)
    transform = _transform_of(da, xdim, ydim)
    crs = _find_crs(da)
    band_names = _band_names_of(da)
    fill = _fill_value_of(da)
    # Priced before `da.data` is touched: on a lazy DataArray that access reads the file.
    source = str(da.encoding.get("source", f"DataArray {da.name!r}"))
    budget = max_read_bytes(max_bytes, "georax.io.from_xarray")
    check_read_bytes(source, da.shape, da.dtype, budget, what="the DataArray's pixels")
    data = np.asarray(da.data)
    return GeoTensor(as_jax_array(data, copy=copy), transform, crs, fill, band_names)


def _spatial_dims(da: xr.DataArray) -> tuple[str, str]:
    """``(ydim, xdim)``: ``y``/``x`` (or ``lat``/``lon``), which must be the last two dims."""
    dims = tuple(str(d) for d in da.dims)
    ydim = "y" if "y" in dims else "lat" if "lat" in dims else None
    xdim = "x" if "x" in dims else "lon" if "lon" in dims else None
    if xdim is None or ydim is None:
        raise ShapeError(f"from_xarray: DataArray needs 'y' and 'x' dims, got {dims}")
    if dims[-2:] != (ydim, xdim):
        raise ShapeError(
            f"from_xarray: the last two dims must be ({ydim!r}, {xdim!r}), got {dims}; "
            f"transpose first: da.transpose(..., {ydim!r}, {xdim!r})"
        )
    return ydim, xdim


def _transform_of(da: xr.DataArray, xdim: str, ydim: str) -> Affine:
    """The grid mapping's ``GeoTransform`` (re-anchored on the coordinates), else the coords'."""
    gm = da.coords.get(da.encoding.get("grid_mapping", _GRID_MAPPING))
    geotransform = gm.attrs.get("GeoTransform") if gm is not None else None
    if geotransform is None:
        return _transform_from_coords(da, xdim, ydim)
    transform = _geotransform(geotransform)
    a, b, d, e = transform.a, transform.b, transform.d, transform.e
    # A subset (isel) of a DataArray keeps the parent's GeoTransform: re-anchor on coords.
    if b == 0 and d == 0 and da.sizes[xdim] >= 1 and da.sizes[ydim] >= 1:
        x0 = float(_coords(da, xdim)[0]) - a / 2
        y0 = float(_coords(da, ydim)[0]) - e / 2
        transform = Affine(a, 0.0, x0, 0.0, e, y0)
    return transform


def _band_names_of(da: xr.DataArray) -> tuple[str, ...] | None:
    """From a ``long_name`` list/tuple of the band count, or a string band coordinate."""
    if da.ndim < 3:
        return None
    band_dim = da.dims[-3]
    names = da.attrs.get("long_name")
    if isinstance(names, list | tuple) and len(names) == da.sizes[band_dim]:
        return tuple(str(n) for n in names)
    if band_dim in da.coords and da[band_dim].dtype.kind in "UO":
        return tuple(str(v) for v in da[band_dim].values)
    return None


def _fill_value_of(da: xr.DataArray) -> Any:
    """``_FillValue`` or ``nodata``, from the attributes first, then the encoding."""
    for source in (da.attrs, da.encoding):
        for key in ("_FillValue", "nodata"):
            if source.get(key) is not None:
                fill = source[key]
                return fill.item() if isinstance(fill, np.generic) else fill
    return None
