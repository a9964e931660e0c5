"""Summary table of the collected stage-basis evaluations (run by collect.sh -> summary.md)."""

import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
RUNS = [("sb", "6 elements, held-out nodes"), ("sb_rows", "6 elements, held-out T rows"),
        ("sb_random", "6 elements, random 90/10"),
        ("sb_seed1", "6 elements, held-out nodes, other model atom (generator seed 1)"),
        ("sb_seed1_nocorr", "same, learned correction off (prior fractions only)"),
        ("sb_nocorr", "6 elements, held-out nodes, correction off"),
        ("sb_ipd", "6 elements, held-out nodes, continuum-lowered generator (Debye)"),
        ("sb_ipd_nocorr", "same, learned correction off"),
        ("sb_linear", "6 elements, held-out nodes, linear stage fit (before log refinement)"),
        ("sb_cpu", "28 elements, held-out nodes"), ("sb_cpu_rows", "28 elements, held-out T rows"),
        ("sb_cpu_random", "28 elements, random 90/10"),
        ("sb_cpu_linear", "28 elements, held-out nodes, linear stage fit (before log refinement)")]


def pct(x):
    return "n/a" if x is None else (f"{100 * x:.3g} %" if 100 * x < 1e6 else "> 1e6 %")


def row(name, b, best):
    g = lambda blk, k: blk.get(k) if blk else None
    return (f"| {name} | {b['n']} | {b['rmse_mean']:.4g} | {b['rmse_mean'] / best:.3g} | "
            f"{pct(g(b['planck_rel_covered'], 'median'))} | {pct(g(b['planck_rel_covered'], 'p95'))} | "
            f"{b['planck_dex']['median']:.3g} | {b['planck_dex']['p95']:.3g} | "
            f"{b['rosseland_dex']['p95']:.3g} |")


def main():
    out = ["| run | method | n | RMSE [cm^2/g] | RMSE / best interpolant | Planck median (covered) | "
           "Planck p95 (covered) | dlog10 kP median | dlog10 kP p95 | dlog10 kR p95 |",
           "|---" * 10 + "|"]
    for run, label in RUNS:
        f = HERE / run / "metrics.json"
        if not f.exists():
            continue
        h = json.loads(f.read_text())["honest"]
        base = {k: v for k, v in h.items() if k.startswith("baseline_") and v["n"] > 0}
        best_name = min(base, key=lambda k: base[k]["rmse_mean"])
        best = base[best_name]["rmse_mean"]
        out.append(row(f"{label} | {best_name} (best interpolant by RMSE)", base[best_name], best))
        out.append(row(f"{label} | stage_basis", h["stage_basis"], best))
        off = HERE / run / "offgrid.json"
        if off.exists():
            o = json.loads(off.read_text())["honest"]
            b0 = o["baseline_bilinear_table"]["rmse_mean"]
            out.append(row(f"{label}, off-grid points | bilinear lookup of the full table",
                           o["baseline_bilinear_table"], b0))
            out.append(row(f"{label}, off-grid points | stage_basis", o["stage_basis"], b0))
    print("\n".join(out))


if __name__ == "__main__":
    sys.exit(main())
