"""Completion of a user's per-level cross-section tables: missing (v, J) levels and wavelength gaps.

Input: a folder of per-level tables in the format of `data.xsec_io` (one (molecule, v, J) per
file; `bin/complete_xsec --input=DIR`). What is missing:

* a bound level of the molecule with no file, or whose file has sigma = nan on every row
  ('levels' geometry, or 'v_levels' where every level of that v is missing);
* rows with sigma = nan, or wavelengths of the shared grid absent from one file
  ('wavelength_windows' geometry).

The levels to fill are the molecule's bound levels (`physics.molecular.bound_levels`) inside the
table's own ranges: J from the smallest to the largest J of its files, v from the smallest to the
largest v of its files (no extrapolation: its error is never measured). Bound levels exist only
where the potential curves do, so the molecule must be one of the package's ions
(`physics.molecular.MOLECULE_NAMES`); a table of any other molecule is refused, naming the file.

Estimators (`ESTIMATORS`): 'interpolation' (log sigma linear in J at fixed v and wavelength, or
in v at fixed J, or in log lambda across a gap; the training-free baseline of
`experiments.xsec`), 'prior' (the reflection-principle prior of `physics.reflection`, its
curves calibrated on the known rows: one upper-curve shift and one global scale, as
`experiments.xsec.attach_prior`) and 'net' (the residual net on that prior,
`models.xsec.XsecPrior`, trained through the one training loop on the known rows).

Choice, per molecule and geometry: known rows of the same geometry as the holes are held out
first ('probe' rows: whole known levels, whole known v, or windows of the gaps' median width,
either shared by all levels like the user's gaps or one per level); the prior is calibrated and
the net trained without them (and without a further validation set of whole levels used only
for early stopping); every estimator predicts them, and the one with the lowest median
|sigma_pred / sigma_true - 1| over the probe points above `threshold` x their curve's maximum
fills that geometry's holes. Ties go to the simpler estimator (interpolation, prior, net), so the
net fills only where it wins on held-out rows. The fill uses exactly the calibration and the net
that were scored (no refit on the probe rows), so the score is that of the numbers written;
interpolation, which has nothing to fit, fills from every known row.

Uncertainty: |log10(sigma_pred / sigma_true)| of the chosen estimator on its probe points, per
bin of depth (sigma_pred over its completed curve's maximum: > 1e-1, 1e-2 - 1e-1, < 1e-2; a bin
with < MIN_BIN points uses the pooled points), 68 % and 95 % quantiles [dex]; a filled row gets
those of its bin (known rows 0). The coverage reported is cross-fitted: the probe units (levels,
v or windows) are split in two halves, quantiles fitted on one half are judged on the other,
and both ways are pooled.

Outputs (`write_outputs`): `<output>/table/` one file per level in the input format (known rows
copied bit for bit; a known level keeps its file name and E_vJ, a filled level is
`<ion>_v<v>_J<J>.txt` with the package's E_vJ),
`<output>/uncertainty.csv` (every row: molecule, v, J, wavelength_nm, sigma_cm2, status known /
filled, geometry, estimator, unc68_dex, unc95_dex), `<output>/report.json` (levels, scores per
estimator, choice, quantiles, coverage, calibration, training) and the net's workdir
`<output>/net/` (servable by `serve.xsec.XsecSurrogate`).
"""

from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from opacity_jax.data import xsec_generator as xg
from opacity_jax.data.xsec_io import XsecTable, read_xsec_table, write_xsec_table
from opacity_jax.errors import DataFormatError
from opacity_jax.experiments import xsec as xsec_exp
from opacity_jax.physics import molecular as _mol
from opacity_jax.serve.surrogate import member_major
from opacity_jax.serve.xsec import LABEL, XsecSurrogate
from opacity_jax.train import experiment, loop
from opacity_jax.train import workdir as workdir_lib

ESTIMATORS = ("interpolation", "prior", "net")
GEOMETRIES = ("levels", "v_levels", "wavelength_windows")
DEPTH_EDGES = (1e-1, 1e-2)     # depth bins of the uncertainty (sigma / its curve's max)
MIN_BIN = 20                   # probe points below which a depth bin uses the pooled points
TRUTH_FLOOR = 1e-6             # probe points below this x their curve's max are not used
_MOL_KEY = re.compile(r"^\s*#.*\b(molecule|mol|species)\b", re.IGNORECASE)
_V_KEY = re.compile(r"^\s*#.*\b(v|vib|vibrational)\s*[:=]", re.IGNORECASE)


def say(msg: str, verbose: bool = True) -> None:
    """One progress line on stdout, flushed."""
    if verbose:
        print(f"[complete_xsec] {msg}", flush=True)


# ------------------------------------------------------------------------------------ input
@dataclasses.dataclass
class UserMolecule:
    """One molecule's user table on its (level x wavelength) grid.

    Attributes:
      name; v, J (n_lev,) int64 and energy (n_lev,) [hartree] of the levels to fill and the known
      ones (the package's bound levels inside the table's ranges, sorted by J then v);
      lam (n_lam,) [nm] the union of the files' wavelengths; sigma (n_lev, n_lam) [cm^2], NaN
      where missing; files (n_lev,) the input file of each level or None; file_energy (n_lev,)
      E_vJ [hartree] of the file's header or None (written back as given; the nets use the
      package's `energy`); geometry (n_lev, n_lam) str: '' where known, else the GEOMETRIES
      entry of the hole.
    """

    name: str
    v: np.ndarray
    J: np.ndarray
    energy: np.ndarray
    lam: np.ndarray
    sigma: np.ndarray
    files: list
    file_energy: list
    geometry: np.ndarray

    @property
    def known(self) -> np.ndarray:
        return np.isfinite(self.sigma)


def _line_of(path, pattern) -> Optional[int]:
    try:
        for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line):
                return i
    except (OSError, UnicodeDecodeError):
        pass
    return None


def read_tables(input_dir, pattern: str = "*.txt,*.csv,*.dat") -> List[XsecTable]:
    """Every per-level table in folder `input_dir` whose name matches one of the comma-separated
    glob patterns, read with sigma = nan allowed (xsec_io.read_xsec_table).

    Raises: FileNotFoundError (no folder), ValueError (no matching file), DataFormatError (a
    bad file: file, line, field).
    """
    root = Path(input_dir)
    if not root.exists():
        raise FileNotFoundError(f"--input {root}: no such folder")
    if not root.is_dir():
        raise ValueError(f"--input {root}: not a folder (give the folder of per-level tables)")
    pats = [p.strip() for p in str(pattern).split(",") if p.strip()]
    paths = sorted({p for pat in pats for p in root.glob(pat) if p.is_file()
                    and not p.name.startswith(".")})
    if not paths:
        raise ValueError(f"--input {root}: no file matches {pats} (one per-level table per file, "
                         f"format of opacity_jax/data/xsec_io.py)")
    return [read_xsec_table(p, allow_missing=True) for p in paths]


def _canonical(t: XsecTable) -> str:
    try:
        return _mol.get_molecule(t.molecule).name
    except ValueError:
        raise DataFormatError(
            f"molecule {t.molecule!r} is not one of the package's ions "
            f"({', '.join(_mol.MOLECULE_NAMES)}): its missing (v, J) levels and the physics prior "
            f"need its bound levels, which come from its potential curves, and those are known "
            f"only for the package's ions (curves supplied by the user are not read yet)",
            path=t.source, line=_line_of(t.source, _MOL_KEY), field="molecule") from None


def _cluster(values: np.ndarray, rtol: float = 1e-9) -> np.ndarray:
    """Sorted unique values, merging those within rtol (unit conversions round differently)."""
    s = np.sort(values)
    keep = np.concatenate([[True], np.diff(s) > rtol * s[1:]])
    return s[keep]


def assemble(tables: Sequence[XsecTable]) -> Dict[str, UserMolecule]:
    """Group the tables by molecule onto dense grids, with the levels to fill (module docstring).

    Raises DataFormatError naming the file: unknown molecule, a (v, J) twice, a (v, J) that is
    not a bound level, files that do not share one wavelength grid.
    """
    groups: Dict[str, list] = {}
    for t in tables:
        groups.setdefault(_canonical(t), []).append(t)
    out = {}
    for name, ts in groups.items():
        mol = _mol.get_molecule(name)
        seen = {}
        for t in ts:
            key = (t.v, t.J)
            if key in seen:
                raise DataFormatError(f"{name} (v, J) = {key} also in {seen[key]}", path=t.source,
                                      line=_line_of(t.source, _V_KEY), field="v")
            seen[key] = t.source
        J_lo, J_hi = min(t.J for t in ts), max(t.J for t in ts)
        v_lo, v_hi = min(t.v for t in ts), max(t.v for t in ts)
        levels = _mol.bound_levels(mol, J_hi)
        bound = {(int(a), int(b)): float(e) for a, b, e in
                 zip(levels["v"], levels["J"], levels["energy_hartree"])}
        for t in ts:
            if (t.v, t.J) not in bound:
                nv = sum(1 for k in bound if k[1] == t.J)
                raise DataFormatError(
                    f"(v, J) = ({t.v}, {t.J}) is not a bound level of {name} "
                    + (f"(J = {t.J} has v = 0..{nv - 1})" if nv else
                       f"(J = {t.J} does not exist: nuclear-spin weight 0)"),
                    path=t.source, line=_line_of(t.source, _V_KEY), field="v")
        sel = (levels["J"] >= J_lo) & (levels["v"] >= v_lo) & (levels["v"] <= v_hi)
        levels = levels[sel]
        lam = _cluster(np.concatenate([t.wavelength_nm for t in ts]))
        n_max = max(t.wavelength_nm.size for t in ts)
        if lam.size > 1.5 * n_max:
            ref = max(ts, key=lambda t: t.wavelength_nm.size).wavelength_nm
            worst = max(ts, key=lambda t: int(np.sum(np.min(np.abs(
                t.wavelength_nm[:, None] / ref[None, :] - 1.0), axis=1) > 1e-9)))
            raise DataFormatError(
                f"the {len(ts)} {name} files do not share one wavelength grid: together they "
                f"hold {lam.size} distinct wavelengths, the longest file {n_max} (a missing row "
                f"is a wavelength of the shared grid with sigma = nan, or absent)",
                path=worst.source, field="wavelength")
        sigma = np.full((len(levels), lam.size), np.nan)
        files = [None] * len(levels)
        file_energy = [None] * len(levels)
        index = {(int(a), int(b)): i for i, (a, b) in enumerate(zip(levels["v"], levels["J"]))}
        for t in ts:
            i = index[(t.v, t.J)]
            k = np.clip(np.searchsorted(lam, t.wavelength_nm * (1 - 1e-9)), 0, lam.size - 1)
            sigma[i, k] = t.sigma_cm2
            files[i] = t.source
            file_energy[i] = t.energy_hartree
        known = np.isfinite(sigma)
        if not known.any():
            raise DataFormatError(f"every {name} row has sigma = nan: nothing to learn from",
                                  path=ts[0].source, field="sigma")
        geometry = np.full(sigma.shape, "", dtype=object)
        lev_missing = ~known.any(axis=1)
        for i in np.flatnonzero(lev_missing):
            same_v = levels["v"] == levels["v"][i]
            geometry[i] = "v_levels" if lev_missing[same_v].all() else "levels"
        part = ~lev_missing[:, None] & ~known
        geometry[part] = "wavelength_windows"
        out[name] = UserMolecule(name=name, v=levels["v"].astype(np.int64),
                                 J=levels["J"].astype(np.int64),
                                 energy=levels["energy_hartree"].astype(np.float64), lam=lam,
                                 sigma=sigma, files=files, file_energy=file_energy,
                                 geometry=geometry)
    return out


# -------------------------------------------------------------------------- interpolation
def interpolate(logs: np.ndarray, known: np.ndarray, target: np.ndarray, v, J, energy,
                lam, kind: str) -> np.ndarray:
    """Training-free log sigma at the `target` points from the `known` ones.

    Args:
      logs: (n_lev, n_lam) log sigma (anything where not known); known, target (n_lev, n_lam)
        bool; v, J, energy (n_lev,); lam (n_lam,) [nm]; kind: a GEOMETRIES entry.
    'levels' ('v_levels'): per wavelength, linear in J at fixed v (in v at fixed J) between the
    nearest known levels below and above, the nearest one where only one side exists, the known
    level closest in energy where none shares v (J); 'wavelength_windows': linear in log lambda
    along the level (constant beyond its known ends).
    Returns (n_lev, n_lam) log sigma: target points filled, NaN elsewhere.
    """
    out = np.full(logs.shape, np.nan)
    if kind == "wavelength_windows":
        ll = np.log(lam)
        for i in np.flatnonzero(target.any(axis=1)):
            k = known[i]
            if k.sum() >= 1:
                out[i, target[i]] = np.interp(ll[target[i]], ll[k], logs[i, k])
        return out
    along, fixed = (J, v) if kind == "levels" else (v, J)
    for i in np.flatnonzero(target.any(axis=1)):
        for k in np.flatnonzero(target[i]):
            col = known[:, k]
            cand = np.flatnonzero(col & (fixed == fixed[i]))
            if cand.size == 0:
                cand = np.flatnonzero(col)
                if cand.size:
                    out[i, k] = logs[cand[np.argmin(np.abs(energy[cand] - energy[i]))], k]
                continue
            lo, hi = cand[along[cand] < along[i]], cand[along[cand] > along[i]]
            if lo.size and hi.size:
                a, b = lo[np.argmax(along[lo])], hi[np.argmin(along[hi])]
                t = (along[i] - along[a]) / (along[b] - along[a])
                out[i, k] = (1 - t) * logs[a, k] + t * logs[b, k]
            else:
                c = lo if lo.size else hi
                out[i, k] = logs[c[np.argmin(np.abs(along[c] - along[i]))], k]
    return out


# ------------------------------------------------------------------------------ probe rows
def _runs(mask_row: np.ndarray) -> List[np.ndarray]:
    idx = np.flatnonzero(mask_row)
    if idx.size == 0:
        return []
    return np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)


def draw_probe(m: UserMolecule, fraction: float, rng) -> Dict[str, List[np.ndarray]]:
    """Held-out known rows of each geometry present among m's holes.

    Returns {geometry: [unit masks (n_lev, n_lam) bool]}, one mask per held-out unit (a level,
    a v, or a window); empty for a geometry where no unit can be drawn.
    """
    known = m.known
    full = known.all(axis=1)
    have = known.any(axis=1)
    n_lev, n_lam = known.shape
    present = set(m.geometry[m.geometry != ""].tolist())
    out: Dict[str, List[np.ndarray]] = {}
    taken = np.zeros(n_lev, bool)
    if "v_levels" in present:
        # Inner v (never the lowest or highest v present) with >= 2 present levels, none
        # already held out; all its present levels are held out together, so it becomes a v
        # without any known row, like the holes. Most complete v first.
        vs = np.unique(m.v[have])
        inner = [v for v in vs[1:-1]
                 if np.sum(have[m.v == v]) >= 2 and not taken[m.v == v].any()]
        n = min(len(inner), max(2, int(round(fraction * np.unique(m.v).size))))
        score = {v: np.mean(have[m.v == v]) + 1e-3 * rng.random() for v in inner}
        units = []
        for v in sorted(inner, key=lambda x: -score[x])[:n]:
            u = np.zeros_like(known)
            u[m.v == v] = known[m.v == v]
            taken |= m.v == v
            units.append(u)
        out["v_levels"] = units
    if "levels" in present:
        # Whole present levels (their known rows) whose v keeps another present level (else
        # the probe would be a v hole).
        cand = [i for i in np.flatnonzero(have) if np.sum(have & (m.v == m.v[i])) >= 2]
        n = min(len(cand), max(2, int(round(fraction * have.sum()))))
        units = []
        for i in rng.permutation(cand):
            if len(units) >= n:
                break
            if np.sum(have & ~taken & (m.v == m.v[i])) >= 2:
                taken[i] = True
                u = np.zeros_like(known)
                u[i] = known[i]
                units.append(u)
        out["levels"] = units
    if "wavelength_windows" in present:
        gaps = m.geometry == "wavelength_windows"
        widths = [r.size for i in range(n_lev) for r in _runs(gaps[i])]
        w = int(np.median(widths))
        cols = gaps.any(axis=0)
        partial = gaps.any(axis=1)
        shared = bool(np.all(gaps[partial] == cols)) and partial.sum() >= 0.5 * (
            known.any(axis=1).sum())
        free = ~np.convolve(cols, np.ones(3), mode="same").astype(bool)
        free[0] = free[-1] = False
        starts = [s for s in range(1, n_lam - w) if free[s:s + w].all()]
        units = []
        if shared:
            # Windows held out across every level, as the user's gaps are.
            used = np.zeros(n_lam, bool)
            for s in rng.permutation(starts):
                if len(units) >= 2:
                    break
                if used[max(s - 1, 0):s + w + 1].any():
                    continue
                used[s:s + w] = True
                u = np.zeros_like(known)
                u[:, s:s + w] = known[:, s:s + w] & ~taken[:, None] & known.any(axis=1)[:, None]
                if u.any():
                    units.append(u)
        else:
            cand = np.flatnonzero(full & ~taken)
            n = min(cand.size, max(3, int(round(2 * fraction * cand.size))))
            for i in rng.permutation(cand)[:n]:
                if not starts:
                    break
                s = int(rng.choice(starts))
                u = np.zeros_like(known)
                u[i, s:s + w] = True
                units.append(u)
        out["wavelength_windows"] = units
    return out


# ------------------------------------------------------------------------------ estimators
def _molecule_data(m: UserMolecule, train: np.ndarray, val: np.ndarray) -> xsec_exp.MoleculeData:
    """experiments.xsec.MoleculeData of m with these training / validation points (the rest
    test); sigma 0 where missing (never read there)."""
    sig = np.where(m.known, m.sigma, 0.0)
    test = ~train & ~val
    known = np.where(test, -np.inf, sig)
    cmax = known.max(axis=1)
    sref = float(sig[train].max())
    if not sref > 0:
        raise ValueError(f"{m.name}: every known training sigma is 0")
    cmax = np.where(np.isfinite(cmax) & (cmax > 0), cmax, sref)
    return xsec_exp.MoleculeData(
        name=m.name, v=m.v, J=m.J, energy=m.energy, lam=m.lam, sigma=sig, train=train,
        val=val, test=test, lam_max=float(m.lam.max()), v_max=max(int(m.v.max()), 1),
        e_min=float(m.energy.min()), sigma_ref=sref, curve_max=cmax)


def _val_levels(m: UserMolecule, avail: np.ndarray, fraction: float, rng) -> np.ndarray:
    """(n_lev, n_lam) early-stopping points: whole available levels (fraction of them, >= 1)."""
    cand = np.flatnonzero(avail.all(axis=1) & avail.any(axis=1))
    if cand.size < 2:
        cand = np.flatnonzero(avail.any(axis=1))
    n = min(max(1, int(round(fraction * cand.size))), max(cand.size - 1, 0))
    val = np.zeros_like(avail)
    val[rng.permutation(cand)[:n]] = True
    return val & avail


def train_net(config, mols: Sequence[xsec_exp.MoleculeData], prior_used: dict, workdir: Path,
              progress: bool) -> tuple:
    """Residual net on the (already attached) priors of `mols`, trained on their train points
    with early stopping on their val points, through the one loop; model.json and the
    checkpoint are written to `workdir`; prior_used: attach_prior's return value (stored in
    model.json, so the workdir serves the same calibrated prior).
    Returns (XsecSurrogate, summary dict)."""
    n_v, n_j = xsec_exp.one_hot_sizes(mols)
    model = xsec_exp.model_from_config(config, n_v, n_j)
    floor = float(config.data.floor)
    tr = xsec_exp.pack(mols, "train", floor, bool(config.data.balance))
    va = xsec_exp.pack(mols, "val", floor)
    held = {m.name: [] for m in mols}
    split = xg.XsecSplit(kind="completion", train=np.zeros(0, bool), test=np.zeros(0, bool),
                         held_out=held)
    meta = xsec_exp.build_meta(config, mols, split, split, {"source": "user tables"}, n_v, n_j)
    meta["prior"] = prior_used
    task = experiment.regression_task(model, config.model, point_weight_key="pw")
    lcfg = loop.LoopConfig.from_config(config.train, int(config.seed))
    res = loop.train(task, tr, va, lcfg, workdir, meta=meta, progress=progress, label=LABEL)
    meta["train_summary"] = {"epochs_run": res.epochs_run, "train_seconds": round(res.seconds, 1),
                             "best_val": {m.name: float(b) for m, b in zip(mols, res.best_val)},
                             "n_train_points": {m.name: int(m.train.sum()) for m in mols}}
    workdir_lib.write_model_meta(workdir, meta)
    workdir_lib.write_config(workdir, config)
    return XsecSurrogate(meta, member_major(res.params, len(mols), 1)), meta["train_summary"]


def _median_rel(pred, true, region) -> dict:
    if not region.any():
        return {"n": 0}
    rel, _ = xsec_exp.point_errors(pred, true, region)
    return {"median_rel": float(np.median(rel)), "p90_rel": float(np.percentile(rel, 90)),
            "n": int(rel.size)}


def _depth(pred_sigma: np.ndarray, sigma_known: np.ndarray, known: np.ndarray) -> np.ndarray:
    """sigma / max of its completed curve (known values where known, predictions elsewhere)."""
    comp = np.where(known, sigma_known, pred_sigma)
    return pred_sigma / np.maximum(comp.max(axis=1, keepdims=True), 1e-300)


def _bin_of(depth: np.ndarray) -> np.ndarray:
    return np.digitize(-np.log10(np.maximum(depth, 1e-300)),
                       [-np.log10(e) for e in DEPTH_EDGES])


def fit_quantiles(absdex: np.ndarray, bins: np.ndarray) -> dict:
    """{'pooled': (q68, q95), bin: (q68, q95)} [dex] of |log10 residual| per depth bin (bins
    0 = deepest-lobe > 1e-1, 1, 2 = < 1e-2; a bin with < MIN_BIN points gets the pooled ones)."""
    pooled = (float(np.quantile(absdex, 0.68)), float(np.quantile(absdex, 0.95)))
    out = {"pooled": pooled}
    for b in range(len(DEPTH_EDGES) + 1):
        a = absdex[bins == b]
        out[b] = (float(np.quantile(a, 0.68)), float(np.quantile(a, 0.95))) \
            if a.size >= MIN_BIN else pooled
    return out


def _apply_quantiles(q: dict, bins: np.ndarray) -> np.ndarray:
    """(n, 2) [dex] half-widths of the 68 / 95 % intervals of points in `bins`."""
    return np.array([q[int(b)] for b in bins]).reshape(-1, 2)


def complete(mols: Dict[str, UserMolecule], config, workdir: Path, progress: bool = False,
             verbose: bool = True) -> tuple:
    """Choose an estimator per molecule and geometry on probe rows and fill the holes.

    Args:
      mols: assemble()'s output. config: configs/complete_xsec.py. workdir: folder of the net.
    Returns:
      (filled {name: (n_lev, n_lam) sigma [cm^2]}, uncertainty {name: (n_lev, n_lam, 2) [dex]
      68 / 95 %}, estimator {name: (n_lev, n_lam) str}, report dict).
    """
    t0 = time.perf_counter()
    cc = config.completion
    rng = np.random.default_rng(int(config.seed))
    thr = float(cc.threshold)
    estimators = [e.strip() for e in str(cc.estimators).split(",") if e.strip()]
    floor = float(config.data.floor)
    probes, datas = {}, []
    for name, m in mols.items():
        probes[name] = draw_probe(m, float(cc.probe_fraction), rng)
        probe_all = np.zeros_like(m.known)
        for units in probes[name].values():
            for u in units:
                probe_all |= u
        avail = m.known & ~probe_all
        val = _val_levels(m, avail, float(cc.val_fraction), rng) \
            if "net" in estimators else np.zeros_like(avail)
        datas.append(_molecule_data(m, avail & ~val, val))
        say(f"{name}: {int(m.known.any(axis=1).sum())} known levels, "
            f"{int((~m.known.any(axis=1)).sum())} missing levels, "
            f"{int((~m.known).sum())} missing of {m.known.size} rows; held out to choose: "
            + ", ".join(f"{g} {len(u)} unit(s) ({int(sum(x.sum() for x in u))} rows)"
                        for g, u in probes[name].items()), verbose)
    preds: Dict[str, Dict[str, np.ndarray]] = {name: {} for name in mols}
    report = {"molecules": {}, "estimators": estimators, "threshold": thr}
    if "prior" in estimators or "net" in estimators:
        say("prior: reflection principle on the package's curves, calibrated on the known rows "
            "(minutes for the heavy ions; cached)", verbose)
        used = xsec_exp.attach_prior(datas, config.prior, floor)
        report["prior"] = used
        for d in datas:
            preds[d.name]["prior"] = d.sigma_prior
    summary = None
    if "net" in estimators:
        say(f"net: residual net on the prior, <= {config.train.max_seconds:g} s of training",
            verbose)
        sur, summary = train_net(config, datas, report["prior"], Path(workdir), progress)
        report["net_training"] = summary
        for d in datas:
            preds[d.name]["net"] = sur.cross_sections(d.name, d.v, d.J, d.lam)
    filled, unc, which = {}, {}, {}
    for d in datas:
        m = mols[d.name]
        logs = np.log(np.maximum(np.where(m.known, m.sigma, 1.0), 1e-300))
        avail = d.train | d.val
        rec = {"n_levels": int(m.v.size), "n_known_levels": int(m.known.any(axis=1).sum()),
               "wavelengths": int(m.lam.size), "geometries": {}}
        out = np.where(m.known, m.sigma, np.nan)
        u_out = np.zeros(m.sigma.shape + (2,))
        w_out = np.full(m.sigma.shape, "", dtype=object)
        for geo in GEOMETRIES:
            holes = m.geometry == geo
            if not holes.any():
                continue
            units = probes[d.name].get(geo, [])
            fallback = None
            if not units:
                # No known rows of this geometry to hold out: judge on the others'.
                fallback = next((g for g in GEOMETRIES if probes[d.name].get(g)), None)
                if fallback is None:
                    raise ValueError(f"{d.name}: too few known rows to hold any out for "
                                     f"choosing the estimator of its {geo} holes")
                units = probes[d.name][fallback]
            probe = np.any(units, axis=0)
            kind = fallback or geo
            cand = {}
            if "interpolation" in estimators:
                cand["interpolation"] = np.exp(interpolate(
                    logs, avail, probe, m.v, m.J, m.energy, m.lam, kind))
            for e in ("prior", "net"):
                if e in preds[d.name] and e in estimators:
                    cand[e] = preds[d.name][e]
            truth = np.where(m.known, m.sigma, 0.0)
            cmax = truth.max(axis=1, keepdims=True)
            region = probe & (truth > thr * cmax)
            scores = {e: _median_rel(p, truth, region) for e, p in cand.items()}
            order = sorted(cand, key=lambda e: (scores[e].get("median_rel", np.inf),
                                                ESTIMATORS.index(e)))
            best = order[0]
            if not scores[best].get("n"):
                raise ValueError(f"{d.name}: no held-out point above completion.threshold = "
                                 f"{thr:g} x its curve's maximum to choose the estimator of "
                                 f"its {geo} holes")
            # Uncertainty of the chosen estimator, from its probe residuals per depth bin.
            pbest = cand[best]
            ok = probe & (truth > TRUTH_FLOOR * cmax) & (pbest > 0)
            absdex = np.abs(np.log10(pbest[ok] / truth[ok]))
            bins = _bin_of(_depth(pbest, truth, avail))[ok]
            q = fit_quantiles(absdex, bins)
            unit_id = np.full(m.sigma.shape, -1)
            for k, u in enumerate(units):
                unit_id[u] = k
            uid = unit_id[ok]
            half = np.isin(uid, rng.permutation(len(units))[: len(units) // 2])
            cover = {"0.68": None, "0.95": None, "n": int(ok.sum()), "units": len(units)}
            if len(units) >= 2 and half.any() and (~half).any():
                hits = []
                for fit_on in (half, ~half):
                    qh = fit_quantiles(absdex[fit_on], bins[fit_on])
                    hw = _apply_quantiles(qh, bins[~fit_on])
                    hits.append(absdex[~fit_on][:, None] <= hw)
                hits = np.concatenate(hits)
                cover["0.68"], cover["0.95"] = (float(hits[:, 0].mean()),
                                                float(hits[:, 1].mean()))
            # Fill.
            if best == "interpolation":
                fill = np.exp(interpolate(logs, m.known, holes, m.v, m.J, m.energy, m.lam, geo))
            else:
                fill = preds[d.name][best]
            out[holes] = fill[holes]
            fbins = _bin_of(_depth(np.where(holes, fill, 0.0), np.where(m.known, m.sigma, 0.0),
                                   m.known))[holes]
            u_out[holes] = _apply_quantiles(q, fbins)
            w_out[holes] = best
            rec["geometries"][geo] = {
                "missing_rows": int(holes.sum()),
                "missing_levels": int((holes.all(axis=1)).sum()),
                "probe_units": len(units), "probe_rows": int(probe.sum()),
                "probe_geometry": kind, "scores": scores, "chosen": best,
                "quantiles_dex": {str(k): v for k, v in q.items()},
                "coverage_cross_fitted": cover}
            say(f"{d.name} {geo}: {int(holes.sum())} rows filled by {best}; held-out median "
                + ", ".join(f"{e} {100 * s['median_rel']:.3g} %" for e, s in scores.items()
                            if s.get('n')) + f" ({int(region.sum())} points"
                + (f", judged on {kind} rows" if fallback else "") + ")", verbose)
        if "prior" in report and report["prior"].get("calibration"):
            rec["prior_calibration"] = report["prior"]["calibration"].get(d.name)
        report["molecules"][d.name] = rec
        filled[d.name], unc[d.name], which[d.name] = out, u_out, w_out
    report["seconds_total"] = round(time.perf_counter() - t0, 1)
    return filled, unc, which, report


# ---------------------------------------------------------------------------------- output
def _safe(name: str) -> str:
    return name.replace("+", "p").replace("-", "m")


def write_outputs(mols: Dict[str, UserMolecule], filled, unc, which, report, out_dir) -> dict:
    """Write table/ (input format), uncertainty.csv and report.json under out_dir (module
    docstring). Returns {name: path}."""
    out_dir = Path(out_dir)
    tdir = out_dir / "table"
    tdir.mkdir(parents=True, exist_ok=True)
    lines = ["molecule,v,J,wavelength_nm,sigma_cm2,status,geometry,estimator,unc68_dex,"
             "unc95_dex"]
    for name, m in mols.items():
        for i in range(m.v.size):
            fname = Path(m.files[i]).name if m.files[i] else \
                f"{_safe(name)}_v{int(m.v[i])}_J{int(m.J[i])}.txt"
            e = m.file_energy[i] if m.file_energy[i] is not None else float(m.energy[i])
            write_xsec_table(tdir / fname, XsecTable(name, int(m.v[i]), int(m.J[i]), m.lam,
                                                     filled[name][i], energy_hartree=e))
            lam, sig = m.lam.tolist(), filled[name][i].tolist()
            u68, u95 = unc[name][i, :, 0].tolist(), unc[name][i, :, 1].tolist()
            for k in range(m.lam.size):
                lines.append(
                    f"{name},{int(m.v[i])},{int(m.J[i])},{lam[k]!r},{sig[k]!r},"
                    f"{'known' if m.known[i, k] else 'filled'},{m.geometry[i, k]},"
                    f"{which[name][i, k]},{u68[k]!r},{u95[k]!r}")
    paths = {"table": tdir,
             "uncertainty": workdir_lib.write_text(out_dir / "uncertainty.csv",
                                                   "\n".join(lines) + "\n")}
    report["outputs"] = {k: str(v) for k, v in paths.items()}
    report["outputs"]["report"] = str(out_dir / "report.json")
    paths["report"] = workdir_lib.write_json(out_dir / "report.json", report)
    return paths


def validate(config) -> None:
    """The config checks that need no data; ValueError naming the field and allowed values."""
    cc = config.completion
    est = [e.strip() for e in str(cc.estimators).split(",") if e.strip()]
    bad = [e for e in est if e not in ESTIMATORS]
    if bad or not est:
        raise ValueError(f"completion.estimators: {bad or 'empty'}; allowed: comma-separated "
                         f"subset of {list(ESTIMATORS)}")
    if not 0.0 < float(cc.probe_fraction) < 0.5:
        raise ValueError(f"completion.probe_fraction must be in (0, 0.5), got "
                         f"{cc.probe_fraction}")
    if not 0.0 < float(cc.val_fraction) < 0.5:
        raise ValueError(f"completion.val_fraction must be in (0, 0.5), got {cc.val_fraction}")
    if not 0.0 < float(cc.threshold) < 1.0:
        raise ValueError(f"completion.threshold must be in (0, 1), got {cc.threshold}")
    xsec_exp.validate(config)


def run(config, input_dir, output, progress: bool = False, verbose: bool = True) -> dict:
    """Read the tables in `input_dir`, complete them, write `output` (module docstring).

    Bad input (flags, config, files) raises before any expensive work; a run that fails leaves
    no empty folders. Returns the report dict.
    """
    validate(config)
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--output {out}: exists and is not a folder")
    if not out.parent.exists():
        raise FileNotFoundError(f"--output {out}: parent folder {out.parent} does not exist")
    if (out / "table").exists() and any((out / "table").iterdir()):
        raise ValueError(f"--output {out}: already holds a completed table ({out / 'table'}); "
                         f"remove it or choose another folder")
    if Path(input_dir).exists() and out.resolve() == Path(input_dir).resolve():
        raise ValueError(f"--output {out}: must differ from --input")
    tables = read_tables(input_dir, str(config.completion.pattern))
    mols = assemble(tables)
    if not any((~m.known).any() for m in mols.values()):
        raise ValueError(f"--input {input_dir}: no missing level or row (no absent bound level "
                         f"inside the table's v and J ranges, no sigma = nan); nothing to "
                         f"complete")
    say(f"read {len(tables)} files: " + ", ".join(
        f"{n} ({m.v.size} levels in v {int(m.v.min())}-{int(m.v.max())}, J {int(m.J.min())}-"
        f"{int(m.J.max())}; {m.lam.size} wavelengths)" for n, m in mols.items()), verbose)
    out.mkdir(exist_ok=True)
    try:
        filled, unc, which, rep = complete(mols, config, out / "net", progress, verbose)
        write_outputs(mols, filled, unc, which, rep, out)
    except BaseException:
        workdir_lib.remove_empty_dirs(out)
        raise
    return rep


def summary_text(rep: dict) -> str:
    """Which estimator filled what, its held-out score and the uncertainty's coverage."""
    lines = []
    for name, r in rep["molecules"].items():
        for geo, g in r["geometries"].items():
            s = g["scores"][g["chosen"]]
            cov = g["coverage_cross_fitted"]
            covs = ("coverage 68 % {:.2f}, 95 % {:.2f}".format(cov["0.68"], cov["0.95"])
                    if cov["0.68"] is not None else "coverage not measured (< 2 units)")
            lines.append(
                f"{name} {geo}: {g['missing_rows']} rows ({g['missing_levels']} whole levels) "
                f"filled by {g['chosen']}, held-out median {100 * s['median_rel']:.3g} % on "
                f"{s['n']} points of {g['probe_units']} {g['probe_geometry']} units ("
                + ", ".join(f"{e} {100 * v['median_rel']:.3g} %" for e, v in g["scores"].items()
                            if v.get("n")) + f"); {covs}")
    lines += [f"{k}: {v}" for k, v in rep.get("outputs", {}).items()]
    lines.append(f"{rep['seconds_total']} s")
    return "\n".join(lines)
