"""Errors of the geo layer that are not tied to one operator module (re-exported by ``gx.errors``).

``FormulaError`` is raised by the private formula compiler behind ``SpectralIndex`` and
``compile_formula``; it lives here so that the public error namespace never imports a private
module.
"""

from __future__ import annotations

from georax.core.errors import GeoraxError

__all__ = ["FormulaError"]


class FormulaError(GeoraxError, ValueError):
    """A formula string uses syntax outside the whitelist, or is malformed."""
