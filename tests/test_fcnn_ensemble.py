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
    # Derivatives of the ensemble mean: those of the mean spectrum, by central differences
    # (relative steps of 1e-3 in T, 1e-2 in rho; float32 spectra limit the agreement).
    dt, dr = s.derivatives("Nd", [0.3], [1e-12])
    assert dt.shape == dr.shape == (1, 48)
    fd_t = (s.spectrum("Nd", 0.3003, 1e-12) - s.spectrum("Nd", 0.2997, 1e-12)) / 6e-4
    fd_r = (s.spectrum("Nd", 0.3, 1.01e-12) - s.spectrum("Nd", 0.3, 0.99e-12)) / 2e-14
    np.testing.assert_allclose(dt, fd_t, rtol=5e-2, atol=2e-2 * np.abs(fd_t).max())
    np.testing.assert_allclose(dr, fd_r, rtol=5e-2, atol=2e-2 * np.abs(fd_r).max())


def test_evaluate_reports_ensemble_calibration(fcnn_ens_workdir):
    m = evaluate.evaluate_workdir(fcnn_ens_workdir, make_figures=False)
    assert "fcnn_ensemble3 (mean)" in m["methods"]
    cal = m["ensemble_calibration"]
    meta = json.loads((fcnn_ens_workdir / "model.json").read_text())
    n_test = len(meta["split"]["test"])
    assert cal["log_planck"]["n"] == cal["log_rosseland"]["n"] == n_test
    assert cal["log_kappa"]["n"] == 48 * n_test
    assert (fcnn_ens_workdir / "eval" / "ensemble_reliability.png").exists()
    assert ens.EnsembleSurrogate.load(fcnn_ens_workdir).members == 3
    # What the report promises a user: the served 95 % intervals (Surrogate.interval, its own
    # code path) hold the true value at the reported fraction of the test nodes.
    import jax.numpy as jnp
    from opacity_jax import _compat
    from opacity_jax.physics import planck
    from opacity_jax.train import experiment
    s = Surrogate.load(fcnn_ens_workdir)
    from opacity_jax.train import workdir as workdir_lib
    ds = experiment.load_data(workdir_lib.read_config(fcnn_ens_workdir).data)
    e_idx, ti, ri = np.unravel_index(np.asarray(meta["split"]["test"]), ds.kappa.shape[:3])
    inside = {"planck": [], "kappa": []}
    for e, z in enumerate(ds.elements):
        sel = e_idx == e
        t, r = ds.temperature_ev[ti[sel]], ds.density_gcc[ri[sel]]
        truth = ds.kappa[e, ti[sel], ri[sel]].astype(np.float64)
        with _compat.enable_x64():
            kp_true = np.asarray(planck.planck_mean(jnp.asarray(truth), s.energy_edges_ev,
                                                    jnp.asarray(t)))
        lo, hi = s.interval("planck", int(z), t, r, level=0.95)
        inside["planck"].append((lo <= kp_true) & (kp_true <= hi))
        lo, hi = s.interval("kappa", int(z), t, r, level=0.95)
        inside["kappa"].append((lo <= truth + 1e-10) & (truth + 1e-10 <= hi))
    for q, key in (("planck", "log_planck"), ("kappa", "log_kappa")):
        got = np.concatenate([np.ravel(a) for a in inside[q]])
        assert got.size == cal[key]["n"]
        # Equal up to values on an interval's edge (float32 vs float64 rounding).
        assert abs(got.mean() - cal[key]["coverage_conformal"]["0.95"]) <= 2 / got.size, q


def test_interval_is_the_conformal_band_on_hand_numbers(fcnn_ens_workdir, tmp_path):
    # Members 1, 10, 100 cm^2/g in every bin: log10 mean m = 1, std (ddof 0) sqrt(2/3) =
    # 0.816497; with q_0.95 = 2, beta = 0.1 the half-width is 2 x 0.916497 = 1.832993 dex, so
    # the band is [10^-0.832993, 10^2.832993] = [0.146895, 680.7586] cm^2/g; q_0.68 = 1 gives
    # [10^0.083503, 10^1.916497] = [1.212002, 82.50810].
    s = Surrogate.load(fcnn_ens_workdir)
    s.workdir = tmp_path
    (tmp_path / "eval").mkdir()
    mult = {"0.68": 1.0, "0.95": 2.0, "beta": 0.1}
    (tmp_path / "eval" / "ensemble_calibration.json").write_text(json.dumps(
        {"members": 3, "eps": 0.0,
         "quantities": {q: {"conformal_multipliers": mult}
                        for q in ("log_kappa", "log_planck", "log_rosseland")}}))
    s.spectrum_members = lambda el, t, r: np.broadcast_to(
        np.array([1.0, 10.0, 100.0])[:, None, None], (3, np.size(t), 48))
    lo, hi = s.interval("kappa", "U", [0.1, 0.3], [1e-13, 1e-11], level=0.95)
    assert lo.shape == hi.shape == (2, 48)
    np.testing.assert_allclose(lo, 0.146895, rtol=5e-6)
    np.testing.assert_allclose(hi, 680.7586, rtol=5e-6)
    lo, hi = s.interval("kappa", "U", [0.1, 0.3], [1e-13, 1e-11], level=0.68)
    np.testing.assert_allclose(lo, 1.212002, rtol=5e-6)
    np.testing.assert_allclose(hi, 82.50810, rtol=5e-6)
    # A level the calibration marked degenerate is refused, the others still served.
    (tmp_path / "eval" / "ensemble_calibration.json").write_text(json.dumps(
        {"members": 3, "eps": 0.0,
         "quantities": {q: {"conformal_multipliers": mult, "degenerate_levels": ["0.95"]}
                        for q in ("log_kappa", "log_planck", "log_rosseland")}}))
    with pytest.raises(ValueError, match="degenerate"):
        s.interval("kappa", "U", [0.1, 0.3], [1e-13, 1e-11], level=0.95)
    assert s.interval("kappa", "U", [0.1], [1e-13], level=0.68)[0].shape == (1, 48)
    # The Planck band brackets the member mean and widens with the level.
    s = Surrogate.load(fcnn_ens_workdir)
    t, r = [0.1, 0.3], [1e-13, 1e-11]
    lo68, hi68 = s.interval("planck", "U", t, r, level=0.68)
    lo95, hi95 = s.interval("planck", "U", t, r, level=0.95)
    assert np.all(lo95 <= lo68) and np.all(hi68 <= hi95) and np.all(lo95 < hi95)
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
