"""Why the residual net did not improve on the prior for Li2+: statistics of the prior's log
error on the training points of a trained arm, written to li2_diagnosis.json.

  python3 reports/xsec_prior_calibrated/li2_diagnosis.py RUNS/li2_before_levels RUNS/li2_shift_levels

r = log10(sigma / sigma_prior) at training points with sigma > 1e-3 of the curve's max; the
prior's local slope s and curvature c along the grid (serve.xsec.prior_slope_features).
"""

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from opacity_jax.experiments import xsec as X  # noqa: E402
from opacity_jax.serve.xsec import XsecSurrogate, prior_slope_features  # noqa: E402
from opacity_jax.train import workdir as W  # noqa: E402

before, after = Path(sys.argv[1]), Path(sys.argv[2])
cfg = W.read_config(before)
df, _ = X.load_table(cfg.data, False)
mols, _, _ = X.prepare_data(df, cfg.data, int(cfg.seed))
X.attach_prior(mols, cfg.prior, float(cfg.data.floor))
m = mols[0]
reg = m.sigma > 1e-3 * m.sigma.max(axis=1, keepdims=True)
tr = reg & m.train
r = np.log10(m.sigma / np.maximum(m.sigma_prior, 1e-300))
sc = prior_slope_features(m.sigma_prior, m.lam, m.lam, float(cfg.data.floor))
slope, curv = sc[..., 0].astype(np.float64), sc[..., 1].astype(np.float64)
depth = m.sigma / m.sigma.max(axis=1, keepdims=True)
vv = np.broadcast_to(m.v[:, None], r.shape)
out = {"command": "python3 reports/xsec_prior_calibrated/li2_diagnosis.py "
                  f"<runs>/{before.name} <runs>/{after.name}",
       "molecule": m.name, "split": cfg.data.split, "n_levels": int(m.v.size),
       "v_max": int(m.v.max()), "J_max": int(m.J.max()), "n_train_points": int(tr.sum())}
out["prior_train"] = {"median_abs_dex": float(np.median(np.abs(r[tr]))),
                      "rms_dex": float(np.sqrt(np.mean(r[tr] ** 2))),
                      "median_dex": float(np.median(r[tr]))}
out["prior_by_depth"] = {}
for lo, hi in ((0.1, 1.01), (0.01, 0.1), (1e-3, 0.01)):
    k = tr & (depth >= lo) & (depth < hi)
    out["prior_by_depth"][f"{lo:g}-{hi:g}"] = {"n": int(k.sum()),
                                              "median_dex": float(np.median(r[k])),
                                              "median_abs_dex": float(np.median(np.abs(r[k])))}
ac = []
for i in range(m.v.size):
    x = r[i][reg[i] & m.train[i]]
    if x.size > 10:
        x = x - x.mean()
        ac.append(float(np.sum(x[1:] * x[:-1]) / np.sum(x * x)))
out["lag1_autocorrelation_along_lambda_median"] = float(np.median(ac))
w = np.clip(m.sigma / (1e-2 * m.curve_max[:, None]), 1e-2, 1.0)
sq = np.sort((w * r ** 2)[m.train])[::-1]
out["loss_share_top_1pct"] = float(sq[: sq.size // 100].sum() / sq.sum())
out["loss_share_top_5pct"] = float(sq[: sq.size // 20].sum() / sq.sum())
out["slope_fit_by_v"] = {}
k0 = tr & (depth > 0.01)
for v0, v1 in ((0, 10), (10, 30), (30, 50), (50, 80)):
    k = k0 & (vv >= v0) & (vv < v1)
    A = np.stack([slope[k], curv[k], np.ones(k.sum())], 1)
    coef, *_ = np.linalg.lstsq(A, r[k], rcond=None)
    out["slope_fit_by_v"][f"{v0}-{v1 - 1}"] = {
        "corr_r_slope": float(np.corrcoef(r[k], slope[k])[0, 1]),
        "median_abs_dex": float(np.median(np.abs(r[k]))),
        "median_abs_dex_after_a_b_slope_c_curv": float(np.median(np.abs(r[k] - A @ coef)))}
for name, wd in (("net_before", before), ("net_shift_head", after)):
    sur = XsecSurrogate.load(wd)
    e = np.log10(sur.cross_sections(m.name, m.v, m.J, m.lam) / m.sigma)
    out[name] = {"train_median_abs_dex": float(np.median(np.abs(e[tr]))),
                 "train_rms_dex": float(np.sqrt(np.mean(e[tr] ** 2))),
                 "test_median_abs_dex": float(np.median(np.abs(e[reg & m.test]))),
                 "test_rms_dex": float(np.sqrt(np.mean(e[reg & m.test] ** 2)))}
Path(__file__).with_name("li2_diagnosis.json").write_text(json.dumps(out, indent=1) + "\n")
print(json.dumps(out, indent=1))
