"""Tests for the Saha-Boltzmann solver (opacity_jax.physics.saha)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from opacity_jax import _compat
from opacity_jax.data import atomic, grid
from opacity_jax.physics import constants as C
from opacity_jax.physics import saha


@pytest.fixture(scope="module")
def tables():
    return atomic.saha_tables([57, 60, 63, 92, 102])


def _solve(tables, i, t, r, dtype=jnp.float32):
    args = [jnp.asarray(tables[k][i], dtype) for k in
            ("atomic_weights", "ionization_energies_ev", "level_energy_ev", "level_log_g")]
    fn = jax.jit(jax.vmap(lambda tt, rr: saha.solve_element(tt, rr, *args)))
    return fn(jnp.asarray(t, dtype), jnp.asarray(r, dtype))


def _grid_points():
    tt, rr = np.meshgrid(grid.temperatures_ev(), grid.densities_gcc(), indexing="ij")
    return tt.ravel(), rr.ravel()


def test_two_stage_matches_hand_calculation():
    # One level per stage: n1^2 / (n - n1) = S with S = 2 (g1/g0) (2 pi m_e kT/h^2)^1.5 e^{-I/kT},
    # a quadratic solved by hand.
    g0, g1, ion_e, a_w = 2.0, 1.0, 5.0, 140.0
    energy = np.zeros((2, 1))
    log_g = np.log([[g0], [g1]])
    with _compat.enable_x64():
        for t, rho in [(0.3, 1e-13), (0.5, 1e-10), (1.0, 1e-6), (0.2, 1e-18)]:
            res = saha.solve_element(t, rho, a_w, np.array([ion_e]), energy, log_g)
            n = rho / (a_w * C.ATOMIC_MASS_UNIT_G)
            s = 2 * (g1 / g0) * C.SAHA_CONST_CM3_EV32 * t**1.5 * np.exp(-ion_e / t)
            n1 = 0.5 * (-s + np.sqrt(s * s + 4 * s * n))
            np.testing.assert_allclose(float(res.zbar), n1 / n, rtol=1e-10)
            np.testing.assert_allclose(float(np.exp(res.log_ne)), n1, rtol=1e-10)
            # f0 = n0/n = n1^2 / (S n): avoids the cancellation in 1 - n1/n.
            np.testing.assert_allclose(np.asarray(res.fractions), [n1**2 / (s * n), n1 / n],
                                       rtol=1e-9)


def test_fractions_normalised_finite_and_monotone(tables):
    t, r = _grid_points()
    for i in range(len(tables["atomic_numbers"])):
        with _compat.enable_x64():   # strict monotonicity needs float64 on the Zbar plateaus
            res = _solve(tables, i, t, r, jnp.float64)
        f = np.asarray(res.fractions)
        assert np.all(np.isfinite(f)) and np.all(f >= 0)
        np.testing.assert_allclose(f.sum(-1), 1.0, rtol=1e-12)
        assert np.all(np.isfinite(np.asarray(res.log_zbar)))
        lz = np.asarray(res.log_zbar).reshape(grid.N_TEMPERATURES, grid.N_DENSITIES)
        # Zbar rises with T at fixed rho and falls with rho at fixed T (log space: no underflow).
        assert np.all(np.diff(lz, axis=0) > 0), tables["atomic_numbers"][i]
        assert np.all(np.diff(lz, axis=1) < 0), tables["atomic_numbers"][i]


def test_corner_values_are_physical(tables):
    t = np.array([0.01, 0.01, 5.0, 5.0])
    r = np.array([1e-20, 1e-4, 1e-20, 1e-4])
    res = _solve(tables, 1, t, r)   # Nd
    zbar = np.asarray(res.zbar, np.float64)
    log_zbar = np.asarray(res.log_zbar, np.float64)
    assert log_zbar[0] < -100 and log_zbar[1] < -100     # 116 K: neutral (Zbar underflows f32)
    assert 7.0 < zbar[2] < 14.0                           # "Zbar of order 10" at 5 eV, 1e-20
    assert 2.0 < zbar[3] < zbar[2]


def test_float32_agrees_with_float64(tables):
    t, r = _grid_points()
    for i in range(len(tables["atomic_numbers"])):
        res32 = _solve(tables, i, t, r, jnp.float32)
        z32 = np.asarray(res32.zbar, np.float64)
        lz32 = np.asarray(res32.log_zbar, np.float64)
        with _compat.enable_x64():
            res64 = _solve(tables, i, t, r, jnp.float64)
            z64, lz64 = np.asarray(res64.zbar), np.asarray(res64.log_zbar)
        normal = z64 > 1e-30   # float32 cannot represent smaller Zbar; compare ln Zbar there
        np.testing.assert_allclose(z32[normal], z64[normal], rtol=1e-4)
        np.testing.assert_allclose(lz32[~normal], lz64[~normal], rtol=1e-4)


def test_differentiable_matches_finite_differences(tables):
    with _compat.enable_x64():
        args = [jnp.asarray(tables[k][1], jnp.float64) for k in
                ("atomic_weights", "ionization_energies_ev", "level_energy_ev", "level_log_g")]
        f = lambda t, lr: saha.solve_element(t, 10.0**lr, *args).zbar
        for t0, lr0 in [(0.5, -13.0), (2.0, -8.0), (4.0, -16.0)]:
            gt, gr = jax.grad(f, argnums=(0, 1))(t0, lr0)
            h = 1e-5
            ft = (f(t0 + h, lr0) - f(t0 - h, lr0)) / (2 * h)
            fr = (f(t0, lr0 + h) - f(t0, lr0 - h)) / (2 * h)
            np.testing.assert_allclose(float(gt), float(ft), rtol=1e-5, atol=1e-9)
            np.testing.assert_allclose(float(gr), float(fr), rtol=1e-5, atol=1e-9)
            assert float(gt) > 0 and float(gr) < 0


def test_traced_element_index_vmaps(tables):
    idx = jnp.arange(len(tables["atomic_numbers"]))
    fn = jax.jit(jax.vmap(lambda i: saha.solve_indexed(tables, i, 1.0, 1e-12).zbar))
    batched = np.asarray(fn(idx))
    single = [float(saha.solve_indexed(tables, int(i), 1.0, 1e-12).zbar) for i in idx]
    np.testing.assert_allclose(batched, single, rtol=1e-5)


def test_mixture_charge_neutrality_and_single_element_limit(tables):
    with _compat.enable_x64():
        sel = [1, 3]   # Nd + U
        args = dict(atomic_weights=tables["atomic_weights"][sel],
                    ionization_energies_ev=tables["ionization_energies_ev"][sel],
                    level_energy_ev=tables["level_energy_ev"][sel],
                    level_log_g=tables["level_log_g"][sel])
        t, rho, x = 1.5, 1e-12, np.array([0.3, 0.7])
        res = saha.solve_mixture(t, rho, x, **args)
        n_k = rho * x / (args["atomic_weights"] * C.ATOMIC_MASS_UNIT_G)
        np.testing.assert_allclose(float(np.exp(res.log_ne)), float(np.sum(n_k * res.zbar)),
                                   rtol=1e-10)
        # A mixture with zero fraction of the second element reduces to the pure element.
        res1 = saha.solve_mixture(t, rho, np.array([1.0, 0.0]), **args)
        pure = saha.solve_element(t, rho, args["atomic_weights"][0],
                                  args["ionization_energies_ev"][0], args["level_energy_ev"][0],
                                  args["level_log_g"][0])
        np.testing.assert_allclose(float(res1.zbar[0]), float(pure.zbar), rtol=1e-10)
