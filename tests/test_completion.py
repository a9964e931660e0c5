"""Table completion: known entries untouched, masks and NaNs, bad tables, baselines, JLODK,
new grid values, filled holes against the hidden truth, the gap-size scaling of sigma."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from opacity_jax import completion as C
from opacity_jax import config_files
from opacity_jax.data import io
from opacity_jax.errors import DataFormatError

# ../shared/data beside the repository; OPACITY_JAX_SHARED_DATA points elsewhere (a checkout
# in another folder).
JLODK = Path(os.environ.get("OPACITY_JAX_SHARED_DATA",
                            Path(__file__).resolve().parents[2] / "shared" / "data")) / \
    "jlodk_planck_mean"
_CONFIG = config_files.load("complete")
BASE = dict(_CONFIG.completion.to_dict(), seed=int(_CONFIG.seed))   # as completion.run builds it
TINY = dict(BASE, members=2, hidden=(16, 16), target_samples=1500, max_realisations=3,
            train=dict(BASE["train"], epochs=3, batch_size=256, patience=0, plateau_patience=0))


def _synthetic(seed=0, holes=0.2):
    """(4, 6, 9) table: smooth log bb, es with exact zeros at the cold end; NaN holes."""
    rng = np.random.default_rng(seed)
    ye = np.array([0.1, 0.2, 0.3, 0.4])
    t = np.array([0.5, 1.0, 2.0, 4.0, 8.0, 16.0])
    temp = np.linspace(1000.0, 5000.0, 9)
    y, tt, tk = np.meshgrid(ye, t, temp, indexing="ij")
    bb = 10 ** (1.0 - 3 * y - 0.5 * np.log10(tt) + (tk / 5000.0) ** 2)
    es = np.where(tk < 2000, 0.0, 1e-3 * (tk / 5000.0) ** 3)
    miss = rng.random(bb.shape) < holes
    return C.GridTable(("Ye", "time_days", "temperature_k"), (ye, t, temp),
                       {"bb": np.where(miss, np.nan, bb), "es": np.where(miss, np.nan, es)}), \
        miss, bb, es


@pytest.fixture(scope="module")
def completed():
    table, miss, bb, es = _synthetic()
    res = C.complete(table, TINY)
    return table, miss, bb, es, res


def test_completion_leaves_known_entries_untouched(completed):
    table, miss, bb, es, res = completed
    assert np.array_equal(res.missing, miss)
    for name, truth in (("bb", bb), ("es", es)):
        # Bit-for-bit: the same float64 values, not merely close.
        assert np.array_equal(res.channels[name][~miss], truth[~miss])
        assert np.all(np.isfinite(res.channels[name])) and np.all(res.channels[name] >= 0)
        assert np.all(res.sigma[name][~miss] == 0) and np.all(res.sigma[name][miss] > 0)
    np.testing.assert_array_equal(res.total, res.channels["bb"] + res.channels["es"])
    assert np.all(np.isnan(res.log_mean["total"][~miss]))
    rep = res.report
    assert rep["n_missing"] == int(miss.sum()) and rep["pattern"] == "random"
    assert set(rep["calibration"]) == {"bb", "es", "total"}
    assert rep["log_floor"]["es"] == pytest.approx(0.1 * es[es > 0].min())
    assert not np.isnan(rep["zero_threshold_log10"]["es"])
    assert np.isnan(rep["zero_threshold_log10"]["bb"])       # bb has no exact zeros


def test_log_transform_handles_exact_zeros():
    ch = {"es": np.array([0.0, 1e-3, 2e-3, 0.0])}
    lt = C.LogTransform.fit(ch, np.ones(4, bool))
    y = lt.forward("es", ch["es"])
    assert y[0] == pytest.approx(-4.0) and y[1] == pytest.approx(-3.0)
    back = lt.inverse("es", y)
    assert back[0] == 0.0 and back[3] == 0.0 and back[1] == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="no positive known value"):
        C.LogTransform.fit({"x": np.zeros(3)}, np.ones(3, bool))


def test_text_table_nan_and_absent_rows_roundtrip(tmp_path, completed):
    table, miss, bb, es, res = completed
    p = tmp_path / "t.csv"
    lines = ["# log10_rho, T, kappa"]
    for r in (-14.0, -13.0, -12.0, -11.0, -10.0):
        for t in (1000.0, 2000.0, 3000.0, 4000.0, 5000.0, 6000.0):
            if (r, t) == (-13.0, 3000.0):
                continue                                    # absent row = missing entry
            k = "nan" if (r, t) == (-12.0, 2000.0) else f"{10 ** (r / 4) * t / 1000:.6e}"
            lines.append(f"{r}, {t}, {k}")
    p.write_text("\n".join(lines) + "\n")
    tab = C.read_text_table(p)
    assert tab.axis_names == ("log10_rho", "T") and tab.shape == (5, 6)
    assert tab.log_axes == (False, False)
    m = tab.missing()
    assert m.sum() == 2 and m[1, 2] and m[2, 1]
    res2 = C.complete(tab, dict(TINY, target_samples=50))
    assert np.all(np.isfinite(res2.channels["kappa"]))
    out = C.write_outputs(tab, res2, tmp_path / "out")
    back = C.read_text_table(out["table"], value_columns=["kappa", "sigma_log10_kappa"])
    np.testing.assert_allclose(back.channels["kappa"][~m], tab.channels["kappa"][~m], rtol=1e-9)
    assert np.all(back.channels["sigma_log10_kappa"][~m] == 0)
    assert (tmp_path / "out" / "report.json").exists()
    assert (tmp_path / "out" / "reliability.png").exists()


def test_mask_file_applied_and_checked(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("# x y k\n" + "\n".join(f"{x} {y} {1 + x + y}" for x in range(3)
                                          for y in range(4)) + "\n")
    mask = np.zeros((3, 4), bool)
    mask[1, 1] = True
    np.save(tmp_path / "m.npy", mask)
    tab = C.read_table(p, tmp_path / "m.npy")
    assert tab.missing().sum() == 1 and np.isnan(tab.channels["k"][1, 1])
    np.save(tmp_path / "bad.npy", np.zeros((2, 4), bool))
    with pytest.raises(DataFormatError, match=r"mask has shape \(2, 4\), the table has \(3, 4\)"):
        C.read_table(p, tmp_path / "bad.npy")
    np.save(tmp_path / "vals.npy", np.full((3, 4), 0.5))
    with pytest.raises(DataFormatError, match="booleans or 0/1"):
        C.read_table(p, tmp_path / "vals.npy")
    with pytest.raises(FileNotFoundError, match="no such mask file"):
        C.read_table(p, tmp_path / "nope.npy")


@pytest.mark.parametrize("body, match", [
    ("# x k\n1 2\n2 -3\n", "line 3.*negative or infinite"),
    ("# x k\n1 2\n1 3\n", "line 3.*duplicate grid point"),
    ("# x k\n1 2\n2 abc\n", "line 3.*non-numeric value 'abc'"),
    ("# x y k\n1 2\n", "header names 3 columns"),
    ("# x k\n1 2\n2 3 4\n", "line 3.*expected 2 columns"),
    ("# only a header\n", "no numeric rows"),
    ("# x k\nnan 2\n", "non-finite coordinate"),
])
def test_bad_text_tables_give_clear_errors(tmp_path, body, match):
    p = tmp_path / "bad.txt"
    p.write_text(body)
    with pytest.raises(DataFormatError, match=match) as e:
        C.read_text_table(p)
    assert str(p) in str(e.value)


def test_bad_tables_and_configs_rejected(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such table"):
        C.read_table(tmp_path / "missing_dir")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFormatError, match="no Ye<value> folders"):
        C.read_table(tmp_path / "empty")
    with pytest.raises(ValueError, match="negative value"):
        C.GridTable(("x",), (np.arange(3.0),), {"k": np.array([1.0, -1.0, 2.0])})
    with pytest.raises(ValueError, match="strictly increasing"):
        C.GridTable(("x",), (np.array([0.0, 0.0, 1.0]),), {"k": np.ones(3)})
    with pytest.raises(ValueError, match="unknown completion config keys"):
        C.completion_config(dict(BASE, bogus=1))
    with pytest.raises(ValueError, match="pattern"):
        C.completion_config(dict(BASE, pattern="diagonal"))
    # The defaults live only in configs/complete.py: a key left out is an error naming it.
    with pytest.raises(ValueError, match=r"lacks keys \['beta'\]"):
        C.completion_config({k: v for k, v in BASE.items() if k != "beta"})
    with pytest.raises(ValueError, match="no completion config"):
        C.complete(C.GridTable(("x",), (np.arange(3.0),), {"k": np.ones(3)}), None)
    few = C.GridTable(("x",), (np.arange(5.0),), {"k": np.array([1.0, np.nan, 2, 3, 4])})
    with pytest.raises(ValueError, match="only 4 known entries"):
        C.complete(few, TINY)


def test_baselines_and_neighbour_features():
    x = np.array([0.0, 1.0, 3.0, 4.0])
    v = np.tile(2.0 * x, (2, 1))
    known = np.array([[True, False, True, True], [False, True, False, True]])
    out = C.interp_along_axis(v, known, x, axis=-1)
    np.testing.assert_allclose(out[0], 2 * x)                  # linear data: exact
    assert out[1, 0] == 2.0 and out[1, 2] == pytest.approx(6.0)   # constant below the first
    three = np.stack([np.zeros(3), np.ones(3), 4 * np.ones(3)])
    np.testing.assert_allclose(C.neighbour_slice_mean(three, 1), 2.0)
    with pytest.raises(IndexError, match="no neighbour on both sides"):
        C.neighbour_slice_mean(three, 0)
    k = np.array([True, False, True, False, False, True])
    idx = C._neighbour_indices(k, 0, rank=2)
    np.testing.assert_array_equal(idx["lo"][0], [-1, 0, 0, 2, 2, 2])
    np.testing.assert_array_equal(idx["lo"][1], [-1, -1, -1, 0, 0, 0])
    np.testing.assert_array_equal(idx["hi"][0], [2, 2, 5, 5, 5, -1])
    np.testing.assert_array_equal(idx["hi"][1], [5, 5, -1, -1, -1, -1])


def test_pattern_detection_and_scenarios():
    m = np.zeros((4, 3, 5, 6), bool)
    assert C.detect_pattern(m) == "random"
    m[1] = True
    assert C.detect_pattern(m) == "slice"
    r = np.zeros((4, 3, 5, 6), bool)
    r[0, 1, :, 2] = True
    r[2, 0, :, 4] = True
    assert C.detect_pattern(r) == "rows"
    known = np.ones((4, 3, 5, 6), bool)
    (name, rows), = C.scenario_masks("rows", known, seed=1, fraction=0.5)
    assert rows.any() and not rows[..., 0].any() and not rows[..., -1].any()
    assert np.all(rows.all(axis=-2) == rows.any(axis=-2))      # whole rows only
    sl = C.scenario_masks("ye_slice", known)
    assert [n for n, _ in sl] == ["ye_slice_1", "ye_slice_2"] and sl[0][1][1].all()
    with pytest.raises(ValueError, match="unknown evaluation scenario"):
        C.scenario_masks("diagonal", known)


def test_slice_pattern_held_out_slices_and_estimator_choice():
    table, _, bb, es = _synthetic(holes=0.0)
    for v in table.channels.values():
        v[2] = np.nan
    res = C.complete(table, TINY)
    rep = res.report
    assert rep["pattern"] == "slice"
    sel = rep["slice_selection"]
    # Visible Ye slices 0, 1, 3: the only interior one (1) is held out, gap sqrt(0.1 * 0.2).
    assert [c["hidden"] for c in sel["configurations"]] == [[0.2]]
    assert sel["configurations"][0]["gaps"] == [pytest.approx(np.sqrt(0.1 * 0.2))]
    # log bb and es are linear in Ye: interpolating each channel along Ye is exact, so the
    # selection must pick it (the network cannot beat zero error).
    assert sel["chosen"] == "interp_channels"
    assert sel["scores"]["interp_channels"] < 1e-9 < sel["scores"]["network"]
    np.testing.assert_allclose(res.channels["bb"][2], bb[2], rtol=1e-9)
    np.testing.assert_allclose(res.channels["es"][2], es[2], rtol=1e-9, atol=1e-30)
    assert np.all(res.sigma["total"][2] > 0)
    assert np.array_equal(res.channels["bb"][[0, 1, 3]], bb[[0, 1, 3]])
    (part,) = rep["parts"]
    assert part["estimator"] == "interp_channels" and part["n"] == bb[2].size
    # One measured gap: the exponent is the prior; the filled gap 0.1 is extrapolated from it.
    g = sel["gap_model"]["total"]
    assert g["exponent_source"] == "prior" and g["exponent"] == TINY["gap_exponent_prior"]
    assert part["gaps"] == [pytest.approx(0.1)]


def _curved_ye_table():
    """(4, 3, 8) table with log10 bb quadratic in Ye (curvature 30 dex / Ye^2): linear
    interpolation along Ye errs by 15 * d_lo * d_hi dex, which the filled values can beat."""
    ye = np.array([0.1, 0.2, 0.3, 0.4])
    t = np.array([1.0, 2.0, 4.0])
    temp = np.linspace(2000.0, 9000.0, 8)
    y, tt, tk = np.meshgrid(ye, t, temp, indexing="ij")

    def bb_of(y, tt, tk):
        return 10 ** (1.0 - 3 * y + 15 * (y - 0.25) ** 2 - 0.5 * np.log10(tt) + tk / 9000.0)
    es = 1e-3 * (tk / 9000.0) ** 3
    return (C.GridTable(("Ye", "time_days", "temperature_k"), (ye, t, temp),
                        {"bb": bb_of(y, tt, tk), "es": es}), bb_of)


def test_add_ye_fills_new_slices_between_neighbours_and_rejects_extrapolation():
    table, bb_of = _curved_ye_table()
    new = C.add_grid_values(table, {"add": ["Ye=0.15:0.25:0.35"]})
    assert new.axes[0].tolist() == pytest.approx([0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4])
    assert np.array_equal(new.channels["bb"][[0, 2, 4, 6]], table.channels["bb"])
    assert np.all(np.isnan(new.channels["bb"][[1, 3, 5]]))
    res = C.complete(new, TINY)
    tot = np.log10(res.total)
    lo, hi = tot[[0, 2, 4]], tot[[2, 4, 6]]
    filled = tot[[1, 3, 5]]
    # The new slices lie between their neighbours (log total; 1e-9 dex of round-off).
    assert np.all(filled >= np.minimum(lo, hi) - 1e-9) and np.all(filled <= np.maximum(lo, hi)
                                                                  + 1e-9)
    # Against the generator's truth: no worse than the geometric mean of the neighbours.
    _, tt, tk = np.meshgrid(new.axes[0], *new.axes[1:], indexing="ij")
    truth = np.log10(bb_of(new.axes[0][:, None, None], tt, tk) + 1e-3 * (tk / 9000.0) ** 3)
    err = np.abs(filled - truth[[1, 3, 5]])
    err_gm = np.abs(0.5 * (lo + hi) - truth[[1, 3, 5]])
    assert np.median(err_gm) > 0.01       # the test table is curved enough to matter
    assert np.median(err) <= 1.05 * np.median(err_gm)
    assert res.report["parts"][0]["gaps"] == [pytest.approx(0.05)]
    for bad, match in ((["Ye=0.45"], r"--add=Ye=0.45: outside the known Ye range; new values "
                                     r"must lie strictly between 0.1 and 0.4"),
                       (["Ye=0.1"], r"--add=Ye=0.1: outside the known Ye range"),
                       (["Ye=0.2"], r"Ye = 0.2 is already a grid value"),
                       (["Ye=0.15:0.15"], "given twice"),
                       (["rho=1"], "no axis 'rho'"),
                       (["Ye=x"], "'x' is not a number"),
                       (["Ye=0.15", "temperature_k=3000"], "one axis per run")):
        with pytest.raises(ValueError, match=match):
            C.add_grid_values(table, {"add": bad})
    with pytest.raises(ValueError, match="--add-ye applies to JLODK folders"):
        C.add_grid_values(table, {"add-ye": ["0.15"]})


def test_new_temperature_value_is_a_slice_of_that_axis():
    # The synthetic table's log bb is quadratic in T: a new T between two known ones is a
    # whole missing slice of the T axis, held out and filled along T, not along Ye.
    table, _, bb, es = _synthetic(holes=0.0)
    new = C.add_grid_values(table, {"add": ["temperature_k=3250"]})
    i = int(np.flatnonzero(new.axes[2] == 3250.0)[0])
    assert C.missing_slices(new.missing()) == {2: [i]}
    res = C.complete(new, dict(TINY, gap_runs=[1]))
    sel = res.report["slice_selection"]
    assert sel["axis"] == "temperature_k"
    assert all(c["hidden"] and all(h not in (1000.0, 5000.0) for h in c["hidden"])
               for c in sel["configurations"])
    y, tt = np.meshgrid(new.axes[0], new.axes[1], indexing="ij")
    truth = np.log10(10 ** (1.0 - 3 * y - 0.5 * np.log10(tt) + (3250 / 5000.0) ** 2)
                     + 1e-3 * (3250 / 5000.0) ** 3)
    lo, hi = np.log10(res.total[..., i - 1]), np.log10(res.total[..., i + 1])
    err = np.abs(np.log10(res.total[..., i]) - truth)
    err_gm = np.abs(0.5 * (lo + hi) - truth)
    assert np.median(err_gm) > 1e-3
    assert np.median(err) <= 1.05 * np.median(err_gm)


def test_bin_complete_add_ye_out_of_range_is_one_clear_error(tmp_path):
    if not JLODK.is_dir():
        pytest.skip(f"reference data not found at {JLODK} (../shared/data is not shipped)")
    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(repo), JAX_PLATFORMS="cpu")
    p = subprocess.run([sys.executable, str(repo / "bin" / "complete"), f"--input={JLODK}",
                        "--add-ye=0.15,0.45", f"--output={tmp_path / 'out'}"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 1
    assert p.stderr.strip() == ("bin/complete: --add-ye=0.45: outside the known Ye range; new "
                                "values must lie strictly between 0.1 and 0.4 (completion does "
                                "not extrapolate)")
    assert not (tmp_path / "out").exists()


def test_gap_scale_model_recovers_a_known_error_law():
    # Residuals with sigma-scale A * g**p (p = 1.5) on gaps 2, 3, 4: the fit must recover p and
    # give 95 % coverage at the unseen gap 1 (an extrapolation, as for a new grid value).
    rng = np.random.default_rng(3)
    a_true, p_true = 0.7, 1.5

    def draw(g, n):
        sig = np.exp(rng.normal(0, 0.5, n))           # heteroscedastic raw sigma
        return np.full(n, g), a_true * g ** p_true * sig * rng.standard_normal(n), sig
    g, r, s = (np.concatenate(x) for x in zip(*(draw(g, 4000) for g in (2.0, 3.0, 4.0))))
    m = C.fit_gap_scale(g, r, s, levels=(0.95,), prior_exponent=1.0, bounds=(0.0, 2.0))
    assert m.exponent_source == "fit" and m.exponent == pytest.approx(p_true, abs=0.1)
    assert [pt["gap"] for pt in m.points] == [2.0, 3.0, 4.0]
    g1, r1, s1 = draw(1.0, 20000)
    cov = np.mean(np.abs(r1) <= 1.96 * s1 * m.scale(g1))
    assert 0.93 < cov < 0.97
    assert m.scale(1.0) == pytest.approx(a_true, rel=0.15)
    # One gap size: the prior exponent; a law steeper than the bounds is clipped.
    m1 = C.fit_gap_scale(g[g == 2.0], r[g == 2.0], s[g == 2.0], prior_exponent=1.0)
    assert m1.exponent_source == "prior" and m1.exponent == 1.0
    mc = C.fit_gap_scale(g, r * g ** 2, s, bounds=(0.0, 2.0))
    assert mc.exponent == 2.0 and mc.exponent_source.startswith("fit (clipped from 3.")


def test_sigma_power_compresses_an_overspread_sigma():
    # The raw sigma spreads too much (sigma_raw = sigma_true**2 / median): the exponent 0.5
    # undoes it, giving sharper intervals than a plain scale at the same 95 % coverage.
    rng = np.random.default_rng(5)
    true = np.exp(rng.normal(0, 0.7, 40000))
    raw = true ** 2
    r = true * rng.standard_normal(true.size)
    cal, test = slice(0, 20000), slice(20000, None)
    sp = C.fit_sigma_power(r[cal], raw[cal], levels=(0.95,))
    assert sp.gamma == pytest.approx(0.5, abs=0.11)
    cov = np.mean(np.abs(r[test]) <= 1.96 * sp.apply(raw[test]))
    assert 0.94 < cov < 0.96
    plain = C.fit_sigma_power(r[cal], raw[cal], gammas=(1.0,))
    assert C.interval_efficiency(r[test], sp.apply(raw[test])) < 0.9 * C.interval_efficiency(
        r[test], plain.apply(raw[test]))
    # Gaussian residuals of one known sigma: efficiency 1.96 / 0.674 = 2.91.
    z = rng.standard_normal(40000)
    assert C.interval_efficiency(0.3 * z, np.full(z.size, 0.3)) == pytest.approx(2.91, rel=0.03)


def test_local_gap_law_separates_position_from_gap_size():
    # The error scale depends on position x (10 ** x) and on the gap as gap**1.5, and the held-out
    # gaps grow with x (as log T gaps shrink with T): one power law mixes the two, the local one
    # recovers the exponent from same-position pairs and predicts a small gap at x = 0.5.
    rng = np.random.default_rng(7)
    xs, gs = [], []
    for x in np.linspace(0.0, 1.0, 6):
        g1 = 0.5 + x
        xs += [x, x]
        gs += [g1, np.sqrt(2) * g1]        # a slice alone and inside a run of two

    def draw(x, g, n=3000):
        return (np.full(n, x), np.full(n, g),
                10 ** x * g ** 1.5 * rng.standard_normal(n), np.ones(n))
    pos, gap, r, s = (np.concatenate(v) for v in zip(*(draw(x, g) for x, g in zip(xs, gs))))
    glob = C.fit_gap_scale(gap, r, s, levels=(0.95,), bounds=(0.0, 3.0))
    loc = C.fit_local_gap_scale(pos, gap, r, s, glob, bounds=(0.0, 3.0))
    assert loc is not None and loc.exponent == pytest.approx(1.5, abs=0.15)
    assert abs(glob.exponent - 1.5) > 0.5          # the pooled law is fooled
    x0, g0 = 0.5, 0.4                              # a new value: smaller gap than held out
    true = 10 ** x0 * g0 ** 1.5
    assert loc.scale(np.array([g0]), np.array([x0]))[0] == pytest.approx(true, rel=0.15)
    # Too few positions: no local law.
    few = pos < 0.3
    assert C.fit_local_gap_scale(pos[few], gap[few], r[few], s[few], glob) is None


def test_gap_configs_and_gap_sizes():
    assert C.gap_configs([0, 1, 2, 3], [1, 2]) == [(1, [1]), (2, [1, 2])]
    assert C.gap_configs([0, 2, 3], [1, 2]) == [(1, [2])]
    assert C.gap_configs(list(range(8)), [1, 3]) == [(1, [1, 3, 5]), (3, [1, 2, 3])]
    known = np.ones((6, 2), bool)
    known[[2, 3]] = False
    x = np.array([0.0, 1.0, 2.0, 4.0, 5.0, 7.0])
    q = np.argwhere(~known)
    g = C.slice_gaps(known, q, x, 0)
    # Slice 2 (x = 2): known neighbours at x = 1 and 5 -> sqrt(1 * 3); slice 3 (x = 4): sqrt(3 * 1).
    np.testing.assert_allclose(g, np.sqrt(3.0))
    assert np.isnan(C.slice_gaps(known, np.array([[0, 0]]), x, 0)[0])   # no neighbour below


@pytest.fixture(scope="module")
def jlodk_small():
    if not JLODK.is_dir():
        pytest.skip(f"reference data not found at {JLODK} (../shared/data is not shipped)")
    full = C.read_table(JLODK)
    # Two Ye x six times x every second density keep the test fast (9000 entries); the zeros
    # of column 4 stay real, and six times leave the time axis (the model's best
    # interpolant on JLODK) something to interpolate.
    sub = {n: v[1:3, :6, ::2].copy() for n, v in full.channels.items()}
    table = C.GridTable(full.axis_names, (full.axes[0][1:3], full.axes[1][:6], full.axes[2][::2],
                                          full.axes[3]),
                        sub, kind="jlodk", source=str(JLODK))
    return full, table


def test_real_jlodk_completion_written_in_the_input_format(tmp_path, jlodk_small):
    full, table = jlodk_small
    assert full.shape == (4, 21, 30, 50) and np.sum(full.channels["es"] == 0) > 0
    truth = {n: v.copy() for n, v in table.channels.items()}
    rng = np.random.default_rng(0)
    hide = rng.random(table.shape) < 0.05
    for v in table.channels.values():
        v[hide] = np.nan
    res = C.complete(table, TINY)
    paths = C.write_outputs(table, res, tmp_path)
    back = io.read_jlodk(paths["table"])                 # strict reader: total == bb + es
    for n, col in (("bb", back.kappa_bb), ("es", back.kappa_es)):
        assert np.array_equal(col[~hide], truth[n][~hide])     # 10 digits written: exact here
    zeros = (truth["es"] == 0) & ~hide
    assert zeros.any() and np.all(back.kappa_es[zeros] == 0)
    np.testing.assert_allclose(back.kappa_total, back.kappa_bb + back.kappa_es, rtol=1e-9)
    sig = np.load(paths["uncertainty_npz"])
    assert np.all(sig["sigma_log10_total"][~hide] == 0) and np.all(
        sig["sigma_log10_total"][hide] > 0)
    files = sorted((tmp_path / "uncertainty").glob("Ye*/Uncertainty_Log10_*.txt"))
    assert len(files) == 12
    # The T-interpolation baseline on real holes: finite and in a sane range.
    lv = np.log10(np.where(hide, np.nan, full.total()[1:3, :6, ::2]))
    b = C.interp_along_axis(lv, ~hide, table.axes[-1], query=hide)
    rel = np.abs(10 ** b[hide] / (truth["bb"] + truth["es"])[hide] - 1)
    assert np.all(np.isfinite(rel)) and 1e-4 < np.median(rel) < 0.2
    # Filled versus the hidden truth, against the best single-axis interpolation (log-linear
    # in each axis's feature coordinate; T here, 1.5 %). A briefly trained network only
    # corrects its reference interpolant: no better than it on 9000 entries (seeds 0-2 gave
    # 0.8-1.15x with a slightly larger net), so the margin catches broken filling (wrong
    # entries, channels or transforms), not a missed gain; the full-table gain is measured
    # in reports/completion_jlodk/.
    tt = (truth["bb"] + truth["es"])
    lt = np.log10(np.where(hide, np.nan, tt))
    best = min(np.median(np.abs(10 ** C.interp_along_axis(lt, ~hide, c, axis=a, query=hide)[hide]
                                / tt[hide] - 1))
               for a, c in enumerate(table.feature_axes()) if a > 0)   # 2 Ye: NaN lines
    rel_model = np.abs(res.total[hide] / tt[hide] - 1)
    assert 1e-3 < best < 0.05
    assert np.median(rel_model) < 1.5 * best


def test_real_jlodk_hidden_ye_slice_against_the_neighbour_geometric_mean(jlodk_small):
    full, _ = jlodk_small
    # All four Ye, two times, every 3rd density and 5th temperature: 800 real entries.
    sub = {n: v[:, :2, ::3, ::5].copy() for n, v in full.channels.items()}
    axes = (full.axes[0], full.axes[1][:2], full.axes[2][::3], full.axes[3][::5])
    truth = np.log10(sub["bb"] + sub["es"])
    for v in sub.values():
        v[1] = np.nan                                            # hide Ye = 0.2
    table = C.GridTable(full.axis_names, axes, sub, kind="jlodk", source=str(JLODK))
    res = C.complete(table, TINY)
    err = np.abs(np.log10(res.total[1]) - truth[1])
    err_gm = np.abs(0.5 * (truth[0] + truth[2]) - truth[1])
    assert np.median(err_gm) > 0.05                    # real Ye slices differ a lot
    assert np.median(err) <= 1.1 * np.median(err_gm)
    assert res.report["parts"][0]["estimator"] in C.SLICE_ESTIMATORS
