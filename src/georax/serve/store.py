"""The server's pipelines: loaded through the sandbox, priced, compiled and kept (or evicted).

Every pipeline a server runs -- those of its services file and those users submit -- goes
through the same door, :class:`SandboxedLoader`:

1. the document is read as a regular file only, at most ``Limits.max_bytes`` (a YAML file), or
   loaded with :func:`georax.load` (a saved directory: digests verified), or re-serialised from
   the services file's inline mapping -- and built with the allow-list of georax's public
   operators (``allowed=``), so a document can only name registered, concrete, YAML-safe
   operators and no code from it ever runs;
2. it is priced for each declared input (:meth:`CompiledPipeline.check`: pre-check, trace,
   constants, compiled memory and FLOPs, under ``Limits.max_seconds``) against the server's
   memory and FLOP budgets, and refused with a typed error when over;
3. its programs are compiled for those inputs (warmed) before the first request.

:class:`PipelineStore` holds the named pipelines. With ``lazy: true`` a pipeline is only built
(to know its config hash) at start-up and loaded, priced and compiled on first use; at most
``max_loaded`` stay loaded, the least recently used is evicted (its compiled programs freed) and
loaded again when asked for. Submitted pipelines keep their (size-capped) text so they too can
be evicted and reloaded.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import jax
import yaml

from georax.core import registry
from georax.core.config import to_config
from georax.core.errors import ConfigError
from georax.core.operator import Operator
from georax.core.params import load as load_saved
from georax.core.sandbox import SANDBOX_LIMITS, Limits
from georax.core.yaml_io import loads_yaml
from georax.serve.compiled import CompiledPipeline, Signature
from georax.serve.config import InputSpec, PipelineSource, PipelineSpec, Services
from georax.serve.errors import RequestError

__all__ = ["OPERATOR_PACKAGES", "Entry", "PipelineStore", "SandboxedLoader", "allowed_operators"]

#: georax's operator layers, imported at start-up so every operator is registered.
OPERATOR_PACKAGES = ("georax.core", "georax.array", "georax.tensor", "georax.patch", "georax.geo")


def allowed_operators(packages: Iterable[str] = OPERATOR_PACKAGES) -> frozenset[str]:
    """The allow-list: georax's public operators (closure-bearing and abstract ones excluded)."""
    registry.discover(packages)
    return registry.public_operators(include_modules=["georax"])


def _read_capped(path: Path, limit: int, who: str) -> bytes:
    """A regular file's bytes, at most `limit` (+1 to detect more); anything else refused."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise ConfigError(who, "yaml", str(path), f"cannot read: {e.strerror}") from None
    if not stat.S_ISREG(mode):
        raise ConfigError(who, "yaml", str(path), "is not a regular file")
    with open(path, "rb") as f:
        return f.read(limit + 1)


class SandboxedLoader:
    """Builds and prices pipelines for one server (see the module docstring).

    **Arguments:**

    - `services`: the validated services file (budgets, pricing time, paths).
    - `allowed`: the allow-list (default: :func:`allowed_operators`).
    """

    def __init__(self, services: Services, allowed: frozenset[str] | None = None) -> None:
        self.services = services
        self.allowed = allowed_operators() if allowed is None else allowed
        self.limits: Limits = dataclasses.replace(
            SANDBOX_LIMITS, max_seconds=services.server.pricing_seconds
        )

    def build(self, source: PipelineSource, who: str) -> Operator:
        """Build the pipeline of `source` with the allow-list (not priced yet)."""
        if source.saved is not None:
            return load_saved(
                self.services.path(source.saved),
                allowed=self.allowed,
                expected_digest=source.expected_digest,
                limits=self.limits,
            )
        if source.yaml is not None:
            text: str | bytes = _read_capped(
                self.services.path(source.yaml), self.limits.max_bytes, who
            )
        else:
            text = yaml.safe_dump(source.config, sort_keys=False)
        return self.build_text(text, source.variables)

    def build_text(self, text: str | bytes, variables: Mapping[str, Any] | None = None):
        """Build a pipeline from YAML text with the allow-list and the sandbox's limits."""
        return loads_yaml(text, allowed=self.allowed, variables=variables, limits=self.limits)

    def price(
        self,
        pipeline: CompiledPipeline,
        inputs: Iterable[Signature],
        memory_budget: int | None = None,
        flop_budget: float | None = None,
        *,
        compile: bool = True,
        grid: Any = None,
    ) -> list[Any]:
        """Price `pipeline` for each input against the budgets (the server's by default),
        on `grid` (``(transform, crs)``; default a reference UTM grid)."""
        server = self.services.server
        budget = server.memory_budget if memory_budget is None else memory_budget
        flops = server.flop_budget if flop_budget is None else flop_budget
        return [
            pipeline.check(sig, budget, flops, self.limits, compile=compile, grid=grid)
            for sig in inputs
        ]


def signatures(inputs: Iterable[InputSpec], dtype: str) -> list[Signature]:
    """The compile signatures of declared inputs."""
    return [Signature(tuple(i.shape), dtype, i.fill_value, i.band_names) for i in inputs]


@dataclasses.dataclass
class Entry:
    """One named pipeline of a server.

    ``config_hash``/``digest`` are known from start-up (lazy entries are built once to learn
    them); ``compiled`` is None while a lazy entry is not loaded.
    """

    name: str
    inputs: tuple[Signature, ...]
    dtype: str
    origin: str  # "services" or "upload"
    config_hash: str
    digest: str
    source: PipelineSource | None = None
    text: str | None = None
    compiled: CompiledPipeline | None = None
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


class PipelineStore:
    """The named pipelines of a server (see the module docstring).

    **Arguments:**

    - `loader`: the server's :class:`SandboxedLoader`.
    - `on_compile`: called with a pipeline name after each compilation (metrics).
    """

    def __init__(
        self, loader: SandboxedLoader, on_compile: Callable[[str], None] | None = None
    ) -> None:
        self.loader = loader
        self.server = loader.services.server
        self.on_compile = on_compile
        self._entries: dict[str, Entry] = {}
        self._loaded: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ start-up
    def start(self) -> None:
        """Load every pipeline of the services file: priced and warmed unless lazy."""
        for name, spec in self.loader.services.pipelines.items():
            self._add_configured(name, spec)

    def _add_configured(self, name: str, spec: PipelineSpec) -> None:
        op = self.loader.build(spec, f"pipelines.{name}")
        compiled = self._compiled(name, op)
        entry = Entry(
            name=name,
            inputs=tuple(signatures(spec.inputs, spec.dtype)),
            dtype=spec.dtype,
            origin="services",
            config_hash=compiled.config_hash,
            digest=compiled.digest,
            source=spec,
        )
        self._entries[name] = entry
        if not self.server.lazy:
            self._activate(entry, compiled)

    def _compiled(self, name: str, op: Operator) -> CompiledPipeline:
        return CompiledPipeline(
            name, op, max_programs=self.server.max_programs, on_compile=self.on_compile
        )

    def _activate(self, entry: Entry, compiled: CompiledPipeline) -> None:
        """Price for every declared input, compile (warm) them, and mark loaded."""
        self.loader.price(compiled, entry.inputs)
        for sig in entry.inputs:
            compiled.warm(sig)
        entry.compiled = compiled
        self._touch(entry.name)

    def _touch(self, name: str) -> None:
        with self._lock:
            self._loaded[name] = None
            self._loaded.move_to_end(name)
            cap = self.server.max_loaded if self.server.lazy else None
            while cap is not None and len(self._loaded) > cap:
                old, _ = self._loaded.popitem(last=False)
                self._entries[old].compiled = None  # its programs go with it

    # ------------------------------------------------------------------ queries
    def names(self) -> dict[str, str]:
        """``{name: config_hash}`` of every pipeline, loaded or not."""
        with self._lock:
            return {name: e.config_hash for name, e in self._entries.items()}

    def entry(self, name: str) -> Entry:
        """The entry named `name`, or a 404 :class:`RequestError`."""
        with self._lock:
            entry = self._entries.get(name)
        if entry is None:
            raise RequestError(404, "UnknownPipeline", f"no pipeline named {name!r}")
        return entry

    def loaded(self) -> int:
        """How many pipelines are loaded (compiled programs held)."""
        with self._lock:
            return len(self._loaded)

    def get(self, name: str) -> CompiledPipeline:
        """The loaded pipeline `name`, loading it first if lazy (call from a worker thread)."""
        entry = self.entry(name)
        compiled = entry.compiled
        if compiled is not None:
            if self.server.lazy:
                self._touch(name)
            return compiled
        with entry.lock:
            if entry.compiled is None:
                op = (
                    self.loader.build(entry.source, f"pipelines.{name}")
                    if entry.source is not None
                    else self.loader.build_text(entry.text or "")
                )
                self._activate(entry, self._compiled(name, op))
            compiled = entry.compiled
        assert compiled is not None
        return compiled

    def describe(self, name: str) -> dict[str, Any]:
        """The config of pipeline `name` with its hashes and declared inputs."""
        compiled = self.get(name)
        entry = self.entry(name)
        return {
            "name": name,
            "config": to_config(compiled.op),
            "config_hash": entry.config_hash,
            "pipeline_digest": entry.digest,
            "origin": entry.origin,
            "inputs": [
                {"shape": list(s.shape), "dtype": s.dtype, "fill_value": s.fill_value}
                for s in entry.inputs
            ],
        }

    # ------------------------------------------------------------------ submissions
    def submit(
        self, name: str | None, text: str | bytes, shape: tuple[int, ...], dtype: str
    ) -> tuple[Entry, bool, Any]:
        """Load a user's YAML sandboxed, price it for `shape`, compile it and keep it.

        **Returns:** ``(entry, created, price)``; ``created`` is False when the same name
        already holds the same config (an idempotent resubmission).

        **Raises:** the loader's georax errors (4xx), or :class:`RequestError` 409 for a name
        held by another pipeline or a full store.
        """
        uploads = self.server.uploads
        op = self.loader.build_text(text)
        compiled = self._compiled(name or "", op)
        name = name or f"u-{compiled.config_hash[:16]}"
        compiled.name = name
        sig = Signature(tuple(shape), dtype)
        with self._lock:
            existing = self._entries.get(name)
            n_uploads = sum(e.origin == "upload" for e in self._entries.values())
        if existing is not None:
            if existing.origin == "upload" and existing.digest == compiled.digest:
                return existing, False, None
            raise RequestError(
                409, "NameTaken", f"pipeline name {name!r} is taken by another pipeline"
            )
        if n_uploads >= uploads.max_pipelines:
            raise RequestError(
                409,
                "TooManyPipelines",
                f"the server keeps at most {uploads.max_pipelines} submitted pipelines",
            )
        price = self.loader.price(compiled, [sig], uploads.memory_budget, uploads.flop_budget)[0]
        compiled.warm(sig)
        text_str = text.decode("utf-8") if isinstance(text, bytes) else text
        entry = Entry(
            name=name,
            inputs=(sig,),
            dtype=dtype,
            origin="upload",
            config_hash=compiled.config_hash,
            digest=compiled.digest,
            text=text_str,
            compiled=compiled,
        )
        with self._lock:
            if name in self._entries:  # a concurrent submission won the name
                raise RequestError(409, "NameTaken", f"pipeline name {name!r} was just taken")
            self._entries[name] = entry
        self._touch(name)
        return entry, True, price


def input_key_seed(digest: str) -> jax.Array:
    """A PRNG key from a hex digest: the same input gets the same key (reproducible outputs)."""
    return jax.random.key(int(digest[:8], 16))
