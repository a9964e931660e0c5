"""Per-spectrum opacity text tables (NIST-LANL-like exports) and directories of them.

``read_spectrum_table`` / ``write_spectrum_table`` handle one file: ``#`` header lines with
``key = value`` pairs, then 6 numeric columns (energy [eV], total, bb, bf, ff, es [cm^2/g]).
``read_spectrum_directory`` assembles a directory of them into a Dataset.

Every reader raises :class:`~opacity_jax.errors.DataFormatError` naming the file, the 1-based line
(where there is one) and the field, and ``FileNotFoundError`` naming the path for a missing file.
Every writer is atomic: it writes a temporary file in the target directory, fsyncs it and renames
it over the target, so a crash or exception never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from opacity_jax import __version__
from opacity_jax.data import grid as _grid
from opacity_jax.data.dataset import COMPONENTS, Dataset
from opacity_jax.data.parsing import (DENSITY_UNITS, TEMPERATURE_UNITS, check_nonnegative,
                                      first_bad_opacity, header_pairs, normalize_unit,
                                      parse_rows, read_text_lines, repr_number, require_file)
from opacity_jax.errors import DataFormatError
from opacity_jax.physics import elements as _el
from opacity_jax.train.workdir import write_text

__all__ = ["SPECTRUM_COLUMNS", "SpectrumTable", "read_spectrum_table", "write_spectrum_table",
           "read_spectrum_directory"]

SPECTRUM_COLUMNS = ("energy_ev", "total", "bb", "bf", "ff", "es")


@dataclasses.dataclass
class SpectrumTable:
    """One opacity spectrum at a single (Z, T, rho) node, as read from a text table.

    Attributes:
      z: atomic number.
      temperature_ev: temperature [eV].
      density_gcc: mass density [g/cm^3].
      energy_ev: (n,) strictly increasing photon energies [eV] (point values).
      kappa: (n,) total monochromatic opacity [cm^2/g].
      components: dict name -> (n,) [cm^2/g] for names in COMPONENTS ("bb", "bf", "ff", "es").
      zbar: mean ionic charge, or None when the table does not give it.
      source: the file it was read from, or None.
    """

    z: int
    temperature_ev: float
    density_gcc: float
    energy_ev: np.ndarray
    kappa: np.ndarray
    components: dict = dataclasses.field(default_factory=dict)
    zbar: Optional[float] = None
    source: Optional[str] = None

    def __post_init__(self):
        self.z = int(self.z)
        self.temperature_ev = float(self.temperature_ev)
        self.density_gcc = float(self.density_gcc)
        self.zbar = None if self.zbar is None else float(self.zbar)
        self.energy_ev = np.asarray(self.energy_ev, dtype=np.float64)
        self.kappa = np.asarray(self.kappa, dtype=np.float64)
        self.components = {k: np.asarray(v, dtype=np.float64) for k, v in self.components.items()}
        if self.energy_ev.ndim != 1 or self.kappa.shape != self.energy_ev.shape:
            raise ValueError(f"energy_ev {self.energy_ev.shape} and kappa {self.kappa.shape} "
                             "must be equal-length 1-D arrays")
        for name, arr in self.components.items():
            if name not in COMPONENTS:
                raise ValueError(f"unknown component {name!r}; allowed: {COMPONENTS}")
            if arr.shape != self.energy_ev.shape:
                raise ValueError(f"component {name!r} has shape {arr.shape}, "
                                 f"expected {self.energy_ev.shape}")

    @property
    def energy_edges_ev(self) -> np.ndarray:
        """(n + 1,) bin edges [eV] around the point energies (grid.edges_from_centers_ev)."""
        return _grid.edges_from_centers_ev(self.energy_ev)


_NUMBER = re.compile(r"^(?P<num>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eEdD][+-]?\d+)?)\s*(?P<unit>.*)$")
_HEADER_KEYS = {
    "z": "Z", "atomic_number": "Z", "atomicnumber": "Z",
    "element": "element", "symbol": "element",
    "t": "T", "temp": "T", "temperature": "T", "kt": "T",
    "rho": "rho", "density": "rho", "dens": "rho",
    "zbar": "zbar", "z_bar": "zbar", "mean_charge": "zbar", "zmean": "zbar",
}


def _canonical_key(key: str):
    """(canonical name, unit suffix) for a header key, or (None, None) if not ours."""
    k = re.sub(r"\s+", "_", key.strip().lower())
    if k in _HEADER_KEYS:
        return _HEADER_KEYS[k], None
    if "_" in k:
        base, suffix = k.split("_", 1)
        if base in _HEADER_KEYS and _HEADER_KEYS[base] in ("T", "rho"):
            return _HEADER_KEYS[base], suffix
    return None, None


def _header_number(path, lineno, field, raw_key, value, units: Sequence[Optional[str]],
                   table: Optional[dict], default_unit: Optional[str]) -> float:
    m = _NUMBER.match(value)
    if not m:
        raise DataFormatError(f"{raw_key}: expected a number, got {value!r}", path=path,
                              line=lineno, field=field)
    number = float(m["num"].replace("d", "e").replace("D", "e"))
    given = [normalize_unit(u) for u in list(units) + [m["unit"]] if u and normalize_unit(u)]
    if table is None:
        if given:
            raise DataFormatError(f"{raw_key}: unexpected unit {given[0]!r} on a dimensionless "
                                  "value", path=path, line=lineno, field=field)
        return number
    if len(set(given)) > 1:
        raise DataFormatError(f"{raw_key}: conflicting units {sorted(set(given))}", path=path,
                              line=lineno, field=field)
    unit = given[0] if given else default_unit
    if unit not in table:
        raise DataFormatError(f"{raw_key}: unknown unit {unit!r} (accepted: "
                              f"{', '.join(sorted(table))})", path=path, line=lineno, field=field)
    return number * table[unit]


def read_spectrum_table(path, total_rtol: float = 1e-4) -> SpectrumTable:
    """Read one per-spectrum text table (NIST-LANL-like export).

    Format: ``#`` lines form the header, with ``key = value`` or ``key: value`` pairs (several
    per line may be separated by ``,`` or ``;``); keys are case-insensitive and unknown keys are
    ignored:

      * ``Z`` (atomic number) or ``element`` (symbol or name, via elements.element_index);
      * ``T`` / ``temperature`` with unit eV (default), keV or K, given as a key suffix
        (``T_eV``, ``T_K``), in brackets (``T [K]``) or after the value (``T = 5802 K``);
        kelvin is converted with k_B from physics.constants;
      * ``rho`` / ``density`` in g/cm^3 (default; ``g/cm3``, ``g/cc``, ``g cm^-3``) or kg/m^3;
      * optional ``zbar``.

    Then data rows, whitespace- or comma-separated, exactly 6 columns: photon energy [eV],
    total, bound-bound, bound-free, free-free, scattering opacity [cm^2/g]; the total must equal
    the sum of the four components to relative tolerance `total_rtol` (rounding of the printed
    digits).

    Returns:
      SpectrumTable with (n,) float64 arrays, n >= 2.
    Raises:
      FileNotFoundError: missing file.
      DataFormatError (file, 1-based line, field): wrong column count, non-numeric, NaN/Inf,
        negative opacity, non-positive or non-increasing energy, fewer than 2 rows, missing
        Z/T/rho header, unknown or conflicting unit, total != sum of the components.
    """
    path = require_file(path)
    lines = read_text_lines(path)
    header = {}   # canonical field -> (value, line)
    rows = []
    for lineno, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("#"):
            rows.append((lineno, line))
            continue
        for raw_key, kunit, value in header_pairs(stripped.lstrip("#")):
            field, suffix = _canonical_key(raw_key)
            if field is None:
                continue
            if field in header:
                raise DataFormatError(f"{raw_key} given twice (first on line {header[field][1]})",
                                      path=path, line=lineno, field=field)
            if field == "element":
                try:
                    z = int(_el.ATOMIC_NUMBERS[_el.element_index(value)])
                except ValueError as exc:
                    raise DataFormatError(str(exc), path=path, line=lineno,
                                          field=field) from None
                header[field] = (z, lineno)
            elif field == "Z":
                z = _header_number(path, lineno, field, raw_key, value, [kunit, suffix], None,
                                   None)
                if z != int(z) or z < 1:
                    raise DataFormatError(f"{raw_key}: atomic number must be a positive integer, "
                                          f"got {value!r}", path=path, line=lineno, field=field)
                header[field] = (int(z), lineno)
            elif field == "T":
                header[field] = (_header_number(path, lineno, field, raw_key, value,
                                                [kunit, suffix], TEMPERATURE_UNITS, "ev"),
                                 lineno)
            elif field == "rho":
                header[field] = (_header_number(path, lineno, field, raw_key, value,
                                                [kunit, suffix], DENSITY_UNITS, "g/cm^3"),
                                 lineno)
            else:  # zbar
                header[field] = (_header_number(path, lineno, field, raw_key, value,
                                                [kunit, suffix], None, None), lineno)
            v = header[field][0]
            if field in ("T", "rho") and not (math.isfinite(v) and v > 0):
                raise DataFormatError(f"{raw_key} must be finite and positive, got {value!r}",
                                      path=path, line=lineno, field=field)
            if field == "zbar" and not (math.isfinite(v) and v >= 0):
                raise DataFormatError(f"{raw_key} must be finite and >= 0, got {value!r}",
                                      path=path, line=lineno, field=field)

    header_end = rows[0][0] if rows else len(lines)
    if "Z" in header and "element" in header and header["Z"][0] != header["element"][0]:
        raise DataFormatError(f"Z = {header['Z'][0]} contradicts element "
                              f"(Z = {header['element'][0]})", path=path,
                              line=header["element"][1], field="element")
    z = header.get("Z", header.get("element"))
    for field, have in (("Z", z), ("T", header.get("T")), ("rho", header.get("rho"))):
        if have is None:
            hint = " (or 'element')" if field == "Z" else ""
            raise DataFormatError(f"missing header key {field!r}{hint} before the data",
                                  path=path, line=header_end, field=field)

    values = parse_rows(path, rows, SPECTRUM_COLUMNS)
    line_numbers = np.array([r[0] for r in rows], dtype=np.int64)
    if len(rows) < 2:
        raise DataFormatError(f"need at least 2 data rows, found {len(rows)}", path=path,
                              line=header_end, field="energy_ev")
    check_nonnegative(path, values, line_numbers, SPECTRUM_COLUMNS, [1, 2, 3, 4, 5])
    energy = values[:, 0]
    if energy[0] <= 0:
        raise DataFormatError(f"photon energy must be positive, got {repr_number(energy[0])}",
                              path=path, line=int(line_numbers[0]), field="energy_ev")
    step_bad = np.flatnonzero(np.diff(energy) <= 0)
    if step_bad.size:
        r = int(step_bad[0]) + 1
        raise DataFormatError(f"energies not strictly increasing ({repr_number(energy[r - 1])} then "
                              f"{repr_number(energy[r])})", path=path, line=int(line_numbers[r]),
                              field="energy_ev")
    # The total must be the sum of its components (as in the JLODK reader): a table whose
    # columns are shifted or mislabelled would otherwise train a model on wrong physics.
    total, parts = values[:, 1], values[:, 2:6].sum(axis=1)
    scale = np.maximum(np.abs(total), np.abs(parts))
    rel = np.where(scale > 0, np.abs(total - parts) / np.where(scale > 0, scale, 1.0), 0.0)
    if np.any(rel > total_rtol):
        w = int(np.argmax(rel))
        raise DataFormatError(
            f"total != bb + bf + ff + es beyond relative tolerance {total_rtol:g} on "
            f"{int((rel > total_rtol).sum())} row(s); worst: total={repr_number(total[w])}, "
            f"sum={repr_number(parts[w])}", path=path, line=int(line_numbers[w]), field="total")
    return SpectrumTable(
        z=z[0], temperature_ev=header["T"][0], density_gcc=header["rho"][0],
        energy_ev=energy, kappa=values[:, 1],
        components={name: values[:, 2 + i] for i, name in enumerate(("bb", "bf", "ff", "es"))},
        zbar=header["zbar"][0] if "zbar" in header else None, source=str(path))


def write_spectrum_table(path, table: SpectrumTable) -> Path:
    """Write ``table`` atomically in the format :func:`read_spectrum_table` reads.

    Header values and data use Python's shortest round-trip float repr, so reading the file back
    gives bit-identical float64 values. T is written in eV, rho in g/cm^3.

    Args:
      path: target file (its directory must exist).
      table: SpectrumTable with all four components "bb", "bf", "ff", "es" ((n,) [cm^2/g]).
    Returns:
      The path written.
    Raises:
      ValueError: missing components, non-finite or negative opacities, energies not positive
        and strictly increasing (the file would not read back).
    """
    missing = [c for c in ("bb", "bf", "ff", "es") if c not in table.components]
    if missing:
        raise ValueError(f"table lacks components {missing}; the text format has 6 columns")
    cols = [table.energy_ev, table.kappa] + [table.components[c] for c in ("bb", "bf", "ff", "es")]
    data = np.stack(cols, axis=1)
    bad = first_bad_opacity(data[:, 1:])
    if bad is not None:
        (r, c), value, reason = bad
        raise ValueError(f"{SPECTRUM_COLUMNS[c + 1]}: {reason} value {value!r} at row {r}")
    e = table.energy_ev
    if e.size < 2 or not np.all(np.isfinite(e)) or e[0] <= 0 or np.any(np.diff(e) <= 0):
        raise ValueError("energy_ev must hold >= 2 finite, positive, strictly increasing values")
    out = [f"# opacity_jax spectrum table (opacity_jax {__version__})", f"# Z = {table.z}"]
    with contextlib.suppress(ValueError):
        out.append(f"# element = {_el.SYMBOLS[_el.element_index(table.z)]}")
    out.append(f"# T = {table.temperature_ev!r} eV")
    out.append(f"# rho = {table.density_gcc!r} g/cm^3")
    if table.zbar is not None:
        out.append(f"# zbar = {table.zbar!r}")
    out.append("# columns: energy [eV]  total  bb  bf  ff  es [cm^2/g]")
    out.extend(" ".join(f"{v!r:>24}" for v in row) for row in data.tolist())
    return write_text(path, "\n".join(out) + "\n")


def _cluster(values: Sequence[float], rtol: float) -> np.ndarray:
    """Sorted distinct values, merging those within rtol of a group's smallest member."""
    reps = []
    for v in sorted(values):
        if not reps or v > reps[-1] * (1.0 + rtol):
            reps.append(v)
    return np.asarray(reps, dtype=np.float64)


def _match(axis: np.ndarray, value: float) -> int:
    return int(np.argmin(np.abs(axis - value) / axis))


def read_spectrum_directory(directory, pattern: str = "*.txt", *, rtol: float = 1e-6,
                            mixed_zbar: str = "error") -> Dataset:
    """Assemble a Dataset from a directory of per-spectrum text tables.

    The grid is the sorted distinct atomic numbers, temperatures and densities found in the
    files (T and rho values within relative ``rtol`` count as one node). Grid nodes without a
    file get ``valid = False`` and kappa, components (and zbar) 0. Point energies become bin
    edges via grid.edges_from_centers_ev, and the point values are stored as the bin values.

    Args:
      directory: folder holding the tables.
      pattern: glob pattern selecting the tables.
      rtol: relative tolerance for matching T, rho and energies between files.
      mixed_zbar: what to do when some files give zbar and others do not: "error" (default:
        such a mix usually means the files come from different exports) or "drop" (return
        zbar None and note it in the provenance).
    Returns:
      Dataset with kappa and all four components (nZ, nT, nR, nE) float32 [cm^2/g], zbar
      (nZ, nT, nR) when every file gives it, provenance recording directory and file count.
    Raises:
      FileNotFoundError: missing directory or no file matching ``pattern``.
      DataFormatError: any bad table (see read_spectrum_table); two files for the same node;
        energy grids that differ (names both files and the first differing index); mixed zbar
        with mixed_zbar="error".
    """
    if mixed_zbar not in ("error", "drop"):
        raise ValueError(f"mixed_zbar must be 'error' or 'drop', got {mixed_zbar!r}")
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"no such directory: {directory}")
    files = sorted(p for p in directory.glob(pattern) if p.is_file())
    if not files:
        raise FileNotFoundError(f"no files matching {pattern!r} in {directory}")
    tables = [read_spectrum_table(p) for p in files]

    ref = tables[0]
    for t in tables[1:]:
        a, b = ref.energy_ev, t.energy_ev
        n = min(a.size, b.size)
        diff = np.flatnonzero(np.abs(a[:n] - b[:n]) > rtol * np.abs(a[:n]))
        if diff.size or a.size != b.size:
            i = int(diff[0]) if diff.size else n
            what = (f"{repr_number(b[i])} vs {repr_number(a[i])} eV" if diff.size else
                    f"{b.size} points vs {a.size}")
            raise DataFormatError(f"energy grid differs from {ref.source}: first difference at "
                                  f"index {i} ({what})", path=t.source, field="energy_ev")

    have_zbar = [t for t in tables if t.zbar is not None]
    lack_zbar = [t for t in tables if t.zbar is None]
    zbar_note = None
    if have_zbar and lack_zbar:
        if mixed_zbar == "error":
            raise DataFormatError(f"zbar given in {len(have_zbar)} files (e.g. "
                                  f"{have_zbar[0].source}) but not in {len(lack_zbar)} (e.g. this "
                                  "one); pass mixed_zbar='drop' to ignore zbar",
                                  path=lack_zbar[0].source, field="zbar")
        zbar_note = f"zbar dropped: given in {len(have_zbar)} of {len(tables)} files"

    zs = np.asarray(sorted({t.z for t in tables}), dtype=np.int32)
    temps = _cluster([t.temperature_ev for t in tables], rtol)
    rhos = _cluster([t.density_gcc for t in tables], rtol)
    shape = (zs.size, temps.size, rhos.size, ref.energy_ev.size)
    kappa = np.zeros(shape, dtype=np.float32)
    components = {name: np.zeros(shape, dtype=np.float32) for name in ("bb", "bf", "ff", "es")}
    zbar = np.zeros(shape[:3], dtype=np.float64) if (have_zbar and not lack_zbar) else None
    owner = {}
    for t in tables:
        node = (int(np.searchsorted(zs, t.z)), _match(temps, t.temperature_ev),
                _match(rhos, t.density_gcc))
        if node in owner:
            raise DataFormatError(f"same (Z, T, rho) node as {owner[node]} (Z={t.z}, "
                                  f"T={t.temperature_ev!r} eV, rho={t.density_gcc!r} g/cm^3)",
                                  path=t.source, field="node")
        owner[node] = t.source
        for name, arr, src in [("total", kappa, t.kappa)] + [
                (c, components[c], t.components[c]) for c in components]:
            arr[node] = src
            if not np.all(np.isfinite(arr[node])):
                raise DataFormatError("value overflows float32", path=t.source, field=name)
        if zbar is not None:
            zbar[node] = t.zbar
    valid = np.zeros(shape[:3], dtype=bool)
    for node in owner:
        valid[node] = True

    provenance = {"source": "spectrum_directory", "directory": str(directory.resolve()),
                  "pattern": pattern, "n_files": len(files), "n_missing_nodes": int((~valid).sum()),
                  "reader": "opacity_jax.data.spectrum_tables.read_spectrum_directory",
                  "opacity_jax_version": __version__,
                  "energy": "point energies; edges from grid.edges_from_centers_ev"}
    if zbar_note:
        provenance["note"] = zbar_note
    return Dataset(elements=zs, temperature_ev=temps, density_gcc=rhos,
                   energy_edges_ev=_grid.edges_from_centers_ev(ref.energy_ev), kappa=kappa,
                   components=components, zbar=zbar, valid=valid, provenance=provenance)
