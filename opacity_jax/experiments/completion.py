"""Completion of gridded opacity tables with holes: a neighbourhood-conditioned deep ensemble.

Input: a table on a full N-D grid (the JLODK Planck-mean tables, Ye x t x log rho x T, or a
user's text table) whose missing entries are NaN or named by a mask. Output: the same table
with every hole filled, a per-entry 1-sigma uncertainty (dex, i.e. of log10 kappa; 0 for known
entries, which are copied bit for bit) and a report.

Model (trained in log10 space on the known entries only):

* Each value channel (JLODK: bound-bound and electron scattering, separately, so column 5 is
  rebuilt as column 3 + column 4; a text table: its kappa column) is log10(max(kappa, floor)),
  floor = 0.1 x the smallest positive known value. Exact zeros (JLODK column 4 where the gas is
  neutral) therefore sit one decade below every positive value; a prediction below the
  geometric midpoint between floor and that smallest value is written as an exact 0.
* Features of an entry: for every grid axis, the two nearest *known* entries on each side
  (their log values relative to a reference, signed distances in grid spacings, presence
  flags), each axis's linear interpolant, the entry's coordinates and the reference. The
  reference is the interpolant along the most reliable available axis, ranked by how well each
  axis interpolates the training realisations (data-driven: for JLODK the time axis, whose
  values are smooth power laws, then T, rho, Ye). The network predicts the correction to the
  reference, so it learns a multi-axis interpolation rule, not the whole table.
* Self-supervised training data: "realisations" hide extra known entries with the same
  pattern as the real holes (random entries, whole temperature rows, whole slices of one
  axis - detected from the mask, or set by `pattern`), and the hidden known entries become
  (features, target) pairs. Known entries are split up front into train-target, validation
  (early stopping) and calibration sets; calibration entries are never training targets.
* A K-member `GaussianMLP` ensemble (mean + log-variance heads, beta-NLL) trained at once with
  the shared loop (`ensemble.train_ensemble`: K entities on the vmap axis). Predictive
  sigma^2 = mean member variance + member spread; then one scale factor per channel and for
  the total, fitted on the calibration realisation (`ens.fit_sigma_scale`, matched at the
  95 % level by default: the residuals are heavier-tailed than Gaussian, so one factor cannot
  match 68 % and 95 % at once; the +-1 sigma intervals then cover more than 68 % - the
  report and uncertainty/README.txt give both measured coverages). The factor comes with an
  exponent, sigma' = a * median * (sigma / median)**gamma (`fit_sigma_power`), gamma chosen
  on the same split for the narrowest median interval at that coverage.
* Whole missing slices of any axis (a new grid value, e.g. bin/complete --add-ye=0.15; the
  first axis with such slices): held-out configurations hide runs of 1 and 2 known interior
  slices (`gap_configs`); for each, an ensemble that never had them as targets is trained and
  three estimators predict them (`SLICE_ESTIMATORS`): interp_total (the total interpolated
  log-linearly along the axis - for a midpoint the geometric mean of the neighbouring
  slices; the baseline), interp_channels (each channel so), network. The estimator with the
  lowest held-out median error on the shortest runs fills the slices, replacing the baseline
  only when `slice_select_margin` better. A new value between two known slices is closer to
  them than any held-out slice can be (JLODK Ye: 0.05 against 0.1 - 0.14), so the sigma scale
  is modelled as a power law of the gap g = sqrt(d_lo * d_hi) to the nearest known slices
  (`fit_gap_scale`: fitted per gap size held out, exponent fitted with >= 2 sizes, else
  `gap_exponent_prior`; with >= 4 held-out positions a law per position,
  `LocalGapScaleModel`, because gap size can go with position) and extrapolated to the
  filled gaps; sigma itself is one constant per
  channel and gap size for the interpolants (the law is one of interpolation error), the
  network's spread when the network fills (`SLICE_SIGMAS`). gap_model.json / gap_model.png
  show the law, its points and the filled gaps.

Evaluation scenarios (`evaluate`, bin/complete --evaluate): random20 = a random 20 % of the
entries; rows = whole temperature rows, i.e. every density at one (interior) temperature of one
(Ye, t) file, 20 % of them; ye_slice = each interior Ye slice in turn (train on the other three).

Baselines (`interp_along_axis`, `neighbour_slice_mean`) and the hide-and-predict evaluation
(`evaluate`) live here too; `bin/complete` is the command line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import sys
import time
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
from absl import logging

from opacity_jax import cli
from opacity_jax.data import jlodk
from opacity_jax.errors import DataFormatError
from opacity_jax.experiments import ensemble as ens
from opacity_jax.train import loop
from opacity_jax.train import workdir as workdir_lib
from opacity_jax.train.task import pack_ragged

PATTERNS = ("random", "rows", "slice")
SCENARIOS = ("random20", "rows", "ye_slice")


# --------------------------------------------------------------------------------------------
# tables
@dataclasses.dataclass
class GridTable:
    """Values on a full N-D grid; NaN marks missing entries.

    Attributes:
      axis_names: (nd,) names; axes: (nd,) 1-D strictly increasing coordinates (raw units).
      log_axes: (nd,) bool, use log10 of the coordinate as the feature (positive axes spanning
        more than a decade, unless set).
      channels: name -> (*shape) float64 values [cm^2/g], NaN = missing. Several channels are
        summed into the total (JLODK: 'bb' + 'es').
      kind: 'jlodk' or 'text' (selects the writer); source: input path; extra: writer details.
    """

    axis_names: tuple
    axes: tuple
    channels: Dict[str, np.ndarray]
    log_axes: Optional[tuple] = None
    kind: str = "array"
    source: str = ""
    extra: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.axes = tuple(np.asarray(a, np.float64) for a in self.axes)
        self.axis_names = tuple(str(n) for n in self.axis_names)
        if len(self.axis_names) != len(self.axes):
            raise ValueError(f"{len(self.axis_names)} axis names for {len(self.axes)} axes")
        for n, a in zip(self.axis_names, self.axes):
            if a.ndim != 1 or a.size < 1 or not np.all(np.isfinite(a)) or np.any(np.diff(a) <= 0):
                raise ValueError(f"axis {n!r} must be finite and strictly increasing, got "
                                 f"{a[:6].tolist()}...")
        if not self.channels:
            raise ValueError("a table needs at least one value channel")
        for name, v in self.channels.items():
            v = np.asarray(v, np.float64)
            if v.shape != self.shape:
                raise ValueError(f"channel {name!r} has shape {v.shape}, axes imply {self.shape}")
            if np.any(np.isinf(v)):
                raise ValueError(f"channel {name!r} holds Inf at index "
                                 f"{tuple(int(i) for i in np.argwhere(np.isinf(v))[0])}")
            if np.any(v < 0):
                raise ValueError(f"channel {name!r} holds a negative value "
                                 f"{v[v < 0][0]!r} at index "
                                 f"{tuple(int(i) for i in np.argwhere(v < 0)[0])}")
            self.channels[name] = v
        if self.log_axes is None:
            self.log_axes = tuple(bool(a.min() > 0 and a.max() / a.min() > 10) for a in self.axes)
        self.log_axes = tuple(bool(b) for b in self.log_axes)

    @property
    def shape(self) -> tuple:
        """Grid shape (len of each axis)."""
        return tuple(a.size for a in self.axes)

    def missing(self) -> np.ndarray:
        """(*shape) bool: an entry is missing when any channel is NaN there."""
        m = np.zeros(self.shape, bool)
        for v in self.channels.values():
            m |= np.isnan(v)
        return m

    def total(self) -> np.ndarray:
        """Sum of the channels (*shape) [cm^2/g]."""
        return sum(self.channels.values())

    def feature_axes(self):
        """Coordinates as used in features: log10 where log_axes, else raw."""
        return tuple(np.log10(a) if lg else a for a, lg in zip(self.axes, self.log_axes))


def from_jlodk(t: jlodk.JlodkTable) -> GridTable:
    """GridTable with channels 'bb' (column 3) and 'es' (column 4); total = bb + es.

    Where only one of bb/es is NaN and the total is known, the missing one is recovered as
    total - other (es clipped at 0), so no information is thrown away.
    """
    bb, es, tot = (np.array(t.kappa_bb), np.array(t.kappa_es), np.array(t.kappa_total))
    fix_bb = np.isnan(bb) & ~np.isnan(es) & ~np.isnan(tot)
    bb[fix_bb] = np.maximum(tot[fix_bb] - es[fix_bb], 0.0)
    fix_es = np.isnan(es) & ~np.isnan(bb) & ~np.isnan(tot)
    es[fix_es] = np.maximum(tot[fix_es] - bb[fix_es], 0.0)
    return GridTable(("Ye", "time_days", "log10_rho", "temperature_k"),
                     (t.ye, t.time_days, t.log10_rho, t.temperature_k), {"bb": bb, "es": es},
                     kind="jlodk", source=str(t.root or ""))


def to_jlodk(table: GridTable, channels: Dict[str, np.ndarray]) -> jlodk.JlodkTable:
    """JlodkTable from a jlodk GridTable's axes and (filled) bb/es channels; total = bb + es."""
    bb, es = channels["bb"], channels["es"]
    return jlodk.JlodkTable(ye=table.axes[0], time_days=table.axes[1], log10_rho=table.axes[2],
                         temperature_k=table.axes[3], kappa_bb=bb, kappa_es=es,
                         kappa_total=bb + es)


COORD_RTOL = 1e-6   # distinct coordinates of a text table must differ by more (relative)
_TEXT_NUM = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^nan$", re.IGNORECASE)


def read_text_table(path, value_columns: Sequence[str] = ()) -> GridTable:
    """Read a gridded text table: a header line of column names, then numeric rows.

    The header is the last '#' comment line before the data (or a first non-numeric line);
    columns are separated by commas or whitespace. Value columns (default: the last column)
    hold kappa [cm^2/g] with 'nan' for holes; every other column is a grid coordinate. Rows may
    come in any order and rows absent from the full grid (outer product of each coordinate
    column's distinct values) are missing entries.

    Raises DataFormatError naming the file, line and column on malformed input.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such table file: {path}")
    header, rows = None, []
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise DataFormatError(f"not UTF-8 text (byte {exc.start}); expected a text table or a "
                              "JLODK folder", path=path, line=line) from None
    if "\0" in text:
        raise DataFormatError("contains NUL bytes: a binary file, not a text table", path=path,
                              line=text[:text.index("\0")].count("\n") + 1)
    for lineno, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if not s:
            continue
        toks = [x for x in re.split(r"[,\s]+", s.lstrip("#").strip()) if x]
        if s.startswith("#"):
            if toks and not rows:
                header = (toks, lineno)
            continue
        if not all(_TEXT_NUM.match(x) for x in toks):
            if rows:
                bad = next(x for x in toks if not _TEXT_NUM.match(x))
                raise DataFormatError(f"non-numeric value {bad!r}", path=path, line=lineno)
            header = (toks, lineno)
            continue
        rows.append((lineno, toks))
    if not rows:
        raise DataFormatError("no numeric rows", path=path, field="rows")
    ncol = len(rows[0][1])
    names = header[0] if header else [f"col{i}" for i in range(ncol)]
    if len(names) != ncol:
        raise DataFormatError(f"header names {len(names)} columns {names}, data rows have {ncol}",
                              path=path, line=header[1] if header else None, field="header")
    for lineno, toks in rows:
        if len(toks) != ncol:
            raise DataFormatError(f"expected {ncol} columns, found {len(toks)}", path=path,
                                  line=lineno)
    data = np.array([[float(x) for x in toks] for _, toks in rows])
    vcols = list(value_columns) or [names[-1]]
    for v in vcols:
        if v not in names:
            raise DataFormatError(f"value column {v!r} not in the header {names}", path=path,
                                  field=v)
    acols = [n for n in names if n not in vcols]
    if not acols:
        raise DataFormatError("no coordinate columns left besides the value columns", path=path)
    for n in acols:
        c = data[:, names.index(n)]
        if not np.all(np.isfinite(c)):
            r = int(np.argmax(~np.isfinite(c)))
            raise DataFormatError(f"non-finite coordinate {float(c[r])!r}", path=path,
                                  line=rows[r][0], field=n)
    for n in vcols:
        c = data[:, names.index(n)]
        bad = np.isinf(c) | (c < 0)
        if np.any(bad):
            r = int(np.argmax(bad))
            raise DataFormatError(f"opacity {float(c[r])!r} is negative or infinite", path=path,
                                  line=rows[r][0], field=n)
    axes = [np.unique(data[:, names.index(n)]) for n in acols]
    for a, n in zip(axes, acols):
        # Values of one grid row written with a round-off difference would invent a new row
        # (then "filled" as missing): refuse coordinates closer than 1e-6 relative.
        close = np.flatnonzero(np.diff(a) <= COORD_RTOL * np.maximum(np.abs(a[1:]),
                                                                     np.abs(a[:-1])))
        if close.size:
            lo, hi = a[close[0]], a[close[0] + 1]
            c = data[:, names.index(n)]
            lines = [rows[int(np.flatnonzero(c == v)[0])][0] for v in (lo, hi)]
            raise DataFormatError(
                f"coordinates {lo!r} (line {lines[0]}) and {hi!r} (line {lines[1]}) differ by "
                f"less than {COORD_RTOL:g} relative: write one grid value identically in every "
                f"row", path=path, line=lines[1], field=n)
    shape = tuple(a.size for a in axes)
    idx = tuple(np.searchsorted(a, data[:, names.index(n)]) for a, n in zip(axes, acols))
    flat = np.ravel_multi_index(idx, shape)
    _, first, counts = np.unique(flat, return_index=True, return_counts=True)
    if np.any(counts > 1):
        dup = int(np.sort(np.flatnonzero(np.bincount(flat) > 1))[0])
        r = int(np.flatnonzero(flat == dup)[1])
        raise DataFormatError("duplicate grid point (same coordinates as an earlier row)",
                              path=path, line=rows[r][0])
    channels = {}
    for n in vcols:
        v = np.full(shape, np.nan)
        v[idx] = data[:, names.index(n)]
        channels[n] = v
    delimiter = "," if "," in text else " "
    return GridTable(tuple(acols), tuple(axes), channels, kind="text", source=str(path),
                     extra={"columns": names, "value_columns": vcols, "delimiter": delimiter})


def write_text_table(table: GridTable, channels: Dict[str, np.ndarray], path,
                     sigma: Optional[Dict[str, np.ndarray]] = None) -> Path:
    """Write a text table in the input's column order, every grid point, last axis fastest.

    sigma: optional name -> (*shape) 1-sigma [dex] written as extra 'sigma_log10_<name>'
    columns. Atomic (temp file + rename).
    """
    cols = table.extra.get("columns") or list(table.axis_names) + list(channels)
    delim = table.extra.get("delimiter", " ")
    grids = np.meshgrid(*table.axes, indexing="ij")
    data = {n: g.ravel() for n, g in zip(table.axis_names, grids)}
    data.update({n: np.asarray(v).ravel() for n, v in channels.items()})
    names = list(cols)
    if sigma:
        for n, v in sigma.items():
            names.append(f"sigma_log10_{n}")
            data[f"sigma_log10_{n}"] = np.asarray(v).ravel()
    sep = ", " if delim == "," else "  "
    lines = ["# " + sep.join(names)]
    cols_data = [data[n] for n in names]
    for row in zip(*cols_data):
        lines.append(sep.join("nan" if math.isnan(x) else f"{x:.9e}" for x in row))
    return workdir_lib.write_text(path, "\n".join(lines) + "\n")


def read_table(path, mask=None, value_columns: Sequence[str] = ()) -> GridTable:
    """Read a JLODK folder (Ye*/ subfolders) or a text table, then apply an optional mask.

    Args:
      path: JLODK root folder or text table file.
      mask: None, a (*shape) bool array or the path of a .npy file holding one (True =
        missing); masked entries are set to NaN in every channel.
    Returns:
      GridTable.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such table: {path}")
    if path.is_dir():
        table = from_jlodk(jlodk.read_jlodk(path, allow_nan=True))
    else:
        table = read_text_table(path, value_columns)
    if mask is not None:
        m = load_mask(mask, table.shape)
        for v in table.channels.values():
            v[m] = np.nan
    return table


def load_mask(mask, shape) -> np.ndarray:
    """(*shape) bool mask from an array or a .npy path (True = missing); clear errors."""
    src = mask
    if isinstance(mask, (str, Path)):
        p = Path(mask)
        if not p.is_file():
            raise FileNotFoundError(f"no such mask file: {p}")
        try:
            mask = np.load(p, allow_pickle=False)
        except Exception as e:
            raise DataFormatError(f"cannot read as a .npy array ({e})", path=p) from None
    m = np.asarray(mask)
    if m.shape != tuple(shape):
        raise DataFormatError(f"mask has shape {m.shape}, the table has {tuple(shape)}",
                              path=src if isinstance(src, (str, Path)) else None, field="mask")
    if m.dtype != bool:
        if not np.all(np.isin(m, (0, 1))):
            raise DataFormatError("mask must hold booleans or 0/1 (1 = missing)",
                                  path=src if isinstance(src, (str, Path)) else None,
                                  field="mask")
        m = m.astype(bool)
    return m


# --------------------------------------------------------------------------------------------
# new grid values
# bin/complete flag -> JLODK axis (GridTable.axis_names of from_jlodk); text tables use --add.
ADD_FLAGS = {"add-ye": "Ye", "add-time": "time_days", "add-log10-rho": "log10_rho",
             "add-temperature": "temperature_k"}


def insert_axis_values(table: GridTable, axis, values: Sequence[float],
                       flag: str = "add") -> GridTable:
    """A copy of `table` with new grid values on one axis, every entry there missing (NaN).

    The new values must lie strictly inside the known range of the axis (completion never
    extrapolates) and must not repeat a grid value (closer than COORD_RTOL relative).

    Args:
      table: GridTable. axis: axis index or name. values: new coordinates, raw units of the
        axis (e.g. Ye; days; log10 rho [g/cm^3]; T [K]). flag: the command-line flag named in
        errors (without the leading --).
    Returns:
      GridTable whose axis holds the old and new values, sorted; known entries copied.
    Raises:
      ValueError naming the flag, the value and the allowed open interval.
    """
    names = list(table.axis_names)
    if isinstance(axis, str):
        if axis not in names:
            raise ValueError(f"--{flag}: the table has no axis {axis!r}; axes: {names}")
        a = names.index(axis)
    else:
        a = int(axis)
    old = table.axes[a]
    vals = np.asarray(sorted(float(v) for v in values), np.float64)
    if vals.size == 0:
        return table
    lo, hi = float(old[0]), float(old[-1])
    for v in vals.tolist():
        if not math.isfinite(v) or not lo < v < hi:
            raise ValueError(f"--{flag}={v:g}: outside the known {names[a]} range; new values "
                             f"must lie strictly between {lo:g} and {hi:g} (completion does not "
                             "extrapolate)")
        near = old[np.argmin(np.abs(old - v))]
        if abs(near - v) <= COORD_RTOL * max(abs(near), abs(v)):
            raise ValueError(f"--{flag}={v:g}: {names[a]} = {near:g} is already a grid value")
    if np.any(np.diff(vals) <= COORD_RTOL * np.abs(vals[1:])):
        raise ValueError(f"--{flag}: a new {names[a]} value is given twice: {vals.tolist()}")
    axis_new = np.concatenate([old, vals])
    order = np.argsort(axis_new, kind="stable")
    axis_new = axis_new[order]
    is_old = order < old.size
    channels = {}
    for n, v in table.channels.items():
        shape = list(v.shape)
        shape[a] = axis_new.size
        out = np.full(shape, np.nan)
        sl = [slice(None)] * v.ndim
        sl[a] = np.flatnonzero(is_old)
        out[tuple(sl)] = v
        channels[n] = out
    axes = list(table.axes)
    axes[a] = axis_new
    return GridTable(table.axis_names, tuple(axes), channels, table.log_axes, table.kind,
                     table.source, dict(table.extra))


def parse_add(specs: Sequence[str], table: GridTable) -> Dict[str, list]:
    """{axis name: [values]} from --add entries 'AXIS=v1:v2:...' (any table's axis names)."""
    out: Dict[str, list] = {}
    for spec in specs or []:
        name, sep, rest = str(spec).partition("=")
        if not sep or not rest:
            raise ValueError(f"--add={spec!r}: expected AXIS=v1:v2:... with AXIS one of "
                             f"{list(table.axis_names)}")
        if name not in table.axis_names:
            raise ValueError(f"--add={spec!r}: the table has no axis {name!r}; axes: "
                             f"{list(table.axis_names)}")
        for v in rest.split(":"):
            try:
                out.setdefault(name, []).append(float(v))
            except ValueError:
                raise ValueError(f"--add={spec!r}: {v!r} is not a number") from None
    return out


# --------------------------------------------------------------------------------------------
# log transform with a floor for exact zeros
@dataclasses.dataclass
class LogTransform:
    """log10 with a floor per channel: floor = 0.1 x smallest positive known value.

    zero_threshold: log10 values below it are written back as exact zeros (only for channels
    that had exact zeros among the known entries; NaN means never).
    """

    floor: Dict[str, float]
    zero_threshold: Dict[str, float]

    @classmethod
    def fit(cls, channels: Dict[str, np.ndarray], known: np.ndarray) -> "LogTransform":
        """Floors and thresholds from the known entries of each (*shape) channel."""
        floor, thr = {}, {}
        for n, v in channels.items():
            kv = v[known]
            pos = kv[kv > 0]
            if pos.size == 0:
                raise ValueError(f"channel {n!r}: no positive known value to set a log floor")
            floor[n] = float(0.1 * pos.min())
            thr[n] = (float(np.log10(floor[n]) + 0.5) if np.any(kv == 0) else float("nan"))
        return cls(floor, thr)

    def forward(self, name, v):
        """log10(max(v, floor)) of channel `name`; v [cm^2/g] any shape."""
        return np.log10(np.maximum(v, self.floor[name]))

    def inverse(self, name, y):
        """10**y [cm^2/g], with exact zeros below the channel's zero threshold."""
        out = 10.0 ** np.asarray(y, np.float64)
        thr = self.zero_threshold[name]
        if not math.isnan(thr):
            out = np.where(y < thr, 0.0, out)
        return out


# --------------------------------------------------------------------------------------------
# baselines
def interp_along_axis(logv: np.ndarray, known: np.ndarray, coords: np.ndarray, axis: int = -1,
                      query: Optional[np.ndarray] = None) -> np.ndarray:
    """Linear interpolation of log values along one axis from the known entries of each line.

    Holes past the last known entry of a line take the nearest known value (np.interp's
    constant extrapolation); lines without any known entry give NaN.

    Args:
      logv: (*shape) log10 values (ignored where not known); known: (*shape) bool;
      coords: (shape[axis],) coordinate used for the interpolation weights; axis: the axis.
      query: optional (*shape) bool; only those entries are filled (default: all unknown).
    Returns:
      (*shape) array: known entries copied, queried holes interpolated.
    """
    query = ~known if query is None else query
    a = np.moveaxis(logv, axis, -1)
    k = np.moveaxis(known, axis, -1)
    q = np.moveaxis(query, axis, -1)
    out = np.array(a, np.float64)
    lines = np.argwhere(q.any(-1))
    for idx in map(tuple, lines):
        kk, qq = k[idx], q[idx]
        if kk.any():
            out[idx][qq] = np.interp(coords[qq], coords[kk], a[idx][kk])
        else:
            out[idx][qq] = np.nan
    return np.moveaxis(out, -1, axis)


def neighbour_slice_mean(logv: np.ndarray, index: int, axis: int = 0) -> np.ndarray:
    """Mean of the log values of the two neighbouring slices (index - 1, index + 1) along axis.

    Returns the (*shape without axis) prediction of slice `index`; IndexError for an edge slice.
    """
    n = logv.shape[axis]
    if not 0 < index < n - 1:
        raise IndexError(f"slice {index} of axis {axis} (size {n}) has no neighbour on both sides")
    return 0.5 * (np.take(logv, index - 1, axis) + np.take(logv, index + 1, axis))


# --------------------------------------------------------------------------------------------
# features
def _neighbour_indices(known: np.ndarray, axis: int, rank: int):
    """{'lo'|'hi': [rank arrays (*shape) int]}: index along `axis` of the r-th nearest known
    entry strictly below / above each entry, -1 where there is none."""
    k = np.moveaxis(known, axis, -1)
    n = k.shape[-1]
    ar = np.arange(n)
    out = {}
    for side in ("lo", "hi"):
        kk = k if side == "lo" else k[..., ::-1]
        incl = np.maximum.accumulate(np.where(kk, ar, -1), axis=-1)
        strict = np.concatenate([np.full(kk.shape[:-1] + (1,), -1), incl[..., :-1]], -1)
        found = [strict]
        for _ in range(1, rank):
            prev = found[-1]
            nxt = np.take_along_axis(strict, np.maximum(prev, 0), -1)
            found.append(np.where(prev >= 0, nxt, -1))
        if side == "hi":
            found = [np.where(f >= 0, n - 1 - f, -1)[..., ::-1] for f in found]
        out[side] = [np.moveaxis(f, -1, axis) for f in found]
    return out


@dataclasses.dataclass
class FeatureSpec:
    """What `features` needs besides the data: feature coordinates, their typical spacing and
    standardization, the axis preference order per channel, and the stencil rank."""

    coords: tuple           # (nd,) 1-D feature coordinates
    spacing: np.ndarray     # (nd,) median grid step per axis
    centre: np.ndarray      # (nd,) coordinate mean
    scale: np.ndarray       # (nd,) coordinate std (>= tiny)
    order: list             # per channel: axes, most reliable interpolant first
    rank: int = 2
    value_centre: Optional[np.ndarray] = None   # (C,) mean log value (reference feature)
    value_scale: Optional[np.ndarray] = None    # (C,) std of log values

    @property
    def n_features(self) -> int:
        nd, c = len(self.coords), len(self.order)
        return nd * 2 * self.rank * (c + 2) + nd * c + nd + nd + c


def make_spec(table: GridTable, logv: np.ndarray, known: np.ndarray, rank: int = 2):
    """FeatureSpec with a provisional axis order (refined by `rank_axes`)."""
    coords = table.feature_axes()
    spacing = np.array([np.median(np.diff(c)) if c.size > 1 else 1.0 for c in coords])
    centre = np.array([c.mean() for c in coords])
    scale = np.array([max(c.std(), 1e-12) for c in coords])
    kv = logv[:, known]
    return FeatureSpec(coords, spacing, centre, scale,
                       [list(range(len(coords)))[::-1] for _ in range(logv.shape[0])], rank,
                       kv.mean(1), np.maximum(kv.std(1), 1e-6))


def features(spec: FeatureSpec, logv: np.ndarray, known: np.ndarray, query: np.ndarray):
    """Features of the queried entries given the known ones.

    Args:
      spec: FeatureSpec. logv: (C, *shape) log10 values (read only where known).
      known: (*shape) bool context. query: (N, nd) int indices of the entries to describe.
    Returns:
      x (N, spec.n_features) float32, ref (N, C) float64 reference log values (the network
      predicts logv - ref), interp (N, nd, C) per-axis interpolants, avail (N, nd) number of
      sides (0, 1, 2) with a known neighbour per axis.
    """
    c_n = logv.shape[0]
    nd = len(spec.coords)
    n = query.shape[0]
    q = tuple(query.T)
    slots = []
    for a in range(nd):
        idx = _neighbour_indices(known, a, spec.rank)
        for side in ("lo", "hi"):
            for r in range(spec.rank):
                j = idx[side][r][q]
                ok = j >= 0
                jj = np.maximum(j, 0)
                qq = list(q)
                qq[a] = jj
                vals = logv[(slice(None),) + tuple(qq)].T                      # (N, C)
                d = (spec.coords[a][jj] - spec.coords[a][query[:, a]]) / spec.spacing[a]
                slots.append((vals, np.where(ok, d, 0.0), ok))
    interp = np.zeros((n, nd, c_n))
    avail = np.zeros((n, nd), np.int64)
    for a in range(nd):
        (vl, dl, okl), (vh, dh, okh) = slots[a * 2 * spec.rank], slots[a * 2 * spec.rank +
                                                                          spec.rank]
        both = okl & okh
        w = np.where(both, -dl / np.where(both, dh - dl, 1.0), 0.0)
        interp[:, a] = np.where(both[:, None], vl + (vh - vl) * w[:, None],
                                np.where(okl[:, None], vl, np.where(okh[:, None], vh, 0.0)))
        avail[:, a] = okl.astype(np.int64) + okh
    ref = np.zeros((n, c_n))
    for c in range(c_n):
        done = np.zeros(n, bool)
        for level in (2, 1):
            for a in spec.order[c]:
                s = ~done & (avail[:, a] >= level)
                ref[s, c] = interp[s, a, c]
                done |= s
        # No known neighbour on any axis: fall back to the channel's mean log value.
        ref[~done, c] = spec.value_centre[c]
    feats = []
    for vals, d, ok in slots:
        feats += [(vals - ref) * ok[:, None], np.clip(d, -20, 20)[:, None] / 4,
                  ok[:, None].astype(np.float64)]
    feats.append(((interp - ref[:, None, :]) * (avail > 0)[:, :, None]).reshape(n, -1))
    feats.append(avail / 2.0)
    coords = np.stack([(spec.coords[a][query[:, a]] - spec.centre[a]) / spec.scale[a]
                       for a in range(nd)], 1)
    feats += [coords, (ref - spec.value_centre) / spec.value_scale]
    x = np.concatenate(feats, 1).astype(np.float32)
    return x, ref, interp, avail


def rank_axes(interp, avail, target) -> list:
    """Per channel, axes sorted by the median |interpolant - target| where both sides exist.

    interp (N, nd, C), avail (N, nd), target (N, C). Axes never two-sided go last.
    """
    order = []
    for c in range(target.shape[1]):
        err = []
        for a in range(interp.shape[1]):
            s = avail[:, a] == 2
            err.append(np.median(np.abs(interp[s, a, c] - target[s, c])) if s.any() else np.inf)
        order.append([int(a) for a in np.argsort(err, kind="stable")])
    return order


# --------------------------------------------------------------------------------------------
# masking patterns
def missing_slices(missing: np.ndarray) -> Dict[int, list]:
    """{axis: [indices]} of the slices (all entries at one index of that axis) that are
    entirely missing, for every axis of a >= 2-D table that has such a slice (not all)."""
    out = {}
    if missing.ndim < 2:
        return out
    for a in range(missing.ndim):
        full = missing.all(axis=tuple(i for i in range(missing.ndim) if i != a))
        if full.any() and not full.all():
            out[a] = np.flatnonzero(full).tolist()
    return out


def slice_axis(missing: np.ndarray) -> int:
    """The axis whose whole slices are missing (the first such axis; 0 if none)."""
    ms = missing_slices(missing)
    return min(ms) if ms else 0


def detect_pattern(missing: np.ndarray) -> str:
    """'slice' if some index of some axis is entirely missing (a new grid value; see
    `slice_axis`), 'rows' if most holes form whole rows along the second-to-last axis (all
    densities at one temperature), else 'random'. 'random' also for a table without holes."""
    if missing_slices(missing):
        return "slice"
    if missing.ndim >= 2 and missing.any():
        rows = missing.all(axis=-2)
        in_rows = np.expand_dims(rows, -2) & missing
        if in_rows.sum() > 0.5 * missing.sum():
            return "rows"
    return "random"


def draw_pattern(pattern: str, eligible: np.ndarray, fraction: float, rng,
                 slice_index: Optional[int] = None, axis: int = 0) -> np.ndarray:
    """A bool mask of entries to hide, drawn among `eligible` with the given pattern.

    random: each eligible entry with probability `fraction`; rows: whole rows along axis -2
    (all of one temperature in one file) with probability `fraction`, hiding their eligible
    entries; slice: the eligible entries of slice `slice_index` of `axis`.
    """
    if pattern == "random":
        return eligible & (rng.random(eligible.shape) < fraction)
    if pattern == "rows":
        ok = eligible.any(axis=-2)
        pick = ok & (rng.random(ok.shape) < fraction)
        return np.broadcast_to(np.expand_dims(pick, -2), eligible.shape) & eligible
    if pattern == "slice":
        return eligible & _slice_mask(eligible.shape, slice_index, axis)
    raise ValueError(f"unknown masking pattern {pattern!r}; allowed: {PATTERNS}")


# --------------------------------------------------------------------------------------------
# whole missing slices: held-out configurations, estimators, error versus gap size
SLICE_ESTIMATORS = ("interp_total", "interp_channels", "network")
SLICE_BASELINE = "interp_total"
SLICE_SIGMAS = ("constant", "network")


def gap_configs(visible: Sequence[int], run_lengths: Sequence[int]) -> list:
    """Held-out configurations of visible slices: [(L, [indices])], one per run length L.

    A configuration hides runs of L consecutive visible slices, each run with a visible slice
    on both sides and one visible slice kept between runs, so every hidden slice is an
    interior gap (neighbours 1..L visible steps away). Run lengths that fit nowhere are left
    out.
    """
    vis = sorted(int(i) for i in visible)
    out = []
    for L in run_lengths:
        L = int(L)
        hide, p = [], 1
        while p + L <= len(vis) - 1:
            hide += vis[p:p + L]
            p += L + 1
        if hide:
            out.append((L, hide))
    return out


def slice_gaps(ctx: np.ndarray, q: np.ndarray, coords: np.ndarray, axis: int) -> np.ndarray:
    """Gap size g = sqrt(d_lo * d_hi) of each queried entry along `axis`, in feature
    coordinates (log10 for a log axis): d_lo, d_hi = distances to the nearest known entry
    below / above. For linear interpolation of a smooth function the error is
    f''/2 * d_lo * d_hi = f''/2 * g**2; NaN where one side has no known entry.

    Args: ctx (*shape) bool known; q (N, nd) int indices; coords (shape[axis],).
    Returns: (N,) float.
    """
    idx = _neighbour_indices(ctx, axis, 1)
    lo, hi = idx["lo"][0][tuple(q.T)], idx["hi"][0][tuple(q.T)]
    x = coords[q[:, axis]]
    ok = (lo >= 0) & (hi >= 0)
    d_lo = np.where(ok, x - coords[np.maximum(lo, 0)], np.nan)
    d_hi = np.where(ok, coords[np.maximum(hi, 0)] - x, np.nan)
    return np.sqrt(d_lo * d_hi)


@dataclasses.dataclass
class GapScaleModel:
    """Sigma scale versus gap size: scale(g) = amplitude * g**exponent.

    The factor that makes sigma's intervals reach the nominal coverage (`ens.fit_sigma_scale`)
    is fitted separately on each gap size held out (`points`), then a power law through them
    in log-log: its exponent is fitted when >= 2 gap sizes were measured, else the prior;
    clipped to `bounds` (0: error independent of the gap; 2: the g**2 law of linear
    interpolation of a smooth function, with g = sqrt(d_lo * d_hi)).
    """

    exponent: float
    amplitude: float
    exponent_source: str          # 'fit', 'fit (clipped)' or 'prior'
    points: list                  # [{'gap', 'n', 'scale', 'median_abs_residual'}]
    levels: tuple = (0.95,)

    def scale(self, gap, position=None) -> np.ndarray:
        """Sigma scale at gap(s) g (same units as the points' gaps); position is ignored."""
        return self.amplitude * np.asarray(gap, np.float64) ** self.exponent

    def to_dict(self) -> dict:
        """JSON-serialisable summary."""
        return {"exponent": self.exponent, "amplitude": self.amplitude,
                "exponent_source": self.exponent_source, "levels": list(self.levels),
                "points": self.points}


def fit_gap_scale(gap, residual, sigma, levels=(0.95,), prior_exponent: float = 1.0,
                  bounds=(0.0, 2.0)) -> GapScaleModel:
    """Fit a GapScaleModel on held-out entries.

    Args:
      gap: (N,) gap size of each entry (`slice_gaps`; entries with NaN gap are ignored).
      residual: (N,) prediction - truth; sigma: (N,) raw predicted sigma (same units).
      levels: nominal coverages the per-gap scale matches; prior_exponent: used when fewer
        than two distinct gap sizes were measured; bounds: allowed exponent range.
    Returns:
      GapScaleModel (amplitude 1, exponent prior, no points when nothing is usable).
    """
    g = np.asarray(gap, np.float64).ravel()
    r = np.asarray(residual, np.float64).ravel()
    sg = np.asarray(sigma, np.float64).ravel()
    ok = np.isfinite(g) & (g > 0) & np.isfinite(r) & np.isfinite(sg)
    g, r, sg = g[ok], r[ok], sg[ok]
    if g.size == 0:
        return GapScaleModel(float(prior_exponent), 1.0, "prior", [], tuple(levels))
    key = np.round(np.log10(g), 6)      # one gap size = equal to 1e-6 relative
    points = []
    for k in np.unique(key):
        m = key == k
        points.append({"gap": float(np.median(g[m])), "n": int(m.sum()),
                       "scale": ens.fit_sigma_scale(r[m], sg[m], levels=levels),
                       "median_abs_residual": float(np.median(np.abs(r[m])))})
    lg = np.log10([p["gap"] for p in points])
    ls = np.log10([p["scale"] for p in points])
    if len(points) >= 2:
        p_fit = float(np.polyfit(lg, ls, 1)[0])
        p = float(np.clip(p_fit, *bounds))
        source = "fit" if p == p_fit else f"fit (clipped from {p_fit:.3g})"
    else:
        p, source = float(prior_exponent), "prior"
    amp = float(10.0 ** np.mean(ls - p * lg))
    return GapScaleModel(p, amp, source, points, tuple(levels))


LOCAL_GAP_MIN_POSITIONS = 4     # held-out slices of the shortest runs needed for a local law


@dataclasses.dataclass
class LocalGapScaleModel:
    """Sigma scale versus gap size, per position along the axis:
    scale(g, x) = s_ref(x) * (g / g_ref(x))**exponent, s_ref and g_ref interpolated
    (log-linearly, constant past the ends) between the held-out slices of the shortest runs
    at positions x_ref. Where gap size goes with position (a log axis of evenly spaced raw
    values: JLODK T), one power law mixes the two; this one compares gaps only at one place.
    exponent: the median slope log(s2 / s1) / log(g2 / g1) between gaps held out at the same
    position (a slice hidden alone and inside a longer run), else the global law's.
    """

    exponent: float
    exponent_source: str
    ref: list                     # [{'position', 'gap', 'scale', 'n'}] sorted by position
    global_law: GapScaleModel

    def scale(self, gap, position=None) -> np.ndarray:
        """Sigma scale at gap(s) and positions (feature coordinates); the global law
        without positions."""
        g = np.asarray(gap, np.float64)
        if position is None:
            return self.global_law.scale(g)
        xs = np.array([p["position"] for p in self.ref])
        ls = np.interp(position, xs, np.log([p["scale"] for p in self.ref]))
        lg = np.interp(position, xs, np.log([p["gap"] for p in self.ref]))
        return np.exp(ls + self.exponent * (np.log(g) - lg))

    def to_dict(self) -> dict:
        """JSON-serialisable summary (the global law's fields plus the local ones)."""
        return dict(self.global_law.to_dict(), kind="local", local_exponent=self.exponent,
                    local_exponent_source=self.exponent_source, local_ref=self.ref)


def fit_local_gap_scale(position, gap, residual, sigma, global_law: GapScaleModel,
                        bounds=(0.0, 2.0)) -> Optional[LocalGapScaleModel]:
    """A LocalGapScaleModel from held-out entries, or None with fewer than
    LOCAL_GAP_MIN_POSITIONS positions (the global law then stands).

    Args: position, gap, residual, sigma (N,) per held-out entry (position = feature
    coordinate of its slice); global_law: its levels are used, and its exponent when no
    position was held out at two gap sizes; bounds: allowed exponent range.
    """
    x = np.asarray(position, np.float64).ravel()
    g = np.asarray(gap, np.float64).ravel()
    r = np.asarray(residual, np.float64).ravel()
    sg = np.asarray(sigma, np.float64).ravel()
    ok = np.isfinite(x) & np.isfinite(g) & (g > 0)
    x, g, r, sg = x[ok], g[ok], r[ok], sg[ok]
    groups = {}
    for key in sorted(set(zip(np.round(x, 9).tolist(), np.round(np.log10(g), 6).tolist()))):
        m = (np.round(x, 9) == key[0]) & (np.round(np.log10(g), 6) == key[1])
        groups.setdefault(key[0], []).append(
            {"position": float(key[0]), "gap": float(np.median(g[m])), "n": int(m.sum()),
             "scale": ens.fit_sigma_scale(r[m], sg[m], levels=global_law.levels)})
    if len(groups) < LOCAL_GAP_MIN_POSITIONS:
        return None
    ref = [min(v, key=lambda p: p["gap"]) for _, v in sorted(groups.items())]
    slopes = [np.log(b["scale"] / a["scale"]) / np.log(b["gap"] / a["gap"])
              for v in groups.values() if len(v) >= 2
              for a, b in [sorted(v, key=lambda p: p["gap"])[:2]] if b["gap"] > a["gap"]]
    if slopes:
        p_fit = float(np.median(slopes))
        p = float(np.clip(p_fit, *bounds))
        src = (f"median of {len(slopes)} same-position pairs" if p == p_fit else
               f"median of {len(slopes)} same-position pairs (clipped from {p_fit:.3g})")
    else:
        p, src = global_law.exponent, "global law"
    return LocalGapScaleModel(p, src, ref, global_law)


def interval_efficiency(residual, sigma, level: float = 0.95) -> float:
    """Median half-width of the `level` Gaussian interval (z * sigma) / median |residual|.

    1.96 / 0.674 = 2.91 for Gaussian residuals with sigma = their spread; larger = wider
    intervals than the errors need. NaN without entries.
    """
    r = np.abs(np.asarray(residual, np.float64)).ravel()
    if r.size == 0 or np.median(r) == 0:
        return float("nan")
    return float(ens.z_of_level([level])[0] * np.median(np.asarray(sigma)) / np.median(r))


def _slice_estimates(fitted, ctx, q, axis, table: GridTable):
    """Log10 means of every SLICE_ESTIMATORS entry and the network's raw sigma at q.

    interp_channels: each channel interpolated (log-linear in the feature coordinate) along
    `axis` from its nearest known entries (the network's reference there); interp_total: the
    total interpolated the same way (for a midpoint of an evenly spaced axis: the geometric
    mean of the two neighbouring slices), the channels rescaled by one common factor so that
    they still sum to it; network: the ensemble mean.
    Returns ({estimator: {name: (N,)}}, {name: (N,) sigma}) with names = channels + 'total'.
    """
    names = fitted.names
    x, ref, interp, avail = features(fitted.spec, fitted.logv, ctx, q)
    mu, var = ens.predict_members(fitted.model.apply, fitted.params, x)
    mu = mu * fitted.y_scale + ref[None]
    var = np.exp(var) * fitted.y_scale ** 2
    est = {"network": {}}
    sig = {}
    for c, n in enumerate(names):
        est["network"][n], sig[n] = ens.mixture_moments(mu[..., c], var[..., c])
    est["network"]["total"], sig["total"] = fitted.total_moments(mu, var)
    ch = {n: interp[:, axis, c] for c, n in enumerate(names)}
    lin = sum(fitted.lt.inverse(n, ch[n]) for n in names)
    tot_ch = np.log10(np.maximum(lin, 1e-300))
    est["interp_channels"] = dict(ch, total=tot_ch)
    total = np.where(ctx, table.total(), np.nan)
    lt_tot = np.log10(np.maximum(np.nan_to_num(total), 1e-300))
    qm = np.zeros_like(ctx)
    qm[tuple(q.T)] = True
    t_interp = interp_along_axis(lt_tot, ctx, fitted.spec.coords[axis], axis=axis,
                                 query=qm)[tuple(q.T)]
    shift = t_interp - tot_ch
    est["interp_total"] = {n: ch[n] + shift for n in names}
    est["interp_total"]["total"] = t_interp
    return est, sig


# --------------------------------------------------------------------------------------------
# completion
@dataclasses.dataclass
class CompletionResult:
    """Filled channels and uncertainties.

    channels: name -> (*shape) completed values [cm^2/g] (known entries copied bit for bit).
    total: (*shape) sum of the channels [cm^2/g].
    log_mean: name -> (*shape) log10 of the filling estimator (the ensemble mean, or for
      whole slices the chosen SLICE_ESTIMATORS entry; NaN at known entries), also 'total'.
    sigma: name -> (*shape) calibrated 1-sigma of log10 [dex] (0 at known), also 'total';
      its +-1.96 sigma interval is the one fitted to cover 95 % (see `uncertainty_note`).
    sigma_raw: same before calibration (the ensemble's, or 1 dex for a constant sigma).
    missing: (*shape) bool, the filled entries.
    report: JSON-serialisable summary (pattern, axis order, calibration, `parts`: estimator
      and held-out score per filled part, `slice_selection` with the gap model, timings...).
    network_log_total: when slice selection chose an interpolant, the network's own
      log10 total (*shape) for comparison; else None.
    """

    channels: Dict[str, np.ndarray]
    total: np.ndarray
    log_mean: Dict[str, np.ndarray]
    sigma: Dict[str, np.ndarray]
    sigma_raw: Dict[str, np.ndarray]
    missing: np.ndarray
    report: dict
    network_log_total: Optional[np.ndarray] = None


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(np.ascontiguousarray(p).tobytes() if isinstance(p, np.ndarray)
                 else json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:12]


def _roles(pattern, known, cfg, rng):
    """Disjoint calibration / validation sets of known entries (never training targets).

    For the slice pattern the calibration set is empty: a slice is calibrated on held-out slices
    (a second ensemble that never saw one visible slice as a target), because entries of a
    slice the model trained on are far easier than an unseen slice.
    """
    if pattern == "slice":
        cal = np.zeros_like(known)
        val = draw_pattern("random", known, cfg["val_fraction"], rng)
    else:
        cal = draw_pattern(pattern, known, cfg["cal_fraction"], rng)
        val = draw_pattern(pattern, known & ~cal, cfg["val_fraction"], rng)
    return cal, val


def _slice_mask(shape, i, axis: int = 0) -> np.ndarray:
    """(*shape) bool, True on index (or indices) i of `axis`."""
    m = np.zeros(shape, bool)
    sl = [slice(None)] * len(shape)
    sl[axis] = i
    m[tuple(sl)] = True
    return m


def _realisations(pattern, known, missing, cfg, rng, cal, slices=None, axis: int = 0):
    """Training realisations [(context_known, hidden)]: hidden known entries with the holes'
    pattern; calibration entries are never hidden (they stay context, never targets). For
    slices: one realisation per slice of `axis` in `slices` (a random subset of them when
    more than needed to reach target_samples)."""
    frac = float(np.clip(missing.mean() if missing.any() else 0.2, 0.05, 0.5))
    if pattern == "slice":
        slices = list(slices)
        per = max(1, int(known.sum()) // max(known.shape[axis], 1))
        n_max = max(int(cfg["max_realisations"]), math.ceil(cfg["target_samples"] / per))
        if len(slices) > n_max:
            slices = sorted(rng.choice(slices, n_max, replace=False).tolist())
        return [(known & ~_slice_mask(known.shape, i, axis),
                 known & _slice_mask(known.shape, i, axis)) for i in slices]
    per = max(1.0, frac * int(known.sum()))
    n_real = int(np.clip(math.ceil(cfg["target_samples"] / per), 1, cfg["max_realisations"]))
    out = []
    for _ in range(n_real):
        hide = draw_pattern(pattern, known, frac, rng) & ~cal
        out.append((known & ~hide, hide))
    return out


# The keys of a completion config, in report order; their values live only in configs/complete.py.
CONFIG_KEYS = ("members", "hidden", "beta", "rank", "pattern", "cal_fraction", "val_fraction",
               "calibration_levels", "slice_select", "slice_select_margin", "gap_runs",
               "gap_exponent_prior", "gap_exponent_bounds", "target_samples",
               "max_realisations", "seed", "train")


def completion_config(config) -> dict:
    """A checked plain-dict copy of a completion config: the `completion` section of
    configs/complete.py plus the top-level `seed` (a dict or ConfigDict).

    Keys (every one required; configs/complete.py sets them all): members (K), hidden (MLP
    widths), beta (beta-NLL), rank (known neighbours per side and axis), pattern ('auto',
    'random', 'rows', 'slice'), cal_fraction / val_fraction (of the known entries),
    calibration_levels (nominal coverages the sigma scale matches on the calibration split),
    slice_select (for whole missing slices, choose among SLICE_ESTIMATORS by the held-out
    score; else the network), slice_select_margin (another estimator replaces the baseline
    SLICE_BASELINE only when its held-out median error is this fraction lower), gap_runs
    (run lengths of the held-out slice configurations, `gap_configs`; one fit each),
    gap_exponent_prior / gap_exponent_bounds (`fit_gap_scale`), target_samples /
    max_realisations (training set size), seed, and train (LoopConfig fields).
    Raises:
      ValueError naming missing or unknown keys, or a value out of range.
    """
    if config is None:
        raise ValueError("no completion config given: pass the `completion` section of "
                         "configs/complete.py plus `seed` (see completion.run)")
    o = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    missing = [k for k in CONFIG_KEYS if k not in o]
    if missing:
        raise ValueError(f"completion config lacks keys {missing} (configs/complete.py sets "
                         f"every key: {list(CONFIG_KEYS)})")
    unknown = sorted(set(o) - set(CONFIG_KEYS))
    if unknown:
        raise ValueError(f"unknown completion config keys {unknown}; allowed: "
                         f"{sorted(CONFIG_KEYS)}")
    tr = o["train"]
    o["train"] = dict(tr.to_dict() if hasattr(tr, "to_dict") else (tr or {}))
    cfg = json.loads(json.dumps({k: o[k] for k in CONFIG_KEYS}))   # a copy, in report order
    if cfg["pattern"] not in PATTERNS + ("auto",):
        raise ValueError(f"completion.pattern = {cfg['pattern']!r}; allowed: auto, "
                         f"{', '.join(PATTERNS)}")
    if int(cfg["members"]) < 1:
        raise ValueError(f"completion.members = {cfg['members']} must be >= 1")
    for k in ("cal_fraction", "val_fraction"):
        if not 0 < float(cfg[k]) < 0.5:
            raise ValueError(f"completion.{k} = {cfg[k]} must lie in (0, 0.5)")
    ens.z_of_level(cfg["calibration_levels"])   # validates the levels
    if not 0 <= float(cfg["slice_select_margin"]) < 1:
        raise ValueError(f"completion.slice_select_margin = {cfg['slice_select_margin']} must "
                         "lie in [0, 1)")
    runs = cfg["gap_runs"]
    if not isinstance(runs, list) or not runs or any(int(r) != r or r < 1 for r in runs):
        raise ValueError(f"completion.gap_runs = {runs!r} must be a non-empty list of "
                         "integers >= 1")
    lo_hi = cfg["gap_exponent_bounds"]
    if (not isinstance(lo_hi, list) or len(lo_hi) != 2 or not lo_hi[0] <= lo_hi[1]
            or not lo_hi[0] <= float(cfg["gap_exponent_prior"]) <= lo_hi[1]):
        raise ValueError(f"completion.gap_exponent_bounds = {lo_hi!r} must be [low, high] with "
                         f"low <= gap_exponent_prior ({cfg['gap_exponent_prior']}) <= high")
    loop.LoopConfig.from_config(cfg["train"])   # validates the loop section early
    return cfg


def _stage(progress: bool, message: str) -> None:
    """One line on stderr when progress is on (a long run says what it is doing)."""
    if progress:
        sys.stderr.write(f"complete: {message}\n")
        sys.stderr.flush()


@dataclasses.dataclass
class _Fitted:
    """A trained completion ensemble and what its predictions need."""

    spec: FeatureSpec
    model: ens.GaussianMLP
    params: object
    y_scale: np.ndarray
    names: list
    lt: LogTransform
    logv: np.ndarray
    result: ens.EnsembleResult
    n_train: int
    n_val: int
    n_features: int

    def predict(self, ctx, q, use_reference: bool = False):
        """Member log10 means and variances (K, N, C) at indices q (N, nd) from context ctx.

        use_reference: centre the members on the reference interpolant instead of the
        network's mean (same spread and variance heads) - the fallback for whole slices.
        """
        x, ref, _, _ = features(self.spec, self.logv, ctx, q)
        mu, lv = ens.predict_members(self.model.apply, self.params, x)
        mu = mu * self.y_scale + ref[None]
        if use_reference:
            mu = mu - mu.mean(0, keepdims=True) + ref[None]
        return mu, np.exp(lv) * self.y_scale ** 2

    def moments(self, mu, var):
        """Per channel and total: mixture means and sigmas, and each channel's share of the
        total (kappa_c / total, from the mixture means): ({name: (N,)}, {name: (N,)},
        {channel: (N,)})."""
        means, sg, lin = {}, {}, {}
        for c, n in enumerate(self.names):
            means[n], sg[n] = ens.mixture_moments(mu[..., c], var[..., c])
            lin[n] = self.lt.inverse(n, means[n])
        tot = np.maximum(sum(lin.values()), 1e-300)
        means["total"], sg["total"] = self.total_moments(mu, var)
        return means, sg, {n: lin[n] / tot for n in self.names}

    def total_moments(self, mu, var):
        """Mixture mean and sigma of log10(sum of channels), (N,) each."""
        lin = [self.lt.inverse(n, mu[..., c]) for c, n in enumerate(self.names)]
        tot = np.maximum(sum(lin), 1e-300)
        # d log10(total) / d log10(channel) = channel / total, per member.
        var_t = sum((lin[c] / tot) ** 2 * var[..., c] for c in range(len(self.names)))
        return ens.mixture_moments(np.log10(tot), var_t)


def _fit(spec, logv, names, lt, reals, val, cal, cfg, workdir, label, progress) -> _Fitted:
    """Build (features, residual target) pairs from the realisations and train the ensemble."""
    samples = [(ctx, np.argwhere(hide & ~val & ~cal), np.argwhere(hide & val))
               for ctx, hide in reals]
    xs, ys, xv, yv = [], [], [], []
    for ctx, q, qv in samples:
        for qq, xl, yl in ((q, xs, ys), (qv, xv, yv)):
            if len(qq):
                x, ref, _, _ = features(spec, logv, ctx, qq)
                xl.append(x)
                yl.append(logv[(slice(None),) + tuple(qq.T)].T - ref)
    if not xs:
        raise ValueError("no training targets: the table has too few known entries")
    x_tr, y_tr = np.concatenate(xs), np.concatenate(ys)
    if not xv:   # tiny tables: validate on a slice of the training targets
        xv, yv = [x_tr[: max(1, len(x_tr) // 10)]], [y_tr[: max(1, len(y_tr) // 10)]]
    x_va, y_va = np.concatenate(xv), np.concatenate(yv)
    y_scale = np.maximum(y_tr.std(0), 1e-4)
    model = ens.GaussianMLP(hidden=tuple(cfg["hidden"]), n_out=len(names))
    task = ens.gaussian_nll_task(model, "completion", beta=float(cfg["beta"]))
    tr = pack_ragged([{"x": x_tr, "y": (y_tr / y_scale).astype(np.float32)}])
    va = pack_ragged([{"x": x_va, "y": (y_va / y_scale).astype(np.float32)}])
    train_cfg = dict(cfg["train"])
    train_cfg.setdefault("seed", int(cfg["seed"]))
    res = ens.train_ensemble(task, tr, va, loop.LoopConfig.from_config(train_cfg),
                             int(cfg["members"]), workdir, label=label, progress=progress)
    return _Fitted(spec, model, res.params, y_scale, names, lt, logv, res, len(x_tr), len(x_va),
                   x_tr.shape[1])


def _calibrate(fitted: _Fitted, cal_sets, table: GridTable, levels,
               use_reference: bool = False):
    """Residuals, sigma, scale and coverage per channel and total on the calibration sets;
    calib[n]['median_abs_residual'] scores the predictor (dex)."""
    names = fitted.names
    res_c = {n: [] for n in names + ["total"]}
    sig_c = {n: [] for n in names + ["total"]}
    w_c = {n: [] for n in names}
    for ctx, sel in cal_sets:
        q = np.argwhere(sel)
        if not len(q):
            continue
        mu, var = fitted.predict(ctx, q, use_reference)
        truth = fitted.logv[(slice(None),) + tuple(q.T)].T
        means, sg, w = fitted.moments(mu, var)
        for c, n in enumerate(names):
            res_c[n].append(means[n] - truth[:, c])
            sig_c[n].append(sg[n])
            w_c[n].append(w[n])
        tot_true = np.log10(np.maximum(sum(table.channels[n][tuple(q.T)] for n in names),
                                       1e-300))
        res_c["total"].append(means["total"] - tot_true)
        sig_c["total"].append(sg["total"])
    calib, scales = {}, {}
    cat = {n: (np.concatenate(v) if v else np.zeros(0)) for n, v in sig_c.items()}
    wcat = {n: (np.concatenate(v) if v else np.zeros(0)) for n, v in w_c.items()}
    for n in res_c:
        r = np.concatenate(res_c[n]) if res_c[n] else np.zeros(0)
        s = cat[n]
        scales[n] = fit_sigma_power(r, s, levels)
        if n == "total":
            # Candidate: the total's sigma from the recalibrated channel sigmas, weighted by
            # each channel's share of the total (d log total / d log channel); kept when its
            # intervals are sharper on this split.
            for source in ("channels", "channels_correlated"):
                s_ch = total_sigma_from_channels({c: scales[c] for c in names}, cat, wcat,
                                                 correlated=source.endswith("correlated"))
                alt = fit_sigma_power(r, s_ch, levels)
                if r.size and (interval_efficiency(r, alt.apply(s_ch))
                               < interval_efficiency(r, scales[n].apply(s))):
                    scales[n], s = dataclasses.replace(alt, source=source), s_ch
        sc = scales[n].apply(s)
        calib[n] = ens.calibration_summary(r, s, 1.0)
        calib[n]["coverage_calibrated"] = ens.interval_coverage(r, sc)
        calib[n]["sigma_power"] = dataclasses.asdict(scales[n])
        calib[n]["sigma_scale"] = scales[n].scale
        calib[n]["median_abs_residual"] = float(np.median(np.abs(r))) if r.size else None
        calib[n]["efficiency_95"] = interval_efficiency(r, sc)
        calib[n]["reliability"] = [a.tolist() for a in ens.reliability_curve(r, sc)]
    return scales, calib


# Exponents tried by fit_sigma_power: 0 = one sigma for every entry, 1 = the ensemble's sigma
# scaled (the plain recalibration), in between = its ranking kept but its range compressed.
SIGMA_GAMMAS = tuple(float(g) for g in np.round(np.linspace(0.0, 3.0, 31), 3))


@dataclasses.dataclass
class SigmaPower:
    """Recalibrated sigma' = scale * sigma_median * (sigma / sigma_median)**gamma [dex].

    source: which raw sigma it applies to: 'ensemble' (the entry's own), or for the total
    'channels' / 'channels_correlated' (`total_sigma_from_channels`)."""

    gamma: float
    scale: float
    sigma_median: float
    source: str = "ensemble"

    def apply(self, sigma) -> np.ndarray:
        """sigma' for raw sigma (any shape) [dex]."""
        s = np.maximum(np.asarray(sigma, np.float64), 1e-300)
        return self.scale * self.sigma_median * (s / self.sigma_median) ** self.gamma


def total_sigma_from_channels(powers: Dict[str, "SigmaPower"], sigma: Dict[str, np.ndarray],
                              weight: Dict[str, np.ndarray],
                              correlated: bool = False) -> np.ndarray:
    """sqrt(sum_c (w_c * sigma'_c)**2) [dex] (independent channel errors), or
    sum_c w_c * sigma'_c when `correlated`: the total's raw sigma built from each channel's
    recalibrated sigma (powers[c].apply(sigma[c])) and its share w_c = kappa_c / total."""
    parts = [weight[c] * powers[c].apply(sigma[c]) for c in powers]
    return sum(parts) if correlated else np.sqrt(sum(p ** 2 for p in parts))


def fit_sigma_power(residual, sigma, levels=(0.95,), gammas=SIGMA_GAMMAS) -> SigmaPower:
    """The SigmaPower with the narrowest median interval at the nominal coverage.

    For each gamma the scale matches the coverage (`ens.fit_sigma_scale`); the gamma with the
    lowest `interval_efficiency` wins. The ensemble's spread ranks the entries' errors only
    roughly (its 95 % intervals were 6.6 x the median error on JLODK holes with gamma = 1), so
    compressing its range can give sharper intervals at the same coverage. Fit on a split
    disjoint from the entries it is judged on.

    Args: residual, sigma (N,) [dex]; levels: nominal coverages; gammas: exponents tried.
    Returns: SigmaPower (gamma 1, scale 1 without entries).
    """
    r = np.asarray(residual, np.float64).ravel()
    s = np.maximum(np.asarray(sigma, np.float64).ravel(), 1e-300)
    if r.size == 0:
        return SigmaPower(1.0, 1.0, 1.0)
    med = float(np.median(s))
    best = None
    for g in gammas:
        base = med * (s / med) ** g
        a = ens.fit_sigma_scale(r, base, levels=levels)
        eff = interval_efficiency(r, a * base)
        if best is None or eff < best[0] - 1e-12:
            best = (eff, SigmaPower(float(g), float(a), med))
    return best[1]


def complete(table: GridTable, cfg, workdir=None, progress: bool = False,
             label: str = "completion") -> CompletionResult:
    """Fill the missing entries of `table` (see module docstring).

    Args:
      table: GridTable; NaN entries are filled. cfg: the completion config (see
        completion_config; dict/ConfigDict).
      workdir: optional folder for the loop's checkpoints (label + a digest of the data and
        config, so a different table never resumes a stale run). progress: progress bar.
    Returns:
      CompletionResult (known entries copied bit for bit).
    Raises:
      ValueError when fewer than 20 entries are known or a channel has no positive value.
    """
    t0 = time.perf_counter()
    cfg = completion_config(cfg)
    names = list(table.channels)
    missing = table.missing()
    known = ~missing
    if known.sum() < 20:
        raise ValueError(f"{table.source or 'table'}: only {int(known.sum())} known entries; "
                         "need at least 20 to train")
    rng = np.random.default_rng([int(cfg["seed"]), 11])
    lt = LogTransform.fit(table.channels, known)
    logv = np.stack([np.where(known, lt.forward(n, np.nan_to_num(table.channels[n])), 0.0)
                     for n in names])
    pattern = detect_pattern(missing) if cfg["pattern"] == "auto" else cfg["pattern"]
    cal, val = _roles(pattern, known, cfg, rng)
    s_axis = slice_axis(missing)
    visible = np.flatnonzero(known.any(axis=tuple(i for i in range(known.ndim)
                                                  if i != s_axis))).tolist()
    reals = _realisations(pattern, known, missing, cfg, rng, cal, slices=visible, axis=s_axis)
    spec = make_spec(table, logv, known, int(cfg["rank"]))
    # Rank the axes by how well each interpolates the training realisations' hidden entries.
    probe = []
    for ctx, hide in reals:
        q = np.argwhere(hide & ~val & ~cal)
        _, _, it, av = features(spec, logv, ctx, q)
        probe.append((it, av, logv[(slice(None),) + tuple(q.T)].T))
    spec.order = rank_axes(*(np.concatenate(p) for p in zip(*probe)))
    digest = _digest(known, logv, cfg)
    t1 = time.perf_counter()
    _stage(progress, f"fitting the {cfg['members']}-member ensemble ({pattern} holes, "
                     f"{len(reals)} training realisations)")
    fitted = _fit(spec, logv, names, lt, reals, val, cal, cfg, workdir, f"{label}-{digest}",
                  progress)
    t_train = time.perf_counter() - t1
    levels = tuple(cfg["calibration_levels"])
    out = {n: np.array(table.channels[n]) for n in names}
    log_mean = {n: np.full(table.shape, np.nan) for n in names + ["total"]}
    sigma = {n: np.zeros(table.shape) for n in names + ["total"]}
    sigma_raw = {n: np.zeros(table.shape) for n in names + ["total"]}
    selection, network_log_total, parts = None, None, []

    def put(sel_mask, means, sig_raw, scale):
        """Write estimator means / raw sigma / scale (per name, (N,) or scalar) at sel."""
        q = np.argwhere(sel_mask)
        idx = tuple(q.T)
        for n in names:
            log_mean[n][idx] = means[n]
            sigma_raw[n][idx] = sig_raw[n]
            sigma[n][idx] = sig_raw[n] * scale[n]
            # Only NaN channels are replaced: a known channel of a partly known entry stays.
            vals = out[n][idx]
            hole = np.isnan(vals)
            vals[hole] = lt.inverse(n, means[n])[hole]
            out[n][idx] = vals
        log_mean["total"][idx] = means["total"]
        sigma_raw["total"][idx] = sig_raw["total"]
        sigma["total"][idx] = sig_raw["total"] * scale["total"]

    if pattern == "slice":
        axis = slice_axis(missing)
        axname = table.axis_names[axis]
        coords = spec.coords[axis]
        holes_sl = missing_slices(missing).get(axis, [])
        slice_holes = (_slice_mask(table.shape, holes_sl, axis) if holes_sl
                       else np.zeros(table.shape, bool)) & missing
        configs = gap_configs(visible, cfg["gap_runs"])
        _stage(progress, f"{axname}: {len(holes_sl)} missing slice(s); held-out "
                         f"configurations {[[float(table.axes[axis][i]) for i in h] for _, h in configs]}")
        res_by = {e: {n: [] for n in names + ["total"]} for e in SLICE_ESTIMATORS}
        sig_by = {n: [] for n in names + ["total"]}
        gap_by, pos_by, cfg_rows = [], [], []
        for k, (L, hidden) in enumerate(configs):
            rest = [i for i in visible if i not in hidden]
            _stage(progress, f"held-out fit {k + 1}/{len(configs)}: {axname} = "
                             f"{[float(table.axes[axis][i]) for i in hidden]} hidden")
            cal_fit = _fit(spec, logv, names, lt,
                           _realisations("slice", known, missing, cfg, rng, cal, slices=rest,
                                         axis=axis),
                           val, cal, cfg, workdir, f"{label}-cal{k}-{digest}", progress)
            hm = _slice_mask(table.shape, hidden, axis) & known
            ctx = known & ~hm
            q = np.argwhere(hm)
            est, sg = _slice_estimates(cal_fit, ctx, q, axis, table)
            truth = {n: logv[c][tuple(q.T)] for c, n in enumerate(names)}
            truth["total"] = np.log10(np.maximum(table.total()[tuple(q.T)], 1e-300))
            gaps = slice_gaps(ctx, q, coords, axis)
            row = {"run_length": L, "hidden": [float(table.axes[axis][i]) for i in hidden],
                   "gaps": sorted({round(float(x), 9) for x in gaps[np.isfinite(gaps)]}),
                   "median_abs_dex_total": {}}
            for e in SLICE_ESTIMATORS:
                for n in names + ["total"]:
                    res_by[e][n].append(est[e][n] - truth[n])
                row["median_abs_dex_total"][e] = float(np.median(np.abs(
                    est[e]["total"] - truth["total"])))
            for n in names + ["total"]:
                sig_by[n].append(sg[n])
            gap_by.append(gaps)
            pos_by.append(coords[q[:, axis]])
            cfg_rows.append(row)
        chosen, scores = "network", {}
        if configs:
            # Score on the configurations with the shortest runs: the geometry nearest to
            # one new value between two known ones.
            short = [k for k, (L, _) in enumerate(configs) if L == configs[0][0]]
            for e in SLICE_ESTIMATORS:
                scores[e] = float(np.median(np.abs(np.concatenate(
                    [res_by[e]["total"][k] for k in short]))))
            if cfg["slice_select"]:
                best = min(scores, key=scores.get)
                # The baseline stays unless another estimator beats it clearly.
                chosen = (best if scores[best] < (1 - cfg["slice_select_margin"])
                          * scores[SLICE_BASELINE] else SLICE_BASELINE)
        gap_all = np.concatenate(gap_by) if gap_by else np.zeros(0)
        pos_all = np.concatenate(pos_by) if pos_by else np.zeros(0)

        def raw_sigma(kind, sg_net):
            # 'constant': one sigma per channel and gap size (1 dex times the gap model's
            # scale); 'network': the ensemble's per-entry spread and variance heads.
            return np.ones_like(sg_net) if kind == "constant" else sg_net

        sigma_kinds = {}
        for kind in SLICE_SIGMAS:
            r = np.concatenate(res_by[chosen]["total"]) if configs else np.zeros(0)
            sg = raw_sigma(kind, np.concatenate(sig_by["total"])) if configs else np.zeros(0)
            m = fit_gap_scale(gap_all, r, sg, levels, cfg["gap_exponent_prior"],
                              tuple(cfg["gap_exponent_bounds"]))
            sigma_kinds[kind] = (interval_efficiency(r, sg * m.scale(gap_all)) if r.size
                                 else float("nan"))
        # The gap law is a law of interpolation error: an interpolant gets a constant sigma
        # times the law. The network's spread grows with the gap by itself (on JLODK Ye faster
        # than its error: the fitted exponent of the scale came out negative), and how it
        # behaves at a gap never held out cannot be checked, so it is used only when the
        # network fills; both held-out efficiencies are reported.
        sigma_kind = "network" if chosen == "network" or not configs else "constant"
        models, calib = {}, {}
        for n in names + ["total"]:
            r = np.concatenate(res_by[chosen][n]) if configs else np.zeros(0)
            sg = raw_sigma(sigma_kind, np.concatenate(sig_by[n])) if configs else np.zeros(0)
            models[n] = fit_gap_scale(gap_all, r, sg, levels, cfg["gap_exponent_prior"],
                                      tuple(cfg["gap_exponent_bounds"]))
            local = fit_local_gap_scale(pos_all, gap_all, r, sg, models[n],
                                        tuple(cfg["gap_exponent_bounds"]))
            if local is not None:
                models[n] = local
            sc = models[n].scale(gap_all, pos_all) if r.size else np.zeros(0)
            calib[n] = ens.calibration_summary(r, sg, 1.0)
            calib[n]["coverage_gap_scaled"] = ens.interval_coverage(r, sg * sc)
            calib[n]["efficiency_95"] = interval_efficiency(r, sg * sc)
            calib[n]["median_abs_residual"] = float(np.median(np.abs(r))) if r.size else None
            calib[n]["sigma_scale"] = float(np.median(sc)) if r.size else 1.0
            calib[n]["reliability"] = [a.tolist() for a in ens.reliability_curve(r, sg * sc)]
        cal_note = (f"held-out {axname} slices (networks that never had them as targets), "
                    f"sigma scale versus gap size fitted on them (gap_model)" if configs else
                    f"uncalibrated: no interior known {axname} slice to hold out")
        if slice_holes.any():
            q = np.argwhere(slice_holes)
            est, sg = _slice_estimates(fitted, known, q, axis, table)
            gaps = slice_gaps(known, q, coords, axis)
            pos = coords[q[:, axis]]
            scale = {n: models[n].scale(gaps, pos) for n in names + ["total"]}
            put(slice_holes, est[chosen], {n: raw_sigma(sigma_kind, v) for n, v in sg.items()},
                scale)
            if chosen != "network":
                network_log_total = np.full(table.shape, np.nan)
                network_log_total[tuple(q.T)] = est["network"]["total"]
            real_gaps = sorted({round(float(x), 9) for x in gaps[np.isfinite(gaps)]})
            parts.append({
                "what": f"{axname} = " + ", ".join(f"{table.axes[axis][i]:g}" for i in holes_sl)
                        + f" (whole slices, {int(slice_holes.sum())} entries)",
                "n": int(slice_holes.sum()), "estimator": chosen, "sigma": sigma_kind,
                "held_out": {"median_abs_dex_total": scores,
                             "configurations": cfg_rows},
                "gaps": real_gaps,
                "sigma_scale_total": [float(np.median(scale["total"][np.isclose(gaps, g)]))
                                      for g in real_gaps]})
        selection = {"axis": axname, "chosen": chosen, "baseline": SLICE_BASELINE,
                     "sigma": sigma_kind, "sigma_efficiency_held_out": sigma_kinds,
                     "margin": float(cfg["slice_select_margin"]), "scores": scores,
                     "configurations": cfg_rows,
                     "gap_model": {n: m.to_dict() for n, m in models.items()},
                     "gap_units": (f"log10 {axname}" if table.log_axes[axis] else axname)}
        rest_holes = missing & ~slice_holes
        if rest_holes.any():
            # Holes outside the missing slices: the network, sigma scaled as the slices'
            # smallest held-out gap (their geometry differs; score them in a separate run).
            q = np.argwhere(rest_holes)
            est, sg = _slice_estimates(fitted, known, q, axis, table)
            g0 = min((p["gap"] for p in models["total"].to_dict()["points"]), default=1.0)
            put(rest_holes, est["network"], {n: raw_sigma(sigma_kind, v) for n, v in sg.items()},
                {n: float(models[n].scale(g0)) for n in names + ["total"]})
            parts.append({"what": f"{int(rest_holes.sum())} other holes", "n":
                          int(rest_holes.sum()), "estimator": "network",
                          "held_out": "not scored: calibrated as the slices"})
    else:
        scales, calib = _calibrate(fitted, [(known & ~cal, cal)], table, levels)
        cal_note = "calibration split of known entries hidden with the holes' pattern"
        q = np.argwhere(missing)
        if len(q):
            mu, var = fitted.predict(known, q)
            means, sg, w = fitted.moments(mu, var)
            cal_sg = {n: scales[n].apply(sg[n]) for n in names}
            st = scales["total"]
            cal_sg["total"] = st.apply(
                total_sigma_from_channels({c: scales[c] for c in names}, sg, w,
                                          correlated=st.source == "channels_correlated")
                if st.source.startswith("channels") else sg["total"])
            put(missing, means, sg, {n: cal_sg[n] / np.maximum(sg[n], 1e-300) for n in sg})
        ct = calib["total"]
        parts.append({"what": f"{int(missing.sum())} {pattern} holes", "n": int(missing.sum()),
                      "estimator": "network",
                      "held_out": {"median_abs_dex_total": ct["median_abs_residual"],
                                   "coverage": ct["coverage_calibrated"],
                                   "efficiency_95": ct["efficiency_95"], "n": ct["n"]}})
    total = sum(out.values())
    report = {
        "source": table.source, "kind": table.kind, "shape": list(table.shape),
        "axes": {n: [float(a[0]), float(a[-1]), int(a.size)]
                 for n, a in zip(table.axis_names, table.axes)},
        "log_axes": list(table.log_axes), "channels": names,
        "n_entries": int(missing.size), "n_missing": int(missing.sum()),
        "pattern": pattern, "axis_order": {n: [table.axis_names[a] for a in spec.order[c]]
                                           for c, n in enumerate(names)},
        "log_floor": lt.floor, "zero_threshold_log10": lt.zero_threshold,
        "n_train_samples": fitted.n_train, "n_val_samples": fitted.n_val,
        "n_realisations": len(reals), "n_features": fitted.n_features,
        "config": cfg, "calibration": calib, "calibration_method": cal_note,
        "slice_selection": selection, "parts": parts,
        "train": {"epochs_run": fitted.result.result.epochs_run, "seconds": round(t_train, 1),
                  "best_val": fitted.result.result.best_val.tolist(),
                  "label": f"{label}-{digest}"},
        "seconds_total": round(time.perf_counter() - t0, 1),
    }
    return CompletionResult(out, total, log_mean, sigma, sigma_raw, missing, report,
                            network_log_total)


# --------------------------------------------------------------------------------------------
# outputs
def write_outputs(table: GridTable, result: CompletionResult, out_dir) -> dict:
    """Write the completed table in the input's format, the uncertainty and report.json.

    JLODK: `table/` (jlodk.write_jlodk; column 5 = column 3 + column 4), `uncertainty/` in the
    same folder layout with columns log10 rho, T, sigma_log10 bb, es, total [dex] (0 = known),
    `uncertainty.npz` (arrays sigma_*, log_mean_*, missing, axes). Text tables: `<name>`
    completed with extra sigma_log10 columns. Plus `report.json` and `reliability.png`.
    Returns {name: path}.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    if table.kind == "jlodk":
        jt = to_jlodk(table, result.channels)
        jlodk.write_jlodk(jt, out_dir / "table")
        paths["table"] = out_dir / "table"
        _write_jlodk_sigma(table, result, out_dir / "uncertainty")
        paths["uncertainty"] = out_dir / "uncertainty"
    else:
        name = Path(table.source).name if table.source else "table.txt"
        p = write_text_table(table, result.channels, out_dir / name,
                             sigma={n: result.sigma[n] for n in result.channels})
        paths["table"] = p
    arrays = {f"sigma_log10_{n}": v for n, v in result.sigma.items()}
    arrays.update({f"log10_mean_{n}": v for n, v in result.log_mean.items()})
    arrays["missing"] = result.missing
    for n, a in zip(table.axis_names, table.axes):
        arrays[f"axis_{n}"] = a
    npz = out_dir / "uncertainty.npz"

    def write_npz(tmp):
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    workdir_lib.atomic_write(npz, write_npz)
    paths["uncertainty_npz"] = npz
    sel = result.report.get("slice_selection")
    if sel:
        gm = {"axis": sel["axis"], "gap_units": sel["gap_units"], "chosen": sel["chosen"],
              "sigma": sel["sigma"], "gap_model": sel["gap_model"],
              "configurations": sel["configurations"],
              "filled": [{k: p[k] for k in ("what", "gaps", "sigma_scale_total") if k in p}
                         for p in result.report["parts"]]}
        paths["gap_model"] = workdir_lib.write_json(out_dir / "gap_model.json", gm)
        paths["gap_model_plot"] = plot_gap_model(gm, out_dir / "gap_model.png")
    result.report["uncertainty_meaning"] = uncertainty_note(result.report)
    curves = {f"{n} (calibration split)": (np.asarray(c["reliability"][0]),
                                           np.asarray(c["reliability"][1]))
              for n, c in result.report["calibration"].items()}
    paths["reliability"] = ens.plot_reliability(curves, out_dir / "reliability.png",
                                                "completion: calibrated sigma")
    result.report["outputs"] = {k: str(v) for k, v in paths.items()}
    result.report["outputs"]["report"] = str(out_dir / "report.json")
    paths["report"] = workdir_lib.write_json(out_dir / "report.json", result.report)
    return paths


def uncertainty_note(rep: dict) -> str:
    """What the written sigma means, with the held-out numbers behind it (a few sentences)."""
    cal = rep["calibration"]["total"]
    lv = rep["config"]["calibration_levels"]
    sel = rep.get("slice_selection")
    cov = cal.get("coverage_gap_scaled" if sel else "coverage_calibrated", {})
    z = float(ens.z_of_level([lv[0]])[0])
    text = (f"sigma = 1-sigma uncertainty of log10 kappa [dex] (0 = a known entry, copied "
            f"from the input). Its scale is fitted so that kappa lies within a factor "
            f"10**({z:.2f} sigma) of the table value for {lv[0]:.0%} of known entries hidden "
            f"like the holes. ")
    if cov:
        text += (f"On those held-out entries (the ones the scale was fitted on) the factor "
                 f"10**({z:.2f} sigma) covered {cov.get('0.95', float('nan')):.1%} and the "
                 f"factor 10**sigma covered {cov.get('0.68', float('nan')):.1%}; a Gaussian "
                 f"would give 68 %, so read sigma through the 95 % interval. Median 95 % "
                 f"half-width / median |error| = "
                 f"{cal.get('efficiency_95', float('nan')):.2f}. ")
    if sel:
        g = sel["gap_model"]["total"]
        gaps = [p["gap"] for p in g["points"]]
        filled = [x for p in rep.get("parts", []) for x in p.get("gaps", [])]
        law = (f"the scale of the nearest held-out slices times (gap / their gap)**"
               f"{g['local_exponent']:.3g} ({g['local_exponent_source']})"
               if g.get("kind") == "local" else
               f"{g['amplitude']:.3g} * gap**{g['exponent']:.3g} (exponent: "
               f"{g['exponent_source']})")
        text += (f"Whole missing {sel['axis']} slices: filled by {sel['chosen']}; the sigma "
                 f"scale follows {law}, gap = sqrt(d_lo * d_hi) in {sel['gap_units']} to "
                 f"the nearest known slices, measured at gaps "
                 f"{_short(gaps)}; the filled slices have gaps "
                 f"{_short(filled)}, so their intervals are extrapolated with "
                 f"that law (see gap_model.json / gap_model.png). ")
    return text + "Details: report.json."


def plot_gap_model(gm: dict, path) -> Path:
    """Log-log plot of the held-out sigma scale per gap size, the fitted law and the filled
    gaps (gm: the gap_model.json dict). Returns the path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(4.6, 3.6))
    allg = [p["gap"] for m in gm["gap_model"].values() for p in m["points"]]
    allg += [g for f in gm["filled"] for g in f.get("gaps", [])]
    if allg:
        xs = np.geomspace(min(allg) / 1.3, max(allg) * 1.3, 50)
        for k, (n, m) in enumerate(gm["gap_model"].items()):
            col = f"C{k}"
            pts = m["points"]
            ax.plot([p["gap"] for p in pts], [p["scale"] for p in pts], "o", color=col,
                    label=f"{n}: held out")
            ax.plot(xs, m["amplitude"] * xs ** m["exponent"], "-", color=col, lw=1,
                    label=f"{n}: {m['amplitude']:.3g} gap^{m['exponent']:.2g}")
        for f in gm["filled"]:
            for g, sc in zip(f.get("gaps", []), f.get("sigma_scale_total", [])):
                ax.plot([g], [sc], "k*", ms=10)
        ax.plot([], [], "k*", label="filled slices (total)")
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel(f"gap sqrt(d_lo d_hi) [{gm['gap_units']}]")
    ax.set_ylabel(f"sigma scale ({gm['sigma']} sigma)")
    ax.set_title(f"{gm['axis']} slices: estimator {gm['chosen']}", fontsize=9)
    ax.legend(fontsize=6)
    fig.tight_layout()
    return ens.save_figure(fig, path)


def _write_jlodk_sigma(table: GridTable, result: CompletionResult, root) -> None:
    root = Path(root)
    lr, tk = table.axes[2], table.axes[3]
    grid_cols = [f"{a:10.2f}{b:21.1f}" for a in lr.tolist() for b in tk.tolist()]
    readme = ("Per-entry uncertainty of log10 kappa [dex] for the completed JLODK table in "
              "../table: columns log10 rho, T [K], sigma bb, sigma es, sigma total.\n"
              + uncertainty_note(result.report) + "\n")
    root.mkdir(parents=True, exist_ok=True)
    workdir_lib.write_text(root / "README.txt", readme)
    for i, ye in enumerate(table.axes[0].tolist()):
        ye_s = jlodk.format_label(ye, 2)
        folder = root / f"Ye{ye_s}"
        folder.mkdir(parents=True, exist_ok=True)
        for j, t in enumerate(table.axes[1].tolist()):
            t_s = jlodk.format_label(t, 1)
            lines = [f"# Ye = {ye_s},  time = {t_s}day",
                     "# [1] Density in Logspace [g cm^-3]", "# [2] Temperature [K]",
                     "# [3] sigma log10 Bound-Bound Opacity [dex]",
                     "# [4] sigma log10 Electron Scatter Opacity [dex]",
                     "# [5] sigma log10 Planck Mean Opacity [dex]"]
            s = [result.sigma[n][i, j].ravel().tolist() for n in ("bb", "es", "total")]
            lines += [g + f"{a:21.6E}{b:21.6E}{c:26.6E}" for g, a, b, c in zip(grid_cols, *s)]
            workdir_lib.write_text(folder / f"Uncertainty_Log10_Ye{ye_s}_Time{t_s}.txt",
                                  "\n".join(lines) + "\n")


# --------------------------------------------------------------------------------------------
# evaluation: hide known entries and predict them
def scenario_masks(scenario: str, known: np.ndarray, seed: int = 0, fraction: float = 0.2):
    """[(name, hidden mask)] for an evaluation scenario, drawn among the known entries.

    random20: a random `fraction` of the entries; rows: whole temperature rows (all densities
    at one temperature of one file, interior temperatures only so that interpolation along T
    is defined) with probability `fraction`; ye_slice: one mask per interior slice of the
    first axis (train on the others, predict it).
    """
    rng = np.random.default_rng([int(seed), 23])
    if scenario == "random20":
        return [("random20", draw_pattern("random", known, fraction, rng))]
    if scenario == "rows":
        elig = known.copy()
        elig[..., 0] = False
        elig[..., -1] = False
        return [("rows", draw_pattern("rows", elig, fraction, rng))]
    if scenario == "ye_slice":
        return [(f"ye_slice_{i}", draw_pattern("slice", known, 0, rng, slice_index=i))
                for i in range(1, known.shape[0] - 1)]
    raise ValueError(f"unknown evaluation scenario {scenario!r}; allowed: {SCENARIOS}")


def _rel_summary(pred, true) -> dict:
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.abs(pred / true - 1.0)
    rel = rel[np.isfinite(rel)]
    if rel.size == 0:
        return {"n": 0}
    return {"median": float(np.median(rel)), "p90": float(np.percentile(rel, 90)),
            "mean": float(np.mean(rel)), "n": int(rel.size)}


def _dex_summary(pred_log, true_log) -> dict:
    d = np.abs(np.asarray(pred_log) - true_log)
    return {"median": float(np.median(d)), "rms": float(np.sqrt(np.mean(d ** 2)))}


def evaluate(table: GridTable, scenarios=SCENARIOS, cfg=None, out_dir=None, seed: int = 0,
             fraction: float = 0.2, progress: bool = False) -> dict:
    """Hide known entries by scenario, complete, and score model vs baselines on the holes.

    Metrics on the total (sum of channels; JLODK column 5) and per channel: relative error
    |pred / true - 1| (median, p90, mean) and |log10 error| [dex]; for the model also the
    coverage of its 68 % / 95 % intervals on the holes (sigma recalibrated on a calibration
    split of the *visible* entries only). Baselines, on the same holes and built from the
    same visible entries: linear interpolation of log10 kappa along the last axis (T) within
    each row; for slices the mean of log10 kappa of the two neighbouring slices; and, as an
    extra reference, interpolation along the most reliable axis the model ranked first.

    Writes `evaluation.json` and reliability / error plots to out_dir when given.
    """
    completion_config(cfg)   # a bad config fails before any fit
    names = list(table.channels)
    known0 = ~table.missing()
    truth_log = {}
    lt = LogTransform.fit(table.channels, known0)
    for n in names:
        truth_log[n] = lt.forward(n, np.nan_to_num(table.channels[n]))
    true_total = table.total()
    truth_log["total"] = np.log10(np.maximum(true_total, 1e-300))
    coords = table.feature_axes()
    results = {"source": table.source, "shape": list(table.shape), "scenarios": {}}
    curves = {}
    for sc in scenarios:
        for name, hide in scenario_masks(sc, known0, seed, fraction):
            hide = hide & known0
            visible = known0 & ~hide
            masked = GridTable(table.axis_names, table.axes,
                               {n: np.where(visible, table.channels[n], np.nan) for n in names},
                               table.log_axes, table.kind, table.source)
            logging.info("evaluate %s: %d hidden entries", name, int(hide.sum()))
            res = complete(masked, cfg, out_dir and Path(out_dir) / "work", progress,
                           label=f"eval-{name}")
            idx = tuple(np.argwhere(hide).T)
            entry = {"n_hidden": int(hide.sum()), "pattern": res.report["pattern"],
                     "train": res.report["train"], "axis_order": res.report["axis_order"],
                     "calibration_split": {n: {k: v for k, v in c.items() if k != "reliability"}
                                           for n, c in res.report["calibration"].items()},
                     "methods": {}}
            pred_total = res.total[idx]
            model = {"total": _rel_summary(pred_total, true_total[idx]),
                     "total_dex": _dex_summary(np.log10(np.maximum(pred_total, 1e-300)),
                                               truth_log["total"][idx])}
            for n in names:
                tv = table.channels[n][idx]
                pos = tv > 0
                model[n] = _rel_summary(res.channels[n][idx][pos], tv[pos])
                model[n]["exact_zero_recovered"] = (float(np.mean(res.channels[n][idx][~pos]
                                                                  == 0)) if np.any(~pos)
                                                    else None)
            resid = res.log_mean["total"][idx] - truth_log["total"][idx]
            model["coverage_holes"] = ens.interval_coverage(resid, res.sigma["total"][idx])
            model["coverage_holes_raw"] = ens.interval_coverage(resid, res.sigma_raw["total"][idx])
            model["efficiency_95"] = interval_efficiency(resid, res.sigma["total"][idx])
            # The factor the 95 % half-widths would need to cover exactly 95 % of these holes:
            # 1 = right, 2 = twice too narrow, 0.5 = twice too wide.
            model["needed_scale_95"] = ens.fit_sigma_scale(resid, res.sigma["total"][idx],
                                                           levels=(0.95,))
            model["coverage_holes_bb"] = ens.interval_coverage(
                res.log_mean[names[0]][idx] - truth_log[names[0]][idx], res.sigma[names[0]][idx])
            # Per channel, on entries whose true value is positive (an exact zero has no
            # log10 error to speak of): coverage, efficiency, median |error| [dex].
            model["per_channel"] = {}
            for n in names:
                pos = table.channels[n][idx] > 0
                r_n = (res.log_mean[n][idx] - np.log10(np.where(pos, table.channels[n][idx],
                                                                1.0)))[pos]
                s_n = res.sigma[n][idx][pos]
                model["per_channel"][n] = {
                    "n": int(pos.sum()), "median_abs_dex": float(np.median(np.abs(r_n))),
                    "coverage": ens.interval_coverage(r_n, s_n),
                    "efficiency_95": interval_efficiency(r_n, s_n)}
            entry["methods"]["model"] = model
            entry["slice_selection"] = res.report.get("slice_selection")
            entry["parts"] = res.report.get("parts")
            if res.network_log_total is not None:
                nl = res.network_log_total[idx]
                entry["methods"]["model_network_only"] = {
                    "total": _rel_summary(10.0 ** nl, true_total[idx]),
                    "total_dex": _dex_summary(nl, truth_log["total"][idx])}
            curves[name] = ens.reliability_curve(resid, res.sigma["total"][idx])
            # Baselines on the total's log10 from the visible entries only.
            lv = np.where(visible, truth_log["total"], np.nan)
            base = {}
            b_t = interp_along_axis(lv, visible, table.axes[-1], axis=-1, query=hide)
            base["baseline_interp_T"] = b_t[idx]
            if name.startswith("ye_slice"):
                i = int(name.rsplit("_", 1)[1])
                b_s = neighbour_slice_mean(lv, i, axis=0)
                full = np.full(table.shape, np.nan)
                full[i] = b_s
                base["baseline_neighbour_slice_mean"] = full[idx]
            best_axis = table.axis_names.index(res.report["axis_order"][names[0]][0])
            b_a = interp_along_axis(lv, visible, coords[best_axis], axis=best_axis, query=hide)
            base[f"reference_interp_{table.axis_names[best_axis]}"] = b_a[idx]
            for bn, bl in base.items():
                ok = np.isfinite(bl)
                entry["methods"][bn] = {
                    "total": _rel_summary(10.0 ** bl[ok], true_total[idx][ok]),
                    "total_dex": _dex_summary(bl[ok], truth_log["total"][idx][ok]),
                    "n_defined": int(ok.sum())}
            ref_name = ("baseline_neighbour_slice_mean" if name.startswith("ye_slice")
                        else "baseline_interp_T")
            ref = entry["methods"][ref_name]["total"]
            if ref.get("n"):
                entry["target"] = {
                    "baseline": ref_name,
                    "ratio_median_rel_error": model["total"]["median"] / ref["median"],
                    "ratio_median_abs_dex": (model["total_dex"]["median"]
                                             / entry["methods"][ref_name]["total_dex"]["median"]),
                    "coverage_95": model["coverage_holes"]["0.95"],
                    "coverage_95_target": [0.90, 0.98],
                    "efficiency_95": model["efficiency_95"], "efficiency_target": 4.0}
                if name.startswith("ye_slice"):
                    entry["target"].update(
                        no_worse_than_baseline=bool(
                            model["total"]["median"] <= ref["median"]
                            and model["total_dex"]["median"]
                            <= entry["methods"][ref_name]["total_dex"]["median"]),
                        needed_scale_95=model["needed_scale_95"],
                        needed_scale_target=[0.5, 2.0])
            results["scenarios"][name] = entry
            if out_dir:
                workdir_lib.write_json(Path(out_dir) / "evaluation.json", results)
    if out_dir:
        ens.plot_reliability(curves, Path(out_dir) / "reliability_holes.png",
                             "coverage on the hidden entries (total)")
        _plot_errors(results, Path(out_dir) / "errors.png")
    return results


def _plot_errors(results: dict, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    scen = list(results["scenarios"])
    methods = sorted({m for s in scen for m in results["scenarios"][s]["methods"]})
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(scen), 3.4))
    w = 0.8 / max(len(methods), 1)
    for k, m in enumerate(methods):
        vals = [results["scenarios"][s]["methods"].get(m, {}).get("total", {}).get("median",
                                                                                   np.nan)
                for s in scen]
        ax.bar(np.arange(len(scen)) + k * w, vals, w, label=m)
    ax.set_yscale("log")
    ax.set_xticks(np.arange(len(scen)) + 0.4 - w / 2)
    ax.set_xticklabels(scen, fontsize=8)
    ax.set_ylabel("median |pred/true - 1| (total)")
    ax.legend(fontsize=6)
    fig.tight_layout()
    ens.save_figure(fig, path)


# --------------------------------------------------------------------------------------------
# command line driver (bin/complete)
def add_grid_values(table: GridTable, add: Optional[Dict[str, Sequence]]) -> GridTable:
    """Apply bin/complete's --add-ye/--add-time/--add-log10-rho/--add-temperature (JLODK) and
    --add=AXIS=v1:v2 (any table) to `table`; values along one axis per run.

    Args:
      add: {flag name without '--': values} (strings or floats), e.g. {"add-ye": ["0.15"]}.
    Raises:
      ValueError naming the flag (not a number, outside the known range, a repeated value,
      an axis the table lacks, or values on more than one axis).
    """
    per_axis: Dict[str, tuple] = {}
    for flag, vals in (add or {}).items():
        if not vals:
            continue
        if flag == "add":
            for name, v in parse_add(vals, table).items():
                per_axis.setdefault(name, (f"add={name}", []))[1].extend(v)
            continue
        if flag not in ADD_FLAGS:
            raise ValueError(f"unknown flag --{flag}; allowed: --add, "
                             + ", ".join(f"--{f}" for f in ADD_FLAGS))
        if table.kind != "jlodk":
            raise ValueError(f"--{flag} applies to JLODK folders; for a text table use "
                             f"--add=AXIS=v1:v2 with AXIS one of {list(table.axis_names)}")
        per_axis.setdefault(ADD_FLAGS[flag], (flag, []))[1].extend(
            cli.numbers(flag, vals, positive=False))
    if len(per_axis) > 1:
        raise ValueError(f"new grid values on {len(per_axis)} axes ({sorted(per_axis)}): add "
                         "values along one axis per run, then run bin/complete again on its "
                         "output table for the next axis")
    for name, (flag, vals) in per_axis.items():
        table = insert_axis_values(table, name, vals, flag)
    return table


def run(config, input_path, output, mask=None, scenarios: Sequence[str] = (),
        progress: bool = False, add: Optional[Dict[str, Sequence]] = None) -> dict:
    """Complete a table (or evaluate on it) as configured by configs/complete.py.

    Args:
      config: ConfigDict with `seed`, `completion` (see completion_config), `table.value_columns`
        (text tables; comma separated, default the last column) and `evaluate.fraction`.
      input_path: JLODK root folder or text table. output: output folder (created).
      mask: optional .npy of the table's shape, True = missing. scenarios: if given (subset of
        SCENARIOS), hide known entries and score instead of completing.
      add: new grid values, {flag: values} as in `add_grid_values` (after the mask, which
        applies to the table as read).
    Returns:
      The report (completion) or the evaluation dict; both are also written under `output`.
    """
    bad = [s for s in scenarios if s not in SCENARIOS]
    if bad:
        raise ValueError(f"--evaluate: unknown evaluation scenario(s) {bad}; allowed: "
                         f"{list(SCENARIOS)}")
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--output {out}: exists and is not a folder")
    if not out.parent.exists():
        raise FileNotFoundError(f"--output {out}: parent folder {out.parent} does not exist")
    vcols = [v.strip() for v in str(config.table.value_columns).split(",") if v.strip()]
    table = read_table(input_path, mask, vcols)
    if any(add.values() if add else ()):
        if scenarios:
            raise ValueError("--evaluate scores hidden known entries; new grid values (--add*) "
                             "belong to a completion run: give one or the other")
        table = add_grid_values(table, add)
    ccfg = dict(config.completion.to_dict(), seed=int(config.seed))
    if not scenarios and not table.missing().any():
        raise ValueError(f"{input_path}: no missing entries (no NaN and no --mask); nothing to "
                         "complete (use --evaluate to score the model on hidden entries)")
    out.mkdir(exist_ok=True)
    try:
        if scenarios:
            return evaluate(table, scenarios, ccfg, out, seed=int(config.seed),
                            fraction=float(config.evaluate.fraction), progress=progress)
        res = complete(table, ccfg, out / "work", progress)
        write_outputs(table, res, out)
        return res.report
    except BaseException:
        workdir_lib.remove_empty_dirs(out)     # a run that failed early leaves no empty folders
        raise


def _short(values, keep: int = 6) -> str:
    """A list of numbers for a summary line (4 significant digits; long ones elided)."""
    v = [f"{float(x):.4g}" for x in values]
    if len(v) > keep:
        v = v[:3] + ["..."] + v[-2:] + [f"({len(values)} values)"]
    return "[" + ", ".join(v) + "]"


def summary_text(rep: dict) -> str:
    """A few human-readable lines from a completion report or an evaluation dict."""
    lines = []
    if "scenarios" in rep:
        for name, e in rep["scenarios"].items():
            parts = [f"{m}: median rel err {v['total'].get('median', float('nan')):.4g}"
                     for m, v in e["methods"].items()]
            m = e["methods"]["model"]
            cov = m["coverage_holes"]
            est = ", ".join(f"{p['estimator']}" for p in (e.get("parts") or []))
            lines.append(f"{name} ({e['n_hidden']} hidden; filled by {est}): " + "; ".join(parts)
                         + f"; coverage 68%={cov['0.68']:.3f} 95%={cov['0.95']:.3f}; "
                         f"efficiency {m['efficiency_95']:.2f}; needed 95 % scale "
                         f"{m['needed_scale_95']:.2f}")
        return "\n".join(lines)
    lines.append(f"filled {rep['n_missing']} of {rep['n_entries']} entries (pattern "
                 f"{rep['pattern']}) in {rep['seconds_total']} s")
    for p in rep.get("parts", []):
        lines.append(f"  {p['what']}: filled by {p['estimator']}")
        h = p["held_out"]
        if isinstance(h, str):
            lines.append(f"    held-out score: {h}")
        elif "configurations" in h:
            for c in h["configurations"]:
                sc = ", ".join(f"{k} {v:.3g}" for k, v in c["median_abs_dex_total"].items())
                lines.append(f"    held out {_short(c['hidden'])} (gaps {_short(c['gaps'])}): "
                             f"median |error| of log10 total [dex]: {sc}")
            lines.append(f"    sigma scale at the filled gaps {_short(p['gaps'])}: "
                         f"{_short(p['sigma_scale_total'])} ({p['sigma']} sigma)")
        else:
            cov = h["coverage"]
            lines.append(f"    held-out ({h['n']} known entries hidden alike): median |error| "
                         f"{h['median_abs_dex_total']:.3g} dex; coverage 68 % {cov['0.68']:.3f}, "
                         f"95 % {cov['0.95']:.3f}; efficiency {h['efficiency_95']:.2f}")
    sel = rep.get("slice_selection")
    if sel:
        g = sel["gap_model"]["total"]
        if g.get("kind") == "local":
            lines.append(f"gap model (total): per position, scale of the nearest held-out "
                         f"slices x (gap / their gap)^{g['local_exponent']:.3g} "
                         f"({g['local_exponent_source']}; gap in {sel['gap_units']})")
        else:
            lines.append(f"gap model (total): sigma scale = {g['amplitude']:.3g} * gap^"
                         f"{g['exponent']:.3g} ({g['exponent_source']}; gap in "
                         f"{sel['gap_units']})")
    lines += [f"{k}: {v}" for k, v in rep.get("outputs", {}).items()]
    return "\n".join(lines)
