"""Full-resolution CAE: 15000-bin spectra (>= 14,900 points), all 28 elements. A GPU job.

  OPACITY_JAX_CACHE=data_cache bin/train --config=configs/cae_fullres.py --workdir=runs/fullres
  OPACITY_JAX_CACHE=data_cache bin/train --config=configs/cae_fullres.py:bf16 --workdir=runs/fr16
  bin/evaluate --workdir=runs/fullres

Data: generated on the machine that trains (the 1 GB file is not worth copying): the first call
runs the embedded generator at 15000 bins (~2.5 min, numpy on the CPU cores, 8 GB peak memory)
and caches it under $OPACITY_JAX_CACHE (`data_cache/` is git-ignored, so it survives between
calls on a kept machine); `bin/make_dataset --n_energy=15000 --output=...` plus
`--config.data.path=...` does the same explicitly.

Resumable: each call trains the CAE for at most `train.max_seconds` (420 s, so a call fits a
10-minute slot with data loading and the latent fits), checkpoints, then fits the XGBoost latent
regressors on the current CAE. Repeat the same command until `model.json`'s train_summary shows
the CAE stopped early (per-element patience 200) or reached `train.epochs`; time per epoch and
epochs-to-stop are in `metrics/cae.jsonl` and the checkpoint history. Only XGBoost is used
because it is refit from scratch every call; a latent MLP resumed from its own finished
checkpoint would be stale after the CAE trained on.

Architecture / memory strategy: a deeper, more strided encoder (channels 16-32-64-128-128,
strides 5-5-5-3-2, kernel 5) takes 15000 bins to 128 x 20 = 2560 features (the default CAE's
three stride-2 stages would leave 128 x 1875 = 240,000, i.e. two 3.8 M-parameter Dense layers
per element); 0.36 M parameters per element, 25 MFLOP per spectrum forward (XLA cost analysis).
The widest activation (16 x 3000 after the first stage) is 3.2x the input: 1.4 GB for a step on
28 elements x 256 spectra in float32, a few GB per step in all, so the whole 0.8 GB dataset and
the step stay on one GPU and no streaming is needed. `:bf16` computes activations in bfloat16
(float32 parameters and loss), halving activation memory and using the bf16 tensor cores.
"""

from opacity_jax import config_files

_cae = config_files.sibling(__file__, "cae")


def get_config(arg=None):
    preset = arg or "default"
    if preset not in ("default", "bf16"):
        raise ValueError(f"unknown preset {preset!r}; choose default or bf16")
    c = _cae.get_config("paper")
    c.preset = f"fullres_{preset}"
    c.data.path = ""                       # embedded generator, cached at 15000 bins
    c.data.elements = ""                   # all 28
    c.data.n_energy = 15000
    c.cae.channels = (16, 32, 64, 128, 128)
    c.cae.strides = (5, 5, 5, 3, 2)
    c.cae.kernel = 5
    c.cae.dtype = "bfloat16" if preset == "bf16" else "float32"
    c.train.batch_size = 256
    c.train.max_seconds = 420.0           # per call; rerun the command to resume
    c.train.checkpoint_every = 50
    c.latent.regressor = "xgboost"
    return c
