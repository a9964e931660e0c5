"""Saha-structured opacity surrogate: charge-stage spectra mixed by an LTE prior with a learned
correction of the stage boundaries (opacity_jax.models.stage_basis).

  bin/train --config=configs/stage_basis.py --workdir=runs/sb && bin/evaluate --workdir=runs/sb
  bin/train --config=configs/stage_basis.py:cpu --workdir=runs/sb_cpu        # all 28 elements
  bin/train --config=configs/stage_basis.py --config.data.split=heldout_t_rows --workdir=runs/sb_rows

Presets: default = the 6 representative elements of configs/cae.py (Ce, Nd, Eu, Er, U, Cm);
`cpu` = all 28 elements. The prior uses only tabulated ionization energies and unit partition
functions; the model is fitted to total spectra only.
"""

import ml_collections

from opacity_jax import config_files


def get_config(arg=None):
    preset = arg or "default"
    if preset not in ("default", "cpu"):
        raise ValueError(f"unknown preset {preset!r}; choose default or cpu")
    c = ml_collections.ConfigDict()
    c.preset = preset
    c.model = "stage_basis"
    c.seed = 0

    # Embedded generator data, 200 bins, 10 % test / 10 % validation;
    # split or "random", "heldout_t_rows".
    c.data = config_files.spectrum_data_section(
        elements="Ce,Nd,Eu,Er,U,Cm" if preset == "default" else "", split="heldout_nodes")

    c.stage_basis = ml_collections.ConfigDict()
    c.stage_basis.min_fraction = 1e-6     # prior fraction that puts a stage in the window
    c.stage_basis.stage_margin = 1        # extra stages on each side of the window
    c.stage_basis.correction = True       # learn the boundary corrections dphi (ablation: False)
    c.stage_basis.row_restarts = 2        # starts per row in the initial sweep (0 = dphi0 = 0)
    c.stage_basis.row_steps = 80          # Adam steps per start in the initial sweep
    c.stage_basis.dphi_penalty = 1e-6     # ridge on dphi
    c.stage_basis.smooth_penalty = 1e-6   # curvature of dphi in log10 T
    c.stage_basis.log_refine_steps = 30   # log-space LM steps on the stage spectra (0 = linear fit)
    c.stage_basis.log_refine_linear_weight = 100.0   # + weight of the scaled linear misfit

    # The loop: LoopConfig defaults + these fields (one full-batch step per epoch).
    c.train = config_files.train_section(
        epochs={"default": 300, "cpu": 400}[preset], batch_size=64, learning_rate=1e-2,
        plateau_patience=30, eval_every=5, checkpoint_every=50)
    return c
