"""Physics-loss ablation on held-out data (thesis §4.4.2): does L_bb / L_Zbar help?

Classifier (conv and attention encoders) x {none, +L_bb (soft, predicted-T ranking), +Saha,
both}: every arm is the same config with only `loss.physics` changed, trained and evaluated
(clean and 3 % noise) on the same split.

Forward surrogates x {none, +L_bb}: the Saha loss has nothing to act on there (they take T and
rho as inputs and predict no Zbar), so it is not an arm. CAE path: the 'none' run trains the CAE
and its latent MLP; the '+L_bb' run reuses that CAE checkpoint (copied, so the autoencoder is
identical) and retrains only the latent MLP stages with the hook of `train/physics_hooks.py`.
FC-NN: two full runs. Metrics on the held-out (T, rho) nodes: spectral RMSE and median Planck
error (`opacity_jax.evaluate`), plus the fraction of the premise's allowed T-pairs on which the
*predicted* B rises (what L_bb penalises; computed on the full grid, held-out nodes included).

`run_ablation(...)` writes `<root>/ablation.json` and `<root>/ablation.md`; runs that already
finished in `<root>` are reused (delete a run directory to redo it).
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from opacity_jax import config_files
from opacity_jax import evaluate as fwd_eval
from opacity_jax.experiments import inverse
from opacity_jax.train import experiment, loop, physics_hooks
from opacity_jax.train import workdir as workdir_lib

CLASSIFIER_ARMS = ("none", "bb", "saha", "both")
FORWARD_ARMS = ("none", "bb")


def classifier_arm(config, arm: str, encoder: str, gamma: float, delta: float):
    """Copy of a classifier config for one ablation arm and encoder."""
    if arm not in CLASSIFIER_ARMS:
        raise ValueError(f"arm must be one of {CLASSIFIER_ARMS}, got {arm!r}")
    c = copy.deepcopy(config)
    c.classifier.encoder = encoder
    c.loss.physics.monotonic_bb_soft = float(gamma) if arm in ("bb", "both") else 0.0
    c.loss.physics.saha_zbar = float(delta) if arm in ("saha", "both") else 0.0
    return c


def small_scale(classifier_config=None, cae_config=None, fcnn_config=None):
    """Copies of the default configs shrunk to minutes per run on 2 CPU cores (None passes).

    Classifier: 60 epochs, no wall-clock cut (arms compare at equal epochs). CAE: 150 s of
    autoencoder training, latent MLP only (no XGBoost), 600 + 60 epochs for its two stages.
    FC-NN: 6 epochs. Returns the three configs.
    """
    if classifier_config is not None:
        c = copy.deepcopy(classifier_config)
        c.train.epochs, c.train.max_seconds = 60, 0.0
        classifier_config = c
    if cae_config is not None:
        c = copy.deepcopy(cae_config)
        c.train.max_seconds = 150.0
        c.latent.regressor = "mlp"
        c.latent.mlp_train.epochs = 600
        if "finetune_train" in c.latent:
            c.latent.finetune_train.epochs = 60
        cae_config = c
    if fcnn_config is not None:
        c = copy.deepcopy(fcnn_config)
        c.train.epochs, c.train.max_seconds = 6, 0.0
        fcnn_config = c
    return classifier_config, cae_config, fcnn_config


def _done(wd: Path, name: str) -> bool:
    return (wd / name).exists()


def _classifier_row(m: dict) -> dict:
    c = m["conditions"]["clean"]["classifier"]
    members = m["conditions"]["clean"].get("members")
    n = m["conditions"].get("noise3%", {}).get("classifier", {})
    by = c["log_rho_rmse_dex_by_zbar"]
    return {"accuracy": c["accuracy"], "t_rmse_ev": c["t_rmse_ev"],
            "log_rho_rmse_dex": c["log_rho_rmse_dex"],
            "log_rho_rmse_dex_zbar_hi": by[f"zbar>={inverse.ZBAR_SPLIT:g}"]["rmse_dex"],
            "log_rho_rmse_dex_zbar_lo": by[f"zbar<{inverse.ZBAR_SPLIT:g}"]["rmse_dex"],
            "zbar_rmse": c["zbar_rmse"],
            "t_rmse_ev_T>=3eV": c["per_temperature_band"]["T>=3eV"].get("t_rmse_ev"),
            "noise3%_accuracy": n.get("accuracy"), "noise3%_t_rmse_ev": n.get("t_rmse_ev"),
            "members": members}


def run_classifier_ablation(config, root, encoders=("conv", "attention"),
                            arms: Sequence[str] = CLASSIFIER_ARMS, gamma: float = 1.0,
                            delta: float = 1.0, progress: bool = False) -> dict:
    """Train + evaluate every (encoder, arm); returns {encoder: {arm: metrics row}}."""
    root = Path(root)
    out = {}
    conds = [("clean", 0.0, 1), ("noise3%", 0.03, 1)]
    for enc in encoders:
        out[enc] = {}
        for arm in arms:
            wd = root / f"classifier_{enc}_{arm}"
            if not _done(wd, "eval/metrics.json"):
                summary = inverse.run_classifier(classifier_arm(config, arm, enc, gamma, delta),
                                                 wd, progress=progress)
                m = inverse.evaluate_classifier(wd, make_figures=False, conditions=conds,
                                                knn_k=(1,), per_member=True)
            else:
                m = json.loads((wd / "eval/metrics.json").read_text())
                summary = workdir_lib.read_model_meta(wd)["train_summary"]
            row = _classifier_row(m)
            row.update(epochs=summary["classifier"]["epochs_run"],
                       seconds=summary["classifier"]["seconds"])
            out[enc][arm] = row
    return out


def _forward_violation(workdir: Path, config) -> float:
    """Fraction of allowed (regime 'data') grid T-pairs where the predicted B rises."""
    from opacity_jax.serve.surrogate import Surrogate
    meta = workdir_lib.read_model_meta(workdir)
    ds = experiment.load_data(config.data)
    train = experiment.node_mask(meta, "train")
    opts = physics_hooks.options_from_config(config.loss)
    masks = physics_hooks.column_pair_masks(ds, train, opts)            # (nZ, nR, nT-1)
    s = Surrogate.load(workdir, outside="ignore")   # every node, held-out ones included
    tt, rr = np.meshgrid(ds.temperature_ev, ds.density_gcc, indexing="ij")
    preds = []
    for z in ds.elements:
        k = s.spectrum(int(z), tt.ravel(), rr.ravel()).reshape(tt.shape + (-1,))
        preds.append(np.moveaxis(np.cbrt(np.maximum(k, 0.0)), 1, 0))   # (nR, nT, nE)
    return physics_hooks.predicted_violation_fraction(np.stack(preds), masks,
                                                      opts["top_percent"])


def ablation_configs(parts=("classifier", "forward"), full: bool = False, members: int = 1,
                     cae_from: Optional[str] = None) -> tuple:
    """(classifier, cae, fcnn configs, CAE checkpoint dir or None) for `run_ablation`.

    parts: 'classifier' and/or 'forward'; full: the configs' default presets unchanged
    (otherwise `small_scale`); members: classifier seed replicates; cae_from: a trained CAE
    workdir whose autoencoder serves the CAE arms (`cae_config_from_workdir`).
    """
    bad = sorted(set(parts) - {"classifier", "forward"})
    if bad:
        raise ValueError(f"--parts: unknown {bad}; allowed: classifier, forward")
    clf = config_files.load("classifier") if "classifier" in parts else None
    cae = config_files.load("cae") if "forward" in parts else None
    fcnn = config_files.load("fcnn") if "forward" in parts else None
    if not full:
        clf, cae, fcnn = small_scale(clf, cae, fcnn)
    if clf is not None:
        clf.classifier.ensemble = int(members)
    ckpt = None
    if cae_from and cae is not None:
        cae, ckpt = cae_config_from_workdir(cae_from)
    return clf, cae, fcnn, ckpt


def cae_config_from_workdir(workdir, mlp_epochs: int = 600, finetune_epochs: int = 0):
    """(config, CAE checkpoint dir) to run the CAE arms on an already trained autoencoder.

    The config is the workdir's own (same data, split and CAE), with the CAE stage capped at the
    epochs it ran (so resuming it trains nothing), the latent MLP only, `mlp_epochs` for its
    first stage and `finetune_epochs` for the decoder fine-tuning stage (0 = off).
    """
    workdir = Path(workdir)
    cfg = workdir_lib.read_config(workdir)
    meta = workdir_lib.read_model_meta(workdir)
    cfg.train.epochs = int(meta["train_summary"]["cae"]["epochs_run"])
    cfg.latent.regressor = "mlp"
    cfg.latent.mlp_train.epochs = int(mlp_epochs)
    if "finetune_train" in cfg.latent:
        cfg.latent.finetune_train.epochs = int(finetune_epochs)
    if "physics" not in cfg.loss:
        cfg.loss.physics = {"monotonic_bb": 0.0}
    return cfg, workdir_lib.checkpoint_dir(workdir, "cae")


def _copy_ckpt(src: Path, wd: Path, label: str) -> None:
    workdir_lib.checkpoint_dir(wd, label).parent.mkdir(parents=True, exist_ok=True)
    if not workdir_lib.checkpoint_dir(wd, label).exists():
        shutil.copytree(src, workdir_lib.checkpoint_dir(wd, label))
        # Resumed although fitted with other settings (loop.WARM_START): a warm start.
        (workdir_lib.checkpoint_dir(wd, label) / loop.WARM_START).write_text("")


def run_forward_ablation(cae_config, fcnn_config, root, gamma: float = 1.0,
                         progress: bool = False, cae_checkpoint=None,
                         warm_epochs: int = 40) -> dict:
    """CAE (+ latent MLP) and FC-NN with and without L_bb; {model: {arm: metrics row}}.

    cae_checkpoint: a trained CAE checkpoint directory (see `cae_config_from_workdir`). Then
      the comparison is a warm start, because L_bb's decoded columns make a latent-MLP epoch
      ~100x dearer on CPU (vmapped per-element decoders): `cae_base` trains the latent MLP
      without physics, and both arms resume it (same CAE, MLP, Adam state) for `warm_epochs`
      more epochs, 'none' without and 'bb' with L_bb, no wall-clock limit.
      None: the 'none' arm trains the CAE and every other arm reuses it, each training its
      latent MLP from scratch.
    """
    root = Path(root)
    out = {}
    for name, base in (("cae", cae_config), ("fcnn", fcnn_config)):
        if base is None:
            continue
        out[name] = {}
        warm = name == "cae" and cae_checkpoint is not None
        if warm:
            base = copy.deepcopy(base)
            base.latent.mlp_train.max_seconds = 0.0
            ref = root / "cae_base"
            if not _done(ref, experiment.MODEL_FILE):
                _copy_ckpt(Path(cae_checkpoint), ref, "cae")
                c0 = copy.deepcopy(base)
                c0.loss.physics.monotonic_bb = 0.0
                experiment.run(c0, ref, progress=progress)
            ran = workdir_lib.read_model_meta(ref)["train_summary"]
            base.latent.mlp_train.epochs = int(ran["latent_mlp"]["epochs_run"]) + warm_epochs
        for arm in FORWARD_ARMS:
            c = copy.deepcopy(base)
            c.loss.physics.monotonic_bb = float(gamma) if arm == "bb" else 0.0
            wd = root / f"{name}_{arm}"
            if warm and not _done(wd, experiment.MODEL_FILE):
                _copy_ckpt(Path(cae_checkpoint), wd, "cae")
                _copy_ckpt(workdir_lib.checkpoint_dir(root / "cae_base", "latent_mlp"), wd,
                           "latent_mlp")
            elif name == "cae" and arm != "none" and not _done(wd, experiment.MODEL_FILE):
                ref = root / f"{name}_none"
                ref_meta = workdir_lib.read_model_meta(ref)
                # Same autoencoder in every arm: reuse its checkpoint; epochs = the epochs it
                # ran, so the resumed CAE stage ends at once and only the latent MLP retrains.
                c.train.epochs = int(ref_meta["train_summary"]["cae"]["epochs_run"])
                _copy_ckpt(workdir_lib.checkpoint_dir(ref, "cae"), wd, "cae")
            if not _done(wd, experiment.MODEL_FILE):
                experiment.run(c, wd, progress=progress)
            meta = workdir_lib.read_model_meta(wd)
            m = fwd_eval.evaluate_workdir(wd, make_figures=False)
            key = "cae+mlp" if name == "cae" else "fcnn"
            r = m["methods"][key]
            out[name][arm] = {"rmse_mean": r["rmse_mean"], "rmse_median": r["rmse_median"],
                              "planck_rel_median": r["planck_rel"]["median"],
                              "rosseland_rel_median": r["rosseland_rel"]["median"],
                              "rmse_ratio_to_4_neighbour": r["rmse_mean"]
                              / m["methods"]["baseline_4_neighbour_mean"]["rmse_mean"],
                              "predicted_violation_fraction": _forward_violation(wd, c),
                              "train_summary": meta.get("train_summary", {})}
    return out


def _f(v, spec):
    return "-" if v is None else format(v, spec)


def tables_markdown(res: dict) -> str:
    """Markdown tables of `run_ablation` results."""
    lines = ["# Physics-loss ablation (held-out data)", ""]
    if res.get("classifier"):
        lines += [f"Classifier, random split, gamma = {res['gamma']}, delta = {res['delta']}:", "",
                  "| encoder | arm | element acc. | T RMSE [eV] | T RMSE T>=3eV | log rho RMSE "
                  "[dex] | Zbar>=0.05 | Zbar<0.05 | Zbar RMSE | acc. 3% noise | epochs | s |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for enc, arms in res["classifier"].items():
            for arm, r in arms.items():
                lines.append(
                    f"| {enc} | {arm} | {_f(r['accuracy'], '.3%')} | {_f(r['t_rmse_ev'], '.4f')} | "
                    f"{_f(r['t_rmse_ev_T>=3eV'], '.3f')} | {_f(r['log_rho_rmse_dex'], '.3f')} | "
                    f"{_f(r['log_rho_rmse_dex_zbar_hi'], '.3f')} | "
                    f"{_f(r['log_rho_rmse_dex_zbar_lo'], '.3f')} | {_f(r['zbar_rmse'], '.3f')} | "
                    f"{_f(r['noise3%_accuracy'], '.3%')} | {r['epochs']} | {r['seconds']} |")
        seeds = [(enc, arm, r["members"]) for enc, arms in res["classifier"].items()
                 for arm, r in arms.items() if r.get("members")]
        if seeds:
            lines += ["", "Seed replicates (the ensemble members trained side by side on the "
                          "loop's entity axis, each evaluated alone): mean +- sd", "",
                      "| encoder | arm | n | T RMSE [eV] | T RMSE T>=3eV | log rho RMSE [dex] | "
                      "Zbar>=0.05 | Zbar RMSE |", "|---|---|---|---|---|---|---|---|"]
            for enc, arm, mem in seeds:
                pm = lambda k, spec=".3f": (f"{mem[k]['mean']:{spec}} +- {mem[k]['sd']:{spec}}")
                lines.append(f"| {enc} | {arm} | {len(mem['t_rmse_ev']['values'])} | "
                             f"{pm('t_rmse_ev', '.4f')} | {pm('t_rmse_ev_T>=3eV')} | "
                             f"{pm('log_rho_rmse_dex')} | {pm('log_rho_rmse_dex_zbar_hi')} | "
                             f"{pm('zbar_rmse')} |")
    if res.get("forward"):
        lines += ["", f"Forward surrogates, held-out (T, rho) nodes, gamma = "
                      f"{res['gamma_forward']}:", "",
                  "| model | arm | RMSE mean [cm^2/g] | RMSE / 4-neighbour | Planck rel. median | "
                  "Rosseland rel. median | predicted B rises on allowed pairs |",
                  "|---|---|---|---|---|---|---|"]
        for model, arms in res["forward"].items():
            for arm, r in arms.items():
                lines.append(f"| {model} | {arm} | {r['rmse_mean']:.4g} | "
                             f"{r['rmse_ratio_to_4_neighbour']:.3f} | "
                             f"{r['planck_rel_median']:.3%} | {r['rosseland_rel_median']:.3%} | "
                             f"{r['predicted_violation_fraction']:.2%} |")
    return "\n".join(lines) + "\n"


def run_ablation(classifier_config, root, cae_config=None, fcnn_config=None,
                 encoders=("conv", "attention"), gamma: float = 1.0, delta: float = 1.0,
                 gamma_forward: float = 1.0, progress: bool = False,
                 cae_checkpoint=None) -> dict:
    """Both ablations; writes <root>/ablation.json and <root>/ablation.md and returns the dict.

    Pass classifier_config=None (or the forward configs None) to skip a part.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    res = {"gamma": gamma, "delta": delta, "gamma_forward": gamma_forward}
    if classifier_config is not None:
        res["classifier"] = run_classifier_ablation(classifier_config, root, encoders,
                                                    gamma=gamma, delta=delta, progress=progress)
        workdir_lib.write_json(root / "ablation.json", res)
    if cae_config is not None or fcnn_config is not None:
        res["forward"] = run_forward_ablation(cae_config, fcnn_config, root, gamma_forward,
                                              progress, cae_checkpoint=cae_checkpoint)
    workdir_lib.write_json(root / "ablation.json", res)
    (root / "ablation.md").write_text(tables_markdown(res))
    return res
