"""The operator registry: every concrete Operator class, by import path.

Classes register themselves when they are defined (``Operator.__init_subclass__``), so importing a
module is enough to make its operators loadable from YAML. The registry is what config loading and
the sandboxed loader consult; nothing is ever imported from a string found in a document.
"""

from __future__ import annotations

import importlib
import pkgutil
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING

from georax.core.errors import SerializationError

if TYPE_CHECKING:
    from georax.core.operator import Operator

_REGISTRY: dict[str, type[Operator]] = {}
# Public short paths (``georax.Sequential``) that point at a class defined elsewhere.
_ALIASES: dict[str, str] = {}


def import_path(cls: type) -> str:
    """The canonical registry key of ``cls``: ``module.QualName``."""
    return f"{cls.__module__}.{cls.__qualname__}"


def register(cls: type[Operator], path: str | None = None) -> type[Operator]:
    """Register ``cls`` under its import path (or ``path``). Called automatically."""
    key = path or import_path(cls)
    _REGISTRY[key] = cls
    return cls


def alias(short: str, cls: type[Operator]) -> None:
    """Let ``short`` (e.g. ``"georax.Sequential"``) name ``cls`` in YAML as well."""
    _ALIASES[short] = import_path(cls)


def canonical(path: str) -> str:
    """Resolve an alias to the canonical import path (identity for canonical paths)."""
    return _ALIASES.get(path, path)


def lookup(path: str) -> type[Operator]:
    """The registered class for ``path`` (canonical or alias).

    **Raises:** `SerializationError` if nothing is registered under that name.
    """
    try:
        return _REGISTRY[canonical(path)]
    except KeyError:
        raise SerializationError(
            f"no operator registered as {path!r}; import the module that defines it first"
        ) from None


def public_path(cls: type) -> str:
    """The shortest public name of ``cls``: its alias if it has one, else its import path."""
    full = import_path(cls)
    for short, target in _ALIASES.items():
        if target == full:
            return short
    return full


def all_operators() -> dict[str, type[Operator]]:
    """A copy of the whole registry, ``{import path: class}``."""
    return dict(_REGISTRY)


def public_operators(
    include_modules: Iterable[str] = ("georax",),
    exclude_classes: Iterable[str] = (),
) -> frozenset[str]:
    """The allow-list for the sandboxed loader.

    Keeps registered classes whose module starts with one of ``include_modules``, whose name is
    not in ``exclude_classes`` (bare class names or full paths), that are not abstract, whose name
    does not start with an underscore, and that are not marked ``forbid_in_yaml`` (closure-bearing
    operators such as ``Lambda`` and ``Tap``). Aliases of kept classes are included too.

    **Returns:** a frozenset of accepted ``_target_`` strings.
    """
    include = tuple(include_modules)
    exclude = set(exclude_classes)
    keep: set[str] = set()
    for path, cls in _REGISTRY.items():
        if not any(path == m or path.startswith(m + ".") for m in include):
            continue
        if cls.__name__ in exclude or path in exclude or cls.__name__.startswith("_"):
            continue
        if (
            getattr(cls, "forbid_in_yaml", False)
            or getattr(cls, "__abstractmethods__", None)
            or getattr(cls, "__abstractvars__", None)
        ):
            continue
        keep.add(path)
    keep |= {short for short, target in _ALIASES.items() if target in keep}
    return frozenset(keep)


#: The layers whose modules define YAML-loadable operators (see DESIGN.md, Layout).
OPERATOR_PACKAGES = ("georax.core", "georax.array", "georax.tensor", "georax.patch", "georax.geo")


def discover(packages: Iterable[str] = OPERATOR_PACKAGES) -> list[str]:
    """Import every module of ``packages`` so their operators register themselves.

    Registration happens when a class is defined, so a loader that should accept, say,
    ``georax.geo.cloud.MaskClouds`` needs ``georax.geo.cloud`` imported first. This is the
    start-up step of a server that builds its allow-list by introspection (the seeds' case 6).
    Only the named packages (trusted code) are imported -- never a name read from a document.

    **Arguments:**

    - `packages`: dotted package (or module) names.

    **Returns:** the names of the modules imported. A module that fails to import is skipped
    with a `RuntimeWarning` naming it (its operators are then simply not registered).
    """
    imported: list[str] = []
    for name in packages:
        try:
            package = importlib.import_module(name)
        except ImportError as e:
            warnings.warn(
                f"georax.registry.discover: cannot import {name}: {e}", RuntimeWarning, stacklevel=2
            )
            continue
        imported.append(name)
        for info in pkgutil.walk_packages(getattr(package, "__path__", []), prefix=name + "."):
            try:
                importlib.import_module(info.name)
            except Exception as e:  # a broken module must not stop discovery of the others
                warnings.warn(
                    f"georax.registry.discover: cannot import {info.name}: {type(e).__name__}: {e}",
                    RuntimeWarning,
                    stacklevel=2,
                )
                continue
            imported.append(info.name)
    return imported
