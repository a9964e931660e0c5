"""Tests for the generator's sanity report (opacity_jax.data.report)."""

import json

import numpy as np
import pytest

from opacity_jax.data import generator, grid, report

SMALL = generator.GeneratorConfig(seed=4, line_cap=2000, level_cap=300)


def _bin_integrals(edges_ev, t_ev, log_kernel, nodes=16):
    """(nE,) int_bin kernel(E / kT) dE by 16-node Gauss-Legendre per bin, scaled by e^{-x_0}
    (x_0 = E_min / kT) so cold temperatures do not underflow; only ratios are used."""
    u, w = np.polynomial.legendre.leggauss(nodes)
    lo, hi = edges_ev[:-1, None], edges_ev[1:, None]
    e = 0.5 * (hi - lo) * u[None] + 0.5 * (hi + lo)
    x = e / t_ev
    return np.sum(0.5 * (hi - lo) * w[None] * np.exp(log_kernel(x) + edges_ev[0] / t_ev), -1)


def _check_against_quadrature(gen, z, t, rho, n_coarse, n_fine):
    """report.binning_bias(gen, z, t, rho) against the means recomputed here from the native
    spectrum with their definitions: kappa_P = sum kappa W / sum W with W the bin integral of
    x^3/(e^x - 1), kappa_R = [sum W' / kappa / sum W']^-1 with x^4 e^x/(e^x-1)^2, the coarse
    spectrum the width-weighted average of the native bins it holds (rtol 1e-6). Returns the
    report."""
    out = report.binning_bias(gen, z, t, rho, n_coarse=n_coarse, n_fine=n_fine)
    fine, coarse = grid.energy_edges_ev(n_fine), grid.energy_edges_ev(n_coarse)
    spec = gen.spectra(z, t, np.full_like(t, rho), fine)
    absorption = spec["bb"] + spec["bf"] + spec["ff"]
    total = absorption + spec["es"]
    k, width = n_fine // n_coarse, np.diff(fine)

    def rebin(kappa):
        return (kappa * width).reshape(kappa.shape[0], n_coarse, k).sum(-1) / np.diff(coarse)

    planck_k = lambda x: 3 * np.log(x) - x - np.log(-np.expm1(-x))          # noqa: E731
    ross_k = lambda x: 4 * np.log(x) - x - 2 * np.log(-np.expm1(-x))        # noqa: E731
    for i, ti in enumerate(t):
        for edges, a, tot, tag in ((fine, absorption[i], total[i], "native"),
                                   (coarse, rebin(absorption)[i], rebin(total)[i], "binned")):
            wp, wr = _bin_integrals(edges, ti, planck_k), _bin_integrals(edges, ti, ross_k)
            np.testing.assert_allclose(out[f"planck_{tag}"][i], np.sum(a * wp) / np.sum(wp),
                                       rtol=1e-6, err_msg=f"Planck {tag} at {ti} eV")
            np.testing.assert_allclose(out[f"rosseland_{tag}"][i],
                                       np.sum(wr) / np.sum(wr / tot), rtol=1e-6,
                                       err_msg=f"Rosseland {tag} at {ti} eV")
    return out


def test_binning_bias_matches_an_independent_quadrature():
    # The within-bin bound [1/r, r] (r = max/min of B_nu inside any coarse bin) is ~3e7 at
    # 0.05 eV, so it cannot fail. Instead the binned and native means are recomputed here from
    # the native spectrum with their definitions: kappa_P = sum kappa W / sum W with W the bin
    # integral of x^3/(e^x - 1), kappa_R = [sum W' / kappa / sum W']^-1 with x^4 e^x/(e^x-1)^2,
    # the coarse spectrum the width-weighted average of the 30 native bins it holds; the bin
    # integrals use 16 Gauss nodes (the code uses 4 on log-spaced nodes), so the two agree to
    # quadrature accuracy only if rebinning, weights and means are all right.
    gen = generator.OpacityGenerator(SMALL)
    t = np.array([0.05, 0.5, 3.0])
    n_coarse, n_fine = 50, 1500
    out = _check_against_quadrature(gen, 60, t, 1e-12, n_coarse, n_fine)
    for i in range(t.size):
        np.testing.assert_allclose(out["planck_rel_bias"][i],
                                   out["planck_binned"][i] / out["planck_native"][i] - 1,
                                   rtol=1e-12)
    # Rosseland: 1/x is convex, so inside a coarse bin (weights ~ constant at fine scale) the
    # harmonic mean of the native kappa is below its average (Jensen): binning can only close
    # the windows that carry the diffusive flux, so kappa_R(binned) > kappa_R(native).
    assert np.all(out["rosseland_rel_bias"] > 0)
    # Planck: with the weight resolved (3 eV: B_nu changes by < 40 % across any coarse bin) the
    # bias is the within-bin covariance of kappa and B_nu over kappa_P, a few tenths of a per
    # cent for a line forest; 1 % is the stated tolerance. (At 0.05 eV the weight sits in the
    # first coarse bins, where B_nu falls by ~e^-2 per bin, so no small bound holds there.)
    assert abs(out["planck_rel_bias"][2]) < 0.01


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



@pytest.mark.slow
def test_binning_bias_at_native_resolution_matches_an_independent_quadrature():
    # The heavier version of the check above: the NIST-LANL sizes, 15000 native bins rebinned
    # onto the 200-bin grid, at five temperatures across the grid.
    gen = generator.OpacityGenerator(generator.GeneratorConfig(seed=0))
    t = np.array([0.02, 0.1, 0.5, 2.0, 5.0])
    n_coarse, n_fine = 200, grid.NATIVE_POINTS
    out = _check_against_quadrature(gen, 60, t, 1e-13, n_coarse, n_fine)
    assert np.all(out["rosseland_rel_bias"] > 0)                         # Jensen, as above
