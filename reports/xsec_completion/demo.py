"""A user's table from approximate curves, with holes, completed by bin/complete_xsec and scored
against the hidden truth (reports/xsec_completion/README.md).

  python3 reports/xsec_completion/demo.py make --dir=runs/xc_demo
  bin/complete_xsec --input=runs/xc_demo/in --output=runs/xc_demo/out
  python3 reports/xsec_completion/demo.py score --dir=runs/xc_demo --json=reports/xsec_completion/heh_perturbed.json

make: exact (Numerov) sigma of HeH+ on curves other than the package's (upper curve +0.03 eV,
transition dipole x 1.03: `reflection.perturbed_molecule`), J <= 12, 100 wavelengths, written
one file per level; hidden (seed 0): 10 % of the levels, two inner v (all J), a run of 6
sigma = nan rows in 20 % of the remaining levels, and one row deleted from 5 % of them.
score: the filled rows against the truth, next to interpolation from the same known rows
(experiments.xsec_completion.interpolate), with the coverage of the written 68 / 95 % bands.
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from opacity_jax.data import xsec_generator as xg  # noqa: E402
from opacity_jax.data.xsec_io import XsecTable, write_xsec_table  # noqa: E402
from opacity_jax.experiments import xsec_completion as xc  # noqa: E402
from opacity_jax.physics import reflection  # noqa: E402

NAME, J_MAX, N_LAM, RUN = "HeH+", 12, 100, 6


def make(d: Path):
    mol = reflection.perturbed_molecule(NAME, 0.03, 1.03)
    a = xg.xsec_arrays(xg.generate_xsec_table([mol], J_max=J_MAX, n_wavelengths=N_LAM))[NAME]
    rng = np.random.default_rng(0)
    n = a["v"].size
    vs = np.unique(a["v"])
    hide_v = rng.choice(vs[1:-1][vs[1:-1] < np.median(vs) + 3], 2, replace=False)
    rest = np.flatnonzero(~np.isin(a["v"], hide_v))
    hide_lev = rng.choice(rest, int(round(0.1 * n)), replace=False)
    rest = np.setdiff1d(rest, hide_lev)
    gap_lev = rng.choice(rest, int(round(0.2 * rest.size)), replace=False)
    cut_lev = rng.choice(np.setdiff1d(rest, gap_lev), int(round(0.05 * rest.size)),
                         replace=False)
    status = np.full(a["sigma_cm2"].shape, "known", dtype=object)
    shutil.rmtree(d / "in", ignore_errors=True)
    (d / "in").mkdir(parents=True)
    for i in range(n):
        if i in hide_lev or a["v"][i] in hide_v:
            status[i] = "v_levels" if a["v"][i] in hide_v else "levels"
            continue
        s, lam = a["sigma_cm2"][i].copy(), a["wavelength_nm"]
        if i in gap_lev:
            k = int(rng.integers(1, N_LAM - RUN - 1))
            s[k:k + RUN] = np.nan
            status[i, k:k + RUN] = "wavelength_windows"
        if i in cut_lev:
            k = int(rng.integers(1, N_LAM - 1))
            s, lam = np.delete(s, k), np.delete(lam, k)
            status[i, k] = "wavelength_windows"
        write_xsec_table(d / "in" / f"heh_v{a['v'][i]}_J{a['J'][i]}.txt",
                         XsecTable(NAME, int(a["v"][i]), int(a["J"][i]), lam, s,
                                   float(a["energy_hartree"][i])), allow_missing=True)
    np.savez(d / "truth.npz", status=status.astype(str), **a)
    print(f"{n} levels; hidden: v {sorted(int(x) for x in hide_v)}, {hide_lev.size} levels, "
          f"gaps in {gap_lev.size} levels, a row cut from {cut_lev.size}")


def score(d: Path, out_json: Path):
    t = np.load(d / "truth.npz", allow_pickle=False)
    sig, status = t["sigma_cm2"], t["status"]
    u = pd.read_csv(d / "out" / "uncertainty.csv")
    pos = {(int(v), int(J)): i for i, (v, J) in enumerate(zip(t["v"], t["J"]))}
    lev = np.array([pos[(v, J)] for v, J in zip(u.v, u.J)])
    k = np.searchsorted(t["wavelength_nm"], u.wavelength_nm.to_numpy() * (1 - 1e-12))
    filled = np.full(sig.shape, np.nan)
    unc = np.zeros(sig.shape + (2,))
    filled[lev, k] = u.sigma_cm2
    unc[lev, k, 0], unc[lev, k, 1] = u.unc68_dex, u.unc95_dex
    known = status == "known"
    logs = np.log(np.where(known, sig, 1.0))
    region = sig > 1e-3 * sig.max(axis=1, keepdims=True)
    rep = json.loads((d / "out" / "report.json").read_text())
    res = {"command": "reports/xsec_completion/run.sh", "molecule": NAME, "J_max": J_MAX,
           "n_wavelengths": N_LAM, "curves": "upper +0.03 eV, dipole x 1.03 (the table's); "
           "the prior uses the package's, calibrated on the known rows",
           "threshold": 1e-3, "geometries": {}, "completion_report": rep}
    for g in xc.GEOMETRIES:
        holes = status == g
        m = holes & region
        interp = np.exp(xc.interpolate(logs, known, holes, t["v"], t["J"], t["energy_hartree"],
                                       t["wavelength_nm"], g))
        dex = np.abs(np.log10(filled[m] / sig[m]))
        res["geometries"][g] = {
            "rows": int(holes.sum()), "scored_points": int(m.sum()),
            "estimator": rep["molecules"][NAME]["geometries"][g]["chosen"],
            "filled_median_rel": float(np.median(np.abs(filled[m] / sig[m] - 1))),
            "interpolation_median_rel": float(np.median(np.abs(interp[m] / sig[m] - 1))),
            "coverage_68": float(np.mean(dex <= unc[m][:, 0])),
            "coverage_95": float(np.mean(dex <= unc[m][:, 1])),
            "held_out_scores": rep["molecules"][NAME]["geometries"][g]["scores"],
            "cross_fitted_coverage": rep["molecules"][NAME]["geometries"][g][
                "coverage_cross_fitted"]}
        r = res["geometries"][g]
        print(f"{g}: {r['rows']} rows by {r['estimator']}: median {100 * r['filled_median_rel']:.3g}"
              f" % (interpolation {100 * r['interpolation_median_rel']:.3g} %), coverage 68 % "
              f"{r['coverage_68']:.2f}, 95 % {r['coverage_95']:.2f}")
    out_json.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["make", "score"])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--json", default="reports/xsec_completion/heh_perturbed.json")
    args = ap.parse_args()
    make(Path(args.dir)) if args.what == "make" else score(Path(args.dir), Path(args.json))
