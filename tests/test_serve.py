"""The serving package loads without the trainer.

Run in a fresh interpreter: pytest itself (and other tests) import training modules, so this
process's sys.modules says nothing about what the serving API pulls in.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TRAINING = ["opacity_jax.train.loop", "opacity_jax.train.experiment",
            "opacity_jax.train.physics_hooks", "opacity_jax.train.task", "opacity_jax.distributed",
            "opacity_jax.experiments.registry", "opacity_jax.experiments.spectra",
            "opacity_jax.experiments.inverse", "opacity_jax.experiments.xsec",
            "opacity_jax.experiments.ensemble", "opacity_jax.experiments.completion",
            "opacity_jax.experiments.active", "opacity_jax.experiments.ablation"]

PROBE = """
import json, sys
import opacity_jax.serve
from opacity_jax.serve import DevicePipeline, InverseModel, Surrogate, XsecSurrogate
from opacity_jax.serve import export, predict, trees
print(json.dumps(sorted(m for m in sys.modules if m.startswith("opacity_jax"))))
"""


def _loaded(code):
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_serving_api_does_not_import_the_trainer():
    loaded = _loaded(PROBE)
    assert "opacity_jax.serve.surrogate" in loaded   # the probe did load the API
    assert not sorted(set(TRAINING) & set(loaded)), sorted(set(TRAINING) & set(loaded))


def test_old_import_paths_are_the_moved_modules():
    loaded = _loaded("""
import json, sys
import opacity_jax.surrogate, opacity_jax.serve.surrogate
from opacity_jax import pipeline, trees, export, predict
from opacity_jax.inverse import InverseModel
from opacity_jax.serve.inverse import InverseModel as Served
assert opacity_jax.surrogate is opacity_jax.serve.surrogate
assert opacity_jax.surrogate.Surrogate is opacity_jax.serve.Surrogate
assert pipeline is sys.modules["opacity_jax.serve.pipeline"]
assert InverseModel is Served
print(json.dumps(sorted(sys.modules)))
""")
    assert "opacity_jax.models.trees" in loaded and "opacity_jax.serve.export" in loaded
