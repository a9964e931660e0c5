"""Spectrum surrogates: the CAE with latent regressors, and the FC-NN (model 'cae', 'fcnn').

`train(config, workdir)` (config = configs/cae.py or configs/fcnn.py):

* 'cae': the convolutional autoencoder on scaled 200-bin spectra (one per element, trained
  together), then latent regressors (T, rho) -> z: an MLP (same loop) and/or XGBoost.
* 'fcnn': the fully connected (E, T, rho) -> kappa network, one per element.

Everything the Surrogate needs lands in the workdir: `model.json` (scalings, statistics, grid,
split, provenance), orbax checkpoints per stage, XGBoost boosters, and `config.json`.
`load(workdir)` is `Surrogate.load`, `evaluate(workdir)` the held-out evaluation of
`opacity_jax.evaluate`.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np

import opacity_jax
from opacity_jax import distributed
from opacity_jax.data import transforms
from opacity_jax.losses import data as data_losses
from opacity_jax.models import latent as latent_lib
from opacity_jax.models import physics_features as pf_lib
from opacity_jax.models.cae import CAE, activation_dtype
from opacity_jax.models.mlp import FCNN, MLP
from opacity_jax.train import checkpoint, experiment, loop, physics_hooks
from opacity_jax.train import workdir as workdir_lib
from opacity_jax.train.task import pack_ragged

MODELS = ("cae", "fcnn")
# Config keys that fix each model's shape (train.workdir.fingerprint: a workdir keeps them).
ARCHITECTURE = {"cae": ("cae", "latent.mlp_hidden"), "fcnn": ("fcnn.hidden", "fcnn.ensemble")}
REGRESSORS = ("xgboost", "mlp", "both")


def validate(config) -> None:
    """Config checks that need no data (experiment.validate_config runs them before any work);
    ValueError naming the field and the allowed values."""
    if config.model not in MODELS:
        raise ValueError(f"config.model must be one of {MODELS} here, got {config.model!r}")
    experiment.check_spectrum_data(config.data)
    if config.loss.name not in data_losses.DATA_LOSSES:
        raise ValueError(f"loss.name must be one of {sorted(data_losses.DATA_LOSSES)}, got "
                         f"{config.loss.name!r}")
    if config.model == "cae" and config.latent.regressor not in REGRESSORS:
        raise ValueError(f"latent.regressor must be one of {REGRESSORS}, got "
                         f"{config.latent.regressor!r}")
    if config.model == "fcnn" and int(config.fcnn.get("ensemble", 1)) < 1:
        raise ValueError(f"fcnn.ensemble must be >= 1, got {config.fcnn.ensemble}")


def train(config, workdir, progress: bool = True) -> dict:
    """Train config.model ('cae' or 'fcnn') into `workdir`; returns a summary dict."""
    validate(config)
    run = run_cae if config.model == "cae" else run_fcnn
    return run(config, Path(workdir), progress)


def load(workdir, **options):
    """`Surrogate.load(workdir, **options)` (regressor, on_domain_error, ensemble)."""
    from opacity_jax.serve.surrogate import Surrogate
    return Surrogate.load(workdir, **options)


def evaluate(workdir, **options) -> dict:
    """Held-out evaluation (`opacity_jax.evaluate.evaluate_workdir`); writes <workdir>/eval/.
    `offgrid=N` (keyword) also scores N random off-grid points per element
    (`evaluate.offgrid_workdir`, embedded data only)."""
    from opacity_jax import evaluate as evaluate_lib
    n_off = int(options.pop("offgrid", 0) or 0)
    m = evaluate_lib.evaluate_workdir(workdir, **options)
    if n_off > 0:
        m["offgrid"] = evaluate_lib.offgrid_workdir(workdir, n_points=n_off)
    return m


def report(m: dict) -> str:
    """Headline table of `evaluate`'s metrics: RMSE and Planck / Rosseland mean errors per
    method, and the targets of the best model."""
    from opacity_jax import evaluate as evaluate_lib
    lines = [f"{m['n_test_spectra']} held-out spectra ({m['split']} split), {m['n_energy']} bins",
             f"{'method':36s} {'RMSE mean':>11s} {'RMSE med':>10s} {'Planck med':>10s} "
             f"{'Planck p95':>10s} {'Ross med':>9s}"]
    rel = evaluate_lib.format_rel      # percentages above 1e6 % are printed in dex
    for name, r in m["methods"].items():
        lines.append(f"{name:36s} {r['rmse_mean']:11.4g} {r['rmse_median']:10.4g} "
                     f"{rel(r['planck_rel']['median']):>10s} {rel(r['planck_rel']['p95']):>10s} "
                     f"{rel(r['rosseland_rel']['median']):>9s}")
    if "targets" in m:
        t = m["targets"]
        lines.append(f"best model {t['best_model']}: RMSE / 4-neighbour = "
                     f"{t['rmse_ratio_to_4_neighbour']:.3f} (target <= 0.5), median Planck "
                     f"error {rel(t['planck_rel_median'])} (target <= 2 %)")
    if "honest_table" in m:
        lines += ["", m["honest_table"]]
    if "offgrid" in m:
        lines += ["", "off-grid (eval/offgrid.md):", m["offgrid"]["table"]]
    return "\n".join(lines)


def base_meta(config, ds, scaling, train, val, test) -> dict:
    """model.json fields shared by the spectrum families: version, grid, scaling, split,
    provenance. `train`, `val`, `test`: (nZ, nT, nR) bool masks."""
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


def fit_scaling(config, ds, train):
    """The run's target scaling (`experiment.fit_scaling`): config.data.scaling ('cbrt' | 'log');
    'log' floors each spectrum config.data.log_floor_decades below its maximum."""
    name = config.data.scaling
    floor = float(config.data.get("log_floor_decades", transforms.DEFAULT_FLOOR_DECADES))
    if name == "log" and not floor > 0:
        raise ValueError(f"data.log_floor_decades must be > 0 for data.scaling='log', got {floor}")
    return experiment.fit_scaling(ds, train, name, float(config.data.log_eps),
                                  floor if name == "log" else 0.0)


def physics_features_switch(config, section: str) -> int:
    """Window length of the physics input features config.<section>.physics_features asks for
    (0 = off); `section` is 'latent' or 'fcnn'. Validated before any work."""
    sec = config[section]
    if not bool(sec.get("physics_features", False)):
        return 0
    n = int(sec.get("physics_features_stages", pf_lib.DEFAULT_N_STAGES))
    if not 1 <= n <= 21:
        raise ValueError(f"{section}.physics_features_stages must be in 1..21, got {n}")
    weights = {k: float(v) for k, v in dict(config.loss.get("physics", {})).items()}
    if any(w > 0 for w in weights.values()):
        raise ValueError(f"{section}.physics_features=True cannot be combined with physics "
                         f"losses (loss.physics = {weights}): their hooks feed (T, rho) only")
    return n


def fit_physics_features(ds, train, n_stages: int):
    """`PhysicsFeatures` fitted on the training nodes and its (nZ, nT, nR, F) standardized
    grid features (float64), or (None, None) for n_stages = 0."""
    if not n_stages:
        return None, None
    pfeat = pf_lib.PhysicsFeatures.fit(ds.elements, ds.temperature_ev, ds.density_gcc, train,
                                       n_stages)
    return pfeat, pfeat.grid(ds.temperature_ev, ds.density_gcc)


def prepare(config, section: str):
    """What both spectrum families start from: (physics-feature stage count of config section
    `section` (0 = off), the Dataset, its (train, val, test) masks, the fitted target scaling,
    and the scaled targets y (nZ, nT, nR, nE) float32)."""
    n_pf = physics_features_switch(config, section)
    ds = experiment.load_data(config.data)
    masks = experiment.make_split_masks(ds, config.data, int(config.seed))
    scaling = fit_scaling(config, ds, masks[0])
    y = scaling.forward(ds.kappa.astype(np.float64)).astype(np.float32)
    return n_pf, ds, masks, scaling, y


def run_cae(config, workdir: Path, progress: bool = True) -> dict:
    """CAE + latent regressors (see module docstring). Returns a small summary dict."""
    t0 = time.perf_counter()
    seed = int(config.seed)
    n_pf, ds, (train, val, test), scaling, y = prepare(config, "latent")   # y (nZ,nT,nR,nE)
    n_z, n_t, n_r, n_e = y.shape
    model = CAE.from_meta(dict(config.cae, n_bins=n_e),
                          dtype=activation_dtype(config.cae.get("dtype", "float32")))
    tr = pack_ragged([{"x": y[e][train[e]]} for e in range(n_z)])
    va = pack_ragged([{"x": y[e][val[e]]} for e in range(n_z)])
    meta = base_meta(config, ds, scaling, train, val, test)
    meta["cae"] = model.to_meta()
    meta["loss"] = {"name": config.loss.name, "alpha": float(config.loss.alpha)}
    task = experiment.cae_task(model, config.loss.name, float(config.loss.alpha))
    lc = loop.LoopConfig.from_config(config.train, seed)
    # None (the plain Trainer) unless bin/train --sharded enabled the multi-device trainer.
    res = loop.train(task, tr, va, lc, workdir, meta=meta, progress=progress, label="cae",
                     trainer=distributed.default_trainer(task, lc, n_z))
    summary = {"cae": {"epochs_run": res.epochs_run, "seconds": round(res.seconds, 1),
                       "best_val_mean": float(np.mean(res.best_val))}}
    # Latent codes of every node from each element's encoder.
    z_all = experiment.encode_all(model, res.params, y.reshape(n_z, n_t * n_r, n_e)).reshape(
        n_z, n_t, n_r, -1)
    feats = experiment.conditions(ds)                                                    # (nT,nR,2)
    x_std = transforms.Standardizer().fit(feats[train.any(0)], axis=0)
    z_mean = np.stack([z_all[e][train[e]].mean(0) for e in range(n_z)])
    z_std = np.stack([z_all[e][train[e]].std(0) for e in range(n_z)]) + 1e-6
    zs = (z_all - z_mean[:, None, None]) / z_std[:, None, None]
    # Regressor inputs per element (nZ, nT, nR, 2 [+ F]): standardized (log10 T, log10 rho),
    # then the element's standardized physics features when latent.physics_features is on.
    pfeat, pf_grid = fit_physics_features(ds, train, n_pf)
    xs = np.broadcast_to(x_std.transform(feats), (n_z,) + feats.shape)
    if pfeat is not None:
        xs = np.concatenate([xs, pf_grid], -1)
    xs = xs.astype(np.float32)
    meta["latent"] = {"x_standardizer": x_std.to_dict(), "z_mean": z_mean.tolist(),
                      "z_std": z_std.tolist(), "regressors": []}
    if pfeat is not None:
        meta["latent"]["physics_features"] = pfeat.to_dict()
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
        tr_l = pack_ragged([{"x": xs[e][train[e]], "y": zs[e][train[e]].astype(np.float32),
                             **row(e, train)} for e in range(n_z)])
        va_l = pack_ragged([{"x": xs[e][val[e]], "y": zs[e][val[e]].astype(np.float32),
                             **row(e, val)} for e in range(n_z)])
        meta["latent"]["mlp_hidden"] = list(mlp.hidden)
        if hook:
            meta["loss"]["physics"] = {k: float(v) for k, v in dict(config.loss.physics).items()}
        res_l = loop.train(experiment.regression_task(mlp, "latent_mlp", physics=hook), tr_l, va_l,
                           loop.LoopConfig.from_config(config.latent.mlp_train, seed), workdir,
                           meta=meta, progress=progress, label="latent_mlp")
        mlp_params = res_l.params
        summary["latent_mlp"] = {"epochs_run": res_l.epochs_run,
                                 "seconds": round(res_l.seconds, 1)}
        ft = config.latent.get("finetune_train", None)
        if ft is not None and int(ft.get("epochs", 0)) > 0:
            # Second stage: the same MLP, warm-started, trained through the frozen decoder on
            # the spectrum-space loss (the latent MSE weighs all 16 dims alike, the decoder
            # does not).
            tr_f = pack_ragged([{"x": xs[e][train[e]], "y": y[e][train[e]],
                                 "row": np.full(int(train[e].sum()), e, np.int32)}
                                for e in range(n_z)])
            va_f = pack_ragged([{"x": xs[e][val[e]], "y": y[e][val[e]],
                                 "row": np.full(int(val[e].sum()), e, np.int32)}
                                for e in range(n_z)])
            task_f = experiment.latent_finetune_task(mlp, model, mlp_params, res.params,
                                          jnp.asarray(z_mean, jnp.float32),
                                          jnp.asarray(z_std, jnp.float32), config.loss.name,
                                          float(config.loss.alpha), physics=hook)
            res_f = loop.train(task_f, tr_f, va_f, loop.LoopConfig.from_config(ft, seed),
                               workdir, meta=meta, progress=progress,
                               label="latent_mlp_finetune")
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
            b, bi = latent_lib.fit_xgb(xs[e][train[e]], zs[e][train[e]], xs[e][val[e]],
                                       zs[e][val[e]], xgb_cfg, seed)
            boosters[z], best[z] = b, bi
            importance[z] = latent_lib.feature_importance(
                b, latent_lib.FEATURE_NAMES + (
                    tuple(pf_lib.feature_names(n_pf)) if pfeat is not None else ()))
        latent_lib.save_boosters(workdir / "xgb", boosters, best)
        meta["latent"]["xgb_sha256"] = workdir_lib.file_digest(workdir / "xgb")  # load checks
        # What the boosters were fitted on (they are re-fitted on every run, never re-used).
        meta["latent"]["xgb_fitted_on"] = workdir_lib.digest_json(
            [xgb_cfg, seed, checkpoint.tree_digest([xs, zs, train, val])])
        meta["latent"]["regressors"].append("xgboost")
        meta["latent"]["xgb_importance"] = {str(k): v for k, v in importance.items()}
        summary["xgboost"] = {"seconds": round(time.perf_counter() - t1, 1),
                              "best_iteration_median": float(np.median(list(best.values())))}
    summary["seconds_total"] = round(time.perf_counter() - t0, 1)
    meta["train_summary"] = summary
    workdir_lib.write_model_meta(workdir, meta)
    return summary


def run_fcnn(config, workdir: Path, progress: bool = True) -> dict:
    """FC-NN on (log E, log T, log rho) points of every training spectrum, one per element
    (times fcnn.ensemble members)."""
    members = int(config.fcnn.get("ensemble", 1))
    if members < 1:
        raise ValueError(f"fcnn.ensemble must be >= 1, got {members}")
    t0 = time.perf_counter()
    seed = int(config.seed)
    n_pf, ds, (train, val, test), scaling, y = prepare(config, "fcnn")
    n_z, n_t, n_r, n_e = y.shape
    feats = experiment.conditions(ds)
    log_e = np.log10(ds.energy_ev)
    pts = np.concatenate([np.broadcast_to(log_e[None, None, :, None], (n_t, n_r, n_e, 1)),
                          np.broadcast_to(feats[:, :, None, :], (n_t, n_r, n_e, 2))], -1)
    x_std = transforms.Standardizer().fit(pts.reshape(-1, 3), axis=0)
    # Inputs per element (nZ, nT, nR, nE, 3 [+ F]): standardized (log10 E, log10 T, log10 rho),
    # then the element's standardized physics features of (T, rho) when fcnn.physics_features.
    pfeat, pf_grid = fit_physics_features(ds, train, n_pf)
    xs = np.broadcast_to(x_std.transform(pts), (n_z,) + pts.shape)
    if pfeat is not None:
        xs = np.concatenate([xs, np.broadcast_to(pf_grid[:, :, :, None], (n_z, n_t, n_r, n_e,
                                                                            n_pf + 2))], -1)
    xs = xs.astype(np.float32)
    n_in = xs.shape[-1]
    pw = np.asarray(data_losses.gradient_weights(y, float(config.loss.alpha)), np.float32) \
        if config.loss.name == "wmse" else np.ones_like(y)

    model = FCNN(hidden=tuple(config.fcnn.hidden), dropout=float(config.fcnn.dropout))
    # Optional physics losses on predicted T-ordered columns (None = off, the default).
    hook = physics_hooks.for_fcnn(config, model=model, x_standardizer=x_std, ds=ds,
                                  train_mask=train, scaling=scaling)

    def rows(mask):
        extra = lambda e: ({"row": np.full(int(mask[e].sum()) * n_e, e, np.int32)} if hook
                           else {})
        return pack_ragged([{"x": xs[e][mask[e]].reshape(-1, n_in),
                             "y": y[e][mask[e]].reshape(-1),
                             "pw": pw[e][mask[e]].reshape(-1), **extra(e)} for e in range(n_z)])

    meta = base_meta(config, ds, scaling, train, val, test)
    meta["fcnn"] = {"hidden": list(model.hidden), "dropout": model.dropout,
                    "x_standardizer": x_std.to_dict(), "members": members}
    if pfeat is not None:
        meta["fcnn"]["physics_features"] = pfeat.to_dict()
    if hook:
        meta["loss"] = {"physics": {k: float(v) for k, v in dict(config.loss.physics).items()}}
    tr_rows, va_rows = rows(train), rows(val)
    if members > 1:
        # Element x member entities (member-fastest), each with its own PRNG stream.
        tr_rows, va_rows = tr_rows.replicate(members), va_rows.replicate(members)
    res = loop.train(experiment.regression_task(model, "fcnn", point_weight_key="pw", physics=hook),
                     tr_rows, va_rows,
                     loop.LoopConfig.from_config(config.train, seed), workdir, meta=meta,
                     progress=progress, label="fcnn")
    summary = {"fcnn": {"epochs_run": res.epochs_run, "seconds": round(res.seconds, 1),
                        "members": members},
               "seconds_total": round(time.perf_counter() - t0, 1)}
    meta["train_summary"] = summary
    workdir_lib.write_model_meta(workdir, meta)
    return summary
