"""Physics input features for the spectrum regressors: the LTE ionization balance at (T, rho).

The ionization balance changes a spectrum qualitatively between two grid nodes, and a regressor
given only (log10 T, log10 rho) must learn it from 27 x 17 points. These features hand it over:
for element e at temperature T [eV] and density rho [g/cm^3],

    [log10 x_q (q = q_lo_e ... q_lo_e + n_stages - 1), Zbar, log10 n_e [cm^-3]]

from the package's Saha prior (`models.stage_basis.prior_fractions`: tabulated ionization
energies and unit partition functions, the prior of the stage_basis family; nothing of the
generator's levels, lines or per-stage arrays). The stage window of each element is the
`n_stages` consecutive charges with the largest summed prior fraction over the element's
training nodes (the dominant stages). log10 x_q is floored smoothly at LOG10_X_FLOOR (a softplus,
so derivatives stay continuous): fractions of absent stages reach 1e-500 and beyond, which would
dominate the standardization without telling the regressor anything.

Each feature is standardized with the mean / standard deviation over the element's training
nodes. Everything is jit-able, vmap-able over points and differentiable in T and rho (the Saha
solve has implicit derivatives), so the serving Surrogate computes the features at query time.

    pf = PhysicsFeatures.fit(elements, temperature_ev, density_gcc, train_mask, n_stages=4)
    x = pf.standardized(pos, t, r)        # (N, n_features) for element position pos
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from opacity_jax import _compat
from opacity_jax.models import stage_basis as sb
from opacity_jax.physics import elements as _el

LOG10_X_FLOOR = -30.0     # smooth floor of log10 stage fractions
DEFAULT_N_STAGES = 4


def floor_log10(v, floor: float = LOG10_X_FLOOR):
    """Smooth lower bound floor + softplus(v - floor) of log10 values, (...) -> (...).

    Equal to v within 1e-4 for v > floor + 10, -> floor below; derivative in (0, 1)."""
    return floor + jax.nn.softplus(v - floor)


def raw_point(atomic_weight, ionization_energies_ev, q_lo, n_stages: int, temperature_ev,
              density_gcc):
    """Unstandardized features of one element at one point.

    Args:
      atomic_weight: () [u]; ionization_energies_ev: (20,) [eV]; q_lo: () int, first charge of
        the window; n_stages: window length (static); temperature_ev: () [eV];
      density_gcc: () [g/cm^3].
    Returns:
      (n_stages + 2,): floored log10 x_q of the window, Zbar, log10 n_e [cm^-3].
    """
    res = sb.prior_fractions(temperature_ev, density_gcc, atomic_weight, ionization_energies_ev)
    log_f = jax.lax.dynamic_slice(res.log_fractions, (q_lo,), (n_stages,))
    ln10 = jnp.log(10.0).astype(log_f.dtype)
    return jnp.concatenate([floor_log10(log_f / ln10),
                            jnp.stack([res.zbar, res.log_ne / ln10])])


def feature_names(n_stages: int) -> list:
    """Names of the physics features: 'log10_x_w0'.. (window offset), 'zbar', 'log10_ne'."""
    return [f"log10_x_w{k}" for k in range(n_stages)] + ["zbar", "log10_ne"]


@functools.lru_cache(maxsize=8)
def _grid_fn(n_stages: int):
    f = lambda a, i, q, t, r: raw_point(a, i, q, n_stages, t, r)
    return jax.jit(jax.vmap(f, in_axes=(None, None, None, 0, 0)))


def raw_points_float64(atomic_weight, ionization_energies_ev, q_lo, n_stages: int,
                       temperature_ev, density_gcc) -> np.ndarray:
    """`raw_point` at N points in float64 (numpy in, numpy out): the features the regressors are
    trained on, and what the XGBoost path serves (its trees split exactly at training values).

    Args: as `raw_point`; temperature_ev, density_gcc: (N,) [eV], [g/cm^3].
    Returns: (N, n_stages + 2) float64.
    """
    t = np.asarray(temperature_ev, np.float64).ravel()
    r = np.asarray(density_gcc, np.float64).ravel()
    with _compat.enable_x64():
        out = _grid_fn(int(n_stages))(jnp.asarray(atomic_weight, jnp.float64),
                                      jnp.asarray(ionization_energies_ev, jnp.float64),
                                      jnp.asarray(q_lo, jnp.int32), jnp.asarray(t),
                                      jnp.asarray(r))
        return np.asarray(out, np.float64)


def dominant_window(fractions: np.ndarray, n_stages: int) -> int:
    """First charge q_lo of the `n_stages` consecutive charges with the largest summed fraction.

    Args: fractions: (n, 21) prior stage fractions at the element's training nodes.
    """
    s = np.asarray(fractions, np.float64).sum(0)
    n_lo = s.size - n_stages + 1
    if n_lo < 1:
        raise ValueError(f"n_stages = {n_stages} exceeds the {s.size} charge states")
    return int(np.argmax([s[q:q + n_stages].sum() for q in range(n_lo)]))


def element_constants(elements) -> tuple:
    """(atomic weights (nZ,) [u], ionization energies (nZ, 20) [eV]) of atomic numbers."""
    idx = [_el.element_index(int(z)) for z in elements]
    return _el.ATOMIC_WEIGHTS[idx], _el.IONIZATION_ENERGIES_EV[idx]


@dataclasses.dataclass(frozen=True)
class PhysicsFeatures:
    """Per-element physics features (see module docstring) on an element axis.

    Attributes:
      elements: (nZ,) atomic numbers; n_stages: window length;
      q_lo: (nZ,) first charge of each element's window;
      mean, std: (nZ, n_stages + 2) standardization over each element's training nodes.
    """

    elements: tuple
    n_stages: int
    q_lo: tuple
    mean: np.ndarray
    std: np.ndarray

    @property
    def n_features(self) -> int:
        """Number of physics features per point."""
        return self.n_stages + 2

    @classmethod
    def fit(cls, elements, temperature_ev, density_gcc, train_mask,
            n_stages: int = DEFAULT_N_STAGES) -> "PhysicsFeatures":
        """Stage windows and standardization from each element's training nodes.

        Args: elements: (nZ,) atomic numbers; temperature_ev (nT,) [eV]; density_gcc (nR,)
          [g/cm^3]; train_mask: (nZ, nT, nR) bool; n_stages: 1 ... 21.
        """
        n_stages = int(n_stages)
        if not 1 <= n_stages <= _el.MAX_STAGES:
            raise ValueError(f"physics_features_stages must be in 1..{_el.MAX_STAGES}, "
                             f"got {n_stages}")
        tt, rr = np.meshgrid(np.asarray(temperature_ev, np.float64),
                             np.asarray(density_gcc, np.float64), indexing="ij")
        weights, ions = element_constants(elements)
        q_lo, mean, std = [], [], []
        for e, z in enumerate(elements):
            m = np.asarray(train_mask[e], bool)
            if not m.any():
                raise ValueError(f"element Z={int(z)} has no training nodes")
            # The window over all charges gives every stage's (floored) fraction.
            every = raw_points_float64(weights[e], ions[e], 0, _el.MAX_STAGES, tt[m], rr[m])
            q = dominant_window(10.0 ** every[:, :_el.MAX_STAGES], n_stages)
            x = raw_points_float64(weights[e], ions[e], q, n_stages, tt[m], rr[m])
            q_lo.append(q)
            mean.append(x.mean(0))
            std.append(np.maximum(x.std(0), 1e-6))
        return cls(tuple(int(z) for z in elements), n_stages, tuple(q_lo), np.asarray(mean),
                   np.asarray(std))

    # -- features -----------------------------------------------------------------------------
    def raw(self, pos, temperature_ev, density_gcc):
        """Unstandardized features (N, n_features) of element position `pos` (int or traced
        int32) at N points (jnp; jit-able and differentiable in T [eV], rho [g/cm^3])."""
        t = jnp.asarray(temperature_ev)
        dt = jnp.result_type(t, float)
        weights, ions = element_constants(self.elements)
        a = jnp.asarray(weights, dt)[pos]
        ion = jnp.asarray(ions, dt)[pos]
        q = jnp.asarray(self.q_lo, jnp.int32)[pos]
        f = lambda tt, rr: raw_point(a, ion, q, self.n_stages, tt, rr)
        return jax.vmap(f)(t.astype(dt), jnp.asarray(density_gcc, dt))

    def standardized(self, pos, temperature_ev, density_gcc):
        """Standardized features (N, n_features) (jnp, float32 for float32 input)."""
        x = self.raw(pos, temperature_ev, density_gcc)
        return (x - jnp.asarray(self.mean, x.dtype)[pos]) / jnp.asarray(self.std, x.dtype)[pos]

    def standardized_float64(self, pos: int, temperature_ev, density_gcc) -> np.ndarray:
        """Standardized features (N, n_features) computed in float64 (numpy), as at training;
        pos a Python int."""
        weights, ions = element_constants(self.elements)
        x = raw_points_float64(weights[pos], ions[pos], self.q_lo[pos], self.n_stages,
                               temperature_ev, density_gcc)
        return (x - self.mean[pos]) / self.std[pos]

    def grid(self, temperature_ev, density_gcc) -> np.ndarray:
        """(nZ, nT, nR, n_features) standardized float64 features of every grid node."""
        tt, rr = np.meshgrid(np.asarray(temperature_ev, np.float64),
                             np.asarray(density_gcc, np.float64), indexing="ij")
        return np.stack([self.standardized_float64(e, tt.ravel(), rr.ravel()).reshape(
            tt.shape + (-1,)) for e in range(len(self.elements))])

    # -- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-serialisable form (model.json)."""
        return {"elements": list(self.elements), "n_stages": self.n_stages,
                "q_lo": list(self.q_lo), "names": feature_names(self.n_stages),
                "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "PhysicsFeatures":
        """Inverse of `to_dict`."""
        return cls(tuple(int(z) for z in d["elements"]), int(d["n_stages"]),
                   tuple(int(q) for q in d["q_lo"]), np.asarray(d["mean"], np.float64),
                   np.asarray(d["std"], np.float64))
