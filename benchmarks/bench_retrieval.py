"""Benchmark: time to reach the same loss in a methane retrieval, georax vs SciPy least squares.

The problem (both sides minimise exactly the same function from the same start, in the same
variables): the 36-band plume scene ``gx.data.plume_scene(size, seed)``; unknowns: enhancement,
albedo and spectral slope of every pixel (3 x size^2, 196,608 at 256 x 256); loss

    0.5 * sum(((F(state) - y) / sigma)^2) + 0.5 * sum((grad dX / tau)^2)

with ``F`` the Beer-Lambert forward model and the background spectrum estimated from the scene.
This is SciPy's ``cost`` for the residual vector ``[(F - y) / sigma, d_rows dX / tau,
d_cols dX / tau]``.

- **georax**: :class:`~georax.geo.retrieval.MethaneRetrieval` (the forward model run patchwise
  with :class:`~georax.patch.Patchwise`, 64-pixel chips), ``jax.jit`` + ``jax.grad`` + optax Adam,
  driven by :func:`~georax.geo.retrieval.fit` in chunks of 10 compiled steps.
- **SciPy**: ``scipy.optimize.least_squares`` (``method="trf"``) on the same forward model written
  in NumPy, with a **finite-difference** Jacobian (``jac="2-point"``). A dense FD Jacobian would
  need one residual evaluation per unknown (196,608 per iteration): infeasible. So SciPy gets the
  Jacobian's **sparsity pattern** (``jac_sparsity``: each residual depends on the unknowns of one
  or two pixels), which it colours into a handful of column groups, one residual evaluation each,
  and the sparse trust-region solver ``tr_solver="lsmr"``. This is SciPy's best FD configuration
  for this problem; SciPy is Gauss-Newton (second order), Adam first order.

Target: ``L* + 1e-3 (L0 - L*)``, with ``L0`` the starting loss and ``L*`` the loss of a long
georax reference run (not timed); i.e. 99.9 % of the achievable decrease. Each method is timed
until its loss first reaches the target (georax: ``fit(target_loss=...)``; SciPy: a callback
that stops it, SciPy >= 1.16). Times are medians of ``--repeats`` runs, georax after a warm-up
(compile) run whose time is reported separately; both RMSEs against the true enhancement are
taken at the target.

Run:  python benchmarks/bench_retrieval.py [--size 256] [--repeats 3] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy
import scipy.sparse as sps
from scipy.optimize import least_squares

import georax as gx
from georax.geo.retrieval import (
    MethaneForward,
    MethaneRetrieval,
    background_spectrum,
    initial_state,
)
from georax.patch import Patcher

TARGET_FRACTION = 1e-3


class NumpyProblem:
    """The same loss as ``MethaneRetrieval.objective``, as a SciPy residual vector (float64)."""

    def __init__(self, op: MethaneRetrieval, y: np.ndarray) -> None:
        f = op.forward
        self.y = y.astype(np.float64)
        self.bands, self.h, self.w = y.shape
        col = (slice(None), None, None)
        self.bg = np.asarray(f.background, np.float64)[col]
        self.k = np.asarray(f.absorption, np.float64)[col]
        self.basis = np.asarray(f.slope_basis, np.float64)[col]
        self.m = float(f.air_mass_factor)
        self.sigma = float(op.noise_std)
        self.tau = float(op.prior_std[0])
        assert float(op.prior_std[1]) == 0.0 == float(op.prior_std[2])
        self.scale = np.asarray(op.state_scale, np.float64)[col]

    def residuals(self, z: np.ndarray) -> np.ndarray:
        dx, albedo, slope = z.reshape(3, self.h, self.w) * self.scale
        pred = albedo * (1.0 + slope * self.basis) * self.bg * np.exp(-self.m * self.k * dx)
        return np.concatenate(
            [
                ((pred - self.y) / self.sigma).ravel(),
                (np.diff(dx, axis=0) / self.tau).ravel(),
                (np.diff(dx, axis=1) / self.tau).ravel(),
            ]
        )

    def sparsity(self) -> sps.csr_matrix:
        """Which unknowns each residual depends on (data: 3 per pixel; prior: 2 neighbours)."""
        n = self.h * self.w
        pix = np.arange(n).reshape(self.h, self.w)
        rows, cols = [], []
        for b in range(self.bands):
            for c in range(3):
                rows.append(b * n + pix.ravel())
                cols.append(c * n + pix.ravel())
        offset = self.bands * n
        for a, b in ((pix[:-1, :], pix[1:, :]), (pix[:, :-1], pix[:, 1:])):
            r = offset + np.arange(a.size)
            rows += [r, r]
            cols += [a.ravel(), b.ravel()]
            offset += a.size
        rr, cc = np.concatenate(rows), np.concatenate(cols)
        return sps.csr_matrix((np.ones(rr.size), (rr, cc)), shape=(offset, 3 * n))


def rmse(dx: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(dx, np.float64) - truth) ** 2)))


def run_scipy(problem: NumpyProblem, z0: np.ndarray, pattern: Any, target: float) -> dict:
    reached: dict[str, Any] = {}
    calls = [0]

    def residuals(z: np.ndarray) -> np.ndarray:
        calls[0] += 1
        return problem.residuals(z)

    def stop_at_target(intermediate_result: Any) -> None:
        if intermediate_result.cost <= target:
            reached["x"] = intermediate_result.x.copy()
            raise StopIteration

    t0 = time.perf_counter()
    res = least_squares(
        residuals,
        z0,
        jac="2-point",
        jac_sparsity=pattern,
        tr_solver="lsmr",
        method="trf",
        callback=stop_at_target,
    )
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "loss": float(res.cost),
        "x": reached.get("x", res.x),
        "reached": res.cost <= target,
        "detail": f"{res.njev} Jacobians, {calls[0]} residual evals (FD included)",
    }


def run_georax(op: MethaneRetrieval, x: Any, opt: Any, steps: int, target: float) -> dict:
    t0 = time.perf_counter()
    res = op.fit(x, steps=steps, optimizer=opt, chunk=10, target_loss=target)
    jax.block_until_ready(res.state.values)
    seconds = time.perf_counter() - t0
    losses = res.losses
    return {
        "seconds": seconds,
        "loss": float(losses[:-1].min()),
        "state": np.asarray(res.state.values),
        "reached": bool(losses[:-1].min() <= target),
        "detail": f"{losses.size - 1} Adam steps",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=300, help="most Adam steps (georax)")
    args = ap.parse_args()

    scene = gx.data.plume_scene(args.size, seed=args.seed)
    x = scene.reflectance
    truth = np.asarray(scene.enhancement.values[0], np.float64)
    forward = MethaneForward.from_scene(scene, background=background_spectrum(x.values))
    op = MethaneRetrieval(forward, Patcher.regular(64), noise_std=scene.noise_std, steps=args.steps)
    problem = NumpyProblem(op, np.asarray(x.values))
    z0 = np.asarray(op.start(jnp.asarray(x.values)), np.float64).ravel()
    z0_check = initial_state(x.values, forward.background, forward.slope_basis)
    assert np.allclose(z0.reshape(3, args.size, args.size) * problem.scale, z0_check, rtol=1e-5)

    # the same loss on both sides, at the start and at a perturbed point
    l0_np = 0.5 * float(np.sum(problem.residuals(z0) ** 2))
    l0_gx = float(jax.jit(op.objective)(jnp.asarray(z0.reshape(3, args.size, -1)), x.values))
    assert abs(l0_np - l0_gx) < 1e-5 * l0_np, (l0_np, l0_gx)

    # the target: 99.9 % of the decrease a long reference run achieves (not timed)
    opt = op.optimizer(args.steps)
    t0 = time.perf_counter()
    reference = op.fit(x, steps=args.steps, optimizer=opt, chunk=10)
    first = time.perf_counter() - t0
    l_star = float(reference.losses.min())
    target = l_star + TARGET_FRACTION * (l0_np - l_star)

    pattern = problem.sparsity()
    georax_runs = [run_georax(op, x, opt, args.steps, target) for _ in range(args.repeats)]
    scipy_runs = [run_scipy(problem, z0, pattern, target) for _ in range(args.repeats)]

    t_gx = statistics.median(r["seconds"] for r in georax_runs)
    t_sp = statistics.median(r["seconds"] for r in scipy_runs)
    g, s = georax_runs[-1], scipy_runs[-1]
    dx_scipy = s["x"].reshape(3, args.size, args.size)[0] * problem.scale[0, 0, 0]
    rows = [
        (
            "scipy least_squares (FD, sparse) (reference)",
            t_sp,
            1.0,
            s["loss"],
            rmse(dx_scipy, truth),
            s["reached"],
            s["detail"],
        ),
        (
            "georax jit + grad + optax Adam",
            t_gx,
            t_sp / t_gx,
            g["loss"],
            rmse(g["state"][0], truth),
            g["reached"],
            g["detail"],
        ),
    ]
    n_unknowns = 3 * args.size**2
    print(
        f"georax bench_retrieval: {args.size}x{args.size} scene, {x.shape[0]} bands, "
        f"{n_unknowns} unknowns; time to loss <= {target:.7g} "
        f"(L0 {l0_np:.7g}, L* {l_star:.7g}); median of {args.repeats} runs"
    )
    print(
        f"machine: {platform.processor() or platform.machine()}, cpu_count={os.cpu_count()}, "
        f"jax {jax.__version__} ({jax.default_backend()}), numpy {np.__version__}, "
        f"scipy {scipy.__version__}, load avg {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'implementation':<46} {'median s':>9} {'speed-up':>9} {'loss at stop':>14} "
        f"{'RMSE ppm*m':>11} {'reached':>8}  work"
    )
    for name, t, ratio, loss, err, ok, detail in rows:
        print(f"{name:<46} {t:>9.2f} {ratio:>8.2f}x {loss:>14.7g} {err:>11.2f} {ok!s:>8}  {detail}")
    print(
        f"georax first call (compile + all {args.steps} steps of the reference run): "
        f"{first:.1f} s; the timed runs reuse the compiled step"
    )


if __name__ == "__main__":
    main()
