"""jax.export artifact round trip and the HDF5 / plain-text opacity tables."""

import json

import h5py
import numpy as np
import pytest

from opacity_jax import export
from opacity_jax.errors import DomainError
from opacity_jax.surrogate import Surrogate


@pytest.fixture(scope="module")
def tree_pipe(tiny_workdir):
    return Surrogate.load(tiny_workdir, regressor="xgboost").device_pipeline()


def test_artifact_round_trip_with_symbolic_batch(tree_pipe, tmp_path):
    path = export.write_artifact(tree_pipe, tmp_path / "p.jaxexport")
    meta = json.loads((tmp_path / "p.jaxexport.json").read_text())
    assert meta["elements"] == [60, 92] and meta["element_symbols"] == ["Nd", "U"]
    assert len(meta["energy_edges_ev"]) == tree_pipe.n_bins + 1
    fn = export.read_artifact(path)
    for n in (1, 5):   # one artifact, any batch size
        t = np.geomspace(0.05, 0.5, n).astype(np.float32)
        r = np.full(n, 1e-12, np.float32)
        out = fn.call(np.int32(1), t, r)
        ref = tree_pipe("U", t, r)
        for k in ("kappa", "planck", "rosseland"):
            np.testing.assert_allclose(np.asarray(out[k]), ref[k], rtol=1e-6,
                                       atol=1e-6 * np.abs(ref[k]).max())


def test_tables_hdf5_and_text(tree_pipe, tmp_path):
    t, r = np.array([0.05, 0.1, 0.3]), np.array([1e-13, 1e-11])
    tab = export.opacity_table(tree_pipe, t, r, elements=["U"])
    assert tab["kappa"].shape == (1, 3, 2, tree_pipe.n_bins)
    ref = tree_pipe("U", [0.1], [1e-11])
    np.testing.assert_allclose(tab["kappa"][0, 1, 1], ref["kappa"][0], rtol=1e-6)
    np.testing.assert_allclose(tab["planck"][0, 1, 1], ref["planck"][0], rtol=1e-6)

    h5 = export.write_hdf5(tab, tmp_path / "t.h5")
    with h5py.File(h5) as f:
        np.testing.assert_array_equal(f["temperature_ev"][:], t)
        np.testing.assert_array_equal(f["density_gcc"][:], r)
        np.testing.assert_array_equal(f["elements"][:], [92])
        np.testing.assert_array_equal(f["U/kappa"][:], tab["kappa"][0])
        np.testing.assert_array_equal(f["U/rosseland_mean"][:], tab["rosseland"][0])
        assert f["U/planck_mean"].attrs["units"] == "cm^2/g"
        assert f["energy_edges_ev"].shape == (tree_pipe.n_bins + 1,)

    back = export.read_text(export.write_text(tab, tmp_path / "t.txt"))
    for k in ("temperature_ev", "density_gcc", "energy_edges_ev"):
        np.testing.assert_allclose(back[k], tab[k], rtol=1e-12)
    for k in ("kappa", "planck", "rosseland"):
        np.testing.assert_allclose(back[k], tab[k], rtol=1e-7)
    lines = (tmp_path / "t.txt").read_text().splitlines()
    assert lines[0].startswith("#") and lines[2].split() == ["1", "3", "2", str(tree_pipe.n_bins)]

    with pytest.raises(DomainError):
        export.opacity_table(tree_pipe, [50.0], [1e-13])


def test_log_axis():
    np.testing.assert_allclose(export.log_axis("0.1:10:3"), [0.1, 1.0, 10.0])
    np.testing.assert_allclose(export.log_axis("0.3, 1,2"), [0.3, 1.0, 2.0])


class _TwoMembers:
    """A stand-in ensemble of two members with known spectra on 4 bins."""
    elements = np.array([60])
    energy_edges_ev = np.array([1.0, 2.0, 3.0, 5.0, 9.0])
    members = 2

    def element_position(self, e):
        return 0

    def spectrum_members(self, e, t, r):
        n = np.size(t)
        a = np.tile([1.0, 2.0, 4.0, 8.0], (n, 1))
        return np.stack([a, 3.0 * a])


def test_group_table_means_and_ensemble_spread():
    g = export.group_table(_TwoMembers(), [1.0, 3.0, 9.0], [0.3], [1e-12])
    # group 1 = bins 1-2 (widths 1, 1), group 2 = bins 3-4 (widths 2, 4); members x1 and x3
    m1 = np.array([(1 + 2) / 2, (4 * 2 + 8 * 4) / 6])
    np.testing.assert_allclose(g["group_kappa"][0, 0, 0], 2.0 * m1)
    np.testing.assert_allclose(g["group_kappa_std"][0, 0, 0], m1)
    with pytest.raises(ValueError, match="outside the model's energy bins"):
        export.group_table(_TwoMembers(), [0.5, 3.0], [0.3], [1e-12])
    err = export.group_errors(g["group_kappa"], 2.0 * m1[None, None, None], g["group_kappa_std"])
    assert err["rel"]["max"] < 1e-15 and err["coverage_1sigma"] == 1.0


def test_group_truth_is_the_coarse_generator(tiny_workdir):
    from opacity_jax.data import generator, grid
    SMALL = generator.GeneratorConfig(seed=2, line_cap=1500, level_cap=200)
    groups = grid.energy_edges_ev(40)
    truth = export.generator_group_truth([92], groups, [0.2], [1e-10], n_native=400,
                                         config=SMALL)
    direct = generator.OpacityGenerator(SMALL).spectra(92, [0.2], [1e-10], groups)["kappa"]
    np.testing.assert_allclose(truth[0, 0, 0], direct[0], rtol=1e-9)

    s = Surrogate.load(tiny_workdir)
    gt = export.group_table(s, s.energy_edges_ev[[0, 10, 20]], [0.1, 0.3], [1e-12], ["U"])
    k = s.spectrum("U", [0.1, 0.3], [1e-12, 1e-12]).astype(np.float64)
    w = np.diff(s.energy_edges_ev)
    want = np.stack([(k[:, :10] * w[:10]).sum(1) / w[:10].sum(),
                     (k[:, 10:20] * w[10:20]).sum(1) / w[10:20].sum()], -1)
    np.testing.assert_allclose(gt["group_kappa"][0, :, 0], want, rtol=1e-6)
    assert gt["group_kappa_std"] is None


def test_portable_cae_weights_numpy_forward_matches_jax(tiny_workdir, tmp_path):
    """CAE with its latent MLP and with its XGBoost trees (as plain arrays), numpy only."""
    import subprocess
    import sys

    import export_checks
    from opacity_jax import portable
    s = Surrogate.load(tiny_workdir, regressor="mlp")
    export_checks.check(s, tmp_path / "mlp", "cae mlp")
    arch, w = portable.load(tmp_path / "mlp")
    assert arch["model"] == "cae" and arch["latent"] == "mlp"
    assert all(v.dtype != object for v in w.values())
    trees = Surrogate.load(tiny_workdir, regressor="xgboost")
    export_checks.check(trees, tmp_path / "xgb", "cae xgboost")
    arch, w = portable.load(tmp_path / "xgb")
    assert arch["latent"] == "xgboost" and w["trees/values"].shape[0] == 2
    # the trees' reference runs where neither jax nor xgboost is imported
    t, r = export_checks.inside_points(trees, "U", 3)
    code = ("import sys, numpy as np; from opacity_jax import portable; "
            f"a, w = portable.load({str(tmp_path / 'xgb')!r}); "
            f"np.save({str(tmp_path / 'ref.npy')!r}, portable.forward(a, w, 'U', "
            f"np.array({t.tolist()}), np.array({r.tolist()}))); "
            "assert not {'jax', 'flax', 'xgboost'} & set(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)
    np.testing.assert_array_equal(np.load(tmp_path / "ref.npy"),
                                  portable.forward(arch, w, "U", t, r))


def test_build_md_table_readers_compile_and_read(tmp_path):
    """The Fortran and C++ readers printed in BUILD.md, compiled and run on a written table."""
    import os
    import re
    import shutil
    import subprocess
    from pathlib import Path

    text = (Path(__file__).parents[1] / "BUILD.md").read_text()
    fortran = re.search(r"```fortran\n(.*?)```", text, re.S).group(1)
    cpp = re.search(r"```cpp\n(.*?)```", text, re.S).group(1)
    tab = {"elements": np.array([60, 92]), "temperature_ev": np.array([0.1, 0.3, 1.0]),
           "density_gcc": np.array([1e-13, 1e-12]), "energy_edges_ev": np.geomspace(0.1, 10, 6),
           "planck": np.full((2, 3, 2), 2.0), "rosseland": np.full((2, 3, 2), 1.0),
           "kappa": np.arange(60, dtype=np.float64).reshape(2, 3, 2, 5) + 0.5}
    export.write_text(tab, tmp_path / "lte.txt")
    tools = {"gfortran": shutil.which("gfortran"), "g++": shutil.which("g++")}
    if not all(tools.values()):
        if os.environ.get("CI"):
            pytest.fail(f"compilers missing in CI: {tools}")
        pytest.skip(f"compilers missing: {tools}")
    # The Fortran program as printed; it stops with an error on a short or malformed table.
    (tmp_path / "r.f90").write_text(fortran)
    subprocess.run([tools["gfortran"], "r.f90", "-o", "rf"], cwd=tmp_path, check=True)
    subprocess.run(["./rf"], cwd=tmp_path, check=True)
    # The C++ fragment inside a main that prints one value back.
    includes = "".join(ln + "\n" for ln in cpp.splitlines() if ln.startswith("#include"))
    body = "".join(ln + "\n" for ln in cpp.splitlines() if not ln.startswith("#include"))
    (tmp_path / "r.cpp").write_text(includes + "#include <cstdio>\nint main() {\n" + body
                                    + 'std::printf("%.3f %d\\n", kappa[size_t(11) * ne + 4], '
                                      'z[1]);\nreturn in.fail() ? 1 : 0;\n}\n')
    subprocess.run([tools["g++"], "r.cpp", "-o", "rc"], cwd=tmp_path, check=True)
    out = subprocess.run(["./rc"], cwd=tmp_path, check=True, capture_output=True, text=True)
    assert out.stdout.split() == ["59.500", "92"]       # last row (U, T3, rho2), last bin
