"""models/mlp.py: one MLP; the named variants keep the parameter trees their checkpoints have."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from opacity_jax.models.cae import CAE
from opacity_jax.models.mlp import FCNN, MLP, GaussianMLP, SmoothMLP


def _numpy_forward(params, x, act, n_hidden):
    """The network written out in numpy from its parameter tree (Dense_0 ... in order)."""
    p = params["params"]
    h = np.asarray(x, np.float64)
    for i in range(n_hidden):
        h = act(h @ np.asarray(p[f"Dense_{i}"]["kernel"]) + np.asarray(p[f"Dense_{i}"]["bias"]))
    head = lambda i: h @ np.asarray(p[f"Dense_{i}"]["kernel"]) + np.asarray(p[f"Dense_{i}"]["bias"])
    return head(n_hidden), (head(n_hidden + 1) if f"Dense_{n_hidden + 1}" in p else None)


relu = lambda a: np.maximum(a, 0.0)
silu = lambda a: a / (1.0 + np.exp(-a))
X = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)


@pytest.mark.parametrize("model, act, shapes", [
    (MLP(hidden=(8, 4), n_out=2), relu, [(3, 8), (8, 4), (4, 2)]),
    (FCNN(hidden=(6, 6)), relu, [(3, 6), (6, 6), (6, 1)]),
    (SmoothMLP(hidden=(7,), n_out=5), silu, [(3, 7), (7, 5)]),
    (GaussianMLP(hidden=(4, 4), n_out=2), silu, [(3, 4), (4, 4), (4, 2), (4, 2)]),
])
def test_parameter_tree_and_forward_pass(model, act, shapes):
    params = model.init(jax.random.key(1), jnp.asarray(X))
    kernels = [tuple(params["params"][f"Dense_{i}"]["kernel"].shape) for i in range(len(shapes))]
    assert kernels == shapes and len(params["params"]) == len(shapes)
    out = model.apply(params, jnp.asarray(X))
    mu, log_var = _numpy_forward(params, X, act, len(model.hidden))
    if isinstance(model, GaussianMLP):
        np.testing.assert_allclose(out[0], mu, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(out[1], np.clip(log_var, -16.0, 12.0), rtol=1e-4, atol=1e-5)
    elif isinstance(model, FCNN):
        assert out.shape == (5,)
        np.testing.assert_allclose(out, mu[:, 0], rtol=1e-4, atol=1e-5)
    else:
        np.testing.assert_allclose(out, mu, rtol=1e-4, atol=1e-5)


def test_dropout_only_in_training_and_bad_activation():
    m = MLP(hidden=(16,), n_out=1, dropout=0.5)
    p = m.init(jax.random.key(0), jnp.asarray(X))
    assert np.array_equal(m.apply(p, X), m.apply(p, X))
    a = m.apply(p, X, train=True, rngs={"dropout": jax.random.key(3)})
    assert not np.allclose(a, m.apply(p, X))
    with pytest.raises(ValueError, match="activation"):
        MLP(activation="tanh").init(jax.random.key(0), jnp.asarray(X))


def test_cae_meta_round_trip_and_old_workdirs():
    cae = CAE(n_bins=40, latent_dim=4, channels=(8, 16), kernel=3, strides=(2, 5))
    meta = cae.to_meta()
    assert meta == {"latent_dim": 4, "channels": [8, 16], "kernel": 3, "n_bins": 40,
                    "strides": [2, 5]}
    assert CAE.from_meta(meta) == cae
    old = {k: v for k, v in meta.items() if k != "strides"}   # model.json before 'strides'
    assert CAE.from_meta(old).strides == ()
