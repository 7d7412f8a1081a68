"""The services file: which pipelines and tile layers a server hosts, and its limits.

A services file is YAML, parsed with georax's guarded parser
(:func:`georax.core.sandbox.parse_yaml`: safe tags only, no duplicate keys, size/depth/alias
limits), then validated field by field with pydantic models (unknown keys refused, the field
named). Relative paths are resolved against the file's directory::

    server:
      output_root: out              # /process writes its COGs here, and nowhere else
      data_roots: {scenes: data}    # path-based requests name "scenes/<file>" under data/
      memory_budget: 512MiB         # every pipeline is priced against these before it runs
      flop_budget: 1e10
    pipelines:
      ndvi:
        yaml: pipelines/ndvi.yaml   # or `saved: <dir written by gx.save>`, or `config: {...}`
        inputs: [[7, 256, 256]]     # shapes priced and compiled (warmed) at start-up
    layers:
      ndvi:
        source: scenes/s2.tif       # a COG under a data root
        pipeline: {config: {...}}   # runs on (bands, 256, 256) tiles, returns uint8 RGB(A)

Every pipeline -- the operator's own too -- is loaded through the sandbox
(``gx.loads_yaml(..., allowed=...)`` / ``gx.load(..., allowed=...)``) and priced for each
declared input; see :mod:`georax.serve.store`.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from georax.core.budget import parse_bytes, parse_flops
from georax.core.errors import ConfigError, short_repr
from georax.core.sandbox import DEFAULT_LIMITS, parse_yaml

__all__ = [
    "NAME_PATTERN",
    "InputSpec",
    "LayerSpec",
    "PipelineSource",
    "PipelineSpec",
    "ServerSpec",
    "Services",
    "UploadSpec",
    "load_services",
]

#: Names of pipelines, layers and data roots: they appear in URLs and in output paths.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)

_RESAMPLING = Literal["nearest", "bilinear", "cubic", "average", "lanczos"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(_Model):
    """One input a pipeline is priced and compiled for: ``(band, H, W)`` plus static metadata.

    The short form in YAML is the bare shape, ``[7, 256, 256]``. ``fill_value`` and
    ``band_names`` are part of what a program is compiled for (operators may read them), so
    declare the ones your inputs carry to have them warmed.
    """

    shape: tuple[int, ...]
    fill_value: float | int | None = None
    band_names: tuple[str, ...] | None = None

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return {"shape": value}
        return value

    @field_validator("shape")
    @classmethod
    def _positive(cls, shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(shape) < 2 or any(d <= 0 for d in shape):
            raise ValueError("must be at least (H, W) with every dimension > 0")
        return shape


class PipelineSource(_Model):
    """Where a pipeline comes from: exactly one of a YAML file, a saved directory, inline config.

    **Arguments:**

    - `yaml`: a pipeline YAML file (``gx.dumps_yaml``), path relative to the services file.
    - `saved`: a directory written by :func:`georax.save` (config + params, digests verified).
    - `config`: the pipeline config inline (a mapping with ``_target_``).
    - `expected_digest`: refuse a saved pipeline whose digest is not this one.
    - `variables`: values for ``${name}`` placeholders in the document.
    """

    yaml: str | None = None
    saved: str | None = None
    config: dict[str, Any] | None = None
    expected_digest: str | None = None
    variables: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _exactly_one(self) -> PipelineSource:
        given = [k for k in ("yaml", "saved", "config") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of yaml, saved, config (got {given or 'none'})")
        return self


class PipelineSpec(PipelineSource):
    """A named pipeline served by ``POST /process/{name}``.

    **Arguments:** those of :class:`PipelineSource`, and

    - `inputs`: inputs to price and compile at start-up (at least one: the pipeline is priced
      against the server's budgets before it is ever served).
    - `dtype`: the dtype inputs are cast to when read (``float32`` by default).
    """

    inputs: tuple[InputSpec, ...] = Field(min_length=1)
    dtype: str = "float32"


class LayerSpec(_Model):
    """A tile layer: a COG under a data root rendered by a pipeline at 256 x 256.

    **Arguments:**

    - `source`: ``"<data root name>/<path>"`` of a (Cloud-Optimised) GeoTIFF.
    - `pipeline`: the rendering pipeline (a :class:`PipelineSource`); it gets the tile's bands
      as ``float32 (band, 256, 256)`` with NaN outside the data and must return ``uint8`` with
      1 (grey), 3 (RGB) or 4 (RGBA) bands.
    - `bands`: 0-based band indices to read (default: all).
    - `resampling`: how source pixels are resampled into the tile.
    - `title`: shown on the map page.
    """

    source: str
    pipeline: PipelineSource
    bands: tuple[int, ...] | None = None
    resampling: _RESAMPLING = "bilinear"
    title: str | None = None

    @field_validator("bands")
    @classmethod
    def _bands(cls, bands: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if bands is not None and (not bands or any(b < 0 for b in bands)):
            raise ValueError("must be one or more 0-based band indices")
        return bands


class UploadSpec(_Model):
    """``POST /pipelines``: users submit pipeline YAML, loaded sandboxed and priced.

    **Arguments:**

    - `enabled`: accept submissions at all.
    - `max_pipelines`: how many submitted pipelines the server keeps.
    - `memory_budget`, `flop_budget`: the price a submitted pipeline may have for its declared
      input (default: the server's).
    - `max_input_pixels`: the largest declared input (band x H x W) accepted.
    """

    enabled: bool = True
    max_pipelines: int = Field(default=32, ge=0)
    memory_budget: int | None = None
    flop_budget: float | None = None
    max_input_pixels: int = Field(default=16 * 2**20, gt=0)

    @field_validator("memory_budget", mode="before")
    @classmethod
    def _budget(cls, value: Any) -> int | None:
        return None if value is None else parse_bytes(value)

    @field_validator("flop_budget", mode="before")
    @classmethod
    def _flops(cls, value: Any) -> float | None:
        return parse_flops(value)


class ServerSpec(_Model):
    """Server-wide limits and places. Sizes accept ``"64MiB"``-style strings.

    **Arguments:**

    - `output_root`: the only directory the server writes to (``/process`` outputs).
    - `data_roots`: name -> directory; path-based requests and layers read only under these.
    - `max_body_bytes`: the largest request body (checked while it streams in).
    - `memory_budget`, `flop_budget`: every pipeline is priced against these per input.
    - `read_budget`: the most one raster read may allocate (:func:`georax.io.read_budget`).
    - `request_timeout`: seconds a request may wait for its result (504 past it).
    - `pricing_seconds`: the wall-clock limit on pricing one pipeline (``Limits.max_seconds``).
    - `workers`, `tile_workers`: threads running pipelines and rendering tiles.
    - `queue_size`: requests waiting or running per pool before new ones get 503.
    - `max_programs`: compiled programs kept per pipeline (one per input shape).
    - `lazy`: load, price and compile pipelines on first use instead of at start-up.
    - `max_loaded`: with `lazy`, keep at most this many pipelines loaded (least recently used
      evicted).
    - `tile_cache_bytes`: size of the rendered-tile LRU cache (0 disables it).
    - `tile_cache_control`: the ``Cache-Control`` header of tiles.
    - `png_compress_level`: zlib level of tile PNGs (1: fast; 9: small).
    """

    output_root: str = "georax-out/serve"
    data_roots: dict[str, str] = Field(default_factory=dict)
    max_body_bytes: int = 64 * 2**20
    memory_budget: int = 512 * 2**20
    flop_budget: float | None = 1e10
    read_budget: int = 256 * 2**20
    request_timeout: float = Field(default=60.0, gt=0)
    pricing_seconds: float = Field(default=60.0, gt=0)
    workers: int = Field(default=2, ge=1, le=64)
    tile_workers: int = Field(default=4, ge=1, le=64)
    queue_size: int = Field(default=64, ge=1)
    max_programs: int = Field(default=8, ge=1)
    lazy: bool = False
    max_loaded: int | None = Field(default=None, ge=1)
    tile_cache_bytes: int = 256 * 2**20
    tile_cache_control: str = "public, max-age=3600"
    png_compress_level: int = Field(default=1, ge=0, le=9)
    uploads: UploadSpec = Field(default_factory=UploadSpec)

    @field_validator(
        "max_body_bytes", "memory_budget", "read_budget", "tile_cache_bytes", mode="before"
    )
    @classmethod
    def _sizes(cls, value: Any) -> int:
        return parse_bytes(value)

    @field_validator("flop_budget", mode="before")
    @classmethod
    def _flops(cls, value: Any) -> float | None:
        return parse_flops(value)

    @field_validator("request_timeout", "pricing_seconds")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number of seconds")
        return value

    @field_validator("data_roots")
    @classmethod
    def _root_names(cls, roots: dict[str, str]) -> dict[str, str]:
        for name in roots:
            if not _NAME.match(name):
                raise ValueError(f"data root name {name!r} must match {NAME_PATTERN}")
        return roots


class Services(_Model):
    """A whole services file (see the module docstring).

    ``base`` is the directory relative paths are resolved against (the file's directory).
    """

    server: ServerSpec = Field(default_factory=ServerSpec)
    pipelines: dict[str, PipelineSpec] = Field(default_factory=dict)
    layers: dict[str, LayerSpec] = Field(default_factory=dict)
    base: str = "."

    @field_validator("pipelines", "layers")
    @classmethod
    def _names(cls, entries: dict[str, Any]) -> dict[str, Any]:
        for name in entries:
            if not _NAME.match(name):
                raise ValueError(f"name {name!r} must match {NAME_PATTERN}")
        return entries

    def path(self, relative: str) -> Path:
        """A path from the services file, resolved against its directory."""
        return (Path(self.base) / os.path.expanduser(relative)).resolve()


def _field_of(error: Any) -> str:
    return ".".join(str(p) for p in error["loc"]) or "services"


def load_services(source: str | os.PathLike[str] | dict[str, Any]) -> Services:
    """Read and validate a services file (path), or validate a services mapping.

    **Arguments:**

    - `source`: a path to the YAML file, or the already-parsed mapping (relative paths are then
      resolved against the current directory unless it holds ``base``).

    **Returns:** the validated :class:`Services`.

    **Raises:** :class:`~georax.errors.ConfigError` naming the first invalid field,
    :class:`~georax.errors.SandboxLimitError` / ``MalformedYAMLError`` / ``UnsafeYAMLError``
    for a file the guarded parser refuses.
    """
    if isinstance(source, dict):
        data, base = dict(source), source.get("base", os.getcwd())
    else:
        path = Path(source)
        try:
            with open(path, "rb") as f:  # capped read: never more than the parser accepts
                text = f.read(DEFAULT_LIMITS.max_bytes + 1)
        except OSError as e:
            raise ConfigError("services", None, str(path), f"cannot read: {e.strerror}") from None
        data = parse_yaml(text, DEFAULT_LIMITS)
        if not isinstance(data, dict):
            raise ConfigError("services", None, str(path), "must be a YAML mapping")
        base = str(path.resolve().parent)
    data["base"] = str(base)
    try:
        return Services.model_validate(data)
    except pydantic.ValidationError as e:
        first = e.errors()[0]
        raise ConfigError(
            "services", _field_of(first), short_repr(first.get("input")), first["msg"]
        ) from None
