"""End-to-end: tiny dataset -> bin/train pipeline -> Surrogate -> evaluation."""

import json

import numpy as np
import pytest

from configs import cae as cae_config
from opacity_jax import evaluate
from opacity_jax.errors import DomainError
from opacity_jax.surrogate import Surrogate
from opacity_jax.train import experiment, loop

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


def test_large_queries_run_in_fixed_chunks(tiny_workdir, monkeypatch):
    from opacity_jax.serve import chunks
    rng = np.random.default_rng(0)
    n = 150
    one = Surrogate.load(tiny_workdir, chunk=1000)
    (t_lo, t_hi), (r_lo, r_hi) = one.domain["temperature_ev"], one.domain["density_gcc"]
    t = 10 ** rng.uniform(np.log10(t_lo), np.log10(t_hi), n)
    rho = 10 ** rng.uniform(np.log10(r_lo), np.log10(r_hi), n)
    k1, p1 = one.spectrum("Nd", t, rho), one.planck_mean("Nd", t, rho)
    seen = []
    real = chunks.map_chunks

    def spy(fn, inputs, chunk, out_axis=0):
        return real(lambda *a: (seen.append(a[0].shape[0]), fn(*a))[1], inputs, chunk, out_axis)

    monkeypatch.setattr(chunks, "map_chunks", spy)
    import opacity_jax.serve.surrogate as surrogate_mod
    monkeypatch.setattr(surrogate_mod, "map_chunks", spy)
    for reg in ("mlp", "xgboost"):
        s = Surrogate.load(tiny_workdir, chunk=32, regressor=reg)
        seen.clear()
        k = s.spectrum("Nd", t, rho)
        assert k.shape == (n, 48) and seen == [32] * 5     # bounded: 32 points per call
        np.testing.assert_array_equal(k, s.spectrum("Nd", t, rho))        # fixed chunk: bits
        if reg == "mlp":
            np.testing.assert_allclose(k, k1, rtol=2e-5, atol=1e-6 * k1.max())
            np.testing.assert_allclose(s.planck_mean("Nd", t, rho), p1, rtol=2e-5)
            dt, dr = s.derivatives("Nd", t[:40], rho[:40])
            dt1, dr1 = one.derivatives("Nd", t[:40], rho[:40])
            assert dt.shape == (40, 48)
            np.testing.assert_allclose(dt, dt1, rtol=2e-4, atol=1e-6 * np.abs(dt1).max())
            np.testing.assert_allclose(dr, dr1, rtol=2e-4, atol=1e-6 * np.abs(dr1).max())
    with pytest.raises(ValueError, match="chunk must be a positive integer"):
        Surrogate.load(tiny_workdir, chunk=0)


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


# ---------------------------------------------------------------------------------- resume
class _Killed(Exception):
    pass


def _tiny_cae_config(path):
    cfg = cae_config.get_config()
    cfg.data.path = str(path)
    cfg.data.elements = ""
    cfg.data.n_energy = 32
    cfg.cae.channels = (8, 16)
    cfg.cae.latent_dim = 4
    cfg.latent.mlp_hidden = (8,)
    for sec, epochs in ((cfg.train, 3), (cfg.latent.mlp_train, 4),
                        (cfg.latent.finetune_train, 3)):
        sec.epochs, sec.batch_size, sec.max_seconds, sec.checkpoint_every = epochs, 16, 0.0, 2
    cfg.latent.xgb.n_estimators = 8
    cfg.latent.xgb.early_stopping_rounds = 4
    return cfg


def _run_killed_in(monkeypatch, cfg, wd, label, after):
    """experiment.run, killed after `after` epochs of stage `label` (its checkpoints kept)."""
    real = loop.train

    def train(*a, **kw):
        if kw.get("label") == label:
            real(*a, **dict(kw, stop_after_epochs=after))
            raise _Killed(label)
        return real(*a, **kw)

    monkeypatch.setattr(loop, "train", train)
    with pytest.raises(_Killed):
        experiment.run(cfg, wd, progress=False)
    monkeypatch.setattr(loop, "train", real)


def test_stale_stages_refitted_and_multi_stage_resume_is_bit_identical(tmp_path, monkeypatch):
    from opacity_jax.data import generator, grid, io
    from opacity_jax.train import workdir as wl
    ds = generator.generate_dataset(
        elements=[60], n_energy=32, temperatures_ev=grid.temperatures_ev()[8:14],
        densities_gcc=grid.densities_gcc()[::3],
        config=generator.GeneratorConfig(seed=2, line_cap=400, level_cap=80))
    path = io.save_dataset(ds, tmp_path / "tiny.h5")
    # Reference: one uninterrupted run with the larger CAE budget (5 epochs).
    ref_cfg = _tiny_cae_config(path)
    ref_cfg.train.epochs = 5
    experiment.run(ref_cfg, tmp_path / "ref", progress=False)
    # The documented workflow: a finished run with 3 CAE epochs, then re-runs with 5, killed
    # inside the CAE, the latent MLP and the fine-tune stage in turn.
    wd = tmp_path / "run"
    experiment.run(_tiny_cae_config(path), wd, progress=False)
    old = wl.read_stages(wd)
    cfg = _tiny_cae_config(path)
    cfg.train.epochs = 5
    _run_killed_in(monkeypatch, cfg, wd, "cae", 1)
    _run_killed_in(monkeypatch, cfg, wd, "latent_mlp", 2)
    _run_killed_in(monkeypatch, cfg, wd, "latent_mlp_finetune", 1)
    experiment.run(cfg, wd, progress=False)
    new, ref = wl.read_stages(wd), wl.read_stages(tmp_path / "ref")
    # The CAE continued (same inputs, larger budget); every later stage was re-fitted on the CAE
    # trained further, not re-used; each stage's state equals the uninterrupted run's bit for
    # bit.
    assert new["cae"]["fitted_on"] == old["cae"]["fitted_on"]
    assert new["cae"]["epochs_run"] == 5 and old["cae"]["epochs_run"] == 3
    for label in ("latent_mlp", "latent_mlp_finetune"):
        assert new[label]["fitted_on"] != old[label]["fitted_on"], label
    for label in ("cae", "latent_mlp", "latent_mlp_finetune"):
        assert new[label]["state_sha256"] == ref[label]["state_sha256"], label
        assert (wd / "metrics" / f"{label}.jsonl").read_text() == \
            (tmp_path / "ref" / "metrics" / f"{label}.jsonl").read_text(), label
    t, rho = ds.temperature_ev[1:4], ds.density_gcc[1:4]
    for reg in ("mlp", "xgboost"):
        a = Surrogate.load(wd, regressor=reg).spectrum("Nd", t, rho)
        b = Surrogate.load(tmp_path / "ref", regressor=reg).spectrum("Nd", t, rho)
        np.testing.assert_array_equal(a, b)
