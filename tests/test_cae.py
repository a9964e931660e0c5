"""CAE shapes, the strided full-resolution option (15000 bins) and one training step on CPU."""

import importlib.util
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from opacity_jax.models.cae import CAE, activation_dtype
from opacity_jax.train import experiment, loop
from opacity_jax.train.task import pack_ragged

ROOT = Path(__file__).resolve().parents[1]


def _fullres_config(arg=None):
    spec = importlib.util.spec_from_file_location("cae_fullres", ROOT / "configs/cae_fullres.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config(arg)


def _model(c, n_bins=None):
    return CAE(n_bins=n_bins or int(c.data.n_energy), latent_dim=int(c.cae.latent_dim),
               channels=tuple(c.cae.channels), kernel=int(c.cae.kernel),
               strides=tuple(c.cae.strides), dtype=activation_dtype(c.cae.dtype))


def _init(model, n_bins):
    # jit: eager flax init compiles every initializer op on its own (slow on a busy CPU).
    return jax.jit(model.init)(jax.random.key(0), jnp.zeros((2, n_bins)))


def test_default_cae_is_unchanged_by_the_stride_option():
    p = _init(CAE(), 200)["params"]
    assert p["to_latent"]["kernel"].shape == (3200, 16)
    assert p["dec_2"]["kernel"].shape == (5, 32, 1)
    same = _init(CAE(strides=(2, 2, 2)), 200)["params"]
    jax.tree_util.tree_map(np.testing.assert_array_equal, p, same)
    with pytest.raises(ValueError, match="strides"):
        CAE(strides=(2, 2)).init(jax.random.key(0), jnp.zeros((1, 200)))
    with pytest.raises(ValueError, match="divisible"):
        CAE(n_bins=202).init(jax.random.key(0), jnp.zeros((1, 202)))
    with pytest.raises(ValueError, match="cae.dtype"):
        activation_dtype("float16")


def test_fullres_cae_one_vmapped_step_on_two_elements():
    c = _fullres_config()
    n = int(c.data.n_energy)
    assert n >= 14900 and n % math.prod(c.cae.strides) == 0
    model = _model(c)
    rng = np.random.default_rng(0)
    data = pack_ragged([{"x": np.abs(rng.normal(size=(3, n))).astype(np.float32)}
                        for _ in range(2)])                              # 2 elements
    tr = loop.Trainer(experiment.cae_task(model, "wmse", 50.0),
                      loop.LoopConfig(batch_size=2, epochs=1))
    state = tr.init(data)
    # The flattened code stays small: 128 channels x 20 positions.
    assert state["params"]["params"]["to_latent"]["kernel"].shape == (2, 2560, 16)
    state, loss = tr.run_epoch(state, data, {k: jnp.asarray(v) for k, v in data.arrays.items()},
                               0)
    assert loss.shape == (2,) and np.all(np.isfinite(loss))
    assert np.all(state["step"] == 2)
    p0 = jax.tree_util.tree_map(lambda a: a[0], state["params"])
    x0 = jnp.asarray(data.arrays["x"][0])
    assert jax.jit(model.apply)(p0, x0).shape == (3, n)
    assert jax.jit(lambda p, x: model.apply(p, x, method=model.encode))(p0, x0).shape == (3, 16)


def test_fullres_bf16_preset_computes_in_bf16_and_returns_float32():
    c = _fullres_config("bf16")
    model = _model(c, n_bins=1500)     # same strides, a tenth of the length: cheap on CPU
    x = jnp.ones((2, 1500))
    p = _init(model, 1500)
    assert jax.tree_util.tree_leaves(p)[0].dtype == jnp.float32      # float32 parameters
    y = jax.jit(model.apply)(p, x)
    assert y.dtype == jnp.float32 and y.shape == (2, 1500)
    y32 = jax.jit(_model(_fullres_config(), n_bins=1500).apply)(p, x)
    np.testing.assert_allclose(y, y32, rtol=0.1, atol=0.05 * float(jnp.abs(y32).max()))
    assert not np.array_equal(np.asarray(y), np.asarray(y32))       # really computed in bf16
