"""One cheap real invocation of every bin/ script, as a user runs it (a subprocess).

Scripts whose real run takes minutes (ablation, active_learn, xsec_report) are run with a bad
flag: the one-line error naming the allowed values, before any work and with no folder left;
so is bin/dataset_report (~40 s) in CI. bin/evaluate runs for real in tests/test_cli.py, which
also runs the error paths of its aliases bin/evaluate_classifier and bin/evaluate_xsec. Marked
slow: real runs of bin/dataset_report, bin/evaluate_classifier and bin/train + bin/evaluate_xsec
on a cross-section table. The trained workdirs come from tests/conftest.py (`tiny_workdir`) or
from bin/train here (`fcnn_bin_workdir`).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from opacity_jax.data import generator, grid, io
from opacity_jax.surrogate import Surrogate

ROOT = Path(__file__).resolve().parents[1]


def run_bin(name, *args, timeout=300):
    """(returncode, stdout, stderr) of bin/<name> args, run from the repository root.

    The scripts share the session's persistent compilation cache (tests/conftest.py), so the
    same computation is compiled once for this process and every script."""
    import jax
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cache = jax.config.jax_compilation_cache_dir
    if cache:
        env.update(JAX_COMPILATION_CACHE_DIR=cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                   JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    out = subprocess.run([sys.executable, str(ROOT / "bin" / name), *map(str, args)], cwd=ROOT,
                         capture_output=True, text=True, timeout=timeout, env=env)
    return out.returncode, out.stdout, out.stderr


@pytest.fixture(scope="module")
def la_dataset(tmp_path_factory):
    """bin/make_dataset's file for lanthanum on 16 bins (the full 27 T x 17 rho grid)."""
    path = tmp_path_factory.mktemp("bin_data") / "la.h5"
    rc, out, err = run_bin("make_dataset", f"--output={path}", "--elements=La", "--n_energy=16",
                           "--line_cap=500")
    assert rc == 0, err
    return path


def test_make_dataset_writes_the_generator_spectra(la_dataset):
    ds = io.load_dataset(la_dataset)
    assert ds.elements.tolist() == [57]
    assert ds.kappa.shape == (1, grid.N_TEMPERATURES, grid.N_DENSITIES, 16)
    # The same spectra from the generator in this process, at two nodes.
    gen = generator.OpacityGenerator(generator.GeneratorConfig(seed=0, line_cap=500))
    for it, ir in ((3, 2), (20, 11)):
        want = gen.spectra(57, ds.temperature_ev[it], ds.density_gcc[ir],
                           grid.energy_edges_ev(16))["kappa"][0]
        np.testing.assert_allclose(ds.kappa[0, it, ir], want, rtol=1e-6, atol=1e-30)


@pytest.fixture(scope="module")
def fcnn_bin_workdir(la_dataset):
    """bin/train of a one-epoch FC-NN on the lanthanum file."""
    wd = la_dataset.parent / "fcnn"
    rc, out, err = run_bin("train", "--config=configs/fcnn.py", f"--workdir={wd}",
                           f"--config.data.path={la_dataset}", "--config.data.elements=",
                           "--config.data.n_energy=16", "--config.fcnn.hidden=(8,)",
                           "--config.train.epochs=1", "--config.train.max_seconds=0",
                           "--noprogress")
    assert rc == 0, err
    return wd, out


def test_train_writes_a_loadable_workdir(fcnn_bin_workdir):
    wd, out = fcnn_bin_workdir
    meta = json.loads((wd / "model.json").read_text())
    assert meta["model"] == "fcnn" and meta["elements"] == [57]
    assert json.loads((wd / "config.json").read_text())["train"]["epochs"] == 1
    records = [json.loads(x) for x in (wd / "metrics" / "fcnn.jsonl").read_text().splitlines()]
    assert len(records) == 1 and records[0]["val_loss_mean"] > 0     # one epoch, logged once
    assert "'epochs_run': 1" in out                                  # the printed summary
    k = Surrogate.load(wd).spectrum("La", 0.5, 1e-10)
    assert k.shape == (1, 16) and np.all(k >= 0)


@pytest.mark.slow
def test_evaluate_classifier_alias_runs_bin_evaluate(fcnn_bin_workdir):
    # The alias reads the family from model.json like bin/evaluate (here an FC-NN); in CI its
    # error path runs in tests/test_cli.py.
    wd, _ = fcnn_bin_workdir
    rc, out, err = run_bin("evaluate_classifier", f"--workdir={wd}", "--nofigures")
    assert rc == 0, err
    m = json.loads((wd / "eval" / "metrics.json").read_text())
    n_test = len(json.loads((wd / "model.json").read_text())["split"]["test"])
    assert m["n_test_spectra"] == n_test
    assert out.startswith(f"{n_test} held-out spectra")


def test_predict_writes_the_surrogate_values(tiny_workdir, tmp_path):
    path = tmp_path / "nd.txt"
    rc, out, err = run_bin("predict", f"--workdir={tiny_workdir}", "--element=Nd",
                           "--temperature_ev=0.3,0.5", "--density=1e-12,1e-11",
                           f"--output={path}")
    assert rc == 0, err
    assert out.strip() == f"wrote {path}"
    rows = np.loadtxt(path, comments="#")
    s = Surrogate.load(tiny_workdir)
    want = s.spectrum("Nd", [0.3, 0.5], [1e-12, 1e-11])
    np.testing.assert_allclose(rows[:48, 0], s.energy_ev, rtol=1e-6)
    np.testing.assert_allclose(rows[:, 1].reshape(2, 48), want, rtol=1e-5, atol=1e-30)
    assert path.read_text().count("# element = Nd") == 2


def test_export_writes_an_hdf5_table_of_the_surrogate(tiny_workdir, tmp_path):
    prefix = tmp_path / "tab"
    rc, out, err = run_bin("export", f"--workdir={tiny_workdir}", "--elements=U",
                           "--temperature_ev=0.3,0.5", "--density=1e-12", "--format=hdf5",
                           f"--output={prefix}")
    assert rc == 0, err
    assert f"wrote {prefix}.h5" in out.splitlines() and not Path(f"{prefix}.txt").exists()
    s = Surrogate.load(tiny_workdir)
    with h5py.File(f"{prefix}.h5", "r") as f:
        assert list(f["elements"][()]) == [92]
        kappa = f["U"]["kappa"][()]
        kp = f["U"]["planck_mean"][()]
    want = s.spectrum("U", [0.3, 0.5], [1e-12, 1e-12])
    np.testing.assert_allclose(kappa.reshape(2, 48), want, rtol=1e-5, atol=1e-30)
    np.testing.assert_allclose(kp.ravel(), s.planck_mean("U", [0.3, 0.5], [1e-12, 1e-12]),
                               rtol=1e-5)


def test_train_ensemble_adds_members(tiny_workdir, tmp_path):
    wd = tmp_path / "run"
    shutil.copytree(tiny_workdir, wd)
    rc, out, err = run_bin("train_ensemble", f"--workdir={wd}", "--members=2", "--epochs=1",
                           "--noprogress")
    assert rc == 0, err
    meta = json.loads((wd / "model.json").read_text())
    assert meta["ensemble"]["members"] == 2
    km = Surrogate.load(wd, ensemble=True).spectrum_members("Nd", [0.3], [1e-12])
    assert km.shape == (2, 1, 48) and np.max(np.abs(km[0] - km[1])) > 0
    assert not (wd / ".lock").exists()


def test_benchmark_writes_json_and_markdown(tmp_path):
    out_dir = tmp_path / "bench"
    over = ["model.n_elements=2", "model.n_bins=16", "model.channels=(4,8)",
            "model.latent_dim=4", "model.mlp_hidden=(8,)", "model.n_thresholds=(5,3)",
            "inference.batch_sizes=(4,)", "inference.regressors=('xgboost',)",
            "inference.dtypes=('float32',)", "inference.n_runs=2", "inference.warmup=1",
            "inference.gemm_size=32", "training.n_elements=2", "training.n_samples=12",
            "training.batch_size=8", "training.epochs=1", "training.torch=off",
            # The timed sweeps themselves are tests/test_benchmark.py's; here the script's
            # wiring: config file + overrides -> the module -> files.
            "training.enabled=False", "inference.gemm_reference=False"]
    rc, out, err = run_bin("benchmark", "--config=configs/benchmark.py",
                           f"--output_dir={out_dir}", *[f"--config.{o}" for o in over])
    assert rc == 0, err
    assert out.strip().splitlines()[-1] == f"wrote {out_dir}/benchmark.json and benchmark.md"
    res = json.loads((out_dir / "benchmark.json").read_text())
    assert res["environment"]["command"].endswith(
        "bin/benchmark --config=configs/benchmark.py --output_dir=" + str(out_dir) + " "
        + " ".join(f"--config.{o}" for o in over))
    # The overrides reached the module: one dtype, one batch size, the two models, no training.
    assert {(r["model"], r["dtype"], r["batch"]) for r in res["inference"]} == {
        ("decoder", "float32", 4), ("pipeline_xgboost", "float32", 4)}
    assert all(r["runs"] == 2 and r["spectra_per_s"] > 0 for r in res["inference"])
    assert "training" not in res or not res["training"]
    assert "| model | dtype | batch |" in (out_dir / "benchmark.md").read_text()


def test_dataset_report_refuses_an_element_outside_the_grid(tmp_path):
    rc, out, err = run_bin("dataset_report", "--element=H", f"--output_dir={tmp_path / 'r'}")
    assert rc == 1 and err.strip().splitlines() == [
        "bin/dataset_report: unknown element 'H': expected one of Z = 57-71, 89-103 or symbols "
        + ", ".join(["La", "Ce", "Pr", "Nd", "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er",
                     "Tm", "Yb", "Lu", "Ac", "Th", "Pa", "U", "Np", "Pu", "Am", "Cm", "Bk",
                     "Cf", "Es", "Fm", "Md", "No", "Lr"])]
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_dataset_report_writes_the_report(tmp_path):
    # ~40 s on 2 busy cores: every element's Saha corners, the element's grid at 200 bins and
    # its binning bias against 15000 native bins.
    rc, out, err = run_bin("dataset_report", "--element=La", "--density=1e-13",
                           f"--output_dir={tmp_path}")
    assert rc == 0, err
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["element"] == "La" and len(rep["per_temperature"]) == grid.N_TEMPERATURES
    c = rep["zbar_corners"]["La"]
    # Saha: neutral at 0.01 eV (first ionisation 5.58 eV, e^-558), more ionised when hotter
    # and, at 5 eV, at lower density.
    assert c["T0.01_rho1e-20"] < 1e-6 and c["T0.01_rho1e-4"] < 1e-6
    assert c["T5_rho1e-20"] > c["T5_rho1e-4"] > 1.0


@pytest.mark.parametrize("name,args,message,folder", [
    ("ablation", ["--parts=bogus"], "--parts: unknown ['bogus']; allowed: classifier, forward",
     "abl"),
    ("active_learn", ["--config.rounds=0"], "active.rounds = 0 is out of range (allowed: >= 1)",
     "al"),
    ("xsec_report", ["--splits=bogus"], "splits: unknown ['bogus']; allowed: levels, "
     "wavelength_windows, v_levels", "xr"),
    ("complete", ["--input=no_such_table.txt"], "no such table: no_such_table.txt", "c"),
    ("train", ["--config=configs/fcnn.py", "--config.no_such_field=1"],
     "cannot apply the config overrides ['--config.no_such_field']", "tr"),
])
def test_heavy_scripts_refuse_bad_flags_before_any_work(name, args, message, folder, tmp_path):
    out_flag = {"ablation": "--workdir", "active_learn": "--workdir", "xsec_report": "--out",
                "complete": "--output", "train": "--workdir"}[name]
    rc, out, err = run_bin(name, f"{out_flag}={tmp_path / folder}", *args, timeout=60)
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"bin/{name}: ") and message in lines[0], err
    assert not (tmp_path / folder).exists()


def test_complete_help_lists_its_flags():
    rc, out, err = run_bin("complete", "--helpshort")
    text = out + err                              # absl prints the help and exits with 1
    assert "Traceback" not in text and "Complete a gridded opacity table" in text
    for flag in ("--input", "--output", "--mask", "--evaluate"):
        assert flag in text


@pytest.mark.slow
def test_train_and_evaluate_xsec_on_a_tiny_table(tmp_path):
    # bin/train + the bin/evaluate_xsec alias on a synthetic two-molecule table in which every
    # point lies above eval.threshold (sigma within a factor 3 of its curve's maximum).
    import pandas as pd
    from opacity_jax.data import xsec_generator as xg
    lam = np.linspace(50.0, 100.0, 12)
    frames = [pd.DataFrame({"molecule": name, "v": np.int32(v), "J": np.int32(j),
                            "E_vJ_hartree": -0.1 + 0.02 * v + 0.001 * j * (j + 1),
                            "wavelength_nm": lam,
                            "sigma_cm2": 1e-18 * (1 + 0.5 * np.sin(lam / 10 + v))
                            * np.exp(-0.1 * j)})
              for name, n_v, n_j in (("H2+", 4, 4), ("HeH+", 3, 3))
              for j in range(n_j) for v in range(n_v)]
    table = xg.save_xsec_table(pd.concat(frames, ignore_index=True), tmp_path / "t.h5",
                               provenance={"test": 1})
    wd = tmp_path / "run"
    rc, out, err = run_bin("train", "--config=configs/xsec_pinn.py", f"--workdir={wd}",
                           f"--config.data.path={table}", "--config.data.test_fraction=0.2",
                           "--config.data.val_fraction=0.2", "--config.xsec.hidden=(16,16)",
                           "--config.xsec.n_fourier=4", "--config.train.epochs=3",
                           "--config.train.batch_size=32", "--config.train.max_seconds=0",
                           "--config.eval.temperatures_k=(3000.0,)", "--noprogress")
    assert rc == 0, err
    rc, out, err = run_bin("evaluate_xsec", f"--workdir={wd}", "--nofigures")
    assert rc == 0, err
    held = json.loads((wd / "model.json").read_text())["split"]["held_out"]
    m = json.loads((wd / "eval" / "metrics.json").read_text())
    assert m["split"] == "levels"
    assert m["pooled"]["net"]["n"] == lam.size * sum(len(v) for v in held.values())
    assert out.startswith("xsec_pinn (v encoding ") and "split 'levels'" in out.splitlines()[0]
