"""Canonical bytes for arrays and GeoTensors, so inputs and outputs can be hashed and embedded.

An array is stored as a NumPy ``.npy`` record (format 1.0: a fixed header with dtype, order and
shape, then the raw little-endian C-order bytes; never pickled), which is deterministic: equal
arrays give equal bytes, hence equal SHA-256 digests. A GeoTensor's georeferencing (transform,
CRS, fill value, band names) is kept beside it as a small JSON-able dict, recorded in the
manifest.
"""

from __future__ import annotations

import io
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from georax.core.carrier import Carrier
from georax.core.errors import SerializationError
from georax.core.files import check_npy_header
from georax.repro.errors import ArtifactFormatError, ReproError
from georax.tensor import GeoTensor

__all__ = ["decode_array", "encode_array", "geo_of", "rebuild"]

_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _json_number(v: Any) -> Any:
    """A fill value as JSON: NaN and the infinities become strings (strict JSON has none)."""
    if isinstance(v, float) and not math.isfinite(v):
        return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
    if isinstance(v, np.generic):
        return _json_number(v.item())
    return v


def geo_of(x: Any) -> dict[str, Any] | None:
    """The metadata of a carrier as a JSON-able dict (``None`` for a plain array).

    A GeoTensor gives ``carrier``, ``transform`` (six affine coefficients), ``crs``,
    ``fill_value`` and ``band_names``; another carrier gives only its type name.
    """
    if isinstance(x, GeoTensor):
        t = x.transform
        return {
            "carrier": "GeoTensor",
            "transform": [float(c) for c in (t.a, t.b, t.c, t.d, t.e, t.f)],
            "crs": x.crs,
            "fill_value": _json_number(x.fill_value),
            "band_names": None if x.band_names is None else list(x.band_names),
        }
    if isinstance(x, Carrier):
        return {"carrier": type(x).__name__}
    return None


def encode_array(x: Any, what: str) -> bytes:
    """The ``.npy`` bytes of ``x``'s values (a carrier's ``values``, or the array itself).

    **Raises:** :class:`ReproError` naming ``what`` for object, string or traced arrays.
    """
    values = x.values if isinstance(x, Carrier) else x
    if isinstance(values, jax.core.Tracer):
        raise ReproError(f"{what}: cannot record a traced value (call outside jit)")
    a = np.ascontiguousarray(np.asarray(values))
    if a.dtype.kind not in "biufc" and a.dtype != jnp.bfloat16:
        raise ReproError(f"{what}: arrays of dtype {a.dtype} cannot be recorded (numbers only)")
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, version=(1, 0), allow_pickle=False)
    return buf.getvalue()


def decode_array(data: bytes, dtype: str, what: str) -> np.ndarray:
    """The array stored by :func:`encode_array` (never unpickles).

    **Arguments:**

    - `data`: the ``.npy`` bytes.
    - `dtype`: the dtype name recorded with it (restores ``bfloat16``, which ``.npy`` stores as
      raw 2-byte records).
    - `what`: a name for messages.
    """
    f = io.BytesIO(data)
    try:
        check_npy_header(f, what)  # nothing is allocated for a header that lies
        a = np.lib.format.read_array(f, allow_pickle=False)
    except SerializationError as e:
        raise ArtifactFormatError(str(e)) from None
    except (ValueError, OSError, EOFError) as e:
        raise ArtifactFormatError(f"{what}: not a valid .npy record: {e}") from None
    if dtype == "bfloat16" and a.dtype != jnp.bfloat16:
        a = a.view(jnp.bfloat16)
    if a.dtype.name != dtype:
        raise ArtifactFormatError(f"{what}: holds dtype {a.dtype.name}, the manifest says {dtype}")
    return a


def rebuild(values: np.ndarray, geo: Any, what: str) -> Any:
    """An input value from its stored array and metadata: a GeoTensor, or the plain array."""
    if geo is None:
        return values
    if not isinstance(geo, dict) or geo.get("carrier") != "GeoTensor":
        raise ArtifactFormatError(f"{what}: only GeoTensor inputs can be rebuilt, got {geo!r}")
    try:
        fill = geo.get("fill_value")
        fill = _SPECIAL.get(fill, fill) if isinstance(fill, str) else fill
        names = geo.get("band_names")
        return GeoTensor(values, tuple(geo["transform"]), geo.get("crs"), fill, names)
    except Exception as e:  # a forged manifest must fail as a typed error
        raise ArtifactFormatError(f"{what}: cannot rebuild the GeoTensor: {e}") from None
