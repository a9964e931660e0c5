"""Embedded LTE opacity generator: kappa(E; Z, T, rho) on the NIST-LANL grid or anywhere inside it.

What it computes (cm^2/g, bin averages on log-spaced photon-energy bins, 0.1-10 eV):
  * bound-bound: line-binned opacity from the model line lists of `opacity_jax.data.atomic`
    with Saha-Boltzmann populations and stimulated emission;
  * bound-free: Kramers cross-sections from every level of every kept ion;
  * free-free: Kramers bremsstrahlung; electron scattering: Thomson;
  * Zbar and the charge-state fractions from `opacity_jax.physics.saha` (the same solver the
    physics-informed losses use), partition functions from the same model levels as the lines.

Continuum lowering (`GeneratorConfig.continuum_lowering`, default "none" = no lowering, the
datasets of every earlier version bit for bit). With "debye": the Debye-Hueckel depression
dI_q = (q + 1) e^2 / lambda_D, lambda_D = sqrt(kT / (4 pi e^2 n_e)) (free electrons only), enters
  * the Saha balance self-consistently (`saha.solve_debye_lowered`: fixed-point passes of the solve
    with I_q - dI_q(n_e)), partition functions unchanged (every model level kept);
  * the bound-free thresholds: E_th = I_q - E_l - dI_q, every edge of stage q moves down by the
    same dI_q, and the cross-section is the Kramers one at the lowered threshold; a level with
    E_l >= I_q - dI_q lies in the lowered continuum and is dropped from bound-free (it keeps its
    population in the partition function and its lines).
Bound-bound stays per temperature (shared across densities); bound-free then depends on density
and is computed per (T, rho) point (vectorised over levels and points).

These are *line-binned* opacities (each line's integrated strength spread over its bin), the
quantity tabulated by the NIST-LANL database at its native resolution. They are not the Sobolev
*expansion* opacities of the Japan-Lithuania (JLODK) tables, which weight lines by
(1 - e^{-tau_Sobolev}) and are orders of magnitude lower for the same plasma.

Line strengths depend on rho only through the ion fractions, so per-ion, per-T binned spectra
are computed once per temperature and combined with the Saha fractions for every density.
All assembly is float64 (numpy + JAX in x64 mode); results are stored as float32.

Determinism: every random draw comes from numpy Generators seeded by (seed, Z, charge); the
arithmetic is fixed-order, so a given version and seed reproduce spectra bit for bit on one
platform.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

import opacity_jax
from opacity_jax import _compat
from opacity_jax.data import atomic, grid
from opacity_jax.data.dataset import Dataset
from opacity_jax.errors import DomainError
from opacity_jax.physics import constants as C
from opacity_jax.physics import elements as _el
from opacity_jax.physics import opacity as phys
from opacity_jax.physics import saha

GENERATOR_VERSION = "1"
CONTINUUM_LOWERING = ("none", "debye")   # GeneratorConfig.continuum_lowering choices


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
    """Knobs of the embedded generator.

    seed: seeds the model atomic structure (levels, lines, gf).
    line_cap / level_cap: caps per ion (defaults give >= 1e5 lines for the richest ions;
      small values give a reduced line list for quick tests).
    min_fraction: an ion contributes lines and bound-free opacity if its charge fraction exceeds
      this anywhere on the NIST-LANL (T, rho) grid (1e-6).
    continuum_lowering: "none" (default) or "debye" (module docstring).
    """

    seed: int = 0
    line_cap: int = atomic.LINE_CAP
    level_cap: int = atomic.LEVEL_CAP
    min_fraction: float = 1e-6
    continuum_lowering: str = "none"

    def __post_init__(self):
        check_continuum_lowering(self.continuum_lowering, "GeneratorConfig.continuum_lowering")


def check_continuum_lowering(value, field: str) -> str:
    """`value` if it is a known continuum-lowering option, else ValueError naming `field`."""
    if value not in CONTINUUM_LOWERING:
        raise ValueError(f"{field} = {value!r} is not a continuum-lowering option; choose one of "
                         f"{', '.join(CONTINUUM_LOWERING)}")
    return value


def _check_domain(temperature_ev, density_gcc):
    t = np.asarray(temperature_ev, np.float64)
    r = np.asarray(density_gcc, np.float64)
    tol = 1e-9
    if np.any(~np.isfinite(t)) or t.min() < grid.T_MIN_EV * (1 - tol) or t.max() > grid.T_MAX_EV * (1 + tol):
        raise DomainError(f"temperature_ev must lie in [{grid.T_MIN_EV}, {grid.T_MAX_EV}] eV, "
                          f"got range [{t.min():.4g}, {t.max():.4g}]")
    if np.any(~np.isfinite(r)) or r.min() < grid.RHO_MIN_GCC * (1 - tol) or r.max() > grid.RHO_MAX_GCC * (1 + tol):
        raise DomainError(f"density_gcc must lie in [{grid.RHO_MIN_GCC:g}, {grid.RHO_MAX_GCC:g}] "
                          f"g/cm^3, got range [{r.min():.4g}, {r.max():.4g}]")


def _check_edges(edges):
    e = np.asarray(edges, np.float64)
    if e.ndim != 1 or e.size < 2 or np.any(np.diff(e) <= 0) or e[0] <= 0:
        raise ValueError("energy_edges_ev must be a strictly increasing positive 1-D array")
    if e[0] < grid.E_MIN_EV * (1 - 1e-12) or e[-1] > grid.E_MAX_EV * (1 + 1e-12):
        raise DomainError(f"energy edges must lie in [{grid.E_MIN_EV}, {grid.E_MAX_EV}] eV, "
                          f"got [{e[0]:.4g}, {e[-1]:.4g}]")
    return e


@functools.lru_cache(maxsize=8)
def _saha_tables_cached(seed: int, level_cap: int):
    return atomic.saha_tables(None, seed, level_cap)


@jax.jit
def _solve_points(atomic_weight, ionization_energies_ev, level_energy_ev, level_log_g, t, r):
    solve = lambda tt, rr: saha.solve_element(tt, rr, atomic_weight, ionization_energies_ev,
                                              level_energy_ev, level_log_g)
    return jax.vmap(solve)(t, r)


@jax.jit
def _solve_points_debye(atomic_weight, ionization_energies_ev, level_energy_ev, level_log_g, t, r):
    def solve(tt, rr):
        one = lambda i_q: saha.solve_element(tt, rr, atomic_weight, i_q, level_energy_ev,
                                             level_log_g)
        return saha.solve_debye_lowered(one, tt, ionization_energies_ev)
    return jax.vmap(solve)(t, r)


def _saha_grid(tables, idx, temperature_ev, density_gcc, lowering: str = "none"):
    """Saha on paired (T, rho) points: (N,) each -> fractions (N, nS), zbar, log_zbar, log_ne (N,),
    and the ionization-potential depression dI (N, nS - 1) [eV] (None without lowering)."""
    with _compat.enable_x64():
        args = [jnp.asarray(tables[k][idx], jnp.float64) for k in (
            "atomic_weights", "ionization_energies_ev", "level_energy_ev", "level_log_g")]
        args += [jnp.asarray(temperature_ev, jnp.float64), jnp.asarray(density_gcc, jnp.float64)]
        d_i = None
        if lowering == "none":
            res = _solve_points(*args)
        else:
            res, d_i, step = _solve_points_debye(*args)
            # A fixed-point pass that still moves ln n_e is a bug, not a property of the grid.
            if float(jnp.max(step)) > 1e-6:
                raise RuntimeError(f"Debye-lowered Saha solve not converged: last |d ln n_e| = "
                                   f"{float(jnp.max(step)):.3g}")
            d_i = np.asarray(d_i)
        return (np.asarray(res.fractions), np.asarray(res.zbar), np.asarray(res.log_zbar),
                np.asarray(res.log_ne), d_i)


class OpacityGenerator:
    """LTE opacity oracle for one or more elements (see module docstring).

    Example:
      gen = OpacityGenerator()
      out = gen.grid_spectra(60, grid.temperatures_ev(), grid.densities_gcc(),
                             grid.energy_edges_ev(200))
      out["kappa"].shape == (27, 17, 200)   # cm^2/g
    """

    def __init__(self, config: GeneratorConfig = GeneratorConfig()):
        self.config = config
        self._tables = _saha_tables_cached(config.seed, config.level_cap)
        self._kept = {}

    # -- ionization -----------------------------------------------------------------------------
    def _index(self, z) -> int:
        return _el.element_index(z)

    def ionization(self, z, temperature_ev, density_gcc):
        """LTE ionization at paired points.

        Args: z (atomic number or symbol); temperature_ev, density_gcc: (N,) [eV], [g/cm^3].
        Returns: dict 'fractions' (N, 21), 'zbar' (N,), 'log_zbar' (N,), 'log_ne' (N,) [ln cm^-3],
          'lowering_ev' (N, 20) the ionization-potential depression dI_q [eV] (zeros without
          continuum lowering).
        """
        t = np.atleast_1d(np.asarray(temperature_ev, np.float64))
        r = np.atleast_1d(np.asarray(density_gcc, np.float64))
        _check_domain(t, r)
        f, zb, lzb, lne, d_i = _saha_grid(self._tables, self._index(z), *np.broadcast_arrays(t, r),
                                          lowering=self.config.continuum_lowering)
        if d_i is None:
            d_i = np.zeros((f.shape[0], f.shape[1] - 1))
        return {"fractions": f, "zbar": zb, "log_zbar": lzb, "log_ne": lne, "lowering_ev": d_i}

    def kept_stages(self, z) -> np.ndarray:
        """Charges whose LTE fraction exceeds config.min_fraction somewhere on the NIST-LANL grid."""
        idx = self._index(z)
        if idx not in self._kept:
            tt, rr = np.meshgrid(grid.temperatures_ev(), grid.densities_gcc(), indexing="ij")
            f = _saha_grid(self._tables, idx, tt.ravel(), rr.ravel(),
                           lowering=self.config.continuum_lowering)[0]
            kept = np.nonzero(f.max(axis=0) > self.config.min_fraction)[0]
            if kept.max() >= f.shape[1] - 1:
                raise RuntimeError(f"Z={z}: the highest tabulated charge state is populated; "
                                   "the ionization-energy table is too short for this grid")
            self._kept[idx] = kept
        return self._kept[idx]

    # -- per-ion spectra --------------------------------------------------------------------------
    def _ion(self, z, q) -> atomic.IonStructure:
        c = self.config
        return atomic.ion_structure(int(_el.ATOMIC_NUMBERS[self._index(z)]), int(q), c.seed,
                                    c.level_cap, c.line_cap)

    def ion_spectra(self, z, q, temperature_ev, energy_edges_ev):
        """Per-ion bound-bound and bound-free cross-sections, bin-averaged.

        Args: z, q: element and charge; temperature_ev: (nT,) [eV]; energy_edges_ev: (nE+1,) [eV].
        Returns: (bb, bf), each (nT, nE) [cm^2 per ion].
        """
        ion = self._ion(z, q)
        t = np.asarray(temperature_ev, np.float64)[:, None]
        edges = np.asarray(energy_edges_ev, np.float64)
        n_t, n_e = t.shape[0], edges.size - 1
        width = np.diff(edges)
        e_lev = ion.level_energy_ev
        with np.errstate(under="ignore"):
            log_g = np.log(ion.level_g)
            # Same partition function as the Saha solver's (same levels), in numpy float64.
            a = log_g[None, :] - e_lev[None, :] / t
            a_max = a.max(axis=1, keepdims=True)
            log_u = a_max + np.log(np.exp(a - a_max).sum(axis=1, keepdims=True))
            # Bound-bound: every line into the bin holding its energy.
            e_line = ion.line_energy_ev
            k = np.searchsorted(edges, e_line, side="right") - 1
            inside = (k >= 0) & (k < n_e)
            s = np.asarray(phys.line_strength_cm2_ev(
                ion.line_gf[inside], e_lev[ion.line_lower[inside]], e_lev[ion.line_upper[inside]],
                t, log_u))
            flat = (np.arange(n_t)[:, None] * n_e + k[inside][None, :]).ravel()
            bb = np.bincount(flat, weights=s.ravel(), minlength=n_t * n_e).reshape(n_t, n_e) / width
            # Bound-free: S(E) = sum of w_l over thresholds below E (a step function), so a bin's
            # integral is S(a) Q(a, b) + sum over thresholds inside (a, b) of w_l Q(E_th, b),
            # with Q the integral of the Kramers kernel. Exact under rebinning.
            e_th = ion.ionization_energy_ev - e_lev
            order = np.argsort(e_th, kind="stable")
            e_th, lev = e_th[order], order
            sigma = phys.bf_threshold_xsec_cm2(e_th, float(q))
            pop = np.exp(np.log(ion.level_g[lev])[None, :] - e_lev[lev][None, :] / t - log_u)
            w = pop * sigma[None, :] * e_th[None, :] ** 3                       # (nT, nL)
            cum = np.concatenate([np.zeros((n_t, 1)), np.cumsum(w, axis=1)], axis=1)
            s_lo = cum[:, np.searchsorted(e_th, edges[:-1], side="right")]     # (nT, nE)
            q_bin = phys.kramers_kernel_integral(edges[None, :-1], edges[None, 1:], t)
            bf = s_lo * q_bin
            kb = np.searchsorted(edges, e_th, side="left") - 1
            sel = (kb >= 0) & (kb < n_e) & (e_th > edges[0])
            if np.any(sel):
                q_part = phys.kramers_kernel_integral(e_th[sel][None, :],
                                                      edges[kb[sel] + 1][None, :], t)
                flat = (np.arange(n_t)[:, None] * n_e + kb[sel][None, :]).ravel()
                bf += np.bincount(flat, weights=(w[:, sel] * q_part).ravel(),
                                  minlength=n_t * n_e).reshape(n_t, n_e)
            bf /= width
        return bb, bf

    def ion_bound_free(self, z, q, temperature_ev, lowering_ev, energy_edges_ev):
        """Per-ion bound-free cross-section with lowered thresholds, bin-averaged, per point.

        Thresholds E_th = I_q - E_l - dI (dI >= 0 per point); levels with E_th <= 0 are dissolved
        and left out; the Kramers cross-section is taken at the lowered threshold. With dI = 0
        this equals the bound-free part of `ion_spectra` (up to summation order).

        Args: z, q: element and charge; temperature_ev: (N,) [eV]; lowering_ev: (N,) dI of this
          stage [eV]; energy_edges_ev: (nE+1,) [eV].
        Returns: (N, nE) [cm^2 per ion].
        """
        ion = self._ion(z, q)
        t = np.asarray(temperature_ev, np.float64)
        d_i = np.asarray(lowering_ev, np.float64)
        edges = np.asarray(energy_edges_ev, np.float64)
        n_pts, n_e = t.size, edges.size - 1
        e_th0 = ion.ionization_energy_ev - ion.level_energy_ev
        order = np.argsort(e_th0, kind="stable")
        e_th0 = e_th0[order]
        # Levels whose threshold stays above the band at every point add nothing to any bin.
        n_keep = int(np.searchsorted(e_th0, edges[-1] + d_i.max(), side="right"))
        e_th0, lev = e_th0[:n_keep], order[:n_keep]
        t_unique, inv_t = np.unique(t, return_inverse=True)
        with np.errstate(under="ignore"):
            log_g = np.log(ion.level_g)
            a = log_g[None, :] - ion.level_energy_ev[None, :] / t_unique[:, None]
            a_max = a.max(axis=1, keepdims=True)
            log_u = a_max + np.log(np.exp(a - a_max).sum(axis=1, keepdims=True))
            pop = np.exp(a[:, lev] - log_u)[inv_t.ravel()]                      # (N, nL)
            e_th = e_th0[None, :] - d_i[:, None]                                  # (N, nL), sorted
            alive = e_th > 0.0
            e_safe = np.where(alive, e_th, 1.0)
            w = np.where(alive, pop * phys.bf_threshold_xsec_cm2(e_safe, float(q)) * e_safe**3, 0.0)
            cum = np.concatenate([np.zeros((n_pts, 1)), np.cumsum(w, axis=1)], axis=1)
            # Same step-function integral as `ion_spectra`: thresholds below a bin's lower edge
            # (E_th <= a <=> E_th0 <= a + dI) plus the partial integrals of thresholds inside it.
            below = np.searchsorted(e_th0, edges[None, :-1] + d_i[:, None], side="right")
            s_lo = np.take_along_axis(cum, below, axis=1)                          # (N, nE)
            tp = t[:, None]
            bf = s_lo * phys.kramers_kernel_integral(edges[None, :-1], edges[None, 1:], tp)
            kb = np.searchsorted(edges, e_th, side="left") - 1
            sel = alive & (kb >= 0) & (kb < n_e) & (e_th > edges[0])
            if np.any(sel):
                rows = np.nonzero(sel)[0]
                q_part = phys.kramers_kernel_integral(e_th[sel], edges[kb[sel] + 1], t[rows])
                bf += np.bincount(rows * n_e + kb[sel], weights=w[sel] * q_part,
                                  minlength=n_pts * n_e).reshape(n_pts, n_e)
            bf /= np.diff(edges)[None, :]
        return bf

    # -- assembly ------------------------------------------------------------------------------
    def _assemble(self, idx, t_unique, inv_t, fractions, log_ne, edges, mass_weight=1.0,
                  lowering_ev=None):
        """Components (N, nE) at N points whose temperatures are t_unique[inv_t]; with
        `lowering_ev` (N, nS - 1) [eV] the bound-free thresholds of stage q move down by
        lowering_ev[:, q] (`ion_bound_free`)."""
        z = int(_el.ATOMIC_NUMBERS[idx])
        a = float(_el.ATOMIC_WEIGHTS[idx])
        n_per_gram = 1.0 / (a * C.ATOMIC_MASS_UNIT_G)
        n_pts, n_e = fractions.shape[0], edges.size - 1
        bb = np.zeros((n_pts, n_e))
        bf = np.zeros((n_pts, n_e))
        for q in self.kept_stages(z):
            l_bb, l_bf = self.ion_spectra(z, q, t_unique, edges)
            bb += fractions[:, q:q + 1] * l_bb[inv_t]
            if lowering_ev is None:
                bf += fractions[:, q:q + 1] * l_bf[inv_t]
            else:
                bf += fractions[:, q:q + 1] * self.ion_bound_free(
                    z, q, t_unique[inv_t], lowering_ev[:, q], edges)
        bb *= n_per_gram
        bf *= n_per_gram
        charges = np.arange(fractions.shape[1], dtype=np.float64)
        t_pts = t_unique[inv_t][:, None]
        pref = phys.ff_prefactor_cm2_g_ev3(log_ne[:, None], (fractions * charges**2).sum(1)[:, None],
                                           a, t_pts)
        q_bin = phys.kramers_kernel_integral(edges[None, :-1], edges[None, 1:], t_pts)
        zbar = (fractions * charges).sum(1)
        es = np.broadcast_to(phys.thomson_opacity_cm2_g(zbar, a)[:, None], (n_pts, n_e))
        ff = pref * q_bin / np.diff(edges)[None, :]
        comps = {"bb": bb * mass_weight, "bf": bf * mass_weight, "ff": ff * mass_weight,
                 "es": np.array(es) * mass_weight}
        return comps

    def spectra(self, z, temperature_ev, density_gcc, energy_edges_ev):
        """Opacity at N paired (T, rho) points of one element (the off-grid oracle).

        Args:
          z: atomic number or symbol.
          temperature_ev: (N,) [eV] in [0.01, 5]; density_gcc: (N,) [g/cm^3] in [1e-20, 1e-4].
          energy_edges_ev: (nE + 1,) bin edges [eV] within [0.1, 10].
        Returns:
          dict: 'kappa' and components 'bb', 'bf', 'ff', 'es' (N, nE) float64 [cm^2/g];
          'zbar' (N,); 'fractions' (N, 21).
        Raises DomainError outside the grid's domain (no extrapolation).
        """
        t = np.atleast_1d(np.asarray(temperature_ev, np.float64))
        r = np.atleast_1d(np.asarray(density_gcc, np.float64))
        t, r = np.broadcast_arrays(t, r)
        _check_domain(t, r)
        edges = _check_edges(energy_edges_ev)
        idx = self._index(z)
        fractions, zbar, _, log_ne, d_i = _saha_grid(self._tables, idx, t, r,
                                                     lowering=self.config.continuum_lowering)
        t_unique, inv = np.unique(t, return_inverse=True)
        comps = self._assemble(idx, t_unique, inv.ravel(), fractions, log_ne, edges,
                               lowering_ev=d_i)
        out = dict(comps)
        out["kappa"] = comps["bb"] + comps["bf"] + comps["ff"] + comps["es"]
        out["zbar"], out["fractions"] = zbar, fractions
        return out

    def grid_spectra(self, z, temperature_ev, density_gcc, energy_edges_ev):
        """Opacity on the outer-product grid T x rho of one element.

        Returns the `spectra` dict reshaped to (nT, nR, nE) / (nT, nR) / (nT, nR, 21).
        """
        t = np.asarray(temperature_ev, np.float64)
        r = np.asarray(density_gcc, np.float64)
        tt, rr = np.meshgrid(t, r, indexing="ij")
        out = self.spectra(z, tt.ravel(), rr.ravel(), energy_edges_ev)
        return {k: v.reshape(t.size, r.size, *v.shape[1:]) for k, v in out.items()}

    def mixture_spectra(self, elements: Sequence, mass_fractions, temperature_ev, density_gcc,
                        energy_edges_ev):
        """Opacity of a mixture with one shared electron density, at N paired (T, rho) points.

        Args:
          elements: atomic numbers or symbols (nM,); mass_fractions: (nM,) (normalised here).
          temperature_ev, density_gcc: (N,); energy_edges_ev: (nE + 1,).
        Returns:
          dict 'kappa', 'bb', 'bf', 'ff', 'es' (N, nE) [cm^2 per gram of mixture], 'zbar' (N, nM)
          per element, 'log_ne' (N,).
        """
        t = np.atleast_1d(np.asarray(temperature_ev, np.float64))
        r = np.atleast_1d(np.asarray(density_gcc, np.float64))
        t, r = np.broadcast_arrays(t, r)
        _check_domain(t, r)
        edges = _check_edges(energy_edges_ev)
        idx = np.array([self._index(z) for z in elements])
        x = np.asarray(mass_fractions, np.float64)
        if x.shape != idx.shape or np.any(x < 0) or x.sum() <= 0:
            raise ValueError("mass_fractions must be non-negative, one per element, not all zero")
        x = x / x.sum()
        tab = {k: v[idx] for k, v in self._tables.items() if k != "atomic_numbers"}
        solve = lambda tt, rr: saha.solve_mixture(
            tt, rr, x, tab["atomic_weights"], tab["ionization_energies_ev"],
            tab["level_energy_ev"], tab["level_log_g"])
        d_i = None
        with _compat.enable_x64():
            if self.config.continuum_lowering == "none":
                res = jax.jit(jax.vmap(solve))(jnp.asarray(t), jnp.asarray(r))
            else:
                def lowered(tt, rr):
                    one = lambda i_q: saha.solve_mixture(
                        tt, rr, x, tab["atomic_weights"], i_q, tab["level_energy_ev"],
                        tab["level_log_g"])
                    return saha.solve_debye_lowered(one, tt, tab["ionization_energies_ev"])[:2]
                res, d_i = jax.jit(jax.vmap(lowered))(jnp.asarray(t), jnp.asarray(r))
                d_i = np.asarray(d_i)
            fr, zb, lne = np.asarray(res.fractions), np.asarray(res.zbar), np.asarray(res.log_ne)
        t_unique, inv = np.unique(t, return_inverse=True)
        total = None
        for m, i in enumerate(idx):
            # Per gram of mixture: element m contributes x_m times its per-gram-of-element opacity,
            # with its own fractions under the shared electron density.
            comps = self._assemble(int(i), t_unique, inv.ravel(), fr[:, m], lne, edges, x[m],
                                   lowering_ev=d_i)
            total = comps if total is None else {k: total[k] + comps[k] for k in total}
        total["kappa"] = total["bb"] + total["bf"] + total["ff"] + total["es"]
        total["zbar"], total["log_ne"] = zb, lne
        return total


def generate_dataset(elements: Optional[Sequence[int]] = None, n_energy: int = 200,
                     seed: int = 0, temperatures_ev=None, densities_gcc=None,
                     config: Optional[GeneratorConfig] = None,
                     progress: Optional[Callable[[int, int, str], None]] = None,
                     sink: Optional[Callable[[int, dict], None]] = None) -> Optional[Dataset]:
    """Generate the embedded dataset on the NIST-LANL grid (or a sub-grid).

    Args:
      elements: atomic numbers (default grid.DEFAULT_ELEMENTS, 28).
      n_energy: number of log-spaced energy bins over 0.1-10 eV (<= 15000 sensible).
      seed: structure seed (ignored if `config` is given).
      temperatures_ev / densities_gcc: axes (default 27 x 17 NIST-LANL axes).
      progress: optional callback(done, total, label) after each element.
      sink: optional callback(position, arrays) receiving each element's arrays instead of
        holding the whole grid in memory (full-resolution grids); then None is returned.
    Returns:
      Dataset with kappa and components (nZ, nT, nR, nE) float32 [cm^2/g], zbar, charge fractions
      truncated to the highest kept charge, and provenance.
    """
    cfg = config if config is not None else GeneratorConfig(seed=seed)
    zs = list(elements) if elements is not None else list(grid.DEFAULT_ELEMENTS)
    zs = [int(_el.ATOMIC_NUMBERS[_el.element_index(z)]) for z in zs]
    t = grid.temperatures_ev() if temperatures_ev is None else np.asarray(temperatures_ev, float)
    r = grid.densities_gcc() if densities_gcc is None else np.asarray(densities_gcc, float)
    edges = grid.energy_edges_ev(n_energy)
    gen = OpacityGenerator(cfg)
    n_q = 1 + max(int(gen.kept_stages(z).max()) for z in zs)
    per = []
    for i, z in enumerate(zs):
        out = gen.grid_spectra(z, t, r, edges)
        arrays = {k: out[k].astype(np.float32) for k in ("kappa", "bb", "bf", "ff", "es")}
        arrays["zbar"] = out["zbar"].astype(np.float32)
        arrays["charge_fractions"] = out["fractions"][..., :n_q].astype(np.float32)
        if sink is not None:
            sink(i, arrays)
        else:
            per.append(arrays)
        if progress is not None:
            progress(i + 1, len(zs), _el.SYMBOLS[_el.element_index(z)])
    provenance = {
        "source": "opacity_jax embedded LTE generator",
        "generator_version": GENERATOR_VERSION,
        "package_version": opacity_jax.__version__,
        "seed": cfg.seed, "line_cap": cfg.line_cap, "level_cap": cfg.level_cap,
        "min_fraction": cfg.min_fraction, "continuum_lowering": cfg.continuum_lowering,
        "quantity": "line-binned LTE monochromatic opacity (not Sobolev expansion opacity)",
    }
    if sink is not None:
        return None
    stack = lambda k: np.stack([p[k] for p in per])
    return Dataset(elements=np.asarray(zs), temperature_ev=t, density_gcc=r,
                   energy_edges_ev=edges, kappa=stack("kappa"),
                   components={c: stack(c) for c in ("bb", "bf", "ff", "es")},
                   zbar=stack("zbar"), charge_fractions=stack("charge_fractions"),
                   provenance=provenance)
