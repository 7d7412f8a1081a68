"""georax.data: deterministic synthetic sample scenes shipped with the package."""
