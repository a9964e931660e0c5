"""bin/benchmark's module on a tiny sweep writes valid JSON and Markdown (no timing asserts)."""

import json

from configs import benchmark as benchmark_config
from opacity_jax import benchmark


def _tiny_config():
    c = benchmark_config.get_config()
    c.model.n_elements = 2
    c.model.n_bins = 16
    c.model.channels = (4, 8)
    c.model.latent_dim = 4
    c.model.mlp_hidden = (8,)
    c.model.n_thresholds = (5, 3)
    c.inference.batch_sizes = (4,)
    c.inference.regressors = ("xgboost",)   # the MLP pipeline is covered by test_pipeline.py
    c.inference.n_runs = 2
    c.inference.warmup = 1
    c.inference.gemm_size = 32
    c.training.n_elements = 2
    c.training.n_samples = 12
    c.training.batch_size = 8
    c.training.epochs = 1
    c.training.torch = "off"
    return c


def test_benchmark_writes_json_and_markdown(tmp_path):
    res = benchmark.run(_tiny_config(), tmp_path, argv=["bin/benchmark", "--tiny"])
    data = json.loads((tmp_path / "benchmark.json").read_text())
    env = data["environment"]
    assert env["device"]["platform"] and env["versions"]["jax"] and env["date"]
    assert env["matmul_precision"] == "default" and env["command"] == "bin/benchmark --tiny"
    rows = data["inference"]
    assert {(r["model"], r["dtype"]) for r in rows} == {
        (m, d) for m in ("decoder", "pipeline_xgboost") for d in ("float32", "bfloat16")}
    for r in rows:
        assert r["spectra_per_s"] > 0 and r["compile_s"] >= 0 and r["runs"] == 2
        assert r["flops"] is None or r["flops_per_spectrum"] > 0
    assert len(data["pipeline_over_decoder"]) == 2
    tr = data["training"]
    assert tr["vmap"]["spectra_per_s"] > 0 and tr["python_loop"]["steps_per_s"] > 0
    assert tr["vmap_speedup_over_python_loop"] > 0 and "torch" not in tr
    md = (tmp_path / "benchmark.md").read_text()
    assert "| model | dtype | batch |" in md and "JAX vmap over elements" in md
    assert "`bin/benchmark --tiny`" in md
    assert res["training"]["n_elements"] == 2


def test_markdown_with_torch_rows_and_peaks():
    peak = benchmark.peak_flops
    assert peak("NVIDIA H100 80GB HBM3", "bfloat16", "default") == 989.4e12
    assert peak("NVIDIA H100 PCIe", "float32", "default") == 378e12
    assert peak("NVIDIA H200", "float32", "highest") == 66.9e12
    assert peak("cpu", "float32", "default") is None
    env = {"date": "2026-01-01T00:00:00", "command": "x", "matmul_precision": "default",
           "device": {"platform": "gpu", "kind": "H100", "count": 1, "cpu_count": 16},
           "versions": {"jax": "0"}}
    t = {"n_bins": 200, "n_elements": 2, "samples_per_element": 4, "batch_size": 2,
         "steps_per_epoch": 2, "epochs_timed": 1,
         "vmap": {"epoch_s": 1.0, "spectra_per_s": 8.0, "steps_per_s": 2.0,
                  "element_steps_per_s": 4.0, "first_epoch_s": 3.0},
         "python_loop": {"epoch_s": 2.0, "spectra_per_s": 4.0, "steps_per_s": 2.0,
                         "element_steps_per_s": 2.0, "first_epoch_one_element_s": 3.0},
         "vmap_speedup_over_python_loop": 2.0,
         "torch": {"device": "cuda", "epoch_s": 5.0, "spectra_per_s": 1.6, "first_epoch_s": 6.0,
                   "jax_vmap_speedup_over_torch_loop": 5.0}}
    md = benchmark.markdown({"environment": env, "training": t})
    assert "PyTorch loop over elements (cuda)" in md and "5x" in md
    t["torch"] = {"skipped": "torch not importable"}
    assert "skipped (torch not importable)" in benchmark.markdown({"environment": env,
                                                                    "training": t})
