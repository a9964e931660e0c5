"""Collect the seven-ion arms (seven_ions.sh) into seven_ions.json and seven_ions.md: per arm
(prior preset x split) the held-out median relative error (points with sigma > 1e-3 of the
curve's max) of the residual net, the prior alone and interpolation, pooled and per molecule;
the LTE averages of the completed table (held-out rows filled by the net) against the exact
table at 1000 / 3000 / 10000 K (median and max over wavelengths, worst molecule); epochs and
training seconds.

  python3 reports/xsec_prior_calibrated/collect_seven_ions.py RUNS_DIR
"""

import json
import sys
from pathlib import Path

runs = Path(sys.argv[1])
here = Path(__file__).parent
out = {"command": "reports/xsec_prior_calibrated/seven_ions.sh", "threshold": 1e-3, "arms": {}}
for f in sorted(runs.glob("*/eval/metrics.json")):
    m = json.loads(f.read_text())
    meta = json.loads((f.parent.parent / "model.json").read_text())
    cfg = json.loads((f.parent.parent / "config.json").read_text())
    ts = meta["train_summary"]
    arm = {"preset": cfg.get("preset"), "split": m["split"],
           "shift_head": bool(meta["xsec"].get("shift_head", False)),
           "pooled": {k: m["pooled"][k]["median_rel"] for k in ("net", "prior", "baseline")},
           "n_points": m["pooled"]["net"]["n"],
           "per_molecule": {mol: {k: pm[k]["median_rel"] for k in ("net", "prior", "baseline")}
                            for mol, pm in m["per_molecule"].items()},
           "lte_completed": {mol: {t: {"median_rel": d["completed"]["median_rel"],
                                       "max_rel": d["completed"]["max_rel"]}
                                   for t, d in per_t.items()}
                             for mol, per_t in m["lte"].items()},
           "epochs": ts["epochs_run"], "train_seconds": ts["train_seconds"],
           "calibration": {mol: c.get("shift_ev") for mol, c in
                           (m.get("prior_calibration") or {}).items()}}
    out["arms"][f.parent.parent.name] = arm
(here / "seven_ions.json").write_text(json.dumps(out, indent=1) + "\n")

pc = lambda x: f"{100 * x:.3f} %"
lines = ["# Seven ions (Na2+ included), residual net with the lobe-shift head", "",
         f"Written by `python3 reports/xsec_prior_calibrated/collect_seven_ions.py RUNS` after "
         f"`{out['command']}`; numbers from `seven_ions.json`. Median relative error on held-out "
         "points with sigma > 1e-3 of the curve's max.", "",
         "| prior | split | residual net | prior alone | interpolation | epochs (s) |",
         "|---|---|---|---|---|---|"]
for name, a in out["arms"].items():
    p = a["pooled"]
    lines.append(f"| {a['preset']} | {a['split']} | {pc(p['net'])} | {pc(p['prior'])} | "
                 f"{pc(p['baseline'])} | {a['epochs']} ({a['train_seconds']:.0f}) |")
lines += ["", "Per molecule (net / prior alone / interpolation):", "",
          "| prior | split | " + " | ".join(next(iter(out["arms"].values()))["per_molecule"])
          + " |", "|---|---|" + "---|" * len(next(iter(out["arms"].values()))["per_molecule"])]
for name, a in out["arms"].items():
    cells = [f"{100 * d['net']:.2f} / {100 * d['prior']:.2f} / {100 * d['baseline']:.2f}"
             for d in a["per_molecule"].values()]
    lines.append(f"| {a['preset']} | {a['split']} | " + " | ".join(cells) + " |")
lines += ["", "LTE average of the completed table against the exact table, worst molecule "
          "(median over wavelengths; max over wavelengths in brackets):", "",
          "| prior | split | 1000 K | 3000 K | 10000 K |", "|---|---|---|---|---|"]
for name, a in out["arms"].items():
    cells = []
    for t in ("1000K", "3000K", "10000K"):
        med = max(d[t]["median_rel"] for d in a["lte_completed"].values())
        mx = max(d[t]["max_rel"] for d in a["lte_completed"].values())
        cells.append(f"{pc(med)} ({pc(mx)})")
    lines.append(f"| {a['preset']} | {a['split']} | " + " | ".join(cells) + " |")
(here / "seven_ions.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
