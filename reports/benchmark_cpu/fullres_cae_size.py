"""Size of the full-resolution CAE (configs/cae_fullres.py): parameters and forward FLOPs.

    PYTHONPATH=. python3 reports/benchmark_cpu/fullres_cae_size.py > reports/benchmark_cpu/fullres_cae_size.json

Parameters per element from the initialised model; FLOPs per spectrum from XLA's
`cost_analysis()` of the compiled float32 forward pass (encoder + decoder) on one spectrum, the
same counter `bin/benchmark` uses; the dataset size is that of the float32 kappa array of the
full grid. No training, no data: runs in well under a minute on a CPU.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np

from configs import cae_fullres
from opacity_jax.data import grid
from opacity_jax.models.cae import CAE


def _flops(compiled):
    ca = compiled.cost_analysis()
    if isinstance(ca, (list, tuple)):     # older jax: one dict per computation
        ca = ca[0] if ca else {}
    return float(ca["flops"]) if ca and "flops" in ca else None


def main():
    c = cae_fullres.get_config()
    n_bins = int(c.data.n_energy)
    model = CAE.from_meta({**c.cae.to_dict(), "n_bins": n_bins})
    x = jnp.zeros((1, n_bins), jnp.float32)
    params = model.init(jax.random.PRNGKey(0), x)
    n_params = int(sum(np.size(p) for p in jax.tree_util.tree_leaves(params)))
    compiled = jax.jit(lambda p, x: model.apply(p, x)).lower(params, x).compile()
    n_nodes = len(grid.DEFAULT_ELEMENTS) * grid.N_TEMPERATURES * grid.N_DENSITIES
    out = {
        "config": "configs/cae_fullres.py (default preset)",
        "n_bins": n_bins,
        "channels": list(c.cae.channels), "strides": list(c.cae.strides),
        "kernel": int(c.cae.kernel), "latent_dim": int(c.cae.latent_dim),
        "parameters_per_element": n_params,
        "forward_flops_per_spectrum": _flops(compiled),
        "grid_spectra": n_nodes,
        "dataset_kappa_float32_bytes": n_nodes * n_bins * 4,
        "jax": jax.__version__,
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
