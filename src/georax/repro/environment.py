"""What the software environment was when an artifact was frozen, and how it has drifted since.

An artifact pins the operator graph and the inputs by content; the environment cannot be pinned
from inside Python, only recorded. :func:`capture_environment` records what decides the numbers:
the interpreter, the platform (OS, libc, CPU architecture), every installed distribution and its
version (:mod:`importlib.metadata`, so the record is as complete as a lock file of the running
environment), the JAX and jaxlib versions, the backend and its devices, the JAX/XLA settings
that change numerics (x64, default matmul precision) and the ``JAX_*`` / ``XLA_*`` environment
variables (``XLA_FLAGS`` among them). Nothing time- or process-dependent is recorded, so two
freezes in the same environment record the same bytes.

:func:`environment_drift` compares a recorded environment with another (by default the current
one): which packages were added, removed or changed version, and which other entries differ.
Bit-exact reruns across a drift are not guaranteed (BLAS, XLA and drivers change floating-point
evaluation order); the drift report says what to suspect when a rerun differs.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import platform
import re
import sys
from collections.abc import Mapping
from typing import Any

import jax

__all__ = ["EnvironmentDrift", "capture_environment", "environment_drift"]


def _normalise(name: str) -> str:
    """PEP 503 normalised distribution name (``Foo_Bar`` -> ``foo-bar``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _packages() -> dict[str, str]:
    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"] if dist.metadata else None
        if not name:
            continue
        found.setdefault(_normalise(name), str(dist.version))  # first on sys.path is the one used
    return dict(sorted(found.items()))


def capture_environment() -> dict[str, Any]:
    """The current environment as a JSON-able dict (see the module docstring for the contents).

    **Returns:** ``{"python", "platform", "packages", "jax", "env"}``.
    """
    try:
        jaxlib_version = importlib.metadata.version("jaxlib")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - jax needs jaxlib
        jaxlib_version = None
    devices = [{"platform": d.platform, "kind": d.device_kind} for d in jax.devices()]
    return {
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "build": list(platform.python_build()),
            "compiler": platform.python_compiler(),
            "byteorder": sys.byteorder,
        },
        "platform": {
            "system": platform.system(),
            "release": platform.release(),
            "machine": platform.machine(),
            "libc": "-".join(x for x in platform.libc_ver() if x),
            "platform": platform.platform(),
        },
        "packages": _packages(),
        "jax": {
            "version": jax.__version__,
            "jaxlib": jaxlib_version,
            "backend": jax.default_backend(),
            "devices": devices,
            "x64": bool(jax.config.jax_enable_x64),
            "default_matmul_precision": jax.config.jax_default_matmul_precision,
        },
        "env": {k: os.environ[k] for k in sorted(os.environ) if k.startswith(("JAX_", "XLA_"))},
    }


@dataclasses.dataclass(frozen=True)
class EnvironmentDrift:
    """The differences between a recorded environment and another one.

    Attributes:
        added: packages present now but not then, ``{name: version}``.
        removed: packages present then but not now, ``{name: version}``.
        changed: packages whose version changed, ``{name: (then, now)}``.
        other: every other entry that differs, ``{"jax.backend": (then, now), ...}``.
    """

    added: dict[str, str]
    removed: dict[str, str]
    changed: dict[str, tuple[str, str]]
    other: dict[str, tuple[Any, Any]]

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed or self.other)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form."""
        return {
            "added": dict(self.added),
            "removed": dict(self.removed),
            "changed": {k: list(v) for k, v in self.changed.items()},
            "other": {k: list(v) for k, v in self.other.items()},
        }

    def __str__(self) -> str:
        if not self:
            return "environment: unchanged"
        lines = ["environment drift:"]
        lines += [f"  {k}: {a!r} -> {b!r}" for k, (a, b) in self.other.items()]
        lines += [f"  package {k}: {a} -> {b}" for k, (a, b) in self.changed.items()]
        lines += [f"  package {k}: added ({v})" for k, v in self.added.items()]
        lines += [f"  package {k}: removed (was {v})" for k, v in self.removed.items()]
        return "\n".join(lines)


def _flatten(d: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(d, Mapping):
        for k in sorted(d, key=str):
            _flatten(d[k], f"{prefix}.{k}" if prefix else str(k), out)
    else:
        out[prefix] = d


def environment_drift(
    then: Mapping[str, Any], now: Mapping[str, Any] | None = None
) -> EnvironmentDrift:
    """Compare a recorded environment with ``now`` (default: :func:`capture_environment`).

    **Arguments:**

    - `then`: an environment recorded by :func:`capture_environment` (e.g. from a manifest).
    - `now`: another one; the current environment if omitted.

    **Returns:** an :class:`EnvironmentDrift` (falsy when nothing differs).
    """
    now = capture_environment() if now is None else now
    p0 = dict(then.get("packages") or {})
    p1 = dict(now.get("packages") or {})
    rest0: dict[str, Any] = {}
    rest1: dict[str, Any] = {}
    _flatten({k: v for k, v in then.items() if k != "packages"}, "", rest0)
    _flatten({k: v for k, v in now.items() if k != "packages"}, "", rest1)
    return EnvironmentDrift(
        added={k: p1[k] for k in sorted(set(p1) - set(p0))},
        removed={k: p0[k] for k in sorted(set(p0) - set(p1))},
        changed={k: (p0[k], p1[k]) for k in sorted(set(p0) & set(p1)) if p0[k] != p1[k]},
        other={
            k: (rest0.get(k), rest1.get(k))
            for k in sorted(set(rest0) | set(rest1))
            if rest0.get(k) != rest1.get(k)
        },
    )
