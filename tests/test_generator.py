"""Tests for the model atomic structure and the embedded LTE opacity generator."""

import numpy as np
import pytest

from opacity_jax.data import atomic, generator, grid
from opacity_jax.data.transforms import rebin
from opacity_jax.errors import DomainError
from opacity_jax.physics import constants as C
from opacity_jax.physics import elements as el

# A reduced line list keeps these tests fast; the physics and code paths are the full ones.
SMALL = generator.GeneratorConfig(seed=3, line_cap=3000, level_cap=400)
T_SUB = grid.temperatures_ev()[::6]          # 5 temperatures spanning 0.01-5 eV
R_SUB = grid.densities_gcc()[::8]            # 3 densities


@pytest.fixture(scope="module")
def gen():
    return generator.OpacityGenerator(SMALL)


def test_structure_is_deterministic_and_element_specific():
    a = atomic.ion_structure.__wrapped__(63, 2, 5, 400, 3000)
    b = atomic.ion_structure.__wrapped__(63, 2, 5, 400, 3000)
    for f in ("level_energy_ev", "level_g", "line_lower", "line_upper", "line_gf"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    c = atomic.ion_structure.__wrapped__(63, 2, 6, 400, 3000)
    assert not np.array_equal(a.line_gf, c.line_gf)
    # Lines obey parity and lie inside the band; levels lie below the ionization energy.
    assert np.all(a.level_parity[a.line_lower] != a.level_parity[a.line_upper])
    e = a.line_energy_ev
    assert e.min() >= atomic.BAND_EV[0] and e.max() <= atomic.BAND_EV[1]
    assert a.level_energy_ev.max() < a.ionization_energy_ev


def test_richest_ions_have_over_1e5_lines_in_full_mode():
    n = max(atomic.ion_structure(z, q).n_lines for z in (63, 64, 95) for q in range(4))
    assert n >= 100_000
    # The open f shell drives the level count: mid-shell Eu III >> closed-shell Yb III.
    assert atomic.model_level_count(63, 2) > 20 * atomic.model_level_count(70, 2)


def test_generation_is_bit_reproducible():
    edges = grid.energy_edges_ev(200)
    out1 = generator.OpacityGenerator(SMALL).grid_spectra(60, T_SUB, R_SUB, edges)
    atomic.ion_structure.cache_clear()
    out2 = generator.OpacityGenerator(SMALL).grid_spectra(60, T_SUB, R_SUB, edges)
    for k in ("kappa", "bb", "bf", "ff", "es", "zbar", "fractions"):
        np.testing.assert_array_equal(out1[k], out2[k])


def test_coarse_generation_equals_rebinned_fine(gen):
    coarse = grid.energy_edges_ev(200)
    fine = grid.energy_edges_ev(15000)
    a = gen.grid_spectra(92, T_SUB, R_SUB, coarse)
    b = gen.grid_spectra(92, T_SUB, R_SUB, fine)
    for k in ("kappa", "bb", "bf", "ff", "es"):
        np.testing.assert_allclose(rebin(b[k], fine, coarse), a[k], rtol=1e-9, atol=0)
    # Native resolution resolves peaks that bin averaging smooths away.
    assert b["bb"].max() > 5 * a["bb"].max()


def test_components_sum_and_are_nonnegative(gen):
    out = gen.grid_spectra(66, T_SUB, R_SUB, grid.energy_edges_ev(100))
    for k in ("bb", "bf", "ff", "es"):
        assert np.all(out[k] >= 0) and np.all(np.isfinite(out[k]))
    np.testing.assert_allclose(out["kappa"], out["bb"] + out["bf"] + out["ff"] + out["es"])
    np.testing.assert_allclose(out["fractions"].sum(-1), 1.0, rtol=1e-12)
    np.testing.assert_allclose((out["fractions"] * np.arange(21)).sum(-1), out["zbar"], rtol=1e-10)


def test_thomson_term_from_constants(gen):
    out = gen.spectra(60, [1.0, 3.0], [1e-12, 1e-8], grid.energy_edges_ev(50))
    a = el.ATOMIC_WEIGHTS[el.element_index(60)]
    want = C.THOMSON_CM2 * out["zbar"] / (a * C.ATOMIC_MASS_UNIT_G)
    np.testing.assert_allclose(out["es"], np.broadcast_to(want[:, None], out["es"].shape),
                               rtol=1e-12)


def test_bound_free_starts_at_the_ground_threshold_when_cold(gen):
    # At 0.01 eV only the neutral ground level is populated: no photoionization below I_1.
    edges = grid.energy_edges_ev(200)
    out = gen.spectra(60, [0.01], [1e-10], edges)
    i1 = el.IONIZATION_ENERGIES_EV[el.element_index(60), 0]
    below = edges[1:] < i1 - 0.3
    above = edges[:-1] > i1
    # Levels that open thresholds below I_1 - 0.3 eV lie >= 0.3 eV up: Boltzmann-suppressed by
    # exp(-0.3 / 0.01) (x 100 for statistical weights).
    assert out["bf"][0, below].max() < 100 * np.exp(-0.3 / 0.01) * out["bf"][0, above].min()
    assert out["bf"][0, above].min() > 0


def test_line_binning_conserves_total_line_strength(gen):
    # Independent sum over the line list: at 0.01 eV and 1e-4 g/cm3 the gas is neutral, so the
    # band-integrated bound-bound opacity equals sum of the neutral's LTE line strengths / (A m_u).
    edges = grid.energy_edges_ev(300)
    out = gen.spectra(58, [0.01], [1e-4], edges)
    ion = gen._ion(58, 0)
    t = 0.01
    u = np.sum(ion.level_g * np.exp(-ion.level_energy_ev / t))
    el_lo = ion.level_energy_ev[ion.line_lower]
    el_up = ion.level_energy_ev[ion.line_upper]
    strength = C.LINE_XSEC_CM2_EV * ion.line_gf * (np.exp(-el_lo / t) - np.exp(-el_up / t)) / u
    a = el.ATOMIC_WEIGHTS[el.element_index(58)]
    want = strength.sum() / (a * C.ATOMIC_MASS_UNIT_G) * out["fractions"][0, 0]
    got = np.sum(out["bb"][0] * np.diff(edges))
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_elements_have_distinct_fingerprints(gen):
    edges = grid.energy_edges_ev(200)
    a = gen.spectra(60, [0.5], [1e-13], edges)["kappa"][0]
    b = gen.spectra(61, [0.5], [1e-13], edges)["kappa"][0]
    corr = np.corrcoef(np.log(a), np.log(b))[0, 1]
    assert corr < 0.99


def test_single_element_mixture_equals_element(gen):
    edges = grid.energy_edges_ev(60)
    pure = gen.spectra(60, [0.8, 2.0], [1e-12, 1e-9], edges)
    mix = gen.mixture_spectra([60], [1.0], [0.8, 2.0], [1e-12, 1e-9], edges)
    np.testing.assert_allclose(mix["kappa"], pure["kappa"], rtol=1e-9)
    two = gen.mixture_spectra([60, 92], [0.5, 0.5], [0.8], [1e-12], edges)
    assert np.all(two["kappa"] > 0) and two["zbar"].shape == (1, 2)


def test_out_of_domain_queries_raise(gen):
    edges = grid.energy_edges_ev(10)
    with pytest.raises(DomainError, match="temperature_ev"):
        gen.spectra(60, [6.0], [1e-10], edges)
    with pytest.raises(DomainError, match="density_gcc"):
        gen.spectra(60, [1.0], [1e-2], edges)
    with pytest.raises(DomainError, match="energy edges"):
        gen.spectra(60, [1.0], [1e-10], np.geomspace(0.05, 10, 11))
    with pytest.raises(ValueError, match="unknown element"):
        gen.spectra(26, [1.0], [1e-10], edges)


def test_generate_dataset_small(tmp_path):
    ds = generator.generate_dataset(elements=[57, 92], n_energy=40, temperatures_ev=T_SUB,
                                    densities_gcc=R_SUB, config=SMALL)
    assert ds.kappa.shape == (2, T_SUB.size, R_SUB.size, 40)
    assert ds.kappa.dtype == np.float32
    assert ds.charge_fractions.shape[:3] == (2, T_SUB.size, R_SUB.size)
    assert ds.provenance["seed"] == 3
