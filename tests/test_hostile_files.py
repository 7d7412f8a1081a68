"""Hostile input, causes 4 and 6: what ``gx.load`` and ``georax validate`` read and build.

Cause 4: special files are refused without being read, and reads are capped at the limit.
Cause 6: a saved pipeline is rebuilt with its real parameter values, and validated on them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest
import yaml

import config_test_ops as tops
import georax as gx
from georax.cli import main
from georax.core.files import read_regular_file
from georax.core.params import ParamsIntegrityError, load, save
from georax.core.sandbox import SANDBOX_LIMITS, Limits, SandboxLimitError
from georax.errors import ConfigError, SerializationError

CAP_S = 20.0  # a hang guard for the subprocess checks, not a benchmark


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


# --------------------------------------------------------------------------------------
# Cause 4: reads without size caps, special files not refused
# --------------------------------------------------------------------------------------
def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = _fifo(tmp_path / "pipeline.yaml")
    done = threading.Event()
    errors: list[BaseException] = []

    def attempt() -> None:
        try:
            load(tmp_path)
        except BaseException as e:
            errors.append(e)
        done.set()

    threading.Thread(target=attempt, daemon=True).start()
    assert done.wait(CAP_S), "gx.load blocked on a FIFO"
    assert isinstance(errors[0], SerializationError) and "not a regular file" in str(errors[0])
    del fifo


def test_devices_and_links_to_them_are_refused(tmp_path: Path) -> None:
    link = tmp_path / "pipeline.yaml"
    link.symlink_to("/dev/zero")
    with pytest.raises(SerializationError, match="character device"):
        load(tmp_path)
    with pytest.raises(SerializationError, match="directory"):
        read_regular_file(tmp_path, 100, "pipeline document")


def test_reads_stop_at_the_limit(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as f:  # 1 GB, sparse: refused from its size, never read whole
        f.truncate(2**30)
    with pytest.raises(SandboxLimitError) as e:
        load(big, limits=SANDBOX_LIMITS)
    assert e.value.limit == "max_bytes" and e.value.maximum == SANDBOX_LIMITS.max_bytes
    small = tmp_path / "small.yaml"
    small.write_bytes(b"x" * 100)
    assert read_regular_file(small, 100, "doc") == b"x" * 100
    with pytest.raises(SandboxLimitError):
        read_regular_file(small, 99, "doc")


def test_a_params_file_swapped_for_dev_zero_is_refused(tmp_path: Path) -> None:
    saved = save(gx.Sequential([tops.Kernel(weights=jnp.ones(1000))]), tmp_path / "s")
    doc = yaml.safe_load(saved.yaml_path.read_text())
    doc["params"]["bytes"] = 0  # what the attacker records alongside the swap
    saved.yaml_path.write_text(yaml.safe_dump(doc))
    saved.params_path.unlink()
    saved.params_path.symlink_to("/dev/zero")
    with pytest.raises(ParamsIntegrityError, match="not a regular file"):
        load(tmp_path / "s")


def test_a_recorded_params_size_over_the_limit_is_refused_unread(tmp_path: Path) -> None:
    saved = save(gx.Sequential([tops.Kernel(weights=jnp.ones(1000))]), tmp_path / "s")
    with pytest.raises(ParamsIntegrityError, match="max_params_bytes"):
        load(tmp_path / "s", limits=Limits(max_params_bytes=100))
    del saved


def test_validate_refuses_special_files_with_a_message(tmp_path: Path) -> None:
    fifo = _fifo(tmp_path / "upload.yaml")
    proc = subprocess.run(
        [sys.executable, "-m", "georax.cli", "validate", str(fifo), "--sandbox"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "not a regular file" in proc.stderr and "Traceback" not in proc.stderr


# --------------------------------------------------------------------------------------
# Cause 6: saved pipelines load with their real values, validated
# --------------------------------------------------------------------------------------
def test_large_validated_leaves_round_trip(tmp_path: Path) -> None:
    # Placeholders used to be zeros, so a check like "all > 0" failed on load.
    pipe = gx.Sequential([tops.Positive(weights=jnp.arange(1.0, 301.0))])
    save(pipe, tmp_path)
    back = load(tmp_path)
    assert bool(eqx.tree_equal(back, pipe))
    np.testing.assert_array_equal(back.operators[0].weights, np.arange(1.0, 301.0))


def test_loading_validates_the_real_values(tmp_path: Path) -> None:
    valid = tops.Positive(weights=jnp.ones(300))
    invalid = eqx.tree_at(lambda o: o.weights, valid, -jnp.ones(300))  # bypasses __check_init__
    save(gx.Sequential([invalid]), tmp_path)
    with pytest.raises(ConfigError) as e:
        load(tmp_path)
    assert (e.value.operator, e.value.field) == ("Positive", "weights")


def test_validate_a_saved_directory_under_the_sandbox_limits(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    big = 2 * SANDBOX_LIMITS.max_array_elements
    save(gx.Sequential([tops.Kernel(weights=jnp.ones(big))]), tmp_path / "s")
    args = ["validate", str(tmp_path / "s"), "--import", "config_test_ops"]
    assert main(args) == 0
    assert main([*args, "--sandbox", "--allow", "config_test_ops.Kernel"]) == 1
    assert "max_array_elements" in capsys.readouterr().err
