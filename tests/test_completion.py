"""Table completion: known entries untouched, masks and NaNs, bad tables, baselines, JLODK."""

from pathlib import Path

import numpy as np
import pytest

from opacity_jax import completion as C
from opacity_jax import config_files
from opacity_jax.data import io
from opacity_jax.errors import DataFormatError

JLODK = Path(__file__).resolve().parents[2] / "shared" / "data" / "jlodk_planck_mean"
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


def test_slice_pattern_cross_fit_calibration():
    table, _, bb, es = _synthetic(holes=0.0)
    for v in table.channels.values():
        v[2] = np.nan
    res = C.complete(table, TINY)
    assert res.report["pattern"] == "slice"
    assert "cross-fit" in res.report["calibration_method"]
    assert res.report["slice_selection"]["chosen"] in ("network", "reference")
    assert np.all(np.isfinite(res.channels["bb"][2])) and np.all(res.sigma["total"][2] > 0)
    assert np.array_equal(res.channels["bb"][[0, 1, 3]], bb[[0, 1, 3]])


@pytest.fixture(scope="module")
def jlodk_small():
    if not JLODK.is_dir():
        pytest.skip(f"reference data not found at {JLODK} (../shared/data is not shipped)")
    full = C.read_table(JLODK)
    # Two Ye x three times keep the test fast; the shape and zeros of column 4 stay real.
    sub = {n: v[1:3, :3].copy() for n, v in full.channels.items()}
    table = C.GridTable(full.axis_names, (full.axes[0][1:3], full.axes[1][:3]) + full.axes[2:],
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
    assert len(files) == 6
    # The T-interpolation baseline on real holes: finite and in a sane range.
    lv = np.log10(np.where(hide, np.nan, full.total()[1:3, :3]))
    b = C.interp_along_axis(lv, ~hide, table.axes[-1], query=hide)
    rel = np.abs(10 ** b[hide] / (truth["bb"] + truth["es"])[hide] - 1)
    assert np.all(np.isfinite(rel)) and 1e-4 < np.median(rel) < 0.2
