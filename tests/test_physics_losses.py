"""Physics-informed losses (thesis eqs. 5-8) and their registry."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from opacity_jax.data import atomic
from opacity_jax.losses import physics as phys


def _spectra_with_strength(levels, n_e=40):
    """(N, n_e) spectra whose top-10 % mean equals each entry of `levels`."""
    base = np.linspace(0.0, 0.5, n_e)
    out = np.tile(base, (len(levels), 1))
    out[:, :4] = np.asarray(levels)[:, None]     # 4 = 10 % of 40 bins, all above the base
    return out


def test_line_strength_is_top_percent_mean():
    rng = np.random.default_rng(0)
    y = rng.random((3, 5, 200))
    b = phys.line_strength(y, 10.0)
    assert b.shape == (3, 5)
    np.testing.assert_allclose(b, np.sort(y, -1)[..., -20:].mean(-1))
    np.testing.assert_allclose(np.asarray(phys.line_strength(jnp.asarray(y), 10.0)), b,
                               rtol=1e-6)
    with pytest.raises(ValueError, match="top_percent"):
        phys.line_strength(y, 0.0)


def test_monotonic_bb_zero_when_b_falls_with_t_and_positive_otherwise():
    falling = _spectra_with_strength([5.0, 4.0, 3.0, 1.0])[None]        # (G=1, N=4, nE)
    rising = _spectra_with_strength([1.0, 4.0, 3.0, 5.0])[None]
    zero = phys.monotonic_bb({"spectra_by_t": jnp.asarray(falling)}, {}, {"top_percent": 10})
    pos = phys.monotonic_bb({"spectra_by_t": jnp.asarray(rising)}, {}, {"top_percent": 10})
    assert float(zero) == 0.0
    # eq. 6: (1/(N-1)) sum max(0, B_(m+1) - B_m) = (3 + 0 + 2) / 3
    np.testing.assert_allclose(float(pos), 5.0 / 3.0, rtol=1e-6)
    # The regime mask removes the violating pairs.
    mask = jnp.asarray([[0.0, 1.0, 0.0]])
    masked = phys.monotonic_bb({"spectra_by_t": jnp.asarray(rising)}, {"pair_mask": mask},
                               {"top_percent": 10})
    assert float(masked) == 0.0


def test_soft_monotonicity_gradient_orders_predicted_temperature():
    # Two spectra of one group: sample 0 has the stronger lines, so it should be the colder.
    batch = {"bb_strength": jnp.asarray([2.0, 1.0, 5.0]), "group": jnp.asarray([0, 0, 1]),
             "log10_t": jnp.asarray([-1.0, 0.0, 0.0]), "weight": jnp.ones(3)}
    aux = {"soft_tau_dex": 0.1, "regime": "data"}
    f = lambda t: phys.monotonic_bb_soft({"log10_t": t}, batch, aux)
    wrong = jnp.asarray([0.5, -0.5, 0.0])      # predicted hotter for the strong-line spectrum
    right = jnp.asarray([-0.5, 0.5, 0.0])
    assert float(f(wrong)) > float(f(right)) >= 0.0
    g = jax.grad(f)(wrong)
    assert g[0] > 0 and g[1] < 0 and g[2] == 0      # descent cools 0, heats 1, ignores group 1
    # Regime 'data' drops pairs whose true ordering violates the premise.
    bad = dict(batch, log10_t=jnp.asarray([0.0, -1.0, 0.0]))
    assert float(phys.monotonic_bb_soft({"log10_t": wrong}, bad, aux)) == 0.0
    assert float(phys.monotonic_bb_soft({"log10_t": wrong}, bad, dict(aux, regime="all"))) > 0


@pytest.fixture(scope="module")
def tables():
    t = atomic.saha_tables([60, 92], seed=2, level_cap=200)
    return {k: jnp.asarray(v, jnp.float32) for k, v in t.items() if k != "atomic_numbers"}


def test_saha_loss_zero_when_head_equals_solver(tables):
    e = jnp.asarray([0, 1, 0, 1])
    t = jnp.asarray([0.3, 1.0, 2.5, 4.0], jnp.float32)
    lr = jnp.asarray([-12.0, -8.0, -15.0, -5.0], jnp.float32)
    z = jax.jit(phys.saha_zbar_of)(tables, e, t, lr)
    assert np.all(np.isfinite(np.asarray(z))) and float(z[2]) > 0.5
    out = {"t_ev": t, "log10_rho": lr, "zbar": z}
    batch = {"element": e, "weight": jnp.ones(4)}
    loss = jax.jit(lambda o, b: phys.saha_zbar(o, b, {"saha_tables": tables}))
    assert float(loss(out, batch)) < 1e-10
    assert float(loss(dict(out, zbar=z + 0.5), batch)) == pytest.approx(0.25, rel=1e-4)
    # Padding samples do not count.
    w = jnp.asarray([1.0, 1.0, 0.0, 0.0])
    assert float(loss(dict(out, zbar=z.at[2:].add(3.0)), dict(batch, weight=w))) < 1e-10


def test_gradients_flow_through_the_saha_solver(tables):
    e = jnp.asarray([0, 1])
    t0 = jnp.asarray([1.0, 2.0], jnp.float32)
    lr0 = jnp.asarray([-10.0, -8.0], jnp.float32)
    batch = {"element": e, "weight": jnp.ones(2)}
    aux = {"saha_tables": tables}

    @jax.jit
    def loss(t, lr):
        return phys.saha_zbar({"t_ev": t, "log10_rho": lr, "zbar": jnp.zeros(2)}, batch, aux)

    gt, gr = jax.jit(jax.grad(loss, argnums=(0, 1)))(t0, lr0)
    assert np.all(np.isfinite(np.asarray(gt))) and np.all(np.isfinite(np.asarray(gr)))
    # Hotter -> more ionised -> larger Zbar^2 loss; denser -> less ionised.
    assert np.all(np.asarray(gt) > 0) and np.all(np.asarray(gr) < 0)
    h = 1e-2
    fd = (loss(t0.at[0].add(h), lr0) - loss(t0.at[0].add(-h), lr0)) / (2 * h)
    np.testing.assert_allclose(float(gt[0]), float(fd), rtol=0.05)


def test_registry_register_select_and_reject():
    name = "test_only_square"

    @phys.register_physics_loss(name, models=("classifier",))
    def square(outputs, batch, aux):
        return jnp.mean(outputs["y"] ** 2) * aux.get("k", 1.0)

    try:
        assert name in phys.registered_physics_losses()
        sel = phys.get_physics_losses({name: 2.0, "saha_zbar": 0.0})
        assert list(sel) == [name]                    # zero weights are dropped
        pen, metrics = phys.physics_penalty(sel, {"y": jnp.asarray([1.0, 3.0])}, {}, {"k": 1.0})
        assert float(pen) == pytest.approx(10.0) and float(metrics[f"phys_{name}"]) == 5.0
        with pytest.raises(ValueError, match="already registered"):
            phys.register_physics_loss(name)(lambda o, b, a: 0.0)
        with pytest.raises(ValueError, match="unknown physics loss 'nope'"):
            phys.get_physics_losses({"nope": 1.0})
        with pytest.raises(ValueError, match=">= 0"):
            phys.get_physics_losses({name: -0.1})
        with pytest.raises(ValueError, match="finite"):
            phys.get_physics_losses({name: float("nan")})
        assert list(phys.get_physics_losses({name: 1.0}, model="classifier")) == [name]
        assert name in phys.registered_physics_losses("classifier")
        assert name not in phys.registered_physics_losses("fcnn")
        with pytest.raises(ValueError, match="not available for this model"):
            phys.get_physics_losses({name: 1.0}, model="fcnn")
        assert phys.get_physics_losses(None) == {} and phys.get_physics_losses({}) == {}
    finally:
        phys.unregister_physics_loss(name)
    assert name not in phys.registered_physics_losses()


def test_bracket_pair_mask_uses_training_neighbours():
    b = np.array([5.0, 4.0, 4.5, 3.0, 1.0])
    known = np.array([True, True, False, True, True])
    m = phys.bracket_pair_mask(b, known)
    # pair (0,1) falls; (1,2) and (2,3) bracket node 2 (unknown) by nodes 1 and 3: 3 <= 4.
    np.testing.assert_array_equal(m, [True, True, True, True])
    m_all = phys.bracket_pair_mask(b, np.ones(5, bool))
    np.testing.assert_array_equal(m_all, [True, False, True, True])
    assert phys.regime_pair_mask("all", b, known, np.arange(1, 6)).all()
    np.testing.assert_array_equal(
        phys.regime_pair_mask("t_range", b, known, np.arange(1.0, 6.0), (2.0, 4.0)),
        [False, True, True, False])
    with pytest.raises(ValueError, match="regime"):
        phys.regime_pair_mask("sometimes", b, known, np.arange(1, 6))


def test_monotonicity_report_counts_violations():
    t = np.array([0.1, 0.2, 0.4])
    # one element, one density, B rises then falls -> 1 of 2 pairs violates.
    spectra = np.stack([_spectra_with_strength([1.0, 3.0, 2.0])], 0)[:, :, None, :]
    r = phys.monotonicity_report(spectra, t)
    assert r["n_pairs"] == 2
    assert r["violation_fraction"]["tol=0"] == pytest.approx(0.5)
