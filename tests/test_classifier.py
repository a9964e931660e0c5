"""Multitask classifier (thesis Table 3), its task, degradation, kNN baseline, tiny training."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import classifier as classifier_config
from opacity_jax import inverse
from opacity_jax.data import generator, grid, io
from opacity_jax.models.classifier import MultitaskClassifier

SMALL = generator.GeneratorConfig(seed=2, line_cap=1500, level_cap=200)


@pytest.mark.parametrize("encoder", ["conv", "attention"])
def test_shapes(encoder):
    m = MultitaskClassifier(n_classes=28, encoder=encoder, target_mean=(0.0, -12.0, 2.0),
                            target_std=(1.0, 5.0, 3.0))
    x = jnp.ones((3, 200))
    p = m.init(jax.random.key(0), x)
    out = m.apply(p, x)
    chex.assert_shape(out["logits"], (3, 28))
    chex.assert_shape(out["latent"], (3, 128))
    for k in ("log10_t", "t_ev", "log10_rho", "zbar", "std_log10_t"):
        chex.assert_shape(out[k], (3,))
    np.testing.assert_allclose(out["log10_rho"], -12.0 + 5.0 * out["std_log10_rho"], rtol=1e-5)
    np.testing.assert_allclose(out["t_ev"], 10.0 ** out["log10_t"], rtol=1e-5)
    # Table 3: the conv path flattens 128 x 5 = 640 into the 128-d latent.
    assert p["params"]["Dense_0"]["kernel"].shape == (640, 128)


def test_bad_configurations_raise():
    with pytest.raises(ValueError, match="divisible by prod"):
        MultitaskClassifier().init(jax.random.key(0), jnp.ones((1, 100)))
    with pytest.raises(ValueError, match="encoder"):
        MultitaskClassifier(encoder="rnn").init(jax.random.key(0), jnp.ones((1, 200)))
    with pytest.raises(ValueError, match="preset"):
        classifier_config.get_config("huge")


def test_degrade_conserves_and_is_seeded():
    edges = grid.energy_edges_ev(40)
    rng = np.random.default_rng(0)
    k = 10.0 ** rng.normal(2, 1, (4, 40))
    c = inverse.degrade(k, edges, coarsen=4)
    w = np.diff(edges)
    np.testing.assert_allclose((c * w).sum(-1), (k * w).sum(-1), rtol=1e-10)  # conservative
    assert np.all(c[:, :4] == c[:, :1])                                       # piecewise const.
    a = inverse.degrade(k, edges, noise=0.03, seed=5)
    np.testing.assert_array_equal(a, inverse.degrade(k, edges, noise=0.03, seed=5))
    assert 0.01 < np.std(a / k - 1) < 0.05
    with pytest.raises(ValueError, match="divide"):
        inverse.degrade(k, edges, coarsen=3)


def test_knn_recovers_training_labels():
    rng = np.random.default_rng(1)
    x = rng.random((30, 40)).astype(np.float32)
    lab = {"element": rng.integers(0, 3, 30), "t_ev": rng.random(30),
           "log10_rho": rng.random(30), "zbar": rng.random(30)}
    p = inverse.knn_predict(x, lab, x, k=1, chunk=7)
    np.testing.assert_array_equal(p["element_pos"], lab["element"])
    np.testing.assert_allclose(p["t_ev"], lab["t_ev"])
    p3 = inverse.knn_predict(x, lab, x[:5], k=3)
    assert p3["t_ev"].shape == (5,)


def test_metrics_split_by_zbar_and_band():
    true = {"element": np.array([0, 1, 1, 0]), "t_ev": np.array([0.05, 0.5, 2.0, 4.0]),
            "log10_rho": np.array([-10.0, -10.0, -8.0, -6.0]),
            "zbar": np.array([0.0, 0.01, 1.0, 3.0])}
    pred = {"element_pos": np.array([0, 1, 0, 0]), "t_ev": true["t_ev"] + 0.1,
            "log10_rho": true["log10_rho"] + np.array([3.0, 3.0, 1.0, 1.0]),
            "zbar": true["zbar"]}
    m = inverse.inverse_metrics(pred, true)
    assert m["accuracy"] == 0.75 and m["t_rmse_ev"] == pytest.approx(0.1)
    by = m["log_rho_rmse_dex_by_zbar"]
    assert by["zbar>=0.05"]["rmse_dex"] == pytest.approx(1.0)
    assert by["zbar<0.05"]["rmse_dex"] == pytest.approx(3.0)
    assert m["per_temperature_band"]["T>=3eV"]["n"] == 1


def test_input_transform_and_augmented_task():
    rng = np.random.default_rng(2)
    kappa = 10.0 ** rng.normal(2, 2, (6, 40))
    t1 = inverse.InputTransform.fit("cbrt", kappa)
    t2 = inverse.InputTransform.fit("cbrt+log", kappa)
    assert t1(kappa).shape == (6, 40) and t2(kappa).shape == (6, 40, 2)
    np.testing.assert_allclose(t2.kappa_from_input(t2(kappa)), kappa, rtol=1e-4)
    with pytest.raises(ValueError, match="classifier.input"):
        inverse.InputTransform.fit("sqrt", kappa)
    model = MultitaskClassifier(n_classes=3, latent_dim=8, channels=(4, 4, 4, 4))
    task = inverse.classifier_task(
        model, class_weight=np.ones(3), loss_weights={}, temperature_space="both",
        augment_noise=0.03, augment_coarsen=(4, 10), bin_widths=np.diff(grid.energy_edges_ev(40)),
        transform=t2)
    batch = {"x": jnp.asarray(t2(kappa)), "element": jnp.asarray([0, 1, 2, 0, 1, 2]),
             "log10_t": jnp.zeros(6), "t_ev": jnp.ones(6), "log10_rho": jnp.zeros(6),
             "zbar": jnp.zeros(6), "weight": jnp.ones(6)}
    params = task.init(jax.random.key(0), batch)
    loss, metrics = task.loss(params, batch, jax.random.key(1))
    assert np.isfinite(float(loss))
    # The accuracy of 6 equally weighted spectra is a count of 6.
    assert float(metrics["accuracy"]) * 6 == pytest.approx(round(float(metrics["accuracy"]) * 6),
                                                           abs=1e-5)
    with pytest.raises(ValueError, match="must divide"):
        inverse.classifier_task(model, class_weight=np.ones(3), loss_weights={},
                                augment_coarsen=(3,), bin_widths=np.ones(40), transform=t1)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("clf")
    ds = generator.generate_dataset(elements=[58, 60, 92], n_energy=40,
                                    temperatures_ev=grid.temperatures_ev()[::3],
                                    densities_gcc=grid.densities_gcc()[::4], config=SMALL)
    path = io.save_dataset(ds, root / "tiny.h5")
    cfg = classifier_config.get_config()
    cfg.data.path = str(path)
    cfg.data.n_energy = 40
    cfg.data.test_fraction = 0.2
    cfg.train.batch_size = 32
    cfg.train.epochs = 40
    cfg.train.max_seconds = 0.0
    cfg.train.learning_rate = 3e-3
    cfg.loss.physics.saha_zbar = 0.1
    cfg.loss.physics.monotonic_bb_soft = 0.1
    cfg.loss.saha_samples = 8
    cfg.classifier.ensemble = 2
    wd = root / "run"
    summary = inverse.run_classifier(cfg, wd, progress=False)
    return wd, summary


def test_tiny_training_beats_chance(tiny_run):
    wd, summary = tiny_run
    assert summary["classifier"]["physics"] == {"monotonic_bb_soft": 0.1, "saha_zbar": 0.1}
    m = inverse.evaluate_classifier(wd, make_figures=True,
                                    conditions=[("clean", 0.0, 1), ("noise3%", 0.03, 1)],
                                    knn_k=(1,), per_member=True)
    assert len(m["conditions"]["clean"]["members"]["t_rmse_ev"]["values"]) == 2
    clean = m["conditions"]["clean"]["classifier"]
    assert clean["accuracy"] > 0.6                      # chance: 1/3
    assert clean["t_rmse_dex"] < 0.5                    # predicting the mean: ~0.8 dex
    assert (wd / "eval" / "report.md").exists() and (wd / "eval" / "pred_vs_true.png").exists()
    assert json.loads((wd / "eval" / "metrics.json").read_text())["n_test"] == m["n_test"]
    clf = inverse.InverseModel.load(wd)
    data_pred = clf.predict(np.full((2, 40), 1e3))
    assert data_pred["prob"].shape == (2, 3)
    assert set(data_pred["element_z"]) <= {58, 60, 92}
    with pytest.raises(ValueError, match="shape"):
        clf.predict(np.ones((2, 41)))


def test_unknown_physics_loss_in_config_is_rejected(tiny_run, tmp_path):
    wd, _ = tiny_run
    cfg = classifier_config.get_config()
    cfg.data.path = json.loads((wd / "config.json").read_text())["data"]["path"]
    cfg.data.n_energy = 40
    cfg.loss.physics = {"monotonic_bb": 1.0}          # forward-surrogate loss: not served here
    with pytest.raises(ValueError, match="not available for this model"):
        inverse.run_classifier(cfg, tmp_path / "bad", progress=False)


def test_density_identifiability_floor_is_the_mean_over_indistinguishable_densities():
    # One element, one T, three densities: the first two spectra are identical, the third
    # differs by 10 %. Perfect knowledge of the spectrum pins r=2 exactly and leaves r=0, 1
    # at the mean of their log rho: errors +-0.5 dex, 0.
    base = np.linspace(1.0, 2.0, 8)
    kappa = np.stack([base, base, 1.1 * base])[None, None]          # (1, 1, 3, 8)
    lr = np.array([-10.0, -9.0, -8.0])
    valid = np.ones((1, 1, 3), bool)
    q = (np.zeros(3, int), np.zeros(3, int), np.arange(3))
    zbar = np.array([0.0, 0.0, 1.0]).reshape(1, 1, 3)
    f = inverse.density_identifiability(kappa, lr, valid, q, zbar, tol=1e-3)
    np.testing.assert_allclose(f["rmse_dex"], np.sqrt((0.25 + 0.25 + 0.0) / 3), rtol=1e-12)
    np.testing.assert_allclose(f["rmse_dex_zbar_lo"], 0.5, rtol=1e-12)
    assert f["rmse_dex_zbar_hi"] == 0.0 and f["mean_set_size"] == (2 + 2 + 1) / 3
    # A looser tolerance merges the third: all three share the mean -9.
    g = inverse.density_identifiability(kappa, lr, valid, q, tol=0.2)
    np.testing.assert_allclose(g["rmse_dex"], np.sqrt(2.0 / 3.0), rtol=1e-12)
    # An invalid node is not a candidate.
    valid[0, 0, 1] = False
    h = inverse.density_identifiability(kappa, lr, valid, (q[0][:1], q[1][:1], q[2][:1]))
    assert h["rmse_dex"] == 0.0
