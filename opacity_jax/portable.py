"""Portable weights: a trained surrogate as plain arrays + a JSON architecture, and a reference
forward pass that needs numpy only (no jax, flax, orbax or pickle), the specification a C or
Fortran port follows.

    arch, arrays = portable.load("runs/sb/portable")        # architecture.json + weights.npz
    kappa = portable.forward(arch, arrays, "Nd", [0.3, 1.0], [1e-13, 1e-12])  # (2, nE) cm^2/g

Written by `opacity_jax.serve.export.write_portable` for the CAE pipeline (latent MLP + decoder)
and the Saha-structured stage-basis model. Every array has a leading element axis in the order
of ``arch["elements"]``; ``arch["arrays"]`` lists name, shape and meaning, and
``arch["forward"]`` the steps below in words. Arrays are float32 as trained (float64 for the
quadrature rule); this reference evaluates in float64.

CAE (``arch["model"] == "cae"``), per element e and query (T [eV], rho [g/cm^3]):
  1. x = ((log10 T, log10 rho) - x_mean) / x_std;
  2. latent MLP: h = relu(h @ W_i + b_i) for the hidden layers, then a linear layer -> z_std;
     z = z_std * z_stdev[e] + z_mean[e];
  3. decoder: h = relu(z @ W + b) reshaped (L, C); each transposed convolution (kernel k,
     stride s, 'SAME'): insert s - 1 zeros between inputs, pad (a, b) =
     (k - 1, s - 1) if s > k - 1 else (ceil((k + s - 2) / 2), floor((k + s - 2) / 2)),
     correlate with the unflipped kernel (k, C_in, C_out), add the bias; relu between layers;
     the last layer has one channel -> y (nE,);
  4. y *= scale[e]; kappa = max(y, 0)^3 ('cbrt' scaling) or max(exp(y) - eps, 0) ('log').
Stage basis (``arch["model"] == "stage_basis"``), per element and query:
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
from pathlib import Path

import numpy as np

FORMAT = "opacity_jax.portable"
FORMAT_VERSION = 1
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


def forward(arch, arrays, element, temperature_ev, density_gcc) -> np.ndarray:
    """Reference forward pass: (N, nE) kappa [cm^2/g], float64, at N (T [eV], rho [g/cm^3])
    (scalars broadcast) for one element (symbol or Z). No domain check: see arch['domain']."""
    e = _position(arch, element)
    t, r = np.broadcast_arrays(np.atleast_1d(np.asarray(temperature_ev, np.float64)),
                               np.atleast_1d(np.asarray(density_gcc, np.float64)))
    a = {k: np.asarray(v, np.float64)[e] if v.ndim and k not in arch.get("shared", ()) else
         np.asarray(v, np.float64) for k, v in arrays.items()}
    if arch["model"] == "cae":
        return _cae(arch, a, t, r)
    if arch["model"] == "stage_basis":
        return np.stack([np.exp(_stage_basis_point(arch, a, np.log10(tt), np.log10(rr)))
                         for tt, rr in zip(t, r)])
    raise ValueError(f"unknown model {arch['model']!r}")


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
    h = x
    n_mlp = arch["latent_mlp"]["layers"]
    for i in range(n_mlp):
        h = h @ a[f"mlp/{i}/kernel"] + a[f"mlp/{i}/bias"]
        if i < n_mlp - 1:
            h = np.maximum(h, 0.0)
    z = h * a["z_std"] + a["z_mean"]
    dec = arch["decoder"]
    h = np.maximum(z @ a["from_latent/kernel"] + a["from_latent/bias"], 0.0)
    h = h.reshape(h.shape[0], dec["length"], dec["channels"])
    out = []
    for row in h:
        y = row
        for i, s in enumerate(dec["strides"]):
            y = _conv_transpose(y, a[f"dec/{i}/kernel"], a[f"dec/{i}/bias"], int(s))
            if i < len(dec["strides"]) - 1:
                y = np.maximum(y, 0.0)
        out.append(y[:, 0])
    y = np.stack(out) * a["scale"]
    if arch["scaling"]["name"] == "cbrt":
        return np.maximum(y, 0.0) ** 3
    return np.maximum(np.exp(y) - arch["scaling"]["eps"], 0.0)


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

