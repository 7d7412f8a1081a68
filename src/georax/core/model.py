"""ModelOp: a model (equinox, flax nnx, or any pytree with a method) as a pipeline step.

One contract for every kind of model -- its weights are pytree leaves of the pipeline, so
``jax.jit``, ``jax.vmap`` and ``jax.grad`` go through preprocessing and model as one program:

- **equinox** modules are pytrees already: ``ModelOp(eqx_model)`` holds the module.
- **flax nnx** modules are Python object graphs. ``ModelOp(nnx_model)`` splits one
  (``nnx.split``) into a *graph definition* -- hashable structure, kept as a static field -- and
  its *state*, kept as a flat ``{"conv.kernel": array, ...}`` dict of leaves, and merges them
  again (``nnx.merge``) inside every call. flax is imported only when an nnx module is given:
  georax itself never needs it.

**Deployable models (YAML + params file).** A model whose architecture can be rebuilt from
config round-trips through :func:`georax.save` / :func:`georax.load`, the sandboxed loader and
fresh processes. Decorate the model class with :func:`register_model` -- a plain
``nnx.Module`` or ``eqx.Module`` class whose ``__init__`` takes named hyper-parameters and the
library's random argument (``rngs`` for nnx, ``key`` for equinox). The decorator records the
hyper-parameters at every construction (a model rebuilt without its constructor -- by
``eqx.tree_at`` or ``nnx.merge`` -- is read from attributes of the same names, so keep each
hyper-parameter as an attribute or static field, as ``eqx.nn`` layers do) and registers a
georax operator under the model class's own import path; a ModelOp holding such a model
writes::

    model: {_target_: my.pkg.CloudNet, in_bands: 6, width: 16,
            params: {conv1.kernel: {_param_: ..., shape: [3, 3, 6, 16], dtype: float32}, ...}}

*Why a decorator*: neither library records constructor arguments (nnx builds modules
imperatively in ``__init__``; an equinox module's fields are its layers, not its
hyper-parameters), and users should keep writing plain modules. Loading rebuilds the structure
with ``nnx.eval_shape`` / ``eqx.filter_eval_shape`` -- nothing is allocated or initialised, so
a hostile document cannot make the loader build a huge network -- and fills it with ``params``,
which must match that structure name for name, shape for shape. The weights are always part of
the config (inline when small, in the params file otherwise), so a document without them is
refused (``ParamsRequiredError``), never silently re-initialised.

(An equinox architecture may also be written directly as a :class:`georax.Operator` subclass
whose weights are array-leaf fields, like any operator.)

A model class that is not registered cannot be written (``SerializationError`` naming it) nor
loaded (``UntrustedTargetError`` naming it); to load from untrusted YAML, the model's class
*and* ``georax.ModelOp`` must be on the ``allowed`` list (ModelOp is not in the default
allow-list: serving models is an explicit opt-in).

**Purity.** A call never mutates the model: state an nnx module writes during its call (BatchNorm
running statistics, RNG counters) lives on the merged copy and is discarded. Use normalisations
without running state (LayerNorm, GroupNorm) or ``use_running_average=True`` in pipelines, and
give stochastic layers their randomness through ``pass_key=True``.
"""

# No `from __future__ import annotations`: equinox reads `AbstractClassVar` annotations at class
# creation (see RegisteredModel).

import abc
import functools
import inspect
import sys
import typing
import weakref
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from georax.core.carrier import map_values
from georax.core.errors import ConfigError, short_repr
from georax.core.operator import Operator, as_tuple, derived, static
from georax.core.sandbox import TARGET, Limits

__all__ = [
    "EqxModel",
    "ModelOp",
    "NnxModel",
    "NnxModule",
    "RegisteredModel",
    "is_nnx_module",
    "model_operator",
    "register_model",
]

#: The config field holding a registered model's weights (no hyper-parameter may be called so).
PARAMS = "params"

# model class -> the georax operator class register_model made for it.
_OPERATORS: "dict[type, type[RegisteredModel]]" = {}
# id(model instance) -> (weak reference to it, the hyper-parameters it was constructed with).
# Keyed by id: equinox modules holding arrays are not hashable.
_HPARAMS: dict[int, tuple[Any, dict[str, Any]]] = {}

Path = tuple[str | int, ...]


def is_nnx_module(obj: Any) -> bool:
    """Whether ``obj`` is a flax nnx Module (checked without importing flax)."""
    nnx = sys.modules.get("flax.nnx")
    return nnx is not None and isinstance(obj, nnx.Module)


def _is_nnx_class(cls: Any) -> bool:
    nnx = sys.modules.get("flax.nnx")
    return nnx is not None and isinstance(cls, type) and issubclass(cls, nnx.Module)


def _nnx() -> Any:
    # flax is imported only on this path, i.e. when a caller hands us an nnx module or class.
    from flax import nnx

    return nnx


def _class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _is_key_array(x: Any) -> bool:
    dtype = getattr(x, "dtype", None)
    return dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key)


def _arraylike(x: Any) -> bool:
    return isinstance(x, jax.Array | np.ndarray | jax.ShapeDtypeStruct)


def _record(instance: Any, hparams: dict[str, Any]) -> None:
    key = id(instance)

    def forget(_: Any) -> None:
        _HPARAMS.pop(key, None)

    _HPARAMS[key] = (weakref.ref(instance, forget), hparams)


def _recorded(instance: Any) -> dict[str, Any] | None:
    entry = _HPARAMS.get(id(instance))
    if entry is None or entry[0]() is not instance:
        return None
    return entry[1]


# --------------------------------------------------------------------------------------
# Splitting and merging models
# --------------------------------------------------------------------------------------
def _nnx_split(module: Any, who: str) -> tuple[Any, tuple[Path, ...], dict[str, Any]]:
    """``nnx.split`` ``module``: its graph definition, the paths of its state, and the state
    as a flat ``{"a.b.0.kernel": array}`` dict (the key is the path joined with dots)."""
    nnx = _nnx()
    graphdef, state = nnx.split(module)
    leaves, _ = jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(state))
    paths = tuple(tuple(k.key for k in path) for path, _ in leaves)
    names = [".".join(str(p) for p in path) for path in paths]
    if len(set(names)) != len(names):
        raise ConfigError(
            who, PARAMS, None, "two state paths join to the same dotted name; rename the attributes"
        )
    return graphdef, paths, dict(zip(names, (v for _, v in leaves), strict=True))


def _nnx_merge(graphdef: Any, layout: tuple[Path, ...], params: Mapping[str, Any]) -> Any:
    """The nnx module of ``graphdef`` holding the flat state ``params`` (inverse of _nnx_split)."""
    nested: dict[Any, Any] = {}
    for path in layout:
        node = nested
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = params[".".join(str(p) for p in path)]
    return _nnx().merge(graphdef, nested)


def _eqx_split(module: Any) -> tuple[Any, tuple[tuple[str, ...], Any], dict[str, Any]]:
    """An equinox module as (skeleton without arrays, (names, array treedef), flat arrays)."""
    arrays = eqx.filter(module, _arraylike)
    skeleton = eqx.filter(module, _arraylike, inverse=True)
    leaves, _ = jax.tree_util.tree_flatten_with_path(arrays)
    names = tuple(jax.tree_util.keystr(path).lstrip(".") for path, _ in leaves)
    return (
        skeleton,
        (names, jax.tree.structure(arrays)),
        dict(zip(names, (v for _, v in leaves), strict=True)),
    )


def _eqx_merge(
    skeleton: Any, layout: tuple[tuple[str, ...], Any], params: Mapping[str, Any]
) -> Any:
    names, treedef = layout
    arrays = jax.tree_util.tree_unflatten(treedef, [params[n] for n in names])
    return eqx.combine(arrays, skeleton)


# --------------------------------------------------------------------------------------
# Unregistered nnx modules (Python use only)
# --------------------------------------------------------------------------------------
class NnxModule(eqx.Module):
    """An nnx module of an *unregistered* class as a pytree (for Python use: train, jit, vmap).

    Built by :class:`ModelOp` from an nnx module whose class was not decorated with
    :func:`register_model`, or whose hyper-parameters were not recorded (a module made by
    ``nnx.merge``). It cannot be written to YAML: nothing says how to rebuild its structure.

    **Arguments:**

    - `graphdef`: the ``nnx.split`` graph definition (static, hashable).
    - `layout`: the state paths (static).
    - `params`: the state as a flat dict of arrays (leaves).
    - `nnx_class`: the nnx class (static).
    """

    graphdef: Any = eqx.field(static=True)
    layout: tuple[Path, ...] = eqx.field(static=True)
    params: dict[str, Any]
    nnx_class: type = eqx.field(static=True)

    @classmethod
    def from_module(cls, module: Any) -> "NnxModule":
        """Split a live nnx module."""
        graphdef, layout, params = _nnx_split(module, "ModelOp")
        return cls(graphdef, layout, params, type(module))

    def module(self) -> Any:
        """The nnx module holding the current (possibly traced) params."""
        return _nnx_merge(self.graphdef, self.layout, self.params)

    @property
    def model_class(self) -> type:
        return self.nnx_class


# --------------------------------------------------------------------------------------
# Registered models (deployable)
# --------------------------------------------------------------------------------------
class RegisteredModel(Operator):
    """Abstract base of the operators :func:`register_model` creates, one per model class.

    A concrete subclass is registered under the model class's import path. Its config is the
    model constructor's named arguments (static fields, one per hyper-parameter; the random
    argument excluded) and ``params``, the model's arrays as a flat dict ``{"conv.kernel":
    array, ...}`` (array leaves: small ones inline in YAML, large ones in the params file).
    Its structure (derived, static) comes from evaluating the constructor abstractly, so
    building one never allocates or initialises weights, and the given ``params`` are checked
    against it -- same names, shapes and dtypes.

    Calling it runs the model; :class:`ModelOp` also reaches other methods through
    :meth:`module`.
    """

    model_class: eqx.AbstractClassVar[type]
    hparam_names: eqx.AbstractClassVar[tuple[str, ...]]
    params: dict[str, Any]
    structure: Any = derived(static_field=True)
    layout: Any = derived(static_field=True)

    @classmethod
    @abc.abstractmethod
    def _abstract(cls, hparams: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
        """``(structure, layout, {name: ShapeDtypeStruct})`` of the model ``hparams`` build."""

    @classmethod
    @abc.abstractmethod
    def _split(cls, module: Any) -> tuple[Any, Any, dict[str, Any]]:
        """``(structure, layout, {name: array})`` of a live model."""

    @abc.abstractmethod
    def module(self) -> Any:
        """The model as its library sees it, holding the current (possibly traced) params."""

    def _build(self, hparams: dict[str, Any]) -> None:
        """Set the fields from the constructor's bound arguments (called by ``__init__``)."""
        cls = type(self)
        for name in cls.hparam_names:
            setattr(self, name, as_tuple(hparams[name]))
        structure, layout, spec = cls._abstract(self.hparams())
        self.params = _checked_params(cls.__name__, hparams[PARAMS], spec)
        self.structure = structure
        self.layout = layout

    def hparams(self) -> dict[str, Any]:
        """The constructor arguments (the random argument excluded) of this model."""
        return {n: getattr(self, n) for n in type(self).hparam_names}

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        m = self.module()
        return m(x) if key is None else m(x, key=key)

    def yaml_write_refusal(self) -> str | None:
        keys = sorted(k for k, v in self.params.items() if _is_key_array(v))
        if keys:
            return (
                f"its state holds RNG keys ({', '.join(keys)}: random streams stored in the "
                "model, e.g. nnx Dropout(..., rngs=rngs)); a deployable model keeps no random "
                "state: build such layers without one and use ModelOp(pass_key=True)"
            )
        return None

    def __reduce__(self) -> tuple[Any, ...]:
        # The class shares its import path with the model class (that is its YAML name), so
        # pickle cannot find it by name: rebuild it through the model class (pickled by name).
        return (_rebuild, (type(self).model_class, self.hparams(), dict(self.params)))


class NnxModel(RegisteredModel):
    """A registered flax nnx model: ``structure`` is the ``nnx.split`` graph definition."""

    @classmethod
    def _abstract(cls, hparams: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
        nnx = _nnx()
        model = cls.model_class
        abstract = nnx.eval_shape(lambda: model(**hparams, rngs=nnx.Rngs(0)))
        return _nnx_split(abstract, cls.__name__)

    @classmethod
    def _split(cls, module: Any) -> tuple[Any, Any, dict[str, Any]]:
        return _nnx_split(module, cls.__name__)

    def module(self) -> Any:
        return _nnx_merge(self.structure, self.layout, self.params)


class EqxModel(RegisteredModel):
    """A registered equinox model: ``structure`` is the module with its arrays taken out."""

    @classmethod
    def _abstract(cls, hparams: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
        model = cls.model_class
        abstract = eqx.filter_eval_shape(lambda: model(**hparams, key=jax.random.key(0)))
        return _eqx_split(abstract)

    @classmethod
    def _split(cls, module: Any) -> tuple[Any, Any, dict[str, Any]]:
        return _eqx_split(module)

    def module(self) -> Any:
        return _eqx_merge(self.structure, self.layout, self.params)


def _rebuild(model_class: type, hparams: dict[str, Any], params: dict[str, Any]) -> Any:
    return model_operator(model_class)(**hparams, params=params)


def _checked_params(owner: str, params: Any, spec: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` as a dict of arrays with exactly the names, shapes and dtypes of ``spec``."""
    if not isinstance(params, Mapping):
        raise ConfigError(owner, PARAMS, short_repr(params), "must be a mapping {name: array}")
    missing = [k for k in spec if k not in params]
    extra = [k for k in params if k not in spec]
    if missing or extra:
        raise ConfigError(
            owner,
            PARAMS,
            None,
            f"does not match the model's arrays (missing {missing[:5]}, unexpected {extra[:5]}); "
            f"expected the keys {list(spec)[:8]}{'...' if len(spec) > 8 else ''}",
        )
    out: dict[str, Any] = {}
    for name, want in spec.items():
        value = params[name]
        if not isinstance(value, jax.Array | np.ndarray):
            raise ConfigError(
                owner,
                PARAMS,
                short_repr(value),
                f"{name}: expected an array, got {type(value).__name__}",
            )
        shape, dtype = tuple(np.shape(value)), value.dtype
        if shape != tuple(want.shape) or dtype != want.dtype:
            raise ConfigError(
                owner,
                PARAMS,
                None,
                f"{name}: expected {want.dtype}{list(want.shape)}, got {dtype}{list(shape)}",
            )
        out[name] = value
    return out


def _hparam_hints(init: Callable[..., Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The annotations of the hyper-parameters that the type check can use as they are.

    Config turns lists into tuples, so a ``list[...]`` annotation is left unchecked (the
    constructor still sees the value); unresolvable annotations are skipped.
    """
    try:
        hints = typing.get_type_hints(init, include_extras=True)
    except Exception:
        hints = {}
    out = {}
    for name in names:
        hint = hints.get(name)
        if hint is None or hint is list or typing.get_origin(hint) is list:
            continue
        out[name] = hint
    return out


def register_model(cls: type) -> type:
    """Class decorator: make a flax nnx or equinox model class deployable (YAML, sandbox).

    ``@register_model`` on ``class CloudNet(nnx.Module)`` with ``__init__(self, in_bands,
    width=16, *, rngs)`` (or an ``eqx.Module`` with ``__init__(self, in_bands, width=16, *,
    key)``):

    - records, at every construction, the arguments other than ``rngs``/``key`` (the
      hyper-parameters); for an instance made without the constructor (``eqx.tree_at``,
      ``nnx.merge``) they are read from attributes of the same names -- keep them there;
    - creates and registers a georax operator (a :class:`NnxModel` / :class:`EqxModel`) under
      the import path of ``CloudNet`` itself, whose config is those hyper-parameters plus
      ``params``, the model's arrays.

    ``ModelOp(CloudNet(6, rngs=nnx.Rngs(0)))`` can then be saved with ``georax.save`` and
    loaded with ``georax.load`` in a fresh process once the module defining ``CloudNet`` is
    imported (for the sandbox, add ``"my.pkg.CloudNet"`` and ``"georax.ModelOp"`` to
    ``allowed``). See the module docstring for why a decorator.

    **Arguments:**

    - `cls`: an ``nnx.Module`` subclass whose ``__init__`` takes named hyper-parameters and
      ``rngs``, or an ``eqx.Module`` subclass whose ``__init__`` takes named hyper-parameters
      and ``key``. No ``*args``/``**kwargs``, no hyper-parameter called ``params``.

    **Returns:** ``cls`` itself, its ``__init__`` wrapped to record the hyper-parameters.

    **Raises:** :class:`~georax.errors.ConfigError` for another kind of class or a constructor
    config cannot describe.
    """
    name = getattr(cls, "__name__", repr(cls))
    if _is_nnx_class(cls):
        base: type[RegisteredModel] = NnxModel
        random_arg = "rngs"
    elif isinstance(cls, type) and issubclass(cls, eqx.Module) and not issubclass(cls, Operator):
        base, random_arg = EqxModel, "key"
    else:
        raise ConfigError(
            "register_model",
            None,
            name,
            "expects a flax.nnx.Module or equinox.Module subclass (a georax Operator is "
            "registered already)",
        )
    signature = inspect.signature(cls.__init__)
    params = list(signature.parameters.values())[1:]
    if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
        raise ConfigError(
            "register_model",
            None,
            name,
            "__init__ takes *args/**kwargs; a registered model needs named hyper-parameters",
        )
    if random_arg not in signature.parameters:
        raise ConfigError(
            "register_model", None, name, f"__init__ must take a `{random_arg}` argument"
        )
    names = tuple(p.name for p in params if p.name != random_arg)
    if PARAMS in names:
        raise ConfigError(
            "register_model", None, name, f"a hyper-parameter may not be called {PARAMS!r}"
        )

    original = cls.__init__
    if not getattr(original, "__georax_records__", False):

        @functools.wraps(original)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            if type(self) is cls:
                bound = signature.bind(self, *args, **kwargs)
                bound.apply_defaults()
                _record(self, {n: bound.arguments[n] for n in names})
            original(self, *args, **kwargs)

        __init__.__georax_records__ = True  # type: ignore[attr-defined]
        cls.__init__ = __init__  # type: ignore[method-assign]

    keyword = inspect.Parameter.KEYWORD_ONLY
    op_signature = inspect.Signature(
        [
            inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY),
            *(
                inspect.Parameter(p.name, keyword, default=p.default)
                for p in params
                if p.name in names
            ),
            inspect.Parameter(PARAMS, keyword),
        ]
    )

    def op_init(self: RegisteredModel, **kwargs: Any) -> None:
        bound = op_signature.bind(self, **kwargs)
        bound.apply_defaults()
        self._build(bound.arguments)

    hints = _hparam_hints(inspect.unwrap(original), names)
    op_init.__signature__ = op_signature  # type: ignore[attr-defined]
    op_init.__annotations__ = hints
    namespace: dict[str, Any] = {
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "__doc__": f"georax operator for the model {_class_path(cls)} (hyper-parameters: "
        f"{', '.join(names) or 'none'}; see georax.core.model.{base.__name__}).",
        # the constructor's annotations: the one type check, and the sandbox's bound on ints
        "__annotations__": {n: hints.get(n, Any) for n in names},
        "model_class": cls,
        "hparam_names": names,
        "__init__": op_init,
        **{n: static(converter=as_tuple) for n in names},
    }
    _OPERATORS[cls] = type(base)(name, (base,), namespace)
    return cls


def model_operator(cls: type) -> type[RegisteredModel]:
    """The georax operator class :func:`register_model` made for the model class ``cls``.

    **Raises:** :class:`~georax.errors.ConfigError` naming ``cls`` if it is not registered.
    """
    try:
        return _OPERATORS[cls]
    except KeyError:
        raise ConfigError(
            "ModelOp",
            "model",
            _class_path(cls),
            "is not a registered model class; decorate it with @georax.learn.register_model",
        ) from None


def _hparams_of(model: Any, names: tuple[str, ...]) -> dict[str, Any] | None:
    """The hyper-parameters of a registered model: recorded at construction, or -- for a model
    rebuilt without its constructor (``eqx.tree_at``, ``nnx.merge``) -- read from attributes
    of the same names, where models conventionally keep them."""
    recorded = _recorded(model)
    if recorded is not None:
        return recorded
    if all(hasattr(model, n) for n in names):
        return {n: getattr(model, n) for n in names}
    return None


def _as_model(model: Any) -> Any:
    """ModelOp's converter: registered models become their operator, nnx modules pytrees."""
    operator_cls = _OPERATORS.get(type(model))
    hparams = None if operator_cls is None else _hparams_of(model, operator_cls.hparam_names)
    if operator_cls is None or hparams is None:
        return NnxModule.from_module(model) if is_nnx_module(model) else model
    structure, _, params = operator_cls._split(model)
    op = operator_cls(**hparams, params=params)
    if not _same_structure(op.structure, structure):
        raise ConfigError(
            operator_cls.__name__,
            None,
            short_repr(hparams),
            "the model's structure differs from what its recorded constructor arguments "
            "build (was it changed after __init__?); it could not be reloaded from config",
        )
    return op


def _same_structure(a: Any, b: Any) -> bool:
    try:
        return bool(eqx.tree_equal(a, b) is True or a == b)
    except Exception:
        return False


_WRAPPERS = (RegisteredModel, NnxModule)


# --------------------------------------------------------------------------------------
# ModelOp
# --------------------------------------------------------------------------------------
class ModelOp(Operator):
    """Run ``getattr(model, method)(x)`` as a pipeline step.

    The model is a pytree child, so its weights are leaves of the pipeline: ``jit``, ``vmap``
    and ``grad`` see them and optax can train through the whole pipeline. A carrier input is
    unwrapped for the model and re-wrapped afterwards (georeferencing survives). The model sees
    what the previous step gives, bands-first (``Patchwise`` gives one chip ``(C, h, w)``;
    ``georax.learn`` applies a pipeline to each sample of a batch the same way).

    A flax nnx module is split into a static graph definition and array leaves at construction
    and merged inside each call (see the module docstring). A model of a class decorated with
    :func:`register_model` is held as its operator (:class:`NnxModel`, :class:`EqxModel`), an
    unregistered nnx module as an :class:`NnxModule`; :attr:`module` gives the model back as
    its library sees it.

    ModelOp is ``forbid_in_yaml`` unless its model is a registered georax operator (a class
    decorated with :func:`register_model`, or an architecture written as a georax Operator):
    see :meth:`yaml_write_refusal` and :meth:`yaml_load_refusal`.

    **Arguments:**

    - `model`: an :class:`equinox.Module` (or any pytree) or a ``flax.nnx.Module`` exposing
      ``method``.
    - `method`: the name of the method to call (the seeds' ``predict_with_uncertainty``).
    - `pass_key`: pass ``key=`` through to the model (dropout and other stochastic layers).
    """

    forbid_in_yaml: ClassVar[bool] = True
    model: Any = eqx.field(converter=_as_model)
    method: str = static(default="__call__")
    pass_key: bool = static(default=False)

    def __check_init__(self) -> None:
        target = self.model.model_class if isinstance(self.model, _WRAPPERS) else self.model
        if not callable(getattr(target, self.method, None)):
            self.fail("method", f"{self.model_class_name} has no callable {self.method!r}")

    @property
    def model_class_name(self) -> str:
        """The model's class name (the nnx class for nnx models)."""
        if isinstance(self.model, _WRAPPERS):
            return self.model.model_class.__name__
        return type(self.model).__name__

    @property
    def module(self) -> Any:
        """The model as its library sees it: the merged nnx module, or the equinox module."""
        if isinstance(self.model, _WRAPPERS):
            return self.model.module()
        return self.model

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        fn = getattr(self.module, self.method)
        if self.pass_key:
            return map_values(lambda v: fn(v, key=key), x)
        return map_values(fn, x)

    def precheck(self, shape: tuple[int, ...], limits: Limits) -> tuple[int, ...]:
        """Pre-check the model when it is a georax operator (others cannot be inspected)."""
        if isinstance(self.model, Operator) and self.method == "__call__":
            return self.model.precheck(shape, limits)
        return shape

    def yaml_write_refusal(self) -> str | None:
        if isinstance(self.model, Operator):
            return None
        if isinstance(self.model, NnxModule):
            return (
                f"it wraps the flax nnx model {_class_path(self.model.nnx_class)}, whose class "
                "is not registered (or whose constructor arguments were not recorded: a module "
                "made by nnx.merge); decorate the class with @georax.learn.register_model and "
                "build the module by calling it, and georax.save() will write its state to a "
                "params file"
            )
        model = type(self.model)
        return (
            f"it wraps a {model.__module__}.{model.__qualname__} model, which is not a "
            "registered model class nor a georax Operator, so its architecture cannot be rebuilt "
            "from config; decorate the class with @georax.learn.register_model (or write it as "
            "a gx.Operator subclass) and georax.save() will write the weights to a params file"
        )

    @classmethod
    def yaml_load_refusal(cls, cfg: Mapping[str, Any]) -> str | None:
        model = cfg.get("model")
        if isinstance(model, Mapping) and TARGET in model:
            return None
        return (
            "is forbid_in_yaml: a ModelOp in YAML must wrap an operator config "
            "(model: {_target_: ...})"
        )

    @property
    def display_name(self) -> str:
        return f"ModelOp[{self.model_class_name}]"
