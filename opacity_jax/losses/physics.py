"""Physics-informed losses (thesis §4.4.2, eqs. 5-8) and the registry that selects them by name.

A physics loss is ONE pure function ``fn(outputs, batch, aux) -> scalar`` registered by name:

* ``outputs``: what the model computed (dict of arrays; which keys depends on the loss);
* ``batch``: the data batch (dict of (B, ...) arrays, ``batch['weight']`` (B,) masks padding);
* ``aux``: static extras (tables, options) fixed when the task is built.

A config lists ``{name: weight}``; `get_physics_losses` validates it (unknown name, a name
registered for another model, or a negative / non-finite weight -> ValueError naming the
allowed values), drops zero weights, and
`physics_penalty` adds sum_k w_k L_k to the data loss:  L = L_data + gamma L_bb + delta L_Zbar
(eq. 8). Extending = one `@register_physics_loss("name")` function + one config line; see
"Extending the PINN losses" in BUILD.md.

Registered here:

* ``monotonic_bb`` (eq. 6) for forward surrogates: ``outputs['spectra_by_t']`` (G, N, nE)
  predicted spectra in (normalised) cube-root space, each of the G groups at one (element, rho)
  with N members sorted by increasing T; ``batch['pair_mask']`` (G, N - 1) optional 0/1 mask of
  the consecutive pairs the premise is applied to (the regime where the data obey it).
  L = mean over allowed pairs of max(0, B_(m+1) - B_m), B = mean of the top p % bins (eq. 5,
  ``aux['top_percent']``). With every pair allowed this is eq. 6 averaged over groups.
* ``monotonic_bb_soft`` for the classifier, whose *input* spectra carry no gradient: it ranks by
  the *predicted* temperature instead. For ordered pairs (i, j) of the same group
  (``batch['group']``), s_ij = sigmoid((log10 T^_j - log10 T^_i) / tau) is the soft indicator
  "j is predicted hotter than i", and L = sum m_ij s_ij max(0, B_j - B_i) / sum m_ij [B_j > B_i]
  with B = ``batch['bb_strength']`` (B of the input's bound-bound spectrum). Its gradient pushes
  the predicted T of the spectrum with the stronger lines below that of its weaker partner.
  m_ij = same group, both real samples, and (regime 'data') the pair obeys the premise in truth
  (T_j > T_i and B_j < B_i, or the reverse); regime 'all' keeps every same-group pair.
* ``saha_zbar`` (eq. 7 -> MSE on Zbar): mean over the batch of
  ((Zbar_head - Zbar_Saha(T^, rho^, element)) / zbar_scale)^2, Zbar_Saha from the package's own
  differentiable solver (`opacity_jax.physics.saha.solve_indexed`, the code the generator uses)
  at the *predicted* temperature ``outputs['t_ev']`` and density ``outputs['log10_rho']``, for the
  element ``batch['element']`` (true label at training time: a row of ``aux['saha_tables']``).
  Gradients flow into the Zbar head AND into the T and rho heads through the solver (its last
  Newton step gives implicit-function derivatives), which is the point of the loss: it couples
  the density head, otherwise weakly constrained by the spectrum, to the ionisation balance that
  the Zbar head reads off the spectrum. The element index is an integer label (no gradient).
  ``aux['zbar_scale']`` (the classifier passes the training Zbar's standard deviation) makes the
  loss dimensionless; ``aux['saha_samples']`` evaluates it on the first k samples of the
  (shuffled) batch, an unbiased estimate: the solver's partition functions over up to 3000
  levels x 21 stages per sample are its cost (~0.5 ms per sample on one CPU core).
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Mapping, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from opacity_jax.losses.data import masked_mean
from opacity_jax.physics import saha

PhysicsLoss = Callable[[Mapping, Mapping, Mapping], jax.Array]
_REGISTRY: Dict[str, PhysicsLoss] = {}
_MODELS: Dict[str, Optional[Tuple[str, ...]]] = {}   # name -> models it applies to (None: any)

REGIMES = ("all", "data", "t_range")


# ------------------------------------------------------------------------------------ registry
def register_physics_loss(name: str, models: Optional[Tuple[str, ...]] = None,
                          overwrite: bool = False):
    """Decorator registering ``fn(outputs, batch, aux) -> scalar`` under `name`.

    Args:
      name: the config key (letters, digits, '_').
      models: the `config.model` values whose outputs the loss understands (e.g.
        ('classifier',)); None = any model. A config selecting the loss for another model is
        rejected by `get_physics_losses` with a message naming these.
      overwrite: replace an existing registration instead of raising.
    Raises ValueError if `name` is taken (unless overwrite=True) or malformed.
    """
    if not isinstance(name, str) or not name.replace("_", "a").isalnum():
        raise ValueError(f"physics loss name must be letters, digits and '_', got {name!r}")

    def deco(fn: PhysicsLoss) -> PhysicsLoss:
        if name in _REGISTRY and not overwrite and _REGISTRY[name] is not fn:
            raise ValueError(f"physics loss {name!r} is already registered "
                             f"({_REGISTRY[name].__module__}.{_REGISTRY[name].__name__})")
        _REGISTRY[name] = fn
        _MODELS[name] = None if models is None else tuple(models)
        return fn

    return deco


def unregister_physics_loss(name: str) -> None:
    """Remove a registered loss (tests and experiments); KeyError if absent."""
    del _REGISTRY[name]
    _MODELS.pop(name, None)


def registered_physics_losses(model: Optional[str] = None) -> Tuple[str, ...]:
    """Sorted names of the registered physics losses (those serving `model` if given)."""
    return tuple(sorted(n for n in _REGISTRY
                        if model is None or _MODELS.get(n) is None or model in _MODELS[n]))


def get_physics_losses(cfg, model: Optional[str] = None
                       ) -> Dict[str, Tuple[PhysicsLoss, float]]:
    """Validate a ``{name: weight}`` mapping and return ``{name: (fn, weight)}``.

    Args:
      cfg: mapping (dict / ConfigDict) name -> weight, or None / empty for no physics.
      model: the calling model ('classifier', 'cae', 'fcnn', ...); names registered for other
        models are rejected (e.g. a forward surrogate has no Zbar head for 'saha_zbar').
        None skips the check.
    Returns:
      dict of the entries with weight > 0, in sorted name order (deterministic sums).
    Raises:
      ValueError for an unknown name (lists the registered ones), a name the model cannot
      serve, or a weight that is negative, non-finite or not a number.
    """
    if cfg is None:
        return {}
    items = dict(cfg.items()) if hasattr(cfg, "items") else None
    if items is None:
        raise ValueError(f"physics losses must be a mapping {{name: weight}}, got {cfg!r}")
    out = {}
    for name in sorted(items):
        w = items[name]
        if name not in _REGISTRY:
            raise ValueError(f"unknown physics loss {name!r}; registered: "
                             f"{list(registered_physics_losses())}")
        served = _MODELS.get(name)
        if model is not None and served is not None and model not in served:
            raise ValueError(f"physics loss {name!r} is not available for this model "
                             f"({model!r}); it applies to {list(served)}")
        try:
            w = float(w)
        except (TypeError, ValueError):
            raise ValueError(f"physics loss weight for {name!r} must be a number, got {w!r}")
        if not math.isfinite(w) or w < 0:
            raise ValueError(f"physics loss weight for {name!r} must be finite and >= 0, "
                             f"got {w}")
        if w > 0:
            out[name] = (_REGISTRY[name], w)
    return out


def physics_penalty(selected: Mapping[str, Tuple[PhysicsLoss, float]], outputs, batch, aux):
    """sum_k w_k L_k(outputs, batch, aux) and a metrics dict {'phys_<name>': L_k}."""
    total = jnp.zeros((), jnp.float32)
    metrics = {}
    for name, (fn, w) in selected.items():
        val = fn(outputs, batch, aux)
        metrics[f"phys_{name}"] = val
        total = total + w * val
    return total, metrics


# ------------------------------------------------------------------------------ line strength
def top_k_count(n_bins: int, top_percent: float) -> int:
    """Number of bins in the top `top_percent` % of `n_bins` (at least 1)."""
    if not 0 < float(top_percent) <= 100:
        raise ValueError(f"top_percent must lie in (0, 100], got {top_percent}")
    return max(1, int(round(n_bins * float(top_percent) / 100.0)))


def line_strength(spectra, top_percent: float = 10.0):
    """Eq. 5: B = mean of the top p % bins along the last axis.

    Args:
      spectra: (..., nE) spectra in cube-root space (numpy or jax; jax is differentiable, the
        gradient reaching the selected bins).
      top_percent: p in (0, 100].
    Returns:
      (...) B, same units as `spectra`.
    """
    k = top_k_count(spectra.shape[-1], top_percent)
    if isinstance(spectra, np.ndarray):
        return np.sort(spectra, axis=-1)[..., -k:].mean(-1)
    return jnp.mean(jax.lax.top_k(spectra, k)[0], axis=-1)


def monotonic_penalty(b_sorted, pair_mask=None):
    """Eq. 6 on B sorted by increasing T along the last axis.

    Args:
      b_sorted: (..., N) line strengths of N group members ordered by T.
      pair_mask: optional (..., N - 1) 0/1 weights of the consecutive pairs.
    Returns:
      scalar: mean over (allowed) pairs of max(0, B_(m+1) - B_m); 0 when nothing is allowed.
    """
    viol = jax.nn.relu(b_sorted[..., 1:] - b_sorted[..., :-1])
    if pair_mask is None:
        return jnp.mean(viol)
    m = jnp.asarray(pair_mask, viol.dtype)
    return jnp.sum(viol * m) / jnp.maximum(jnp.sum(m), 1.0)


# ------------------------------------------------------------------------------------ losses
@register_physics_loss("monotonic_bb", models=("cae", "fcnn"))
def monotonic_bb(outputs, batch, aux):
    """L_bb on predicted spectra (see module docstring): outputs['spectra_by_t'] (G, N, nE),
    optional batch['pair_mask'] (G, N - 1), aux['top_percent'] (default 10)."""
    b = line_strength(outputs["spectra_by_t"], float(aux.get("top_percent", 10.0)))
    return monotonic_penalty(b, batch.get("pair_mask"))


@register_physics_loss("monotonic_bb_soft", models=("classifier",))
def monotonic_bb_soft(outputs, batch, aux):
    """Differentiable L_bb for the classifier (see module docstring).

    Uses outputs['log10_t'] (B,), batch['bb_strength'] (B,), batch['group'] (B,) int,
    batch['log10_t'] (B,) true (for regime 'data'), batch['weight'] (B,);
    aux['soft_tau_dex'] (default 0.05), aux['regime'] ('data' | 'all' | 't_range'),
    aux['t_range_ev'] (lo, hi) for 't_range' (both members must lie inside).
    """
    t_hat = outputs["log10_t"]
    b = batch["bb_strength"]
    w = batch["weight"]
    g = batch["group"]
    tau = float(aux.get("soft_tau_dex", 0.05))
    s = jax.nn.sigmoid((t_hat[None, :] - t_hat[:, None]) / tau)       # s[i, j]: j hotter
    db = b[None, :] - b[:, None]                                      # B_j - B_i
    m = (g[:, None] == g[None, :]) & (w[:, None] > 0) & (w[None, :] > 0)
    m = m & ~jnp.eye(g.shape[0], dtype=bool)
    regime = aux.get("regime", "data")
    t_true = batch["log10_t"]
    if regime == "data":
        dt = t_true[None, :] - t_true[:, None]
        m = m & (dt * db < 0)
    elif regime == "t_range":
        lo, hi = (math.log10(float(v)) for v in aux["t_range_ev"])
        inside = (t_true >= lo - 1e-6) & (t_true <= hi + 1e-6)
        m = m & inside[:, None] & inside[None, :]
    elif regime != "all":
        raise ValueError(f"regime must be one of {REGIMES}, got {regime!r}")
    pos = m & (db > 0)
    return jnp.sum(jnp.where(pos, s * db, 0.0)) / jnp.maximum(jnp.sum(pos), 1.0)


def saha_zbar_of(tables, element_index, temperature_ev, log10_rho):
    """Zbar from the package's Saha solver at paired points (float32, differentiable).

    Args:
      tables: dict of jnp arrays from `opacity_jax.data.atomic.saha_tables` (the
        'atomic_numbers' entry is not needed); row k = element position k.
      element_index: (B,) int rows of `tables`.
      temperature_ev: (B,) [eV]; log10_rho: (B,) log10 [g/cm^3].
    Returns:
      (B,) mean ionic charge.
    """
    def one(e, t, lr):
        return saha.solve_indexed(tables, e, t, 10.0 ** lr).zbar
    return jax.vmap(one)(element_index, temperature_ev, log10_rho)


# Predicted T and rho are clipped to a generous box around the NIST-LANL grid (0.01-5 eV,
# 1e-20-1e-4 g/cm^3) so an untrained head cannot send the solver to 1e-30 eV; the clip's zero
# gradient outside the box only matters for wildly wrong predictions, which the data loss fixes.
SAHA_T_CLIP_EV = (3e-3, 20.0)
SAHA_LOG_RHO_CLIP = (-24.0, -1.0)


@register_physics_loss("saha_zbar", models=("classifier",))
def saha_zbar(outputs, batch, aux):
    """L_Zbar (see module docstring): outputs 't_ev', 'log10_rho', 'zbar' (B,);
    batch 'element' (B,) int, 'weight' (B,); aux 'saha_tables' (jnp dict), 'zbar_scale'
    (default 1), 'saha_samples' (use only the first k batch samples - batches are shuffled, so
    this is an unbiased estimate at a fraction of the solver's cost; 0 = all)."""
    k = int(aux.get("saha_samples", 0)) or outputs["zbar"].shape[0]
    t = jnp.clip(outputs["t_ev"][:k], *SAHA_T_CLIP_EV)
    lr = jnp.clip(outputs["log10_rho"][:k], *SAHA_LOG_RHO_CLIP)
    z_saha = saha_zbar_of(aux["saha_tables"], batch["element"][:k], t, lr)
    scale = float(aux.get("zbar_scale", 1.0))
    return masked_mean(((outputs["zbar"][:k] - z_saha) / scale) ** 2, batch["weight"][:k])


# ------------------------------------------------------------------- premise of the L_bb loss
def bracket_pair_mask(b, known):
    """Pairs (m, m+1) of a T-ordered column where the *known* data obey the premise.

    A consecutive pair is allowed when the nearest known nodes bracketing it (last known node
    at or below m, first known node at or above m + 1) have B_hi <= B_lo; a pair with no known
    node on one side is not allowed. For columns whose every node is known this is simply
    B_(m+1) <= B_m.

    Args:
      b: (..., nT) line strengths; known: (..., nT) bool (training nodes).
    Returns:
      (..., nT - 1) bool.
    """
    b = np.asarray(b, np.float64)
    known = np.asarray(known, bool)
    lead = b.shape[:-1]
    n_t = b.shape[-1]
    bf, kf = b.reshape(-1, n_t), known.reshape(-1, n_t)
    out = np.zeros((bf.shape[0], n_t - 1), bool)
    for row in range(bf.shape[0]):
        idx = np.flatnonzero(kf[row])
        if idx.size < 2:
            continue
        for m in range(n_t - 1):
            lo = idx[idx <= m]
            hi = idx[idx >= m + 1]
            if lo.size and hi.size:
                out[row, m] = bf[row, hi[0]] <= bf[row, lo[-1]]
    return out.reshape(lead + (n_t - 1,))


def t_range_pair_mask(temperature_ev, t_range_ev, lead_shape=()):
    """(lead..., nT - 1) mask of the pairs with both temperatures inside [lo, hi] eV."""
    t = np.asarray(temperature_ev, np.float64)
    lo, hi = (float(v) for v in t_range_ev)
    inside = (t >= lo * (1 - 1e-9)) & (t <= hi * (1 + 1e-9))
    pair = inside[:-1] & inside[1:]
    return np.broadcast_to(pair, tuple(lead_shape) + pair.shape).copy()


def regime_pair_mask(regime: str, b, known, temperature_ev, t_range_ev=(0.01, 5.0)):
    """Pair mask (..., nT - 1) for a regime name in REGIMES ('all' | 'data' | 't_range')."""
    if regime == "all":
        return np.ones(np.shape(b)[:-1] + (np.shape(b)[-1] - 1,), bool)
    if regime == "data":
        return bracket_pair_mask(b, known)
    if regime == "t_range":
        return t_range_pair_mask(temperature_ev, t_range_ev, np.shape(b)[:-1])
    raise ValueError(f"monotonicity regime must be one of {REGIMES}, got {regime!r}")


def monotonicity_report(bb_cbrt, temperature_ev, zbar=None, mask=None, top_percent=10.0,
                        rel_tol=(0.0, 0.01, 0.05)) -> dict:
    """How often the L_bb premise (B falls with T at fixed element, rho) fails in the data.

    Args:
      bb_cbrt: (nZ, nT, nR, nE) bound-bound spectra in cube-root space.
      temperature_ev: (nT,) increasing.
      zbar: optional (nZ, nT, nR) mean charge, for a breakdown by ionisation.
      mask: optional (nZ, nT, nR) bool; only consecutive pairs with both nodes in it count
        (e.g. the training nodes).
      top_percent: p of eq. 5.
      rel_tol: tolerances; a pair violates at tol when B_(m+1) > (1 + tol) B_m.
    Returns:
      JSON-ready dict: overall violation fraction per tolerance, per T interval and per Zbar
      band (tolerance 0), and the number of pairs.
    """
    b = line_strength(np.asarray(bb_cbrt, np.float64), top_percent)        # (nZ, nT, nR)
    b = np.moveaxis(b, 1, -1)                                              # (nZ, nR, nT)
    pairs = np.ones(b.shape[:-1] + (b.shape[-1] - 1,), bool)
    if mask is not None:
        mk = np.moveaxis(np.asarray(mask, bool), 1, -1)
        pairs = mk[..., 1:] & mk[..., :-1]
    up = b[..., 1:] - b[..., :-1]
    t = np.asarray(temperature_ev)
    out = {"top_percent": float(top_percent), "n_pairs": int(pairs.sum()),
           "violation_fraction": {}, "per_t_interval": [], "per_zbar_band": []}
    for tol in rel_tol:
        v = up > tol * np.abs(b[..., :-1])
        out["violation_fraction"][f"tol={tol:g}"] = float(v[pairs].mean())
    v = (up > 0) & pairs
    for m in range(t.size - 1):
        p = pairs[..., m]
        out["per_t_interval"].append({"t_lo_ev": float(t[m]), "t_hi_ev": float(t[m + 1]),
                                      "violation_fraction": float(v[..., m][p].mean())
                                      if p.any() else None})
    if zbar is not None:
        zb = np.moveaxis(np.asarray(zbar, np.float64), 1, -1)
        zmid = 0.5 * (zb[..., 1:] + zb[..., :-1])
        for lo, hi in ((0.0, 0.05), (0.05, 1.0), (1.0, 3.0), (3.0, np.inf)):
            s = pairs & (zmid >= lo) & (zmid < hi)
            out["per_zbar_band"].append({"zbar_lo": lo, "zbar_hi": float(hi) if np.isfinite(hi)
                                         else None, "pair_fraction": float(s.sum() / max(
                                             pairs.sum(), 1)),
                                         "violation_fraction": float(v[s].mean()) if s.any()
                                         else None})
    return out
