"""Optional extras: one typed error naming the extra when a package needs what is missing."""

from __future__ import annotations

import importlib.util

from georax.core.errors import MissingDependencyError

__all__ = ["require_extra"]


def require_extra(feature: str, extra: str, modules: tuple[str, ...]) -> None:
    """Raise :class:`MissingDependencyError` unless every module in `modules` is importable.

    Called at the top of a package that needs an optional extra, so a base install gets one
    typed error naming the extra instead of a bare ``ModuleNotFoundError`` from deep inside.

    **Arguments:**

    - `feature`: what needs them, for the message (e.g. ``"georax.serve"``).
    - `extra`: the ``pip install 'georax[<extra>]'`` name.
    - `modules`: top-level module names to look for (nothing is imported).
    """
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingDependencyError(
            f"{feature} needs {', '.join(missing)}, not installed: pip install 'georax[{extra}]'"
        )
