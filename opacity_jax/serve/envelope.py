"""The validity envelope of a trained model: where its training data actually were.

Per element, the convex hull in (log10 T [eV], log10 rho [g/cm^3]) of the grid nodes the model
was trained on (the 'train' nodes of model.json's split) - not the bounding box of the axes: with
a random split a held-out corner of the grid lies outside the hull, and a query there is an
extrapolation. Also the energy band [eV] of the model's bins and the dataset's provenance.

Queries outside the hull follow the caller's policy (`POLICIES`):
  'raise' (default) DomainError naming the element and the first points;
  'clamp' each outside point is moved to the nearest point of the hull (SuperNu clamps its table
          lookups the same way, axis by axis on its rectangle);
  'nan'   the outside points' outputs are NaN;
  'warn'  a warning, then the model is evaluated where asked;
  'ignore' no check (for evaluating held-out nodes, which are outside by construction).
"""

from __future__ import annotations

import warnings
from typing import Optional

import numpy as np

from opacity_jax.errors import DomainError, check_domain
from opacity_jax.physics import elements as _el

POLICIES = ("raise", "clamp", "nan", "warn", "ignore")
_TOL = 1e-9      # in log10 units: grid nodes on the hull's edges are inside


def check_policy(policy: str) -> str:
    """`policy` if it is one of POLICIES, else ValueError naming the allowed values."""
    if policy not in POLICIES:
        raise ValueError(f"outside-envelope policy must be one of {', '.join(POLICIES)}; "
                         f"got {policy!r}")
    return policy


def convex_hull(points: np.ndarray) -> np.ndarray:
    """(M, 2) counter-clockwise vertices of the convex hull of (N, 2) points (Andrew's monotone
    chain; collinear points dropped; a point or a segment for degenerate inputs)."""
    p = np.unique(np.asarray(points, np.float64), axis=0)
    if p.shape[0] <= 2:
        return p

    def half(pts):
        out = []
        for q in pts:
            while len(out) >= 2 and _cross(out[-2], out[-1], q) <= _TOL * _TOL:
                out.pop()
            out.append(q)
        return out

    lower = half(p)
    upper = half(p[::-1])
    return np.asarray(lower[:-1] + upper[:-1])


def _cross(o, a, b) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _nearest_on_segments(hull: np.ndarray, q: np.ndarray) -> np.ndarray:
    """(N, 2) nearest points of the hull's boundary (or of a point / segment hull) to q."""
    if hull.shape[0] == 1:
        return np.broadcast_to(hull[0], q.shape).copy()
    a = hull
    b = np.roll(hull, -1, axis=0) if hull.shape[0] > 2 else hull[::-1]
    ab = b - a                                                      # (M, 2)
    denom = np.maximum(np.sum(ab * ab, axis=1), 1e-300)
    s = np.clip(np.einsum("nmk,mk->nm", q[:, None, :] - a[None], ab) / denom, 0.0, 1.0)
    cand = a[None] + s[..., None] * ab[None]                        # (N, M, 2)
    d = np.sum((cand - q[:, None, :]) ** 2, axis=-1)
    return cand[np.arange(q.shape[0]), np.argmin(d, axis=1)]


class Envelope:
    """Training-node hulls per element, the energy band and provenance (module docstring).

    Attributes:
      hulls: {Z: (M, 2) vertices in (log10 T [eV], log10 rho [g/cm^3])};
      energy_ev: [lo, hi] band of the model's bins [eV]; provenance: dict.
    """

    def __init__(self, hulls: dict, energy_ev, provenance: Optional[dict] = None):
        self.hulls = {int(z): np.asarray(h, np.float64).reshape(-1, 2) for z, h in hulls.items()}
        self.energy_ev = [float(energy_ev[0]), float(energy_ev[1])]
        self.provenance = dict(provenance or {})

    @classmethod
    def from_meta(cls, meta: dict) -> Optional["Envelope"]:
        """From model.json (its split's 'train' nodes and axes); None for a workdir that does
        not record them (older runs: only the bounding-box domain is checked)."""
        split = meta.get("split") or {}
        if "train" not in split or "temperature_ev" not in meta or "density_gcc" not in meta:
            return None
        shape = tuple(split["shape"])
        mask = np.zeros(int(np.prod(shape)), bool)
        mask[np.asarray(split["train"], np.int64)] = True
        mask = mask.reshape(shape)
        lt = np.log10(np.asarray(meta["temperature_ev"], np.float64))
        lr = np.log10(np.asarray(meta["density_gcc"], np.float64))
        hulls = {}
        for i, z in enumerate(meta["elements"]):
            it, ir = np.nonzero(mask[i])
            hulls[int(z)] = convex_hull(np.stack([lt[it], lr[ir]], -1))
        edges = meta["energy_edges_ev"]
        prov = {"split": split.get("name"), "split_seed": split.get("seed"),
                "n_train_nodes": int(mask.sum()), "data_path": meta.get("data_path"),
                "dataset": meta.get("dataset_provenance"), "model": meta.get("model"),
                "package_version": meta.get("package_version")}
        return cls(hulls, [edges[0], edges[-1]], prov)

    def to_dict(self) -> dict:
        """JSON-able form (hull vertices per element symbol)."""
        return {"coordinates": "log10 T [eV], log10 rho [g/cm^3]; convex hull of training nodes",
                "hulls": {_el.SYMBOLS[_el.element_index(z)]: h.tolist()
                          for z, h in self.hulls.items()},
                "energy_ev": self.energy_ev, "provenance": self.provenance}

    def contains(self, z: int, temperature_ev, density_gcc) -> np.ndarray:
        """(N,) bool: True where (T [eV], rho [g/cm^3]) lies in element z's hull."""
        h = self.hulls[int(z)]
        q = np.stack([np.log10(np.asarray(temperature_ev, np.float64)),
                      np.log10(np.asarray(density_gcc, np.float64))], -1).reshape(-1, 2)
        if h.shape[0] <= 2:
            return np.sum((_nearest_on_segments(h, q) - q) ** 2, -1) <= _TOL * _TOL
        a = h
        b = np.roll(h, -1, axis=0)
        cross = ((b[:, 0] - a[:, 0])[None] * (q[:, 1:2] - a[None, :, 1])
                 - (b[:, 1] - a[:, 1])[None] * (q[:, 0:1] - a[None, :, 0]))
        length = np.hypot(b[:, 0] - a[:, 0], b[:, 1] - a[:, 1])[None]
        return np.all(cross >= -_TOL * length, axis=1)

    def apply(self, z: int, temperature_ev, density_gcc, policy: str = "raise"):
        """Apply `policy` to (N,) query points of element z.

        Returns:
          (t, rho, outside): (N,) float64 arrays to evaluate the model at (moved onto the hull
          for 'clamp') and the (N,) bool mask of points outside the hull (outputs to set NaN
          for 'nan'; all False for 'ignore').
        Raises:
          DomainError for 'raise' when any point is outside.
        """
        check_policy(policy)
        t = np.asarray(temperature_ev, np.float64).copy()
        r = np.asarray(density_gcc, np.float64).copy()
        if policy == "ignore":
            return t, r, np.zeros(t.shape, bool)
        out = ~self.contains(z, t, r)
        if not out.any():
            return t, r, out
        sym = _el.SYMBOLS[_el.element_index(int(z))]
        pts = [(float(a), float(b)) for a, b in zip(t[out][:3], r[out][:3])]
        msg = (f"{int(out.sum())} of {t.size} queries of {sym} outside the model's validity "
               f"envelope (convex hull of its training nodes in log T, log rho), e.g. "
               f"(T [eV], rho [g/cm^3]) = {pts}")
        if policy == "raise":
            raise DomainError(msg + "; choose a policy: clamp, nan or warn")
        if policy == "warn":
            warnings.warn(msg)
        elif policy == "clamp":
            q = np.stack([np.log10(t[out]), np.log10(r[out])], -1)
            c = _nearest_on_segments(self.hulls[int(z)], q)
            t[out], r[out] = 10.0 ** c[:, 0], 10.0 ** c[:, 1]
        return t, r, out


def query_check(model, element, temperature_ev, density_gcc):
    """The query validation every surrogate shares: element position, the bounding-box domain
    (model.on_domain_error), then the validity envelope (model.envelope, model.outside; the
    default 'raise' becomes 'warn' for a model loaded with on_domain_error='warn').

    Returns (pos, t (N,) [eV], rho (N,) [g/cm^3], nan_mask (N,) bool)."""
    pos = model.element_position(element)
    t, r = check_domain(model.domain, temperature_ev, density_gcc, model.on_domain_error)
    if model.envelope is None:
        return pos, t, r, np.zeros(t.shape, bool)
    policy = model.outside
    if policy == "raise" and model.on_domain_error == "warn":
        policy = "warn"       # a caller who opted into out-of-domain warnings gets them here too
    t, r, out = model.envelope.apply(int(model.elements[pos]), t, r, policy)
    return pos, t, r, out & (policy == "nan")


def nan_rows(a: np.ndarray, nan: np.ndarray) -> np.ndarray:
    """`a` (N, ...) with the rows where nan (N,) holds set to NaN (a copy when any)."""
    if not nan.any():
        return a
    a = np.array(a, dtype=np.result_type(a.dtype, np.float32))
    a[nan] = np.nan
    return a
