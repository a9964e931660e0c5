"""Multi-device training and inference: meshes, entity/data sharding, multi-host start-up.

Training. The loop's step is already written for N independent models on a leading entity axis
(`train/loop.py`); on a mesh with axes ('entity', 'data') the per-entity parameters and optimizer
state are split over 'entity' (independent models: no communication at all) and each entity's
minibatch over 'data' (data parallelism: XLA inserts the gradient all-reduce). `ShardedTrainer`
is a drop-in `loop.Trainer`, so the one loop, its checkpoints and resume are unchanged:

    mesh = distributed.training_mesh(n_entities=28, batch_size=64)     # e.g. 4 x 2 on 8 devices
    trainer = distributed.ShardedTrainer(task, cfg, mesh)
    res = loop.train(task, tr, va, cfg, workdir, trainer=trainer)

Inference. `ShardedInference` splits the query batch of a `pipeline.DevicePipeline` over every
device ('data' axis) with replicated parameters:

    infer = distributed.ShardedInference(pipe)      # all devices
    out = infer("Nd", t, r)                         # same dict as pipe(...)

Multi-host (several processes, one per host): call `initialize(True)` first in every process
(`jax.distributed.initialize()`, which reads the coordinator from the cluster environment or
takes it explicitly); `jax.devices()` then lists every host's devices and the same meshes span
them. Every process must hold the same host data (the generator is deterministic, so each host
generates it), which `put` turns into global arrays. The CPU test forces 8 host devices with
`XLA_FLAGS=--xla_force_host_platform_device_count=8`, set before jax is imported.

Meshes use `AxisType.Auto` axes (sharding propagated by the compiler): jax >= 0.7 defaults
`jax.make_mesh` to explicit axes, which the vmap'd step does not need.
"""

from __future__ import annotations

import contextlib
import math
from typing import Optional, Sequence

import jax
import numpy as np
from absl import logging
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from opacity_jax.serve.envelope import nan_rows
from opacity_jax.train import loop

# Set by bin/train --sharded: experiment.run_cae then trains the CAE with ShardedTrainer.
_DEFAULT = {"sharded": False}


def initialize(multi_host: bool = False, coordinator_address: Optional[str] = None,
               num_processes: Optional[int] = None, process_id: Optional[int] = None,
               initialization_timeout_s: Optional[int] = None) -> dict:
    """Start multi-host JAX when `multi_host` (a no-op otherwise); call before any computation.

    Args:
      multi_host: run `jax.distributed.initialize`. coordinator_address ('host:port'),
        num_processes, process_id: passed through when given (None = auto-detected on SLURM,
        Open MPI, Kubernetes/TPU environments). initialization_timeout_s: how long [s] to wait
        for every process to connect (None = jax's default, 300 s).
    Returns:
      {'process_index', 'process_count', 'local_devices', 'global_devices'}.
    """
    if multi_host:
        kw = {k: v for k, v in (("coordinator_address", coordinator_address),
                                ("num_processes", num_processes),
                                ("process_id", process_id),
                                ("initialization_timeout", initialization_timeout_s))
              if v is not None}
        jax.distributed.initialize(**kw)
    return {"process_index": jax.process_index(), "process_count": jax.process_count(),
            "local_devices": jax.local_device_count(), "global_devices": jax.device_count()}


def make_mesh(shape: Sequence[int], names: Sequence[str], devices=None):
    """`jax.make_mesh` with Auto axes where the installed jax has axis types.

    Args: shape: devices per axis (product <= device count); names: axis names.
    """
    shape, names = tuple(int(s) for s in shape), tuple(names)
    kw = {}
    if devices is not None:
        kw["devices"] = list(devices)[: math.prod(shape)]
    elif math.prod(shape) < jax.device_count():
        kw["devices"] = jax.devices()[: math.prod(shape)]
    if hasattr(jax.sharding, "AxisType"):
        kw["axis_types"] = (jax.sharding.AxisType.Auto,) * len(shape)
    return jax.make_mesh(shape, names, **kw)


def use_mesh(mesh):
    """Context manager making `mesh` current (jax.set_mesh on jax >= 0.7, else use_mesh, else
    the Mesh's own context). Not required by the helpers here, which pass shardings explicitly."""
    if hasattr(jax, "set_mesh"):
        return jax.set_mesh(mesh)
    if hasattr(jax.sharding, "use_mesh"):
        return jax.sharding.use_mesh(mesh)
    return mesh if hasattr(mesh, "__enter__") else contextlib.nullcontext()


def training_mesh(n_entities: int, batch_size: int, n_devices: Optional[int] = None):
    """('entity', 'data') mesh for `n_entities` models with minibatches of `batch_size`.

    The entity axis takes gcd(n_entities, n_devices) devices (shards must be equal), the data
    axis the largest divisor of the rest that divides batch_size; leftover devices stay idle
    (logged). E.g. 28 entities, batch 64, 8 devices -> 4 x 2.
    """
    n = int(n_devices or jax.device_count())
    ent, data = mesh_shape(n_entities, batch_size, n)
    if ent * data < n:
        logging.warning("training mesh uses %d of %d devices (%d entities, batch %d)",
                        ent * data, n, n_entities, batch_size)
    return make_mesh((ent, data), ("entity", "data"))


def mesh_shape(n_entities: int, batch_size: int, n_devices: int) -> tuple:
    """(entity, data) axis sizes used by `training_mesh` (see there)."""
    ent = math.gcd(int(n_entities), int(n_devices))
    rest = int(n_devices) // ent
    data = max(d for d in range(1, rest + 1) if rest % d == 0 and int(batch_size) % d == 0)
    return ent, data


def inference_mesh(n_devices: Optional[int] = None):
    """1-D ('data',) mesh over the first n_devices devices (default all)."""
    return make_mesh((int(n_devices or jax.device_count()),), ("data",))


def put(x, sharding):
    """Host or device array -> global array with `sharding` (works multi-host when every
    process holds the same full value)."""
    if isinstance(x, jax.Array) and x.sharding == sharding:
        return x
    if jax.process_count() == 1:
        return jax.device_put(x, sharding)
    a = np.asarray(x)
    return jax.make_array_from_callback(a.shape, sharding, lambda idx: a[idx])


def shard_entity_tree(tree, mesh, axis: str = "entity"):
    """Put every leaf of a leading-entity-axis pytree on `mesh`, dim 0 split over `axis`
    (0-d leaves replicated)."""
    def one(a):
        spec = P(axis) if np.ndim(a) >= 1 else P()
        return put(a, NamedSharding(mesh, spec))
    return jax.tree_util.tree_map(one, tree)


def replicate_tree(tree, mesh):
    """Put every leaf of a pytree on every device of `mesh`."""
    rep = NamedSharding(mesh, P())
    return jax.tree_util.tree_map(lambda a: put(a, rep), tree)


class ShardedTrainer(loop.Trainer):
    """`loop.Trainer` whose state lives on a ('entity', 'data') mesh (see module docstring).

    Pass it to `loop.train(..., trainer=ShardedTrainer(task, cfg, mesh))`. Results equal the
    single-device trainer's up to the order of floating-point reductions over the batch.
    """

    def __init__(self, task, cfg: loop.LoopConfig, mesh):
        self.mesh = mesh
        self._ent = NamedSharding(mesh, P("entity"))
        self._batch = NamedSharding(mesh, P("entity", "data"))
        self._rep = NamedSharding(mesh, P())
        self._cache: dict = {}
        super().__init__(task, cfg)
        step = self._step

        def step_global(*args):
            # Host-side per-step inputs (indices, scalars) become global arrays, which is what a
            # multi-process jit needs; on one process this is a cheap device_put.
            return step(*jax.tree_util.tree_map(self._as_global, args))

        self._step = step_global

    def _as_global(self, a):
        if isinstance(a, jax.Array) and a.sharding.device_set == self._rep.device_set:
            return a
        a = np.asarray(a)
        if a.ndim >= 1 and a.shape[0] % self.mesh.shape["entity"] == 0:
            return put(a, self._ent)
        return put(a, self._rep)

    def _arrays(self, device_arrays):
        # The loop hands over single-device copies of the data; replicate each dict once.
        key = id(device_arrays)
        if key not in self._cache:
            self._cache = {key: (device_arrays, replicate_tree(
                {k: np.asarray(v) for k, v in device_arrays.items()}, self.mesh))}
        return self._cache[key][1]

    def shard_state(self, state: dict) -> dict:
        """Loop state with params / optimizer state / best params split over 'entity'."""
        out = dict(state)
        for k in ("params", "opt_state", "best_params"):
            out[k] = shard_entity_tree(state[k], self.mesh)
        return out

    def init(self, data):
        """As `loop.Trainer.init`, with the state placed on the mesh."""
        return self.shard_state(super().init(data))

    def _step_impl(self, params, opt_state, lr_scale, active, step, loss_sum, n_sum, arrays,
                   rows, ids, idx_s, w_s):
        c = jax.lax.with_sharding_constraint
        idx_s, w_s = c(idx_s, self._batch), c(w_s, self._batch)
        out = super()._step_impl(params, opt_state, lr_scale, active, step, loss_sum, n_sum,
                                 arrays, rows, ids, idx_s, w_s)
        params, opt_state = out[0], out[1]
        params = jax.tree_util.tree_map(lambda a: c(a, self._ent), params)
        opt_state = jax.tree_util.tree_map(
            lambda a: c(a, self._ent) if a.ndim >= 1 else a, opt_state)
        return (params, opt_state) + tuple(out[2:])

    def run_epoch(self, state, data, device_arrays, epoch: int):
        """As `loop.Trainer.run_epoch` on the mesh (a restored host state is re-sharded)."""
        return super().run_epoch(self.shard_state(state), data, self._arrays(device_arrays),
                                 epoch)

    def evaluate(self, params, data, device_arrays):
        """As `loop.Trainer.evaluate`, on the mesh."""
        loss, metrics = self._eval(shard_entity_tree(params, self.mesh),
                                   self._arrays(device_arrays),
                                   self._as_global(np.asarray(data.entity_row)),
                                   self._as_global(np.asarray(data.entity_counts())))
        return _host(loss), {k: _host(v) for k, v in metrics.items()}


def enable_default_sharding(enabled: bool = True) -> None:
    """Make `default_trainer` return a ShardedTrainer (bin/train --sharded)."""
    _DEFAULT["sharded"] = bool(enabled)


def default_trainer(task, cfg: loop.LoopConfig, n_entities: int):
    """ShardedTrainer on `training_mesh(n_entities, cfg.batch_size)` when default sharding is on
    and more than one device is visible; None (= the plain loop.Trainer) otherwise."""
    if not _DEFAULT["sharded"] or jax.device_count() == 1:
        return None
    mesh = training_mesh(n_entities, cfg.batch_size)
    logging.warning("sharded training on mesh %s", dict(mesh.shape))
    return ShardedTrainer(task, cfg, mesh)


def data_parallel_check(sharded: bool = True, epochs: int = 2) -> dict:
    """Train a tiny 3-element CAE on fixed random data; the multi-host smoke test.

    With `sharded`, `ShardedTrainer` on `training_mesh(3, 4)` over every device of every process:
    3 entities leave the 'entity' axis at 1, so the minibatch is split over all devices ('data')
    and every step all-reduces gradients across processes (`bin/multihost_check` runs it after
    `initialize(True, ...)`). Without, the plain single-device `loop.Trainer`: the reference
    the sharded run must equal up to float32 reduction order.

    Returns:
      {'params': list of numpy arrays (the final parameters' leaves in tree order, leading
      entity axis 3), 'best_val': (3,) validation loss, 'train_loss': (epochs, 3) mean
      training loss per epoch, 'mesh': {axis: size} or None, 'process_count',
      'global_devices'}.
    """
    from opacity_jax.models.cae import CAE
    from opacity_jax.train import experiment
    from opacity_jax.train.task import pack_ragged

    rng = np.random.default_rng(0)
    ys = [rng.normal(size=(int(rng.integers(12, 20)), 16)).astype(np.float32) for _ in range(3)]
    tr = pack_ragged([{"x": y} for y in ys])
    va = pack_ragged([{"x": y[:6]} for y in ys])
    task = experiment.cae_task(CAE(n_bins=16, latent_dim=2, channels=(4, 4), kernel=3),
                               "wmse", 50.0)
    cfg = loop.LoopConfig(epochs=int(epochs), batch_size=4, learning_rate=1e-2)
    mesh = training_mesh(3, cfg.batch_size) if sharded else None
    trainer = ShardedTrainer(task, cfg, mesh) if sharded else None
    res = loop.train(task, tr, va, cfg, progress=False, trainer=trainer)
    return {"params": [_host(a) for a in jax.tree_util.tree_leaves(res.last_params)],
            "best_val": np.asarray(res.best_val),
            "train_loss": np.asarray([h["train_loss"] for h in res.history]),
            "mesh": dict(mesh.shape) if mesh is not None else None,
            "process_count": jax.process_count(), "global_devices": jax.device_count()}


def _host(x) -> np.ndarray:
    """Global array -> numpy on every process."""
    if jax.process_count() > 1 and not x.is_fully_addressable:
        from jax.experimental import multihost_utils
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


class ShardedInference:
    """A `DevicePipeline` with its query batch split over a 1-D ('data',) mesh.

    Args:
      pipe: `pipeline.DevicePipeline`. mesh: 1-D mesh (default: every device).
    Call as the pipeline: (element, T (N,), rho (N,)) -> dict of numpy arrays; N is padded to a
    multiple of the device count with copies of the first query and trimmed afterwards.
    """

    def __init__(self, pipe, mesh=None):
        self.pipe = pipe
        self.mesh = mesh if mesh is not None else inference_mesh()
        axis = self.mesh.axis_names
        self._data = NamedSharding(self.mesh, P(axis))
        self._rep = NamedSharding(self.mesh, P())
        self.params = replicate_tree(pipe.params, self.mesh)
        self._fn = jax.jit(pipe.apply, out_shardings=self._data)

    def apply(self, element_pos: int, t: np.ndarray, r: np.ndarray) -> dict:
        """Unvalidated sharded call: element position, (N,) T [eV], (N,) rho [g/cm^3]."""
        t = np.atleast_1d(np.asarray(t, np.float32))
        r = np.atleast_1d(np.asarray(r, np.float32))
        n = t.size
        m = -(-n // self.mesh.size) * self.mesh.size
        pad = lambda a: np.concatenate([a, np.full(m - n, a[0], a.dtype)])
        out = self._fn(self.params, put(np.int32(element_pos), self._rep),
                       put(pad(t), self._data), put(pad(r), self._data))
        return {k: _host(v)[:n] for k, v in out.items()}

    def __call__(self, element, temperature_ev, density_gcc) -> dict:
        """Validated query, as `DevicePipeline.__call__`."""
        v = self.pipe._validate
        if v is not None:
            pos, t, r, nan = v.check_query(element, temperature_ev, density_gcc)
        else:
            pos = self.pipe.element_position(element)
            t, r = np.broadcast_arrays(np.atleast_1d(temperature_ev), np.atleast_1d(density_gcc))
            nan = np.zeros(t.shape, bool)
        return {k: nan_rows(v_, nan) for k, v_ in self.apply(pos, t, r).items()}
