"""Ablation plumbing (arms, small scale, table) without training."""

import pytest

from configs import cae as cae_config
from configs import classifier as classifier_config
from configs import fcnn as fcnn_config
from opacity_jax import ablation


def test_arms_change_only_the_physics_weights():
    base = classifier_config.get_config()
    both = ablation.classifier_arm(base, "both", "attention", gamma=0.3, delta=0.7)
    assert dict(both.loss.physics) == {"monotonic_bb_soft": 0.3, "saha_zbar": 0.7}
    assert both.classifier.encoder == "attention" and base.classifier.encoder == "conv"
    assert dict(base.loss.physics) == {"monotonic_bb_soft": 0.0, "saha_zbar": 0.0}
    none = ablation.classifier_arm(base, "none", "conv", 1.0, 1.0)
    assert dict(none.loss.physics) == {"monotonic_bb_soft": 0.0, "saha_zbar": 0.0}
    with pytest.raises(ValueError, match="arm"):
        ablation.classifier_arm(base, "half", "conv", 1.0, 1.0)


def test_small_scale_and_table():
    c, a, f = ablation.small_scale(classifier_config.get_config(), cae_config.get_config(),
                                   fcnn_config.get_config())
    assert c.train.epochs == 60 and a.latent.regressor == "mlp" and f.train.epochs == 6
    row = {"accuracy": 1.0, "t_rmse_ev": 0.1, "t_rmse_ev_T>=3eV": 0.3, "log_rho_rmse_dex": 3.0,
           "log_rho_rmse_dex_zbar_hi": 0.8, "log_rho_rmse_dex_zbar_lo": 4.5, "zbar_rmse": 0.1,
           "noise3%_accuracy": None, "epochs": 60, "seconds": 90.0}
    md = ablation.tables_markdown({"gamma": 1.0, "delta": 1.0, "gamma_forward": 1.0,
                                   "classifier": {"conv": {"none": row}}})
    assert "| conv | none | 100.000% | 0.1000 |" in md
