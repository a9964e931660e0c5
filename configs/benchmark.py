"""Benchmark settings (opacity_jax.benchmark): inference sweep, training throughput, torch.

  bin/benchmark --config=configs/benchmark.py --output_dir=reports/benchmark_cpu     # <= 2 min, CPU
  bin/benchmark --config=configs/benchmark.py:gpu --output_dir=reports/benchmark_gpu
  bin/benchmark --config=configs/benchmark.py:gpu --config.workdir=runs/cae ...   # trained model
  bin/benchmark --config=configs/benchmark.py:fullres --output_dir=reports/benchmark_fullres
  bin/benchmark --config=configs/benchmark.py --config.stage_basis_workdir=runs/sb ...  # + stage basis

Presets: default = a short CPU run (small batch sweep, 6 elements for training); `gpu` = the full
sweep (batches to 2^18, 28 elements, torch reference when installed); `fullres` = `gpu` with the
15000-bin architecture of configs/cae_fullres.py. Without `workdir` the timed model has random
weights of the `model` architecture (throughput does not depend on the weights).
"""

import ml_collections


def get_config(arg=None):
    preset = arg or "default"
    if preset not in ("default", "gpu", "fullres"):
        raise ValueError(f"unknown preset {preset!r}; choose default, gpu or fullres")
    big = preset != "default"
    c = ml_collections.ConfigDict()
    c.preset = preset
    c.workdir = ""                       # trained workdir; empty = random weights of `model`
    c.stage_basis_workdir = ""           # also time a trained stage_basis model (its first element)
    c.stage_basis_fast_points_per_interval = 64   # + its tabulated fast path (0 = off)
    c.matmul_precision = ""              # "" = jax default; or "highest", "high", "bfloat16"

    c.model = ml_collections.ConfigDict()
    c.model.n_elements = 28
    c.model.n_bins = 15000 if preset == "fullres" else 200
    c.model.latent_dim = 16
    c.model.channels = (16, 32, 64, 128, 128) if preset == "fullres" else (32, 64, 128)
    c.model.strides = (5, 5, 5, 3, 2) if preset == "fullres" else ()
    c.model.kernel = 5
    c.model.mlp_hidden = (64, 64)
    c.model.n_thresholds = (26, 16)      # NIST-LANL grid: 27 T x 17 rho nodes

    c.inference = ml_collections.ConfigDict()
    c.inference.enabled = True
    c.inference.regressors = ("mlp", "xgboost")
    c.inference.dtypes = ("float32", "bfloat16")
    c.inference.batch_sizes = {"default": (1, 64, 1024),
                               "gpu": (1, 64, 1024, 16384, 262144),
                               "fullres": (1, 64, 1024, 8192)}[preset]
    c.inference.n_runs = 30 if big else 10
    c.inference.warmup = 3 if big else 2
    c.inference.gemm_reference = True      # also time an n^3 matmul as a practical peak
    c.inference.gemm_size = 4096 if big else 1024

    c.training = ml_collections.ConfigDict()
    c.training.enabled = True
    c.training.n_elements = 28 if big else 6
    c.training.n_samples = 368            # ~80 % of the 27 x 17 grid: a training split
    c.training.batch_size = 256 if big else 64
    c.training.epochs = 5 if big else 2
    c.training.torch = "auto"            # "auto" (when importable), "on" (required), "off"
    c.training.torch_threads = 0         # torch CPU threads, 0 = torch default (GPU: unused)
    return c
