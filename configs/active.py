"""Active learning vs random sampling against the embedded LTE generator (opacity_jax.active).

  bin/active_learn --config=configs/active.py --workdir=runs/active          # ~5-10 min, 2 cores
  bin/active_learn --config=configs/active.py:quick --workdir=runs/active_q  # ~1 min smoke run
  bin/active_learn --config=configs/active.py:large --workdir=runs/active_l  # 200 bins, 3 elements

Per element: start from `n_initial` random (T, rho) nodes of the 27 x 17 NIST-LANL grid, then
`rounds` x (train a K-member MLP ensemble, query the generator at the `k` candidates with the
largest ensemble disagreement). The random strategy uses the same initial nodes, test nodes and
training seeds. Writes active_learning.json and active_vs_random.png to the workdir.
"""

import ml_collections


def get_config(arg=None):
    preset = arg or "default"
    if preset not in ("default", "quick", "large"):
        raise ValueError(f"unknown preset {preset!r}; choose default, quick or large")
    c = ml_collections.ConfigDict()
    c.preset = preset
    c.seed = 0                       # first of the seeds below (all runs share the sequence)
    c.n_seeds = {"default": 3, "quick": 1, "large": 3}[preset]
    c.elements = {"default": "Nd,U", "quick": "Nd", "large": "Nd,Er,U"}[preset]
    c.n_energy = {"default": 40, "quick": 40, "large": 200}[preset]
    c.log_eps = 1e-10
    c.n_initial = 16
    c.rounds = {"default": 12, "quick": 2, "large": 12}[preset]
    c.k = 4
    c.diversity_radius = 1           # skip grid neighbours of a node picked in the same batch
    c.test_fraction = 0.25
    c.members = {"default": 5, "quick": 3, "large": 5}[preset]
    c.hidden = (64, 64, 64)
    c.train = ml_collections.ConfigDict()
    c.train.epochs = {"default": 400, "quick": 200, "large": 600}[preset]
    c.train.batch_size = 512
    c.train.learning_rate = 3e-3
    c.train.plateau_patience = 10
    c.train.plateau_factor = 0.5
    c.train.eval_every = 10
    c.train.checkpoint_every = 100000
    return c
