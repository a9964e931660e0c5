"""End-to-end: tiny dataset -> bin/train pipeline -> Surrogate -> evaluation."""

import json

import numpy as np
import pytest

from configs import cae as cae_config
from opacity_jax import evaluate
from opacity_jax.errors import DomainError
from opacity_jax.surrogate import Surrogate
from opacity_jax.train import experiment

# `tiny_workdir` (session-scoped) lives in tests/conftest.py, shared with other tests.


def test_workdir_contents_and_surrogate_queries(tiny_workdir):
    meta = json.loads((tiny_workdir / "model.json").read_text())
    assert meta["elements"] == [60, 92]
    assert set(meta["latent"]["regressors"]) == {"xgboost", "mlp"}
    s = Surrogate.load(tiny_workdir)
    k = s.spectrum("Nd", [0.3, 0.5], [1e-13, 1e-12])
    assert k.shape == (2, 48) and np.all(np.isfinite(k)) and np.all(k >= 0)
    kp = s.planck_mean("U", 0.4, 1e-12)
    assert kp.shape == (1,) and np.isfinite(kp[0]) and kp[0] >= 0
    dt, dr = s.derivatives("Nd", [0.3], [1e-13])
    assert dt.shape == (1, 48) and np.all(np.isfinite(dt))
    # Finite-difference check of the autodiff temperature derivative.
    h = 1e-3
    fd = (s.spectrum("Nd", 0.3 + h, 1e-13) - s.spectrum("Nd", 0.3 - h, 1e-13)) / (2 * h)
    np.testing.assert_allclose(dt, fd, rtol=5e-2, atol=1e-3 * np.abs(fd).max() + 1e-6)
    sx = Surrogate.load(tiny_workdir, regressor="xgboost")
    assert sx.spectrum("Nd", 0.3, 1e-13).shape == (1, 48)
    with pytest.raises(ValueError, match="piecewise constant"):
        sx.derivatives("Nd", 0.3, 1e-13)


def test_out_of_domain_and_unknown_element_queries(tiny_workdir):
    s = Surrogate.load(tiny_workdir)
    with pytest.raises(DomainError, match="temperature_ev"):
        s.spectrum("Nd", 4.9, 1e-13)          # beyond the tiny grid's hottest node
    with pytest.raises(DomainError, match="density_gcc"):
        s.spectrum("Nd", 0.3, 1.0)
    with pytest.raises(ValueError, match="not served"):
        s.spectrum("Eu", 0.3, 1e-13)
    with pytest.raises(ValueError, match="unknown element"):
        s.spectrum("Fe", 0.3, 1e-13)
    sw = Surrogate.load(tiny_workdir, on_domain_error="warn")
    with pytest.warns(UserWarning, match="outside the training domain"):
        sw.spectrum("Nd", 4.9, 1e-13)


def test_evaluation_on_tiny_dataset(tiny_workdir):
    m = evaluate.evaluate_workdir(tiny_workdir, make_figures=True)
    for name in ("baseline_4_neighbour_mean", "baseline_bilinear_log", "cae+mlp", "cae+xgboost"):
        r = m["methods"][name]
        assert np.isfinite(r["rmse_mean"]) and r["rmse_mean"] >= 0
        assert set(r["per_element"]) == {"Nd", "U"}
    assert m["n_test_spectra"] > 0
    assert (tiny_workdir / "eval" / "metrics.json").exists()
    assert (tiny_workdir / "eval" / "rmse_vs_z.png").exists()


def test_bad_config_values_raise(tmp_path):
    cfg = cae_config.get_config()
    cfg.model = "transformer"
    with pytest.raises(ValueError, match="config.model"):
        experiment.run(cfg, tmp_path)
    with pytest.raises(ValueError, match="unknown preset"):
        cae_config.get_config("gpu9000")
