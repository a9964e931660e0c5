"""Deep ensembles on the entity axis, predictive moments, calibration, and ensemble Surrogates.

An ensemble of K members of any model is K more entities for the one training loop:
`train_ensemble` calls `EntityData.replicate(K)` (element x member entities sharing data rows,
each with its own PRNG stream: its own initialisation, dropout and shuffles) and `loop.train`,
so K members of 28 elements compile and train as one vmap'd step. A member trained inside an
ensemble is bit-identical to the same member trained alone (same entity id => same stream).

Predictive distribution (Lakshminarayanan et al. 2017): members give means mu_k and, for a
`GaussianMLP`, variances s_k^2; the ensemble is the equal-weight mixture, with mean
mean_k(mu_k) and variance mean_k(s_k^2) + var_k(mu_k). Plain regressors (MSE) give the spread
var_k(mu_k) only.

Calibration: `interval_coverage` (fraction of residuals inside the central Gaussian intervals
at the given levels), `fit_sigma_scale` (one factor on sigma that best matches observed to
nominal coverage over levels 5 %..95 %, fitted on a calibration split that must be disjoint
from the points it is later judged on), `fit_sigma_model` (sigma' = sqrt((a sigma)^2 + b^2):
a scale plus an error floor shared by all members, which their spread cannot show),
`fit_conformal` (split-conformal multipliers per level: distribution-free, so heavy-tailed
residuals are covered at 68 % and 95 % at once), `plot_reliability`.

Ensembles are served by `opacity_jax.serve.surrogate.Surrogate` (`return_std=True`): an FC-NN trained
with `fcnn.ensemble = K` (one vmap'd run, element x member entities), or a CAE run whose latent
MLP was trained as an ensemble by `train_latent_ensemble` (bin/train_ensemble; load with
`ensemble=True`). `EnsembleSurrogate` is the (mean, std) view of either; `calibrate_workdir`
reports coverage on the run's test nodes, with the sigma scale fitted on its validation nodes,
and draws the reliability plot. Cross-section nets: `xsec.ensemble = K` (XsecSurrogate).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special as _special

from opacity_jax.losses import data as data_losses
from opacity_jax.models.mlp import GaussianMLP
from opacity_jax.train import loop
from opacity_jax.train import workdir as workdir_lib
from opacity_jax.train.workdir import write_json
from opacity_jax.train.task import EntityData, Task

ENSEMBLE_LABEL = "latent_mlp_ensemble"
DEFAULT_LEVELS = tuple(np.round(np.arange(0.05, 0.951, 0.05), 2).tolist())


# --------------------------------------------------------------------------------------------
# models and tasks
def gaussian_nll_task(model: GaussianMLP, name: str = "gaussian_mlp", beta: float = 0.5,
                      x_key: str = "x", y_key: str = "y") -> Task:
    """Heteroscedastic regression task: training loss = beta-NLL, validation loss = MSE of mu.

    beta-NLL (Seitzer et al. 2022) weights each point's Gaussian NLL by stop_grad(var)^beta;
    beta = 0 is the plain NLL, which lets the mean under-fit hard points by inflating their
    variance. Validation (early stopping) uses the mean's MSE, i.e. accuracy first.
    batch[x_key] (B, n_in), batch[y_key] (B, n_out) standardized targets, batch['weight'] (B,).
    """
    def init(rng, batch):
        return model.init(rng, batch[x_key])

    def loss(params, batch, rng):
        mu, log_var = model.apply(params, batch[x_key])
        var = jnp.exp(log_var)
        nll = 0.5 * (log_var + (batch[y_key] - mu) ** 2 / var)
        if beta:
            nll = nll * jax.lax.stop_gradient(var) ** beta
        return data_losses.masked_mean(jnp.sum(nll, -1), batch["weight"]), {}

    def eval_loss(params, batch):
        mu, _ = model.apply(params, batch[x_key])
        return data_losses.mse(mu, batch[y_key], batch["weight"]), {}

    return Task(name, init, loss, eval_loss)


# --------------------------------------------------------------------------------------------
# training
@dataclasses.dataclass
class EnsembleResult:
    """Outcome of `train_ensemble`.

    params: pytree with leading axis n_entities * members (member-fastest, as
      `EntityData.replicate`); `member_params` reshapes it to (n_entities, members, ...).
    n_entities, members: the two factors; result: the loop's TrainResult.
    """

    params: object
    n_entities: int
    members: int
    result: loop.TrainResult

    def member_params(self):
        """Params with leading axes (n_entities, members)."""
        return jax.tree_util.tree_map(
            lambda a: a.reshape((self.n_entities, self.members) + a.shape[1:]), self.params)


def train_ensemble(task: Task, train_data: EntityData, val_data: EntityData,
                   cfg: loop.LoopConfig, members: int, workdir=None, label: str = "ensemble",
                   meta: Optional[dict] = None, progress: bool = False,
                   trainer: Optional[loop.Trainer] = None) -> EnsembleResult:
    """K members per entity of `train_data`, trained together by the shared loop.

    Args:
      task: any Task (FC-NN, latent MLP, cross-section net, GaussianMLP...).
      train_data / val_data: EntityData with n_entities entities (one data row each or shared).
      cfg: LoopConfig (its seed, with each member's entity id, seeds the member's stream).
      members: K >= 1. workdir / label / meta / progress / trainer: passed to `loop.train`
        (reuse one `loop.Trainer(task, cfg)` across calls with equal shapes to compile once).
    Returns:
      EnsembleResult with params of leading axis n_entities * K.
    """
    members = int(members)
    if members < 1:
        raise ValueError(f"ensemble members must be >= 1, got {members}")
    tr, va = train_data.replicate(members), val_data.replicate(members)
    res = loop.train(task, tr, va, cfg, workdir, meta=meta, progress=progress, label=label,
                     trainer=trainer)
    return EnsembleResult(res.params, train_data.n_entities, members, res)


def predict_members(apply_fn: Callable, params, x: np.ndarray, chunk: int = 65536):
    """Apply every member (leading params axis M) to the same inputs, in chunks.

    Args:
      apply_fn: (params of one member, (B, n_in)) -> array or tuple of arrays (B, ...).
      params: pytree with leading member axis M. x: (N, n_in) float32.
    Returns:
      numpy array(s) (M, N, ...), mirroring apply_fn's output structure.
    """
    try:
        f = _PREDICT_CACHE.get(apply_fn)
    except TypeError:       # unhashable apply_fn: no reuse
        f = None
    if f is None:
        f = jax.jit(jax.vmap(apply_fn, in_axes=(0, None)))
        try:
            _PREDICT_CACHE[apply_fn] = f
        except TypeError:
            pass
    outs = []
    for i in range(0, max(len(x), 1), chunk):
        xb = np.asarray(x[i:i + chunk])
        n = len(xb)
        # Pad to a power of two so calls with different N reuse a few compiled shapes.
        size = min(chunk, max(256, 1 << max(n - 1, 1).bit_length()))
        pad = np.zeros((size - n,) + xb.shape[1:], xb.dtype)
        out = f(params, jnp.asarray(np.concatenate([xb, pad])))
        outs.append(jax.tree_util.tree_map(lambda a: np.asarray(a)[:, :n], out))
    return jax.tree_util.tree_map(lambda *a: np.concatenate(a, axis=1), *outs)


_PREDICT_CACHE: dict = {}


def mixture_moments(mu, var=None, axis: int = 0):
    """Mean and standard deviation of an equal-weight mixture of members along `axis`.

    Args:
      mu: (..., M, ...) member means; var: same shape member variances, or None (spread only).
    Returns:
      (mean, std) with `axis` removed; std^2 = mean(var) + var(mu) (population variance).
    """
    mu = np.asarray(mu, np.float64)
    mean = mu.mean(axis)
    total = mu.var(axis)
    if var is not None:
        total = total + np.asarray(var, np.float64).mean(axis)
    return mean, np.sqrt(total)


# --------------------------------------------------------------------------------------------
# calibration
def z_of_level(levels) -> np.ndarray:
    """Half-widths (in sigma) of the central Gaussian intervals with the given coverages."""
    levels = np.asarray(levels, np.float64)
    if np.any((levels <= 0) | (levels >= 1)):
        raise ValueError(f"coverage levels must lie in (0, 1), got {levels.tolist()}")
    return _special.ndtri(0.5 + levels / 2)


def interval_coverage(residual, sigma, levels=(0.68, 0.95)) -> Dict[str, float]:
    """Observed fraction of |residual| <= z(level) * sigma for each nominal level.

    Args:
      residual: (N,) prediction - truth; sigma: (N,) predicted standard deviation (same units).
      levels: nominal central-interval coverages in (0, 1).
    Returns:
      {f"{level:g}": fraction} (NaN when N = 0).
    """
    r = np.abs(np.asarray(residual, np.float64)).ravel()
    s = np.asarray(sigma, np.float64).ravel()
    if r.shape != s.shape:
        raise ValueError(f"residual {r.shape} and sigma {s.shape} differ in size")
    out = {}
    for lvl, z in zip(np.atleast_1d(levels), z_of_level(np.atleast_1d(levels))):
        out[f"{float(lvl):g}"] = float(np.mean(r <= z * s)) if r.size else float("nan")
    return out


def reliability_curve(residual, sigma, levels=DEFAULT_LEVELS):
    """(levels (L,), observed coverage (L,)) for a reliability plot."""
    cov = interval_coverage(residual, sigma, levels)
    return np.asarray(levels, np.float64), np.asarray(list(cov.values()))


def fit_sigma_scale(residual, sigma, levels=DEFAULT_LEVELS, bounds=(1e-3, 1e4),
                    n_grid: int = 801) -> float:
    """One factor s on sigma minimising sum over levels of |coverage(s sigma) - level|.

    Matching the whole reliability curve (rather than maximising the Gaussian likelihood)
    keeps heavy-tailed residuals from inflating sigma everywhere. Fit it on a calibration split
    disjoint from the points it will be judged on.

    Args:
      residual, sigma: (N,) calibration residuals and predicted standard deviations.
      levels: nominal levels; bounds: search range of s (log grid of n_grid points).
    Returns:
      s (float); 1.0 when there are no calibration points.
    """
    r = np.abs(np.asarray(residual, np.float64)).ravel()
    s = np.maximum(np.asarray(sigma, np.float64).ravel(), 1e-300)
    if r.size == 0:
        return 1.0
    ratio = np.sort(r / s)
    z = z_of_level(levels)
    grid = np.geomspace(bounds[0], bounds[1], n_grid)
    # coverage(scale) at level l = fraction of ratio <= z_l * scale: one searchsorted per level.
    cov = np.searchsorted(ratio, z[None, :] * grid[:, None], side="right") / ratio.size
    err = np.abs(cov - np.asarray(levels)[None, :]).sum(1)
    return float(grid[int(np.argmin(err))])


def fit_sigma_model(residual, sigma, levels=DEFAULT_LEVELS, n_scale: int = 97,
                    n_floor: int = 40, max_points: int = 50000, seed: int = 0):
    """(a, b) of the recalibrated sigma' = sqrt((a sigma)^2 + b^2), matching the reliability curve.

    a inflates the member spread (members trained on the same data share part of their
    errors); b is an error floor common to every member, which a spread cannot show (e.g. the
    shared CAE decoder's reconstruction error). Grid search minimising sum over levels of
    |coverage - level|; b = 0 is on the grid, so this is never worse on the calibration split
    than `fit_sigma_scale`'s grid at the same a. Fit on a split disjoint from the evaluation.

    Args:
      residual, sigma: (N,) calibration residuals and member standard deviations.
      levels: nominal levels; n_scale / n_floor: grid sizes of a (1e-2..1e3, log) and b (0 and
        quantiles of |residual|); max_points: a seeded subsample bounds the cost.
    Returns:
      (a, b) floats; (1.0, 0.0) when there are no calibration points.
    """
    r = np.abs(np.asarray(residual, np.float64)).ravel()
    s = np.asarray(sigma, np.float64).ravel()
    if r.size == 0:
        return 1.0, 0.0
    if r.size > max_points:
        pick = np.random.default_rng(seed).choice(r.size, max_points, replace=False)
        r, s = r[pick], s[pick]
    z = z_of_level(levels)
    lv = np.asarray(levels)
    a_grid = np.geomspace(1e-2, 1e3, n_scale)
    qs = np.quantile(r, np.linspace(0.02, 0.98, n_floor - 1))
    b_grid = np.concatenate([[0.0], np.unique(qs[qs > 0])])
    best, best_err = (1.0, 0.0), np.inf
    for b in b_grid:
        for a in a_grid:
            sig = np.sqrt((a * s) ** 2 + b * b)
            ratio = np.sort(r / np.maximum(sig, 1e-300))
            err = np.abs(np.searchsorted(ratio, z, side="right") / ratio.size - lv).sum()
            if err < best_err - 1e-12:
                best, best_err = (float(a), float(b)), err
    return best


def interval_scores(residual, sigma, multipliers: dict) -> dict:
    """Coverage at each conformal level and the efficiencies (median half-width / median
    |residual|) of intervals +- q_L (sigma + beta).

    residual, sigma: (N,) evaluation residuals and spreads (same units, e.g. dex);
    multipliers: `fit_conformal` output (extra keys 'spread_weight' ignored). Returns
    {n, median_abs_error_dex, coverage_<L>, median_half_width_<L>_dex, efficiency_<L>}.
    """
    r = np.abs(np.asarray(residual, np.float64))
    s = np.asarray(sigma, np.float64) + float(multipliers.get("beta", 0.0))
    med = float(np.median(r)) if r.size else float("nan")
    out = {"n": int(r.size), "median_abs_error_dex": med}
    for k, q in multipliers.items():
        if k in ("beta", "spread_weight"):
            continue
        half = q * s
        out[f"coverage_{k}"] = float(np.mean(r <= half)) if r.size else float("nan")
        out[f"median_half_width_{k}_dex"] = float(np.median(half)) if r.size else float("nan")
        out[f"efficiency_{k}"] = (float(np.median(half)) / med) if med > 0 else float("inf")
    return out


def fit_conformal(residual, sigma, levels=(0.68, 0.95), beta: Optional[float] = None
                  ) -> Dict[str, float]:
    """Normalised split-conformal intervals mean +- q_L (sigma + beta), fitted on a calibration
    split.

    q_L is the finite-sample ceil((n + 1) L) / n empirical quantile of |residual| / (sigma +
    beta) on the calibration points; beta = the median calibration sigma keeps points where
    all members agree exactly (sigma = 0, e.g. spectra clipped to zero by every member) from
    making q_L infinite. The interval covers a fresh point with probability >= L whenever
    calibration and evaluation points are exchangeable, whatever the shape of the residual
    distribution (a Gaussian scale cannot match heavy tails at 68 % and 95 % at once).

    Args:
      residual, sigma: (N,) calibration residuals and predicted standard deviations.
      levels: coverage levels in (0, 1).
      beta: the offset (same units as sigma); None = the median calibration sigma.
    Returns:
      {f"{L:g}": q_L, ..., "beta": beta}; q_L = inf where N is too small for the level; with
      no calibration points, the Gaussian z_L and beta = 0 (no recalibration).
    """
    r = np.abs(np.asarray(residual, np.float64)).ravel()
    s = np.asarray(sigma, np.float64).ravel()
    levels = np.atleast_1d(levels)
    if r.size == 0:
        out = {f"{float(lv):g}": float(z) for lv, z in zip(levels, z_of_level(levels))}
        return dict(out, beta=0.0)
    beta = float(np.median(s)) if beta is None else float(beta)
    ratio = np.sort(r / np.maximum(s + beta, 1e-300))
    n = ratio.size
    out = {}
    for lv in levels:
        k = int(np.ceil((n + 1) * float(lv)))
        out[f"{float(lv):g}"] = float(ratio[k - 1]) if k <= n else float("inf")
    out["beta"] = beta
    return out


def select_beta(residual, sigma, level: float = 0.95,
                factors=(1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0)) -> float:
    """The offset beta (of intervals +- q_L (sigma + beta)) that gives the narrowest median
    interval at `level` on these points, from beta = f x median(sigma) for f in `factors`.

    Too large a beta ignores the spread (constant width); too small a one lets points with
    sigma ~ 0 but a non-zero error drive q_L up. Choose it on points disjoint from those that
    `fit_conformal` then calibrates q_L on, so the coverage guarantee holds.

    Args: residual, sigma: (N,) residuals and spreads; level in (0, 1); factors: candidates.
    Returns: beta (>= 0), or the median sigma when N is too small for the level.
    """
    r = np.abs(np.asarray(residual, np.float64)).ravel()
    s = np.asarray(sigma, np.float64).ravel()
    med = float(np.median(s)) if s.size else 0.0
    if med <= 0:
        positive = s[s > 0]
        med = float(np.median(positive)) if positive.size else 0.0
    best, width = med, np.inf
    for f in factors:
        b = f * med
        q = fit_conformal(r, s, (level,), beta=b)[f"{float(level):g}"]
        w = q * float(np.median(s + b))
        if np.isfinite(w) and w < width:
            best, width = b, w
    return float(best)


def degenerate_levels(multipliers: dict, sigma_cal) -> list:
    """Levels (keys of `multipliers`) at which a conformal fit gives no usable interval: every
    level when the calibration spread is zero at half the points or more with beta = 0 (the
    members agree exactly, so the spread carries no information); otherwise the levels whose
    multiplier is not finite (too few calibration points for the level) or above 1e100 (an
    error divided by the 1e-300 floor of sigma + beta)."""
    levels = [k for k in multipliers if k not in ("beta", "spread_weight")]
    s = np.asarray(sigma_cal, np.float64)
    if float(multipliers.get("beta", 0.0)) <= 0.0 and s.size > 0 and \
            float(np.mean(s == 0)) >= 0.5:
        return levels
    return [k for k in levels if not (np.isfinite(multipliers[k]) and multipliers[k] <= 1e100)]


def conformal_coverage(residual, sigma, multipliers: Dict[str, float]) -> Dict[str, float]:
    """Observed fraction of |residual| <= q_L (sigma + beta) for each level of `fit_conformal`."""
    r = np.abs(np.asarray(residual, np.float64)).ravel()
    s = np.asarray(sigma, np.float64).ravel() + float(multipliers.get("beta", 0.0))
    return {k: (float(np.mean(r <= q * s)) if r.size else float("nan"))
            for k, q in multipliers.items() if k != "beta"}


def calibration_summary(residual, sigma, scale: float = 1.0, levels=(0.68, 0.95),
                        model=None, conformal: Optional[Dict[str, float]] = None) -> dict:
    """Coverage before and after scaling sigma by `scale`, plus the scale and N; with model =
    (a, b) from `fit_sigma_model` also the coverage of sqrt((a sigma)^2 + b^2); with conformal
    multipliers (`fit_conformal`, fitted on the calibration split) their coverage."""
    out = {"n": int(np.size(residual)), "sigma_scale": float(scale),
           "coverage_raw": interval_coverage(residual, sigma, levels),
           "coverage_calibrated": interval_coverage(residual, np.asarray(sigma) * scale,
                                                    levels)}
    if model is not None:
        a, b = model
        out["sigma_model"] = {"a": float(a), "b": float(b)}
        out["coverage_scale_and_floor"] = interval_coverage(
            residual, np.sqrt((a * np.asarray(sigma)) ** 2 + b * b), levels)
    if conformal is not None:
        out["conformal_multipliers"] = dict(conformal)
        out["coverage_conformal"] = conformal_coverage(residual, sigma, conformal)
    return out


def plot_reliability(curves: Dict[str, tuple], path, title: str = "") -> Path:
    """Reliability plot: observed vs nominal central-interval coverage, one line per curve.

    curves: name -> (levels (L,), observed (L,)). Writes a PNG atomically; returns the path.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    ax.plot([0, 1], [0, 1], "k:", lw=1, label="ideal")
    for name, (lv, obs) in curves.items():
        ax.plot(lv, obs, "o-", ms=3, label=name)
    for lvl in (0.68, 0.95):
        ax.axvline(lvl, color="0.85", lw=0.8, zorder=0)
    ax.set_xlabel("nominal coverage of the central interval")
    ax.set_ylabel("observed coverage")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return save_figure(fig, path)


def save_figure(fig, path) -> Path:
    """Save a matplotlib figure atomically (io's temp file + fsync + rename) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        workdir_lib.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120,
                                                       format=path.suffix.lstrip(".") or "png"))
    finally:
        plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------
# ensembles through the Surrogate (CAE + latent-MLP path)
def train_latent_ensemble(workdir, members: int = 5, train_cfg: Optional[dict] = None,
                          progress: bool = False, calibration_fraction: float = 0.5,
                          overwrite: bool = False) -> dict:
    """Add a K-member latent-MLP ensemble to a trained CAE workdir.

    Re-encodes every node with the workdir's CAE, rebuilds the latent targets and features
    exactly as `experiments.spectra.run_cae` (same split, standardizers, hidden sizes), trains K members
    per element with `train_ensemble` (label `latent_mlp_ensemble`), and records
    `meta['ensemble'] = {'members', 'label', 'hidden'}` in model.json. The single latent MLP and
    XGBoost stay untouched, so `Surrogate.load` works as before. Members are trained on the
    latent MSE only (the optional decoder fine-tuning stage of run_cae is not applied to them).

    Args:
      workdir: a CAE run directory (bin/train --config=configs/cae.py).
      members: K. train_cfg: overrides of config.latent.mlp_train (e.g. {'epochs': 300}).
      calibration_fraction: seeded fraction of each element's validation nodes set aside for
        `calibrate_workdir` (never used for the members' early stopping, so the variance
        recalibration is not fitted on nodes the members were selected on); 0 = none.
      overwrite: replace an existing ensemble trained with other settings (otherwise an
        existing one with the same members and calibration nodes is resumed, a different one
        is an error).
    Returns:
      summary dict (members, epochs_run, seconds).
    """
    from opacity_jax.data import transforms
    from opacity_jax.models.cae import CAE
    from opacity_jax.models.mlp import MLP
    from opacity_jax.train import experiment
    from opacity_jax.train.task import pack_ragged

    workdir = Path(workdir)
    mf = workdir_lib.model_path(workdir)
    meta = workdir_lib.read_model_meta(workdir, "train the CAE first: bin/train")
    if meta.get("model") != "cae":
        raise ValueError(f"{mf}: model is {meta.get('model')!r}; latent ensembles need a 'cae' "
                         "run")
    if meta["latent"].get("physics_features"):
        raise ValueError(f"{mf} was trained with latent.physics_features; latent-MLP "
                         f"ensembles take (log10 T, log10 rho) inputs only")
    cfg = workdir_lib.read_config(workdir)
    ds = experiment.load_data(cfg.data)
    if ds.elements.tolist() != meta["elements"]:
        raise ValueError(f"dataset elements {ds.elements.tolist()} differ from the model's "
                         f"{meta['elements']} in {mf}")
    train, val = experiment.node_mask(meta, "train"), experiment.node_mask(meta, "val")
    if not 0.0 <= calibration_fraction < 1.0:
        raise ValueError(f"calibration_fraction must be in [0, 1), got {calibration_fraction}")
    calib = np.zeros_like(val)
    if calibration_fraction > 0:
        rng = np.random.default_rng(int(cfg.seed) + 7)
        for e in range(val.shape[0]):
            idx = np.flatnonzero(val[e])
            k = int(round(calibration_fraction * idx.size))
            if 0 < k < idx.size:
                calib[e].flat[rng.choice(idx, k, replace=False)] = True
        val = val & ~calib
    old = meta.get("ensemble")
    ck_dir = workdir_lib.checkpoint_dir(workdir, ENSEMBLE_LABEL)
    if ck_dir.exists():
        # model.json lists a finished ensemble: one with other settings is only replaced on
        # request. Without that record (a run of bin/train rewrote model.json, or an interrupted
        # bin/train_ensemble) the stage digest decides: the same inputs resume, an upstream
        # stage trained further re-fits (loop.train).
        same = not old or (int(old["members"]) == int(members) and
                           old.get("calibration_nodes", []) == np.flatnonzero(calib).tolist())
        if overwrite or not same:
            if not overwrite:
                raise ValueError(f"{ck_dir} holds an ensemble trained with other settings "
                                 f"(members {old and old.get('members')}); pass overwrite=True "
                                 f"(bin/train_ensemble --overwrite) to replace it")
            import shutil
            shutil.rmtree(ck_dir)
    scaling = experiment.SpectrumScaling.from_dict(meta["scaling"])
    y = scaling.forward(ds.kappa.astype(np.float64)).astype(np.float32)
    n_z, n_t, n_r, n_e = y.shape
    c = meta["cae"]
    cae = CAE.from_meta(c)
    z_all = experiment.encode_all(cae, workdir_lib.restore_params(workdir, "cae"),
                                  y.reshape(n_z, n_t * n_r, n_e)).reshape(n_z, n_t, n_r, -1)
    lat = meta["latent"]
    zs = (z_all - np.asarray(lat["z_mean"])[:, None, None]) / np.asarray(lat["z_std"])[:, None,
                                                                                         None]
    xs = transforms.Standardizer.from_dict(lat["x_standardizer"]).transform(
        experiment.conditions(ds)).astype(np.float32)
    hidden = tuple(lat.get("mlp_hidden", cfg.latent.mlp_hidden))
    mlp = MLP(hidden=hidden, n_out=c["latent_dim"])
    tr = pack_ragged([{"x": xs[train[e]], "y": zs[e][train[e]].astype(np.float32)}
                      for e in range(n_z)])
    va = pack_ragged([{"x": xs[val[e]], "y": zs[e][val[e]].astype(np.float32)}
                      for e in range(n_z)])
    section = dict(cfg.latent.mlp_train)
    section.update(train_cfg or {})
    section.setdefault("seed", int(cfg.seed))
    lcfg = loop.LoopConfig.from_config(section)
    from opacity_jax.train.experiment import regression_task
    # What the members are fitted on, besides their arrays (the CAE's latents of every node):
    # the CAE stage's state digest, named explicitly, and model.json without this stage's own
    # record (present after a first run; it would make every re-run look stale).
    fitted_meta = {k: v for k, v in meta.items() if k not in ("ensemble", "stages")}
    fitted_meta["upstream"] = {"cae": (meta.get("stages", {}).get("cae") or {}).get(
        "state_sha256")}
    res = train_ensemble(regression_task(mlp, "latent_mlp"), tr, va, lcfg, members, workdir,
                         label=ENSEMBLE_LABEL, meta=fitted_meta, progress=progress)
    meta["ensemble"] = {"members": int(members), "label": ENSEMBLE_LABEL,
                        "hidden": list(hidden),
                        "calibration_nodes": np.flatnonzero(calib).tolist()}
    # With the stage records (stages.json, now holding this stage's checkpoint step and
    # digest), so inference restores exactly that checkpoint (workdir.restore_params).
    workdir_lib.write_model_meta(workdir, meta)
    return {"members": int(members), "epochs_run": res.result.epochs_run,
            "seconds": round(res.result.seconds, 1)}


class EnsembleSurrogate:
    """(mean, std) over the members of an ensemble workdir: a thin view of `Surrogate`.

        s = EnsembleSurrogate.load("runs/cae")          # after bin/train_ensemble
        mean, std = s.spectrum("Nd", [0.3], [1e-13])    # (N, nE) each, cm^2/g
        kp_mean, kp_std = s.planck_mean("Nd", 0.3, 1e-13)

    Works for CAE runs with a latent-MLP ensemble (members share the CAE decoder, whose
    reconstruction error is common to all members and not in the spread) and for FC-NN runs
    trained with `fcnn.ensemble = K`. Every query goes through the Surrogate's domain checks.
    """

    def __init__(self, base):
        self.base = base                      # a Surrogate holding K members
        self.members = base.members

    @classmethod
    def load(cls, workdir, on_domain_error: str = "raise",
             outside: str = "raise") -> "EnsembleSurrogate":
        """Load an ensemble workdir (CAE + bin/train_ensemble, or an FC-NN with K >= 2);
        `outside`: the validity-envelope policy (`opacity_jax.serve.envelope.POLICIES`)."""
        from opacity_jax.serve.surrogate import Surrogate
        from opacity_jax.train import experiment
        workdir = Path(workdir)
        meta = workdir_lib.read_model_meta(workdir)
        if meta.get("model") == "fcnn":
            base = Surrogate.load(workdir, on_domain_error=on_domain_error, ensemble=True,
                                  outside=outside)
            if base.members < 2:
                raise ValueError(f"{workdir} holds no ensemble: an FC-NN with 1 member (train "
                                 f"with --config.fcnn.ensemble=K, K >= 2)")
        else:
            base = Surrogate.load(workdir, regressor="mlp", on_domain_error=on_domain_error,
                                  ensemble=True, outside=outside)
        return cls(base)

    def spectrum_members(self, element, temperature_ev, density_gcc) -> np.ndarray:
        """(K, N, nE) member spectra [cm^2/g] at N (T [eV], rho [g/cm^3]) points."""
        return self.base.spectrum_members(element, temperature_ev, density_gcc)

    def spectrum(self, element, temperature_ev, density_gcc):
        """(mean, std) over members of kappa [cm^2/g], each (N, nE)."""
        return self.base.spectrum(element, temperature_ev, density_gcc, return_std=True)

    def planck_mean(self, element, temperature_ev, density_gcc):
        """(mean, std) over members of each member's band-limited Planck mean [cm^2/g], (N,)."""
        return self.base.planck_mean(element, temperature_ev, density_gcc, return_std=True)

    def rosseland_mean(self, element, temperature_ev, density_gcc):
        """(mean, std) over members of each member's band-limited Rosseland mean [cm^2/g]."""
        return self.base.rosseland_mean(element, temperature_ev, density_gcc, return_std=True)


def calibrate_workdir(workdir, out_dir=None, eps: float = 1e-10) -> dict:
    """Calibration report of an ensemble workdir (CAE latent ensemble or FC-NN ensemble) on its
    held-out test nodes.

    Uncertainty = member spread of log10(kappa + eps) per energy bin and of log10 of each
    member's Planck / Rosseland mean. One sigma scale per quantity (and, separately, a scale +
    floor model, `fit_sigma_model`) is fitted on the workdir's *validation* nodes (disjoint from
    the test nodes) and judged on the test nodes.

    Args:
      workdir: CAE run directory holding an ensemble (bin/train_ensemble), or an FC-NN run
        trained with fcnn.ensemble >= 2.
      out_dir: where to write ensemble_calibration.json and ensemble_reliability.png
        (default <workdir>/eval).
    Returns:
      {quantity: {sigma_scale, coverage_raw/calibrated on test, n_test, n_val}}.
    """
    from opacity_jax.train import experiment
    workdir = Path(workdir)
    s = EnsembleSurrogate.load(workdir, on_domain_error="warn", outside="ignore")
    meta = s.base.meta
    ds = experiment.load_data(workdir_lib.read_config(workdir).data)
    cal_idx = (meta.get("ensemble") or {}).get("calibration_nodes")
    if cal_idx:
        # Nodes held out of the members' early stopping (train_latent_ensemble).
        cal_mask = experiment.node_mask(meta, cal_idx)
        fitted_on = "calibration nodes (validation nodes not used for the members' early " \
            "stopping; disjoint from test)"
    else:
        cal_mask = experiment.node_mask(meta, "val")
        fitted_on = "validation nodes (disjoint from test; also the members' early-stopping " \
            "nodes)"
    parts = {"val": cal_mask, "test": experiment.node_mask(meta, "test")}
    res = {q: {p: ([], []) for p in parts} for q in ("log_kappa", "log_planck", "log_rosseland")}
    for part, m in parts.items():
        for e, z in enumerate(ds.elements):
            ti, ri = np.nonzero(m[e])
            if ti.size == 0:
                continue
            t, r = ds.temperature_ev[ti], ds.density_gcc[ri]
            km = s.spectrum_members(int(z), t, r).astype(np.float64)           # (K, N, nE)
            truth = ds.kappa[e, ti, ri].astype(np.float64)
            lk = np.log10(km + eps)
            mu, sd = lk.mean(0), lk.std(0)
            res["log_kappa"][part][0].append((mu - np.log10(truth + eps)).ravel())
            res["log_kappa"][part][1].append(sd.ravel())
            for q, kind in (("log_planck", "planck"), ("log_rosseland", "rosseland")):
                from opacity_jax import _compat
                from opacity_jax.physics import planck
                fn = planck.planck_mean if kind == "planck" else planck.rosseland_mean
                with _compat.enable_x64():
                    pm = np.asarray(fn(jnp.asarray(km), s.base.energy_edges_ev, jnp.asarray(t)))
                    pt = np.asarray(fn(jnp.asarray(truth), s.base.energy_edges_ev,
                                       jnp.asarray(t)))
                lp = np.log10(np.maximum(pm, 1e-300))
                res[q][part][0].append(lp.mean(0) - np.log10(np.maximum(pt, 1e-300)))
                res[q][part][1].append(lp.std(0))
    report, curves = {}, {}
    for q, d in res.items():
        rv, sv = (np.concatenate(a) if a else np.zeros(0) for a in d["val"])
        rt, st = (np.concatenate(a) if a else np.zeros(0) for a in d["test"])
        scale = fit_sigma_scale(rv, sv)
        model = fit_sigma_model(rv, sv)
        conf_cal = fit_conformal(rv, sv)
        report[q] = dict(calibration_summary(rt, st, scale, model=model, conformal=conf_cal),
                         n_val=int(rv.size), degenerate_levels=degenerate_levels(conf_cal, sv))
        conf = fit_conformal(rv, sv, DEFAULT_LEVELS)
        curves[f"{q} test (conformal)"] = (np.asarray(DEFAULT_LEVELS),
                                           np.asarray(list(conformal_coverage(rt, st, conf)
                                                           .values())))
        curves[f"{q} test (scaled)"] = reliability_curve(rt, st * scale)
        curves[f"{q} test (scale + floor)"] = reliability_curve(
            rt, np.sqrt((model[0] * st) ** 2 + model[1] ** 2))
        curves[f"{q} test (raw)"] = reliability_curve(rt, st)
    out = Path(out_dir) if out_dir is not None else workdir_lib.eval_dir(workdir)
    write_json(out / "ensemble_calibration.json",
               {"workdir": str(workdir), "members": s.members, "eps": eps,
                "scale_fitted_on": fitted_on, "quantities": report})
    kind = "FC-NN" if meta.get("model") == "fcnn" else "latent-MLP"
    plot_reliability(curves, out / "ensemble_reliability.png",
                     f"{kind} ensemble ({s.members} members), test nodes")
    return report
