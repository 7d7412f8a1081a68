"""The documentation build's own checks: docstring coverage, API pages for every layer, gallery.

The full site is built by ``.ci/run`` (``mkdocs build --strict``); these tests pin the parts of
the build that decide what fails it, without building the site.
"""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
HOOKS = ROOT / "docs" / "_hooks"

pytest.importorskip("griffe")


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, HOOKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


check = _load("docstring_check")


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return tmp_path


def test_docstring_check_lists_every_undocumented_public_name(tmp_path: Path) -> None:
    src = _package(
        tmp_path,
        {
            "__init__.py": (
                '"""Package."""\nfrom pkg.mod import Documented\n__all__ = ["Documented"]\n'
            ),
            "mod.py": '''
                """A module."""

                class Documented:
                    """Has one."""

                    def method(self):
                        """Has one too."""

                    def bare(self):
                        return 1

                    def _private(self):
                        return 2

                    def __call__(self):
                        return 3

                class Child(Documented):
                    """Overrides a documented method without repeating its docstring."""

                    def method(self):
                        return 4

                class Bare:
                    pass

                def function():
                    return 5

                def _helper():
                    return 6
            ''',
            "undocumented.py": "X = 1\n",
            "_private.py": "def hidden():\n    return 7\n",
        },
    )
    missing = check.missing_docstrings(src, "pkg")
    assert missing == [
        "pkg.mod.Bare",
        "pkg.mod.Documented.bare",
        "pkg.mod.function",
        "pkg.undocumented",
    ]


def test_docstring_check_passes_when_everything_is_documented(tmp_path: Path) -> None:
    src = _package(tmp_path, {"__init__.py": '"""Package."""\n\ndef f():\n    """Doc."""\n'})
    assert check.missing_docstrings(src, "pkg") == []


def test_every_public_georax_name_has_a_docstring() -> None:
    assert check.missing_docstrings(ROOT / "src") == []


def _nav_pages(nav: object) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [p for item in nav for p in _nav_pages(item)]
    if isinstance(nav, dict):
        return [p for value in nav.values() for p in _nav_pages(value)]
    return []


def _mkdocs_nav() -> list[str]:
    # mkdocs.yml uses no custom tags; a plain safe load is enough to read the nav
    return _nav_pages(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])


def test_every_public_layer_has_an_api_page_in_the_nav() -> None:
    layers = {
        f"georax.{p.name}"
        for p in (ROOT / "src" / "georax").iterdir()
        if p.is_dir() and (p / "__init__.py").is_file() and not p.name.startswith("_")
    }
    pages = {p[len("api/") : -len(".md")] for p in _mkdocs_nav() if p.startswith("api/")}
    missing = sorted(layers - pages)
    assert not missing, f"add one nav line per layer to mkdocs.yml: {missing}"


def test_every_guide_file_is_in_the_nav() -> None:
    nav = set(_mkdocs_nav())
    guides = {f"guides/{p.name}" for p in (ROOT / "docs" / "guides").glob("*.md")}
    assert guides <= nav, sorted(guides - nav)


def test_generated_api_page_covers_every_public_submodule() -> None:
    pytest.importorskip("mkdocs")
    hooks = _load("georax_docs")
    page = hooks.api_page("georax.patch")
    expected = sorted(
        f"georax.patch.{p.stem}"
        for p in (ROOT / "src/georax/patch").glob("*.py")
        if not p.stem.startswith("_")
    )
    rendered = sorted(
        line[4:] for line in page.splitlines() if line.startswith("::: georax.patch.")
    )
    assert rendered == expected
    assert "::: georax.patch\n" in page  # the package overview first
    # georax.patch only re-exports: its members are shown once, in their modules' sections
    overview = page.split("## ")[0]
    assert "members: false" in overview
    # georax.cli defines main() and build_parser() in its __init__: they are rendered there
    assert "members: false" not in hooks.api_page("georax.cli").split("## ")[0]


def test_gallery_arguments_name_existing_examples() -> None:
    pytest.importorskip("mkdocs")
    hooks = _load("georax_docs")
    examples = {p.name for p in (ROOT / "examples").glob("[0-9][0-9]_*.py")}
    assert set(hooks.GALLERY_ARGS) <= examples, sorted(set(hooks.GALLERY_ARGS) - examples)
    assert set(hooks.NOT_RUN) <= examples, sorted(set(hooks.NOT_RUN) - examples)
    for name, args in hooks.GALLERY_ARGS.items():
        assert isinstance(args, list) and all(isinstance(a, str) for a in args), name
    for name, why in hooks.NOT_RUN.items():  # the reason is printed on the page
        assert isinstance(why, str) and len(why) > 20, name
    # every example but a few is run by the docs build
    assert len(set(hooks.NOT_RUN)) <= 2


def test_migration_page_includes_names_md_without_its_title() -> None:
    pytest.importorskip("mkdocs")
    hooks = _load("georax_docs")
    text = hooks.names_md()
    names = (ROOT / "NAMES.md").read_text()
    assert names.startswith("# ") and not text.startswith("# ")  # the page has its own title
    assert text.strip() in names  # every table, unchanged


def test_sphinx_roles_and_google_sections_become_markdown() -> None:
    roles = _load("griffe_roles")
    text = (
        "Uses :class:`~georax.patch.Patcher` and :func:`georax.io.read`, "
        "and :meth:`Artifact.save <georax.repro.Artifact.save>`.\n"
        "\n"
        "Attributes:\n"
        "    required: what is needed,\n"
        "        over two lines.\n"
        "    stage (str): where.\n"
        "\n"
        "After the section."
    )
    assert roles.rewrite_roles(text) == (
        "Uses `Patcher` and `georax.io.read`, and `Artifact.save`.\n"
        "\n"
        "**Attributes:**\n"
        "\n"
        "- `required`: what is needed,\n"
        "  over two lines.\n"
        "- `stage` (str): where.\n"
        "\n"
        "After the section."
    )


def test_gallery_nav_lists_every_example() -> None:
    pytest.importorskip("mkdocs")
    hooks = _load("georax_docs")
    config = {"nav": [{"Home": "index.md"}, {"Gallery": "gallery/index.md"}]}
    nav = hooks.on_config(config)["nav"]
    examples = sorted(p.stem for p in (ROOT / "examples").glob("[0-9][0-9]_*.py"))
    assert nav[1] == {"Gallery": ["gallery/index.md", *(f"gallery/{e}.md" for e in examples)]}
    assert "Gallery: gallery/index.md" in (ROOT / "mkdocs.yml").read_text()  # the entry it expands
