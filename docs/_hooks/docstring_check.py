"""List georax's public names that have no docstring (run by the docs build and by .ci/run).

Public means: every module under ``georax`` whose dotted path has no ``_private`` part, every
class and function such a module defines (or lists in ``__all__``) whose name does not start with
an underscore, and every method such a class defines itself (dunder methods other than
``__init__``/``__call__`` excepted; an ``__init__`` or ``__call__`` may go undocumented when its
class has a docstring, as in equinox). Names imported from elsewhere are checked where they are
defined. Static analysis with griffe: nothing is imported or run.

Usage: ``python docs/_hooks/docstring_check.py [SRC_DIR]`` -- prints one line per missing
docstring, exits 1 if there is any.
"""

from __future__ import annotations

import sys
from pathlib import Path

import griffe

SPECIAL_OK = {"__init__", "__call__"}


def _public(name: str) -> bool:
    return not name.startswith("_")


def _missing_in_class(cls: griffe.Class, out: list[str]) -> None:
    if not cls.docstring:
        out.append(cls.path)
    for name, member in cls.members.items():
        if member.is_alias:
            continue
        if member.is_class and _public(name):
            _missing_in_class(member, out)  # type: ignore[arg-type]
        elif member.is_function:
            if name in SPECIAL_OK or (name.startswith("__") and name.endswith("__")):
                continue
            if _public(name) and not member.docstring and not _inherits_doc(cls, name):
                out.append(member.path)


def _inherits_doc(cls: griffe.Class, name: str) -> bool:
    """An override without a docstring is fine when a base class documents the method."""
    try:
        bases = cls.resolved_bases
    except Exception:  # an unresolvable base (third-party): check that base's doc ourselves
        return False
    for base in bases:
        try:
            member = base.all_members.get(name)
        except Exception:
            continue
        if member is not None and getattr(member, "docstring", None):
            return True
        if isinstance(base, griffe.Class) and _inherits_doc(base, name):
            return True
    return False


def _missing_in_module(mod: griffe.Module, out: list[str]) -> None:
    if not mod.docstring:
        out.append(mod.path)
    exported = {str(e) for e in (mod.exports or ())}
    for name, member in mod.members.items():
        if member.is_alias:
            continue
        if member.is_module:
            if _public(name):
                _missing_in_module(member, out)  # type: ignore[arg-type]
            continue
        if not (_public(name) or name in exported):
            continue
        if member.is_class:
            _missing_in_class(member, out)  # type: ignore[arg-type]
        elif member.is_function and not member.docstring:
            out.append(member.path)


def missing_docstrings(src: Path, package: str = "georax") -> list[str]:
    """The dotted paths of ``package``'s public objects without a docstring, sorted.

    **Arguments:**

    - `src`: the folder that holds the package (``src/``).
    - `package`: the top-level package name.

    **Returns:** a sorted list of dotted paths (empty when every public name is documented).
    """
    loader = griffe.GriffeLoader(search_paths=[str(src)], docstring_parser=None)
    mod = loader.load(package)
    loader.resolve_aliases(implicit=False, external=False)
    out: list[str] = []
    _missing_in_module(mod, out)  # type: ignore[arg-type]
    return sorted(set(out))


if __name__ == "__main__":
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "src"
    names = missing_docstrings(src)
    for n in names:
        print(f"missing docstring: {n}")
    print(f"{len(names)} public name(s) without a docstring", file=sys.stderr)
    sys.exit(1 if names else 0)
