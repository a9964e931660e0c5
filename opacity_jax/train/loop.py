"""The one training loop: N independent models trained together on a leading entity axis.

The per-model Adam step is written once, lifted with `jax.vmap` and compiled once with `jax.jit`;
an epoch dispatches that step over the shuffled batches. Each entity (element, molecule, ensemble
member, or element x member) has its own:

* data row (padding + masks: a fully padded batch is a no-op for that entity, so an entity with
  fewer samples simply finishes its epoch earlier);
* PRNG stream, `fold_in(fold_in(key(seed), entity_id), entity_step)`, and host-side shuffles
  seeded by (seed, entity_id, epoch) - so an entity trains identically alone or beside others;
* early stopping (best parameters, patience) and reduce-LR-on-plateau (an LR scale applied to the
  Adam update); stopped entities are masked, not retrained.

Checkpoints (orbax, `train/checkpoint.py`) hold the full loop state, so a run killed at any point
resumes from its workdir and ends bit-identical to an uninterrupted one. A non-finite loss stops
training with `TrainingDiverged`, keeping the last good checkpoint.

Each stage's checkpoints record what the stage is fitted on (`stage_digest`: its training and
validation arrays, its initial parameters - which hold any upstream stage's parameters a warm
start or a frozen part takes -, the loop settings other than the budget, the task name and the
caller's metadata). A checkpoint fitted on anything else is stale: the stage is re-fitted from
scratch, never resumed (unless its folder holds a `WARM_START` file: a deliberate warm start,
used once). The stale checkpoints are set aside (`checkpoints/<label>.replaced`) rather than
deleted until the re-fit has a checkpoint of its own: a re-fit that fails (a diverging loss)
puts them back with their metric logs, and so does the next run after one killed before its
first checkpoint, so a failed attempt never costs the workdir the model it serves. `max_seconds` counts training time only: the first call
of each compiled function (its compilation) is not charged.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from opacity_jax.train import workdir as workdir_lib
from opacity_jax.train.checkpoint import Checkpointer, tree_digest
from opacity_jax.train.metrics_writer import MetricWriter
from opacity_jax.train.task import EntityData, Task


# A training or validation loss became NaN/Inf (defined with the package's other boundary
# errors, so bin/ scripts report it in one line).
from opacity_jax.errors import TrainingDiverged  # noqa: E402


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """Hyper-parameters of the loop (see configs/*.py `train` sections).

    epochs: maximum epochs; batch_size: samples per entity per step; learning_rate: Adam step;
    weight_decay: decoupled (AdamW) decay, 0 = plain Adam; grad_clip: global-norm clip or 0;
    patience: early-stopping patience in evaluations (0 = off); min_delta: relative improvement
    that counts; plateau_patience / plateau_factor / min_lr_scale: reduce-on-plateau (0 = off);
    eval_every: epochs between validations; checkpoint_every: epochs between checkpoints;
    seed: PRNG seed; max_seconds: training-time budget of one call [s] (0 = none; compilation
    not counted), checked between epochs.
    """

    epochs: int = 100
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 0.0
    patience: int = 0
    min_delta: float = 1e-4
    plateau_patience: int = 0
    plateau_factor: float = 0.5
    min_lr_scale: float = 1e-3
    eval_every: int = 1
    checkpoint_every: int = 50
    seed: int = 0
    max_seconds: float = 0.0

    @classmethod
    def from_config(cls, cfg, seed: Optional[int] = None) -> "LoopConfig":
        """Build from a mapping / ConfigDict, rejecting unknown keys and bad values; `seed`
        (the run's top-level seed) is used when the section sets none."""
        d = dict(cfg)
        if seed is not None:
            d.setdefault("seed", seed)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown train config keys {unknown}; allowed: {sorted(names)}")
        ints = {"epochs", "batch_size", "patience", "plateau_patience", "eval_every",
                "checkpoint_every", "seed"}
        for name, v in d.items():
            kind = (int,) if name in ints else (int, float)
            if isinstance(v, bool) or not isinstance(v, kind + (np.integer, np.floating)):
                raise ValueError(f"train.{name} = {v!r} must be "
                                 f"{'an integer' if name in ints else 'a number'}")
            if name in ints and float(v) != int(v):
                raise ValueError(f"train.{name} = {v!r} must be an integer")
        out = cls(**d)
        fin = lambda x: bool(np.isfinite(x))
        checks = [("epochs", out.epochs >= 1, ">= 1"), ("batch_size", out.batch_size >= 1, ">= 1"),
                  ("learning_rate", fin(out.learning_rate) and out.learning_rate > 0,
                   "finite and > 0"),
                  ("weight_decay", fin(out.weight_decay) and out.weight_decay >= 0,
                   "finite and >= 0"),
                  ("grad_clip", fin(out.grad_clip) and out.grad_clip >= 0, "finite and >= 0"),
                  ("patience", out.patience >= 0, ">= 0"),
                  ("min_delta", fin(out.min_delta) and out.min_delta >= 0, "finite and >= 0"),
                  ("plateau_patience", out.plateau_patience >= 0, ">= 0"),
                  ("plateau_factor", 0 < out.plateau_factor < 1, "in (0, 1)"),
                  ("min_lr_scale", 0 < out.min_lr_scale <= 1, "in (0, 1]"),
                  ("eval_every", out.eval_every >= 1, ">= 1"),
                  ("checkpoint_every", out.checkpoint_every >= 1, ">= 1"),
                  ("max_seconds", fin(out.max_seconds) and out.max_seconds >= 0,
                   "finite and >= 0 (0 = no budget)")]
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"train.{name} = {getattr(out, name)!r} is out of range "
                                 f"(allowed: {allowed})")
        return out


@dataclasses.dataclass
class TrainResult:
    """Outcome of `train`.

    params: best (lowest validation loss) params per entity, leading entity axis.
    last_params: params after the final epoch.
    best_val: (n_entities,) best validation loss; stopped_epoch: (n_entities,) epoch at which each
    entity stopped (-1 = never); epochs_run: epochs completed; history: per-evaluation records;
    seconds: wall time of the call [s]; fitted_on: `stage_digest` of the stage's inputs;
    compile_seconds: time of this call spent in first (compiling) calls [s].
    """

    params: Any
    last_params: Any
    best_val: np.ndarray
    stopped_epoch: np.ndarray
    epochs_run: int
    history: list
    seconds: float
    fitted_on: str = ""
    compile_seconds: float = 0.0


def make_optimizer(cfg: LoopConfig) -> optax.GradientTransformation:
    """Adam (or AdamW with weight decay), optionally with global-norm clipping."""
    opt = (optax.adamw(cfg.learning_rate, weight_decay=cfg.weight_decay) if cfg.weight_decay > 0
           else optax.adam(cfg.learning_rate))
    if cfg.grad_clip > 0:
        opt = optax.chain(optax.clip_by_global_norm(cfg.grad_clip), opt)
    return opt


def epoch_indices(counts: np.ndarray, entity_ids: np.ndarray, batch_size: int, seed: int,
                  epoch: int):
    """Shuffled sample indices per entity: (steps, n_entities, batch) idx and 0/1 weights.

    Entity e's order depends only on (seed, entity_ids[e], epoch, counts[e]); slots past its
    count are padding (weight 0), so steps beyond ceil(count / batch) are no-ops for it.
    """
    n_ent = counts.size
    steps = max(1, int(math.ceil(counts.max(initial=1) / batch_size)))
    idx = np.full((n_ent, steps * batch_size), -1, np.int64)
    for e in range(n_ent):
        rng = np.random.default_rng([int(seed), int(entity_ids[e]), int(epoch)])
        idx[e, :counts[e]] = rng.permutation(int(counts[e]))
    idx = idx.reshape(n_ent, steps, batch_size).transpose(1, 0, 2)
    return np.maximum(idx, 0).astype(np.int32), (idx >= 0).astype(np.float32)


def _where_tree(mask, new, old):
    def pick(n, o):
        m = jnp.reshape(mask, mask.shape + (1,) * (n.ndim - mask.ndim))
        return jnp.where(m, n, o)
    return jax.tree_util.tree_map(pick, new, old)


def _gather(arrays, rows, idx):
    return {k: v[rows[:, None], idx] for k, v in arrays.items()}


class Trainer:
    """Compiled pieces of the loop for one task/optimizer (reusable across calls)."""

    def __init__(self, task: Task, cfg: LoopConfig):
        self.task, self.cfg = task, cfg
        self.tx = make_optimizer(cfg)
        self._step = jax.jit(self._step_impl, donate_argnums=(0, 1))
        self._eval = jax.jit(self._eval_impl)
        # Seconds spent in the first call of each compiled function per input shape (= its
        # compilation), which training budgets do not count.
        self.compile_seconds = 0.0
        self._compiled = set()

    def _timed(self, key, fn, *args):
        """fn(*args); the first call per `key` is timed to completion as compilation."""
        if key in self._compiled:
            return fn(*args)
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        self.compile_seconds += time.perf_counter() - t0
        self._compiled.add(key)
        return out

    def init(self, data: EntityData):
        """Initial loop state for the entities of `data`."""
        key = jax.random.key(self.cfg.seed)
        keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.asarray(data.entity_ids))
        example = {k: jnp.asarray(v[data.entity_row, :1]) for k, v in data.arrays.items()}
        example["weight"] = jnp.ones((data.n_entities, 1), jnp.float32)
        # jit: an eager vmap'd init compiles every op separately (seconds per call).
        params = jax.jit(jax.vmap(self.task.init))(keys, example)
        opt_state = jax.jit(jax.vmap(self.tx.init))(params)
        n = data.n_entities
        return {
            "params": params, "opt_state": opt_state, "best_params": params,
            "best_val": np.full(n, np.inf, np.float32), "wait": np.zeros(n, np.int32),
            "plateau_wait": np.zeros(n, np.int32), "lr_scale": np.ones(n, np.float32),
            "stopped": np.zeros(n, bool), "stopped_epoch": np.full(n, -1, np.int32),
            "step": np.zeros(n, np.int32), "epoch": np.asarray(0, np.int32),
        }

    def _entity_step(self, params, opt_state, lr_scale, active, step, batch, key):
        (loss, _), grads = jax.value_and_grad(self.task.loss, has_aux=True)(params, batch, key)
        updates, new_opt = self.tx.update(grads, opt_state, params)
        # Adam's update is linear in the learning rate, so scaling it is reduce-LR-on-plateau.
        updates = jax.tree_util.tree_map(lambda u: u * lr_scale, updates)
        new_params = optax.apply_updates(params, updates)
        go = active & (jnp.sum(batch["weight"]) > 0)
        params = _where_tree(go, new_params, params)
        opt_state = _where_tree(go, new_opt, opt_state)
        return params, opt_state, step + go.astype(step.dtype), jnp.where(go, loss, 0.0), go

    def _step_impl(self, params, opt_state, lr_scale, active, step, loss_sum, n_sum, arrays,
                   rows, ids, idx_s, w_s):
        """One vmap'd step for every entity. (A lax.scan over a whole epoch is ~20x slower on
        XLA:CPU, whose convolutions inside loops miss the fast kernels, so steps are dispatched
        from Python; the dispatch is asynchronous and negligible next to the step.)"""
        base = jax.random.key(self.cfg.seed)
        batch = _gather(arrays, rows, idx_s)
        batch["weight"] = w_s
        keys = jax.vmap(lambda i, s: jax.random.fold_in(jax.random.fold_in(base, i), s))(ids, step)
        params, opt_state, step, loss, go = jax.vmap(self._entity_step)(
            params, opt_state, lr_scale, active, step, batch, keys)
        return params, opt_state, step, loss_sum + loss, n_sum + go

    def _eval_impl(self, params, arrays, rows, counts):
        n_max = next(iter(arrays.values())).shape[1]
        idx = jnp.broadcast_to(jnp.arange(n_max), (rows.shape[0], n_max))
        batch = _gather(arrays, rows, idx)
        batch["weight"] = (idx < counts[:, None]).astype(jnp.float32)
        loss, metrics = jax.vmap(self.task.evaluation_loss)(params, batch)
        return loss, metrics

    def run_epoch(self, state, data: EntityData, device_arrays, epoch: int):
        """One epoch for every active entity; returns new state and (n_entities,) train loss."""
        idx, w = epoch_indices(data.entity_counts(), data.entity_ids, self.cfg.batch_size,
                               self.cfg.seed, epoch)
        active = jnp.asarray(~np.asarray(state["stopped"]))
        lr_scale = jnp.asarray(state["lr_scale"])
        rows, ids = jnp.asarray(data.entity_row), jnp.asarray(data.entity_ids)
        # Copies, because the step donates (reuses) its parameter and optimizer buffers.
        params = jax.tree_util.tree_map(jnp.array, state["params"])
        opt_state = jax.tree_util.tree_map(jnp.array, state["opt_state"])
        step = jnp.asarray(state["step"])
        loss_sum = jnp.zeros(data.n_entities, jnp.float32)
        n_sum = jnp.zeros(data.n_entities, jnp.int32)
        key = ("step", idx.shape[1:]) + tuple((k, v.shape) for k, v in device_arrays.items())
        for s in range(idx.shape[0]):
            params, opt_state, step, loss_sum, n_sum = self._timed(
                key, self._step, params, opt_state, lr_scale, active, step, loss_sum, n_sum,
                device_arrays, rows, ids, jnp.asarray(idx[s]), jnp.asarray(w[s]))
        state = dict(state, params=params, opt_state=opt_state, step=np.asarray(step))
        loss = np.asarray(loss_sum) / np.maximum(np.asarray(n_sum), 1)
        return state, loss

    def evaluate(self, params, data: EntityData, device_arrays):
        """(n_entities,) deterministic validation loss and metrics dict of (n_entities,)."""
        key = ("eval",) + tuple((k, v.shape) for k, v in device_arrays.items())
        loss, metrics = self._timed(key, self._eval, params, device_arrays,
                                    jnp.asarray(data.entity_row),
                                    jnp.asarray(data.entity_counts()))
        return np.asarray(loss), {k: np.asarray(v) for k, v in metrics.items()}


def _update_stopping(state, val, cfg: LoopConfig, epoch: int):
    """Per-entity early stopping and reduce-on-plateau bookkeeping (host side)."""
    active = ~state["stopped"]
    best = state["best_val"]
    improved = active & (val < best - cfg.min_delta * np.abs(np.where(np.isfinite(best), best, 0)))
    improved |= active & ~np.isfinite(best)
    state["best_params"] = _where_tree(jnp.asarray(improved), state["params"], state["best_params"])
    state["best_val"] = np.where(improved, val, best).astype(np.float32)
    state["wait"] = np.where(improved, 0, state["wait"] + active).astype(np.int32)
    if cfg.plateau_patience > 0:
        pw = np.where(improved, 0, state["plateau_wait"] + active)
        cut = active & (pw >= cfg.plateau_patience)
        state["lr_scale"] = np.where(
            cut, np.maximum(state["lr_scale"] * cfg.plateau_factor, cfg.min_lr_scale),
            state["lr_scale"]).astype(np.float32)
        state["plateau_wait"] = np.where(cut, 0, pw).astype(np.int32)
    if cfg.patience > 0:
        stop = active & (state["wait"] >= cfg.patience)
        state["stopped_epoch"] = np.where(stop, epoch, state["stopped_epoch"]).astype(np.int32)
        state["stopped"] = state["stopped"] | stop
    return state


# LoopConfig fields that only bound how long a stage trains (or how often it is saved), so a
# re-run with a larger budget continues the stage instead of re-fitting it.
BUDGET_FIELDS = ("epochs", "max_seconds", "checkpoint_every")
# A file of this name in a stage's checkpoint folder makes the next run resume those
# checkpoints whatever they were fitted on (a deliberate warm start; removed when used).
WARM_START = "WARM_START"
# Checkpoint-metadata keys that describe a run rather than what a stage is fitted on.
VOLATILE_META = ("history", "package_version", "train_summary", "stages", "fitted_on")


def stage_digest(task: Task, cfg: LoopConfig, train_data: EntityData, val_data: EntityData,
                 init_params, meta: Optional[dict] = None) -> str:
    """SHA-256 (hex) of what one training stage is fitted on (see module docstring).

    `meta` is the caller's checkpoint metadata without its 'history'; `init_params` the
    entities' initial parameters (`Trainer.init`), which carry any upstream stage's parameters
    the task starts from or freezes.
    """
    loop_cfg = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in BUDGET_FIELDS}
    meta = {k: v for k, v in (meta or {}).items() if k not in VOLATILE_META}
    parts = [task.name, workdir_lib.digest_json(loop_cfg), workdir_lib.digest_json(meta),
             tree_digest(train_data.arrays), tree_digest(val_data.arrays),
             tree_digest([train_data.entity_ids, train_data.entity_row, val_data.entity_row]),
             tree_digest(init_params)]
    return workdir_lib.digest_json(parts)


# Suffix of a stage's checkpoint folder set aside while the stage is re-fitted (see `train`).
REPLACED_SUFFIX = ".replaced"


def _replaced_dir(folder: Path) -> Path:
    return folder.with_name(folder.name + REPLACED_SUFFIX)


def _metric_logs(workdir, label: str) -> list:
    """The metric logs of stage `label` (JSON lines, TensorBoard events)."""
    from opacity_jax.train.metrics_writer import EVENT_FILE
    d = Path(workdir) / workdir_lib.METRICS_DIR
    return [d / f"{label}.jsonl", d / "tensorboard" / label / EVENT_FILE]


def _settle_replaced(folder: Path) -> None:
    """After a run killed while re-fitting the stage of `folder`: the new fit is kept if it has
    a checkpoint, else the previous fit (set aside) is put back."""
    old = _replaced_dir(folder)
    if not old.exists():
        return
    import shutil
    if folder.exists() and any(p.name.isdigit() for p in folder.iterdir()):
        shutil.rmtree(old)
    else:
        shutil.rmtree(folder, ignore_errors=True)
        old.rename(folder)


def _restore_replaced(ckpt, replaced) -> None:
    """Put back the stale fit `replaced` = (folder, metric-log bytes) after a failed re-fit."""
    import shutil
    ckpt.close()
    shutil.rmtree(ckpt.directory, ignore_errors=True)
    replaced[0].rename(ckpt.directory)
    for f, data in replaced[1].items():
        workdir_lib.write_bytes(f, data)


def train(task: Task, train_data: EntityData, val_data: EntityData, cfg: LoopConfig,
          workdir: Optional[str] = None, meta: Optional[dict] = None, progress: bool = True,
          label: str = "train", trainer: Optional[Trainer] = None,
          stop_after_epochs: Optional[int] = None) -> TrainResult:
    """Train one model per entity of `train_data` together (see module docstring).

    Args:
      task: the Task. train_data / val_data: EntityData with the same entities (entity_ids).
      cfg: LoopConfig. workdir: if given, checkpoints go to `workdir/checkpoints/<label>` and an
        existing checkpoint there is resumed when it was fitted on the same inputs
        (`stage_digest`; otherwise it is discarded and the stage re-fitted); metrics go to
        `workdir/metrics/<label>.jsonl` and TensorBoard event files (when tensorboardX is
        installed); the stage's result is recorded in the workdir's stages.json.
      meta: JSON-serialisable dict stored in every checkpoint (config, normalisation, grid...).
      progress: show a progress bar. label: name of this run inside the workdir.
      stop_after_epochs: end the call after this many epochs of *this call* (simulates an
        interruption in tests; the run is resumable).
    Returns:
      TrainResult. Raises TrainingDiverged on NaN/Inf (the last good checkpoint stays).
    """
    if not np.array_equal(train_data.entity_ids, val_data.entity_ids):
        raise ValueError("train and validation data must list the same entities")
    t_start = time.perf_counter()
    trainer = trainer or Trainer(task, cfg)
    compile0 = trainer.compile_seconds
    state = trainer.init(train_data)
    fitted_on = stage_digest(task, cfg, train_data, val_data, state["params"], meta)
    history: list = []
    ckpt = None
    saved = None          # (step, state digest) of the checkpoint holding the current state
    replaced = None       # (folder, metric-log bytes) of the stale fit this call replaces
    if workdir is not None:
        folder = workdir_lib.checkpoint_dir(workdir, label)
        _settle_replaced(folder)
        ckpt = Checkpointer(folder)
        warm = ckpt.directory / WARM_START
        if warm.exists():
            # A deliberate warm start (bin/ablation copies a checkpoint trained with other
            # settings): resume it once as if fitted on this stage's inputs.
            logging.warning("%s: warm start from the checkpoints in %s", label, ckpt.directory)
            warm.unlink()
        elif ckpt.steps():
            old = ckpt.restore_meta() or {}
            if old.get("fitted_on") != fitted_on:
                logging.warning("%s: checkpoints in %s were fitted on other inputs (an upstream "
                                "stage, the data or the settings changed); re-fitting the stage",
                                label, ckpt.directory)
                # Set aside, not deleted: the workdir keeps serving the previous fit until the
                # new one has a checkpoint, and gets it back if the new one fails (diverges).
                ckpt.close()
                logs = _metric_logs(workdir, label)
                folder.rename(_replaced_dir(folder))
                replaced = (_replaced_dir(folder), {f: f.read_bytes() for f in logs
                                                    if f.is_file()})
                ckpt = Checkpointer(folder)
        restored = ckpt.restore(state)
        if restored is not None:
            step, state, saved_meta = restored
            history = list(saved_meta.get("history", []))
            saved = (int(step), saved_meta.get("state_sha256"))
            logging.info("%s: resumed from epoch %d", label, int(state["epoch"]))
    writer = None
    try:
        meta = dict(meta or {}, fitted_on=fitted_on)
        writer = MetricWriter(Path(workdir) / workdir_lib.METRICS_DIR if workdir else None, label,
                              first_step=int(state["epoch"]))
        dev_train = {k: jnp.asarray(v) for k, v in train_data.arrays.items()}
        dev_val = {k: jnp.asarray(v) for k, v in val_data.arrays.items()}
        first = int(state["epoch"])
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=cfg.epochs, initial=first, desc=label, unit="epoch", leave=False)
        epochs_this_call = 0
        epoch = first
        t_loop, compile_loop = time.perf_counter(), trainer.compile_seconds
        for epoch in range(first, cfg.epochs):
            if np.all(state["stopped"]):
                break
            if stop_after_epochs is not None and epochs_this_call >= stop_after_epochs:
                break
            active = ~state["stopped"]
            state, train_loss = trainer.run_epoch(state, train_data, dev_train, epoch)
            epochs_this_call += 1
            if not np.all(np.isfinite(train_loss[active])):
                bad = np.nonzero(active & ~np.isfinite(train_loss))[0].tolist()
                raise TrainingDiverged(
                    f"{label}: non-finite training loss at epoch {epoch} for entities {bad} "
                    f"(a smaller learning_rate, or grad_clip, may help); the last good "
                    f"checkpoint is kept" + (f" in {ckpt.directory}" if ckpt else ""))
            last = epoch + 1 == cfg.epochs
            if (epoch + 1) % cfg.eval_every == 0 or last:
                val, metrics = trainer.evaluate(state["params"], val_data, dev_val)
                if not np.all(np.isfinite(val[active])):
                    bad = np.nonzero(active & ~np.isfinite(val))[0].tolist()
                    raise TrainingDiverged(f"{label}: non-finite validation loss at epoch "
                                           f"{epoch} for entities {bad} (a smaller "
                                           f"learning_rate may help)")
                state = _update_stopping(state, val, cfg, epoch)
                rec = {"epoch": epoch, "train_loss": train_loss.tolist(),
                       "val_loss": val.tolist(),
                       "lr_scale": state["lr_scale"].tolist(),
                       "active": int((~state["stopped"]).sum())}
                history.append(rec)
                writer.write(epoch, {"train_loss_mean": float(np.mean(train_loss[active])),
                                     "val_loss_mean": float(np.mean(val[active])),
                                     "active_entities": float(rec["active"]),
                                     "lr_scale_mean": float(np.mean(state["lr_scale"]))})
                if bar is not None:
                    bar.set_postfix(train=f"{np.mean(train_loss[active]):.3g}",
                                    val=f"{np.mean(val[active]):.3g}", active=rec["active"])
            state["epoch"] = np.asarray(epoch + 1, np.int32)
            if bar is not None:
                bar.update(1)
            if ckpt is not None and ((epoch + 1) % cfg.checkpoint_every == 0 or last):
                saved = (epoch + 1, ckpt.save(epoch + 1, state, dict(meta, history=history)))
            trained = (time.perf_counter() - t_loop) - (trainer.compile_seconds - compile_loop)
            if cfg.max_seconds and trained > cfg.max_seconds:
                logging.warning("%s: training-time budget of %.0f s reached at epoch %d", label,
                                cfg.max_seconds, epoch)
                break
        if bar is not None:
            bar.close()
        done_all = int(state["epoch"]) >= cfg.epochs or np.all(state["stopped"])
        if ckpt is not None and (done_all or cfg.max_seconds) and \
                int(state["epoch"]) not in ckpt.steps():
            saved = (int(state["epoch"]), ckpt.save(int(state["epoch"]), state,
                                                    dict(meta, history=history)))
        writer.close()
        if ckpt is not None:
            if saved is not None and saved[0] == int(state["epoch"]):
                workdir_lib.record_stage(workdir, label, {
                    "fitted_on": fitted_on, "step": saved[0], "state_sha256": saved[1],
                    "epochs_run": int(state["epoch"]), "finished": bool(done_all)})
            ckpt.close()
    except Exception:
        if writer is not None:
            writer.close()
        if replaced is not None:
            _restore_replaced(ckpt, replaced)
        raise
    if replaced is not None and saved is not None:
        # The new fit has a checkpoint to resume from: the stale one is no longer needed.
        import shutil
        shutil.rmtree(replaced[0], ignore_errors=True)
    return TrainResult(params=state["best_params"], last_params=state["params"],
                       best_val=np.asarray(state["best_val"]),
                       stopped_epoch=np.asarray(state["stopped_epoch"]),
                       epochs_run=int(state["epoch"]), history=history,
                       seconds=time.perf_counter() - t_start, fitted_on=fitted_on,
                       compile_seconds=trainer.compile_seconds - compile0)
