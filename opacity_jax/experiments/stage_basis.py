"""The Saha-structured opacity family (`config.model = 'stage_basis'`): train, load, evaluate.

  bin/train --config=configs/stage_basis.py --workdir=runs/sb && bin/evaluate --workdir=runs/sb

Per element (the entity axis of the one training loop) the model of
`opacity_jax.models.stage_basis` is fitted to the training spectra only:

1. Stage window: the charges whose prior fraction (Saha, tabulated ionization energies, unit
   partition functions) exceeds `min_fraction` somewhere on the grid, widened by `stage_margin`.
2. Initial corrections (no network): per temperature row, the boundary corrections dphi that let
   the row's training spectra be unmixed best into stage spectra (`estimate_row_corrections`,
   variable projection, a sweep up and a sweep down in T).
3. The loop: dphi on the log10 T knots (plus free-free and Thomson log scales) minimise the
   variable-projection misfit of every training row, with a curvature penalty coupling
   neighbouring temperatures (rows whose densities cannot pin a boundary borrow it from their
   neighbours) and a small ridge on dphi; early stopping on the validation nodes, scored as the
   error at those nodes of stage spectra fitted without them.
4. Stage spectra: per knot, least squares on that row's training spectra with the final dphi,
   refined by `log_refine_steps` Levenberg-Marquardt steps on the ln-spectrum misfit plus
   `log_refine_linear_weight` x the scaled linear one (the linear fit alone leaves the deep
   windows, which rule the Rosseland mean, up to a decade too opaque), stored as ln A tables
   (`stage_basis_tables.npz`).
"""

from __future__ import annotations

import functools
import hashlib
import io as _io
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from opacity_jax import _compat
from opacity_jax.experiments import ensemble as ens
from opacity_jax.experiments import spectra
from opacity_jax.models import stage_basis as sb
from opacity_jax.serve.stage_basis import (MEMBERS_FILE, TABLES_FILE, StageBasisSurrogate,
                                          load_tables, spec_from_meta)
from opacity_jax.physics import elements as _el
from opacity_jax.physics import planck
from opacity_jax.train import experiment, loop
from opacity_jax.train import workdir as workdir_lib
from opacity_jax.train.task import Task, pack_ragged

LABEL = "stage_basis"
TINY = 1e-300   # stage-spectrum floor [cm^2/g] (ln A stays finite in float32: ln 1e-300 = -691)


# --------------------------------------------------------------------------------------------
# structure from the data (no learning)
def prior_fraction_grid(z: int, temperature_ev, density_gcc) -> np.ndarray:
    """Prior stage fractions (nT, nR, 21) of element z on a T [eV] x rho [g/cm^3] grid."""
    i = _el.element_index(z)
    tt, rr = np.meshgrid(np.asarray(temperature_ev, np.float64), np.asarray(density_gcc, np.float64),
                         indexing="ij")
    with _compat.enable_x64():
        a = jnp.asarray(_el.ATOMIC_WEIGHTS[i], jnp.float64)
        ion = jnp.asarray(_el.IONIZATION_ENERGIES_EV[i], jnp.float64)
        f = jax.jit(jax.vmap(lambda t, r: sb.prior_fractions(t, r, a, ion).fractions))(
            jnp.asarray(tt.ravel()), jnp.asarray(rr.ravel()))
        return np.asarray(f).reshape(tt.shape + (-1,))


def stage_window(fractions: np.ndarray, min_fraction: float, margin: int) -> tuple:
    """(q_lo, q_hi) charges whose prior fraction exceeds min_fraction somewhere, widened by
    `margin` stages on each side (the prior's partition functions are approximate)."""
    kept = np.nonzero(fractions.reshape(-1, fractions.shape[-1]).max(0) > min_fraction)[0]
    q_lo = max(int(kept.min()) - margin, 0)
    q_hi = min(int(kept.max()) + margin, _el.MAX_STAGES - 1)
    return q_lo, q_hi


def row_scale(kappa, known) -> np.ndarray:
    """(nT, nE) per-bin scale of each temperature row: max over its known densities [cm^2/g],
    floored at 1e-37 (float32's normal range) so that bins without any opacity do not divide by
    zero. Every bin is then fitted on its own scale however deep it lies below the row's peak:
    at the coldest rows the Planck weight sits in bins ~40 decades below the line peaks."""
    k = np.where(np.asarray(known)[..., None], np.maximum(np.asarray(kappa, np.float64), 0.0), 0.0)
    return np.maximum(k.max(axis=1), 1e-37)


def estimate_row_corrections(spec, consts, kappa, known, log10_t, log10_rho,
                             restarts: int = 3, steps: int = 80, seed: int = 0) -> np.ndarray:
    """Boundary corrections dphi per temperature row by variable projection (no network).

    At one temperature the absorption of every density must lie in the span of the stage
    fractions x(rho; dphi): for a trial dphi the stage spectra follow by linear least squares
    (`models.stage_basis.row_fit`), and dphi minimises the remaining misfit by Adam. The
    correction (a partition-function ratio) varies smoothly with T, so the rows are solved in a
    sweep up in T, each row starting from the cooler row's solution, from zero and from
    `restarts - 2` random points (N(0, 3^2)), then in a sweep down from the hotter row's solution;
    per row the better of the two sweeps wins.

    Args: spec/consts: one element's (`build`); kappa: (nT, nR, nE) [cm^2/g];
      known: (nT, nR) bool; log10_t: (nT,); log10_rho: (nR,).
    Returns: (S + 1, nT) dphi per row (0 for rows without known nodes).
    """
    s1 = spec.n_stages + 1
    scale = row_scale(kappa, known)
    rng = np.random.default_rng(seed)
    extra = np.concatenate([np.zeros((1, s1)), rng.normal(0.0, 3.0, (max(restarts - 2, 0), s1))])
    k = np.where(np.asarray(known)[..., None], np.asarray(kappa, np.float64), 0.0)
    rows = _row_sweeps(spec, int(steps))(
        jax.tree_util.tree_map(jnp.asarray, consts), jnp.asarray(k, jnp.float32),
        jnp.asarray(scale, jnp.float32), jnp.asarray(known, jnp.float32),
        jnp.asarray(log10_t, jnp.float32), jnp.asarray(log10_rho, jnp.float32),
        jnp.asarray(extra, jnp.float32))
    out = np.array(rows).T                                        # (S+1, nT)
    out[:, ~np.asarray(known).any(1)] = 0.0
    return out.astype(np.float32)


@functools.lru_cache(maxsize=8)
def _row_sweeps(spec, steps: int):
    """The jitted two-sweep solver of `estimate_row_corrections` (compiled once per shape)."""
    import optax
    opt = optax.adam(0.05)
    penalty = 1e-4

    def loss(consts, d, lt, k, sc, m, lr_j):
        p = {"dphi_t": d, "log_s_ff": 0.0, "log_s_es": 0.0}
        return sb.row_loss(consts, spec, p, lt, lr_j, k, sc, m, m) + penalty * jnp.mean(d ** 2)

    def solve(consts, d0, lt, k, sc, m, lr_j):
        def body(carry, _):
            d, st = carry
            g = jax.grad(loss, argnums=1)(consts, d, lt, k, sc, m, lr_j)
            up, st = opt.update(g, st, d)
            return (optax.apply_updates(d, up), st), None
        (d, _), _ = jax.lax.scan(body, (d0, opt.init(d0)), None, length=steps)
        return d, loss(consts, d, lt, k, sc, m, lr_j)

    def sweep(consts, kn, sc, km, lt_j, lr_j, extra):
        # Each row starts from the previous row's solution and from `extra`; best loss wins.
        def step(prev, inp):
            lt, k, s, m = inp
            starts = jnp.concatenate([prev[None], extra], axis=0)
            d_all, l_all = jax.vmap(lambda d0: solve(consts, d0, lt, k, s, m, lr_j))(starts)
            i = jnp.argmin(l_all)
            best = jnp.where(jnp.sum(m) > 0, d_all[i], prev)
            return best, (best, l_all[i])
        return jax.lax.scan(step, jnp.zeros(extra.shape[1:], extra.dtype),
                            (lt_j, kn, sc, km))[1]

    @jax.jit
    def run(consts, kn, sc, km, lt_j, lr_j, extra):
        up, l_up = sweep(consts, kn, sc, km, lt_j, lr_j, extra)
        down, l_down = sweep(consts, kn[::-1], sc[::-1], km[::-1], lt_j[::-1], lr_j, extra[:0])
        return jnp.where((l_down[::-1] < l_up)[:, None], down[::-1], up)

    return run


def build(ds, train_mask: np.ndarray, model_cfg, progress: bool = False) -> tuple:
    """Spec, stacked per-element constants and initial dphi for a dataset and split.

    Args: ds: Dataset (nZ, nT, nR, nE); train_mask: (nZ, nT, nR) bool nodes the model may see;
      model_cfg: the config's `stage_basis` section.
    Returns: (spec, consts (stacked ElementConsts), dphi0 (nZ, S + 1, nT), windows [(q_lo, q_hi)]).
    """
    lt = np.log10(ds.temperature_ev)
    lr = np.log10(ds.density_gcc)
    fr = [prior_fraction_grid(int(z), ds.temperature_ev, ds.density_gcc) for z in ds.elements]
    windows = [stage_window(f, float(model_cfg.min_fraction), int(model_cfg.stage_margin))
               for f in fr]
    n_stages = max(hi - lo + 1 for lo, hi in windows)
    spec = sb.StageBasisSpec(
        n_stages=n_stages, n_energy=int(ds.kappa.shape[-1]), knots_log10_t=tuple(map(float, lt)),
        energy_edges_ev=tuple(map(float, ds.energy_edges_ev)),
        correction=bool(model_cfg.correction))
    consts, dphi0 = [], []
    it = enumerate(ds.elements)
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(list(it), desc="stage_basis init", unit="element", leave=False)
    for e, z in it:
        c = sb.element_consts(int(z), n_stages, windows[e][0], train_mask[e].any(1))
        consts.append(c)
        d = np.zeros((n_stages + 1, lt.size), np.float32)
        if spec.correction and int(model_cfg.row_restarts) > 0:
            d = estimate_row_corrections(spec, c, ds.kappa[e], train_mask[e], lt, lr,
                                         restarts=int(model_cfg.row_restarts),
                                         steps=int(model_cfg.row_steps), seed=int(z))
        dphi0.append(d)
    return spec, sb.stack_consts(consts), np.stack(dphi0), windows


def row_arrays(ds, fit_mask: np.ndarray, score_mask: np.ndarray, element_rows=None):
    """EntityData (one data row per entity; samples = temperature rows with fit nodes):
    'lt' (log10 T), 'k' (nR, nE) kappa at fit or scored nodes (0 elsewhere) [cm^2/g], 'scale'
    (nE,) row scale, 'fit' / 'score' (nR,) masks, 'row' element position.

    fit_mask, score_mask: (nE_ent, nT, nR) bool, one per entity; element_rows: (nE_ent,) the
    element position of each entity (default: entity i is element i; ensemble members are
    extra entities of the same elements with their own masks)."""
    lt = np.log10(ds.temperature_ev).astype(np.float32)
    if element_rows is None:
        element_rows = np.arange(ds.kappa.shape[0])
    rows = []
    for i, e in enumerate(np.asarray(element_rows, int)):
        t_idx = np.nonzero(fit_mask[i].any(1))[0]
        both = fit_mask[i] | score_mask[i]
        k = np.where(both[..., None], ds.kappa[e], 0.0)[t_idx]
        rows.append({"lt": lt[t_idx], "k": k.astype(np.float32),
                     "scale": row_scale(ds.kappa[e], fit_mask[i])[t_idx].astype(np.float32),
                     "fit": fit_mask[i][t_idx].astype(np.float32),
                     "score": score_mask[i][t_idx].astype(np.float32),
                     "row": np.full(t_idx.size, e, np.int32)})
    return pack_ragged(rows)


def make_task(spec, consts, dphi0, log10_rho, penalties: dict) -> Task:
    """The loop's Task: params {'dphi' (S + 1, K), 'log_s_ff', 'log_s_es'} of one element;
    batch = temperature rows (`row_arrays`). penalties: {'dphi': ridge weight, 'smooth':
    curvature weight}."""
    consts_j = jax.tree_util.tree_map(jnp.asarray, consts)
    dphi0_j = jnp.asarray(dphi0)
    lr_j = jnp.asarray(log10_rho, jnp.float32)
    knots = jnp.asarray(spec.knots_log10_t, jnp.float32)

    def pick(r):
        return jax.tree_util.tree_map(lambda a: a[r], consts_j)

    def init(rng, batch):
        r = batch["row"][0]
        return {"dphi": dphi0_j[r], "log_s_ff": jnp.zeros((), jnp.float32),
                "log_s_es": jnp.zeros((), jnp.float32)}

    def rows_loss(params, batch, score_key):
        c = pick(batch["row"][0])

        def one(lt, k, s, fm, sm):
            p = {"dphi_t": sb.interp_values(knots, c.knot_mask, lt, params["dphi"]),
                 "log_s_ff": params["log_s_ff"],
                 "log_s_es": params["log_s_es"]}
            return sb.row_loss(c, spec, p, lt, lr_j, k, s, fm, sm)

        per = jax.vmap(one)(batch["lt"], batch["k"], batch["scale"], batch["fit"],
                            batch[score_key])
        w = batch["weight"] * (jnp.sum(batch[score_key], axis=-1) > 0)
        return jnp.sum(per * w) / jnp.maximum(jnp.sum(w), 1.0), c

    def loss(params, batch, rng):
        val, c = rows_loss(params, batch, "fit")
        pen = penalties["smooth"] * sb.smoothness_penalty(params["dphi"], spec.knots_log10_t,
                                                          c.knot_mask)
        pen = pen + penalties["dphi"] * jnp.mean(params["dphi"] ** 2)
        return val + pen, {"data": val}

    def eval_loss(params, batch):
        return rows_loss(params, batch, "score")[0], {}

    return Task(LABEL, init, loss, eval_loss)


def stage_tables(spec, consts, params, ds, fit_mask, log_refine_steps: int = 0,
                 linear_weight: float = 0.0) -> np.ndarray:
    """ln A (nZ, S, K, nE) [ln cm^2/g] per knot from the fitted corrections: least squares on
    the knot's training densities, then `log_refine_steps` Levenberg-Marquardt steps in log space
    (`models.stage_basis.log_refine` with `linear_weight`; 0 steps keep the linear fit).
    Knots without training data copy the nearest valid knot (never used: interpolation skips
    them)."""
    lr_j = jnp.asarray(np.log10(ds.density_gcc), jnp.float32)

    def one(c, p, lt, k, s, m):
        q = {"dphi_t": p["dphi"][:, jnp.argmin(jnp.abs(jnp.asarray(spec.knots_log10_t) - lt))],
             "log_s_ff": p["log_s_ff"], "log_s_es": p["log_s_es"]}
        a, x, cont = sb.row_fit(c, spec, q, lt, lr_j, k, s, m)
        if log_refine_steps <= 0:
            return a
        return sb.log_refine(x, cont, k, m, a, log_refine_steps, linear_weight)

    f = jax.jit(jax.vmap(one, in_axes=(None, None, 0, 0, 0, 0)))
    lt = jnp.asarray(np.log10(ds.temperature_ev), jnp.float32)
    out = []
    for e in range(ds.kappa.shape[0]):
        c = jax.tree_util.tree_map(lambda a: jnp.asarray(a)[e], consts)
        p = jax.tree_util.tree_map(lambda a: jnp.asarray(a)[e], params)
        m = fit_mask[e]
        k = np.where(m[..., None], ds.kappa[e], 0.0)
        sc = row_scale(ds.kappa[e], m)
        a = np.asarray(f(c, p, lt, jnp.asarray(k, jnp.float32), jnp.asarray(sc, jnp.float32),
                         jnp.asarray(m, jnp.float32)), np.float64)    # (K, S, nE)
        # The refined fit is already ln A (float32 would underflow A itself below 1e-45).
        la = a if log_refine_steps > 0 else np.log(np.maximum(a, TINY))
        valid = np.nonzero(m.any(1))[0]
        for i in np.nonzero(~m.any(1))[0]:
            la[i] = la[valid[np.argmin(np.abs(valid - i))]]
        out.append(np.swapaxes(la, 0, 1))
    return np.stack(out).astype(np.float32)


def fit(ds, train_mask, val_mask, config, workdir=None, progress: bool = True, meta=None):
    """Fit the model to the training nodes (early stopping on the validation nodes).

    Returns (spec, consts, params (stacked over elements, with 'log_a'), TrainResult, windows).
    """
    mc = config.stage_basis
    spec, consts, dphi0, windows = build(ds, train_mask, mc, progress=progress)
    task = make_task(spec, consts, dphi0, np.log10(ds.density_gcc),
                     {"dphi": float(mc.dphi_penalty), "smooth": float(mc.smooth_penalty)})
    tr = row_arrays(ds, train_mask, train_mask)
    va = row_arrays(ds, train_mask, val_mask)
    d = dict(config.train)
    d.setdefault("seed", int(config.seed))
    res = loop.train(task, tr, va, loop.LoopConfig.from_config(d), workdir, meta=meta,
                     progress=progress, label=LABEL)
    params = jax.tree_util.tree_map(np.asarray, res.params)
    params["log_a"] = stage_tables(spec, consts, params, ds, train_mask,
                                   int(mc.get("log_refine_steps", 0)),
                                   float(mc.get("log_refine_linear_weight", 0.0)))
    return spec, consts, params, res, windows


# --------------------------------------------------------------------------------------------
# jackknife members and calibrated intervals
#
#   bin/train --config=configs/stage_basis.py --workdir=runs/sb
#   bin/train_ensemble --workdir=runs/sb --members=8        # adds stage_basis_members.npz
#   bin/evaluate --workdir=runs/sb                          # + eval/ensemble_calibration.json
#
# Why jackknife members and not independent seeds: the fit is deterministic given its training
# nodes (least squares + a smooth correction), so reseeded copies agree and their spread says
# nothing. What decides a held-out node's error is how strongly the fit leans on the nodes
# around it. Member k drops fold k of a seeded K-fold partition of every element's training
# nodes and re-fits on the rest: its stage spectra, and with --epochs > 0 also the corrections
# (warm-started; sharper per bin and for kappa_R, not for kappa_P, at twice the cost:
# reports/stage_basis_intervals/README.md). Where the
# members disagree the fit is fragile, and that is where held-out nodes come out wrong.
#
# Intervals: the point prediction stays the full fit's (it saw every training node); the spread
# s = std over members of log10 x (x = kappa per bin, kappa_P, kappa_R) sets the width,
# 10 ** (log10 x +- q_L (s + beta)). Split conformal on the validation nodes, which the stage
# spectra never saw (they only early-stop the correction): beta is chosen on one half of them
# (`ensemble.select_beta`, the narrowest median interval), q_L fitted on the other half
# (`ensemble.fit_conformal`). `calibrate` judges them on the test nodes: coverage at 68 / 95 %
# and the efficiency = median 95 % half-width / median |error| (2.9 for Gaussian errors with a
# known sigma), next to a constant-width conformal interval on the same nodes, so the gain from
# the spread is visible. A level whose multiplier is not finite, or every level when the
# members agree exactly almost everywhere, is marked degenerate and `interval` refuses it;
# where the spread does not narrow the intervals on the beta half, it is dropped (constant
# width, `spread_weight` 0 in the calibration file).
MEMBERS_LABEL = "stage_basis_members"
RESOLVED_CM2_G = float(np.finfo(np.float32).tiny)   # 1.2e-38: bins below are not resolved
QUANTITIES = ("log_kappa", "log_planck", "log_rosseland")


def jackknife_masks(train_mask: np.ndarray, members: int, seed: int) -> np.ndarray:
    """(K, nZ, nT, nR) bool: member k's training nodes = the training nodes outside fold k of a
    seeded, uniform K-fold partition (each node in exactly one fold).

    Args: train_mask: (nZ, nT, nR) bool; members: K >= 2; seed: partition seed."""
    if int(members) < 2:
        raise ValueError(f"members must be >= 2 for a spread, got {members}")
    fold = np.random.default_rng(int(seed)).integers(0, int(members), train_mask.shape)
    return np.stack([train_mask & (fold != k) for k in range(int(members))])


def fit_members(ds, meta: dict, params: dict, train_mask, val_mask, config, members: int,
                epochs: int, seed: int, progress: bool = False) -> dict:
    """Re-fit the model K times, each without one fold of the training nodes.

    With epochs = 0 each member keeps the full fit's corrections dphi and re-fits its stage
    spectra only (the cheap default: one least-squares + log-refine pass per member); with
    epochs > 0 the corrections are re-fitted too, warm-started at the full fit's, for that
    many epochs of the one training loop (every member x element an entity of one vmap'd step).

    Args: ds: the run's Dataset; meta / params: the full fit (model.json, stage tables);
      train_mask, val_mask: (nZ, nT, nR) bool; config: the run's config; members: K;
      epochs: >= 0; seed: fold partition seed.
    Returns: {'dphi', 'log_s_ff', 'log_s_es', 'log_a'}: arrays (K, nZ, ...) as in params.
    """
    mc = config.stage_basis
    spec, consts = spec_from_meta(meta)
    masks = jackknife_masks(train_mask, members, seed)
    n_z = ds.kappa.shape[0]
    k_all = masks.shape[0]
    names = ("dphi", "log_s_ff", "log_s_es")
    if int(epochs) > 0:
        task = make_task(spec, consts, params["dphi"], np.log10(ds.density_gcc),
                         {"dphi": float(mc.dphi_penalty), "smooth": float(mc.smooth_penalty)})
        fit = masks.reshape((k_all * n_z,) + train_mask.shape[1:])
        rows = np.tile(np.arange(n_z), k_all)
        score = np.broadcast_to(val_mask, (k_all,) + val_mask.shape).reshape(fit.shape)
        d = dict(config.train)
        d["epochs"] = int(epochs)
        d.setdefault("seed", int(config.seed))
        res = loop.train(task, row_arrays(ds, fit, fit, rows), row_arrays(ds, fit, score, rows),
                         loop.LoopConfig.from_config(d), None, progress=progress,
                         label=MEMBERS_LABEL)
        corr = [{n: np.asarray(res.params[n])[k * n_z:(k + 1) * n_z] for n in names}
                for k in range(k_all)]
    else:
        corr = [{n: np.asarray(params[n]) for n in names} for _ in range(k_all)]
    out = {k: [] for k in names + ("log_a",)}
    it = range(k_all)
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(it, desc="stage_basis members", unit="member", leave=False)
    for k in it:
        pk = dict(corr[k])
        pk["log_a"] = stage_tables(spec, consts, pk, ds, masks[k],
                                   int(mc.get("log_refine_steps", 0)),
                                   float(mc.get("log_refine_linear_weight", 0.0)))
        for n in out:
            out[n].append(np.asarray(pk[n], np.float32))
    return {n: np.stack(v) for n, v in out.items()}


def train_members(workdir, members: int = 8, epochs=None, seed=None, overwrite: bool = False,
                  progress: bool = True) -> dict:
    """Add K jackknife members to a trained stage_basis workdir (see the module docstring).

    Writes <workdir>/stage_basis_members.npz and model.json['ensemble'] = {'members', 'kind',
    'epochs', 'fold_seed', 'sha256', 'upstream_tables_sha256'}; the recorded digest of the full
    fit's tables makes the members stale (refused on load) once the full fit changes.

    Args: workdir: a stage_basis run (bin/train); members: K >= 2; epochs: loop epochs per
      member for re-fitting the corrections (default 0: stage spectra only, see
      `fit_members`); seed: fold seed (default config.seed + 11); overwrite: replace members
      fitted with other settings.
    Returns: summary dict (members, epochs, seconds).
    """
    workdir = Path(workdir)
    mf = workdir_lib.model_path(workdir)
    meta = workdir_lib.read_model_meta(workdir, "train the model first: bin/train")
    if meta.get("model") != LABEL:
        raise ValueError(f"{mf}: model is {meta.get('model')!r}, not {LABEL!r}")
    if int(members) < 2:
        raise ValueError(f"--members must be >= 2 for a spread, got {members}")
    cfg = workdir_lib.read_config(workdir)
    epochs = 0 if epochs is None else int(epochs)
    if epochs < 0:
        raise ValueError(f"--epochs must be >= 0 (0: stage spectra only), got {epochs}")
    seed = int(cfg.seed) + 11 if seed is None else int(seed)
    want = {"members": int(members), "kind": "jackknife", "epochs": epochs, "fold_seed": seed,
            "upstream_tables_sha256": meta["stage_basis"]["tables_sha256"]}
    old = meta.get("ensemble")
    path = workdir / MEMBERS_FILE
    if old and path.exists():
        same = all(old.get(k) == v for k, v in want.items())
        if same:
            return {"members": int(members), "epochs": epochs, "seconds": 0.0, "reused": True}
        if not overwrite:
            diff = sorted(k for k, v in want.items() if old.get(k) != v)
            raise ValueError(f"{path} holds members fitted with other settings ({', '.join(diff)}"
                             f"); pass --overwrite to replace them")
    t0 = time.perf_counter()
    params = load_tables(workdir / TABLES_FILE, meta["stage_basis"]["tables_sha256"])
    ds = experiment.load_data(cfg.data)
    if ds.elements.tolist() != meta["elements"]:
        raise ValueError(f"dataset elements {ds.elements.tolist()} differ from the model's "
                         f"{meta['elements']} in {mf}")
    train, val = experiment.node_mask(meta, "train"), experiment.node_mask(meta, "val")
    arrays = fit_members(ds, meta, params, train, val, cfg, members, epochs, seed, progress)
    sha = save_tables(path, arrays)
    meta["ensemble"] = dict(want, sha256=sha)
    workdir_lib.write_model_meta(workdir, meta)
    return {"members": int(members), "epochs": epochs,
            "seconds": round(time.perf_counter() - t0, 1)}


def _node_values(s, ds, e: int, ti, ri):
    """Per-node arrays of element position e at nodes (ti, ri): the truth, the full fit and
    the members, each as log10 per bin (N, nE) / (K, N, nE) and log10 kappa_P, kappa_R."""
    z = int(ds.elements[e])
    t, r = ds.temperature_ev[ti], ds.density_gcc[ri]
    truth = ds.kappa[e, ti, ri].astype(np.float64)
    main = np.log(s.spectrum(z, t, r).astype(np.float64))
    mem = np.log(s.spectrum_members(z, t, r).astype(np.float64))
    out = {"truth_lk": np.log10(np.maximum(truth, 1e-300)), "main_lk": main / np.log(10),
           "mem_lk": mem / np.log(10), "resolved": truth > RESOLVED_CM2_G}
    with _compat.enable_x64():
        edges = s.energy_edges_ev
        for q, fn in (("planck", planck.planck_mean), ("rosseland", planck.rosseland_mean)):
            tj = jnp.asarray(t, jnp.float64)
            pt = np.asarray(fn(jnp.asarray(truth), edges, tj))
            pm = np.asarray(fn(jnp.asarray(np.exp(main)), edges, tj))
            pk = np.stack([np.asarray(fn(jnp.asarray(np.exp(m)), edges, tj)) for m in mem])
            out[f"truth_{q}"] = np.log10(np.maximum(pt, 1e-300))
            out[f"main_{q}"] = np.log10(np.maximum(pm, 1e-300))
            out[f"mem_{q}"] = np.log10(np.maximum(pk, 1e-300))
    return out


def residuals_and_spreads(s, ds, mask) -> dict:
    """{quantity: (residual, spread)} in dex over the nodes of `mask` (nZ, nT, nR): residual
    = log10 full-fit prediction - log10 truth, spread = std over members of log10; only where
    the truth (per bin, or the node's mean) is resolved, > 1.2e-38 cm^2/g."""
    acc = {q: ([], []) for q in QUANTITIES}
    for e in range(ds.kappa.shape[0]):
        ti, ri = np.nonzero(mask[e])
        if ti.size == 0:
            continue
        v = _node_values(s, ds, e, ti, ri)
        ok = v["resolved"]
        acc["log_kappa"][0].append((v["main_lk"] - v["truth_lk"])[ok])
        acc["log_kappa"][1].append(v["mem_lk"].std(0)[ok])
        for q in ("planck", "rosseland"):
            # As the honest table: a mean below float32's normal range is resolved by no table.
            ok = v[f"truth_{q}"] > np.log10(RESOLVED_CM2_G)
            acc[f"log_{q}"][0].append((v[f"main_{q}"] - v[f"truth_{q}"])[ok])
            acc[f"log_{q}"][1].append(v[f"mem_{q}"].std(0)[ok])
    return {q: tuple(np.concatenate(a) if a else np.zeros(0) for a in pair)
            for q, pair in acc.items()}


def calibrate(workdir, out_dir=None, make_figures: bool = True) -> dict:
    """Fit the conformal multipliers on the validation nodes and score them on the test nodes.

    Writes <out_dir or workdir/eval>/ensemble_calibration.json (read by
    `StageBasisSurrogate.interval`) and ensemble_reliability.png. Returns the report dict:
    {quantity: {'multipliers', 'degenerate_levels', 'test' (ensemble.interval_scores),
    'test_constant_width' (the same with sigma = 1, fitted on the same validation nodes), 'n_val'}}.
    """
    workdir = Path(workdir)
    s = StageBasisSurrogate.load(workdir, on_domain_error="warn", outside="ignore")
    if s.members < 2:
        raise ValueError(f"{workdir} holds no members: run bin/train_ensemble --workdir="
                         f"{workdir} first")
    meta = s.meta
    ds = experiment.load_data(workdir_lib.read_config(workdir).data)
    val = residuals_and_spreads(s, ds, experiment.node_mask(meta, "val"))
    test = residuals_and_spreads(s, ds, experiment.node_mask(meta, "test"))
    # beta is chosen on one seeded half of the validation points and q_L fitted on the other,
    # so the coverage guarantee of split conformal holds for the fitted pair.
    report, curves = {}, {}
    for q in QUANTITIES:
        rv, sv = val[q]
        rt, st = test[q]
        half = np.random.default_rng(int(meta["split"]["seed"]) + 13).random(rv.size) < 0.5
        beta = ens.select_beta(rv[half], sv[half])
        conf = ens.fit_conformal(rv[~half], sv[~half], beta=beta)
        const = ens.fit_conformal(rv, np.ones_like(rv), beta=0.0)
        # Where the spread does not narrow the intervals on the beta half (it misses where the
        # errors are), the members' spread is dropped: constant width (spread_weight 0).
        c_half = ens.fit_conformal(rv[half], np.zeros(int(half.sum())), beta=1.0)
        s_half = ens.fit_conformal(rv[half], sv[half], beta=beta)
        usable = [k for k in ("0.95", "0.68") if np.isfinite(c_half[k] + s_half[k])]
        if usable and s_half[usable[0]] * float(np.median(sv[half] + beta)) >= \
                c_half[usable[0]]:
            conf = dict(ens.fit_conformal(rv[~half], np.zeros(int((~half).sum())), beta=1.0),
                        spread_weight=0.0)
        else:
            conf["spread_weight"] = 1.0
        report[q] = {"multipliers": conf, "degenerate_levels": ens.degenerate_levels(conf, sv),
                     "test": ens.interval_scores(rt, conf["spread_weight"] * st, conf),
                     "test_constant_width": ens.interval_scores(rt, np.ones_like(rt), const),
                     "n_val": int(rv.size), "n_val_beta": int(half.sum())}
        lv = np.asarray(ens.DEFAULT_LEVELS)
        full = ens.fit_conformal(rv[~half], conf["spread_weight"] * sv[~half],
                                 ens.DEFAULT_LEVELS, beta=conf["beta"])
        curves[f"{q} test (conformal on member spread)"] = (
            lv, np.asarray(list(ens.conformal_coverage(rt, conf["spread_weight"] * st,
                                                       full).values())))
    out = Path(out_dir) if out_dir is not None else workdir_lib.eval_dir(workdir)
    workdir_lib.write_json(out / "ensemble_calibration.json",
                           {"workdir": str(workdir), "members": s.members, "kind": "jackknife",
                            "center": "full fit", "scale_fitted_on": "validation nodes",
                            "quantities": report})
    if make_figures:
        ens.plot_reliability(curves, out / "ensemble_reliability.png",
                             f"stage basis, {s.members} jackknife members, test nodes")
    return report


def interval_table(report: dict) -> str:
    """Markdown table of `calibrate`'s report: coverage and efficiency of the spread-scaled
    and the constant-width intervals on the test nodes."""
    lines = ["| quantity (dex) | n test | median abs error | 68 % coverage | 95 % coverage | "
             "efficiency (95 %) | constant width: 95 % coverage | constant width: efficiency |",
             "|---|---|---|---|---|---|---|---|"]
    for q, r in report.items():
        t, c = r["test"], r["test_constant_width"]
        bad = r["degenerate_levels"]
        flag = f" (no interval at {', '.join(bad)})" if bad else ""
        lines.append(f"| {q}{flag} | {t['n']} | {t['median_abs_error_dex']:.3g} | "
                     f"{100 * t['coverage_0.68']:.1f} % | {100 * t['coverage_0.95']:.1f} % | "
                     f"{t['efficiency_0.95']:.3g} | {100 * c['coverage_0.95']:.1f} % | "
                     f"{c['efficiency_0.95']:.3g} |")
    return "\n".join(lines)


def spec_to_meta(spec, consts, windows) -> dict:
    """JSON-serialisable description of the model (everything `load` needs besides params)."""
    return {"n_stages": spec.n_stages, "n_energy": spec.n_energy,
            "knots_log10_t": list(spec.knots_log10_t), "correction": spec.correction,
            "windows": [list(map(int, w)) for w in windows],
            "knot_mask": np.asarray(consts.knot_mask).astype(int).tolist(),
            "prior": "Saha with tabulated ionization energies and unit partition functions"}


def save_tables(path: Path, params) -> str:
    """Write the fitted arrays as a plain .npz (atomic); returns its SHA-256."""
    buf = _io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in params.items()})
    data = buf.getvalue()
    workdir_lib.write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


ARCHITECTURE = {LABEL: ("stage_basis.min_fraction", "stage_basis.stage_margin",
                        "stage_basis.correction")}   # train.workdir.fingerprint


ALLOWED = {"min_fraction": "in (0, 1)", "stage_margin": "an integer >= 0",
           "row_restarts": "an integer >= 0", "row_steps": "an integer >= 1",
           "dphi_penalty": "finite and >= 0", "smooth_penalty": "finite and >= 0"}


def validate(config) -> None:
    """Config checks that need no data (experiment.validate_config runs them before any work);
    ValueError naming the field."""
    experiment.check_spectrum_data(config.data, scaling=False)
    mc = config.stage_basis
    for key, ok in (("min_fraction", 0 < float(mc.min_fraction) < 1),
                    ("stage_margin", int(mc.stage_margin) >= 0),
                    ("row_restarts", int(mc.row_restarts) >= 0),
                    ("row_steps", int(mc.row_steps) >= 1),
                    ("log_refine_steps", int(mc.get("log_refine_steps", 0)) >= 0),
                    ("log_refine_linear_weight",
                     np.isfinite(float(mc.get("log_refine_linear_weight", 0.0)))
                     and float(mc.get("log_refine_linear_weight", 0.0)) >= 0),
                    ("dphi_penalty", np.isfinite(float(mc.dphi_penalty))
                     and float(mc.dphi_penalty) >= 0),
                    ("smooth_penalty", np.isfinite(float(mc.smooth_penalty))
                     and float(mc.smooth_penalty) >= 0)):
        if not ok:
            raise ValueError(f"stage_basis.{key} = {mc[key]!r} is out of range (allowed: "
                             f"{ALLOWED[key]})")


def train(config, workdir, progress: bool = True) -> dict:
    """Train the family into `workdir` (resuming the loop stage); writes the tables and
    model.json. Returns a summary dict."""
    validate(config)
    workdir = Path(workdir)
    t0 = time.perf_counter()
    seed = int(config.seed)
    ds = experiment.load_data(config.data)
    train_m, val_m, test_m = experiment.make_split_masks(ds, config.data, seed)
    scaling = experiment.fit_scaling(ds, train_m, "log", 1e-30)
    meta = spectra.base_meta(config, ds, scaling, train_m, val_m, test_m)
    spec, consts, params, res, windows = fit(ds, train_m, val_m, config, workdir, progress, meta)
    meta["stage_basis"] = spec_to_meta(spec, consts, windows)
    meta["stage_basis"]["tables_sha256"] = save_tables(workdir / TABLES_FILE, params)
    summary = {LABEL: {"epochs_run": res.epochs_run, "seconds": round(res.seconds, 1),
                       "best_val_mean": float(np.mean(res.best_val))},
               "seconds_total": round(time.perf_counter() - t0, 1)}
    meta["train_summary"] = summary
    workdir_lib.write_model_meta(workdir, meta)
    return summary


def load(workdir, **options):
    """`StageBasisSurrogate.load(workdir, **options)` (on_domain_error, chunk)."""
    return StageBasisSurrogate.load(workdir, **options)


def evaluate(workdir, **options) -> dict:
    """Held-out evaluation with every training-free interpolant in the same table, as the
    spectrum family's (`spectra.evaluate`; `offgrid=N` also scores off-grid points); with
    jackknife members (bin/train_ensemble) also the calibrated intervals
    (`calibrate`, eval/ensemble_calibration.json)."""
    m = spectra.evaluate(workdir, **options)
    meta = workdir_lib.read_model_meta(workdir)
    if meta.get("ensemble") and (Path(workdir) / MEMBERS_FILE).exists():
        rep = calibrate(workdir, make_figures=bool(options.get("make_figures", True)))
        m["intervals"] = {"members": int(meta["ensemble"]["members"]), "report": rep,
                          "table": interval_table(rep)}
    return m


def report(m: dict) -> str:
    """The text bin/evaluate prints: the honest table (and the off-grid one when run)."""
    lines = [f"{m['n_test_spectra']} held-out spectra ({m['split']} split), {m['n_energy']} bins",
             "", m["honest_table"], f"(table: {m['workdir']}/eval/report.md)"]
    if "offgrid" in m:
        o = m["offgrid"]
        lines += ["", f"off-grid: {o['n_points_per_element']} random (T, rho) per element "
                  f"(eval/offgrid.md)", o["table"],
                  "Planck-weighted derivative error vs generator differences (band-covered): "
                  + ", ".join(f"{k} median {v.get('median', float('nan')):.3g} p95 "
                              f"{v.get('p95', float('nan')):.3g}"
                              for k, v in o["derivatives_planck_weighted_rel_err_covered"].items())]
    if "intervals" in m:
        lines += ["", f"intervals from {m['intervals']['members']} jackknife members, conformal "
                  "on the validation nodes, scored on the test nodes "
                  "(eval/ensemble_calibration.json):", m["intervals"]["table"]]
    return "\n".join(lines)
