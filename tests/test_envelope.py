"""The validity envelope: training-node hulls, the four policies, and every query entry point."""

import json
import warnings

import numpy as np
import pytest

from opacity_jax.data import supernu
from opacity_jax.errors import DomainError
from opacity_jax.serve import envelope, export
from opacity_jax.surrogate import Surrogate


def _meta(train_mask, t, r):
    return {"elements": [60], "temperature_ev": list(t), "density_gcc": list(r),
            "energy_edges_ev": [0.1, 1.0, 10.0], "model": "cae",
            "split": {"name": "test", "seed": 0, "shape": [1] + list(train_mask.shape),
                      "train": np.flatnonzero(train_mask).tolist()}}


def test_hull_excludes_a_held_out_corner():
    t = [0.01, 0.1, 1.0]            # log10: -2, -1, 0
    r = [1e-12, 1e-11, 1e-10]       # log10: -12, -11, -10
    mask = np.ones((3, 3), bool)
    mask[0, 0] = False              # the (cold, thin) corner is not a training node
    env = envelope.Envelope.from_meta(_meta(mask, t, r))
    assert env.hulls[60].shape == (5, 2)
    inside = env.contains(60, [0.1, 1.0, 0.01, 0.1, 0.03, 0.02], [1e-11, 1e-10, 1e-11, 1e-12,
                                                                  1e-11, 2e-12])
    # centre, far corner, two edge nodes of the cut, a point above the cut; one below it
    assert inside.tolist() == [True, True, True, True, True, False]
    with pytest.raises(DomainError, match="Nd outside the model's validity envelope"):
        env.apply(60, [0.01], [1e-12])
    # clamp: the corner (-2, -12) projects onto the cut x + y = -13 at (-1.5, -11.5)
    tc, rc, out = env.apply(60, [0.01, 0.1], [1e-12, 1e-11], "clamp")
    np.testing.assert_allclose(np.log10([tc[0], rc[0]]), [-1.5, -11.5], atol=1e-12)
    assert out.tolist() == [True, False] and tc[1] == 0.1
    with pytest.warns(UserWarning, match="validity envelope"):
        env.apply(60, [0.01], [1e-12], "warn")
    assert env.apply(60, [0.01], [1e-12], "ignore")[2].tolist() == [False]
    with pytest.raises(ValueError, match="raise, clamp, nan, warn"):
        env.apply(60, [0.01], [1e-12], "extrapolate")
    d = env.to_dict()
    assert d["hulls"]["Nd"] and d["provenance"]["n_train_nodes"] == 8


@pytest.fixture(scope="module")
def cornered(tiny_workdir, tmp_path_factory):
    """The tiny CAE workdir with U's coldest, thinnest node moved from train to test."""
    import export_checks
    return export_checks.cornered_copy(tiny_workdir, tmp_path_factory.mktemp("env") / "run",
                                       element_pos=1)       # U is element 1


def test_every_entry_point_raises_outside_by_default(cornered):
    wd, t0, r0 = cornered
    s = Surrogate.load(wd, regressor="mlp")
    calls = {
        "spectrum": lambda: s.spectrum("U", t0, r0),
        "spectrum_members": lambda: s.spectrum_members("U", t0, r0),
        "planck_mean": lambda: s.planck_mean("U", t0, r0),
        "rosseland_mean": lambda: s.rosseland_mean("U", t0, r0),
        "derivatives": lambda: s.derivatives("U", t0, r0),
        "device_pipeline": lambda: s.device_pipeline()("U", [t0], [r0]),
        "opacity_table": lambda: export.opacity_table(s, [t0], [r0], ["U"]),
        "group_table": lambda: export.group_table(s, s.energy_edges_ev[[0, -1]], [t0], [r0],
                                                  ["U"]),
        "supernu": lambda: supernu.from_surrogate(s, ["U"], [t0], [1e-20], [1.0, 2.0]),
    }
    for name, call in calls.items():
        with pytest.raises(DomainError, match="validity envelope"):
            call()
            pytest.fail(name)
    s.spectrum("Nd", t0, r0)                      # Nd's corner is still a training node


def test_policies_at_the_cut_corner(cornered):
    wd, t0, r0 = cornered
    clamp = Surrogate.load(wd, regressor="mlp", outside="clamp")
    env = clamp.envelope
    tc, rc, _ = env.apply(92, [t0], [r0], "clamp")
    assert env.contains(92, tc, rc).all() and (tc[0], rc[0]) != (t0, r0)
    ignore = Surrogate.load(wd, regressor="mlp", outside="ignore")
    np.testing.assert_allclose(clamp.spectrum("U", t0, r0), ignore.spectrum("U", tc, rc),
                               rtol=1e-6)
    nan = Surrogate.load(wd, regressor="mlp", outside="nan")
    k = nan.spectrum("U", [t0, 0.2], [r0, 1e-12])
    assert np.isnan(k[0]).all() and np.isfinite(k[1]).all()
    assert np.isnan(nan.planck_mean("U", [t0], [r0])).all()
    out = nan.device_pipeline()("U", [t0, 0.2], [r0, 1e-12])
    assert np.isnan(out["kappa"][0]).all() and np.isfinite(out["planck"][1])
    warn = Surrogate.load(wd, regressor="mlp", outside="warn")
    with pytest.warns(UserWarning, match="validity envelope"):
        kw = warn.spectrum("U", t0, r0)
    np.testing.assert_array_equal(kw, ignore.spectrum("U", t0, r0))


def test_export_writes_the_envelope(cornered, tmp_path):
    wd, t0, r0 = cornered
    with pytest.raises(DomainError, match="validity envelope"):
        export.export_workdir(wd, elements=["U"], temperature_ev=f"{t0}", density_gcc=f"{r0}",
                              output=str(tmp_path / "t"))
    paths = export.export_workdir(wd, regressor="mlp", elements=["U"], temperature_ev=f"{t0}",
                                  density_gcc=f"{r0}", output=str(tmp_path / "t"),
                                  formats=["hdf5"], outside="nan")
    env = json.loads((tmp_path / "t_envelope.json").read_text())
    assert env["policy"] == "nan" and "U" in env["hulls"] and len(paths) == 2
    import h5py
    with h5py.File(tmp_path / "t.h5") as f:
        assert np.isnan(f["U/kappa"][0, 0]).all()


def test_trees_portable_weights_and_bin_tools_raise_outside_by_default(cornered, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from opacity_jax import portable
    wd, t0, r0 = cornered
    with pytest.raises(DomainError, match="validity envelope"):
        Surrogate.load(wd, regressor="xgboost").spectrum("U", t0, r0)
    for reg in ("mlp", "xgboost"):
        s = Surrogate.load(wd, regressor=reg)
        export.write_portable(s, tmp_path / reg)
        arch, w = portable.load(tmp_path / reg)
        with pytest.raises(DomainError, match="U outside the model's validity envelope"):
            portable.forward(arch, w, "U", t0, r0)
        k = portable.forward(arch, w, "U", [t0, 0.2], [r0, 1e-12], outside="nan")
        assert np.isnan(k[0]).all() and np.isfinite(k[1]).all()
        tc, rc, _ = s.envelope.apply(92, [t0], [r0], "clamp")     # the served model's clamp
        assert (tc[0], rc[0]) != (t0, r0)
        np.testing.assert_array_equal(portable.forward(arch, w, "U", t0, r0, outside="clamp"),
                                      portable.forward(arch, w, "U", tc, rc))
        with pytest.warns(UserWarning, match="validity envelope"):
            portable.forward(arch, w, "U", t0, r0, outside="warn")
        portable.forward(arch, w, "Nd", t0, r0)                  # Nd's corner is trained
        with pytest.raises(DomainError, match="temperature_ev = 50 outside"):
            portable.forward(arch, w, "U", 50.0, 1e-12, outside="ignore")
        with pytest.raises(ValueError, match="raise, clamp, nan, warn, ignore"):
            portable.forward(arch, w, "U", 0.2, 1e-12, outside="extrapolate")
    # the command-line tools: a non-zero exit, the one-line error names the envelope, no file
    root = Path(__file__).resolve().parents[1]
    q = [f"--temperature_ev={t0}", f"--density={r0}"]
    procs = {name: subprocess.Popen([sys.executable, str(root / "bin" / name), f"--workdir={wd}",
                                     *q, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, env=dict(os.environ, PYTHONPATH=str(root)))
             for name, args in (("predict", ["--element=U", f"--output={tmp_path / 'p.txt'}"]),
                                ("export", ["--elements=U", f"--output={tmp_path / 't'}"]))}
    for name, proc in procs.items():        # both at once: their start-up is most of the time
        _, err = proc.communicate(timeout=300)
        assert proc.returncode != 0 and "validity envelope" in err, (name, err)
    assert not list(tmp_path.glob("p.txt*")) and not list(tmp_path.glob("t.*"))
