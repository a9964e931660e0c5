"""JLODK Planck-mean opacity tables (Tanaka et al. 2020; ``read_jlodk``, ``write_jlodk``).

Folders ``Ye<Ye>/`` of ``Planck_Mean_Opacity_Ye<Ye>_Time<days>.txt`` files with 5 columns
(log10 rho [g/cm^3], T [K], bb, es, total [cm^2/g]). The reader raises
:class:`~opacity_jax.errors.DataFormatError` naming the file, the 1-based line and the field, and
``FileNotFoundError`` naming a missing folder; every file is written atomically.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Optional

import numpy as np

from opacity_jax.data.parsing import (check_nonnegative, first_bad_opacity, parse_rows,
                                      read_text_lines, repr_number)
from opacity_jax.errors import DataFormatError
from opacity_jax.train.workdir import write_text

__all__ = ["JLODK_COLUMNS", "JlodkTable", "format_label", "read_jlodk", "write_jlodk"]

JLODK_COLUMNS = ("log10_rho", "temperature_k", "bb", "es", "total")


def _decimals(values: np.ndarray, minimum: int) -> int:
    """Fewest fixed-point decimals (>= minimum) that reproduce every value exactly."""
    values = np.asarray(values, dtype=np.float64).ravel()
    for d in range(minimum, 18):
        if all(float(f"{v:.{d}f}") == v for v in values.tolist()):
            return d
    return 17


@dataclasses.dataclass
class JlodkTable:
    """JLODK Planck-mean opacities on a (Ye, time, density, temperature) grid.

    Attributes:
      ye: (nY,) electron fractions, increasing.
      time_days: (nt,) times since merger [days], increasing.
      log10_rho: (nRho,) log10 of mass density [g/cm^3], increasing.
      temperature_k: (nT,) temperatures [K], increasing.
      kappa_bb: (nY, nt, nRho, nT) float64 bound-bound (expansion) Planck mean [cm^2/g].
      kappa_es: (nY, nt, nRho, nT) float64 electron-scattering opacity [cm^2/g] (exact zeros
        occur at low T).
      kappa_total: (nY, nt, nRho, nT) float64 total Planck mean = bb + es [cm^2/g].
        All three may hold NaN for missing entries when read with allow_nan=True.
      source: (nY, nt) nested tuple of the files read, () for a table built in memory.
      root: the folder read, or None.
    """

    ye: np.ndarray
    time_days: np.ndarray
    log10_rho: np.ndarray
    temperature_k: np.ndarray
    kappa_bb: np.ndarray
    kappa_es: np.ndarray
    kappa_total: np.ndarray
    source: tuple = ()
    root: Optional[str] = None

    def __post_init__(self):
        for name in ("ye", "time_days", "log10_rho", "temperature_k"):
            arr = np.asarray(getattr(self, name), dtype=np.float64)
            if arr.ndim != 1:
                raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
            setattr(self, name, arr)
        for name in ("kappa_bb", "kappa_es", "kappa_total"):
            arr = np.asarray(getattr(self, name), dtype=np.float64)
            if arr.shape != self.shape:
                raise ValueError(f"{name} has shape {arr.shape}, axes imply {self.shape}")
            setattr(self, name, arr)

    @property
    def shape(self) -> tuple:
        """(nY, nt, nRho, nT)."""
        return (self.ye.size, self.time_days.size, self.log10_rho.size, self.temperature_k.size)


_NUM = r"(\d+(?:\.\d*)?)"
_YE_DIR = re.compile(rf"^Ye{_NUM}$")
_JLODK_FILE = re.compile(rf"^Planck_Mean_Opacity_Ye{_NUM}_Time{_NUM}\.txt$")
_JLODK_HEADER = re.compile(
    r"Ye\s*=\s*([+-]?[\d.]+(?:[eE][+-]?\d+)?)\s*,\s*time\s*=\s*([+-]?[\d.]+(?:[eE][+-]?\d+)?)",
    re.IGNORECASE)


def _read_jlodk_file(path, allow_nan: bool, total_rtol: float):
    """Parse one JLODK file -> (values (n, 5), line numbers (n,), header (ye, t) or None)."""
    lines = read_text_lines(path)
    rows, header = [], None
    for lineno, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            m = _JLODK_HEADER.search(stripped)
            if m and header is None:
                header = (float(m[1]), float(m[2]), lineno)
            continue
        rows.append((lineno, line))
    if not rows:
        raise DataFormatError("no data rows", path=path, line=len(lines), field="rows")
    values = parse_rows(path, rows, JLODK_COLUMNS, nan_ok=(2, 3, 4) if allow_nan else ())
    line_numbers = np.array([r[0] for r in rows], dtype=np.int64)
    check_nonnegative(path, values, line_numbers, JLODK_COLUMNS, [2, 3, 4])
    bb, es, total = values[:, 2], values[:, 3], values[:, 4]
    expect = bb + es
    scale = np.maximum(np.abs(total), np.abs(expect))
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.where(scale > 0, np.abs(total - expect) / np.where(scale > 0, scale, 1.0), 0.0)
    rel = np.where(np.isnan(rel), 0.0, rel)  # holes (allow_nan) are not mismatches
    bad = rel > total_rtol
    if bad.any():
        w = int(np.argmax(rel))
        raise DataFormatError(
            f"total != bb + es beyond relative tolerance {total_rtol:g} on {int(bad.sum())} "
            f"row(s); worst mismatch: relative {rel[w]:.3g} (total={repr_number(total[w])}, "
            f"bb + es={repr_number(expect[w])})", path=path, line=int(line_numbers[w]), field="total")
    return values, line_numbers, header


def _jlodk_grid(path, values, line_numbers):
    """(log10_rho (nRho,), temperature_k (nT,)) from the first file; rows run T fastest."""
    lr, temp = values[:, 0], values[:, 1]
    starts = np.flatnonzero(np.r_[True, lr[1:] != lr[:-1]])
    n_t = int(starts[1]) if starts.size > 1 else lr.size
    for b, s in enumerate(starts):
        length = (int(starts[b + 1]) if b + 1 < starts.size else lr.size) - int(s)
        if length != n_t:
            raise DataFormatError(f"block of log10_rho = {repr_number(lr[s])} has {length} rows, the "
                                  f"first block has {n_t}; rows must form a log10_rho x T grid",
                                  path=path, line=int(line_numbers[s]), field="log10_rho")
    log10_rho, temperature = lr[starts], temp[:n_t]
    for name, axis, idx in (("log10_rho", log10_rho, starts), ("temperature_k", temperature,
                                                               np.arange(n_t))):
        dec = np.flatnonzero(np.diff(axis) <= 0)
        if dec.size:
            r = int(idx[dec[0] + 1])
            raise DataFormatError(f"{name} not strictly increasing", path=path,
                                  line=int(line_numbers[r]), field=name)
    mismatch = np.flatnonzero(temp != np.tile(temperature, starts.size))
    if mismatch.size:
        r = int(mismatch[0])
        raise DataFormatError(f"temperature {repr_number(temp[r])} K, expected "
                              f"{repr_number(temperature[r % n_t])} (same T sequence in every density "
                              "block)", path=path,
                              line=int(line_numbers[r]), field="temperature_k")
    return log10_rho, temperature


def _discover_jlodk(root: Path) -> dict:
    """{ye: {time: path}} from the folder layout."""
    found = {}
    ye_dirs = {}
    for d in sorted(root.iterdir()):
        m = _YE_DIR.match(d.name)
        if not (m and d.is_dir()):
            continue
        ye = float(m[1])
        if ye in ye_dirs:
            raise DataFormatError(f"Ye = {ye} appears twice ({ye_dirs[ye].name}, {d.name})",
                                  path=d, field="Ye")
        ye_dirs[ye] = d
        times = {}
        for p in sorted(d.iterdir()):
            fm = _JLODK_FILE.match(p.name)
            if not (fm and p.is_file()):
                continue
            if float(fm[1]) != ye:
                raise DataFormatError(f"file name says Ye = {fm[1]} but it lies in {d.name}",
                                      path=p, field="Ye")
            t = float(fm[2])
            if t in times:
                raise DataFormatError(f"time {t} days appears twice (also {times[t].name})",
                                      path=p, field="time")
            times[t] = p
        found[ye] = times
    if not found:
        raise DataFormatError("no Ye<value> folders with Planck_Mean_Opacity_Ye*_Time*.txt files",
                              path=root, field="Ye")
    return found


def read_jlodk(root, *, allow_nan: bool = False, total_rtol: float = 1e-6) -> JlodkTable:
    """Read a JLODK Planck-mean opacity table tree.

    Layout: ``root/Ye<Ye>/Planck_Mean_Opacity_Ye<Ye>_Time<days>.txt``; Ye and times are sorted
    numerically. Each file holds ``#`` header lines and rows of 5 columns: log10 rho [g/cm^3],
    T [K], bound-bound, electron-scattering and total Planck-mean opacity [cm^2/g], with T
    running fastest (30 x 50 = 1500 rows in the published table).

    Args:
      root: the folder holding the Ye* folders.
      allow_nan: accept 'nan' in the three opacity columns (tables with holes); default False.
      total_rtol: relative tolerance of the check total == bb + es (published data: ~4e-10).
    Returns:
      JlodkTable with kappa_* of shape (nY, nt, nRho, nT) float64 [cm^2/g].
    Raises:
      FileNotFoundError: missing root.
      DataFormatError (file, line, field): wrong column count, non-numeric, NaN (unless
        allow_nan) or Inf, negative opacity, total != bb + es (reports the worst row), a grid
        differing from the first file's, header Ye/time contradicting the file name, and
        missing (Ye, time) files (listed).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no such directory: {root}")
    found = _discover_jlodk(root)
    ye = sorted(found)
    times = sorted(set().union(*(set(v) for v in found.values())))
    missing = [(y, t) for y in ye for t in times if t not in found[y]]
    if missing:
        listing = "; ".join(f"Ye={y:g} t={t:g}d" for y, t in missing[:50])
        more = f" (+{len(missing) - 50} more)" if len(missing) > 50 else ""
        raise DataFormatError(f"missing {len(missing)} of {len(ye) * len(times)} (Ye, time) "
                              f"files: {listing}{more}", path=root, field="files")

    shape = None
    ref = None
    out = {}
    for i, y in enumerate(ye):
        for j, t in enumerate(times):
            path = found[y][t]
            values, line_numbers, header = _read_jlodk_file(path, allow_nan, total_rtol)
            if header is not None:
                for name, claimed, actual in (("Ye", header[0], y), ("time", header[1], t)):
                    if not math.isclose(claimed, actual, rel_tol=1e-9, abs_tol=1e-12):
                        raise DataFormatError(f"header says {name} = {claimed:g}, file name says "
                                              f"{actual:g}", path=path, line=header[2],
                                              field=name)
            if ref is None:
                log10_rho, temperature = _jlodk_grid(path, values, line_numbers)
                ref = (path, values[:, :2])
                shape = (len(ye), len(times), log10_rho.size, temperature.size)
                out = {k: np.empty(shape, dtype=np.float64) for k in ("bb", "es", "total")}
            else:
                ref_path, ref_grid = ref
                if values.shape[0] != ref_grid.shape[0]:
                    raise DataFormatError(f"{values.shape[0]} data rows, {ref_path} has "
                                          f"{ref_grid.shape[0]}", path=path,
                                          line=int(line_numbers[-1]), field="rows")
                diff = values[:, :2] != ref_grid
                if diff.any():
                    r, c = np.unravel_index(int(np.argmax(diff)), diff.shape)
                    raise DataFormatError(f"{JLODK_COLUMNS[c]} {repr_number(values[r, c])} differs "
                                          f"from {repr_number(ref_grid[r, c])} in {ref_path} (grids "
                                          "must agree)",
                                          path=path, line=int(line_numbers[r]),
                                          field=JLODK_COLUMNS[c])
            for k, col in (("bb", 2), ("es", 3), ("total", 4)):
                out[k][i, j] = values[:, col].reshape(shape[2:])
    source = tuple(tuple(str(found[y][t]) for t in times) for y in ye)
    return JlodkTable(ye=np.asarray(ye), time_days=np.asarray(times), log10_rho=log10_rho,
                      temperature_k=temperature, kappa_bb=out["bb"], kappa_es=out["es"],
                      kappa_total=out["total"], source=source, root=str(root))


def format_label(x: float, minimum_decimals: int) -> str:
    """x in fixed point with the fewest decimals (>= minimum_decimals) that reproduce it: the
    Ye and time labels of folder and file names ('0.15', '1.5')."""
    return f"{x:.{_decimals([x], minimum_decimals)}f}"



def write_jlodk(table: JlodkTable, root, *, total_rtol: float = 1e-6,
                newline: str = "\n") -> list:
    """Write ``table`` in the JLODK file layout under ``root`` (one atomic write per file).

    Files are ``root/Ye<Ye>/Planck_Mean_Opacity_Ye<Ye>_Time<days>.txt`` (Ye with >= 2 decimals,
    time with >= 1, more when needed to be exact), with the original header and column widths.
    The grid columns use the fewest fixed decimals that reproduce the axes exactly; the opacity
    columns use ``%.9E`` (10 significant digits, relative error <= 5e-10; the published files
    give bb and es to 3 digits) so a round trip through read_jlodk is lossless to ~1e-9. NaN is
    written as ``nan`` (read it back with ``allow_nan=True``).

    Args:
      table: JlodkTable, kappa_* (nY, nt, nRho, nT) [cm^2/g].
      root: output folder (created if needed); existing files of the same name are replaced.
      total_rtol: the check total == bb + es applied before writing, as read_jlodk applies it.
      newline: line terminator (the published files use "\\r\\n").
    Returns:
      List of the paths written, Ye-major.
    Raises:
      ValueError: Inf or negative opacity, total != bb + es, axes not strictly increasing.
    """
    for name in ("ye", "time_days", "log10_rho", "temperature_k"):
        axis = getattr(table, name)
        if not np.all(np.isfinite(axis)) or np.any(np.diff(axis) <= 0):
            raise ValueError(f"{name} must be finite and strictly increasing")
    if np.any(table.ye < 0) or np.any(table.time_days < 0):
        raise ValueError("ye and time_days must be non-negative (they are written into names)")
    for name in ("kappa_bb", "kappa_es", "kappa_total"):
        bad = first_bad_opacity(getattr(table, name), allow_nan=True)
        if bad is not None:
            index, value, reason = bad
            raise ValueError(f"{name}: {reason} value {value!r} at index {index}")
    expect = table.kappa_bb + table.kappa_es
    scale = np.maximum(np.abs(expect), np.abs(table.kappa_total))
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.abs(table.kappa_total - expect) / np.where(scale > 0, scale, 1.0)
    rel = np.where(np.isnan(rel), 0.0, rel)
    if np.any(rel > total_rtol):
        w = np.unravel_index(int(np.argmax(rel)), rel.shape)
        raise ValueError(f"kappa_total != kappa_bb + kappa_es: worst relative mismatch "
                         f"{rel[w]:.3g} at index {tuple(int(i) for i in w)}")

    root = Path(root)
    d_rho = _decimals(table.log10_rho, 1)
    d_t = _decimals(table.temperature_k, 1)
    n_rho, n_t = table.log10_rho.size, table.temperature_k.size
    grid_cols = [f"{v:10.{d_rho}f}" for v in np.repeat(table.log10_rho, n_t).tolist()]
    grid_cols = [a + f"{v:21.{d_t}f}" for a, v in
                 zip(grid_cols, np.tile(table.temperature_k, n_rho).tolist())]

    def num(v, width):
        return f"{'nan':>{width}}" if math.isnan(v) else f"{v:{width}.9E}"

    written = []
    for i, ye in enumerate(table.ye.tolist()):
        ye_s = format_label(ye, 2)
        folder = root / f"Ye{ye_s}"
        folder.mkdir(parents=True, exist_ok=True)
        for j, t in enumerate(table.time_days.tolist()):
            t_s = format_label(t, 1)
            lines = [f"# Ye = {ye_s},  time = {t_s}day",
                     "# [1] Density in Logspace [g cm^-3]",
                     "# [2] Temperature [K]",
                     "# [3] Bound-Bound Opacity [cm^2 g^-1]",
                     "# [4] Electron Scatter Opacity [cm^2 g^-1]",
                     "# [5] Planck Mean Opacity [cm^2 g^-1]"]
            bb = table.kappa_bb[i, j].ravel().tolist()
            es = table.kappa_es[i, j].ravel().tolist()
            tot = table.kappa_total[i, j].ravel().tolist()
            lines.extend(g + num(a, 21) + num(b, 21) + num(c, 26)
                         for g, a, b, c in zip(grid_cols, bb, es, tot))
            path = folder / f"Planck_Mean_Opacity_Ye{ye_s}_Time{t_s}.txt"
            written.append(write_text(path, newline.join(lines) + newline))
    return written
