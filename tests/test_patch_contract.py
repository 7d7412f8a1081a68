"""The patch layer's part of the Operator contract: abstract bases, one module graph without
cycles, and any georax operator running on Chips (georeferencing kept through Stitch)."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import georax as gx
import georax.patch as gp
from georax.core.carrier import Carrier
from georax.errors import ConfigError, GeoraxError, ShapeError
from georax.patch import (
    Aggregation,
    Chips,
    ChipStack,
    GridSampler,
    Patcher,
    Sampler,
    Stitch,
    Window,
)
from georax.tensor import Grid, MissingGeoreferenceError

PATCH_SRC = Path(gp.__file__).parent
ABSTRACT = {Window, Aggregation, Sampler, ChipStack}


def _patch_modules() -> list:
    return [
        importlib.import_module(f"georax.patch.{m.name}") for m in pkgutil.iter_modules(gp.__path__)
    ]


def _patch_classes() -> set[type]:
    out = set()
    for mod in _patch_modules():
        for _, cls in inspect.getmembers(mod, inspect.isclass):
            if cls.__module__ == mod.__name__ and issubclass(cls, gx.Operator | Carrier):
                out.add(cls)
    return out


@pytest.mark.parametrize(
    "cls", sorted(ABSTRACT, key=lambda c: c.__name__), ids=lambda c: c.__name__
)
def test_patch_bases_are_abstract_and_cannot_be_built(cls: type) -> None:
    assert inspect.isabstract(cls)
    with pytest.raises((ConfigError, TypeError), match="abstract"):  # Operator or Carrier
        cls()
    assert f"{cls.__module__}.{cls.__qualname__}" not in gx.registry.public_operators()


def test_every_other_patch_class_is_concrete_and_every_base_is_listed() -> None:
    classes = _patch_classes()
    assert classes >= ABSTRACT
    missing = sorted(c.__name__ for c in classes - ABSTRACT if inspect.isabstract(c))
    assert not missing, f"concrete patch classes missing an implementation: {missing}"
    # every class is abstract or final: no concrete patch class has a concrete subclass
    for cls in classes - ABSTRACT:
        assert not [s for s in cls.__subclasses__() if s.__module__.startswith("georax.patch")]


ABSTRACT_WINDOW_YAML = """
_target_: georax.patch.operators.Patchwise
patcher:
  _target_: georax.patch.patcher.Patcher
  geometry: {_target_: georax.patch.geometry.Rectangular, size: [8, 8]}
  sampler: {_target_: georax.patch.samplers.RegularStride, stride: [8, 8]}
  window: {_target_: georax.patch.window_ops.Window}
operator: {_target_: georax.Identity}
"""


@pytest.mark.parametrize("sandboxed", [True, False], ids=["sandboxed", "trusted"])
def test_yaml_with_an_abstract_window_does_not_load(sandboxed: bool) -> None:
    allowed = gx.registry.public_operators() if sandboxed else None
    with pytest.raises(GeoraxError, match=r"window_ops\.Window"):
        gx.loads_yaml(ABSTRACT_WINDOW_YAML, allowed=allowed)
    # the same document with a concrete window loads and runs
    ok = ABSTRACT_WINDOW_YAML.replace("window_ops.Window}", "window_ops.Hann}")
    op = gx.loads_yaml(ok, allowed=allowed)
    x = jnp.arange(2 * 16 * 16, dtype=jnp.float32).reshape(2, 16, 16)
    np.testing.assert_allclose(op(x), x, rtol=1e-6)


def _imports(path: Path, package: str) -> set[str]:
    """georax.patch modules imported anywhere in ``path`` (function-level and TYPE_CHECKING too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            if name.startswith(package + ".") and (PATCH_SRC / f"{name.split('.')[2]}.py").exists():
                found.add(".".join(name.split(".")[:3]))
    return found


def test_patch_modules_import_each_other_without_cycles() -> None:
    graph = {
        f"georax.patch.{p.stem}": _imports(p, "georax.patch") - {f"georax.patch.{p.stem}"}
        for p in PATCH_SRC.glob("*.py")
        if p.stem != "__init__"
    }
    state: dict[str, int] = {}

    def visit(node: str, trail: tuple[str, ...]) -> None:
        if state.get(node) == 1:
            raise AssertionError(f"import cycle: {' -> '.join((*trail, node))}")
        if state.get(node) == 2:
            return
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            visit(dep, (*trail, node))
        state[node] = 2

    for module in sorted(graph):
        visit(module, ())


def test_patch_modules_import_no_private_names() -> None:
    offenders = []
    for path in PATCH_SRC.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("georax"):
                offenders += [
                    f"{path.name}: {a.name}" for a in node.names if a.name.startswith("_")
                ]
    assert not offenders


# ----------------------------------------------------------------- domain operators on Chips
SCENE = gx.data.sentinel2_l1c(40, seed=3)  # (7, 40, 40) uint16, QA60 last, EPSG:32630


def _ops() -> list[gx.Operator]:
    # defaults only, so the test survives field renames: NDVI (7 bands -> 1, named "NDVI") and
    # MaskClouds (drops the QA band: 7 -> 6, NaN on clouds); both pixel-wise.
    return [gx.geo.indices.NDVI(), gx.geo.cloud.MaskClouds()]


@pytest.mark.parametrize("op", _ops(), ids=lambda o: type(o).__name__)
def test_domain_operator_on_chips_then_stitch_equals_operator_on_scene(op: gx.Operator) -> None:
    p = Patcher.regular(16, 12, window="hann", margin=2)
    expect = op(SCENE)
    chips = GridSampler(p)(SCENE)
    mapped = op(chips)
    assert isinstance(mapped, Chips)
    np.testing.assert_array_equal(mapped.positions, chips.positions)
    assert (mapped.window, mapped.aggregation, mapped.offsets) == (
        p.window,
        p.aggregation,
        chips.offsets,
    )
    assert mapped.values.shape[1:] == (expect.shape[0], 16, 16)
    for out in (Stitch()(mapped), jax.jit(gx.Sequential([GridSampler(p), op, Stitch()]))(SCENE)):
        assert isinstance(out, gx.GeoTensor)
        assert out.shape == expect.shape
        assert (out.transform, out.crs, out.band_names) == (
            expect.transform,
            expect.crs,
            expect.band_names,
        )
        assert out.grid == expect.grid
        np.testing.assert_allclose(out.values, expect.values, rtol=1e-5, atol=1e-6)


def test_chips_grid_is_the_georeferenced_scene_grid() -> None:
    chips = GridSampler(Patcher.regular(16, 12, margin=3))(SCENE)
    assert isinstance(chips.grid, Grid) and chips.grid == SCENE.grid
    plain = GridSampler(Patcher.regular(16))(SCENE.values)
    with pytest.raises(MissingGeoreferenceError):
        _ = plain.grid


def test_aggregations_and_samplers_refuse_non_chip_inputs_with_typed_errors() -> None:
    x = jnp.zeros((1, 8, 8))
    for op in (gp.OverlapAdd(), gp.Max(), Stitch(), gp.ByIndex()):
        with pytest.raises(ShapeError, match="Chips"):
            op(x)
    with pytest.raises(ShapeError, match="scene_shape, chip_shape"):
        gp.RegularStride(2)(x)
    np.testing.assert_array_equal(
        gp.RegularStride(4)(((8, 8), (4, 4))), [[0, 0], [0, 4], [4, 0], [4, 4]]
    )


def test_chip_resized_by_an_operator_cannot_be_stitched() -> None:
    chips = GridSampler(Patcher.regular(8))(jnp.zeros((1, 16, 16)))
    with pytest.raises(ShapeError, match=r"cut as \(8, 8\)"):
        Stitch()(chips.replace(values=chips.values[..., :4, :]))
