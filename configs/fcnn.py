"""Fully connected (E, T, rho) -> kappa network per element (thesis §2.3.2).

  bin/train --config=configs/fcnn.py --workdir=runs/fcnn             # 6 elements, minutes on CPU
  bin/train --config=configs/fcnn.py:cpu --workdir=runs/fcnn_cpu     # 28 elements, thesis net
  bin/train --config=configs/fcnn.py:paper --workdir=runs/fcnn_paper # thesis recipe
  bin/train --config=configs/fcnn.py --config.fcnn.ensemble=4 --workdir=runs/fcnn_ens
  bin/evaluate --workdir=runs/fcnn_ens      # + eval/ensemble_calibration.json, reliability plot

Thesis: 4 x 512 ReLU, Adam 1e-3, weight decay 1e-6, batch 8172, 5 epochs, WMSE.
The default shrinks the net to 4 x 256 and trains 6 elements so it runs in minutes on 2 cores.
"""

import ml_collections

from opacity_jax import config_files

_cae = config_files.sibling(__file__, "cae")


def get_config(arg=None):
    preset = arg or "default"
    if preset not in ("default", "cpu", "paper"):
        raise ValueError(f"unknown preset {preset!r}; choose default, cpu or paper")
    c = _cae.get_config(preset)
    c.model = "fcnn"
    del c.cae
    del c.latent
    c.fcnn = ml_collections.ConfigDict()
    c.fcnn.hidden = (256,) * 4 if preset == "default" else (512,) * 4
    c.fcnn.dropout = 0.0
    # Physics inputs next to (log10 E, log10 T, log10 rho): see configs/cae.py, latent section.
    c.fcnn.physics_features = False
    c.fcnn.physics_features_stages = 4
    # Deep ensemble: K members per element (own init and shuffles) trained in the same vmap'd
    # step; the Surrogate then serves mean +- std. Costs ~K x the compute of one member.
    c.fcnn.ensemble = 1
    c.train.epochs = {"default": 20, "cpu": 10, "paper": 5}[preset]
    c.train.batch_size = 8172
    c.train.learning_rate = 1e-3
    c.train.weight_decay = 1e-6
    c.train.patience = 0
    c.train.plateau_patience = {"default": 4, "cpu": 3, "paper": 0}[preset]
    c.train.checkpoint_every = 2
    c.train.max_seconds = {"default": 420.0, "cpu": 2700.0, "paper": 0.0}[preset]
    return c
