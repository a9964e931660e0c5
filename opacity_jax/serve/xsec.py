"""Trained photodissociation cross-section nets (`XsecSurrogate`) and their input descriptors.

Training, the interpolation baseline and evaluation live in `opacity_jax.experiments.xsec`;
this module only loads a workdir and predicts sigma(v, J, lambda) [cm^2], so it imports no
trainer.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ml_collections import ConfigDict

from opacity_jax.data import embedded
from opacity_jax.errors import DomainError
from opacity_jax.models import xsec as xsec_models
from opacity_jax.physics import molecular as _mol
from opacity_jax.physics import reflection
from opacity_jax.serve.chunks import DEFAULT_CHUNK, check_chunk, map_chunks
from opacity_jax.serve.surrogate import member_major
from opacity_jax.train import workdir as workdir_lib

LABEL = "xsec"
REQUIRED_KEYS = ["molecules", "per_molecule", "xsec.n_v", "xsec.n_j", "xsec.hidden",
                 "xsec.dropout", "xsec.v_encoding"]    # model.json, checked on load


def make_descriptors(v, J, energy, lam_nm, lam_max: float, v_max: int, e_min: float,
                     lam_min: float):
    """Net inputs for levels x wavelengths.

    Args:
      v, J: (n,) quantum numbers; energy: (n,) E_vJ [hartree]; lam_nm: (m,) [nm];
      lam_max [nm], v_max, e_min [hartree, < 0], lam_min [nm]: the molecule's scales
      (MoleculeData; lam_min / lam_max the ends of its wavelength grid).
    Returns:
      (n * m, N_DESCRIPTORS) float32, level-major (row i * m + k is level i, wavelength k);
      columns as models.xsec.DESCRIPTORS.
    """
    v = np.asarray(v, np.float64)
    J = np.asarray(J, np.float64)
    e = np.asarray(energy, np.float64)
    lam = np.asarray(lam_nm, np.float64)
    n, m = v.size, lam.size
    rep = lambda a: np.repeat(a, m)   # noqa: E731
    w_rel = _mol.wavelength_to_hartree(lam) / abs(e_min)
    u = (lam - lam_min) / max(lam_max - lam_min, 1e-300)
    out = np.stack([np.tile(lam / lam_max, n), rep(v), rep(J), rep(v / max(v_max, 1)),
                    rep(e / abs(e_min)), np.tile(w_rel, n), np.tile(u, n)], axis=-1)
    return out.astype(np.float32)



def prior_calibration(prior_cfg, name: str):
    """{'shift_ev': s [eV], 'log10_scale': log10 c, ...} fitted for `name` on training rows
    (prior_cfg.calibration, written by experiments.xsec attach_prior), or None if uncalibrated."""
    cal = prior_cfg.get("calibration", None)
    if not cal:
        return None
    if name not in cal:
        raise ValueError(f"prior.calibration has no entry for {name!r} (has {sorted(cal)})")
    return cal[name]


def prior_curves(prior_cfg, name: str):
    """(upper-curve shift [eV], transition-dipole scale) of the curves the prior of `name` is
    built from: prior_cfg.upper_shift_ev / dipole_scale, corrected by the calibration if any
    (upper curve lowered by the fitted s, dipole times 10 ** (log10 c / 2))."""
    shift = float(prior_cfg.get("upper_shift_ev", 0.0))
    dip = float(prior_cfg.get("dipole_scale", 1.0))
    cal = prior_calibration(prior_cfg, name)
    if cal is None:
        return shift, dip
    # Rounded so that a shift that cancels the configured one hits the same cache entry.
    return round(shift - float(cal["shift_ev"]), 9), dip * 10.0 ** (0.5 * float(cal["log10_scale"]))


def prior_molecule(prior_cfg, name: str):
    """The Molecule the prior of `name` is built from: the package's curves, or perturbed ones
    (prior_curves: prior_cfg.upper_shift_ev [eV], prior_cfg.dipole_scale, and the calibration;
    physics.reflection)."""
    return reflection.perturbed_molecule(name, *prior_curves(prior_cfg, name))


def prior_slope_features(sigma_grid, grid_nm, lam_nm, floor: float) -> np.ndarray:
    """(n, m, 2) float32 models.xsec.SHIFT_FEATURES at wavelengths lam_nm [nm].

    Args:
      sigma_grid: (n, g) sigma_prior [cm^2] of n levels on the molecule's grid grid_nm (g,) [nm,
        increasing]; lam_nm (m,) [nm] inside the grid; floor: the target's floor.
    The first and second differences of log10 max(sigma_prior, floor x its grid max) per grid
    step [dex] (one-sided at the ends), linear in the grid index between grid points; defined on
    the grid, so a wavelength's value does not depend on which other wavelengths are asked for.
    """
    s = np.asarray(sigma_grid, np.float64)
    cmax = np.maximum(s.max(axis=1, keepdims=True), 1e-300)
    lp = np.log10(np.maximum(s, floor * cmax) / cmax)
    slope = np.gradient(lp, axis=1) if lp.shape[1] > 1 else np.zeros_like(lp)
    curv = np.zeros_like(lp)
    if lp.shape[1] > 2:
        curv[:, 1:-1] = lp[:, 2:] - 2.0 * lp[:, 1:-1] + lp[:, :-2]
        curv[:, 0], curv[:, -1] = curv[:, 1], curv[:, -2]
    grid = np.asarray(grid_nm, np.float64)
    lam = np.atleast_1d(np.asarray(lam_nm, np.float64))
    if lam.shape == grid.shape and np.array_equal(lam, grid):
        out = np.stack([slope, curv], axis=-1)
    else:
        pos = np.interp(lam, grid, np.arange(grid.size, dtype=np.float64))
        lo = np.clip(np.floor(pos).astype(int), 0, grid.size - 1)
        hi = np.minimum(lo + 1, grid.size - 1)
        t = (pos - lo)[None, :, None]
        both = np.stack([slope, curv], axis=-1)
        out = (1.0 - t) * both[:, lo] + t * both[:, hi]
    return out.astype(np.float32)


def prior_inputs(prior_cfg, name: str, v, J, lam_nm, sigma_ref: float, floor: float, grid_nm):
    """(features (n, m, N_PRIOR_FEATURES [+ N_SHIFT_FEATURES]) float32, sigma_prior (n, m)
    [cm^2]) of levels (v, J) x wavelengths lam_nm [nm] (reflection.prior_features on
    prior_molecule's curves).

    The prior of a whole table takes minutes for the heavy ions (Na2+: 1723 levels), and every
    split, arm and evaluation of a table needs the same one, so it is cached on disk
    ($OPACITY_JAX_CACHE, keyed by the curves' perturbation, the levels, the wavelengths and a
    hash of the physics sources). A calibrated prior (prior_cfg.calibration) is keyed by its
    upper-curve shift alone: the dipole scale and the fitted scale are one global factor on
    sigma (sigma is quadratic in D), applied after the cache, so it is computed and stored at
    unit dipole scale. With prior_cfg.shift_head the features end with prior_slope_features
    (N_PRIOR_FEATURES + N_SHIFT_FEATURES columns), from the prior on grid_nm, which
    reflection.prior_features computes anyway.
    """
    shift, dip = prior_curves(prior_cfg, name)
    factor = 1.0
    if prior_calibration(prior_cfg, name) is not None:
        factor, dip = dip * dip, 1.0
    key = hashlib.sha256()
    for path in (*_mol.SOURCE_FILES, Path(reflection.__file__)):
        key.update(path.read_bytes())
    key.update(json.dumps([name, shift, dip]).encode())
    cache_mol = reflection.perturbed_molecule(name, shift, dip)

    def compute(mol, v_, J_, lam_, fill):
        k = key.copy()
        for a in (np.asarray(v_, np.int64), np.asarray(J_, np.int64),
                  np.asarray(lam_, np.float64), np.float64(fill)):
            k.update(a.tobytes())
        path = embedded.default_cache_dir() / f"xsec_prior_{k.hexdigest()[:20]}.npz"
        if path.exists():
            with np.load(path) as z:
                sig, parts = z["sigma"], {n: z[n] for n in ("airy", "reflection", "r_c_bohr")}
        else:
            sig, parts = reflection.prior_cross_sections(cache_mol, v_, J_, lam_, fill=fill,
                                                         return_parts=True)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.stem + ".tmp.npz")
            np.savez(tmp, sigma=sig, **parts)
            tmp.replace(path)
        if factor != 1.0:
            sig = sig * factor
            parts = {**parts, "airy": parts["airy"] * factor,
                     "reflection": parts["reflection"] * factor}
        seen["sigma"] = sig
        return sig, parts

    seen = {}
    feats, sig = reflection.prior_features(prior_molecule(prior_cfg, name), v, J, lam_nm,
                                           sigma_ref, floor, grid_nm,
                                           fill=float(prior_cfg.get("fill", 1e-3)),
                                           compute=compute)
    if bool(prior_cfg.get("shift_head", False)):
        n_lam = np.atleast_1d(np.asarray(lam_nm)).size
        extra = prior_slope_features(seen["sigma"][:, n_lam:], grid_nm, lam_nm, floor)
        feats = np.concatenate([feats, extra], axis=-1)
    return feats, sig



class XsecSurrogate:
    """Trained cross-section nets loaded from a workdir.

    Attributes: molecules (names); meta (model.json dict); members K (ensemble size, 1 for a
    single net per molecule). params: leaves (K, n_molecules, ...).
    """

    def __init__(self, meta: dict, params, chunk: int = 8 * DEFAULT_CHUNK):
        self.chunk = check_chunk(chunk)
        self.meta = meta
        self.members = int(jax.tree_util.tree_leaves(params)[0].shape[0])
        self.molecules = list(meta["molecules"])
        x = meta["xsec"]
        self.model = xsec_models.make_model(meta["model"], x["n_v"], x["n_j"], x["hidden"],
                                            x["dropout"], x["v_encoding"],
                                            x["kinetic_energy"], x["n_fourier"],
                                            x["fourier_max"],
                                            bool(x.get("shift_head", False)))
        self.params = params
        self._apply = jax.jit(jax.vmap(lambda p, xx: self.model.apply(p, xx), in_axes=(0, None)))
        self._levels = {}
        for name in self.molecules:
            lv = meta["per_molecule"][name]["levels"]
            self._levels[name] = {(int(a), int(b)): float(e) for a, b, e in
                                  zip(lv["v"], lv["J"], lv["energy_hartree"])}

    @classmethod
    def load(cls, workdir, chunk: int = 8 * DEFAULT_CHUNK) -> "XsecSurrogate":
        """Load model.json and the best parameters of checkpoint 'xsec' (the step model.json
        records, digest-checked). chunk: (level, wavelength) points per compiled call."""
        workdir = Path(workdir)
        meta = workdir_lib.read_model_meta(
            workdir, f"train with bin/train --config=configs/xsec.py --workdir={workdir}")
        if meta.get("model") not in xsec_models.MODELS:
            raise ValueError(f"{workdir_lib.model_path(workdir)}: model {meta.get('model')!r} "
                             f"is not a cross-section net")
        workdir_lib.require_keys(meta, workdir_lib.model_path(workdir), REQUIRED_KEYS)
        k = int(meta["xsec"].get("members", 1))
        params = workdir_lib.restore_params(workdir, LABEL, meta)
        return cls(meta, member_major(params, len(meta["molecules"]), k), chunk)

    def _index(self, molecule) -> int:
        name = molecule if molecule in self.molecules else _mol.get_molecule(molecule).name
        if name not in self.molecules:
            raise DomainError(f"molecule {molecule!r} not served; available: {self.molecules}")
        return self.molecules.index(name)

    def log_sigma_rel(self, molecule, v, J, wavelength_nm, return_std: bool = False):
        """(n_levels, n_lambda) y = log10(sigma / sigma_ref) predicted for levels x wavelengths.

        Args: molecule name; v, J (n_levels,) ints naming bound levels of the table; wavelength_nm
        (n_lambda,) inside the molecule's grid range [nm]. DomainError otherwise.
        return_std: also return the members' standard deviation of y [dex] (zeros if K = 1).
        Returns: the member mean of y, or (mean, std).
        """
        y = self.log_sigma_rel_members(molecule, v, J, wavelength_nm)
        mean = y[0] if self.members == 1 else y.mean(0)
        return (mean, y.std(0)) if return_std else mean

    def log_sigma_rel_members(self, molecule, v, J, wavelength_nm) -> np.ndarray:
        """(K, n_levels, n_lambda) y of every ensemble member (arguments as log_sigma_rel)."""
        i = self._index(molecule)
        name = self.molecules[i]
        pm = self.meta["per_molecule"][name]
        v = np.atleast_1d(np.asarray(v, np.int64))
        J = np.atleast_1d(np.asarray(J, np.int64))
        if v.shape != J.shape or v.ndim != 1:
            raise ValueError("v and J must be equal-length 1-D arrays")
        lam = np.atleast_1d(np.asarray(wavelength_nm, np.float64))
        grid = pm["wavelength_nm"]
        lo, hi = float(grid[0]), float(grid[-1])
        if lam.ndim != 1 or np.any(~np.isfinite(lam)) or np.any(lam < lo * (1 - 1e-9)) or \
                np.any(lam > hi * (1 + 1e-9)):
            raise DomainError(f"{name}: wavelengths must lie in the trained range "
                              f"[{lo:.4g}, {hi:.4g}] nm")
        try:
            e = np.array([self._levels[name][(int(a), int(b))] for a, b in zip(v, J)])
        except KeyError as exc:
            raise DomainError(f"{name}: level (v, J) = {exc.args[0]} is not a bound level of "
                              f"the table (J <= {max(k[1] for k in self._levels[name])})") \
                from None
        x = make_descriptors(v, J, e, lam, pm["lam_max_nm"], pm["v_max"], pm["e_min_hartree"],
                             float(grid[0]))
        if self.meta.get("prior"):
            f, _ = self.prior(name, v, J, lam)
            x = np.concatenate([x, f.reshape(-1, f.shape[-1])], axis=1)
        p = jax.tree_util.tree_map(lambda a: a[:, i], self.params)
        y = map_chunks(lambda xc: self._apply(p, jnp.asarray(xc)), [x], self.chunk,
                       out_axis=1).astype(np.float64)
        return y.reshape(self.members, v.size, lam.size)

    def prior(self, molecule, v, J, wavelength_nm):
        """(features (n_levels, n_lambda, N_PRIOR_FEATURES), sigma_prior (n_levels, n_lambda)
        [cm^2]) of the residual net's prior (model 'xsec_prior' only; the last call per
        molecule cached), on the curves calibrated in training where model.json records
        prior.calibration (prior_curves)."""
        if not self.meta.get("prior"):
            raise ValueError(f"model {self.meta['model']!r} has no physics prior")
        name = self.molecules[self._index(molecule)]
        v = np.atleast_1d(np.asarray(v, np.int64))
        J = np.atleast_1d(np.asarray(J, np.int64))
        lam = np.atleast_1d(np.asarray(wavelength_nm, np.float64))
        key = (name, v.tobytes(), J.tobytes(), lam.tobytes())
        cache = self.__dict__.setdefault("_prior_cache", {})
        cached = cache.get(name)
        if cached is None or cached[0] != key:
            pm = self.meta["per_molecule"][name]
            val = prior_inputs(ConfigDict(self.meta["prior"]), name, v, J, lam,
                               pm["sigma_ref_cm2"], self.meta["target"]["floor"],
                               pm["wavelength_nm"])
            cache[name] = cached = (key, val)
        return cached[1]

    def cross_sections(self, molecule, v, J, wavelength_nm, return_std: bool = False):
        """(n_levels, n_lambda) predicted sigma [cm^2] (arguments as log_sigma_rel): for an
        ensemble 10 ** (member mean of log10 sigma); with return_std also the members' standard
        deviation of log10 sigma [dex], as (sigma, std_dex)."""
        y, sd = self.log_sigma_rel(molecule, v, J, wavelength_nm, return_std=True)
        name = self.molecules[self._index(molecule)]
        sig = 10.0 ** y * self.meta["per_molecule"][name]["sigma_ref_cm2"]
        return (sig, sd) if return_std else sig
