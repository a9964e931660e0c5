"""Inverse model: one opacity spectrum -> (element, T, rho, Zbar), trained with the shared loop.

Pipeline (`run_classifier(config, workdir)`, config = configs/classifier.py):

1. data: the configured Dataset (`experiment.load_data`), every valid (element, T, rho) spectrum
   is one sample; the split (`experiment.make_split_masks`) is by default 'random' over spectra
   (81 / 9 / 10 % train / val / test, seeded) or 'heldout_nodes' (whole (T, rho) nodes unseen).
2. inputs (`InputTransform`): cbrt(kappa) / s with ONE global scale s (RMS over the training
   spectra), optionally with a second, standardised log10(kappa) channel (default preset). A
   per-element scale, as the forward surrogates use, would need the answer (the element) first.
3. model: `models.classifier.MultitaskClassifier` (conv, or conv + self-attention), trained as
   one entity (or `classifier.ensemble` members on the loop's entity axis, sharing the data).
4. loss: L = L_data + sum_k w_k L_k (eq. 8). L_data = class-weighted cross-entropy (weights
   N / (C n_c), inverse class frequency) + MSE on the standardised log10 T (or T in eV, see
   `loss.temperature_space`), log10 rho and Zbar. The physics terms come from the registry
   (`opacity_jax.losses.physics`): 'saha_zbar' (delta) and 'monotonic_bb_soft' (gamma). Saha is
   evaluated for the TRUE element at training time (a label, so no gradient is lost; using the
   predicted soft element would make the loss chase the classifier's own mistakes early in
   training). Validation losses (early stopping, LR plateau) are L_data only, so every
   ablation arm is selected by the same criterion.
5. artifacts: `model.json` (architecture, target statistics, input scale, split, provenance)
   and the orbax checkpoint 'classifier' in the workdir.

`evaluate_classifier(workdir)` reports element accuracy, T RMSE [eV], log10 rho RMSE [dex]
(overall and split at Zbar = 0.05: a nearly neutral gas's spectrum per gram barely depends on
rho), Zbar RMSE, per temperature band, on clean and degraded spectra (multiplicative noise,
coarser resolution), next to a k-nearest-neighbour-on-spectra baseline, plus predicted-vs-true
figures (thesis Fig. 7), and the information floor of log rho (`density_identifiability`): the
RMSE that even a perfect inverse model must incur because spectra at different densities are
identical to within a tolerance. Results go to `<workdir>/eval/`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Dict, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

import opacity_jax
from opacity_jax.data import atomic, transforms
from opacity_jax.data.dataset import Dataset
from opacity_jax.losses import physics as phys
from opacity_jax.losses.data import masked_mean
from opacity_jax.models.classifier import MultitaskClassifier
from opacity_jax.physics import elements as _el
# The serving half (re-exported here, where it was first defined: inverse.InverseModel, ...).
from opacity_jax.serve.inverse import (INPUTS, LABEL, LOG_FLOOR, InputTransform,  # noqa: F401
                                       InverseModel, scale_input)
from opacity_jax.train import experiment, loop
from opacity_jax.train import workdir as workdir_lib
from opacity_jax.train.task import EntityData, Task, pack_ragged

MODEL_FILE = experiment.MODEL_FILE
T_BANDS = ((0.0, 0.1, "T<0.1eV"), (0.1, 1.0, "0.1<=T<1eV"), (1.0, 3.0, "1<=T<3eV"),
           (3.0, math.inf, "T>=3eV"))
ZBAR_SPLIT = 0.05
TEMPERATURE_SPACES = ("log", "linear", "both")


# ------------------------------------------------------------------------------------- data
@dataclasses.dataclass
class InverseData:
    """Scaled inputs, labels and split masks of every spectrum of a Dataset.

    Attributes:
      ds: the Dataset. x: (nZ, nT, nR, nE[, 2]) float32 inputs. transform: the InputTransform
        (scale: its cbrt scale).
      train / val / test: (nZ, nT, nR) bool masks.
      labels: name -> (nZ, nT, nR) arrays: 'element' (int32 position on ds.elements),
        'log10_t' [log10 eV], 't_ev' [eV], 'log10_rho' [log10 g/cm^3], 'zbar', 'group'
        (int32, element * nR + density index: the L_bb groups) and 'bb_strength' (eq. 5 B of
        the bound-bound spectrum, cbrt space / scale; total spectrum if no components).
    """

    ds: Dataset
    x: np.ndarray
    transform: InputTransform
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    labels: Dict[str, np.ndarray]

    @property
    def scale(self) -> float:
        return self.transform.cbrt_scale

    def samples(self, mask) -> Dict[str, np.ndarray]:
        """dict of (N, ...) arrays ('x' and every label) for the True entries of mask, in
        np.nonzero order (element, then T, then rho)."""
        idx = np.nonzero(mask)
        out = {"x": self.x[idx]}
        out.update({k: v[idx] for k, v in self.labels.items()})
        return out


def prepare(config, ds: Optional[Dataset] = None) -> InverseData:
    """Load (or take) the dataset, split it and build inputs and labels (see InverseData)."""
    ds = ds if ds is not None else experiment.load_data(config.data)
    if ds.zbar is None:
        raise ValueError("the classifier needs Zbar labels (dataset field 'zbar'); this "
                         "dataset has none")
    seed = int(config.seed)
    train, val, test = experiment.make_split_masks(ds, config.data, seed)
    transform = InputTransform.fit(str(config.classifier.get("input", "cbrt")), ds.kappa[train])
    scale = transform.cbrt_scale
    x = scale_input(ds.kappa, transform)
    n_z, n_t, n_r = ds.kappa.shape[:3]
    ee, tt, rr = np.meshgrid(np.arange(n_z), np.arange(n_t), np.arange(n_r), indexing="ij")
    bb = ds.components.get("bb", ds.kappa)
    p = float(config.loss.get("top_percent", 10.0))
    labels = {
        "element": ee.astype(np.int32),
        "log10_t": np.log10(ds.temperature_ev)[tt].astype(np.float32),
        "t_ev": ds.temperature_ev[tt].astype(np.float32),
        "log10_rho": np.log10(ds.density_gcc)[rr].astype(np.float32),
        "zbar": ds.zbar.astype(np.float32),
        "group": (ee * n_r + rr).astype(np.int32),
        "bb_strength": (phys.line_strength(np.cbrt(bb.astype(np.float64)), p) / scale
                        ).astype(np.float32),
    }
    return InverseData(ds, x, transform, train, val, test, labels)


def class_weights(element: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes,) inverse-frequency weights N / (C n_c) of the training labels (absent
    classes get 0)."""
    counts = np.bincount(np.asarray(element), minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / (n_classes * np.maximum(counts, 1)), 0.0)
    return w.astype(np.float32)


def target_stats(train_samples) -> tuple:
    """(mean, std) tuples over the training samples for (log10 T, log10 rho, Zbar)."""
    cols = [train_samples[k].astype(np.float64) for k in ("log10_t", "log10_rho", "zbar")]
    return (tuple(float(c.mean()) for c in cols),
            tuple(float(max(c.std(), 1e-6)) for c in cols))


DENSITY_LOSSES = ("mse", "beta_nll")


def build_model(config, n_classes: int, mean, std) -> MultitaskClassifier:
    """The configured MultitaskClassifier (config.classifier section)."""
    c = config.classifier
    if config.loss.get("density_loss", "mse") not in DENSITY_LOSSES:
        raise ValueError(f"loss.density_loss must be one of {DENSITY_LOSSES}, got "
                         f"{config.loss.density_loss!r}")
    return MultitaskClassifier(
        n_classes=int(n_classes), channels=tuple(int(v) for v in c.channels),
        strides=tuple(int(v) for v in c.strides), kernel=int(c.kernel),
        latent_dim=int(c.latent_dim), encoder=str(c.encoder), attention_at=int(c.attention_at),
        attention_blocks=int(c.attention_blocks), attention_heads=int(c.attention_heads),
        dropout=float(c.dropout), target_mean=tuple(mean), target_std=tuple(std),
        density_uncertainty=bool(config.loss.get("density_loss", "mse") == "beta_nll"))


# ------------------------------------------------------------------------------------- task
def _coarsen_jnp(kappa, factor: int, widths):
    """Bin-width-weighted block average (conservative) expanded back to the input length:
    (B, nE) -> (B, nE) kappa."""
    b, n = kappa.shape
    w = widths.reshape(n // factor, factor)
    c = jnp.sum(kappa.reshape(b, n // factor, factor) * w, -1) / jnp.sum(w, -1)
    return jnp.repeat(c, factor, axis=-1)


def classifier_task(model: MultitaskClassifier, *, class_weight, loss_weights: dict,
                    temperature_space: str = "log", t_std_ev: float = 1.0,
                    physics: Optional[dict] = None, aux: Optional[dict] = None,
                    augment_noise: float = 0.0, augment_coarsen: Sequence[int] = (),
                    bin_widths=None, transform: Optional[InputTransform] = None) -> Task:
    """Task for the loop. batch: 'x' (B, nE), 'element' (B,) int, 'log10_t', 't_ev',
    'log10_rho', 'zbar', 'group', 'bb_strength' (B,), 'weight' (B,).

    Args:
      model: the classifier. class_weight: (C,) cross-entropy weights.
      loss_weights: {'element', 'temperature', 'density', 'zbar'} -> weight of each data term.
      temperature_space: 'log' (MSE on standardised log10 T), 'linear' (MSE on T / t_std_ev,
        T in eV) or 'both' (their mean).
      physics: {name: (fn, weight)} from `get_physics_losses` (training only).
      aux: the physics losses' aux dict.
      augment_noise: training-time multiplicative noise sigma on kappa (0 = off).
      augment_coarsen: training-time coarsening factors; half of the samples are coarsened by
        one of them (uniformly), the other half stay at full resolution (() = off);
        bin_widths (nE,) [eV] needed then.
      transform: the InputTransform of batch['x'] (needed by augmentation, which works on
        kappa and re-applies it).
    """
    if temperature_space not in TEMPERATURE_SPACES:
        raise ValueError(f"loss.temperature_space must be one of {TEMPERATURE_SPACES}, got "
                         f"{temperature_space!r}")
    cw = jnp.asarray(class_weight, jnp.float32)
    lw = {k: float(loss_weights.get(k, 1.0)) for k in ("element", "temperature", "density",
                                                       "zbar")}
    mean = jnp.asarray(model.target_mean, jnp.float32)
    std = jnp.asarray(model.target_std, jnp.float32)
    physics = physics or {}
    aux = aux or {}
    widths = None if bin_widths is None else jnp.asarray(bin_widths, jnp.float32)
    factors = tuple(int(f) for f in augment_coarsen if int(f) > 1)
    for f in factors:
        if widths is None or widths.shape[0] % f:
            raise ValueError(f"augment.coarsen factor {f} must divide the number of bins "
                             f"({None if widths is None else widths.shape[0]})")

    def init(rng, batch):
        return model.init(rng, batch["x"])

    if (augment_noise > 0 or factors) and transform is None:
        raise ValueError("training-time augmentation needs the InputTransform")

    def augment(x, rng):
        k1, k2, k3 = jax.random.split(rng, 3)
        k = transform.kappa_from_input(x)
        if factors:
            which = jax.random.randint(k3, (k.shape[0], 1), 0, len(factors))
            coarse = k
            for i, f in enumerate(factors):
                coarse = jnp.where(which == i, _coarsen_jnp(k, f, widths), coarse)
            pick = jax.random.bernoulli(k1, 0.5, (k.shape[0], 1))
            k = jnp.where(pick, coarse, k)
        if augment_noise > 0:
            k = k * jnp.maximum(1.0 + augment_noise * jax.random.normal(k2, k.shape), 0.0)
        return transform(k, xp=jnp)

    def data_loss(out, batch):
        w = batch["weight"]
        ce = optax.softmax_cross_entropy_with_integer_labels(out["logits"], batch["element"])
        wc = w * cw[batch["element"]]
        l_el = jnp.sum(wc * ce) / jnp.maximum(jnp.sum(wc), 1e-12)
        t_log = (out["std_log10_t"] - (batch["log10_t"] - mean[0]) / std[0]) ** 2
        t_lin = ((out["t_ev"] - batch["t_ev"]) / t_std_ev) ** 2
        t_sq = {"log": t_log, "linear": t_lin, "both": 0.5 * (t_log + t_lin)}[temperature_space]
        l_t = masked_mean(t_sq, w)
        r_sq = (out["std_log10_rho"] - (batch["log10_rho"] - mean[1]) / std[1]) ** 2
        if "std_log_sigma_rho" in out:
            # beta-NLL (Seitzer et al. 2022, beta = 1/2): a Gaussian NLL whose per-sample weight
            # sigma^(2 beta) is not differentiated. Spectra whose density is unidentifiable
            # (nearly neutral gas: kappa per gram does not depend on rho) learn a large sigma,
            # which shrinks their noisy pull on the shared encoder; the mean still targets the
            # conditional mean.
            ls = out["std_log_sigma_rho"]
            nll = 0.5 * r_sq * jnp.exp(-2.0 * ls) + ls
            l_r = masked_mean(nll * jax.lax.stop_gradient(jnp.exp(ls)), w)
        else:
            l_r = masked_mean(r_sq, w)
        l_z = masked_mean((out["std_zbar"] - (batch["zbar"] - mean[2]) / std[2]) ** 2, w)
        total = (lw["element"] * l_el + lw["temperature"] * l_t + lw["density"] * l_r
                 + lw["zbar"] * l_z)
        acc = masked_mean((jnp.argmax(out["logits"], -1) == batch["element"]).astype(
            jnp.float32), w)
        return total, {"ce": l_el, "t": l_t, "rho": l_r, "zbar": l_z, "accuracy": acc}

    def loss(params, batch, rng):
        x = batch["x"]
        if rng is None:
            out = model.apply(params, x)
            return data_loss(out, batch)
        k_aug, k_drop = jax.random.split(rng)
        if augment_noise > 0 or factors:
            x = augment(x, k_aug)
        out = model.apply(params, x, train=True, rngs={"dropout": k_drop})
        val, metrics = data_loss(out, batch)
        if physics:
            pen, pm = phys.physics_penalty(physics, out, batch, aux)
            val = val + pen
            metrics.update(pm)
        return val, metrics

    return Task("classifier", init, loss, lambda p, b: loss(p, b, None))


def physics_aux(config, data: InverseData) -> dict:
    """The aux dict of the classifier's physics losses (Saha tables of the dataset's elements
    from the generator's structure model, Zbar scale, L_bb options).

    The tables are built with the generator seed and level cap recorded in the dataset's
    provenance, so for the embedded data Zbar_Saha(true T, rho) equals the Zbar labels to float32
    precision; for an external table (real atomic data) they are the package's model atoms,
    an approximation to its ionisation balance.
    """
    lc = config.loss
    aux = {"top_percent": float(lc.get("top_percent", 10.0)),
           "regime": str(lc.get("regime", "data")),
           "t_range_ev": tuple(lc.get("t_range_ev", (0.01, 5.0))),
           "soft_tau_dex": float(lc.get("soft_tau_dex", 0.05)),
           "saha_samples": int(lc.get("saha_samples", 0)),
           "zbar_scale": float(max(np.std(data.labels["zbar"][data.train]), 1e-6))}
    if aux["regime"] not in phys.REGIMES:
        raise ValueError(f"loss.regime must be one of {phys.REGIMES}, got {aux['regime']!r}")
    if float(dict(lc.physics).get("saha_zbar", 0.0)) > 0:
        prov = data.ds.provenance
        tables = atomic.saha_tables(data.ds.elements.tolist(), seed=int(prov.get("seed", 0)),
                                    level_cap=int(prov.get("level_cap", atomic.LEVEL_CAP)))
        aux["saha_tables"] = {k: jnp.asarray(v, jnp.float32) for k, v in tables.items()
                              if k != "atomic_numbers"}
    return aux


# -------------------------------------------------------------------------------------- run
def _meta(config, data: InverseData, model: MultitaskClassifier, extra: dict) -> dict:
    ds = data.ds
    return {
        "package_version": opacity_jax.__version__,
        "model": "classifier",
        "elements": ds.elements.tolist(),
        "energy_edges_ev": ds.energy_edges_ev.tolist(),
        "temperature_ev": ds.temperature_ev.tolist(),
        "density_gcc": ds.density_gcc.tolist(),
        "input_scale": data.scale,
        "input_transform": data.transform.to_dict(),
        "classifier": {"n_classes": model.n_classes, "channels": list(model.channels),
                       "density_uncertainty": model.density_uncertainty,
                       "strides": list(model.strides), "kernel": model.kernel,
                       "latent_dim": model.latent_dim, "encoder": model.encoder,
                       "attention_at": model.attention_at,
                       "attention_blocks": model.attention_blocks,
                       "attention_heads": model.attention_heads, "dropout": model.dropout,
                       "target_mean": list(model.target_mean),
                       "target_std": list(model.target_std),
                       "ensemble": int(config.classifier.ensemble)},
        "split": {"name": config.data.split, "seed": int(config.seed),
                  "train": np.flatnonzero(data.train).tolist(),
                  "val": np.flatnonzero(data.val).tolist(),
                  "test": np.flatnonzero(data.test).tolist(), "shape": list(data.train.shape)},
        "loss": {"physics": {k: float(v) for k, v in dict(config.loss.physics).items()},
                 "temperature_space": str(config.loss.temperature_space)},
        "dataset_provenance": ds.provenance,
        "data_path": str(config.data.path),
        **extra,
    }


def validate(config) -> None:
    """Config checks that need no data (experiment.validate_config runs them before any work)."""
    if int(config.classifier.ensemble) < 1:
        raise ValueError(f"classifier.ensemble must be >= 1, got {config.classifier.ensemble}")


def run_classifier(config, workdir, progress: bool = True) -> dict:
    """Train the configured classifier into `workdir` (resuming from its checkpoints).

    Returns a summary dict (epochs, seconds, best validation loss per member).
    """
    t0 = time.perf_counter()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    data = prepare(config)
    tr, va = data.samples(data.train), data.samples(data.val)
    n_classes = int(data.ds.elements.size)
    mean, std = target_stats(tr)
    model = build_model(config, n_classes, mean, std)
    physics = phys.get_physics_losses(config.loss.physics, model="classifier")
    aux = physics_aux(config, data) if physics else {}
    lw = dict(config.loss.weights)
    task = classifier_task(
        model, class_weight=class_weights(tr["element"], n_classes), loss_weights=lw,
        temperature_space=str(config.loss.temperature_space),
        t_std_ev=float(np.std(tr["t_ev"])), physics=physics, aux=aux,
        augment_noise=float(config.augment.noise),
        augment_coarsen=tuple(int(f) for f in config.augment.coarsen),
        bin_widths=np.diff(data.ds.energy_edges_ev), transform=data.transform)
    members = int(config.classifier.ensemble)
    if members < 1:
        raise ValueError(f"classifier.ensemble must be >= 1, got {members}")
    tr_d, va_d = pack_ragged([tr]), pack_ragged([va])
    if members > 1:
        tr_d, va_d = tr_d.replicate(members), va_d.replicate(members)
    meta = _meta(config, data, model, {})
    cfg = loop.LoopConfig.from_config(config.train, int(config.seed))
    res = loop.train(task, tr_d, va_d, cfg, workdir, meta=meta, progress=progress, label=LABEL)
    summary = {"classifier": {"epochs_run": res.epochs_run, "seconds": round(res.seconds, 1),
                              "best_val": res.best_val.tolist(),
                              "stopped_epoch": res.stopped_epoch.tolist(),
                              "n_train": int(data.train.sum()), "n_val": int(data.val.sum()),
                              "n_test": int(data.test.sum()),
                              "physics": {k: w for k, (_, w) in physics.items()}},
               "seconds_total": round(time.perf_counter() - t0, 1)}
    meta["train_summary"] = summary
    workdir_lib.write_model_meta(workdir, meta)
    workdir_lib.write_config(workdir, config)    # once training succeeded (evaluate reads it)
    return summary


def train(config, workdir, progress: bool = True) -> dict:
    """Family verb (`opacity_jax.experiments.registry`): `run_classifier`."""
    return run_classifier(config, workdir, progress)


def load(workdir) -> "InverseModel":
    """Family verb: `InverseModel.load(workdir)`."""
    return InverseModel.load(workdir)


def evaluate(workdir, forward: Optional[str] = None, offgrid: int = 0, **options) -> dict:
    """Family verb: `evaluate_classifier(workdir, **options)`; writes <workdir>/eval/. With
    `forward` (a stage_basis workdir), also `evaluate_refinement` on `offgrid` (default 20)
    random off-grid spectra per element."""
    m = evaluate_classifier(workdir, **options)
    if forward:
        m["refinement"] = evaluate_refinement(workdir, forward, n_points=int(offgrid or 20))
    elif offgrid:
        raise ValueError("--offgrid for a classifier workdir needs --forward=<stage_basis "
                         "workdir> (off-grid spectra are scored by the refinement)")
    return m


def report(m: dict) -> str:
    """Family verb: the Markdown report of `evaluate`'s metrics (`report_markdown`), with the
    refinement table when one was run."""
    text = report_markdown(m)
    if "refinement" in m:
        text += "\n" + m["refinement"]["table"]
    return text


REFINE_TARGETS = {"t_rmse_ev": 0.05, "log_rho_rmse_dex_zbar_hi": 0.5}


def evaluate_refinement(workdir, forward_workdir, n_points: int = 20, seed: int = 0,
                        steps: int = 12) -> dict:
    """(T, rho) of off-grid spectra: the classifier's estimate, then refined through the forward
    model (`serve.inverse.refine_conditions`).

    Spectra come from the embedded generator at `n_points` random (T, rho) per element inside
    the forward model's domain (log-uniform), so neither model has seen them. The classifier
    names the element and gives the start; the refinement runs on the forward model of the
    element it named (spectra it names an element the forward model lacks keep the
    classifier's estimate, counted). Writes <workdir>/eval/refine.json and refine.md.

    Returns {'n', 'n_not_refined', 'before', 'after' (inverse_metrics), 'targets', 'table'}.
    """
    from opacity_jax.data import generator
    from opacity_jax.serve import inverse as serve_inverse
    from opacity_jax.serve.surrogate import Surrogate

    workdir = Path(workdir)
    clf = InverseModel.load(workdir)
    fwd = Surrogate.load(forward_workdir)
    if not hasattr(fwd, "log_kappa_function"):
        raise ValueError(f"{forward_workdir} holds a {fwd.regressor!r} model; the refinement "
                         "needs a differentiable forward model (model 'stage_basis')")
    e_clf = np.asarray(clf.meta["energy_edges_ev"])
    if e_clf.shape != fwd.energy_edges_ev.shape or not np.allclose(e_clf, fwd.energy_edges_ev):
        raise ValueError(f"{workdir} and {forward_workdir} use different energy grids; train "
                         "both on the same data.n_energy")
    cfg = workdir_lib.read_config(workdir)
    fcfg = workdir_lib.read_config(forward_workdir)
    for name, c in ((workdir, cfg), (forward_workdir, fcfg)):
        if c.data.path:
            raise ValueError(f"{name}: trained on {c.data.path}; off-grid truth needs the "
                             "embedded generator's data (data.path empty)")
    if experiment.generator_config(cfg.data) != experiment.generator_config(fcfg.data):
        raise ValueError(f"{workdir} and {forward_workdir} were trained on different "
                         "generator settings (data.generator_seed, data.continuum_lowering)")
    gen = generator.OpacityGenerator(experiment.generator_config(cfg.data))
    rng = np.random.default_rng(seed)
    dom = fwd.domain
    lt_lo, lt_hi = np.log10(dom["temperature_ev"])
    lr_lo, lr_hi = np.log10(dom["density_gcc"])
    clf_z = [int(z) for z in clf.elements]
    true = {k: [] for k in ("element", "t_ev", "log10_rho", "zbar")}
    kappa = []
    for z in fwd.elements:
        if int(z) not in clf_z:
            continue
        lt = rng.uniform(lt_lo, lt_hi, n_points)
        lr = rng.uniform(lr_lo, lr_hi, n_points)
        g = gen.spectra(int(z), 10.0 ** lt, 10.0 ** lr, fwd.energy_edges_ev)
        kappa.append(g["kappa"])
        true["element"].append(np.full(n_points, clf_z.index(int(z))))
        true["t_ev"].append(10.0 ** lt)
        true["log10_rho"].append(lr)
        true["zbar"].append(np.asarray(g["zbar"], np.float64))
    if not kappa:
        raise ValueError(f"{workdir} and {forward_workdir} share no element")
    kappa = np.concatenate(kappa)
    true = {k: np.concatenate(v) for k, v in true.items()}
    t0 = time.perf_counter()
    before = clf.predict(kappa)
    after = {k: np.array(v, copy=True) for k, v in before.items()}
    skipped = 0
    for z in np.unique(before["element_z"]):
        sel = before["element_z"] == z
        if int(z) not in [int(x) for x in fwd.elements]:
            skipped += int(sel.sum())
            continue
        t_start = np.clip(before["t_ev"][sel], *dom["temperature_ev"])
        r = serve_inverse.refine_conditions(fwd, int(z), kappa[sel], t_start,
                                            before["log10_rho"][sel], steps=steps)
        after["t_ev"][sel] = r["t_ev"]
        after["log10_rho"][sel] = r["log10_rho"]
    seconds = time.perf_counter() - t0
    for p in (before, after):
        p.pop("zbar", None)      # the refinement does not estimate Zbar
    mb, ma = inverse_metrics(before, true), inverse_metrics(after, true)
    key = f"zbar>={ZBAR_SPLIT:g}"
    rows = [("classifier", mb), ("classifier + refinement", ma)]
    table = "\n".join(
        [f"Off-grid spectra ({len(kappa)}: {n_points} random (T, rho) per element, generator "
         f"truth), refined through {forward_workdir} ({steps} LM steps, "
         f"{len(serve_inverse.REFINE_STARTS)} starts, {seconds:.1f} s):", "",
         "| estimate | element acc. | T RMSE [eV] | T RMSE [dex] | log rho RMSE [dex] | "
         f"log rho RMSE, Zbar>={ZBAR_SPLIT:g} [dex] (n) |", "|---|---|---|---|---|---|"]
        + [f"| {n} | {_fmt(m['accuracy'], '.4%')} | {_fmt(m['t_rmse_ev'])} | "
           f"{_fmt(m['t_rmse_dex'])} | {_fmt(m['log_rho_rmse_dex'])} | "
           f"{_fmt(m['log_rho_rmse_dex_by_zbar'][key]['rmse_dex'])} "
           f"({m['log_rho_rmse_dex_by_zbar'][key]['n']}) |" for n, m in rows]
        + ["", f"Targets after refinement: T RMSE <= {REFINE_TARGETS['t_rmse_ev']} eV: "
           f"{ma['t_rmse_ev'] <= REFINE_TARGETS['t_rmse_ev']}; log rho RMSE at Zbar >= "
           f"{ZBAR_SPLIT:g} <= {REFINE_TARGETS['log_rho_rmse_dex_zbar_hi']} dex: "
           f"{(ma['log_rho_rmse_dex_by_zbar'][key]['rmse_dex'] or np.inf) <= REFINE_TARGETS['log_rho_rmse_dex_zbar_hi']}"
           f". Not refined (element outside the forward model): {skipped}."])
    out = {"workdir": str(workdir), "forward_workdir": str(forward_workdir), "n": int(len(kappa)),
           "n_points_per_element": n_points, "seed": seed, "steps": steps,
           "n_not_refined": skipped, "seconds": round(seconds, 2), "before": mb, "after": ma,
           "targets": REFINE_TARGETS, "table": table}
    out_dir = workdir_lib.eval_dir(workdir)
    out_dir.mkdir(parents=True, exist_ok=True)
    workdir_lib.write_json(out_dir / "refine.json", out)
    workdir_lib.write_text(out_dir / "refine.md", f"# Inverse refinement of {workdir}\n\n"
                           + table + "\n")
    return out


# ------------------------------------------------------------------------- degradation, kNN
def degrade(kappa, edges_ev, noise: float = 0.0, coarsen: int = 1, seed: int = 0) -> np.ndarray:
    """Observation-like degradation of spectra.

    Args:
      kappa: (N, nE) [cm^2/g]; edges_ev: (nE + 1,) bin edges [eV].
      noise: sigma of multiplicative Gaussian noise kappa (1 + sigma eps), clipped at 0.
      coarsen: resolution factor: conservative rebinning onto every `coarsen`-th edge, then
        expanded back (piecewise constant) to the nE input bins; nE must be divisible by it.
        Noise is drawn per *observed* (coarse) bin.
      seed: noise seed.
    Returns:
      (N, nE) degraded kappa.
    """
    k = np.asarray(kappa, np.float64)
    edges_ev = np.asarray(edges_ev, np.float64)
    if coarsen > 1:
        if k.shape[-1] % coarsen:
            raise ValueError(f"coarsen = {coarsen} must divide the {k.shape[-1]} bins")
        k = transforms.rebin(k, edges_ev, edges_ev[::coarsen])
    if noise > 0:
        rng = np.random.default_rng(seed)
        k = k * np.maximum(1.0 + noise * rng.standard_normal(k.shape), 0.0)
    if coarsen > 1:
        k = np.repeat(k, coarsen, axis=-1)
    return k


def knn_predict(x_train, train_labels: dict, x_query, k: int = 1, chunk: int = 1024) -> dict:
    """k-nearest-neighbour baseline on spectra (Euclidean in the classifier's input space).

    Args:
      x_train (N, nE), x_query (M, nE) scaled spectra; train_labels: 'element' (N,) int,
      't_ev', 'log10_rho', 'zbar' (N,).
    Returns:
      dict of (M,) arrays: 'element_pos' (majority vote, ties to the nearer neighbour),
      't_ev' (mean [eV]), 'log10_rho' (mean), 'zbar' (mean).
    """
    xt = np.asarray(x_train, np.float32).reshape(len(x_train), -1)
    x_query = np.asarray(x_query, np.float32).reshape(len(x_query), -1)
    nt = np.sum(xt.astype(np.float64) ** 2, -1)
    out = {n: [] for n in ("element_pos", "t_ev", "log10_rho", "zbar")}
    n_cls = int(np.max(train_labels["element"])) + 1
    for i in range(0, len(x_query), chunk):
        q = np.asarray(x_query[i:i + chunk], np.float32)
        d = nt[None, :] - 2.0 * (q @ xt.T).astype(np.float64)
        nb = np.argpartition(d, k - 1, axis=1)[:, :k] if k > 1 else np.argmin(d, 1)[:, None]
        order = np.argsort(np.take_along_axis(d, nb, 1), axis=1)
        nb = np.take_along_axis(nb, order, 1)
        el = train_labels["element"][nb]
        votes = np.zeros((nb.shape[0], n_cls))
        for j in range(k):   # nearer neighbours break ties
            np.add.at(votes, (np.arange(nb.shape[0]), el[:, j]), 1.0 + 1e-3 * (k - j))
        out["element_pos"].append(np.argmax(votes, 1))
        for name in ("t_ev", "log10_rho", "zbar"):
            out[name].append(train_labels[name][nb].mean(1))
    return {n: np.concatenate(v) for n, v in out.items()}


# ---------------------------------------------------------------------------------- metrics
def _rmse(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.sqrt(np.mean((a - b) ** 2))) if a.size else None


def inverse_metrics(pred: dict, true: dict) -> dict:
    """Headline metrics of predictions vs truth.

    pred: 'element_pos', 't_ev', 'log10_rho', optional 'zbar' (N,); true: 'element', 't_ev',
    'log10_rho', 'zbar' (N,). Returns accuracy, t_rmse_ev, t_rmse_dex, log_rho_rmse_dex,
    zbar_rmse, log_rho_rmse_dex split at Zbar = ZBAR_SPLIT (true Zbar), and the same per
    temperature band (T_BANDS), with sample counts.
    """
    def block(s):
        r = {"n": int(s.sum())}
        if not s.any():
            return r
        r["accuracy"] = float(np.mean(pred["element_pos"][s] == true["element"][s]))
        r["t_rmse_ev"] = _rmse(pred["t_ev"][s], true["t_ev"][s])
        r["t_rmse_dex"] = _rmse(np.log10(np.maximum(pred["t_ev"][s], 1e-6)),
                                np.log10(true["t_ev"][s]))
        r["log_rho_rmse_dex"] = _rmse(pred["log10_rho"][s], true["log10_rho"][s])
        if "zbar" in pred:
            r["zbar_rmse"] = _rmse(pred["zbar"][s], true["zbar"][s])
        return r

    n = true["element"].size
    out = block(np.ones(n, bool))
    hi = true["zbar"] >= ZBAR_SPLIT
    out["log_rho_rmse_dex_by_zbar"] = {
        f"zbar>={ZBAR_SPLIT:g}": {"n": int(hi.sum()),
                                  "rmse_dex": _rmse(pred["log10_rho"][hi], true["log10_rho"][hi])},
        f"zbar<{ZBAR_SPLIT:g}": {"n": int((~hi).sum()),
                                 "rmse_dex": _rmse(pred["log10_rho"][~hi],
                                                   true["log10_rho"][~hi])}}
    out["per_temperature_band"] = {name: block((true["t_ev"] >= lo) & (true["t_ev"] < hi_))
                                   for lo, hi_, name in T_BANDS}
    if "log10_rho_sigma" in pred:
        sig = pred["log10_rho_sigma"]
        err = np.abs(pred["log10_rho"] - true["log10_rho"])
        out["log10_rho_sigma"] = {
            name: {"mean_sigma_dex": float(sig[s].mean()), "rmse_dex": _rmse(err[s], 0 * err[s]),
                   "within_1_sigma": float(np.mean(err[s] <= sig[s]))}
            for name, s in ((f"zbar>={ZBAR_SPLIT:g}", hi), (f"zbar<{ZBAR_SPLIT:g}", ~hi))
            if s.any()}
    return out


TARGETS = {"accuracy_min": 0.997, "t_rmse_ev_max": 0.19, "t_rmse_ev_aim": 0.05,
           "log_rho_rmse_dex_max": 2.57, "log_rho_rmse_dex_zbar_hi_aim": 0.5}


def density_identifiability(kappa, log10_rho, valid, query, zbar=None, tol: float = 1e-3,
                            dynamic_range: float = 1e-12) -> dict:
    """Lower bound on the log10 rho RMSE of ANY spectrum -> rho estimator on the queried spectra.

    For a queried spectrum (element e, temperature t, density r) the densities it cannot be told
    apart from are S = {r' valid : max over bins |kappa_r' - kappa_r| / max(kappa_r', kappa_r)
    < tol}, the bins restricted to where kappa_r > dynamic_range x its maximum (below that the
    "signal" is numerically meaningless). With the densities equally likely a priori (as on the
    grid), the estimator of least squared error given only "the spectrum is one of S" is the
    mean of log10 rho over S; its error is the floor. Exact for tol -> 0 (identical spectra);
    for tol > 0 it is the floor at that measurement precision.

    Args:
      kappa: (nZ, nT, nR, nE) opacities [cm^2/g]; log10_rho: (nR,) log10 density [g/cm^3];
      valid: (nZ, nT, nR) bool; query: tuple of index arrays (e, t, r), each (N,);
      zbar: optional (nZ, nT, nR) mean charge, to split the floor at ZBAR_SPLIT;
      tol: relative spectral tolerance; dynamic_range: bins considered, relative to the peak.
    Returns:
      {'tol', 'rmse_dex' (overall), 'rmse_dex_zbar_hi', 'rmse_dex_zbar_lo' (None without zbar or
      an empty subset), 'n', 'mean_set_size'}.
    """
    e_idx, t_idx, r_idx = (np.asarray(a) for a in query)
    lr = np.asarray(log10_rho, np.float64)
    err = np.zeros(e_idx.size)
    size = np.zeros(e_idx.size)
    for i, (e, t, r) in enumerate(zip(e_idx, t_idx, r_idx)):
        col = np.asarray(kappa[e, t], np.float64)                   # (nR, nE)
        a = col[r]
        m = a > dynamic_range * a.max() if a.max() > 0 else np.ones(a.shape, bool)
        den = np.maximum(np.maximum(col[:, m], a[m]), 1e-300)
        d = np.max(np.abs(col[:, m] - a[m]) / den, axis=1) if m.any() else np.zeros(len(lr))
        same = (d < tol) & np.asarray(valid[e, t], bool)
        same[r] = True
        err[i] = lr[r] - lr[same].mean()
        size[i] = same.sum()

    def rms(sel):
        return float(np.sqrt(np.mean(err[sel] ** 2))) if np.any(sel) else None

    out = {"tol": float(tol), "n": int(err.size), "rmse_dex": rms(np.ones(err.size, bool)),
           "mean_set_size": float(size.mean()) if size.size else 0.0,
           "rmse_dex_zbar_hi": None, "rmse_dex_zbar_lo": None}
    if zbar is not None:
        zb = np.asarray(zbar)[e_idx, t_idx, r_idx]
        out["rmse_dex_zbar_hi"] = rms(zb >= ZBAR_SPLIT)
        out["rmse_dex_zbar_lo"] = rms(zb < ZBAR_SPLIT)
    return out


def _conditions(eval_cfg) -> list:
    conds = [("clean", 0.0, 1)]
    for s in eval_cfg.get("noise_levels", (0.01, 0.03, 0.05)):
        conds.append((f"noise{100 * float(s):g}%", float(s), 1))
    for f in eval_cfg.get("coarsen_factors", (4, 10)):
        conds.append((f"coarse_x{int(f)}", 0.0, int(f)))
    for s, f in eval_cfg.get("combined", ((0.03, 4),)):
        conds.append((f"noise{100 * float(s):g}%+coarse_x{int(f)}", float(s), int(f)))
    return conds


HEADLINE = ("accuracy", "t_rmse_ev", "log_rho_rmse_dex", "zbar_rmse")


def _member_summary(rows: list) -> dict:
    """Mean and sample sd over members of the headline metrics (+ log rho at Zbar >= 0.05)."""
    vals = {k: [r[k] for r in rows] for k in HEADLINE}
    vals["log_rho_rmse_dex_zbar_hi"] = [
        r["log_rho_rmse_dex_by_zbar"][f"zbar>={ZBAR_SPLIT:g}"]["rmse_dex"] for r in rows]
    vals["t_rmse_ev_T>=3eV"] = [r["per_temperature_band"]["T>=3eV"].get("t_rmse_ev")
                                for r in rows]
    return {k: {"mean": float(np.mean(v)), "sd": float(np.std(v, ddof=1)) if len(v) > 1
                else 0.0, "values": [float(x) for x in v]} for k, v in vals.items()}


def evaluate_classifier(workdir, make_figures: bool = True, conditions: Optional[list] = None,
                        knn_k: Optional[Sequence[int]] = None,
                        per_member: bool = False) -> dict:
    """Evaluate a trained classifier workdir on its held-out spectra (module docstring).

    Args:
      workdir: run directory of `run_classifier`.
      make_figures: write eval/pred_vs_true.png (thesis Fig. 7) and eval/t_band_errors.png.
      conditions: list of (name, noise sigma, coarsen factor); default from the config's
        `eval` section (clean, noise 1/3/5 %, coarse x4/x10, noise 3 % + coarse x4).
      knn_k: neighbour counts of the kNN baseline (default config eval.knn_k).
      per_member: also evaluate every ensemble member alone ('members': mean / sd over members
        of the headline metrics per condition - seed replicates for ablations).
    Returns:
      the metrics dict, also written to <workdir>/eval/metrics.json with a Markdown summary
      in <workdir>/eval/report.md.
    """
    workdir = Path(workdir)
    meta = workdir_lib.read_model_meta(workdir)
    cfg = workdir_lib.read_config(workdir)
    data = prepare(cfg)
    if np.flatnonzero(data.test).tolist() != meta["split"]["test"]:
        raise ValueError(f"the test split recomputed from {workdir}/config.json differs from "
                         f"the one stored in {MODEL_FILE}; was the dataset changed?")
    clf = InverseModel.load(workdir)
    te, tr = data.samples(data.test), data.samples(data.train)
    idx = np.nonzero(data.test)
    kappa = data.ds.kappa[idx]
    edges = data.ds.energy_edges_ev
    conds = conditions if conditions is not None else _conditions(cfg.get("eval", {}))
    ks = list(knn_k if knn_k is not None else cfg.get("eval", {}).get("knn_k", (1, 5)))
    out = {"workdir": str(workdir), "split": meta["split"]["name"], "n_test": int(te["x"].shape[0]),
           "n_train": int(tr["x"].shape[0]), "encoder": meta["classifier"]["encoder"],
           "ensemble": meta["classifier"]["ensemble"], "physics": meta["loss"]["physics"],
           "conditions": {}}
    preds = {}
    for ci, (name, noise, coarsen) in enumerate(conds):
        if noise == 0 and coarsen == 1:
            x = te["x"]
        else:
            x = scale_input(degrade(kappa, edges, noise, coarsen, seed=1000 + ci), data.transform)
        p = clf.predict_scaled(x)
        preds[name] = p
        res = {"classifier": inverse_metrics(p, te)}
        if per_member and clf.n_members > 1:
            res["members"] = _member_summary([
                inverse_metrics(clf.member(i).predict_scaled(x), te)
                for i in range(clf.n_members)])
        # The kNN baseline knows the instrument: its reference spectra are coarsened the same
        # way (noise-free), else a coarse query is far from every fine-grid reference.
        x_ref = tr["x"] if coarsen == 1 else scale_input(
            degrade(data.ds.kappa[np.nonzero(data.train)], edges, 0.0, coarsen), data.transform)
        for k in ks:
            res[f"knn_k{k}"] = inverse_metrics(knn_predict(x_ref, tr, x, k), te)
        out["conditions"][name] = res
    clean = out["conditions"]["clean"]["classifier"] if "clean" in out["conditions"] else None
    if clean is not None:
        zhi = clean["log_rho_rmse_dex_by_zbar"][f"zbar>={ZBAR_SPLIT:g}"]["rmse_dex"]
        out["targets"] = {
            **TARGETS,
            "accuracy": clean["accuracy"], "t_rmse_ev": clean["t_rmse_ev"],
            "log_rho_rmse_dex": clean["log_rho_rmse_dex"], "log_rho_rmse_dex_zbar_hi": zhi,
            "pass": {"accuracy": clean["accuracy"] >= TARGETS["accuracy_min"],
                     "t_rmse_ev": clean["t_rmse_ev"] <= TARGETS["t_rmse_ev_max"],
                     "log_rho_rmse_dex": clean["log_rho_rmse_dex"]
                     <= TARGETS["log_rho_rmse_dex_max"],
                     "aim_t_rmse_ev": clean["t_rmse_ev"] <= TARGETS["t_rmse_ev_aim"],
                     "aim_log_rho_zbar_hi": zhi is not None
                     and zhi <= TARGETS["log_rho_rmse_dex_zbar_hi_aim"]}}
    ds = data.ds
    # What any estimator must miss: spectra identical (to 0.1 % / 1 %) across densities.
    out["log_rho_information_floor"] = [
        density_identifiability(ds.kappa, np.log10(ds.density_gcc), ds.valid, idx, ds.zbar,
                                tol=tol) for tol in (1e-3, 1e-2)]
    out["monotonicity_premise"] = {
        "bound_bound": phys.monotonicity_report(np.cbrt(ds.components.get("bb", ds.kappa)),
                                                ds.temperature_ev, ds.zbar, data.train),
        "total": phys.monotonicity_report(np.cbrt(ds.kappa), ds.temperature_ev, ds.zbar,
                                          data.train)}
    eval_dir = workdir_lib.eval_dir(workdir)
    eval_dir.mkdir(parents=True, exist_ok=True)
    workdir_lib.write_json(eval_dir / "metrics.json", out)
    (eval_dir / "report.md").write_text(report_markdown(out))
    if make_figures and "clean" in preds:
        _figures(eval_dir, preds["clean"], te, data.ds)
    return out


def _fmt(v, spec=".4g"):
    return "-" if v is None else format(v, spec)


def report_markdown(m: dict) -> str:
    """Markdown summary of `evaluate_classifier` metrics."""
    lines = [f"# Classifier evaluation: {m['workdir']}", "",
             f"{m['n_test']} held-out spectra ({m['split']} split), encoder {m['encoder']}, "
             f"ensemble {m['ensemble']}, physics {m['physics']}", "",
             "| condition | method | element acc. | T RMSE [eV] | log rho RMSE [dex] | "
             f"log rho RMSE, Zbar>={ZBAR_SPLIT:g} | log rho RMSE, Zbar<{ZBAR_SPLIT:g} | "
             "Zbar RMSE |", "|---|---|---|---|---|---|---|---|"]
    for cname, res in m["conditions"].items():
        for meth, r in res.items():
            if meth == "members":          # per-member summary, not a method
                continue
            bz = r["log_rho_rmse_dex_by_zbar"]
            lines.append(f"| {cname} | {meth} | {_fmt(r['accuracy'], '.4%')} | "
                         f"{_fmt(r['t_rmse_ev'])} | {_fmt(r['log_rho_rmse_dex'])} | "
                         f"{_fmt(bz[f'zbar>={ZBAR_SPLIT:g}']['rmse_dex'])} | "
                         f"{_fmt(bz[f'zbar<{ZBAR_SPLIT:g}']['rmse_dex'])} | "
                         f"{_fmt(r.get('zbar_rmse'))} |")
    if "clean" in m["conditions"]:
        lines += ["", "Per temperature band (clean, classifier):", "",
                  "| band | n | element acc. | T RMSE [eV] | log rho RMSE [dex] | Zbar RMSE |",
                  "|---|---|---|---|---|---|"]
        for band, r in m["conditions"]["clean"]["classifier"]["per_temperature_band"].items():
            lines.append(f"| {band} | {r['n']} | {_fmt(r.get('accuracy'), '.4%')} | "
                         f"{_fmt(r.get('t_rmse_ev'))} | {_fmt(r.get('log_rho_rmse_dex'))} | "
                         f"{_fmt(r.get('zbar_rmse'))} |")
    if "targets" in m:
        t = m["targets"]
        lines += ["", f"Targets: accuracy {t['accuracy']:.4%} (>= 99.7 %: "
                  f"{t['pass']['accuracy']}), T RMSE {t['t_rmse_ev']:.4g} eV (<= 0.19: "
                  f"{t['pass']['t_rmse_ev']}; aim 0.05: {t['pass']['aim_t_rmse_ev']}), log rho "
                  f"RMSE {t['log_rho_rmse_dex']:.4g} dex (<= 2.57: "
                  f"{t['pass']['log_rho_rmse_dex']}), Zbar >= 0.05: "
                  f"{_fmt(t['log_rho_rmse_dex_zbar_hi'])} dex (aim 0.5: "
                  f"{t['pass']['aim_log_rho_zbar_hi']})"]
    fl = m.get("log_rho_information_floor")
    if fl:
        lines += ["", "Information floor of log rho (no estimator can do better: spectra at "
                  "different densities agree to the tolerance; the best guess is the mean log "
                  "rho of the indistinguishable set):", "",
                  f"| spectral tolerance | log rho floor [dex] | Zbar>={ZBAR_SPLIT:g} | "
                  f"Zbar<{ZBAR_SPLIT:g} | mean indistinguishable set |", "|---|---|---|---|---|"]
        for f in fl:
            lines.append(f"| {f['tol']:.0e} | {_fmt(f['rmse_dex'])} | "
                         f"{_fmt(f['rmse_dex_zbar_hi'])} | {_fmt(f['rmse_dex_zbar_lo'])} | "
                         f"{f['mean_set_size']:.2f} densities |")
    mp = m.get("monotonicity_premise")
    if mp:
        lines += ["", "L_bb premise (B falls with T at fixed element, rho), training pairs "
                  "violating it:", ""]
        for what, r in mp.items():
            lines.append(f"- {what}: " + ", ".join(f"{k}: {v:.1%}" for k, v in
                                                  r["violation_fraction"].items())
                         + f" of {r['n_pairs']} consecutive-T pairs")
    return "\n".join(lines) + "\n"


def _figures(out_dir: Path, pred: dict, true: dict, ds: Dataset) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(15, 4.6))
    hi = true["zbar"] >= ZBAR_SPLIT
    every = np.ones_like(hi)
    for a, key, grid_vals, lab, subsets in (
            (ax[0], "t_ev", ds.temperature_ev, "T [eV]", ((every, "all", 0.0),)),
            (ax[1], "log10_rho", np.log10(ds.density_gcc), "log10 rho [g/cm^3]",
             ((hi, f"Zbar >= {ZBAR_SPLIT}", -0.15), (~hi, f"Zbar < {ZBAR_SPLIT}", 0.15)))):
        for sub, name, shift in subsets:
            mu, sd, xs = [], [], []
            for v in grid_vals:
                s = np.isclose(true[key], v, rtol=1e-5) & sub
                if s.any():
                    xs.append(v + shift)
                    mu.append(pred[key][s].mean())
                    sd.append(pred[key][s].std())
            a.errorbar(xs, mu, yerr=sd, fmt="o", ms=3, capsize=2,
                       label=f"{name}: mean +- sd per grid value")
        lo, hi_ = min(grid_vals), max(grid_vals)
        a.plot([lo, hi_], [lo, hi_], "k--", lw=1)
        a.set_xlabel(f"true {lab}")
        a.set_ylabel(f"predicted {lab}")
        a.legend(fontsize=8)
    ax[0].set_xscale("log")
    ax[0].set_yscale("log")
    ax[2].scatter(true["zbar"], pred["zbar"], s=3, alpha=0.5)
    m = max(float(true["zbar"].max()), 1.0)
    ax[2].plot([0, m], [0, m], "k--", lw=1)
    ax[2].set_xlabel("true Zbar")
    ax[2].set_ylabel("predicted Zbar")
    ax[2].set_title(f"{hi.mean():.0%} of test spectra have Zbar >= {ZBAR_SPLIT}")
    fig.tight_layout()
    fig.savefig(out_dir / "pred_vs_true.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    err = np.abs(pred["log10_rho"] - true["log10_rho"])
    ax.scatter(np.maximum(true["zbar"], 1e-3), err, s=3, alpha=0.5)
    ax.set_xscale("log")
    ax.axvline(ZBAR_SPLIT, color="k", ls="--", lw=1)
    ax.set_xlabel("true Zbar (floored at 1e-3)")
    ax.set_ylabel("|log10 rho error| [dex]")
    fig.tight_layout()
    fig.savefig(out_dir / "rho_error_vs_zbar.png", dpi=110)
    plt.close(fig)
