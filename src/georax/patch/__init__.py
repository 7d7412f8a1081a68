"""georax.patch: patch geometry, samplers, windows, aggregation; patchwise apply and stitch.

A :class:`Patcher` has four independent axes (geometry, sampler, window, aggregation) and a
boundary rule (padding). :class:`Patchwise` runs an operator chip by chip in one fused, compiled,
bounded-memory loop; :class:`GridSampler` / :class:`ApplyToChips` / :class:`Stitch` are the same
thing as three pipeline steps with a :class:`Chips` carrier between them. The pure functions
(:func:`extract_patches`, :func:`stitch`, :func:`patchwise`) are what the operators call.
"""

from georax.patch import sharding, streaming
from georax.patch.aggregation import Aggregation, ByIndex, ChipStack, Max, Mean, OverlapAdd
from georax.patch.chips import Chips
from georax.patch.extract import crop_padding, extract_patches, pad_scene, source_index
from georax.patch.geometry import ChipOffsets, ChipsShape, Rectangular, regular_starts
from georax.patch.operators import ApplyToChips, GridSampler, Patchwise, Stitch
from georax.patch.patcher import Patcher
from georax.patch.samplers import ExplicitPositions, RandomPositions, RegularStride, Sampler
from georax.patch.sharding import chip_mesh, sharded_patchwise
from georax.patch.stitch import accumulate, grid_normaliser, map_chips, patchwise, stitch
from georax.patch.streaming import stream_patchwise
from georax.patch.window_ops import Boxcar, Gaussian, Hann, Triangular, Tukey, Window
from georax.patch.windows import window_1d, window_2d

__all__ = [
    "chip_mesh",
    "sharded_patchwise",
    "sharding",
    "stream_patchwise",
    "streaming",
    "Aggregation",
    "ApplyToChips",
    "Boxcar",
    "ByIndex",
    "ChipOffsets",
    "ChipStack",
    "Chips",
    "ChipsShape",
    "ExplicitPositions",
    "Gaussian",
    "GridSampler",
    "Hann",
    "Max",
    "Mean",
    "OverlapAdd",
    "Patcher",
    "Patchwise",
    "RandomPositions",
    "Rectangular",
    "RegularStride",
    "Sampler",
    "Stitch",
    "Triangular",
    "Tukey",
    "Window",
    "accumulate",
    "crop_padding",
    "extract_patches",
    "grid_normaliser",
    "map_chips",
    "pad_scene",
    "patchwise",
    "regular_starts",
    "source_index",
    "stitch",
    "window_1d",
    "window_2d",
]
