"""The table lookup's JAX and numpy bilinear interpolations agree, and equal hand values."""

import jax
import numpy as np

from opacity_jax.models import baselines


def test_bilinear_2x2_hand_value_numpy_and_jax():
    # 2x2 table of ln kappa on x in {0, 2}, y in {0, 4}; query (0.5, 1): u = 1/4, w = 1/4.
    lk = np.array([[[1.0], [3.0]], [[5.0], [9.0]]])
    hand = (0.75 * 0.75 * 1.0 + 0.25 * 0.75 * 5.0 + 0.75 * 0.25 * 3.0 + 0.25 * 0.25 * 9.0)
    assert hand == 2.625
    x, y = np.array([0.0, 2.0]), np.array([0.0, 4.0])
    qx, qy = np.array([0.5, 3.0]), np.array([1.0, 4.0])     # second query clamps to (2, 4)
    ref = np.log(baselines.bilinear_points(np.exp(lk), x, y, qx, qy, outside="clamp"))
    got = np.asarray(jax.jit(baselines.bilinear_points_jax)(lk.astype(np.float32), x, y, qx, qy))
    np.testing.assert_allclose(ref[:, 0], [hand, 9.0], rtol=1e-12)
    np.testing.assert_allclose(got[:, 0], [hand, 9.0], rtol=1e-6)


def test_bilinear_jax_equals_numpy_random_table():
    rng = np.random.default_rng(0)
    x, y = np.sort(rng.uniform(0, 1, 7)), np.sort(rng.uniform(-5, 0, 5))
    lk = rng.normal(size=(7, 5, 3))
    qx, qy = rng.uniform(x[0], x[-1], 50), rng.uniform(y[0], y[-1], 50)
    ref = np.log(baselines.bilinear_points(np.exp(lk), x, y, qx, qy))
    got = np.asarray(jax.jit(baselines.bilinear_points_jax)(lk.astype(np.float32), x, y, qx, qy))
    np.testing.assert_allclose(got, ref, atol=2e-5)
