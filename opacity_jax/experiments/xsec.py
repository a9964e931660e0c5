"""Cross-section nets sigma_{vJ}(lambda) for seven molecular ions: data, training, evaluation.

Pipeline (`run_xsec(config, workdir)`, config = configs/xsec.py, configs/xsec_pinn.py or
configs/xsec_prior.py):

1. table: the seven-ion table of `data.xsec_generator.generate_xsec_table` at (J_max,
   n_wavelengths), generated once and cached in `$OPACITY_JAX_CACHE` (`ensure_xsec_table`,
   keyed by the settings and a hash of the physics sources), or a user's table (`data.path`,
   a file written by `save_xsec_table`).
2. split (`data.xsec_generator.split_xsec_table`): test = held-out (v, J) pairs ('levels'),
   wavelength windows ('wavelength_windows') or whole v levels ('v_levels'); validation (early
   stopping / LR plateau only) = the same kind of split of the remaining rows (seed + 1).
3. inputs: descriptors (lambda / lambda_max, v, J, v / v_max, E_vJ / |E_min|, photon energy /
   |E_min|, position in the wavelength grid; `models.xsec.DESCRIPTORS`) per sample; the nets
   build their features from them. lambda_min/max, v_max, E_min are properties of each
   molecule's wavelength grid and level structure, so they never use test data.
4. target ("output log sigma; MSLE"): sigma is ~1e-17 cm^2, so MSLE of raw sigma is
   meaningless (log1p(1e-17) ~ 1e-17: every error vanishes). The target is instead

       y = log10( max(sigma, floor * m_vJ) / sigma_ref ),

   sigma_ref the molecule's largest *training* cross-section and m_vJ the largest known (non-test)
   sigma of the level's curve (its whole curve for levels that are entirely held out). The loss
   is the masked MSE of y, i.e. the mean squared log10 error of sigma / sigma_ref: the paper's
   MSLE up to the factor (ln 10)^2 and with log in place of log1p (log1p(x) ~ x for the
   sigma / sigma_ref << 1 that fill the table, which would weigh every point by its size).
   The floor (default 1e-3 = eval.threshold) handles exact zeros and clips the deep dips at the
   nodes of sigma(lambda) to the bottom of the evaluated region, so they cannot dominate the
   squared log error (98 % of the generated points lie above 1e-3 of their curve's maximum,
   none below 1e-8 at J_max = 12).
5. model: seven nets (one per molecule) on the loop's entity axis, trained together by
   `train.loop.train` with `experiment.regression_task`; ragged molecules (52 to 1723 levels)
   are padded and masked by `pack_ragged`. With `data.balance` (default) each molecule's
   training rows are repeated floor(n_max / n_e) times first: the padded steps are computed for
   every entity anyway, so H2+ (230 levels) gets as many updates per epoch as Na2+ (1723)
   instead of 1/7 of them, at no extra cost.
   For 'xsec_prior' (a residual on the semiclassical prior of `physics.reflection`) each
   molecule also carries the prior's features on its grid (`attach_prior`; the prior exists
   only for the package's ions, whose bound levels and curves it is built from), appended to
   the descriptors, and the loss down-weights the dips of sigma (`prior_point_weights`).
6. artifacts: `model.json` (architecture, per-molecule scales, wavelength grids, levels, split,
   table provenance incl. generation time) and the orbax checkpoint 'xsec' in the workdir.

`evaluate_xsec(workdir)` writes `<workdir>/eval/metrics.json` and figures: on the held-out rows,
the median (and p90) of |sigma_pred / sigma_true - 1| over points where sigma_true > threshold
(1e-3) x the maximum of its own (v, J) curve, the MSLE (natural log) there, per molecule and
pooled, the same for an interpolation baseline built from the known rows only, the training-row
error, and the error of the LTE average sum_vJ p_vJ(T) sigma_vJ(lambda) (populations of
`physics.molecular.lte_weights`, renormalised over the table's levels J <= J_max) built from the
net alone ('net') and from the table completed by the net where held out ('completed').

`run_report(root)` trains and evaluates the published and the physics-informed nets on the three
splits (continuous v encoding on 'v_levels'), and writes `report.md` / `report.json`.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Dict, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from ml_collections import ConfigDict

import opacity_jax
from opacity_jax.data import embedded
from opacity_jax.data import xsec_generator as xg
from opacity_jax.errors import DomainError
from opacity_jax.models import xsec as xsec_models
from opacity_jax.physics import molecular as _mol
from opacity_jax.physics import prior_calibration
from opacity_jax.physics import reflection
from opacity_jax.serve.xsec import (LABEL, XsecSurrogate, make_descriptors, prior_inputs,
                                   prior_molecule)
from opacity_jax.train import experiment, loop
from opacity_jax.train import workdir as workdir_lib
from opacity_jax.train.task import EntityData, pack_ragged

MODEL_FILE = experiment.MODEL_FILE
SPLITS = xg.SPLIT_KINDS


# ------------------------------------------------------------------------------------ table
def _physics_hash() -> str:
    """SHA-256 prefix of the sources that determine the table (any edit regenerates it)."""
    h = hashlib.sha256()
    for path in (*_mol.SOURCE_FILES, Path(xg.__file__)):
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def _molecule_list(spec) -> list:
    if spec is None or spec == "" or spec == ():
        return list(_mol.MOLECULE_NAMES)
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    return [_mol.get_molecule(str(m).strip()).name for m in items]


def table_cache_path(molecules: Sequence[str], J_max: int, n_wavelengths: int,
                     cache_dir=None) -> Path:
    """Cache file of the generated table with these settings (may not exist yet)."""
    mols = _molecule_list(molecules)
    tag = "all7" if mols == list(_mol.MOLECULE_NAMES) else "-".join(
        m.replace("+", "p") for m in mols)
    root = Path(cache_dir) if cache_dir is not None else embedded.default_cache_dir()
    return root / f"xsec_{tag}_J{int(J_max)}_L{int(n_wavelengths)}_{_physics_hash()}.h5"


def ensure_xsec_table(molecules: Sequence[str] = _mol.MOLECULE_NAMES, J_max: int = 12,
                      n_wavelengths: int = 100, cache_dir=None, progress: bool = True) -> Path:
    """Path of the cached generated table, generating (and timing) it if missing.

    Args:
      molecules: names (default all seven). J_max: largest J. n_wavelengths: grid points per
        molecule. cache_dir: default `$OPACITY_JAX_CACHE` or ~/.cache/opacity_jax.
      progress: progress bar while generating.
    Returns:
      Path of an HDF5 table (save_xsec_table format) whose provenance attribute records the
      settings and `generation_seconds` (wall clock of generate_xsec_table).
    """
    path = table_cache_path(molecules, J_max, n_wavelengths, cache_dir)
    if path.exists():
        return path
    mols = _molecule_list(molecules)
    logging.info("xsec table %s not cached; generating it", path)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(mols), desc=f"generating xsec table (J_max={J_max})",
                   unit="molecule")

    def tick(info):
        if bar is not None and info["fraction"] >= 1.0:
            bar.set_postfix_str(info["molecule"])
            bar.update(1)

    t0 = time.perf_counter()
    df = xg.generate_xsec_table(mols, J_max=int(J_max), n_wavelengths=int(n_wavelengths),
                                progress=tick)
    seconds = time.perf_counter() - t0
    if bar is not None:
        bar.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    prov = {"generator": "opacity_jax.data.xsec_generator.generate_xsec_table",
            "molecules": mols, "J_max": int(J_max), "n_wavelengths": int(n_wavelengths),
            "physics_hash": _physics_hash(), "generation_seconds": round(seconds, 2),
            "package_version": opacity_jax.__version__, "n_rows": int(len(df))}
    xg.save_xsec_table(df, path, provenance=prov)
    logging.info("wrote %s (%d rows) in %.1f s", path, len(df), seconds)
    return path


def table_provenance(path) -> dict:
    """The provenance dict stored in an HDF5 table ({} for CSV or when absent)."""
    path = Path(path)
    if not path.name.lower().endswith((".h5", ".hdf5")):
        return {}
    import h5py
    with h5py.File(path, "r") as f:
        raw = f.attrs.get("provenance", "{}")
    return json.loads(raw.decode() if isinstance(raw, bytes) else raw)


def load_table(data_cfg, progress: bool = True):
    """(DataFrame, provenance) of the configured table (generated + cached unless data.path)."""
    mols = _molecule_list(data_cfg.get("molecules", ""))
    if data_cfg.path:
        path = Path(data_cfg.path)
        df = xg.load_xsec_table(path)
        known = set(df["molecule"].unique())
        missing = [m for m in mols if m not in known]
        if data_cfg.get("molecules", ""):
            if missing:
                raise ValueError(f"data.molecules {missing} are not in {path}")
            df = df[df["molecule"].isin(mols)].reset_index(drop=True)
        prov = dict(table_provenance(path), path=str(path))
    else:
        path = ensure_xsec_table(mols, int(data_cfg.J_max), int(data_cfg.n_wavelengths),
                                 progress=progress)
        df = xg.load_xsec_table(path)
        prov = dict(table_provenance(path), path=str(path))
    return df, prov


# ------------------------------------------------------------------------------------- data
@dataclasses.dataclass
class MoleculeData:
    """One molecule's table on its dense (level x wavelength) grid, with split masks.

    Attributes:
      name; v, J (n_lev,) int; energy (n_lev,) E_vJ [hartree]; lam (n_lam,) [nm] increasing;
      sigma (n_lev, n_lam) [cm^2]; train / val / test (n_lev, n_lam) bool (disjoint, covering);
      lam_max [nm]; v_max (>= 1); e_min [hartree] (< 0, the ground level); sigma_ref [cm^2]
      (largest training sigma); curve_max (n_lev,) [cm^2] largest known (non-test) sigma of
      each curve (the whole curve where all of it is held out); prior (n_lev, n_lam,
      N_PRIOR_FEATURES [+ N_SHIFT_FEATURES with prior.shift_head]) float32 inputs of the
      residual net on the semiclassical prior and
      sigma_prior (n_lev, n_lam) [cm^2] (None unless `attach_prior` was called).
    """

    name: str
    v: np.ndarray
    J: np.ndarray
    energy: np.ndarray
    lam: np.ndarray
    sigma: np.ndarray
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    lam_max: float
    v_max: int
    e_min: float
    sigma_ref: float
    curve_max: np.ndarray
    prior: Optional[np.ndarray] = None
    sigma_prior: Optional[np.ndarray] = None

    def descriptors(self, lev: Optional[np.ndarray] = None, lam: Optional[np.ndarray] = None):
        """(n_lev * n_lam, N_DESCRIPTORS) float32 net inputs of levels `lev` x wavelengths."""
        lev = np.arange(self.v.size) if lev is None else np.asarray(lev)
        lam = self.lam if lam is None else np.asarray(lam, np.float64)
        return make_descriptors(self.v[lev], self.J[lev], self.energy[lev], lam,
                                self.lam_max, self.v_max, self.e_min, float(self.lam[0]))

    def target(self, floor: float) -> np.ndarray:
        """(n_lev, n_lam) float32 y = log10(max(sigma, floor m_vJ) / sigma_ref)."""
        s = np.maximum(self.sigma, floor * self.curve_max[:, None])
        return (np.log10(s) - np.log10(self.sigma_ref)).astype(np.float32)


def _grid_order(df, name):
    """Row indices of molecule `name` in (J, v, wavelength) order, as xsec_arrays lays it out."""
    rows = np.flatnonzero(df["molecule"].to_numpy() == name)
    sub = df.iloc[rows]
    order = np.lexsort((sub["wavelength_nm"].to_numpy(), sub["v"].to_numpy(),
                        sub["J"].to_numpy()))
    return rows[order]


def prepare_data(df, data_cfg, seed: int):
    """Split the table and lay each molecule out on its grid.

    Args:
      df: table (XSEC_COLUMNS). data_cfg: config.data (split, test_fraction, val_fraction,
        n_windows). seed: split seed (validation uses seed + 1).
    Returns:
      (list of MoleculeData in table order, XsecSplit of the test split, XsecSplit of the
      validation split on the non-test rows).
    """
    kind = str(data_cfg.split)
    if kind not in SPLITS:
        raise ValueError(f"data.split must be one of {SPLITS}, got {kind!r}")
    nw = int(data_cfg.get("n_windows", 2))
    sp = xg.split_xsec_table(df, kind, float(data_cfg.test_fraction), int(seed), n_windows=nw)
    rest = np.flatnonzero(~sp.test)
    sv = xg.split_xsec_table(df.iloc[rest].reset_index(drop=True), kind,
                             float(data_cfg.val_fraction), int(seed) + 1, n_windows=nw)
    val = np.zeros(len(df), bool)
    val[rest[sv.test]] = True
    arrays = xg.xsec_arrays(df)
    out = []
    for name, a in arrays.items():
        idx = _grid_order(df, name)
        shape = a["sigma_cm2"].shape
        te, va = sp.test[idx].reshape(shape), val[idx].reshape(shape)
        tr = ~te & ~va
        sig = a["sigma_cm2"]
        if not tr.any():
            raise ValueError(f"{name}: no training rows left after the split")
        known = np.where(te, -np.inf, sig)
        cmax = known.max(axis=1)
        cmax = np.where(np.isfinite(cmax) & (cmax > 0), cmax, sig.max(axis=1))
        sref = float(sig[tr].max())
        if not sref > 0:
            raise ValueError(f"{name}: all training cross-sections are zero")
        # A curve that is zero everywhere has no scale of its own: floor it at the molecule's.
        cmax = np.where(cmax > 0, cmax, sref)
        out.append(MoleculeData(
            name=name, v=a["v"].astype(np.int64), J=a["J"].astype(np.int64),
            energy=a["energy_hartree"], lam=a["wavelength_nm"], sigma=sig, train=tr, val=va,
            test=te, lam_max=float(a["wavelength_nm"].max()), v_max=max(int(a["v"].max()), 1),
            e_min=float(a["energy_hartree"].min()), sigma_ref=sref, curve_max=cmax))
    return out, sp, sv


def _repeat(n: int, n_target: int) -> int:
    return max(1, n_target // max(n, 1))


def pack(mols: Sequence[MoleculeData], which: str, floor: float,
         balance: bool = False) -> EntityData:
    """EntityData (one row per molecule) of the `which` ('train'/'val'/'test') points.

    arrays: 'x' (n_mol, n_max, N_DESCRIPTORS [+ the prior's features where the molecules carry
    a prior: N_PRIOR_FEATURES, + N_SHIFT_FEATURES with prior.shift_head]) float32, 'y' (n_mol,
    n_max) float32 targets.
    balance: repeat each molecule's rows floor(n_max / n_e) times (module docstring, 5.).
    """
    rows = []
    for m in mols:
        mask = getattr(m, which)
        lev, lam = np.nonzero(mask)
        x = make_descriptors(m.v[lev], m.J[lev], m.energy[lev], np.ones(1), m.lam_max,
                             m.v_max, m.e_min, float(m.lam[0]))
        ref = m.descriptors(np.zeros(1, np.int64))       # wavelength columns of the grid
        for col in (0, 5, 6):
            x[:, col] = ref[lam, col]
        row = {"x": x, "y": m.target(floor)[lev, lam]}
        if m.prior is not None:
            row["x"] = np.concatenate([x, m.prior[lev, lam]], axis=1)
            row["pw"] = prior_point_weights(m)[lev, lam]
        rows.append(row)
    if balance:
        n_max = max(len(r["y"]) for r in rows)
        rows = [{k: np.concatenate([a] * _repeat(len(r["y"]), n_max)) for k, a in r.items()}
                for r in rows]
    return pack_ragged(rows)


def one_hot_sizes(mols: Sequence[MoleculeData]):
    """(n_v, n_j): one-hot widths shared by every molecule's net (the entity axis needs one)."""
    return (max(int(m.v.max()) for m in mols) + 1, max(int(m.J.max()) for m in mols) + 1)


PRIOR_DIP = 1e-2   # sigma / curve max below which residual-net points are down-weighted


def prior_point_weights(m: MoleculeData) -> np.ndarray:
    """(n_lev, n_lam) float32 loss weights of the residual net: min(1, sigma / (PRIOR_DIP m_vJ)),
    at least 1e-2.

    The prior's nodes sit a fraction of the Airy length off the exact ones, so in the dips of
    sigma its log error is ~100x its typical 1e-3 dex: measured on HeH+ (J_max 4), 1.4 % of the
    points carried 89 % of the unweighted squared error, and the net fitted them instead of the
    bulk.
    """
    w = m.sigma / (PRIOR_DIP * m.curve_max[:, None])
    return np.clip(w, 1e-2, 1.0).astype(np.float32)


def attach_prior(mols: Sequence[MoleculeData], prior_cfg, floor: float) -> dict:
    """Fill each molecule's `prior` features and `sigma_prior` on its whole grid (in place).

    With prior_cfg.calibrate, the prior's curves are first calibrated on each molecule's
    training points (never its validation or test points): physics.prior_calibration fits the
    upper-curve shift s [eV] on the prior of the configured curves, refines it once on the
    exact prior of up to prior_cfg.refine_levels training levels at that shift (rounded to
    prior_cfg.shift_quantum_ev, so the splits of a table and the served model share one cached
    prior), the prior is rebuilt exactly on the curves with the upper curve lowered by s
    (serve.xsec.prior_curves), and the global scale c is the median log10 ratio of the training
    sigma to that prior at the resolved points (> 1e-3 of each level's training maximum).

    Returns:
      the prior config as used (a plain dict, stored in model.json): prior_cfg, plus
      'calibration' {molecule: {shift_ev, log10_scale, shift_unrounded_ev, misfit_dex,
      misfit0_dex, n_points}} when calibrated (misfits: mean |log10 residual| of the cheap fit
      after / before).
    """
    used = (json.loads(prior_cfg.to_json_best_effort())
            if hasattr(prior_cfg, "to_json_best_effort") else dict(prior_cfg))
    used.pop("calibration", None)
    if bool(used.get("calibrate", False)):
        q = float(used.get("shift_quantum_ev", 1e-3))
        n_sub = int(used.get("refine_levels", 48))
        cal = {}
        for m in mols:
            _, sig0 = prior_inputs(ConfigDict(used), m.name, m.v, m.J, m.lam, m.sigma_ref,
                                   floor, m.lam)
            fit = prior_calibration.fit_shift_scale(
                sig0, m.sigma, m.train, m.lam, max_shift_ev=float(used.get("max_shift_ev", 0.1)))
            # Interpolating the prior between grid wavelengths biases the shift by ~1 meV;
            # one refinement on the exact prior of a subset of training levels at that shift
            # (the remaining shift is small, and so is its interpolation bias). The subset is
            # one J (the one with most training levels): the prior's cost goes by its J' = J +- 1
            # continuum kernels, not by the number of levels.
            has = m.train.any(axis=1)
            js, counts = np.unique(m.J[has], return_counts=True)
            lev = np.flatnonzero(has & (m.J == js[np.argmax(counts)]))
            lev = lev[np.unique(np.linspace(0, lev.size - 1, min(n_sub, lev.size)).astype(int))]
            s1 = fit["shift_ev"]
            sub = dict(used, calibration={m.name: {"shift_ev": s1, "log10_scale": 0.0}})
            _, sig_sub = prior_inputs(ConfigDict(sub), m.name, m.v[lev], m.J[lev], m.lam,
                                      m.sigma_ref, floor, m.lam)
            fit2 = prior_calibration.fit_shift_scale(
                sig_sub, m.sigma[lev], m.train[lev], m.lam, max_shift_ev=0.01,
                coarse_step_ev=2e-4, tol_ev=1e-5)
            fit["shift_ev"] = s1 + fit2["shift_ev"]
            s = round(round(fit["shift_ev"] / q) * q, 9) if q > 0 else fit["shift_ev"]
            trial = dict(used, calibration={m.name: {"shift_ev": s, "log10_scale": 0.0}})
            _, sig1 = prior_inputs(ConfigDict(trial), m.name, m.v, m.J, m.lam, m.sigma_ref,
                                   floor, m.lam)
            kmax = np.where(m.train, m.sigma, -np.inf).max(axis=1, keepdims=True)
            use = m.train & (m.sigma > 1e-3 * kmax) & (m.sigma > 0)
            p1 = np.maximum(sig1, 1e-3 * np.maximum(sig1.max(axis=1, keepdims=True), 1e-300))
            c = float(np.median(np.log10(m.sigma[use] / p1[use])))
            cal[m.name] = {"shift_ev": s, "log10_scale": c, "shift_unrounded_ev": fit["shift_ev"],
                           "shift_first_ev": s1, "misfit_refined_dex": fit2["misfit_dex"],
                           "misfit_dex": fit["misfit_dex"], "misfit0_dex": fit["misfit0_dex"],
                           "n_points": fit["n_points"]}
            logging.info("%s: prior calibrated: upper curve lowered by %.4f eV (fit %.5f), "
                         "scale 10^%.4f; misfit %.4f -> %.4f dex", m.name, s, fit["shift_ev"], c,
                         fit["misfit0_dex"], fit["misfit_dex"])
        used["calibration"] = cal
    cfg = ConfigDict(used)
    for m in mols:
        m.prior, m.sigma_prior = prior_inputs(cfg, m.name, m.v, m.J, m.lam, m.sigma_ref,
                                              floor, m.lam)
    return used


# -------------------------------------------------------------------------------- training
def model_from_config(config, n_v: int, n_j: int):
    """The net of config.model / config.xsec for one-hot widths (n_v, n_j)."""
    x = config.xsec
    shift = config.model == "xsec_prior" and bool(config.prior.get("shift_head", False))
    return xsec_models.make_model(config.model, n_v, n_j, tuple(x.hidden), float(x.dropout),
                                  str(x.v_encoding), bool(x.kinetic_energy),
                                  int(x.n_fourier), float(x.fourier_max), shift)


def validate(config):
    """The config checks that need no data (run by experiment.validate_config before any
    work); ValueError naming the field."""
    if config.model not in xsec_models.MODELS:
        raise ValueError(f"config.model must be one of {sorted(xsec_models.MODELS)}, got "
                         f"{config.model!r}")
    if str(config.loss.name) != "msle":
        raise ValueError(f"loss.name must be 'msle' (MSE of log10(sigma / sigma_ref)), got "
                         f"{config.loss.name!r}")
    fl = float(config.data.floor)
    if not 0.0 < fl < 1.0:
        raise ValueError(f"data.floor must be in (0, 1), got {fl}")
    if int(config.xsec.get("ensemble", 1)) < 1:
        raise ValueError(f"xsec.ensemble must be >= 1, got {config.xsec.ensemble}")
    if config.model == "xsec_prior":
        p = config.get("prior", None)
        if p is None:
            raise ValueError("config.prior is required for model 'xsec_prior' "
                             "(configs/xsec_prior.py)")
        if not (float(p.get("fill", 1e-3)) >= 0 and float(p.get("dipole_scale", 1.0)) > 0):
            raise ValueError(f"prior.fill must be >= 0 and prior.dipole_scale > 0, got "
                             f"{p.get('fill')}, {p.get('dipole_scale')}")
        if not isinstance(p.get("shift_head", False), bool):
            raise ValueError(f"prior.shift_head must be True or False, got "
                             f"{p.get('shift_head')!r}")
        if not isinstance(p.get("calibrate", False), bool):
            raise ValueError(f"prior.calibrate must be True or False, got {p.get('calibrate')!r}")
        if not (float(p.get("max_shift_ev", 0.1)) > 0 and float(p.get("shift_quantum_ev", 1e-3))
                >= 0):
            raise ValueError(f"prior.max_shift_ev must be > 0 [eV] and prior.shift_quantum_ev "
                             f">= 0 [eV], got {p.get('max_shift_ev')}, "
                             f"{p.get('shift_quantum_ev')}")
    if config.data.split == "v_levels" and config.xsec.v_encoding == "onehot":
        logging.warning("data.split = 'v_levels' with xsec.v_encoding = 'onehot': a held-out v "
                        "enters through untrained first-layer weights; use 'continuous'")


def run_xsec(config, workdir, progress: bool = True) -> dict:
    """Train the seven cross-section nets into `workdir` (module docstring); resumable.

    Returns a summary dict (epochs, seconds, best validation loss per molecule).
    """
    validate(config)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    seed = int(config.seed)
    df, prov = load_table(config.data, progress)
    mols, sp, sv = prepare_data(df, config.data, seed)
    n_v, n_j = one_hot_sizes(mols)
    model = model_from_config(config, n_v, n_j)
    floor = float(config.data.floor)
    prior_used = None
    if config.model == "xsec_prior":
        prior_used = attach_prior(mols, config.prior, floor)
    tr = pack(mols, "train", floor, bool(config.data.balance))
    va = pack(mols, "val", floor)
    members = int(config.xsec.get("ensemble", 1))
    if members > 1:
        # Molecule x member entities (member-fastest), each with its own PRNG stream.
        tr, va = tr.replicate(members), va.replicate(members)
    meta = build_meta(config, mols, sp, sv, prov, n_v, n_j)
    if prior_used is not None:
        meta["prior"] = prior_used       # with the calibration fitted on the training rows
    task = experiment.regression_task(model, config.model, point_weight_key=(
        "pw" if config.model == "xsec_prior" else None))
    lcfg = loop.LoopConfig.from_config(config.train, seed)
    res = loop.train(task, tr, va, lcfg, workdir, meta=meta, progress=progress, label=LABEL)
    summary = {"model": config.model, "split": config.data.split, "members": members,
               "v_encoding": config.xsec.v_encoding, "epochs_run": res.epochs_run,
               "train_seconds": round(res.seconds, 1),
               "best_val": {m.name: float(b) for m, b in zip(mols, res.best_val)},
               "n_train_points": {m.name: int(m.train.sum()) for m in mols},
               "seconds_total": round(time.perf_counter() - t0, 1)}
    meta["train_summary"] = summary
    workdir_lib.write_model_meta(workdir, meta)
    # Once training succeeded (experiment.run writes it too; evaluate_xsec needs it when
    # run_xsec is called directly).
    workdir_lib.write_config(workdir, config)
    return summary


def build_meta(config, mols, sp, sv, prov, n_v, n_j) -> dict:
    """model.json contents: everything XsecSurrogate needs, plus provenance."""
    held = lambda s: {k: [list(x) if isinstance(x, tuple) else x for x in v]   # noqa: E731
                      for k, v in s.held_out.items()}
    return {
        "package_version": opacity_jax.__version__,
        "model": config.model,
        "xsec": {"hidden": [int(h) for h in config.xsec.hidden],
                 "dropout": float(config.xsec.dropout), "v_encoding": config.xsec.v_encoding,
                 "kinetic_energy": bool(config.xsec.kinetic_energy),
                 "n_fourier": int(config.xsec.n_fourier),
                 "fourier_max": float(config.xsec.fourier_max),
                 "n_v": int(n_v), "n_j": int(n_j), "descriptors": list(xsec_models.DESCRIPTORS),
                 "members": int(config.xsec.get("ensemble", 1)),
                 "shift_head": bool(config.model == "xsec_prior"
                                    and config.prior.get("shift_head", False))},
        "target": {"definition": "log10(max(sigma, floor * m_vJ) / sigma_ref)",
                   "floor": float(config.data.floor)},
        "molecules": [m.name for m in mols],
        "per_molecule": {m.name: {
            "lam_max_nm": m.lam_max, "v_max": m.v_max, "e_min_hartree": m.e_min,
            "sigma_ref_cm2": m.sigma_ref, "wavelength_nm": m.lam.tolist(),
            "levels": {"v": m.v.tolist(), "J": m.J.tolist(), "energy_hartree": m.energy.tolist()}}
            for m in mols},
        "split": {"kind": sp.kind, "seed": int(config.seed),
                  "test_fraction": float(config.data.test_fraction),
                  "val_fraction": float(config.data.val_fraction), "held_out": held(sp),
                  "val_held_out": held(sv)},
        "table": prov,
        "prior": (json.loads(config.prior.to_json_best_effort())
                  if config.model == "xsec_prior" else None),
    }


def train(config, workdir, progress: bool = True) -> dict:
    """Family verb (`opacity_jax.experiments.registry`): `run_xsec`."""
    return run_xsec(config, workdir, progress)


def load(workdir) -> "XsecSurrogate":
    """Family verb: `XsecSurrogate.load(workdir)`."""
    return XsecSurrogate.load(workdir)


def evaluate(workdir, **options) -> dict:
    """Family verb: `evaluate_xsec(workdir, **options)`; writes <workdir>/eval/."""
    return evaluate_xsec(workdir, **options)


def report(m: dict) -> str:
    """Family verb: headline numbers of `evaluate`'s metrics (median relative error where sigma
    > threshold x its curve's max, MSLE, interpolation baseline, LTE averages)."""
    p = m["pooled"]
    lines = [f"{m['model']} (v encoding {m['v_encoding']}), split '{m['split']}': held-out "
             f"points with sigma > {m['threshold']:g} x curve max",
             f"{'molecule':9s} {'net median':>11s} {'net p90':>9s} {'MSLE':>9s} "
             f"{'interp med':>11s} {'train med':>10s}"]
    for name, r in list(m["per_molecule"].items()) + [("pooled", p)]:
        n, b, t = r["net"], r["baseline"], r["net_train"]
        if not n.get("n"):
            continue
        lines.append(f"{name:9s} {n['median_rel']:11.2%} {n['p90_rel']:9.2%} {n['msle']:9.4f} "
                     f"{b['median_rel']:11.2%} {t['median_rel']:10.2%}")
    lines.append("mean of per-molecule medians: net {:.2%}, interp {:.2%}".format(
        m["mean_of_molecule_medians"]["net"], m["mean_of_molecule_medians"]["baseline"]))
    for kind in ("net", "completed"):
        lines.append(f"LTE average from {kind:9s}: " + ", ".join(
            f"{t} {v:.2%}" for t, v in m["lte_summary"][kind].items())
            + " (median over molecules)")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ evaluation
def _load_config(workdir: Path) -> ConfigDict:
    return workdir_lib.read_config(workdir)


def interpolation_baseline(m: MoleculeData, kind: str) -> np.ndarray:
    """Training-free prediction of the test points from the known (non-test) points.

    'levels': log sigma linear in J at fixed v between the nearest known J below and above
    (the nearest one when only one side exists); 'v_levels': the same in v at fixed J;
    'wavelength_windows': log sigma linear in log lambda across each window. Levels with no
    known neighbour at all take the known level closest in energy.
    Returns (n_lev, n_lam) sigma [cm^2] (known points copied).
    """
    known = ~m.test
    logs = np.log(np.maximum(m.sigma, 1e-300))
    out = logs.copy()
    if kind == "wavelength_windows":
        ll = np.log(m.lam)
        for i in range(m.v.size):
            k = known[i]
            if k.any() and (~k).any():
                out[i, ~k] = np.interp(ll[~k], ll[k], logs[i, k])
        return np.exp(out)
    lev_known = known.all(axis=1)
    along, fixed = (m.J, m.v) if kind == "levels" else (m.v, m.J)
    for i in np.flatnonzero(~lev_known):
        cand = np.flatnonzero(lev_known & (fixed == fixed[i]))
        if cand.size == 0:
            cand = np.flatnonzero(lev_known)
            out[i] = logs[cand[np.argmin(np.abs(m.energy[cand] - m.energy[i]))]]
            continue
        lo = cand[along[cand] < along[i]]
        hi = cand[along[cand] > along[i]]
        if lo.size and hi.size:
            a = lo[np.argmax(along[lo])]
            b = hi[np.argmin(along[hi])]
            t = (along[i] - along[a]) / (along[b] - along[a])
            out[i] = (1 - t) * logs[a] + t * logs[b]
        else:
            c = lo if lo.size else hi
            out[i] = logs[c[np.argmin(np.abs(along[c] - along[i]))]]
    return np.exp(out)


def _err_summary(rel: np.ndarray, dlog: np.ndarray) -> dict:
    if rel.size == 0:
        return {"n": 0}
    return {"median_rel": float(np.median(rel)), "p90_rel": float(np.percentile(rel, 90)),
            "mean_rel": float(np.mean(rel)), "msle": float(np.mean(dlog ** 2)),
            "n": int(rel.size)}


def point_errors(pred, true, region):
    """(rel, dlog): |pred/true - 1| and ln(pred) - ln(true) at the points of `region`."""
    p, t = pred[region], true[region]
    return np.abs(p / t - 1.0), np.log(np.maximum(p, 1e-300)) - np.log(t)


def lte_errors(m: MoleculeData, pred: np.ndarray, temperatures_k, threshold: float,
               J_max: Optional[int] = None) -> dict:
    """Errors of the LTE-averaged cross-section built from predictions.

    Populations p_vJ(T) of molecular.lte_weights over the table's levels (renormalised).
    'net': sum p sigma_pred over all levels; 'completed': the true sigma where known, sigma_pred
    where held out. Errors |avg_pred / avg_true - 1| over wavelengths where avg_true > threshold
    x its maximum (for 'completed' only those wavelengths where some level is held out: with
    held-out wavelength windows the rest are exact copies of the table), median and max, per
    temperature [K].
    """
    jm = int(m.J.max()) if J_max is None else int(J_max)
    pos = {(int(a), int(b)): i for i, (a, b) in enumerate(zip(m.v, m.J))}
    out = {}
    completed = np.where(m.test, pred, m.sigma)
    for t in temperatures_k:
        levels, w = _mol.lte_weights(m.name, float(t), J_max=jm)
        idx, ww = [], []
        for lv, wi in zip(levels, w):
            i = pos.get((int(lv["v"]), int(lv["J"])))
            if i is not None:
                idx.append(i)
                ww.append(wi)
        idx, ww = np.asarray(idx), np.asarray(ww)
        true = _mol.lte_combine(ww, m.sigma[idx])
        region = true > threshold * true.max()
        filled = region & m.test.any(axis=0)
        rec = {"population_in_table": float(ww.sum())}
        for name, s, reg in (("net", pred, region), ("completed", completed, filled)):
            avg = _mol.lte_combine(ww, s[idx])
            rel = np.abs(avg[reg] / true[reg] - 1.0)
            rec[name] = ({"median_rel": float(np.median(rel)), "max_rel": float(np.max(rel))}
                         if rel.size else {"median_rel": 0.0, "max_rel": 0.0})
        out[f"{float(t):g}K"] = rec
    return out


def predict_grids(sur: XsecSurrogate, mols: Sequence[MoleculeData]) -> Dict[str, np.ndarray]:
    """Predicted sigma [cm^2] on every molecule's full (n_lev, n_lam) grid."""
    return {m.name: sur.cross_sections(m.name, m.v, m.J, m.lam) for m in mols}


def evaluate_xsec(workdir, make_figures: bool = True, progress: bool = False) -> dict:
    """Evaluate a trained workdir on its held-out rows (module docstring); writes
    `<workdir>/eval/metrics.json` (+ figures) and returns the metrics dict."""
    workdir = Path(workdir)
    cfg = _load_config(workdir)
    sur = XsecSurrogate.load(workdir)
    df, _ = load_table(cfg.data, progress)
    mols, sp, _ = prepare_data(df, cfg.data, int(cfg.seed))
    held = sur.meta["split"]["held_out"]
    for m in mols:
        got = [list(x) if isinstance(x, tuple) else x for x in sp.held_out[m.name]]
        if json.loads(json.dumps(got)) != held[m.name]:
            raise ValueError(f"{m.name}: the table's split differs from the one the model was "
                             f"trained on (was the table regenerated with other settings?)")
    thr = float(cfg.eval.threshold)
    temps = [float(t) for t in cfg.eval.temperatures_k]
    preds = predict_grids(sur, mols)
    res = {"model": sur.meta["model"], "split": sp.kind,
           "v_encoding": sur.meta["xsec"]["v_encoding"], "threshold": thr,
           "per_molecule": {}, "lte": {}}
    pooled = {"net": ([], []), "baseline": ([], []), "net_train": ([], [])}
    has_prior = bool(sur.meta.get("prior"))
    if has_prior:
        # The semiclassical prior alone (no training), on the same points.
        pooled["prior"] = ([], [])
        res["lte_prior"] = {}
    for m in mols:
        pred = preds[m.name]
        base = interpolation_baseline(m, sp.kind)
        region = m.sigma > thr * m.sigma.max(axis=1, keepdims=True)
        rec = {}
        arms = [("net", pred, m.test), ("baseline", base, m.test), ("net_train", pred, m.train)]
        if has_prior:
            prior = sur.prior(m.name, m.v, m.J, m.lam)[1]
            arms.append(("prior", prior, m.test))
            res["lte_prior"][m.name] = lte_errors(m, prior, temps, thr)
        for name, p, mask in arms:
            rel, dl = point_errors(p, m.sigma, region & mask)
            rec[name] = _err_summary(rel, dl)
            pooled[name][0].append(rel)
            pooled[name][1].append(dl)
        rec["n_test_levels_or_windows"] = len(sp.held_out[m.name])
        res["per_molecule"][m.name] = rec
        res["lte"][m.name] = lte_errors(m, pred, temps, thr)
    res["pooled"] = {k: _err_summary(np.concatenate(a), np.concatenate(b))
                     for k, (a, b) in pooled.items()}
    res["mean_of_molecule_medians"] = {
        k: float(np.mean([res["per_molecule"][m.name][k]["median_rel"] for m in mols
                          if res["per_molecule"][m.name][k]["n"]]))
        for k in pooled}
    res["lte_summary"] = {
        kind: {t: float(np.median([res["lte"][m.name][t][kind]["median_rel"] for m in mols]))
               for t in res["lte"][mols[0].name]} for kind in ("net", "completed")}
    if has_prior:
        res["lte_summary_prior"] = {
            kind: {t: float(np.median([res["lte_prior"][m.name][t][kind]["median_rel"]
                                       for m in mols]))
                   for t in res["lte_prior"][mols[0].name]} for kind in ("net", "completed")}
    res["train_summary"] = sur.meta.get("train_summary", {})
    if has_prior and sur.meta["prior"].get("calibration"):
        res["prior_calibration"] = sur.meta["prior"]["calibration"]
    res["table"] = sur.meta.get("table", {})
    out_dir = workdir_lib.eval_dir(workdir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if sur.members > 1:
        res["ensemble_calibration"] = ensemble_calibration(sur, mols, thr, out_dir,
                                                           make_figures)
    if make_figures:
        _figures(out_dir, mols, preds, sp.kind, temps, thr)
    workdir_lib.write_json(out_dir / "metrics.json", res)
    return res


def ensemble_calibration(sur: XsecSurrogate, mols: Sequence[MoleculeData], threshold: float,
                         out_dir: Path, make_figure: bool = True) -> dict:
    """Coverage of the ensemble spread of log10 sigma on the held-out points.

    Residual = member mean of log10 sigma - log10 sigma_true at points with sigma > threshold x
    its curve's max; sigma = member standard deviation [dex]. One scale on sigma is fitted on the
    validation points (disjoint from the test points) and judged on the test points.
    Returns {sigma_scale, coverage_raw, coverage_calibrated, n, n_val, intervals_conformal
    (coverage, median half-width [dex] and efficiency of the conformal 68 / 95 % intervals on
    the test points, `ensemble.interval_scores`)}; writes
    ensemble_reliability.png.
    """
    from opacity_jax.experiments import ensemble as ens
    parts = {"val": ([], []), "test": ([], [])}
    for m in mols:
        y, sd = sur.log_sigma_rel(m.name, m.v, m.J, m.lam, return_std=True)
        truth = np.log10(np.maximum(m.sigma, 1e-300) / m.sigma_ref)
        region = m.sigma > threshold * m.sigma.max(axis=1, keepdims=True)
        for part in parts:
            mask = region & getattr(m, part)
            parts[part][0].append((y - truth)[mask])
            parts[part][1].append(sd[mask])
    rv, sv = (np.concatenate(a) for a in parts["val"])
    rt, st = (np.concatenate(a) for a in parts["test"])
    scale = ens.fit_sigma_scale(rv, sv)
    model = ens.fit_sigma_model(rv, sv)
    conformal = ens.fit_conformal(rv, sv)
    out = dict(ens.calibration_summary(rt, st, scale, model=model, conformal=conformal),
               intervals_conformal=ens.interval_scores(rt, st, conformal),
               n_val=int(rv.size),
               members=sur.members, scale_fitted_on="validation points (disjoint from test)")
    if make_figure:
        ens.plot_reliability({"test (scaled)": ens.reliability_curve(rt, st * scale),
                              "test (scale + floor)": ens.reliability_curve(
                                  rt, np.sqrt((model[0] * st) ** 2 + model[1] ** 2)),
                              "test (raw)": ens.reliability_curve(rt, st)},
                             out_dir / "ensemble_reliability.png",
                             f"{sur.meta['model']} ensemble ({sur.members} members), log10 sigma")
    return out


def _pick_levels(m: MoleculeData, kind: str, k: int = 4) -> np.ndarray:
    """Up to k levels to plot: held-out ones spread over v (any level for window splits)."""
    cand = np.flatnonzero(m.test.any(axis=1))
    if cand.size == 0:
        cand = np.arange(m.v.size)
    cand = cand[np.argsort(m.v[cand] * 1000 + m.J[cand], kind="stable")]
    return cand[np.unique(np.linspace(0, cand.size - 1, min(k, cand.size)).round().astype(int))]


def _figures(out_dir: Path, mols, preds, kind: str, temps, thr):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    k = 4
    fig, axes = plt.subplots(len(mols), k, figsize=(3.2 * k, 2.3 * len(mols)), squeeze=False)
    for r, m in enumerate(mols):
        lev = _pick_levels(m, kind, k)
        for c in range(k):
            ax = axes[r, c]
            if c >= lev.size:
                ax.axis("off")
                continue
            i = lev[c]
            ax.semilogy(m.lam, m.sigma[i], "k-", lw=1.2, label="true")
            ax.semilogy(m.lam, preds[m.name][i], "r--", lw=1.0, label="net")
            t = m.test[i]
            if t.any() and not t.all():
                ax.semilogy(m.lam[t], m.sigma[i, t], "o", ms=2, color="tab:blue",
                            label="held out")
            ax.set_title(f"{m.name} v={m.v[i]} J={m.J[i]}" + (" (held out)" if t.all() else ""),
                         fontsize=8)
            ax.tick_params(labelsize=7)
            if r == len(mols) - 1:
                ax.set_xlabel("wavelength [nm]", fontsize=8)
            if c == 0:
                ax.set_ylabel("sigma [cm^2]", fontsize=8)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"true vs predicted sigma(lambda) per (v, J), split '{kind}'", fontsize=10)
    fig.tight_layout()
    fig.savefig(out_dir / "xsec_true_vs_pred.png", dpi=100)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(mols), figsize=(2.8 * len(mols), 2.8), squeeze=False)
    t = temps[len(temps) // 2] if temps else 5000.0
    for c, m in enumerate(mols):
        levels, w = _mol.lte_weights(m.name, t, J_max=int(m.J.max()))
        pos = {(int(a), int(b)): i for i, (a, b) in enumerate(zip(m.v, m.J))}
        pairs = [(pos[(int(lv["v"]), int(lv["J"]))], wi) for lv, wi in zip(levels, w)
                 if (int(lv["v"]), int(lv["J"])) in pos]
        idx = np.array([p[0] for p in pairs])
        ww = np.array([p[1] for p in pairs])
        ax = axes[0, c]
        ax.semilogy(m.lam, _mol.lte_combine(ww, m.sigma[idx]), "k-", label="true")
        ax.semilogy(m.lam, _mol.lte_combine(ww, preds[m.name][idx]), "r--", label="net")
        ax.set_title(f"{m.name} LTE {t:g} K", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "lte_true_vs_pred.png", dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------------------- report
def report_arms(base_config, pinn_config, splits: Sequence[str] = SPLITS,
                onehot_on_v: bool = True, prior_configs: Sequence = ()):
    """(name, config) of every run of the report.

    Both nets on every split; on 'v_levels' with xsec.v_encoding = 'continuous' (a held-out v
    has untrained one-hot weights), plus the published one-hot net there when onehot_on_v.
    prior_configs: residual nets on the physics prior (configs/xsec_prior.py) run on every
    split too; one with perturbed curves is named '<split>__xsec_prior_perturbed__...'.
    """
    arms = []
    for split in splits:
        for cfg in (base_config, pinn_config, *prior_configs):
            c = copy.deepcopy(cfg)
            with c.unlocked():
                c.data.split = split
                if split == "v_levels":
                    c.xsec.v_encoding = "continuous"
            tag = c.model
            if c.model == "xsec_prior" and (float(c.prior.upper_shift_ev) != 0.0
                                            or float(c.prior.dipole_scale) != 1.0):
                tag += "_perturbed"
            if c.model == "xsec_prior" and bool(c.prior.get("calibrate", False)):
                tag += "_calibrated"
            arms.append((f"{split}__{tag}__{c.xsec.v_encoding}", c))
        if split == "v_levels" and onehot_on_v:
            c = copy.deepcopy(base_config)
            with c.unlocked():
                c.data.split = split
                c.xsec.v_encoding = "onehot"
            arms.append((f"{split}__{c.model}__onehot", c))
    return arms


def run_report(root, base_config, pinn_config, splits: Sequence[str] = SPLITS,
               onehot_on_v: bool = True, progress: bool = True,
               overrides: Optional[dict] = None, runs_root=None,
               prior_configs: Sequence = ()) -> dict:
    """Train + evaluate every arm (report_arms), write report.json / report.md under `root`.

    base_config / pinn_config: configs/xsec.py and configs/xsec_pinn.py configs (same preset).
    Each arm trains in `runs_root/<arm>` (default `root/<arm>`; checkpoints are large, so keep
    them out of version control) and its figures are copied to `root/figures/`. Finished arms
    (eval/metrics.json present) are reused; delete an arm's directory to redo it.
    overrides: {dotted.key: value} applied to every config (e.g. {'train.max_seconds': 60}).
    prior_configs: configs/xsec_prior.py configs added as arms (report_arms).
    """
    import shutil
    # Before any folder or the (minutes-long) table generation.
    bad = [s for s in splits if s not in SPLITS]
    if bad or not splits:
        raise ValueError(f"splits: unknown {bad or 'none given'}; allowed: {', '.join(SPLITS)}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    runs_root = Path(runs_root) if runs_root is not None else root
    (root / "figures").mkdir(exist_ok=True)
    base, pinn = copy.deepcopy(base_config), copy.deepcopy(pinn_config)
    priors = [copy.deepcopy(c) for c in prior_configs]
    for c in (base, pinn, *priors):
        with c.unlocked():
            for key, val in (overrides or {}).items():
                sec = c
                parts = key.split(".")
                for p in parts[:-1]:
                    sec = sec[p]
                sec[parts[-1]] = val
    results = {}
    for name, cfg in report_arms(base, pinn, splits, onehot_on_v, priors):
        wd = runs_root / name
        mfile = workdir_lib.eval_dir(wd) / "metrics.json"
        if not mfile.exists():
            print(f"[xsec report] training {name}", flush=True)
            experiment.run(cfg, wd, progress=progress)
            evaluate_xsec(wd, make_figures=True)
        results[name] = json.loads(mfile.read_text())
        for fig in sorted(workdir_lib.eval_dir(wd).glob("*.png")):
            shutil.copyfile(fig, root / "figures" / f"{name}__{fig.name}")
    out = {"preset": base.preset, "arms": results,
           "table": next(iter(results.values()))["table"] if results else {}}
    workdir_lib.write_json(root / "report.json", out)
    (root / "report.md").write_text(report_markdown(out))
    return out


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f} %"


def report_markdown(rep: dict) -> str:
    """Markdown summary of run_report's dict."""
    tab = rep.get("table", {})
    lines = [f"# Cross-section nets: evaluation report (preset '{rep['preset']}')", "",
             f"Table: {', '.join(tab.get('molecules', []))}; J_max = {tab.get('J_max')}, "
             f"{tab.get('n_wavelengths')} wavelengths per molecule, {tab.get('n_rows')} rows; "
             f"generated in {tab.get('generation_seconds')} s (wall clock, "
             f"`generate_xsec_table`, at first use; cached after).", "",
             "Errors on held-out rows at points with sigma > 1e-3 of the max of its own (v, J) "
             "curve: median |sigma_pred / sigma_true - 1| pooled over all molecules' points and "
             "the mean of the seven per-molecule medians; MSLE = mean (ln sigma_pred - "
             "ln sigma_true)^2 there; 'interp' = the training-free interpolation baseline on "
             "the same points; 'train' = the net on its own training points. LTE: median over "
             "molecules of the median relative error of the LTE average at each T, built from "
             "the net alone (all levels predicted). 'prior' = the semiclassical prior alone "
             "(physics/reflection.py, no training) on the same points, for the residual-net "
             "arms.", "",
             "| split | net | v encoding | median (pooled) | mean of mol. medians | p90 | MSLE "
             "| interp median | prior median | train median | LTE " +
             " | LTE ".join(next(iter(rep["arms"].values()))["lte_summary"]["net"].keys()) +
             " | epochs | train s |",
             "|---" * (11 + len(next(iter(rep["arms"].values()))["lte_summary"]["net"])) + "|"]
    for name, r in rep["arms"].items():
        p = r["pooled"]
        lte = " | ".join(_pct(v) for v in r["lte_summary"]["net"].values())
        ts = r.get("train_summary", {})
        label = r["model"] + (" (perturbed prior)" if "_perturbed_" in name else "") + (
            " (calibrated)" if "_calibrated__" in name else "")
        lines.append(
            f"| {r['split']} | {label} | {r['v_encoding']} | {_pct(p['net']['median_rel'])}"
            f" | {_pct(r['mean_of_molecule_medians']['net'])} | {_pct(p['net']['p90_rel'])} | "
            f"{p['net']['msle']:.4g} | {_pct(p['baseline']['median_rel'])} | "
            f"{_pct(p['prior']['median_rel']) if 'prior' in p else '-'} | "
            f"{_pct(p['net_train']['median_rel'])} | {lte} | {ts.get('epochs_run', '-')} | "
            f"{ts.get('train_seconds', '-')} |")
    lines += ["", "## Per molecule (median relative error, held-out points; net / interp, and "
              "net / interp / prior for the residual-net arms)", ""]
    mols = list(next(iter(rep["arms"].values()))["per_molecule"].keys())
    lines.append("| arm | " + " | ".join(mols) + " |")
    lines.append("|---" * (len(mols) + 1) + "|")
    for name, r in rep["arms"].items():
        cells = []
        for m in mols:
            pm = r["per_molecule"][m]
            cells.append(f"{_pct(pm['net'].get('median_rel'))} / "
                         f"{_pct(pm['baseline'].get('median_rel'))}"
                         + (f" / {_pct(pm['prior'].get('median_rel'))}" if "prior" in pm else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "## LTE average from the completed table (true where known, net where held "
              "out): median over molecules of the median relative error", ""]
    for name, r in rep["arms"].items():
        lines.append(f"* {name}: " + ", ".join(f"{t}: {_pct(v)}" for t, v in
                                               r["lte_summary"]["completed"].items())
                     + ("; prior alone: " + ", ".join(
                         f"{t}: {_pct(v)}" for t, v in
                         r["lte_summary_prior"]["completed"].items())
                        if "lte_summary_prior" in r else ""))
    return "\n".join(lines) + "\n"
