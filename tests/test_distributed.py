"""Multi-device training and inference on 8 forced host devices equal single-device results."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from opacity_jax import distributed

ROOT = Path(__file__).resolve().parents[1]

# Runs in a fresh interpreter: XLA_FLAGS must be set before jax is first imported.
SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from opacity_jax import distributed
    from opacity_jax.models.cae import CAE
    from opacity_jax.surrogate import Surrogate
    from opacity_jax.train import experiment, loop
    from opacity_jax.train.task import pack_ragged

    out = {"devices": jax.device_count()}
    rng = np.random.default_rng(0)
    ys = [rng.normal(size=(int(rng.integers(12, 20)), 16)).astype(np.float32) for _ in range(4)]
    tr = pack_ragged([{"x": y} for y in ys])
    va = pack_ragged([{"x": y[:6]} for y in ys])
    task = experiment.cae_task(CAE(n_bins=16, latent_dim=2, channels=(4, 4), kernel=3),
                               "wmse", 50.0)
    cfg = loop.LoopConfig(epochs=2, batch_size=4, learning_rate=1e-2)
    single = loop.train(task, tr, va, cfg, progress=False)
    mesh = distributed.training_mesh(4, cfg.batch_size)
    out["mesh"] = dict(mesh.shape)
    sharded = loop.train(task, tr, va, cfg, progress=False,
                         trainer=distributed.ShardedTrainer(task, cfg, mesh))
    diffs = jax.tree_util.tree_map(lambda a, b: float(np.max(np.abs(np.asarray(a) - b))),
                                   single.last_params, sharded.last_params)
    out["train_param_diff"] = max(jax.tree_util.tree_leaves(diffs))
    out["val_diff"] = float(np.max(np.abs(single.best_val - sharded.best_val)))
    leaf = jax.tree_util.tree_leaves(sharded.last_params)[0]
    out["param_spec0"] = leaf.sharding.spec[0]

    s = Surrogate.load(sys.argv[1], regressor="xgboost")
    pipe = s.device_pipeline()
    infer = distributed.ShardedInference(pipe)
    t = np.geomspace(0.05, 0.5, 13)
    r = np.geomspace(1e-13, 1e-11, 13)
    a, b = pipe("U", t, r), infer("U", t, r)
    out["infer_rel_diff"] = {k: float(np.max(np.abs(a[k] - b[k])) / np.abs(a[k]).max())
                             for k in a}
    out["infer_shape"] = list(b["kappa"].shape)
    print("RESULT " + json.dumps(out))
""")


def test_sharded_training_and_inference_equal_single_device(tiny_workdir):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
               JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tiny_workdir)], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    out = json.loads(line[len("RESULT "):])
    assert out["devices"] == 8
    assert out["mesh"] == {"entity": 4, "data": 2}
    assert out["param_spec0"] == "entity"
    assert out["train_param_diff"] < 1e-5 and out["val_diff"] < 1e-4
    assert out["infer_shape"] == [13, 48]
    assert max(out["infer_rel_diff"].values()) < 1e-6


def test_mesh_shape_and_single_process_initialize():
    assert distributed.mesh_shape(28, 64, 8) == (4, 2)
    assert distributed.mesh_shape(4, 4, 8) == (4, 2)
    assert distributed.mesh_shape(7, 64, 8) == (1, 8)
    assert distributed.mesh_shape(3, 5, 8) == (1, 1)
    info = distributed.initialize(False)
    assert info["process_count"] == 1 and info["global_devices"] >= 1
