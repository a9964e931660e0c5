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
from opacity_jax.experiments import spectra
from opacity_jax.models import stage_basis as sb
from opacity_jax.serve.stage_basis import TABLES_FILE, StageBasisSurrogate
from opacity_jax.physics import elements as _el
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


def row_arrays(ds, fit_mask: np.ndarray, score_mask: np.ndarray):
    """EntityData (one data row per element; samples = temperature rows with fit nodes):
    'lt' (log10 T), 'k' (nR, nE) kappa at fit or scored nodes (0 elsewhere) [cm^2/g], 'scale'
    (nE,) row scale, 'fit' / 'score' (nR,) masks, 'row' element position."""
    lt = np.log10(ds.temperature_ev).astype(np.float32)
    rows = []
    for e in range(ds.kappa.shape[0]):
        t_idx = np.nonzero(fit_mask[e].any(1))[0]
        both = fit_mask[e] | score_mask[e]
        k = np.where(both[..., None], ds.kappa[e], 0.0)[t_idx]
        rows.append({"lt": lt[t_idx], "k": k.astype(np.float32),
                     "scale": row_scale(ds.kappa[e], fit_mask[e])[t_idx].astype(np.float32),
                     "fit": fit_mask[e][t_idx].astype(np.float32),
                     "score": score_mask[e][t_idx].astype(np.float32),
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
    spectrum family's (`spectra.evaluate`; `offgrid=N` also scores off-grid points)."""
    return spectra.evaluate(workdir, **options)


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
    return "\n".join(lines)
