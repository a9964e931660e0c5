"""The fused device pipeline equals the Surrogate path (MLP and XGBoost-as-table)."""

import jax.numpy as jnp
import numpy as np
import pytest

from opacity_jax.data import transforms
from opacity_jax.errors import DomainError
from opacity_jax.models import latent
from opacity_jax.surrogate import Surrogate
from opacity_jax.train import experiment


def _random_queries(s, n=40, seed=0):
    rng = np.random.default_rng(seed)
    lo, hi = np.log(s.domain["temperature_ev"])
    rlo, rhi = np.log(s.domain["density_gcc"])
    return np.exp(rng.uniform(lo, hi, n)), np.exp(rng.uniform(rlo, rhi, n))


@pytest.mark.parametrize("regressor", ["mlp", "xgboost"])
def test_pipeline_equals_surrogate_path(tiny_workdir, regressor):
    s = Surrogate.load(tiny_workdir, regressor=regressor)
    pipe = s.device_pipeline()
    t, r = _random_queries(s)
    for el in ("Nd", "U"):
        out = pipe(el, t, r)
        k = s.spectrum(el, t, r)
        scale = np.abs(k).max()
        np.testing.assert_allclose(out["kappa"], k, rtol=1e-5, atol=1e-6 * scale)
        np.testing.assert_allclose(out["planck"], s.planck_mean(el, t, r), rtol=1e-5)
        np.testing.assert_allclose(out["rosseland"], s.rosseland_mean(el, t, r), rtol=1e-5)
    allz = pipe.apply_all(pipe.params, jnp.asarray(t, jnp.float32), jnp.asarray(r, jnp.float32))
    assert allz["kappa"].shape == (2, t.size, s.energy_ev.size)
    np.testing.assert_allclose(np.asarray(allz["planck"][1]), pipe("U", t, r)["planck"],
                               rtol=1e-6)
    with pytest.raises(DomainError):
        pipe("Nd", 50.0, 1e-13)
    # bf16 MLP/decoder: close to float32, not equal.
    pb = s.device_pipeline(dtype=jnp.bfloat16)("Nd", t, r)
    np.testing.assert_allclose(pb["planck"], pipe("Nd", t, r)["planck"], rtol=0.1)


def test_tree_pipeline_at_grid_nodes_reproduces_xgboost_on_training_features(tiny_workdir):
    # xgboost's hist cuts sit exactly on the training features, so grid-node queries are ties;
    # the pipeline must put them where training did (right of the threshold).
    s = Surrogate.load(tiny_workdir, regressor="xgboost")
    pipe = s.device_pipeline()
    meta = s.meta
    tt, rr = np.meshgrid(meta["temperature_ev"], meta["density_gcc"], indexing="ij")
    xs = transforms.Standardizer.from_dict(meta["latent"]["x_standardizer"])
    feats = xs.transform(experiment.conditions(
        type("D", (), {"temperature_ev": np.asarray(meta["temperature_ev"]),
                       "density_gcc": np.asarray(meta["density_gcc"])})).reshape(-1, 2))
    boosters, best = s._boosters
    for pos, z in enumerate(s.elements):
        ref = latent.predict_xgb(boosters[int(z)], feats.astype(np.float32), best[int(z)])
        got = pipe.latent(pipe.params, pos, jnp.asarray(tt.ravel(), jnp.float32),
                          jnp.asarray(rr.ravel(), jnp.float32))
        np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-6, atol=1e-7)
