"""The seed chain (QA mask -> DN scale -> dark-object subtraction -> NDVI -> colormap) in the two
deployed forms: ``jax.jit(pipe)`` (pipeline captured, leaves folded as constants) and
``eqx.filter_jit(lambda p, x: p(x))`` (pipeline as an argument, how a service swaps parameters
without recompiling). Both must compute the same pixels, and the argument form must compile to
the same per-pixel program apart from scalar arithmetic on its parameters (no timing here: the
speed is measured by benchmarks/bench_geo.py)."""

from __future__ import annotations

import collections
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import georax
from georax.data.synthetic import sentinel2_l1c
from georax.geo.cloud import MaskClouds
from georax.geo.indices import NDVI
from georax.geo.radiometry import DarkObjectSubtraction, DNToReflectance
from georax.geo.viz import Colormap

_OPCODE = re.compile(r"= (?:\([^)]*\)|\S+) ([a-z][\w-]*)\(")
_COPY = re.compile(r"= (\S+) copy\(")

#: What the argument form may add: its parameters, a marker output (filter_jit returns one beside
#: the image) and the elementwise arithmetic on runtime scalars (DN offset, vmin/vmax) that the
#: captured form folds into constants.
_SCALAR_ONLY = {"parameter", "tuple", "bitcast", "broadcast", "fusion", "copy"}
_ARITHMETIC = {"add", "subtract", "multiply", "divide"}


def _seed_chain() -> georax.Sequential:
    return georax.Sequential(
        [
            MaskClouds(qa_band=-1, bits=[10, 11]),
            DNToReflectance(scale=1e-4),
            DarkObjectSubtraction(percentile=1),
            NDVI(red_band=2, nir_band=3),
            Colormap("RdYlGn", vmin=-1, vmax=1),
        ]
    )


def _uniform_scene(size: int) -> np.ndarray:
    rng = np.random.default_rng(3)
    dn = rng.integers(100, 6000, size=(5, size, size)).astype(np.uint16)
    dn[-1] = (rng.random((size, size)) < 0.15).astype(np.uint16) << 10
    return dn


def _synthetic_scene(size: int) -> np.ndarray:
    s2 = np.asarray(sentinel2_l1c(size, seed=0).values)
    return np.concatenate([s2[:4], s2[-1:]], axis=0)


@pytest.mark.parametrize("scene", [_uniform_scene, _synthetic_scene], ids=["uniform", "synthetic"])
def test_seed_chain_as_argument_compiles_to_the_captured_program(scene) -> None:
    pipe = _seed_chain()
    x = jnp.asarray(scene(64))
    captured = jax.jit(pipe)
    served = eqx.filter_jit(lambda p, v: p(v))

    out = served(pipe, x)
    assert out.shape == (4, 64, 64) and out.dtype == jnp.uint8
    np.testing.assert_array_equal(out, captured(x))
    # cloudy pixels are NaN through the chain and take the transparent NaN colour
    cloudy = (np.asarray(x[-1]) & 0xC00) != 0
    assert cloudy.any() and np.all(np.asarray(out)[:, cloudy] == 0)

    arg_text = served.lower(pipe, x).lowered.compile().as_text()
    cap_text = captured.lower(x).compile().as_text()
    arg = collections.Counter(_OPCODE.findall(arg_text))
    cap = collections.Counter(_OPCODE.findall(cap_text))
    extra = arg - cap
    # no per-pixel work beyond arithmetic on runtime scalars: in particular no in-graph packing of
    # the colour table (pad / shift / reduce / concatenate fused into the gather), no transpose
    assert set(extra) <= _SCALAR_ONLY | _ARITHMETIC, dict(extra)
    assert sum(extra[op] for op in _ARITHMETIC) <= 6, dict(extra)
    assert arg["gather"] == cap["gather"] == 1
    assert arg["fusion"] <= cap["fusion"] + 1
    # the image is written in place: the only copy in the entry is the scalar marker output
    entry_copies = _COPY.findall(arg_text.split("ENTRY", 1)[1])
    assert set(entry_copies) <= {"s32[]"}, entry_copies


def test_seed_chain_as_argument_takes_new_parameters_without_retracing() -> None:
    x = jnp.asarray(_uniform_scene(32))
    traces = []

    @eqx.filter_jit
    def served(p: georax.Sequential, v: jax.Array) -> jax.Array:
        traces.append(1)
        return p(v)

    pipe = _seed_chain()
    wider = georax.Sequential([*pipe.operators[:4], Colormap("RdYlGn", vmin=-2, vmax=2)])
    a, b = served(pipe, x), served(wider, x)
    assert len(traces) == 1
    np.testing.assert_array_equal(b, jax.jit(wider)(x))
    assert not np.array_equal(a, b)
