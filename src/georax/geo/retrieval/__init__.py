"""georax.geo.retrieval: methane retrieval by gradients through a compiled forward model.

- :mod:`~georax.geo.retrieval.physics` -- pure functions: the Beer-Lambert forward model
  (``transmittance``, ``forward_reflectance``), the classical closed forms (``matched_filter``,
  ``band_ratio_signal``/``band_ratio_enhancement``), the loss terms (``data_misfit``,
  ``smoothness_penalty``) and the starting point (``initial_state``).
- :mod:`~georax.geo.retrieval.optimise` -- a small, reusable optax loop: ``optimise`` (one
  ``lax.scan``, used inside operators) and ``fit`` (host-driven chunks with early stopping and a
  loss curve).
- :mod:`~georax.geo.retrieval.operators` -- ``BeerLambert``, ``MethaneForward``,
  ``MatchedFilter``, ``BandRatio`` and ``MethaneRetrieval`` (the forward model run patchwise
  through :class:`georax.patch.Patchwise`, inverted by gradient descent).

The sample scenes (:func:`georax.data.plume_scene`) use a **synthetic** CH4 absorption spectrum
(see :mod:`georax.data.plume`): numbers here are about the method, not about real methane.
"""

from georax.geo.retrieval.operators import (
    BandRatio,
    BeerLambert,
    MatchedFilter,
    MethaneForward,
    MethaneRetrieval,
    RetrievalResult,
)
from georax.geo.retrieval.optimise import FitResult, fit, optimise
from georax.geo.retrieval.physics import (
    STATE_BANDS,
    background_spectrum,
    background_statistics,
    band_ratio_enhancement,
    band_ratio_signal,
    data_misfit,
    forward_reflectance,
    initial_state,
    matched_filter,
    smoothness_penalty,
    transmittance,
)

__all__ = [
    "STATE_BANDS",
    "BandRatio",
    "BeerLambert",
    "FitResult",
    "MatchedFilter",
    "MethaneForward",
    "MethaneRetrieval",
    "RetrievalResult",
    "background_spectrum",
    "background_statistics",
    "band_ratio_enhancement",
    "band_ratio_signal",
    "data_misfit",
    "fit",
    "forward_reflectance",
    "initial_state",
    "matched_filter",
    "optimise",
    "smoothness_penalty",
    "transmittance",
]
