"""Seed case 13 -- pipeline diffing and A/B regression before a release.

The release question: a candidate pipeline (``methane_v4_candidate``) changes the dark-object
percentile and inserts a speckle filter; did anything regress that was not intended? Two
answers, as the seed prescribes:

1. **Structurally** (:func:`georax.diff.config_diff`): operators aligned by identity, so the
   inserted ``LeeSpeckle`` is one added operator and the percentile one changed field -- not
   "everything after line 14 changed" as a line diff of the configs would say.
2. **Numerically** (:class:`georax.diff.AB`): both pipelines and the metrics compiled once and
   run over a set of scenes (different seeds and cloud cover: a small stand-in for a catalog),
   per-scene RMSE, fraction of changed pixels and max error; quantiles, the worst scenes, a
   bimodality flag (a mean hides a regression that hits only some scenes), a histogram, and a
   CI gate.

Run: ``python examples/13_pipeline_ab.py [OUTPUT_DIR] [--size N] [--n SCENES] [--max-p99 X]``
(default output folder ``./georax-out/13``). Writes ``13_old.yaml``, ``13_new.yaml``,
``13_config_diff.json``, ``13_ab_report.json`` and ``13_ab_histogram.png``. Exits 0; the gate
verdict is printed (``--strict`` exits 3 on a failed gate, as CI would; ``--allow-bimodal``
keeps a bimodal RMSE from failing it).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import georax as gx
import georax.data as gd
from georax.array.metrics import RMSE, FractionChanged, MaxAbsError
from georax.diff import AB, config_diff

OLD_YAML = """\
_target_: georax.Sequential
operators:
- {_target_: georax.geo.cloud.MaskClouds, qa_band: -1, bits: [10, 11]}
- {_target_: georax.geo.radiometry.ScaleOffset, scale: 0.0001, offset: 0.0}
- {_target_: georax.geo.radiometry.DarkObjectSubtraction, percentile: 1.0, clip_negative: true}
- {_target_: georax.geo.indices.NDVI}
"""

NEW_YAML = """\
_target_: georax.Sequential
operators:
- {_target_: georax.geo.cloud.MaskClouds, qa_band: -1, bits: [10, 11]}
- {_target_: georax.geo.radiometry.ScaleOffset, scale: 0.0001, offset: 0.0}
- {_target_: georax.geo.radiometry.DarkObjectSubtraction, percentile: 2.0, clip_negative: true}
- {_target_: georax.geo.sar.LeeSpeckle, window_size: 5}
- {_target_: georax.geo.indices.NDVI}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Seed case 13: config diff and A/B regression")
    parser.add_argument("out", nargs="?", default=os.path.join("georax-out", "13"))
    parser.add_argument("--size", type=int, default=256, help="scene size in pixels")
    parser.add_argument("--n", type=int, default=24, help="number of scenes")
    parser.add_argument("--max-p99", type=float, default=0.05, help="gate: p99 of RMSE")
    parser.add_argument("--strict", action="store_true", help="exit 3 if the gate fails")
    parser.add_argument(
        "--allow-bimodal", action="store_true", help="do not fail the gate on a bimodal RMSE"
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    (out / "13_old.yaml").write_text(OLD_YAML)
    (out / "13_new.yaml").write_text(NEW_YAML)
    old = gx.loads_yaml((out / "13_old.yaml").read_text())
    new = gx.loads_yaml((out / "13_new.yaml").read_text())

    print("=== Config diff (structural) ===")
    diff = config_diff(old, new)
    print(diff)
    (out / "13_config_diff.json").write_text(diff.to_json() + "\n")

    print("\n=== Numerical A/B over the scenes ===")
    # every fourth scene is much cloudier: where a speckle filter meets cloud edges
    scenes = {
        f"scene_{k:03d}": gd.sentinel2_l1c(
            args.size, seed=k, cloud_cover=0.45 if k % 4 == 3 else 0.1
        )
        for k in range(args.n)
    }
    ab = AB(old, new, metrics=[RMSE(), FractionChanged(atol=0.01), MaxAbsError()], worst_n=5)
    report = ab.run(scenes)
    print(report.summary())
    paths = report.save(out, stem="13_ab")
    print(f"wrote {paths['json']} and {paths['png']}")

    print("\n=== Release gate ===")
    gate = report.check("rmse", max_p99=args.max_p99, allow_bimodal=args.allow_bimodal)
    print(gate)
    return 3 if (args.strict and not gate) else 0


if __name__ == "__main__":
    sys.exit(main())
