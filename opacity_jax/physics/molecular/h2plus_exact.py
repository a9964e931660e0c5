"""H2+ electronic structure from first principles: the two-centre one-electron problem
solved in prolate spheroidal coordinates (described in :mod:`.potentials`), tabulated and
spline-interpolated energies and transition dipole.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import threading
from typing import Optional

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.linalg import eigh, eigh_tridiagonal
from scipy.special import roots_laguerre, roots_legendre

from opacity_jax.errors import DomainError
from opacity_jax.physics.molecular.common import blas_single


_STATES = {"1s_sigma_g": 0, "2p_sigma_u": 1, "X": 0, "A": 1, "g": 0, "u": 1}
_N_RADIAL = 30          # Laguerre functions; converged to ~1e-13 hartree for 0.1 <= R <= 100
_R_TABLE_MAX = 50.0


def _angular_blocks(parity: int, nl: int):
    """Tridiagonal pieces of d/deta(1-eta^2)d/deta and of eta^2 in normalised Legendre functions
    of one parity (l = parity, parity + 2, ...): diag(-l(l+1)), diag <l|eta^2|l>,
    off-diagonal <l|eta^2|l+2>."""
    l = (parity + 2 * np.arange(nl)).astype(np.float64)
    d0 = -l * (l + 1.0)
    d2 = (2.0 * l * l + 2.0 * l - 1.0) / ((2.0 * l - 1.0) * (2.0 * l + 3.0))
    lo = l[:-1]
    o2 = (lo + 1.0) * (lo + 2.0) / ((2.0 * lo + 3.0) * np.sqrt((2.0 * lo + 1.0) * (2.0 * lo + 5.0)))
    return d0, d2, o2


def _laguerre_values(s: np.ndarray, n: int):
    """(L_k(s), L_k'(s)) for k < n at points s: two (n, len(s)) arrays (three-term recurrence)."""
    L = np.zeros((n, s.size))
    L[0] = 1.0
    if n > 1:
        L[1] = 1.0 - s
    for k in range(1, n - 1):
        L[k + 1] = ((2 * k + 1 - s) * L[k] - k * L[k - 1]) / (k + 1)
    # L_k' = -sum_{j<k} L_j avoids the 1/s of the usual derivative formula.
    dL = np.zeros_like(L)
    if n > 1:
        dL[1:] = -np.cumsum(L[:-1], axis=0)
    return L, dL


@functools.lru_cache(maxsize=None)
def _laguerre_rule(nq: int):
    return roots_laguerre(nq)


def _radial_matrices(beta: float, n: int):
    """Matrices of -(t(t+2)) d/dt-form kinetic, xi and xi^2 (xi = 1 + t) in the orthonormal basis
    phi_k(t) = (2 beta)^{1/2} L_k(2 beta t) e^{-beta t}; Gauss-Laguerre quadrature is exact."""
    s, w = _laguerre_rule(n + 4)
    L, dL = _laguerre_values(s, n)
    t = s / (2.0 * beta)
    dphi = 2.0 * beta * dL - beta * L          # e^{-s/2}-stripped derivative, per sqrt(2 beta)
    K = (dphi * (w * t * (t + 2.0))) @ dphi.T
    T1 = (L * (w * t)) @ L.T
    T2 = (L * (w * t * t)) @ L.T
    eye = np.eye(n)
    return K, T1 + eye, T2 + 2.0 * T1 + eye


@dataclasses.dataclass(frozen=True)
class _SpheroidalState:
    R: float            # [bohr]
    parity: int         # 0 gerade, 1 ungerade
    p: float            # (R/2) sqrt(-2 E_el)
    beta: float         # Laguerre scale of X
    y: np.ndarray       # Legendre coefficients of Y (normalised P_l, one parity)
    x: np.ndarray       # Laguerre coefficients of X
    separation: float   # A (Fernandez & Garcia sign convention)

    @property
    def energy(self) -> float:
        """Electronic energy without 1/R [hartree]."""
        return -2.0 * self.p ** 2 / self.R ** 2


def solve_h2plus_state(R: float, state: str = "1s_sigma_g", p_guess: Optional[float] = None,
                       n_radial: int = _N_RADIAL):
    """Exact BO electronic state of H2+ at one internuclear distance.

    Args:
      R: internuclear distance [bohr], 0.05 <= R <= 200.
      state: "1s_sigma_g" (X) or "2p_sigma_u" (A).
      p_guess: starting p = (R/2)(-2E)^{1/2}; default from the separated/united-atom limits.
      n_radial: number of Laguerre functions for X(xi).
    Returns:
      _SpheroidalState with .energy (E_el without 1/R [hartree]), .separation (A), coefficients.
    """
    parity = _STATES[state]
    R = float(R)
    if not 0.05 <= R <= 200.0:
        raise DomainError(f"R = {R} bohr outside the solver's range [0.05, 200]")
    if p_guess is None:
        e_guess = -0.5 - (1.5 / (1.0 + R) if parity == 0 else 0.0)
        p_guess = 0.5 * R * math.sqrt(-2.0 * e_guess)
    p = float(p_guess)
    nl = int(40 + 1.5 * p)
    d0, d2, o2 = _angular_blocks(parity, nl)
    beta = p
    K, X1, X2 = _radial_matrices(beta, n_radial)
    for _ in range(60):
        p2 = p * p
        ea, va = eigh_tridiagonal(d0 + p2 * d2, p2 * o2, select="i", select_range=(nl - 1, nl - 1))
        er, vr = eigh(-K + 2.0 * R * X1 - p2 * X2, subset_by_index=(n_radial - 1, n_radial - 1))
        F = ea[0] + er[0]
        ya, xr = va[:, 0], vr[:, 0]
        eta2 = ya @ (d2 * ya) + 2.0 * np.sum(ya[:-1] * o2 * ya[1:])
        dF = 2.0 * p * (eta2 - xr @ X2 @ xr)     # < 0: xi^2 >= 1 >= eta^2
        step = -F / dF
        # Newton on a monotone function; halve steps that would make p negative.
        while p + step <= 0:
            step *= 0.5
        p += step
        # Newton converges quadratically until F is at its rounding floor (~1e-13 relative).
        if abs(step) <= 2e-12 * p:
            break
        if abs(p - beta) > 0.3 * beta:   # keep the radial basis scale near p
            beta = p
            K, X1, X2 = _radial_matrices(beta, n_radial)
    else:
        if abs(step) > 1e-9 * p:  # pragma: no cover - never seen in 0.05-200 bohr
            raise RuntimeError(f"H2+ {state} did not converge at R = {R}")
    p2 = p * p
    ea, va = eigh_tridiagonal(d0 + p2 * d2, p2 * o2, select="i", select_range=(nl - 1, nl - 1))
    er, vr = eigh(-K + 2.0 * R * X1 - p2 * X2, subset_by_index=(n_radial - 1, n_radial - 1))
    y, x = va[:, 0], vr[:, 0]
    # Sign convention: X(xi=1) > 0 and Y(eta=1) > 0, which makes <g|z|u> -> +R/2.
    if x.sum() < 0:   # X(1) = sqrt(2 beta) sum_k x_k since L_k(0) = 1
        x = -x
    l = parity + 2 * np.arange(nl)
    if np.sum(y * np.sqrt((2 * l + 1) / 2.0)) < 0:   # P_l(1) = 1
        y = -y
    return _SpheroidalState(R=R, parity=parity, p=p, beta=beta, y=y, x=x, separation=float(ea[0]))


def _eval_X(state: _SpheroidalState, t: np.ndarray) -> np.ndarray:
    L, _ = _laguerre_values(2.0 * state.beta * t, state.x.size)
    return math.sqrt(2.0 * state.beta) * np.exp(-state.beta * t) * (state.x @ L)


@functools.lru_cache(maxsize=64)
def _legendre_rule(n: int, l_max: int):
    """Gauss-Legendre nodes/weights (n,) and normalised P_l at the nodes, (l_max + 1, n)."""
    eta, w = roots_legendre(n)
    P = np.zeros((l_max + 1, n))
    P[0] = 1.0
    if l_max > 0:
        P[1] = eta
    for l in range(1, l_max):
        P[l + 1] = ((2 * l + 1) * eta * P[l] - l * P[l - 1]) / (l + 1)
    P *= np.sqrt((2 * np.arange(l_max + 1) + 1) / 2.0)[:, None]
    return eta, w, P


def _eval_Y(state: _SpheroidalState, P: np.ndarray) -> np.ndarray:
    """Y at the nodes whose normalised Legendre values are P (l_max + 1, n)."""
    l = state.parity + 2 * np.arange(state.y.size)
    return state.y @ P[l]


def _transition_dipole(g: _SpheroidalState, u: _SpheroidalState) -> float:
    """<g| z |u> [e a0] with z measured from the bond midpoint, both states normalised.

    z = a xi eta, dV = a^3 (xi^2 - eta^2) dxi deta dphi, a = R/2: the integrals separate into
    products of one-dimensional radial (Gauss-Laguerre) and angular (Gauss-Legendre) quadratures.
    """
    a = 0.5 * g.R
    s, w = _laguerre_rule(90)
    b = g.beta + u.beta
    t = s / b
    wt = w * np.exp(s) / b
    Xg, Xu = _eval_X(g, t), _eval_X(u, t)
    nl = max(g.y.size, u.y.size)
    # Node count rounded up to a multiple of 16 so neighbouring R share the cached rule.
    n_eta = 16 * ((2 * nl + 20) // 16 + 1)
    eta, we, P = _legendre_rule(n_eta, 2 * nl + 1)
    Yg, Yu = _eval_Y(g, P), _eval_Y(u, P)
    xi = 1.0 + t

    def rad(f, A, B):
        return float(np.sum(wt * A * B * f))

    def ang(f, A, B):
        return float(np.sum(we * A * B * f))

    def norm(X, Y):
        return a ** 3 * (rad(xi ** 2, X, X) * ang(1.0, Y, Y) - rad(1.0, X, X) * ang(eta ** 2, Y, Y))

    ng, nu = norm(Xg, Yg), norm(Xu, Yu)
    d = a ** 4 * (rad(xi ** 3, Xg, Xu) * ang(eta, Yg, Yu) - rad(xi, Xg, Xu) * ang(eta ** 3, Yg, Yu))
    return d / math.sqrt(ng * nu)


def _h2plus_r_grid() -> np.ndarray:
    # Denser where the curves bend most (small R), sparser in the multipole region.
    pieces = [np.arange(0.1, 1.0, 0.01), np.arange(1.0, 4.0, 0.02), np.arange(4.0, 12.0, 0.05),
              np.arange(12.0, 30.0, 0.2), np.arange(30.0, _R_TABLE_MAX + 1e-9, 0.5)]
    return np.round(np.concatenate(pieces), 10)


_TABLE_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
@blas_single
def h2plus_electronic_table():
    """Exact H2+ BO table computed at first use (~0.9 s CPU) on 0.1-50 bohr (533 radii).

    Returns:
      dict with "R" (n,) [bohr], "E_g", "E_u" (n,) electronic energies WITHOUT 1/R [hartree],
      "A_g", "A_u" (n,) separation constants, "D" (n,) transition dipole <1s sigma_g|z|2p sigma_u>
      [e a0]. Arrays are read-only.
    """
    with _TABLE_LOCK:
        R = _h2plus_r_grid()
        out = {k: np.empty(R.size) for k in ("E_g", "E_u", "A_g", "A_u", "D")}
        pg = pu = None
        for i, r in enumerate(R):
            g = solve_h2plus_state(r, "1s_sigma_g", pg)
            u = solve_h2plus_state(r, "2p_sigma_u", pu)
            # Continuation: p grows ~linearly with R in both states.
            pg, pu = g.p * (1 + (R[min(i + 1, R.size - 1)] - r) / r), u.p * (
                1 + (R[min(i + 1, R.size - 1)] - r) / r)
            out["E_g"][i], out["E_u"][i] = g.energy, u.energy
            out["A_g"][i], out["A_u"][i] = g.separation, u.separation
            out["D"][i] = _transition_dipole(g, u)
        out["R"] = R
        for v in out.values():
            v.setflags(write=False)
        return out


@functools.lru_cache(maxsize=1)
def _h2plus_splines():
    tab = h2plus_electronic_table()
    return (CubicSpline(tab["R"], tab["E_g"]), CubicSpline(tab["R"], tab["E_u"]),
            CubicSpline(tab["R"], tab["D"]))


def _h2plus_long_range(R):
    # E_el + 1/R for both 1s sigma_g and 2p sigma_u (exchange splitting < 1e-20 beyond 50 bohr).
    return -0.5 - 9.0 / (4.0 * R ** 4) - 15.0 / (2.0 * R ** 6) - 213.0 / (4.0 * R ** 7)


def _check_r(R) -> np.ndarray:
    R = np.asarray(R, dtype=np.float64)
    if np.any(~np.isfinite(R)) or np.any(R < 0.1):
        raise DomainError("H2+ curves are tabulated for R >= 0.1 bohr (finite)")
    return R


def h2plus_electronic_energy(R, state: str = "1s_sigma_g"):
    """Exact BO electronic energy of H2+ WITHOUT the 1/R nuclear repulsion.

    Args:
      R: internuclear distance(s) [bohr], any shape, >= 0.1.
      state: "1s_sigma_g" or "2p_sigma_u".
    Returns:
      E_el(R) [hartree], same shape (the quantity tabulated in rpm_*.dat).
    """
    R = _check_r(R)
    spl = _h2plus_splines()[_STATES[state]]
    inner = np.minimum(R, _R_TABLE_MAX)
    return np.where(R <= _R_TABLE_MAX, spl(inner), _h2plus_long_range(R) - 1.0 / R)


def h2plus_potential(R, state: str = "1s_sigma_g"):
    """H2+ BO potential E_el + 1/R [hartree] (-> -0.5 = H(1s) + H+ at large R); R [bohr]."""
    R = _check_r(R)
    return h2plus_electronic_energy(R, state) + 1.0 / R


def h2plus_dipole(R):
    """Transition dipole <1s sigma_g| z |2p sigma_u> [e a0] at R [bohr] (any shape, >= 0.1).

    Positive; -> R/2 - 9/(2R^2) at large R (the H atom polarised by the proton's field).
    """
    R = _check_r(R)
    spl = _h2plus_splines()[2]
    inner = np.minimum(R, _R_TABLE_MAX)
    return np.where(R <= _R_TABLE_MAX, spl(inner), 0.5 * R - 4.5 / R ** 2)
