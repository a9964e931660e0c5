"""Tests for the generator's sanity report (opacity_jax.data.report)."""

import json

import numpy as np

from opacity_jax.data import generator, grid, report
from opacity_jax.physics import planck

SMALL = generator.GeneratorConfig(seed=4, line_cap=2000, level_cap=300)


def test_planck_binning_bias_obeys_the_within_bin_bound():
    # Averaging kappa over a coarse bin before weighting changes each bin's Planck weight per
    # unit energy by at most the ratio r of the largest to smallest B_nu inside any coarse bin,
    # so kappa_P(coarse) / kappa_P(native) must lie in [1/r, r].
    gen = generator.OpacityGenerator(SMALL)
    t = np.array([0.05, 0.5, 3.0])
    out = report.binning_bias(gen, 60, t, 1e-12, n_coarse=50, n_fine=1500)
    edges = grid.energy_edges_ev(50)
    for i, ti in enumerate(t):
        b_lo = np.asarray(planck.planck_bnu(edges[:-1], ti), np.float64)
        b_hi = np.asarray(planck.planck_bnu(edges[1:], ti), np.float64)
        ok = (b_lo > 0) & (b_hi > 0)
        r = np.max(np.maximum(b_lo[ok] / b_hi[ok], b_hi[ok] / b_lo[ok]))
        ratio = out["planck_binned"][i] / out["planck_native"][i]
        assert 1 / r - 1e-6 <= ratio <= r + 1e-6


def test_dataset_report_writes_json(tmp_path, monkeypatch):
    monkeypatch.setattr(report.generator, "GeneratorConfig",
                        lambda seed=0: SMALL)
    rep = report.dataset_report(tmp_path, element="Nd", elements=[60], n_energy=40,
                                make_figures=False, n_native=400)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["element"] == "Nd" and len(saved["per_temperature"]) == 27
    corners = saved["zbar_corners"]["Nd"]
    assert corners["T5_rho1e-20"] > corners["T5_rho1e-4"] > corners["T0.01_rho1e-20"]
    assert rep["per_temperature"][0]["band_fraction_B"] < 0.05   # x_min = 10 at 0.01 eV

