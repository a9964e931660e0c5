"""FC-NN deep ensembles: K members per element in one vmap'd run, served by the Surrogate."""

import json

import numpy as np
import pytest

from configs import fcnn as fcnn_config
from opacity_jax import ensemble as ens
from opacity_jax import evaluate
from opacity_jax.surrogate import Surrogate
from opacity_jax.train import experiment


@pytest.fixture(scope="module")
def fcnn_ens_workdir(tiny_workdir, tmp_path_factory):
    """A 3-member FC-NN ensemble on the session's tiny dataset (Nd + U, 48 bins)."""
    data_path = json.loads((tiny_workdir / "config.json").read_text())["data"]["path"]
    cfg = fcnn_config.get_config()
    cfg.data.path = data_path
    cfg.data.elements = ""
    cfg.data.n_energy = 48
    cfg.fcnn.hidden = (32, 32)
    cfg.fcnn.ensemble = 3
    cfg.train.epochs = 3
    cfg.train.batch_size = 512
    cfg.train.max_seconds = 0.0
    wd = tmp_path_factory.mktemp("fcnn_ens") / "run"
    experiment.run(cfg, wd, progress=False)
    return wd


def test_members_differ_and_mean_is_reported(fcnn_ens_workdir):
    s = Surrogate.load(fcnn_ens_workdir)
    assert s.members == 3
    t, r = [0.1, 0.3, 0.5], [1e-13, 1e-12, 1e-10]
    km = s.spectrum_members("Nd", t, r)
    assert km.shape == (3, 3, 48) and np.all(np.isfinite(km)) and np.all(km >= 0)
    # Own initialisation and shuffles per member: no two members agree.
    for a in range(3):
        for b in range(a + 1, 3):
            assert np.max(np.abs(km[a] - km[b])) > 0
    mean, std = s.spectrum("Nd", t, r, return_std=True)
    np.testing.assert_allclose(mean, km.mean(0), rtol=1e-6)
    np.testing.assert_allclose(std, km.std(0), rtol=1e-5)
    np.testing.assert_allclose(s.spectrum("Nd", t, r), mean, rtol=0)
    # Planck mean: mean over members of each member's own Planck mean.
    kp, kp_sd = s.planck_mean("Nd", t, r, return_std=True)
    first = Surrogate.load(fcnn_ens_workdir, ensemble=False)
    assert first.members == 1
    np.testing.assert_allclose(first.spectrum("Nd", t, r), km[0], rtol=2e-5)
    assert kp.shape == kp_sd.shape == (3,) and np.all(kp > 0) and np.all(kp_sd > 0)
    assert np.all(kp_sd < kp * 10)
    # Derivatives of the ensemble mean: finite.
    dt, dr = s.derivatives("Nd", [0.3], [1e-12])
    assert dt.shape == dr.shape == (1, 48) and np.all(np.isfinite(dt))


def test_evaluate_reports_ensemble_calibration(fcnn_ens_workdir):
    m = evaluate.evaluate_workdir(fcnn_ens_workdir, make_figures=False)
    assert "fcnn_ensemble3 (mean)" in m["methods"]
    cal = m["ensemble_calibration"]
    for q in ("log_kappa", "log_planck", "log_rosseland"):
        assert cal[q]["n"] > 0 and cal[q]["n_val"] > 0 and cal[q]["sigma_scale"] > 0
        assert 0.0 <= cal[q]["coverage_calibrated"]["0.95"] <= 1.0
    assert (fcnn_ens_workdir / "eval" / "ensemble_reliability.png").exists()
    assert ens.EnsembleSurrogate.load(fcnn_ens_workdir).members == 3
    # Calibrated intervals: bracket the member mean, widen with the level, and reproduce the
    # stored conformal multipliers.
    s = Surrogate.load(fcnn_ens_workdir)
    t, r = [0.1, 0.3], [1e-13, 1e-11]
    lo68, hi68 = s.interval("planck", "U", t, r, level=0.68)
    lo95, hi95 = s.interval("planck", "U", t, r, level=0.95)
    kp = s.planck_mean("U", t, r)
    assert np.all(lo95 <= lo68) and np.all(hi68 <= hi95) and np.all(lo95 < hi95)
    km = s.spectrum_members("U", t, r).astype(np.float64)
    import jax.numpy as jnp
    from opacity_jax import _compat
    from opacity_jax.physics import planck
    with _compat.enable_x64():
        pm = np.asarray(planck.planck_mean(jnp.asarray(km), s.energy_edges_ev,
                                           jnp.asarray(np.asarray(t, np.float64))))
    lp = np.log10(pm)
    conf = cal["log_planck"]["conformal_multipliers"]
    np.testing.assert_allclose(np.log10(hi95) - np.log10(lo95),
                               2 * conf["0.95"] * (lp.std(0) + conf["beta"]), rtol=1e-6)
    assert np.all((lo95 <= 10 ** lp.mean(0)) & (10 ** lp.mean(0) <= hi95))
    assert np.all(np.isfinite(kp))
    klo, khi = s.interval("kappa", "U", t, r)
    assert klo.shape == khi.shape == (2, 48) and np.all(klo <= khi)
    with pytest.raises(ValueError, match="level 0.9"):
        s.interval("planck", "U", t, r, level=0.9)
    with pytest.raises(ValueError, match="quantity"):
        s.interval("flux", "U", t, r)
    with pytest.raises(ValueError, match="ensemble"):
        Surrogate.load(fcnn_ens_workdir, ensemble=False).interval("planck", "U", t, r)


def test_single_fcnn_is_not_an_ensemble(fcnn_ens_workdir, tmp_path):
    meta = json.loads((fcnn_ens_workdir / "model.json").read_text())
    assert meta["fcnn"]["members"] == 3
    cfg = fcnn_config.get_config()
    cfg.fcnn.ensemble = 0
    with pytest.raises(ValueError, match="fcnn.ensemble"):
        experiment.run(cfg, tmp_path / "bad", progress=False)


def test_prediction_table_carries_the_ensemble_spread(fcnn_ens_workdir, tiny_workdir, tmp_path):
    from opacity_jax import predict
    text = predict.prediction_table(fcnn_ens_workdir, "Nd", [0.3], [1e-12])
    rows = np.loadtxt(text.splitlines(), comments="#")
    s = Surrogate.load(fcnn_ens_workdir)
    mean, std = s.spectrum("Nd", 0.3, 1e-12, return_std=True)
    assert rows.shape == (48, 3)
    np.testing.assert_allclose(rows[:, 1], mean[0], rtol=1e-5)
    np.testing.assert_allclose(rows[:, 2], std[0], rtol=1e-5, atol=1e-30)
    assert "3-member ensemble" in text and "+-" in text
    single = predict.prediction_table(tiny_workdir, "Nd", [0.3], [1e-12])
    assert np.loadtxt(single.splitlines(), comments="#").shape == (48, 2)
    with pytest.raises(ValueError, match="one density per temperature"):
        predict.prediction_table(tiny_workdir, "Nd", [0.3, 0.4], [1e-12])
    predict.write_text_atomic(tmp_path / "t.txt", text)
    assert (tmp_path / "t.txt").read_text() == text and not list(tmp_path.glob("*.tmp"))


def test_portable_fcnn_ensemble_and_single_member(fcnn_ens_workdir, tmp_path):
    """FC-NN members, their mean and std from numpy-only weights, against the served ones."""
    import export_checks
    export_checks.check(Surrogate.load(fcnn_ens_workdir), tmp_path / "ens", "fcnn ensemble")
    export_checks.check(Surrogate.load(fcnn_ens_workdir, ensemble=False), tmp_path / "one",
                         "fcnn")


def test_fcnn_and_its_portable_weights_raise_outside_by_default(fcnn_ens_workdir, tmp_path):
    import export_checks
    from opacity_jax import portable
    from opacity_jax.errors import DomainError
    from opacity_jax.serve import export
    wd, t0, r0 = export_checks.cornered_copy(fcnn_ens_workdir, tmp_path / "run", element_pos=0)
    s = Surrogate.load(wd)
    for call in (s.spectrum, s.spectrum_members, s.planck_mean):
        with pytest.raises(DomainError, match="validity envelope"):
            call("Nd", t0, r0)
    export.write_portable(s, tmp_path / "p")
    arch, w = portable.load(tmp_path / "p")
    with pytest.raises(DomainError, match="Nd outside the model's validity envelope"):
        portable.forward(arch, w, "Nd", t0, r0, return_std=True)
    m, sd = portable.forward(arch, w, "Nd", [t0, 0.2], [r0, 1e-12], return_std=True,
                             outside="nan")
    assert np.isnan(m[0]).all() and np.isnan(sd[0]).all() and np.isfinite(m[1]).all()
