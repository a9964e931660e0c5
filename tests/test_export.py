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
