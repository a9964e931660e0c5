"""Photodissociation cross-sections of diatomic molecular ions from potential curves.

Everything here is numpy/scipy float64 in **atomic units** internally: lengths in bohr (a0),
energies in hartree (E_h), masses in electron masses (m_e), dipoles in e a0. The public boundaries
take wavelengths in nm and temperatures in K and return cross-sections in cm^2; each function says
which units it takes and returns.

Theory
------
For a bound rovibrational level (v, J) of the lower electronic state and a photon of energy w
(hartree), the photodissociation cross-section to the continuum of the upper state is (a.u.)

    sigma_{vJ}(w) = (4 pi^2/3) alpha w sum_{J'=J+-1} h_{J'} |<chi_{vJ}| D(R) |chi_{E'J'}>|^2 a0^2,

with h_{J+1} = (J + 1)/(2J + 1), h_{J-1} = J/(2J + 1), D(R) the electronic transition dipole,
E' = E_{vJ} + w - dE_inf the kinetic energy of the fragments (dE_inf = upper minus lower
dissociation limit), E_{vJ} < 0 measured from the lower state's dissociation limit, chi_{vJ}
unit-normalised and chi_{E'J'} energy-normalised per hartree: chi -> (2 mu / (pi k))^{1/2}
sin(kR + delta), k = (2 mu E')^{1/2}.

Numerics:
  * Bound levels: mapped sinc DVR (Colbert & Miller, JCP 96, 1982 (1992); mapping as in the
    "mapped Fourier grid" of Kokoouline et al., JCP 110, 9865 (1999)): R(x) = r_min + s sinh(x/s)
    on a uniform x grid, kinetic energy (1/2mu) W D^T diag(1/J) D W with D the sinc first-derivative
    matrix and W = diag(J^{-1/2}), so ~100-1250 points reach 30-150 bohr with the resolution of a
    <= 0.05-bohr grid in the well; all eigenvalues (LAPACK divide and conquer) and those below the
    dissociation limit kept.
  * Continuum: Numerov outward integration, vectorised over energies, from deep inside the
    repulsive wall (where the WKB tunnelling integral to the turning point exceeds 30), on a uniform
    grid with k h <= 0.25. Normalised at the matching radius by the local (WKB) amplitude of the
    last two points, a^2 = (u1^2 + u2^2 - 2 u1 u2 cos kh) / sin^2 kh with the Langer-corrected local
    k(R) = [2mu(E - V(R)) - (J' + 1/2)^2 / R^2]^{1/2}, so the 1/R^2 and 1/R^4 tails need no huge R.
    The matching radius is the larger of the molecule's r_match and the radius where the bound
    function has fallen below 1e-7 of its maximum. The bound functions are carried to the Numerov
    grid by Gaussian-regularised sinc interpolation of the DVR eigenvectors.
  * Many levels at once (generator, LTE average): levels sharing J' are binned by how far their
    wavefunctions reach; each bin is computed either level by level at its own energies or on a
    k-grid shared by the bin and spline-interpolated (cubic in k of M / k^{1/2}), whichever a
    cost model finds cheaper. The two agree to ~1e-5 relative (tested).

The molecules are described in :mod:`.potentials`.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np
from scipy.interpolate import CubicSpline

from opacity_jax.physics import constants as _c
from opacity_jax.physics.molecular.bound import (bound_levels, bound_on_grid, bound_states,
                                                dvr_grid, level_energy)
from opacity_jax.physics.molecular.common import (EV_IN_HARTREE, H2PLUS_REDUCED_MASS,
                                                 XSEC_PREFACTOR_CM2, blas_single,
                                                 hartree_to_wavelength, wavelength_to_hartree)
from opacity_jax.physics.molecular.continuum import continuum_grid, continuum_matrix_elements
from opacity_jax.physics.molecular.potentials import Molecule, get_molecule, h2plus


# ---------------------------------------------------------------------------------------------
# Cross-sections
# ---------------------------------------------------------------------------------------------

_GRID_MODE_MIN_POINTS = 1500


def _bound_k(mol: Molecule) -> float:
    g = dvr_grid(mol)
    return math.sqrt(2.0 * mol.reduced_mass * max(-float(np.min(mol.lower(g.R))), 1e-12))


def _bound_weights(mol: Molecule, J: int, R: np.ndarray, levels) -> np.ndarray:
    """psi_v(R) D(R) h on the continuum grid for the given v of one J: (len(levels), len(R))."""
    return bound_on_grid(mol, int(J), R, levels) * (mol.dipole(R) * (R[1] - R[0]))[None, :]


def _partition_by_extent(mol: Molecule, ext: np.ndarray, e_max: float, n_lam: int,
                         n_energy: int, method: str, k_b: float) -> list:
    """Split levels (by how far their wavefunctions reach) into runs that minimise total cost.

    The Numerov cost of a run is (grid length) x (number of continuum energies), so a few
    near-threshold levels reaching 150 bohr should not lengthen the run of the compact majority,
    and a bin of levels is computed either level by level ("direct", n_lambda energies each, each
    on its own grid) or on a shared k-grid ("grid", n_energy energies) whichever is cheaper.
    Dynamic programming over the levels sorted by extent; the cost model (seconds, measured on the
    development CPU) is steps x (9 us + 8 ns x n_E) per run plus ~0.02 s per run.
    Returns a list of (index array into ext, "direct" | "grid").
    """
    order = np.argsort(ext, kind="stable")
    n = ext.size
    R = continuum_grid(mol, e_max, float(ext.max()), k_b)
    h = float(R[1] - R[0])
    steps = (ext[order] - mol.r_min) / h
    csteps = np.concatenate([[0.0], np.cumsum(steps)])

    def run_cost(i, j):   # levels order[i..j] inclusive; the last reaches farthest
        direct = (csteps[j + 1] - csteps[i]) * (9e-6 + 8e-9 * n_lam) + 0.005 * (j - i + 1)
        grid = steps[j] * (9e-6 + 8e-9 * n_energy) + 0.02
        if method == "direct":
            return direct, "direct"
        if method == "grid":
            return grid, "grid"
        return (direct, "direct") if direct <= grid else (grid, "grid")

    best = np.full(n + 1, np.inf)
    best[0] = 0.0
    prev = np.zeros(n + 1, dtype=np.int64)
    mode = [""] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j):
            c, m = run_cost(i, j - 1)
            c += best[i]
            if c < best[j]:
                best[j], prev[j], mode[j] = c, i, m
    parts = []
    j = n
    while j > 0:
        i = prev[j]
        parts.append((order[i:j], mode[j]))
        j = i
    return parts[::-1]


def _group_msq(mol: Molecule, jp: int, v, J, hfac, e_tot, ext, method: str, n_energy: int,
               k_b: float) -> np.ndarray:
    """sum-ready h_{J'} |M|^2 (n_rows, n_lambda) for levels (v, J) -> one upper J'.

    e_tot: (n_rows, n_lambda) total energies [hartree]; ext: (n_rows,) bound extents [bohr];
    method: "direct" (each level at its own energies) or "grid" (shared k-grid + spline).
    """
    mu = mol.reduced_mass
    n_rows, n_lam = e_tot.shape
    out = np.zeros((n_rows, n_lam))
    e_kin = e_tot - mol.delta_e_inf
    if method == "direct":
        for i in range(n_rows):
            # Each level on its own grid, as long as its own wavefunction reaches.
            R = continuum_grid(mol, float(e_tot[i].max()), max(mol.r_match, float(ext[i])), k_b)
            row_end = np.array([min(int(math.ceil((ext[i] - R[0]) / (R[1] - R[0]))) + 1,
                                    R.size)])
            wts = _bound_weights(mol, int(J[i]), R, [int(v[i])])
            M = continuum_matrix_elements(mol, jp, e_tot[i], wts, R, row_end=row_end)[0]
            out[i] = hfac[i] * M ** 2
        return out
    R = continuum_grid(mol, float(e_tot.max()), max(mol.r_match, float(ext.max())), k_b)
    h = R[1] - R[0]
    row_end = np.minimum(np.ceil((ext - R[0]) / h).astype(np.int64) + 1, R.size)
    pos = e_kin[e_kin > 0]
    k_lo, k_hi = math.sqrt(2 * mu * pos.min()), math.sqrt(2 * mu * pos.max())
    n_k = n_energy if k_hi > k_lo * (1 + 1e-12) else 1
    k_grid = np.linspace(k_lo, k_hi, n_k)
    e_grid = k_grid ** 2 / (2 * mu) + mol.delta_e_inf
    wts = np.empty((n_rows, R.size))
    for j in np.unique(J):
        sel = np.flatnonzero(J == j)
        wts[sel] = _bound_weights(mol, int(j), R, v[sel])
    Mg = continuum_matrix_elements(mol, jp, e_grid, wts, R, row_end=row_end)
    ok = e_kin > 0
    for i in range(n_rows):
        kq = np.sqrt(2 * mu * e_kin[i, ok[i]])
        if n_k > 1:
            # M ~ k^{J'+1/2} at threshold: M / k^{1/2} is the smooth quantity to interpolate.
            spl = CubicSpline(k_grid, Mg[i] / np.sqrt(k_grid))
            Mi = spl(np.clip(kq, k_lo, k_hi)) * np.sqrt(kq)
        else:
            Mi = np.full(kq.size, Mg[i, 0])
        out[i, ok[i]] = hfac[i] * Mi ** 2
    return out


@blas_single
def level_wavelength_arrays(v, J, wavelength_nm):
    """Checked query arrays: v, J (n_levels,) int64 of equal length; wavelength_nm (n_lambda,)
    float64, finite and positive [nm]. ValueError naming the argument otherwise."""
    v = np.atleast_1d(np.asarray(v, dtype=np.int64))
    J = np.atleast_1d(np.asarray(J, dtype=np.int64))
    lam = np.atleast_1d(np.asarray(wavelength_nm, dtype=np.float64))
    if v.shape != J.shape or v.ndim != 1:
        raise ValueError("v and J must be equal-length 1-D arrays")
    if lam.ndim != 1 or np.any(~np.isfinite(lam)) or np.any(lam <= 0):
        raise ValueError("wavelength_nm must be a 1-D array of finite positive values [nm]")
    return v, J, lam


def cross_sections(molecule, v, J, wavelength_nm, *, method: str = "auto",
                   n_energy: Optional[int] = None, progress: Optional[Callable] = None):
    """Photodissociation cross-sections of many levels on one wavelength grid.

    Args:
      molecule: name or Molecule.
      v, J: (n_levels,) integer arrays of bound levels (see bound_levels).
      wavelength_nm: (n_lambda,) vacuum wavelengths [nm], > 0.
      method: "direct" (continuum at every needed energy: exact, slow for many levels), "grid"
        (matrix elements on a k-grid shared by all levels with the same J', spline-interpolated;
        agrees with "direct" to ~1e-7 relative except within a few grid points of threshold)
        or "auto" (per bin of levels with similar extent, whichever a cost model finds cheaper).
      n_energy: k-grid size for "grid" (default max(1500, 12 x largest v + 600)).
      progress: optional callable(done, total) called after each J' (total = number of J').
    Returns:
      (n_levels, n_lambda) float64 sigma [cm^2] >= 0.
    """
    mol = get_molecule(molecule)
    v, J, lam = level_wavelength_arrays(v, J, wavelength_nm)
    if method not in ("auto", "direct", "grid"):
        raise ValueError(f"method must be 'auto', 'direct' or 'grid', got {method!r}")
    omega = wavelength_to_hartree(lam)
    energies = np.array([level_energy(mol, int(a), int(b)) for a, b in zip(v, J)])
    msq = np.zeros((v.size, lam.size))
    jps = sorted({int(j) + d for j in J for d in (-1, 1) if int(j) + d >= 0})
    k_b = _bound_k(mol)
    if n_energy is None:
        n_energy = max(_GRID_MODE_MIN_POINTS, 12 * int(v.max(initial=0)) + 600)
    ext_all = np.array([bound_states(mol, int(j)).r_extent[int(vv)] for vv, j in zip(v, J)])
    for step, jp in enumerate(jps):
        rows = np.flatnonzero(np.abs(J - jp) == 1)
        # h_{J'}: (J+1)/(2J+1) for J' = J+1, J/(2J+1) for J' = J-1.
        hfac = np.where(J[rows] + 1 == jp, J[rows] + 1.0, J[rows] * 1.0) / (2.0 * J[rows] + 1.0)
        e_tot = energies[rows, None] + omega[None, :]          # (n_rows, n_lambda)
        keep = (hfac > 0) & np.any(e_tot > mol.delta_e_inf, axis=1)
        rows, hfac, e_tot = rows[keep], hfac[keep], e_tot[keep]
        if rows.size:
            ext = np.maximum(ext_all[rows], mol.r_match)
            for part, mode in _partition_by_extent(mol, ext, float(e_tot.max()), lam.size,
                                                   n_energy, method, k_b):
                msq[rows[part]] += _group_msq(mol, jp, v[rows[part]], J[rows[part]],
                                              hfac[part], e_tot[part], ext[part], mode,
                                              n_energy, k_b)
        if progress is not None:
            progress(step + 1, len(jps))
    sigma = XSEC_PREFACTOR_CM2 * omega[None, :] * msq
    return np.maximum(sigma, 0.0)


def cross_section(molecule, v: int, J: int, wavelength_nm, **kwargs):
    """sigma_{vJ}(lambda) [cm^2] of one bound level.

    Args:
      molecule: name (MOLECULE_NAMES) or Molecule.
      v, J: the bound level (DomainError if it does not exist).
      wavelength_nm: vacuum wavelength(s) [nm], any shape.
      **kwargs: passed to cross_sections (method, n_energy).
    Returns:
      float64 array of wavelength_nm's shape, sigma >= 0 [cm^2].
    """
    lam = np.asarray(wavelength_nm, dtype=np.float64)
    sig = cross_sections(molecule, [int(v)], [int(J)], lam.ravel(), **kwargs)[0]
    return sig.reshape(lam.shape)


def cross_section_h2plus(v: int, J: int, wavelength_nm, reduced_mass: float = H2PLUS_REDUCED_MASS):
    """H2+ (v, J) photodissociation cross-section via 1s sigma_g -> 2p sigma_u [cm^2].

    Args:
      v, J: bound level of X 2Sigma_g+.
      wavelength_nm: vacuum wavelength(s) [nm], any shape.
      reduced_mass: nuclear reduced mass [m_e] (default m_p/2).
    Returns:
      sigma [cm^2] >= 0 with wavelength_nm's shape.
    """
    return cross_section(h2plus(float(reduced_mass)), v, J, wavelength_nm)


# ---------------------------------------------------------------------------------------------
# LTE averaging
# ---------------------------------------------------------------------------------------------

def thermal_j_max(molecule, temperature_k: float, tail: float = 1e-3) -> int:
    """Rotational cut-off holding all but ~tail of the thermal population (rigid-rotor estimate).

    J_max = ceil(1.35 sqrt(kT/B ln(1/tail))), B = 1/(2 mu r_e^2) at the lower curve's minimum (the
    factor 1.35 covers vibrationally excited, stretched levels: calibrated on H2+ and He2+ at
    1000-10000 K), capped at the largest J whose effective potential still dips below the
    dissociation limit. Heavy ions need many J: e.g. 36 (all) for H2+ but 310 for Na2+ at 5000 K.

    Args:
      molecule: name or Molecule; temperature_k: T [K] > 0; tail: neglected population fraction.
    Returns:
      int J_max.
    """
    mol = get_molecule(molecule)
    g = dvr_grid(mol)
    V = mol.lower(g.R)
    r_e = float(g.R[np.argmin(V)])
    b = 1.0 / (2.0 * mol.reduced_mass * r_e ** 2)
    kt = _c.K_BOLTZMANN_EV_K * float(temperature_k) * EV_IN_HARTREE
    j = int(math.ceil(1.35 * math.sqrt(kt / b * math.log(1.0 / tail))))
    lo, hi = 0, max(j, 1)

    def bound_possible(jj):
        return float(np.min(V + jj * (jj + 1) / (2.0 * mol.reduced_mass * g.R ** 2))) < 0.0

    if bound_possible(hi):
        return hi
    while hi - lo > 1:   # largest J with a well below the limit
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if bound_possible(mid) else (lo, mid)
    return lo


def lte_weights(molecule, temperature_k: float, J_max: Optional[int] = None):
    """Normalised LTE populations of the bound levels with J <= J_max.

    p_vJ = g_J (2J + 1) exp(-E_vJ / kT) / sum(...), g_J the nuclear-spin weight.

    Args:
      molecule: name or Molecule.
      temperature_k: temperature [K] > 0.
      J_max: largest J included; None -> thermal_j_max(molecule, T) (the truncation then drops
        < 1e-3 of the population; a smaller J_max renormalises over the levels kept).
    Returns:
      (levels, weights): the bound_levels structured array (n,) and weights (n,) summing to 1.
    """
    t = float(temperature_k)
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"temperature_k must be finite and > 0, got {temperature_k!r}")
    mol = get_molecule(molecule)
    if J_max is None:
        J_max = thermal_j_max(mol, t)
    levels = bound_levels(mol, J_max)
    kt = _c.K_BOLTZMANN_EV_K * t * EV_IN_HARTREE          # [hartree]
    e = levels["energy_hartree"]
    # Subtract the ground level so the exponent never overflows at low T.
    w = mol.spin_weight(levels["J"]) * (2.0 * levels["J"] + 1.0) * np.exp(-(e - e.min()) / kt)
    return levels, w / w.sum()


def lte_combine(weights, sigma):
    """sum_i weights_i sigma_i / sum_i weights_i.

    Args:
      weights: (n_levels,) non-negative level populations (need not be normalised).
      sigma: (n_levels, n_lambda) cross-sections [cm^2].
    Returns:
      (n_lambda,) population-averaged cross-section [cm^2].
    """
    w = np.asarray(weights, dtype=np.float64)
    s = np.asarray(sigma, dtype=np.float64)
    if w.ndim != 1 or s.ndim != 2 or s.shape[0] != w.size:
        raise ValueError(f"weights {w.shape} and sigma {s.shape} do not match (n,), (n, m)")
    if np.any(w < 0) or not w.sum() > 0:
        raise ValueError("weights must be non-negative with a positive sum")
    return (w @ s) / w.sum()


def lte_average(molecule, temperature_k: float, wavelength_nm, J_max: Optional[int] = None,
                min_weight: float = 1e-12):
    """LTE-averaged photodissociation cross-section sigma(lambda, T) [cm^2].

    Args:
      molecule: name or Molecule.
      temperature_k: temperature [K].
      wavelength_nm: wavelengths [nm], any shape (the result has the same shape).
      J_max: largest J in the sum; None -> thermal_j_max (converged to ~1e-3, but for the heavy
        ions at a few 1000 K that means hundreds of J and minutes of work).
      min_weight: levels with normalised population below this are skipped (the error is
        < n_levels x min_weight relative).
    Returns:
      sigma(lambda, T) [cm^2] with wavelength_nm's shape.
    """
    lam = np.asarray(wavelength_nm, dtype=np.float64)
    levels, w = lte_weights(molecule, temperature_k, J_max)
    keep = w >= min_weight
    sig = cross_sections(molecule, levels["v"][keep], levels["J"][keep], lam.ravel())
    return lte_combine(w[keep], sig).reshape(lam.shape)


# ---------------------------------------------------------------------------------------------
# Wavelength grids
# ---------------------------------------------------------------------------------------------

@blas_single
def wavelength_grid(molecule, n: int = 200, threshold: float = 1e-4, n_scan: int = 600):
    """Log-spaced wavelengths [nm] covering where sigma of the lowest level exceeds
    threshold x its maximum.

    The lowest level is v = 0 with the smallest allowed J (J = 1 for 4He2+). The window is found
    from a scan of n_scan photon energies from the dissociation threshold up to the vertical
    energy at the inner edge of the level's wavefunction, so it is the physically relevant range.

    Args:
      molecule: name or Molecule.
      n: number of points.
      threshold: relative level defining the window ends.
      n_scan: scan resolution.
    Returns:
      (n,) increasing float64 wavelengths [nm].
    """
    mol = get_molecule(molecule)
    key = ("wgrid", int(n), float(threshold), int(n_scan))
    if key in mol._cache:
        return mol._cache[key].copy()
    j0 = int(mol.allowed_j(3)[0])
    e0 = level_energy(mol, 0, j0)
    g = dvr_grid(mol)
    psi = np.abs(bound_states(mol, j0).c[:, 0]) / np.sqrt(g.dx * g.jac)
    inside = g.R[psi > 1e-3 * psi.max()]
    w_thr = mol.delta_e_inf - e0                       # photon energy at threshold
    w_top = float(mol.upper(np.array([inside[0]]))[0] + 0.01 * abs(e0) - e0)
    w_top = max(w_top, 1.5 * w_thr + 1e-3)
    omega = w_thr + (w_top - w_thr) * np.linspace(0.0, 1.0, n_scan + 1)[1:] ** 2
    sig = cross_sections(mol, [0], [j0], hartree_to_wavelength(omega), method="direct")[0]
    good = np.flatnonzero(sig > threshold * sig.max())
    w_lo = omega[max(good[0] - 1, 0)]
    w_hi = omega[min(good[-1] + 1, omega.size - 1)]
    lam = np.geomspace(hartree_to_wavelength(w_hi), hartree_to_wavelength(w_lo), int(n))
    mol._cache[key] = lam
    return lam.copy()
