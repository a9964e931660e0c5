"""Potential curves and transition dipoles of the molecular ions (:class:`Molecule`).

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

import dataclasses
import functools
import math
from typing import Callable, Union

import numpy as np

from opacity_jax.physics import constants as _c
from opacity_jax.physics.molecular.common import AMU, EV_IN_HARTREE, H2PLUS_REDUCED_MASS
from opacity_jax.physics.molecular.h2plus_exact import h2plus_dipole, h2plus_potential

_CM1 = 1.0 / _c.HARTREE_CM1        # 1 cm^-1 in hartree
_ANG = 1.0 / _c.BOHR_ANGSTROM      # 1 Angstrom in bohr


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
                 d_e=2.040 * EV_IN_HARTREE, r_e=1.4632, omega_e=3228.0 * _CM1,
                 delta=(_c.IONIZATION_HE_EV - _c.IONIZATION_H_EV) * EV_IN_HARTREE,
                 e_v=13.0 * EV_IN_HARTREE, b=1.2, alpha=_c.POLARIZABILITY_H_AU, r_d=1.5,
                 dipole=("ct", 0.8, 0.7), spin=(1.0, 1.0),
                 text="4HeH+ X1S+ (He + H+) -> A1S+ (He+ + H(1s)), charge transfer"),
    "LiH+": dict(masses=(_c.ATOMIC_MASS_LI7_AMU - _ME, _c.ATOMIC_MASS_H1_AMU),
                 d_e=0.14 * EV_IN_HARTREE, r_e=4.13, omega_e=412.0 * _CM1,
                 delta=(_c.IONIZATION_H_EV - _c.IONIZATION_LI_EV) * EV_IN_HARTREE,
                 e_v=1.5 * EV_IN_HARTREE, b=0.8, alpha=_c.POLARIZABILITY_LI_AU, r_d=10.0,
                 dipole=("ct", 0.5, 0.35), spin=(1.0, 1.0),
                 text="7LiH+ X2S+ (Li+ + H(1s)) -> 2 2S+ (Li(2s) + H+), charge transfer"),
    "NaH+": dict(masses=(_c.ATOMIC_MASS_NA23_AMU - _ME, _c.ATOMIC_MASS_H1_AMU),
                 d_e=0.10 * EV_IN_HARTREE, r_e=4.8, omega_e=300.0 * _CM1,
                 delta=(_c.IONIZATION_H_EV - _c.IONIZATION_NA_EV) * EV_IN_HARTREE,
                 e_v=1.3 * EV_IN_HARTREE, b=0.7, alpha=_c.POLARIZABILITY_NA_AU, r_d=10.5,
                 dipole=("ct", 0.5, 0.3), spin=(1.0, 1.0),
                 text="23NaH+ X2S+ (Na+ + H(1s)) -> 2 2S+ (Na(3s) + H+), charge transfer"),
    "Li2+": dict(masses=(_c.ATOMIC_MASS_LI7_AMU, _c.ATOMIC_MASS_LI7_AMU - _ME),
                 d_e=1.30 * EV_IN_HARTREE, r_e=3.10 * _ANG, omega_e=263.0 * _CM1, delta=0.0,
                 e_v_over_de=3.25, b=None, alpha=_c.POLARIZABILITY_LI_AU, r_d=None,
                 dipole=("half_r",), spin=(3.0, 5.0),
                 text="7Li2+ X2Sg+ -> A2Su+, Li(2s) + Li+ (charge resonance)"),
    "Na2+": dict(masses=(_c.ATOMIC_MASS_NA23_AMU, _c.ATOMIC_MASS_NA23_AMU - _ME),
                 d_e=0.99 * EV_IN_HARTREE, r_e=3.60 * _ANG, omega_e=120.0 * _CM1, delta=0.0,
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
