"""Residual net on a semiclassical physics prior: configs/xsec.py with

    log10 sigma = log10 sigma_prior(lambda; v, J) + g(lambda, v, J, E_vJ, prior features),

sigma_prior the uniform-Airy / reflection-principle cross-section computed from the bound levels
and the potential curves alone (opacity_jax/physics/reflection.py; no fitted constant), g a
ReLU MLP whose output layer starts at zero (models/xsec.py XsecPrior).

  bin/train --config=configs/xsec_prior.py --workdir=runs/xsec_prior
  bin/evaluate_xsec --workdir=runs/xsec_prior          # also reports the prior alone
  bin/train --config=configs/xsec_prior.py --config.data.split=v_levels --workdir=runs/xp_v
  bin/train --config=configs/xsec_prior.py:perturbed --workdir=runs/xsec_prior_pert

Presets as configs/xsec.py (default, cpu, paper), plus 'perturbed' (= default with the prior
built from approximate curves: upper curve +0.03 eV, transition dipole x 1.03; the table
itself is unchanged), whose curves are calibrated on the training rows before training
(prior.calibrate: one upper-curve shift and one global scale per molecule, recorded in
model.json and used again when serving). v enters continuously (v / v_max, E_vJ), so held-out
whole v levels need no other setting; no Fourier features; dropout 0; learning rate 1e-3 (the
residual is small: at 3e-3 the first epochs move the net further from the target than the
prior was); the lobe-shift head on (prior.shift_head).
"""

import importlib.util
import pathlib

_spec = importlib.util.spec_from_file_location("_opacity_xsec_config",
                                               pathlib.Path(__file__).with_name("xsec.py"))
_xsec = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_xsec)

import ml_collections  # noqa: E402


def get_config(arg=None):
    preset = arg or "default"
    if preset not in ("default", "cpu", "paper", "perturbed"):
        raise ValueError(f"unknown preset {preset!r}; choose default, cpu, paper or perturbed")
    c = _xsec.get_config("default" if preset == "perturbed" else preset)
    c.preset = preset
    c.model = "xsec_prior"
    c.xsec.dropout = 0.0
    c.xsec.v_encoding = "continuous"
    # No Fourier features: the prior already carries the oscillations of sigma(lambda); on a
    # HeH+ table (J <= 3) the residual net reached 0.13 % without them, 0.15 % with 8 pairs.
    c.xsec.n_fourier = 0
    c.train.learning_rate = 1e-3
    c.prior = ml_collections.ConfigDict()
    c.prior.fill = 1e-3              # reflection term filling the nodes of the Airy form
    c.prior.upper_shift_ev = 0.03 if preset == "perturbed" else 0.0   # approximate curves
    c.prior.dipole_scale = 1.03 if preset == "perturbed" else 1.0
    # Calibrate the curves on the training rows before training (experiments/xsec.py
    # attach_prior): one upper-curve shift [eV] and one global scale per molecule. On for the
    # approximate curves; off by default for the package's own curves, whose prior is already
    # exact up to its semiclassical error (the fit then returns s ~ 0, c ~ 1: tests).
    c.prior.calibrate = preset == "perturbed"
    c.prior.max_shift_ev = 0.1       # search range of the shift [eV]
    c.prior.refine_levels = 48       # training levels of the exact refinement of the shift
    # The fitted shift is rounded to this [eV], so the splits of a table and the served model
    # share one cached prior (a heavy ion's prior costs minutes); the residual net absorbs the
    # remainder (<= 0.5 meV).
    c.prior.shift_quantum_ev = 1e-3
    # Lobe-shift head (models/xsec.py XsecPrior.shift_head): the prior's local slope and
    # curvature along the grid as inputs, g = a + b slope + c curvature. Without it the net did
    # not improve on the prior for Li2+ (0.30 vs 0.30 % on held-out (v, J)); with it 0.09 %
    # (reports/xsec_prior_calibrated/shift_head.json). False = the net of reports/xsec_prior*.
    c.prior.shift_head = True
    return c
