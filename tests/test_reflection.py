"""Semiclassical prior (physics/reflection.py) against the exact cross-sections of
physics/molecular/ (Numerov continuum), the Airy function, and the shift/scale identities."""

import numpy as np
import pytest
from scipy.special import airy

from opacity_jax.errors import DomainError
from opacity_jax.physics import constants as c
from opacity_jax.physics import molecular as mol
from opacity_jax.physics import reflection as rf


def _errors(prior, exact):
    """(median over sigma > 1e-3 max, max over sigma > 0.3 max) of |prior / exact - 1|."""
    reg = exact > 1e-3 * exact.max()
    peak = exact > 0.3 * exact.max()
    rel = np.abs(prior / exact - 1.0)
    return float(np.median(rel[reg])), float(np.max(rel[peak]))


@pytest.mark.parametrize("name,levels", [("H2+", [(0, 0), (2, 0), (1, 3)]),
                                         ("HeH+", [(0, 1), (3, 1)]),
                                         ("Li2+", [(0, 2), (4, 2)])])
def test_airy_prior_matches_exact_and_reflection_is_rough(name, levels):
    lam = mol.wavelength_grid(name, 60)
    v, J = (np.array(a) for a in zip(*levels))
    exact = mol.cross_sections(name, v, J, lam)
    prior, parts = rf.prior_cross_sections(name, v, J, lam, return_parts=True)
    for i in range(v.size):
        med, peak = _errors(prior[i], exact[i])
        # Tolerance: the uniform semiclassical continuum is good to O(hbar^2) corrections,
        # measured 0.1-0.3 % median, < 0.7 % at the peak, on these levels.
        assert med < 0.01 and peak < 0.02, (name, v[i], J[i], med, peak)
        # The textbook reflection form (delta-function continuum, smoothed) only to tens of %.
        med_r, peak_r = _errors(parts["reflection"][i], exact[i])
        assert peak_r < 0.7 and med_r > 3 * med, (med_r, peak_r)
    # Nodes: where the exact curve of an excited level dips, the prior stays positive.
    assert np.all(prior > 0) and np.all(parts["reflection"] > 0)


def test_airy_branches_match_scipy():
    # All three branches (decaying series, Hermite table, oscillating series) and their seams.
    z = np.concatenate([np.linspace(-40.0, 60.0, 40001), [-5.0, 10.0, np.nextafter(10.0, 11)]])
    ai, _, _, _ = airy(-z)
    env = 1.0 / (np.sqrt(np.pi) * np.maximum(np.abs(z), 1.0) ** 0.25)
    got = rf.airy_ai_neg(z)
    assert np.max(np.abs(got - ai) / env) < 2e-4
    # Between the series the table is exact to the interpolation error; on the decaying side
    # the error is relative (Ai falls below 1e-73 at z = -40, far below the envelope).
    mid = (z >= -5.0) & (z <= 10.0)
    assert np.max(np.abs(got[mid] - ai[mid])) < 1e-10
    dec = z < -5.0
    assert np.max(np.abs(got[dec] / ai[dec] - 1.0)) < 3e-5
    # The prior's kernel evaluates the oscillating branch in xi = (2/3) z^{3/2}.
    big = z > 10.0
    np.testing.assert_allclose(rf.oscillating_branch(2.0 / 3.0 * z[big] ** 1.5)
                               / z[big] ** 0.25, got[big], rtol=1e-12)


def test_upper_shift_and_dipole_scale_identities():
    # V_up + d and D s: the continuum at E + d on the shifted curve is the one at E on the
    # original, so sigma'(w + d) / (w + d) = s^2 sigma(w) / w exactly (same bound levels).
    d_ev, s = 0.05, 1.1
    pert = rf.perturbed_molecule("HeH+", upper_shift_ev=d_ev, dipole_scale=s)
    lam = mol.wavelength_grid("HeH+", 40)
    w = mol.wavelength_to_hartree(lam)
    w2 = w + d_ev / c.HARTREE_EV
    v, J = np.array([0, 2]), np.array([1, 1])
    a = rf.prior_cross_sections("HeH+", v, J, lam)
    b = rf.prior_cross_sections(pert, v, J, mol.hartree_to_wavelength(w2))
    np.testing.assert_allclose(b / w2, s * s * a / w, rtol=1e-3)
    assert rf.perturbed_molecule("HeH+") is mol.get_molecule("HeH+")


def test_bad_input():
    with pytest.raises(DomainError, match="no bound level"):
        rf.prior_cross_sections("HeH+", [99], [0], [60.0])
    with pytest.raises(DomainError, match="nuclear-spin"):
        rf.prior_cross_sections("He2+", [0], [0], [60.0])
    with pytest.raises(ValueError, match="form"):
        rf.prior_cross_sections("HeH+", [0], [0], [60.0], form="exact")
    with pytest.raises(ValueError, match="dipole_scale"):
        rf.perturbed_molecule("HeH+", dipole_scale=0.0)
