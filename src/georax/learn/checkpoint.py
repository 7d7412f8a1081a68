"""Training checkpoints with orbax-checkpoint: save every N steps, keep the last K, resume.

**Why orbax here, and the params file for deployment.** A checkpoint is *training* state: the
pipeline's arrays, the optimizer's moments, the step count and the run's log, written often,
while training continues, and read back by the same code that wrote it. Orbax is built for
exactly that: atomic step directories (a step is written to a temporary directory and renamed
when complete, so a process killed mid-save -- ``kill -9`` -- leaves the previous steps intact
and the half-written one is ignored and cleaned up), retention of the last K steps, optional
asynchronous saves, and sharded arrays when training grows past one device. A *deployable*
pipeline is another thing: one immutable artifact, read by other processes and by untrusted
loaders, that must be content-addressed and verifiable -- :func:`georax.save` writes the config
YAML plus a params file named by its SHA-256 and verifies both on load. So training state goes
to orbax and the trained pipeline, once chosen, goes to ``georax.save``.

**The orbax calls used** (orbax-checkpoint is pinned to a tested range in ``pyproject.toml``
because its API moves between minor versions):

- ``ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(max_to_keep=K,
  save_interval_steps=N, enable_async_checkpointing=...))`` -- the step directories and their
  retention;
- ``manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(arrays),
  log=ocp.args.JsonSave(log)), force=...)`` -- the state's arrays (a pytree) and the fit log;
- ``manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
  log=ocp.args.JsonRestore()))`` with ``abstract`` from :func:`equinox.filter_eval_shape` --
  arrays come back with the dtypes and shapes of a freshly built state, and the non-array
  parts (static config, graph definitions) come from that live state, never from disk;
- ``manager.latest_step()``, ``all_steps()``, ``wait_until_finished()``, ``close()``.

orbax is imported when a :class:`Checkpointer` is created, not with georax.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import numpy as np

from georax.core.errors import ConfigError, SerializationError
from georax.learn.fit import Callback, FitLog
from georax.learn.train import TrainState

__all__ = ["CHECKPOINT_FORMAT", "Checkpointer", "abstract_arrays"]

#: Written into every checkpoint's log, checked on restore.
CHECKPOINT_FORMAT = "georax.checkpoint/1"


def _arrays(tree: Any) -> Any:
    """The array leaves of ``tree`` (``None`` elsewhere): what a checkpoint stores."""
    return eqx.filter(tree, eqx.is_array)


def abstract_arrays(like: Any) -> Any:
    """The abstract tree a checkpoint of ``like`` is restored into.

    JAX arrays become ``jax.ShapeDtypeStruct`` through :func:`equinox.filter_eval_shape`
    (nothing is computed or allocated); NumPy leaves stay NumPy templates (orbax then restores
    NumPy, keeping 64-bit values exact when JAX's x64 mode is off).
    """
    jax_part = eqx.filter(like, lambda x: isinstance(x, jax.Array))
    abstract = eqx.filter_eval_shape(lambda t: t, jax_part)
    return eqx.combine(abstract, eqx.filter(like, lambda x: isinstance(x, np.ndarray)))


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError("Checkpointer", name, value, "must be a positive int")
    return value


class Checkpointer(Callback):
    """Save a :class:`~georax.learn.TrainState` every ``every`` steps, keep the last ``keep``.

    As a :func:`~georax.learn.fit` callback it also *resumes*: at the start of ``fit`` the
    latest complete checkpoint in ``directory`` (if any) replaces the state and the log, so
    rerunning the same script after a crash continues where the last checkpoint left off.
    The final step is always saved when ``fit`` ends.

    **Arguments:**

    - `directory`: where the step directories go (created if missing).
    - `every`: save when ``state.step`` is a multiple of this.
    - `keep`: how many of the most recent checkpoints to keep.
    - `async_save`: let orbax write in a background thread while training continues
      (default off: each save is complete when ``save`` returns).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        every: int,
        keep: int = 3,
        async_save: bool = False,
    ) -> None:
        import orbax.checkpoint as ocp  # heavy (tensorstore); only when checkpointing is used

        self._ocp = ocp
        self.directory = Path(directory).absolute()
        self.every = _positive("every", every)
        self.keep = _positive("keep", keep)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=self.keep,
            save_interval_steps=self.every,
            enable_async_checkpointing=bool(async_save),
            create=True,
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    # ------------------------------------------------------------------ plain API
    def latest_step(self) -> int | None:
        """The step of the newest complete checkpoint, or ``None``."""
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        """The steps of the checkpoints on disk, oldest first."""
        return sorted(self.manager.all_steps())

    def save(self, state: TrainState, log: FitLog | None = None, *, force: bool = True) -> bool:
        """Save ``state`` (and the fit ``log``) under ``state.step``.

        **Arguments:**

        - `state`: the state to save.
        - `log`: the fit log (history so far), restored with the state.
        - `force`: save even if ``state.step`` is not a multiple of ``every``.

        **Returns:** whether a checkpoint was written.
        """
        ocp = self._ocp
        step = int(state.step)
        doc = {"format": CHECKPOINT_FORMAT, **(log or FitLog()).to_json()}
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(_arrays(state)), log=ocp.args.JsonSave(doc)
        )
        if step in self.manager.all_steps():
            return False
        return bool(self.manager.save(step, args=args, force=force))

    def restore(self, like: TrainState, step: int | None = None) -> tuple[TrainState, FitLog]:
        """Restore checkpoint ``step`` (default: the latest) into the structure of ``like``.

        ``like`` is a state built the same way as the saved one (``train_step.init(pipeline)``
        with the same pipeline architecture and optimizer); its arrays are not read, only their
        shapes and dtypes (:func:`abstract_arrays`), and its static parts are kept.

        **Returns:** the restored state and fit log.

        **Raises:** :class:`~georax.errors.SerializationError` when there is no checkpoint or
        it does not fit ``like`` (another architecture, optimizer or dtype).
        """
        ocp = self._ocp
        self.manager.wait_until_finished()
        step = self.latest_step() if step is None else step
        if step is None:
            raise SerializationError(f"no checkpoint in {self.directory}")
        target = abstract_arrays(_arrays(like))
        args = ocp.args.Composite(
            state=ocp.args.StandardRestore(target), log=ocp.args.JsonRestore()
        )
        try:
            restored = self.manager.restore(step, args=args)
        except Exception as e:
            raise SerializationError(
                f"checkpoint {self.directory}/{step} does not fit the given state (another "
                f"pipeline, optimizer or dtype?): {type(e).__name__}: {e}"
            ) from None
        arrays = restored.state
        same = jax.tree.structure(arrays) == jax.tree.structure(target) and all(
            np.shape(a) == tuple(t.shape) and np.dtype(a.dtype) == np.dtype(t.dtype)
            for a, t in zip(jax.tree.leaves(arrays), jax.tree.leaves(target), strict=True)
        )
        if not same:
            raise SerializationError(
                f"checkpoint {self.directory}/{step} holds arrays that do not match the given "
                "state's shapes and dtypes"
            )
        doc = restored.log or {}
        if doc.get("format") != CHECKPOINT_FORMAT:
            raise SerializationError(
                f"checkpoint {self.directory}/{step}: unknown format {doc.get('format')!r} "
                f"(expected {CHECKPOINT_FORMAT})"
            )
        state = eqx.combine(arrays, eqx.filter(like, eqx.is_array, inverse=True))
        return state, FitLog.from_json(doc)

    def wait(self) -> None:
        """Block until asynchronous saves are on disk."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        """Finish pending saves and release orbax's resources."""
        self.manager.wait_until_finished()
        self.manager.close()

    # ------------------------------------------------------------------ fit callback
    def on_fit_start(self, state: TrainState, log: FitLog) -> tuple[TrainState, FitLog]:
        if self.latest_step() is None:
            return state, log
        return self.restore(state)

    def on_step_end(self, state: TrainState, loss: float, log: FitLog) -> None:
        if int(state.step) % self.every == 0:
            self.save(state, log)

    def on_fit_end(self, state: TrainState, log: FitLog) -> None:
        self.save(state, log)
        self.manager.wait_until_finished()
