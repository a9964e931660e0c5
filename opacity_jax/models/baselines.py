"""Training-free baselines for filling held-out (T, rho) grid nodes.

Both use only the nodes marked known (train + validation), never the held-out ones.

* `four_neighbour_mean`: the thesis's baseline, the arithmetic mean of kappa at the known
  nodes among (i+-1, j) and (i, j+-1).
* `log_interp_along`: linear interpolation of log kappa along one axis (rho at fixed T, or T
  at fixed rho) between the nearest known nodes.
* `bilinear_log`: bilinear interpolation of log kappa in (log T, log rho) from the smallest
  axis-aligned rectangle of known nodes around the query node (for the held-out-node split, where
  no two held-out nodes touch, that is the cell of the four diagonal neighbours). Falls back to
  linear interpolation along one axis, then to the neighbour mean, where no rectangle exists.
"""

from __future__ import annotations

import numpy as np

_FLOOR = 1e-300


def four_neighbour_mean(kappa: np.ndarray, known: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Mean of the known 4-neighbours for every query node.

    Args:
      kappa: (nT, nR, nE) spectra [cm^2/g] (values at unknown nodes are ignored).
      known: (nT, nR) bool, nodes the baseline may use.
      query: (nT, nR) bool, nodes to predict.
    Returns:
      (n_query, nE) predictions in row-major order of `query`.
    """
    n_t, n_r = known.shape
    out = []
    for i, j in zip(*np.nonzero(query)):
        nb = [(i + di, j + dj) for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1))
              if 0 <= i + di < n_t and 0 <= j + dj < n_r and known[i + di, j + dj]]
        if not nb:
            raise ValueError(f"node ({i}, {j}) has no known neighbour")
        out.append(np.mean([kappa[a, b] for a, b in nb], axis=0))
    return np.asarray(out)


def _rectangle(known, i, j):
    n_t, n_r = known.shape
    best = None
    for a in range(i - 1, -1, -1):
        for b in range(i + 1, n_t):
            for c in range(j - 1, -1, -1):
                for d in range(j + 1, n_r):
                    if known[a, c] and known[a, d] and known[b, c] and known[b, d]:
                        size = (b - a) + (d - c)
                        if best is None or size < best[0]:
                            best = (size, a, b, c, d)
                    if best is not None and (b - a) + (d - c) >= best[0]:
                        break
    return None if best is None else best[1:]


def _axis_interp(lk, known, i, j, coord, axis):
    """Linear interpolation of lk (nT, nR, nE) in `coord` along one axis from the nearest known
    nodes on both sides of (i, j); None where one side has none."""
    n = known.shape[axis]
    at = (lambda a: (a, j)) if axis == 0 else (lambda a: (i, a))
    pos = i if axis == 0 else j
    lo = next((a for a in range(pos - 1, -1, -1) if known[at(a)]), None)
    hi = next((b for b in range(pos + 1, n) if known[at(b)]), None)
    if lo is None or hi is None:
        return None
    u = (coord[pos] - coord[lo]) / (coord[hi] - coord[lo])
    return (1 - u) * lk[at(lo)] + u * lk[at(hi)]


def log_interp_along(kappa: np.ndarray, known: np.ndarray, query: np.ndarray,
                     coord: np.ndarray, axis: int) -> np.ndarray:
    """1-D linear interpolation of log kappa along one grid axis, from the nearest known nodes on
    both sides (a geometric mean of the two neighbours when they are adjacent and the axis is
    log-uniform).

    Args:
      kappa: (nT, nR, nE) [cm^2/g]; known, query: (nT, nR) bool;
      coord: (nT,) log10 T for axis 0, or (nR,) log10 rho for axis 1.
    Returns:
      (n_query, nE) predictions [cm^2/g]; rows of NaN where the query has no known node on one
      side along that axis (e.g. a held-out temperature row interpolated along rho).
    """
    lk = np.log(np.maximum(np.asarray(kappa, np.float64), _FLOOR))
    out = []
    for i, j in zip(*np.nonzero(query)):
        val = _axis_interp(lk, known, i, j, np.asarray(coord, np.float64), axis)
        out.append(np.full(lk.shape[-1], np.nan) if val is None else np.exp(val))
    return np.asarray(out).reshape(-1, lk.shape[-1])


def bilinear_log(kappa: np.ndarray, known: np.ndarray, query: np.ndarray,
                 log_t: np.ndarray, log_r: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of log kappa in (log T, log rho) for every query node.

    Args:
      kappa: (nT, nR, nE) [cm^2/g]; known, query: (nT, nR) bool;
      log_t: (nT,) log10 T; log_r: (nR,) log10 rho.
    Returns:
      (n_query, nE) predictions [cm^2/g].
    """
    # float64 first: the floor 1e-300 is 0 in float32, and log(0) would be -inf.
    lk = np.log(np.maximum(np.asarray(kappa, np.float64), _FLOOR))
    n_t, n_r = known.shape
    out = []
    for i, j in zip(*np.nonzero(query)):
        rect = _rectangle(known, i, j)
        if rect is not None:
            a, b, c, d = rect
            u = (log_t[i] - log_t[a]) / (log_t[b] - log_t[a])
            v = (log_r[j] - log_r[c]) / (log_r[d] - log_r[c])
            val = ((1 - u) * (1 - v) * lk[a, c] + u * (1 - v) * lk[b, c]
                   + (1 - u) * v * lk[a, d] + u * v * lk[b, d])
            out.append(np.exp(val))
            continue
        # Border nodes: 1-D linear interpolation along whichever axis has known nodes both sides.
        done = False
        for axis in (0, 1):
            val = _axis_interp(lk, known, i, j, log_t if axis == 0 else log_r, axis)
            if val is not None:
                out.append(np.exp(val))
                done = True
                break
        if not done:
            q = np.zeros_like(query)
            q[i, j] = True
            out.append(four_neighbour_mean(kappa, known, q)[0])
    return np.asarray(out)


def bilinear_points(values: np.ndarray, x_axis: np.ndarray, y_axis: np.ndarray,
                    query_x: np.ndarray, query_y: np.ndarray, *, log_values: bool = True,
                    outside: str = "raise") -> np.ndarray:
    """Table lookup at arbitrary points: bilinear interpolation on a complete (nX, nY) table in
    the coordinates the caller passes (e.g. log10 T and log10 rho, or T and log rho as SuperNu's
    `tabular_opacity` does), of log(values) or of the values themselves.

    Args:
      values: (nX, nY, ...) table (trailing axes, e.g. energy bins or groups, carried along);
      x_axis: (nX,), y_axis: (nY,) ascending coordinates of the table nodes;
      query_x, query_y: (N,) query coordinates (same transform as the axes);
      log_values: interpolate log(values) (floored at 1e-300) and exponentiate, else linear;
      outside: 'raise' (ValueError for a query outside the axes) or 'clamp' (the query is moved
        to the nearest table edge first, which is what SuperNu does: no extrapolation).
    Returns:
      (N, ...) float64 interpolated values.
    """
    if outside not in ("raise", "clamp"):
        raise ValueError(f"outside must be 'raise' or 'clamp', got {outside!r}")
    qx = np.asarray(query_x, np.float64)
    qy = np.asarray(query_y, np.float64)
    lx = np.asarray(x_axis, np.float64)
    ly = np.asarray(y_axis, np.float64)
    if outside == "clamp":
        qx, qy = np.clip(qx, lx[0], lx[-1]), np.clip(qy, ly[0], ly[-1])
    elif np.any(qx < lx[0]) or np.any(qx > lx[-1]) or np.any(qy < ly[0]) or np.any(qy > ly[-1]):
        raise ValueError("bilinear_points: query outside the table's axes")
    v = np.asarray(values, np.float64)
    if log_values:
        v = np.log(np.maximum(v, _FLOOR))
    i = np.clip(np.searchsorted(lx, qx, side="right") - 1, 0, lx.size - 2)
    j = np.clip(np.searchsorted(ly, qy, side="right") - 1, 0, ly.size - 2)
    extra = (slice(None),) + (None,) * (v.ndim - 2)
    u = ((qx - lx[i]) / (lx[i + 1] - lx[i]))[extra]
    w = ((qy - ly[j]) / (ly[j + 1] - ly[j]))[extra]
    val = ((1 - u) * (1 - w) * v[i, j] + u * (1 - w) * v[i + 1, j]
           + (1 - u) * w * v[i, j + 1] + u * w * v[i + 1, j + 1])
    return np.exp(val) if log_values else val


def bilinear_log_points(kappa: np.ndarray, log_t: np.ndarray, log_r: np.ndarray,
                        query_log_t: np.ndarray, query_log_r: np.ndarray) -> np.ndarray:
    """Table lookup at arbitrary points: bilinear interpolation of log kappa in (log10 T,
    log10 rho) inside the cell that holds each query (a complete table, as a radiative-transfer
    code holds it); `bilinear_points` with log values and no clamping.

    Args:
      kappa: (nT, nR, nE) [cm^2/g]; log_t: (nT,), log_r: (nR,) ascending axes;
      query_log_t, query_log_r: (N,) points inside the axes' range.
    Returns:
      (N, nE) [cm^2/g]. Raises ValueError for a query outside the table.
    """
    try:
        return bilinear_points(kappa, log_t, log_r, query_log_t, query_log_r)
    except ValueError:
        raise ValueError("bilinear_log_points: query outside the table's (T, rho) range") from None

