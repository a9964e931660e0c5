"""Planck function, kernels, quadrature and band-limited mean opacities."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from opacity_jax._compat import enable_x64
from opacity_jax.data import grid
from opacity_jax.physics import constants as c
from opacity_jax.physics import planck, quadrature

TEMPS = np.array([0.01, 0.03, 0.1, 0.5, 1.0, 5.0])
EDGES_200 = grid.energy_edges_ev(200)


def _textbook_bnu(energy_ev, temperature_ev):
    """2 h nu^3 / c^2 / (e^{h nu / kT} - 1) in float64 numpy, CGS throughout."""
    nu = np.asarray(energy_ev, np.float64) * c.EV_ERG / c.H_PLANCK_ERG_S
    kt = np.asarray(temperature_ev, np.float64) * c.EV_ERG
    with np.errstate(over="ignore"):          # e^{x} overflows for x > 709: B = 0 there
        return (2.0 * c.H_PLANCK_ERG_S * nu**3 / c.C_LIGHT_CM_S**2
                / np.expm1(c.H_PLANCK_ERG_S * nu / kt))


# ------------------------------------------------------------------------------- quadrature

def test_log_bin_integral_power_law_float64():
    with enable_x64():
        edges = grid.energy_edges_ev(50)
        got = quadrature.log_bin_integral(lambda e: 2.0 * jnp.log(e), edges)
        want = np.log((edges[1:] ** 3 - edges[:-1] ** 3) / 3.0)
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12)
        assert got.dtype == jnp.float64


def test_log_bin_integral_float32_both_paths():
    edges = grid.energy_edges_ev(15000)
    f = lambda e: -jnp.log(e)                       # int dE/E = ln(b/a): exact in ln E
    # Concrete float64 edges: geometry in float64, result in float32 (x64 off).
    got_np = quadrature.log_bin_integral(f, edges)
    want = np.log(np.log(edges[1:] / edges[:-1]))
    assert got_np.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got_np), want, atol=1e-5)
    # Traced float32 edges: the cancellation-free form keeps the narrow bins accurate relative to
    # the float32-rounded edges themselves.
    e32 = edges.astype(np.float32)
    got_jax = jax.jit(lambda ed: quadrature.log_bin_integral(f, ed))(jnp.asarray(e32))
    e32 = e32.astype(np.float64)
    assert got_jax.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got_jax), np.log(np.log(e32[1:] / e32[:-1])), atol=1e-5)


def test_bin_integral_broadcast_and_dtype():
    lo = jnp.array([0.1, 1.0, 2.0], jnp.float32)
    hi = jnp.array([[0.2, 3.0, 2.5]], jnp.float32)
    got = quadrature.bin_integral(lambda e: e**2, lo, hi, n_nodes=8)
    want = (np.asarray(hi, np.float64) ** 3 - np.asarray(lo, np.float64) ** 3) / 3.0
    assert got.shape == (1, 3) and got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)
    with pytest.raises(ValueError, match="n_nodes"):
        quadrature.bin_integral(lambda e: e, 1.0, 2.0, n_nodes=0)


# ------------------------------------------------------------------------------- Planck function

def test_planck_bnu_matches_textbook_float64():
    e = grid.bin_centers_ev(grid.energy_edges_ev(300))
    with enable_x64():
        for t in (0.01, 0.2, 5.0):
            want = _textbook_bnu(e, t)
            got = np.asarray(planck.planck_bnu(jnp.asarray(e), t))
            keep = want > 1e-300                    # textbook form underflows first
            np.testing.assert_allclose(got[keep], want[keep], rtol=1e-12)


def test_planck_bnu_float32_finite_nonnegative_up_to_x_1e4():
    x = jnp.logspace(-6, 4, 2001, dtype=jnp.float32)
    for t in (0.01, 1.0, 5.0):
        t32 = jnp.float32(t)
        for fn in (planck.planck_bnu, planck.dplanck_dt):
            val = fn(x * t32, t32)
            assert val.dtype == jnp.float32
            assert bool(jnp.all(jnp.isfinite(val))) and bool(jnp.all(val >= 0))
        for fn in (planck.log_planck_kernel, planck.log_dplanck_kernel):
            assert bool(jnp.all(jnp.isfinite(fn(x))))
    # Edge cases that must not produce NaN: x -> 0 and x -> inf.
    assert float(planck.planck_bnu(jnp.float32(0.0), jnp.float32(1.0))) == 0.0
    assert float(planck.planck_bnu(jnp.float32(1.0), jnp.float32(0.0))) == 0.0
    assert float(planck.dplanck_dt(jnp.float32(1e30), jnp.float32(1e-10))) == 0.0


def test_log_kernels_match_float64_reference():
    x = np.logspace(-6, 4, 301)
    ref_b = 3 * np.log(x) - x - np.log(-np.expm1(-x))
    ref_db = 4 * np.log(x) - x - 2 * np.log(-np.expm1(-x))
    np.testing.assert_allclose(np.asarray(planck.log_planck_kernel(x.astype(np.float32))), ref_b,
                               rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(np.asarray(planck.log_dplanck_kernel(x.astype(np.float32))), ref_db,
                               rtol=1e-5, atol=1e-4)
    # Kernel and B_nu agree: B = prefactor T^3 exp(log kernel).
    with enable_x64():
        t = 0.7
        e = x[(x > 1e-3) & (x < 300)] * t
        k = np.exp(np.asarray(planck.log_planck_kernel(jnp.asarray(e / t))))
        ratio = np.asarray(planck.planck_bnu(jnp.asarray(e), t)) / k
        np.testing.assert_allclose(ratio, ratio[0], rtol=1e-12)


def test_dplanck_dt_equals_autodiff_float64():
    with enable_x64():
        e = jnp.asarray(np.geomspace(0.1, 10.0, 97))
        for t in (0.01, 0.1, 1.0, 5.0):
            grad = jax.vmap(jax.grad(planck.planck_bnu, argnums=1), in_axes=(0, None))(e, t)
            got = planck.dplanck_dt(e, t)
            # atol only absorbs the deep Wien tail (x ~ 900), where autodiff's intermediates
            # underflow to 0 before the stable form does (values ~1e-307).
            chex.assert_trees_all_close(got, grad, rtol=1e-10, atol=1e-290)


# ------------------------------------------------------------------------------- means

@pytest.mark.parametrize("edges", [EDGES_200, grid.energy_edges_ev(15000)])
def test_constant_spectrum_means_equal_constant_float32(edges):
    t = jnp.asarray(TEMPS, jnp.float32)
    kappa = jnp.full((len(TEMPS), len(edges) - 1), 3.5, jnp.float32)
    kp = planck.planck_mean(kappa, edges, t)
    kr = planck.rosseland_mean(kappa, edges, t)
    assert kp.dtype == jnp.float32 and kp.shape == (len(TEMPS),)
    chex.assert_trees_all_close(kp, jnp.full_like(kp, 3.5), rtol=1e-5)
    chex.assert_trees_all_close(kr, jnp.full_like(kr, 3.5), rtol=1e-5)


def test_weights_normalised_no_underflow_at_low_temperature():
    t = jnp.asarray(TEMPS, jnp.float32)
    for fn in (planck.planck_weights, planck.rosseland_weights):
        w = fn(EDGES_200, t)
        assert w.shape == (len(TEMPS), 200)
        assert bool(jnp.all(jnp.isfinite(w))) and bool(jnp.all(w >= 0))
        chex.assert_trees_all_close(jnp.sum(w, -1), jnp.ones(len(TEMPS)), rtol=1e-5)
        # At 0.01 eV the whole band is Wien tail (x >= 10): weight falls with E.
        assert int(jnp.argmax(w[0])) == 0


def test_weights_match_direct_integration_float64():
    with enable_x64():
        edges = grid.energy_edges_ev(40)
        t = 0.8
        w = np.asarray(planck.planck_weights(edges, t))
        wd = np.asarray(planck.rosseland_weights(edges, t))
    ref = np.array([integrate.quad(lambda e: _textbook_bnu(e, t), a, b)[0]
                    for a, b in zip(edges[:-1], edges[1:])])
    np.testing.assert_allclose(w, ref / ref.sum(), rtol=1e-9)
    x = lambda e: e / t
    dref = np.array([integrate.quad(lambda e: x(e) ** 4 * np.exp(-x(e)) / np.expm1(-x(e)) ** 2,
                                    a, b)[0] for a, b in zip(edges[:-1], edges[1:])])
    np.testing.assert_allclose(wd, dref / dref.sum(), rtol=1e-9)


def test_rosseland_below_planck_for_nonincreasing_spectra():
    # kappa_R <= kappa_P for spectra that do not increase with E: Jensen (harmonic <= arithmetic
    # mean under W') plus Chebyshev (W' has a monotone likelihood ratio over W, so it puts more
    # weight on high E where kappa is smaller). A physics inequality, not a tuned threshold.
    rng = np.random.default_rng(0)
    n_spec = 64
    steps = rng.exponential(0.05, size=(n_spec, 200)) * (rng.random((n_spec, 200)) < 0.3)
    kappa = np.exp(3.0 * rng.standard_normal((n_spec, 1)) - np.cumsum(steps, axis=1))
    kappa = jnp.asarray(kappa, jnp.float32)
    for t in TEMPS:
        kp = planck.planck_mean(kappa, EDGES_200, jnp.float32(t))
        kr = planck.rosseland_mean(kappa, EDGES_200, jnp.float32(t))
        assert kp.shape == (n_spec,)
        assert bool(jnp.all(kr <= kp * (1 + 1e-5))), t


def test_rosseland_zero_opacity_bin_gives_zero():
    kappa = jnp.ones((200,), jnp.float32).at[100].set(0.0)
    kr = planck.rosseland_mean(kappa, EDGES_200, 1.0)
    assert float(kr) == 0.0
    # A zero bin whose weight underflowed (deep Wien tail at 0.01 eV) is ignored, not NaN.
    kappa = jnp.ones((200,), jnp.float32).at[-1].set(0.0)
    kr = planck.rosseland_mean(kappa, EDGES_200, 0.01)
    assert np.isfinite(float(kr))
    g = jax.grad(lambda k: planck.rosseland_mean(k, EDGES_200, 0.5))(jnp.ones(200) * 2.0)
    assert bool(jnp.all(jnp.isfinite(g)))
    # Gradients stay finite with a zero-opacity window, and w.r.t. T at the coldest point.
    window = jnp.ones((200,), jnp.float32).at[100].set(0.0)
    for fn in (planck.rosseland_mean, planck.planck_mean):
        gt = jax.grad(lambda t: fn(window, EDGES_200, t))(jnp.float32(0.01))
        assert np.isfinite(float(gt))
    gk = jax.grad(lambda k: planck.rosseland_mean(k, EDGES_200, 1.0))(window)
    assert bool(jnp.all(jnp.isfinite(gk)))


def test_mean_opacities_kinds():
    rng = np.random.default_rng(1)
    comps = {k: jnp.asarray(rng.uniform(0.5, 2.0, (3, 200)), jnp.float32)
             for k in ("bb", "bf", "ff")}
    comps["es"] = jnp.full((3, 200), 0.4, jnp.float32)
    t = jnp.asarray([0.05, 0.5, 5.0], jnp.float32)
    absn = comps["bb"] + comps["bf"] + comps["ff"]
    out = planck.mean_opacities(comps, EDGES_200, t)
    chex.assert_trees_all_close(out["planck"], planck.planck_mean(absn, EDGES_200, t), rtol=1e-6)
    chex.assert_trees_all_close(out["rosseland"], planck.rosseland_mean(absn + 0.4, EDGES_200, t),
                                rtol=1e-6)
    tot = planck.mean_opacities(comps, EDGES_200, t, kind="total")
    chex.assert_trees_all_close(tot["planck"], out["planck"] + 0.4, rtol=1e-5)
    chex.assert_trees_all_close(tot["rosseland"], out["rosseland"], rtol=1e-6)
    with pytest.raises(ValueError, match="absorption"):
        planck.mean_opacities(comps, EDGES_200, t, kind="bogus")
    with pytest.raises(ValueError, match="absorption component"):
        planck.mean_opacities({"es": comps["es"]}, EDGES_200, t)


# ------------------------------------------------------------------------------- band fraction

def _quad_fraction(t, lo=0.1, hi=10.0):
    fb = lambda x: x**3 * np.exp(-x) / -np.expm1(-x)
    fd = lambda x: x**4 * np.exp(-x) / np.expm1(-x) ** 2
    a, b = lo / t, hi / t
    ib = integrate.quad(fb, a, b, limit=400, epsabs=0, epsrel=1e-12)[0]
    idb = integrate.quad(fd, a, b, limit=400, epsabs=0, epsrel=1e-12)[0]
    return ib / c.PLANCK_INTEGRAL, idb / c.DPLANCK_INTEGRAL


def test_band_fraction_matches_scipy():
    got_b, got_d = planck.band_fraction(jnp.asarray(TEMPS, jnp.float32))
    assert got_b.shape == (len(TEMPS),) and got_d.dtype == jnp.float32
    ref = np.array([_quad_fraction(t) for t in TEMPS])
    np.testing.assert_allclose(np.asarray(got_b), ref[:, 0], rtol=2e-5)
    np.testing.assert_allclose(np.asarray(got_d), ref[:, 1], rtol=2e-5)
    with enable_x64():
        got_b, got_d = planck.band_fraction(jnp.asarray(TEMPS))
        np.testing.assert_allclose(np.asarray(got_b), ref[:, 0], rtol=1e-10)
        np.testing.assert_allclose(np.asarray(got_d), ref[:, 1], rtol=1e-10)
        # Whole spectrum: the analytic totals are the right normalisation.
        fb, fd = planck.band_fraction(1.0, e_lo_ev=1e-6, e_hi_ev=1e3, n=4096)
        np.testing.assert_allclose([float(fb), float(fd)], [1.0, 1.0], rtol=1e-9)
    # The physics the module docstring quotes: at 5 eV the band misses most of B_nu.
    assert ref[-1, 0] < 0.2 and ref[0, 0] < 0.01 and ref[3, 0] > 0.99
    with pytest.raises(ValueError):
        planck.band_fraction(1.0, e_lo_ev=10.0, e_hi_ev=0.1)


# ------------------------------------------------------------------------------- jit / vmap

def test_jit_and_vmap():
    rng = np.random.default_rng(2)
    kappa = jnp.asarray(rng.uniform(0.1, 10.0, (4, 5, 200)), jnp.float32)
    t = jnp.asarray(np.geomspace(0.01, 5.0, 5), jnp.float32)
    eager_p = planck.planck_mean(kappa, EDGES_200, t[None, :])
    eager_r = planck.rosseland_mean(kappa, EDGES_200, t[None, :])
    assert eager_p.shape == (4, 5)
    # Edges closed over (concrete) and passed as a traced argument.
    jit_p = jax.jit(lambda k, tt: planck.planck_mean(k, EDGES_200, tt))(kappa, t)
    jit_r = jax.jit(planck.rosseland_mean)(kappa, jnp.asarray(EDGES_200, jnp.float32), t)
    chex.assert_trees_all_close(jit_p, eager_p, rtol=1e-5)
    chex.assert_trees_all_close(jit_r, eager_r, rtol=1e-4)
    vm = jax.vmap(jax.vmap(lambda k, tt: planck.planck_mean(k, EDGES_200, tt)),
                  in_axes=(0, None))(kappa, t)
    chex.assert_trees_all_close(vm, eager_p, rtol=1e-5)
    fb = jax.jit(jax.vmap(lambda tt: planck.band_fraction(tt)[0]))(t)
    chex.assert_trees_all_close(fb, planck.band_fraction(t)[0], rtol=1e-5)
    bn = jax.jit(jax.vmap(planck.planck_bnu, in_axes=(0, None)))(jnp.linspace(0.1, 10, 7), 1.0)
    assert bn.shape == (7,)
