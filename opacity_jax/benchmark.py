"""Benchmarks: inference throughput of the fused pipeline, compile time, FLOPs, training throughput.

`run(config)` (bin/benchmark, configs/benchmark.py) measures on the default JAX device:

* inference, per model (decoder only; pipeline with the latent MLP; pipeline with the XGBoost
  trees as a lookup table) x dtype (float32, bfloat16) x batch size: lowering and compilation
  time (AOT, separately from execution), XLA `cost_analysis()` FLOPs, then after warm-up the
  median of N `block_until_ready` runs -> spectra/s, achieved FLOP/s and its fraction of the
  device's peak (published dense peak for known GPUs; on other devices a measured large-GEMM
  rate, labelled as such); the pipeline / decoder-only time ratio;
* training, the CAE on synthetic spectra for n elements: the vmap'd per-element step of
  `train.loop.Trainer` (all elements in one step) versus a Python loop over elements (one
  element's step at a time), in spectra/s and steps/s, compile time separate; with torch
  installed, the thesis's way (a per-element PyTorch loop, same CAE, batch, loss, epochs), in the
  same run, with the ratio.

Results: `benchmark.json` and `benchmark.md` (device, versions, matmul precision, date, command).
Throughput does not depend on the weights, so without a workdir random weights of the configured
architecture are timed.
"""

from __future__ import annotations

import datetime
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

import opacity_jax
from opacity_jax.models.cae import CAE
from opacity_jax.serve.pipeline import DevicePipeline
from opacity_jax.train import experiment, loop
from opacity_jax.train import workdir as workdir_lib
from opacity_jax.train.task import pack_ragged

# Published dense peaks, FLOP/s: (float32 without tensor cores, TF32 tensor core, bf16 tensor
# core). JAX's default matmul precision lets float32 dots/convs use TF32 on these GPUs.
GPU_PEAKS = {
    "H100 PCIe": (51.2e12, 378e12, 756e12),
    "H100": (66.9e12, 494.7e12, 989.4e12),     # SXM5 (the 80 GB HBM3 part)
    "H200": (66.9e12, 494.7e12, 989.4e12),
    "A100": (19.5e12, 156e12, 312e12),
    "L4": (30.3e12, 60e12, 121e12),
}

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


# --------------------------------------------------------------------------------------------
# environment
def environment(argv=None) -> dict:
    """Device, versions, precision settings, date and command line of this run."""
    devs = jax.devices()
    versions = {"python": platform.python_version(), "jax": jax.__version__,
                "jaxlib": getattr(jax.lib, "__version__", None), "numpy": np.__version__,
                "opacity_jax": opacity_jax.__version__}
    for mod in ("jaxlib", "flax", "optax", "xgboost", "torch"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:   # optional package absent or broken: record it as absent
            versions.setdefault(mod, None)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(argv if argv is not None else sys.argv),
        "device": {"platform": devs[0].platform, "kind": devs[0].device_kind,
                   "count": len(devs), "host": platform.node(),
                   "cpu_count": _cpu_count(), "load_average": _load_average()},
        "versions": versions,
        "matmul_precision": str(jax.config.jax_default_matmul_precision or "default"),
        "x64": bool(jax.config.jax_enable_x64),
    }


def _load_average():
    # Host load at the start: CPU timings on a shared machine mean little without it.
    try:
        import os
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _cpu_count() -> int:
    try:
        import os
        return len(os.sched_getaffinity(0))
    except Exception:
        import os
        return os.cpu_count() or 1


def peak_flops(device_kind: str, dtype: str, matmul_precision: str) -> Optional[float]:
    """Published dense peak FLOP/s of a known GPU for this dtype/precision, else None."""
    for name, (fp32, tf32, bf16) in GPU_PEAKS.items():
        if name in device_kind:
            if dtype == "bfloat16":
                return bf16
            return fp32 if matmul_precision in ("highest", "float32") else tf32
    return None


# --------------------------------------------------------------------------------------------
# timing
def _flops(compiled) -> Optional[float]:
    ca = compiled.cost_analysis()
    if isinstance(ca, (list, tuple)):     # older jax: one dict per computation
        ca = ca[0] if ca else None
    if not ca or "flops" not in ca:
        return None
    return float(ca["flops"])


def time_compiled(fn: Callable, args, n_runs: int, warmup: int = 2) -> dict:
    """AOT-compile `fn(*args)`, then time it.

    Returns: {'lower_s', 'compile_s', 'flops' (per call, XLA cost analysis or None),
    'median_s', 'min_s', 'runs'} with per-call wall times after `warmup` calls, each ended by
    `block_until_ready`.
    """
    t0 = time.perf_counter()
    lowered = jax.jit(fn).lower(*args)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    for _ in range(max(1, warmup)):
        jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(max(1, n_runs)):
        s = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - s)
    return {"lower_s": t1 - t0, "compile_s": t2 - t1, "flops": _flops(compiled),
            "median_s": statistics.median(times), "min_s": min(times), "runs": len(times)}


def gemm_rate(dtype: str, n: int = 1024, n_runs: int = 5) -> float:
    """Measured FLOP/s of an n x n x n matmul in `dtype` (a practical peak for unknown devices)."""
    k1, k2 = jax.random.split(jax.random.key(0))
    a = jax.random.normal(k1, (n, n), DTYPES[dtype])
    b = jax.random.normal(k2, (n, n), DTYPES[dtype])
    r = time_compiled(lambda x, y: x @ y, (a, b), n_runs, warmup=1)
    return 2.0 * n ** 3 / r["median_s"]


# --------------------------------------------------------------------------------------------
# inference
def _pipelines(cfg) -> dict:
    """{'mlp': DevicePipeline, 'xgboost': ...} from a workdir or random weights."""
    regs = list(cfg.inference.regressors)
    if cfg.workdir:
        from opacity_jax.serve.surrogate import Surrogate
        out = {}
        for r in regs:
            try:
                out[r] = Surrogate.load(cfg.workdir, regressor=r).device_pipeline()
            except ValueError as e:     # regressor not trained in this workdir
                print(f"benchmark: skipping {r}: {e}")
        return out
    m = cfg.model
    return {r: DevicePipeline.random(
        n_elements=int(m.n_elements), n_bins=int(m.n_bins), latent_dim=int(m.latent_dim),
        channels=tuple(m.channels), kernel=int(m.kernel), strides=tuple(m.strides),
        mlp_hidden=tuple(m.mlp_hidden), regressor=r, n_thresholds=tuple(m.n_thresholds))
        for r in regs}


def _queries(pipe, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    dom = getattr(pipe._validate, "domain", None) or {"temperature_ev": [0.01, 5.0],
                                                      "density_gcc": [1e-20, 1e-4]}
    lo, hi = np.log(dom["temperature_ev"])
    rlo, rhi = np.log(dom["density_gcc"])
    t = np.exp(rng.uniform(lo, hi, n)).astype(np.float32)
    r = np.exp(rng.uniform(rlo, rhi, n)).astype(np.float32)
    return jnp.asarray(t), jnp.asarray(r)


def bench_inference(cfg, env: dict) -> list:
    """Rows of inference results (see module docstring)."""
    pipes = _pipelines(cfg)
    if not pipes:
        raise ValueError("no pipeline to benchmark (inference.regressors)")
    rows = []
    kind = env["device"]["kind"]
    prec = env["matmul_precision"]
    gemm = ({d: gemm_rate(d, int(cfg.inference.gemm_size)) for d in cfg.inference.dtypes}
            if cfg.inference.gemm_reference else {})
    e = jnp.int32(0)
    for dname in cfg.inference.dtypes:
        dtype = DTYPES[dname]
        typed = {r: p.with_dtype(dtype) for r, p in pipes.items()}
        any_pipe = next(iter(typed.values()))
        models = {"decoder": (any_pipe.decode, any_pipe)}
        for r, p in typed.items():
            models[f"pipeline_{r}"] = (p.apply, p)
        for batch in cfg.inference.batch_sizes:
            batch = int(batch)
            t, rr = _queries(any_pipe, batch)
            z = jax.random.normal(jax.random.key(1), (batch, any_pipe.cae.latent_dim))
            for name, (fn, p) in models.items():
                args = (p.params, e, z) if name == "decoder" else (p.params, e, t, rr)
                res = time_compiled(fn, args, int(cfg.inference.n_runs),
                                    int(cfg.inference.warmup))
                row = {"model": name, "dtype": dname, "batch": batch, **res,
                       "spectra_per_s": batch / res["median_s"]}
                if res["flops"]:
                    row["flops_per_spectrum"] = res["flops"] / batch
                    row["achieved_flops_per_s"] = res["flops"] / res["median_s"]
                    pk = peak_flops(kind, dname, prec)
                    row["peak_flops_per_s"] = pk
                    row["peak_source"] = "published dense peak" if pk else None
                    row["peak_fraction"] = row["achieved_flops_per_s"] / pk if pk else None
                    if dname in gemm:
                        row["gemm_flops_per_s"] = gemm[dname]
                        row["gemm_fraction"] = row["achieved_flops_per_s"] / gemm[dname]
                rows.append(row)
                print(f"  {name:18s} {dname:8s} batch {batch:7d}: {row['spectra_per_s']:.4g} "
                      f"spectra/s, compile {res['compile_s']:.2f} s")
    return rows


def bench_stage_basis(cfg) -> list:
    """Rows (as `bench_inference`'s) for a trained Saha-structured surrogate
    (`cfg.stage_basis_workdir`): jit'd ln kappa of its first element at random (T, rho) in its
    domain, float32 (the Saha solve runs in float32 only), per batch size; the full model
    ('stage_basis') and the tabulated fast path ('stage_basis_fast',
    `StageBasisSurrogate.fast_log_kappa_function` with
    `cfg.stage_basis_fast_points_per_interval`), whose rows also hold the max and 99th
    percentile |ln kappa_fast - ln kappa_full| over the timed queries and the tables' bytes."""
    from opacity_jax.serve.stage_basis import StageBasisSurrogate
    s = StageBasisSurrogate.load(cfg.stage_basis_workdir)
    z = int(s.elements[0])
    variants = [("stage_basis", s.log_kappa_function(z))]
    ppi = int(cfg.get("stage_basis_fast_points_per_interval", 0))
    if ppi > 0:
        t0 = time.perf_counter()
        fast = s.fast_log_kappa_function(z, ppi)
        jax.block_until_ready(fast[1])
        tabulate_s = time.perf_counter() - t0
        variants.append(("stage_basis_fast", fast))
    rng = np.random.default_rng(0)
    rows = []
    for batch in cfg.inference.batch_sizes:
        batch = int(batch)
        lt = jnp.asarray(rng.uniform(*np.log10(s.domain["temperature_ev"]), batch), jnp.float32)
        lr = jnp.asarray(rng.uniform(*np.log10(s.domain["density_gcc"]), batch), jnp.float32)
        ref = None
        for name, (fn, args) in variants:
            batched = jax.vmap(fn, in_axes=(None, 0, 0))
            res = time_compiled(batched, (args, lt, lr), int(cfg.inference.n_runs),
                                int(cfg.inference.warmup))
            row = {"model": name, "dtype": "float32", "batch": batch, **res,
                   "spectra_per_s": batch / res["median_s"], "n_stages": s.spec.n_stages,
                   "n_bins": s.spec.n_energy, "element": z}
            out = np.asarray(jax.jit(batched)(args, lt, lr))
            if ref is None:
                ref = out
            else:
                d = np.abs(out - ref)
                row.update(points_per_interval=ppi, tabulate_s=tabulate_s,
                           table_bytes=int(sum(np.asarray(a).nbytes
                                               for a in jax.tree_util.tree_leaves(args[0]))),
                           max_abs_dlnk_vs_full=float(d.max()),
                           p99_abs_dlnk_vs_full=float(np.percentile(d, 99)))
            if res["flops"]:
                row["flops_per_spectrum"] = res["flops"] / batch
                row["achieved_flops_per_s"] = res["flops"] / res["median_s"]
            rows.append(row)
            print(f"  {name:18s} float32  batch {batch:7d}: {row['spectra_per_s']:.4g} "
                  f"spectra/s, compile {res['compile_s']:.2f} s")
    return rows


def pipeline_ratios(rows: list) -> list:
    """Full pipeline time / decoder-only time per (regressor, dtype, batch)."""
    dec = {(r["dtype"], r["batch"]): r["median_s"] for r in rows if r["model"] == "decoder"}
    out = []
    for r in rows:
        key = (r["dtype"], r["batch"])
        if r["model"].startswith("pipeline_") and key in dec:
            out.append({"model": r["model"], "dtype": r["dtype"], "batch": r["batch"],
                        "time_ratio_pipeline_over_decoder": r["median_s"] / dec[key]})
    return out


# --------------------------------------------------------------------------------------------
# training
def synthetic_entity_data(n_elements: int, n_samples: int, n_bins: int, seed: int = 0):
    """EntityData of smooth positive random spectra (n_elements, n_samples, n_bins) 'x'."""
    rng = np.random.default_rng(seed)
    e = np.linspace(0, 1, n_bins, dtype=np.float32)
    rows = []
    for _ in range(n_elements):
        c = rng.uniform(0.2, 1.0, (n_samples, 1)).astype(np.float32)
        w = rng.uniform(2, 20, (n_samples, 1)).astype(np.float32)
        x = c * (1.0 + np.sin(w * e)) + 0.05 * rng.standard_normal((n_samples, n_bins))
        rows.append({"x": x.astype(np.float32)})
    return pack_ragged(rows)


def _cae_from(m) -> CAE:
    return CAE.from_meta(m)


def bench_training(cfg) -> dict:
    """vmap'd per-element CAE training versus a Python loop over elements (and torch)."""
    tc = cfg.training
    n_el, n_s, bs = int(tc.n_elements), int(tc.n_samples), int(tc.batch_size)
    model = _cae_from(cfg.model)
    data = synthetic_entity_data(n_el, n_s, model.n_bins)
    task = experiment.cae_task(model, "wmse", 50.0)
    lc = loop.LoopConfig(epochs=10 ** 6, batch_size=bs, learning_rate=1e-3)
    steps = int(math.ceil(n_s / bs))
    out = {"n_elements": n_el, "samples_per_element": n_s, "batch_size": bs,
           "steps_per_epoch": steps, "epochs_timed": int(tc.epochs), "n_bins": model.n_bins}

    def epochs(trainer, state, d, dev, n):
        times = []
        for ep in range(n):
            s = time.perf_counter()
            state, loss = trainer.run_epoch(state, d, dev, ep)   # ends in a host sync
            times.append(time.perf_counter() - s)
        return state, times

    dev = {k: jnp.asarray(v) for k, v in data.arrays.items()}
    # vmap'd: every element in one step. Trainer.init traced once under jit: run eagerly it
    # compiles every initializer op separately (~100 small compilations).
    tr = loop.Trainer(task, lc)
    state0 = jax.jit(lambda: tr.init(data))()
    state = jax.tree_util.tree_map(jnp.array, state0)       # run_epoch donates its buffers
    state, first = epochs(tr, state, data, dev, 1)
    state, times = epochs(tr, state, data, dev, int(tc.epochs))
    ep = statistics.median(times)
    out["vmap"] = {"first_epoch_s": first[0], "epoch_s": ep,
                   "spectra_per_s": n_el * n_s / ep, "steps_per_s": steps / ep,
                   "element_steps_per_s": n_el * steps / ep}
    # Python loop over elements: one compiled single-element step, elements in turn.
    tr1 = loop.Trainer(task, lc)
    subsets = [data.select([i]) for i in range(n_el)]
    # An entity's initial state does not depend on its neighbours (per-entity PRNG streams), so
    # slices of the vmap'd initial state are the single-element initial states.
    states = [jax.tree_util.tree_map(lambda a, i=i: jnp.array(a[i:i + 1]) if jnp.ndim(a) else a,
                                     state0) for i in range(n_el)]
    s0 = time.perf_counter()
    states[0], _ = epochs(tr1, states[0], subsets[0], dev, 1)
    first_loop = time.perf_counter() - s0
    loop_times = []
    for k in range(int(tc.epochs)):
        s = time.perf_counter()
        for i in range(n_el):
            states[i], _ = tr1.run_epoch(states[i], subsets[i], dev, k + 1)
        loop_times.append(time.perf_counter() - s)
    lp = statistics.median(loop_times)
    out["python_loop"] = {"first_epoch_one_element_s": first_loop, "epoch_s": lp,
                          "spectra_per_s": n_el * n_s / lp, "steps_per_s": n_el * steps / lp,
                          "element_steps_per_s": n_el * steps / lp}
    out["vmap_speedup_over_python_loop"] = lp / ep
    if tc.torch in ("auto", "on"):
        out["torch"] = bench_torch(model, data, bs, int(tc.epochs), required=tc.torch == "on",
                                   threads=int(tc.get("torch_threads", 0)))
        if "epoch_s" in out["torch"]:
            out["torch"]["jax_vmap_speedup_over_torch_loop"] = out["torch"]["epoch_s"] / ep
    return out


def bench_torch(model: CAE, data, batch_size: int, n_epochs: int, required: bool = False,
                threads: int = 0) -> dict:
    """The thesis's way: a Python loop over elements, each its own PyTorch CAE + Adam, the same
    architecture, batch, WMSE loss (alpha 50) and epochs. {'skipped': reason} without torch.
    threads: torch CPU threads (0 = torch's default; on an oversubscribed CPU its OpenMP
    spin-waiting can be 30x slower than 1 thread)."""
    try:
        import torch
    except ImportError as e:
        if required:
            raise
        return {"skipped": f"torch not importable ({e})"}
    if threads:
        torch.set_num_threads(int(threads))
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    n_el = data.n_entities
    xs = [torch.as_tensor(np.asarray(data.arrays["x"][i, :int(data.counts[i])]), device=dev)
          for i in range(n_el)]
    nets = [_torch_cae(model).to(dev) for _ in range(n_el)]
    opts = [torch.optim.Adam(n.parameters(), lr=1e-3) for n in nets]

    def wmse(pred, x):
        d = torch.abs(x[:, 1:] - x[:, :-1])
        w = 1.0 + 50.0 * torch.cat([d, d[:, -1:]], dim=1)
        return torch.mean(torch.mean((pred - x) ** 2 * w, dim=1))

    def element_epoch(i, gen):
        x = xs[i]
        perm = torch.randperm(x.shape[0], generator=gen, device="cpu").to(dev)
        for s in range(0, x.shape[0], batch_size):
            b = x[perm[s:s + batch_size]]
            opts[i].zero_grad(set_to_none=True)
            loss = wmse(nets[i](b), b)
            loss.backward()
            opts[i].step()

    gen = torch.Generator().manual_seed(0)
    s = time.perf_counter()
    for i in range(n_el):
        element_epoch(i, gen)
    sync()
    first = time.perf_counter() - s
    times = []
    for _ in range(n_epochs):
        s = time.perf_counter()
        for i in range(n_el):
            element_epoch(i, gen)
        sync()
        times.append(time.perf_counter() - s)
    ep = statistics.median(times)
    n_s = int(np.sum(data.counts[data.entity_row]))
    return {"device": dev, "torch_version": torch.__version__, "threads": torch.get_num_threads(),
            "first_epoch_s": first, "epoch_s": ep, "spectra_per_s": n_s / ep}


def _torch_cae(model: CAE):
    """torch.nn.Module with the CAE's layer sizes (channels-first Conv1d; 'SAME' lengths)."""
    import torch.nn as tnn

    strides = model._strides()
    k = model.kernel
    pad = (k - 1) // 2
    length = model.n_bins // math.prod(strides)
    ch = list(model.channels)

    class TorchCAE(tnn.Module):
        def __init__(self):
            super().__init__()
            enc, c_in = [], 1
            for c, s in zip(ch, strides):
                enc += [tnn.Conv1d(c_in, c, k, stride=s, padding=pad), tnn.ReLU()]
                c_in = c
            self.enc = tnn.Sequential(*enc)
            self.to_latent = tnn.Linear(length * ch[-1], model.latent_dim)
            self.from_latent = tnn.Linear(model.latent_dim, length * ch[-1])
            dec, outs = [], ch[:-1][::-1] + [1]
            c_in = ch[-1]
            for i, (c, s) in enumerate(zip(outs, strides[::-1])):
                # output length L*s: (L-1)s - 2 pad + k + output_padding.
                dec.append(tnn.ConvTranspose1d(c_in, c, k, stride=s, padding=pad,
                                               output_padding=s + 2 * pad - k))
                if i < len(outs) - 1:
                    dec.append(tnn.ReLU())
                c_in = c
            self.dec = tnn.Sequential(*dec)

        def forward(self, x):
            h = self.enc(x[:, None, :])
            z = self.to_latent(h.flatten(1))
            h = self.from_latent(z).relu().view(x.shape[0], ch[-1], length)
            return self.dec(h)[:, 0, :]

    return TorchCAE()


# --------------------------------------------------------------------------------------------
# run + reports
def run(cfg, output_dir, argv=None) -> dict:
    """Run the configured benchmark; write benchmark.json and benchmark.md to `output_dir`."""
    if cfg.matmul_precision:
        jax.config.update("jax_default_matmul_precision", cfg.matmul_precision)
    env = environment(argv)
    result = {"environment": env, "config": json.loads(cfg.to_json_best_effort())}
    print(f"benchmark on {env['device']['kind']} ({env['device']['platform']}), "
          f"matmul precision {env['matmul_precision']}")
    if cfg.inference.enabled:
        result["inference"] = bench_inference(cfg, env)
        result["pipeline_over_decoder"] = pipeline_ratios(result["inference"])
        if cfg.get("stage_basis_workdir", ""):
            result["inference"] += bench_stage_basis(cfg)
    if cfg.training.enabled:
        result["training"] = bench_training(cfg)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    workdir_lib.write_json(out / "benchmark.json", result)
    (out / "benchmark.md").write_text(markdown(result))
    return result


def _g(x, fmt=".3g"):
    return "-" if x is None else format(x, fmt)


def markdown(result: dict) -> str:
    """Markdown report of a `run` result (tables of inference and training throughput)."""
    env = result["environment"]
    d, v = env["device"], env["versions"]
    load = d.get("load_average")
    lines = [f"### {d['kind']} ({d['platform']}, {d['count']} device(s), "
             f"{d['cpu_count']} CPU cores visible), {env['date'][:10]}", "",
             *([f"Host load average (1/5/15 min) at start: {load}.", ""] if load else []),
             f"Command: `{env['command']}`", "",
             "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val) + ".",
             f"Matmul precision: `{env['matmul_precision']}` (jax_default_matmul_precision); "
             "bfloat16 rows run the latent MLP and decoder with bf16 weights and activations.",
             ""]
    if "inference" in result:
        lines += ["| model | dtype | batch | compile s | spectra/s | MFLOP/spectrum | "
                  "achieved GFLOP/s | % peak | % GEMM |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in result["inference"]:
            pf, gf = r.get("peak_fraction"), r.get("gemm_fraction")
            fs, af = r.get("flops_per_spectrum"), r.get("achieved_flops_per_s")
            lines.append(
                f"| {r['model']} | {r['dtype']} | {r['batch']} | {r['compile_s']:.2f} | "
                f"{r['spectra_per_s']:.3g} | {_g(None if fs is None else fs / 1e6)} | "
                f"{_g(None if af is None else af / 1e9)} | "
                f"{_g(None if pf is None else 100 * pf)} | "
                f"{_g(None if gf is None else 100 * gf)} |")
        n_gemm = result.get("config", {}).get("inference", {}).get("gemm_size", "n")
        lines += ["", "% peak: of the published dense peak (GPUs listed in "
                  "`benchmark.GPU_PEAKS`; TF32 for float32 at default precision); % GEMM: of a "
                  f"measured {n_gemm}^3 matmul in the same dtype. FLOPs from XLA "
                  "`cost_analysis()`; times are medians after warm-up, each call ended by "
                  "`block_until_ready`.", ""]
        fast = [r for r in result["inference"] if r["model"] == "stage_basis_fast"]
        if fast:
            lines += [f"stage_basis_fast: the tabulated fast path ({fast[0]['points_per_interval']}"
                      f" cells per knot interval, tables {fast[0]['table_bytes'] / 1e6:.3g} MB, "
                      f"built in {fast[0]['tabulate_s']:.2f} s) against the full model at the "
                      "same queries:", "",
                      "| batch | max abs d ln kappa | p99 abs d ln kappa | time full / fast |",
                      "| ---: | ---: | ---: | ---: |"]
            full = {r["batch"]: r for r in result["inference"] if r["model"] == "stage_basis"}
            for r in fast:
                ratio = full[r["batch"]]["median_s"] / r["median_s"]
                lines.append(f"| {r['batch']} | {r['max_abs_dlnk_vs_full']:.3g} | "
                             f"{r['p99_abs_dlnk_vs_full']:.3g} | {ratio:.3g} |")
            lines.append("")
        if result.get("pipeline_over_decoder"):
            lines += ["| pipeline | dtype | batch | time pipeline / decoder-only |",
                      "| --- | --- | ---: | ---: |"]
            for r in result["pipeline_over_decoder"]:
                lines.append(f"| {r['model']} | {r['dtype']} | {r['batch']} | "
                             f"{r['time_ratio_pipeline_over_decoder']:.3g} |")
            lines.append("")
    if "training" in result:
        t = result["training"]
        lines += [f"Training: CAE ({t['n_bins']} bins), {t['n_elements']} elements x "
                  f"{t['samples_per_element']} spectra, batch {t['batch_size']}, "
                  f"{t['steps_per_epoch']} steps/epoch, median of {t['epochs_timed']} epochs "
                  "after a warm-up epoch.", "",
                  "| method | epoch s | spectra/s | steps/s | element-steps/s | first epoch s |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |"]
        vm, pl = t["vmap"], t["python_loop"]
        lines.append(f"| JAX vmap over elements | {vm['epoch_s']:.3g} | {vm['spectra_per_s']:.3g}"
                     f" | {vm['steps_per_s']:.3g} | {vm['element_steps_per_s']:.3g} | "
                     f"{vm['first_epoch_s']:.3g} |")
        lines.append(f"| JAX Python loop over elements | {pl['epoch_s']:.3g} | "
                     f"{pl['spectra_per_s']:.3g} | {pl['steps_per_s']:.3g} | "
                     f"{pl['element_steps_per_s']:.3g} | "
                     f"{pl['first_epoch_one_element_s']:.3g} (1 element) |")
        tt = t.get("torch", {})
        if "epoch_s" in tt:
            lines.append(f"| PyTorch loop over elements ({tt['device']}) | {tt['epoch_s']:.3g} | "
                         f"{tt['spectra_per_s']:.3g} | - | - | {tt['first_epoch_s']:.3g} |")
        lines += ["", f"vmap speed-up over the Python loop: "
                  f"{t['vmap_speedup_over_python_loop']:.3g}x."]
        if "epoch_s" in tt:
            lines.append(f"JAX vmap speed-up over the PyTorch per-element loop (same run): "
                         f"{tt['jax_vmap_speedup_over_torch_loop']:.3g}x.")
        elif tt:
            lines.append(f"PyTorch reference: skipped ({tt.get('skipped')}).")
        lines.append("")
    return "\n".join(lines)
