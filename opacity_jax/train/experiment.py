"""Experiments: data -> splits -> scaling -> Task(s) -> the loop -> artifacts in a workdir.

`run(config, workdir)` trains the model named by `config.model`:

* 'cae': the convolutional autoencoder on scaled 200-bin spectra (one per element, trained
  together), then latent regressors (T, rho) -> z: an MLP (same loop) and/or XGBoost.
* 'fcnn': the fully connected (E, T, rho) -> kappa network, one per element.

Everything the Surrogate needs lands in the workdir: `model.json` (scalings, statistics, grid,
split, provenance), orbax checkpoints per stage, XGBoost boosters, and `config.json`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

import opacity_jax
from opacity_jax import distributed
from opacity_jax.data import embedded, grid, io, splits, transforms
from opacity_jax.data.dataset import Dataset
from opacity_jax.losses import data as data_losses
from opacity_jax.models import latent as latent_lib
from opacity_jax.models.cae import CAE, activation_dtype
from opacity_jax.models.fcnn import FCNN, MLP
from opacity_jax.physics import elements as _el
from opacity_jax.train import loop, physics_hooks
from opacity_jax.train.task import EntityData, Task, pack_ragged

MODEL_FILE = "model.json"


# --------------------------------------------------------------------------------------------
# data
def load_data(data_cfg) -> Dataset:
    """The dataset named by the config (embedded default when `path` is empty), on n_energy bins.

    Files at a finer resolution are rebinned conservatively; a coarser file is an error.
    """
    elements = _parse_elements(data_cfg.get("elements", ""))
    n_energy = int(data_cfg.n_energy)
    if data_cfg.path:
        ds = io.load_dataset(data_cfg.path, elements=elements)
    else:
        path = embedded.ensure_embedded_dataset(n_energy=n_energy,
                                                seed=int(data_cfg.get("generator_seed", 0)),
                                                elements=elements)
        ds = io.load_dataset(path)
    n_file = ds.kappa.shape[-1]
    if n_file != n_energy:
        if n_file < n_energy:
            raise ValueError(f"data.n_energy = {n_energy} but the file has only {n_file} bins")
        edges = grid.energy_edges_ev(n_energy, ds.energy_edges_ev[0], ds.energy_edges_ev[-1])
        rb = lambda a: transforms.rebin(a, ds.energy_edges_ev, edges).astype(np.float32)
        ds = Dataset(ds.elements, ds.temperature_ev, ds.density_gcc, edges, rb(ds.kappa),
                     {k: rb(v) for k, v in ds.components.items()}, ds.zbar,
                     ds.charge_fractions, ds.valid, dict(ds.provenance, rebinned_from=n_file))
    return ds


def _parse_elements(spec):
    if spec is None or spec == "" or spec == ():
        return None
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out = []
    for it in items:
        it = str(it).strip()
        out.append(int(_el.ATOMIC_NUMBERS[_el.element_index(int(it) if it.isdigit() else it)]))
    return out


def make_split_masks(ds: Dataset, data_cfg, seed: int):
    """(train, val, test) bool masks (nZ, nT, nR): test by the configured split; validation a
    seeded random fraction of the remaining valid nodes (for early stopping only)."""
    name = data_cfg.split
    sp = splits.make_split(name, ds.valid, seed=seed, fraction=float(data_cfg.test_fraction))
    test = sp.test & ds.valid
    rest = ds.valid & ~test
    _, val = splits.random_split(rest, fraction=float(data_cfg.val_fraction), seed=seed + 1)
    train = rest & ~val
    return train, val, test


def node_mask(meta: dict, indices) -> np.ndarray:
    """(nZ, nT, nR) bool mask of the flat node indices recorded in a model.json (`meta`);
    `indices` is a split name ('train', 'val', 'test') or a list of flat indices."""
    shape = tuple(meta["split"]["shape"])
    idx = meta["split"][indices] if isinstance(indices, str) else indices
    m = np.zeros(int(np.prod(shape)), bool)
    m[np.asarray(idx, np.int64)] = True
    return m.reshape(shape)


@dataclasses.dataclass
class SpectrumScaling:
    """y = forward(kappa) / scale_e per element; inverse clips at 0 (opacities are >= 0)."""

    name: str
    eps: float
    scale: np.ndarray   # (nZ,)

    def forward(self, kappa):
        """(nZ, ...) opacities [cm^2/g] -> scaled values (element axis first)."""
        s = transforms.get_scaling(self.name, self.eps)
        sc = self.scale.reshape((-1,) + (1,) * (np.ndim(kappa) - 1))
        return s.forward(kappa) / sc

    def inverse_for(self, y, element_pos):
        """Inverse for spectra of one element (position on the element axis)."""
        s = transforms.get_scaling(self.name, self.eps)
        y = y * self.scale[element_pos]
        if self.name == "cbrt":
            y = np.maximum(y, 0.0)
        return np.maximum(s.inverse(y), 0.0)

    def to_dict(self):
        return {"name": self.name, "eps": self.eps, "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, d):
        return cls(d["name"], float(d["eps"]), np.asarray(d["scale"], np.float64))


def fit_scaling(ds: Dataset, train: np.ndarray, name: str, eps: float) -> SpectrumScaling:
    """Per-element RMS of the transformed training spectra, so scaled data are O(1)."""
    s = transforms.get_scaling(name, eps)
    scale = []
    for e in range(ds.kappa.shape[0]):
        y = s.forward(ds.kappa[e][train[e]].astype(np.float64))
        scale.append(np.sqrt(np.mean(y ** 2)) if y.size else 1.0)
    return SpectrumScaling(name, eps, np.maximum(np.asarray(scale), 1e-12))


def conditions(ds: Dataset):
    """(nT, nR, 2) raw features (log10 T [eV], log10 rho [g/cm^3]) of every grid node."""
    lt, lr = np.meshgrid(np.log10(ds.temperature_ev), np.log10(ds.density_gcc), indexing="ij")
    return np.stack([lt, lr], -1)


# --------------------------------------------------------------------------------------------
# tasks
def cae_task(model: CAE, loss_name: str, alpha: float) -> Task:
    """Autoencoder task: batch {'x': (B, nE)}; loss per the config (wmse/mse)."""
    def init(rng, batch):
        return model.init(rng, batch["x"])

    def loss(params, batch, rng):
        pred = model.apply(params, batch["x"])
        if loss_name == "wmse":
            val = data_losses.wmse(pred, batch["x"], batch["weight"], alpha)
        else:
            val = data_losses.get_data_loss(loss_name)(pred, batch["x"], batch["weight"])
        return val, {}

    return Task("cae", init, loss, lambda p, b: loss(p, b, None))


def regression_task(model, name: str, x_key: str = "x", y_key: str = "y",
                    point_weight_key: Optional[str] = None, physics=None) -> Task:
    """Plain masked-MSE regression task on batch[x_key] -> batch[y_key] (dropout rng passed).

    physics: optional hook(params, batch, rng, pred) -> (penalty, metrics) added to the training
    loss only (see `opacity_jax.train.physics_hooks`); validation stays the data loss.
    """
    def init(rng, batch):
        return model.init(rng, batch[x_key])

    def loss(params, batch, rng):
        if rng is None:
            pred = model.apply(params, batch[x_key])
        else:
            pred = model.apply(params, batch[x_key], train=True, rngs={"dropout": rng})
        pw = batch[point_weight_key] if point_weight_key else None
        val = data_losses.mse(pred, batch[y_key], batch["weight"], pw)
        if physics is not None and rng is not None:
            pen, metrics = physics(params, batch, rng, pred)
            return val + pen, metrics
        return val, {}

    return Task(name, init, loss, lambda p, b: loss(p, b, None))


def latent_finetune_task(mlp: MLP, cae: CAE, mlp_all, cae_all, z_mean, z_std, loss_name: str,
                         alpha: float, physics=None) -> Task:
    """Latent MLP trained through its element's frozen CAE decoder on the spectrum loss.

    Params of one entity are {'mlp': trainable, 'cae': frozen (stop_gradient)}; `init` picks the
    entity's warm-start MLP and decoder from the stacked (nZ, ...) pytrees by the batch's 'row'.
    batch: 'x' (B, 2) standardized conditions, 'y' (B, nE) scaled spectra, 'row' (B,) element.
    """
    def init(rng, batch):
        r = batch["row"][0]
        # jnp: params resumed from a checkpoint are numpy, which a traced index cannot pick.
        take = lambda t: jax.tree_util.tree_map(lambda a: jnp.asarray(a)[r], t)
        return {"mlp": take(mlp_all), "cae": take(cae_all)}

    def loss(params, batch, rng):
        # Every sample of an entity's batch carries its row (padding slots repeat sample 0).
        r = batch["row"][0]
        z = mlp.apply(params["mlp"], batch["x"]) * z_std[r] + z_mean[r]
        pred = cae.apply(jax.lax.stop_gradient(params["cae"]), z, method=cae.decode)
        if loss_name == "wmse":
            val = data_losses.wmse(pred, batch["y"], batch["weight"], alpha)
        else:
            val = data_losses.get_data_loss(loss_name)(pred, batch["y"], batch["weight"])
        if physics is not None and rng is not None:   # training only (physics_hooks)
            pen, metrics = physics(params["mlp"], batch, rng, pred)
            return val + pen, metrics
        return val, {}

    return Task("latent_mlp_finetune", init, loss, lambda p, b: loss(p, b, None))


# --------------------------------------------------------------------------------------------
# runs
def _save_json(path: Path, obj) -> None:
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    tmp.replace(path)


def _loop_cfg(section, seed) -> loop.LoopConfig:
    d = dict(section)
    d.setdefault("seed", seed)
    return loop.LoopConfig.from_config(d)


def encode_all(model: CAE, params, y_all: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """(nZ, n, nE) scaled spectra -> (nZ, n, latent) with each element's encoder."""
    enc = jax.jit(jax.vmap(lambda p, x: model.apply(p, x, method=model.encode)))
    outs = [np.asarray(enc(params, jnp.asarray(y_all[:, i:i + chunk])))
            for i in range(0, y_all.shape[1], chunk)]
    return np.concatenate(outs, axis=1)


def run(config, workdir, progress: bool = True) -> dict:
    """Train the configured model into `workdir` (resuming if checkpoints exist)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    _save_json(workdir / "config.json", json.loads(config.to_json_best_effort()))
    if config.model == "cae":
        return run_cae(config, workdir, progress)
    if config.model == "fcnn":
        return run_fcnn(config, workdir, progress)
    if config.model == "classifier":
        from opacity_jax import inverse
        return inverse.run_classifier(config, workdir, progress)
    if config.model in ("xsec", "xsec_pinn", "xsec_prior"):
        from opacity_jax import xsec_experiment
        return xsec_experiment.run_xsec(config, workdir, progress)
    raise ValueError(f"config.model must be 'cae', 'fcnn', 'classifier', 'xsec', 'xsec_pinn' or 'xsec_prior', got {config.model!r}")


def _base_meta(config, ds, scaling, train, val, test):
    return {
        "package_version": opacity_jax.__version__,
        "model": config.model,
        "elements": ds.elements.tolist(),
        "energy_edges_ev": ds.energy_edges_ev.tolist(),
        "temperature_ev": ds.temperature_ev.tolist(),
        "density_gcc": ds.density_gcc.tolist(),
        "domain": {"temperature_ev": [float(ds.temperature_ev.min()),
                                      float(ds.temperature_ev.max())],
                   "density_gcc": [float(ds.density_gcc.min()), float(ds.density_gcc.max())]},
        "scaling": scaling.to_dict(),
        "split": {"name": config.data.split, "seed": int(config.seed),
                  "train": np.flatnonzero(train).tolist(), "val": np.flatnonzero(val).tolist(),
                  "test": np.flatnonzero(test).tolist(), "shape": list(train.shape)},
        "dataset_provenance": ds.provenance,
        "data_path": str(config.data.path),
    }


def run_cae(config, workdir: Path, progress: bool = True) -> dict:
    """CAE + latent regressors (see module docstring). Returns a small summary dict."""
    t0 = time.perf_counter()
    seed = int(config.seed)
    ds = load_data(config.data)
    train, val, test = make_split_masks(ds, config.data, seed)
    scaling = fit_scaling(ds, train, config.data.scaling, float(config.data.log_eps))
    y = scaling.forward(ds.kappa.astype(np.float64)).astype(np.float32)       # (nZ,nT,nR,nE)
    n_z, n_t, n_r, n_e = y.shape
    model = CAE(n_bins=n_e, latent_dim=int(config.cae.latent_dim),
                channels=tuple(config.cae.channels), kernel=int(config.cae.kernel),
                strides=tuple(config.cae.get("strides", ())),
                dtype=activation_dtype(config.cae.get("dtype", "float32")))
    tr = pack_ragged([{"x": y[e][train[e]]} for e in range(n_z)])
    va = pack_ragged([{"x": y[e][val[e]]} for e in range(n_z)])
    meta = _base_meta(config, ds, scaling, train, val, test)
    meta["cae"] = {"latent_dim": model.latent_dim, "channels": list(model.channels),
                   "kernel": model.kernel, "n_bins": n_e, "strides": list(model.strides)}
    meta["loss"] = {"name": config.loss.name, "alpha": float(config.loss.alpha)}
    task = cae_task(model, config.loss.name, float(config.loss.alpha))
    lc = _loop_cfg(config.train, seed)
    # None (the plain Trainer) unless bin/train --sharded enabled the multi-device trainer.
    res = loop.train(task, tr, va, lc, workdir, meta=meta, progress=progress, label="cae",
                     trainer=distributed.default_trainer(task, lc, n_z))
    summary = {"cae": {"epochs_run": res.epochs_run, "seconds": round(res.seconds, 1),
                       "best_val_mean": float(np.mean(res.best_val))}}
    # Latent codes of every node from each element's encoder.
    z_all = encode_all(model, res.params, y.reshape(n_z, n_t * n_r, n_e)).reshape(
        n_z, n_t, n_r, -1)
    feats = conditions(ds)                                                    # (nT,nR,2)
    x_std = transforms.Standardizer().fit(feats[train.any(0)], axis=0)
    z_mean = np.stack([z_all[e][train[e]].mean(0) for e in range(n_z)])
    z_std = np.stack([z_all[e][train[e]].std(0) for e in range(n_z)]) + 1e-6
    zs = (z_all - z_mean[:, None, None]) / z_std[:, None, None]
    xs = x_std.transform(feats).astype(np.float32)
    meta["latent"] = {"x_standardizer": x_std.to_dict(), "z_mean": z_mean.tolist(),
                      "z_std": z_std.tolist(), "regressors": []}
    regs = config.latent.regressor
    regs = ["xgboost", "mlp"] if regs == "both" else [regs]
    for r in regs:
        if r not in ("xgboost", "mlp"):
            raise ValueError(f"latent.regressor must be 'xgboost', 'mlp' or 'both', got {r!r}")
    if "mlp" in regs:
        mlp = MLP(hidden=tuple(config.latent.mlp_hidden), n_out=model.latent_dim)
        # Optional physics losses on decoded T-ordered columns (None = off, the default).
        hook = physics_hooks.for_latent_mlp(
            config, mlp=mlp, cae=model, cae_params=res.params, z_mean=z_mean, z_std=z_std,
            x_standardizer=x_std, ds=ds, train_mask=train, scaling=scaling)
        row = (lambda e, m: {"row": np.full(int(m[e].sum()), e, np.int32)}) if hook else (
            lambda e, m: {})
        tr_l = pack_ragged([{"x": xs[train[e]], "y": zs[e][train[e]].astype(np.float32),
                             **row(e, train)} for e in range(n_z)])
        va_l = pack_ragged([{"x": xs[val[e]], "y": zs[e][val[e]].astype(np.float32),
                             **row(e, val)} for e in range(n_z)])
        meta["latent"]["mlp_hidden"] = list(mlp.hidden)
        if hook:
            meta["loss"]["physics"] = {k: float(v) for k, v in dict(config.loss.physics).items()}
        res_l = loop.train(regression_task(mlp, "latent_mlp", physics=hook), tr_l, va_l,
                           _loop_cfg(config.latent.mlp_train, seed), workdir, meta=meta,
                           progress=progress, label="latent_mlp")
        mlp_params = res_l.params
        summary["latent_mlp"] = {"epochs_run": res_l.epochs_run,
                                 "seconds": round(res_l.seconds, 1)}
        ft = config.latent.get("finetune_train", None)
        if ft is not None and int(ft.get("epochs", 0)) > 0:
            # Second stage: the same MLP, warm-started, trained through the frozen decoder on
            # the spectrum-space loss (the latent MSE weighs all 16 dims alike, the decoder
            # does not).
            tr_f = pack_ragged([{"x": xs[train[e]], "y": y[e][train[e]],
                                 "row": np.full(int(train[e].sum()), e, np.int32)}
                                for e in range(n_z)])
            va_f = pack_ragged([{"x": xs[val[e]], "y": y[e][val[e]],
                                 "row": np.full(int(val[e].sum()), e, np.int32)}
                                for e in range(n_z)])
            task_f = latent_finetune_task(mlp, model, mlp_params, res.params,
                                          jnp.asarray(z_mean, jnp.float32),
                                          jnp.asarray(z_std, jnp.float32), config.loss.name,
                                          float(config.loss.alpha), physics=hook)
            res_f = loop.train(task_f, tr_f, va_f, _loop_cfg(ft, seed), workdir, meta=meta,
                               progress=progress, label="latent_mlp_finetune")
            meta["latent"]["mlp_finetuned"] = True
            summary["latent_mlp_finetune"] = {"epochs_run": res_f.epochs_run,
                                              "seconds": round(res_f.seconds, 1)}
        meta["latent"]["regressors"].append("mlp")
    if "xgboost" in regs:
        t1 = time.perf_counter()
        boosters, best, importance = {}, {}, {}
        xgb_cfg = dict(config.latent.xgb)
        it = range(n_z)
        if progress:
            from tqdm.auto import tqdm
            it = tqdm(it, desc="xgboost", unit="element", leave=False)
        for e in it:
            z = int(ds.elements[e])
            b, bi = latent_lib.fit_xgb(xs[train[e]], zs[e][train[e]], xs[val[e]], zs[e][val[e]],
                                       xgb_cfg, seed)
            boosters[z], best[z] = b, bi
            importance[z] = latent_lib.feature_importance(b)
        latent_lib.save_boosters(workdir / "xgb", boosters, best)
        meta["latent"]["regressors"].append("xgboost")
        meta["latent"]["xgb_importance"] = {str(k): v for k, v in importance.items()}
        summary["xgboost"] = {"seconds": round(time.perf_counter() - t1, 1),
                              "best_iteration_median": float(np.median(list(best.values())))}
    summary["seconds_total"] = round(time.perf_counter() - t0, 1)
    meta["train_summary"] = summary
    _save_json(workdir / MODEL_FILE, meta)
    return summary


def run_fcnn(config, workdir: Path, progress: bool = True) -> dict:
    """FC-NN on (log E, log T, log rho) points of every training spectrum, one per element
    (times fcnn.ensemble members)."""
    members = int(config.fcnn.get("ensemble", 1))
    if members < 1:
        raise ValueError(f"fcnn.ensemble must be >= 1, got {members}")
    t0 = time.perf_counter()
    seed = int(config.seed)
    ds = load_data(config.data)
    train, val, test = make_split_masks(ds, config.data, seed)
    scaling = fit_scaling(ds, train, config.data.scaling, float(config.data.log_eps))
    y = scaling.forward(ds.kappa.astype(np.float64)).astype(np.float32)
    n_z, n_t, n_r, n_e = y.shape
    feats = conditions(ds)
    log_e = np.log10(ds.energy_ev)
    pts = np.concatenate([np.broadcast_to(log_e[None, None, :, None], (n_t, n_r, n_e, 1)),
                          np.broadcast_to(feats[:, :, None, :], (n_t, n_r, n_e, 2))], -1)
    x_std = transforms.Standardizer().fit(pts.reshape(-1, 3), axis=0)
    xs = x_std.transform(pts).astype(np.float32)
    pw = np.asarray(data_losses.gradient_weights(y, float(config.loss.alpha)), np.float32) \
        if config.loss.name == "wmse" else np.ones_like(y)

    model = FCNN(hidden=tuple(config.fcnn.hidden), dropout=float(config.fcnn.dropout))
    # Optional physics losses on predicted T-ordered columns (None = off, the default).
    hook = physics_hooks.for_fcnn(config, model=model, x_standardizer=x_std, ds=ds,
                                  train_mask=train, scaling=scaling)

    def rows(mask):
        extra = lambda e: ({"row": np.full(int(mask[e].sum()) * n_e, e, np.int32)} if hook
                           else {})
        return pack_ragged([{"x": xs[mask[e]].reshape(-1, 3), "y": y[e][mask[e]].reshape(-1),
                             "pw": pw[e][mask[e]].reshape(-1), **extra(e)} for e in range(n_z)])

    meta = _base_meta(config, ds, scaling, train, val, test)
    meta["fcnn"] = {"hidden": list(model.hidden), "dropout": model.dropout,
                    "x_standardizer": x_std.to_dict(), "members": members}
    if hook:
        meta["loss"] = {"physics": {k: float(v) for k, v in dict(config.loss.physics).items()}}
    tr_rows, va_rows = rows(train), rows(val)
    if members > 1:
        # Element x member entities (member-fastest), each with its own PRNG stream.
        tr_rows, va_rows = tr_rows.replicate(members), va_rows.replicate(members)
    res = loop.train(regression_task(model, "fcnn", point_weight_key="pw", physics=hook),
                     tr_rows, va_rows,
                     _loop_cfg(config.train, seed), workdir, meta=meta, progress=progress,
                     label="fcnn")
    summary = {"fcnn": {"epochs_run": res.epochs_run, "seconds": round(res.seconds, 1),
                        "members": members},
               "seconds_total": round(time.perf_counter() - t0, 1)}
    meta["train_summary"] = summary
    _save_json(workdir / MODEL_FILE, meta)
    return summary
