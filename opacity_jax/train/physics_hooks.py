"""Physics-loss hooks for the forward surrogates (FC-NN, CAE decoder + latent MLP).

The monotonicity loss L_bb (thesis eq. 6) needs groups of *predicted* spectra of one element at
one density ordered by temperature, which a random training batch of (T, rho) nodes or of
(E, T, rho) points never contains. A hook therefore adds, at every training step, G extra
"columns": for G random grid densities, the surrogate's prediction at every grid temperature
(held-out nodes included - where the data cannot constrain the model, the premise can). The
column spectra go through the registered loss functions (`opacity_jax.losses.physics`) as
``outputs['spectra_by_t']`` (G, nT, nE) in normalised cube-root space (cbrt(kappa) / the
element's RMS, i.e. the 'cbrt' training scale, so the weight is dimensionless), with
``batch['pair_mask']`` (G, nT - 1) marking the regime where the premise is applied.

Regimes (config ``loss.physics_options.regime``): 'data' (default) applies the loss only to the
T intervals where the element's *training* spectra at that density decrease (`bracket_pair_mask`;
~29 % of consecutive grid pairs of the embedded data violate the premise, so applying it
everywhere fights the data), 't_range' to intervals inside ``t_range_ev``, 'all' everywhere.
B is computed on the total spectrum (what the surrogates predict); its top 10 % bins are
bound-bound lines almost everywhere on the grid.

The hook is called by `experiment.regression_task(..., physics=hook)` as
``hook(params, batch, rng, pred) -> (penalty, metrics)`` in training only (rng is not None);
validation losses stay pure data losses so early stopping compares like with like.
``batch['row']`` (B,) carries the element position of the entity's data row.

`for_latent_mlp(config, ...)` / `for_fcnn(config, ...)` build the hook from a forward config's
``loss.physics`` ({name: weight}; only 'monotonic_bb' applies, weight 0 = off) and
``loss.physics_options``; they return None when no physics loss is on, so default runs are
unchanged.
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from opacity_jax.data import transforms
from opacity_jax.losses import physics as phys

DEFAULT_OPTIONS = {"top_percent": 10.0, "regime": "data", "t_range_ev": (0.01, 5.0),
                   "groups": 2}


def options_from_config(loss_cfg) -> dict:
    """Physics options of a forward config's `loss` section, with defaults filled in."""
    opts = dict(DEFAULT_OPTIONS)
    given = loss_cfg.get("physics_options", None)
    if given is not None:
        unknown = sorted(set(dict(given)) - set(opts))
        if unknown:
            raise ValueError(f"unknown loss.physics_options keys {unknown}; allowed: "
                             f"{sorted(opts)}")
        opts.update(dict(given))
    if opts["regime"] not in phys.REGIMES:
        raise ValueError(f"loss.physics_options.regime must be one of {phys.REGIMES}, got "
                         f"{opts['regime']!r}")
    if int(opts["groups"]) < 1:
        raise ValueError(f"loss.physics_options.groups must be >= 1, got {opts['groups']}")
    phys.top_k_count(10, opts["top_percent"])     # validates p
    return opts


def cbrt_space(y_scaled, scaling, element_pos, cbrt_rms):
    """Model-scaled spectra -> cbrt(kappa) / cbrt_rms[e] (jnp, differentiable).

    y_scaled (..., nE) in the run's scaling (`experiment.SpectrumScaling`); element_pos traced
    int; cbrt_rms (nZ,) RMS of cbrt(kappa) of the training spectra.
    """
    if scaling.name == "cbrt":
        return y_scaled      # already cbrt(kappa) / the same RMS
    kappa = transforms.inverse_spectrum_scaling(
        y_scaled, scaling.name, scaling.eps, scaling.floor_decades,
        jnp.asarray(scaling.scale, jnp.float32)[element_pos],
        jnp.asarray(scaling.shift, jnp.float32)[element_pos])
    return jnp.cbrt(kappa) / jnp.asarray(cbrt_rms, jnp.float32)[element_pos]


def column_pair_masks(ds, train_mask, options) -> np.ndarray:
    """(nZ, nR, nT - 1) bool regime mask from the training spectra (see module docstring)."""
    b = phys.line_strength(np.cbrt(ds.kappa.astype(np.float64)), options["top_percent"])
    b = np.moveaxis(b, 1, -1)                                          # (nZ, nR, nT)
    known = np.moveaxis(np.asarray(train_mask, bool), 1, -1)
    return phys.regime_pair_mask(options["regime"], b, known, ds.temperature_ev,
                                 options["t_range_ev"])


def cbrt_rms(ds, train_mask) -> np.ndarray:
    """(nZ,) RMS of cbrt(kappa) over each element's training spectra."""
    out = []
    for e in range(ds.kappa.shape[0]):
        y = np.cbrt(ds.kappa[e][train_mask[e]].astype(np.float64))
        out.append(np.sqrt(np.mean(y ** 2)) if y.size else 1.0)
    return np.maximum(np.asarray(out), 1e-12)


def _select(cfg, model):
    return phys.get_physics_losses(cfg, model=model)


def _columns(rng, n_groups, n_r):
    return jax.random.randint(jax.random.fold_in(rng, 7), (n_groups,), 0, n_r)


def latent_mlp_hook(physics_cfg, options, *, mlp, cae, cae_params, z_mean, z_std,
                    x_standardizer, ds, train_mask, scaling) -> Callable:
    """Hook for the CAE path: decode(latent MLP(T, rho)) over T-ordered columns.

    Args:
      physics_cfg: {name: weight} (validated; only 'monotonic_bb' applies).
      options: from `options_from_config`.
      mlp: the latent MLP module being trained; cae: the CAE module; cae_params: its trained
        params with the element (entity) axis leading (frozen: no gradient reaches them).
      z_mean, z_std: (nZ, latent) latent standardisation; x_standardizer: fitted on
        (log10 T, log10 rho) features; ds: Dataset; train_mask: (nZ, nT, nR) bool;
      scaling: the run's SpectrumScaling.
    Returns:
      hook(params, batch, rng, pred) -> (scalar penalty, metrics dict), or None when every
      weight is zero.
    """
    selected = _select(physics_cfg, "cae")
    if not selected:
        return None
    masks = jnp.asarray(column_pair_masks(ds, train_mask, options))
    rms = cbrt_rms(ds, train_mask)
    lt = np.log10(ds.temperature_ev)
    lr = np.log10(ds.density_gcc)
    feats = np.stack(np.meshgrid(lt, lr, indexing="ij"), -1)            # (nT, nR, 2)
    xs = jnp.asarray(x_standardizer.transform(feats).astype(np.float32))
    xs = jnp.moveaxis(xs, 0, 1)                                         # (nR, nT, 2)
    zm, zsd = jnp.asarray(z_mean, jnp.float32), jnp.asarray(z_std, jnp.float32)
    # jnp arrays: params restored from a checkpoint are numpy, which a traced index cannot pick.
    frozen = jax.tree_util.tree_map(lambda a: jax.lax.stop_gradient(jnp.asarray(a)), cae_params)
    aux = {"top_percent": float(options["top_percent"])}
    n_groups, n_t = int(options["groups"]), lt.size

    def hook(params, batch, rng, pred):
        e = batch["row"][0]
        r = _columns(rng, n_groups, lr.size)
        x = xs[r].reshape(n_groups * n_t, 2)
        z = zm[e] + zsd[e] * mlp.apply(params, x)
        p_e = jax.tree_util.tree_map(lambda a: a[e], frozen)
        y = cae.apply(p_e, z, method=cae.decode)
        y = cbrt_space(y, scaling, e, rms).reshape(n_groups, n_t, -1)
        return phys.physics_penalty(selected, {"spectra_by_t": y},
                                    {"pair_mask": masks[e, r], "weight": jnp.ones(n_groups)},
                                    aux)

    return hook


def fcnn_hook(physics_cfg, options, *, model, x_standardizer, ds, train_mask, scaling) -> Callable:
    """Hook for the FC-NN: the network evaluated on every (E, T) point of G columns.

    Args as `latent_mlp_hook`; x_standardizer is fitted on (log10 E, log10 T, log10 rho).
    Each column costs nT x nE extra points per step (27 x 200 = 5400 on the NIST-LANL grid).
    """
    selected = _select(physics_cfg, "fcnn")
    if not selected:
        return None
    masks = jnp.asarray(column_pair_masks(ds, train_mask, options))
    rms = cbrt_rms(ds, train_mask)
    le = np.log10(ds.energy_ev)
    lt = np.log10(ds.temperature_ev)
    lr = np.log10(ds.density_gcc)
    pts = np.stack(np.meshgrid(lr, lt, le, indexing="ij"), -1)[..., ::-1]   # (nR,nT,nE,[E,T,R])
    xs = jnp.asarray(x_standardizer.transform(np.ascontiguousarray(pts)).astype(np.float32))
    aux = {"top_percent": float(options["top_percent"])}
    n_groups, n_t, n_e = int(options["groups"]), lt.size, le.size

    def hook(params, batch, rng, pred):
        e = batch["row"][0]
        r = _columns(rng, n_groups, lr.size)
        y = model.apply(params, xs[r].reshape(-1, 3)).reshape(n_groups, n_t, n_e)
        y = cbrt_space(y, scaling, e, rms)
        return phys.physics_penalty(selected, {"spectra_by_t": y},
                                    {"pair_mask": masks[e, r], "weight": jnp.ones(n_groups)},
                                    aux)

    return hook


def predicted_violation_fraction(spectra_cbrt, pair_mask, top_percent=10.0) -> float:
    """Fraction of allowed consecutive pairs where predicted B rises with T.

    spectra_cbrt (nZ, nR, nT, nE) predicted spectra in cube-root space; pair_mask
    (nZ, nR, nT - 1). Used by the ablation to check that L_bb does what it says.
    """
    b = phys.line_strength(np.asarray(spectra_cbrt, np.float64), top_percent)
    up = b[..., 1:] > b[..., :-1]
    m = np.asarray(pair_mask, bool)
    return float(up[m].mean()) if m.any() else float("nan")


def _physics_cfg(config):
    return config.loss.get("physics", None) if "loss" in config else None


def for_latent_mlp(config, **kwargs) -> Optional[Callable]:
    """`latent_mlp_hook` from a CAE config (None when loss.physics has no positive weight)."""
    cfg = _physics_cfg(config)
    if not _select(cfg, "cae"):
        return None
    return latent_mlp_hook(cfg, options_from_config(config.loss), **kwargs)


def for_fcnn(config, **kwargs) -> Optional[Callable]:
    """`fcnn_hook` from an FC-NN config (None when loss.physics has no positive weight)."""
    cfg = _physics_cfg(config)
    if not _select(cfg, "fcnn"):
        return None
    return fcnn_hook(cfg, options_from_config(config.loss), **kwargs)
