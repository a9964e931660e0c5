"""Tests for the Debye-Hueckel continuum-lowering variant of the embedded generator."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from opacity_jax import _compat
from opacity_jax.data import atomic, embedded, generator, grid
from opacity_jax.physics import saha
from opacity_jax.train import experiment

SMALL = dict(seed=3, line_cap=1500, level_cap=300)
ND = 60
T_EV = np.array([0.5, 1.0, 2.0])


@pytest.fixture(scope="module")
def gens():
    return (generator.OpacityGenerator(generator.GeneratorConfig(**SMALL)),
            generator.OpacityGenerator(generator.GeneratorConfig(**SMALL,
                                                                 continuum_lowering="debye")))


def nrl_lowering_ev(t_ev, n_e_cm3, charge):
    """(q + 1) e^2 / lambda_D from the NRL Plasma Formulary's rounded numbers:
    lambda_D = 7.43e2 T_eV^1/2 n_e^-1/2 cm, e^2 = 1.44e-7 eV cm."""
    return (charge + 1) * 1.44e-7 / (7.43e2 * np.sqrt(t_ev / n_e_cm3))


def test_debye_lowering_matches_hand_value():
    # T = 1 eV, n_e = 1e18 cm^-3: lambda_D = 7.43e-7 cm, e^2/lambda_D = 0.1938 eV per unit z.
    with _compat.enable_x64():
        d_i = np.asarray(saha.debye_lowering_ev(1.0, jnp.log(1e18), 3))
    np.testing.assert_allclose(d_i, [0.1938, 2 * 0.1938, 3 * 0.1938], rtol=2e-3)
    np.testing.assert_allclose(d_i, nrl_lowering_ev(1.0, 1e18, np.arange(3)), rtol=2e-3)


def test_lowering_is_self_consistent_and_raises_charge_at_high_density(gens):
    g0, g1 = gens
    rho_hi, rho_lo = grid.RHO_MAX_GCC, grid.RHO_MIN_GCC
    a = g0.ionization(ND, T_EV, np.full(3, rho_hi))
    b = g1.ionization(ND, T_EV, np.full(3, rho_hi))
    # The depression is the Debye value at the solution's own n_e (fixed point reached) ...
    want = nrl_lowering_ev(T_EV[:, None], np.exp(b["log_ne"])[:, None], np.arange(20))
    np.testing.assert_allclose(b["lowering_ev"], want, rtol=2e-3)
    assert np.all(a["lowering_ev"] == 0)
    # ... and that n_e solves the Saha balance with I - dI.
    tab = atomic.saha_tables([ND], SMALL["seed"], SMALL["level_cap"])
    solve = lambda t, i_q: saha.solve_element(t, rho_hi, tab["atomic_weights"][0], i_q,
                                              tab["level_energy_ev"][0], tab["level_log_g"][0])
    with _compat.enable_x64():
        res = jax.jit(jax.vmap(solve))(jnp.asarray(T_EV), jnp.asarray(
            tab["ionization_energies_ev"][0] - b["lowering_ev"]))
    np.testing.assert_allclose(np.asarray(res.log_ne), b["log_ne"], rtol=0, atol=1e-6)
    # Lowered limits ionize more: the charge distribution moves up (every upper tail grows).
    tail = lambda f: np.cumsum(f[:, ::-1], axis=1)[:, ::-1]
    assert np.all(tail(b["fractions"]) >= tail(a["fractions"]) - 1e-12)
    assert np.all(b["zbar"] > 1.01 * a["zbar"])
    # At the thinnest grid density n_e is ~1e4 cm^-3 smaller: the balance is unchanged.
    a = g0.ionization(ND, T_EV, np.full(3, rho_lo))
    b = g1.ionization(ND, T_EV, np.full(3, rho_lo))
    np.testing.assert_allclose(b["fractions"], a["fractions"], rtol=0, atol=1e-6)


def test_bound_free_thresholds_move_down_by_the_lowering(gens):
    g1 = gens[1]
    q, t = 1, 1.0
    ion = atomic.ion_structure(ND, q, SMALL["seed"], SMALL["level_cap"], SMALL["line_cap"])
    e_th = np.sort(ion.ionization_energy_ev - ion.level_energy_ev)
    d_i = float(g1.ionization(ND, [t], [grid.RHO_MAX_GCC])["lowering_ev"][0, q])
    assert 0.2 < d_i < e_th[0] - 0.1     # the lowest edge survives and stays in the band
    edges = np.geomspace(0.1, 3.0, 4001)  # ~1e-3 relative bins

    def onset(spec):
        k = np.nonzero(spec > 0)[0][0]
        return edges[k], edges[k + 1]

    lo, hi = onset(g1.ion_bound_free(ND, q, [t], [0.0], edges)[0])
    assert lo <= e_th[0] < hi
    lo, hi = onset(g1.ion_bound_free(ND, q, [t], [d_i], edges)[0])
    assert lo <= e_th[0] - d_i < hi
    # A lowering beyond the lowest thresholds dissolves those levels: bound-free then starts at
    # the first threshold that stays positive.
    big = 0.5 * (e_th[0] + e_th[1])
    lo, hi = onset(g1.ion_bound_free(ND, q, [t], [big], edges)[0])
    first = e_th[e_th > big][0] - big
    assert lo <= first < hi


def test_zero_lowering_reproduces_the_default_bound_free(gens):
    g0, g1 = gens
    edges = grid.energy_edges_ev(120)
    for q in (0, 1, 3):
        bf = g0.ion_spectra(ND, q, T_EV, edges)[1]
        np.testing.assert_allclose(g1.ion_bound_free(ND, q, T_EV, np.zeros(3), edges), bf,
                                   rtol=1e-12, atol=0)


def test_default_is_the_unlowered_generator(gens, tmp_path):
    g0 = gens[0]
    assert generator.GeneratorConfig().continuum_lowering == "none"
    explicit = generator.OpacityGenerator(generator.GeneratorConfig(**SMALL,
                                                                    continuum_lowering="none"))
    edges = grid.energy_edges_ev(40)
    a = g0.spectra(ND, T_EV, [1e-4] * 3, edges)
    b = explicit.spectra(ND, T_EV, [1e-4] * 3, edges)
    for k in ("kappa", "bb", "bf", "ff", "es", "fractions"):
        np.testing.assert_array_equal(a[k], b[k])
    # The fractions are the plain Saha solve's (up to jit-versus-eager rounding).
    tab = atomic.saha_tables([ND], SMALL["seed"], SMALL["level_cap"])
    with _compat.enable_x64():
        res = jax.jit(saha.solve_element)(1.0, 1e-4, *(jnp.asarray(tab[k][0], jnp.float64) for k in (
            "atomic_weights", "ionization_energies_ev", "level_energy_ev", "level_log_g")))
    np.testing.assert_allclose(a["fractions"][1], np.asarray(res.fractions), rtol=1e-12, atol=0)
    # Cache names: the default keeps the earlier name, the variant gets its own.
    plain = tmp_path / f"lte_v{generator.GENERATOR_VERSION}_Ce_E50_seed0.h5"
    plain.write_bytes(b"")
    assert embedded.ensure_embedded_dataset(50, 0, [58], cache_dir=tmp_path) == plain
    lowered = tmp_path / f"lte_v{generator.GENERATOR_VERSION}_Ce_E50_seed0_debye.h5"
    lowered.write_bytes(b"")
    assert embedded.ensure_embedded_dataset(50, 0, [58], cache_dir=tmp_path,
                                            continuum_lowering="debye") == lowered


def test_variant_dataset_records_the_option_and_mixture_agrees(gens):
    g1 = gens[1]
    # Three points throughout the module: one compiled shape per solver.
    ds = generator.generate_dataset(elements=[ND], n_energy=20, temperatures_ev=T_EV,
                                    densities_gcc=[1e-6], config=g1.config)
    assert ds.provenance["continuum_lowering"] == "debye"
    edges = grid.energy_edges_ev(20)
    rho = [1e-4, 1e-5, 1e-4]
    pure = g1.spectra(ND, T_EV, rho, edges)
    mix = g1.mixture_spectra([ND], [1.0], T_EV, rho, edges)
    np.testing.assert_allclose(mix["kappa"], pure["kappa"], rtol=1e-9)


def test_unknown_option_is_one_clear_error(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="GeneratorConfig.continuum_lowering.*none, debye"):
        generator.GeneratorConfig(continuum_lowering="stewart-pyatt")
    monkeypatch.setenv("OPACITY_JAX_CACHE", str(tmp_path))
    cfg = ml_collections.ConfigDict(dict(path="", generator_seed=0, elements="Ce", n_energy=20,
                                         continuum_lowering="ecker"))
    with pytest.raises(ValueError, match="data.continuum_lowering = 'ecker'.*none, debye"):
        experiment.load_data(cfg)
    assert not list(tmp_path.iterdir())          # rejected before any generation
    cfg.continuum_lowering = "debye"
    cfg.path = str(tmp_path / "table.h5")
    with pytest.raises(ValueError, match="data.continuum_lowering"):
        experiment.load_data(cfg)
