"""The Planck function, its temperature derivative, and band-limited Planck/Rosseland means.

Units: photon energy E and temperature kT are both in eV; x = E / kT. B_nu is per unit frequency,
erg s^-1 cm^-2 Hz^-1 sr^-1; dB_nu/dT is that per eV of temperature.

Band-limited normalisation
--------------------------
The opacity tables cover photon energies 0.1-10 eV only, while B_nu(T) over 0.01-5 eV peaks at
E = 2.82 kT (0.03-14 eV). The means computed here are therefore *band-limited*:

    kappa_P = sum_k kappa_k W_k / sum_k W_k,          W_k  = int_bin_k B_nu dE,
    1/kappa_R = sum_k W'_k / kappa_k / sum_k W'_k,    W'_k = int_bin_k dB_nu/dT dE,

i.e. the weights are normalised over the band, not over 0 < E < infinity. They equal the standard
(infinite-range) means only when the band contains almost all of B_nu and dB_nu/dT.
`band_fraction(T)` reports the fraction of int B_nu dnu and of int dB_nu/dT dnu that lies inside
the band (B / dB/dT: 18.1 % / 8.5 % at T = 5 eV, 0.96 % / 2.7 % at 0.01 eV, 99.96 % / 99.99 % at
0.5 eV), so users can judge how representative a band-limited mean is. At 5 eV most of the weight
lies above 10 eV; at 0.01 eV the band starts at x = 10, deep in the Wien tail, so the band-limited
means there are dominated by the few lowest-energy bins. Because only ratios of weights enter, the
weights are computed as logs of bin integrals of the dimensionless kernels x^3/(e^x-1) and
x^4 e^x/(e^x-1)^2 and normalised by subtracting their maximum (a softmax): at T = 0.01 eV x reaches
1000 and B_nu ~ e^-1000, which would underflow in any linear-space evaluation.

Every function is jit- and vmap-able and follows the floating dtype of its inputs.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from opacity_jax.physics import constants as _c
from opacity_jax.physics import quadrature as _quad

# 2 (E [eV] * EV_ERG)^3 / (h^2 c^2): B_nu prefactor per eV^3, from hnu = E and 2 h nu^3 / c^2.
# Folding h nu^3 into one number keeps float32 in range (nu^3 alone is ~1e46 at 10 eV).
_BNU_PREFACTOR = 2.0 * _c.EV_ERG**3 / (_c.H_PLANCK_ERG_S**2 * _c.C_LIGHT_CM_S**2)

ABSORPTION_COMPONENTS = ("bb", "bf", "ff")
SCATTERING_COMPONENTS = ("es",)
MEAN_KINDS = ("absorption", "total")


def _float_dtype(*xs):
    dt = jnp.result_type(*xs)
    if not jnp.issubdtype(dt, jnp.floating):
        dt = jnp.result_type(float)
    return dt


def _safe_x(energy_ev, temperature_ev):
    """x = E/kT, with a substitute where x is not positive and finite (clean values and grads)."""
    dtype = _float_dtype(energy_ev, temperature_ev)
    x = jnp.asarray(energy_ev, dtype=dtype) / jnp.asarray(temperature_ev, dtype=dtype)
    ok = (x > 0) & jnp.isfinite(x)
    return jnp.where(ok, x, 1.0), ok, dtype


@jax.jit
def planck_bnu(energy_ev, temperature_ev):
    """Planck function B_nu(T) = (2 h nu^3 / c^2) / (e^x - 1), x = E / kT.

    Evaluated as prefactor * (kT)^3 * [x e^{-x/3}]^2 * [x e^{-x/3} / (-expm1(-x))]: each factor is
    bounded for all x > 0, so the result is finite and >= 0 in float32 for any x (it underflows
    to 0 in the Wien tail instead of forming inf * 0). Returns 0 where x <= 0 or x = inf (E = 0 or
    T = 0 limits).

    Args:
      energy_ev: photon energy E [eV], any shape.
      temperature_ev: temperature kT [eV], broadcastable against energy_ev.

    Returns:
      B_nu in erg s^-1 cm^-2 Hz^-1 sr^-1, broadcast shape, floating dtype of the inputs.
    """
    x, ok, dtype = _safe_x(energy_ev, temperature_ev)
    t = jnp.asarray(temperature_ev, dtype=dtype)
    h3 = x * jnp.exp(-x / 3.0)
    kernel = h3 * h3 * (h3 / (-jnp.expm1(-x)))          # x^3 / (e^x - 1)
    return jnp.where(ok, _BNU_PREFACTOR * t**3 * kernel, 0.0).astype(dtype)


@jax.jit
def dplanck_dt(energy_ev, temperature_ev):
    """Temperature derivative dB_nu/dT of the Planck function.

    With B_nu = P E^3 / (e^x - 1) and x = E/kT: dB_nu/dT = P (kT)^2 x^4 e^x / (e^x - 1)^2
    = P (kT)^2 x^4 e^{-x} / expm1(-x)^2, evaluated as [x e^{-x/4}]^2 [x e^{-x/4} / expm1(-x)]^2
    so that no factor overflows. Returns 0 where x <= 0 or x = inf.

    Args:
      energy_ev: photon energy E [eV], any shape.
      temperature_ev: temperature kT [eV], broadcastable against energy_ev.

    Returns:
      dB_nu/dT in erg s^-1 cm^-2 Hz^-1 sr^-1 per eV of kT, broadcast shape.
    """
    x, ok, dtype = _safe_x(energy_ev, temperature_ev)
    t = jnp.asarray(temperature_ev, dtype=dtype)
    h4 = x * jnp.exp(-x / 4.0)
    r = h4 / jnp.expm1(-x)
    kernel = (h4 * h4) * (r * r)                         # x^4 e^x / (e^x - 1)^2
    return jnp.where(ok, _BNU_PREFACTOR * t**2 * kernel, 0.0).astype(dtype)


@jax.jit
def log_planck_kernel(x):
    """log[x^3 / (e^x - 1)] = 3 ln x - x - ln(1 - e^{-x}); stable for x in (1e-6, 1e4) and beyond.

    Args:
      x: E / kT (dimensionless, > 0), any shape.
    Returns:
      same shape, dimensionless log.
    """
    x = jnp.asarray(x, dtype=_float_dtype(x))
    return 3.0 * jnp.log(x) - x - jnp.log(-jnp.expm1(-x))


@jax.jit
def log_dplanck_kernel(x):
    """log[x^4 e^x / (e^x - 1)^2] = 4 ln x - x - 2 ln(1 - e^{-x}); stable for x in (1e-6, 1e4).

    Args:
      x: E / kT (dimensionless, > 0), any shape.
    Returns:
      same shape, dimensionless log.
    """
    x = jnp.asarray(x, dtype=_float_dtype(x))
    return 4.0 * jnp.log(x) - x - 2.0 * jnp.log(-jnp.expm1(-x))


@functools.partial(jax.jit, static_argnums=0)
def _log_weights_core(log_kernel, energy, log_jac, t):
    # Jitted on arrays only (the geometry is precomputed), so eager callers compile once per
    # shape instead of op by op.
    terms = log_kernel(energy / t[..., None, None]) + log_jac
    return jax.nn.logsumexp(terms, axis=-1) - jnp.log(t)[..., None]


def _log_bin_weights(log_kernel, energy_edges_ev, temperature_ev, n_nodes):
    """(..., nE) log of int_bin kernel(E/kT) dE / kT (x-units), T of shape (...)."""
    dtype = _float_dtype(temperature_ev)
    t = jnp.asarray(temperature_ev, dtype=dtype)
    energy, log_jac = _quad.log_bin_geometry(energy_edges_ev, n_nodes=n_nodes, dtype=dtype)
    return _log_weights_core(log_kernel, energy, log_jac, t)


def planck_weights(energy_edges_ev, temperature_ev, n_nodes: int = 4):
    """Normalised band-limited Planck weights W_k / sum W, W_k = int_bin_k B_nu(T) dE.

    Args:
      energy_edges_ev: (nE + 1,) increasing bin edges [eV].
      temperature_ev: (...) temperatures kT [eV].
      n_nodes: Gauss-Legendre nodes per bin.

    Returns:
      (..., nE) dimensionless weights summing to 1 over the last axis (dtype of temperature_ev,
      float32 for Python/integer input unless x64 is on).
    """
    return jax.nn.softmax(_log_bin_weights(log_planck_kernel, energy_edges_ev, temperature_ev,
                                           n_nodes), axis=-1)


def rosseland_weights(energy_edges_ev, temperature_ev, n_nodes: int = 4):
    """Normalised band-limited Rosseland weights W'_k / sum W', W'_k = int_bin_k dB_nu/dT dE.

    Args/returns as `planck_weights`.
    """
    return jax.nn.softmax(_log_bin_weights(log_dplanck_kernel, energy_edges_ev, temperature_ev,
                                           n_nodes), axis=-1)


@jax.jit
def planck_mean_from_weights(kappa, weights):
    """sum_k kappa_k w_k for normalised weights: kappa (..., nE), weights (..., nE) -> (...)."""
    return jnp.sum(jnp.asarray(kappa) * weights, axis=-1)


@jax.jit
def rosseland_mean_from_weights(kappa, weights):
    """[sum_k w_k / kappa_k]^-1 for normalised weights: kappa (..., nE), weights (..., nE) -> (...).

    A bin with kappa_k <= 0 and non-zero weight is a window of zero opacity that carries unbounded
    diffusive flux, so kappa_R = 0 there (negative kappa is treated as 0; no floor is applied).
    Bins whose weight underflowed to exactly 0 are ignored whatever their kappa.
    """
    kappa = jnp.asarray(kappa)
    pos = kappa > 0
    live = weights > 0
    window = jnp.any(live & ~pos, axis=-1)
    # Substitute 1 for kappa <= 0 and handle the window case by `where` rather than letting 1/0 =
    # inf through the sum: inf would make gradients NaN (0 * inf) even though the value is fine.
    term = jnp.where(live & pos, weights / jnp.where(pos, kappa, 1.0), 0.0)
    total = jnp.sum(term, axis=-1)
    safe = jnp.where(window | (total <= 0), 1.0, total)
    return jnp.where(window, 0.0, 1.0 / safe)


def planck_mean(kappa, energy_edges_ev, temperature_ev, n_nodes: int = 4):
    """Band-limited Planck mean opacity kappa_P = sum kappa_k W_k / sum W_k.

    Args:
      kappa: (..., nE) bin-averaged monochromatic opacity [cm^2/g] (any unit; the mean keeps it).
      energy_edges_ev: (nE + 1,) increasing bin edges [eV].
      temperature_ev: kT [eV], shape broadcastable against kappa.shape[:-1].
      n_nodes: Gauss-Legendre nodes per bin.

    Returns:
      (...) kappa_P in the units of kappa; shape = broadcast(kappa.shape[:-1], T.shape).
    """
    dtype = _float_dtype(kappa, temperature_ev)
    w = planck_weights(energy_edges_ev, jnp.asarray(temperature_ev, dtype=dtype), n_nodes)
    return planck_mean_from_weights(jnp.asarray(kappa, dtype=dtype), w)


def rosseland_mean(kappa, energy_edges_ev, temperature_ev, n_nodes: int = 4):
    """Band-limited Rosseland mean kappa_R = [sum W'_k / kappa_k / sum W'_k]^-1.

    Bins with kappa <= 0 (and non-negligible weight) give kappa_R = 0; see
    `rosseland_mean_from_weights`.

    Args/returns as `planck_mean`.
    """
    dtype = _float_dtype(kappa, temperature_ev)
    w = rosseland_weights(energy_edges_ev, jnp.asarray(temperature_ev, dtype=dtype), n_nodes)
    return rosseland_mean_from_weights(jnp.asarray(kappa, dtype=dtype), w)


def band_fraction(temperature_ev, e_lo_ev: float = 0.1, e_hi_ev: float = 10.0, n: int = 2048,
                  n_nodes: int = 4):
    """Fractions of int B_nu dnu and of int dB_nu/dT dnu that lie in [e_lo_ev, e_hi_ev].

    The in-band integrals of x^3/(e^x-1) and x^4 e^x/(e^x-1)^2 over x in [e_lo/kT, e_hi/kT] use n
    log-spaced sub-intervals with n_nodes-point Gauss-Legendre each (in log space, so the Wien
    tail at x ~ 1000 is fine), and are divided by the analytic totals constants.PLANCK_INTEGRAL
    = pi^4/15 and DPLANCK_INTEGRAL = 4 pi^4/15.

    Args:
      temperature_ev: (...) kT [eV].
      e_lo_ev, e_hi_ev: band limits [eV], 0 < e_lo < e_hi (static).
      n: number of sub-intervals (static).
      n_nodes: Gauss-Legendre nodes per sub-interval.

    Returns:
      (fraction_B, fraction_dBdT), each (...) dimensionless in [0, 1].
    """
    if not (0 < e_lo_ev < e_hi_ev):
        raise ValueError(f"need 0 < e_lo_ev < e_hi_ev, got {e_lo_ev}, {e_hi_ev} eV")
    edges = np.geomspace(float(e_lo_ev), float(e_hi_ev), int(n) + 1)
    log_b = jax.nn.logsumexp(_log_bin_weights(log_planck_kernel, edges, temperature_ev, n_nodes),
                             axis=-1)
    log_db = jax.nn.logsumexp(_log_bin_weights(log_dplanck_kernel, edges, temperature_ev, n_nodes),
                              axis=-1)
    return (jnp.exp(log_b - np.log(_c.PLANCK_INTEGRAL)),
            jnp.exp(log_db - np.log(_c.DPLANCK_INTEGRAL)))


def _sum_components(components: dict, names) -> object:
    present = [components[k] for k in names if k in components]
    if not present:
        return None
    total = jnp.asarray(present[0])
    for arr in present[1:]:
        total = total + jnp.asarray(arr)
    return total


def mean_opacities(components: dict, energy_edges_ev, temperature_ev, kind: str = "absorption",
                   n_nodes: int = 4) -> dict:
    """Planck and Rosseland means from component spectra.

    kind='absorption' (default, the physically standard choice): Planck mean of the absorption
    (bb + bf + ff, whichever are present) and Rosseland mean of absorption + scattering (es).
    kind='total': both means of the total absorption + scattering (how the JLODK tables define
    their "total" Planck mean).

    Args:
      components: dict name -> (..., nE) opacity [cm^2/g] for names among 'bb', 'bf', 'ff', 'es';
        at least one absorption component is required, 'es' is optional.
      energy_edges_ev: (nE + 1,) increasing bin edges [eV].
      temperature_ev: kT [eV] broadcastable against the leading dims (...).
      kind: 'absorption' or 'total'.

    Returns:
      {'planck': (...), 'rosseland': (...)} in cm^2/g.
    """
    if kind not in MEAN_KINDS:
        raise ValueError(f"unknown kind {kind!r}; allowed: {MEAN_KINDS}")
    unknown = set(components) - set(ABSORPTION_COMPONENTS) - set(SCATTERING_COMPONENTS)
    if unknown:
        raise ValueError(f"unknown components {sorted(unknown)}; allowed: "
                         f"{ABSORPTION_COMPONENTS + SCATTERING_COMPONENTS}")
    absorption = _sum_components(components, ABSORPTION_COMPONENTS)
    if absorption is None:
        raise ValueError(f"need at least one absorption component among {ABSORPTION_COMPONENTS}, "
                         f"got {sorted(components)}")
    scattering = _sum_components(components, SCATTERING_COMPONENTS)
    total = absorption if scattering is None else absorption + scattering
    planck_kappa = absorption if kind == "absorption" else total
    return {"planck": planck_mean(planck_kappa, energy_edges_ev, temperature_ev, n_nodes),
            "rosseland": rosseland_mean(total, energy_edges_ev, temperature_ev, n_nodes)}
