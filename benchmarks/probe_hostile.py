# ruff: noqa: E501 -- the cases are code strings, one per line, easier to read unwrapped
"""An independent hostile-input probe for issue 16 (not a test: a report of what it finds).

Every case runs in a forked child (georax and JAX imported once in the parent, no backend yet)
with an address-space limit of 4 GiB and a wall-clock limit of 20 s. A case passes if it ends in
a georax error (a subclass of ``GeoraxError``; for the CLI: an exit status without a traceback)
or returns a result its check accepts. Anything else -- a bare exception, a hang, a crash, an
out-of-memory kill -- is a defect.

Run: ``PYTHONPATH=src python benchmarks/probe_hostile.py [-k SUBSTRING] [--cause N]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import sys
import tempfile
import textwrap
import time
import traceback
from pathlib import Path

import numpy as np  # noqa: F401
import rasterio  # noqa: F401
import yaml  # noqa: F401

import georax as gx
import georax.cli
import georax.io
from georax.core.errors import GeoraxError

TIMEOUT_S = 20.0
AS_LIMIT = 4 * 2**30

PRELUDE = """
import os, io, sys, json, math, time, subprocess, contextlib
from pathlib import Path
import numpy as np, yaml, rasterio
from rasterio.transform import from_origin
import jax, jax.numpy as jnp
import georax as gx
from georax.core.registry import public_operators
from georax.core.sandbox import SANDBOX_LIMITS, Limits
from georax.core.yaml_io import loads_yaml
from georax.core.budget import price, check_budget, precheck
from georax.cli import main as cli
A = public_operators(include_modules=["georax"])
P = dict(allowed=A, input_spec=(1, 512, 512), memory_budget="256MiB", flop_budget=1e12)
P4 = dict(allowed=A, input_spec=(4, 512, 512), memory_budget="256MiB", flop_budget=1e12)
T = Path(TMP)
def gt(values, crs="EPSG:32633", transform=None, **kw):
    return gx.GeoTensor(jnp.asarray(values), transform or (10.0, 0.0, 500000.0, 0.0, -10.0, 4000000.0), crs, **kw)
def tif(path, arr, **kw):
    arr = np.asarray(arr)
    if arr.ndim == 2: arr = arr[None]
    prof = dict(driver="GTiff", count=arr.shape[0], height=arr.shape[1], width=arr.shape[2], dtype=arr.dtype, crs="EPSG:32633", transform=from_origin(500000, 4000000, 10, 10))
    prof.update(kw)
    with rasterio.open(path, "w", **prof) as d:
        d.write(arr)
    return str(path)
def run_cli(*argv):
    import io as _io
    err = _io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(_io.StringIO()):
        try:
            rc = cli(list(argv))
        except SystemExit as e:
            rc = e.code
    s = err.getvalue()
    if "Traceback" in s:
        raise AssertionError("traceback printed: " + s[-600:])
    return rc, s
"""

CASES: list[tuple[int, str, str]] = []


def case(cause: int, name: str, code: str) -> None:
    CASES.append((cause, name, textwrap.dedent(code)))


# ------------------------------------------------------------------------------------ cause 1
for pad in ("reflect", "symmetric", "edge", "constant"):
    case(
        1,
        f"lee_65535_{pad}",
        f"loads_yaml('{{_target_: georax.geo.sar.LeeSpeckle, window_size: 65535, padding: {pad}}}', **P)",
    )
case(
    1,
    "lee_513_on_512",
    "loads_yaml('{_target_: georax.geo.sar.LeeSpeckle, window_size: 513, padding: reflect}', **P)",
)
case(
    1,
    "lee_chain_100",
    "loads_yaml('{_target_: georax.Sequential, operators: [' + ','.join(['{_target_: georax.geo.sar.LeeSpeckle, window_size: 511, padding: symmetric}']*100) + ']}', **P)",
)
case(
    1,
    "dilate_65535",
    "loads_yaml('{_target_: georax.geo.cloud.MaskFromQABits, qa_band: 0, bits: [3], dilate: 65535}', **P)",
)
case(
    1,
    "maskclouds_dilate_2000",
    "loads_yaml('{_target_: georax.geo.cloud.MaskClouds, qa_band: 0, bits: [3], dilate: 2000}', **P)",
)
PW = "{{_target_: georax.patch.operators.Patchwise, patcher: {{_target_: georax.patch.patcher.Patcher, geometry: {{_target_: georax.patch.geometry.Rectangular, size: [{s}, {s}]}}, sampler: {{_target_: georax.patch.samplers.RegularStride, stride: [{t}, {t}]}}, padding: {pad}}}, operator: {op}, batch_size: {b}}}"
nest = "{_target_: georax.Identity}"
for _ in range(4):
    nest = PW.format(s=8, t=1, pad="reflect", op=nest, b=65535)
case(1, "patchwise_nest4_stride1", f"loads_yaml({nest!r}, **P)")
nest = "{_target_: georax.Identity}"
for _ in range(3):
    nest = PW.format(s=2, t=1, pad="constant", op=nest, b=1)
case(1, "patchwise_nest3_batch1", f"loads_yaml({nest!r}, **P)")
case(
    1,
    "patchwise_pad_reflect_huge",
    f"loads_yaml({PW.format(s=65535, t=65535, pad='reflect', op=nest, b=1)!r}, **P)",
)
case(
    1,
    "gridsampler_stride1",
    "loads_yaml('{_target_: georax.patch.operators.GridSampler, patcher: {_target_: georax.patch.patcher.Patcher, geometry: {_target_: georax.patch.geometry.Rectangular, size: [64, 64]}, sampler: {_target_: georax.patch.samplers.RegularStride, stride: [1, 1]}}}', **P)",
)
case(
    1,
    "random_positions_n_big",
    "loads_yaml('{_target_: georax.patch.operators.GridSampler, patcher: {_target_: georax.patch.patcher.Patcher, geometry: {_target_: georax.patch.geometry.Rectangular, size: [4, 4]}, sampler: {_target_: georax.patch.samplers.RandomPositions, n: 65535}}}', **P)",
)
case(
    1,
    "explicit_positions_many",
    "pts = [[i % 500, i // 500] for i in range(4000)]\nloads_yaml(yaml.safe_dump({'_target_': 'georax.patch.operators.GridSampler', 'patcher': {'_target_': 'georax.patch.patcher.Patcher', 'geometry': {'_target_': 'georax.patch.geometry.Rectangular', 'size': [4, 4]}, 'sampler': {'_target_': 'georax.patch.samplers.ExplicitPositions', 'points': pts}}}), **P)",
)
case(
    1,
    "graph_patchwise_reuse",
    textwrap.dedent(f"""
    pw = {PW.format(s=4, t=1, pad="constant", op="{_target_: georax.Identity}", b=65535)!r}
    nodes = [[0, ['a'], []]] + [[0, [i], []] for i in range(200)]
    doc = yaml.safe_dump({{'_target_': 'georax.Graph', 'inputs': ['a'], 'outputs': {{'y': 200}}, 'operators': [yaml.safe_load(pw)], 'nodes': nodes}})
    loads_yaml(doc, **P)
"""),
)
case(
    1,
    "methane_steps_huge",
    "loads_yaml('{_target_: georax.geo.retrieval.operators.MethaneRetrieval, steps: 1000000000}', **P)",
)
case(
    1,
    "formula_unary_chain",
    "loads_yaml(yaml.safe_dump({'_target_': 'georax.geo.indices.SpectralIndex', 'index': '-' * 1990 + 'B', 'band_map': {'B': 0}}), **P)",
)
case(
    1,
    "formula_paren_nest",
    "loads_yaml(yaml.safe_dump({'_target_': 'georax.geo.indices.SpectralIndex', 'index': '(' * 150 + 'B' + ')' * 150, 'band_map': {'B': 0}}), **P)",
)
case(
    1,
    "formula_pow_tower",
    "loads_yaml(yaml.safe_dump({'_target_': 'georax.geo.indices.SpectralIndex', 'index': 'B*' + '**'.join(['9'] * 30), 'band_map': {'B': 0}}), **P)",
)
case(
    1,
    "formula_binop_chain",
    "loads_yaml(yaml.safe_dump({'_target_': 'georax.geo.indices.SpectralIndex', 'index': '+'.join(['B'] * 990), 'band_map': {'B': 0}}), **P)",
)
case(
    1,
    "formula_big_literal",
    "loads_yaml(yaml.safe_dump({'_target_': 'georax.geo.indices.SpectralIndex', 'index': 'B*' + '9' * 3990, 'band_map': {'B': 0}}), **P)",
)
case(
    1,
    "random_crop_big",
    "loads_yaml('{_target_: georax.geo.augment.RandomCrop, size: [65535, 65535]}', **P)",
)
case(
    1,
    "dos_percentile_many_axis",
    "loads_yaml('{_target_: georax.geo.radiometry.DarkObjectSubtraction, percentile: 1.0}', allowed=A, input_spec=(4096, 8, 8), memory_budget='256MiB', flop_budget=1e12)",
)

# ------------------------------------------------------------------------------------ cause 2
GRID = "[EPSG:32633, [10.0, 0.0, 500000.0, 0.0, -10.0, 4000000.0], [{h}, {w}]]"
case(
    2,
    "resample_grid_65535sq",
    f"loads_yaml('{{_target_: georax.geo.fusion.Resample, target_grid: {GRID.format(h=65535, w=65535)}}}', **P)",
)
case(
    2,
    "resample_grid_1x65535",
    f"loads_yaml('{{_target_: georax.geo.fusion.Resample, target_grid: {GRID.format(h=1, w=65535)}}}', **P)",
)
case(
    2,
    "resample_grid_geographic",
    "loads_yaml('{_target_: georax.geo.fusion.Resample, target_grid: [EPSG:4326, [1.0e-9, 0.0, 0.0, 0.0, -1.0e-9, 0.0], [30000, 30000]]}', **P)",
)
case(
    2,
    "resample_grid_zero_px",
    "loads_yaml('{_target_: georax.geo.fusion.Resample, target_grid: [EPSG:32633, [0.0, 0.0, 500000.0, 0.0, 0.0, 4000000.0], [64, 64]]}', **P)",
)
case(
    2,
    "resample_grid_nan_px",
    "loads_yaml('{_target_: georax.geo.fusion.Resample, target_grid: [EPSG:32633, [.nan, 0.0, 500000.0, 0.0, -10.0, 4000000.0], [64, 64]]}', **P)",
)
case(
    2,
    "resample_grid_bad_crs",
    "loads_yaml('{_target_: georax.geo.fusion.Resample, target_grid: [\"+proj=lol\", [10.0, 0.0, 500000.0, 0.0, -10.0, 4000000.0], [64, 64]]}', **P)",
)
case(
    2,
    "resample_grid_wkt_huge",
    "loads_yaml(yaml.safe_dump({'_target_': 'georax.geo.fusion.Resample', 'target_grid': ['GEOGCS[' * 5000, [10.0, 0.0, 500000.0, 0.0, -10.0, 4000000.0], [64, 64]]}), **P)",
)
case(
    2,
    "align_grid_65535sq",
    f"loads_yaml('{{_target_: georax.geo.fusion.AlignAndStack, target_grid: {GRID.format(h=65535, w=65535)}}}', **P)",
)
case(
    2,
    "patchwise_8192_hann",
    "loads_yaml('{_target_: georax.patch.operators.Patchwise, patcher: {_target_: georax.patch.patcher.Patcher, geometry: {_target_: georax.patch.geometry.Rectangular, size: [60000, 60000]}, sampler: {_target_: georax.patch.samplers.RegularStride, stride: [60000, 60000]}, window: {_target_: georax.patch.window_ops.Gaussian, sigma: 0.3}, padding: constant}, operator: {_target_: georax.Identity}}', **P)",
)
case(
    2,
    "patcher_margin_huge",
    "loads_yaml('{_target_: georax.patch.operators.Patchwise, patcher: {_target_: georax.patch.patcher.Patcher, geometry: {_target_: georax.patch.geometry.Rectangular, size: [64, 64]}, sampler: {_target_: georax.patch.samplers.RegularStride, stride: [64, 64]}, margin: 30000}, operator: {_target_: georax.Identity}}', **P)",
)
case(
    2,
    "array_leaf_65536_complex",
    "loads_yaml(yaml.safe_dump({'_target_': 'georax.geo.radiometry.Normalize', 'mean': {'_array_': [0.0] * 10, 'dtype': 'complex128', 'shape': [10]}, 'std': 1.0}), **P)",
)
case(
    2,
    "array_leaf_shape_lies",
    "loads_yaml(yaml.safe_dump({'_target_': 'georax.geo.radiometry.Normalize', 'mean': {'_array_': [0.0], 'dtype': 'float32', 'shape': [65536, 65536]}, 'std': 1.0}), **P)",
)
case(
    2,
    "array_leaf_shape_neg",
    "loads_yaml(yaml.safe_dump({'_target_': 'georax.geo.radiometry.Normalize', 'mean': {'_array_': [0.0], 'dtype': 'float32', 'shape': [-1]}, 'std': 1.0}), **P)",
)
case(
    2,
    "array_leaf_dtype_V",
    "loads_yaml(yaml.safe_dump({'_target_': 'georax.geo.radiometry.Normalize', 'mean': {'_array_': [0.0], 'dtype': 'V1000000000', 'shape': [1]}, 'std': 1.0}), **P)",
)
case(
    2,
    "array_leaf_dtype_U",
    "loads_yaml(yaml.safe_dump({'_target_': 'georax.geo.radiometry.Normalize', 'mean': {'_array_': ['a'], 'dtype': '<U1000000000', 'shape': [1]}, 'std': 1.0}), **P)",
)
case(
    2,
    "array_leaf_dtype_struct",
    "loads_yaml(yaml.safe_dump({'_target_': 'georax.geo.radiometry.Normalize', 'mean': {'_array_': [0.0], 'dtype': [['a', 'f4']], 'shape': [1]}, 'std': 1.0}), **P)",
)
case(
    2,
    "retrieval_absorption_big",
    "loads_yaml(yaml.safe_dump({'_target_': 'georax.geo.retrieval.operators.BeerLambert', 'absorption': {'_array_': [0.1] * 60000, 'dtype': 'float32', 'shape': [60000]}}), **P)",
)
case(
    2,
    "tukey_nan",
    "loads_yaml('{_target_: georax.patch.operators.Patchwise, patcher: {_target_: georax.patch.patcher.Patcher, geometry: {_target_: georax.patch.geometry.Rectangular, size: [64, 64]}, sampler: {_target_: georax.patch.samplers.RegularStride, stride: [32, 32]}, window: {_target_: georax.patch.window_ops.Tukey, alpha: .nan}}, operator: {_target_: georax.Identity}}', **P)",
)
case(
    2,
    "gaussian_sigma_zero",
    "loads_yaml('{_target_: georax.patch.operators.Patchwise, patcher: {_target_: georax.patch.patcher.Patcher, geometry: {_target_: georax.patch.geometry.Rectangular, size: [64, 64]}, sampler: {_target_: georax.patch.samplers.RegularStride, stride: [32, 32]}, window: {_target_: georax.patch.window_ops.Gaussian, sigma: 0.0}}, operator: {_target_: georax.Identity}}', **P)",
)

# ------------------------------------------------------------------------------------ cause 3
for t in (
    "georax.Operator",
    "georax.core.operator.Operator",
    "georax.patch.geometry.Geometry",
    "georax.patch.samplers.Sampler",
    "georax.patch.aggregation.Aggregation",
    "georax.patch.window_ops.WindowOp",
    "georax.GeoTensor",
    "georax.tensor.Grid",
    "georax.core.sandbox.Limits",
    "georax.geo.indices.NormalizedDifference",
):
    case(3, f"target_{t}", f"loads_yaml('{{_target_: {t}}}', **P)")
case(
    3,
    "ndvi_band_out_of_range",
    "loads_yaml('{_target_: georax.geo.indices.NDVI, red_band: 5, nir_band: 7}', **P)",
)
case(3, "truecolor_on_1band", "loads_yaml('{_target_: georax.geo.viz.TrueColor}', **P)")
case(
    3,
    "colormap_unknown_name",
    "loads_yaml('{_target_: georax.geo.viz.Colormap, name: notacmap}', **P)",
)
case(
    3,
    "colormap_name_dunder",
    "loads_yaml('{_target_: georax.geo.viz.Colormap, name: __class__}', **P)",
)
case(
    3,
    "spectral_unknown_index",
    "loads_yaml('{_target_: georax.geo.indices.SpectralIndex, index: NOPE_INDEX}', **P)",
)
case(
    3,
    "spectral_band_map_missing",
    "loads_yaml('{_target_: georax.geo.indices.SpectralIndex, index: NDVI, band_map: {N: 0}}', **P)",
)
case(3, "getitem_bad_item", "loads_yaml('{_target_: georax.GetItem, item: [1, 2, 3]}', **P)")
case(3, "getitem_on_array", "loads_yaml('{_target_: georax.GetItem, item: 5}', **P)")
case(3, "stitch_on_array", "loads_yaml('{_target_: georax.patch.operators.Stitch}', **P)")
case(
    3,
    "applytochips_on_array",
    "loads_yaml('{_target_: georax.patch.operators.ApplyToChips, operator: {_target_: georax.Identity}}', **P)",
)
case(
    3,
    "assert_crs_on_array",
    "loads_yaml('{_target_: georax.geo.qa.AssertCRSEquals, crs: EPSG:4326}', **P)",
)
case(3, "align_on_single_array", "loads_yaml('{_target_: georax.geo.fusion.AlignAndStack}', **P)")
case(
    3,
    "methane_default_on_1band",
    "loads_yaml('{_target_: georax.geo.retrieval.operators.MethaneRetrieval}', **P)",
)
case(
    3,
    "bandratio_bad_bands",
    "loads_yaml('{_target_: georax.geo.retrieval.operators.BandRatio, swir1_band: 9, swir2_band: 10}', **P)",
)
case(
    3,
    "toa_band_oob",
    "loads_yaml('{_target_: georax.geo.radiometry.TOAToBOA, sun_zenith_band: 50}', **P)",
)
for _name in sorted(gx.registry.public_operators(include_modules=["georax"])):
    case(
        3,
        f"sweep_{_name.rsplit('.', 1)[-1]}_{abs(hash(_name)) % 1000}",
        f"""
bad = []
for spec in [(0,), (3,), (1, 0, 0), (2, 3, 4, 5, 6), (1, 1, 1)]:
    try:
        loads_yaml('{{_target_: {_name}}}', allowed=A, input_spec=spec, memory_budget='64MiB', flop_budget=1e9)
    except gx.errors.GeoraxError as e:
        if isinstance(e, gx.errors.LoaderError):
            bad.append((spec, str(e)[:200]))
    except BaseException as e:
        bad.append((spec, repr(e)[:200]))
assert not bad, bad
""",
    )


# ------------------------------------------------------------------------------------ cause 4
case(
    4,
    "load_symlink_loop",
    "(T/'d').mkdir(); (T/'d'/'pipeline.yaml').symlink_to(T/'d'/'pipeline.yaml')\ngx.load(T/'d')",
)
case(4, "load_yaml_is_dir", "(T/'d'/'pipeline.yaml').mkdir(parents=True)\ngx.load(T/'d')")
case(
    4,
    "load_socket",
    "import socket\n(T/'d').mkdir(); s = socket.socket(socket.AF_UNIX); s.bind(str(T/'d'/'pipeline.yaml'))\ngx.load(T/'d')",
)
case(
    4,
    "load_proc_file",
    "(T/'d').mkdir(); (T/'d'/'pipeline.yaml').symlink_to('/proc/self/status')\ngx.load(T/'d')",
)
case(4, "load_missing", "gx.load(T/'nothing')")
case(
    4,
    "load_params_fifo",
    "s = gx.save(gx.Sequential([gx.geo.radiometry.Normalize(mean=jnp.arange(300.), std=jnp.ones(300))]), T/'s')\ns.params_path.unlink(); os.mkfifo(s.params_path)\ngx.load(T/'s')",
)
case(
    4,
    "load_params_is_dir",
    "s = gx.save(gx.Sequential([gx.geo.radiometry.Normalize(mean=jnp.arange(300.), std=jnp.ones(300))]), T/'s')\ns.params_path.unlink(); s.params_path.mkdir()\ngx.load(T/'s')",
)
case(
    4,
    "load_params_name_traversal",
    "s = gx.save(gx.Sequential([gx.geo.radiometry.Normalize(mean=jnp.arange(300.), std=jnp.ones(300))]), T/'s')\nd = yaml.safe_load(s.yaml_path.read_text()); d['params']['file'] = '../params-0000000000000000.eqx'; s.yaml_path.write_text(yaml.safe_dump(d))\ngx.load(T/'s')",
)
case(
    4,
    "hash_cli_fifo",
    "os.mkfifo(T/'p.yaml')\nrc, err = run_cli('hash', str(T/'p.yaml'))\nassert rc != 0 and 'regular' in err, (rc, err)",
)
case(
    4,
    "validate_cli_devzero",
    "(T/'p.yaml').symlink_to('/dev/zero')\nrc, err = run_cli('validate', str(T/'p.yaml'))\nassert rc != 0, (rc, err)",
)
case(
    4,
    "diff_cli_fifo",
    "os.mkfifo(T/'a.yaml'); (T/'b.yaml').write_text('{_target_: georax.Identity}')\nrc, err = run_cli('diff', str(T/'a.yaml'), str(T/'b.yaml'))\nassert rc != 0, (rc, err)",
)
case(
    4,
    "diff_cli_devzero",
    "(T/'a.yaml').symlink_to('/dev/zero'); (T/'b.yaml').write_text('{_target_: georax.Identity}')\nrc, err = run_cli('diff', str(T/'b.yaml'), str(T/'a.yaml'))\nassert rc != 0, (rc, err)",
)
case(
    4,
    "verify_cli_fifo",
    "os.mkfifo(T/'a.tar.gz')\nrc, err = run_cli('verify', str(T/'a.tar.gz'))\nassert rc != 0, (rc, err)",
)
case(
    4,
    "verify_cli_devzero",
    "(T/'a.tar').symlink_to('/dev/zero')\nrc, err = run_cli('verify', str(T/'a.tar'))\nassert rc != 0, (rc, err)",
)
case(
    4,
    "freeze_deps_lock_devzero",
    "(T/'p.yaml').write_text('{_target_: georax.Identity}')\nrc, err = run_cli('freeze', str(T/'p.yaml'), '-o', str(T/'a.tar.gz'), '--deps-lock', '/dev/zero')\nassert rc != 0, (rc, err)",
)
case(
    4,
    "freeze_deps_lock_fifo",
    "os.mkfifo(T/'lock'); (T/'p.yaml').write_text('{_target_: georax.Identity}')\nrc, err = run_cli('freeze', str(T/'p.yaml'), '-o', str(T/'a.tar.gz'), '--deps-lock', str(T/'lock'))\nassert rc != 0, (rc, err)",
)
case(4, "freeze_input_devzero", "gx.repro.freeze(gx.Identity(), {'x': '/dev/zero'})")
case(
    4,
    "freeze_input_fifo_npy",
    "os.mkfifo(T/'x.npy')\ngx.repro.freeze(gx.Identity(), {'x': str(T/'x.npy')})",
)
case(4, "repro_load_devzero", "gx.repro.load('/dev/zero')")
case(
    4,
    "run_cli_fifo_pipeline",
    "os.mkfifo(T/'p.yaml'); (T/'c.parquet').write_text('x')\nrc, err = run_cli('run', str(T/'p.yaml'), str(T/'c.parquet'), '--out', str(T/'o'))\nassert rc != 0, (rc, err)",
)
case(4, "catalog_fifo", "os.mkfifo(T/'c.parquet')\ngx.catalog.open_catalog(str(T/'c.parquet'))")
case(
    4,
    "catalog_devzero_json",
    "(T/'c.json').symlink_to('/dev/zero')\nf = gx.catalog.open_catalog\nf(str(T/'c.json'))",
)
case(4, "io_info_devzero", "gx.io.info('/dev/zero')")
case(
    4,
    "io_read_vrt_to_devzero",
    """
vrt = '''<VRTDataset rasterXSize="100" rasterYSize="100"><VRTRasterBand dataType="Byte" band="1"><SimpleSource><SourceFilename relativeToVRT="0">/vsigzip//dev/zero</SourceFilename><SourceBand>1</SourceBand></SimpleSource></VRTRasterBand></VRTDataset>'''
(T/'a.vrt').write_text(vrt)
gx.io.read(str(T/'a.vrt'))
""",
)
case(
    4,
    "io_read_vrt_rawraster_fifo",
    """
os.mkfifo(T/'raw.bin')
vrt = f'''<VRTDataset rasterXSize="100" rasterYSize="100"><VRTRasterBand dataType="Byte" band="1" subClass="VRTRawRasterBand"><SourceFilename relativetoVRT="0">{T}/raw.bin</SourceFilename><ImageOffset>0</ImageOffset><PixelOffset>1</PixelOffset><LineOffset>100</LineOffset></VRTRasterBand></VRTDataset>'''
(T/'a.vrt').write_text(vrt)
gx.io.read(str(T/'a.vrt'))
""",
)
case(
    4,
    "io_read_vrt_rawraster_devzero",
    """
vrt = '''<VRTDataset rasterXSize="100" rasterYSize="100"><VRTRasterBand dataType="Byte" band="1" subClass="VRTRawRasterBand"><SourceFilename relativetoVRT="0">/dev/zero</SourceFilename><ImageOffset>0</ImageOffset><PixelOffset>1</PixelOffset><LineOffset>100</LineOffset></VRTRasterBand></VRTDataset>'''
(T/'a.vrt').write_text(vrt)
out = gx.io.read(str(T/'a.vrt'))
""",
)

case(
    4,
    "io_read_vrt_simplesource_fifo",
    """
os.mkfifo(T/'src.tif')
vrt = f'''<VRTDataset rasterXSize="100" rasterYSize="100"><VRTRasterBand dataType="Byte" band="1"><SimpleSource><SourceFilename relativeToVRT="0">{T}/src.tif</SourceFilename><SourceBand>1</SourceBand></SimpleSource></VRTRasterBand></VRTDataset>'''
(T/'a.vrt').write_text(vrt)
gx.io.read(str(T/'a.vrt'))
""",
)
case(
    4,
    "io_read_vrt_simplesource_devzero_big",
    """
vrt = '''<VRTDataset rasterXSize="100" rasterYSize="100"><VRTRasterBand dataType="Byte" band="1"><SimpleSource><SourceFilename relativeToVRT="0">/dev/zero</SourceFilename><SourceBand>1</SourceBand></SimpleSource></VRTRasterBand></VRTDataset>'''
(T/'a.vrt').write_text(vrt)
gx.io.read(str(T/'a.vrt'))
""",
)

# ------------------------------------------------------------------------------------ cause 5
case(
    5,
    "bomb_lzw_int16_4band",
    """
p = T/'b.tif'
with rasterio.open(p, 'w', driver='GTiff', count=4, height=60000, width=60000, dtype='int16', tiled=True, compress='lzw', sparse_ok=True, crs='EPSG:32633', transform=from_origin(0, 0, 1, 1)) as d:
    pass
gx.io.read(str(p))
""",
)
case(
    5,
    "bomb_band_list_repeat",
    """
p = tif(T/'s.tif', np.ones((1, 4000, 4000), np.uint8))
gx.io.read(p, bands=[0] * 300, max_bytes='256MiB')
""",
)
case(
    5,
    "bomb_dtype_upcast",
    """
p = tif(T/'s.tif', np.ones((1, 6000, 6000), np.uint8))
gx.io.read(p, dtype='complex128', max_bytes='100MiB')
""",
)
case(
    5,
    "bomb_65535_bands",
    """
p = T/'b.tif'
with rasterio.open(p, 'w', driver='GTiff', count=65535, height=1, width=1, dtype='uint8', crs='EPSG:32633', transform=from_origin(0, 0, 1, 1)) as d:
    pass
gx.io.info(str(p)); gx.io.read(str(p))
""",
)
case(
    5,
    "bomb_bounds_in_latlon",
    """
p = tif(T/'s.tif', np.ones((1, 8, 8), np.uint8))
gx.io.read(p, bounds=(-179.0, -80.0, 179.0, 80.0), bounds_crs='EPSG:4326', boundless=True)
""",
)
case(
    5,
    "bomb_window_float",
    """
p = tif(T/'s.tif', np.ones((1, 8, 8), np.uint8))
gx.io.read(p, window=((0, 1e9), (0, 1e9)), boundless=True)
""",
)
case(
    5,
    "bomb_iter_blocks_shape",
    """
p = tif(T/'s.tif', np.ones((1, 8, 8), np.uint8))
list(gx.io.iter_blocks(p, block_shape=(10**9, 10**9)))
""",
)
case(
    5,
    "bomb_xarray",
    """
p = T/'b.tif'
with rasterio.open(p, 'w', driver='GTiff', count=1, height=100000, width=100000, dtype='float64', tiled=True, compress='deflate', sparse_ok=True, crs='EPSG:32633', transform=from_origin(0, 0, 1, 1)) as d:
    pass
da = gx.io.to_xarray(str(p)) if 'str' in str(gx.io.to_xarray.__annotations__) else None
""",
)
case(
    5,
    "bomb_repro_freeze_input",
    """
p = T/'b.tif'
with rasterio.open(p, 'w', driver='GTiff', count=1, height=100000, width=100000, dtype='float32', tiled=True, compress='deflate', sparse_ok=True, crs='EPSG:32633', transform=from_origin(0, 0, 1, 1)) as d:
    pass
gx.repro.freeze(gx.Identity(), {'x': str(p)})
""",
)
case(
    5,
    "bomb_npy_header",
    """
hdr = {'descr': '<f4', 'fortran_order': False, 'shape': (60000, 60000)}
with open(T/'x.npy', 'wb') as f:
    np.lib.format.write_array_header_1_0(f, hdr)
gx.repro.freeze(gx.Identity(), {'x': str(T/'x.npy')})
""",
)
case(
    5,
    "bomb_npy_sparse_full",
    """
hdr = {'descr': '<f4', 'fortran_order': False, 'shape': (40000, 40000)}
with open(T/'x.npy', 'wb') as f:
    np.lib.format.write_array_header_1_0(f, hdr); f.truncate(f.tell() + 4 * 40000 * 40000)
gx.repro.freeze(gx.Identity(), {'x': str(T/'x.npy')})
""",
)
case(
    5,
    "truncated_tif",
    """
p = tif(T/'s.tif', np.random.rand(1, 256, 256).astype('float32'), tiled=True, compress='deflate')
data = Path(p).read_bytes(); Path(p).write_bytes(data[: len(data) // 2])
gx.io.read(p)
""",
)
case(5, "zero_size_tif", "(T/'z.tif').write_bytes(b'')\ngx.io.read(str(T/'z.tif'))")
case(
    5,
    "garbage_tif",
    "(T/'z.tif').write_bytes(b'II*\\x00' + os.urandom(4000))\ngx.io.read(str(T/'z.tif'))",
)
case(
    5,
    "nan_transform_tif",
    """
from affine import Affine
p = tif(T/'s.tif', np.ones((1, 8, 8), np.float32), transform=Affine(float('nan'), 0, 0, 0, -1, 0))
out = gx.io.read(p)
jax.jit(gx.geo.fusion.Resample(target_grid=('EPSG:32633', (10.0, 0.0, 500000.0, 0.0, -10.0, 4000000.0), (8, 8))))(out)
""",
)
case(
    5,
    "no_crs_tif_resample",
    """
p = tif(T/'s.tif', np.ones((1, 8, 8), np.float32), crs=None)
out = gx.io.read(p, expect_crs='EPSG:32633')
""",
)

# ------------------------------------------------------------------------------------ cause 6
SAVE_RT = """
op = {op}
s = gx.save(op, T/'s')
back = gx.load(T/'s')
import equinox as eqx
assert bool(eqx.tree_equal(back, op)), 'round trip differs'
"""
for name, op in {
    "truecolor_gamma_arr": "gx.Sequential([gx.geo.viz.TrueColor(gamma=2.2)] * 1)",
    "colormap": "gx.geo.viz.Colormap(vmin=-1.0, vmax=1.0)",
    "percentileclip": "gx.geo.radiometry.PercentileClip(pmin=2.0, pmax=98.0)",
    "assert_range": "gx.array.qc.AssertValueRange(vmin=0.0, vmax=1.0)",
    "beer_lambert_big": "gx.geo.retrieval.operators.BeerLambert(absorption=jnp.linspace(0.1, 1.0, 500))",
    "matched_filter": "gx.geo.retrieval.operators.MatchedFilter(absorption=jnp.linspace(0.1, 1.0, 500))",
    "methane_retrieval": "gx.geo.retrieval.operators.MethaneRetrieval()",
    "graph_normalize": "(lambda x: gx.Graph(inputs={'x': x}, outputs={'y': gx.geo.radiometry.Normalize(mean=jnp.arange(300.), std=jnp.arange(1., 301.))(x)}))(gx.Input('x'))",
    "patchwise_normalize": "gx.patch.operators.Patchwise(patcher=gx.patch.patcher.Patcher(geometry=gx.patch.geometry.Rectangular(size=(8, 8)), sampler=gx.patch.samplers.RegularStride(stride=(8, 8))), operator=gx.geo.radiometry.Normalize(mean=jnp.arange(300.), std=jnp.arange(1., 301.)))",
    "normalize_f16": "gx.geo.radiometry.Normalize(mean=jnp.arange(300.).astype(jnp.float16), std=jnp.arange(1., 301.).astype(jnp.float16))",
    "scaleoffset_int": "gx.geo.radiometry.ScaleOffset(scale=jnp.arange(1, 301), offset=jnp.zeros(300, jnp.int32))",
}.items():
    case(6, f"roundtrip_{name}", SAVE_RT.format(op=op))
TAMPER = """
op = gx.Sequential([gx.geo.radiometry.Normalize(mean=jnp.arange(300.), std=jnp.arange(1., 301.))])
s = gx.save(op, T/'s')
blob = s.params_path.read_bytes()
{edit}
import hashlib
d = yaml.safe_load(s.yaml_path.read_text()); d['params']['sha256'] = hashlib.sha256(blob).hexdigest(); d['params']['bytes'] = len(blob)
s.yaml_path.write_text(yaml.safe_dump(d)); s.params_path.write_bytes(blob)
gx.load(T/'s')
"""
case(
    6,
    "params_header_shape_huge",
    TAMPER.format(
        edit="blob = blob.replace(b\"'shape': (300,)\", b\"'shape': (900000000,)\", 1); assert b'900000000' in blob"
    ),
)
case(
    6,
    "params_header_shape_2d",
    TAMPER.format(
        edit="blob = blob.replace(b\"'shape': (300,)\", b\"'shape': (30000,30000)\", 1); assert b'30000,30000' in blob"
    ),
)
case(
    6,
    "params_header_dtype_object",
    TAMPER.format(
        edit="blob = blob.replace(b\"'descr': '<f4'\", b\"'descr': '|O'\", 1); assert b'|O' in blob"
    ),
)
case(
    6,
    "params_header_dtype_f8",
    TAMPER.format(
        edit="blob = blob.replace(b\"'descr': '<f4'\", b\"'descr': '<f8'\", 1); assert b'<f8' in blob"
    ),
)
case(
    6,
    "params_header_garbage",
    TAMPER.format(
        edit='i = blob.index(b"{\'descr\'"); blob = blob[:i] + b\'__import__("os").system("touch PWNED")\' + blob[i + 40:]'
    ),
)
case(
    6,
    "params_negative_std_recomputed",
    """
import equinox as eqx
op = gx.Sequential([gx.geo.radiometry.Normalize(mean=jnp.arange(300.), std=jnp.arange(1., 301.))])
bad = eqx.tree_at(lambda o: o.operators[0].std, op, -jnp.ones(300))
s = gx.save(bad, T/'s')
gx.load(T/'s')
""",
)
case(
    6,
    "params_nan_gamma",
    """
import equinox as eqx
op = gx.geo.viz.TrueColor()
bad = eqx.tree_at(lambda o: o.gamma, op, jnp.asarray(float('nan')))
s = gx.save(bad, T/'s')
gx.load(T/'s')
""",
)
case(6, "params_truncated_file", TAMPER.format(edit="blob = blob[:-100]"))
case(6, "params_trailing", TAMPER.format(edit="blob = blob + b'x' * 10"))

# ------------------------------------------------------------------------------------ cause 7
for name, doc in {
    "normalize_std_zero": "{_target_: georax.geo.radiometry.Normalize, mean: 0.0, std: 0.0}",
    "normalize_std_inf": "{_target_: georax.geo.radiometry.Normalize, mean: 0.0, std: .inf}",
    "normalize_mean_nan": "{_target_: georax.geo.radiometry.Normalize, mean: .nan, std: 1.0}",
    "truecolor_gamma_inf": "{_target_: georax.geo.viz.TrueColor, gamma: .inf}",
    "truecolor_pmin_gt_pmax": "{_target_: georax.geo.viz.TrueColor, pmin: 90.0, pmax: 10.0}",
    "truecolor_pmax_200": "{_target_: georax.geo.viz.TrueColor, pmin: 1.0, pmax: 200.0}",
    "truecolor_vmin_gt_vmax": "{_target_: georax.geo.viz.TrueColor, vmin: 1.0, vmax: 0.0}",
    "colormap_vmin_nan": "{_target_: georax.geo.viz.Colormap, vmin: .nan, vmax: 1.0}",
    "colormap_vmin_gt_vmax": "{_target_: georax.geo.viz.Colormap, vmin: 2.0, vmax: 1.0}",
    "colormap_nan_rgba_5": "{_target_: georax.geo.viz.Colormap, nan_rgba: [0, 0, 0, 0, 0]}",
    "colormap_nan_rgba_300": "{_target_: georax.geo.viz.Colormap, nan_rgba: [300, 0, 0, 0]}",
    "pclip_pmin_nan": "{_target_: georax.geo.radiometry.PercentileClip, pmin: .nan, pmax: 98.0}",
    "pclip_reversed": "{_target_: georax.geo.radiometry.PercentileClip, pmin: 99.0, pmax: 1.0}",
    "pclip_negative": "{_target_: georax.geo.radiometry.PercentileClip, pmin: -5.0, pmax: 50.0}",
    "dos_percentile_nan": "{_target_: georax.geo.radiometry.DarkObjectSubtraction, percentile: .nan}",
    "dos_percentile_150": "{_target_: georax.geo.radiometry.DarkObjectSubtraction, percentile: 150.0}",
    "range_reversed": "{_target_: georax.array.qc.AssertValueRange, vmin: 1.0, vmax: 0.0}",
    "range_nan": "{_target_: georax.array.qc.AssertValueRange, vmin: .nan, vmax: 1.0}",
    "valid_fraction_2": "{_target_: georax.array.qc.AssertValidFraction, min_valid: 2.0}",
    "valid_fraction_nan": "{_target_: georax.array.qc.AssertValidFraction, min_valid: .nan}",
    "flip_p_nan": "{_target_: georax.geo.augment.RandomFlip, p: .nan}",
    "flip_p_2": "{_target_: georax.geo.augment.RandomFlip, p: 2.0}",
    "flip_axes_bad": "{_target_: georax.geo.augment.RandomFlip, axes: [z]}",
    "rot90_ks_empty": "{_target_: georax.geo.augment.RandomRotate90, ks: []}",
    "rot90_ks_big": "{_target_: georax.geo.augment.RandomRotate90, ks: [5000000000]}",
    "lee_looks_zero": "{_target_: georax.geo.sar.LeeSpeckle, window_size: 5, looks: 0.0}",
    "lee_looks_nan": "{_target_: georax.geo.sar.LeeSpeckle, window_size: 5, looks: .nan}",
    "lee_even_window": "{_target_: georax.geo.sar.LeeSpeckle, window_size: 4}",
    "lee_window_zero": "{_target_: georax.geo.sar.LeeSpeckle, window_size: 0}",
    "lee_padding_bad": "{_target_: georax.geo.sar.LeeSpeckle, window_size: 5, padding: wrap_around}",
    "todb_floor_nan": "{_target_: georax.geo.sar.LinearToDB, floor_db: .nan}",
    "dn_scale_nan": "{_target_: georax.geo.radiometry.DNToReflectance, scale: .nan}",
    "toa_zenith_nan": "{_target_: georax.geo.radiometry.TOAToBOA, sun_zenith: .nan}",
    "toa_zenith_95deg": "{_target_: georax.geo.radiometry.TOAToBOA, sun_zenith: 95.0}",
    "savi_l_nan": "{_target_: georax.geo.indices.SAVI, l: .nan}",
    "matched_shrink_nan": "{_target_: georax.geo.retrieval.operators.MatchedFilter, shrinkage: .nan}",
    "matched_shrink_neg": "{_target_: georax.geo.retrieval.operators.MatchedFilter, shrinkage: -1.0}",
    "methane_lr_nan": "{_target_: georax.geo.retrieval.operators.MethaneRetrieval, learning_rate: .nan}",
    "methane_noise_zero": "{_target_: georax.geo.retrieval.operators.MethaneRetrieval, noise_std: 0.0}",
    "beer_amf_neg": "{_target_: georax.geo.retrieval.operators.BeerLambert, air_mass_factor: -1.0}",
    "maskbits_64": "{_target_: georax.geo.cloud.MaskFromQABits, qa_band: 0, bits: [64]}",
    "maskbits_neg": "{_target_: georax.geo.cloud.MaskFromQABits, qa_band: 0, bits: [-1]}",
    "maskbits_empty": "{_target_: georax.geo.cloud.MaskFromQABits, qa_band: 0, bits: []}",
    "dilate_neg": "{_target_: georax.geo.cloud.MaskFromQABits, qa_band: 0, bits: [3], dilate: -3}",
    "assert_shape_neg": "{_target_: georax.array.qc.AssertShape, shape: [-1, -5]}",
    "assert_dtype_bad": "{_target_: georax.array.qc.AssertDType, dtype: notadtype}",
    "on_fail_bad": "{_target_: georax.array.qc.AssertNoNaN, on_fail: explode}",
    "stride_zero": "{_target_: georax.patch.operators.GridSampler, patcher: {_target_: georax.patch.patcher.Patcher, geometry: {_target_: georax.patch.geometry.Rectangular, size: [8, 8]}, sampler: {_target_: georax.patch.samplers.RegularStride, stride: [0, 0]}}}",
    "size_zero": "{_target_: georax.patch.operators.GridSampler, patcher: {_target_: georax.patch.patcher.Patcher, geometry: {_target_: georax.patch.geometry.Rectangular, size: [0, 8]}, sampler: {_target_: georax.patch.samplers.RegularStride, stride: [8, 8]}}}",
    "batch_size_zero": "{_target_: georax.patch.operators.Patchwise, patcher: {_target_: georax.patch.patcher.Patcher, geometry: {_target_: georax.patch.geometry.Rectangular, size: [8, 8]}, sampler: {_target_: georax.patch.samplers.RegularStride, stride: [8, 8]}}, operator: {_target_: georax.Identity}, batch_size: 0}",
    "explicit_points_negative": "{_target_: georax.patch.operators.GridSampler, patcher: {_target_: georax.patch.patcher.Patcher, geometry: {_target_: georax.patch.geometry.Rectangular, size: [8, 8]}, sampler: {_target_: georax.patch.samplers.ExplicitPositions, points: [[-100, -100]]}}}",
    "explicit_points_float": "{_target_: georax.patch.operators.GridSampler, patcher: {_target_: georax.patch.patcher.Patcher, geometry: {_target_: georax.patch.geometry.Rectangular, size: [8, 8]}, sampler: {_target_: georax.patch.samplers.ExplicitPositions, points: [[1.5, .nan]]}}}",
    "explicit_points_empty": "{_target_: georax.patch.operators.GridSampler, patcher: {_target_: georax.patch.patcher.Patcher, geometry: {_target_: georax.patch.geometry.Rectangular, size: [8, 8]}, sampler: {_target_: georax.patch.samplers.ExplicitPositions, points: []}}}",
    "random_positions_zero": "{_target_: georax.patch.operators.GridSampler, patcher: {_target_: georax.patch.patcher.Patcher, geometry: {_target_: georax.patch.geometry.Rectangular, size: [8, 8]}, sampler: {_target_: georax.patch.samplers.RandomPositions, n: 0}}}",
    "graph_neg_operator_index": "{_target_: georax.Graph, inputs: [a], outputs: {y: 0}, operators: [{_target_: georax.Identity}], nodes: [[-1, [a], []]]}",
    "graph_neg_node_ref": "{_target_: georax.Graph, inputs: [a], outputs: {y: 1}, operators: [{_target_: georax.Identity}], nodes: [[0, [a], []], [0, [-1], []]]}",
    "graph_neg_output": "{_target_: georax.Graph, inputs: [a], outputs: {y: -1}, operators: [{_target_: georax.Identity}], nodes: [[0, [a], []]]}",
    "graph_empty_input_name": "{_target_: georax.Graph, inputs: [''], outputs: {y: 0}, operators: [{_target_: georax.Identity}], nodes: [[0, [''], []]]}",
    "graph_no_inputs": "{_target_: georax.Graph, inputs: [], outputs: {y: 0}, operators: [{_target_: georax.Identity}], nodes: [[0, [], []]]}",
    "graph_unused_operator": "{_target_: georax.Graph, inputs: [a], outputs: {y: 0}, operators: [{_target_: georax.Identity}, {_target_: georax.geo.sar.LeeSpeckle, window_size: 65535}], nodes: [[0, [a], []]]}",
    "graph_kwarg_name_dunder": "{_target_: georax.Graph, inputs: [a], outputs: {y: 0}, operators: [{_target_: georax.Identity}], nodes: [[0, [], [[__class__, a]]]]}",
    "graph_kwarg_key": "{_target_: georax.Graph, inputs: [a], outputs: {y: 0}, operators: [{_target_: georax.Identity}], nodes: [[0, [a], [[key, a]]]]}",
    "spectral_constant_nan": "{_target_: georax.geo.indices.SpectralIndex, index: NDVI, band_map: {N: 0, R: 0}, constants: {g: .nan}}",
    "huge_int_band": "{_target_: georax.geo.indices.NDVI, red_band: 99999999999999999999999, nir_band: 0}",
    "huge_float_gain": "{_target_: georax.geo.radiometry.ScaleOffset, scale: 1.0e400, offset: 0.0}",
    "unicode_target": '{_target_: "georax.geo.indices.NDV\u0130"}',
    "unicode_field": '{_target_: georax.geo.indices.NDVI, "red_band\u200b": 0}',
}.items():
    case(7, name, f"loads_yaml({doc!r}, **P4)")

# operators on odd arrays (eager, Python API)
ODD = {
    "empty": "jnp.zeros((0, 8, 8))",
    "oneD": "jnp.ones((16,))",
    "complex": "jnp.ones((4, 8, 8), jnp.complex64)",
    "bool": "jnp.ones((4, 8, 8), bool)",
    "int": "jnp.ones((4, 8, 8), jnp.int32)",
    "nan": "jnp.full((4, 8, 8), jnp.nan)",
    "zero_hw": "jnp.zeros((4, 0, 0))",
}
OPS = {
    "NDVI": "gx.geo.indices.NDVI(red_band=0, nir_band=1)",
    "Lee": "gx.geo.sar.LeeSpeckle(window_size=3)",
    "PClip": "gx.geo.radiometry.PercentileClip(pmin=2.0, pmax=98.0)",
    "DOS": "gx.geo.radiometry.DarkObjectSubtraction()",
    "TrueColor": "gx.geo.viz.TrueColor(rgb_bands=(0, 1, 2))",
    "Colormap": "gx.geo.viz.Colormap()",
    "MaskClouds": "gx.geo.cloud.MaskClouds(qa_band=0, bits=(3,))",
    "Normalize": "gx.geo.radiometry.Normalize(mean=0.0, std=1.0)",
    "ToDB": "gx.geo.sar.LinearToDB()",
    "Patchwise": "gx.patch.operators.Patchwise(patcher=gx.patch.patcher.Patcher(geometry=gx.patch.geometry.Rectangular(size=(4, 4)), sampler=gx.patch.samplers.RegularStride(stride=(4, 4))), operator=gx.Identity())",
    "GridSampler": "gx.patch.operators.GridSampler(patcher=gx.patch.patcher.Patcher(geometry=gx.patch.geometry.Rectangular(size=(4, 4)), sampler=gx.patch.samplers.RegularStride(stride=(4, 4))))",
    "MatchedFilter": "gx.geo.retrieval.operators.MatchedFilter(absorption=jnp.ones(4))",
    "NoNaN": "gx.array.qc.AssertNoNaN()",
    "ValidFrac": "gx.array.qc.AssertValidFraction(min_valid=0.5)",
    "Flip": "gx.geo.augment.RandomFlip()",
    "Crop": "gx.geo.augment.RandomCrop(size=(4, 4))",
}
for oname, op in OPS.items():
    for aname, arr in ODD.items():
        case(
            9,
            f"op_{oname}_{aname}",
            f"""
op = {op}
x = {arr}
out = op(x, key=jax.random.key(0))
for leaf in jax.tree_util.tree_leaves(out):
    assert not jnp.issubdtype(leaf.dtype, jnp.complexfloating) or jnp.issubdtype(x.dtype, jnp.complexfloating)
""",
        )
case(9, "crop_no_key", "gx.geo.augment.RandomCrop(size=(4, 4))(jnp.ones((1, 8, 8)))")
case(
    9,
    "resample_raw_array",
    "gx.geo.fusion.Resample(target_grid=('EPSG:32633', (10.0, 0.0, 500000.0, 0.0, -10.0, 4000000.0), (8, 8)))(jnp.ones((1, 8, 8)))",
)
case(
    9,
    "resample_off_zone",
    "gx.geo.fusion.Resample(target_grid=('EPSG:32633', (10.0, 0.0, 500000.0, 0.0, -10.0, 4000000.0), (8, 8)))(gt(jnp.ones((1, 8, 8)), crs='EPSG:3031', transform=(10.0, 0.0, 0.0, 0.0, -10.0, 0.0)))",
)
case(
    9,
    "align_disjoint",
    "gx.geo.fusion.AlignAndStack()(gt(jnp.ones((1, 8, 8))), gt(jnp.ones((1, 8, 8)), transform=(10.0, 0.0, 0.0, 0.0, -10.0, 0.0)))",
)
case(
    9,
    "align_mismatched_crs_junk",
    "gx.geo.fusion.AlignAndStack()(gt(jnp.ones((1, 8, 8))), gt(jnp.ones((1, 8, 8)), crs='EPSG:4326'))",
)
case(
    9,
    "geotensor_nan_transform",
    "gt(jnp.ones((1, 4, 4)), transform=(float('nan'), 0.0, 0.0, 0.0, -1.0, 0.0))",
)
case(9, "geotensor_bad_crs", "gt(jnp.ones((1, 4, 4)), crs='EPSG:999999')")
case(9, "geotensor_band_names_wrong", "gt(jnp.ones((2, 4, 4)), band_names=('a',))")
case(9, "write_geotensor_0band", "gx.io.write(gt(jnp.ones((0, 4, 4))), str(T/'o.tif'))")
case(9, "write_geotensor_1d", "gx.io.write(gt(jnp.ones((4,))), str(T/'o.tif'))")
case(
    9,
    "write_bool",
    "gx.io.write(gt(jnp.ones((1, 4, 4), bool)), str(T/'o.tif')); assert gx.io.read(str(T/'o.tif')).values.sum() == 16",
)
case(9, "write_f16", "gx.io.write(gt(jnp.ones((1, 4, 4), jnp.float16)), str(T/'o.tif'))")
case(9, "write_blocksize_7", "gx.io.write(gt(jnp.ones((1, 40, 40))), str(T/'o.tif'), blocksize=7)")
case(9, "write_blocksize_0", "gx.io.write(gt(jnp.ones((1, 40, 40))), str(T/'o.tif'), blocksize=0)")
case(
    9,
    "write_overviews_zero",
    "gx.io.write(gt(jnp.ones((1, 40, 40))), str(T/'o.tif'), overviews=[0])",
)
case(
    9,
    "write_overviews_huge",
    "gx.io.write(gt(jnp.ones((1, 1, 1))), str(T/'o.tif'), overviews=[2**30])",
)
case(
    9, "write_compress_bad", "gx.io.write(gt(jnp.ones((1, 4, 4))), str(T/'o.tif'), compress='nope')"
)
case(
    9,
    "write_creation_opt_bad",
    "gx.io.write(gt(jnp.ones((1, 4, 4))), str(T/'o.tif'), BLOCKXSIZE='abc')",
)
case(9, "write_nul_path", "gx.io.write(gt(jnp.ones((1, 4, 4))), str(T) + '/o\\x00.tif')")
case(9, "write_long_path", "gx.io.write(gt(jnp.ones((1, 4, 4))), str(T/('a' * 300 + '.tif')))")
case(
    9,
    "write_into_file_as_dir",
    "(T/'f').write_text('x'); gx.io.write(gt(jnp.ones((1, 4, 4))), str(T/'f'/'o.tif'))",
)
case(
    9,
    "write_cog_1x1",
    "gx.io.write_cog(gt(jnp.ones((1, 1, 1))), str(T/'o.tif')); assert gx.io.read(str(T/'o.tif')).shape == (1, 1, 1)",
)
case(9, "write_cog_0x0", "gx.io.write_cog(gt(jnp.ones((1, 0, 0))), str(T/'o.tif'))")
case(
    9,
    "write_cog_overviews_bad",
    "gx.io.write_cog(gt(jnp.ones((1, 8, 8))), str(T/'o.tif'), overviews='SOME')",
)
case(
    9,
    "write_nan_transform",
    "gx.io.write(gx.GeoTensor(jnp.ones((1, 4, 4)), (float('nan'), 0.0, 0.0, 0.0, -1.0, 0.0), 'EPSG:32633'), str(T/'o.tif'))",
)
case(
    9,
    "write_fill_value_nan_int",
    "gx.io.write(gt(jnp.ones((1, 4, 4), jnp.uint8)), str(T/'o.tif'), fill_value=float('nan'))",
)
case(
    9,
    "write_fill_value_300_uint8",
    "gx.io.write(gt(jnp.ones((1, 4, 4), jnp.uint8)), str(T/'o.tif'), fill_value=300)",
)
case(
    9,
    "write_symlink_loop",
    "(T/'o.tif').symlink_to(T/'o.tif'); gx.io.write(gt(jnp.ones((1, 4, 4))), str(T/'o.tif'))",
)
case(
    9,
    "write_readonly_dir",
    "(T/'ro').mkdir(); os.chmod(T/'ro', 0o500)\ntry:\n    gx.io.write(gt(jnp.ones((1, 4, 4))), str(T/'ro'/'o.tif'))\nfinally:\n    os.chmod(T/'ro', 0o700)",
)
case(
    9, "read_bands_zero", "p = tif(T/'s.tif', np.ones((2, 4, 4), np.uint8)); gx.io.read(p, bands=0)"
)
case(
    9,
    "read_bands_empty",
    "p = tif(T/'s.tif', np.ones((2, 4, 4), np.uint8)); gx.io.read(p, bands=[])",
)
case(
    9,
    "read_bands_float",
    "p = tif(T/'s.tif', np.ones((2, 4, 4), np.uint8)); gx.io.read(p, bands=1.5)",
)
case(
    9,
    "read_bands_bool",
    "p = tif(T/'s.tif', np.ones((2, 4, 4), np.uint8)); gx.io.read(p, bands=True)",
)
case(
    9,
    "read_window_strings",
    "p = tif(T/'s.tif', np.ones((2, 4, 4), np.uint8)); gx.io.read(p, window=(('a', 'b'), ('c', 'd')))",
)
case(
    9,
    "read_window_zero",
    "p = tif(T/'s.tif', np.ones((2, 4, 4), np.uint8)); gx.io.read(p, window=((0, 0), (0, 0)))",
)
case(
    9,
    "read_expect_crs_junk",
    "p = tif(T/'s.tif', np.ones((2, 4, 4), np.uint8)); gx.io.read(p, expect_crs='EPSG:notanumber')",
)
case(
    9,
    "read_bounds_crs_junk",
    "p = tif(T/'s.tif', np.ones((2, 4, 4), np.uint8)); gx.io.read(p, bounds=(0, 0, 1, 1), bounds_crs='+proj=nothing')",
)
case(
    9,
    "read_fill_value_str",
    "p = tif(T/'s.tif', np.ones((2, 4, 4), np.uint8)); gx.io.read(p, fill_value='zero', boundless=True, window=((-2, 6), (-2, 6)))",
)
case(
    9,
    "read_max_bytes_junk",
    "p = tif(T/'s.tif', np.ones((2, 4, 4), np.uint8)); gx.io.read(p, max_bytes=float('nan'))",
)
case(
    9,
    "read_dtype_junk",
    "p = tif(T/'s.tif', np.ones((2, 4, 4), np.uint8)); gx.io.read(p, dtype='object')",
)
case(9, "read_path_int", "gx.io.read(12345)")
case(9, "read_path_none", "gx.io.read(None)")
case(
    9,
    "strip_writer_bad",
    "w = gx.io.strip_writer(str(T/'o.tif'), height=-1, width=4, crs='EPSG:32633', transform=(1, 0, 0, 0, -1, 0)).__enter__()",
)
case(9, "to_xarray_1d", "gx.io.to_xarray(gt(jnp.ones((4,))))")
case(
    9,
    "from_xarray_junk",
    "import xarray as xr\ngx.io.from_xarray(xr.DataArray(np.ones((2, 2)), dims=('a', 'b')))",
)
case(9, "save_to_file_path", "(T/'f').write_text('x'); gx.save(gx.Identity(), T/'f')")
case(9, "save_lambda", "gx.save(gx.Lambda(lambda x: x), T/'s')")
case(
    9,
    "catalog_empty_parquet",
    "import pandas as pd\npd.DataFrame({'a': []}).to_parquet(T/'c.parquet')\nf = gx.catalog.open_catalog\nf(str(T/'c.parquet'))",
)
case(
    9,
    "catalog_garbage",
    "(T/'c.parquet').write_bytes(b'PAR1' + os.urandom(100) + b'PAR1')\nf = gx.catalog.open_catalog\nf(str(T/'c.parquet'))",
)
case(
    9,
    "catalog_json_garbage",
    '(T/\'c.json\').write_text(\'{"type": "FeatureCollection", "features": [{"type": 1}]}\')\nf = gx.catalog.open_catalog\nf(str(T/\'c.json\'))',
)

# ------------------------------------------------------------------------------------ cause 8
case(
    8,
    "var_shared_refs_bomb",
    "a = [0] * 1000; b = [a] * 1000; c = [b] * 1000\nloads_yaml('{_target_: georax.GetItem, item: \"${v}\"}', allowed=A, variables={'v': c})",
)
case(
    8,
    "var_cycle",
    "a = []; a.append(a)\nloads_yaml('{_target_: georax.GetItem, item: \"${v}\"}', allowed=A, variables={'v': a})",
)
case(
    8,
    "var_dict_cycle",
    "a = {}; a['x'] = a\nloads_yaml('{_target_: georax.GetItem, item: \"${v}\"}', allowed=A, variables={'v': a})",
)
case(
    8,
    "var_deep",
    "v = 0\nfor _ in range(5000): v = [v]\nloads_yaml('{_target_: georax.GetItem, item: \"${v}\"}', allowed=A, variables={'v': v})",
)
case(
    8,
    "var_huge_string",
    "loads_yaml('{_target_: georax.geo.indices.NormalizedDifference, a_band: 0, b_band: 1, label: \"${v}\"}', allowed=A, variables={'v': 'x' * 50_000_000})",
)
case(
    8,
    "var_object",
    "loads_yaml('{_target_: georax.GetItem, item: \"${v}\"}', allowed=A, variables={'v': object()})",
)
case(
    8,
    "var_numpy_big",
    "loads_yaml('{_target_: georax.geo.radiometry.Normalize, mean: \"${v}\", std: 1.0}', allowed=A, variables={'v': np.zeros(10**8, np.float32)})",
)
case(
    8,
    "var_operator_injection",
    "loads_yaml('{_target_: georax.Sequential, operators: \"${v}\"}', allowed=A, variables={'v': [{'_target_': 'os.system', 'command': 'true'}]})",
)
case(
    8,
    "var_in_array_leaf",
    "loads_yaml('{_target_: georax.geo.radiometry.Normalize, mean: {_array_: \"${v}\", dtype: float32, shape: [3000000]}, std: 1.0}', allowed=A, variables={'v': [0.0] * 3000000})",
)
case(
    8,
    "var_in_key",
    "loads_yaml('{_target_: georax.geo.indices.NDVI, \"${v}\": 0}', allowed=A, variables={'v': '_target_'})",
)
case(
    8,
    "var_nested_placeholder",
    "loads_yaml('{_target_: georax.GetItem, item: \"${v}\"}', allowed=A, variables={'v': '${v}'})",
)
case(
    8,
    "var_partial_string",
    "loads_yaml('{_target_: georax.geo.indices.NormalizedDifference, a_band: 0, b_band: 1, label: \"pre-${v}-post\"}', allowed=A, variables={'v': [1, 2]})",
)
case(
    8,
    "var_name_weird",
    "loads_yaml('{_target_: georax.GetItem, item: \"${__class__}\"}', allowed=A, variables={})",
)
case(
    8,
    "var_float_inf",
    "loads_yaml('{_target_: georax.geo.sar.LeeSpeckle, window_size: \"${v}\"}', **P, variables={'v': float('inf')})",
)
case(
    8,
    "var_many_operators_graph_ops",
    "ops = [{'_target_': 'georax.Identity'}] * 5000\nloads_yaml('{_target_: georax.Graph, inputs: [a], outputs: {y: 0}, operators: \"${v}\", nodes: [[0, [a], []]]}', allowed=A, variables={'v': ops})",
)
case(
    8,
    "load_saved_sandbox_node_limit",
    "ops = gx.Sequential([gx.Identity()] * 3000)\ngx.save(ops, T/'s')\ngx.load(T/'s', allowed=A, limits=SANDBOX_LIMITS)",
)
for extra in (
    ["--budget", "inf"],
    ["--budget", "-1"],
    ["--budget", "0"],
    ["--budget", "1e400"],
    ["--budget", "99999999999999999999999YiB"],
    ["--max-flops", "1e999"],
    ["--max-flops", "0x10"],
    ["--max-flops", "0"],
    ["--dtype", "object"],
    ["--dtype", "complex128"],
    ["--dtype", "V8"],
    ["--dtype", "U10"],
    ["--dtype", "bool"],
    ["--dtype", "float64"],
    ["--input-shape", "0,0,0"],
    ["--input-shape", "99999999999,99999999999"],
    ["--input-shape", "1e3,2"],
    ["--input-shape", ","],
    ["--input-shape", "-1,4"],
    ["--var", "=1"],
    ["--var", "a"],
    ["--var", "a=!!python/name:os.system"],
    ["--var", "a=[" * 100],
    ["--var", "a=" + "[" * 50000],
    ["--allow", ""],
    ["--import", "no.such.module"],
):
    case(
        8,
        "cli_validate_" + "_".join(extra)[:40],
        f"""
(T/'p.yaml').write_text('{{_target_: georax.Identity}}')
rc, err = run_cli('validate', str(T/'p.yaml'), '--sandbox', '--input-shape', '1,8,8', '--budget', '64MiB', *{extra!r})
print('rc', rc, err[-300:])
""",
    )
for extra in (
    ["--workers", "0"],
    ["--workers", "100000"],
    ["--batch-size", "1000000000000"],
    ["--bbox", "nan,nan,nan,nan"],
    ["--bbox", "10,10,0,0"],
    ["--start", "notadate"],
    ["--start", "2020-01-01", "--end", "1900-01-01"],
    ["--bbox-crs", "EPSG:0"],
):
    case(
        8,
        "cli_run_" + "_".join(extra)[:40],
        f"""
import geopandas as gpd
from shapely.geometry import box
p = tif(T/'s.tif', np.ones((1, 8, 8), np.float32))
(T/'p.yaml').write_text('{{_target_: georax.Identity}}')
gpd.GeoDataFrame({{'href': [p], 'datetime': ['2020-01-01T00:00:00Z']}}, geometry=[box(500000, 3999920, 500080, 4000000)], crs='EPSG:32633').to_parquet(T/'c.parquet')
rc, err = run_cli('run', str(T/'p.yaml'), str(T/'c.parquet'), '--out', str(T/'o'), '--no-progress', *{extra!r})
print('rc', rc, err[-300:])
""",
    )
case(
    8,
    "cli_freeze_meta_junk",
    "(T/'p.yaml').write_text('{_target_: georax.Identity}')\nrc, err = run_cli('freeze', str(T/'p.yaml'), '-o', str(T/'a.tar.gz'), '--meta', 'noequals')\nprint(rc, err[-300:])",
)
case(
    8,
    "cli_freeze_output_is_dir",
    "(T/'p.yaml').write_text('{_target_: georax.Identity}')\nrc, err = run_cli('freeze', str(T/'p.yaml'), '-o', str(T))\nassert rc != 0",
)
case(
    8,
    "cli_rerun_rtol_nan",
    "(T/'p.yaml').write_text('{_target_: georax.Identity}')\nrc, err = run_cli('freeze', str(T/'p.yaml'), '-o', str(T/'a.tar.gz'))\nrc, err = run_cli('rerun', str(T/'a.tar.gz'), '--rtol', 'nan')\nprint(rc, err[-300:])",
)
case(
    8,
    "cli_ab_worst_neg",
    "(T/'p.yaml').write_text('{_target_: georax.Identity}')\nrc, err = run_cli('ab', str(T/'p.yaml'), str(T/'p.yaml'), '--worst', '-5')\nprint(rc, err[-300:])",
)
case(
    8,
    "cli_diff_garbage_yaml",
    "(T/'a.yaml').write_text('{_target_: [}'); (T/'b.yaml').write_text('!!python/object:os.system {}')\nrc, err = run_cli('diff', str(T/'a.yaml'), str(T/'b.yaml'))\nassert rc != 0",
)
case(
    8,
    "cli_verify_garbage",
    "(T/'a.tar.gz').write_bytes(os.urandom(1000))\nrc, err = run_cli('verify', str(T/'a.tar.gz'))\nassert rc != 0",
)
case(
    8,
    "cli_validate_saved_dir_sandbox_nodes",
    "gx.save(gx.Sequential([gx.Identity()] * 3000), T/'s')\nrc, err = run_cli('validate', str(T/'s'), '--sandbox')\nassert rc != 0 and 'max_' in err, (rc, err)",
)

# ------------------------------------------------------------------------------------ cause 10
case(
    10,
    "stale_temp_is_dir",
    """
p = T/'o.tif'
(T/'.o.tif.99999999-0123456789ab.tmp').mkdir()
(T/'.o.tif.99999999-0123456789ab.tmp'/'keep').write_text('x')
gx.io.write(gt(jnp.ones((1, 4, 4))), str(p))
assert p.exists()
""",
)
case(
    10,
    "stale_temp_symlink_outside",
    """
(T/'outside').write_text('precious')
(T/'d').mkdir()
(T/'d'/'.o.tif.99999999-0123456789ab.tmp').symlink_to(T/'outside')
gx.io.write(gt(jnp.ones((1, 4, 4))), str(T/'d'/'o.tif'))
assert (T/'outside').read_text() == 'precious'
""",
)
case(
    10,
    "stale_lock_symlink_to_fifo",
    """
os.mkfifo(T/'fifo')
(T/'.o.tif.99999999-0123456789ab.lock').symlink_to(T/'fifo')
(T/'.o.tif.99999999-0123456789ab.tmp').write_text('x')
gx.io.write(gt(jnp.ones((1, 4, 4))), str(T/'o.tif'))
""",
)
case(
    10,
    "stale_lock_pid_reused",
    """
(T/'.o.tif.1-0123456789ab.lock').write_text('')
(T/'.o.tif.1-0123456789ab.tmp').write_text('x')
gx.io.write(gt(jnp.ones((1, 4, 4))), str(T/'o.tif'))
print(sorted(os.listdir(T)))
""",
)
case(
    10,
    "write_existing_dir_overwrite",
    "(T/'o.tif').mkdir(); gx.io.write(gt(jnp.ones((1, 4, 4))), str(T/'o.tif'), overwrite=True)",
)
case(
    10,
    "write_cog_existing_dir",
    "(T/'o.tif').mkdir(); gx.io.write_cog(gt(jnp.ones((1, 4, 4))), str(T/'o.tif'))",
)
case(
    10,
    "kill_during_save",
    """
import signal
code = "import georax as gx, jax.numpy as jnp, os, signal\\nimport georax.core.params as pp\\norig = pp._atomic_write\\ndef w(path, data):\\n    orig(path, data)\\n    os.kill(os.getpid(), signal.SIGKILL)\\npp._atomic_write = w\\ngx.save(gx.geo.radiometry.Normalize(mean=jnp.arange(300.), std=jnp.ones(300)), %r)" % str(T/'s')
subprocess.run([sys.executable, '-c', code], timeout=60)
before = sorted(os.listdir(T/'s'))
gx.save(gx.geo.radiometry.Normalize(mean=jnp.arange(300.), std=jnp.ones(300)), T/'s')
after = sorted(os.listdir(T/'s'))
assert all(not n.startswith('.') for n in after), (before, after)
gx.load(T/'s')
""",
)
case(
    10,
    "kill_during_artifact_save",
    """
code = "import georax as gx, os, signal, tarfile\\norig = tarfile.TarFile.addfile\\ndef a(self, *x, **k):\\n    orig(self, *x, **k); os.kill(os.getpid(), signal.SIGKILL)\\ntarfile.TarFile.addfile = a\\nart = gx.repro.freeze(gx.Identity(), {'x': __import__('numpy').ones((1, 4, 4), 'float32')})\\nart.save(%r)" % str(T/'a.tar.gz')
subprocess.run([sys.executable, '-c', code], timeout=60)
print(sorted(os.listdir(T)))
art = gx.repro.freeze(gx.Identity(), {'x': np.ones((1, 4, 4), 'float32')})
art.save(T/'a.tar.gz')
left = [n for n in os.listdir(T) if n != 'a.tar.gz']
assert not left, left
""",
)
case(
    10,
    "strip_writer_exception_midway",
    """
try:
    with gx.io.strip_writer(str(T/'o.tif'), height=8, width=8, crs='EPSG:32633', transform=(10.0, 0.0, 0.0, 0.0, -10.0, 0.0)) as w:
        raise KeyError('boom')
except KeyError:
    pass
assert os.listdir(T) == [], os.listdir(T)
""",
)

# ------------------------------------------------------------------------------------ cause 11
EX06 = """
import importlib.util
spec = importlib.util.spec_from_file_location('ex06', os.path.join(REPO, 'examples', '06_user_uploaded_pipelines.py'))
ex = importlib.util.module_from_spec(spec); spec.loader.exec_module(ex)
scene = gt(jnp.ones((7, 64, 64)))
res = ex.handle({text}, scene, {{'batch': 4}})
assert isinstance(res, dict), res
print(res.get('status'), str(res)[:300])
"""
for name, text in {
    "bytes_doc": "b'{_target_: georax.Identity}'",
    "not_utf8": "b'\\xff\\xfe{_target_: georax.Identity}'",
    "formula_deep": "yaml.safe_dump({'_target_': 'georax.geo.indices.SpectralIndex', 'index': '-' * 1990 + 'B', 'band_map': {'B': 0}})",
    "stochastic_crop": "'{_target_: georax.geo.augment.RandomCrop, size: [8, 8]}'",
    "methane": "'{_target_: georax.geo.retrieval.operators.MethaneRetrieval}'",
    "compute_bomb_lee": "'{_target_: georax.Sequential, operators: [' + ','.join(['{_target_: georax.geo.sar.LeeSpeckle, window_size: 63}'] * 50) + ']}'",
    "qc_fail_runtime": "'{_target_: georax.array.qc.AssertValueRange, vmin: 5.0, vmax: 6.0}'",
    "graph_two_inputs": "'{_target_: georax.Graph, inputs: [a, b], outputs: {y: 0}, operators: [{_target_: georax.geo.fusion.AlignAndStack}], nodes: [[0, [a, b], []]]}'",
    "resample_offzone": "'{_target_: georax.geo.fusion.Resample, target_grid: [EPSG:3031, [10.0, 0.0, 0.0, 0.0, -10.0, 0.0], [64, 64]]}'",
    "none_doc": "None",
}.items():
    case(11, f"ex06_{name}", EX06.format(text=text))


# ------------------------------------------------------------------------------------ runner
def _child(code: str, tmp: str, wfd: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))
    os.chdir(tmp)
    ns = {"TMP": tmp, "REPO": str(Path(__file__).resolve().parents[1])}
    out: dict[str, str]
    try:
        exec(PRELUDE, ns)
        exec(code, ns)
        out = {"kind": "ok"}
    except GeoraxError as e:
        out = {"kind": "typed", "error": type(e).__name__, "msg": str(e)[:300]}
    except BaseException as e:
        out = {
            "kind": "DEFECT",
            "error": type(e).__name__,
            "msg": str(e)[:400],
            "tb": "".join(traceback.format_exception(e))[-1500:],
        }
    os.write(wfd, json.dumps(out).encode())
    os.close(wfd)
    os._exit(0)


def run_case(code: str) -> tuple[dict[str, str], float]:
    tmp = tempfile.mkdtemp(prefix="probe-")
    r, w = os.pipe()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.setsid()
        _child(code, tmp, w)
    os.close(w)
    deadline = start + TIMEOUT_S
    status = None
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(r)
        return {"kind": "DEFECT", "error": "TIMEOUT", "msg": f"> {TIMEOUT_S} s"}, TIMEOUT_S
    elapsed = time.monotonic() - start
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    if not data:
        return {"kind": "DEFECT", "error": "CRASH", "msg": f"wait status {status}"}, elapsed
    return json.loads(data), elapsed


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-k", default="")
    ap.add_argument("--cause", type=int)
    ap.add_argument("--json", type=Path)
    ap.add_argument("-v", action="store_true")
    args = ap.parse_args()
    results = []
    for cause, name, code in CASES:
        if args.cause is not None and cause != args.cause:
            continue
        if args.k and args.k not in name:
            continue
        out, elapsed = run_case(code)
        results.append({"cause": cause, "name": name, "s": round(elapsed, 2), **out})
        flag = out["kind"]
        line = f"[{cause:2d}] {flag:6s} {elapsed:5.1f}s {name}: {out.get('error', '')} {out.get('msg', '')[:150]}"
        print(line.replace("\n", " "), flush=True)
        if flag == "DEFECT" and args.v and "tb" in out:
            print(textwrap.indent(out["tb"], "      | "), flush=True)
    defects = [r for r in results if r["kind"] == "DEFECT"]
    print(f"\n{len(results)} cases, {len(defects)} defects")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 1 if defects else 0


if __name__ == "__main__":
    sys.exit(main())
