"""Per-level photodissociation cross-section text tables: one (molecule, v, J) per file.

Format (read by :func:`read_xsec_table`, written by :func:`write_xsec_table`)::

    # molecule = H2+
    # v = 0
    # J = 1
    # E_vJ = -0.0970 hartree            (optional; hartree (default), eV or cm^-1)
    # wavelength unit = nm              (optional; nm (default), angstrom, um)
    # sigma unit = cm^2                 (optional; cm^2 (default) or m^2)
    wavelength [nm], sigma [cm^2]       (optional column-name line, units in brackets)
    60.0, 3.6e-21
    70.0, 1.1e-19
    ...

Header lines start with ``#`` and hold ``key = value`` or ``key: value`` pairs (several per line
separated by ``,`` or ``;``; keys case-insensitive, unknown keys ignored). Data rows have exactly
two whitespace- or comma-separated numbers: vacuum wavelength and cross-section. Wavelengths must
be positive and strictly monotonic (either direction; the result is increasing), sigma finite
and >= 0, at least 2 rows.

With ``allow_missing=True`` (the completion front end, experiments/xsec_completion.py) a sigma
of ``nan`` marks a missing row, to be filled; every other check still applies.

Every problem raises :class:`~opacity_jax.errors.DataFormatError` naming the file, the 1-based
line and the field ("wavelength", "sigma", "molecule", "v", "J", "E_vJ", "wavelength_unit",
"sigma_unit"), and a missing file raises FileNotFoundError; writes are atomic (the house style of
:mod:`opacity_jax.data.parsing`, whose helpers are reused).
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Optional

import numpy as np

from opacity_jax.data.parsing import (header_pairs, normalize_unit, parse_rows, read_text_lines,
                                      repr_number, require_file, split_row)
from opacity_jax.errors import DataFormatError
from opacity_jax.physics import constants as _c
from opacity_jax.train.workdir import write_text

__all__ = ["XsecTable", "XSEC_TABLE_COLUMNS", "read_xsec_table", "write_xsec_table"]

XSEC_TABLE_COLUMNS = ("wavelength", "sigma")

# Factors to the canonical units (nm, cm^2, hartree).
_WAVELENGTH_UNITS = {"nm": 1.0, "nanometer": 1.0, "nanometers": 1.0, "nanometre": 1.0,
                     "a": 0.1, "angstrom": 0.1, "angstroms": 0.1, "aa": 0.1, "\u00e5": 0.1,
                     "um": 1e3, "micron": 1e3, "microns": 1e3, "\u00b5m": 1e3, "\u03bcm": 1e3}
_SIGMA_UNITS = {"cm^2": 1.0, "cm2": 1.0, "m^2": 1e4, "m2": 1e4}
_ENERGY_UNITS = {"hartree": 1.0, "eh": 1.0, "au": 1.0, "a.u.": 1.0,
                 "ev": 1.0 / _c.HARTREE_EV, "cm^-1": 1.0 / _c.HARTREE_CM1,
                 "cm-1": 1.0 / _c.HARTREE_CM1, "1/cm": 1.0 / _c.HARTREE_CM1}
_KEYS = {"molecule": "molecule", "mol": "molecule", "species": "molecule",
         "v": "v", "vib": "v", "vibrational": "v",
         "j": "J", "rot": "J", "rotational": "J",
         "e_vj": "E_vJ", "evj": "E_vJ", "energy": "E_vJ", "e": "E_vJ",
         "wavelength_unit": "wavelength_unit", "wavelength_units": "wavelength_unit",
         "lambda_unit": "wavelength_unit",
         "sigma_unit": "sigma_unit", "sigma_units": "sigma_unit",
         "cross_section_unit": "sigma_unit"}
_NUMBER = re.compile(r"^(?P<num>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eEdD][+-]?\d+)?)\s*(?P<unit>.*)$")
_COLNAME = re.compile(r"^\s*(?P<name>[A-Za-z_\u03bb\u03c3][A-Za-z0-9_\u03bb\u03c3 ]*?)\s*"
                      r"(?:[\[(](?P<unit>[^\])]*)[\])])?\s*$")


@dataclasses.dataclass
class XsecTable:
    """sigma(lambda) of one bound level (v, J) of one molecular ion.

    Attributes:
      molecule: name, e.g. "H2+".
      v, J: vibrational and rotational quantum numbers (>= 0).
      wavelength_nm: (n,) strictly increasing vacuum wavelengths [nm].
      sigma_cm2: (n,) cross-sections [cm^2], >= 0.
      energy_hartree: E_vJ [hartree] from the lower dissociation limit, or None.
      source: file it was read from, or None.
    """

    molecule: str
    v: int
    J: int
    wavelength_nm: np.ndarray
    sigma_cm2: np.ndarray
    energy_hartree: Optional[float] = None
    source: Optional[str] = None

    def __post_init__(self):
        self.molecule = str(self.molecule)
        self.v, self.J = int(self.v), int(self.J)
        self.wavelength_nm = np.asarray(self.wavelength_nm, dtype=np.float64)
        self.sigma_cm2 = np.asarray(self.sigma_cm2, dtype=np.float64)
        if self.energy_hartree is not None:
            self.energy_hartree = float(self.energy_hartree)
        if self.wavelength_nm.ndim != 1 or self.sigma_cm2.shape != self.wavelength_nm.shape:
            raise ValueError(f"wavelength_nm {self.wavelength_nm.shape} and sigma_cm2 "
                             f"{self.sigma_cm2.shape} must be equal-length 1-D arrays")


def _canon(key: str):
    return _KEYS.get(re.sub(r"[\s\-]+", "_", key.strip().lower()))


def _unit(path, lineno, field, text, table) -> float:
    u = normalize_unit(text)
    if u not in table:
        raise DataFormatError(f"unknown unit {text.strip()!r} (accepted: "
                              f"{', '.join(sorted(table))})", path=path, line=lineno, field=field)
    return table[u]


def _integer(path, lineno, field, value) -> int:
    try:
        x = float(value)
    except ValueError:
        raise DataFormatError(f"expected a non-negative integer, got {value!r}", path=path,
                              line=lineno, field=field) from None
    if not math.isfinite(x) or x != int(x) or x < 0:
        raise DataFormatError(f"expected a non-negative integer, got {value!r}", path=path,
                              line=lineno, field=field)
    return int(x)


def _column_header(path, lineno, text):
    """Units from a column-name line like 'wavelength [nm], sigma [cm^2]' (None if not one)."""
    toks = split_row(text)
    if len(toks) != 2:
        return None
    parsed = [_COLNAME.match(t) for t in toks]
    if not all(parsed):
        return None
    # Only recognised column names count, so a data row like "nan, 1" is never taken for one.
    first, second = (m["name"].lower() for m in parsed)
    if not (first.startswith(("wavelength", "lambda", "wl", "\u03bb"))
            and second.startswith(("sigma", "cross", "xsec", "\u03c3"))):
        return None
    units = []
    for m, field, table in zip(parsed, ("wavelength_unit", "sigma_unit"),
                               (_WAVELENGTH_UNITS, _SIGMA_UNITS)):
        name = m["name"].lower()
        unit = m["unit"]
        # Names may carry the unit as a suffix: wavelength_nm, sigma_cm2.
        if unit is None and "_" in name:
            unit = name.rsplit("_", 1)[1]
            if normalize_unit(unit) not in table:
                unit = None
        units.append(None if unit is None else _unit(path, lineno, field, unit, table))
    return units


def read_xsec_table(path, allow_missing: bool = False) -> XsecTable:
    """Read one per-level cross-section table (format in the module docstring).

    Args:
      path: the text/CSV file.
      allow_missing: accept sigma = nan (a missing row; Inf is never accepted).
    Returns:
      XsecTable with wavelength_nm [nm] increasing and sigma_cm2 [cm^2] (converted from the
      header's units; NaN where missing).
    Raises:
      FileNotFoundError: missing file.
      DataFormatError (file, 1-based line, field): missing molecule/v/J, bad integer, unknown or
        conflicting unit, wrong column count, non-numeric value, NaN/Inf, negative sigma,
        non-positive or non-monotonic wavelength, fewer than 2 rows.
    """
    path = require_file(path)
    lines = read_text_lines(path)
    header = {}
    rows = []
    col_units = None
    for lineno, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            if rows:
                continue  # trailing comments after the data are allowed
            for raw_key, kunit, value in header_pairs(stripped.lstrip("#")):
                key = _canon(raw_key)
                if key is None:
                    continue
                if key in header:
                    raise DataFormatError(f"{raw_key} given twice (first on line "
                                          f"{header[key][1]})", path=path, line=lineno, field=key)
                header[key] = ((raw_key, kunit, value.strip()), lineno)
            continue
        if not rows and col_units is None:
            cu = _column_header(path, lineno, stripped)
            if cu is not None:
                col_units = (cu, lineno)
                continue
        rows.append((lineno, line))

    header_end = rows[0][0] if rows else len(lines)
    for key in ("molecule", "v", "J"):
        if key not in header:
            raise DataFormatError(f"missing header key {key!r} before the data", path=path,
                                  line=header_end, field=key)
    (_, _, molecule), mline = header["molecule"]
    if not molecule:
        raise DataFormatError("empty molecule name", path=path, line=mline, field="molecule")
    v = _integer(path, header["v"][1], "v", header["v"][0][2])
    J = _integer(path, header["J"][1], "J", header["J"][0][2])

    energy = None
    if "E_vJ" in header:
        (raw, kunit, value), eline = header["E_vJ"]
        m = _NUMBER.match(value)
        if not m:
            raise DataFormatError(f"{raw}: expected a number, got {value!r}", path=path,
                                  line=eline, field="E_vJ")
        given = [u for u in (kunit, m["unit"]) if u and normalize_unit(u)]
        if len({normalize_unit(u) for u in given}) > 1:
            raise DataFormatError(f"{raw}: conflicting units {given}", path=path, line=eline,
                                  field="E_vJ")
        factor = _unit(path, eline, "E_vJ", given[0], _ENERGY_UNITS) if given else 1.0
        energy = float(m["num"].replace("d", "e").replace("D", "e")) * factor
        if not math.isfinite(energy):
            raise DataFormatError(f"{raw} must be finite, got {value!r}", path=path, line=eline,
                                  field="E_vJ")

    factors = {}
    for field, table in (("wavelength_unit", _WAVELENGTH_UNITS), ("sigma_unit", _SIGMA_UNITS)):
        f_head = None
        if field in header:
            (_, kunit, value), uline = header[field]
            f_head = (_unit(path, uline, field, value, table), uline)
        f_col = None
        if col_units is not None:
            i = 0 if field == "wavelength_unit" else 1
            if col_units[0][i] is not None:
                f_col = (col_units[0][i], col_units[1])
        if f_head and f_col and f_head[0] != f_col[0]:
            raise DataFormatError("column-name unit contradicts the header unit", path=path,
                                  line=f_col[1], field=field)
        factors[field] = (f_head or f_col or (1.0, None))[0]

    if len(rows) < 2:
        raise DataFormatError(f"need at least 2 data rows, found {len(rows)}", path=path,
                              line=header_end, field="wavelength")
    values = parse_rows(path, rows, XSEC_TABLE_COLUMNS, nan_ok=(1,) if allow_missing else ())
    line_numbers = [r[0] for r in rows]
    lam, sig = values[:, 0], values[:, 1]
    neg = np.flatnonzero(np.nan_to_num(sig) < 0)
    if neg.size:
        r = int(neg[0])
        raise DataFormatError(f"negative cross-section {repr_number(sig[r])}", path=path,
                              line=line_numbers[r], field="sigma")
    nonpos = np.flatnonzero(lam <= 0)
    if nonpos.size:
        r = int(nonpos[0])
        raise DataFormatError(f"wavelength must be positive, got {repr_number(lam[r])}", path=path,
                              line=line_numbers[r], field="wavelength")
    step = np.diff(lam)
    direction = 1.0 if step[0] > 0 else -1.0
    bad = np.flatnonzero(step * direction <= 0)
    if bad.size:
        r = int(bad[0]) + 1
        raise DataFormatError(f"wavelengths not strictly monotonic ({repr_number(lam[r - 1])} then "
                              f"{repr_number(lam[r])})", path=path, line=line_numbers[r],
                              field="wavelength")
    if direction < 0:
        lam, sig = lam[::-1], sig[::-1]
    return XsecTable(molecule=molecule, v=v, J=J,
                     wavelength_nm=lam * factors["wavelength_unit"],
                     sigma_cm2=sig * factors["sigma_unit"], energy_hartree=energy,
                     source=str(path))


def write_xsec_table(path, table: XsecTable, allow_missing: bool = False) -> Path:
    """Write one table atomically in the format read_xsec_table reads (nm, cm^2, hartree).

    Numbers use Python's shortest round-trip repr, so reading back is bit-exact.

    Args:
      path: target file (its directory must exist).
      table: XsecTable.
      allow_missing: write NaN sigma as ``nan`` (missing rows; read back with
        read_xsec_table(..., allow_missing=True)).
    Returns:
      The path written.
    Raises:
      ValueError: empty molecule name, negative v/J, NaN/Inf or negative sigma, wavelengths not
        positive and strictly increasing, fewer than 2 points (the file would not read back).
    """
    if not table.molecule.strip() or "\n" in table.molecule:
        raise ValueError(f"molecule name must be a non-empty single line, got {table.molecule!r}")
    if table.v < 0 or table.J < 0:
        raise ValueError(f"v and J must be >= 0, got v={table.v}, J={table.J}")
    lam, sig = table.wavelength_nm, table.sigma_cm2
    if lam.size < 2:
        raise ValueError("need at least 2 points")
    if not (np.all(np.isfinite(lam)) and np.all(lam > 0) and np.all(np.diff(lam) > 0)):
        raise ValueError("wavelength_nm must be finite, positive and strictly increasing")
    finite = ~np.isnan(sig) if allow_missing else np.ones(sig.shape, bool)
    if not np.all(np.isfinite(sig[finite])) or np.any(sig[finite] < 0):
        raise ValueError("sigma_cm2 must be finite and >= 0"
                         + (" (or NaN: missing)" if allow_missing else ""))
    lines = [f"# molecule = {table.molecule.strip()}", f"# v = {table.v}", f"# J = {table.J}"]
    if table.energy_hartree is not None:
        if not math.isfinite(table.energy_hartree):
            raise ValueError("energy_hartree must be finite")
        lines.append(f"# E_vJ = {float(table.energy_hartree)!r} hartree")
    lines += ["# wavelength unit = nm", "# sigma unit = cm^2", "wavelength [nm], sigma [cm^2]"]
    lines += [f"{a!r}, {b!r}" for a, b in zip(lam.tolist(), sig.tolist())]
    return write_text(path, "\n".join(lines) + "\n")
