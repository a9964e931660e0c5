"""Shared checks of the exports (tests/test_export.py, test_ensemble.py, test_fcnn_ensemble.py,
test_envelope.py): the numpy reference of opacity_jax.portable against the Surrogate's own
output, 1e-5 relative above a floor of 1e-6 x the spectrum's maximum against the model
evaluated in float64 (3e-5 against the served float32 model), and a workdir copy with a
corner node cut from the training set (a point outside the validity envelope)."""

import json
import shutil

import numpy as np

from opacity_jax import portable
from opacity_jax.serve import export

RTOL = 1e-5          # against the model evaluated in float64
SERVED_RTOL = 3e-5    # against the served float32 model (its own rounding, ~1e-5)
FLOOR = 1e-6          # x max |kappa| of the compared spectra: the floor near zero opacity


def inside_points(s, element, n: int = 12, seed: int = 0):
    """(T [eV], rho [g/cm^3]) inside the element's validity envelope: its hull vertices
    (training nodes, which sit on tree thresholds) and n random convex combinations of them."""
    hull = s.envelope.hulls[int(s.elements[s.element_position(element)])]
    w = np.random.default_rng(seed).dirichlet(np.ones(hull.shape[0]), n)
    q = np.concatenate([hull, w @ hull])
    return 10.0 ** q[:, 0], 10.0 ** q[:, 1]


def rel_error(got, want) -> float:
    """max |got - want| / (|want| + FLOOR max |want|)."""
    floor = FLOOR * np.abs(want).max()
    return float(np.max(np.abs(got - want) / (np.abs(want) + floor)))


def check(s, directory, label: str) -> dict:
    """Write `s`'s portable weights to `directory`, evaluate every element with numpy and
    compare members, mean and std with the same JAX model evaluated in float64 (`float64=True`:
    the trained float32 weights, float64 arithmetic; RTOL asserted) and with the served float32
    output (its own rounding added; SERVED_RTOL asserted); returns the measured errors."""
    export.write_portable(s, directory)
    arch, w = portable.load(directory)
    assert arch["members"] == s.members
    out = {}
    for el in arch["element_symbols"]:
        t, r = inside_points(s, el)
        k64 = s.spectrum_members(el, t, r, float64=True)
        k32 = s.spectrum_members(el, t, r).astype(np.float64)
        ref = portable.forward_members(arch, w, el, t, r)
        assert ref.shape == k64.shape == k32.shape
        pm, ps = portable.forward(arch, w, el, t, r, return_std=True)
        e = {"members_f64": rel_error(ref, k64), "mean_f64": rel_error(pm, k64.mean(0)),
             "members_served": rel_error(ref, k32)}
        if s.members > 1:
            # The spread is a difference of members, each known to RTOL of kappa: it is held
            # to RTOL of kappa, |std - std_ref| <= RTOL (|mean| + floor).
            mean, std = s.spectrum(el, t, r, return_std=True)
            floor = FLOOR * np.abs(mean).max()
            e["std_f64"] = float(np.max(np.abs(ps - k64.std(0)) / (np.abs(mean) + floor)))
            e["std_served"] = float(np.max(np.abs(ps - std) / (np.abs(mean) + floor)))
        else:
            assert np.all(ps == 0)
        out[el] = e
    print(f"portable {label}: " + ", ".join(f"{el} " + " ".join(f"{k} {v:.3g}"
                                                               for k, v in e.items())
                                            for el, e in out.items()))
    for el, e in out.items():
        for k, v in e.items():
            assert v <= (SERVED_RTOL if k.endswith("served") else RTOL), (label, el, k, v)
    return out


def cornered_copy(src, dst, element_pos: int = 1):
    """Copy workdir `src` to `dst` with the coldest, thinnest node of the element at
    `element_pos` moved from train/val to test; returns (dst, T [eV], rho [g/cm^3]) of that
    node, now outside the element's validity envelope."""
    shutil.copytree(src, dst)
    meta = json.loads((dst / "model.json").read_text())
    shape = meta["split"]["shape"]
    corner = int(np.ravel_multi_index((element_pos, 0, 0), shape))
    for part in ("train", "val"):
        meta["split"][part] = [i for i in meta["split"][part] if i != corner]
    meta["split"]["test"] = sorted(set(meta["split"]["test"]) | {corner})
    (dst / "model.json").write_text(json.dumps(meta))
    return dst, meta["temperature_ev"][0], meta["density_gcc"][0]
