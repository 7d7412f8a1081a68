"""Seed case 4 -- a georax pipeline as a LitServe inference API (``georax.serve.PipelineLitAPI``).

LitServe's ``decode_request -> predict -> encode_response`` matches read -> compiled pipeline ->
serialise. ``PipelineLitAPI.setup`` loads the pipeline YAML through the sandbox, prices it for the
declared input against the memory and FLOP budgets and compiles it -- the single input and the
vmapped batch -- before the first request. Concurrent requests are batched (``jnp.stack`` +
``vmap``) and each response carries the COG (base64), per-band statistics and the pipeline's
``config_hash``, so a client notices when the pipeline changes under it.

This script writes the pipeline YAML and four scenes, starts the LitServe server on 127.0.0.1 in
its own process (this same file with ``--serve``), sends the four scenes at once plus a
path-based request and a malformed one, saves the returned COGs, and stops the server.

Run: ``python examples/04_litserve_api.py [--out-dir DIR]`` (default ``georax-out/04``).
"""

from __future__ import annotations

import argparse
import base64
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

import georax as gx
import georax.data as gd
from georax.serve import PipelineLitAPI, free_port, server_process

SIZE = 256
PIPELINE = """
_target_: georax.Sequential
operators:
  - {_target_: georax.geo.cloud.MaskClouds, qa_band: -1, bits: [10, 11]}
  - {_target_: georax.geo.radiometry.DNToReflectance}
  - {_target_: georax.geo.indices.NDVI, red_band: 2, nir_band: 3}
"""


def serve(out: Path, port: int) -> None:
    """The server side: what a deployment runs (``python 04_litserve_api.py --serve``)."""
    import litserve as ls

    scene = gd.sentinel2_l1c(8)  # only for its band names and nodata value
    api = PipelineLitAPI(
        out / "pipeline.yaml",
        input_shape=(7, SIZE, SIZE),
        fill_value=0,
        band_names=scene.band_names,
        memory_budget="256MiB",
        flop_budget=1e9,
        pricing_seconds=300,
        data_root=out / "data",
        output_root=out / "outputs",
        max_batch_size=4,
        batch_timeout=0.05,
    )
    server = ls.LitServer(
        api, accelerator="cpu", devices=1, workers_per_device=1, timeout=300,
        max_payload_size=32 * 2**20,
    )  # fmt: skip
    # API servers as threads: forking a process that has JAX loaded can deadlock.
    server.run(
        host="127.0.0.1", port=port, generate_client_file=False, log_level="warning",
        api_server_worker_type="thread",
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=Path("georax-out/04"))
    parser.add_argument("--serve", action="store_true", help="run the server (internal)")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    out = args.out_dir.resolve()
    if args.serve:
        serve(out, args.port)
        return
    (out / "data").mkdir(parents=True, exist_ok=True)
    (out / "pipeline.yaml").write_text(PIPELINE)
    scenes = []
    for seed in range(4):
        path = gx.io.write_cog(gd.sentinel2_l1c(SIZE, seed=seed), out / "data" / f"s{seed}.tif")
        scenes.append(Path(path))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [__file__, "--serve", "--out-dir", str(out), "--port", str(port)]
    print(f"starting the LitServe server on {base}")
    with server_process(command, f"{base}/health", log=out / "server.log"):

        def predict(payload: dict) -> httpx.Response:
            return httpx.post(f"{base}/predict", json=payload, timeout=300)

        payloads = [{"cog_b64": base64.b64encode(p.read_bytes()).decode()} for p in scenes]
        with ThreadPoolExecutor(4) as pool:  # four requests at once: LitServe batches them
            responses = list(pool.map(predict, payloads))
        hashes = set()
        for path, r in zip(scenes, responses, strict=True):
            r.raise_for_status()
            body = r.json()
            hashes.add(body["config_hash"])
            target = out / f"ndvi_{path.stem}.tif"
            target.write_bytes(base64.b64decode(body["cog_b64"]))
            print(
                f"{path.name}: shape {body['shape']}, mean NDVI {body['stats'][0]['mean']:.3f}, "
                f"batch of {body['batch']}, config_hash {body['config_hash'][:16]} -> "
                f"{target.name}"
            )
        r = predict({"path": "s0.tif"})
        r.raise_for_status()
        print(f"path request s0.tif: mean NDVI {r.json()['stats'][0]['mean']:.3f}")
        bad = predict({"cog_b64": "not base64!"})
        print(f"malformed request: HTTP {bad.status_code} {bad.json()}")
        outside = predict({"path": "../pipeline.yaml"})
        print(f"path outside data_root: HTTP {outside.status_code} {outside.json()}")
        if len(hashes) != 1 or bad.status_code != 400 or outside.status_code != 403:
            sys.exit("unexpected responses")
    print(f"\noutputs in {out}")


if __name__ == "__main__":
    main()
