"""The honest metrics of opacity_jax.evaluate against hand values."""

import numpy as np

from opacity_jax import evaluate
from opacity_jax.data import grid


def test_honest_metrics_hand_values_and_unresolved_means():
    # Flat spectra: every band-limited mean of a constant is that constant, so the errors are
    # known by hand: pred 1 vs truth 2 -> |1/2 - 1| = 0.5 and log10(2) dex; RMSE 1 cm^2/g. A
    # truth of 1e-60 cm^2/g (a float64 off-grid value no float32 table holds) is left out of
    # the mean metrics and counted, whatever the prediction.
    edges = grid.energy_edges_ev(20)
    t = np.array([1.0, 1.0, 0.5])
    true = np.stack([np.full(20, 2.0), np.full(20, 2.0), np.full(20, 1e-60)])
    pred = np.stack([np.full(20, 1.0), np.full(20, 1.0), np.full(20, 1e-40)])
    m = evaluate.honest_metrics(pred, true, edges, t)
    assert m["n"] == 3 and m["n_planck_unresolved"] == 1 and m["n_rosseland_unresolved"] == 1
    assert m["planck_dex"]["n"] == 2 and m["rosseland_dex"]["n"] == 2
    np.testing.assert_allclose(m["planck_dex"]["median"], np.log10(2.0), rtol=1e-6)
    np.testing.assert_allclose(m["rosseland_dex"]["p95"], np.log10(2.0), rtol=1e-6)
    np.testing.assert_allclose(m["planck_rel_covered"]["median"], 0.5, rtol=1e-6)
    np.testing.assert_allclose(m["rmse_mean"], 2.0 / 3.0, rtol=1e-6)
