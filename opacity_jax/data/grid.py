"""The NIST-LANL lanthanide/actinide opacity grid (axes only; no data).

The NIST-LANL database spans 28 elements, 27 temperatures log-spaced over 0.01-5 eV, 17 densities
log-spaced over 1e-20-1e-4 g/cm^3 and ~15000 photon energies between 0.1 and 10 eV.
"Z = 57-71 and 89-103" names 30 elements; the default grid carries the 28 of the two f series
proper, La-Yb (57-70) and Ac-No (89-102). Lu (71) and Lr (103), whose f shell is already full in
the neutral atom, are available to every function here by passing ``elements=`` explicitly.

Spectra are stored as bin averages on log-spaced energy bins (edges), which makes rebinning exact
and the line-binned opacity (integrated line cross-section per bin / bin width) well defined.
"""

import numpy as np

from opacity_jax.physics import elements as _el

DEFAULT_ELEMENTS = tuple(int(z) for z in _el.ATOMIC_NUMBERS if z not in (71, 103))  # 28 Z values
ALL_ELEMENTS = tuple(int(z) for z in _el.ATOMIC_NUMBERS)                           # 30 Z values
N_TEMPERATURES = 27
N_DENSITIES = 17
T_MIN_EV, T_MAX_EV = 0.01, 5.0
RHO_MIN_GCC, RHO_MAX_GCC = 1e-20, 1e-4
E_MIN_EV, E_MAX_EV = 0.1, 10.0
NATIVE_POINTS = 15000


def temperatures_ev(n: int = N_TEMPERATURES) -> np.ndarray:
    """(n,) temperatures [eV], log-spaced over 0.01-5 eV (27 on the NIST-LANL grid)."""
    return np.geomspace(T_MIN_EV, T_MAX_EV, n)


def densities_gcc(n: int = N_DENSITIES) -> np.ndarray:
    """(n,) mass densities [g/cm^3], log-spaced over 1e-20-1e-4 (17 on the NIST-LANL grid)."""
    return np.geomspace(RHO_MIN_GCC, RHO_MAX_GCC, n)


def energy_edges_ev(n_bins: int, e_min: float = E_MIN_EV, e_max: float = E_MAX_EV) -> np.ndarray:
    """(n_bins + 1,) photon-energy bin edges [eV], log-spaced over [e_min, e_max].

    Edges of an N-bin grid are a subset of those of an (N*k)-bin grid, so a spectrum generated on
    the fine grid and rebinned equals one generated on the coarse grid.
    """
    if int(n_bins) < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if not (0 < e_min < e_max):
        raise ValueError(f"need 0 < e_min < e_max, got e_min={e_min}, e_max={e_max} eV")
    # Computed from the exponent so that coarse edges equal the matching fine edges bit for bit
    # whenever the fine count is a multiple of the coarse count.
    frac = np.arange(int(n_bins) + 1, dtype=np.float64) / int(n_bins)
    edges = np.exp(np.log(e_min) + frac * (np.log(e_max) - np.log(e_min)))
    edges[0], edges[-1] = e_min, e_max
    return edges


def bin_centers_ev(edges_ev: np.ndarray) -> np.ndarray:
    """(n,) geometric bin centres [eV] of (n + 1,) edges."""
    edges_ev = np.asarray(edges_ev)
    return np.sqrt(edges_ev[:-1] * edges_ev[1:])


def edges_from_centers_ev(centers_ev: np.ndarray) -> np.ndarray:
    """(n + 1,) bin edges [eV] for (n,) increasing point energies: geometric midpoints inside,
    ends extrapolated by half a (log) step. Used when a table gives point values."""
    c = np.asarray(centers_ev, dtype=np.float64)
    if c.ndim != 1 or c.size < 2 or np.any(np.diff(c) <= 0) or c[0] <= 0:
        raise ValueError("point energies must be a 1-D, strictly increasing, positive array")
    mid = np.sqrt(c[:-1] * c[1:])
    first = c[0] ** 2 / mid[0]
    last = c[-1] ** 2 / mid[-1]
    return np.concatenate([[first], mid, [last]])
