"""Calibration of the semiclassical prior's curves on known cross-sections.

A user's potentials are approximate. Two errors dominate what the prior of
`physics.reflection` inherits from them, and both act on the prior in closed form:

* a shift s of the upper curve, V_upper -> V_upper + s: the continuum functions at total
  energy E become those of the unshifted curve at E - s, so M_J'(E) -> M_J'(E - s) and, with
  the omega prefactor of the cross-section (photon energy omega),

      sigma_s(omega) = omega / (omega - s) x sigma_0(omega - s)                       (1)

  (exact for the exact cross-section and for the prior alike; the bound levels are those of
  the lower curve and do not move);
* a scale of the transition dipole D(R) -> d D(R): sigma -> d^2 sigma, a global factor.

`fit_shift_scale` fits one (s, log10 c) per molecule so that c x (the prior with its upper
curve lowered by s) matches known cross-sections in log space, evaluating (1) by interpolating
an already computed prior along each level's wavelength grid (no new prior needed per trial).
The caller then builds the calibrated prior exactly from the curves
(`reflection.perturbed_molecule` with the upper curve lowered by s) times c; see
serve/xsec.py prior_inputs and experiments/xsec.py attach_prior.

Units: photon energies in hartree inside, shifts in eV and wavelengths in nm at the boundary;
cross-sections in cm^2.
"""

from __future__ import annotations

import math

import numpy as np

from opacity_jax.physics import constants as _c
from opacity_jax.physics import molecular as mol_

__all__ = ["shift_prior", "fit_shift_scale"]


def shift_prior(sigma_cm2, wavelength_nm, shift_ev: float):
    """Prior of the upper curve shifted by `shift_ev`, from the prior on a wavelength grid, by (1).

    Args:
      sigma_cm2: (n_levels, n_lambda) prior cross-sections [cm^2] >= 0 on wavelength_nm.
      wavelength_nm: (n_lambda,) increasing or decreasing wavelengths [nm] > 0.
      shift_ev: upper-curve shift s [eV] (> 0 moves the curve up, sigma to shorter wavelengths).
    Returns:
      (n_levels, n_lambda) float64 sigma_s [cm^2]: log-linear interpolation in photon energy of
      sigma_0 at omega - s, times omega / (omega - s); NaN where omega - s falls outside the
      grid's photon-energy range (zero where sigma_0 is zero at both neighbours).
    """
    sig = np.atleast_2d(np.asarray(sigma_cm2, np.float64))
    lam = np.asarray(wavelength_nm, np.float64)
    if lam.ndim != 1 or lam.size != sig.shape[1] or lam.size < 2 or np.any(~(lam > 0)):
        raise ValueError(f"wavelength_nm must be (n_lambda,) = ({sig.shape[1]},) positive, got "
                         f"shape {lam.shape}")
    if not math.isfinite(shift_ev):
        raise ValueError(f"shift_ev must be finite, got {shift_ev!r}")
    om = mol_.wavelength_to_hartree(lam)
    order = np.argsort(om)
    om_s, sig_s = om[order], sig[:, order]
    s = float(shift_ev) / _c.HARTREE_EV
    target = om - s
    inside = (target >= om_s[0]) & (target <= om_s[-1]) & (target > 0)
    # Interpolate log sigma (the prior spans decades across a lobe); zeros stay zeros.
    tiny = 1e-300
    logs = np.log(np.maximum(sig_s, tiny))
    pos = np.clip(np.searchsorted(om_s, target) - 1, 0, om_s.size - 2)
    t = (target - om_s[pos]) / (om_s[pos + 1] - om_s[pos])
    lo, hi = logs[:, pos], logs[:, pos + 1]
    val = np.exp(lo + t * (hi - lo))
    val = np.where((sig_s[:, pos] <= 0) & (sig_s[:, pos + 1] <= 0), 0.0, val)
    out = val * (om / np.where(target > 0, target, 1.0))[None, :]
    return np.where(inside[None, :], out, np.nan)


def _misfit(prior, sigma, use, floor_abs):
    """(log10 c, mean |log10 residual - log10 c|) of one trial on the points `use`."""
    ok = use & np.isfinite(prior)
    if ok.sum() < 3:
        return 0.0, np.inf
    r = np.log10(sigma[ok]) - np.log10(np.maximum(prior, floor_abs)[ok])
    c = float(np.median(r))
    return c, float(np.mean(np.abs(r - c)))


def fit_shift_scale(sigma_prior_cm2, sigma_cm2, known, wavelength_nm, resolved: float = 1e-3,
                    max_shift_ev: float = 0.1, coarse_step_ev: float = 1e-3,
                    tol_ev: float = 1e-5):
    """Fit (s, log10 c) so that c x (prior with its upper curve lowered by s) matches sigma.

    The misfit is the mean absolute log10 residual (robust to the prior's misplaced nodes) at
    the known points where sigma > resolved x the largest known sigma of its level; c is its
    median residual (the L1-optimal scale for a given s). s is searched on a grid of
    coarse_step_ev over [-max_shift_ev, max_shift_ev], then refined by golden section to
    tol_ev inside the bracketing grid cells. Each trial maps the prior by (1) (shift_prior
    with -s), evaluated by interpolation along each level's wavelength grid.

    Args:
      sigma_prior_cm2: (n_levels, n_lambda) prior [cm^2] of the curves to calibrate, on the
        same grid as sigma_cm2 (all levels, known or not).
      sigma_cm2: (n_levels, n_lambda) table cross-sections [cm^2] (only `known` ones are read).
      known: (n_levels, n_lambda) bool, the points the fit may use (the training rows).
      wavelength_nm: (n_lambda,) [nm].
      resolved: fraction of each level's known maximum above which a point counts.
      max_shift_ev, coarse_step_ev, tol_ev: search range and resolutions [eV].
    Returns:
      dict: shift_ev (s [eV]: the prior's upper curve sits s above the one the table fits),
      log10_scale (log10 c), misfit_dex (mean |log10 residual| after the fit), misfit0_dex
      (at s = 0, with its own best c), n_points.
    """
    prior = np.asarray(sigma_prior_cm2, np.float64)
    sig = np.asarray(sigma_cm2, np.float64)
    known = np.asarray(known, bool)
    if prior.shape != sig.shape or known.shape != sig.shape or prior.ndim != 2:
        raise ValueError(f"sigma_prior_cm2, sigma_cm2 and known must share one (n_levels, "
                         f"n_lambda) shape, got {prior.shape}, {sig.shape}, {known.shape}")
    if not (0 < resolved < 1 and max_shift_ev > 0 and 0 < tol_ev < coarse_step_ev):
        raise ValueError("need 0 < resolved < 1, max_shift_ev > 0, 0 < tol_ev < coarse_step_ev")
    kmax = np.where(known, sig, -np.inf).max(axis=1, keepdims=True)
    use = known & (sig > resolved * kmax) & (sig > 0)
    if use.sum() < 3:
        raise ValueError("fewer than 3 resolved known points: nothing to calibrate on")
    # The prior is floored as the net's prior feature is (1e-3 of its level's maximum), so a
    # trial that moves the threshold across resolved points is penalised, not skipped.
    floor_abs = 1e-3 * np.maximum(prior.max(axis=1, keepdims=True), 1e-300)

    def trial(s):
        return _misfit(shift_prior(prior, wavelength_nm, -s), sig, use, floor_abs)

    grid = np.arange(-max_shift_ev, max_shift_ev + 0.5 * coarse_step_ev, coarse_step_ev)
    costs = np.array([trial(s)[1] for s in grid])
    i = int(np.argmin(costs))
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
    g = (math.sqrt(5) - 1) / 2
    x1, x2 = b - g * (b - a), a + g * (b - a)
    f1, f2 = trial(x1)[1], trial(x2)[1]
    while b - a > tol_ev:
        if f1 <= f2:
            b, x2, f2 = x2, x1, f1
            x1 = b - g * (b - a)
            f1 = trial(x1)[1]
        else:
            a, x1, f1 = x1, x2, f2
            x2 = a + g * (b - a)
            f2 = trial(x2)[1]
    s = 0.5 * (a + b)
    c, cost = trial(s)
    if costs[i] < cost:
        s, (c, cost) = float(grid[i]), trial(float(grid[i]))
    return {"shift_ev": float(s), "log10_scale": float(c), "misfit_dex": float(cost),
            "misfit0_dex": float(_misfit(prior, sig, use, floor_abs)[1]),
            "n_points": int(use.sum())}
