"""Semiclassical prior for photodissociation cross-sections: the reflection principle and its
uniform (turning-point Airy) form, from the bound states and the potential curves only.

Units as `physics.molecular`: atomic units inside (bohr, hartree, m_e, e a0); wavelengths in nm
and cross-sections in cm^2 at the public boundary.

Theory
------
The exact cross-section (molecular/) is

    sigma_vJ(w) = (4 pi^2 / 3) alpha a0^2 w sum_{J' = J +- 1} h_J' |M_J'(E)|^2,
    M_J'(E) = int chi_vJ(R) D(R) chi_EJ'(R) dR,    E = E_vJ + w,

with chi_EJ' the energy-normalised continuum function of the upper curve plus its centrifugal
term, V_J'(R) = V_upper(R) + J'(J' + 1) / (2 mu R^2). Two approximations of chi_EJ' are used,
each needing only V_J'(R) (no Numerov integration):

* uniform Airy (``form="airy"``; Langer / Miller-Good): with k^2(R) = 2 mu (E - V_J'(R)), R_c the
  inner turning point (the innermost root of V_J'(R) = E: where the upper curve has an outer
  polarisation well or a centrifugal barrier the flux still starts at the inner wall) and
  zeta(R) = +[(3/2) int_{R_c}^R k]^{2/3} (R > R_c), -[(3/2) int_R^{R_c} |k|]^{2/3} (R < R_c),

      chi_EJ'(R) = (2 mu)^{1/2} (zeta / k^2)^{1/4} Ai(-zeta),

  which tends to (2 mu / (pi k))^{1/2} sin(int k + pi/4) far from R_c (the energy normalisation
  of molecular/continuum.py) and is finite through the turning point, where (zeta / k^2)^{1/4} ->
  l^{1/2}, l = (2 mu F)^{-1/3}, F = -dV_J'/dR at R_c. M_J'(E) is then one quadrature on the grid
  of the bound functions.
* reflection (``form="reflection"``): chi_EJ' -> F^{-1/2} delta(R - R_c) as l -> 0, so

      |M_J'(E)|^2 = D(R_c)^2 |chi_vJ(R_c)|^2 / F(R_c),

  the textbook reflection principle, here with |chi_vJ|^2 averaged over a Gaussian of standard
  deviation l(R_c) (the width of the Airy lobe at the turning point), so it never vanishes at
  the nodes of chi_vJ.

The prior used by the residual net (``form="airy"``, default) is sigma_airy + fill x
sigma_reflection: sigma_airy has near-zeros where M_J'(E) changes sign, and the small fill term
(default 1e-3, the level of the training target's floor) keeps log sigma_prior finite there.
All constants are derived (no scale is fitted), so the prior is defined for every bound level
and wavelength, including levels and wavelengths absent from any table.

Cost: levels are binned by how far their wavefunctions reach; per bin and J' one (n_E x n_R)
Airy kernel on an energy grid shared by the bin's levels with J = J' +- 1, then a matrix product
with the bound functions and a cubic spline in E per level. No Numerov integration, but the
kernel is dense: seconds for a few levels or for the light ions' whole tables, minutes for the
heavy ions' (Li2+, Na2+: fine R grids, many v), which is why xsec_experiment caches the prior of
a table on disk. Most kernel points lie many wavelengths past the turning point and take the
oscillating series straight from the WKB phase; scipy's Airy function (~2 us a point) is
replaced by a Hermite table near the turning point (`airy_ai_neg`).

Accuracy against the exact sigma: tests/test_reflection.py (< 1 % median, < 2 % at the peak,
on low levels of H2+, HeH+ and Li2+); over the whole seven-ion table see
reports/xsec_prior/README.md ('prior alone'). The pure reflection form is good only to tens of
per cent.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Optional

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.special import airy

from opacity_jax.errors import DomainError
from opacity_jax.physics import constants as _c
from opacity_jax.physics import molecular as mol_

__all__ = ["FORMS", "prior_cross_sections", "prior_features", "perturbed_molecule",
           "airy_ai_neg", "oscillating_branch"]

FORMS = ("airy", "reflection")

_ASYMPTOTIC_Z = 10.0      # Ai(-z) from its two-term asymptotic series above this (error < 2e-4)
_DECAY_Z = -5.0           # ... and from its decaying series below this
_AI_NODES = 15001         # cubic Hermite nodes in between
_XI_ASYMPTOTIC = (2.0 / 3.0) * _ASYMPTOTIC_Z ** 1.5
_U = (1.0, 5.0 / 72.0, 385.0 / 10368.0, 85085.0 / 2239488.0)   # A&S 10.4.58 u_k
_EDGE = 1e-6              # bound functions trimmed where |chi| < _EDGE x max|chi|


@functools.lru_cache(maxsize=1)
def _ai_table():
    """Nodes, Ai(-z) and d/dz Ai(-z) on [_DECAY_Z, _ASYMPTOTIC_Z] for the cubic Hermite
    interpolant of airy_ai_neg (built once, from scipy's airy)."""
    z = np.linspace(_DECAY_Z, _ASYMPTOTIC_Z, _AI_NODES)
    ai, aip, _, _ = airy(-z)
    return z, ai, -aip


def airy_ai_neg(z):
    """Ai(-z) for real z (any shape), float64; absolute error < 2e-4 x the envelope
    pi^{-1/2} max(|z|, 1)^{-1/4} (tests/test_reflection.py).

    Three branches, because scipy's airy costs ~2 us per point and the prior evaluates it on
    ~1e8 points for a heavy ion:
    * z > 10: the two-term oscillating series (`oscillating_branch`; Abramowitz & Stegun
      10.4.60; relative error < 2e-4 at z = 10, falling like xi^-3);
    * z < -5: the decaying series Ai(x) ~ e^{-xi} / (2 pi^{1/2} x^{1/4}) sum_k (-1)^k u_k / xi^k,
      x = -z, xi = (2/3) x^{3/2}, k <= 3 (A&S 10.4.59; relative error < 3e-5 at x = 5);
    * in between: cubic Hermite interpolation of scipy's Ai and Ai' on 15,001 nodes (error
      about h^4 max|d^4 Ai| / 384 < 1e-12).
    """
    z = np.asarray(z, dtype=np.float64)
    out = np.empty_like(z)
    big = z > _ASYMPTOTIC_Z
    small = z < _DECAY_Z
    mid = ~(big | small)
    zb = z[big]
    out[big] = oscillating_branch((2.0 / 3.0) * zb ** 1.5) / zb ** 0.25
    x = -z[small]
    xi = (2.0 / 3.0) * x ** 1.5
    series = 1.0 - (_U[1] - (_U[2] - _U[3] / xi) / xi) / xi
    out[small] = np.exp(-xi) * series / (2.0 * math.sqrt(math.pi) * x ** 0.25)
    zn, f, df = _ai_table()
    zm = z[mid]
    h = zn[1] - zn[0]
    i = np.clip(((zm - zn[0]) / h).astype(np.int64), 0, zn.size - 2)
    t = (zm - zn[i]) / h
    t2, t3 = t * t, t * t * t
    out[mid] = ((2 * t3 - 3 * t2 + 1) * f[i] + (t3 - 2 * t2 + t) * h * df[i]
                + (-2 * t3 + 3 * t2) * f[i + 1] + (t3 - t2) * h * df[i + 1])
    return out


def oscillating_branch(xi):
    """z^{1/4} Ai(-z) for z > 10, written in xi = (2/3) z^{3/2} (any shape, dimensionless):
    pi^{-1/2} [sin(xi + pi/4) (1 - c2 / xi^2) - c1 / xi cos(xi + pi/4)], c1 = 5/72,
    c2 = 385/10368 (A&S 10.4.60).

    The prior's kernel has xi (the WKB phase from the turning point) directly, so it skips
    z = (3 xi / 2)^{2/3} and the z^{1/4} factors that cancel.
    """
    ph = xi + 0.25 * math.pi
    return (np.sin(ph) * (1.0 - _U[2] / (xi * xi)) - _U[1] / xi * np.cos(ph)) / math.sqrt(math.pi)


def perturbed_molecule(molecule, upper_shift_ev: float = 0.0, dipole_scale: float = 1.0):
    """A copy of a molecule with the upper curve shifted and the transition dipole scaled.

    Models approximate potentials (a user's curves are never exact): V_upper(R) + upper_shift_ev
    [eV] everywhere (the dissociation limit moves with it) and D(R) x dipole_scale. The lower
    curve, and so the bound levels, are unchanged.

    Args:
      molecule: name or molecular.Molecule. upper_shift_ev: shift [eV]. dipole_scale: factor > 0.
    Returns:
      molecular.Molecule (its own level cache).
    """
    mol = mol_.get_molecule(molecule)
    if not math.isfinite(upper_shift_ev) or not (math.isfinite(dipole_scale) and dipole_scale > 0):
        raise ValueError(f"upper_shift_ev must be finite and dipole_scale > 0, got "
                         f"{upper_shift_ev!r}, {dipole_scale!r}")
    if upper_shift_ev == 0.0 and dipole_scale == 1.0:
        return mol
    shift = float(upper_shift_ev) / _c.HARTREE_EV
    up, dip, scale = mol.upper, mol.dipole, float(dipole_scale)
    return dataclasses.replace(
        mol, upper=lambda R: up(R) + shift, dipole=lambda R: scale * dip(R),
        delta_e_inf=mol.delta_e_inf + shift, _cache={},
        name=mol.name, description=f"{mol.description} (upper {upper_shift_ev:+g} eV, "
                                   f"dipole x {dipole_scale:g})")


def _extents(mol, v, J):
    """(lo, hi) (n_levels,) [bohr]: where |chi_vJ| > _EDGE x its maximum (4000-point scan)."""
    coarse = np.linspace(mol.r_min, mol.r_max, 4000)
    lo, hi = np.empty(v.size), np.empty(v.size)
    for j in np.unique(J):
        rows = np.flatnonzero(J == j)
        _, psi = mol_.bound_wavefunctions(mol, int(j), coarse)
        a = np.abs(psi[v[rows]])
        big = a > _EDGE * a.max(axis=1, keepdims=True)
        first = np.argmax(big, axis=1)
        last = coarse.size - 1 - np.argmax(big[:, ::-1], axis=1)
        lo[rows] = coarse[np.maximum(first - 1, 0)]
        hi[rows] = coarse[np.minimum(last + 1, coarse.size - 1)]
    return lo, hi


def _bound_grid(mol, lo: float, hi: float, e_top: float):
    """Uniform R grid [bohr] on [lo, hi], fine enough for the product of a bound and a
    continuum function at total energies up to e_top [hartree]."""
    mu = mol.reduced_mass
    fine = np.linspace(lo, hi, 2000)
    k_b = math.sqrt(2 * mu * max(-float(mol.lower(fine).min()), 1e-12))
    k_c = math.sqrt(2 * mu * max(float(e_top - mol.upper(fine).min()), 1e-12))
    h = min(0.05, 0.8 / (k_b + k_c))
    n = int(math.ceil((hi - lo) / h)) + 1
    return np.linspace(lo, hi, n)


def _turning_grid(mol, jp: int, R: np.ndarray, e_max: float):
    """R grid extended inwards (same step) until V_J' > e_max + 0.05 hartree: every turning
    point needed lies on it. Returns (R_ext, offset of R inside R_ext)."""
    h = float(R[1] - R[0])
    mu = mol.reduced_mass
    r0 = float(R[0])
    n_add = 0
    while True:
        rr = r0 - n_add * h
        if rr <= 2 * h:
            break
        if float(mol.upper(np.array([rr]))[0]) + jp * (jp + 1) / (2 * mu * rr * rr) > e_max + 0.05:
            break
        n_add += max(1, n_add // 2)
    left = r0 - h * np.arange(n_add, 0, -1)
    return np.concatenate([left, R]), n_add


def _kernels(mol, jp: int, R: np.ndarray, energies: np.ndarray):
    """Continuum kernels of J' at total energies (n_E,) on the bound grid R (n_R,).

    Returns (chi (n_E, n_R) uniform-Airy energy-normalised continuum functions, gauss (n_E, n_R)
    Gaussians of width l(R_c) normalised to unit area, r_c (n_E,), force F (n_E,) [hartree/bohr]).
    """
    mu = mol.reduced_mass
    Rx, off = _turning_grid(mol, jp, R, float(energies.max()))
    h = float(R[1] - R[0])
    V = mol.upper(Rx) + jp * (jp + 1) / (2 * mu * Rx ** 2)
    q = 2 * mu * (energies[:, None] - V[None, :])             # signed k^2
    allowed = q > 0
    ic = np.argmax(allowed, axis=1)                           # first allowed point
    ic = np.maximum(ic, 1)
    rows = np.arange(energies.size)
    q0, q1 = q[rows, ic - 1], q[rows, ic]
    t = np.clip(-q0 / np.where(q1 - q0 > 0, q1 - q0, 1.0), 0.0, 1.0)
    r_c = Rx[ic - 1] + t * h
    force = np.maximum((q1 - q0) / (2 * mu * h), 1e-12)      # -dV/dR at R_c
    ell = (2 * mu * force) ** (-1.0 / 3.0)
    k = np.sqrt(np.maximum(q, 0.0))
    ck = np.concatenate([np.zeros((energies.size, 1)), np.cumsum(0.5 * h * (k[:, 1:] + k[:, :-1]),
                                                                 axis=1)], axis=1)
    # The forbidden-side phase is needed only left of each R_c: columns up to the largest ic.
    nl = int(ic.max()) + 1
    kap = np.sqrt(np.maximum(-q[:, :nl], 0.0))
    cq = np.concatenate([np.zeros((energies.size, 1)),
                         np.cumsum(0.5 * h * (kap[:, 1:] + kap[:, :-1]), axis=1)], axis=1)
    # Linear V inside the interval holding R_c: its phase pieces exactly.
    s0 = 2.0 / 3.0 * np.sqrt(2 * mu * force)
    first = s0 * (Rx[ic] - r_c) ** 1.5          # int_{R_c}^{R_ic} k
    last = s0 * (r_c - Rx[ic - 1]) ** 1.5       # int_{R_{ic-1}}^{R_c} kappa
    S = (ck - (ck[rows, ic] - first)[:, None])[:, off:]
    q = q[:, off:]
    right = np.arange(off, Rx.size)[None, :] >= ic[:, None]
    # Most of the kernel lies many wavelengths past R_c, where Ai(-zeta) is its oscillating
    # series in xi = (2/3) zeta^{3/2} = S (airy_ai_neg's branch): evaluated there from S
    # directly, without forming zeta.
    osc = right & (S > _XI_ASYMPTOTIC) & (q > 0)
    chi = np.empty(q.shape)
    chi[osc] = math.sqrt(2 * mu) * oscillating_branch(S[osc]) / np.sqrt(np.sqrt(q[osc]))
    er, cr = np.nonzero(~osc)
    rr = right[er, cr]
    cx = np.minimum(cr + off, nl - 1)       # in range; t_left is used only where not rr
    t_left = cq[er, ic[er] - 1] - cq[er, cx] + last[er]
    zeta = np.where(rr, np.cbrt((1.5 * np.maximum(S[er, cr], 0.0)) ** 2),
                    -np.cbrt((1.5 * np.maximum(t_left, 0.0)) ** 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = zeta / q[er, cr]
    # At the turning point (0/0) and beyond a barrier (sign mismatch): the linear limit l^2.
    ratio = np.where(np.isfinite(ratio) & (ratio > 0) & (np.abs(zeta) > 1e-6), ratio,
                     (ell ** 2)[er])
    chi[er, cr] = math.sqrt(2 * mu) * ratio ** 0.25 * airy_ai_neg(zeta)
    d = (R[None, :] - r_c[:, None]) / ell[:, None]
    gauss = np.exp(-0.5 * d * d) / (math.sqrt(2 * math.pi) * ell[:, None])
    return chi, gauss, r_c, force


def _energy_grid(e_lo: float, e_hi: float, n: int) -> np.ndarray:
    return np.linspace(e_lo, e_hi, n) if e_hi > e_lo * (1 + 1e-12) + 1e-15 else np.array([e_lo])


def _prior_bin(mol, v, J, e_lev, omega, lo: float, hi: float, n_energy: int):
    """(airy, reflection, r_c) (n, n_lambda) of levels (v, J) with energies e_lev [hartree] at
    photon energies omega [hartree], on one R grid over [lo, hi] [bohr]; sum_J' h_J' |M|^2
    (no prefactor) and the J' = J + 1 turning point [bohr]."""
    n_lev = v.size
    airy_part = np.zeros((n_lev, omega.size))
    refl_part = np.zeros((n_lev, omega.size))
    r_c_out = np.full((n_lev, omega.size), np.nan)
    js = np.unique(J)
    e_tot_all = e_lev[:, None] + omega[None, :]
    R = _bound_grid(mol, lo, hi, float(e_tot_all.max()))
    h = float(R[1] - R[0])
    psi = {int(j): mol_.bound_wavefunctions(mol, int(j), R)[1] for j in js}
    D = mol.dipole(R)
    thr = mol.delta_e_inf
    for jp in sorted({int(j) + d for j in js for d in (-1, 1) if int(j) + d >= 0}):
        rows = np.flatnonzero(np.abs(J - jp) == 1)
        hfac = np.where(J[rows] + 1 == jp, J[rows] + 1.0, J[rows] * 1.0) / (2.0 * J[rows] + 1.0)
        keep = hfac > 0
        rows, hfac = rows[keep], hfac[keep]
        e_tot = e_tot_all[rows]
        ok = e_tot > thr
        if not ok.any():
            continue
        eg = _energy_grid(float(e_tot[ok].min()), float(e_tot[ok].max()), int(n_energy))
        chi, gauss, r_c, force = _kernels(mol, jp, R, eg)
        dip_c = mol.dipole(r_c)
        for j in np.unique(J[rows]):
            sub = np.flatnonzero(J[rows] == j)
            vv = v[rows[sub]]
            ps = psi[int(j)][vv]                                  # (n_sub, n_R)
            M = h * (ps * D[None, :]) @ chi.T                     # (n_sub, n_E)
            rho = h * (ps * ps) @ gauss.T                         # smoothed |chi_vJ|^2
            refl = dip_c[None, :] ** 2 * rho / force[None, :]
            for a, i in enumerate(rows[sub]):
                m = ok[sub[a]]
                ee = e_tot[sub[a], m]
                if eg.size > 1:
                    Mi = CubicSpline(eg, M[a])(ee)
                    Ri = np.maximum(CubicSpline(eg, refl[a])(ee), 0.0)
                else:
                    Mi, Ri = np.full(ee.size, M[a, 0]), np.full(ee.size, refl[a, 0])
                hf = hfac[sub[a]]
                airy_part[i, m] += hf * Mi ** 2
                refl_part[i, m] += hf * Ri
                if jp == int(j) + 1:
                    r_c_out[i, m] = np.interp(ee, eg, r_c)
    return airy_part, refl_part, r_c_out


def prior_cross_sections(molecule, v, J, wavelength_nm, form: str = "airy", fill: float = 1e-3,
                         n_energy: Optional[int] = None, return_parts: bool = False):
    """Semiclassical prior sigma_prior(lambda; v, J) [cm^2] of many levels (module docstring).

    Args:
      molecule: name or molecular.Molecule (e.g. from perturbed_molecule).
      v, J: (n_levels,) bound levels of the lower curve (DomainError from molecular if absent).
      wavelength_nm: (n_lambda,) vacuum wavelengths [nm] > 0.
      form: 'airy' (uniform Airy + fill x reflection) or 'reflection' (smoothed reflection only).
      fill: weight of the reflection term added to the Airy form (>= 0; 'airy' only).
      n_energy: energy-grid size per J' (default 400 + 12 x the largest v of each bin of
        levels).
      return_parts: also return the two parts.
    Returns:
      (n_levels, n_lambda) float64 sigma_prior >= 0 [cm^2] (> 0 above the dissociation
      threshold for 'reflection', and for 'airy' with fill > 0); with return_parts
      (sigma_prior, {'airy': ..., 'reflection': ..., 'r_c_bohr': turning point of J' = J + 1})
      all (n_levels, n_lambda).
    """
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    if not (math.isfinite(fill) and fill >= 0):
        raise ValueError(f"fill must be finite and >= 0, got {fill!r}")
    mol = mol_.get_molecule(molecule)
    v, J, lam = mol_.level_wavelength_arrays(v, J, wavelength_nm)
    omega = mol_.wavelength_to_hartree(lam)
    n_lev = v.size
    airy_part = np.zeros((n_lev, lam.size))
    refl_part = np.zeros((n_lev, lam.size))
    r_c_out = np.full((n_lev, lam.size), np.nan)
    if n_lev == 0:
        out = airy_part
        return (out, {"airy": airy_part, "reflection": refl_part, "r_c_bohr": r_c_out}) \
            if return_parts else out
    js = np.unique(J)
    energies = {}
    for j in js:
        e, _ = mol_.bound_wavefunctions(mol, int(j), np.array([mol.r_min]))
        sel = v[J == j]
        if mol.spin_weight(int(j)) == 0:
            raise DomainError(f"{mol.name}: J = {int(j)} does not exist (nuclear-spin weight 0)")
        if sel.max() >= e.size or sel.min() < 0:
            raise DomainError(f"{mol.name}: no bound level v = {int(sel.max())}, J = {int(j)} "
                              f"({e.size} bound levels for this J)")
        energies[int(j)] = e
    e_lev = np.array([energies[int(j)][int(a)] for a, j in zip(v, J)])
    lo, hi = _extents(mol, v, J)
    # Levels binned by how far they reach (factor-2 bins of hi - r_min), each bin on its own R
    # grid: the few near-dissociation levels reaching tens of bohr would otherwise set the grid
    # (and the cost) of all.
    reach = hi - mol.r_min
    key = np.ceil(np.log2(reach / reach.min() + 1e-12)).astype(np.int64)
    for k in np.unique(key):
        sel = np.flatnonzero(key == k)
        a, r, c = _prior_bin(mol, v[sel], J[sel], e_lev[sel], omega, float(lo[sel].min()),
                             float(hi[sel].max()),
                             int(n_energy) if n_energy else 400 + 12 * int(v[sel].max()))
        airy_part[sel], refl_part[sel], r_c_out[sel] = a, r, c
    pref = mol_.XSEC_PREFACTOR_CM2 * omega[None, :]
    airy_part *= pref
    refl_part *= pref
    out = airy_part + fill * refl_part if form == "airy" else refl_part.copy()
    if return_parts:
        return out, {"airy": airy_part, "reflection": refl_part, "r_c_bohr": r_c_out}
    return out


def prior_features(molecule, v, J, wavelength_nm, sigma_ref_cm2: float, floor: float,
                   grid_nm, fill: float = 1e-3, compute=None):
    """Inputs of the residual net (models.xsec.PRIOR_FEATURES) for levels x wavelengths.

    Args:
      molecule: name or molecular.Molecule (a perturbed one for approximate curves).
      v, J: (n,) bound levels. wavelength_nm: (m,) [nm]. sigma_ref_cm2: the molecule's target
        scale [cm^2]. floor: the target's floor (fraction of each curve's max).
      grid_nm: the molecule's wavelength grid [nm]: each level's prior is floored at
        floor x its maximum over this grid, as the target is floored at floor x its known max.
      fill: node fill of the Airy form (prior_cross_sections).
      compute: optional callable(molecule, v, J, wavelength_nm, fill) -> prior_cross_sections'
        (sigma, parts) with return_parts (e.g. a disk cache around it).
    Returns:
      (features (n, m, 3) float32: log10(max(sigma_prior, floor x max_grid sigma_prior) /
      sigma_ref), node depth log10(sigma_prior / (fill sigma_reflection)) / 3 (0 at a node), and
      r_c / r_e of the J' = J + 1 branch (r_e the lower curve's minimum); sigma_prior (n, m)
      [cm^2], unfloored).
    """
    mol = mol_.get_molecule(molecule)
    lam = np.atleast_1d(np.asarray(wavelength_nm, dtype=np.float64))
    grid = np.atleast_1d(np.asarray(grid_nm, dtype=np.float64))
    if not (sigma_ref_cm2 > 0 and 0 < floor < 1):
        raise ValueError(f"sigma_ref_cm2 must be > 0 and floor in (0, 1), got "
                         f"{sigma_ref_cm2!r}, {floor!r}")
    both = np.concatenate([lam, grid])
    if compute is None:
        sig, parts = prior_cross_sections(mol, v, J, both, fill=fill, return_parts=True)
    else:
        sig, parts = compute(mol, v, J, both, fill)
    s, s_grid = sig[:, :lam.size], sig[:, lam.size:]
    tiny = 1e-300
    cmax = np.maximum(s_grid.max(axis=1, keepdims=True), tiny)
    logp = np.log10(np.maximum(s, floor * cmax) / sigma_ref_cm2)
    refl = parts["reflection"][:, :lam.size]
    depth = np.log10(np.maximum(s, tiny) / np.maximum(fill * refl, tiny)) / 3.0
    depth = np.clip(np.where(refl > 0, depth, 0.0), -1.0, 2.0)
    rr = np.linspace(mol.r_min, mol.r_max, 4000)
    r_e = float(rr[np.argmin(mol.lower(rr))])
    rc = parts["r_c_bohr"][:, :lam.size] / r_e
    rc = np.where(np.isfinite(rc), rc, 1.0)
    feats = np.stack([logp, depth, rc], axis=-1).astype(np.float32)
    return feats, s
