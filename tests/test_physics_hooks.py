"""Physics-loss hooks of the forward surrogates (L_bb on predicted T-ordered columns)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import cae as cae_config
from configs import fcnn as fcnn_config
from opacity_jax.data import generator, grid, io, transforms
from opacity_jax.models.mlp import FCNN
from opacity_jax.train import experiment, physics_hooks

SMALL = generator.GeneratorConfig(seed=2, line_cap=1500, level_cap=200)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("hooks")
    ds = generator.generate_dataset(elements=[60, 92], n_energy=48,
                                    temperatures_ev=grid.temperatures_ev()[6:18],
                                    densities_gcc=grid.densities_gcc()[::4], config=SMALL)
    return root, io.save_dataset(ds, root / "tiny.h5")


def test_options_validation():
    c = cae_config.get_config()
    assert physics_hooks.options_from_config(c.loss)["regime"] == "data"
    c.loss.physics_options.regime = "never"
    with pytest.raises(ValueError, match="regime"):
        physics_hooks.options_from_config(c.loss)
    c = cae_config.get_config()
    assert physics_hooks.for_fcnn(c) is None                 # weight 0: defaults unchanged
    c.loss.physics = {"saha_zbar": 1.0}
    with pytest.raises(ValueError, match="not available for this model"):
        physics_hooks.for_fcnn(c)


def test_fcnn_hook_penalty_and_gradient(tiny):
    _, path = tiny
    ds = io.load_dataset(path)
    train = ds.valid.copy()
    n_t, n_r, n_e = ds.kappa.shape[1:]
    le, lt, lr = np.log10(ds.energy_ev), np.log10(ds.temperature_ev), np.log10(ds.density_gcc)
    pts = np.stack(np.meshgrid(le, lt, lr, indexing="ij"), -1).reshape(-1, 3)
    x_std = transforms.Standardizer().fit(pts, axis=0)
    scaling = experiment.fit_scaling(ds, train, "cbrt", 1e-10)
    model = FCNN(hidden=(16, 16))
    hook = physics_hooks.fcnn_hook({"monotonic_bb": 1.0}, dict(physics_hooks.DEFAULT_OPTIONS,
                                                              regime="all"),
                                   model=model, x_standardizer=x_std, ds=ds, train_mask=train,
                                   scaling=scaling)
    params = model.init(jax.random.key(0), jnp.zeros((1, 3)))
    batch = {"row": jnp.zeros(4, jnp.int32)}
    pen, metrics = hook(params, batch, jax.random.key(1), None)
    assert np.isfinite(float(pen)) and "phys_monotonic_bb" in metrics
    g = jax.grad(lambda p: hook(p, batch, jax.random.key(1), None)[0])(params)
    norms = [float(jnp.abs(a).sum()) for a in jax.tree_util.tree_leaves(g)]
    assert all(np.isfinite(norms)) and sum(norms) > 0
    # The 'data' regime keeps exactly the pairs where the training spectra obey the premise.
    masks = physics_hooks.column_pair_masks(ds, train, physics_hooks.DEFAULT_OPTIONS)
    assert masks.shape == (2, n_r, n_t - 1) and 0 < masks.mean() < 1


def test_cae_pipeline_with_physics_runs(tiny):
    root, path = tiny
    cfg = cae_config.get_config()
    cfg.data.path = str(path)
    cfg.data.elements = ""
    cfg.data.n_energy = 48
    cfg.train.epochs = 2
    cfg.train.batch_size = 16
    cfg.train.max_seconds = 0.0
    cfg.latent.regressor = "mlp"
    cfg.latent.mlp_train.epochs = 3
    if "finetune_train" in cfg.latent:
        cfg.latent.finetune_train.epochs = 2
    cfg.loss.physics.monotonic_bb = 1.0
    wd = root / "cae"
    experiment.run(cfg, wd, progress=False)
    meta = json.loads((wd / "model.json").read_text())
    assert meta["loss"]["physics"] == {"monotonic_bb": 1.0}
    fc = fcnn_config.get_config()
    fc.data.path, fc.data.elements, fc.data.n_energy = str(path), "", 48
    fc.fcnn.hidden = (16, 16)
    fc.train.epochs, fc.train.batch_size, fc.train.max_seconds = 1, 2048, 0.0
    fc.loss.physics.monotonic_bb = 1.0
    experiment.run(fc, root / "fcnn", progress=False)
    assert json.loads((root / "fcnn" / "model.json").read_text())["loss"]["physics"]
