"""The trained inverse model (spectrum -> element, T, rho, Zbar) and its input transform.

Training, evaluation and the kNN baseline live in `opacity_jax.experiments.inverse`; this
module only loads a workdir and predicts, so it imports no trainer.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Dict

import jax
import jax.numpy as jnp
import numpy as np

from opacity_jax.models.classifier import MultitaskClassifier
from opacity_jax.train import workdir as workdir_lib

LABEL = "classifier"
INPUTS = ("cbrt", "cbrt+log")
LOG_FLOOR = 1e-10   # cm^2/g; far below anything observable, keeps log10 finite


@dataclasses.dataclass
class InputTransform:
    """Spectrum -> classifier input, with statistics from the training spectra only.

    'cbrt' (thesis Table 3): cbrt(kappa) / cbrt_scale, (..., nE). 'cbrt+log': a second channel
    (log10(kappa + LOG_FLOOR) - log_mean) / log_std, (..., nE, 2): line *ratios* between ion
    stages, which carry the density, are differences there. One global scale (not per element:
    the element is what the classifier must find).
    """

    name: str
    cbrt_scale: float
    log_mean: float = 0.0
    log_std: float = 1.0

    @classmethod
    def fit(cls, name: str, kappa_train) -> "InputTransform":
        """Statistics from (N, nE) training spectra [cm^2/g]."""
        if name not in INPUTS:
            raise ValueError(f"classifier.input must be one of {INPUTS}, got {name!r}")
        k = np.maximum(np.asarray(kappa_train, np.float64), 0.0)
        lg = np.log10(k + LOG_FLOOR)
        return cls(name, float(np.sqrt(np.mean(np.cbrt(k) ** 2))), float(lg.mean()),
                   float(max(lg.std(), 1e-6)))

    def __call__(self, kappa, xp=np):
        """(..., nE) kappa [cm^2/g] -> float32 inputs (..., nE) or (..., nE, 2); xp = np or
        jnp (differentiable, used by training-time augmentation)."""
        k = xp.maximum(xp.asarray(kappa), 0.0)
        c = xp.cbrt(k) / self.cbrt_scale
        if self.name == "cbrt":
            return c.astype(xp.float32)
        lg = (xp.log10(k + LOG_FLOOR) - self.log_mean) / self.log_std
        return xp.stack([c, lg], -1).astype(xp.float32)

    def kappa_from_input(self, x):
        """Inverse through the cbrt channel (jnp or np): inputs -> kappa [cm^2/g]."""
        c = x if self.name == "cbrt" else x[..., 0]
        return (c * self.cbrt_scale) ** 3

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def scale_input(kappa, transform: InputTransform) -> np.ndarray:
    """Classifier inputs of (..., nE) spectra [cm^2/g] (see InputTransform)."""
    return transform(np.asarray(kappa, np.float64))



class InverseModel:
    """A trained classifier loaded from its workdir.

    `predict(kappa)` takes (N, nE) spectra [cm^2/g] on the training energy grid and returns
    numpy arrays: 'prob' (N, C) (member-averaged softmax), 'element_pos' (N,) int,
    'element_z' (N,) atomic numbers, 't_ev' (N,) [eV], 'log10_rho' (N,) [log10 g/cm^3],
    'zbar' (N,), 'member_std_log10_t' (N,) (ensemble spread, 0 for one member) and, for a
    model trained with loss.density_loss = 'beta_nll', 'log10_rho_sigma' (N,) [dex].
    """

    def __init__(self, meta: dict, params):
        self.meta = meta
        c = meta["classifier"]
        self.model = MultitaskClassifier(
            n_classes=c["n_classes"], channels=tuple(c["channels"]), strides=tuple(c["strides"]),
            kernel=c["kernel"], latent_dim=c["latent_dim"], encoder=c["encoder"],
            attention_at=c["attention_at"], attention_blocks=c["attention_blocks"],
            attention_heads=c["attention_heads"], dropout=c["dropout"],
            target_mean=tuple(c["target_mean"]), target_std=tuple(c["target_std"]),
            density_uncertainty=bool(c.get("density_uncertainty", False)))
        self.params = params
        self.elements = np.asarray(meta["elements"], np.int32)
        self.transform = InputTransform(**meta.get(
            "input_transform", {"name": "cbrt", "cbrt_scale": float(meta["input_scale"])}))
        self.n_energy = len(meta["energy_edges_ev"]) - 1
        self._apply = jax.jit(jax.vmap(lambda p, x: self.model.apply(p, x), in_axes=(0, None)))

    @property
    def n_members(self) -> int:
        return int(jax.tree_util.tree_leaves(self.params)[0].shape[0])

    def member(self, i: int) -> "InverseModel":
        """The i-th ensemble member alone (members differ in init and batch order only, so
        they double as seed replicates)."""
        if not 0 <= i < self.n_members:
            raise ValueError(f"member {i} out of range 0..{self.n_members - 1}")
        return InverseModel(self.meta, jax.tree_util.tree_map(lambda a: a[i:i + 1], self.params))

    @classmethod
    def load(cls, workdir) -> "InverseModel":
        """Restore the best parameters and metadata written by training (bin/train with
        configs/classifier.py)."""
        workdir = Path(workdir)
        meta = workdir_lib.read_model_meta(workdir)
        if meta.get("model") != "classifier":
            raise ValueError(f"{workdir} holds a {meta.get('model')!r} model, not a classifier")
        return cls(meta, workdir_lib.restore_params(workdir, LABEL))

    def predict_scaled(self, x, chunk: int = 2048) -> Dict[str, np.ndarray]:
        """Predictions for already-scaled inputs x (N, nE) (see `scale_input`)."""
        x = np.asarray(x, np.float32)
        if x.ndim < 2 or x.shape[1] != self.n_energy:
            raise ValueError(f"expected spectra of shape (N, {self.n_energy}), got {x.shape}")
        parts = []
        keys = ("logits", "log10_t", "t_ev", "log10_rho", "zbar") + (
            ("log10_rho_sigma",) if self.model.density_uncertainty else ())
        for i in range(0, x.shape[0], chunk):
            o = self._apply(self.params, jnp.asarray(x[i:i + chunk]))
            parts.append({k: np.asarray(o[k]) for k in keys})
        o = {k: np.concatenate([p[k] for p in parts], axis=1) for k in parts[0]}   # (K, N, ..)
        prob = np.mean(np.asarray(jax.nn.softmax(o["logits"], -1)), axis=0)
        pos = np.argmax(prob, -1)
        res = {"prob": prob, "element_pos": pos, "element_z": self.elements[pos],
               "t_ev": o["t_ev"].mean(0), "log10_rho": o["log10_rho"].mean(0),
               "zbar": o["zbar"].mean(0), "member_std_log10_t": o["log10_t"].std(0)}
        if "log10_rho_sigma" in o:
            # Mixture of the members' Gaussians: mean of variances + variance of means.
            res["log10_rho_sigma"] = np.sqrt(np.mean(o["log10_rho_sigma"] ** 2, 0)
                                             + o["log10_rho"].var(0))
        return res

    def predict(self, kappa) -> Dict[str, np.ndarray]:
        """Predictions for (N, nE) opacity spectra [cm^2/g] (see class docstring)."""
        k = np.asarray(kappa, np.float64)
        if k.ndim != 2 or k.shape[1] != self.n_energy:
            raise ValueError(f"expected spectra of shape (N, {self.n_energy}), got {k.shape}")
        return self.predict_scaled(scale_input(k, self.transform))


# ------------------------------------------------------------------ refinement through a forward model
REFINE_STARTS = ((0.0, 0.0), (0.0, -1.5), (0.0, 1.5), (-0.03, 0.0), (0.03, 0.0))


def log_residual(log_kappa_pred, kappa_obs, floor_rel: float = 1e-10):
    """ln-spectrum residual, both spectra floored at floor_rel x the observed peak.

    The floor keeps empty or numerically meaningless bins (below ~1e-10 of the peak) from
    ruling the fit, while the deep windows between lines, which carry the density through the
    ionization balance, still count. Args: log_kappa_pred: (nE,) ln kappa [ln cm^2/g];
    kappa_obs: (nE,) [cm^2/g]. Returns (nE,) [e-folds].
    """
    floor = jnp.maximum(floor_rel * jnp.max(kappa_obs), 1e-30)
    y = jnp.log(jnp.maximum(kappa_obs, floor))
    return jnp.logaddexp(log_kappa_pred, jnp.log(floor)) - y


def refine_conditions(forward, element, kappa, t0_ev, log10_rho0, steps: int = 12,
                      floor_rel: float = 1e-10, starts=REFINE_STARTS) -> Dict[str, np.ndarray]:
    """Refine (T, rho) estimates of observed spectra through a differentiable forward surrogate.

    Levenberg-Marquardt in (log10 T, log10 rho) on the mean squared `log_residual`,
    from the given start and the offsets `starts` (dex in T, dex in rho; the density direction is
    flat where the gas is nearly neutral, so a few starts guard against its shallow local
    minima); parameters are kept inside the forward model's domain. jit'd and vmapped over the
    spectra.

    Args: forward: a surrogate with `log_kappa_function(element)` and `domain` (e.g.
      `serve.stage_basis.StageBasisSurrogate`); element: symbol or Z (all spectra of one
      element); kappa: (N, nE) observed spectra [cm^2/g] on the forward model's bins;
      t0_ev, log10_rho0: (N,) starting T [eV] and log10 rho [g/cm^3] (e.g. the classifier's).
    Returns: {'t_ev' (N,) [eV], 'log10_rho' (N,), 'misfit' (N,) final, 'misfit_start' (N,)}.
    """
    if not hasattr(forward, "log_kappa_function"):
        raise TypeError(f"{type(forward).__name__} has no log_kappa_function: refinement needs "
                        "a differentiable forward surrogate (a stage_basis workdir)")
    kappa = np.asarray(kappa, np.float32)
    n_e = len(forward.energy_edges_ev) - 1
    if kappa.ndim != 2 or kappa.shape[1] != n_e:
        raise ValueError(f"expected spectra of shape (N, {n_e}) on the forward model's bins, "
                         f"got {kappa.shape}")
    t0 = np.broadcast_to(np.asarray(t0_ev, np.float64), kappa.shape[:1])
    r0 = np.broadcast_to(np.asarray(log10_rho0, np.float64), kappa.shape[:1])
    if not (np.all(np.isfinite(t0)) and np.all(t0 > 0) and np.all(np.isfinite(r0))):
        raise ValueError("t0_ev must be finite and > 0 and log10_rho0 finite")
    f, args = forward.log_kappa_function(element)
    dom = forward.domain
    lo = jnp.asarray([np.log10(dom["temperature_ev"][0]), np.log10(dom["density_gcc"][0])],
                     jnp.float32)
    hi = jnp.asarray([np.log10(dom["temperature_ev"][1]), np.log10(dom["density_gcc"][1])],
                     jnp.float32)
    offsets = jnp.asarray(starts, jnp.float32)
    run = _refiner(f, int(steps), float(floor_rel))
    theta0 = np.stack([np.log10(t0), r0], -1).astype(np.float32)
    th, m, m0 = run(args, jnp.asarray(theta0), jnp.asarray(kappa), offsets, lo, hi)
    th = np.asarray(th, np.float64)
    return {"t_ev": 10.0 ** th[:, 0], "log10_rho": th[:, 1], "misfit": np.asarray(m),
            "misfit_start": np.asarray(m0)}


@functools.lru_cache(maxsize=8)
def _refiner(f, steps: int, floor_rel: float):
    def resid(args, theta, k):
        return log_residual(f(args, theta[0], theta[1]), k, floor_rel)

    def lm(args, theta, k, lo, hi):
        def body(carry, _):
            th, lam = carry
            r = resid(args, th, k)
            j = jax.jacfwd(resid, argnums=1)(args, th, k)          # (nE, 2)
            h = j.T @ j
            g = j.T @ r
            a = h + lam * (jnp.diag(jnp.diag(h)) + 1e-9 * jnp.eye(2))
            new = jnp.clip(th - jnp.linalg.solve(a, g), lo, hi)
            better = jnp.sum(resid(args, new, k) ** 2) < jnp.sum(r ** 2)
            return (jnp.where(better, new, th), jnp.where(better, lam * 0.3, lam * 10.0)), None
        (th, _), _ = jax.lax.scan(body, (theta, jnp.asarray(1e-2, theta.dtype)), None,
                                  length=steps)
        return th, jnp.mean(resid(args, th, k) ** 2)

    def one(args, theta0, k, offsets, lo, hi):
        th_all, m_all = jax.vmap(
            lambda d: lm(args, jnp.clip(theta0 + d, lo, hi), k, lo, hi))(offsets)
        i = jnp.argmin(m_all)
        return th_all[i], m_all[i], jnp.mean(resid(args, jnp.clip(theta0, lo, hi), k) ** 2)

    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0, None, None, None)))
