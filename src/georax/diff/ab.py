"""``AB(old, new, metrics=[...]).run(inputs)``: numerical A/B regression of two pipelines.

The release question of the seeds' case 13 -- "did anything regress that I did not intend?" --
is answered per input, not on average: a mean RMSE hides a bimodal regression (most scenes
untouched, a few catastrophically worse). So the report keeps every input's metrics and gives,
per metric, the quantiles (p50, p90, p95, p99), the worst inputs, and a bimodality flag, draws a
histogram, and offers a gate a CI job can fail on::

    ab = gx.diff.AB(old, new, metrics=[RMSE(), FractionChanged(atol=1e-3)])
    report = ab.run(["s1.tif", "s2.tif", ...])
    print(report.summary())
    report.save("ab-out/")                      # ab_report.json + ab_histogram.png
    report.check(max_p99=0.02).raise_if_failed()

**Compiled once.** Both pipelines *and* the metrics run in one :func:`equinox.filter_jit`
function per input signature (pipelines passed as arguments, so nothing is baked in as a
constant); only the metric scalars come back to the host. Inputs of one shape and dtype compile
once (:attr:`ABReport.compilations` counts the traces).

**Inputs** stream one at a time: a list or dict of GeoTensors / arrays / paths, a directory, or
any iterable with a ``loader`` that turns an item into a pipeline input -- which is how a catalog
plugs in (an iterable of slices with ``id`` attributes, and the catalog's raster loader). For a
:class:`georax.Graph`, an input is a dict of its named inputs.

**Bimodality.** Sarle's bimodality coefficient (Pfister et al. 2013, *Frontiers in Psychology*
4:700) from the sample skewness $g$ and excess kurtosis $k$ (both bias-corrected):

$$BC = \\frac{g^2 + 1}{k + \\frac{3 (n-1)^2}{(n-2)(n-3)}}$$

A uniform distribution has $BC = 5/9$; values above it suggest two modes (or a few far
outliers, which is the same regression story). The flag is raised when $BC > 5/9$ (needs
$n \\ge 4$ and some spread). It is a screen, not a test: read the histogram.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from georax.array.metrics import RMSE, Metric
from georax.core.carrier import Carrier, values_of
from georax.core.errors import GeoraxError
from georax.core.graph import Graph
from georax.core.hashing import config_hash, pipeline_digest
from georax.core.operator import Operator
from georax.diff.errors import ABMismatchError, DiffError, GateFailedError
from georax.diff.structure import ConfigDiff, config_diff
from georax.io import read as read_raster
from georax.io.raster import atomic_destination

__all__ = ["AB", "STATS", "ABReport", "GateResult", "bimodality_coefficient"]

FORMAT = "georax.ab_report/1"
#: The statistics of each metric's per-input values that a gate can bound (``max_<stat>``).
STATS = ("mean", "std", "min", "p50", "p90", "p95", "p99", "max")
_QUANTILES = {"p50": 0.50, "p90": 0.90, "p95": 0.95, "p99": 0.99}
_BIMODAL_THRESHOLD = 5.0 / 9.0
_RASTER_SUFFIXES = (".tif", ".tiff", ".npy", ".vrt", ".jp2", ".nc")

MetricLike = Metric | Callable[[Any, Any], Any]


def bimodality_coefficient(values: Sequence[float] | np.ndarray) -> float:
    """Sarle's bimodality coefficient of a sample (see the module docstring).

    **Arguments:**

    - `values`: the sample; non-finite values are left out.

    **Returns:** ``BC`` (``5/9`` for a uniform distribution, higher for bimodal ones); NaN when
    fewer than 4 finite values remain or they have no spread.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    n = x.size
    if n < 4:
        return math.nan
    d = x - x.mean()
    m2, m3, m4 = (d**2).mean(), (d**3).mean(), (d**4).mean()
    if m2 <= 0 or m2 < 1e-300:
        return math.nan
    g = math.sqrt(n * (n - 1)) / (n - 2) * m3 / m2**1.5
    k = (n - 1) / ((n - 2) * (n - 3)) * ((n + 1) * m4 / m2**2 - 3 * (n - 1))
    return (g * g + 1) / (k + 3 * (n - 1) ** 2 / ((n - 2) * (n - 3)))


# ------------------------------------------------------------------------------------------------
# Inputs
# ------------------------------------------------------------------------------------------------
def _expand(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in _RASTER_SUFFIXES)
    return [path]


def _iter_inputs(inputs: Any) -> Iterator[tuple[str, Any]]:
    """``(id, item)`` pairs from the accepted input forms (see :meth:`AB.run`)."""
    if isinstance(inputs, Carrier | np.ndarray | jax.Array):
        yield "input_0000", inputs
        return
    if isinstance(inputs, str | os.PathLike):
        for p in _expand(Path(inputs)):
            yield str(p), p
        return
    if isinstance(inputs, Mapping):
        for k, v in inputs.items():
            yield str(k), v
        return
    if not isinstance(inputs, Iterable):
        raise DiffError(
            f"AB.run: inputs must be a list, dict, path or iterable, got {type(inputs)}"
        )
    for i, item in enumerate(inputs):
        if isinstance(item, str | os.PathLike):
            for p in _expand(Path(item)):
                yield str(p), p
        elif isinstance(getattr(item, "id", None), str):  # catalog slices carry an id
            yield item.id, item
        else:
            yield f"input_{i:04d}", item


def _default_load(item: Any) -> Any:
    if isinstance(item, Carrier | np.ndarray | jax.Array):
        return item
    if isinstance(item, str | os.PathLike):
        path = Path(item)
        if path.suffix.lower() == ".npy":
            try:
                return np.load(path, allow_pickle=False)
            except (OSError, ValueError) as e:
                raise DiffError(f"cannot read {path}: {e}") from None
        return read_raster(path)
    if isinstance(item, Mapping):  # a Graph's named inputs
        return {str(k): _default_load(v) for k, v in item.items()}
    raise DiffError(
        f"AB.run: cannot load an input of type {type(item).__name__}; pass loader= "
        "(e.g. a catalog's raster loader)"
    )


# ------------------------------------------------------------------------------------------------
# The compiled comparison
# ------------------------------------------------------------------------------------------------
def _call(pipeline: Operator, x: Any) -> Any:
    if isinstance(pipeline, Graph) and isinstance(x, Mapping):
        return pipeline(**x)
    return pipeline(x)


def _leaves(out: Any) -> list[tuple[str, Any]]:
    flat, _ = jax.tree_util.tree_flatten_with_path(out, is_leaf=lambda v: isinstance(v, Carrier))
    return [(jax.tree_util.keystr(p, simple=True, separator="/"), v) for p, v in flat]


class _Counter:
    def __init__(self) -> None:
        self.traces = 0


def _compare(
    a: Operator,
    b: Operator,
    x: Any,
    metrics: tuple[tuple[str, MetricLike], ...],
    counter: _Counter,
) -> dict[str, Any]:
    counter.traces += 1  # runs at trace time only: counts compilations
    la, lb = _leaves(_call(a, x)), _leaves(_call(b, x))
    if [k for k, _ in la] != [k for k, _ in lb]:
        raise ABMismatchError(
            None, f"output structure {[k for k, _ in la]} vs {[k for k, _ in lb]}"
        )
    single = len(la) == 1
    out = {}  # keys carry their position: jit returns dicts with sorted keys
    for (key, va), (_, vb) in zip(la, lb, strict=True):
        va, vb = values_of(va), values_of(vb)
        if va.shape != vb.shape:
            raise ABMismatchError(
                None, f"output {key or '<root>'!r}: shape {va.shape} vs {vb.shape}"
            )
        for name, metric in metrics:
            column = name if single else f"{name}[{key}]"
            value = metric(va, vb)
            if jnp.ndim(value) != 0:
                raise DiffError(
                    f"metric {name!r} returned shape {jnp.shape(value)} for output "
                    f"{key or '<root>'!r}; a metric must return one number per input"
                )
            out[f"{len(out):06d}|{column}"] = value
    return out


_compare_jit = eqx.filter_jit(_compare)


def _metric_name(m: MetricLike) -> str:
    name = getattr(m, "name", None) or getattr(m, "__name__", None)
    if not isinstance(name, str) or not name:
        raise DiffError(f"metric {m!r} has no name: pass metrics as a dict {{name: metric}}")
    return name


class AB:
    """Compare two pipelines numerically over the same inputs.

    **Arguments:**

    - `a`, `b`: the reference (old) and candidate (new) pipelines.
    - `metrics`: :class:`~georax.array.metrics.Metric` objects (``RMSE()``, ``MAE()``,
      ``MaxAbsError()``, ``FractionChanged(atol)``, ``KLDivergence()``, ``ConfusionShift(n)``)
      or any ``f(a_out, b_out) -> scalar`` that traces under ``jax.jit``; a sequence (named by
      their ``name``) or a dict ``{name: metric}``. Default: RMSE.
    - `metric`: one metric (the seed's ``AB(old, new, metric=RMSE())``); not with `metrics`.
    - `worst_n`: how many worst inputs the report lists per metric.
    """

    def __init__(
        self,
        a: Operator,
        b: Operator,
        metrics: Sequence[MetricLike] | Mapping[str, MetricLike] | None = None,
        *,
        metric: MetricLike | None = None,
        worst_n: int = 5,
    ) -> None:
        for label, p in (("a", a), ("b", b)):
            if not isinstance(p, Operator):
                raise DiffError(f"AB: {label} must be a georax Operator, got {type(p).__name__}")
        if not isinstance(worst_n, int) or isinstance(worst_n, bool) or worst_n < 1:
            raise DiffError(f"AB: worst_n={worst_n!r} must be an int >= 1")
        if metric is not None:
            if metrics is not None:
                raise DiffError("AB: pass metrics=[...] or metric=..., not both")
            metrics = [metric]
        if metrics is None:
            metrics = [RMSE()]
        if isinstance(metrics, Mapping):
            named = [(str(k), m) for k, m in metrics.items()]
        else:
            named = [(_metric_name(m), m) for m in metrics]
        names = [n for n, _ in named]
        if not named or len(set(names)) != len(names):
            raise DiffError(f"AB: metric names must be unique and non-empty, got {names}")
        for n, m in named:
            if not callable(m):
                raise DiffError(f"AB: metric {n!r} is not callable")
        self.a, self.b = a, b
        self.metrics = tuple(named)
        self.worst_n = worst_n

    def run(
        self,
        inputs: Any,
        *,
        loader: Callable[[Any], Any] | None = None,
    ) -> ABReport:
        """Run both pipelines on every input and collect the metrics.

        **Arguments:**

        - `inputs`: a GeoTensor/array, a path (a file, or a directory of rasters), a list of
          those, a dict ``{id: input}``, a :class:`georax.catalog.Catalog` (every slice, read
          with :func:`georax.catalog.load_raster` unless ``loader`` is given), or any iterable
          of items for ``loader``. Items with a string ``id`` attribute (catalog slices) are
          reported under it.
        - `loader`: ``item -> pipeline input``; default: arrays and GeoTensors as they are,
          paths read with :func:`georax.io.read` (``.npy`` with NumPy), dicts loaded per value.

        **Returns:** an :class:`ABReport`.

        **Raises:** :class:`ABMismatchError` if the outputs cannot be compared on an input.
        """
        if callable(getattr(inputs, "iter_slices", None)):  # a georax.catalog.Catalog
            if loader is None:
                # Lazy: georax.catalog needs geopandas, which AB does not otherwise use.
                from georax.catalog import load_raster

                loader = load_raster
            inputs = inputs.iter_slices()
        load = loader or _default_load
        counter = _Counter()
        ids: list[str] = []
        rows: list[dict[str, float]] = []
        columns: list[str] | None = None
        for input_id, item in _iter_inputs(inputs):
            x = load(item)
            try:
                result = _compare_jit(self.a, self.b, x, self.metrics, counter)
            except ABMismatchError as e:
                raise ABMismatchError(input_id, e.problem) from None
            row = {k.split("|", 1)[1]: float(np.asarray(v)) for k, v in sorted(result.items())}
            if columns is None:
                columns = list(row)
            elif list(row) != columns:
                raise ABMismatchError(input_id, f"metrics {list(row)} differ from {columns}")
            ids.append(input_id)
            rows.append(row)
        if not ids:
            raise DiffError("AB.run: no inputs")
        assert columns is not None
        values = {c: np.array([r[c] for r in rows], dtype=np.float64) for c in columns}
        return ABReport(
            metrics=tuple(columns),
            ids=tuple(ids),
            values=values,
            a_digest=pipeline_digest(self.a) if _writable(self.a) else None,
            b_digest=pipeline_digest(self.b) if _writable(self.b) else None,
            config_diff=config_diff(self.a, self.b) if _writable(self.a, self.b) else None,
            compilations=counter.traces,
            worst_n=self.worst_n,
        )


def _writable(*ops: Operator) -> bool:
    """Whether the pipelines have a config (a Lambda or Tap has none)."""
    try:
        for op in ops:
            config_hash(op)
    except GeoraxError:
        return False
    return True


# ------------------------------------------------------------------------------------------------
# Report and gate
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class GateResult:
    """The outcome of :meth:`ABReport.check`: truthy when every check passed.

    Attributes:
        passed: all checks passed.
        checks: ``(metric, statistic, value, limit, ok)`` for every bound checked.
        failures: one sentence per failed check.
    """

    passed: bool
    checks: tuple[tuple[str, str, float, float, bool], ...]
    failures: tuple[str, ...]

    def __bool__(self) -> bool:
        return self.passed

    def raise_if_failed(self) -> None:
        """Raise :class:`GateFailedError` listing the failures, if any."""
        if not self.passed:
            raise GateFailedError(self.failures)

    def __str__(self) -> str:
        lines = ["gate: PASSED" if self.passed else "gate: FAILED"]
        for metric, stat, value, limit, ok in self.checks:
            mark = "ok  " if ok else "FAIL"
            lines.append(f"  {mark} {metric}.{stat} = {value:.6g} (limit {limit:.6g})")
        failed_bounds = sum(not ok for *_, ok in self.checks)
        lines += [f"  FAIL {f}" for f in self.failures[failed_bounds:]]
        return "\n".join(lines)


def _fmt(v: float) -> str:
    return f"{v:.4g}" if math.isfinite(v) else str(v)


def _finite_json(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite_json(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_finite_json(x) for x in v]
    return v


@dataclasses.dataclass(frozen=True)
class ABReport:
    """Per-input metrics of an A/B run, their statistics, and the gate.

    Attributes:
        metrics: the metric columns (``name``, or ``name[output]`` for multi-output pipelines).
        ids: the input ids, in run order.
        values: ``{metric: per-input values}`` (float64; NaN where a metric had no valid pixel).
        a_digest, b_digest: the pipelines' :func:`~georax.pipeline_digest` (``None`` when a
            pipeline has no config).
        config_diff: the structural :class:`~georax.diff.ConfigDiff` from ``a`` to ``b``.
        compilations: how many times the comparison was traced (once per input signature).
        worst_n: inputs listed per metric in :meth:`worst` by default.
    """

    metrics: tuple[str, ...]
    ids: tuple[str, ...]
    values: Mapping[str, np.ndarray]
    a_digest: str | None
    b_digest: str | None
    config_diff: ConfigDiff | None
    compilations: int
    worst_n: int = 5

    def _metric(self, metric: str | None) -> str:
        if metric is None:
            return self.metrics[0]
        if metric not in self.values:
            raise DiffError(f"no metric {metric!r} in this report (has {list(self.metrics)})")
        return metric

    def stats(self, metric: str | None = None) -> dict[str, Any]:
        """``n``, ``n_nan``, :data:`STATS` over the finite values, ``bimodality``, ``bimodal``."""
        name = self._metric(metric)
        v = self.values[name]
        finite = v[np.isfinite(v)]
        out: dict[str, Any] = {"n": int(v.size), "n_nan": int(v.size - finite.size)}
        if finite.size:
            out |= {
                "mean": float(finite.mean()),
                "std": float(finite.std()),
                "min": float(finite.min()),
                "max": float(finite.max()),
            }
            qs = np.quantile(finite, list(_QUANTILES.values()))
            out |= {k: float(q) for k, q in zip(_QUANTILES, qs, strict=True)}
        else:
            out |= {k: math.nan for k in STATS}
        bc = bimodality_coefficient(finite)
        out["bimodality"] = bc
        out["bimodal"] = bool(math.isfinite(bc) and bc > _BIMODAL_THRESHOLD)
        return out

    def worst(self, metric: str | None = None, n: int | None = None) -> list[tuple[str, float]]:
        """The ``n`` inputs with the largest values of ``metric`` (NaN, i.e. broken, first)."""
        name = self._metric(metric)
        v = self.values[name]
        order = sorted(range(v.size), key=lambda i: (0, 0.0) if math.isnan(v[i]) else (1, -v[i]))
        return [(self.ids[i], float(v[i])) for i in order[: n or self.worst_n]]

    def check(
        self,
        metric: str | None = None,
        *,
        allow_bimodal: bool = True,
        allow_nan: bool = False,
        **limits: float,
    ) -> GateResult:
        """A regression gate: every bound must hold.

        **Arguments:**

        - `metric`: the metric the bounds apply to (default: the first).
        - `allow_bimodal`: if False, a bimodal distribution of the metric fails the gate.
        - `allow_nan`: if False (default), an input whose metric is NaN (no valid pixel in
          one of the outputs) fails the gate.
        - `**limits`: ``max_<stat>=value`` for any of :data:`STATS` (``max_p99=0.02``,
          ``max_mean=...``, ``max_max=...``).

        **Returns:** a :class:`GateResult` (truthy when passed).
        """
        name = self._metric(metric)
        s = self.stats(name)
        checks, failures = [], []
        for key, limit in limits.items():
            stat = key.removeprefix("max_")
            if not key.startswith("max_") or stat not in STATS:
                raise DiffError(
                    f"check: unknown bound {key!r}; use max_<stat> with stat in {list(STATS)}"
                )
            if not isinstance(limit, int | float) or isinstance(limit, bool):
                raise DiffError(f"check: {key}={limit!r} must be a number")
            value = s[stat]
            ok = math.isfinite(value) and value <= limit
            checks.append((name, stat, float(value), float(limit), ok))
            if not ok:
                failures.append(f"{name}.{stat} = {_fmt(value)} exceeds {limit:g}")
        if not allow_nan and s["n_nan"]:
            bad = [i for i, v in zip(self.ids, self.values[name], strict=True) if math.isnan(v)]
            failures.append(f"{name} is NaN on {s['n_nan']} input(s), e.g. {bad[:3]}")
        if not allow_bimodal and s["bimodal"]:
            failures.append(
                f"{name} is bimodal across inputs (bimodality coefficient {s['bimodality']:.3f} "
                f"> 5/9): a subset of inputs regressed; see the worst inputs"
            )
        return GateResult(not failures, tuple(checks), tuple(failures))

    # -------------------------------------------------------------- output
    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (NaN written as null)."""
        doc = {
            "format": FORMAT,
            "a": {"digest": self.a_digest},
            "b": {"digest": self.b_digest},
            "n": len(self.ids),
            "compilations": self.compilations,
            "metrics": list(self.metrics),
            "stats": {m: self.stats(m) for m in self.metrics},
            "worst": {m: [list(w) for w in self.worst(m)] for m in self.metrics},
            "per_input": [
                {"id": i, **{m: float(self.values[m][k]) for m in self.metrics}}
                for k, i in enumerate(self.ids)
            ],
            "config_diff": None if self.config_diff is None else self.config_diff.to_dict(),
        }
        return _finite_json(doc)

    def to_json(self, indent: int | None = 2) -> str:
        """:meth:`to_dict` as strict JSON."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def summary(self) -> str:
        """A table per metric: quantiles, bimodality, the worst inputs."""
        lines = [f"A/B over {len(self.ids)} inputs ({self.compilations} compilation(s))"]
        for m in self.metrics:
            s = self.stats(m)
            flag = "  ** BIMODAL **" if s["bimodal"] else ""
            lines.append(
                f"{m}: mean {_fmt(s['mean'])}  p50 {_fmt(s['p50'])}  p90 {_fmt(s['p90'])}  "
                f"p99 {_fmt(s['p99'])}  max {_fmt(s['max'])}  "
                f"bimodality {_fmt(s['bimodality'])}{flag}"
                + (f"  NaN on {s['n_nan']}" if s["n_nan"] else "")
            )
            for input_id, v in self.worst(m):
                lines.append(f"    {_fmt(v):>10}  {input_id}")
        return "\n".join(lines)

    def histogram_png(self, path: str | os.PathLike[str]) -> Path:
        """Draw one histogram per metric (mean, p50 and p99 marked) into a PNG, atomically."""
        from matplotlib.figure import Figure

        n = len(self.metrics)
        fig = Figure(figsize=(5.0 * min(n, 3), 3.6 * math.ceil(n / 3)), dpi=100)
        for k, m in enumerate(self.metrics):
            ax = fig.add_subplot(math.ceil(n / 3), min(n, 3), k + 1)
            v = self.values[m]
            finite = v[np.isfinite(v)]
            s = self.stats(m)
            if finite.size:
                bins = min(50, max(5, int(math.sqrt(finite.size)) * 2))
                ax.hist(finite, bins=bins, color="#4c72b0", alpha=0.85)
                for stat, style in (("mean", "-"), ("p50", "--"), ("p99", ":")):
                    ax.axvline(
                        s[stat], color="#c44e52", linestyle=style, label=f"{stat} {s[stat]:.3g}"
                    )
                ax.legend(fontsize=8)
            title = f"{m} (n={s['n']}"
            title += f", {s['n_nan']} NaN" if s["n_nan"] else ""
            title += ", BIMODAL)" if s["bimodal"] else ")"
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("per-input value")
            ax.set_ylabel("inputs")
        fig.tight_layout()
        out = Path(path)
        with atomic_destination(os.fspath(out)) as tmp:
            fig.savefig(tmp, format="png")
        return out

    def save(self, directory: str | os.PathLike[str], *, stem: str = "ab") -> dict[str, Path]:
        """Write ``<stem>_report.json`` and ``<stem>_histogram.png`` into ``directory``."""
        root = Path(directory)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DiffError(f"cannot create {root}: {e.strerror or e}") from None
        json_path = root / f"{stem}_report.json"
        with atomic_destination(os.fspath(json_path)) as tmp:
            Path(tmp).write_text(self.to_json() + "\n", encoding="utf-8")
        png = self.histogram_png(root / f"{stem}_histogram.png")
        return {"json": json_path, "png": png}
