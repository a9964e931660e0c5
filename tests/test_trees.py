"""XGBoost ensembles as exact JAX lookup tables (opacity_jax.trees)."""

import jax
import numpy as np
import pytest

from opacity_jax import trees
from opacity_jax.models import latent


def _grid_data(seed=0, n_out=3):
    # Features on a grid, as the (log T, log rho) training nodes are: the hist cuts then sit
    # exactly on data values, the case where `x < threshold` must be honoured bit for bit.
    rng = np.random.default_rng(seed)
    a, b = np.meshgrid(np.linspace(-1.7, 1.6, 14), np.linspace(-1.5, 1.8, 9), indexing="ij")
    x = np.stack([a.ravel(), b.ravel()], -1).astype(np.float32)
    y = np.stack([np.sin(2 * x[:, 0]) * x[:, 1] + 0.1 * k for k in range(n_out)], -1)
    y = (y + 0.01 * rng.standard_normal(y.shape)).astype(np.float32)
    val = rng.permutation(len(x))[:20]
    return x, y, x[val], y[val]


def _probe_points(table, seed=0):
    rng = np.random.default_rng(seed)
    on = np.stack(np.meshgrid(table.t0, table.t1, indexing="ij"), -1).reshape(-1, 2)
    below = np.nextafter(on, np.float32(-np.inf)).astype(np.float32)
    above = np.nextafter(on, np.float32(np.inf)).astype(np.float32)
    rand = rng.uniform(-2.5, 2.5, (500, 2)).astype(np.float32)
    return np.concatenate([rand, on, below, above]).astype(np.float32)


@pytest.mark.parametrize("strategy", ["one_output_per_tree", "multi_output_tree"])
def test_table_equals_booster_predict_including_threshold_points(strategy):
    x, y, xv, yv = _grid_data()
    booster, best = latent.fit_xgb(x, y, xv, yv, {"n_estimators": 60, "early_stopping_rounds": 5,
                                                  "multi_strategy": strategy})
    table = trees.TreeTable.from_booster(booster, best)
    assert table.values.shape == (table.t0.size + 1, table.t1.size + 1, 3)
    pts = _probe_points(table)
    ref = latent.predict_xgb(booster, pts, best)
    np.testing.assert_allclose(np.asarray(table(pts)), ref, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.asarray(jax.jit(table.__call__)(pts)), ref, rtol=1e-6,
                               atol=1e-7)


def test_stacked_lookup_per_entity_and_tolerance():
    tabs, refs, boosters = [], [], []
    for seed in (0, 1):
        x, y, xv, yv = _grid_data(seed, n_out=2)
        b, best = latent.fit_xgb(x, y, xv, yv, {"n_estimators": 40, "early_stopping_rounds": 5},
                                 seed=seed)
        tabs.append(trees.TreeTable.from_booster(b, best))
        boosters.append((b, best))
    stacked = trees.stack_tables(tabs)
    look = jax.jit(trees.lookup, static_argnums=3)
    for e, (b, best) in enumerate(boosters):
        pts = _probe_points(tabs[e], seed=e)
        np.testing.assert_allclose(np.asarray(look(stacked, e, pts, 0.0)),
                                   latent.predict_xgb(b, pts, best), rtol=1e-6, atol=1e-7)
    # A tolerance sends a point just below a threshold into the right-hand cell, as the exact
    # threshold value itself goes.
    t = tabs[0]
    on = np.array([[t.t0[3], t.t1[2]]], np.float32)
    below = np.nextafter(on, np.float32(-np.inf)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(look(stacked, 0, below, 1e-5)),
                                  np.asarray(look(stacked, 0, on, 0.0)))


def test_thresholds_respect_best_iteration_and_reject_other_inputs():
    x, y, xv, yv = _grid_data(n_out=1)
    b, _ = latent.fit_xgb(x, y, xv, yv, {"n_estimators": 30, "early_stopping_rounds": 30})
    few = trees.split_thresholds(b, 0)
    all_ = trees.split_thresholds(b, None)
    assert few[0].size <= all_[0].size and few[1].size <= all_[1].size
    assert set(few[0]) <= set(all_[0])
    np.testing.assert_array_equal(trees.representative_points(np.zeros(0, np.float32)), [0.0])
    import xgboost as xgb
    b3 = xgb.train({"max_depth": 2}, xgb.DMatrix(np.random.rand(30, 3), label=np.random.rand(30)),
                   3)
    with pytest.raises(ValueError, match="2 input features"):
        trees.TreeTable.from_booster(b3)
    with pytest.raises(ValueError, match="different output sizes"):
        trees.stack_tables([trees.TreeTable(np.zeros(0, np.float32), np.zeros(0, np.float32),
                                            np.zeros((1, 1, k), np.float32)) for k in (1, 2)])
