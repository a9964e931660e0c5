"""Exports for simulation codes: a serialized `jax.export` artifact and opacity tables.

1. Artifact. The fused device pipeline (`opacity_jax.serve.pipeline`) with its weights baked in, as a
   serialized `jax.export.Exported` (StableHLO + calling convention) with a symbolic batch size:

       write_artifact(pipe, "nd_u.jaxexport")                 # + "nd_u.jaxexport.json"
       fn = read_artifact("nd_u.jaxexport")
       out = fn.call(np.int32(0), t, rho)     # element position, (N,) T [eV], (N,) rho [g/cm^3]
       out["kappa"], out["planck"], out["rosseland"]       # (N, nE), (N,), (N,) cm^2/g

   It needs jax (any version that reads this calling convention) but neither this package nor
   the workdir; the JSON sidecar lists the element order, the energy grid and the domain.
   `platforms` can name several backends (e.g. ('cpu', 'cuda')) so one file serves both.

2. Tables. kappa(E) and the band-limited Planck/Rosseland means on a user (T, rho) grid, as HDF5
   or plain text, for Fortran/C++ radiative-transfer codes (layouts below and in BUILD.md).

   With group edges (`group_table`) the HDF5 file also holds group opacities: the exact mean
   over each group of the model's bins, and the ensemble spread (`/<Symbol>/group_kappa[_std]`).

   HDF5 (`write_hdf5`), C order (Fortran sees the reversed shapes):
     /temperature_ev (nT)  /density_gcc (nR)  /energy_edges_ev (nE+1)  /energy_ev (nE)
     /elements (nZ) atomic numbers
     /<Symbol>/kappa (nT, nR, nE)  /<Symbol>/planck_mean (nT, nR)  /<Symbol>/rosseland_mean (nT, nR)
     float32 opacities in cm^2/g, float64 axes; a `units` attribute on every dataset.

   Plain text (`write_text`), whitespace-separated, Fortran list-directed readable:
     2 comment lines starting with '#'
     nZ nT nR nE
     Z(1..nZ)
     T(1..nT)         [eV]
     rho(1..nR)       [g/cm^3]
     E_edges(1..nE+1) [eV]
     then nZ*nT*nR lines, Z outermost, then T, then rho:
     Z T rho kappa_P kappa_R kappa(1..nE)           [cm^2/g]

3. SuperNu's own layouts (`opacity_jax.data.supernu`, via `export_workdir(supernu_dir=...)`).

4. Portable weights (`write_portable`): plain arrays + JSON architecture for
   `opacity_jax.portable`, a numpy-only reference forward pass, for every forward family (CAE
   with latent MLP, latent ensemble or XGBoost trees; FC-NN and its ensembles; stage basis).

Every table point outside a model's validity envelope follows the `outside` policy
(`opacity_jax.serve.envelope`).
"""

from __future__ import annotations

import datetime
import functools
import json
from pathlib import Path
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

import opacity_jax
from opacity_jax.data import grid as _grid
from opacity_jax.data import transforms
from opacity_jax.physics import elements as _el
from opacity_jax.train import workdir as workdir_lib

TEXT_FORMAT_VERSION = 1


def _atomic_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    workdir_lib.write_bytes(path, data)


# --------------------------------------------------------------------------------------------
# jax.export artifact
def export_pipeline(pipe, platforms: Optional[Sequence[str]] = None):
    """`jax.export.Exported` of `pipe.apply` with its parameters baked in.

    Args:
      pipe: `pipeline.DevicePipeline`. platforms: lowering platforms, e.g. ('cpu', 'cuda')
        (None = the default backend).
    Returns:
      Exported with inputs (element position int32 (), T float32 (n,), rho float32 (n,)),
      n symbolic, and outputs {'kappa': (n, nE), 'planck': (n,), 'rosseland': (n,)} float32.
    """
    (n,) = jax.export.symbolic_shape("n")
    fn = jax.jit(functools.partial(pipe.apply, pipe.params))
    specs = (jax.ShapeDtypeStruct((), jnp.int32), jax.ShapeDtypeStruct((n,), jnp.float32),
             jax.ShapeDtypeStruct((n,), jnp.float32))
    kw = {} if platforms is None else {"platforms": tuple(platforms)}
    return jax.export.export(fn, **kw)(*specs)


def artifact_metadata(pipe, exported) -> dict:
    """JSON-able description of an exported pipeline (inputs, outputs, element order, grid)."""
    dom = getattr(pipe._validate, "domain", None)
    return {
        "format": "jax.export serialized Exported",
        "calling_convention_version": int(exported.calling_convention_version),
        "platforms": list(exported.platforms),
        "inputs": ["element_position int32 ()", "temperature_ev float32 (n,)",
                   "density_gcc float32 (n,)"],
        "outputs": {"kappa": "float32 (n, nE) cm^2/g", "planck": "float32 (n,) cm^2/g",
                    "rosseland": "float32 (n,) cm^2/g (band-limited means)"},
        "elements": [int(z) for z in pipe.elements],
        "element_symbols": [_el.SYMBOLS[_el.element_index(int(z))] for z in pipe.elements],
        "energy_edges_ev": pipe.energy_edges_ev.tolist(),
        "domain": dom,
        "regressor": pipe.regressor, "dtype": str(pipe.dtype),
        "jax_version": jax.__version__, "package_version": opacity_jax.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "note": "no domain check inside the artifact: callers must stay inside 'domain'",
    }


def write_artifact(pipe, path, platforms: Optional[Sequence[str]] = None) -> Path:
    """Serialize `export_pipeline(pipe)` to `path` and its metadata to `path + '.json'`."""
    path = Path(path)
    exp = export_pipeline(pipe, platforms)
    _atomic_bytes(path, bytes(exp.serialize()))
    meta = json.dumps(artifact_metadata(pipe, exp), indent=1).encode()
    _atomic_bytes(path.with_name(path.name + ".json"), meta)
    return path


def read_artifact(path):
    """Deserialize an artifact: returns `jax.export.Exported`; call `.call(pos, t, rho)`."""
    return jax.export.deserialize(bytearray(Path(path).read_bytes()))


# --------------------------------------------------------------------------------------------
# tables
def opacity_table(pipe, temperatures_ev, densities_gcc, elements=None) -> dict:
    """Predictions on the outer-product grid T x rho for several elements.

    Args:
      pipe: `pipeline.DevicePipeline` (queries validated against its surrogate's domain) or a
        loaded surrogate (`Surrogate.load(workdir)`, any family).
      temperatures_ev: (nT,) [eV]; densities_gcc: (nR,) [g/cm^3]; elements: symbols / Z
        (None = every element the model serves).
    Returns:
      {'elements': (nZ,) Z, 'temperature_ev': (nT,), 'density_gcc': (nR,),
       'energy_edges_ev': (nE+1,), 'kappa': (nZ, nT, nR, nE), 'planck': (nZ, nT, nR),
       'rosseland': (nZ, nT, nR)} numpy; opacities float32 cm^2/g.
    """
    t = np.atleast_1d(np.asarray(temperatures_ev, np.float64))
    r = np.atleast_1d(np.asarray(densities_gcc, np.float64))
    if t.ndim != 1 or r.ndim != 1:
        raise ValueError("temperatures_ev and densities_gcc must be 1-D axes")
    elements = list(pipe.elements) if elements is None else list(elements)
    tt, rr = np.meshgrid(t, r, indexing="ij")
    outs = [_predict(pipe, e, tt.ravel(), rr.ravel()) for e in elements]
    zs = [int(pipe.elements[pipe.element_position(e)]) for e in elements]
    shape = (len(elements), t.size, r.size)
    return {"elements": np.asarray(zs, np.int32), "temperature_ev": t, "density_gcc": r,
            "energy_edges_ev": np.asarray(pipe.energy_edges_ev, np.float64),
            "kappa": np.stack([o["kappa"] for o in outs]).reshape(shape + (-1,)),
            "planck": np.stack([o["planck"] for o in outs]).reshape(shape),
            "rosseland": np.stack([o["rosseland"] for o in outs]).reshape(shape)}


def _predict(model, element, t, r) -> dict:
    """{'kappa' (N, nE), 'planck' (N,), 'rosseland' (N,)} [cm^2/g] from a device pipeline or a
    surrogate."""
    if hasattr(model, "apply"):
        return model(element, t, r)
    return {"kappa": model.spectrum(element, t, r), "planck": model.planck_mean(element, t, r),
            "rosseland": model.rosseland_mean(element, t, r)}


# --------------------------------------------------------------------------------------------
# group opacities
def group_table(model, group_edges_ev, temperatures_ev, densities_gcc, elements=None) -> dict:
    """Group opacities of a surrogate on the outer-product grid T x rho: each group's value is
    the exact mean over the group of the model's bin averages (`transforms.rebin`), the
    quantity a multigroup radiative-transfer code consumes.

    Args:
      model: a loaded surrogate (`Surrogate.load`), any family; ensembles give a spread.
      group_edges_ev: (nG + 1,) ascending group edges [eV], inside the model's energy bins
        (ValueError otherwise: the model says nothing outside its band).
      temperatures_ev: (nT,) [eV]; densities_gcc: (nR,) [g/cm^3]; elements: symbols / Z.
    Returns:
      {'elements', 'temperature_ev', 'density_gcc', 'group_edges_ev',
       'group_kappa': (nZ, nT, nR, nG) member-mean group means [cm^2/g],
       'group_kappa_std': same shape, the members' standard deviation of their own group means
       (None for a single network), 'members': K}.
    """
    t = np.atleast_1d(np.asarray(temperatures_ev, np.float64))
    r = np.atleast_1d(np.asarray(densities_gcc, np.float64))
    g = np.asarray(group_edges_ev, np.float64)
    edges = np.asarray(model.energy_edges_ev, np.float64)
    if g.ndim != 1 or g.size < 2 or np.any(np.diff(g) <= 0):
        raise ValueError("group_edges_ev must be a strictly ascending 1-D array of >= 2 edges")
    if g[0] < edges[0] * (1 - 1e-9) or g[-1] > edges[-1] * (1 + 1e-9):
        raise ValueError(f"groups [{g[0]:.4g}, {g[-1]:.4g}] eV reach outside the model's energy "
                         f"bins [{edges[0]:.4g}, {edges[-1]:.4g}] eV")
    elements = list(model.elements) if elements is None else list(elements)
    tt, rr = np.meshgrid(t, r, indexing="ij")
    k = int(getattr(model, "members", 1))
    means, stds = [], []
    for e in elements:
        if k > 1:
            mem = transforms.rebin(np.asarray(model.spectrum_members(e, tt.ravel(), rr.ravel()),
                                              np.float64), edges, g)
            means.append(mem.mean(0))
            stds.append(mem.std(0))
        else:
            means.append(transforms.rebin(np.asarray(model.spectrum(e, tt.ravel(), rr.ravel()),
                                                     np.float64), edges, g))
    shape = (len(elements), t.size, r.size, g.size - 1)
    zs = [int(model.elements[model.element_position(e)]) for e in elements]
    return {"elements": np.asarray(zs, np.int32), "temperature_ev": t, "density_gcc": r,
            "group_edges_ev": g, "group_kappa": np.stack(means).reshape(shape),
            "group_kappa_std": np.stack(stds).reshape(shape) if k > 1 else None, "members": k}


def generator_group_truth(elements, group_edges_ev, temperatures_ev, densities_gcc,
                          n_native: int = _grid.NATIVE_POINTS, config=None) -> np.ndarray:
    """(nZ, nT, nR, nG) group means [cm^2/g] of the embedded generator's native-resolution
    spectra (n_native log bins over 0.1-10 eV, single element at its density), coarsened onto
    the groups as `group_table` coarsens a model: the truth a model's group opacities are
    compared with."""
    from opacity_jax.data import generator as gen_lib

    gen = gen_lib.OpacityGenerator(config or gen_lib.GeneratorConfig())
    fine = _grid.energy_edges_ev(int(n_native))
    out = []
    for e in elements:
        k = gen.grid_spectra(e, temperatures_ev, densities_gcc, fine)["kappa"]
        out.append(transforms.rebin(k, fine, np.asarray(group_edges_ev, np.float64)))
    return np.stack(out)


def group_errors(pred, truth, std=None) -> dict:
    """Summary of group opacities against the truth: |rel| = |pred/truth - 1| and
    |log10(pred/truth)| (median, 95th percentile, max) overall and per element position, over
    the finite predictions (NaN ones, outside the validity envelope, are counted apart); with
    `std`, the fraction of groups whose truth lies within 1 and 2 standard deviations."""
    p = np.asarray(pred, np.float64)
    t = np.asarray(truth, np.float64)
    tiny = 1e-300
    ok = np.isfinite(p)           # NaN: points outside the validity envelope (outside='nan')
    rel = np.abs(p / np.maximum(t, tiny) - 1.0)
    dex = np.abs(np.log10(np.maximum(p, tiny) / np.maximum(t, tiny)))

    def stats(a, m):
        a = a[m]
        if a.size == 0:
            return None
        return {"median": float(np.median(a)), "p95": float(np.percentile(a, 95)),
                "max": float(a.max())}

    out = {"n_values": int(ok.sum()), "n_outside_envelope": int((~ok).sum()),
           "rel": stats(rel, ok), "dex": stats(dex, ok),
           "per_element": [{"rel": stats(rel[i], ok[i]), "dex": stats(dex[i], ok[i])}
                           for i in range(p.shape[0])]}
    if std is not None:
        z = np.abs(p - t) / np.maximum(np.asarray(std, np.float64), tiny)
        out["coverage_1sigma"] = float(np.mean(z[ok] <= 1.0))
        out["coverage_2sigma"] = float(np.mean(z[ok] <= 2.0))
    return out


def _symbol(z) -> str:
    return _el.SYMBOLS[_el.element_index(int(z))]


def write_hdf5(table: dict, path, attrs: Optional[dict] = None) -> Path:
    """Write an `opacity_table` to HDF5 (layout in the module docstring); returns the path."""
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp):
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = "opacity_jax table 1"
            f.attrs["package_version"] = opacity_jax.__version__
            f.attrs["means"] = ("band-limited Planck/Rosseland means over the energy grid "
                                "(opacity_jax.physics.planck)")
            for k, v in (attrs or {}).items():
                f.attrs[k] = v
            axes = [("temperature_ev", table["temperature_ev"], "eV"),
                    ("density_gcc", table["density_gcc"], "g/cm^3"),
                    ("elements", table["elements"], "atomic number")]
            e = table.get("energy_edges_ev")
            if e is not None:
                axes += [("energy_edges_ev", e, "eV"),
                         ("energy_ev", _grid.bin_centers_ev(e), "eV (bin centre)")]
            for name, arr, unit in axes:
                f.create_dataset(name, data=arr).attrs["units"] = unit
            if table.get("group_edges_ev") is not None:
                f.create_dataset("group_edges_ev", data=table["group_edges_ev"]).attrs[
                    "units"] = "eV"
            for i, z in enumerate(table["elements"]):
                g = f.create_group(_symbol(z))
                g.attrs["Z"] = int(z)
                for name, key in (("kappa", "kappa"), ("planck_mean", "planck"),
                                  ("rosseland_mean", "rosseland"),
                                  ("group_kappa", "group_kappa"),
                                  ("group_kappa_std", "group_kappa_std")):
                    if table.get(key) is None:
                        continue
                    d = g.create_dataset(name, data=np.asarray(table[key][i], np.float32))
                    d.attrs["units"] = "cm^2/g"

    return workdir_lib.atomic_write(path, write)


def write_text(table: dict, path) -> Path:
    """Write an `opacity_table` as plain text (layout in the module docstring)."""
    z, t, r = table["elements"], table["temperature_ev"], table["density_gcc"]
    e = table["energy_edges_ev"]
    fmt = lambda a: " ".join(f"{float(x):.7e}" for x in np.ravel(a))       # float32 data
    axis = lambda a: " ".join(f"{float(x):.12e}" for x in np.ravel(a))     # float64 axes
    lines = [f"# opacity_jax opacity table, text format {TEXT_FORMAT_VERSION}: T [eV], "
             f"rho [g/cm^3], E edges [eV], kappa [cm^2/g] (band-limited Planck/Rosseland means)",
             "# nZ nT nR nE / Z / T / rho / E edges / rows: Z T rho kappa_P kappa_R kappa(1:nE)",
             f"{z.size} {t.size} {r.size} {e.size - 1}", " ".join(str(int(v)) for v in z),
             axis(t), axis(r), axis(e)]
    for i in range(z.size):
        for j in range(t.size):
            for k in range(r.size):
                lines.append(f"{int(z[i])} {t[j]:.12e} {r[k]:.12e} "
                             f"{table['planck'][i, j, k]:.7e} {table['rosseland'][i, j, k]:.7e} "
                             + fmt(table["kappa"][i, j, k]))
    _atomic_bytes(Path(path), ("\n".join(lines) + "\n").encode())
    return Path(path)


def read_text(path) -> dict:
    """Inverse of `write_text` (for tests and Python users); same keys as `opacity_table`."""
    rows = [ln for ln in Path(path).read_text().splitlines() if ln and not ln.startswith("#")]
    nz, nt, nr, ne = (int(v) for v in rows[0].split())
    vec = lambda i: np.asarray(rows[i].split(), np.float64)
    body = np.asarray([ln.split() for ln in rows[5:]], np.float64)
    if body.shape != (nz * nt * nr, 5 + ne):
        raise ValueError(f"{path}: expected {nz * nt * nr} rows of {5 + ne} values, "
                         f"got {body.shape}")
    return {"elements": vec(1).astype(np.int32), "temperature_ev": vec(2),
            "density_gcc": vec(3), "energy_edges_ev": vec(4),
            "planck": body[:, 3].reshape(nz, nt, nr), "rosseland": body[:, 4].reshape(nz, nt, nr),
            "kappa": body[:, 5:].reshape(nz, nt, nr, ne)}


def log_axis(spec: str) -> np.ndarray:
    """'a,b,c' (explicit values) or 'min:max:n' (n log-spaced values) -> 1-D float64 array."""
    s = str(spec).strip()
    if ":" in s:
        lo, hi, n = s.split(":")
        return np.geomspace(float(lo), float(hi), int(n))
    return np.asarray([float(v) for v in s.split(",") if v.strip()], np.float64)


# --------------------------------------------------------------------------------------------
# portable weights
def portable_arrays(model) -> tuple:
    """(architecture dict, {name: numpy array}) of a loaded surrogate for `opacity_jax.portable`
    (layout and forward pass in that module's docstring).

    Every forward family: the CAE pipeline with its latent MLP (one network or the latent
    ensemble, `Surrogate.load(..., ensemble=True)`) or its XGBoost trees (as the exact cell
    table of `models.trees.TreeTable`), the FC-NN (one network or all K members) and the stage
    basis. ValueError for a model trained with physics input features (their Saha solve is not
    part of the portable format; serve it with `Surrogate`) or of another kind.
    """
    from opacity_jax import portable
    from opacity_jax.data.transforms import KAPPA_TINY
    from opacity_jax.physics import constants as C
    from opacity_jax.physics import quadrature

    kind = model.meta.get("model")
    arch = {"format": portable.FORMAT, "format_version": portable.FORMAT_VERSION,
            "model": kind, "elements": [int(z) for z in model.elements],
            "element_symbols": [_symbol(z) for z in model.elements],
            "energy_edges_ev": np.asarray(model.energy_edges_ev, np.float64).tolist(),
            "domain": model.domain, "package_version": opacity_jax.__version__,
            "members": int(getattr(model, "members", 1)),
            "combination": {"kappa": "member mean of kappa",
                            "std": "population standard deviation (ddof 0) of member kappa"},
            "units": {"temperature": "eV", "density": "g/cm^3", "energy": "eV",
                      "kappa": "cm^2/g"},
            "forward": portable.__doc__}
    arrays = {}
    f32 = lambda a: np.asarray(a, np.float32)
    # (K, nZ, ...) member-major leaves -> (nZ, K, ...): the element axis leads every array
    by_element = lambda a: f32(np.swapaxes(np.asarray(a), 0, 1))

    def dense_layers(prefix, tree):
        layers = sorted(tree, key=lambda k: int(k.split("_")[1]))
        for i, name in enumerate(layers):
            arrays[f"{prefix}/{i}/kernel"] = by_element(tree[name]["kernel"])
            arrays[f"{prefix}/{i}/bias"] = by_element(tree[name]["bias"])
        return len(layers)

    def output_scaling():
        sc = model.scaling
        arrays["scale"] = f32(sc.scale)
        arrays["shift"] = f32(sc.shift)
        arch["scaling"] = {"name": sc.name, "eps": float(sc.eps),
                           "floor_decades": float(sc.floor_decades), "kappa_tiny": KAPPA_TINY}

    if kind in ("cae", "fcnn") and model.physics_features is not None:
        raise ValueError("portable weights take (log10 T, log10 rho) inputs; this surrogate was "
                         "trained with physics input features (physics_features), whose Saha "
                         "solve the portable format does not hold: serve it with Surrogate")
    if kind == "cae":
        std = transforms.Standardizer.from_dict(model.meta["latent"]["x_standardizer"])
        # as served: float64 for the trees (their thresholds sit on float64-standardized grid
        # nodes), float32 for the networks
        wide = np.float64 if model.regressor == "xgboost" else np.float32
        arrays["x_mean"] = np.asarray(std.mean, wide)
        arrays["x_std"] = np.asarray(std.std, wide)
        if model.regressor == "xgboost":
            from opacity_jax.models import trees as trees_lib
            boosters, best = model._boosters
            tabs = trees_lib.stack_tables([
                trees_lib.TreeTable.from_booster(boosters[int(z)], best[int(z)])
                for z in model.elements])
            arrays["trees/t0"] = f32(tabs.t0)
            arrays["trees/t1"] = f32(tabs.t1)
            arrays["trees/values"] = f32(tabs.values)
            arch["latent"] = "xgboost"
        else:
            arch["latent"] = "mlp"
            arch["latent_mlp"] = {"layers": dense_layers("mlp", model._params["mlp"]["params"]),
                                  "activation": "relu"}
        cae = model._params["cae"]["params"]
        arrays["from_latent/kernel"] = f32(cae["from_latent"]["kernel"])
        arrays["from_latent/bias"] = f32(cae["from_latent"]["bias"])
        n_dec = len([k for k in cae if k.startswith("dec_")])
        for i in range(n_dec):
            arrays[f"dec/{i}/kernel"] = f32(cae[f"dec_{i}"]["kernel"])
            arrays[f"dec/{i}/bias"] = f32(cae[f"dec_{i}"]["bias"])
        arrays["z_mean"] = f32(model.meta["latent"]["z_mean"])
        arrays["z_std"] = f32(model.meta["latent"]["z_std"])
        output_scaling()
        c = model.meta["cae"]
        strides = tuple(c.get("strides", ())) or (2,) * len(c["channels"])
        arch.update(shared=["x_mean", "x_std"],
                    decoder={"length": int(c["n_bins"]) // int(np.prod(strides)),
                             "channels": int(c["channels"][-1]), "kernel": int(c["kernel"]),
                             "strides": [int(v) for v in strides[::-1]]})
    elif kind == "fcnn":
        std = transforms.Standardizer.from_dict(model.meta["fcnn"]["x_standardizer"])
        arrays["x_mean"] = f32(std.mean)          # float32, as the network is served
        arrays["x_std"] = f32(std.std)
        # the bin centres as the model reads them (float32), then log10
        arrays["energy_ev"] = f32(model.energy_ev)
        arch["fcnn"] = {"layers": dense_layers("fcnn", model._params["fcnn"]["params"]),
                        "activation": "relu",
                        "inputs": "standardized (log10 E, log10 T, log10 rho), E the bin centres"}
        output_scaling()
        arch["shared"] = ["x_mean", "x_std", "energy_ev"]
    elif kind == "stage_basis":
        for k, v in model.params.items():
            arrays[k] = f32(v)
        for k in ("q_lo", "atomic_weight", "ionization_energies_ev", "knot_mask", "stage_mask",
                  "boundary_mask"):
            arrays[k] = f32(getattr(model.consts, k))
        nodes, weights = quadrature.gauss_legendre(6)
        arrays["quadrature/nodes"] = np.asarray(nodes, np.float64)
        arrays["quadrature/weights"] = np.asarray(weights, np.float64)
        spec = model.spec
        arch.update(shared=["quadrature/nodes", "quadrature/weights"],
                    stage_basis={"n_stages": spec.n_stages, "correction": bool(spec.correction),
                                 "knots_log10_t": list(spec.knots_log10_t)},
                    constants={"saha_const_cm3_ev32": C.SAHA_CONST_CM3_EV32,
                               "atomic_mass_unit_g": C.ATOMIC_MASS_UNIT_G,
                               "kramers_ff_cgs": C.KRAMERS_FF_CGS,
                               "k_boltzmann_ev_k": C.K_BOLTZMANN_EV_K,
                               "h_planck_ev_s": C.H_PLANCK_EV_S, "thomson_cm2": C.THOMSON_CM2})
    else:
        raise ValueError(f"portable weights exist for 'cae', 'fcnn' and 'stage_basis' models, "
                         f"not {kind!r}")
    env = getattr(model, "envelope", None)
    arch["envelope"] = env.to_dict() if env is not None else None
    arch["arrays"] = [{"name": k, "shape": list(v.shape), "dtype": str(v.dtype)}
                      for k, v in arrays.items()]
    return arch, arrays


def write_portable(model, directory) -> list:
    """Write `portable_arrays(model)` as ``architecture.json`` + ``weights.npz`` (no pickle) in
    `directory`; returns the two paths."""
    import io

    from opacity_jax import portable

    arch, arrays = portable_arrays(model)
    d = Path(directory)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    _atomic_bytes(d / portable.WEIGHTS_FILE, buf.getvalue())
    return [workdir_lib.write_json(d / portable.ARCH_FILE, arch), d / portable.WEIGHTS_FILE]


FORMATS = ("hdf5", "text")


def export_workdir(workdir, *, regressor: Optional[str] = None, artifact: str = "",
                   platforms: Sequence[str] = (), output: str = "",
                   formats: Sequence[str] = FORMATS, elements: Sequence = (),
                   temperature_ev: str = "", density_gcc: str = "", groups_ev: str = "",
                   compare_generator: bool = False, supernu_dir: str = "",
                   energy_ratio: str = "", portable_dir: str = "",
                   outside: str = "raise", ensemble: Optional[bool] = None) -> list:
    """What bin/export does, for any model family.

    * `artifact`: the CAE device pipeline as a jax.export artifact;
    * `output` + `formats`: opacity tables (`output` + '.h5' / '.txt') on the `log_axis` specs
      of T [eV] and rho [g/cm^3]; with `groups_ev` (a `log_axis` spec of group edges [eV]) the
      HDF5 file also holds the group opacities (and the ensemble spread), and with
      `compare_generator` their errors against the generator's native-resolution truth go to
      `output` + '_groups.json' (formats may then be empty);
    * `supernu_dir`: SuperNu's two layouts (`<dir>/Table/op_*.table`, `<dir>/opacities.h5`) on
      T x `energy_ratio` point energies (a `log_axis` spec; default
      `supernu.default_energy_ratio()`), per element at partial density;
    * `portable_dir`: plain-array weights + JSON architecture (`write_portable`; the
      validity envelope is its 'envelope' entry) of the model as loaded: `regressor` picks a
      CAE's latent MLP or XGBoost trees, `ensemble` (`Surrogate.load`) its latent ensemble
      (True) or an FC-NN's first member only (False).

    `outside`: what table points outside the validity envelope get (`envelope.POLICIES`:
    'raise' by default, 'clamp' as SuperNu clamps, 'nan', 'warn'); the envelope is written
    next to every table (`output` + '_envelope.json', `<supernu_dir>/envelope.json`).

    `elements`: symbols or Z (empty: all served). Returns the paths written. ValueError when
    there is nothing to do, a format is unknown or an axis is missing (checked before any work).
    """
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ValueError(f"unknown format {bad[0]!r}; allowed: {', '.join(FORMATS)}")
    if not (artifact or output or supernu_dir or portable_dir):
        raise ValueError("nothing to do: give --output, --supernu_dir, --portable_dir and/or "
                         "--artifact")
    if (output or supernu_dir) and not (temperature_ev and density_gcc):
        raise ValueError("tables need --temperature_ev and --density axes")
    if compare_generator and not (output and groups_ev):
        raise ValueError("--compare_generator needs --groups_ev and --output")
    from opacity_jax.serve.surrogate import Surrogate
    from opacity_jax.serve import envelope as envelope_lib
    envelope_lib.check_policy(outside)
    model = Surrogate.load(workdir, regressor=regressor, outside=outside, ensemble=ensemble)
    written = []

    def write_envelope(path):
        if model.envelope is not None:
            written.append(workdir_lib.write_json(path, dict(model.envelope.to_dict(),
                                                            policy=outside)))

    if artifact:
        written.append(write_artifact(model.device_pipeline(), artifact, list(platforms) or None))
    if portable_dir:
        written += write_portable(model, portable_dir)       # envelope in architecture.json
    els = [int(e) if str(e).isdigit() else e for e in elements] or None
    t = log_axis(temperature_ev) if temperature_ev else None
    r = log_axis(density_gcc) if density_gcc else None
    if output:
        table = opacity_table(model, t, r, els) if formats else {}
        if groups_ev:
            grp = group_table(model, log_axis(groups_ev), t, r, els)
            table.update(grp if formats else {})
            if compare_generator:
                truth = generator_group_truth(grp["elements"], grp["group_edges_ev"], t, r)
                rep = {"workdir": str(workdir), "model": model.meta.get("model"),
                       "temperature_ev": t.tolist(), "density_gcc": r.tolist(),
                       "group_edges_ev": grp["group_edges_ev"].tolist(),
                       "elements": [_symbol(z) for z in grp["elements"]],
                       "truth": "generator at 15000 native bins, coarsened the same way",
                       "errors": group_errors(grp["group_kappa"], truth,
                                              grp["group_kappa_std"])}
                written.append(workdir_lib.write_json(Path(output + "_groups.json"), rep))
        for fmt in formats:
            written.append(write_hdf5(table, output + ".h5") if fmt == "hdf5"
                           else write_text(table, output + ".txt"))
        write_envelope(Path(output + "_envelope.json"))
    if supernu_dir:
        from opacity_jax.data import supernu
        tab = supernu.from_surrogate(model, els, t, r,
                                     log_axis(energy_ratio) if energy_ratio else None)
        written += supernu.write_text_layout(tab, Path(supernu_dir) / supernu.TEXT_DIR)
        written.append(supernu.write_hdf5_layout(tab, Path(supernu_dir) / supernu.HDF5_NAME))
        write_envelope(Path(supernu_dir) / "envelope.json")
    return written
