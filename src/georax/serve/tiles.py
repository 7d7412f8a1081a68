"""XYZ tiles from a COG through a compiled pipeline: reading, rendering, caching, TileJSON.

**Reading: rio-tiler's ``Reader``, not a hand-rolled ``WarpedVRT``.** A tile of the
WebMercatorQuad matrix set (morecantile) is a 256 x 256 window in EPSG:3857. rio-tiler computes
that window in the source CRS, opens a ``WarpedVRT`` aligned with the source grid and reads it
with ``out_shape=(256, 256)``: GDAL then serves the read from the overview level whose
resolution fits the zoom (a COG's internal overviews), so a low-zoom tile never decodes the
full-resolution blocks. It also returns the per-pixel mask (outside the raster, nodata, an alpha
band or an internal mask), which is what makes tiles transparent outside the data. Doing the
same with rasterio's ``WarpedVRT`` directly means re-deriving that window/overview/mask logic,
and rio-tiler is the maintained reader TiTiler itself uses -- which also makes the benchmark
against TiTiler compare rendering and serving, not two readers. What georax adds on top:

- each worker thread keeps its ``Reader`` (its GDAL dataset handle and block cache) open across
  requests instead of opening the file per tile; a changed file (size, mtime, inode) is
  reopened;
- the layer's pipeline is compiled once, at a fixed ``float32 (band, 256, 256)`` input, with the
  RGBA packing and the nodata alpha inside the same XLA program
  (:meth:`CompiledPipeline.run_values`);
- the rendered PNGs go in an LRU cache keyed by (layer digest, z, x, y, source ETag) in the app
  (:mod:`georax.serve.app`), so a warm map serves bytes.

Tiles that do not intersect the data are a fixed, fully transparent PNG (no read at all).
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import morecantile
import numpy as np
from affine import Affine
from PIL import Image
from rasterio.crs import CRS
from rio_tiler.io import Reader

from georax.core.errors import ShapeError
from georax.serve.compiled import CompiledPipeline, Signature, spec_geotensor
from georax.serve.errors import RequestError
from georax.tensor import GeoTensor

__all__ = [
    "MERCATOR_TILE_GRID",
    "TILE_SIZE",
    "TileLayer",
    "encode_png",
    "pack_rgba",
    "transparent_png",
]

TILE_SIZE = 256
TMS = morecantile.tms.get("WebMercatorQuad")
_WGS84 = CRS.from_epsg(4326)
# The grid of tile (0, 0, 0) at 256 px: where a layer's output is checked.
_MERCATOR_T = Affine(
    2 * 20037508.342789244 / TILE_SIZE, 0.0, -20037508.342789244,
    0.0, -2 * 20037508.342789244 / TILE_SIZE, 20037508.342789244,
)  # fmt: skip
#: ``(transform, crs)`` of tile (0, 0, 0): the grid a layer is checked and priced on.
MERCATOR_TILE_GRID = (_MERCATOR_T, "EPSG:3857")


def pack_rgba(out: Any, valid: jax.Array) -> jax.Array:
    """A layer pipeline's uint8 output -> ``(H, W, 4)`` RGBA, alpha 0 where `valid` is False.

    **Arguments:**

    - `out`: ``uint8 (1|3|4, H, W)``: grey, RGB or RGBA.
    - `valid`: ``bool (H, W)``: pixels with data.

    **Returns:** ``uint8 (H, W, 4)`` (what a PNG encoder takes without a copy).
    """
    bands = out.shape[-3]
    opaque = jnp.full(out.shape[-2:], 255, jnp.uint8)
    if bands == 1:
        rgb, alpha = jnp.concatenate([out] * 3, axis=-3), opaque
    elif bands == 3:
        rgb, alpha = out, opaque
    else:
        rgb, alpha = out[..., :3, :, :], out[..., 3, :, :]
    alpha = jnp.where(valid, alpha, jnp.uint8(0))
    return jnp.moveaxis(jnp.concatenate([rgb, alpha[None]], axis=-3), -3, -1)


def encode_png(rgba: np.ndarray, compress_level: int = 1) -> bytes:
    """Encode ``uint8 (H, W, 4)`` as PNG with Pillow (zlib level `compress_level`)."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(rgba), "RGBA").save(buf, "PNG", compress_level=compress_level)
    return buf.getvalue()


_TRANSPARENT: bytes | None = None


def transparent_png() -> bytes:
    """The fully transparent 256 x 256 tile (encoded once)."""
    global _TRANSPARENT
    if _TRANSPARENT is None:
        _TRANSPARENT = encode_png(np.zeros((TILE_SIZE, TILE_SIZE, 4), np.uint8), 9)
    return _TRANSPARENT


def file_etag(path: Path) -> str:
    """A validator of a file's content: changes when the file is replaced or rewritten."""
    st = os.stat(path)
    return hashlib.sha256(f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class LayerInfo:
    """What the map page and TileJSON need to know of a layer's source."""

    bounds: tuple[float, float, float, float]  # WGS84 (west, south, east, north)
    minzoom: int
    maxzoom: int
    count: int


class TileLayer:
    """One tile layer: a source COG and its compiled rendering pipeline.

    **Arguments:**

    - `name`: the layer's name (URLs, messages).
    - `path`: the source raster (already resolved under a data root).
    - `pipeline`: the rendering pipeline, compiled with :func:`pack_rgba` as its ``post``.
    - `bands`: 0-based band indices to read (None: all).
    - `resampling`: GDAL resampling for the tile read.
    - `compress_level`: PNG zlib level.
    - `title`: for the map page.
    """

    def __init__(
        self,
        name: str,
        path: Path,
        pipeline: CompiledPipeline,
        *,
        bands: tuple[int, ...] | None = None,
        resampling: str = "bilinear",
        compress_level: int = 1,
        title: str | None = None,
    ) -> None:
        self.name = name
        self.path = path
        self.pipeline = pipeline
        self.resampling = resampling
        self.compress_level = compress_level
        self.title = title or name
        self._local = threading.local()
        self.etag = file_etag(path)
        with Reader(str(path), tms=TMS) as reader:
            count = reader.dataset.count
            if bands is not None and max(bands) >= count:
                raise ShapeError(
                    f"layer {name!r}: bands {list(bands)} but {path.name} has {count} band(s)"
                )
            west, south, east, north = reader.get_geographic_bounds(_WGS84)
            self.info = LayerInfo(
                (west, south, east, north), int(reader.minzoom), int(reader.maxzoom), count
            )
        self.indexes = None if bands is None else tuple(b + 1 for b in bands)
        n = count if bands is None else len(bands)
        self.signature = Signature((n, TILE_SIZE, TILE_SIZE), "float32")
        self._valid_spec = jax.ShapeDtypeStruct((TILE_SIZE, TILE_SIZE), jnp.bool_)

    # ------------------------------------------------------------------ compile
    def check_output(self) -> None:
        """Refuse a pipeline that does not render ``uint8`` grey/RGB/RGBA tiles, or that
        depends on the tile's grid (a layer compiles once for every tile)."""
        sig = self.signature
        spec = spec_geotensor(sig, _MERCATOR_T, "EPSG:3857")
        out = jax.eval_shape(lambda gt: self.pipeline.op(gt, key=jax.random.key(0)), spec)
        values = out.values if isinstance(out, GeoTensor) else out
        shape = getattr(values, "shape", None)
        if (
            shape is None
            or values.dtype != jnp.uint8
            or len(shape) != 3
            or shape[0] not in (1, 3, 4)
            or tuple(shape[1:]) != (TILE_SIZE, TILE_SIZE)
        ):
            shown = f"{values.dtype}{list(shape)}" if shape is not None else type(out).__name__
            raise ShapeError(
                f"layer {self.name!r}: its pipeline must turn {sig.shape} float32 tiles into "
                f"uint8 (1|3|4, {TILE_SIZE}, {TILE_SIZE}) grey/RGB/RGBA, it returns {shown} "
                "(end it with georax.geo.viz.Colormap or TrueColor)"
            )
        if not self.pipeline.is_grid_invariant(sig, (self._valid_spec,)):
            raise ShapeError(
                f"layer {self.name!r}: its pipeline depends on the tile's georeferencing, so it "
                "cannot be compiled once for every tile"
            )

    def warm(self) -> None:
        """Compile the layer's program now (one compile per layer; after :meth:`check_output`)."""
        self.pipeline.warm(self.signature, (self._valid_spec,))

    # ------------------------------------------------------------------ read + render
    def source_etag(self) -> str:
        """The source file's current ETag (re-stat'ed: a rewritten source invalidates)."""
        try:
            return file_etag(self.path)
        except OSError:
            raise RequestError(
                404, "SourceMissing", f"layer {self.name!r}: its source file is gone"
            ) from None

    def _reader(self, etag: str) -> Reader:
        local = self._local
        reader = getattr(local, "reader", None)
        if reader is None or local.etag != etag:
            if reader is not None:
                reader.close()
            reader = Reader(str(self.path), tms=TMS)
            local.reader, local.etag = reader, etag
        return reader

    def render(self, z: int, x: int, y: int, etag: str) -> bytes:
        """The PNG of tile (z, x, y): read, run the compiled layer, encode (worker thread)."""
        reader = self._reader(etag)
        if not reader.tile_exists(x, y, z):
            return transparent_png()
        img = reader.tile(
            x, y, z, tilesize=TILE_SIZE, indexes=self.indexes,
            resampling_method=self.resampling,
        )  # fmt: skip
        data = img.array
        mask = np.ma.getmaskarray(data)
        valid = np.logical_or.reduce(~mask, axis=0)
        values = np.ma.filled(data.astype(np.float32), np.nan)
        rgba = self.pipeline.run_values(values, self.signature, valid)
        return encode_png(np.asarray(rgba), self.compress_level)

    def tilejson(self, base_url: str) -> dict[str, Any]:
        """The layer's TileJSON 3.0.0 document."""
        west, south, east, north = self.info.bounds
        zoom = max(self.info.minzoom, min(self.info.maxzoom, self.info.maxzoom - 2))
        return {
            "tilejson": "3.0.0",
            "name": self.name,
            "description": self.title,
            "version": self.pipeline.config_hash[:16],
            "scheme": "xyz",
            "tiles": [f"{base_url}tiles/{self.name}/{{z}}/{{x}}/{{y}}.png"],
            "minzoom": self.info.minzoom,
            "maxzoom": self.info.maxzoom,
            "bounds": [west, south, east, north],
            "center": [(west + east) / 2, (south + north) / 2, zoom],
            "config_hash": self.pipeline.config_hash,
            "pipeline_digest": self.pipeline.digest,
        }


def check_tile(z: int, x: int, y: int) -> None:
    """Refuse coordinates outside the WebMercatorQuad matrix set with 404."""
    max_zoom = len(TMS.tileMatrices) - 1
    if not 0 <= z <= max_zoom:
        raise RequestError(404, "TileOutOfRange", f"zoom {z} outside 0..{max_zoom}")
    n = 1 << z
    if not (0 <= x < n and 0 <= y < n):
        raise RequestError(
            404, "TileOutOfRange", f"tile ({z}, {x}, {y}) outside the {n} x {n} grid of zoom {z}"
        )


def tile_etag(digest: str, z: int, x: int, y: int, source_etag: str) -> str:
    """The tile's ETag: a hash of (layer digest, z, x, y, source ETag), quoted."""
    text = f"{digest}:{z}:{x}:{y}:{source_etag}"
    return '"' + hashlib.sha256(text.encode()).hexdigest()[:32] + '"'
