"""Spectral indices: NDVI, NDWI, NBR, EVI, SAVI, any normalised difference, and the whole Awesome
Spectral Indices catalog through :class:`SpectralIndex`.

Each index maps ``(..., band, H, W)`` to a single band ``(..., 1, H, W)`` named after the index
(a GeoTensor keeps its georeferencing; a :class:`~georax.patch.Chips` stack stays chips). Band
indices are static config named ``<role>_band`` (``red_band``, ``nir_band``...); continuous
coefficients (EVI's ``g, c1, c2, l``, SAVI's ``l``) are leaves, so they can be tuned or
differentiated. Defaults follow the georax Sentinel-2 convention
``B02, B03, B04, B08, B11, B12[, QA60]``: blue 0, green 1, red 2, NIR 3, SWIR1 4, SWIR2 5.
Complex input is refused (:class:`~georax.errors.DataError`): these are real band ratios.

Division follows IEEE semantics (as NumPy and spyndex do): ``0/0`` gives NaN, NaN inputs give NaN.

:class:`SpectralIndex` takes its formulas from the `spyndex <https://github.com/awesome-spectral-
indices/spyndex>`_ package (optional extra ``georax[spectral]``) and compiles them to ``jax.numpy``
with a whitelisting :mod:`ast` compiler (:mod:`georax.geo._formula`) — never ``eval``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from georax.array.missing import nan_safe_grad
from georax.array.validate import real_float, require_real
from georax.core.carrier import values_of
from georax.core.errors import MissingDependencyError
from georax.core.operator import Operator, as_tuple, leaf, static
from georax.geo._bands import (
    check_bands,
    check_finite_leaf,
    map_bands,
    take_band,
)
from georax.geo._formula import compile_formula
from georax.geo._precheck import with_bands

if TYPE_CHECKING:
    from georax.core.sandbox import Limits

__all__ = [
    "EVI",
    "NBR",
    "NDVI",
    "NDWI",
    "SAVI",
    "SENTINEL2_BAND_MAP",
    "NormalizedDifference",
    "SpectralIndex",
    "catalog",
    "evi",
    "normalized_difference",
    "savi",
]

#: spyndex band symbols -> band index, for the georax Sentinel-2 layout (B02 B03 B04 B08 B11 B12).
SENTINEL2_BAND_MAP: dict[str, int] = {"B": 0, "G": 1, "R": 2, "N": 3, "S1": 4, "S2": 5}


# ------------------------------------------------------------------------------------------------
# Pure functions
# ------------------------------------------------------------------------------------------------


@nan_safe_grad
def normalized_difference(
    a: Float[Array, "*batch H W"], b: Float[Array, "*batch H W"]
) -> Float[Array, "*batch H W"]:
    """``(a - b) / (a + b)``: NDVI with ``a = NIR, b = red``; NDWI with green, NIR; NBR with NIR,
    SWIR2."""
    return (a - b) / (a + b)


@nan_safe_grad
def evi(
    nir: Float[Array, "*batch H W"],
    red: Float[Array, "*batch H W"],
    blue: Float[Array, "*batch H W"],
    g: ArrayLike = 2.5,
    c1: ArrayLike = 6.0,
    c2: ArrayLike = 7.5,
    l: ArrayLike = 1.0,  # noqa: E741 (the literature's name)
) -> Float[Array, "*batch H W"]:
    """Enhanced Vegetation Index, ``g (N - R) / (N + c1 R - c2 B + l)`` (Huete et al. 2002)."""
    return g * (nir - red) / (nir + c1 * red - c2 * blue + l)


@nan_safe_grad
def savi(
    nir: Float[Array, "*batch H W"],
    red: Float[Array, "*batch H W"],
    l: ArrayLike = 0.5,  # noqa: E741
) -> Float[Array, "*batch H W"]:
    """Soil-Adjusted Vegetation Index, ``(1 + l)(N - R) / (N + R + l)`` (Huete 1988)."""
    return (1.0 + l) * (nir - red) / (nir + red + l)


# ------------------------------------------------------------------------------------------------
# Operators
# ------------------------------------------------------------------------------------------------


def _bands_of(x: Any, who: str, *indices: int) -> None:
    """Refuse complex input and band indices outside the input's band axis."""
    values = require_real(values_of(x), who)
    check_bands(values, indices, who)


def _nd_call(x: Any, a: int, b: int, label: str) -> Any:
    _bands_of(x, label, a, b)

    def fn(v: Array) -> Array:
        v = real_float(v, label)
        return normalized_difference(take_band(v, a), take_band(v, b))[..., None, :, :]

    return map_bands(fn, x, names=lambda _: (label,))


def _one_band(shape: tuple[int, ...]) -> tuple[int, ...]:
    return with_bands(shape, 1)


class NormalizedDifference(Operator):
    """``(band a - band b) / (band a + band b)`` as one output band named ``label``.

    **Arguments:**

    - `a_band`, `b_band`: band indices.
    - `label`: the output band's name.
    """

    a_band: int = static()
    b_band: int = static()
    label: str = static("ND")

    def precheck(self, shape: tuple[int, ...], limits: Limits) -> tuple[int, ...]:
        """One output band."""
        return _one_band(shape)

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        return _nd_call(x, self.a_band, self.b_band, self.label)


class NDVI(Operator):
    """Normalised Difference Vegetation Index, ``(NIR - red) / (NIR + red)``.

    **Arguments:**

    - `red_band`, `nir_band`: band indices (the seeds' ``red_idx``/``nir_idx``).
    """

    red_band: int = static(2)
    nir_band: int = static(3)

    def precheck(self, shape: tuple[int, ...], limits: Limits) -> tuple[int, ...]:
        """One output band."""
        return _one_band(shape)

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        return _nd_call(x, self.nir_band, self.red_band, "NDVI")


class NDWI(Operator):
    """Normalised Difference Water Index (McFeeters 1996), ``(green - NIR) / (green + NIR)``.

    **Arguments:**

    - `green_band`, `nir_band`: band indices.
    """

    green_band: int = static(1)
    nir_band: int = static(3)

    def precheck(self, shape: tuple[int, ...], limits: Limits) -> tuple[int, ...]:
        """One output band."""
        return _one_band(shape)

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        return _nd_call(x, self.green_band, self.nir_band, "NDWI")


class NBR(Operator):
    """Normalised Burn Ratio, ``(NIR - SWIR2) / (NIR + SWIR2)``.

    **Arguments:**

    - `nir_band`, `swir2_band`: band indices.
    """

    nir_band: int = static(3)
    swir2_band: int = static(5)

    def precheck(self, shape: tuple[int, ...], limits: Limits) -> tuple[int, ...]:
        """One output band."""
        return _one_band(shape)

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        return _nd_call(x, self.nir_band, self.swir2_band, "NBR")


class EVI(Operator):
    """Enhanced Vegetation Index; coefficients are differentiable leaves.

    **Arguments:**

    - `blue_band`, `red_band`, `nir_band`: band indices.
    - `g`, `c1`, `c2`, `l`: gain, aerosol coefficients and canopy background (MODIS defaults),
      finite.
    """

    blue_band: int = static(0)
    red_band: int = static(2)
    nir_band: int = static(3)
    g: Array = leaf(2.5)
    c1: Array = leaf(6.0)
    c2: Array = leaf(7.5)
    l: Array = leaf(1.0)  # noqa: E741

    def __check_init__(self) -> None:
        check_finite_leaf(self, "g", "c1", "c2", "l")

    def precheck(self, shape: tuple[int, ...], limits: Limits) -> tuple[int, ...]:
        """One output band."""
        return _one_band(shape)

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        _bands_of(x, "EVI", self.blue_band, self.red_band, self.nir_band)

        def fn(v: Array) -> Array:
            v = real_float(v, "EVI")
            n, r, b = (take_band(v, i) for i in (self.nir_band, self.red_band, self.blue_band))
            return evi(n, r, b, self.g, self.c1, self.c2, self.l)[..., None, :, :]

        return map_bands(fn, x, names=lambda _: ("EVI",))


class SAVI(Operator):
    """Soil-Adjusted Vegetation Index; ``l`` (soil brightness, 0.5 by default) is a leaf.

    **Arguments:**

    - `red_band`, `nir_band`: band indices.
    - `l`: soil adjustment factor, finite.
    """

    red_band: int = static(2)
    nir_band: int = static(3)
    l: Array = leaf(0.5)  # noqa: E741

    def __check_init__(self) -> None:
        check_finite_leaf(self, "l")

    def precheck(self, shape: tuple[int, ...], limits: Limits) -> tuple[int, ...]:
        """One output band."""
        return _one_band(shape)

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        _bands_of(x, "SAVI", self.red_band, self.nir_band)

        def fn(v: Array) -> Array:
            v = real_float(v, "SAVI")
            red, nir = take_band(v, self.red_band), take_band(v, self.nir_band)
            return savi(nir, red, self.l)[..., None, :, :]

        return map_bands(fn, x, names=lambda _: ("SAVI",))


# ------------------------------------------------------------------------------------------------
# The Awesome Spectral Indices catalog
# ------------------------------------------------------------------------------------------------


def _spyndex() -> Any:
    try:
        import spyndex
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise MissingDependencyError(
            "SpectralIndex needs the optional dependency 'spyndex': pip install 'georax[spectral]'"
        ) from e
    return spyndex


def catalog() -> dict[str, str]:
    """``{index name: formula}`` for the Awesome Spectral Indices catalog (needs spyndex)."""
    idx = _spyndex().indices
    return {name: idx[name].formula for name in idx}


def _constant_defaults() -> dict[str, float | None]:
    c = _spyndex().constants
    return {name: c[name].default for name in c}


def _pairs(value: Any) -> Any:
    """Mappings become tuples of (name, value) pairs sorted by name; sequences become tuples.

    Names are not coerced: a non-string name is left for the field type check to refuse.
    """
    if isinstance(value, Mapping):
        return tuple(sorted(value.items(), key=lambda kv: str(kv[0])))
    return as_tuple(value)


class SpectralIndex(Operator):
    """Any index of the Awesome Spectral Indices catalog, compiled to ``jax.numpy``.

    ``SpectralIndex("NDVI")``, ``SpectralIndex("EVI", band_map={"B": 0, "R": 2, "N": 3})``,
    ``SpectralIndex("NDWI", constants={...})``. The formula comes from spyndex and is compiled by a
    whitelisting AST compiler (no ``eval``). Every symbol of the formula must be either a band
    (mapped to a band index by ``band_map``) or a constant (``constants``, else spyndex's
    default). Constants without a default (wavelengths ``lambdaN`` ..., ``PAR``) and kernel terms
    (``kNN``, ``kNR`` ...) must be supplied — kernel terms as bands of the input.

    **Arguments:**

    - `index`: the catalog name (case-sensitive, as in spyndex).
    - `band_map`: ``{symbol: band index}``; default :data:`SENTINEL2_BAND_MAP`. Stored as sorted
      pairs.
    - `constants`: ``{symbol: value}`` overriding spyndex's defaults, finite. Stored as sorted
      pairs. Static, not leaves: which symbols are constants (and which are bands) is decided
      from these keys when the formula is resolved, so the mapping is structure.
    """

    index: str = static()
    band_map: tuple[tuple[str, int], ...] = static(
        tuple(sorted(SENTINEL2_BAND_MAP.items())), converter=_pairs
    )
    constants: tuple[tuple[str, float], ...] = static((), converter=_pairs)

    def __check_init__(self) -> None:
        formulas = catalog()
        if self.index not in formulas:
            close = [n for n in formulas if n.lower() == self.index.lower()]
            hint = f"; did you mean {close[0]!r}?" if close else ""
            self.fail("index", f"is not in the Awesome Spectral Indices catalog{hint}")
        if any(not math.isfinite(v) for _, v in self.constants):
            self.fail("constants", "must map constant symbols to finite numbers")
        self._resolve()

    @property
    def formula(self) -> str:
        """The catalog formula this operator computes."""
        return catalog()[self.index]

    def _resolve(self) -> tuple[dict[str, int], dict[str, float]]:
        """Split the formula's symbols into bands (-> index) and constants (-> value)."""
        symbols = compile_formula(self.formula).variables
        bands = dict(self.band_map)
        given = dict(self.constants)
        defaults = _constant_defaults()
        use_bands: dict[str, int] = {}
        use_consts: dict[str, float] = {}
        missing = []
        for s in sorted(symbols):
            if s in bands:
                use_bands[s] = bands[s]
            elif s in given:
                use_consts[s] = float(given[s])
            elif defaults.get(s) is not None:
                use_consts[s] = float(defaults[s])  # type: ignore[arg-type]
            else:
                missing.append(s)
        if missing:
            self.fail(
                "band_map",
                f"index {self.index!r} ({self.formula}) needs {missing}: map them in `band_map` "
                "(band symbols, kernel terms) or give them in `constants` (constants without a "
                "spyndex default)",
            )
        return use_bands, use_consts

    def precheck(self, shape: tuple[int, ...], limits: Limits) -> tuple[int, ...]:
        """One output band."""
        return _one_band(shape)

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        use_bands, use_consts = self._resolve()
        who = f"SpectralIndex({self.index!r})"
        _bands_of(x, who, *use_bands.values())
        formula = compile_formula(self.formula)

        @nan_safe_grad  # a formula is pixelwise: missing pixels carry zero derivative
        def fn(v: Array) -> Array:
            v = real_float(v, who)
            env: dict[str, Any] = {s: take_band(v, i) for s, i in use_bands.items()}
            env.update({s: jnp.asarray(c, v.dtype) for s, c in use_consts.items()})
            out = jnp.asarray(formula(env), v.dtype)
            shape = v.shape[:-3] + v.shape[-2:]
            return jnp.broadcast_to(out, shape)[..., None, :, :]

        return map_bands(fn, x, names=lambda _: (self.index,))
