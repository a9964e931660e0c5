"""Cross-section nets (models/xsec.py) and their experiment (xsec_experiment.py) on tiny data."""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from configs import xsec as xsec_config
from configs import xsec_pinn as pinn_config
from opacity_jax import xsec_experiment as xe
from opacity_jax.data import xsec_generator as xg
from opacity_jax.errors import DomainError
from opacity_jax.models import xsec as xm
from opacity_jax.train import experiment, loop
from opacity_jax.train.task import pack_ragged

N_V, N_J = 6, 5


def _descriptors(n, seed=0):
    rng = np.random.default_rng(seed)
    v = rng.integers(0, N_V, n)
    j = rng.integers(0, N_J, n)
    lam = rng.uniform(0.5, 1.0, n)
    e = -1.0 + v / N_V
    return np.stack([lam, v, j, v / (N_V - 1), e, 3.0 / lam, (lam - 0.5) / 0.5],
                    -1).astype(np.float32)


@pytest.mark.parametrize("name", ["xsec", "xsec_pinn"])
@pytest.mark.parametrize("enc", xm.V_ENCODINGS)
def test_shapes_and_onehot_dense_equals_dense_on_features(name, enc):
    x = jnp.asarray(_descriptors(16))
    model = xm.make_model(name, N_V, N_J, (8, 8), 0.2, enc)
    params = model.init(jax.random.key(0), x)
    y = model.apply(params, x)
    assert y.shape == (16,) and bool(jnp.all(jnp.isfinite(y)))
    # Dropout is active only in training mode and needs its rng.
    y_tr = model.apply(params, x, train=True, rngs={"dropout": jax.random.key(1)})
    assert y_tr.shape == (16,)
    # The gathered first layer is exactly a Dense layer on the explicit one-hot features.
    feats = model.apply(params, x, method=model.features)
    first = params["params"]["OneHotDense_0"]
    assert first["kernel"].shape[0] == feats.shape[1]
    cont, idx, sizes = xm._split_inputs(x, N_V, N_J, enc)
    if name == "xsec_pinn":
        cont = jnp.concatenate([cont, model.apply(params, x, method=model._extra)], -1)
    h_gather = xm.OneHotDense(8, sizes).apply({"params": first}, cont, idx)
    np.testing.assert_allclose(h_gather, feats @ first["kernel"] + first["bias"], rtol=1e-5,
                               atol=1e-5)


def test_pinn_output_non_negative_branches_and_functional_form():
    x = jnp.asarray(_descriptors(64, seed=3))
    model = xm.make_model("xsec_pinn", N_V, N_J, (16, 16), 0.0)
    params = model.init(jax.random.key(2), x)
    # Push the output layer far negative and positive: A, B stay >= 0 and y finite.
    for shift in (-200.0, 0.0, 50.0):
        p = jax.tree_util.tree_map(lambda a: a, params)
        last = sorted(k for k in p["params"] if k.startswith("Dense_"))[-1]
        p["params"][last]["bias"] = p["params"][last]["bias"] + shift
        A, B = model.apply(p, x, method=model.branches)
        assert bool(jnp.all(A >= 0)) and bool(jnp.all(B >= 0))
        y = model.apply(p, x)
        assert bool(jnp.all(jnp.isfinite(y)))
    # y = log10((1/lam) [h+ A + h- B]) exactly (away from underflow).
    A, B = model.apply(params, x, method=model.branches)
    hp, hm = xm.branch_factors(x[:, 2])
    want = jnp.log10((hp * A + hm * B) / x[:, 0])
    np.testing.assert_allclose(model.apply(params, x), want, rtol=1e-5, atol=1e-5)
    # J = 0 has no J - 1 branch: B must not matter there, and must at J > 0. The last Dense
    # layer's second output is b (B = softplus(b)); shifting its bias changes B alone.
    last = sorted((k for k in params["params"] if k.startswith("Dense_")),
                  key=lambda k: int(k.split("_")[1]))[-1]

    def shifted(shift):
        layer = dict(params["params"][last])
        layer["bias"] = layer["bias"].at[1].add(shift)
        return {"params": dict(params["params"], **{last: layer})}

    j0, j2 = x.at[:, 2].set(0.0), x.at[:, 2].set(2.0)
    A0, B0 = model.apply(params, j0, method=model.branches)
    A3, B3 = model.apply(shifted(3.0), j0, method=model.branches)
    assert bool(jnp.all(B3 > B0 + 1.0))                  # the shift really changes B ...
    np.testing.assert_array_equal(A3, A0)                # ... and only B
    np.testing.assert_array_equal(model.apply(shifted(3.0), j0), model.apply(params, j0))
    # y(J = 0) = log10(A / lam): h+ = 1 and the B term is absent.
    np.testing.assert_allclose(model.apply(params, j0), jnp.log10(A0 / x[:, 0]), rtol=1e-5,
                               atol=1e-5)
    # The gradient through b at J = 0 is the e^-80 of the finite stand-in for log h- = -inf.
    dy_db0 = jax.grad(lambda s: jnp.sum(model.apply(shifted(s), j0)))(0.0)
    assert abs(float(dy_db0)) < 1e-30
    # At J = 2: dy/db = h- sigmoid(b) / (ln 10 (h+ A + h- B)), h+ = 3/5, h- = 2/5,
    # b = log(e^B - 1).
    dy_db2 = jax.vmap(jax.grad(lambda s, i: model.apply(shifted(s), j2)[i]), (None, 0))(
        0.0, jnp.arange(x.shape[0]))
    A2, B2 = model.apply(params, j2, method=model.branches)
    want = 0.4 * jax.nn.sigmoid(jnp.log(jnp.expm1(B2))) / (jnp.log(10.0) * (0.6 * A2 + 0.4 * B2))
    np.testing.assert_allclose(dy_db2, want, rtol=1e-3)
    assert bool(jnp.all(dy_db2 > 0))


def test_make_model_rejects_bad_arguments():
    with pytest.raises(ValueError, match="model must be"):
        xm.make_model("cae", 3, 3, (4,), 0.0)
    with pytest.raises(ValueError, match="v_encoding"):
        xm.make_model("xsec", 3, 3, (4,), 0.0, "bogus")
    with pytest.raises(ValueError, match="dropout"):
        xm.make_model("xsec", 3, 3, (4,), 1.0)


def _rows(n, seed):
    x = _descriptors(n, seed)
    y = (np.sin(6 * x[:, 0]) - 0.3 * x[:, 1] / N_V + 0.1 * x[:, 2]).astype(np.float32)
    return {"x": x, "y": y}


def test_padded_molecule_does_not_affect_the_others_and_training_reduces_loss():
    model = xm.make_model("xsec_pinn", N_V, N_J, (16, 16), 0.0, n_fourier=4)
    task = experiment.regression_task(model, "xsec_pinn")
    cfg = loop.LoopConfig(epochs=3, batch_size=32, learning_rate=3e-3, seed=0)
    # Ragged: 3 molecules with 40, 160 and 90 points, trained together and padded to 160.
    rows = [_rows(40, 1), _rows(160, 2), _rows(90, 3)]
    data = pack_ragged(rows)
    assert data.n_max == 160 and list(data.counts) == [40, 160, 90]
    trainer = loop.Trainer(task, cfg)   # compiled once for both 3-molecule runs
    res_all = loop.train(task, data, data, cfg, progress=False, trainer=trainer)
    # The same molecule 1 alone (entity id kept so its PRNG stream is the same).
    alone = pack_ragged([rows[1]])
    alone.entity_ids = np.array([1])
    res_one = loop.train(task, alone, alone, cfg, progress=False)
    take = lambda t, i: jax.tree_util.tree_map(lambda a: np.asarray(a[i]), t)  # noqa: E731
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6),
                           take(res_all.params, 1), take(res_one.params, 0))
    # Garbage in a padded slot of molecule 0 changes nothing (weight 0).
    bad = pack_ragged(rows)
    bad.arrays["y"][0, 40:] = 1e6
    bad.arrays["x"][0, 40:, 0] = 0.7
    res_bad = loop.train(task, bad, bad, cfg, progress=False, trainer=trainer)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6),
                           res_all.params, res_bad.params)
    first, last = res_all.history[0]["val_loss"], res_all.history[-1]["val_loss"]
    assert all(b < a for a, b in zip(first, last)), (first, last)


def _tiny_table():
    """A synthetic two-molecule table in generate_xsec_table's layout (no physics needed)."""
    frames = []
    for name, n_v, n_j in (("H2+", 4, 4), ("HeH+", 3, 3)):
        lam = np.linspace(50.0, 100.0, 12)
        for j in range(n_j):
            for v in range(n_v):
                e = -0.1 + 0.02 * v + 0.001 * j * (j + 1)
                sig = 1e-18 * (1.0 + 0.5 * np.sin(lam / 10.0 + v)) * np.exp(-0.1 * j)
                frames.append(pd.DataFrame({"molecule": name, "v": v, "J": j,
                                            "E_vJ_hartree": e, "wavelength_nm": lam,
                                            "sigma_cm2": sig}))
    df = pd.concat(frames, ignore_index=True)
    df["v"] = df["v"].astype(np.int32)
    df["J"] = df["J"].astype(np.int32)
    return df


def _tiny_pinn_config(tmp_path, ensemble: int = 1):
    """The PINN config shrunk to seconds on the synthetic two-molecule table."""
    path = xg.save_xsec_table(_tiny_table(), tmp_path / "tiny.h5", provenance={"test": 1})
    cfg = pinn_config.get_config()
    cfg.data.path = str(path)
    cfg.data.test_fraction = 0.2
    cfg.data.val_fraction = 0.2
    cfg.xsec.hidden = (16, 16)
    cfg.xsec.n_fourier = 4
    cfg.xsec.ensemble = ensemble
    cfg.train.epochs = 3
    cfg.train.batch_size = 32
    cfg.train.max_seconds = 0.0
    cfg.eval.temperatures_k = (3000.0,)
    return cfg


def test_end_to_end_tiny_run_surrogate_and_evaluation(tmp_path):
    cfg = _tiny_pinn_config(tmp_path)
    wd = tmp_path / "run"
    summary = experiment.run(cfg, wd, progress=False)
    assert summary["epochs_run"] == 3 and set(summary["best_val"]) == {"H2+", "HeH+"}
    sur = xe.XsecSurrogate.load(wd)
    sig = sur.cross_sections("H2+", [0, 1], [0, 2], [60.0, 70.0, 80.0])
    assert sig.shape == (2, 3) and np.all(np.isfinite(sig)) and np.all(sig > 0)
    # Chunked evaluation (7 x 6 = 42 points in chunks of 8): one batch to float32 tolerance.
    small = xe.XsecSurrogate.load(wd, chunk=8)
    lv = sur.meta["per_molecule"]["H2+"]["levels"]
    levels = (lv["v"][:7], lv["J"][:7], np.linspace(60.0, 80.0, 6))
    np.testing.assert_allclose(small.cross_sections("H2+", *levels),
                               sur.cross_sections("H2+", *levels), rtol=1e-5)
    with pytest.raises(DomainError, match="trained range"):
        sur.cross_sections("H2+", [0], [0], [10.0])
    with pytest.raises(DomainError, match="not a bound level"):
        sur.cross_sections("H2+", [9], [0], [60.0])
    with pytest.raises(DomainError, match="not served"):
        sur.cross_sections("Na2+", [0], [0], [60.0])
    m = xe.evaluate_xsec(wd, make_figures=False)
    assert m["split"] == "levels" and m["pooled"]["net"]["n"] > 0
    assert np.isfinite(m["pooled"]["net"]["median_rel"])
    assert set(m["lte"]) == {"H2+", "HeH+"}


def test_ensemble_members_mean_std_and_calibration(tmp_path):
    cfg = _tiny_pinn_config(tmp_path, ensemble=3)
    wd = tmp_path / "run"
    experiment.run(cfg, wd, progress=False)
    sur = xe.XsecSurrogate.load(wd)
    assert sur.members == 3
    args = ("HeH+", [0, 1, 2], [0, 1, 2], [55.0, 75.0])
    ym = sur.log_sigma_rel_members(*args)
    assert ym.shape == (3, 3, 2)
    assert np.max(np.abs(ym[0] - ym[1])) > 0 and np.max(np.abs(ym[1] - ym[2])) > 0
    mean, sd = sur.log_sigma_rel(*args, return_std=True)
    np.testing.assert_allclose(mean, ym.mean(0), rtol=1e-12)
    np.testing.assert_allclose(sd, ym.std(0), rtol=1e-12)
    sig, sd_dex = sur.cross_sections(*args, return_std=True)
    ref = xe.XsecSurrogate.load(wd).meta["per_molecule"]["HeH+"]["sigma_ref_cm2"]
    np.testing.assert_allclose(sig, 10.0 ** ym.mean(0) * ref, rtol=1e-10)
    m = xe.evaluate_xsec(wd, make_figures=True)
    cal = m["ensemble_calibration"]
    # Recount by hand on the held-out points above the threshold: N and the raw coverage.
    df, _ = xe.load_table(cfg.data, False)
    mols, _, _ = xe.prepare_data(df, cfg.data, int(cfg.seed))
    thr = float(cfg.eval.threshold)
    r_all, s_all = [], []
    for mol in mols:
        y, sd = sur.log_sigma_rel(mol.name, mol.v, mol.J, mol.lam, return_std=True)
        keep = mol.test & (mol.sigma > thr * mol.sigma.max(axis=1, keepdims=True))
        r_all.append((y - np.log10(mol.sigma / mol.sigma_ref))[keep])
        s_all.append(sd[keep])
    r_all, s_all = np.concatenate(r_all), np.concatenate(s_all)
    assert cal["members"] == 3 and cal["n"] == r_all.size > 0 and cal["n_val"] > 0
    for lvl, z in (("0.68", 0.994457883), ("0.95", 1.959963985)):
        assert cal["coverage_raw"][lvl] == pytest.approx(np.mean(np.abs(r_all) <= z * s_all),
                                                         abs=1e-9)
    assert (wd / "eval" / "ensemble_reliability.png").exists()
    cfg.xsec.ensemble = 0
    with pytest.raises(ValueError, match="ensemble"):
        xe.validate(cfg)


class _KnownErrorEnsemble:
    """Stands in for an XsecSurrogate whose errors have a known distribution: on training points
    it is exact, elsewhere mean - truth ~ N(0, tau^2) while the member spread is tau / 2 (too
    small by 2, as for members that share their errors); below the threshold it is wildly off."""

    members, meta = 3, {"model": "known"}

    def __init__(self, mols, tau, seed):
        rng = np.random.default_rng(seed)
        self.out = {}
        for m in mols:
            truth = np.log10(m.sigma / m.sigma_ref)
            err = np.where(m.train, 0.0, tau * rng.normal(size=truth.shape))
            err = np.where(m.sigma > 0.01 * m.sigma.max(axis=1, keepdims=True), err, 50.0)
            self.out[m.name] = (truth + err, np.full(truth.shape, tau / 2))

    def log_sigma_rel(self, name, v, J, lam, return_std=False):
        return self.out[name]


def test_ensemble_calibration_on_known_error_distributions(tmp_path):
    # 2 molecules x 100 levels x 60 wavelengths, points split 60/20/20 at random.
    from scipy import stats
    rng = np.random.default_rng(5)
    mols = []
    for name in ("A", "B"):
        lam = np.linspace(50.0, 100.0, 60)
        sigma = 1e-18 * 10.0 ** rng.uniform(-3, 0, (100, 60))
        part = rng.choice(3, size=sigma.shape, p=(0.6, 0.2, 0.2))
        v = np.arange(100) % 10
        mols.append(xe.MoleculeData(name, v, np.arange(100) // 10, -1.0 + 0.01 * v, lam, sigma,
                                    part == 0, part == 1, part == 2, 100.0, 9, -1.0,
                                    float(sigma.max()), sigma.max(axis=1)))
    sur = _KnownErrorEnsemble(mols, tau=0.3, seed=6)
    cal = xe.ensemble_calibration(sur, mols, 0.01, tmp_path, make_figure=False)
    above = [m.sigma > 0.01 * m.sigma.max(axis=1, keepdims=True) for m in mols]
    n_test = sum(int((m.test & a).sum()) for m, a in zip(mols, above))
    assert cal["n"] == n_test and cal["n_val"] == sum(int((m.val & a).sum())
                                                      for m, a in zip(mols, above))
    # With sigma too small by 2, the raw level-L interval covers P(|N(0,1)| <= z_L / 2) and the
    # fitted scale is 2; binomial sd on n_test points (x 2 for the scale fitted on as many).
    for lvl in (0.68, 0.95):
        z = stats.norm.ppf(0.5 + lvl / 2)
        raw = 2 * stats.norm.cdf(z / 2) - 1
        tol = 4 * np.sqrt(2 * lvl * (1 - lvl) / n_test)
        assert abs(cal["coverage_raw"][f"{lvl:g}"] - raw) < 4 * np.sqrt(raw * (1 - raw) / n_test)
        assert abs(cal["coverage_calibrated"][f"{lvl:g}"] - lvl) < tol, lvl
        assert abs(cal["coverage_conformal"][f"{lvl:g}"] - lvl) < tol, lvl
    assert cal["sigma_scale"] == pytest.approx(2.0, rel=0.05)
    # A calibration that leaked the (exact) training points, or the wild points below the
    # threshold, would miss these by far more than the tolerances.


def test_interpolation_baseline_is_exact_for_linear_log_sigma():
    lam = np.linspace(1.0, 2.0, 7)
    v = np.repeat(np.arange(3), 3)
    J = np.tile(np.arange(3), 3)
    logs = -40 + 0.3 * J[:, None] + 0.1 * v[:, None] + 2 * np.log(lam)[None]
    test = np.zeros((9, 7), bool)
    test[4] = True                          # (v, J) = (1, 1): between J = 0 and 2
    m = xe.MoleculeData("X", v, J, -1.0 + 0.1 * v, lam, np.exp(logs), ~test, test * False,
                        test, 2.0, 2, -1.0, 1.0, np.ones(9))
    np.testing.assert_allclose(xe.interpolation_baseline(m, "levels")[4], np.exp(logs[4]),
                               rtol=1e-10)
    tw = np.zeros((9, 7), bool)
    tw[:, 2:4] = True
    m.test, m.train = tw, ~tw
    np.testing.assert_allclose(xe.interpolation_baseline(m, "wavelength_windows"),
                               np.exp(logs), rtol=1e-10)


def test_config_validation():
    cfg = xsec_config.get_config()
    cfg.loss.name = "mse"
    with pytest.raises(ValueError, match="msle"):
        xe.validate(cfg)
    cfg = xsec_config.get_config()
    cfg.data.floor = 0.0
    with pytest.raises(ValueError, match="floor"):
        xe.validate(cfg)
    with pytest.raises(ValueError, match="preset"):
        xsec_config.get_config("gpu")
