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

Molecules
---------
H2+ (X 2Sigma_g+ 1s sigma_g -> A 2Sigma_u+ 2p sigma_u) is from first principles: exact
Born-Oppenheimer energies and transition dipole from the two-centre one-electron problem in prolate
spheroidal coordinates (xi, eta). The separation constant A and p = (R/2) (-2 E_el)^{1/2} solve

    d/deta (1 - eta^2) dY/deta + (p^2 eta^2 - A) Y = 0
    d/dxi (xi^2 - 1) dX/dxi + (2R xi - p^2 xi^2 + A) X = 0,

solved spectrally: Y in normalised Legendre functions of one parity (tridiagonal), X in Laguerre
functions (2beta)^{1/2} L_n(2beta(xi - 1)) e^{-beta(xi - 1)}; the quantisation condition
A_ang(p) = A_rad(p) is solved by Newton's method with Hellmann-Feynman derivatives (F is monotone
in p). The energies agree with Fernandez & Garcia's Riccati-Pade values (ChemistrySelect 6, 9527
(2021)) to ~1e-12 hartree over 0.5-10 bohr. They are tabulated on 0.1-50 bohr at first use
(< 2 s) and cubic-spline interpolated (E_el spline + exact 1/R); beyond 50 bohr the multipole
series -1/2 - 9/(4R^4) - 15/(2R^6) - 213/(4R^7) (exchange < 1e-20 there) and D = R/2 - 9/(2R^2)
(polarisation of H by the proton) are used. The reduced mass defaults to m_p/2 = 918.0763 m_e
(CODATA 2018 m_p/m_e); the UGAMOP level list (Stancil, ApJ 430, 360 (1994)) used 918.326326 m_e,
pass ``h2plus(reduced_mass=918.326326)`` to compare with it. Nuclear-spin weights g_J: even J 1,
odd J 3 (protons, I = 1/2).

Six model ions (lower state Morse V = D_e[(1 - y)^2 - 1], y = exp(-a(R - r_e)),
a = omega_e (mu / 2D_e)^{1/2}; upper state the "anti-Morse" charge-resonance form

    V_up(R) = dE_inf + E_v (z^2 + 2z)/3 - (alpha_d / 2) / (R^2 + R_d^2)^2,   z = exp(-b(R - r_e)),

E_v = V_up(r_e) - dE_inf the vertical repulsion at the lower state's r_e, alpha_d the
polarisability of the neutral fragment of the upper channel (damped at R_d so the tail does not
diverge). For H2+ this form with E_v = 3.25 D_e and b = a reproduces the exact 2p sigma_u curve to
<= 4 % over 1.5-3 bohr, the Franck-Condon region of the low levels (11 % at 4 bohr; checked in the
tests), so the symmetric ions use that H2+ calibration.
Reduced masses use the fragment masses (neutral-atom mass, minus m_e for the cation fragment) of
the isotopes named (AME2020, constants.py):

* He2+ (4He2+): X 2Sigma_u+ -> A 2Sigma_g+, both -> He(1s^2) + He+(1s), dE_inf = 0.
  D_e = 19956.7 cm^-1 (Tung, Pavanello & Adamowicz, JCP 136, 104309 (2012); 19956.10(10) cm^-1
  measured by Holdener et al., arXiv:2508.08009 (2025)); r_e = 1.0806 A, omega_e = 1698.5 cm^-1
  (Huber & Herzberg, Constants of Diatomic Molecules (1979)); the Morse fundamental is 1626 cm^-1
  vs 1628.4 measured. Upper: E_v = 3.25 D_e, b = a (H2+ calibration; uncertain by tens of %),
  alpha_d(He) = 1.383. D(R) = R/2 (charge-resonance limit; the exact H2+ D/(R/2) is 1.05 at
  2 bohr). Spin: 4He nuclei are spin-0 bosons, so only odd J exist in X 2Sigma_u+ (g_odd = 1,
  g_even = 0).
* HeH+ (4HeH+): X 1Sigma+ -> He(1s^2) + H+; upper A 1Sigma+ -> He+(1s) + H(1s) (charge transfer),
  dE_inf = IE(He) - IE(H) = 10.989 eV (NIST ASD). D_e = 2.040 eV (16456 cm^-1) and r_e = 1.4632 a0
  (0.7743 A) from the accurate BO curve of Kolos & Peek, Chem. Phys. 12, 381 (1976).
  omega_e = 3228 cm^-1 is chosen so the Morse fundamental omega_e - omega_e^2/(2 D_e) = 2912 cm^-1
  matches the measured nu(1-0) = 2910.96 cm^-1 (Bernath & Amano, PRL 48, 20 (1982)); ab initio
  harmonic values are ~3220-3230 cm^-1. Upper: MODEL, E_v = 13 eV above He+ + H at r_e, so the
  vertical X -> A energy is ~26 eV and the v = 0 band lies at 33-82 nm, inside the 10-113 nm
  A <- X range of Miyake, Gay & Stancil, ApJ 735, 21 (2011); b = 1.2 a0^-1, alpha_d(H) = 4.5,
  R_d = 1.5 a0. Dipole (charge transfer, -> 0): D = d0 R exp(-beta R) with D(r_e) = 0.8 e a0,
  beta = 0.7 a0^-1 (MODEL: magnitude typical of X-A moments, not fitted to one).
* LiH+ (7LiH+): X 2Sigma+ -> Li+(1s^2) + H(1s); upper 2 2Sigma+ -> Li(2s) + H+ (charge transfer),
  dE_inf = IE(H) - IE(Li) = 8.207 eV. D_e = 0.14 eV, r_e = 4.13 a0, omega_e = 412 cm^-1:
  representative of published ab initio curves as I recall them, not checked against a specific
  table here, so UNCERTAIN at the +-15 % level (the weakly bound X state is mostly the
  charge-induced dipole of H). Upper: MODEL, E_v = 1.5 eV, b = 0.8 a0^-1, alpha_d(Li) = 164.11
  heavily damped (R_d = 10 a0: the proton sits inside the Li 2s cloud near r_e), leaving a
  0.05 eV well near 9 a0. Dipole: D(r_e) = 0.5 e a0, beta = 0.35 a0^-1 (MODEL).
* NaH+ (23NaH+): X 2Sigma+ -> Na+(2p^6) + H(1s); upper 2 2Sigma+ -> Na(3s) + H+,
  dE_inf = IE(H) - IE(Na) = 8.459 eV. D_e = 0.10 eV, r_e = 4.8 a0, omega_e = 300 cm^-1: MODEL
  values guided by the Li+ + H analogue (larger Na+ core: longer r_e, shallower well); I could not
  verify published constants, treat them as uncertain by +-30 %. Upper: E_v = 1.3 eV,
  b = 0.7 a0^-1, alpha_d(Na) = 162.7 with R_d = 10.5 a0 (0.03 eV well near 11 a0); dipole
  D(r_e) = 0.5 e a0, beta = 0.3 a0^-1 (MODEL).
* Li2+ (7Li2+): X 2Sigma_g+ -> A 2Sigma_u+, both -> Li(2s) + Li+, dE_inf = 0. D_e = 1.30 eV
  (ab initio values cluster at 1.29-1.30 eV; the cycle D_0(Li2) + IE(Li) - IE(Li2) with
  IE(Li2) = 5.1127 eV (NIST WebBook) gives D_0 = 1.32 eV: uncertain by ~3 %), r_e = 3.10 A
  (5.86 a0), omega_e = 263 cm^-1 (as I recall the ab initio and spectroscopic values; +-2 %, not
  checked against a table here). Upper: E_v = 3.25 D_e, b = a (H2+ calibration), alpha_d(Li) =
  164.11, R_d = r_e. D = R/2. Spin: 7Li has I = 3/2 (fermions): g_even : g_odd = 3 : 5.
* Na2+ (23Na2+): X 2Sigma_g+ -> A 2Sigma_u+, both -> Na(3s) + Na+, dE_inf = 0. D_e = 0.99 eV (the
  cycle D_0(Na2) 0.737 eV + IE(Na) 5.139 eV - IE(Na2) 4.894 eV = 0.982 eV, plus the zero-point
  energy), r_e = 3.60 A (6.80 a0), omega_e = 120 cm^-1 (ab initio / photoelectron values as I
  recall them; +-5 %). Upper: as Li2+ with alpha_d(Na) = 162.7. D = R/2. Spin: 23Na has I = 3/2:
  g_even : g_odd = 3 : 5.

Atomic data (constants.py): ionization energies NIST ASD; polarisabilities H 9/2 (exact), He
1.383191 (Lach, Jeziorski & Szalewicz, PRL 92, 233001 (2004)), Li 164.11 (review of Mitroy,
Safronova & Clark, J. Phys. B 43, 202001 (2010)), Na 162.7 (Ekstrom et al., PRA 51, 3883 (1995));
isotope masses AME2020; m_p/m_e, m_e [u], a0, E_h in cm^-1: CODATA 2018.

All model parameters live in ``_MODEL_PARAMETERS`` next to the code that uses them.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import math
import threading
from typing import Callable, Optional, Union

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.linalg import eigh, eigh_tridiagonal
from scipy.special import roots_laguerre, roots_legendre

from opacity_jax.errors import DomainError
from opacity_jax.physics import constants as _c

__all__ = [
    "Molecule", "MOLECULE_NAMES", "get_molecule", "h2plus",
    "H2PLUS_REDUCED_MASS", "UGAMOP_H2PLUS_REDUCED_MASS",
    "h2plus_electronic_energy", "h2plus_potential", "h2plus_dipole", "h2plus_electronic_table",
    "solve_h2plus_state", "model_parameters",
    "bound_levels", "bound_wavefunctions", "continuum_wavefunction",
    "cross_section", "cross_section_h2plus", "cross_sections",
    "lte_weights", "lte_combine", "lte_average", "thermal_j_max",
    "wavelength_grid", "wavelength_to_hartree", "hartree_to_wavelength",
    "XSEC_PREFACTOR_CM2",
]

# sigma [cm^2] = XSEC_PREFACTOR_CM2 * w [hartree] * sum_J' h_J' |M|^2 [a.u.]
XSEC_PREFACTOR_CM2 = 4.0 * math.pi ** 2 / 3.0 * _c.FINE_STRUCTURE * _c.BOHR_CM ** 2

AMU = _c.AMU_ELECTRON_MASSES
H2PLUS_REDUCED_MASS = _c.PROTON_ELECTRON_MASS_RATIO / 2.0   # m_p / 2 [m_e]
UGAMOP_H2PLUS_REDUCED_MASS = 918.326326                      # Stancil (1994) [m_e]

_EV = 1.0 / _c.HARTREE_EV          # 1 eV in hartree
_CM1 = 1.0 / _c.HARTREE_CM1        # 1 cm^-1 in hartree
_ANG = 1.0 / _c.BOHR_ANGSTROM      # 1 Angstrom in bohr


# ---------------------------------------------------------------------------------------------
# BLAS threads
# ---------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _openblas_thread_controls() -> tuple:
    """(set, get) ctypes functions of every OpenBLAS loaded in this process (Linux), else ()."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as fh:
            maps = fh.read()
    except OSError:
        return ()
    paths = sorted({ln.split()[-1] for ln in maps.splitlines()
                    if "openblas" in ln.lower() and ln.split()[-1].startswith("/")})
    names = (("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
             ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
             ("openblas_set_num_threads", "openblas_get_num_threads"))
    out = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for set_name, get_name in names:
            if hasattr(lib, set_name) and hasattr(lib, get_name):
                setter, getter = getattr(lib, set_name), getattr(lib, get_name)
                setter.argtypes, setter.restype = [ctypes.c_int], None
                getter.argtypes, getter.restype = [], ctypes.c_int
                out.append((setter, getter))
                break
    return tuple(out)


_BLAS_LOCK = threading.RLock()


@contextlib.contextmanager
def _single_threaded_blas():
    """Run OpenBLAS single-threaded inside the block (restored afterwards).

    The matrices here are small (<= ~1300 x 1300 eigenproblems, thin products); on the 2-core
    development machine with another job running, threaded OpenBLAS made the DVR eigh 10-80x
    slower than one thread (thread hand-off dominates). No-op where OpenBLAS is not found.
    """
    with _BLAS_LOCK:
        controls = _openblas_thread_controls()
        old = [get() for _, get in controls]
        for setter, _ in controls:
            setter(1)
        try:
            yield
        finally:
            for (setter, _), n in zip(controls, old):
                setter(max(int(n), 1))


def _blas_single(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _single_threaded_blas():
            return fn(*args, **kwargs)
    return wrapper


# ---------------------------------------------------------------------------------------------
# Unit helpers
# ---------------------------------------------------------------------------------------------

def wavelength_to_hartree(wavelength_nm):
    """Photon energy [hartree] of vacuum wavelength(s) [nm]; any shape, float64."""
    lam = np.asarray(wavelength_nm, dtype=np.float64)
    return 1.0e7 / (lam * _c.HARTREE_CM1)


def hartree_to_wavelength(energy_hartree):
    """Vacuum wavelength [nm] of photon energy(ies) [hartree]; any shape, float64."""
    e = np.asarray(energy_hartree, dtype=np.float64)
    return 1.0e7 / (e * _c.HARTREE_CM1)


# ---------------------------------------------------------------------------------------------
# H2+ electronic structure: prolate spheroidal separation, spectral solution
# ---------------------------------------------------------------------------------------------

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
@_blas_single
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


# ---------------------------------------------------------------------------------------------
# Molecules
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class Molecule:
    """A diatomic ion with one photodissociating transition lower -> upper.

    Attributes:
      name: label, e.g. "H2+".
      reduced_mass: nuclear reduced mass [m_e].
      lower: V_lower(R) [hartree] for R [bohr] (ndarray -> ndarray), -> 0 at large R.
      upper: V_upper(R) [hartree], -> delta_e_inf at large R (same energy zero as lower).
      dipole: D(R) [e a0].
      delta_e_inf: upper minus lower dissociation limit [hartree].
      spin_weights: (g_even_J, g_odd_J) nuclear-spin statistical weights; 0 = J absent.
      r_min, r_max: bound-state grid ends [bohr] (hard walls).
      r_scale: mapping length s of R(x) = r_min + s sinh(x/s) [bohr].
      dvr_step: uniform x step [bohr] (the R step at r_min).
      r_match: smallest matching radius of the continuum [bohr].
      description: one line on states, channels and constants.
    """

    name: str
    reduced_mass: float
    lower: Callable
    upper: Callable
    dipole: Callable
    delta_e_inf: float
    spin_weights: tuple
    r_min: float
    r_max: float
    r_scale: float
    dvr_step: float
    r_match: float
    description: str = ""
    _cache: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def spin_weight(self, J) -> np.ndarray:
        """g_J for integer J (array-like) -> float64 array."""
        J = np.asarray(J)
        return np.where(J % 2 == 0, float(self.spin_weights[0]), float(self.spin_weights[1]))

    def allowed_j(self, j_max: int) -> np.ndarray:
        """Rotational quantum numbers 0..j_max whose nuclear-spin weight is non-zero."""
        J = np.arange(int(j_max) + 1)
        return J[self.spin_weight(J) > 0]


def _h2plus_lower(R):
    return h2plus_potential(R, "1s_sigma_g") + 0.5


def _h2plus_upper(R):
    return h2plus_potential(R, "2p_sigma_u") + 0.5


@functools.lru_cache(maxsize=16)
def h2plus(reduced_mass: float = H2PLUS_REDUCED_MASS) -> Molecule:
    """H2+ X 2Sigma_g+ -> A 2Sigma_u+ from the exact BO curves and dipole.

    Args:
      reduced_mass: nuclear reduced mass [m_e]; default m_p/2 = 918.0763 (CODATA 2018);
        UGAMOP_H2PLUS_REDUCED_MASS = 918.326326 reproduces Stancil's (1994) level list.
    Returns:
      Molecule (cached per reduced mass, so repeated calls share the level cache).
    """
    return Molecule(
        name="H2+", reduced_mass=float(reduced_mass), lower=_h2plus_lower, upper=_h2plus_upper,
        dipole=h2plus_dipole, delta_e_inf=0.0, spin_weights=(1.0, 3.0), r_min=0.3, r_max=150.0,
        r_scale=3.0, dvr_step=0.05, r_match=20.0,
        description="H2+ 1s sigma_g -> 2p sigma_u, exact BO (spheroidal), H(1s) + H+")


def _morse(d_e, r_e, a):
    def V(R):
        y = np.exp(-a * (np.asarray(R, dtype=np.float64) - r_e))
        return d_e * ((1.0 - y) ** 2 - 1.0)
    return V


def _anti_morse(delta, e_v, r_e, b, alpha, r_d):
    def V(R):
        R = np.asarray(R, dtype=np.float64)
        z = np.exp(-b * (R - r_e))
        return delta + e_v * (z * z + 2.0 * z) / 3.0 - 0.5 * alpha / (R * R + r_d * r_d) ** 2
    return V


def _dipole_half_r(R):
    return 0.5 * np.asarray(R, dtype=np.float64)


def _dipole_ct(d_re, r_e, beta):
    d0 = d_re / (r_e * math.exp(-beta * r_e))

    def D(R):
        R = np.asarray(R, dtype=np.float64)
        return d0 * R * np.exp(-beta * R)
    return D


def _mu(m1_amu, m2_amu) -> float:
    return m1_amu * m2_amu / (m1_amu + m2_amu) * AMU


_ME = _c.ELECTRON_MASS_AMU
# name: (fragment masses [u], D_e [h], r_e [bohr], omega_e [h], dE_inf [h], E_v [h], b [1/bohr]
#        or None for b = Morse a, alpha_d [a.u.], R_d [bohr] or None for r_e, dipole, spin weights)
_MODEL_PARAMETERS = {
    "He2+": dict(masses=(_c.ATOMIC_MASS_HE4_AMU, _c.ATOMIC_MASS_HE4_AMU - _ME),
                 d_e=19956.7 * _CM1, r_e=1.0806 * _ANG, omega_e=1698.5 * _CM1, delta=0.0,
                 e_v_over_de=3.25, b=None, alpha=_c.POLARIZABILITY_HE_AU, r_d=None,
                 dipole=("half_r",), spin=(0.0, 1.0),
                 text="4He2+ X2Su+ -> A2Sg+, He + He+ (Morse: Tung 2012, Huber-Herzberg 1979)"),
    "HeH+": dict(masses=(_c.ATOMIC_MASS_HE4_AMU, _c.PROTON_MASS_AMU),
                 d_e=2.040 * _EV, r_e=1.4632, omega_e=3228.0 * _CM1,
                 delta=(_c.IONIZATION_HE_EV - _c.IONIZATION_H_EV) * _EV,
                 e_v=13.0 * _EV, b=1.2, alpha=_c.POLARIZABILITY_H_AU, r_d=1.5,
                 dipole=("ct", 0.8, 0.7), spin=(1.0, 1.0),
                 text="4HeH+ X1S+ (He + H+) -> A1S+ (He+ + H(1s)), charge transfer"),
    "LiH+": dict(masses=(_c.ATOMIC_MASS_LI7_AMU - _ME, _c.ATOMIC_MASS_H1_AMU),
                 d_e=0.14 * _EV, r_e=4.13, omega_e=412.0 * _CM1,
                 delta=(_c.IONIZATION_H_EV - _c.IONIZATION_LI_EV) * _EV,
                 e_v=1.5 * _EV, b=0.8, alpha=_c.POLARIZABILITY_LI_AU, r_d=10.0,
                 dipole=("ct", 0.5, 0.35), spin=(1.0, 1.0),
                 text="7LiH+ X2S+ (Li+ + H(1s)) -> 2 2S+ (Li(2s) + H+), charge transfer"),
    "NaH+": dict(masses=(_c.ATOMIC_MASS_NA23_AMU - _ME, _c.ATOMIC_MASS_H1_AMU),
                 d_e=0.10 * _EV, r_e=4.8, omega_e=300.0 * _CM1,
                 delta=(_c.IONIZATION_H_EV - _c.IONIZATION_NA_EV) * _EV,
                 e_v=1.3 * _EV, b=0.7, alpha=_c.POLARIZABILITY_NA_AU, r_d=10.5,
                 dipole=("ct", 0.5, 0.3), spin=(1.0, 1.0),
                 text="23NaH+ X2S+ (Na+ + H(1s)) -> 2 2S+ (Na(3s) + H+), charge transfer"),
    "Li2+": dict(masses=(_c.ATOMIC_MASS_LI7_AMU, _c.ATOMIC_MASS_LI7_AMU - _ME),
                 d_e=1.30 * _EV, r_e=3.10 * _ANG, omega_e=263.0 * _CM1, delta=0.0,
                 e_v_over_de=3.25, b=None, alpha=_c.POLARIZABILITY_LI_AU, r_d=None,
                 dipole=("half_r",), spin=(3.0, 5.0),
                 text="7Li2+ X2Sg+ -> A2Su+, Li(2s) + Li+ (charge resonance)"),
    "Na2+": dict(masses=(_c.ATOMIC_MASS_NA23_AMU, _c.ATOMIC_MASS_NA23_AMU - _ME),
                 d_e=0.99 * _EV, r_e=3.60 * _ANG, omega_e=120.0 * _CM1, delta=0.0,
                 e_v_over_de=3.25, b=None, alpha=_c.POLARIZABILITY_NA_AU, r_d=None,
                 dipole=("half_r",), spin=(3.0, 5.0),
                 text="23Na2+ X2Sg+ -> A2Su+, Na(3s) + Na+ (charge resonance)"),
}

MOLECULE_NAMES = ("H2+", "He2+", "HeH+", "LiH+", "NaH+", "Li2+", "Na2+")


def _build_model(name: str) -> Molecule:
    p = _MODEL_PARAMETERS[name]
    mu = _mu(*p["masses"])
    d_e, r_e, w_e = p["d_e"], p["r_e"], p["omega_e"]
    a = w_e * math.sqrt(mu / (2.0 * d_e))
    e_v = p["e_v"] if "e_v" in p else p["e_v_over_de"] * d_e
    b = a if p["b"] is None else p["b"]
    r_d = r_e if p["r_d"] is None else p["r_d"]
    if p["dipole"][0] == "half_r":
        dip = _dipole_half_r
    else:
        dip = _dipole_ct(p["dipole"][1], r_e, p["dipole"][2])
    # Inner wall where the Morse curve is 10 D_e above its minimum; the outer end well past the
    # classical range of the last levels (Morse tails decay like exp(-a R)).
    r_min = max(0.2, r_e - math.log(1.0 + math.sqrt(11.0)) / a)
    k_d = math.sqrt(2.0 * mu * d_e)
    return Molecule(
        name=name, reduced_mass=mu, lower=_morse(d_e, r_e, a),
        upper=_anti_morse(p["delta"], e_v, r_e, b, p["alpha"], r_d), dipole=dip,
        delta_e_inf=p["delta"], spin_weights=p["spin"], r_min=r_min,
        r_max=r_e + 40.0 / a, r_scale=max(r_e, 2.0 / a), dvr_step=min(0.05, 0.8 / k_d),
        r_match=r_e + 10.0 / min(a, b), description=p["text"])


@functools.lru_cache(maxsize=None)
def _model(name: str) -> Molecule:
    return _build_model(name)


def get_molecule(molecule: Union[str, Molecule]) -> Molecule:
    """The Molecule for a name in MOLECULE_NAMES (case-insensitive) or a Molecule itself."""
    if isinstance(molecule, Molecule):
        return molecule
    key = {n.lower(): n for n in MOLECULE_NAMES}.get(str(molecule).strip().lower())
    if key is None:
        raise ValueError(f"unknown molecule {molecule!r}; known: {', '.join(MOLECULE_NAMES)}")
    return h2plus() if key == "H2+" else _model(key)


def model_parameters(name: str) -> dict:
    """Derived constants of a model ion in a.u.: mu, D_e, r_e, a, omega_e, E_v, b, dE_inf."""
    p = _MODEL_PARAMETERS[name]
    mu = _mu(*p["masses"])
    a = p["omega_e"] * math.sqrt(mu / (2.0 * p["d_e"]))
    return dict(mu=mu, d_e=p["d_e"], r_e=p["r_e"], omega_e=p["omega_e"], a=a,
                e_v=p.get("e_v", p.get("e_v_over_de", 0.0) * p["d_e"]),
                b=a if p["b"] is None else p["b"], delta_e_inf=p["delta"])


# ---------------------------------------------------------------------------------------------
# Bound states: mapped sinc DVR
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Grid:
    x: np.ndarray      # (n,) uniform mapped coordinate [bohr]
    R: np.ndarray      # (n,) R(x) [bohr]
    jac: np.ndarray    # (n,) dR/dx
    dx: float
    T: np.ndarray      # (n, n) kinetic energy [hartree]
    r_min: float
    s: float


def _dvr_grid(mol: Molecule) -> _Grid:
    g = mol._cache.get("grid")
    if g is not None:
        return g
    s, dx = mol.r_scale, mol.dvr_step
    x_max = s * math.asinh((mol.r_max - mol.r_min) / s)
    n = int(math.ceil(x_max / dx))
    x = dx * np.arange(1, n)              # hard walls at x = 0 and x = n dx
    R = mol.r_min + s * np.sinh(x / s)
    jac = np.cosh(x / s)
    i = np.arange(x.size)
    d = i[:, None] - i[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        D = np.where(d == 0, 0.0, np.where(d % 2 == 0, 1.0, -1.0) / (np.where(d == 0, 1, d) * dx))
    A = D / np.sqrt(jac)[None, :]
    T = (A.T / jac[None, :]) @ A / (2.0 * mol.reduced_mass)
    g = _Grid(x=x, R=R, jac=jac, dx=dx, T=T, r_min=mol.r_min, s=s)
    mol._cache["grid"] = g
    return g


@dataclasses.dataclass(frozen=True)
class _Bound:
    J: int
    energy: np.ndarray   # (n_v,) [hartree] below the lower dissociation limit
    c: np.ndarray        # (n_grid, n_v) DVR eigenvectors (sum c^2 = 1)
    r_extent: np.ndarray  # (n_v,) R [bohr] beyond which |psi| < 1e-7 max|psi|


def _bound(mol: Molecule, J: int) -> _Bound:
    key = ("bound", int(J))
    b = mol._cache.get(key)
    if b is not None:
        return b
    g = _dvr_grid(mol)
    V = mol.lower(g.R) + J * (J + 1) / (2.0 * mol.reduced_mass * g.R ** 2)
    H = g.T + np.diag(V)
    if V.min() >= 0.0:
        e, c = np.empty(0), np.empty((g.R.size, 0))
    else:
        # Full divide-and-conquer and a selection: with this OpenBLAS, the subset drivers
        # (evr/evx with subset_by_value) were 3-50x slower on a busy 2-core machine.
        e, c = eigh(H, driver="evd")
        keep = e < 0.0
        e, c = e[keep], c[:, keep]
    psi = np.abs(c) / np.sqrt(g.dx * g.jac)[:, None]
    ext = np.empty(e.size)
    for k in range(e.size):
        big = np.flatnonzero(psi[:, k] > 1e-7 * psi[:, k].max())
        ext[k] = g.R[min(big[-1] + 1, g.R.size - 1)]
    b = _Bound(J=int(J), energy=e, c=c, r_extent=ext)
    mol._cache[key] = b
    return b


@_blas_single
def bound_levels(molecule, J_max: int = 40) -> np.ndarray:
    """All bound rovibrational levels of the lower state with J <= J_max.

    Args:
      molecule: name (see MOLECULE_NAMES) or Molecule.
      J_max: largest rotational quantum number considered (only J with non-zero nuclear-spin
        weight are returned, e.g. odd J only for 4He2+).
    Returns:
      Structured array (n,) with fields v (int32), J (int32), energy_hartree (float64, E_vJ < 0
      from the lower dissociation limit), sorted by J then v.
    """
    mol = get_molecule(molecule)
    rows = []
    for J in mol.allowed_j(J_max):
        e = _bound(mol, int(J)).energy
        rows.extend((v, int(J), float(ev)) for v, ev in enumerate(e))
    return np.array(rows, dtype=[("v", np.int32), ("J", np.int32), ("energy_hartree", np.float64)])


def _level_energy(mol: Molecule, v: int, J: int) -> float:
    if mol.spin_weight(J) == 0:
        raise DomainError(f"{mol.name}: J = {J} does not exist (nuclear-spin weight 0)")
    b = _bound(mol, J)
    if not 0 <= v < b.energy.size:
        raise DomainError(f"{mol.name}: no bound level v = {v}, J = {J} "
                          f"({b.energy.size} bound levels for this J)")
    return float(b.energy[v])


_SINC_HALF_WIDTH = 24   # neighbours each side in the Gaussian-regularised sinc interpolation


def _interp_matrix(mol: Molecule, R: np.ndarray):
    """Sparse (len(R), n_dvr) map from DVR coefficients to psi(R) sqrt(dR/dx) at the points R.

    Gaussian-regularised sinc interpolation in the mapped coordinate (Qian, Proc. AMS 131, 3
    (2003)): sinc((x - x_i)/dx) exp(-(x - x_i)^2 / (2 s^2 dx^2)) over 2 x 24 + 1 neighbours. The DVR
    functions have k dx <= ~1.5 (of the Nyquist pi), so the error is ~exp(-(pi - 1.5) 24 / 2)
    ~ 1e-9 relative, at 1/25 of the cost of the full sinc sum. Cached per grid (4 entries).
    """
    from scipy.sparse import csr_matrix
    key = ("interp", float(R[0]), float(R[-1]), R.size)
    lru = mol._cache.setdefault("interp_lru", [])
    for k, val in lru:
        if k == key:
            return val
    g = _dvr_grid(mol)
    K = _SINC_HALF_WIDTH
    sig = math.sqrt(K / (math.pi - 1.5))
    xf = g.s * np.arcsinh((R - g.r_min) / g.s)
    # Node i sits at x = (i + 1) dx; nodes outside 0..n-1 are the hard walls (value 0).
    pos = xf / g.dx - 1.0
    i0 = np.floor(pos).astype(np.int64)
    offs = np.arange(-K, K + 2)
    idx = i0[:, None] + offs[None, :]
    t = pos[:, None] - idx
    w = np.sinc(t) * np.exp(-0.5 * (t / sig) ** 2)
    valid = (idx >= 0) & (idx < g.x.size) & (xf[:, None] > 0) & (xf[:, None] < g.x[-1] + g.dx)
    rows = np.broadcast_to(np.arange(R.size)[:, None], idx.shape)
    S = csr_matrix((w[valid], (rows[valid], idx[valid])), shape=(R.size, g.x.size))
    val = (S, 1.0 / np.sqrt(g.dx * np.cosh(xf / g.s)))
    lru.append((key, val))
    if len(lru) > 4:
        lru.pop(0)
    return val


def _bound_on_grid(mol: Molecule, J: int, R: np.ndarray, levels=None) -> np.ndarray:
    """Unit-normalised bound functions psi_v(R) [bohr^-1/2] of J at uniform points R.

    Args:
      levels: vibrational indices to return (default all bound levels of J).
    Returns:
      (n_levels, len(R)); the DVR functions themselves, interpolated in the mapped coordinate.
    """
    b = _bound(mol, J)
    c = b.c if levels is None else b.c[:, np.asarray(levels, dtype=np.int64)]
    if c.shape[1] == 0:
        return np.zeros((0, R.size))
    S, scale = _interp_matrix(mol, R)
    return (S @ c).T * scale[None, :]


@_blas_single
def bound_wavefunctions(molecule, J: int, R):
    """Bound vibrational wavefunctions of rotational level J on given radii.

    Args:
      molecule: name or Molecule.
      J: rotational quantum number.
      R: (m,) radii [bohr].
    Returns:
      (energies (n_v,) [hartree], psi (n_v, m) [bohr^-1/2], unit-normalised on R in (0, inf)).
    """
    mol = get_molecule(molecule)
    R = np.asarray(R, dtype=np.float64)
    return _bound(mol, int(J)).energy.copy(), _bound_on_grid(mol, int(J), R)


# ---------------------------------------------------------------------------------------------
# Continuum: vectorised Numerov + WKB-amplitude normalisation
# ---------------------------------------------------------------------------------------------

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


def _continuum_matrix_elements(mol: Molecule, Jp: int, e_tot: np.ndarray, weights: np.ndarray,
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


def _continuum_grid(mol: Molecule, e_max_tot: float, r_end: float, k_bound: float):
    """Uniform Numerov grid from r_min to >= r_end with k h <= _KH_MAX."""
    mu = mol.reduced_mass
    r0 = mol.r_min
    probe = np.linspace(r0, r_end, 2000)
    w_min = float(np.min(mol.upper(probe)))
    k_max = max(math.sqrt(2.0 * mu * max(e_max_tot - w_min, 1e-12)), k_bound)
    h = _numerov_step(mol, k_max)
    n = int(math.ceil((r_end - r0) / h)) + 1
    return r0 + h * np.arange(n)


@_blas_single
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
    R = _continuum_grid(mol, float(e.max()) + mol.delta_e_inf, r_end, 0.0)
    _, u = _continuum_matrix_elements(mol, int(J_upper), e + mol.delta_e_inf,
                                      np.zeros((1, R.size)), R, return_u=True)
    return R, u


# ---------------------------------------------------------------------------------------------
# Cross-sections
# ---------------------------------------------------------------------------------------------

_GRID_MODE_MIN_POINTS = 1500


def _bound_k(mol: Molecule) -> float:
    g = _dvr_grid(mol)
    return math.sqrt(2.0 * mol.reduced_mass * max(-float(np.min(mol.lower(g.R))), 1e-12))


def _bound_weights(mol: Molecule, J: int, R: np.ndarray, levels) -> np.ndarray:
    """psi_v(R) D(R) h on the continuum grid for the given v of one J: (len(levels), len(R))."""
    return _bound_on_grid(mol, int(J), R, levels) * (mol.dipole(R) * (R[1] - R[0]))[None, :]


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
    R = _continuum_grid(mol, e_max, float(ext.max()), k_b)
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
            R = _continuum_grid(mol, float(e_tot[i].max()), max(mol.r_match, float(ext[i])), k_b)
            row_end = np.array([min(int(math.ceil((ext[i] - R[0]) / (R[1] - R[0]))) + 1,
                                    R.size)])
            wts = _bound_weights(mol, int(J[i]), R, [int(v[i])])
            M = _continuum_matrix_elements(mol, jp, e_tot[i], wts, R, row_end=row_end)[0]
            out[i] = hfac[i] * M ** 2
        return out
    R = _continuum_grid(mol, float(e_tot.max()), max(mol.r_match, float(ext.max())), k_b)
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
    Mg = _continuum_matrix_elements(mol, jp, e_grid, wts, R, row_end=row_end)
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


@_blas_single
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
    v = np.atleast_1d(np.asarray(v, dtype=np.int64))
    J = np.atleast_1d(np.asarray(J, dtype=np.int64))
    lam = np.atleast_1d(np.asarray(wavelength_nm, dtype=np.float64))
    if v.shape != J.shape or v.ndim != 1:
        raise ValueError("v and J must be equal-length 1-D arrays")
    if lam.ndim != 1 or np.any(~np.isfinite(lam)) or np.any(lam <= 0):
        raise ValueError("wavelength_nm must be a 1-D array of finite positive values [nm]")
    if method not in ("auto", "direct", "grid"):
        raise ValueError(f"method must be 'auto', 'direct' or 'grid', got {method!r}")
    omega = wavelength_to_hartree(lam)
    energies = np.array([_level_energy(mol, int(a), int(b)) for a, b in zip(v, J)])
    msq = np.zeros((v.size, lam.size))
    jps = sorted({int(j) + d for j in J for d in (-1, 1) if int(j) + d >= 0})
    k_b = _bound_k(mol)
    if n_energy is None:
        n_energy = max(_GRID_MODE_MIN_POINTS, 12 * int(v.max(initial=0)) + 600)
    ext_all = np.array([_bound(mol, int(j)).r_extent[int(vv)] for vv, j in zip(v, J)])
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
    g = _dvr_grid(mol)
    V = mol.lower(g.R)
    r_e = float(g.R[np.argmin(V)])
    b = 1.0 / (2.0 * mol.reduced_mass * r_e ** 2)
    kt = _c.K_BOLTZMANN_EV_K * float(temperature_k) * _EV
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
    kt = _c.K_BOLTZMANN_EV_K * t * _EV          # [hartree]
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

@_blas_single
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
    e0 = _level_energy(mol, 0, j0)
    g = _dvr_grid(mol)
    psi = np.abs(_bound(mol, j0).c[:, 0]) / np.sqrt(g.dx * g.jac)
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
