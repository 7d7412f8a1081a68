"""Hostile input found by a second, independent probe of issue 16 (new cases, one test per cause).

Each test asserts the mechanism that refuses the input (which error, naming what); the thread
waits are generous hang guards, not timings.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
import pytest
import yaml

import georax as gx
from georax.cli import main
from georax.core.deadline import deadline
from georax.core.files import check_npy_header, open_regular_file
from georax.core.params import ParamsIntegrityError
from georax.errors import (
    ArtifactFormatError,
    PricingTimeoutError,
    ReproError,
    SerializationError,
)
from georax.repro.payload import decode_array

CAP_S = 20.0  # a hang guard, not a benchmark


def _returns(fn: Callable[[], Any]) -> BaseException | None:
    """Run ``fn`` in a thread; the exception it raised (None if it returned), or fail on a hang."""
    done = threading.Event()
    raised: list[BaseException] = []

    def attempt() -> None:
        try:
            fn()
        except BaseException as e:
            raised.append(e)
        done.set()

    threading.Thread(target=attempt, daemon=True).start()
    assert done.wait(CAP_S), "blocked on a special file"
    return raised[0] if raised else None


# --------------------------------------------------------------------------------------
# Cause 4: every reader refuses special files (repro artifacts, inputs, lock files, the CLI)
# --------------------------------------------------------------------------------------
def test_an_artifact_that_is_a_fifo_or_a_device_is_refused_unread(tmp_path: Path) -> None:
    fifo = tmp_path / "a.tar.gz"
    os.mkfifo(fifo)
    e = _returns(lambda: gx.repro.load(fifo))
    assert isinstance(e, ArtifactFormatError) and "FIFO" in str(e)
    e = _returns(lambda: gx.repro.load("/dev/zero"))
    assert isinstance(e, ArtifactFormatError) and "character device" in str(e)


def test_freeze_refuses_special_input_and_lock_files(tmp_path: Path) -> None:
    fifo = tmp_path / "x.npy"
    os.mkfifo(fifo)
    e = _returns(lambda: gx.repro.freeze(gx.Identity(), {"x": str(fifo)}))
    assert isinstance(e, ReproError) and "'x'" in str(e) and "FIFO" in str(e)
    e = _returns(lambda: gx.repro.freeze(gx.Identity(), {"x": "/dev/zero"}))
    assert isinstance(e, ReproError) and "character device" in str(e)
    x = np.ones((1, 2, 2), np.float32)
    e = _returns(lambda: gx.repro.freeze(gx.Identity(), {"x": x}, deps_lock="/dev/zero"))
    assert isinstance(e, ReproError) and "deps_lock" in str(e)


def test_repro_commands_refuse_special_documents(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    fifo = tmp_path / "old.yaml"
    os.mkfifo(fifo)
    new = tmp_path / "new.yaml"
    new.write_text("{_target_: georax.Identity}")
    for argv in (["diff", str(fifo), str(new)], ["diff", str(new), "/dev/zero"]):
        codes: list[int] = []
        assert _returns(lambda argv=argv, codes=codes: codes.append(main(argv))) is None
        assert codes == [1]
        assert "not a regular file" in capsys.readouterr().err


def test_open_regular_file_reads_normally_and_refuses_the_rest(tmp_path: Path) -> None:
    f = tmp_path / "f.bin"
    f.write_bytes(b"abc")
    with open_regular_file(f, "thing") as fh:
        assert fh.read() == b"abc"
    with pytest.raises(SerializationError, match=r"thing .* directory"):
        open_regular_file(tmp_path, "thing")


# --------------------------------------------------------------------------------------
# Cause 2 (and 6): a .npy header that lies about its size allocates nothing
# --------------------------------------------------------------------------------------
def _lying_npy(shape: tuple[int, ...]) -> bytes:
    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        f, {"descr": "<f4", "fortran_order": False, "shape": shape}
    )
    return f.getvalue() + b"\0" * 16


def test_a_lying_npy_header_is_refused_before_numpy_allocates(tmp_path: Path) -> None:
    data = _lying_npy((60000, 60000))  # 13 GiB declared, 16 bytes present
    with pytest.raises(SerializationError, match=r"declares float32\[60000, 60000\]"):
        check_npy_header(io.BytesIO(data), "x")
    (tmp_path / "x.npy").write_bytes(data)
    with pytest.raises(ReproError, match="14400000000 bytes"):
        gx.repro.freeze(gx.Identity(), {"x": str(tmp_path / "x.npy")})
    with pytest.raises(ArtifactFormatError, match="14400000000 bytes"):
        decode_array(data, "float32", "member inputs/000.npy")
    # an honest record passes, and the stream is left where it was
    f = io.BytesIO()
    np.save(f, np.arange(6, dtype=np.int16).reshape(2, 3))
    f.seek(0)
    assert check_npy_header(f, "x") == ((2, 3), np.dtype(np.int16)) and f.tell() == 0


def test_a_params_file_whose_header_lies_is_refused_unallocated(tmp_path: Path) -> None:
    op = gx.geo.radiometry.Normalize(mean=jnp.arange(300.0), std=jnp.arange(1.0, 301.0))
    saved = gx.save(gx.Sequential([op]), tmp_path / "s")
    blob = saved.params_path.read_bytes()
    lying = blob.replace(b"'shape': (300,)", b"'shape': (900000000,)", 1)
    assert lying != blob
    doc = yaml.safe_load(saved.yaml_path.read_text())  # the attacker re-records size and digest
    doc["params"].update(sha256=hashlib.sha256(lying).hexdigest(), bytes=len(lying))
    saved.yaml_path.write_text(yaml.safe_dump(doc))
    saved.params_path.write_bytes(lying)
    with pytest.raises(ParamsIntegrityError, match=r"declares float32\[900000000\]"):
        gx.load(tmp_path / "s")


# --------------------------------------------------------------------------------------
# Cause 8: a bad CLI argument is a usage error, never a traceback
# --------------------------------------------------------------------------------------
def test_validate_with_an_unknown_import_is_a_clean_error(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    doc = tmp_path / "p.yaml"
    doc.write_text("{_target_: georax.Identity}")
    assert main(["validate", str(doc), "--import", "no_such_module_xyz"]) == 1
    err = capsys.readouterr().err
    assert "--import no_such_module_xyz" in err and "No module named" in err


# --------------------------------------------------------------------------------------
# Cause 10: what sits where a stale temporary would be does not break the next write
# --------------------------------------------------------------------------------------
def test_a_directory_named_like_a_stale_temporary_does_not_break_writes(tmp_path: Path) -> None:
    squatter = tmp_path / ".o.tif.99999999-0123456789ab.tmp"  # no live writer has pid 99999999
    squatter.mkdir()
    (squatter / "keep").write_text("x")
    stale = tmp_path / ".o.tif.99999998-0123456789ab.tmp"
    stale.write_text("left by a killed writer")
    values = jnp.arange(16.0).reshape(1, 4, 4)
    gt = gx.GeoTensor(values, (10.0, 0.0, 500000.0, 0.0, -10.0, 4000000.0), "EPSG:32633")
    gx.io.write(gt, tmp_path / "o.tif")
    np.testing.assert_array_equal(gx.io.read(tmp_path / "o.tif").values, values)
    assert not stale.exists()  # the real stale temporary is still cleaned
    assert (squatter / "keep").read_text() == "x"  # a directory is not ours to delete


# --------------------------------------------------------------------------------------
# Cause 11: example 06's handler never raises, also when a QC check fails at run time
# --------------------------------------------------------------------------------------
def test_example_06_handler_reports_a_qc_failure_in_compiled_code() -> None:
    path = Path(__file__).resolve().parents[1] / "examples" / "06_user_uploaded_pipelines.py"
    spec = importlib.util.spec_from_file_location("example_06", path)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    scene = gx.GeoTensor(
        jnp.ones((7, 32, 32)), (10.0, 0.0, 500000.0, 0.0, -10.0, 4000000.0), "EPSG:32633"
    )
    text = "{_target_: georax.array.qc.AssertValueRange, vmin: 5.0, vmax: 6.0}"
    result = example.handle(text, scene, {})
    assert result["status"] == "refused"
    assert (
        "failed at run time: QCError" in result["reason"] and "AssertValueRange" in result["reason"]
    )


# --------------------------------------------------------------------------------------
# Cause 1: the pricing deadline holds even when its first interruption is swallowed
# --------------------------------------------------------------------------------------
def test_a_swallowed_deadline_interruption_is_raised_again() -> None:
    # CPython drops an asynchronous exception that lands in a gc callback (JAX registers one)
    # or a __del__: "Exception ignored in ...". Seen in the probe; the trace then ran on with
    # no limit. Here the body swallows the first two interruptions, as such a callback would.
    swallowed = 0
    start = time.perf_counter()
    with pytest.raises(PricingTimeoutError) as e, deadline(0.2, "a swallowing body"):
        while time.perf_counter() - start < CAP_S:
            try:
                while time.perf_counter() - start < CAP_S:
                    pass
            except BaseException:
                swallowed += 1
                if swallowed > 2:
                    raise
    assert swallowed == 3 and e.value.stage == "time"
    time.sleep(0.3)  # nothing is raised after the deadline has exited


# --------------------------------------------------------------------------------------
# Cause 4 (catalogs) and 9: more readers and writers that leaked bare exceptions
# --------------------------------------------------------------------------------------
def test_a_catalog_that_is_a_special_file_is_refused_unread(tmp_path: Path) -> None:
    fifo = tmp_path / "c.parquet"
    os.mkfifo(fifo)
    link = tmp_path / "c.json"
    link.symlink_to("/dev/zero")
    for path in (fifo, link):
        e = _returns(lambda path=path: gx.catalog.open_catalog(path))
        assert isinstance(e, gx.errors.CatalogFormatError) and "not a regular file" in str(e)


def test_a_stac_document_of_the_wrong_shape_is_a_format_error(tmp_path: Path) -> None:
    doc = tmp_path / "c.json"
    doc.write_text('{"type": "FeatureCollection", "features": [{"type": 1}]}')
    with pytest.raises(gx.errors.CatalogFormatError, match="cannot read the STAC document"):
        gx.catalog.open_catalog(doc)


def test_saving_onto_a_file_is_a_serialization_error(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_text("not a directory")
    with pytest.raises(SerializationError, match=r"cannot save to .*f: File exists"):
        gx.save(gx.Identity(), target)
    assert target.read_text() == "not a directory"


# --------------------------------------------------------------------------------------
# Cause 4 (rasters): a VRT cannot lead GDAL to a special file
# --------------------------------------------------------------------------------------
_VRT = (
    '<VRTDataset rasterXSize="4" rasterYSize="4"><VRTRasterBand dataType="Byte" band="1">'
    '<SimpleSource><SourceFilename relativeToVRT="{rel}">{src}</SourceFilename>'
    "<SourceBand>1</SourceBand></SimpleSource></VRTRasterBand></VRTDataset>"
)


def test_a_vrt_whose_source_is_a_special_file_is_refused_before_gdal_opens_it(
    tmp_path: Path,
) -> None:
    os.mkfifo(tmp_path / "pipe.tif")
    cases = {
        "fifo.vrt": _VRT.format(rel=1, src="pipe.tif"),  # relative to the VRT
        "zero.vrt": _VRT.format(rel=0, src="/dev/zero"),
        "gz.vrt": _VRT.format(rel=0, src="/vsigzip//dev/zero"),
        "nested.vrt": _VRT.format(rel=1, src="fifo.vrt"),  # a VRT of a VRT of a FIFO
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
    for name in cases:
        e = _returns(lambda name=name: gx.io.read(tmp_path / name))
        assert isinstance(e, gx.errors.RasterReadError), (name, e)
        assert "VRT source" in str(e) and ("FIFO" in str(e) or "character device" in str(e))
    # a VRT of a regular raster still reads
    values = jnp.arange(16, dtype=jnp.uint8).reshape(1, 4, 4)
    gt = gx.GeoTensor(values, (10.0, 0.0, 500000.0, 0.0, -10.0, 4000000.0), "EPSG:32633")
    gx.io.write(gt, tmp_path / "ok.tif")
    (tmp_path / "ok.vrt").write_text(_VRT.format(rel=1, src="ok.tif"))
    np.testing.assert_array_equal(gx.io.read(tmp_path / "ok.vrt").values, values)


def test_a_raster_declaring_too_many_bands_is_refused_at_open(tmp_path: Path) -> None:
    import rasterio
    from rasterio.transform import from_origin

    path = tmp_path / "bands.tif"
    profile = {"driver": "GTiff", "height": 1, "width": 1, "dtype": "uint8", "crs": "EPSG:32633"}
    with rasterio.open(
        path, "w", count=gx.io.MAX_BANDS + 1, transform=from_origin(0, 0, 1, 1), **profile
    ):
        pass
    for call in (gx.io.info, gx.io.read, lambda p: next(gx.io.iter_blocks(p))):
        with pytest.raises(gx.io.RasterReadError, match=f"declares {gx.io.MAX_BANDS + 1} bands"):
            call(str(path))
    # at the limit it reads
    with rasterio.open(path, "w", count=8, transform=from_origin(0, 0, 1, 1), **profile):
        pass
    assert gx.io.read(str(path)).shape == (8, 1, 1)
