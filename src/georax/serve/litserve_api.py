"""``PipelineLitAPI``: a georax pipeline behind LitServe (the seeds' case 4).

LitServe's ``decode_request -> predict -> encode_response`` split lines up with read -> compiled
pipeline -> serialise. This API:

- **setup** loads the pipeline through the sandbox (allow-listed operators only, the same
  :class:`~georax.serve.store.SandboxedLoader` as the FastAPI server), prices it for the declared
  input against the memory and FLOP budgets, and compiles (warms) it -- the single input shape
  and, with ``max_batch_size > 1``, the vmapped batch -- before the first request;
- **decode_request** reads ``{"cog_b64": <base64 GeoTIFF>}`` or ``{"path": "<file under
  data_root>", "bounds": [...]}`` into a GeoTensor (under the read budget); a bad request is an
  ``HTTPException`` 4xx with the typed error's name and message;
- **batch** stacks same-signature inputs with ``jnp.stack``; **predict** runs the compiled
  program (vmapped for a batch, padded to a power of two so few batch sizes compile);
  **unbatch** splits the results again, each re-georeferenced from its own input;
- **encode_response** writes the output COG atomically under ``output_root`` and returns
  ``{"cog_b64", "output", "stats", "shape", "batch", "config_hash", "pipeline_digest"}``
  (``batch``: how many requests were computed together): the config hash in every response,
  so a client sees when the pipeline changed under it.


Typing note: this module does not use postponed annotations (``from __future__ import
annotations``): LitServe builds its FastAPI endpoint from the *runtime* annotation of
``decode_request``'s ``request`` parameter (``dict``: a JSON object body).
"""

import base64
import binascii
import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import litserve as ls
from fastapi import HTTPException
from rasterio.io import MemoryFile

from georax.core.errors import GeoraxError
from georax.io.budget import read_budget
from georax.io.raster import read as read_raster
from georax.io.raster import write_cog
from georax.serve.compiled import CompiledPipeline, Signature, signature_of
from georax.serve.config import PipelineSource, ServerSpec, Services
from georax.serve.errors import problem_body, status_for
from georax.serve.stats import band_stats
from georax.serve.store import SandboxedLoader, input_key_seed
from georax.serve.uploads import upload_problem
from georax.tensor import GeoTensor

__all__ = ["PipelineLitAPI"]


@dataclasses.dataclass
class _Batch:
    """Inputs of one LitServe batch: stacked values when they share a signature."""

    gts: list[GeoTensor]
    keys: list[jax.Array]
    values: jax.Array | None


@dataclasses.dataclass
class _Item:
    gt: GeoTensor
    key: jax.Array


@dataclasses.dataclass
class _Result:
    """One output, and the size of the batch it was computed in (reported to the client)."""

    output: Any
    batch: int


def _refuse(e: BaseException) -> HTTPException:
    body = problem_body(e)
    return HTTPException(status_for(e), detail=f"{body['error']}: {body['message']}")


class PipelineLitAPI(ls.LitAPI):
    """A sandboxed, priced, compiled georax pipeline as a LitServe API (module docstring).

    **Arguments:**

    - `pipeline`: a pipeline YAML file, a directory written by :func:`georax.save`, or YAML
      text.
    - `input_shape`: the ``(band, H, W)`` it is priced and compiled for.
    - `dtype`: the dtype inputs are read as.
    - `fill_value`, `band_names`: the static metadata the inputs carry (the files' nodata and
      band descriptions), part of what is compiled: declare them to have them warmed.
    - `memory_budget`, `flop_budget`: the price the pipeline may have for that input.
    - `pricing_seconds`: the wall-clock limit on pricing.
    - `data_root`: the directory ``{"path": ...}`` requests may read from (None: refused).
    - `output_root`: where output COGs are written.
    - `read_budget`: the most one request's read may allocate.
    - `max_batch_size`, `batch_timeout`, `api_path`: as for :class:`litserve.LitAPI`.
    """

    def __init__(
        self,
        pipeline: str | os.PathLike[str],
        *,
        input_shape: tuple[int, ...],
        dtype: str = "float32",
        fill_value: float | int | None = None,
        band_names: tuple[str, ...] | None = None,
        memory_budget: int | str = "512MiB",
        flop_budget: float | None = 1e10,
        pricing_seconds: float = 60.0,
        data_root: str | os.PathLike[str] | None = None,
        output_root: str | os.PathLike[str] = "georax-out/litserve",
        read_budget: int | str = "256MiB",
        max_batch_size: int = 1,
        batch_timeout: float = 0.0,
        api_path: str = "/predict",
    ) -> None:
        super().__init__(
            max_batch_size=max_batch_size, batch_timeout=batch_timeout, api_path=api_path
        )
        self.pipeline_source = os.fspath(pipeline)
        self.server_spec = ServerSpec(
            output_root=os.path.abspath(output_root),
            memory_budget=memory_budget,
            flop_budget=flop_budget,
            pricing_seconds=pricing_seconds,
            read_budget=read_budget,
        )
        self.signature = Signature(
            tuple(int(d) for d in input_shape),
            dtype,
            fill_value,
            None if band_names is None else tuple(band_names),
        )
        self.data_root = None if data_root is None else os.path.abspath(data_root)
        self.batch_size = max_batch_size

    # ------------------------------------------------------------------ setup
    def _source(self) -> PipelineSource | None:
        """A saved directory or a YAML file; None when `pipeline` is YAML text."""
        text = self.pipeline_source
        if "\n" in text or len(text) > 4096:
            return None
        p = Path(text)
        if p.is_dir():
            return PipelineSource(saved=str(p.resolve()))
        if p.is_file():
            return PipelineSource(yaml=str(p.resolve()))
        return None

    def setup(self, device: str) -> None:
        """Load sandboxed, price, compile (single input and, if batching, the batch)."""
        del device
        services = Services(server=self.server_spec, base=os.getcwd())
        self.loader = SandboxedLoader(services)
        source = self._source()
        op = (
            self.loader.build(source, "PipelineLitAPI.pipeline")
            if source is not None
            else self.loader.build_text(self.pipeline_source)
        )
        self.compiled = CompiledPipeline("litserve", op)
        self.loader.price(self.compiled, [self.signature])
        self.compiled.warm(self.signature)
        self.config_hash = self.compiled.config_hash
        self.pipeline_digest = self.compiled.digest
        self.output_root = Path(self.server_spec.output_root)
        self.output_root.mkdir(parents=True, exist_ok=True)
        if self.batch_size > 1:  # compile the largest (padded) batch now, not on a request
            size = 1 << (self.batch_size - 1).bit_length()
            self.compiled.warm_batch(self.signature, size)

    # ------------------------------------------------------------------ decode
    def decode_request(self, request: dict, **kwargs: Any) -> _Item:
        """``{"cog_b64": ...}`` or ``{"path": ..., "bounds": ...}`` -> the input GeoTensor."""
        if not isinstance(request, dict):
            raise HTTPException(400, detail="InvalidRequest: send a JSON object")
        try:
            with read_budget(self.server_spec.read_budget):
                gt, ident = self._read(request)
        except GeoraxError as e:
            raise _refuse(e) from None
        seed = hashlib.sha256(f"{self.pipeline_digest}:{ident}".encode()).hexdigest()
        return _Item(gt, input_key_seed(seed))

    def _read(self, request: dict[str, Any]) -> tuple[GeoTensor, str]:
        dtype = self.signature.dtype
        if "cog_b64" in request:
            text = request["cog_b64"]
            if not isinstance(text, str):
                raise HTTPException(400, detail="InvalidRequest: cog_b64 must be a string")
            try:
                data = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                raise HTTPException(400, detail="InvalidRequest: cog_b64 is not base64") from None
            problem = upload_problem(data)  # only TIFF bytes reach GDAL (see serve.uploads)
            if problem is not None:
                raise HTTPException(400, detail=f"NotAGeoTIFF: {problem}")
            with MemoryFile(data, filename="upload.tif") as mem:
                gt = read_raster(mem.name, dtype=dtype)
            return gt, "upload:" + hashlib.sha256(data).hexdigest()
        if "path" in request:
            path = self._data_path(request["path"])
            bounds = request.get("bounds")
            gt = read_raster(
                path, bounds=tuple(bounds) if bounds is not None else None, dtype=dtype
            )
            return gt, f"path:{path}:{bounds}"
        raise HTTPException(400, detail="InvalidRequest: give 'cog_b64' or 'path'")

    def _data_path(self, text: Any) -> Path:
        if self.data_root is None:
            raise HTTPException(403, detail="PathNotAllowed: this API has no data_root")
        root = Path(self.data_root).resolve()
        if not isinstance(text, str) or not text or "\0" in text or text.startswith("/"):
            raise HTTPException(403, detail=f"PathNotAllowed: {text!r}")
        candidate = (root / text).resolve()
        if not candidate.is_relative_to(root) or candidate == root:
            raise HTTPException(403, detail=f"PathNotAllowed: {text!r} leads outside data_root")
        return candidate

    # ------------------------------------------------------------------ batch / predict
    def batch(self, inputs: list[_Item]) -> _Batch:
        """Stack same-signature inputs with ``jnp.stack`` (mixed ones stay a list)."""
        gts = [i.gt for i in inputs]
        keys = [i.key for i in inputs]
        sig = signature_of(gts[0])
        same = all(signature_of(g) == sig for g in gts[1:])
        return _Batch(gts, keys, jnp.stack([g.values for g in gts]) if same else None)

    def predict(self, x: _Item | _Batch, **kwargs: Any) -> Any:
        """Run the compiled pipeline: one input, or a batch through the vmapped program."""
        try:
            if isinstance(x, _Batch):
                outputs = self.compiled.run_batch(x.gts, x.keys, stacked=x.values)
                return [_Result(o, len(outputs)) for o in outputs]
            return _Result(self.compiled.run(x.gt, key=x.key), 1)
        except GeoraxError as e:
            raise _refuse(e) from None

    def unbatch(self, output: list[_Result]) -> list[_Result]:
        """The per-input results of a batch (already split by :meth:`predict`)."""
        return list(output)

    # ------------------------------------------------------------------ encode
    def encode_response(self, result: _Result, **kwargs: Any) -> dict[str, Any]:
        """Write the COG under ``output_root``; return it (base64), stats and the hashes."""
        output = result.output
        if not isinstance(output, GeoTensor):
            raise HTTPException(422, detail="NotARaster: the pipeline's output is not a raster")
        digest = hashlib.sha256(
            self.pipeline_digest.encode() + jax.device_get(output.values).tobytes()
        ).hexdigest()[:32]
        path = self.output_root / f"{digest}.tif"
        write_cog(output, path)
        return {
            "cog_b64": base64.b64encode(path.read_bytes()).decode("ascii"),
            "output": path.name,
            "shape": list(output.shape),
            "stats": band_stats(output),
            "batch": result.batch,
            "config_hash": self.config_hash,
            "pipeline_digest": self.pipeline_digest,
        }
