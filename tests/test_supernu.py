"""SuperNu's table layouts: round trips, reader errors, the coarsening, and a Fortran client that
reads the exported files as SuperNu does (tests/fortran/read_supernu.f90)."""

import os
import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest

from opacity_jax.data import generator, supernu
from opacity_jax.errors import DataFormatError
from opacity_jax.physics import constants as C

SMALL = generator.GeneratorConfig(seed=2, line_cap=1500, level_cap=200)
T_EV = [0.1, 0.5, 2.0]
RHO = [1e-13, 1e-8]              # files 1Em13, 1Em08
NN = [13, 8]
RATIO = np.geomspace(0.5, 50.0, 300)
GROUPS_EV = np.geomspace(0.3, 20.0, 6)
FORTRAN = Path(__file__).parent / "fortran" / "read_supernu.f90"


@pytest.fixture(scope="module")
def table():
    """Nd (two-letter) and U (one-letter symbol), 3 T x 2 rho x 300 points per T."""
    return supernu.from_generator(["Nd", "U"], T_EV, RHO, RATIO, config=SMALL)


@pytest.fixture(scope="module")
def exported(table, tmp_path_factory):
    root = tmp_path_factory.mktemp("supernu")
    supernu.write_text_layout(table, root / "Table")
    supernu.write_hdf5_layout(table, root / supernu.HDF5_NAME)
    return root


def _same(a: supernu.SupernuTable, b: supernu.SupernuTable, energies=True):
    assert a.elements.tolist() == b.elements.tolist()
    for k in ("temperature_ev", "density_gcc", "columns"):
        assert np.array_equal(getattr(a, k), getattr(b, k)), k
    if energies:
        assert np.array_equal(a.energy_ev, b.energy_ev)


def test_file_names_follow_supernu():
    assert supernu.text_file_name("U", 1e-8) == "op_u_1Em08gcc.table"
    assert supernu.text_file_name(60, 1e-20) == "op_nd_1Em20gcc.table"
    with pytest.raises(ValueError, match="10\\^-NN"):
        supernu.text_file_name("Nd", 3e-8)


def test_text_and_hdf5_round_trips_are_bit_identical(table, exported, tmp_path):
    txt = supernu.read_text_layout(exported)
    _same(txt, table)
    assert txt.density_gcc.tolist() == [1e-13, 1e-8]
    supernu.write_text_layout(txt, tmp_path / "again")
    _same(supernu.read_text_layout(tmp_path / "again"), txt)
    for a, b in zip(sorted((exported / "Table").iterdir()), sorted((tmp_path / "again").iterdir())):
        assert a.read_bytes() == b.read_bytes()

    h5 = supernu.read_hdf5_layout(exported / supernu.HDF5_NAME)
    _same(h5, table)
    assert np.array_equal(h5.energy_ratio, RATIO)
    supernu.write_hdf5_layout(h5, tmp_path / "o.h5")
    h5b = supernu.read_hdf5_layout(tmp_path / "o.h5")
    _same(h5b, h5)
    with h5py.File(tmp_path / "o.h5") as f:
        # C order (rho, T, point, column 2-7) = Fortran (6, nP, nT, nR); lower-case names
        assert f["u"].shape == (2, 3, 300, 6) and f["nd"].dtype == np.float64
        assert np.array_equal(f["wavelength_grid"][:], RATIO)
        assert np.array_equal(f["u"][1, 2, :, 2], table.columns[1, 2, 1, :, 2])


def test_generator_columns_and_coverage(table):
    e = table.energy_ev[0, 0, 0]
    assert np.array_equal(table.energy_ev[0, 2, 1], 2.0 * RATIO)
    c = table.columns
    np.testing.assert_allclose(c[..., 0], c[..., 2] + c[..., 3] + c[..., 4] + c[..., 5],
                               rtol=1e-12)
    # T = 0.1 eV: 0.05-5 eV; below the generator's 0.1 eV band the points are zero
    out = e < 0.1
    assert out.any() and np.all(c[:, 0, :, out] == 0) and np.all(c[:, 0, :, e > 0.2, 0] > 0)


def test_text_reader_errors(exported, tmp_path):
    src = exported / "Table" / "op_u_1Em13gcc.table"
    lines = src.read_text().splitlines()

    def bad(name, new_lines, match, line=None, field=None):
        d = tmp_path / name
        d.mkdir()
        for p in (exported / "Table").glob("op_u_*"):
            shutil.copy(p, d / p.name)
        (d / src.name).write_text("\n".join(new_lines) + "\n")
        with pytest.raises(DataFormatError, match=match) as e:
            supernu.read_text_layout(d, elements=["U"], n_points=300, n_temperatures=3)
        assert src.name in str(e.value)
        if line is not None:
            assert e.value.line == line
        if field is not None:
            assert e.value.field == field

    short = lines[:5] + [" ".join(lines[5].split()[:-1])] + lines[6:]
    bad("short", short, "expected 7 x 300")
    bad("extra", lines + ["1.0 2.0"], "expected 7 x 300|after the last")
    bad("tail", lines + ["temperature 4 9.0", "x"], "after the last of 3", line=len(lines) + 1,
        field="body")
    nan = list(lines)
    nan[10] = " ".join(["nan"] + nan[10].split()[1:])
    bad("nan", nan, "non-finite", field="energy_ev")
    word = list(lines)
    toks = word[7].split()
    word[7] = " ".join(toks[:3] + ["abc"] + toks[4:])
    bad("word", word, "not a number: 'abc'", line=8)
    head = list(lines)
    head[0] = "temperature one"
    bad("head", head, "block header", line=1, field="header")
    (tmp_path / "missing").mkdir()
    shutil.copy(src, tmp_path / "missing" / src.name)
    shutil.copy(exported / "Table" / "op_nd_1Em08gcc.table", tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="op_nd_1Em13gcc.table"):
        supernu.read_text_layout(tmp_path / "missing")


def test_hdf5_reader_errors(exported, tmp_path):
    p = tmp_path / "x.h5"
    shutil.copy(exported / supernu.HDF5_NAME, p)
    with h5py.File(p, "a") as f:
        del f["nd"]
        f["nd"] = np.zeros((3, 2, 300, 6))
    with pytest.raises(DataFormatError, match="shape") as e:
        supernu.read_hdf5_layout(p)
    assert e.value.field == "nd"
    with h5py.File(p, "a") as f:
        del f["wavelength_grid"]
    with pytest.raises(DataFormatError, match="missing dataset") as e:
        supernu.read_hdf5_layout(p)
    assert e.value.field == "wavelength_grid"
    with pytest.raises(DataFormatError, match="missing dataset"):
        supernu.read_hdf5_layout(exported / supernu.HDF5_NAME, elements=["Ce"])


def test_group_means_of_a_linear_function():
    """kappa = a + b E on points inside part of the groups: exact integrals by hand."""
    e = np.linspace(1.0, 3.0, 7)
    v = 2.0 + 5.0 * e
    g = np.array([0.5, 1.5, 2.5, 4.0])
    prim = lambda x: 2.0 * x + 2.5 * x * x
    want = np.array([prim(1.5) - prim(1.0), prim(2.5) - prim(1.5), prim(3.0) - prim(2.5)])
    np.testing.assert_allclose(supernu.group_means(e, v, g), want / np.diff(g), rtol=1e-13)
    assert supernu.group_means(e, v, [4.0, 5.0])[0] == 0.0
    lam = supernu.wavelength_edges_cm([1.0, 2.0])
    np.testing.assert_allclose(lam, [6.19920992e-5, 1.239841984e-4], rtol=1e-9)  # hc/E
    np.testing.assert_allclose(C.H_PLANCK_EV_S * C.C_LIGHT_CM_S / lam[::-1], [1.0, 2.0])


def test_coarsen_tbxs_integrals_and_single_precision_order():
    """SuperNu's float32 coarsening: exact integrals of a piecewise-linear function (values
    exact in float32), and its running sum from the highest energy down."""
    e = np.array([1.0, 1.5, 2.0, 3.0])
    comps = np.stack([2.0 + 4.0 * e, 1.0 + 0.0 * e, 0.5 * e], -1)    # bb, bf, ff linear in E
    g = np.array([0.5, 1.25, 2.5, 4.0])
    prim = lambda x: 3.0 * x + 2.25 * x * x                          # of 3 + 4.5 E
    want = np.array([prim(1.25) - prim(1.0), prim(2.5) - prim(1.25), prim(3.0) - prim(2.5)])
    got = supernu.coarsen_tbxs(e, comps, g)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want / np.diff(g), rtol=2e-7)
    # One segment worth 1 at the top, 1000 below worth 2^-25 each (< half a float32 ulp of 1):
    # added from the top down, each rounds away (the float64 mean is 1 + 2.98e-5 higher).
    n = 1000
    e = np.arange(1.0, n + 3.0)
    v = np.full(n + 2, 2.0 ** -25)
    v[-1] = 2.0                                     # top segment: 1 + 2^-26, 1 in float32
    z = np.zeros_like(v)
    got = supernu.coarsen_tbxs(e, np.stack([v, z, z], -1), [1.0, n + 2.0])[0]
    assert abs(float(got) * (n + 1) - 1.0) < 3e-7
    exact = supernu.group_means(e, v, [1.0, n + 2.0])[0]
    np.testing.assert_allclose(exact * (n + 1), 1.0 + 2.0 ** -26 + n * 2.0 ** -25, rtol=1e-14)


def test_interpolate_groups_is_supernus_clamped_bilinear():
    t = np.array([1.0, 2.0])
    r = np.array([1e-10, 1e-8])
    tab = np.array([[1.0, 3.0], [5.0, 11.0]])      # (T, rho)
    got = supernu.interpolate_groups(tab, t, r, [1.5, 9.0, 0.1], [1e-9, 1e-6, 1e-12])
    # linear in T, linear in log rho (1e-9 is halfway), clamped outside
    np.testing.assert_allclose(got, [0.25 * (1 + 3 + 5 + 11), 11.0, 1.0])


def test_to_dataset_and_load_data(table, exported):
    edges = np.geomspace(1.0, 4.5, 9)       # inside every block: T x [0.5, 50]
    ds = supernu.to_dataset(table, edges)
    assert ds.kappa.shape == (2, 3, 2, 8)
    bb = supernu.group_means(table.energy_ev, table.columns[..., 2], edges)
    np.testing.assert_allclose(ds.components["bb"], bb, rtol=1e-6)
    np.testing.assert_allclose(ds.kappa, sum(ds.components[c] for c in ("bb", "bf", "ff", "es")),
                               rtol=1e-6)
    with pytest.raises(ValueError, match="points span"):
        supernu.to_dataset(table, np.geomspace(0.1, 8.0, 5))
    with pytest.raises(ValueError, match="differ"):
        supernu.to_dataset(table)

    from ml_collections import ConfigDict
    from opacity_jax.train import experiment
    for src in (exported, exported / supernu.HDF5_NAME):
        cfg = ConfigDict({"path": str(src), "elements": "U", "n_energy": 40})
        got = experiment.load_data(cfg)
        assert got.elements.tolist() == [92] and got.kappa.shape == (1, 3, 2, 40)
        assert 0.1 <= got.energy_edges_ev[0] and got.energy_edges_ev[-1] <= 25.0


# --------------------------------------------------------------------------------------------
# the Fortran client
def _tools():
    fc = shutil.which("h5fc")
    if fc is None:
        msg = "h5fc (HDF5 Fortran compiler wrapper; Debian: gfortran libhdf5-dev) not found"
        if os.environ.get("CI"):
            pytest.fail(msg + " and CI is set: .ci/run installs it")
        pytest.skip(msg)
    return fc


@pytest.fixture(scope="module")
def fortran_exe(tmp_path_factory):
    fc = _tools()
    exe = tmp_path_factory.mktemp("fortran") / "read_supernu"
    # in the build folder: h5fc leaves its object file in the working directory
    subprocess.run([fc, "-O2", str(FORTRAN), "-o", str(exe)], check=True, capture_output=True,
                   cwd=exe.parent)
    return exe


def run_fortran(exe, root, mode, sym, n_t, n_p, nns, groups_ev, tq, rq):
    """Run the client in `root` (holding Table/ and opacities.h5); returns its arrays."""
    wl = supernu.wavelength_edges_cm(groups_ev)
    ng = wl.size - 1
    ctl = "\n".join([mode, sym, f"{n_t} {n_p} {len(nns)}", " ".join(map(str, nns)), str(ng),
                     " ".join(map(repr, wl.tolist())), str(len(tq)),
                     " ".join(map(repr, list(tq))), " ".join(map(repr, list(rq)))]) + "\n"
    (root / "control.in").write_text(ctl)
    res = subprocess.run([str(exe), "control.in", "result.out"], cwd=root, capture_output=True,
                         text=True)
    if res.returncode:
        return res, None
    out = np.loadtxt(root / "result.out")
    n_r = len(nns)
    parts = np.split(out, np.cumsum([n_t, n_r, ng * n_t * n_r, n_t * n_r]))
    return res, {"temp": parts[0], "rho": parts[1],
                 "cap": parts[2].reshape((ng, n_t, n_r), order="F"),
                 "sig": parts[3].reshape((n_t, n_r), order="F"),
                 "capq": parts[4].reshape((ng, len(tq)), order="F")}


def _rel(got, want):
    floor = 1e-30 + 1e-12 * np.abs(want).max()
    return float(np.max(np.abs(got - want) / (np.abs(want) + floor)))


def _close(got, want, rtol=1e-5):
    floor = 1e-30 + 1e-12 * np.abs(want).max()
    assert np.all(np.abs(got - want) <= rtol * np.abs(want) + floor), \
        np.max(np.abs(got - want) / (np.abs(want) + floor))


@pytest.mark.parametrize("mode", ["text", "hdf5"])
@pytest.mark.parametrize("sym", ["Nd", "U"])
def test_fortran_client_reproduces_group_opacities(fortran_exe, table, exported, mode, sym):
    tq, rq = [0.05, 0.3, 1.0, 3.0], [1e-15, 1e-10, 3e-9, 1e-6]   # inside and clamped
    res, out = run_fortran(fortran_exe, exported, mode, sym, 3, 300, NN, GROUPS_EV, tq, rq)
    # A one-letter symbol in a character(2) is 'u ' untrimmed; the HDF5 Fortran API drops
    # trailing blanks from object names, so the dataset 'u' is found.
    assert res.returncode == 0, res.stderr
    i = table.element_position(sym)
    assert np.array_equal(out["temp"], T_EV) and np.array_equal(out["rho"], RHO)
    ref = supernu.coarsen_tbxs(table.energy_ev[i], table.columns[i, ..., 2:5], GROUPS_EV)
    assert np.all(ref[..., 1:4] > 0)
    # SuperNu orders groups by ascending wavelength: reverse the energy order
    print(f"{mode} {sym}: max rel vs coarsen_tbxs "
          f"{_rel(np.moveaxis(out['cap'], 0, -1), ref[..., ::-1]):.3g}")
    _close(np.moveaxis(out["cap"], 0, -1), ref[..., ::-1])
    _close(out["sig"], supernu.grey_scattering_single(table)[i])
    want_q = supernu.interpolate_groups(ref[..., ::-1], table.temperature_ev, table.density_gcc,
                                        tq, rq)
    _close(out["capq"].T, want_q)


def test_fortran_client_rejects_a_long_body(fortran_exe, exported, tmp_path):
    shutil.copytree(exported / "Table", tmp_path / "Table")
    p = tmp_path / "Table" / "op_nd_1Em08gcc.table"
    p.write_text(p.read_text() + "temperature 4 9.0\n")
    res, _ = run_fortran(fortran_exe, tmp_path, "text", "Nd", 3, 300, NN, GROUPS_EV, [1.0],
                         [1e-10])
    assert res.returncode != 0 and "after the last block" in res.stderr


@pytest.mark.slow
def test_fortran_client_full_size_one_element(fortran_exe, tmp_path):
    """SuperNu's sizes: 27 T x 17 rho x 14900 points of one element, 8 groups."""
    tab = supernu.from_generator(["Nd"], energy_ratio=supernu.default_energy_ratio(),
                                 config=SMALL)
    supernu.write_text_layout(tab, tmp_path / "Table")
    supernu.write_hdf5_layout(tab, tmp_path / supernu.HDF5_NAME)
    groups = np.geomspace(0.12, 9.5, 9)
    ref = supernu.coarsen_tbxs(tab.energy_ev[0], tab.columns[0, ..., 2:5], groups)[..., ::-1]
    exact = supernu.group_means(tab.energy_ev[0], tab.absorption()[0], groups)[..., ::-1]
    nns = list(supernu.DENSITY_EXPONENTS[::-1])
    for mode in ("text", "hdf5"):
        res, out = run_fortran(fortran_exe, tmp_path, mode, "Nd", 27, 14900, nns, groups,
                               [0.3], [1e-12])
        assert res.returncode == 0, res.stderr
        got = np.moveaxis(out["cap"], 0, -1)
        print(f"{mode}: max rel vs coarsen_tbxs {_rel(got, ref):.3g}, "
              f"vs float64 group_means {_rel(got, exact):.3g}")
        _close(got, ref)
        # SuperNu's own rounding: ~1900 single-precision additions per group
        _close(got, exact, rtol=1e-4)


def test_from_surrogate_points_take_the_model_bins(tiny_workdir, tmp_path):
    from opacity_jax.serve.surrogate import Surrogate
    s = Surrogate.load(tiny_workdir)
    ratio = np.geomspace(0.2, 200.0, 400)
    tab = supernu.from_surrogate(s, ["U"], [0.1, 0.3], [1e-12, 1e-8], ratio)
    edges = s.energy_edges_ev
    for it, t in enumerate([0.1, 0.3]):
        k = s.spectrum("U", [t, t], [1e-12, 1e-8])              # (2, nE) bin averages
        e = t * ratio
        assert np.array_equal(tab.energy_ev[0, it, 0], e)
        for j in range(0, 400, 7):
            inside = edges[0] <= e[j] < edges[-1]
            want = k[:, np.flatnonzero(edges <= e[j])[-1]] if inside else np.zeros(2)
            for c in (0, 1, 2):
                np.testing.assert_array_equal(tab.columns[0, it, :, j, c], want)
    assert np.all(tab.columns[..., 3:] == 0)
    supernu.write_hdf5_layout(tab, tmp_path / supernu.HDF5_NAME)
    _same(supernu.read_hdf5_layout(tmp_path / supernu.HDF5_NAME), tab)


def test_bin_export_supernu_dir_read_by_the_fortran_client(tiny_workdir, fortran_exe,
                                                           tmp_path):
    """What BUILD.md's "Use in SuperNu" runs: bin/export --supernu_dir, then the client."""
    from opacity_jax.serve import export
    out = tmp_path / "supernu"
    export.export_workdir(tiny_workdir, temperature_ev="0.1,0.3", density_gcc="1e-12,1e-8",
                          supernu_dir=str(out), energy_ratio="0.5:60:200", outside="clamp",
                          portable_dir=str(tmp_path / "portable"))
    txt = supernu.read_text_layout(out)
    h5 = supernu.read_hdf5_layout(out / supernu.HDF5_NAME)
    assert np.array_equal(txt.columns, h5.columns) and txt.elements.tolist() == [60, 92]
    assert (out / "envelope.json").exists() and (tmp_path / "portable" / "weights.npz").exists()
    groups = np.geomspace(0.2, 9.0, 5)
    for mode in ("text", "hdf5"):
        res, got = run_fortran(fortran_exe, out, mode, "U", 2, 200, [12, 8], groups, [0.2],
                               [1e-10])
        assert res.returncode == 0, res.stderr
        ref = supernu.coarsen_tbxs(h5.energy_ev[1], h5.columns[1, ..., 2:5], groups)[..., ::-1]
        _close(np.moveaxis(got["cap"], 0, -1), ref)
