"""Recompute the stage spectra of a trained stage-basis workdir with the current table fit.

    PYTHONPATH=. python3 reports/stage_basis/retable.py SRC DST [--offgrid N]

Copies SRC (a workdir written by `bin/train --config=configs/stage_basis.py...`) to DST, keeps
its fitted boundary corrections dphi and continuum scales (the loop stage, whose code and
config are unchanged), refits the stage spectra with the log-space refinement settings of
`configs/stage_basis.py` (`stage_basis.log_refine_steps`, `log_refine_linear_weight`), records
them in DST's config.json and model.json, then runs `bin/evaluate`'s evaluation (held-out table,
and `--offgrid` points when N > 0). The result equals re-training with the current code: the
loop stage is deterministic and the table fit runs after it (`experiments.stage_basis.fit`).
"""

import argparse
import json
import shutil
from pathlib import Path

from configs import stage_basis as sb_config
from opacity_jax.experiments import stage_basis as fam
from opacity_jax.serve import stage_basis as ssb
from opacity_jax.train import experiment
from opacity_jax.train import workdir as workdir_lib


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--offgrid", type=int, default=0)
    a = ap.parse_args()
    src, dst = Path(a.src), Path(a.dst)
    meta = workdir_lib.read_model_meta(src)
    if meta.get("model") != "stage_basis":
        raise SystemExit(f"{src}: not a stage_basis workdir")
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("eval"))
    cfg = workdir_lib.read_config(dst)
    default = sb_config.get_config().stage_basis
    steps, weight = int(default.log_refine_steps), float(default.log_refine_linear_weight)
    raw = json.loads((dst / "config.json").read_text())
    raw["stage_basis"].update(log_refine_steps=steps, log_refine_linear_weight=weight)
    workdir_lib.write_json(dst / "config.json", raw)
    ds = experiment.load_data(cfg.data)
    train_m, _, _ = experiment.make_split_masks(ds, cfg.data, int(cfg.seed))
    spec, consts = ssb.spec_from_meta(meta)
    params = ssb.load_tables(dst / ssb.TABLES_FILE, meta["stage_basis"]["tables_sha256"])
    params["log_a"] = fam.stage_tables(spec, consts, params, ds, train_m, steps, weight)
    meta["stage_basis"]["tables_sha256"] = fam.save_tables(dst / ssb.TABLES_FILE, params)
    meta["stage_basis"]["retabled_from"] = str(src)
    workdir_lib.write_model_meta(dst, meta)
    opts = {"make_figures": False, **({"offgrid": a.offgrid} if a.offgrid else {})}
    print(fam.report(fam.evaluate(dst, **opts)))


if __name__ == "__main__":
    main()
