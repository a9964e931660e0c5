"""Completion of gridded opacity tables with holes (opacity_jax.completion).

  bin/complete --input=../shared/data/jlodk_planck_mean --mask=holes.npy --output=runs/jlodk_filled
  bin/complete --input=my_table.txt --output=runs/my_table_filled      # NaN entries are holes
  bin/complete --input=../shared/data/jlodk_planck_mean --add-ye=0.15,0.25,0.35 \
      --output=runs/jlodk_ye                        # new Ye slices (main fit + one per gap_runs)
  bin/complete --input=../shared/data/jlodk_planck_mean --output=runs/jlodk_eval \
      --evaluate=random20,rows,ye_slice                               # score vs baselines

Presets: default (K = 5 members, <= 80 epochs: ~3-4 min per fit of the 126,000-entry JLODK
table on an idle 2-core CPU; whole missing slices need 1 + len(gap_runs) fits), `quick` (K = 2, 10 epochs; smoke tests), `thorough` (K = 8, <= 200
epochs). Override any field, e.g. --config.completion.members=8.
"""

import ml_collections


def get_config(arg=None):
    preset = arg or "default"
    if preset not in ("default", "quick", "thorough"):
        raise ValueError(f"unknown preset {preset!r}; choose default, quick or thorough")
    c = ml_collections.ConfigDict()
    c.preset = preset
    c.seed = 0
    # Every key of opacity_jax.experiments.completion.completion_config (its only defaults).
    c.completion = ml_collections.ConfigDict()
    c.completion.members = 5                  # K ensemble members
    c.completion.hidden = [128, 128, 128]     # MLP widths
    c.completion.beta = 0.5                   # beta-NLL exponent
    c.completion.rank = 2                     # known neighbours per side and axis
    c.completion.pattern = "auto"             # auto, random, rows, slice
    c.completion.cal_fraction = 0.1           # of the known entries
    c.completion.val_fraction = 0.05
    c.completion.calibration_levels = [0.95]
    c.completion.slice_select = True          # whole slices: estimator chosen on held-out slices
    c.completion.slice_select_margin = 0.1    # ... replacing the interp_total baseline if 10 % better
    c.completion.gap_runs = [1, 2]            # held-out runs of 1 and 2 known slices (one fit each)
    c.completion.gap_exponent_prior = 1.0     # sigma scale ~ gap**p; p when one gap size is measured
    c.completion.gap_exponent_bounds = [0.0, 2.0]
    c.completion.target_samples = 100_000
    c.completion.max_realisations = 12
    c.completion.train = ml_collections.ConfigDict(dict(
        epochs=80, batch_size=2048, learning_rate=2e-3, plateau_patience=3, plateau_factor=0.5,
        patience=15, eval_every=1, checkpoint_every=20, max_seconds=0.0))
    if preset == "quick":
        c.completion.members = 2
        c.completion.hidden = (64, 64)
        c.completion.target_samples = 20_000
        c.completion.train.epochs = 10
        c.completion.train.patience = 0
    elif preset == "thorough":
        c.completion.members = 8
        c.completion.train.epochs = 200
        c.completion.train.patience = 25
    c.table = ml_collections.ConfigDict()
    c.table.value_columns = ""        # text tables: comma-separated value columns (default: last)
    c.evaluate = ml_collections.ConfigDict()
    c.evaluate.fraction = 0.2         # random20 / rows: fraction of entries (rows) hidden
    return c
