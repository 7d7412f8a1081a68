"""Chips sharded across devices: each device runs a share of the chips, canvases are summed.

With several devices (GPUs, TPU cores, or CPU "devices" from
``XLA_FLAGS=--xla_force_host_platform_device_count=N``) the chip positions are split along a
1-D mesh axis with :func:`jax.shard_map`; the scene is replicated, each device runs the fused
extract -> apply -> accumulate loop on its chips into a local canvas, and the canvases (and weight
sums) are combined with ``psum`` (``pmax`` for max aggregation) before the usual normalisation.
Overlap-add is a sum, so the result equals the single-device one up to float summation order.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from georax.core.carrier import Carrier, values_of
from georax.core.errors import ConfigError, ShapeError
from georax.patch.extract import crop_padding, pad_scene
from georax.patch.operators import Patchwise, chip_function, has_batch_loop
from georax.patch.patcher import Patcher
from georax.patch.stitch import finish_stitch, patchwise_accumulate

AXIS = "chips"


def chip_mesh(devices: Any = None) -> Mesh:
    """A 1-D :class:`jax.sharding.Mesh` named ``"chips"`` over ``devices`` (default: all)."""
    devs = np.asarray(jax.devices() if devices is None else list(devices))
    return Mesh(devs.reshape(-1), (AXIS,))


def _checked(op: Any, mesh: Mesh | None) -> tuple[Mesh, str]:
    """Validate the arguments; return the mesh to use and the aggregation kind."""
    if not isinstance(op, Patchwise):
        raise ConfigError("sharded_patchwise", "op", op, "must be a georax.patch.Patchwise")
    mesh = chip_mesh() if mesh is None else mesh
    if AXIS not in mesh.axis_names:
        raise ConfigError("sharded_patchwise", "mesh", mesh.axis_names, f"needs an {AXIS!r} axis")
    kind = op.patcher.aggregation.kind
    if kind == "by_index":
        raise ConfigError("sharded_patchwise", "aggregation", kind, "ByIndex is not stitched")
    return mesh, kind


def _whole_shards(
    positions: Any, devices: int, key: jax.Array | None
) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """Pad the chip list to a multiple of ``devices``: positions, a validity mask, per-chip keys.

    Padding chips sit at ``(0, 0)`` and are invalid, so they add nothing to any canvas.
    """
    pos = jnp.asarray(positions, jnp.int32)
    n = int(pos.shape[0])
    n_pad = -(-n // devices) * devices
    pos = jnp.concatenate([pos, jnp.zeros((n_pad - n, 2), jnp.int32)])
    valid = jnp.arange(n_pad) < n
    keys = None if key is None else jax.random.split(key, n_pad)
    return pos, valid, keys


def sharded_patchwise(
    op: Patchwise, x: Any, *, mesh: Mesh | None = None, key: jax.Array | None = None
) -> Any:
    """Run a :class:`Patchwise` with its chips sharded across the devices of ``mesh``.

    **Arguments:**

    - `op`: the patchwise operator (its patcher, inner operator and batch size are used).
    - `x`: the scene, array or GeoTensor (replicated on every device).
    - `mesh`: a 1-D mesh with axis ``"chips"`` (default :func:`chip_mesh` over all devices).
    - `key`: for random samplers and stochastic inner operators.

    **Returns:** the stitched scene like :meth:`Patchwise.__call__` (array or GeoTensor).
    Jit-compatible; ``ByIndex`` aggregation is not supported here (use ``jax.jit`` with a
    sharded chip stack instead).
    """
    mesh, kind = _checked(op, mesh)
    p: Patcher = op.patcher
    scene = p.check_scene(x)
    pads = p.pads(scene)
    xp = pad_scene(values_of(x), pads, p.padding, p.fill_value)
    k_pos, k_fn = (None, None) if key is None else tuple(jax.random.split(key))
    pos, offsets = p.layout(scene, k_pos)
    pos, valid, keys = _whole_shards(pos, int(mesh.shape[AXIS]), k_fn)
    weights = p.weights_1d()
    fn = chip_function(op.operator)
    cap = 0 if has_batch_loop(op.operator) else None

    def local(xr: jax.Array, pr: jax.Array, vr: jax.Array, kr: Any) -> tuple[jax.Array, ...]:
        canvas, norm = patchwise_accumulate(
            xr,
            fn,
            pr,
            p.chip,
            batch_size=op.batch_size,
            weights=weights,
            aggregation=kind,
            need_norm=offsets is None,
            valid=vr,
            keys=kr,
            max_unrolled=cap,
        )
        combine = jax.lax.pmax if kind == "max" else jax.lax.psum
        return combine(canvas, AXIS), jax.lax.psum(norm, AXIS)

    spec = PartitionSpec(AXIS)
    sharded = jax.shard_map(
        local,
        mesh=mesh,
        in_specs=(PartitionSpec(), spec, spec, None if keys is None else spec),
        out_specs=(PartitionSpec(), PartitionSpec()),
        check_vma=False,  # canvases start replicated and become per-device inside the loop
    )
    canvas, norm = sharded(xp, pos, valid, keys)
    if canvas.ndim < 2:
        raise ShapeError(f"stitched canvas has shape {canvas.shape}")
    out = finish_stitch(
        canvas,
        None if offsets is not None else norm,
        p.chip,
        weights=weights,
        aggregation=kind,
        offsets=offsets,
        fill_value=p.aggregation.fill_value,
    )
    out = crop_padding(out, pads, scene)
    return x.replace(values=out) if isinstance(x, Carrier) else out
