"""The Operator contract made strict (issue 9): abstract bases, one type check, names, errors."""

from __future__ import annotations

import abc
import inspect
import pkgutil
import typing
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from equinox import AbstractVar
from jaxtyping import Array, Float

import georax as gx
from georax.core import Carrier, ConfigError, Operator, registry, static
from georax.core.errors import AbstractTargetError, GeoraxError, UntrustedTargetError
from georax.core.operator import as_tuple, leaf
from georax.core.yaml_io import dumps_yaml, loads_yaml

from _core_ops import Gain, Power

pytestmark = pytest.mark.usefixtures("isolated_registry")


# --------------------------------------------------------------------------------------
# 1. Abstract bases are abstract and never loadable
# --------------------------------------------------------------------------------------
def _path(cls: type) -> str:
    return registry.import_path(cls)


def test_operator_itself_is_abstract_and_not_loadable() -> None:
    assert inspect.isabstract(Operator) and "__call__" in Operator.__abstractmethods__
    assert _path(Operator) not in registry.all_operators()
    with pytest.raises(AbstractTargetError) as e:
        loads_yaml("{_target_: georax.core.operator.Operator}")
    assert e.value.target == "georax.core.operator.Operator"
    with pytest.raises(ConfigError, match="abstract"):
        Operator()  # type: ignore[abstract]


def test_abstract_bases_are_decided_once_the_class_is_complete() -> None:
    # __init_subclass__ runs before ABCMeta computes __abstractmethods__: a registry fed from
    # there would register this base. It must not.
    class Shape(Operator):
        @abc.abstractmethod
        def size(self) -> int: ...

        def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
            return x * self.size()

    class Unit(Shape):
        def size(self) -> int:
            return 1

    def call(self: Any, x: Any, *, key: jax.Array | None = None) -> Any:
        return x * self.scale

    # Built without `from __future__` strings: equinox refuses stringified AbstractVars.
    namespace = {"__annotations__": {"scale": AbstractVar[float]}, "__call__": call}
    WithVar = type(Operator)("WithVar", (Operator,), {**namespace, "__module__": __name__})

    everything = registry.all_operators()
    assert _path(Shape) not in everything and _path(WithVar) not in everything
    assert everything[_path(Unit)] is Unit
    allowed = registry.public_operators(include_modules=[__name__])
    assert _path(Unit) in allowed and _path(Shape) not in allowed
    assert _path(WithVar) not in allowed
    for cls in (Shape, WithVar):
        with pytest.raises(AbstractTargetError) as e:
            loads_yaml(f"{{_target_: {_path(cls)}}}", allowed=allowed | {_path(cls)})
        assert e.value.target == _path(cls) and isinstance(e.value, UntrustedTargetError)
    with pytest.raises(AbstractTargetError, match=r"Unit"):  # names the concrete choice
        loads_yaml(f"{{_target_: {_path(Shape)}}}")
    assert loads_yaml(f"{{_target_: {_path(Unit)}}}", allowed=allowed) == Unit()


def test_public_operators_lists_only_runnable_classes() -> None:
    for path in registry.public_operators():
        cls = registry.lookup(path)
        assert not registry.is_abstract(cls), path
    assert registry.abstract_operators()  # the bases are known, just not loadable
    for path in registry.abstract_operators():
        assert path not in registry.public_operators()


def _georax_classes(root: type) -> set[type]:
    """Every subclass of ``root`` defined in georax (all georax modules imported first)."""
    for info in pkgutil.walk_packages(gx.__path__, prefix="georax."):
        if not info.name.endswith("__main__"):
            __import__(info.name)
    found = {c for c in _all_subclasses(root) if c.__module__.startswith("georax.")}
    assert found
    return found


def _abstract_or_final_violations(classes: set[type], root: type) -> list[str]:
    """Concrete classes that are subclassed, and abstract classes that are registered."""
    registered = set(registry.all_operators().values())
    found = []
    for cls in classes:
        name = f"{cls.__module__}.{cls.__qualname__}"
        if registry.is_abstract(cls) and cls in registered:
            found.append(f"abstract {name} is registered")
        for base in cls.__mro__[1:]:
            if issubclass(base, root) and base is not root and not registry.is_abstract(base):
                found.append(f"{name} subclasses concrete {base.__name__}")
    return found


@pytest.mark.parametrize("root", [Operator, Carrier], ids=lambda c: c.__name__)
def test_every_georax_class_is_abstract_or_final(root: type) -> None:
    """Equinox's rule: share code through abstract bases, never subclass a concrete class.

    Concrete classes are never subclassed; abstract ones are never registered (so never loadable).
    """
    classes = _georax_classes(root)
    assert any(registry.is_abstract(c) for c in classes)  # the bases are seen too
    assert _abstract_or_final_violations(classes, root) == []


def test_a_subclassed_concrete_operator_is_a_violation() -> None:
    class Base(Operator):
        def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
            return x

    class Sub(Base):
        pass

    found = _abstract_or_final_violations({Base, Sub}, Operator)
    assert found == [f"{__name__}.{Sub.__qualname__} subclasses concrete Base"]


# --------------------------------------------------------------------------------------
# 2. One type check, the same for Python and YAML
# --------------------------------------------------------------------------------------
class Typed(Operator):
    """Fields of every annotation kind the check must understand (string annotations here)."""

    count: int = static(1)
    ratio: float = static(0.5)
    mode: Literal["a", "b"] = static("a")
    sizes: tuple[int, ...] = static((1,), converter=as_tuple)
    pair: tuple[int, int] = static((1, 1), converter=as_tuple)
    label: str | None = static(None)
    child: Operator | None = None
    weights: Float[Array, "n n"] = leaf(default_factory=lambda: jnp.eye(2))

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        return x


TYPED = f"{__name__}.Typed"

BAD_VALUES = [
    ("count", True, "expected int"),
    ("count", 1.5, "expected int"),
    ("count", "3", "expected int"),
    ("ratio", "0.5", "expected float"),
    ("mode", "c", "Literal"),
    ("sizes", (1, 2, "x"), r"sizes\[2\] has the wrong type"),
    ("pair", (1, 2, 3), "expected tuple"),
    ("label", 3, "expected str"),
    ("child", 3, "Operator"),
    ("weights", jnp.ones((2, 3)), "Float"),
    ("weights", jnp.ones((2, 2), jnp.int32), "Float"),
]


def _yaml_value(v: Any) -> Any:
    if isinstance(v, jax.Array):
        return {"_array_": np.asarray(v).tolist(), "dtype": v.dtype.name, "shape": list(v.shape)}
    return list(v) if isinstance(v, tuple) else v


@pytest.mark.parametrize(("field", "value", "problem"), BAD_VALUES)
def test_python_and_yaml_meet_the_same_type_check(field: str, value: Any, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as in_python:
        Typed(**{field: value})
    cfg = {"_target_": TYPED, field: _yaml_value(value)}
    with pytest.raises(ConfigError, match=problem) as from_yaml:
        gx.from_config(cfg)
    for err in (in_python.value, from_yaml.value):
        assert (err.operator, err.field) == ("Typed", field)


def test_good_values_pass_after_conversion() -> None:
    op = Typed(count=3, ratio=2, sizes=[4, 5], pair=[1, 2], label=None, child=gx.Identity())
    assert op.sizes == (4, 5) and op.pair == (1, 2) and op.ratio == 2  # converter ran first
    assert Typed(weights=np.eye(3, dtype=np.float32)).weights.shape == (3, 3)  # NumPy leaf
    back = loads_yaml(dumps_yaml(op))
    assert back == op


def test_every_item_of_a_long_container_is_checked() -> None:
    # beartype checks one random item of a variable-length container; georax checks them all.
    bad = (*range(1000), "x")
    for _ in range(20):
        with pytest.raises(ConfigError, match=r"sizes\[1000\]"):
            Typed(sizes=bad)


def test_hand_written_init_arguments_are_checked_before_it_runs() -> None:
    ran: list[Any] = []

    class Table(Operator):
        n: int = static()
        table: jax.Array = eqx.field(default=None)

        def __init__(self, n: int) -> None:
            ran.append(n)
            self.n = n
            self.table = jnp.arange(n)

        def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
            return x

    with pytest.raises(ConfigError, match="expected int") as e:
        Table(n=2.5)  # type: ignore[arg-type]
    assert e.value.field == "n" and ran == []
    assert Table(3).n == 3 and ran == [3]


def test_construction_never_raises_a_bare_exception() -> None:
    class Fragile(Operator):
        n: int = static(1)

        def __check_init__(self) -> None:
            if 10 // (self.n - 1) > 5:  # ZeroDivisionError for n == 1: a bug, not bad input
                self.fail("n", "too small")

        def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
            return x

    with pytest.raises(ConfigError, match="ZeroDivisionError") as e:
        Fragile(n=1)
    assert e.value.operator == "Fragile" and isinstance(e.value.__cause__, ZeroDivisionError)
    with pytest.raises(ConfigError, match="gain") as e:
        Gain(gain="rm -rf /")  # a converter failure names the field
    assert e.value.field == "gain"
    with pytest.raises(ConfigError, match="unexpected keyword"):
        Power(exponents=3)  # type: ignore[call-arg]


def test_type_check_runs_before_the_semantic_checks() -> None:
    # Power.__check_init__ compares exponent < 0: a str would raise TypeError there.
    with pytest.raises(ConfigError, match="expected int") as e:
        Power(exponent="2")  # type: ignore[arg-type]
    assert e.value.field == "exponent"


def test_fail_is_typed_noreturn() -> None:
    assert typing.get_type_hints(Operator.fail)["return"] is typing.NoReturn


# --------------------------------------------------------------------------------------
# 5. Operator names in profiles
# --------------------------------------------------------------------------------------
def test_each_operator_call_is_a_named_scope_in_the_lowered_program() -> None:
    pipe = gx.Sequential([Gain(2.0), Power(3), gx.Lambda(jnp.sin, name="sine")])
    text = jax.jit(pipe).lower(jnp.ones((4, 4))).as_text(debug_info=True)
    for name in ("Sequential/Gain", "Sequential/Power", "Sequential/Lambda[sine]"):
        assert name in text, name
    plain = jax.jit(lambda x: jnp.sin((2 * x) ** 3)).lower(jnp.ones((4, 4)))
    assert "Gain" not in plain.as_text(debug_info=True)


# --------------------------------------------------------------------------------------
# 6. gx.errors is complete by construction
# --------------------------------------------------------------------------------------
def _all_subclasses(cls: type) -> set[type]:
    out = set()
    for sub in cls.__subclasses__():
        out |= {sub, *_all_subclasses(sub)}
    return out


def test_every_georax_error_is_exported_from_gx_errors() -> None:
    for info in pkgutil.walk_packages(gx.__path__, prefix="georax."):
        if info.name.endswith("__main__"):
            continue
        __import__(info.name)
    errors = [c for c in _all_subclasses(GeoraxError) if c.__module__.startswith("georax.")]
    assert len(errors) > 20
    missing = [
        f"{c.__module__}.{c.__qualname__}"
        for c in errors
        if getattr(gx.errors, c.__name__, None) is not c or c.__name__ not in gx.errors.__all__
    ]
    assert not missing, f"not exported from georax.errors: {missing}"
    assert gx.errors.GeoraxError is GeoraxError


# --------------------------------------------------------------------------------------
# 3. The layer below names no package above it
# --------------------------------------------------------------------------------------
def test_registry_discovers_only_the_packages_it_is_given() -> None:
    packages = inspect.signature(registry.discover).parameters["packages"]
    assert packages.default is inspect.Parameter.empty  # no built-in list of upper layers
    assert not hasattr(registry, "OPERATOR_PACKAGES")
    assert set(gx.OPERATOR_PACKAGES) >= {"georax.core", "georax.geo", "georax.patch"}
    assert "georax.geo.cloud" in registry.discover(gx.OPERATOR_PACKAGES)
