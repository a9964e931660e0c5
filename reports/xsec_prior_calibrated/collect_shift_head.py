"""Collect the shift-head arms (shift_head.sh) into shift_head.json: per arm the held-out
median relative error (points with sigma > 1e-3 of the curve's max) of the residual net, of
the prior alone and of interpolation, the net's training-row error, the MSLE of net and prior,
epochs and training seconds.

  python3 reports/xsec_prior_calibrated/collect_shift_head.py RUNS_DIR
"""

import json
import sys
from pathlib import Path

runs = Path(sys.argv[1])
out = {"command": "reports/xsec_prior_calibrated/shift_head.sh", "threshold": 1e-3, "arms": {}}
for f in sorted(runs.glob("*/eval/metrics.json")):
    m = json.loads(f.read_text())
    meta = json.loads((f.parent.parent / "model.json").read_text())
    for mol, pm in m["per_molecule"].items():
        ts = meta["train_summary"]
        cal = (meta["prior"] or {}).get("calibration") or {}
        out["arms"][f.parent.parent.name] = {
            "molecule": mol, "split": m["split"], "preset": json.loads(
                (f.parent.parent / "config.json").read_text()).get("preset"),
            "shift_head": bool(meta["xsec"].get("shift_head", False)),
            "prior_calibrated": bool(cal), "calibration": cal.get(mol),
            "net_median_rel": pm["net"]["median_rel"],
            "prior_median_rel": pm["prior"]["median_rel"],
            "interpolation_median_rel": pm["baseline"]["median_rel"],
            "net_train_median_rel": pm["net_train"]["median_rel"],
            "net_msle": pm["net"]["msle"], "prior_msle": pm["prior"]["msle"],
            "n_points": pm["net"]["n"], "epochs": ts["epochs_run"],
            "train_seconds": ts["train_seconds"]}
dest = Path(__file__).with_name("shift_head.json")
dest.write_text(json.dumps(out, indent=1) + "\n")
for k, a in out["arms"].items():
    print(f"{k:34s} net {100 * a['net_median_rel']:.3f} % prior {100 * a['prior_median_rel']:.3f}"
          f" % interp {100 * a['interpolation_median_rel']:.3f} % (epochs {a['epochs']})")
