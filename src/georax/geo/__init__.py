"""georax.geo: domain operators, one module per family.

Each family holds pure ``jax.numpy`` functions (documented math, no config) and the thin Operator
classes that hold config and call them:

- :mod:`~georax.geo.cloud` -- QA-bit masks: ``MaskFromQABits``, ``ApplyMask``, ``MaskClouds``.
- :mod:`~georax.geo.radiometry` -- ``ToFloat32``, ``ScaleOffset``/``DNToReflectance``,
  ``PercentileClip``, ``DarkObjectSubtraction``, ``TOAToBOA``, ``Normalize``.
- :mod:`~georax.geo.indices` -- ``NormalizedDifference``, ``NDVI``, ``NDWI``, ``NBR``, ``EVI``,
  ``SAVI`` and ``SpectralIndex`` (the Awesome Spectral Indices catalog via spyndex).
- :mod:`~georax.geo.sar` -- ``LinearToDB``, ``DBToLinear``, ``LeeSpeckle``.
- :mod:`~georax.geo.fusion` -- ``Resample``, ``AlignAndStack`` (explicit target grid); the pure
  :mod:`~georax.geo.resample` holds ``resample`` (pyproj maps + jnp interpolation) onto a
  :class:`georax.tensor.Grid`.
- :mod:`~georax.geo.viz` -- ``Colormap``, ``TrueColor``, host-side PNG encoding.
- :mod:`~georax.geo.augment` -- ``RandomFlip``, ``RandomRotate90``, ``RandomCrop`` (explicit keys).
- :mod:`~georax.geo.retrieval` -- ``MethaneForward`` (Beer-Lambert on SWIR bands), the closed-form
  ``MatchedFilter`` and ``BandRatio``, and ``MethaneRetrieval`` (optax through ``Patchwise``).
- :mod:`~georax.geo.qa` -- ``AssertCRSEquals``, ``AssertResolutionWithin``, ``AssertSchema``.
"""

from georax.geo import (
    augment,
    cloud,
    fusion,
    indices,
    qa,
    radiometry,
    resample,
    retrieval,
    sar,
    viz,
)

__all__ = [
    "augment",
    "cloud",
    "fusion",
    "indices",
    "qa",
    "radiometry",
    "resample",
    "retrieval",
    "sar",
    "viz",
]
