"""A griffe extension for the API reference: docstrings written for Sphinx read as Markdown.

georax docstrings write references the Sphinx way (``:class:`~georax.patch.Patcher```,
``:func:`load_raster```). Markdown has no roles, so mkdocstrings would print the role name
literally. This rewrites each role to an inline code span with the name as a reader would write
it (a leading ``~`` keeps only the last component, as in Sphinx). Double backticks are already
valid Markdown code spans and are left alone.

A few docstrings use Google-style sections (``Attributes:`` followed by indented
``name: text`` entries), which Markdown would show as a code block; they are rewritten to the
equinox style the rest of georax uses (``**Attributes:**`` and a list of ``- `name`: text``).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|obj|exc|const|term):`([^`]+)`")


def _replace(match: re.Match[str]) -> str:
    target = match.group(1).strip()
    if "<" in target and target.endswith(">"):  # :class:`text <target>`
        target = target.split("<", 1)[0].strip()
    if target.startswith("~"):
        target = target[1:].rsplit(".", 1)[-1]
    return f"`{target}`"


SECTION = re.compile(r"^(Attributes|Args|Arguments|Returns|Raises|Yields|Note|Example):\s*$")
ENTRY = re.compile(r"^ {4}(\*{0,2}[A-Za-z_][\w.]*)(?: \(([^)]*)\))?:\s*(.*)$")


def _sections(text: str) -> str:
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        header = SECTION.match(lines[i])
        if not header or i + 1 >= len(lines) or not lines[i + 1].startswith("    "):
            out.append(lines[i])
            i += 1
            continue
        out += [f"**{header.group(1)}:**", ""]
        i += 1
        while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
            line = lines[i]
            entry = ENTRY.match(line)
            if entry:
                name, kind, rest = entry.groups()
                kind = f" ({kind})" if kind else ""
                out.append(f"- `{name}`{kind}: {rest}")
            elif line.strip():
                out.append(
                    ("  " if out and out[-1].startswith(("- ", "  ")) else "") + line.strip()
                )
            else:
                if i + 1 < len(lines) and not lines[i + 1].startswith("    "):
                    break
                out.append("")
            i += 1
    return "\n".join(out)


def rewrite_roles(text: str) -> str:
    """``text`` with Sphinx roles as Markdown code spans and Google sections as lists."""
    return _sections(ROLE.sub(_replace, text))


class SphinxRolesToCode(griffe.Extension):
    """Rewrite Sphinx roles in every docstring griffe loads."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite the docstring of ``obj`` in place (called once per loaded object)."""
        if obj.docstring is not None:
            obj.docstring.value = rewrite_roles(obj.docstring.value)
