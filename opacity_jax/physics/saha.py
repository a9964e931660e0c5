"""Saha-Boltzmann LTE ionization balance, differentiable and jit/vmap-able (JAX).

For charge states i = 0..n-1 of an element with ionization energies I_i [eV],

    n_{i+1} n_e / n_i = 2 (U_{i+1} / U_i) (2 pi m_e k T / h^2)^{3/2} exp(-I_i / kT),

with partition functions U_i(T) = sum_l g_l exp(-E_l / kT) over the levels of the *same*
structure model that produces the lines (so populations and line strengths agree). Charge
neutrality n_e = sum_i i n_i closes the system. Everything is solved in log space:
x = ln n_e, ln f_k(x) = c_k - k x - logsumexp_j (c_j - j x), c_k = sum_{i<k} phi_i with
phi_i = ln[2 U_{i+1}/U_i (2 pi m_e kT/h^2)^{3/2}] - I_i/kT. The neutrality residual
h(x) = x - ln sum_e n_e,tot Zbar_e(x) is strictly increasing in x, so a bracketed bisection always
converges; the bracket [min(phi_0, ln(n/2)) - 1, ln(n Z_max) + 1] provably contains the root
(at the lower end f_1 >= f_0, so Zbar >= 1/2). A final Newton step from the stop-gradient'ed root
gives exact implicit derivatives d x / d(T, rho) (implicit function theorem) without
differentiating through the bisection.

The solves above model no ionization potential depression or pressure ionization. The optional
Debye-Hueckel continuum lowering (`debye_lowering_ev`, `solve_debye_lowered`) lowers I_q by
dI_q = (q + 1) e^2 / lambda_D, lambda_D = sqrt(kT / (4 pi e^2 n_e)) (electron screening only),
solved self-consistently by fixed-point iteration on n_e; on the NIST-LANL grid (rho <= 1e-4
g/cm^3, n_e <~ 1e18 cm^-3) e^2 / lambda_D stays below ~0.15 eV.

Z-bar can underflow float32 (at 0.01 eV and 1e-4 g/cm^3 it is ~1e-100); ``log_zbar`` is always
finite and should be used for comparisons in that regime.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from opacity_jax.physics import constants as C

_BISECTION_STEPS = 64   # bracket width <~ 2e3 in ln n_e -> below float64 resolution after 64 halvings
# Fixed-point passes of the Debye lowering: the feedback d ln n_e / d ln n_e is ~ dI / (2 kT) times
# the stage sensitivity (< 1), so each pass shrinks the error several-fold on the NIST-LANL grid.
DEBYE_ITERATIONS = 8


class SahaResult(NamedTuple):
    """Result of an LTE ionization solve (leading batch dims ``...`` follow the inputs).

    fractions: (..., n_el, n_stages) charge-state fractions f_k (k = charge), summing to 1.
    zbar: (..., n_el) mean ionic charge sum_k k f_k of each element.
    log_zbar: (..., n_el) ln Zbar (finite even where Zbar underflows).
    log_ne: (...) ln of the free-electron density [cm^-3].
    log_fractions: (..., n_el, n_stages) ln f_k (finite where f_k underflows), when computed.
    """

    fractions: jax.Array
    zbar: jax.Array
    log_zbar: jax.Array
    log_ne: jax.Array
    log_fractions: Optional[jax.Array] = None


def log_partition_functions(temperature_ev, level_energy_ev, level_log_g):
    """ln U_k(T) for every stage of one or more elements.

    Args:
      temperature_ev: scalar temperature [eV].
      level_energy_ev: (..., n_stages, n_levels) level energies above each stage's ground [eV];
        padded entries may hold any finite value.
      level_log_g: same shape, ln(2J+1) of each level, -inf for padding.
    Returns:
      (..., n_stages) ln U_k.
    """
    return jax.nn.logsumexp(level_log_g - level_energy_ev / temperature_ev, axis=-1)


def _stage_log_weights(temperature_ev, ionization_energies_ev, log_u):
    """c_k = sum_{i<k} phi_i, (..., n_stages); stages beyond the table carry -inf."""
    t = temperature_ev
    log_lambda = jnp.log(2.0 * C.SAHA_CONST_CM3_EV32) + 1.5 * jnp.log(t)
    phi = log_lambda + log_u[..., 1:] - log_u[..., :-1] - ionization_energies_ev / t
    zero = jnp.zeros(phi.shape[:-1] + (1,), phi.dtype)
    return jnp.concatenate([zero, jnp.cumsum(phi, axis=-1)], axis=-1), phi


def _log_fractions(c, x):
    k = jnp.arange(c.shape[-1], dtype=c.dtype)
    a = c - k * x
    return a - jax.nn.logsumexp(a, axis=-1, keepdims=True)


def _log_zbar(log_f):
    k = jnp.arange(log_f.shape[-1], dtype=log_f.dtype)
    safe_log_k = jnp.where(k > 0, jnp.log(jnp.maximum(k, 1.0)), -jnp.inf)
    return jax.nn.logsumexp(log_f + safe_log_k, axis=-1)


def stage_log_weights(temperature_ev, ionization_energies_ev, log_u):
    """Saha stage boundaries phi_i = ln[2 U_{i+1}/U_i (2 pi m_e kT/h^2)^{3/2}] - I_i/kT.

    Args:
      temperature_ev: scalar T [eV]; ionization_energies_ev: (..., n_stages - 1) [eV];
      log_u: (..., n_stages) ln partition functions.
    Returns:
      (..., n_stages - 1) phi_i [ln cm^-3]: ln(n_{i+1} n_e / n_i).
    """
    return _stage_log_weights(temperature_ev, ionization_energies_ev, log_u)[1]


def solve_mixture(temperature_ev, density_gcc, mass_fractions, atomic_weights,
                  ionization_energies_ev, level_energy_ev, level_log_g) -> SahaResult:
    """LTE ionization of a mixture sharing one free-electron density (scalar T, rho).

    Args:
      temperature_ev: scalar T [eV] (0.01-5 eV on the NIST-LANL grid; any T > 0 works).
      density_gcc: scalar total mass density [g/cm^3].
      mass_fractions: (n_el,) mass fractions (need not be normalised; they are).
      atomic_weights: (n_el,) [u].
      ionization_energies_ev: (n_el, n_stages - 1) [eV]; I_k ionizes charge k -> k+1.
      level_energy_ev, level_log_g: (n_el, n_stages, n_levels) structure, see
        `log_partition_functions`.
    Returns:
      SahaResult with fractions (n_el, n_stages), zbar/log_zbar (n_el,), log_ne ().
    Differentiable in T, rho and the mass fractions; vmap over scalars for grids.
    """
    dtype = jnp.result_type(temperature_ev, float)
    t = jnp.asarray(temperature_ev, dtype)
    log_u = log_partition_functions(t, jnp.asarray(level_energy_ev, dtype),
                                    jnp.asarray(level_log_g, dtype))
    phi = stage_log_weights(t, jnp.asarray(ionization_energies_ev, dtype), log_u)
    return solve_mixture_phi(density_gcc, mass_fractions, atomic_weights, phi)


def solve_mixture_phi(density_gcc, mass_fractions, atomic_weights, phi,
                      bisection_steps: int = _BISECTION_STEPS) -> SahaResult:
    """Charge neutrality for given Saha stage boundaries phi (see `stage_log_weights`).

    The same solve as `solve_mixture`, for callers that build phi themselves (a prior with
    approximate partition functions plus a learned correction, say).

    Args:
      density_gcc: scalar total mass density [g/cm^3]; mass_fractions, atomic_weights: (n_el,)
        (weights in u); phi: (n_el, n_stages - 1) [ln cm^-3].
      bisection_steps: halvings of the ln n_e bracket before the Newton polish (64 reach float64
        resolution; ~32 suffice in float32, where the two Newton steps then converge).
    Returns:
      SahaResult as `solve_mixture` (log_fractions included).
    """
    dtype = jnp.result_type(phi, float)
    rho = jnp.asarray(density_gcc, dtype)
    x_frac = jnp.asarray(mass_fractions, dtype)
    x_frac = x_frac / jnp.sum(x_frac)
    present = x_frac > 0
    log_n_el = jnp.where(
        present,
        jnp.log(rho) + jnp.log(jnp.where(present, x_frac, 1.0))
        - jnp.log(jnp.asarray(atomic_weights, dtype) * C.ATOMIC_MASS_UNIT_G),
        -jnp.inf)
    phi = jnp.asarray(phi, dtype)
    zero = jnp.zeros(phi.shape[:-1] + (1,), phi.dtype)
    c = jnp.concatenate([zero, jnp.cumsum(phi, axis=-1)], axis=-1)
    n_stages = c.shape[-1]
    log_n_tot = jax.nn.logsumexp(log_n_el)

    def residual(x, c, log_n_el):
        log_f = _log_fractions(c, x)
        return x - jax.nn.logsumexp(log_n_el + _log_zbar(log_f))

    # Bracket: see the module docstring for why it always contains the root.
    phi0 = jnp.min(jnp.where(present, phi[:, 0], jnp.inf))
    lo = jnp.minimum(phi0, log_n_tot - jnp.log(2.0)) - 1.0
    hi = log_n_tot + jnp.log(float(n_stages - 1)) + 1.0
    c_ng, log_n_ng = jax.lax.stop_gradient(c), jax.lax.stop_gradient(log_n_el)
    lo, hi = jax.lax.stop_gradient(lo), jax.lax.stop_gradient(hi)

    def body(_, bracket):
        a, b = bracket
        m = 0.5 * (a + b)
        pos = residual(m, c_ng, log_n_ng) > 0
        return jnp.where(pos, a, m), jnp.where(pos, m, b)

    a, b = jax.lax.fori_loop(0, bisection_steps, body, (lo, hi))
    x0 = 0.5 * (a + b)
    # Polish (no gradient) then one differentiable Newton step = implicit-function derivative.
    for _ in range(2):
        r, dr = jax.value_and_grad(residual)(x0, c_ng, log_n_ng)
        x0 = x0 - r / dr
    x0 = jax.lax.stop_gradient(x0)
    r, dr = jax.value_and_grad(residual)(x0, c, log_n_el)
    x = x0 - r / jax.lax.stop_gradient(dr)
    log_f = _log_fractions(c, x)
    log_zbar = _log_zbar(log_f)
    return SahaResult(fractions=jnp.exp(log_f), zbar=jnp.exp(log_zbar), log_zbar=log_zbar,
                      log_ne=x, log_fractions=log_f)


def solve_element(temperature_ev, density_gcc, atomic_weight, ionization_energies_ev,
                  level_energy_ev, level_log_g) -> SahaResult:
    """LTE ionization of a single element (scalar T [eV], rho [g/cm^3]).

    Args as `solve_mixture` without the element axis: ionization_energies_ev (n_stages - 1,),
    level arrays (n_stages, n_levels). Returns SahaResult with fractions (n_stages,), zbar (),
    log_zbar (), log_ne ().
    """
    res = solve_mixture(temperature_ev, density_gcc, jnp.ones((1,)),
                        jnp.reshape(jnp.asarray(atomic_weight), (1,)),
                        ionization_energies_ev[None], level_energy_ev[None], level_log_g[None])
    return SahaResult(res.fractions[0], res.zbar[0], res.log_zbar[0], res.log_ne,
                      res.log_fractions[0])


def solve_indexed(atomic_data, element_index, temperature_ev, density_gcc) -> SahaResult:
    """Single-element solve where the element is a (traceable) index into stacked tables.

    Args:
      atomic_data: mapping with 'atomic_weights' (n_all,), 'ionization_energies_ev'
        (n_all, n_stages - 1), 'level_energy_ev' and 'level_log_g' (n_all, n_stages, n_levels),
        e.g. from `opacity_jax.data.atomic.saha_tables()`.
      element_index: int or traced int32 scalar (vmap over elements works).
      temperature_ev, density_gcc: scalars [eV], [g/cm^3].
    """
    take = lambda a: jnp.take(jnp.asarray(a), element_index, axis=0)
    return solve_element(temperature_ev, density_gcc, take(atomic_data["atomic_weights"]),
                         take(atomic_data["ionization_energies_ev"]),
                         take(atomic_data["level_energy_ev"]), take(atomic_data["level_log_g"]))


def debye_length_cm(temperature_ev, log_ne):
    """Electron Debye length lambda_D = sqrt(kT / (4 pi e^2 n_e)) [cm].

    Args: temperature_ev (...) [eV]; log_ne (...) ln n_e [ln cm^-3] (broadcast together).
    Ions are left out of the screening (electron-only Debye length).
    """
    t = jnp.asarray(temperature_ev)
    return jnp.sqrt(t / (4.0 * jnp.pi * C.ELECTRON_CHARGE_SQ_EV_CM) * jnp.exp(-jnp.asarray(log_ne)))


def debye_lowering_ev(temperature_ev, log_ne, n_thresholds: int):
    """Debye-Hueckel ionization-potential depression dI_q = (q + 1) e^2 / lambda_D [eV].

    Args:
      temperature_ev: (...) [eV]; log_ne: (...) ln n_e [ln cm^-3].
      n_thresholds: number of ionization energies (charges q = 0 .. n_thresholds - 1).
    Returns:
      (..., n_thresholds) dI_q [eV], for the ionization q -> q + 1 (the ion's charge seen by the
      escaping electron is z = q + 1).
    """
    inv_lambda = 1.0 / debye_length_cm(temperature_ev, log_ne)
    z = jnp.arange(1, n_thresholds + 1, dtype=jnp.result_type(inv_lambda, float))
    return (C.ELECTRON_CHARGE_SQ_EV_CM * inv_lambda)[..., None] * z


def solve_debye_lowered(solve: Callable[[jax.Array], SahaResult], temperature_ev,
                        ionization_energies_ev, iterations: int = DEBYE_ITERATIONS):
    """Self-consistent Saha solve with Debye-lowered ionization energies I_q - dI_q(n_e).

    Fixed point: solve with I, compute dI from the resulting n_e, re-solve with I - dI, repeated
    `iterations` times (jit-friendly: a fixed number of passes, no data-dependent loop).

    Args:
      solve: I [eV] (..., n_stages - 1) -> SahaResult (e.g. `solve_element` with every other
        argument bound); scalar T, so log_ne is a scalar.
      temperature_ev: scalar T [eV] (the one `solve` uses).
      ionization_energies_ev: (..., n_stages - 1) unlowered I_q [eV].
      iterations: fixed-point passes after the first, unlowered solve (>= 1).
    Returns:
      (SahaResult of the last solve, dI (n_stages - 1,) [eV] used in it, step) where step is
      |ln n_e(last) - ln n_e(previous)|, the fixed point's last change (convergence check).
    """
    i_q = jnp.asarray(ionization_energies_ev)
    n_thr = i_q.shape[-1]
    lowered = lambda log_ne: solve(i_q - debye_lowering_ev(temperature_ev, log_ne, n_thr)).log_ne

    # One traced solve in the loop body (compile time), the last one outside for the result.
    def body(_, carry):
        return lowered(carry[0]), carry[0]

    x = solve(i_q).log_ne
    x, _ = jax.lax.fori_loop(0, iterations - 1, body, (x, x))
    d_i = debye_lowering_ev(temperature_ev, x, n_thr)
    res = solve(i_q - d_i)
    return res, d_i, jnp.abs(res.log_ne - x)
