"""Shared training steps: data -> splits -> scaling -> Task(s), and `run(config, workdir)`.

`run` validates the config before any work (`validate_config`), locks and fingerprints the
workdir (`opacity_jax.train.workdir`) and hands the config to the family module that
`config.model` names (`opacity_jax.experiments.registry`: 'cae' and 'fcnn' are trained by
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

from opacity_jax.data import embedded, generator, grid, h5file, splits, supernu, transforms
from opacity_jax.data.dataset import Dataset
from opacity_jax.data.transforms import SpectrumScaling
from opacity_jax.experiments import registry
from opacity_jax.losses import data as data_losses
from opacity_jax.models.cae import CAE
from opacity_jax.models.mlp import MLP
from opacity_jax.physics import elements as _el
from opacity_jax.train import loop as loop_lib
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
    if data_cfg.path and gen_cfg.continuum_lowering != "none":
        raise ValueError(f"data.continuum_lowering = {gen_cfg.continuum_lowering!r} applies "
                         f"to the embedded generator only, but data.path = {data_cfg.path!r}")
    if data_cfg.path and supernu.is_supernu_source(data_cfg.path):
        # SuperNu's layouts (NIST-LANL tables as SuperNu reads them): a folder of
        # op_<sym>_1Em<NN>gcc.table files or opacities.h5, point values averaged onto bins.
        ds = supernu.load_source(data_cfg.path, elements=elements)
    elif data_cfg.path:
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


def fit_scaling(ds: Dataset, train: np.ndarray, name: str, eps: float,
                floor_decades: float = 0.0) -> SpectrumScaling:
    """Per-element target scaling fitted on the training spectra, so scaled data are O(1).

    'cbrt': scale = RMS of the element's cube-root training spectra (no shift). 'log' with
    floor_decades = D > 0: ln of the spectra floored D decades below each spectrum's maximum
    (`transforms.relative_floor`), shifted by their mean and divided by their standard deviation;
    D = 0 is the legacy ln(kappa + eps) with the RMS scale.

    Args: ds: dataset (kappa (nZ, nT, nR, nE) [cm^2/g]); train: (nZ, nT, nR) bool;
      name: 'cbrt' | 'log'; eps: legacy log offset [cm^2/g]; floor_decades: D (>= 0).
    """
    probe = SpectrumScaling(name, eps, np.ones(ds.kappa.shape[0]), floor_decades=floor_decades)
    centred = name == "log" and floor_decades > 0
    scale, shift = [], []
    for e in range(ds.kappa.shape[0]):
        y = probe.transform(ds.kappa[e][train[e]].astype(np.float64))
        mu = float(np.mean(y)) if (centred and y.size) else 0.0
        shift.append(mu)
        scale.append(np.sqrt(np.mean((y - mu) ** 2)) if y.size else 1.0)
    return SpectrumScaling(name, eps, np.maximum(np.asarray(scale), 1e-12), np.asarray(shift),
                           floor_decades)


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


def check_spectrum_data(data_cfg, scaling: bool = True) -> None:
    """Checks of a spectrum family's `data` section that need no data: split name, fractions,
    n_energy, scaling; ValueError naming the field and the allowed values."""
    if data_cfg.split not in splits.SPLIT_NAMES:
        raise ValueError(f"data.split must be one of {list(splits.SPLIT_NAMES)}, got "
                         f"{data_cfg.split!r}")
    for key, lo_open in (("test_fraction", True), ("val_fraction", False)):
        v = data_cfg.get(key, 0.1)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or \
                not ((0 < v) if lo_open else (0 <= v)) or not v < 1:
            raise ValueError(f"data.{key} = {v!r} must be in {'(0' if lo_open else '[0'}, 1)")
    n = data_cfg.get("n_energy", 1)
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"data.n_energy = {n!r} must be an integer >= 2 (energy bins)")
    if scaling and "scaling" in data_cfg and data_cfg.scaling not in transforms.SCALING_NAMES:
        raise ValueError(f"data.scaling must be one of {list(transforms.SCALING_NAMES)}, got "
                         f"{data_cfg.scaling!r}")


def validate_config(config) -> None:
    """Every check of a training config that needs no data, so a bad value fails before any
    work: config.model names a family, every loop section (`train` and the sections below
    `latent`) is a valid LoopConfig, data.elements names known elements, and the family's own
    `validate(config)` (when it has one) passes. ValueError naming the field otherwise."""
    fam = registry.family(config.model)     # unknown names fail before any work
    for key in ("model", "seed", "data"):
        if key not in config:
            raise ValueError(f"config.{key} is missing (configs/*.py define it)")
    if isinstance(config.seed, bool) or not isinstance(config.seed, int):
        raise ValueError(f"config.seed = {config.seed!r} must be an integer")
    sections = [("train", config.get("train"))]
    latent = config.get("latent") or {}
    sections += [(f"latent.{k}", v) for k, v in latent.items() if k.endswith("_train")]
    for name, sec in sections:
        if sec is None:
            continue
        try:
            loop_lib.LoopConfig.from_config(sec, int(config.seed))
        except ValueError as e:
            raise ValueError(str(e).replace("train.", f"{name}.", 1)) from None
    if "elements" in config.data:
        try:
            _parse_elements(config.data.elements)
        except ValueError as e:
            raise ValueError(f"data.elements = {config.data.elements!r}: {e}") from None
    if "path" in config.data and config.data.path and not Path(config.data.path).exists():
        raise FileNotFoundError(f"data.path = {config.data.path!r}: no such file")
    check = getattr(fam, "validate", None)
    if check is not None:
        check(config)


def run(config, workdir, progress: bool = True, overwrite: bool = False) -> dict:
    """Train the configured model into `workdir` (resuming if checkpoints exist).

    In order: the config is validated (`validate_config`); the workdir is locked
    (`workdir.lock`: a second run on it stops at once); its fingerprint (data, split, elements,
    model architecture) must equal the config's, else WorkdirError naming the differing fields -
    or, with `overwrite`, the workdir's previous results are discarded; then fingerprint.json
    is written, the family module picked by `config.model` (`opacity_jax.experiments.registry`)
    trains, writing model.json, and config.json is written once training succeeded. A run that
    fails a check, or fails before its first checkpoint (a data file that does not load, a loss
    that diverges at once), leaves nothing behind (a workdir it created is removed again).
    Returns the family's summary dict.
    """
    validate_config(config)
    family = registry.family(config.model)
    workdir = Path(workdir)
    # A fresh clone has no runs/ folder: missing parents are created, and removed again with
    # the workdir when the run fails a check (the topmost folder this run created goes).
    top = workdir
    while not top.parent.exists():
        top = top.parent
    created = not workdir.exists()
    workdir.parent.mkdir(parents=True, exist_ok=True)
    ok = False
    try:
        with workdir_lib.lock(workdir):
            arch = getattr(family, "ARCHITECTURE", {}).get(config.model)
            fp = workdir_lib.fingerprint(config, arch)
            workdir_lib.check_fingerprint(workdir, fp, overwrite=overwrite)
            ok = True
            workdir_lib.write_fingerprint(workdir, fp)
            try:
                summary = family.train(config, workdir, progress=progress)
            except Exception:
                # A workdir this run created and that holds no checkpoint yet (the data file
                # failed to load, the loss diverged at once) is debris: removed like one that
                # failed a check. One with checkpoints is kept, to resume from.
                ckpts = workdir / workdir_lib.CHECKPOINT_DIR
                if created and not (ckpts.exists() and any(p.is_file()
                                                           for p in ckpts.rglob("*"))):
                    ok = False
                raise
            # Last, beside model.json: a run that fails (a config error, a diverged loss) leaves
            # the config of the model the workdir serves.
            workdir_lib.write_config(workdir, config)
            return summary
    finally:
        if created and not ok:
            import shutil
            shutil.rmtree(top, ignore_errors=True)
