"""Shared fixtures: a tiny trained CAE workdir (both latent regressors), built once per session.

Used by test_experiment.py and by the device-pipeline, trees, export, distributed and benchmark
tests, so the ~1 minute of tiny training is paid once however many of them run.
"""

import tempfile

import jax
import pytest

from configs import cae as cae_config
from opacity_jax.data import generator, grid, io
from opacity_jax.train import experiment

SMALL = generator.GeneratorConfig(seed=2, line_cap=1500, level_cap=200)


def pytest_configure(config):
    # A persistent compilation cache for the session: tests that train the same tiny model
    # several times (resume tests) compile it once. Cached executables are the same code, so
    # results are unchanged.
    config._xla_cache_dir = tempfile.mkdtemp(prefix="opacity_jax_xla_")
    jax.config.update("jax_compilation_cache_dir", config._xla_cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_unconfigure(config):
    import shutil
    shutil.rmtree(getattr(config, "_xla_cache_dir", ""), ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_workdir(tmp_path_factory):
    """Workdir trained on Nd + U, 48 bins, 12 T x 9 rho nodes (both regressors, fine-tuned MLP)."""
    root = tmp_path_factory.mktemp("e2e")
    ds = generator.generate_dataset(elements=[60, 92], n_energy=48,
                                    temperatures_ev=grid.temperatures_ev()[6:18],
                                    densities_gcc=grid.densities_gcc()[::2], config=SMALL)
    path = io.save_dataset(ds, root / "tiny.h5")
    cfg = cae_config.get_config()
    cfg.data.path = str(path)
    cfg.data.elements = ""
    cfg.data.n_energy = 48
    cfg.train.epochs = 4
    cfg.train.batch_size = 32
    cfg.train.max_seconds = 0.0
    cfg.latent.mlp_train.epochs = 20
    cfg.latent.finetune_train.epochs = 5
    cfg.latent.xgb.n_estimators = 30
    cfg.latent.xgb.early_stopping_rounds = 10
    wd = root / "run"
    experiment.run(cfg, wd, progress=False)
    return wd
