"""Completion of a user's per-level cross-section tables (experiments/xsec_completion.py).

  bin/complete_xsec --input=my_levels/ --output=runs/my_levels_filled
  bin/complete_xsec --input=my_levels/ --output=runs/f --config.train.max_seconds=600
  bin/complete_xsec --input=my_levels/ --output=runs/f \
      --config.completion.estimators=interpolation,prior

= configs/xsec_prior.py (default preset: the residual net and its training section) with the
prior's curves calibrated on the known rows (prior.calibrate: a user's table was made with other
curves than the package's), 120 s of training by default, and the completion settings below.
"""

import ml_collections

from opacity_jax import config_files

_prior = config_files.sibling(__file__, "xsec_prior")


def get_config(arg=None):
    preset = arg or "default"
    if preset != "default":
        raise ValueError(f"unknown preset {preset!r}; choose default")
    c = _prior.get_config("default")
    c.preset = preset
    c.prior.calibrate = True
    c.train.max_seconds = 120.0
    c.completion = ml_collections.ConfigDict()
    c.completion.estimators = "interpolation,prior,net"   # candidates (comma-separated)
    c.completion.probe_fraction = 0.1   # known levels / v held out to choose (>= 2 / 1 units)
    c.completion.val_fraction = 0.1     # of the remaining whole levels: the net's early stopping
    c.completion.threshold = 1e-3       # scored where sigma > threshold x its curve's max
    c.completion.pattern = "*.txt,*.csv,*.dat"   # input file names read from --input
    return c
