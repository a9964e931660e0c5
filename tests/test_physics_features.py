"""Physics input features of the spectrum regressors and floored log-space targets.

The features are checked against an independent LTE solve (numpy + brentq, with the Saha
constant rebuilt from CODATA values here), the config switches against the inputs the trained
networks and boosters actually take, and 'log' targets against strictly positive predictions.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.special import logsumexp

from configs import cae as cae_config
from configs import fcnn as fcnn_config
from opacity_jax import _compat
from opacity_jax.models import physics_features as pf
from opacity_jax.physics import elements as el
from opacity_jax.serve.surrogate import Surrogate
from opacity_jax.train import experiment
from opacity_jax.train import workdir as workdir_lib

# (2 pi m_e k T / h^2)^{3/2} per eV^{3/2} [cm^-3] from m_e c^2 = 510998.95 eV and
# h c = 1.23984198e-4 eV cm (CODATA 2018), independent of the package's constants.
SAHA_CM3_EV32 = (2.0 * np.pi * 510998.95 / 1.23984198e-4 ** 2) ** 1.5
AMU_G = 1.66053906660e-24


def independent_saha(z, t_ev, rho_gcc):
    """Unit-partition-function LTE balance of element z: (log10 x (21,), Zbar, log10 n_e)."""
    i = el.element_index(z)
    ion = el.IONIZATION_ENERGIES_EV[i]
    n_nuc = rho_gcc / (el.ATOMIC_WEIGHTS[i] * AMU_G)
    ln_s = np.log(2.0 * SAHA_CM3_EV32 * t_ev ** 1.5) - ion / t_ev    # ln(n_{k+1} n_e / n_k)

    def log_f(ln_ne):
        a = np.concatenate([[0.0], np.cumsum(ln_s - ln_ne)])
        return a - logsumexp(a)

    def resid(ln_ne):       # ln(n_e from neutrality) - ln n_e, increasing in ln n_e
        lf = log_f(ln_ne)
        return ln_ne - np.log(n_nuc) - logsumexp(lf[1:] + np.log(np.arange(1, 21)))

    ln_ne = brentq(resid, -700.0, np.log(20 * n_nuc) + 1.0, xtol=1e-13, rtol=1e-15)
    lf = log_f(ln_ne)
    return lf / np.log(10.0), float(np.sum(np.arange(21) * np.exp(lf))), ln_ne / np.log(10.0)


def _identity(elements, n_stages, q_lo):
    f = n_stages + 2
    return pf.PhysicsFeatures(tuple(elements), n_stages, tuple(q_lo), np.zeros((len(elements), f)),
                              np.ones((len(elements), f)))


@pytest.mark.parametrize("z,t,rho", [(60, 0.5, 1e-8), (92, 1.5, 1e-12), (68, 0.05, 1e-15)])
def test_features_equal_an_independent_saha_solve(z, t, rho):
    log10_x, zbar, log10_ne = independent_saha(z, t, rho)
    q_lo = max(int(np.argmax(log10_x)) - 1, 0)
    feats = _identity([z], 4, [q_lo])
    with _compat.enable_x64():
        got = np.asarray(feats.raw(0, jnp.asarray([t]), jnp.asarray([rho])))[0]
    # Documented smooth floor at -30 decades (the cold Er point has stages far below it).
    want_x = -30.0 + np.logaddexp(0.0, log10_x[q_lo:q_lo + 4] + 30.0)
    np.testing.assert_allclose(got[:4], want_x, atol=1e-6)
    np.testing.assert_allclose(got[4], zbar, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got[5], log10_ne, atol=1e-9)
    # float32 at query time (the serving path) agrees to float32 accuracy.
    got32 = np.asarray(jax.jit(lambda a, b: feats.raw(0, a, b))(
        jnp.asarray([t], jnp.float32), jnp.asarray([rho], jnp.float32)))[0]
    np.testing.assert_allclose(got32, got, atol=2e-4 * max(1.0, np.abs(got).max()))


def test_feature_derivatives_match_finite_differences_of_the_independent_solve():
    z, t, rho = 60, 0.6, 1e-9
    feats = _identity([z], 4, [0])
    with _compat.enable_x64():
        jac = jax.jacfwd(lambda tt, rr: feats.raw(0, tt[None], rr[None])[0], argnums=(0, 1))(
            jnp.float64(t), jnp.float64(rho))
    ind = lambda tt, rr: np.concatenate([independent_saha(z, tt, rr)[0][:4],
                                         independent_saha(z, tt, rr)[1:]])
    h_t, h_r = 1e-5 * t, 1e-5 * rho
    fd_t = (ind(t + h_t, rho) - ind(t - h_t, rho)) / (2 * h_t)
    fd_r = (ind(t, rho + h_r) - ind(t, rho - h_r)) / (2 * h_r)
    np.testing.assert_allclose(np.asarray(jac[0]), fd_t, rtol=1e-5, atol=1e-6 * np.abs(fd_t).max())
    np.testing.assert_allclose(np.asarray(jac[1]), fd_r, rtol=1e-5, atol=1e-6 * np.abs(fd_r).max())


def test_floor_and_dominant_window_hand_values():
    np.testing.assert_allclose(pf.floor_log10(np.array([-5.0, -30.0, -300.0])),
                               [-5.0, -30.0 + np.log(2.0), -30.0], atol=1e-9)
    frac = np.zeros((3, 21))
    frac[0, 2], frac[1, 3], frac[2, 3], frac[2, 7] = 1.0, 0.9, 0.6, 0.4
    assert pf.dominant_window(frac, 2) == 2          # stages 2, 3 hold 2.5 of 2.9
    assert pf.dominant_window(frac, 6) == 2          # 2..7 hold everything
    with pytest.raises(ValueError, match="physics_features_stages"):
        pf.PhysicsFeatures.fit([60], [0.1], [1e-10], np.ones((1, 1, 1), bool), n_stages=0)


def _tiny_config(module, data_path):
    cfg = module.get_config()
    cfg.data.path = str(data_path)
    cfg.data.elements = ""
    cfg.data.n_energy = 48
    cfg.data.scaling = "log"
    cfg.train.max_seconds = 0.0
    return cfg


def _first_kernel_rows(params):
    """Input width of the first Dense layer, Dense_0 (leaves carry the element axis first)."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    (kernel,) = [a for path, a in leaves if "Dense_0" in jax.tree_util.keystr(path)
                 and "kernel" in jax.tree_util.keystr(path)]
    return kernel.shape[1]


def _check_positive_spectra_and_means(s, element):
    t = np.array([0.03, 0.3, 0.6])
    r = np.array([1e-17, 1e-13, 1e-11])
    t_ok = np.clip(t, s.domain["temperature_ev"][0], s.domain["temperature_ev"][1])
    r_ok = np.clip(r, s.domain["density_gcc"][0], s.domain["density_gcc"][1])
    k = s.spectrum(element, t_ok, r_ok)
    assert np.all(k > 0), "log targets must never give exact zeros"
    ross = s.rosseland_mean(element, t_ok, r_ok)
    assert np.all(np.isfinite(ross)) and np.all(ross > 0)


def test_latent_physics_features_switch_log_targets(tiny_workdir, tmp_path):
    cfg = _tiny_config(cae_config,
                       json.loads((tiny_workdir / "config.json").read_text())["data"]["path"])
    cfg.train.epochs = 2
    cfg.train.batch_size = 32
    cfg.latent.mlp_train.epochs = 10
    cfg.latent.finetune_train.epochs = 2
    cfg.latent.xgb.n_estimators = 10
    cfg.latent.xgb.early_stopping_rounds = 5
    cfg.latent.physics_features = True
    cfg.latent.physics_features_stages = 3
    experiment.run(cfg, tmp_path, progress=False)
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["scaling"]["name"] == "log" and meta["scaling"]["floor_decades"] == 40.0
    spec = meta["latent"]["physics_features"]
    assert spec["names"] == ["log10_x_w0", "log10_x_w1", "log10_x_w2", "zbar", "log10_ne"]
    # Inputs: 2 without the switch (the session's tiny run), 2 + 3 + 2 with it, for both
    # regressors.
    base = workdir_lib.restore_params(tiny_workdir, "latent_mlp")
    assert _first_kernel_rows(base) == 2
    assert _first_kernel_rows(workdir_lib.restore_params(tmp_path, "latent_mlp")) == 7
    from opacity_jax.models import latent as latent_lib
    boosters, _ = latent_lib.load_boosters(tmp_path / "xgb")
    assert {b.num_features() for b in boosters.values()} == {7}
    assert set(meta["latent"]["xgb_importance"]["60"]) == {"log_t", "log_rho", *spec["names"]}
    s = Surrogate.load(tmp_path)
    # The served features are the independent Saha solve at the query point.
    pos = s.element_position("Nd")
    want_x, want_zbar, want_ne = independent_saha(60, 0.4, 1e-12)
    q = spec["q_lo"][pos]
    raw = np.asarray(s.physics_features.raw(pos, jnp.asarray([0.4]), jnp.asarray([1e-12])))[0]
    np.testing.assert_allclose(raw[3:], [want_zbar, want_ne], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(raw[:3], -30.0 + np.logaddexp(0.0, want_x[q:q + 3] + 30.0),
                               atol=2e-3)
    _check_positive_spectra_and_means(s, "Nd")
    _check_positive_spectra_and_means(Surrogate.load(tmp_path, regressor="xgboost"), "U")
    dt, dr = s.derivatives("Nd", [0.3], [1e-12])
    h = 1e-3
    fd = (s.spectrum("Nd", 0.3 + h, 1e-12) - s.spectrum("Nd", 0.3 - h, 1e-12)) / (2 * h)
    np.testing.assert_allclose(dt, fd, rtol=5e-2, atol=2e-2 * np.abs(fd).max())
    fd_r = (s.spectrum("Nd", 0.3, 1.01e-12) - s.spectrum("Nd", 0.3, 0.99e-12)) / 2e-14
    np.testing.assert_allclose(dr, fd_r, rtol=5e-2, atol=2e-2 * np.abs(fd_r).max())
    with pytest.raises(ValueError, match="physics_features"):
        s.device_pipeline()


def test_fcnn_physics_features_switch_log_targets(tiny_workdir, tmp_path):
    cfg = _tiny_config(fcnn_config,
                       json.loads((tiny_workdir / "config.json").read_text())["data"]["path"])
    cfg.train.epochs = 1
    cfg.fcnn.hidden = (16, 16)
    cfg.fcnn.physics_features = True
    experiment.run(cfg, tmp_path, progress=False)
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["fcnn"]["physics_features"]["n_stages"] == 4
    assert _first_kernel_rows(workdir_lib.restore_params(tmp_path, "fcnn")) == 3 + 4 + 2
    s = Surrogate.load(tmp_path)
    _check_positive_spectra_and_means(s, "U")
    # Autodiff through the physics features (Saha stage fractions) against central differences;
    # a step of 1e-4 in T because this ReLU net has kinks within +-3e-4 eV of 0.3 eV.
    dt, dr = s.derivatives("U", [0.3], [1e-12])
    fd_t = (s.spectrum("U", 0.30003, 1e-12) - s.spectrum("U", 0.29997, 1e-12)) / 6e-5
    fd_r = (s.spectrum("U", 0.3, 1.01e-12) - s.spectrum("U", 0.3, 0.99e-12)) / 2e-14
    np.testing.assert_allclose(dt, fd_t, rtol=5e-2, atol=2e-2 * np.abs(fd_t).max())
    np.testing.assert_allclose(dr, fd_r, rtol=5e-2, atol=2e-2 * np.abs(fd_r).max())


def test_physics_features_refuse_physics_losses(tmp_path):
    cfg = cae_config.get_config()
    cfg.latent.physics_features = True
    cfg.loss.physics.monotonic_bb = 1.0
    with pytest.raises(ValueError, match="physics_features"):
        experiment.run(cfg, tmp_path)
