"""Saha-structured opacity surrogate: charge-stage spectra mixed by an LTE ionization prior.

In LTE the bound-bound and bound-free opacity of an element is, per gram,

    kappa_bb+bf(E; T, rho) = sum_q x_q(T, rho) A_q(E, T),

with x_q the charge-stage fractions and A_q the opacity of a gram of the element if all of it were
in stage q, which does not depend on rho (up to weak density effects in real tables). Free-free
(~ n_e sum_q x_q q^2 K(E, T)) and Thomson scattering (~ Zbar) follow in closed form from
(x, n_e, T) (`opacity_jax.physics.opacity`). This module builds exactly that structure:

* **Prior ionization.** Saha boundaries phi_q(T) from the tabulated ionization energies
  (`physics.elements.IONIZATION_ENERGIES_EV`) with unit partition functions, U_q = 1: only what a
  holder of real tables has. Partition-function ratios are the prior's main error; they enter
  phi_q additively as ln(U_{q+1}/U_q)(T), a smooth function of T alone.
* **Learned correction** dphi_q(T) to those boundaries (penalised), on knots in log10 T; charge
  neutrality is then solved exactly (`physics.saha.solve_mixture_phi`, implicit derivatives),
  so the corrected fractions stay normalised and consistent with n_e.
* **Stage spectra** log A_q(E, T) on the same log10 T knots, one table per stage window of the
  element, fitted per knot by linear least squares on that temperature's training densities
  (`row_fit`: for given fractions the absorption is linear in the stage spectra, so they are
  projected out of the fit of dphi - variable projection); between knots (held-out
  temperature rows, off-grid queries) an interpolant in log10 T
  over the element's knots: monotone cubic (PCHIP) in log10 T, which cannot overshoot.
* **Free-free and Thomson** from the same (x, n_e, T), each with one learned log scale.

Everything is computed in log space (log kappa never underflows), so the model never outputs an
exact zero. Shapes: per element (one entity of the vmap'd training step) params are

    {"log_a": (n_stages, n_knots, n_energy), "dphi": (n_stages + 1, n_knots),
     "log_s_ff": (), "log_s_es": ()}

and the per-element constants (`ElementConsts`) carry the stage window, atomic weight,
ionization energies and knot mask. Units: energies eV, T eV, rho g/cm^3, kappa cm^2/g.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from opacity_jax.physics import constants as C
from opacity_jax.physics import elements as _el
from opacity_jax.physics import opacity as phys
from opacity_jax.physics import saha

NEG = -1.0e4          # "log of zero" that keeps gradients finite (exp underflows to 0 exactly)
N_BOUNDARIES = _el.MAX_STAGES - 1
# float32 ln n_e: a ~2e3-wide bracket halved 36 times is ~3e-8 wide before the Newton polish.
BISECTION_STEPS = 36
# The fast path's solve: a bracket <= ~2e3 wide halved 16 times is < 0.04 wide, from where the
# two Newton steps (quadratic) reach float32 resolution as well; 36 is the conservative default.
FAST_BISECTION_STEPS = 16


@dataclasses.dataclass(frozen=True)
class StageBasisSpec:
    """Static shape of the model (shared by every element).

    n_stages: charge stages in each element's window; n_energy: bins;
    knots_log10_t: (n_knots,) log10 T [eV] of the knots (the dataset's T axis);
    energy_edges_ev: (n_energy + 1,) bin edges [eV];
    correction: learn dphi (else the prior's fractions are used as they are);
    """

    n_stages: int
    n_energy: int
    knots_log10_t: tuple
    energy_edges_ev: tuple
    correction: bool = True


class ElementConsts(NamedTuple):
    """Per-element constants (leading entity axis when stacked).

    q_lo: () int first charge of the window; atomic_weight: () [u];
    ionization_energies_ev: (20,) [eV]; knot_mask: (n_knots,) bool, knots with training data;
    stage_mask: (n_stages,) bool, window stages that exist (q <= 20);
    boundary_mask: (n_stages + 1,) bool, corrected boundaries q_lo - 1 ... q_lo + n_stages - 1
    that exist.
    """

    q_lo: jax.Array
    atomic_weight: jax.Array
    ionization_energies_ev: jax.Array
    knot_mask: jax.Array
    stage_mask: jax.Array
    boundary_mask: jax.Array


def prior_phi(temperature_ev, ionization_energies_ev):
    """Prior Saha boundaries with unit partition functions.

    Args: temperature_ev: scalar [eV]; ionization_energies_ev: (20,) [eV].
    Returns: (20,) phi_q [ln cm^-3] = ln[2 (2 pi m_e kT / h^2)^{3/2}] - I_q / kT.
    """
    i = jnp.asarray(ionization_energies_ev)
    log_u = jnp.zeros(i.shape[:-1] + (i.shape[-1] + 1,), i.dtype)
    return saha.stage_log_weights(temperature_ev, i, log_u)


def prior_fractions(temperature_ev, density_gcc, atomic_weight, ionization_energies_ev):
    """Prior stage fractions at one (T [eV], rho [g/cm^3]): SahaResult with (21,) fractions."""
    phi = prior_phi(temperature_ev, ionization_energies_ev)
    res = saha.solve_mixture_phi(density_gcc, jnp.ones((1,)), jnp.reshape(atomic_weight, (1,)),
                                 phi[None])
    return jax.tree_util.tree_map(lambda a: a[0] if a.ndim > 0 else a, res)


def _bracket(knots, mask, x):
    """Indices (i0, i1, i2, i3) of valid knots around x (i1 <= x < i2, clamped) and u in [0, 1]."""
    k = knots.shape[0]
    idx = jnp.arange(k)
    first = jnp.min(jnp.where(mask, idx, k))
    i1 = jnp.max(jnp.where(mask & (knots <= x), idx, -1))
    i1 = jnp.where(i1 < 0, first, i1)
    i2 = jnp.min(jnp.where(mask & (idx > i1), idx, k))
    i2 = jnp.where(i2 >= k, i1, i2)
    i0 = jnp.max(jnp.where(mask & (idx < i1), idx, -1))
    i0 = jnp.where(i0 < 0, i1, i0)
    i3 = jnp.min(jnp.where(mask & (idx > i2), idx, k))
    i3 = jnp.where(i3 >= k, i2, i3)
    h = knots[i2] - knots[i1]
    u = jnp.where(h > 0, jnp.clip((x - knots[i1]) / jnp.where(h > 0, h, 1.0), 0.0, 1.0), 0.0)
    return (i0, i1, i2, i3), u


def interp_values(knots, mask, x, values):
    """Monotone cubic (PCHIP, Fritsch-Carlson) interpolation over the valid knots.

    No overshoot: between two knots the interpolant stays within their values, which matters
    for ln A tables whose values span hundreds of e-folds between neighbouring temperatures.

    Args: knots: (K,) ascending; mask: (K,) bool valid knots; x: scalar;
      values: (..., K) knot values.
    Returns: (...) the interpolant at x (clamped outside the valid knots). Differentiable in x
    and in values.
    """
    (i0, i1, i2, i3), u = _bracket(knots, mask, x)
    x0, x1, x2, x3 = knots[i0], knots[i1], knots[i2], knots[i3]
    p0, p1, p2, p3 = (values[..., i] for i in (i0, i1, i2, i3))
    safe = lambda d: jnp.where(d > 0, d, 1.0)
    h = x2 - x1
    d1 = jnp.where(h > 0, (p2 - p1) / safe(h), 0.0)
    d0 = jnp.where(x1 - x0 > 0, (p1 - p0) / safe(x1 - x0), d1)
    d2 = jnp.where(x3 - x2 > 0, (p3 - p2) / safe(x3 - x2), d1)

    def slope(da, db, ha, hb):
        # Weighted harmonic mean of neighbouring secants; zero at a local extremum.
        wa, wb = 2 * hb + ha, hb + 2 * ha
        same = da * db > 0
        den = jnp.where(same, wa / jnp.where(same, da, 1.0) + wb / jnp.where(same, db, 1.0), 1.0)
        return jnp.where(same, (wa + wb) / den, 0.0)

    h0 = jnp.where(x1 - x0 > 0, x1 - x0, h)
    h2 = jnp.where(x3 - x2 > 0, x3 - x2, h)
    m1 = jnp.where(i0 == i1, d1, slope(d0, d1, h0, h))
    m2 = jnp.where(i3 == i2, d1, slope(d1, d2, h, h2))
    h00 = 2 * u**3 - 3 * u**2 + 1
    h10 = u**3 - 2 * u**2 + u
    h01 = -2 * u**3 + 3 * u**2
    h11 = u**3 - u**2
    return h00 * p1 + h01 * p2 + h * (h10 * m1 + h11 * m2)


def _log_kernel_bin_mean(edges, t):
    """ln of the bin mean of E^-3 (1 - e^{-E/kT}) [eV^-3], (nE,)."""
    integral = phys.kramers_kernel_integral(edges[:-1], edges[1:], t)
    return jnp.log(integral) - jnp.log(edges[1:] - edges[:-1])


def corrected_ionization(consts: ElementConsts, spec: StageBasisSpec, log10_t, log10_rho,
                         dphi_t, bisection_steps: int = BISECTION_STEPS):
    """Prior Saha boundaries + corrections, solved for charge neutrality at one point.

    Args: log10_t: scalar log10 T [eV]; log10_rho: scalar log10 rho [g/cm^3];
      dphi_t: (n_stages + 1,) boundary corrections at this T (ignored unless spec.correction);
      bisection_steps: halvings of the ln n_e bracket before the Newton polish.
    Returns: (log_x (n_stages,) ln window fractions, the `saha.SahaResult` of the solve).
    """
    phi = prior_phi(10.0 ** log10_t, consts.ionization_energies_ev)
    if spec.correction:
        b_idx = jnp.clip(consts.q_lo - 1 + jnp.arange(spec.n_stages + 1), 0, N_BOUNDARIES - 1)
        phi = phi.at[b_idx].add(jnp.where(consts.boundary_mask, dphi_t, 0.0))
    res = saha.solve_mixture_phi(10.0 ** log10_rho, jnp.ones((1,)),
                                 jnp.reshape(consts.atomic_weight, (1,)), phi[None],
                                 bisection_steps=bisection_steps)
    q = jnp.clip(consts.q_lo + jnp.arange(spec.n_stages), 0, _el.MAX_STAGES - 1)
    log_x = jnp.where(consts.stage_mask, res.log_fractions[0][q], NEG)
    return log_x, res


def ionization_and_continuum(consts: ElementConsts, spec: StageBasisSpec, log10_t, log10_rho,
                             dphi_t, log_s_ff=0.0, log_s_es=0.0):
    """Corrected LTE ionization and the closed-form continuum at one (log10 T, log10 rho).

    Args: dphi_t: (n_stages + 1,) boundary corrections at this T (ignored unless
      spec.correction); log_s_ff, log_s_es: learned log scales of free-free and Thomson.
    Returns: (log_x (n_stages,) ln window fractions, log_cont (nE,) ln(ff + es) [ln cm^2/g],
      log_zbar (), log_ne () [ln cm^-3]).
    """
    # float32 unless the query is float64 (jax x64 mode: the float64 reference evaluation)
    edges = jnp.asarray(spec.energy_edges_ev, jnp.result_type(log10_t, jnp.float32))
    t = 10.0 ** log10_t
    log_x, res = corrected_ionization(consts, spec, log10_t, log10_rho, dphi_t)
    log_f = res.log_fractions[0]
    log_mass = jnp.log(consts.atomic_weight * C.ATOMIC_MASS_UNIT_G)
    charges = jnp.arange(_el.MAX_STAGES, dtype=log_f.dtype)
    log_q2 = jnp.where(charges > 0, 2.0 * jnp.log(jnp.maximum(charges, 1.0)), NEG)
    log_sum_fq2 = jax.nn.logsumexp(log_f + log_q2)
    t_k = t / C.K_BOLTZMANN_EV_K
    # Kramers free-free (physics.opacity.ff_prefactor_cm2_g_ev3) written in logs: n_e can
    # underflow float32 at cold, thin nodes while ln n_e stays finite.
    log_ff = (np.log(C.KRAMERS_FF_CGS) + res.log_ne[()] + log_sum_fq2 - log_mass
              - 0.5 * jnp.log(t_k) + 3.0 * np.log(C.H_PLANCK_EV_S)
              + _log_kernel_bin_mean(edges, t) + log_s_ff)
    log_es = np.log(C.THOMSON_CM2) + res.log_zbar[0] - log_mass + log_s_es
    return log_x, jnp.logaddexp(log_ff, log_es), res.log_zbar[0], res.log_ne[()]


def row_fit(consts, spec, params, log10_t, log10_rho, kappa, scale, mask, ridge: float = 1e-6):
    """Stage spectra of one temperature row by linear least squares (variable projection).

    For the row's corrections, every known density's absorption kappa - (ff + es) is a linear
    combination of the stage fractions: the stage spectra follow by ridge least squares on the
    known densities, each bin scaled by `scale`.

    Args: params: {'dphi_t': (n_stages + 1,), 'log_s_ff', 'log_s_es'} at this row;
      log10_t: scalar; log10_rho: (nR,); kappa: (nR, nE) [cm^2/g] (anything at unknown nodes);
      scale: (nE,) [cm^2/g]; mask: (nR,) 1 for densities used in the fit.
    Returns: (a (n_stages, nE) stage spectra [cm^2/g], x (nR, n_stages) fractions,
      cont (nR, nE) ff + es [cm^2/g]).
    """
    f = lambda r: ionization_and_continuum(consts, spec, log10_t, r, params["dphi_t"],
                                           params["log_s_ff"], params["log_s_es"])
    log_x, log_cont, _, _ = jax.vmap(f)(log10_rho)
    x, cont = jnp.exp(log_x), jnp.exp(log_cont)
    y = (kappa - cont) / scale
    xm = x * mask[:, None]
    g = xm.T @ xm + ridge * jnp.eye(spec.n_stages, dtype=x.dtype)
    a = jnp.linalg.solve(g, xm.T @ (y * mask[:, None])) * scale
    return a, x, cont


def log_refine(x, cont, kappa, mask, a0, steps: int, linear_weight: float = 0.0,
               rel_floor: float = 1e-3, anchor: float = 1e-6, bound_factor: float = 10.0):
    """Refine one row's stage spectra in log space (Levenberg-Marquardt per bin).

    The linear fit (`row_fit`) weights every density of a bin by the bin's largest opacity, so
    a bin that is a deep window at some densities and a line at others is fitted to the line:
    the window comes out too opaque by up to decades, and the Rosseland mean (a harmonic mean,
    ruled by the windows) with it. Here the stage spectra minimise
    sum_rho [ln(sum_q x_q A_q + cont) - ln kappa]^2 + linear_weight sum_rho [(model - kappa) / s]^2
    instead, s the bin's largest known opacity (the second term keeps the peaks, which rule the
    RMSE and the Planck mean, as well fitted as by the linear fit), from the linear solution (negative
    or tiny coefficients start at `rel_floor` x the bin's smallest known opacity, where their
    Jacobian is still non-zero). Two guards keep stages the row's densities hardly see (edge
    densities held out, a stage whose fraction is tiny at every fitted density) from drifting:
    a weak pull `anchor` x sum_q (ln A_q - ln A_q,start)^2 towards the start, and the bound
    x_q A_q <= bound_factor x kappa at every fitted density (a stage cannot absorb more than the
    total; the factor leaves room for the fractions' own error). Each
    bin is an independent S-parameter problem; a step is kept only if it lowers that bin's
    misfit.

    Args: x: (nR, S) stage fractions; cont: (nR, nE) ff + es [cm^2/g]; kappa: (nR, nE)
      [cm^2/g]; mask: (nR,) 1 at the densities fitted; a0: (S, nE) linear solution [cm^2/g];
      steps: LM iterations; linear_weight: weight of the scaled linear misfit (0: log only).
    Returns: (S, nE) ln A [ln cm^2/g].
    """
    tiny = jnp.asarray(1e-37, kappa.dtype)
    w = mask[:, None] * (kappa > tiny)                                  # (nR, nE)
    y = jnp.log(jnp.maximum(kappa, tiny))
    kmin = jnp.min(jnp.where(w > 0, kappa, jnp.inf), axis=0)            # (nE,)
    kmin = jnp.where(jnp.isfinite(kmin), kmin, tiny)
    log_x = jnp.log(jnp.maximum(x, 1e-38))
    log_c = jnp.log(jnp.maximum(cont, tiny))
    # ln A_q <= min over fitted densities of ln(bound_factor kappa / x_q): (S, nE).
    bound = jnp.min(jnp.where(mask[:, None, None] > 0,
                              np.log(bound_factor) + y[:, None, :] - log_x[:, :, None], np.inf),
                    axis=0)
    bound = jnp.minimum(bound, 80.0)
    lo = np.log(1e-300)
    u0 = jnp.clip(jnp.log(jnp.maximum(a0, jnp.maximum(rel_floor * kmin, tiny)[None, :])), lo,
                  bound)
    u = u0
    s = jnp.maximum(jnp.max(kappa * mask[:, None], axis=0), tiny)       # (nE,)
    sw = np.sqrt(linear_weight)

    def misfit(u):
        terms = jnp.concatenate([log_x[:, :, None] + u[None], log_c[:, None, :]], axis=1)
        p = jax.nn.logsumexp(terms, axis=1)                             # (nR, nE)
        lin = sw * (jnp.exp(p) - kappa) / s
        return p, (jnp.sum(w * (p - y) ** 2 + mask[:, None] * lin ** 2, axis=0)
                   + anchor * jnp.sum((u - u0) ** 2, axis=0))

    def body(carry, _):
        u, lam = carry
        p, f0 = misfit(u)
        jac = jnp.exp(log_x[:, :, None] + u[None] - p[:, None, :])     # (nR, S, nE) d ln p / d u
        jac_lin = sw * jnp.exp(log_x[:, :, None] + u[None]) / s         # d lin / d u
        jw = jac * w[:, None, :]
        jl = jac_lin * mask[:, None, None]
        lin = sw * (jnp.exp(p) - kappa) / s
        g = (jnp.einsum("rse,re->es", jw, p - y) + jnp.einsum("rse,re->es", jl, lin)
             + anchor * (u - u0).T)                                     # (nE, S)
        h = (jnp.einsum("rse,rte->est", jw, jac) + jnp.einsum("rse,rte->est", jl, jac_lin)
             + anchor * jnp.eye(x.shape[1]))
        d = jnp.diagonal(h, axis1=1, axis2=2)
        a = h + (lam[:, None, None] * d[:, :, None]) * jnp.eye(x.shape[1])
        step = -jnp.linalg.solve(a, g[..., None])[..., 0].T             # (S, nE)
        un = jnp.clip(u + jnp.clip(step, -20.0, 20.0), lo, bound)
        _, f1 = misfit(un)
        ok = f1 < f0
        return (jnp.where(ok[None], un, u), jnp.where(ok, lam * 0.3, lam * 10.0)), None

    lam0 = jnp.full(kappa.shape[-1], 1e-2, kappa.dtype)
    (u, _), _ = jax.lax.scan(body, (u, lam0), None, length=int(steps))
    return u


def row_loss(consts, spec, params, log10_t, log10_rho, kappa, scale, fit_mask, score_mask):
    """Scaled squared misfit at the `score_mask` densities of a row whose stage spectra were
    fitted on the `fit_mask` densities (`row_fit`); equal masks give the training misfit,
    disjoint ones a validation error. Returns a scalar (mean over scored values)."""
    a, x, cont = row_fit(consts, spec, params, log10_t, log10_rho, kappa, scale, fit_mask)
    r = (kappa - cont - x @ a) / scale * score_mask[:, None]
    return jnp.sum(r ** 2) / (jnp.maximum(jnp.sum(score_mask), 1.0) * kappa.shape[-1])


def point(params, consts: ElementConsts, spec: StageBasisSpec, log10_t, log10_rho):
    """Model at one (log10 T [eV], log10 rho [g/cm^3]) of one element.

    Returns a dict: 'log_kappa' (nE,) ln kappa [ln cm^2/g]; 'log_x' (n_stages,) ln stage fractions
    of the window; 'log_zbar' (); 'log_ne' () ln n_e [ln cm^-3].
    """
    knots = jnp.asarray(spec.knots_log10_t, jnp.result_type(log10_t, jnp.float32))
    interp = lambda v: interp_values(knots, consts.knot_mask, log10_t, v)
    log_x, log_cont, log_zbar, log_ne = ionization_and_continuum(
        consts, spec, log10_t, log10_rho, interp(params["dphi"]), params["log_s_ff"],
        params["log_s_es"])
    log_a = interp(params["log_a"].transpose(0, 2, 1))         # (S, nE)
    log_bbbf = jax.nn.logsumexp(log_x[:, None] + log_a, axis=0)
    log_k = jnp.logaddexp(log_bbbf, log_cont)
    return {"log_kappa": log_k, "log_x": log_x, "log_zbar": log_zbar, "log_ne": log_ne}


def log_kappa(params, consts, spec, log10_t, log10_rho):
    """ln kappa [ln cm^2/g] at N points of one element: log10_t, log10_rho (N,) -> (N, nE)."""
    f = lambda lt, lr: point(params, consts, spec, lt, lr)["log_kappa"]
    return jax.vmap(f)(log10_t, log10_rho)


def smoothness_penalty(values, knots_log10_t, knot_mask):
    """Mean squared second divided difference in log10 T over consecutive valid knots.

    Args: values: (..., K) knot values; knots_log10_t: (K,); knot_mask: (K,) bool.
    Returns: scalar (0 where fewer than three consecutive knots are valid).
    """
    x = jnp.asarray(knots_log10_t, jnp.float32)
    s = (values[..., 1:] - values[..., :-1]) / (x[1:] - x[:-1])
    d2 = s[..., 1:] - s[..., :-1]
    ok = (knot_mask[2:] & knot_mask[1:-1] & knot_mask[:-2]).astype(jnp.float32)
    n = jnp.sum(ok) * int(np.prod(values.shape[:-1]))
    return jnp.sum(d2 ** 2 * ok) / jnp.maximum(n, 1.0)


def element_consts(z: int, n_stages: int, q_lo: int, knot_mask) -> ElementConsts:
    """Constants of element `z` (numpy, float32) for a window of `n_stages` charges from q_lo."""
    i = _el.element_index(z)
    q = q_lo + np.arange(n_stages)
    b = q_lo - 1 + np.arange(n_stages + 1)
    return ElementConsts(
        q_lo=np.int32(q_lo), atomic_weight=np.float32(_el.ATOMIC_WEIGHTS[i]),
        ionization_energies_ev=_el.IONIZATION_ENERGIES_EV[i].astype(np.float32),
        knot_mask=np.asarray(knot_mask, bool), stage_mask=q < _el.MAX_STAGES,
        boundary_mask=(b >= 0) & (b < N_BOUNDARIES))


def stack_consts(consts) -> ElementConsts:
    """Stack a list of ElementConsts along a new leading entity axis."""
    return ElementConsts(*(np.stack(f) for f in zip(*consts)))


# --------------------------------------------------------------------------------------------
# Fast inference: everything that depends on T alone tabulated once on a fine log10 T grid.
class FastTables(NamedTuple):
    """One element's T-only parts of `point` on a uniform log10 T grid of G points.

    log10_t0: () first grid point [log10 eV]; inv_step: () 1 / spacing [1/dex] (0 when the
    element has a single valid knot); log_a: (G, n_stages, nE) ln A [ln cm^2/g], the PCHIP
    of the knots at the grid points; dphi: (G, n_stages + 1) boundary corrections [ln cm^-3];
    log_ff_t: (G, nE) the T-only terms of ln free-free [ln(cm^2/g / cm^-3)], learned scale
    included; log_es_t: () the constant terms of ln Thomson [ln cm^2/g].
    """

    log10_t0: jax.Array
    inv_step: jax.Array
    log_a: jax.Array
    dphi: jax.Array
    log_ff_t: jax.Array
    log_es_t: jax.Array


def _log_ff_t(consts, spec, log10_t, log_s_ff):
    """Terms of ln free-free (`ionization_and_continuum`) that depend on T only, (nE,)."""
    edges = jnp.asarray(spec.energy_edges_ev, jnp.float32)
    t = 10.0 ** log10_t
    log_mass = jnp.log(consts.atomic_weight * C.ATOMIC_MASS_UNIT_G)
    return (np.log(C.KRAMERS_FF_CGS) - log_mass - 0.5 * jnp.log(t / C.K_BOLTZMANN_EV_K)
            + 3.0 * np.log(C.H_PLANCK_EV_S) + _log_kernel_bin_mean(edges, t) + log_s_ff)


def tabulate(params, consts: ElementConsts, spec: StageBasisSpec,
             points_per_interval: int = 64) -> FastTables:
    """`FastTables` of one element (unstacked params/consts, numpy knot mask).

    The grid spans the element's valid knots with `points_per_interval` cells per knot
    interval (G = (n_valid - 1) * points_per_interval + 1); outside it `point` clamps to the
    end knots, and `fast_point` clamps to the end grid points, which hold the same values.
    Linear interpolation of the tables differs from the PCHIP by <= h^2 max|f''| / 8 per cell
    of width h, so halving h quarters the difference.
    """
    if int(points_per_interval) < 1:
        raise ValueError(f"points_per_interval={points_per_interval}: must be >= 1")
    knots_np = np.asarray(spec.knots_log10_t, np.float64)
    valid = knots_np[np.asarray(consts.knot_mask, bool)]
    if valid.size == 0:
        raise ValueError("the element has no valid temperature knots")
    lo, hi = float(valid.min()), float(valid.max())
    n = max(2, (valid.size - 1) * int(points_per_interval) + 1)
    grid = np.linspace(lo, hi, n)
    knots = jnp.asarray(spec.knots_log10_t, jnp.float32)
    mask = jnp.asarray(consts.knot_mask)
    log_a_kt = jnp.asarray(params["log_a"]).transpose(0, 2, 1)          # (S, nE, K)

    def one(x):
        interp = lambda v: interp_values(knots, mask, x, v)
        return (interp(log_a_kt), interp(jnp.asarray(params["dphi"])),
                _log_ff_t(consts, spec, x, params["log_s_ff"]))

    log_a, dphi, log_ff_t = jax.jit(jax.vmap(one))(jnp.asarray(grid, jnp.float32))
    log_mass = jnp.log(consts.atomic_weight * C.ATOMIC_MASS_UNIT_G)
    return FastTables(
        log10_t0=jnp.float32(lo), inv_step=jnp.float32((n - 1) / (hi - lo) if hi > lo else 0.0),
        log_a=log_a, dphi=dphi, log_ff_t=log_ff_t,
        log_es_t=np.log(C.THOMSON_CM2) - log_mass + params["log_s_es"])


def fast_point(tables: FastTables, consts: ElementConsts, spec: StageBasisSpec, log10_t,
               log10_rho, bisection_steps: int = FAST_BISECTION_STEPS):
    """`point`'s ln kappa from `tabulate`d tables at one (log10 T [eV], log10 rho [g/cm^3]).

    Per query: a linear interpolation in log10 T between two grid rows (no knot search, no
    cubic, no per-bin free-free kernel), the corrected Saha solve with `bisection_steps`
    halvings before the same Newton polish, and the stage mixing. Returns (nE,) ln kappa
    [ln cm^2/g].
    """
    g = tables.log_a.shape[0]
    s = jnp.clip((log10_t - tables.log10_t0) * tables.inv_step, 0.0, g - 1.0)
    i = jnp.minimum(jnp.floor(s).astype(jnp.int32), g - 2)
    w = s - i
    lerp = lambda tab: tab[i] + w * (tab[i + 1] - tab[i])
    log_x, res = corrected_ionization(consts, spec, log10_t, log10_rho, lerp(tables.dphi),
                                      bisection_steps)
    log_f = res.log_fractions[0]
    charges = jnp.arange(_el.MAX_STAGES, dtype=log_f.dtype)
    log_q2 = jnp.where(charges > 0, 2.0 * jnp.log(jnp.maximum(charges, 1.0)), NEG)
    log_ff = lerp(tables.log_ff_t) + res.log_ne[()] + jax.nn.logsumexp(log_f + log_q2)
    log_cont = jnp.logaddexp(log_ff, tables.log_es_t + res.log_zbar[0])
    log_bbbf = jax.nn.logsumexp(log_x[:, None] + lerp(tables.log_a), axis=0)
    return jnp.logaddexp(log_bbbf, log_cont)
