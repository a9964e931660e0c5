"""Shared training steps: data -> splits -> scaling -> Task(s), and `run(config, workdir)`.

`run` records config.json and hands the config to the family module that `config.model` names
(`opacity_jax.experiments.registry`: 'cae' and 'fcnn' are trained by
`opacity_jax.experiments.spectra`, 'classifier' by the inverse family, 'xsec'/'xsec_pinn' by the
cross-section family). The helpers here (dataset loading and rebinning, split masks, spectrum
scaling, the autoencoder / regression / fine-tuning tasks, batched encoding) are shared by the
families.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from opacity_jax.data import embedded, generator, grid, h5file, splits, transforms
from opacity_jax.data.dataset import Dataset
from opacity_jax.data.transforms import SpectrumScaling
from opacity_jax.experiments import registry
from opacity_jax.losses import data as data_losses
from opacity_jax.models.cae import CAE
from opacity_jax.models.mlp import MLP
from opacity_jax.physics import elements as _el
from opacity_jax.train import workdir as workdir_lib
from opacity_jax.train.task import Task
from opacity_jax.train.workdir import MODEL_FILE  # noqa: F401  (experiment.MODEL_FILE)


# --------------------------------------------------------------------------------------------
# data
def generator_config(data_cfg) -> generator.GeneratorConfig:
    """The embedded generator's settings named by a data config: `generator_seed` (default 0)
    and `continuum_lowering` ("none" default, or "debye"; anything else is a ValueError)."""
    lowering = generator.check_continuum_lowering(data_cfg.get("continuum_lowering", "none"),
                                                  "data.continuum_lowering")
    return generator.GeneratorConfig(seed=int(data_cfg.get("generator_seed", 0)),
                                     continuum_lowering=lowering)


def load_data(data_cfg) -> Dataset:
    """The dataset named by the config (embedded default when `path` is empty), on n_energy bins.

    Files at a finer resolution are rebinned conservatively; a coarser file is an error.
    `data.continuum_lowering` selects a generator variant (embedded data only).
    """
    elements = _parse_elements(data_cfg.get("elements", ""))
    n_energy = int(data_cfg.n_energy)
    gen_cfg = generator_config(data_cfg)
    if data_cfg.path:
        if gen_cfg.continuum_lowering != "none":
            raise ValueError(f"data.continuum_lowering = {gen_cfg.continuum_lowering!r} applies "
                             f"to the embedded generator only, but data.path = {data_cfg.path!r}")
        ds = h5file.load_dataset(data_cfg.path, elements=elements)
    else:
        path = embedded.ensure_embedded_dataset(n_energy=n_energy, seed=gen_cfg.seed,
                                                elements=elements,
                                                continuum_lowering=gen_cfg.continuum_lowering)
        ds = h5file.load_dataset(path)
    n_file = ds.kappa.shape[-1]
    if n_file != n_energy:
        if n_file < n_energy:
            raise ValueError(f"data.n_energy = {n_energy} but the file has only {n_file} bins")
        edges = grid.energy_edges_ev(n_energy, ds.energy_edges_ev[0], ds.energy_edges_ev[-1])
        rb = lambda a: transforms.rebin(a, ds.energy_edges_ev, edges).astype(np.float32)
        ds = Dataset(ds.elements, ds.temperature_ev, ds.density_gcc, edges, rb(ds.kappa),
                     {k: rb(v) for k, v in ds.components.items()}, ds.zbar,
                     ds.charge_fractions, ds.valid, dict(ds.provenance, rebinned_from=n_file))
    return ds


def _parse_elements(spec):
    if spec is None or spec == "" or spec == ():
        return None
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out = []
    for it in items:
        it = str(it).strip()
        out.append(int(_el.ATOMIC_NUMBERS[_el.element_index(int(it) if it.isdigit() else it)]))
    return out


def make_split_masks(ds: Dataset, data_cfg, seed: int):
    """(train, val, test) bool masks (nZ, nT, nR): test by the configured split; validation a
    seeded random fraction of the remaining valid nodes (for early stopping only)."""
    name = data_cfg.split
    sp = splits.make_split(name, ds.valid, seed=seed, fraction=float(data_cfg.test_fraction))
    test = sp.test & ds.valid
    rest = ds.valid & ~test
    _, val = splits.random_split(rest, fraction=float(data_cfg.val_fraction), seed=seed + 1)
    train = rest & ~val
    return train, val, test


def node_mask(meta: dict, indices) -> np.ndarray:
    """(nZ, nT, nR) bool mask of the flat node indices recorded in a model.json (`meta`);
    `indices` is a split name ('train', 'val', 'test') or a list of flat indices."""
    shape = tuple(meta["split"]["shape"])
    idx = meta["split"][indices] if isinstance(indices, str) else indices
    m = np.zeros(int(np.prod(shape)), bool)
    m[np.asarray(idx, np.int64)] = True
    return m.reshape(shape)


def fit_scaling(ds: Dataset, train: np.ndarray, name: str, eps: float) -> SpectrumScaling:
    """Per-element RMS of the transformed training spectra, so scaled data are O(1)."""
    s = transforms.get_scaling(name, eps)
    scale = []
    for e in range(ds.kappa.shape[0]):
        y = s.forward(ds.kappa[e][train[e]].astype(np.float64))
        scale.append(np.sqrt(np.mean(y ** 2)) if y.size else 1.0)
    return SpectrumScaling(name, eps, np.maximum(np.asarray(scale), 1e-12))


def conditions(ds: Dataset):
    """(nT, nR, 2) raw features (log10 T [eV], log10 rho [g/cm^3]) of every grid node."""
    lt, lr = np.meshgrid(np.log10(ds.temperature_ev), np.log10(ds.density_gcc), indexing="ij")
    return np.stack([lt, lr], -1)


# --------------------------------------------------------------------------------------------
# tasks
def cae_task(model: CAE, loss_name: str, alpha: float) -> Task:
    """Autoencoder task: batch {'x': (B, nE)}; loss per the config (wmse/mse)."""
    def init(rng, batch):
        return model.init(rng, batch["x"])

    def loss(params, batch, rng):
        pred = model.apply(params, batch["x"])
        if loss_name == "wmse":
            val = data_losses.wmse(pred, batch["x"], batch["weight"], alpha)
        else:
            val = data_losses.get_data_loss(loss_name)(pred, batch["x"], batch["weight"])
        return val, {}

    return Task("cae", init, loss, lambda p, b: loss(p, b, None))


def regression_task(model, name: str, x_key: str = "x", y_key: str = "y",
                    point_weight_key: Optional[str] = None, physics=None) -> Task:
    """Plain masked-MSE regression task on batch[x_key] -> batch[y_key] (dropout rng passed).

    physics: optional hook(params, batch, rng, pred) -> (penalty, metrics) added to the training
    loss only (see `opacity_jax.train.physics_hooks`); validation stays the data loss.
    """
    def init(rng, batch):
        return model.init(rng, batch[x_key])

    def loss(params, batch, rng):
        if rng is None:
            pred = model.apply(params, batch[x_key])
        else:
            pred = model.apply(params, batch[x_key], train=True, rngs={"dropout": rng})
        pw = batch[point_weight_key] if point_weight_key else None
        val = data_losses.mse(pred, batch[y_key], batch["weight"], pw)
        if physics is not None and rng is not None:
            pen, metrics = physics(params, batch, rng, pred)
            return val + pen, metrics
        return val, {}

    return Task(name, init, loss, lambda p, b: loss(p, b, None))


def latent_finetune_task(mlp: MLP, cae: CAE, mlp_all, cae_all, z_mean, z_std, loss_name: str,
                         alpha: float, physics=None) -> Task:
    """Latent MLP trained through its element's frozen CAE decoder on the spectrum loss.

    Params of one entity are {'mlp': trainable, 'cae': frozen (stop_gradient)}; `init` picks the
    entity's warm-start MLP and decoder from the stacked (nZ, ...) pytrees by the batch's 'row'.
    batch: 'x' (B, 2) standardized conditions, 'y' (B, nE) scaled spectra, 'row' (B,) element.
    """
    def init(rng, batch):
        r = batch["row"][0]
        # jnp: params resumed from a checkpoint are numpy, which a traced index cannot pick.
        take = lambda t: jax.tree_util.tree_map(lambda a: jnp.asarray(a)[r], t)
        return {"mlp": take(mlp_all), "cae": take(cae_all)}

    def loss(params, batch, rng):
        # Every sample of an entity's batch carries its row (padding slots repeat sample 0).
        r = batch["row"][0]
        z = mlp.apply(params["mlp"], batch["x"]) * z_std[r] + z_mean[r]
        pred = cae.apply(jax.lax.stop_gradient(params["cae"]), z, method=cae.decode)
        if loss_name == "wmse":
            val = data_losses.wmse(pred, batch["y"], batch["weight"], alpha)
        else:
            val = data_losses.get_data_loss(loss_name)(pred, batch["y"], batch["weight"])
        if physics is not None and rng is not None:   # training only (physics_hooks)
            pen, metrics = physics(params["mlp"], batch, rng, pred)
            return val + pen, metrics
        return val, {}

    return Task("latent_mlp_finetune", init, loss, lambda p, b: loss(p, b, None))


# --------------------------------------------------------------------------------------------
# runs
def encode_all(model: CAE, params, y_all: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """(nZ, n, nE) scaled spectra -> (nZ, n, latent) with each element's encoder."""
    enc = jax.jit(jax.vmap(lambda p, x: model.apply(p, x, method=model.encode)))
    outs = [np.asarray(enc(params, jnp.asarray(y_all[:, i:i + chunk])))
            for i in range(0, y_all.shape[1], chunk)]
    return np.concatenate(outs, axis=1)


def run(config, workdir, progress: bool = True) -> dict:
    """Train the configured model into `workdir` (resuming if checkpoints exist).

    The family module is picked by `config.model` (`opacity_jax.experiments.registry`); it
    writes model.json last. Returns the family's summary dict.
    """
    family = registry.family(config.model)     # unknown names fail before any work
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    workdir_lib.write_config(workdir, config)
    return family.train(config, workdir, progress=progress)
