"""Scalings, conservative rebinning and the Standardizer."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from opacity_jax._compat import enable_x64
from opacity_jax.data import grid, transforms as tr


def _spectra(rng, shape):
    return np.exp(rng.normal(0.0, 3.0, shape))


# ------------------------------------------------------------------------------- scalings

@pytest.mark.parametrize("name", ["cbrt", "log"])
def test_scaling_inverse_exact_numpy_and_jax(name):
    rng = np.random.default_rng(0)
    kappa = _spectra(rng, (5, 300))
    s = tr.get_scaling(name, eps=1e-6)
    np.testing.assert_allclose(s.inverse(s.forward(kappa)), kappa, rtol=1e-12)
    k32 = jnp.asarray(kappa, jnp.float32)
    y = jax.jit(s.forward)(k32)
    assert isinstance(y, jax.Array) and y.dtype == jnp.float32
    chex.assert_trees_all_close(s.inverse(y), k32, rtol=1e-5 if name == "cbrt" else 2e-5)
    assert tr.Scaling.from_dict(json.loads(json.dumps(s.to_dict()))) == s


def test_scaling_functions_and_edge_values():
    np.testing.assert_allclose(tr.cube_root(np.array([-8.0, 0.0, 27.0])), [-2.0, 0.0, 3.0])
    np.testing.assert_allclose(tr.inverse_cube_root(np.array([-2.0, 3.0])), [-8.0, 27.0])
    eps = 1e-3
    y = tr.log_scale(np.array([0.0, 1.0]), eps)
    np.testing.assert_allclose(y, np.log([eps, 1.0 + eps]))
    np.testing.assert_allclose(tr.inverse_log_scale(y, eps), [0.0, 1.0], atol=1e-15)
    assert tr.cube_root(np.array([1, 8])).dtype == np.float64    # ints promote


def test_get_scaling_rejects_unknown():
    with pytest.raises(ValueError, match="cbrt"):
        tr.get_scaling("sqrt")
    with pytest.raises(ValueError, match="eps"):
        tr.Scaling("log", eps=-1.0)


def test_floored_log_spectrum_scaling_resolves_its_decades_and_never_returns_zero():
    # Two elements; spectra spanning 60 decades, with exact zeros (float32 underflow in tables).
    k = np.array([[[1e3, 1e-10, 1e-36, 0.0], [5.0, 4.0, 3.0, 2.0]],
                  [[1e-20, 1e-25, 1e-60, 1e-80], [1.0, 0.0, 0.0, 0.0]]])   # (nZ=2, n=2, nE=4)
    sc = tr.SpectrumScaling("log", 1e-10, np.array([2.0, 3.0]), np.array([-5.0, 1.0]),
                            floor_decades=30.0)
    # Hand values of the floor: 30 decades below each spectrum's own maximum, >= 1e-37.
    floors = np.array([[1e-27, 5e-30], [1e-37, 1e-30]])
    np.testing.assert_allclose(tr.relative_floor(k, 30.0)[..., 0], floors, rtol=1e-12)
    y = sc.forward(k)
    want = (np.log(np.maximum(k, floors[..., None])) - np.array([-5.0, 1.0])[:, None, None]) \
        / np.array([2.0, 3.0])[:, None, None]
    np.testing.assert_allclose(y, want, rtol=1e-12)
    for e in range(2):
        np.testing.assert_allclose(sc.forward_for(k[e], e), y[e], rtol=1e-12)
        np.testing.assert_allclose(sc.inverse_for(y[e], e),
                                   np.maximum(k[e], floors[e][:, None]) + tr.KAPPA_TINY,
                                   rtol=1e-9)
    # Far below anything trained on, float32 predictions stay positive (and jit-able).
    low = jax.jit(lambda v: tr.inverse_spectrum_scaling(v, "log", 1e-10, 30.0, 2.0, -5.0))(
        jnp.asarray([-1e4, -60.0], jnp.float32))
    assert np.all(np.asarray(low) > 0)
    d = jax.grad(lambda v: tr.inverse_spectrum_scaling(v, "log", 0.0, 30.0, 2.0, -5.0))(
        jnp.float32(-3.0))
    np.testing.assert_allclose(d, 2.0 * np.exp(-11.0), rtol=1e-5)      # no clipping: smooth
    again = tr.SpectrumScaling.from_dict(json.loads(json.dumps(sc.to_dict())))
    np.testing.assert_allclose(again.forward(k), y)
    # Legacy dicts (no floor): ln(kappa + eps), inverse clipped at 0, shift 0.
    old = tr.SpectrumScaling.from_dict({"name": "log", "eps": 1e-3, "scale": [1.0, 1.0]})
    assert old.floor_decades == 0.0
    np.testing.assert_allclose(old.forward(np.zeros((2, 1, 1))), np.log(1e-3))
    assert old.inverse_for(np.array([-50.0]), 0)[0] == 0.0
    with pytest.raises(ValueError, match="floor_decades"):
        tr.SpectrumScaling("log", 0.0, np.ones(1), floor_decades=-1.0)


# ------------------------------------------------------------------------------- rebinning

def test_rebin_conserves_integral_random_edges():
    rng = np.random.default_rng(1)
    e_in = np.sort(rng.uniform(0.1, 10.0, 700))
    e_in[0], e_in[-1] = 0.1, 10.0
    e_in = np.unique(e_in)
    kappa = _spectra(rng, (3, 4, e_in.size - 1))
    # Non-aligned output edges, covering a sub-range.
    e_out = np.sort(rng.uniform(0.3, 7.0, 41))
    out = tr.rebin(kappa, e_in, e_out)
    assert out.shape == (3, 4, 40)
    # Reference: integral of the piecewise-constant input over each output bin via its CDF.
    cdf = np.concatenate([np.zeros((3, 4, 1)), np.cumsum(kappa * np.diff(e_in), -1)], -1)
    cum = np.stack([[np.interp(e_out, e_in, cdf[i, j]) for j in range(4)] for i in range(3)])
    np.testing.assert_allclose(out * np.diff(e_out), np.diff(cum, axis=-1), rtol=1e-10)
    # Full-range output: the total integral is conserved.
    e_full = np.concatenate([[0.1], np.sort(rng.uniform(0.1, 10.0, 29)), [10.0]])
    full = tr.rebin(kappa, e_in, e_full)
    np.testing.assert_allclose((full * np.diff(e_full)).sum(-1), (kappa * np.diff(e_in)).sum(-1),
                               rtol=1e-12)


def test_rebin_matrix_columns_partition_output_bins():
    e_in = grid.energy_edges_ev(300)
    e_out = np.geomspace(0.2, 9.0, 17)
    m = tr.rebin_matrix(e_in, e_out)
    assert m.shape == (300, 16) and m.dtype == np.float64
    np.testing.assert_allclose(m.sum(0), 1.0, rtol=1e-12)   # constant spectra stay constant


def test_rebin_aligned_equals_block_average():
    e_in = grid.energy_edges_ev(15000)
    e_out = grid.energy_edges_ev(200)
    rng = np.random.default_rng(2)
    kappa = _spectra(rng, (2, 15000))
    out = tr.rebin(kappa, e_in, e_out)
    w = np.diff(e_in).reshape(200, 75)
    block = (kappa.reshape(2, 200, 75) * w).sum(-1) / w.sum(-1)
    np.testing.assert_allclose(out, block, rtol=1e-12)
    out2 = tr.rebin_to_log_grid(kappa, e_in, 200)
    np.testing.assert_array_equal(out2, out)
    # Each output bin depends only on its own 75 input bins (aligned edges are bit-identical).
    m = tr.rebin_matrix(e_in, e_out)
    assert np.count_nonzero(m) == 15000


def test_rebin_dtypes_and_jax():
    e_in = grid.energy_edges_ev(600)
    e_out = grid.energy_edges_ev(40)
    rng = np.random.default_rng(3)
    kappa = _spectra(rng, (5, 600))
    ref = tr.rebin(kappa, e_in, e_out)
    out32 = tr.rebin(kappa.astype(np.float32), e_in, e_out)
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, ref, rtol=1e-5)
    jx = jax.jit(lambda k: tr.rebin(k, e_in, e_out))(jnp.asarray(kappa, jnp.float32))
    assert isinstance(jx, jax.Array) and jx.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(jx), ref, rtol=1e-5)
    with enable_x64():
        j64 = tr.rebin(jnp.asarray(kappa), e_in, e_out)
        assert j64.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(j64), ref, rtol=1e-13)


def test_rebin_bad_edges_raise():
    e_in = grid.energy_edges_ev(100)
    kappa = np.ones(100)
    with pytest.raises(ValueError, match=r"11\.0.*0\.1.*10\.0"):
        tr.rebin(kappa, e_in, np.array([1.0, 5.0, 11.0]))
    with pytest.raises(ValueError, match=r"0\.05"):
        tr.rebin(kappa, e_in, np.array([0.05, 5.0]))
    with pytest.raises(ValueError, match="increasing"):
        tr.rebin(kappa, e_in, np.array([1.0, 0.5, 2.0]))
    with pytest.raises(ValueError, match="bins"):
        tr.rebin(np.ones(99), e_in, np.array([1.0, 2.0]))


# ------------------------------------------------------------------------------- standardizer

def test_standardizer_roundtrip_and_checkpoint():
    rng = np.random.default_rng(4)
    x = rng.normal(5.0, 2.0, (6, 7, 3, 10)).astype(np.float32)
    x[..., 4] = 1.25                                        # constant feature: std floor
    s = tr.Standardizer(axis=(0, 1, 2)).fit(x)
    assert s.mean.shape == (10,) and s.std.shape == (10,)
    y = s.transform(x)
    assert y.dtype == np.float32 and np.all(np.isfinite(y))
    np.testing.assert_allclose(y.reshape(-1, 10).mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.delete(y.reshape(-1, 10).std(0), 4), 1.0, rtol=1e-5)
    np.testing.assert_allclose(s.inverse(y), x, rtol=1e-6, atol=2e-6)   # float32, |x| ~ 5
    # Other batch shapes broadcast against the trailing feature dims, also in jax.
    yj = jax.jit(s.transform)(jnp.asarray(x[0, 0]))
    np.testing.assert_allclose(np.asarray(yj), y[0, 0], rtol=1e-6)
    s2 = tr.Standardizer.from_dict(json.loads(json.dumps(s.to_dict())))
    np.testing.assert_array_equal(s2.transform(x), y)
    assert s2.axis == (0, 1, 2)
    scalar = tr.Standardizer(axis=None).fit(x)
    assert np.ndim(scalar.mean) == 0
    with pytest.raises(ValueError, match="leading"):
        tr.Standardizer(axis=-1).fit(x)
    with pytest.raises(ValueError, match="fit"):
        tr.Standardizer().transform(x)
