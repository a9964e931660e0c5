"""bin/ entry points: dispatch on model.json, one-line errors, config files by name."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from opacity_jax import config_files
from opacity_jax.experiments import registry, spectra
from opacity_jax.train import loop

ROOT = Path(__file__).resolve().parents[1]


def _bin(name, *args):
    return subprocess.run([sys.executable, str(ROOT / "bin" / name), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))


def test_registry_picks_the_family_and_names_the_allowed_ones(tiny_workdir):
    assert registry.family_of_workdir(tiny_workdir) is spectra
    with pytest.raises(ValueError, match="'classifier'.*'xsec_pinn'"):
        registry.family("nope")


def test_every_registered_family_has_the_verbs():
    for name in registry.names():
        fam = registry.family(name)
        assert all(callable(getattr(fam, v, None)) for v in ("train", "load", "evaluate",
                                                              "report")), name


def test_bin_evaluate_dispatches_on_model_json(tiny_workdir):
    out = _bin("evaluate", f"--workdir={tiny_workdir}", "--nofigures")
    assert out.returncode == 0, out.stderr
    m = json.loads((tiny_workdir / "eval" / "metrics.json").read_text())
    assert out.stdout.startswith(f"{m['n_test_spectra']} held-out spectra")
    assert "cae+mlp" in out.stdout


def test_bin_errors_are_one_line(tmp_path):
    for name in ("evaluate", "evaluate_xsec", "evaluate_classifier"):
        out = _bin(name, f"--workdir={tmp_path}")
        assert out.returncode == 1
        assert out.stderr.strip().splitlines() == [
            f"bin/{name.split('_')[0]}: {tmp_path / 'model.json'} not found: not a trained "
            f"workdir (run bin/train)"]


def test_train_section_is_loop_config_defaults_plus_overrides():
    sec = config_files.train_section(epochs=7, learning_rate=3e-4)
    lc = loop.LoopConfig.from_config(sec, seed=11)
    assert (lc.epochs, lc.learning_rate, lc.seed) == (7, 3e-4, 11)   # seed: the config's
    assert lc.batch_size == loop.LoopConfig().batch_size
    with pytest.raises(ValueError, match="epoch"):
        config_files.train_section(epoch=3)


def test_sibling_configs_load_by_name():
    fcnn = config_files.load("fcnn", "cpu")
    assert fcnn.model == "fcnn" and fcnn.data.elements == config_files.load("cae", "cpu").data.elements
