"""Headline numbers of README.md, BUILD.md, BENCHMARKS.md and reports/ against their result files.

Each entry names a quoted number in a markdown file (a table cell found by its row label and
column, or the first group of a regular expression) and the committed result file that holds it
(a JSON key path, or a regular expression over a text file), with the factor from the file's
unit to the quoted one (100 for a fraction quoted in %). The quoted number must equal the file's
value rounded to the digits it is printed with, so a re-run that changes a result file without
the text, or an edit of the text alone, fails here. reports/AUDIT.md lists what was checked by
hand beyond these entries. Reads only small files: well under a second, no training.
"""

import json
import math
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SB = "reports/stage_basis/sb/metrics.json"
SB_CPU = "reports/stage_basis/sb_cpu/metrics.json"
CAE = "reports/stage_basis/cae_default/metrics.json"
OFF = "reports/stage_basis/sb/offgrid.json"
OFF_CPU = "reports/stage_basis/sb_cpu/offgrid.json"
ENS5 = "reports/inverse/classifier_cpu_ensemble5.json"
CLF = "reports/inverse/classifier_cpu.json"
REF = "reports/inverse_refinement/refine.json"
AL = "reports/active_learning/active_learning.json"
GROUPS = "reports/export/sb_groups.json"
INT = "reports/stage_basis_intervals/ensemble_calibration.json"

# The five columns of the README's table and of reports/stage_basis/README.md's headline table:
# RMSE [cm^2/g], Planck median and p95 on band-covered nodes [%], |dlog10| p95 of kP and kR [dex].
_COLS = [("rmse_mean", 1.0), ("planck_rel_covered/median", 100.0),
         ("planck_rel_covered/p95", 100.0), ("planck_dex/p95", 1.0), ("rosseland_dex/p95", 1.0)]


def _readme_table():
    rows = [("4-neighbour mean", SB, "baseline_4_neighbour_mean"),
            ("bilinear log κ", SB, "baseline_bilinear_log"),
            ("log interpolation along ρ (best interpolant)", SB, "baseline_log_interp_rho"),
            ("CAE + MLP (thesis design", CAE, "cae+mlp"),
            ("Saha-structured surrogate", SB, "stage_basis")]
    return [("README.md", ("row", label, col + 2), (src, f"honest/{method}/{key}"), scale)
            for label, src, method in rows for col, (key, scale) in enumerate(_COLS)]


def _stage_basis_headline():
    labels = ["RMSE [cm²/g]", "Planck median, band-covered", "Planck p95, band-covered",
              "abs Δlog10 κ_P p95, all nodes", "abs Δlog10 κ_R p95, all nodes"]
    cols = [(SB, "baseline_log_interp_rho"), (SB, "stage_basis"),
            (SB_CPU, "baseline_log_interp_rho"), (SB_CPU, "stage_basis")]
    return [("reports/stage_basis/README.md", ("row", label, j + 2),
             (src, f"honest/{method}/{_COLS[i][0]}"), _COLS[i][1])
            for i, label in enumerate(labels) for j, (src, method) in enumerate(cols)]


def _active_learning_table():
    out = []
    for label, strategy in (("active: test RMS log10 error [dex]", "active"), ("random", "random")):
        for j in range(7):          # 16, 24, ..., 64 spectra: every second point of the curve
            out.append(("reports/active_learning/README.md", ("row", label, j + 2),
                        (AL, f"mean_curves/{strategy}/rms_dex_mean/{2 * j}"), 1.0))
    return out


def _refinement_table():
    keys = [("t_rmse_ev", 3), ("t_rmse_dex", 4), ("log_rho_rmse_dex", 5),
            ("log_rho_rmse_dex_by_zbar/zbar>=0.05/rmse_dex", 6),
            ("log_rho_rmse_dex_by_zbar/zbar<0.05/rmse_dex", 7)]
    return [("reports/inverse_refinement/README.md", ("row", label, col), (REF, f"{part}/{key}"), 1.0)
            for label, part in (("classifier", "before"), ("classifier + refinement", "after"))
            for key, col in keys]


_CLEAN = "conditions/clean/classifier"
ENTRIES = (
    _readme_table()
    + [
        ("README.md", ("re", r"6 min (\d+) s on a 2-core CPU"),
         ("reports/stage_basis/main_job_timing.txt", r"real\s+6m([\d.]+)s"), 1.0),
        ("README.md", ("re", r"the (\d+) of 228 nodes whose"), (SB, "honest/stage_basis/n_band_covered"), 1.0),
        ("README.md", ("re", r"its median Planck\nerror is ([\d.]+) %"),
         (OFF, "honest/stage_basis/planck_rel_covered/median"), 100.0),
        ("README.md", ("re", r"against ([\d.]+) % for a bilinear lookup"),
         (OFF, "honest/baseline_bilinear_table/planck_rel_covered/median"), 100.0),
        ("BUILD.md", ("re", r"median \|rel\| ([\d.]+),"), (GROUPS, "errors/rel/median"), 1.0),
        ("BUILD.md", ("re", r"95th percentile ([\d.]+),"), (GROUPS, "errors/rel/p95"), 1.0),
        ("BUILD.md", ("re", r"median ([\d.]+) dex;"), (GROUPS, "errors/dex/median"), 1.0),
        ("BUILD.md", ("re", r"the floor is ([\d.]+) dex overall"), (CLF, "log_rho_information_floor/0/rmse_dex"), 1.0),
        ("BUILD.md", ("re", r"(\d+) min of training on 2 cores \(reports/inverse/ablation_single_seed"),
         ("reports/inverse/ablation_single_seed.json", "SUM_SECONDS"), 1.0 / 60.0),
        ("BUILD.md", ("re", r"\(([\d.]+) M parameters per element"),
         ("reports/benchmark_cpu/fullres_cae_size.json", "parameters_per_element"), 1e-6),
        ("BUILD.md", ("re", r"(\d+) MFLOP per spectrum forward"),
         ("reports/benchmark_cpu/fullres_cae_size.json", "forward_flops_per_spectrum"), 1e-6),
        ("BUILD.md", ("re", r"dataset \(([\d.]+) GB of float32 kappa"),
         ("reports/benchmark_cpu/fullres_cae_size.json", "dataset_kappa_float32_bytes"), 1e-9),
        ("BUILD.md", ("re", r"\| 20 MB \| ([\d.]+) GB \|"),
         ("reports/dataset/make_dataset_200.txt", r"Maximum resident set size \(kbytes\): (\d+)"), 1e-6),
        ("reports/inverse/README.md", ("re", r"T RMSE\n([\d.]+) eV"), (ENS5, f"{_CLEAN}/t_rmse_ev"), 1.0),
        ("reports/inverse/README.md", ("re", r"log rho RMSE ([\d.]+) dex overall"),
         (ENS5, f"{_CLEAN}/log_rho_rmse_dex"), 1.0),
        ("reports/inverse/README.md", ("re", r"dex overall, ([\d.]+) dex where Zbar >= 0.05"),
         (ENS5, f"{_CLEAN}/log_rho_rmse_dex_by_zbar/zbar>=0.05/rmse_dex"), 1.0),
        ("reports/inverse/README.md", ("re", r"gives ([\d.]+) dex on the same test spectra"),
         (CLF, "log_rho_information_floor/0/rmse_dex"), 1.0),
        ("reports/inverse/README.md", ("re", r"\((\d+) of 1288"),
         (CLF, f"{_CLEAN}/log_rho_rmse_dex_by_zbar/zbar<0.05/n"), 1.0),
        ("reports/stage_basis/README.md", ("re", r"28 el\.: Planck median / p95 \(covered\) \| ([\d.]+) %"),
         (OFF_CPU, "honest/baseline_bilinear_table/planck_rel_covered/median"), 100.0),
        ("reports/stage_basis/README.md", ("re", r"28 el\.: RMSE \[cm²/g\] \| \d+ \| ([\d.]+)"),
         (OFF_CPU, "honest/stage_basis/rmse_mean"), 1.0),
        ("README.md", ("re", r"intervals cover ([\d.]+) % of held-out bins"),
         (INT, "quantities/log_kappa/test/coverage_0.95"), 100.0),
        ("README.md", ("re", r"bins and ([\d.]+) % of\nheld-out Planck"),
         (INT, "quantities/log_planck/test/coverage_0.95"), 100.0),
        ("README.md", ("re", r"half-width is ([\d.]+) and [\d.]+ x the median"),
         (INT, "quantities/log_kappa/test/efficiency_0.95"), 1.0),
        ("README.md", ("re", r"half-width is [\d.]+ and ([\d.]+) x the median"),
         (INT, "quantities/log_planck/test/efficiency_0.95"), 1.0),
    ]
    + [("reports/stage_basis_intervals/README.md", ("row", q, col), (INT, f"quantities/{q}/{key}"),
        scale)
       for q in ("log_kappa", "log_planck", "log_rosseland")
       for col, key, scale in ((5, "test/coverage_0.95", 100.0), (6, "test/efficiency_0.95", 1.0),
                               (4, "test/coverage_0.68", 100.0))]
    + [("reports/stage_basis_intervals/README.md", ("row", f"{q}, refit", col),
        ("reports/stage_basis_intervals/refit_corrections/ensemble_calibration.json",
         f"quantities/{q}/{key}"), scale)
       for q in ("log_kappa", "log_planck", "log_rosseland")
       for col, key, scale in ((5, "test/coverage_0.95", 100.0), (6, "test/efficiency_0.95", 1.0),
                               (4, "test/coverage_0.68", 100.0))]
    + _stage_basis_headline() + _active_learning_table() + _refinement_table()
)


def _number(text: str) -> float:
    """Leading number of a printed cell or match ('419.3 (0.10×)' -> 419.3, '32,277' -> 32277)."""
    m = re.match(r"\s*(nan|inf|[-+]?[\d,]*\.?\d+(?:e[-+]?\d+)?)", text)
    assert m, f"no number at the start of {text!r}"
    return float(m.group(1).replace(",", ""))


def _half_unit(text: str) -> float:
    """Half a unit in the last printed digit; trailing zeros of an integer are not significant."""
    s = re.match(r"\s*([-+]?[\d,]*\.?\d+(?:e[-+]?\d+)?)", text).group(1).replace(",", "")
    mant, _, exp = s.partition("e")
    if "." in mant:
        ulp = 10.0 ** -len(mant.split(".")[1])
    else:
        ulp = 10.0 ** (len(mant) - len(mant.rstrip("0"))) if mant.strip("0") else 1.0
    return 0.5 * ulp * 10.0 ** int(exp or 0)


def _quoted(md: str, where) -> str:
    text = (ROOT / md).read_text()
    if where[0] == "row":
        _, label, col = where
        table = [[c.strip() for c in ln.strip().strip("|").split("|")]
                 for ln in text.splitlines() if ln.startswith("|")]
        rows = [r for r in table if r[0] == label] or [r for r in table if r[0].startswith(label)]
        assert len(rows) == 1, f"{md}: {len(rows)} table rows labelled {label!r} (want one)"
        return rows[0][col - 1].replace("**", "")
    m = re.search(where[1], text)
    assert m, f"{md}: no text matches {where[1]!r}"
    return m.group(1)


def _source(path: str, key: str) -> float:
    if path.endswith(".txt"):
        m = re.search(key, (ROOT / path).read_text())
        assert m, f"{path}: no line matches {key!r}"
        return float(m.group(1))
    data = json.loads((ROOT / path).read_text())
    if key == "SUM_SECONDS":          # training seconds of every arm of an ablation run
        return sum(v for k, v in _leaves(data) if k.endswith("/seconds"))
    for part in key.split("/"):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return float(data)


def _leaves(d, prefix=""):
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _leaves(v, f"{prefix}/{k}")
    elif isinstance(d, (int, float)) and not isinstance(d, bool):
        yield prefix, d


@pytest.mark.parametrize("md, where, src, scale", ENTRIES,
                         ids=[f"{e[0]}:{e[1][1][:30]}:{e[2][1][-40:]}" for e in ENTRIES])
def test_quoted_number_equals_its_result_file(md, where, src, scale):
    quoted = _quoted(md, where)
    value = _source(*src) * scale
    if quoted.startswith("nan"):
        assert math.isnan(value), f"{md} quotes {quoted!r}, {src[0]} holds {value}"
        return
    tol = _half_unit(quoted)
    assert abs(value - _number(quoted)) <= tol * (1 + 1e-9), (
        f"{md} quotes {quoted!r}; {src[0]} [{src[1]}] x {scale} = {value:.6g} "
        f"(allowed: +- {tol:g}, half a unit of the last printed digit)")


def test_half_unit_follows_the_printed_digits():
    assert _half_unit("0.0021 %") == pytest.approx(5e-5)
    assert _half_unit("16740") == pytest.approx(5.0)
    assert _half_unit("419") == pytest.approx(0.5)
    assert _half_unit("1.674e+04") == pytest.approx(5.0)
    assert _half_unit("32,277") == pytest.approx(0.5)
    # A value off by more than its printed precision must be caught.
    assert abs(0.0032 - _number("0.0021")) > _half_unit("0.0021")


def test_benchmarks_cpu_section_is_the_committed_benchmark_md():
    """BENCHMARKS.md's CPU section is reports/benchmark_cpu/benchmark.md verbatim."""
    bench = (ROOT / "reports/benchmark_cpu/benchmark.md").read_text().strip()
    assert bench in (ROOT / "BENCHMARKS.md").read_text()


def test_calibrated_prior_arms_share_the_interpolation_errors_of_reports_xsec_prior():
    """reports/xsec_prior_calibrated/README.md: six ions, same held-out rows as reports/xsec_prior,
    so the interpolation baseline's per-molecule medians must be the same numbers."""
    arms = json.loads((ROOT / "reports/xsec_prior/report.json").read_text())["arms"]
    for split in ("levels", "v_levels", "wavelength_windows"):
        cal = json.loads((ROOT / f"reports/xsec_prior_calibrated/{split}.json").read_text())
        ref = arms[f"{split}__xsec_prior_perturbed__continuous"]["per_molecule"]
        assert set(cal["per_molecule"]) == set(ref) - {"Na2+"}
        for mol, m in cal["per_molecule"].items():
            assert m["baseline"]["median_rel"] == pytest.approx(
                ref[mol]["baseline"]["median_rel"], rel=1e-12, abs=0), (split, mol)
