"""What the per-spectrum floor of 'log' targets does to the truth's Planck means.

    PYTHONPATH=. python3 reports/physics_features/floor_study.py > reports/physics_features/floor_study.txt

For floor depths D (decades below each spectrum's maximum, `transforms.relative_floor`), the
6-element default table (configs/cae.py data section) is floored and its band-limited Planck
means compared with those of the unfloored table, over every node: the error a model with
perfect floored targets would make. Rosseland means are not compared: the float32 table holds
exact zeros, whose harmonic mean is 0 without a floor.
"""

import jax.numpy as jnp
import numpy as np

from configs import cae
from opacity_jax import _compat
from opacity_jax.data import transforms
from opacity_jax.physics import planck
from opacity_jax.train import experiment


def main():
    ds = experiment.load_data(cae.get_config().data)
    k = ds.kappa.astype(np.float64)
    t = np.broadcast_to(ds.temperature_ev[None, :, None], k.shape[:3])
    with _compat.enable_x64():
        pm = lambda kk: np.asarray(planck.planck_mean(jnp.asarray(kk), ds.energy_edges_ev,
                                                      jnp.asarray(t)))
        ref = pm(k)
        ok = ref > 0
        print(f"{k.shape[0]} elements, {ok.sum()} of {ok.size} nodes with a positive Planck mean")
        print("D [decades] | floored bins | |dkP/kP| median | p95 | p99 | max")
        for d in (20.0, 30.0, 40.0, 45.0):
            kf = np.maximum(k, transforms.relative_floor(k, d))
            err = np.abs(pm(kf)[ok] / ref[ok] - 1.0)
            print(f"{d:4.0f} | {np.mean(kf > k):.3f} | {np.median(err):.2e} | "
                  f"{np.percentile(err, 95):.2e} | {np.percentile(err, 99):.2e} | {err.max():.2e}")


if __name__ == "__main__":
    main()
