"""Hostile input to georax.io, one group of regression tests per root cause of issue 16:

- cause 4: special files (FIFO, character device, a symlink to one, side-cars) are refused
  before anything opens them;
- cause 5: decompression bombs and huge boundless windows are refused by the read budget before
  any buffer is allocated, on every read path (read, iter_blocks, from_xarray, streaming);
- cause 9: bad windows, bounds, paths and destinations are typed georax errors;
- cause 10: a writer killed with SIGKILL leaves temporaries that the next write removes, while a
  live writer's temporaries are left alone; the .aux.xml side-car moves with its file.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import rioxarray
from affine import Affine
from rasterio.windows import Window

import georax as gx
import georax.io as gio
import georax.io.raster as raster_module
from georax.errors import BudgetExceededError, ConfigError, GeoraxError
from georax.io import (
    BandIndexError,
    CRSMismatchError,
    RasterDTypeError,
    RasterReadError,
    RasterWriteError,
    ReadBudgetExceededError,
    WindowError,
)
from georax.patch import Patcher, Patchwise
from georax.patch.streaming import stream_patchwise

T = Affine(10.0, 0.0, 300_000.0, 0.0, -10.0, 5_000_000.0)


def _small(path: Path, shape: tuple[int, int, int] = (2, 8, 8)) -> str:
    gt = gx.GeoTensor(np.arange(np.prod(shape), dtype=np.float32).reshape(shape), T, "EPSG:32631")
    return gio.write(gt, path, blocksize=16)  # small tiles: the budget tests price pixels


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> str:
    """A 100000 x 100000 uint8 GeoTIFF (10 GB of pixels) in a few hundred KB: sparse deflate
    tiles, only the first one written."""
    path = str(tmp_path_factory.mktemp("bomb") / "bomb.tif")
    profile = dict(
        driver="GTiff", width=100_000, height=100_000, count=1, dtype="uint8", tiled=True,
        blockxsize=512, blockysize=512, compress="deflate", SPARSE_OK=True, crs="EPSG:32631",
        transform=T,
    )  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.full((1, 512, 512), 7, np.uint8), window=Window(0, 0, 512, 512))
    assert os.path.getsize(path) < 2_000_000
    return path


@pytest.fixture
def no_allocation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a read allocates its pixel buffer (the budget must refuse first)."""

    def refuse(shape: Any, dtype: Any) -> np.ndarray:
        raise AssertionError(f"a {shape} {dtype} buffer was allocated before the budget check")

    monkeypatch.setattr(raster_module, "aligned_empty", refuse)


def _in_thread(fn: Callable[[], Any], fifo: str | None = None, timeout: float = 30) -> Any:
    """Run `fn` in a daemon thread; return its exception (or result). If it is still blocked
    after `timeout` (opening a FIFO blocks), unblock it by opening the FIFO for writing, then
    fail."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as e:
            box["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        if fifo is not None:
            with open(fifo, "wb"):
                pass
        pytest.fail(f"the call blocked for {timeout} s")
    return box.get("error", box.get("result"))


# ----------------------------------------------------------------------------- cause 4
def test_fifo_is_refused_without_opening_it(tmp_path: Path) -> None:
    fifo = str(tmp_path / "pipe.tif")
    os.mkfifo(fifo)
    for call in (
        lambda: gio.read(fifo),
        lambda: gio.info(fifo),
        lambda: next(gio.iter_blocks(fifo)),
    ):
        err = _in_thread(call, fifo)
        assert isinstance(err, RasterReadError), err
        assert "pipe.tif" in str(err) and "FIFO" in str(err)


def test_character_device_and_symlinks_to_it_are_refused(tmp_path: Path) -> None:
    link = tmp_path / "innocent.tif"
    link.symlink_to("/dev/zero")
    for path in ("/dev/zero", str(link)):
        with pytest.raises(RasterReadError, match=r"is a character device, not a regular"):
            gio.read(path)
    with pytest.raises(RasterReadError, match="is a directory"):
        gio.read(tmp_path)


def test_special_sidecar_is_refused(tmp_path: Path) -> None:
    """GDAL opens side-cars (.aux.xml, .ovr, world files) next to the raster: a FIFO there
    would hang the read as surely as the raster itself."""
    path = _small(tmp_path / "a.tif")
    os.mkfifo(path + ".aux.xml")
    err = _in_thread(lambda: gio.read(path), path + ".aux.xml")
    assert isinstance(err, RasterReadError) and "'a.tif.aux.xml'" in str(err), err
    os.remove(path + ".aux.xml")
    assert gio.read(path).shape == (2, 8, 8)


def test_gdal_virtual_paths_to_special_files_are_refused(tmp_path: Path) -> None:
    link = tmp_path / "z.gz"
    link.symlink_to("/dev/zero")
    with pytest.raises(RasterReadError, match="character device"):
        gio.read(f"/vsigzip/{link}")
    with pytest.raises(RasterReadError, match="character device"):
        gio.read(f"/vsisubfile/0_100000000,{link}")
    with pytest.raises(RasterReadError, match="standard input"):
        gio.read("/vsistdin/")


# ----------------------------------------------------------------------------- cause 5
def test_decompression_bomb_is_refused_before_allocating(bomb: str, no_allocation: None) -> None:
    with pytest.raises(ReadBudgetExceededError) as info:
        gio.read(bomb)
    err = info.value
    assert err.required == 100_000 * 100_000 and err.budget == 4 * 2**30
    assert err.path == bomb and "bomb.tif" in str(err) and "9.31 GiB" in str(err)
    assert isinstance(err, BudgetExceededError) and err.stage == "read"


def test_bomb_is_still_readable_in_windows(bomb: str) -> None:
    got = gio.read(bomb, window=((0, 4), (510, 514)))
    np.testing.assert_array_equal(np.asarray(got.values)[0], [[7, 7, 0, 0]] * 4)


def test_boundless_huge_window_on_tiny_file_is_refused(tmp_path: Path, no_allocation) -> None:
    path = _small(tmp_path / "tiny.tif")
    with pytest.raises(ReadBudgetExceededError, match=r"tiny\.tif: window rows \[-5, 999995\)"):
        gio.read(path, window=((-5, 10**6 - 5), (0, 10**6)), boundless=True)


def test_read_budget_argument_context_and_default(tmp_path: Path) -> None:
    path = _small(tmp_path / "b.tif", (2, 64, 64))  # 32 KiB as float32
    need = 2 * 64 * 64 * 4
    assert gio.read(path, max_bytes=need).shape == (2, 64, 64)
    with pytest.raises(ReadBudgetExceededError, match=r"32\.00 KiB"):
        gio.read(path, max_bytes=need - 1)
    with gio.read_budget("16KiB"):
        with pytest.raises(ReadBudgetExceededError, match=r"16\.00 KiB"):
            gio.read(path)
        assert gio.read(path, max_bytes="1MiB").shape == (2, 64, 64)  # the argument wins
        with gio.read_budget("1MiB"):  # contexts nest
            assert gio.read(path).shape == (2, 64, 64)
        with pytest.raises(ReadBudgetExceededError):
            gio.read(path)
    previous = gio.set_default_read_budget(1000)
    try:
        with pytest.raises(ReadBudgetExceededError):
            gio.read(path)
    finally:
        assert gio.set_default_read_budget(previous) == 1000
    assert gio.read(path).shape == (2, 64, 64)
    for bad in (0, -1, "lots", True, float("nan"), [1]):
        with pytest.raises(ConfigError, match="max_bytes"):
            gio.read(path, max_bytes=bad)


def test_read_budget_is_per_thread(tmp_path: Path) -> None:
    path = _small(tmp_path / "t.tif", (2, 64, 64))
    with gio.read_budget(100):
        other = _in_thread(lambda: gio.read(path).shape)
    assert other == (2, 64, 64)  # the context of this thread does not leak into another


def test_iter_blocks_prices_the_largest_block_first(bomb: str, no_allocation) -> None:
    blocks = gio.iter_blocks(bomb, block_shape=(100_000, 100_000))
    with pytest.raises(ReadBudgetExceededError, match="one block with its halo"):
        next(blocks)
    with pytest.raises(ReadBudgetExceededError):
        next(gio.iter_blocks(bomb, block_shape=(512, 512), halo=60_000))


def test_iter_blocks_streams_the_bomb_block_by_block(bomb: str) -> None:
    window, block = next(gio.iter_blocks(bomb))
    assert (window.height, window.width) == (1024, 1024) and block.shape == (1, 1024, 1024)


def test_one_huge_internal_block_is_priced(tmp_path: Path) -> None:
    """GDAL decompresses a whole tile to read any pixel of it: a file of one huge tile is a
    bomb even for a 1-pixel window."""
    path = str(tmp_path / "tile.tif")
    profile = dict(
        driver="GTiff", width=4096, height=4096, count=1, dtype="uint8", tiled=True,
        blockxsize=4096, blockysize=4096, compress="deflate", transform=T, crs="EPSG:32631",
    )  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.zeros((1, 4096, 4096), np.uint8))
    assert gio.info(path).block_shape == (4096, 4096)
    with pytest.raises(ReadBudgetExceededError, match="one internal block"):
        gio.read(path, window=((0, 1), (0, 1)), max_bytes="1MiB")
    assert gio.read(path, window=((0, 1), (0, 1)), max_bytes="16MiB").shape == (1, 1, 1)


def test_lazy_dataarray_of_a_bomb_is_refused(bomb: str) -> None:
    da = rioxarray.open_rasterio(bomb)  # lazy: nothing read yet
    with pytest.raises(ReadBudgetExceededError, match=r"bomb\.tif"):
        gio.from_xarray(da)


def test_streaming_a_bomb_is_refused_per_strip(bomb: str, tmp_path: Path) -> None:
    out = tmp_path / "out.tif"
    out.write_bytes(b"previous")
    pw = Patchwise(Patcher.regular(64), gx.Identity())
    with pytest.raises(ReadBudgetExceededError, match=r"bomb\.tif"):
        stream_patchwise(pw, bomb, out, strip_rows=512, max_bytes="64MiB")
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]


# ----------------------------------------------------------------------------- cause 9
@pytest.fixture(scope="module")
def small(tmp_path_factory) -> str:
    return _small(tmp_path_factory.mktemp("hostile") / "s.tif")


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"window": ((5, 2), (0, 3))}, WindowError, r"is reversed \(rows 5->2"),
        ({"window": Window(0, 0, NAN, 2)}, WindowError, "window width must be finite"),
        ({"window": ((0, NAN), (0, 3))}, WindowError, "row_stop must be finite"),
        ({"window": ((0, 2), (-INF, 3))}, WindowError, "col_start must be finite"),
        ({"window": ((0, 1e300), (0, 3))}, WindowError, "out of range"),
        ({"window": (("a", 2), (0, 3))}, WindowError, "must be a number"),
        ({"bounds": (300_000, NAN, 300_050, 5_000_000)}, WindowError, "not finite"),
        ({"bounds": (300_000, 4_999_950, INF, 5_000_000)}, WindowError, "not finite"),
        ({"bounds": (300_050, 4_999_950, 300_000, 5_000_000)}, WindowError, "reversed"),
        ({"bounds": (0, 0, 1, 1), "bounds_crs": "EPSG:99999999"}, CRSMismatchError, "not a CRS"),
        ({"expect_crs": "bogus"}, CRSMismatchError, "expect_crs 'bogus' is not a CRS"),
        ({"dtype": object}, RasterDTypeError, "cannot store dtype object"),
        ({"dtype": bool}, RasterDTypeError, "cannot store dtype bool"),
        ({"window": ((-1, 2), (0, 2)), "boundless": True, "fill_value": "x"}, RasterDTypeError,
         "fill_value must be a real number"),
        ({"bands": 3.5}, BandIndexError, "bands must be an index, a name or a sequence"),
        ({"bands": [0.5]}, BandIndexError, "neither a 0-based index nor a name"),
    ],
)  # fmt: skip
def test_bad_read_requests_are_typed(small: str, kwargs, error, match) -> None:
    with pytest.raises(error, match=match) as info:
        gio.read(small, **kwargs)
    assert isinstance(info.value, GeoraxError)
    assert "s.tif" in str(info.value)


@pytest.mark.parametrize("path", [3, None, b"/tmp/x.tif", "a\0b.tif"])
def test_bad_paths_are_typed(path) -> None:
    with pytest.raises(RasterReadError, match="path"):
        gio.read(path)
    with pytest.raises(RasterWriteError, match="path"):
        gio.write(gx.GeoTensor(np.zeros((2, 2), np.float32)), path)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"halo": -1}, "halo must be an integer >= 0"),
        ({"halo": 1.5}, "halo must be an integer"),
        ({"block_shape": (0, 4)}, "block_shape rows must be an integer >= 1"),
        ({"block_shape": (4,)}, r"block_shape must be \(rows, cols\)"),
        ({"block_shape": (NAN, 4)}, "block_shape rows"),
    ],
)
def test_bad_block_requests_are_typed(small: str, kwargs, match) -> None:
    with pytest.raises(WindowError, match=match):
        next(gio.iter_blocks(small, **kwargs))


def test_writing_to_a_directory_or_a_missing_parent_is_typed(tmp_path: Path) -> None:
    gt = gx.GeoTensor(np.ones((2, 3, 3), np.float32), T, "EPSG:32631")
    (tmp_path / "d").mkdir()
    for writer in (gio.write, gio.write_cog):
        with pytest.raises(RasterWriteError, match=r"d: is a directory"):
            writer(gt, tmp_path / "d")
        with pytest.raises(RasterWriteError, match=r"directory .*missing does not exist"):
            writer(gt, tmp_path / "missing" / "x.tif")
    with pytest.raises(RasterWriteError, match="not a regular file"):
        gio.write(gt, "/dev/null")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    assert list((tmp_path / "d").iterdir()) == []


@pytest.mark.parametrize(
    ("values", "kwargs", "error", "match"),
    [
        (np.zeros((0, 2, 2), np.float32), {}, gx.errors.ShapeError, "has no pixels"),
        (np.zeros((2, 2), np.float32), {"fill_value": "x"}, RasterDTypeError, "real number"),
        (np.zeros((2, 2), np.float32), {"band_names": "ab"}, RasterWriteError, "sequence"),
        (np.zeros((1, 2, 2), np.float32), {"band_names": [1]}, RasterWriteError, "strings"),
        (np.zeros((2, 2), np.float32), {"overviews": [-2]}, RasterWriteError, ">= 2"),
        (np.zeros((2, 2), np.float32), {"overviews": "AUTO"}, RasterWriteError, "decimation"),
        (np.zeros((2, 2), np.float32), {"compress": 3}, RasterWriteError, "unknown compress"),
    ],
)
def test_bad_write_requests_are_typed(tmp_path: Path, values, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        gio.write(gx.GeoTensor(values, T, "EPSG:32631"), tmp_path / "w.tif", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_complex_pixels_round_trip(tmp_path: Path) -> None:
    """SAR data is complex: written and read back exactly (no predictor, no silent cast)."""
    z = (np.arange(12) + 1j * np.arange(12)[::-1]).astype(np.complex64).reshape(1, 3, 4)
    for writer in (gio.write, gio.write_cog):
        back = gio.read(writer(gx.GeoTensor(z, T, "EPSG:32631"), tmp_path / "z.tif"))
        assert back.dtype == np.complex64
        np.testing.assert_array_equal(np.asarray(back.values), z)


def test_streaming_into_a_missing_directory_is_typed(tmp_path: Path) -> None:
    src = _small(tmp_path / "in.tif", (1, 32, 32))
    pw = Patchwise(Patcher.regular(8), gx.Identity())
    with pytest.raises(RasterWriteError, match="missing does not exist"):
        stream_patchwise(pw, src, tmp_path / "missing" / "out.tif")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif"]


# ----------------------------------------------------------------------------- cause 10
KILLED_WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from affine import Affine
    import georax as gx, georax.io as gio
    x = np.random.default_rng(0).random((2, 4096, 4096), dtype=np.float32)
    gt = gx.GeoTensor(x, Affine(10, 0, 0, 0, -10, 0), "EPSG:32631")
    print("writing", flush=True)
    gio.write_cog(gt, sys.argv[1], blocksize=256, LEVEL=9)
    print("finished", flush=True)
    """
)

LIVE_WRITER = textwrap.dedent(
    """
    import sys, time
    import georax.io as gio
    with gio.atomic_destination(sys.argv[1]) as tmp:
        open(tmp, "wb").write(b"half a raster")
        open(tmp + ".ovr.tmp", "wb").write(b"half an overview")
        print("ready", flush=True)
        time.sleep(600)
    """
)


def _temporaries(directory: Path, name: str) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(f".{name}."))


def _start(script: str, *args: str, until: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line == until, line
    return proc


def test_kill_9_mid_write_keeps_old_file_and_next_write_cleans(tmp_path: Path) -> None:
    dest = tmp_path / "out.tif"
    old = gx.GeoTensor(np.full((1, 16, 16), 3, np.float32), T, "EPSG:32631")
    gio.write_cog(old, dest)
    before = dest.read_bytes()
    proc = _start(KILLED_WRITER, str(dest), until="writing")
    deadline = time.monotonic() + 120
    while not any(t.endswith(".tmp") for t in _temporaries(tmp_path, "out.tif")):
        assert proc.poll() is None, "the writer finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    stale = _temporaries(tmp_path, "out.tif")
    assert any(t.endswith(".lock") for t in stale) and any(".tmp" in t for t in stale), stale
    assert dest.read_bytes() == before  # the old file is intact

    new = old.replace(values=old.values + 1)
    gio.write_cog(new, dest)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]
    np.testing.assert_array_equal(np.asarray(gio.read(dest).values), np.asarray(new.values))


def test_live_writers_temporaries_are_left_alone(tmp_path: Path) -> None:
    dest = tmp_path / "out.tif"
    proc = _start(LIVE_WRITER, str(dest), until="ready")
    try:
        theirs = _temporaries(tmp_path, "out.tif")
        assert len(theirs) == 3  # .lock, .tmp, .tmp.ovr.tmp
        gio.write(gx.GeoTensor(np.ones((4, 4), np.uint8), T, "EPSG:32631"), dest)
        assert _temporaries(tmp_path, "out.tif") == theirs  # a live writer keeps its files
    finally:
        proc.kill()
        proc.wait()
    removed = gio.files.remove_stale_temporaries(str(dest))
    assert sorted(removed) == theirs and removed[-1].endswith(".lock")  # now dead; lock last
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]


def test_sidecar_moves_with_its_file_and_a_stale_one_goes(tmp_path: Path) -> None:
    dest = tmp_path / "out.tif"
    with gio.atomic_destination(dest) as tmp:
        Path(tmp).write_bytes(b"raster v1")
        Path(tmp + ".aux.xml").write_text("<PAMDataset>v1</PAMDataset>")
    assert (tmp_path / "out.tif.aux.xml").read_text() == "<PAMDataset>v1</PAMDataset>"
    with gio.atomic_destination(dest) as tmp:
        Path(tmp).write_bytes(b"raster v2")  # no side-car this time
    assert dest.read_bytes() == b"raster v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]  # v1's side-car is gone


def test_commit_fsyncs_file_and_directory(tmp_path: Path, monkeypatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    dest = tmp_path / "out.tif"
    with gio.atomic_destination(dest) as tmp:
        Path(tmp).write_bytes(b"data")
    assert synced == [tmp, str(tmp_path)]
    synced.clear()
    with gio.atomic_destination(dest, durable=False) as tmp:
        Path(tmp).write_bytes(b"data")
    assert synced == []


def test_failed_writer_leaves_nothing_and_old_file(tmp_path: Path) -> None:
    dest = tmp_path / "out.tif"
    dest.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"), gio.atomic_destination(dest) as tmp:
        Path(tmp).write_bytes(b"partial")
        Path(tmp + ".ovr.tmp").write_bytes(b"partial")
        raise RuntimeError("boom")
    assert dest.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]
    with pytest.raises(RasterWriteError, match="produced no file"), gio.atomic_destination(dest):
        pass
    assert dest.read_bytes() == b"old"


def test_budget_arithmetic_cannot_overflow() -> None:
    required = gio.budget.check_read_bytes("x", (2**40, 2**40), "uint8", 2**200)
    assert required == 2**80 and math.log2(required) == 80
