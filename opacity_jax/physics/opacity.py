"""Microphysics of LTE monochromatic opacity: line, bound-free, free-free and Thomson terms (JAX).

All functions are array functions used by the embedded generator (numpy float64 inputs -> numpy,
no per-shape compilation) and by physics-informed losses (JAX inputs -> jax.numpy, jit/vmap/grad). Energies in eV, temperatures in eV,
cross-sections in cm^2, opacities in cm^2/g.

* Lines (line-binned, no profile): an E1 line of weighted oscillator strength gf between
  levels l < u contributes to the bin that holds its energy the integrated cross-section
  (pi e^2 / m_e c) h gf [exp(-E_l/kT) - exp(-E_u/kT)] / U(T)   [cm^2 eV per ion],
  divided by the bin width [eV]. The second exponential is stimulated emission written through
  the upper-level population, exact in LTE.
* Bound-free (Kramers / hydrogenic): from a level with threshold E_th = I - E_l,
  sigma(E) = sigma_K n_eff / z^2 (E_th / E)^3 for E >= E_th, n_eff = z sqrt(Ry / E_th),
  z = q + 1, sigma_K = 7.906e-18 cm^2, times (1 - exp(-E/kT)) for stimulated recombination.
* Free-free (Kramers, Gaunt factor 1): kappa_ff = 3.692e8 n_e sum_i z_i^2 n_i T_K^{-1/2}
  nu^{-3} (1 - e^{-h nu/kT}) / rho.
* Electron scattering (Thomson): kappa_es = sigma_T n_e / rho.

Bin averages of the E^{-3}(1 - e^{-E/kT}) continuum kernel are integrated with Gauss-Legendre in
ln E on each (sub-)interval, so a spectrum generated on coarse bins equals the fine one rebinned.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from opacity_jax.physics import constants as C
from opacity_jax.physics import quadrature


def _xp(*arrays):
    """numpy for concrete numpy/Python inputs (the generator: float64, no compilation per shape),
    jax.numpy otherwise (jit, grad, vmap in losses)."""
    return np if all(isinstance(a, (np.ndarray, np.generic, float, int)) for a in arrays) else jnp


def kramers_kernel(energy_ev, temperature_ev):
    """E^-3 (1 - exp(-E/kT)) [eV^-3]; energy (...), temperature broadcastable."""
    xp = _xp(energy_ev, temperature_ev)
    return -xp.expm1(-energy_ev / temperature_ev) / energy_ev**3


def kramers_kernel_integral(lo_ev, hi_ev, temperature_ev, n_nodes: int = 6):
    """Integral of `kramers_kernel` over [lo, hi] [eV^-2]; all args broadcast, lo <= hi.

    Gauss-Legendre in ln E (nodes from `quadrature.gauss_legendre`); numpy or JAX per `_xp`.
    """
    xp = _xp(lo_ev, hi_ev, temperature_ev)
    if xp is jnp:
        t = jnp.asarray(temperature_ev)[..., None]   # broadcast against the node axis
        return quadrature.bin_integral(lambda e: kramers_kernel(e, t), lo_ev, hi_ev,
                                       n_nodes=n_nodes)
    nodes, weights = quadrature.gauss_legendre(n_nodes)
    lo = np.asarray(lo_ev, np.float64)[..., None]
    hi = np.asarray(hi_ev, np.float64)[..., None]
    half = 0.5 * np.log1p((hi - lo) / lo)     # no cancellation for narrow bins
    e = lo * np.exp(half * (1.0 + nodes))
    t = np.asarray(temperature_ev, np.float64)[..., None]
    return np.sum(kramers_kernel(e, t) * half * weights * e, axis=-1)


def bf_threshold_xsec_cm2(threshold_ev, charge):
    """Kramers photoionization cross-section at threshold [cm^2] for ion charge q (z = q + 1).

    threshold_ev: (...) ionization threshold of the level [eV] (> 0); charge broadcastable.
    """
    xp = _xp(threshold_ev, charge)
    z = charge + 1.0
    n_eff = z * xp.sqrt(C.RYDBERG_EV / threshold_ev)
    return C.KRAMERS_BF_CM2 * n_eff / z**2


def line_strength_cm2_ev(gf, lower_energy_ev, upper_energy_ev, temperature_ev, log_u):
    """Integrated LTE line cross-section per ion [cm^2 eV], stimulated emission included.

    gf, lower/upper energies: (nLines,); temperature_ev and log_u (ln partition function):
    (nT, 1) or scalars. Returns (nT, nLines).
    """
    xp = _xp(gf, lower_energy_ev, upper_energy_ev, temperature_ev, log_u)
    return C.LINE_XSEC_CM2_EV * gf * (xp.exp(-lower_energy_ev / temperature_ev - log_u)
                                      - xp.exp(-upper_energy_ev / temperature_ev - log_u))


def ff_prefactor_cm2_g_ev3(log_ne, sum_fq2, atomic_weight, temperature_ev):
    """Free-free opacity per unit Kramers kernel: kappa_ff = result * E^-3 (1 - e^{-E/kT}).

    Args:
      log_ne: ln n_e [cm^-3]; sum_fq2: sum_i f_i q_i^2 over charge fractions;
      atomic_weight [u]; temperature_ev [eV]. All broadcast.
    Returns [cm^2/g eV^3].
    """
    t_k = temperature_ev / C.K_BOLTZMANN_EV_K
    n_per_gram = 1.0 / (atomic_weight * C.ATOMIC_MASS_UNIT_G)
    # nu^-3 = h^3 / E^3 with h in eV s turns the CGS formula into one of E in eV.
    xp = _xp(log_ne, sum_fq2, atomic_weight, temperature_ev)
    return (C.KRAMERS_FF_CGS * xp.exp(log_ne) * sum_fq2 * n_per_gram / xp.sqrt(t_k)
            * C.H_PLANCK_EV_S**3)


def thomson_opacity_cm2_g(zbar, atomic_weight):
    """Electron-scattering opacity sigma_T n_e / rho [cm^2/g] of a pure element (n_e = Zbar n)."""
    return C.THOMSON_CM2 * zbar / (atomic_weight * C.ATOMIC_MASS_UNIT_G)
