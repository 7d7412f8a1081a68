"""Orbax training checkpoints: keep the last K, restore into the abstract tree, resume after
``kill -9`` with the same final weights as an uninterrupted run."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import equinox as eqx
import numpy as np
import optax
import pytest
from flax import nnx

import georax as gx
from georax import learn as gl
from georax.errors import ConfigError, SerializationError

from _learn_models import TinySeg, pipeline, scenes

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(TESTS), env.get("PYTHONPATH", "")])
    return env


def _small_fit(ckpt: Path, steps: int, every: int = 1, keep: int = 2) -> gl.FitResult:
    xs, ys = scenes(1, 48)
    ds = gl.ChipDataset.from_scenes(xs, ys, chip=16)
    pipe = pipeline(width=4)
    step = gl.make_train_step(pipe, gl.sigmoid_cross_entropy, optax.adam(1e-2))
    ck = gl.Checkpointer(ckpt, every=every, keep=keep)
    try:
        return gl.fit(
            step, step.init(pipe), ds, batch_size=2, epochs=steps, steps_per_epoch=1,
            callbacks=[ck], progress=False,
        )  # fmt: skip
    finally:
        ck.close()


def test_checkpointer_keeps_the_last_k_and_restores_bit_identical(tmp_path: Path) -> None:
    result = _small_fit(tmp_path / "ck", steps=4, every=1, keep=2)
    ck = gl.Checkpointer(tmp_path / "ck", every=1, keep=2)
    assert ck.all_steps() == [3, 4] and ck.latest_step() == 4
    pipe = pipeline(width=4, seed=5)  # other initial weights: only shapes and dtypes are read
    step = gl.make_train_step(pipe, gl.sigmoid_cross_entropy, optax.adam(1e-2))
    fresh = step.init(pipe)
    restored, log = ck.restore(fresh)
    assert bool(eqx.tree_equal(restored, result.state))
    assert log.history == result.history and len(log.history) == 4
    older, old_log = ck.restore(fresh, step=3)
    assert int(older.step) == 3 and len(old_log.history) == 3
    assert not bool(eqx.tree_equal(older.pipeline, restored.pipeline))
    # resuming a finished run does no more steps and keeps the state
    again = _small_fit(tmp_path / "ck", steps=4, every=1, keep=2)
    assert bool(eqx.tree_equal(again.state, result.state)) and again.history == result.history
    ck.close()


# orbax leaves the reads of a refused restore as abandoned coroutines; their "never awaited"
# reports are noise here (the refusal itself is asserted).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_restore_refuses_a_state_that_does_not_fit(tmp_path: Path) -> None:
    _small_fit(tmp_path / "ck", steps=1)
    ck = gl.Checkpointer(tmp_path / "ck", every=1)
    wider = gx.Sequential([pipeline().operators[0], gx.ModelOp(TinySeg(6, 8, rngs=nnx.Rngs(0)))])
    step = gl.make_train_step(wider, gl.sigmoid_cross_entropy, optax.adam(1e-2))
    with pytest.raises(SerializationError, match=r"does not fit|do not match"):
        ck.restore(step.init(wider))
    sgd = gl.make_train_step(pipeline(width=4), gl.sigmoid_cross_entropy, optax.sgd(0.1))
    with pytest.raises(SerializationError, match=re.escape(str(tmp_path / "ck"))):
        ck.restore(sgd.init(pipeline(width=4)))  # another optimizer state
    ck.close()
    empty = gl.Checkpointer(tmp_path / "empty", every=1)
    with pytest.raises(SerializationError, match="no checkpoint in"):
        empty.restore(step.init(wider))
    empty.close()
    with pytest.raises(ConfigError, match="every"):
        gl.Checkpointer(tmp_path / "x", every=0)
    with pytest.raises(ConfigError, match="keep"):
        gl.Checkpointer(tmp_path / "x", every=2, keep=-1)


def _train_cmd(ckpt: Path, out: Path, *extra: str) -> list[str]:
    script = str(TESTS / "_learn_models.py")
    args = ["--ckpt", str(ckpt), "--out", str(out), "--steps", "12", "--every", "3"]
    return [sys.executable, script, "train", *args, *extra]


def test_kill_9_mid_run_then_resume_gives_the_weights_of_an_uninterrupted_run(
    tmp_path: Path,
) -> None:
    env = _env()
    # the uninterrupted reference run, alongside the run that will be killed
    reference = subprocess.Popen(
        _train_cmd(tmp_path / "ref_ckpt", tmp_path / "ref.npz"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    victim = subprocess.Popen(
        _train_cmd(tmp_path / "ckpt", tmp_path / "killed.npz", "--stall-at", "7"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    lines: list[str] = []

    def read() -> None:
        assert victim.stdout is not None
        for line in victim.stdout:
            lines.append(line.strip())
            if line.startswith("stalled at"):
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=300)
    try:
        assert lines and lines[-1] == "stalled at 7", "\n".join(lines)
        victim.send_signal(signal.SIGKILL)  # kill -9 after step 7; the last save was step 6
    finally:
        victim.kill()
        victim.wait(timeout=60)
    assert victim.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed.npz").exists()
    ck = gl.Checkpointer(tmp_path / "ckpt", every=3, keep=2)
    assert ck.all_steps() == [3, 6]
    ck.close()

    resumed = subprocess.run(
        _train_cmd(tmp_path / "ckpt", tmp_path / "resumed.npz"),
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert "start 6" in resumed.stdout.splitlines()  # it continued from the checkpoint
    ref_out, ref_err = reference.communicate(timeout=300)
    assert reference.returncode == 0, ref_err
    assert "start 0" in ref_out.splitlines()

    ref, got = np.load(tmp_path / "ref.npz"), np.load(tmp_path / "resumed.npz")
    assert sorted(ref.files) == sorted(got.files) and len(ref.files) > 4
    for name in ref.files:
        np.testing.assert_array_equal(got[name], ref[name], err_msg=name)  # bit-identical
