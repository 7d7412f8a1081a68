"""ModelOp: a model (equinox, or any pytree with a method) as a pipeline step."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax

from georax.core.carrier import map_values
from georax.core.operator import Operator, static
from georax.core.sandbox import TARGET, Limits


class ModelOp(Operator):
    """Run ``getattr(model, method)(x)`` as a pipeline step.

    The model is a pytree child, so its weights are leaves of the pipeline: ``jit``, ``vmap``
    and ``grad`` see them and optax can train through the whole pipeline. A carrier input is
    unwrapped for the model and re-wrapped afterwards (georeferencing survives).

    The model is an arbitrary object, so ModelOp is ``forbid_in_yaml`` unless the model is itself
    a registered georax operator (its architecture is then rebuilt from config and its weights
    are leaves): see :meth:`yaml_write_refusal` and :meth:`yaml_load_refusal`.

    **Arguments:**

    - `model`: an :class:`equinox.Module` (or any pytree) exposing ``method``.
    - `method`: the name of the method to call (the seeds' ``predict_with_uncertainty``).
    - `pass_key`: pass ``key=`` through to the model (equinox layers such as Dropout take one).
    """

    forbid_in_yaml = True
    model: Any
    method: str = static(default="__call__")
    pass_key: bool = static(default=False)

    def __check_init__(self) -> None:
        if not callable(getattr(self.model, self.method, None)):
            self.fail("method", f"{type(self.model).__name__} has no callable {self.method!r}")

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        fn = getattr(self.model, self.method)
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
        model = type(self.model)
        return (
            f"it wraps a {model.__module__}.{model.__qualname__} model, which is not a "
            "registered georax Operator, so its architecture cannot be rebuilt from config; "
            "define the architecture as a gx.Operator subclass (static config fields, "
            "array-leaf weights) and georax.save() will write the weights to a params file"
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
        return f"ModelOp[{type(self.model).__name__}]"
