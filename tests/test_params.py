"""georax.save / georax.load: YAML + content-addressed params file, verified, written atomically."""

from __future__ import annotations

import os
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml

import config_test_ops as tops
import georax as gx
from georax.core.config import ParamsRequiredError
from georax.core.hashing import config_hash, params_hash, pipeline_digest
from georax.core.params import PIPELINE_FILE, ParamsIntegrityError, load, save
from georax.core.yaml_io import loads_yaml

X = jax.random.uniform(jax.random.key(3), (3, 8, 8), jnp.float32)


def model_pipeline() -> gx.Sequential:
    model = tops.TinyMLP.init((3, 32, 16, 2), jax.random.key(0))  # 3*32 + 32*16 + ... weights
    return gx.Sequential([tops.Scale(gain=1.5, offset=0.1), gx.ModelOp(model)])


def params_file(directory: Path) -> Path:
    (found,) = directory.glob("params-*.eqx")
    return found


def test_save_load_round_trip_with_model_weights(tmp_path: Path) -> None:
    pipe = model_pipeline()
    saved = save(pipe, tmp_path / "artifact")
    assert saved.yaml_path.name == PIPELINE_FILE and saved.params_path.exists()
    doc = yaml.safe_load(saved.yaml_path.read_text())
    assert doc["digest"] == pipeline_digest(pipe) == saved.digest
    assert doc["params"]["file"] == saved.params_path.name
    assert saved.params_path.name.startswith(f"params-{doc['params']['sha256'][:16]}")
    # big weights are placeholders referenced by key, small ones inline
    model_cfg = doc["pipeline"]["operators"][1]["model"]
    assert model_cfg["_target_"] == "config_test_ops.TinyMLP"
    assert model_cfg["weights"][1] == {
        "_param_": "operators[1].model.weights[1]",
        "shape": [16, 32],
        "dtype": "float32",
    }
    assert doc["pipeline"]["operators"][0]["gain"] == 1.5

    back = load(tmp_path / "artifact")
    assert isinstance(back.operators[1].model, tops.TinyMLP)
    assert bool(eqx.tree_equal(back, pipe))
    assert pipeline_digest(back) == saved.digest
    np.testing.assert_array_equal(back(X), pipe(X))
    # load also accepts the YAML path and a pinned digest
    assert pipeline_digest(load(saved.yaml_path, expected_digest=saved.digest)) == saved.digest


def test_trained_and_derived_leaves_are_restored(tmp_path: Path) -> None:
    lut = tops.Lut(n=300, gamma=2.0)
    trained = eqx.tree_at(lambda o: o.table, lut, lut.table * 0.5 + 0.1)  # no longer derivable
    pipe = gx.Sequential([trained, tops.Kernel(weights=jnp.arange(4.0))])
    save(pipe, tmp_path)
    back = load(tmp_path)
    np.testing.assert_array_equal(back.operators[0].table, trained.table)
    assert not np.array_equal(back.operators[0].table, tops.Lut(n=300, gamma=2.0).table)
    assert params_hash(back) == params_hash(pipe)


def test_grad_flows_through_a_loaded_pipeline(tmp_path: Path) -> None:
    save(model_pipeline(), tmp_path)
    back = load(tmp_path)
    grads = eqx.filter_grad(lambda p: jnp.sum(p(X) ** 2))(back)
    assert float(jnp.abs(grads.operators[1].model.weights[0]).sum()) > 0


def test_tampered_params_file_is_refused(tmp_path: Path) -> None:
    save(model_pipeline(), tmp_path)
    f = params_file(tmp_path)
    data = bytearray(f.read_bytes())
    data[-5] ^= 0x01  # one bit of one weight
    f.write_bytes(bytes(data))
    with pytest.raises(ParamsIntegrityError, match="SHA-256"):
        load(tmp_path)
    f.write_bytes(bytes(data[:-10]))
    with pytest.raises(ParamsIntegrityError, match="bytes"):
        load(tmp_path)
    f.unlink()
    with pytest.raises(ParamsIntegrityError, match="missing"):
        load(tmp_path)


def test_consistent_forgery_is_still_caught(tmp_path: Path) -> None:
    """A params file replaced *and* re-registered in the YAML still fails the params hash."""
    save(model_pipeline(), tmp_path)
    other = tmp_path / "other"
    pipe = model_pipeline()
    w1 = pipe.operators[1].model.weights[1]  # a large (params-file) weight; inline ones equal
    different = eqx.tree_at(lambda p: p.operators[1].model.weights[1], pipe, w1 + 1.0)
    save(different, other)
    doc = yaml.safe_load((tmp_path / PIPELINE_FILE).read_text())
    forged = yaml.safe_load((other / PIPELINE_FILE).read_text())["params"]
    params_file(tmp_path).unlink()
    params_file(other).rename(tmp_path / forged["file"])
    doc["params"] = forged
    (tmp_path / PIPELINE_FILE).write_text(yaml.safe_dump(doc))
    with pytest.raises(ParamsIntegrityError, match="params_hash"):
        load(tmp_path)


def test_edited_inline_value_and_digest_are_caught(tmp_path: Path) -> None:
    save(model_pipeline(), tmp_path)
    path = tmp_path / PIPELINE_FILE
    original = path.read_text()
    path.write_text(original.replace("gain: 1.5", "gain: 2.5"))
    with pytest.raises(ParamsIntegrityError, match=r"disagree at operators\[0\]\.gain"):
        load(tmp_path)
    path.write_text(original)
    with pytest.raises(ParamsIntegrityError, match="expected"):
        load(tmp_path, expected_digest="0" * 64)
    doc = yaml.safe_load(original)
    doc["digest"] = "f" * 64
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ParamsIntegrityError, match="digest"):
        load(tmp_path)


def test_params_file_name_cannot_escape_the_directory(tmp_path: Path) -> None:
    save(model_pipeline(), tmp_path)
    doc = yaml.safe_load((tmp_path / PIPELINE_FILE).read_text())
    doc["params"]["file"] = "../../etc/passwd"
    (tmp_path / PIPELINE_FILE).write_text(yaml.safe_dump(doc))
    with pytest.raises(gx.errors.SerializationError, match="params"):
        load(tmp_path)


def test_saved_documents_need_load_not_loads_yaml(tmp_path: Path) -> None:
    saved = save(model_pipeline(), tmp_path)
    with pytest.raises(ParamsRequiredError, match=r"georax\.load"):
        loads_yaml(saved.yaml_path.read_text())


def test_resave_is_atomic_and_leaves_one_params_file(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    first = save(model_pipeline(), tmp_path)
    second_pipe = gx.Sequential(
        [tops.Scale(gain=3.0), gx.ModelOp(tops.TinyMLP.init((3, 20, 1), jax.random.key(5)))]
    )
    second = save(second_pipe, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [PIPELINE_FILE, second.params_path.name]
    )
    assert load(tmp_path, expected_digest=second.digest) is not None

    # A crash while replacing pipeline.yaml leaves the previous, complete pipeline loadable.
    real_replace = os.replace

    def crash_on_yaml(src: str, dst: str) -> None:
        if str(dst).endswith(PIPELINE_FILE):
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_yaml)
    with pytest.raises(OSError, match="disk full"):
        save(model_pipeline(), tmp_path)
    monkeypatch.setattr(os, "replace", real_replace)
    assert pipeline_digest(load(tmp_path)) == second.digest
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert first.digest != second.digest


def test_pipelines_without_arrays_and_plain_yaml(tmp_path: Path) -> None:
    pipe = gx.Sequential([gx.Identity(), tops.Clip(mode="tanh")])
    saved = save(pipe, tmp_path / "a")
    assert load(tmp_path / "a") == pipe
    assert saved.params_path.stat().st_size == 0
    plain = tmp_path / "plain.yaml"
    plain.write_text("{_target_: config_test_ops.Clip, mode: tanh}")
    assert load(plain) == tops.Clip(mode="tanh")
    assert config_hash(load(plain)) == config_hash(tops.Clip(mode="tanh"))


def test_unwritable_pipeline_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(gx.errors.SerializationError, match="Lambda"):
        save(gx.Sequential([gx.Lambda(lambda v: v)]), tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_sandboxed_load_applies_the_allow_list(tmp_path: Path) -> None:
    save(model_pipeline(), tmp_path)
    with pytest.raises(gx.errors.UntrustedTargetError) as e:
        load(tmp_path, allowed=gx.registry.public_operators())
    assert e.value.target in ("config_test_ops.Scale", "georax.Sequential", "georax.ModelOp")
    allowed = gx.registry.public_operators(include_modules=["georax", "config_test_ops"])
    back = load(tmp_path, allowed=allowed | {"georax.ModelOp"})
    np.testing.assert_array_equal(back(X), model_pipeline()(X))
