"""Multitask classifier spectrum -> (element, T, rho, Zbar) (thesis §2.4 Table 3, §4.4).

  bin/train --config=configs/classifier.py --workdir=runs/clf              # ~5 min, 2-core CPU
  bin/evaluate_classifier --workdir=runs/clf                               # eval/report.md
  bin/train --config=configs/classifier.py:cpu --workdir=runs/clf_cpu      # longer, + physics
  bin/train --config=configs/classifier.py:paper --workdir=runs/clf_paper  # thesis recipe
  bin/train --config=configs/classifier.py:robust --workdir=runs/clf_robust # degraded inputs
  bin/train --config=configs/classifier.py --config.classifier.encoder=attention \
      --config.loss.physics.saha_zbar=0.1 --workdir=runs/clf_att_saha
  bin/ablation --workdir=reports/ablation                                  # physics ablation

Presets: default = all 28 elements, random 81/9/10 split, cube-root + log10 input channels, up
to 160 epochs or 300 s of training on 2 CPU cores; `cpu` = up to 600 epochs / 20 min; `paper` =
the thesis recipe (cube-root input only, batch 128, Adam 1e-3 halved on plateau, early stopping
with patience 50, no time limit); `robust` = default + training-time augmentation (3 % noise,
half of each batch coarsened x2/4/5/10): the clean-trained net collapses on coarser spectra
(measured: 35 % element accuracy at x4), the augmented one keeps 99.6 % at x4.

Physics losses (eq. 8, L = L_data + gamma L_bb + delta L_Zbar) are listed by name in
`loss.physics` {name: weight}; weight 0 switches a term off. gamma = monotonic_bb_soft,
delta = saha_zbar, p = loss.top_percent. Any registered name may be added (see BUILD.md,
"Extending the PINN losses").
"""

import ml_collections

from opacity_jax import config_files


def get_config(arg=None):
    preset = arg or "default"
    if preset not in ("default", "cpu", "paper", "robust"):
        raise ValueError(f"unknown preset {preset!r}; choose default, cpu, paper or robust")
    c = ml_collections.ConfigDict()
    c.preset = preset
    c.model = "classifier"
    c.seed = 0

    # Embedded generator data, 200 bins, 10 % test / 10 % validation;
    # split or "heldout_nodes" (whole (T, rho) nodes unseen).
    c.data = config_files.spectrum_data_section(
        elements="", split="random")

    c.classifier = ml_collections.ConfigDict()
    c.classifier.encoder = "conv"         # or "attention" (thesis §4.4.1)
    # Input channels: "cbrt" (thesis Table 3) or "cbrt+log" (+ a log10 channel, in which the
    # density-bearing line ratios between ion stages are differences; measured: log rho RMSE at
    # Zbar >= 0.05 0.80 vs 0.88 dex, Zbar RMSE 0.12 vs 0.13, same T and accuracy).
    c.classifier.input = "cbrt" if preset == "paper" else "cbrt+log"
    c.classifier.channels = (16, 32, 64, 128)
    c.classifier.strides = (2, 2, 2, 5)
    c.classifier.kernel = 5
    c.classifier.latent_dim = 128
    c.classifier.attention_at = 3         # attention over the 25 segments after conv 3
    c.classifier.attention_blocks = 1
    c.classifier.attention_heads = 4
    c.classifier.dropout = 0.0
    c.classifier.ensemble = 1             # members trained together on the entity axis

    c.loss = ml_collections.ConfigDict()
    c.loss.weights = ml_collections.ConfigDict(
        {"element": 1.0, "temperature": 1.0, "density": 1.0, "zbar": 1.0})
    c.loss.temperature_space = "both"     # "log" | "linear" (eV) | "both" (mean of the two)
    c.loss.density_loss = "mse"           # or "beta_nll": + a predicted log10 rho spread
    c.loss.physics = ml_collections.ConfigDict({"monotonic_bb_soft": 0.0, "saha_zbar": 0.0})
    c.loss.top_percent = 10.0             # p of eq. 5
    c.loss.regime = "data"                # L_bb only on pairs whose truth obeys the premise
    c.loss.t_range_ev = (0.01, 5.0)       # for regime "t_range"
    c.loss.soft_tau_dex = 0.05            # softness of the predicted-T ordering
    c.loss.saha_samples = 32              # Saha solves per step (first k of the shuffled batch)

    c.augment = ml_collections.ConfigDict()
    c.augment.noise = 0.03 if preset == "robust" else 0.0   # training-time noise sigma on kappa
    # Training-time coarsening factors, e.g. (2, 4, 5, 10): half of each batch is coarsened by
    # one of them (robustness to lower-resolution observations); () = off.
    c.augment.coarsen = (2, 4, 5, 10) if preset == "robust" else ()

    t = "default" if preset == "robust" else preset
    c.train = config_files.train_section(       # LoopConfig defaults + these fields
        epochs={"default": 160, "cpu": 600, "paper": 5000}[t], batch_size=128, patience=50,
        plateau_patience={"default": 10, "cpu": 15, "paper": 20}[t], checkpoint_every=20,
        max_seconds={"default": 300.0, "cpu": 1200.0, "paper": 0.0}[t])

    c.eval = ml_collections.ConfigDict()
    c.eval.noise_levels = (0.01, 0.03, 0.05)
    c.eval.coarsen_factors = (4, 10)
    c.eval.combined = ((0.03, 4),)
    c.eval.knn_k = (1, 5)
    return c
