"""The operator registry: every concrete Operator class, by import path.

Classes register themselves when they are defined (the Operator metaclass, once the class is
complete and its abstractness known), so importing a module is enough to make its operators
loadable from YAML. The registry is what config loading and the sandboxed loader consult; nothing
is ever imported from a string found in a document.

Abstract classes (abstract methods, ``eqx.AbstractVar``/``AbstractClassVar``) are never
registered: they are only remembered by name so that a document naming one gets an
:class:`~georax.errors.AbstractTargetError` listing the concrete classes it could use instead.

This module sits at the bottom of core: it knows classes, not what an Operator is, and it does
not name any package above core (the packages to :func:`discover` are passed in; georax's own
list is ``georax.OPERATOR_PACKAGES``).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import warnings
from collections.abc import Iterable

from georax.core.errors import AbstractTargetError, SerializationError

__all__ = [
    "abstract_operators",
    "alias",
    "all_operators",
    "canonical",
    "discover",
    "import_path",
    "is_abstract",
    "lookup",
    "public_operators",
    "public_path",
    "register",
    "unregister",
]

_REGISTRY: dict[str, type] = {}
# Abstract operator classes by import path: never loadable, kept only for error messages.
_ABSTRACT: dict[str, type] = {}
# Public short paths (``georax.Sequential``) that point at a class defined elsewhere.
_ALIASES: dict[str, str] = {}


def import_path(cls: type) -> str:
    """The canonical registry key of ``cls``: ``module.QualName``."""
    return f"{cls.__module__}.{cls.__qualname__}"


def is_abstract(cls: type) -> bool:
    """Whether ``cls`` is abstract: abstract methods, ``AbstractVar`` or ``AbstractClassVar``.

    Only meaningful once the class is complete (``ABCMeta`` computes ``__abstractmethods__``
    after ``__init_subclass__`` has run), which is when the Operator metaclass asks.
    """
    return bool(
        inspect.isabstract(cls)
        or getattr(cls, "__abstractvars__", None)
        or getattr(cls, "__abstractclassvars__", None)
    )


def register(cls: type, path: str | None = None) -> type:
    """Register ``cls`` under its import path (or ``path``). Called automatically.

    An abstract class is remembered as such instead (see the module docstring).
    """
    key = path or import_path(cls)
    if is_abstract(cls):
        _ABSTRACT[key] = cls
        _REGISTRY.pop(key, None)
    else:
        _REGISTRY[key] = cls
        _ABSTRACT.pop(key, None)
    return cls


def unregister(cls: type) -> None:
    """Forget ``cls`` and its aliases (for classes defined in tests or notebooks)."""
    for table in (_REGISTRY, _ABSTRACT):
        for key in [k for k, v in table.items() if v is cls]:
            del table[key]
    full = import_path(cls)
    for short in [s for s, target in _ALIASES.items() if target == full]:
        del _ALIASES[short]


def alias(short: str, cls: type) -> None:
    """Let ``short`` (e.g. ``"georax.Sequential"``) name ``cls`` in YAML as well."""
    _ALIASES[short] = import_path(cls)


def canonical(path: str) -> str:
    """Resolve an alias to the canonical import path (identity for canonical paths)."""
    return _ALIASES.get(path, path)


def lookup(path: str) -> type:
    """The registered class for ``path`` (canonical or alias).

    **Raises:** `AbstractTargetError` if ``path`` names an abstract class (naming its concrete
    subclasses); `SerializationError` if nothing is registered under that name.
    """
    key = canonical(path)
    try:
        return _REGISTRY[key]
    except KeyError:
        pass
    if key in _ABSTRACT:
        base = _ABSTRACT[key]
        concrete = sorted(public_path(c) for c in _REGISTRY.values() if issubclass(c, base))
        raise AbstractTargetError(
            path,
            "is an abstract base class and cannot be loaded; use one of its concrete "
            f"subclasses: {', '.join(concrete) or '(none registered)'}",
        )
    raise SerializationError(
        f"no operator registered as {path!r}; import the module that defines it first"
    )


def public_path(cls: type) -> str:
    """The shortest public name of ``cls``: its alias if it has one, else its import path."""
    full = import_path(cls)
    for short, target in _ALIASES.items():
        if target == full:
            return short
    return full


def all_operators() -> dict[str, type]:
    """A copy of the whole registry, ``{import path: class}`` (concrete classes only)."""
    return dict(_REGISTRY)


def abstract_operators() -> dict[str, type]:
    """The abstract operator classes seen so far, ``{import path: class}`` (never loadable)."""
    return dict(_ABSTRACT)


def public_operators(
    include_modules: Iterable[str] = ("georax",),
    exclude_classes: Iterable[str] = (),
) -> frozenset[str]:
    """The allow-list for the sandboxed loader.

    Keeps registered classes whose module starts with one of ``include_modules``, whose name is
    not in ``exclude_classes`` (bare class names or full paths), whose name does not start with
    an underscore, and that are not marked ``forbid_in_yaml`` (closure-bearing operators such as
    ``Lambda`` and ``Tap``). Abstract classes are never registered, so never listed. Aliases of
    kept classes are included too.

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
        if getattr(cls, "forbid_in_yaml", False) or is_abstract(cls):
            continue
        keep.add(path)
    keep |= {short for short, target in _ALIASES.items() if target in keep}
    return frozenset(keep)


def discover(packages: Iterable[str]) -> list[str]:
    """Import every module of ``packages`` so their operators register themselves.

    Registration happens when a class is defined, so a loader that should accept, say,
    ``georax.geo.cloud.MaskClouds`` needs ``georax.geo.cloud`` imported first. This is the
    start-up step of a server that builds its allow-list by introspection (the seeds' case 6).
    Only the named packages (trusted code) are imported -- never a name read from a document.
    georax's own operator layers are ``georax.OPERATOR_PACKAGES``.

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
