"""Target scalings, conservative rebinning of bin-averaged spectra, and feature standardisation.

Every array function accepts numpy or jax arrays and returns the same kind (jax for jax input,
including inside jit/vmap), computing in the input's floating dtype.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from opacity_jax.data import grid as _grid

SCALING_NAMES = ("cbrt", "log")
# Default additive offset for log scaling [cm^2/g]: far below any physical opacity in the tables,
# only there to keep log finite at exact zeros. A numerical choice, not a physical constant.
DEFAULT_LOG_EPS = 1e-10
# Relative slack allowed when checking that output edges lie within the input range, so that
# edges recomputed through a different floating-point path are not rejected; such edges are
# clipped onto the input range.
_EDGE_RTOL = 1e-9


def _xp(x):
    return jnp if isinstance(x, jax.Array) else np


def _as_float(x):
    """x as a floating array of its own kind (numpy/jax), keeping float32/float64."""
    xp = _xp(x)
    x = xp.asarray(x)
    if not xp.issubdtype(x.dtype, xp.floating):
        x = x.astype(xp.float64 if xp is np else jnp.result_type(float))
    return x


# ----------------------------------------------------------------------------------- scalings

def cube_root(kappa):
    """Sign-preserving cube root kappa^(1/3): (...) [cm^2/g] -> (...) [(cm^2/g)^(1/3)]."""
    x = _as_float(kappa)
    return _xp(x).cbrt(x)


def inverse_cube_root(y):
    """Inverse of `cube_root`: y^3, (...) -> (...) [cm^2/g]."""
    y = _as_float(y)
    return y * y * y


def log_scale(kappa, eps: float = DEFAULT_LOG_EPS):
    """log(kappa + eps): (...) [cm^2/g] -> (...) natural log; eps >= 0 [cm^2/g]."""
    x = _as_float(kappa)
    return _xp(x).log(x + eps)


def inverse_log_scale(y, eps: float = DEFAULT_LOG_EPS):
    """Exact inverse of `log_scale`: exp(y) - eps, (...) -> (...) [cm^2/g]."""
    y = _as_float(y)
    return _xp(y).exp(y) - eps


@dataclasses.dataclass(frozen=True)
class Scaling:
    """A named invertible target scaling.

    Attributes:
      name: 'cbrt' (kappa^(1/3)) or 'log' (log(kappa + eps)).
      eps: additive offset [cm^2/g] for 'log' (ignored by 'cbrt'), >= 0.
    """

    name: str = "log"
    eps: float = DEFAULT_LOG_EPS

    def __post_init__(self):
        if self.name not in SCALING_NAMES:
            raise ValueError(f"unknown scaling {self.name!r}; allowed: {SCALING_NAMES}")
        if not (float(self.eps) >= 0.0):
            raise ValueError(f"eps must be >= 0, got {self.eps}")

    def forward(self, kappa):
        """(...) opacity [cm^2/g] -> (...) scaled value."""
        return cube_root(kappa) if self.name == "cbrt" else log_scale(kappa, self.eps)

    def inverse(self, y):
        """(...) scaled value -> (...) opacity [cm^2/g]."""
        return inverse_cube_root(y) if self.name == "cbrt" else inverse_log_scale(y, self.eps)

    def to_dict(self) -> dict:
        """JSON-serialisable form."""
        return {"name": self.name, "eps": float(self.eps)}

    @classmethod
    def from_dict(cls, d: dict) -> "Scaling":
        """Inverse of `to_dict`."""
        return cls(name=d["name"], eps=float(d.get("eps", DEFAULT_LOG_EPS)))


def get_scaling(name: str, eps: float = DEFAULT_LOG_EPS) -> Scaling:
    """Scaling factory: name in SCALING_NAMES ('cbrt' | 'log'); ValueError otherwise."""
    if name not in SCALING_NAMES:
        raise ValueError(f"unknown scaling {name!r}; allowed: {SCALING_NAMES}")
    return Scaling(name=name, eps=eps)


# ----------------------------------------------------------------------------------- rebinning

def _check_edges(edges, what: str) -> np.ndarray:
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim != 1 or e.size < 2:
        raise ValueError(f"{what} must be a 1-D array with >= 2 entries, got shape {e.shape}")
    if not np.all(np.isfinite(e)) or np.any(np.diff(e) <= 0):
        raise ValueError(f"{what} must be finite and strictly increasing")
    return e


def rebin_matrix(edges_in_ev, edges_out_ev) -> np.ndarray:
    """Overlap matrix for conservative rebinning of bin-averaged spectra (float64 numpy).

    O[j, k] = |bin_in_j  intersect  bin_out_k| / width_out_k, so that kappa_out = kappa_in @ O is
    the average of the piecewise-constant input over each output bin, and
    kappa_out_k * width_out_k = integral of the input over output bin k exactly (up to rounding).

    Args:
      edges_in_ev: (nIn + 1,) strictly increasing input edges [eV].
      edges_out_ev: (nOut + 1,) strictly increasing output edges [eV], inside
        [edges_in[0], edges_in[-1]] (a relative slack of 1e-9 is tolerated and clipped).

    Returns:
      (nIn, nOut) float64 matrix; each column sums to 1 (weighted by input widths it partitions
      the output bin).

    Raises:
      ValueError: malformed edges, or an output edge outside the input range (names the value).
    """
    e_in = _check_edges(edges_in_ev, "edges_in_ev")
    e_out = _check_edges(edges_out_ev, "edges_out_ev").copy()
    lo, hi = e_in[0], e_in[-1]
    slack = _EDGE_RTOL * (hi - lo)
    for value in (e_out[0], e_out[-1]):
        if value < lo - slack or value > hi + slack:
            raise ValueError(f"output edge {value!r} eV lies outside the input range "
                             f"[{lo!r}, {hi!r}] eV; rebinning cannot extrapolate")
    e_out = np.clip(e_out, lo, hi)
    width_out = np.diff(e_out)
    if np.any(width_out <= 0):
        raise ValueError("output edges collapse after clipping onto the input range")
    overlap = (np.minimum(e_in[1:, None], e_out[None, 1:])
               - np.maximum(e_in[:-1, None], e_out[None, :-1]))
    np.maximum(overlap, 0.0, out=overlap)
    overlap /= width_out[None, :]
    return overlap


@functools.lru_cache(maxsize=4)
def _cached_matrix(key_in: bytes, key_out: bytes) -> np.ndarray:
    m = rebin_matrix(np.frombuffer(key_in, dtype=np.float64),
                     np.frombuffer(key_out, dtype=np.float64))
    m.setflags(write=False)     # shared between callers
    return m


def rebin(kappa, edges_in_ev, edges_out_ev):
    """Conservative rebinning of bin-averaged spectra onto new bins.

    Interprets kappa as piecewise constant on the input bins; each output value is the exact
    average over its output bin, so sum_k kappa_out_k dE_out_k equals the input integral over
    every output bin. The (float64) matrix is built once per pair of edge arrays (small cache)
    and applied in kappa's dtype; jax input is multiplied at HIGHEST precision (no TF32 on GPU).

    Args:
      kappa: (..., nIn) bin-averaged spectra, numpy or jax, [any unit, e.g. cm^2/g].
      edges_in_ev: (nIn + 1,) input edges [eV] (concrete, not traced).
      edges_out_ev: (nOut + 1,) output edges [eV] within the input range.

    Returns:
      (..., nOut) bin-averaged spectra, same array kind and floating dtype as kappa.
    """
    e_in = np.ascontiguousarray(edges_in_ev, dtype=np.float64)
    e_out = np.ascontiguousarray(edges_out_ev, dtype=np.float64)
    x = _as_float(kappa)
    if x.shape[-1] != e_in.size - 1:
        raise ValueError(f"kappa has {x.shape[-1]} bins on its last axis but edges_in_ev "
                         f"defines {e_in.size - 1}")
    m = _cached_matrix(e_in.tobytes(), e_out.tobytes())
    if _xp(x) is jnp:
        return jnp.matmul(x, jnp.asarray(m, dtype=x.dtype), precision=jax.lax.Precision.HIGHEST)
    return x @ m.astype(x.dtype, copy=False)


def rebin_to_log_grid(kappa, edges_in_ev, n_bins: int):
    """Rebin onto grid.energy_edges_ev(n_bins, edges_in[0], edges_in[-1]) (log-spaced, same range).

    Args:
      kappa: (..., nIn) bin-averaged spectra.
      edges_in_ev: (nIn + 1,) input edges [eV].
      n_bins: number of output bins.

    Returns:
      (..., n_bins) rebinned spectra (the edges are grid.energy_edges_ev(n_bins, ...)).
    """
    e_in = np.asarray(edges_in_ev, dtype=np.float64)
    return rebin(kappa, e_in, _grid.energy_edges_ev(n_bins, float(e_in[0]), float(e_in[-1])))


# ----------------------------------------------------------------------------------- standardiser

def _normalise_axis(axis, ndim: int) -> tuple:
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(int(a) for a in axis)
    axes = tuple(sorted(a % ndim for a in axes)) if ndim else ()
    if axes != tuple(range(len(axes))):
        # Statistics are stored without the reduced axes and broadcast against trailing feature
        # dims; reducing a non-leading axis would silently misalign them.
        raise ValueError(f"axis must name the leading axes (0..k-1) of the data, got {axis} "
                         f"for ndim={ndim}")
    return axes


@dataclasses.dataclass
class Standardizer:
    """Per-feature standardisation y = (x - mean) / std with statistics from training data.

    Attributes:
      mean: feature-shaped float64 array (x.shape with the reduced leading axes removed), or None
        before `fit`.
      std: same shape, already floored at `std_floor`.
      axis: leading axis or axes reduced by `fit` (None = all, giving scalar statistics).
      std_floor: lower bound for std so constant features do not divide by zero.
    """

    mean: Optional[np.ndarray] = None
    std: Optional[np.ndarray] = None
    axis: Union[int, tuple, None] = 0
    std_floor: float = 1e-8

    def fit(self, x, axis: Union[int, tuple, None, str] = "default") -> "Standardizer":
        """Compute mean/std of x (numpy or jax, any float dtype) over `axis` in float64.

        Args:
          x: (*reduced, *features) training data.
          axis: leading axes to reduce (defaults to self.axis).
        Returns:
          self, for chaining.
        """
        if not (isinstance(axis, str) and axis == "default"):
            self.axis = axis
        arr = np.asarray(x, dtype=np.float64)
        axes = _normalise_axis(self.axis, arr.ndim)
        if arr.size == 0 or any(arr.shape[a] == 0 for a in axes):
            raise ValueError("cannot fit a Standardizer on empty data")
        self.mean = np.mean(arr, axis=axes)
        self.std = np.maximum(np.std(arr, axis=axes), float(self.std_floor))
        return self

    def _stats(self, dtype):
        if self.mean is None or self.std is None:
            raise ValueError("Standardizer is not fitted; call fit() first")
        return (np.asarray(self.mean).astype(dtype), np.asarray(self.std).astype(dtype))

    def transform(self, x):
        """(..., *features) -> standardised (..., *features), same array kind and dtype as x."""
        x = _as_float(x)
        mean, std = self._stats(x.dtype)
        return (x - mean) / std

    def inverse(self, y):
        """Inverse of `transform`: (..., *features) -> original units."""
        y = _as_float(y)
        mean, std = self._stats(y.dtype)
        return y * std + mean

    def to_dict(self) -> dict:
        """JSON-serialisable form (nested lists) for checkpoints."""
        axis = list(self.axis) if isinstance(self.axis, (tuple, list)) else self.axis
        return {"mean": None if self.mean is None else np.asarray(self.mean).tolist(),
                "std": None if self.std is None else np.asarray(self.std).tolist(),
                "axis": axis, "std_floor": float(self.std_floor)}

    @classmethod
    def from_dict(cls, d: dict) -> "Standardizer":
        """Inverse of `to_dict`."""
        axis = d.get("axis", 0)
        axis = tuple(axis) if isinstance(axis, list) else axis
        mean = None if d.get("mean") is None else np.asarray(d["mean"], dtype=np.float64)
        std = None if d.get("std") is None else np.asarray(d["std"], dtype=np.float64)
        return cls(mean=mean, std=std, axis=axis, std_floor=float(d.get("std_floor", 1e-8)))


# Floor of every opacity a 'log' SpectrumScaling returns [cm^2/g]: inside float32's normal range
# (>= 1.18e-38), so predictions in float32 are never exactly zero and their logs stay finite.
KAPPA_TINY = 1e-37
# Default depth of the per-spectrum floor of 'log' targets [decades below the spectrum's maximum].
DEFAULT_FLOOR_DECADES = 40.0


def relative_floor(kappa, floor_decades: float):
    """Per-spectrum floor max(10^-D * max_E kappa, KAPPA_TINY) [cm^2/g], (..., nE) -> (..., 1).

    Deeper than D decades below its own peak a spectrum carries no information a model is asked
    to resolve. The coldest nodes' Planck weight sits in Wien-tail bins tens of decades below
    their line peaks, so D must be deep enough for those bins; what D = 20 ... 45 does to the
    Planck means of the 6-element table is in reports/physics_features/floor_study.txt.
    """
    xp = _xp(kappa)
    peak = xp.max(kappa, axis=-1, keepdims=True)
    return xp.maximum(peak * 10.0 ** (-float(floor_decades)), KAPPA_TINY)


def inverse_spectrum_scaling(y, name: str, eps: float, floor_decades: float, scale, shift):
    """The inverse of `SpectrumScaling.forward` for spectra of one element (numpy or jax).

    Args:
      y: (..., nE) scaled spectra; name: 'cbrt' or 'log'; eps: legacy additive offset
        [cm^2/g] (used only when floor_decades == 0); floor_decades: D of the per-spectrum floor;
      scale, shift: the element's scalars (or arrays broadcasting against y).
    Returns:
      (..., nE) kappa [cm^2/g]. 'cbrt' clips negatives to 0 (the thesis's scaling); 'log' with a
      floor returns exp(y) + KAPPA_TINY, strictly positive and smooth (no clipping, so
      derivatives pass); legacy 'log' (floor_decades == 0, workdirs written before the floor)
      returns max(exp(y) - eps, 0).
    """
    xp = _xp(y)
    u = y * scale + shift
    if name == "cbrt":
        return xp.maximum(u, 0.0) ** 3
    if floor_decades > 0:
        return xp.exp(u) + KAPPA_TINY
    return xp.maximum(xp.exp(u) - eps, 0.0)


@dataclasses.dataclass
class SpectrumScaling:
    """Per-element target scaling of opacity spectra, y = (g(kappa) - shift_e) / scale_e.

    * 'cbrt': g = kappa^(1/3), shift 0, scale the RMS of the element's training targets (thesis).
      The inverse clips negative predictions to 0.
    * 'log' (floor_decades = D > 0): g = ln max(kappa, floor) with the per-spectrum floor
      `relative_floor` (D decades below the spectrum's own maximum, never below KAPPA_TINY), so
      D decades of every spectrum are resolved whatever its level; shift and scale are the mean
      and standard deviation of the element's training targets. The inverse exp(.) + KAPPA_TINY
      never returns 0, so Rosseland means (harmonic) and logs of predictions stay finite.
    * legacy 'log' (floor_decades = 0): g = ln(kappa + eps), inverse clipped at 0.

    Attributes: name; eps [cm^2/g]; scale (nZ,); shift (nZ,) (zeros for 'cbrt');
    floor_decades: D (0 = legacy).
    """

    name: str
    eps: float
    scale: np.ndarray   # (nZ,)
    shift: Optional[np.ndarray] = None
    floor_decades: float = 0.0

    def __post_init__(self):
        self.scale = np.asarray(self.scale, np.float64)
        self.shift = (np.zeros_like(self.scale) if self.shift is None
                      else np.asarray(self.shift, np.float64))
        get_scaling(self.name, self.eps)        # validates the name
        if not float(self.floor_decades) >= 0.0:
            raise ValueError(f"floor_decades must be >= 0, got {self.floor_decades}")

    def transform(self, kappa):
        """g(kappa) before the per-element shift/scale: (..., nE) [cm^2/g] -> (..., nE)."""
        if self.name == "log" and self.floor_decades > 0:
            xp = _xp(kappa)
            k = _as_float(kappa)
            return xp.log(xp.maximum(k, relative_floor(k, self.floor_decades)))
        return get_scaling(self.name, self.eps).forward(kappa)

    def forward(self, kappa):
        """(nZ, ..., nE) opacities [cm^2/g] -> scaled values (element axis first)."""
        shape = (-1,) + (1,) * (np.ndim(kappa) - 1)
        return (self.transform(kappa) - self.shift.reshape(shape)) / self.scale.reshape(shape)

    def forward_for(self, kappa, element_pos):
        """Scaled spectra (..., nE) of one element (position on the element axis)."""
        return (self.transform(kappa) - self.shift[element_pos]) / self.scale[element_pos]

    def inverse_for(self, y, element_pos):
        """Inverse for spectra (..., nE) of one element (`inverse_spectrum_scaling`)."""
        return inverse_spectrum_scaling(y, self.name, self.eps, self.floor_decades,
                                        self.scale[element_pos], self.shift[element_pos])

    def to_dict(self):
        """JSON-serialisable form."""
        return {"name": self.name, "eps": self.eps, "scale": self.scale.tolist(),
                "shift": self.shift.tolist(), "floor_decades": float(self.floor_decades)}

    @classmethod
    def from_dict(cls, d):
        """Inverse of `to_dict` (dicts without shift / floor_decades are legacy: 0)."""
        return cls(d["name"], float(d["eps"]), np.asarray(d["scale"], np.float64),
                   None if d.get("shift") is None else np.asarray(d["shift"], np.float64),
                   float(d.get("floor_decades", 0.0)))
