"""Deep ensembles on the entity axis: members differ, vmap'd == separate, calibration, Surrogate."""

import json

import jax
import numpy as np
import pytest

from opacity_jax import ensemble as ens
from opacity_jax.train import loop
from opacity_jax.train import workdir as workdir_lib
from opacity_jax.train.task import pack_ragged

CFG = loop.LoopConfig(epochs=6, batch_size=16, learning_rate=3e-3, seed=3, eval_every=2,
                      checkpoint_every=1000)


def _data(seed=0, n=48):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    y = np.stack([np.sin(2 * x[:, 0]) + x[:, 1], x[:, 0] * x[:, 1]], -1).astype(np.float32)
    return pack_ragged([{"x": x, "y": y}, {"x": x[: n // 2], "y": -y[: n // 2]}])


@pytest.fixture(scope="module")
def trained():
    model = ens.GaussianMLP(hidden=(16, 16), n_out=2)
    task = ens.gaussian_nll_task(model, beta=0.5)
    data = _data()
    res = ens.train_ensemble(task, data, data, CFG, members=3)
    return model, task, data, res


def test_members_differ_and_mean_is_the_reported_mean(trained):
    model, _, data, res = trained
    assert res.n_entities == 2 and res.members == 3
    mp = res.member_params()
    leaf = jax.tree_util.tree_leaves(mp)[0]
    assert leaf.shape[:2] == (2, 3)
    assert not np.allclose(leaf[0, 0], leaf[0, 1])           # own init per member
    x = np.asarray(data.arrays["x"][0, :10])
    p0 = jax.tree_util.tree_map(lambda a: a[0], mp)            # entity 0's members
    mu, lv = ens.predict_members(model.apply, p0, x)
    assert mu.shape == (3, 10, 2) and lv.shape == (3, 10, 2)
    assert np.all(mu.std(0) > 0)
    mean, std = ens.mixture_moments(mu, np.exp(lv))
    np.testing.assert_allclose(mean, mu.mean(0), rtol=1e-6)
    np.testing.assert_allclose(std ** 2, np.exp(lv).mean(0) + mu.var(0), rtol=1e-5)
    _, spread = ens.mixture_moments(mu)
    np.testing.assert_allclose(spread, mu.std(0), rtol=1e-5)


def test_vmapped_ensemble_equals_members_trained_separately(trained):
    _, task, data, res = trained
    rep = data.replicate(3)
    for member in (1, 5):               # entity 0 member 1, entity 1 member 2
        alone = rep.select([member])
        r = loop.train(task, alone, alone, CFG, progress=False)
        for a, b in zip(jax.tree_util.tree_leaves(r.params), jax.tree_util.tree_leaves(res.params)):
            np.testing.assert_allclose(np.asarray(a)[0], np.asarray(b)[member], rtol=2e-5,
                                       atol=2e-6)


def test_train_ensemble_rejects_zero_members(trained):
    _, task, data, _ = trained
    with pytest.raises(ValueError, match="members must be >= 1"):
        ens.train_ensemble(task, data, data, CFG, members=0)


def test_coverage_and_sigma_scale():
    rng = np.random.default_rng(0)
    r = rng.normal(size=200_000)
    cov = ens.interval_coverage(r, np.ones_like(r), (0.68, 0.95))
    assert abs(cov["0.68"] - 0.68) < 0.01 and abs(cov["0.95"] - 0.95) < 0.005
    # sigma too small by 2: the fitted scale is ~2 and restores the coverage.
    s = ens.fit_sigma_scale(r, np.full_like(r, 0.5))
    assert s == pytest.approx(2.0, rel=0.03)
    s95 = ens.fit_sigma_scale(r, np.full_like(r, 0.5), levels=(0.95,))
    assert ens.interval_coverage(r, 0.5 * s95 * np.ones_like(r), (0.95,))["0.95"] == \
        pytest.approx(0.95, abs=0.005)
    summ = ens.calibration_summary(r, np.full_like(r, 0.5), s)
    assert summ["coverage_raw"]["0.68"] < 0.45 < summ["coverage_calibrated"]["0.68"]
    assert ens.fit_sigma_scale([], []) == 1.0
    with pytest.raises(ValueError, match="differ in size"):
        ens.interval_coverage(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="levels must lie"):
        ens.z_of_level([1.0])


def test_sigma_model_recovers_scale_and_floor():
    # Residuals drawn with sd sqrt((2 s)^2 + 0.3^2): a spread too small by 2 plus an error
    # floor the spread cannot show. A scale alone cannot fix both small and large s.
    rng = np.random.default_rng(1)
    s_cal, s_test = rng.uniform(0.01, 1.0, 40_000), rng.uniform(0.01, 1.0, 40_000)
    true_sd = lambda s: np.sqrt((2.0 * s) ** 2 + 0.3 ** 2)   # noqa: E731
    r_cal, r_test = rng.normal(size=s_cal.size) * true_sd(s_cal), \
        rng.normal(size=s_test.size) * true_sd(s_test)
    a, b = ens.fit_sigma_model(r_cal, s_cal)
    assert a == pytest.approx(2.0, rel=0.1) and b == pytest.approx(0.3, rel=0.25)
    summ = ens.calibration_summary(r_test, s_test, ens.fit_sigma_scale(r_cal, s_cal),
                                   model=(a, b))
    small = s_test < 0.1           # where the floor dominates
    cov_small = ens.interval_coverage(r_test[small], np.sqrt((a * s_test[small]) ** 2 + b * b))
    scale_only = ens.interval_coverage(r_test[small],
                                       ens.fit_sigma_scale(r_cal, s_cal) * s_test[small])
    assert abs(cov_small["0.95"] - 0.95) < 0.02 < abs(scale_only["0.95"] - 0.95)
    assert abs(summ["coverage_scale_and_floor"]["0.95"] - 0.95) < 0.01
    assert ens.fit_sigma_model([], []) == (1.0, 0.0)


def test_conformal_multipliers_cover_heavy_tails():
    # Student-t (3 dof) residuals with sigma = 1: no single Gaussian scale gives 68 % and 95 %
    # at once; the conformal quantiles do, on an independent sample.
    rng = np.random.default_rng(3)
    r_cal, r_test = rng.standard_t(3, 40_000), rng.standard_t(3, 40_000)
    one = np.ones(40_000)
    q = ens.fit_conformal(r_cal, one)
    from scipy import stats
    # beta = median sigma = 1, so the multipliers are half the t quantiles.
    assert q["beta"] == 1.0
    assert 2 * q["0.95"] == pytest.approx(stats.t.ppf(0.975, 3), rel=0.03)
    assert 2 * q["0.68"] == pytest.approx(stats.t.ppf(0.84, 3), rel=0.03)
    cov = ens.conformal_coverage(r_test, one, q)
    assert abs(cov["0.68"] - 0.68) < 0.01 and abs(cov["0.95"] - 0.95) < 0.005
    scaled = ens.interval_coverage(r_test, ens.fit_sigma_scale(r_cal, one) * one)
    assert max(abs(scaled["0.68"] - 0.68), abs(scaled["0.95"] - 0.95)) > 0.01
    assert ens.fit_conformal([1.0], [1.0], (0.95,))["0.95"] == float("inf")
    # Points where every member agrees (sigma = 0) do not make the intervals infinite.
    s0 = np.where(np.arange(40_000) % 10 == 0, 0.0, 1.0)
    q0 = ens.fit_conformal(r_cal, s0)
    assert q0["beta"] == 1.0 and np.isfinite(q0["0.95"])
    assert abs(ens.conformal_coverage(r_test, s0, q0)["0.95"] - 0.95) < 0.005
    summ = ens.calibration_summary(r_test, one, 1.0, conformal=q)
    assert summ["coverage_conformal"] == cov


def test_reliability_plot_and_json_written_atomically(tmp_path):
    lv, obs = ens.reliability_curve(np.linspace(-2, 2, 50), np.ones(50))
    p = ens.plot_reliability({"x": (lv, obs)}, tmp_path / "r.png", "t")
    assert p.exists() and p.stat().st_size > 1000
    j = workdir_lib.write_json(tmp_path / "a.json", {"v": np.float32(1.5), "a": np.arange(2)})
    assert json.loads(j.read_text()) == {"v": 1.5, "a": [0, 1]}
    assert not list(tmp_path.glob(".*tmp*"))


# ---------------------------------------------------------------------------------------------
# CAE latent-MLP ensemble through the Surrogate
@pytest.fixture(scope="module")
def cae_workdir(tiny_workdir, tmp_path_factory):
    """A copy of the session's tiny CAE workdir (tests/conftest.py) plus a 3-member ensemble."""
    import shutil
    wd = tmp_path_factory.mktemp("ens_cae") / "run"
    shutil.copytree(tiny_workdir, wd)
    ens.train_latent_ensemble(wd, members=3, train_cfg={"epochs": 8})
    return wd


def test_ensemble_surrogate_mean_std_and_means(cae_workdir):
    from opacity_jax.errors import DomainError
    s = ens.EnsembleSurrogate.load(cae_workdir)
    assert s.members == 3
    t, r = [0.1, 0.3], [1e-13, 1e-12]
    km = s.spectrum_members("Nd", t, r)
    assert km.shape == (3, 2, 48) and np.all(np.isfinite(km)) and np.all(km >= 0)
    mean, std = s.spectrum("Nd", t, r)
    np.testing.assert_allclose(mean, km.mean(0), rtol=1e-6)
    np.testing.assert_allclose(std, km.std(0), rtol=1e-6)
    # The plain Surrogate with ensemble=True serves the same mean; without it, the single MLP.
    from opacity_jax.surrogate import Surrogate as _S
    np.testing.assert_allclose(_S.load(cae_workdir, ensemble=True).spectrum("Nd", t, r), mean,
                               rtol=1e-6)
    assert _S.load(cae_workdir).members == 1
    assert np.all(std >= 0) and np.any(std > 0)
    kp, kp_sd = s.planck_mean("Nd", t, r)
    kr, kr_sd = s.rosseland_mean("U", t, r)
    assert kp.shape == kp_sd.shape == (2,) and np.all(kp > 0) and np.all(kp_sd > 0)
    # Means of an ensemble: over members of each member's own mean (not the mean of the mean
    # spectrum, which would be larger for Rosseland's harmonic mean of a spread).
    import jax.numpy as jnp
    from opacity_jax import _compat
    from opacity_jax.physics import planck
    for fn, el, (m, sd) in ((planck.planck_mean, "Nd", (kp, kp_sd)),
                            (planck.rosseland_mean, "U", (kr, kr_sd))):
        with _compat.enable_x64():
            per = np.asarray(fn(jnp.asarray(s.spectrum_members(el, t, r).astype(np.float64)),
                                s.base.energy_edges_ev, jnp.asarray(np.asarray(t, np.float64))))
        np.testing.assert_allclose(m, per.mean(0), rtol=1e-4)
        np.testing.assert_allclose(sd, per.std(0), rtol=1e-3, atol=1e-6 * per.mean())
    # Per-member Planck means from the ordinary Surrogate with one member's parameters agree.
    from opacity_jax.surrogate import Surrogate
    member = Surrogate(s.base.meta, {"cae": s.base._params["cae"],
                                     "mlp": jax.tree_util.tree_map(lambda a: a[1:2],
                                                                   s.base._params["mlp"])})
    assert member.members == 1
    np.testing.assert_allclose(member.spectrum("Nd", t, r), km[1], rtol=2e-4, atol=1e-30)
    with pytest.raises(DomainError):
        s.spectrum("Nd", 4.9, 1e-13)
    with pytest.raises(ValueError, match="no ensemble"):
        meta = json.loads((cae_workdir / "model.json").read_text())
        meta.pop("ensemble")
        other = cae_workdir.parent / "no_ens"
        other.mkdir(exist_ok=True)
        (other / "model.json").write_text(json.dumps(meta))
        ens.EnsembleSurrogate.load(other)


def test_portable_cae_latent_ensemble(cae_workdir, tmp_path):
    """The latent-MLP ensemble's members, mean and std from numpy-only weights."""
    import export_checks
    from opacity_jax import portable
    from opacity_jax.serve import export
    from opacity_jax.surrogate import Surrogate
    export_checks.check(Surrogate.load(cae_workdir, ensemble=True), tmp_path / "p",
                        "cae latent ensemble")
    # what bin/export --ensemble --portable_dir writes: the same arrays
    export.export_workdir(cae_workdir, ensemble=True, portable_dir=str(tmp_path / "cli"))
    (arch, w), (_, w_ref) = portable.load(tmp_path / "cli"), portable.load(tmp_path / "p")
    assert arch["members"] == 3 and w["mlp/0/kernel"].shape[:2] == (2, 3)
    assert sorted(w) == sorted(w_ref) and all(np.array_equal(w[k], w_ref[k]) for k in w)


def test_calibration_report_of_a_workdir(cae_workdir):
    meta = json.loads((cae_workdir / "model.json").read_text())
    cal = set(meta["ensemble"]["calibration_nodes"])
    assert cal and cal <= set(meta["split"]["val"]) and not cal & set(meta["split"]["test"])
    with pytest.raises(ValueError, match="other settings"):
        ens.train_latent_ensemble(cae_workdir, members=2, train_cfg={"epochs": 2})
    rep = ens.calibrate_workdir(cae_workdir)
    saved = json.loads((cae_workdir / "eval" / "ensemble_calibration.json").read_text())
    assert saved["scale_fitted_on"].startswith("calibration nodes")
    assert rep["log_kappa"]["n_val"] == 48 * len(cal)
    n_test = len(meta["split"]["test"])
    assert rep["log_planck"]["n"] == rep["log_rosseland"]["n"] == n_test
    assert rep["log_kappa"]["n"] == 48 * n_test
    assert saved["quantities"] == json.loads(json.dumps(rep))
    assert (cae_workdir / "eval" / "ensemble_reliability.png").exists()


def test_ensemble_stage_is_recorded_resumed_and_refitted_after_the_cae_changes(
        cae_workdir, tmp_path):
    """bin/train_ensemble records its stage like every family: model.json names the checkpoint
    step and digest inference restores; a re-run on the same CAE re-uses the members; after
    bin/train continues the CAE (a larger train.epochs) the members are re-fitted on the new
    latents, equal bit for bit to an ensemble trained afresh on that CAE."""
    import shutil

    from opacity_jax.errors import CheckpointError
    from opacity_jax.train import experiment
    wd = tmp_path / "wd"
    shutil.copytree(cae_workdir, wd)
    meta = json.loads((wd / "model.json").read_text())
    rec = meta["stages"][ens.ENSEMBLE_LABEL]
    assert rec == {k: workdir_lib.read_stages(wd)[ens.ENSEMBLE_LABEL][k]
                   for k in ("step", "state_sha256", "fitted_on")}
    # Same CAE, same settings: the finished stage is re-used (its checkpoint not re-written).
    step_dir = workdir_lib.checkpoint_dir(wd, ens.ENSEMBLE_LABEL) / str(rec["step"])
    stamp = (step_dir.stat().st_ino, step_dir.stat().st_mtime_ns)
    again = ens.train_latent_ensemble(wd, members=3, train_cfg={"epochs": 8})
    assert (step_dir.stat().st_ino, step_dir.stat().st_mtime_ns) == stamp
    assert workdir_lib.read_stages(wd)[ens.ENSEMBLE_LABEL]["state_sha256"] == \
        rec["state_sha256"] and again["epochs_run"] == 8
    # The CAE trains one epoch further (the documented re-run); model.json no longer lists the
    # ensemble, and bin/train_ensemble re-fits it instead of re-using the stale members.
    cfg = workdir_lib.read_config(wd)
    cfg.train.epochs += 1
    # The later stages are re-fitted on the new CAE whatever their budgets: small ones suffice.
    cfg.latent.regressor, cfg.latent.mlp_train.epochs, cfg.latent.finetune_train.epochs = \
        "mlp", 2, 1
    experiment.run(cfg, wd, progress=False)
    stages = workdir_lib.read_stages(wd)
    assert stages["cae"]["epochs_run"] == cfg.train.epochs
    with pytest.raises(ValueError, match="bin/train_ensemble"):
        ens.EnsembleSurrogate.load(wd)
    fresh = tmp_path / "fresh"
    shutil.copytree(wd, fresh)
    shutil.rmtree(workdir_lib.checkpoint_dir(fresh, ens.ENSEMBLE_LABEL))
    ens.train_latent_ensemble(wd, members=3, train_cfg={"epochs": 8})
    ens.train_latent_ensemble(fresh, members=3, train_cfg={"epochs": 8})
    new = workdir_lib.read_stages(wd)[ens.ENSEMBLE_LABEL]
    assert new["fitted_on"] != rec["fitted_on"]
    assert new["state_sha256"] == workdir_lib.read_stages(fresh)[ens.ENSEMBLE_LABEL][
        "state_sha256"] != rec["state_sha256"]
    t, r = [0.1, 0.3], [1e-13, 1e-12]
    np.testing.assert_array_equal(ens.EnsembleSurrogate.load(wd).spectrum_members("Nd", t, r),
                                  ens.EnsembleSurrogate.load(fresh).spectrum_members("Nd", t, r))
    # Inference restores exactly the recorded checkpoint: a digest of another run is refused.
    meta = json.loads((wd / "model.json").read_text())
    meta["stages"][ens.ENSEMBLE_LABEL]["state_sha256"] = rec["state_sha256"]
    (wd / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=ens.ENSEMBLE_LABEL):
        ens.EnsembleSurrogate.load(wd)


def _members_with_known_errors(ds, log_factor):
    """EnsembleSurrogate.spectrum_members stand-in: the dataset's true spectra times
    10 ** log_factor(element index, flat node indices (N,)) -> (K, N, nE)."""
    def spectrum_members(self, element, temperature_ev, density_gcc):
        e = [int(z) for z in ds.elements].index(int(element))
        ti = np.abs(np.log(ds.temperature_ev)[None] - np.log(temperature_ev)[:, None]).argmin(1)
        ri = np.abs(np.log(ds.density_gcc)[None] - np.log(density_gcc)[:, None]).argmin(1)
        flat = np.ravel_multi_index((np.full_like(ti, e), ti, ri), ds.kappa.shape[:3])
        return ds.kappa[e, ti, ri].astype(np.float64)[None] * 10.0 ** log_factor(flat)
    return spectrum_members


def test_calibrate_workdir_on_members_with_known_errors(cae_workdir, monkeypatch, tmp_path):
    # The real members' errors are unknown; these stand-ins have known ones, so the reported
    # coverages have values to meet.
    from scipy import stats
    from opacity_jax.train import experiment
    meta = json.loads((cae_workdir / "model.json").read_text())
    ds = experiment.load_data(workdir_lib.read_config(cae_workdir).data)
    test_nodes = np.asarray(meta["split"]["test"])
    nE, tau = ds.kappa.shape[-1], 0.2

    # (1) One factor per member and spectrum: log offsets m + tau (-1, 0, +1), m = g sd with g
    # a fixed N(0, 1) draw per node, so each spectrum's Planck and Rosseland means carry the
    # same factors exactly (both are linear in a common factor): residual / sigma = g.
    g = np.random.default_rng(7).normal(size=ds.kappa[..., 0].size)
    sd = tau * np.sqrt(2 / 3)

    def per_spectrum(flat):
        off = g[flat] * sd + tau * np.array([-1.0, 0.0, 1.0])[:, None]
        return np.repeat(off[..., None], nE, -1)

    monkeypatch.setattr(ens.EnsembleSurrogate, "spectrum_members",
                        _members_with_known_errors(ds, per_spectrum))
    rep = ens.calibrate_workdir(cae_workdir, out_dir=tmp_path, eps=1e-30)
    for lvl, z in (("0.68", stats.norm.ppf(0.84)), ("0.95", stats.norm.ppf(0.975))):
        want = np.mean(np.abs(g[test_nodes]) <= z)           # counted on the test nodes only
        for q in ("log_planck", "log_rosseland"):
            assert rep[q]["coverage_raw"][lvl] == pytest.approx(want, abs=1e-12), (q, lvl)

    # (2) Independent N(0, tau^2) factors per member and bin: mean residual / member std
    # (ddof 0) of K = 3 draws is t_2 / sqrt(2), so the raw level-L interval covers
    # P(|t_2| <= z_L sqrt 2); split-conformal multipliers fitted on the calibration nodes give
    # L on the test nodes. Tolerances: 4 binomial sd over the N test values (all independent
    # here), doubled in variance for the conformal one (fitted on a sample of similar size).
    def per_bin(flat):
        rng = np.random.default_rng(list(flat[:1]) + [flat.size])
        return tau * rng.normal(size=(3, flat.size, nE))

    monkeypatch.setattr(ens.EnsembleSurrogate, "spectrum_members",
                        _members_with_known_errors(ds, per_bin))
    rep = ens.calibrate_workdir(cae_workdir, out_dir=tmp_path, eps=1e-30)
    n = rep["log_kappa"]["n"]
    for lvl, z in ((0.68, stats.norm.ppf(0.84)), (0.95, stats.norm.ppf(0.975))):
        raw = 2 * stats.t.cdf(z * np.sqrt(2), 2) - 1
        assert abs(rep["log_kappa"]["coverage_raw"][f"{lvl:g}"] - raw) < \
            4 * np.sqrt(raw * (1 - raw) / n)
        assert abs(rep["log_kappa"]["coverage_conformal"][f"{lvl:g}"] - lvl) < \
            4 * np.sqrt(2 * lvl * (1 - lvl) / n)


def test_interval_scores_hand_values():
    # |r| = 0.1, 0.2, 0.3, 0.4 with half-width 0.7 x (0.5 + 0) = 0.35: three of four inside,
    # median |r| 0.25, so efficiency 0.35 / 0.25 = 1.4; beta widens every half-width.
    r = np.array([0.1, -0.2, 0.3, 0.4])
    s = np.full(4, 0.5)
    out = ens.interval_scores(r, s, {"0.95": 0.7, "beta": 0.0, "spread_weight": 1.0})
    assert out["coverage_0.95"] == pytest.approx(0.75)
    assert out["median_half_width_0.95_dex"] == pytest.approx(0.35)
    assert out["efficiency_0.95"] == pytest.approx(1.4)
    wide = ens.interval_scores(r, s, {"0.95": 0.7, "beta": 0.1})
    assert wide["coverage_0.95"] == pytest.approx(1.0)
    assert wide["efficiency_0.95"] == pytest.approx(0.7 * 0.6 / 0.25)
