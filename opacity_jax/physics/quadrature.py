"""Gauss-Legendre quadrature over photon-energy intervals, performed in u = ln E.

Opacity spectra live on log-spaced bins and the integrands used with them (Planck kernels, power
laws) vary roughly exponentially in E, so the natural variable is u = ln E: a bin is an interval
[ln a, ln b], dE = E du, and an n-node Gauss-Legendre rule on that interval is exact for
integrands E f(E) that are polynomials of degree <= 2n - 1 in ln E (e.g. f = 1/E exactly).

Two entry points:
  * `log_bin_integral(log_f, edges)`: log of the integral over every bin of a grid, for integrands
    given by their logarithm. The per-node terms are combined with logsumexp, so integrands like
    exp(-1000) (the Wien tail at T = 0.01 eV) neither underflow nor lose relative accuracy.
  * `bin_integral(f, lo, hi)`: the plain integral over arbitrary (broadcast) intervals.

Both are jit- and vmap-able and compute in the dtype of their inputs (float32 or float64).
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

MAX_NODES = 32
# Nodes t_j in (-1, 1) and weights w_j on [-1, 1], float64, tabulated once so that jit traces
# only see constants.
_LEGGAUSS = {n: tuple(np.asarray(a, dtype=np.float64) for a in np.polynomial.legendre.leggauss(n))
             for n in range(1, MAX_NODES + 1)}


def gauss_legendre(n_nodes: int) -> tuple:
    """Float64 Gauss-Legendre rule on [-1, 1]: ((n,) nodes, (n,) weights). n in 1..MAX_NODES."""
    n = int(n_nodes)
    if n not in _LEGGAUSS:
        raise ValueError(f"n_nodes must be an integer in 1..{MAX_NODES}, got {n_nodes}")
    return _LEGGAUSS[n]


def _float_dtype(*xs):
    dt = jnp.result_type(*xs)
    if not jnp.issubdtype(dt, jnp.floating):
        dt = jnp.result_type(float)
    return dt


def _log_geometry_numpy(edges: np.ndarray, n_nodes: int, dtype):
    """Node energies and log(weight * Jacobian) from concrete edges, computed in float64.

    Done in float64 even for float32 outputs because on a 15000-bin grid the bin width in ln E is
    3e-4, and ln(b) - ln(a) in float32 would carry a ~1e-3 relative error in every weight.
    """
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim != 1 or e.size < 2:
        raise ValueError(f"edges must be a 1-D array with >= 2 entries, got shape {e.shape}")
    if not np.all(np.isfinite(e)) or np.any(e <= 0) or np.any(np.diff(e) <= 0):
        raise ValueError("edges must be finite, positive and strictly increasing [eV]")
    t, w = gauss_legendre(n_nodes)
    lo = e[:-1, None]
    half = 0.5 * np.log(e[1:] / e[:-1])[:, None]
    shift = half * (1.0 + t)                      # u_node - ln(lo), in [0, 2 half]
    energy = lo * np.exp(shift)
    log_jac = np.log(half) + np.log(w) + np.log(lo) + shift
    return jnp.asarray(energy, dtype=dtype), jnp.asarray(log_jac, dtype=dtype)


def _geometry_jnp(lo, hi, n_nodes: int, dtype):
    """(..., n) node energies, (..., 1) half-widths in ln E and (n,) nodes/weights, traced-safe."""
    t, w = gauss_legendre(n_nodes)
    lo = jnp.asarray(lo, dtype=dtype)[..., None]
    hi = jnp.asarray(hi, dtype=dtype)[..., None]
    # log1p of the relative width instead of log(hi) - log(lo): for narrow bins the difference of
    # two logs cancels catastrophically in float32, while hi - lo is exact (Sterbenz).
    half = 0.5 * jnp.log1p((hi - lo) / lo)
    shift = half * (1.0 + jnp.asarray(t, dtype=dtype))
    energy = lo * jnp.exp(shift)
    return energy, half, shift, jnp.asarray(w, dtype=dtype)


def log_bin_integral(log_f: Callable, edges_ev, n_nodes: int = 4, dtype: Optional[object] = None):
    """Log of the integral of f = exp(log_f) over every energy bin, by Gauss-Legendre in ln E.

    Computes, for k = 0..nE-1,
        log  int_{edges[k]}^{edges[k+1]} f(E) dE
      = logsumexp_j [ log_f(E_kj) + ln E_kj + ln(h_k w_j) ],
    with E_kj = exp(u_kj) the nodes mapped onto [ln edges[k], ln edges[k+1]] and h_k its half-width.

    Args:
      log_f: callable taking E of shape (nE, n_nodes) [eV] and returning log f(E) with shape
        (..., nE, n_nodes) (any leading batch dims broadcast through, e.g. a temperature axis).
        -inf entries (f = 0) are allowed.
      edges_ev: (nE + 1,) strictly increasing positive bin edges [eV]. A concrete numpy array/list
        gets its node geometry in float64 (then cast); a jax array (also traced) is handled in its
        own dtype using a cancellation-free form.
      n_nodes: Gauss-Legendre nodes per bin (static), 1..MAX_NODES.
      dtype: compute dtype; default the dtype of `edges_ev` (canonicalised by JAX, so float64
        edges give float32 unless x64 is enabled).

    Returns:
      (..., nE) log of the per-bin integrals, in log([f] eV).
    """
    energy, log_jac = log_bin_geometry(edges_ev, n_nodes, dtype)
    terms = jnp.asarray(log_f(energy)) + log_jac
    return jax.nn.logsumexp(terms, axis=-1)


def log_bin_geometry(edges_ev, n_nodes: int = 4, dtype: Optional[object] = None) -> tuple:
    """Node energies and log quadrature weights used by `log_bin_integral`.

    log int_bin_k f dE = logsumexp_j [log f(energy[k, j]) + log_jac[k, j]]. Exposed so callers can
    hand the geometry to their own jitted kernels as plain arrays (edges need not be hashable).

    Args:
      edges_ev: (nE + 1,) increasing positive edges [eV]; numpy/list (float64 geometry, then cast)
        or jax array (possibly traced).
      n_nodes: Gauss-Legendre nodes per bin.
      dtype: output dtype, default that of edges_ev as canonicalised by JAX.

    Returns:
      (energy [eV], log_jac [log eV]), both (nE, n_nodes) jax arrays of `dtype`.
    """
    if dtype is None:
        dtype = _float_dtype(jnp.asarray(edges_ev))
    if isinstance(edges_ev, jax.Array):
        edges = edges_ev.astype(dtype)
        energy, half, shift, w = _geometry_jnp(edges[:-1], edges[1:], n_nodes, dtype)
        log_jac = jnp.log(half) + jnp.log(w) + jnp.log(edges[:-1])[:, None] + shift
        return energy, log_jac
    return _log_geometry_numpy(edges_ev, n_nodes, dtype)


def bin_integral(f: Callable, lo, hi, n_nodes: int = 4):
    """Integral of f(E) dE over [lo, hi] by n-node Gauss-Legendre in ln E.

    Args:
      f: callable taking E of shape (*S, n_nodes) [eV], S = broadcast shape of lo and hi, and
        returning f(E) with shape (..., *S, n_nodes) (leading batch dims allowed).
      lo, hi: arrays broadcastable to S, positive [eV]; hi < lo gives the signed (negative)
        integral.
      n_nodes: Gauss-Legendre nodes per interval (static), 1..MAX_NODES.

    Returns:
      (..., *S) integrals in [f] eV, in the floating dtype of (lo, hi).
    """
    dtype = _float_dtype(jnp.asarray(lo), jnp.asarray(hi))
    lo, hi = jnp.broadcast_arrays(jnp.asarray(lo, dtype=dtype), jnp.asarray(hi, dtype=dtype))
    energy, half, _, w = _geometry_jnp(lo, hi, n_nodes, dtype)
    return jnp.sum(jnp.asarray(f(energy)) * (half * w * energy), axis=-1)
