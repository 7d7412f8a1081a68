"""ModelOp with flax nnx and equinox models: weights as leaves, YAML + params, fresh processes."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import georax as gx
from georax import learn as gl
from georax.core.model import NnxModel, NnxModule
from georax.errors import (
    BudgetExceededError,
    ConfigError,
    SerializationError,
    UntrustedTargetError,
)

from _learn_models import EqxSeg, TinySeg, pipeline

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"


def _x(shape: tuple[int, ...] = (6, 16, 16), seed: int = 0) -> jax.Array:
    return jax.random.uniform(jax.random.key(seed), shape)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(TESTS), env.get("PYTHONPATH", "")])
    return env


def _allowed() -> frozenset[str]:
    """The sandbox allow-list that admits our model class and ModelOp (an explicit opt-in)."""
    return gx.registry.public_operators(include_modules=["georax", "_learn_models"]) | {
        "georax.ModelOp"
    }


# --------------------------------------------------------------------------------------
# Weights are leaves: jit, vmap and grad go through preprocess + model as one program
# --------------------------------------------------------------------------------------
def test_nnx_model_is_split_into_static_graph_and_array_leaves() -> None:
    net = TinySeg(6, 4, rngs=nnx.Rngs(0))
    op = gx.ModelOp(net)
    assert isinstance(op.model, NnxModel) and op.display_name == "ModelOp[TinySeg]"
    leaves = jax.tree.leaves(op)
    assert len(leaves) == 4  # conv kernel/bias, head kernel/bias: every weight is a leaf
    assert {k: tuple(v.shape) for k, v in op.model.params.items()} == {
        "conv.bias": (4,),
        "conv.kernel": (3, 3, 6, 4),
        "head.bias": (1,),
        "head.kernel": (1, 1, 4, 1),
    }
    # the graph definition is static: same architecture -> same tree structure (one compile)
    other = gx.ModelOp(TinySeg(6, 4, rngs=nnx.Rngs(1)))
    assert jax.tree.structure(op) == jax.tree.structure(other)
    x = _x()
    np.testing.assert_array_equal(op(x), net(x))
    np.testing.assert_array_equal(eqx.filter_jit(op)(x), net(x))


def test_nnx_model_in_a_pipeline_under_vmap_and_grad() -> None:
    pipe = pipeline(width=4)
    xs = jax.random.randint(jax.random.key(0), (3, 7, 16, 16), 0, 4000).astype(jnp.uint16)
    batched = jax.vmap(pipe)(xs)
    for i in range(3):
        np.testing.assert_allclose(batched[i], pipe(xs[i]), rtol=1e-6, atol=1e-6)

    def loss(p: gx.Sequential) -> jax.Array:
        return jnp.mean(jax.vmap(p)(xs) ** 2)

    grads = eqx.filter_grad(loss)(pipe)
    g = grads.operators[1].model.params
    # an independent reference: nnx's own split/merge and jax.grad on the nnx state
    net = pipe.operators[1].module
    graphdef, state = nnx.split(net)
    reflect = xs[:, :6].astype(jnp.float32) * jnp.float32(1e-4)

    def nnx_loss(s: nnx.State) -> jax.Array:
        return jnp.mean(jax.vmap(nnx.merge(graphdef, s))(reflect) ** 2)

    ref = nnx.to_pure_dict(jax.grad(nnx_loss)(state))
    np.testing.assert_allclose(g["conv.kernel"], ref["conv"]["kernel"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(g["head.bias"], ref["head"]["bias"], rtol=1e-5, atol=1e-7)
    assert all(float(jnp.abs(v).sum()) > 0 for v in g.values())


def test_other_methods_of_an_nnx_model() -> None:
    net = TinySeg(6, 4, rngs=nnx.Rngs(0))
    op = gx.ModelOp(net, method="probabilities")
    x = _x()
    np.testing.assert_allclose(op(x), jax.nn.sigmoid(net(x)), rtol=1e-6)
    with pytest.raises(ConfigError, match=r"TinySeg has no callable 'nope'"):
        gx.ModelOp(net, method="nope")


def test_georax_imports_without_flax_and_orbax() -> None:
    code = (
        "import sys, georax, georax.learn\n"
        "assert 'flax' not in sys.modules, 'flax imported'\n"
        "assert 'orbax' not in sys.modules, 'orbax imported'\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


# --------------------------------------------------------------------------------------
# YAML + params file, fresh processes, the sandbox
# --------------------------------------------------------------------------------------
def test_config_names_the_registered_class_and_its_hyper_parameters() -> None:
    cfg = gx.to_config(gx.ModelOp(TinySeg(6, 8, rngs=nnx.Rngs(0))), max_inline=16)
    model = cfg["model"]
    assert model["_target_"] == "_learn_models.TinySeg"
    assert (model["in_bands"], model["width"]) == (6, 8)
    assert model["params"]["conv.kernel"] == {
        "_param_": "model.params.conv.kernel",
        "shape": [3, 3, 6, 8],
        "dtype": "float32",
    }
    assert model["params"]["head.bias"]["_array_"] == [0.0]  # small arrays stay inline


_FRESH = textwrap.dedent(
    """
    import sys, numpy as np, georax as gx
    import _learn_models  # registers the model classes, as a deployment would
    directory, x_path, out_path = sys.argv[1:4]
    allowed = gx.registry.public_operators(include_modules=["georax", "_learn_models"])
    allowed = allowed | {"georax.ModelOp"}
    x = np.load(x_path)
    plain = gx.load(directory)
    sandboxed = gx.load(directory, allowed=allowed)
    with open(directory + "/inline.yaml") as f:  # every array inline: no params file needed
        text = gx.loads_yaml(f.read(), allowed=allowed)
    np.savez(out_path, plain=np.asarray(plain(x)), sandboxed=np.asarray(sandboxed(x)),
             text=np.asarray(text(x)))
    """
)


@pytest.mark.parametrize("kind", ["nnx", "equinox"])
def test_saved_model_pipeline_is_bit_identical_in_a_fresh_process(
    kind: str, tmp_path: Path
) -> None:
    if kind == "nnx":
        pipe = pipeline(width=16, seed=3)
    else:
        pre = pipeline().operators[0]
        model = EqxSeg(6, 16, key=jax.random.key(3))
        # "train" it a little: a new instance, made without the constructor
        model = eqx.tree_at(lambda m: m.conv.weight, model, model.conv.weight * 1.5 + 0.01)
        pipe = gx.Sequential([pre, gx.ModelOp(model)])
    saved = gx.save(pipe, tmp_path / "model")
    (tmp_path / "model" / "inline.yaml").write_text(gx.dumps_yaml(pipe, max_inline=None))
    assert saved.params_path.stat().st_size > 4 * 16 * 6 * 9  # the weights are in the file
    x = np.asarray(jax.random.randint(jax.random.key(1), (7, 40, 40), 0, 6000), np.uint16)
    np.save(tmp_path / "x.npy", x)
    out = subprocess.run(
        [sys.executable, "-c", _FRESH, str(tmp_path / "model"), str(tmp_path / "x.npy"),
         str(tmp_path / "y.npz")],
        capture_output=True, text=True, env=_env(), timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    got = np.load(tmp_path / "y.npz")
    here = np.asarray(pipe(x))
    np.testing.assert_array_equal(got["plain"], here)
    np.testing.assert_array_equal(got["sandboxed"], here)
    np.testing.assert_array_equal(got["text"], here)
    # and in this process, pinned to the digest
    back = gx.load(tmp_path / "model", allowed=_allowed(), expected_digest=saved.digest)
    np.testing.assert_array_equal(np.asarray(back(x)), here)


def test_unregistered_nnx_class_is_refused_when_saving(tmp_path: Path) -> None:
    class Plain(nnx.Module):
        def __init__(self, *, rngs: nnx.Rngs) -> None:
            self.lin = nnx.Linear(3, 2, rngs=rngs)

        def __call__(self, x: jax.Array) -> jax.Array:
            return self.lin(x)

    op = gx.ModelOp(Plain(rngs=nnx.Rngs(0)))
    assert isinstance(op.model, NnxModule)
    x = jnp.ones((4, 3))
    np.testing.assert_allclose(eqx.filter_jit(op)(x), op.module(x))  # usable in Python
    with pytest.raises(SerializationError, match=r"test_model_nnx\..*Plain.*not registered"):
        gx.save(gx.Sequential([op]), tmp_path / "p")


def test_unregistered_model_class_is_refused_when_loading() -> None:
    text = textwrap.dedent(
        """
        _target_: georax.ModelOp
        model: {_target_: _learn_models.NotAModel, width: 3, params: {}}
        """
    )
    with pytest.raises(UntrustedTargetError) as e:
        gx.loads_yaml(text)
    assert e.value.target == "_learn_models.NotAModel"
    with pytest.raises(UntrustedTargetError) as e:
        gx.loads_yaml(text, allowed=_allowed() | {"_learn_models.NotAModel"})
    assert e.value.target == "_learn_models.NotAModel"


def _small_doc(width: int = 2, kernel_shape: tuple[int, ...] = (3, 3, 6, 2)) -> str:
    k = "{_array_: [%s], dtype: float32, shape: %s}"
    n = int(np.prod(kernel_shape))
    return textwrap.dedent(
        f"""
        _target_: georax.ModelOp
        model:
          _target_: _learn_models.TinySeg
          in_bands: 6
          width: {width}
          params:
            conv.kernel: {k % (", ".join(["0.5"] * n), list(kernel_shape))}
            conv.bias: {{_array_: [0.0, 0.0], dtype: float32, shape: [2]}}
            head.kernel: {{_array_: [1.0, -1.0], dtype: float32, shape: [1, 1, 2, 1]}}
            head.bias: {{_array_: [0.25], dtype: float32, shape: [1]}}
        """
    )


def test_sandbox_loads_a_model_only_when_its_class_is_allowed() -> None:
    op = gx.loads_yaml(_small_doc(), allowed=_allowed())
    x = _x((6, 8, 8))
    h = jax.nn.relu(jax.lax.conv_general_dilated(
        x[None], jnp.full((2, 6, 3, 3), 0.5), (1, 1), "SAME"))[0]  # fmt: skip
    np.testing.assert_allclose(op(x), h[0:1] - h[1:2] + 0.25, rtol=1e-5, atol=1e-5)
    with pytest.raises(UntrustedTargetError) as e:
        gx.loads_yaml(_small_doc(), allowed=_allowed() - {"_learn_models.TinySeg"})
    assert e.value.target == "_learn_models.TinySeg"
    with pytest.raises(UntrustedTargetError) as e:  # ModelOp itself is an explicit opt-in
        gx.loads_yaml(_small_doc(), allowed=_allowed() - {"georax.ModelOp"})
    assert e.value.target == "georax.ModelOp"


def test_state_that_does_not_fit_the_architecture_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"TinySeg\.params.*conv\.kernel: expected float32\[3, 3, "
                       r"6, 2\], got float32\[3, 3, 6, 1\]"):  # fmt: skip
        gx.loads_yaml(_small_doc(kernel_shape=(3, 3, 6, 1)), allowed=_allowed())
    with pytest.raises(ConfigError, match=r"TinySeg\.params.*missing \['conv\.bias'"):
        gx.loads_yaml(_small_doc().replace("conv.bias", "conv.bogus"), allowed=_allowed())


def test_sandbox_bounds_model_hyper_parameters() -> None:
    huge = _small_doc().replace("width: 2", "width: 1000000000")
    with pytest.raises(BudgetExceededError, match=r"TinySeg\.width"):
        gx.loads_yaml(huge, allowed=_allowed())


def test_nnx_model_pickles() -> None:
    op = gx.ModelOp(TinySeg(6, 4, rngs=nnx.Rngs(5)))
    back = pickle.loads(pickle.dumps(op))
    x = _x()
    np.testing.assert_array_equal(back(x), op(x))
    assert gx.config_hash(back) == gx.config_hash(op)


def test_register_model_refuses_what_config_cannot_describe() -> None:
    class NoRngs(nnx.Module):
        def __init__(self, n: int) -> None:
            self.n = n

    class Star(nnx.Module):
        def __init__(self, *sizes: int, rngs: nnx.Rngs) -> None:
            self.sizes = sizes

    class Clash(nnx.Module):
        def __init__(self, params: int, *, rngs: nnx.Rngs) -> None:
            self.p = params

    class NoKey(eqx.Module):
        def __init__(self, n: int) -> None:
            pass

    for cls, problem in ((NoRngs, "rngs"), (Star, r"\*args"), (Clash, "params"), (NoKey, "key")):
        with pytest.raises(ConfigError, match=problem):
            gl.register_model(cls)
    with pytest.raises(ConfigError, match=r"nnx\.Module or equinox\.Module subclass"):
        gl.register_model(gx.Identity)


@pytest.mark.usefixtures("isolated_registry")
def test_models_holding_rng_state_cannot_be_deployed(tmp_path: Path) -> None:
    @gl.register_model
    class Drop(nnx.Module):
        def __init__(self, n: int, *, rngs: nnx.Rngs) -> None:
            self.lin = nnx.Linear(n, n, rngs=rngs)
            self.drop = nnx.Dropout(0.5, rngs=rngs)

        def __call__(self, x: jax.Array) -> jax.Array:
            return self.drop(self.lin(x), deterministic=True)

    op = gx.ModelOp(Drop(3, rngs=nnx.Rngs(0)))
    np.testing.assert_allclose(op(jnp.ones(3)), op.module(jnp.ones(3)))
    with pytest.raises(SerializationError, match=r"RNG keys.*drop\.rngs"):
        gx.save(gx.Sequential([op]), tmp_path / "d")


@pytest.mark.usefixtures("isolated_registry")
def test_a_module_changed_after_init_is_refused() -> None:
    @gl.register_model
    class Grow(nnx.Module):
        def __init__(self, n: int, *, rngs: nnx.Rngs) -> None:
            self.lin = nnx.Linear(n, n, rngs=rngs)

        def __call__(self, x: jax.Array) -> jax.Array:
            return self.lin(x)

    net = Grow(3, rngs=nnx.Rngs(0))
    net.extra = nnx.Linear(3, 3, rngs=nnx.Rngs(1))
    with pytest.raises(ConfigError, match=r"Grow"):
        gx.ModelOp(net)
