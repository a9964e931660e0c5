"""Energy-normalised continuum of the upper state: vectorised Numerov integration with
WKB-amplitude normalisation (see :mod:`.photodissociation`), and the bound-continuum dipole
matrix elements.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from opacity_jax.physics.molecular.common import blas_single
from opacity_jax.physics.molecular.potentials import Molecule, get_molecule


_TUNNEL_DEPTH = 30.0     # start where the WKB integral to the turning point reaches this
_KH_MAX = 0.25           # Numerov step: k_max h <= this (phase error ~ (kh)^4/240 per radian)


def _numerov_step(mol: Molecule, k_max: float) -> float:
    # Quantised to r_min-anchored power-of-two fractions of 0.02 bohr so grids are reusable.
    h = 0.02
    while h * k_max > _KH_MAX:
        h *= 0.5
    return h


def _start_indices(W: np.ndarray, energies: np.ndarray, mu: float, h: float) -> np.ndarray:
    """Per energy, the first grid index at which to start (u = 0 before it)."""
    n = W.size
    below = W[None, :] < energies[:, None]
    # Only the prefix up to the outermost inner turning point matters; subsample it.
    tp = np.where(below.any(axis=1), np.argmax(below, axis=1), n - 1)
    m = max(1, int(0.01 / h))
    stop = int(tp.max()) + 1
    Ws = W[:stop:m]
    kap = np.sqrt(np.maximum(2.0 * mu * (Ws[None, :] - energies[:, None]), 0.0))
    Q = np.cumsum(kap, axis=1) * (h * m)
    q_tp = Q[np.arange(energies.size), np.minimum(tp // m, Ws.size - 1)]
    ok = Q >= (q_tp - _TUNNEL_DEPTH)[:, None]
    first = np.argmax(ok, axis=1) * m
    return np.minimum(first, np.maximum(tp - 1, 0))


def continuum_matrix_elements(mol: Molecule, Jp: int, e_tot: np.ndarray, weights: np.ndarray,
                               R: np.ndarray, return_u: bool = False,
                               row_end: Optional[np.ndarray] = None):
    """<bound_b| D |chi_{E J'}> for all b and energies.

    Args:
      Jp: upper-state rotational quantum number J'.
      e_tot: (n_E,) total energies E_vJ + w [hartree] on the lower state's energy scale.
      weights: (n_b, n) bound function x D(R) x h on the grid R (zero where negligible).
      R: (n,) uniform grid [bohr]; the last point is the matching radius.
      return_u: also return the normalised continuum functions (n_E, n) (small problems only).
      row_end: optional (n_b,) grid index beyond which weights[b] is zero; lets compact levels
        skip the long tail of the product (the Numerov cost is shared anyway).
    Returns:
      (n_b, n_E) matrix elements [a.u.: e a0 hartree^-1/2]; 0 for closed channels (E' <= 0) and
      for energies still classically forbidden at the matching radius.
    """
    mu = mol.reduced_mass
    h = float(R[1] - R[0])
    n = R.size
    e_tot = np.asarray(e_tot, dtype=np.float64)
    W = mol.upper(R) + Jp * (Jp + 1) / (2.0 * mu * R ** 2)
    n_b = weights.shape[0]
    out = np.zeros((n_b, e_tot.size))
    u_all = np.zeros((e_tot.size, n)) if return_u else None
    # Langer-corrected local wavenumber at the last step's midpoint.
    r_mid = R[-1] - 0.5 * h
    w_mid = mol.upper(np.array([r_mid]))[0] + (Jp + 0.5) ** 2 / (2.0 * mu * r_mid ** 2)
    k2_mid = 2.0 * mu * (e_tot - w_mid)
    live = np.flatnonzero((e_tot > mol.delta_e_inf) & (k2_mid > 0))
    if live.size == 0:
        return (out, u_all) if return_u else out
    # Rows ordered by how far their bound function reaches, so each block multiplies a prefix.
    if row_end is None:
        row_end = np.full(n_b, n)
    rorder = np.argsort(-np.asarray(row_end), kind="stable")
    wsorted = weights[rorder]
    ends = np.asarray(row_end)[rorder]
    acc = np.zeros((n_b, live.size))
    E = e_tot[live]
    start = _start_indices(W, E, mu, h)
    order = np.argsort(start, kind="stable")
    start_sorted = start[order]
    c = h * h * mu / 6.0                      # h^2 (2 mu) / 12
    cE = 1.0 + c * E
    y_prev = np.zeros(E.size)
    y_cur = np.zeros(E.size)
    j0 = int(start_sorted[0])
    ptr = 0
    chunk = 512
    buf = np.zeros((chunk, E.size))
    bpos = 0
    row0 = j0
    for j in range(j0, n):
        while ptr < E.size and start_sorted[ptr] == j:
            k = order[ptr]
            # u_j = 0 with u_{j-1} = -u_{j+1}: the wavefunction has its node exactly at R_j.
            y_prev[k], y_cur[k] = -1e-3, 0.0
            ptr += 1
        f = cE - c * W[j]
        buf[bpos] = y_cur / f
        bpos += 1
        if bpos == chunk or j == n - 1:
            u_blk = buf[:bpos]
            n_act = int(np.searchsorted(-ends, -row0, side="left"))   # rows with end > row0
            if n_act:
                acc[:n_act] += wsorted[:n_act, row0:row0 + bpos] @ u_blk
            if return_u:
                u_all[live, row0:row0 + bpos] = u_blk.T
            row0 += bpos
            bpos = 0
        if j < n - 1:
            y_next = (12.0 / f - 10.0) * y_cur - y_prev
            y_prev, y_cur = y_cur, y_next
    # The loop does not advance after the last point: y_cur = y_{n-1}, y_prev = y_{n-2}.
    u_n1 = y_cur / (cE - c * W[n - 1])
    u_n2 = y_prev / (cE - c * W[n - 2])
    k = np.sqrt(k2_mid[live])
    kh = k * h
    amp2 = (u_n1 ** 2 + u_n2 ** 2 - 2.0 * u_n1 * u_n2 * np.cos(kh)) / np.sin(kh) ** 2
    norm = np.sqrt(2.0 * mu / (math.pi * k) / amp2)
    acc *= norm[None, :]
    out[np.ix_(rorder, live)] = acc
    if return_u:
        u_all[live] *= norm[:, None]
        return out, u_all
    return out


def continuum_grid(mol: Molecule, e_max_tot: float, r_end: float, k_bound: float):
    """Uniform Numerov grid from r_min to >= r_end with k h <= _KH_MAX."""
    mu = mol.reduced_mass
    r0 = mol.r_min
    probe = np.linspace(r0, r_end, 2000)
    w_min = float(np.min(mol.upper(probe)))
    k_max = max(math.sqrt(2.0 * mu * max(e_max_tot - w_min, 1e-12)), k_bound)
    h = _numerov_step(mol, k_max)
    n = int(math.ceil((r_end - r0) / h)) + 1
    return r0 + h * np.arange(n)


@blas_single
def continuum_wavefunction(molecule, J_upper: int, energy_hartree, R_end: Optional[float] = None):
    """Energy-normalised continuum functions of the upper state (mainly for checks and plots).

    Args:
      molecule: name or Molecule.
      J_upper: rotational quantum number J' of the upper state.
      energy_hartree: (n_E,) fragment kinetic energies E' > 0 above the upper limit [hartree].
      R_end: matching radius [bohr]; default the molecule's r_match.
    Returns:
      (R (n,) [bohr], chi (n_E, n) [hartree^-1/2 bohr^-1/2]) with chi -> (2mu/(pi k))^{1/2}
      sin(kR - J' pi/2 + delta) at large R.
    """
    mol = get_molecule(molecule)
    e = np.atleast_1d(np.asarray(energy_hartree, dtype=np.float64))
    r_end = mol.r_match if R_end is None else float(R_end)
    R = continuum_grid(mol, float(e.max()) + mol.delta_e_inf, r_end, 0.0)
    _, u = continuum_matrix_elements(mol, int(J_upper), e + mol.delta_e_inf,
                                      np.zeros((1, R.size)), R, return_u=True)
    return R, u
