"""Portable weights: a trained surrogate as plain arrays + a JSON architecture, and a reference
forward pass that needs numpy only (no jax, flax, orbax, xgboost or pickle), the specification a C
or Fortran port follows.

    arch, arrays = portable.load("runs/sb/portable")        # architecture.json + weights.npz
    kappa = portable.forward(arch, arrays, "Nd", [0.3, 1.0], [1e-13, 1e-12])  # (2, nE) cm^2/g
    mean, std = portable.forward(arch, arrays, "Nd", 0.3, 1e-13, return_std=True)  # ensembles

Written by `opacity_jax.serve.export.write_portable` for every forward surrogate the package
trains: the CAE pipeline with its latent MLP (one network or a K-member latent ensemble) or its
XGBoost trees, the FC-NN (one network or a K-member deep ensemble) and the Saha-structured stage
basis. Per-element arrays have a leading element axis in the order of ``arch["elements"]``
(names in ``arch["shared"]`` have none), ensemble weights a member axis next;
``arch["arrays"]`` lists name, shape and dtype, and ``arch["forward"]`` holds this text.
Arrays are float32 as trained and served (float64 for the trees' input standardization and the
quadrature rule); this reference evaluates in float64, except where the trained model compares
float32 (tree thresholds).

Queries (T [eV], rho [g/cm^3]) are checked first, as the served models check them: outside
``arch["domain"]`` (the axes' bounding box) DomainError; outside ``arch["envelope"]`` (per
element the convex hull of the training nodes in (log10 T, log10 rho)) the `outside` policy:
'raise' (default, DomainError), 'clamp' (onto the nearest point of the hull), 'nan' (NaN rows),
'warn' (a warning, then evaluated as asked) or 'ignore'.

Output scaling (CAE and FC-NN), per element e: u = y * scale[e] + shift[e]; kappa = max(u, 0)^3
('cbrt'), exp(u) + kappa_tiny ('log' with floor_decades > 0) or max(exp(u) - eps, 0) (legacy
'log'); ``arch["scaling"]`` holds name, eps, floor_decades and kappa_tiny.

CAE (``arch["model"] == "cae"``), per element e and query:
  1. x = ((log10 T, log10 rho) - x_mean) / x_std;
  2a. latent MLP (``arch["latent"] == "mlp"``), per member m: h = relu(h @ W_i + b_i) for the
     hidden layers, then a linear layer -> s, the standardized latent;
  2b. XGBoost trees (``"xgboost"``): x rounded to float32; cell i = number of thresholds
     trees/t0[e] <= x_0 and j = number of trees/t1[e] <= x_1 (padding +inf never counts);
     s = trees/values[e, i, j] (the boosters' own predictions, one per cell);
  3. latent z = s * z_std[e] + z_mean[e];
  4. decoder: h = relu(z @ W + b) reshaped (L, C); each transposed convolution (kernel k,
     stride s, 'SAME'): insert s - 1 zeros between inputs, pad (a, b) =
     (k - 1, s - 1) if s > k - 1 else (ceil((k + s - 2) / 2), floor((k + s - 2) / 2)),
     correlate with the unflipped kernel (k, C_in, C_out), add the bias; relu between layers;
     the last layer has one channel -> y (nE,); then the output scaling.
FC-NN (``"fcnn"``), per member m: for every bin centre E (array "energy_ev", float32 as the
  model uses it) the point ((log10 E, log10 T, log10 rho) - x_mean) / x_std through the MLP
  (relu hidden layers, linear scalar output) -> y (nE,); then the output scaling.
Ensembles (``arch["members"] = K > 1``): every member's kappa as above; the served value is the
  member mean of kappa, the uncertainty the members' population standard deviation (ddof 0)
  of kappa (``arch["combination"]``).
Stage basis (``"stage_basis"``), per element and query:
  1. u = log10 T; corrections dphi(u) and stage tables ln A(u) by monotone cubic (PCHIP,
     Fritsch-Carlson) interpolation over the element's valid knots (clamped outside);
  2. Saha boundaries phi_q = ln(2 saha_const T^1.5) - I_q / T (unit partition functions),
     plus dphi on the element's window boundaries; charge neutrality for ln n_e by bisection;
     stage log-fractions ln f_k = c_k - k ln n_e - logsumexp(...), c_k = sum_{q<k} phi_q;
  3. ln kappa = logaddexp(logsumexp_s(ln x_s + ln A_s), ln ff, ln es) with the closed-form
     Kramers free-free (bin means of E^-3 (1 - e^{-E/T}) by the stored Gauss-Legendre rule in
     ln E) and Thomson terms, each with its learned log scale.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from opacity_jax.errors import DomainError

FORMAT = "opacity_jax.portable"
FORMAT_VERSION = 2             # 2: member axis, XGBoost trees, FC-NN, output shift and floor
POLICIES = ("raise", "clamp", "nan", "warn", "ignore")
_TOL = 1e-9                    # log10 units: grid nodes on the hull's edges are inside
ARCH_FILE = "architecture.json"
WEIGHTS_FILE = "weights.npz"


def load(directory):
    """(architecture dict, {name: array}) from a folder written by `write_portable`; refuses
    files of another format or version (ValueError naming the file)."""
    d = Path(directory)
    arch = json.loads((d / ARCH_FILE).read_text())
    if arch.get("format") != FORMAT or arch.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{d / ARCH_FILE}: format {arch.get('format')!r} version "
                         f"{arch.get('format_version')!r}, expected {FORMAT!r} {FORMAT_VERSION}")
    with np.load(d / WEIGHTS_FILE, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    missing = [a["name"] for a in arch["arrays"] if a["name"] not in arrays]
    if missing:
        raise ValueError(f"{d / WEIGHTS_FILE}: arrays {missing} listed in {ARCH_FILE} are absent")
    return arch, arrays


def _position(arch, element) -> int:
    key = str(element).strip().lower()
    for i, (z, sym) in enumerate(zip(arch["elements"], arch["element_symbols"])):
        if key in (str(z), sym.lower()):
            return i
    raise ValueError(f"element {element!r} not in this model (has {arch['element_symbols']})")


def forward(arch, arrays, element, temperature_ev, density_gcc, return_std: bool = False,
            outside: str = "raise"):
    """Reference forward pass for one element (symbol or Z) at N (T [eV], rho [g/cm^3])
    (scalars broadcast).

    Returns (N, nE) float64 kappa [cm^2/g] (the member mean for an ensemble); with
    return_std, (mean, std), std the members' standard deviation (zeros for one network).
    Queries outside arch['domain'] raise DomainError; outside arch['envelope'] they follow
    `outside` (module docstring).
    """
    k = forward_members(arch, arrays, element, temperature_ev, density_gcc, outside)
    mean = k[0] if k.shape[0] == 1 else k.mean(0)
    return (mean, k.std(0)) if return_std else mean


def forward_members(arch, arrays, element, temperature_ev, density_gcc,
                    outside: str = "raise") -> np.ndarray:
    """(K, N, nE) float64 kappa [cm^2/g] of every member (K = 1 for one network); arguments
    as `forward`."""
    e = _position(arch, element)
    t, r, nan = check_query(arch, e, temperature_ev, density_gcc, outside)
    shared = arch.get("shared", ())
    a = {k: np.asarray(v)[e] if v.ndim and k not in shared else np.asarray(v)
         for k, v in arrays.items()}
    a = {k: v if k.startswith("trees/") else v.astype(np.float64) for k, v in a.items()}
    model = arch["model"]
    if model == "cae":
        out = _cae(arch, a, t, r)
    elif model == "fcnn":
        out = _fcnn(arch, a, t, r)
    elif model == "stage_basis":
        out = np.stack([np.exp(_stage_basis_point(arch, a, np.log10(tt), np.log10(rr)))
                        for tt, rr in zip(t, r)])[None]
    else:
        raise ValueError(f"unknown model {model!r}")
    if nan.any():
        out = out.copy()
        out[:, nan] = np.nan
    return out


# --------------------------------------------------------------------------------------------
# domain and validity envelope: the hull tests of opacity_jax.serve.envelope, restated here
# because importing anything under opacity_jax.serve imports jax, which this module must not
def check_query(arch, e: int, temperature_ev, density_gcc, outside: str = "raise"):
    """(t, rho, nan): (N,) float64 T [eV] and rho [g/cm^3] to evaluate element position e at
    (moved onto the hull for 'clamp') and the (N,) rows to set NaN ('nan'). DomainError outside
    arch['domain'], and outside the envelope for 'raise'; ValueError for an unknown policy."""
    if outside not in POLICIES:
        raise ValueError(f"outside must be one of {', '.join(POLICIES)}; got {outside!r}")
    t, r = np.broadcast_arrays(np.atleast_1d(np.asarray(temperature_ev, np.float64)),
                               np.atleast_1d(np.asarray(density_gcc, np.float64)))
    if t.ndim != 1:
        raise ValueError(f"temperature_ev and density_gcc must be scalars or 1-D, got {t.shape}")
    t, r = t.copy(), r.copy()
    dom = arch.get("domain") or {}
    for name, v in (("temperature_ev", t), ("density_gcc", r)):
        if name in dom:
            lo, hi = dom[name]
            bad = (v < lo * (1 - 1e-9)) | (v > hi * (1 + 1e-9)) | ~np.isfinite(v)
            if bad.any():
                raise DomainError(f"{name} = {float(v[bad][0]):.6g} outside the model's domain "
                                  f"[{lo:.6g}, {hi:.6g}] ({int(bad.sum())} of {v.size} queries)")
    nan = np.zeros(t.shape, bool)
    env = arch.get("envelope")
    if outside == "ignore" or not env:
        return t, r, nan
    hull = np.asarray(env["hulls"][arch["element_symbols"][e]], np.float64).reshape(-1, 2)
    q = np.stack([np.log10(t), np.log10(r)], -1)
    out = ~_inside(hull, q)
    if not out.any():
        return t, r, nan
    msg = (f"{int(out.sum())} of {t.size} queries of {arch['element_symbols'][e]} outside the "
           f"model's validity envelope (convex hull of its training nodes in log T, log rho), "
           f"e.g. (T [eV], rho [g/cm^3]) = {list(zip(t[out][:3].tolist(), r[out][:3].tolist()))}")
    if outside == "raise":
        raise DomainError(msg + "; choose outside='clamp', 'nan' or 'warn'")
    if outside == "warn":
        warnings.warn(msg)
    elif outside == "nan":
        nan = out
    elif outside == "clamp":
        c = _nearest_on_hull(hull, q[out])
        t[out], r[out] = 10.0 ** c[:, 0], 10.0 ** c[:, 1]
    return t, r, nan


def _inside(hull, q):
    """(N,) bool: q (N, 2) inside the counter-clockwise convex polygon `hull` (M, 2) (on a point
    or segment hull: within _TOL of it)."""
    if hull.shape[0] <= 2:
        return np.sum((_nearest_on_hull(hull, q) - q) ** 2, -1) <= _TOL * _TOL
    a, b = hull, np.roll(hull, -1, axis=0)
    cross = ((b[:, 0] - a[:, 0])[None] * (q[:, 1:2] - a[None, :, 1])
             - (b[:, 1] - a[:, 1])[None] * (q[:, 0:1] - a[None, :, 0]))
    length = np.hypot(b[:, 0] - a[:, 0], b[:, 1] - a[:, 1])[None]
    return np.all(cross >= -_TOL * length, axis=1)


def _nearest_on_hull(hull, q):
    """(N, 2) nearest points of the hull's boundary (a point, a segment or a polygon) to q."""
    if hull.shape[0] == 1:
        return np.broadcast_to(hull[0], q.shape).copy()
    a = hull
    b = np.roll(hull, -1, axis=0) if hull.shape[0] > 2 else hull[::-1]
    ab = b - a
    s = np.einsum("nmk,mk->nm", q[:, None, :] - a[None], ab) / np.maximum((ab * ab).sum(1), 1e-300)
    cand = a[None] + np.clip(s, 0.0, 1.0)[..., None] * ab[None]
    d = np.sum((cand - q[:, None, :]) ** 2, axis=-1)
    return cand[np.arange(q.shape[0]), np.argmin(d, axis=1)]


# --------------------------------------------------------------------------------------------
# networks shared by the CAE and the FC-NN
def _mlp(a, prefix: str, n_layers: int, x):
    """Every member's MLP: x (N, F) -> (K, N, n_out); relu hidden layers, linear output."""
    outs = []
    for m in range(a[f"{prefix}/0/kernel"].shape[0]):
        h = x
        for i in range(n_layers):
            h = h @ a[f"{prefix}/{i}/kernel"][m] + a[f"{prefix}/{i}/bias"][m]
            if i < n_layers - 1:
                h = np.maximum(h, 0.0)
        outs.append(h)
    return np.stack(outs)


def _unscale(arch, a, y):
    """Scaled spectra y (..., nE) -> kappa [cm^2/g] (module docstring, output scaling)."""
    sc = arch["scaling"]
    u = y * a["scale"] + a["shift"]
    if sc["name"] == "cbrt":
        return np.maximum(u, 0.0) ** 3
    if float(sc.get("floor_decades", 0.0)) > 0:
        return np.exp(u) + float(sc["kappa_tiny"])
    return np.maximum(np.exp(u) - float(sc["eps"]), 0.0)


def _fcnn(arch, a, t, r):
    log_e = np.log10(a["energy_ev"])
    n, ne = t.size, log_e.size
    pts = np.concatenate([np.broadcast_to(log_e[None, :, None], (n, ne, 1)),
                          np.broadcast_to(np.stack([np.log10(t), np.log10(r)], -1)[:, None, :],
                                          (n, ne, 2))], -1)
    x = ((pts - a["x_mean"]) / a["x_std"]).reshape(n * ne, 3)
    y = _mlp(a, "fcnn", int(arch["fcnn"]["layers"]), x)[..., 0].reshape(-1, n, ne)
    return _unscale(arch, a, y)


# --------------------------------------------------------------------------------------------
# CAE pipeline
def _conv_transpose(h, kernel, bias, stride):
    """(L, C_in) -> (L * stride, C_out): zero insertion, 'SAME' padding, correlation."""
    k = kernel.shape[0]
    n, c_in = h.shape
    up = np.zeros(((n - 1) * stride + 1, c_in))
    up[::stride] = h
    total = k + stride - 2
    before = k - 1 if stride > k - 1 else -(-total // 2)
    padded = np.concatenate([np.zeros((before, c_in)), up, np.zeros((total - before, c_in))])
    out_len = padded.shape[0] - k + 1
    windows = np.stack([padded[j:j + out_len] for j in range(k)], axis=1)   # (L', k, C_in)
    return np.einsum("lkc,kco->lo", windows, kernel) + bias


def _cae(arch, a, t, r):
    x = (np.stack([np.log10(t), np.log10(r)], -1) - a["x_mean"]) / a["x_std"]
    if arch["latent"] == "xgboost":
        # the trees compare float32 features (xgboost's rule: left iff x < threshold)
        xf = x.astype(np.float32)
        i = np.sum(a["trees/t0"][None, :] <= xf[:, :1], axis=1)
        j = np.sum(a["trees/t1"][None, :] <= xf[:, 1:], axis=1)
        z_std = a["trees/values"][i, j].astype(np.float64)[None]          # (1, N, L)
    else:
        z_std = _mlp(a, "mlp", int(arch["latent_mlp"]["layers"]), x)     # (K, N, L)
    z = z_std * a["z_std"] + a["z_mean"]
    dec = arch["decoder"]
    out = []
    for zm in z:
        h = np.maximum(zm @ a["from_latent/kernel"] + a["from_latent/bias"], 0.0)
        h = h.reshape(h.shape[0], dec["length"], dec["channels"])
        rows = []
        for row in h:
            y = row
            for i, s in enumerate(dec["strides"]):
                y = _conv_transpose(y, a[f"dec/{i}/kernel"], a[f"dec/{i}/bias"], int(s))
                if i < len(dec["strides"]) - 1:
                    y = np.maximum(y, 0.0)
            rows.append(y[:, 0])
        out.append(np.stack(rows))
    return _unscale(arch, a, np.stack(out))


# --------------------------------------------------------------------------------------------
# stage basis
def _lse(x, axis=-1):
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    return np.squeeze(m, axis) + np.log(np.sum(np.exp(x - m), axis=axis))


def _pchip(knots, valid, u, values):
    """Monotone cubic through the valid knots (values (..., K)), clamped outside them."""
    xs = knots[valid]
    ys = values[..., valid]
    if xs.size == 1:
        return ys[..., 0]
    u = min(max(u, xs[0]), xs[-1])
    j = int(np.clip(np.searchsorted(xs, u, side="right") - 1, 0, xs.size - 2))
    h = np.diff(xs)
    d = np.diff(ys, axis=-1) / h

    def tangent(i):
        if i == 0 or i == xs.size - 1:
            return d[..., 0] if i == 0 else d[..., -1]
        ha, hb, da, db = h[i - 1], h[i], d[..., i - 1], d[..., i]
        wa, wb = 2 * hb + ha, hb + 2 * ha
        same = da * db > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            m = (wa + wb) / (wa / da + wb / db)
        return np.where(same, m, 0.0)

    s = (u - xs[j]) / h[j]
    m1, m2 = tangent(j), tangent(j + 1)
    return ((2 * s**3 - 3 * s**2 + 1) * ys[..., j] + (-2 * s**3 + 3 * s**2) * ys[..., j + 1]
            + h[j] * ((s**3 - 2 * s**2 + s) * m1 + (s**3 - s**2) * m2))


def _stage_basis_point(arch, a, log10_t, log10_rho):
    c = arch["constants"]
    spec = arch["stage_basis"]
    knots = np.asarray(spec["knots_log10_t"], np.float64)
    valid = a["knot_mask"] > 0.5
    t = 10.0 ** log10_t
    rho = 10.0 ** log10_rho
    n_b = a["ionization_energies_ev"].shape[-1]
    phi = np.log(2.0 * c["saha_const_cm3_ev32"]) + 1.5 * np.log(t) - a["ionization_energies_ev"] / t
    q_lo = int(round(float(a["q_lo"])))
    n_s = int(spec["n_stages"])
    if spec["correction"]:
        dphi = _pchip(knots, valid, log10_t, a["dphi"])                    # (n_s + 1,)
        for j in range(n_s + 1):
            b = q_lo - 1 + j
            if a["boundary_mask"][j] > 0.5 and 0 <= b < n_b:
                phi[b] += dphi[j]
    cum = np.concatenate([[0.0], np.cumsum(phi)])
    k = np.arange(cum.size, dtype=np.float64)
    log_mass = np.log(a["atomic_weight"] * c["atomic_mass_unit_g"])
    log_n = np.log(rho) - log_mass

    def state(x):
        lf = cum - k * x
        lf = lf - _lse(lf)
        lz = _lse(lf[1:] + np.log(k[1:]))
        return lf, lz

    lo = min(phi[0], log_n - np.log(2.0)) - 1.0
    hi = log_n + np.log(float(cum.size - 1)) + 1.0
    for _ in range(200):                     # bisection on ln n_e to float64 resolution
        mid = 0.5 * (lo + hi)
        if mid - log_n - state(mid)[1] > 0:
            hi = mid
        else:
            lo = mid
        if hi - lo <= 1e-14 * max(1.0, abs(mid)):
            break
    log_ne = 0.5 * (lo + hi)
    lf, log_zbar = state(log_ne)
    q = np.clip(q_lo + np.arange(n_s), 0, cum.size - 1)
    log_x = np.where(a["stage_mask"] > 0.5, lf[q], -1.0e4)
    log_q2 = np.where(k > 0, 2.0 * np.log(np.maximum(k, 1.0)), -1.0e4)
    edges = np.asarray(arch["energy_edges_ev"], np.float64)
    nodes, weights = a["quadrature/nodes"], a["quadrature/weights"]
    half = 0.5 * np.log(edges[1:] / edges[:-1])[:, None]
    en = edges[:-1, None] * np.exp(half * (1.0 + nodes))
    kernel = -np.expm1(-en / t) / en**3
    log_kmean = np.log(np.sum(kernel * half * weights * en, axis=-1)) - np.log(np.diff(edges))
    t_k = t / c["k_boltzmann_ev_k"]
    log_ff = (np.log(c["kramers_ff_cgs"]) + log_ne + _lse(lf + log_q2) - log_mass
              - 0.5 * np.log(t_k) + 3.0 * np.log(c["h_planck_ev_s"]) + log_kmean + a["log_s_ff"])
    log_es = np.log(c["thomson_cm2"]) + log_zbar - log_mass + a["log_s_es"]
    log_a = _pchip(knots, valid, log10_t, np.transpose(a["log_a"], (0, 2, 1)))   # (S, nE)
    log_bbbf = _lse(log_x[:, None] + log_a, axis=0)
    return np.logaddexp(log_bbbf, np.logaddexp(log_ff, log_es))

