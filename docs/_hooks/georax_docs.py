"""mkdocs hooks for the georax site (wired in mkdocs.yml; run by ``mkdocs build``/``serve``).

Three build steps, none of which writes into ``docs/``:

1. **Docstring coverage.** Before the build, :func:`docstring_check.missing_docstrings` lists every
   public module, class, function and method without a docstring; each is logged as a warning, so
   ``mkdocs build --strict`` fails on one.
2. **API pages.** Every nav entry ``api/<dotted.module>.md`` that has no file in ``docs/`` is
   generated: the module's docstring, then one section per public submodule (``::: module``). A
   new layer's reference is one nav line, e.g. ``- georax.learn: api/georax.learn.md``.
3. **Gallery.** Every ``examples/NN_*.py`` is run on a small scene (arguments in
   :data:`GALLERY_ARGS`, two at a time, in a scratch folder) and gets a page with its docstring,
   the command, its printed output, the figures it wrote and its source. Results are cached under
   ``build/docs-gallery/`` keyed by the example's source, its arguments and the georax sources, so
   a rebuild re-runs only what changed. A failing example fails the build.
"""

from __future__ import annotations

import ast
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

sys.path.insert(0, str(Path(__file__).parent))

from docstring_check import missing_docstrings

log = logging.getLogger("mkdocs.plugins.georax")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
CACHE = ROOT / "build" / "docs-gallery"

#: Small-scene arguments per example (``{out}`` is the output folder). An example not listed
#: gets the output folder as its only argument.
GALLERY_ARGS: dict[str, list[str]] = {
    "01_notebook_exploration.py": ["{out}", "--size", "64"],
    "02_catalog_etl.py": ["{out}", "--n", "12", "--size", "32"],
    "06_user_uploaded_pipelines.py": [],
    "08_qc_operators.py": [],
    "09_regulatory_artifact.py": ["{out}", "--size", "32"],
    "11_cross_sensor_fusion.py": ["{out}", "--size", "64"],
    "12_orchestrator_tasks.py": ["{out}", "--n", "4", "--size", "32", "--engine", "dask"],
    "13_pipeline_ab.py": ["{out}", "--size", "32", "--n", "4"],
    "14_differentiable_retrieval.py": ["{out}", "--size", "64", "--steps", "60", "--chip", "32"],
}
#: Examples the docs build does not run (why, shown on the page); the test suite runs them all.
NOT_RUN: dict[str, str] = {
    "12_orchestrator_tasks.py": (
        "it starts a local Dask cluster or a Prefect server, which takes minutes on a small "
        "machine; `tests/test_examples_02_12.py` runs it with both engines"
    ),
}
#: Files an example writes that the page shows inline (others are listed by name and size).
SHOWN_TEXT = (".json", ".yaml", ".csv")
MAX_STDOUT_LINES = 80
TIMEOUT_S = 600


# ------------------------------------------------------------------ 1. docstring coverage
def on_pre_build(config: Any) -> None:
    missing = missing_docstrings(ROOT / "src")
    for name in missing:
        log.warning("public name without a docstring: %s", name)


# ------------------------------------------------------------------ NAMES.md in the guide
NAMES_MARKER = "<!-- georax:names-md -->"


def names_md() -> str:
    """NAMES.md for the migration guide, without its title (the page has its own)."""
    text = (ROOT / "NAMES.md").read_text()
    return text.split("\n", 1)[1].strip() + "\n"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    if NAMES_MARKER in markdown:
        markdown = markdown.replace(NAMES_MARKER, names_md())
    return markdown


# ------------------------------------------------------------------ 2. API pages + 3. gallery
def _nav_paths(nav: Any) -> list[str]:
    out: list[str] = []
    if isinstance(nav, str):
        out.append(nav)
    elif isinstance(nav, list):
        for item in nav:
            out.extend(_nav_paths(item))
    elif isinstance(nav, dict):
        for value in nav.values():
            out.extend(_nav_paths(value))
    return out


def _public_submodules(dotted: str) -> list[str]:
    """``dotted`` and its public submodules (no ``_private`` parts), depth-first, sorted."""
    base = ROOT / "src" / Path(*dotted.split("."))
    if base.with_suffix(".py").is_file():
        return [dotted]
    mods = [dotted]
    for path in sorted(base.rglob("*.py")):
        rel = path.relative_to(ROOT / "src").with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if any(p.startswith("_") for p in parts) or parts[-1] == "__main__":
            continue
        name = ".".join(parts)
        if name != dotted:
            mods.append(name)
    return mods


def _reexports_only(dotted: str) -> bool:
    """Whether ``dotted`` is a package whose ``__init__`` defines no class or function.

    Such a package's public names are re-exports, documented in the section of the submodule
    that defines them; rendering them again under the package would show everything twice.
    """
    init = ROOT / "src" / Path(*dotted.split(".")) / "__init__.py"
    if not init.is_file():
        return False
    tree = ast.parse(init.read_text())
    defs = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return not any(isinstance(node, defs) for node in tree.body)


def api_page(dotted: str) -> str:
    """The markdown of the generated reference page of ``dotted`` (a package or a module).

    The package's docstring first, then one section per public submodule (``::: module``);
    packages that only re-export show their docstring, not their members again.
    """
    lines = [f"# `{dotted}`", ""]
    for n, mod in enumerate(_public_submodules(dotted)):
        if n:
            lines += [f"## `{mod}`", ""]
        lines += [
            f"::: {mod}",
            "    options:",
            "      show_root_heading: false",
            "      show_root_toc_entry: false",
            "      heading_level: 3",
        ]
        if _reexports_only(mod):
            lines.append("      members: false")
        lines.append("")
    return "\n".join(lines)


def on_config(config: Any) -> Any:
    """List every example under the nav's ``Gallery`` entry (its index first)."""
    pages = [f"gallery/{p.stem}.md" for p in sorted(EXAMPLES.glob("[0-9][0-9]_*.py"))]
    for i, item in enumerate(config["nav"]):
        if isinstance(item, dict) and item.get("Gallery") == "gallery/index.md":
            config["nav"][i] = {"Gallery": ["gallery/index.md", *pages]}
    return config


def on_files(files: Files, config: Any) -> Files:
    for path in _nav_paths(config["nav"]):
        if (
            path.startswith("api/")
            and path.endswith(".md")
            and files.get_file_from_path(path) is None
        ):
            dotted = path[len("api/") : -len(".md")]
            files.append(File.generated(config, path, content=api_page(dotted)))
    for page in _gallery(config):
        files.append(page)
    return files


def _source_key() -> str:
    h = hashlib.sha256()
    for path in sorted((ROOT / "src").rglob("*.py")):
        h.update(str(path.relative_to(ROOT)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _docstring(path: Path) -> str:
    return ast.get_docstring(ast.parse(path.read_text())) or ""


def _run(example: Path, src_key: str) -> tuple[Path, list[str], float]:
    args = GALLERY_ARGS.get(example.name, ["{out}"])
    key = hashlib.sha256(
        (src_key + example.read_text() + repr(args) + sys.version).encode()
    ).hexdigest()[:16]
    folder = CACHE / f"{example.stem}-{key}"
    out = folder / "out"
    shown = [a.replace("{out}", "OUT") for a in args]
    if (folder / "ok").is_file():
        return folder, shown, float((folder / "ok").read_text())
    if example.name in NOT_RUN or os.environ.get("GEORAX_DOCS_GALLERY") == "off":
        return folder, shown, 0.0  # "off": quick local previews of the prose only
    shutil.rmtree(folder, ignore_errors=True)
    out.mkdir(parents=True)
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT / "src")}
    env.setdefault("PREFECT_HOME", str(folder / "prefect-home"))
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(example), *(a.replace("{out}", str(out)) for a in args)],
        cwd=out,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    seconds = time.perf_counter() - start
    (folder / "stdout.txt").write_text(proc.stdout)
    if proc.returncode != 0:
        log.warning(
            "gallery: %s exited with %d:\n%s", example.name, proc.returncode, proc.stderr[-3000:]
        )
    else:
        (folder / "ok").write_text(f"{seconds:.1f}")
    return folder, shown, seconds


def _gallery(config: Any) -> list[File]:
    examples = sorted(EXAMPLES.glob("[0-9][0-9]_*.py"))
    src_key = _source_key()
    workers = int(os.environ.get("GEORAX_DOCS_JOBS", "2"))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda e: _run(e, src_key), examples))
    pages: list[File] = []
    index = [
        "# Gallery",
        "",
        "Each page is one script from `examples/`, run when the docs were built (on a small",
        "scene; the command is on the page) with what it printed and the figures it wrote. The",
        "scripts are also run by the test suite; run one yourself with",
        "`python examples/NAME.py`.",
        "",
        "| example | what it shows |",
        "|---|---|",
    ]
    for example, (folder, shown, seconds) in zip(examples, results, strict=True):
        doc = _docstring(example)
        title, _, body = doc.partition("\n")
        stem = example.stem
        index.append(f"| [{stem}]({stem}.md) | {title.strip()} |")
        md = [f"# {stem}", "", f"**{title.strip()}**", "", body.strip(), ""]
        cmd = " ".join(["python", f"examples/{example.name}", *shown])
        md += [
            "## Run",
            "",
            "```bash",
            cmd,
            "```",
            "",
            f"Took {seconds:.0f} s when the docs were built."
            if (folder / "ok").is_file()
            else f"Not run when the docs were built: {NOT_RUN[example.name]}."
            if example.name in NOT_RUN
            else "**Not run when the docs were built.**",
            "",
        ]
        stdout = (folder / "stdout.txt").read_text() if (folder / "stdout.txt").is_file() else ""
        lines = stdout.rstrip().splitlines()
        if len(lines) > MAX_STDOUT_LINES:
            lines = [*lines[:MAX_STDOUT_LINES], f"... ({len(lines) - MAX_STDOUT_LINES} more lines)"]
        if lines:
            md += ["## Output", "", "```text", *lines, "```", ""]
        written = sorted(p for p in (folder / "out").rglob("*") if p.is_file())
        figures = [p for p in written if p.suffix == ".png"]
        for fig in figures:
            rel = f"gallery/{stem}/{fig.relative_to(folder / 'out').as_posix()}"
            pages.append(File.generated(config, rel, abs_src_path=str(fig)))
            md += [f"![{fig.name}]({stem}/{fig.relative_to(folder / 'out').as_posix()})", ""]
        top = [p for p in written if p.parent == folder / "out"]
        if top:
            md += ["## Files written", "", "| file | bytes |", "|---|---|"]
            md += [f"| `{p.name}` | {p.stat().st_size} |" for p in top]
            md.append("")
            for p in top:
                if p.suffix in SHOWN_TEXT and p.stat().st_size < 4000:
                    lang = {".json": "json", ".yaml": "yaml", ".csv": "text"}[p.suffix]
                    md += [f'??? note "{p.name}"', "", f"    ```{lang}"]
                    md += ["    " + line for line in p.read_text().splitlines()]
                    md += ["    ```", ""]
        md += ["## Source", "", "```python", example.read_text().rstrip(), "```", ""]
        pages.append(File.generated(config, f"gallery/{stem}.md", content="\n".join(md)))
    pages.append(File.generated(config, "gallery/index.md", content="\n".join(index) + "\n"))
    return pages
